"""Stopping processes: signal, wait, escalate. Standard library only (the warm runner's client uses it)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def escalate(pid: int, signals: Iterable[int], grace: float, *, group: bool = False) -> None:
    """Send each signal in turn to ``pid`` (or its process group) until it is gone, waiting up to ``grace``
    seconds after each; a child of ours is reaped while we wait."""
    kill = os.killpg if group else os.kill
    for signum in signals:
        try:
            kill(pid, signum)
        except OSError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not alive(pid):
                return
            time.sleep(0.1)
