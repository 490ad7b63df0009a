"""The standard-library GET and POST the quick commands use instead of httpx (a real local HTTP server)."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from calmops.deployments.quickhttp import get, post
from tests.e2e.stack import free_port


@pytest.fixture
def server(monkeypatch):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = 404 if "missing" in self.path else 200
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"not json" if "text" in self.path else json.dumps({"path": self.path}).encode())

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps({"path": self.path, "body": body,
                                         "type": self.headers["Content-Type"]}).encode())

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # a proxy that does not exist: local calls skip it
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_status_and_json_body_with_query_parameters(server):
    assert get(server + "/a", {"name": "x y"}) == (200, {"path": "/a?name=x+y"})


def test_an_error_status_is_returned_not_raised(server):
    assert get(server + "/missing") == (404, None)


def test_a_body_that_is_not_json_gives_none(server):
    assert get(server + "/text") == (200, None)


def test_nothing_listening_is_status_zero():
    assert get(f"http://127.0.0.1:{free_port()}/health", timeout=1.0) == (0, None)


def test_a_post_sends_its_body_as_json(server):
    assert post(server + "/deployments/filter", {"limit": 1}) == (
        200, {"path": "/deployments/filter", "body": {"limit": 1}, "type": "application/json"})
