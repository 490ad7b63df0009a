"""A labels file through a stream pipeline (spec ``labels``): join it to the rows predicted without labels, then
decide the labelled batch with the stream's own steps.

The labels file takes the pipeline's turn like any file and is claimed in the same ledger (same bytes twice:
a duplicate), after the files that arrived before it. Its matched rows, features and labels, are the batch: the
champion is scored on it (performance drift, decay, the concept detectors), retrained from it when the signals
say so, and promoted through the same steps as any file. The predictions as they were made are scored, all together
(``realized_<metric>`` in MLflow: the file's serving score in ``calmops history`` and the viewer) and per model
version (``realized_v<N>_<metric>``). Unmatched, duplicate, late and already-labelled ids are counted in
``details.labels``; a labels file
none of whose ids match is quarantined with the reason (nothing is lost: drop it again once its features have
been predicted). After a labels file is decided, the kept rows of every features file labelled in full are
deleted (their ids stay counted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from calmops.core import registry
from calmops.core.awaiting import Awaiting, keys_of
from calmops.core.logs import RunLog
from calmops.core.names import Decision
from calmops.core.pause import paused
from calmops.core.spec import TEXT_FORMATS
from calmops.core.store import (
    LABELS_ENTRY,
    REASON_SUFFIX,
    bounded_name,
    holds,
    ledger,
    ledger_name,
    pipeline_paths,
    quarantine,
    quarantine_records,
    read_spec,
    sha256_of,
)
from calmops.flows.common import (
    RunContext,
    answer_if_paused,
    answered,
    content_of,
    current_flow_run_id,
    not_now,
    note_batch,
    pipeline_turn,
    reject,
    run_one_file,
)
from calmops.flows.fair_turns import CHECK_EVERY, should_give_way, started_by_a_worker, step_back, turn_budget
from calmops.flows.redundant import cancel_redundant_runs
from calmops.tasks.ingest import Batch, RejectedInput, text_delimiter, validate_frame
from calmops.tasks.labels import labelled_rows, read_labels, realized_score, realized_scores
from calmops.tasks.record import RunOutcome


def is_labels_file(pipeline: str, path: str | Path) -> bool:
    """Whether ``path`` is in the pipeline's labels folder."""
    spec = read_spec(pipeline)
    folder = pipeline_paths(spec).labels
    return folder is not None and Path(path).parent.resolve() == folder.resolve()


