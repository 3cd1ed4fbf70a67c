"""``SecretsService.session``: acting as a participant without connecting it, and
``connected_participants``. What a server needs to run one HTTP call for an
authenticated participant (SPEC: an agent needs no WebSocket to call)."""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from roomsecrets.core.grants import OAuthRule, SecretsGrant
from roomsecrets.core.participants import ParticipantInfo
from tests.core.service_kit import (
    REDIRECT_URI,
    make_service,
    next_prompt,
    oauth_args,
    running_provider,
)
from tests.support.headless_person import approve


def run(coro):
    return asyncio.run(coro)


def ask_from(client, provider, **kw):
    return asyncio.create_task(
        client.request_oauth_token(
            **oauth_args(provider, **kw), from_participant_id="alice", redirect_uri=REDIRECT_URI
        )
    )


async def until_pending(service, count=1):
    for _ in range(200):
        if len(service.registry) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no pending request appeared")


def test_a_session_manages_its_own_secrets_without_being_connected():
    async def scenario():
        service = make_service()
        bob = service.session("bob", name="Bob")
        await bob.set_secret(secret_id="api-key", data=b"k", type="text/plain", name="key")
        assert await bob.get_secret(secret_id="api-key") == b"k"
        [info] = await bob.list_user_secrets()
        assert (info.id, info.type, info.name, info.delegated_to) == (
            "api-key",
            "text/plain",
            "key",
            None,
        )
        await bob.delete_user_secret(id="api-key")
        assert await bob.list_user_secrets() == []
        assert not service.is_connected("bob")
        assert service.connected_participants() == []
        assert bob.participant_id == "bob"

    run(scenario())


def test_a_session_is_never_a_prompt_target():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent = service.session("agent-1", grant=SecretsGrant.allow_all())
            service.session("alice")  # alice has a session, but no connection
            with pytest.raises(errors.ParticipantNotConnected):
                await ask_from(agent, provider)
            assert len(service.registry) == 0
            alice = service.session("alice")
            with pytest.raises(errors.ParticipantNotConnected):
                alice.oauth_prompts()

    run(scenario())


def test_a_session_requester_gets_a_token_the_connected_person_approves():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            alice = service.connect("alice", name="Alice")
            agent = service.session("agent-1", grant=SecretsGrant.allow_all())
            request = ask_from(agent, provider)
            prompt = await next_prompt(alice)
            assert prompt.from_participant_id == "agent-1"
            code, state = await asyncio.to_thread(approve, prompt.authorization_url)
            await alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=code, state=state
            )
            token = await asyncio.wait_for(request, 10)
            assert provider.is_active(token)
            # Reuse through another session: no prompt, the same token.
            other = service.session("agent-1", grant=SecretsGrant.allow_all())
            assert await ask_from(other, provider) == token
            offline = await other.get_offline_oauth_token(
                **oauth_args(provider), delegated_by="alice"
            )
            assert offline == token
            assert len(service.registry) == 0

    run(scenario())


def test_the_person_may_answer_through_a_session_and_the_prompt_leaves_their_list():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            alice = service.connect("alice")
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            request = ask_from(agent, provider)
            prompt = await next_prompt(alice)
            code, state = await asyncio.to_thread(approve, prompt.authorization_url)
            answering = service.session("alice")
            await answering.provide_oauth_authorization(
                request_id=prompt.request_id, code=code, state=state
            )
            assert provider.is_active(await asyncio.wait_for(request, 10))
            assert service.participant("alice").prompts == {}

    run(scenario())


def test_a_session_rejecting_ends_the_request_with_request_rejected():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            alice = service.connect("alice")
            agent = service.session("agent-1", grant=SecretsGrant.allow_all())
            request = ask_from(agent, provider)
            prompt = await next_prompt(alice)
            await service.session("alice").reject_oauth_authorization(
                request_id=prompt.request_id, error="user_cancelled"
            )
            with pytest.raises(errors.RequestRejected):
                await request
            assert service.participant("alice").prompts == {}
            assert len(service.registry) == 0

    run(scenario())


