"""What the browser tests share: the room server and an agent on an event loop in a
thread (Playwright's sync API owns the test's thread), the development OAuth
provider, participant tokens, and the sign-in URL of the approval page."""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import socket
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Optional, TypeVar

from roomsecrets.adapters.file import FileSecretStore
from roomsecrets.adapters.remote import RemoteSecretsClient
from roomsecrets.adapters.server import RunningServer, create_app, start_server
from roomsecrets.adapters.server.approval import login_url
from roomsecrets.adapters.server.participant_tokens import mint_participant_token
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.dev_provider import OAuthProvider
from tests.support import leak_watch

T = TypeVar("T")

ROOM = "browser-room"
PERSON = "alice"
PERSON_NAME = "Alice"
AGENT = "agent-1"
AGENT_NAME = "mailbot"
CLIENT_ID = "mail-app"
SCOPES = ("mail.read", "mail.send")
#: Seconds a dropped page stays connected in these tests (the default is 30).
GRACE = 5.0
#: Where screenshots go (git-ignored: build/ is in .gitignore).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


class RoomServer:
    """The room server on 127.0.0.1 in its own thread and event loop; it can be
    stopped and started again on the same port (a restart), on the same file store."""

    def __init__(self, folder: Path, *, grace: float = GRACE, key: Optional[bytes] = None):
        self.key = secrets.token_bytes(32) if key is None else key
        self.folder = folder
        self.grace = grace
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        self._probe: Optional[socket.socket] = probe
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Optional[RunningServer] = None

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def start(self) -> None:
        self.run(self._start())

    async def _start(self) -> None:
        sock, self._probe = self._probe, None
        if sock is None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
        app = create_app(
            store=FileSecretStore(str(self.folder)),
            jwt_key=self.key,
            public_url=self.url,
            disconnect_grace=self.grace,
        )
        self._server = await start_server(app, sock=sock, shutdown_timeout=1.0)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self.run(server.close())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
        if self._probe is not None:
            self._probe.close()

    def token(self, participant_id: str, *, name: Optional[str], grant: SecretsGrant) -> str:
        token = mint_participant_token(
            self.key, room=ROOM, participant_id=participant_id, name=name, grant=grant, ttl=600
        )
        leak_watch.remember_secret(token)
        return token

    def person_token(self) -> str:
        return self.token(PERSON, name=PERSON_NAME, grant=SecretsGrant())

    def login_url(self) -> str:
        return login_url(self.url, self.person_token())

    def client(self, token: str) -> RemoteSecretsClient:
        """A client made on the server's loop (aiohttp sessions belong to a loop)."""

        async def make() -> RemoteSecretsClient:
            return RemoteSecretsClient(self.url, token=token, room=ROOM)

        return self.run(make())


class Agent:
    """The agent: asks the person for a token over HTTP, from the server's loop."""

    def __init__(self, server: RoomServer, provider: OAuthProvider) -> None:
        self.server = server
        self.provider = provider
        grant = SecretsGrant.allow_all()
        self.client = server.client(server.token(AGENT, name=AGENT_NAME, grant=grant))

    def request(self, *, timeout: float = 60.0, **extra: Any) -> concurrent.futures.Future[str]:
        return self.server.submit(
            self.client.request_oauth_token(
                client_id=CLIENT_ID,
                authorization_endpoint=self.provider.authorization_endpoint,
                token_endpoint=self.provider.token_endpoint,
                scopes=list(SCOPES),
                from_participant_id=PERSON,
                timeout=timeout,
                **extra,
            )
        )

    def ask_secret(
        self, url: str = "https://api.example.com/v1", *, timeout: float = 60.0
    ) -> concurrent.futures.Future[bytes]:
        """Ask the person to type in a secret for ``url`` (request_secret)."""
        return self.server.submit(
            self.client.request_secret(
                url=url, type="text/plain", from_participant_id=PERSON, timeout=timeout
            )
        )

    def close(self) -> None:
        self.server.run(self.client.close())


def provider_host(provider: OAuthProvider) -> str:
    """The provider's host and port as its authorization URL shows them."""
    return provider.authorization_endpoint.split("/")[2]
