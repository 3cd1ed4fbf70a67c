"""Play the person who approves an OAuth prompt, without a browser: the public
helpers of :mod:`roomsecrets.dev_provider`.

:func:`approve` opens an authorization URL the way a browser would, but stops
at the provider's redirect (it never calls the client's redirect URI) and
reads ``code`` and ``state`` from its ``Location``. Blocking (urllib); from
async code call it with ``await asyncio.to_thread(approve, url)`` or directly
when the provider runs in its own thread, as :class:`FakeProvider` does.
"""

from __future__ import annotations

from roomsecrets.dev_provider import ApprovalError, approve, authorization_redirect

__all__ = ["ApprovalError", "approve", "authorization_redirect"]
