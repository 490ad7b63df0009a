"""``calmops generate …``: the generators from the command line (a typer sub-app named ``app``).

Every command writes data files and an HTML report to ``--out``; bad parameters end with one clear
line on stderr and exit code 2.
"""


import functools
import inspect
import json
import os
import typing
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import clinic as _clinic
from . import inject as _inject
from .files import FORMATS, read_table, write_files
from .params import checked, kinds_of
from .real import quality_report, synthesize_like
from .report import write_report
from .scenarios import SCENARIOS, run_scenario
from .synthetic import DRIFT_KINDS, DriftSpec, Timestamps, generator_names
from .synthetic import synthetic as _synthetic

app = typer.Typer(help="Generate drifting data: synthetic streams, real-like data, clinical cohorts, "
                       "drift injection, ready-made scenarios.", no_args_is_help=True)


def _stdout_console() -> Console:
    """Into a file or a pipe, a path stays on its line (unless COLUMNS asks for a width)."""
    made = Console()
    made.soft_wrap = not made.is_terminal and not os.environ.get("COLUMNS")
    return made


console = _stdout_console()
err = Console(stderr=True, soft_wrap=True)  # errors stay on one line

Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder for the data files.")]
Fmt = Annotated[str, typer.Option("--fmt", help=f"File format: {', '.join(FORMATS)}.")]
Seed = Annotated[int, typer.Option(help="Random seed (same seed, same data).")]
NFiles = Annotated[int | None, typer.Option("--n-files", help="Split the rows into this many files.")]
RowsPerFile = Annotated[int | None, typer.Option("--rows-per-file", help="Rows per file (instead of --n-files).")]
Report = Annotated[Path | None, typer.Option(help="Report path (default: OUT/report.html).")]
NoReport = Annotated[bool, typer.Option("--no-report", help="Do not write the HTML report.")]
Pace = Annotated[float, typer.Option("--pace", help="Seconds to wait between files.")]
Params = Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable).")]


class _Bad(Exception):
    pass


