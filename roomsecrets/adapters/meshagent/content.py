"""The content values of meshagent-api's ``messaging.py``: what a tool takes and answers.

A content is a JSON header with a ``"type"`` plus, for some types, the payload's
binary trailer:

====================  =============================================  ===========
type                  JSON header                                    trailer
====================  =============================================  ===========
``json``              ``{"type": "json", "json": {...}}``            none
``binary``            ``{"type": "binary", "headers": {...}}``       the data
``empty``             ``{"type": "empty"}``                          none
``file``              ``{"type": "file", "name", "mime_type"}``      the data
``error``             ``{"type": "error", "text", "code"?}``         none
====================  =============================================  ===========

A tool's arguments arrive as ``json``, ``binary`` or ``empty`` (:func:`read_arguments`);
its answer (a ``__response__`` message) is one of the reply values below. The SDK
turns an ``error`` into ``RoomException(text, code=code)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ...core.errors import InvalidInput

__all__ = [
    "Arguments",
    "EmptyReply",
    "ErrorReply",
    "FileReply",
    "JsonReply",
    "Reply",
    "read_arguments",
]


@dataclass(frozen=True)
class Arguments:
    """A tool's input: the JSON fields (``json``, or ``binary``'s headers) and the data."""

    fields: dict[str, Any]
    data: Optional[bytes] = field(default=None, repr=False)


def read_arguments(header: object, trailer: bytes) -> Arguments:
    """The arguments of a ``room.invoke_tool`` from its ``arguments`` header and trailer.

    Raises InvalidInput for another content type (a streamed ``control`` input
    included) or a malformed one.
    """
    if not isinstance(header, dict):
        raise InvalidInput("arguments must be a content object with a 'type'")
    kind = header.get("type")
    if kind == "json":
        fields = header.get("json")
        if not isinstance(fields, dict):
            raise InvalidInput("json arguments must hold a JSON object")
        return Arguments(fields=fields)
    if kind == "binary":
        fields = header.get("headers", {})
        if not isinstance(fields, dict):
            raise InvalidInput("binary arguments' headers must be a JSON object")
        return Arguments(fields=fields, data=trailer)
    if kind == "empty":
        return Arguments(fields={})
    shown = kind if isinstance(kind, str) and len(kind) <= 40 else "?"
    raise InvalidInput(f"the secrets toolkit takes json, binary or empty arguments, not {shown!r}")


@dataclass(frozen=True)
class JsonReply:
    """``{"type": "json", "json": value}``."""

    value: dict[str, Any] = field(repr=False)

    def content(self) -> tuple[dict[str, Any], bytes]:
        return {"type": "json", "json": self.value}, b""


@dataclass(frozen=True)
class EmptyReply:
    """``{"type": "empty"}``: done, nothing to say (the SDK's None)."""

    def content(self) -> tuple[dict[str, Any], bytes]:
        return {"type": "empty"}, b""


@dataclass(frozen=True)
class FileReply:
    """``{"type": "file", "name", "mime_type"}`` with the data as the trailer."""

    name: str
    mime_type: str
    data: bytes = field(repr=False)

    def content(self) -> tuple[dict[str, Any], bytes]:
        return {"type": "file", "name": self.name, "mime_type": self.mime_type}, self.data


@dataclass(frozen=True)
class ErrorReply:
    """``{"type": "error", "text", "code"}``: the SDK raises ``RoomException(text, code=code)``."""

    text: str
    code: int

    def content(self) -> tuple[dict[str, Any], bytes]:
        return {"type": "error", "text": self.text, "code": self.code}, b""


Reply = Union[JsonReply, EmptyReply, FileReply, ErrorReply]
