"""Streaming concept-drift detectors (frouros) fed with per-row errors or residuals, whose state
survives between files as plain JSON (no pickle)."""

from __future__ import annotations

import importlib
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from frouros.detectors import concept_drift as fcd

# registry name -> (detector class, config class)
DETECTORS = {
    "ddm": (fcd.DDM, fcd.DDMConfig),
    "eddm": (fcd.EDDM, fcd.EDDMConfig),
    "hddm_a": (fcd.HDDMA, fcd.HDDMAConfig),
    "hddm_w": (fcd.HDDMW, fcd.HDDMWConfig),
    "adwin": (fcd.ADWIN, fcd.ADWINConfig),
    "page_hinkley": (fcd.PageHinkley, fcd.PageHinkleyConfig),
    "kswin": (fcd.KSWIN, fcd.KSWINConfig),
    "cusum": (fcd.CUSUM, fcd.CUSUMConfig),
}
# Detectors that see a change of level either way; an alarm of theirs is acted on only when the level rose.
TWO_SIDED = frozenset({"adwin", "kswin"})
#: values at the end of the stream that give a two-sided detector's new level when it alarms
RECENT = 50
#: values before those, since the detector started, without which the direction is unknown (the alarm stands)
MIN_BEFORE = 30
# KSWIN draws its reference window with numpy's *global* RNG; we give each KSWIN its own seeded
# RandomState (swapped in around its updates) so a split stream repeats an unsplit one exactly.
_KSWIN_SEED = 0


def build_detector(name: str, params: dict | None = None):
    """A frouros detector from its registry name and config parameters (frouros defaults otherwise)."""
    detector_cls, config_cls = DETECTORS[name]
    params = dict(params or {})
    if name == "kswin":
        params.pop("seed", None)  # randomness is handled by the monitor, see _KSWIN_SEED
    return detector_cls(config=config_cls(**params))


@dataclass
class ConceptResult:
    alarm: bool  # any detector alarmed during this update
    detectors: dict[str, dict] = field(default_factory=dict)  # name -> alarm, first_alarm_index, status
    n_seen: int = 0  # values seen since the last reset


