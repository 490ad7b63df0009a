"""A paused pipeline: nothing announces its files (the watcher, a turn that gives way, ``calmops relaunch``), and a
run that was queued before the pause decides no file once it sees it (labels files included); files keep arriving and wait in the
incoming folder, in the ledger's arrival order, until ``calmops resume``. Predictions through the API go on.

The pause is a small file in the pipeline's folder (``paused.json``: since when, and why), so every process on
every host that shares the pipeline folders sees the same thing, and deleting the pipeline takes it along.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from calmops.core.settings import Settings, get_settings
from calmops.core.store import write_atomic

PAUSE_FILE = "paused.json"


@dataclass(frozen=True)
class Pause:
    since: str  # ISO 8601, UTC, to the second
    reason: str = ""

    def said(self, pipeline: str) -> str:
        """For people: ``paused since … (why); 'calmops resume NAME' …``."""
        why = f" ({self.reason})" if self.reason else ""
        return (f"pipeline {pipeline} has been paused since {self.since}{why}; its files wait in its incoming "
                f"folder until 'calmops resume {pipeline}'")


def pause_file(pipeline: str, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).pipeline_dir(pipeline) / PAUSE_FILE


def paused(pipeline: str, settings: Settings | None = None) -> Pause | None:
    """The pipeline's pause, None while it is not paused. A pause file that does not read (written by hand,
    damaged) still pauses: stopping on purpose is the safer reading."""
    path = pause_file(pipeline, settings)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return Pause(since="?", reason=f"{path} cannot be read: {exc.strerror or exc}")
    try:
        data = json.loads(text)
        return Pause(since=str(data["since"]), reason=str(data.get("reason") or ""))
    except (ValueError, KeyError, TypeError):
        return Pause(since="?", reason=f"{path} does not read as a pause; delete it to resume")


def pause(pipeline: str, reason: str = "", settings: Settings | None = None) -> tuple[Pause, bool]:
    """Pause the pipeline; returns its pause and whether this call paused it (a pipeline paused already keeps its
    first time and reason)."""
    if (current := paused(pipeline, settings)) is not None:
        return current, False
    made = Pause(since=datetime.now(UTC).isoformat(timespec="seconds"), reason=reason)
    write_atomic(pause_file(pipeline, settings), json.dumps(asdict(made)) + "\n")
    return made, True


def resume(pipeline: str, settings: Settings | None = None) -> Pause | None:
    """End the pipeline's pause; returns the pause that ended, None when it was not paused."""
    current = paused(pipeline, settings)
    pause_file(pipeline, settings).unlink(missing_ok=True)
    return current
