"""The label-free signals of files without labels: an unchanged file is not called drift, a moved one is.

Their reference is the outputs, on the holdout, of the fit the holdout judged (kept with the version): the model that
serves was refit on every row, and its outputs on rows it learnt (a forest is near certain of each) are not what it
gives new rows, so a reference of those would call every later file drift."""

import numpy as np
import pandas as pd
import pytest

from calmops.core import registry
from calmops.core.store import read_spec, save_spec, spec_from_dict
from tests.conftest import STREAM_SPEC, sea_frame, write_csv
from tests.flows.helpers import incoming, run

pytestmark = pytest.mark.integration

LABEL_FREE = "label-free drift in the champion's predictions"


@pytest.fixture
def forest_spec(calmops_home):
    spec = spec_from_dict({**STREAM_SPEC, "name": "lf", "labels": {"join_on": ["id"]},
                           "model": {"class": "sklearn.ensemble.RandomForestClassifier",
                                     "params": {"n_estimators": 30, "random_state": 0}}})
    save_spec(spec, create=True)
    return read_spec("lf")


def batch(seed: int, first_id: int, n: int = 1000) -> pd.DataFrame:
    return sea_frame(n, 8, seed, noise=0.1).assign(id=np.arange(first_id, first_id + n))


def test_unchanged_files_without_labels_are_not_label_free_drift_and_a_moved_one_is(prefect_server, forest_spec):
    folder = incoming("lf")
    first = run("lf", write_csv(batch(1, 0), folder, "f0.csv"))
    assert first["decision"] == "train"
    [training] = first["details"]["training"]
    champion = registry.champion("lf")
    # the reference is the holdout's outputs of the fit that was judged there, not the refit model's on its rows
    assert champion.watched is not champion.model
    assert champion.profile.confidences.size == training["selection"]["holdout_rows"] < first["rows"]
    for i in range(1, 5):  # the same concept, the same inputs: nothing moved
        same = run("lf", write_csv(batch(i + 1, 1000 * i).drop(columns="y"), folder, f"f{i}.csv"))
        assert same["decision"] == "predict_only", same["reason"]
        assert LABEL_FREE not in same["reason"] and not same["drift_detected"], same["reason"]
    moved = batch(9, 9000).drop(columns="y")
    moved["x1"] *= 0.6  # far more rows below the boundary x1 + x2 <= 8: the predictions move
    shifted = run("lf", write_csv(moved, folder, "moved.csv"))
    assert shifted["drift_detected"] and LABEL_FREE in shifted["reason"], shifted["reason"]
