"""MLflow access: experiments, runs, the model registry and its aliases.

Per pipeline: experiment ``calmops/<name>``, registered model ``calmops.<name>``, aliases ``champion``,
``challenger`` and ``previous``. Each model version carries, in its run's artifacts, the
reference data it was trained on, its reference profile and its input schema, so that every
later run compares against exactly that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow import environment_variables as mlflow_environment
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from calmops.core.errors import CalmOpsError
from calmops.core.logs import printable
from calmops.core.names import (
    CHAMPION_SINCE_TAG,
    DRIFT_UNCHECKED,
    REFERENCE_PATH_TAG,
    model_name,
    reference_path,
    shown_decision,
)
from calmops.core.settings import Settings, get_settings
from calmops.core.spec import ALLOWED_MODEL_PREFIXES, is_allowed_import
from calmops.core.store import read_spec, sha256_of
from calmops.detectors import ReferenceProfile

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
REFERENCE_MAX_ROWS = 200_000

#: The file a registered version's model lives in (MLflow's name for the skops format), under ``model/``.
MODEL_FILE = "model.skops"
#: Version tag CalmOps writes at registration: the SHA-256 of :data:`MODEL_FILE`, checked before every load.
MODEL_SHA256_TAG = "calmops.model_sha256"
#: Version tag of a version refit on every row of its file after the holdout chose its recipe: the SHA-256 of the
#: fit the holdout judged (trained without the holdout rows), kept in the run's artifacts under
#: ``selection/v<version>/`` and checked before every load like the model. Its outputs are the ones the
#: label-free signals and the performance estimate read (:attr:`Champion.watched`).
SELECTION_SHA256_TAG = "calmops.selection_sha256"

#: Parts of those estimators that are not estimators themselves, by their full type name, beyond what skops
#: trusts on its own (scikit-learn's public estimators, numpy arrays, plain Python values). Never a
#: function: a function in a model file is how a skops file runs code.
TRUSTED_PARTS = frozenset({
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.utils._bunch.Bunch",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
    "sklearn.gaussian_process.kernels.ConstantKernel",
    "sklearn.gaussian_process.kernels.Product",
    "sklearn.gaussian_process.kernels.Sum",
    "sklearn.gaussian_process.kernels.RBF",
    "sklearn.gaussian_process.kernels.WhiteKernel",
    "sklearn._loss.loss.HalfTweedieLossIdentity",
    "sklearn._loss.loss.HalfTweedieLoss",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.link.IdentityLink",
})


#: MLflow's HTTP client in every process that imports this module (flow runs, commands), unless the environment
#: sets these variables itself (the viewer and the API set their own). Retries and back-off govern a refused or
#: dropped connection: it is tried 5 times in about 15 s (back-off 0, 2, 4 and 8 s), enough for a server that
#: restarts, and a server that is gone fails the call then. The timeout governs a slow answer: 60 s a try, so a
#: healthy server that is busy (a large search, an object store behind it, a database under a burst) is waited
#: for, and a request is not sent twice for being slow (MLflow retries every method, creating a model version
#: included); a server that accepts and never answers fails the call in about 5 minutes. MLflow's own defaults (7
#: retries, back-off factor 2, 120 s a try) kept a run waiting about 4 minutes on a server that was gone, without a
#: word. Set as MLflow's defaults (:func:`_client_defaults`), not in ``os.environ``: the services ``calmops up``
#: starts inherit its environment, where the viewer's and the API's own settings would yield to these.
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": 4, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 1,
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": 60}
#: how an HTTP client words "nothing answers there" (MLflow's buries it at the end of a long message about the URL
#: and its retries); a connection that timed out reached nothing either
NO_ANSWER = ("Connection refused", "Name or service not known", "No route to host", "Connection timed out",
             "connect timeout")
#: how MLflow's HTTP client words "connected and asked, but no answer came within the timeout"
SLOW_ANSWER = "Read timed out"


def _client_defaults() -> None:
    """MLflow's client reads each of these variables when it sends a request, falling back to the variable's
    default: :data:`CLIENT_DEFAULTS` become those defaults, in this process only."""
    for name, value in CLIENT_DEFAULTS.items():
        getattr(mlflow_environment, name).default = value


def _quiet() -> None:
    """MLflow's client prints "View run … at <url>" on stdout when a run ends, reading the run back for it (one
    request per run; a run's page is linked from its Prefect artifact instead), and sends telemetry. Set where
    MLflow is configured, not only at import: a warm runner's child replaces the environment it imported in."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


_quiet()
_client_defaults()


def configure(settings: Settings | None = None) -> MlflowClient:
    _quiet()
    settings = settings or get_settings()
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    if settings.mlflow_registry_uri:
        mlflow.set_registry_uri(settings.mlflow_registry_uri)
    return MlflowClient()


class MlflowUnreachable(ConnectionError):
    """The MLflow tracking server does not answer, or not in time: said with its address and what to do. Not
    bad input: the run fails and its file stays pending, to be run again once the server answers."""


