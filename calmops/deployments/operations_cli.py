"""Operations commands: ``up``/``down`` (the whole local stack), ``watch``, ``deploy``, ``delete``, ``relaunch``.

Kept free of heavy imports at module level: the CLI imports this module on every invocation.
The functions below the commands (:func:`bring_up`, :func:`bring_down`, :func:`sync_pipeline`) are what
``calmops up``/``down``/``create``/``update`` call, whichever module registers those commands.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from typing import Annotated, Any

import typer

from calmops.deployments.api_cli import DEFAULT_TOKEN_ENV
from calmops.deployments.console import JsonOption
from calmops.deployments.processes import environ_of

STACK_SERVICES = ("prefect", "mlflow", "runner", "worker", "watcher", "viewer", "api")
RUN_IN_FLIGHT_HINT = ("see the run in the Prefect UI or with 'calmops status NAME'; once it ends, run 'calmops deploy' "
                      "again")


def _api_url() -> str | None:
    return os.environ.get("PREFECT_API_URL")


def prefect_reachable(timeout: float = 2.0) -> bool:
    import httpx

    url = _api_url()
    if not url:
        return False
    try:
        return httpx.get(url.rstrip("/") + "/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _point_at_stack() -> dict[str, str]:
    """After starting services: make this process talk to them (stack.json is the source)."""
    from calmops.core.environment import stack_urls

    urls = stack_urls()
    if urls.get("prefect_api"):
        os.environ["PREFECT_API_URL"] = urls["prefect_api"]
    if urls.get("mlflow"):
        os.environ["MLFLOW_TRACKING_URI"] = urls["mlflow"]
        os.environ.setdefault("CALMOPS_MLFLOW_UI", urls["mlflow"])
    return urls


def bring_up(console, services: tuple[str, ...] = STACK_SERVICES) -> dict[str, Any]:
    """Start the stack in order; deploy every pipeline before the worker starts taking runs. A service after the
    two servers that does not start (e.g. the viewer's port is taken) does not keep the others down: they start,
    and the command then fails naming it."""
    from rich.markup import escape

    from calmops.core import statedb
    from calmops.deployments import stack
    from calmops.deployments.console import CliError, one_line, working

    statedb.mark_home(_settings())  # a command run later without this state database is refused (no SQLite aside)
    started, failed = {}, {}
    api_pid = stack.running_pid(_settings(), "api")  # an API that runs already keeps the token it started with
    for name in stack.ORDER:
        if name not in services:
            continue
        if name == "worker":
            _point_at_stack()
            with working(console, "deploying pipelines (deployments and file triggers)…"):
                from calmops.deployments.deploy import deploy_all

                result = deploy_all()
            for d in result["deployed"]:
                console.print(f"{d['pipeline']}: {summary_line(d)}", highlight=False)
            for pipeline, error in result["errors"].items():
                console.print(f"[yellow]warning:[/] pipeline {pipeline} not deployed: {escape(error)}", highlight=False)
            for pipeline in result["removed"]:
                console.print(f"removed deployments of deleted pipeline {pipeline}", highlight=False)
            for pipeline, renamed in migrate_model_names().items():
                if renamed.startswith("error: "):
                    console.print(f"[yellow]warning:[/] registered model {pipeline} not renamed: "
                                  f"{renamed.removeprefix('error: ')}", highlight=False)
                else:
                    console.print(f"renamed registered model {pipeline} → {renamed} (CalmOps' prefix)",
                                  highlight=False)
        if name == "watcher" and (running := stack.outside(name, _settings())):
            started[name] = "outside"  # a second watcher announces every file twice
            console.print(f"{name}: not started: {escape(running)}; two watchers would announce every file twice",
                          highlight=False)
            continue
        if name == "runner" and (running := stack.outside(name, _settings())):
            started[name] = "outside"  # a second one cannot listen on the same socket
            console.print(f"{name}: not started: {escape(running)}; flow runs use it as it is", highlight=False)
            continue
        if name == "worker" and (running := stack.outside(name, _settings())):
            # a second worker on the pool only adds slots: it announces nothing, so nothing is run twice
            console.print(f"note: {escape(running)}; the stack's own worker polls the pool beside it",
                          highlight=False)
        try:
            with working(console, f"starting {name}…"):
                service = stack.start(name)
        except Exception as exc:
            if name in ("prefect", "mlflow"):  # every other service needs them
                raise
            if name == "watcher" and (running := stack.outside(name, _settings())):
                started[name] = "outside"  # started by hand at the same moment: it holds the watch lock
                console.print(f"{name}: not started: {escape(running)}; two watchers would announce every file "
                              "twice", highlight=False)
                continue
            failed[name] = one_line(exc)
            console.print(f"[red]{name} did not start:[/] {escape(failed[name])}", highlight=False)
            continue
        started[name] = service.url or "running"
        console.print(f"{name}: {service.url or 'running'} (log {stack.log_file(_settings(), name)})",
                      highlight=False)
        if name == "api" and api_pid and _token_changed(api_pid):
            now = "another now" if os.environ.get(DEFAULT_TOKEN_ENV) else "not set now (auth stays as it was)"
            console.print("[yellow]warning:[/] the API was running already and keeps the token it was started "
                          f"with; ${DEFAULT_TOKEN_ENV} is {now}: restart the stack ('calmops down', then "
                          "'calmops up') to serve with it", highlight=False)
    _point_at_stack()
    if failed:
        raise CliError(f"{', '.join(failed)} did not start ({'; '.join(f'{k}: {v}' for k, v in failed.items())})",
                       f"the other services run; see 'calmops logs {next(iter(failed))}', fix it and run "
                       "'calmops up' again (it starts only what is not running)")
    return started


def _token_changed(pid: int) -> bool:
    """Does the running API (process ``pid``) hold another ``CALMOPS_API_TOKEN`` than this shell? False when its
    environment cannot be read."""
    import hmac

    environ = environ_of(pid)
    if environ is None:
        return False
    running = environ.get(DEFAULT_TOKEN_ENV, b"")
    return not hmac.compare_digest(running, os.environ.get(DEFAULT_TOKEN_ENV, "").encode())


def migrate_model_names() -> dict[str, str]:
    """Every pipeline's registered model under its prefixed name: models registered before the prefix are
    renamed. Returns, for each pipeline whose model was renamed, the new name, or ``"error: …"`` when MLflow
    refused (the stack goes on starting; the pipeline's next run tries again)."""
    from mlflow.exceptions import MlflowException

    from calmops.core import registry
    from calmops.core.store import list_pipelines

    registry.configure()
    done = {}
    for pipeline in list_pipelines():
        try:
            if registry.migrate_model_name(pipeline):
                done[pipeline] = registry.model_name(pipeline)
        except MlflowException as exc:
            done[pipeline] = f"error: {exc.message[:200]}"
    return done


def bring_down(console) -> None:
    """Stop every service of this host's stack, in reverse order; one that still runs afterwards is named with its
    pid (its pid file is kept, so 'calmops status' still shows it) and the command then fails."""
    from rich.markup import escape

    from calmops.deployments import stack
    from calmops.deployments.console import CliError
    from calmops.deployments.processes import supervisor

    left: dict[str, stack.StillRunning] = {}
    managed: dict[str, tuple[str, str]] = {}
    settings = stack.get_settings()
    in_flight: dict = {}
    for name in reversed(stack.ORDER):
        pid = stack.running_pid(settings, name)
        # started by `calmops service` under a process manager: stopped, it would be started again at once
        if pid and stack.supervised_file(settings, name).exists() and (manager := supervisor(pid)):
            managed[name] = manager
            console.print(f"[yellow]{name}: left running[/] ({manager[0]} runs it and would start it again); stop "
                          f"it with '{manager[1]}'", highlight=False)
            continue
        if name == "worker":  # its flow-run processes name their runs: read before they go
            in_flight = stack.flow_runs_in_flight(name, settings)
        if pid:  # stopping takes up to seconds: its processes finish first
            console.print(f"stopping {name} …", highlight=False)
        try:
            stopped = stack.stop(name)
        except stack.StillRunning as exc:
            left[name] = exc
            console.print(f"[red]{name}: still running[/] ({escape(str(exc))})", highlight=False)
            continue
        console.print(f"{name}: {'stopped' if stopped else 'not running'}")
        if name == "runner" and (line := stack.stopped_runs_line(in_flight)):  # after the worker; Prefect still up
            console.print(line, highlight=False)
    if left:
        pids = " ".join(str(pid) for exc in left.values() for pid in exc.pids)
        raise CliError(f"{', '.join(left)} still running (pid {pids})",
                       f"see why with 'ps -o pid,user,stat,wchan,args -p {pids.replace(' ', ',')}': another "
                       f"user's process is stopped as that user (e.g. 'sudo kill {pids}'), one in state D waits in "
                       "the kernel (e.g. on an unreachable network file system) until that answers; then run "
                       "'calmops down' again")
    if managed:  # the stack is not down: said, with one command per manager that stops what it runs
        them = "them" if len(managed) > 1 else "it"
        raise CliError(f"{', '.join(managed)} left running: a process manager runs {them} and would start {them} "
                       "again", f"stop {them} with the process manager: " + "; ".join(_together(
                           how for _, how in managed.values())))


def _together(commands) -> list[str]:
    """Commands that differ only in their last word (``pm2 stop calmops-api``, ``pm2 stop calmops-viewer``) as one
    (``pm2 stop calmops-api calmops-viewer``), in the order first met."""
    joined: dict[str, list[str]] = {}
    for command in commands:
        head, _, last = command.rpartition(" ")
        joined.setdefault(head, []).append(last)
    return [f"{head} {' '.join(lasts)}" for head, lasts in joined.items()]


def summary_line(d: dict[str, Any]) -> str:
    """What a pipeline's deployment (:class:`calmops.deployments.deploy.DeploymentSummary`, as a dict) is, in one
    line: its own deployment and trigger, or prefect.yaml's deployment for its kind that serves it."""
    if d.get("served_by"):
        line = (f"served by prefect.yaml's deployment {d['served_by']}, which runs every file of its kind; no "
                "deployment of its own")
        if d.get("removed"):
            line += f" (removed {', '.join(d['removed'])}: both would run every file)"
    else:
        line = f"deployment {d['deployment']} · trigger {', '.join(d['automations'])}"
    return line + (f" · scheduled scan {d['scan_deployment']}" if d.get("scan_deployment") else "")


def sync_pipeline(name: str, console) -> bool:
    """After ``create``/``update``: bring the pipeline's deployment and trigger in step, if the stack runs."""
    if not prefect_reachable():
        console.print("[dim]Prefect is not running: the deployment is made by 'calmops up' or 'calmops deploy'[/]")
        return False
    from rich.markup import escape

    from calmops.deployments.deploy import RunInFlight, deploy_pipeline

    try:
        deployed = deploy_pipeline(name)
    except RunInFlight as exc:  # the spec is saved: what is left is the deployment, once the run has ended
        console.print(f"[yellow]warning:[/] the spec is saved, but the deployments of {name} are as they were: "
                      f"{escape(str(exc))}; hint: {RUN_IN_FLIGHT_HINT}", highlight=False)
        return False
    console.print(summary_line(deployed.to_dict()), highlight=False)
    return True


def _settings():
    from calmops.core.settings import get_settings

    return get_settings()


def delete_pipeline(name: str, console, wait: float = 120.0) -> dict[str, Any]:
    """Stop triggering the pipeline, then keep its files: move its folder under ``$CALMOPS_HOME/deleted``."""
    from calmops.core import statedb
    from calmops.core.breaker import delete_breaker
    from calmops.core.names import retired_stamp
    from calmops.core.store import pipeline_paths, read_spec
    from calmops.deployments.deploy import delete_pipeline_deployments
    from calmops.deployments.watcher import waiting_files

    spec = read_spec(name)
    paths = pipeline_paths(spec)
    removed = delete_pipeline_deployments(name, wait=wait)  # a run in flight finishes before its folder moves
    if busy := removed["still_running"]:
        console.print(f"[yellow]warning:[/] {len(busy)} run(s) still running after {wait:.0f} s "
                      f"({', '.join(busy)}); they will fail when the folder moves")
    waiting = waiting_files(name)  # after the runs in flight ended, before the ledger is set aside
    delete_breaker(name)
    stamp = retired_stamp()
    _retire_experiment(name, stamp)
    for kind in statedb.SQLITE_TABLES:  # on PostgreSQL: set aside, as the folder is
        statedb.Table.of(kind, paths.root).retire(stamp)
    target = _settings().home / "deleted" / f"{name}-{stamp}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(paths.root), target)
    removed["moved_to"] = str(target)
    removed["external_incoming"] = str(paths.incoming) if not paths.incoming.is_relative_to(paths.root) else None
    root = paths.root.resolve()
    now_in: dict[str, int] = {}  # folder where the files nobody decided are now -> how many
    for path in waiting:
        folder = target / path.parent.relative_to(root) if path.is_relative_to(root) else path.parent
        now_in[str(folder)] = now_in.get(str(folder), 0) + 1
    removed["files_not_processed"] = len(waiting)
    removed["files_not_processed_in"] = now_in
    return removed


def _retire_experiment(name: str, stamp: str) -> None:
    """Set the pipeline's MLflow experiment aside (:func:`calmops.core.registry.retire_experiment`): the viewer
    stops listing it and a pipeline created again under the name starts with no runs, as with no ledger."""
    from mlflow.exceptions import MlflowException

    from calmops.core import registry

    try:
        registry.retire_experiment(name, stamp)
    except MlflowException:  # the pipeline is gone either way; the viewer may list it a while longer
        pass


def not_served(names: list[str]) -> dict[str, list[str]]:
    """The pipelines among ``names`` that both deployment schemes would run (every file announced would start two
    runs, so none is: :mod:`calmops.core.schemes`), each with those deployments. None of them when Prefect's
    deployments cannot be read (the watcher then announces as before)."""
    from calmops.core.store import read_spec
    from calmops.deployments.watcher import deployment_schemes

    schemes = deployment_schemes()
    if schemes is None:
        return {}
    return {name: both for name in names if (both := schemes.conflict(name, read_spec(name).kind))}


def relaunch_files(names: list[str], *, local: bool, console,
                   unserved: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Announce (or, with ``local``, run here one by one) every file waiting in the pipelines' incoming folders.
    A pipeline in ``unserved`` (:func:`not_served`) has nothing announced, nor has a paused one: a line says why
    and what to run."""
    from rich.markup import escape

    from calmops.core.pause import paused
    from calmops.core.schemes import scheme_advice, two_runs
    from calmops.deployments.watcher import scan_pipeline, waiting_files

    out: dict[str, list[str]] = {}
    for name in names:
        if (pause := paused(name)) is not None:  # its files wait for 'calmops resume', here too
            console.print(f"[yellow]{name}: no file {'processed' if local else 'announced'}:[/] "
                          f"{escape(pause.said(name))}", highlight=False, soft_wrap=True)
            out[name] = []
            continue
        if not local and (both := (unserved or {}).get(name)):
            console.print(f"[yellow]{name}: no file announced:[/] {two_runs(both)}; {scheme_advice(name, both)}; "
                          f"then 'calmops relaunch {name}'", highlight=False, soft_wrap=True)
            out[name] = []
            continue
        if local:
            from calmops.core.names import shown_decision
            from calmops.flows import run_file

            done = []
            for path in waiting_files(name):
                if done and not path.exists():  # decided (and moved) in the turn of a file run before it
                    console.print(f"{name} · {path.name} → decided in the same turn (see 'calmops history {name}')",
                                  highlight=False)
                    done.append(str(path))
                    continue
                outcome, error = run_file(name, path)
                console.print(f"{name} · {path.name} → {shown_decision(outcome.get('decision'))}"
                              + (f" ({error})" if error else ""), highlight=False)
                done.append(str(path))
            out[name] = done
        else:
            watcher_log = logging.getLogger("calmops.watcher")
            level = watcher_log.level
            if not watcher_log.isEnabledFor(logging.DEBUG):  # under --debug every line stays
                watcher_log.setLevel(logging.WARNING)  # its "announced …" line: said once, below
            try:
                announced = scan_pipeline(name, breaker_ready=lambda _: True, min_age=0.0)
            finally:
                watcher_log.setLevel(level)
            out[name] = [str(p) for p in announced]
            for p in announced:
                console.print(f"{name} · {p.name}: announced", highlight=False)
    if not local:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=30)
    return out


def register(app: typer.Typer) -> None:
    from calmops.deployments.console import CliError, _print_json, friendly  # console: in each body

    def need_prefect(what: str) -> None:
        if not prefect_reachable():
            raise CliError(f"the Prefect API is not reachable ({_api_url() or 'PREFECT_API_URL is not set'}); "
                           f"cannot {what}", "start the stack with 'calmops up'")

    @app.command("watch")
    @friendly
    def watch(
        settle: Annotated[float, typer.Option(envvar="CALMOPS_WATCH_SETTLE",
                                              help="Seconds a file must stay unchanged before it is taken.")] = 1.0,
        scan_interval: Annotated[float, typer.Option(envvar="CALMOPS_WATCH_SCAN_INTERVAL",
                                                     help="Seconds between scans for waiting files.")] = 30.0,
        reemit_after: Annotated[float, typer.Option(envvar="CALMOPS_WATCH_REEMIT_AFTER",
                                                    help="Seconds before a waiting file is announced again.")]
        = 60.0,
        stall_after: Annotated[float, typer.Option(envvar="CALMOPS_WATCH_STALL_AFTER",
                                                   help="Seconds a run may wait to start while its pipeline does "
                                                        "nothing before it is cancelled and its files announced "
                                                        "again (0: off).")] = 300.0,
    ):
        """Watch every pipeline's incoming folder in the foreground and announce complete files to Prefect."""
        import logging

        from calmops.deployments import stack
        from calmops.deployments.console import console

        need_prefect("announce files")
        if stack.running_pid(_settings(), "watcher"):
            raise CliError("the stack's watcher is running already (started by 'calmops up')",
                           "two watchers announce every file twice; stop it with 'calmops down' first")
        if stack.watcher_beats(_settings()):  # another 'calmops watch' on this run folder
            raise CliError(f"a watcher is running already (its heartbeat {stack.heartbeat_file(_settings())} is "
                           "fresh: another 'calmops watch')", "two watchers announce every file twice; use that one")
        from calmops.deployments.watcher import Watcher, WatcherRunning, configure_logging

        for noisy in ("httpx", "httpcore", "watchdog"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        configure_logging()
        console.print(f"watching incoming folders (Prefect at {_api_url()}); Ctrl-C to stop", highlight=False)
        settings = _settings()
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            Watcher(settle=settle, scan_interval=scan_interval, reemit_after=reemit_after,
                    stall_after=stall_after or None,
                    heartbeat_file=stack.heartbeat_file(settings)).run_forever()  # `calmops status` sees its beat
        except WatcherRunning as exc:  # one started at the same moment ('calmops up', another 'calmops watch')
            raise CliError(str(exc), "use that one, or stop it first ('calmops down', or Ctrl-C in its terminal)")

    @app.command("deploy")
    @friendly(servers=("prefect",))
    def deploy(
        name: Annotated[str | None, typer.Argument(help="One pipeline (all when omitted).")] = None,
        prune: Annotated[bool, typer.Option(help="Remove deployments of pipelines that no longer exist.")] = True,
        as_json: Annotated[bool, JsonOption] = False,
    ):
        """Create or update the Prefect deployments and file-arrival triggers of the pipelines."""
        from rich.markup import escape

        from calmops.deployments.console import console
        from calmops.deployments.deploy import RunInFlight, deploy_all, deploy_pipeline, prune_automations

        need_prefect("deploy")
        if name:
            from calmops.core.store import read_spec

            read_spec(name)
            try:
                result = {"deployed": [deploy_pipeline(name).to_dict()], "errors": {}, "removed": [],
                          "in_flight": []}
            except RunInFlight as exc:
                raise CliError(str(exc), RUN_IN_FLIGHT_HINT) from None
            prune_automations()
        else:
            result = deploy_all(prune=prune)
        if as_json:
            _print_json(result)
            if result["errors"]:  # the document names them; the exit code says it too, as without --json
                raise typer.Exit(1)
            return
        for d in result["deployed"]:
            console.print(f"{d['pipeline']}: {summary_line(d)}", highlight=False)
        for orphan in result["removed"]:
            console.print(f"{orphan}: deployments removed (pipeline no longer exists)", highlight=False)
        if not result["deployed"] and not result["errors"]:
            console.print("no pipelines yet: create one with 'calmops create SPEC.yaml'")
        if result["errors"]:
            failed = list(result["errors"])
            in_flight = set(failed) <= set(result.get("in_flight", []))
            if len(failed) == 1:  # its sentence says what to do
                raise CliError(f"pipeline {failed[0]} was not deployed: {result['errors'][failed[0]]}",
                               RUN_IN_FLIGHT_HINT if in_flight else "")
            for pipeline, error in result["errors"].items():
                console.print(f"[red]{pipeline}: not deployed:[/] {escape(error)}", highlight=False)
            raise CliError(f"{len(failed)} pipelines were not deployed: {', '.join(failed)}",
                           RUN_IN_FLIGHT_HINT if in_flight else "each one's line above says why and what to do")

    @app.command("delete")
    @friendly(servers=("prefect", "mlflow"))
    def delete(
        name: str,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
        as_json: Annotated[bool, JsonOption] = False,
    ):
        """Delete a pipeline: its deployment, trigger and breaker go; its files move under deleted/."""
        from calmops.core.store import read_spec
        from calmops.deployments.console import console

        read_spec(name)
        if not yes and not sys.stdin.isatty():  # a script or a pipe: nobody to answer the question
            raise CliError(f"nothing deleted: no terminal to confirm deleting {name!r}",
                           "pass --yes to delete without asking")
        need_prefect("remove the deployment and trigger")
        if not yes and not typer.confirm(
                f"Delete pipeline {name!r} (its deployment, trigger and breaker; files are kept under "
                f"{_settings().home / 'deleted'})?", default=False):
            raise CliError("nothing deleted", "pass --yes to delete without asking")
        result = delete_pipeline(name, console)
        if as_json:
            return _print_json(result)
        console.print(f"deleted pipeline [bold]{name}[/]: deployments {result['deployments'] or 'none'}, "
                      f"automations {result['automations'] or 'none'}; files kept in {result['moved_to']}",
                      highlight=False)
        runs = result["waiting_runs_deleted"]
        for folder, count in result["files_not_processed_in"].items():
            moved = folder.startswith(result["moved_to"] + os.sep)
            console.print(f"[yellow]{count} file(s) were waiting{'' if moved else ' in ' + folder} and were not "
                          f"processed[/]{f' ({runs} queued run(s) removed)' if runs else ''}; "
                          f"{'they are now in ' + folder if moved else 'they stay there'}: to process them, move "
                          "them into the incoming folder of a pipeline (this one, created again)", highlight=False)
            runs = 0
        if result["external_incoming"]:
            console.print(f"its incoming folder {result['external_incoming']} was left in place (not watched any more)",
                          highlight=False)

    @app.command("relaunch")
    @friendly(servers=("prefect",))
    def relaunch(
        name: Annotated[str | None, typer.Argument(help="One pipeline (all when omitted).")] = None,
        local: Annotated[bool, typer.Option("--local", help="Run the files here, one by one, without Prefect's "
                                                            "triggers.")] = False,
        as_json: Annotated[bool, JsonOption] = False,
    ):
        """Process again the files waiting in incoming (new, pending, or left by a crashed run)."""
        from calmops.core.store import list_pipelines, read_spec
        from calmops.deployments.console import console

        names = [name] if name else list_pipelines()
        for n in names:
            read_spec(n)
        unserved = {}
        if not local:
            need_prefect("announce the files (or use --local)")
            unserved = not_served(names)
        result = relaunch_files(names, local=local, console=console, unserved=unserved)
        if as_json:
            _print_json(result)
        else:
            total = sum(map(len, result.values()))
            console.print(f"{total} file(s) {'processed' if local else 'announced'}"
                          + ("" if local or not total else "; follow them with 'calmops status' or the Prefect UI"))
        if unserved:
            raise CliError(f"{' and '.join(unserved)} not served (two deployments would run each file): none of "
                           f"{'its' if len(unserved) == 1 else 'their'} files was announced",
                           "keep one deployment with the command named above, then run 'calmops relaunch' again")

    @app.command("up")
    @friendly
    def up(
        no_watcher: Annotated[bool, typer.Option("--no-watcher", help="Do not start the file watcher.")] = False,
        no_worker: Annotated[bool, typer.Option("--no-worker", help="Do not start the flow-run worker.")] = False,
    ):
        """Start the local stack: Prefect server, MLflow server, deployments, warm runner, worker, watcher, viewer, API."""
        from calmops.deployments.console import console

        services = tuple(s for s in STACK_SERVICES if not (s == "watcher" and no_watcher)
                         and not (s == "worker" and no_worker))
        bring_up(console, services)
        console.print("drop files into a pipeline's incoming folder; stop everything with 'calmops down'")

    @app.command("down")
    @friendly
    def down():
        """Stop the local stack (every service `calmops up` started, in reverse order)."""
        from calmops.deployments.console import console

        bring_down(console)
