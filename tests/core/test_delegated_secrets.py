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


def test_the_delegate_lists_what_each_owner_delegated_to_it_and_nothing_else():
    async def scenario():
        service = make_service()
        agent, alice = room(service)
        bob = service.connect("bob")
        await alice.set_secret(secret_id="for-agent", data=b"k1", delegated_to="agent-1",
                               name="Mail key")
        await alice.set_secret(secret_id="mine", data=b"private")
        await alice.set_secret(secret_id="for-bob", data=b"b", delegated_to="bob")
        await bob.set_secret(secret_id="also", data=b"k2", delegated_to="agent-1",
                             type="text/plain")
        await agent.set_secret(secret_id="agents-own", data=b"x")
        listed = await agent.list_delegated_secrets()
        assert [(s.delegated_by, s.id, s.type, s.name, s.delegated_to) for s in listed] == [
            ("alice", "for-agent", "application/octet-stream", "Mail key", "agent-1"),
            ("bob", "also", "text/plain", None, "agent-1"),
        ]
        (event,) = [e for e in service.audit.events if e.action == "secret.list_delegated"]
        assert event.actor == "agent-1"
        # The owner still sees it among its own, with no delegated_by.
        owned = {(s.id, s.delegated_to, s.delegated_by) for s in await alice.list_user_secrets()}
        assert ("for-agent", "agent-1", None) in owned
        # The delegate's own list is only its own; a stranger sees nothing.
        assert [s.id for s in await agent.list_user_secrets()] == ["agents-own"]
        assert await service.connect("mallory").list_delegated_secrets() == []
        # A delete takes it out of the delegate's list at once.
        await alice.delete_user_secret(id="for-agent", delegated_to="agent-1")
        assert [s.id for s in await agent.list_delegated_secrets()] == ["also"]

    asyncio.run(scenario())


def test_a_store_without_list_delegated_gets_a_typed_error_naming_the_missing_method():
    class OldStore:
        """A custom store written before ``list_delegated`` existed."""

        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            if name == "list_delegated":
                raise AttributeError(name)
            return getattr(self._inner, name)

    async def scenario():
        from roomsecrets.core.memory_store import MemoryStore

        service = make_service(store=OldStore(MemoryStore()))
        agent, _ = room(service)
        with pytest.raises(errors.StoreError, match=r"has no list_delegated\(room, delegated_to\)"):
            await agent.list_delegated_secrets()

    asyncio.run(scenario())
