"""The holdout a challenger and the champion are compared on: stratified random rows, or, while the concept is
moving, the batch's last rows."""

import numpy as np
import pandas as pd

from calmops.core.spec import parse_spec
from calmops.tasks.evaluate import holdout_split


def spec(**evaluation):
    return parse_spec({"name": "p", "target": "y", "model": {"class": "sklearn.linear_model.LogisticRegression"},
                       **({"evaluation": evaluation} if evaluation else {})})


def labels(n: int, seed: int = 0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).integers(0, 2, n))


def test_random_holdout_is_stratified_and_disjoint():
    y = pd.Series([0] * 800 + [1] * 200)
    split = holdout_split(y, spec(), "classification", seed=3)
    assert split.kind == "random" and len(split.holdout) == 300
    assert not set(split.train) & set(split.holdout) and len(split.train) + len(split.holdout) == 1000
    assert y.iloc[split.holdout].mean() == 0.2  # the class shares are kept
    assert split.holdout.max() > 700 and split.holdout.min() < 300  # spread over the file


def test_while_the_concept_changes_the_holdout_is_the_last_rows():
    y = labels(1000)
    split = holdout_split(y, spec(), "classification", seed=3, changing=True)
    assert split.kind == "latest"
    assert list(split.holdout) == list(range(700, 1000)) and list(split.train) == list(range(700))


def test_latest_holdout_can_be_turned_off():
    split = holdout_split(labels(1000), spec(holdout_during_change="random"), "classification", seed=3,
                          changing=True)
    assert split.kind == "random" and split.holdout.min() < 700


def test_last_rows_missing_a_class_fall_back_to_the_random_holdout():
    y = pd.Series([1] * 50 + [0] * 950)  # the positives all came first
    split = holdout_split(y, spec(), "classification", seed=3, changing=True)
    assert split.kind == "random" and y.iloc[split.holdout].sum() == 15


def test_regression_takes_the_last_rows_too():
    y = pd.Series(np.linspace(0, 1, 200))
    split = holdout_split(y, spec(min_holdout_rows=10), "regression", seed=3, changing=True)
    assert split.kind == "latest" and list(split.holdout) == list(range(140, 200))
