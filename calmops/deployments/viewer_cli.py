"""``calmops viewer``: start the Streamlit viewer on loopback and run until stopped."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from calmops.deployments.processes import busy_port_hint, port_problem


def register(app: typer.Typer) -> None:
    from calmops.deployments.console import CliError, friendly

    @app.command("viewer")
    @friendly
    def viewer(
        port: Annotated[int, typer.Option(min=1, max=65535, envvar="CALMOPS_VIEWER_PORT", help="Port to listen on.")]
        = 8501,
        address: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    ):
        """Start the viewer (Streamlit) on loopback (port 8501, or CALMOPS_VIEWER_PORT) and run until Ctrl-C."""
        from calmops.dashboards.cli import command, run_until_stopped

        reason = port_problem(address, port)
        if reason:
            raise CliError(f"cannot listen on {address}:{port}: {reason}", busy_port_hint("viewer", port))
        typer.echo(f"CalmOps viewer on http://{address}:{port} (Ctrl-C to stop)")
        raise typer.Exit(run_until_stopped(command(address, port), dict(os.environ)))
