"""Steps every kind's flow shares: the gate (file, ledger, breaker), the MLflow run, and the finish.

A flow for a kind composes these with the tasks; it never re-implements them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from calmops.core import registry, statedb
from calmops.core.awaiting import Awaiting
from calmops.core.breaker import BreakerPolicy, read_breaker, update_breaker
from calmops.core.errors import described
from calmops.core.features import feature_columns
from calmops.core.flow_runs import file_run_name
from calmops.core.logs import RunLog
from calmops.core.names import Decision, shown_decision
from calmops.core.pause import Pause, paused
from calmops.core.registry import InputSchema
from calmops.core.spec import PipelineSpec, build_estimator
from calmops.core.store import (
    LABELS_ENTRY,
    Abandoned,
    Ledger,
    PipelinePaths,
    append_history,
    arrival_time,
    bounded_name,
    drop_history,
    entry_name,
    holds,
    ledger,
    ledger_name,
    move_to_processed,
    not_a_regular_file,
    pending_files,
    pipeline_paths,
    quarantine,
    read_spec,
    sha256_of,
)
from calmops.core.verdict import DriftVerdict
from calmops.flows.fair_turns import (
    CHECK_EVERY,
    GiveWay,
    announce,
    should_give_way,
    started_by_a_worker,
    step_back,
    turn_budget,
)
from calmops.flows.redundant import cancel_redundant_runs
from calmops.tasks import step
from calmops.tasks.drift import DriftInput, check_drift
from calmops.tasks.drift.data import build_profile
from calmops.tasks.evaluate import evaluate_models, primary_metric
from calmops.tasks.ingest import Batch, RejectedInput, ingest
from calmops.tasks.labels import keep_for_labels
from calmops.tasks.predict import predict
from calmops.tasks.record import RunOutcome, publish_artifacts, record_run
from calmops.tasks.retrain import TrainingResult
from calmops.tasks.validate import looks_continuous

#: True while this process holds its pipeline's turn (see :func:`pipeline_turn`)
_IN_TURN: ContextVar[bool] = ContextVar("calmops_in_turn", default=False)


class RunFailed(RuntimeError):
    """A run that could not complete; carries the outcome that was recorded."""

    def __init__(self, outcome: RunOutcome):
        super().__init__(f"{outcome.pipeline}/{outcome.file}: {outcome.reason}")
        self.outcome = outcome


@dataclass
class RunContext:
    """What every step of one file's run needs to know."""

    spec: PipelineSpec
    paths: PipelinePaths
    ledger: Ledger
    path: Path
    sha256: str
    log: RunLog
    flow_run_id: str | None
    training_allowed: bool
    breaker_state: str
    mlflow_run_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    signals: dict[str, Any] = field(default_factory=dict)  # what ingest noticed (new classes, new columns)
    realized: dict[str, dict] = field(default_factory=dict)  # a labels file: realized_v<N> → scores
    labels_file: bool = False  # the run decides a labels file: its rows were predicted when their features came
    champion_version: int | None = None  # the champion when the run began (None: none yet, or not read)

    def outcome(self, decision: str, reason: str, **kw) -> RunOutcome:
        details = {**self.signals, **({"folder": "labels"} if self.labels_file else {}), **kw.pop("details", {})}
        if self.realized:
            kw["metrics"] = {**kw.get("metrics", {}), **self.realized}
        return RunOutcome(pipeline=self.spec.name, file=self.path.name, sha256=self.sha256, decision=decision,
                          reason=reason, mlflow_run_id=self.mlflow_run_id, flow_run_id=self.flow_run_id,
                          kind=self.spec.kind, breaker_state=self.breaker_state, details=details, **kw)


def answered(spec: PipelineSpec, path: Path, sha256: str | None, decision: str, reason: str, **kw) -> RunOutcome:
    """The answer of a run that read no row of its file (a refused link or device, a duplicate, a file held
    behind another): no drift check was made, so its drift is unknown (None), not "no"."""
    return RunOutcome(spec.name, path.name, sha256, decision, reason, drift_detected=None, kind=spec.kind, **kw)


def current_flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else None


def run_name(kind: str) -> str:
    """Flow-run names that say kind, pipeline and file as the ledger and ``calmops status`` name it, e.g.
    ``stream/credit/2024-05.csv``, ``stream/credit/labels/2024-05.csv`` for a labels file."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    return file_run_name(params.get("pipeline"), Path(str(params.get("path"))), kind)


@step("load-champion", retries=2)
def load_champion(pipeline: str) -> registry.Champion | None:
    return registry.champion(pipeline)


@step("breaker-gate", retries=2)
def breaker_gate(spec: PipelineSpec) -> tuple[bool, str]:
    """May this run train? A read: the ``open`` → ``half_open`` move is written with the run's result."""
    state = read_breaker(spec.name)
    allowed = state.allows_training(BreakerPolicy.from_spec(spec))
    return allowed, state.state


def counts_as_failure(spec: PipelineSpec, outcome: RunOutcome) -> bool:
    """What the breaker counts: a run that broke (an exception), a retrain that left the pipeline without
    any model (the first model refused), and bad input when ``breaker.count_bad_input``. A challenger that
    loses to a healthy champion is not a failure: the pipeline keeps serving a model that works."""
    if outcome.decision == Decision.FAILED:
        return not outcome.details.get("gone")  # a file deleted mid-run is not the pipeline's failure
    if outcome.decision == Decision.RETRAIN_REJECTED:
        return outcome.champion_version is None
    return outcome.decision == Decision.REJECTED_INPUT and spec.breaker.count_bad_input


