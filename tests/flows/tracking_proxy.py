"""A proxy in front of a real MLflow tracking server, for tests of what a run does when the server misbehaves:
it forwards every request (the body and the headers that are not hop-by-hop) and the answer back; a subclass
answers a request itself (:meth:`TrackingProxy.answer_first`) or acts once it was forwarded
(:meth:`TrackingProxy.forwarded`)."""

from __future__ import annotations

import http.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


class TrackingProxy(ThreadingHTTPServer):
    """Forwards to the MLflow server at ``upstream`` (serve it from a thread: ``serve_forever``)."""

    daemon_threads = True

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer_first(self, method: str, path: str) -> int | None:
        """A status to answer ``method path`` with instead of forwarding it (an empty body); None forwards it."""
        return None

    def forwarded(self, method: str, path: str) -> None:
        """Called once ``method path`` was forwarded and answered upstream, before the answer is sent back."""


class _Forward(BaseHTTPRequestHandler):
    server: TrackingProxy

    def log_message(self, *args) -> None:  # quiet
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        if (status := self.server.answer_first(self.command, path)) is not None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        conn = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=60)
        try:
            conn.request(self.command, self.path, body=body or None,
                         headers={k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP})
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        self.server.forwarded(self.command, path)
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle
