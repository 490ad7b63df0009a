"""The ``calmops`` command line (typer). Errors are one line with a hint and a non-zero exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from calmops.core.logs import printable
from calmops.core.names import shown_decision


class _LazyGenerate(TyperGroup):
    """Imports the generators (river, matplotlib…) only when ``calmops generate`` runs, not to list it."""

    def resolve_command(self, ctx, args):
        if args and args[0] == "generate":
            from calmops.generators.cli import app as generate_app

            command = typer.main.get_command(generate_app)
            command.name = "generate"
            command.help = GENERATE_HELP
            return "generate", command, args[1:]
        return super().resolve_command(ctx, args)


GENERATE_HELP = "Generate drifting data (synthetic, real-like, clinic, injection, scenarios)."
# rich_markup_mode=None: help and usage errors in click's plain format. typer's rich help imports
# typer.rich_utils, which pulls in rich.markdown (markdown-it), rich.traceback and pygments: that alone
# doubled the time of 'calmops --help'. Sub-commands and groups inherit the mode.
app = typer.Typer(name="calmops", cls=_LazyGenerate, help="Drift monitoring and safe retraining for models fed by files.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.callback()
def _options(debug: Annotated[bool, typer.Option(
        "--debug", envvar="CALMOPS_DEBUG", help="Show full tracebacks and debug logs on errors.")] = False) -> None:
    """Drift monitoring and safe retraining for models fed by files."""
    _state["debug"] = debug


@app.command("generate", help=GENERATE_HELP)
def _generate_listing() -> None:  # pragma: no cover - replaced by the real group in _LazyGenerate
    """Listed in the help; the real commands load on use."""


breaker_app = typer.Typer(help="Inspect or reset a pipeline's circuit breaker.", no_args_is_help=True,
                          rich_markup_mode=None)
app.add_typer(breaker_app, name="breaker")
from calmops.deployments.console import (  # console: imported where used (made on first use)
    CliError,
    JsonOption,
    _fail,
    _print_json,
    _state,
    friendly,
    one_line,
)


def shown(value: Any, prefix: str = "") -> str:
    """A value for people: ``-`` for nothing, never a Python repr."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {prefix}{shown(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(shown(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{prefix}{printable(str(value))}"  # a file name can hold a line break or a terminal's escape code


# -- pipelines ----------------------------------------------------------------------------


@app.command("create")
@friendly(servers=("prefect", "mlflow"))
def create(spec_file: Annotated[Path, typer.Argument(help="The pipeline's spec (YAML).")],
           adopt: Annotated[bool, typer.Option("--adopt", help="Serve the champion the MLflow registered model "
                                                               "of this pipeline name already has.")] = False):
    """Create a pipeline from a spec file."""
    from calmops.core import registry
    from calmops.core.spec import load_spec
    from calmops.core.store import PipelineExists, pipeline_paths
    from calmops.deployments.console import console

    spec = load_spec(spec_file)
    if pipeline_paths(spec).spec_file.exists():  # first: MLflow's model of an existing pipeline is its own
        raise PipelineExists(f"pipeline {spec.name!r} exists already")
    registry.configure()
    existing = registry.aliases(spec.name).get("champion")
    legacy = registry.legacy_champion(spec.name) if existing is None else None  # registered before the prefix
    if (existing is not None or legacy is not None) and not adopt:
        model, version = (registry.model_name(spec.name), existing) if existing is not None else (spec.name, legacy)
        raise CliError(f"MLflow already has a registered model {model!r} with champion v{version}: a new "
                       "pipeline of that name would serve it (and judge its first file with it)",
                       "pass --adopt to reuse that model on purpose, or choose another pipeline name")
    _needs_a_champion(spec, existing is not None or legacy is not None)
    if legacy is not None:  # adopted on purpose: under its prefixed name from now on
        registry.migrate_model_name(spec.name)
    paths = _save_from(spec_file, spec, create=True)
    registry.ensure_experiment(spec.name)  # the viewer lists the pipeline (no run yet) from its first minute
    console.print(f"created pipeline [bold]{spec.name}[/] ({spec.kind}); drop files into {paths.incoming}")
    from calmops.deployments.operations_cli import sync_pipeline

    sync_pipeline(spec.name, console)


@app.command("update")
@friendly(servers=("prefect", "mlflow"))
def update(name: str, spec_file: Path):
    """Replace a pipeline's spec (validated; the change is versioned) and say which settings it changed."""
    from rich.markup import escape

    from calmops.core.spec import (
        SpecError,
        dropped_id_columns,
        load_spec,
        resolve_paths,
        setting_changes,
        with_next_model,
    )
    from calmops.core.store import last_saved_spec, read_spec
    from calmops.deployments.console import console

    try:
        before = read_spec(name)
    except SpecError:  # its spec.yaml was broken in place: the update mends it, judged by its last saved version
        before = last_saved_spec(name)
    spec = load_spec(spec_file)
    if spec.name != name:
        raise CliError(f"the spec names pipeline {spec.name!r}, not {name!r}", "a pipeline cannot be renamed")
    _keeps_what_awaits_labels(name, before, resolve_paths(spec, spec_file.expanduser().resolve().parent))
    if spec.prediction_only:
        from calmops.core import registry

        registry.configure()
        _needs_a_champion(spec, registry.aliases(name).get("champion") is not None)
    _save_from(spec_file, spec, create=False)
    changes = setting_changes(before, read_spec(name)) if before is not None else None  # as saved: paths absolute
    if changes is None:
        console.print(f"updated pipeline [bold]{name}[/] (no earlier version of its spec reads: nothing to "
                      "compare with)")
    elif not changes:
        console.print(f"updated pipeline [bold]{name}[/]: no setting changed")
    else:
        console.print(f"updated pipeline [bold]{name}[/]; changed:")
        for change in changes:
            console.print(f"  {escape(change)}", highlight=False)
        later = with_next_model(changes)
        if later:
            console.print(f"{escape(', '.join(later))} apply from the next model trained: the current champion keeps "
                          "the columns, feature types, estimator and drift reference it was trained with (the drift "
                          "report still tests them) until a retrain promotes a new model (a labelled file that "
                          "drifts, or every labelled file with retrain.retrain_on: always)", highlight=False)
    if before is not None and (lost := dropped_id_columns(before, read_spec(name))):
        console.print(f"[yellow]warning:[/] {escape(lost)}", highlight=False)
    from calmops.deployments.operations_cli import sync_pipeline

    sync_pipeline(name, console)


