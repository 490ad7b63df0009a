"""What the command line shows while a long step works (calmops.deployments.console)."""

from __future__ import annotations

import io

from rich.console import Console

from calmops.deployments.console import working


def test_a_long_step_says_what_it_does_before_it_starts_also_where_no_spinner_draws():
    """`calmops up` starts each server behind a spinner; in a pipe, a log file or CI a spinner draws nothing, so
    a server that took two minutes to start on a loaded machine was two minutes of silence."""
    piped = io.StringIO()
    out = Console(file=piped, force_terminal=False, width=200)
    with working(out, "starting prefect…"):
        assert piped.getvalue() == "starting prefect…\n"  # said before the step, not after it
    terminal = io.StringIO()
    out = Console(file=terminal, force_terminal=True, width=200)
    with working(out, "starting prefect…"):
        pass
    assert "starting prefect" in terminal.getvalue()  # the spinner's line, cleared when done
