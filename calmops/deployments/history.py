"""``calmops history NAME``: a pipeline's files in the order it took them, and what was decided for each.

The pipeline's ledger gives every file it has seen (decided, quarantined, waiting, pending, running) and the
MLflow run of each; the run's tags and metrics give the decision, its reason, the drift verdict, the versions
and the serving model's score on the file. Nothing is downloaded: tags and metrics come with the run search. Only that command imports this module,
so MLflow's client is imported at the top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from calmops.core import registry
from calmops.core.names import (
    DRIFT_UNCHECKED,
    Decision,
    decided_metric,
    had_serving_model,
    serving_score,
    shown_decision,
)
from calmops.core.spec import PipelineSpec
from calmops.core.store import (
    LABELS_ENTRY,
    arrival_time,
    as_written,
    entry_name,
    has_ledger,
    incoming_files,
    ledger,
    ledger_name,
    pipeline_paths,
    quarantine_records,
    sha256_of,
)
from calmops.deployments.readout import iso_seconds

#: ledger statuses as people read them
STATUS_WORDS = {"done": "decided", "gone": "quarantined", "in_progress": "running"}
_RUN_IDS_PER_SEARCH = 100  # run ids per ``IN (...)`` filter: the filter stays a short request


def _order(entries: list[dict], unrecorded: list[dict]) -> list[dict]:
    """Files taken, in the order they were taken, then the files still to be decided (waiting, and pending: a failed
    run released its claim, and the file holds those behind it), in the order they arrived; each once."""
    def taken_for_good(e: dict) -> bool:
        return e.get("claimed_at") is not None and e.get("status") not in ("waiting", "pending")

    taken = [e for e in entries if taken_for_good(e)]
    waiting = [e for e in entries if not taken_for_good(e)] + unrecorded
    taken.sort(key=lambda e: e["claimed_at"])
    waiting.sort(key=lambda e: e.get("arrived") or 0)
    return taken + waiting


def _runs(pipeline: str, run_ids: list[str]) -> dict[str, Any]:
    """The MLflow runs of ``run_ids`` (with their tags and metrics) by id; those MLflow no longer has are left out."""
    if not run_ids:
        return {}
    registry.configure()
    experiment = MlflowClient().get_experiment_by_name(registry.experiment_name(pipeline))
    if experiment is None:
        return {}
    found = {}
    for start in range(0, len(run_ids), _RUN_IDS_PER_SEARCH):
        chunk = run_ids[start:start + _RUN_IDS_PER_SEARCH]
        quoted = ", ".join(f"'{run_id}'" for run_id in chunk)
        for run in MlflowClient().search_runs([experiment.experiment_id], filter_string=f"attributes.run_id IN ({quoted})",
                                              max_results=len(chunk)):
            found[run.info.run_id] = run
    return found


def _metric(spec: PipelineSpec, runs: dict[str, Any]) -> str | None:
    """The metric the pipeline decides on (:func:`calmops.core.names.decided_metric`)."""
    return decided_metric(spec.evaluation.primary_metric, (key for run in runs.values() for key in run.data.metrics))


def _serving_score(run: Any, metric: str | None) -> float | None:
    """The score of the model that was serving, on every row of the file (before anything learnt from it).
    A first model (``train``) had no model serving before it."""
    if metric is None or not had_serving_model(run.data.tags.get("calmops.decision")):
        return None
    return serving_score(run.data.metrics, metric)


def _quarantine_reasons(records: list[tuple[Path, dict]]) -> dict[tuple[str | None, str], str]:
    """The reason of every file in quarantine (``records``: :func:`quarantine_records`, oldest first) by (file name,
    content SHA-256), and by (None, SHA-256) for a file renamed since; the latest record of a key gives it."""
    out: dict[tuple[str | None, str], str] = {}
    for _, record in records:
        if record.get("sha256") and record.get("reason"):
            out[(None, record["sha256"])] = out[(as_written(record.get("file")), record["sha256"])] = _reason(record)
    return out


def _reason(record: dict) -> str:
    return as_written(record.get("reason")) or ""


def _quarantined_at(record: tuple[Path, dict]) -> float | None:
    """When the file was quarantined: its sidecar's modification time (None when the sidecar is gone)."""
    try:
        return record[0].stat().st_mtime
    except OSError:
        return None


