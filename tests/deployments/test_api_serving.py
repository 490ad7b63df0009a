"""The prediction API as it is served: uvicorn's access log lasts, and a prediction costs one registry call."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from calmops.deployments.api import create_app
from tests.conftest import sea_frame, write_csv
from tests.e2e.stack import free_port, stop
from tests.flows.helpers import incoming, run

pytestmark = pytest.mark.integration

RECORDS = [{"x1": 1.5, "x2": 7.2, "x3": 3.0}]


@pytest.fixture
def trained(prefect_server, stream_spec):
    """Pipeline 'sea' with champion v1."""
    outcome = run("sea", write_csv(sea_frame(1000, 8, seed=1), incoming("sea"), "a.csv"))
    assert outcome["champion_version"] == 1
    return stream_spec


def _wait_up(proc: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            httpx.get(f"{base}/health", timeout=2)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)


def test_access_log_goes_on_after_the_champion_is_loaded(trained, calmops_home, tmp_path):
    """`calmops serve` as the stack runs it (output to a log file): requests after the first prediction, which
    loads the champion from MLflow, still get their access lines."""
    port, log = free_port(), tmp_path / "api.log"
    env = {**os.environ, "CALMOPS_HOME": str(calmops_home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("calmops")), "serve", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(proc, base, log)
        assert httpx.get(f"{base}/pipelines/sea", timeout=60).json()["champion_version"] == 1
        resp = httpx.post(f"{base}/pipelines/sea/predict", json={"records": RECORDS}, timeout=60)
        assert resp.status_code == 200, resp.text
        for i in range(3):
            assert httpx.get(f"{base}/health?later={i}", timeout=10).status_code == 200
        assert httpx.post(f"{base}/pipelines/sea/predict?later=1", json={"records": RECORDS},
                          timeout=60).status_code == 200
    finally:
        stop(proc)
    text = log.read_text()
    for line in ('"GET /pipelines/sea HTTP/1.1" 200', '"POST /pipelines/sea/predict HTTP/1.1" 200',
                 *(f'"GET /health?later={i} HTTP/1.1" 200' for i in range(3)),
                 '"POST /pipelines/sea/predict?later=1 HTTP/1.1" 200'):
        assert line in text, f"no access line {line} in:\n{text}"


def _in_a_fresh_process(script: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``script`` in a new Python process on CalmOps home ``home`` (its own local stores); it must succeed."""
    env = {**os.environ, "CALMOPS_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_app_made_after_uvicorn_configured_logging_keeps_its_access_log(calmops_home):
    """As with `uvicorn --factory`: the server sets up its loggers first, then the app is made (in a fresh
    process, where Prefect has not configured logging yet)."""
    script = ("import logging, logging.config, uvicorn.config\n"
              "logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)\n"
              "access = logging.getLogger('uvicorn.access')\n"
              "before = (access.level, list(access.handlers), access.propagate)\n"
              "import sys; assert 'prefect' not in sys.modules\n"
              "from calmops.deployments.api import create_app\n"
              "create_app()\n"
              "assert 'prefect' in sys.modules\n"
              "assert (access.level, list(access.handlers), access.propagate) == before, access\n"
              "assert access.isEnabledFor(logging.INFO)\n")
    _in_a_fresh_process(script, calmops_home)


def _count_registry_calls(monkeypatch) -> Counter:
    """Every call into the real registry store (what a REST client sends as one request each), counted."""
    from mlflow import MlflowClient

    store = type(MlflowClient()._get_registry_client().store)
    calls: Counter = Counter()

    def counted(name, method):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return method(*args, **kwargs)
        return wrapper

    for name in dir(store):
        method = getattr(store, name)
        if not name.startswith("_") and callable(method) and not isinstance(method, type):
            monkeypatch.setattr(store, name, counted(name, method))
    return calls


def test_a_prediction_costs_one_registry_call(trained, monkeypatch):
    client = TestClient(create_app())
    calls = _count_registry_calls(monkeypatch)
    first = client.post("/pipelines/sea/predict", json={"records": RECORDS})
    assert first.status_code == 200 and first.json()["model_version"] == 1, first.text
    assert calls["get_model_version_by_alias"] == 1  # the spy sees the real store
    calls.clear()
    for _ in range(5):
        assert client.post("/pipelines/sea/predict", json={"records": RECORDS}).json()["model_version"] == 1
    assert calls == Counter(get_model_version_by_alias=5)
    calls.clear()
    assert client.get("/pipelines").json()["pipelines"][0]["champion_version"] == 1
    assert calls == Counter(get_model_version_by_alias=1)


def test_serve_pools_a_connection_per_route_thread():
    """MLflow's HTTP pool is sized for the threads FastAPI runs the routes in (docs/api.md)."""
    import anyio
    import anyio.to_thread

    from calmops.deployments.api_cli import ROUTE_THREADS

    async def threads():
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert anyio.run(threads) == ROUTE_THREADS
    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    assert f"MLFLOW_HTTP_POOL_MAXSIZE={ROUTE_THREADS}" in doc


def test_concurrent_predictions_of_a_forest_do_not_flood_the_log_and_other_warnings_still_show(calmops_home):
    """Requests are served by threads; scikit-learn's Parallel (a forest's predict) clears the warning filters
    for an instant in every task, and a Parallel started meanwhile in another thread warned once per tree that
    ``delayed`` was used without ``Parallel``: thousands of lines in api.log. In a fresh process, as served."""
    script = ("import sys, threading, warnings, numpy as np\n"
              "from sklearn.ensemble import RandomForestClassifier\n"
              "from calmops.deployments.api import create_app\n"
              "create_app()\n"
              "X = np.random.default_rng(0).random((300, 4)); y = (X[:, 0] > .5).astype(int)\n"
              "forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)\n"
              "def work():\n"
              "    for _ in range(400): forest.predict_proba(X[:5])\n"
              "threads = [threading.Thread(target=work) for _ in range(8)]\n"
              "[t.start() for t in threads]; [t.join() for t in threads]\n"
              "warnings.warn('another warning, still shown', UserWarning)\n")
    done = _in_a_fresh_process(script, calmops_home, timeout=300)
    assert "should be used with" not in done.stderr, done.stderr.count("should be used with")
    assert "another warning, still shown" in done.stderr
