"""A GET (or a small JSON POST) to a local service with the standard library, for the quick commands (``status``,
``list``) and health checks: httpx is the client everywhere else, but importing it costs a few tenths of a second
on every call of a command that only needs a status code or a small JSON document."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")  # never through a proxy from the environment


def get(url: str, params: dict[str, str] | None = None, timeout: float = 2.0) -> tuple[int, Any]:
    """``(status, parsed JSON body or None)``; status 0 when nothing answered (refused, timed out)."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    return _send(url, None, timeout)


def post(url: str, body: Any, timeout: float = 2.0) -> tuple[int, Any]:
    """POST ``body`` as JSON (a query API such as Prefect's ``…/filter`` endpoints); answered as :func:`get`."""
    return _send(url, json.dumps(body).encode(), timeout)


def _send(url: str, data: bytes | None, timeout: float) -> tuple[int, Any]:
    local = urllib.parse.urlsplit(url).hostname in LOOPBACK
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if local else urllib.request.build_opener()
    try:
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
        with opener.open(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError, http.client.HTTPException):  # refused, timed out, or not HTTP at all
        return 0, None
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None
