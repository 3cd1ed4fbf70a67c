"""The room server's HTTP interface, as data: routes, JSON shapes, errors, WebSocket frames.

Standard library only: the server (:mod:`roomsecrets.adapters.server`), the
remote client (:mod:`roomsecrets.adapters.remote`), the OpenAPI document
(:mod:`roomsecrets.adapters.server.openapi`) and the CLI all read this one table, so
they cannot drift apart.

Authentication
    Every ``/rooms/{room}/...`` route needs ``Authorization: Bearer <participant
    token>``: an HS256 JWT with claims ``room``, ``sub`` (participant id),
    ``name``, ``grant`` (``SecretsGrant.to_dict()``) and ``exp``
    (:mod:`roomsecrets.adapters.server.participant_tokens`). The token is never put in
    a URL. Any number of HTTP calls may use one token at once; they work whether
    or not the participant has a WebSocket open (an agent needs none).

Routes (``POST`` bodies are JSON objects whose keys are the keywords of the
:class:`~roomsecrets.core.client.SecretsClient` method of the same name; an
unknown key, a missing required key or a value of the wrong type is a 400)::

    POST /rooms/{room}/list_user_secrets            {}
    POST /rooms/{room}/list_delegated_secrets       {}
         -> {"secrets": [{"id", "type", "name", "delegated_to", "delegated_by"}, ...]}
    POST /rooms/{room}/delete_user_secret           {"id", "delegated_to"?}  -> {}
    POST /rooms/{room}/request_oauth_token          {"client_id"?, "authorization_endpoint"?,
         "token_endpoint"?, "issuer"?, "from_participant_id", "redirect_uri"?,
         "client_secret"?, "client_auth_method"?, "scopes"?, "timeout"?, "no_pkce"?,
         "delegate_to"?, "resource"?, "rejected_access_token"?}  -> {"access_token": str}
         (a long request: it answers when the person approves, rejects, leaves, or
         ``timeout`` seconds pass; ``redirect_uri`` defaults to PUBLIC_URL/oauth/callback.
         A client that drops the request cancels it. Both endpoints are required
         unless ``issuer`` is given: then the server learns those left out from the
         issuer's metadata, RFC 8414 / OpenID Connect Discovery. ``client_id`` is
         required unless ``resource`` names an MCP server: then the server
         discovers and registers everything itself, docs/mcp.md.)
    POST /rooms/{room}/get_offline_oauth_token      {"client_id"?, "authorization_endpoint"?,
         "token_endpoint"?, "issuer"?, "client_secret"?, "client_auth_method"?, "scopes"?,
         "timeout"?, "delegated_by"?, "participant_name"?, "delegated_to"?, "resource"?,
         "rejected_access_token"?}
         -> {"access_token": str | null}
         (``client_auth_method``: "client_secret_basic" or "client_secret_post", how
         the secret is sent, RFC 6749 §2.3.1.)
    POST /rooms/{room}/provide_oauth_authorization  {"request_id", "code", "state"?, "iss"?}
         -> {}
    POST /rooms/{room}/reject_oauth_authorization   {"request_id", "error"}          -> {}
    POST /rooms/{room}/request_secret               {"url", "type", "from_participant_id",
         "timeout"?, "delegate_to"?}  -> {"data": base64}   (a long request, as above)
    POST /rooms/{room}/provide_secret               {"request_id", "data" (base64)}  -> {}
    POST /rooms/{room}/reject_secret                {"request_id", "error"}          -> {}
    POST /rooms/{room}/delete_requested_secret      {"url", "type", "delegated_to"?}
         -> {"deleted": {...}}
    POST /rooms/{room}/set_secret                   {"secret_id", "data" (base64),
         "type"?, "name"?, "delegated_to"?}         -> {}
    POST /rooms/{room}/get_secret                   {"secret_id", "delegated_to"?}
         -> {"data": base64 str | null}
    GET  /rooms/{room}/participants
         -> {"participants": [{"id", "name"}, ...]}  (the connected ones)
    GET  /rooms/{room}/ws                           WebSocket (below)
    GET  /oauth/callback?code=&state=&iss=  |  ?error=&state=   (no token: ``state`` is the
         proof; ``iss`` is checked as RFC 9207 says)
         -> 200 text/html; 400/404/502 text/html when it cannot complete the request
    GET  /openapi.json                              -> this table as OpenAPI 3.1

    Bodies holding a token (request_oauth_token, get_offline_oauth_token,
    get_secret) are sent with ``Cache-Control: no-store``.

WebSocket ``/rooms/{room}/ws``
    Opening it makes the participant *connected* (``SecretsService.connect``
    with the token's name and grant): prompts can be addressed to it and it is
    listed by ``/participants``. A program authenticates with the
    ``Authorization`` header; a browser (the approval page), which cannot set
    headers on a WebSocket, opens it without one and sends
    ``{"type": "authenticate", "token": JWT}`` as its first frame, so the token is
    never in a URL. A bad first frame closes the socket with code 4400, a bad or
    expired token with 4401, a second socket of a connected participant with 4409
    (409 before the upgrade when the header was used). An open socket whose token
    expires gets an ``invalid_token`` error frame and is closed with 4401; the
    participant leaves at once (no grace period). A socket whose ``Origin``
    is not the server's own gets 403 before the upgrade. A normal close (1000)
    disconnects at once: pending requests it made or was asked end. A dropped
    socket, or a browser's 1001 "going away", keeps the participant connected for
    the server's grace period (``disconnect_grace``, about 30 s), and a new socket
    within it gets the open prompts again. Server -> client frames (JSON text)::

        {"type": "oauth_prompt", "prompt": {"request_id", "authorization_url", "state",
         "code_challenge", "from_participant_id", "client_id", "scopes",
         "redirect_uri", "expires_at", "delegate_to"}, "from_participant_name",
         "server_time"}
        (``server_time``: the server's clock when it sent the frame, which
        ``expires_at`` is on: a client whose own clock is off judges deadlines by it)
        {"type": "oauth_prompt_ended", "request_id"}   (answered, rejected, cancelled
         or timed out: it can no longer be answered)
        {"type": "secrets_changed"}   (the participant's stored secrets changed)
        {"type": "pong"}
        {"type": "error", "error": CODE, "message": TEXT}

    Client -> server: ``{"type": "ping"}``. Anything else (not JSON, not an
    object, another type, a binary frame) gets an ``error`` frame; the
    connection stays open. Prompts are sent as they are addressed, including
    those open when the socket opened; answer them over HTTP.

Errors: ``{"error": CODE, "message": TEXT}`` (plus ``details`` for a few kinds, so
clients rebuild the same exception), with the status from :data:`ERROR_STATUSES`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, Optional

from ...core.api import DeletedSecret, OAuthPrompt, SecretInfo, SecretPrompt
from ...core.errors import (
    ConfigurationError,
    GrantDenied,
    IllegalTransition,
    InsecureEndpointError,
    InvalidInput,
    IssuerMismatch,
    LeaseLost,
    OAuthError,
    ParticipantNotConnected,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    RefreshBusy,
    RequestCancelled,
    RequestRejected,
    RequestTimedOut,
    RoomSecretsError,
    SecretNotFound,
    StoreError,
    TooManyPendingRequests,
    UnknownRequest,
    VersionConflict,
)
from ...core.inputs import CLIENT_AUTH_METHODS
from ...core.oauth.endpoints import is_loopback_host
from ...core.pending.machine import PendingInput, PendingState
from ...core.values import frozen_value

__all__ = [
    "CLOSE_ALREADY_CONNECTED",
    "CLOSE_BAD_FRAME",
    "CLOSE_INVALID_TOKEN",
    "ERROR_STATUSES",
    "OPERATIONS",
    "PROMPT_SCHEMA",
    "BodyTooLarge",
    "Field",
    "InvalidParticipantToken",
    "NodeUnreachable",
    "Operation",
    "ParticipantAlreadyConnected",
    "check_server_url",
    "decode_data",
    "deleted_to_json",
    "encode_data",
    "error_body",
    "error_from_body",
    "operation",
    "prompt_from_json",
    "prompt_to_json",
    "secret_info_to_json",
    "secret_prompt_from_json",
    "secret_prompt_to_json",
    "status_for",
    "unverified_claims",
]


# --- errors that exist only over HTTP -----------------------------------------------


class InvalidParticipantToken(RoomSecretsError, PermissionError):
    """The participant token is missing, malformed, expired, not HS256, signed with
    another key, or for another room (HTTP 401)."""

    code = "invalid_token"


class BodyTooLarge(InvalidInput):
    """The request body is over the server's limit (HTTP 413)."""

    code = "body_too_large"


