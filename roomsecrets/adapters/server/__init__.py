"""The room server (aiohttp, PyJWT; extra ``aiohttp``): many rooms over HTTP and WebSocket.

``app`` builds and runs the server (``create_app``, ``start_server``);
``http_api`` is the table of routes and error statuses it registers from, and
``openapi`` describes that table; ``participant_tokens`` verifies and mints the
HS256 bearer tokens, ``signing_key`` finds their key; ``approval`` serves the
approval page from ``approval_page/``.

Importing this package loads nothing else until a name is used (PEP 562), so a
command that needs only the signing key does not import aiohttp.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import RunningServer, create_app, start_server

__all__ = ["RunningServer", "create_app", "start_server"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".app", __name__), name)
    globals()[name] = value
    return value
