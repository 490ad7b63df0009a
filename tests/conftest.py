"""Shared fixtures: a private CALMOPS_HOME and MLflow store per test, one Prefect test server per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")
# What the commands print is read by the tests as a pipe reads it: a COLUMNS, LINES or FORCE_COLOR of the shell
# that runs the tests (a CI runner's, a terminal's) would fold long paths at its width; a test that wants a width
# sets COLUMNS itself.
for _name in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
    os.environ.pop(_name, None)


# ``pytest -n 2`` (pytest-xdist; what ``make test`` runs): the two longest units start first, one on each worker:
# the production stack's module (its 200-file test alone takes 13 minutes or more) and the arrival-order package
# (its modules share one stack, so they run as one unit, one after another); then the other production modules;
# then every other module as a unit of its own, the end-to-end modules (each starts its own stack) last, so they
# overlap the long units' tail.
FIRST = ("tests/production/test_production_stack.py", "tests/e2e/ordered/", "tests/production/")
ONE_UNIT = "tests/e2e/ordered/"
OWN_STACK = ("tests/e2e/",)


def _turn(nodeid: str) -> int:
    for i, prefix in enumerate(FIRST):
        if nodeid.startswith(prefix):
            return i
    return len(FIRST) + nodeid.startswith(OWN_STACK)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):  # an xdist worker; a single process keeps the plain collection order
        items.sort(key=lambda item: _turn(item.nodeid))  # stable: each module keeps its own order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class LongestFirst(LoadScopeScheduling):
        """Work units in collection order: the arrival-order package as one unit, every other module as one."""

        def __init__(self, config, log=None):
            super().__init__(config, log)
            config.option.loadscopereorder = False

        def _split_scope(self, nodeid: str) -> str:
            return ONE_UNIT if nodeid.startswith(ONE_UNIT) else nodeid.split("::")[0]

    return LongestFirst(config, log)


@pytest.fixture(scope="session")
def prefect_server():
    """Prefect's in-process test harness (a real API on a temporary SQLite database)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


class PostgresServer:
    """A throwaway PostgreSQL server started by the project's own script (``scripts/postgres.sh``)."""

    script = Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"

    def __init__(self, data: Path, port: int):
        self.data, self.port = data, port

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://calmops@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        import subprocess

        subprocess.run(["bash", str(self.script), "start", str(self.data), str(self.port)], check=True,
                       capture_output=True, timeout=300)

    def stop(self) -> None:
        import subprocess

        subprocess.run(["bash", str(self.script), "stop", str(self.data)], check=False, capture_output=True,
                       timeout=120)


@pytest.fixture(scope="session")
def postgres():
    """Debian's PostgreSQL in a temporary folder for the session (never assumed running). Databases
    ``prefect``, ``mlflow`` and ``calmops``, role ``calmops``."""
    import shutil
    import tempfile

    from tests.e2e.stack import free_port

    folder = Path(tempfile.mkdtemp(prefix="calmops-pg-"))
    folder.chmod(0o755)  # the server runs as the postgres user, which must reach its data folder
    server = PostgresServer(folder / "data", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def calmops_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "calmops"
    monkeypatch.setenv("CALMOPS_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from calmops.core import registry
    from calmops.core.settings import get_settings

    registry.configure(get_settings())
    registry._load_version.cache_clear()
    registry._load_selection.cache_clear()
    yield home
    _forget_breakers(home)


def _forget_breakers(home: Path) -> None:
    """Breaker Blocks live in the session's Prefect server: remove this test's so none leaks into the next."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # no Prefect server in this test session: nothing was stored
        return
    from calmops.core.store import list_pipelines

    for name in [*list_pipelines(), "race"]:
        _forget_breaker(name)


def _forget_breaker(name: str) -> None:
    from prefect.settings import PREFECT_API_URL

    from calmops.core.breaker import delete_breaker

    if not PREFECT_API_URL.value():
        return
    try:
        delete_breaker(name)
    except Exception:  # noqa: BLE001, S110 - cleanup must not mask the test's own result
        pass


def sea_frame(n: int, theta: float, seed: int, noise: float = 0.0) -> pd.DataFrame:
    """SEA concepts: three uniform features on [0, 10], label = x1 + x2 <= theta."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 10, size=(n, 3))
    y = (X[:, 0] + X[:, 1] <= theta).astype(int)
    if noise:
        flip = rng.random(n) < noise
        y = np.where(flip, 1 - y, y)
    return pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "y": y})


def sea_mid_change(n: int, seed: int, before: float, after: float, old_share: float = 0.3) -> pd.DataFrame:
    """A SEA file caught in the middle of a gradual change: ``old_share`` of its rows, spread through the file,
    still at θ ``before``, the rest at θ ``after`` (the two concepts alternate, as they do while a change is under
    way, so the file's last rows are as mixed as the rest)."""
    old, new = sea_frame(n, before, seed=seed), sea_frame(n, after, seed=seed + 1)
    is_old = np.zeros(n, dtype=bool)
    is_old[np.random.default_rng(seed + 2).choice(n, size=int(old_share * n), replace=False)] = True
    return new.where(~pd.Series(is_old), old)


def write_csv(frame: pd.DataFrame, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    frame.to_csv(path, index=False)
    return path


STREAM_SPEC = {
    "name": "sea",
    "kind": "stream",
    "target": "y",
    "model": {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 6, "random_state": 0}},
    "evaluation": {"primary_metric": "accuracy", "thresholds": {"accuracy": {"min": 0.7}}},
    # no scheduled refresh and no follow-up: in the tests built on this spec, decisions come from the drift signals
    # alone (the refresh has tests of its own in tests/tasks/test_promotion.py, the follow-up in
    # tests/flows/test_follow_up.py)
    "retrain": {"mode": "full", "refresh_growth": None, "follow_up": False},
    "breaker": {"max_failures": 2, "cooldown_seconds": 0.5, "max_cooldown_seconds": 5},
}


@pytest.fixture
def stream_spec(calmops_home):
    """A created stream pipeline on SEA data; returns its spec."""
    from calmops.core.store import save_spec, spec_from_dict

    spec = spec_from_dict(dict(STREAM_SPEC))
    _forget_breaker("sea")  # other test modules (e.g. the viewer's) use the same name on the same server
    save_spec(spec, create=True)
    return spec


@pytest.fixture(autouse=True)
def _consoles_made_per_test():
    """The command consoles are made once a process, from the environment of their first use (COLUMNS, a
    terminal or not): one made while a test set COLUMNS would fold every later test's long lines at that width.
    Each test gets consoles made from its own environment, as a new `calmops` process does."""
    yield
    import sys

    consoles = sys.modules.get("calmops.deployments.console")
    if consoles is not None:
        for name in ("console", "err"):
            vars(consoles).pop(name, None)
