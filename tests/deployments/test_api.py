"""The prediction API on a real MLflow store, with champions made by the real flow (Prefect harness)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from calmops.deployments.api import create_app
from tests.conftest import sea_frame, write_csv
from tests.e2e.stack import free_port, stop
from tests.flows.helpers import incoming, run

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


def _positive_data_acceptance():
    # Records are free-form objects in the schema (their columns depend on the pipeline's champion), so a
    # schema-valid body can still lack a column and get a 422: that check does not apply here.
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    return positive_data_acceptance


POSITIVE_DATA_ACCEPTANCE = _positive_data_acceptance()


def _train(name: str = "sea", theta: float = 8, seed: int = 1, file: str = "a.csv") -> dict:
    outcome = run(name, write_csv(sea_frame(1000, theta, seed=seed), incoming(name), file))
    return outcome


def _records(n: int = 5, seed: int = 7) -> list[dict]:
    frame = sea_frame(n, 8, seed=seed).drop(columns="y")
    return frame.to_dict(orient="records")


def _create_other(name: str) -> None:
    from calmops.core.store import save_spec, spec_from_dict
    from tests.conftest import STREAM_SPEC

    save_spec(spec_from_dict({**STREAM_SPEC, "name": name}), create=True)


@pytest.fixture
def trained(prefect_server, stream_spec):
    """Pipeline 'sea' with champion v1."""
    outcome = _train()
    assert outcome["decision"] == "train" and outcome["champion_version"] == 1
    return stream_spec


def test_predicts_with_champion_version_and_switches_after_promotion(trained):
    client = TestClient(create_app())
    records = _records(20)
    first = client.post("/pipelines/sea/predict", json={"records": records})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["pipeline"] == "sea" and body["model_version"] == 1
    assert len(body["predictions"]) == 20 and set(body["predictions"]) <= {0, 1}
    assert len(body["probabilities"]) == 20
    for proba in body["probabilities"]:
        assert set(proba) == {"0", "1"} and abs(sum(proba.values()) - 1) < 1e-9
    assert body["warnings"] == []
    # the predictions are the champion's own, on the same coercion as files
    from calmops.core import registry

    champ = registry.champion("sea")
    import pandas as pd

    expected = champ.model.predict(pd.DataFrame(records)[champ.schema.columns])
    assert body["predictions"] == [int(v) for v in expected]

    # numbers as strings are coerced as in files; extra fields are ignored with a warning
    mixed = [{"x1": "1.5", "x2": 2, "x3": None, "y": 1, "note": "hi"}]
    resp = client.post("/pipelines/sea/predict", json={"records": mixed})
    assert resp.status_code == 200, resp.text
    assert resp.json()["warnings"] and "note" in resp.json()["warnings"][0] and "y" in resp.json()["warnings"][0]

    listing = client.get("/pipelines").json()["pipelines"]
    assert listing == [{"name": "sea", "kind": "stream", "champion_version": 1, "task": "classification",
                        "input_columns": ["x1", "x2", "x3"], "paused": None, "problem": None}]
    detail = client.get("/pipelines/sea").json()
    assert detail["champion_version"] == 1 and detail["target"] == "y" and detail["classes"] == [0, 1]
    assert [c["name"] for c in detail["columns"]] == ["x1", "x2", "x3"]
    assert {c["feature_type"] for c in detail["columns"]} == {"numeric"}
    assert client.post("/pipelines/sea/predict", json=detail["example_request"]).status_code == 200

    # paused ('calmops pause'): listed and described as paused, with since when and why; predictions go on
    from calmops.core import pause

    made, _ = pause.pause("sea", "upstream export under review")
    said = {"since": made.since, "reason": "upstream export under review"}
    assert client.get("/pipelines").json()["pipelines"][0]["paused"] == said
    assert client.get("/pipelines/sea").json()["paused"] == said
    assert client.post("/pipelines/sea/predict", json={"records": records}).json()["model_version"] == 1
    pause.resume("sea")
    assert client.get("/pipelines/sea").json()["paused"] is None
    # a pause file written by hand that does not read: paused all the same, said without the server's paths
    pause.pause_file("sea").write_bytes(b"caf\xe9")
    unreadable = {"since": "?", "reason": "its pause file does not read ('calmops status sea' on the server says why)"}
    assert client.get("/pipelines").json()["pipelines"][0]["paused"] == unreadable
    assert client.get("/pipelines/sea").json()["paused"] == unreadable
    pause.resume("sea")

    # a promotion happens elsewhere; the same app serves the new champion on the next request
    second = _train(theta=9.5, seed=2, file="b.csv")
    assert second["decision"] == "retrain_promoted" and second["champion_version"] == 2
    after = client.post("/pipelines/sea/predict", json={"records": records})
    assert after.status_code == 200 and after.json()["model_version"] == 2
    assert client.get("/pipelines").json()["pipelines"][0]["champion_version"] == 2
    # and a rollback too
    registry.rollback("sea")
    assert client.post("/pipelines/sea/predict", json={"records": records}).json()["model_version"] == 1


def test_the_example_request_holds_values_the_champion_was_trained_on(prefect_server, calmops_home):
    """A user's first request, copied from GET /pipelines/NAME, gets a prediction from typical values: each
    number's median, each category's most frequent value (not a placeholder the model never saw)."""
    import numpy as np
    import pandas as pd

    from calmops.core.store import save_spec, spec_from_dict
    from tests.conftest import STREAM_SPEC

    save_spec(spec_from_dict({**STREAM_SPEC, "name": "shop", "feature_types": {
        "colour": "categorical", "member": "boolean", "seen": "datetime"}}), create=True)
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame({
        "amount": rng.gamma(2.0, 37.0, n),
        "colour": rng.choice(["red", "green", "blue"], n, p=[0.2, 0.5, 0.3]),
        "member": rng.choice(["False", "True"], n, p=[0.7, 0.3]),
        "seen": pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 90 * 86400, n), unit="s"),
    })
    frame["y"] = ((frame["amount"] > 60) ^ (frame["colour"] == "green")).astype(int)
    frame["seen"] = frame["seen"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run("shop", write_csv(frame, incoming("shop"), "a.csv"))["decision"] == "train"

    client = TestClient(create_app())
    example = client.get("/pipelines/shop").json()["example_request"]
    median_seen = pd.to_datetime(frame["seen"], utc=True).astype("int64").median() / 1e9
    assert example == {"records": [{
        "amount": float(f"{frame['amount'].median():.3g}"), "colour": "green", "member": False,
        "seen": pd.Timestamp(median_seen, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")}]}
    answer = client.post("/pipelines/shop/predict", json=example)
    assert answer.status_code == 200 and not answer.json()["warnings"], answer.text


def _shop(name: str, colours: list[str], file: str) -> None:
    """A pipeline trained on one file whose label depends on a categorical column ``colour`` (a missing
    ``colour``, "NA" in a CSV file, flips it as ``colours[0]`` does)."""
    import numpy as np
    import pandas as pd

    from calmops.core.store import save_spec, spec_from_dict
    from tests.conftest import STREAM_SPEC

    save_spec(spec_from_dict({**STREAM_SPEC, "name": name, "feature_types": {"colour": "categorical"}}),
              create=True)
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"amount": rng.gamma(2.0, 37.0, 800), "colour": rng.choice(colours, 800)})
    frame["y"] = ((frame["amount"] > 60) ^ frame["colour"].isin([colours[0], "NA"])).astype(int)
    if file.endswith(".parquet"):
        frame.to_parquet(incoming(name) / file)
        path = incoming(name) / file
    else:
        path = write_csv(frame, incoming(name), file)
    assert run(name, path)["decision"] == "train"


def test_a_category_written_as_a_file_writes_a_missing_cell_is_missing_as_in_a_file(prefect_server, calmops_home):
    """In a CSV file "NA" (or "NULL", "None", …) is a missing cell; sent as a category to the API it is read the
    same way, said in the warnings, so a row copied from a file gets the file's prediction. A champion that learnt
    such a text as a category (a Parquet file keeps it as text) keeps it as that category."""
    _shop("shop", ["green", "red", "blue", "NA"], "a.csv")
    client = TestClient(create_app())

    def answer(colour):
        got = client.post("/pipelines/shop/predict", json={"records": [{"amount": a, "colour": colour}
                                                                         for a in (20.0, 55.0, 90.0)]})
        assert got.status_code == 200, got.text
        return got.json()

    missing, written = answer(None), answer("NA")
    assert written["probabilities"] == missing["probabilities"]
    assert written["warnings"] == [("read as missing values, as a file's cells: records[0].colour, "
                                    "records[1].colour, records[2].colour (a text such as 'NA' or 'NULL' that the "
                                    "model never saw as a category; send null for a missing value)")]
    assert answer("NULL")["probabilities"] == missing["probabilities"]
    unseen = answer("purple")  # any other text is a category (one the model did not see)
    assert unseen["warnings"] == [] and unseen["probabilities"] != missing["probabilities"]
    blank = answer("   ")  # blank, as a cell of spaces in a file: missing, as documented, without a warning
    assert blank["warnings"] == [] and blank["probabilities"] == missing["probabilities"]
    raw = '{"records": [{"amount": 20.0, "colour": NaN}, {"amount": 55.0, "colour": "red"}]}'  # JSON's NaN
    nan = client.post("/pipelines/shop/predict", content=raw, headers={"Content-Type": "application/json"}).json()
    assert nan["probabilities"][0] == missing["probabilities"][0]  # missing, as null is, and said
    assert nan["warnings"] == ["JSON NaN read as a missing value: records[0].colour (send null for a missing value)"]

    # "NULL" learnt as a category, the one that flips the label (encoded between the other two, where a missing
    # value, unknown to the model, is not)
    _shop("tags", ["NULL", "Amber", "zinc"], "a.parquet")
    tags = client.post("/pipelines/tags/predict", json={"records": [{"amount": 20.0, "colour": "NULL"},
                                                                    {"amount": 20.0, "colour": None}]}).json()
    assert tags["warnings"] == []
    assert tags["predictions"][0] != tags["predictions"][1]  # the category decides, unlike a missing value

    # the model's own encoder is asked too (a profile built from a later batch alone may not hold the text)
    from calmops.core import registry
    from calmops.deployments.api import prepare_records

    champ = registry.champion("tags")
    X, warnings = prepare_records([{"amount": 20.0, "colour": "NULL"}], champ.schema, None, champ.model)
    assert X["colour"].tolist() == ["NULL"] and warnings == []


def test_json_nan_in_a_category_or_a_block_column_is_missing_and_said():
    """JSON NaN is no category: read as a missing value and named in the warnings, in a block pipeline's block
    column too (whose text is otherwise kept as sent); text beyond a float is said so only when written as a
    number a file would read."""
    from types import SimpleNamespace

    from calmops.core.registry import InputSchema
    from calmops.deployments.api import InvalidInput, prepare_records

    schema = InputSchema(columns=["site", "colour", "x"], dtypes={}, task="classification", target="y",
                         feature_types={"site": "categorical", "colour": "categorical", "x": "numeric"})
    block_model = SimpleNamespace(block_column="site")
    X, warnings = prepare_records([{"site": float("nan"), "colour": float("nan"), "x": 1},
                                   {"site": "NA", "colour": "red", "x": 2}], schema, None, block_model)
    assert X["site"].isna().tolist() == [True, False] and X["site"].iloc[1] == "NA"  # a block's name as sent
    assert X["colour"].isna().tolist() == [True, False]
    assert warnings == [("JSON NaN read as a missing value: records[0].site, records[0].colour (send null for a "
                        "missing value)")]
    with pytest.raises(InvalidInput) as refused:
        prepare_records([{"site": "a", "colour": "b", "x": "1_0e400"}, {"site": "a", "colour": "b", "x": "-1.5E400"}],
                        schema, None, block_model)
    assert [m for _, m, _ in refused.value.errors] == [
        "expected a number, got '1_0e400'",  # not a number a file's cell would read
        "expected a finite number, got '-1.5E400', a number beyond ±1.8e308 (send null for a missing value)"]


def test_invalid_payloads_get_422_naming_the_field(trained):
    client = TestClient(create_app())

    def errors(payload, **kwargs):
        resp = client.post("/pipelines/sea/predict", **({"json": payload} if payload is not None else {}), **kwargs)
        assert resp.status_code == 422, resp.text
        return resp.json()

    records = _records(5)
    del records[3]["x2"]
    body = errors({"records": records})
    assert body["errors"] == [{"field": "records[3].x2", "message": "field required", "value": None}]
    assert "records[3].x2" in body["detail"]

    records = _records(5)
    records[1]["x1"] = "abc"
    records[4]["x3"] = "-Infinity"
    body = errors({"records": records})
    assert [e["field"] for e in body["errors"]] == ["records[1].x1", "records[4].x3"]
    assert body["errors"][0]["value"] == "abc" and "'abc'" in body["errors"][0]["message"]
    assert body["errors"][1]["message"] == \
        "expected a finite number, got '-Infinity' (send null for a missing value)"  # said as NaN is

    records = _records(2)
    records[0]["x1"] = [1, 2]
    body = errors({"records": records})
    assert body["errors"][0]["field"] == "records[0].x1" and "got an array" in body["errors"][0]["message"]
    assert body["errors"][0]["value"] == "[1, 2]"  # what was sent, as its JSON text
    records[0]["x1"] = {"amount": "x" * 300}
    refused = errors({"records": records})["errors"][0]
    assert refused["value"].startswith('{"amount": "xxx') and len(refused["value"]) == 100  # shortened

    records = _records(2)
    records[1]["x2"] = 10**400  # valid JSON, but no float holds it
    body = errors({"records": records})
    assert body["errors"][0]["field"] == "records[1].x2"
    assert body["errors"][0]["message"] == \
        "expected a finite number, got a number beyond ±1.8e308 (send null for a missing value)"

    # every value that is no finite number is said alike, JSON's or text, with the value as it was sent
    raw = ('{"records": [{"x1": NaN, "x2": 1, "x3": 1}, {"x1": Infinity, "x2": 1e400, "x3": 1}, '
           '{"x1": "NaN", "x2": "1e400", "x3": "-Infinity"}]}')
    said = {e["field"]: (e["message"].removeprefix("expected a finite number, got ")
                         .removesuffix(" (send null for a missing value)"), e["value"])
            for e in errors(None, content=raw, headers={"Content-Type": "application/json"})["errors"]}
    assert said == {"records[0].x1": ("NaN", "NaN"),
                    "records[1].x1": ("Infinity (or a number beyond ±1.8e308)", "Infinity"),
                    "records[1].x2": ("Infinity (or a number beyond ±1.8e308)", "Infinity"),  # JSON read it so
                    "records[2].x1": ("'NaN'", "NaN"),
                    "records[2].x2": ("'1e400', a number beyond ±1.8e308", "1e400"),
                    "records[2].x3": ("'-Infinity'", "-Infinity")}

    assert errors({"records": []})["errors"] == [
        {"field": "records", "message": "expected at least one record (an empty array has nothing to predict)",
         "value": "[]"}]
    bad_name = client.post("/pipelines/Bad_Name/predict", json={"records": _records(1)})
    assert bad_name.status_code == 422 and bad_name.json()["errors"] == [
        {"field": "name", "value": "Bad_Name", "message": "not a pipeline name: lowercase letters, digits and '-', "
         "starting with a letter, at most 63 characters (GET /pipelines lists the names)"}]
    assert errors({"rows": _records(1)})["errors"][0]["field"] in ("records", "rows")
    # shapes are said in JSON's words (what was expected and what came), not the validation library's
    assert errors({"records": [1, 2]})["errors"][0] == {
        "field": "records[0]", "message": "expected a record (a JSON object of column: value), got a number",
        "value": 1}
    for sent, got in (({"x1": 1}, "an object"), ("abc", "a string"), (None, "null")):
        said = errors({"records": sent})["errors"][0]
        assert said["field"] == "records" and said["message"] == \
            f"expected an array of records (a JSON object per row), got {got}", said
    resp = client.post("/pipelines/sea/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "body"
    resp = client.post("/pipelines/sea/predict", content=b"x1=1", headers={"content-type": "text/plain"})
    assert resp.status_code == 422 and "Content-Type: application/json" in resp.json()["detail"]
    # an invalid pipeline name is refused before any file is looked up (no path traversal)
    resp = client.post("/pipelines/..%2Fsecret/predict", json={"records": _records(1)})
    assert resp.status_code in (404, 422)


def test_unknown_pipeline_404_and_no_champion_409(prefect_server, stream_spec):
    client = TestClient(create_app())
    resp = client.post("/pipelines/nope/predict", json={"records": _records(1)})
    assert resp.status_code == 404
    assert "nope" in resp.json()["detail"] and "sea" in resp.json()["detail"]
    assert resp.json()["known_pipelines"] == ["sea"]
    assert client.get("/pipelines/nope").status_code == 404

    resp = client.post("/pipelines/sea/predict", json={"records": _records(1)})
    assert resp.status_code == 409
    assert "no champion" in resp.json()["detail"] and "train" in resp.json()["detail"]
    detail = client.get("/pipelines/sea").json()
    assert detail["champion_version"] is None and detail["columns"] is None and "train" in detail["message"]
    assert client.get("/pipelines").json()["pipelines"][0]["champion_version"] is None

    health = client.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "mlflow_reachable": True,
                                                             "detail": None}


def test_a_pipeline_whose_spec_does_not_parse_answers_a_json_503_naming_the_file(calmops_home, stream_spec):
    spec_file = calmops_home / "pipelines" / "sea" / "spec.yaml"
    with spec_file.open("a") as fh:
        fh.write("target: [oops\n")
    client = TestClient(create_app(), raise_server_exceptions=False)
    for resp in (client.get("/pipelines/sea"), client.post("/pipelines/sea/predict", json={"records": _records(1)})):
        assert resp.status_code == 503, resp.text
        body = resp.json()
        assert str(spec_file) in body["detail"] and "not valid YAML" in body["detail"]
        assert "'sea'" in body["detail"]
        assert "fix the spec" in body["hint"] and "calmops status sea" in body["hint"]
    # the list still shows it, with its problem, beside the others
    listed = client.get("/pipelines").json()["pipelines"]
    assert [p["name"] for p in listed] == ["sea"] and "not valid YAML" in listed[0]["problem"]


def test_registry_down_is_503_not_409(calmops_home, stream_spec, monkeypatch):
    import mlflow

    original = mlflow.get_tracking_uri()
    nowhere = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", nowhere)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    try:
        client = TestClient(create_app())
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert health.json()["mlflow_reachable"] is False
        # said plainly, with the address: not the HTTP client's URL message cut before its cause
        assert health.json()["detail"] == (
            f"the MLflow tracking server at {nowhere} does not answer (connection refused); start it (`calmops up` "
            "starts the local stack's), or set MLFLOW_TRACKING_URI to the address of the one that runs")
        resp = client.post("/pipelines/sea/predict", json={"records": _records(1)})
        assert resp.status_code == 503 and "registry is unavailable" in resp.json()["detail"]
        assert "does not answer (connection refused)" in resp.json()["detail"]
    finally:
        mlflow.set_tracking_uri(original)


@pytest.fixture
def fake_mlflow():
    """Start a server that answers as an MLflow server would: its /health says OK (MLflow's does not touch its
    database), every API call answers ``status`` with ``body``; returns its address."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    servers = []

    def start(status: int, body: bytes) -> str:
        class Answering(BaseHTTPRequestHandler):
            def do_GET(self):
                ok = self.path == "/health"
                self.send_response(200 if ok else status)
                self.send_header("Content-Length", str(2 if ok else len(body)))
                self.end_headers()
                self.wfile.write(b"OK" if ok else body)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def database_down(fake_mlflow):
    """An MLflow server whose database is down: /health OK, every API call a 503."""
    return fake_mlflow(503, b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "connection refused"}')


