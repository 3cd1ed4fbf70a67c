"""``RoomSecretsAuth`` (``roomsecrets/adapters/mcp.py``) driving the official MCP client.

Everything real, on loopback: a room server (``create_app``), alice connected over its
WebSocket approving each prompt as a browser would (the MCP server's /authorize, then
its redirect to the room's /oauth/callback), an agent with a ``RemoteSecretsClient``,
and an MCP server built with the official SDK (``tests/support/mcp_server.py``). The
agent's MCP session is the SDK's own ``streamable_http_client`` + ``ClientSession``
over an ``httpx2.AsyncClient(auth=RoomSecretsAuth(...))``; its ``whoami`` tool names
the user of the token the call carried. One test does the same with the in-process
``SecretsClient`` (which needs a ``redirect_uri``).

The last tests put the auth in front of a bare loopback HTTP server (always 401, or
recording what it got) with a recording stand-in for the room's client, to pin what
the flow sends when nothing can help: at most three tries, never a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Container, Sequence
from typing import Any, Optional

import pytest

pytest.importorskip("mcp")
pytest.importorskip("uvicorn")
pytest.importorskip("aiohttp")

import httpx2
from aiohttp import web
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from roomsecrets.adapters.mcp import RoomSecretsAuth
from roomsecrets.adapters.remote import RemoteSecretsClient
from roomsecrets.core.api import OAuthPrompt
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.service import SecretsService
from roomsecrets.dev_provider import approve as approve_at
from tests.adapters.server_kit import Served, approve_via_callback, bound_socket, serving
from tests.support import leak_watch
from tests.support.mcp_server import McpServer

WAIT = 30


class Room:
    """A room server, alice approving every prompt, and the agent's client."""

    def __init__(self, served: Served, agent: RemoteSecretsClient, alice: RemoteSecretsClient):
        self.served = served
        self.agent = agent
        self.alice = alice
        #: Every prompt alice got, in order; each approved.
        self.prompts: list[OAuthPrompt] = []

    async def approve_all(self) -> None:
        async for prompt in self.alice.oauth_prompts():
            self.prompts.append(prompt)
            status, _, _ = await asyncio.to_thread(approve_via_callback, prompt.authorization_url)
            assert status == 200

    def auth(self, mcp: McpServer, **kw: Any) -> RoomSecretsAuth:
        return RoomSecretsAuth(self.agent, resource=mcp.url, person="alice", timeout=WAIT, **kw)


@contextlib.asynccontextmanager
async def room() -> AsyncIterator[Room]:
    async with serving() as served:
        alice = served.remote("alice")
        agent = served.remote("agent-1", grant=SecretsGrant.allow_all())
        await alice.connect()
        here = Room(served, agent, alice)
        approver = asyncio.ensure_future(here.approve_all())
        try:
            yield here
        finally:
            approver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await approver
            await agent.close()
            await alice.close()


async def whoami(url: str, auth: RoomSecretsAuth) -> str:
    """One MCP session through the SDK's client, calling ``whoami``."""
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx2.AsyncClient(auth=auth, timeout=WAIT))
        read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
        session = await stack.enter_async_context(ClientSession(read, write))
        await asyncio.wait_for(session.initialize(), WAIT)
        result = await asyncio.wait_for(session.call_tool("whoami", {}), WAIT)
    assert not result.is_error, result
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


def grants(mcp: McpServer, grant_type: str) -> list[dict[str, Any]]:
    return [r for r in mcp.token_requests if r["params"].get("grant_type") == grant_type]


def revoke_at_the_mcp_server(mcp: McpServer, token: str) -> None:
    """The person revokes the grant at the MCP server (RFC 7009 with the room's client):
    both the access and the refresh token stop working, and the room does not know."""
    (registration,) = mcp.registrations
    form = urllib.parse.urlencode(
        {
            "token": token,
            "client_id": registration["client_id"],
            "client_secret": registration["client_secret"],
        }
    ).encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{mcp.issuer}/revoke", data=form, timeout=10) as response:
        assert response.status == 200


# --- with the room server and the SDK's MCP server ---------------------------------


def test_the_first_call_asks_the_person_once_and_a_new_session_reuses_the_token() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            async with room() as here:
                # Every request of the session (initialize, the initialized
                # notification, the call, the GET stream, the DELETE) needs the token;
                # one prompt serves them all.
                assert await whoami(mcp.url, here.auth(mcp)) == "alice"
                (prompt,) = here.prompts
                assert prompt.resource == mcp.url
                assert prompt.from_participant_id == "agent-1"
                assert len(mcp.authorizations) == 1
                assert [r["params"]["grant_type"] for r in mcp.token_requests] == [
                    "authorization_code"
                ]
                # Another process of the agent (a new auth object): the room's stored
                # token, no prompt, no new authorization, nothing sent to the token endpoint.
                assert await whoami(mcp.url, here.auth(mcp)) == "alice"
                assert len(here.prompts) == 1
                assert len(mcp.authorizations) == 1
                assert len(mcp.token_requests) == 1

    asyncio.run(scenario())


