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


def run_until_stopped(cmd: list[str], env: dict[str, str], grace: float = 10.0) -> int:
    """Run Streamlit as a child; SIGTERM, SIGINT or SIGHUP to this process stop it too (no orphan left)."""
    import signal

    proc = subprocess.Popen(cmd, env=env)
    stopping = []

    def stop(signum, _frame):
        stopping.append(signum)
        if proc.poll() is None:
            proc.terminate()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while True:
            try:
                code = proc.wait(timeout=grace if stopping else None)
                break
            except subprocess.TimeoutExpired:
                proc.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return 0 if stopping else code


def register(app: typer.Typer) -> None:
    from calmops.deployments.cli import CliError, friendly

    @app.command("viewer")
    @friendly
    def viewer(
        port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8501,
        address: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    ):
        """Start the viewer (Streamlit) at http://127.0.0.1:8501 and run until Ctrl-C."""
        from calmops.deployments.api_cli import _port_free

        reason = _port_free(address, port)
        if reason:
            raise CliError(f"cannot listen on {address}:{port}: {reason}", "choose another port with --port")
        typer.echo(f"CalmOps viewer on http://{address}:{port} (Ctrl-C to stop)")
        raise typer.Exit(run_until_stopped(command(address, port), dict(os.environ)))