@step("breaker-update", retries=2)
def breaker_update(spec: PipelineSpec, outcome: RunOutcome) -> str:
    """Count the run's result, under the breaker's lock (one locked write per run)."""
    policy = BreakerPolicy.from_spec(spec)
    failed = counts_as_failure(spec, outcome)
    if outcome.decision == Decision.SKIPPED_BREAKER_OPEN or (
            outcome.decision in (Decision.REJECTED_INPUT, Decision.FAILED) and not failed) or (
            "awaiting_labels" in outcome.details):  # nothing was tried that could succeed or fail: neutral
        return outcome.breaker_state or "closed"

    def change(state):
        state.allows_training(policy)  # records an expired cooldown's move to half_open first
        if failed:
            state.record_failure(policy, f"{outcome.decision}: {outcome.reason[:200]}")
        else:
            state.record_success(policy)

    probe = read_breaker(spec.name)
    before = copy.deepcopy(probe)
    change(probe)
    if probe == before:  # the common case, a success on a closed breaker: nothing to write, no lock
        return probe.state
    state, _ = update_breaker(spec.name, change)
    return state.state


def close_abandoned(abandoned: Abandoned, file: str, by: str | None, log: RunLog) -> None:
    """Close what a run that died while deciding ``file`` left open, so no UI shows it as still running: its
    MLflow run is marked KILLED (it stays, with whatever it logged, for the record) and its Prefect flow run
    Crashed, unless something (its worker) has ended it already. ``by`` is the flow run taking the file over."""
    log.warning("%s: taking over the claim of a run that ended without finishing (flow run %s, MLflow run %s)",
                file, abandoned.flow_run_id or "none", abandoned.mlflow_run_id or "none")
    if abandoned.mlflow_run_id:
        registry.close_run(abandoned.mlflow_run_id, "KILLED")
    if abandoned.flow_run_id and abandoned.flow_run_id != by:
        _crash_flow_run(abandoned.flow_run_id, f"its process ended while deciding {file}; "
                                               f"{'flow run ' + by if by else 'a later run'} took the file over", log)


def _crash_flow_run(flow_run_id: str, message: str, log: RunLog) -> None:
    from uuid import UUID

    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
            if run.state is None or not run.state.is_final():
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    except (ObjectNotFound, ValueError):
        pass  # deleted meanwhile, or a run of another server: nothing to close here
    except httpx.HTTPError as exc:  # the decision matters more than the old run's label: say so and go on
        log.warning("could not mark flow run %s Crashed: %s: %s", flow_run_id, type(exc).__name__, exc)


def _duplicate_of(book: Ledger, sha256: str | None) -> dict[str, Any]:
    """A duplicate's details: the run that processed (or is processing) the same content, and its decision."""
    first = next((e for e in book.entries() if e["sha256"] == sha256), None) if sha256 else None
    if first is None:
        return {"duplicate": True}
    return {"duplicate": True, "processed_by": {"file": first["file"], "flow_run_id": first.get("run_id") or None,
                                                "decision": first["decision"], "status": first["status"]}}


def _processed_before(spec: PipelineSpec, paths: PipelinePaths, book: Ledger, log: RunLog, path: Path, digest: str,
                      flow_run_id: str | None, *, copy: bool = False) -> RunOutcome:
    """A file whose content was processed before: it joins the processed folder (moved, or copied when it is a
    user's own file from outside the pipeline's folders) and is answered a duplicate of the first one."""
    details = _duplicate_of(book, digest)
    first = details.get("processed_by", {}).get("file") or "a file"
    try:
        placed = move_to_processed(paths, path, digest, copy=copy)
    except OSError as exc:  # the answer stands; a file left in its folder is moved by a later scan's run
        after = "your file is where it was" if copy else "once the folder can be written, the next scan moves it"
        log.error("%s has the same content as %s, already processed, but could not be %s to %s (%s: %s); %s",
                  path.name, first, "copied" if copy else "moved", paths.processed, type(exc).__name__, exc, after)
    else:
        log.info("%s has the same content as %s, already processed; %s to %s", path.name, first,
                 "copied" if copy else "moved", placed.relative_to(paths.root))
    return answered(spec, path, digest, Decision.DUPLICATE, "same content already processed",
                    flow_run_id=flow_run_id, details=details)


def processed_before(pipeline: str, path: Path, digest: str) -> RunOutcome:
    """The answer to a user's own file (``calmops run`` of a file outside the pipeline's folders) whose content
    was processed before: a copy joins the processed folder and no run is started; copied into incoming, it
    would also be announced by the watcher, whose flow run would end *Duplicate* beside this answer."""
    spec = read_spec(pipeline)
    paths = pipeline_paths(spec).ensure()
    return _processed_before(spec, paths, ledger(paths), RunLog(spec.name, paths.logs), path, digest, None, copy=True)