def test_concurrent_first_requests_make_one_prompt() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            async with room() as here:
                auth = here.auth(mcp)
                names = await asyncio.gather(*[whoami(mcp.url, auth) for _ in range(5)])
                assert names == ["alice"] * 5
                assert len(here.prompts) == 1
                assert len(mcp.authorizations) == 1

    asyncio.run(scenario())


def test_a_token_the_server_refuses_is_refreshed_once_without_a_prompt() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            async with room() as here:
                auth = here.auth(mcp)
                assert await whoami(mcp.url, auth) == "alice"
                old = await here.agent.get_offline_oauth_token(
                    resource=mcp.url, delegated_by="alice"
                )
                assert old is not None and mcp.is_active(old)
                # The room thinks the token has an hour left; the MCP server answers 401
                # (RFC 6750 §3.1): only that answer can tell the room to refresh now.
                mcp.expire_all()
                assert not mcp.is_active(old)
                assert await whoami(mcp.url, auth) == "alice"
                (refresh,) = grants(mcp, "refresh_token")
                assert refresh["status"] == 200
                assert refresh["params"]["resource"] == mcp.url  # RFC 8707 §2.2
                assert len(here.prompts) == 1
                assert len(mcp.authorizations) == 1
                new = await here.agent.get_offline_oauth_token(
                    resource=mcp.url, delegated_by="alice"
                )
                assert new is not None and new != old and mcp.is_active(new)

    asyncio.run(scenario())


def test_requests_that_meet_one_refused_token_together_make_one_refresh() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            async with room() as here:
                auth = here.auth(mcp)
                assert await whoami(mcp.url, auth) == "alice"
                mcp.expire_all()
                names = await asyncio.gather(*[whoami(mcp.url, auth) for _ in range(5)])
                assert names == ["alice"] * 5
                assert len(grants(mcp, "refresh_token")) == 1
                assert len(here.prompts) == 1

    asyncio.run(scenario())


def test_a_new_session_meeting_a_refused_stored_token_refreshes_it() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            async with room() as here:
                assert await whoami(mcp.url, here.auth(mcp)) == "alice"
                mcp.expire_all()
                # A fresh auth gets the stored token (no 401 yet), is refused, and
                # reports it: one refresh, no prompt.
                assert await whoami(mcp.url, here.auth(mcp)) == "alice"
                assert len(grants(mcp, "refresh_token")) == 1
                assert len(here.prompts) == 1

    asyncio.run(scenario())


def test_when_the_grant_was_revoked_at_the_server_the_person_is_asked_again() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            async with room() as here:
                auth = here.auth(mcp)
                assert await whoami(mcp.url, auth) == "alice"
                token = await here.agent.get_offline_oauth_token(
                    resource=mcp.url, delegated_by="alice"
                )
                assert token is not None
                info = mcp.token_info(token)
                assert info is not None
                await asyncio.to_thread(revoke_at_the_mcp_server, mcp, info["refresh_token"])
                assert not mcp.is_active(token)
                # 401; the room tries the refresh token, the server says invalid_grant;
                # alice is asked again and the call goes through with her new approval.
                assert await whoami(mcp.url, auth) == "alice"
                (refresh,) = grants(mcp, "refresh_token")
                assert refresh["status"] == 400
                assert refresh["response"]["error"] == "invalid_grant"
                assert len(here.prompts) == 2
                assert len(mcp.authorizations) == 2
                assert len(grants(mcp, "authorization_code")) == 2

    asyncio.run(scenario())


def test_when_the_person_deleted_the_credential_they_are_asked_again() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            async with room() as here:
                auth = here.auth(mcp)
                assert await whoami(mcp.url, auth) == "alice"
                (secret,) = await here.alice.list_user_secrets()
                deleted = await here.alice.delete_secret(id=secret.id, delegated_to="agent-1")
                assert deleted.revocation == "revoked"  # so the held token gets a 401
                # The room has nothing to refresh (no token request); alice is asked.
                assert await whoami(mcp.url, auth) == "alice"
                assert grants(mcp, "refresh_token") == []
                assert len(here.prompts) == 2
                assert len(grants(mcp, "authorization_code")) == 2

    asyncio.run(scenario())


def test_the_token_stays_out_of_the_auths_repr() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            async with room() as here:
                auth = here.auth(mcp)
                assert await whoami(mcp.url, auth) == "alice"
                token = await here.agent.get_offline_oauth_token(
                    resource=mcp.url, delegated_by="alice"
                )
                assert token is not None
                assert token not in repr(auth) and token not in str(auth)
                assert repr(auth) == f"RoomSecretsAuth(resource={mcp.url!r}, person='alice')"
                assert leak_watch.remembered(token)  # the session's scan looks for it

    asyncio.run(scenario())


