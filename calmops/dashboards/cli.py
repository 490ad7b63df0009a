"""How the viewer is started: the Streamlit command line, and a parent that takes Streamlit down with it.

The ``calmops viewer`` command (calmops.deployments.viewer_cli) and the stack (``python -m calmops.dashboards``)
both use these."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
