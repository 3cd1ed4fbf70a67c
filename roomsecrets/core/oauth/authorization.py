"""Building the authorization request URL (RFC 6749 §4.1.1, RFC 7636 §4.3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional
from urllib.parse import parse_qsl, quote, urlencode, urlunsplit

from ..errors import InvalidInput
from .endpoints import check_endpoint, check_redirect_uri
from .scopes import join_scopes

__all__ = ["RESERVED_AUTHORIZATION_PARAMS", "build_authorization_url", "join_scopes"]

#: Parameters this module sets itself; an extra parameter or the endpoint's own
#: query may not set them (RFC 6749 §3.1: parameters MUST NOT appear twice).
RESERVED_AUTHORIZATION_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
)


def build_authorization_url(
    *,
    authorization_endpoint: str,
    client_id: str,
    redirect_uri: str,
    state: str,
    scopes: Optional[Sequence[str]] = None,
    code_challenge: Optional[str] = None,
    extra_params: Optional[Mapping[str, str]] = None,
    allow_insecure_http: bool = False,
) -> str:
    """Return the URL to send the person to.

    Keeps any query already in the endpoint (RFC 6749 §3.1), then adds
    ``response_type=code``, ``client_id``, ``redirect_uri``, space-joined
    ``scope``, ``state``, and ``code_challenge`` with ``code_challenge_method=S256``
    when a challenge is given (pass None only for ``no_pkce``). ``extra_params``
    (``prompt``, ``access_type``, ``resource``, ...) come last; they may not
    repeat a parameter set here or present in the endpoint's query.

    >>> build_authorization_url(authorization_endpoint="https://as.example/auth?tenant=1",
    ...     client_id="app", redirect_uri="https://app.example/cb", state="xyz",
    ...     scopes=["read", "write"], code_challenge="abc")
    'https://as.example/auth?tenant=1&response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=read%20write&state=xyz&code_challenge=abc&code_challenge_method=S256'
    """
    parts = check_endpoint(
        authorization_endpoint,
        what="authorization_endpoint",
        allow_insecure_http=allow_insecure_http,
    )
    if not isinstance(client_id, str) or not client_id:
        raise InvalidInput("client_id must be a non-empty string")
    check_redirect_uri(redirect_uri, allow_insecure_http=allow_insecure_http)
    if not isinstance(state, str) or not state:
        raise InvalidInput("state must be a non-empty string")
    existing = parse_qsl(parts.query, keep_blank_values=True)
    existing_names = {name for name, _ in existing}
    clash = sorted(existing_names & RESERVED_AUTHORIZATION_PARAMS)
    if clash:
        raise InvalidInput(f"authorization_endpoint query already sets {clash}")
    params: list[tuple[str, str]] = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
    ]
    scope = join_scopes(scopes)
    if scope is not None:
        params.append(("scope", scope))
    params.append(("state", state))
    if code_challenge is not None:
        params.append(("code_challenge", code_challenge))
        params.append(("code_challenge_method", "S256"))
    for name, value in (extra_params or {}).items():
        if name in RESERVED_AUTHORIZATION_PARAMS or name in existing_names:
            raise InvalidInput(f"extra parameter {name!r} would repeat a parameter")
        if not isinstance(value, str):
            raise InvalidInput(f"extra parameter {name!r} must be a string")
        params.append((name, value))
    # %20 rather than '+' for spaces: both are valid form encoding, but some
    # providers decode the query with plain percent-decoding.
    query = urlencode(existing + params, quote_via=quote)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
