"""The drift verdict of one batch: every signal's typed result, and whether together they call for a retrain.

The drift step (:func:`calmops.tasks.drift.check_drift`) builds it from five signals, each with its own type:

* ``data``: the champion's reference against the batch (:class:`~calmops.detectors.DriftReport`);
* ``performance``: the champion's score on the labelled batch against its thresholds and its score at
  promotion (:class:`PerformanceSignal`);
* ``decay``: a steady worsening of that score over the files since promotion (:class:`DecaySignal`);
* ``concept``: streaming detectors fed with the champion's per-row errors (:class:`ConceptSignal`);
* ``label_free``: prediction and confidence drift of a batch without labels (:class:`LabelFreeSignal`);
* ``estimated``: the champion's performance estimated without labels (:class:`EstimatedSignal`), recorded on
  every batch and a retrain signal on batches without labels when ``evaluation.estimated_trigger`` is set.

The verdict stays typed through the flow; the record step turns it into JSON once (``drift/verdict.json`` in
the run's MLflow artifacts, the shape of :meth:`DriftVerdict.to_dict`) and the viewer reads it back with
:meth:`DriftVerdict.from_dict`. A signal that was not measured (no labels, or labels and so no label-free
check) is ``None`` and is written as ``{}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from calmops.core.metrics import HIGHER_IS_BETTER
from calmops.detectors import DriftReport
from calmops.detectors.report import FeatureResult


def _known(cls, d: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


@dataclass(frozen=True)
class PerformanceSignal:
    """The champion's ``metric`` on this batch (``now``) against its thresholds and its score at promotion."""

    metric: str
    now: float | None
    at_promotion: float | None
    threshold_failures: list[str]
    relative_drop: float | None  # the fall since promotion as a share of the score then (None: not measurable)
    tolerance: float | None  # the spec's performance_tolerance (None only in a record that lacks it)
    noise_band: float | None = None  # what the two estimates' sampling error explains (rates only)
    drift: bool = False

    @property
    def fell(self) -> bool:
        """The score fell since promotion by more than the tolerance and, for rates, the two estimates' noise band."""
        if self.relative_drop is None or self.tolerance is None or self.relative_drop <= self.tolerance:
            return False
        return self.noise_band is None or (self.at_promotion - self.now) > self.noise_band

    @property
    def reason(self) -> str | None:
        if not self.drift:
            return None
        if self.threshold_failures:
            return "performance drift: " + "; ".join(self.threshold_failures)
        moved = "fell" if HIGHER_IS_BETTER.get(self.metric, True) else "rose"  # an error metric worsens upward
        return (f"performance drift: {self.metric} {moved} {self.relative_drop:.1%} since promotion "
                f"({self.at_promotion:.4f} → {self.now:.4f})")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.noise_band is None:
            del out["noise_band"]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> PerformanceSignal:
        known = _known(cls, d)
        return cls(**{"metric": "", "now": None, "at_promotion": None, "relative_drop": None, "tolerance": None,
                      **known, "threshold_failures": list(known.get("threshold_failures") or [])})


