"""Pinned: how UrllibTransport names failures, checks URLs and releases sockets.

These drive the transport's small helpers directly with made-up failures; the
end-to-end behaviour against a real server is in test_urllib_transport.py.
"""

from __future__ import annotations

import asyncio
import http.client
import math
import socket
import ssl
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from roomsecrets.core.errors import (
    ConnectError,
    InvalidInput,
    ProviderTimeout,
    ResponseTooLarge,
    TransportError,
)
from roomsecrets.core.oauth import urllib_transport as transport_module
from roomsecrets.core.oauth.http import HttpRequest, HttpResponse
from roomsecrets.core.oauth.urllib_transport import UrllibTransport

WHAT = "POST as.example:8443"


class Custom(Exception):
    pass


NETWORK_FAILURES = [
    (socket.timeout("timed out"), ProviderTimeout, "POST as.example:8443: timed out"),
    (TimeoutError(), ProviderTimeout, "POST as.example:8443: timed out"),
    (ConnectionRefusedError(111, "x"), ConnectError, "POST as.example:8443: connection refused"),
    (
        ssl.SSLCertVerificationError("bad cert"),
        ConnectError,
        "POST as.example:8443: TLS certificate verification failed",
    ),
    (
        ssl.SSLEOFError("eof"),
        TransportError,
        "POST as.example:8443: TLS failure (SSLEOFError)",
    ),
    (
        socket.gaierror(-2, "Name or service not known"),
        ConnectError,
        "POST as.example:8443: name resolution failed",
    ),
    (
        ConnectionResetError(104, "reset"),
        TransportError,
        "POST as.example:8443: connection failed (ConnectionResetError)",
    ),
    (
        http.client.RemoteDisconnected("closed"),
        TransportError,
        "POST as.example:8443: connection failed (RemoteDisconnected)",
    ),
    (
        http.client.IncompleteRead(b"partial"),
        TransportError,
        "POST as.example:8443: connection failed (IncompleteRead)",
    ),
    (
        PermissionError(13, "denied"),
        TransportError,
        "POST as.example:8443: network error (PermissionError)",
    ),
    (Custom("secret-in-message"), TransportError, "POST as.example:8443: request failed"),
    ("a reason string", TransportError, "POST as.example:8443: request failed"),
]


@pytest.mark.parametrize(
    ("reason", "kind", "text"),
    NETWORK_FAILURES,
    ids=[type(reason).__name__ for reason, _, _ in NETWORK_FAILURES],
)
def test_each_network_failure_becomes_a_typed_error_naming_only_the_kind(reason, kind, text):
    error = transport_module._network_error(WHAT, reason)
    assert type(error) is kind
    assert str(error) == text


@pytest.mark.parametrize(
    ("url", "label", "loopback"),
    [
        ("https://as.example/t?q=secret", "as.example", False),
        ("https://as.example:8443/t", "as.example:8443", False),
        ("http://127.0.0.1:9/t", "127.0.0.1:9", True),
        ("http://[::1]:9/t", "[::1]:9", True),
        ("http://[2001:db8::1]/t", "[2001:db8::1]", False),
        ("HTTP://LOCALHOST/t", "localhost", True),
        ("http://api.localhost/t", "api.localhost", False),
        ("http://localhost.example/t", "localhost.example", False),
        ("http://notlocalhost/t", "notlocalhost", False),
    ],
)
def test_a_url_gives_a_host_label_without_path_or_query_and_its_loopback_status(
    url, label, loopback
):
    assert transport_module._check_url(url) == (label, loopback)


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("http://as.example:99999/", "request URL cannot be parsed"),
        ("http://[::1/", "request URL cannot be parsed"),
        ("ftp://as.example/", "only http and https URLs can be sent, not 'ftp'"),
        ("as.example/t", "only http and https URLs can be sent, not ''"),
        ("http:///t", "request URL has no host"),
    ],
)
def test_a_url_that_cannot_be_sent_is_refused_saying_why(url, text):
    with pytest.raises(InvalidInput) as info:
        transport_module._check_url(url)
    assert str(info.value) == text


