"""`calmops generate …` as a new user following docs/generators.md meets it: every option a user can get wrong is
refused in one line naming the option as typed (exit 2), and the data and report say what the options asked."""

import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from calmops.generators.cli import app
from calmops.generators.files import FORMATS, read_table
from calmops.generators.synthetic import synthetic

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def lines(r) -> list[str]:
    return [line for line in r.output.splitlines() if line.strip()]


def one_line(r) -> str:
    """The error line of a refused command: one line, then a hint line (what to do, or where the options are)."""
    out = lines(r)
    assert r.exit_code == 2 and len(out) == 2 and out[1].startswith("hint: "), (r.exit_code, r.output, r.exception)
    return out[0]


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.csv"
    pd.DataFrame({"block": np.repeat([1, 2], 30), "x": rng.normal(size=60), "y": [0, 1] * 30}).to_csv(path, index=False)
    return path


# 1. --class-balance


def test_class_balance_naming_one_class_leaves_the_rest_to_the_other(tmp_path):
    r = run("synthetic", "sea", "--out", tmp_path / "a", "--rows", 4000, "--class-balance", "1:0.3", "--no-report")
    assert r.exit_code == 0, r.output
    y = read_table(tmp_path / "a" / "batch_0001.csv")["y"]
    assert y.mean() == pytest.approx(0.3, abs=0.03)  # 4000 draws: the share's std is 0.007
    r = run("synthetic", "sea", "--out", tmp_path / "b", "--rows", 4000, "--class-balance", "0.3", "--no-report")
    assert r.exit_code == 0, r.output
    pd.testing.assert_series_equal(read_table(tmp_path / "b" / "batch_0001.csv")["y"], y)  # 0.3 means 1:0.3


def test_class_balance_unnamed_classes_share_the_rest_equally():
    y = synthetic("led", 5000, class_balance={1: 0.46}, seed=0)["y"]
    shares = y.value_counts(normalize=True)
    assert shares[1] == pytest.approx(0.46, abs=0.03)
    assert all(shares[k] == pytest.approx(0.54 / 9, abs=0.02) for k in range(10) if k != 1)


@pytest.mark.parametrize("generator, balance, expected", [
    ("sea", "0:0.7,1:0.4", ["--class-balance", "add up to 1.1", "not 1"]),
    ("sea", "0:0.5,1:0.3", ["--class-balance", "add up to 0.8", "not 1"]),
    ("led", "1:0.7,2:0.4", ["--class-balance", "add up to 1.1", "more than 1"]),
    ("sea", "0:0.5,2:0.5", ["--class-balance", "unknown class(es) [2]", "classes: 0, 1"]),
    ("sea", "1:abc", ["--class-balance", "'1:abc'"]),
    ("friedman", "0.3", ["--class-balance", "regression"]),
])
def test_class_balance_that_cannot_hold_is_refused(tmp_path, generator, balance, expected):
    line = one_line(run("synthetic", generator, "--out", tmp_path, "--rows", 100, "--class-balance", balance))
    assert all(e in line for e in expected), line
    assert "class_balance" not in line


# 2. counts


@pytest.mark.parametrize("args, option, minimum", [
    (["synthetic", "sea", "--rows", 0], "--rows", 1),
    (["synthetic", "sea", "--rows-per-file", 0], "--rows-per-file", 1),
    (["synthetic", "sea", "--n-files", 0], "--n-files", 1),
    (["synthetic", "sea", "--rows-per-block", 0, "--block-column", "b"], "--rows-per-block", 1),
    (["synthetic", "sea", "--drift", "recurrent", "--period", 0], "--period", 1),
    (["synthetic", "sea", "--drift", "abrupt", "--width", -1], "--width", 0),
    (["synthetic", "sea", "--pace", -1], "--pace", 0),
    (["synthetic", "sea", "--seed", -1], "--seed", 0),
    (["clinic", "--steps", 0], "--steps", 1),
    (["clinic", "--patients", 0], "--patients", 1),
    (["clinic", "--features", 0], "--features", 1),
    (["clinic", "--modules", 0], "--modules", 1),
    (["clinic", "--seed", -3], "--seed", 0),
    (["scenario", "gradual", "--n-files", 0], "--n-files", 1),
    (["scenario", "gradual", "--rows-per-file", 0], "--rows-per-file", 1),
    (["scenario", "gradual", "--pace", -1], "--pace", 0),
])
def test_counts_below_their_minimum_are_refused(tmp_path, args, option, minimum):
    line = one_line(run(*args, "--out", tmp_path))
    assert f"{option} must be at least {minimum}" in line, line


