"""The performance chart draws what each run recorded: realized scores of late labels per model version."""

import pandas as pd

from calmops.dashboards.charts import performance_over_time, realized_columns


def test_the_realized_scores_of_late_labels_are_drawn_per_model_version_next_to_the_estimate():
    runs = pd.DataFrame({
        "run_name": ["f0.csv", "f1.csv", "l1.csv", "l34.csv"],
        "decision": ["train", "predict_only", "retrain_promoted", "no_drift"],
        "champion_version": [1, 1, 2, 2],
        "metric.champion_accuracy": [None, None, 0.86, 0.97],
        "metric.challenger_accuracy": [0.97, None, 0.96, None],
        "metric.estimated_accuracy": [None, 0.96, None, None],
        "metric.realized_v1_accuracy": [None, None, 0.86, 0.85],
        "metric.realized_v2_accuracy": [None, None, None, 0.97],
        "metric.realized_v10_accuracy": [None, None, None, None],
        "metric.realized_v2_f1": [None, None, None, 0.9],
    })
    assert realized_columns(runs, "accuracy") == [("metric.realized_v1_accuracy", 1),
                                                 ("metric.realized_v2_accuracy", 2),
                                                 ("metric.realized_v10_accuracy", 10)]
    traces = {t.name: t for t in performance_over_time(runs, "accuracy", None).data}
    v1, v2 = traces["realized accuracy of v1 (late labels)"], traces["realized accuracy of v2 (late labels)"]
    assert list(v1.x) == ["l1.csv", "l34.csv"] and list(v1.y) == [0.86, 0.85]
    assert list(v2.x) == ["l34.csv"] and list(v2.y) == [0.97]
    assert "estimated accuracy" in traces and not any("f1" in name for name in traces)


def test_block_names_that_look_like_numbers_stay_names_on_the_drift_matrix():
    """Blocks "7" and "8": a numeric axis put ticks 6.5, 7, 7.5 … between them."""
    from calmops.dashboards.charts import matrix_heatmap

    matrix = pd.DataFrame([[0.0, 0.3], [0.3, 0.0]], index=["7", "8"], columns=["7", "8"])
    fig = matrix_heatmap(matrix)
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.type == "category"
