"""IPIP view: ensemble sizes, p, b and the replaced share per run of IPIP pipelines."""

from __future__ import annotations

import streamlit as st

from calmops.dashboards import cache, charts, data, ui


def render() -> None:
    ui.render_page("IPIP ensembles", body)


def body(conn: data.Connection, pipelines: list[dict]) -> None:
    ipips = ui.pipelines_of_kind(conn, pipelines, "ipip")
    if not ipips:
        st.info("No IPIP pipeline yet. An IPIP pipeline (`kind: ipip`, imbalanced binary target, block data) keeps "
                "an ensemble of p balanced sub-ensembles of b models each and replaces part of it on every batch; "
                "its p, b and replaced share per run appear here.")
        return
    by_name = {p["name"]: runs for p, runs in ipips}
    name = st.selectbox("IPIP pipeline", list(by_name), key="ipip_pipeline")
    runs = by_name[name]
    recorded = runs[runs["decision"] != ""]
    recent = recorded.tail(200)
    by_uri = cache.artifacts_json(conn, recent["artifact_uri"], "outcome.json")
    outcomes = {r: by_uri.get(u) for r, u in zip(recent["run_id"], recent["artifact_uri"], strict=True)}
    frame = data.ipip_frame(recorded.tail(200), outcomes)
    series = [c for c in frame.columns if c not in ("run", "decision")]
    numeric = [c for c in series if frame[c].dtype.kind in "fiub"]
    if not numeric:
        st.caption("No IPIP numbers (p, b, replaced share) recorded yet.")
    else:
        # the two sizes and the replaced share (the table below has every detail)
        sizes = [c for c in ("ipip.p", "ipip.b") if c in numeric]
        shares = [c for c in numeric if c.startswith("ipip.") and "share" in c]
        left, right = st.columns(2)
        with left:
            if sizes:
                ui.plot(charts.metric_lines(frame, "run", sizes, "Ensemble sizes (p, b)"))
        with right:
            if shares:
                ui.plot(charts.metric_lines(frame, "run", shares, "Replaced share"))
    ui.show_frame(frame.iloc[::-1], key="ipip_table")
    st.caption("From the `ipip` details of each run's outcome.json, or its `ipip_*` metrics where a run has "
               "no such detail (each quantity once); IPIP numbers an older run kept at the top of its details as "
               "`details.*`.")
