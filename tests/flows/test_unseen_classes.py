"""Labels the champion has never seen are a property of the data, never a crash of the run (docs/kinds.md).

- IPIP is binary: a file whose target holds labels outside the two classes the ensemble was fit on (or a first
  file with more than two classes) is quarantined with a reason naming the column, the values and their rows;
  it does not count against the breaker and does not hold back the files after it.
- ``retrain.mode`` incremental, stacking, recalibration (and auto's stacking candidate): a model built on the
  champion cannot add a class, so a batch with a new class falls back to a full refit (recorded like any other
  fallback) and the challenger learns the new class.
"""

import json

import numpy as np
import pytest

from calmops.core import registry
from calmops.core.breaker import read_breaker
from calmops.core.store import arrival_time, ledger, pipeline_paths, read_spec, save_spec, spec_from_dict
from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import digest, incoming, run, update_spec, versions
from tests.flows.test_ipip_flow import SPEC as IPIP_SPEC
from tests.flows.test_ipip_flow import rare_frame


@pytest.fixture
def quick_models(monkeypatch):
    """These tests are about labels, not the model's environment: skip MLflow's pip-requirement inference."""
    import mlflow.models

    monkeypatch.setattr(mlflow.models, "infer_pip_requirements", lambda path, flavor, fallback=None: fallback or [])


def binary_rare(n: int, seed: int, months: list[str]):
    """The IPIP test data with the labels written as 0 (common) and 1 (rare)."""
    frame = rare_frame(n, seed=seed, months=months)
    return frame.assign(label=(frame["label"] == "rare").astype(int))


def with_a_third_label(frame, rows: int):
    frame = frame.copy()
    frame.loc[frame.index[:rows], "label"] = 2
    return frame


@pytest.mark.integration
def test_ipip_file_with_a_third_label_is_quarantined_and_does_not_hold_back_later_files(
        prefect_server, calmops_home, quick_models):
    save_spec(spec_from_dict(dict(IPIP_SPEC)), create=True)
    folder = incoming("rare")
    paths = pipeline_paths(read_spec("rare"))
    assert run("rare", write_csv(binary_rare(900, 10, ["2024-01", "2024-02"]), folder, "a.csv"))["decision"] == "train"
    # a third label in 150 rows, then a good file behind it (order: arrival decides the bad one first)
    bad = write_csv(with_a_third_label(binary_rare(900, 11, ["2024-03", "2024-04"]), 150), folder, "b.csv")
    content, sha = bad.read_bytes(), digest(bad)
    book = ledger(paths)
    book.arrive(sha, "b.csv", arrival_time(bad.stat().st_mtime_ns))  # announced, as the watcher does
    later = run("rare", write_csv(binary_rare(900, 12, ["2024-05", "2024-06"]), folder, "c.csv"))
    assert later["decision"] == "retrain_promoted", later  # not held behind b.csv
    assert book.status(sha) == "gone" and book.decision(sha) == "rejected_input"  # set aside, not processed
    assert (paths.quarantine / "b.csv").read_bytes() == content and not bad.exists()
    sidecar = json.loads((paths.quarantine / "b.csv.reason.json").read_text())
    reason = sidecar["reason"]
    assert "target column 'label'" in reason and "'2' in 150 row(s)" in reason and "binary" in reason, reason
    assert versions("rare") == [1, 2] and registry.alias_version("rare", "champion") == 2  # b.csv changed nothing
    # a data problem, not a failure of the pipeline: more such files never open the breaker
    for i in range(3):
        out = run("rare", write_csv(with_a_third_label(binary_rare(900, 20 + i, ["2024-07"]), 5), folder,
                                    f"d{i}.csv"))
        assert out["decision"] == "rejected_input" and "'2' in 5 row(s)" in out["reason"], out
        assert out["details"]["new_classes"] == ["2"]
    assert read_breaker("rare").state == "closed" and read_breaker("rare").consecutive_failures == 0


