"""Warm runner: flow runs start in a process that has already imported everything.

A fresh Python for each flow run (what a process work pool does) spends 6–8 s importing Prefect, MLflow,
scikit-learn and the detectors before the flow's first line. The warm runner is a long-lived process
(service ``runner`` of ``calmops up``) that imports all of that once, then waits on a Unix socket. The
work pool's command is this module's client, ``python -m calmops.deployments.warm``: a bare interpreter that
hands its arguments, environment, working folder and standard streams to the runner, which forks a child
that runs Prefect's own engine entry point (``python -m prefect.engine``) with them. The client stays the
worker's process for the run: it relays signals (cancellation) to the child and exits with its exit code.
When no runner answers, the client becomes ``python -m prefect.engine`` itself (cold but correct).

The runner stays single-threaded (it checks) so forking it is safe; a child whose client disappears is
terminated.

This module imports only the standard library at import time: the client must start in milliseconds.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import time
from pathlib import Path

from calmops.deployments.processes import escalate

PRELOAD = ("prefect", "prefect.engine", "prefect.flow_engine", "calmops.flows.stream", "calmops.flows.block",
           "calmops.flows.ipip",
           # imported lazily on a run's path (skops alone takes ~1 s: every champion is loaded with it)
           "skops.io", "mlflow.sklearn", "pyarrow.parquet", "git", "jinja2", "opentelemetry.sdk.metrics",
           # imported on the first run's path otherwise (about 0.5 s of every run: each runs in a fresh fork)
           "calmops.core.environment", "calmops.detectors.concept", "calmops.detectors.decay", "prefect.task_engine",
           "prefect.artifacts", "prefect.concurrency.sync", "prefect.utilities.visualization", "anyio._backends._asyncio",
           "anyio.streams.memory", "mlflow.tracing.processor.otel", "mlflow.tracking.request_header.registry",
           "pyarrow.dataset", "pandas.io.formats.csvs", "narwhals._pandas_like.namespace", "narwhals.stable.v2",
           "mlflow.tracing.processor.base_mlflow", "mlflow.tracing.export.utils", "netrc", "encodings.utf_8_sig",
           # loaded by MLflow's sklearn flavour on every model it logs (its ``pyfunc`` is a lazy module)
           "mlflow.pyfunc")
# Caches a run fills for its process, filled once here so every child inherits them ("module:function"). MLflow
# maps each installed package to its modules before it logs a model (to check the model's requirements against
# this environment): it reads every distribution's file list, about 1 s, in each run that logs a model.
PRIME = ("mlflow.utils.requirements_utils:_init_modules_to_packages_map",)
STREAMS = 3  # stdin, stdout, stderr travel with the request
_HEADER = struct.Struct("!I")
KILL_GRACE = 10.0
HANDOFF_TIMEOUT = 30.0
ENGINE = "prefect.engine"  # entry "engine": a flow run handed over by the work pool's command
CLI = "calmops.deployments.cli"  # entry "cli": 'calmops run' handed over by the calmops command (entry.py)
PID_FILE = "runner.pid"
ENTRIES_FILE = "runner.entries"  # beside it: the entries this runner serves (a runner older than "cli" has none)  # beside the socket: the pid a client expects at the other end
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def socket_path() -> Path:
    """Where the runner listens: ``$CALMOPS_RUNNER_SOCKET``, else ``runner/runner.sock`` in the run folder
    (setting ``run_dir``, by default ``run`` under the home; from the environment or ``calmops.toml``).

    Its folder must be private (see :func:`open_private_dir`); the address is reached through a descriptor
    on that folder, so the length of the home path does not matter.
    """
    explicit = os.environ.get("CALMOPS_RUNNER_SOCKET")
    if explicit:
        return Path(explicit)
    from calmops.core.settings import get_settings  # standard library only: the client stays quick

    return get_settings().run_dir / "runner" / "runner.sock"


class Untrusted(OSError):
    """The runner's folder or the process listening there is not what CalmOps made."""