@dataclass(frozen=True)
class DecaySignal:
    """The trend test over the champion's last scores (``metric`` is None when the test is switched off)."""

    alarm: bool = False
    files: int = 0  # scores tested
    metric: str | None = None
    p_value_max: float | None = None
    min_decline: float | None = None
    p_value: float | None = None
    slope: float | None = None
    relative_decline: float | None = None
    scores: list[float] = field(default_factory=list)  # the trail tested, oldest first

    @property
    def reason(self) -> str | None:
        if not self.alarm:
            return None
        return (f"performance decay: {self.metric} worsened {self.relative_decline:.1%} over the champion's last "
                f"{self.files} files (trend p = {self.p_value:.3f})")

    def to_dict(self) -> dict[str, Any]:
        if self.metric is None:
            return {"alarm": self.alarm, "files": self.files}
        said = asdict(self)  # the test's settings first, then its result
        return {k: said.pop(k) for k in ("metric", "p_value_max", "min_decline")} | said

    @classmethod
    def from_dict(cls, d: dict) -> DecaySignal:
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class ConceptSignal:
    """The streaming concept-drift detectors after this batch: name → alarm, first alarm index and status."""

    alarm: bool = False
    detectors: dict[str, dict] = field(default_factory=dict)

    @property
    def fired(self) -> list[str]:
        return [name for name, d in self.detectors.items() if (d or {}).get("alarm")]

    @property
    def reason(self) -> str | None:
        return f"concept drift alarm: {', '.join(self.fired)}" if self.alarm else None

    def to_dict(self) -> dict[str, Any]:
        return {"alarm": self.alarm, "detectors": self.detectors}

    @classmethod
    def from_dict(cls, d: dict) -> ConceptSignal:
        return cls(alarm=bool(d.get("alarm")), detectors=dict(d.get("detectors") or {}))


@dataclass(frozen=True)
class LabelFreeSignal:
    """Drift in the champion's predictions and confidences on a batch without labels."""

    drift: bool
    results: list[FeatureResult]

    @property
    def reason(self) -> str | None:
        return "label-free drift in the champion's predictions" if self.drift else None

    def to_dict(self) -> dict[str, Any]:
        return {"drift": self.drift, "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, d: dict) -> LabelFreeSignal:
        return cls(drift=bool(d.get("drift")), results=[FeatureResult(**_known(FeatureResult, r))
                                                        for r in d.get("results") or []])


@dataclass(frozen=True)
class EstimatedSignal:
    """The champion's metrics estimated from its outputs alone (CBPE for classifiers, errors by prediction level
    for regressors), each with its 95 % band; ``metric`` is the primary one, compared with its score at promotion
    when the spec sets a trigger (``trigger`` is then the share of that score it may lose)."""

    estimates: dict[str, dict[str, float]]  # metric → {"value", "low", "high"}
    reference_rows: int
    metric: str | None = None
    at_promotion: float | None = None
    trigger: float | None = None
    relative_drop: float | None = None
    drift: bool = False

    @property
    def reason(self) -> str | None:
        if not self.drift:
            return None
        e = self.estimates[self.metric]
        return (f"estimated performance drift: {self.metric} estimated at {e['value']:.4f} "
                f"({e['low']:.4f}–{e['high']:.4f}) without labels, {self.relative_drop:.1%} worse than "
                f"{self.at_promotion:.4f} at promotion (trigger {self.trigger:.1%})")

    def flat(self) -> dict[str, float]:
        """``{metric: value, metric_low: …, metric_high: …}``, the shape the run's MLflow metrics take."""
        out: dict[str, float] = {}
        for metric, e in self.estimates.items():
            out |= {metric: e["value"], f"{metric}_low": e["low"], f"{metric}_high": e["high"]}
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EstimatedSignal:
        return cls(**{"estimates": {}, "reference_rows": 0, **_known(cls, d)})


@dataclass(frozen=True)
class BlockDrift:
    """One block of a block-kind file: its data drift against ``reference`` (the champion's rows of that block,
    or the whole reference) at ``alpha``, and the champion's performance on it (None: too few rows)."""

    reference: str
    alpha: float
    report: DriftReport
    performance: PerformanceSignal | None = None

    @property
    def drift(self) -> bool:
        return self.report.drift_detected or bool(self.performance and self.performance.drift)

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "alpha": self.alpha, "report": self.report.to_dict(),
                "performance": self.performance.to_dict() if self.performance else None}

    @classmethod
    def from_dict(cls, d: dict) -> BlockDrift:
        perf = d.get("performance")
        return cls(reference=d.get("reference") or "", alpha=float(d.get("alpha") or 0.0),
                   report=DriftReport.from_dict(d["report"]),
                   performance=PerformanceSignal.from_dict(perf) if perf else None)


