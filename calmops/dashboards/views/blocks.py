"""Block view: per-block metrics and the between-block drift matrix of block pipelines.

The block kind records its per-block results in the run's ``outcome.json`` under ``details["blocks"]`` and
``details["drift_matrix"]``, and per-block scores as ``block_<name>_<metric>`` metrics; whatever shape those
have is rendered generically.
"""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from calmops.dashboards import cache, charts, data, ui

BLOCK_METRIC = re.compile(r"^metric\.block_(?P<block>.+)_(?P<metric>[a-z_]+?)$")
KNOWN_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "f1", "precision", "recall", "roc_auc", "pr_auc",
                 "log_loss", "rmse", "mae", "mse", "r2", "mape", "rows", "drift", "drift_detected")


def block_metrics(runs: pd.DataFrame) -> pd.DataFrame:
    """Long frame (run, block, metric, value) from ``block_<name>_<metric>`` metrics."""
    rows = []
    for col in runs.columns:
        if not col.startswith("metric.block_"):
            continue
        rest = col.removeprefix("metric.block_")
        metric = next((m for m in sorted(KNOWN_METRICS, key=len, reverse=True) if rest.endswith("_" + m)), None)
        if metric is None:
            match = BLOCK_METRIC.match(col)
            if not match:
                continue
            block, metric = match["block"], match["metric"]
        else:
            block = rest[: -len(metric) - 1]
        for run, value in zip(runs["run_name"], runs[col], strict=True):
            if pd.notna(value):
                rows.append({"run": run, "block": block, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=["run", "block", "metric", "value"])


def render() -> None:
    ui.render_page("Blocks", body)


def body(conn: data.Connection, pipelines: list[dict]) -> None:
    blocky = ui.pipelines_of_kind(conn, pipelines, "block")
    if not blocky:
        st.info("No block pipeline yet. A block pipeline (`kind: block` with a `block_column`, e.g. months or "
                "hospitals) reads several blocks per file; its per-block metrics and between-block drift matrix "
                "appear here.")
        return
    by_name = {p["name"]: runs for p, runs in blocky}
    name = st.selectbox("Block pipeline", list(by_name), key="block_pipeline")
    runs = by_name[name]
    recorded = runs[runs["decision"] != ""]
    if recorded.empty:
        st.info("No recorded run yet.")
        return
    options = list(recorded["run_id"])[::-1]
    names = dict(zip(recorded["run_id"], recorded["run_name"], strict=True))
    run_id = st.selectbox("Run", options, format_func=names.get, key="block_run")
    uri_of = dict(zip(recorded["run_id"], recorded["artifact_uri"], strict=True))
    outcome = cache.artifact_json(conn, uri_of[run_id], "outcome.json") or {}
    tables = data.block_tables(outcome.get("details"))
    st.subheader("Per-block results")
    if "blocks" in tables:
        ui.show_frame(tables["blocks"].reset_index(names="block") if tables["blocks"].index.dtype == object
                      else tables["blocks"], key="blocks_table")
    else:
        st.caption("This run recorded no per-block details.")
    st.subheader("Between-block drift matrix")
    if "drift_matrix" in tables:
        ui.plot(charts.matrix_heatmap(tables["drift_matrix"]))
        ui.show_frame(tables["drift_matrix"].reset_index(names="block"), key="drift_matrix")
    else:
        st.caption("This run recorded no drift matrix.")
    other = {k: v for k, v in (outcome.get("details") or {}).items() if k not in ("blocks", "drift_matrix")}
    if other:
        with st.expander("Other details of this run"):
            st.json(other)
    st.subheader("Per-block metrics over runs")
    long = block_metrics(runs)
    if long.empty:
        st.caption("No `block_<name>_<metric>` metrics logged.")
        return
    metric = st.selectbox("Metric", sorted(long["metric"].unique()), key="block_metric")
    part = long[long["metric"] == metric]
    ui.plot(charts.lines_over_runs(part, "run", "value", "block"))
    ui.show_frame(part.pivot_table(index="run", columns="block", values="value", sort=False).reset_index(),
                  key="block_metrics")
