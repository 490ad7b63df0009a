"""Synthetic drifting streams from river's generators, behind one function.

A *concept* is one labelling function of a generator: SEA's ``variant``, Agrawal's, Sine's, STAGGER's and
Mixed's ``classification_function``, a random hyperplane / RBF model / tree for Hyperplane, RandomRBF and
RandomTree (one model seed per concept), and a rotation of the relevant features for Friedman and LED.
Each concept is one seeded river stream; a drift decides, row by row, which stream the row is drawn from:

* ``abrupt``: the concept switches at each position;
* ``gradual``: around each position, the probability of drawing from the new concept follows a curve
  (``sigmoid`` as river's ``ConceptDriftStream``, or ``linear``) over ``width`` rows;
* ``incremental``: the concept parameter itself moves over ``width`` rows (SEA's threshold interpolated,
  Hyperplane's weights moved by ``mag_change``, RandomRBF's centroids moved by ``change_speed``);
* ``recurrent``: concepts cycle (``concepts=(0, 1)`` with ``period`` rows or blocks: 0, 1, 0, 1, …);
* ``virtual``: one concept; after the position, rows are accepted with a probability that grows with one
  input (``feature``), so P(x) changes while the labelling function, hence P(y | x), stays the same.

Abrupt drift is built by concatenating streams rather than with ``ConceptDriftStream(width=1)``, which
overflows in river 0.23.

>>> df = synthetic("sea", 1000, drift=DriftSpec("abrupt", position=500, concepts=(0, 3)), seed=1,
...                include_concept=True)
>>> df.shape, sorted(df.columns)
((1000, 5), ['concept', 'x0', 'x1', 'x2', 'y'])
>>> bool((df["concept"].iloc[:500] == 0).all() and (df["concept"].iloc[500:] == 3).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from river.datasets import synth

from .params import checked

__all__ = ["DRIFT_KINDS", "GENERATORS", "DriftSpec", "Timestamps", "check_drift_kind", "drift_positions",
           "feature_names", "generator_names", "synthetic"]

DRIFT_KINDS = ("abrupt", "gradual", "incremental", "recurrent", "virtual")

_SEA_THRESHOLDS = {0: 8.0, 1: 9.0, 2: 7.0, 3: 9.5}
_STAGGER_LABELS = {
    "size": {0: "small", 1: "medium", 2: "large"},
    "color": {0: "red", 1: "blue", 2: "green"},
    "shape": {0: "circle", 1: "square", 2: "triangle"},
}


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed derived from ``seed`` and ``keys`` (independent streams from one user seed)."""
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0] & 0x7FFFFFFF)


@dataclass(frozen=True)
class _Generator:
    name: str
    task: str  # "classification" or "regression"
    concepts: tuple[int, ...] | None  # valid concept ids; None = any non-negative int
    make: Callable[[int, int, dict], object]  # (concept, stream_seed, params) -> river dataset
    incremental: bool = False
    params: Mapping[str, type] = field(default_factory=dict)  # the ``params`` it takes, and their types


def _rotate(dataset, k: int, n: int):
    """Rotate the first ``n`` features by ``k`` positions: same inputs, another labelling."""
    for x, y in dataset:
        if k % n:
            x = dict(x)
            vals = [x[i] for i in range(n)]
            for i in range(n):
                x[i] = vals[(i + k) % n]
        yield x, y


class _Rotated:
    def __init__(self, dataset, k: int, n: int):
        self.dataset, self.k, self.n = dataset, k, n

    def __iter__(self):
        return _rotate(self.dataset, self.k, self.n)


def _p(params: dict, *keys: str) -> dict:
    return {k: params[k] for k in keys if k in params}