class NodeUnreachable(RoomSecretsError):
    """Cluster mode: the node holding the request could not be reached (HTTP 502). The
    request stays open there; answering again once it is back completes it."""

    code = "node_unreachable"


class ParticipantAlreadyConnected(InvalidInput):
    """The participant already has a WebSocket open (HTTP 409); in process,
    ``SecretsService.connect`` raises InvalidInput for the same thing."""

    code = "already_connected"


#: WebSocket close codes (RFC 6455 §7.4.2: 4000-4999 are for applications), which a
#: browser can read although it cannot see the status of a refused handshake: a bad
#: first frame, a bad or expired token (also when an open socket's token expires),
#: a participant that already has a socket open.
CLOSE_BAD_FRAME = 4400
CLOSE_INVALID_TOKEN = 4401
CLOSE_ALREADY_CONNECTED = 4409


#: HTTP status of each error kind; the first class the error is an instance of wins.
ERROR_STATUSES: tuple[tuple[type[RoomSecretsError], int, str], ...] = (
    (InvalidParticipantToken, 401, "bad, missing, expired or other-room participant token"),
    (BodyTooLarge, 413, "request body over the server's limit"),
    (ParticipantAlreadyConnected, 409, "the participant already has a WebSocket open"),
    (IssuerMismatch, 400, "the answer's iss is missing or not the request's issuer (RFC 9207)"),
    (InvalidInput, 400, "bad input: malformed JSON, a missing or invalid field"),
    (GrantDenied, 403, "the participant's grant does not allow it (or not addressed to you)"),
    (UnknownRequest, 404, "no open pending request with this id or state"),
    (SecretNotFound, 404, "the caller has no secret with this id and delegated_to"),
    (QuotaExceeded, 409, "the caller's secrets would exceed the room's count or bytes limit"),
    (IllegalTransition, 409, "the request was already answered"),
    (ParticipantNotConnected, 409, "the person asked is not connected (no open WebSocket)"),
    (RequestRejected, 409, "the person rejected the request"),
    (VersionConflict, 409, "a concurrent write won"),
    (RequestCancelled, 410, "the request ended because a participant left or gave up"),
    (TooManyPendingRequests, 429, "too many open requests; retry later"),
    (NodeUnreachable, 502, "cluster mode: the node holding the request is unreachable"),
    (ProviderTimeout, 504, "the provider did not answer in time"),
    (RequestTimedOut, 504, "nobody answered the prompt in time"),
    (OAuthError, 502, "the provider answered with an OAuth error (e.g. invalid_grant)"),
    (ProviderError, 502, "the provider could not be reached or answered garbage"),
    (StoreError, 503, "the secret store failed; retry later"),
    (RefreshBusy, 503, "another process is refreshing this credential; retry later"),
    (LeaseLost, 503, "a refresh lease was lost; retry later"),
    (ConfigurationError, 500, "the server is misconfigured"),
    (RoomSecretsError, 500, "any other error"),
)


