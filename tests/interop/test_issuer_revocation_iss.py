"""Interop, the provider named by its issuer: discovery (RFC 8414 / OpenID Connect
Discovery), revocation on delete (RFC 7009) and the ``iss`` of the authorization
response (RFC 9207), against ``oidc-provider``.

oidc-provider publishes its metadata only at ``/.well-known/openid-configuration``,
says ``authorization_response_iss_parameter_supported: true`` there, and sends ``iss``
on every authorization response; revoking a refresh token revokes its whole grant.

The person answers both ways: through ``/oauth/callback`` (the server hands the
redirect's ``iss`` on) and with ``provide_oauth_authorization(..., iss=...)``.
"""

from __future__ import annotations

import asyncio
from typing import Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from tests.interop.conftest import CLIENTS, OidcProvider, Room
from tests.interop.flows import (
    approve_one,
    cli,
    code_exchanges,
    issued_refresh_token,
    prompt_for,
    refreshes,
    revoked_grants,
    run,
)
from tests.interop.oidc_person import answer_from_provider, approve_at_provider
from tests.support import leak_watch

WRONG_ISSUER = "http://127.0.0.1:1"


def test_the_endpoints_come_from_the_issuers_metadata(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        args = oidc_provider.issuer_args("discovery-app")
        assert "authorization_endpoint" not in args and "token_endpoint" not in args
        try:
            approved = await approve_one(
                room, oidc_provider, "discovery-app", agent, alice, by_issuer=True,
                through_callback=False,
            )
            assert approved.prompt.authorization_url.startswith(
                oidc_provider.authorization_endpoint + "?"
            )
            assert approved.query["iss"] == oidc_provider.issuer
            assert oidc_provider.is_active(approved.token)
            [exchange] = code_exchanges(oidc_provider, "discovery-app")
            assert exchange["status"] == 200
            # RFC 8414 §3.1 first (oidc-provider has none), then OpenID Connect
            # Discovery 1.0 §4, which it has.
            paths = [(entry["path"], entry["status"]) for entry in oidc_provider.log()["metadata"]]
            assert ("/.well-known/oauth-authorization-server", 404) in paths
            assert ("/.well-known/openid-configuration", 200) in paths
            # The same credential, by issuer or by endpoints, offline, and after expiry.
            assert await agent.get_offline_oauth_token(**args, delegated_by="alice") \
                == approved.token
            assert await agent.get_offline_oauth_token(
                **oidc_provider.oauth_args("discovery-app"), delegated_by="alice"
            ) == approved.token
            await oidc_provider.until_expired(approved.token)
            fresh = await agent.get_offline_oauth_token(**args, delegated_by="alice")
            assert fresh is not None and fresh != approved.token
            assert oidc_provider.is_active(fresh)
        finally:
            await room.close()

    run(scenario())


def test_by_issuer_through_the_callback(room: Room, oidc_provider: OidcProvider) -> None:
    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        try:
            approved = await approve_one(
                room, oidc_provider, "discovery-callback-app", agent, alice, by_issuer=True
            )
            assert oidc_provider.is_active(approved.token)
        finally:
            await room.close()

    run(scenario())


@pytest.mark.parametrize("by_issuer", [True, False], ids=["by-issuer", "seed-arguments"])
@pytest.mark.parametrize("client_id", ["revoke-app", "revoke-basic"])
def test_a_delete_revokes_the_grant_at_the_provider(
    room: Room, oidc_provider: OidcProvider, client_id: str, by_issuer: bool
) -> None:
    # seed-arguments: only --client-id and both endpoints, no issuer; the revocation
    # endpoint is found in the metadata at the token endpoint's origin.
    client = CLIENTS[client_id]

    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        args = (oidc_provider.issuer_args(client_id) if by_issuer
                else oidc_provider.oauth_args(client_id))
        # The provider lives for the module: count what this test adds.
        path = urlsplit(oidc_provider.revocation_endpoint).path
        before = [entry for entry in oidc_provider.log()["requests"]
                  if entry["path"] == path and entry["client_id"] == client_id]
        grants_before = len(revoked_grants(oidc_provider, client_id))
        try:
            approved = await approve_one(
                room, oidc_provider, client_id, agent, alice, by_issuer=by_issuer,
                through_callback=False,
            )
            refresh_token = issued_refresh_token(oidc_provider, client_id)
            [info] = await alice.list_user_secrets()
            deleted = await alice.delete_secret(id=info.id, delegated_to="agent-1")
            assert (deleted.revocation, deleted.host) == (
                "revoked", urlsplit(oidc_provider.revocation_endpoint).netloc)
            # One RFC 7009 request, with the client's own authentication, that revoked
            # the refresh token and so the whole grant.
            [revocation] = [
                entry for entry in oidc_provider.log()["requests"]
                if entry["path"] == path and entry["client_id"] == client_id
            ][len(before):]
            assert (revocation["auth_method"], revocation["status"]) == (client.auth_method, 200)
            assert revocation["token"] == refresh_token
            assert revocation["token_type_hint"] == "refresh_token"
            assert len(revoked_grants(oidc_provider, client_id)) == grants_before + 1
            assert not oidc_provider.is_active(approved.token)
            # The old refresh token no longer works at the provider.
            form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
            if client.client_secret is None:
                status, body = oidc_provider.post_form(
                    oidc_provider.token_endpoint, {**form, "client_id": client_id}
                )
            else:
                status, body = oidc_provider.post_form(
                    oidc_provider.token_endpoint, form, basic=(client_id, client.client_secret)
                )
            assert (status, body["error"]) == (400, "invalid_grant")
            assert await agent.get_offline_oauth_token(**args, delegated_by="alice") is None
        finally:
            await room.close()

    run(scenario())


def test_an_answer_with_a_wrong_or_missing_iss_is_refused(
    room: Room, oidc_provider: OidcProvider
) -> None:
    """RFC 9207 §2.4: the provider promised ``iss``; an answer without it or with
    another issuer is refused, its code is not redeemed, and the request stays open
    for the real answer."""

    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        try:
            asking = room.spawn(
                agent.request_oauth_token(
                    **oidc_provider.issuer_args("iss-app"), from_participant_id="alice",
                    timeout=60,
                )
            )
            prompt = await prompt_for(room, alice, asking)
            query, _ = await answer_from_provider(
                prompt.authorization_url, callback_url=room.callback_url
            )
            leak_watch.remember_secret(query["code"])
            assert query["iss"] == oidc_provider.issuer
            answer = dict(request_id=prompt.request_id, code=query["code"], state=query["state"])
            for iss in (WRONG_ISSUER, None):
                with pytest.raises(errors.IssuerMismatch):
                    await alice.provide_oauth_authorization(**answer, iss=iss)
            assert code_exchanges(oidc_provider, "iss-app") == []
            assert not asking.done()
            await alice.provide_oauth_authorization(**answer, iss=query["iss"])
            token = await asyncio.wait_for(asking, 30)
            leak_watch.remember_secret(token)
            assert oidc_provider.is_active(token)
        finally:
            await room.close()

    run(scenario())


def _with_iss(url: str, iss: Optional[str]) -> str:
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query) if name != "iss"]
    if iss is not None:
        query.append(("iss", iss))
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.mark.parametrize("iss", [WRONG_ISSUER, None], ids=["wrong-iss", "no-iss"])
def test_a_callback_with_a_wrong_or_missing_iss_is_refused(
    room: Room, oidc_provider: OidcProvider, iss: Optional[str]
) -> None:
    """As above, through ``/oauth/callback``: the provider's redirect is tampered with
    on its way (an attacker in the middle of a mix-up, RFC 9207 §1)."""

    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        try:
            asking = room.spawn(
                agent.request_oauth_token(
                    **oidc_provider.issuer_args("iss-callback-app"),
                    from_participant_id="alice", timeout=60,
                )
            )
            prompt = await prompt_for(room, alice, asking)
            exchanged = len(code_exchanges(oidc_provider, "iss-callback-app"))
            genuine: list[str] = []

            def tamper(url: str) -> str:
                genuine.append(url)
                return _with_iss(url, iss)

            refused = await approve_at_provider(
                prompt.authorization_url, callback_url=room.callback_url,
                rewrite_callback=tamper,
            )
            leak_watch.remember_secret(refused.query.get("code"))
            assert refused.status == 400, refused.text
            assert "issuer_mismatch" in refused.text
            assert len(code_exchanges(oidc_provider, "iss-callback-app")) == exchanged
            assert not asking.done()
            # The genuine redirect still completes the request.
            [url] = genuine
            accepted = await approve_at_provider(url, callback_url=room.callback_url)
            assert accepted.status == 200 and "approved" in accepted.text.lower()
            token = await asyncio.wait_for(asking, 30)
            leak_watch.remember_secret(token)
            assert oidc_provider.is_active(token)
        finally:
            await room.close()

    run(scenario())