GENERATORS: dict[str, _Generator] = {
    "sea": _Generator(
        "sea", "classification", (0, 1, 2, 3),
        lambda c, s, p: synth.SEA(variant=c, seed=s, **_p(p, "noise")), incremental=True,
        params={"noise": float},
    ),
    "agrawal": _Generator(
        "agrawal", "classification", tuple(range(10)),
        lambda c, s, p: synth.Agrawal(classification_function=c, seed=s, **_p(p, "perturbation")),
        params={"perturbation": float},
    ),
    "hyperplane": _Generator(
        "hyperplane", "classification", None,
        lambda c, s, p: synth.Hyperplane(
            seed=p["seed_model"] + c if "seed_model" in p else s,
            **_p(p, "n_features", "n_drift_features", "noise_percentage", "sigma", "mag_change"),
        ),
        incremental=True,
        params={"seed_model": int, "n_features": int, "n_drift_features": int, "noise_percentage": float,
                "sigma": float, "mag_change": float},
    ),
    "sine": _Generator(
        "sine", "classification", (0, 1, 2, 3),
        lambda c, s, p: synth.Sine(classification_function=c, seed=s, **_p(p, "has_noise")),
        params={"has_noise": bool},
    ),
    "stagger": _Generator(
        "stagger", "classification", (0, 1, 2),
        lambda c, s, p: synth.STAGGER(classification_function=c, seed=s),
    ),
    "mixed": _Generator(
        "mixed", "classification", (0, 1),
        lambda c, s, p: synth.Mixed(classification_function=c, seed=s),
    ),
    "randomrbf": _Generator(
        "randomrbf", "classification", None,
        lambda c, s, p: synth.RandomRBFDrift(
            seed_model=p["seed_model"] + c if "seed_model" in p else s, seed_sample=s,
            **_p(p, "n_classes", "n_features", "n_centroids", "n_drift_centroids", "change_speed"),
        ),
        incremental=True,
        params={"seed_model": int, "n_classes": int, "n_features": int, "n_centroids": int,
                "n_drift_centroids": int, "change_speed": float},
    ),
    "randomtree": _Generator(
        "randomtree", "classification", None,
        lambda c, s, p: synth.RandomTree(
            seed_tree=p["seed_model"] + c if "seed_model" in p else s, seed_sample=s,
            **_p(p, "n_classes", "n_num_features", "n_cat_features", "n_categories_per_feature",
                 "max_tree_depth", "first_leaf_level", "fraction_leaves_per_level"),
        ),
        params={"seed_model": int, "n_classes": int, "n_num_features": int, "n_cat_features": int,
                "n_categories_per_feature": int, "max_tree_depth": int, "first_leaf_level": int,
                "fraction_leaves_per_level": float},
    ),
    "friedman": _Generator(
        "friedman", "regression", None,
        lambda c, s, p: _Rotated(synth.Friedman(seed=s), c, 10),
    ),
    "led": _Generator(
        "led", "classification", None,
        lambda c, s, p: _Rotated(
            synth.LED(seed=s, noise_percentage=p.get("noise_percentage", 0.1),
                      irrelevant_features=p.get("irrelevant_features", True)), c, 7,
        ),
        params={"noise_percentage": float, "irrelevant_features": bool},
    ),
}

_ALIASES = {"random_rbf": "randomrbf", "rbf": "randomrbf", "random_tree": "randomtree"}


def generator_names() -> list[str]:
    """The names accepted by :func:`synthetic`."""
    return list(GENERATORS)


def feature_names(generator: str, params: Mapping | None = None) -> list[str]:
    """The input columns ``generator`` writes with ``params`` (seen on one row of its first concept).

    >>> feature_names("sea"), feature_names("hyperplane", {"n_features": 2})
    (['x0', 'x1', 'x2'], ['x0', 'x1'])
    """
    gen = _lookup(generator)
    params = checked(gen.name, params, {k: [kind] for k, kind in gen.params.items()})
    x, _ = next(iter(gen.make(gen.concepts[0] if gen.concepts else 0, 0, params)))
    return list(_flatten(x, gen))