def unreachable(exc: BaseException, *, asked_mlflow: bool = False) -> MlflowUnreachable | None:
    """``exc`` said plainly when it is MLflow's client giving up on a tracking server that does not answer, or
    not within its timeout (its own message buries the cause at the end of a long line about the URL); None for
    any other error. ``asked_mlflow``: the caller knows ``exc`` came from asking the tracking server, by any HTTP
    client (the API's probe); else only MLflow's client's errors are taken."""
    if isinstance(exc, MlflowUnreachable):
        return exc
    uri = mlflow.get_tracking_uri()
    text = str(exc)
    by_client = isinstance(exc, MlflowException)
    if not (by_client or asked_mlflow) or not uri.startswith(("http://", "https://")):
        return None
    tries = f"{mlflow_environment.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()} retries" if by_client else ""
    if SLOW_ANSWER in text:  # it is there: starting it or another address is not the advice
        timeout = mlflow_environment.MLFLOW_HTTP_REQUEST_TIMEOUT.get()
        return MlflowUnreachable(
            f"the MLflow tracking server at {uri} did not answer within {timeout} s{f' ({tries})' if tries else ''}; "
            "if it is busy, raise MLFLOW_HTTP_REQUEST_TIMEOUT (the seconds a request waits for its answer)")
    cause = next((words for words in NO_ANSWER if words in text), None)
    if cause is None:
        return None
    return MlflowUnreachable(
        f"the MLflow tracking server at {uri} does not answer ({cause.lower()}{f', {tries}' if tries else ''}); start it "
        "(`calmops up` starts the local stack's), or set MLFLOW_TRACKING_URI to the address of the one that runs")


def experiment_name(pipeline: str) -> str:
    return f"calmops/{pipeline}"


RETIRED_PREFIX = "calmops-deleted/"  # experiments of deleted pipelines: outside experiment_name's prefix


def retire_experiment(pipeline: str, stamp: str) -> str | None:
    """Set a deleted pipeline's experiment aside, as its folder and ledger are: renamed
    ``calmops-deleted/<pipeline>-<stamp>`` and marked deleted (its runs stay, readable in MLflow), so that a
    pipeline created again under the name starts a fresh experiment instead of restoring the old runs. Returns
    the new name, or None when the pipeline has no experiment."""
    client = configure()
    experiment = client.get_experiment_by_name(experiment_name(pipeline))
    if experiment is None:
        return None
    if experiment.lifecycle_stage != "active":  # deleted by hand or by an older CalmOps: MLflow renames only
        client.restore_experiment(experiment.experiment_id)  # active experiments
    retired = f"{RETIRED_PREFIX}{pipeline}-{stamp}"
    client.rename_experiment(experiment.experiment_id, retired)
    client.delete_experiment(experiment.experiment_id)
    return retired


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
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise  # the server's own error (unreachable, refusing): say it, not a missing experiment
        return client.get_experiment_by_name(name).experiment_id  # created meanwhile by a concurrent run


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


# -- which models CalmOps loads ------------------------------------------------------------


class UntrustedModel(RuntimeError):
    """A model version CalmOps refuses to load: not registered by it, changed since, or holding untrusted types."""


@lru_cache(maxsize=1)
def _own_parts() -> frozenset[str]:
    # scikit-learn and scipy: loaded here, not by the commands that only read aliases
    from calmops.core import blockwise, frozen, ipip

    return TRUSTED_PARTS | frozenset(blockwise.SKOPS_TRUSTED_TYPES + frozen.SKOPS_TRUSTED_TYPES + ipip.SKOPS_TRUSTED_TYPES)


@lru_cache(maxsize=512)
def is_trusted_type(name: str, allow_modules: tuple[str, ...] = ()) -> bool:
    """Whether CalmOps lets skops build an object of type ``name`` (beyond what skops trusts by itself).

    Decided here, never by the model file or its ``MLmodel``: a listed part, or an estimator class (a
    ``BaseEstimator`` subclass) of a package the allow-list admits, or of a prefix in ``allow_modules`` (the
    spec's ``allow_modules`` of the pipeline whose model it is, :func:`pipeline_modules`). Functions never are.
    """
    import importlib
    import inspect

    from sklearn.base import BaseEstimator

    if name in _own_parts():
        return True
    module, _, attr = name.rpartition(".")
    if not f"{module}.".startswith(ALLOWED_MODEL_PREFIXES) and not is_allowed_import(name, allow_modules):
        return False
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    return inspect.isclass(obj) and issubclass(obj, BaseEstimator)


def untrusted_types(*, data: bytes | None = None, file: Path | None = None,
                    allow_modules: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(types to pass to skops as trusted, types CalmOps refuses) for a skops dump; ``allow_modules``: the
    extra prefixes of the pipeline whose model it is."""
    import skops.io

    found = skops.io.get_untrusted_types(data=data) if data is not None else skops.io.get_untrusted_types(file=file)
    refused = [t for t in found if not is_trusted_type(t, tuple(allow_modules))]
    return [t for t in found if t not in refused], refused


def pipeline_modules(pipeline: str) -> tuple[str, ...]:
    """The ``allow_modules`` of a pipeline's saved spec: the only prefixes, beyond the built-in allow-list, whose
    estimator classes its models may hold (read from CalmOps' home, never from a model file or its tags, so a
    model registered under another pipeline gains nothing from them). () for a pipeline without a saved spec."""
    try:
        return tuple(read_spec(pipeline).allow_modules)
    except (CalmOpsError, LookupError):  # no such pipeline (deleted, or registered by hand): no extra trust
        return ()


def _unloadable(refused: list[str], allow_modules: tuple[str, ...]) -> str:
    """Why those types are refused, with what to do for one under an allowed prefix its process cannot import."""
    import importlib

    said = ", ".join(sorted(refused)[:5])
    for name in sorted(refused):
        module = name.rpartition(".")[0]
        if allow_modules and is_allowed_import(name, allow_modules):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                return (f"{said}; {module!r} (in allow_modules) cannot be imported here ({_first_line(exc)}): "
                        "install it, or put its folder on the PYTHONPATH of the worker, the runner and the API")
    return said


def trusted_types_for(model: Any, allow_modules: tuple[str, ...] = ()) -> list[str]:
    """Types skops must trust to load this model; refuses a model holding types CalmOps would not load.
    ``allow_modules``: the spec's ``allow_modules`` of the pipeline the model is saved for."""
    return checked_dump(model, allow_modules)[1]


def checked_dump(model: Any, allow_modules: tuple[str, ...] = ()) -> tuple[bytes, list[str]]:
    """The model's skops file and the types skops must trust to load it; refuses a model holding types CalmOps
    would not load (:func:`trusted_types_for`)."""
    import skops.io

    data = skops.io.dumps(model)
    trusted, refused = untrusted_types(data=data, allow_modules=allow_modules)
    if refused:
        raise ValueError(f"model holds types CalmOps does not load and cannot be saved: "
                         f"{_unloadable(refused, allow_modules)}")
    return data, trusted


def _not_registered(what: str) -> UntrustedModel:
    return UntrustedModel(f"{what} was not registered by CalmOps (no {MODEL_SHA256_TAG} tag): refused to load it")


def verify_model_file(folder: Path, expected_sha256: str | None, what: str,
                      changed: Callable[[Path], tuple[str, str]] | None = None, tag: str = MODEL_SHA256_TAG) -> Path:
    """``folder/model.skops`` if it is the file CalmOps registered (its SHA-256 tag matches); raises otherwise.

    ``changed``: for a file that changed, (where it lives, what to do) as the message says them, from its path
    here (a download's staging folder is deleted at once: the changed file is in the artifact store); without
    it, the path and nothing more."""
    if not expected_sha256:
        raise _not_registered(what)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise UntrustedModel(f"{what} has no {MODEL_FILE}: CalmOps loads only the skops format it registers "
                             "(never pickle): refused")
    if sha256_of(path) != expected_sha256:
        where, then = changed(path) if changed else (str(path), "")
        raise UntrustedModel(f"{what}: {where} changed since registration (its SHA-256 differs from the "
                             f"{tag} tag): refused" + (f"; {then}" if then else ""))
    return path


def _changed_in_store(pipeline: str, version: int) -> Callable[[Path], tuple[str, str]]:
    """Where a version's model file lives in the artifact store, and what to do about one that changed there."""

    def said(path: Path) -> tuple[str, str]:
        uri = f"models:/{model_name(pipeline)}/{version}"
        with suppress(Exception):  # the registry asked once more, on this failure only: its answer is a bonus
            from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

            uri = ModelsArtifactRepository.get_underlying_uri(uri)
        then = (f"put the registered file back there, or serve the previous champion with 'calmops rollback "
                f"{pipeline}'; whoever can write the artifact store can change models (docs/security.md)")
        return f"{path.name} in the artifact store ({uri.rstrip('/')}/{path.name})", then

    return said


def _changed_in_cache(cached: Path) -> Callable[[Path], tuple[str, str]]:
    """What to do about a model file that changed in this machine's cache of a version (``cached``)."""

    def said(path: Path) -> tuple[str, str]:
        then = (f"the cached copy stays refused until it is deleted: rm -r {shlex.quote(str(cached))} (the next "
                "load downloads it "
                "again from the artifact store and checks it)")
        return str(path), then

    return said


def read_model(folder: Path, expected_sha256: str | None, what: str,
               changed: Callable[[Path], tuple[str, str]] | None = None,
               allow_modules: tuple[str, ...] = (), tag: str = MODEL_SHA256_TAG) -> Any:
    """Load ``folder/model.skops`` if it is the file registered and every type in it is trusted.

    ``MLmodel`` is never read: the format (skops) and the trusted types are CalmOps' own (with
    ``allow_modules``, the spec's of the pipeline whose version it is). Pickle is never loaded. Raises
    :class:`UntrustedModel` with one line naming ``what`` and why.
    """
    import skops.io

    path = verify_model_file(folder, expected_sha256, what, changed, tag)
    try:
        trusted, refused = untrusted_types(file=path, allow_modules=allow_modules)
    except Exception as exc:  # noqa: BLE001 - not a skops file at all (e.g. a pickle under that name)
        raise UntrustedModel(f"{what}: {MODEL_FILE} is not a readable skops file ({_first_line(exc)}): refused") from None
    if refused:
        raise UntrustedModel(f"{what} holds types CalmOps does not load ({_unloadable(refused, allow_modules)}): "
                             "refused")
    return skops.io.load(path, trusted=trusted)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


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
    """Create the MLflow run that records one file's processing; returns its id. The first call of a run to the
    tracking server: one that does not answer is said so (:class:`MlflowUnreachable`)."""
    try:
        experiment_id = ensure_experiment(pipeline)
        # the run's name is its file's name: shown escaped (printable), like every reason naming it
        run = MlflowClient().create_run(experiment_id, run_name=printable(run_name), tags=tags)
    except MlflowException as exc:
        said = unreachable(exc)
        if said is None:
            raise
        raise said from exc
    return run.info.run_id


@contextmanager
def in_run(run_id: str):
    """Make ``run_id`` the active run for MLflow's fluent calls (``log_model`` logs into the active run), whatever
    thread we are on. The run stays RUNNING after the block, since its file is still being decided; a block that
    raises ends it FAILED. Plain logging goes through :func:`log_to_run` instead (by id, fewer requests)."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield active
        return
    run = mlflow.start_run(run_id=run_id, nested=active is not None)
    try:
        yield run
    except BaseException:
        with suppress(Exception):  # the block's own error is the one to tell (the run is popped either way)
            mlflow.end_run("FAILED")
        raise
    mlflow.end_run("RUNNING")


@contextmanager
def _ends_failed_on_error(run_id: str):
    """A block that logs into a run by id: if it raises, the run ends FAILED (best effort) and the error goes on."""
    try:
        yield
    except BaseException:
        close_run(run_id, "FAILED")
        raise


def recorded_decisions(pipeline: str, sha256: str) -> list[str]:
    """The decisions the pipeline's runs recorded for a content (their ``calmops.decision`` tags, by its
    ``calmops.sha256``); a run that was stopped, or could not record, recorded none."""
    experiment = mlflow.get_experiment_by_name(experiment_name(pipeline))
    if experiment is None:
        return []
    runs = MlflowClient().search_runs([experiment.experiment_id], max_results=100,
                                      filter_string=f"tags.`calmops.sha256` = '{sha256}'")
    return [d for run in runs if (d := run.data.tags.get("calmops.decision"))]


def log_to_run(run_id: str, *, params: dict[str, str] | None = None, tags: dict[str, str] | None = None,
               metrics: dict[str, float] | None = None, timestamp_ms: int | None = None,
               files: dict[str, str] | None = None, end: str | None = None) -> None:
    """Log into a file's run by its id, in as few requests as MLflow takes: one batch of params, tags and
    metrics (at step 0), one upload of ``files`` (artifact path → text), and with ``end`` the run's final status
    (FINISHED, FAILED). Without ``end`` the run stays RUNNING: its file is still being decided. A failure ends
    the run FAILED and is raised, as :func:`in_run` does.
    """
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient()
    with _ends_failed_on_error(run_id):
        at = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        batch = {"params": [Param(k, v) for k, v in (params or {}).items()],
                 "tags": [RunTag(k, v) for k, v in (tags or {}).items()],
                 "metrics": [Metric(k, float(v), at, 0) for k, v in (metrics or {}).items()]}
        if any(batch.values()):
            client.log_batch(run_id, **batch)
        if files:
            with tempfile.TemporaryDirectory() as tmp:
                for name, text in files.items():
                    target = Path(tmp, name)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text, encoding="utf-8")
                client.log_artifacts(run_id, tmp)
    if end:
        client.set_terminated(run_id, status=end)


def close_run(run_id: str, status: str) -> None:
    """End a run that will record nothing more (KILLED: its process died or was stopped mid-run). Best effort:
    a run deleted meanwhile, or MLflow out of reach, leaves it as it was."""
    with suppress(Exception):
        configure().set_terminated(run_id, status=status)  # configured: called before a run's other MLflow calls


def reason_tag(reason: str) -> str:
    """A run's ``calmops.reason`` tag: the reason escaped (:func:`printable`, a file name in it carries no line
    break or terminal escape into MLflow), within a tag's length."""
    return printable(reason)[:5000]


