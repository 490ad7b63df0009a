"""One pipeline: drift, performance, models, retraining, data, runs and logs, spec history."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from calmops.core import report_page
from calmops.core.names import HOLDOUT_CHAMPION, compared_champion, model_name
from calmops.core.pause import paused
from calmops.dashboards import cache, charts, data, ui

HEATMAP_RUNS = 30
SPEC_RUNS = 200
P_VALUE = st.column_config.NumberColumn(format="%.2e")  # every p-value column: 2e-62, not 62 zeros


def render() -> None:
    conn = ui.connection()
    st.title("Pipeline")
    pipelines = ui.pipelines(conn)
    if pipelines is None:
        return
    if not pipelines:
        ui.empty_state()
        return
    by_name = {p["name"]: p for p in pipelines}
    name = ui.pick_pipeline(list(by_name))
    ui.auto_refresh(lambda: body(conn, by_name[name]))


def body(conn: data.Connection, pipeline: dict[str, Any]) -> None:
    name = pipeline["name"]
    try:
        runs = cache.runs_frame(conn, pipeline["experiment_id"])
        reg = cache.registry_info(conn, name)
    except Exception as exc:  # noqa: BLE001
        st.error(f"Cannot read pipeline {ui.plain(name)} from MLflow: {ui.plain(exc)}")
        return
    prefect_problem = ui.prefect_problem(conn)
    header(conn, name, runs, reg, prefect_problem)
    if runs.empty:
        st.info(f"{ui.plain(name)} has no runs yet: drop a file into its incoming folder (or `calmops run NAME FILE`).")
        return
    tabs = st.tabs(["Drift", "Performance", "Champion vs challenger", "Retraining", "Data", "Runs & logs",
                    "Spec"])
    sections = (drift_tab, performance_tab, models_tab, retraining_tab, data_tab, runs_tab, spec_tab)
    for tab, section in zip(tabs, sections, strict=True):
        with tab:
            try:
                section(conn, name, runs, reg, prefect_problem)
            except Exception as exc:  # noqa: BLE001 - one failing section does not hide the others
                st.error(f"This section could not be drawn: {type(exc).__name__}: {ui.plain(exc)}")


# -- header -------------------------------------------------------------------------------


def header(conn, name, runs, reg, prefect_problem) -> None:
    if (pause := paused(name)) is not None:  # `calmops pause`: said first, it explains why nothing moves
        st.warning(ui.plain(pause.said(name)))
    recorded = runs[runs["decision"] != ""] if not runs.empty else runs
    last = recorded.iloc[-1] if not recorded.empty else None
    champion = reg["aliases"].get("champion")
    breaker = None
    if not prefect_problem:
        try:
            breaker = cache.breaker(conn, name)
        except Exception as exc:  # noqa: BLE001
            st.warning(f"Breaker state unreadable: {ui.plain(exc)}")
    cols = st.columns([1, 1, 1.1, 2.6, 1.1, 1.2])
    cols[0].metric("Kind", ui.pipeline_kind(conn, name, runs))
    cols[1].metric("Champion", ui.version_text(champion), help="Registered model version with alias 'champion'.")
    cols[2].metric("Champion age", data.age_text(data.champion_since(reg)),
                   help="Since it last became the champion (promoted, or served again by a rollback).")
    cols[3].metric("Last decision", last["decision"] if last is not None else ui.EMPTY,
                   help=ui.plain(last["reason"]) if last is not None else None)
    cols[4].metric("Drift (last run)", ui.yes_no(last["drift"]) if last is not None else ui.EMPTY,
                   help="Not checked (—) for a first model, a refused, duplicate or held file and a failed run.")
    cols[5].metric("Breaker", breaker["state"] if breaker else "unknown")
    if last is not None:
        st.caption(f"Last file **{ui.plain(data.shown_file(last))}** at {ui.fmt_time(last['start_time'])}: "
                   f"{ui.plain(last['reason'])}")
    if prefect_problem:
        st.warning(f"Prefect: {ui.plain(prefect_problem)}. Breaker state and flow-run logs are not shown.")
    elif breaker:
        with st.expander(f"Circuit breaker: {breaker['state']}", expanded=breaker["state"] != "closed"):
            c = st.columns(4)
            c[0].metric("Consecutive failures", breaker["consecutive_failures"])
            c[1].metric("Opened in a row", breaker["times_opened"],
                        help="Openings since the breaker last closed; each doubles the cooldown")
            c[2].metric("Opened at", breaker["opened_at"] or "—")
            c[3].metric("Next retry", breaker["next_retry_at"] or "—")
            if breaker["history"]:
                ui.show_frame(pd.DataFrame(breaker["history"]).iloc[::-1])
            else:
                st.caption("No transitions yet.")


# -- drift --------------------------------------------------------------------------------


def _labels(runs: pd.DataFrame) -> dict[str, str]:
    """run id → a short unique label (the file name, numbered when a name repeats)."""
    seen: dict[str, int] = {}
    out = {}
    for run_id, label in zip(runs["run_id"], runs["run_name"], strict=True):
        seen[label] = seen.get(label, 0) + 1
        out[run_id] = label if seen[label] == 1 else f"{label} ({seen[label]})"
    return out


def _artifacts(conn, runs: pd.DataFrame, path) -> dict[str, Any]:
    """run id → the JSON artifact ``path`` of each of ``runs`` (None when absent), fetched together."""
    by_uri = cache.artifacts_json(conn, runs["artifact_uri"], path)
    return {run_id: by_uri.get(uri) for run_id, uri in zip(runs["run_id"], runs["artifact_uri"], strict=True)}


def drift_tab(conn, name, runs, reg, prefect_problem) -> None:
    checked = runs[runs["decision"].isin(["no_drift", "retrain_promoted", "retrain_rejected", "predict_only",
                                          "skipped_breaker_open"])]
    if checked.empty:
        st.info("No batch has been checked for drift yet: the first file trains the first model; drift is "
                "measured from the second file on.")
        return
    labels = _labels(runs)
    n = st.slider("Runs shown over time", 2, max(2, min(200, len(checked))), min(HEATMAP_RUNS, len(checked)),
                  key="drift_runs") if len(checked) > 2 else len(checked)
    window = checked.tail(n)
    wl = {r: labels[r] for r in window["run_id"]}
    recorded = _artifacts(conn, window, "drift/verdict.json")  # each verdict holds its run's report
    verdicts, unreadable = data.read_verdicts(recorded)
    if unreadable:
        st.warning(f"{len(unreadable)} run(s) have a drift verdict that cannot be read; they are left out: "
                   + ", ".join(wl[r] for r in unreadable[:5]))
    reports = {run_id: (v or {}).get("data") for run_id, v in recorded.items()}

    st.subheader("Per-feature tests")
    options = list(window["run_id"])[::-1]
    chosen = st.selectbox("Run", options, format_func=lambda r: wl[r], key="drift_run")
    verdict = verdicts.get(chosen)
    report = reports.get(chosen)
    row = window[window["run_id"] == chosen].iloc[0]
    st.markdown(f"**Decision:** `{row['decision']}` · **drift:** {ui.yes_no(row['drift'])}")
    for reason in verdict.signals if verdict else []:
        st.markdown(f"- {ui.plain(reason)}")
    if verdict:
        rows = row.get("metric.rows")  # the rows the run read, as its outcome.json says them
        # the run's own outcome.json, as `calmops report` reads it (a labels file's join is in its details);
        # the runs table's columns for a run that recorded none
        outcome = cache.artifact_json(conn, row["artifact_uri"], "outcome.json") or {
            "pipeline": name, "mlflow_run_id": chosen, "rows": None if pd.isna(rows) else int(rows),
            **{k: row.get(k) for k in ("file", "decision", "reason", "sha256")},
            **{k: None if pd.isna(row.get(k)) else int(row[k]) for k in ("champion_version", "challenger_version")}}
        st.download_button("Drift report (HTML, opens offline)", report_page.render_report(outcome, verdict),
                           file_name=report_page.file_name(name, str(row.get("file") or chosen)),
                           mime="text/html", key="drift_report_html")
    if report:
        st.caption(ui.plain(report.get("reason", "")))
        ui.show_frame(data.feature_table(report), key="feature_table", column_config={
            "ratio": st.column_config.ProgressColumn("effect / threshold", min_value=0, max_value=3, format="%.2f"),
            "p_value": P_VALUE, "p_adjusted": P_VALUE})
        if report.get("schema_signals"):
            st.markdown("**Schema signals**")
            ui.show_frame(pd.DataFrame(report["schema_signals"]), key="schema_signals",
                          column_config={"p_value": P_VALUE})
    else:
        st.caption("This run has no data-drift report.")
    if verdict and verdict.label_free:
        with st.expander("Label-free signals (predictions and confidence)"):
            st.json(verdict.label_free.to_dict())

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Drift over time")
        matrix = data.drift_matrix(reports, wl)
        if matrix.empty:
            st.caption("No per-feature results in these runs.")
        else:
            ui.plot(charts.drift_heatmap(matrix))
            st.caption("Each cell is the feature's largest effect divided by its test's minimum effect: 1.0 and "
                       "above (red) passes the effect floor; a feature drifts when its adjusted p-value is also "
                       "below alpha.")
    with right:
        st.subheader("Culprits")
        ranking = data.culprit_ranking(reports)
        if ranking.empty or ranking["times_drifted"].sum() == 0:
            st.caption("No feature drifted in these runs.")
        else:
            ui.plot(charts.culprits_bar(ranking))
        if not ranking.empty:
            ui.show_frame(ranking, key="culprits")

    distributions(conn, reg, report)

    st.subheader("Multivariate scores")
    multi = data.multivariate_frame(reports, wl)
    if multi.empty:
        st.caption("No multivariate method ran (enable `mmd`, `domain_classifier` or `pca` under `drift:` in the "
                   "spec).")
    else:
        ui.plot(charts.lines_over_runs(multi, "run", "statistic", "method", threshold_col="threshold"))
        ui.show_frame(multi)

    st.subheader("Concept drift, performance drift and decay")
    concept = data.concept_frame(verdicts, wl)
    if concept.empty:
        st.caption("No concept-drift detector results in these runs.")
    else:
        ui.plot(charts.concept_heatmap(concept))
        ui.show_frame(concept, key="concept")
    perf = data.performance_frame(verdicts, wl)
    if not perf.empty:
        ui.show_frame(perf, key="perf_drift", column_config={
            "relative_drop": st.column_config.NumberColumn(format="percent"),
            "tolerance": st.column_config.NumberColumn(format="percent"),
            "noise_band": st.column_config.NumberColumn(
                help="A fall (at_promotion − now, in the metric's units) within this band is what sampling error "
                     "explains: no drift, whatever the relative drop"),
            "decay_decline": st.column_config.NumberColumn(format="percent")})


def distributions(conn, reg, report) -> None:
    st.subheader("Reference distributions")
    versions = [v for v in reg["versions"] if v.get("run_id")]
    if not versions:
        st.caption("No model version with reference data yet.")
        return
    champion = reg["aliases"].get("champion")
    previous = reg["aliases"].get("previous")
    labels = {v["version"]: f"v{v['version']}" + (f" ({', '.join(v['aliases'])})" if v["aliases"] else "")
              for v in versions}
    default = [v for v in (champion, previous) if v in labels] or [versions[-1]["version"]]
    cols = st.columns([1, 2])
    chosen = cols[1].multiselect("Model versions", list(labels), default=default, format_func=labels.get,
                                 key="dist_versions")
    uri_of = {v["version"]: v["reference_uri"] for v in versions}
    frames = {labels[v]: cache.reference_frame(conn, uri_of[v]) for v in chosen}
    frames = {k: f for k, f in frames.items() if f is not None}
    if not frames:
        st.caption("The chosen versions have no reference data.")
        return
    features = sorted(set().union(*(f.columns for f in frames.values())))
    ranked = [f["feature"] for f in (report or {}).get("features") or []]
    features.sort(key=lambda c: (c not in ranked, ranked.index(c) if c in ranked else 0, c))
    feature = cols[0].selectbox("Feature", features, key="dist_feature")
    series = {k: f[feature].dropna() for k, f in frames.items() if feature in f}
    numeric = all(pd.api.types.is_numeric_dtype(s) for s in series.values()) and \
        all(s.nunique() > 12 for s in series.values())
    ui.plot(charts.reference_histogram(series, feature, numeric))
    st.caption("MLflow holds no batch data, so this shows the training data (reference) logged with each chosen "
               "model version: a promoted model's reference includes the batches it was retrained on. The batch "
               "side of the comparison is the test table above (statistic, p-value, effect).")
    if report:
        rows = [f for f in report.get("features") or [] if f.get("feature") == feature]
        if rows:
            ui.show_frame(pd.DataFrame(rows), key="dist_tests")


# -- performance --------------------------------------------------------------------------


def latest_spec(conn, runs: pd.DataFrame) -> dict | None:
    import yaml

    for uri in runs["artifact_uri"].iloc[::-1].head(5):
        text = cache.artifact_text(conn, uri, "spec.yaml")
        if text:
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError:
                return None
    return None


def performance_tab(conn, name, runs, reg, prefect_problem) -> None:
    spec = latest_spec(conn, runs)
    estimated = [m for m in data.metric_names(runs, "estimated") if not m.endswith(("_low", "_high"))]
    names = sorted(set(data.metric_names(runs, "champion")) | set(data.metric_names(runs, "challenger")) | set(estimated))
    if not names:
        st.info("No performance recorded yet (metrics appear once a model is evaluated on a labelled batch).")
        return
    primary = data.primary_metric(spec, runs)
    metric = st.selectbox("Metric", names, index=names.index(primary) if primary in names else 0,
                          key="perf_metric")
    bounds = data.thresholds(spec).get(metric)
    ui.plot(charts.performance_over_time(runs, metric, bounds))
    limits = data.bounds_text(bounds)
    st.caption("Champion: the serving model's score on each whole batch (before any retraining; none for the "
               "first model, which nothing served before); challenger: the "
               "retrained candidate's score on the batch's holdout; estimated: the champion's score estimated from its "
               "outputs alone (no labels needed; it cannot see a concept change, so trust the realized line where "
               "both are drawn); realized of vN (late labels): a labels file's score of the predictions version N made "
               "before the labels came. Stars mark promotions; dashed red lines are the "
               "spec's thresholds"
               + (f" for {metric}: {limits}." if limits else f" (none set for {metric})."))
    ui.plot(charts.decisions_timeline(runs[runs["decision"] != ""]))


# -- champion vs challenger ---------------------------------------------------------------


def models_tab(conn, name, runs, reg, prefect_problem) -> None:
    if not reg["exists"]:
        st.info(f"No registered model named {ui.plain(model_name(name))} yet.")
        return
    aliases = reg["aliases"]
    by_version = {v["version"]: v for v in reg["versions"]}
    rows = []
    for alias in data.ALIASES:
        v = aliases.get(alias)
        info = by_version.get(v, {})
        rows.append({"alias": alias, "version": ui.version_text(v), "created": ui.fmt_time(info.get("created")),
                     "trained on": data.training_file(info, runs) if info else "",
                     "mode": (info.get("training") or {}).get("mode", ""),
                     "why": info.get("description", ""),
                     "MLflow": data.mlflow_model_url(conn, name, v) if v else None})
    ui.show_frame(pd.DataFrame(rows), key="aliases", column_config={
        "MLflow": st.column_config.LinkColumn("MLflow", display_text="version ↗")})

    st.subheader("Scores at registration (holdout)")
    frame = data.registration_scores(reg)
    if not frame.empty:
        ui.plot(charts.scores_bars(frame[~frame["metric"].isin(["log_loss", "mse", "rmse", "mae", "mape"])]
                                   if frame["metric"].isin(["accuracy", "f1_macro"]).any() else frame))
        ui.show_frame(data.scores_table(frame), key="scores")
        st.caption("Each version's scores on the holdout of the batch it was trained on.")

    st.subheader("Last head-to-head (same holdout)")
    both = [c for c in runs.columns if c.startswith("metric.challenger_")]
    metrics = [c.removeprefix("metric.challenger_") for c in both]
    # a challenger scored beside the champion on the same holdout (compared_champion: either name of its score)
    scored = pd.Series(False, index=runs.index)
    for m in metrics:
        champions = [runs[c] for c in (f"metric.{HOLDOUT_CHAMPION}_{m}", f"metric.champion_{m}") if c in runs]
        beside = pd.concat(champions, axis=1).notna().any(axis=1) if champions else False
        scored |= runs[f"metric.challenger_{m}"].notna() & beside
    duel = runs[scored]
    if duel.empty:
        st.caption("No retraining has compared a challenger with a champion yet.")
        return
    last = duel.iloc[-1]
    outcome = cache.artifact_json(conn, last["artifact_uri"], "outcome.json") or {}
    # the champion of that run, which a promotion or a rollback since may have replaced
    compared = (outcome.get("details") or {}).get("compared_with")
    if compared is None and last["decision"] != "retrain_promoted":
        compared = last.get("champion_version")
    champion = f"champion v{int(compared)}" if compared is not None and not pd.isna(compared) else "champion then"
    challenger = f"challenger v{last['challenger_version']}"
    st.markdown(f"Run **{ui.plain(last['run_name'])}** → `{last['decision']}`: {champion} against {challenger}.")
    table = []
    for metric in metrics:
        table.append({"metric": metric, champion: compared_champion(last, metric, "metric."),
                      challenger: last[f"metric.challenger_{metric}"]})
    ui.show_frame(pd.DataFrame(table), key="duel")
    logged = outcome.get("metrics") or {}
    held = HOLDOUT_CHAMPION if HOLDOUT_CHAMPION in logged else "champion"  # a run logged before it: the holdout's
    cms = [(who, logged.get(key, {}).get("confusion_matrix")) for who, key in (("champion", held),
                                                                               ("challenger", "challenger"))]
    cms = [(who, cm) for who, cm in cms if isinstance(cm, dict) and cm.get("matrix")]
    if cms:
        cols = st.columns(len(cms))
        for col, (who, cm) in zip(cols, cms, strict=True):
            with col:
                ui.plot(charts.confusion(cm["matrix"], cm.get("labels") or list(range(len(cm["matrix"]))),
                                         f"{champion if who == 'champion' else challenger} confusion matrix"))


# -- retraining history -------------------------------------------------------------------


def retraining_tab(conn, name, runs, reg, prefect_problem) -> None:
    if not reg["versions"]:
        st.info("No model trained yet.")
        return
    decision_of = dict(zip(runs["run_id"], runs["decision"], strict=True))
    rows = []
    for v in reversed(reg["versions"]):
        t = v.get("training") or {}
        rows.append({"version": f"v{v['version']}", "created": ui.fmt_time(v["created"]),
                     "aliases": ", ".join(v["aliases"]), "mode": t.get("mode", ""), "file": data.training_file(v, runs),
                     "rows": t.get("rows"), "rows new": t.get("rows_new"), "rows reference": t.get("rows_reference"),
                     "outcome": decision_of.get(v["run_id"], ""),
                     "rolled back": "yes" if v.get("rolled_back") else "",
                     "reason": v.get("description", "")})
    ui.show_frame(pd.DataFrame(rows), key="retraining")
    st.caption("Outcome is the decision of the run that trained the version: `train` / `retrain_promoted` made it "
               "champion, `retrain_rejected` kept the old champion. Rows: training rows (new batch + reference "
               "data kept, per the retrain mode).")


# -- data ---------------------------------------------------------------------------------


def data_tab(conn, name, runs, reg, prefect_problem) -> None:
    versions = [v for v in reg["versions"] if v.get("run_id")]
    if not versions:
        st.info("No model version yet, so no reference data.")
        return
    champion = reg["aliases"].get("champion")
    nums = [v["version"] for v in versions]
    version = st.selectbox("Reference of model version", nums[::-1],
                           index=nums[::-1].index(champion) if champion in nums else 0,
                           format_func=lambda v: f"v{v}" + (" (champion)" if v == champion else ""), key="data_version")
    uri = next(v["reference_uri"] for v in versions if v["version"] == version)
    schema = cache.artifact_json(conn, uri, "schema.json")
    frame = cache.reference_frame(conn, uri)
    left, right = st.columns(2)
    with left:
        st.subheader("Schema")
        if schema:
            ui.show_frame(pd.DataFrame({"column": schema.get("columns", []),
                                        "dtype": [schema.get("dtypes", {}).get(c) for c in schema.get("columns", [])],
                                        "feature type": [schema.get("feature_types", {}).get(c)
                                                         for c in schema.get("columns", [])]}), key="schema")
            st.caption(f"Target {ui.plain(schema.get('target'))} · task {ui.plain(schema.get('task'))} · classes "
                       f"{ui.plain(', '.join(map(str, schema.get('classes') or [])) or '—')}")
        else:
            st.caption("No schema.json logged for this version.")
    with right:
        st.subheader("Quality")
        if frame is not None:
            quality = pd.DataFrame({"null rate": frame.isna().mean(), "distinct": frame.nunique(),
                                    "dtype": frame.dtypes.astype(str)})
            ui.show_frame(quality.reset_index(names="column"), key="quality",
                          column_config={"null rate": st.column_config.NumberColumn(format="percent")})
            st.caption(f"{len(frame):,} reference rows.")
    if frame is not None:
        st.subheader("Sample")
        ui.show_frame(frame.head(100), key="sample")
        numeric = frame.select_dtypes("number")
        if not numeric.empty:
            st.subheader("Summary statistics")
            ui.show_frame(numeric.describe().T.reset_index(names="column"), key="describe")
    st.caption("All of this is the reference data logged with the model version in MLflow; the batches "
               "themselves stay in the pipeline's folders, which the viewer does not read. Batch quality "
               "(null-rate changes, new or missing columns) appears as schema signals on the Drift tab.")


# -- runs and logs ------------------------------------------------------------------------


def runs_tab(conn, name, runs, reg, prefect_problem) -> None:
    states = pd.DataFrame()
    if not prefect_problem:
        try:
            states = cache.flow_runs(conn, name)
        except Exception as exc:  # noqa: BLE001
            st.warning(f"Flow runs unreadable from Prefect: {ui.plain(exc)}")
    newest = runs.iloc[::-1]
    table = pd.DataFrame({
        "started": newest["start_time"].map(lambda t: ui.fmt_time(t, short=True)), "file": newest["run_name"], "decision": newest["decision"],
        "drift": newest["drift"].map(ui.yes_no),
        "champion": newest["champion_version"].map(ui.version_text),
        "challenger": newest["challenger_version"].map(ui.version_text),
        "rows": newest.get("metric.rows"), "reason": newest["reason"],
        "MLflow": [data.mlflow_run_url(conn, e, r) for e, r in zip(newest["experiment_id"], newest["run_id"],
                                                                    strict=True)],
        "Prefect": [data.prefect_run_url(conn, f) for f in newest["flow_run_id"]],
    })
    if not states.empty:
        table.insert(3, "flow state", data.flow_states(newest, states))
    ui.show_frame(table, key="runs_table", column_config={
        "MLflow": st.column_config.LinkColumn("MLflow", display_text="run ↗"),
        "Prefect": st.column_config.LinkColumn("Prefect", display_text="flow run ↗"),
        "rows": st.column_config.NumberColumn(format="%d")})
    if not conn.mlflow_ui:
        st.caption("MLflow links appear when the MLflow UI runs (`calmops up`).")
    orphans, decided_elsewhere = data.unrecorded_flow_runs(runs, states)
    if not orphans.empty:
        st.markdown("**Flow runs without an MLflow record** (running, crashed before recording, or duplicates)")
        ui.show_frame(orphans[["name", "state", "start_time", "duration_s"]], key="orphans")
    if not decided_elsewhere.empty:
        st.caption(f"{len(decided_elsewhere)} flow run(s) cancelled as *Decided by another run*: the flow run "
                   "holding the pipeline's turn decided their files first; each file's MLflow run is in the table "
                   "above, its flow state *in the turn of* that run's file.")

    st.subheader("Logs")
    if prefect_problem:
        st.caption(f"Flow-run logs come from the Prefect API: {ui.plain(prefect_problem)}.")
        return
    labels = data.flow_run_labels(runs, states, orphans)
    if not labels:
        st.caption("No flow run recorded.")
        return
    chosen = st.selectbox("Flow run", list(labels), format_func=lambda f: labels.get(f, f), key="log_run")
    decided = data.decided_files(runs).get(chosen, [])
    if len(decided) > 1:
        st.caption(f"This flow run held the pipeline's turn and decided {len(decided)} files in it, in this order: "
                   f"{ui.plain(', '.join(decided))}.")
    try:
        logs = cache.flow_run_logs(conn, chosen)
    except Exception as exc:  # noqa: BLE001
        st.warning(f"Logs unreadable from Prefect: {ui.plain(exc)}")
        return
    if logs.empty:
        st.caption("No log lines for this flow run.")
    else:
        st.code("\n".join(f"{t:%H:%M:%S} {lvl:<7} {msg}" for t, lvl, msg in
                          zip(logs["time"], logs["level"], logs["message"], strict=True)), language="log")
    url = data.prefect_run_url(conn, chosen)
    if url:
        st.link_button("Open in Prefect ↗", url)


# -- spec ---------------------------------------------------------------------------------


def spec_tab(conn, name, runs, reg, prefect_problem) -> None:
    recent = runs.tail(SPEC_RUNS)
    labels = _labels(runs)
    changes = data.spec_changes(recent)
    specs = cache.artifact_texts(conn, changes["artifact_uri"], "spec.yaml")
    texts = [(labels[r], ui.fmt_time(t), specs.get(u))
             for r, t, u in zip(changes["run_id"], changes["start_time"], changes["artifact_uri"], strict=True)]
    history = data.spec_history(texts)
    if not history:
        st.info("No run has recorded its spec yet.")
        return
    current = history[-1]
    st.markdown(f"**Spec in force** since run **{ui.plain(current['label'])}** ({current['time']}); "
                f"{len(history)} distinct version(s) over the last {len(recent)} runs.")
    st.code(current["text"], language="yaml")
    if len(history) > 1:
        st.subheader("History")
        for entry in reversed(history[1:]):
            with st.expander(f"Version {entry['number']}: first used by {ui.plain(entry['label'])} ({entry['time']})"):
                st.code(entry["diff"], language="diff")
    st.caption("Each run logs the spec it ran with (`spec.yaml` in MLflow); a new version is listed where the "
               "text changed from the previous run.")
