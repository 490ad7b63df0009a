"""One running stack for the modules of this package (arrival order, fair turns, crash recovery, stalled runs):
each needs the watcher to act soon (announce waiting files again after 10 s, call a run stalled after 60 s) and
turns that give way soon (after 10 s), and starting a stack costs a minute."""

from __future__ import annotations

import pytest

from tests.e2e.stack import running_stack

STALL_AFTER = 60  # seconds; the stall tests wait at least this long, the bursts never pause this long
TURN_BUDGET = 10  # seconds a run holds its pipeline's turn before it gives way to a pipeline waiting for a worker
WORKER_LIMIT = 2  # runs at once: two bursting pipelines take every slot, whatever the machine's cores


@pytest.fixture(scope="package")
def live(tmp_path_factory):
    """Prefect server, warm runner, worker and watcher on a private home (MLflow in a SQLite file)."""
    with running_stack(tmp_path_factory.mktemp("ordered") / "calmops", reemit_after=10,
                       stall_after=STALL_AFTER, forget_deployments=False,
                       env={"CALMOPS_TURN_BUDGET": str(TURN_BUDGET), "CALMOPS_WORKER_LIMIT": str(WORKER_LIMIT)}) as home:
        yield home
