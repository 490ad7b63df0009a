"""Pieces every page shares: the connection, the sidebar, auto-refresh, the pipeline picker, notices."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from calmops.dashboards import cache, data

REFRESH_CHOICES = {"off": None, "10 s": 10, "30 s": 30, "1 min": 60, "5 min": 300}
DEFAULT_REFRESH = "30 s"
EMPTY_HINT = (
    "No pipeline has recorded anything yet. Create one with `calmops create SPEC.yaml` (every key is in "
    "docs/spec.md) and drop a file into its incoming folder, or run `make demo` (`calmops demo`) to see a "
    "drifting SEA stream go through a demo pipeline."
)


EMPTY = "—"  # what the viewer shows where there is no value (a table's empty cell too)

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=\"'^])")


def plain(value: Any) -> str:
    """Text from data (column and file names, reasons, errors) made inert for Streamlit's markdown.

    Every markdown-significant character gets a backslash, so ``![b](http://…)`` shows as those characters
    instead of an image the browser would fetch; HTML is never enabled anyway.
    """
    return _MARKDOWN.sub(r"\\\1", str(value)).replace("\n", " ")


def connection() -> data.Connection:
    if "_calmops_conn" not in st.session_state:
        st.session_state["_calmops_conn"] = data.connection()
    return st.session_state["_calmops_conn"]


def sidebar(conn: data.Connection) -> None:
    with st.sidebar:
        st.markdown("### Services")
        if conn.prefect_ui:
            st.link_button("Prefect UI ↗", conn.prefect_ui, width="stretch")
        else:
            st.caption("Prefect UI: not running (`calmops up` starts it)")
        if conn.mlflow_ui:
            st.link_button("MLflow UI ↗", conn.mlflow_ui, width="stretch")
        else:
            st.caption("MLflow UI: not running (`calmops up` starts it)")
        st.caption(f"MLflow tracking: `{conn.tracking_uri}`  \nPrefect API: `{conn.prefect_api or '—'}`")
        st.markdown("### Refresh")
        st.selectbox("Auto-refresh", list(REFRESH_CHOICES), index=list(REFRESH_CHOICES).index(DEFAULT_REFRESH),
                     key="refresh_every", help="Monitoring pages re-read MLflow and Prefect on this period.")
        if st.button("Refresh now", width="stretch"):
            cache.clear()
            st.rerun()


def refresh_seconds() -> int | None:
    return REFRESH_CHOICES.get(st.session_state.get("refresh_every", DEFAULT_REFRESH))


def auto_refresh(body: Callable[[], None]) -> None:
    """Run a page body in a fragment that reruns by itself on the chosen period."""
    every = refresh_seconds()
    if every is None:
        body()
    else:
        st.fragment(run_every=every)(body)()


def mlflow_ok(conn: data.Connection) -> bool:
    problem = cache.check_mlflow(conn)
    if problem:
        st.error(f"Cannot read MLflow: {plain(problem)}")
        st.caption("Start the stack with `calmops up`, or point `MLFLOW_TRACKING_URI` (or `CALMOPS_HOME`) at the "
                   "store your pipelines write to, then press *Refresh now*.")
        return False
    return True


def prefect_problem(conn: data.Connection) -> str | None:
    return cache.check_prefect(conn)


def pipelines(conn: data.Connection) -> list[dict[str, Any]] | None:
    """The pipelines, or None after showing why they cannot be read."""
    if not mlflow_ok(conn):
        return None
    try:
        return cache.list_pipelines(conn)
    except Exception as exc:  # noqa: BLE001 - shown, not raised
        st.error(f"Cannot list pipelines from MLflow: {plain(exc)}")
        return None


def empty_state() -> None:
    st.info(EMPTY_HINT, icon="ℹ️")


def render_page(title: str, body: Callable[[data.Connection, list[dict[str, Any]]], None]) -> None:
    """The frame every page shares: title, pipelines (or the empty state), then an auto-refreshed body."""
    conn = connection()
    st.title(title)
    found = pipelines(conn)
    if found is None:
        return
    if not found:
        empty_state()
        return
    auto_refresh(lambda: body(conn, found))


def pipelines_of_kind(conn: data.Connection, found: list[dict[str, Any]], kind: str) -> list[tuple[dict, pd.DataFrame]]:
    """(pipeline, its runs) for the pipelines of ``kind``."""
    out = []
    for p in found:
        runs = cache.runs_frame(conn, p["experiment_id"])
        if pipeline_kind(conn, p["name"], runs) == kind:
            out.append((p, runs))
    return out


def pick_pipeline(names: list[str], label: str = "Pipeline", key: str = "pipeline") -> str | None:
    """A select box kept in the URL (``?pipeline=NAME``) so that a page can be linked and reloaded."""
    if not names:
        return None
    wanted = st.query_params.get("pipeline")
    if wanted and wanted not in names:  # a link to a pipeline that is gone or misspelt: say so, show the first
        st.warning(f"No pipeline named {plain(wanted)} here; showing {plain(names[0])}. "
                   "See 'calmops list' for the pipelines there are.")
    index = names.index(wanted) if wanted in names else 0
    choice = st.selectbox(label, names, index=index, key=key)
    if st.query_params.get("pipeline") != choice:
        st.query_params["pipeline"] = choice
    return choice


def kind_of(runs: pd.DataFrame) -> str:
    """The kind the runs recorded (the latest), or :data:`EMPTY`."""
    if runs.empty:
        return EMPTY
    kinds = [k for k in runs["kind"].tolist() if k] + [
        k for k in runs.get("param.kind", pd.Series(dtype=str)).dropna().tolist() if k]
    return kinds[-1] if kinds else EMPTY


def pipeline_kind(conn: data.Connection, name: str, runs: pd.DataFrame) -> str:
    """A pipeline's kind: as its runs recorded it, else as its spec says (a pipeline without runs yet)."""
    recorded = kind_of(runs)
    return recorded if recorded != EMPTY else cache.spec_kind(conn, name) or EMPTY


def version_text(v: Any) -> str:
    return EMPTY if v is None or pd.isna(v) else f"v{int(v)}"


def yes_no(value: bool | None) -> str:
    """A yes/no answer as shown; :data:`EMPTY` when there is none (a drift that was never checked)."""
    return EMPTY if value is None else "yes" if value else "no"


def show_frame(frame: pd.DataFrame, **kw) -> None:
    """Every table of the viewer: full width, no index, an empty cell (None, NaN) drawn as :data:`EMPTY`
    (Streamlit writes "None" there otherwise)."""
    st.dataframe(frame, width="stretch", hide_index=kw.pop("hide_index", True), placeholder=EMPTY, **kw)


def plot(fig) -> None:
    st.plotly_chart(fig, width="stretch", config={"displaylogo": False})


def fmt_time(ts: Any, short: bool = False) -> str:
    if ts is None or (not isinstance(ts, str) and pd.isna(ts)):
        return EMPTY
    return pd.Timestamp(ts).strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S UTC")
