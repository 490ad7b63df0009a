"""What the benchmark scripts share besides the prequential harness (``harness.py``): their command line, the
temporary CALMOPS_HOME a script runs in, and where a run's results go.

Standard library only: a script imports it before it points CalmOps, Prefect or MLflow at its own home
(``harness.py`` imports CalmOps' tasks, and Prefect reads its settings when it is first imported).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
PUBLISHED = HERE / "results"  # the figures docs/benchmarks.md quotes, kept in git
SCRATCH = HERE / "out"  # runs that are not comparable with them (git-ignored)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The script's docstring as written, and every option's default after its help (not a flag's: off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is False else super()._get_help_string(action)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: its module docstring as the description, defaults shown in ``--help``."""
    return argparse.ArgumentParser(description=doc, formatter_class=HelpFormatter)


def add_keep(cli: argparse.ArgumentParser) -> None:
    """``--keep``: leave the temporary CALMOPS_HOME in place (see :func:`temp_home`)."""
    cli.add_argument("--keep", action="store_true",
                     help="keep the temporary CALMOPS_HOME (its path is printed) instead of removing it")


@contextmanager
def temp_home(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A new temporary folder (``/tmp/<prefix>…``) for the block, removed when the block ends, on failure
    and Ctrl-C too; with ``keep`` it stays and its path is printed. Whatever runs from it (servers) must be
    stopped inside the block."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield home
    finally:
        if keep:
            print(f"kept {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


def changed(cli: argparse.ArgumentParser, args: argparse.Namespace, *options: str) -> str:
    """The ``options`` (destinations, as ``args`` names them) set to other than their defaults, which the
    published figures were measured with, e.g. ``--sizes 2000 (not 10000,100000)``; empty when none is."""
    return ", ".join(f"--{o.replace('_', '-')} {getattr(args, o)} (not {cli.get_default(o)})" for o in options
                     if getattr(args, o) != cli.get_default(o))


def results_folder(*why_not: str) -> Path:
    """Where a run writes its results: ``bench/results/`` when it can stand for the published figures, else
    ``bench/out/`` (git-ignored), so a partial run never writes over them. Each non-empty ``why_not`` is a reason
    it cannot (e.g. ``--quick``); they are printed on stderr."""
    reasons = "; ".join(filter(None, why_not))
    folder = SCRATCH if reasons else PUBLISHED
    if reasons:
        print(f"results go to {folder}, not {PUBLISHED}: {reasons}", file=sys.stderr)
    folder.mkdir(exist_ok=True)
    return folder
