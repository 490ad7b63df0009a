"""Report types: what was tested, what was found, and why the decision is what it is."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _from(cls, d: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class FeatureResult:
    """One test on one column."""

    feature: str
    kind: str  # numeric | categorical | boolean | datetime | prediction | confidence
    test: str
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None
    effect_size: float | None
    threshold: float | None  # the minimum effect used
    drift: bool
    status: str  # drift | no_drift | insufficient_data | error
    detail: str = ""
    n_reference: int = 0
    n_batch: int = 0

    def to_dict(self) -> dict:
        return _clean(asdict(self))


@dataclass
class MultivariateResult:
    """One multivariate method over all features."""

    method: str  # mmd | domain_classifier | pca
    statistic: float | None
    p_value: float | None
    threshold: float | None
    drift: bool
    status: str
    detail: str = ""
    feature_importances: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _clean(asdict(self))


@dataclass
class SchemaSignal:
    """A change of the table itself: columns, categories, null rates."""

    kind: str  # missing_column | new_column | new_categories | vanished_categories | null_rate
    column: str
    detail: str
    drift: bool  # whether the signal counts towards the drift decision
    reference: float | None = None
    batch: float | None = None
    p_value: float | None = None

    def to_dict(self) -> dict:
        return _clean(asdict(self))


def new_column_signal(column: str) -> SchemaSignal:
    """A column of the batch that the reference does not have: named, not tested, not drift."""
    return SchemaSignal("new_column", column, "column not in the reference; not tested", drift=False)


@dataclass
class Distribution:
    """One column's values binned the same way on both sides: the reference-quantile bins of a numeric column,
    the reference categories of a categorical one (values the reference did not have go to a last bin); shares
    of the non-missing values on each side."""

    bins: list[str]
    reference: list[float]
    batch: list[float]

    def to_dict(self) -> dict:
        return _clean(asdict(self))


@dataclass
class DriftReport:
    features: list[FeatureResult]
    multivariate: list[MultivariateResult]
    schema_signals: list[SchemaSignal]
    drift_detected: bool
    drifted_features: list[str]  # ranked culprits, worst first
    reason: str
    n_reference: int
    n_batch: int
    config: dict
    feature_scores: dict[str, float] = field(default_factory=dict)  # culprit score per drifted feature
    schema_version: int = SCHEMA_VERSION
    distributions: dict[str, Distribution] = field(default_factory=dict)  # per tested column

    def to_dict(self) -> dict:
        return _clean(
            {
                "schema_version": self.schema_version,
                "drift_detected": self.drift_detected,
                "reason": self.reason,
                "drifted_features": list(self.drifted_features),
                "feature_scores": dict(self.feature_scores),
                "n_reference": self.n_reference,
                "n_batch": self.n_batch,
                "features": [f.to_dict() for f in self.features],
                "multivariate": [m.to_dict() for m in self.multivariate],
                "schema_signals": [s.to_dict() for s in self.schema_signals],
                "config": self.config,
                "distributions": {k: d.to_dict() for k, d in self.distributions.items()},
            }
        )

    @classmethod
    def from_dict(cls, d: dict) -> DriftReport:
        return cls(
            features=[_from(FeatureResult, f) for f in d.get("features", [])],
            multivariate=[_from(MultivariateResult, m) for m in d.get("multivariate", [])],
            schema_signals=[_from(SchemaSignal, s) for s in d.get("schema_signals", [])],
            drift_detected=bool(d.get("drift_detected")),
            drifted_features=list(d.get("drifted_features", [])),
            reason=d.get("reason", ""),
            n_reference=int(d.get("n_reference", 0)),
            n_batch=int(d.get("n_batch", 0)),
            config=dict(d.get("config", {})),
            feature_scores=dict(d.get("feature_scores", {})),
            schema_version=int(d.get("schema_version", SCHEMA_VERSION)),
            distributions={k: _from(Distribution, v) for k, v in (d.get("distributions") or {}).items()},
        )

    def table_rows(self) -> list[dict]:
        """One row per feature (its strongest test), for a Prefect table artifact."""
        rows: dict[str, dict] = {}
        for f in self.features:
            row = {
                "feature": f.feature,
                "kind": f.kind,
                "test": f.test,
                "status": f.status,
                "drift": f.drift,
                "statistic": _fmt(f.statistic),
                "p_value": _fmt(f.p_value),
                "p_adjusted": _fmt(f.p_adjusted),
                "effect_size": _fmt(f.effect_size),
                "threshold": _fmt(f.threshold),
                "detail": f.detail,
            }
            prev = rows.get(f.feature)
            if prev is None or _row_rank(row) > _row_rank(prev):
                rows[f.feature] = row
        order = {name: i for i, name in enumerate(self.drifted_features)}
        return sorted(rows.values(), key=lambda r: (order.get(r["feature"], len(order)), r["feature"]))

    def summary_markdown(self) -> str:
        lines = [
            f"## Drift report: {'DRIFT' if self.drift_detected else 'no drift'}",
            "",
            self.reason,
            "",
            (
                f"Reference rows: {self.n_reference} · batch rows: {self.n_batch} · "
                f"correction: {self.config.get('correction')} · alpha: {self.config.get('alpha')} · "
                f"aggregation: {self.config.get('aggregation')}"
            ),
            "",
        ]
        if self.drifted_features:
            lines += ["**Culprits (worst first):** " + ", ".join(self.drifted_features), ""]
        lines += [
            "| feature | test | status | statistic | p adj. | effect | min effect | detail |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.table_rows():
            lines.append(
                f"| {r['feature']} | {r['test']} | {r['status']} | {r['statistic']} | {r['p_adjusted']} | "
                f"{r['effect_size']} | {r['threshold']} | {r['detail'].replace('|', '/')} |"
            )
        if self.multivariate:
            lines += ["", "| multivariate | status | statistic | p-value | threshold | detail |"]
            lines += ["|---|---|---|---|---|---|"]
            for m in self.multivariate:
                lines.append(
                    f"| {m.method} | {m.status} | {_fmt(m.statistic)} | {_fmt(m.p_value)} | {_fmt(m.threshold)} | {m.detail} |"
                )
        if self.schema_signals:
            lines += ["", "**Schema signals:**", ""]
            lines += [
                f"- {s.kind} `{s.column}`: {s.detail}" + (" (counts as drift)" if s.drift else "")
                for s in self.schema_signals
            ]
        return "\n".join(lines) + "\n"


_STATUS_RANK = {"drift": 3, "error": 2, "no_drift": 1, "insufficient_data": 0}


def _row_rank(row: dict) -> tuple:
    ratio = 0.0
    try:
        ratio = float(row["effect_size"]) / float(row["threshold"]) if row["threshold"] else 0.0
    except (TypeError, ValueError):
        ratio = 0.0
    return (_STATUS_RANK.get(row["status"], 0), ratio)


def _fmt(v: float | None) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return float(f"{float(v):.6g}")
