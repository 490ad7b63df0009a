"""MLflow access: experiments, runs, the model registry and its aliases.

Per pipeline: experiment ``calmops/<name>``, registered model ``<name>``, aliases ``champion``,
``challenger`` and ``previous``. Each model version carries, in its run's artifacts, the
reference data it was trained on, its reference profile and its input schema, so that every
later run compares against exactly that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from calmops.core.settings import Settings, get_settings
from calmops.detectors import ReferenceProfile

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
TRUSTED_TYPE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.", "calmops.core.",
                         "river.", "lightgbm.", "xgboost.", "pandas.")
REFERENCE_MAX_ROWS = 200_000

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def configure(settings: Settings | None = None) -> MlflowClient:
    settings = settings or get_settings()
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    if settings.mlflow_registry_uri:
        mlflow.set_registry_uri(settings.mlflow_registry_uri)
    return MlflowClient()


def experiment_name(pipeline: str) -> str:
    return f"calmops/{pipeline}"


def ensure_experiment(pipeline: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    client = configure(settings)
    name = experiment_name(pipeline)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        location = (settings.home / "mlflow" / "artifacts" / pipeline).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags={"calmops.pipeline": pipeline})
    except MlflowException:  # created meanwhile by a concurrent run
        return client.get_experiment_by_name(name).experiment_id


# -- schema of a model's input -------------------------------------------------------------


@dataclass
class InputSchema:
    """Columns a model takes, with their dtype kinds and feature types."""

    columns: list[str]
    dtypes: dict[str, str]
    feature_types: dict[str, str]
    target: str | None
    task: str
    classes: list[Any] | None = None

    def to_dict(self) -> dict:
        return {"columns": self.columns, "dtypes": self.dtypes, "feature_types": self.feature_types,
                "target": self.target, "task": self.task,
                "classes": None if self.classes is None else [_plain(c) for c in self.classes]}

    @classmethod
    def from_dict(cls, d: dict) -> InputSchema:
        return cls(**d)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def trusted_types_for(model: Any) -> list[str]:
    """Types skops must trust to load this model, limited to allow-listed packages."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    refused = [t for t in untrusted if not t.startswith(TRUSTED_TYPE_PREFIXES)]
    if refused:
        raise ValueError(f"model holds types outside the allow-list and cannot be saved safely: {refused}")
    return untrusted


_DISTRIBUTIONS = {"sklearn": "scikit-learn"}


def requirements_for(trusted_types: list[str]) -> list[str]:
    """Pinned pip requirements of a model: scikit-learn, skops and the packages its types come from."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {"sklearn", "skops"} | {t.split(".")[0] for t in trusted_types}
    pins = []
    for package in sorted(packages - {"builtins", "collections", "calmops"}):
        name = _DISTRIBUTIONS.get(package, package)
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pins


# -- runs ----------------------------------------------------------------------------------


def start_run(pipeline: str, run_name: str, tags: dict[str, str]) -> str:
    """Create the MLflow run that records one file's processing; returns its id."""
    experiment_id = ensure_experiment(pipeline)
    run = MlflowClient().create_run(experiment_id, run_name=run_name, tags=tags)
    return run.info.run_id


@contextmanager
def in_run(run_id: str):
    """Make ``run_id`` the active run for fluent MLflow calls, whatever thread we are on."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield active
        return
    with mlflow.start_run(run_id=run_id, nested=active is not None) as run:
        yield run


def mlflow_ui() -> str | None:
    """The MLflow UI's address when one runs (set by the stack), for links."""
    return os.environ.get("CALMOPS_MLFLOW_UI")


def run_url(run_id: str, experiment_id: str) -> str | None:
    ui = mlflow_ui()
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}" if ui else None


# -- logging a candidate model -------------------------------------------------------------


@dataclass
class Champion:
    """A registered model version with what it was trained on."""

    name: str
    version: int
    model: Any
    schema: InputSchema
    profile: ReferenceProfile
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def scores_at_promotion(self) -> dict[str, float]:
        return json.loads(self.tags.get("calmops.scores", "{}"))


def log_candidate(
    run_id: str,
    pipeline: str,
    model: Any,
    reference: pd.DataFrame,
    schema: InputSchema,
    profile: ReferenceProfile,
    *,
    scores: dict[str, Any] | None = None,
    description: str = "",
) -> int:
    """Log and register a model in the given MLflow run; returns its version number."""
    with in_run(run_id):
        return _log_candidate(pipeline, model, reference, schema, profile, scores=scores, description=description)


def _log_candidate(pipeline, model, reference, schema, profile, *, scores, description) -> int:
    from mlflow.models import infer_signature

    features = reference[schema.columns]
    sample = features.head(5)
    signature = infer_signature(sample, model.predict(sample))
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=pipeline,
        signature=signature,
        input_example=sample,
        serialization_format="skops",
        skops_trusted_types=(trusted := trusted_types_for(model)),
        pip_requirements=requirements_for(trusted),  # explicit: MLflow would infer them (seconds per model)
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ref = reference if len(reference) <= REFERENCE_MAX_ROWS else reference.sample(REFERENCE_MAX_ROWS, random_state=0)
        ref.to_parquet(tmp_path / "reference.parquet", index=False)
        (tmp_path / "schema.json").write_text(json.dumps(schema.to_dict(), indent=2))
        profile.save(tmp_path / "profile")
        mlflow.log_artifact(str(tmp_path / "reference.parquet"), "reference")
        mlflow.log_artifact(str(tmp_path / "schema.json"), "reference")
        mlflow.log_artifacts(str(tmp_path / "profile"), "reference/profile")
    version = int(info.registered_model_version)
    client = MlflowClient()
    client.set_model_version_tag(pipeline, str(version), "calmops.scores", json.dumps(scores or {}))
    if description:
        client.update_model_version(pipeline, str(version), description=description[:5000])
    return version


