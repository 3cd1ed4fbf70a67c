"""Cluster mode (``serve --node-url``): two ``roomsecrets serve`` nodes on one store
behind one public URL. The provider's redirect, or the person's answer, reaches the
node that does not hold the request; it forwards it to the one that does, and the
agent gets its token. A forged state gets a quick 400 and nothing is forwarded. Run
on a shared file store and on Secrets Manager (a moto server)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
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

from roomsecrets.adapters.remote import RemoteSecretsClient
from roomsecrets.adapters.server.cluster import _mac, derive_keys
from roomsecrets.adapters.server.participant_tokens import mint_participant_token
from roomsecrets.core.grants import SecretsGrant
from tests.adapters.server_kit import get_page
from tests.support import leak_watch
from tests.support.fake_provider import FakeProvider
from tests.support.headless_person import authorization_redirect

REPO = Path(__file__).resolve().parents[2]
ROOM = "clusterroom"
CLIENT_ID = "cluster-mail"
KEY = secrets.token_hex(32)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Node:
    """``roomsecrets serve --node-url`` in a subprocess, behind a shared public URL."""

    def __init__(self, node_id: str, store: str, public_url: str, env: dict[str, str]) -> None:
        self.node_id = node_id
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "roomsecrets", "serve", "--port", str(self.port),
             "--store", store, "--public-url", public_url, "--node-url", self.url,
             "--node-id", node_id, "--node-timeout", "5"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stderr is not None
        first = self.process.stderr.readline()
        self.log: list[str] = [first]
        assert f"serving on {self.url}" in first, first + self.process.stderr.read()
        self._drain = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._drain.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.log.append(line)

    def remote(self, participant_id: str, **kw: Any) -> RemoteSecretsClient:
        token = mint_participant_token(KEY.encode(), room=ROOM, participant_id=participant_id,
                                       **kw)
        return RemoteSecretsClient(self.url, token=token)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self._drain.join(5)
        leak_watch.record(f"server log {self.url}", "".join(self.log))


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ROOMSECRETS_", "AWS_")) and k not in ("HTTP_PROXY", "http_proxy")}
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
               ROOMSECRETS_JWT_KEY=KEY, NO_PROXY="127.0.0.1,localhost")
    return env


@pytest.fixture(params=["file", "aws"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = base_env()
    if request.param == "file":
        yield f"file:{tmp_path / 'store'}", env
        return
    pytest.importorskip("boto3")
    pytest.importorskip("moto")
    endpoint = request.getfixturevalue("moto_endpoint")
    env.update(AWS_ENDPOINT_URL_SECRETS_MANAGER=endpoint, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_EC2_METADATA_DISABLED="true")
    yield f"aws:cluster/{secrets.token_hex(4)}", env


PUBLIC = f"http://127.0.0.1:{free_port()}"  # the balancer's address; nobody listens there


@pytest.fixture
def nodes(store: tuple[str, dict[str, str]]) -> Iterator[tuple[Node, Node]]:
    spec, env = store
    started: list[Node] = []
    try:
        started.append(Node("node-a", spec, PUBLIC, env))
        started.append(Node("node-b", spec, PUBLIC, env))
        yield started[0], started[1]
    finally:
        for node in started:
            node.stop()


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as running:
        running.register_client(CLIENT_ID, redirect_uris=[PUBLIC + "/oauth/callback"])
        yield running


def on_node(url: str, node: Node) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{node.port}"))


def oauth_args(provider: FakeProvider) -> dict[str, Any]:
    return dict(client_id=CLIENT_ID, authorization_endpoint=provider.authorization_endpoint,
                token_endpoint=provider.token_endpoint, scopes=["mail.read"])


async def next_prompt(person: RemoteSecretsClient) -> Any:
    prompts = person.oauth_prompts()
    try:
        return await asyncio.wait_for(prompts.__anext__(), 15)
    finally:
        await prompts.aclose()  # type: ignore[attr-defined]


def test_the_node_that_does_not_hold_the_request_forwards_the_callback_and_the_answer(
    nodes: tuple[Node, Node], provider: FakeProvider
) -> None:
    node_a, node_b = nodes

    async def scenario() -> None:
        everything = SecretsGrant.from_dict({
            "version": 1, "oauth": [{}], "secret_requests": [{}]})
        agent = node_a.remote("agent-1", grant=everything)
        alice_a = node_a.remote("alice")
        alice_b = node_b.remote("alice")
        await alice_a.connect()  # the person's WebSocket is on node A, with the request
        try:
            # 1. The provider's redirect reaches node B: forwarded to A, approved.
            asking = asyncio.create_task(agent.request_oauth_token(
                **oauth_args(provider), from_participant_id="alice", timeout=60))
            prompt = await next_prompt(alice_a)
            assert prompt.state.startswith("node-a.") and prompt.request_id.startswith("node-a.")
            redirect = await asyncio.to_thread(authorization_redirect, prompt.authorization_url)
            status, _, page = await asyncio.to_thread(get_page, on_node(redirect, node_b))
            assert status == 200 and "approved" in page, page
            token = await asyncio.wait_for(asking, 20)
            assert provider.is_active(token)

            # 2. The person answers through node B (oauth2 provide): forwarded to A.
            asking = asyncio.create_task(agent.request_oauth_token(
                **{**oauth_args(provider), "scopes": ["mail.read", "mail.send"]}, from_participant_id="alice",
                timeout=60))
            prompt = await next_prompt(alice_a)
            redirect = await asyncio.to_thread(authorization_redirect, prompt.authorization_url)
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(redirect).query))
            await alice_b.provide_oauth_authorization(
                request_id=prompt.request_id, code=query["code"], state=query["state"])
            assert provider.is_active(await asyncio.wait_for(asking, 20))

            # 3. A reject through node B: the agent gets request_rejected.
            asking = asyncio.create_task(agent.request_oauth_token(
                **{**oauth_args(provider), "scopes": ["calendar"]}, from_participant_id="alice",
                timeout=60))
            prompt = await next_prompt(alice_a)
            await alice_b.reject_oauth_authorization(request_id=prompt.request_id,
                                                     error="user_cancelled")
            from roomsecrets.core.errors import RequestRejected

            with pytest.raises(RequestRejected):
                await asyncio.wait_for(asking, 20)

            # 4. A forged state: a quick 400 from B, and A is asked nothing.
            asking = asyncio.create_task(agent.request_oauth_token(
                **{**oauth_args(provider), "scopes": ["contacts"]}, from_participant_id="alice",
                timeout=60))
            prompt = await next_prompt(alice_a)
            _, random, mac = prompt.state.split(".")
            a_lines = len(node_a.log)
            for forged in (f"node-b.{random}.{mac}", f"node-a.{random}.{mac[:-2]}AA",
                           f"ghost.{random}.{mac}"):
                started = time.monotonic()
                status, _, _ = await asyncio.to_thread(
                    get_page, f"{node_b.url}/oauth/callback?code=x&state={forged}")
                assert status == 400 and time.monotonic() - started < 2
            # A state that names a node that never ran (MAC right: only our key makes
            # one): 404 at once, nothing sent.
            ghost_random = secrets.token_urlsafe(16)
            ghost = f"ghost.{ghost_random}.{_mac(derive_keys(KEY.encode()).state, 'ghost', ghost_random)}"
            status, _, _ = await asyncio.to_thread(
                get_page, f"{node_b.url}/oauth/callback?code=x&state={ghost}")
            assert status == 404
            await asyncio.sleep(0.3)
            assert not any("/cluster/callback" in line for line in node_a.log[a_lines:])
            # The request is still open and answerable the right way.
            redirect = await asyncio.to_thread(authorization_redirect, prompt.authorization_url)
            status, _, _ = await asyncio.to_thread(get_page, on_node(redirect, node_b))
            assert status == 200
            await asyncio.wait_for(asking, 20)

            # 5. A secret the agent asks for through A, provided through B.
            asking = asyncio.create_task(agent.request_secret(
                url="https://api.example.com/", type="text/plain", from_participant_id="alice",
                timeout=60))
            prompts = alice_a.prompts()
            try:
                secret_prompt = await asyncio.wait_for(prompts.__anext__(), 15)
            finally:
                await prompts.aclose()  # type: ignore[attr-defined]
            assert secret_prompt.request_id.startswith("node-a.")
            # An answer already forwarded once is never forwarded again: B, told by
            # the node key that it is the second hop, answers it as its own (404).
            import aiohttp

            from roomsecrets.adapters.server.cluster import NODE_HEADER

            token = mint_participant_token(KEY.encode(), room=ROOM, participant_id="alice")
            async with aiohttp.ClientSession() as session, session.post(
                f"{node_b.url}/rooms/{ROOM}/provide_secret",
                json={"request_id": secret_prompt.request_id, "data": "c2stMQ=="},
                headers={"Authorization": f"Bearer {token}",
                         NODE_HEADER: derive_keys(KEY.encode()).node},
            ) as answer:
                assert answer.status == 404
            await alice_b.provide_secret(request_id=secret_prompt.request_id, data=b"sk-1")
            assert await asyncio.wait_for(asking, 20) == b"sk-1"
        finally:
            for client in (agent, alice_a, alice_b):
                await client.close()

    asyncio.run(scenario())


def test_a_node_that_cannot_be_reached_gives_a_clear_page(
    nodes: tuple[Node, Node], provider: FakeProvider
) -> None:
    node_a, node_b = nodes

    async def scenario() -> None:
        agent = node_a.remote("agent-1", grant=SecretsGrant.allow_all())
        alice_a = node_a.remote("alice")
        await alice_a.connect()
        asking = asyncio.create_task(agent.request_oauth_token(
            **oauth_args(provider), from_participant_id="alice", timeout=60))
        prompt = await next_prompt(alice_a)
        redirect = await asyncio.to_thread(authorization_redirect, prompt.authorization_url)
        # Node A stops answering (frozen, its record still fresh in the store).
        node_a.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            status, _, page = await asyncio.to_thread(get_page, on_node(redirect, node_b))
            assert status == 502 and "cannot be reached" in page
            assert time.monotonic() - started < 15
        finally:
            node_a.process.send_signal(signal.SIGCONT)
        # The request stayed open on its node, and nothing was lost: the forwarded
        # answer, queued while A was frozen, completes it once A runs again.
        assert provider.is_active(await asyncio.wait_for(asking, 20))
        for client in (agent, alice_a):
            await client.close()

    asyncio.run(scenario())
