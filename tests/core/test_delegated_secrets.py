"""A generic secret delegated to someone: the owner reads it with ``delegated_to``, the
delegate with ``delegated_by``; nothing else of the owner's is reachable that way."""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from tests.core.service_kit import make_service, room


def test_the_owner_and_the_delegate_each_read_a_delegated_secret():
    async def scenario():
        service = make_service()
        agent, alice = room(service)
        bob = service.connect("bob")
        await alice.set_secret(secret_id="for-agent", data=b"k1", delegated_to="agent-1")
        await alice.set_secret(secret_id="mine", data=b"private")
        await alice.set_secret(secret_id="for-bob", data=b"b", delegated_to="bob")
        # The owner names the delegate; without it, it is another (absent) secret.
        assert await alice.get_secret(secret_id="for-agent", delegated_to="agent-1") == b"k1"
        assert await alice.get_secret(secret_id="for-agent") is None
        # The delegate names the owner.
        assert await agent.get_secret(secret_id="for-agent", delegated_by="alice") == b"k1"
        (event,) = [e for e in service.audit.events if e.action == "secret.read_delegated"]
        assert (event.actor, event.detail("owner")) == ("agent-1", "alice")
        # Nothing else of alice's: not her own secret, not one delegated to bob.
        assert await agent.get_secret(secret_id="mine", delegated_by="alice") is None
        assert await agent.get_secret(secret_id="for-bob", delegated_by="alice") is None
        assert await bob.get_secret(secret_id="for-agent", delegated_by="alice") is None
        with pytest.raises(errors.InvalidInput, match="not both"):
            await agent.get_secret(secret_id="for-agent", delegated_by="alice",
                                   delegated_to="x")

    asyncio.run(scenario())
