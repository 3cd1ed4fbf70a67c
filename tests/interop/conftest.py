"""Fixtures of the interop suite: a real OAuth provider we did not write
(``oidc-provider`` from npm, ``provider/provider.mjs``) and our room server, both on
127.0.0.1 for the whole session, and a room per test.

- The provider runs in a ``node`` subprocess, configured by a JSON file written here
  (its clients' redirect URI is the room server's ``/oauth/callback``); its stderr is
  attached to the report of a failing test. It is killed at teardown.
- The room server runs in-process, on its own event loop in a thread, so every test's
  ``asyncio.run`` can talk to it over HTTP like any other client.
- ``room`` gives each test a room of its own (no credential or grant is shared between
  tests), its participant tokens and ``RemoteSecretsClient`` instances.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, Optional, TypeVar

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets.adapters.remote import RemoteSecretsClient
from roomsecrets.adapters.server import RunningServer, create_app, start_server
from roomsecrets.adapters.server.participant_tokens import mint_participant_token
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.oauth.retry import RetryPolicy
from tests.support import leak_watch

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
PROVIDER_SCRIPT = Path(__file__).resolve().parent / "provider" / "provider.mjs"
SCOPES = ("mail.read", "mail.send", "files.read")
#: Seconds the short-lived access tokens live; our refresh leeway is capped at half of it.
SHORT_TTL = 4
#: The crowd's token: 1,000 fetches must all land within half of its life (our refresh
#: leeway), or a second refresh would be due, and correctly so; 0.35 s here when idle.
CROWD_TTL = 6
LONG_TTL = 600
KEY = secrets.token_bytes(32)

# RFC 6749 §2.3.1: the secret is form-urlencoded before base64 in client_secret_basic;
# every character that encoding changes is here, and "%41" would decode to "A" if a
# client forgot it.
BASIC_SECRET = "s3cr+t/with=equals&amp:colon%41percent-" + secrets.token_urlsafe(12)
POST_SECRET = "post+secret/=&:%-" + secrets.token_urlsafe(12)
INTROSPECTOR_SECRET = secrets.token_urlsafe(24)


@dataclasses.dataclass(frozen=True)
class Client:
    """One client registered at the provider."""

    client_id: str
    auth_method: str
    access_token_ttl: int
    client_secret: Optional[str] = None


#: The clients, by the scenario that uses them (each scenario has its own, so the
#: provider's log can be read per client).
CLIENTS = {
    client.client_id: client
    for client in (
        Client("public-app", "none", LONG_TTL),
        Client("reuse-app", "none", LONG_TTL),
        Client("delete-app", "none", LONG_TTL),
        Client("public-short", "none", SHORT_TTL),
        Client("crowd-app", "none", CROWD_TTL),
        Client("replay-app", "none", SHORT_TTL),
        Client("basic-app", "client_secret_basic", SHORT_TTL, BASIC_SECRET),
        Client("post-app", "client_secret_post", SHORT_TTL, POST_SECRET),
        Client("cli-app", "none", SHORT_TTL),
        Client("decline-app", "none", LONG_TTL),
        Client("again-app", "none", LONG_TTL),
        Client("strict-app", "none", LONG_TTL),
        Client("narrow-app", "none", LONG_TTL),
        Client("wider-app", "none", LONG_TTL),
        Client("discovery-app", "none", SHORT_TTL),
        Client("revoke-app", "none", LONG_TTL),
        Client("revoke-basic", "client_secret_basic", LONG_TTL, BASIC_SECRET),
        Client("iss-app", "none", LONG_TTL),
        Client("iss-callback-app", "none", LONG_TTL),
        Client("discovery-callback-app", "none", LONG_TTL),
        Client("cli-issuer-app", "none", LONG_TTL),
        Client("cli-post-app", "client_secret_post", SHORT_TTL, POST_SECRET),
    )
}


# --- the room server -------------------------------------------------------------------


class RoomServer:
    """Our room server on 127.0.0.1, served from an event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.callback_url = self.url + "/oauth/callback"
        self._server: RunningServer = self._run(self._start(sock))

    async def _start(self, sock: socket.socket) -> RunningServer:
        app = create_app(
            store=MemoryStore(),
            jwt_key=KEY,
            public_url=self.url,
            service_options={"retry": RetryPolicy(base_delay=0.01, max_delay=0.05)},
        )
        return await start_server(app, sock=sock, shutdown_timeout=1.0)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def close(self) -> None:
        try:
            self._run(self._server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@pytest.fixture(scope="session")
def room_server() -> Iterator[RoomServer]:
    server = RoomServer()
    try:
        yield server
    finally:
        server.close()


# --- the provider ----------------------------------------------------------------------


def _form_encode(value: str) -> str:
    return urllib.parse.quote_plus(value)


class OidcProvider:
    """``oidc-provider`` in a node subprocess; its endpoints from discovery."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed")
        if not (REPO / "node_modules" / "oidc-provider").is_dir():
            pytest.skip("oidc-provider is not installed (npm ci)")
        config_file = workdir / "provider.json"
        config_file.write_text(json.dumps(config))
        self.stdout_file = workdir / "provider.stdout"
        self.stderr_file = workdir / "provider.stderr"
        with self.stdout_file.open("wb") as out, self.stderr_file.open("wb") as err:
            self.process = subprocess.Popen(
                [node, str(PROVIDER_SCRIPT), str(config_file)], stdout=out, stderr=err,
                stdin=subprocess.PIPE, cwd=str(REPO),  # stdin's EOF stops it (provider.mjs)
            )
        try:
            ready = self._ready_line()
            self.issuer: str = ready["issuer"]
            self.discovery = self._get_json("/.well-known/openid-configuration")
        except BaseException:
            self.stop()
            raise
        self.authorization_endpoint: str = self.discovery["authorization_endpoint"]
        self.token_endpoint: str = self.discovery["token_endpoint"]
        self.revocation_endpoint: str = self.discovery["revocation_endpoint"]
        self.introspection_endpoint: str = self.discovery["introspection_endpoint"]

    def _ready_line(self) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in self.stdout_file.read_text().splitlines():
                if line.startswith("{"):
                    found: dict[str, Any] = json.loads(line)
                    return found
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited:\n{self.stderr()}")
            time.sleep(0.05)
        raise RuntimeError(f"oidc-provider did not start in 30 s:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    # --- direct HTTP, as a test (never through our code) ---

    def _open(self, request: urllib.request.Request) -> tuple[int, Any]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=15) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as refused:
            with refused:
                return refused.code, json.loads(refused.read())

    def _get_json(self, path: str) -> Any:
        status, body = self._open(urllib.request.Request(self.issuer + path))
        assert status == 200, body
        return body

    def log(self) -> dict[str, Any]:
        """What reached the provider (see provider.mjs); remembers every token in it
        as a secret for the session's leak scan."""
        found: dict[str, Any] = self._get_json("/_interop/log")
        for entry in found["requests"]:
            for name in ("access_token", "issued_refresh_token", "presented_refresh_token",
                         "token"):
                leak_watch.remember_secret(entry.get(name))
        for entry in found["codes"]:
            leak_watch.remember_secret(entry.get("code"))
        return found

    def token_requests(self, client_id: str, grant_type: Optional[str] = None) -> list[Any]:
        """The token-endpoint requests of ``client_id`` (of one grant type), in order."""
        return [
            entry
            for entry in self.log()["requests"]
            if entry["path"] == urllib.parse.urlsplit(self.token_endpoint).path
            and entry["client_id"] == client_id
            and (grant_type is None or entry["grant_type"] == grant_type)
        ]

    def post_form(
        self, url: str, form: dict[str, str], *, basic: Optional[tuple[str, str]] = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if basic is not None:
            pair = f"{_form_encode(basic[0])}:{_form_encode(basic[1])}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        request = urllib.request.Request(
            url, data=urllib.parse.urlencode(form).encode(), headers=headers, method="POST"
        )
        return self._open(request)

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection, as the resource server (a confidential client)."""
        status, body = self.post_form(
            self.introspection_endpoint, {"token": token},
            basic=("introspector", INTROSPECTOR_SECRET),
        )
        assert status == 200, body
        found: dict[str, Any] = body
        return found

    def is_active(self, token: str) -> bool:
        return self.introspect(token)["active"] is True

    def refresh_directly(self, client_id: str, refresh_token: str) -> tuple[int, Any]:
        """A refresh-token grant POSTed by the test itself (public clients only)."""
        assert CLIENTS[client_id].auth_method == "none"
        return self.post_form(
            self.token_endpoint,
            {"grant_type": "refresh_token", "refresh_token": refresh_token,
             "client_id": client_id},
        )

    async def until_expired(self, access_token: str, *, limit: float = 30) -> None:
        """Wait until the provider itself says ``access_token`` has expired (this also
        puts our side past its refresh leeway, which is at most half the lifetime)."""
        deadline = time.monotonic() + limit
        while self.is_active(access_token):
            assert time.monotonic() < deadline, f"still active after {limit} s"
            await asyncio.sleep(0.25)
        # The provider counts whole seconds from before its response; we count from
        # when it arrived: a moment more puts our side past its leeway too.
        await asyncio.sleep(0.5)

    def oauth_args(self, client_id: str, **overrides: Any) -> dict[str, Any]:
        """The endpoints, client and scopes our API takes, for ``client_id``."""
        client = CLIENTS[client_id]
        args: dict[str, Any] = dict(
            client_id=client_id,
            authorization_endpoint=self.authorization_endpoint,
            token_endpoint=self.token_endpoint,
            scopes=["mail.read"],
        )
        if client.client_secret is not None:
            args["client_secret"] = client.client_secret
        if client.auth_method == "client_secret_post":
            # client_secret_basic is the default (RFC 6749 §2.3.1: servers MUST support it).
            args["client_auth_method"] = client.auth_method
        args.update(overrides)
        return args


    def issuer_args(self, client_id: str, **overrides: Any) -> dict[str, Any]:
        """As :meth:`oauth_args`, but naming the provider by its issuer only."""
        args = self.oauth_args(client_id, **{"issuer": self.issuer, **overrides})
        for endpoint in ("authorization_endpoint", "token_endpoint"):
            if endpoint not in overrides:
                del args[endpoint]
        return args


def provider_config(callback_url: str) -> dict[str, Any]:
    clients: list[dict[str, Any]] = [
        {
            "client_id": client.client_id,
            "token_endpoint_auth_method": client.auth_method,
            "redirect_uris": [callback_url],
            "access_token_ttl": client.access_token_ttl,
            **({"client_secret": client.client_secret} if client.client_secret else {}),
        }
        for client in CLIENTS.values()
    ]
    clients.append(
        {
            "client_id": "introspector",
            "client_secret": INTROSPECTOR_SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": [],
            "response_types": [],
            "redirect_uris": [],
        }
    )
    return {"port": 0, "scopes": list(SCOPES), "clients": clients}


_PROVIDER_KEY = pytest.StashKey["OidcProvider"]()


@pytest.fixture(scope="session")
def oidc_provider(
    room_server: RoomServer, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[OidcProvider]:
    for client in CLIENTS.values():
        leak_watch.remember_secret(client.client_secret)
    leak_watch.remember_secret(INTROSPECTOR_SECRET)
    provider = OidcProvider(
        provider_config(room_server.callback_url), tmp_path_factory.mktemp("oidc-provider")
    )
    request.config.stash[_PROVIDER_KEY] = provider
    try:
        yield provider
    finally:
        provider.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    provider = item.config.stash.get(_PROVIDER_KEY, None)
    if report.failed and provider is not None:
        tail = provider.stderr()[-4000:]
        report.sections.append(("oidc-provider stderr (last 4000 characters)", tail))


# --- a room per test -------------------------------------------------------------------

_rooms = itertools.count()


class Room:
    """A room of its own on the room server: tokens and remote clients for it."""

    def __init__(self, server: RoomServer, name: str) -> None:
        self.server = server
        self.name = name
        self.url = server.url
        self.callback_url = server.callback_url
        self._clients: list[RemoteSecretsClient] = []
        self._tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coroutine`` as a task that :meth:`close` cancels and awaits, so none is
        left holding an exception nobody retrieved (its finalizer would log it during
        a later test, and on CPython 3.11.7 a finalizer that runs while pytest parses a
        source file for a report makes ``ast.parse`` fail with "AST constructor
        recursion depth mismatch")."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.append(task)
        return task

    def token(
        self, participant_id: str, *, grant: Optional[SecretsGrant] = None,
        name: Optional[str] = None,
    ) -> str:
        token = mint_participant_token(
            KEY, room=self.name, participant_id=participant_id, name=name, grant=grant, ttl=600
        )
        leak_watch.remember_secret(token)
        return token

    def client(self, participant_id: str, **kw: Any) -> RemoteSecretsClient:
        client = RemoteSecretsClient(self.url, token=self.token(participant_id, **kw))
        self._clients.append(client)
        return client

    def agent(self) -> RemoteSecretsClient:
        """The agent: may ask anyone for any token (no WebSocket needed to ask)."""
        return self.client("agent-1", grant=SecretsGrant.allow_all(), name="mailbot")

    async def person(self, participant_id: str = "alice") -> RemoteSecretsClient:
        """The person, connected (WebSocket open), with the default grant."""
        client = self.client(participant_id, name=participant_id.title())
        await client.connect()
        return client

    async def close(self) -> None:
        for client in self._clients:
            await client.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
def room(
    room_server: RoomServer, oidc_provider: OidcProvider, request: pytest.FixtureRequest
) -> Room:
    """A fresh room (named after the test) on the session's room server."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return Room(room_server, f"{slug}-{next(_rooms)}")
