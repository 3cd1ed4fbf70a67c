"""HTTP requests and responses as plain values (sans-I/O).

The core builds an :class:`HttpRequest` and parses an :class:`HttpResponse`; a
transport (urllib in core, aiohttp in adapters) moves them over the wire.
Their reprs name header keys and body sizes only: bodies and header values may
hold codes, tokens or client credentials.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional, Protocol, Union

from ..errors import InvalidInput
from ..values import frozen_value

__all__ = [
    "HeaderMapping",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "ReceivedHeaders",
    "header_pairs",
    "header_value",
]

#: Header list as sent or received: order kept, names as given.
Headers = tuple[tuple[str, str], ...]


class HeaderMapping(Protocol):
    """Headers as HTTP clients hand them out: anything whose ``items()`` gives
    ``(name, value)`` pairs (``dict``, ``http.client.HTTPMessage``, multidicts)."""

    def items(self) -> Iterable[tuple[str, str]]: ...


#: Headers a parser accepts: a :class:`HeaderMapping` or ``(name, value)`` pairs.
ReceivedHeaders = Union[HeaderMapping, Iterable[tuple[str, str]]]


def header_pairs(headers: ReceivedHeaders) -> Headers:
    """Return ``headers`` as a :data:`Headers` tuple, order kept.

    ``headers`` is a mapping (anything with ``items()``: ``dict``,
    ``http.client.HTTPMessage``, aiohttp's and httpx's multidicts, whose repeated
    names all come through) or an iterable of ``(name, value)`` pairs (tuples or
    lists of two). Every name and value must be a ``str``: raises
    :class:`~roomsecrets.core.errors.InvalidInput` otherwise (bytes included:
    decode them first), whichever header is looked up, and naming only types,
    since values may hold credentials.

    >>> header_pairs({"Content-Type": "application/json"})
    (('Content-Type', 'application/json'),)
    >>> header_pairs([("Retry-After", "5")])
    (('Retry-After', '5'),)
    >>> header_pairs([(b"Retry-After", b"5")])
    Traceback (most recent call last):
    ...
    roomsecrets.core.errors.InvalidInput: a header name must be a str, not bytes
    """
    items = getattr(headers, "items", None)
    source: Any = items() if callable(items) else headers
    try:
        entries = iter(source)
    except TypeError:
        raise InvalidInput(
            f"headers must be a mapping or (name, value) pairs, not {type(headers).__name__}"
        ) from None
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        # A str of two characters would unpack into a "pair": only tuples and lists do.
        if not isinstance(entry, (tuple, list)):
            raise InvalidInput(
                f"a header pair must be a tuple or a list, not {type(entry).__name__}"
            )
        if len(entry) != 2:
            raise InvalidInput(f"a header pair has 2 items, not {len(entry)}")
        key, value = entry
        for part, what in ((key, "name"), (value, "value")):
            if not isinstance(part, str):
                raise InvalidInput(f"a header {what} must be a str, not {type(part).__name__}")
        pairs.append((key, value))
    return tuple(pairs)


def header_value(headers: ReceivedHeaders, name: str) -> Optional[str]:
    """Return the first value of header ``name`` (case-insensitive), or None.

    ``headers`` is a mapping or pairs, as :func:`header_pairs` takes them (and
    refuses them: :class:`~roomsecrets.core.errors.InvalidInput`).

    >>> header_value({"content-type": "text/html"}, "Content-Type")
    'text/html'
    >>> header_value([("Retry-After", "5")], "retry-after")
    '5'
    """
    wanted = name.lower()
    for key, value in header_pairs(headers):
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
