"""Data simulator: drive ``calmops.generators`` to make drifting data, look at it, download or drop it.

The generators are imported lazily: without them the page says so instead of failing.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from calmops.core.settings import get_settings
from calmops.core.store import list_pipelines, pipeline_paths, read_spec
from calmops.dashboards import ui

MAX_ROWS = 200_000


def generators() -> tuple[Any, Any]:
    """(synthetic module, files module), imported when the simulator is first shown: river loads with them."""
    return (importlib.import_module("calmops.generators.synthetic"),
            importlib.import_module("calmops.generators.files"))


@st.cache_data(show_spinner="Generating…", max_entries=8)
def generate(generator: str, n_rows: int, seed: int, drift: dict | None, params: dict, class_balance: float | None,
             inject: dict | None) -> pd.DataFrame:
    synthetic, _ = generators()
    spec = synthetic.DriftSpec(**drift) if drift else None
    frame = synthetic.synthetic(generator, n_rows, drift=spec, seed=seed, params=params or None,
                                class_balance=class_balance, include_concept=True)
    if inject:
        inj = importlib.import_module("calmops.generators.inject")
        rows = inj.Rows(start=inject["start"])
        frame = inj.feature_drift(frame, inject["columns"], kind=inject["kind"], shift=inject["shift"],
                                  scale=inject["scale"], rows=rows, seed=seed)
    return frame


def render() -> None:
    st.title("Data simulator")
    synthetic, files = generators()
    st.caption("Synthetic streams from river's generators with a chosen concept drift, the same functions as "
               "`calmops generate`. Preview, download, or write files into a pipeline's incoming folder.")
    left, right = st.columns(2)
    with left:
        names = synthetic.generator_names()
        generator = st.selectbox("Generator", names, index=names.index("sea") if "sea" in names else 0,
                                 key="sim_generator")
        n_rows = int(st.number_input("Rows", 100, MAX_ROWS, 5000, step=500, key="sim_rows"))
        seed = int(st.number_input("Seed", 0, 2**31 - 1, 42, key="sim_seed"))
        balance = st.slider("Share of class 1 (0 = as generated)", 0.0, 0.95, 0.0, 0.05, key="sim_balance")
    with right:
        kinds = ["none", *synthetic.DRIFT_KINDS]
        kind = st.selectbox("Drift", kinds, index=1, key="sim_drift")
        drift = None
        if kind != "none":
            position = int(st.number_input("Position (row)", 1, n_rows - 1, n_rows // 2, key="sim_position"))
            width = int(st.number_input("Width (rows)", 0, n_rows, 0 if kind in ("abrupt", "virtual", "recurrent")
                                        else max(1, n_rows // 10), key=f"sim_width_{kind}"))
            concepts = st.text_input("Concepts (comma separated, one per segment; empty = default)", "",
                                     key="sim_concepts")
            drift = {"kind": kind, "position": position, "width": width}
            if concepts.strip():
                drift["concepts"] = tuple(int(c) for c in concepts.split(",") if c.strip())
    with st.expander("Inject feature drift on top (optional)"):
        inject_on = st.checkbox("Shift numeric features after a row", key="sim_inject")
        inject = None
        if inject_on:
            c = st.columns(4)
            cols = c[0].text_input("Columns (comma separated)", "", key="sim_inject_cols")
            shift = c[1].number_input("Shift (std units)", -10.0, 10.0, 1.0, key="sim_inject_shift")
            scale = c[2].number_input("Scale", 0.1, 10.0, 1.0, key="sim_inject_scale")
            start = int(c[3].number_input("From row", 0, n_rows - 1, n_rows // 2, key="sim_inject_start"))
            if cols.strip():
                inject = {"columns": [x.strip() for x in cols.split(",") if x.strip()], "kind": "abrupt",
                          "shift": shift, "scale": scale, "start": start}
    try:
        frame = generate(generator, n_rows, seed, drift, {}, balance or None, inject)
    except Exception as exc:  # noqa: BLE001 - a bad combination of settings, explained
        st.error(f"Cannot generate with these settings: {exc}")
        return
    show(frame, n_rows)
    export(frame, files, generator)


def show(frame: pd.DataFrame, n_rows: int) -> None:
    st.subheader("Preview")
    ui.show_frame(frame.head(50), key="sim_preview")
    numeric = [c for c in frame.columns if c not in ("concept",) and pd.api.types.is_numeric_dtype(frame[c])]
    if not numeric:
        return
    target = "y" if "y" in frame.columns else None
    feature = st.selectbox("Plot", numeric, key="sim_plot")
    plotted = frame.reset_index(names="row")
    step = max(1, len(plotted) // 5000)
    plotted = plotted.iloc[::step]
    color = "concept" if "concept" in plotted else None
    fig = px.scatter(plotted, x="row", y=feature, color=plotted[color].astype(str) if color else None,
                     opacity=0.5, labels={"color": "concept"})
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    ui.plot(fig)
    if target and pd.api.types.is_numeric_dtype(frame[target]) and frame[target].nunique() <= 20:
        window = max(10, n_rows // 50)
        rolling = frame[target].astype(float).rolling(window).mean().rename(target).rename_axis("row").reset_index()
        rolling = rolling.iloc[::step]
        fig = px.line(rolling, x="row", y=target, labels={target: f"mean of {target} over {window} rows"})
        fig.update_layout(height=240, margin={"l": 10, "r": 10, "t": 10, "b": 10})
        ui.plot(fig)


def export(frame: pd.DataFrame, files: Any, generator: str) -> None:
    st.subheader("Export")
    keep_concept = st.checkbox("Keep the ground-truth `concept` column", value=False, key="sim_keep_concept")
    out = frame if keep_concept else frame.drop(columns=["concept"], errors="ignore")
    st.download_button("Download CSV", out.to_csv(index=False).encode(), file_name=f"{generator}.csv",
                       mime="text/csv", key="sim_download")
    if os.environ.get("CALMOPS_VIEWER_WRITES", "on").lower() in ("off", "0", "false", "no"):
        st.caption("Writing files is turned off on this viewer (CALMOPS_VIEWER_WRITES=off).")
        return
    places = destinations(generator)
    with st.form("sim_write"):
        c = st.columns([3, 1, 1, 1])
        place = c[0].selectbox("Write into", list(places), key="sim_target",
                               help="A pipeline's incoming folder, or a folder under the data root; nowhere else.")
        n_files = int(c[1].number_input("Files", 1, 1000, 10, key="sim_files"))
        fmt = c[2].selectbox("Format", list(getattr(files, "FORMATS", {"csv": "csv"})), key="sim_fmt")
        pace = float(c[3].number_input("Seconds between files", 0.0, 60.0, 0.0, key="sim_pace"))
        submitted = st.form_submit_button("Write files")
    if submitted:
        folder = places[place]
        try:
            # a batch's own prefix: a second batch into a live incoming folder must not overwrite the first's files
            prefix = f"{generator}-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S}"
            paths = files.write_files(out, folder, n_files=n_files, fmt=fmt, prefix=prefix, pace_seconds=pace)
        except Exception as exc:  # noqa: BLE001
            st.error(f"Could not write the files: {exc}")
            return
        st.success(written_text(paths, folder))


def written_text(paths: list[Path], folder: Path) -> str:
    """What the simulator says it wrote: the one file, or how many from the first to the last."""
    if len(paths) == 1:
        return f"Wrote 1 file to {folder}: {paths[0].name}"
    return f"Wrote {len(paths)} files to {folder}: {paths[0].name} … {paths[-1].name}"


def destinations(generator: str) -> dict[str, Path]:
    """Where the simulator may write, by label: each pipeline's incoming folder, and ``simulated/<generator>``
    under the data root. The viewer has no login, so it offers no free path (a typed path would let anyone who
    reaches it write wherever the service's user can). The folder under the data root comes first, the default:
    a click on *Write files* must not drop a generator's files into a pipeline whose columns they do not have
    (each would be quarantined)."""
    places = {f"simulated/{generator} (under the data root)": get_settings().home / "simulated" / generator}
    for name in list_pipelines():
        try:
            places[f"{name}: incoming"] = pipeline_paths(read_spec(name)).incoming
        except Exception:  # noqa: BLE001, S112 - a spec that no longer reads: the other pipelines are still offered
            continue
    return places
