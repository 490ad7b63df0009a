"""``calmops serve``: run the prediction API (calmops.deployments.api) with uvicorn.

Kept free of heavy imports at module level: the CLI imports this module on every invocation.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated

import typer

from calmops.deployments.processes import busy_port_hint, port_problem

LOOPBACK_NAMES = ("localhost",)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_TOKEN_ENV = "CALMOPS_API_TOKEN"
#: Threads serving the routes at once: anyio's default thread pool, where FastAPI runs them.
ROUTE_THREADS = 40


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    from calmops.deployments.console import CliError, friendly  # console: in the body

    @app.command("serve")
    @friendly
    def serve(
        host: Annotated[str, typer.Option(help="Address to bind; loopback unless you mean to expose the API.")]
        = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535, envvar="CALMOPS_API_PORT", help="TCP port.")] = 8000,
        token_env: Annotated[str, typer.Option(
            "--token-env", help="Environment variable holding the bearer token; auth is on when it is set.")]
        = DEFAULT_TOKEN_ENV,
        max_request_bytes: Annotated[int, typer.Option(min=1, help="Largest request body accepted (413 over).")]
        = 10_000_000,
        max_records: Annotated[int, typer.Option(min=1, help="Most records per request (413 over).")] = 100_000,
        log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    ):
        """Serve the prediction API (current champion of every pipeline) over HTTP."""
        reason = port_problem(host, port)
        if reason:
            raise CliError(f"cannot listen on {host}:{port}: {reason}", busy_port_hint("api", port))
        if not ENV_NAME.match(token_env) or (token_env != DEFAULT_TOKEN_ENV and token_env not in os.environ):
            # not a variable of this environment: most likely the token itself, so it is never echoed
            raise typer.BadParameter("give the name of an environment variable that is set and holds the token "
                                     "(letters, digits and _), not the token itself, e.g. export MY_TOKEN=…; "
                                     "--token-env MY_TOKEN", param_hint="--token-env")
        token = os.environ.get(token_env) or None
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        # one pooled connection to the MLflow server per route thread: with MLflow's 10, a busy API opens a new
        # connection for every call past 10 and drops it after ("Connection pool is full, discarding connection")
        os.environ.setdefault("MLFLOW_HTTP_POOL_MAXSIZE", str(ROUTE_THREADS))

        import uvicorn

        from calmops.deployments.api import create_app
        from calmops.deployments.console import console

        try:
            api = create_app(token=token, max_request_bytes=max_request_bytes, max_records=max_records)
        except ValueError as exc:
            raise CliError(f"${token_env}: {exc}", f"set ${token_env} to another token, or unset it to serve "
                                                   "without auth") from exc
        shown = f"[{host}]" if ":" in host else host
        if token:
            auth = f"bearer token from ${token_env}"
        elif token_env in os.environ:
            auth = f"no auth (${token_env} is set but empty)"
        else:
            auth = f"no auth (set ${token_env} to require a token)"
        console.print(f"prediction API on http://{shown}:{port} · docs at /docs · {auth}", highlight=False,
                      soft_wrap=True)
        if not _is_loopback(host) and not token:
            console.print(f"[yellow]warning:[/] listening on {host} without a token: anyone who can reach "
                          f"this address can query the models (set ${token_env})", highlight=False, soft_wrap=True)
        uvicorn.run(api, host=host, port=port, log_level=log_level, server_header=False)
