"""The prediction API (docs/api.md): the current champion of every pipeline over HTTP JSON.

``create_app()`` builds a FastAPI application:

- ``GET /health``: the API answers and the MLflow registry is reachable (never behind the token).
- ``GET /``: a small index (links to /docs, /openapi.json, /health, /pipelines); ``/docs`` is Swagger UI served
  from assets shipped in the package (no CDN). The index, ``/openapi.json`` and the docs pages (``/docs``,
  ``/docs/oauth2-redirect``, ``/redoc``, their assets under ``/static-offline-docs/``) never need the token either:
  they show nothing the schema does not.
- ``GET /pipelines``: every pipeline with its kind, champion version, task and input columns.
- ``GET /pipelines/{name}``: one pipeline's input schema (columns, dtypes, feature types, classes).
- ``POST /pipelines/{name}/predict``: ``{"records": [{column: value, ...}, ...]}`` in, predictions out,
  with the model version that made them.

Every request re-reads the ``champion`` alias (one registry call, whose answer also carries the version's
run and tags) and loads that version through :mod:`calmops.core.registry`, whose cache is keyed by
version: a promotion is picked up by the next request without a restart, and an unchanged champion costs
no reload. While the registry does not answer, the champion last loaded for the pipeline answers, with a
warning. Models come only from the MLflow registry; nothing from the data folders is ever unpickled. Input records get the same type
coercion as files (:func:`calmops.core.features.coerce_features`), and anything the model cannot take
is refused with a 422 that names the field (``records[3].x2``) and the value.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import time
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, Path, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from calmops.core.errors import listed
from calmops.core.spec import NAME_PATTERN
from calmops.deployments.quickhttp import LOOPBACK

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 10_000_000
DEFAULT_MAX_RECORDS = 100_000
MAX_ERRORS_LISTED = 50
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: what a token may hold: visible ASCII, which every HTTP client sends in a header as it is
TOKEN_PATTERN = re.compile(r"^[\x21-\x7e]+$")
#: the Authorization schemes a 401 names (any other first word may be the secret itself, sent without a scheme)
KNOWN_SCHEMES = ("basic", "digest", "token", "negotiate", "ntlm", "hoba", "mutual", "aws4-hmac-sha256")

# -- wire models (they are the OpenAPI schema) -------------------------------------------------


def _json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words: 'an array', 'an object', 'a string', 'a number'…"""
    if isinstance(value, bool):
        return "a boolean"
    return {list: "an array", dict: "an object", str: "a string", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ValueError(f"expected a single value (string, number, boolean or null), got {_json_kind(value)}")


Scalar = Annotated[
    Any,
    PlainValidator(_scalar),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}),
]
Label = str | int | float | bool | None
NameParam = Annotated[str, Path(pattern=NAME_PATTERN, description="The pipeline's name.", examples=["sea"])]


