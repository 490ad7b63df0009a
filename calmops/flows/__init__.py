"""Prefect flows, one module per pipeline kind, and :func:`run_file` to run one file by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple


def flow_for(kind: str):
    """The Prefect flow of a pipeline kind (imported on first use: each kind's module loads only when needed)."""
    import importlib

    from calmops.core.kinds import kind_of

    module, _, function = kind_of(kind).entrypoint.rpartition(".")
    return getattr(importlib.import_module(module), function)


class Placed(NamedTuple):
    """Where :func:`into_incoming` put a file for its run."""

    path: Path  # the file in incoming (the user's own file when ``done``: nothing was copied)
    reserved: str | None  # the content this process reserved in the ledger for its run
    done: str | None  # the content, when it was processed before: no run is needed


def looks_like_labels(spec, path: Path) -> bool:
    """Whether a file from outside the pipeline's folders is a labels file by its columns (spec ``labels``: the
    ``join_on`` columns and the target, no feature column, and none of the champion's input columns); what
    ``calmops run`` takes for one without ``--labels``. Only the header is read where the format allows. Never
    guessed for a spec with a ``preprocess``: the columns it reads are the raw ones, and the features may be
    derived from columns the spec drops afterwards (only ``--labels`` says it is a labels file then); nor when
    the champion cannot be read."""
    from calmops.core import registry
    from calmops.core.features import is_labels_table
    from calmops.tasks.ingest import table_columns

    if spec.labels is None or spec.preprocess is not None:
        return False
    columns = table_columns(path, spec)
    if columns is None or not is_labels_table(spec, columns):
        return False
    try:
        registry.configure()
        champion = registry.champion(spec.name)
    except Exception:  # noqa: BLE001 - unreadable: not guessed, the file is run as a features file and says why
        return False
    return is_labels_table(spec, columns, champion.schema.columns if champion else ())


def into_incoming(spec, path: Path, labels: bool = False) -> Placed:
    """A file from outside the pipeline's incoming folder is copied there first (the user's copy is never
    moved): the run then handles it like any arriving file, and a file it leaves pending is where
    ``calmops status`` and ``calmops relaunch`` look. A file of the same name and bytes there is reused; one
    whose content was processed before is not copied (``done``). With ``labels`` (spec ``labels``), the file
    is a labels file and goes into the labels folder instead, to be decided as one.

    ``reserved`` is the content this process reserved in the ledger for its run
    (:meth:`~calmops.core.store.Ledger.reserve`, before the copy appears: the watcher leaves it to the run), or
    None when there is nothing to reserve (a live run has it, or a first copy waits under another name in the
    folder the file goes into, incoming or the labels folder: the run decides that one, then says so)."""
    from calmops.core.errors import BadInput
    from calmops.core.store import arrival_time, copy_atomic, ledger, ledger_name, pipeline_paths, sha256_of

    path = path.absolute()  # not resolved: a link stays a link, and the run refuses it unread
    paths = pipeline_paths(spec).ensure()
    if labels and paths.labels is None:
        raise BadInput(f"pipeline {spec.name!r} takes no labels files: its spec has no 'labels' section, so its "
                       "files carry their labels in the target column (nothing was copied or run)",
                       hint=f"run the file without --labels; if the labels of {spec.name!r} come later, add a "
                            "'labels:' section (docs/late-labels.md) with 'calmops update'")
    incoming = paths.incoming.resolve()
    labels_folder = paths.labels.resolve() if paths.labels else None
    if labels and path.parent.resolve() == incoming:
        raise BadInput(f"{path} is in the incoming folder of pipeline {spec.name!r}, where it is taken as a "
                       "features file (nothing was moved or read)",
                       hint=f"move it into the labels folder {paths.labels}, or run a copy kept elsewhere")
    if path.parent.resolve() in (incoming, labels_folder):  # in its folder already (a labels file in the labels
        return Placed(path, None, None)  # folder); a link there is refused unread
    if path.is_symlink() or not path.is_file():  # refused here: a run would quarantine (move) it from where it is
        what = "a link" if path.is_symlink() else "a folder" if path.is_dir() else "not a regular file"
        raise BadInput(f"{path} is {what}: a run takes one data file (copied into the pipeline's incoming folder; "
                       "nothing was moved or read)")
    digest = sha256_of(path)
    folder = labels_folder if labels else incoming
    target = folder / path.name
    if target.exists() and sha256_of(target) != digest:
        target = folder / f"{digest[:12]}-{path.name}"
    book = ledger(paths)
    if book.status(digest) == "done":
        return Placed(path, None, digest)
    reserved = book.reserve(digest, ledger_name(paths, target), arrival_time(path.stat().st_mtime_ns), folder)
    if target.exists():
        return Placed(target, digest if reserved else None, None)
    try:
        copy_atomic(path, target)
    except BaseException:
        if reserved:
            book.unreserve(digest)
        raise
    return Placed(target, digest if reserved else None, None)


def run_file(pipeline: str, path: str | Path, labels: bool = False) -> tuple[dict[str, Any], str | None]:
    """Run the pipeline's flow on one file in this process; returns (outcome, error or None). ``labels``: a file
    from outside is a labels file (see :func:`into_incoming`)."""
    from prefect.settings import temporary_settings

    from calmops.core.store import ledger, pipeline_paths, read_spec
    from calmops.flows.common import RunFailed, processed_before

    spec = read_spec(pipeline)
    path, reserved, done = into_incoming(spec, Path(path), labels)
    if done:
        return processed_before(pipeline, path, done).to_dict(), None
    try:
        # a hand run has its user watching, and CalmOps finds a crashed run by its ledger claim, not by Prefect's
        # flow heartbeats: no heartbeat thread (waiting for it to stop costs up to a second at the end of a run)
        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            state = flow_for(spec.kind)(pipeline=pipeline, path=str(path), return_state=True)
    finally:
        if reserved:  # the run took its reservation over, unless it ended before its claim (then it waits again)
            ledger(pipeline_paths(spec)).unreserve(reserved)
    if state.is_completed():
        return state.result(), None
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, RunFailed):
        return exc.outcome.to_dict(), exc.outcome.reason
    return {"pipeline": pipeline, "file": Path(path).name, "decision": "failed", "reason": str(exc)}, str(exc)
