"""The transport contract: tests every HttpTransport passes, against a real stdlib
HTTP server on 127.0.0.1.

One suite, not a copy per transport: :class:`TransportContract` holds the tests
and the server fixtures; each transport's test module subclasses it and supplies
two fixtures, ``make_transport`` (``make_transport(ssl_context=None,
trust_env=True)`` returns a new transport) and ``transport`` (one made with the
defaults). ``tests/core/test_urllib_transport.py`` runs it on ``UrllibTransport``
(stdlib only); ``tests/adapters/test_aiohttp_transport.py`` on ``AiohttpTransport``.
A transport with an ``aclose()`` coroutine is closed inside the event loop of
each call, so no pooled connection outlives its loop.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional, Protocol, TypeVar

import pytest

from roomsecrets.core.errors import (
    ConnectError,
    InvalidInput,
    ProviderTimeout,
    ResponseTooLarge,
    TransportError,
)
from roomsecrets.core.oauth.http import HttpRequest, HttpResponse
from roomsecrets.core.ports import HttpTransport

SECRET = "s3cr3t-value-never-shown"


# How long a call against /drip (which never ends: a byte every 50 ms until the
# test is over) may take with a timeout under a second. Any finite bound proves an
# overall deadline; this one is wide because CI runs the core suites niced at 19
# beside the main tests, where the process can wait seconds for a CPU (a 0.4 s
# timeout once ended after more than 1.5 s there).
_DRIP_BOUND = 5.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        #: Set at teardown so every stalled handler returns.
        self.release = threading.Event()
        #: (method, path) of every request received.
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def _reply(self, status: int, body: bytes, headers: Optional[dict[str, str]] = None) -> None:
        self.send_response(status)
        for name, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":  # RFC 9110 §9.3.2: no content in a HEAD response
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def _route(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.command, self.path))
        path = self.path.split("?", 1)[0]
        try:
            if path == "/json":
                self._reply(200, b'{"ok": true}')
            elif path.startswith("/status/"):
                status = int(path.rsplit("/", 1)[1])
                self._reply(status, json.dumps({"error": f"status {status}"}).encode())
            elif path == "/redirect":
                self._reply(302, b"moved", {"Location": "/json", "Content-Type": "text/plain"})
            elif path == "/echo":
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                echo = {
                    "method": self.command,
                    "headers": [[k, v] for k, v in self.headers.items()],
                    "body": body.decode("latin-1"),
                }
                self._reply(200, json.dumps(echo).encode())
            elif path == "/slow":
                self.server.release.wait(10)
                self._reply(200, b"{}")
            elif path == "/drip":
                self._drip()
            elif path == "/hangup":
                # The request arrived; the server goes away without answering.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif path == "/huge":
                self._reply(200, b"x" * 2_000_000, {"Content-Type": "text/plain"})
            elif path == "/endless":
                self._endless()
            elif path == "/sized":
                size = int(self.path.split("=", 1)[1])
                self._reply(200, b"y" * size, {"Content-Type": "text/plain"})
            else:
                self._reply(404, b'{"error": "not found"}')
        except OSError:
            pass  # the client hung up, as several tests make it do

    def _drip(self) -> None:
        # Headers at once, then one byte every 50 ms: each read completes well
        # within the socket timeout, so only an overall deadline stops it.
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.flush()
        while not self.server.release.is_set():
            self.wfile.write(b"z")
            self.wfile.flush()
            time.sleep(0.05)

    def _endless(self) -> None:
        # No Content-Length: the body runs until the connection closes.
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        block = b"e" * 65536
        for _ in range(2000):  # at most ~130 MB, far past any cap under test
            if self.server.release.is_set():
                return
            self.wfile.write(block)


class MakeTransport(Protocol):
    """The ``make_transport`` fixture each importing module supplies."""

    def __call__(
        self, *, ssl_context: Optional[ssl.SSLContext] = None, trust_env: bool = True
    ) -> HttpTransport: ...


T = TypeVar("T")


def run(transport: HttpTransport, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work()`` in a fresh event loop, then close ``transport`` in that loop."""

    async def main() -> T:
        try:
            return await work()
        finally:
            aclose = getattr(transport, "aclose", None)
            if aclose is not None:
                await aclose()

    return asyncio.run(main())


def send(
    transport: HttpTransport,
    request: HttpRequest,
    *,
    timeout: float = 5.0,
    max_body: int = 1_000_000,
) -> HttpResponse:
    return run(transport, lambda: transport.send(request, timeout=timeout, max_body=max_body))


def get(url: str) -> HttpRequest:
    return HttpRequest(method="GET", url=url)


def refused_url() -> str:
    # Bind a port, close it: nothing listens there any more.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/token?code={SECRET}"


def https_url(server: _Server, path: str) -> str:
    return f"https://127.0.0.1:{server.server_address[1]}{path}"


