"""`calmops generate …` where a mistake would end in a traceback, a column overwritten or an option ignored: where
the files go (--out, --report, --prefix), what the input is, which column the target is, and options that only
mean something with another one. Each is refused in one line and a hint (exit 2), before anything is written."""

import warnings

import numpy as np
import pandas as pd
import pytest

from calmops.generators.files import read_table
from calmops.generators.report import write_report
from tests.generators.test_cli_options import one_line, run


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"x": np.arange(40.0), "y": [0, 1] * 20}).to_csv(path, index=False)
    return path


# the target and the block column never overwrite another column


@pytest.mark.parametrize("args, expected", [
    (["--target", "x0"], "error: --target must not name a feature column of sea (its features: x0, x1, x2), got 'x0'"),
    (["--target", "timestamp", "--start", "2024-01-01"], ("error: --target must not name the timestamp column, got "
                                                         "'timestamp'")),
    (["--target", "concept"], "error: --target must not name the ground-truth column, got 'concept'"),
    (["--block-column", "x1", "--rows-per-block", 10], ("error: --block-column must not name a feature column of sea "
                                                       "(its features: x0, x1, x2), got 'x1'")),
    (["--block-column", "y", "--rows-per-block", 10], "error: --block-column must not name the target column, got 'y'"),
])
def test_a_target_or_block_column_named_like_another_column_is_refused(tmp_path, args, expected):
    assert one_line(run("synthetic", "sea", "--out", tmp_path / "o", "--rows", 100, *args)) == expected
    assert not (tmp_path / "o").exists()


def test_another_target_name_is_written_beside_the_features(tmp_path):
    r = run("synthetic", "sea", "--out", tmp_path, "--rows", 50, "--target", "label", "--no-report")
    assert r.exit_code == 0, r.output
    assert list(read_table(tmp_path / "batch_0001.csv").columns) == ["x0", "x1", "x2", "label"]


# --out, --report and --prefix


@pytest.mark.parametrize("command", [["synthetic", "sea", "--rows", 50], ["scenario", "abrupt"]])
def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path, command):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    line = one_line(run(*command, "--out", afile))
    assert line == f"error: --out {afile} is a file, not a folder"
    line = one_line(run(*command, "--out", afile / "sub"))
    assert line == f"error: --out {afile / 'sub'} lies under {afile}, which is a file, not a folder"
    assert afile.read_text() == "mine\n"


@pytest.mark.parametrize("command", [["synthetic", "sea", "--rows", 50], ["scenario", "abrupt"]])
def test_a_report_that_is_a_folder_is_refused_before_the_data_is_written(tmp_path, command):
    folder = tmp_path / "reports"
    folder.mkdir()
    line = one_line(run(*command, "--out", tmp_path / "o", "--report", folder))
    assert line == f"error: --report {folder} is a folder, not a file"
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == [folder]  # no data, no .part file


def test_a_failed_report_leaves_no_part_file(tmp_path):
    (tmp_path / "report.html").mkdir()
    with pytest.raises(IsADirectoryError):
        write_report(tmp_path / "report.html", pd.DataFrame({"x": [1.0, 2.0]}))
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.parametrize("prefix", ["../escape", "", ".", "..", "a/b", ".hidden"])
def test_a_prefix_that_is_no_plain_file_name_is_refused(tmp_path, prefix):
    line = one_line(run("synthetic", "sea", "--out", tmp_path / "o", "--rows", 50, "--prefix", prefix))
    assert line.startswith("error: --prefix must be a plain file name") and line.endswith(f"got {prefix!r}")
    assert list(tmp_path.iterdir()) == []


# the input of real and inject


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.with_suffix(".csv").write_text("a,b\n"), "has no rows (columns only: a, b)"),
    (lambda p: p.with_suffix(".csv").write_text(""), "is empty (0 bytes)"),
    (lambda p: p.with_suffix("").write_text("a,b\n1,2\n"), ("has no extension: name it .csv, .tsv, .parquet, .json, "
                                                            ".jsonl, .arff, .xlsx")),
    (lambda p: p.with_suffix(".dat").write_text("a,b\n1,2\n"), "has the extension '.dat', which is no data format"),
    (lambda p: p.with_suffix("").mkdir(), "is a folder, not a data file"),
])
@pytest.mark.parametrize("command", [["real"], ["inject", "--method", "outliers", "--columns", "a"]])
def test_an_input_that_is_no_table_is_said_with_its_name(tmp_path, make, expected, command):
    make(tmp_path / "input.x")
    path = next(tmp_path.iterdir())
    line = one_line(run(command[0], path, *command[1:], "--out", tmp_path / "o"))
    assert line.startswith(f"error: input {path} {expected}"), line


# options that mean something only with another one


