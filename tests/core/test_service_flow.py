"""The seed's whole Secrets API, in one process, against a strict fake provider."""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from roomsecrets.core.grants import OAuthRule, SecretsGrant
from tests.core.service_kit import (
    CLIENT_ID,
    REDIRECT_URI,
    approve_next,
    ask,
    make_service,
    next_prompt,
    oauth_args,
    room,
    running_provider,
)
from tests.support.fake_provider import CannedResponse


def run(coro):
    return asyncio.run(coro)


async def first_token(service, provider, agent, alice, **kw):
    request = asyncio.create_task(
        agent.request_oauth_token(
            **oauth_args(provider, **kw), from_participant_id="alice", redirect_uri=REDIRECT_URI
        )
    )
    prompt = await approve_next(alice)
    return await asyncio.wait_for(request, 10), prompt


def test_request_prompt_provide_returns_a_working_token_then_reuses_it():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            token, prompt = await first_token(service, provider, agent, alice)
            assert provider.is_active(token)
            assert prompt.from_participant_id == "agent-1"
            assert prompt.client_id == CLIENT_ID
            assert prompt.scopes == ("mail.read",)
            assert prompt.redirect_uri == REDIRECT_URI
            sent = provider.authorization_requests[-1]
            assert sent["code_challenge"] == prompt.code_challenge
            assert sent["code_challenge_method"] == "S256"
            assert sent["state"] == prompt.state
            assert "code_verifier" not in prompt.authorization_url
            # Second request: same credential, no prompt, no token POST.
            posts = len(provider.token_requests)
            again = await agent.request_oauth_token(
                **oauth_args(provider), from_participant_id="alice", redirect_uri=REDIRECT_URI
            )
            assert again == token
            assert len(provider.authorization_requests) == 1
            assert len(provider.token_requests) == posts
            assert len(service.registry) == 0

    run(scenario())


def test_offline_token_and_participant_name_alias():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            assert await agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice") is None
            token, _ = await first_token(service, provider, agent, alice)
            assert await agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice") == token
            assert await agent.get_offline_oauth_token(**oauth_args(provider), participant_name="alice") == token
            with pytest.raises(errors.InvalidInput):
                await agent.get_offline_oauth_token(**oauth_args(provider))
            # Scopes not covered by the stored credential: no token, no prompt.
            assert await agent.get_offline_oauth_token(
                **oauth_args(provider, scopes=["mail.send"]), delegated_by="alice"
            ) is None
            # Another agent has no credential delegated to it.
            other = service.connect("agent-2", grant=SecretsGrant.allow_all())
            assert await other.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice") is None

    run(scenario())


def test_expired_credential_is_refreshed_once_and_rotation_is_saved():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            token, _ = await first_token(service, provider, agent, alice)
            service.clock.advance(3600)
            fresh = await asyncio.gather(
                *[agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice")
                  for _ in range(50)]
            )
            assert provider.refresh_posts == 1
            assert len(set(fresh)) == 1 and fresh[0] != token
            assert provider.is_active(fresh[0])
            # The rotated refresh token was saved: a second expiry refreshes again fine.
            service.clock.advance(3600)
            third = await agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice")
            assert provider.refresh_posts == 2
            assert provider.is_active(third)
            assert provider.revoked_grants == 0

    run(scenario())


def test_request_oauth_token_refreshes_an_expired_credential_without_prompting():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await first_token(service, provider, agent, alice)
            service.clock.advance(7200)
            token = await agent.request_oauth_token(
                **oauth_args(provider), from_participant_id="alice", redirect_uri=REDIRECT_URI
            )
            assert provider.is_active(token)
            assert len(provider.authorization_requests) == 1
            assert provider.refresh_posts == 1

    run(scenario())


def test_reject_ends_the_wait_with_request_rejected():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            await alice.reject_oauth_authorization(request_id=prompt.request_id, error="user_cancelled")
            with pytest.raises(errors.RequestRejected) as info:
                await request
            assert info.value.error == "user_cancelled"
            assert len(service.registry) == 0
            with pytest.raises(errors.UnknownRequest):
                await alice.provide_oauth_authorization(request_id=prompt.request_id, code="x")

    run(scenario())


def test_timeout_ends_the_wait_and_leaves_nothing_pending():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service)
            with pytest.raises(errors.RequestTimedOut):
                await agent.request_oauth_token(
                    **oauth_args(provider), from_participant_id="alice",
                    redirect_uri=REDIRECT_URI, timeout=0.2,
                )
            assert len(service.registry) == 0
            assert service.participant("alice").prompts == {}

    run(scenario())


def test_requester_leaving_cancels_its_requests_and_the_prompt_drops_out():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            await agent.close()
            with pytest.raises(errors.RequestCancelled) as info:
                await request
            assert info.value.reason == "requester_left"
            assert prompt.request_id not in service.participant("alice").prompts
            with pytest.raises(errors.UnknownRequest):
                await alice.reject_oauth_authorization(request_id=prompt.request_id, error="x")

    run(scenario())


