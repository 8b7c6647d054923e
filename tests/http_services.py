"""A real HTTP server on loopback standing for a business's systems, for the HTTP tools'
and webhooks' tests: it answers by path, as a CRM would (JSON), or as a broken or hostile one would
(hangs, garbage, 10 MB, an error, a redirect elsewhere), and keeps every request it got."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

BIG = 10 * 1024 * 1024


class Services:
    def __init__(self) -> None:
        self.got: list[dict] = []  # method, path (raw), query, headers, body, at
        self.release = threading.Event()  # ends the hanging answers
        self.flaky_left = 0  # /hooks/flaky answers 503 this many times, then 204
        services = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's name)
                self._serve()

            def do_POST(self):  # noqa: N802
                self._serve()

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                services.got.append(
                    {
                        "method": self.command,
                        "path": parts.path,
                        "query": parts.query,
                        "headers": dict(self.headers),
                        "body": body,
                        "at": time.monotonic(),
                    }
                )
                services.answer(self, parts.path, body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, handler: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        if path.startswith("/api/lines/"):
            customer = unquote(path.removeprefix("/api/lines/"))
            data = {"customer": customer, "status": "up", "since": "2026-12-01", "line": {"speed_mbps": 600}}
            return _send(handler, 200, json.dumps(data).encode(), "application/json")
        if path == "/api/tickets":
            data = {"ticket": "T-1001", "received": json.loads(body or b"{}")}
            return _send(handler, 201, json.dumps(data).encode(), "application/json")
        if path == "/hooks/ok":  # a webhook receiver that takes everything
            return _send(handler, 204, b"", "text/plain")
        if path == "/hooks/flaky":
            if self.flaky_left > 0:
                self.flaky_left -= 1
                return _send(handler, 503, b"busy", "text/plain")
            return _send(handler, 204, b"", "text/plain")
        if path == "/hang":
            self.release.wait(60)
            return _send(handler, 200, b"{}", "application/json")
        if path == "/trickle":  # a byte at a time, each well within a read timeout
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", "1000")
            handler.end_headers()
            for _ in range(1000):
                if self.release.wait(0.2):
                    return
                handler.wfile.write(b" ")
                handler.wfile.flush()
            return None
        if path == "/garbage":
            return _send(handler, 200, b"\x00\xff<<not json>>\xfe", "application/json")
        if path == "/text":
            return _send(handler, 200, "Línea activa desde el lunes".encode(), "text/plain; charset=utf-8")
        if path == "/big":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(BIG))
            handler.end_headers()
            chunk = b"[" + b"1," * 32767 + b"1]"
            try:
                for _ in range(BIG // len(chunk)):
                    handler.wfile.write(chunk)
            except OSError:  # the client stopped reading, as it should
                pass
            return None
        if path == "/error":
            return _send(handler, 500, b'{"message": "database down"}', "application/json")
        if path == "/redirect":
            handler.send_response(302)
            handler.send_header("Location", f"http://127.0.0.2:{self.port}/api/lines/stolen")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        return _send(handler, 404, b'{"message": "no such path"}', "application/json")

    def paths(self) -> list[str]:
        return [request["path"] for request in self.got]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.write(body)
    except OSError:
        pass