def end_if_running(run_id: str, status: str, reason: str) -> bool:
    """End a run an earlier process could not end (it failed while the tracking server was out of reach), with
    ``reason`` as its ``calmops.reason`` when it has none; a run that ended already is left as it is. Best
    effort, like :func:`close_run`. Returns whether it was ended here."""
    with suppress(Exception):
        client = configure()
        run = client.get_run(run_id)
        if run.info.status != "RUNNING":
            return False
        if "calmops.reason" not in run.data.tags:
            client.set_tag(run_id, "calmops.reason", reason_tag(reason))
        client.set_terminated(run_id, status=status)
        return True
    return False


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

    @cached_property
    def watched(self) -> Any:
        """The model whose outputs on a batch the label-free signals and the performance estimate read: the fit
        the holdout judged, kept with a version refit on every row of its file after it (loaded on first use: the
        API serves without it), else the model itself. Their reference is its outputs on the holdout, rows it
        never learnt: the refit model has learnt every row of its file, and its outputs on rows it learnt are
        surer than on any new row, so such a reference would call every later file drift."""
        sha256 = self.tags.get(SELECTION_SHA256_TAG)
        if not sha256:
            return self.model
        return _load_selection(mlflow.get_tracking_uri(), self.name, self.version, self.run_id,
                               reference_path(self.tags), sha256)

    @property
    def scores_at_promotion(self) -> dict[str, float]:
        return json.loads(self.tags.get("calmops.scores", "{}"))

    @property
    def training(self) -> dict[str, Any]:
        """What its training recorded (the ``calmops.training`` version tag: mode, file, sha256, …); {} for a
        tag that does not read as a JSON object."""
        try:
            training = json.loads(self.tags.get("calmops.training") or "{}")
        except ValueError:
            return {}
        return training if isinstance(training, dict) else {}


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
    selection_fit: Any = None,
) -> int:
    """Log and register a model in the given MLflow run; returns its version number. ``selection_fit``: the fit the
    holdout judged, when ``model`` is its recipe refit on every row (see :data:`SELECTION_SHA256_TAG`)."""
    with in_run(run_id):
        return _log_candidate(pipeline, model, reference, schema, profile, scores=scores, description=description,
                              selection_fit=selection_fit)


_INTEGER_HINT = "Hint: Inferred schema contains integer column"


@contextmanager
def _quiet_model_logging():
    """Without two MLflow messages every model logged printed to no use: the hint about integer columns (the
    inputs are declared as floats; integer class labels are the outputs, never missing) and that pip's own
    version is unknown (the pins are given explicitly; pip is not in the environment)."""
    environment_log = logging.getLogger("mlflow.utils.environment")
    level = environment_log.level
    environment_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_INTEGER_HINT)
            yield
    finally:
        environment_log.setLevel(level)


