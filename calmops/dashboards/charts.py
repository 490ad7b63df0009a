"""Plotly figures of the viewer (pure functions of frames, so they are testable without Streamlit)."""

from __future__ import annotations

import re

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from calmops.core.names import QUARANTINED, Decision
from calmops.dashboards.data import serving_scores

DECISION_COLORS = {
    "train": "#2e7d32", "retrain_promoted": "#1565c0", "no_drift": "#9e9e9e", "retrain_rejected": "#ef6c00",
    "predict_only": "#6a1b9a", "skipped_breaker_open": "#c62828", QUARANTINED: "#ad1457", "failed": "#b71c1c",
}
HEIGHT = 360


def _layout(fig: go.Figure, title: str | None = None, height: int = HEIGHT) -> go.Figure:
    """Size, margins and a horizontal legend: above the plot, or at the bottom of a figure with a ``title``
    (the title takes the top; the two there overlapped). Each pushes the margins it needs, so neither covers
    the plot."""
    legend = {"orientation": "h", "x": 0, "yanchor": "bottom"}
    heading = None
    if title:
        legend.update(yref="container", y=0)
        heading = {"text": title, "automargin": True, "yref": "container", "y": 1, "yanchor": "top",
                   "pad": {"t": 10}}
    else:
        legend.update(y=1.02)
    fig.update_layout(title=heading, height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      legend=legend)
    return fig


