"""Every error roomsecrets raises, under one root: :class:`RoomSecretsError`.

Each class carries a machine-readable ``code`` (a class attribute, stable across
releases) so callers and the server can branch on it without parsing messages.
Adapters translate their libraries' exceptions into these at the boundary.

Messages are built only from values that are safe to show: error codes, HTTP
statuses, content types, lengths, identifiers. Token values, refresh tokens,
authorization codes, PKCE verifiers and client secrets never reach a message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import Enum
from typing import ClassVar, Optional
from urllib.parse import quote, quote_plus

__all__ = [
    "AccessDenied",
    "ConfigurationError",
    "ConnectError",
    "GrantDenied",
    "IllegalTransition",
    "InsecureEndpointError",
    "InvalidClient",
    "InvalidGrant",
    "InvalidInput",
    "InvalidProviderMetadata",
    "InvalidRequest",
    "InvalidResourceMetadata",
    "InvalidScope",
    "IssuerMismatch",
    "LeaseLost",
    "NotAddressedToYou",
    "OAuthError",
    "ParticipantNotConnected",
    "ProviderError",
    "ProviderMetadataNotFound",
    "ProviderResponseError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "QuotaExceeded",
    "RefreshBusy",
    "RegistrationNotSupported",
    "RegistrationRefused",
    "RequestCancelled",
    "RequestRejected",
    "RequestTimedOut",
    "ResourceMetadataNotFound",
    "ResponseTooLarge",
    "RoomSecretsError",
    "SecretNotFound",
    "ServerError",
    "StateMismatch",
    "StoreError",
    "TemporarilyUnavailable",
    "TooManyPendingRequests",
    "TransportError",
    "UnauthorizedClient",
    "UnknownRequest",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
    "UnsupportedTokenType",
    "VersionConflict",
    "WrongSecretType",
    "oauth_error_from_response",
    "safe_text",
    "scrub",
]


class RoomSecretsError(Exception):
    """Root of every roomsecrets error."""

    #: Stable machine-readable identifier of the error kind.
    code: ClassVar[str] = "roomsecrets_error"
    #: True when trying the same operation again later may succeed.
    retryable: ClassVar[bool] = False


class InvalidInput(RoomSecretsError, ValueError):
    """A caller passed a value that cannot be used (bad URL, bad verifier, ...)."""

    code = "invalid_input"


class InsecureEndpointError(InvalidInput):
    """An OAuth endpoint is not https (RFC 6749 §3.1, §3.2) and is not loopback."""

    code = "insecure_endpoint"


class ConfigurationError(RoomSecretsError):
    """The client or service is configured in a way that cannot work."""

    code = "configuration_error"


class StoreError(RoomSecretsError):
    """A storage backend failed (I/O error, service error). Retryable."""

    code = "store_error"
    retryable = True


class VersionConflict(RoomSecretsError):
    """A compare-and-swap write or delete found another version than expected."""

    code = "version_conflict"

    def __init__(self, message: str, *, expected: Optional[int], actual: Optional[int]) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message)


class LeaseLost(RoomSecretsError):
    """A lease was renewed after it expired or was taken by another holder."""

    code = "lease_lost"


class GrantDenied(RoomSecretsError, PermissionError):
    """The caller's :class:`SecretsGrant` does not allow the operation."""

    code = "grant_denied"


# --- Pending authorization requests (core/pending/machine.py, core/pending/registry.py) --


class IllegalTransition(RoomSecretsError):
    """The pending-request state table has no entry for this input in this state.

    Nothing changed. ``state`` is the :class:`~roomsecrets.core.pending.machine.PendingState`
    the request was in, ``event`` the :class:`~roomsecrets.core.pending.machine.PendingInput`
    that was refused; the message names only these two.
    """

    code = "illegal_transition"

    def __init__(self, state: Enum, event: Enum) -> None:
        self.state = state
        self.event = event
        super().__init__(f"{event.name} is not allowed in state {state.name}")


class UnknownRequest(RoomSecretsError, LookupError):
    """No open pending request matches: it never existed, or it has already ended."""

    code = "unknown_request"


class NotAddressedToYou(GrantDenied):
    """Only the participant a pending request is addressed to may answer it."""

    code = "not_addressed_to_you"


