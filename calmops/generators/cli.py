"""``calmops generate …``: the generators from the command line (a typer sub-app named ``app``).

Every command writes data files and an HTML report to ``--out``; bad parameters end with one clear
line on stderr and exit code 2.
"""


import functools
import inspect
import json
import os
import re
import typing
import warnings
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import clinic as _clinic
from . import inject as _inject
from .files import _EXTENSIONS, FORMATS, check_prefix, read_table, write_files
from .params import checked, kinds_of, param_form
from .real import quality_report, synthesize_like
from .report import write_report
from .scenarios import SCENARIOS, run_scenario
from .synthetic import DRIFT_KINDS, DriftSpec, Timestamps, check_drift_kind, drift_positions, generator_names
from .synthetic import synthetic as _synthetic

app = typer.Typer(help="Generate drifting data: synthetic streams, real-like data, clinical cohorts, "
                       "drift injection, ready-made scenarios.", no_args_is_help=True,
                  add_completion=False, rich_markup_mode=None)  # plain help, as every other calmops command


def _stdout_console() -> Console:
    """Into a file or a pipe, a path stays on its line (unless COLUMNS asks for a width), also when FORCE_COLOR
    makes rich treat the pipe as a terminal."""
    made = Console()
    try:
        tty = made.file.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream
        tty = False
    made.soft_wrap = not tty and not os.environ.get("COLUMNS")
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
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


# The library's messages name Python parameters; the user typed these options (per command).
_OPTIONS = {"n_files": "--n-files", "rows_per_file": "--rows-per-file", "prefix": "--prefix"}
_COMMAND_OPTIONS = {
    "synthetic": {"n_rows": "--rows", "rows_per_block": "--rows-per-block", "block_column": "--block-column",
                  "class_balance": "--class-balance", "width": "--width", "period": "--period",
                  "unit": "--unit", "curve": "--curve", "position": "--position", "target": "--target"},
    "real": {"n_rows": "--rows"},
    "clinic": {"n_patients": "--patients", "n_steps": "--steps", "n_features": "--features",
               "n_modules": "--modules", "de_share": "--de-share", "module_drift": "--module-drift",
               "groups": "--group"},
}


def _as_typed(msg: object, command: str) -> str:
    """``msg`` with the Python parameter names of ``command`` replaced by its options (not inside quoted values).
    A name that is also a plain word (``width``, ``groups``) only where it is what a rule is about (``width must
    …``, ``width > 0``), not elsewhere in a sentence (``unknown groups``, ``period unit``)."""
    names = {**_OPTIONS, **_COMMAND_OPTIONS.get(command, {})}
    compound = "|".join(n for n in names if "_" in n)
    plain = "|".join(n for n in names if "_" not in n)
    pattern = (r"'[^']*'|(?<![\w-])(" + compound + r")(?![\w(-])"
               + (r"|(?<![\w-])(" + plain + r")(?= must\b| needs\b| [<>]=? )" if plain else ""))
    return re.sub(pattern, lambda m: names[m[m.lastindex]] if m.lastindex else m[0], str(msg))