def run_labels_file(pipeline: str, path: str | Path, sha256: str | None, process) -> dict[str, Any]:
    """Decide one labels file in the pipeline's turn (one process decides a pipeline's files at a time), after
    the files that arrived before it and wait still, oldest first: the labels files, and (``order: arrival``)
    the features files in incoming, so that a burst is decided in the order it came, whatever order its runs
    start in (the runs of the files decided here find them done), and labels published right after their
    features find them predicted. A run that fails or is stopped gives the rows it matched back: they wait for
    its retry, or for another file; an older file that fails is left to its own run's retries and does not stop
    this one (the features files after a failed one, or one waiting for the breaker, wait behind it)."""
    spec = read_spec(pipeline)
    paths = pipeline_paths(spec).ensure()
    log = RunLog(spec.name, paths.logs)
    book = ledger(paths)
    path = Path(path)
    decided: dict[Path, dict[str, str]] = {}  # folder → name → SHA-256 of the older files decided here
    held_back: str | None = None  # why features files that arrived before this one were left waiting
    me = current_flow_run_id()

    def answer(outcome: dict[str, Any]) -> dict[str, Any]:  # with the files this run decided before its own
        others = [ledger_name(paths, folder / name) for folder, names in decided.items() for name in names]
        return {**outcome, "decided_in_turn": others} if others else outcome

    if (held := answer_if_paused(spec, path, sha256, flow_run_id=me)) is not None:
        return held  # queued before the pause: the labels wait for the resume, as the pipeline's other files
    budget = turn_budget() if started_by_a_worker() else 0.0  # a run by hand holds no worker slot
    with pipeline_turn(paths, log):
        began = next_look = time.monotonic()
        if (content := content_of(path)) is not None:
            own, arrived = content
            own_entry = ledger_name(paths, path)  # known already when the watcher announced it; a first copy
            book.arrive(own, own_entry, arrived, paths.labels, at=path)  # under another name keeps its row
            # dropped again from quarantine: from when it came back (the ledger's time, later than its own); a copy
            # of bytes waiting under another name keeps its own time, so that the first copy is decided before it
            arrived = max(arrived, book.arrival(own) or arrived)
            tried: set[str] = set()
            # read again before each file, as the pipeline's queue is: a file moved out or renamed meanwhile
            while (older := _next_before(paths, spec.order, own_entry, arrived, tried, held_back is not None)):
                folder, sha, name, status = older
                tried.add(sha)
                file = folder / name
                if (held := answer_if_paused(spec, path, own, flow_run_id=me)) is not None:
                    return answer(held)  # paused while this run waited for, or held, the turn
                if folder == paths.incoming and (why := not_now(spec.name, status)) is not None:
                    held_back = f"{name} is {why}"  # the features files behind it wait too
                    continue
                if (folder == paths.incoming and budget > 0 and decided
                        and time.monotonic() >= max(began + budget, next_look)):
                    next_look = time.monotonic() + CHECK_EVERY
                    if (gave := _give_way(spec, paths, path, own, arrived, began, log, me)) is not None:
                        return answer(gave)
                decide = (partial(run_one_file, pipeline, file, sha, process) if folder == paths.incoming
                          else partial(_decide, paths, log, pipeline, file, sha, process))
                if not _decided_first(log, ledger_name(paths, file), path.name, decide):
                    if folder == paths.incoming:
                        held_back = f"{name} failed"
                    continue
                if folder == paths.incoming and (left := book.status(sha)) not in ("done", "gone"):
                    held_back = f"{name} is {not_now(spec.name, left) or 'still to be decided'}"
                    continue  # waits for the breaker, or a live run elsewhere took it meanwhile
                decided.setdefault(folder, {})[name] = sha  # its own run, if still waiting, is cancelled
                cancel_redundant_runs(spec.name, folder, decided[folder], me, log)  # (Decided by another run)
        if (held := answer_if_paused(spec, path, sha256, flow_run_id=me)) is not None:
            return answer(held)
        outcome = _decide(paths, log, pipeline, path, sha256, process)
    if held_back is not None:
        log.warning("%s was decided while features files that arrived before it still wait (%s): ids of their "
                    "rows find no prediction yet", path.name, held_back)
    return answer(outcome)


def labels_before(pipeline: str, process) -> Callable[[float], list[str]]:
    """What a features file's run does, in the pipeline's turn, before each file it decides (its arrival): decide
    the labels files that arrived before it and wait still, oldest first, so that a features file published after
    a labels file is predicted by the model those labels made (see :func:`calmops.flows.common.run_in_order`).
    Returns the ledger names of those it decided; one that fails is left to its own run's retries."""
    spec = read_spec(pipeline)
    paths = pipeline_paths(spec)
    if paths.labels is None:
        return lambda arrived: []
    log = RunLog(spec.name, paths.logs)

    def before(arrived: float) -> list[str]:
        decided: dict[str, str] = {}
        for sha, entry, at in ledger(paths).labels_waiting(before=arrived):
            if paused(spec.name) is not None:
                break  # the features run stops too, before its next file
            older = paths.labels / entry.removeprefix(LABELS_ENTRY)
            if not holds(older, sha, at):
                continue  # moved away, or other bytes under that name now
            if not _decided_first(log, entry, "the next features file",
                                  partial(_decide, paths, log, pipeline, older, sha, process)):
                continue
            decided[older.name] = sha
            cancel_redundant_runs(spec.name, paths.labels, decided, current_flow_run_id(), log)
        return [f"{LABELS_ENTRY}{name}" for name in decided]

    return before


def _decided_first(log: RunLog, entry: str, before: str, decide: Callable[[], Any]) -> bool:
    """Decide (``decide``) a file that arrived ``before`` this run's own (its ledger name ``entry``), said in the
    log; False when that failed: recorded (a failed run is pending), its own run retries it."""
    log.info("deciding %s first: it arrived before %s", entry, before)
    try:
        decide()
    except Exception as exc:  # noqa: BLE001 - recorded; its own run retries it
        log.warning("%s was not decided here (%s); its own run takes it", Path(entry).name,
                    (str(exc).splitlines() or [type(exc).__name__])[0][:300])
        return False
    return True