@pytest.mark.parametrize("args, option, minimum", [
    (["real", "--rows", 0], "--rows", 1),
    (["real", "--n-files", 0], "--n-files", 1),
    (["real", "--seed", -1], "--seed", 0),
    (["inject", "--method", "outliers", "--columns", "x", "--start", -1], "--start", 0),
    (["inject", "--method", "outliers", "--columns", "x", "--rows-per-file", 0], "--rows-per-file", 1),
])
def test_counts_of_the_file_commands_are_refused(tmp_path, data, args, option, minimum):
    line = one_line(run(args[0], data, *args[1:], "--out", tmp_path / "o"))
    assert f"{option} must be at least {minimum}" in line, line


def test_real_without_rows_still_copies_every_row(tmp_path, data):
    r = run("real", data, "--out", tmp_path / "o", "--no-report")
    assert r.exit_code == 0, r.output
    assert len(read_table(tmp_path / "o" / "synth_0001.csv")) == len(read_table(data))


def test_a_row_position_must_be_an_integer(tmp_path):
    line = one_line(run("synthetic", "sea", "--out", tmp_path, "--rows", 100, "--drift", "abrupt", "--position", "3.5"))
    assert "--position" in line and "'3.5'" in line and "integers" in line


# 3. messages name the options as typed


@pytest.mark.parametrize("args, expected", [
    (["synthetic", "sea", "--n-files", 2, "--rows-per-file", 5], ["give --n-files or --rows-per-file"]),
    (["synthetic", "sea", "--rows", 100, "--n-files", 200], ["--n-files", "200"]),
    (["synthetic", "sea", "--drift", "abrupt", "--unit", "blocks", "--position", 1], ["--rows-per-block"]),
    (["synthetic", "sea", "--block-column", "b"], ["--block-column needs --rows-per-block"]),
    (["synthetic", "sea", "--drift", "gradual"], ["--width"]),
    (["synthetic", "sea", "--start", "notadate"], ["--start", "'notadate'", "ISO date"]),
    (["synthetic", "sea", "--start", "2024-01-01", "--freq", "zz"], ["--freq", "'zz'", "D, W"]),
    (["clinic", "--group", "control"], ["--group", "'control'", "name=share"]),
    (["clinic", "--group", "control=0.5", "--group", "disease=abc"], ["--group", "abc"]),
    (["clinic", "--steps", 2, "--module-drift", "one=0.4"], ["--module-drift", "'one=0.4'"]),
    (["clinic", "--features", 3, "--modules", 5], ["--features", "--modules"]),
    (["clinic", "--de-share", 2], ["--de-share"]),
    (["synthetic", "sea", "--param", "noise=width"], ["noise='width' of sea"]),  # a value is left as typed
])
def test_messages_name_the_option_as_typed(tmp_path, args, expected):
    line = one_line(run(*args, "--out", tmp_path))
    assert all(e in line for e in expected), line
    assert not re.search(r"\b(n_files|rows_per_file|rows_per_block|block_column|n_rows|n_features|n_modules|de_share)\b",
                         line), line
    assert "--param" not in line


def test_a_missing_input_file_gives_a_hint(tmp_path):
    for command in (["real"], ["inject", "--method", "outliers", "--columns", "x"]):
        r = run(command[0], tmp_path / "data.csv", *command[1:], "--out", tmp_path / "o")
        out = lines(r)
        assert r.exit_code == 2 and len(out) == 2, r.output
        assert out[0].startswith("error: input file not found") and out[1].startswith("hint: ")


# 4. an unsupported drift is named before its options