def _check_names(gen: _Generator, params: dict, target: str, block_column: str | None, time_column: str | None,
                 include_concept: bool) -> None:
    """Refuse a target or block column named like another column: pandas would overwrite that column."""
    features = feature_names(gen.name, params)
    taken = dict.fromkeys(features, f"a feature column of {gen.name} (its features: {', '.join(features)})")
    if time_column:
        taken[time_column] = "the timestamp column"
    if include_concept:
        taken["concept"] = "the ground-truth column"
    if target in taken:
        raise ValueError(f"target must not name {taken[target]}, got {target!r}")
    taken[target] = "the target column"
    if block_column in taken:
        raise ValueError(f"block_column must not name {taken[block_column]}, got {block_column!r}")


def _lookup(name: str) -> _Generator:
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key).replace("_", "")
    if key not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; valid generators: {', '.join(GENERATORS)}")
    return GENERATORS[key]


def check_drift_kind(generator: str, kind: str) -> None:
    """Refuse a drift ``kind`` that ``generator`` cannot make (checked before the drift's other parameters)."""
    if kind == "incremental" and not _lookup(generator).incremental:
        ok = ", ".join(n for n, g in GENERATORS.items() if g.incremental)
        raise ValueError(f"incremental drift needs a moving concept parameter; supported generators: {ok}")


def drift_positions(generator: str, n_rows: int, drift: DriftSpec | None, rows_per_block: int | None = None) -> list:
    """The row of each documented change (the centre of a gradual or incremental one), as :func:`synthetic`
    places them: ``drift.position`` in rows, the middle of the data by default."""
    return [] if drift is None else _plan(drift, _lookup(generator), n_rows, rows_per_block).positions


@dataclass(frozen=True)
class DriftSpec:
    """Where and how the concept changes.

    ``position`` (one value or several, one per transition) and ``width`` are counted in ``unit``
    (``"rows"`` or ``"blocks"``; blocks need ``rows_per_block`` in :func:`synthetic`). ``concepts`` lists
    the concept of each segment (``len(position) + 1`` entries); for ``recurrent`` with ``period``, the
    concepts cycle every ``period`` units. The default position is the middle of the data.
    """

    kind: str = "abrupt"
    position: int | Sequence[int] | None = None
    width: int = 0
    concepts: Sequence[int] | None = None
    unit: str = "rows"
    period: int | None = None
    curve: str = "sigmoid"
    feature: str | None = None
    strength: float = 4.0

    def __post_init__(self):
        if self.kind not in DRIFT_KINDS:
            raise ValueError(f"unknown drift kind {self.kind!r}; valid kinds: {', '.join(DRIFT_KINDS)}")
        if self.unit not in ("rows", "blocks"):
            raise ValueError(f"unit must be 'rows' or 'blocks', got {self.unit!r}")
        if self.curve not in ("sigmoid", "linear"):
            raise ValueError(f"curve must be 'sigmoid' or 'linear', got {self.curve!r}")
        if self.width < 0:
            raise ValueError(f"width must be >= 0, got {self.width}")
        if self.kind in ("gradual", "incremental") and self.width <= 0:
            raise ValueError(f"{self.kind} drift needs width > 0")
        if self.period is not None and self.period <= 0:
            raise ValueError(f"period must be > 0, got {self.period}")
        if self.period is not None and self.kind != "recurrent":
            raise ValueError("period is only used by recurrent drift")


@dataclass(frozen=True)
class Timestamps:
    """A timestamp column: ``start``, then one row every ``freq`` (a pandas offset such as ``"1h"``)."""

    start: str = "2024-01-01"
    freq: str = "1min"
    column: str = "timestamp"


@dataclass
class _Plan:
    """Per-row concept schedule computed from a DriftSpec."""

    positions: list[float]
    concepts: list[int]
    width: float
    kind: str
    curve: str
    extra: dict = field(default_factory=dict)

    def prob(self, k: int, i: np.ndarray) -> np.ndarray:
        """Probability that row ``i`` is past transition ``k``."""
        pos, w = self.positions[k], self.width
        if self.kind == "abrupt" or w <= 0:
            return (i >= pos).astype(float)
        if self.curve == "linear":
            return np.clip((i - pos) / w + 0.5, 0.0, 1.0)
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (i - pos) / w, -700, 700)))


