"""``request_oauth_token(delegate_to=...)``: an agent asks a person for a credential
that is kept for another participant (an agent it acts for). The person sees whom
it is for; the delegate then gets it offline; the asker never gets it back unasked;
only the owner may read a credential of theirs delegated to someone else."""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from tests.core.service_kit import (
    REDIRECT_URI,
    approve_next,
    make_service,
    oauth_args,
    room,
    running_provider,
)


def ask_for(agent, provider, **kw):
    return asyncio.create_task(
        agent.request_oauth_token(
            **oauth_args(provider), from_participant_id="alice", redirect_uri=REDIRECT_URI, **kw
        )
    )


def test_the_credential_is_kept_for_the_delegate_who_then_gets_it_offline():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            worker = service.connect("worker", grant=SecretsGrant.allow_all())
            asking = ask_for(agent, provider, delegate_to="worker")
            prompt = await approve_next(alice)
            # The person is told whom the credential is kept for.
            assert prompt.delegate_to == "worker"
            assert "delegate_to='worker'" in repr(prompt)
            token = await asyncio.wait_for(asking, 10)
            assert provider.is_active(token)
            # Stored as alice's, delegated to the worker, not to the asker.
            (info,) = await alice.list_user_secrets()
            assert info.delegated_to == "worker"
            assert await worker.get_offline_oauth_token(
                **oauth_args(provider), delegated_by="alice"
            ) == token
            assert await agent.get_offline_oauth_token(
                **oauth_args(provider), delegated_by="alice"
            ) is None

    asyncio.run(scenario())


def test_asking_for_a_delegate_again_prompts_again_and_never_reuses_unasked():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            service.connect("worker", grant=SecretsGrant.allow_all())
            first = ask_for(agent, provider, delegate_to="worker")
            await approve_next(alice)
            await asyncio.wait_for(first, 10)
            # The asker has no credential of its own: asking for the worker again
            # is a new prompt, not the worker's stored credential handed to the asker.
            second = ask_for(agent, provider, delegate_to="worker")
            prompt = await approve_next(alice)
            assert prompt.delegate_to == "worker"
            await asyncio.wait_for(second, 10)
            assert len(provider.authorization_requests) == 2
            # Naming itself is the plain request: its own credential is reused.
            mine = ask_for(agent, provider)
            await approve_next(alice)
            token = await asyncio.wait_for(mine, 10)
            assert await agent.request_oauth_token(
                **oauth_args(provider), from_participant_id="alice", redirect_uri=REDIRECT_URI,
                delegate_to="agent-1",
            ) == token
            assert len(provider.authorization_requests) == 3

    asyncio.run(scenario())


def test_a_plain_request_tells_the_person_the_asker_keeps_it():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            asking = ask_for(agent, provider)
            prompt = await approve_next(alice)
            assert prompt.delegate_to == "agent-1"
            await asyncio.wait_for(asking, 10)
            (info,) = await alice.list_user_secrets()
            assert info.delegated_to == "agent-1"

    asyncio.run(scenario())


def test_only_the_owner_reads_a_credential_delegated_to_another():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            # The owner reads her own credentials only as her grant allows.
            alice = service.connect("alice", grant=SecretsGrant.allow_all())
            service.connect("worker", grant=SecretsGrant.allow_all())
            asking = ask_for(agent, provider, delegate_to="worker")
            await approve_next(alice)
            token = await asyncio.wait_for(asking, 10)
            # The asker cannot take the worker's credential by naming it.
            with pytest.raises(errors.GrantDenied, match="only alice may"):
                await agent.get_offline_oauth_token(
                    **oauth_args(provider), delegated_by="alice", delegated_to="worker"
                )
            # The owner reads her own credential, delegated to the worker.
            assert await alice.get_offline_oauth_token(
                **oauth_args(provider), delegated_by="alice", delegated_to="worker"
            ) == token
            # Naming oneself is the default.
            assert await agent.get_offline_oauth_token(
                **oauth_args(provider), delegated_by="alice", delegated_to="agent-1"
            ) is None

    asyncio.run(scenario())


def test_a_bad_delegate_is_invalid_input_before_anything_is_asked():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service)
            with pytest.raises(errors.InvalidInput):
                await agent.request_oauth_token(
                    **oauth_args(provider), from_participant_id="alice",
                    redirect_uri=REDIRECT_URI, delegate_to="",
                )
            with pytest.raises(errors.InvalidInput):
                await agent.get_offline_oauth_token(
                    **oauth_args(provider), delegated_by="alice", delegated_to="\ud800"
                )
            assert provider.authorization_requests == []
            assert len(service.registry) == 0

    asyncio.run(scenario())


def test_the_quota_is_checked_for_the_delegated_credential():
    async def scenario():
        with running_provider() as provider:
            service = make_service(max_secrets_per_participant=1)
            agent, alice = room(service)
            await alice.set_secret(secret_id="full", data=b"x")
            with pytest.raises(errors.QuotaExceeded):
                await agent.request_oauth_token(
                    **oauth_args(provider), from_participant_id="alice",
                    redirect_uri=REDIRECT_URI, delegate_to="worker",
                )
            assert provider.authorization_requests == []

    asyncio.run(scenario())


def test_the_askers_own_credential_does_not_answer_a_request_for_a_delegate():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            worker = service.connect("worker", grant=SecretsGrant.allow_all())
            mine = ask_for(agent, provider)
            await approve_next(alice)
            await asyncio.wait_for(mine, 10)
            # Asking for the worker prompts (the person decides about the worker),
            # and the worker gets its own credential.
            theirs = ask_for(agent, provider, delegate_to="worker")
            prompt = await approve_next(alice)
            assert prompt.delegate_to == "worker"
            token = await asyncio.wait_for(theirs, 10)
            assert await worker.get_offline_oauth_token(
                **oauth_args(provider), delegated_by="alice"
            ) == token
            assert sorted(s.delegated_to for s in await alice.list_user_secrets()) == [
                "agent-1", "worker"
            ]

    asyncio.run(scenario())
