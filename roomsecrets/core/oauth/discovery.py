"""Learning a provider's endpoints from its issuer (RFC 8414; OpenID Connect Discovery 1.0).

How it works:

* :func:`metadata_urls` says where an issuer's metadata may live, in the order
  to try: the RFC 8414 §3.1 URL (``/.well-known/oauth-authorization-server``
  inserted between the host and the issuer's path), then the OpenID Connect
  Discovery 1.0 §4 URL (``/.well-known/openid-configuration`` appended to the
  issuer). :func:`build_metadata_request` builds the GET for one of them.
* :func:`parse_metadata_response` turns the answer into a
  :class:`ProviderMetadata` or a typed error. A 4xx means "not published here"
  (:class:`~.errors.ProviderMetadataNotFound`: try the next URL); a document
  whose ``issuer`` is not exactly the one asked for is refused (RFC 8414 §3.3:
  its data "MUST NOT be used"), and so is one naming an endpoint that is not an
  absolute https URL (http only on loopback, the rule of :mod:`.endpoints`).
* :func:`resolve_endpoints` combines the metadata with the endpoints a caller
  gave: an explicit endpoint always wins.
* :class:`MetadataCache` keeps each issuer's metadata for a while (one hour by
  default, by the injected clock), a failure only briefly, and makes concurrent
  lookups of one issuer share one fetch. It does no I/O itself: the service
  injects the fetch (which sends these requests through its transport).

Everything but :class:`MetadataCache` is sans-I/O: data in, data out.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable
from typing import Any, Callable, Generic, Optional, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..errors import (
    InvalidInput,
    InvalidProviderMetadata,
    ProviderMetadataNotFound,
    ProviderUnavailable,
    ResponseTooLarge,
    RoomSecretsError,
    safe_text,
)
from ..inputs import check_url
from ..ports import Clock
from ..values import frozen_value
from .endpoints import check_endpoint
from .http import Headers, HttpRequest, header_value
from .token_request import ClientAuthMethod
from .token_response import parse_retry_after

__all__ = [
    "MAX_METADATA_BYTES",
    "MetadataCache",
    "ProviderMetadata",
    "build_metadata_request",
    "check_issuer",
    "metadata_urls",
    "parse_metadata_response",
    "resolve_endpoints",
]

#: Metadata documents are a few KB (a large OpenID provider's is ~10 KB); bigger
#: answers are refused unparsed.
MAX_METADATA_BYTES = 256 * 1024

#: RFC 8414 §3: the well-known URI suffix of OAuth 2.0 authorization server metadata.
_OAUTH_SUFFIX = "/.well-known/oauth-authorization-server"
#: OpenID Connect Discovery 1.0 §4.
_OPENID_SUFFIX = "/.well-known/openid-configuration"

_ENDPOINT_FIELDS = (
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "registration_endpoint",
)
_LIST_FIELDS = (
    "token_endpoint_auth_methods_supported",
    "revocation_endpoint_auth_methods_supported",
    "code_challenge_methods_supported",
)


@frozen_value
class ProviderMetadata:
    """What an issuer's metadata document says, checked.

    ``issuer`` equals the issuer asked for, character for character (RFC 8414
    §3.3). An endpoint the document does not name is None. The ``*_supported``
    lists are None when the document leaves them out (or gives something other
    than a list of strings). ``iss_parameter_supported`` is RFC 9207 §3's
    ``authorization_response_iss_parameter_supported``: True only for a JSON
    ``true``.
    """

    issuer: str
    authorization_endpoint: Optional[str] = None
    token_endpoint: Optional[str] = None
    revocation_endpoint: Optional[str] = None
    iss_parameter_supported: bool = False
    token_endpoint_auth_methods_supported: Optional[tuple[str, ...]] = None
    revocation_endpoint_auth_methods_supported: Optional[tuple[str, ...]] = None
    code_challenge_methods_supported: Optional[tuple[str, ...]] = None
    #: RFC 8414 §2 / RFC 7591 §3: where clients register themselves (the MCP broker).
    registration_endpoint: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise InvalidInput("ProviderMetadata.issuer must be a non-empty string")
        for name in _ENDPOINT_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidInput(f"ProviderMetadata.{name} must be None or a non-empty string")
        if not isinstance(self.iss_parameter_supported, bool):
            raise InvalidInput("ProviderMetadata.iss_parameter_supported must be True or False")

    def revocation_endpoint_for(self, token_endpoint: str) -> Optional[str]:
        """Where tokens from ``token_endpoint`` are revoked: the metadata's revocation
        endpoint when ``token_endpoint`` is the metadata's own, else None.

        A caller may override the token endpoint with another server's; its tokens
        must never be sent to this issuer's revocation endpoint.
        """
        return self.revocation_endpoint if token_endpoint == self.token_endpoint else None

    def secret_auth_method_for(self, token_endpoint: str) -> ClientAuthMethod:
        """How a client with a secret authenticates to ``token_endpoint`` when the
        caller did not say: ``client_secret_post`` only when this is the metadata's
        own token endpoint and its ``token_endpoint_auth_methods_supported`` lists
        post but not basic; ``client_secret_basic`` otherwise (RFC 8414 §2: the
        list's default is ``client_secret_basic``, which RFC 6749 §2.3.1 says
        servers MUST support).

        Another server's token endpoint is not described by this list.
        """
        supported = self.token_endpoint_auth_methods_supported
        if (
            token_endpoint == self.token_endpoint
            and supported is not None
            and ClientAuthMethod.CLIENT_SECRET_BASIC.value not in supported
            and ClientAuthMethod.CLIENT_SECRET_POST.value in supported
        ):
            return ClientAuthMethod.CLIENT_SECRET_POST
        return ClientAuthMethod.CLIENT_SECRET_BASIC

    def promises_iss_from(self, authorization_endpoint: str) -> bool:
        """True when answers from ``authorization_endpoint`` must carry ``iss``: the
        issuer promised it (RFC 9207 §3) and this is the issuer's own endpoint."""
        return self.iss_parameter_supported and authorization_endpoint == (
            self.authorization_endpoint
        )


