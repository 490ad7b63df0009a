"""The hostile-input corpus: every folder of ``cases/`` is one case, run by the one test below.

A case folder holds its input (a data file, a spec, a formula, an API request body) and ``case.yaml``, the
expectation: ``kind`` (file, spec, formula, api, cli), the decision or status, and words the reason must
contain. Adding a case is adding a folder. ``{MARKER}`` in an input is replaced by the path of a file that
a payload would create if it ever ran; every case asserts that file does not exist afterwards.

File cases go through the real stream flow (Prefect's in-process harness, a real MLflow store) of one
pipeline trained once for the whole corpus; each asserts the decision and reason, the bytes kept (in
quarantine or processed), the champion and the registry unchanged, no ledger entry left pending or in
progress, and the breaker untouched (bad input is never a failure).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

CASES = Path(__file__).parent / "cases"
CASE_DIRS = sorted(p for p in CASES.iterdir() if (p / "case.yaml").exists())
PIPELINE = "hostile"
SPEC = {
    "name": PIPELINE,
    "kind": "stream",
    "target": "y",
    "id_columns": ["id"],
    "model": {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 6, "random_state": 0}},
    "evaluation": {"primary_metric": "accuracy", "thresholds": {"accuracy": {"min": 0.7}}},
    "retrain": {"mode": "full"},
    "breaker": {"max_failures": 1, "cooldown_seconds": 600},
}
FORMULA_START = re.compile(r"^[=+\-@\t\r]")

pytestmark = pytest.mark.integration


def test_the_corpus_is_large_enough():
    kinds = [yaml.safe_load((d / "case.yaml").read_text())["kind"] for d in CASE_DIRS]
    assert len(kinds) >= 60 and {"file", "spec", "formula", "api", "cli"} <= set(kinds)


class _Payload:
    """Unpickling this runs ``touch MARKER``: the proof that nothing unpickles input."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def shared(prefect_server, tmp_path_factory):
    """One stream pipeline with a champion, shared by every case (bad input must leave it as it is)."""
    from calmops.core import registry
    from calmops.core.settings import get_settings
    from calmops.core.store import pipeline_paths, read_spec, save_spec, spec_from_dict
    from calmops.flows import run_file
    from tests.conftest import _forget_breaker

    home = tmp_path_factory.mktemp("hostile") / "calmops"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALMOPS_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        # the corpus is about input, not the model's environment: skip MLflow's slow requirement inference
        import mlflow.models

        mp.setattr(mlflow.models, "infer_pip_requirements", lambda path, flavor, fallback=None: fallback or [])
        registry.configure(get_settings())
        registry._load_version.cache_clear()
        _forget_breaker(PIPELINE)
        save_spec(spec_from_dict(SPEC), create=True)
        paths = pipeline_paths(read_spec(PIPELINE))
        rng = np.random.default_rng(1)
        X = rng.uniform(0, 10, size=(1000, 3))
        frame = pd.DataFrame({"id": [f"t{i}" for i in range(1000)], "x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2],
                              "y": (X[:, 0] + X[:, 1] <= 8).astype(int)})
        first = paths.incoming / "train.csv"
        frame.to_csv(first, index=False)
        outcome, error = run_file(PIPELINE, first)
        assert error is None and outcome["decision"] == "train", outcome
        yield paths
        _forget_breaker(PIPELINE)


def _expect(case: Path) -> dict:
    return yaml.safe_load((case / "case.yaml").read_text())


def _input(case: Path, expect: dict, marker: Path) -> bytes:
    if expect.get("pickle"):
        return pickle.dumps(_Payload(marker))
    raw = (case / expect["input"]).read_bytes() if expect.get("input") else b""
    return raw.replace(b"{MARKER}", str(marker).encode())


@pytest.mark.parametrize("case", CASE_DIRS, ids=[d.name for d in CASE_DIRS])
def test_case(case, tmp_path, request):
    expect = _expect(case)
    marker = tmp_path / "PAYLOAD_RAN"
    runner = {"file": _file_case, "spec": _spec_case, "formula": _formula_case, "api": _api_case,
              "cli": _cli_case}[expect["kind"]]
    if expect["kind"] in ("file", "api", "cli"):
        runner(case, expect, marker, tmp_path, request.getfixturevalue("shared"))
    else:
        runner(case, expect, marker, tmp_path)
    assert not marker.exists(), "a payload in the input ran"


def _reason_ok(reason: str, expect: dict) -> None:
    for words in expect.get("reason", expect.get("error", [])):
        assert words in reason, (words, reason)
    for words in expect.get("not_in_reason", []):
        assert words not in reason, (words, reason)
    assert len(reason) <= expect.get("max_reason_chars", 1500), len(reason)
    assert not any(ord(c) < 32 and c != "\n" for c in reason), repr(reason)


# -- files, through the real flow ----------------------------------------------------------------


def _place(case: Path, expect: dict, marker: Path, tmp_path: Path, incoming: Path) -> tuple[Path, bytes | None]:
    setup = expect.get("setup")
    name = expect.get("name") or (f"{case.name}{Path(expect['input']).suffix}" if expect.get("input") else case.name)
    path = incoming / name
    if setup == "symlink":
        secret = tmp_path / "outside" / "secret.txt"
        secret.parent.mkdir()
        secret.write_bytes(_input(case, expect, marker))
        path = incoming / f"{case.name}.csv"
        path.symlink_to(secret)
        return path, None
    if setup == "dangling":
        path.symlink_to(tmp_path / "nowhere.csv")
        return path, None
    if setup == "symlink_dir":
        path.symlink_to(tmp_path)
        return path, None
    if setup == "fifo":
        os.mkfifo(path)
        return path, None
    content = _input(case, expect, marker)
    path.write_bytes(content)
    return path, content