def status_for(error: RoomSecretsError) -> int:
    """The HTTP status the server answers ``error`` with (:data:`ERROR_STATUSES`)."""
    for cls, status, _ in ERROR_STATUSES:
        if isinstance(error, cls):
            return status
    return 500  # pragma: no cover - RoomSecretsError is last in the table


_MAX_MESSAGE = 500


def error_body(error: RoomSecretsError) -> dict[str, Any]:
    """The JSON body for ``error``: ``{"error", "message"}`` plus ``details`` when the
    exception carries fields a client needs to rebuild it (never a secret: these
    fields are already sanitised by the error classes)."""
    body: dict[str, Any] = {"error": error.code, "message": str(error)[:_MAX_MESSAGE]}
    details: dict[str, Any] = {}
    if isinstance(error, IllegalTransition):
        details = {"state": error.state.name, "event": error.event.name}
    elif isinstance(error, TooManyPendingRequests):
        details = {"limit": error.limit}
    elif isinstance(error, RequestRejected):
        details = {"reason": error.error, "what": error.what}
    elif isinstance(error, RequestCancelled):
        details = {"reason": error.reason}
    elif isinstance(error, VersionConflict):
        details = {"expected": error.expected, "actual": error.actual}
    elif isinstance(error, OAuthError):
        details = {
            "oauth_error": error.error,
            "description": error.description,
            "uri": error.uri,
            "status": error.status,
        }
    elif isinstance(error, ProviderError):
        details = {"status": error.status}
        if isinstance(error, ProviderUnavailable):
            details["retry_after"] = error.retry_after
    if details:
        body["details"] = details
    return body


def _error_classes() -> dict[str, type[RoomSecretsError]]:
    from ...core import errors

    found: dict[str, type[RoomSecretsError]] = {}
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, RoomSecretsError):
            found.setdefault(cls.code, cls)
    for cls in (InvalidParticipantToken, BodyTooLarge, ParticipantAlreadyConnected,
                NodeUnreachable):
        found[cls.code] = cls
    return found


_BY_STATUS: dict[int, type[RoomSecretsError]] = {
    400: InvalidInput,
    401: InvalidParticipantToken,
    403: GrantDenied,
    404: UnknownRequest,
    413: BodyTooLarge,
}


def _opt_int(value: object) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# C0 and C1 controls and DEL: a server's text reaches terminals (the CLI prints it),
# where an escape sequence could rewrite what the person sees.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _opt_str(value: object) -> Optional[str]:
    """``value`` if it is a string, its control characters made spaces; else None."""
    return _CONTROL_CHARS.sub(" ", value) if isinstance(value, str) else None


def error_from_body(status: int, body: object) -> RoomSecretsError:
    """Rebuild the exception a server answered with: the class named by the body's
    ``error`` code (:func:`error_body`), else one chosen by the HTTP status."""
    fields: Mapping[str, object] = body if isinstance(body, Mapping) else {}
    code = fields.get("error")
    message = _opt_str(fields.get("message")) or f"the server answered HTTP {status}"
    message = message[:_MAX_MESSAGE]
    raw_details = fields.get("details")
    details: Mapping[str, object] = raw_details if isinstance(raw_details, Mapping) else {}
    cls = _error_classes().get(code) if isinstance(code, str) else None
    if cls is None:
        fallback = _BY_STATUS.get(status, RoomSecretsError)
        if status >= 500 and status != 504:
            fallback = ProviderError if status in (502, 503) else RoomSecretsError
        return fallback(message)
    try:
        return _rebuild(cls, message, details)
    except (KeyError, TypeError, ValueError):
        return _BY_STATUS.get(status, RoomSecretsError)(message)