class PredictRequest(BaseModel):
    """Rows to score: one object per row, keyed by the champion's input column names."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"records": [{"x1": 1.5, "x2": 7.2, "x3": 3.0},
                                                     {"x1": 9.1, "x2": 2.4, "x3": 5.5}]}]},
    )
    records: list[dict[str, Scalar]] = Field(
        min_length=1,
        description="Rows to score. Every input column of the champion must be present (null means missing "
                    "and is imputed like a missing cell in a file); fields the model does not use are ignored "
                    "and listed in `warnings`.",
    )


class PredictResponse(BaseModel):
    pipeline: str
    model_version: int = Field(description="The registered model version (the champion) that made these predictions.")
    predictions: list[Label] = Field(description="One prediction per record, in the order of the records.")
    probabilities: list[dict[str, float | None]] | None = Field(
        description="Per record, the probability of each class (classifiers only; null otherwise).")
    warnings: list[str] = Field(default_factory=list, description="Non-fatal remarks, e.g. ignored fields.")


class ColumnInfo(BaseModel):
    name: str
    dtype: str | None = Field(description="The column's dtype kind in the training data.")
    feature_type: Literal["numeric", "categorical", "boolean", "datetime"]


class PauseInfo(BaseModel):
    since: str = Field(description="When the pipeline was paused (ISO 8601, UTC; '?' when its pause file does "
                                   "not read).")
    reason: str = Field(description="Why, as given to 'calmops pause --reason' (empty when none was given).")


PausedField = Field(default=None, description="Set while the pipeline is paused ('calmops pause'): its files wait "
                                              "in its incoming folder, undecided, until 'calmops resume'; the "
                                              "champion goes on answering predictions.")


class PipelineSummary(BaseModel):
    name: str
    kind: str | None = None
    champion_version: int | None = None
    task: str | None = None
    input_columns: list[str] | None = None
    paused: PauseInfo | None = PausedField
    problem: str | None = Field(default=None, description="Why part of this entry could not be read, if so.")


class PipelineList(BaseModel):
    pipelines: list[PipelineSummary]


class PipelineDetail(BaseModel):
    name: str
    kind: str
    prediction_only: bool
    target: str | None
    champion_version: int | None
    task: str | None = None
    classes: list[Label] | None = None
    columns: list[ColumnInfo] | None = Field(
        default=None, description="The input columns a record must carry (null until a champion exists).")
    example_request: dict[str, Any] | None = Field(
        default=None, description="A request body with the right columns, to start from.")
    paused: PauseInfo | None = PausedField
    message: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    mlflow_reachable: bool
    detail: str | None = None


class ErrorOut(BaseModel):
    detail: str
    hint: str | None = None


class NotFoundOut(ErrorOut):
    known_pipelines: list[str] = Field(default_factory=list)


class FieldError(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `records[3].x2`.")
    message: str
    value: Scalar = None


class ValidationOut(BaseModel):
    detail: str
    errors: list[FieldError]


# -- errors ------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, detail: str, hint: str | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.detail, self.hint, self.extra = status, detail, hint, extra

    def response(self) -> JSONResponse:
        body = {"detail": self.detail, "hint": self.hint, **self.extra}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


class InvalidInput(ApiError):
    def __init__(self, errors: list[tuple[str, str, Any]], total: int | None = None):
        total = len(errors) if total is None else total
        shown = errors[:MAX_ERRORS_LISTED]
        summary = "; ".join(f"{f}: {m}" for f, m, _ in shown[:5])
        if total > 5:
            summary += f" (and {total - 5} more)"
        super().__init__(422, summary)
        self.errors = shown

    def response(self) -> JSONResponse:
        body = {"detail": self.detail,
                "errors": [{"field": f, "message": m, "value": _short(v)} for f, m, v in self.errors]}
        return JSONResponse(body, status_code=422)


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 100:
        return value[:97] + "..."
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return _short(repr(value))


def _echoed(value: Any) -> Any:
    """A refused value as the error repeats it: a scalar as it came, an array or object as its JSON text
    (shortened), so the user sees what was sent where a scalar was expected."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return _short(value)
    try:
        import json

        return _short(json.dumps(value, default=str))
    except (TypeError, ValueError, RecursionError):  # a value nested too deep for JSON is shown as Python's repr
        return f"(a {type(value).__name__} nested too deep to show)"


def _field(loc: tuple | list) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "path", "query", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _IDENTIFIER.match(str(p)):
            out += f".{p}" if out else str(p)
        else:
            out += f"[{str(p)!r}]"
    return out or "body"


def _validation_errors(exc: RequestValidationError) -> list[tuple[str, str, Any]]:
    errors = []
    for e in exc.errors():
        loc, kind = tuple(e.get("loc", ())), e.get("type", "")
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        value = e.get("input")
        if kind == "json_invalid":
            loc, msg = ("body",), f"invalid JSON ({e.get('ctx', {}).get('error', 'cannot parse')})"
            value = None
        elif loc == ("body",) and kind in ("model_attributes_type", "dict_type", "missing"):
            msg = 'expected a JSON object {"records": [...]} sent with Content-Type: application/json'
            value = None
        elif kind == "missing":
            msg = "field required"
            value = None
        elif kind == "list_type" and loc == ("body", "records"):
            msg = f"expected an array of records (a JSON object per row), got {_json_kind(value)}"
        elif kind == "dict_type" and loc[:2] == ("body", "records"):
            msg = f"expected a record (a JSON object of column: value), got {_json_kind(value)}"
        elif kind == "extra_forbidden":
            msg = "unknown field (the body holds only `records`)"
        elif kind == "too_short" and loc == ("body", "records"):
            msg = "expected at least one record (an empty array has nothing to predict)"
        elif kind == "string_pattern_mismatch" and loc == ("path", "name"):
            msg = ("not a pipeline name: lowercase letters, digits and '-', starting with a letter, at most 63 "
                   "characters (GET /pipelines lists the names)")
        errors.append((_field(loc), msg, _echoed(value)))
    return errors