@dataclass(frozen=True)
class DriftVerdict:
    """Every drift signal of one batch and whether they call for a retrain."""

    data: DriftReport | None
    performance: PerformanceSignal | None = None
    decay: DecaySignal | None = None
    concept: ConceptSignal | None = None
    label_free: LabelFreeSignal | None = None
    estimated: EstimatedSignal | None = None
    # block kind: the file's blocks. A block that drifts sets drift_detected without adding to reasons (the
    # block flow says "block drift in …" in the run's reason, and the recorded reasons stay the file's own)
    blocks: dict[str, BlockDrift] = field(default_factory=dict)
    drift_detected: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        return list(self.data.drifted_features) if self.data else []

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "no drift signal"

    @property
    def drifted_blocks(self) -> list[str]:
        """Block kind: the blocks whose data or performance drifts."""
        return [name for name, block in self.blocks.items() if block.drift]

    @property
    def signals(self) -> list[str]:
        """Every reason to act: the file's own reasons, then (block kind) the blocks that drift."""
        drifted = self.drifted_blocks
        return [*self.reasons, *([f"block drift in {', '.join(drifted)}"] if drifted else [])]

    @property
    def real_concept_drift(self) -> bool:
        """The champion got worse on this batch — its score fell since promotion, decays steadily, or the concept
        detectors alarmed on its errors — while the data-drift test found its inputs where they were (features
        were tested and none drifted): the relation between inputs and target has moved, not the inputs, so the
        older labels are suspect. With any input moved, a drop can be the model meeting new regions of the input
        space, where older rows still hold; a score below a fixed threshold is no sign of change."""
        worse = bool((self.performance and self.performance.fell) or (self.decay and self.decay.alarm)
                     or (self.concept and self.concept.alarm))
        data = self.data
        tested = data is not None and any(f.status in ("drift", "no_drift") for f in data.features)
        return worse and tested and not data.drift_detected and not data.drifted_features

    @classmethod
    def of(cls, data: DriftReport | None, *, data_reason: str = "data drift", **signals) -> DriftVerdict:
        """The verdict of these signals: a retrain is called for when any of them says so, and each one that
        does gives its reason (data drift first, then performance, decay, concept, label-free and estimated)."""
        # the report's reason is a sentence; here it is one of the signals joined by "; "
        reasons = ([f"{data_reason}: {data.reason.removeprefix('Drift: ').removesuffix('.')}"]
                   if data and data.drift_detected else [])
        for name in ("performance", "decay", "concept", "label_free", "estimated"):
            said = getattr(signals.get(name), "reason", None)
            if said:
                reasons.append(said)
        return cls(data=data, **signals, drift_detected=bool(reasons), reasons=reasons)

    def to_dict(self) -> dict[str, Any]:
        def plain(signal):
            return signal.to_dict() if signal is not None else {}

        out = {"drift_detected": self.drift_detected, "reasons": list(self.reasons),
               "data": self.data.to_dict() if self.data else None, "performance": plain(self.performance),
               "decay": plain(self.decay), "concept": plain(self.concept), "label_free": plain(self.label_free),
               "estimated": plain(self.estimated)}
        if self.blocks:
            out["blocks"] = {name: b.to_dict() for name, b in self.blocks.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> DriftVerdict:
        """Read back what :meth:`to_dict` wrote (``{}`` for a signal that was not measured)."""
        def signal(kind, key):
            return kind.from_dict(d[key]) if d.get(key) else None

        return cls(data=DriftReport.from_dict(d["data"]) if d.get("data") else None,
                   performance=signal(PerformanceSignal, "performance"), decay=signal(DecaySignal, "decay"),
                   concept=signal(ConceptSignal, "concept"), label_free=signal(LabelFreeSignal, "label_free"),
                   estimated=signal(EstimatedSignal, "estimated"),
                   blocks={n: BlockDrift.from_dict(b) for n, b in (d.get("blocks") or {}).items()},
                   drift_detected=bool(d.get("drift_detected")), reasons=list(d.get("reasons") or []))