def check_issuer(issuer: object, *, allow_insecure_http: bool = False) -> str:
    """``issuer`` if it can be an issuer identifier; InvalidInput otherwise.

    RFC 8414 §2: a URL with the https scheme and no query or fragment (plain
    http only on a loopback host, as for every endpoint; see :mod:`.endpoints`).
    """
    check_url(issuer, "issuer")
    assert isinstance(issuer, str)  # check_url passed
    parts = check_endpoint(issuer, what="issuer", allow_insecure_http=allow_insecure_http)
    if parts.query or "?" in issuer:
        raise InvalidInput("issuer must not contain a query (RFC 8414 §2)")
    return issuer


def metadata_urls(issuer: str) -> tuple[str, str]:
    """Where ``issuer``'s metadata may be published, in the order to try.

    >>> metadata_urls("https://as.example/tenant1")
    ('https://as.example/.well-known/oauth-authorization-server/tenant1', \
'https://as.example/tenant1/.well-known/openid-configuration')
    >>> metadata_urls("http://127.0.0.1:8080")
    ('http://127.0.0.1:8080/.well-known/oauth-authorization-server', \
'http://127.0.0.1:8080/.well-known/openid-configuration')
    """
    parts = urlsplit(issuer)
    # RFC 8414 §3.1: a terminating "/" of the path is removed, then the
    # well-known suffix goes between the host and the path.
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path
    oauth = urlunsplit((parts.scheme, parts.netloc, _OAUTH_SUFFIX + path, "", ""))
    # OpenID Connect Discovery 1.0 §4: a terminating "/" is removed, then the
    # suffix is appended to the issuer.
    base = issuer[:-1] if issuer.endswith("/") else issuer
    return oauth, base + _OPENID_SUFFIX


def build_metadata_request(url: str) -> HttpRequest:
    """The GET for one metadata URL (RFC 8414 §3.1)."""
    return HttpRequest(method="GET", url=url, headers=(("Accept", "application/json"),))


