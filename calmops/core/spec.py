"""The pipeline spec (docs/spec.md): one YAML file per pipeline, validated by pydantic.

Unknown keys, wrong types and model classes outside the allow-list are refused with one
error that names the key. The spec is the single source of truth for flows, CLI and viewer.
:func:`check_spec` adds what needs imports and files (run at ``create``/``update``): the model classes
exist and are estimators, their params are valid, hooks and preprocess modules exist and define their
functions; :func:`resolve_paths` makes a spec file's relative paths absolute.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import inspect
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from calmops.core.errors import CalmOpsError
from calmops.core.kinds import KINDS, KindName
from calmops.core.names import (
    CLASSIFICATION_METRICS,
    HIGHER_IS_BETTER,
    METRIC_RANGE,
    REGRESSION_METRICS,
    block_name,
)
from calmops.detectors.config import DriftConfig, check_seed

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
FORMATS = ("csv", "tsv", "txt", "parquet", "json", "jsonl", "arff", "xlsx")
TEXT_FORMATS = ("csv", "tsv", "txt")  # delimited text: its values' types are guessed when read
FEATURE_TYPES = ("numeric", "categorical", "boolean", "datetime")
RETRAIN_MODES = ("full", "incremental", "window", "stacking", "replay", "recalibration", "history", "auto")
#: the packages whose classes a spec's model may name, and whose estimator classes a saved model may hold
ALLOWED_MODEL_PREFIXES = ("sklearn.", "river.compat.", "lightgbm.", "xgboost.", "calmops.core.")


class SpecError(CalmOpsError, ValueError):
    """A spec that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


