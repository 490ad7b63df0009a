"""Which recipe ``auto`` keeps unless beaten, by the kind of drift (stream flow, real Prefect test harness and
MLflow).

SEA's label is x1 + x2 ≤ θ. θ from 8 to 3 with the inputs where they were is real concept drift: the champion
gets worse and no input moved, so all data so far would teach the old answers again and the stack is the default.
The same change with x3 shifted (an input the label ignores) has moved inputs too: the default stays all data so
far. Either way the decision records the default, the rule and every candidate's score. On real concept drift the
recipes are judged on the file's last rows (the concept is moving; those are closest to the next file), otherwise
on a stratified random holdout; the decision says which.
"""

import pytest

from tests.conftest import sea_frame, write_csv
from tests.flows.helpers import incoming, run, update_spec

pytestmark = pytest.mark.integration


def second_file(shift_x3: float) -> dict:
    update_spec("sea", retrain={"mode": "auto"})
    folder = incoming("sea")
    changed = sea_frame(2000, 3.0, seed=20).assign(x3=lambda f: f.x3 + shift_x3)
    first = run("sea", write_csv(sea_frame(2000, 8.0, seed=10), folder, "f0.csv"))
    assert first["decision"] == "train"
    return run("sea", write_csv(changed, folder, "f1.csv"))


def auto_of(outcome: dict) -> dict:
    [tried] = outcome["details"]["training"]
    assert tried["mode"] == "auto"
    return tried["auto"]


def holdout_of(outcome: dict) -> tuple[str, int]:
    [tried] = outcome["details"]["training"]
    return tried["selection"]["holdout"], tried["selection"]["holdout_rows"]


def test_on_real_concept_drift_auto_keeps_the_stack_unless_beaten(prefect_server, stream_spec):
    changed = second_file(shift_x3=0.0)
    assert changed["drift_detected"] and not changed["drifted_features"], changed["reason"]
    assert "performance drift" in changed["reason"]
    why = auto_of(changed)
    assert why["default"] == "stacking" and why["rule"].startswith("stacking unless beaten")
    assert set(why["p_values"]) == {"window", "history"}
    assert set(why["candidates"]) == {"stacking", "window", "history"}
    assert holdout_of(changed) == ("latest", 600)  # the last 30 % of the 2,000 rows
    # the reason names the recipe auto chose, not only "auto"
    assert f"retrained (auto: {why['chosen']}" in changed["reason"], changed["reason"]


def test_with_the_inputs_moved_too_auto_keeps_all_data_so_far_unless_beaten(prefect_server, stream_spec):
    changed = second_file(shift_x3=5.0)
    assert "x3" in changed["drifted_features"] and "performance drift" in changed["reason"], changed["reason"]
    why = auto_of(changed)
    assert why["default"] == "history" and why["rule"].startswith("history unless beaten")
    assert set(why["p_values"]) == {"window", "stacking"}
    assert holdout_of(changed) == ("random", 600)
