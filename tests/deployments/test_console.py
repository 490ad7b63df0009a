"""What the command line shows while a long step works (calmops.deployments.console)."""

from __future__ import annotations

import io

from rich.console import Console

from calmops.deployments.console import working


def test_a_long_step_says_what_it_does_before_it_starts_also_where_no_spinner_draws():
    """`calmops up` starts each server behind a spinner; in a pipe, a log file or CI a spinner draws nothing, so
    a server that took two minutes to start on a loaded machine was two minutes of silence."""
    for colours in (False, True):  # FORCE_COLOR (CI sets it) makes rich take a pipe for a terminal
        piped = io.StringIO()
        out = Console(file=piped, force_terminal=colours, width=200)
        with working(out, "starting prefect…"):
            assert piped.getvalue().endswith("starting prefect…\n"), piped.getvalue()  # said before the step
        assert piped.getvalue().count("starting prefect") == 1  # once: no spinner frames in the log