def open_private_dir(folder: Path, *, create: bool = False) -> int:
    """A descriptor on ``folder`` once it is checked: a real directory (no symlink), owned by this user, with no
    access for group or others (0700). ``create`` makes it so when it does not exist."""
    if create:
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            what = "a symbolic link" if folder.is_symlink() else "not a directory"
            raise Untrusted(f"{folder} is {what}") from exc
        raise
    st = os.fstat(fd)
    problem = (f"belongs to uid {st.st_uid}, not {os.geteuid()}" if st.st_uid != os.geteuid() else
               f"has mode {stat.S_IMODE(st.st_mode):04o}, not 0700" if st.st_mode & 0o077 else None)
    if problem:
        os.close(fd)
        raise Untrusted(f"{folder} {problem}")
    return fd


def _address(dir_fd: int, name: str) -> str:
    """The socket's address through the checked folder's descriptor (short whatever the folder's path)."""
    return f"/proc/self/fd/{dir_fd}/{name}"


def _peer(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end (SO_PEERCRED)."""
    pid, uid, _gid = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    return pid, uid


def _recorded_pid(dir_fd: int) -> int | None:
    try:
        fd = os.open(PID_FILE, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd) as fh:
        text = fh.read().strip()
    return int(text) if text.isdigit() else None


def connect(path: Path | None = None, timeout: float = HANDOFF_TIMEOUT) -> socket.socket:
    """A connection to the warm runner, made only after checking its folder (owner, mode) and that the listener
    runs as this user with the pid the runner recorded; raises :class:`Untrusted` (or OSError: no runner)."""
    path = path or socket_path()
    dir_fd = open_private_dir(path.parent)
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(timeout)
            conn.connect(_address(dir_fd, path.name))
            pid, uid = _peer(conn)
            recorded = _recorded_pid(dir_fd)
            if uid != os.geteuid():
                raise Untrusted(f"the listener on {path} runs as uid {uid}, not {os.geteuid()}")
            if pid != recorded:
                raise Untrusted(f"the listener on {path} is process {pid}, not the runner "
                                f"({recorded or 'no runner recorded'})")
        except BaseException:
            conn.close()
            raise
    finally:
        os.close(dir_fd)
    return conn


def client_command() -> str:
    """The work pool command that starts a flow run through the warm runner."""
    return f"{sys.executable} -m calmops.deployments.warm"


def answers(path: Path | None = None) -> bool:
    """Whether the runner is listening (a connection that sends nothing is ignored by the runner)."""
    try:
        connect(path, timeout=1.0).close()
    except OSError:
        return False
    return True


# -- client -------------------------------------------------------------------------------------


def _cold(argv: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *argv])


def _readline(conn: socket.socket, buffer: bytearray) -> str | None:
    while b"\n" not in buffer:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode()


def run_client(argv: list[str]) -> int:
    """Hand this flow run to the warm runner; its exit code, or become the cold engine when none answers."""
    code = hand_over(argv)
    if code is None:
        _cold(argv)  # no runner, or it refused or died before forking: nothing ran yet
    return code


def hand_over(argv: list[str], entry: str = "engine") -> int | None:
    """Run ``argv`` in a child of the warm runner, with this process's environment, folder and standard
    streams: as Prefect's engine (``entry="engine"``) or as the ``calmops`` command (``"cli"``). Returns its
    exit code, or None when no runner took it (nothing ran)."""
    from calmops.core.errors import CalmOpsError

    buffer = bytearray()
    try:
        path = socket_path()
    except CalmOpsError:  # a configuration that cannot be read (ConfigError): the run, started here, says so in
        return None  # its own words (the command: one line and a hint), as with no runner
    if entry != "engine" and not serves(entry, path):
        return None  # no runner, or one started before this entry existed: restart it to use it
    try:
        conn = connect(path)  # a stuck runner must not hold the run: HANDOFF_TIMEOUT, then cold
    except Untrusted as exc:  # nothing was sent: argv and environment go to the runner only
        print(f"calmops warm runner: not handing the run over ({exc}); starting it cold", file=sys.stderr,
              flush=True)
        return None
    except OSError:
        return None  # no runner
    try:
        payload = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "entry": entry}).encode()
        socket.send_fds(conn, [_HEADER.pack(len(payload)) + payload], list(range(STREAMS)))
        line = _readline(conn, buffer)
    except OSError:
        line = None
    if not line or not line.startswith("pid "):
        conn.close()
        return None
    child = int(line.split()[1])
    conn.settimeout(None)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # to the run's group: its subprocesses too
        if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. nohup: what this process ignores, so does the run
            signal.signal(signum, lambda signum, _frame: _signal_group(child, signum))
    try:
        line = _readline(conn, buffer)
    except OSError:
        line = None
    conn.close()
    if not line or not line.startswith("exit "):
        print(f"calmops warm runner: lost the runner while process {child} was running; stopping it",
              file=sys.stderr)
        escalate(child, (signal.SIGTERM, signal.SIGKILL), KILL_GRACE, group=True)
        return 1
    return int(line.split()[1])


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# -- runner -------------------------------------------------------------------------------------


class _Probe(Exception):
    """A connection closed without a request: a health check."""


class _BadRequest(Exception):
    pass


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    try:
        data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, STREAMS)
    except OSError as exc:
        raise _BadRequest(exc) from exc
    if not data and not fds:
        raise _Probe
    try:
        return _read_request(conn, bytearray(data), fds), fds
    except (OSError, ValueError, TypeError) as exc:  # ConnectionError is an OSError; bad JSON a ValueError
        for fd in fds:  # never leak a client's streams into later children
            os.close(fd)
        raise _BadRequest(exc) from exc


def _read_request(conn: socket.socket, data: bytearray, fds: list[int]) -> dict:
    if len(fds) != STREAMS:
        raise ValueError(f"expected {STREAMS} streams, got {len(fds)}")
    _fill(conn, data, _HEADER.size)
    (size,) = _HEADER.unpack_from(data)
    _fill(conn, data, _HEADER.size + size)
    request = json.loads(bytes(data[_HEADER.size:_HEADER.size + size]))
    _check_request(request)
    return request


def _check_request(request: object) -> None:
    """TypeError unless ``request`` has the fields :func:`hand_over` sends, of their types: a malformed request
    is refused before anything forks (the runner's own loop reads them too)."""
    if not isinstance(request, dict):
        raise TypeError("the request is not a JSON object")
    argv, env, cwd = request.get("argv"), request.get("env"), request.get("cwd")
    if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
        raise TypeError("'argv' is not a list of strings")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise TypeError("'env' is not an object of strings")
    if not isinstance(cwd, str) or not cwd:
        raise TypeError("'cwd' is not a folder's path")
    if not isinstance(request.get("entry", "engine"), str):
        raise TypeError("'entry' is not a string")


def _fill(conn: socket.socket, data: bytearray, size: int) -> None:
    """Read from ``conn`` until ``data`` holds at least ``size`` bytes."""
    while len(data) < size:
        more = conn.recv(1 << 16)
        if not more:
            raise ConnectionError("request cut short")
        data.extend(more)


def settings_inputs(env: dict[str, str], cwd: str) -> tuple:
    """What Prefect reads its settings and logging configuration from in a process with this environment and
    working folder: the ``PREFECT_`` variables (not a run's own ``PREFECT__`` ones: flow run id, control channel),
    the settings files a folder may hold, and the profiles and logging files (as the current settings locate them;
    they are the same wherever the variables are). Two processes with equal inputs set Prefect up the same way."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    variables = tuple(sorted((k, v) for k, v in env.items() if k.startswith("PREFECT_") and
                             not k.startswith("PREFECT__")))
    files = [os.path.join(cwd, name) for name in (".env", "prefect.toml", "pyproject.toml")]
    files += [str(settings.profiles_path), str(settings.logging.config_path)]
    return variables, tuple(_stamp(path) for path in files)


def _stamp(path: str) -> tuple[str, int, int] | None:
    """The file's path and version, None when there is none (a missing file reads the same from any folder)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return path, st.st_mtime_ns, st.st_size


class _CannotStart(Exception):
    """What keeps a run from starting, in words that need no traceback."""


def _describe(request: dict) -> str:
    """The run a request (checked: :func:`_check_request`) asks for, as the runner's log names it."""
    if request.get("entry") == "cli":
        return f"calmops {' '.join(request['argv'])[:200]}"
    return f"flow run {request['env'].get('PREFECT__FLOW_RUN_ID', '?')}"


def _enter(cwd: str, cli: bool) -> None:
    """Make the client's folder this process's: the run's relative paths resolve there, so a folder the runner
    cannot enter fails the run (running it elsewhere would read and write other files)."""
    try:
        os.chdir(cwd)
    except OSError as exc:
        why = f"cannot enter its working folder {cwd} ({exc.strerror or exc})"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):  # the client sees a folder there that the runner does not
            why += ("; the runner must see the folder the calmops command runs in" if cli else
                    "; the runner and the worker must share /tmp")
            why += " (systemd: no PrivateTmp on separate units)"
        raise _CannotStart(why) from exc


def _refusal(exc: BaseException) -> tuple[str, str, int] | None:
    """(message, hint, exit code) of an error a command refuses with on purpose (a bad spec or configuration, bad
    input, an unknown pipeline: :func:`~calmops.deployments.console.known_error`), as the ``calmops`` command says
    it: its words need no traceback. None for anything else: an unexpected error, or the pipeline's own code
    failing (a preprocess, a hook), keeps its traceback."""
    from calmops.deployments.console import known_error

    return known_error(exc)


def _cannot_start(request: dict, exc: BaseException, fds: tuple[int, ...]) -> None:
    """Say why the run did not start on each of ``fds`` (the runner's log; the client's stderr once the run has
    it, which the worker copies into the flow run's log): the child then exits 1 with nothing else to say."""
    if isinstance(exc, _CannotStart):
        cause = str(exc)
    elif refused := _refusal(exc):
        message, hint, _ = refused
        cause = message + (f"; hint: {hint}" if hint else "")
    else:
        import traceback

        cause = "".join(traceback.format_exception(exc)).rstrip()
    text = f"calmops runner: {_describe(request)} could not start in process {os.getpid()}: {cause}\n".encode(
        errors="replace")
    for fd in fds:
        try:
            os.write(fd, text)
        except OSError:
            pass


def _child(request: dict, fds: list[int], module: str, prepared: tuple | None = None) -> int:
    """In the forked child: become ``python -m <module>`` with the client's streams and environment.

    ``prepared``: the settings inputs the runner last set Prefect up with (see :meth:`Runner._prepare`); a run
    with the same inputs keeps that setup instead of redoing it (about 0.2 s of every run).

    Anything that keeps the run from starting (its folder, its environment, setting Prefect up) is said in the
    runner's log and on the client's stderr (see :func:`_cannot_start`), and the child returns 1."""
    log = os.dup(2)  # the runner's log: the client's streams take 0-2 below
    told = (log,)  # where a failure to start is said
    cli = request.get("entry") == "cli"
    try:
        os.setsid()  # the run leads its own process group: cancelling it reaches its subprocesses too
        copies = [os.dup(fd) for fd in fds]  # received fds may themselves be 0-2: copy all before replacing
        for fd in fds:
            os.close(fd)
        for target, fd in enumerate(copies):
            os.dup2(fd, target)
            os.close(fd)
        told = (log, 2)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        if cli:  # Ctrl-C interrupts the command as in a process of its own: the run gives its file back
            signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        _enter(request["cwd"], cli)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["calmops" if cli else module, *request["argv"]]
        if cli:  # what the command does before anything reads Prefect's or MLflow's settings
            from calmops.core.environment import prepare
            from calmops.core.errors import CalmOpsError

            try:
                prepare()
            except CalmOpsError:  # a configuration the command refuses: it says so itself, as when run cold
                pass  # (one line and a hint, or the --json document: calmops.deployments.console.friendly)
        if "prefect" in sys.modules and (prepared is None or settings_inputs(os.environ, os.getcwd()) != prepared):
            # settings and logging were set up when the runner imported Prefect: redo both from this run's
            # environment (API URL, logging level and handlers of the deployment)
            from prefect.context import refresh_global_settings_context
            from prefect.logging.configuration import setup_logging

            refresh_global_settings_context()
            setup_logging(incremental=False)
            if cli:  # the command installs its own console handler (calmops.core.logs): one line per message
                import logging

                root = logging.getLogger()
                for handler in [h for h in root.handlers if h.get_name() == "console"]:
                    root.removeHandler(handler)
    except BaseException as exc:  # noqa: BLE001 - said where the worker and the runner's reader look, then exit 1
        _cannot_start(request, exc, told)
        return 1
    finally:
        os.close(log)
    return _run(module, cli)


def _run(module: str, cli: bool) -> int:
    """Run ``module`` as ``__main__`` (Prefect's engine, or the calmops command); its exit code."""
    import runpy
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*found in sys.modules.*", category=RuntimeWarning)
            # the calmops command keeps the name it was typed with (its usage lines say 'calmops ...')
            runpy.run_module(module, run_name="__main__", alter_sys=not cli)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr, flush=True)  # sys.exit("message"): said, as the interpreter would
        return 1
    except BaseException as exc:  # noqa: BLE001 - reported like the engine would, then the exit code says it
        if refused := _refusal(exc):  # one line and a hint, and the exit code, as the calmops command says it
            message, hint, code = refused
            print(f"error: {message}" + (f"\nhint: {hint}" if hint else ""), file=sys.stderr, flush=True)
            return code
        import traceback

        traceback.print_exc()
        return 1
    return 0


