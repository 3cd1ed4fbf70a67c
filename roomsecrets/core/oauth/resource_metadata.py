"""Learning who protects a resource: OAuth 2.0 Protected Resource Metadata (RFC 9728).

An MCP server (or any protected resource) names its authorization servers in a
metadata document. How it works:

* :func:`check_resource` checks a resource indicator: an absolute URI without a
  fragment (RFC 8707 §2), https (http only on loopback, as every endpoint).
* :func:`resource_metadata_urls` says where the document may live, in the order
  to try: the URL a 401's ``WWW-Authenticate: ... resource_metadata="..."``
  named (RFC 9728 §5.1), when the caller has one and it is on the resource's own
  origin; then the path-based well-known URL (RFC 9728 §3.1:
  ``/.well-known/oauth-protected-resource`` inserted between the host and the
  path); then the same suffix at the host root (where servers that host one
  resource per origin put it; the MCP authorization spec tries it too).
* :func:`parse_resource_metadata_response` turns an answer into
  :class:`ResourceMetadata` or a typed error; a document whose ``resource`` is
  not exactly the one asked for is refused (RFC 9728 §3.3: it "MUST NOT be used").
* :func:`resource_metadata_hint` reads the ``resource_metadata`` parameter of a
  ``WWW-Authenticate`` header (RFC 9728 §5.1).

Everything here is sans-I/O: data in, data out. The service sends the requests
(``core/broker.py``).
"""

from __future__ import annotations

import re
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

from ..errors import (
    InvalidInput,
    InvalidResourceMetadata,
    ProviderUnavailable,
    ResourceMetadataNotFound,
    ResponseTooLarge,
    safe_text,
)
from ..inputs import check_url
from ..values import frozen_value
from .endpoints import check_endpoint
from .http import Headers, HttpRequest
from .token_response import parse_retry_after

__all__ = [
    "MAX_RESOURCE_METADATA_BYTES",
    "ResourceMetadata",
    "build_resource_metadata_request",
    "check_resource",
    "parse_resource_metadata_response",
    "resource_metadata_hint",
    "resource_metadata_urls",
]

#: Resource metadata documents are small; bigger answers are refused unparsed.
MAX_RESOURCE_METADATA_BYTES = 64 * 1024

#: RFC 9728 §3: the well-known URI suffix of protected resource metadata.
_SUFFIX = "/.well-known/oauth-protected-resource"

#: At most this many authorization servers are read from one document.
_MAX_SERVERS = 16


@frozen_value
class ResourceMetadata:
    """What a protected resource's metadata says, checked.

    ``resource`` equals the resource asked for, character for character (RFC
    9728 §3.3). ``authorization_servers`` are issuer identifiers (RFC 8414), in
    the document's order. ``resource_name`` is for people (RFC 9728 §2), cut to
    120 characters; ``scopes_supported`` None when the document leaves it out.
    """

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: Optional[tuple[str, ...]] = None
    resource_name: Optional[str] = None


def check_resource(resource: object, *, allow_insecure_http: bool = False) -> str:
    """``resource`` if it can be a resource indicator; InvalidInput otherwise.

    RFC 8707 §2: an absolute URI with no fragment. Like every URL the server
    fetches, https (plain http only on a loopback host unless allowed).

    >>> check_resource("https://mcp.example.com/mcp")
    'https://mcp.example.com/mcp'
    """
    check_url(resource, "resource")
    assert isinstance(resource, str)
    # It refuses a fragment too (RFC 8707 §2 asks the same of a resource).
    check_endpoint(resource, what="resource", allow_insecure_http=allow_insecure_http)
    return resource


def resource_metadata_urls(resource: str, hint: Optional[str] = None) -> tuple[str, ...]:
    """Where ``resource``'s metadata may be published, in the order to try.

    ``hint`` is the ``resource_metadata`` URL of a 401 (RFC 9728 §5.1); it is
    tried first when it is on the resource's origin, and ignored otherwise (the
    server does not fetch URLs on other hosts an agent names).

    >>> resource_metadata_urls("https://mcp.example.com/mcp")
    ('https://mcp.example.com/.well-known/oauth-protected-resource/mcp', \
'https://mcp.example.com/.well-known/oauth-protected-resource')
    >>> resource_metadata_urls("http://127.0.0.1:8080/")
    ('http://127.0.0.1:8080/.well-known/oauth-protected-resource',)
    """
    parts = urlsplit(resource)
    # RFC 9728 §3.1: a terminating "/" of the path is removed, then the suffix
    # goes between the host and the path; the query is kept.
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path
    urls = [urlunsplit((parts.scheme, parts.netloc, _SUFFIX + path, parts.query, ""))]
    root = urlunsplit((parts.scheme, parts.netloc, _SUFFIX, "", ""))
    if root not in urls:
        urls.append(root)
    if hint is not None:
        shown = urlsplit(hint)
        if (shown.scheme, shown.netloc) == (parts.scheme, parts.netloc) and hint not in urls:
            urls.insert(0, hint)
    return tuple(urls)