def test_shutting_down_a_socket_that_is_not_connected_still_closes_it():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    transport_module._shut(sock)  # shutdown() raises ENOTCONN: suppressed
    assert sock.fileno() == -1


def test_repeated_request_headers_are_joined_with_commas_under_the_first_spelling():
    request = HttpRequest(
        method="GET",
        url="https://as.example/",
        headers=(("Accept", "a/b"), ("X-One", "1"), ("accept", "c/d"), ("ACCEPT", "e/f")),
    )
    assert transport_module._merged_headers(request) == [("Accept", "a/b, c/d, e/f"), ("X-One", "1")]


class FakeResponse:
    """Just what _read_capped uses: case-insensitive headers and read(n), recorded."""

    def __init__(self, body: bytes, content_length=None, chunk: int = 3) -> None:
        self.headers = http.client.HTTPMessage()
        if content_length is not None:
            self.headers["Content-Length"] = content_length
        self._body = body
        self._chunk = chunk
        self.asked: list = []

    def read(self, amount):
        self.asked.append(amount)
        piece = self._body[: min(amount, self._chunk)]
        self._body = self._body[len(piece) :]
        return piece


def read_capped(response, max_body):
    return transport_module._read_capped(response, WHAT, 200, max_body)


def test_a_body_read_in_pieces_comes_back_whole_and_no_read_asks_past_the_cap():
    response = FakeResponse(b"0123456789", chunk=3)
    assert read_capped(response, 10) == b"0123456789"
    # Never more than the cap + 1 bytes in all: 11, then what is left of it.
    assert response.asked == [11, 8, 5, 2, 1]


def test_a_body_longer_than_the_cap_stops_one_byte_past_it():
    response = FakeResponse(b"x" * 30, chunk=4)
    with pytest.raises(ResponseTooLarge) as info:
        read_capped(response, 10)
    assert str(info.value) == "POST as.example:8443: response body exceeds 10 bytes"
    assert info.value.status == 200
    assert response.asked == [11, 7, 3]


def test_reads_are_at_most_64_kib_each():
    response = FakeResponse(b"y" * 5, chunk=5)
    assert read_capped(response, 10**6) == b"y" * 5
    assert response.asked[0] == 64 * 1024


@pytest.mark.parametrize("declared", ["11", " 11 ", "99999999999999999999"])
def test_a_declared_length_over_the_cap_fails_before_reading_anything(declared):
    response = FakeResponse(b"x" * 11, content_length=declared)
    with pytest.raises(ResponseTooLarge, match="exceeds 10 bytes"):
        read_capped(response, 10)
    assert response.asked == []


@pytest.mark.parametrize("declared", ["10", "3", "abc", "-5", ""])
def test_a_declared_length_within_the_cap_or_unreadable_is_not_trusted_but_read(declared):
    response = FakeResponse(b"abc", content_length=declared)
    assert read_capped(response, 10) == b"abc"
    assert response.asked[0] == 11


# --- the socket hand-over between the worker and the caller --------------------------


def test_a_connection_made_after_the_caller_gave_up_is_shut_down_at_once():
    ours, peer = socket.socketpair()
    peer.settimeout(2.0)
    try:
        attempt = transport_module._Attempt()
        attempt.abandon()
        attempt.connected(ours)
        assert peer.recv(1) == b""  # end of stream: our side was shut down
    finally:
        ours.close()
        peer.close()


def test_giving_up_shuts_down_a_registered_connection():
    ours, peer = socket.socketpair()
    peer.settimeout(2.0)
    try:
        attempt = transport_module._Attempt()
        attempt.connected(ours)
        attempt.abandon()
        assert peer.recv(1) == b""
        attempt.abandon()  # a second time changes nothing
    finally:
        ours.close()
        peer.close()


def test_finishing_releases_the_duplicate_but_leaves_the_connection_open():
    ours, peer = socket.socketpair()
    peer.settimeout(2.0)
    try:
        attempt = transport_module._Attempt()
        attempt.connected(ours)
        attempt.finish()
        attempt.abandon()  # too late to interrupt anything: nothing is registered
        ours.sendall(b"k")
        assert peer.recv(1) == b"k"
    finally:
        ours.close()
        peer.close()