def open_run(pipeline: str, path: str | Path, sha256: str | None = None) -> RunContext | RunOutcome:
    """The gate: the spec, the file (or proof it was done already), the ledger claim, the breaker.

    Returns a RunOutcome instead of a context when there is nothing to do (a duplicate).
    """
    spec = read_spec(pipeline)
    paths = pipeline_paths(spec).ensure()
    log = RunLog(spec.name, paths.logs)
    path = Path(path)
    book = ledger(paths)
    flow_run_id = current_flow_run_id()
    special = not_a_regular_file(path)
    if special:  # a link or a device: refused without following or opening it
        target = quarantine(paths, path, None, special)
        log.warning("refused %s: %s (moved to %s)", path.name, special, target)
        return answered(spec, path, None, "rejected_input", special, flow_run_id=flow_run_id,
                        details={"quarantined_as": str(target)})
    if (content := content_of(path)) is None:
        done = sha256 and book.status(sha256) == "done"
        if done or (paths.processed / bounded_name(path.name)).exists():
            log.info("%s was processed already (duplicate event); nothing to do", path.name)
            return answered(spec, path, sha256, Decision.DUPLICATE, "already processed (duplicate event)",
                            flow_run_id=flow_run_id, details=_duplicate_of(book, sha256))
        if sha256 and book.status(sha256) == "gone" and book.decision(sha256) == "rejected_input":
            # decided in another run's turn and quarantined there (its bytes may be dropped again)
            log.info("%s was quarantined by another run; nothing to do", path.name)
            return answered(spec, path, sha256, Decision.DUPLICATE, "already decided by another run (quarantined)",
                            flow_run_id=flow_run_id, details=_duplicate_of(book, sha256))
        raise FileNotFoundError(f"{path} does not exist (and was not processed before)")
    digest, arrived = content
    # what a run that died holding this content left open, and the MLflow run of a failed try (maybe not ended)
    abandoned, left_running = book.left_open(digest)
    entry = ledger_name(paths, path)
    set_aside = book.decision(digest) if book.status(digest) == "gone" else None
    if not book.claim(digest, entry, flow_run_id or "", arrived):  # done already, or a live run has it
        if book.status(digest) == "done":
            return _processed_before(spec, paths, book, log, path, digest, flow_run_id)
        return answered(spec, path, digest, Decision.DUPLICATE, "same content is being processed by another run",
                        flow_run_id=flow_run_id, details=_duplicate_of(book, digest))
    if set_aside is not None and not holds(path, digest, arrived):  # set aside by another run since it was read
        book.finish(digest, set_aside, status="gone")  # as that run left it: nothing to decide here
        log.info("%s was set aside by another run (%s); nothing to do", path.name, set_aside)
        return answered(spec, path, digest, Decision.DUPLICATE, f"already decided by another run ({set_aside})",
                        flow_run_id=flow_run_id, details=_duplicate_of(book, digest))
    book.keep_alive(digest)
    ctx = None
    try:
        if abandoned:
            close_abandoned(abandoned, path.name, flow_run_id, log)
        allowed, breaker_state = breaker_gate(spec)
        ctx = RunContext(spec, paths, book, path, digest, log, flow_run_id, allowed, breaker_state)
        # named as the ledger and the CLI name the file: labels/<name> for a labels file (a features file of the
        # same name may have a run of its own beside it)
        ctx.mlflow_run_id = registry.start_run(spec.name, entry, {
            "calmops.pipeline": spec.name, "calmops.file": path.name, "calmops.sha256": digest,
            "calmops.flow_run_id": flow_run_id or "", "calmops.kind": spec.kind,
            # which folder the file came from: a labels file and a features file may share a name
            "calmops.folder": "labels" if entry.startswith(LABELS_ENTRY) else "incoming",
        })
        book.attach_run(digest, ctx.mlflow_run_id)
        if left_running and registry.end_if_running(
                left_running, "FAILED", f"its run could not reach the MLflow tracking server to record its end; "
                                        f"MLflow run {ctx.mlflow_run_id} took the file over"):
            log.info("%s: ended MLflow run %s of an earlier try, left running while MLflow was out of reach",
                     path.name, left_running)
    except BaseException as exc:  # MLflow or Prefect unreachable, cancelled: the file stays for a rerun
        said = registry.unreachable(exc) or exc
        book.release(digest, reason=f"its run could not start: {described(said)}"[:2000])
        if ctx is not None and ctx.mlflow_run_id:
            registry.close_run(ctx.mlflow_run_id, "KILLED")
        log.error("run for %s could not start: %s (claim released; the file is pending)", path.name, described(exc))
        raise
    ctx.params = {"kind": spec.kind, "file": path.name, "sha256": digest, "retrain_mode": spec.retrain.mode,
                  "model": spec.model.class_ or "pipeline", "prediction_only": spec.prediction_only}
    log.info("processing %s (sha256 %s…) for pipeline %s; breaker %s", entry, digest[:12], spec.name,
             breaker_state)
    return ctx


def read_batch(ctx: RunContext, champion: registry.Champion | None) -> Batch | RunOutcome:
    """Ingest; on bad input quarantine the file with its reason and return the final outcome."""
    try:
        batch = ingest(ctx.path, ctx.sha256, ctx.spec, champion.schema if champion else None)
        if isinstance(batch, RejectedInput):
            return reject(ctx, champion, batch)
        if champion is None and batch.cannot_train:
            raise RejectedInput(f"{ctx.path.name}: cannot train a first model: {batch.cannot_train} "
                                f"(and there is no champion yet to predict with){_first_model_hint(ctx, batch)}")
        if champion is None and (numbers := _numbers_for_a_classifier(ctx.spec, batch)):
            raise RejectedInput(numbers)
        return note_batch(ctx, batch)
    except RejectedInput as exc:
        return reject(ctx, champion, exc)


def _numbers_for_a_classifier(spec: PipelineSpec, batch: Batch) -> str | None:
    """Why a first model would be a classifier learning each of a target's many numbers as a class (the model is
    a classifier, the task not given as classification, the target :func:`looks_continuous`), or None: it would
    score 0 and serve nonsense, every later file a string of new classes."""
    from sklearn.base import is_classifier

    if batch.y is None or spec.evaluation.task or not (said := looks_continuous(batch.y)):
        return None
    if not is_classifier(build_estimator(spec.model, spec.allow_modules)):
        return None
    return (f"{batch.file}: target column '{spec.target}' {said}, and the model is a classifier: it would learn "
            "each number as a class; to predict a number, name a regressor (model.class: "
            "sklearn.ensemble.HistGradientBoostingRegressor) with 'calmops update', then drop the file again; if "
            "they are classes, set evaluation.task: classification")


def _first_model_hint(ctx: RunContext, batch: Batch) -> str:
    """What to do when a pipeline's first file has no labels: a labels file cannot help (nothing has been
    predicted for it to label), a labelled file can."""
    if batch.y is not None:
        return ""
    return (f": the first model is trained from a file whose target column {ctx.spec.target!r} is filled in every "
            f"row; drop such a file into {ctx.paths.incoming} first, then this one again (a labels file cannot help "
            "yet: nothing has been predicted for it to label)")


