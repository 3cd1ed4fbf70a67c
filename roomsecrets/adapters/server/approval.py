"""The approval page: where a person decides what an agent may do as them.

Three static files in ``approval_page/`` (plain HTML, CSS and JavaScript, no
build step, nothing from another origin), served by the room server:

    GET /approve           the page
    GET /approve/app.js    its script
    GET /approve/app.css   its style sheet

Signing in: ``roomsecrets token mint ... --login-url`` prints
``PUBLIC_URL/approve#token=<participant token>``. A URL fragment is never sent
to a server (RFC 3986 §3.5) nor put in a ``Referer`` (Fetch standard, "strip
url for use as a referrer"), so the token reaches no log. The page keeps it in
``sessionStorage``, removes it from the address bar, sends it in the first
WebSocket frame (``{"type": "authenticate", "token": ...}``; the server checks
``Origin``) and in ``Authorization: Bearer`` for the JSON operations.

Every answer carries a strict Content-Security-Policy (no inline script, no
other origin, no framing), ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import importlib.resources
import urllib.parse
from collections.abc import Awaitable, Mapping
from html import escape as html_escape
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from aiohttp import web

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
    #: Makes the handler a route serves from the page's own handler and the path.
    Wrap = Callable[[Handler, str], Handler]

__all__ = ["PAGE_PATH", "PAGE_ROUTES", "add_approval_page", "login_url", "public_origin"]

#: Where the page is served.
PAGE_PATH = "/approve"

#: Each route of the page: (path, file in approval_page/, content type, what it is).
PAGE_ROUTES: tuple[tuple[str, str, str, str], ...] = (
    (PAGE_PATH, "index.html", "text/html", "The approval page (sign in with the URL fragment)."),
    (PAGE_PATH + "/app.js", "app.js", "text/javascript", "The approval page's script."),
    (PAGE_PATH + "/app.css", "app.css", "text/css", "The approval page's style sheet."),
)


def public_origin(public_url: str) -> str:
    """The origin (RFC 6454 §6.2) of ``public_url``: what a browser sends as ``Origin``."""
    parts = urllib.parse.urlsplit(public_url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    port = parts.port
    return f"{parts.scheme}://{shown}" + ("" if port in (None, default) else f":{port}")


def login_url(public_url: str, token: str) -> str:
    """The URL that opens the approval page signed in with ``token`` (in the fragment)."""
    return public_url.rstrip("/") + PAGE_PATH + "#token=" + token


def security_headers(public_url: str) -> Mapping[str, str]:
    """The headers of every answer of the page."""
    origin = public_origin(public_url)
    # CSP Level 3 lets 'self' match ws: for an http page, but not every browser
    # does: name the WebSocket origin as well.
    socket_origin = ("wss" if origin.startswith("https:") else "ws") + origin[origin.index(":") :]
    policy = "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"connect-src 'self' {socket_origin}",
            "img-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def _read(name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath("approval_page", name).read_bytes()


def add_approval_page(
    app: web.Application, *, public_url: str, wrap: Optional[Wrap] = None
) -> None:
    """Register the page's routes (:data:`PAGE_ROUTES`) on ``app``; ``wrap(handler,
    path)``, if given, is what each route serves instead of ``handler``."""
    headers = security_headers(public_url)
    for path, name, content_type, _ in PAGE_ROUTES:
        body = _read(name)
        if name == "index.html":
            body = _under_public_path(body, public_url)
        handler = _static(body, content_type, headers)
        if wrap is not None:
            handler = wrap(handler, path)
        app.router.add_get(path, handler, name="approval_" + name)


def _under_public_path(html: bytes, public_url: str) -> bytes:
    """``html`` with its ``/approve/...`` links under the public URL's path.

    A proxy that routes to this server by path (``https://example.com/node-3`` ->
    ``/``) serves the page at ``PUBLIC_URL/approve``; the links must name the
    public path, or the browser asks the proxy for ``/approve/app.js`` and gets
    nothing. (The script finds the server's routes relative to the page.)
    """
    prefix = urllib.parse.urlsplit(public_url).path.rstrip("/")
    if not prefix:
        return html
    link = b'="' + PAGE_PATH.encode() + b"/"
    under = b'="' + html_escape(prefix, quote=True).encode("utf-8") + PAGE_PATH.encode() + b"/"
    return html.replace(link, under)


def _static(
    body: bytes, content_type: str, headers: Mapping[str, str]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    from aiohttp import web

    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)

    return serve