# -- request size ----------------------------------------------------------------------------


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413: from Content-Length, then by counting."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = None
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                length = value.decode("latin-1").strip()
        if length is not None:
            if not length.isdigit():
                return await self._refuse(send, 400, "invalid Content-Length header")
            if int(length) > self.max_bytes:
                return await self._too_large(send, int(length))
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_bytes:
                return await self._too_large(send, None)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_large(self, send, length: int | None):
        size = f"{length} bytes" if length is not None else "the body"
        return await self._refuse(
            send, 413, f"request too large: {size} is over the limit of {self.max_bytes} bytes",
            "split the records into smaller requests")

    @staticmethod
    async def _refuse(send, status: int, detail: str, hint: str | None = None):
        import json

        # written as every other answer's body (Starlette's JSONResponse)
        payload = json.dumps({"detail": detail, "hint": hint}, ensure_ascii=False, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


# -- champion and pipelines ------------------------------------------------------------------


def _known() -> list[str]:
    from calmops.core.store import list_pipelines

    return list_pipelines()


def _spec(name: str):
    """The pipeline's spec; a 404 when there is no such pipeline, a 503 when its spec.yaml cannot be read (the
    message, as SpecError gives it, names the file and what is wrong)."""
    from calmops.core.spec import SpecError
    from calmops.core.store import PipelineNotFound, read_spec

    try:
        return read_spec(name)
    except PipelineNotFound:
        known = _known()
        raise ApiError(404, f"no pipeline named {name!r} (known: {', '.join(known) or 'none yet'})",
                       "GET /pipelines lists them", known_pipelines=known) from None
    except SpecError as exc:
        raise ApiError(503, f"pipeline {name!r} cannot serve: its spec cannot be read: {_first_line(exc)}",
                       f"fix the spec file, or replace it with 'calmops update {name} SPEC.yaml' (its earlier "
                       f"versions are in its spec_history folder); 'calmops status {name}' shows the "
                       "problem") from None


#: seconds the API serves the last champion it loaded without asking the registry again, once the registry
#: failed to answer (each question would wait for the MLflow client's retries, seconds, before failing again)
REGISTRY_RETRY_SECONDS = 10.0


class _Served:
    """The last champion each pipeline served, for when the registry cannot be asked (see :func:`_champion`)."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        self.registry_down: tuple[float, str] | None = None  # (until, why)

    def down(self, problem: str) -> None:
        self.registry_down = (time.monotonic() + REGISTRY_RETRY_SECONDS, problem)

    def unavailable(self, name: str, problem: str) -> tuple[Any, str]:
        """The registry cannot be asked (``problem``): the last champion ``name`` served and the warning that
        says so, or the 503 when this server has served none."""
        champion = self.last.get(name)
        if champion is None:
            raise ApiError(503, f"the model registry is unavailable: {problem}", "check GET /health")
        log.warning("serving %s v%s as last loaded: the model registry is unavailable (%s)", name,
                    champion.version, problem)
        return champion, (f"the model registry is unavailable ({problem}): served champion v{champion.version}, "
                          "the last one this server loaded; a promotion made meanwhile is served once the registry "
                          "answers again")


def _pause(name: str) -> PauseInfo | None:
    """The pipeline's pause, for clients: one whose file does not read is a pause all the same, said without the
    server's paths ('calmops status NAME' on the server says where)."""
    from calmops.core.pause import paused

    pause = paused(name)
    if pause is None:
        return None
    if pause.since == "?":
        return PauseInfo(since="?", reason=f"its pause file does not read ('calmops status {name}' on the server "
                                           "says why)")
    return PauseInfo(since=pause.since, reason=pause.reason)


def _champion(name: str, served: _Served) -> tuple[Any, str | None]:
    """The current champion, and a warning when it is the last one loaded because the registry cannot be asked.

    The alias is re-read on every call (one registry call, which also answers the version's run and tags), the
    load is cached per version. When the registry does not answer, the champion this server last loaded for the
    pipeline is served, with a warning, and the registry is not asked again for ``REGISTRY_RETRY_SECONDS``
    (a pipeline this server has not served yet gets the 503 at once meanwhile): predictions do not stop while
    MLflow restarts."""
    from calmops.core import registry

    down = served.registry_down
    if down and time.monotonic() < down[0]:  # asked moments ago: not again, each ask waits for retries
        return served.unavailable(name, down[1])
    try:
        mv = registry.alias_model_version(name, registry.CHAMPION)
        # alias_model_version() also answers None when the registry cannot be reached: tell the two apart
        problem = _registry_problem() if mv is None else None
    except Exception as exc:  # noqa: BLE001 - the registry being down is a 503, not a crash
        # said for every pipeline while it lasts: the probe's words, not this request's URL (it names the model)
        problem = _registry_problem() or _first_line(exc)
    if problem:
        served.down(problem)
        return served.unavailable(name, problem)
    if mv is None:
        served.last.pop(name, None)
        raise ApiError(409, f"pipeline {name!r} has no champion yet: train it first",
                       f"drop a labelled file into its incoming folder or run 'calmops run {name} FILE'")
    served.registry_down = None
    version = int(mv.version)
    try:
        champion = registry.load_version(name, version, mv)
    except registry.UntrustedModel as exc:  # refused by CalmOps' own checks: say why, nothing else happened
        log.warning("%s", exc)
        # whole: a refusal names the file's path and says what to do, longer than most first lines
        raise ApiError(503, _first_line(exc, limit=1000), "CalmOps loads only the versions it registered "
                       "(docs/security.md); "
                       "retrain the pipeline or point the champion alias at such a version") from None
    except Exception as exc:
        log.exception("loading %s v%s failed", name, version)
        raise ApiError(503, f"champion v{version} of {name!r} could not be loaded: {_first_line(exc)}",
                       "check GET /health and the MLflow registry") from None
    served.last[name] = champion
    return champion, None


def _registry_problem(timeout: float = 2.0) -> str | None:
    """Why the registry cannot be reached, or None. An MLflow server is asked its own ``/health``, then for one
    registered model (its ``/health`` answers without its database: a server whose database is down says ok
    there), each once within ``timeout`` (the client's retries would make a probe wait seconds on a server that
    refuses); a local store is read."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        try:
            from mlflow import MlflowClient

            MlflowClient().search_registered_models(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            return _first_line(exc, asked_mlflow=True)
        return None
    from urllib.parse import urlsplit

    import httpx

    token, user = os.environ.get("MLFLOW_TRACKING_TOKEN"), os.environ.get("MLFLOW_TRACKING_USERNAME")
    # the credentials the MLflow client would send (its /health needs none, its registry may)
    auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # a server on loopback is asked directly, never through a proxy the environment names
    with httpx.Client(timeout=timeout, trust_env=urlsplit(uri).hostname not in LOOPBACK, auth=auth,
                      headers=headers) as http:
        for path, what in (("/health", ""),
                           ("/api/2.0/mlflow/registered-models/search?max_results=1", " to a registry query")):
            try:
                answer = http.get(uri.rstrip("/") + path)
            except httpx.TimeoutException:
                return f"the MLflow server at {uri} does not answer{what} (timed out after {timeout:g} s)"
            except httpx.HTTPError as exc:  # a refused connection is said as a flow run and a command say it
                return _first_line(exc, asked_mlflow=True)
            if answer.status_code in (401, 403) and what:  # it answers: credentials are the MLflow client's to
                return None  # send (a credentials file, a TLS setting), not an outage
            if answer.status_code != 200:
                said = _server_message(answer)
                return f"the MLflow server at {uri} answers {answer.status_code}{what}" + (f": {said}" if said else "")
    return None


def _server_message(answer) -> str:
    """The first line of an MLflow server's error (its JSON ``message``, else its text), cut to 200 characters."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    text = str(body.get("message") or "") if isinstance(body, dict) else answer.text
    return (text.strip().splitlines() or [""])[0][:200]


def _first_line(exc: BaseException, limit: int = 300, asked_mlflow: bool = False) -> str:
    """The first line of an error, at most ``limit`` characters, shortened at a word with an ellipsis; a tracking
    server that does not answer is said so plainly, with its address (the client's own message buries it at the
    end): an MLflow client's error, or with ``asked_mlflow`` any client's that asked the tracking server (a model's
    own failure or an artifact store's timeout is not the tracking server's)."""
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    line = text[0]
    from calmops.core.registry import unreachable  # imported by create_app already

    if said := unreachable(exc, asked_mlflow=asked_mlflow):  # in the words a flow run and a command use
        return str(said)
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0].rstrip(" ,:;(") + " …"


