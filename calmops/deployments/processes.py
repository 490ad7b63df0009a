"""Processes and ports: signal, wait, escalate; whether a port can be bound. Standard library only (the warm
runner's client uses it)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def environ_of(pid: int) -> dict[str, bytes] | None:
    """Process ``pid``'s environment as it started (a service keeps it through every exec); None when it cannot be
    read (another user's process, gone, or one whose environment reads empty: a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (entry.partition(b"=") for entry in raw.split(b"\0") if entry)
    return {name.decode(errors="replace"): value for name, _, value in pairs} or None


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


def port_problem(host: str, port: int) -> str | None:
    """None if ``host:port`` can be bound now, else why not (e.g. "Address already in use")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None
