"""``calmops service NAME`` and ``calmops db upgrade``: the stack's services one at a time, for process managers.

``calmops up`` starts every service itself. Under PM2, systemd or a container runtime each service is its own
long-running process instead: ``calmops service NAME`` runs exactly the command ``calmops up`` would run for
NAME (same settings, same environment), in the foreground, with its log in ``$CALMOPS_HOME/logs/NAME.log`` and
its pid file in ``$CALMOPS_HOME/run`` so that ``calmops status`` sees it. The process becomes the service
(``exec``), so the manager's signals reach it directly.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Annotated

import typer

from calmops.deployments.processes import environ_of

#: services that need the Prefect API before they start
NEEDS_PREFECT = ("runner", "worker", "watcher", "viewer", "api")


def _prefect_answers(stack, settings) -> bool:
    """The local server if this host runs one, else the one ``PREFECT_API_URL`` names."""
    import httpx

    local = stack.services()["prefect"]
    if stack.running_pid(settings, "prefect"):
        return stack.healthy(local)
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return False
    try:
        return httpx.get(url.rstrip("/") + "/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _mlflow_answers(stack, settings) -> bool:
    """The local MLflow server if this host runs one, else the one ``MLFLOW_TRACKING_URI`` names; True when the
    configuration needs no server (MLflow's local files)."""
    import httpx

    from calmops.core.environment import servers_out_of_reach

    if stack.running_pid(settings, "mlflow"):
        return stack.healthy(stack.services()["mlflow"])
    url = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not url.startswith(("http://", "https://")):
        return not servers_out_of_reach(("mlflow",))
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"  # MLflow's own TLS settings
    verify = False if insecure else os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    try:  # behind a proxy that asks for credentials (401, 403), the server is there all the same
        return httpx.get(url.rstrip("/") + "/health", timeout=2.0, verify=verify).status_code < 500
    except httpx.HTTPError:
        return False


def _no_answer(name: str, server: str, wait: float, stack, settings) -> str:
    """Why service ``name`` gives up on ``server`` (``prefect`` or ``mlflow``): the address it tried and what to
    do about it (the variable that names a server elsewhere is suggested only when it is not set)."""
    what, variable = {"prefect": ("Prefect API", "PREFECT_API_URL"),
                      "mlflow": ("MLflow server", "MLFLOW_TRACKING_URI")}[server]
    said = f"{name} needs the {what}, which did not answer within {wait:.0f} s"
    if pid := stack.running_pid(settings, server):
        url = stack.services()[server].url + ("/api" if server == "prefect" else "")
        return (f"{said} at {url}, this host's 'calmops service {server}' (pid {pid}); see its log, "
                f"{stack.log_file(settings, server)}")
    if url := os.environ.get(variable, ""):
        return (f"{said} at {url} (named by {variable}); check that the server runs at that address and that this "
                f"host reaches it, or unset {variable} and start 'calmops service {server}' here")
    return f"{said}: none runs on this host; start 'calmops service {server}' or set {variable}"


def _runs(pid: int, variable: str, value: str) -> bool:
    """Does process ``pid`` run the service that ``variable=value`` in its environment names (a service keeps
    it through every exec)? False when it cannot be read: a pid file left from before a reboot may name another
    program now, which must not stop the service from starting."""
    environ = environ_of(pid)
    return environ is not None and environ.get(variable) == value.encode()


def run_service(name: str, wait: float) -> None:
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    known = stack.services()
    if name not in known:
        raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(stack.ORDER)}", param_hint="NAME")
    from calmops.core import statedb

    settings = get_settings()
    statedb.mark_home(settings)  # a command run later without this configuration is refused, and so is this
    if (pid := stack.running_pid(settings, name)) and _runs(pid, stack.SERVICE_MARKER,
                                                              stack.service_marker(name, settings)):
        raise RuntimeError(f"{name} already runs on this host (pid {pid}, named in {settings.pid_file(name)}); "
                           f"stop it first, or run another {name} with a run folder of its own (CALMOPS_RUN_DIR), "
                           "as a second host would")
    if name in NEEDS_PREFECT:  # started together (PM2, systemd), the servers may still be starting
        deadline = time.monotonic() + wait
        for server, answers in (("prefect", _prefect_answers), ("mlflow", _mlflow_answers)):
            while not answers(stack, settings):
                if time.monotonic() > deadline:
                    raise RuntimeError(_no_answer(name, server, wait, stack, settings))
                time.sleep(1.0)
    for folder in (settings.logs_dir, settings.run_dir, settings.home):
        folder.mkdir(parents=True, exist_ok=True)
    cmd, env = stack.command(known[name], settings)
    if name == "worker":  # the pool and the per-pipeline deployments exist before runs are taken
        subprocess.run([stack.bin_path("calmops"), "deploy"], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.supervised_file(settings, name).write_text("")  # its supervisor restarts it (see the file's reader)
    stack.pid_file(settings, name).write_text(str(os.getpid()))  # exec keeps the pid: it is the service's
    stack.write_urls(settings)
    log = os.open(stack.log_file(settings, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(settings.home)
    os.execvpe(cmd[0], cmd, env)


DATABASES = ("prefect", "mlflow", "calmops")  # what ``calmops db upgrade`` brings to the installed schemas


def db_upgrade(which: tuple[str, ...] = DATABASES) -> list[str]:
    """Bring Prefect's database, MLflow's backend store and CalmOps' state database (each of ``which``) to the
    installed versions' schemas; what was done."""
    from calmops.core.settings import get_settings
    from calmops.deployments import stack

    settings = get_settings()
    env = dict(os.environ, PREFECT_HOME=str(settings.home / "prefect"))
    if settings.prefect_database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = settings.prefect_database_url
    done = []
    for what, cmd in (("prefect", [stack.bin_path("prefect"), "server", "database", "upgrade", "-y"]),
                      ("mlflow", [stack.bin_path("mlflow"), "db", "upgrade", settings.mlflow_backend_store_uri])):
        if what not in which:
            continue
        if what == "mlflow" and settings.mlflow_backend_store_uri.startswith("sqlite:///"):
            (settings.home / "mlflow").mkdir(parents=True, exist_ok=True)
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{what} database upgrade failed: {tail[0]}")
        done.append(what)
    if "calmops" in which:
        from calmops.core import statedb

        statedb.mark_home(settings)
        done.append(f"calmops ({state_upgrade(settings.state_database_url)} pipeline(s))"
                    if settings.state_database_url else "calmops (SQLite files beside each pipeline, made as used)")
    return done


def state_upgrade(url: str) -> int:
    """Create CalmOps' own tables (each pipeline's ledger and rows awaiting labels) in the state database; the
    number of pipelines. New pipelines get theirs on first use."""
    from calmops.core.awaiting import Awaiting
    from calmops.core.store import Ledger, ledger_table, list_pipelines, pipeline_paths, read_spec

    names = list_pipelines()
    for name in names:
        paths = pipeline_paths(read_spec(name))
        Ledger(ledger_table(paths))
        Awaiting(paths.root, paths.state, url=url).create()
    return len(names)


def register(app: typer.Typer) -> None:
    from calmops.deployments.console import CliError, friendly

    @app.command("service")
    @friendly
    def service(
        name: Annotated[str, typer.Argument(help="prefect, mlflow, runner, worker, watcher, viewer or api.")],
        wait: Annotated[float, typer.Option(help="Seconds to wait for the Prefect API before giving up.")] = 120.0,
    ):
        """Run one service of the stack in the foreground (for PM2, systemd and containers)."""
        try:
            run_service(name, wait)
        except RuntimeError as exc:
            raise CliError(str(exc), "see docs/production.md for the order and the settings") from exc

    db = typer.Typer(help="Databases of the stack (Prefect's, MLflow's and CalmOps' own state).", no_args_is_help=True)

    @db.command("upgrade")
    @friendly
    def upgrade(
        which: Annotated[list[str] | None, typer.Argument(
            help=f"Which databases: {', '.join(DATABASES)} (all three when none is named).",
            metavar="WHICH", show_default=False)] = None,
    ):
        """Create or migrate Prefect's database, MLflow's backend store and CalmOps' state database (run before
        starting new versions)."""
        unknown = sorted(set(which or ()) - set(DATABASES))
        if unknown:
            raise typer.BadParameter(f"{', '.join(map(repr, unknown))} is not one of {', '.join(DATABASES)}",
                                     param_hint="WHICH")
        try:
            done = db_upgrade(tuple(which or DATABASES))
        except RuntimeError as exc:
            raise CliError(str(exc), "check the database URLs (calmops.toml or CALMOPS_* variables) and that "
                                     "the databases exist") from exc
        for what in done:
            typer.echo(f"{what}: schema at the installed version (tables created or migrated as needed)")

    app.add_typer(db, name="db")
