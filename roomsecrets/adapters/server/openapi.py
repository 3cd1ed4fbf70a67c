"""The OpenAPI 3.1 document of the room server, built from the one route table
(:data:`roomsecrets.adapters.server.http_api.OPERATIONS`) the server registers its
routes from, plus the approval page's routes
(:data:`roomsecrets.adapters.server.approval.PAGE_ROUTES`) and the redirect from
:data:`ROOT_PATH` to the page and MeshAgent's room protocol, so it cannot describe a
route the server does not serve or miss one."""

from __future__ import annotations

from typing import Any

from ..meshagent.room import ROUTE as MESHAGENT_ROUTE
from .approval import PAGE_ROUTES
from .http_api import ERROR_STATUSES, OPERATIONS, PROMPT_SCHEMA, Operation

__all__ = ["ROOT_PATH", "openapi_document"]

#: The server's own address: it redirects to the approval page.
ROOT_PATH = "/"

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "machine-readable code"},
        "message": {"type": "string"},
        "details": {"type": "object", "description": "fields to rebuild the exception"},
    },
    "required": ["error", "message"],
}


def _status_text(status: int) -> str:
    kinds = [f"`{cls.code}`: {meaning}" for cls, code, meaning in ERROR_STATUSES if code == status]
    return "; ".join(kinds) or "error"


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": op.name, "summary": op.summary}
    if op.path.startswith("/rooms/{room}"):
        doc["parameters"] = [
            {"name": "room", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    if op.name == "oauth_callback":
        doc["parameters"] = [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in ("code", "state", "iss", "error", "error_description")
        ]
    if not op.auth:
        doc["security"] = []
    if op.json_operation:
        doc["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {f.name: _field(f.schema, f.description) for f in op.fields},
                        "required": sorted(op.required),
                        "additionalProperties": False,
                    }
                }
            },
        }
    responses: dict[str, Any] = {}
    if op.name == "websocket":
        doc["description"] = _WEBSOCKET_DETAILS
        responses["101"] = {
            "description": "switching to the WebSocket protocol; prompts arrive as "
            '{"type": "oauth_prompt", "prompt": <OAuthPrompt>, "from_participant_name"}',
        }
        responses["403"] = {
            "description": "`forbidden_origin`: the Origin header is not the server's own",
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
    elif op.name == "oauth_callback":
        responses["200"] = {
            "description": "the request was completed or rejected",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    else:
        responses["200"] = {
            "description": "success",
            "content": {"application/json": {"schema": dict(op.response or {})}},
        }
    for status in op.errors:
        content_type = "text/html" if op.name == "oauth_callback" else "application/json"
        schema = {"type": "string"} if content_type == "text/html" else _ERROR_SCHEMA
        responses[str(status)] = {
            "description": _status_text(status),
            "content": {content_type: {"schema": schema}},
        }
    doc["responses"] = responses
    return doc


_WEBSOCKET_DETAILS = (
    "Programs send the participant token in `Authorization: Bearer`; refusals are "
    "HTTP statuses before the upgrade. Browsers, which cannot set that header, "
    "open the socket without it and send "
    '{"type": "authenticate", "token": "<participant token>"} as the first frame; '
    'the server answers {"type": "authenticated", "room", "participant": {"id", "name"}, '
    '"server_time", "disconnect_grace"} or an error frame and closes with 4400 (bad '
    "first frame), 4401 (bad or expired token; an open socket is also closed with "
    "4401, after an error frame, when its token expires) or 4409 (already connected). "
    'Each {"type": "oauth_prompt"} frame carries "server_time", so a client whose clock '
    "is off can judge expires_at. A request with an "
    "Origin header other than the server's own origin is refused with 403. "
    'Besides prompts the server sends {"type": "oauth_prompt_ended", "request_id"} when '
    "an open prompt ends (answered, rejected, timed out or cancelled). A close with "
    "code 1000 disconnects at once; a drop (no close frame, or 1001 going away) keeps "
    "the participant connected for the server's grace period, and a new socket "
    "within it gets the open prompts again."
)


def _page_operation(path: str, content_type: str, summary: str) -> dict[str, Any]:
    name = "approval_" + path.rsplit("/", 1)[-1].replace(".", "_")
    return {
        "operationId": name,
        "summary": summary,
        "description": (
            "No token: the page reads it from the URL fragment (#token=<participant "
            "token>, never sent to the server). Served with a strict "
            "Content-Security-Policy, X-Content-Type-Options: nosniff, "
            "Referrer-Policy: no-referrer and Cache-Control: no-store."
        ),
        "security": [],
        "responses": {
            "200": {
                "description": "the file",
                "content": {content_type: {"schema": {"type": "string"}}},
            }
        },
    }


_ROOT_OPERATION: dict[str, Any] = {
    "operationId": "root",
    "summary": "Redirects to the approval page (PUBLIC_URL/approve).",
    "security": [],
    "responses": {
        "302": {
            "description": "to the approval page",
            "headers": {"Location": {"schema": {"type": "string"}}},
        }
    },
}


#: MeshAgent's room protocol (meshagent-api 0.30-0.44.13): docs/meshagent.md.
_MESHAGENT_OPERATION: dict[str, Any] = {
    "operationId": "meshagent_room",
    "summary": (
        "MeshAgent's room protocol for the secrets toolkit: a WebSocket upgrade with "
        "`Authorization: Bearer <a meshagent-api ParticipantToken JWT>`, binary frames."
    ),
    "parameters": [{"name": "room", "in": "path", "required": True, "schema": {"type": "string"}}],
    "security": [],
    "responses": {
        "101": {"description": "switching to the WebSocket protocol"},
        "403": {"description": "a missing, bad or other-room token (the SDK does not retry)"},
    },
}


def _field(schema: Any, description: str) -> dict[str, Any]:
    field = dict(schema)
    if description:
        field["description"] = description
    return field


def openapi_document(*, public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a server reachable at ``public_url``."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    for path, _, content_type, summary in PAGE_ROUTES:
        paths.setdefault(path, {})["get"] = _page_operation(path, content_type, summary)
    paths[ROOT_PATH] = {"get": _ROOT_OPERATION}
    paths.setdefault(MESHAGENT_ROUTE, {})["get"] = _MESHAGENT_OPERATION
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "roomsecrets room server",
            "version": "1",
            "description": (
                "A room's secrets over HTTP. Every /rooms/{room}/ route needs "
                "`Authorization: Bearer <participant token>` (HS256 JWT with claims room, "
                "sub, name, grant, exp). Errors are JSON {error, message}; the statuses: "
                + "; ".join(f"{status} `{cls.code}`" for cls, status, _ in ERROR_STATUSES)
                + "."
            ),
        },
        "servers": [{"url": public_url}],
        "components": {
            "securitySchemes": {
                "participantToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": {"Error": _ERROR_SCHEMA, "OAuthPrompt": dict(PROMPT_SCHEMA)},
        },
        "security": [{"participantToken": []}],
        "paths": paths,
    }