def note_batch(ctx: RunContext, batch: Batch) -> Batch:
    """What ingest noticed in an accepted batch (classes the champion never saw, schema signals) in the run's
    record, and the batch as the MLflow run's input: for a file read as it came and for the rows a labels file
    joined alike."""
    if batch.labels.new_classes:
        ctx.signals["new_classes"] = batch.labels.new_classes
    if batch.signals:
        ctx.signals["signals"] = batch.signals
    for signal in batch.signals:  # every kind, every path (a first model, a prediction-only file, a retrain)
        ctx.log.warning("%s: %s", entry_name(ctx.path.name, ctx.labels_file), signal)
    if ctx.mlflow_run_id:
        registry.log_batch_input(ctx.mlflow_run_id, batch.frame, source=ctx.path, sha256=ctx.sha256,
                                 target=ctx.spec.target)
    return batch


def reject(ctx: RunContext, champion: registry.Champion | None, exc: RejectedInput) -> RunOutcome:
    """Quarantine the run's file with the reason, record it, and set it aside in the ledger (``gone``): refused
    bytes were not processed, so the same bytes dropped again are decided anew (after a limit was raised, the
    preprocess mended, or, for labels, once their features have come)."""
    target = quarantine(ctx.paths, ctx.path, ctx.sha256, exc.reason, exc.details,
                        arrived=ctx.ledger.arrival(ctx.sha256))  # as the ledger recorded it
    # a reason starts with the file's name (RejectedInput): said once
    said = exc.reason if exc.reason.startswith(f"{ctx.path.name}: ") else f"{ctx.path.name}: {exc.reason}"
    ctx.log.warning("quarantined %s (moved to %s)", said, target)
    outcome = ctx.outcome("rejected_input", exc.reason, champion_version=champion.version if champion else None,
                          details={"quarantined_as": str(target)})
    ctx.ledger.finish(ctx.sha256, "rejected_input", status="gone")
    finish_record(ctx, outcome, None)
    return outcome


def finish_record(ctx: RunContext, outcome: RunOutcome, verdict: DriftVerdict | None) -> RunOutcome:
    if verdict is None:  # no drift check was made: its answer is unknown, not "no"
        outcome.drift_detected = None
    if verdict and verdict.estimated:  # logged next to the realized scores: estimated_<metric>[_low|_high]
        outcome.metrics = {**outcome.metrics, "estimated": verdict.estimated.flat()}
    record_run(outcome, verdict, ctx.params, ctx.spec.to_yaml())
    outcome.breaker_state = breaker_update(ctx.spec, outcome)
    return outcome


def finish(ctx: RunContext, outcome: RunOutcome, verdict: DriftVerdict | None, *,
           keep_pending: bool = False) -> RunOutcome:
    """Record, update the breaker, mark the ledger and move the file: the last step of every run."""
    finish_record(ctx, outcome, verdict)
    if keep_pending:
        ctx.ledger.finish(ctx.sha256, outcome.decision, status="pending")
    else:
        ctx.ledger.finish(ctx.sha256, outcome.decision)
        _to_processed(ctx)
    ctx.log.info("%s → %s: %s", entry_name(ctx.path.name, ctx.labels_file),
                 outcome.decision, outcome.reason)
    return outcome


def _to_processed(ctx: RunContext) -> None:
    """Move a decided file to processed. The decision stands whatever happens here (it is recorded, the ledger
    says done): a folder that cannot be written is logged with what to do, and the file, left in its folder, is
    answered a duplicate and moved by a later run once it can be (the watcher's scans announce it)."""
    if not ctx.path.exists():
        return
    try:
        move_to_processed(ctx.paths, ctx.path, ctx.sha256)
    except OSError as exc:
        ctx.log.error("%s was decided, but could not be moved to %s (%s: %s); it stays where it is until the "
                      "folder can be written, then the next scan moves it", ctx.path.name, ctx.paths.processed,
                      type(exc).__name__, exc)


def _take_back_history(ctx: RunContext) -> None:
    """The batch of a run that is not decided leaves the history (:func:`drop_history`); a file system that
    refuses is logged, not raised over the run's own failure."""
    try:
        drop_history(ctx.paths, ctx.sha256)
    except OSError as exc:
        ctx.log.error("could not take %s's rows back from the history (%s): later challengers may learn them",
                      ctx.path.name, exc)


def fail(ctx: RunContext, exc: BaseException) -> RunFailed:
    """A run that broke: record it, count it against the breaker, keep the file for a retry.

    A file deleted while its run was in progress cannot be retried: the ledger records it as ``gone`` (the
    same bytes dropped again are taken as new) and the breaker does not count it.

    A run that failed because the MLflow tracking server does not answer (:func:`registry.unreachable`) is not
    recorded in MLflow, nor counted by the breaker (the server is out of reach, not the pipeline failing): asking
    that server again would wait for the client's retries once more, then put its raw error in place of the
    explained one. Its decision is published to Prefect, without a link to the MLflow run.
    """
    said = registry.unreachable(exc)  # MLflow's client buries "nothing answers" in a long line
    exc = said or exc
    reason = described(exc)
    gone = not ctx.path.exists() and not ctx.path.is_symlink()
    if gone:
        reason = f"the file was deleted while its run was in progress ({reason})"
    ctx.log.error("run failed for %s: %s", ctx.path.name, reason)
    outcome = ctx.outcome("failed", reason[:2000], details={"gone": True} if gone else {},
                          champion_version=ctx.champion_version)  # the champion when the run began
    try:
        if said is None:
            finish_record(ctx, outcome, None)
        else:
            outcome.drift_detected = None  # as finish_record has it: no check was made
            publish_artifacts(outcome, None, linked=False)
    finally:
        _take_back_history(ctx)
        if gone:
            ctx.ledger.finish(ctx.sha256, "failed", status="gone", reason=outcome.reason)
        else:
            ctx.ledger.release(ctx.sha256, reason=outcome.reason)
    return RunFailed(outcome)


