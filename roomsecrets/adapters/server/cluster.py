"""Cluster mode: any node takes any callback and any answer.

A pending request lives in the memory of the node that opened it. Behind a load
balancer, the provider's redirect to ``/oauth/callback`` (or a person's
``provide_oauth_authorization``) may reach another node. In cluster mode
(``serve --node-url URL``) that node forwards it to the one holding the request.

How a node knows which node holds a request, without trusting what it is told:

* Every request id and OAuth ``state`` a node issues is ``NODE.RANDOM.MAC``:
  the node's id, 128 random bits (the value stays unguessable, RFC 6749 §10.10),
  and an HMAC-SHA256 of both under a key every node derives from the shared
  participant-token key (:func:`bound_value`). A node reads the id back only
  when the MAC verifies (:meth:`ClusterNode.node_of`): a node id an attacker
  writes into a state is refused (400) before anything is looked up or sent.
* Nodes find each other through the store they share: each node writes a record
  (its id and URL) under the server's reserved name when it starts, and deletes
  it when it stops (:class:`ClusterNode`). Whether it is up is learned by
  calling it.
* Node-to-node calls carry a second derived key (``X-RoomSecrets-Node``),
  compared in constant time, and a timeout. Nothing secret goes in a URL: a
  forwarded callback's code travels in a POST body.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Optional

from ...core.errors import InvalidInput, StoreError, VersionConflict
from ...core.inputs import RESERVED_PREFIX
from ...core.ports import SecretKey, SecretStore

__all__ = [
    "NODE_HEADER",
    "ClusterNode",
    "NodeRecord",
    "bound_value",
    "check_node_id",
    "derive_keys",
]

#: The header a node-to-node call carries: the shared node key.
NODE_HEADER = "X-RoomSecrets-Node"
#: Where node records are kept: the server's reserved name (no participant or room
#: can have it), shared by every node on the store.
_CLUSTER = RESERVED_PREFIX + "cluster"
_NODE_RECORD_TYPE = "application/vnd.roomsecrets.node+json"
_NODE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
#: 128 bits of MAC, base64url: as hard to guess as the random part.
_MAC_BYTES = 16
#: How long a node record read from the store is trusted (a node that just started
#: is found at most this late; one that stopped gets calls that fail to connect).
_FIND_TTL = 5.0


def check_node_id(node_id: object) -> str:
    """1-32 of ``a-z0-9-``, starting with a letter or digit: it goes into every state."""
    if not isinstance(node_id, str) or not _NODE_ID.fullmatch(node_id):
        raise InvalidInput("a node id is 1-32 characters of a-z, 0-9 and '-' (not first)")
    return node_id


@dataclass(frozen=True)
class ClusterKeys:
    """The two keys every node derives from the participant-token key."""

    state: bytes
    node: str

    def __repr__(self) -> str:
        return "ClusterKeys(<hidden>)"


def derive_keys(jwt_key: bytes) -> ClusterKeys:
    """Separate keys for binding states and for node-to-node calls (HMAC as a KDF,
    one label each: neither reveals the other, nor the token key)."""
    state = hmac.new(jwt_key, b"roomsecrets cluster state v1", hashlib.sha256).digest()
    node = hmac.new(jwt_key, b"roomsecrets cluster node v1", hashlib.sha256).digest()
    return ClusterKeys(state=state, node=base64.urlsafe_b64encode(node).decode().rstrip("="))


def _mac(key: bytes, node_id: str, random: str) -> str:
    digest = hmac.new(key, f"{node_id}.{random}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode().rstrip("=")


def bound_value(
    key: bytes, node_id: str, token_urlsafe: Callable[[int], str] = secrets.token_urlsafe
) -> Callable[[int], str]:
    """A ``token_urlsafe`` for the pending registry whose values name ``node_id``,
    bound by a MAC: ``NODE.RANDOM.MAC``."""

    def draw(nbytes: int) -> str:
        random = token_urlsafe(nbytes)
        return f"{node_id}.{random}.{_mac(key, node_id, random)}"

    return draw


@dataclass(frozen=True)
class NodeRecord:
    node_id: str
    url: str
    started_at: float


class ClusterNode:
    """This node in the cluster: its record in the store, and where the others are."""

    def __init__(
        self,
        *,
        node_id: str,
        node_url: str,
        jwt_key: bytes,
        store: SecretStore,
        clock: Callable[[], float] = time.time,
        timeout: float = 45.0,
    ) -> None:
        self.node_id = check_node_id(node_id)
        if not isinstance(node_url, str) or not node_url.startswith(("http://", "https://")):
            raise InvalidInput("--node-url must be an http or https URL")
        self.node_url = node_url.rstrip("/")
        self.keys = derive_keys(jwt_key)
        self._store = store
        self._clock = clock
        self._version: Optional[int] = None
        self._found: dict[str, tuple[Optional[NodeRecord], float]] = {}
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
            0 < timeout <= 600
        ):
            raise InvalidInput("the node timeout must be more than 0 and at most 600 seconds")
        #: How long a call to another node may take: a browser waits for it, and the
        #: holder's own code exchange may take its provider's 30 s timeout.
        self.timeout = float(timeout)

    def token_urlsafe(self, token_urlsafe: Callable[[int], str] = secrets.token_urlsafe
                      ) -> Callable[[int], str]:
        """Request ids and states that name this node (see :func:`bound_value`)."""
        return bound_value(self.keys.state, self.node_id, token_urlsafe)

    def node_of(self, value: object) -> Optional[str]:
        """The node id ``value`` (a request id or state) names, if its MAC verifies;
        None for a value that names none or whose MAC does not verify."""
        if not isinstance(value, str) or len(value) > 1024:
            return None
        parts = value.split(".")
        if len(parts) != 3 or not _NODE_ID.fullmatch(parts[0]):
            return None
        expected = _mac(self.keys.state, parts[0], parts[1])
        if not hmac.compare_digest(expected.encode(), parts[2].encode()):
            return None
        return parts[0]

    def authentic(self, header: Optional[str]) -> bool:
        """True when a node-to-node call carries the shared node key."""
        return header is not None and hmac.compare_digest(
            header.encode(), self.keys.node.encode()
        )

    # --- the node records in the store -------------------------------------------

    @staticmethod
    def _key(node_id: str) -> SecretKey:
        return SecretKey(room=_CLUSTER, owner=_CLUSTER, secret_id=f"node-{node_id}")

    async def announce(self) -> None:
        """Write this node's record, once, at start.

        It is not rewritten while the node runs: every write of a Secrets Manager
        secret keeps a version for 24 hours, and a heartbeat would run into that
        quota. Whether the node is up is learned by calling it (a refused or
        timed-out call is ``node_unreachable``); a clean stop deletes the record.
        """
        record = json.dumps(
            {"node_id": self.node_id, "url": self.node_url, "started_at": self._clock()}
        ).encode()
        written = await self._store.put(
            self._key(self.node_id), type=_NODE_RECORD_TYPE, name=self.node_url, data=record
        )
        self._version = written.version

    async def find(self, node_id: str) -> Optional[NodeRecord]:
        """The record of node ``node_id``; None when it has none (it stopped, or never
        ran). Kept for a few seconds: a value that names a node (anyone who saw one may
        send it again and again) costs one store read per node per few seconds, not
        one per request."""
        now = self._clock()
        cached = self._found.get(node_id)
        if cached is not None and cached[1] <= now < cached[1] + _FIND_TTL:
            return cached[0]
        record = await self._read(node_id)
        if len(self._found) >= 1024:
            self._found.clear()  # bounded; node ids come only from MAC-checked values
        self._found[node_id] = (record, now)
        return record

    async def _read(self, node_id: str) -> Optional[NodeRecord]:
        found = await self._store.get(self._key(node_id))
        if found is None or found.type != _NODE_RECORD_TYPE:
            return None
        try:
            data = json.loads(found.data)
            return NodeRecord(
                node_id=str(data["node_id"]), url=str(data["url"]),
                started_at=float(data["started_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    async def start(self) -> None:
        await self.announce()

    async def stop(self) -> None:
        """Delete the record: requests held here end with us."""
        with contextlib.suppress(StoreError, VersionConflict):
            await self._store.delete(self._key(self.node_id), expected_version=self._version)
