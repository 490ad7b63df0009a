"""With a token set, exactly the routes docs/api.md lists answer without it; every other route is a 401."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from starlette.routing import Mount

from calmops.deployments.api import create_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def documented_open_routes() -> set[str]:
    """The routes of the "Auth" section's list of exceptions (``GET /x`` -> ``/x``; ``/x/`` is a prefix)."""
    text = DOC.read_text(encoding="utf-8")
    para = re.search(r"With auth on, (.*?)\n\n", text, re.DOTALL)
    assert para, "docs/api.md lost its 'With auth on, …' paragraph"
    return {re.sub(r"^[A-Z]+ ", "", code) for code in re.findall(r"`([^`]*)`", para.group(1))
            if re.match(r"^(?:[A-Z]+ )?/", code)}


def test_open_routes_are_exactly_the_documented_ones(calmops_home):
    app = create_app(token="s3cret-token")
    client = TestClient(app)
    assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', client.get("/docs").text)
    assert assets
    open_routes, closed = set(), set()
    for route in app.routes:
        if isinstance(route, Mount):
            prefix = route.path + "/"
            probes = [(prefix, "GET", a, None) for a in assets if a.startswith(prefix)]
            assert probes, f"no asset of /docs is served under {prefix}"
        else:
            path = route.path.replace("{name}", "sea")
            body = {"records": [{"x1": 1.0}]} if "POST" in route.methods else None
            probes = [(route.path, min(route.methods), path, body)]
        for key, method, url, body in probes:
            resp = client.request(method, url, json=body)
            assert resp.status_code < 500, (url, resp.status_code, resp.text)
            (closed if resp.status_code == 401 else open_routes).add(key)
            if resp.status_code == 401:
                assert resp.headers["www-authenticate"] == "Bearer"
    assert closed == {"/pipelines", "/pipelines/{name}", "/pipelines/{name}/predict"}
    assert open_routes == documented_open_routes()