def parse_metadata_response(
    *,
    issuer: str,
    status: int,
    headers: Headers,
    body: bytes,
    now: float,
    allow_insecure_http: bool = False,
    max_body: int = MAX_METADATA_BYTES,
) -> ProviderMetadata:
    """Turn the answer to a metadata GET for ``issuer`` into :class:`ProviderMetadata`.

    Raises:
        ProviderMetadataNotFound: a 3xx or 4xx answer (not published at this URL;
            redirects are not followed).
        ProviderUnavailable: 5xx or 429 (retryable; ``retry_after`` if sent).
        ResponseTooLarge: the body is over ``max_body`` bytes.
        InvalidProviderMetadata: any other status than 200 (RFC 8414 §3.2), a
            body that is not a JSON object, an ``issuer`` other than ``issuer``
            (RFC 8414 §3.3), or an endpoint that is not an absolute https URL
            without a fragment (http allowed on loopback, or everywhere with
            ``allow_insecure_http``).
    """
    if len(body) > max_body:
        raise ResponseTooLarge(
            f"metadata of {len(body)} bytes exceeds the {max_body}-byte cap", status=status
        )
    if status >= 500 or status == 429:
        raise ProviderUnavailable(
            f"the issuer's metadata is unavailable (HTTP {status})",
            status=status,
            retry_after=parse_retry_after(header_value(headers, "Retry-After"), now),
        )
    if 400 <= status < 500:
        raise ProviderMetadataNotFound(
            f"no metadata at this well-known URL (HTTP {status})", status=status
        )
    if 300 <= status < 400:
        # Redirects are never followed (a token request must not be sent on to
        # wherever a 3xx points), so the document is not here: the next
        # well-known URL may have it, and a caller that named both endpoints
        # goes on without metadata, as after a 404.
        raise ProviderMetadataNotFound(
            f"no metadata at this well-known URL (HTTP {status}; redirects are not followed)",
            status=status,
        )
    if status != 200:
        raise InvalidProviderMetadata(
            f"the metadata answer is HTTP {status}, not 200 (RFC 8414 §3.2)", status=status
        )
    document = _json_object(body, status)
    found = document.get("issuer")
    if found != issuer:
        shown = safe_text(found, 120) if isinstance(found, str) else type(found).__name__
        raise InvalidProviderMetadata(
            f"the metadata names issuer {shown!r}, not {issuer!r}; "
            "its data must not be used (RFC 8414 §3.3)",
            status=status,
        )
    endpoints = {
        name: _endpoint(document, name, status, allow_insecure_http) for name in _ENDPOINT_FIELDS
    }
    lists = {name: _string_list(document.get(name)) for name in _LIST_FIELDS}
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"],
        revocation_endpoint=endpoints["revocation_endpoint"],
        # RFC 9207 §3: a JSON boolean; anything else is not a promise to send iss.
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported")
        is True,
        token_endpoint_auth_methods_supported=lists["token_endpoint_auth_methods_supported"],
        revocation_endpoint_auth_methods_supported=lists[
            "revocation_endpoint_auth_methods_supported"
        ],
        code_challenge_methods_supported=lists["code_challenge_methods_supported"],
        registration_endpoint=endpoints["registration_endpoint"],
    )


def _json_object(body: bytes, status: int) -> dict[str, Any]:
    import json  # here, not at the top: the user's import stays cheap (bench_import)

    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: deeply nested arrays under the size cap.
        value = None
    if not isinstance(value, dict):
        raise InvalidProviderMetadata(
            f"the metadata is not a JSON object (RFC 8414 §3.2; {len(body)} bytes)", status=status
        )
    return value


def _endpoint(
    document: dict[str, Any], name: str, status: int, allow_insecure_http: bool
) -> Optional[str]:
    value = document.get(name)
    if value is None:
        return None
    try:
        what = f"the metadata's {name}"
        check_url(value, what)
        check_endpoint(value, what=what, allow_insecure_http=allow_insecure_http)
    except InvalidInput as exc:
        raise InvalidProviderMetadata(str(exc), status=status) from None
    assert isinstance(value, str)
    return value


def _string_list(value: object) -> Optional[tuple[str, ...]]:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def resolve_endpoints(
    *,
    issuer: str,
    metadata: Optional[ProviderMetadata],
    authorization_endpoint: Optional[str],
    token_endpoint: Optional[str],
) -> tuple[str, str]:
    """``(authorization_endpoint, token_endpoint)``: each as given, else from ``metadata``.

    An explicit endpoint always wins. Raises ProviderMetadataNotFound when one
    is neither given nor in the metadata (or there is no metadata).
    """
    chosen = []
    for name, given in (
        ("authorization_endpoint", authorization_endpoint),
        ("token_endpoint", token_endpoint),
    ):
        value = given if given is not None else getattr(metadata, name, None)
        if value is None:
            where = "publishes no metadata" if metadata is None else "names none in its metadata"
            raise ProviderMetadataNotFound(
                f"{name} was not given and the issuer {issuer!r} {where}"
            )
        chosen.append(value)
    return chosen[0], chosen[1]