Reader = Callable[[RunContext, "registry.Champion | None"], "Batch | RunOutcome"]


def run_one_file(pipeline: str, path: str | Path, sha256: str | None,
                 process: Callable[[RunContext, registry.Champion | None, Batch], RunOutcome],
                 read: Reader | None = None) -> dict[str, Any]:
    """The body every kind's flow shares: gate, champion, ingest (``read``, by default :func:`read_batch`),
    then the kind's ``process``.

    A duplicate or a quarantined file ends here; anything that raises is recorded as ``failed``.
    """
    ctx = open_run(pipeline, path, sha256)
    if isinstance(ctx, RunOutcome):  # duplicate: done already
        return ctx.to_dict()
    try:
        champion = load_champion(ctx.spec.name)
        ctx.champion_version = champion.version if champion else None
        batch = (read or read_batch)(ctx, champion)
        if isinstance(batch, RunOutcome):
            return batch.to_dict()
        if champion is not None and _promoted_here_unrecorded(champion, ctx.sha256):
            outcome = record_promotion_left_unrecorded(ctx, champion, batch)
        else:
            outcome = process(ctx, champion, batch)
    except Exception as exc:
        raise fail(ctx, exc) from exc
    except BaseException as exc:  # cancelled or interrupted: nothing recorded, the claim goes back to pending
        ctx.log.error("run for %s was stopped before it decided (%s); its claim is given back: the file is pending",
                      ctx.path.name, type(exc).__name__)
        ctx.ledger.release(ctx.sha256, reason=f"its run was stopped before it decided ({type(exc).__name__})")
        _take_back_history(ctx)
        if ctx.mlflow_run_id:
            registry.close_run(ctx.mlflow_run_id, "KILLED")  # not left RUNNING: its file gets a run of its own
        raise
    if ctx.breaker_state != "closed" and outcome.breaker_state == "closed" and not _IN_TURN.get():
        rerun_pending(ctx)  # in the pipeline's turn (order: arrival) the turn itself goes on with them
    return outcome.to_dict()


def _promoted_here_unrecorded(champion: registry.Champion, sha256: str) -> bool:
    """Whether the champion was trained on this content by a run that did not record its decision: not a file
    decided before (a pipeline created again with --adopt, a ledger set aside) and now read again."""
    return (champion.training.get("sha256") == sha256
            and not {Decision.TRAIN, Decision.RETRAIN_PROMOTED} & set(registry.recorded_decisions(champion.name,
                                                                                                sha256)))


def record_promotion_left_unrecorded(ctx: RunContext, champion: registry.Champion, batch: Batch) -> RunOutcome:
    """The champion was trained on this file and promoted by an earlier run that ended before it recorded its
    decision (killed, or failed to record while a server was out of reach): that decision is recorded now, with
    the batch kept in the history it learnt from. Judging the file again would score a model on rows it learnt
    (a perfect score, "no drift") and credit the promotion to no file."""
    first = registry.alias_version(ctx.spec.name, "previous") is None
    learnt = batch.X[feature_columns(ctx.spec, list(batch.X.columns))]  # as the kind keeps it (IPIP: no block column)
    append_history(ctx.paths, reference_frame(learnt, batch.y, ctx.spec.target), batch.sha256,
                   ctx.spec.retrain.history_max_batches)
    out = write_batch_predictions(ctx, batch, champion)
    reason = (f"v{champion.version} was trained on this file and promoted by an earlier run that ended before "
              f"recording it (MLflow run {champion.run_id}); its decision is recorded now, the file is not judged "
              "again by a model that learnt it")
    ctx.log.warning("%s: %s", ctx.path.name, reason)
    outcome = ctx.outcome("train" if first else "retrain_promoted", reason, champion_version=champion.version,
                          challenger_version=champion.version, rows=batch.n_rows,
                          predictions_file=str(out) if out else None,
                          details={"recorded_late": {"mlflow_run_id": champion.run_id}})
    return finish(ctx, outcome, None)


def rerun_pending(ctx: RunContext) -> None:
    """The breaker has just closed: run the files it left pending, in the order they came (each as its own
    flow run; one that fails is recorded as usual and does not stop the others)."""
    from calmops.flows import flow_for

    files = [p for p in pending_files(ctx.paths) if p != ctx.path]
    if files:
        ctx.log.info("breaker closed: re-running %d pending file(s): %s", len(files), ", ".join(p.name for p in files))
    for path in files:
        flow_for(ctx.spec.kind)(pipeline=ctx.spec.name, path=str(path), return_state=True)


@contextmanager
def pipeline_turn(paths: PipelinePaths, log: RunLog) -> Iterator[None]:
    """Hold the pipeline's turn (:func:`calmops.core.statedb.turn`, released if the process dies): one process
    on any host decides the pipeline's files at a time, whoever started it (trigger, ``calmops run``)."""
    with statedb.turn(paths.root, on_wait=lambda: log.info(
            "waiting for the pipeline's turn (another run is deciding its files)")):
        token = _IN_TURN.set(True)
        try:
            yield
        finally:
            _IN_TURN.reset(token)


def _breaker_cooling(pipeline: str) -> bool:
    state = read_breaker(pipeline)
    return state.state == "open" and (state.next_retry_at is None or time.time() < state.next_retry_at)


def not_now(pipeline: str, status: str) -> str | None:
    """Why a file of the queue (its ledger ``status``) cannot be decided in this turn, holding the files behind
    it; None when it can."""
    if status == "in_progress":  # a live run elsewhere (e.g. `calmops run` reserved it before its turn)
        return "being processed by another run"
    if status == "pending" and _breaker_cooling(pipeline):
        return "waiting for the circuit breaker"
    return None


