"""Parsing token endpoint responses (RFC 6749 §5.1, §5.2, §6) into a TokenSet.

Provider quirks are normal input here, not exceptions to the rule:

* GitHub answers form-encoded unless asked otherwise (we always ask for JSON,
  but parse ``application/x-www-form-urlencoded`` bodies as a fallback) and
  separates granted scopes with commas.
* Salesforce sends no ``expires_in``: the configurable ``default_lifetime``
  applies (None means "never expires").
* Some providers send ``expires_in`` as a string (``"3600"``) or a float.
* Some send an ``error`` object with HTTP 200.
* Proxies answer with HTML error pages; some endpoints stream huge bodies.

Every outcome is a :class:`TokenSet` or a typed error; nothing in a message
comes from the body except the sanitised OAuth ``error`` fields, with the
request's secrets and any token values the body carries scrubbed out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Optional
from urllib.parse import parse_qsl

from ..errors import (
    ProviderResponseError,
    ProviderUnavailable,
    ResponseTooLarge,
    oauth_error_from_response,
    safe_text,
)
from .http import ReceivedHeaders, header_value
from .scopes import split_all, split_scopes
from .tokens import TokenSet

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_TOKEN_RESPONSE_BYTES",
    "parse_retry_after",
    "parse_token_response",
]

#: Lifetime assumed when a provider sends no usable ``expires_in`` (seconds).
DEFAULT_LIFETIME = 3600.0

#: Token responses are a few KB at most (an id_token included); anything over
#: this is refused unparsed.
MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024

#: Longer ``expires_in`` values are treated as missing (they are not real lifetimes).
_MAX_LIFETIME = 1e9

#: Deepest nesting of objects and arrays kept (the response object is level 1). The
#: unknown fields are stored with the token; a document nested almost as deep as the
#: interpreter's recursion limit parses here, then cannot be read back by a caller
#: whose stack is deeper (RecursionError on every later use of the credential).
_MAX_NESTING = 32

#: The fields that hold secrets (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
_TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")
_KNOWN_FIELDS = frozenset(
    {"access_token", "token_type", "expires_in", "refresh_token", "scope", "id_token"}
)
# RFC 6749 Appendix A: VSCHAR = %x20-7E.
_VSCHAR = re.compile(r"[\x20-\x7e]+")
# RFC 9110 §10.2.3: delay-seconds = 1*DIGIT (ASCII).
_DELTA_SECONDS = re.compile(r"[0-9]+")
#: ``Retry-After`` values are capped here (a day); the retry policy caps further.
_MAX_RETRY_AFTER = 86400.0


def parse_token_response(
    *,
    status: int,
    headers: ReceivedHeaders,
    body: bytes,
    now: float,
    requested_scopes: Optional[Sequence[str]] = None,
    previous_refresh_token: Optional[str] = None,
    default_lifetime: Optional[float] = DEFAULT_LIFETIME,
    max_body: int = MAX_TOKEN_RESPONSE_BYTES,
    redact: Sequence[str] = (),
) -> TokenSet:
    """Turn a token endpoint response into a :class:`TokenSet` or raise.

    ``headers`` is a mapping (``dict``, ``http.client.HTTPMessage``, a
    multidict: anything with ``items()``) or a sequence of ``(name, value)``
    pairs, names matched case-insensitively (:func:`~.http.header_pairs`).
    ``now`` is the receipt time (from the injected clock). ``requested_scopes``
    stand in when the provider omits ``scope`` (RFC 6749 §5.1: it may, when
    the grant matches the request). ``previous_refresh_token`` is kept when a
    refresh response carries no new one (RFC 6749 §6). ``redact`` lists the
    secret values the request carried (code, verifier, refresh token, client
    secret): a provider that echoes one in its error text does not get it into
    our exception.

    Raises:
        OAuthError subclass: the body carries an OAuth ``error`` (any status,
            HTTP 200 included).
        ProviderUnavailable: 5xx or 429 without an OAuth error (retryable;
            ``retry_after`` from the ``Retry-After`` header).
        ResponseTooLarge: the body is over ``max_body`` bytes.
        ProviderResponseError: anything else we cannot use (HTML, garbage,
            non-OAuth 4xx, no ``access_token``).
        InvalidInput: ``headers`` is neither a mapping nor pairs, or holds a
            name or value that is not a ``str`` (checked before anything else).

    >>> tokens = parse_token_response(
    ...     status=200, headers={"Content-Type": "application/json"},
    ...     body=b'{"access_token": "at-1", "expires_in": 60}', now=1000.0)
    >>> tokens.expires_at
    1060.0
    """
    content_type = (header_value(headers, "Content-Type") or "").split(";")[0].strip().lower()
    content_type = safe_text(content_type, 64) or ""  # it goes into messages
    if len(body) > max_body:
        raise ResponseTooLarge(
            f"token response of {len(body)} bytes exceeds the {max_body}-byte cap",
            status=status,
        )
    fields = _decode_fields(content_type, body)
    if fields is not None and "error" in fields:
        raise oauth_error_from_response(
            fields.get("error"),
            fields.get("error_description"),
            fields.get("error_uri"),
            status,
            # An error can come with tokens beside it (some providers send both), and
            # its text may echo them: they are as secret as the request's values.
            redact=(*redact, *_token_values(fields)),
        )
    described = f"HTTP {status}, {content_type or 'no content type'}, {len(body)} bytes"
    if status >= 500 or status == 429:
        raise ProviderUnavailable(
            f"token endpoint unavailable ({described})",
            status=status,
            retry_after=parse_retry_after(header_value(headers, "Retry-After"), now),
        )
    if not 200 <= status < 300:
        raise ProviderResponseError(
            f"token endpoint answered without an OAuth error body ({described})", status=status
        )
    if fields is None:
        raise ProviderResponseError(f"token response is not JSON or form data ({described})",
                                    status=status)
    access_token = fields.get("access_token")
    if not isinstance(access_token, str) or not _VSCHAR.fullmatch(access_token):
        # RFC 6749 Appendix A.12: access-token = 1*VSCHAR.
        raise ProviderResponseError(
            f"token response has no usable access_token ({described})", status=status
        )
    lifetime = _parse_expires_in(fields.get("expires_in"))
    if lifetime is None:
        lifetime = default_lifetime
    refresh_token = fields.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        refresh_token = previous_refresh_token
    elif not _VSCHAR.fullmatch(refresh_token):
        # RFC 6749 Appendix A.17: refresh-token = 1*VSCHAR.
        raise ProviderResponseError(
            f"token response has a malformed refresh_token ({described})", status=status
        )
    id_token = fields.get("id_token")
    return TokenSet(
        access_token=access_token,
        token_type=_parse_token_type(fields.get("token_type")),
        refresh_token=refresh_token,
        issued_at=now,
        expires_at=None if lifetime is None else now + lifetime,
        scopes=_parse_scope(fields.get("scope"), requested_scopes),
        id_token=id_token if isinstance(id_token, str) and id_token else None,
        extra={k: v for k, v in fields.items() if k not in _KNOWN_FIELDS},
    )


def _decode_fields(content_type: str, body: bytes) -> Optional[dict[str, Any]]:
    """The body as a dict of fields, or None when it is neither JSON nor a form."""
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if not text or text.startswith("<"):
        return None  # empty, or an HTML/XML page from a proxy or error handler
    if content_type == "application/json" or content_type.endswith("+json") or text[0] in "{[":
        import json  # here, not at the top: the user's import stays cheap (bench_import)

        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            # RecursionError: a few hundred KB of nested arrays, under the size cap.
            return None
        if not isinstance(value, dict) or _nested_deeper_than(value, _MAX_NESTING):
            return None
        return value
    if "=" not in text:
        return None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    fields: dict[str, Any] = {}
    for name, value in pairs:
        fields.setdefault(name, value)  # RFC 6749 §3.1: a parameter appears once
    return fields


def _token_values(fields: dict[str, Any]) -> list[str]:
    """Every string inside the response's token fields, at any depth (at most
    ``_MAX_NESTING``, which :func:`_decode_fields` ensures)."""
    found: list[str] = []
    level = [fields.get(name) for name in _TOKEN_FIELDS]
    while level:
        found.extend(item for item in level if isinstance(item, str) and item)
        level = [
            child
            for item in level
            if isinstance(item, (dict, list))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return found


def _nested_deeper_than(value: object, limit: int) -> bool:
    """True when ``value`` holds objects or arrays more than ``limit`` levels deep.

    Level by level rather than recursively: the point is to never recurse deeply.
    """
    level = [value]
    depth = 0
    while level:
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            return False
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]
    return False


def _parse_expires_in(value: object) -> Optional[float]:
    """Seconds from ``expires_in`` as int, float or numeric string; None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int):
        # Python ints are unbounded; float() of 10**400 overflows. Cap at ~31 years.
        return float(value) if 0 <= value <= _MAX_LIFETIME else None
    if isinstance(value, float) and math.isfinite(value) and 0 <= value <= _MAX_LIFETIME:
        return value
    return None


def _parse_token_type(value: object) -> str:
    # RFC 6749 §5.1 requires token_type; it is case-insensitive (§7.1), and some
    # providers omit it for bearer tokens.
    if not isinstance(value, str) or not value.strip():
        return "Bearer"
    value = value.strip()
    return "Bearer" if value.lower() == "bearer" else value


def _parse_scope(value: object, requested: Optional[Sequence[str]]) -> tuple[str, ...]:
    if isinstance(value, str):
        return split_scopes(value)  # spaces (RFC 6749 §3.3) or commas (GitHub)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return split_all(value)
    return tuple(requested or ())


def parse_retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3), or None.

    Accepts delta-seconds or an HTTP-date (relative to ``now``); never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        # ASCII digits only: str.isdigit() also accepts "²", which float() refuses.
        return min(float(value), _MAX_RETRY_AFTER)
    import email.utils  # only HTTP-dates need it, and it loads datetime and email.*

    try:
        when = email.utils.parsedate_to_datetime(value)
        seconds = when.timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        # OverflowError: a zone offset of 10**6 hours; AttributeError: older
        # Pythons return None instead of raising.
        return None
    return min(max(0.0, seconds), _MAX_RETRY_AFTER)