# --- one exchange, with a stand-in opener ----------------------------------------------


NOT_GIVEN = object()


class FakeOpener:
    """Records what _exchange hands to urllib; answers 200 with a small body."""

    def __init__(self, outcome="respond", body=b"{}") -> None:
        self.outcome = outcome
        self.body = body
        self.calls: list = []

    def open(self, req, timeout=NOT_GIVEN):
        self.calls.append((req, timeout))
        if self.outcome == "none":
            return None
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        response = FakeResponse(self.body, chunk=100)
        response.status = 200
        response.headers["X-Reply"] = "yes"
        return _Closing(response)


class _Closing:
    def __init__(self, response) -> None:
        self.response = response

    def __enter__(self):
        return self.response

    def __exit__(self, *exc_info):
        return None

    def __getattr__(self, name):
        return getattr(self.response, name)


def exchange(opener, method="POST", body=b"", headers=(), timeout=7.5):
    request = HttpRequest(method=method, url="https://as.example:8443/t", headers=headers,
                          body=body)
    attempt = transport_module._Attempt()
    return transport_module._exchange(opener, request, "as.example:8443", attempt, timeout, 100)


@pytest.mark.parametrize(
    ("method", "body", "sent"),
    [
        ("GET", b"", None),
        ("DELETE", b"", None),
        ("GET", b"q", b"q"),
        ("POST", b"", b""),
        ("REPORT", b"", b""),
        ("POST", b"a=b", b"a=b"),
    ],
)
def test_only_bodyless_methods_with_an_empty_body_send_no_body(method, body, sent):
    opener = FakeOpener()
    response = exchange(opener, method=method, body=body)
    (req, timeout), = opener.calls
    assert req.data == sent
    assert req.get_method() == method
    assert timeout == 7.5
    assert (response.status, response.body, response.header("x-reply")) == (200, b"{}", "yes")


def test_headers_are_handed_to_urllib_merged():
    opener = FakeOpener()
    exchange(opener, headers=(("Accept", "a"), ("accept", "b"), ("X-K", "v")))
    (req, _), = opener.calls
    assert req.get_header("Accept") == "a, b"
    assert req.get_header("X-k") == "v"


def test_no_handler_for_the_url_is_a_transport_error():
    with pytest.raises(TransportError) as info:
        exchange(FakeOpener("none"))
    assert str(info.value) == "POST as.example:8443: no handler for this URL"


def test_a_value_error_from_http_client_is_invalid_input_without_the_value():
    opener = FakeOpener(ValueError("Invalid header value b'secret\\r\\n'"))
    with pytest.raises(InvalidInput) as info:
        exchange(opener)
    assert str(info.value) == "POST as.example:8443: request has an invalid URL or header value"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_connection_factories_pass_the_timeout_and_the_attempt_on():
    context = ssl.create_default_context()
    attempt = transport_module._Attempt()
    req = transport_module._AttemptRequest(attempt, url="http://127.0.0.1:9/", method="GET")
    made = []
    for handler, opener_name in (
        (transport_module._HTTPHandler(), "http_open"),
        (transport_module._HTTPSHandler(context), "https_open"),
    ):
        def do_open(factory, request, **kwargs):
            made.append((factory("127.0.0.1", timeout=4.5), kwargs))

        handler.do_open = do_open  # type: ignore[method-assign]
        getattr(handler, opener_name)(req)
    (plain, plain_kwargs), (tls, tls_kwargs) = made
    assert isinstance(plain, transport_module._TrackedHTTPConnection)
    assert isinstance(tls, transport_module._TrackedHTTPSConnection)
    for conn in (plain, tls):
        assert conn.timeout == 4.5
        assert conn.attempt is attempt
    assert plain_kwargs == {}
    assert tls_kwargs == {"context": context}


# --- send(): limits, proxies and the worker thread -------------------------------------