def drift_heatmap(matrix: pd.DataFrame) -> go.Figure:
    """Features × runs, effect / minimum effect; 1.0 is the drift threshold (the colour turns red above it)."""
    zmax = max(2.0, float(matrix.max().max()) if not matrix.empty else 2.0)
    mid = 1.0 / zmax
    fig = go.Figure(go.Heatmap(
        z=matrix.values, x=list(matrix.columns), y=list(matrix.index),
        colorscale=[[0, "#e8f5e9"], [mid * 0.999, "#fff59d"], [mid, "#ef9a9a"], [1, "#b71c1c"]],
        zmin=0, zmax=zmax, colorbar={"title": "effect /<br>threshold"},
        hovertemplate="run %{x}<br>%{y}: %{z:.2f}× the minimum effect<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-45)
    return _layout(fig, height=max(240, 60 + 24 * len(matrix.index)))


def culprits_bar(ranking: pd.DataFrame) -> go.Figure:
    top = ranking.head(20)
    fig = px.bar(top, x="times_drifted", y="feature", orientation="h", hover_data=["share_of_runs", "worst_score"])
    fig.update_yaxes(autorange="reversed", type="category")
    return _layout(fig, height=max(220, 60 + 24 * len(top)))


def reference_histogram(frames: dict[str, pd.Series], feature: str, numeric: bool) -> go.Figure:
    """Overlaid reference distributions of one feature (one trace per model version)."""
    fig = go.Figure()
    for name, values in frames.items():
        if numeric:
            fig.add_trace(go.Histogram(x=values, name=name, opacity=0.55, histnorm="probability density", nbinsx=40))
        else:
            share = values.astype(str).value_counts(normalize=True).sort_index()
            fig.add_trace(go.Bar(x=share.index, y=share.values, name=name, opacity=0.7))
    fig.update_layout(barmode="overlay" if numeric else "group", xaxis_title=feature,
                      yaxis_title="density" if numeric else "share of rows")
    return _layout(fig)


def _in_frame_order(fig: go.Figure, frame: pd.DataFrame, x: str) -> None:
    """``x`` as names, left to right in the frame's order (runs oldest first), not in the order the traces
    happen to meet them."""
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(dict.fromkeys(frame[x])))


def lines_over_runs(frame: pd.DataFrame, x: str, y: str, color: str, title: str | None = None,
                    threshold_col: str | None = None) -> go.Figure:
    """One line per ``color`` value over ``x`` (runs, in the frame's order)."""
    fig = px.line(frame, x=x, y=y, color=color, markers=True)
    if threshold_col and threshold_col in frame:
        for method, part in frame.groupby(color):
            fig.add_trace(go.Scatter(x=part[x], y=part[threshold_col], mode="lines", line={"dash": "dot"},
                                     name=f"{method} threshold", showlegend=True))
    _in_frame_order(fig, frame, x)
    return _layout(fig, title)


def bars_by_run(frame: pd.DataFrame, run: str, y: str, item: str) -> go.Figure:
    """One bar per ``item`` (e.g. block) in the frame's order, coloured by its ``run``: for items scored in
    one run each, which lines over runs would draw as lone dots with a legend entry apiece."""
    fig = px.bar(frame, x=item, y=y, color=run, category_orders={run: list(dict.fromkeys(frame[run]))})
    _in_frame_order(fig, frame, item)
    return _layout(fig)


def concept_heatmap(frame: pd.DataFrame) -> go.Figure:
    pivot = frame.pivot_table(index="detector", columns="run", values="alarm", aggfunc="max", sort=False)
    fig = go.Figure(go.Heatmap(z=pivot.values, x=list(pivot.columns), y=list(pivot.index), zmin=0, zmax=1,
                               colorscale=[[0, "#e8f5e9"], [1, "#c62828"]], showscale=False,
                               hovertemplate="run %{x}<br>%{y}: alarm=%{z}<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-45)
    return _layout(fig, height=max(180, 80 + 30 * len(pivot.index)))


def realized_columns(runs: pd.DataFrame, metric: str) -> list[tuple[str, int]]:
    """(column, version) of the realized scores a labels file recorded (``realized_v<N>_<metric>``), by version."""
    found = [(c, re.fullmatch(rf"metric\.realized_v(\d+)_{re.escape(metric)}", c)) for c in runs.columns]
    return sorted(((c, int(m.group(1))) for c, m in found if m), key=lambda cv: cv[1])


#: decisions whose runs score nothing on the file
UNSCORED = (Decision.FAILED, Decision.HELD, Decision.DUPLICATE, QUARANTINED)  # runs_frame's words


def performance_over_time(runs: pd.DataFrame, metric: str, bounds: dict | None) -> go.Figure:
    """The champion's metric on every whole batch (the serving model's score, :func:`data.serving_scores`),
    its estimate without labels (with its band), the realized scores of the predictions once their labels came
    (per model version), the challengers' on their holdout, the spec's floor/ceiling, promotions marked.
    One point per file, at the run that decided it: a run that scored nothing (failed, held, a duplicate, a
    refused file) is left out, so a file tried again later does not pull the line back to its first try."""
    fig = go.Figure()
    scored = runs[~runs["decision"].isin(UNSCORED)]
    runs = scored.drop_duplicates("run_name", keep="last")
    x = runs["run_name"]
    serving = serving_scores(runs, metric)
    if serving.notna().any():
        fig.add_trace(go.Scatter(x=x, y=serving, mode="lines+markers", name=f"champion {metric}",
                                 connectgaps=True))
    challenger = f"metric.challenger_{metric}"
    if challenger in runs:
        fig.add_trace(go.Scatter(x=x, y=runs[challenger], mode="lines+markers", name=f"challenger {metric}",
                                 line={"dash": "dot"}))
    estimated = f"metric.estimated_{metric}"
    if estimated in runs:  # the estimate without labels, its band shaded
        est = runs[runs[estimated].notna()]
        band = [f"{estimated}_low", f"{estimated}_high"]
        if all(c in est for c in band):
            names = list(est["run_name"])
            fig.add_trace(go.Scatter(x=names + names[::-1], y=list(est[band[1]]) + list(est[band[0]])[::-1],
                                     mode="lines", fill="toself", fillcolor="rgba(106, 27, 154, 0.12)", line={"width": 0},
                                     hoverinfo="skip", name="estimate band (95 %)"))
        fig.add_trace(go.Scatter(x=est["run_name"], y=est[estimated], mode="lines+markers",
                                 name=f"estimated {metric}", line={"dash": "dash", "color": "#6a1b9a"}))
    for col, version in realized_columns(runs, metric):  # labels that came later: each version's own predictions
        part = runs[runs[col].notna()]
        fig.add_trace(go.Scatter(x=part["run_name"], y=part[col], mode="markers", marker={"symbol": "diamond", "size": 10},
                                 name=f"realized {metric} of v{version} (late labels)"))
    for key, label in (("min", "floor"), ("max", "ceiling")):
        value = (bounds or {}).get(key)
        if value is not None:
            fig.add_hline(y=value, line={"color": "#c62828", "dash": "dash"},
                          annotation_text=f"{label} {value}", annotation_position="bottom right")
    promoted = runs[runs["decision"].isin(["train", "retrain_promoted"])]
    for _, r in promoted.iterrows():
        fig.add_vline(x=r["run_name"], line={"color": "#1565c0", "width": 1, "dash": "dot"})
    if not promoted.empty:
        y = promoted.get(f"metric.challenger_{metric}")
        fig.add_trace(go.Scatter(x=promoted["run_name"], y=y if y is not None else [None] * len(promoted),
                                 mode="markers", marker={"symbol": "star", "size": 14, "color": "#1565c0"},
                                 name="promotion", text=[f"v{v}" for v in promoted["champion_version"]],
                                 hovertemplate="%{x}: promoted %{text}<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(title=metric)
    return _layout(fig)


def decisions_timeline(runs: pd.DataFrame) -> go.Figure:
    """Each run's decision over time, one row per decision. The rows name the decisions, so there is no legend
    (it covered the top row's markers)."""
    fig = px.scatter(runs, x="start_time", y="decision", color="decision", hover_name="run_name",
                     color_discrete_map=DECISION_COLORS, category_orders={"decision": list(DECISION_COLORS)})
    fig.update_traces(marker={"size": 12})
    fig.update_layout(showlegend=False)
    return _layout(fig, height=260)


def scores_bars(frame: pd.DataFrame) -> go.Figure:
    """Grouped bars: one group per metric, one bar per model (frame: model, metric, value)."""
    fig = px.bar(frame, x="metric", y="value", color="model", barmode="group")
    return _layout(fig)


def confusion(matrix: list[list[float]], labels: list, title: str) -> go.Figure:
    """Rows: the actual class, columns: the predicted one; the classes named on both axes as text (classes 0
    and 1 are names, with nothing at 0.5 between them)."""
    names = [str(v) for v in labels]
    fig = px.imshow(matrix, x=names, y=names, text_auto=True, color_continuous_scale="Blues",
                    labels={"x": "predicted", "y": "actual", "color": "rows"})
    fig.update_xaxes(type="category", title="predicted")
    fig.update_yaxes(type="category", title="actual")
    return _layout(fig, title, height=300)


def matrix_heatmap(frame: pd.DataFrame, title: str | None = None, scale: str | None = None) -> go.Figure:
    """A labelled square matrix (``scale`` titles its colour bar)."""
    fig = px.imshow(frame, text_auto=".2f", color_continuous_scale="OrRd", aspect="auto",
                    labels={"color": scale} if scale else {})
    fig.update_xaxes(type="category")  # block names are names, even "7" and "8" (no 7.5 between them)
    fig.update_yaxes(type="category")
    return _layout(fig, title, height=max(300, 80 + 36 * len(frame.index)))


def metric_lines(frame: pd.DataFrame, x: str, columns: list[str], title: str | None = None) -> go.Figure:
    """One line per column of ``frame`` over ``x``; the legend names the columns (it has no title)."""
    long = frame.melt(id_vars=[x], value_vars=columns, var_name="series", value_name="value").dropna()
    fig = px.line(long, x=x, y="value", color="series", markers=True)
    fig.update_layout(legend_title_text=None)
    _in_frame_order(fig, frame, x)
    return _layout(fig, title)