class ConceptDriftMonitor:
    """Feeds values to every configured detector; remembers where each first alarmed.

    frouros latches ``drift`` after an alarm; the monitor reports the first alarm index (counted over
    the whole stream since the last ``reset()``) and keeps the detectors latched until the caller acts
    on the alarm and calls ``reset()``.

    ADWIN and KSWIN (:data:`TWO_SIDED`) see a change of level either way, and a model that errs less than before
    is no reason to retrain. When one alarms, the mean of the last :data:`RECENT` values is compared with the mean
    of the values before them since that detector started: lower, it is a fall, not an alarm: the detector starts
    again at that row (reported as ``improved_row``) and goes on with the rest of the values, so a rise after the
    fall, in the same values or later, is an alarm.

    >>> from calmops.detectors import ConceptDriftMonitor, DriftConfig
    >>> m = ConceptDriftMonitor(DriftConfig(concept=["page_hinkley"]))
    >>> m.update([0.0] * 100 + [10.0] * 20).alarm
    True
    """

    def __init__(self, config) -> None:
        self.config = config
        self.names = list(config.concept)
        self.reset()

    def reset(self) -> None:
        self.detectors = {n: build_detector(n, self.config.concept_params.get(n)) for n in self.names}
        self.first_alarm = {n: None for n in self.names}
        self.n_seen = 0
        # per two-sided detector since it (re)started: [sum, count] of its values and its last RECENT values
        self.levels = {n: [0.0, 0] for n in self.names if n in TWO_SIDED}
        self.recent = {n: deque(maxlen=RECENT) for n in self.names if n in TWO_SIDED}
        self._rng_state = {
            n: np.random.RandomState(
                self.config.concept_params.get(n, {}).get("seed", _KSWIN_SEED)
            ).get_state()
            for n in self.names
            if n == "kswin"
        }

    @classmethod
    def warm_started(cls, config, values: Sequence[float]) -> ConceptDriftMonitor:
        """A monitor that already knows a model's error level: fed ``values`` (the model's out-of-sample
        errors on the rows that chose it), with no alarm kept from them. The next file is then compared with
        that level at once, instead of after a cold start has gathered a window of its own."""
        monitor = cls(config)
        monitor.update(values)
        for name, det in monitor.detectors.items():
            if det.drift:  # the warm-up rows themselves held a change: that detector starts cold
                monitor.detectors[name] = build_detector(name, config.concept_params.get(name))
                if name in monitor.levels:
                    monitor.levels[name], monitor.recent[name] = [0.0, 0], deque(maxlen=RECENT)
        monitor.first_alarm = dict.fromkeys(monitor.names)
        return monitor

    def update(self, values: Sequence[float]) -> ConceptResult:
        """Feed per-row errors (0/1, classification) or absolute residuals (regression); NaNs skipped."""
        values = [float(v) for v in np.asarray(values, dtype=np.float64).ravel() if math.isfinite(v)]
        if "adwin" in self.detectors and values and min(values) < 0:
            # checked before any detector moves, so a refused batch leaves the state untouched
            raise ValueError("ADWIN needs non-negative values: feed 0/1 errors or absolute residuals")
        alarms_now, start, improved = {}, self.n_seen, {}
        for name in list(self.detectors):
            saved = None
            if name in self._rng_state:
                saved = np.random.get_state()
                np.random.set_state(self._rng_state[name])
            try:
                det, fired = self.detectors[name], False
                for i, v in enumerate(values):
                    det.update(value=v)
                    if name in self.levels:
                        self.levels[name][0] += v
                        self.levels[name][1] += 1
                        self.recent[name].append(v)
                    if det.drift and self.first_alarm[name] is None:
                        if self._fell(name):  # the error level went down: start again from here
                            improved[name] = i + 1
                            det = self.detectors[name] = build_detector(name, self.config.concept_params.get(name))
                            self.levels[name], self.recent[name] = [0.0, 0], deque(maxlen=RECENT)
                            continue
                        self.first_alarm[name] = self.n_seen + i
                    fired = fired or det.drift
                alarms_now[name] = fired
            finally:
                if saved is not None:
                    self._rng_state[name] = np.random.get_state()
                    np.random.set_state(saved)
        self.n_seen += len(values)
        out = self.result(alarms_now, start)
        for name, row in improved.items():
            out.detectors[name]["improved_row"] = row
        return out

    def _fell(self, name: str) -> bool:
        """Whether a two-sided detector's alarm is a fall of the level: its last values' mean below the mean of the
        values before them since it started (False when it is not two-sided or too few values came before)."""
        if name not in self.levels:
            return False
        (total, count), recent = self.levels[name], self.recent[name]
        before = count - len(recent)
        if before < MIN_BEFORE:
            return False
        return sum(recent) / len(recent) < (total - sum(recent)) / before

    def result(self, alarms_now: dict[str, bool] | None = None, start: int | None = None) -> ConceptResult:
        """Each detector's alarm, where it first alarmed in the stream (``first_alarm_index``, counted since the
        last reset, warm-up rows included) and, for the values of the update that began at ``start``, the row of
        them (1-based) where it first alarmed (``first_alarm_row``: None when it did not first alarm there)."""
        out = {}
        for name, det in self.detectors.items():
            first = self.first_alarm[name]
            out[name] = {
                "alarm": bool(det.drift) if alarms_now is None else bool(alarms_now.get(name, det.drift)),
                "first_alarm_index": first,
                "first_alarm_row": first - start + 1 if start is not None and first is not None and first >= start
                else None,
                "status": {k: bool(v) for k, v in det.status.items()},
            }
        return ConceptResult(any(d["alarm"] for d in out.values()), out, self.n_seen)

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict:
        return {
            "format": "calmops.concept_monitor",
            "version": 1,
            "names": self.names,
            "n_seen": self.n_seen,
            "first_alarm": self.first_alarm,
            "detectors": {
                n: _encode({k: v for k, v in vars(d).items() if k not in ("_config", "_callbacks")})
                for n, d in self.detectors.items()
            },
            "rng": {n: _encode_rng(s) for n, s in self._rng_state.items()},
            "levels": {n: [float(t), int(c)] for n, (t, c) in self.levels.items()},
            "recent": {n: [float(v) for v in r] for n, r in self.recent.items()},
        }

    @classmethod
    def from_state(cls, state: dict, config) -> ConceptDriftMonitor:
        if state.get("format") != "calmops.concept_monitor":
            raise ValueError("not a CalmOps concept-monitor state")
        if list(state["names"]) != list(config.concept):
            raise ValueError(
                f"state holds detectors {state['names']} but config asks for {list(config.concept)}"
            )
        m = cls(config)
        m.n_seen = int(state["n_seen"])
        m.first_alarm = {k: (None if v is None else int(v)) for k, v in state["first_alarm"].items()}
        for name, det in m.detectors.items():
            det.__dict__.update(_decode(state["detectors"][name]))
        m._rng_state = {n: _decode_rng(s) for n, s in state.get("rng", {}).items()}
        # a state saved without them starts its levels now (until MIN_BEFORE values came, every alarm stands)
        for n, (total, count) in (state.get("levels") or {}).items():
            if n in m.levels:
                m.levels[n] = [float(total), int(count)]
        for n, values in (state.get("recent") or {}).items():
            if n in m.recent:
                m.recent[n].extend(float(v) for v in values)
        return m


