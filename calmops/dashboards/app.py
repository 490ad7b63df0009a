"""The CalmOps viewer (Streamlit): ``streamlit run calmops/dashboards/app.py`` or ``calmops viewer``.

Reads MLflow (runs, metrics, artifacts, registry) and the Prefect API (flow runs, logs, breaker blocks) only.
"""

from __future__ import annotations

import streamlit as st

from calmops.dashboards import ui
from calmops.dashboards.views import blocks, ipip, overview, pipeline, simulator


def pages() -> list:
    return [
        st.Page(overview.render, title="Overview", icon="🏠", url_path="overview", default=True),
        st.Page(pipeline.render, title="Pipeline", icon="📈", url_path="pipeline"),
        st.Page(blocks.render, title="Blocks", icon="🧱", url_path="blocks"),
        st.Page(ipip.render, title="IPIP", icon="🧩", url_path="ipip"),
        st.Page(simulator.render, title="Simulator", icon="🧪", url_path="simulator"),
    ]


def main() -> None:
    st.set_page_config(page_title="CalmOps viewer", page_icon="🌊", layout="wide")
    navigation = st.navigation(pages())
    ui.sidebar(ui.connection())
    navigation.run()


main()
