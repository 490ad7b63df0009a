"""Overview: every pipeline at a glance (health, breaker, champion, last file and decision, drift)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from calmops.dashboards import cache, data, ui

# the overview needs each pipeline's latest runs only; a pipeline's page reads all of them
RECENT_RUNS = 50
HEALTH_WORDS = {"ok": "ok", "drift": "drift", "failing": "failing", "bad input": "file quarantined",
                "down": "breaker open", "new": "no run yet"}


def summary(conn: data.Connection, pipeline: dict[str, Any], prefect_ok: bool) -> dict[str, Any]:
    """One overview row, from one search_runs (the latest runs only), the registry and the breaker block."""
    name = pipeline["name"]
    runs = cache.runs_frame(conn, pipeline["experiment_id"], max_results=RECENT_RUNS)
    reg = cache.registry_info(conn, name)
    champion = reg["aliases"].get("champion")
    recorded = runs[runs["decision"] != ""] if not runs.empty else runs
    last = recorded.iloc[-1] if not recorded.empty else None
    breaker_state = None
    if prefect_ok:
        try:
            breaker_state = cache.breaker(conn, name)["state"]
        except Exception:  # noqa: BLE001 - shown as unknown
            breaker_state = None
    last_decision = last["decision"] if last is not None else None
    drift = last["drift"] if last is not None else None  # None too where the last file was not checked
    return {
        "pipeline": name,
        "kind": ui.pipeline_kind(conn, name, runs),
        "health": HEALTH_WORDS[data.health(last_decision, breaker_state, drift, cache.bad_input_fails(conn, name))],
        "breaker": breaker_state or "unknown",
        "champion": ui.version_text(champion),
        "champion age": data.age_text(data.champion_since(reg)),
        "runs": f"{RECENT_RUNS}+" if len(runs) >= RECENT_RUNS else str(len(runs)),
        "last file": data.shown_file(last) if last is not None else "—",
        "last decision": last_decision or "—",
        "last run": ui.fmt_time(last["start_time"], short=True) if last is not None else "—",
        "drift": _drift_text(drift, last["drifted_features"] if last is not None else ""),
        "view": f"./pipeline?pipeline={name}",
        "MLflow": data.mlflow_experiment_url(conn, pipeline["experiment_id"]),
    }


def _drift_text(drift: bool | None, features: str) -> str:
    if not drift:
        return ui.yes_no(drift)
    names = [f for f in (features or "").split(",") if f]
    return "yes" + (f" ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})" if names else "")


def render() -> None:
    conn = ui.connection()
    st.title("CalmOps pipelines")
    ui.auto_refresh(lambda: body(conn))


def body(conn: data.Connection) -> None:
    pipelines = ui.pipelines(conn)
    if pipelines is None:
        return
    if not pipelines:
        ui.empty_state()
        return
    problem = ui.prefect_problem(conn)
    if problem:
        st.warning(f"Breaker states unknown: {ui.plain(problem)}.")
    rows = []
    for p in pipelines:
        try:
            rows.append(summary(conn, p, problem is None))
        except Exception as exc:  # noqa: BLE001 - one broken pipeline does not hide the others
            rows.append({"pipeline": p["name"], "health": "⚠️ unreadable", "last decision": f"error: {exc}"})
    table = pd.DataFrame(rows)
    cols = st.columns(4)
    cols[0].metric("Pipelines", len(table))
    cols[1].metric("Drift in last run", int(table.get("drift", pd.Series(dtype=str)).astype(str).str.startswith("yes").sum()))
    breakers = table.get("breaker", pd.Series(dtype=str))
    cols[2].metric("Breakers open", "unknown" if problem else int((breakers == "open").sum()))  # Prefect down
    cols[3].metric("Runs recorded", int(pd.to_numeric(table.get("runs"), errors="coerce").fillna(0).sum()))
    ui.show_frame(table, key="overview_table", column_config={
        "view": st.column_config.LinkColumn("details", display_text="open"),
        "MLflow": st.column_config.LinkColumn("MLflow", display_text="experiment ↗"),
        "runs": st.column_config.NumberColumn("runs", format="%d"),
    })
    st.caption(f"Read at {ui.fmt_time(pd.Timestamp.now(tz='UTC'))}. Health: *breaker open*; *failing*: the last run "
               "failed or the breaker is half-open; *file quarantined*: the last file was refused (bad input, "
               "which the breaker does not count unless breaker.count_bad_input is set; the file waits in quarantine "
               "with its reason); *drift*: the last batch drifted; *ok*; "
               "*no run yet*: no file has reached the pipeline.")
    recent = _recent_runs(conn, pipelines)
    if not recent.empty:
        st.subheader("Latest runs")
        ui.show_frame(recent, key="recent_runs")


def _recent_runs(conn: data.Connection, pipelines: list[dict]) -> pd.DataFrame:
    parts = []
    for p in pipelines:
        try:
            runs = cache.runs_frame(conn, p["experiment_id"], max_results=RECENT_RUNS)
        except Exception:  # noqa: BLE001, S112 - the table shows that pipeline as unreadable
            continue
        if not runs.empty:
            parts.append(runs.assign(pipeline=p["name"]))
    if not parts:
        return pd.DataFrame()
    allruns = pd.concat(parts).sort_values("start_time", ascending=False).head(15)
    return pd.DataFrame({"started": allruns["start_time"].map(lambda t: ui.fmt_time(t, short=True)), "pipeline": allruns["pipeline"],
                         "file": allruns["run_name"], "decision": allruns["decision"],
                         "reason": allruns["reason"].str.slice(0, 160)})
