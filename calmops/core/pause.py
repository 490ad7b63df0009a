"""A paused pipeline: nothing announces its files (the watcher, a turn that gives way, ``calmops relaunch``), and a
run that was queued before the pause decides no file once it sees it (labels files included); files keep arriving and wait in the
incoming folder, in the ledger's arrival order, until ``calmops resume``. Predictions through the API go on.

The pause is a small file in the pipeline's folder (``paused.json``: since when, and why), so every process on
every host that shares the pipeline folders sees the same thing, and deleting the pipeline takes it along.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from calmops.core.settings import Settings, get_settings
from calmops.core.store import aside, read_spec, write_new

PAUSE_FILE = "paused.json"


@dataclass(frozen=True)
class Pause:
    since: str  # ISO 8601, UTC, to the second
    reason: str = ""

    def said(self, pipeline: str) -> str:
        """For people: ``paused since … (why); 'calmops resume NAME' …``."""
        why = f" ({self.reason})" if self.reason else ""
        return (f"pipeline {pipeline} has been paused since {self.since}{why}; its files wait where they arrived "
                f"({waiting_places(pipeline)}) until 'calmops resume {pipeline}'")


def waiting_places(pipeline: str) -> str:
    """Where a paused pipeline's files wait: its incoming folder, and its labels folder when its labels come
    later (spec ``labels``; a spec that does not read names the incoming folder only)."""
    try:
        later = read_spec(pipeline).labels is not None
    except Exception:  # noqa: BLE001 - the wording only: a spec being mended is said elsewhere
        later = False
    return "its incoming folder, labels files its labels folder" if later else "its incoming folder"


def pause_file(pipeline: str, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).pipeline_dir(pipeline) / PAUSE_FILE


def paused(pipeline: str, settings: Settings | None = None) -> Pause | None:
    """The pipeline's pause, None while it is not paused. A pause file that does not read (written by hand,
    damaged) still pauses: stopping on purpose is the safer reading."""
    return paused_in(pause_file(pipeline, settings))


def paused_in(path: Path, shown: Path | None = None) -> Pause | None:
    """The pause ``path`` holds (None when there is no such file); a problem names the file as ``shown``."""
    shown = shown or path
    try:
        text = path.read_text()
    except FileNotFoundError:
        if path.is_symlink():  # a link to nothing: there, but it does not read
            return Pause(since="?", reason=f"{shown} is a link to a file that does not exist; delete it to resume")
        return None
    except OSError as exc:
        return Pause(since="?", reason=f"{shown} cannot be read: {exc.strerror or exc}")
    except ValueError:  # not UTF-8
        return Pause(since="?", reason=f"{shown} does not read as a pause; delete it to resume")
    try:
        data = json.loads(text)
        return Pause(since=str(data["since"]), reason=str(data.get("reason") or ""))
    except (ValueError, KeyError, TypeError):
        return Pause(since="?", reason=f"{shown} does not read as a pause; delete it to resume")


def pause(pipeline: str, reason: str = "", settings: Settings | None = None) -> tuple[Pause, bool]:
    """Pause the pipeline; returns its pause and whether this call paused it (a pipeline paused already, also by
    another call at the same moment, keeps its first time and reason)."""
    path = pause_file(pipeline, settings)
    while True:  # again only when a resume took the pause away between the two steps
        made = Pause(since=datetime.now(UTC).isoformat(timespec="seconds"), reason=reason)
        if write_new(path, json.dumps(asdict(made)) + "\n"):
            return made, True
        if (current := paused_in(path)) is not None:
            return current, False


def resume(pipeline: str, settings: Settings | None = None) -> Pause | None:
    """End the pipeline's pause; returns the pause that ended (the one this call took away, also when another
    call paused or resumed at the same moment), None when it was not paused."""
    path = pause_file(pipeline, settings)
    taken = aside(path, "ending")
    try:
        os.replace(path, taken)  # one call takes it; whatever pause is written after stays
    except FileNotFoundError:
        return None
    try:
        return paused_in(taken, shown=path)
    finally:
        taken.unlink(missing_ok=True)