def _by_time(records: list[tuple[Path, dict]]) -> list[tuple[Path, dict]]:
    """The quarantine's records oldest first (a record whose sidecar is gone meanwhile is left out)."""
    timed = [(at, i, record) for i, record in enumerate(records) if (at := _quarantined_at(record)) is not None]
    return [record for *_, record in sorted(timed)]


def _quarantined_elsewhere(records: list[tuple[Path, dict]], entries: list[dict]) -> list[dict]:
    """The times a file was quarantined (``records``, oldest first, also of files moved out of quarantine since)
    that no ledger row stands for. The ledger keeps one row per content, the last thing that happened to it: of the
    same bytes quarantined under two names (a copy dropped again) only the last has one; bytes quarantined, then
    dropped again or moved back into incoming and decided, have a row for the decision only; a link or pipe the
    watcher refused unread has none. A ledger row of quarantined bytes stands for the latest record of its name and
    content; every other record is a ledger-like entry of its own, taken and decided when it was quarantined, named
    as the ledger names its file (``labels/<name>`` for a labels file) and arrived when its record says."""
    kept = {(e["file"].removeprefix(LABELS_ENTRY), e["sha256"]) for e in entries if e["status"] == "gone"}
    # a record that does not say its folder (written before records did): a labels file if the ledger's row of
    # those bytes, under that name, is a labels file's
    labelled = {(e["file"].removeprefix(LABELS_ENTRY), e["sha256"]) for e in entries
                if e["file"].startswith(LABELS_ENTRY)}
    out = []
    for record in reversed(records):
        sidecar, data = record
        name = as_written(data.get("file"))
        if (name, data.get("sha256")) in kept:
            kept.discard((name, data.get("sha256")))  # the row's own line; an earlier record is a line of its own
            continue
        taken = _quarantined_at(record)
        if taken is None:
            continue
        folder = data.get("folder")
        labels = folder == "labels" if folder is not None else (name, data.get("sha256")) in labelled
        arrived = data.get("arrived")
        out.append({"sha256": data.get("sha256"), "file": entry_name(name or sidecar.name, labels), "status": "gone",
                    "decision": Decision.REJECTED_INPUT, "claimed_at": taken, "reason": _reason(data),
                    "arrived": arrived if isinstance(arrived, (int, float)) else None, "quarantined_only": True})
    return out[::-1]


def _duplicates(processed: Path, entries: list[dict]) -> list[dict]:
    """The files in ``processed`` a run answered a duplicate of bytes decided before under another name: the ledger
    keeps one row per content, the first file's, so a copy has none of its own. A processed file not named by any
    row (as a run placed it: its own name, or ``<sha256[:12]>-<name>`` when that name was taken) is read, and one
    whose content has a decided row under another name is a line of its own: decided when it arrived (a run
    answers a duplicate at once; moving keeps the modification time), with the first file named."""
    named = {e["file"].removeprefix(LABELS_ENTRY) for e in entries}
    decided = {e["sha256"]: e for e in entries if e["status"] == "done" and e.get("sha256")}
    # where a run put a decided file when its name was taken: the file itself, unless the name holds the same
    # bytes (then this is a copy that came again under its name, put beside it)
    moved_aside = {f"{sha[:12]}-{e['file'].removeprefix(LABELS_ENTRY)}": (sha, e["file"].removeprefix(LABELS_ENTRY))
                   for sha, e in decided.items()}
    if not decided or not processed.is_dir():
        return []
    out = []
    for path in sorted(processed.iterdir()):
        if path.name in named or path.name.startswith(".") or not path.is_file():
            continue
        if path.name in moved_aside and not _holds(processed / moved_aside[path.name][1], moved_aside[path.name][0]):
            continue
        try:
            sha, arrived = sha256_of(path), arrival_time(path.stat().st_mtime_ns)
        except OSError:  # moved away meanwhile
            continue
        first = decided.get(sha)
        if first is None:  # put there by hand, or its content's row is gone: not a file this pipeline decided
            continue
        name = path.name.removeprefix(f"{sha[:12]}-")
        labels = first["file"].startswith(LABELS_ENTRY)
        out.append({"sha256": sha, "file": entry_name(name, labels), "status": "done", "decision": Decision.DUPLICATE,
                    "claimed_at": arrived, "arrived": arrived, "duplicate_of": first["file"],
                    "reason": f"same content as {first['file']}, decided before it"})
    return out


