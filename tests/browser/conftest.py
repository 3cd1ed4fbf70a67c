"""Fixtures of the approval-page tests: Debian's Chromium driven by Playwright (never a
downloaded browser build), the room server, the development provider, an agent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roomsecrets.dev_provider import OAuthProvider
from tests.support import leak_watch

from .kit import CLIENT_ID, SCOPES, Agent, RoomServer

CHROMIUM = os.environ.get("ROOMSECRETS_CHROMIUM", "/usr/bin/chromium")


# Module scope, not session: while Playwright's sync API runs, the main thread has a
# running event loop, and every later test that calls asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def provider() -> Iterator[OAuthProvider]:
    with OAuthProvider(on_secret=leak_watch.remember_secret, user="alice@example.test") as found:
        yield found


@pytest.fixture
def room_server(tmp_path: Path, provider: OAuthProvider) -> Iterator[RoomServer]:
    server = RoomServer(tmp_path / "store")
    provider.register_client(
        CLIENT_ID, redirect_uris=[server.url + "/oauth/callback"], scopes=SCOPES
    )
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def agent(room_server: RoomServer, provider: OAuthProvider) -> Iterator[Agent]:
    found = Agent(room_server, provider)
    try:
        yield found
    finally:
        found.close()
