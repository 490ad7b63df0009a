"""The ``calmops`` command line (typer). Errors are one line with a hint and a non-zero exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from calmops.core.environment import prepare


class _LazyGenerate(TyperGroup):
    """Imports the generators (river, matplotlib…) only when ``calmops generate`` is asked for."""

    def get_command(self, ctx, name):
        if name == "generate":
            from calmops.generators.cli import app as generate_app

            command = typer.main.get_command(generate_app)
            command.help = "Generate drifting data (synthetic, real-like, clinic, injection, scenarios)."
            return command
        return super().get_command(ctx, name)


app = typer.Typer(name="calmops", cls=_LazyGenerate, help="Drift monitoring and safe retraining for models fed by files.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
@app.command("generate", help="Generate drifting data (synthetic, real-like, clinic, injection, scenarios).")
def _generate_listing() -> None:  # pragma: no cover - replaced by the real group in _LazyGenerate
    """Listed in the help; the real commands load on use."""


breaker_app = typer.Typer(help="Inspect or reset a pipeline's circuit breaker.", no_args_is_help=True)
app.add_typer(breaker_app, name="breaker")
console = Console()
err = Console(stderr=True)


class CliError(Exception):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


def friendly(fn: Callable) -> Callable:
    """Turn known errors into one line plus a hint, exit code 1 (2 for usage problems)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from calmops.core.spec import SpecError
        from calmops.core.store import PipelineExists, PipelineNotFound

        prepare()
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            _fail(str(exc), exc.hint)
        except SpecError as exc:
            _fail(str(exc), "fix the spec and try again; see docs/spec.md for every key", code=2)
        except PipelineNotFound as exc:
            _fail(str(exc), "see 'calmops list', or create it with 'calmops create SPEC.yaml'")
        except PipelineExists as exc:
            _fail(str(exc), "use 'calmops update NAME SPEC.yaml' to change it")

    return wrapper