def _log_candidate(pipeline, model, reference, schema, profile, *, scores, description, selection_fit) -> int:
    from mlflow.models import infer_signature

    features = reference[schema.columns]
    # integer columns are declared as floats in the signature: a later batch with a missing value in one
    # (read as float with NaN) still matches the model's schema when served through MLflow's pyfunc
    sample = features.head(5).astype({c: "float64" for c in features.select_dtypes("integer").columns})
    # the selection fit's file, refused before anything is registered as the model's own types are
    selection = None if selection_fit is None else checked_dump(selection_fit, pipeline_modules(pipeline))[0]
    with _quiet_model_logging():
        signature = infer_signature(sample, model.predict(sample))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=model_name(pipeline),
            signature=signature,
            input_example=sample,
            serialization_format="skops",
            skops_trusted_types=(trusted := trusted_types_for(model, pipeline_modules(pipeline))),
            pip_requirements=requirements_for(trusted),  # explicit: MLflow would infer them (seconds per model)
        )
    version = int(info.registered_model_version)
    where = f"reference/v{version}"
    client = MlflowClient()  # the tag first: a version whose reference was logged always names where it is
    client.set_model_version_tag(model_name(pipeline), str(version), REFERENCE_PATH_TAG, where)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ref = reference if len(reference) <= REFERENCE_MAX_ROWS else reference.sample(REFERENCE_MAX_ROWS, random_state=0)
        ref.to_parquet(tmp_path / "reference.parquet", index=False)
        (tmp_path / "schema.json").write_text(json.dumps(schema.to_dict(), indent=2))
        profile.save(tmp_path / "profile")
        mlflow.log_artifact(str(tmp_path / "reference.parquet"), where)
        mlflow.log_artifact(str(tmp_path / "schema.json"), where)
        mlflow.log_artifacts(str(tmp_path / "profile"), f"{where}/profile")
    if selection is not None:  # before the model's tag: a version CalmOps loads has both or was never refit
        _log_selection_fit(version, selection)
        client.set_model_version_tag(model_name(pipeline), str(version), SELECTION_SHA256_TAG,
                                     hashlib.sha256(selection).hexdigest())
    client.set_model_version_tag(model_name(pipeline), str(version), MODEL_SHA256_TAG,
                                 _registered_sha256(pipeline, version, where))
    if selection is not None:  # into this machine's copy of the version, as the model is: no download to read it
        local = _local_copy(mlflow.get_tracking_uri(), pipeline, version, mlflow.active_run().info.run_id, where)
        if not (local / "selection").is_dir():
            with _staged(local / "selection", ".selection-") as staging:
                (staging / MODEL_FILE).write_bytes(selection)
    client.set_model_version_tag(model_name(pipeline), str(version), "calmops.scores", json.dumps(scores or {}))
    numbers = {k: float(v) for k, v in (scores or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if numbers:  # the version's holdout scores as metrics of its logged model (MLflow's Models view lists them)
        mlflow.log_metrics({f"holdout_{k}": v for k, v in numbers.items()}, model_id=info.model_id)
    if description:
        client.update_model_version(model_name(pipeline), str(version), description=description[:5000])
    if version == 1:  # the registered model was just made: say whose it is and what its aliases mean
        describe_registered_model(client, pipeline)
    return version


def _selection_path(version: int) -> str:
    """Where a version's selection fit is kept in its run's artifacts (a run registers a fallback's version too)."""
    return f"selection/v{version}"


def _log_selection_fit(version: int, selection: bytes) -> None:
    """Log ``version``'s selection fit (its skops file, whose types were checked before the version was
    registered) in the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        path.write_bytes(selection)
        mlflow.log_artifact(str(path), _selection_path(version))


def describe_registered_model(client: MlflowClient, pipeline: str) -> None:
    client.update_registered_model(model_name(pipeline), description=(
        f"Models of the CalmOps pipeline '{pipeline}' (runs in the MLflow experiment '{experiment_name(pipeline)}'). "
        f"Alias '{CHAMPION}' serves predictions; '{CHALLENGER}' marks a version waiting for promotion; "
        f"'{PREVIOUS}' is the champion a rollback returns to. Each version's description says how it was "
        "trained and why."))
    for key, value in {"calmops.pipeline": pipeline, "calmops.experiment": experiment_name(pipeline),
                       "calmops.managed_by": "calmops"}.items():
        client.set_registered_model_tag(model_name(pipeline), key, value)


def _registered_sha256(pipeline: str, version: int, reference: str) -> str:
    """The SHA-256 of the model file as stored; the local copy made here also serves the first load."""
    run_id = MlflowClient().get_model_version(model_name(pipeline), str(version)).run_id
    path = _local_copy(mlflow.get_tracking_uri(), pipeline, version, run_id, reference) / "model" / MODEL_FILE
    if not path.is_file():
        raise RuntimeError(f"pipeline {pipeline!r} v{version}: MLflow did not store {MODEL_FILE}")
    return sha256_of(path)


def set_version_tag(pipeline: str, version: int, key: str, value: Any) -> None:
    MlflowClient().set_model_version_tag(model_name(pipeline), str(version), key, value if isinstance(value, str) else json.dumps(value))


# -- reading versions and aliases ----------------------------------------------------------


_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def _is_not_found(exc: MlflowException) -> bool:
    return exc.error_code in _NOT_FOUND


def alias_version(pipeline: str, alias: str) -> int | None:
    """The version an alias points at; None when the model or alias does not exist (outages raise)."""
    mv = alias_model_version(pipeline, alias)
    return int(mv.version) if mv is not None else None  # SQLite gives int, REST gives str: normalise


def alias_model_version(pipeline: str, alias: str) -> ModelVersion | None:
    """The version an alias points at as the registry answers it (number, run, tags), in one registry call;
    None when the model or alias does not exist (outages raise). :func:`load_version` takes it as it is."""
    try:
        return MlflowClient().get_model_version_by_alias(model_name(pipeline), alias)
    except MlflowException as exc:
        if not _is_not_found(exc):
            raise
        return None


def aliases(pipeline: str) -> dict[str, int]:
    client = MlflowClient()
    try:
        rm = client.get_registered_model(model_name(pipeline))
    except MlflowException as exc:
        if not _is_not_found(exc):
            raise
        return {}
    return {alias: int(v) for alias, v in rm.aliases.items()}


@lru_cache(maxsize=16)
def _load_version(tracking_uri: str, pipeline: str, version: int, run_id: str, reference: str,
                  sha256: str | None) -> tuple[Any, InputSchema, ReferenceProfile]:
    what = f"pipeline {pipeline!r} v{version}"
    local = _local_copy(tracking_uri, pipeline, version, run_id, reference, sha256, what)
    model = read_model(local / "model", sha256, what, _changed_in_cache(local), pipeline_modules(pipeline))
    schema = InputSchema.from_dict(json.loads((local / "reference" / "schema.json").read_text()))
    profile = ReferenceProfile.load(local / "reference" / "profile")
    return model, schema, profile


@lru_cache(maxsize=16)
def _load_selection(tracking_uri: str, pipeline: str, version: int, run_id: str, reference: str,
                    sha256: str) -> Any:
    """A version's selection fit (:data:`SELECTION_SHA256_TAG`), checked and loaded as its model is."""
    local = _local_copy(tracking_uri, pipeline, version, run_id, reference)
    return read_model(_local_selection(local, version, run_id), sha256, f"pipeline {pipeline!r} v{version}'s "
                      "selection fit", _changed_in_cache(local), pipeline_modules(pipeline), tag=SELECTION_SHA256_TAG)


def _local_selection(local: Path, version: int, run_id: str) -> Path:
    """The folder of the version's selection fit in its local copy ``local``, downloaded once, whole or not at all."""
    final = local / "selection"
    if final.is_dir():
        return final
    with _staged(final, ".selection-") as staging:
        got = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{_selection_path(version)}/{MODEL_FILE}",
                                                  dst_path=str(staging / "download"))
        Path(got).rename(staging / MODEL_FILE)
        shutil.rmtree(staging / "download")
    return final


@contextmanager
def _staged(final: Path, prefix: str) -> Iterator[Path]:
    """A new folder beside ``final`` to fill, renamed to ``final`` when the block ends without an error and removed
    in any case: ``final`` appears whole or not at all (a copy another process finished first is the same)."""
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    try:
        yield staging
        with suppress(OSError):  # another process finished first: its copy is the same
            staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _local_copy(tracking_uri: str, pipeline: str, version: int, run_id: str, reference: str,
                sha256: str | None = None, what: str = "") -> Path:
    """The version's model, schema and profile on local disk, downloaded once per machine.

    A registered version never changes, so every process (each flow run is one) reads the same copy under
    ``$CALMOPS_HOME/cache/models``. It appears complete or not at all: downloaded beside it, then renamed.
    ``reference``: where the version's reference is in its run's artifacts (:func:`reference_path`).
    With ``sha256`` (every load; not at registration, which computes it), a model file that is not the one
    registered is refused before anything else is downloaded; the cached copy is checked again on load.
    """
    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    # the run id too: a pipeline deleted and created again numbers its versions from 1 again
    final = get_settings().home / "cache" / "models" / store / pipeline / f"{version}-{run_id}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _staged(final, f".{version}-") as staging:
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name(pipeline)}/{version}",
                                            dst_path=str(staging / "model"))
        if sha256 is not None or what:
            verify_model_file(staging / "model", sha256, what, _changed_in_store(pipeline, version))
        for part in ("schema.json", "profile"):  # not the reference rows: only what serving needs
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{reference}/{part}",
                                                dst_path=str(staging / "reference"))
    return final