_INTERVAL = re.compile(r"^\s*(?:every\s+)?(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?\s*$",
                       re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_schedule(text: str | None) -> dict[str, Any]:
    """``{"interval": seconds}`` or ``{"cron": expr}`` from a spec's ``schedule`` ({} when none)."""
    if not text or not str(text).strip():
        return {}
    match = _INTERVAL.match(str(text))
    if match:
        seconds = float(match.group(1)) * _UNIT[(match.group(2) or "s")[0].lower()]
        if seconds < 10:
            raise ValueError(f"schedule {text!r} is shorter than 10 seconds; the watcher covers that")
        return {"interval": seconds}
    fields = str(text).split()
    if len(fields) not in (5, 6):
        raise ValueError(f"schedule {text!r} is neither an interval (300, 90s, 5m, 1h) nor a cron expression")
    # Prefect's own check of the cron expressions its schedules take, loaded only for a spec that has one
    from prefect._internal.schemas.validators import validate_cron_string

    try:
        validate_cron_string(str(text).strip())
    except ValueError as exc:
        raise ValueError(f"schedule {text!r} is not a cron expression Prefect takes: {exc}") from None
    return {"cron": str(text).strip()}


class ModelSpec(_Strict):
    """An estimator by import path, or a sklearn Pipeline of such steps."""

    class_: str | None = Field(default=None, alias="class")
    params: dict[str, Any] = Field(default_factory=dict)
    steps: list[ModelSpec] | None = None

    @model_validator(mode="after")
    def _one_of_class_or_steps(self) -> ModelSpec:
        if (self.class_ is None) == (self.steps is None):
            raise ValueError("give either 'class' (an import path) or 'steps' (a list of models)")
        return self


class Threshold(_Strict):
    min: float | None = None
    max: float | None = None


class EvaluationSpec(_Strict):
    task: Literal["classification", "regression"] | None = None
    primary_metric: str | None = None
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    promotion_margin: float = Field(default=0.0, ge=0.0)
    # promotion: the challenger must beat the champion on the same holdout rows by a paired test
    # (McNemar for accuracy, paired bootstrap otherwise) at promotion_alpha, and by at least
    # promotion_min_effect of the primary metric; "raw" compares the two scores with the margin only
    promotion_test: Literal["paired", "raw"] = "paired"
    promotion_alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    promotion_min_effect: float = Field(default=0.005, ge=0.0)
    holdout: float = Field(default=0.3, gt=0.0, lt=1.0)
    min_holdout_rows: int = Field(default=20, ge=1)
    # on real concept drift the holdout is the batch's last rows, the closest to the files that come next
    # ("latest"); "random" keeps the stratified random holdout there too (for files whose rows are not in order)
    holdout_during_change: Literal["latest", "random"] = "latest"
    # performance drift: the champion's primary metric on a batch is worse than at promotion
    # by more than this share of its value at promotion (0.03 = 3 %)
    performance_tolerance: float = Field(default=0.03, ge=0.0)
    # performance decay: the champion's primary metric worsens steadily over its last decay_window files
    # since promotion (one-sided Mann–Kendall p-value below decay_p_value, fitted worsening ≥ half the
    # tolerance of the score at promotion), tested from decay_files files on; None turns the test off
    decay_files: int | None = Field(default=4, ge=3)
    decay_window: int = Field(default=8, ge=3)  # the last files since promotion the test looks at
    decay_p_value: float = Field(default=0.05, gt=0.0, lt=1.0)
    # estimated performance drift, for batches without labels: the champion's primary metric estimated from its
    # outputs (CBPE for classifiers, errors by prediction level for regressors) is worse than at promotion by
    # more than this share (0.05 = 5 %); None (the default) records the estimate without acting on it
    estimated_trigger: float | None = Field(default=None, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _decay_window_holds_the_files(self) -> EvaluationSpec:
        if self.decay_files is not None and self.decay_files > self.decay_window:
            raise ValueError(f"evaluation.decay_files ({self.decay_files}) cannot exceed evaluation.decay_window "
                             f"({self.decay_window}): the test looks at the last decay_window files only")
        return self


class SearchSpec(_Strict):
    """Optional hyper-parameter search run when a challenger is fitted (bounded budget)."""

    method: Literal["grid", "random"] = "random"
    params: dict[str, list[Any]]          # estimator parameter -> candidate values
    budget: int = Field(default=10, ge=1, le=200)  # candidates tried (grid: the first `budget`)
    cv: int = Field(default=3, ge=2, le=10)


class RetrainSpec(_Strict):
    mode: Literal[RETRAIN_MODES] = "auto"  # type: ignore[valid-type]
    fallback_mode: Literal[RETRAIN_MODES] | None = None  # type: ignore[valid-type]
    data: Literal["reference_and_new", "new_only"] = "reference_and_new"
    retrain_on: Literal["drift", "always"] = "drift"
    history_max_batches: int = Field(default=50, ge=1)
    # no drift, but the kept history has grown to this many times the rows there were when the champion was
    # trained: a refresh challenger (mode history) is fitted, promoted unless worse on the holdout; None: never
    refresh_growth: float | None = Field(default=2.0, gt=1.0)
    # a challenger promoted on drift whose holdout score is below its predecessor's score at promotion by more
    # than performance_tolerance was likely fit in the middle of a change: the next file, if no drift signal
    # fires on it, gets one follow-up challenger (the primary mode), promoted only by the paired test
    follow_up: bool = True
    window_rows: int | None = Field(default=None, ge=1)
    window_batches: int | None = Field(default=None, ge=1)
    replay_ratio: float = Field(default=0.5, gt=0.0, le=10.0)
    calibration_method: Literal["sigmoid", "isotonic"] = "sigmoid"
    stacking_cv: int = Field(default=3, ge=2)
    stacking_members: int = Field(default=5, ge=2)  # the champion's models kept + the new one; older ones drop out
    stacking_recent_batches: int = Field(default=2, ge=0)  # a frozen member fit on the last N history batches
    search: SearchSpec | None = None

    @model_validator(mode="after")
    def _window_needs_a_size(self) -> RetrainSpec:
        if self.window_rows and self.window_batches:
            raise ValueError("give either 'window_rows' or 'window_batches', not both")
        return self


class BreakerSpec(_Strict):
    max_failures: int = Field(default=3, ge=1)
    cooldown_seconds: float = Field(default=60.0, ge=0.0)
    max_cooldown_seconds: float = Field(default=3600.0, ge=0.0)
    half_open_trials: int = Field(default=1, ge=1)
    count_bad_input: bool = False


class HooksSpec(_Strict):
    """User functions as ``path/to/module.py:function``."""

    train: str | None = None
    retrain: str | None = None
    fallback: str | None = None


class BlocksSpec(_Strict):
    """Block kind: which blocks are held out for evaluation and how unseen blocks are routed."""

    evaluation: Literal["newest", "rows"] | list[str] = "newest"   # block names as text ("3" for 3.0)
    unseen: Literal["global", "vote"] = "global"
    min_block_rows: int = Field(default=30, ge=1)

    @field_validator("evaluation", mode="before")
    @classmethod
    def _names_as_text(cls, v):
        if isinstance(v, list) and (unquoted := [x for x in v if isinstance(x, (bool, int, float))]):
            quoted = ", ".join(f'"{block_name(x)}"' for x in v)
            raise ValueError(f"block names are text: quote {unquoted}, as in [{quoted}] (a block named 3 in the "
                             "data, or 3.0, is \"3\")")
        return v


class LabelsSpec(_Strict):
    """Labels that arrive after the features (stream kind): a second watched folder of files holding the ids and
    the target; each is joined on ``join_on`` to the predictions already made for those ids."""

    incoming: Path | None = None           # default: <pipeline>/labels
    join_on: list[str] = Field(min_length=1)
    max_wait_days: float = Field(default=30.0, gt=0)  # labels for rows predicted longer ago are counted late


class LimitsSpec(_Strict):
    max_rows: int = Field(default=5_000_000, ge=1)
    max_bytes: int = Field(default=2 * 1024**3, ge=1)


class PipelineSpec(_Strict):
    name: str
    kind: KindName = "stream"
    incoming: Path | None = None
    formats: list[Literal[FORMATS]] = Field(default_factory=lambda: list(FORMATS))  # type: ignore[valid-type]
    delimiter: str | None = None
    target: str | None = None
    block_column: str | None = None
    id_columns: list[str] = Field(default_factory=list)
    drop_columns: list[str] = Field(default_factory=list)
    feature_types: dict[str, Literal[FEATURE_TYPES]] = Field(default_factory=dict)  # type: ignore[valid-type]
    model: ModelSpec = Field(
        default_factory=lambda: ModelSpec(**{"class": "sklearn.ensemble.HistGradientBoostingClassifier"})
    )
    allow_modules: list[str] = Field(default_factory=list)
    preprocess: Path | None = None
    hooks: HooksSpec = Field(default_factory=HooksSpec)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    blocks: BlocksSpec = Field(default_factory=BlocksSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    labels: LabelsSpec | None = None
    prediction_only: bool = False
    predictions: Path | None = None
    schedule: str | None = None
    order: Literal["arrival", "none"] = "arrival"
    seed: int = 0

    _seed = field_validator("seed")(check_seed)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule_as_text(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):  # pydantic reports a ValueError, not a TypeError
            raise ValueError(  # noqa: TRY004
                f"{v} is written as a number: quote it, as in schedule: \"{v}\" (seconds), or give a unit (90s, 5m, 1h)")
        return v

    @field_validator("delimiter")
    @classmethod
    def _a_delimiter_or_none(cls, v: str | None) -> str | None:
        if v == "":
            raise ValueError("'' (empty) separates nothing: leave the key out (or write delimiter: null) to have the "
                             "separator sniffed, or give it, e.g. delimiter: \";\"")
        return v

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not re.match(NAME_PATTERN, v):
            raise ValueError(
                f"{v!r} is not a valid pipeline name: use lowercase letters, digits and '-', "
                "starting with a letter, at most 63 characters"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        if not self.prediction_only and not self.target:
            raise ValueError("'target' is required unless 'prediction_only: true'")
        kind = KINDS[self.kind]
        if kind.needs_block_column and not self.block_column:
            raise ValueError(f"'block_column' is required for kind '{self.kind}'")
        if kind.default_model and "model" not in self.model_fields_set:
            self.model = ModelSpec(**{"class": kind.default_model})
        if self.labels is not None:
            if self.kind != "stream":
                raise ValueError(f"'labels' (labels that arrive later) is for the stream kind, not {self.kind!r}: "
                                 "remove it, or use kind: stream")
            if self.prediction_only:
                raise ValueError("'labels' (labels that arrive later) needs a model trained from them: remove "
                                 "'prediction_only: true' (the target's values then come in the labels files)")
            if self.target in self.labels.join_on:
                raise ValueError(f"labels.join_on: the target {self.target!r} cannot be an id column")
            if self.labels.incoming is not None and self.incoming is not None and \
                    Path(self.labels.incoming).expanduser() == Path(self.incoming).expanduser():
                raise ValueError("labels.incoming: the labels folder must not be the incoming folder "
                                 "(features and labels files are told apart by the folder they arrive in)")
            self.labels.join_on = list(dict.fromkeys(self.labels.join_on))
            self.id_columns = [*self.id_columns, *(c for c in self.labels.join_on if c not in self.id_columns)]
        for path in _model_classes(self.model):
            problem = class_path_problem(path, self.allow_modules)
            if problem:
                raise ValueError(f"model.class: {problem}")
        return self

    # -- derived values -------------------------------------------------------------------
    def excluded_columns(self) -> set[str]:
        cols = set(self.id_columns) | set(self.drop_columns)
        if self.target:
            cols.add(self.target)
        return cols

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", by_alias=True, exclude_defaults=False)
        return yaml.safe_dump(data, sort_keys=False)


def _model_classes(model: ModelSpec) -> list[str]:
    if model.steps is not None:
        return [p for step in model.steps for p in _model_classes(step)]
    return [model.class_] if model.class_ else []


def is_allowed_import(path: str, extra_modules: list[str] | tuple[str, ...] = ()) -> bool:
    prefixes = ALLOWED_MODEL_PREFIXES + tuple(m.rstrip(".") + "." for m in extra_modules)
    return any(path.startswith(p) for p in prefixes)


def class_path_problem(path: str, allow_modules: list[str] | tuple[str, ...] = ()) -> str | None:
    """Why an import path cannot be a model class, from the text alone (no import); None when it may."""
    if not is_allowed_import(path, allow_modules):
        return (f"{path!r} is not in the allow-list "
                f"({', '.join(ALLOWED_MODEL_PREFIXES)} and 'allow_modules')")
    private = [part for part in path.split(".") if part.startswith("_")]
    if private:
        return (f"{path!r} is in a private module or name ({private[0]!r}): "
                "only public estimator classes are allowed")
    return None


def estimator_class(path: str, allow_modules: list[str] | tuple[str, ...] = (), key: str = "model.class") -> type:
    """The estimator class at ``path``: allow-listed, public, importable, a class, and an estimator."""
    problem = class_path_problem(path, allow_modules)
    if problem:
        raise SpecError(f"{key}: {problem}")
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"{key}: cannot import {path!r} ({exc})") from None
    cls = getattr(module, attr, None)
    if cls is None:
        hint = did_you_mean(attr, [n for n in dir(module) if not n.startswith("_")], f"{module_name}.{{}}")
        raise SpecError(f"{key}: {module_name} has no {attr!r}{hint}")
    if not inspect.isclass(cls):
        raise SpecError(f"{key}: {path!r} is a {type(cls).__name__}, not an estimator class")
    from sklearn.base import BaseEstimator

    if not issubclass(cls, BaseEstimator):
        raise SpecError(f"{key}: {path!r} is not a scikit-learn estimator (a sklearn.base.BaseEstimator subclass)")
    return cls


def build_estimator(model: ModelSpec, allow_modules: list[str] | tuple[str, ...] = (), key: str = "model"):
    """Instantiate the estimator a spec describes (import paths checked against the allow-list)."""
    if model.steps is not None:
        from sklearn.pipeline import make_pipeline

        return make_pipeline(*(build_estimator(s, allow_modules, f"{key}.steps[{i}]")
                               for i, s in enumerate(model.steps)))
    cls = estimator_class(model.class_ or "", allow_modules, f"{key}.class")
    try:
        return cls(**model.params)
    except TypeError as exc:
        taken = inspect.signature(cls).parameters
        hints = [did_you_mean(name, taken).removeprefix("; ") for name in model.params if name not in taken]
        raise SpecError(f"{key}.params: {exc}" + "".join(f"; {h}" for h in hints if h)) from None


def did_you_mean(given: str, known: Any, shown: str = "{!r}") -> str:
    """``; did you mean 'x'?`` for the one of ``known`` closest to a misspelt ``given`` (``shown`` formats it), or
    an empty string when none is close."""
    close = difflib.get_close_matches(given, [str(k) for k in known], n=1)
    return f"; did you mean {shown.format(close[0])}?" if close else ""


_PARAM_MESSAGE = re.compile(r"^The '(?P<key>[^']+)' parameter of (?P<cls>\w+) must be (?P<rest>.*)$", re.DOTALL)


def check_params(model: ModelSpec, allow_modules: list[str] | tuple[str, ...] = (), key: str = "model") -> None:
    """Refuse params the estimator would refuse on the first file, naming the key."""
    if model.steps is not None:
        for i, step in enumerate(model.steps):
            check_params(step, allow_modules, f"{key}.steps[{i}]")
        return
    estimator = build_estimator(model, allow_modules, key)
    checked = False
    try:
        if hasattr(estimator, "_parameter_constraints"):  # scikit-learn's own declared constraints
            estimator._validate_params()
            checked = True
        if callable(getattr(estimator, "_check_params", None)):  # CalmOps' estimators
            estimator._check_params()
            checked = True
    except (ValueError, TypeError) as exc:
        text = " ".join(str(exc).split())
        match = _PARAM_MESSAGE.match(text)
        if match:
            raise SpecError(f"{key}.params.{match['key']}: {match['cls']} wants {match['rest']}") from None
        raise SpecError(f"{key}.params: {text}") from None
    if not checked and model.params:
        _dry_fit(estimator, model, key)


_UNSUPERVISED = {"clusterer": "a clusterer", "outlier_detector": "an outlier detector",
                 "density_estimator": "a density estimator"}  # scikit-learn's estimator types that ignore y


def _check_predicts(model: ModelSpec, allow_modules: list[str] | tuple[str, ...] = (), key: str = "model") -> None:
    """The model predicts: a class with ``predict``, or steps whose last one has it and whose others transform
    (a transformer as the model, or a model in the middle of the steps, fails every file's training)."""
    if model.steps is None:
        from sklearn.utils import get_tags

        estimator = build_estimator(model, allow_modules, key)
        if not hasattr(estimator, "predict"):
            where = ("the last step is the model: put a classifier or a regressor after it" if key != "model" else
                     "name a classifier or a regressor; a transformer belongs before the model in model.steps, as in "
                     f"steps: [{{class: {model.class_}}}, {{class: sklearn.linear_model.LogisticRegression}}]")
            raise SpecError(f"{key}.class: {model.class_!r} is a transformer (it has no predict), not a model: {where}")
        # they predict, but not the target: a cluster's or a component's number, or an outlier flag
        try:
            kind = get_tags(estimator).estimator_type
        except Exception:  # noqa: BLE001 - a class without scikit-learn's tags is judged by its predict alone
            kind = None
        if kind in _UNSUPERVISED:
            where = " (one may come before it in model.steps, as a transformer)" if hasattr(estimator, "transform") else ""
            raise SpecError(f"{key}.class: {model.class_!r} is {_UNSUPERVISED[kind]}: it predicts without learning the "
                            f"target, so no score or promotion would mean anything; name a classifier or a "
                            f"regressor{where}")
        return
    if not model.steps:
        raise SpecError(f"{key}.steps: the list is empty; give the steps, the model (a classifier or a regressor) last")
    *before, last = model.steps
    _check_predicts(last, allow_modules, f"{key}.steps[{len(before)}]")
    for i, step in enumerate(before):
        estimator = build_estimator(step, allow_modules, f"{key}.steps[{i}]")
        if not hasattr(estimator, "transform") and not hasattr(estimator, "fit_transform"):
            shown = step.class_ if step.class_ else "a list of steps that ends in a model"
            raise SpecError(f"{key}.steps[{i}]: {shown!r} has no transform, so it cannot come before another step: "
                            "only the last step is the model; put it last, or drop it")


def _check_search(spec: PipelineSpec, estimator: Any) -> None:
    """``retrain.search.params`` name parameters the model has, each candidate valid for the estimator that owns
    it (its declared constraints: scikit-learn's, and CalmOps' own estimators' ``_check_params``): a misspelt name
    would fail the first file's training, for every try. Not for a kind that never reads the setting (it is
    warned about as ignored)."""
    search = spec.retrain.search
    retrain_keys = KINDS[spec.kind].retrain_keys
    if search is None or (retrain_keys is not None and "search" not in retrain_keys):
        return
    from sklearn.base import clone

    known = estimator.get_params(deep=True)
    for name, values in search.params.items():
        key = f"retrain.search.params.{name}"
        if name not in known:
            raise SpecError(f"{key}: {type(estimator).__name__} has no parameter {name!r}"
                            + (did_you_mean(name, known) or f" (it has: {', '.join(sorted(known))})"))
        if not values:
            raise SpecError(f"{key}: give at least one candidate value")
        owner_path, _, own_name = name.rpartition("__")
        for value in values:
            trial = clone(estimator)
            owner = trial.get_params(deep=True)[owner_path] if owner_path else trial
            try:
                owner.set_params(**{own_name: value})
                if hasattr(owner, "_parameter_constraints"):
                    owner._validate_params()
                if callable(getattr(owner, "_check_params", None)):
                    owner._check_params()
            except (ValueError, TypeError) as exc:
                raise SpecError(f"{key}: candidate {value!r}: {' '.join(str(exc).split())}") from None


def _dry_fit(estimator, model: ModelSpec, key: str) -> None:
    """For estimators that declare no constraints: fit a tiny frame; blame the params if defaults fit it."""
    import numpy as np
    import pandas as pd
    from sklearn.base import clone, is_regressor

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    y = X["a"] + X["b"] if is_regressor(estimator) else pd.Series([0, 1] * 20)
    try:
        clone(estimator).fit(X, y)
    except Exception as exc:  # noqa: BLE001 - any failure is reported if the defaults fit
        try:
            type(estimator)().fit(X, y)
        except Exception:  # noqa: BLE001 - the estimator cannot fit a generic frame: no verdict
            return
        raise SpecError(f"{key}.params: {type(estimator).__name__} cannot be fitted with these params "
                        f"({' '.join(str(exc).split())[:300]})") from None


def _split_hook(reference: str) -> tuple[str, str]:
    path, _, name = reference.rpartition(":")
    return path, name


def _absolute(path: str | Path, base: Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def resolve_paths(spec: PipelineSpec, base: str | Path) -> PipelineSpec:
    """The spec with its relative paths (incoming, predictions, preprocess, hooks, labels.incoming) made absolute against ``base``.

    A spec file's paths are relative to its own folder: stored absolute, they mean the same in every process
    (flow runs start in a temporary folder).
    """
    base = Path(base).expanduser().resolve()
    update: dict[str, Any] = {
        field: _absolute(getattr(spec, field), base)
        for field in ("incoming", "predictions", "preprocess") if getattr(spec, field) is not None
    }
    hooks = {}
    for kind in ("train", "retrain", "fallback"):
        reference = getattr(spec.hooks, kind)
        if reference:
            path, name = _split_hook(reference)
            hooks[kind] = f"{_absolute(path, base)}:{name}" if path and name else reference
    if hooks:
        update["hooks"] = spec.hooks.model_copy(update=hooks)
    if spec.labels is not None and spec.labels.incoming is not None:
        update["labels"] = spec.labels.model_copy(update={"incoming": _absolute(spec.labels.incoming, base)})
    return spec.model_copy(update=update)


def _top_level_names(path: Path, key: str) -> set[str]:
    """Names a Python file binds at top level, read with ``ast`` (the module is not run)."""
    if not path.is_file():
        raise SpecError(f"{key}: {path} does not exist")
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{key}: cannot read {path} ({exc})") from None
    except SyntaxError as exc:
        raise SpecError(f"{key}: {path} is not valid Python (line {exc.lineno}: {exc.msg})") from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def check_spec(spec: PipelineSpec) -> None:
    """What a spec needs beyond its own text, checked before any file comes (``create``/``update``), not when a
    saved spec is read (a pipeline saved before a check existed still loads, and ``update`` can mend it).

    The model classes import and are estimators, ``model.params`` are valid for them, the metrics are known, the
    breaker's cooldown cap is not below its first cooldown, the schedule parses (with Prefect's own cron check),
    the preprocess module and every hook exist and define their function. Raises :class:`SpecError` naming the key.
    """
    check_params(spec.model, spec.allow_modules)
    _check_predicts(spec.model, spec.allow_modules)
    estimator = build_estimator(spec.model, spec.allow_modules)
    _check_search(spec, estimator)
    _check_task(spec, estimator)
    _check_metrics(spec, estimator)
    _check_recalibration(spec, estimator)
    for key in ("id_columns", "drop_columns"):
        if spec.target and spec.target in getattr(spec, key):
            raise SpecError(f"{key}: {spec.target!r} is the target, which the model learns and is never one of its "
                            f"inputs anyway: remove it from {key}")
    b = spec.breaker
    if b.max_cooldown_seconds < b.cooldown_seconds:
        raise SpecError(f"breaker.max_cooldown_seconds ({b.max_cooldown_seconds:g}) is below breaker.cooldown_seconds "
                        f"({b.cooldown_seconds:g}): the cap of the doubling cooldown cannot be shorter than the first one")
    try:
        parse_schedule(spec.schedule)
    except ValueError as exc:
        raise SpecError(f"schedule: {exc}") from None
    if spec.preprocess is not None and "preprocess" not in _top_level_names(Path(spec.preprocess), "preprocess"):
        raise SpecError(f"preprocess: {spec.preprocess} defines no function 'preprocess(df)'")
    for kind in ("train", "retrain", "fallback"):
        reference = getattr(spec.hooks, kind)
        if not reference:
            continue
        key = f"hooks.{kind}"
        path, name = _split_hook(reference)
        if not path or not name:
            raise SpecError(f"{key}: {reference!r} must look like 'path/to/module.py:function'")
        if name not in _top_level_names(Path(path), key):
            raise SpecError(f"{key}: {path} defines no function {name!r}")


def ignored_settings(spec: PipelineSpec) -> list[str]:
    """Warnings for ``retrain`` settings given a value other than the default that the spec's kind never reads
    (docs/kinds.md: ``retrain.mode: window`` in a block pipeline, any mode in an ipip pipeline), for
    ``evaluation.thresholds`` in a kind that promotes without them (ipip) and for a ``block_column`` in a kind
    without blocks (stream). Said at ``create``/``update``, never
    refused: a spec that worked keeps working.

    >>> ignored_settings(parse_spec({"name": "w", "kind": "block", "target": "y", "block_column": "site",
    ...                              "retrain": {"mode": "window", "data": "new_only"}}))  # doctest: +ELLIPSIS
    ["retrain.mode: 'window' does not apply to kind 'block' and is ignored: a block pipeline refits only ..."]
    """
    kind = KINDS[spec.kind]
    said = []
    if spec.block_column and not kind.needs_block_column:
        said.append(f"block_column: {spec.block_column!r} does not apply to kind {spec.kind!r}: a {spec.kind} pipeline "
                    "has no blocks, and the column is only left out of the model's inputs (as drop_columns does); "
                    "remove it, or use kind: block (docs/kinds.md)")
    if spec.evaluation.thresholds and not kind.uses_thresholds:
        said.append(f"evaluation.thresholds ({', '.join(spec.evaluation.thresholds)}) do not apply to kind "
                    f"{spec.kind!r} and are ignored: {kind.retraining}, and serves each update, so no threshold "
                    "gates it; remove them (docs/kinds.md)")
    if kind.retrain_keys is None:
        return said + _without_partial_fit(spec)
    for key, field in RetrainSpec.model_fields.items():
        value = getattr(spec.retrain, key)
        if key in kind.retrain_keys or value == field.get_default(call_default_factory=True):
            continue
        shown = value.model_dump() if isinstance(value, BaseModel) else value
        said.append(f"retrain.{key}: {shown!r} does not apply to kind {spec.kind!r} and is ignored: "
                    f"{kind.retraining}; remove it (docs/kinds.md)")
    return said


def _without_partial_fit(spec: PipelineSpec) -> list[str]:
    """A warning when ``retrain.mode`` (or ``fallback_mode``) is ``incremental`` and the model has no
    ``partial_fit``: each such retrain is a full refit (recorded as a fallback), which the user did not ask for."""
    keys = [key for key, hook in (("mode", spec.hooks.retrain), ("fallback_mode", spec.hooks.fallback))
            if getattr(spec.retrain, key) == "incremental" and not hook]
    if not keys:
        return []
    estimator = build_estimator(spec.model, spec.allow_modules)
    if hasattr(estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator, "partial_fit"):
        return []
    return [(f"{' and '.join(f'retrain.{k}' for k in keys)}: 'incremental' continues the champion with partial_fit, which "
            f"{_last_class(spec.model)} does not have: every such retrain fits the model in full instead (each "
            "decision records the fallback); choose a model with partial_fit (e.g. sklearn.linear_model.SGDClassifier, "
            "sklearn.naive_bayes.GaussianNB) or another mode, e.g. auto or full")]


def setting_changes(before: PipelineSpec, after: PipelineSpec) -> list[str]:
    """What an update changes, one ``key: old → new`` per setting (dotted keys, as the docs name them), in the
    spec's order; an entry added to or removed from a mapping (a threshold, a model parameter) is shown whole.

    >>> old = parse_spec({"name": "s", "target": "y"})
    >>> setting_changes(old, parse_spec({"name": "s", "target": "y", "retrain": {"mode": "window"}}))
    ["retrain.mode: 'auto' → 'window'"]
    >>> setting_changes(old, parse_spec({"name": "s", "target": "y", "retrain": {"fallback_mode": "full"}}))
    ["retrain.fallback_mode: null → 'full'"]
    """
    missing = object()
    changed: list[str] = []

    def compare(was: Any, now: Any, key: str) -> None:
        if isinstance(was, dict) and isinstance(now, dict):
            for name in [*now, *(k for k in was if k not in now)]:
                compare(was.get(name, missing), now.get(name, missing), f"{key}.{name}" if key else name)
        elif was != now:
            changed.append(f"{key}: {shown(was)} → {shown(now)}")

    def shown(value: Any) -> str:  # null as YAML writes it: for some keys it turns a check off
        return "(not set)" if value is missing else "null" if value is None else repr(value)

    compare(before.model_dump(mode="json", by_alias=True), after.model_dump(mode="json", by_alias=True), "")
    return changed


#: Spec keys a model is trained with: its feature columns and their types (the reference profile and the model's
#: column transformer are built from them), the estimator itself, and the drift settings baked into the reference
#: profile stored with it. A run reads them from the champion, not from the spec: a change applies from the next
#: model trained (docs/spec.md, "Settings that apply from the next model").
TRAINED_WITH_MODEL = ("feature_types", "drop_columns", "id_columns", "model", "drift.n_bins",
                      "drift.max_categories", "drift.multivariate")


def dropped_id_columns(before: PipelineSpec, after: PipelineSpec) -> str | None:
    """A warning when an update leaves out id columns the pipeline had, named or added by ``labels.join_on``
    (removing the ``labels`` section drops those): the predictions files no longer carry them, and the next model
    trained would take them as features.

    >>> late = parse_spec({"name": "s", "target": "y", "labels": {"join_on": ["rid"]}})
    >>> dropped_id_columns(late, parse_spec({"name": "s", "target": "y"}))  # doctest: +ELLIPSIS
    "id_columns: 'rid' is no longer an id column (labels.join_on added it): ... add id_columns: [rid] to keep it"
    >>> dropped_id_columns(late, parse_spec({"name": "s", "target": "y", "id_columns": ["rid"]})) is None
    True
    """
    lost = [c for c in before.id_columns if c not in after.id_columns and c not in after.drop_columns]
    if not lost:
        return None
    joined = before.labels.join_on if before.labels is not None else []
    why = " (labels.join_on added it)" if all(c in joined for c in lost) else ""
    listed, one = ", ".join(repr(c) for c in lost), len(lost) == 1
    it = "it" if one else "them"
    return (f"id_columns: {listed} {'is no longer an id column' if one else 'are no longer id columns'}{why}: the "
            f"predictions files no longer carry {it}, and the next model trained would take {it} as a feature; add "
            f"id_columns: [{', '.join(lost)}] to keep {it}")


def with_next_model(changes: list[str]) -> list[str]:
    """The keys among :func:`setting_changes` that apply only from the next model trained (:data:`TRAINED_WITH_MODEL`).

    >>> with_next_model(["feature_types.elevel: (not set) → 'categorical'", "drift.alpha: 0.05 → 0.01",
    ...                  "drop_columns: [] → ['id']"])
    ['feature_types.elevel', 'drop_columns']
    """
    keys = [change.split(": ", 1)[0] for change in changes]
    return [k for k in keys if any(k == t or k.startswith(f"{t}.") for t in TRAINED_WITH_MODEL)]


def _check_recalibration(spec: PipelineSpec, estimator: Any) -> None:
    """``recalibration`` recalibrates a classifier's probabilities: for a regressor the pipeline could never
    retrain, so it is refused here rather than on its first drift."""
    keys = [key for key in ("mode", "fallback_mode") if getattr(spec.retrain, key) == "recalibration"]
    if not keys:
        return
    if _task(spec, estimator)[0] == "regression":
        raise SpecError(f"retrain.{keys[0]}: recalibration applies to classifiers only, and this pipeline "
                        "predicts numbers (a regressor); choose another mode, e.g. auto or full")


def _last_class(model: ModelSpec) -> str:
    """The import path of the estimator that predicts: the class, or the last of the steps."""
    return _last_class(model.steps[-1]) if model.steps else model.class_ or ""


def _task(spec: PipelineSpec, estimator: Any) -> tuple[str | None, str | None]:
    """The pipeline's task and what says so: ``evaluation.task`` when given, else the model's own kind (a
    scikit-learn classifier or regressor; the last of ``model.steps``), as the flows infer it; (None, None) for
    a model that is neither, whose task the flows infer from the target's values."""
    if spec.evaluation.task:
        return spec.evaluation.task, None
    return _model_task(spec, estimator)


def _model_task(spec: PipelineSpec, estimator: Any) -> tuple[str | None, str | None]:
    """The task of ``estimator``, the spec's model built (a scikit-learn classifier or regressor; the last of
    ``model.steps``), and what says so; (None, None) for a model that is neither."""
    from sklearn.base import is_classifier, is_regressor

    kind = "classification" if is_classifier(estimator) else "regression" if is_regressor(estimator) else None
    return kind, (f"the model {_last_class(spec.model)} is a {'classifier' if kind == 'classification' else 'regressor'}"
                  if kind else None)


def _check_task(spec: PipelineSpec, estimator: Any) -> None:
    """An ``evaluation.task`` the model agrees with: a regressor scored as a classifier fails every run, a
    classifier scored as a regressor is scored on its class labels as numbers."""
    given = spec.evaluation.task
    if not given:
        return
    kind, because = _model_task(spec, estimator)
    if kind is not None and kind != given:
        raise SpecError(f"evaluation.task: {given!r}, but {because}: leave the key out (the task is the model's), or "
                        f"name a {'classifier' if given == 'classification' else 'regressor'} as the model")


def _check_metrics(spec: PipelineSpec, estimator: Any) -> None:
    """``primary_metric`` and the thresholds' metrics are ones CalmOps computes, of the pipeline's task (the
    ``evaluation.task``, else the model's), and no threshold's ``min`` is above its ``max``: else the pipeline
    could never promote, or never train."""
    ev = spec.evaluation
    named = ([("primary_metric", ev.primary_metric)] if ev.primary_metric else []) + \
        [(f"thresholds.{m}", m) for m in ev.thresholds]
    for where, metric in named:
        if metric not in HIGHER_IS_BETTER:
            close = difflib.get_close_matches(metric, HIGHER_IS_BETTER, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(f"evaluation.{where}: {metric!r} is not a metric; {hint}known: {', '.join(HIGHER_IS_BETTER)}")
    task, because = _task(spec, estimator) if named else (None, None)
    other = {"classification": REGRESSION_METRICS, "regression": CLASSIFICATION_METRICS}.get(task or "", ())
    for where, metric in named:
        if metric in other and because:
            wanted = "regressor" if task == "classification" else "classifier"
            raise SpecError(f"evaluation.{where}: {metric!r} is not a metric of {task}, and {because}: name one of "
                            f"{', '.join(m for m in HIGHER_IS_BETTER if m not in other)}, or a {wanted} as the model")
        if metric in other:
            raise SpecError(f"evaluation.{where}: {metric!r} is not a metric of {task} "
                            f"(known: {', '.join(m for m in HIGHER_IS_BETTER if m not in other)})")
    for metric, bound in ev.thresholds.items():
        if bound.min is not None and bound.max is not None and bound.min > bound.max:
            raise SpecError(f"evaluation.thresholds.{metric}: min {bound.min:g} is above max {bound.max:g}; "
                            "no model could pass")
        lowest, highest = METRIC_RANGE[metric]
        if bound.min is not None and bound.min > highest:
            raise SpecError(f"evaluation.thresholds.{metric}: min {bound.min:g} is above {highest:g}, the highest "
                            f"{metric} can be; no model could pass: give a min of at most {highest:g}")
        if bound.max is not None and bound.max < lowest:
            raise SpecError(f"evaluation.thresholds.{metric}: max {bound.max:g} is below {lowest:g}, the lowest "
                            f"{metric} can be; no model could pass: give a max of at least {lowest:g}")


#: pydantic's errors whose message says what is wanted but not what was given
_SAYS_THE_VALUE = frozenset({
    "literal_error", "enum", "greater_than", "greater_than_equal", "less_than", "less_than_equal", "int_parsing",
    "int_type", "int_from_float", "float_parsing", "float_type", "bool_parsing", "bool_type", "string_type"})


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys a spec takes at ``loc`` (a pydantic error's location, list indexes included): none when the
    place is not a section of known keys."""
    model: type[BaseModel] | None = PipelineSpec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        model = _section(field.annotation) if field is not None else None
    return [] if model is None else [f.alias or name for name, f in model.model_fields.items()]


def _section(annotation: Any) -> type[BaseModel] | None:
    """The section (a pydantic model) a field's type holds, alone, in a list or with None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in typing.get_args(annotation) if (m := _section(arg)) is not None), None)


def _format_error(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            hint = did_you_mean(str(e["loc"][-1]), _keys_at(e["loc"][:-1])).removeprefix("; ")
            parts.append(f"unknown key '{loc}'" + (f" ({hint})" if hint else ""))
        elif e["type"] == "missing":
            parts.append(f"missing key '{loc}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] in _SAYS_THE_VALUE:  # a choice, a bound or a type: the value given, next to what is wanted
                given = repr(e["input"])
                msg = f"{msg}, not {given if len(given) <= 80 else given[:77] + '...'}"
            parts.append(f"{loc}: {msg}" if loc != "(top level)" else msg)
    return f"{source}: " + "; ".join(parts)


def parse_spec(data: dict[str, Any], source: str = "spec") -> PipelineSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec must be a mapping of keys to values")
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_error(source, exc)) from None


MAX_SPEC_BYTES = 256 * 1024  # a spec is a page of settings; anything bigger is refused before parsing


class _SpecLoader(yaml.SafeLoader):
    """YAML for specs: plain values only. Aliases (``*name``) are refused, so an alias bomb (a few hundred
    bytes that expand to billions of nodes) fails at once; a key given twice is refused, naming the key."""

    max_depth = 50
    _depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed in a spec: write the value out",
                event.start_mark)
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {self.max_depth} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: the base class says so
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"duplicated key '{key}' (given twice; keep one)", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, source: str = "spec") -> Any:
    """Parse a spec's YAML text (size-capped, no aliases, no duplicated keys); raises SpecError."""
    if len(text.encode(errors="replace")) > MAX_SPEC_BYTES:
        raise SpecError(f"{source}: the spec is larger than {MAX_SPEC_BYTES // 1024} KiB")
    try:
        return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass: plain values only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{source}: not valid YAML ({exc.problem}{where})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML ({' '.join(str(exc).split())[:300]})") from None


def load_spec(path: str | Path) -> PipelineSpec:
    """The spec in the file at ``path``. A file unchanged since it was last read (same device, inode, size and
    modification time: a spec is replaced atomically, so an update is a new inode) is not parsed again, and
    every caller gets its own copy; a run reads its pipeline's spec at several steps."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror})") from None
    if st.st_size > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: the spec is {st.st_size} bytes, larger than {MAX_SPEC_BYTES // 1024} KiB")
    return _parsed_spec(str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns).model_copy(deep=True)


@functools.lru_cache(maxsize=128)
def _parsed_spec(path: str, _dev: int, _ino: int, _size: int, _mtime_ns: int) -> PipelineSpec:
    """The spec file parsed, cached by its identity on disk (a failure is not cached: the next read tries again)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: the spec is not UTF-8 text") from None
    return parse_spec(read_yaml(text, path), path)
