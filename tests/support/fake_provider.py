"""``FakeProvider``: the public development provider
(:class:`roomsecrets.testing.OAuthProvider`) with the test session's leak watch
wired in, so every secret it issues or receives is scanned for at the end of
the run (``tests/support/leak_watch.py``)."""

from __future__ import annotations

from typing import Any

from roomsecrets.dev_provider import AUTH_METHODS, CannedResponse, OAuthProvider, TokenQuirk
from tests.support import leak_watch

__all__ = ["AUTH_METHODS", "CannedResponse", "FakeProvider", "TokenQuirk"]


class FakeProvider(OAuthProvider):
    """:class:`OAuthProvider` that tells ``leak_watch`` each secret it sees."""

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("on_secret", leak_watch.remember_secret)
        super().__init__(**settings)
