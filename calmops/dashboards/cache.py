"""``st.cache_data`` wrappers of :mod:`calmops.dashboards.data`.

Lists (pipelines, runs, registry, Prefect) live ``LIST_TTL`` seconds, so an auto-refresh shows new runs;
artifacts of a run are written once when the run is recorded; :mod:`~calmops.dashboards.data` keeps those it
has found for the life of the process. Every key includes the
:class:`~calmops.dashboards.data.Connection`, so two stores never share an entry.
"""

from __future__ import annotations

import streamlit as st

from calmops.dashboards import data

LIST_TTL = 10
ARTIFACT_TTL = 600
PROBE_TTL = 5

check_mlflow = st.cache_data(ttl=PROBE_TTL, show_spinner=False)(data.check_mlflow)
check_prefect = st.cache_data(ttl=PROBE_TTL, show_spinner=False)(data.check_prefect)
list_pipelines = st.cache_data(ttl=LIST_TTL, show_spinner=False)(data.list_pipelines)
runs_frame = st.cache_data(ttl=LIST_TTL, show_spinner="Reading runs from MLflow…")(data.runs_frame)
registry_info = st.cache_data(ttl=LIST_TTL, show_spinner=False)(data.registry_info)
spec_kind = st.cache_data(ttl=LIST_TTL, show_spinner=False)(data.spec_kind)
bad_input_fails = st.cache_data(ttl=LIST_TTL, show_spinner=False)(data.bad_input_fails)
# run artifacts are kept by data.artifact_texts itself (write-once, fetched in parallel), not here
artifact_text = data.artifact_text
artifact_json = data.artifact_json
artifacts_json = data.artifacts_json
artifact_texts = data.artifact_texts
reference_frame = st.cache_data(ttl=ARTIFACT_TTL, show_spinner="Reading reference data…", max_entries=20)(
    data.reference_frame)
breaker = st.cache_data(ttl=LIST_TTL, show_spinner=False)(data.breaker)
flow_runs = st.cache_data(ttl=LIST_TTL, show_spinner=False)(data.flow_runs)
flow_run_logs = st.cache_data(ttl=LIST_TTL, show_spinner=False)(data.flow_run_logs)


def clear() -> None:
    st.cache_data.clear()
    data.forget_artifacts()
