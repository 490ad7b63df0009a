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


def test_the_champion_line_is_the_serving_models_score_on_the_whole_batch_as_calmops_history_reads_it():
    """A run that retrained logs ``champion_<m>`` on the holdout only; the line promised the whole batch."""
    runs = pd.DataFrame({
        "run_name": ["f0.csv", "f1.csv", "f2.csv", "f3.csv"],
        "decision": ["train", "no_drift", "retrain_promoted", "retrain_promoted"],
        "champion_version": [1, 1, 2, 3],
        "metric.champion_accuracy": [None, 0.91, 0.70, 0.60],  # f2, f3: the holdout the challenger had
        "metric.serving_full_batch_accuracy": [None, None, 0.75, None],  # a stream or block run retrained
        "metric.champion_prequential_accuracy": [None, None, None, 0.65],  # an IPIP run
        "metric.challenger_accuracy": [0.97, None, 0.80, 0.66],
    })
    line = {t.name: t for t in performance_over_time(runs, "accuracy", None).data}["champion accuracy"]
    # f0: a first model, served nothing; f1: its champion_ score is the whole batch (nothing retrained);
    # f2: the full-batch score, not the holdout's 0.70; f3: IPIP's prequential score, not the holdout's 0.60
    assert list(line.x) == ["f0.csv", "f1.csv", "f2.csv", "f3.csv"]
    assert pd.isna(line.y[0]) and list(line.y[1:]) == [0.91, 0.75, 0.65]


def test_a_file_tried_again_later_is_one_point_where_it_was_decided():
    """d.csv failed twice (its runs scored nothing), then was decided after c.csv: the line went back to d.csv's
    first place on the axis and forward again."""
    runs = pd.DataFrame({
        "run_name": ["a.csv", "d.csv", "b.csv", "d.csv", "c.csv", "d.csv", "e.csv"],
        "decision": ["train", "failed", "no_drift", "failed", "held", "retrain_promoted", "no_drift"],
        "champion_version": [1, 1, 1, 1, 1, 2, 2],
        "metric.champion_accuracy": [None, None, 0.96, None, None, 0.70, 0.74],
        "metric.serving_full_batch_accuracy": [None, None, None, None, None, 0.75, None],
    })
    line = {t.name: t for t in performance_over_time(runs, "accuracy", None).data}["champion accuracy"]
    assert list(line.x) == ["a.csv", "b.csv", "d.csv", "e.csv"]
    assert pd.isna(line.y[0]) and list(line.y[1:]) == [0.96, 0.75, 0.74]


def test_a_quarantined_file_is_no_point_of_the_line():
    """A refused file scored nothing: it is not on the axis (``quarantined``, as the runs' frame words it)."""
    runs = pd.DataFrame({
        "run_name": ["a.csv", "bad.csv", "c.csv"], "decision": ["train", "quarantined", "no_drift"],
        "champion_version": [1, 1, 1], "metric.champion_accuracy": [None, None, 0.9],
    })
    line = {t.name: t for t in performance_over_time(runs, "accuracy", None).data}["champion accuracy"]
    assert list(line.x) == ["a.csv", "c.csv"]


def test_confusion_matrices_name_the_classes_on_both_axes():
    """Classes 0 and 1 were drawn on numeric axes, with ticks at -0.5, 0, 0.5, 1 and 1.5."""
    from calmops.dashboards.charts import confusion

    fig = confusion([[50, 3], [4, 43]], [0, 1], "champion v1 confusion matrix")
    assert (fig.layout.xaxis.type, fig.layout.yaxis.type) == ("category", "category")
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("predicted", "actual")
    assert list(fig.data[0].x) == list(fig.data[0].y) == ["0", "1"]


