"""`calmops generate … --param`: a bad parameter is one line (and a hint) naming it, its value and what is expected, exit 2;
untouched columns of an injected CSV keep their exact text."""

import numpy as np
import pandas as pd
import pytest

from calmops.generators.synthetic import GENERATORS, synthetic
from tests.generators.test_cli_options import one_line, run


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(2e5, 5e4, 60), "z": rng.normal(size=60), "y": [0, 1] * 30})
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("param, expected", [
    ("noise=abc", "parameter noise='abc' of sea must be a number"),
    ("noise=true", "parameter noise=True of sea must be a number"),
    ("bogus=1", "sea does not take ['bogus']; it takes: noise"),
])
def test_synthetic_bad_param_is_one_line(tmp_path, param, expected):
    line = one_line(run("synthetic", "sea", "--out", tmp_path, "--rows", 50, "--param", param))
    assert expected in line


def test_generator_without_params_refuses_any(tmp_path):
    line = one_line(run("synthetic", "stagger", "--out", tmp_path, "--rows", 50, "--param", "bogus=1"))
    assert "stagger does not take ['bogus']; it takes: no parameters" in line


@pytest.mark.parametrize("method, args, param, expected", [
    ("label_shift", ["--target", "y"], "priors=notjson",
     "parameter priors='notjson' of label_shift must be a JSON object"),
    ("label_shift", ["--target", "y"], "priors=[0.9, 0.1]", "must be a JSON object"),
    ("feature_drift", ["--columns", "z"], "shift=abc", "parameter shift='abc' of feature_drift must be a number"),
    ("feature_drift", ["--columns", "z"], "period=2.5", "period=2.5 of feature_drift must be an integer or null"),
    ("new_categories", ["--columns", "y"], "categories=NEW", "categories='NEW' of new_categories must be a JSON list"),
    ("concept_drift", ["--target", "y"], "condition=3", "condition=3 of concept_drift must be text or null"),
    ("outliers", ["--columns", "z"], "seed=3", "outliers does not take ['seed']"),
])
def test_inject_bad_param_is_one_line(tmp_path, data, method, args, param, expected):
    line = one_line(run("inject", data, "--out", tmp_path / "o", "--method", method, *args, "--param", param))
    assert expected in line


def test_inject_good_params_still_work(tmp_path, data):
    r = run("inject", data, "--out", tmp_path / "o", "--method", "concept_drift", "--target", "y",
            "--param", "condition=z > 0", "--param", 'mapping={"0": 1, "1": 0}', "--no-report")
    assert r.exit_code == 0, r.output
    r = run("inject", data, "--out", tmp_path / "p", "--method", "new_categories", "--columns", "y",
            "--param", 'categories=["NEW"]', "--param", "share=0.5", "--no-report")
    assert r.exit_code == 0, r.output


def test_synthetic_refuses_unknown_or_mistyped_params():
    with pytest.raises(ValueError, match=r"sea does not take \['bogus'\]; it takes: noise"):
        synthetic("sea", 10, params={"bogus": 1})
    with pytest.raises(ValueError, match="parameter n_features='4' of hyperplane must be an integer"):
        synthetic("hyperplane", 10, params={"n_features": "4"})
    with pytest.raises(ValueError, match="has_noise=1 of sine must be true or false"):
        synthetic("sine", 10, params={"has_noise": 1})


@pytest.mark.filterwarnings("ignore:n_drift_centroids")
def test_every_declared_param_is_accepted():
    values = {float: 0.1, int: 3, bool: True}
    for name, gen in GENERATORS.items():
        for key, kind in gen.params.items():
            df = synthetic(name, 20, params={key: values[kind]}, seed=1)
            assert len(df) == 20, (name, key)
    df = synthetic("hyperplane", 20, params={"n_features": 4.0})  # an integral number is an integer
    assert [c for c in df.columns if c != "y"] == ["x0", "x1", "x2", "x3"]


def test_inject_keeps_untouched_float_columns_exactly(tmp_path):
    src = tmp_path / "data.csv"
    src.write_text("x,z,y\n246445.87660139412,0.5,0\n0.1000000000000000055511151231257827,1.5,1\n"
                   "1.2345678901234567,2.5,0\n0.30000000000000004,3.5,1\n")
    r = run("inject", src, "--out", tmp_path / "o", "--method", "feature_drift", "--columns", "z",
            "--param", "shift=1.0", "--no-report")
    assert r.exit_code == 0, r.output
    out = (tmp_path / "o" / "injected_0001.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in out] == ["x", "246445.87660139412", "0.1", "1.2345678901234567",
                                                     "0.30000000000000004"]
    assert [line.split(",")[2] for line in out] == ["y", "0", "1", "0", "1"]


def test_an_integral_number_is_an_integer_for_injectors_as_for_generators(tmp_path, data):
    """One rule for both: `4.0` given for an integer is taken as 4 by `synthetic` (above) and by `inject`;
    2.5 stays refused (test_inject_bad_param_is_one_line)."""
    from calmops.generators.params import checked

    assert checked("feature_drift", {"period": 2.0}, {"period": [int, type(None)]}) == {"period": 2}
    assert type(checked("x", {"n": 4.0}, {"n": [int]})["n"]) is int
    r = run("inject", data, "--out", tmp_path / "o", "--method", "feature_drift", "--columns", "z",
            "--param", "kind=recurrent", "--param", "period=10.0", "--no-report")
    assert r.exit_code == 0, r.output


def test_a_required_parameter_left_out_is_named_as_the_option_to_give(tmp_path, data):
    """label_shift needs its priors: said as the `--param` to add, with the form it takes (not Python's
    "missing 1 required positional argument")."""
    line = one_line(run("inject", data, "--out", tmp_path / "o", "--method", "label_shift", "--target", "y"))
    assert "label_shift needs --param priors=" in line and "a JSON object" in line
    assert "positional" not in line