def _holds(path: Path, sha256: str) -> bool:
    """Whether ``path`` is a file whose bytes hash to ``sha256``."""
    try:
        return path.is_file() and sha256_of(path) == sha256
    except OSError:  # moved away meanwhile
        return False


def _version(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def file_history(spec: PipelineSpec, limit: int | None = None) -> dict[str, Any]:
    """``{"pipeline", "metric", "total", "files": [...]}``: the last ``limit`` files (every file when None or 0),
    oldest first. Each file: its name as the ledger keeps it, ledger status, decision, reason, drift, the serving
    champion's and the challenger's versions, the serving model's score on it (``metric``), when it arrived
    and was decided, and its MLflow run."""
    paths = pipeline_paths(spec)
    book = ledger(paths) if has_ledger(paths) else None
    states = book.states() if book else {}
    in_incoming = incoming_files(paths.incoming)
    labels = incoming_files(paths.labels) if paths.labels is not None else []
    present = {p.name for p in in_incoming} | {ledger_name(paths, p) for p in labels}
    # a file waiting or pending that was moved out of incoming is no longer the pipeline's (as status counts)
    entries = [e for e in (book.entries() if book else [])
               if e["status"] not in ("waiting", "pending") or e["file"] in present]
    quarantined = _by_time(quarantine_records(paths, moved_out=True))  # every sidecar read once
    entries += _quarantined_elsewhere(quarantined, entries) + _duplicates(paths.processed, entries)
    recorded = {e["file"] for e in entries if e["status"] != "done"}
    # files in incoming the ledger has not heard of yet (no watcher running, say): waiting all the same
    unrecorded = []
    for path in in_incoming:
        try:
            if path.name not in recorded:
                unrecorded.append({"sha256": None, "file": path.name, "status": "waiting",
                                   "arrived": arrival_time(path.stat().st_mtime_ns)})
        except FileNotFoundError:  # taken by a run meanwhile: the ledger has it now
            continue
    ordered = _order(entries, unrecorded)
    shown = ordered[-limit:] if limit else ordered
    runs = _runs(spec.name, [e["mlflow_run_id"] for e in shown if e.get("mlflow_run_id")])
    metric = _metric(spec, runs)
    held = _quarantine_reasons(quarantined)
    files = []
    for entry in shown:
        run = runs.get(entry.get("mlflow_run_id") or "")
        tags = run.data.tags if run else {}
        own = entry.get("quarantined_only") or entry.get("duplicate_of")  # a line no ledger row stands for
        status = ("gone" if entry.get("quarantined_only") else entry["status"] if own
                  else states.get(entry["sha256"] or "", entry["status"]))
        # a failed run's reason is in the ledger too: MLflow has none when its server did not answer
        reason = (entry.get("reason") if own or entry.get("decision") == Decision.FAILED
                  else None) or tags.get("calmops.reason")
        if reason is None and status == "gone":  # its MLflow run is gone: the quarantine's record says why
            reason = (held.get((entry["file"].removeprefix(LABELS_ENTRY), entry["sha256"]))
                      or held.get((None, entry["sha256"])))
        drifted = [f for f in tags.get("calmops.drifted_features", "").split(",") if f]
        decision = tags.get("calmops.decision") or entry.get("decision")
        checked = "calmops.drift_detected" in tags and decision not in DRIFT_UNCHECKED
        files.append({
            "file": entry["file"],
            "status": STATUS_WORDS.get(status, status),
            "decision": shown_decision(decision),  # a quarantined file's: "quarantined" (recorded rejected_input)
            "reason": reason,
            "drift_detected": tags["calmops.drift_detected"] == "true" if checked else None,
            "drifted_features": drifted,
            "champion_version": _version(tags.get("calmops.champion_version")),
            "challenger_version": _version(tags.get("calmops.challenger_version")),
            "score": _serving_score(run, metric) if run else None,
            "arrived": iso_seconds(entry.get("arrived")),
            # a pending file is not decided: its run failed, and the next one decides it
            "decided": (None if status == "pending" else iso_seconds(run.info.end_time / 1000)
                        if run and run.info.end_time else iso_seconds(entry["claimed_at"]) if own else None),
            "mlflow_run_id": entry.get("mlflow_run_id"),
            "sha256": entry["sha256"],
        })
    return {"pipeline": spec.name, "metric": metric, "total": len(ordered), "files": files}
