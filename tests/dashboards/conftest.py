"""A CALMOPS_HOME seeded once per module with real runs (4 SEA files, ~40 s), for the viewer's tests."""

from __future__ import annotations

import os

import pytest

from tests.dashboards.seed import point_at, seed_fake_kinds, seed_sea


@pytest.fixture(scope="module")
def seeded_home(prefect_server, tmp_path_factory):
    saved = {k: os.environ.get(k) for k in ("CALMOPS_HOME", "MLFLOW_TRACKING_URI")}
    home = tmp_path_factory.mktemp("viewer") / "calmops"
    point_at(home)
    outcomes = seed_sea(home)
    seed_fake_kinds()
    yield {"home": home, "outcomes": outcomes}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    from calmops.core import registry
    from calmops.core.settings import get_settings

    registry.configure(get_settings())


@pytest.fixture
def home(seeded_home, monkeypatch):
    """The seeded home for one test (env restored afterwards)."""
    monkeypatch.setenv("CALMOPS_HOME", str(seeded_home["home"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return seeded_home
