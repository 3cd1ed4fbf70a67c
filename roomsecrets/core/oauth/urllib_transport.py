"""``UrllibTransport``: the core's stdlib :class:`~roomsecrets.core.ports.HttpTransport`.

How it works: each :meth:`UrllibTransport.send` runs one blocking
``urllib.request`` exchange in its own daemon thread and awaits the outcome
with :func:`asyncio.wait_for`. The rules it keeps:

- **Never follows redirects; every status is a response.** The opener is built
  by hand from the HTTP and HTTPS handlers only: no ``HTTPErrorProcessor`` (so
  no ``HTTPError`` is raised for 4xx/5xx) and no ``HTTPRedirectHandler`` (so a
  3xx comes back as it is). A token endpoint that redirects is a
  misconfiguration, and replaying a POST carrying a code or a client secret to
  wherever a ``Location`` points would leak it.
- **Interim answers are skipped.** Every 1xx but 101 (a 102 Processing, a
  103 Early Hints) is read past to the final answer (RFC 9110 §15.2);
  http.client on its own skips only 100 Continue.
- **The timeout is a deadline for the whole exchange.** The socket timeout
  bounds each connect and each read; ``wait_for`` bounds the sum, so a server
  that drips one byte per second cannot hold the caller past ``timeout``. When
  the caller gives up (timeout or cancellation) the socket is shut down from
  the event loop's thread, which wakes the worker at once, so abandoned threads
  do not pile up behind a slow server.
- **Bodies are capped.** At most ``max_body + 1`` bytes are ever read; more
  raises :class:`~roomsecrets.core.errors.ResponseTooLarge`.
- **Errors are ours and say little.** Failures become
  :class:`~roomsecrets.core.errors.ProviderTimeout` or
  :class:`~roomsecrets.core.errors.TransportError` naming the method, the host
  and the kind of failure, never the path, query, headers or body (they may
  carry codes, tokens or client credentials).

Daemon threads rather than the loop's default executor: ``asyncio.run`` joins
the default executor on exit (without a time limit before Python 3.12), so one
thread stuck in DNS resolution would hang the program's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import math
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional, Union

from ..errors import (
    ConnectError,
    InvalidInput,
    ProviderTimeout,
    ResponseTooLarge,
    RoomSecretsError,
    TransportError,
)
from .endpoints import is_loopback_host
from .http import HttpRequest, HttpResponse

__all__ = ["UrllibTransport"]

_READ_CHUNK = 64 * 1024
_USER_AGENT = "roomsecrets"
# Methods that carry no request body unless one is given; for the others urllib
# must send ``Content-Length: 0`` rather than nothing.
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


class UrllibTransport:
    """Send HTTP requests with ``urllib.request`` in a worker thread.

    ``ssl_context`` verifies HTTPS servers (default:
    :func:`ssl.create_default_context`, the system's trust store).
    ``trust_env``: when True (default), requests to non-loopback hosts use the
    proxies named by ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``, as curl
    does. Requests to loopback hosts never use a proxy.

    :meth:`send` raises :class:`~roomsecrets.core.errors.InvalidInput` for a
    URL that is not ``http``/``https`` with a host, or for a header value
    ``http.client`` refuses (e.g. one containing a line break).

    Example::

        transport = UrllibTransport()
        response = await transport.send(
            HttpRequest(method="GET", url="https://example.com/"),
            timeout=10.0, max_body=1_000_000,
        )
    """

    def __init__(
        self, *, ssl_context: Optional[ssl.SSLContext] = None, trust_env: bool = True
    ) -> None:
        # Loopback traffic is plain http carrying codes and secrets, and a proxy
        # could not reach our 127.0.0.1 anyway: an explicit empty ProxyHandler
        # stops urllib from reading HTTP_PROXY and friends for these hosts.
        self._direct = _build_opener(urllib.request.ProxyHandler({}), ssl_context)
        self._proxied = (
            _build_opener(urllib.request.ProxyHandler(), ssl_context) if trust_env else self._direct
        )

    def __repr__(self) -> str:
        return f"UrllibTransport(trust_env={self._proxied is not self._direct})"

    async def send(self, request: HttpRequest, *, timeout: float, max_body: int) -> HttpResponse:
        """Send ``request``; return the response, whatever its status.

        Raises :class:`~roomsecrets.core.errors.ProviderTimeout` when no complete
        response arrived within ``timeout`` seconds,
        :class:`~roomsecrets.core.errors.TransportError` on network failure and
        :class:`~roomsecrets.core.errors.ResponseTooLarge` when the body is
        longer than ``max_body`` bytes.
        """
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not (timeout > 0 and math.isfinite(timeout))
        ):
            raise InvalidInput("timeout must be a positive, finite number of seconds")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise InvalidInput("max_body must be an int >= 0")
        host, loopback = _check_url(request.url)
        opener = self._direct if loopback else self._proxied
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[HttpResponse] = loop.create_future()
        attempt = _Attempt()

        def work() -> None:
            result: Union[HttpResponse, BaseException]
            try:
                result = _exchange(opener, request, host, attempt, timeout, max_body)
            except BaseException as exc:  # handed to the awaiting task, not swallowed
                result = exc
            finally:
                attempt.finish()
            # RuntimeError: the loop closed while we worked, so nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, outcome, result)

        threading.Thread(target=work, name=f"roomsecrets-http {host}", daemon=True).start()
        try:
            return await asyncio.wait_for(outcome, timeout)
        except asyncio.TimeoutError:
            raise ProviderTimeout(
                f"{request.method} {host}: no complete response within {timeout:g} s"
            ) from None
        finally:
            attempt.abandon()


def _settle(outcome: asyncio.Future[HttpResponse], result: object) -> None:
    if outcome.done():  # the caller timed out or was cancelled
        return
    if isinstance(result, HttpResponse):
        outcome.set_result(result)
    elif isinstance(result, BaseException):
        outcome.set_exception(result)


def _check_url(url: str) -> tuple[str, bool]:
    """Return (host label for messages, whether the host is loopback)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("request URL cannot be parsed") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput(f"only http and https URLs can be sent, not {parts.scheme!r}")
    hostname = parts.hostname
    if not hostname:
        raise InvalidInput("request URL has no host")
    label = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None:
        label = f"{label}:{port}"
    return label, is_loopback_host(hostname)


class _Attempt:
    """One send's socket, shared between the worker and the event loop's thread.

    The worker registers a duplicate of the connection's file descriptor as soon
    as it is connected; :meth:`abandon` shuts the connection down through it,
    which makes the worker's blocked read return at once. Owning a duplicate
    means the descriptor we shut down is never one the worker has already
    closed and the OS has reused.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._abandoned = False

    def connected(self, sock: socket.socket) -> None:
        dup = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
        with self._lock:
            if not self._abandoned:
                self._sock = dup
                return
        _shut(dup)  # the caller gave up while we were connecting

    def finish(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            sock, self._sock = self._sock, None
        if sock is not None:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already disconnected
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class _AttemptRequest(urllib.request.Request):
    """A urllib request that carries its :class:`_Attempt` to the handlers."""

    def __init__(self, attempt: _Attempt, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attempt = attempt


class _FinalResponse(http.client.HTTPResponse):
    """A response that skips every interim 1xx answer, not only 100 Continue.

    RFC 9110 §15.2: "A client MUST be able to parse one or more 1xx responses
    received prior to a final response". http.client skips 100 only, and would
    return a 102 Processing or a 103 Early Hints (RFC 8297) as the answer: the
    tokens of a code the provider has just redeemed would be lost. 101 stays
    final: we never ask to switch protocols.
    """

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 102 <= status <= 199:
                return version, status, reason  # 100: begin() skips it itself
            http.client.parse_headers(self.fp)  # the interim header block, dropped


class _TrackedHTTPConnection(http.client.HTTPConnection):
    attempt: _Attempt
    response_class = _FinalResponse

    def connect(self) -> None:
        super().connect()
        self.attempt.connected(self.sock)


class _TrackedHTTPSConnection(http.client.HTTPSConnection):
    attempt: _Attempt
    response_class = _FinalResponse

    def connect(self) -> None:
        super().connect()  # TCP, the proxy tunnel if any, then TLS
        self.attempt.connected(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        assert isinstance(req, _AttemptRequest)
        attempt = req.attempt

        def connection(host: str, /, **kwargs: Any) -> http.client.HTTPConnection:
            conn = _TrackedHTTPConnection(host, **kwargs)
            conn.attempt = attempt
            return conn

        return self.do_open(connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, context: Optional[ssl.SSLContext]) -> None:
        super().__init__()
        self._ssl_context = context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        assert isinstance(req, _AttemptRequest)
        attempt = req.attempt

        def connection(host: str, /, **kwargs: Any) -> http.client.HTTPConnection:
            conn = _TrackedHTTPSConnection(host, **kwargs)
            conn.attempt = attempt
            return conn

        context = self._ssl_context or _default_ssl_context()
        return self.do_open(connection, req, context=context)


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # Made on first https use and shared: loading the trust store takes ~0.1 s,
    # wasted on transports that only ever talk to loopback over http.
    return ssl.create_default_context()


def _build_opener(
    proxies: urllib.request.ProxyHandler, context: Optional[ssl.SSLContext]
) -> urllib.request.OpenerDirector:
    # Built by hand, not with build_opener(): no redirect handler, no error
    # processor, no file:, ftp: or data: handlers (see the module docstring).
    opener = urllib.request.OpenerDirector()
    handler: urllib.request.BaseHandler
    for handler in (proxies, _HTTPHandler(), _HTTPSHandler(context)):
        opener.add_handler(handler)
    opener.addheaders = [("User-Agent", _USER_AGENT)]
    return opener


def _exchange(
    opener: urllib.request.OpenerDirector,
    request: HttpRequest,
    host: str,
    attempt: _Attempt,
    timeout: float,
    max_body: int,
) -> HttpResponse:
    """Run one request in the worker thread; raise only roomsecrets errors."""
    what = f"{request.method} {host}"
    data: Optional[bytes] = request.body
    if not request.body and request.method in _BODYLESS_METHODS:
        data = None
    req = _AttemptRequest(attempt, url=request.url, data=data, method=request.method)
    for name, value in _merged_headers(request):
        req.add_header(name, value)
    try:
        response = opener.open(req, timeout=timeout)
        if response is None:  # no handler claimed the URL; _check_url makes this unreachable
            raise TransportError(f"{what}: no handler for this URL")
        with response:
            status = response.status
            headers = tuple(response.headers.items())
            try:
                body = _read_capped(response, what, status, max_body)
            except ValueError:
                # The answer's framing, not our request: a Content-Length that
                # passes isdigit() but not int() ("²"), a negative chunk size
                # (http.client 3.11). RFC 9112 §6.3: an unrecoverable error.
                raise TransportError(f"{what}: malformed HTTP response") from None
    except RoomSecretsError:
        raise
    # No HTTPError branch: without an error processor urllib raises none, and
    # every status arrives above as a response.
    except urllib.error.URLError as exc:
        raise _network_error(what, exc.reason) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(what, exc) from exc
    except ValueError:
        # http.client refuses bad header values and URLs with a ValueError whose
        # message quotes the value, which may be a secret: do not chain it.
        raise InvalidInput(f"{what}: request has an invalid URL or header value") from None
    return HttpResponse(status=status, headers=headers, body=body)


def _merged_headers(request: HttpRequest) -> list[tuple[str, str]]:
    # urllib keeps one value per header name; RFC 9110 §5.3 allows joining
    # repeated request fields with commas.
    merged: dict[str, tuple[str, list[str]]] = {}
    for name, value in request.headers:
        merged.setdefault(name.lower(), (name, []))[1].append(value)
    return [(name, ", ".join(values)) for name, values in merged.values()]


def _read_capped(
    response: http.client.HTTPResponse, what: str, status: int, max_body: int
) -> bytes:
    """Read the body, never holding more than ``max_body + 1`` bytes."""
    too_large = ResponseTooLarge(f"{what}: response body exceeds {max_body} bytes", status=status)
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_body:
        raise too_large  # fail before reading anything
    chunks: list[bytes] = []
    size = 0
    while size <= max_body:
        chunk = response.read(min(_READ_CHUNK, max_body + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise too_large


def _network_error(what: str, reason: object) -> TransportError:
    """Name the failure by its kind; OS and TLS messages carry no request data."""
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return ProviderTimeout(f"{what}: timed out")
    if isinstance(reason, ConnectionRefusedError):
        return ConnectError(f"{what}: connection refused")
    if isinstance(reason, ssl.SSLCertVerificationError):
        return ConnectError(f"{what}: TLS certificate verification failed")
    if isinstance(reason, ssl.SSLError):
        return TransportError(f"{what}: TLS failure ({type(reason).__name__})")
    if isinstance(reason, socket.gaierror):
        return ConnectError(f"{what}: name resolution failed")
    if isinstance(reason, (ConnectionError, http.client.HTTPException)):
        return TransportError(f"{what}: connection failed ({type(reason).__name__})")
    if isinstance(reason, OSError):
        return TransportError(f"{what}: network error ({type(reason).__name__})")
    return TransportError(f"{what}: request failed")