def content_of(path: Path) -> tuple[str, float] | None:
    """(sha256, arrival time) of a file, or None when it is not there (any more): in a burst another run of
    the pipeline's turn may decide and move it between a check and the read."""
    try:
        return sha256_of(path), arrival_time(path.stat().st_mtime_ns)
    except FileNotFoundError:
        return None


#: the names of the Completed states a file's run ends under when *Completed* would hide what became of the file
ENDED_AS = {Decision.HELD: "Held", Decision.REJECTED_INPUT: "Quarantined", Decision.DUPLICATE: "Duplicate",
            Decision.SKIPPED_BREAKER_OPEN: "Waiting for breaker"}


def ended(outcome: dict[str, Any]) -> Any:
    """The final state of a file's flow run, as the Prefect UI shows it: *Completed* (or *Held*, *Quarantined*,
    *Duplicate*, *Waiting for breaker*) with the decision and why as its message. Prefect keeps the state and
    gives whoever called the flow the ``outcome`` itself."""
    from prefect.states import Completed

    said = f"{shown_decision(outcome['decision'])}: {outcome['reason']}"
    turn = ""
    if others := outcome.get("decided_in_turn"):  # the run that held the pipeline's turn decided these too
        names = ", ".join(others) if len(others) <= 3 else f"{others[0]}, {others[1]} … {others[-1]}"
        turn = f" (this run also decided {len(others)} other file(s) in the pipeline's turn: {names})"
    if len(said) + len(turn) > 300:
        said = said[:max(0, 299 - len(turn))] + "…"
    return Completed(name=ENDED_AS.get(outcome["decision"], "Completed"), message=(said + turn)[:300], data=outcome)


def run_in_order(pipeline: str, path: str | Path, sha256: str | None,
                 process: Callable[[RunContext, registry.Champion | None, Batch], RunOutcome],
                 before_each: Callable[[float], list[str]] | None = None) -> dict[str, Any]:
    """Decide the pipeline's files in arrival order (spec ``order: arrival``, the default), whatever order
    Prefect starts the runs in: holding the pipeline's turn, decide every file that arrived before this one,
    oldest first, then this one, then those that arrived after it (until the turn gives way to pipelines
    waiting for a worker: :mod:`calmops.flows.fair_turns`). A file that fails, or waits for the breaker, holds
    the files behind it: their runs end ``held`` and they wait in the ledger. With ``order: none`` (or a file
    outside the incoming folder) only this file is decided. ``before_each`` (the stream kind's, with late labels:
    :func:`calmops.flows.labels.labels_before`) is called with each file's arrival before it is decided, and
    names the other files it decided.
    """
    spec = read_spec(pipeline)
    paths = pipeline_paths(spec).ensure()
    path = Path(path)
    if (held := answer_if_paused(spec, path, sha256, flow_run_id=current_flow_run_id())) is not None:
        return held  # queued before the pause: the file waits for the resume
    if (spec.order == "none" or not_a_regular_file(path) or path.parent.resolve() != paths.incoming.resolve()
            or (content := content_of(path)) is None):  # a link or a pipe is refused there, unread; a file
        return run_one_file(pipeline, path, sha256, process)  # gone is a duplicate event or an error there
    log = RunLog(spec.name, paths.logs)
    book = ledger(paths)
    digest, arrived = content
    book.arrive(digest, path.name, arrived, paths.incoming, at=path)  # known already when the watcher announced it
    target: dict[str, Any] | None = None
    decided: dict[str, str] = {}  # the other files this turn ended (name → SHA-256): their own runs, if still
    # waiting, are cancelled
    me = current_flow_run_id()
    budget = turn_budget() if started_by_a_worker() else 0.0  # a run by hand holds no worker slot
    given_up: tuple[GiveWay, dict[str, str], float] | None = None  # why the turn ended early, the files left, when
    in_turn: list[str] = []  # the other files decided in this turn, in the order decided (labels files too)
    with pipeline_turn(paths, log):
        began = next_look = time.monotonic()
        tried: set[str] = set()
        # the queue is read again before each file: a file whose arrival was recorded while the one before it
        # was being decided (e.g. an event handled late under load) still takes its place by arrival time
        while (entry := book.next_in_queue(tried, paths.incoming)) is not None:
            if (pause := paused(spec.name)) is not None:  # paused while this run waited for, or held, the turn
                log.info("%s: this run decides no more of its files", pause.said(spec.name))
                if target is None:
                    return answer_if_paused(spec, path, digest, pause, flow_run_id=me)
                break
            # the budget counts from the turn's start, not from this run's own file: one whose file is far back
            # in a burst gives way too (having decided at least one file, so every turn moves the queue on)
            if ((target is not None or decided) and budget > 0
                    and time.monotonic() >= max(began + budget, next_look)):
                next_look = time.monotonic() + CHECK_EVERY
                left = {name: sha for sha, name, _ in book.queue(paths.incoming) if sha not in tried}  # oldest first
                if (way := should_give_way(spec.name, paths.incoming, list(left), log, me)) and (
                        way.announce is None or announce(spec.name, spec.kind, paths.incoming / way.announce,
                                                         left[way.announce], log)):
                    held = time.monotonic() - began
                    log.info("%s (%d queued run(s) scheduled behind them)", way.reason(held), step_back(way, log))
                    given_up = (way, left, held)
                    break
            sha, name, status = entry
            tried.add(sha)
            file = paths.incoming / name
            if not file.exists():
                continue  # moved away (quarantined by hand, or processed under another name)
            if sha != digest and (why := not_now(spec.name, status)) is not None:
                blocker = name
            else:
                if before_each is not None and (at := book.arrival(sha)) is not None:
                    in_turn += before_each(at)  # labels files that came before it
                    if (pause := paused(spec.name)) is not None:  # paused while those were decided
                        log.info("%s: this run decides no more of its files", pause.said(spec.name))
                        if target is None:
                            held = answer_if_paused(spec, path, digest, pause, flow_run_id=me)
                            return {**held, "decided_in_turn": in_turn} if in_turn else held
                        break
                try:
                    outcome = run_one_file(pipeline, file, sha, process)
                except RunFailed as exc:
                    if sha == digest and name == path.name:
                        raise
                    blocker, why = name, f"failed: {exc.outcome.reason[:300]}"
                else:
                    if (sha == digest and outcome["decision"] == Decision.DUPLICATE
                            and book.status(sha) == "in_progress"):
                        # this run's own content, held by a live run elsewhere (`calmops run` reserved its copy
                        # before its turn): that run decides it, and the files behind it in its own turn
                        target = outcome if name == path.name else run_one_file(pipeline, path, sha, process)
                        break
                    if sha == digest and name == path.name:
                        target = outcome
                    elif sha == digest and book.status(sha) == "done":  # a first copy of this run's bytes:
                        target = run_one_file(pipeline, path, sha, process)  # this one is its duplicate
                    # (a first copy left pending, e.g. by the open breaker, holds this one behind it, below)
                    if book.status(sha) != "pending":
                        if name != path.name:
                            decided[name] = sha
                            in_turn.append(name)
                            cancel_redundant_runs(spec.name, paths.incoming, decided, me, log)
                        continue
                    blocker, why = name, "waiting for the circuit breaker"
            if target is not None:
                break  # this file is decided; the files behind the blocker wait for it
            log.warning("%s is held: %s arrived before it and is %s", path.name, blocker, why)
            return answered(spec, path, digest, Decision.HELD, f"waiting behind {blocker} ({why})",
                            flow_run_id=me, details={"held_behind": blocker}).to_dict()
    if target is None and given_up is not None and digest in given_up[1].values():
        return _handed_over(spec, path, digest, *given_up, flow_run_id=me)
    if target is None:  # decided meanwhile by another run
        return run_one_file(pipeline, path, sha256, process)
    return {**target, "decided_in_turn": in_turn} if in_turn else target  # in arrival order