def load_version(pipeline: str, version: int, mv: ModelVersion | None = None) -> Champion:
    """The registered version with its current tags; the model itself is loaded once per process.

    ``mv``: the version as just read from the registry (e.g. by :func:`alias_model_version`), which saves
    reading it again: the API serves a prediction with one registry call.
    """
    # the version's tags may change after its model is cached (e.g. scores at promotion): read them each time
    if mv is None or int(mv.version) != int(version):
        mv = MlflowClient().get_model_version(model_name(pipeline), str(version))
    sha256 = mv.tags.get(MODEL_SHA256_TAG)
    if not sha256:  # before any download
        raise _not_registered(f"pipeline {pipeline!r} v{version}")
    model, schema, profile = _load_version(mlflow.get_tracking_uri(), pipeline, int(version), mv.run_id,
                                           reference_path(mv.tags), sha256)
    return Champion(pipeline, int(version), model, schema, profile, mv.run_id, dict(mv.tags))


def load_reference(pipeline: str, version: int) -> pd.DataFrame:
    mv = MlflowClient().get_model_version(model_name(pipeline), str(version))
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=mv.run_id, dst_path=tmp,
                                                   artifact_path=f"{reference_path(mv.tags)}/reference.parquet")
        return pd.read_parquet(path)


def champion(pipeline: str) -> Champion | None:
    version = alias_version(pipeline, CHAMPION)
    if version is None and migrate_model_name(pipeline):  # registered before the prefix: renamed, then served
        version = alias_version(pipeline, CHAMPION)
    return None if version is None else load_version(pipeline, version)


