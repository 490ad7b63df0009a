"""A file the spec's preprocess raises on is refused naming what is wrong with the file, as the checks without a
preprocess name it (column, rows, kind of value), followed by the preprocess's own error.

The pipeline is the shipped example docs/examples/gradual.yaml with its gradual_preprocess.py (``x0 + x1``): a
401-digit integer, a 30 MB line, a Parquet date-time column or other columns made it raise ``TypeError`` or
``KeyError``, and the reason said only that.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calmops.core.registry import InputSchema
from calmops.core.spec import load_spec, resolve_paths
from calmops.tasks.ingest import PreprocessFailed, RejectedInput, ingest, parse_and_validate

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
MODULE = "gradual_preprocess.py"


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Rows as the gradual scenario writes them: a timestamp (dropped by the spec), x0..x2, the class y."""
    X = np.random.default_rng(seed).uniform(0, 10, size=(n, 3))
    return pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="h").astype(str),
                         "x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "y": (X[:, 0] + X[:, 1] <= 8).astype(int)})


def _pipeline(tmp_path: Path, module: str | None = None):
    """The example spec and its preprocess, copied; ``module`` replaces the preprocess's code."""
    for name in ("gradual.yaml", MODULE):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    if module is not None:
        (tmp_path / MODULE).write_text(module)
    return resolve_paths(load_spec(tmp_path / "gradual.yaml"), tmp_path)


@pytest.fixture
def example(calmops_home, tmp_path):
    """The example pipeline after a good file: the preprocess worked on it, the champion's schema is known."""
    spec = _pipeline(tmp_path)
    good = tmp_path / "good.csv"
    _frame().to_csv(good, index=False)
    batch = parse_and_validate(good, "0" * 64, spec, None)
    reference = InputSchema(columns=list(batch.X.columns), dtypes={c: str(t) for c, t in batch.X.dtypes.items()},
                            feature_types=batch.feature_types, target="y", task="classification", classes=[0, 1])
    assert "x0_plus_x1" in reference.columns  # made by the preprocess: the raw files never hold it
    return spec, reference


def _huge_integer(path: Path) -> None:
    frame = _frame(seed=1).astype({"x1": object})
    frame.loc[99, "x1"] = "9" * 401
    frame.to_csv(path, index=False)


def _thirty_mb_line(path: Path) -> None:
    path.write_text("timestamp,x0,x1,x2,y\n2024-01-01 00:00:00,1.5," + "7" * 30_000_000 + ",2.5,1\n")


def _datetime_parquet(path: Path) -> None:
    frame = _frame(seed=1)
    frame["x0"] = pd.date_range("2024-01-01", periods=len(frame), freq="h")
    frame.to_parquet(path, index=False)


def _other_columns(path: Path) -> None:
    _frame(seed=1).rename(columns={"x0": "a", "x1": "b", "x2": "c"}).to_csv(path, index=False)


@pytest.mark.parametrize("name,write,lead,error", [
    ("huge-int.csv", _huge_integer,
     "column 'x1' holds a number too large for a float (beyond ±1.8e308) in 1 row(s): data row 100",
     "TypeError: unsupported operand type(s) for +"),
    ("one-30mb-line.csv", _thirty_mb_line,
     "column 'x1' holds a number too large for a float (beyond ±1.8e308) in 1 row(s): data row 1",
     "TypeError: unsupported operand type(s) for +"),
    ("dates.parquet", _datetime_parquet,
     "column 'x0' should be numeric but holds date-times (datetime64[ns])",
     "UFuncTypeError: ufunc 'add' cannot use operands"),
    ("other-columns.csv", _other_columns,
     ("feature column(s) missing: x0; the file also lacks x1, x2, which the spec names "
     "(columns: 'timestamp', 'a', 'b', 'c', 'y')"),
     "KeyError: 'x0'"),
], ids=["401-digit-integer", "30-mb-line", "parquet-datetime", "other-columns"])
def test_a_file_the_example_preprocess_raises_on_is_refused_naming_its_column_then_the_preprocess_error(
        example, tmp_path, name, write, lead, error):
    spec, reference = example
    path = tmp_path / name
    write(path)
    refused = ingest.fn(path, "1" * 64, spec, reference)  # the ingest task's own code: a refusal is returned
    assert isinstance(refused, RejectedInput), refused
    reason = refused.reason
    assert reason.startswith(f"{name}: {lead} (found in the file before the preprocess"), reason
    assert f"preprocess {MODULE} raised {error}" in reason, reason  # the module's own error follows
    assert "the file is set aside" in reason and refused.details["preprocess"] == MODULE
    assert len(reason) < 800 and "7777777777" not in reason, reason  # bounded: no cell copied whole


