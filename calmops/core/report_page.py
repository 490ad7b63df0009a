"""The drift report of one run as a single HTML page a person can open anywhere, offline.

Everything is in the page: styles inline, charts as inline SVG, no script and no link to fetch. It shows the
decision and its reason, each drift signal (performance against promotion, the decay trail, the concept
detectors, the label-free checks, the performance estimated without labels), the per-feature table with effect sizes and p-values, each feature's
reference and batch distributions side by side, the multivariate methods, the schema signals and, for the
block kind, the blocks. The record step logs it as ``drift/report.html`` in the run's MLflow artifacts;
``calmops report NAME [FILE]`` writes it from what was recorded, and the viewer offers it for download.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path
from typing import Any

from calmops.core.names import shown_decision
from calmops.core.store import LABELS_ENTRY, bounded_name
from calmops.core.verdict import DecaySignal, DriftVerdict
from calmops.detectors.report import Distribution, DriftReport

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328;
padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border-bottom:1px solid #eaeef2;padding:.3rem .5rem;
text-align:left;vertical-align:middle}th{background:#f6f8fa;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}.yes{color:#cf222e;font-weight:600}.no{color:#1a7f37}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:1rem;background:#eaeef2;font-weight:600}
.drift{background:#ffebe9;color:#cf222e}.calm{background:#dafbe1;color:#1a7f37}.muted{color:#59636e}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}
"""
REFERENCE_COLOUR, BATCH_COLOUR = "#8c959f", "#0969da"


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return escape(str(value))


def _yes(flag: bool | None) -> str:
    return f'<span class="{"yes" if flag else "no"}">{"yes" if flag else "no"}</span>'


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers if h)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def distribution_svg(d: Distribution, width: int = 280, height: int = 80) -> str:
    """Reference (grey) and batch (blue) shares per bin as paired bars; each bar names its bin and share."""
    n = max(len(d.bins), 1)
    top = max([*d.reference, *d.batch, 1e-9])
    slot = width / n
    bar = max(slot / 2 - 1, 1)
    parts = []
    for i, name in enumerate(d.bins):
        for j, (side, colour, values) in enumerate((("reference", REFERENCE_COLOUR, d.reference),
                                                    ("batch", BATCH_COLOUR, d.batch))):
            share = values[i] if i < len(values) else 0.0
            h = (height - 2) * share / top
            parts.append(f'<rect x="{i * slot + j * bar:.1f}" y="{height - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{escape(name)}: {side} {share:.1%}</title>'
                         "</rect>")
    return (f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg"><line x1="0" y1="{height}" x2="{width}" y2="{height}" '
            f'stroke="#d0d7de"/>{"".join(parts)}</svg>')


def trail_svg(values: list[float], width: int = 280, height: int = 60) -> str:
    """A line through the values, oldest on the left."""
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    points = " ".join(f"{i * width / (len(values) - 1):.1f},{height - 4 - (v - lo) / span * (height - 8):.1f}"
                      for i, v in enumerate(values))
    return (f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg"><polyline fill="none" stroke="{BATCH_COLOUR}" stroke-width="2" '
            f'points="{points}"/></svg>')