@pytest.mark.parametrize("args, expected", [
    (["--freq", "1h"], "error: --freq sets the step of the timestamps, but --start is not given"),
    (["--unit", "blocks"], "error: --unit describes a drift, but --drift is none"),
    (["--curve", "linear"], "error: --curve describes a drift, but --drift is none"),
    (["--rows-per-block", 10], "error: --rows-per-block sets the size of the blocks, but there is no --block-column"),
])
def test_an_option_that_would_be_ignored_is_refused(tmp_path, args, expected):
    assert one_line(run("synthetic", "sea", "--out", tmp_path, "--rows", 100, *args)).startswith(expected)


def test_rows_per_block_for_positions_in_blocks_needs_no_block_column(tmp_path):
    r = run("synthetic", "sea", "--out", tmp_path, "--rows", 100, "--drift", "abrupt", "--unit", "blocks",
            "--position", 2, "--rows-per-block", 20, "--no-report")
    assert r.exit_code == 0, r.output


def test_a_frequency_alias_pandas_renamed_is_taken_under_its_new_name_without_a_warning(tmp_path):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        r = run("synthetic", "sea", "--out", tmp_path, "--rows", 3, "--start", "2024-01-01", "--freq", "1H",
                "--no-report")
    assert r.exit_code == 0 and "Warning" not in r.output, r.output
    assert [str(w.message) for w in seen if "deprecated" in str(w.message)] == []
    stamps = pd.read_csv(next(tmp_path.glob("*.csv")))["timestamp"].tolist()
    assert stamps == ["2024-01-01 00:00:00", "2024-01-01 01:00:00", "2024-01-01 02:00:00"]


def test_a_bad_freq_is_said_without_a_pandas_warning(tmp_path):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        line = one_line(run("synthetic", "sea", "--out", tmp_path, "--start", "2024-01-01", "--freq", "7parsecs"))
    assert line.startswith("error: --freq '7parsecs' is not a pandas frequency")
    assert [str(w.message) for w in seen] == []


# clinic's --omics


def test_clinic_omics_lists_none_and_the_omics_options_need_omics(tmp_path):
    assert one_line(run("clinic", "--out", tmp_path, "--omics", "metabolome")) == \
        "error: unknown --omics 'metabolome'; valid: rnaseq, microarray, proteins, none"
    line = one_line(run("clinic", "--out", tmp_path, "--omics", "none", "--steps", 2, "--module-drift", "1=0.4"))
    assert line.startswith("error: --module-drift shapes the omics features, but --omics is none")
    # each option that shapes omics features would be ignored without them: refused, every one named
    line = one_line(run("clinic", "--out", tmp_path, "--omics", "none", "--features", 20, "--effect", 2))
    assert line.startswith("error: --features, --effect shape the omics features, but --omics is none"), line
    assert not list(tmp_path.iterdir())  # nothing written
    made = run("clinic", "--out", tmp_path, "--omics", "none", "--patients", 30, "--no-report")
    assert made.exit_code == 0, made.output  # the defaults of those options are not counted as given


# what generate prints


def test_the_output_is_only_the_wrote_line_when_not_on_a_terminal(tmp_path):
    r = run("synthetic", "sea", "--out", tmp_path, "--rows", 50, "--n-files", 2)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("wrote 2 file(s) to "), repr(r.stdout)  # no empty lines left by progress bars


# label_shift keeps the timeline (the docs' example)


def test_the_documented_label_shift_keeps_the_rows_in_order(tmp_path):
    r = run("synthetic", "agrawal", "--out", tmp_path / "data", "--rows", 3000, "--drift", "recurrent", "--period", 2,
            "--unit", "blocks", "--concepts", "0,2", "--block-column", "block", "--rows-per-block", 500,
            "--start", "2024-01-01", "--freq", "1h", "--no-report")
    assert r.exit_code == 0, r.output
    r = run("inject", tmp_path / "data" / "batch_0001.csv", "--out", tmp_path / "shifted", "--method", "label_shift",
            "--target", "y", "--param", 'priors={"0": 0.9, "1": 0.1}', "--no-report")
    assert r.exit_code == 0, r.output
    out = read_table(tmp_path / "shifted" / "injected_0001.csv")
    assert pd.to_datetime(out["timestamp"]).is_monotonic_increasing and out["block"].is_monotonic_increasing
    assert out["y"].mean() == pytest.approx(0.1, abs=1e-9)


def test_label_shift_priors_must_add_up_to_1(tmp_path, data):
    line = one_line(run("inject", data, "--out", tmp_path / "o", "--method", "label_shift", "--target", "y",
                        "--param", 'priors={"0": 0.9, "1": 0.3}'))
    assert line == "error: priors must add up to 1; {'0': 0.9, '1': 0.3} add up to 1.2"
