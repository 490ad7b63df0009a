"""The drift report page: every feature with its bars, every signal, and nothing to fetch."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd

from calmops.core.report_page import render_report
from calmops.core.spec import parse_spec
from calmops.core.verdict import ConceptSignal, DecaySignal, DriftVerdict, EstimatedSignal, PerformanceSignal
from calmops.detectors import ReferenceProfile, compare

SPEC = parse_spec({"name": "r", "target": "y"})
TYPES = {"income": "numeric", "age": "numeric", "region": "categorical"}


def frames():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"income": rng.normal(50, 10, 2000), "age": rng.normal(40, 12, 2000),
                        "region": rng.choice(["north", "south", "east"], 2000)})
    now = pd.DataFrame({"income": rng.normal(65, 10, 800), "age": rng.normal(40, 12, 800),
                        "region": rng.choice(["north", "south", "west"], 800)})  # 'west' is new, 'east' gone
    return ref, now


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.cells, self._cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]
        if tag == "td":
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td":
            self.cells.append(self._cell)
            self._cell = None


def test_every_feature_its_distributions_and_every_signal_are_on_a_page_that_fetches_nothing():
    ref, now = frames()
    report = compare(ReferenceProfile.build(ref, TYPES, SPEC.drift), now, SPEC.drift)
    perf = PerformanceSignal("accuracy", 0.71, 0.9, [], 0.21, 0.05, drift=True)
    decay = DecaySignal(alarm=True, files=4, metric="accuracy", p_value_max=0.05, min_decline=0.025,
                        p_value=0.04, slope=-0.05, relative_decline=0.2, scores=[0.9, 0.85, 0.8, 0.71])
    # adwin first alarmed at row 120 of this file (row 3,391 of its stream, warm-up rows included); ddm on a file
    # before it, and stays alarmed
    concept = ConceptSignal(alarm=True, detectors={"adwin": {"alarm": True, "first_alarm_index": 3391,
                                                             "first_alarm_row": 120},
                                                   "ddm": {"alarm": True, "first_alarm_index": 2900,
                                                           "first_alarm_row": None}})
    estimated = EstimatedSignal(estimates={"accuracy": {"value": 0.8123, "low": 0.8011, "high": 0.8235}},
                                reference_rows=300, metric="accuracy")
    verdict = DriftVerdict.of(report, performance=perf, decay=decay, concept=concept, estimated=estimated)
    html = render_report({"pipeline": "r", "file": "b<2>.csv", "decision": "retrain_promoted",
                          "reason": "drift → retrained", "champion_version": 2, "challenger_version": 2,
                          "details": {"compared_with": 1}}, verdict)
    page = Page()
    page.feed(html)
    # self-contained: no script, no stylesheet link, no image or frame source; the one URL is SVG's namespace
    assert not {"script", "link", "img", "iframe"} & set(page.tags)
    assert [v for _, k, v in page.attrs if k in ("src", "href")] == []
    assert "b&lt;2&gt;.csv" in html  # names are escaped
    # the champion that served the file is named, not only the one its promotion left serving
    facts = dict(zip(page.cells[::2], page.cells[1::2], strict=False))
    assert facts["checked against champion"] == "1" and facts["champion after the decision"] == "2", facts
    # every feature has a row and paired bars over the same bins as its recorded distribution
    for feature in TYPES:
        assert feature in page.cells, feature
        assert len(report.distributions[feature].bins) >= 2
    assert html.count("<svg") == len(TYPES) + 1  # one per feature, one for the decay trail
    bars = html.count("<rect")
    assert bars == 2 * sum(len(d.bins) for d in report.distributions.values())
    # the categorical bins hold the new category in a last bin, and the vanished one at 0 in the batch
    region = report.distributions["region"]
    assert region.bins[-1] == "(not in reference)" and region.batch[-1] > 0.2
    assert region.batch[region.bins.index("east")] == 0.0
    assert abs(sum(region.reference) - 1) < 1e-9 and abs(sum(region.batch) - 1) < 1e-9
    for reason in verdict.reasons:  # data, performance, decay and concept, each said
        assert reason.split(":")[0] in html
    assert "adwin" in page.cells and "120" in page.cells and "3391" not in page.cells
    assert "an earlier file" in page.cells and "2900" not in page.cells
    # a verdict recorded before the row of the file was: its index, said as what it counts
    old = DriftVerdict.of(report, concept=ConceptSignal(alarm=True, detectors={"adwin": {"alarm": True,
                                                                                           "first_alarm_index": 120}}))
    assert "120 (counted over the champion's stream)" in render_report({"pipeline": "r", "file": "old.csv"}, old)
    assert {"0.8123", "0.8011", "0.8235"} <= set(page.cells)  # the estimate without labels and its band
    assert "a concept change is invisible to it" in html


def test_the_numeric_bins_count_the_batch_the_way_the_tests_see_it():
    ref, now = frames()
    report = compare(ReferenceProfile.build(ref, TYPES, SPEC.drift), now, SPEC.drift)
    income = report.distributions["income"]
    # reference-quantile bins: about a tenth of the reference in each; the shifted batch piles up on the right
    assert len(income.bins) == SPEC.drift.n_bins and max(abs(s - 0.1) for s in income.reference) < 0.01
    edges = np.quantile(ref["income"], np.linspace(0, 1, SPEC.drift.n_bins + 1)[1:-1])
    assert abs(income.batch[-1] - float(np.mean(now["income"] >= edges[-1]))) < 1e-12
    assert DriftVerdict.from_dict(DriftVerdict.of(report).to_dict()).data.distributions == report.distributions


def test_the_page_is_named_after_its_pipeline_and_file():
    from calmops.core.report_page import file_name

    assert file_name("sea", "gradual_0002.csv") == "sea-gradual_0002.report.html"


def test_the_default_report_name_of_a_long_named_file_can_be_written(tmp_path):
    """A 240-byte input name is decided (its processed and predictions names are shortened); `calmops report
    NAME` writes <pipeline>-<stem>.report.html by default, which must not fail with 'File name too long'."""
    from calmops.core.report_page import file_name

    long_one, other = "L" * 240 + ".csv", "L" * 239 + "M.csv"
    name = file_name("sea-prod", long_one)
    (tmp_path / name).write_text("<html></html>")  # the file system takes it
    assert name.startswith("sea-prod-LLL") and name.endswith(".report.html")
    assert file_name("sea-prod", other) != name  # two long names that share a beginning stay apart
    assert file_name("sea", "sea_0001.csv") == "sea-sea_0001.report.html"  # short names as before


def test_a_block_that_drifts_only_in_performance_is_a_signal_on_the_page():
    """Block kind: a block whose data held but whose champion score fell is why the file retrained; the page's
    Signals said "no drift signal" beside a decision "block drift in NEW"."""
    from dataclasses import replace

    from calmops.core.verdict import BlockDrift

    ref, _ = frames()
    calm = compare(ReferenceProfile.build(ref, TYPES, SPEC.drift), ref.sample(800, random_state=1), SPEC.drift)
    assert not calm.drift_detected
    fell = PerformanceSignal("accuracy", 0.6, 0.9, [], 0.33, 0.05, drift=True)
    verdict = DriftVerdict.of(calm)
    verdict = replace(verdict, blocks={"OLD": BlockDrift("block", 0.05, calm),
                                       "NEW": BlockDrift("block", 0.05, calm, performance=fell)})
    assert verdict.drifted_blocks == ["NEW"] and verdict.signals == ["block drift in NEW"]
    html = render_report({"pipeline": "r", "file": "b.csv", "decision": "retrain_promoted",
                          "reason": "block drift in NEW → retrained blocks NEW"}, verdict)
    assert "<li>block drift in NEW</li>" in html and "no drift signal" not in html