def _save_from(spec_file: Path, spec, *, create: bool):
    """Save a spec read from ``spec_file``, its relative paths taken from the file's folder; what the checks on
    save find (a model class, its params, a hook) is said with the file's name, as a problem of reading it is."""
    from rich.markup import escape

    from calmops.core.spec import SpecError, ignored_settings
    from calmops.core.store import save_spec
    from calmops.deployments.console import console

    try:
        paths = save_spec(spec, create=create, base=spec_file.expanduser().resolve().parent)
    except SpecError as exc:
        raise SpecError(f"{spec_file}: {exc}") from None
    for warning in ignored_settings(spec):  # saved as given: a spec that worked keeps working
        console.print(f"[yellow]warning:[/] {escape(f'{spec_file}: {warning}')}", highlight=False)
    return paths


def _keeps_what_awaits_labels(name: str, before, spec) -> None:
    """While rows await their labels or labels files wait in the labels folder, a spec that would leave them
    unjoined for good is refused: one without the ``labels`` section, one with other ``labels.join_on`` columns
    (the rows are kept under their values in the old ones: no labels file would match them) or another labels
    folder (the old one, where their labels files wait and are expected, would no longer be watched). A current
    spec that cannot be read (a spec.yaml broken in place, which the update mends) is judged by its last saved
    version (``before``); when none reads, any row awaiting labels refuses the update. ``spec`` has its paths
    resolved."""
    from calmops.core.awaiting import Awaiting
    from calmops.core.settings import get_settings
    from calmops.core.store import incoming_files, pipeline_paths

    if before is not None and before.labels is None:
        return
    root = get_settings().pipeline_dir(name)
    max_wait = before.labels.max_wait_days if before is not None else 30.0  # counting overdue rows only
    rows = Awaiting(root, root / "state").waiting(max_wait)["waiting"]
    if before is None:
        if rows:
            raise CliError(f"pipeline {name!r} has {rows} row(s) awaiting labels, and neither its spec.yaml nor any "
                           f"saved version in {root / 'spec_history'} can be read: whether the new spec still joins "
                           "them cannot be told",
                           f"mend {root / 'spec.yaml'} by hand so that it reads (keeping its labels section), then "
                           "update")
        return
    old, new = before.labels, spec.labels
    folder, new_folder = pipeline_paths(before).labels, pipeline_paths(spec).labels
    if new is None:
        change, keep = "without its labels section none of them would ever be joined", "the labels section"
    elif new.join_on != old.join_on:
        change = (f"the rows are kept under their values of the labels.join_on columns {old.join_on}, and labels "
                  f"files name them by those: joined on {new.join_on}, none would ever match")
        keep = f"labels.join_on {old.join_on}"
    elif new_folder != folder:
        change = (f"with the labels folder {new_folder}, {folder} (where their labels files wait and are expected) "
                  "would no longer be watched")
        keep = f"labels.incoming {folder}"
    else:
        return
    files = len(incoming_files(folder))
    if rows or files:
        raise CliError(f"pipeline {name!r} has {rows} row(s) awaiting labels and {files} labels file(s) waiting in "
                       f"{folder}: {change}",
                       f"keep {keep} until their labels files have come and been decided ('calmops status {name}' "
                       "counts both), then update")


def _needs_a_champion(spec, has_champion: bool) -> None:
    """A prediction-only pipeline serves a trained model and never trains one: without a champion every file
    would fail (and open the breaker)."""
    if spec.prediction_only and not has_champion:
        raise CliError(f"pipeline {spec.name!r} is prediction_only, but MLflow has no champion for it to predict with",
                       "train one first: create the pipeline without prediction_only, let a labelled file train the "
                       "first model, then 'calmops update' with prediction_only: true (or --adopt a registered model)")


@app.command("list")
@friendly
def list_(as_json: Annotated[bool, JsonOption] = False):
    """List pipelines with their kind, champion and last decision."""
    from rich.table import Table

    from calmops.core.store import list_pipelines
    from calmops.deployments.console import console, print_table

    rows = _summaries(list_pipelines())
    if as_json:
        return _print_json(rows)
    if not rows:
        console.print("no pipelines yet: create one with 'calmops create SPEC.yaml' (see docs/examples/)")
        return
    table = Table("pipeline", "kind", "champion", "breaker", "files done", "last decision")
    _say_unreadable(rows)
    for r in rows:
        table.add_row(r["name"], r["kind"], _unknown_or_shown(r, "champion_version", "v"),
                      _unknown_or_shown(r, "breaker"), _unknown_or_shown(r, "files_done"),
                      _unknown_or_shown(r, "last_decision"))
    print_table(table)


@app.command("show")
@friendly
def show(name: str):
    """Print a pipeline's spec."""
    from calmops.core.store import read_spec
    from calmops.deployments.console import console

    console.print(read_spec(name).to_yaml(), highlight=False, markup=False)


#: seconds ``status`` and ``list`` try the PostgreSQL state database (a run waits out a restart of it)
STATE_PATIENCE = 5.0


def _summaries(names: list[str]) -> list[dict[str, Any]]:
    """Each pipeline's state, read without MLflow's or Prefect's client (see calmops.deployments.readout).
    While the state database does not answer, each pipeline's row says so (``state_unreadable``) with its
    ledger's counts unknown (None), after one short try: the rest (services, breakers) is still shown."""
    from calmops.core import statedb
    from calmops.core.settings import get_settings
    from calmops.core.spec import SpecError
    from calmops.deployments import readout

    breakers = readout.breakers() if names else {}
    schemes = readout.schemes() if names and breakers is not None else None  # only while Prefect answers
    tracking_uri = get_settings().mlflow_tracking_uri
    rows, down, registry_down = [], None, None
    shared = bool(statedb.state_database_url())  # one PostgreSQL database for all, else a file per pipeline
    with statedb.patience(STATE_PATIENCE):
        for name in names:
            try:
                row = _summary(name, breakers, tracking_uri, registry_down, down, schemes)
            except SpecError as exc:  # one pipeline's broken spec.yaml: said in its row, the others shown
                rows.append(_unreadable_spec_row(name, str(exc), breakers, tracking_uri, registry_down))
                continue
            rows.append(row)
            registry_down = row["registry_unreadable"]  # asked once: the registry is one for all
            if shared:  # the next pipelines' ledgers are in the same database; with SQLite, other files
                down = row["state_unreadable"]
    return rows