def answer_if_paused(spec: PipelineSpec, path: Path, sha256: str | None, pause: Pause | None = None,
                     **kw: Any) -> dict[str, Any] | None:
    """The answer of a run whose pipeline is paused (``pause``, or read now) before it decided its file: the file
    stays *waiting*, announced again once the pipeline is resumed; None while the pipeline is not paused."""
    if pause is None and (pause := paused(spec.name)) is None:
        return None
    if sha256 is None and (content := content_of(path)) is not None:
        sha256 = content[0]
    return answered(spec, path, sha256, Decision.HELD, pause.said(spec.name),
                    details={"paused_since": pause.since}, **kw).to_dict()


def _handed_over(spec: PipelineSpec, path: Path, sha256: str, way: GiveWay, left: dict[str, str], held: float,
                 **kw: Any) -> dict[str, Any]:
    """The answer of a run whose turn gave way before its own file came: the file stays *waiting*, and the run
    that takes the turn next decides it in its place, after the ``left`` files that arrived before it."""
    ahead = list(left.values()).index(sha256)  # files left before this one (oldest first)
    first = next(iter(left))
    by = f"flow run {way.next_run}" if way.next_run else f"the run of {way.announce}"
    why = (f"the pipeline's turn was given up after {held:.0f} s to pipeline(s) {', '.join(way.starving)}, "
           f"waiting for a worker, with {ahead} file(s) left before this one; {by} takes the turn next and "
           "decides them and this file in arrival order")
    details: dict[str, Any] = {"turn_given_up": {"to": list(way.starving), "next_run": way.next_run,
                                                 "announced": way.announce}}
    if ahead:
        details["held_behind"] = first
        why = f"waiting behind {first} ({why})"
    return answered(spec, path, sha256, Decision.HELD, why, details=details, **kw).to_dict()


def reference_frame(X: pd.DataFrame, y: pd.Series | None, target: str | None) -> pd.DataFrame:
    frame = X.reset_index(drop=True).copy()
    if y is not None and target:
        frame[target] = y.reset_index(drop=True).to_numpy()
    return frame


# -- steps every kind composes the same way ---------------------------------------------


def predict_without_training(ctx: RunContext, batch: Batch, champion: registry.Champion | None) -> RunOutcome:
    """Prediction-only pipelines, and any pipeline while its breaker is open: every drift check still runs
    (with the champion's score when the file has labels) and predictions are written. With the breaker open,
    a file whose checks call for a retrain stays pending, to be re-run once the breaker closes; a file with
    nothing to retrain is done. With the breaker open and no champion yet (the first model kept failing),
    nothing can predict: the file stays pending, its reason saying why."""

    spec = ctx.spec
    breaker_open = not spec.prediction_only
    if champion is None and breaker_open:  # the first model failed until the breaker opened: nothing serves yet
        opened = next((h["reason"] for h in reversed(read_breaker(spec.name).history) if h["to"] == "open"), None)
        reason = (f"circuit breaker is open{f' ({opened[:300]})' if opened else ''}: no first model is trained "
                  "while it is; the file waits, pending, and is taken when the breaker half-opens, or at once "
                  f"after you mend the cause and run 'calmops breaker reset {spec.name}'")
        outcome = ctx.outcome("skipped_breaker_open", reason, rows=batch.n_rows)
        return finish(ctx, outcome, None, keep_pending=True)  # (a file without labels is refused before this)
    if champion is None:
        raise LookupError(f"pipeline {spec.name!r} has no champion to predict with; "
                          "train one first (a labelled file with prediction_only: false)")
    _, _, now, verdict = champion_check(ctx, batch, champion)
    out = write_batch_predictions(ctx, batch, champion)
    wants_training = verdict.drift_detected or spec.retrain.retrain_on == "always"
    pending = breaker_open and wants_training and batch.y is not None
    if not breaker_open:
        decision, reason = "predict_only", f"prediction-only pipeline: {verdict.reason}; predictions written"
    elif pending:
        decision, reason = "skipped_breaker_open", (f"{verdict.reason}; circuit breaker is open: retraining "
                                                    "deferred (file kept pending), predictions written")
    elif batch.y is None and spec.labels is not None:
        decision, reason = "predict_only", f"{verdict.reason} (circuit breaker open); predictions written and kept for the labels to come"
    else:
        decision, reason = "no_drift", f"{verdict.reason} (circuit breaker open; nothing to retrain)"
    outcome = ctx.outcome(decision, reason, drift_detected=verdict.drift_detected,
                          drifted_features=verdict.drifted_features, champion_version=champion.version,
                          rows=batch.n_rows, predictions_file=str(out) if out else None,
                          metrics={"champion": now} if now else {})
    return finish(ctx, outcome, verdict, keep_pending=pending)


