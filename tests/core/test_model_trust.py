"""Models load only as CalmOps registered them: the skops file whose SHA-256 CalmOps tagged, with the types
CalmOps trusts (never the list in ``MLmodel``), never pickle. The three tampering routes below each carry a
payload that would create a marker file; the marker must not exist afterwards and the champion stays.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import shutil

import mlflow
import pytest
import skops.io as sio
import yaml
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from calmops.core import registry
from calmops.deployments.api import create_app
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import incoming, run

pytestmark = pytest.mark.integration


class Payload:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker):
        self.code = f"open({str(marker)!r}, 'w').write('ran')"

    def __reduce__(self):
        return exec, (self.code,)


def _records(n: int = 5) -> list[dict]:
    return sea_frame(n, 8, seed=7).drop(columns="y").to_dict(orient="records")


@pytest.fixture
def trained(prefect_server, stream_spec, calmops_home):
    outcome = run("sea", write_csv(sea_frame(800, 8, seed=1), incoming("sea"), "a.csv"))
    assert outcome["decision"] == "train" and outcome["champion_version"] == 1
    return calmops_home


def _cached_model_dir(home, version: int = 1):
    [folder] = (home / "cache" / "models").glob(f"*/sea/{version}-*")
    return folder / "model"


def _reload() -> None:
    registry._load_version.cache_clear()  # a new process would read the cache from disk
    registry._load_selection.cache_clear()


def _champion_alias() -> int | None:
    return registry.alias_version("sea", registry.CHAMPION)


def _run_another_file(name: str) -> dict | None:
    try:
        return run("sea", write_csv(sea_frame(300, 8, seed=5), incoming("sea"), name))
    except Exception:  # noqa: BLE001 - a refused champion fails the run; what matters is what it did not do
        return None


def test_registration_tags_the_model_file_sha256(trained):
    mv = MlflowClient().get_model_version("calmops.sea", "1")
    model_file = _cached_model_dir(trained) / registry.MODEL_FILE
    assert mv.tags[registry.MODEL_SHA256_TAG] == hashlib.sha256(model_file.read_bytes()).hexdigest()


def test_cached_mlmodel_switched_to_pickle_is_never_unpickled(trained, tmp_path):
    marker = tmp_path / "executed"
    model_dir = _cached_model_dir(trained)
    mlmodel = model_dir / "MLmodel"
    text = mlmodel.read_text()
    assert "serialization_format: skops" in text
    mlmodel.write_text(text.replace("serialization_format: skops", "serialization_format: pickle")
                       .replace("model.skops", "model.pkl"))
    (model_dir / "model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    _reload()
    # MLmodel is not read: the registered skops file still serves, the pickle is never opened
    champion = registry.champion("sea")
    assert champion.version == 1 and len(champion.model.predict(sea_frame(5, 8, seed=2)[["x1", "x2", "x3"]])) == 5
    assert not marker.exists()

    # the model file itself replaced by the payload: refused on its hash
    (model_dir / registry.MODEL_FILE).write_bytes(pickle.dumps(Payload(marker)))
    _reload()
    with pytest.raises(registry.UntrustedModel, match=r"'sea' v1: .*changed since registration"):
        registry.champion("sea")
    _run_another_file("b.csv")  # the run fails; it must not execute anything
    resp = TestClient(create_app()).post("/pipelines/sea/predict", json={"records": _records()})
    assert resp.status_code == 503, resp.text
    assert "changed since registration" in resp.json()["detail"] and "v1" in resp.json()["detail"]
    assert not marker.exists()
    assert _champion_alias() == 1


def test_a_model_file_changed_in_the_artifact_store_is_refused_naming_it_there(trained):
    cached = _cached_model_dir(trained).parent
    [stored] = [p for p in (trained / "mlflow" / "artifacts").rglob(registry.MODEL_FILE) if "selection" not in p.parts]
    with stored.open("ab") as fh:
        fh.write(b"\0")
    shutil.rmtree(cached)  # another machine, or a cache emptied: the version is downloaded again
    _reload()
    with pytest.raises(registry.UntrustedModel) as refused:
        registry.champion("sea")
    message = str(refused.value)
    # the file as it is in the store, not the download's staging folder (deleted at once)
    assert f"in the artifact store (file://{stored}) changed since registration" in message
    assert "/.1-" not in message
    assert "put the registered file back" in message and "calmops rollback sea" in message
    assert not cached.exists() and not list(cached.parent.glob(".1-*"))
    resp = TestClient(create_app()).post("/pipelines/sea/predict", json={"records": _records()})
    assert resp.status_code == 503 and resp.json()["detail"] == message


def test_the_selection_fit_kept_with_a_refit_version_loads_only_as_registered(trained, tmp_path):
    # the first model was refit on every row after its holdout vouched for it: the fit the holdout judged is kept
    mv = MlflowClient().get_model_version("calmops.sea", "1")
    [stored] = [p for p in (trained / "mlflow" / "artifacts").rglob(registry.MODEL_FILE) if "selection" in p.parts]
    assert stored.parent.name == "v1" and mv.tags[registry.SELECTION_SHA256_TAG] == hashlib.sha256(
        stored.read_bytes()).hexdigest()
    champion = registry.champion("sea")
    X = sea_frame(50, 8, seed=2)[["x1", "x2", "x3"]]
    assert champion.watched is not champion.model and len(champion.watched.predict(X)) == 50
    # replaced in the cache by a payload: refused on its hash, naming its own tag; nothing runs
    marker = tmp_path / "executed"
    cached = _cached_model_dir(trained).parent / "selection" / registry.MODEL_FILE
    cached.write_bytes(pickle.dumps(Payload(marker)))
    _reload()
    with pytest.raises(registry.UntrustedModel, match=r"'sea' v1's selection fit: .*changed since registration "
                                                      rf"\(its SHA-256 differs from the {registry.SELECTION_SHA256_TAG} tag\)"):
        _ = registry.champion("sea").watched
    assert not marker.exists()
    # serving reads only the model: the API still predicts with the champion
    resp = TestClient(create_app()).post("/pipelines/sea/predict", json={"records": _records()})
    assert resp.status_code == 200, resp.text


def test_a_model_file_changed_in_the_cache_is_refused_naming_the_cache_folder_to_delete(trained):
    cached = _cached_model_dir(trained).parent
    with (cached / "model" / registry.MODEL_FILE).open("ab") as fh:
        fh.write(b"\0")
    _reload()
    with pytest.raises(registry.UntrustedModel) as refused:
        registry.champion("sea")
    message = str(refused.value)
    assert "changed since registration" in message and f"rm -r {cached} " in message
    resp = TestClient(create_app()).post("/pipelines/sea/predict", json={"records": _records()})
    assert resp.status_code == 503 and resp.json()["detail"] == message
    # as it says: once deleted, the registered file is downloaded again and serves
    shutil.rmtree(cached)
    _reload()
    assert registry.champion("sea").version == 1


def _hostile(champion_model, marker):
    code = f"open({str(marker)!r}, 'w').write('ran')"
    return Pipeline([("f", FunctionTransformer(functools.partial(exec, code, {}))), ("m", champion_model)])


def test_skops_file_with_its_own_trusted_types_is_refused(trained, tmp_path):
    champion = registry.champion("sea")
    X = sea_frame(5, 8, seed=2)[["x1", "x2", "x3"]]

    # the payload is live: a loader that trusts the types listed with the file runs it on predict
    probe = tmp_path / "probe"
    dumped = sio.dumps(_hostile(champion.model, probe))
    listed = sio.get_untrusted_types(data=dumped)
    assert {"builtins.exec", "functools.partial"} <= set(listed)
    try:
        sio.loads(dumped, trusted=listed).predict(X)
    except Exception:  # noqa: BLE001, S110 - exec returns None, the model then fails: the code has run
        pass
    assert probe.exists()

    marker = tmp_path / "executed"
    model_dir = _cached_model_dir(trained)
    hostile = sio.dumps(_hostile(champion.model, marker))
    (model_dir / registry.MODEL_FILE).write_bytes(hostile)
    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    meta["flavors"]["sklearn"]["skops_trusted_types"] = sorted(
        set(meta["flavors"]["sklearn"].get("skops_trusted_types") or []) | set(listed))
    (model_dir / "MLmodel").write_text(yaml.safe_dump(meta))
    _reload()
    with pytest.raises(registry.UntrustedModel, match="changed since registration"):
        registry.champion("sea")

    # someone who can also write the registry's tags: the hash matches, the types still decide
    registry.set_version_tag("sea", 1, registry.MODEL_SHA256_TAG, hashlib.sha256(hostile).hexdigest())
    _reload()
    with pytest.raises(registry.UntrustedModel, match=r"does not load \(builtins\.exec, functools\.partial\)"):
        registry.champion("sea")
    _run_another_file("c.csv")
    resp = TestClient(create_app()).post("/pipelines/sea/predict", json={"records": _records()})
    assert resp.status_code == 503 and "builtins.exec" in resp.json()["detail"], resp.text
    assert not marker.exists()
    assert _champion_alias() == 1


def test_pickle_model_registered_through_mlflow_gets_503_and_never_runs(trained, tmp_path):
    marker = tmp_path / "executed"
    client = TestClient(create_app())
    assert client.post("/pipelines/sea/predict", json={"records": _records()}).status_code == 200

    experiment = MlflowClient().get_experiment_by_name(registry.experiment_name("sea"))
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        info = mlflow.sklearn.log_model(Payload(marker), name="model", registered_model_name="calmops.sea",
                                        serialization_format="pickle", pip_requirements=[])
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias("calmops.sea", registry.CHAMPION, version)

    resp = client.post("/pipelines/sea/predict", json={"records": _records()})
    assert resp.status_code == 503, resp.text
    detail = resp.json()["detail"]
    assert f"v{version}" in detail and "not registered by CalmOps" in detail

    # with a forged tag the pickle is still never read: only model.skops is
    registry.set_version_tag("sea", int(version), registry.MODEL_SHA256_TAG, "0" * 64)
    resp = client.post("/pipelines/sea/predict", json={"records": _records()})
    assert resp.status_code == 503 and "never pickle" in resp.json()["detail"], resp.text
    assert not marker.exists()
    # CalmOps moved nothing: the alias is where it was put, the previous champion still loads
    assert _champion_alias() == int(version)
    assert registry.load_version("sea", 1).version == 1


def test_the_command_to_delete_a_refused_cache_can_be_pasted_where_the_home_has_a_space(tmp_path):
    from pathlib import Path

    cached = Path("/home/ann/My Drive/calmops/cache/models/file/sea/4-abc")
    _, then = registry._changed_in_cache(cached)(cached / "model" / registry.MODEL_FILE)
    assert "rm -r '/home/ann/My Drive/calmops/cache/models/file/sea/4-abc' (" in then, then


MY_MODELS = """
from sklearn.ensemble import RandomForestClassifier