def _unreadable_spec_row(name: str, why: str, breakers: dict | None = None, tracking_uri: str | None = None,
                         registry_down: str | None = None) -> dict[str, Any]:
    """The row of a pipeline whose spec cannot be read, and why (``spec_unreadable``): what depends on the spec
    unknown; its champion, aliases, breaker and pause, which do not, read as for any pipeline."""
    fields = ("kind", "incoming", "labels_folder", "files_quarantined", "runs_recovered", "served_by", "not_served",
              *LEDGER_FIELDS)
    row = _without_spec(name, breakers, tracking_uri, registry_down)
    row["unknown"] += fields
    return {**row, "spec_unreadable": why, **dict.fromkeys(fields)}


def _without_spec(name: str, breakers: dict | None, tracking_uri: str | None,
                  registry_down: str | None) -> dict[str, Any]:
    """The fields of a status row that do not depend on the pipeline's spec: its champion and aliases (unknown,
    listed in ``unknown``, when the registry cannot be read or no tracking URI is set), its breaker (from
    ``breakers``, None when Prefect's Blocks could not be read) and its pause."""
    from dataclasses import asdict

    from calmops.core.pause import paused
    from calmops.deployments import readout

    aliases, registry_unreadable = _aliases(name, tracking_uri, registry_down) if tracking_uri else (None, None)
    breaker = None if breakers is None else breakers.get(name, readout.closed_breaker())
    return {"unknown": ["champion_version", "aliases"] if registry_unreadable or not tracking_uri else [],
            "state_unreadable": None, "registry_unreadable": registry_unreadable, "spec_unreadable": None,
            "name": name, "champion_version": (aliases or {}).get("champion"), "aliases": aliases,
            "breaker": breaker["state"] if breaker else "unknown", "breaker_detail": breaker,
            "paused": asdict(pause) if (pause := paused(name)) is not None else None}


def _aliases(name: str, tracking_uri: str, down: str | None = None) -> tuple[dict[str, int] | None, str | None]:
    """The registered model's aliases, or (None, why) when the registry cannot be read: its server is out of
    reach while the configuration keeps its state in a database of its own (a local file would say "no model"),
    or it answers with an error; ``down``: why it could not be read for another pipeline just now."""
    from calmops.core.environment import servers_out_of_reach
    from calmops.deployments import readout
    from calmops.deployments.console import one_line

    if down:
        return None, down
    if servers_out_of_reach(("mlflow",)):
        return None, "the MLflow server is not running (its backend store is a database of its own)"
    try:
        return readout.aliases(name, tracking_uri), None
    except Exception as exc:  # noqa: BLE001 - said in the row; the rest of the status is still worth showing
        return None, f"the model registry could not be read ({type(exc).__name__}: {one_line(exc)})"


def _unknown_or_shown(row: dict[str, Any], key: str, prefix: str = "") -> str:
    """A value of a status row: ``?`` where the state database or the registry could not be read (the value is
    unknown, not none: the row's ``unknown``), else :func:`shown`."""
    return "?" if key in row.get("unknown", ()) else shown(row[key], prefix)


def _summary(name: str, breakers: dict | None, tracking_uri: str, registry_down: str | None = None,
             state_down: str | None = None, schemes: Any = None) -> dict[str, Any]:
    """One pipeline's row of ``status``/``list``; add a key here and a label in STATUS_FIELDS to show more.
    What the ledger says is unknown (None, listed in ``unknown``, why in ``state_unreadable``) when it cannot be
    read, or when ``state_down`` says the state database did not answer for another pipeline just now; so is the
    champion when the registry cannot be read (``registry_unreadable``; ``registry_down`` likewise). The
    deployments that run its files (``served_by``; ``not_served`` says why and what to do while both deployment
    schemes would each run them) are None when Prefect's are not known (``schemes``, see
    :func:`calmops.deployments.readout.schemes`)."""
    from calmops.core import statedb
    from calmops.core.schemes import scheme_advice, two_runs
    from calmops.core.store import pipeline_paths, quarantined_files, read_spec
    from calmops.deployments import stalls
    from calmops.deployments.console import one_line

    spec = read_spec(name)
    paths = pipeline_paths(spec)
    both = schemes.conflict(name, spec.kind) if schemes is not None else []
    row = _without_spec(name, breakers, tracking_uri, registry_down)
    row.update({
        "state_unreadable": state_down,
        "kind": spec.kind,
        "incoming": str(paths.incoming),
        "labels_folder": str(paths.labels) if paths.labels is not None else None,
        "files_quarantined": len(quarantined_files(paths)),
        "runs_recovered": stalls.recovered(name),
        "served_by": schemes.serving(name, spec.kind) if schemes is not None else None,
        "not_served": f"{two_runs(both)}, so none is announced; {scheme_advice(name, both)}" if both else None,
    })
    if state_down is None:
        try:
            return {**row, **_ledger_counts(spec, paths)}
        except statedb.errors() as exc:
            said = f"{type(exc).__name__}: {one_line(exc)}"
            row["state_unreadable"] = (f"the state database does not answer ({said})" if statedb.state_database_url()
                                       else f"its ledger could not be read ({said})")
    applies = {"labels_waiting": paths.labels is not None, "awaiting_labels": spec.labels is not None,
               "held_behind": spec.order == "arrival"}  # a field that does not apply stays None, not unknown
    row["unknown"] += [key for key in LEDGER_FIELDS if applies.get(key, True)]
    return {**row, **dict.fromkeys(LEDGER_FIELDS)}