class TransportContract:
    """Every HttpTransport passes these. Subclass it in a test module named
    ``test_*`` and define two fixtures: ``make_transport`` (a callable taking
    ``ssl_context=`` and ``trust_env=``) and ``transport`` (one made with the defaults)."""

    @pytest.fixture
    def server(self) -> Iterator[_Server]:
        srv = _Server()
        thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield srv
        finally:
            srv.release.set()
            srv.shutdown()
            srv.server_close()
            thread.join(5)

    @pytest.fixture
    def certificate(self, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
        """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
        if shutil.which("openssl") is None:
            pytest.skip("the openssl command is not installed")
        folder = tmp_path_factory.mktemp("tls")
        cert, key = folder / "cert.pem", folder / "key.pem"
        command = shlex.split(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
            " -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
        )
        subprocess.run(
            [*command, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
        )
        return cert, key

    @pytest.fixture
    def tls_server(self, certificate: tuple[Path, Path]) -> Iterator[_Server]:
        cert, key = certificate
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        srv = _Server()
        srv.socket = context.wrap_socket(srv.socket, server_side=True)
        thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield srv
        finally:
            srv.release.set()
            srv.shutdown()
            srv.server_close()
            thread.join(5)

    def test_200_json_is_returned_with_status_headers_and_body(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        response = send(transport, get(server.base_url + "/json"))
        assert response.status == 200
        assert response.header("content-type") == "application/json"
        assert json.loads(response.body) == {"ok": True}

    @pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 502, 503])
    def test_error_statuses_are_responses_with_their_bodies(
        self, server: _Server, transport: HttpTransport, status: int
    ) -> None:
        response = send(transport, get(f"{server.base_url}/status/{status}"))
        assert response.status == status
        assert json.loads(response.body) == {"error": f"status {status}"}

    def test_a_redirect_is_returned_not_followed(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        response = send(transport, get(server.base_url + "/redirect"))
        assert response.status == 302
        assert response.header("Location") == "/json"
        assert response.body == b"moved"
        assert server.seen == [("GET", "/redirect")]

    def test_a_post_to_a_redirect_is_not_replayed(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        request = HttpRequest(method="POST", url=server.base_url + "/redirect", body=b"code=x")
        assert send(transport, request).status == 302
        assert server.seen == [("POST", "/redirect")]

    def test_a_slow_server_raises_provider_timeout_near_the_timeout(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout) as caught:
            send(transport, get(server.base_url + "/slow"), timeout=0.5)
        elapsed = time.monotonic() - started
        assert 0.4 <= elapsed < 1.5
        assert "127.0.0.1" in str(caught.value)
        assert caught.value.retryable

    def test_a_slow_drip_body_cannot_hold_the_caller_past_the_timeout(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            send(transport, get(server.base_url + "/drip"), timeout=0.5)
        assert time.monotonic() - started < _DRIP_BOUND

    def test_cancelling_the_caller_stops_the_request(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        async def main() -> None:
            task = asyncio.ensure_future(
                transport.send(get(server.base_url + "/slow"), timeout=30, max_body=100)
            )
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        started = time.monotonic()
        run(transport, main)
        assert time.monotonic() - started < 2.0

    def test_a_refused_connection_raises_transport_error_naming_the_host_only(
        self,
        transport: HttpTransport,
    ) -> None:
        url = refused_url()
        request = HttpRequest(
            method="POST",
            url=url,
            headers=(("Authorization", f"Basic {SECRET}"),),
            body=f"client_secret={SECRET}".encode(),
        )
        with pytest.raises(TransportError) as caught:
            send(transport, request)
        # Never sent: the retry policy may send it again, even a code redemption.
        assert isinstance(caught.value, ConnectError)
        message = str(caught.value)
        assert "connection refused" in message
        assert "127.0.0.1" in message
        assert SECRET not in message
        assert "/token" not in message

    def test_an_unresolvable_host_raises_connect_error(self, transport: HttpTransport) -> None:
        with pytest.raises(ConnectError):
            send(transport, get("http://no-such-host.invalid/token"))

    def test_a_server_that_hangs_up_after_the_request_is_a_transport_error_not_connect_error(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        # The request reached the server, which may have acted on it: not safe to resend.
        request = HttpRequest(method="POST", url=server.base_url + "/hangup", body=b"code=x")
        with pytest.raises(TransportError) as caught:
            send(transport, request)
        assert not isinstance(caught.value, ConnectError)
        assert "127.0.0.1" in str(caught.value)
        assert "/hangup" not in str(caught.value)

    def test_a_body_over_the_cap_raises_response_too_large(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        with pytest.raises(ResponseTooLarge) as caught:
            send(transport, get(server.base_url + "/huge"), max_body=10_000)
        assert caught.value.status == 200

    def test_a_body_without_length_is_cut_off_at_the_cap(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        started = time.monotonic()
        with pytest.raises(ResponseTooLarge):
            send(transport, get(server.base_url + "/endless"), max_body=100_000)
        assert time.monotonic() - started < 2.0

    def test_a_body_exactly_at_the_cap_is_accepted(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        response = send(transport, get(server.base_url + "/sized?n=5000"), max_body=5000)
        assert response.body == b"y" * 5000
        with pytest.raises(ResponseTooLarge):
            send(transport, get(server.base_url + "/sized?n=5001"), max_body=5000)

    def test_post_headers_and_body_reach_the_server_intact(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        body = b"grant_type=authorization_code&code=abc%2B%2F%3D&redirect_uri=http%3A%2F%2Fx"
        request = HttpRequest(
            method="POST",
            url=server.base_url + "/echo",
            headers=(
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Accept", "application/json"),
                ("Authorization", "Basic YSUyMGI6Yw=="),
                ("X-Custom-Thing", "one"),
                ("x-custom-thing", "two"),
            ),
            body=body,
        )
        echo = json.loads(send(transport, request).body)
        headers = {name.lower(): value for name, value in echo["headers"]}
        assert echo["method"] == "POST"
        assert echo["body"].encode("latin-1") == body
        assert headers["content-type"] == "application/x-www-form-urlencoded"
        assert headers["accept"] == "application/json"
        assert headers["authorization"] == "Basic YSUyMGI6Yw=="
        assert headers["x-custom-thing"] == "one, two"
        assert headers["content-length"] == str(len(body))
        assert headers["user-agent"] == "roomsecrets"

    def test_an_empty_post_sends_content_length_zero(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        echo = json.loads(
            send(transport, HttpRequest(method="POST", url=server.base_url + "/echo")).body
        )
        headers = {name.lower(): value for name, value in echo["headers"]}
        assert headers["content-length"] == "0"
        assert echo["body"] == ""

    def test_a_get_sends_no_body_headers(self, server: _Server, transport: HttpTransport) -> None:
        echo = json.loads(send(transport, get(server.base_url + "/echo")).body)
        names = {name.lower() for name, _ in echo["headers"]}
        assert echo["method"] == "GET"
        assert "content-length" not in names
        assert "content-type" not in names

    def test_head_returns_headers_without_body(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        response = send(transport, HttpRequest(method="HEAD", url=server.base_url + "/json"))
        assert response.status == 200
        assert response.body == b""

    @pytest.mark.parametrize(
        "url",
        ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:,hello", "http:///nohost", "nonsense"],
    )
    def test_only_http_and_https_urls_are_sent(self, transport: HttpTransport, url: str) -> None:
        with pytest.raises(InvalidInput):
            send(transport, get(url))

    def test_a_header_value_with_a_line_break_is_refused_without_echoing_it(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        request = HttpRequest(
            method="GET",
            url=server.base_url + "/json",
            headers=(("Authorization", f"Bearer {SECRET}\r\nX-Injected: 1"),),
        )
        with pytest.raises(InvalidInput) as caught:
            send(transport, request)
        assert SECRET not in str(caught.value)
        assert caught.value.__cause__ is None
        assert server.seen == []

    def test_environment_proxies_are_not_used_for_loopback(
        self, server: _Server, make_transport: MakeTransport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        dead_proxy = refused_url().split("/token")[0]
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
            monkeypatch.setenv(name, dead_proxy)
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        response = send(make_transport(), get(server.base_url + "/json"))
        assert response.status == 200

    @pytest.mark.parametrize(
        ("timeout", "max_body"),
        [(0, 10), (-1, 10), (float("inf"), 10), (float("nan"), 10), (1, -1)],
    )
    def test_bad_limits_are_invalid_input(
        self, transport: HttpTransport, timeout: float, max_body: int
    ) -> None:
        with pytest.raises(InvalidInput):
            send(transport, get("http://127.0.0.1:9/"), timeout=timeout, max_body=max_body)

    def test_many_concurrent_requests_all_complete(
        self, server: _Server, transport: HttpTransport
    ) -> None:
        async def main() -> list[HttpResponse]:
            request = get(server.base_url + "/json")
            return list(
                await asyncio.gather(
                    *(transport.send(request, timeout=5, max_body=100) for _ in range(20))
                )
            )

        responses = run(transport, main)
        assert [r.status for r in responses] == [200] * 20

    # --- HTTPS ------------------------------------------------------------------

    def test_https_with_a_trusted_certificate(
        self, tls_server: _Server, certificate: tuple[Path, Path], make_transport: MakeTransport
    ) -> None:
        context = ssl.create_default_context(cafile=str(certificate[0]))
        transport = make_transport(ssl_context=context)
        response = send(transport, get(https_url(tls_server, "/json")))
        assert response.status == 200
        assert json.loads(response.body) == {"ok": True}

    def test_https_with_an_untrusted_certificate_is_a_connect_error(
        self, tls_server: _Server, transport: HttpTransport
    ) -> None:
        with pytest.raises(ConnectError) as caught:
            send(transport, get(https_url(tls_server, "/json")))
        assert "TLS certificate verification failed" in str(caught.value)

    def test_a_slow_https_server_times_out(
        self, tls_server: _Server, certificate: tuple[Path, Path], make_transport: MakeTransport
    ) -> None:
        transport = make_transport(
            ssl_context=ssl.create_default_context(cafile=str(certificate[0]))
        )
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            send(transport, get(https_url(tls_server, "/drip")), timeout=0.4)
        assert time.monotonic() - started < _DRIP_BOUND
