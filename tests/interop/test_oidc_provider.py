"""Interop: our room server, remote client and CLI against a real OAuth provider we did
not write, ``oidc-provider`` (npm), configured the strict way (``provider/provider.mjs``):
PKCE S256 required, refresh tokens rotated on every use, a replayed refresh token revokes
the grant, access tokens that live four seconds, each client held to its registered
authentication method.

A headless person (``oidc_person.py``) follows each prompt's authorization URL through the
provider's login and consent pages to our ``/oauth/callback``. What reached the provider is
read from its log (``GET /_interop/log``); whether a token is alive, from its RFC 7662
introspection endpoint.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from tests.interop.conftest import CLIENTS, OidcProvider, Room
from tests.interop.flows import (
    approve_one,
    cli,
    code_exchanges,
    issued_refresh_token,
    next_prompt,
    prompt_for,
    refreshes,
    revoked_grants,
    run,
    until,
)
from tests.interop.oidc_person import approve_at_provider
from tests.support import leak_watch

# --- a public client (PKCE, no secret) ---------------------------------------------------


def test_a_public_client_gets_a_token_through_login_and_consent(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        try:
            approved = await approve_one(room, oidc_provider, "public-app", agent, alice)
            # Our authorization request: S256 PKCE, our callback, no secret (RFC 7636 §4.3).
            query = {
                name: values[0]
                for name, values in parse_qs(urlsplit(approved.prompt.authorization_url).query)
                .items()
            }
            assert approved.prompt.authorization_url.startswith(
                oidc_provider.authorization_endpoint + "?"
            )
            assert query["response_type"] == "code"
            assert query["code_challenge_method"] == "S256"
            assert query["code_challenge"] == approved.prompt.code_challenge
            assert query["redirect_uri"] == room.callback_url
            assert query["scope"] == "mail.read"
            assert "client_secret" not in query and "code_verifier" not in query
            # The person really went through the provider's pages, and its redirect
            # carried the RFC 9207 issuer.
            assert approved.pages == ("login", "consent")
            assert approved.query["state"] == approved.prompt.state
            assert approved.query["iss"] == oidc_provider.issuer
            # One code exchange, as a public client, that got a refresh token.
            [exchange] = code_exchanges(oidc_provider, "public-app")
            assert (exchange["auth_method"], exchange["status"]) == ("none", 200)
            assert exchange["access_token"] == approved.token
            assert exchange["issued_refresh_token"]
            introspected = oidc_provider.introspect(approved.token)
            assert introspected["active"] is True
            assert introspected["client_id"] == "public-app"
            assert introspected["sub"] == "alice"
            assert introspected["scope"] == "mail.read"
            # Alice sees the credential, delegated to the agent.
            [info] = await alice.list_user_secrets()
            assert (info.type, info.delegated_to) == ("oauth_token", "agent-1")
        finally:
            await room.close()

    run(scenario())


def test_the_token_is_reused_without_a_prompt_and_fetched_offline(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        try:
            approved = await approve_one(room, oidc_provider, "reuse-app", agent, alice)
            seen = len(oidc_provider.log()["codes"]), len(oidc_provider.log()["requests"])
            # Alice leaves: a reuse and an offline fetch need neither her nor the provider.
            await alice.close()
            again = await agent.request_oauth_token(
                **oidc_provider.oauth_args("reuse-app"), from_participant_id="alice", timeout=5
            )
            offline = await agent.get_offline_oauth_token(
                **oidc_provider.oauth_args("reuse-app"), delegated_by="alice"
            )
            assert again == offline == approved.token
            assert (len(oidc_provider.log()["codes"]), len(oidc_provider.log()["requests"])) \
                == seen
            # A scope alice never granted is not covered: offline gives None, asking
            # needs her, and she is gone.
            wider = oidc_provider.oauth_args("reuse-app", scopes=["mail.read", "mail.send"])
            assert await agent.get_offline_oauth_token(**wider, delegated_by="alice") is None
            with pytest.raises(errors.ParticipantNotConnected):
                await agent.request_oauth_token(**wider, from_participant_id="alice", timeout=5)
            assert oidc_provider.is_active(approved.token)
        finally:
            await room.close()

    run(scenario())


# --- expiry, refresh, rotation -----------------------------------------------------------


def test_an_expired_token_is_refreshed_and_the_refresh_token_rotated(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        try:
            first = await approve_one(room, oidc_provider, "public-short", agent, alice)
            original_refresh = issued_refresh_token(oidc_provider, "public-short")
            await oidc_provider.until_expired(first.token)
            fresh = await agent.get_offline_oauth_token(
                **oidc_provider.oauth_args("public-short"), delegated_by="alice"
            )
            assert fresh is not None and fresh != first.token
            assert oidc_provider.is_active(fresh)
            [refresh] = refreshes(oidc_provider, "public-short")
            assert refresh["status"] == 200
            assert refresh["presented_refresh_token"] == original_refresh
            assert refresh["issued_refresh_token"] not in (None, original_refresh)
            assert refresh["access_token"] == fresh
            # A reuse after the refresh: the fresh token, no prompt, no provider call.
            again = await agent.request_oauth_token(
                **oidc_provider.oauth_args("public-short"), from_participant_id="alice",
                timeout=5,
            )
            assert again in (fresh, refreshes(oidc_provider, "public-short")[-1]["access_token"])
            assert oidc_provider.is_active(again)
            # And the next expiry is refreshed with the rotated refresh token.
            await oidc_provider.until_expired(again)
            third = await agent.get_offline_oauth_token(
                **oidc_provider.oauth_args("public-short"), delegated_by="alice"
            )
            assert third is not None and third not in (first.token, fresh, again)
            assert oidc_provider.is_active(third)
            chain = refreshes(oidc_provider, "public-short")
            assert chain[-1]["presented_refresh_token"] == chain[-2]["issued_refresh_token"]
            assert all(entry["status"] == 200 for entry in chain)
            assert revoked_grants(oidc_provider, "public-short") == []
        finally:
            await room.close()

    run(scenario())


def test_a_replayed_refresh_token_revokes_the_grant_and_the_person_must_approve_again(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        args = oidc_provider.oauth_args("replay-app")
        try:
            first = await approve_one(room, oidc_provider, "replay-app", agent, alice)
            consumed = issued_refresh_token(oidc_provider, "replay-app")
            await oidc_provider.until_expired(first.token)
            fresh = await agent.get_offline_oauth_token(**args, delegated_by="alice")
            assert fresh is not None and fresh != first.token
            assert oidc_provider.is_active(fresh)
            # Someone replays the refresh token our refresh consumed: the provider refuses
            # it and revokes the whole grant (RFC 9700 §4.14.2), which proves it rotated.
            status, body = oidc_provider.refresh_directly("replay-app", consumed)
            assert (status, body["error"]) == (400, "invalid_grant")
            assert len(revoked_grants(oidc_provider, "replay-app")) == 1
            assert not oidc_provider.is_active(fresh)

            # Our side learns it at the next refresh: invalid_grant, so None (until our
            # copy of the revoked token expires, we still hand it out: we cannot know).
            async def offline_gone() -> bool:
                found = await agent.get_offline_oauth_token(**args, delegated_by="alice")
                assert found in (fresh, None)
                return found is None

            await until(offline_gone, "the offline fetch gives None")
            last = refreshes(oidc_provider, "replay-app")[-1]
            assert (last["status"], last["error"]) == (400, "invalid_grant")
            # Asking again prompts alice, and a new approval gives a new, live grant.
            second = await approve_one(room, oidc_provider, "replay-app", agent, alice)
            assert second.token not in (first.token, fresh)
            assert oidc_provider.is_active(second.token)
        finally:
            await room.close()

    run(scenario())


def test_a_thousand_concurrent_offline_fetches_on_an_expired_token_refresh_once(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        args = oidc_provider.oauth_args("crowd-app")
        try:
            first = await approve_one(room, oidc_provider, "crowd-app", agent, alice)
            await oidc_provider.until_expired(first.token)
            found = await asyncio.gather(
                *(agent.get_offline_oauth_token(**args, delegated_by="alice")
                  for _ in range(1000))
            )
            assert len(found) == 1000
            [fresh] = set(found)
            assert fresh is not None and fresh != first.token
            [refresh] = refreshes(oidc_provider, "crowd-app")  # exactly one reached it
            assert refresh["status"] == 200 and refresh["access_token"] == fresh
            assert oidc_provider.is_active(fresh)
            # The grant is alive: the next expiry refreshes again, with the rotated token.
            await oidc_provider.until_expired(fresh)
            later = await agent.get_offline_oauth_token(**args, delegated_by="alice")
            assert later is not None and later != fresh
            assert oidc_provider.is_active(later)
            first_refresh, second_refresh = refreshes(oidc_provider, "crowd-app")
            assert second_refresh["status"] == 200
            assert (second_refresh["presented_refresh_token"]
                    == first_refresh["issued_refresh_token"])
            assert revoked_grants(oidc_provider, "crowd-app") == []
        finally:
            await room.close()

    run(scenario())


# --- confidential clients ----------------------------------------------------------------


def test_client_secret_basic_with_reserved_characters_in_the_secret(
    room: Room, oidc_provider: OidcProvider
) -> None:
    secret = CLIENTS["basic-app"].client_secret
    assert secret is not None and set("+/=&:%") <= set(secret)

    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        args = oidc_provider.oauth_args("basic-app")
        try:
            first = await approve_one(room, oidc_provider, "basic-app", agent, alice)
            assert oidc_provider.is_active(first.token)
            # The secret never went to the person's browser.
            assert "client_secret" not in first.prompt.authorization_url
            await oidc_provider.until_expired(first.token)
            fresh = await agent.get_offline_oauth_token(**args, delegated_by="alice")
            assert fresh is not None and fresh != first.token
            assert oidc_provider.is_active(fresh)
            requests = oidc_provider.token_requests("basic-app")
            assert [(entry["grant_type"], entry["auth_method"], entry["status"])
                    for entry in requests] == [
                ("authorization_code", "client_secret_basic", 200),
                ("refresh_token", "client_secret_basic", 200),
            ]
            # A wrong secret is refused by the provider: its check is real.
            status, body = oidc_provider.post_form(
                oidc_provider.token_endpoint,
                {"grant_type": "refresh_token",
                 "refresh_token": requests[-1]["issued_refresh_token"]},
                basic=("basic-app", secret.replace("%41", "A")),
            )
            assert (status, body["error"]) == (401, "invalid_client")
        finally:
            await room.close()

    run(scenario())


def test_client_secret_post(room: Room, oidc_provider: OidcProvider) -> None:
    """``client_auth_method="client_secret_post"``: the secret goes in the form, for the
    code exchange and for refreshes (the provider refuses Basic for this client)."""

    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        args = oidc_provider.oauth_args("post-app")
        assert args["client_auth_method"] == "client_secret_post"
        try:
            first = await approve_one(room, oidc_provider, "post-app", agent, alice)
            [exchange] = code_exchanges(oidc_provider, "post-app")
            assert (exchange["auth_method"], exchange["status"]) == ("client_secret_post", 200)
            assert oidc_provider.is_active(first.token)
            await oidc_provider.until_expired(first.token)
            fresh = await agent.get_offline_oauth_token(**args, delegated_by="alice")
            assert fresh is not None and oidc_provider.is_active(fresh)
            [refresh] = refreshes(oidc_provider, "post-app")
            assert (refresh["auth_method"], refresh["status"]) == ("client_secret_post", 200)
            # The same secret in HTTP Basic is refused: the method check is real.
            status, body = oidc_provider.post_form(
                oidc_provider.token_endpoint,
                {"grant_type": "refresh_token", "refresh_token": refresh["issued_refresh_token"]},
                basic=("post-app", args["client_secret"]),
            )
            assert (status, body["error"]) == (401, "invalid_client")
        finally:
            await room.close()

    run(scenario())


def test_the_provider_refuses_an_authorization_request_without_pkce(
    room: Room, oidc_provider: OidcProvider
) -> None:
    """The provider's PKCE rule is real (so the flows above prove we send S256): with
    ``no_pkce=True`` it answers our callback with an error, and the agent is told."""

    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        try:
            asking = room.spawn(
                agent.request_oauth_token(
                    **oidc_provider.oauth_args("strict-app"), from_participant_id="alice",
                    timeout=60, no_pkce=True,
                )
            )
            prompt = await prompt_for(room, alice, asking)
            assert "code_challenge" not in prompt.authorization_url
            visit = await approve_at_provider(
                prompt.authorization_url, callback_url=room.callback_url
            )
            assert visit.pages == ()  # refused before any login page
            assert visit.query["error"] == "invalid_request"
            assert "PKCE" in visit.query["error_description"]
            # The provider refused, not the person: the page says so, with RFC 6749's code.
            assert visit.status == 200 and "declined" not in visit.text.lower()
            assert "ended the request with <code>invalid_request</code>" in visit.text
            with pytest.raises(errors.RequestRejected) as rejected:
                await asyncio.wait_for(asking, 30)
            assert rejected.value.error == "invalid_request"
            assert code_exchanges(oidc_provider, "strict-app") == []
        finally:
            await room.close()

    run(scenario())


def test_a_scope_the_provider_does_not_grant_is_left_out_of_the_credential(
    room: Room, oidc_provider: OidcProvider
) -> None:
    """oidc-provider drops scopes it does not know and says so in the token response's
    ``scope`` (RFC 6749 §3.3); our credential records what was granted, not what was
    asked, so it covers only that."""

    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        asked = ["mail.read", "calendar.unknown"]
        try:
            approved = await approve_one(
                room, oidc_provider, "narrow-app", agent, alice, scopes=asked
            )
            [exchange] = code_exchanges(oidc_provider, "narrow-app")
            assert exchange["scope"] == "mail.read"
            assert oidc_provider.introspect(approved.token)["scope"] == "mail.read"
            granted = await agent.get_offline_oauth_token(
                **oidc_provider.oauth_args("narrow-app", scopes=["mail.read"]),
                delegated_by="alice",
            )
            assert granted == approved.token
            full = await agent.get_offline_oauth_token(
                **oidc_provider.oauth_args("narrow-app", scopes=asked), delegated_by="alice"
            )
            assert full is None
        finally:
            await room.close()

    run(scenario())


def test_a_wider_request_prompts_again_and_the_signed_in_person_only_consents(
    room: Room, oidc_provider: OidcProvider
) -> None:
    """Incremental authorization with a real provider: alice's browser keeps her
    provider session, so the second approval shows only the consent page, for the new
    scope; the new credential covers both scopes and replaces the first."""

    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        both = ["mail.read", "mail.send"]
        browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        try:
            first = await approve_one(
                room, oidc_provider, "wider-app", agent, alice, browser=browser
            )
            assert first.pages == ("login", "consent")
            wider = oidc_provider.oauth_args("wider-app", scopes=both)
            assert await agent.get_offline_oauth_token(**wider, delegated_by="alice") is None
            second = await approve_one(
                room, oidc_provider, "wider-app", agent, alice, browser=browser, scopes=both
            )
            assert second.pages == ("consent",)
            assert second.token != first.token
            assert oidc_provider.introspect(second.token)["scope"] == "mail.read mail.send"
            for scopes in (["mail.read"], ["mail.send"], both):
                assert await agent.get_offline_oauth_token(
                    **oidc_provider.oauth_args("wider-app", scopes=scopes),
                    delegated_by="alice",
                ) == second.token
            assert len(await alice.list_user_secrets()) == 1
            assert len(code_exchanges(oidc_provider, "wider-app")) == 2
        finally:
            await browser.close()
            await room.close()

    run(scenario())


# --- declining, deleting -----------------------------------------------------------------


def test_the_person_cancels_at_the_providers_consent_page(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        try:
            asking = room.spawn(
                agent.request_oauth_token(
                    **oidc_provider.oauth_args("decline-app"), from_participant_id="alice",
                    timeout=60,
                )
            )
            prompt = await prompt_for(room, alice, asking)
            visit = await approve_at_provider(
                prompt.authorization_url, callback_url=room.callback_url, cancel_at="consent"
            )
            assert visit.status == 200 and "declined" in visit.text.lower()
            assert visit.query["error"] == "access_denied"
            assert visit.query["iss"] == oidc_provider.issuer
            with pytest.raises(errors.RequestRejected) as rejected:
                await asyncio.wait_for(asking, 30)
            assert rejected.value.error == "access_denied"
            assert code_exchanges(oidc_provider, "decline-app") == []
            assert await alice.list_user_secrets() == []
        finally:
            await room.close()

    run(scenario())


def test_after_a_delete_the_offline_fetch_returns_none(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        args = oidc_provider.oauth_args("delete-app")
        try:
            approved = await approve_one(room, oidc_provider, "delete-app", agent, alice)
            assert await agent.get_offline_oauth_token(**args, delegated_by="alice") \
                == approved.token
            [info] = await alice.list_user_secrets()
            await alice.delete_user_secret(id=info.id, delegated_to="agent-1")
            assert await alice.list_user_secrets() == []
            assert await agent.get_offline_oauth_token(**args, delegated_by="alice") is None
        finally:
            await room.close()

    run(scenario())


# --- the CLI -----------------------------------------------------------------------------


def cli_oauth_flags(provider: OidcProvider, client_id: str) -> list[str]:
    return [
        f"--client-id={client_id}",
        f"--authorization-endpoint={provider.authorization_endpoint}",
        f"--token-endpoint={provider.token_endpoint}",
        "--scopes=mail.read",
    ]


def test_the_cli_asks_gets_refreshes_and_finds_nothing_after_a_delete(
    room: Room, oidc_provider: OidcProvider
) -> None:
    async def scenario() -> None:
        alice = await room.person()
        agent_token = room.token("agent-1", grant=SecretsGrant.allow_all(), name="mailbot")
        flags = cli_oauth_flags(oidc_provider, "cli-app")
        try:
            asking = room.spawn(
                cli(room, agent_token, "oauth2", "request", f"--room={room.name}",
                    "--from-participant-id=alice", *flags, "--timeout=60")
            )
            prompt = await prompt_for(room, alice, asking)
            visit = await approve_at_provider(
                prompt.authorization_url, callback_url=room.callback_url
            )
            assert visit.status == 200 and "approved" in visit.text.lower()
            code, stdout, stderr = await asking
            assert code == 0, stderr
            token = stdout.strip()
            leak_watch.remember_secret(token)
            assert oidc_provider.is_active(token)
            assert token not in stderr

            # Offline, after the four-second token expired: a refreshed one.
            await oidc_provider.until_expired(token)
            code, stdout, stderr = await cli(
                room, agent_token, "oauth2", "get", f"--room={room.name}",
                "--delegated-by=alice", *flags,
            )
            assert code == 0, stderr
            fresh = stdout.strip()
            leak_watch.remember_secret(fresh)
            assert fresh != token and oidc_provider.is_active(fresh)
            [refresh] = refreshes(oidc_provider, "cli-app")
            assert refresh["access_token"] == fresh

            [info] = await alice.list_user_secrets()
            code, _, stderr = await cli(
                room, room.token("alice"), "oauth2", "delete", f"--room={room.name}",
                f"--id={info.id}", "--delegated-to=agent-1",
            )
            assert code == 0, stderr
            code, stdout, stderr = await cli(
                room, agent_token, "oauth2", "get", f"--room={room.name}",
                "--delegated-by=alice", *flags,
            )
            assert (code, stdout) == (1, "")
            assert len(stderr.strip().splitlines()) == 1 and "alice" in stderr
        finally:
            await room.close()

    run(scenario())


# --- prompts that ended --------------------------------------------------------------------


def test_a_prompt_answered_through_the_callback_is_not_offered_again(
    room: Room, oidc_provider: OidcProvider
) -> None:
    """SPEC: prompts that ended drop out; a new ``oauth_prompts()`` iterator of the
    remote client must not offer the one alice answered at the provider."""

    async def scenario() -> None:
        agent, alice = room.agent(), await room.person()
        try:
            first = await approve_one(room, oidc_provider, "again-app", agent, alice)
            assert oidc_provider.is_active(first.token)
            # A second request (a scope not granted yet): the next prompt alice is
            # offered must be that one, not the one she answered.
            asking = room.spawn(
                agent.request_oauth_token(
                    **oidc_provider.oauth_args("again-app", scopes=["files.read"]),
                    from_participant_id="alice", timeout=60,
                )
            )
            offered = await next_prompt(alice)
            assert offered.request_id != first.prompt.request_id
            assert offered.scopes == ("files.read",)
            await alice.reject_oauth_authorization(request_id=offered.request_id, error="no")
            with pytest.raises(errors.RequestRejected):
                await asyncio.wait_for(asking, 30)
        finally:
            await room.close()

    run(scenario())
