"""``AiohttpTransport``: the :class:`~roomsecrets.core.ports.HttpTransport` port on aiohttp.

The rules it keeps are the core transport's (``roomsecrets.core.oauth.urllib_transport``),
with one pooled connection set instead of a thread per request:

- **One pooled** ``ClientSession``, made on the first :meth:`AiohttpTransport.send`
  inside the running event loop (a session belongs to one loop) and closed by
  :meth:`AiohttpTransport.aclose`; a later ``send`` opens a new one. A connection
  idle for over a second is not reused (see ``_IDLE_REUSE_LIMIT``): a provider may
  close it just as a POST is sent on it.
- **Never follows redirects; every status is a response.** A token endpoint that
  redirects is a misconfiguration, and replaying a POST carrying a code or a
  client secret to wherever ``Location`` points would leak it.
- **TLS is verified** (the system trust store, or the ``ssl_context`` given).
- **Two timeouts:** ``connect_timeout`` bounds opening a connection (TCP, proxy,
  TLS); the ``timeout`` of each ``send`` is a deadline for the whole exchange,
  body included, so a server that drips one byte per second cannot hold the caller.
- **Bodies are capped.** A declared ``Content-Length`` above ``max_body`` fails
  before anything is read; otherwise at most ``max_body + 1`` bytes are read and
  the connection is closed, not drained, when there are more.
- **Errors are ours and say little.** Every aiohttp and asyncio failure becomes a
  :mod:`roomsecrets.core.errors` class naming the method, the host and the kind of
  failure, never the path, query, headers or body. The distinction the retry
  policy relies on is kept: :class:`~roomsecrets.core.errors.ConnectError` means
  the request never left (refused, DNS, TLS handshake or certificate, connect
  timeout: safe to send again); any later failure is a
  :class:`~roomsecrets.core.errors.TransportError` or
  :class:`~roomsecrets.core.errors.ProviderTimeout`: the provider may have acted on it.
- **No cookies, no automatic content headers, no compression asked for**, so what
  is sent is what the core built (plus ``User-Agent: roomsecrets``). A body the
  server compressed anyway is returned as sent, never inflated (1 MB of gzip
  can hold a gigabyte).
"""

from __future__ import annotations

import asyncio
import math
import ssl
import urllib.parse
import urllib.request
from typing import Optional, Union

import aiohttp
import yarl

from ..core.errors import (
    ConfigurationError,
    ConnectError,
    InvalidInput,
    ProviderTimeout,
    ResponseTooLarge,
    RoomSecretsError,
    TransportError,
)
from ..core.oauth.endpoints import is_loopback_host
from ..core.oauth.http import HttpRequest, HttpResponse

__all__ = ["AiohttpTransport", "translate_aiohttp_error"]

