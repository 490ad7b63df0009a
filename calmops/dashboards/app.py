"""The CalmOps viewer (Streamlit): ``streamlit run calmops/dashboards/app.py`` or ``calmops viewer``.

Reads MLflow (runs, metrics, artifacts, registry) and the Prefect API (flow runs, logs, breaker blocks) only.
"""

from __future__ import annotations

import os

from calmops.core.environment import prepare

# Before Prefect or MLflow is imported: the stack's addresses (stack.json), quiet and quick clients.
prepare()
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a dashboard answers fast or says why
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")

import streamlit as st

from calmops.dashboards import ui
from calmops.dashboards.views import blocks, ipip, overview, pipeline, simulator


def pages() -> list:
    return [
        st.Page(overview.render, title="Overview", icon=":material/dashboard:", url_path="overview", default=True),
        st.Page(pipeline.render, title="Pipeline", icon=":material/monitoring:", url_path="pipeline"),
        st.Page(blocks.render, title="Blocks", icon=":material/view_module:", url_path="blocks"),
        st.Page(ipip.render, title="IPIP", icon=":material/hub:", url_path="ipip"),
        st.Page(simulator.render, title="Simulator", icon=":material/science:", url_path="simulator"),
    ]


def icon(size: int = 64):
    """The tab's icon, drawn here: two white waves on teal. A Material or emoji icon would be fetched from
    another host by the browser, which fails offline and tells that host who opened the viewer."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[...] = (17, 115, 120)
    for level in (0.38, 0.62):
        band = np.abs(y - level - 0.08 * np.sin(2 * np.pi * (x * 1.5))) < 0.05
        image[band] = (255, 255, 255)
    return Image.fromarray(image)


def main() -> None:
    st.set_page_config(page_title="CalmOps viewer", page_icon=icon(), layout="wide")
    navigation = st.navigation(pages())
    ui.sidebar(ui.connection())
    navigation.run()


main()