def _rebuild(
    cls: type[RoomSecretsError], message: str, details: Mapping[str, object]
) -> RoomSecretsError:
    if issubclass(cls, IllegalTransition):
        return cls(PendingState[str(details["state"])], PendingInput[str(details["event"])])
    if issubclass(cls, TooManyPendingRequests):
        return cls(message, limit=_opt_int(details.get("limit")) or 0)
    if issubclass(cls, RequestRejected):
        return cls(
            _opt_str(details.get("reason")) or "rejected",
            what=_opt_str(details.get("what")) or "authorization request",
        )
    if issubclass(cls, RequestCancelled):
        return cls(_opt_str(details.get("reason")) or "cancelled")
    if issubclass(cls, VersionConflict):
        return cls(
            message,
            expected=_opt_int(details.get("expected")),
            actual=_opt_int(details.get("actual")),
        )
    if issubclass(cls, OAuthError):
        return cls(
            _opt_str(details.get("oauth_error")) or cls.code,
            _opt_str(details.get("description")),
            _opt_str(details.get("uri")),
            _opt_int(details.get("status")),
        )
    if issubclass(cls, ProviderUnavailable):
        retry_after = details.get("retry_after")
        return cls(
            message,
            status=_opt_int(details.get("status")),
            retry_after=float(retry_after) if isinstance(retry_after, (int, float)) else None,
        )
    if issubclass(cls, ProviderError):
        return cls(message, status=_opt_int(details.get("status")))
    return cls(message)


# --- JSON shapes of values ------------------------------------------------------------


def encode_data(data: bytes) -> str:
    """Secret bytes as they travel in JSON: standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def decode_data(value: object, what: str = "data") -> bytes:
    """The bytes of a base64 JSON string; InvalidInput (naming ``what``) otherwise."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidInput(f"{what} is not valid base64") from None


def deleted_to_json(deleted: DeletedSecret) -> dict[str, Any]:
    return {
        "id": deleted.id,
        "delegated_to": deleted.delegated_to,
        "type": deleted.type,
        "revocation": deleted.revocation,
        "host": deleted.host,
        "error": deleted.error,
    }


def secret_info_to_json(info: SecretInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "type": info.type,
        "name": info.name,
        "delegated_to": info.delegated_to,
        "delegated_by": info.delegated_by,
    }


def prompt_to_json(prompt: OAuthPrompt) -> dict[str, Any]:
    return {
        "request_id": prompt.request_id,
        "authorization_url": prompt.authorization_url,
        "state": prompt.state,
        "code_challenge": prompt.code_challenge,
        "from_participant_id": prompt.from_participant_id,
        "client_id": prompt.client_id,
        "scopes": list(prompt.scopes),
        "redirect_uri": prompt.redirect_uri,
        "expires_at": prompt.expires_at,
        "delegate_to": prompt.delegate_to,
        "resource": prompt.resource,
        "resource_name": prompt.resource_name,
        "brokered": prompt.brokered,
    }


def prompt_from_json(data: object) -> OAuthPrompt:
    """The prompt a server sent (:func:`prompt_to_json`); InvalidInput if malformed."""
    if not isinstance(data, Mapping):
        raise InvalidInput("a prompt must be a JSON object")
    try:
        scopes = data["scopes"]
        expires_at = data["expires_at"]
        challenge = data.get("code_challenge")
        strings = {
            key: data[key]
            for key in (
                "request_id",
                "authorization_url",
                "state",
                "from_participant_id",
                "client_id",
                "redirect_uri",
            )
        }
    except KeyError as missing:
        raise InvalidInput(f"a prompt lacks {missing.args[0]!r}") from None
    if not all(isinstance(value, str) for value in strings.values()):
        raise InvalidInput("a prompt's ids and URLs must be strings")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidInput("a prompt's scopes must be a list of strings")
    # The server checks each of these for control characters before it makes a
    # prompt; one that has them did not come from it, and would reach a terminal.
    if any(_CONTROL_CHARS.search(text) for text in [*strings.values(), *scopes]):
        raise InvalidInput("a prompt's fields must not contain control characters")
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, (int, float))
        or not _is_finite(expires_at)
    ):
        raise InvalidInput("a prompt's expires_at must be a finite number")
    if challenge is not None and not isinstance(challenge, str):
        raise InvalidInput("a prompt's code_challenge must be a string or null")
    # Absent from servers before delegate_to existed: the requester, then.
    delegate_to = data.get("delegate_to")
    if delegate_to is not None and (
        not isinstance(delegate_to, str) or _CONTROL_CHARS.search(delegate_to)
    ):
        raise InvalidInput("a prompt's delegate_to must be a participant id or null")
    resource, resource_name = data.get("resource"), data.get("resource_name")
    for value, name in ((resource, "resource"), (resource_name, "resource_name")):
        if value is not None and (not isinstance(value, str) or _CONTROL_CHARS.search(value)):
            raise InvalidInput(f"a prompt's {name} must be a string or null")
    return OAuthPrompt(
        request_id=strings["request_id"],
        authorization_url=strings["authorization_url"],
        state=strings["state"],
        code_challenge=challenge,
        from_participant_id=strings["from_participant_id"],
        client_id=strings["client_id"],
        scopes=tuple(scopes),
        redirect_uri=strings["redirect_uri"],
        expires_at=float(expires_at),
        delegate_to=delegate_to,
        resource=resource,
        resource_name=resource_name,
        brokered=data.get("brokered") is True,
    )


