"""Scenarios write files plus a self-contained report; the example specs in docs/examples match them."""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calmops.generators.files import read_table
from calmops.generators.report import html_report, write_report
from calmops.generators.scenarios import SCENARIOS, run_scenario, scenario_data

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def test_gradual_scenario_walks_through_the_sea_concepts():
    df, _drift = scenario_data("gradual", seed=0, n_files=8, rows_per_file=500, include_concept=True)
    first = df.groupby(df.index // 500)["concept"].agg(lambda s: s.mode().iloc[0]).tolist()
    assert first[0] == 0 and first[-1] == 3 and first == sorted(first)
    # transitions are gradual: some file holds two concepts
    assert df.groupby(df.index // 500)["concept"].nunique().max() >= 2


def test_abrupt_scenario_switches_at_file_boundaries():
    df, _ = scenario_data("abrupt", seed=0, n_files=9, rows_per_file=100, include_concept=True)
    per_file = df.groupby(df.index // 100)["concept"].agg(list)
    assert all(len(set(c)) == 1 for c in per_file)
    assert [c[0] for c in per_file] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_recurrent_scenario_alternates_by_block():
    df, _ = scenario_data("recurrent", seed=0, n_files=6, rows_per_file=100, include_concept=True)
    per_block = df.groupby("block")["concept"].first().tolist()
    assert per_block == [0, 0, 0, 2, 2, 2, 0, 0, 0, 2, 2, 2]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_run_scenario_writes_files_and_report(tmp_path, name):
    result = run_scenario(name, tmp_path / "out", seed=1, n_files=4, rows_per_file=100, fmt="parquet")
    assert [p.name for p in result.files] == [f"{name}_000{i}.parquet" for i in range(1, 5)]
    back = pd.concat([read_table(p) for p in result.files], ignore_index=True)
    assert len(back) == 400 and "concept" not in back.columns and "y" in back.columns
    html = result.report.read_text()
    assert html.count("data:image/png;base64,") >= 3 and "<script src=" not in html and "http" not in html
    again = run_scenario(name, tmp_path / "again", seed=1, n_files=4, rows_per_file=100, fmt="parquet", report=False)
    pd.testing.assert_frame_equal(back, pd.concat([read_table(p) for p in again.files], ignore_index=True))
    assert again.report is None


def load_preprocess(path: Path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.preprocess


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_example_specs_match_their_scenario(tmp_path, name):
    from calmops.core.spec import load_spec  # the pipeline's own spec model validates the example

    spec = load_spec(EXAMPLES / f"{name}.yaml")
    assert spec.kind == SCENARIOS[name].kind
    result = run_scenario(name, tmp_path, n_files=2, rows_per_file=120, report=False)
    df = read_table(result.files[0])
    assert spec.target in df.columns
    if spec.block_column:
        assert spec.block_column in df.columns
    assert set(spec.feature_types) <= set(df.columns) and set(spec.drop_columns) <= set(df.columns)
    out = load_preprocess(EXAMPLES / spec.preprocess)(df.copy())  # relative to the spec file
    assert len(out) == len(df) and spec.target in out.columns
    pd.testing.assert_frame_equal(df, read_table(result.files[0]))  # preprocess does not modify its input


def test_report_shows_before_after_and_quality(tmp_path):
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(size=300), "c": rng.choice(["u", "v"], 300)})
    cur = pd.DataFrame({"a": rng.normal(1, 1, 300), "c": rng.choice(["u", "v", "w"], 300)})
    html = html_report(cur, reference=ref, title="t <x>", quality={"summary": {"score": 0.9}, "columns": {}},
                       notes={"seed": 1, "omics": "rnaseq", "share": 0.1 + 0.2, "groups": {"a": 1}})
    # parameters read as typed: text unquoted, a number rounded as the tables round it, a mapping as JSON
    assert all(f"<td>{key}</td><td>{value}</td>" in html for key, value in [
        ("seed", "1"), ("omics", "rnaseq"), ("share", "0.3"), ("groups", "{&quot;a&quot;: 1}")]), html[-800:]
    assert "t &lt;x&gt;" in html and "score" in html and len(re.findall("data:image/png;base64,", html)) == 3
    path = write_report(tmp_path / "r.html", cur, reference=ref)
    assert path.read_text().startswith("<!doctype html>") and [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_report_notes_that_are_not_a_mapping_are_refused_saying_what_they_should_be(tmp_path):
    cur = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(TypeError, match=r"notes must map names to values, e\.g\. \{'seed': 42\}; got str 'text'"):
        write_report(tmp_path / "r.html", cur, notes="text")
    assert not list(tmp_path.iterdir())