@pytest.mark.integration
def test_ipip_first_file_with_three_classes_is_quarantined(prefect_server, calmops_home, quick_models):
    save_spec(spec_from_dict(dict(IPIP_SPEC)), create=True)
    folder = incoming("rare")
    out = run("rare", write_csv(with_a_third_label(binary_rare(900, 10, ["2024-01", "2024-02"]), 150), folder,
                                "first.csv"))
    assert out["decision"] == "rejected_input", out
    assert "target column 'label'" in out["reason"] and "3 classes" in out["reason"], out["reason"]
    assert "'2' in 150 row(s)" in out["reason"] and "binary" in out["reason"], out["reason"]
    assert versions("rare") == [] and read_breaker("rare").consecutive_failures == 0
    # the fixed file then trains the first model
    good = run("rare", write_csv(binary_rare(900, 10, ["2024-01", "2024-02"]), folder, "fixed.csv"))
    assert good["decision"] == "train", good


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["incremental", "stacking", "recalibration", "auto"])
def test_a_new_class_is_learnt_by_a_full_refit_in_the_modes_that_build_on_the_champion(
        prefect_server, stream_spec, quick_models, mode):
    """``stacking`` and ``recalibration`` (and ``auto``, the default, through its stacking candidate) failed the
    run on a new class with scikit-learn's own error, and the breaker counted it; they fall back to full as
    ``incremental`` does, and the reason says so."""
    update_spec("sea", model={"class": "sklearn.linear_model.SGDClassifier",
                              "params": {"random_state": 0, "loss": "log_loss"}},
                retrain={"mode": mode, "retrain_on": "always"}, evaluation={"thresholds": {}})
    folder = incoming("sea")
    assert run("sea", write_csv(sea_frame(1000, 8, seed=1), folder, "a.csv"))["decision"] == "train"
    frame = sea_frame(800, 8, seed=2)
    frame.loc[frame["x3"] > 8, "y"] = 2  # a third class, learnable from x3
    out = run("sea", write_csv(frame, folder, "b.csv"))
    assert out["decision"] in ("retrain_promoted", "retrain_rejected"), out
    assert out["details"]["new_classes"] == ["2"]
    [training] = out["details"]["training"]
    assert training["mode"] == mode, training
    if mode != "auto":  # auto's default here (no concept drift) is all data so far, a fresh fit anyway
        assert training["fallback"] == "full", training
        assert "never seen by the champion" in training["fallback_reason"] and "2" in training["fallback_reason"]
        assert f"retrained ({mode}, fitted in full)" in out["reason"], out["reason"]
    challenger = registry.load_version("sea", training["challenger_version"]).model
    assert list(challenger.classes_) == [0, 1, 2]  # the new class was learnt
    assert read_breaker("sea").consecutive_failures == 0


def test_incremental_keeps_partial_fit_when_every_class_is_known_and_refits_for_a_new_one():
    from calmops.core.features import make_model
    from calmops.core.spec import parse_spec
    from calmops.tasks.retrain import train_challenger

    sp = parse_spec({"name": "m", "target": "y", "retrain": {"mode": "incremental"},
                     "model": {"class": "sklearn.linear_model.SGDClassifier", "params": {"random_state": 0}}})
    types = {"x1": "numeric", "x2": "numeric", "x3": "numeric"}
    old, new = sea_frame(500, 8, seed=1), sea_frame(300, 8, seed=2)
    champion = make_model(sp, types).fit(old[[*types]], old["y"])
    known = train_challenger("incremental", sp, types, old, new[[*types]], new["y"], champion=champion)
    assert "fallback" not in known.info  # only known classes: partial_fit as before
    new.loc[new.index[:40], "y"] = 2
    result = train_challenger("incremental", sp, types, old, new[[*types]], new["y"], champion=champion)
    assert result.mode == "full" and result.info["fallback"] == "full", result.info
    assert "'2'" in result.info["fallback_reason"] and "never seen by the champion" in result.info["fallback_reason"]
    assert list(result.model.classes_) == [0, 1, 2] and len(result.X) == 800
    assert np.array_equal(champion.classes_, [0, 1])  # the champion itself is untouched