def _signals(verdict: DriftVerdict) -> str:
    out = []
    if verdict.performance:
        p = verdict.performance
        out.append("<h2>Performance of the champion</h2>" + _table(
            ["metric", "now", "at promotion", "relative drop", "tolerance", "noise band", "thresholds broken",
             "drift"],
            [[escape(p.metric), _num(p.now), _num(p.at_promotion), _num(p.relative_drop), _num(p.tolerance),
              _num(p.noise_band), escape("; ".join(p.threshold_failures)) or "none", _yes(p.drift)]],
            numeric={1, 2, 3, 4, 5}))
    decay: DecaySignal | None = verdict.decay
    if decay and decay.metric:
        out.append("<h2>Decay over the champion's files</h2>" + _table(
            ["metric", "files", "trend p-value", "p-value needed", "decline", "least decline", "alarm"],
            [[escape(decay.metric), _num(decay.files), _num(decay.p_value), _num(decay.p_value_max),
              _num(decay.relative_decline), _num(decay.min_decline), _yes(decay.alarm)]], numeric={1, 2, 3, 4, 5})
            + (f'<p class="muted">{escape(decay.metric)} of the champion file by file, oldest first: '
               + " → ".join(_num(v) for v in decay.scores) + "</p>" + trail_svg(decay.scores)
               if len(decay.scores) > 1 else ""))
    if verdict.concept and verdict.concept.detectors:
        out.append("<h2>Concept-drift detectors</h2>" + _table(
            ["detector", "alarm", "first alarm at row of this file", "status"],
            [[escape(name), _yes((d or {}).get("alarm")), _alarm_row(d or {}),
              escape(_plain((d or {}).get("status")))] for name, d in verdict.concept.detectors.items()],
            numeric={2}))
    if verdict.label_free:
        out.append("<h2>Label-free signals</h2>" + _table(
            ["output", "test", "statistic", "p-value", "effect", "drift"],
            [[escape(r.feature), escape(r.test), _num(r.statistic), _num(r.p_value), _num(r.effect_size),
              _yes(r.drift)] for r in verdict.label_free.results], numeric={2, 3, 4}))
    estimated = verdict.estimated
    if estimated and estimated.estimates:
        said = (f'<p class="muted">Trigger: {_num(estimated.trigger)} of {_num(estimated.at_promotion)} at promotion; '
                f'{escape(estimated.metric or "")} estimated {_num(estimated.relative_drop)} worse, drift '
                f'{_yes(estimated.drift)}.</p>' if estimated.trigger is not None else "")
        out.append("<h2>Performance estimated without labels</h2>" + _table(
            ["metric", "estimate", "band low", "band high"],
            [[escape(m), _num(e.get("value")), _num(e.get("low")), _num(e.get("high"))]
             for m, e in estimated.estimates.items()], numeric={1, 2, 3})
            + f'<p class="muted">From the champion\'s outputs alone, calibrated on {estimated.reference_rows} labelled '
              "rows the model that chose it was not fit on. It assumes the inputs mean what they meant then: a concept change is "
              "invisible to it.</p>" + said)
    return "".join(out)


def _alarm_row(detector: Mapping[str, Any]) -> str:
    """Where a concept detector first alarmed: the row of this file, or that it had alarmed on an earlier file
    (it stays alarmed until the champion changes)."""
    if detector.get("first_alarm_row") is not None:
        return _num(detector["first_alarm_row"])
    if detector.get("first_alarm_index") is None:
        return "–"
    if "first_alarm_row" not in detector:  # recorded before rows of the file were: the index over the stream
        return f"{_num(detector['first_alarm_index'])} (counted over the champion's stream)"
    return "an earlier file"


def _plain(status: Any) -> str:
    if isinstance(status, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in status.items())
    if isinstance(status, bool):
        return "yes" if status else "no"
    return "" if status is None else str(status)


def _data(report: DriftReport) -> str:
    cfg = report.config
    head = (f"<h2>Data drift: {len(report.drifted_features)} of {len({f.feature for f in report.features})} "
            "features</h2>"
            f"<p>{escape(report.reason)}</p><p class=\"muted\">reference rows {report.n_reference} · batch rows "
            f"{report.n_batch} · alpha {_num(cfg.get('alpha'))} · correction {escape(str(cfg.get('correction')))} · "
            f"aggregation {escape(str(cfg.get('aggregation')))}</p>"
            f'<p class="legend">distributions:<span style="background:{REFERENCE_COLOUR}"></span>reference'
            f'<span style="background:{BATCH_COLOUR}"></span>batch</p>')
    rows = []
    for r in report.table_rows():
        d = report.distributions.get(r["feature"])
        rows.append([f"<b>{escape(r['feature'])}</b>", escape(r["kind"]), escape(r["test"]), r["statistic"],
                     r["p_value"], r["p_adjusted"], r["effect_size"], r["threshold"], _yes(r["drift"]),
                     escape(r["detail"]), distribution_svg(d) if d else ""])
    table = _table(["feature", "type", "test", "statistic", "p-value", "p adjusted", "effect", "least effect",
                    "drift", "detail", "reference vs batch"], rows, numeric={3, 4, 5, 6, 7})
    multi = ("<h2>Multivariate</h2>" + _table(
        ["method", "statistic", "p-value", "threshold", "drift", "detail"],
        [[escape(m.method), _num(m.statistic), _num(m.p_value), _num(m.threshold), _yes(m.drift), escape(m.detail)]
         for m in report.multivariate], numeric={1, 2, 3})) if report.multivariate else ""
    schema = ("<h2>Schema signals</h2>" + _table(
        ["signal", "column", "detail", "counts as drift"],
        [[escape(s.kind), escape(s.column), escape(s.detail), _yes(s.drift)] for s in report.schema_signals])
              ) if report.schema_signals else ""
    return head + table + multi + schema