def test_health_is_degraded_when_the_mlflow_server_answers_but_its_database_does_not(calmops_home, database_down,
                                                                                      monkeypatch):
    """MLflow's own /health answers without its database: with its PostgreSQL down it says OK while every
    registry call fails with a 503. GET /health asks the registry too, and says what it answered."""
    import mlflow

    original = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", database_down)
    try:
        health = TestClient(create_app()).get("/health")
        assert health.status_code == 503 and health.json()["mlflow_reachable"] is False, health.json()
        assert health.json()["detail"] == (f"the MLflow server at {database_down} answers 503 to a registry query: "
                                           "connection refused")
    finally:
        mlflow.set_tracking_uri(original)


@pytest.mark.parametrize("status, body", [(401, b'{"error_code": "UNAUTHENTICATED"}'), (403, b"null")])
def test_health_is_ok_when_the_registry_answers_but_asks_for_credentials(calmops_home, fake_mlflow, monkeypatch,
                                                                        status, body):
    """Credentials the MLflow client takes from a file or a TLS setting are not the probe's to send: a registry
    that answers 401 or 403 is reachable, not an outage (and an answer whose JSON is no object is no crash)."""
    import mlflow

    original = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fake_mlflow(status, body))
    try:
        health = TestClient(create_app()).get("/health")
    finally:
        mlflow.set_tracking_uri(original)
    assert health.status_code == 200 and health.json()["status"] == "ok", health.json()


