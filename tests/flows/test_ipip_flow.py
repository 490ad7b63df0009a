"""The IPIP flow: imbalanced binary data with string labels, updated on every file, promoted unless the update kept
only the champion's ensembles."""

import numpy as np
import pandas as pd
import pytest

from calmops.core import registry
from calmops.core.ipip import IPIPClassifier
from calmops.core.store import save_spec, spec_from_dict
from tests.conftest import write_csv
from tests.flows.helpers import incoming, run, runs_for_sha, versions


def rare_frame(n: int, seed: int, months: list[str], shift: float = 0.0) -> pd.DataFrame:
    """About 7 % 'rare' rows; a categorical feature; the month names the block."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    color = rng.choice(["red", "green", "blue"], size=n)
    score = x[:, 0] + 0.8 * x[:, 1] + (color == "red") * 0.7 + rng.normal(0, 0.3, n) - shift
    label = np.where(score > np.quantile(score, 0.93), "rare", "common")
    return pd.DataFrame({"month": np.repeat(months, -(-n // len(months)))[:n], "x1": x[:, 0] + shift,
                         "x2": x[:, 1], "x3": x[:, 2], "color": color, "label": label})


SPEC = {"name": "rare", "kind": "ipip", "target": "label", "block_column": "month",
        "model": {"class": "calmops.core.ipip.IPIPClassifier", "params": {"random_state": 3}},
        "evaluation": {"thresholds": {"balanced_accuracy": {"min": 0.99}}}}  # IPIP ignores thresholds


@pytest.mark.integration
def test_ipip_trains_then_updates_and_promotes_every_file(prefect_server, calmops_home, refused_metric_rows):
    save_spec(spec_from_dict(dict(SPEC)), create=True)
    folder = incoming("rare")
    files = [rare_frame(1200, seed=10, months=["2024-01", "2024-02", "2024-03"]),
             rare_frame(1200, seed=11, months=["2024-04", "2024-05", "2024-06"]),
             rare_frame(1200, seed=12, months=["2024-07", "2024-08", "2024-09"], shift=1.0)]
    outcomes = [run("rare", write_csv(f, folder, f"q{i}.csv")) for i, f in enumerate(files)]
    assert [o["decision"] for o in outcomes] == ["train", "retrain_promoted", "retrain_promoted"], \
        [o["reason"] for o in outcomes]
    assert [o["champion_version"] for o in outcomes] == [1, 2, 3] and versions("rare") == [1, 2, 3]
    assert registry.alias_version("rare", "champion") == 3 and registry.alias_version("rare", "previous") == 2
    for o in outcomes:
        info = o["details"]["ipip"]
        assert info["p"] >= 1 and info["b"] >= 1 and len(info["ensemble_sizes"]) == info["n_ensembles"]
        assert info["n_ensembles"] >= info["p"]  # an update keeps at least as many as there were
        assert max(info["ensemble_sizes"]) <= info["b"] and 0.0 <= info["replaced_share"] <= 1.0
        metrics = runs_for_sha("rare", o["sha256"])[0].data.metrics
        assert metrics["ipip_p"] == info["p"] and metrics["ipip_b"] == info["b"]
        assert metrics["ipip_replaced_share"] == pytest.approx(info["replaced_share"])
    assert outcomes[0]["details"]["ipip"]["replaced_share"] == 1.0
    assert outcomes[0]["details"]["ipip"]["n_ensembles"] == outcomes[0]["details"]["ipip"]["p"]
    # prequential: the champion was scored on each month of files 2 and 3 before the update
    for o, f in zip(outcomes[1:], files[1:]):
        blocks = o["details"]["blocks"]
        assert sorted(blocks) == sorted(set(f["month"]))
        metrics = runs_for_sha("rare", o["sha256"])[0].data.metrics
        for month in blocks:
            assert f"block_{month}_balanced_accuracy" in metrics
        assert o["metrics"]["champion"]["balanced_accuracy"] > 0.6  # on the whole file, before the update
        assert metrics["champion_balanced_accuracy"] == o["metrics"]["champion"]["balanced_accuracy"]
        assert metrics["holdout_champion_balanced_accuracy"] == o["metrics"]["holdout_champion"]["balanced_accuracy"]
        assert o["details"]["drift_gate"] is False
    # drift is reported, not acted on: file 3 is shifted and still simply updated
    assert outcomes[2]["drift_detected"] and "x1" in outcomes[2]["drifted_features"]
    # the champion is an IPIP ensemble behind the column transformer; labels stay strings
    champion = registry.champion("rare")
    assert isinstance(champion.model[-1], IPIPClassifier) and list(champion.model.classes_) == ["common", "rare"]
    assert len(champion.model[-1].history_) == 3 and "month" not in champion.schema.columns
    preds = pd.read_csv(outcomes[2]["predictions_file"])
    assert set(preds["model_version"]) == {3} and {"proba_rare", "proba_common"} <= set(preds.columns)
    assert (preds["prediction"] == "rare").mean() > 0.02
    assert refused_metric_rows == []  # each metric logged once per run (the prequential ones too)


@pytest.mark.integration
def test_a_small_file_with_one_rare_row_leaves_the_ipip_champion_as_it_was(prefect_server, calmops_home):
    """A file just large enough to learn from (2 x min_holdout_rows) holding one row of the rare class: new
    ensembles could be trained on that row or judged on it, not both; judged on the row they were trained on,
    they won, and the champion went from its p ensembles to one. The update is skipped instead, said in the
    reason, and the champion serves on unchanged; the next regular file updates it as usual."""
    save_spec(spec_from_dict(dict(SPEC)), create=True)
    folder = incoming("rare")
    first = run("rare", write_csv(rare_frame(1200, seed=10, months=["2024-01", "2024-02"]), folder, "a.csv"))
    ensembles = first["details"]["ipip"]["n_ensembles"]
    assert first["decision"] == "train" and ensembles > 1
    small = rare_frame(1200, seed=11, months=["2024-03"])
    small = pd.concat([small[small["label"] == "common"].head(39), small[small["label"] == "rare"].head(1)])
    outcome = run("rare", write_csv(small, folder, "small.csv"))
    assert outcome["decision"] == "no_drift", outcome["reason"]
    assert outcome["reason"] == ("IPIP update skipped: the file holds 1 row of class 'rare': too few to train new "
                                 "ensembles and judge them on rows they were not trained on; champion unchanged")
    assert outcome["champion_version"] == 1 and versions("rare") == [1]
    skipped = outcome["details"]["ipip"]  # what the viewer charts: nothing replaced, no figures of its own
    assert skipped["replaced_share"] == 0.0 and skipped["n_new_kept"] == 0 and skipped["p"] is None
    assert skipped["n_ensembles"] == ensembles
    assert registry.champion("rare").model[-1].ensembles_ and len(registry.champion("rare").model[-1].ensembles_) \
        == ensembles
    after = run("rare", write_csv(rare_frame(1200, seed=12, months=["2024-04"]), folder, "c.csv"))
    assert after["decision"] == "retrain_promoted" and after["details"]["ipip"]["n_ensembles"] >= ensembles


def test_ipip_model_wraps_a_plain_classifier_and_seeds_it():
    from calmops.flows.ipip import ipip_model

    spec = spec_from_dict({**SPEC, "model": {"class": "sklearn.tree.DecisionTreeClassifier",
                                             "params": {"max_depth": 3}}, "seed": 7})
    model = ipip_model(spec, {"x1": "numeric", "color": "categorical"})
    assert isinstance(model[-1], IPIPClassifier) and model[-1].random_state == 7
    assert type(model[-1].base_estimator).__name__ == "DecisionTreeClassifier"
    seeded = ipip_model(spec_from_dict(dict(SPEC)), {"x1": "numeric"})
    assert seeded[-1].random_state == 3


@pytest.mark.integration
def test_a_prediction_only_ipip_file_needs_no_block_column_as_the_api_takes_records_without_it(
        prefect_server, calmops_home):
    """The block column only splits a file for IPIP's per-block prequential scores; the ensemble never reads it.
    A prediction-only pipeline scores nothing per block, so its files need the column no more than the API's
    records do, and both get the same predictions from the champion."""
    from calmops.deployments.api import predict_records
    from tests.flows.helpers import update_spec

    save_spec(spec_from_dict(dict(SPEC)), create=True)
    folder = incoming("rare")
    assert run("rare", write_csv(rare_frame(1200, seed=10, months=["2024-01", "2024-02"]), folder,
                                 "q0.csv"))["decision"] == "train"
    update_spec("rare", prediction_only=True)
    unlabelled = rare_frame(300, seed=11, months=["2024-03"]).drop(columns=["month", "label"])
    out = run("rare", write_csv(unlabelled, folder, "p1.csv"))
    assert out["decision"] == "predict_only", out["reason"]
    served = pd.read_csv(out["predictions_file"])
    assert len(served) == 300 and set(served["model_version"]) == {1}
    records = unlabelled.to_dict(orient="records")
    predictions, _, _ = predict_records(registry.champion("rare"), records)
    assert served["prediction"].tolist() == predictions  # the file and the API answer alike
    # a file to learn from still names its blocks: they are what IPIP scores prequentially
    update_spec("rare", prediction_only=False)
    refused = run("rare", write_csv(rare_frame(600, seed=12, months=["2024-04"]).drop(columns="month"), folder,
                                    "q2.csv"))
    assert refused["decision"] == "rejected_input" and "block column 'month' is missing" in refused["reason"]


@pytest.mark.integration
def test_an_ipip_update_that_keeps_every_ensemble_registers_no_new_version(prefect_server, calmops_home):
    """New ensembles trained on a small file with few rare rows lose to the champion's (trained on 8,000 rows) on its
    held-out rows: the update
    keeps the champion's ensembles, so no version is registered (it would serve the same ensembles, and
    `previous` would hold them too); the reason says so and the champion predicts the file."""
    save_spec(spec_from_dict(dict(SPEC)), create=True)
    folder = incoming("rare")
    first = run("rare", write_csv(rare_frame(8000, seed=10, months=["2024-01", "2024-02"]), folder, "a.csv"))
    assert first["decision"] == "train"
    few = rare_frame(4000, seed=11, months=["2024-03"])
    few = pd.concat([few[few["label"] == "common"].head(200), few[few["label"] == "rare"].head(15)])
    outcome = run("rare", write_csv(few, folder, "few.csv"))
    info = outcome["details"]["ipip"]
    assert info["n_new_kept"] == 0, outcome["reason"]
    assert outcome["decision"] == "no_drift" and outcome["champion_version"] == 1 and versions("rare") == [1]
    assert outcome["reason"].startswith(f"IPIP update on few.csv kept the champion's {info['n_ensembles']} "
                                        f"ensembles: none of the {info['p']} new ones scored better")
    assert outcome["reason"].endswith("; champion unchanged")
    preds = pd.read_csv(outcome["predictions_file"])
    assert len(preds) == len(few) and set(preds["model_version"]) == {1}
