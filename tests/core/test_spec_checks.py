"""What ``calmops create`` / ``update`` check before any file comes: estimator classes only (no function, no
private module), valid params, hooks and preprocess modules that exist, and paths stored absolute.

Each code-execution route carries a payload that would create a marker file; the marker must not exist.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from calmops.core.spec import SpecError, check_spec, load_spec, parse_spec
from calmops.core.store import read_spec, save_spec

BASE = {"name": "p", "target": "y"}


def _create(tmp_path: Path, spec: dict) -> tuple[int, str]:
    """``calmops create`` on a spec file written in its own folder; returns (exit code, stderr)."""
    from calmops.deployments.cli import app

    folder = tmp_path / "specs"
    folder.mkdir(exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["create", str(path)])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def _payload(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


@pytest.mark.parametrize("cls", [
    "sklearn.utils._testing.assert_run_python_script_without_output",
    "sklearn._config.set_config",                      # a private module under the allowed prefix
    "sklearn.ensemble._forest.RandomForestClassifier",  # a real estimator, but named by its private module
])
def test_private_module_routes_refused_at_create(calmops_home, tmp_path, cls):
    marker = tmp_path / "executed"
    code, out = _create(tmp_path, {**BASE, "model": {"class": cls, "params": {"source_code": _payload(marker)}}})
    assert code == 2, out
    assert "model.class" in out and "private" in out and cls in out
    assert len(out.strip().splitlines()[0]) > 20 and "Traceback" not in out
    assert not marker.exists()
    assert not (calmops_home / "pipelines" / "p" / "spec.yaml").exists()


def test_function_refused_even_when_public(calmops_home, tmp_path):
    code, out = _create(tmp_path, {**BASE, "model": {"class": "sklearn.metrics.accuracy_score"}})
    assert code == 2 and "model.class" in out and "not an estimator class" in out, out
    with pytest.raises(SpecError, match="not a scikit-learn estimator"):  # a public class that is no estimator
        save_spec(parse_spec({**BASE, "model": {"class": "sklearn.utils.Bunch"}}), create=True)


def test_class_typo_refused_naming_the_key_and_the_likely_class(calmops_home, tmp_path):
    code, out = _create(tmp_path, {**BASE, "model": {"class": "sklearn.ensemble.HistGradientBoostingClasifier"}})
    assert code == 2, out
    assert "model.class" in out and "HistGradientBoostingClasifier" in out
    assert "did you mean sklearn.ensemble.HistGradientBoostingClassifier" in out


def test_a_misspelt_param_is_refused_with_the_param_it_likely_meant(calmops_home, tmp_path):
    model = {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iters": 500, "C": 0.5}}
    code, out = _create(tmp_path, {**BASE, "model": model})
    assert code == 2 and "model.params:" in out and "'max_iters'; did you mean 'max_iter'?" in out, out


@pytest.mark.parametrize(("model", "key"), [
    ({"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": {"nested": "object"}}},
     "model.params.max_iter"),
    ({"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"loss": [1, 2]}}, "model.params.loss"),
    ({"class": "sklearn.tree.DecisionTreeClassifier", "params": {"depth": 3}}, "model.params"),  # unknown key
    ({"steps": [{"class": "sklearn.preprocessing.StandardScaler"},
                {"class": "sklearn.linear_model.LogisticRegression", "params": {"C": "big"}}]},
     "model.steps[1].params.C"),
    ({"class": "calmops.core.ipip.IPIPClassifier", "params": {"p": "many"}}, "model.params"),  # CalmOps' own
])
def test_bad_params_refused_at_create_naming_the_key(calmops_home, tmp_path, model, key):
    code, out = _create(tmp_path, {**BASE, "model": model})
    assert code == 2, out
    first = out.strip().splitlines()[0]
    assert key in first, out
    assert not (calmops_home / "pipelines" / "p").exists()


SCALER, LOGIT = "sklearn.preprocessing.StandardScaler", "sklearn.linear_model.LogisticRegression"


@pytest.mark.parametrize("model, said", [
    ({"class": SCALER},
     (f"model.class: '{SCALER}' is a transformer (it has no predict), not a model: name a classifier or a "
      "regressor; a transformer belongs before the model in model.steps")),
    ({"steps": [{"class": LOGIT}, {"class": SCALER}]},
     (f"model.steps[1].class: '{SCALER}' is a transformer (it has no predict), not a model: the last step is "
      "the model")),
    ({"steps": [{"class": LOGIT}, {"class": "sklearn.tree.DecisionTreeClassifier"}]},
     f"model.steps[0]: '{LOGIT}' has no transform, so it cannot come before another step"),
    ({"steps": []}, "model.steps: the list is empty"),
    ({"class": "sklearn.cluster.KMeans"},
     ("model.class: 'sklearn.cluster.KMeans' is a clusterer: it predicts without learning the target, so no score or "
      "promotion would mean anything; name a classifier or a regressor (one may come before it in model.steps, as a "
      "transformer)")),
    ({"steps": [{"class": SCALER}, {"class": "sklearn.ensemble.IsolationForest"}]},
     ("model.steps[1].class: 'sklearn.ensemble.IsolationForest' is an outlier detector: it predicts without "
      "learning the target, so no score or promotion would mean anything; name a classifier or a regressor ")),
    ({"class": "sklearn.mixture.GaussianMixture"},
     "model.class: 'sklearn.mixture.GaussianMixture' is a density estimator: it predicts without learning"),
])
def test_a_model_that_cannot_predict_is_refused_at_create(calmops_home, tmp_path, model, said):
    """A transformer as the model (or a model in the middle of the steps) was created, then every file's training
    failed ('does not implement predict'); it is refused naming the key and the class, saying where it belongs."""
    code, out = _create(tmp_path, {**BASE, "model": model})
    assert code == 2 and said in " ".join(out.split()), out
    assert not (calmops_home / "pipelines" / "p").exists()
    fixed = {**BASE, "name": "q", "model": {"steps": [{"class": SCALER}, {"class": LOGIT}]}}  # as the refusal says
    assert _create(tmp_path, fixed)[0] == 0
    # a clusterer before the model is a transformer (distances to its centres), as the refusal says
    clustered = {**BASE, "name": "r", "model": {"steps": [{"class": "sklearn.cluster.KMeans"}, {"class": LOGIT}]}}
    assert _create(tmp_path, clustered)[0] == 0


RIDGE = "sklearn.linear_model.Ridge"


@pytest.mark.parametrize("spec, said", [
    ({"model": {"class": RIDGE}, "evaluation": {"thresholds": {"balanced_accuracy": {"min": 0.7}}}},
     (f"evaluation.thresholds.balanced_accuracy: 'balanced_accuracy' is not a metric of regression, and the model "
      f"{RIDGE} is a regressor: name one of rmse, mae, mse, r2, mape, or a classifier as the model")),
    ({"model": {"steps": [{"class": SCALER}, {"class": RIDGE}]}, "evaluation": {"primary_metric": "log_loss"}},
     f"evaluation.primary_metric: 'log_loss' is not a metric of regression, and the model {RIDGE} is a regressor"),
    ({"evaluation": {"thresholds": {"rmse": {"max": 0.5}}}},  # the default model, a classifier
     ("evaluation.thresholds.rmse: 'rmse' is not a metric of classification, and the model "
      "sklearn.ensemble.HistGradientBoostingClassifier is a classifier: name one of accuracy, balanced_accuracy, ")),
])
def test_a_metric_of_the_other_task_than_the_models_is_refused_at_create(calmops_home, tmp_path, spec, said):
    """With no evaluation.task, the task is the model's (as the flows infer it): a regressor with a classification
    metric was created, then every run failed ('Classification metrics can't handle a mix of binary and continuous
    targets') and the breaker opened; a classifier with a regression threshold could never pass it."""
    code, out = _create(tmp_path, {**BASE, **spec})
    assert code == 2 and said in " ".join(out.split()), out
    assert not (calmops_home / "pipelines" / "p").exists()


@pytest.mark.parametrize("task, model, said", [
    ("classification", RIDGE, ("evaluation.task: 'classification', but the model sklearn.linear_model.Ridge is a "
                              "regressor: leave the key out")),
    ("regression", "sklearn.tree.DecisionTreeClassifier", ("evaluation.task: 'regression', but the model "
                                                           "sklearn.tree.DecisionTreeClassifier is a classifier")),
])
def test_an_evaluation_task_the_model_contradicts_is_refused_at_create(calmops_home, tmp_path, task, model, said):
    """A regressor scored as a classifier failed every run (its predictions are numbers, not classes); a
    classifier scored as a regressor is scored on its labels as if they were amounts."""
    code, out = _create(tmp_path, {**BASE, "model": {"class": model}, "evaluation": {"task": task}})
    assert code == 2 and said in " ".join(out.split()), out
    assert not (calmops_home / "pipelines" / "p").exists()
    code, out = _create(tmp_path, {**BASE, "model": {"class": model}, "evaluation": {"task": None}})  # the model's
    assert code == 0, out


@pytest.mark.parametrize("evaluation", [{}, {"thresholds": {"r2": {"min": 0.5}}, "primary_metric": "mae"}])
def test_a_regressor_with_no_metric_named_or_regression_ones_is_accepted(calmops_home, tmp_path, evaluation):
    """The default primary metric follows the model's task (rmse for a regressor): nothing to refuse."""
    code, out = _create(tmp_path, {**BASE, "model": {"class": RIDGE}, "evaluation": evaluation})
    assert code == 0, out


def test_good_params_accepted(calmops_home):
    save_spec(parse_spec({**BASE, "model": {"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                                            "params": {"max_iter": 50, "learning_rate": 0.2}}}), create=True)
    assert read_spec("p").model.params == {"max_iter": 50, "learning_rate": 0.2}


def test_missing_preprocess_and_hooks_refused_naming_the_key(calmops_home, tmp_path):
    code, out = _create(tmp_path, {**BASE, "preprocess": "nowhere.py"})
    assert code == 2 and "preprocess" in out and str(tmp_path / "specs" / "nowhere.py") in out, out
    code, out = _create(tmp_path, {**BASE, "hooks": {"train": "hooks/missing.py:fit"}})
    assert code == 2 and "hooks.train" in out and "does not exist" in out, out
    hooks = tmp_path / "specs" / "hooks.py"
    hooks.write_text("def fit(X, y, spec):\n    raise RuntimeError\n")
    code, out = _create(tmp_path, {**BASE, "hooks": {"retrain": "hooks.py:refit"}})
    assert code == 2 and "hooks.retrain" in out and "'refit'" in out, out
    (tmp_path / "specs" / "prep.py").write_text("def other(df):\n    return df\n")
    code, out = _create(tmp_path, {**BASE, "preprocess": "prep.py"})
    assert code == 2 and "preprocess" in out and "defines no function" in out, out
    assert not (calmops_home / "pipelines" / "p").exists()


def test_checking_a_hook_does_not_run_it(calmops_home, tmp_path):
    marker = tmp_path / "executed"
    hooks = tmp_path / "specs" / "hooks.py"
    hooks.parent.mkdir()
    hooks.write_text(f"{_payload(marker)}\n\ndef fit(X, y, spec):\n    return None\n")
    code, out = _create(tmp_path, {**BASE, "hooks": {"train": "hooks.py:fit"}})
    assert code == 0, out
    assert read_spec("p").hooks.train == f"{hooks.resolve()}:fit"
    assert not marker.exists()  # read with ast, not imported


def test_relative_paths_stored_absolute_against_the_spec_folder(calmops_home, tmp_path, monkeypatch):
    folder = tmp_path / "specs"
    (folder / "lib").mkdir(parents=True)
    (folder / "lib" / "prep.py").write_text("def preprocess(df):\n    return df\n")
    (folder / "hooks.py").write_text("from sklearn.tree import DecisionTreeClassifier\n\n"
                                     "def fit(X, y, spec):\n    return DecisionTreeClassifier().fit(X, y)\n")
    spec_file = folder / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({**BASE, "preprocess": "lib/prep.py", "incoming": "../drop",
                                         "predictions": "out", "hooks": {"train": "hooks.py:fit"}}))
    monkeypatch.chdir(tmp_path)  # another working directory than the spec's
    from calmops.deployments.cli import app

    result = CliRunner().invoke(app, ["create", "specs/spec.yaml"])
    assert result.exit_code == 0, result.output
    stored = read_spec("p")
    assert stored.preprocess == (folder / "lib" / "prep.py").resolve()
    assert stored.incoming == (tmp_path / "drop").resolve()
    assert stored.predictions == (folder / "out").resolve()
    assert stored.hooks.train == f"{(folder / 'hooks.py').resolve()}:fit"
    on_disk = yaml.safe_load((calmops_home / "pipelines" / "p" / "spec.yaml").read_text())
    assert on_disk["preprocess"] == str((folder / "lib" / "prep.py").resolve())
    # update resolves the same way
    spec_file.write_text(yaml.safe_dump({**BASE, "preprocess": "lib/prep.py", "seed": 3}))
    result = CliRunner().invoke(app, ["update", "p", str(spec_file)])
    assert result.exit_code == 0, result.output
    assert read_spec("p").preprocess == (folder / "lib" / "prep.py").resolve() and read_spec("p").seed == 3


@pytest.mark.parametrize("name", ["gradual", "abrupt", "recurrent"])
def test_examples_create_from_any_folder(calmops_home, tmp_path, monkeypatch, name):
    examples = Path(__file__).resolve().parents[2] / "docs" / "examples"
    monkeypatch.chdir(tmp_path)
    spec = load_spec(examples / f"{name}.yaml")
    save_spec(spec, create=True, base=examples)
    stored = read_spec(spec.name)
    assert stored.preprocess == (examples / f"{name}_preprocess.py").resolve() and stored.preprocess.is_file()
    assert os.path.isabs(stored.preprocess)


@pytest.mark.integration
def test_relative_preprocess_runs_from_another_working_directory(prefect_server, calmops_home, tmp_path,
                                                                 monkeypatch):
    from calmops.core import registry
    from tests.conftest import sea_frame, write_csv
    from tests.flows.helpers import incoming, run

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "prep.py").write_text("def preprocess(df):\n    df = df.copy()\n    df['x12'] = df['x1'] + df['x2']\n"
                                    "    return df\n")
    (folder / "spec.yaml").write_text(yaml.safe_dump({
        "name": "rel", "target": "y", "preprocess": "prep.py",
        "model": {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 4}}}))
    monkeypatch.chdir(folder)
    save_spec(load_spec("spec.yaml"), create=True, base=folder)
    elsewhere = tmp_path / "elsewhere"  # a flow run starts in a folder of its own
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    outcome = run("rel", write_csv(sea_frame(400, 8, seed=1), incoming("rel"), "a.csv"))
    assert outcome["decision"] == "train", outcome
    assert "x12" in registry.champion("rel").schema.columns


def test_retrain_settings_a_kind_never_reads_are_named_and_its_own_are_not():
    from calmops.core.spec import ignored_settings, parse_spec

    block = {"name": "w", "kind": "block", "target": "y", "block_column": "site"}
    assert ignored_settings(parse_spec({**block, "retrain": {"data": "new_only", "retrain_on": "always"}})) == []
    said = ignored_settings(parse_spec({**block, "retrain": {"fallback_mode": "full", "stacking_cv": 5}}))
    assert [w.split(":")[0] for w in said] == ["retrain.fallback_mode", "retrain.stacking_cv"]
    ipip = parse_spec({"name": "r", "kind": "ipip", "target": "y", "block_column": "m",
                       "retrain": {"data": "new_only"}})
    assert [w.split(":")[0] for w in ignored_settings(ipip)] == ["retrain.data"]
    stream = parse_spec({"name": "s", "target": "y", "retrain": {"mode": "window", "window_batches": 3}})
    assert ignored_settings(stream) == []  # the stream kind reads every retrain key
    # a saved spec (every key written out, defaults included) read back says nothing
    saved = parse_spec({"name": "w2", "kind": "block", "target": "y", "block_column": "site"})
    assert ignored_settings(parse_spec(yaml.safe_load(saved.to_yaml()))) == []


@pytest.mark.parametrize("params, said", [
    ({"max_depht": [2, 4]}, ("retrain.search.params.max_depht: HistGradientBoostingClassifier has no parameter "
                            "'max_depht'; did you mean 'max_depth'?")),
    ({"max_depth": [2, -4]}, ("retrain.search.params.max_depth: candidate -4: The 'max_depth' parameter of "
                             "HistGradientBoostingClassifier must be an int in the range [1, inf) or None.")),
])
def test_a_search_over_a_parameter_the_model_does_not_take_is_refused_at_create(calmops_home, tmp_path, params,
                                                                                said):
    """A misspelt name in retrain.search.params was saved, then failed the first file's training on every try,
    which opened the breaker; it is refused when the spec is created, naming the key and the likely name."""
    code, out = _create(tmp_path, {**BASE, "retrain": {"mode": "full", "search": {"params": params}}})
    assert code != 0 and said in " ".join(out.split()), out
    assert not (calmops_home / "pipelines" / "p").exists()
    ok = {**BASE, "name": "q", "retrain": {"mode": "full", "search": {"params": {"max_depth": [2, 4]}}}}
    assert _create(tmp_path, ok)[0] == 0


@pytest.mark.parametrize("spec, said", [
    ({"model": {"steps": [{"class": "sklearn.preprocessing.StandardScaler"},
                          {"class": "sklearn.tree.DecisionTreeClassifier"}]},
      "retrain": {"mode": "full", "search": {"params": {"decisiontreeclassifier__max_depth": [2, -4]}}}},
     ("retrain.search.params.decisiontreeclassifier__max_depth: candidate -4: The 'max_depth' parameter of "
     "DecisionTreeClassifier must be an int in the range [1, inf) or None.")),
    ({"model": {"class": "calmops.core.ipip.IPIPClassifier"}, "kind": "stream",
      "retrain": {"mode": "full", "search": {"params": {"confidence": [0.9, 2.0]}}}},
     "retrain.search.params.confidence: candidate 2.0:"),
])
def test_search_candidates_are_checked_by_the_estimator_that_owns_them(calmops_home, tmp_path, spec, said):
    """A step of the user's pipeline, or CalmOps' own estimator, judges its own parameter's candidates."""
    code, out = _create(tmp_path, {**BASE, **spec})
    assert code != 0 and said in " ".join(out.split()), out


def test_a_search_a_kind_never_reads_is_warned_about_not_checked(calmops_home, tmp_path):
    """A block pipeline does not read retrain.search (it is said to be ignored): a spec with one that named no
    parameter of the model was saved before, and still is."""
    spec = {**BASE, "kind": "block", "block_column": "ward",
            "retrain": {"search": {"params": {"nope": [1]}}}}
    code, out = _create(tmp_path, spec)
    assert code == 0, out
    assert "retrain.search" in out and "does not apply to kind 'block' and is ignored" in " ".join(out.split())


@pytest.mark.parametrize("model, thresholds, said", [
    ("sklearn.tree.DecisionTreeClassifier", {"accuracy": {"min": 1.5}},
     ("evaluation.thresholds.accuracy: min 1.5 is above 1, the highest accuracy can be; no model could pass: give "
      "a min of at most 1")),
    ("sklearn.tree.DecisionTreeClassifier", {"log_loss": {"max": -1}},
     ("evaluation.thresholds.log_loss: max -1 is below 0, the lowest log_loss can be; no model could pass: give "
      "a max of at least 0")),
    ("sklearn.tree.DecisionTreeClassifier", {"roc_auc": {"max": -0.5}}, "max -0.5 is below 0, the lowest roc_auc"),
    (RIDGE, {"r2": {"min": 1.2}}, "evaluation.thresholds.r2: min 1.2 is above 1, the highest r2 can be"),
    (RIDGE, {"rmse": {"max": -0.1}}, "evaluation.thresholds.rmse: max -0.1 is below 0, the lowest rmse can be"),
])
def test_a_threshold_no_model_could_pass_is_refused(model, thresholds, said):
    """Scores are in [0, 1], errors never below 0, r2 at most 1: such a threshold was created and then every
    challenger failed it (the pipeline could never promote)."""
    spec = parse_spec({**BASE, "model": {"class": model}, "evaluation": {"thresholds": thresholds}})
    with pytest.raises(SpecError) as refused:
        check_spec(spec)
    assert said in str(refused.value)


@pytest.mark.parametrize("model, thresholds", [
    ("sklearn.tree.DecisionTreeClassifier", {"accuracy": {"min": 1.0}, "log_loss": {"max": 0.0}}),  # perfect only
    (RIDGE, {"r2": {"min": -3.0, "max": 1.0}, "mae": {"min": 5.0}}),
])
def test_thresholds_a_model_could_pass_are_accepted(model, thresholds):
    check_spec(parse_spec({**BASE, "model": {"class": model}, "evaluation": {"thresholds": thresholds}}))


def test_incremental_retraining_of_a_model_without_partial_fit_is_said():
    """``mode: incremental`` continues the champion with ``partial_fit``; the default model has none, so each
    retrain would silently be a full refit: the spec is saved (it works, as full) with a warning."""
    from calmops.core.spec import ignored_settings, parse_spec

    def said(spec: dict) -> list[str]:
        return ignored_settings(parse_spec({"name": "s", "target": "y", **spec}))

    [warning] = said({"retrain": {"mode": "incremental"}})  # the default model: gradient boosting
    assert warning.startswith("retrain.mode: 'incremental'") and "HistGradientBoostingClassifier" in warning
    assert "in full" in warning and "SGDClassifier" in warning
    [warning] = said({"retrain": {"mode": "window", "fallback_mode": "incremental"}})
    assert warning.startswith("retrain.fallback_mode: 'incremental'")
    [warning] = said({"retrain": {"mode": "incremental", "fallback_mode": "incremental"}})
    assert warning.startswith("retrain.mode and retrain.fallback_mode: 'incremental'")
    assert said({"model": {"class": "sklearn.linear_model.SGDClassifier"}, "retrain": {"mode": "incremental"}}) == []
    assert said({"model": {"steps": [{"class": "sklearn.preprocessing.StandardScaler"},
                                     {"class": "sklearn.naive_bayes.GaussianNB"}]},
                 "retrain": {"mode": "incremental"}}) == []
    assert said({"retrain": {"mode": "full"}}) == []


@pytest.mark.parametrize("key", ["id_columns", "drop_columns"])
def test_the_target_named_as_an_id_or_dropped_column_is_refused(key):
    """The target is never a model input: naming it among the id or dropped columns is a slip (a pipeline saved
    with it still loads; only create and update refuse it)."""
    spec = parse_spec({**BASE, key: ["site", "y"]})
    with pytest.raises(SpecError) as refused:
        check_spec(spec)
    assert str(refused.value) == (f"{key}: 'y' is the target, which the model learns and is never one of its "
                                  f"inputs anyway: remove it from {key}")
    check_spec(parse_spec({**BASE, key: ["site"]}))
