"""Whether a process still runs, known by its number and its start time (a number is reused once its process
has ended). Standard library only: the warm runner's client and the ledger's claims both use it."""

from __future__ import annotations

import os
from pathlib import Path


def start_time(pid: int) -> str | None:
    """Process ``pid``'s start time in clock ticks since boot (Linux's /proc), so that a process that took the
    number of one that ended is not taken for it (a service's pid file, a ledger claim's owner); None when there
    is no such process, when it has ended (a zombie, whose parent has not reaped it yet) and where /proc is
    missing. A process whose main thread has ended while another of its threads still runs (it shows as a zombie
    while it finishes exiting, holding its ports and files) has not ended."""
    fields = _stat(pid)
    if not fields or (fields[0] in ("Z", "X") and not _other_threads_run(pid)):
        return None
    return fields[19]


def _other_threads_run(pid: int) -> bool:
    """Does a thread of process ``pid`` other than its main one still run (not ended)?"""
    try:
        threads = [t for t in os.listdir(f"/proc/{pid}/task") if t != str(pid)]
    except OSError:
        return False
    for tid in threads:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X"):
            return True
    return False


def state(pid: int) -> str:
    """Process ``pid``'s state letter (``R``, ``S``, ``D``: waiting in the kernel, ``Z``…); "" when unknown."""
    fields = _stat(pid)
    return fields[0] if fields else ""


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def has_proc() -> bool:
    """Does this host have Linux's /proc (start times, states, threads)? Without it, a process runs while it
    answers signal 0."""
    return Path("/proc/self/stat").exists()


def running(pid: int, start: str | None) -> bool:
    """Does the process that ran as ``pid`` when :func:`start_time` said ``start`` still run (not ended, not
    replaced by another process with the same number)? Where /proc is missing: does ``pid`` answer signal 0."""
    if not has_proc():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: it exists
        return True
    now = start_time(pid)
    return now is not None and (start is None or now == start)
