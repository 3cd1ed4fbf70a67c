"""A loopback server that answers every connection with the same raw bytes.

For answers no real HTTP server would send (broken framing, interim 1xx, a gzip body
nobody asked for). Only the standard library: tests/core uses it on bare Pythons.
"""

from __future__ import annotations

import socket
import threading


class RawServer:
    """Answers every connection on 127.0.0.1 with ``raw``, then closes it.

    ``port`` is where it listens; ``url`` is its ``/token`` URL. Call ``close()``.
    """

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/token"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed by the test
                return
            with conn:
                try:
                    _read_request(conn)
                    conn.sendall(self._raw)
                    # Close gently: closing with request bytes still unread sends a
                    # reset, which the client may see before the answer.
                    conn.shutdown(socket.SHUT_WR)
                    conn.settimeout(2)
                    while conn.recv(65536):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()


def _read_request(conn: socket.socket) -> None:
    """Read one request: the head, then ``Content-Length`` bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk
