"""Token revocation requests and responses as data (RFC 7009).

:func:`build_revocation_request` builds the §2.1 POST: ``token``, an optional
``token_type_hint``, and the client's authentication exactly as the token
endpoint gets it (the one implementation in :mod:`.token_request`, including
RFC 6749 §2.3.1's form-encoding of the id and secret before base64).
:func:`revocation_request_for` picks what to revoke for a stored credential:
its refresh token (RFC 7009 §2.1: revoking it SHOULD end the access tokens of
the same grant too), or its access token when it has none.
:func:`check_revocation_response` reads the answer (§2.2): HTTP 200 means
revoked, also for a token the provider did not know (which is why 200 needs
no body); anything else raises a typed error and the token must be assumed
alive. Sending is the caller's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from ..credentials import StoredCredential
from ..errors import (
    InvalidInput,
    ProviderResponseError,
    ProviderUnavailable,
    ResponseTooLarge,
    oauth_error_from_response,
)
from .endpoints import check_endpoint
from .http import Headers, HttpRequest, header_value
from .token_request import ClientCredentials, build_client_authenticated_request
from .token_response import parse_retry_after

__all__ = [
    "MAX_REVOCATION_RESPONSE_BYTES",
    "TOKEN_TYPE_HINTS",
    "build_revocation_request",
    "check_revocation_response",
    "revocation_request_for",
]

#: A revocation answer has no useful body (§2.2); error bodies are small JSON.
MAX_REVOCATION_RESPONSE_BYTES = 64 * 1024

#: RFC 7009 §2.1 defines these two hints (others need the IANA registry, §4.1.2).
TOKEN_TYPE_HINTS = frozenset({"access_token", "refresh_token"})


def build_revocation_request(
    *,
    revocation_endpoint: str,
    client: ClientCredentials,
    token: str,
    token_type_hint: Optional[str] = None,
    allow_insecure_http: bool = False,
) -> HttpRequest:
    """The RFC 7009 §2.1 request that revokes ``token``.

    Raises InvalidInput for an empty token or an unknown hint, and
    InvalidInput/InsecureEndpointError for an endpoint that is not an absolute
    https URL (http on loopback only, unless ``allow_insecure_http``).
    """
    check_endpoint(
        revocation_endpoint, what="revocation_endpoint", allow_insecure_http=allow_insecure_http
    )
    if not isinstance(token, str) or not token:
        raise InvalidInput("the token to revoke must be a non-empty string")
    form = [("token", token)]
    if token_type_hint is not None:
        if token_type_hint not in TOKEN_TYPE_HINTS:
            raise InvalidInput("token_type_hint must be 'access_token' or 'refresh_token'")
        form.append(("token_type_hint", token_type_hint))
    # §2.1: "The client also includes its authentication credentials as described
    # in Section 2.3 of [RFC6749]": the same as at the token endpoint.
    return build_client_authenticated_request(
        revocation_endpoint, client, form, allow_insecure_http, what="revocation_endpoint"
    )


def revocation_request_for(
    credential: StoredCredential, *, allow_insecure_http: bool = False
) -> Optional[tuple[HttpRequest, str, tuple[str, ...]]]:
    """``(request, token_type_hint, secrets_sent)`` that revokes ``credential``, or
    None when it has no revocation endpoint.

    ``secrets_sent`` lists the values the request carries (the token, the
    client secret), to scrub from any error text the provider sends back.
    """
    endpoint = credential.revocation_endpoint
    if endpoint is None:
        return None
    tokens = credential.tokens
    if tokens.refresh_token is not None:
        token, hint = tokens.refresh_token, "refresh_token"
    else:
        token, hint = tokens.access_token, "access_token"
    # The method the token endpoint got when the code was exchanged (RFC 7009
    # §2.1: the client authenticates here as it does there).
    client = ClientCredentials(
        client_id=credential.client_id,
        client_secret=credential.client_secret,
        method=credential.client_auth_method,
    )
    request = build_revocation_request(
        revocation_endpoint=endpoint,
        client=client,
        token=token,
        token_type_hint=hint,
        allow_insecure_http=allow_insecure_http,
    )
    sent = (token, credential.client_secret) if credential.client_secret else (token,)
    return request, hint, sent


def check_revocation_response(
    *,
    status: int,
    headers: Headers,
    body: bytes,
    now: float,
    redact: Sequence[str] = (),
    max_body: int = MAX_REVOCATION_RESPONSE_BYTES,
) -> None:
    """Return if the answer says the token is revoked (RFC 7009 §2.2); raise otherwise.

    ``now`` is the receipt time (for a ``Retry-After`` date); ``redact`` the
    secret values the request carried.

    Raises:
        ProviderUnavailable: 5xx or 429 (§2.2.1: 503 means "try again later",
            with ``retry_after`` from the ``Retry-After`` header).
        OAuthError subclass: an RFC 6749 §5.2 error body, e.g.
            UnsupportedTokenType (§2.2.1) or InvalidClient.
        ResponseTooLarge: the body is over ``max_body`` bytes.
        ProviderResponseError: any other answer.
    """
    if status == 200:
        return  # §2.2: "The content of the response body is ignored by the client"
    if len(body) > max_body:
        raise ResponseTooLarge(
            f"revocation answer of {len(body)} bytes exceeds the {max_body}-byte cap",
            status=status,
        )
    if status >= 500 or status == 429:
        raise ProviderUnavailable(
            f"revocation endpoint unavailable (HTTP {status})",
            status=status,
            retry_after=parse_retry_after(header_value(headers, "Retry-After"), now),
        )
    fields = _json_fields(body)
    if fields is not None and "error" in fields:
        raise oauth_error_from_response(
            fields.get("error"),
            fields.get("error_description"),
            fields.get("error_uri"),
            status,
            redact=redact,
        )
    raise ProviderResponseError(
        f"revocation endpoint answered HTTP {status} without an OAuth error body",
        status=status,
    )


def _json_fields(body: bytes) -> Optional[dict[str, object]]:
    import json  # here, not at the top: the user's import stays cheap (bench_import)

    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