#: the fields of a status row that its ledger (and its labels table) give
LEDGER_FIELDS = ("files_done", "files_pending", "files_running", "files_orphaned", "held_behind", "files_waiting",
                 "labels_waiting", "awaiting_labels", "last_file", "last_decision")


def _ledger_counts(spec: Any, paths: Any) -> dict[str, Any]:
    """The :data:`LEDGER_FIELDS` of a pipeline's status row; raises what the state database raises."""
    from calmops.core.awaiting import Awaiting
    from calmops.core.store import (
        LABELS_ENTRY,
        has_ledger,
        incoming_files,
        ledger,
        ledger_name,
        pending_files,
    )

    book = ledger(paths) if has_ledger(paths) else None
    entries = book.entries() if book else []
    states = book.states() if book else {}
    pending = pending_files(paths)
    # taken by a run: a live one, or one that died holding it (an orphaned claim, counted apart)
    taken = {e["file"] for e in entries if states.get(e["sha256"]) in ("in_progress", "orphaned")}
    # the last file decided, in the order taken: a file a run holds has no decision yet (a claim clears it), one
    # whose run failed or met an open breaker has that decision (pending: it is run again)
    last = next((e for e in reversed(entries) if e["decision"]), None)
    return {
        "files_done": sum(e["status"] == "done" for e in entries),
        "files_pending": len(pending),
        "files_running": sum(state == "in_progress" for state in states.values()),
        # a claim whose file left incoming is not taken again (the pipeline's turn passes over it); a labels file's
        # while it is in the labels folder
        "files_orphaned": sum(state == "orphaned" for _sha, _file, state in book.queue(paths.incoming))
        + sum(states.get(e["sha256"]) == "orphaned" and e["file"].startswith(LABELS_ENTRY) and paths.labels is not None
              and (paths.labels / e["file"].removeprefix(LABELS_ENTRY)).exists() for e in entries) if book else 0,
        # a file moved out of incoming holds nothing back: the pipeline's turn passes over it
        "held_behind": book.held_behind(paths.incoming) if book and spec.order == "arrival" else None,
        # files a run may take (not temporary names) that are neither pending nor taken by a run
        "files_waiting": sum(p not in pending and p.name not in taken for p in incoming_files(paths.incoming)),
        # labels files (spec labels) in the labels folder, likewise; None without a labels folder
        "labels_waiting": sum(p not in pending and ledger_name(paths, p) not in taken
                              for p in incoming_files(paths.labels)) if paths.labels is not None else None,
        "awaiting_labels": Awaiting(paths.root, paths.state).waiting(spec.labels.max_wait_days) if spec.labels else None,
        "last_file": last["file"] if last else None,
        "last_decision": shown_decision(last["decision"]) if last else None,
    }


# (label, key) of ``calmops status NAME``, in order; values go through shown()
STATUS_FIELDS = (
    ("kind", "kind"), ("champion", "champion_version"), ("aliases", "aliases"), ("breaker", "breaker"),
    ("waiting", "files_waiting"), ("labels waiting", "labels_waiting"), ("held behind", "held_behind"), ("pending", "files_pending"),
    ("running", "files_running"), ("orphaned claims", "files_orphaned"), ("done", "files_done"),
    ("quarantined", "files_quarantined"), ("stalled runs recovered", "runs_recovered"),
    ("rows awaiting labels", "awaiting_labels"), ("last file", "last_file"), ("last decision", "last_decision"),
    ("served by", "served_by"), ("incoming", "incoming"), ("labels folder", "labels_folder"),
)
# columns of the pipelines table of ``calmops status``
STATUS_COLUMNS = (("pipeline", "name"), ("kind", "kind"), ("champion", "champion_version"),
                  ("breaker", "breaker"), ("waiting", "files_waiting"), ("pending", "files_pending"),
                  ("running", "files_running"),
                  ("done", "files_done"), ("quarantined", "files_quarantined"))


def _stack_state() -> dict[str, Any]:
    from calmops.deployments import stack, stalls

    services = stack.status()
    return {"up": any(s["pid"] or s.get("outside") for s in services.values()), "services": services,
            "worker_restarts": stalls.worker_restarts()}


@app.command("status")
@friendly
def status(name: Annotated[str | None, typer.Argument()] = None,
           as_json: Annotated[bool, JsonOption] = False):
    """The local stack's services and every pipeline's counts; one pipeline in detail when NAME is given."""
    from rich.box import SIMPLE
    from rich.table import Table

    from calmops.core.store import list_pipelines
    from calmops.deployments.console import console, print_table

    if name:
        data = _summaries([name])[0]
        if as_json:
            return _print_json(data)
        _say_unreadable([data])
        table = Table(show_header=False, box=None, title=f"pipeline {name}", title_justify="left")
        for label, key in STATUS_FIELDS:
            value = _unknown_or_shown(data, key, "v" if key in ("champion_version", "aliases") else "")
            if key == "runs_recovered" and data[key] is not None:
                value = _count_text(data[key])
            if key == "awaiting_labels" and data[key]:
                value = f"{data[key]['waiting']} ({data[key]['overdue']} predicted over labels.max_wait_days ago)"
            if key == "served_by":
                value = _served_text(data)
            table.add_row(label, value)
        print_table(table, highlight=False)
        return
    data = {"stack": _stack_state(), "pipelines": _summaries(list_pipelines())}
    if as_json:
        return _print_json(data)
    _print_stack(data["stack"])
    if not data["pipelines"]:
        console.print("no pipelines yet: create one with 'calmops create SPEC.yaml' (see docs/examples/)")
        return
    _say_unreadable(data["pipelines"])
    # one space between columns, no edges: a pipeline with a name of up to 15 characters fits 80 columns
    table = Table(*(label for label, _ in STATUS_COLUMNS), title="pipelines", title_justify="left", box=SIMPLE,
                  padding=(0, 0), show_edge=False)
    for row in data["pipelines"]:
        table.add_row(*(_unknown_or_shown(row, key, "v" if key == "champion_version" else "")
                        for _, key in STATUS_COLUMNS))
    print_table(table, highlight=False)
    for row in data["pipelines"]:  # not columns (the table fits 80 columns): said when there are some
        if row.get("labels_waiting"):  # the waiting column counts the incoming folder's files only
            console.print(f"{row['name']}: {row['labels_waiting']} labels file(s) waiting in its labels folder "
                          f"(labels waiting; not in the waiting column, which counts its incoming folder)",
                          highlight=False, soft_wrap=True)
        if row.get("files_orphaned"):
            console.print(f"{row['name']}: {row['files_orphaned']} file(s) whose run stopped while deciding "
                          f"(orphaned claims): the next run takes them again; 'calmops status {row['name']}' "
                          "and 'calmops relaunch' say more", highlight=False, soft_wrap=True)