class MyForest(RandomForestClassifier):
    '''A team's own estimator: a random forest under another name.'''
"""


@pytest.fixture
def my_models(tmp_path, monkeypatch):
    """An importable module of the team's own, ``mymodels``, in a folder on sys.path (and on the PYTHONPATH of any
    process started from here), as a worker started with that PYTHONPATH has it."""
    import os
    import sys

    folder = tmp_path / "team-code"
    folder.mkdir()
    (folder / "mymodels.py").write_text(MY_MODELS)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    yield folder
    sys.modules.pop("mymodels", None)


def test_a_model_class_of_allow_modules_trains_saves_and_loads_back_as_champion(prefect_server, calmops_home,
                                                                               my_models):
    from calmops.core.store import save_spec, spec_from_dict
    from tests.conftest import STREAM_SPEC

    spec = dict(STREAM_SPEC, allow_modules=["mymodels"],
                model={"class": "mymodels.MyForest", "params": {"n_estimators": 10, "random_state": 0}})
    save_spec(spec_from_dict(spec), create=True)
    outcome = run("sea", write_csv(sea_frame(800, 8, seed=1), incoming("sea"), "a.csv"))
    assert outcome["decision"] == "train" and outcome["champion_version"] == 1

    _reload()  # as a new process (the API, the next flow run) loads it: from the registered file
    champion = registry.champion("sea")
    assert champion.version == 1
    assert type(champion.model.steps[-1][1]).__name__ == "MyForest"
    assert len(champion.model.predict(sea_frame(5, 8, seed=2)[["x1", "x2", "x3"]])) == 5
    resp = TestClient(create_app()).post("/pipelines/sea/predict", json={"records": _records()})
    assert resp.status_code == 200, resp.text

    # the trust is the pipeline's own: the same file served for a pipeline whose spec does not allow
    # 'mymodels' (or under a name only starting like it) is refused
    model_dir = _cached_model_dir(calmops_home)
    sha = hashlib.sha256((model_dir / registry.MODEL_FILE).read_bytes()).hexdigest()
    save_spec(spec_from_dict(dict(STREAM_SPEC, name="other")), create=True)
    for modules in (registry.pipeline_modules("other"), ("mymodel",), ("mymodels_team",)):
        with pytest.raises(registry.UntrustedModel, match=r"does not load \(mymodels\.MyForest\)"):
            registry.read_model(model_dir, sha, "pipeline 'other' v1", allow_modules=modules)
    assert registry.pipeline_modules("sea") == ("mymodels",)


def test_a_model_class_of_allow_modules_that_cannot_be_imported_says_so(calmops_home, my_models):
    import sys

    import mymodels

    model = mymodels.MyForest(n_estimators=2, random_state=0).fit([[0.0], [1.0]], [0, 1])
    folder = calmops_home / "v1"
    folder.mkdir(parents=True)
    (folder / registry.MODEL_FILE).write_bytes(sio.dumps(model))
    sha = hashlib.sha256((folder / registry.MODEL_FILE).read_bytes()).hexdigest()
    assert type(registry.read_model(folder, sha, "v1", allow_modules=("mymodels",))).__name__ == "MyForest"

    # a process without the module on its path (the API started without that PYTHONPATH)
    sys.path.remove(str(my_models))
    sys.modules.pop("mymodels")
    registry.is_trusted_type.cache_clear()
    with pytest.raises(registry.UntrustedModel) as refused:
        registry.read_model(folder, sha, "v1", allow_modules=("mymodels",))
    assert "'mymodels' (in allow_modules) cannot be imported here" in str(refused.value)
    assert "PYTHONPATH" in str(refused.value)