_READ_CHUNK = 64 * 1024
_USER_AGENT = "roomsecrets"
#: Seconds a pooled connection may sit idle and still be reused. A server closes an
#: idle keep-alive connection when it likes (RFC 9112 §9.5; Node's default is 5 s,
#: gunicorn's 2 s), and a POST sent as that close crosses it fails with nothing to
#: say whether the provider acted on it. It is never sent again (RFC 9112 §9.3.1: a
#: refresh token may have been used), so the caller would get a TransportError for a
#: provider that is fine. Idle longer than this, a new connection is opened instead;
#: the requests of one flow (discovery, registration, token) still share one.
_IDLE_REUSE_LIMIT = 1.0
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
# RFC 9110 §5.1 field names are tokens; values must not break the header block.
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class AiohttpTransport:
    """Send HTTP requests through one pooled ``aiohttp.ClientSession``.

    Args:
        ssl_context: verifies HTTPS servers (default: the system's trust store).
        trust_env: when True (default), requests to non-loopback hosts use the
            proxies named by ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``, as
            curl does. Requests to loopback hosts never use a proxy.
        connect_timeout: seconds allowed to open a connection (capped by each
            request's own ``timeout``).
        limit: the most connections open at once (all hosts together).
        idle_reuse_limit: seconds a pooled connection may sit idle and still be
            reused (default 1 s; see ``_IDLE_REUSE_LIMIT``). Raise it only for a
            caller that sends nothing it cannot send again (idempotent reads).

    Use it as ``async with AiohttpTransport() as transport:`` or call
    :meth:`aclose` when done. Example::

        async with AiohttpTransport() as transport:
            response = await transport.send(
                HttpRequest(method="GET", url="https://example.com/"),
                timeout=10.0, max_body=1_000_000,
            )
    """

    def __init__(
        self,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
        trust_env: bool = True,
        connect_timeout: float = 10.0,
        limit: int = 100,
        idle_reuse_limit: float = _IDLE_REUSE_LIMIT,
    ) -> None:
        if not (connect_timeout > 0 and math.isfinite(connect_timeout)):
            raise InvalidInput("connect_timeout must be a positive, finite number of seconds")
        if limit < 1:
            raise InvalidInput("limit must be at least 1")
        if not (idle_reuse_limit > 0 and math.isfinite(idle_reuse_limit)):
            raise InvalidInput("idle_reuse_limit must be a positive, finite number of seconds")
        self._ssl: Union[ssl.SSLContext, bool] = True if ssl_context is None else ssl_context
        self._trust_env = trust_env
        self._connect_timeout = connect_timeout
        self._limit = limit
        self._idle_reuse_limit = idle_reuse_limit
        self._session: Optional[aiohttp.ClientSession] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def __repr__(self) -> str:
        return f"AiohttpTransport(trust_env={self._trust_env})"

    async def __aenter__(self) -> AiohttpTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections; a later :meth:`send` opens new ones."""
        session, self._session, self._loop = self._session, None, None
        if session is not None:
            await session.close()

    def _session_for(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        session = self._session
        if session is not None and not session.closed:
            if self._loop is loop:
                return session
            if self._loop is not None and not self._loop.is_closed():
                raise ConfigurationError(
                    "this AiohttpTransport is in use by another event loop; "
                    "make one transport per loop"
                )
            # Its loop is gone, and its connections with it: nothing to close.
            session.detach()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self._limit, ssl=self._ssl, keepalive_timeout=self._idle_reuse_limit
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": _USER_AGENT},
            # Sent only when the core put them in the request.
            skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,  # proxies are chosen per request (_proxy_for)
            raise_for_status=False,
            # A Content-Encoding we never asked for is not decoded: the body comes
            # back as sent, as from the core transport. aiohttp <= 3.13.2 inflated
            # it without a bound (GHSA-6mq8-rvhq-8wgg), whatever our cap.
            auto_decompress=False,
        )
        self._loop = loop
        return self._session

    async def send(self, request: HttpRequest, *, timeout: float, max_body: int) -> HttpResponse:
        """Send ``request``; return the response, whatever its status.

        Raises :class:`~roomsecrets.core.errors.ProviderTimeout` when no complete
        response arrived within ``timeout`` seconds,
        :class:`~roomsecrets.core.errors.ConnectError` when no connection could be
        made (the request was not sent),
        :class:`~roomsecrets.core.errors.TransportError` on other network failures,
        :class:`~roomsecrets.core.errors.ResponseTooLarge` when the body is longer
        than ``max_body`` bytes, and :class:`~roomsecrets.core.errors.InvalidInput`
        for a URL that is not ``http``/``https`` with a host or a header that
        cannot be sent.
        """
        if not (timeout > 0 and math.isfinite(timeout)):
            raise InvalidInput("timeout must be a positive, finite number of seconds")
        if max_body < 0:
            raise InvalidInput("max_body must not be negative")
        host, hostname, loopback = _check_url(request.url)
        headers = _merged_headers(request)
        what = f"{request.method} {host}"
        data: Optional[bytes] = request.body
        if not request.body and request.method in _BODYLESS_METHODS:
            data = None
        proxy = None if loopback or not self._trust_env else _proxy_for(request.url, hostname)
        session = self._session_for(asyncio.get_running_loop())
        try:
            async with session.request(
                request.method,
                # encoded=True: send the URL exactly as the core built it.
                yarl.URL(request.url, encoded=request.url.isascii()),
                headers=headers,
                data=data,
                allow_redirects=False,
                proxy=proxy,
                timeout=aiohttp.ClientTimeout(
                    total=timeout, sock_connect=min(self._connect_timeout, timeout)
                ),
            ) as response:
                status = response.status
                response_headers = tuple(response.headers.items())
                try:
                    body = await _read_capped(response, what, status, max_body)
                except BaseException:
                    _abandon(response)
                    raise
        except RoomSecretsError:
            raise
        except BaseException as exc:
            error = translate_aiohttp_error(what, exc, timeout)
            if error is None:
                raise
            raise error from None
        return HttpResponse(status=status, headers=response_headers, body=body)


async def _read_capped(
    response: aiohttp.ClientResponse, what: str, status: int, max_body: int
) -> bytes:
    """Read the body, never holding more than ``max_body + 1`` bytes."""
    too_large = ResponseTooLarge(f"{what}: response body exceeds {max_body} bytes", status=status)
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_body:
        raise too_large  # fail before reading anything
    chunks: list[bytes] = []
    size = 0
    while size <= max_body:
        chunk = await response.content.read(min(_READ_CHUNK, max_body + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise too_large


def _abandon(response: aiohttp.ClientResponse) -> None:
    """Drop a connection whose body we stop reading (too large, timeout, cancel).

    Aborted, not closed: a graceful close would drain the rest into the pool or,
    over TLS, wait for the peer's close_notify, which a stalled server never sends.
    """
    connection = response.connection
    transport = None if connection is None else connection.transport
    if transport is not None:
        transport.abort()
    response.close()


def _check_url(url: str) -> tuple[str, str, bool]:
    """Return (host label for messages, hostname, whether the host is loopback)."""
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
    return label, hostname, is_loopback_host(hostname)


def _merged_headers(request: HttpRequest) -> dict[str, str]:
    """The request's headers, repeated names joined with commas (RFC 9110 §5.3).

    Refuses (without echoing the value, which may be a secret) anything that
    could break the header block.
    """
    merged: dict[str, tuple[str, list[str]]] = {}
    for name, value in request.headers:
        if not name or not _TOKEN_CHARS.issuperset(name):
            raise InvalidInput("request has an invalid header name")
        if any(c in value for c in "\r\n\x00") or not value.isascii():
            raise InvalidInput(f"request header {name!r} has an invalid value")
        merged.setdefault(name.lower(), (name, []))[1].append(value)
    return {name: ", ".join(values) for name, values in merged.values()}


def _proxy_for(url: str, hostname: str) -> Optional[str]:
    """The environment's proxy for ``url``, as urllib and curl choose it."""
    if urllib.request.proxy_bypass(hostname):
        return None
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    proxies = urllib.request.getproxies_environment()
    return proxies.get(scheme) or proxies.get("all")