def build_resource_metadata_request(url: str) -> HttpRequest:
    """The GET for one metadata URL (RFC 9728 §3.1)."""
    return HttpRequest(method="GET", url=url, headers=(("Accept", "application/json"),))


_HINT = re.compile(r'(?:^|[\s,])resource_metadata\s*=\s*(?:"([^"]*)"|([^\s,]+))', re.IGNORECASE)


def resource_metadata_hint(www_authenticate: object) -> Optional[str]:
    """The ``resource_metadata`` URL a ``WWW-Authenticate`` header names (RFC 9728 §5.1),
    or None.

    >>> resource_metadata_hint('Bearer error="invalid_token", '
    ...     'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"')
    'https://mcp.example.com/.well-known/oauth-protected-resource'
    >>> resource_metadata_hint("Bearer") is None
    True
    """
    if not isinstance(www_authenticate, str) or len(www_authenticate) > 8192:
        return None
    found = _HINT.search(www_authenticate)
    if found is None:
        return None
    value = found.group(1) if found.group(1) is not None else found.group(2)
    return value or None


def parse_resource_metadata_response(
    *,
    resource: str,
    status: int,
    headers: Headers,
    body: bytes,
    now: float,
    allow_insecure_http: bool = False,
    max_body: int = MAX_RESOURCE_METADATA_BYTES,
) -> ResourceMetadata:
    """Turn the answer to a metadata GET for ``resource`` into :class:`ResourceMetadata`.

    Raises:
        ResourceMetadataNotFound: a 3xx or 4xx answer (not published at this URL;
            redirects are not followed).
        ProviderUnavailable: 5xx or 429 (retryable).
        ResponseTooLarge: the body is over ``max_body`` bytes.
        InvalidResourceMetadata: another status than 200, a body that is not a
            JSON object, a ``resource`` other than ``resource`` (RFC 9728 §3.3),
            no ``authorization_servers``, or one that is not an issuer identifier
            (an https URL without query or fragment; http on loopback only).
    """
    from .discovery import check_issuer  # discovery imports nothing of ours back

    if len(body) > max_body:
        raise ResponseTooLarge(
            f"resource metadata of {len(body)} bytes exceeds the {max_body}-byte cap",
            status=status,
        )
    if status >= 500 or status == 429:
        raise ProviderUnavailable(
            f"the resource's metadata is unavailable (HTTP {status})",
            status=status,
            retry_after=parse_retry_after(_header(headers, "Retry-After"), now),
        )
    if 300 <= status < 500:
        raise ResourceMetadataNotFound(
            f"no resource metadata at this URL (HTTP {status})", status=status
        )
    if status != 200:
        raise InvalidResourceMetadata(
            f"the resource metadata answer is HTTP {status}, not 200 (RFC 9728 §3.2)",
            status=status,
        )
    document = _json_object(body, status)
    found = document.get("resource")
    if found != resource:
        shown = safe_text(found, 120) if isinstance(found, str) else type(found).__name__
        raise InvalidResourceMetadata(
            f"the resource metadata names resource {shown!r}, not {resource!r}; "
            "its data must not be used (RFC 9728 §3.3)",
            status=status,
        )
    servers = document.get("authorization_servers")
    if not isinstance(servers, list) or not servers:
        raise InvalidResourceMetadata(
            "the resource metadata names no authorization_servers (RFC 9728 §2): "
            "nobody to ask for a token",
            status=status,
        )
    issuers = []
    for server in servers[:_MAX_SERVERS]:
        try:
            issuers.append(check_issuer(server, allow_insecure_http=allow_insecure_http))
        except InvalidInput as exc:
            raise InvalidResourceMetadata(
                f"the resource metadata's authorization server is unusable: {exc}",
                status=status,
            ) from None
    scopes = document.get("scopes_supported")
    name = document.get("resource_name")
    return ResourceMetadata(
        resource=resource,
        authorization_servers=tuple(issuers),
        scopes_supported=(
            tuple(scopes)
            if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)
            else None
        ),
        resource_name=safe_text(name, 120) if isinstance(name, str) and name else None,
    )


def _header(headers: Headers, name: str) -> Optional[str]:
    from .http import header_value

    return header_value(headers, name)


def _json_object(body: bytes, status: int) -> dict[str, Any]:
    import json  # here, not at the top: the user's import stays cheap (bench_import)

    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise InvalidResourceMetadata(
            f"the resource metadata is not a JSON object (RFC 9728 §3.2; {len(body)} bytes)",
            status=status,
        )
    return value