def _columns(schema) -> list[ColumnInfo]:
    return [ColumnInfo(name=c, dtype=schema.dtypes.get(c), feature_type=schema.feature_types.get(c, "numeric"))
            for c in schema.columns]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def _typical_record(schema, profile, model: Any = None) -> dict[str, Any]:
    """A record to start from, of values the champion was trained on: each number's median (3 significant
    digits), each category's most frequent value, each date-time's median; for a block champion's block column
    (which its profile does not hold), the first block with a model of its own; a plain value of the column's
    type where the champion's reference profile does not hold the column."""
    from calmops.detectors.categorical import OTHER

    out: dict[str, Any] = {}
    for col in schema.columns:
        kind = schema.feature_types.get(col, "numeric")
        numeric, categorical = profile.numeric.get(col), profile.categorical.get(col)
        if numeric is not None and numeric.sorted_values.size:
            median = float(np.median(numeric.sorted_values))
            out[col] = (pd.Timestamp(median, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
                        if kind == "datetime" else float(f"{median:.3g}"))
        elif categorical is not None and (top := next((c for c in categorical.categories if c != OTHER), None)):
            out[col] = top == "True" if kind == "boolean" else top  # most frequent first
        else:
            out[col] = {"numeric": 0.0, "boolean": True, "datetime": "2024-01-01T00:00:00Z"}.get(kind, "")
    blocks = list(getattr(model, "block_estimators_", None) or [])
    if blocks and getattr(model, "block_column", None) in out:  # not a block the model never saw (its route
        out[model.block_column] = _plain(blocks[0])  # for unseen blocks)
    return out


# -- input validation ------------------------------------------------------------------------


def _where(i: int, col: str) -> str:
    return f"records[{i}].{col}" if _IDENTIFIER.match(col) else f"records[{i}][{col!r}]"


def _unreadable(parsed: pd.Series, raw: pd.Series) -> np.ndarray:
    """Positions where ``raw`` holds a value (not null, not blank) that ``parsed`` could not read."""
    candidates = np.flatnonzero(parsed.isna().to_numpy() & raw.notna().to_numpy())
    return np.array([i for i in candidates if str(raw.iloc[i]).strip() != ""], dtype=int)


_NUMERAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # a decimal number as text, as files write them
_BEYOND_FLOAT = "a number beyond ±1.8e308"  # no float holds it (a file's cell: "too large for a float")


def _not_finite(value: Any) -> tuple[str, str] | None:
    """How a numeric field's value that is no finite number is said, and the value as sent (as JSON wrote it):
    NaN, ±Infinity (JSON reads a number beyond a float, e.g. ``1e400``, as infinity too), an integer too long for
    a float, and the same as text (``"NaN"``, ``"-Infinity"``, ``"1e400"``); None for any other value."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return _BEYOND_FLOAT, str(value)[:40] + "..."
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN", "NaN"
        shown = "Infinity" if value > 0 else "-Infinity"
        return (f"{shown} (or {_BEYOND_FLOAT})", shown) if math.isinf(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if math.isnan(number) or value.strip().lstrip("+-").lower() in ("inf", "infinity"):
            return repr(value), value
        beyond = math.isinf(number) and _NUMERAL.fullmatch(value.strip())  # what a file's cell reads as a number
        return (f"{value!r}, {_BEYOND_FLOAT}", value) if beyond else None
    return None


def prepare_records(records: list[dict[str, Any]], schema, profile=None, model=None) -> tuple[pd.DataFrame, list[str]]:
    """Records → the model's input frame, coerced exactly like a file's rows; raises InvalidInput. A category
    that is blank, or written as a CSV file writes a missing cell ("NA", "NULL", …), is missing, as in a file,
    unless the champion (its ``model``'s encoder, or its reference ``profile``) learnt that text as a category of
    the column (a Parquet file keeps it as it is); a block pipeline's block column keeps its text."""
    from calmops.core.features import CoercionError, coerce_features
    from calmops.tasks.ingest import MISSING_MARKERS

    columns = list(schema.columns)
    types = {c: schema.feature_types.get(c, "numeric") for c in columns}
    wanted = set(columns)
    errors: list[tuple[int, int, str, str, Any]] = []
    extras: dict[str, int] = {}
    for i, record in enumerate(records):
        for j, col in enumerate(columns):
            if col not in record:
                errors.append((i, j, _where(i, col), "field required", None))
        for key in record:
            if key not in wanted:
                extras[key] = extras.get(key, 0) + 1
    raw = pd.DataFrame({c: pd.Series([r.get(c) for r in records], dtype=object) for c in columns})
    read_as_missing: list[str] = []  # fields whose text a file would read as a missing cell
    nan_as_missing: list[str] = []  # categorical fields sent as JSON NaN

    for j, col in enumerate(columns):
        s, kind = raw[col], types[col]
        if kind == "numeric":
            values = s.tolist()
            for i, v in enumerate(values):
                if not_finite := _not_finite(v):  # NaN, ±Infinity, beyond a float: never a value; null is missing
                    errors.append((i, j, _where(i, col), (f"expected a finite number, got {not_finite[0]} (send "
                                   "null for a missing value)"), not_finite[1]))
                    values[i] = None
            s = pd.Series(values, dtype=object)
            num = pd.to_numeric(s, errors="coerce")
            for i in _unreadable(num, s):
                errors.append((i, j, _where(i, col), f"expected a number, got {s.iloc[i]!r}", s.iloc[i]))
            for i in np.flatnonzero(np.isinf(num.to_numpy(dtype=float, na_value=np.nan))):  # none _not_finite saw
                errors.append((i, j, _where(i, col), (f"expected a finite number, got {s.iloc[i]!r} (send null for a "
                               "missing value)"), s.iloc[i]))
            raw[col] = num  # already read as numbers: coerce_features keeps them as they are
        elif kind == "datetime":
            for i, v in enumerate(s):
                if v is not None and not isinstance(v, str):
                    errors.append((i, j, _where(i, col), f"expected a date-time string, got {v!r}", v))
        elif kind == "categorical":
            for i, v in enumerate(s):
                if isinstance(v, float) and math.isnan(v):  # JSON NaN is no category: missing, as null, and said
                    raw.at[i, col] = None
                    nan_as_missing.append(_where(i, col))
            if col == getattr(model, "block_column", None):  # a block's name is its own text
                continue
            known = None
            for i, v in enumerate(s):
                if not isinstance(v, str):
                    continue
                if not v.strip():  # blank, as an empty cell of a file
                    raw.at[i, col] = None
                elif v in MISSING_MARKERS:
                    known = _learnt_categories(model, profile, col) if known is None else known
                    if v not in known:
                        raw.at[i, col] = None
                        read_as_missing.append(_where(i, col))
    if errors:
        raise _invalid(errors)

    try:
        X = coerce_features(raw, types)
    except (CoercionError, ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput([("records", str(exc), None)]) from None
    for j, col in enumerate(columns):
        if types[col] in ("boolean", "datetime"):
            expected = "true or false" if types[col] == "boolean" else "a date-time such as 2024-01-31T12:00:00Z"
            for i in _unreadable(X[col], raw[col]):
                v = raw[col].iloc[i]
                errors.append((i, j, _where(i, col), f"expected {expected}, got {v!r}", v))
    if errors:
        raise _invalid(errors)

    warnings = []
    if read_as_missing:
        warnings.append(f"read as missing values, as a file's cells: {listed(read_as_missing)} (a text such as "
                        "'NA' or 'NULL' that the model never saw as a category; send null for a missing value)")
    if nan_as_missing:
        warnings.append(f"JSON NaN read as a missing value: {listed(nan_as_missing)} (send null for a missing value)")
    if extras:
        warnings.append("ignored field(s) the model does not use: "
                        + listed([f"{k} ({n} record{'s' if n > 1 else ''})" for k, n in extras.items()]))
    return X[columns], warnings


def _learnt_categories(model, profile, col: str) -> set[str]:
    """The texts the champion knows as categories of ``col``: its reference profile's (the most frequent ten
    thousand), and its column encoder's when the model is CalmOps' own preprocessing pipeline."""
    learnt = profile.categorical.get(col) if profile is not None else None
    known = set(learnt.known) if learnt is not None else set()
    features = getattr(model, "named_steps", {}).get("features")
    for _, transformer, columns in getattr(features, "transformers_", []):
        encoder = getattr(transformer, "named_steps", {}).get("encode")
        if encoder is not None and col in list(columns) and hasattr(encoder, "categories_"):
            known.update(map(str, encoder.categories_[list(columns).index(col)]))
    return known


def _invalid(errors: list[tuple[int, int, str, str, Any]]) -> InvalidInput:
    errors.sort(key=lambda e: (e[0], e[1]))
    return InvalidInput([(f, m, v) for _, _, f, m, v in errors])


def predict_records(champion, records: list[dict[str, Any]]) -> tuple[list, list | None, list[str]]:
    from calmops.tasks.predict import predictions_frame

    X, warnings = prepare_records(records, champion.schema, champion.profile, champion.model)
    try:
        frame = predictions_frame(champion.model, X, champion.version)
    except Exception as exc:
        log.exception("prediction with %s v%s failed", champion.name, champion.version)
        raise ApiError(500, f"model v{champion.version} failed to predict: {_first_line(exc)}") from None
    predictions = [_plain(v) for v in frame["prediction"].tolist()]
    proba_cols = [c for c in frame.columns if c.startswith("proba_")]
    probabilities = None
    if proba_cols:
        labels = [c.removeprefix("proba_") for c in proba_cols]
        values = frame[proba_cols].to_numpy(dtype=float)
        rows = values.tolist()  # Python floats at once: one numpy scalar at a time took seconds on 100,000 records
        if not np.isfinite(values).all():  # a probability that is no number is null, as JSON has no NaN
            rows = [[p if math.isfinite(p) else None for p in row] for row in rows]
        probabilities = [dict(zip(labels, row, strict=True)) for row in rows]
    return predictions, probabilities, warnings


# -- the application -------------------------------------------------------------------------


def create_app(token: str | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
               max_records: int = DEFAULT_MAX_RECORDS) -> FastAPI:
    """The prediction API. ``token``: require ``Authorization: Bearer <token>`` on every route but
    ``/``, ``/health``, ``/openapi.json`` and the docs pages with their assets (docs/api.md, "Auth")."""
    from calmops.core import registry

    registry.configure()
    _import_prediction_code()
    _quiet_parallel_race()
    token = token or None
    if token and not TOKEN_PATTERN.match(token):
        raise ValueError("the API token holds a space, a control character or a letter outside ASCII, which HTTP "
                         "clients do not send in a header as it is, so no request could match it; use visible ASCII "
                         "only, e.g. the output of 'openssl rand -hex 24'")
    from fastapi_offline import FastAPIOffline

    # the docs page loads Swagger UI from assets shipped in the package, not from a CDN (works offline)
    app = FastAPIOffline(
        title="CalmOps prediction API",
        version=_version(),
        description=(
            "Predictions from the current champion of each CalmOps pipeline. A promotion is served from the "
            "next request on, without a restart; every response names the model version used. "
            f"Limits: {max_request_bytes} bytes per request body (413 over it), {max_records} records "
            "per request (413 over it)."
            + (" All routes except /, /health, /openapi.json and the docs pages (/docs, /redoc and their "
               "assets) need `Authorization: Bearer <token>`." if token else "")
        ),
    )
    app.state.max_records = max_records
    served = _Served()  # the last champion of each pipeline, served while the registry does not answer
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return exc.response()

    def token_problem(request: Request) -> ApiError | None:
        """Why the request's Authorization header does not carry the token (None when it does)."""
        scheme, _, given = (request.headers.get("authorization") or "").strip().partition(" ")
        if not scheme:
            return ApiError(401, "missing bearer token", "send the header 'Authorization: Bearer <token>'")
        if scheme.lower() != "bearer":
            named = scheme if given and scheme.lower() in KNOWN_SCHEMES else None  # else it may be the token
            return ApiError(401, f"the Authorization header holds {f'a {named} credential' if named else 'no scheme'}"
                                 ", not a bearer token", "send the header 'Authorization: Bearer <token>'")
        if not secrets.compare_digest(given.strip().encode("latin-1", "replace"), token.encode("ascii")):
            return ApiError(401, "invalid bearer token", "send the token the API was started with")
        return None

    def unauthorized(request: Request) -> JSONResponse | None:
        """The 401 a protected route answers before saying anything about the request's body or parameters."""
        problem = token and request.url.path.startswith("/pipelines") and token_problem(request)
        return problem.response() if problem else None

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # bytes that are not UTF-8, or arrays nested thousands deep: the same answer as any unreadable body
            return unauthorized(request) or InvalidInput(
                [("body", ("could not be parsed as JSON (not UTF-8 text, or nested too deep; records are a list of "
                          "flat objects)"), None)]).response()
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError):
        return unauthorized(request) or InvalidInput(_validation_errors(exc)).response()

    bearer = HTTPBearer(auto_error=False, description="The token given to `calmops serve` (--token-env).")

    def require_token(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if problem := token_problem(request):  # (the bearer dependency declares the scheme in the OpenAPI schema)
            raise problem

    protected = [Depends(require_token)] if token else []
    common: dict[int | str, dict[str, Any]] = {}
    if token:
        common[401] = {"model": ErrorOut, "description": "Missing or wrong bearer token."}
    common[422] = {"model": ValidationOut, "description": "Invalid request; each error names the field."}
    common[503] = {"model": ErrorOut, "description": "The model registry is unavailable, the champion cannot be "
                                                    "loaded, or the pipeline's spec.yaml cannot be read."}

    @app.get("/", include_in_schema=False)
    def index() -> dict[str, str]:
        """Where to go from the API's address: its docs, its schema and its routes."""
        return {"name": app.title, "version": app.version, "docs": "/docs", "openapi": "/openapi.json",
                "health": "/health", "pipelines": "/pipelines"}

    @app.get("/health", response_model=Health, tags=["service"],
             responses={503: {"model": Health, "description": "MLflow is not reachable."}})
    def health():
        """Liveness and readiness: the API answers and the MLflow registry is reachable. Never needs the token."""
        if problem := _registry_problem():
            body = Health(status="degraded", mlflow_reachable=False, detail=problem)
            return JSONResponse(body.model_dump(), status_code=503)
        return Health(status="ok", mlflow_reachable=True)

    @app.get("/pipelines", response_model=PipelineList, tags=["pipelines"], dependencies=protected,
             responses={k: v for k, v in common.items() if k != 422})
    def pipelines():
        """Every pipeline: kind, champion version, task and the input columns a record must carry."""
        from calmops.core.store import read_spec

        out = []
        for name in _known():
            entry = PipelineSummary(name=name)
            try:
                entry.paused = _pause(name)
                entry.kind = read_spec(name).kind
                mv = registry.alias_model_version(name, registry.CHAMPION)
                if mv is not None:
                    entry.champion_version = int(mv.version)
                    schema = registry.load_version(name, int(mv.version), mv).schema
                    entry.task, entry.input_columns = schema.task, list(schema.columns)
            except Exception as exc:  # noqa: BLE001 - one broken pipeline must not hide the others
                entry.problem = _first_line(exc)
            out.append(entry)
        return PipelineList(pipelines=out)

    @app.get("/pipelines/{name}", response_model=PipelineDetail, tags=["pipelines"], dependencies=protected,
             responses={404: {"model": NotFoundOut, "description": "No such pipeline."}, **common})
    def pipeline(name: NameParam):
        """One pipeline and its champion's input schema (columns, dtypes, feature types, classes)."""
        spec = _spec(name)
        detail = PipelineDetail(name=name, kind=spec.kind, prediction_only=spec.prediction_only,
                                target=spec.target, champion_version=None, paused=_pause(name))
        try:
            champ, stale = _champion(name, served)
        except ApiError as exc:
            if exc.status != 409:
                raise
            detail.message = f"{exc.detail}; {exc.hint}"
            return detail
        schema = champ.schema
        detail.champion_version, detail.task, detail.message = champ.version, schema.task, stale
        detail.classes = None if schema.classes is None else [_plain(c) for c in schema.classes]
        detail.columns = _columns(schema)
        detail.example_request = {"records": [_typical_record(schema, champ.profile, champ.model)]}
        return detail

    @app.post("/pipelines/{name}/predict", response_model=PredictResponse, tags=["predictions"],
              dependencies=protected,
              responses={404: {"model": NotFoundOut, "description": "No such pipeline."},
                         409: {"model": ErrorOut, "description": "The pipeline has no champion yet."},
                         413: {"model": ErrorOut, "description": "Body or record count over the limit."},
                         500: {"model": ErrorOut, "description": "The model failed on input that passed validation."},
                         **common})
    def predict(name: NameParam, body: PredictRequest):
        """Score records with the pipeline's current champion.

        Every input column of the champion must be present in every record (422 naming `records[i].column`
        otherwise); values get the same coercion as files (numbers may be sent as numeric strings, null is a
        missing value). Fields the model does not use are ignored and listed in `warnings`.
        """
        if len(body.records) > max_records:
            raise ApiError(413, f"{len(body.records)} records is over the limit of {max_records} per request",
                           "split the records into smaller requests")
        _spec(name)
        champ, stale = _champion(name, served)
        predictions, probabilities, warnings = predict_records(champ, body.records)
        return PredictResponse(pipeline=name, model_version=champ.version, predictions=predictions,
                               probabilities=probabilities, warnings=[*([stale] if stale else []), *warnings])

    return app


def _import_prediction_code() -> None:
    """Import the prediction code now, before serving, and keep the server's loggers as they are.

    It imports Prefect, which applies its logging config once per process (``logging.config.dictConfig``);
    that resets every ``uvicorn.*`` logger (no handler, no level, up to Prefect's ``uvicorn`` at WARNING).
    Done by the first prediction, it silenced uvicorn's access log for good.
    """
    names = {"uvicorn", "uvicorn.error", "uvicorn.access",
             *(n for n in list(logging.root.manager.loggerDict) if n.startswith("uvicorn."))}
    kept = [(lg, lg.level, list(lg.handlers), lg.propagate, lg.disabled) for lg in map(logging.getLogger, names)]
    import calmops.tasks.predict  # noqa: F401

    for lg, level, handlers, propagate, disabled in kept:
        lg.setLevel(level)
        lg.handlers, lg.propagate, lg.disabled = handlers, propagate, disabled


#: scikit-learn's words when a ``delayed`` task finds no warning filters captured (see _quiet_parallel_race)
_PARALLEL_RACE = "`sklearn.utils.parallel.delayed` should be used with"


def _quiet_parallel_race() -> None:
    """Drop scikit-learn's ``delayed`` warning from the API's log; every other warning is shown as before.

    Requests are served by threads. A forest's ``predict`` runs its trees through scikit-learn's ``Parallel``,
    whose every task clears the process's warning filters for an instant (``warnings.resetwarnings()`` inside
    its ``catch_warnings``); a ``Parallel`` started by another request in that instant captures no filters and
    each of its tasks warns that ``delayed`` was used without ``Parallel``. The predictions are unaffected
    (CalmOps sets no scikit-learn configuration to propagate), but concurrent requests to an ensemble wrote
    thousands of these lines. Filters cannot hold it back (they are what is cleared), so the display is
    wrapped: ``warnings.showwarning`` is the one hook no task resets."""
    import warnings

    shown = warnings.showwarning
    if getattr(shown, "calmops_quiet", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if _PARALLEL_RACE not in str(message):
            shown(message, category, filename, lineno, file, line)

    show.calmops_quiet = True
    warnings.showwarning = show


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("calmops")
    except Exception:  # noqa: BLE001
        return "0"