def test_target_leaving_cancels_the_wait():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider)
            await next_prompt(alice)
            await alice.close()
            with pytest.raises(errors.RequestCancelled) as info:
                await request
            assert info.value.reason == "target_left"

    run(scenario())


def test_target_not_connected_fails_at_once():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _ = room(service)
            with pytest.raises(errors.ParticipantNotConnected):
                await asyncio.wait_for(agent.request_oauth_token(
                    **oauth_args(provider), from_participant_id="bob",
                    redirect_uri=REDIRECT_URI), 2)
            assert len(service.registry) == 0

    run(scenario())


def test_answer_by_the_wrong_participant_is_denied_and_changes_nothing():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            mallory = service.connect("mallory")
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            with pytest.raises(errors.NotAddressedToYou):
                await mallory.provide_oauth_authorization(request_id=prompt.request_id, code="evil")
            with pytest.raises(errors.NotAddressedToYou):
                await mallory.reject_oauth_authorization(request_id=prompt.request_id, error="x")
            assert not request.done()
            assert prompt.request_id in service.registry
            assert len(provider.token_requests) == 0
            # The right person can still answer.
            await approve_next(alice)
            assert provider.is_active(await request)

    run(scenario())


def test_replayed_answer_is_refused():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            _, prompt = await first_token(service, provider, agent, alice)
            posts = len(provider.token_requests)
            with pytest.raises(errors.UnknownRequest):
                await alice.provide_oauth_authorization(request_id=prompt.request_id, code="again")
            assert len(provider.token_requests) == posts

    run(scenario())


def test_wrong_state_is_refused_and_the_request_stays_answerable():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            with pytest.raises(errors.StateMismatch):
                await alice.provide_oauth_authorization(
                    request_id=prompt.request_id, code="c", state="forged-state")
            assert len(provider.token_requests) == 0
            await approve_next(alice)
            assert provider.is_active(await request)

    run(scenario())


def test_delete_then_offline_is_none_and_list_shows_credentials():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await first_token(service, provider, agent, alice)
            listed = await alice.list_user_secrets()
            assert len(listed) == 1
            info = listed[0]
            assert info.type == "oauth_token"
            assert info.delegated_to == "agent-1"
            assert CLIENT_ID in info.name
            assert await agent.list_user_secrets() == []
            await alice.delete_user_secret(id=info.id, delegated_to="agent-1")
            assert await alice.list_user_secrets() == []
            assert await agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice") is None

    run(scenario())


@pytest.mark.parametrize(
    "rule",
    [
        OAuthRule(client_id="other-app"),
        OAuthRule(authorization_endpoint="https://accounts.example.com/*"),
        OAuthRule(token_endpoint="https://oauth2.example.com/*"),
        OAuthRule(scopes=["calendar.*"]),
        OAuthRule(participants=["bob", "carol*"]),
    ],
    ids=["client_id", "authorization_endpoint", "token_endpoint", "scopes", "participants"],
)
def test_grant_denial_for_each_rule_field_changes_nothing(rule):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service, grant=SecretsGrant(oauth=[rule]))
            with pytest.raises(errors.GrantDenied) as info:
                await agent.request_oauth_token(
                    **oauth_args(provider), from_participant_id="alice", redirect_uri=REDIRECT_URI)
            assert isinstance(info.value, PermissionError)
            with pytest.raises(errors.GrantDenied):
                await agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice")
            assert len(service.registry) == 0
            assert service.participant("alice").prompts == {}
            denials = [e for e in service.audit.events if e.outcome == "denied"]
            assert len(denials) == 2 and denials[0].actor == "agent-1"

    run(scenario())


def test_default_grant_may_not_ask_but_may_answer_and_manage_own_secrets():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            _, alice = room(service)
            with pytest.raises(errors.GrantDenied):
                await alice.request_oauth_token(
                    **oauth_args(provider), from_participant_id="agent-1", redirect_uri=REDIRECT_URI)
            await alice.set_secret(secret_id="api-key", data=b"\x00k", type="text/plain", name="Key")
            assert await alice.get_secret(secret_id="api-key") == b"\x00k"
            assert [(i.id, i.type, i.name) for i in await alice.list_user_secrets()] == [
                ("api-key", "text/plain", "Key")]

    run(scenario())


def test_revoked_grant_means_offline_none_and_request_prompts_again():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await first_token(service, provider, agent, alice)
            provider.queue_token_responses(
                CannedResponse.json({"error": "invalid_grant", "error_description": "revoked"}, status=400))
            service.clock.advance(3600)
            assert await agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice") is None
            assert await alice.list_user_secrets() == []
            token, _ = await first_token(service, provider, agent, alice)
            assert provider.is_active(token)
            assert len(provider.authorization_requests) == 2
            assert any(e.action == "credential.dropped" for e in service.audit.events)

    run(scenario())


def test_invalid_client_on_refresh_is_raised_and_removes_nothing():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await first_token(service, provider, agent, alice)
            provider.queue_token_responses(CannedResponse.json({"error": "invalid_client"}, status=401))
            service.clock.advance(3600)
            with pytest.raises(errors.InvalidClient):
                await agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice")
            assert len(await alice.list_user_secrets()) == 1
            # Configuration fixed (the provider answers normally again): refresh works.
            assert await agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice")

    run(scenario())


