"""Ready-made drifting scenarios written as files plus a report.

* ``gradual``: SEA concepts 0 → 1 → 2 → 3, each change a gradual transition (stream kind);
* ``abrupt``: STAGGER functions 0 → 1 → 2 switching at file boundaries (stream kind);
* ``recurrent``: Agrawal functions 0 and 2 alternating every 3 blocks (block kind, column ``block``).

Each has a matching pipeline spec and preprocessing module in ``docs/examples/``.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     result = run_scenario("abrupt", d, n_files=3, rows_per_file=60)
...     [p.name for p in result.files], result.report.name
(['abrupt_0001.csv', 'abrupt_0002.csv', 'abrupt_0003.csv'], 'report.html')
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .files import write_files
from .report import write_report
from .synthetic import DriftSpec, Timestamps, synthetic

__all__ = ["SCENARIOS", "Scenario", "ScenarioResult", "run_scenario", "scenario_data"]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    generator: str
    kind: str  # pipeline kind the scenario is meant for
    drift: Callable[[int, int], DriftSpec]  # (n_files, rows_per_file) -> drift
    block_column: str | None = None
    blocks_per_file: int = 1


def _gradual(n_files: int, rows: int) -> DriftSpec:
    total = n_files * rows
    return DriftSpec("gradual", position=[round(total * k / 4) for k in (1, 2, 3)],
                     width=max(2, total // 10), concepts=(0, 1, 2, 3))


def _abrupt(n_files: int, rows: int) -> DriftSpec:
    if n_files < 3:
        return DriftSpec("abrupt", position=max(1, n_files * rows // 2), concepts=(0, 1))
    return DriftSpec("abrupt", position=[rows * round(n_files * k / 3) for k in (1, 2)], concepts=(0, 1, 2))


def _recurrent(n_files: int, rows: int) -> DriftSpec:
    return DriftSpec("recurrent", period=3, unit="blocks", concepts=(0, 2))


SCENARIOS: dict[str, Scenario] = {
    "gradual": Scenario("gradual", "SEA concepts 0→1→2→3 with gradual transitions", "sea", "stream", _gradual),
    "abrupt": Scenario("abrupt", "STAGGER functions 0→1→2 switching abruptly", "stagger", "stream", _abrupt),
    "recurrent": Scenario("recurrent", "Agrawal functions 0 and 2 alternating every 3 blocks", "agrawal",
                          "block", _recurrent, block_column="block", blocks_per_file=2),
}


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    files: list[Path]
    report: Path | None
    drift: DriftSpec
    data: pd.DataFrame


def _lookup(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def scenario_data(name: str, *, seed: int = 0, n_files: int = 10, rows_per_file: int = 500,
                  include_concept: bool = False, progress=None) -> tuple[pd.DataFrame, DriftSpec]:
    """The scenario's rows (all files together) and its drift."""
    sc = _lookup(name)
    if n_files < 1 or rows_per_file < 2:
        raise ValueError("need n_files >= 1 and rows_per_file >= 2")
    drift = sc.drift(n_files, rows_per_file)
    rows_per_block = rows_per_file // sc.blocks_per_file if sc.block_column else None
    if drift.kind == "recurrent":
        n_blocks = n_files * sc.blocks_per_file
        if n_blocks < 3:
            raise ValueError(f"the {name} scenario needs at least 3 blocks ({sc.blocks_per_file} per file) "
                             "for a concept to come back")
        if n_blocks < 3 * drift.period:  # small runs: shorter periods so the first concept still returns
            drift = DriftSpec("recurrent", period=max(1, n_blocks // 3), unit="blocks", concepts=drift.concepts)
    df = synthetic(sc.generator, n_files * rows_per_file, drift=drift, seed=seed,
                   timestamps=Timestamps(start="2024-01-01", freq="1min"), block_column=sc.block_column,
                   rows_per_block=rows_per_block, include_concept=include_concept, progress=progress)
    return df, drift


def _first_change(drift: DriftSpec, rows_per_block: int) -> int | None:
    """Row of the first concept change (the report's before/after split)."""
    scale = rows_per_block if drift.unit == "blocks" else 1
    if drift.period is not None:
        return drift.period * scale
    pos = drift.position
    if pos is None:
        return None
    return int((pos if isinstance(pos, (int, float)) else pos[0]) * scale)


def run_scenario(
    name: str,
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    n_files: int = 10,
    rows_per_file: int = 500,
    fmt: str = "csv",
    report: str | os.PathLike | bool = True,
    pace_seconds: float = 0.0,
    progress=None,
) -> ScenarioResult:
    """Write the scenario's files ``<name>_0001.<fmt>``, … into ``out_dir`` and its HTML report.

    ``report=True`` writes ``out_dir/report.html``; a path writes it there (use one outside a
    pipeline's incoming folder); ``False`` writes none.
    """
    sc = _lookup(name)
    df, drift = scenario_data(name, seed=seed, n_files=n_files, rows_per_file=rows_per_file,
                              include_concept=True, progress=progress)
    concept = df.pop("concept")
    files = write_files(df, out_dir, rows_per_file=rows_per_file, fmt=fmt, prefix=name, pace_seconds=pace_seconds)
    report_path = None
    if report:
        report_path = Path(out_dir) / "report.html" if report is True else Path(report)
        shown = df.assign(concept=concept)
        write_report(report_path, shown, title=f"Scenario {name}: {sc.description}", target="y",
                     time_column="timestamp", block_column=sc.block_column, truth="concept",
                     split=_first_change(drift, rows_per_file // sc.blocks_per_file),
                     notes={"scenario": name, "generator": sc.generator, "pipeline kind": sc.kind,
                            "seed": seed, "files": len(files), "rows_per_file": rows_per_file,
                            "drift": {k: v for k, v in drift.__dict__.items() if v is not None}})
    return ScenarioResult(name, files, report_path, drift, df)
