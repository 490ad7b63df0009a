import pytest
from pydantic import ValidationError

from calmops.detectors import DriftConfig
from calmops.detectors.config import DEFAULT_MIN_EFFECT


def test_defaults():
    c = DriftConfig()
    assert c.numeric_tests == ["ks"] and c.categorical_tests == ["chi2"]
    assert c.correction == "holm" and c.alpha == 0.05 and c.min_samples == 30
    assert c.concept == ["adwin"]


@pytest.mark.parametrize(
    "field,value,name",
    [
        ("numeric_tests", ["ks", "kolmogorov"], "kolmogorov"),
        ("categorical_tests", ["chi2", "gtest"], "gtest"),
        ("multivariate", ["lsdd"], "lsdd"),
        ("concept", ["ddm", "stepd"], "stepd"),
        ("min_effect", {"ksx": 0.1}, "ksx"),
    ],
)
def test_unknown_names_are_errors_naming_them(field, value, name):
    with pytest.raises(ValidationError) as exc:
        DriftConfig(**{field: value})
    assert name in str(exc.value)


def test_unknown_key_is_an_error():
    with pytest.raises(ValidationError) as exc:
        DriftConfig(numeric_test=["ks"])
    assert "numeric_test" in str(exc.value)


def test_bad_concept_params_are_validation_errors():
    with pytest.raises(ValidationError) as exc:
        DriftConfig(concept=["ddm"], concept_params={"ddm": {"no_such_param": 1}})
    assert "ddm" in str(exc.value)


def test_effect_threshold_override_and_default():
    c = DriftConfig(min_effect={"ks": 0.2})
    assert c.effect_threshold("ks") == 0.2
    assert c.effect_threshold("chi2") == DEFAULT_MIN_EFFECT["chi2"]


def test_config_is_json_serialisable():
    import json

    json.dumps(DriftConfig(multivariate=["mmd"], concept=["adwin"]).model_dump())
