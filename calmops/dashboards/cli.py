"""``calmops viewer``: start the Streamlit viewer on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

APP = Path(__file__).with_name("app.py")


def command(address: str = "127.0.0.1", port: int = 8501) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", address,
            "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.headless", "true",
            "--client.toolbarMode", "minimal"]


def register(app: typer.Typer) -> None:
    @app.command("viewer")
    def viewer(
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
        address: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    ):
        """Start the viewer (Streamlit) at http://127.0.0.1:8501 and run until Ctrl-C."""
        from calmops.core.environment import prepare

        prepare()  # the stack's Prefect and MLflow addresses, passed on to Streamlit's process
        typer.echo(f"CalmOps viewer on http://{address}:{port} (Ctrl-C to stop)")
        try:
            code = subprocess.call(command(address, port), env=dict(os.environ))
        except KeyboardInterrupt:
            code = 0
        raise typer.Exit(code)