def _fail(message: str, hint: str = "", code: int = 1):
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    if hint:
        err.print(f"[dim]hint: {hint}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# -- pipelines ----------------------------------------------------------------------------


@app.command("create")
@friendly
def create(spec_file: Annotated[Path, typer.Argument(help="The pipeline's spec (YAML).")],
           adopt: Annotated[bool, typer.Option("--adopt", help="Serve the champion an MLflow registered model of "
                                                               "the same name already has.")] = False):
    """Create a pipeline from a spec file."""
    from calmops.core import registry
    from calmops.core.spec import load_spec
    from calmops.core.store import save_spec

    spec = load_spec(spec_file)
    registry.configure()
    existing = registry.aliases(spec.name).get("champion")
    if existing is not None and not adopt:
        raise CliError(f"MLflow already has a registered model {spec.name!r} with champion v{existing}: a new "
                       "pipeline of that name would serve it (and judge its first file with it)",
                       "pass --adopt to reuse that model on purpose, or choose another pipeline name")
    paths = save_spec(spec, create=True, base=spec_file.expanduser().resolve().parent)  # relative to the spec file
    console.print(f"created pipeline [bold]{spec.name}[/] ({spec.kind}); drop files into {paths.incoming}")
    from calmops.deployments.operations_cli import sync_pipeline

    sync_pipeline(spec.name, console)


@app.command("update")
@friendly
def update(name: str, spec_file: Path):
    """Replace a pipeline's spec (validated; the change is versioned)."""
    from calmops.core.spec import load_spec
    from calmops.core.store import read_spec, save_spec

    read_spec(name)
    spec = load_spec(spec_file)
    if spec.name != name:
        raise CliError(f"the spec names pipeline {spec.name!r}, not {name!r}", "a pipeline cannot be renamed")
    save_spec(spec, create=False, base=spec_file.expanduser().resolve().parent)  # relative to the spec file
    console.print(f"updated pipeline [bold]{name}[/]")
    from calmops.deployments.operations_cli import sync_pipeline

    sync_pipeline(name, console)


@app.command("list")
@friendly
def list_(as_json: Annotated[bool, typer.Option("--json")] = False):
    """List pipelines with their kind, champion and last decision."""
    from calmops.core.store import list_pipelines

    rows = [_summary(name) for name in list_pipelines()]
    if as_json:
        return _print_json(rows)
    if not rows:
        console.print("no pipelines yet: create one with 'calmops create SPEC.yaml' (see docs/examples/)")
        return
    table = Table("pipeline", "kind", "champion", "breaker", "files done", "last decision")
    for r in rows:
        table.add_row(r["name"], r["kind"], str(r["champion_version"] or "-"), r["breaker"],
                      str(r["files_done"]), r["last_decision"] or "-")
    console.print(table)


@app.command("show")
@friendly
def show(name: str):
    """Print a pipeline's spec."""
    from calmops.core.store import read_spec

    console.print(read_spec(name).to_yaml(), highlight=False, markup=False)


def _summary(name: str) -> dict[str, Any]:
    from calmops.core import registry
    from calmops.core.breaker import read_breaker
    from calmops.core.store import ledger, pending_files, pipeline_paths, read_spec

    spec = read_spec(name)
    paths = pipeline_paths(spec)
    entries = ledger(paths).entries() if paths.ledger_file.exists() else []
    registry.configure()
    try:
        breaker = read_breaker(name)
    except Exception as exc:  # noqa: BLE001 - status must answer even with Prefect down
        breaker = None
        breaker_error = str(exc).splitlines()[0]
    aliases = registry.aliases(name)
    return {
        "name": name,
        "kind": spec.kind,
        "incoming": str(paths.incoming),
        "champion_version": aliases.get("champion"),
        "aliases": aliases,
        "breaker": breaker.state if breaker else f"unknown ({breaker_error})",
        "breaker_detail": breaker.to_public() if breaker else None,
        "files_done": sum(e["status"] == "done" for e in entries),
        "files_pending": len(pending_files(paths)),
        **{f"claims_{k}": v for k, v in (ledger(paths).counts() if entries else {}).items()
           if k in ("in_progress", "orphaned")},
        "held_behind": ledger(paths).held_behind() if entries and spec.order == "arrival" else None,
        "files_waiting": len([p for p in paths.incoming.glob("*") if p.is_file()]) if paths.incoming.exists() else 0,
        "files_quarantined": len(list(paths.quarantine.glob("*.reason.json"))) if paths.quarantine.exists() else 0,
        "last_file": entries[-1]["file"] if entries else None,
        "last_decision": entries[-1]["decision"] if entries else None,
    }


@app.command("status")
@friendly
def status(name: Annotated[str | None, typer.Argument()] = None,
           as_json: Annotated[bool, typer.Option("--json")] = False):
    """A pipeline's champion, breaker, and file counts (all pipelines when no name is given)."""
    from calmops.core.store import list_pipelines

    data = _summary(name) if name else {"pipelines": [_summary(n) for n in list_pipelines()]}
    if as_json:
        return _print_json(data)
    for s in [data] if name else data["pipelines"]:
        console.print(f"[bold]{s['name']}[/] ({s['kind']}): champion v{s['champion_version'] or '-'} · "
                      f"aliases {s['aliases']} · breaker {s['breaker']} · done {s['files_done']} · "
                      f"pending {s['files_pending']} · running {s.get('claims_in_progress', 0)} · "
                      f"orphaned {s.get('claims_orphaned', 0)} · waiting {s['files_waiting']}"
                      + (f" (held behind {s['held_behind']})" if s.get("held_behind") else "") + " · "
                      f"quarantined {s['files_quarantined']} · last {s['last_file']} → {s['last_decision']}")


@app.command("run")
@friendly
def run(name: str, file: Path, as_json: Annotated[bool, typer.Option("--json")] = False):
    """Process one file through the pipeline's flow now, and wait for the decision."""
    from calmops.flows import run_file

    if not file.exists():
        raise CliError(f"{file} does not exist", "give the path of a data file")
    outcome, error = run_file(name, file)
    if as_json:
        _print_json(outcome)
    else:
        _print_outcome(outcome)
    if error:
        _fail(error, "see 'calmops logs NAME' and the flow run in the Prefect UI")


def _print_outcome(o: dict[str, Any]) -> None:
    drift = "yes" if o.get("drift_detected") else "no"
    console.print(f"[bold]{o['pipeline']}[/] · {o['file']} → [bold]{o['decision']}[/] (drift: {drift})")
    console.print(f"  {o['reason']}", highlight=False)
    console.print(f"  champion v{o.get('champion_version')} · challenger v{o.get('challenger_version')} · "
                  f"MLflow run {o.get('mlflow_run_id')} · flow run {o.get('flow_run_id')}")


@breaker_app.command("show")
@friendly
def breaker_show(name: str, as_json: Annotated[bool, typer.Option("--json")] = False):
    """State, consecutive failures, next retry time and transition history."""
    from calmops.core.breaker import read_breaker
    from calmops.core.store import read_spec

    read_spec(name)
    state = read_breaker(name).to_public()
    if as_json:
        return _print_json(state)
    console.print(f"[bold]{name}[/]: {state['state']} · failures {state['consecutive_failures']} · "
                  f"next retry {state['next_retry_at'] or '-'}")
    for h in state["history"][-10:]:
        console.print(f"  {h['time']} {h['from']} → {h['to']}: {h['reason']}", highlight=False)


@breaker_app.command("reset")
@friendly
def breaker_reset(name: str):
    """Close the breaker now (operator override)."""
    from calmops.core.breaker import update_breaker
    from calmops.core.store import read_spec

    read_spec(name)
    update_breaker(name, lambda s: s.reset())
    console.print(f"breaker of [bold]{name}[/] reset to closed")


@app.command("rollback")
@friendly
def rollback(name: str):
    """Serve the previous champion again."""
    from calmops.core import registry
    from calmops.core.store import read_spec

    read_spec(name)
    registry.configure()
    try:
        old, new = registry.rollback(name)
    except registry.NothingToRollBack as exc:
        raise CliError(str(exc), "a rollback needs at least one promotion after the first model") from None
    console.print(f"[bold]{name}[/]: champion v{old} → v{new} (v{old} is now 'previous')")


@app.command("logs")
@friendly
def logs(name: str, lines: Annotated[int, typer.Option("-n", help="Lines from the end.")] = 50):
    """Print the end of a pipeline's log file."""
    from calmops.core.store import pipeline_paths, read_spec

    path = pipeline_paths(read_spec(name)).logs / "pipeline.log"
    if not path.exists():
        raise CliError(f"no log yet for {name!r}", "it appears with the first run")
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
                   "calmops.deployments.service_cli",
                   "calmops.dashboards.cli")


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