def _next_before(paths, order: str, own_entry: str, arrived: float, tried: set[str],
                 features_held: bool) -> tuple[Path, str, str, str] | None:
    """(folder, SHA-256, file name, ledger status) of the oldest file still to be decided that arrived before a
    labels file (``arrived``), read afresh, not among ``tried``: a labels file waiting, or with ``order: arrival``
    (and unless ``features_held``: one could not be decided now) a features file waiting in incoming. A labels
    file published right after its features file is so decided after it, and its ids find their predictions;
    a features file that came at the same moment counts as before it. Files moved away, or with other bytes
    under their name now, are left out."""
    book = ledger(paths)
    found = [(at, 1, paths.labels, entry.removeprefix(LABELS_ENTRY), sha, "waiting")
             for sha, entry, at in book.labels_waiting(before=arrived)
             if sha not in tried and entry != own_entry
             and holds(paths.labels / entry.removeprefix(LABELS_ENTRY), sha, at)]
    if order == "arrival" and not features_held:  # queue_before reads the incoming folder already
        found += [(at, 0, paths.incoming, name, sha, status)
                  for sha, name, at, status in book.queue_before(arrived, paths.incoming, inclusive=True)
                  if sha not in tried]
    if not found:
        return None
    *_, folder, name, sha, status = min(found, key=lambda f: f[:2])
    return folder, sha, name, status


def _give_way(spec, paths, path: Path, own: str, arrived: float, began: float, log: RunLog,
              me: str | None) -> dict[str, Any] | None:
    """The answer of a labels run that gives the pipeline's turn up to pipelines waiting for a worker (see
    :mod:`calmops.flows.fair_turns`), with features files that arrived before its file still to be decided, or
    None to go on. Only when one of those has a queued run of its own, which takes the turn next: the labels file
    stays *waiting*, announced again by the watcher, and is decided after them."""
    left = [name for _sha, name, _at, _status in ledger(paths).queue_before(arrived, paths.incoming, inclusive=True)]
    way = should_give_way(spec.name, paths.incoming, left, log, me)
    if way is None or way.next_run is None:
        return None
    held = time.monotonic() - began
    log.info("%s (%d queued run(s) scheduled behind them)", way.reason(held), step_back(way, log))
    why = (f"waiting behind {left[0]}: the pipeline's turn was given up after {held:.0f} s to pipeline(s) "
           f"{', '.join(way.starving)}, waiting for a worker, with {len(left)} features file(s) that arrived before "
           f"this labels file left; flow run {way.next_run} takes the turn next and decides them, and the watcher "
           "announces this file again")
    return answered(spec, path, own, Decision.HELD, why, flow_run_id=me,
                    details={"held_behind": left[0], "turn_given_up": {"to": list(way.starving),
                                                                       "next_run": way.next_run}}).to_dict()


def _decide(paths, log: RunLog, pipeline: str, path: Path, sha256: str | None, process) -> dict[str, Any]:
    awaiting = Awaiting(paths.root, paths.state)
    try:
        result = run_one_file(pipeline, path, sha256, process, read=read_labelled_batch)
    except BaseException:
        if path.exists():
            awaiting.release(sha256_of(path))
        raise
    try:
        awaiting.prune({e["sha256"] for e in ledger(paths).entries() if e["status"] == "done"})
    except Exception as exc:  # noqa: BLE001 - the file is decided; the next labels file prunes them
        log.warning("could not delete the rows kept for labels that are all labelled now: %s", exc)
    return result


def _why_none_matched(match, awaiting: Awaiting) -> str:
    """Which ids kept a labels file from matching, and what to do about it; for ids with no prediction waiting,
    ids of rows that do wait, so that ids written another way (``A-7`` for ``a7``) are seen at once."""
    if match.unmatched_ids:
        count, sample = awaiting.waiting_ids()
        waits = (f"{count} predicted row(s) wait, with ids such as {sample}: if those are the same ids written "
                 "another way, write them as these are; otherwise drop it again" if count else
                 "no predicted row waits for labels: drop it again")
        return f"e.g. {match.unmatched_ids[:3]} have no prediction waiting; {waits} once the files with those ids " \
               "have been predicted)"
    return (f"e.g. {match.labelled_before_ids[:3]} were labelled by an earlier labels file, whose labels stand); "
            "nothing in it is new")