def _friendly(fn):
    """Turn bad parameters into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, KeyError, TypeError, FileNotFoundError, _Bad) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            err.print(f"[bold red]error:[/] {msg}", highlight=False, markup=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _value(text: str):
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _params(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise _Bad(f"--param {item!r} must look like key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = _value(v)
    return out


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _Bad(f"{what} must be comma-separated numbers, got {text!r}") from None


def _list(text: str | None) -> list[str]:
    return [v.strip() for v in (text or "").split(",") if v.strip()]


def _fmt(fmt: str) -> str:
    if fmt.lower() not in FORMATS:
        raise _Bad(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return fmt.lower()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _write(df, out: Path, fmt: str, n_files, rows_per_file, prefix: str, pace: float = 0.0):
    if n_files is None and rows_per_file is None:
        n_files = 1
    total = n_files or -(-len(df) // rows_per_file)
    with _progress() as bar:
        task = bar.add_task("writing files", total=total)
        paths = write_files(df, out, n_files=n_files, rows_per_file=rows_per_file, fmt=fmt, prefix=prefix,
                            pace_seconds=pace, on_file=lambda _: bar.advance(task))
    return paths


def _done(paths, report) -> None:
    console.print(f"wrote {len(paths)} file(s) to {paths[0].parent}" + (f"; report: {report}" if report else ""))


def _report_path(out: Path, report: Path | None, no_report: bool) -> Path | None:
    return None if no_report else (report or out / "report.html")


@app.command("synthetic")
@_friendly
def synthetic(
    generator: Annotated[str, typer.Argument(help=f"One of: {', '.join(generator_names())}.")],
    out: Out,
    rows: Annotated[int, typer.Option(help="Number of rows.")] = 10_000,
    drift: Annotated[str, typer.Option(help=f"none or one of: {', '.join(DRIFT_KINDS)}.")] = "none",
    position: Annotated[str | None, typer.Option(help="Drift position(s), comma-separated.")] = None,
    width: Annotated[int, typer.Option(help="Transition width (gradual/incremental).")] = 0,
    concepts: Annotated[str | None, typer.Option(help="Concept of each segment, e.g. 0,1,2.")] = None,
    unit: Annotated[str, typer.Option(help="Unit of position/width/period: rows or blocks.")] = "rows",
    period: Annotated[int | None, typer.Option(help="Recurrent: segment length.")] = None,
    curve: Annotated[str, typer.Option(help="Gradual curve: sigmoid or linear.")] = "sigmoid",
    feature: Annotated[str | None, typer.Option(help="Virtual drift: input that shifts.")] = None,
    class_balance: Annotated[str | None, typer.Option(help="Share of class 1, or label:share,…")] = None,
    start: Annotated[str | None, typer.Option(help="Add a timestamp column starting here.")] = None,
    freq: Annotated[str, typer.Option(help="Timestamp step, e.g. 1min, 1h, 1D.")] = "1min",
    block_column: Annotated[str | None, typer.Option(help="Add a block column with this name.")] = None,
    rows_per_block: Annotated[int | None, typer.Option(help="Rows per block.")] = None,
    target: Annotated[str, typer.Option(help="Name of the target column.")] = "y",
    param: Params = None,
    seed: Seed = 0,
    fmt: Fmt = "csv",
    n_files: NFiles = None,
    rows_per_file: RowsPerFile = None,
    prefix: Annotated[str, typer.Option(help="File name prefix.")] = "batch",
    pace: Pace = 0.0,
    report: Report = None,
    no_report: NoReport = False,
):
    """Rows from a river generator with a drift, written as files (see docs/generators.md)."""
    fmt = _fmt(fmt)
    spec = None
    if drift != "none":
        pos = _ints(position, "--position")
        spec = DriftSpec(kind=drift, position=(pos[0] if pos and len(pos) == 1 else pos), width=width,
                         concepts=_ints(concepts, "--concepts"), unit=unit, period=period, curve=curve,
                         feature=feature)
    balance = None
    if class_balance:
        if ":" in class_balance:
            balance = {k: float(v) for k, v in (p.split(":", 1) for p in _list(class_balance))}
        else:
            balance = float(class_balance)
    with _progress() as bar:
        task = bar.add_task(f"generating {generator}", total=rows)
        df = _synthetic(generator, rows, drift=spec, seed=seed, params=_params(param), class_balance=balance,
                        timestamps=Timestamps(start=start, freq=freq) if start else None,
                        block_column=block_column, rows_per_block=rows_per_block, target=target,
                        include_concept=True, progress=lambda n: bar.update(task, completed=n))
    concept = df.pop("concept")
    paths = _write(df, out, fmt, n_files, rows_per_file, prefix, pace)
    rp = _report_path(out, report, no_report)
    if rp:
        split = None
        if spec is not None and spec.kind != "incremental":
            changed = (concept != concept.iloc[0]).to_numpy()
            split = int(changed.argmax()) if changed.any() else None
        elif spec is not None:
            split = int((concept > 0).to_numpy().argmax())
        write_report(rp, df.assign(concept=concept), title=f"Synthetic {generator}", target=target,
                     time_column="timestamp" if start else None, block_column=block_column, split=split,
                     notes={"generator": generator, "rows": rows, "seed": seed, "drift": drift,
                            "position": position, "width": width, "concepts": concepts,
                            "params": _params(param)})
    _done(paths, rp)


@app.command("real")
@_friendly
def real(
    input: Annotated[Path, typer.Argument(help="A data file to mimic (any supported format).")],
    out: Out,
    rows: Annotated[int | None, typer.Option(help="Rows to generate (default: as many as the input).")] = None,
    by: Annotated[str | None, typer.Option(help="Fit one copula per value of this column (e.g. a block).")] = None,
    drop: Annotated[str | None, typer.Option(help="Columns to leave out, comma-separated.")] = None,
    seed: Seed = 0,
    fmt: Fmt = "csv",
    n_files: NFiles = None,
    rows_per_file: RowsPerFile = None,
    prefix: Annotated[str, typer.Option(help="File name prefix.")] = "synth",
    report: Report = None,
    no_report: NoReport = False,
):
    """Synthetic rows that mimic INPUT (Gaussian copula, empirical marginals) with a quality report."""
    fmt = _fmt(fmt)
    if not input.exists():
        raise _Bad(f"input file not found: {input}")
    src = read_table(input)
    cols = _list(drop)
    if cols:
        missing = [c for c in cols if c not in src.columns]
        if missing:
            raise _Bad(f"--drop names unknown column(s) {missing}")
        src = src.drop(columns=cols)
    with console.status("fitting the copula and sampling…"):
        df = synthesize_like(src, rows or len(src), seed=seed, by=by)
        quality = quality_report(src, df)
    paths = _write(df, out, fmt, n_files, rows_per_file, prefix)
    rp = _report_path(out, report, no_report)
    if rp:
        write_report(rp, df, reference=src, title=f"Synthetic data like {input.name}", quality=quality,
                     notes={"input": str(input), "rows": len(df), "seed": seed, "by": by})
    s = quality["summary"]
    console.print(f"quality: mean similarity {s['mean_similarity']:.3f}, max correlation difference "
                  f"{s['max_corr_diff']:.3f}")
    _done(paths, rp)


@app.command("clinic")
@_friendly
def clinic(
    out: Out,
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 200,
    steps: Annotated[int, typer.Option(help="Time steps (1 = cross-sectional).")] = 1,
    omics: Annotated[str, typer.Option(help="rnaseq, microarray, proteins or none.")] = "rnaseq",
    features: Annotated[int, typer.Option(help="Number of omics features.")] = 100,
    modules: Annotated[int, typer.Option(help="Number of co-expression modules.")] = 5,
    de_share: Annotated[float, typer.Option(help="Share of differentially expressed features.")] = 0.2,
    effect: Annotated[float, typer.Option(help="Disease effect in log2 units.")] = 1.0,
    group: Annotated[list[str] | None, typer.Option(help="name=share (repeatable; first is control).")] = None,
    module_drift: Annotated[list[str] | None, typer.Option(help="module=log2 per step (repeatable).")] = None,
    seed: Seed = 0,
    fmt: Fmt = "csv",
    n_files: NFiles = None,
    rows_per_file: RowsPerFile = None,
    prefix: Annotated[str, typer.Option(help="File name prefix.")] = "cohort",
    report: Report = None,
    no_report: NoReport = False,
):
    """A synthetic clinical cohort (demographics + omics with disease effects), optionally longitudinal."""
    fmt = _fmt(fmt)
    groups = {k: float(v) for k, v in _params(group).items()} or None
    kind = None if omics.lower() == "none" else omics.lower()
    common = {"seed": seed, "groups": groups, "omics": kind, "n_features": features, "n_modules": modules,
                  "de_share": de_share, "effect_size": effect}
    with console.status("generating the cohort…"):
        if steps > 1:
            drift = {int(k): float(v) for k, v in _params(module_drift).items()}
            df = _clinic.longitudinal(patients, steps, module_drift=drift, **common)
        else:
            if module_drift:
                raise _Bad("--module-drift needs --steps > 1")
            df = _clinic.cohort(patients, **common)
    paths = _write(df, out, fmt, n_files, rows_per_file, prefix)
    rp = _report_path(out, report, no_report)
    if rp:
        severity = df.attrs["truth"]["groups"]
        ref = df[df["group"] == min(severity, key=severity.get)]
        write_report(rp, df.drop(columns=["patient_id"]), reference=ref.drop(columns=["patient_id"]),
                     title="Clinical cohort (before = control group, after = everyone)", target="group",
                     block_column="time" if steps > 1 else None,
                     notes={"patients": patients, "steps": steps, "omics": omics, "seed": seed,
                            "differential features": len(df.attrs["truth"].get("de", {}))})
    _done(paths, rp)


@app.command("inject")
@_friendly
def inject(
    input: Annotated[Path, typer.Argument(help="The data file to modify.")],
    out: Out,
    method: Annotated[str, typer.Option(help=f"One of: {', '.join(_inject.INJECTORS)}.")],
    columns: Annotated[str | None, typer.Option(help="Column(s), comma-separated.")] = None,
    target: Annotated[str | None, typer.Option(help="Target column (label/concept methods).")] = None,
    param: Params = None,
    start: Annotated[int | None, typer.Option(help="First row (position) to modify.")] = None,
    stop: Annotated[int | None, typer.Option(help="Row position to stop before.")] = None,
    block_column: Annotated[str | None, typer.Option(help="Select rows by this block column…")] = None,
    blocks: Annotated[str | None, typer.Option(help="…with these values (comma-separated).")] = None,
    time_column: Annotated[str | None, typer.Option(help="Select rows by this time column…")] = None,
    since: Annotated[str | None, typer.Option(help="…from this time (inclusive)…")] = None,
    until: Annotated[str | None, typer.Option(help="…to this time (exclusive).")] = None,
    seed: Seed = 0,
    fmt: Fmt = "csv",
    n_files: NFiles = None,
    rows_per_file: RowsPerFile = None,
    prefix: Annotated[str, typer.Option(help="File name prefix.")] = "injected",
    report: Report = None,
    no_report: NoReport = False,
):
    """Inject drift into INPUT, in the chosen rows (see --method for the list)."""
    fmt = _fmt(fmt)
    if method not in _inject.INJECTORS:
        raise _Bad(f"unknown method {method!r}; valid methods: {', '.join(_inject.INJECTORS)}")
    if not input.exists():
        raise _Bad(f"input file not found: {input}")
    df = read_table(input)
    fn = _inject.INJECTORS[method]
    kwargs = _params(param)
    rows = None
    if any(v is not None for v in (start, stop, block_column, time_column)):
        rows = _inject.Rows(start=start, stop=stop, column=block_column,
                            values=[_value(v) for v in _list(blocks)] if block_column else None,
                            time_column=time_column, since=since, until=until)
    sig = inspect.signature(fn).parameters
    cols = _list(columns)
    if "columns" in sig:
        if not cols:
            raise _Bad(f"{method} needs --columns")
        kwargs["columns"] = cols
    elif "column" in sig:
        if len(cols) != 1:
            raise _Bad(f"{method} needs exactly one column in --columns")
        kwargs["column"] = cols[0]
    elif "column_a" in sig:
        if len(cols) != 2:
            raise _Bad(f"{method} needs two columns in --columns, e.g. --columns a,b")
        kwargs["column_a"], kwargs["column_b"] = cols
    if "target" in sig and method != "correlation_change":
        if not target:
            raise _Bad(f"{method} needs --target")
        kwargs["target"] = target
    hints = typing.get_type_hints(fn)
    kwargs = checked(method, kwargs, {k: kinds_of(hints.get(k, object)) for k in sig if k not in ("df", "rows", "seed")})
    if "rows" in sig:
        kwargs["rows"] = rows
    result = fn(df, seed=seed, **kwargs)
    paths = _write(result, out, fmt, n_files, rows_per_file, prefix)
    rp = _report_path(out, report, no_report)
    if rp:
        write_report(rp, result, reference=df, title=f"{method} injected into {input.name}", target=target,
                     notes={"input": str(input), "method": method, **{k: v for k, v in kwargs.items()
                                                                      if k != "rows"}, "seed": seed})
    _done(paths, rp)


@app.command("scenario")
@_friendly
def scenario(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCENARIOS)}.")],
    out: Out,
    n_files: Annotated[int, typer.Option("--n-files", help="Number of files.")] = 10,
    rows_per_file: Annotated[int, typer.Option("--rows-per-file", help="Rows per file.")] = 500,
    seed: Seed = 0,
    fmt: Fmt = "csv",
    pace: Pace = 0.0,
    report: Report = None,
    no_report: NoReport = False,
):
    """A ready-made scenario (gradual, abrupt, recurrent): files plus report; specs in docs/examples/."""
    fmt = _fmt(fmt)
    if name not in SCENARIOS:
        raise _Bad(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}")
    with _progress() as bar:
        task = bar.add_task(f"generating {name}", total=n_files * rows_per_file)
        result = run_scenario(name, out, seed=seed, n_files=n_files, rows_per_file=rows_per_file, fmt=fmt,
                              report=False if no_report else (report or True), pace_seconds=pace,
                              progress=lambda n: bar.update(task, completed=n))
    _done(result.files, result.report)
