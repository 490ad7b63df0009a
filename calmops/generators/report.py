"""A self-contained HTML report of generated data: distributions before/after and drift over time.

Plots are matplotlib PNGs embedded as base64, so the file opens anywhere without network access.

>>> import pandas as pd, numpy as np
>>> df = pd.DataFrame({"x": np.r_[np.zeros(50), np.ones(50)], "y": [0, 1] * 50})
>>> html = html_report(df, title="demo", target="y", split=50)
>>> html.startswith("<!doctype html>") and "data:image/png;base64," in html
True
"""

from __future__ import annotations

import base64
import html as _html
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

__all__ = ["html_report", "write_report"]

_MAX_COLUMNS = 12


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _distribution(before: pd.Series, after: pd.Series, name: str) -> str:
    fig = Figure(figsize=(4.2, 2.6))
    ax = fig.subplots()
    if _numeric(before) and _numeric(after):
        b, a = before.dropna().astype(float), after.dropna().astype(float)
        both = pd.concat([b, a])
        bins = np.histogram_bin_edges(both, bins=30) if len(both) and both.nunique() > 1 else 10
        ax.hist(b, bins=bins, alpha=0.55, density=True, label="before")
        ax.hist(a, bins=bins, alpha=0.55, density=True, label="after")
    else:
        pb = before.astype(str).value_counts(normalize=True)
        pa = after.astype(str).value_counts(normalize=True)
        cats = list(pb.add(pa, fill_value=0).sort_values(ascending=False).index[:15])
        x = np.arange(len(cats))
        ax.bar(x - 0.2, [pb.get(c, 0) for c in cats], 0.4, label="before")
        ax.bar(x + 0.2, [pa.get(c, 0) for c in cats], 0.4, label="after")
        ax.set_xticks(x, cats, rotation=45, ha="right", fontsize=7)
    ax.set_title(str(name), fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def _over_time(df: pd.DataFrame, columns: list, target: str | None, time_key: pd.Series) -> str:
    num = [c for c in columns if _numeric(df[c]) and c != target][:8]
    fig = Figure(figsize=(8.5, 5.5 if target else 3))
    axes = fig.subplots(2 if target else 1, 1, squeeze=False)
    ax = axes[0, 0]
    grouped = df.groupby(time_key, sort=True)
    for c in num:
        s = df[c].astype(float)
        std = s.std() or 1.0
        ax.plot(grouped[c].mean().index.astype(str), (grouped[c].mean() - s.mean()) / std, marker=".", label=str(c))
    ax.set_ylabel("mean (std units)")
    ax.set_title("Feature means over time", fontsize=9)
    if num:
        ax.legend(fontsize=6, ncol=4)
    ax.tick_params(axis="x", labelsize=6, rotation=45)
    if target:
        ax2 = axes[1, 0]
        y = df[target]
        if _numeric(y) and y.nunique() > 20:
            ax2.plot(grouped[target].mean().index.astype(str), grouped[target].mean(), marker=".")
            ax2.set_title(f"{target}: mean over time", fontsize=9)
        else:
            shares = pd.crosstab(time_key, y.astype(str), normalize="index")
            for c in shares.columns[:10]:
                ax2.plot(shares.index.astype(str), shares[c], marker=".", label=f"{target}={c}")
            ax2.set_title(f"{target}: class shares over time", fontsize=9)
            ax2.legend(fontsize=6, ncol=5)
        ax2.tick_params(axis="x", labelsize=6, rotation=45)
    fig.tight_layout()
    return _png(fig)


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _note(v):
    """A parameter's value as given (a text unquoted, a number as a number); a list or a mapping as JSON."""
    return v if v is None or isinstance(v, str | int | float) else json.dumps(v, default=str)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def html_report(
    df: pd.DataFrame,
    *,
    reference: pd.DataFrame | None = None,
    title: str = "CalmOps generated data",
    target: str | None = None,
    time_column: str | None = None,
    block_column: str | None = None,
    split: int | None = None,
    notes: Mapping | None = None,
    quality: Mapping | None = None,
    truth: str | None = None,
) -> str:
    """The report as an HTML string.

    "Before" is ``reference`` when given, else the rows before ``split`` (default: the first half);
    "after" is ``df`` (or the rows from ``split`` on). Drift over time is drawn per block, per time
    period, or over 20 equal chunks of rows. ``notes`` (parameters, seed…) and ``quality`` (from
    :func:`calmops.generators.real.quality_report`) are shown as tables. ``truth`` names a ground-truth column
    (e.g. ``concept``) that is plotted but was not written to the files: it is not counted as a column.
    """
    if reference is not None:
        before, after, whole = reference, df, df
    else:
        cut = len(df) // 2 if split is None else split
        before, after, whole = df.iloc[:cut], df.iloc[cut:], df
    skip = {c for c in (time_column, block_column) if c}
    columns = [c for c in whole.columns if c not in skip and c in before.columns]
    shown = [c for c in columns if c != target][:_MAX_COLUMNS] + ([target] if target in columns else [])
    parts = [f"<h1>{_html.escape(title)}</h1>",
             f"<p>{len(whole)} rows × {_written(whole, truth)}; before: {len(before)} rows, after: {len(after)} rows.</p>"]
    if notes is not None and not isinstance(notes, Mapping):
        raise TypeError(f"notes must map names to values, e.g. {{'seed': 42}}; got {type(notes).__name__} "
                        f"{str(notes)[:60]!r}")
    if notes:
        parts.append("<h2>Parameters</h2>" + _table([{"key": k, "value": _note(v)} for k, v in notes.items()]))
    if block_column and block_column in whole.columns:
        key = whole[block_column]
    elif time_column and time_column in whole.columns:
        t = pd.to_datetime(whole[time_column]) if not _numeric(whole[time_column]) else whole[time_column]
        key = pd.cut(t, bins=min(20, max(1, t.nunique())), labels=False) if _numeric(t) else t.dt.to_period(
            _period(t)).astype(str)
    else:
        key = pd.Series(np.arange(len(whole)) * 20 // max(1, len(whole)), index=whole.index)
    if len(whole):
        parts.append("<h2>Drift over time</h2>" + f'<img src="{_over_time(whole, shown, target, key)}">')
    if len(before) and len(after):
        parts.append("<h2>Distributions before / after</h2><div class='grid'>")
        parts += [f'<img src="{_distribution(before[c], after[c], c)}">' for c in shown]
        parts.append("</div>")
    if quality:
        parts.append("<h2>Quality</h2>" + _table([quality.get("summary", {})]))
        parts.append(_table([{"column": k, **{kk: vv for kk, vv in v.items() if kk != "unseen_categories"}}
                             for k, v in quality.get("columns", {}).items()]))
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
             "font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
             ".grid{display:flex;flex-wrap:wrap;gap:6px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def _written(df: pd.DataFrame, truth: str | None) -> str:
    if truth is None or truth not in df.columns:
        return f"{df.shape[1]} columns"
    return f"{df.shape[1] - 1} columns (plus the ground truth {truth!r}, not in the files)"


def _period(t: pd.Series) -> str:
    span = (t.max() - t.min()) if len(t) else pd.Timedelta(0)
    if span > pd.Timedelta(days=600):
        return "M"
    if span > pd.Timedelta(days=40):
        return "W"
    if span > pd.Timedelta(days=2):
        return "D"
    return "h"


def write_report(path: str | os.PathLike, df: pd.DataFrame, **kwargs) -> Path:
    """Write :func:`html_report` to ``path`` atomically; returns the path. A failed write leaves no ``.part`` file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    try:
        part.write_text(html_report(df, **kwargs), encoding="utf-8")
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path