def test_the_in_process_client_serves_the_same_with_its_redirect_uri() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            service = SecretsService(store=MemoryStore(), room="r")
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            alice = service.connect("alice")
            prompts: list[OAuthPrompt] = []

            async def approve() -> None:
                async for prompt in alice.oauth_prompts():
                    prompts.append(prompt)
                    code, state = await asyncio.to_thread(approve_at, prompt.authorization_url)
                    await alice.provide_oauth_authorization(
                        request_id=prompt.request_id, code=code, state=state
                    )

            approver = asyncio.ensure_future(approve())
            try:
                redirect = "http://127.0.0.1:9/oauth/callback"  # never called: alice answers
                auth = RoomSecretsAuth(
                    agent, resource=mcp.url, person="alice", timeout=WAIT, redirect_uri=redirect
                )
                assert await whoami(mcp.url, auth) == "alice"
                mcp.expire_all()
                assert await whoami(mcp.url, auth) == "alice"
                assert len(prompts) == 1
                assert len(grants(mcp, "refresh_token")) == 1
                (registration,) = mcp.registrations
                assert registration["params"]["redirect_uris"] == [redirect]
            finally:
                approver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await approver
                await agent.close()
                await alice.close()

    asyncio.run(scenario())


# --- the flow's bounds, against a bare loopback server ------------------------------


class Broker:
    """A stand-in for the room's client: hands out the tokens it is given, in order
    (one more call than that fails), and records every call."""

    def __init__(self, *, offline: Sequence[Optional[str]], asked: Sequence[str]) -> None:
        self._offline = list(offline)
        self._asked = list(asked)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def request_oauth_token(
        self,
        *,
        from_participant_id: str,
        redirect_uri: str = "",
        scopes: Optional[Sequence[str]] = None,
        timeout: float = 300,
        resource: Optional[str] = None,
        rejected_access_token: Optional[str] = None,
    ) -> str:
        self.calls.append(
            ("request", {"person": from_participant_id, "redirect_uri": redirect_uri,
                         "scopes": scopes, "timeout": timeout, "resource": resource,
                         "rejected": rejected_access_token})
        )
        await asyncio.sleep(0.01)  # as a call to the room would: others run meanwhile
        return self._asked.pop(0)

    async def get_offline_oauth_token(
        self,
        *,
        scopes: Optional[Sequence[str]] = None,
        delegated_by: Optional[str] = None,
        resource: Optional[str] = None,
        rejected_access_token: Optional[str] = None,
    ) -> Optional[str]:
        self.calls.append(
            ("offline", {"person": delegated_by, "scopes": scopes, "resource": resource,
                         "rejected": rejected_access_token})
        )
        await asyncio.sleep(0.01)
        return self._offline.pop(0)


class Everything:
    def __contains__(self, item: object) -> bool:
        return True