def test_a_registry_error_whose_body_is_no_json_object_is_said_not_raised(calmops_home, fake_mlflow, monkeypatch):
    import mlflow

    original = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fake_mlflow(500, b'["boom"]'))
    try:
        health = TestClient(create_app()).get("/health")
    finally:
        mlflow.set_tracking_uri(original)
    assert health.status_code == 503 and "answers 500 to a registry query" in health.json()["detail"], health.json()


def test_the_registry_outage_is_said_in_the_same_words_for_every_pipeline(trained, database_down, monkeypatch):
    """The first request that meets the outage fails on its own model's URL; what every pipeline is told while
    the outage lasts must not name that model (a pipeline was told another pipeline's URL)."""
    import mlflow

    from calmops.core.store import save_spec, spec_from_dict

    save_spec(spec_from_dict({**trained.model_dump(mode="json", exclude_none=True), "name": "other"}), create=True)
    client = TestClient(create_app())
    assert client.post("/pipelines/sea/predict", json={"records": _records(2)}).status_code == 200
    original = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(database_down)
    try:
        served = client.post("/pipelines/sea/predict", json={"records": _records(2)})
        never = client.post("/pipelines/other/predict", json={"records": _records(2)})
    finally:
        mlflow.set_tracking_uri(original)
    (said,) = served.json()["warnings"]
    assert never.status_code == 503 and "answers 503 to a registry query" in never.json()["detail"], never.json()
    assert "calmops.sea" not in said + never.json()["detail"], (said, never.json()["detail"])