def test_incremental_drift_on_a_generator_without_it_is_refused_first(tmp_path):
    line = one_line(run("synthetic", "agrawal", "--out", tmp_path, "--drift", "incremental"))
    assert line.startswith("error: --drift incremental: ") and "supported generators: sea" in line, line


# 5. the report


@pytest.mark.parametrize("drift, extra", [
    ("gradual", ["--width", 400]),
    ("incremental", ["--width", 400]),
    ("abrupt", []),
])
def test_report_splits_at_the_drift_position_and_counts_the_written_columns(tmp_path, drift, extra):
    rows, position = 2000, 1200
    r = run("synthetic", "sea", "--out", tmp_path, "--rows", rows, "--drift", drift, "--position", position, *extra)
    assert r.exit_code == 0, r.output
    written = read_table(tmp_path / "batch_0001.csv").shape[1]
    html = (tmp_path / "report.html").read_text()
    assert f"{rows} rows × {written} columns" in html
    assert f"before: {position} rows, after: {rows - position} rows" in html


# 6. ARFF keeps integer targets


def test_every_format_reads_the_target_back_as_integers(tmp_path):
    for fmt in FORMATS:
        r = run("synthetic", "sea", "--out", tmp_path / fmt, "--rows", 50, "--fmt", fmt, "--no-report")
        assert r.exit_code == 0, r.output
        back = read_table(tmp_path / fmt / f"batch_0001.{FORMATS[fmt]}")
        assert back["y"].dtype == np.int64, (fmt, back["y"].dtype)
        assert back["x0"].dtype == np.float64, fmt


def test_the_pipeline_reads_arff_targets_as_integers(tmp_path):
    ingest = pytest.importorskip("calmops.tasks.ingest")
    r = run("synthetic", "sea", "--out", tmp_path, "--rows", 50, "--fmt", "arff", "--no-report")
    assert r.exit_code == 0, r.output
    assert ingest.read_table(tmp_path / "batch_0001.arff", "arff")["y"].dtype == np.int64


# the report's default place

@pytest.mark.parametrize("command", [("synthetic", "sea", "--rows", 600, "--n-files", 2),
                                     ("scenario", "abrupt", "--n-files", 3, "--rows-per-file", 200)])
def test_no_report_is_written_into_a_pipelines_incoming_folder(tmp_path, monkeypatch, command):
    """Data generated straight into a pipeline's incoming folder (the docs' examples do it): a report.html
    there would be taken as a data file and quarantined. It goes to the current folder, named after the
    pipeline; any other --out still gets OUT/report.html."""
    pipeline = tmp_path / "pipelines" / "stagger-abrupt"
    (pipeline / "incoming").mkdir(parents=True)
    (pipeline / "spec.yaml").write_text("name: stagger-abrupt\n")
    monkeypatch.chdir(tmp_path)
    done = runner.invoke(app, [str(a) for a in (*command[:2], "--out", pipeline / "incoming",
                                                                          *command[2:])])
    assert done.exit_code == 0, done.output
    assert not list((pipeline / "incoming").glob("*.html"))
    assert (tmp_path / "stagger-abrupt-report.html").read_text().lstrip().lower().startswith("<!doctype html")
    elsewhere = runner.invoke(app, [str(a) for a in (*command[:2], "--out", tmp_path / "data", *command[2:])])
    assert elsewhere.exit_code == 0 and (tmp_path / "data" / "report.html").exists()


def test_a_class_named_twice_is_refused(tmp_path):
    line = one_line(run("synthetic", "sea", "--out", tmp_path, "--rows", 100, "--class-balance", "1:0.1,1:0.9"))
    assert "--class-balance names class '1' more than once" in line, line


def test_plain_words_in_a_message_are_not_taken_for_options():
    from calmops.generators.cli import _as_typed

    assert _as_typed("gradual drift needs width > 0", "synthetic") == "gradual drift needs --width > 0"
    assert _as_typed("Invalid frequency: period unit 'x'", "synthetic") == "Invalid frequency: period unit 'x'"
    assert _as_typed("transitions name unknown groups; groups: ['a']", "clinic") == \
        "transitions name unknown groups; groups: ['a']"
    assert _as_typed(KeyError(3).args[0], "synthetic") == "3"  # not text: said as it is, never a traceback