def _plan(drift: DriftSpec | None, gen: _Generator, n_rows: int, rows_per_block: int | None) -> _Plan:
    if drift is None:
        return _Plan([], [0], 0, "abrupt", "sigmoid")
    scale = 1
    if drift.unit == "blocks":
        if not rows_per_block:
            raise ValueError("positions in blocks need rows_per_block")
        scale = rows_per_block
    if drift.kind == "recurrent" and drift.period is not None:
        if drift.position is not None:
            raise ValueError("recurrent drift takes period or position, not both")
        step = drift.period * scale
        positions = [float(p) for p in range(step, n_rows, step)]
        cycle = list(drift.concepts) if drift.concepts is not None else [0, 1]
        concepts = [cycle[k % len(cycle)] for k in range(len(positions) + 1)]
    else:
        if drift.position is None:
            positions = [n_rows / 2] if drift.kind != "recurrent" else [n_rows / 3, 2 * n_rows / 3]
        elif isinstance(drift.position, (int, float)):
            positions = [float(drift.position) * scale]
        else:
            positions = [float(p) * scale for p in drift.position]
        if drift.concepts is not None:
            concepts = list(drift.concepts)
        elif drift.kind == "recurrent":
            concepts = [k % 2 for k in range(len(positions) + 1)]
        elif drift.kind == "virtual":
            concepts = [0]
        else:
            concepts = list(range(len(positions) + 1))
    if positions != sorted(positions):
        raise ValueError(f"drift positions must increase, got {positions}")
    if drift.kind == "virtual":
        if len(positions) != 1 or len(concepts) != 1:
            raise ValueError("virtual drift has one position and one concept (the concept does not change)")
    elif len(concepts) != len(positions) + 1:
        raise ValueError(
            f"{len(positions)} drift position(s) need {len(positions) + 1} concepts, got {len(concepts)}"
        )
    if drift.kind == "recurrent" and len(set(concepts)) == len(concepts):
        raise ValueError("recurrent drift needs a concept that comes back, e.g. concepts=(0, 1, 0)")
    for p in positions:
        if not 0 < p < n_rows:
            raise ValueError(f"drift position {p:g} (rows) is outside the data (0, {n_rows})")
    if gen.concepts is not None:
        bad = [c for c in concepts if c not in gen.concepts]
        if bad:
            raise ValueError(
                f"concept(s) {bad} not valid for {gen.name}; valid: {', '.join(map(str, gen.concepts))}"
            )
    elif any((not isinstance(c, (int, np.integer))) or c < 0 for c in concepts):
        raise ValueError(f"concepts for {gen.name} are non-negative integers, got {concepts}")
    check_drift_kind(gen.name, drift.kind)
    return _Plan(positions, [int(c) for c in concepts], drift.width * scale, drift.kind, drift.curve,
                 {"feature": drift.feature, "strength": drift.strength})


def _flatten(x: dict, gen: _Generator) -> dict:
    out = {}
    for k, v in x.items():
        if gen.name == "stagger":
            out[k] = _STAGGER_LABELS[k][v]
        else:
            out[f"x{k}" if isinstance(k, int) else str(k)] = v
    return out


def _norm_label(y):
    if isinstance(y, (bool, np.bool_)):
        return int(y)
    return y