def test_an_issuer_without_metadata_is_a_typed_error(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        try:
            with pytest.raises(errors.InvalidProviderMetadata):
                await agent.request_oauth_token(
                    **oidc_provider.issuer_args(
                        "iss-app", issuer=oidc_provider.issuer + "/no-such-tenant"
                    ),
                    from_participant_id="alice", timeout=5,
                )
            assert await alice.list_user_secrets() == []
        finally:
            await room.close()

    run(scenario())


def test_the_cli_by_issuer_asks_gets_and_deletes_with_revocation(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        alice = await room.person()
        agent_token = room.token("agent-1", grant=SecretsGrant.allow_all(), name="mailbot")
        flags = [
            f"--issuer={oidc_provider.issuer}", "--client-id=cli-issuer-app",
            "--scopes=mail.read",
        ]
        try:
            asking = room.spawn(
                cli(room, agent_token, "oauth2", "request", f"--room={room.name}",
                    "--from-participant-id=alice", *flags, "--timeout=60")
            )
            prompt = await prompt_for(room, alice, asking)
            assert prompt.authorization_url.startswith(oidc_provider.authorization_endpoint)
            visit = await approve_at_provider(
                prompt.authorization_url, callback_url=room.callback_url
            )
            assert visit.status == 200 and "approved" in visit.text.lower(), visit.text
            code, stdout, stderr = await asking
            assert code == 0, stderr
            token = stdout.strip()
            leak_watch.remember_secret(token)
            assert oidc_provider.is_active(token)
            code, stdout, stderr = await cli(
                room, agent_token, "oauth2", "get", f"--room={room.name}",
                "--delegated-by=alice", *flags,
            )
            assert (code, stdout.strip()) == (0, token), stderr
            refresh_token = issued_refresh_token(oidc_provider, "cli-issuer-app")
            [info] = await alice.list_user_secrets()
            code, _, stderr = await cli(
                room, room.token("alice"), "oauth2", "delete", f"--room={room.name}",
                f"--id={info.id}", "--delegated-to=agent-1",
            )
            assert code == 0, stderr
            assert not oidc_provider.is_active(token)
            status, body = oidc_provider.refresh_directly("cli-issuer-app", refresh_token)
            assert (status, body["error"]) == (400, "invalid_grant")
        finally:
            await room.close()

    run(scenario())


def test_the_cli_with_client_secret_post_and_the_person_answering_with_oauth2_provide(
    room: Room, oidc_provider: OidcProvider
) -> None:
    """All from the command line: the agent asks by issuer for a ``client_secret_post``
    client (its secret has ``+/=&:%``); the person signs in at the provider and answers
    with ``oauth2 provide --code --state --iss``; after expiry ``oauth2 get`` refreshes,
    again with the secret in the form."""
    secret = CLIENTS["cli-post-app"].client_secret
    assert secret is not None

    async def scenario() -> None:
        alice = await room.person()  # her WebSocket: prompts may be addressed to her
        alice_token = room.token("alice", name="Alice")
        agent_token = room.token("agent-1", grant=SecretsGrant.allow_all(), name="mailbot")
        flags = [
            f"--issuer={oidc_provider.issuer}", "--client-id=cli-post-app", "--scopes=mail.read",
            f"--client-secret={secret}", "--client-auth-method=client_secret_post",
        ]
        try:
            asking = room.spawn(
                cli(room, agent_token, "oauth2", "request", f"--room={room.name}",
                    "--from-participant-id=alice", *flags, "--timeout=60")
            )
            prompt = await prompt_for(room, alice, asking)
            query, pages = await answer_from_provider(
                prompt.authorization_url, callback_url=room.callback_url
            )
            leak_watch.remember_secret(query["code"])
            assert pages == ("login", "consent")
            code, _, stderr = await cli(
                room, alice_token, "oauth2", "provide", f"--room={room.name}",
                f"--request-id={prompt.request_id}", f"--code={query['code']}",
                f"--state={query['state']}", f"--iss={query['iss']}",
            )
            assert code == 0, stderr
            code, stdout, stderr = await asking
            assert code == 0, stderr
            token = stdout.strip()
            leak_watch.remember_secret(token)
            assert oidc_provider.is_active(token)
            [exchange] = code_exchanges(oidc_provider, "cli-post-app")
            assert exchange["auth_method"] == "client_secret_post"

            await oidc_provider.until_expired(token)
            code, stdout, stderr = await cli(
                room, agent_token, "oauth2", "get", f"--room={room.name}",
                "--delegated-by=alice", *flags,
            )
            assert code == 0, stderr
            fresh = stdout.strip()
            leak_watch.remember_secret(fresh)
            assert fresh != token and oidc_provider.is_active(fresh)
            [refresh] = refreshes(oidc_provider, "cli-post-app")
            assert (refresh["auth_method"], refresh["status"]) == ("client_secret_post", 200)
        finally:
            await room.close()

    run(scenario())
