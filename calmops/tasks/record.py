"""Record: what a run did, in MLflow (params, metrics, decision, drift report) and as Prefect artifacts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import mlflow

from calmops.core import registry
from calmops.core.names import Decision, shown_decision
from calmops.core.report_page import render_report
from calmops.core.verdict import DriftVerdict
from calmops.tasks import step

REPORT_ARTIFACT = "drift/report.html"  # the run's drift report, one self-contained page


@dataclass
class RunOutcome:
    """The answer of one run; ``calmops run --json`` prints exactly this."""

    pipeline: str
    file: str
    sha256: str | None
    decision: str
    reason: str
    drift_detected: bool | None = False  # None: no drift check was made (a first model, a refused file)
    drifted_features: list[str] = field(default_factory=list)
    champion_version: int | None = None
    challenger_version: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    flow_run_id: str | None = None
    kind: str = "stream"
    rows: int | None = None
    retrain_mode: str | None = None
    predictions_file: str | None = None
    breaker_state: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flat_metrics(prefix: str, scores: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}_{k}": float(v) for k, v in scores.items() if isinstance(v, (int, float))}


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)  # as mlflow.log_dict writes it


def _decision_tags(outcome: RunOutcome, spec_yaml: str | None, *, checked: bool = True) -> dict[str, str]:
    """The run's tags; the drift answer only when a drift check was made (``checked``)."""
    tags = {
        "calmops.decision": outcome.decision,
        "calmops.reason": registry.reason_tag(outcome.reason),
        "calmops.file": outcome.file,
        "calmops.sha256": outcome.sha256 or "",
        "calmops.flow_run_id": outcome.flow_run_id or "",
        "calmops.drift_detected": str(outcome.drift_detected).lower(),
        "calmops.drifted_features": ",".join(outcome.drifted_features)[:5000],
        "calmops.champion_version": str(outcome.champion_version or ""),
        "calmops.challenger_version": str(outcome.challenger_version or ""),
        "calmops.retrain_mode": outcome.retrain_mode or "",
        "calmops.kind": outcome.kind,
        "calmops.spec_sha256": hashlib.sha256(spec_yaml.encode()).hexdigest() if spec_yaml else "",
    }
    if not checked:
        del tags["calmops.drift_detected"], tags["calmops.drifted_features"]
    return tags


@step("record", retries=2)
def record_run(outcome: RunOutcome, verdict: DriftVerdict | None, params: dict[str, Any],
               spec_yaml: str | None = None) -> None:
    """Log the run's outcome into its MLflow run (the verdict as ``drift/verdict.json``, its data report also
    as ``drift/report.json`` and ``drift/summary.md``) and publish Prefect artifacts."""
    drift = verdict.to_dict() if verdict else None
    if outcome.mlflow_run_id:
        flat: dict[str, float] = {"rows": float(outcome.rows or 0)}
        if drift:  # else no check was made (a first model, a refused file): its drift is unknown, not "no"
            flat.update(drift_detected=float(outcome.drift_detected),
                        n_drifted_features=float(len(outcome.drifted_features)))
        for who, scores in outcome.metrics.items():
            flat.update(_flat_metrics(who, scores))
        decided = outcome.to_dict()
        files = {"outcome.json": _json(decided)}
        if spec_yaml:
            files["spec.yaml"] = spec_yaml
        if drift:
            files["drift/verdict.json"] = _json(drift)
            files[REPORT_ARTIFACT] = render_report(decided, verdict)
            if verdict.data:
                files["drift/report.json"] = _json(drift["data"])
                files["drift/summary.md"] = verdict.data.summary_markdown()
        # one point per metric and outcome: stamped with when the outcome was decided, a retry of this step
        # logs the same points again, which MLflow keeps once; a later outcome (failed) is the latest point.
        # The decision ends the run: FAILED for a run that failed, so MLflow's own status filter finds them.
        registry.log_to_run(
            outcome.mlflow_run_id,
            params={k: str(v)[:500] for k, v in params.items()},
            tags=_decision_tags(outcome, spec_yaml, checked=drift is not None),
            metrics=flat, timestamp_ms=int(datetime.fromisoformat(outcome.decided_at).timestamp() * 1000),
            files=files,
            end="FAILED" if outcome.decision == Decision.FAILED else "FINISHED",
        )
    publish_artifacts(outcome, verdict)


def decision_markdown(outcome: RunOutcome, *, with_report: bool = False, linked: bool = True) -> str:
    """The decision as the Prefect UI shows it; ``with_report``: a drift check was made, its report is in MLflow;
    ``linked``: the MLflow run's page may be looked up to link to (not while the tracking server is out of reach)."""
    url = None
    if linked and outcome.mlflow_run_id and registry.mlflow_ui():  # only a UI to link to is worth the look-up
        try:
            run = mlflow.get_run(outcome.mlflow_run_id)
            url = registry.run_url(outcome.mlflow_run_id, run.info.experiment_id)
        except Exception:  # noqa: BLE001 - the link is a convenience
            url = None
    mlflow_ref = f"[{outcome.mlflow_run_id}]({url})" if url else f"`{outcome.mlflow_run_id}`"
    lines = [
        f"# {outcome.pipeline} · {outcome.file}",
        "",
        f"**Decision:** `{shown_decision(outcome.decision)}`  ",
        f"**Why:** {outcome.reason}  ",
        f"**Drift:** {('yes' if outcome.drift_detected else 'no') if with_report else 'not checked'}"
        + (f" ({', '.join(outcome.drifted_features[:10])})" if outcome.drifted_features else "") + "  ",
        f"**Champion version:** {outcome.champion_version if outcome.champion_version is not None else '-'}  ",
        f"**Challenger version:** {outcome.challenger_version if outcome.challenger_version is not None else '-'}  ",
        f"**MLflow run:** {mlflow_ref}  ",
        f"**File SHA-256:** `{outcome.sha256}`",
    ]
    if with_report:
        lines[-1] += "  "
        lines.append(f"**Drift report:** `{REPORT_ARTIFACT}` in the MLflow run's artifacts, a page that opens "
                     f"offline (or `calmops report {outcome.pipeline} {outcome.file}`)")
    for who, scores in outcome.metrics.items():
        shown = {k: round(v, 4) for k, v in scores.items() if isinstance(v, (int, float))}
        lines.append(f"\n**{who}:** `{json.dumps(shown)}`")
    return "\n".join(lines) + "\n"


def publish_artifacts(outcome: RunOutcome, verdict: DriftVerdict | None, *, linked: bool = True) -> None:
    """The decision (and the drift per feature) as artifacts of the Prefect flow run; ``linked``: see
    :func:`decision_markdown`."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    key = f"calmops-{outcome.pipeline}"
    create_markdown_artifact(decision_markdown(outcome, with_report=verdict is not None, linked=linked),
                             key=f"{key}-decision",
                             description=f"Decision for {outcome.file}")
    if verdict and verdict.data:
        rows = verdict.data.table_rows()
        if rows:
            create_table_artifact(rows, key=f"{key}-drift", description=f"Drift per feature for {outcome.file}")