def _served_text(row: dict[str, Any]) -> str:
    """The ``served by`` line of ``calmops status NAME``."""
    if row.get("spec_unreadable"):
        return "?"
    if row["served_by"] is None:
        return "unknown (Prefect is not answering)"
    if row["not_served"]:
        return f"nothing: {' and '.join(row['served_by'])} would each run every file (none is announced)"
    return ", ".join(row["served_by"]) or f"no deployment ('calmops deploy {row['name']}' makes it)"


def _say_unreadable(rows: list[dict[str, Any]]) -> None:
    """The warnings above a status table: what could not be read, and the pipelines no deployment serves."""
    from rich.markup import escape

    from calmops.deployments.console import console

    unread: dict[str, list[str]] = {}
    for row in rows:
        if row.get("state_unreadable"):
            unread.setdefault(row["state_unreadable"], []).append(row["name"])
    for why, names in unread.items():
        console.print(f"[yellow]warning:[/] {', '.join(names)}: {why}: file counts unknown (?) until it can be read; "
                      "files wait in incoming meanwhile, nothing is lost", highlight=False, soft_wrap=True)
    for row in rows:
        if row.get("spec_unreadable"):
            console.print(f"[yellow]warning:[/] {row['name']}: {escape(row['spec_unreadable'])}: its files wait "
                          f"meanwhile; mend it, or 'calmops update {row['name']} SPEC.yaml' (its earlier versions "
                          "are in its spec_history folder)", highlight=False, soft_wrap=True)
    if why := next((row["registry_unreadable"] for row in rows if row.get("registry_unreadable")), None):
        console.print(f"[yellow]warning:[/] {why}: the champions are unknown (?)", highlight=False, soft_wrap=True)
    for row in rows:
        if row.get("not_served"):
            console.print(f"[yellow]warning:[/] {row['name']} is not served: {escape(row['not_served'])}",
                          highlight=False, soft_wrap=True)
    from calmops.core.pause import Pause

    for row in rows:
        if row.get("paused"):
            console.print(f"[yellow]paused:[/] {escape(Pause(**row['paused']).said(row['name']))}", highlight=False,
                          soft_wrap=True)


def _print_stack(state: dict[str, Any]) -> None:
    from rich.box import SIMPLE
    from rich.table import Table

    from calmops.deployments.console import console, print_table

    if not state["up"] and (remote := os.environ.get("PREFECT_API_URL")):  # a host of workers only, say
        console.print(f"no service of the stack runs on this host ('calmops up' starts them here); Prefect's API is "
                      f"{remote}", highlight=False,
                      soft_wrap=True)
        if not any(s.get("elsewhere") for s in state["services"].values()):
            return  # else the servers it reaches, and whether they answer, as below
    elif not state["up"]:
        console.print("the stack is down: start it with 'calmops up', or its services under PM2 or systemd (files wait "
                      "in incoming; breakers are unknown until then)", highlight=False)
        return
    table = Table("service", "url", "pid", "health", title="stack", title_justify="left", box=SIMPLE)
    for service, s in state["services"].items():
        health = ("healthy" if s["healthy"] else f"answers {s['answer']}" if s.get("answer")
                  else "not answering" if s["pid"] or s.get("elsewhere") else "stopped")
        if s.get("elsewhere"):
            health += f" ({s['elsewhere']})"
        if s.get("outside"):
            health += " (started outside calmops up)"
        table.add_row(service, s["url"] or "-", shown(s["pid"] or s.get("names")), health)  # a worker by hand: its name
    print_table(table, highlight=False)
    restarts = state.get("worker_restarts") or {}
    if restarts.get("count"):
        console.print(f"worker restarts by the watcher: {_count_text(restarts)}", highlight=False, markup=False)


def _count_text(record: dict[str, Any]) -> str:
    """A count record of the watchdog (see calmops.deployments.stalls) as 'N (last AT: REASON)'."""
    last = record.get("last") or {}
    return f"{record.get('count', 0)}" + (f" (last {last['at']}: {last['reason']})" if last else "")


@app.command("run")
@friendly(servers=("prefect", "mlflow"))
def run(name: str, file: Path,
        labels: Annotated[bool, typer.Option(
            "--labels", help="FILE is a labels file (the ids and the target of rows predicted before; spec 'labels'): "
                             "it goes into the labels folder and is joined to them. Without it, a file with the id "
                             "columns, the target and no feature column is taken as one (the output says so).")] = False,
        as_json: Annotated[bool, JsonOption] = False):
    """Process one file through the pipeline's flow now, and wait for the decision.

    A file from elsewhere is copied into the pipeline's incoming folder (a labels file: its labels folder) first.
    """
    from calmops.core.store import pipeline_paths, read_spec

    spec = read_spec(name)  # an unknown name is said at once, before the flows (and Prefect) are loaded
    if not file.exists():
        raise CliError(f"{file} does not exist", "give the path of a data file")
    from calmops.flows import looks_like_labels, run_file

    paths = pipeline_paths(spec)
    outside = file.absolute().parent.resolve() not in {f.resolve() for f in (paths.incoming, paths.labels) if f}
    if not labels and outside and file.is_file() and not file.is_symlink() and looks_like_labels(spec, file):
        from calmops.deployments.console import err

        assert spec.labels is not None
        labels = True
        err.print(f"{file.name} holds the id column(s) {', '.join(spec.labels.join_on)} and the target "
                  f"{spec.target!r} and no feature column: taken as a labels file (copied into the labels folder "
                  f"{paths.labels}; --labels says so explicitly)", highlight=False, markup=False,
                  soft_wrap=True)
    outcome, error = run_file(name, file, labels)
    if as_json:
        _print_json({**outcome, "decision": shown_decision(outcome["decision"])})
    else:
        _print_outcome(outcome)
    if error:
        _fail(one_line(error), f"see 'calmops logs {name}' and the flow run in the Prefect UI")