def _exit_handlers() -> None:
    """What interpreter shutdown would run: Prefect sends its last logs and events from these. (The child
    must not unwind into the runner's loop, so it ends with ``os._exit`` after running them.)"""
    import atexit
    import threading

    try:
        threading._shutdown()  # joins non-daemon threads and runs threading._register_atexit callbacks
    except Exception:  # noqa: BLE001, S110 - best effort: the run's outcome is already recorded
        pass
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _write_pid(dir_fd: int) -> None:
    tmp = f".{PID_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, PID_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "w") as fh:
        fh.write("engine cli\n")
    os.replace(tmp, ENTRIES_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def serves(entry: str, path: Path | None = None) -> bool:
    """Whether the runner recorded that it serves ``entry`` (a runner started by an older CalmOps runs only
    Prefect's engine, whatever a request asks)."""
    path = path or socket_path()
    try:
        dir_fd = open_private_dir(path.parent)
    except OSError:
        return False
    try:
        fd = os.open(ENTRIES_FILE, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
        with os.fdopen(fd) as fh:
            return entry in fh.read().split()
    except OSError:
        return False
    finally:
        os.close(dir_fd)


class Runner:
    """The warm process: preloads, listens, forks one child per request, reports each child's exit."""

    def __init__(self, path: Path, preload: tuple[str, ...] = PRELOAD, module: str = ENGINE,
                 cli: str = CLI, prime: tuple[str, ...] = PRIME) -> None:
        self.path = path
        self.preload = preload
        self.prime = prime
        self.entries = {"engine": module, "cli": cli}  # what a child runs as ``__main__``, by request
        self.children: dict[int, socket.socket] = {}  # child pid -> its client's connection
        self.orphaned: dict[int, float] = {}  # child pid -> when its client went away
        self.selector = selectors.DefaultSelector()
        self.wake: tuple[int, int] | None = None
        self.prepared: tuple | None = None  # settings inputs Prefect is set up with here (None: the runner's own)

    def warm(self) -> float:
        import importlib
        import threading

        t = time.perf_counter()
        for name in self.preload:
            try:
                importlib.import_module(name)
            except ImportError as exc:  # optional: the child imports it itself if it needs it
                print(f"calmops runner: not preloaded {name} ({exc})", file=sys.stderr, flush=True)
        for target in self.prime:
            module, function = target.split(":")
            try:
                getattr(importlib.import_module(module), function)()
            except Exception as exc:  # noqa: BLE001 - optional: each run fills the cache itself, as without
                print(f"calmops runner: not primed {target} ({exc})", file=sys.stderr, flush=True)
        if threading.active_count() != 1:
            raise RuntimeError(f"importing {self.preload} or priming {self.prime} started threads "
                               f"{threading.enumerate()}; forking would not be safe")
        return time.perf_counter() - t

    def serve(self) -> None:
        try:
            dir_fd = open_private_dir(self.path.parent, create=True)
        except Untrusted as exc:
            raise RuntimeError(f"not serving: {exc} (the runner's folder must be private to this user)") from exc
        try:
            self._serve(dir_fd)
        finally:
            os.close(dir_fd)

    def _serve(self, dir_fd: int) -> None:
        if answers(self.path):
            raise RuntimeError(f"another runner already listens on {self.path}")
        name = self.path.name
        _write_pid(dir_fd)  # before listening: a client that connects finds the pid it must see
        try:
            os.unlink(name, dir_fd=dir_fd)  # left by a runner that was killed
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(_address(dir_fd, name))
        os.chmod(name, 0o600, dir_fd=dir_fd)
        bound = os.stat(name, dir_fd=dir_fd).st_ino
        listener.listen(64)
        wake_r, wake_w = self.wake = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        stop = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.append(True))
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_r, selectors.EVENT_READ, "signal")
        print(f"calmops runner listening on {self.path}", flush=True)
        try:
            while not stop:
                for key, _ in self.selector.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept(listener)
                    elif key.data == "signal":
                        os.read(wake_r, 512)
                    else:
                        self._client_gone(key.fileobj, key.data)
                self._reap()
                self._kill_orphans()
        finally:
            listener.close()
            try:
                if os.stat(name, dir_fd=dir_fd).st_ino == bound:  # not a socket another runner bound since
                    os.unlink(name, dir_fd=dir_fd)
                if _recorded_pid(dir_fd) == os.getpid():
                    os.unlink(ENTRIES_FILE, dir_fd=dir_fd)
                    os.unlink(PID_FILE, dir_fd=dir_fd)
            except OSError:
                pass
            self._stop_children()
            self.selector.close()

    def _stop_children(self) -> None:
        """TERM every run, wait up to KILL_GRACE for them (telling their clients), then KILL the rest."""
        for pid in list(self.children) + list(self.orphaned):
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while (self.children or self.orphaned) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.1)
        for pid in list(self.children) + list(self.orphaned):
            _signal_group(pid, signal.SIGKILL)
        self._reap()

    def _accept(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        pid, uid = _peer(conn)
        if uid != os.geteuid():  # the folder is private: this cannot happen unless it was tampered with
            print(f"calmops runner: refused a connection from process {pid} of uid {uid}", file=sys.stderr,
                  flush=True)
            conn.close()
            return
        conn.settimeout(5.0)  # a client that connects and says nothing must not hold the runner
        try:
            request, fds = _receive(conn)
        except _Probe:
            conn.close()
            return
        except _BadRequest as exc:
            print(f"calmops runner: bad request ({exc})", file=sys.stderr, flush=True)
            conn.close()
            return
        engine = request.get("entry", "engine") == "engine"
        module = self.entries.get(request.get("entry", "engine"))
        if module is None:
            print(f"calmops runner: refused entry {str(request.get('entry'))[:80]!r} (not one of "
                  f"{', '.join(self.entries)})", file=sys.stderr, flush=True)
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        conn.settimeout(None)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child never returns into the runner's loop
            code = 1
            try:
                self.selector.close()
                listener.close()
                conn.close()
                for other in self.children.values():
                    other.close()
                for fd in self.wake or ():
                    os.close(fd)
                code = _child(request, fds, module, self.prepared if engine else None)
            except BaseException as exc:  # noqa: BLE001 - os._exit below would drop it unsaid
                _cannot_start(request, exc, (2,))
            finally:
                try:
                    _exit_handlers()
                finally:
                    os._exit(code)
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(f"pid {pid}\n".encode())
        except OSError:  # the client died after asking: nobody waits for this run
            conn.close()
            self.orphaned[pid] = time.monotonic()
            _signal_group(pid, signal.SIGTERM)
            return
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)
        print(f"calmops runner: {_describe(request)} in process {pid}", flush=True)
        if engine:
            self._prepare(request["env"])

    def _prepare(self, env: dict[str, str]) -> None:
        """Set Prefect's settings and logging up here as a run with ``env`` needs them, once its child is on its
        way: the next runs (the worker hands every run the same environment) fork with it done. Redone only when
        the inputs change, so in practice once, after the first run."""
        if "prefect" not in sys.modules or settings_inputs(env, os.getcwd()) == self.prepared:
            return
        import threading

        from prefect.context import refresh_global_settings_context
        from prefect.logging.configuration import setup_logging

        own = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        self.prepared = None  # until done: a child forked meanwhile sets itself up
        try:
            refresh_global_settings_context()
            setup_logging(incremental=False)
            self.prepared = settings_inputs(env, os.getcwd())
        except Exception as exc:  # noqa: BLE001 - the runs set themselves up, as without preparing
            print(f"calmops runner: could not set Prefect up for the next runs ({exc})", file=sys.stderr, flush=True)
        finally:
            os.environ.clear()
            os.environ.update(own)
        if threading.active_count() != 1:
            raise RuntimeError(f"setting Prefect up started threads {threading.enumerate()}; "
                               "forking would not be safe")

    def _client_gone(self, conn: socket.socket, pid: int) -> None:
        """The client's end closed (or sent something) while its child runs: the worker killed it."""
        try:
            data = conn.recv(1)
        except OSError:
            data = b""
        if data:
            return
        self.selector.unregister(conn)
        conn.close()
        if self.children.pop(pid, None) is not None:
            self.orphaned[pid] = time.monotonic()
            _signal_group(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code  # killed by a signal: the shell's convention
            self.orphaned.pop(pid, None)
            conn = self.children.pop(pid, None)
            if conn is not None:
                self.selector.unregister(conn)
                try:
                    conn.sendall(f"exit {code}\n".encode())
                except OSError:
                    pass
                conn.close()

    def _kill_orphans(self) -> None:
        now = time.monotonic()
        for pid, since in list(self.orphaned.items()):
            if now - since > KILL_GRACE:
                _signal_group(pid, signal.SIGKILL)


def serve(path: Path | None = None) -> None:
    runner = Runner(path or socket_path())
    took = runner.warm()
    print(f"calmops runner: imported {', '.join(runner.preload)} in {took:.1f} s", flush=True)
    runner.serve()


USAGE = """usage: python -m calmops.deployments.warm serve    the warm runner (what 'calmops service runner' runs)
       python -m calmops.deployments.warm [ARGS]   a flow run's command (a Prefect worker gives ARGS, as to
                                                   'python -m prefect.engine'): run by the runner, else cold"""


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(USAGE)
    elif sys.argv[1:2] == ["serve"]:
        serve()
    else:
        sys.exit(run_client(sys.argv[1:]))