def test_refresh_retries_429_and_503_honouring_retry_after_then_succeeds():
    async def scenario():
        with running_provider() as provider:
            slept = []

            async def sleep(seconds):
                slept.append(seconds)

            service = make_service(sleep=sleep)
            agent, alice = room(service)
            await first_token(service, provider, agent, alice)
            provider.queue_token_responses(
                CannedResponse.text("<html>429 Too Many Requests</html>", status=429),
                CannedResponse.text("busy", status=503, headers=(("Retry-After", "2"),)),
            )
            service.clock.advance(3600)
            token = await agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice")
            assert provider.is_active(token)
            assert provider.refresh_posts == 3
            assert slept[1] == 2.0

    run(scenario())


def test_refresh_gives_up_after_the_policy_attempts_with_a_typed_retryable_error():
    async def scenario():
        with running_provider() as provider:
            async def sleep(seconds):
                return None

            service = make_service(sleep=sleep)
            agent, alice = room(service)
            await first_token(service, provider, agent, alice)
            provider.queue_token_responses(*[CannedResponse.text("down", status=503)] * 4)
            service.clock.advance(3600)
            with pytest.raises(errors.ProviderUnavailable) as info:
                await agent.get_offline_oauth_token(**oauth_args(provider), delegated_by="alice")
            assert info.value.retryable
            assert provider.refresh_posts == 4
            assert len(await alice.list_user_secrets()) == 1

    run(scenario())


def test_provider_error_during_exchange_reaches_both_sides():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            provider.queue_token_responses(CannedResponse.json({"error": "invalid_grant"}, status=400))
            request = ask(agent, provider)
            with pytest.raises(errors.InvalidGrant):
                await approve_next(alice)
            with pytest.raises(errors.InvalidGrant):
                await request
            assert len(service.registry) == 0
            assert await alice.list_user_secrets() == []

    run(scenario())


def test_confidential_client_with_no_pkce():
    async def scenario():
        with running_provider(client_secret="s3cr3t value", auth_method="client_secret_basic",
                              require_pkce=False) as provider:
            service = make_service()
            agent, alice = room(service)
            request = asyncio.create_task(agent.request_oauth_token(
                **oauth_args(provider), client_secret="s3cr3t value", no_pkce=True,
                from_participant_id="alice", redirect_uri=REDIRECT_URI))
            prompt = await approve_next(alice)
            assert prompt.code_challenge is None
            assert "code_challenge" not in provider.authorization_requests[-1]
            token = await request
            assert provider.is_active(token)
            service.clock.advance(3600)
            refreshed = await agent.get_offline_oauth_token(
                **oauth_args(provider), client_secret="s3cr3t value", delegated_by="alice")
            assert provider.is_active(refreshed)

    run(scenario())


def test_prompts_issued_before_iteration_are_delivered_and_ended_ones_skipped():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            first = asyncio.create_task(agent.request_oauth_token(
                **oauth_args(provider), from_participant_id="alice", redirect_uri=REDIRECT_URI,
                timeout=0.3))
            second = asyncio.create_task(agent.request_oauth_token(
                **oauth_args(provider, scopes=["mail.send"]), from_participant_id="alice",
                redirect_uri=REDIRECT_URI, timeout=30))
            await asyncio.sleep(0)
            with pytest.raises(errors.RequestTimedOut):
                await first
            prompt = await next_prompt(alice)
            assert prompt.scopes == ("mail.send",)
            await alice.reject_oauth_authorization(request_id=prompt.request_id, error="no")
            with pytest.raises(errors.RequestRejected):
                await second

    run(scenario())


def test_bad_caller_input_gives_typed_errors():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service)
            bad = [
                dict(oauth_args(provider, authorization_endpoint="http://evil.example/auth")),
                dict(oauth_args(provider, token_endpoint="not a url")),
                dict(oauth_args(provider, scopes="mail.read")),
                dict(oauth_args(provider, client_id="")),
            ]
            for args in bad:
                with pytest.raises(errors.InvalidInput):
                    await agent.request_oauth_token(**args, from_participant_id="alice",
                                                    redirect_uri=REDIRECT_URI)
            with pytest.raises(errors.InvalidInput):
                await agent.request_oauth_token(**oauth_args(provider), from_participant_id="alice",
                                                redirect_uri="/relative")
            with pytest.raises(errors.InvalidInput):
                await agent.request_oauth_token(**oauth_args(provider), from_participant_id="alice",
                                                redirect_uri=REDIRECT_URI, timeout=0)
            with pytest.raises(errors.InvalidInput):
                service.connect("alice")
            with pytest.raises(errors.InvalidInput):
                await _alice.set_secret(secret_id="", data=b"x")
            with pytest.raises(errors.InvalidInput):
                await _alice.set_secret(secret_id="x", data="not bytes")
            assert len(service.registry) == 0

    run(scenario())
