"""Deletes do exactly what they say: a delete of nothing fails and says where the
secret is, a delete of the wrong kind deletes nothing, and a credential obtained with
the seed's arguments only (no issuer) is revoked at its provider."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from roomsecrets.core import errors
from roomsecrets.core.credentials import OAUTH_TOKEN_TYPE
from tests.core.service_kit import (
    CLIENT_ID,
    MetadataHidden,
    approved,
    make_service,
    offline,
    room,
    running_provider,
)


def run(coro):
    return asyncio.run(coro)


async def ids(person) -> list[tuple[str, str | None]]:
    return sorted((s.id, s.delegated_to) for s in await person.list_user_secrets())


def test_a_delete_of_nothing_raises_and_changes_nothing():
    async def scenario():
        service = make_service()
        _agent, alice = room(service)
        await alice.set_secret(secret_id="kept", data=b"x")
        before = await ids(alice)
        events = len(service.audit.events)
        with pytest.raises(errors.SecretNotFound) as info:
            await alice.delete_user_secret(id="nope")
        assert str(info.value) == "no secret 'nope' delegated to nobody"
        # Only the grant decision was audited; nothing was deleted or revoked.
        assert [e.action for e in service.audit.events[events:]] == ["secret.manage"]
        assert await ids(alice) == before

    run(scenario())


def test_a_delete_names_the_delegation_the_caller_does_hold():
    async def scenario():
        service = make_service()
        agent, alice = room(service)
        await alice.set_secret(secret_id="api-key", data=b"x", delegated_to="agent-1")
        # Another participant's secret of the same id is never looked at.
        await agent.set_secret(secret_id="api-key", data=b"y")
        with pytest.raises(errors.SecretNotFound) as info:
            await alice.delete_user_secret(id="api-key")
        assert str(info.value) == (
            "no secret 'api-key' delegated to nobody; you have one delegated to agent-1 "
            "(--delegated-to agent-1)")
        with pytest.raises(errors.SecretNotFound) as info:
            await agent.delete_user_secret(id="api-key", delegated_to="alice")
        assert str(info.value) == (
            "no secret 'api-key' delegated to alice; you have one delegated to nobody "
            "(without --delegated-to)")
        assert await ids(alice) == [("api-key", "agent-1")]
        await alice.delete_user_secret(id="api-key", delegated_to="agent-1")
        assert await ids(alice) == []

    run(scenario())


def test_an_oauth_only_delete_refuses_a_generic_secret_and_deletes_nothing():
    async def scenario():
        service = make_service()
        _agent, alice = room(service)
        await alice.set_secret(secret_id="api-key", data=b"x", type="text/plain")
        with pytest.raises(errors.WrongSecretType, match="not an OAuth credential"):
            await alice.delete_secret(id="api-key", type=OAUTH_TOKEN_TYPE)
        assert await alice.get_secret(secret_id="api-key") == b"x"
        deleted = await alice.delete_secret(id="api-key")
        assert (deleted.type, deleted.revocation) == ("text/plain", "not_oauth")
        assert await alice.get_secret(secret_id="api-key") is None

    run(scenario())


async def one_credential(service, provider):
    """agent-1 asks alice and she approves: the two clients, her one credential's
    SecretInfo, and where the store keeps it."""
    agent, alice = room(service)
    await approved(agent, alice, provider)
    (info,) = await alice.list_user_secrets()
    key = service.credential_key(owner="alice", requester="agent-1", client_id=CLIENT_ID,
                                 token_endpoint=provider.token_endpoint)
    return agent, alice, info, key


def test_a_credential_obtained_with_the_seeds_arguments_is_revoked_on_delete():
    # No issuer: the revocation endpoint is found at the token endpoint's origin.
    async def scenario():
        with running_provider() as provider:
            service = make_service(transport=None)
            agent, alice, info, _key = await one_credential(service, provider)
            deleted = await alice.delete_secret(
                id=info.id, delegated_to="agent-1", type=OAUTH_TOKEN_TYPE)
            host = provider.issuer.split("//", 1)[1]
            assert (deleted.revocation, deleted.host, deleted.error) == ("revoked", host, None)
            assert provider.revocation_requests == 1
            assert provider.revoked_grants  # the provider refuses its refresh token now
            revoked = [e for e in service.audit.events if e.action == "credential.revoked"]
            assert len(revoked) == 1
            assert await offline(agent, provider) is None

    run(scenario())


def test_the_credential_remembers_the_origins_revocation_endpoint_when_stored():
    # Stored with the endpoint, so a confidential client's revocation can authenticate.
    async def scenario():
        with running_provider() as provider:
            service = make_service(transport=None)
            _agent, _alice, info, key = await one_credential(service, provider)
            _, credential = await service.refresher.load(key)
            assert credential.revocation_endpoint == provider.revocation_endpoint
            assert info.type == OAUTH_TOKEN_TYPE

    run(scenario())


def test_a_provider_without_a_revocation_endpoint_is_named_and_the_delete_still_happens():
    async def scenario():
        with running_provider() as provider:
            service = make_service(transport=MetadataHidden())
            _agent, alice, info, _key = await one_credential(service, provider)
            deleted = await alice.delete_secret(id=info.id, delegated_to="agent-1")
            assert deleted.revocation == "not_published"
            assert deleted.host == provider.token_endpoint.split("//", 1)[1].split("/", 1)[0]
            assert await alice.list_user_secrets() == []
            assert provider.revocation_requests == 0

    run(scenario())


def test_a_credential_stored_without_a_revocation_endpoint_is_revoked_all_the_same():
    # Stored before revocation endpoints were looked up at the origin: looked up at delete.
    async def scenario():
        with running_provider() as provider:
            service = make_service(transport=None)
            _agent, alice, _info, key = await one_credential(service, provider)
            _, credential = await service.refresher.load(key)
            await service.store.delete(key)
            await service.refresher.save_new(
                key, dataclasses.replace(credential, revocation_endpoint=None))
            deleted = await alice.delete_secret(id=key.secret_id, delegated_to="agent-1")
            assert deleted.revocation == "revoked"
            assert provider.revocation_requests == 1

    run(scenario())


# --- quotas on stored secrets ---------------------------------------------------------


def test_a_participant_may_not_store_past_the_count_or_bytes_limit_and_nothing_changes():
    async def scenario():
        service = make_service(max_secrets_per_participant=3,
                               max_secret_bytes_per_participant=100)
        _agent, alice = room(service)
        for n in range(3):
            await alice.set_secret(secret_id=f"s{n}", data=b"x" * 10)
        audited = len(service.audit.events)
        with pytest.raises(errors.QuotaExceeded, match="the most one participant may have"):
            await alice.set_secret(secret_id="s3", data=b"x")
        assert len(service.audit.events) == audited  # refused before "allowed" is audited
        assert await ids(alice) == [("s0", None), ("s1", None), ("s2", None)]
        # Replacing an existing secret within the limits always works.
        await alice.set_secret(secret_id="s0", data=b"y" * 80)
        with pytest.raises(errors.QuotaExceeded, match="over the 100-byte limit"):
            await alice.set_secret(secret_id="s1", data=b"z" * 11)
        assert await alice.get_secret(secret_id="s1") == b"x" * 10
        await alice.delete_user_secret(id="s2")
        await alice.set_secret(secret_id="s3", data=b"")

    run(scenario())


def test_the_person_is_not_asked_for_a_credential_their_secrets_have_no_room_for():
    async def scenario():
        with running_provider() as provider:
            service = make_service(max_secrets_per_participant=1)
            agent, alice = room(service)
            await alice.set_secret(secret_id="api-key", data=b"x")
            with pytest.raises(errors.QuotaExceeded):
                await agent.request_oauth_token(
                    client_id="mailbot-app", authorization_endpoint=provider.authorization_endpoint,
                    token_endpoint=provider.token_endpoint, from_participant_id="alice",
                    redirect_uri="https://app.example.com/oauth/callback")
            assert len(service.registry) == 0
            assert provider.token_requests == []

    run(scenario())


def test_the_default_limits_refuse_long_before_a_thousand_64_kib_secrets():
    service = make_service()
    assert service.max_secrets_per_participant == 256
    assert service.max_secret_bytes_per_participant == 16 * 1024 * 1024
    with pytest.raises(errors.InvalidInput):
        make_service(max_secrets_per_participant=0)
