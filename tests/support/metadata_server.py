"""``MetadataServer``: a loopback HTTP server that answers fixed documents by path and
records every path asked for, to play an issuer's metadata (RFC 8414, OpenID Connect
Discovery) or a revocation endpoint that misbehaves. Standard library only."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Optional


class MetadataServer:
    """``with MetadataServer() as server:``; ``server.answer(path, status, body)``.

    Unknown paths get a JSON 404. ``server.hits`` lists the paths requested, in order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[int, bytes, tuple[tuple[str, str], ...]]] = {}
        self.hits: list[str] = []
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(
        self,
        path: str,
        status: int = 200,
        body: object = None,
        *,
        raw: Optional[bytes] = None,
        headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
    ) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        with self._lock:
            self._routes[path] = (status, data, headers)

    def __enter__(self) -> MetadataServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._serve()

            def _serve(self) -> None:
                with owner._lock:
                    owner.hits.append(self.path)
                    route = owner._routes.get(self.path)
                status, body, headers = route or (
                    404,
                    b'{"error":"not_found"}',
                    (("Content-Type", "application/json"),),
                )
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
