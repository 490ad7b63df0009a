"""The file watcher: one Prefect event per complete file that arrives in a pipeline's incoming folder.

One watchdog observer watches every pipeline's incoming folder (the list of pipelines is re-read every
few seconds, so new pipelines are watched without a restart). A file is announced only once it is
complete:

* it was closed after writing (``on_closed``), renamed into place (``on_moved``) or moved in from
  another folder (reported as ``on_created``), or found by a scan;
* its name is not a temporary one (dot-files, ``.part``, ``.tmp``, ``.crdownload``, ``.swp``, ``~``);
* its size and modification time did not change for ``settle`` seconds (not needed for a file renamed
  into place: publishing by rename is how a producer says the file is complete);
* no process holds it open for writing (checked with a Linux read lease, which the kernel refuses
  while a writer has the file open; where leases are unavailable, e.g. network shares, the file must
  instead have been left untouched for ``min_age`` seconds).

Before announcing a file the watcher records its arrival in the pipeline's ledger (``waiting``, with its
modification time; files with the same time in the order they are recorded): the pipeline's runs decide files in that order (see
:func:`calmops.flows.common.run_in_order`). Every route that records an arrival (an event, a scan, the run
itself) uses that one clock, so a file whose event is handled late under load still keeps its place.

A pipeline whose labels come later (spec ``labels``) has a second watched folder, its labels folder: each
labels file there is announced on its own, like a file of a pipeline with ``order: none``, and its run joins it
to the rows it labels (see :mod:`calmops.flows.labels`).

The announcement is the event ``calmops.file.arrived`` with the resource
``calmops.pipeline.<name>`` and labels for the path, size and SHA-256 of the file; each pipeline's
deployment has a trigger on it (see :mod:`calmops.deployments.deploy`).

A pipeline that both deployment schemes would run (its own deployment from ``calmops deploy`` and prefect.yaml's
for its kind: every file would start two runs) has nothing announced until one of them goes; the watcher's log and
the pipeline's say so once, with the deployments and the command that keeps each (see
:mod:`calmops.core.schemes`).

A file that a live run holds already under its own name is not announced (the ledger is read afresh first): ``calmops run``
claims its copy in the ledger before the copy appears in incoming (see
:meth:`calmops.core.store.Ledger.reserve`), so a hand run makes one flow run, not a second one ending
*Duplicate*.

Prefect delivers events at least once, and an event sent while the server is down can be lost. So the
watcher also scans the incoming folders on start, every ``scan_interval`` seconds, and at once when
the Prefect API answers again after an outage. A scan announces a file unless the pipeline's ledger
marks it ``done`` (but for decided bytes left behind in the folder: a copy under another name, or a file not moved
to processed a while after it was decided, announced for their runs to answer them a duplicate), a live run holds its claim (``in_progress``; a claim whose run has ended without
finishing is *orphaned* and announced again, see :class:`calmops.core.store.Ledger`), it is ``pending``
while the pipeline's breaker is still cooling down, or a flow run for it is already
scheduled, waiting for its pipeline's slot, or running. A file already announced is announced again
only after ``reemit_after`` seconds, and only when no run for it is queued; a file that no run has claimed
since waits twice as long each time (up to ten minutes), so a server that is slow to turn events into runs
is not flooded with copies. With ``order: arrival`` (the default) a scan announces only the pipeline's oldest
waiting file, and nothing while any run of the pipeline is queued or running: that run decides, in its turn,
every file that arrived after its own. Every duplicate that still gets through is harmless: the flow is
idempotent per content hash.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from prefect import flow, get_run_logger
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from calmops.core import statedb
from calmops.core.flow_runs import runs_in_states
from calmops.core.logs import pipeline_logger
from calmops.core.names import EVENT, file_resource
from calmops.core.pause import Pause, paused
from calmops.core.schemes import both_schemes, scheme_advice, two_runs
from calmops.core.settings import Settings, get_settings
from calmops.core.statedb import Table
from calmops.core.store import (
    Ledger,
    arrival_time,
    entry_name,
    is_temporary_name,
    ledger_table,
    list_pipelines,
    not_a_regular_file,
    pipeline_paths,
    quarantine,
    read_ledger_states,
    read_spec,
    sha256_of,
)
from calmops.deployments import quickhttp
from calmops.deployments.stack import WATCH_LOCK, WatcherRunning, only_watcher

log = logging.getLogger("calmops.watcher")

Emit = Callable[..., Any]  # emit(event=..., resource={...}) like prefect.events.emit_event

_UNASKED = object()
_F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
_sigio_ignored = False


def _ignore_sigio() -> bool:
    """A lease holder gets SIGIO when a writer opens the file; its default action ends the process."""
    global _sigio_ignored
    if not _sigio_ignored and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGIO, signal.SIG_IGN)
        _sigio_ignored = True
    return _sigio_ignored or signal.getsignal(signal.SIGIO) == signal.SIG_IGN


def open_for_writing(path: Path) -> bool | None:
    """True if some process has the file open for writing; None when this cannot be known here."""
    if not _ignore_sigio():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return True if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) else None
    else:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def emit_event(event: str, resource: dict[str, str]) -> Any:
    """Send the event with Prefect's client (buffered, reconnecting, at-least-once)."""
    from prefect.events import emit_event as prefect_emit

    return prefect_emit(event=event, resource=resource)