def test_a_titled_chart_puts_its_untitled_legend_below_the_plot_and_the_title_above():
    """Both sat at the top, where the legend's title 'series' was drawn over the chart's title."""
    from calmops.dashboards.charts import metric_lines

    frame = pd.DataFrame({"run": ["a.csv", "b.csv"], "ipip.p": [3, 3], "ipip.b": [5, 4]})
    layout = metric_lines(frame, "run", ["ipip.p", "ipip.b"], "Ensemble sizes (p, b)").layout
    assert not layout.legend.title.text
    assert (layout.title.text, layout.title.yref, layout.title.y, layout.title.yanchor) == (
        "Ensemble sizes (p, b)", "container", 1, "top")
    assert (layout.legend.yref, layout.legend.y, layout.legend.yanchor) == ("container", 0, "bottom")


def test_the_decision_timeline_names_its_rows_and_has_no_legend_to_cover_them():
    from calmops.dashboards.charts import decisions_timeline

    runs = pd.DataFrame({"start_time": pd.date_range("2026-01-01", periods=3, freq="min"),
                         "run_name": list("abc"), "decision": ["train", "no_drift", "retrain_promoted"]})
    fig = decisions_timeline(runs)
    assert fig.layout.showlegend is False
    assert {y for trace in fig.data for y in trace.y} == set(runs["decision"])  # named on the axis


def test_per_block_metrics_run_oldest_to_newest_and_blocks_of_one_run_each_are_bars():
    """MLflow lists the newest run's metrics first: the x-axis ran newest to oldest, and blocks that one file
    each held were lone dots, a legend entry apiece."""
    from calmops.dashboards.charts import bars_by_run, lines_over_runs
    from calmops.dashboards.views.blocks import block_metrics, one_run_each

    runs = pd.DataFrame({"run_name": ["jan.csv", "feb.csv", "mar.csv"],  # oldest first, as in runs_frame
                         "metric.block_m3_accuracy": [None, None, 0.7],
                         "metric.block_m2_accuracy": [None, 0.8, None],
                         "metric.block_m1b_accuracy": [0.85, None, None],
                         "metric.block_m1a_accuracy": [0.9, None, None]})
    long = block_metrics(runs)
    assert long["run"].tolist() == ["jan.csv", "jan.csv", "feb.csv", "mar.csv"]
    assert long["block"].tolist() == ["m1a", "m1b", "m2", "m3"] and one_run_each(long)
    bars = bars_by_run(long, "run", "value", "block")
    assert {t.type for t in bars.data} == {"bar"}
    assert [t.name for t in bars.data] == ["jan.csv", "feb.csv", "mar.csv"]
    assert list(bars.layout.xaxis.categoryarray) == ["m1a", "m1b", "m2", "m3"]

    again = pd.concat([runs, pd.DataFrame({"run_name": ["apr.csv"], "metric.block_m3_accuracy": [0.6]})])
    long = block_metrics(again.reset_index(drop=True))
    assert not one_run_each(long)
    lines = lines_over_runs(long, "run", "value", "block")
    assert list(lines.layout.xaxis.categoryarray) == ["jan.csv", "feb.csv", "mar.csv", "apr.csv"]


def test_scores_at_registration_list_the_models_in_one_order_in_the_chart_and_the_table():
    """The chart listed champion, challenger, previous; the table beside it (a pivot) sorted them by name."""
    from calmops.dashboards.charts import scores_bars
    from calmops.dashboards.data import registration_scores, scores_table

    reg = {"aliases": {"previous": 1, "champion": 2, "challenger": 3},
           "versions": [{"version": v, "scores": {"accuracy": 0.8 + v / 100, "f1_macro": 0.7}}
                        for v in (1, 2, 3)]}
    scores = registration_scores(reg)
    table = scores_table(scores)
    assert [t.name for t in scores_bars(scores).data] == list(table.columns[1:]) == [
        "champion v2", "challenger v3", "previous v1"]
    challenger = reg["versions"][2]["scores"]["accuracy"]
    assert table.set_index("metric").loc["accuracy", "challenger v3"] == challenger