class StateMismatch(InvalidInput):
    """The ``state`` sent with an answer is not the request's (RFC 6749 §10.12).

    The request stays pending, so the right answer can still arrive.
    """

    code = "state_mismatch"


class IssuerMismatch(InvalidInput):
    """The ``iss`` of an authorization response is missing or is not the issuer the
    request was sent to (RFC 9207 §2.4, the mix-up defence).

    The request stays pending, so the right answer can still arrive. The message
    names no value: the expected issuer is public, but the received one is
    whatever a redirect carried.
    """

    code = "issuer_mismatch"


class TooManyPendingRequests(RoomSecretsError):
    """A participant already has the most open pending requests allowed; ``limit`` is that bound.

    Retryable: the bound frees up as open requests end.
    """

    code = "too_many_pending_requests"
    retryable = True

    def __init__(self, message: str, *, limit: int) -> None:
        self.limit = limit
        super().__init__(message)


# --- A participant's own secrets ----------------------------------------------------


class SecretNotFound(RoomSecretsError, LookupError):
    """The caller has no secret with this id and ``delegated_to``; nothing changed.

    The message names the ``delegated_to`` values under which the caller does
    hold that id, when there are any (only the caller's own secrets are looked at).
    """

    code = "secret_not_found"


class WrongSecretType(InvalidInput):
    """The secret is not of the kind the operation handles (``oauth2 delete`` of an
    API key stored with ``secret set``); nothing changed."""

    code = "wrong_secret_type"


class QuotaExceeded(RoomSecretsError):
    """Storing this would take the participant past the room's limit on the number
    or total bytes of their secrets; nothing changed. ``limit`` names which."""

    code = "quota_exceeded"


# --- How a request_oauth_token wait ends, when it ends without a token ------------


class ParticipantNotConnected(RoomSecretsError, LookupError):
    """The participant asked to approve is not connected to the room."""

    code = "participant_not_connected"


_REQUEST_KINDS = frozenset({"authorization request", "secret request"})


class RequestRejected(RoomSecretsError):
    """The person rejected the request; ``error`` is their short reason."""

    code = "request_rejected"

    def __init__(self, error: str, *, what: str = "authorization request") -> None:
        self.error = safe_text(error, 64) or "rejected"
        #: Which kind of request: "authorization request" or "secret request".
        self.what = what if what in _REQUEST_KINDS else "authorization request"
        super().__init__(f"the {self.what} was rejected: {self.error}")


class RequestTimedOut(RoomSecretsError, TimeoutError):
    """Nobody answered the request before its timeout."""

    code = "request_timeout"


class RequestCancelled(RoomSecretsError):
    """The request ended because the requester or the person asked left the room."""

    code = "request_cancelled"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the authorization request was cancelled: {reason}")


class RefreshBusy(RoomSecretsError):
    """Another process held the refresh lease for too long; try again later."""

    code = "refresh_busy"
    retryable = True


# --- OAuth errors returned by a provider (RFC 6749 §5.2, §4.1.2.1) ---------------