# ----------------------------------------------------------------------------- JSON codec
# Detector internals are numbers, booleans, lists, deques, numpy values and small frouros helper
# objects (Mean, EWMA, buckets). They are written field by field; objects are rebuilt only for
# classes inside the frouros package.
def _encode(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, np.bool_):
        return {"__int__": int(v)} if isinstance(v, np.integer) else v
    if isinstance(v, np.bool_):
        return {"__npbool__": bool(v)}
    if isinstance(v, (float, np.floating)):
        f = float(v)
        tag = "__npfloat__" if isinstance(v, np.floating) else "__float__"
        return {tag: repr(f)} if not math.isfinite(f) or isinstance(v, np.floating) else f
    if isinstance(v, np.ndarray):
        return {"__ndarray__": _encode(v.tolist()), "dtype": str(v.dtype), "shape": list(v.shape)}
    if isinstance(v, deque):
        return {"__deque__": [_encode(x) for x in v], "maxlen": v.maxlen}
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x) for x in v]}
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if isinstance(v, dict):
        return {"__dict__": [[_encode(k), _encode(x)] for k, x in v.items()]}
    cls = type(v)
    if cls.__module__.startswith("frouros."):
        return {"__object__": f"{cls.__module__}:{cls.__qualname__}", "fields": _encode(dict(vars(v)))}
    raise TypeError(f"cannot serialise {cls.__module__}.{cls.__qualname__} in detector state")


def _decode(v):
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "__int__" in v:
        return np.int64(v["__int__"])
    if "__npbool__" in v:
        return np.bool_(v["__npbool__"])
    if "__float__" in v:
        return float(v["__float__"])
    if "__npfloat__" in v:
        return np.float64(float(v["__npfloat__"]))
    if "__ndarray__" in v:
        return np.asarray(_decode(v["__ndarray__"]), dtype=v["dtype"]).reshape(v["shape"])
    if "__deque__" in v:
        return deque([_decode(x) for x in v["__deque__"]], maxlen=v["maxlen"])
    if "__tuple__" in v:
        return tuple(_decode(x) for x in v["__tuple__"])
    if "__dict__" in v:
        return {_decode(k): _decode(x) for k, x in v["__dict__"]}
    if "__object__" in v:
        module, _, qualname = v["__object__"].partition(":")
        if not module.startswith("frouros."):
            raise ValueError(f"refusing to rebuild {v['__object__']}: only frouros classes")
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        obj = cls.__new__(cls)
        obj.__dict__.update(_decode(v["fields"]))
        return obj
    raise ValueError(f"unknown encoded value {list(v)[:3]}")


def _encode_rng(state) -> dict:
    name, keys, pos, has_gauss, cached = state
    return {
        "name": name,
        "keys": keys.tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _decode_rng(d: dict):
    return (d["name"], np.asarray(d["keys"], dtype=np.uint32), d["pos"], d["has_gauss"], d["cached"])