class _ProxyHandler(BaseHTTPRequestHandler):
    """Plays an HTTP proxy: answers every request itself, with the URL it was asked for."""

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        server = self.server
        server.worker_threads.extend(
            (t.name, t.daemon) for t in threading.enumerate() if t.name.startswith("roomsecrets")
        )
        if self.path.endswith("/drip"):
            # A byte every 50 ms: no single read times out, the whole exchange does.
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                if server.release.wait(0.05):
                    return
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
            return
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def proxy(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
    server.daemon_threads = True
    server.release = threading.Event()
    server.worker_threads = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("http_proxy", url)
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def send(transport, url, timeout=5.0, max_body=1000):
    return asyncio.run(
        transport.send(HttpRequest(method="GET", url=url), timeout=timeout, max_body=max_body)
    )


def test_a_non_loopback_host_goes_through_the_environment_proxy(proxy):
    response = send(UrllibTransport(), "http://as.example.invalid/path?q=1")
    assert response.status == 200
    assert response.body == b"http://as.example.invalid/path?q=1"


def test_each_request_runs_in_a_daemon_thread_named_after_the_host(proxy):
    send(UrllibTransport(), "http://as.example.invalid:8080/x")
    assert proxy.worker_threads == [("roomsecrets-http as.example.invalid:8080", True)]


def test_a_timeout_names_the_method_host_and_limit(proxy):
    with pytest.raises(ProviderTimeout) as info:
        send(UrllibTransport(), "http://as.example.invalid/drip", timeout=0.3)
    assert str(info.value) == "GET as.example.invalid: no complete response within 0.3 s"


def test_send_refuses_bad_limits_in_so_many_words():
    transport = UrllibTransport()
    for timeout in (0, -1, math.inf, math.nan, "5", None, True):
        with pytest.raises(InvalidInput) as info:
            send(transport, "http://127.0.0.1:9/", timeout=timeout)
        assert str(info.value) == "timeout must be a positive, finite number of seconds"
    for max_body in (-1, 1.5, "10", None):
        with pytest.raises(InvalidInput) as info:
            send(transport, "http://127.0.0.1:9/", max_body=max_body)
        assert str(info.value) == "max_body must be an int >= 0"
    # A cap of zero bytes is allowed: the next check to fail is the URL's.
    with pytest.raises(InvalidInput) as info:
        send(transport, "ftp://127.0.0.1/", max_body=0)
    assert str(info.value) == "only http and https URLs can be sent, not 'ftp'"


def test_a_custom_ssl_context_is_used_with_and_without_a_proxy():
    context = ssl.create_default_context()
    transport = UrllibTransport(ssl_context=context)
    for opener in (transport._direct, transport._proxied):
        (handler,) = [h for h in opener.handlers if isinstance(h, transport_module._HTTPSHandler)]
        assert handler._ssl_context is context
    assert repr(transport) == "UrllibTransport(trust_env=True)"
    assert repr(UrllibTransport(trust_env=False)) == "UrllibTransport(trust_env=False)"


def test_a_body_over_the_cap_in_an_exchange_names_the_method_and_host():
    with pytest.raises(ResponseTooLarge) as info:
        exchange(FakeOpener(body=b"x" * 101))
    assert str(info.value) == "POST as.example:8443: response body exceeds 100 bytes"


@pytest.mark.parametrize(
    ("failure", "text"),
    [
        (ConnectionRefusedError(111, "x"), "POST as.example:8443: connection refused"),
        (
            urllib.error.URLError(socket.gaierror(-2, "x")),
            "POST as.example:8443: name resolution failed",
        ),
        (
            http.client.BadStatusLine("x"),
            "POST as.example:8443: connection failed (BadStatusLine)",
        ),
    ],
)
def test_a_network_failure_in_an_exchange_names_the_method_and_host(failure, text):
    with pytest.raises(TransportError) as info:
        exchange(FakeOpener(failure))
    assert str(info.value) == text
    assert info.value.__cause__ is failure


def test_send_hands_its_timeout_and_cap_to_the_worker(monkeypatch):
    seen = []

    def fake_exchange(opener, request, host, attempt, timeout, max_body):
        seen.append((host, timeout, max_body))
        return HttpResponse(status=204)

    monkeypatch.setattr(transport_module, "_exchange", fake_exchange)
    response = send(UrllibTransport(), "http://127.0.0.1:9/x", timeout=2.5, max_body=77)
    assert response.status == 204
    assert seen == [("127.0.0.1:9", 2.5, 77)]
