"""Data access of the viewer: MLflow (tracking + registry) and the Prefect API, nothing else.

Plain functions without Streamlit, so they are testable on their own; :mod:`calmops.dashboards.cache`
wraps them with ``st.cache_data``. The viewer never reads a pipeline's private folder
(``$CALMOPS_HOME/pipelines``) but for the kind in its spec when it has no run yet (:func:`spec_kind`), and
never unpickles anything: it reads JSON, YAML, text and Parquet artifacts only, and never loads a model.

One MLflow ``search_runs`` per experiment gives every run of a pipeline (tags, params, metrics);
artifacts are fetched only for the runs a page shows, straight from each run's ``artifact_uri`` (no
per-run look-up), in parallel, and kept once found (a run's artifacts are written once).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from calmops.core.kinds import KINDS
from calmops.core.names import (
    CHAMPION_SINCE_TAG,
    DECIDED_ELSEWHERE,
    DRIFT_UNCHECKED,
    QUARANTINED,
    SERVING_SCORE_PREFIXES,
    Decision,
    decided_metric,
    had_serving_model,
    model_name,
    reference_path,
    shown_decision,
)
from calmops.core.paging import PAGE
from calmops.core.store import LABELS_ENTRY, entry_name, read_spec
from calmops.core.verdict import DriftVerdict

EXPERIMENT_PREFIX = "calmops/"
PIPELINE_TAG = "calmops.pipeline"
TAG_FIELDS = ("pipeline", "file", "folder", "sha256", "flow_run_id", "kind", "decision", "reason", "drift_detected",
              "drifted_features", "champion_version", "challenger_version", "retrain_mode", "spec_sha256")
MAX_RUNS = 2000


class SourceUnavailable(RuntimeError):
    """MLflow or Prefect cannot be reached; the message says which and where."""


# -- where the services are ---------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """Addresses the viewer reads from (hashable, so it can key a cache)."""

    tracking_uri: str
    registry_uri: str | None = None
    prefect_api: str | None = None
    prefect_ui: str | None = None
    mlflow_ui: str | None = None


def connection() -> Connection:
    """The addresses in force: the environment (which ``prepare()`` fills from ``calmops up``'s stack.json),
    else local SQLite under ``$CALMOPS_HOME``. Reads only; the app calls ``prepare()`` once at start."""
    from calmops.core.environment import stack_urls
    from calmops.core.settings import get_settings

    urls = stack_urls()
    settings = get_settings()
    prefect_api = _prefect_api_url()
    prefect_ui = urls.get("prefect_ui") or (prefect_api.rstrip("/").removesuffix("/api") if prefect_api else None)
    mlflow_ui = os.environ.get("CALMOPS_MLFLOW_UI") or urls.get("mlflow")
    if not mlflow_ui and settings.mlflow_tracking_uri.startswith(("http://", "https://")):
        mlflow_ui = settings.mlflow_tracking_uri
    return Connection(settings.mlflow_tracking_uri, settings.mlflow_registry_uri, prefect_api, prefect_ui,
                      mlflow_ui)


def _prefect_api_url() -> str | None:
    try:
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None
    except Exception:  # noqa: BLE001 - no Prefect settings: no Prefect panels
        return None


def mlflow_run_url(conn: Connection, experiment_id: str, run_id: str) -> str | None:
    if not conn.mlflow_ui:
        return None
    return f"{conn.mlflow_ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_experiment_url(conn: Connection, experiment_id: str) -> str | None:
    return f"{conn.mlflow_ui.rstrip('/')}/#/experiments/{experiment_id}" if conn.mlflow_ui else None


def mlflow_model_url(conn: Connection, pipeline: str, version: int | None = None) -> str | None:
    """The MLflow UI's page of the pipeline's registered model (or of one of its versions)."""
    if not conn.mlflow_ui:
        return None
    base = f"{conn.mlflow_ui.rstrip('/')}/#/models/{model_name(pipeline)}"
    return f"{base}/versions/{version}" if version else base


def prefect_run_url(conn: Connection, flow_run_id: str | None) -> str | None:
    if not conn.prefect_ui or not flow_run_id:
        return None
    return f"{conn.prefect_ui.rstrip('/')}/runs/flow-run/{flow_run_id}"


# -- MLflow --------------------------------------------------------------------------------


def _client(conn: Connection):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=conn.tracking_uri, registry_uri=conn.registry_uri or conn.tracking_uri)


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def check_mlflow(conn: Connection, timeout: float = 3.0) -> str | None:
    """None when MLflow answers; otherwise a sentence saying what is wrong."""
    uri = conn.tracking_uri
    if uri.startswith(("http://", "https://")):
        import httpx

        try:
            httpx.get(uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
        except Exception as exc:  # noqa: BLE001
            return f"MLflow does not answer at {uri} ({type(exc).__name__}: {exc})"
        return None
    path = _sqlite_path(uri)
    if path is not None and not path.exists():
        return None  # nothing recorded yet: the empty state, not an error
    try:
        _client(conn).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001
        return f"MLflow cannot be read at {uri} ({type(exc).__name__}: {exc})"
    return None


def _no_store(conn: Connection) -> bool:
    path = _sqlite_path(conn.tracking_uri)
    return path is not None and not path.exists()


def list_pipelines(conn: Connection) -> list[dict[str, Any]]:
    """Every pipeline that has an MLflow experiment: name, experiment id, creation time."""
    if _no_store(conn):
        return []
    from mlflow.entities import ViewType

    out = []
    for exp in _client(conn).search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000):
        name = exp.tags.get(PIPELINE_TAG) or (
            exp.name.removeprefix(EXPERIMENT_PREFIX) if exp.name.startswith(EXPERIMENT_PREFIX) else None)
        if not name:
            continue
        out.append({"name": name, "experiment_id": exp.experiment_id,
                    "created": _ts(exp.creation_time)})
    return sorted(out, key=lambda d: d["name"])


def _ts(ms: int | None) -> pd.Timestamp | None:
    return None if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC")


def _to_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def runs_frame(conn: Connection, experiment_id: str, max_results: int = MAX_RUNS) -> pd.DataFrame:
    """Every run of one experiment in one query, oldest first.

    Columns: run_id, run_name, experiment_id, status, start_time, end_time, the ``calmops.*`` tags without
    their prefix, ``param.<name>`` and ``metric.<name>``; ``decision`` as people read it
    (:func:`~calmops.core.names.shown_decision`: a refused file's is ``quarantined``).
    """
    runs = _client(conn).search_runs([experiment_id], max_results=max_results,
                                     order_by=["attributes.start_time DESC"])
    rows = []
    for r in runs:
        row: dict[str, Any] = {"run_id": r.info.run_id, "run_name": r.info.run_name,
                               "experiment_id": r.info.experiment_id, "status": r.info.status,
                               "artifact_uri": r.info.artifact_uri,
                               "start_time": _ts(r.info.start_time), "end_time": _ts(r.info.end_time)}
        for field in TAG_FIELDS:
            row[field] = r.data.tags.get(f"calmops.{field}", "")
        for k, v in r.data.params.items():
            row[f"param.{k}"] = v
        for k, v in r.data.metrics.items():
            row[f"metric.{k}"] = v
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["run_id", "run_name", "experiment_id", "status", "artifact_uri", "start_time",
                                     "end_time", *TAG_FIELDS])
    frame = frame.sort_values("start_time", kind="stable").reset_index(drop=True)
    frame["champion_version"] = frame["champion_version"].map(_to_int).astype("Int64")
    frame["challenger_version"] = frame["challenger_version"].map(_to_int).astype("Int64")
    frame["drift"] = [drift_seen(decision, tag)
                      for decision, tag in zip(frame["decision"], frame["drift_detected"], strict=True)]
    frame["decision"] = frame["decision"].map(shown_decision)
    # a labels file's run is named labels/<name>, as the ledger and the CLI name it: a labels file and a features
    # file may share a name (its calmops.folder tag says which it is; runs logged before were named <name>)
    frame["run_name"] = [entry_name(name.removeprefix(LABELS_ENTRY) if folder == "labels" else name, folder == "labels")
                         for name, folder in zip(frame["run_name"], frame["folder"], strict=True)]
    frame["index"] = range(1, len(frame) + 1)
    return frame


def shown_file(run: Any) -> str:
    """The file of a run (a row of :func:`runs_frame`) as the ledger and the CLI name it: ``labels/<name>`` for a
    labels file; the run's name when it has no file tag."""
    return entry_name(run["file"], run["folder"] == "labels") if run["file"] else run["run_name"]


def training_file(version: dict[str, Any], runs: pd.DataFrame) -> str:
    """The file a model version (of :func:`registry_info`) was trained on, as the ledger names it (``labels/<name>``
    for a labels file): its ``calmops.training`` tag says the folder; a version registered before the tag did is
    named by the folder of the run that registered it (``runs``: :func:`runs_frame`)."""
    training = version.get("training") or {}
    file = training.get("file") or ""
    if not file:
        return ""
    folder = training.get("folder")
    if folder is None and not runs.empty:
        folder = next((f for run_id, f in zip(runs["run_id"], runs["folder"], strict=True)
                       if run_id == version.get("run_id")), None)
    return entry_name(file, folder == "labels")


def drift_seen(decision: str, tag: str) -> bool | None:
    """Whether a run's batch drifted (its ``calmops.drift_detected`` tag), or None when no check was made: a
    decision in :data:`~calmops.core.names.DRIFT_UNCHECKED` (runs recorded before the flows left the tag out
    carry ``false`` there too), or no tag at all.

    >>> drift_seen("no_drift", "false"), drift_seen("train", "false"), drift_seen("failed", "")
    (False, None, None)
    """
    if decision in DRIFT_UNCHECKED or tag not in ("true", "false"):
        return None
    return tag == "true"


def spec_kind(conn: Connection, name: str) -> str | None:
    """The kind a pipeline's spec names, where the viewer runs beside the pipelines: what a pipeline without
    runs is (MLflow knows it from the runs only). None when this host has no such spec. ``conn`` keys the
    cache."""
    try:
        return read_spec(name).kind
    except Exception:  # noqa: BLE001 - no spec here (another host, deleted, unreadable): the kind is unknown
        return None


def bad_input_fails(conn: Connection, name: str) -> bool:
    """Whether the pipeline's breaker counts a quarantined file as a failure (``breaker.count_bad_input``), where
    the viewer runs beside the pipelines; False when this host has no such spec (the default). ``conn`` keys the
    cache."""
    try:
        return read_spec(name).breaker.count_bad_input
    except Exception:  # noqa: BLE001 - no spec here: the default
        return False


def registry_info(conn: Connection, name: str) -> dict[str, Any]:
    """The registered model: aliases and every version with its scores, training info and reason."""
    from mlflow.exceptions import MlflowException

    client = _client(conn)
    name = model_name(name)
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return {"exists": False, "aliases": {}, "versions": []}
    aliases = {alias: int(v) for alias, v in (model.aliases or {}).items()}  # int from SQLite, str over REST
    by_version: dict[int, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(v, []).append(alias)
    versions = []
    for mv in client.search_model_versions(f"name='{name}'", max_results=1000):
        v = int(mv.version)
        versions.append({
            "version": v, "created": _ts(mv.creation_timestamp), "run_id": mv.run_id,
            "reference_uri": f"runs:/{mv.run_id}/{reference_path(mv.tags)}" if mv.run_id else None,
            "description": mv.description or "", "aliases": sorted(by_version.get(v, [])),
            "scores": _json(mv.tags.get("calmops.scores")), "training": _json(mv.tags.get("calmops.training")),
            "rolled_back": mv.tags.get("calmops.rolled_back") == "true",
            "champion_since": _ts(_to_int(mv.tags.get(CHAMPION_SINCE_TAG))),
        })
    versions.sort(key=lambda d: d["version"])
    return {"exists": True, "aliases": aliases, "versions": versions,
            "description": model.description or ""}


ALIASES = ("champion", "challenger", "previous")  # the registered model's aliases, in the viewer's order


def registration_scores(reg: dict[str, Any]) -> pd.DataFrame:
    """The scores each aliased version logged at registration (:func:`registry_info`'s ``reg``): model
    (``<alias> v<N>``), metric, value, the models in :data:`ALIASES` order."""
    by_version = {v["version"]: v for v in reg["versions"]}
    rows = [{"model": f"{alias} v{version}", "metric": metric, "value": value}
            for alias in ALIASES if (version := reg["aliases"].get(alias)) is not None
            for metric, value in (by_version.get(version, {}).get("scores") or {}).items()
            if isinstance(value, (int, float))]
    return pd.DataFrame(rows, columns=["model", "metric", "value"]).drop_duplicates(["model", "metric"])


def scores_table(scores: pd.DataFrame) -> pd.DataFrame:
    """:func:`registration_scores` as metric × model, the models in their order there (a pivot sorts them by
    name)."""
    table = scores.pivot(index="metric", columns="model", values="value")
    return table[scores["model"].unique()].reset_index()


def _json(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _download(conn: Connection, artifact_uri: str, path: str, dst: str) -> Path | None:
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a server log, not a terminal
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{artifact_uri.rstrip('/')}/{path}",
                                                        dst_path=dst, tracking_uri=conn.tracking_uri))
    except Exception:  # noqa: BLE001 - an artifact a run does not have (yet)
        return None


def _fetch_text(conn: Connection, artifact_uri: str, path: str) -> str | None:
    if artifact_uri.startswith("mlflow-artifacts:") and conn.tracking_uri.startswith(("http://", "https://")):
        return _fetch_proxied(conn, artifact_uri, path)
    if artifact_uri.startswith("file:"):  # the local stack's artifacts are plain files: read them in place
        from urllib.parse import unquote, urlparse

        local = Path(unquote(urlparse(artifact_uri).path)) / path
        try:
            return local.read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(conn, artifact_uri, path, tmp)
        return local.read_text() if local is not None and local.is_file() else None


def _fetch_proxied(conn: Connection, artifact_uri: str, path: str) -> str | None:
    """One GET on the MLflow server's artifact proxy (``/api/2.0/mlflow-artifacts/artifacts/<path>``), where
    the generic download would first list the path to learn whether it is a folder."""
    from urllib.parse import urlparse

    import httpx

    location = urlparse(artifact_uri).path.strip("/")
    url = f"{conn.tracking_uri.rstrip('/')}/api/2.0/mlflow-artifacts/artifacts/{location}/{path}"
    try:
        response = _http().get(url)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


@lru_cache(maxsize=1)
def _http():
    """One pooled HTTP client for every artifact fetch (a client per request costs ~0.1 s to set up)."""
    import httpx

    return httpx.Client(timeout=30, limits=httpx.Limits(max_connections=FETCH_WORKERS))


# A run's artifacts are written once, when the run is recorded: a text found once never changes, so it is
# kept for the life of the process (bounded); an absent one is asked again next time.
_FOUND: OrderedDict[tuple[str, str, str], str] = OrderedDict()
_FOUND_MAX = 5000
_FOUND_LOCK = threading.Lock()
FETCH_WORKERS = 8


def artifact_texts(conn: Connection, artifact_uris: Iterable[str], path: str) -> dict[str, str | None]:
    """The text artifact ``path`` of many runs (by their ``artifact_uri``), fetched in parallel.

    Goes straight to the artifact store with the URI ``search_runs`` already returned: no per-run
    ``get_run``. Absent artifacts map to None.
    """
    uris = list(dict.fromkeys(u for u in artifact_uris if u))
    out: dict[str, str | None] = {}
    with _FOUND_LOCK:
        for uri in uris:
            text = _FOUND.get((conn.tracking_uri, uri, path))
            if text is not None:
                out[uri] = text
    missing = [u for u in uris if u not in out]
    if missing:
        with ThreadPoolExecutor(max_workers=min(FETCH_WORKERS, len(missing))) as pool:
            fetched = dict(zip(missing, pool.map(lambda u: _fetch_text(conn, u, path), missing), strict=True))
        with _FOUND_LOCK:
            for uri, text in fetched.items():
                if text is not None:
                    _FOUND[(conn.tracking_uri, uri, path)] = text
            while len(_FOUND) > _FOUND_MAX:
                _FOUND.popitem(last=False)
        out.update(fetched)
    return out


def artifact_text(conn: Connection, artifact_uri: str, path: str) -> str | None:
    """One text artifact of a run (``spec.yaml``, ``outcome.json``…), or None when absent."""
    return artifact_texts(conn, [artifact_uri], path).get(artifact_uri)


def _parse_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def artifacts_json(conn: Connection, artifact_uris: Iterable[str], path: str) -> dict[str, Any]:
    """Like :func:`artifact_texts`, parsed as JSON (None when absent or not JSON)."""
    return {uri: _parse_json(text) for uri, text in artifact_texts(conn, artifact_uris, path).items()}


def artifact_json(conn: Connection, artifact_uri: str, path: str) -> Any:
    return _parse_json(artifact_text(conn, artifact_uri, path))


def forget_artifacts() -> None:
    """Drop the process-wide artifact texts (a cold start, for benchmarks and tests)."""
    with _FOUND_LOCK:
        _FOUND.clear()


def reference_frame(conn: Connection, reference_uri: str, max_rows: int = 50_000) -> pd.DataFrame | None:
    """The training data logged with a model version (``reference.parquet`` in its ``reference_uri``, as
    :func:`registry_info` gives it); Parquet, never a pickle."""
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(conn, reference_uri, "reference.parquet", tmp)
        if local is None or not local.is_file():
            return None
        frame = pd.read_parquet(local)
    return frame if len(frame) <= max_rows else frame.sample(max_rows, random_state=0)


# -- Prefect -------------------------------------------------------------------------------


def check_prefect(conn: Connection, timeout: float = 3.0) -> str | None:
    """None when the Prefect API answers; otherwise a sentence saying what is wrong."""
    if not conn.prefect_api:
        return "no Prefect API configured (start the stack with 'calmops up', or set PREFECT_API_URL)"
    import httpx

    try:
        httpx.get(conn.prefect_api.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except Exception as exc:  # noqa: BLE001
        return f"the Prefect API does not answer at {conn.prefect_api} ({type(exc).__name__})"
    return None


def breaker(conn: Connection, name: str) -> dict[str, Any]:
    """The pipeline's circuit breaker as stored in its Prefect Block (closed when none exists yet)."""
    from calmops.core.breaker import read_breaker

    state = read_breaker(name)
    public = state.to_public()
    public["next_retry_epoch"] = state.next_retry_at
    return public


def flow_runs(conn: Connection, pipeline: str | None = None, limit: int = PAGE) -> pd.DataFrame:
    """CalmOps flow runs (``<kind>/<pipeline>/<file>``), newest first, with their state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    run_filter = FlowRunFilter(name=FlowRunFilterName(like_=f"/{pipeline}/")) if pipeline else None
    flow_filter = FlowFilter(name=FlowFilterName(any_=[k.flow_name for k in KINDS.values()]))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=flow_filter, flow_run_filter=run_filter,
                                     sort=FlowRunSort.START_TIME_DESC, limit=limit)
    rows = []
    for fr in runs:
        parts = (fr.name or "").split("/", 2)
        if pipeline and (len(parts) < 3 or parts[1] != pipeline):
            continue
        rows.append({
            "flow_run_id": str(fr.id), "name": fr.name, "state": fr.state_name or (fr.state.name if fr.state else ""),
            "state_type": str(fr.state_type.value) if fr.state_type else "",
            "start_time": pd.Timestamp(fr.start_time) if fr.start_time else None,
            "duration_s": round(fr.total_run_time.total_seconds(), 2) if fr.total_run_time else None,
            "kind": parts[0] if len(parts) == 3 else "", "pipeline": parts[1] if len(parts) == 3 else "",
            "file": parts[2] if len(parts) == 3 else "",
            "sha256": str((fr.parameters or {}).get("sha256") or ""),  # the content its file event gave
        })
    return pd.DataFrame(rows, columns=["flow_run_id", "name", "state", "state_type", "start_time", "duration_s",
                                       "kind", "pipeline", "file", "sha256"])


def flow_states(runs: pd.DataFrame, flows: pd.DataFrame) -> list[str]:
    """Beside each decided file (a run of :func:`runs_frame`), the state of the flow run that decided it
    (``flows``: :func:`flow_runs`). A file decided in another file's turn (``order: arrival``) was decided by that
    file's flow run, whose state speaks of its own file: it is said as ``in the turn of <file>`` instead."""
    ran = {f: (state, file) for f, state, file in zip(flows["flow_run_id"], flows["state"], flows["file"],
                                                      strict=True)}
    said = []
    for flow_run_id, file, folder in zip(runs["flow_run_id"], runs["file"], runs["folder"], strict=True):
        state, turn = ran.get(flow_run_id, ("", ""))
        own = entry_name(file, folder == "labels")
        said.append(f"in the turn of {turn}" if state and turn and own and turn != own else state)
    return said


def decided_files(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Flow run id → the files its run decided (:func:`runs_frame`'s runs; ledger names), in the order it decided
    them. One file each, but for the run that held the pipeline's turn in ``order: arrival``: it decides every
    file waiting then, each recorded as its own MLflow run under that flow run's id."""
    out: dict[str, list[str]] = {}
    for flow_run_id, file, folder, name in zip(runs["flow_run_id"], runs["file"], runs["folder"], runs["run_name"],
                                               strict=True):
        if flow_run_id:
            out.setdefault(flow_run_id, []).append(entry_name(file, folder == "labels") or name)
    return out


def unrecorded_flow_runs(runs: pd.DataFrame, flows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``flows`` (:func:`flow_runs`) that no MLflow run of ``runs`` (:func:`runs_frame`) names, split in two:
    (without a record: running, crashed before recording, or duplicates; cancelled as *Decided by another run*
    because another run decided their file, which has its MLflow record under that run). A cancelled run counts
    as decided when an MLflow run records its file (the ledger name) and, where both say one, the same SHA-256:
    a file that arrived again with other bytes is not the one decided."""
    if flows.empty:
        return flows, flows
    unrecorded = flows[~flows["flow_run_id"].isin(set(runs["flow_run_id"]))]
    recorded: dict[str, set[str]] = {}
    for file, folder, sha in zip(runs["file"], runs["folder"], runs["sha256"], strict=True):
        recorded.setdefault(entry_name(file, folder == "labels"), set()).add(sha or "")
    shas = unrecorded["sha256"] if "sha256" in unrecorded else pd.Series("", index=unrecorded.index)

    def decided(state: str, file: str, sha: str) -> bool:
        known = recorded.get(file)
        return state == DECIDED_ELSEWHERE and known is not None and (not sha or sha in known or "" in known)

    mask = pd.Series([decided(state, file, sha or "") for state, file, sha in
                      zip(unrecorded["state"], unrecorded["file"], shas, strict=True)], index=unrecorded.index,
                     dtype=bool)
    return unrecorded[~mask], unrecorded[mask]


def flow_run_labels(runs: pd.DataFrame, flows: pd.DataFrame, unrecorded: pd.DataFrame) -> dict[str, str]:
    """Flow run id → how the log picker names it, once per flow run: the recorded ones newest first, then
    ``unrecorded`` (:func:`unrecorded_flow_runs`). A flow run is named after the file its name says, the one
    whose turn it held (the files it decided in that turn follow, when they are more than that one file); a run
    Prefect no longer lists, after the files it decided."""
    files = decided_files(runs)
    turn = {} if flows.empty else dict(zip(flows["flow_run_id"], flows["file"].where(flows["file"] != "", flows["name"]),
                                           strict=True))
    labels: dict[str, str] = {}
    for flow_run_id in reversed(list(files)):  # newest first: runs_frame is oldest first
        mine, own = files[flow_run_id], turn.get(flow_run_id)
        listed = ", ".join(mine[:3]) + (", …" if len(mine) > 3 else "")
        if own and mine == [own]:
            labels[flow_run_id] = own
        elif own:
            labels[flow_run_id] = f"{own} (decided {f'{len(mine)} files: ' if len(mine) > 1 else ''}{listed})"
        else:
            labels[flow_run_id] = listed if len(mine) == 1 else f"{listed} ({len(mine)} files, one flow run)"
    if unrecorded.empty:
        return labels
    for flow_run_id, name, file, state in zip(unrecorded["flow_run_id"], unrecorded["name"], unrecorded["file"],
                                              unrecorded["state"], strict=True):
        labels.setdefault(flow_run_id, f"{file or name} ({state or 'no state'}, no MLflow record)")
    return labels


def flow_run_logs(conn: Connection, flow_run_id: str, limit: int = 1000) -> pd.DataFrame:
    """The log lines of one flow run (and its task runs), oldest first."""
    import logging
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    logs: list = []
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        while len(logs) < limit:  # the API serves at most PAGE lines per call
            page = client.read_logs(log_filter=log_filter, limit=min(PAGE, limit - len(logs)), offset=len(logs),
                                    sort=LogSort.TIMESTAMP_ASC)
            logs.extend(page)
            if len(page) < PAGE:
                break
    return pd.DataFrame(
        [{"time": pd.Timestamp(lg.timestamp), "level": logging.getLevelName(lg.level), "logger": lg.name,
          "message": lg.message} for lg in logs],
        columns=["time", "level", "logger", "message"])


# -- derived views (pure: tested without any service) --------------------------------------


def champion_since(reg: dict[str, Any]) -> pd.Timestamp | None:
    """When the champion of ``reg`` (:func:`registry_info`) became the champion: its last promotion or the
    rollback that served it again; its creation for a version promoted before that was recorded."""
    champion = reg["aliases"].get("champion")
    version = next((v for v in reg["versions"] if v["version"] == champion), None)
    return None if version is None else version.get("champion_since") or version["created"]


def age_text(ts: pd.Timestamp | None, now: float | None = None) -> str:
    if ts is None or pd.isna(ts):
        return "—"
    seconds = max(0.0, (now if now is not None else time.time()) - ts.timestamp())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def health(last_decision: str | None, breaker_state: str | None, drift: bool | None,
           bad_input_fails: bool = False) -> str:
    """One word for the overview: ``down`` / ``failing`` / ``bad input`` / ``drift`` / ``ok`` / ``new``;
    ``last_decision`` as :func:`runs_frame` gives it; ``bad_input_fails``: the breaker counts a quarantined file
    as a failure (``breaker.count_bad_input``), and so does the overview."""
    if breaker_state == "open":
        return "down"
    # a challenger that lost to a working champion is not a failure: the champion serves on (drift or ok)
    if last_decision == Decision.FAILED or breaker_state == "half_open" or \
            (last_decision == QUARANTINED and bad_input_fails):
        return "failing"
    if last_decision == QUARANTINED:  # the file was refused, the pipeline works (the breaker does not count it)
        return "bad input"
    if not last_decision:
        return "new"
    if drift:
        return "drift"
    return "ok"


def feature_table(report: dict | None) -> pd.DataFrame:
    """The per-feature rows of a drift report (docs/drift-report.md), worst first."""
    cols = ["feature", "kind", "test", "statistic", "p_value", "p_adjusted", "effect_size", "threshold", "ratio",
            "drift", "status", "detail"]
    if not report or not report.get("features"):
        return pd.DataFrame(columns=cols)
    frame = pd.DataFrame(report["features"])
    for c in cols:
        if c not in frame:
            frame[c] = None
    frame["ratio"] = [_ratio(e, t) for e, t in zip(frame["effect_size"], frame["threshold"], strict=True)]
    frame = frame.sort_values(["drift", "ratio"], ascending=[False, False], na_position="last", kind="stable")
    return frame[cols].reset_index(drop=True)


def _ratio(effect: Any, threshold: Any) -> float | None:
    try:
        if effect is None or threshold in (None, 0) or pd.isna(effect):
            return None
        return float(effect) / float(threshold)
    except (TypeError, ValueError):
        return None


def drift_matrix(reports: dict[str, dict | None], labels: dict[str, str]) -> pd.DataFrame:
    """Features × runs: the largest effect / minimum effect per feature (≥ 1 means past the threshold).

    ``reports`` maps run id → drift report (None when the run had none); columns follow ``labels``' order.
    A missing column (status ``error``) counts as infinitely bad and is shown as a flag value of 2 × max.
    """
    data: dict[str, dict[str, float]] = {}
    for run_id, label in labels.items():
        report = reports.get(run_id)
        if not report:
            continue
        col: dict[str, float] = {}
        for f in report.get("features") or []:
            r = _ratio(f.get("effect_size"), f.get("threshold"))
            if r is None and f.get("drift"):
                r = float("inf")
            if r is not None:
                col[f["feature"]] = max(col.get(f["feature"], 0.0), r)
        data[label] = col
    frame = pd.DataFrame(data)
    if frame.empty:
        return frame
    finite = frame.replace(float("inf"), float("nan")).max().max()
    cap = 2 * (finite if pd.notna(finite) and finite > 0 else 1.0)
    frame = frame.replace(float("inf"), cap)
    order = frame.max(axis=1).sort_values(ascending=False).index
    return frame.loc[order]


def culprit_ranking(reports: dict[str, dict | None]) -> pd.DataFrame:
    """How often each feature drifted over the given runs, and its worst culprit score."""
    counts: dict[str, int] = {}
    worst: dict[str, float] = {}
    total = 0
    for report in reports.values():
        if not report:
            continue
        total += 1
        for f in report.get("drifted_features") or []:
            counts[f] = counts.get(f, 0) + 1
        for f, score in (report.get("feature_scores") or {}).items():
            s = float("inf") if score is None else float(score)
            worst[f] = max(worst.get(f, 0.0), s)
    rows = [{"feature": f, "times_drifted": counts.get(f, 0), "share_of_runs": counts.get(f, 0) / total if total else 0,
             "worst_score": worst.get(f)} for f in set(counts) | set(worst)]
    frame = pd.DataFrame(rows, columns=["feature", "times_drifted", "share_of_runs", "worst_score"])
    return frame.sort_values(["times_drifted", "worst_score"], ascending=False).reset_index(drop=True)


def multivariate_frame(reports: dict[str, dict | None], labels: dict[str, str]) -> pd.DataFrame:
    rows = []
    for run_id, label in labels.items():
        for m in (reports.get(run_id) or {}).get("multivariate") or []:
            rows.append({"run": label, "method": m.get("method"), "statistic": m.get("statistic"),
                         "p_value": m.get("p_value"), "threshold": m.get("threshold"), "drift": m.get("drift"),
                         "status": m.get("status"), "detail": m.get("detail")})
    return pd.DataFrame(rows, columns=["run", "method", "statistic", "p_value", "threshold", "drift", "status",
                                       "detail"])


def status_text(status: Any) -> str:
    """A detector's status as words: ``{"drift": false, "n": 3}`` → ``drift: no, n: 3``."""
    if status is None:
        return ""
    if isinstance(status, bool):
        return "yes" if status else "no"
    if isinstance(status, dict):
        return ", ".join(f"{k}: {status_text(v)}" for k, v in status.items())
    if isinstance(status, (list, tuple)):
        return ", ".join(status_text(v) for v in status)
    return str(status)


def concept_frame(verdicts: dict[str, DriftVerdict | None], labels: dict[str, str]) -> pd.DataFrame:
    """Concept-drift detectors per run: alarm (0/1), the row of the run's file where it first alarmed (None
    when it did not first alarm in that file) and status."""
    rows = []
    for run_id, label in labels.items():
        concept = getattr(verdicts.get(run_id), "concept", None)
        for name, d in (concept.detectors if concept else {}).items():
            d = d or {}
            rows.append({"run": label, "detector": name, "alarm": int(bool(d.get("alarm"))),
                         "first_alarm_row": d.get("first_alarm_row"),
                         "status": status_text(d.get("status"))})
    return pd.DataFrame(rows, columns=["run", "detector", "alarm", "first_alarm_row", "status"])


DECAY_COLUMNS = (("decay_files", "files"), ("decay_p_value", "p_value"), ("decay_decline", "relative_decline"),
                 ("decay", "alarm"))


def read_verdicts(recorded: dict[str, dict | None]) -> tuple[dict[str, DriftVerdict | None], list[str]]:
    """Each run's recorded ``drift/verdict.json`` read back (None where a run has none), and the runs whose
    record cannot be read (hand-made or damaged): those are left out, not allowed to hide the others."""
    verdicts, unreadable = {}, []
    for run_id, raw in recorded.items():
        try:
            verdicts[run_id] = DriftVerdict.from_dict(raw) if raw else None
        except (KeyError, TypeError, ValueError, AttributeError):
            verdicts[run_id] = None
            unreadable.append(run_id)
    return verdicts, unreadable


def performance_frame(verdicts: dict[str, DriftVerdict | None], labels: dict[str, str]) -> pd.DataFrame:
    """The champion's score per run against its score at promotion, and the decay test over its files. A drop
    beyond the tolerance is drift only when the fall (``at_promotion`` − ``now``, in the metric's units) is beyond
    ``noise_band`` too: what the two estimates' sampling error explains (rates only; blank otherwise)."""
    rows = []
    for run_id, label in labels.items():
        verdict = verdicts.get(run_id)
        perf = verdict.performance if verdict else None
        if perf:
            decay = verdict.decay  # None in a record made before the decay test: blank cells
            rows.append({"run": label, "metric": perf.metric, "now": perf.now, "at_promotion": perf.at_promotion,
                         "relative_drop": perf.relative_drop, "tolerance": perf.tolerance,
                         "noise_band": perf.noise_band, "drift": perf.drift,
                         "threshold_failures": "; ".join(perf.threshold_failures),
                         **{column: getattr(decay, field) if decay else None for column, field in DECAY_COLUMNS}})
    return pd.DataFrame(rows, columns=["run", "metric", "now", "at_promotion", "relative_drop", "tolerance",
                                       "noise_band", "drift",
                                       "threshold_failures", "decay_files", "decay_p_value", "decay_decline",
                                       "decay"])


def metric_names(runs: pd.DataFrame, prefix: str) -> list[str]:
    """Metric names logged as ``<prefix>_<name>`` (e.g. champion_accuracy → accuracy)."""
    head = f"metric.{prefix}_"
    return sorted(c.removeprefix(head) for c in runs.columns if c.startswith(head))


def serving_scores(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Per run, the serving model's ``metric`` on every row of its file: the first of
    :data:`~calmops.core.names.SERVING_SCORE_PREFIXES` the run logged (as ``calmops history`` reads it); NaN
    for a first model (``train``: no model served before it) and for runs that logged none."""
    columns = [c for c in (f"metric.{prefix}{metric}" for prefix in SERVING_SCORE_PREFIXES) if c in runs]
    if not columns:
        return pd.Series(float("nan"), index=runs.index)
    first = runs[columns].bfill(axis=1).iloc[:, 0].astype(float)
    return first.where(runs["decision"].map(had_serving_model))


def primary_metric(spec: dict | None, runs: pd.DataFrame) -> str | None:
    """The metric the pipeline decides on (:func:`~calmops.core.names.decided_metric`, as ``calmops history``
    shows it), else the first one the runs logged."""
    names = metric_names(runs, "champion") or metric_names(runs, "challenger")
    chosen = ((spec or {}).get("evaluation") or {}).get("primary_metric")
    return decided_metric(chosen, names) or (names[0] if names else None)


def thresholds(spec: dict | None) -> dict[str, dict[str, float | None]]:
    out = {}
    for metric, bounds in (((spec or {}).get("evaluation") or {}).get("thresholds") or {}).items():
        if isinstance(bounds, dict):
            out[metric] = {"min": bounds.get("min"), "max": bounds.get("max")}
    return out


def bounds_text(bounds: dict[str, float | None] | None) -> str:
    """A metric's thresholds in words: ``{"min": 0.6, "max": None}`` → ``minimum 0.6``; empty when none is
    set."""
    return ", ".join(f"{word} {bounds[key]}" for key, word in (("min", "minimum"), ("max", "maximum"))
                     if (bounds or {}).get(key) is not None)


def spec_changes(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose spec may differ from the run before: where the ``spec_sha256`` tag changes, and every
    run without the tag. Only these need their ``spec.yaml`` read."""
    sha = runs["spec_sha256"].fillna("") if "spec_sha256" in runs else pd.Series("", index=runs.index)
    return runs[sha.eq("") | sha.ne(sha.shift())]


def spec_history(specs: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    """Distinct consecutive specs from ``(run label, time, spec.yaml text)`` in run order, with unified diffs."""
    import difflib

    out: list[dict[str, Any]] = []
    for label, when, text in specs:
        if text is None or (out and out[-1]["text"] == text):
            continue
        before = out[-1]["text"] if out else ""
        diff = "".join(difflib.unified_diff(before.splitlines(True), text.splitlines(True),
                                            out[-1]["label"] if out else "(none)", label))
        out.append({"label": label, "time": when, "text": text, "diff": diff, "number": len(out) + 1})
    return out


def block_tables(details: dict | None) -> dict[str, Any]:
    """The block kind's per-block results and drift matrix from an outcome's ``details``, as frames."""
    details = details or {}
    out: dict[str, Any] = {}
    blocks = details.get("blocks")
    if isinstance(blocks, dict):
        if all(isinstance(v, dict) for v in blocks.values()):
            out["blocks"] = pd.DataFrame.from_dict({str(k): _flatten(v) for k, v in blocks.items()}, orient="index")
        else:
            out["blocks"] = pd.DataFrame({"value": blocks})
    elif isinstance(blocks, list) and blocks:
        out["blocks"] = pd.DataFrame([_flatten(b) if isinstance(b, dict) else {"value": b} for b in blocks])
    matrix = details.get("drift_matrix")
    frame = matrix_frame(matrix)
    if frame is not None:
        out["drift_matrix"] = frame
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, key + "."))
        elif isinstance(v, list):
            flat[key] = json.dumps(v, default=str) if any(isinstance(x, (dict, list)) for x in v) else ", ".join(map(str, v))
        else:
            flat[key] = v
    return flat


def matrix_frame(matrix: Any) -> pd.DataFrame | None:
    """A square-ish matrix in any of the usual JSON shapes as a labelled numeric frame."""
    if matrix is None:
        return None
    try:
        if isinstance(matrix, dict) and "matrix" in matrix:
            labels = matrix.get("labels") or matrix.get("blocks")
            values = matrix["matrix"]
            cols = matrix.get("columns") or labels
            frame = pd.DataFrame(values, index=labels, columns=cols)
        elif isinstance(matrix, dict):
            frame = pd.DataFrame(matrix).T if all(isinstance(v, dict) for v in matrix.values()) else None
            if frame is None:
                return None
        elif isinstance(matrix, list):
            frame = pd.DataFrame(matrix)
        else:
            return None
    except (ValueError, TypeError):
        return None
    frame.index = frame.index.map(str)
    frame.columns = frame.columns.map(str)
    return frame.apply(pd.to_numeric, errors="coerce")


#: IPIP quantities older runs kept at the top of their details (not under ``ipip``); any other key (blocks,
#: promotion, predictions…) is not IPIP's
IPIP_DETAILS = frozenset({"p", "b", "np", "ensemble_sizes", "n_ensembles", "replaced_share", "n_new_kept",
                          "n_minority"})


def _ipip_name(key: str) -> str:
    """One name per IPIP quantity: the metric ``ipip_p`` and the detail ``ipip.p`` are both ``ipip.p``."""
    return "ipip." + key[len("ipip."):]


def ipip_frame(runs: pd.DataFrame, outcomes: dict[str, dict | None]) -> pd.DataFrame:
    """Per IPIP run: p, b, replaced share, ensemble sizes… each quantity once, as ``ipip.<name>``.

    The flows record each twice (the ``ipip`` details of outcome.json, and ``ipip_<name>`` metrics): the
    dotted spelling is read where a run has it, the underscore one for older runs; metrics before details of
    the same spelling. IPIP quantities an older run kept at the top of its details (:data:`IPIP_DETAILS`)
    come as ``details.<key>``.
    """
    rows = []
    for _, r in runs.iterrows():
        metrics = [(c.removeprefix("metric."), r[c]) for c in runs.columns
                   if c.startswith("metric.ipip") and pd.notna(r[c])]
        details = list(_flatten((outcomes.get(r["run_id"]) or {}).get("details") or {}).items())
        row: dict[str, Any] = {"run": r["run_name"], "decision": r.get("decision")}
        for key, value in sorted(metrics + details, key=lambda kv: not kv[0].startswith("ipip.")):  # stable
            if key.startswith(("ipip.", "ipip_")):
                row.setdefault(_ipip_name(key), value)
            elif key.split(".")[0] in IPIP_DETAILS:
                row.setdefault(f"details.{key}", value)
        rows.append(row)
    return pd.DataFrame(rows)


def now_utc() -> datetime:
    return datetime.now(UTC)