def _first_copy(spec, file: str, labels: bool = False) -> str | None:
    """The file a processed duplicate ``file`` copies (same content, decided first under another name), as the
    ledger names it; None unless that file came from the same folder (``labels``: the labels folder): the
    processed folder keeps both kinds of file, and a bare name is a features file's."""
    from calmops.core.store import LABELS_ENTRY, entry_name, has_ledger, pipeline_paths, sha256_of

    paths = pipeline_paths(spec)
    copy = paths.processed / file
    if not copy.is_file() or not has_ledger(paths):
        return None
    first = _ledger_entry(paths, sha256_of(copy))
    if not first or first.startswith(LABELS_ENTRY) != labels:
        return None
    return first if first != entry_name(file, labels) else None


def _ledger_entry(paths, sha256: str | None) -> str | None:
    """The name the ledger keeps for a content (``labels/<name>`` for a labels file), None when it has none."""
    from calmops.core.store import has_ledger, ledger

    if not sha256 or not has_ledger(paths):
        return None
    return next((e["file"] for e in ledger(paths).entries() if e["sha256"] == sha256), None)


def _quarantined(spec, file: str, labels: bool) -> tuple[Path, dict] | None:
    """The quarantine record (sidecar and content) of ``file``: a labels file's with ``labels``, a features
    file's without (the quarantine folder keeps both kinds under their own names; the ledger says which folder
    a content came from, and a record it does not know is taken for either)."""
    from calmops.core.store import LABELS_ENTRY, pipeline_paths, quarantine_record

    paths = pipeline_paths(spec)
    held = quarantine_record(paths, file)
    if held is None:
        return None
    entry = _ledger_entry(paths, held[1].get("sha256"))
    return held if entry is None or entry.startswith(LABELS_ENTRY) == labels else None


def _print_outcome(o: dict[str, Any]) -> None:
    from rich.markup import escape

    from calmops.core.names import DRIFT_UNCHECKED
    from calmops.core.store import entry_name
    from calmops.deployments.console import console

    unknown = o.get("drift_detected") is None or o["decision"] in DRIFT_UNCHECKED
    drift = "not checked" if unknown else "yes" if o["drift_detected"] else "no"
    details = o.get("details") or {}
    file = entry_name(o["file"], details.get("folder") == "labels")
    console.print(f"[bold]{escape(o['pipeline'])}[/] · {escape(printable(file))} → "
                  f"[bold]{shown_decision(o['decision'])}[/] (drift: {drift})", highlight=False)
    console.print(f"  {printable(o['reason'])}", highlight=False, markup=False)
    # a run that read no row (held, duplicate) or failed records no champion: it left the champion as it was
    unchanged = o.get("champion_version") is None and o["decision"] in ("held", "duplicate", "failed")
    parts = ["champion unchanged" if unchanged else f"champion {shown(o.get('champion_version'), 'v')}"]
    if o.get("challenger_version") not in (None, o.get("champion_version")):  # a promoted one is the champion now
        parts.append(f"challenger v{o['challenger_version']}")
    parts += [f"MLflow run {o['mlflow_run_id']}" if o.get("mlflow_run_id") else None,
              f"flow run {o['flow_run_id']}" if o.get("flow_run_id") else None]
    console.print("  " + " · ".join(p for p in parts if p), highlight=False, markup=False)
    for signal in details.get("signals") or []:  # what ingest noticed: a column the model ignores, one left empty
        console.print(f"  note: {printable(signal)}", highlight=False, markup=False)
    if joined := details.get("labels"):
        counts = ", ".join(f"{joined[k]} {k.replace('_', ' ')}" for k in ("matched", "unmatched", "duplicate",
                                                                          "labelled_before", "late") if joined.get(k))
        console.print(f"  labels: {joined.get('label_rows', 0)} row(s): {counts or 'none matched'}", highlight=False,
                      markup=False)
        if joined.get("unmatched_file"):
            console.print(f"  unmatched rows set aside as {printable(joined['unmatched_file'])}: drop that file into "
                          "the labels folder again once their features have been predicted", highlight=False,
                          markup=False)
    if details.get("processed_by"):
        console.print(f"  processed before by {shown(o['details']['processed_by'])}", highlight=False, markup=False)


@breaker_app.command("show")
@friendly(servers=("prefect",))
def breaker_show(name: str, as_json: Annotated[bool, JsonOption] = False):
    """State, consecutive failures, next retry time and transition history."""
    import time

    from calmops.core.breaker import read_breaker
    from calmops.core.store import read_spec
    from calmops.deployments.console import console

    read_spec(name)
    breaker = read_breaker(name)
    state = breaker.to_public()
    if as_json:  # named, as every other command's answer about one pipeline is
        return _print_json({"pipeline": name, **state})
    due = breaker.state == "open" and breaker.next_retry_at is not None and breaker.next_retry_at <= time.time()
    # the state moves to half_open when the next file's run reads it: until then, say the trial is due
    retry = shown(state["next_retry_at"]) + (" (due: the next file is the trial)" if due else "")
    console.print(f"[bold]{name}[/]: {state['state']} · failures {state['consecutive_failures']} · "
                  f"next retry {retry}", highlight=False)
    for h in state["history"][-10:]:
        console.print(f"  {h['time']} {h['from']} → {h['to']}: {h['reason']}", highlight=False)


@breaker_app.command("reset")
@friendly(servers=("prefect",))
def breaker_reset(name: str):
    """Close the breaker now (operator override), and announce the files waiting in incoming (as relaunch does)."""
    from calmops.core.breaker import update_breaker
    from calmops.core.pause import paused
    from calmops.core.store import read_spec
    from calmops.deployments.console import console
    from calmops.deployments.operations_cli import not_served, relaunch_files

    read_spec(name)
    update_breaker(name, lambda s: s.reset())
    console.print(f"breaker of [bold]{name}[/] reset to closed")
    unserved = not_served([name])  # nothing is announced then: a line says why
    announced = relaunch_files([name], local=False, console=console, unserved=unserved)[name]  # else they wait
    if not announced and not unserved and paused(name) is None:  # for the next scan (a pause said why above)
        console.print("no file waiting in incoming", highlight=False)