def secret_prompt_to_json(prompt: SecretPrompt) -> dict[str, Any]:
    return {
        "request_id": prompt.request_id,
        "from_participant_id": prompt.from_participant_id,
        "url": prompt.url,
        "type": prompt.type,
        "delegate_to": prompt.delegate_to,
        "expires_at": prompt.expires_at,
    }


def secret_prompt_from_json(data: object) -> SecretPrompt:
    """The secret prompt a server sent (:func:`secret_prompt_to_json`); InvalidInput
    if malformed."""
    if not isinstance(data, Mapping):
        raise InvalidInput("a prompt must be a JSON object")
    try:
        expires_at = data["expires_at"]
        strings = {
            key: data[key]
            for key in ("request_id", "from_participant_id", "url", "type", "delegate_to")
        }
    except KeyError as missing:
        raise InvalidInput(f"a prompt lacks {missing.args[0]!r}") from None
    if not all(isinstance(value, str) for value in strings.values()):
        raise InvalidInput("a prompt's ids, URL and type must be strings")
    # As for OAuth prompts: the server never sends control characters (a terminal
    # would act on them).
    if any(_CONTROL_CHARS.search(text) for text in strings.values()):
        raise InvalidInput("a prompt's fields must not contain control characters")
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, (int, float))
        or not _is_finite(expires_at)
    ):
        raise InvalidInput("a prompt's expires_at must be a finite number")
    return SecretPrompt(
        request_id=strings["request_id"],
        from_participant_id=strings["from_participant_id"],
        url=strings["url"],
        type=strings["type"],
        delegate_to=strings["delegate_to"],
        expires_at=float(expires_at),
    )


