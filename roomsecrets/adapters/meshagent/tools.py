"""The ``secrets`` toolkit of meshagent-api 0.44.13, as one table: :data:`TOOLS`.

Each :class:`Tool` names the JSON fields the SDK sends (its pydantic models dump
every field, None included: ``room_server_client.py``), and its handler, which
calls the caller's :class:`~roomsecrets.core.client.SecretsClient` and nothing
else: no OAuth is done here. Participant references (``participant_id``,
``delegated_by``, ``delegated_to``, ``delegate_to``) may be a connection's
participant id or a token name; :attr:`ToolCall.resolve` turns them into the
name, which is whose secrets they are.

The SDK's ``reject_oauth_authorization`` sends ``provide_oauth_authorization`` with
``code: null`` and an ``error``, and ``reject_secret`` sends ``provide_secret``
with an error; the ``reject_*`` names are accepted too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ...core.client import SecretsClient
from ...core.errors import (
    GrantDenied,
    IllegalTransition,
    InvalidInput,
    ParticipantNotConnected,
    QuotaExceeded,
    RequestCancelled,
    RequestRejected,
    RequestTimedOut,
    RoomSecretsError,
    SecretNotFound,
    UnknownRequest,
)
from .content import Arguments, EmptyReply, ErrorReply, FileReply, JsonReply, Reply

__all__ = ["TOOLKIT", "TOOLS", "NotSupported", "Tool", "ToolCall", "error_reply", "run_tool"]

#: The one toolkit this server hosts.
TOOLKIT = "secrets"
_OCTET_STREAM = "application/octet-stream"
# The fields of the SDK's OAuthClientConfig (it forbids others).
_OAUTH_FIELDS = frozenset(
    {"client_id", "client_secret", "authorization_endpoint", "token_endpoint", "no_pkce", "scopes"}
)


class NotSupported(RoomSecretsError):
    """A tool or form this server does not offer (yet)."""

    code = "not_supported"


#: meshagent-api's ``ErrorCode`` values (``error_codes.py``).
PERMISSION_DENIED, INVALID_REQUEST, NOT_FOUND, CONFLICT, OPERATION_FAILED, TIMEOUT = (
    1001, 1002, 1003, 1005, 1008, 1009,
)
#: Our errors -> the SDK's ``RoomException.code``; the first class that matches wins.
ERROR_CODES: tuple[tuple[type[RoomSecretsError], int], ...] = (
    (GrantDenied, PERMISSION_DENIED),
    (UnknownRequest, NOT_FOUND),
    (SecretNotFound, NOT_FOUND),
    (ParticipantNotConnected, NOT_FOUND),
    (IllegalTransition, CONFLICT),
    (RequestTimedOut, TIMEOUT),
    (InvalidInput, INVALID_REQUEST),
    (NotSupported, INVALID_REQUEST),
    (QuotaExceeded, INVALID_REQUEST),
    (RequestRejected, OPERATION_FAILED),
    (RequestCancelled, OPERATION_FAILED),
)


def error_reply(exc: RoomSecretsError) -> ErrorReply:
    """The SDK's error content for ``exc``: ``"<our code>: <message>"`` and its ErrorCode.
    Our messages never hold a token, code or secret, so they are safe to send."""
    code = next((sdk for kind, sdk in ERROR_CODES if isinstance(exc, kind)), OPERATION_FAILED)
    return ErrorReply(text=f"{exc.code}: {exc}", code=code)


@dataclass(frozen=True)
class ToolCall:
    """One call: the caller's client (a session with the caller's grant), its name,
    the arguments, and how a participant reference becomes a name."""

    client: SecretsClient
    caller: str
    arguments: Arguments
    resolve: Callable[[str], str] = field(repr=False)

    @property
    def fields(self) -> dict[str, Any]:
        return self.arguments.fields

    def participant(self, key: str, *, required: bool = False) -> Optional[str]:
        """The name a participant field refers to (None when absent and not required)."""
        value = self.fields.get(key)
        if value is None:
            if required:
                raise InvalidInput(f"{key} is required")
            return None
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"{key} must be a participant id")
        return self.resolve(value)

    def only_self(self, key: str) -> None:
        """Refuse ``key`` naming anyone but the caller: not supported (yet)."""
        who = self.participant(key)
        if who is not None and who != self.caller:
            raise NotSupported(f"{key} naming another participant is not supported yet")


Handler = Callable[[ToolCall], Awaitable[Reply]]


@dataclass(frozen=True)
class Tool:
    """A tool of the toolkit: the fields its input may hold, and its handler."""

    name: str
    fields: frozenset[str]
    handler: Handler
    summary: str


def _oauth(call: ToolCall) -> dict[str, Any]:
    """The core's keyword arguments from the SDK's ``oauth`` (OAuthClientConfig)."""
    if call.fields.get("connector") is not None:
        raise NotSupported("connector= (OpenAI connectors) is not supported by this server")
    config = call.fields.get("oauth")
    if not isinstance(config, dict):
        raise InvalidInput(
            "oauth (client_id, authorization_endpoint, token_endpoint, ...) is required"
        )
    unknown = sorted(set(config) - _OAUTH_FIELDS)
    if unknown:
        raise InvalidInput(f"oauth takes no field {unknown[0][:40]!r}")
    return {
        "client_id": config.get("client_id"),
        "authorization_endpoint": config.get("authorization_endpoint"),
        "token_endpoint": config.get("token_endpoint"),
        "client_secret": config.get("client_secret"),
        "scopes": config.get("scopes"),
    }


async def _request_oauth_token(call: ToolCall) -> Reply:
    config = call.fields.get("oauth")
    no_pkce = bool(config.get("no_pkce")) if isinstance(config, dict) else False
    timeout = call.fields.get("timeout")
    token = await call.client.request_oauth_token(
        **_oauth(call),
        no_pkce=no_pkce,
        from_participant_id=call.participant("participant_id", required=True) or "",
        redirect_uri=call.fields.get("redirect_uri"),  # type: ignore[arg-type]  # checked by core
        timeout=300 if timeout is None else timeout,
        delegate_to=call.participant("delegate_to"),
    )
    return JsonReply({"access_token": token})


async def _get_offline_oauth_token(call: ToolCall) -> Reply:
    token = await call.client.get_offline_oauth_token(
        **_oauth(call),
        delegated_by=call.participant("delegated_by"),
        delegated_to=call.participant("delegated_to"),
    )
    return JsonReply({"access_token": token})


async def _provide_oauth_authorization(call: ToolCall) -> Reply:
    request_id, code, error = (call.fields.get(k) for k in ("request_id", "code", "error"))
    if error is not None:
        await call.client.reject_oauth_authorization(request_id=request_id, error=error)  # type: ignore[arg-type]
    elif code is not None:
        # No state over this protocol: only the addressee's own connection can send
        # this, and the core checks that the caller is the addressee.
        await call.client.provide_oauth_authorization(request_id=request_id, code=code)  # type: ignore[arg-type]
    else:
        raise InvalidInput("give a code, or an error to reject")
    return EmptyReply()


async def _reject_oauth_authorization(call: ToolCall) -> Reply:
    await call.client.reject_oauth_authorization(
        request_id=call.fields.get("request_id"),  # type: ignore[arg-type]
        error=call.fields.get("error") or "user_cancelled",
    )
    return EmptyReply()


async def _list_secrets(call: ToolCall) -> Reply:
    secrets = await call.client.list_user_secrets()
    return JsonReply({
        "secrets": [
            {
                "id": info.id,
                "type": info.type,
                "name": info.name or "",  # the SDK's SecretInfo.name is a string
                "delegated_to": info.delegated_to,
                "agent_id": None,
            }
            for info in secrets
        ]
    })


async def _delete_secret(call: ToolCall) -> Reply:
    await call.client.delete_secret(
        id=call.fields.get("id"),  # type: ignore[arg-type]  # checked by core
        delegated_to=call.participant("delegated_to"),
    )
    return EmptyReply()


async def _exists(call: ToolCall) -> Reply:
    call.only_self("for_identity")
    secret_id, delegated_to = call.fields.get("secret_id"), call.participant("delegated_to")
    if not isinstance(secret_id, str) or not secret_id:
        raise InvalidInput("secret_id is required")
    found = any(
        info.id == secret_id and info.delegated_to == delegated_to
        for info in await call.client.list_user_secrets()
    )
    return JsonReply({"exists": found})


def _secret_id(call: ToolCall) -> str:
    secret_id = call.fields.get("secret_id")
    if secret_id is None:
        raise NotSupported("a secret is named by secret_id here (not by type or name)")
    return secret_id  # type: ignore[no-any-return]  # checked by core


async def _set_secret(call: ToolCall) -> Reply:
    call.only_self("for_identity")
    data = call.arguments.data
    if data is None:
        raise InvalidInput("set_secret takes binary content: its data is the secret")
    await call.client.set_secret(
        secret_id=_secret_id(call),
        data=data,
        type=call.fields.get("type") or _OCTET_STREAM,
        name=call.fields.get("name"),
        delegated_to=call.participant("delegated_to"),
    )
    return EmptyReply()


async def _get_secret(call: ToolCall) -> Reply:
    secret_id, delegated_to = _secret_id(call), call.participant("delegated_to")
    data = await call.client.get_secret(secret_id=secret_id, delegated_to=delegated_to)
    if data is None:
        return EmptyReply()  # the SDK's None
    info = next(
        (
            i
            for i in await call.client.list_user_secrets()
            if i.id == secret_id and i.delegated_to == delegated_to
        ),
        None,
    )
    return FileReply(
        name=(info.name if info is not None and info.name else secret_id),
        mime_type=info.type if info is not None else _OCTET_STREAM,
        data=data,
    )


async def _request_secret(call: ToolCall) -> Reply:
    timeout = call.fields.get("timeout")
    url, kind = call.fields.get("url"), call.fields.get("type")
    data = await call.client.request_secret(
        url=url,  # type: ignore[arg-type]  # checked by core
        type=kind,  # type: ignore[arg-type]
        from_participant_id=call.participant("participant_id", required=True) or "",
        timeout=300 if timeout is None else timeout,
        delegate_to=call.participant("delegate_to"),
    )
    # The SDK's request_secret returns FileContent's data.
    return FileReply(name=str(url), mime_type=str(kind), data=data)


async def _provide_secret(call: ToolCall) -> Reply:
    request_id, error = call.fields.get("request_id"), call.fields.get("error")
    if error is not None:
        await call.client.reject_secret(request_id=request_id, error=error)  # type: ignore[arg-type]
        return EmptyReply()
    if call.arguments.data is None:
        raise InvalidInput("provide_secret takes binary content: its data is the secret")
    await call.client.provide_secret(request_id=request_id, data=call.arguments.data)  # type: ignore[arg-type]
    return EmptyReply()


async def _reject_secret(call: ToolCall) -> Reply:
    await call.client.reject_secret(
        request_id=call.fields.get("request_id"),  # type: ignore[arg-type]
        error=call.fields.get("error") or "user_cancelled",
    )
    return EmptyReply()


async def _delete_requested_secret(call: ToolCall) -> Reply:
    await call.client.delete_requested_secret(
        url=call.fields.get("url"),  # type: ignore[arg-type]  # checked by core
        type=call.fields.get("type"),  # type: ignore[arg-type]
        delegated_to=call.participant("delegated_to"),
    )
    return EmptyReply()


def _tools(*tools: Tool) -> Mapping[str, Tool]:
    return {tool.name: tool for tool in tools}


def _f(*names: str) -> frozenset[str]:
    return frozenset(names)


_OAUTH_REQUEST = _f(
    "connector", "oauth", "redirect_uri", "participant_id", "timeout", "delegate_to"
)

#: Every tool of meshagent-api 0.44.13's SecretsClient, by name.
TOOLS: Mapping[str, Tool] = _tools(
    Tool("request_oauth_token", _OAUTH_REQUEST, _request_oauth_token,
         "ask a person for an access token (a prompt), or reuse a stored one"),
    Tool("get_offline_oauth_token", _f("connector", "oauth", "delegated_to", "delegated_by"),
         _get_offline_oauth_token, "a stored access token, refreshed if needed; never a prompt"),
    Tool("provide_oauth_authorization", _f("request_id", "code", "error"),
         _provide_oauth_authorization, "answer a prompt with a code, or reject it with an error"),
    Tool("reject_oauth_authorization", _f("request_id", "error"), _reject_oauth_authorization,
         "reject a prompt"),
    Tool("list_secrets", _f(), _list_secrets, "the caller's own secrets"),
    Tool("delete_secret", _f("id", "delegated_to"), _delete_secret, "delete one's own secret"),
    Tool("exists", _f("secret_id", "delegated_to", "for_identity"), _exists,
         "whether one's own secret exists"),
    Tool("set_secret", _f("secret_id", "type", "name", "delegated_to", "for_identity", "has_data"),
         _set_secret, "store one's own secret (binary content)"),
    Tool("get_secret", _f("secret_id", "type", "name", "delegated_to"), _get_secret,
         "one's own secret as file content, or empty"),
    Tool("request_secret", _f("url", "type", "participant_id", "timeout", "delegate_to"),
         _request_secret, "ask a person to type in a secret, or reuse the stored one"),
    Tool("provide_secret", _f("request_id", "error"), _provide_secret,
         "answer a secret prompt (binary content), or reject it with an error"),
    Tool("reject_secret", _f("request_id", "error"), _reject_secret, "reject a secret prompt"),
    Tool("delete_requested_secret", _f("url", "type", "delegated_to"), _delete_requested_secret,
         "delete one's own secret stored by request_secret"),
)


async def run_tool(
    tool_name: str, client: SecretsClient, caller: str, arguments: Arguments,
    resolve: Callable[[str], str],
) -> Reply:
    """Run ``tool_name`` for ``caller``; every error of ours becomes an error reply."""
    try:
        tool = TOOLS.get(tool_name)
        if tool is None:
            shown = tool_name[:60]
            raise NotSupported(f"the secrets toolkit has no tool {shown!r}")
        unknown = sorted(set(arguments.fields) - tool.fields)
        if unknown:
            raise InvalidInput(f"{tool.name} takes no field {unknown[0][:40]!r}")
        return await tool.handler(ToolCall(client, caller, arguments, resolve))
    except RoomSecretsError as exc:
        return error_reply(exc)
