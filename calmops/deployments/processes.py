"""Processes and ports: signal, wait, escalate; whether a port can be bound. Standard library only, with
:mod:`calmops.core.pids` (the warm runner's client uses it)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from calmops.core.pids import running, start_time


def environ_of(pid: int) -> dict[str, bytes] | None:
    """Process ``pid``'s environment as it started (a service keeps it through every exec); None when it cannot be
    read (another user's process, gone, or one whose environment reads empty: a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (entry.partition(b"=") for entry in raw.split(b"\0") if entry)
    return {name.decode(errors="replace"): value for name, _, value in pairs} or None


def supervisor(pid: int) -> tuple[str, str] | None:
    """The process manager that restarts process ``pid`` when it ends, and the command that stops it there:
    ``("PM2", "pm2 stop calmops-worker")``, ``("systemd", "systemctl stop calmops@worker.service")``; None for a
    process no manager restarts (or one whose environment cannot be read). Told by what each manager puts in its
    processes' environment: PM2 its app's ``pm_id`` and ``name``, systemd the pid it started as
    ``SYSTEMD_EXEC_PID`` (systemd 248 and later; a shell of a terminal that systemd started has the terminal's)."""
    environ = environ_of(pid)
    if environ is None:
        return None
    if "pm_id" in environ and "name" in environ:
        home = environ.get("PM2_HOME", b"").decode(errors="replace")
        default = os.environ.get("PM2_HOME") or str(Path.home() / ".pm2")
        prefix = f"PM2_HOME={home} " if home and home != default else ""
        return "PM2", f"{prefix}pm2 stop {environ['name'].decode(errors='replace')}"
    if environ.get("SYSTEMD_EXEC_PID") == str(pid).encode() and (unit := _systemd_unit(pid)):
        user = " --user" if "/user@" in unit[1] else ""
        return "systemd", f"systemctl{user} stop {unit[0]}"
    return None


def _systemd_unit(pid: int) -> tuple[str, str] | None:
    """The systemd service unit process ``pid`` runs in (from its control group), and the group's path."""
    try:
        groups = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in groups:
        path = line.split(":", 2)[-1]
        units = [part for part in path.split("/") if part.endswith(".service")]
        if units:
            return units[-1], path
    return None


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # a child of ours: no zombie left behind
    except ChildProcessError:
        pass


def escalate(pid: int, signals: Iterable[int], grace: float, *, group: bool = False, start: str | None = None,
             ) -> bool:
    """Send each signal in turn to ``pid`` until it is gone, waiting up to ``grace`` seconds after each; a child of
    ours is reaped while we wait. With ``group``, to its process group instead when ``pid`` leads one (a process
    started in a session of its own); a process that does not (one a script started with ``cmd &`` is in the
    script's group) gets the signals itself, as its group is others' too. Only the process that ran as ``pid``
    when this was called (or the one :func:`start_time` said ``start`` of) is signalled, never one that took its
    number since.

    True once it is gone; False when it outlived every signal or may not be signalled (another user's)."""
    start = start or start_time(pid)
    for signum in signals:
        if not running(pid, start):
            return True
        try:
            leads = group and os.getpgid(pid) == pid
        except OSError:
            leads = False
        try:
            (os.killpg if leads else os.kill)(pid, signum)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            _reap(pid)
            if not running(pid, start):
                return True
            time.sleep(0.1)
    _reap(pid)
    return not running(pid, start)


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


def busy_port_hint(service: str, port: int) -> str:
    """What to do when ``port`` is taken: when the stack's own ``service`` (``viewer``, ``api``) listens there,
    say so (starting a second copy is the mistake), else choose another port."""
    from calmops.core.environment import stack_urls

    url = stack_urls().get(service)
    if url and url.rstrip("/").endswith(f":{port}"):
        return (f"the stack's {service} serves there already ({url}, started by 'calmops up'): use it, or stop "
                "the stack with 'calmops down' first")
    return "choose another port with --port"