def _is_finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int beyond any float
        return False


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without checking its signature.

    For clients, which do not hold the key: to learn their own participant id and
    room. The server always verifies. Raises InvalidParticipantToken if the token
    is not a JWT with a JSON object payload.
    """
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise InvalidParticipantToken("the participant token is not a JWT")
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, binascii.Error, RecursionError):  # RecursionError: nested too deep
        raise InvalidParticipantToken("the participant token's payload is not JSON") from None
    if not isinstance(claims, dict):
        raise InvalidParticipantToken("the participant token's payload is not a JSON object")
    return claims


# --- the route table ------------------------------------------------------------------

_STRING = {"type": "string"}
_OPTIONAL_STRING = {"type": ["string", "null"]}
_SCOPES = {"type": ["array", "null"], "items": {"type": "string"}}
_TIMEOUT = {"type": "number", "exclusiveMinimum": 0, "default": 300}


@frozen_value
class Field:
    """One key of a POST body: its JSON schema, whether it is required, what it means."""

    name: str
    schema: Mapping[str, Any]
    required: bool = False
    description: str = ""


@frozen_value
class Operation:
    """One HTTP route of the server.

    ``name`` is the SecretsClient method a JSON operation runs (or the route's
    own name); ``fields`` the keys of its JSON body; ``response`` the JSON schema
    of its 200 answer (None: not JSON); ``errors`` the statuses it can answer
    with besides 200; ``auth``: whether it needs a participant token.
    """

    name: str
    method: str
    path: str
    summary: str
    fields: tuple[Field, ...] = ()
    response: Optional[Mapping[str, Any]] = None
    errors: tuple[int, ...] = ()
    auth: bool = True
    #: A JSON POST operation run on the participant's SecretsClient.
    json_operation: bool = True

    # Cached: every request's body is checked against them.
    @functools.cached_property
    def required(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.required)

    @functools.cached_property
    def allowed(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


_EMPTY = {"type": "object", "additionalProperties": False}
_COMMON_ERRORS = (400, 401, 403, 413)
_OAUTH_FIELDS = (
    Field(
        name="client_id",
        schema=_STRING,
        description=(
            "required unless resource is given: then the server discovers the provider "
            "and registers its own client (the MCP broker, docs/mcp.md)"
        ),
    ),
    Field(
        name="authorization_endpoint",
        schema=_OPTIONAL_STRING,
        description="required unless issuer is given; when given, it wins over the metadata",
    ),
    Field(
        name="token_endpoint",
        schema=_OPTIONAL_STRING,
        description="required unless issuer is given; when given, it wins over the metadata",
    ),
    Field(
        name="issuer",
        schema=_OPTIONAL_STRING,
        description=(
            "the provider's issuer identifier: endpoints left out come from its metadata "
            "(RFC 8414, OpenID Connect Discovery); its revocation endpoint is used on "
            "delete (RFC 7009) and the answer's iss is checked (RFC 9207)"
        ),
    ),
    Field(name="client_secret", schema=_OPTIONAL_STRING, description="never leaves the server"),
    Field(
        name="client_auth_method",
        schema={"type": ["string", "null"], "enum": [*CLIENT_AUTH_METHODS, None]},
        description=(
            "how client_secret is sent (RFC 6749 §2.3.1), as the client is registered; "
            "needs client_secret. Default: the stored credential's method, else "
            "client_secret_basic unless the issuer's metadata lists only "
            "client_secret_post of the two"
        ),
    ),
    Field(name="scopes", schema=_SCOPES),
    Field(name="timeout", schema=_TIMEOUT, description="seconds"),
    Field(
        name="resource",
        schema=_OPTIONAL_STRING,
        description=(
            "the protected resource (an MCP server's URL) the token is for (RFC 8707); "
            "without client_id the server learns the rest (RFC 9728, RFC 8414, RFC 7591)"
        ),
    ),
)
_TOKEN_RESPONSE = {
    "type": "object",
    "properties": {"access_token": _STRING},
    "required": ["access_token"],
}
_SECRET_INFO = {
    "type": "object",
    "properties": {
        "id": _STRING,
        "type": _STRING,
        "name": _OPTIONAL_STRING,
        "delegated_to": _OPTIONAL_STRING,
        "delegated_by": {
            **_OPTIONAL_STRING,
            "description": "null for the caller's own secrets; else the owner who "
            "delegated it to the caller",
        },
    },
    "required": ["id", "type", "name", "delegated_to", "delegated_by"],
}
DELETED_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "id": _STRING,
        "delegated_to": _OPTIONAL_STRING,
        "type": _STRING,
        "revocation": {"enum": ["revoked", "failed", "not_published", "not_oauth"]},
        "host": _OPTIONAL_STRING,
        "error": _OPTIONAL_STRING,
    },
    "required": ["id", "delegated_to", "type", "revocation", "host", "error"],
    "additionalProperties": False,
}
PROMPT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "request_id": _STRING,
        "authorization_url": _STRING,
        "state": _STRING,
        "code_challenge": _OPTIONAL_STRING,
        "from_participant_id": _STRING,
        "client_id": _STRING,
        "scopes": {"type": "array", "items": _STRING},
        "redirect_uri": _STRING,
        "expires_at": {"type": "number", "description": "seconds since the epoch"},
        "delegate_to": {
            **_OPTIONAL_STRING,
            "description": "who gets the credential once approved (the requester unless "
            "it named another participant)",
        },
        "resource": {
            **_OPTIONAL_STRING,
            "description": "the MCP server (protected resource, RFC 8707) the token is for",
        },
        "resource_name": {
            **_OPTIONAL_STRING,
            "description": "its name, from its RFC 9728 metadata, when it gives one",
        },
        "brokered": {
            "type": "boolean",
            "description": "the server brokers the flow: the client is its own registration",
        },
    },
}

#: Every route the server serves, in the order the OpenAPI document lists them.
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        name="list_user_secrets",
        method="POST",
        path="/rooms/{room}/list_user_secrets",
        summary="List the caller's own secrets, OAuth credentials included.",
        response={
            "type": "object",
            "properties": {"secrets": {"type": "array", "items": _SECRET_INFO}},
            "required": ["secrets"],
        },
        errors=_COMMON_ERRORS,
    ),
    Operation(
        name="list_delegated_secrets",
        method="POST",
        path="/rooms/{room}/list_delegated_secrets",
        summary=(
            "List the secrets others delegated to the caller (delegated_by names each "
            "owner), OAuth credentials included. Needs no grant: the delegation is the "
            "permission."
        ),
        response={
            "type": "object",
            "properties": {"secrets": {"type": "array", "items": _SECRET_INFO}},
            "required": ["secrets"],
        },
        errors=_COMMON_ERRORS,
    ),
    Operation(
        name="delete_user_secret",
        method="POST",
        path="/rooms/{room}/delete_user_secret",
        summary=(
            "Delete one of the caller's secrets (404 secret_not_found if there is none; "
            "with type, 400 wrong_secret_type for a secret of another type, nothing "
            "deleted); an OAuth credential is then revoked at its provider's revocation "
            "endpoint (RFC 7009), and `deleted.revocation` says how that went (a failed "
            "revocation does not fail the delete)."
        ),
        fields=(
            Field(name="id", schema=_STRING, required=True),
            Field(name="delegated_to", schema=_OPTIONAL_STRING),
            Field(
                name="type",
                schema=_OPTIONAL_STRING,
                description="delete only a secret of this type (oauth_token: credentials only)",
            ),
        ),
        response={
            "type": "object",
            "properties": {"deleted": DELETED_SCHEMA},
            "required": ["deleted"],
            "additionalProperties": False,
        },
        errors=(*_COMMON_ERRORS, 404, 503),
    ),
    Operation(
        name="request_oauth_token",
        method="POST",
        path="/rooms/{room}/request_oauth_token",
        summary=(
            "An access token for from_participant_id's account: a stored one (refreshed "
            "if needed), else a prompt to that participant, waiting up to `timeout` "
            "seconds. Dropping the HTTP request cancels the prompt."
        ),
        fields=(
            *_OAUTH_FIELDS[:4],
            Field(name="from_participant_id", schema=_STRING, required=True),
            Field(
                name="redirect_uri",
                schema=_STRING,
                description="default: the server's PUBLIC_URL/oauth/callback",
            ),
            *_OAUTH_FIELDS[4:],
            Field(name="no_pkce", schema={"type": "boolean", "default": False}),
            Field(
                name="delegate_to",
                schema=_OPTIONAL_STRING,
                description=(
                    "store the credential delegated to this participant instead of the "
                    "caller; a credential delegated to another is never reused unasked"
                ),
            ),
            Field(
                name="rejected_access_token",
                schema=_OPTIONAL_STRING,
                description=(
                    "a token the resource server refused even after a refresh: a stored "
                    "credential still holding it is not handed back; the person is asked"
                ),
            ),
        ),
        response=_TOKEN_RESPONSE,
        errors=(*_COMMON_ERRORS, 409, 410, 429, 502, 503, 504),
    ),
    Operation(
        name="get_offline_oauth_token",
        method="POST",
        path="/rooms/{room}/get_offline_oauth_token",
        summary="A stored access token of delegated_by (refreshed if needed); never a prompt.",
        fields=(
            *_OAUTH_FIELDS,
            Field(name="delegated_by", schema=_OPTIONAL_STRING),
            Field(
                name="participant_name",
                schema=_OPTIONAL_STRING,
                description="alias of delegated_by",
            ),
            Field(
                name="delegated_to",
                schema=_OPTIONAL_STRING,
                description=(
                    "default: the caller. Only the credential's owner may name another "
                    "participant (403 grant_denied otherwise)"
                ),
            ),
            Field(
                name="rejected_access_token",
                schema=_OPTIONAL_STRING,
                description=(
                    "an access token the resource server just refused (401): refreshed "
                    "now if the credential still holds it (single-flight)"
                ),
            ),
        ),
        response={
            "type": "object",
            "properties": {"access_token": _OPTIONAL_STRING},
            "required": ["access_token"],
        },
        errors=(*_COMMON_ERRORS, 502, 503, 504),
    ),
    Operation(
        name="provide_oauth_authorization",
        method="POST",
        path="/rooms/{room}/provide_oauth_authorization",
        summary="Answer a prompt addressed to the caller with the provider's code.",
        fields=(
            Field(name="request_id", schema=_STRING, required=True),
            Field(name="code", schema=_STRING, required=True),
            Field(name="state", schema=_OPTIONAL_STRING),
            Field(
                name="iss",
                schema=_OPTIONAL_STRING,
                description="the redirect's iss parameter (RFC 9207), when it has one",
            ),
        ),
        response=_EMPTY,
        errors=(*_COMMON_ERRORS, 404, 409, 502, 503, 504),
    ),
    Operation(
        name="reject_oauth_authorization",
        method="POST",
        path="/rooms/{room}/reject_oauth_authorization",
        summary="Refuse a prompt addressed to the caller; the requester gets request_rejected.",
        fields=(
            Field(name="request_id", schema=_STRING, required=True),
            Field(name="error", schema=_STRING, required=True, description="e.g. user_cancelled"),
        ),
        response=_EMPTY,
        errors=(*_COMMON_ERRORS, 404, 409),
    ),
    Operation(
        name="request_secret",
        method="POST",
        path="/rooms/{room}/request_secret",
        summary=(
            "Ask from_participant_id to type in a secret for url (an API key, say) and "
            "answer with its bytes (base64). A secret stored by an earlier request for "
            "the same url and type comes back with no prompt. A long request, as "
            "request_oauth_token is; a client that drops it cancels it."
        ),
        fields=(
            Field(name="url", schema=_STRING, required=True),
            Field(name="type", schema=_STRING, required=True, description="a MIME type"),
            Field(name="from_participant_id", schema=_STRING, required=True),
            Field(name="timeout", schema=_TIMEOUT),
            Field(
                name="delegate_to",
                schema=_OPTIONAL_STRING,
                description="who the stored secret is delegated to (default: the caller)",
            ),
        ),
        response={
            "type": "object",
            "properties": {"data": {"type": "string", "contentEncoding": "base64"}},
            "required": ["data"],
        },
        errors=(*_COMMON_ERRORS, 404, 408, 409, 429),
    ),
    Operation(
        name="provide_secret",
        method="POST",
        path="/rooms/{room}/provide_secret",
        summary=(
            "Answer a secret prompt addressed to the caller with the secret (base64): it "
            "is stored as the caller's secret, delegated as the prompt says, and handed "
            "to the requester."
        ),
        fields=(
            Field(name="request_id", schema=_STRING, required=True),
            Field(
                name="data", schema={"type": "string", "contentEncoding": "base64"}, required=True
            ),
        ),
        response=_EMPTY,
        errors=(*_COMMON_ERRORS, 404, 409, 503),
    ),
    Operation(
        name="reject_secret",
        method="POST",
        path="/rooms/{room}/reject_secret",
        summary="Refuse a secret prompt addressed to the caller; the requester gets "
        "request_rejected.",
        fields=(
            Field(name="request_id", schema=_STRING, required=True),
            Field(name="error", schema=_STRING, required=True, description="e.g. user_cancelled"),
        ),
        response=_EMPTY,
        errors=(*_COMMON_ERRORS, 404, 409),
    ),
    Operation(
        name="delete_requested_secret",
        method="POST",
        path="/rooms/{room}/delete_requested_secret",
        summary=(
            "Delete the caller's secret that request_secret stored for url and type, "
            "delegated to delegated_to (404 secret_not_found if there is none)."
        ),
        fields=(
            Field(name="url", schema=_STRING, required=True),
            Field(name="type", schema=_STRING, required=True),
            Field(name="delegated_to", schema=_OPTIONAL_STRING),
        ),
        response={
            "type": "object",
            "properties": {"deleted": DELETED_SCHEMA},
            "required": ["deleted"],
        },
        errors=(*_COMMON_ERRORS, 404),
    ),
    Operation(
        name="set_secret",
        method="POST",
        path="/rooms/{room}/set_secret",
        summary="Store bytes as one of the caller's secrets.",
        fields=(
            Field(name="secret_id", schema=_STRING, required=True),
            Field(
                name="data", schema={"type": "string", "contentEncoding": "base64"}, required=True
            ),
            Field(name="type", schema={"type": "string", "default": "application/octet-stream"}),
            Field(name="name", schema=_OPTIONAL_STRING),
            Field(name="delegated_to", schema=_OPTIONAL_STRING),
        ),
        response=_EMPTY,
        errors=(*_COMMON_ERRORS, 503),
    ),
    Operation(
        name="get_secret",
        method="POST",
        path="/rooms/{room}/get_secret",
        summary=(
            "One of the caller's secrets, or with delegated_by one that participant "
            "delegated to the caller (not OAuth credentials), base64, or null."
        ),
        fields=(
            Field(name="secret_id", schema=_STRING, required=True),
            Field(name="delegated_to", schema=_OPTIONAL_STRING),
            Field(
                name="delegated_by",
                schema=_OPTIONAL_STRING,
                description="the owner who delegated the secret to the caller",
            ),
        ),
        response={
            "type": "object",
            "properties": {"data": {"type": ["string", "null"], "contentEncoding": "base64"}},
            "required": ["data"],
        },
        errors=(*_COMMON_ERRORS, 503),
    ),
    Operation(
        name="list_participants",
        method="GET",
        path="/rooms/{room}/participants",
        summary="The connected participants (those with an open WebSocket).",
        response={
            "type": "object",
            "properties": {
                "participants": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"id": _STRING, "name": _OPTIONAL_STRING},
                    },
                }
            },
            "required": ["participants"],
        },
        errors=(401,),
        json_operation=False,
    ),
    Operation(
        name="websocket",
        method="GET",
        path="/rooms/{room}/ws",
        summary=(
            "WebSocket: connects the participant while open and pushes "
            '{"type": "oauth_prompt", "prompt": {...}} for each prompt addressed to it. '
            'Send {"type": "ping"} to get {"type": "pong"}; anything else gets an '
            '{"type": "error"} frame. Token in the Authorization header, or (browsers) '
            'in a first {"type": "authenticate", "token"} frame; a foreign Origin is 403.'
        ),
        errors=(400, 401, 403, 409),
        json_operation=False,
    ),
    Operation(
        name="oauth_callback",
        method="GET",
        path="/oauth/callback",
        summary=(
            "The provider's redirect: ?code=&state= completes the pending request whose "
            "state matches (as its addressee's provide_oauth_authorization, with the "
            "RFC 9207 iss when the redirect carries one); ?error=&state= "
            "rejects it. Answers a small HTML page with Cache-Control: no-store and "
            "Referrer-Policy: no-referrer; 400 without state, 404 for an unknown state, "
            "502/504 when the code exchange fails."
        ),
        errors=(400, 404, 409, 502, 503, 504),
        auth=False,
        json_operation=False,
    ),
    Operation(
        name="openapi",
        method="GET",
        path="/openapi.json",
        summary="This API as an OpenAPI 3.1 document.",
        response={"type": "object"},
        auth=False,
        json_operation=False,
    ),
)


def operation(name: str) -> Operation:
    """The route named ``name`` (KeyError if there is none)."""
    for op in OPERATIONS:
        if op.name == name:
            return op
    raise KeyError(name)


def check_server_url(
    server_url: object, *, allow_insecure_http: bool = False, what: str = "server_url"
) -> str:
    """``server_url`` if a participant token may be sent there; else InvalidInput.

    Plain ``http`` only to a loopback host (``localhost``, 127.0.0.0/8, ``::1``) or
    with ``allow_insecure_http``: RFC 6750 §5.3 (bearer tokens travel over TLS).
    """
    if not isinstance(server_url, str) or not server_url.lower().startswith(
        ("http://", "https://")
    ):
        raise InvalidInput(f"{what} must be an http or https URL")
    try:
        host = urllib.parse.urlsplit(server_url).hostname
    except ValueError:
        raise InvalidInput(f"{what} cannot be parsed") from None
    if not host:
        raise InvalidInput(f"{what} has no host")
    if (
        server_url.lower().startswith("http://")
        and not allow_insecure_http
        and not is_loopback_host(host)
    ):
        raise InsecureEndpointError(
            "the participant token would cross the network in clear text: use https, or "
            "allow plain http explicitly (allow_insecure_http=True, CLI "
            "--allow-insecure-http; RFC 6750 §5.3)"
        )
    return server_url