# --- the cache --------------------------------------------------------------------


_M = TypeVar("_M")


@frozen_value
class _Cached(Generic[_M]):
    metadata: Optional[_M]
    error: Optional[RoomSecretsError]
    stored_at: float
    expires_at: float


class MetadataCache(Generic[_M]):
    """Each issuer's :class:`ProviderMetadata`, fetched at most once per ``ttl`` seconds.

    (Generic in what it keeps: the MCP broker keeps each resource's RFC 9728
    metadata in one too, by resource URL.)

    ``fetch(issuer)`` gets the metadata (or raises a RoomSecretsError). Its
    result is kept for ``ttl`` seconds by ``clock``; a failure for
    ``failure_ttl`` seconds (0: not at all), so a broken issuer is not asked
    on every call but is asked again soon. Concurrent :meth:`get` calls for
    one issuer share one fetch, and a caller that gives up (cancelled) does
    not cancel it. At most ``max_entries`` issuers are kept.
    """

    def __init__(
        self,
        *,
        fetch: Callable[[str], Awaitable[_M]],
        clock: Clock,
        ttl: float = 3600.0,
        failure_ttl: float = 5.0,
        max_entries: int = 256,
    ) -> None:
        for name, value in (("ttl", ttl), ("failure_ttl", failure_ttl)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidInput(f"{name} must be a number of seconds >= 0")
        self._fetch = fetch
        self._clock = clock
        self._ttl = float(ttl)
        self._failure_ttl = float(failure_ttl)
        self._max_entries = max_entries
        self._entries: dict[str, _Cached[_M]] = {}
        self._inflight: dict[str, asyncio.Future[_M]] = {}

    async def get(self, issuer: str) -> _M:
        """``issuer``'s metadata, from the cache when fresh; else fetched (once)."""
        cached = self._entries.get(issuer)
        now = self._clock()
        # Before stored_at the clock was stepped back (NTP fixing a clock that
        # booted ahead): the entry's age is unknown, and trusting expires_at
        # would keep a 5-second failure for as long as the step.
        if cached is not None and cached.stored_at <= now < cached.expires_at:
            if cached.error is not None:
                raise cached.error.with_traceback(None)
            assert cached.metadata is not None
            return cached.metadata
        task = self._inflight.get(issuer)
        if task is None:
            task = asyncio.ensure_future(self._load(issuer))
            self._inflight[issuer] = task
            task.add_done_callback(functools.partial(self._forget, issuer))
        return await asyncio.shield(task)

    def forget(self, issuer: str) -> None:
        """Drop what is cached for ``issuer``; the next :meth:`get` fetches again."""
        self._entries.pop(issuer, None)

    async def _load(self, issuer: str) -> _M:
        try:
            metadata = await self._fetch(issuer)
        except RoomSecretsError as exc:
            if self._failure_ttl > 0:
                now = self._clock()
                self._keep(issuer, _Cached(metadata=None, error=exc, stored_at=now,
                                           expires_at=now + self._failure_ttl))
            raise
        now = self._clock()
        self._keep(issuer, _Cached(metadata=metadata, error=None, stored_at=now,
                                   expires_at=now + self._ttl))
        return metadata

    def _keep(self, issuer: str, entry: _Cached[_M]) -> None:
        if issuer not in self._entries and len(self._entries) >= self._max_entries:
            now = self._clock()
            for stale in [key for key, old in self._entries.items() if old.expires_at <= now]:
                del self._entries[stale]
            if len(self._entries) >= self._max_entries:
                self._entries.clear()  # bounded; refilled by the next lookups
        self._entries[issuer] = entry

    def _forget(self, issuer: str, task: asyncio.Future[_M]) -> None:
        if self._inflight.get(issuer) is task:
            del self._inflight[issuer]
        if not task.cancelled():
            task.exception()  # retrieved here: every caller may have given up
