"""Block view: per-block metrics and the between-block drift matrix of block pipelines.

The block kind records its per-block results in the run's ``outcome.json`` under ``details["blocks"]`` and
``details["drift_matrix"]``, and per-block scores as ``block_<name>_<metric>`` metrics (the champion's) and
``block_<name>_challenger_<metric>`` (a retrained challenger's on the evaluation blocks); whatever shape those
have is rendered generically.
"""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from calmops.core.names import block_order
from calmops.dashboards import cache, charts, data, ui

BLOCK_METRIC = re.compile(r"^metric\.block_(?P<block>.+)_(?P<metric>[a-z_]+?)$")
CHALLENGER = "_challenger"  # block_<name>_challenger_<metric>: the challenger's score on that block
MATRIX_CAPTION = (
    "Each cell compares two blocks of this file: the largest, over the features, of the effect size "
    "between them divided by that test's minimum effect (0 on the diagonal). Higher means the two blocks "
    "differ more; 1 or more means some feature's effect reaches its minimum. That feature drifts between the "
    "two if its p-value, corrected over the whole matrix, is also below the spec's alpha; the pair drifts "
    "when its drifting features meet the spec's aggregation rule.")
KNOWN_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "f1", "precision", "recall", "roc_auc", "pr_auc",
                 "log_loss", "rmse", "mae", "mse", "r2", "mape", "rows", "drift", "drift_detected")


def _block_metric(col: str) -> tuple[str, str, str] | None:
    """(block, metric, model) of a ``metric.block_<name>_<metric>`` column (model ``champion``) or a
    ``metric.block_<name>_challenger_<metric>`` one (model ``challenger``), None for any other column."""
    if not col.startswith("metric.block_"):
        return None
    rest = col.removeprefix("metric.block_")
    metric = next((m for m in sorted(KNOWN_METRICS, key=len, reverse=True) if rest.endswith("_" + m)), None)
    if metric is not None:
        block = rest[: -len(metric) - 1]
    elif match := BLOCK_METRIC.match(col):
        block, metric = match["block"], match["metric"]
    else:
        return None
    if block.endswith(CHALLENGER) and block != CHALLENGER:
        return block.removesuffix(CHALLENGER), metric, "challenger"
    return block, metric, "champion"


def block_metrics(runs: pd.DataFrame) -> pd.DataFrame:
    """Long frame (run, block, metric, model, value) from ``block_<name>[_challenger]_<metric>`` metrics, in
    run order (oldest first) and in block order within a run (:func:`~calmops.core.names.block_order`)."""
    columns = ["run", "block", "metric", "model", "value"]
    found = {col: parsed for col in runs.columns if (parsed := _block_metric(col))}
    if not found:
        return pd.DataFrame(columns=columns)
    wide = runs[["run_name", *found]].reset_index(drop=True).rename(columns={"run_name": "run"})
    long = wide.reset_index(names="position").melt(id_vars=["position", "run"], var_name="column")
    long = long.dropna(subset="value")
    long["block"] = long["column"].map(lambda c: found[c][0])
    long["metric"] = long["column"].map(lambda c: found[c][1])
    long["model"] = long["column"].map(lambda c: found[c][2])
    long["order"] = long["block"].map(block_order)
    return long.sort_values(["position", "order"], kind="stable")[columns].reset_index(drop=True)


def per_run(long: pd.DataFrame) -> pd.DataFrame:
    """One row per run (oldest first), one column per block in block order: the ``value`` of ``long``."""
    wide = long.pivot_table(index="run", columns="block", values="value", sort=False)
    return wide[sorted(wide.columns, key=block_order)].reset_index()


def one_run_each(long: pd.DataFrame) -> bool:
    """Whether every block has a value in one run only (each file holds its own blocks): no line to draw."""
    return bool(long.groupby("block")["run"].nunique().max() <= 1)


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
        ui.plot(charts.matrix_heatmap(tables["drift_matrix"], scale="effect /<br>minimum effect"))
        st.caption(MATRIX_CAPTION)
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
    chosen = long[long["metric"] == metric]
    part, challenger = chosen[chosen["model"] == "champion"], chosen[chosen["model"] == "challenger"]
    if part.empty:
        st.caption(f"No champion {metric} per block: only challengers scored it (below).")
    elif one_run_each(part):
        ui.plot(charts.bars_by_run(part, "run", "value", "block"))
        st.caption(f"Each block has a {metric} from one run only (each file holds its own blocks), so there "
                   "is no line to draw: one bar per block, oldest run first, coloured by the run that scored "
                   "it.")
    else:
        ui.plot(charts.lines_over_runs(part, "run", "value", "block"))
    if not part.empty:
        ui.show_frame(per_run(part), key="block_metrics")
    if not challenger.empty:
        st.markdown(f"**Challenger {ui.plain(metric)} per evaluation block**")
        ui.show_frame(per_run(challenger), key="block_challenger_metrics")
        st.caption("In the runs that trained a challenger: its score on the held-out rows of each evaluation "
                   "block (`block_<name>_challenger_<metric>`); the champion's scores above are on each whole "
                   "block of the file.")
