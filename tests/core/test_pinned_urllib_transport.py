"""Pinned: how UrllibTransport names failures, checks URLs and releases sockets.

These drive the transport's small helpers directly with made-up failures; the
end-to-end behaviour against a real server is in test_urllib_transport.py.
"""

from __future__ import annotations

import http.client
import socket
import ssl

import pytest

from roomsecrets.core import urllib_transport as transport_module
from roomsecrets.core.errors import ConnectError, InvalidInput, ProviderTimeout, TransportError

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
        ("http://api.localhost/t", "api.localhost", True),
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
    from roomsecrets.core.http import HttpRequest

    request = HttpRequest(
        method="GET",
        url="https://as.example/",
        headers=(("Accept", "a/b"), ("X-One", "1"), ("accept", "c/d"), ("ACCEPT", "e/f")),
    )
    assert transport_module._merged_headers(request) == [("Accept", "a/b, c/d, e/f"), ("X-One", "1")]
