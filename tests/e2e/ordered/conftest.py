"""One running stack for the modules of this package (arrival order and crash recovery): both need the watcher
to announce waiting files again soon (``reemit_after`` 10 s), and starting a stack costs a minute."""

from __future__ import annotations

import pytest

from tests.e2e.stack import running_stack


@pytest.fixture(scope="package")
def live(tmp_path_factory):
    """Prefect server, warm runner, worker and watcher on a private home (MLflow in a SQLite file)."""
    with running_stack(tmp_path_factory.mktemp("ordered") / "calmops", reemit_after=10,
                       forget_deployments=False) as home:
        yield home