def _legacy_model(client: MlflowClient, pipeline: str):
    """The model CalmOps registered under the bare pipeline name before the prefix, when it can still be moved
    to :func:`~calmops.core.names.model_name` (that name is free); None otherwise. CalmOps' own: each of its
    versions carries the ``calmops.scores`` tag (another team's model of that name has none)."""
    for name, wanted in ((model_name(pipeline), False), (pipeline, True)):
        try:
            found = client.get_registered_model(name)
        except MlflowException as exc:
            if not _is_not_found(exc):
                raise
            found = None
        if (found is not None) != wanted:
            return None
    versions = client.search_model_versions(f"name='{pipeline}'", max_results=1000)
    return found if versions and all("calmops.scores" in v.tags for v in versions) else None


def legacy_champion(pipeline: str) -> int | None:
    """The champion of the pipeline's model registered before the prefix, if there is one to move."""
    model = _legacy_model(MlflowClient(), pipeline)
    version = (model.aliases or {}).get(CHAMPION) if model is not None else None
    return None if version is None else int(version)


def migrate_model_name(pipeline: str) -> bool:
    """Rename the pipeline's registered model from its name before the prefix (``<pipeline>``) to
    :func:`~calmops.core.names.model_name` (``calmops.<pipeline>``); MLflow keeps its versions and aliases.

    Only a model CalmOps registered is renamed, and only while the prefixed name is free: another team's model
    that happens to have the pipeline's name is left alone (:func:`_legacy_model`). True when it renamed one;
    False too when another process renamed it first."""
    client = MlflowClient()
    if _legacy_model(client, pipeline) is None:
        return False
    try:
        client.rename_registered_model(pipeline, model_name(pipeline))
    except MlflowException as exc:
        if _is_not_found(exc) or exc.error_code == "RESOURCE_ALREADY_EXISTS":  # renamed meanwhile
            return False
        raise
    describe_registered_model(client, pipeline)
    log.info("renamed the registered model %r to %r (CalmOps' prefix)", pipeline, model_name(pipeline))
    return True


# -- moving aliases ------------------------------------------------------------------------


def mark_challenger(pipeline: str, version: int) -> None:
    MlflowClient().set_registered_model_alias(model_name(pipeline), CHALLENGER, str(version))


def promote(pipeline: str, version: int) -> int | None:
    """Make ``version`` the champion; the old champion becomes ``previous``, and ``challenger`` (which names a
    model still waiting) leaves ``version``. Returns the old champion.

    Order matters for crash safety: ``previous`` is written first, so an interruption leaves
    the old champion serving and a repeat of the call completes the move (idempotent).
    """
    client = MlflowClient()
    old = alias_version(pipeline, CHAMPION)
    moved = old != version  # else a repeat of the call: the champion did not change now
    if old == version:
        old = alias_version(pipeline, PREVIOUS)
    else:
        if old is not None:
            client.set_registered_model_alias(model_name(pipeline), PREVIOUS, str(old))
        client.set_registered_model_alias(model_name(pipeline), CHAMPION, str(version))
    if alias_version(pipeline, CHALLENGER) == version:
        client.delete_registered_model_alias(model_name(pipeline), CHALLENGER)
    if moved:
        _mark_champion_since(client, pipeline, version)
    return old


def _mark_champion_since(client: MlflowClient, pipeline: str, version: int) -> None:
    """Record when ``version`` became the champion (the viewer's champion age), once the aliases are in place:
    best effort, as a failure here must not undo or fail the move itself."""
    try:
        client.set_model_version_tag(model_name(pipeline), str(version), CHAMPION_SINCE_TAG,
                                     str(int(time.time() * 1000)))
    except MlflowException as exc:
        log.warning("could not record when v%s of %s became the champion: %s", version, pipeline, exc)


class NothingToRollBack(LookupError):
    pass


#: a champion's version tags the stream flow reads: the rows kept when its last refresh was tried (the base of
#: ``retrain.refresh_growth``), and the file that tried the follow-up its promotion during a change called for
REFRESH_BASE_TAG = "calmops.refresh_tried_at_rows"
FOLLOW_UP_TAG = "calmops.follow_up_tried"


def rollback(pipeline: str, rows_kept: int | None = None) -> tuple[int, int]:
    """Serve ``previous`` again; the rolled-back champion becomes ``previous``. Returns (from, to).

    The version served again is the user's choice, not a model the next quiet file should replace: its refresh
    counts from ``rows_kept`` (the rows the pipeline keeps now), and the follow-up of its own promotion is over.
    Drift still retrains and promotes as for any champion."""
    client = MlflowClient()
    current, prev = alias_version(pipeline, CHAMPION), alias_version(pipeline, PREVIOUS)
    if prev is None or current is None:
        raise NothingToRollBack(f"pipeline {pipeline!r} has no previous champion to roll back to")
    if rows_kept is not None:  # first: an interrupted rollback leaves the old champion serving
        set_version_tag(pipeline, prev, REFRESH_BASE_TAG, str(rows_kept))
    set_version_tag(pipeline, prev, FOLLOW_UP_TAG, "rollback")
    client.set_registered_model_alias(model_name(pipeline), CHAMPION, str(prev))
    client.set_registered_model_alias(model_name(pipeline), PREVIOUS, str(current))
    client.set_model_version_tag(model_name(pipeline), str(current), "calmops.rolled_back", "true")
    if client.get_model_version(model_name(pipeline), str(prev)).tags.get("calmops.rolled_back"):  # served again
        client.delete_model_version_tag(model_name(pipeline), str(prev), "calmops.rolled_back")
    _mark_champion_since(client, pipeline, prev)
    return current, prev