def set_version_tag(pipeline: str, version: int, key: str, value: Any) -> None:
    MlflowClient().set_model_version_tag(pipeline, str(version), key, value if isinstance(value, str) else json.dumps(value))


# -- reading versions and aliases ----------------------------------------------------------


_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def _is_not_found(exc: MlflowException) -> bool:
    return exc.error_code in _NOT_FOUND


def alias_version(pipeline: str, alias: str) -> int | None:
    """The version an alias points at; None when the model or alias does not exist (outages raise)."""
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(pipeline, alias)
    except MlflowException as exc:
        if not _is_not_found(exc):
            raise
        return None
    return int(mv.version)  # SQLite gives int, REST gives str: normalise


def aliases(pipeline: str) -> dict[str, int]:
    client = MlflowClient()
    try:
        rm = client.get_registered_model(pipeline)
    except MlflowException as exc:
        if not _is_not_found(exc):
            raise
        return {}
    return {alias: int(v) for alias, v in rm.aliases.items()}


@lru_cache(maxsize=16)
def _load_version(tracking_uri: str, pipeline: str, version: int, run_id: str) -> tuple[Any, InputSchema,
                                                                                         ReferenceProfile]:
    local = _local_copy(tracking_uri, pipeline, version, run_id)
    model = mlflow.sklearn.load_model(str(local / "model"))
    schema = InputSchema.from_dict(json.loads((local / "reference" / "schema.json").read_text()))
    profile = ReferenceProfile.load(local / "reference" / "profile")
    return model, schema, profile


def _local_copy(tracking_uri: str, pipeline: str, version: int, run_id: str) -> Path:
    """The version's model, schema and profile on local disk, downloaded once per machine.

    A registered version never changes, so every process (each flow run is one) reads the same copy under
    ``$CALMOPS_HOME/cache/models``. It appears complete or not at all: downloaded beside it, then renamed.
    """
    from calmops.core.settings import get_settings

    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    # the run id too: a pipeline deleted and created again numbers its versions from 1 again
    final = get_settings().home / "cache" / "models" / store / pipeline / f"{version}-{run_id}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{pipeline}/{version}",
                                            dst_path=str(staging / "model"))
        for part in ("schema.json", "profile"):  # not the reference rows: only what serving needs
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"reference/{part}",
                                                dst_path=str(staging / "reference"))
        try:
            staging.rename(final)
        except OSError:  # another process finished first: its copy is the same
            pass
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def load_version(pipeline: str, version: int) -> Champion:
    # the version's tags may change after its model is cached (e.g. scores at promotion): read them each time
    mv = MlflowClient().get_model_version(pipeline, str(version))
    model, schema, profile = _load_version(mlflow.get_tracking_uri(), pipeline, int(version), mv.run_id)
    return Champion(pipeline, int(version), model, schema, profile, mv.run_id, dict(mv.tags))


def load_reference(pipeline: str, version: int) -> pd.DataFrame:
    mv = MlflowClient().get_model_version(pipeline, str(version))
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="reference/reference.parquet", dst_path=tmp)
        return pd.read_parquet(path)


def champion(pipeline: str) -> Champion | None:
    version = alias_version(pipeline, CHAMPION)
    return None if version is None else load_version(pipeline, version)


# -- moving aliases ------------------------------------------------------------------------


def mark_challenger(pipeline: str, version: int) -> None:
    MlflowClient().set_registered_model_alias(pipeline, CHALLENGER, str(version))


def promote(pipeline: str, version: int) -> int | None:
    """Make ``version`` the champion; the old champion becomes ``previous``. Returns the old one.

    Order matters for crash safety: ``previous`` is written first, so an interruption leaves
    the old champion serving and a repeat of the call completes the move (idempotent).
    """
    client = MlflowClient()
    old = alias_version(pipeline, CHAMPION)
    if old == version:
        return alias_version(pipeline, PREVIOUS)
    if old is not None:
        client.set_registered_model_alias(pipeline, PREVIOUS, str(old))
    client.set_registered_model_alias(pipeline, CHAMPION, str(version))
    return old


class NothingToRollBack(LookupError):
    pass


def rollback(pipeline: str) -> tuple[int, int]:
    """Serve ``previous`` again; the rolled-back champion becomes ``previous``. Returns (from, to)."""
    client = MlflowClient()
    current, prev = alias_version(pipeline, CHAMPION), alias_version(pipeline, PREVIOUS)
    if prev is None or current is None:
        raise NothingToRollBack(f"pipeline {pipeline!r} has no previous champion to roll back to")
    client.set_registered_model_alias(pipeline, CHAMPION, str(prev))
    client.set_registered_model_alias(pipeline, PREVIOUS, str(current))
    client.set_model_version_tag(pipeline, str(current), "calmops.rolled_back", "true")
    return current, prev
