"""What every command shares: the consoles, one-line errors with a hint (``friendly``) and ``--json`` output.

Each command module (cli.py and the *_cli.py modules) imports these from here, so no module of the CLI
imports another one back.

``console`` (stdout) and ``err`` (stderr) are made on first use (``from calmops.deployments.console import
console`` inside a command body): importing rich.console is a good part of ``calmops --help``, which prints
nothing through them. Neither replaces ``:name:`` codes with emoji, so names, paths and specs print as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    console: Console
    err: Console

_CONSOLE_OPTIONS: dict[str, dict[str, Any]] = {"console": {}, "err": {"stderr": True}}
_state: dict[str, Any] = {"debug": False, "json_out": None, "json_printed": False}

#: The ``--json`` flag of every command that has one.
JsonOption = typer.Option("--json", help="Print exactly one JSON document on stdout; logs and messages go to stderr.")


def __getattr__(name: str) -> Any:
    """``console`` and ``err``, made once on first access (PEP 562)."""
    if name not in _CONSOLE_OPTIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _made(name)


def _made(name: str) -> Console:
    if name not in globals():
        from rich.console import Console

        made = Console(emoji=False, **_CONSOLE_OPTIONS[name])
        # into a file or a pipe, a name or a path stays on its line (unless COLUMNS asks for a width), also when
        # FORCE_COLOR makes rich treat the pipe as a terminal (CI systems set it for colours, not for folding)
        made.soft_wrap = not _is_tty(made.file) and not os.environ.get("COLUMNS")
        globals()[name] = made
    return globals()[name]


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream
        return False


def print_table(table: Table, **kwargs: Any) -> None:
    """Print a table on stdout with no name or value cut short (rich would end a cell that does not fit with
    '…', and two names that share a beginning would read the same). A cell that does not fit folds onto the
    next line; when stdout is not a terminal (a pipe, a file, CI), where the width is only COLUMNS or rich's
    80, the table takes the width its cells need instead, so every name and value stays on one line (and no line
    ends in the spaces that pad it to that width)."""
    from rich.console import Console
    from rich.measure import Measurement

    out = _made("console")
    for column in table.columns:
        column.overflow = "fold"
    if out.is_terminal:
        out.print(table, **kwargs)
        return
    needed = Measurement.get(out, out.options.update_width(1 << 16), table).maximum
    if needed > out.width:
        out = Console(emoji=False, file=out.file, width=needed)
    with out.capture() as captured:  # rich pads the title and blank lines to the width: not into a file
        out.print(table, **kwargs)
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def working(out: Console, text: str) -> Any:
    """Say what a long step is doing while it works: a spinner beside ``text``, cleared when done, in a terminal;
    elsewhere (a pipe, a log file, CI, also with ``FORCE_COLOR``; a ``TERM=dumb`` terminal), where a spinner
    draws nothing or a frame per tick, ``text`` once as a line before it starts, so a slow step (a server
    starting on a loaded machine) is not a silent wait."""
    if out.is_interactive and _is_tty(out.file):
        return out.status(text)
    out.print(text, highlight=False)
    return contextlib.nullcontext()


def progress_bars(out: Console) -> Any:
    """Progress bars for long work: rich's, cleared when done, in a terminal; elsewhere (a pipe, a log file, CI),
    where those draw nothing until the end, one plain line each time a count moves (``files processed by the
    stack: 5/24``). Both take ``add_task(description, total=)``, ``advance(task)`` and
    ``update(task, completed=)``."""
    if out.is_terminal:
        from rich.progress import Progress

        return Progress(console=out, transient=True)
    return _ProgressLines(out)


class _ProgressLines(contextlib.AbstractContextManager):
    def __init__(self, out: Console):
        self.out, self.tasks = out, []

    def __exit__(self, *_: object) -> None:
        return None

    def add_task(self, description: str, total: int) -> int:
        self.tasks.append([description, total, 0])
        return len(self.tasks) - 1

    def advance(self, task: int, advance: int = 1) -> None:
        self.update(task, completed=self.tasks[task][2] + advance)

    def update(self, task: int, completed: int) -> None:
        description, total, before = self.tasks[task]
        if completed != before:
            self.tasks[task][2] = completed
            self.out.print(f"{description}: {completed}/{total}", highlight=False)


class CliError(Exception):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


def friendly(fn: Callable | None = None, *, servers: tuple[str, ...] = ()) -> Callable:
    """Turn errors into one line plus a hint, exit code 1 (2 for usage problems); the traceback with --debug.

    With ``--json`` everything but the JSON document goes to stderr (MLflow, for one, prints to stdout).
    ``servers`` names the servers whose state the command reads or changes (``prefect``: breakers, deployments;
    ``mlflow``: models, runs): it is refused when the configuration puts that state in PostgreSQL and the server is
    out of reach
    (:func:`calmops.core.environment.servers_out_of_reach`), instead of acting on empty local stores.
    """
    if fn is None:
        return lambda f: friendly(f, servers=servers)

    def prepared(*args, **kwargs):
        from calmops.core.environment import prepare, servers_out_of_reach

        prepare()
        if servers and (missing := servers_out_of_reach(servers)):
            raise CliError(f"the stack is down: {' and '.join(missing)}; the configuration keeps "
                           f"{'their' if len(missing) > 1 else 'its'} state in its own database, which this "
                           "command does not open by itself",
                           "start it with 'calmops up' (or the services under PM2/systemd), or on a host without "
                           "them set PREFECT_API_URL and MLFLOW_TRACKING_URI to the running servers")
        return fn(*args, **kwargs)

    @wraps(fn)
    def wrapper(*args, **kwargs):
        from calmops.core.logs import configure_cli_logging

        configure_cli_logging(debug=_state["debug"])
        if not kwargs.get("as_json"):
            return _guarded(prepared, *args, **kwargs)
        _state["json_out"], _state["json_printed"] = sys.stdout, False
        try:
            with contextlib.redirect_stdout(sys.stderr):
                return _guarded(prepared, *args, **kwargs)
        finally:
            _state["json_out"] = None

    return wrapper


def _guarded(fn: Callable, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort, KeyboardInterrupt, typer.BadParameter):
        raise  # Typer's own: a bad argument is said with the usage line, exit code 2
    except BrokenPipeError:  # the reader went away (`calmops status | head`): nothing is wrong, nothing more to say
        _quiet_stdout()
        raise typer.Exit(0) from None
    except Exception as exc:
        if known := known_error(exc):
            _fail(*known)
        if _state["debug"]:
            raise
        _fail(f"{type(exc).__name__}: {one_line(exc)}", "run again with 'calmops --debug …' for the traceback")


def known_error(exc: BaseException) -> tuple[str, str, int] | None:
    """(message, hint, exit code) of an error a command refuses with on purpose (a bad spec, configuration or
    file, an unknown pipeline), as the commands say it: one line and a hint, no traceback. None for anything else
    (a bug or an outside failure, whose traceback helps). The warm runner's children say them the same way."""
    from calmops.core import statedb
    from calmops.core.errors import BadInput
    from calmops.core.settings import ConfigError
    from calmops.core.spec import SpecError
    from calmops.core.store import PipelineExists, PipelineNotFound

    if isinstance(exc, CliError):
        return str(exc), exc.hint, 1
    if isinstance(exc, BadInput):
        return str(exc), exc.hint or "give the path of one regular data file", 2
    if isinstance(exc, ConfigError):
        return str(exc), exc.hint or ("fix the configuration file (calmops.toml, or the file CALMOPS_CONFIG names); "
                                      "docs/production.md lists every setting"), 2
    if isinstance(exc, SpecError):
        return str(exc), "fix the spec and try again; see docs/spec.md for every key", 2
    if isinstance(exc, PipelineNotFound):
        return str(exc), "see 'calmops list', or create it with 'calmops create SPEC.yaml'", 1
    if isinstance(exc, PipelineExists):
        return str(exc), "use 'calmops update NAME SPEC.yaml' to change it", 1
    if statedb.unreachable(exc):
        return (f"the state database does not answer ({type(exc).__name__}: {one_line(exc)})",
                ("start it, or mend state_database_url (docs/production.md); files wait in incoming meanwhile, "
                "nothing is lost"), 1)
    return None


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail on the closed pipe again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test runner's buffer)
        pass


def one_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _fail(message: str, hint: str = "", code: int = 1):
    from rich.markup import escape

    err = _made("err")
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        err.print(f"[dim]hint: {escape(hint)}[/]", highlight=False, soft_wrap=True)
    if _state["json_out"] and not _state.get("json_printed"):  # --json: stdout still holds one document
        _print_json({"error": message, "hint": hint or None, "exit_code": code})
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    out = _state["json_out"] or sys.stdout
    _state["json_printed"] = True
    out.write(json.dumps(data, indent=2, default=str) + "\n")
    out.flush()
