"""HTTP requests and responses as plain values (sans-I/O).

The core builds an :class:`HttpRequest` and parses an :class:`HttpResponse`; a
transport (urllib in core, aiohttp in adapters) moves them over the wire.
Their reprs name header keys and body sizes only: bodies and header values may
hold codes, tokens or client credentials.
"""

from __future__ import annotations

from typing import Optional

from ..errors import InvalidInput
from ..values import frozen_value

__all__ = ["Headers", "HttpRequest", "HttpResponse", "header_value"]

#: Header list as sent or received: order kept, names as given.
Headers = tuple[tuple[str, str], ...]


def header_value(headers: Headers, name: str) -> Optional[str]:
    """Return the first value of header ``name`` (case-insensitive), or None."""
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


@frozen_value
class HttpRequest:
    """One HTTP request to send."""

    method: str
    url: str
    headers: Headers = ()
    body: bytes = b""

    def __post_init__(self) -> None:
        method = self.method
        if not isinstance(method, str) or not method.isalpha() or not method.isupper():
            raise InvalidInput(f"unsupported HTTP method {self.method!r}")
        if not isinstance(self.body, bytes):
            raise InvalidInput("HttpRequest.body must be bytes")

    def header(self, name: str) -> Optional[str]:
        """Return the first value of header ``name`` (case-insensitive), or None."""
        return header_value(self.headers, name)

    def __repr__(self) -> str:
        names = [key for key, _ in self.headers]
        return (
            f"HttpRequest(method={self.method!r}, url={self.url!r}, "
            f"headers={names!r}, body=<{len(self.body)} bytes>)"
        )


@frozen_value
class HttpResponse:
    """One HTTP response received."""

    status: int
    headers: Headers = ()
    body: bytes = b""

    def header(self, name: str) -> Optional[str]:
        """Return the first value of header ``name`` (case-insensitive), or None."""
        return header_value(self.headers, name)

    def __repr__(self) -> str:
        names = [key for key, _ in self.headers]
        return (
            f"HttpResponse(status={self.status}, headers={names!r}, "
            f"body=<{len(self.body)} bytes>)"
        )