# RFC 6749 §5.2: error and error_description are limited to these characters
# (%x20-21 / %x23-5B / %x5D-7E). Anything else is dropped, so a hostile provider
# cannot smuggle control characters or long payloads into our logs.
_UNSAFE_CHARS = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_MAX_TEXT = 200
# Provider text longer than this is cut before any other work on it.
_MAX_RAW_TEXT = 2000
# A run of token characters this long that also occurs inside a secret is taken
# for a piece of that secret (a provider echoing part of a code or token).
_MIN_SECRET_PIECE = 12
_TOKEN_RUNS = re.compile(rf"[A-Za-z0-9._~+/=%-]{{{_MIN_SECRET_PIECE},}}")
_REDACTED = "[redacted]"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` (and its URL-encoded forms) replaced by
    ``[redacted]``, and so is any run of token characters that shares 12 characters
    in a row with one.

    For provider text that ends up in our errors: some providers echo the code,
    refresh token or client secret they were sent in ``error_description``.
    """
    secrets = [secret for secret in secrets if secret]
    if not secrets:
        return text
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, _REDACTED)

    def piece(match: re.Match[str]) -> str:
        run = match.group()
        for start in range(len(run) - _MIN_SECRET_PIECE + 1):
            window = run[start : start + _MIN_SECRET_PIECE]
            if any(window in secret for secret in secrets):
                return _REDACTED
        return run

    return _TOKEN_RUNS.sub(piece, text)


def safe_text(value: object, limit: int = _MAX_TEXT) -> Optional[str]:
    """Return ``value`` reduced to RFC 6749 §5.2 characters and ``limit`` chars, or None."""
    if not isinstance(value, str):
        return None
    cleaned = _UNSAFE_CHARS.sub("", value)
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 3] + "..."
    return cleaned or None


class OAuthError(RoomSecretsError):
    """An OAuth error response from a provider (RFC 6749 §5.2 or §4.1.2.1).

    ``error`` is the provider's error code as sent (sanitised), ``description``
    and ``uri`` its optional ``error_description`` and ``error_uri``, ``status``
    the HTTP status it came with (None when it did not come over HTTP, e.g. an
    error on the authorization redirect).
    """

    code = "oauth_error"

    def __init__(
        self,
        error: Optional[str] = None,
        description: Optional[str] = None,
        uri: Optional[str] = None,
        status: Optional[int] = None,
        *,
        redact: Iterable[str] = (),
    ) -> None:
        redact = tuple(redact)
        self.error: str = safe_text(_provider_text(error, redact), 64) or self.code
        self.description: Optional[str] = safe_text(_provider_text(description, redact))
        self.uri: Optional[str] = safe_text(_provider_text(uri, redact), 300)
        self.status: Optional[int] = status
        message = self.error
        if status is not None:
            message += f" (HTTP {status})"
        if self.description:
            message += f": {self.description}"
        super().__init__(message)


class InvalidRequest(OAuthError):
    """RFC 6749 §5.2 ``invalid_request``."""

    code = "invalid_request"


class InvalidClient(OAuthError):
    """RFC 6749 §5.2 ``invalid_client``: a configuration problem, never the user's."""

    code = "invalid_client"


class InvalidGrant(OAuthError):
    """RFC 6749 §5.2 ``invalid_grant``: the only error meaning "the user must approve again"."""

    code = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """RFC 6749 §5.2 ``unauthorized_client``."""

    code = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """RFC 6749 §5.2 ``unsupported_grant_type``."""

    code = "unsupported_grant_type"


class InvalidScope(OAuthError):
    """RFC 6749 §5.2 ``invalid_scope``."""

    code = "invalid_scope"


class AccessDenied(OAuthError):
    """RFC 6749 §4.1.2.1 ``access_denied``: the person (or provider) refused."""

    code = "access_denied"


class UnsupportedResponseType(OAuthError):
    """RFC 6749 §4.1.2.1 ``unsupported_response_type``."""

    code = "unsupported_response_type"


class UnsupportedTokenType(OAuthError):
    """RFC 7009 §2.2.1 ``unsupported_token_type``: the provider cannot revoke this kind of token."""

    code = "unsupported_token_type"


class ServerError(OAuthError):
    """RFC 6749 §4.1.2.1 ``server_error``; some providers also send it from the token endpoint."""

    code = "server_error"
    retryable = True


class TemporarilyUnavailable(OAuthError):
    """RFC 6749 §4.1.2.1 ``temporarily_unavailable``."""

    code = "temporarily_unavailable"
    retryable = True


_OAUTH_ERRORS: dict[str, type[OAuthError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        InvalidClient,
        InvalidGrant,
        UnauthorizedClient,
        UnsupportedGrantType,
        InvalidScope,
        AccessDenied,
        UnsupportedResponseType,
        UnsupportedTokenType,
        ServerError,
        TemporarilyUnavailable,
    )
}


def _provider_text(value: object, redact: tuple[str, ...]) -> Optional[str]:
    """Provider text, cut to a bounded length, with the request's secrets scrubbed."""
    if not isinstance(value, str):
        return None
    # Drop what safe_text will drop *before* scrubbing: a secret echoed with NULs or
    # other invisible characters inside has no 12-character piece for scrub to find,
    # and removing those characters afterwards would join it back together.
    text = _UNSAFE_CHARS.sub("", value[:_MAX_RAW_TEXT])
    return scrub(text, redact + tuple(_UNSAFE_CHARS.sub("", secret) for secret in redact))


def oauth_error_from_response(
    error: object,
    description: object = None,
    uri: object = None,
    status: Optional[int] = None,
    *,
    redact: Iterable[str] = (),
) -> OAuthError:
    """Map a provider's ``error`` code to its class; unknown codes give :class:`OAuthError`.

    ``redact``: the secret values the request carried (code, verifier, refresh
    token, client secret); they are scrubbed from the provider's text.
    """
    cls = _OAUTH_ERRORS.get(error, OAuthError) if isinstance(error, str) else OAuthError
    return cls(
        error if isinstance(error, str) else None,
        description if isinstance(description, str) else None,
        uri if isinstance(uri, str) else None,
        status,
        redact=redact,
    )


# --- Provider failures that are not OAuth errors: retryable ----------------------


class ProviderError(RoomSecretsError):
    """The provider could not be reached or did not answer usefully.

    This family is retryable: a later attempt may succeed. It never means the
    user must approve again.
    """

    code = "provider_error"
    retryable = True

    def __init__(self, message: str, *, status: Optional[int] = None) -> None:
        self.status = status
        super().__init__(message)


class ProviderUnavailable(ProviderError):
    """HTTP 5xx or 429 without an OAuth error body; ``retry_after`` in seconds if sent."""

    code = "provider_unavailable"

    def __init__(
        self, message: str, *, status: Optional[int] = None, retry_after: Optional[float] = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status)


class ProviderResponseError(ProviderError):
    """The provider answered with something we cannot parse (HTML, garbage, no token)."""

    code = "provider_bad_response"


class InvalidProviderMetadata(ProviderResponseError):
    """The provider's metadata (RFC 8414, OpenID Connect Discovery) cannot be used: not a
    JSON object, an ``issuer`` other than the one asked for (RFC 8414 §3.3), or an
    endpoint that is not an absolute https URL (http only on loopback).

    Not retryable: the same document comes back until someone fixes the
    provider or the issuer the caller named.
    """

    code = "invalid_provider_metadata"
    retryable = False


class ProviderMetadataNotFound(InvalidProviderMetadata):
    """The issuer publishes no metadata at any well-known URL (every one answered 4xx),
    or its metadata lacks an endpoint the caller did not give either."""

    code = "provider_metadata_not_found"


class InvalidResourceMetadata(InvalidProviderMetadata):
    """A protected resource's metadata (RFC 9728) cannot be used: not a JSON object, a
    ``resource`` other than the one asked for (RFC 9728 §3.3), or no usable
    ``authorization_servers``. Not retryable."""

    code = "invalid_resource_metadata"


class ResourceMetadataNotFound(InvalidResourceMetadata):
    """The resource publishes no RFC 9728 metadata at any URL tried (every one answered
    3xx or 4xx): the broker cannot learn who protects it."""

    code = "resource_metadata_not_found"


class RegistrationNotSupported(InvalidProviderMetadata):
    """The authorization server's metadata names no ``registration_endpoint`` (RFC 8414
    §2, RFC 7591 §3): the broker cannot register a client there, and no client id
    was given."""

    code = "registration_not_supported"


class RegistrationRefused(OAuthError):
    """The authorization server refused to register our client (RFC 7591 §3.2.2:
    ``invalid_redirect_uri``, ``invalid_client_metadata``, ...). Not retryable."""

    code = "registration_refused"


class ResponseTooLarge(ProviderResponseError):
    """The response body exceeded the size cap; it was not parsed."""

    code = "response_too_large"


class TransportError(ProviderError):
    """The network failed: connection refused, reset, DNS, TLS."""

    code = "transport_error"


class ConnectError(TransportError):
    """The connection failed before the request was sent (refused, DNS, TLS certificate).

    The provider cannot have acted on the request, so it is always safe to retry.
    """

    code = "connect_error"


class ProviderTimeout(TransportError):
    """The provider did not answer within the timeout."""

    code = "provider_timeout"
