"""Play the person who approves an OAuth prompt, without a browser.

:func:`approve` opens an authorization URL the way a browser would, but stops
at the provider's redirect (it never calls the client's redirect URI) and
reads ``code`` and ``state`` from its ``Location``. Blocking (urllib); from
async code call it with ``await asyncio.to_thread(approve, url)`` or directly
when the provider runs in its own thread, as :class:`FakeProvider` does.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from typing import Optional

__all__ = ["ApprovalError", "approve", "authorization_redirect"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class ApprovalError(Exception):
    """The authorization request did not end in a redirect carrying a code.

    ``error`` / ``description``: the RFC 6749 §4.1.2.1 ``error`` and
    ``error_description`` from the redirect, if it carried them. ``status``:
    the HTTP status when the provider did not redirect at all.
    """

    def __init__(
        self,
        message: str,
        *,
        error: Optional[str] = None,
        description: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.description = description
        self.status = status


def _opener() -> urllib.request.OpenerDirector:
    # Built by hand: no redirect handler (we want the Location, not the
    # client's redirect URI), no error processor (a 400 page is an answer),
    # no environment proxies (the provider is on 127.0.0.1).
    opener = urllib.request.OpenerDirector()
    handler: urllib.request.BaseHandler
    for handler in (
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
    ):
        opener.add_handler(handler)
    return opener


def authorization_redirect(authorization_url: str, *, timeout: float = 10.0) -> str:
    """GET ``authorization_url``; return the ``Location`` it redirects to.

    Raises :class:`ApprovalError` if the answer is not a redirect.
    """
    response = _opener().open(authorization_url, timeout=timeout)
    with response:
        status = response.status
        location = response.headers.get("Location")
        body = response.read(500)
    if status not in _REDIRECTS or not location:
        text = body.decode("utf-8", "replace")
        raise ApprovalError(
            f"authorization endpoint answered HTTP {status} without a redirect: {text!r}",
            status=status,
        )
    return str(location)


def approve(authorization_url: str, *, timeout: float = 10.0) -> tuple[str, str]:
    """Approve the prompt at ``authorization_url``; return ``(code, state)``.

    Raises :class:`ApprovalError` if the provider redirects with an ``error``
    (e.g. ``access_denied``), without a code or without a state, or does not
    redirect at all.
    """
    location = authorization_redirect(authorization_url, timeout=timeout)
    params = dict(
        urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query, keep_blank_values=True)
    )
    error = params.get("error")
    if error is not None:
        description = params.get("error_description")
        detail = f": {description}" if description else ""
        raise ApprovalError(
            f"authorization refused with {error}{detail}", error=error, description=description
        )
    code, state = params.get("code"), params.get("state")
    if not code:
        raise ApprovalError("the redirect carries no code")
    if state is None:
        raise ApprovalError("the redirect carries no state")
    return code, state