def _set_aside_unmatched(ctx: RunContext, labels, fmt: str, match) -> Path:
    """The rows of a labels file whose ids match no row waiting for labels (their features not predicted yet, or
    unknown ids), as a file of their own in quarantine, with a reason saying to drop it into the labels folder
    again once those features are predicted: the file itself is taken (done), and would be a duplicate. Written
    in the labels file's own format (``fmt``; a text table with its delimiter), so that it is read back as the
    labels file was. Once per labels file (a retried run finds it set aside already)."""
    paths = ctx.paths
    for sidecar, record in quarantine_records(paths):
        if (record.get("details") or {}).get("unmatched_of") == ctx.sha256:
            return sidecar.with_name(sidecar.name.removesuffix(REASON_SUFFIX))
    spec = ctx.spec
    rows = labels.iloc[match.unmatched_rows]
    staging = paths.state / "set-aside"  # written whole here, then moved into quarantine under its name
    part = staging / bounded_name(Path(ctx.path.name).stem, f".unmatched.{fmt}")
    if fmt in TEXT_FORMATS:  # the ids as read: as written; the delimiter the labels file had
        staging.mkdir(parents=True, exist_ok=True)
        rows.to_csv(part.with_name(f".{part.name}.part"), index=False,
                    sep=text_delimiter(ctx.path, fmt, spec.delimiter) or ",")
        part.with_name(f".{part.name}.part").replace(part)
    else:
        from calmops.generators.files import write_table  # the generators' writer, loaded only when needed

        write_table(rows, part, fmt)
    count, total = len(rows), match.counts["label_rows"]
    reason = (f"{count} of the {total} label rows of {ctx.path.name} match no row waiting for labels (join on "
              f"{', '.join(spec.labels.join_on)}; e.g. {match.unmatched_ids[:3]}): their features have not been "
              f"predicted yet, or the ids are unknown. The other rows were joined; these are set aside here so that "
              f"none is lost: drop this file into the labels folder ({paths.labels}) again once the files with "
              "those ids have been predicted")
    target = quarantine(paths, part, sha256_of(part), reason,
                        {"unmatched_of": ctx.sha256, "labels_file": ctx.path.name, "rows": count},
                        labels=True)  # labels to drop into the labels folder again
    ctx.log.warning("labels %s: %d row(s) match no prediction waiting; set aside as %s", ctx.path.name, count, target)
    return target


def read_labelled_batch(ctx: RunContext, champion: registry.Champion | None) -> Batch | RunOutcome:
    """The labels file joined to the rows waiting for it, as a labelled batch; quarantined when it is unusable
    (and then decided anew when the same bytes are dropped again: labels may come before their features)."""
    spec = ctx.spec
    ctx.labels_file = True
    awaiting = Awaiting(ctx.paths.root, ctx.paths.state)
    try:
        labels, fmt = read_labels(ctx.path, spec, champion.schema.classes if champion else None)
        if champion is None:
            raise RejectedInput(f"{ctx.path.name}: a labels file, but pipeline {spec.name!r} has no champion yet, "
                                "so nothing was predicted for it to label; drop it again after a first model, "
                                f"which is trained from a file whose target column {spec.target!r} is filled in "
                                f"every row, dropped into {ctx.paths.incoming}")
        match = awaiting.match(labels, keys_of(labels, spec.labels.join_on), spec.target, ctx.sha256,
                               spec.labels.max_wait_days)
        report = {**match.counts, "unmatched_ids": match.unmatched_ids, "duplicate_ids": match.duplicate_ids,
                  "labelled_before_ids": match.labelled_before_ids}
        if not match.counts["matched"]:
            raise RejectedInput(f"{ctx.path.name}: none of its {match.counts['label_rows']} id(s) match a row "
                                f"predicted and waiting for labels (join on {', '.join(spec.labels.join_on)}; "
                                f"{_why_none_matched(match, awaiting)}", labels=report)
        batch = validate_frame(labelled_rows(match, spec), ctx.path.name, fmt, ctx.sha256, spec, champion.schema)
    except RejectedInput as exc:
        awaiting.release(ctx.sha256)  # its rows wait for a usable labels file
        return reject(ctx, champion, exc)
    if match.unmatched_rows:
        report["unmatched_file"] = str(_set_aside_unmatched(ctx, labels, fmt, match))
    realized = realized_scores(match, champion.schema.task, champion.schema.classes)
    overall = realized_score(match, champion.schema.task, champion.schema.classes)
    ctx.realized = {name: {k: s for k, s in scores.items() if k != "rows"} for name, scores in
                    [("realized", overall), *((f"realized_v{v}", scores) for v, scores in realized.items())]}
    ctx.signals["labels"] = {**report, "realized": realized}
    for name, count in match.counts.items():
        if name not in ("label_rows", "matched") and count:
            ctx.log.warning("labels %s: %d id(s) %s", ctx.path.name, count, name.replace("_", " "))
    return note_batch(ctx, batch)
