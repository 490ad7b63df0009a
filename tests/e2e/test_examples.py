"""Each docs/examples spec as a user runs it: ``calmops create`` (the real CLI, from another folder than the
repository) with the stack up, then the scenario's files dropped into the pipeline's incoming folder; the
watcher announces them, flow runs (which start in a temporary folder) apply the example's preprocess module
and make decisions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.stack import running_stack, until
from tests.e2e.test_file_arrival import ledger_done, mlflow_runs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {"gradual": "sea-gradual", "abrupt": "stagger-abrupt", "recurrent": "agrawal-recurrent"}
N_FILES = 2
DERIVED = {"sea-gradual": "x0_plus_x1", "agrawal-recurrent": "income"}  # columns the preprocess modules add


@pytest.fixture(scope="module")
def stack_up(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("examples") / "calmops") as home:
        yield home


def _decisions(pipeline: str) -> dict[str, str]:
    return {r["file"]: r["decision"] for r in mlflow_runs(pipeline) if r["file"] and r["decision"]}


def test_every_example_through_create_and_the_watcher(stack_up, tmp_path):
    from calmops.core.store import pipeline_paths, read_spec
    from calmops.generators import run_scenario

    elsewhere = tmp_path / "elsewhere"  # not the repository: the spec's relative paths must not depend on it
    elsewhere.mkdir()
    staged: dict[str, list[Path]] = {}
    for scenario, pipeline in EXAMPLES.items():
        created = subprocess.run(  # the command the example's header shows, from another folder
            [str(Path(sys.executable).parent / "calmops"), "create", str(REPO / "docs" / "examples" / f"{scenario}.yaml")],
            cwd=elsewhere, capture_output=True, text=True, timeout=300, check=False)
        assert created.returncode == 0, created.stderr
        spec = read_spec(pipeline)
        assert spec.preprocess == REPO / "docs" / "examples" / f"{scenario}_preprocess.py"
        result = run_scenario(scenario, tmp_path / "staging" / scenario, seed=0, n_files=N_FILES,
                              rows_per_file=400, fmt="csv", report=False)
        staged[pipeline] = result.files

    for pipeline, files in staged.items():  # dropped in whole (renamed into place), as a delivery would
        incoming = pipeline_paths(read_spec(pipeline)).incoming
        for f in files:
            os.replace(f, incoming / f.name)

    for pipeline, files in staged.items():
        names = [f.name for f in files]
        until(lambda p=pipeline, n=names: set(n) <= set(_decisions(p)), 900, f"decisions for {pipeline}", 2)
        decisions = _decisions(pipeline)
        # every file decided through the watcher, none failed or refused (the first model may miss its
        # thresholds on 400 rows: that is a decision too)
        assert not {d for d in decisions.values() if d in ("failed", "rejected_input")}, decisions
        until(lambda p=pipeline, n=names: set(n) <= set(ledger_done(p)), 120, f"{pipeline}'s ledger", 2)
        from calmops.core import registry

        registry.configure()
        champion = registry.champion(pipeline)
        if pipeline in DERIVED and champion is not None:  # the preprocess module ran: its column is an input
            assert DERIVED[pipeline] in champion.schema.columns
