"""The MCP authorization broker, in process, against a real MCP server built with the
official ``mcp`` SDK (``tests/support/mcp_server.py``: its own RFC 9728, RFC 8414,
RFC 7591, /authorize, /token and /revoke routes). An agent names only the server's
URL; the room discovers, registers once, asks the person, keeps the credential as
theirs delegated to the agent, refreshes it single-flight and revokes it on delete;
the official MCP client then calls ``whoami`` with the token and gets the person."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

pytest.importorskip("mcp")
pytest.importorskip("uvicorn")

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from roomsecrets import MemoryStore, SecretsGrant, SecretsService
from roomsecrets.core import errors
from roomsecrets.core.broker import SERVER_OWNER, registration_key
from roomsecrets.core.grants import OAuthRule
from tests.support.mcp_server import McpServer

REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _authorize(url: str) -> dict[str, str]:
    """The person approves at the MCP server's /authorize: the redirect's query."""
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))
    try:
        opener.open(url, timeout=10)
    except urllib.error.HTTPError as redirect:
        location = redirect.headers["Location"]
    else:  # pragma: no cover - the fixture always redirects
        raise AssertionError("no redirect")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


async def _approve_next(person: Any) -> Any:
    prompts = person.oauth_prompts()
    prompt = await asyncio.wait_for(prompts.__anext__(), 10)
    query = await asyncio.to_thread(_authorize, prompt.authorization_url)
    await person.provide_oauth_authorization(
        request_id=prompt.request_id, code=query["code"], state=query["state"]
    )
    return prompt


async def whoami(url: str, token: str) -> str:
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=10)
        )
        read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        result = await session.call_tool("whoami", {})
    assert not result.is_error, result
    return result.content[0].text  # type: ignore[union-attr]


def requests_seen(mcp: McpServer) -> int:
    return sum(len(x) for x in (mcp.registrations, mcp.authorizations, mcp.token_requests,
                                mcp.revocations))


def ask(agent: Any, mcp: McpServer, **kw: Any) -> asyncio.Task[str]:
    return asyncio.ensure_future(agent.request_oauth_token(
        resource=mcp.url, from_participant_id="alice", redirect_uri=REDIRECT_URI, timeout=30,
        **kw,
    ))


def test_an_agent_names_only_the_url_the_person_approves_and_the_mcp_call_is_theirs() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            store = MemoryStore()
            service = SecretsService(store=store, room="r")
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            alice = service.connect("alice")
            asking = ask(agent, mcp)
            prompt = await _approve_next(alice)
            token = await asyncio.wait_for(asking, 20)
            # The prompt names the MCP server and its name; the client is the server's.
            assert prompt.resource == mcp.url and prompt.resource_name == "Test MCP"
            assert prompt.brokered
            assert prompt.scopes == ("mcp:tools",)  # the resource's scopes_supported
            assert await whoami(mcp.url, token) == "alice"
            # RFC 8707: resource on the authorization and the token request.
            (authorization,) = mcp.authorizations
            assert authorization["params"]["resource"] == mcp.url
            (exchange,) = mcp.token_requests
            assert exchange["params"]["resource"] == mcp.url
            assert exchange["params"]["grant_type"] == "authorization_code"
            # One registration, as the server answered (client_secret_post), kept by the
            # server in the store and never as a participant's secret.
            (registration,) = mcp.registrations
            assert registration["params"]["redirect_uris"] == [REDIRECT_URI]
            assert registration["params"]["grant_types"] == ["authorization_code",
                                                             "refresh_token"]
            assert "token_endpoint_auth_method" not in registration["params"]
            assert exchange["client_auth"] == "client_secret_post"
            kept = await store.get(registration_key(mcp.issuer))
            assert kept is not None and kept.key.owner == SERVER_OWNER
            # The credential is alice's, delegated to the agent.
            (info,) = await alice.list_user_secrets()
            assert (info.type, info.delegated_to) == ("oauth_token", "agent-1")
            # Asked again: the stored token, no prompt, nothing sent.
            before = requests_seen(mcp)
            assert await agent.request_oauth_token(
                resource=mcp.url, from_participant_id="alice", redirect_uri=REDIRECT_URI
            ) == token
            assert await agent.get_offline_oauth_token(
                resource=mcp.url, delegated_by="alice") == token
            assert requests_seen(mcp) == before
            # A token the MCP server refused even after a refresh is not handed back:
            # the person is asked again, and their approval replaces it.
            asking = ask(agent, mcp, rejected_access_token=token)
            await _approve_next(alice)
            again = await asyncio.wait_for(asking, 20)
            assert again != token and await whoami(mcp.url, again) == "alice"
            assert len(mcp.authorizations) == 2

    asyncio.run(scenario())


def test_one_registration_serves_a_second_agent_and_a_second_service_on_the_store() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            store = MemoryStore()
            service = SecretsService(store=store, room="r")
            first = service.connect("agent-1", grant=SecretsGrant.allow_all())
            second = service.connect("agent-2", grant=SecretsGrant.allow_all())
            alice = service.connect("alice")
            for agent in (first, second):
                asking = ask(agent, mcp)
                await _approve_next(alice)
                assert await whoami(mcp.url, await asyncio.wait_for(asking, 20)) == "alice"
            # Another room (another node, the same store): the same registration.
            other = SecretsService(store=store, room="elsewhere")
            third = other.connect("agent-3", grant=SecretsGrant.allow_all())
            bob = other.connect("alice")
            asking = ask(third, mcp)
            await _approve_next(bob)
            await asyncio.wait_for(asking, 20)
            assert len(mcp.registrations) == 1
            ids = {r["params"]["client_id"] for r in mcp.token_requests}
            assert ids == {mcp.registrations[0]["client_id"]}

    asyncio.run(scenario())


def test_ten_concurrent_offline_calls_after_expiry_make_one_refresh_with_the_resource() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            service = SecretsService(store=MemoryStore(), room="r")
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            alice = service.connect("alice")
            asking = ask(agent, mcp)
            await _approve_next(alice)
            old = await asyncio.wait_for(asking, 20)
            mcp.expire_all()
            # Our clock does not know: the MCP server's 401 says so (rejected_access_token).
            tokens = await asyncio.gather(*[
                agent.get_offline_oauth_token(
                    resource=mcp.url, delegated_by="alice", rejected_access_token=old)
                for _ in range(10)
            ])
            refreshes = [r for r in mcp.token_requests
                         if r["params"]["grant_type"] == "refresh_token"]
            assert len(refreshes) == 1
            assert refreshes[0]["params"]["resource"] == mcp.url
            assert len(set(tokens)) == 1 and tokens[0] != old
            assert await whoami(mcp.url, tokens[0]) == "alice"
            # The old token reported again: already replaced, so no second refresh.
            assert await agent.get_offline_oauth_token(
                resource=mcp.url, delegated_by="alice", rejected_access_token=old) == tokens[0]
            assert len([r for r in mcp.token_requests
                        if r["params"]["grant_type"] == "refresh_token"]) == 1

    asyncio.run(scenario())


def test_a_server_that_forgot_our_client_gets_a_new_registration_and_a_new_prompt() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            store = MemoryStore()
            service = SecretsService(store=store, room="r")
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            alice = service.connect("alice")
            asking = ask(agent, mcp)
            await _approve_next(alice)
            old = await asyncio.wait_for(asking, 20)
            first_client = mcp.registrations[0]["client_id"]
            mcp.forget_clients()
            mcp.expire_all()
            # The refresh meets invalid_client: no token, and the registration is gone.
            assert await agent.get_offline_oauth_token(
                resource=mcp.url, delegated_by="alice", rejected_access_token=old) is None
            assert await store.get(registration_key(mcp.issuer)) is None
            # Asked again: registered anew, the person approves, the new token works.
            asking = ask(agent, mcp)
            await _approve_next(alice)
            token = await asyncio.wait_for(asking, 20)
            assert len(mcp.registrations) == 2
            assert mcp.registrations[1]["client_id"] != first_client
            assert await whoami(mcp.url, token) == "alice"

    asyncio.run(scenario())


def test_a_new_registration_is_checked_against_the_grant_before_anyone_is_asked() -> None:
    async def scenario() -> None:
        with McpServer(user="alice", access_token_lifetime=2) as mcp:
            service = SecretsService(store=MemoryStore(), room="r")
            alice = service.connect("alice")
            # A grant that pins the client the server registered first.
            first = service.connect("agent-0", grant=SecretsGrant.allow_all())
            asking = ask(first, mcp)
            await _approve_next(alice)
            await asyncio.wait_for(asking, 20)
            pinned = SecretsGrant(oauth=[OAuthRule(
                resource=mcp.url, client_id=mcp.registrations[0]["client_id"])])
            agent = service.connect("agent-1", grant=pinned)
            asking = ask(agent, mcp)
            await _approve_next(alice)
            await asyncio.wait_for(asking, 20)
            # The server forgets our client, and the token expires: asked again, the
            # refresh meets invalid_client, the server registers another client,
            # which this grant does not allow; the person is never asked for it.
            mcp.forget_clients()
            await asyncio.sleep(2.2)
            with pytest.raises(errors.GrantDenied, match="client_id"):
                await agent.request_oauth_token(
                    resource=mcp.url, from_participant_id="alice", redirect_uri=REDIRECT_URI,
                    timeout=5)  # were the person asked, this would time out instead
            assert len(mcp.authorizations) == 2

    asyncio.run(scenario())


def test_delete_revokes_as_the_registered_client() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            service = SecretsService(store=MemoryStore(), room="r")
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            alice = service.connect("alice")
            asking = ask(agent, mcp)
            await _approve_next(alice)
            token = await asyncio.wait_for(asking, 20)
            (info,) = await alice.list_user_secrets()
            deleted = await alice.delete_secret(id=info.id, delegated_to="agent-1")
            assert deleted.revocation == "revoked"
            (revocation,) = mcp.revocations
            # Some servers (this SDK's) want client_id and client_secret as form fields.
            assert revocation["params"]["client_id"] == mcp.registrations[0]["client_id"]
            assert revocation["params"]["client_secret"]
            assert not mcp.is_active(token)
            assert await agent.get_offline_oauth_token(
                resource=mcp.url, delegated_by="alice") is None

    asyncio.run(scenario())


def test_a_denied_grant_fetches_nothing() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            service = SecretsService(store=MemoryStore(), room="r")
            elsewhere = SecretsGrant(oauth=[OAuthRule(resource="https://mcp.example.com/*")])
            agent = service.connect("agent-1", grant=elsewhere)
            service.connect("alice")
            with pytest.raises(errors.GrantDenied, match="resource"):
                await agent.request_oauth_token(
                    resource=mcp.url, from_participant_id="alice", redirect_uri=REDIRECT_URI)
            with pytest.raises(errors.GrantDenied):
                await agent.get_offline_oauth_token(resource=mcp.url, delegated_by="alice")
            # A rule pinning a provider, with no resource, lets an agent make the
            # server fetch nothing by naming a resource.
            pinned = SecretsGrant(oauth=[OAuthRule(issuer="https://accounts.google.com",
                                                   client_id="my-app")])
            other = service.connect("agent-2", grant=pinned)
            with pytest.raises(errors.GrantDenied, match="allows no brokered request"):
                await other.request_oauth_token(
                    resource=mcp.url, from_participant_id="alice", redirect_uri=REDIRECT_URI)
            # A rule naming only a resource allows no explicit flow beside it.
            only = SecretsGrant(oauth=[OAuthRule(resource=mcp.url)])
            third = service.connect("agent-3", grant=only)
            with pytest.raises(errors.GrantDenied, match="only brokered requests"):
                await third.request_oauth_token(
                    resource=mcp.url, client_id="evil-client", from_participant_id="alice",
                    authorization_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
                    token_endpoint="https://oauth2.googleapis.com/token",
                    redirect_uri=REDIRECT_URI)
            # The broker always uses PKCE.
            with pytest.raises(errors.InvalidInput, match="no_pkce"):
                await third.request_oauth_token(
                    resource=mcp.url, from_participant_id="alice", redirect_uri=REDIRECT_URI,
                    no_pkce=True)
            assert mcp.requests == []

    asyncio.run(scenario())


def test_a_rule_naming_only_the_resource_allows_whatever_server_it_names() -> None:
    async def scenario() -> None:
        with McpServer(user="alice") as mcp:
            service = SecretsService(store=MemoryStore(), room="r")
            grant = SecretsGrant(oauth=[OAuthRule(resource=mcp.url.rsplit("/", 1)[0] + "/*")])
            agent = service.connect("agent-1", grant=grant)
            alice = service.connect("alice")
            asking = ask(agent, mcp)
            await _approve_next(alice)
            assert await whoami(mcp.url, await asyncio.wait_for(asking, 20)) == "alice"

    asyncio.run(scenario())


def test_missing_pieces_are_typed_errors_that_name_them() -> None:
    async def scenario() -> None:
        service = SecretsService(store=MemoryStore(), room="r")
        agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
        service.connect("alice")
        with McpServer(resource_metadata=False) as mcp, pytest.raises(
            errors.ResourceMetadataNotFound, match="RFC 9728"
        ):
            await agent.request_oauth_token(
                resource=mcp.url, from_participant_id="alice", redirect_uri=REDIRECT_URI)
        with McpServer(registration=False) as mcp, pytest.raises(
            errors.RegistrationNotSupported, match="registration_endpoint"
        ):
            await agent.request_oauth_token(
                resource=mcp.url, from_participant_id="alice", redirect_uri=REDIRECT_URI)
        with pytest.raises(errors.InvalidInput, match="client_id is required unless resource"):
            await agent.request_oauth_token(from_participant_id="alice",
                                            redirect_uri=REDIRECT_URI)
        with pytest.raises(errors.InvalidInput, match="leave out issuer"):
            await agent.request_oauth_token(
                resource="http://127.0.0.1:9/mcp", issuer="http://127.0.0.1:9",
                from_participant_id="alice", redirect_uri=REDIRECT_URI)
        assert len(service.registry) == 0

    asyncio.run(scenario())