class NoRecordedRun(LookupError):
    pass


def recorded_verdict(pipeline: str, file: str | None = None, labels: bool = False,
                     run_id: str | None = None) -> tuple[dict, dict, bool]:
    """What the latest run of ``file`` (by its name; any file when None) recorded with a drift verdict: its
    ``outcome.json``, ``drift/verdict.json`` and whether the file came from the labels folder; ``labels``: the
    file of that name in the labels folder (a run without the ``calmops.folder`` tag, from before it existed,
    counts as either). ``run_id``: that MLflow run of the pipeline instead (an earlier file of the same name, see
    :func:`checked_runs`). Raises :class:`NoRecordedRun` when there is none."""
    experiment = mlflow.get_experiment_by_name(experiment_name(pipeline))
    if experiment is None:
        raise NoRecordedRun(f"pipeline {pipeline!r} has no run in MLflow yet")
    runs = [_run_of(experiment.experiment_id, pipeline, run_id, file)] if run_id else _runs_of_file(
        experiment.experiment_id, file)
    decided = []  # the decisions of the runs of that file that recorded no verdict
    for run in runs:
        folder = run.data.tags.get("calmops.folder")
        if file and not run_id and folder is not None and (folder == "labels") != labels:
            continue  # the other folder's file of that name
        base = run.info.artifact_uri.rstrip("/")
        try:
            verdict = mlflow.artifacts.load_dict(f"{base}/drift/verdict.json")
        except (MlflowException, OSError):
            if run_id:
                raise NoRecordedRun(f"run {run_id} of pipeline {pipeline!r} recorded no drift verdict (its decision: "
                                    f"{run.data.tags.get('calmops.decision', 'none')})") from None
            decided.append(run.data.tags.get("calmops.decision", "none"))
            continue  # a run that checked no drift (a first model, a failure) has none
        return mlflow.artifacts.load_dict(f"{base}/outcome.json"), verdict, folder == "labels" or (folder is None and labels)
    if file and not decided:
        raise NoRecordedRun(f"pipeline {pipeline!r} has decided no file named {file!r} "
                            f"{'in its labels folder' if labels else 'from its incoming folder'}")
    said = f"file {file!r}" if file else "any file"
    why = f" (decided: {', '.join(dict.fromkeys(shown_decision(d) for d in decided))})" if decided else ""
    raise NoRecordedRun(f"no run of {said} in pipeline {pipeline!r} recorded a drift verdict{why}")


def checked_runs(pipeline: str, file: str, labels: bool = False) -> list[dict[str, Any]]:
    """The runs of the pipeline that checked a file of this name for drift, newest first: ``run_id``, ``started``
    (ms since the epoch) and ``decision``. A name can come back (a daily ``export.csv``): each time is its own run,
    and :func:`recorded_verdict` takes any of them by ``run_id``."""
    experiment = mlflow.get_experiment_by_name(experiment_name(pipeline))
    if experiment is None:
        return []
    found = []
    for run in _runs_of_file(experiment.experiment_id, file):
        tags = run.data.tags
        folder = tags.get("calmops.folder")
        if (folder is not None and (folder == "labels") != labels) or tags.get("calmops.decision") in DRIFT_UNCHECKED:
            continue
        found.append({"run_id": run.info.run_id, "started": run.info.start_time, "decision": tags.get("calmops.decision")})
    return found


def _runs_of_file(experiment_id: str, file: str | None) -> list[Any]:
    quoted = (file or "").replace("'", "\\'")
    return MlflowClient().search_runs([experiment_id], max_results=50, order_by=["start_time DESC"],
                                      filter_string=f"tags.`calmops.file` = '{quoted}'" if file else "")


def _run_of(experiment_id: str, pipeline: str, run_id: str, file: str | None) -> Any:
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        raise NoRecordedRun(f"MLflow has no run {run_id!r}") from None
    if run.info.experiment_id != experiment_id:
        raise NoRecordedRun(f"run {run_id} is not a run of pipeline {pipeline!r}")
    if file and run.data.tags.get("calmops.file") != file:
        raise NoRecordedRun(f"run {run_id} decided {run.data.tags.get('calmops.file')!r}, not {file!r}")
    return run


def log_batch_input(run_id: str, frame: pd.DataFrame, *, source: Path, sha256: str, target: str | None) -> None:
    """The batch as the run's MLflow dataset input (context ``batch``): named after its file, its source the
    path it arrived at, its digest the first 32 hex digits of the file's sha256 (MLflow keeps 36 characters;
    the whole sha256 is the input's ``calmops.sha256`` tag), its schema and row count from the parsed frame."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    with warnings.catch_warnings():  # MLflow registers its local-file source twice and warns it cannot choose
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
        warnings.filterwarnings("ignore", message=_INTEGER_HINT)  # a record of data already read: nothing to enforce
        dataset = mlflow.data.from_pandas(frame, source=str(source), name=source.name, digest=sha256[:32],
                                          targets=target if target in frame.columns else None)
        batch = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("calmops.sha256", sha256),
                                                                InputTag(MLFLOW_DATASET_CONTEXT, "batch")])
    with _ends_failed_on_error(run_id):  # by run id: one request (the fluent API also reads and rewrites the run)
        MlflowClient().log_inputs(run_id, datasets=[batch])
