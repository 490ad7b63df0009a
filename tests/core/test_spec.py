import pytest

from calmops.core.spec import SpecError, build_estimator, load_spec, parse_spec

BASE = {"name": "credit", "target": "y"}


def test_minimal_spec_gets_defaults():
    spec = parse_spec(dict(BASE))
    assert spec.kind == "stream" and spec.retrain.mode == "auto" and spec.drift.correction == "holm"


def test_unknown_key_is_named():
    with pytest.raises(SpecError, match="unknown key 'evaluation.treshold'"):
        parse_spec({**BASE, "evaluation": {"treshold": 1}})


@pytest.mark.parametrize("given, said", [
    ({"retrian": {"mode": "full"}}, "unknown key 'retrian' (did you mean 'retrain'?)"),
    ({"retrain": {"mdoe": "full"}}, "unknown key 'retrain.mdoe' (did you mean 'mode'?)"),
    ({"model": {"class": "sklearn.linear_model.LogisticRegression", "parms": {}}},
     "unknown key 'model.parms' (did you mean 'params'?)"),  # the key as written in YAML: class, not class_
    ({"model": {"steps": [{"clas": "sklearn.preprocessing.StandardScaler"}]}},
     "unknown key 'model.steps.0.clas' (did you mean 'class'?)"),  # inside a list
    ({"labels": {"join_one": ["id"]}}, "unknown key 'labels.join_one' (did you mean 'join_on'?)"),  # optional section
    ({"colour": "blue"}, "unknown key 'colour'"),  # nothing close: no guess
])
def test_a_misspelt_key_is_named_with_the_key_it_likely_meant(given, said):
    with pytest.raises(SpecError) as raised:
        parse_spec({**BASE, **given})
    assert said in str(raised.value)
    assert "did you mean" not in str(raised.value) or "(did you mean" in said


def test_wrong_type_is_named():
    with pytest.raises(SpecError, match="breaker.max_failures"):
        parse_spec({**BASE, "breaker": {"max_failures": "many"}})


@pytest.mark.parametrize("section, key, value, wanted", [
    ("retrain", "window_rows", -5, "Input should be greater than or equal to 1, not -5"),
    ("evaluation", "holdout", 1.5, "Input should be less than 1, not 1.5"),
    ("breaker", "max_failures", "many", "unable to parse string as an integer, not 'many'"),
    ("limits", "max_bytes", "1GB", "unable to parse string as an integer, not '1GB'"),
])
def test_a_value_out_of_range_or_of_the_wrong_type_is_repeated_in_the_message(section, key, value, wanted):
    """The message names the key, what is wanted, and the value that was given (a user with several values in a
    spec sees which one): before, a bound said only 'Input should be greater than or equal to 1'."""
    with pytest.raises(SpecError) as refused:
        parse_spec({**BASE, section: {key: value}})
    assert f"{section}.{key}: " in str(refused.value) and str(refused.value).endswith(wanted), str(refused.value)


def test_a_long_value_of_the_wrong_type_is_cut_in_the_message():
    with pytest.raises(SpecError) as refused:
        parse_spec({**BASE, "target": ["column"] * 100})
    said = str(refused.value)
    assert "target: Input should be a valid string, not ['column', " in said and said.endswith("...")
    assert len(said) < 200, said


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


def test_block_names_written_as_numbers_are_refused_saying_to_quote_them():
    """docs/kinds.md warns that `evaluation: [3]` is refused: the refusal says how to write it, not pydantic's
    union of a literal and a list of strings."""
    spec = {**BASE, "kind": "block", "block_column": "ward"}
    with pytest.raises(SpecError) as refused:
        parse_spec({**spec, "blocks": {"evaluation": [3, "north"]}})
    assert str(refused.value) == ('spec: blocks.evaluation: block names are text: quote [3], as in '
                                  '["3", "north"] (a block named 3 in the data, or 3.0, is "3")')
    assert parse_spec({**spec, "blocks": {"evaluation": ["3", "north"]}}).blocks.evaluation == ["3", "north"]
    with pytest.raises(SpecError, match=r'quote \[3\.0, True\], as in \["3", "True"\]'):  # as the blocks are named
        parse_spec({**spec, "blocks": {"evaluation": [3.0, True]}})


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