def test_a_spec_beside_an_ordinary_out_folder_keeps_the_report_there(tmp_path, monkeypatch):
    """A project folder holding the user's spec.yaml is not a pipeline's incoming folder."""
    (tmp_path / "spec.yaml").write_text("name: mine\n")
    monkeypatch.chdir(tmp_path)
    done = run("synthetic", "sea", "--out", tmp_path / "data", "--rows", 300, "--n-files", 1)
    assert done.exit_code == 0, done.output
    assert (tmp_path / "data" / "report.html").exists() and not list(tmp_path.glob("*-report.html"))


def test_drift_options_without_a_drift_are_refused(tmp_path):
    line = one_line(run("synthetic", "sea", "--out", tmp_path, "--rows", 100, "--position", "3.5"))
    assert line.startswith("error: --position describes a drift, but --drift is none"), line
    line = one_line(run("synthetic", "sea", "--out", tmp_path, "--rows", 100, "--position", "3.5", "--width", 10))
    assert line.startswith("error: --position, --width describe a drift, but --drift is none"), line
    assert line.endswith("or leave them out"), line


# 6. inject's row selection


@pytest.fixture
def dated(tmp_path):
    path = tmp_path / "dated.csv"
    pd.DataFrame({"day": pd.date_range("2024-01-01", periods=60, freq="D").strftime("%Y-%m-%d"),
                  "step": range(60), "x": np.zeros(60)}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("args, expected", [
    (["--since", "2024-02-01"], "error: --since needs --time-column"),  # else every row would change
    (["--blocks", "1"], "error: --blocks needs --block-column"),
    (["--block-column", "block"], "error: --block-column needs --blocks"),
    (["--time-column", "day"], "error: --time-column needs --since and/or --until"),
    (["--time-column", "day", "--since", "March"],
     ("error: since 'March' is not a date or time (e.g. 2024-03-01 or 2024-03-01T12:00); time column 'day' runs "
     "from 2024-01-01T00:00:00+00:00 to 2024-02-29T00:00:00+00:00")),
    (["--time-column", "step", "--since", "2024-02-01"],
     "error: since '2024-02-01' is not a number, and time column 'step' holds numbers (from 0 to 59)"),
    (["--time-column", "day", "--since", "2024-02-10", "--until", "2024-02-01"],
     "error: the time window is empty: since (2024-02-10) is not before until (2024-02-01)"),
    (["--time-column", "day", "--since", "2025-01-01"],
     ("error: no row of time column 'day' is in the window [2025-01-01, …): its date-times run from "
     "2024-01-01T00:00:00+00:00 to 2024-02-29T00:00:00+00:00")),
])
def test_a_row_selection_that_cannot_hold_is_refused_naming_the_option_and_the_data(dated, tmp_path, args, expected):
    assert one_line(run("inject", dated, "--method", "missing_values", "--columns", "x", "--out", tmp_path / "o",
                        "--no-report", *args)) == expected


@pytest.mark.parametrize("args, first, last", [
    (["--time-column", "day", "--since", "2024-02-01", "--until", "2024-02-11"], 31, 40),  # ISO text read as times
    (["--time-column", "day", "--until", "2024-01-05T12:00+01:00"], 0, 4),  # an offset is honoured (11:00 UTC)
    (["--time-column", "step", "--since", "10", "--until", "20"], 10, 19),  # numbers compared as numbers
])
def test_a_time_window_selects_the_rows_inside_it(dated, tmp_path, args, first, last):
    r = run("inject", dated, "--method", "missing_values", "--columns", "x", "--param", "share=1",
            "--out", tmp_path / "o", "--no-report", *args)
    assert r.exit_code == 0, r.output
    x = read_table(tmp_path / "o" / "injected_0001.csv")["x"]
    assert np.flatnonzero(x.isna().to_numpy()).tolist() == list(range(first, last + 1))