def _file_case(case, expect, marker, tmp_path, paths):
    from calmops.core import registry
    from calmops.core.breaker import read_breaker
    from calmops.core.store import ledger
    from calmops.flows import run_file
    from tests.conftest import _forget_breaker
    from tests.flows.helpers import versions

    champion, known = registry.alias_version(PIPELINE, "champion"), versions(PIPELINE)
    path, content = _place(case, expect, marker, tmp_path, paths.incoming)
    started = time.monotonic()
    try:
        outcome, error = run_file(PIPELINE, path)
    finally:
        breaker = read_breaker(PIPELINE)
        if breaker.state != "closed" or breaker.consecutive_failures:  # a failing case must not open it
            _forget_breaker(PIPELINE)                                    # for the cases after it
    assert time.monotonic() - started < 60
    assert error is None, outcome
    assert outcome["decision"] == expect["decision"], outcome
    _reason_ok(outcome["reason"], expect)
    assert not (path.exists() or path.is_symlink()), "the file stayed in incoming"

    if expect["decision"] == "rejected_input":
        kept = Path(outcome["details"]["quarantined_as"])
        assert kept.parent == paths.quarantine and len(kept.name.encode()) <= 255
        if content is not None:
            assert kept.read_bytes() == content  # the bytes, untouched
        else:
            assert kept.is_symlink() or not kept.is_file()  # the link or pipe itself, never what it points to
        sidecar_text = kept.with_name(kept.name + ".reason.json").read_text()
        assert len(sidecar_text) <= 16_000, len(sidecar_text)  # a record of why, not a copy of the file
        sidecar = json.loads(sidecar_text)
        assert sidecar["reason"].lstrip("'") == outcome["reason"]
        assert not FORMULA_START.match(sidecar["reason"]) and not FORMULA_START.match(sidecar["file"])
        if expect.get("not_in_reason"):
            text = json.dumps(sidecar) + (paths.logs / "pipeline.log").read_text(errors="replace")
            assert not any(w in text for w in expect["not_in_reason"])
    else:
        processed = [p for p in paths.processed.iterdir() if p.read_bytes() == content]
        assert processed, "the file's bytes are not in processed/"
        predictions = Path(outcome["predictions_file"])
        assert predictions.parent == paths.predictions and len(predictions.name.encode()) <= 255
        assert not list(paths.predictions.glob(".*.part"))
        _spreadsheet_safe(predictions, expect)

    assert registry.alias_version(PIPELINE, "champion") == champion
    assert versions(PIPELINE) == known
    assert not [e for e in ledger(paths).entries()
                if e["file"] == path.name and e["status"] in ("pending", "in_progress")]
    assert breaker.state == "closed" and breaker.consecutive_failures == 0  # bad input is never a failure


def _spreadsheet_safe(predictions: Path, expect: dict) -> None:
    frame = pd.read_csv(predictions, dtype=str, keep_default_na=False)
    for col in frame.columns:
        assert not FORMULA_START.match(col), col
        for cell in frame[col]:
            if FORMULA_START.match(cell):
                float(cell)  # only a plain number such as -1.5 may start with '-' or '+'
    for col, values in expect.get("predictions_keep", {}).items():
        assert set(values) <= set(frame[col]), (col, values)
    assert (frame["model_version"].astype(int) > 0).all()


# -- specs, formulas, API requests, CLI names -----------------------------------------------------------


def _spec_case(case, expect, marker, tmp_path):
    from typer.testing import CliRunner

    from calmops.deployments.cli import app

    spec = tmp_path / "spec.yaml"
    content = _input(case, expect, marker)
    if expect.get("pad_bytes"):
        content += b"# " + b"x" * expect["pad_bytes"] + b"\n"
    spec.write_bytes(content)
    home = tmp_path / "home"
    started = time.monotonic()
    result = CliRunner().invoke(app, ["create", str(spec)], env={"CALMOPS_HOME": str(home)})
    assert time.monotonic() - started < 15, "the spec was not refused in bounded time"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    message = " ".join(result.output.split())
    for words in expect["error"]:
        assert words in message, (words, message)
    pipelines = home / "pipelines"
    assert not pipelines.exists() or not any(pipelines.iterdir()), "a refused spec was stored"


def _formula_case(case, expect, marker, tmp_path):
    from calmops.generators.dynamics import FormulaError, evaluate

    formula = _input(case, expect, marker).decode()
    frame = pd.DataFrame({"x0": np.arange(100.0), "s": ["a"] * 100})
    started = time.monotonic()
    with pytest.raises(FormulaError) as info:
        evaluate(formula, frame)
    assert time.monotonic() - started < 5, "the formula was not refused in bounded time"
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    _reason_ok(message, expect)


def _api_case(case, expect, marker, tmp_path, paths):
    from fastapi.testclient import TestClient

    from calmops.deployments.api import create_app

    body = _input(case, expect, marker)
    response = TestClient(create_app()).post(f"/pipelines/{PIPELINE}/predict", content=body,
                                             headers={"content-type": "application/json"})
    assert response.status_code == expect["status"], response.text
    _reason_ok(" ".join(response.text.split()), expect)


def _cli_case(case, expect, marker, tmp_path, paths):
    from typer.testing import CliRunner

    from calmops.deployments.cli import app

    result = CliRunner().invoke(app, expect["args"], env={"CALMOPS_HOME": os.environ["CALMOPS_HOME"]})
    assert result.exit_code != 0, result.output
    message = " ".join(result.output.split())
    _reason_ok(message, expect)
    assert "Traceback" not in result.output