def test_each_session_is_checked_against_its_own_grant():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            service.connect("alice", grant=SecretsGrant())
            narrow = service.session(
                "agent-1", grant=SecretsGrant(oauth=(OAuthRule(client_id="other-app"),))
            )
            wide = service.session("agent-1", grant=SecretsGrant.allow_all())
            with pytest.raises(errors.GrantDenied):
                await ask_from(narrow, provider)
            assert len(service.registry) == 0
            request = ask_from(wide, provider)
            await until_pending(service)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            assert len(service.registry) == 0

    run(scenario())


def test_a_session_whose_grant_forbids_answering_cannot_answer_even_if_the_connection_could():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            alice = service.connect("alice")  # the default grant answers prompts
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            request = ask_from(agent, provider)
            prompt = await next_prompt(alice)
            mute = service.session("alice", grant=SecretsGrant(answer_prompts=False))
            with pytest.raises(errors.GrantDenied):
                await mute.reject_oauth_authorization(request_id=prompt.request_id, error="no")
            with pytest.raises(errors.GrantDenied):
                await mute.provide_oauth_authorization(request_id=prompt.request_id, code="c")
            assert prompt.request_id in service.participant("alice").prompts
            await alice.reject_oauth_authorization(request_id=prompt.request_id, error="no")
            with pytest.raises(errors.RequestRejected):
                await request

    run(scenario())


def test_closing_a_session_cancels_what_it_asked_and_leaves_nothing_pending():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            alice = service.connect("alice")
            agent = service.session("agent-1", grant=SecretsGrant.allow_all())
            request = ask_from(agent, provider)
            await until_pending(service)
            await agent.close()
            with pytest.raises(errors.RequestCancelled):
                await request
            assert len(service.registry) == 0
            assert service.participant("alice").prompts == {}
            with pytest.raises(errors.ParticipantNotConnected):
                await agent.list_user_secrets()
            await agent.close()  # twice is fine
            assert service.is_connected("alice")
            del alice

    run(scenario())


def test_cancelling_a_session_request_leaves_nothing_pending():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            service.connect("alice")
            agent = service.session("agent-1", grant=SecretsGrant.allow_all())
            request = ask_from(agent, provider)
            await until_pending(service)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            assert len(service.registry) == 0
            assert service.participant("alice").prompts == {}

    run(scenario())


def test_the_person_leaving_ends_a_session_request():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            alice = service.connect("alice")
            agent = service.session("agent-1", grant=SecretsGrant.allow_all())
            request = ask_from(agent, provider)
            await until_pending(service)
            await alice.close()
            with pytest.raises(errors.RequestCancelled):
                await request
            assert len(service.registry) == 0

    run(scenario())


def test_the_connected_participant_leaving_ends_requests_its_sessions_made():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            service.connect("alice")
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            via_session = service.session("agent-1", grant=SecretsGrant.allow_all())
            request = ask_from(via_session, provider)
            await until_pending(service)
            await agent.close()
            with pytest.raises(errors.RequestCancelled):
                await request
            assert len(service.registry) == 0

    run(scenario())


def test_sessions_and_a_connection_of_one_id_coexist():
    async def scenario():
        service = make_service()
        one = service.session("bob")
        two = service.session("bob")
        bob = service.connect("bob", name="Bob")
        await one.set_secret(secret_id="s", data=b"1")
        assert await two.get_secret(secret_id="s") == b"1"
        assert await bob.get_secret(secret_id="s") == b"1"
        await one.close()
        assert service.is_connected("bob")
        assert await two.get_secret(secret_id="s") == b"1"
        await bob.close()
        assert await two.get_secret(secret_id="s") == b"1"

    run(scenario())


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("",), {}),
        ((7,), {}),
        (("bob",), {"name": 7}),
        (("bob",), {"grant": {"manage_own_secrets": True}}),
    ],
)
def test_a_session_with_a_bad_id_name_or_grant_is_invalid_input(args, kwargs):
    service = make_service()
    with pytest.raises(errors.InvalidInput):
        service.session(*args, **kwargs)


def test_connected_participants_lists_ids_and_names_in_connection_order():
    async def scenario():
        service = make_service()
        assert service.connected_participants() == []
        service.connect("zed", name="Zed")
        alice = service.connect("alice")
        service.session("ghost")
        assert service.connected_participants() == [
            ParticipantInfo(id="zed", name="Zed"),
            ParticipantInfo(id="alice", name=None),
        ]
        await alice.close()
        assert service.connected_participants() == [ParticipantInfo(id="zed", name="Zed")]

    run(scenario())
