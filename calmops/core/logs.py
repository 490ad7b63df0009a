"""One logging set-up: Prefect's run logger when inside a run, plus a rotating file per pipeline."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    return logger


class RunLog:
    """Sends each message to the Prefect run logger (visible in the UI) and the pipeline's file."""

    def __init__(self, pipeline: str, logs_dir: Path):
        self.file = pipeline_logger(pipeline, logs_dir)
        try:
            from prefect import get_run_logger

            self.prefect = get_run_logger()
        except Exception:  # noqa: BLE001 - outside a flow run: file and stderr only
            self.prefect = logging.getLogger("calmops")

    def info(self, msg: str, *args) -> None:
        self.file.info(msg, *args)
        self.prefect.info(msg, *args)

    def warning(self, msg: str, *args) -> None:
        self.file.warning(msg, *args)
        self.prefect.warning(msg, *args)

    def error(self, msg: str, *args) -> None:
        self.file.error(msg, *args)
        self.prefect.error(msg, *args)