@app.command("rollback")
@friendly(servers=("mlflow",))
def rollback(name: str, as_json: Annotated[bool, JsonOption] = False):
    """Serve the previous champion again (after the run deciding files now, if any, has finished them)."""
    from calmops.core import registry, statedb
    from calmops.core.logs import pipeline_logger
    from calmops.core.store import kept_rows, pipeline_paths, read_spec
    from calmops.deployments.console import console, err

    paths = pipeline_paths(read_spec(name)).ensure()
    registry.configure()
    # in the pipeline's turn: a run deciding files now would promote over the model rolled back to, judged
    # against the one it replaced; the rollback waits for it and then stays
    with statedb.turn(paths.root, on_wait=lambda: err.print(
            f"{name}: a run is deciding files; the rollback waits for it to finish them", highlight=False)):
        try:
            old, new = registry.rollback(name, rows_kept=kept_rows(paths))
        except registry.NothingToRollBack as exc:
            raise CliError(str(exc), "a rollback needs at least one promotion after the first model") from None
        pipeline_logger(name, paths.logs).info("rollback (calmops rollback): champion v%s → v%s; v%s is now "
                                               "'previous'", old, new, old)
    if as_json:
        _print_json({"pipeline": name, "champion": new, "previous": old})
        return
    console.print(f"[bold]{name}[/]: champion v{old} → v{new} (v{old} is now 'previous')")


@app.command("report")
@friendly(servers=("mlflow",))
def report(name: str,
           file: Annotated[str | None, typer.Argument(help="The file's name (default: the latest file checked).")] = None,
           out: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write the page.")] = None,
           run_id: Annotated[str | None, typer.Option("--run", help="The MLflow run of an earlier file of that name "
                                                                     "(the report lists them).")] = None):
    """Write the drift report of a file's latest run as one HTML page that opens offline."""
    from calmops.core import registry
    from calmops.core.report_page import file_name, render_report
    from calmops.core.store import LABELS_ENTRY, entry_name, read_spec
    from calmops.core.verdict import DriftVerdict
    from calmops.deployments.console import console

    spec = read_spec(name)
    registry.configure()
    labels = bool(file and file.startswith(LABELS_ENTRY))  # `status` names a labels file labels/<name>
    if labels:
        file = file.removeprefix(LABELS_ENTRY)
    try:
        outcome, verdict, labels = registry.recorded_verdict(name, file, labels=labels, run_id=run_id)
    except registry.NoRecordedRun as exc:
        if run_id:
            raise CliError(str(exc), f"'calmops report {name} {file or 'FILE'}' lists the runs of that file that "
                                     "checked drift") from None
        named = entry_name(file, labels) if file else file  # as `status` names it
        if file and (held := _quarantined(spec, file, labels)):
            sidecar, record = held
            raise CliError(f"{named!r} was quarantined before any drift check: {record.get('reason')}",
                           f"the reason and details are in {sidecar}; mend the file and drop it into the "
                           f"{'labels' if labels else 'incoming'} folder again") from None
        if file and (first := _first_copy(spec, file, labels)):
            raise CliError(f"{named!r} has the same content as {first!r}, decided before it: a duplicate is not "
                           "checked again", f"its report is that file's: calmops report {name} {first}") from None
        if file and not labels and registry.checked_runs(name, file, labels=True):
            # a features file of that name may exist too, unchecked (a first model, a failed run)
            raise CliError(f"no features file {file!r} was checked for drift; a labels file of that name was",
                           f"the labels file's report: calmops report {name} {LABELS_ENTRY}{file}") from None
        raise CliError(str(exc), f"give the file's name as it arrived ('calmops report {name}' alone takes the latest "
                                 f"file checked; the MLflow UI lists every run of experiment calmops/{name} by file); "
                                 "a first model or a failed run has no drift verdict") from None
    target = out or Path(file_name(name, f"labels-{outcome['file']}" if labels else outcome["file"]))
    if not target.parent.is_dir() or target.is_dir():
        where = target if target.is_dir() else target.parent
        raise CliError(f"{where} is {'a folder' if where is target else 'not a folder'}: the page cannot be written "
                       "there", "give -o a file in a folder that exists (or leave -o out: the page goes to this "
                       "folder)")
    target.write_text(render_report(outcome, DriftVerdict.from_dict(verdict)))
    shown_as = entry_name(outcome["file"], labels)  # as `status` names it
    console.print(f"[bold]{name}[/] · {shown_as} ({shown_decision(outcome['decision'])}): report written to {target}",
                  highlight=False)
    if file and not run_id and len(runs := registry.checked_runs(name, outcome["file"], labels=labels)) > 1:
        _say_earlier_runs(name, shown_as, runs)


def _say_earlier_runs(name: str, file: str, runs: list[dict[str, Any]]) -> None:
    """A name that came back (a daily export.csv): the report is of its latest run; say how to reach the others."""
    from calmops.deployments.console import console
    from calmops.deployments.readout import iso_seconds

    console.print(f"{file} was checked {len(runs)} times; this report is of the latest. The earlier ones:",
                  highlight=False)
    for run in runs[1:]:
        console.print(f"  calmops report {name} {file} --run {run['run_id']}   # {iso_seconds(run['started'] / 1000)}, "
                      f"{shown_decision(run['decision'])}", highlight=False, markup=False)