def register(ctx: RunContext, trained: TrainingResult, batch: Batch, task: str, scores: dict, reason: str, *,
             selected: Any, held_out: pd.DataFrame | None) -> int:
    """Log the candidate with its reference and profile, and point ``challenger`` at it. ``selected``: the fit the
    holdout ``held_out`` judged (``trained.model`` itself, or the fit it is the refit of on every row): kept with
    the version when it is another fit, its outputs on the holdout the reference of the label-free signals (with
    ``held_out`` None: its outputs on the rows it learnt, ``trained.X``)."""
    spec = ctx.spec
    classes = list(getattr(trained.model, "classes_", [])) or None
    schema = InputSchema(columns=list(trained.X.columns), dtypes={c: str(t) for c, t in trained.X.dtypes.items()},
                         feature_types=batch.feature_types, target=spec.target, task=task, classes=classes)
    profile = build_profile(trained.X, batch.feature_types, spec, selected, held_out)
    version = registry.log_candidate(ctx.mlflow_run_id, spec.name, trained.model,
                                     reference_frame(trained.X, trained.y, spec.target), schema, profile,
                                     scores=scores, description=f"{trained.mode} on {batch.file}: {reason}",
                                     selection_fit=None if selected is trained.model else selected)
    registry.mark_challenger(spec.name, version)
    registry.set_version_tag(spec.name, version, "calmops.training", {
        "mode": trained.mode, **trained.info, "file": batch.file, "sha256": batch.sha256,
        "folder": "labels" if ctx.labels_file else "incoming"})  # a labels file: labels/<file>
    return version


def write_batch_predictions(ctx: RunContext, batch: Batch, champion: registry.Champion | None) -> Path | None:
    """The champion's predictions of the batch; a batch whose labels come later is kept for them too. A labels
    file's rows were predicted when their features came: nothing is written again."""
    if champion is None or ctx.labels_file:
        return None
    out = write_predictions_of(ctx, batch, champion.model, champion.version)
    if ctx.spec.labels is not None and batch.y is None:
        ctx.signals["awaiting_labels"] = keep_for_labels(Awaiting(ctx.paths.root, ctx.paths.state), ctx.spec,
                                                         batch.frame, batch.X, champion.model.predict(batch.X),
                                                         champion.version, batch.sha256, batch.file, batch.format)
    return out


def write_predictions_of(ctx: RunContext, batch: Batch, model: Any, version: int) -> Path | None:
    """Predictions of a given model version; a challenger's are written BEFORE it is promoted, so a failure
    to write them leaves the champion unchanged (promotion is the last step of a run). None for a labels file
    (its rows were predicted when their features came)."""
    if ctx.labels_file:
        return None
    ids = batch.frame[ctx.spec.id_columns] if ctx.spec.id_columns else None
    return predict(model, batch.X, version, ctx.paths.predictions, batch.file, ids, sha256=batch.sha256,
                   processed=ctx.paths.processed)



def champion_check(ctx: RunContext, batch: Batch, champion: registry.Champion):
    """The champion's score on the batch (when it is labelled) and every drift signal against it: what each
    kind decides from. Returns (task, primary metric, score or None, verdict)."""
    task = champion.schema.task
    metric = primary_metric(ctx.spec, task)
    now = evaluate_models({"champion": champion.model}, batch.X, batch.y, task)["champion"] \
        if batch.y is not None else None
    verdict = check_drift(DriftInput(champion, batch.X, batch.y, ctx.spec, task, metric, now, ctx.paths.state,
                                     batch_id=batch.sha256, new_columns=batch.new_columns))
    return task, metric, now, verdict

def predict_without_learning(ctx: RunContext, batch: Batch, champion: registry.Champion) -> RunOutcome:
    """A file that cannot train (too few rows, a single class): the champion scores it, drift is checked,
    predictions are written, and the reason says why nothing was trained (decision ``predict_only``)."""
    _, _, now, verdict = champion_check(ctx, batch, champion)
    out = write_batch_predictions(ctx, batch, champion)
    drift = f"; drift seen but no retrain possible: {verdict.reason}" if verdict.drift_detected else ""
    if batch.y is None:  # its labels come later: nothing to score yet
        reason = f"{batch.cannot_train}: the champion predicted the file, kept for its labels{drift}"
    elif ctx.labels_file:  # its rows were predicted when their features came: scored now, nothing written
        reason = (f"no training: {batch.cannot_train}; the champion's predictions of these rows, made when their "
                  f"features came, are scored{drift}")
    else:
        reason = f"no training: {batch.cannot_train}; the champion scored and predicted the file{drift}"
    outcome = ctx.outcome("predict_only", reason, drift_detected=verdict.drift_detected,
                          drifted_features=verdict.drifted_features, champion_version=champion.version,
                          metrics={"champion": now} if now else {}, rows=batch.n_rows, predictions_file=str(out) if out else None,
                          details={"cannot_train": batch.cannot_train})
    return finish(ctx, outcome, verdict)