def _friendly(fn):
    """Turn bad parameters into one line, a hint line (what to do, else where the command's options are told) and
    exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, KeyError, TypeError, FileNotFoundError, _Bad) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            msg = msg if isinstance(exc, _Bad) else _as_typed(msg, fn.__name__)
            err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, markup=True)
            hint = getattr(exc, "hint", "") or (f"'calmops generate {fn.__name__} --help' lists its options; "
                                                "docs/generators.md has an example of each command")
            err.print(f"[dim]hint: {escape(hint)}[/]", highlight=False, markup=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _at_least(minimum: int, **options) -> None:
    """Refuse an option below ``minimum`` (None = not given), named as typed: ``rows_per_file`` -> --rows-per-file."""
    for name, value in options.items():
        if value is not None and value < minimum:
            raise _Bad(f"--{name.replace('_', '-')} must be at least {minimum}, got {value:g}")


def _typed(ctx: typer.Context, *names: str) -> list[str]:
    """The options among ``names`` (parameter names) given on the command line, as typed: ``de_share`` ->
    --de-share (their defaults are not counted)."""
    return [f"--{n.replace('_', '-')}" for n in names
            if getattr(ctx.get_parameter_source(n), "name", None) == "COMMANDLINE"]


_TRY = "to make a table to try: .venv/bin/calmops generate synthetic agrawal --out data/ (see docs/generators.md)"


def _read_input(path: Path):
    """INPUT read as a table; a missing file, a folder, a name without a data extension, an empty file and a
    table without rows are each said with the file's name."""
    if not path.exists():
        raise _Bad(f"input file not found: {path}", f"check the path; {_TRY}")
    if path.is_dir():
        raise _Bad(f"input {path} is a folder, not a data file", "give one data file in it")
    if path.suffix.lower() not in _EXTENSIONS:
        what = f"has the extension {path.suffix!r}, which is no data format" if path.suffix else "has no extension"
        raise _Bad(f"input {path} {what}: name it {', '.join('.' + e for e in FORMATS.values())}",
                   "the extension tells the format (a .txt file is read as CSV)")
    if path.stat().st_size == 0:
        raise _Bad(f"input {path} is empty (0 bytes)", f"give a file with a header and rows; {_TRY}")
    df = read_table(path)
    if len(df) == 0:
        raise _Bad(f"input {path} has no rows (columns only: {', '.join(map(str, df.columns))})",
                   f"give a file with rows; {_TRY}")
    return df


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


