"""`calmops generate …` through typer's CliRunner."""

import click
import pandas as pd
import pytest

from calmops.generators.files import read_table
from tests.generators.test_cli_options import one_line, run


def test_synthetic_writes_files_and_report(tmp_path):
    r = run("synthetic", "sea", "--out", tmp_path, "--rows", 1200, "--drift", "gradual", "--position", 600,
            "--width", 200, "--n-files", 3, "--fmt", "jsonl", "--start", "2024-01-01", "--freq", "1h",
            "--param", "noise=0.1", "--seed", 3)
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["batch_0001.jsonl", "batch_0002.jsonl", "batch_0003.jsonl", "report.html"]
    df = read_table(tmp_path / "batch_0001.jsonl")
    assert len(df) == 400 and list(df.columns) == ["timestamp", "x0", "x1", "x2", "y"]


def test_unknown_generator_lists_the_valid_ones(tmp_path):
    line = one_line(run("synthetic", "nope", "--out", tmp_path))
    assert "unknown generator 'nope'" in line
    assert "sea, agrawal, hyperplane, sine, stagger, mixed, randomrbf, randomtree, friedman, led" in line


@pytest.mark.parametrize("args, message", [
    (["synthetic", "sea", "--drift", "gradual"], "gradual drift needs --width > 0"),
    (["synthetic", "sea", "--drift", "sudden"], "valid kinds"),
    (["synthetic", "sea", "--fmt", "xls"], "valid formats"),
    (["synthetic", "sea", "--param", "noise"], "key=value"),
    (["scenario", "sideways"], "valid scenarios: gradual, abrupt, recurrent"),
    (["clinic", "--omics", "metabolome"], "valid: rnaseq"),
])
def test_bad_parameters_exit_2_with_one_line_and_a_hint(tmp_path, args, message):
    assert message in one_line(run(*args, "--out", tmp_path))


def test_scenario_real_inject_clinic(tmp_path):
    r = run("scenario", "recurrent", "--out", tmp_path / "s", "--n-files", 3, "--rows-per-file", 100)
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "s").glob("recurrent_*.csv"))) == 3 and (tmp_path / "s" / "report.html").exists()

    src = tmp_path / "s" / "recurrent_0001.csv"
    r = run("real", src, "--out", tmp_path / "r", "--rows", 300, "--fmt", "parquet", "--drop", "timestamp")
    assert r.exit_code == 0, r.output
    fake = read_table(tmp_path / "r" / "synth_0001.parquet")
    assert len(fake) == 300 and "timestamp" not in fake.columns and "quality" in r.output

    r = run("inject", src, "--out", tmp_path / "i", "--method", "missing_values", "--columns", "salary,age",
            "--param", "share=0.5", "--block-column", "block", "--blocks", "2", "--report", tmp_path / "i.html")
    assert r.exit_code == 0, r.output
    out, orig = read_table(tmp_path / "i" / "injected_0001.csv"), read_table(src)
    assert out["salary"].isna().sum() == 25 and out.loc[out["block"] == 1, "salary"].notna().all()
    pd.testing.assert_frame_equal(out.drop(columns=["salary", "age"]), orig.drop(columns=["salary", "age"]))
    assert (tmp_path / "i.html").exists() and not (tmp_path / "i" / "report.html").exists()

    r = run("inject", src, "--out", tmp_path / "j", "--method", "label_shift", "--target", "y",
            "--param", 'priors={"0": 0.9, "1": 0.1}', "--no-report")
    assert r.exit_code == 0, r.output
    assert read_table(tmp_path / "j" / "injected_0001.csv")["y"].mean() == pytest.approx(0.1, abs=0.011)

    r = run("inject", src, "--out", tmp_path / "k", "--method", "outliers", "--columns", "salary", "--param", "bogus=1")
    assert r.exit_code == 2 and "does not take ['bogus']" in r.output

    r = run("clinic", "--out", tmp_path / "c", "--patients", 40, "--steps", 3, "--features", 12,
            "--group", "control=0.5", "--group", "disease=0.5", "--module-drift", "1=0.4", "--fmt", "xlsx")
    assert r.exit_code == 0, r.output
    cohort = read_table(tmp_path / "c" / "cohort_0001.xlsx")
    assert len(cohort) == 120 and {"patient_id", "time", "group", "gene_001"} <= set(cohort.columns)


@pytest.mark.parametrize("force_color", [None, "1"])
def test_a_long_path_stays_on_its_line_when_the_output_is_not_a_terminal(tmp_path, monkeypatch, force_color):
    """Piped or captured output is read by scripts: a path split over two lines at column 80 breaks them. CI
    systems set FORCE_COLOR (rich then treats the pipe as a terminal): colours, but no folding."""
    from calmops.generators import cli

    monkeypatch.delenv("COLUMNS", raising=False)
    if force_color:
        monkeypatch.setenv("FORCE_COLOR", force_color)
    monkeypatch.setattr(cli, "console", cli._stdout_console())  # as a new process makes it
    out = tmp_path / ("a_folder_whose_name_alone_is_longer_than_eighty_columns_" + "x" * 40)
    r = run("scenario", "abrupt", "--out", out)
    assert r.exit_code == 0, r.output
    assert any(str(out / "report.html") in click.unstyle(line) for line in r.output.splitlines()), r.output
