"""The follow-up after a promotion in the middle of a change (stream flow, real Prefect test harness and MLflow).

SEA with θ moving from 8 to 10: x1 + x2 ≤ θ is the label, so the rows with 8 < x1 + x2 ≤ 10 (18 % of them) change
label. The second file is caught mid-change (30 % of its rows, spread through it, still θ = 8); a challenger fit on it is
better than the champion there, but its holdout score stays well below the champion's at promotion. The third
file is all θ = 10 and raises no drift signal against that lower score: the follow-up is what looks again.
"""

import json

import pytest
from mlflow import MlflowClient

from calmops.core.names import model_name
from tests.conftest import sea_frame, sea_mid_change, write_csv
from tests.flows.helpers import incoming, run, update_spec

pytestmark = pytest.mark.integration


def stream(follow_up: bool) -> list[dict]:
    update_spec("sea", retrain={"mode": "window", "window_batches": 1, "follow_up": follow_up},
                drift={"concept": []})  # the drift signals here: performance against the score at promotion
    folder = incoming("sea")
    files = [sea_frame(2000, 8.0, seed=10), sea_mid_change(2000, 20, 8.0, 10.0), sea_frame(2000, 10.0, seed=30),
             sea_frame(2000, 10.0, seed=40)]
    return [run("sea", write_csv(f, folder, f"f{i}.csv")) for i, f in enumerate(files)]


def test_a_champion_promoted_mid_change_gets_one_follow_up_on_the_next_file(prefect_server, stream_spec):
    first, mid, after, later = stream(follow_up=True)
    assert first["decision"] == "train"
    assert mid["decision"] == "retrain_promoted", mid["reason"]
    promoted = mid["champion_version"]
    training = json.loads(MlflowClient().get_model_version(model_name("sea"), str(promoted)).tags["calmops.training"])
    # the promoted challenger's holdout score is below its predecessor's at promotion by more than 3 %
    follow = training["follow_up"]
    assert follow["score"] < follow["predecessor"] * (1 - 0.03), follow
    # the next file raises no drift signal, and the follow-up is tried there, by the paired test
    assert not after["drift_detected"], after["reason"]
    assert after["reason"].startswith(f"no drift signal; follow-up: champion v{promoted} was promoted during a change")
    # the champion fit on 30 % old-concept rows still mislabels part of the band; a model on this file alone does
    # not, so the follow-up wins the paired test and is promoted
    assert after["decision"] == "retrain_promoted", after["reason"]
    [tried] = after["details"]["training"]
    assert tried["selection"]["paired_test"]["rows"] == 600  # 30 % of 2,000 rows
    assert tried["reason"] in after["reason"]
    # once: the file after that is not a follow-up, whatever the follow-up decided
    assert later["decision"] == "no_drift" and "follow-up" not in later["reason"], later["reason"]
    assert "training" not in (later.get("details") or {})


def test_without_follow_up_the_next_file_is_left_to_the_drift_signals(prefect_server, stream_spec):
    _, mid, after, _ = stream(follow_up=False)
    assert mid["decision"] == "retrain_promoted", mid["reason"]
    assert after["decision"] == "no_drift" and "follow-up" not in after["reason"], after["reason"]
    assert "training" not in (after.get("details") or {})
