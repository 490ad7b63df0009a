"""Quick reads for ``status`` and ``list``: aliases, breakers and deployments without importing MLflow or Prefect.

Importing either client costs seconds; these commands need a handful of values. With the stack up they
ask its servers over HTTP; with it down they read MLflow's SQLite store directly and report the breaker
(kept by the Prefect server) as unknown instead of starting a temporary Prefect server. Any other
tracking store falls back to the MLflow client.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calmops.core.names import TAG, model_name
from calmops.core.paging import every

if TYPE_CHECKING:
    from calmops.core.schemes import Schemes

# where calmops.core.breaker stores a pipeline's breaker (a Prefect Block of this type and name)
BREAKER_BLOCK_TYPE = "calmops-circuit-breaker"
BREAKER_BLOCK_PREFIX = "calmops-breaker-"


def prefect_api_url() -> str | None:
    """The Prefect API this process talks to, or None when no server is known (the stack is down)."""
    url = os.environ.get("PREFECT_API_URL")
    if not url and "prefect.settings" in sys.modules:  # already loaded (tests, the API): ask it
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
    return url or None


def breakers(timeout: float = 3.0) -> dict[str, dict[str, Any]] | None:
    """Every pipeline's breaker (state, failures, next retry), or None when Prefect cannot be asked."""
    url = prefect_api_url()
    if not url:
        return None
    from calmops.deployments.quickhttp import get

    status, documents = get(f"{url.rstrip('/')}/block_types/slug/{BREAKER_BLOCK_TYPE}/block_documents",
                            timeout=timeout)
    if status == 404:  # no breaker written yet: every breaker is closed
        return {}
    if status != 200 or not isinstance(documents, list):
        return None
    out = {}
    for doc in documents:
        data = doc.get("data") or {}
        pipeline = data.get("pipeline") or str(doc.get("name", "")).removeprefix(BREAKER_BLOCK_PREFIX)
        out[pipeline] = {
            "state": data.get("state", "closed"),
            "consecutive_failures": data.get("consecutive_failures", 0),
            "next_retry_at": iso_seconds(data.get("next_retry_at")),
        }
    return out


def schemes(timeout: float = 3.0) -> Schemes | None:
    """The deployments that start the pipelines' runs (:func:`calmops.core.schemes.both_schemes`, asked over HTTP),
    or None when Prefect cannot be asked."""
    url = prefect_api_url()
    if not url:
        return None
    from calmops.core.schemes import Schemes
    from calmops.deployments.quickhttp import post

    api = url.rstrip("/")

    def read(limit: int, offset: int) -> list[dict]:
        status, page = post(f"{api}/deployments/filter", {"deployments": {"tags": {"all_": [TAG]}}, "limit": limit,
                                                          "offset": offset}, timeout=timeout)
        if status != 200 or not isinstance(page, list):
            raise LookupError(status)
        return page

    try:
        found = every(read)
    except LookupError:
        return None
    flows: dict[str, str] = {}
    if found:
        ids = sorted({d["flow_id"] for d in found})
        status, listed = post(f"{api}/flows/filter", {"flows": {"id": {"any_": ids}}}, timeout=timeout)
        if status != 200 or not isinstance(listed, list):
            return None
        flows = {f["id"]: f["name"] for f in listed}
    return Schemes.of((d["name"], d.get("tags"), flows.get(d["flow_id"], "")) for d in found)


def closed_breaker() -> dict[str, Any]:
    return {"state": "closed", "consecutive_failures": 0, "next_retry_at": None}


def iso_seconds(ts: float | None) -> str | None:
    """A POSIX time as ISO 8601 in UTC, to the second; None stays None."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def aliases(pipeline: str, tracking_uri: str, timeout: float = 3.0) -> dict[str, int]:
    """The registered model's aliases (``champion``, ``challenger``, ``previous``) → version."""
    name = model_name(pipeline)
    if tracking_uri.startswith(("http://", "https://")):
        from calmops.deployments.quickhttp import get

        status, body = get(f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/get",
                           params={"name": name}, timeout=timeout)
        if status == 404:
            return {}
        if status != 200 or not isinstance(body, dict):
            raise ConnectionError(f"MLflow at {tracking_uri} answered {status or 'nothing'} for model {name!r}")
        found = body.get("registered_model", {}).get("aliases", [])
        return {a["alias"]: int(a["version"]) for a in found}
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.exists():
            return {}
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)) as db:
            try:
                rows = db.execute("SELECT alias, version FROM registered_model_aliases WHERE name = ?",
                                  (name,)).fetchall()
            except sqlite3.OperationalError:  # a store without tables yet
                return {}
        return {alias: int(version) for alias, version in rows}
    from calmops.core import registry

    registry.configure()
    return registry.aliases(pipeline)