@dataclass
class _Candidate:
    pipeline: str
    path: Path
    trusted: bool  # closed after writing, or renamed into place
    size: int
    mtime_ns: int
    due: float


@dataclass(frozen=True)
class _Watched:
    pipeline: str
    kind: str
    incoming: Path
    ledger: Table  # where the pipeline's ledger lives (calmops.core.statedb)
    order: str = "arrival"
    labels: bool = False  # the pipeline's labels folder (spec labels): each file announced on its own


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def breaker_allows_retry(pipeline: str) -> bool:
    """Pending files wait while the pipeline's breaker is open and its cooldown is not over."""
    try:
        from calmops.core.breaker import read_breaker

        state = read_breaker(pipeline)
        return state.state != "open" or (state.next_retry_at is not None and time.time() >= state.next_retry_at)
    except Exception:  # noqa: BLE001 - when in doubt announce: the flow decides
        return True


def live_run_paths(pipeline: str) -> dict[str, bool] | None:
    """Paths of files that have a flow run scheduled, waiting or running now, each with whether one of its runs
    is still queued (scheduled or waiting: it has not started); None when it cannot tell."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import StateType

        with get_client(sync_client=True) as client:
            runs = runs_in_states(client, [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING],
                                  pipeline=pipeline)
        live: dict[str, bool] = {}
        for r in runs:
            if r.parameters.get("path"):
                path = str(r.parameters["path"])
                live[path] = live.get(path, False) or r.state.type != StateType.RUNNING
        return live
    except Exception:  # noqa: BLE001 - unknown: the caller does not announce again
        return None


def deployment_schemes() -> Any:
    """The deployments that trigger runs (:class:`calmops.core.schemes.Schemes`); None when the API does not
    answer (files are then announced: a second run of a file is answered a duplicate)."""
    try:
        return both_schemes()
    except Exception:  # unknown: announced as before
        log.debug("could not read the deployments", exc_info=True)
        return None


def prefect_api_healthy(timeout: float = 2.0) -> bool | None:
    """True/False when a Prefect API URL is configured, None otherwise. Asked every two seconds: with the
    standard library (an httpx client built per call loads its certificate store each time)."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return None
    return quickhttp.get(url.rstrip("/") + "/health", timeout=timeout)[0] == 200


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher):
        self.watcher = watcher

    def on_closed(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.watcher.offer(Path(os.fsdecode(event.src_path)), trusted=True)

    def on_moved(self, event: FileSystemEvent) -> None:
        if not event.is_directory:  # renamed into place: complete by the producer's own contract
            self.watcher.forget(Path(os.fsdecode(event.src_path)))
            self.watcher.offer(Path(os.fsdecode(event.dest_path)), trusted=True, settled=True)

    def on_deleted(self, event: FileSystemEvent) -> None:
        if not event.is_directory:  # also a file moved to a folder not watched (quarantine/, processed/)
            self.watcher.forget(Path(os.fsdecode(event.src_path)))

    def on_created(self, event: FileSystemEvent) -> None:
        # a file moved in from an unwatched folder is only "created"; a new file being written too
        if not event.is_directory:
            self.watcher.offer(Path(os.fsdecode(event.src_path)), trusted=False)

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.watcher.touch(Path(os.fsdecode(event.src_path)))


class Watcher:
    """Watch every pipeline's incoming folder and announce complete files.

    ``emit`` is called as ``emit(event=..., resource={...})`` (defaults to Prefect's ``emit_event``);
    ``health`` answers whether the Prefect API is up (None: unknown); ``breaker_ready(name)`` whether a
    pipeline's pending files may be announced again.
    """

    def __init__(self, emit: Emit | None = None, *, settle: float = 1.0, scan_interval: float = 30.0,
                 refresh_interval: float = 5.0, reemit_after: float = 60.0, min_age: float = 10.0,
                 health_interval: float = 2.0, health: Callable[[], bool | None] | None = None,
                 breaker_ready: Callable[[str], bool] | None = None,
                 live_paths: Callable[[str], dict[str, bool] | None] | None = None, settings: Settings | None = None,
                 heartbeat_file: Path | None = None, record_arrivals: bool = True,
                 stall_after: float | None = None, recover: Callable[[], list] | None = None,
                 schemes: Callable[[], Any] | None = None,
                 pause_of: Callable[[str, Settings], Pause | None] | None = None, listing: bool = False):
        self.emit = emit or emit_event
        # the emit only lists the files (waiting_files): nothing is announced, and no line says it was
        self.listing = listing
        # a paused pipeline's files are not announced (calmops.core.pause): with Prefect's emit; a scan that only
        # lists what waits (waiting_files) lists them
        self.pause_of = pause_of or (paused if self.emit is emit_event else (lambda name, settings: None))
        self._pauses: dict[str, Pause] = {}  # pipelines said to be paused, with the pause said
        self._paused_at_refresh: set[str] = set()  # the pipelines paused at the last refresh
        # which deployments trigger runs (deployment_schemes), read with Prefect's emit and at most every
        # refresh_interval seconds
        self.schemes = schemes or (deployment_schemes if self.emit is emit_event else (lambda: None))
        self._schemes: tuple[float, Any] | None = None
        self._two_schemes: set[str] = set()  # pipelines said to be run by both schemes
        self.settle = settle
        self.scan_interval = scan_interval
        self.refresh_interval = refresh_interval
        self.reemit_after = reemit_after
        self.min_age = min_age
        self.health_interval = health_interval
        self.health = health if health is not None else (prefect_api_healthy if emit is None else (lambda: None))
        self.breaker_ready = breaker_ready or (breaker_allows_retry if emit is None else (lambda name: True))
        self.live_paths = live_paths or (live_run_paths if emit is None else (lambda name: None))
        self.settings = settings or get_settings()
        self.heartbeat_file = heartbeat_file
        self.record_arrivals = record_arrivals
        # the watchdog over Prefect's queue (calmops.deployments.stalls): on with Prefect's emit and a bound
        if recover is None and emit is None and stall_after:
            from calmops.deployments.stalls import recover_stalled

            recover = functools.partial(recover_stalled, stall_after)
        self.recover = recover
        self.stall_interval = min(60.0, (stall_after or 60.0) / 2)
        self._lock = threading.RLock()
        self._candidates: dict[Path, _Candidate] = {}
        self._emitted: dict[Path, tuple[str, float, int]] = {}  # path -> (sha256, monotonic time, repeats)
        self._hashes: dict[Path, tuple[int, int, str]] = {}  # path -> (size, mtime_ns, sha256)
        self._folders_told: set[Path] = set()  # folders found in an incoming folder, said once each
        self._gone_told: set[Path] = set()  # watched folders found gone (their pipeline deleted), said once each
        self._folders: dict[Path, _Watched] = {}
        self._unwatched: dict[str, str] = {}  # pipeline -> why its spec cannot be read, said once per reason
        self._watches: dict[Path, Any] = {}
        self._observer = Observer(timeout=0.2)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._api_up: bool | None = None
        self.emitted_count = 0
        _ignore_sigio()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Watcher:
        """Watch in background threads (returns at once)."""
        self.refresh()
        self._observer.start()
        self.scan()
        self._thread = threading.Thread(target=self._loop, name="calmops-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        self._observer.stop()
        self._observer.join(timeout)
        if self.heartbeat_file is not None:  # gone: `calmops status` no longer counts it
            self.heartbeat_file.unlink(missing_ok=True)
        if self.emit is emit_event:
            try:
                from prefect.events.worker import EventsWorker

                EventsWorker.drain_all(timeout=timeout)
            except Exception:  # noqa: BLE001, S110 - best effort on the way out
                pass

    def run_forever(self) -> None:
        """Foreground mode (``calmops watch``, and the stack's watcher): until SIGINT/SIGTERM. With a heartbeat
        file, the only watcher of its run folder (:class:`WatcherRunning` when another one is)."""
        def _stop(signum, frame):
            self._stop.set()

        held = None
        if self.heartbeat_file is not None:
            held = only_watcher(self.heartbeat_file.with_name(WATCH_LOCK))
            self._beat()  # at once: a first scan of large folders takes a while, and it runs meanwhile
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
        try:
            self.start()  # a start that fails says why itself (nothing started to stop)
            log.info("watching %d folder(s): %s", len(self._folders), ", ".join(map(str, self._folders))
                     or "none yet")
            try:
                while not self._stop.wait(0.5):
                    pass
            finally:
                self.stop()
        finally:
            if held is not None:
                os.close(held)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- folders ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the pipelines and watch exactly their incoming folders (and labels folders)."""
        wanted: dict[Path, _Watched] = {}
        names = list_pipelines(self.settings)
        for name in names:
            try:
                spec = read_spec(name, self.settings)
            except Exception as exc:  # noqa: BLE001 - a broken spec must not stop the others
                self._not_watching_because(name, str(exc))
                continue
            if self._unwatched.pop(name, None) is not None:
                log.info("watching %s again: its spec reads again", name)
            for watched in _folders_of(name, spec, pipeline_paths(spec, self.settings)):
                folder = watched.incoming
                if folder in wanted:
                    log.warning("pipelines %s and %s share %s; only %s is fed", wanted[folder].pipeline, name,
                                folder, wanted[folder].pipeline)
                    continue
                wanted[folder] = watched
        for gone in set(self._unwatched) - set(names):  # deleted: said afresh should it come back broken
            del self._unwatched[gone]
        # The observer calls our handler while holding its own lock, and the handler takes ours: so the
        # observer is (un)scheduled without holding ours, or a file event at that moment deadlocks both.
        with self._lock:
            dropped = [self._watches.pop(f) for f in list(self._watches) if f not in wanted or not f.is_dir()]
            new = [(folder, watched) for folder, watched in wanted.items() if folder not in self._watches]
        for watch in dropped:
            try:
                self._observer.unschedule(watch)
            except Exception:  # noqa: BLE001, S110 - its emitter may be gone with the folder
                pass
        for folder, watched in new:
            if not _make_folder(folder, self.settings.pipeline_dir(watched.pipeline)):
                continue  # the pipeline was deleted (its folder moved away) since it was listed
            watch = self._observer.schedule(_Handler(self), str(folder), recursive=False)
            with self._lock:
                self._watches[folder] = watch
            log.info("watching %s for pipeline %s", folder, watched.pipeline)
        with self._lock:
            self._folders = wanted
        if self._thread is not None:  # new pipelines: their folders may hold files already
            for _, watched in new:
                self._scan_folder(watched, force=False, coalesce=True)
        self._resumed(names, wanted)

    def _not_watching_because(self, name: str, reason: str) -> None:
        """Say that a pipeline is not watched, once per reason (a refresh every few seconds finds it again)."""
        if self._unwatched.get(name) != reason:
            self._unwatched[name] = reason
            log.warning("not watching %s: %s; files arriving for it wait in its incoming folder until its spec "
                        "is mended (the watcher reads it again every %g s)", name, reason, self.refresh_interval)

    def _pipeline_for(self, path: Path) -> _Watched | None:
        return self._folders.get(path.parent.resolve())

    # -- events -----------------------------------------------------------------------------------

    def offer(self, path: Path, *, trusted: bool, settled: bool = False) -> None:
        """A file event: the file becomes a candidate, announced once it has settled (at once when ``settled``:
        a rename into place; the check that no writer holds it open still applies)."""
        if is_temporary_name(path):
            return
        if self._refused(path):
            return
        with self._lock:
            watched = self._pipeline_for(path)
            st = _stat(path)
            if watched is None or st is None:
                return
            old = self._candidates.get(path)
            self._candidates[path] = _Candidate(watched.pipeline, path, trusted or bool(old and old.trusted),
                                                st[0], st[1], time.monotonic() + (0.0 if settled else self.settle))

    def forget(self, path: Path) -> None:
        """The file left its folder (its run moved it, or the user did): a file that comes back under its name is
        new to the folder, announced as any other, not held back as an announcement already made."""
        with self._lock:
            self._emitted.pop(path, None)
            self._hashes.pop(path, None)

    def touch(self, path: Path) -> None:
        """The file changed: a candidate waits for it to settle again."""
        with self._lock:
            cand = self._candidates.get(path)
            if cand is not None:
                cand.due = time.monotonic() + self.settle

    def _loop(self) -> None:
        next_scan = time.monotonic() + self.scan_interval
        next_refresh = time.monotonic() + self.refresh_interval
        next_health = next_beat = time.monotonic()
        next_stall = time.monotonic() + self.stall_interval
        while not self._stop.wait(0.1):
            try:
                now = time.monotonic()
                self._settle_due(now)
                if now >= next_health:
                    next_health = now + self.health_interval
                    self._check_health()
                if now >= next_refresh:
                    next_refresh = now + self.refresh_interval
                    self.refresh()
                if now >= next_scan:
                    next_scan = now + self.scan_interval
                    self.scan()
                if self.recover is not None and now >= next_stall and self._api_up is not False:
                    next_stall = now + self.stall_interval
                    self._recover_stalled()
                if self.heartbeat_file is not None and now >= next_beat:
                    next_beat = now + 2.0
                    self._beat()
            except Exception:
                log.exception("watcher loop error (continuing)")
                time.sleep(1.0)

    def _beat(self) -> None:
        """Refresh the heartbeat file, naming its writer."""
        if self.heartbeat_file is not None:
            self.heartbeat_file.write_text(f"{time.time():.0f} {os.getpid()}\n")

    def _recover_stalled(self) -> None:
        """Cancel runs that wait and never start, then announce their pipelines' waiting files again."""
        stalled = self.recover() if self.recover else []
        pipelines = {s.pipeline for s in stalled}
        with self._lock:
            folders = [w for w in self._folders.values() if w.pipeline in pipelines]
        for watched in folders:
            with self._lock:  # their announcements went nowhere: announce again now, not after a back-off
                for path in [p for p in self._emitted if p.parent == watched.incoming]:
                    self._emitted.pop(path, None)
            self._scan_folder(watched, force=True, coalesce=True)

    def _check_health(self) -> None:
        up = self.health()
        if up is None:
            return
        was = self._api_up
        self._api_up = up
        if was is False and up:
            log.info("Prefect API is back: announcing every file still waiting")
            self.scan(force=True)
        elif was and not up:
            log.warning("Prefect API is not answering; files will be announced again when it is back")

    def _settle_due(self, now: float) -> None:
        with self._lock:
            due = [c for c in self._candidates.values() if c.due <= now]
        for cand in due:
            st = _stat(cand.path)
            if st is None:  # gone (moved away, processed, deleted)
                with self._lock:
                    self._candidates.pop(cand.path, None)
                continue
            if st != (cand.size, cand.mtime_ns):  # still growing
                cand.size, cand.mtime_ns, cand.due = st[0], st[1], now + self.settle
                continue
            writing = open_for_writing(cand.path)
            if writing or (writing is None and not cand.trusted and not self._old_enough(cand.path)):
                cand.due = now + self.settle
                continue
            with self._lock:
                if self._candidates.get(cand.path) is cand:
                    del self._candidates[cand.path]
            watched = self._pipeline_for(cand.path)
            if watched is not None:
                self._announce(watched, cand.path, st, reason="arrived", arrived=arrival_time(st[1]))

    def _old_enough(self, path: Path) -> bool:
        try:
            return time.time() - path.stat().st_mtime >= self.min_age
        except OSError:
            return False

    # -- scans ------------------------------------------------------------------------------------

    def scan(self, force: bool = False) -> list[Path]:
        """Announce waiting files of every watched pipeline (see the module docstring)."""
        with self._lock:
            folders = list(self._folders.values())
        announced: list[Path] = []
        for watched in folders:
            try:
                announced += self._scan_folder(watched, force, coalesce=True)
            except Exception:
                log.exception("scan of %s failed", watched.incoming)
        return announced

    def _scan_folder(self, watched: _Watched, force: bool, coalesce: bool = False) -> list[Path]:
        """Announce the folder's waiting files, oldest first. With ``coalesce`` and ``order: arrival`` at most
        one: the run of the oldest waiting file decides, in its turn, every file that arrived after it (their
        arrival is recorded), so one announcement is enough, and none while a run of the pipeline is queued or
        running, or while the oldest waits for the breaker (the arrival of the files behind is recorded then too:
        files copied in while the watcher was down take their place in the queue of the runs left queued)."""
        states = read_ledger_states(watched.ledger)
        one_turn = coalesce and watched.order == "arrival"
        breaker_checked: bool | None = None
        live: Any = _UNASKED
        behind = False  # the files left are decided in the turn of a run announced, queued or running
        paused, paused_read = False, -math.inf  # read when a file is to be announced, again only a second later
        # (a scan that hashes large files takes a while: a pause given meanwhile stops it within a second)

        def announce(path: Path, st: tuple[int, int], sha: str) -> bool:
            nonlocal paused, paused_read
            if time.monotonic() - paused_read >= 1.0:
                paused, paused_read = self._paused_now(watched), time.monotonic()
            return self._announce(watched, path, st, reason="scan", sha=sha, arrived=arrival_time(st[1]),
                                  paused=paused)

        announced = []
        now = time.monotonic()
        with self._lock:
            for gone in [p for p in self._emitted if p.parent == watched.incoming and not p.exists()]:
                self._emitted.pop(gone, None)
                self._hashes.pop(gone, None)
        # links and special files first (refused unread), then the regular files in arrival order
        try:
            unusual = sorted(p for p in watched.incoming.iterdir()
                             if p.is_symlink() or not (p.is_file() or p.is_dir()))
            self._tell_folders(watched)
            found = _oldest_first(watched.incoming)
        except FileNotFoundError:
            if watched.incoming.exists():
                raise
            self._vanished(watched)
            return announced
        with self._lock:
            self._gone_told.discard(watched.incoming)
        for path in [*unusual, *found]:
            if is_temporary_name(path) or self._refused(path, watched):
                continue
            with self._lock:
                if path in self._candidates:  # the event path is on it
                    continue
            st = _stat(path)
            if st is None:
                continue
            if time.time() - st[1] / 1e9 < self.settle:
                self.offer(path, trusted=False)  # just written: let it settle like an event would
                continue
            writing = open_for_writing(path)
            if writing or (writing is None and not self._old_enough(path)):
                continue
            sha = self._hash(path, st)
            status = states.get(sha)
            if status == "done":  # decided bytes left in the folder: a run answers them a duplicate and moves them
                if not behind and self._left_behind(watched, path, sha, force):  # (not while a run holds the turn)
                    if live is _UNASKED:
                        live = self.live_paths(watched.pipeline)
                    with self._lock:
                        told = path in self._emitted
                    # not while a run for it is queued, nor again while that cannot be told
                    if not (live and str(path) in live) and not (live is None and told and not force):
                        announce(path, st, sha)
                continue
            if (announced or behind) and one_turn:  # decided in the turn of the run just announced, or live
                if announced or status in (None, "gone"):  # gone: dropped again from quarantine
                    self._record_arrival(watched, path, sha, arrival_time(st[1]))
                continue
            if status == "in_progress":
                behind = one_turn  # a live run holds the pipeline's turn and goes on with the files behind
                continue  # a live run has it (an orphaned claim is announced again)
            if status == "pending":
                if breaker_checked is None:
                    breaker_checked = self.breaker_ready(watched.pipeline)
                if not breaker_checked:
                    behind = one_turn  # the files behind it are held until it is decided
                    continue
            with self._lock:
                last = self._emitted.get(path)
            if last and last[0] == sha and not force and now - last[1] < self._reemit_delay(last[2], status):
                behind = one_turn
                continue
            if live is _UNASKED:
                live = self.live_paths(watched.pipeline)
            if live is None and last and not force:
                behind = one_turn
                continue  # cannot tell whether its run is still queued: wait for a clearer moment
            if one_turn and live and any(self._will_take_turn(Path(p), states, queued) for p, queued in live.items()):
                behind = True  # a queued or running run of the pipeline will take its turn
                if status in (None, "gone"):
                    self._record_arrival(watched, path, sha, arrival_time(st[1]))
                continue
            if not one_turn and live and str(path) in live:
                continue  # a run is queued or running for it
            if announce(path, st, sha):
                announced.append(path)
        return announced

    def _will_take_turn(self, path: Path, states: dict[str, str], queued: bool = False) -> bool:
        """Whether a live run for ``path`` will go on to decide the pipeline's files: its file is still waiting or
        being processed by it. A run whose file is done or gone will not, nor a running run whose file is
        orphaned (a crash left Prefect showing it Running), nor a labels file's run (decided on its own). A run
        still ``queued`` for an orphaned file will: it is the file's next run, announced after the crash (should it
        never start, the watchdog cancels it as stalled and the file is announced again)."""
        with self._lock:
            watched = self._folders.get(path.parent.resolve())
        if watched is not None and watched.labels:
            return False
        st = _stat(path)
        if st is None:
            return False
        try:
            status = states.get(self._hash(path, st))
        except OSError:
            return False
        return status not in ("done", "gone") and (queued or status != "orphaned")

    def _reemit_delay(self, repeats: int, status: str | None) -> float:
        """How long an announced file waits before it is announced again. A file still ``waiting`` (never
        claimed: the event or its run is late, or was lost) waits twice as long each time, up to ten minutes,
        so a slow server is not flooded with copies; a ``pending`` or orphaned file was claimed: its run came."""
        if status in ("pending", "orphaned"):
            return self.reemit_after
        return min(self.reemit_after * 2 ** min(repeats, 20), max(self.reemit_after, 600.0))

    def _record_arrival(self, watched: _Watched, path: Path, sha: str, arrived: float) -> None:
        if not self.record_arrivals:
            return
        try:  # the arrival order the pipeline's runs follow (calmops.flows.common.run_in_order; labels files:
            # calmops.flows.labels.run_labels_file, in the ledger as labels/<name>)
            name = entry_name(path.name, watched.labels)
            # the folder it is in: a first copy of the same bytes still waiting there is decided first
            Ledger(watched.ledger).arrive(sha, name, arrived, path.parent, at=path)
        except statedb.errors():
            log.exception("could not record the arrival of %s (the run records it)", path)

    def _refused(self, path: Path, watched: _Watched | None = None) -> bool:
        """A symbolic link, pipe, socket or device in incoming: quarantined with a reason, never followed,
        opened or hashed (a pipe would block the watcher; a link could point anywhere)."""
        why = not_a_regular_file(path)
        if why is None or (path.is_dir() and not path.is_symlink()):
            return False
        watched = watched or self._pipeline_for(path)
        if watched is None:
            return True
        try:
            target = quarantine(pipeline_paths(read_spec(watched.pipeline)), path, None, why)
            self._say(watched, "refused %s: %s (moved to %s)", path.name, why, target)
        except Exception:
            log.exception("could not quarantine %s (%s)", path, why)
        return True

    def _vanished(self, watched: _Watched) -> None:
        """The folder is gone, its pipeline deleted (``calmops delete`` moves its folder away) since the last
        refresh listed it: nothing to scan; said once, and the next refresh stops watching it."""
        with self._lock:
            told = watched.incoming in self._gone_told
            self._gone_told.add(watched.incoming)
        if not told:
            log.info("%s is gone (pipeline %s deleted?): not scanned", watched.incoming, watched.pipeline)

    def _tell_folders(self, watched: _Watched) -> None:
        """A folder in an incoming folder is left where it is (it may still be being copied) and nothing in it
        is read: said once, in the watcher's and the pipeline's logs, so its files do not wait unseen."""
        for folder in sorted(p for p in watched.incoming.iterdir() if p.is_dir() and not p.is_symlink()
                             and not is_temporary_name(p) and p not in self._folders_told):
            self._folders_told.add(folder)
            self._say(watched, "%s/ is a folder in %s: files are taken from the incoming folder itself, never from "
                      "folders in it; move its files up into the incoming folder", folder.name, watched.incoming)

    @staticmethod
    def _say(watched: _Watched, message: str, *args: Any) -> None:
        """A warning about a pipeline's incoming folder: in the watcher's log and the pipeline's own
        (``calmops logs NAME``)."""
        log.warning(message, *args)
        try:
            pipeline_logger(watched.pipeline, pipeline_paths(read_spec(watched.pipeline)).logs).warning(message, *args)
        except Exception:  # the watcher's own log has it
            log.debug("no pipeline log for %s", watched.pipeline, exc_info=True)

    def _hash(self, path: Path, st: tuple[int, int]) -> str:
        cached = self._hashes.get(path)
        if cached and cached[:2] == st:
            return cached[2]
        sha = sha256_of(path)
        self._hashes[path] = (st[0], st[1], sha)
        return sha

    def _announce(self, watched: _Watched, path: Path, st: tuple[int, int], *, reason: str, arrived: float,
                  sha: str | None = None, paused: bool | None = None) -> bool:
        """Announce one file (``paused``: whether its pipeline is paused, when the caller has read that)."""
        try:
            sha = sha or self._hash(path, st)
        except OSError:
            return False  # moved away meanwhile
        if self._paused_now(watched) if paused is None else paused:
            self._record_arrival(watched, path, sha, arrived)  # its place in the queue, for the resume
            return False
        if self._run_by_both_schemes(watched):
            return False
        if self._held_by_a_run(watched, path, sha):  # read afresh: a scan's view of the ledger may be older
            log.info("%s is being decided by a run already (a hand run's copy); not announced", path.name)
            return False
        with self._lock:
            last = self._emitted.get(path)
            if reason == "arrived" and last and last[0] == sha:
                return False  # a second close of the same bytes
            repeats = last[2] + 1 if last and last[0] == sha and reason == "scan" else 0
            self._emitted[path] = (sha, time.monotonic(), repeats)
        self._record_arrival(watched, path, sha, arrived)
        resource = file_resource(watched.pipeline, watched.kind, path, st[0], sha)
        try:
            self.emit(event=EVENT, resource=resource)
        except Exception:
            log.exception("could not announce %s", path)
            with self._lock:
                self._emitted.pop(path, None)
            return False
        self.emitted_count += 1
        if not self.listing:
            log.info("announced %s for pipeline %s (%s, sha256 %s…)", path.name, watched.pipeline, reason, sha[:12])
        return True


    def _paused_now(self, watched: _Watched) -> bool:
        """Whether the pipeline is paused: then nothing of it is announced, and that is said once a pause (its
        end is noticed by :meth:`refresh`, which announces what waits)."""
        pause = self.pause_of(watched.pipeline, self.settings)
        if pause is None:
            return False
        with self._lock:
            said, self._pauses[watched.pipeline] = self._pauses.get(watched.pipeline), pause
        if said != pause:
            self._say(watched, "not announcing the files of pipeline %s: %s", watched.pipeline,
                      pause.said(watched.pipeline))
        return True

    def _resumed(self, names: list[str], wanted: dict[Path, _Watched]) -> None:
        """Announce at once what waits in the folders of the pipelines whose pause ended since the last refresh:
        without waiting for the next scan, nor for the delay before a file announced before the pause (whose run
        then ended held) is announced again."""
        now = {name for name in names if self.pause_of(name, self.settings) is not None}
        ended = self._paused_at_refresh & set(names) - now  # a pipeline deleted while paused is just gone
        self._paused_at_refresh = now
        for name in sorted(ended):
            log.info("pipeline %s is no longer paused: announcing the files waiting for it", name)
            folders = [w for w in wanted.values() if w.pipeline == name]
            with self._lock:
                self._pauses.pop(name, None)
                for path in [p for p in self._emitted if any(p.parent == w.incoming for w in folders)]:
                    self._emitted.pop(path, None)
            if self._thread is not None:
                for watched in folders:
                    self._scan_folder(watched, force=True, coalesce=True)

    def _run_by_both_schemes(self, watched: _Watched) -> bool:
        """Whether both deployment schemes would start a run for every file of the pipeline (its own deployment and
        prefect.yaml's for its kind): then nothing of it is announced, and that is said once until it is over."""
        now = time.monotonic()
        with self._lock:
            cached = self._schemes
        if cached is None or now - cached[0] >= self.refresh_interval:
            cached = (now, self.schemes())
            with self._lock:
                self._schemes = cached
        both = cached[1].conflict(watched.pipeline, watched.kind) if cached[1] is not None else []
        if not both:
            if watched.pipeline in self._two_schemes:
                self._two_schemes.discard(watched.pipeline)
                self._say(watched, "pipeline %s is run by one deployment again: its files are announced",
                          watched.pipeline)
            return False
        if watched.pipeline not in self._two_schemes:
            self._two_schemes.add(watched.pipeline)
            self._say(watched, "not announcing the files of pipeline %s: %s; %s", watched.pipeline, two_runs(both),
                      scheme_advice(watched.pipeline, both))
        return True

    def _left_behind(self, watched: _Watched, path: Path, sha: str, force: bool) -> bool:
        """Whether a file of decided content waits in the folder for a run to answer it a duplicate (see
        :meth:`calmops.core.store.Ledger.left_behind`), announced no more often than any file is."""
        with self._lock:
            last = self._emitted.get(path)
        if last and last[0] == sha and not force and time.monotonic() - last[1] < self._reemit_delay(last[2], "done"):
            return False
        name = entry_name(path.name, watched.labels)
        try:
            return Ledger(watched.ledger).left_behind(sha, name, after=self.reemit_after)
        except statedb.errors():
            return False

    @staticmethod
    def _held_by_a_run(watched: _Watched, path: Path, sha: str) -> bool:
        """Whether a live run holds this very file (its content, under its name): a scan finds it again should
        that run end without deciding it."""
        if watched.labels:
            return False
        try:
            return watched.ledger.exists() and Ledger(watched.ledger).live_claim(sha) == path.name
        except statedb.errors():
            return False  # the state database is unreachable: announced (a duplicate is harmless)


def _oldest_first(folder: Path) -> list[Path]:
    """The folder's files by modification time, then name: the arrival order of files found by a scan."""
    found = []
    for p in folder.iterdir():
        st = _stat(p) if p.is_file() and not p.is_symlink() else None
        if st is not None:
            found.append((st[1], p.name, p))
    return [p for *_, p in sorted(found)]


def _folders_of(pipeline: str, spec, paths) -> list[_Watched]:
    """The folders a pipeline is fed through: its incoming folder, and its labels folder when labels come later
    (each labels file announced on its own)."""
    table = ledger_table(paths)
    folders = [_Watched(pipeline, spec.kind, paths.incoming.resolve(), table, spec.order)]
    if paths.labels is not None:
        folders.append(_Watched(pipeline, spec.kind, paths.labels.resolve(), table, "none", labels=True))
    return folders


def _watched(pipeline: str) -> list[_Watched]:
    spec = read_spec(pipeline)
    paths = pipeline_paths(spec)
    folders = _folders_of(pipeline, spec, paths)
    return [w for w in folders if _make_folder(w.incoming, paths.root)]


def _make_folder(folder: Path, root: Path) -> bool:
    """Create a watched folder if it is missing; False when it lies in the pipeline's own folder and that is
    gone (``calmops delete`` moved it away): a folder outside it (spec ``incoming``) is made with its parents."""
    try:
        folder.mkdir(parents=not folder.is_relative_to(root.resolve()), exist_ok=True)
    except FileNotFoundError:
        return False
    return True


def scan_pipeline(pipeline: str, emit: Emit | None = None, *, settle: float = 2.0, min_age: float = 10.0,
                  breaker_ready: Callable[[str], bool] | None = None, listing: bool = False) -> list[Path]:
    """One scan of one pipeline's incoming folder and labels folder (scheduled scans, ``calmops relaunch``;
    ``listing``: ``emit`` only lists the files, see :func:`waiting_files`)."""
    watcher = Watcher(emit=emit or emit_event, settle=settle, min_age=min_age,
                      breaker_ready=breaker_ready or breaker_allows_retry, health=lambda: None, listing=listing)
    return [path for watched in _watched(pipeline) for path in watcher._scan_folder(watched, force=True)]


def waiting_files(pipeline: str) -> list[Path]:
    """Complete files in the incoming (and labels) folder that the ledger does not mark done or being processed."""
    found: list[Path] = []
    scan_pipeline(pipeline, emit=lambda **kw: found.append(Path(kw["resource"]["calmops.file.path"])),
                  settle=0.0, min_age=0.0, breaker_ready=lambda _: True,  # a writer still at it is skipped
                  listing=True)
    return found


@flow(name="calmops-scan", flow_run_name="scan/{pipeline}", persist_result=False)
def scan_flow(pipeline: str) -> list[str]:
    """Announce every complete file waiting in the pipeline's incoming folder (scheduled scans)."""
    announced = scan_pipeline(pipeline)
    get_run_logger().info("%d file(s) announced for %s: %s", len(announced), pipeline,
                          ", ".join(p.name for p in announced) or "none")
    return [str(p) for p in announced]


def configure_logging(level: int = logging.INFO) -> None:
    """The watcher's own lines on stderr (Prefect's logging setup leaves the root logger at WARNING)."""
    if not any(getattr(h, "_calmops", False) for h in log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._calmops = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    logging.getLogger("calmops.pipeline").propagate = False  # what it says of a pipeline is in the watcher's lines


def main(argv: list[str] | None = None) -> int:
    """``python -m calmops.deployments.watcher``: the watcher as ``calmops up`` runs it."""
    import argparse

    parser = argparse.ArgumentParser(prog="calmops-watcher", description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=float(os.environ.get("CALMOPS_WATCH_SETTLE", "1")))
    parser.add_argument("--scan-interval", type=float,
                        default=float(os.environ.get("CALMOPS_WATCH_SCAN_INTERVAL", "30")))
    parser.add_argument("--reemit-after", type=float,
                        default=float(os.environ.get("CALMOPS_WATCH_REEMIT_AFTER", "60")))
    parser.add_argument("--stall-after", type=float,
                        default=float(os.environ.get("CALMOPS_WATCH_STALL_AFTER", "300")),
                        help="cancel and announce again a run that waited this long while its pipeline did nothing "
                             "(0: off)")
    parser.add_argument("--heartbeat", type=Path, default=None)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        Watcher(settle=args.settle, scan_interval=args.scan_interval, reemit_after=args.reemit_after,
                heartbeat_file=args.heartbeat, stall_after=args.stall_after or None).run_forever()
    except WatcherRunning as exc:
        log.error("not started: %s; stop that one first ('calmops down', or Ctrl-C in its terminal)", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