def _blocks(verdict: DriftVerdict) -> str:
    if not verdict.blocks:
        return ""
    return "<h2>Blocks</h2>" + _table(
        ["block", "compared with", "alpha", "drifted features", "champion now", "at promotion", "drift"],
        [[escape(name), escape(b.reference), _num(b.alpha), escape(", ".join(b.report.drifted_features)) or "none",
          _num(b.performance.now if b.performance else None),
          _num(b.performance.at_promotion if b.performance else None), _yes(b.drift)]
         for name, b in verdict.blocks.items()], numeric={2, 4, 5})


def file_name(pipeline: str, file: str) -> str:
    """Where a report page is written by default: ``<pipeline>-<file stem>.report.html``, shortened as the
    pipeline's own files are when that is longer than a file name may be (:func:`calmops.core.store.bounded_name`)."""
    return bounded_name(f"{pipeline}-{Path(file).stem}", ".report.html")


def _judged_by(outcome: Mapping[str, Any]) -> Any:
    """The champion the file was checked against and served by: the one a challenger was compared with, else
    the champion the outcome names (unchanged by a decision that promoted nothing)."""
    compared = (outcome.get("details") or {}).get("compared_with")
    if compared is not None:
        return compared
    # a promotion recorded before ``compared_with`` existed does not say which champion it replaced
    return None if outcome.get("decision") == "retrain_promoted" else outcome.get("champion_version")


_JOIN_COUNTS = (("label_rows", "label rows in the file"), ("matched", "joined to a waiting prediction"),
                ("unmatched", "no prediction waiting for the id"), ("duplicate", "id named twice (first label used)"),
                ("labelled_before", "labelled by an earlier labels file"),
                ("late", "predicted longer ago than max_wait_days"))


def _labels(joined: Mapping[str, Any]) -> str:
    """What a labels file joined (``details.labels``): its counts, a few ids of each kind, and the score of the
    predictions as they were made, per model version that made them."""
    rows = [[label, _num(joined.get(key))] for key, label in _JOIN_COUNTS if key in joined]
    ids = [[kind.replace("_", " "), escape(", ".join(map(str, joined[f"{kind}_ids"])))]
           for kind in ("unmatched", "duplicate", "labelled_before") if joined.get(f"{kind}_ids")]
    out = "<h2>Labels joined</h2>" + _table(["of the labels file", "rows"], rows, numeric={1})
    if ids:
        out += _table(["ids", "e.g."], ids)
    realized = joined.get("realized") or {}
    metrics = list(dict.fromkeys(k for scores in realized.values() for k, v in scores.items()
                                 if k != "rows" and isinstance(v, (int, float))))
    if realized:
        out += "<h3>Score of the predictions as made</h3>" + _table(
            ["model version", "rows", *metrics],
            [[_num(version), _num(scores.get("rows")), *(_num(scores.get(m)) for m in metrics)]
             for version, scores in realized.items()], numeric=set(range(len(metrics) + 2)))
    return out


def render_report(outcome: Mapping[str, Any], verdict: DriftVerdict) -> str:
    """The page for one run: ``outcome`` is what the run answered (``calmops run --json``, the run's
    ``outcome.json``), ``verdict`` its drift verdict."""
    labels = (outcome.get("details") or {}).get("folder") == "labels"  # a labels file may share a features file's name
    title = f"{outcome.get('pipeline', '')} · {LABELS_ENTRY if labels else ''}{outcome.get('file', '')}"
    badge = ('<span class="badge drift">drift</span>' if verdict.drift_detected
             else '<span class="badge calm">no drift</span>')
    facts = [("decision", f"<code>{escape(str(shown_decision(outcome.get('decision', ''))))}</code>"),
             ("why", escape(str(outcome.get("reason", "")))),
             ("checked against champion", _num(_judged_by(outcome))),
             ("champion after the decision", _num(outcome.get("champion_version"))),
             ("challenger version", _num(outcome.get("challenger_version"))),
             ("rows", _num(outcome.get("rows"))), ("file SHA-256", f"<code>{escape(str(outcome.get('sha256')))}</code>"),
             ("MLflow run", f"<code>{escape(str(outcome.get('mlflow_run_id')))}</code>")]
    reasons = "".join(f"<li>{escape(r)}</li>" for r in verdict.signals) or "<li>no drift signal</li>"
    body = (f"<h1>{escape(title)} {badge}</h1>"
            + _table(["", ""], [[f"<b>{k}</b>", v] for k, v in facts])
            + f"<h2>Signals</h2><ul>{reasons}</ul>" + _signals(verdict)
            + (_data(verdict.data) if verdict.data else "<h2>Data drift</h2><p>No data-drift report.</p>")
            + _blocks(verdict) + (_labels(joined) if (joined := (outcome.get("details") or {}).get("labels")) else ""))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Drift report · {escape(title)}'
            f'</title><meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style>'
            f"</head><body>{body}</body></html>\n")
