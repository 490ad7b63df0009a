"""One logging set-up: Prefect's run logger when inside a run, plus a rotating file per pipeline."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def printable(text: str) -> str:
    r"""``text`` with each character that is not printable (line breaks, ANSI's escape byte, other control and
    format characters) written the way ``repr`` writes it, so a file name read from disk can neither forge a log
    line nor colour a terminal. Printable text, non-ASCII letters included, is left as it is.

    >>> printable("evil\nname\x1b[31m.csv"), printable("données.csv")
    ('evil\\nname\\x1b[31m.csv', 'données.csv')
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _OneLine(logging.Formatter):
    """One record, one line: the message (with the names and reasons in it) goes through :func:`printable`."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def pipeline_logger(pipeline: str, logs_dir: Path) -> logging.Logger:
    """A logger writing to ``<pipeline>/logs/pipeline.log`` (rotated at 5 MB, 5 files kept)."""
    logger = logging.getLogger(f"calmops.pipeline.{pipeline}")
    logger.setLevel(logging.INFO)
    target = str((logs_dir / "pipeline.log").resolve())
    if not any(isinstance(h, RotatingFileHandler) and h.baseFilename == target for h in logger.handlers):
        for h in [h for h in logger.handlers if isinstance(h, RotatingFileHandler)]:
            logger.removeHandler(h)
            h.close()
        logs_dir.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(target, maxBytes=5_000_000, backupCount=5)
        handler.setFormatter(_OneLine(_FORMAT))
        logger.addHandler(handler)
    return logger


class RunLog:
    """Sends each message to the Prefect run logger (visible in the UI) and the pipeline's file, as one line
    (see :func:`printable`): the names and reasons in it come from files on disk."""

    def __init__(self, pipeline: str, logs_dir: Path):
        self.file = pipeline_logger(pipeline, logs_dir)
        try:
            from prefect import get_run_logger

            self.prefect = get_run_logger()
        except Exception:  # noqa: BLE001 - outside a flow run: file and stderr only
            self.prefect = logging.getLogger("calmops")

    def _log(self, level: int, msg: str, args: tuple) -> None:
        try:
            line = printable(str(msg) % args if args else str(msg))
        except (TypeError, ValueError, KeyError):  # a format that does not fit its args must not fail the run
            line = printable(f"{msg} {args!r}")
        self.file.log(level, "%s", line)
        self.prefect.log(level, "%s", line)

    def info(self, msg: str, *args) -> None:
        self._log(logging.INFO, msg, args)

    def warning(self, msg: str, *args) -> None:
        self._log(logging.WARNING, msg, args)

    def error(self, msg: str, *args) -> None:
        self._log(logging.ERROR, msg, args)


class _WithoutTraceback(logging.Formatter):
    """Formats a record as one line: its traceback stays on the record for the other handlers (file, API)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record).splitlines()[0]
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


_CLI_HANDLER_NAME = "calmops-cli"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message (it may be swapped, e.g. in tests)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        import sys

        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass
_QUIET = ("prefect.task_runs", "EventsWorker", "httpx", "httpcore", "alembic", "urllib3")


def _quiet(record: logging.LogRecord) -> bool:
    """Below errors, per-task chatter and the HTTP clients' lines stay out of a command's output."""
    return record.levelno >= logging.ERROR or not record.name.startswith(_QUIET)


def configure_cli_logging(debug: bool = False) -> None:
    """Console logging for one ``calmops`` command: every message once, on stderr, one line each.

    A single stderr handler on the root logger, installed before any library can call ``basicConfig``
    (frouros does on import, which printed each message a second time). Run messages show at INFO
    (Prefect's flow-run logger); libraries at WARNING; tracebacks only with ``debug``. The per-pipeline
    file logger does not propagate: its messages reach the console through the run logger already.
    """
    import os
    import sys

    root = logging.getLogger()
    if not any(h.get_name() == _CLI_HANDLER_NAME for h in root.handlers):
        for handler in list(root.handlers):
            if type(handler) is logging.StreamHandler:  # basicConfig's; test harnesses' handlers stay
                root.removeHandler(handler)
        handler = _StderrHandler()
        handler.set_name(_CLI_HANDLER_NAME)
        formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        handler.setFormatter(formatter if debug else _WithoutTraceback(formatter))
        if not debug:
            handler.addFilter(_quiet)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in ("prefect.flow_runs", "calmops"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("calmops.pipeline").propagate = False
    # Prefect would install its own console handlers when it loads: keep ours the only one
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "DEBUG" if debug else "INFO")
    os.environ.setdefault("PREFECT_LOGGING_ROOT_LEVEL", "DEBUG" if debug else "WARNING")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if debug else "WARNING")
    if not sys.stderr.isatty():  # progress bars belong on terminals, not in logs
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("TQDM_DISABLE", "1")
