"""The benchmarks' prequential harness (bench/harness.py) decides as the stream flow does: the same files through
the real flow (Prefect test harness, MLflow) and through ``calmops_run`` give the same retrains, the same
promotions, the same recipes and the same score of the serving model on every file. The quality figures of
docs/benchmarks.md come from that harness; this is what lets them stand for the product."""

import sys
from pathlib import Path

import pytest

from tests.conftest import sea_frame, sea_mid_change, write_csv
from tests.flows.helpers import digest, incoming, run, update_spec

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_the_harness_makes_the_stream_flows_decisions(prefect_server, stream_spec, tmp_path):
    from harness import calmops_run

    from calmops.core.store import read_spec

    # the defaults' decision paths: auto, the refresh once the rows doubled, the follow-up after a change
    update_spec("sea", retrain={"mode": "auto", "refresh_growth": 2.0, "follow_up": True})
    frames = [sea_frame(1500, 8.0, seed=1), sea_frame(1500, 8.0, seed=2),  # 2× the rows: a refresh
              sea_mid_change(1500, 3, 8.0, 4.0),  # a change caught half-way: drift, a challenger below its predecessor
              sea_frame(1500, 4.0, seed=5),  # the follow-up's file
              sea_frame(1500, 4.0, seed=6), sea_frame(1500, 6.0, seed=7)]  # quiet, then another change
    folder = incoming("sea")
    outcomes, keys = [], []
    for i, frame in enumerate(frames):
        path = write_csv(frame, folder, f"f{i}.csv")
        keys.append(digest(path))
        outcomes.append(run("sea", path))
    assert outcomes[0]["decision"] == "train"

    bench = calmops_run(frames, read_spec("sea"), "classification", tmp_path / "state", keys=keys)

    def trainings(o):
        return (o.get("details") or {}).get("training", [])

    flow_retrained = [i for i, o in enumerate(outcomes) if i and trainings(o)]
    flow_promoted = [i for i, o in enumerate(outcomes) if o["decision"] == "retrain_promoted"]
    flow_recipes = [t["auto"]["chosen"] if t["mode"] == "auto" else t["mode"] for o in outcomes[1:]
                    for t in trainings(o)]
    assert (bench["retrained"], bench["promoted"], bench["modes"]) == (flow_retrained, flow_promoted, flow_recipes)
    # the paths this test is for were taken: a refresh on the second file, a promotion on drift on the third, the
    # follow-up on the fourth
    assert outcomes[1]["reason"].startswith("no drift signal; refresh"), outcomes[1]["reason"]
    assert outcomes[2]["drift_detected"] and outcomes[2]["decision"] == "retrain_promoted", outcomes[2]["reason"]
    assert outcomes[3]["reason"].startswith("no drift signal; follow-up"), outcomes[3]["reason"]
    kinds = {i: "refresh" if o["reason"].startswith("no drift signal; refresh") else
             "follow-up" if o["reason"].startswith("no drift signal; follow-up") else "drift"
             for i, o in enumerate(outcomes) if i in flow_retrained}
    assert kinds == {i: r if r in ("refresh", "follow-up") else "drift" for i, r in bench["reasons"].items()}
    # and every file was served by the same model: its prequential score is the one the flow recorded
    served = [o["metrics"]["champion"]["accuracy"] for o in outcomes[1:]]
    assert bench["curve"] == pytest.approx(served, abs=1e-12)


def test_the_flow_overhead_benchmark_runs_the_flows_steps_without_prefect(prefect_server, calmops_home):
    """``make bench`` (bench/flow_overhead.py) on small files: its plain path, the stream flow's own body with
    the tasks called as plain functions, decides them as the flow does (it crashed, after minutes, when it
    called the steps itself and ``predict`` gained keyword-only arguments)."""
    import flow_overhead
    from prefect import Task

    from calmops.core.store import pipeline_paths, read_spec

    engine = Task.__call__
    assert len(flow_overhead.measure("plain", 300, repeats=1)) == 1  # and each file took the retrain path
    assert Task.__call__ is engine  # the plain functions were for the benchmark's block only
    paths = pipeline_paths(read_spec("bench-plain-300"))
    assert sorted(p.name for p in paths.processed.glob("*.csv")) == ["f0.csv", "f1.csv", "seed.csv"]
    assert {p.name for p in paths.predictions.glob("f*")} == {f"f{i}.csv.predictions.csv" for i in (0, 1)}