def test_while_the_registry_is_down_the_last_champion_loaded_goes_on_answering(trained, monkeypatch):
    """MLflow restarting must not stop predictions: the champion this server last loaded answers, with a
    warning that says so; the registry is not asked again (each ask waits for the client's retries) until
    the retry window has passed; a pipeline the server never served still gets the 503; once the registry
    answers, the alias is read again."""
    import mlflow

    from calmops.core import registry
    from calmops.core.store import save_spec, spec_from_dict
    from calmops.deployments import api

    save_spec(spec_from_dict({**trained.model_dump(mode="json", exclude_none=True), "name": "other"}), create=True)
    asked = []
    real_alias = registry.alias_model_version
    monkeypatch.setattr(registry, "alias_model_version", lambda *a, **k: asked.append(a) or real_alias(*a, **k))
    monkeypatch.setattr(api, "REGISTRY_RETRY_SECONDS", 3.0)
    client = TestClient(create_app())
    body = {"records": _records(4)}
    first = client.post("/pipelines/sea/predict", json=body).json()
    assert first["model_version"] == 1 and first["warnings"] == []

    original = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    mlflow.set_tracking_uri(f"http://127.0.0.1:{free_port()}")
    try:
        asked.clear()
        down = client.post("/pipelines/sea/predict", json=body)
        assert down.status_code == 200, down.text
        assert down.json()["predictions"] == first["predictions"] and down.json()["model_version"] == 1
        (said,) = down.json()["warnings"]
        assert "model registry is unavailable" in said and "served champion v1" in said, said
        assert len(asked) == 1
        again = client.post("/pipelines/sea/predict", json=body)
        assert again.status_code == 200 and len(asked) == 1  # within the window: the registry is not asked
        assert client.get("/pipelines/sea").json()["message"].startswith("the model registry is unavailable")
        never = client.post("/pipelines/other/predict", json=body)
        assert never.status_code == 503 and "registry is unavailable" in never.json()["detail"]
    finally:
        mlflow.set_tracking_uri(original)
    time.sleep(3.2)  # the retry window passes
    back = client.post("/pipelines/sea/predict", json=body).json()
    assert back["warnings"] == [] and back["model_version"] == 1 and len(asked) == 2