@contextlib.asynccontextmanager
async def http_server(
    refused: Container[Optional[str]] = (), bodies: Optional[list[bytes]] = None
) -> AsyncIterator[tuple[str, list[Optional[str]]]]:
    """A loopback server answering 401 (with RFC 6750's challenge) to a request whose
    Authorization header is in ``refused``, else 200; yields its ``/mcp`` URL and the
    Authorization headers it got (and appends the bodies to ``bodies``)."""
    seen: list[Optional[str]] = []

    async def handle(request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization")
        seen.append(authorization)
        body = await request.read()
        if bodies is not None:
            bodies.append(body)
        if authorization in refused:
            return web.Response(
                status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = bound_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", seen
    finally:
        await runner.cleanup()


def test_a_server_that_refuses_every_token_gets_three_tries_then_the_401() -> None:
    async def scenario() -> None:
        async with http_server(Everything()) as (url, seen):
            broker = Broker(offline=["t1", "t2"], asked=["t3"])
            auth = RoomSecretsAuth(
                broker, resource=url, person="alice", scopes=["mcp:tools"], timeout=7,
                redirect_uri="http://127.0.0.1:9/cb",
            )
            async with httpx2.AsyncClient(auth=auth) as http:
                response = await http.post(url, json={})
            assert response.status_code == 401
            assert seen == ["Bearer t1", "Bearer t2", "Bearer t3"]
            assert broker.calls == [
                ("offline", {"person": "alice", "scopes": ["mcp:tools"], "resource": url,
                             "rejected": None}),
                ("offline", {"person": "alice", "scopes": ["mcp:tools"], "resource": url,
                             "rejected": "t1"}),
                # The token refused last is named, so the room asks rather than hand it back.
                ("request", {"person": "alice", "redirect_uri": "http://127.0.0.1:9/cb",
                             "scopes": ["mcp:tools"], "timeout": 7, "resource": url,
                             "rejected": "t2"}),
            ]

    asyncio.run(scenario())


def test_without_a_refresh_the_person_is_asked_and_a_refused_answer_is_not_retried() -> None:
    async def scenario() -> None:
        async with http_server(Everything()) as (url, seen):
            # No stored token: the person is asked first. The refresh gives nothing,
            # and asking again hands back the token just refused: no third try.
            broker = Broker(offline=[None, None], asked=["t1", "t1"])
            auth = RoomSecretsAuth(broker, resource=url, person="alice")
            async with httpx2.AsyncClient(auth=auth) as http:
                response = await http.get(url)
            assert response.status_code == 401
            assert seen == ["Bearer t1"]
            assert [(name, call.get("rejected")) for name, call in broker.calls] == [
                ("offline", None), ("request", None), ("offline", "t1"), ("request", "t1")
            ]
            # No redirect_uri configured: none is passed (the remote client's default).
            assert broker.calls[1][1]["redirect_uri"] == ""

    asyncio.run(scenario())


def test_requests_refused_together_share_the_one_replacement() -> None:
    async def scenario() -> None:
        refused: set[Optional[str]] = set()
        async with http_server(refused) as (url, seen):
            # The stand-in has one replacement to give: a second refresh call fails.
            broker = Broker(offline=["t1", "t2"], asked=[])
            auth = RoomSecretsAuth(broker, resource=url, person="alice")
            async with httpx2.AsyncClient(auth=auth) as http:
                assert (await http.get(url)).status_code == 200
                refused.add("Bearer t1")
                answers = await asyncio.gather(*[http.get(url) for _ in range(5)])
            assert [r.status_code for r in answers] == [200] * 5
            assert seen.count("Bearer t1") == 6 and seen.count("Bearer t2") == 5
            assert [call.get("rejected") for _, call in broker.calls] == [None, "t1"]

    asyncio.run(scenario())


def test_requests_refused_together_when_no_refresh_helps_make_one_prompt() -> None:
    async def scenario() -> None:
        refused: set[Optional[str]] = set()
        async with http_server(refused) as (url, seen):
            broker = Broker(offline=["t1", None], asked=["t2"])
            auth = RoomSecretsAuth(broker, resource=url, person="alice")
            async with httpx2.AsyncClient(auth=auth) as http:
                assert (await http.get(url)).status_code == 200
                refused.add("Bearer t1")
                answers = await asyncio.gather(*[http.get(url) for _ in range(5)])
            assert [r.status_code for r in answers] == [200] * 5
            assert seen.count("Bearer t2") == 5
            assert [(name, call.get("rejected")) for name, call in broker.calls] == [
                ("offline", None), ("offline", "t1"), ("request", "t1")
            ]

    asyncio.run(scenario())


def test_a_streamed_body_goes_again_whole_after_a_401() -> None:
    async def scenario() -> None:
        async def body() -> AsyncIterator[bytes]:
            yield b'{"jsonrpc": '
            yield b'"2.0"}'

        bodies: list[bytes] = []
        async with http_server({"Bearer t1"}, bodies) as (url, seen):
            broker = Broker(offline=["t1", "t2"], asked=[])
            auth = RoomSecretsAuth(broker, resource=url, person="alice")
            async with httpx2.AsyncClient(auth=auth) as http:
                response = await http.post(url, content=body())
            assert response.status_code == 200
            assert seen == ["Bearer t1", "Bearer t2"]
            assert bodies == [b'{"jsonrpc": "2.0"}'] * 2

    asyncio.run(scenario())


def test_the_token_goes_only_to_the_resources_origin() -> None:
    async def scenario() -> None:
        async with http_server() as (url, seen), http_server() as (other, _):
            broker = Broker(offline=["t1"], asked=[])
            auth = RoomSecretsAuth(broker, resource=other, person="alice")
            async with httpx2.AsyncClient(auth=auth) as http:
                response = await http.get(url)
            assert response.status_code == 200
            assert seen == [None]
            assert broker.calls == []

    asyncio.run(scenario())


def test_a_synchronous_client_is_refused_with_a_clear_error() -> None:
    broker = Broker(offline=["t1"], asked=[])
    auth = RoomSecretsAuth(broker, resource="http://127.0.0.1:9/mcp", person="alice")
    with httpx2.Client(auth=auth) as http, pytest.raises(RuntimeError, match="async-only"):
        http.get("http://127.0.0.1:9/mcp")
    assert broker.calls == []


def test_scopes_must_not_be_a_bare_string() -> None:
    broker = Broker(offline=[], asked=[])
    with pytest.raises(TypeError, match="sequence of strings"):
        RoomSecretsAuth(broker, resource="http://127.0.0.1:9/mcp", person="a", scopes="mcp")