def translate_aiohttp_error(
    what: str, exc: BaseException, timeout: float
) -> Optional[RoomSecretsError]:
    """Our error for an aiohttp or asyncio failure (None: not ours to translate).

    ``what`` opens the message (e.g. ``"POST example.com"``); ``timeout`` is the
    deadline a timeout message names.

    Order matters: aiohttp's classes inherit from each other and from OSError,
    ssl errors and asyncio.TimeoutError. Messages name the kind of failure only;
    aiohttp's own messages quote the URL, which may carry a code.
    """
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ConnectError(f"{what}: TLS certificate verification failed")
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return ConnectError(f"{what}: TLS handshake failed")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ConnectError(f"{what}: name resolution failed")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return ConnectError(f"{what}: proxy connection failed")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return ConnectError(f"{what}: connection refused")
        return ConnectError(f"{what}: connection failed ({type(exc.os_error).__name__})")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectError(f"{what}: connect timed out")
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return ProviderTimeout(f"{what}: no complete response within {timeout:g} s")
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        # The proxy refused to open the tunnel: nothing reached the provider.
        return ConnectError(f"{what}: proxy refused the connection (HTTP {exc.status})")
    if isinstance(exc, aiohttp.InvalidURL):
        return InvalidInput(f"{what}: request URL cannot be sent")
    if isinstance(exc, aiohttp.ClientResponseError):
        return TransportError(f"{what}: malformed HTTP response")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(f"{what}: response body cut short")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return TransportError(f"{what}: connection failed ({type(exc).__name__})")
    if isinstance(exc, ValueError):
        # aiohttp refuses bad header values with a message quoting the value.
        return InvalidInput(f"{what}: request has an invalid URL or header value")
    return None