@app.command("history")
@friendly(servers=("mlflow",))
def history(name: str,
            lines: Annotated[int, typer.Option("-n", help="The last N files (0: every file).")] = 20,
            as_json: Annotated[bool, JsonOption] = False):
    """Every file of a pipeline in the order it was taken, with its decision, reason, drift and score."""
    from rich.box import SIMPLE
    from rich.table import Table

    from calmops.core import statedb
    from calmops.core.store import read_spec
    from calmops.deployments.console import console, print_table
    from calmops.deployments.history import file_history

    if lines < 0:
        raise CliError(f"-n {lines} is negative", "give how many of the latest files to show, or 0 for every file")
    with statedb.patience(STATE_PATIENCE):  # reads only: a state database that does not answer is said soon
        data = file_history(read_spec(name), limit=lines)
    if as_json:
        return _print_json(data)
    if not data["files"]:
        console.print(f"pipeline {name} has taken no file yet: drop one into its incoming folder "
                      f"(or 'calmops run {name} FILE')", highlight=False)
        return
    # a score column only when a row shown has a score: none for a first model's file, a quarantined, duplicate
    # or held file, a failed run, nor for a pipeline that logged no score (e.g. prediction-only: no metric)
    metric = data["metric"] if any(row["score"] is not None for row in data["files"]) else None
    scored = [f"{metric} served"] if metric else []
    table = Table("file", "decided (UTC)", "decision", "drift", "champion", "challenger", *scored,
                  "why", title=f"pipeline {name}", title_justify="left", box=SIMPLE)
    for row in data["files"]:
        drift = shown(row["drift_detected"]) + (f" ({len(row['drifted_features'])})" if row["drifted_features"] else "")
        decided = (row["decided"] or "").replace("T", " ").removesuffix("+00:00")
        score = ["-" if row["score"] is None else f"{row['score']:.4f}"] if metric else []  # one column, one form
        # a file still to decide says so (a pending one's failed run is in its reason), not its last run's decision
        decision = row["status"] if row["status"] in ("pending", "waiting") else row["decision"] or row["status"]
        table.add_row(shown(row["file"]), shown(decided), shown(decision), drift,
                      shown(row["champion_version"], "v"), shown(row["challenger_version"], "v"),
                      *score, shown(row["reason"]))
    print_table(table, highlight=False)
    if data["total"] > len(data["files"]):
        console.print(f"the last {len(data['files'])} of {data['total']} files; '-n 0' shows every file", highlight=False)


@app.command("logs")
@friendly
def logs(name: Annotated[str, typer.Argument(help="A pipeline, or a service of the stack (prefect, mlflow, runner, "
                                                   "worker, watcher, viewer, api).")],
         lines: Annotated[int, typer.Option("-n", help="Lines from the end.")] = 50):
    """Print the end of a pipeline's log file, or of a service's."""
    from calmops.core.settings import get_settings
    from calmops.core.store import PipelineNotFound, pipeline_paths, read_spec
    from calmops.deployments.stack import ORDER

    try:
        path = pipeline_paths(read_spec(name)).logs / "pipeline.log"
    except PipelineNotFound as exc:
        if name not in ORDER:
            raise CliError(str(exc), f"give a pipeline ('calmops list') or a service: {', '.join(ORDER)}") from None
        path = get_settings().logs_dir / f"{name}.log"  # a service's log, as `calmops up` or `calmops service` writes it
    if not path.exists():
        raise CliError(f"no log yet for {name!r}", "it appears with the first run" if name not in ORDER
                       else f"it appears when the {name} service first starts ('calmops up')")
    for line in path.read_text().splitlines()[-lines:]:
        sys.stdout.write(line + "\n")




@app.command("demo")
@friendly
def demo(files: Annotated[int, typer.Option(help="Files per pipeline.")] = 8,
         rows: Annotated[int, typer.Option(help="Rows per file.")] = 1000,
         pace: Annotated[float, typer.Option(help="Seconds between two drops of files.")] = 2.0,
         pipelines: Annotated[str, typer.Option(help="Comma-separated demo pipelines.")] = "demo-sea,demo-agrawal,demo-ipip",
         exit_when_done: Annotated[bool, typer.Option("--exit-when-done",
                                                      help="Stop the stack at the end (for CI and scripts).")] = False,
         no_stack: Annotated[bool, typer.Option("--no-stack", help="Run in-process on the embedded stores.")] = False,
         timeout: Annotated[float, typer.Option(help="Seconds to wait for the stack to finish.")] = 1800.0):
    """Start the local stack, feed three demo pipelines with drifting files, print what happened."""
    import json as json_mod

    from calmops.deployments import demo as demo_mod
    from calmops.deployments.console import console

    names = [n.strip() for n in pipelines.split(",") if n.strip()]
    unknown = [n for n in names if n not in demo_mod.PIPELINES]
    if unknown:
        raise CliError(f"unknown demo pipeline(s) {unknown}", f"choose from {', '.join(demo_mod.PIPELINES)}")
    if not no_stack:
        from calmops.deployments.operations_cli import bring_up

        bring_up(console)
    made = demo_mod.prepare_pipelines(console, names, n_files=files, rows=rows, deploy=not no_stack)
    try:
        if no_stack:
            demo_mod.run_in_process(console, made)
        else:
            demo_mod.run_on_stack(console, made, pace=pace, timeout=timeout)
        rows_ = demo_mod.summary(names)
        demo_mod.print_summary(console, rows_)
        (get_home() / "demo-summary.json").write_text(json_mod.dumps(rows_, indent=2, default=str))
    finally:
        if not no_stack and exit_when_done:
            from calmops.deployments.operations_cli import bring_down

            bring_down(console)
    if not no_stack and not exit_when_done:
        from calmops.core.environment import stack_urls

        urls = stack_urls()
        console.print(f"Prefect UI: {urls.get('prefect_ui')} · MLflow UI: {urls.get('mlflow')} · "
                      f"viewer: {urls.get('viewer')} · API: {urls.get('api')}/docs")
        console.print("the stack keeps running: drop more files into the incoming folders, or stop it with "
                      "'calmops down'")


def get_home() -> Path:
    from calmops.core.settings import get_settings

    return get_settings().home


# Commands that live beside the code they drive: each module exposes register(app).
COMMAND_MODULES = ("calmops.deployments.api_cli", "calmops.deployments.operations_cli",
                   "calmops.deployments.pause_cli", "calmops.deployments.service_cli",
                   "calmops.deployments.viewer_cli")


def _mount_optional() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)


_mount_optional()


if __name__ == "__main__":  # how the warm runner runs a handed-over command (calmops.deployments.entry)
    app(prog_name="calmops")  # its usage lines name the command as typed, not the runner's module
