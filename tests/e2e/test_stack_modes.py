"""A model registered with the MLflow server of `calmops up` loads without it (SQLite store), and the other
way round: both modes read the same store and the same artifact files."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from calmops.deployments.cli import app
from tests.conftest import STREAM_SPEC, sea_frame, write_csv
from tests.e2e.stack import free_port, until

pytestmark = pytest.mark.e2e
runner = CliRunner()


def _use(tracking_uri: str | None, monkeypatch) -> None:
    from calmops.core import registry

    if tracking_uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry.configure()
    registry._load_version.cache_clear()


def _run(name: str, path) -> dict:
    result = runner.invoke(app, ["run", name, str(path), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # with an HTTP tracking server MLflow prints run links: not on stdout


def test_models_cross_between_the_stack_and_the_embedded_store(prefect_server, calmops_home, tmp_path, monkeypatch):
    from calmops.core.store import save_spec, spec_from_dict
    from calmops.deployments import stack

    data = tmp_path / "data"
    for name in ("down", "up"):
        save_spec(spec_from_dict(dict(STREAM_SPEC, name=name)), create=True)
    _use(None, monkeypatch)
    assert _run("down", write_csv(sea_frame(1000, 8, seed=1), data, "d1.csv"))["decision"] == "train"

    monkeypatch.setenv("CALMOPS_MLFLOW_PORT", str(free_port()))
    server = stack.start("mlflow", wait=600)
    try:
        _use(server.url, monkeypatch)
        later = _run("down", write_csv(sea_frame(1000, 8, seed=2), data, "d2.csv"))
        assert later["decision"] == "no_drift" and later["champion_version"] == 1, later["reason"]
        assert _run("up", write_csv(sea_frame(1000, 8, seed=3), data, "u1.csv"))["decision"] == "train"
    finally:
        stack.stop("mlflow")

    _use(None, monkeypatch)
    after = _run("up", write_csv(sea_frame(1000, 8, seed=4), data, "u2.csv"))
    assert after["decision"] == "no_drift" and after["champion_version"] == 1, after["reason"]


def settled_size(path, quiet: float = 1.0, timeout: float = 30) -> int:
    """The file's size once it has not grown for ``quiet`` seconds."""
    deadline, last = time.monotonic() + timeout, -1
    while (size := path.stat().st_size) != last and time.monotonic() < deadline:
        last = size
        time.sleep(quiet)
    return size


def test_a_quiet_file_costs_the_tracking_server_nine_requests(prefect_server, calmops_home, tmp_path, monkeypatch):
    """What a decision with nothing to retrain asks of the MLflow server `calmops up` starts, read from the
    server's own access log: open the file's run (the experiment by name, the run), read the champion (its alias,
    its version), log the batch as the run's input, then record the decision (one batch of params, tags and
    metrics; the run's artifact location; the run's end) and read the run's experiment for the decision's link
    in Prefect. Nine: each further read of the run would be a round trip per file to a remote tracking server."""
    import re

    from calmops.core.settings import get_settings
    from calmops.core.store import save_spec, spec_from_dict
    from calmops.deployments import stack

    save_spec(spec_from_dict(dict(STREAM_SPEC, name="quiet")), create=True)
    monkeypatch.setenv("CALMOPS_MLFLOW_PORT", str(free_port()))
    server = stack.start("mlflow", wait=600)
    try:
        _use(server.url, monkeypatch)
        monkeypatch.setenv("CALMOPS_MLFLOW_UI", server.url)  # as the stack sets it for its runs: links are made
        assert _run("quiet", write_csv(sea_frame(1000, 8, seed=1), tmp_path, "q1.csv"))["decision"] == "train"
        log = stack.log_file(get_settings(), "mlflow")
        start = settled_size(log)  # every request of the first file is in the log before the count starts
        quiet = _run("quiet", write_csv(sea_frame(1000, 8, seed=2), tmp_path, "q2.csv"))

        def requests_since() -> list[str]:
            text = log.read_bytes()[start:].decode(errors="replace")
            return [f"{verb} {path.removeprefix('/api/2.0/mlflow/')}"
                    for verb, path in re.findall(r'"(GET|POST|PATCH|PUT|DELETE) (/api/[^ ?]+)', text)]

        # the server writes each access line once it has answered: the run's end, then whatever follows it
        until(lambda: "POST runs/update" in requests_since(), 30, "the run's end in the MLflow server's access log")
        settled_size(log)
        asked = requests_since()
    finally:
        stack.stop("mlflow")

    assert quiet["decision"] == "no_drift", quiet["reason"]  # the champion's own concept
    assert asked[:2] == ["GET experiments/get-by-name", "POST runs/create"], asked  # the whole decision is read
    assert len(asked) <= 9, asked
    assert asked.count("GET runs/get") <= 2, asked  # the artifact location and the link; no read per step