def test_without_a_preprocess_the_same_files_say_the_same_and_a_huge_number_is_not_called_infinite(
        calmops_home, tmp_path):
    spec = _pipeline(tmp_path).model_copy(update={"preprocess": None})
    reference = InputSchema(columns=["x0", "x1", "x2"], dtypes=dict.fromkeys(["x0", "x1", "x2"], "float64"),
                            feature_types=dict(spec.feature_types), target="y", task="classification", classes=[0, 1])
    for name, write, said in [
        ("huge-int.csv", _huge_integer,
         "column 'x1' holds a number too large for a float (beyond ±1.8e308) in 1 row(s): data row 100"),
        ("dates.parquet", _datetime_parquet, "column 'x0' should be numeric but holds date-times (datetime64[ns])"),
        ("other-columns.csv", _other_columns, ("feature column(s) missing: x0, x1, x2; unexpected: 'a', 'b', 'c' "
                                                 "(columns: 'timestamp', 'a', 'b', 'c', 'y')")),
    ]:
        path = tmp_path / name
        write(path)
        with pytest.raises(RejectedInput) as info:
            parse_and_validate(path, "1" * 64, spec, reference)
        assert said in info.value.reason and "infinite" not in info.value.reason, info.value.reason
    path = tmp_path / "inf.csv"  # a value written as infinite is still said so
    _frame(seed=1).assign(x1=lambda f: f["x1"].where(f.index != 7, np.inf)).to_csv(path, index=False)
    with pytest.raises(RejectedInput, match=r"column 'x1' holds infinite values in 1 row\(s\): data row 8"):
        parse_and_validate(path, "1" * 64, spec, reference)


def test_a_fine_file_the_preprocess_raises_on_keeps_the_preprocess_error_as_its_reason(calmops_home, tmp_path):
    """Nothing wrong in the columns the spec names (the preprocess wants a column the spec does not know): the
    reason is the module's error, as before; a column the preprocess may make is not said missing."""
    spec = _pipeline(tmp_path, "def preprocess(df):\n    df = df.copy()\n    df['x0_plus_x1'] = df['x0'] + df['x1']\n"
                               "    if len(df) > 150:\n        df['w'] = df['weight']\n    return df\n")
    good = tmp_path / "good.csv"
    _frame(n=100).to_csv(good, index=False)
    parse_and_validate(good, "0" * 64, spec, None)  # the module works on the pipeline's first file
    path = tmp_path / "fine.csv"
    _frame(seed=1).to_csv(path, index=False)
    refused = ingest.fn(path, "1" * 64, spec, None)
    assert isinstance(refused, RejectedInput), refused
    assert refused.reason.startswith(f"fine.csv: preprocess {MODULE} raised KeyError: 'weight'; the same "
                                     "preprocess ran on the pipeline's earlier files"), refused.reason


def test_the_first_file_fails_the_run_but_its_reason_still_names_the_column(calmops_home, tmp_path):
    """On the pipeline's first file the preprocess's code is the suspect (the run fails, the file stays pending);
    the reason still says what is wrong with the file first."""
    spec = _pipeline(tmp_path)
    path = tmp_path / "huge-int.csv"
    _huge_integer(path)
    with pytest.raises(PreprocessFailed) as info:
        parse_and_validate(path, "1" * 64, spec, None)
    message = str(info.value)
    assert message.startswith("column 'x1' holds a number too large for a float (beyond ±1.8e308) in 1 row(s): "
                              "data row 100 (found in the file before the preprocess"), message
    assert f"preprocess {MODULE} raised TypeError" in message, message
