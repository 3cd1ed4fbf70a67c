"""The cluster's state binding and node records (``adapters/server/cluster.py``):
what a node trusts in a state it did not issue, and what it keeps in the store."""

from __future__ import annotations

import asyncio
import secrets

import pytest

pytest.importorskip("aiohttp")

from roomsecrets import MemoryStore
from roomsecrets.adapters.server.cluster import ClusterNode, check_node_id, derive_keys
from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.pending.registry import PendingRegistry

KEY = secrets.token_bytes(32)


def node(node_id: str = "node-a", key: bytes = KEY, store=None, clock=None) -> ClusterNode:
    extra = {} if clock is None else {"clock": clock}
    return ClusterNode(node_id=node_id, node_url="http://127.0.0.1:1", jwt_key=key,
                       store=store or MemoryStore(), **extra)


def test_a_bound_value_names_its_node_and_stays_unguessable():
    a = node()
    draw = a.token_urlsafe()
    values = {draw(16) for _ in range(200)}
    assert len(values) == 200
    for value in values:
        assert a.node_of(value) == "node-a"
        name, random, mac = value.split(".")
        assert name == "node-a" and len(random) >= 22 and len(mac) == 22
        assert len(value) <= 128  # a request id's limit


def test_a_node_id_written_into_a_state_is_never_trusted():
    a = node()
    value = a.token_urlsafe()(16)
    _, random, mac = value.split(".")
    for forged in (f"node-b.{random}.{mac}", f"node-a.{random}x.{mac}",
                   f"node-a.{random}.{mac[:-1]}B", "node-a.x.y", "node-a", "", "a.b.c.d",
                   "NODE-A." + random + "." + mac, "\ud800.x.y", None, 5, "x" * 5000):
        assert a.node_of(forged) is None
    # Another cluster (another key) does not read our values, nor we theirs.
    assert node(key=secrets.token_bytes(32)).node_of(value) is None


def test_the_registry_accepts_bound_values_as_ids_and_states():
    registry = PendingRegistry(clock=lambda: 0.0, token_urlsafe=node().token_urlsafe())
    pending = registry.create(
        requester="agent", target="alice", client_id="c",
        authorization_endpoint="https://as/a", token_endpoint="https://as/t",
        redirect_uri="https://r/cb", scopes=(), code_verifier=None, client_secret=None,
        timeout=60, build_authorization_url=lambda r: "https://as/a?state=" + r.oauth_state,
        waiter=lambda outcome: None,
    )
    assert pending.request_id.startswith("node-a.") and pending.oauth_state.startswith("node-a.")
    assert registry.find_by_oauth_state(pending.oauth_state) is pending


def test_the_derived_keys_differ_from_each_other_and_hide_the_token_key():
    keys = derive_keys(KEY)
    assert keys.state != keys.node.encode() and KEY.hex() not in repr(keys)
    assert derive_keys(KEY) == keys and derive_keys(b"x" * 32) != keys


def test_node_ids_are_short_and_plain():
    for good in ("a", "node-1", "n" * 32):
        assert check_node_id(good) == good
    for bad in ("", "-a", "A", "a.b", "n" * 33, "a/b", None):
        with pytest.raises(InvalidInput):
            check_node_id(bad)


def test_a_node_record_is_written_once_at_start_and_gone_when_it_stops():
    async def scenario():
        store = MemoryStore()
        a = node(store=store, clock=lambda: 1000.0)
        b = node("node-b", store=store)
        await a.start()
        found = await b.find("node-a")
        assert found is not None and found.url == "http://127.0.0.1:1"
        record = await store.get(a._key("node-a"))
        await asyncio.sleep(0.05)
        # Not rewritten while it runs (Secrets Manager keeps every version for a day).
        assert (await store.get(a._key("node-a"))).version == record.version
        await a.stop()
        later = node("node-c", store=store)  # b keeps what it read for a few seconds
        assert await later.find("node-a") is None
        assert await later.find("never-ran") is None

    asyncio.run(scenario())