def test_token_auth(calmops_home, stream_spec):
    client = TestClient(create_app(token=TOKEN))
    assert client.get("/health").status_code == 200  # stays open
    for method, path, kwargs in (("get", "/pipelines", {}), ("get", "/pipelines/sea", {}),
                                 ("post", "/pipelines/sea/predict", {"json": {"records": _records(1)}})):
        resp = getattr(client, method)(path, **kwargs)
        assert resp.status_code == 401, path
        assert resp.headers["www-authenticate"] == "Bearer" and "token" in resp.json()["detail"]
        wrong = getattr(client, method)(path, headers={"Authorization": "Bearer nope"}, **kwargs)
        assert wrong.status_code == 401
        basic = getattr(client, method)(path, headers={"Authorization": f"Basic {TOKEN}"}, **kwargs)
        assert basic.status_code == 401
        assert basic.json()["detail"] == "the Authorization header holds a Basic credential, not a bearer token"
    good = {"Authorization": f"Bearer {TOKEN}"}
    # without the token, a request says nothing about its body or parameters: 401 before any 422
    for path, body in (("/pipelines/sea/predict", b"not json"), ("/pipelines/sea/predict", b'{"records": [1,'),
                       ("/pipelines/sea/predict", b"\xff\xfe{}"), ("/pipelines/NOT_VALID/predict", b"{}"),
                       ("/pipelines/sea/predict", b'{"records": "x"}')):
        headers = {"Content-Type": "application/json"}
        assert client.post(path, content=body, headers=headers).status_code == 401, (path, body)
        assert client.post(path, content=body, headers={**headers, **good}).status_code == 422, (path, body)
    for body in (b"\xe9t\xe9", b'{"records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        said = client.post("/pipelines/sea/predict", content=body, headers={"Content-Type": "application/json", **good})
        assert said.status_code == 422 and "body: could not be parsed as JSON (not UTF-8 text, or nested too deep" \
            in said.json()["detail"], said.text
    assert client.get("/pipelines", headers=good).status_code == 200
    assert client.post("/pipelines/sea/predict", json={"records": _records(1)}, headers=good).status_code == 409
    schema = client.get("/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    # without a token configured, no auth is asked for
    assert TestClient(create_app()).get("/pipelines").status_code == 200
    # a token no HTTP client would send as it is (non-ASCII, a space) is refused at start, never silently unmatched
    for unusable in ("tökén-ünïcode", "two words", "tab\there"):
        with pytest.raises(ValueError, match="the API token holds a space, a control character or a letter outside"):
            create_app(token=unusable)
    punctuated = TestClient(create_app(token="p@ss!word#1:%,"))  # visible ASCII goes through every client
    assert punctuated.get("/pipelines", headers={"Authorization": "Bearer p@ss!word#1:%,"}).status_code == 200
    # a header without a scheme may be the secret itself: it is never repeated in the answer
    bare = client.get("/pipelines", headers={"Authorization": TOKEN})
    assert bare.status_code == 401 and TOKEN not in bare.text and "holds no scheme" in bare.json()["detail"]
    glued = client.get("/pipelines", headers={"Authorization": f"Bearer:{TOKEN}"})
    assert glued.status_code == 401 and TOKEN not in glued.text


def test_request_size_limit_413(calmops_home, stream_spec):
    client = TestClient(create_app(max_request_bytes=2_000, max_records=10))
    big = {"records": [{"x1": 1.0, "x2": 2.0, "x3": 3.0, "pad": "x" * 100} for _ in range(50)]}
    resp = client.post("/pipelines/sea/predict", json=big)
    assert resp.status_code == 413 and "2000" in resp.json()["detail"]
    four_oh_four = client.get("/pipelines/nope")  # written like every other answer's body
    assert resp.content.startswith(b'{"detail":"') and four_oh_four.content.startswith(b'{"detail":"')

    # without Content-Length (chunked): the body is counted as it arrives
    def chunks():
        for _ in range(30):
            yield b" " * 100

    resp = client.post("/pipelines/sea/predict", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    # a Content-Length that lies low does not get more through
    payload = json.dumps(big).encode()
    resp = client.post("/pipelines/sea/predict", content=payload,
                       headers={"content-type": "application/json", "content-length": "10"})
    assert resp.status_code in (400, 413)

    small_but_many = {"records": [{"x1": 1, "x2": 2, "x3": 3}] * 11}
    resp = client.post("/pipelines/sea/predict", json=small_but_many)
    assert resp.status_code == 413 and "11 records" in resp.json()["detail"]
    # under the limits, the request goes through to the usual answers
    assert client.post("/pipelines/sea/predict", json={"records": _records(2)}).status_code == 409


def test_openapi_schema_is_complete(calmops_home):
    schema = TestClient(create_app(token=TOKEN)).get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) == {"/health", "/pipelines", "/pipelines/{name}", "/pipelines/{name}/predict"}
    predict = paths["/pipelines/{name}/predict"]["post"]
    assert {"200", "401", "404", "409", "413", "422"} <= set(predict["responses"])
    assert predict["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("PredictRequest")
    assert "security" not in paths["/health"]["get"] and predict["security"]
    for name in ("PredictRequest", "PredictResponse", "PipelineList", "PipelineDetail", "ValidationOut"):
        assert name in schema["components"]["schemas"]


def test_fuzz_openapi_schema_no_server_errors(trained):
    """schemathesis generates requests from the OpenAPI schema (valid and invalid ones); none may produce
    a 5xx or a response that breaks the schema."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    app = create_app(token=TOKEN, max_request_bytes=50_000, max_records=200)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen: dict[int, int] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        # free path parameters, and the real pipeline so that the model itself gets fuzzed records
        fixed = [None, {"name": "sea"}] if "{name}" in operation.path else [None]
        for mode in GenerationMode:
            for path_parameters in fixed:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

                @settings(max_examples=30, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def fuzz(case):
                    response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                                      excluded_checks=[POSITIVE_DATA_ACCEPTANCE])
                    seen[response.status_code] = seen.get(response.status_code, 0) + 1

                try:
                    fuzz()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing to make invalid (e.g. GET /health)
    # and records with the right columns but any JSON values, straight at the model
    from hypothesis import strategies as st

    value = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                      st.sampled_from(["1.5", " 2 ", "", "nan", "inf", "1e999", "0x10", "true"]))
    record = st.fixed_dictionaries({c: value for c in ("x1", "x2", "x3")},
                                   optional={"extra": value, "y": value})
    client = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(records=st.lists(record, min_size=1, max_size=20))
    def fuzz_records(records):
        response = client.post("/pipelines/sea/predict", json={"records": records})
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code in (200, 422), response.text
        if response.status_code == 200:
            assert len(response.json()["predictions"]) == len(records)
        else:
            assert all(e["field"].startswith("records[") for e in response.json()["errors"])

    fuzz_records()
    print(f"fuzzing: {sum(seen.values())} requests, status counts {seen}, {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 60
    assert not [code for code in seen if code >= 500]
    assert seen.get(200, 0) > 0 and seen.get(422, 0) > 0 and seen.get(404, 0) > 0


def test_calmops_serve_real_server(trained, calmops_home):
    port = free_port()
    exe = Path(sys.executable).with_name("calmops")
    env = {**os.environ, "CALMOPS_HOME": str(calmops_home), "CALMOPS_API_TOKEN": TOKEN}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{base}/pipelines", timeout=10).status_code == 401
        resp = httpx.post(f"{base}/pipelines/sea/predict", json={"records": _records(3)}, headers=auth, timeout=60)
        assert resp.status_code == 200, resp.text
        assert resp.json()["model_version"] == 1 and len(resp.json()["predictions"]) == 3
        too_big = httpx.post(f"{base}/pipelines/sea/predict", content=b" " * 10_000_001, headers=auth, timeout=30)
        assert too_big.status_code == 413
        # bound to loopback only
        listening = [line for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]
        assert listening and all(line.split()[1].startswith("0100007F:") for line in listening)
    finally:
        stop(proc)
    assert proc.returncode is not None


@pytest.mark.parametrize("args, value, said", [
    (["--token-env", "s3cr3t-abc123"], None, "Invalid value for --token-env: give the name of an environment variable"),
    (["--token-env", "deadbeef0s3cr3t"], None, "Invalid value for --token-env: give the name of an environment variable"),
    (["--token-env", "MY_TOKEN"], "tökén-ünïcode", "error: $MY_TOKEN: the API token holds a space, a control"),
])
def test_serve_refuses_a_token_it_could_never_match_without_echoing_it(calmops_home, args, value, said):
    """The token itself given to --token-env (auth would silently be off) and a token no client sends as it is
    are refused at start; the secret is not printed."""
    env = {**os.environ, "CALMOPS_HOME": str(calmops_home)}
    if value is not None:
        env["MY_TOKEN"] = value
    done = subprocess.run([str(Path(sys.executable).with_name("calmops")), "serve", "--port", str(free_port()),
                           *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode in (1, 2) and said in output, output
    assert "s3cr3t" not in output and "tökén" not in output


def test_docs_and_index_work_offline(calmops_home):
    """/docs loads Swagger UI from the API itself (no CDN), and the API's root URL answers."""
    client = TestClient(create_app(token=TOKEN))
    index = client.get("/")
    assert index.status_code == 200 and index.json()["docs"] == "/docs"
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page.text)
    assert assets and all(a.startswith("/") for a in assets), assets  # nothing from another host
    for asset in assets:
        assert client.get(asset).status_code == 200 and len(client.get(asset).content) > 1000


def test_a_block_pipelines_example_request_names_a_block_the_champion_has_a_model_for(prefect_server,
                                                                                      calmops_home):
    """The block column is not in the champion's reference profile: the example names one of its trained blocks
    (a placeholder such as "" or 0.0 would take the route for blocks never seen)."""
    from tests.flows.test_block_flow import BLOCKS, block_frame, create

    create("sites")
    assert run("sites", write_csv(block_frame(300, seed=1), incoming("sites"), "m1.csv"))["decision"] == "train"
    client = TestClient(create_app())
    example = client.get("/pipelines/sites").json()["example_request"]
    assert example["records"][0]["site"] in BLOCKS
    answer = client.post("/pipelines/sites/predict", json=example)
    assert answer.status_code == 200 and not answer.json()["warnings"], answer.text
