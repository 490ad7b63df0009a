import pytest

from calmops.core.spec import SpecError, build_estimator, load_spec, parse_spec

BASE = {"name": "credit", "target": "y"}


def test_minimal_spec_gets_defaults():
    spec = parse_spec(dict(BASE))
    assert spec.kind == "stream" and spec.retrain.mode == "auto" and spec.drift.correction == "holm"


def test_unknown_key_is_named():
    with pytest.raises(SpecError, match="unknown key 'evaluation.treshold'"):
        parse_spec({**BASE, "evaluation": {"treshold": 1}})


def test_wrong_type_is_named():
    with pytest.raises(SpecError, match="breaker.max_failures"):
        parse_spec({**BASE, "breaker": {"max_failures": "many"}})


def test_model_outside_allow_list_is_refused():
    with pytest.raises(SpecError, match="os.system"):
        parse_spec({**BASE, "model": {"class": "os.system"}})


def test_allow_modules_extends_the_allow_list():
    spec = parse_spec({**BASE, "model": {"class": "mymodels.Tree"}, "allow_modules": ["mymodels"]})
    assert spec.model.class_ == "mymodels.Tree"


@pytest.mark.parametrize("name", ["Credit", "1abc", "a" * 64, "../etc", "a_b"])
def test_bad_names_are_refused(name):
    with pytest.raises(SpecError, match="not a valid pipeline name"):
        parse_spec({**BASE, "name": name})


def test_target_required_unless_prediction_only():
    with pytest.raises(SpecError, match="'target' is required"):
        parse_spec({"name": "x"})
    assert parse_spec({"name": "x", "prediction_only": True}).target is None


def test_block_kind_needs_block_column():
    with pytest.raises(SpecError, match="block_column"):
        parse_spec({**BASE, "kind": "block"})


def test_unknown_drift_test_is_named():
    with pytest.raises(SpecError, match="nope"):
        parse_spec({**BASE, "drift": {"numeric_tests": ["nope"]}})


def test_build_estimator_with_params_and_steps():
    spec = parse_spec({**BASE, "model": {"steps": [
        {"class": "sklearn.preprocessing.StandardScaler"},
        {"class": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.5}},
    ]}})
    pipe = build_estimator(spec.model)
    assert pipe.steps[-1][1].C == 0.5


def test_bad_params_error_names_params():
    spec = parse_spec({**BASE, "model": {"class": "sklearn.tree.DecisionTreeClassifier", "params": {"depth": 3}}})
    with pytest.raises(SpecError, match="model.params"):
        build_estimator(spec.model)


def test_yaml_round_trip(tmp_path):
    spec = parse_spec({**BASE, "evaluation": {"thresholds": {"accuracy": {"min": 0.7}}}})
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    assert load_spec(path) == spec


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="bad.yaml: not valid YAML"):
        load_spec(path)