def _params(items: list[str] | None, option: str = "--param") -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise _Bad(f"{option} {item!r} must look like key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = _value(v)
    return out


def _numbers(items: list[str] | None, option: str, expected: str, key=str) -> dict:
    """Repeated ``--option key=number`` items as a dict; a bad item is named with its option."""
    out = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            out[key(k.strip())] = float(v)
        except ValueError:
            raise _Bad(f"{option} {item!r} must look like {expected}") from None
    return out


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
        if all(v.is_integer() for v in values):
            return [int(v) for v in values]
    except ValueError:
        pass
    raise _Bad(f"{what} must be comma-separated integers, got {text!r}")


def _list(text: str | None) -> list[str]:
    return [v.strip() for v in (text or "").split(",") if v.strip()]


def _fmt(fmt: str) -> str:
    if fmt.lower() not in FORMATS:
        raise _Bad(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return fmt.lower()


def _file_options(fmt: str, n_files, rows_per_file, seed: int, pace: float = 0.0) -> str:
    """The options every command shares, checked before any work; returns the format."""
    _at_least(1, n_files=n_files, rows_per_file=rows_per_file)
    _at_least(0, seed=seed, pace=pace)
    if n_files is not None and rows_per_file is not None:
        raise _Bad("give --n-files or --rows-per-file, not both")
    return _fmt(fmt)


def _progress() -> Progress:
    """A progress bar on a terminal; nothing into a file or a pipe (rich would leave an empty line there)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


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
    """Where the report goes: ``--report``, else OUT/report.html, except into a pipeline's incoming folder
    (``<pipeline folder>/incoming`` beside its ``spec.yaml``), where every file is taken as data (a page there
    would be quarantined): then ./<pipeline>-report.html."""
    if no_report:
        return None
    if report:
        return report
    pipeline_folder = out.resolve().parent
    if out.resolve().name == "incoming" and (pipeline_folder / "spec.yaml").exists():
        return Path(f"{pipeline_folder.name}-report.html")
    return out / "report.html"


def _file_in_the_way(path: Path) -> Path | None:
    """The existing file that ``path`` is or lies under (None: a folder can be there)."""
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def _where(out: Path, report: Path | None, no_report: bool, prefix: str | None = None) -> Path | None:
    """Where the files and the report go, checked before any work; returns the report's path (None: no report)."""
    if (blocker := _file_in_the_way(out)) is not None:
        raise _Bad(f"--out {out} is a file, not a folder" if blocker == out else
                   f"--out {out} lies under {blocker}, which is a file, not a folder",
                   "give a folder for the data files (made if missing), e.g. --out data/")
    try:
        check_prefix("batch" if prefix is None else prefix)
    except ValueError as exc:
        raise _Bad(_as_typed(exc, ""), "give a plain name, e.g. --prefix batch: the files are OUT/PREFIX_0001.csv, "
                                        "…") from None
    rp = _report_path(out, report, no_report)
    named = f"--report {rp}" if report else f"the report's path {rp}"
    if rp is not None and rp.is_dir():
        raise _Bad(f"{named} is a folder, not a file", f"give a file name, e.g. --report {rp / 'report.html'}")
    if rp is not None and (blocker := _file_in_the_way(rp.parent)) is not None:
        raise _Bad(f"{named} lies under {blocker}, which is a file, not a folder",
                   "give --report a path in a folder, e.g. --report report.html")
    return rp


def _class_balance(text: str | None) -> float | dict | None:
    """--class-balance: the share of class 1 (0.3), or label:share pairs (1:0.3 or 0:0.7,1:0.3)."""
    if not text:
        return None
    try:
        if ":" not in text:
            return float(text)
        pairs = [(k.strip(), float(v)) for k, v in (item.split(":", 1) for item in _list(text))]
    except ValueError:
        raise _Bad(f"--class-balance must be the share of class 1 (e.g. 0.3) or label:share pairs "
                   f"(e.g. 0:0.7,1:0.3), got {text!r}") from None
    named = [k for k, _ in pairs]
    if len(set(named)) < len(named):
        twice = sorted({k for k in named if named.count(k) > 1})
        raise _Bad(f"--class-balance names class {', '.join(map(repr, twice))} more than once, got {text!r}")
    return dict(pairs)


def _timestamps(start: str | None, freq: str | None) -> Timestamps | None:
    if not start:
        if freq is not None:
            raise _Bad("--freq sets the step of the timestamps, but --start is not given; add --start "
                       "(e.g. 2024-01-01) or leave --freq out")
        return None
    try:
        pd.Timestamp(start)
    except (TypeError, ValueError):
        raise _Bad(f"--start {start!r} is not a date; give an ISO date, e.g. 2024-01-01 or 2024-01-01T08:00") from None
    freq = freq or "1min"
    with warnings.catch_warnings(record=True) as said:  # pandas' deprecation warnings name its own source lines
        warnings.simplefilter("always")
        try:
            pd.tseries.frequencies.to_offset(freq)
        except ValueError:
            raise _Bad(f"--freq {freq!r} is not a pandas frequency; give one such as 1min, 1h, D, W or MS") from None
    if said:  # an alias pandas has renamed ('1H' for '1h'): the new name, as pandas would take it
        old_new = re.search(r"'([^']*)' is deprecated.*use '([^']*)'", str(said[0].message))
        if not old_new:
            raise _Bad(f"--freq {freq!r}: {said[0].message}")
        freq = freq.replace(old_new[1], old_new[2])
    return Timestamps(start=start, freq=freq)


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
    unit: Annotated[str | None, typer.Option(help="Unit of position/width/period: rows (default) or blocks.")] = None,
    period: Annotated[int | None, typer.Option(help="Recurrent: segment length.")] = None,
    curve: Annotated[str | None, typer.Option(help="Gradual curve: sigmoid (default) or linear.")] = None,
    feature: Annotated[str | None, typer.Option(help="Virtual drift: input that shifts.")] = None,
    class_balance: Annotated[str | None, typer.Option(help="Share of class 1, or label:share,…")] = None,
    start: Annotated[str | None, typer.Option(help="Add a timestamp column starting here.")] = None,
    freq: Annotated[str | None, typer.Option(help="Timestamp step, e.g. 1min (default), 1h, 1D.")] = None,
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
    fmt = _file_options(fmt, n_files, rows_per_file, seed, pace)
    rp = _where(out, report, no_report, prefix)
    _at_least(1, rows=rows, rows_per_block=rows_per_block, period=period)
    _at_least(0, width=width)
    spec = None
    given = {"--position": position, "--width": width or None, "--concepts": concepts, "--period": period,
             "--feature": feature, "--unit": unit, "--curve": curve}
    if drift == "none" and (unused := [option for option, value in given.items() if value is not None]):
        raise _Bad(f"{', '.join(unused)} {'describe' if len(unused) > 1 else 'describes'} a drift, but --drift is "
                   "none; add --drift "
                   f"({', '.join(DRIFT_KINDS)}) or leave {'them' if len(unused) > 1 else 'it'} out")
    if drift != "none":
        try:  # before the drift's own options: no --width to add in vain
            check_drift_kind(generator, drift)
        except ValueError as exc:
            raise _Bad(f"--drift {drift}: {exc}") from None
        pos = _ints(position, "--position")
        spec = DriftSpec(kind=drift, position=(pos[0] if pos and len(pos) == 1 else pos), width=width,
                         concepts=_ints(concepts, "--concepts"), unit=unit or "rows", period=period,
                         curve=curve or "sigmoid", feature=feature)
    if rows_per_block is not None and not block_column and unit != "blocks":
        raise _Bad("--rows-per-block sets the size of the blocks, but there is no --block-column (nor --unit "
                   "blocks); add --block-column NAME or leave --rows-per-block out")
    positions = drift_positions(generator, rows, spec, rows_per_block)  # checks the drift; centre of each change
    balance, stamps = _class_balance(class_balance), _timestamps(start, freq)
    with _progress() as bar:
        task = bar.add_task(f"generating {generator}", total=rows)
        df = _synthetic(generator, rows, drift=spec, seed=seed, params=_params(param), class_balance=balance,
                        timestamps=stamps, block_column=block_column, rows_per_block=rows_per_block,
                        target=target, include_concept=True, progress=lambda n: bar.update(task, completed=n))
    concept = df.pop("concept")
    paths = _write(df, out, fmt, n_files, rows_per_file, prefix, pace)
    if rp:
        write_report(rp, df.assign(concept=concept), title=f"Synthetic {generator}", target=target,
                     time_column="timestamp" if start else None, block_column=block_column, truth="concept",
                     split=int(positions[0]) if positions else None,
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
    fmt = _file_options(fmt, n_files, rows_per_file, seed)
    rp = _where(out, report, no_report, prefix)
    _at_least(1, rows=rows)  # not given: as many rows as the input
    src = _read_input(input)
    cols = _list(drop)
    if cols:
        missing = [c for c in cols if c not in src.columns]
        if missing:
            raise _Bad(f"--drop names unknown column(s) {missing}")
        src = src.drop(columns=cols)
    if by is not None and by not in src.columns:
        raise _Bad(f"--by names unknown column {by!r}; columns: {', '.join(map(str, src.columns))}")
    with console.status("fitting the copula and sampling…"):
        df = synthesize_like(src, len(src) if rows is None else rows, seed=seed, by=by)
        quality = quality_report(src, df)
    paths = _write(df, out, fmt, n_files, rows_per_file, prefix)
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
    ctx: typer.Context,
    out: Out,
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 200,
    steps: Annotated[int, typer.Option(help="Time steps (1 = cross-sectional).")] = 1,
    omics: Annotated[str, typer.Option(help=f"{', '.join(_clinic.OMICS)} or none.")] = "rnaseq",
    features: Annotated[int, typer.Option(help="Number of omics features.")] = 100,
    modules: Annotated[int, typer.Option(help="Number of co-expression modules.")] = 5,
    de_share: Annotated[float, typer.Option(help="Share of differentially expressed features.")] = 0.2,
    effect: Annotated[float, typer.Option(help="Disease effect in log2 units.")] = 1.0,
    group: Annotated[list[str] | None, typer.Option(
        help="name=share (repeatable; first is control); shares are relative: 1 and 3 make 25 % and 75 %.")] = None,
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
    fmt = _file_options(fmt, n_files, rows_per_file, seed)
    rp = _where(out, report, no_report, prefix)
    _at_least(1, patients=patients, steps=steps, features=features, modules=modules)
    groups = _numbers(group, "--group", "name=share, e.g. control=0.5") or None
    if omics.lower() not in (*_clinic.OMICS, "none"):
        raise _Bad(f"unknown --omics {omics!r}; valid: {', '.join(_clinic.OMICS)}, none")
    kind = None if omics.lower() == "none" else omics.lower()
    if kind is None and (shaping := _typed(ctx, "features", "modules", "de_share", "effect", "module_drift")):
        raise _Bad(f"{', '.join(shaping)} shape{'s' if len(shaping) == 1 else ''} the omics features, but --omics "
                   "is none; give --omics rnaseq, microarray or proteins, or leave "
                   f"{'it' if len(shaping) == 1 else 'them'} out")
    common = {"seed": seed, "groups": groups, "omics": kind, "n_features": features, "n_modules": modules,
                  "de_share": de_share, "effect_size": effect}
    with console.status("generating the cohort…"):
        if steps > 1:
            drift = _numbers(module_drift, "--module-drift", "module=log2 change per step, e.g. 1=0.4", key=int)
            df = _clinic.longitudinal(patients, steps, module_drift=drift, **common)
        else:
            if module_drift:
                raise _Bad("--module-drift needs --steps > 1")
            df = _clinic.cohort(patients, **common)
    paths = _write(df, out, fmt, n_files, rows_per_file, prefix)
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
    fmt = _file_options(fmt, n_files, rows_per_file, seed)
    rp = _where(out, report, no_report, prefix)
    _at_least(0, start=start, stop=stop)
    if method not in _inject.INJECTORS:
        raise _Bad(f"unknown method {method!r}; valid methods: {', '.join(_inject.INJECTORS)}")
    for option, value, needs, given in (("--since", since, "--time-column", time_column),
                                        ("--until", until, "--time-column", time_column),
                                        ("--blocks", blocks, "--block-column", block_column),
                                        ("--block-column", block_column, "--blocks", blocks)):
        if value is not None and given is None:  # else every row would be modified
            raise _Bad(f"{option} needs {needs}")
    if time_column is not None and since is None and until is None:
        raise _Bad("--time-column needs --since and/or --until")
    df = _read_input(input)
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
    for name, p in sig.items():  # a parameter without a default that no option above gave: one --param
        if p.default is inspect.Parameter.empty and name != "df" and name not in kwargs:
            raise _Bad(f"{method} needs --param {name}=… ({param_form(hints.get(name, object))})")
    if "rows" in sig:
        kwargs["rows"] = rows
    result = fn(df, seed=seed, **kwargs)
    paths = _write(result, out, fmt, n_files, rows_per_file, prefix)
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
    fmt = _file_options(fmt, None, None, seed, pace)
    rp = _where(out, report, no_report)
    _at_least(1, n_files=n_files, rows_per_file=rows_per_file)
    if name not in SCENARIOS:
        raise _Bad(f"unknown scenario {name!r}; valid scenarios: {', '.join(SCENARIOS)}")
    with _progress() as bar:
        task = bar.add_task(f"generating {name}", total=n_files * rows_per_file)
        result = run_scenario(name, out, seed=seed, n_files=n_files, rows_per_file=rows_per_file, fmt=fmt,
                              report=rp or False, pace_seconds=pace,
                              progress=lambda n: bar.update(task, completed=n))
    _done(result.files, result.report)
