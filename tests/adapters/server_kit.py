"""Shared pieces of the room server tests: a real server on 127.0.0.1 (ephemeral
port), participant tokens, a person who approves through ``/oauth/callback``."""

from __future__ import annotations

import contextlib
import secrets
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any, Optional

import aiohttp
from aiohttp import web

from roomsecrets.adapters.remote import RemoteSecretsClient
from roomsecrets.adapters.server import RunningServer, create_app, start_server
from roomsecrets.adapters.server.participant_tokens import mint_participant_token
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.oauth.retry import RetryPolicy
from roomsecrets.core.ports import SecretStore
from tests.support.fake_provider import FakeProvider
from tests.support.headless_person import authorization_redirect

ROOM = "myroom"
CLIENT_ID = "mailbot-app"
KEY = secrets.token_bytes(32)


class Served:
    """A running server: its URL, app, and tokens signed with its key."""

    def __init__(self, url: str, app: web.Application, server: RunningServer) -> None:
        self.url = url
        self.callback_url = url + "/oauth/callback"
        self.app = app
        self.server = server

    def token(
        self,
        participant_id: str,
        *,
        grant: Optional[SecretsGrant] = None,
        room: str = ROOM,
        name: Optional[str] = None,
        ttl: float = 600,
    ) -> str:
        return mint_participant_token(
            KEY, room=room, participant_id=participant_id, name=name, grant=grant, ttl=ttl
        )

    def remote(
        self, participant_id: str, *, grant: Optional[SecretsGrant] = None, **kw: Any
    ) -> RemoteSecretsClient:
        return RemoteSecretsClient(self.url, token=self.token(participant_id, grant=grant, **kw))

    def headers(self, participant_id: str, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(participant_id, **kw)}"}


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serving(
    *,
    store: Optional[SecretStore] = None,
    provider: Optional[FakeProvider] = None,
    **app_options: Any,
) -> AsyncIterator[Served]:
    """Start the room server on an ephemeral loopback port; register its callback
    as ``provider``'s redirect URI for :data:`CLIENT_ID`."""
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if provider is not None:
        provider.register_client(CLIENT_ID, redirect_uris=[url + "/oauth/callback"])
    app_options.setdefault(
        "service_options", {"retry": RetryPolicy(base_delay=0.01, max_delay=0.05)}
    )
    app = create_app(store=store or MemoryStore(), jwt_key=KEY, public_url=url, **app_options)
    server = await start_server(app, sock=sock, shutdown_timeout=1.0)
    assert server.url == url
    try:
        yield Served(url, app, server)
    finally:
        await server.close()


@contextlib.contextmanager
def running_provider(**settings: Any) -> Iterator[FakeProvider]:
    with FakeProvider(**settings) as provider:
        yield provider


def oauth_args(provider: FakeProvider, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        client_id=CLIENT_ID,
        authorization_endpoint=provider.authorization_endpoint,
        token_endpoint=provider.token_endpoint,
        scopes=["mail.read"],
    )
    args.update(kw)
    return args


def _direct_opener() -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    handler: urllib.request.BaseHandler
    for handler in (urllib.request.ProxyHandler({}), urllib.request.HTTPHandler()):
        opener.add_handler(handler)
    return opener


def get_page(url: str) -> tuple[int, dict[str, str], str]:
    """GET ``url`` as a browser tab would (blocking): status, headers, text."""
    response = _direct_opener().open(url, timeout=15)
    with response:
        return (
            response.status,
            dict(response.headers.items()),
            response.read().decode("utf-8", "replace"),
        )


def approve_via_callback(authorization_url: str) -> tuple[int, dict[str, str], str]:
    """Play the person in a browser: approve at the provider, follow its redirect to
    the server's ``/oauth/callback``. Blocking; call with ``asyncio.to_thread``."""
    return get_page(authorization_redirect(authorization_url))


async def bearer_websocket_status(served: Served, room: str, token: str) -> int:
    """The HTTP status a WebSocket upgrade with ``token`` as its bearer gets (101: opened)."""
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(
                f"{served.url}/rooms/{room}/ws", headers={"Authorization": f"Bearer {token}"}
            )
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status
        await ws.close()
        return 101