def synthetic(
    generator: str,
    n_rows: int,
    *,
    drift: DriftSpec | None = None,
    seed: int = 0,
    params: Mapping | None = None,
    class_balance: float | Mapping | None = None,
    timestamps: Timestamps | Mapping | str | None = None,
    block_column: str | None = None,
    rows_per_block: int | None = None,
    target: str = "y",
    include_concept: bool = False,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Generate ``n_rows`` rows of ``generator`` with an optional ``drift``.

    ``params`` go to the river generator (e.g. ``{"noise": 0.1}`` for SEA, ``{"n_features": 5}`` for
    Hyperplane; ``mag_change`` / ``change_speed`` set the speed of incremental drift); a name the generator
    does not take (see ``GENERATORS[name].params``) or a value of the wrong type raises ``ValueError``. ``class_balance``
    is the share of class 1 (binary) or a mapping ``{label: share}``; rows are drawn by rejection sampling
    from the current concept so P(x | y) is kept. ``timestamps`` adds a time column, ``block_column`` with
    ``rows_per_block`` a block number (1, 2, …). ``include_concept`` adds the ground-truth concept of
    each row in a ``concept`` column. ``progress`` is called with the number of rows done.
    """
    gen = _lookup(generator)
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    if rows_per_block is not None and rows_per_block < 1:
        raise ValueError(f"rows_per_block must be >= 1, got {rows_per_block}")
    if block_column and not rows_per_block:
        raise ValueError("block_column needs rows_per_block")
    params = checked(gen.name, params, {k: [kind] for k, kind in gen.params.items()})
    stamps = None if timestamps is None else _timestamps(timestamps)
    _check_names(gen, params, target, block_column, stamps and stamps.column, include_concept)
    plan = _plan(drift, gen, n_rows, rows_per_block)
    rng = np.random.default_rng(derive_seed(seed, 0))
    idx = np.arange(n_rows)

    # Concept of every row: count the transitions the row is past (one uniform draw per row).
    if plan.kind in ("abrupt", "gradual", "recurrent") and plan.positions:
        u = rng.random(n_rows)
        past = np.zeros(n_rows, dtype=int)
        for k in range(len(plan.positions)):
            past += u < plan.prob(k, idx)
        row_concepts = np.asarray(plan.concepts)[past]
    else:
        row_concepts = np.full(n_rows, plan.concepts[0])

    if plan.kind == "incremental" and gen.name == "hyperplane":
        params.setdefault("sigma", 0.0)  # move steadily in one direction
        params.setdefault("n_drift_features", params.get("n_features", 10) // 2)

    streams: dict[int, Iterator] = {}
    datasets: dict[int, object] = {}
    for c in sorted(set(row_concepts.tolist()) | {plan.concepts[0]}):
        datasets[c] = gen.make(c, derive_seed(seed, 1, c), params)
        streams[c] = iter(datasets[c])

    labels, label_p = _class_targets(class_balance, gen, params)
    wanted = rng.choice(len(labels), size=n_rows, p=label_p) if labels else None

    tilt = None
    if plan.kind == "virtual":
        tilt = _Tilt(gen, plan, params, seed)
        tilt_s = plan.extra["strength"] * plan.prob(0, idx)

    move = _incremental_hook(gen, plan, datasets, params) if plan.kind == "incremental" else None

    rows, ys = [], []
    step = max(1, n_rows // 100)
    for i in range(n_rows):
        if move is not None:
            move(i)
        c = int(row_concepts[i])
        want = labels[wanted[i]] if wanted is not None else None
        s = tilt_s[i] if tilt is not None else 0.0
        x, y = _draw(streams[c], rng, want, tilt, s, gen)
        rows.append(x)
        ys.append(y)
        if progress is not None and (i + 1) % step == 0:
            progress(i + 1)
    if progress is not None and n_rows % step:
        progress(n_rows)

    df = pd.DataFrame.from_records(rows)
    df[target] = ys
    if include_concept:
        df["concept"] = row_concepts if plan.kind != "incremental" else _incremental_concepts(plan, idx)
    if block_column:
        df.insert(0, block_column, idx // rows_per_block + 1)
    if stamps is not None:
        df.insert(0, stamps.column, _timeline(stamps.start, n_rows, stamps.freq))
    return df


#: calendar offsets pandas snaps to a period's end or start, in months per step
_MONTHS_PER_STEP = {"MonthEnd": 1, "MonthBegin": 1, "QuarterEnd": 3, "QuarterBegin": 3, "YearEnd": 12, "YearBegin": 12}


def _timeline(start, n: int, freq: str) -> pd.DatetimeIndex:
    """``n`` times from ``start`` on, one every ``freq``. Calendar steps (months, quarters, years, weeks) are
    counted from ``start`` itself: pandas would snap them to the period's end ("1q" from 2024-01-01 would begin
    on 2024-03-31, "1W" on the next Sunday). A week that names its day ("W-MON") falls on that day.

    >>> _timeline("2024-01-15", 3, "1QE").strftime("%Y-%m-%d").tolist()
    ['2024-01-15', '2024-04-15', '2024-07-15']
    >>> _timeline("2024-01-03", 2, "W").strftime("%a %d").tolist(), _timeline("2024-01-03", 2, "W-MON").strftime("%a %d").tolist()
    (['Wed 03', 'Wed 10'], ['Mon 08', 'Mon 15'])
    """
    from pandas.tseries.frequencies import to_offset
    from pandas.tseries.offsets import Week

    offset, first = to_offset(freq), pd.Timestamp(start)
    if (months := _MONTHS_PER_STEP.get(type(offset).__name__)) is not None:
        return pd.DatetimeIndex([first + pd.DateOffset(months=months * offset.n * k) for k in range(n)])
    if isinstance(offset, Week) and "-" not in freq:  # "W", "2W": every 7 days from start
        return pd.date_range(first, periods=n, freq=pd.Timedelta(weeks=offset.n))
    return pd.date_range(first, periods=n, freq=freq)


def _incremental_concepts(plan: _Plan, idx: np.ndarray) -> np.ndarray:
    """For incremental drift: the fraction of the way from the first concept (0.0 … n_transitions)."""
    frac = np.zeros(len(idx))
    for k, pos in enumerate(plan.positions):
        frac += np.clip((idx - pos) / plan.width + 0.5, 0, 1)
    return frac


def _incremental_hook(gen: _Generator, plan: _Plan, datasets: dict, params: dict) -> Callable[[int], None]:
    ds = datasets[plan.concepts[0]]
    windows = [(p - plan.width / 2, p + plan.width / 2) for p in plan.positions]

    def active(i: int) -> int | None:
        for k, (a, b) in enumerate(windows):
            if a <= i < b:
                return k
        return None

    if gen.name == "sea":
        thr = [_SEA_THRESHOLDS[c] for c in plan.concepts]

        def move(i: int) -> None:
            t = thr[0]
            for k, (a, b) in enumerate(windows):
                f = min(1.0, max(0.0, (i - a) / (b - a)))
                t += f * (thr[k + 1] - thr[k])
            ds._threshold = t

        return move
    if gen.name == "hyperplane":
        speed = float(params.get("mag_change", 1.0 / plan.width))

        def move(i: int) -> None:
            on = active(i) is not None
            # river creates the directions when iteration starts: alternate them once they exist
            if on and hasattr(ds, "_change_direction") and not getattr(ds, "_calmops_directions", False):
                # Alternate the directions (river starts them all at +1) so the hyperplane rotates
                # instead of mostly sliding; with sigma 0 they then move steadily.
                ds._change_direction = [(-1) ** k if d else 0 for k, d in enumerate(ds._change_direction)]
                ds._calmops_directions = True
            ds.mag_change = speed if on else 0.0

        return move
    speed = float(params.get("change_speed", 1.0 / plan.width))

    def move(i: int) -> None:  # randomrbf
        ds.change_speed = speed if active(i) is not None else 0.0

    ds.change_speed = 0.0
    return move


def _classes(gen: _Generator, params: Mapping) -> list[int]:
    """The class labels ``gen`` produces (booleans become 0/1)."""
    return list(range(10)) if gen.name == "led" else list(range(int(params.get("n_classes", 2))))


def _class_targets(class_balance, gen: _Generator, params: Mapping):
    """Labels and their shares. A number is the share of class 1; a mapping gives the share of each class
    it names, and the classes it does not name share the rest equally. Named shares must not add up to
    more than 1, nor (when every class is named) to less."""
    if class_balance is None:
        return None, None
    if gen.task != "classification":
        raise ValueError(f"class_balance needs a classification generator; {gen.name} is regression")
    if isinstance(class_balance, (int, float)):
        if not 0 < class_balance < 1:
            raise ValueError(f"class_balance as a number is the share of class 1, in (0, 1); got {class_balance}")
        class_balance = {1: class_balance}
    mapping = {int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k: float(v)
               for k, v in dict(class_balance).items()}
    labels = _classes(gen, params)
    unknown = [k for k in mapping if k not in labels]
    if unknown:
        raise ValueError(f"class_balance names unknown class(es) {unknown}; {gen.name}'s classes: "
                         f"{', '.join(map(str, labels))}")
    if any(not 0 <= v <= 1 for v in mapping.values()):
        raise ValueError(f"class_balance shares must be between 0 and 1, got {mapping}")
    total, rest = sum(mapping.values()), [k for k in labels if k not in mapping]
    if total > 1 + 1e-9 or (not rest and abs(total - 1) > 1e-9):
        raise ValueError(f"class_balance shares add up to {total:g}, {'more than' if rest else 'not'} 1 ({mapping})")
    shares = {**mapping, **{k: (1 - total) / len(rest) for k in rest}}
    p = np.clip(np.asarray([shares[k] for k in labels]), 0, None)
    return labels, p / p.sum()


class _Tilt:
    """Acceptance probability for virtual drift: a logistic function of one standardized input."""

    def __init__(self, gen: _Generator, plan: _Plan, params: dict, seed: int):
        pilot = gen.make(plan.concepts[0], derive_seed(seed, 2), params)
        xs = [_flatten(x, gen) for x, _ in _take(pilot, 2000)]
        pdf = pd.DataFrame.from_records(xs)
        feature = plan.extra["feature"]
        if feature is None:
            numeric = [c for c in pdf.columns if pd.api.types.is_float_dtype(pdf[c])]
            feature = numeric[0] if numeric else pdf.columns[0]
        if feature not in pdf.columns:
            raise ValueError(f"unknown feature {feature!r} for {gen.name}; features: {', '.join(pdf.columns)}")
        col = pdf[feature]
        if pd.api.types.is_numeric_dtype(col):
            self.codes = None
            vals = col.astype(float)
        else:
            cats = sorted(col.astype(str).unique())
            self.codes = {c: i for i, c in enumerate(cats)}
            vals = col.astype(str).map(self.codes).astype(float)
        self.feature = feature
        self.mean = float(vals.mean())
        self.std = float(vals.std()) or 1.0

    def accept_prob(self, x: dict, s: float) -> float:
        v = x[self.feature]
        v = float(self.codes[str(v)]) if self.codes is not None else float(v)
        z = (v - self.mean) / self.std
        return 1.0 / (1.0 + math.exp(-max(-700.0, min(700.0, s * z))))


def _take(dataset, n):
    it = iter(dataset)
    for _ in range(n):
        yield next(it)


def _draw(stream: Iterator, rng: np.random.Generator, want, tilt: _Tilt | None, s: float, gen: _Generator):
    for _ in range(200_000):
        x, y = next(stream)
        y = _norm_label(y)
        x = _flatten(x, gen)
        if want is not None and y != want:
            continue
        if tilt is not None and s and rng.random() >= tilt.accept_prob(x, s):
            continue
        return x, y
    raise ValueError(f"{gen.name} did not produce class {want!r} in 200000 draws; check class_balance labels")


def _timestamps(spec) -> Timestamps:
    if isinstance(spec, Timestamps):
        return spec
    if isinstance(spec, str):
        return Timestamps(start=spec)
    return Timestamps(**dict(spec))
