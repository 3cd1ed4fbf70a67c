"""Two room server nodes on one Secrets Manager store (a moto server): what
``docs/scaling.md`` describes, run for real.

Two ``roomsecrets serve --store aws:PREFIX`` subprocesses on 127.0.0.1 share the
store and the signing key (``ROOMSECRETS_JWT_KEY``); boto3's default client in
each is pointed at moto by ``AWS_ENDPOINT_URL_SECRETS_MANAGER``. The room's
pending request lives on node A (the agent asks there, the person's WebSocket is
open there, the provider redirects to A's ``/oauth/callback``). The credential
it stores is then fetched offline through node B, refreshed through B once it
expires, and node A hands out the rotated token: credentials are shared through
the store, pending requests are not (B's ``/oauth/callback`` does not know A's
state).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")
pytest.importorskip("boto3")
pytest.importorskip("moto")

from roomsecrets.adapters.remote import RemoteSecretsClient
from roomsecrets.adapters.server.participant_tokens import mint_participant_token
from roomsecrets.core.grants import SecretsGrant
from tests.adapters.server_kit import approve_via_callback, get_page
from tests.support import leak_watch
from tests.support.fake_provider import FakeProvider
from tests.support.headless_person import authorization_redirect

REPO = Path(__file__).resolve().parents[2]
ROOM = "tworoom"
CLIENT_ID = "two-node-mail"
KEY = secrets.token_hex(32)
LIFETIME = 3  # seconds: the refresh is due after half of it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_env(moto_endpoint: str) -> dict[str, str]:
    """The environment of a node: boto3's default client on moto, dummy credentials,
    no AWS profile or instance metadata, the shared signing key."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ROOMSECRETS_", "AWS_")) and k not in ("HTTP_PROXY", "http_proxy")
    }
    env.update(
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        AWS_ENDPOINT_URL_SECRETS_MANAGER=moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        ROOMSECRETS_JWT_KEY=KEY,
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


class Node:
    """``roomsecrets serve --store aws:PREFIX`` in a subprocess."""

    def __init__(self, prefix: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.callback = self.url + "/oauth/callback"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "roomsecrets", "serve", "--port", str(self.port),
             "--store", f"aws:{prefix}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stderr is not None
        first = self.process.stderr.readline()
        self.log: list[str] = [first]
        assert f"serving on {self.url}" in first, first + self.process.stderr.read()
        # Keep draining the log so the server never blocks on a full pipe.
        self._drain = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._drain.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.log.append(line)

    def remote(self, participant_id: str, **kw: Any) -> RemoteSecretsClient:
        token = mint_participant_token(
            KEY.encode(), room=ROOM, participant_id=participant_id, **kw
        )
        return RemoteSecretsClient(self.url, token=token)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self._drain.join(5)
        leak_watch.record(f"server log {self.url}", "".join(self.log))


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    running = FakeProvider(access_token_lifetime=LIFETIME)
    with running:
        yield running


@pytest.fixture
def nodes(moto_endpoint: str) -> Iterator[tuple[Node, Node]]:
    prefix = f"twonodes/{secrets.token_hex(4)}"
    env = node_env(moto_endpoint)
    started: list[Node] = []
    try:
        started.append(Node(prefix, env))
        started.append(Node(prefix, env))
        yield started[0], started[1]
    finally:
        for node in started:
            node.stop()


def oauth_args(provider: FakeProvider) -> dict[str, Any]:
    return dict(
        client_id=CLIENT_ID,
        authorization_endpoint=provider.authorization_endpoint,
        token_endpoint=provider.token_endpoint,
        scopes=["mail.read"],
    )


def on_node(url: str, node: Node) -> str:
    """``url`` with its scheme and host:port swapped for ``node``'s."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{node.port}"))


def test_approved_through_node_a_fetched_and_refreshed_through_node_b(
    nodes: tuple[Node, Node], provider: FakeProvider
) -> None:
    node_a, node_b = nodes
    # The provider redirects to node A: the node that holds the pending request.
    provider.register_client(CLIENT_ID, redirect_uris=[node_a.callback])

    async def scenario() -> None:
        grant = SecretsGrant.allow_all()
        agent_a = node_a.remote("agent-1", name="mailbot", grant=grant)
        agent_b = node_b.remote("agent-1", name="mailbot", grant=grant)
        alice_a = node_a.remote("alice", name="Alice")
        await alice_a.connect()  # the person's WebSocket is open on node A
        try:
            # Nothing stored yet, seen from either node.
            assert await agent_b.get_offline_oauth_token(
                **oauth_args(provider), delegated_by="alice"
            ) is None

            request = asyncio.create_task(
                agent_a.request_oauth_token(
                    **oauth_args(provider), from_participant_id="alice", timeout=60
                )
            )
            prompts = alice_a.oauth_prompts()
            try:
                prompt = await asyncio.wait_for(prompts.__anext__(), 15)
            finally:
                await prompts.aclose()  # type: ignore[attr-defined]
            assert prompt.redirect_uri == node_a.callback

            # Node B does not hold the request: its callback does not know the state.
            redirect = await asyncio.to_thread(authorization_redirect, prompt.authorization_url)
            assert redirect.startswith(node_a.callback + "?")
            status, _, page = await asyncio.to_thread(get_page, on_node(redirect, node_b))
            assert status == 404, page
            # The approval itself, through node A's callback (a fresh code: the
            # one above was never exchanged, but a browser would approve again).
            status, _, page = await asyncio.to_thread(
                approve_via_callback, prompt.authorization_url
            )
            assert status == 200, page
            token = await asyncio.wait_for(request, 20)
            assert provider.is_active(token)
            exchanges = len(provider.token_requests)

            # Offline through node B: the same credential, from the shared store.
            via_b = await agent_b.get_offline_oauth_token(
                **oauth_args(provider), delegated_by="alice"
            )
            assert via_b == token
            assert len(provider.token_requests) == exchanges  # no token POST for it

            # Expiry: node B refreshes (concurrent callers, one POST), node A
            # then hands out the rotated token without another refresh.
            await asyncio.sleep(LIFETIME / 2 + 0.3)
            rotated = await asyncio.gather(
                *(
                    agent_b.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice")
                    for _ in range(5)
                )
            )
            assert len(set(rotated)) == 1
            [fresh] = set(rotated)
            assert fresh is not None and fresh != token
            assert provider.is_active(fresh)
            assert provider.refresh_posts == 1
            via_a = await agent_a.get_offline_oauth_token(
                **oauth_args(provider), delegated_by="alice"
            )
            assert via_a == fresh
            assert provider.refresh_posts == 1
            assert provider.revoked_grants == 0
        finally:
            for client in (agent_a, agent_b, alice_a):
                await client.close()

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 60
    # Both nodes kept serving (their logs go to the session's leak scan on stop).
    for node in nodes:
        assert node.process.poll() is None, "".join(node.log)