def test_a_spec_file_is_parsed_once_while_unchanged_and_each_caller_gets_its_own_copy(tmp_path, monkeypatch):
    import os

    import calmops.core.spec as spec_module

    parsed = []
    real = spec_module.read_yaml
    monkeypatch.setattr(spec_module, "read_yaml", lambda text, source: parsed.append(source) or real(text, source))
    path = tmp_path / "spec.yaml"
    path.write_text(parse_spec({**BASE, "name": "cached"}).to_yaml())

    first, second = load_spec(path), load_spec(path)
    assert len(parsed) == 1 and first == second
    first.retrain.mode = "window"  # one caller's change is not another's
    assert load_spec(path).retrain.mode == second.retrain.mode != "window"

    # replaced the way CalmOps writes a spec (a new file moved over the old): the new content is read
    staged = tmp_path / ".spec.yaml.part"
    staged.write_text(parse_spec({**BASE, "name": "renamed"}).to_yaml())
    os.replace(staged, path)
    assert load_spec(path).name == "renamed"
    # edited in place to the same size: the modification time tells
    text = path.read_text()
    path.write_text(text.replace("renamed", "rena-ed"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert load_spec(path).name == "rena-ed"
    assert len(parsed) == 3


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="bad.yaml: not valid YAML"):
        load_spec(path)


@pytest.mark.parametrize("spec, key, given", [
    ({"seed": -1}, "seed", "-1"),
    ({"seed": 2**32}, "seed", "4294967296"),
    ({"drift": {"seed": -5}}, "drift.seed", "-5"),
])
def test_a_seed_no_random_state_takes_is_refused_naming_the_key_and_the_range(spec, key, given):
    """numpy's default_rng and scikit-learn's random_state take 0 to 2**32 - 1 only: a spec with seed -1 was
    created, then every run failed ('expected non-negative integer')."""
    with pytest.raises(SpecError) as refused:
        parse_spec({**BASE, **spec})
    assert f"{key}: {given} is not a seed" in str(refused.value)
    assert "from 0 to 4294967295" in str(refused.value)


def test_the_largest_seed_accepted_is_one_numpy_and_scikit_learn_take():
    import numpy as np
    from sklearn.utils import check_random_state

    spec = parse_spec({**BASE, "seed": 2**32 - 1, "drift": {"seed": 0}})
    for seed in (spec.seed, spec.drift.seed):
        check_random_state(seed)
        np.random.default_rng(seed)


def test_an_empty_delimiter_is_refused_saying_how_to_ask_for_sniffing():
    """delimiter: "" was accepted and behaved as if the key were left out (the separator was sniffed)."""
    with pytest.raises(SpecError) as refused:
        parse_spec({**BASE, "delimiter": ""})
    assert str(refused.value) == ("spec: delimiter: '' (empty) separates nothing: leave the key out (or write "
                                  'delimiter: null) to have the separator sniffed, or give it, e.g. delimiter: ";"')
    assert parse_spec({**BASE, "delimiter": None}).delimiter is None
    assert parse_spec({**BASE, "delimiter": ";"}).delimiter == ";"


def test_a_schedule_written_as_a_bare_number_is_refused_saying_to_quote_it(tmp_path):
    """docs/spec.md says to quote a bare number; unquoted, YAML makes it an int and the refusal said only 'Input
    should be a valid string'."""
    path = tmp_path / "spec.yaml"
    path.write_text("name: credit\ntarget: y\nschedule: 300\n")
    with pytest.raises(SpecError) as refused:
        load_spec(path)
    assert str(refused.value) == (f'{path}: schedule: 300 is written as a number: quote it, as in schedule: "300" '
                                  "(seconds), or give a unit (90s, 5m, 1h)")
    path.write_text('name: credit\ntarget: y\nschedule: "300"\n')
    assert load_spec(path).schedule == "300"


@pytest.mark.parametrize("spec, said, given", [
    ({"kind": "streaming"}, "spec: kind: Input should be 'stream', 'block' or 'ipip'", "streaming"),
    ({"retrain": {"mode": "windowed"}}, "retrain.mode: Input should be 'full', ", "windowed"),
    ({"formats": ["csv", "xls"]}, "formats.1: Input should be 'csv', ", "xls"),
])
def test_a_choice_outside_the_allowed_ones_is_refused_echoing_the_value_given(spec, said, given):
    """The refusal listed the choices but not what was written ('streaming'), which the user must find in the file."""
    with pytest.raises(SpecError) as refused:
        parse_spec({**BASE, **spec})
    assert said in str(refused.value) and str(refused.value).endswith(f", not {given!r}"), str(refused.value)
