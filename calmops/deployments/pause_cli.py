"""``calmops pause`` and ``calmops resume``: stop deciding a pipeline's files for a while, without deleting it
(:mod:`calmops.core.pause`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from calmops.deployments.console import JsonOption


def register(app: typer.Typer) -> None:
    from calmops.deployments.console import _print_json, friendly

    @app.command("pause")
    @friendly
    def pause(
        name: Annotated[str, typer.Argument(help="The pipeline.")],
        reason: Annotated[str, typer.Option("--reason", help="Why, shown by status and in the watcher's log.")] = "",
        as_json: Annotated[bool, JsonOption] = False,
    ):
        """Stop deciding a pipeline's files until 'calmops resume': they wait where they arrived, in order."""
        from rich.markup import escape

        from calmops.core import pause as pauses
        from calmops.deployments.console import console

        _known(name)
        made, now = pauses.pause(name, reason.strip())
        if as_json:
            return _print_json({"pipeline": name, "paused": asdict(made), "was_paused": not now})
        if not now:
            console.print(f"{escape(made.said(name))} (nothing changed)", highlight=False)
            return None
        console.print(f"paused pipeline [bold]{name}[/]: its files wait where they arrived "
                      f"({pauses.waiting_places(name)}) until 'calmops resume {name}'; a run deciding a file now "
                      "finishes that file, and runs already queued decide none (they end Held)", highlight=False)
        return None

    @app.command("resume")
    @friendly
    def resume(
        name: Annotated[str, typer.Argument(help="The pipeline.")],
        as_json: Annotated[bool, JsonOption] = False,
    ):
        """Decide a paused pipeline's files again: the watcher announces those that waited, oldest first."""
        from rich.markup import escape

        from calmops.core import pause as pauses
        from calmops.core.settings import get_settings
        from calmops.deployments import stack
        from calmops.deployments.console import console

        _known(name)
        ended = pauses.resume(name)
        settings = get_settings()
        watching = bool(stack.running_pid(settings, "watcher") or stack.watcher_beats(settings))
        if as_json:
            return _print_json({"pipeline": name, "resumed": ended is not None,
                                "paused": asdict(ended) if ended else None, "watcher_running": watching})
        if ended is None:
            console.print(f"pipeline {name} was not paused (nothing changed)", highlight=False)
            return None
        then = "the watcher announces the files that waited within a few seconds, oldest first" if watching else (
            "no watcher runs on this host: 'calmops up' starts one, or 'calmops relaunch "
            f"{name}' announces the files that waited now")
        console.print(f"resumed pipeline [bold]{name}[/] (paused since {escape(ended.since)}); {then}",
                      highlight=False)
        return None


def _known(name: str) -> None:
    """Refuse an unknown pipeline by name; one whose spec does not read can be paused and resumed (the pause is
    in its folder, not in its spec)."""
    from calmops.core.store import list_pipelines, read_spec

    if name not in list_pipelines():
        read_spec(name)  # raises the error that names the pipelines there are
