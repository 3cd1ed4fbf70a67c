"""The store contract kit: check any :class:`~roomsecrets.core.ports.SecretStore`.

Subclass :class:`StoreContract` in a pytest module and say how to build your store;
pytest then runs every rule a store must follow against it, including a Hypothesis
state machine that compares the store with a plain dict after every step that
touches a record, and at the end of every example::

    from roomsecrets.testing import StoreContract

    class TestMyStore(StoreContract):
        async def make_store(self, clock):
            return MyStore(clock=clock)

        async def close_store(self, store):   # optional
            await store.aclose()

Every check runs in its own event loop through :func:`asyncio.run`, so no pytest
plugin is needed. The checks raise :class:`AssertionError` when the store breaks a
rule and never look at or print secret data beyond their own test bytes.

The rules (the same ones :class:`~roomsecrets.core.memory_store.MemoryStore`
documents): a version is a positive int that names one write of one key forever,
never returned twice for a key, not even after a delete and a new write (they need
not be consecutive); ``expected_version`` ``None``/``0``/``n`` is
unconditional/must-not-exist/must-be-``n``, and a mismatch raises
:class:`~roomsecrets.core.errors.VersionConflict` and changes nothing; a lease
belongs to its ``(name, holder)`` and is free once ``expires_at <= now`` by the
store's clock; renewing a lease that is not held raises
:class:`~roomsecrets.core.errors.LeaseLost`; releasing one someone else holds does
nothing.

Importing this module needs only the standard library; Hypothesis is imported when
the state machine is built (:func:`store_state_machine`, ``test_agrees_with_model``).

**A development OAuth provider.** :class:`OAuthProvider` (with
:class:`CannedResponse`, :class:`TokenQuirk`, :func:`approve` and
:func:`authorization_redirect`) is a strict OAuth 2.0 authorization server on
127.0.0.1 for your own tests and the demo: PKCE S256 required, rotating refresh
tokens, a replayed refresh token revokes the grant, failures scripted with
``queue_token_responses``. It publishes RFC 8414 metadata at its ``issuer`` (so
``request_oauth_token(issuer=provider.issuer, ...)`` needs no endpoints), has an
RFC 7009 revocation endpoint that really revokes (failures scripted with
``queue_revocation_responses``), and puts the RFC 9207 ``iss`` on its redirects.
Standard library only; loaded on first use::

    from roomsecrets.testing import OAuthProvider, approve

    with OAuthProvider() as provider:
        provider.register_client("app", redirect_uris=["https://app.example/cb"])
        # service.connect(...).request_oauth_token(client_id="app",
        #     authorization_endpoint=provider.authorization_endpoint,
        #     token_endpoint=provider.token_endpoint, redirect_uri="https://app.example/cb", ...)
        # the person: code, state = approve(prompt.authorization_url)
        provider.refresh_posts  # counters, to check what your code sent
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Optional, TypeVar, Union

from .core.errors import LeaseLost, VersionConflict
from .core.inputs import MAX_NAME, MAX_SECRET_BYTES, MAX_TYPE
from .core.ports import Lease, SecretKey, SecretRecord, SecretStore

if TYPE_CHECKING:
    from hypothesis import settings as Settings
    from hypothesis.stateful import MultipleResults, RuleBasedStateMachine

    from .dev_provider import (
        ApprovalError,
        CannedResponse,
        OAuthProvider,
        TokenQuirk,
        approve,
        authorization_redirect,
    )

__all__ = [
    "ApprovalError",
    "CannedResponse",
    "FakeClock",
    "OAuthProvider",
    "StoreCloser",
    "StoreContract",
    "StoreFactory",
    "TokenQuirk",
    "approve",
    "authorization_redirect",
    "store_state_machine",
]

# PEP 562: the provider (an HTTP server) loads on first use, so importing this
# module for the store contract stays light.
_DEV_PROVIDER_NAMES = frozenset(
    {
        "ApprovalError",
        "CannedResponse",
        "OAuthProvider",
        "TokenQuirk",
        "approve",
        "authorization_redirect",
    }
)


# The pending-request kit (roomsecrets/pending_kit.py) loads on first use too, and
# imports Hypothesis only when a machine or a strategy is built.
_PENDING_KIT_NAMES = frozenset(
    {"PendingModel", "pending_input", "pending_inputs", "pending_state_machine"}
)
__all__ += ["PendingModel", "pending_input", "pending_inputs", "pending_state_machine"]
if TYPE_CHECKING:
    from .pending_kit import PendingModel as PendingModel
    from .pending_kit import pending_input as pending_input
    from .pending_kit import pending_inputs as pending_inputs
    from .pending_kit import pending_state_machine as pending_state_machine


def __getattr__(name: str) -> Any:
    if name in _DEV_PROVIDER_NAMES:
        from . import dev_provider

        return getattr(dev_provider, name)
    if name in _PENDING_KIT_NAMES:
        from . import pending_kit

        return getattr(pending_kit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_T = TypeVar("_T")
_E = TypeVar("_E", bound=BaseException)


class FakeClock:
    """A clock that moves only when told; pass it as a store's ``clock``.

    >>> clock = FakeClock(start=100.0)
    >>> clock.advance(2.5)
    >>> clock()
    102.5
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        #: The current time in seconds since the epoch.
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError("a FakeClock only moves forward")
        self.now += seconds

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r})"


#: Builds a fresh, empty store that reads time from the given clock.
StoreFactory = Callable[[FakeClock], Awaitable[SecretStore]]
#: Releases whatever a store built by a :data:`StoreFactory` holds.
StoreCloser = Callable[[SecretStore], Awaitable[None]]
_Scenario = Callable[[SecretStore, FakeClock], Awaitable[None]]
_Check = Callable[[Any, SecretStore, FakeClock], Coroutine[Any, Any, None]]

_ROOM = "room-1"
_TYPE = "application/octet-stream"
# The longest type and name a caller may set (core/inputs.py), in the characters
# UTF-8 takes most bytes for (four each; a type must hold a "/"): 1,021 and 1,024 bytes.
_WIDE = "\U0001f511"  # 🔑
_LONGEST_TYPE = _WIDE * (MAX_TYPE // 2) + "/" + _WIDE * (MAX_TYPE - MAX_TYPE // 2 - 1)
_LONGEST_NAME = _WIDE * MAX_NAME


def _key(
    secret_id: str = "secret",
    *,
    owner: str = "alice",
    room: str = _ROOM,
    delegated_to: Optional[str] = None,
) -> SecretKey:
    return SecretKey(room=room, owner=owner, secret_id=secret_id, delegated_to=delegated_to)


async def _expect(error: type[_E], awaitable: Awaitable[object], what: str) -> _E:
    """Await ``awaitable`` and return the ``error`` it raised; fail if it did not raise."""
    try:
        result = await awaitable
    except error as exc:
        return exc
    raise AssertionError(f"{what}: expected {error.__name__}, got {result!r}")


async def _succeeds(awaitable: Awaitable[_T], what: str) -> _T:
    """Await ``awaitable``; a VersionConflict or LeaseLost from it breaks the contract."""
    try:
        return await awaitable
    except (VersionConflict, LeaseLost) as exc:
        raise AssertionError(f"{what}: unexpected {type(exc).__name__}: {exc}") from exc


def _same_record(got: Optional[SecretRecord], want: Optional[SecretRecord], what: str) -> None:
    # SecretRecord's repr hides data, so say which field differs without showing bytes.
    if got == want:
        return
    detail = ""
    if got is not None and want is not None and got.data != want.data:
        detail = f" (data differs: {len(got.data)} bytes vs {len(want.data)} expected)"
    raise AssertionError(f"{what}: got {got!r}, expected {want!r}{detail}")


def _check_version(version: object, what: str) -> None:
    if type(version) is not int or version <= 0:
        raise AssertionError(f"{what}: version {version!r} is not a positive int")


def _wrong_versions(current: int, *earlier: int) -> list[int]:
    """Versions a compare-and-swap must refuse: earlier ones and a few near misses."""
    near = (current - 1, current + 1, current + 7)
    return sorted({v for v in (*earlier, *near) if v > 0 and v != current})


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Shut ``loop`` down the way :func:`asyncio.run` does, then close it."""
    try:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def _contract_check(check: _Check) -> Callable[[StoreContract], None]:
    """Turn ``async def test_x(self, store, clock)`` into a plain pytest test method."""

    def test(self: StoreContract) -> None:
        self.run_with_store(lambda store, clock: check(self, store, clock))

    # Not functools.wraps: pytest would follow __wrapped__ and ask for fixtures
    # named ``store`` and ``clock``.
    test.__name__ = check.__name__
    test.__qualname__ = check.__qualname__
    test.__doc__ = check.__doc__
    return test


class StoreContract:
    """Pytest test methods every :class:`SecretStore` must pass.

    Subclass it (the subclass name must start with ``Test``) and override
    :meth:`make_store`; override :meth:`close_store` when the store holds
    resources. Each test gets a fresh store and a fresh :class:`FakeClock`.
    Each ``test_*`` method can also be called directly; it raises
    :class:`AssertionError` when the store breaks the rule it checks.
    """

    #: Tasks the concurrency checks run at once.
    concurrent_tasks: ClassVar[int] = 16

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The kit once let a store test less data than callers may set; a store
        # that cannot hold the documented limit breaks the contract, so say so.
        if "large_data_size" in vars(cls):
            raise TypeError(
                f"{cls.__name__} sets large_data_size, which StoreContract no longer "
                f"reads: every store must hold MAX_SECRET_BYTES ({MAX_SECRET_BYTES}) "
                "bytes of data, and the kit always checks exactly that"
            )

    async def make_store(self, clock: FakeClock) -> SecretStore:
        """Return a new, empty store whose leases use ``clock``."""
        raise NotImplementedError("subclasses of StoreContract must override make_store")

    async def close_store(self, store: SecretStore) -> None:
        """Release ``store``'s resources; called once per store, in its event loop."""

    def state_machine_settings(self) -> Settings:
        """Hypothesis settings for ``test_agrees_with_model``.

        200 examples, or 1000 when the ``CI`` environment variable is set.
        """
        from hypothesis import settings

        return settings(max_examples=1000 if os.environ.get("CI") else 200, deadline=None)

    def run_with_store(self, scenario: _Scenario) -> None:
        """Run ``scenario(store, clock)`` in a new event loop with a fresh store."""

        async def main() -> None:
            clock = FakeClock()
            store = await self.make_store(clock)
            try:
                await scenario(store, clock)
            finally:
                await self.close_store(store)

        asyncio.run(main())

    # --- records -------------------------------------------------------------

    @_contract_check
    async def test_get_missing_returns_none(self, store: SecretStore, clock: FakeClock) -> None:
        """``get`` of a key never written returns None."""
        got = await store.get(_key("never-written"))
        assert got is None, f"get of a missing key returned {got!r}"

    @_contract_check
    async def test_put_then_get_round_trips(self, store: SecretStore, clock: FakeClock) -> None:
        """``put`` returns the stored record with a positive version; ``get`` returns the same."""
        key = _key("mail")
        put = await store.put(key, type="oauth_token", name="Mail", data=b"token-1")
        _check_version(put.version, "put result")
        want = SecretRecord(
            key=key, type="oauth_token", name="Mail", data=b"token-1", version=put.version
        )
        _same_record(put, want, "put result")
        _same_record(await store.get(key), want, "get after put")
        unnamed = _key("unnamed")
        empty = await store.put(unnamed, type=_TYPE, name=None, data=b"")
        _same_record(
            await store.get(unnamed),
            SecretRecord(key=unnamed, type=_TYPE, name=None, data=b"", version=empty.version),
            "get of an empty, unnamed secret",
        )

    @_contract_check
    async def test_every_put_gets_a_new_version(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """Every write of the same key returns a version that key never had; writing
        another key leaves it unchanged."""
        key = _key("counter")
        seen: set[int] = set()
        for index in range(1, 6):
            record = await store.put(key, type=_TYPE, name=None, data=b"v%d" % index)
            _check_version(record.version, f"put #{index}")
            assert record.version not in seen, f"put #{index} reused a version: {record!r}"
            seen.add(record.version)
        other = await store.put(_key("other"), type=_TYPE, name=None, data=b"x")
        _check_version(other.version, "put of another key")
        _same_record(
            await store.get(key),
            SecretRecord(key=key, type=_TYPE, name=None, data=b"v5", version=record.version),
            "get after five puts and a write of another key",
        )

    @_contract_check
    async def test_expected_version_zero_creates_only_new_keys(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """``expected_version=0`` creates a missing key and conflicts on an existing one."""
        key = _key("create-only")
        record = await _succeeds(
            store.put(key, type=_TYPE, name=None, data=b"first", expected_version=0),
            "put with expected_version=0 on a missing key",
        )
        _check_version(record.version, "create")
        conflict = await _expect(
            VersionConflict,
            store.put(key, type=_TYPE, name=None, data=b"second", expected_version=0),
            "put with expected_version=0 on an existing key",
        )
        assert conflict.expected == 0, f"VersionConflict.expected is {conflict.expected!r}"
        _same_record(await store.get(key), record, "get after the conflicting create")

    @_contract_check
    async def test_matching_expected_version_writes(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """``expected_version=n`` writes when the stored version is ``n``."""
        key = _key("cas")
        first = await store.put(key, type=_TYPE, name=None, data=b"one")
        second = await _succeeds(
            store.put(
                key, type="text/plain", name="renamed", data=b"two", expected_version=first.version
            ),
            "put with the current version",
        )
        assert second.version != first.version, f"the CAS write kept its version: {second!r}"
        want = SecretRecord(
            key=key, type="text/plain", name="renamed", data=b"two", version=second.version
        )
        _same_record(second, want, "put with the current version")
        _same_record(await store.get(key), want, "get after the CAS write")

    @_contract_check
    async def test_stale_expected_version_conflicts_and_changes_nothing(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """A stale or future ``expected_version`` raises VersionConflict and writes nothing."""
        key = _key("cas")
        old = await store.put(key, type=_TYPE, name=None, data=b"one")
        current = await store.put(key, type=_TYPE, name=None, data=b"two")
        for wrong in _wrong_versions(current.version, old.version):
            conflict = await _expect(
                VersionConflict,
                store.put(key, type=_TYPE, name="x", data=b"lost", expected_version=wrong),
                f"put with expected_version={wrong} when the version is {current.version}",
            )
            assert conflict.expected == wrong, f"VersionConflict.expected is {conflict.expected!r}"
            _same_record(await store.get(key), current, f"get after conflict on {wrong}")
        missing = _key("missing")
        await _expect(
            VersionConflict,
            store.put(missing, type=_TYPE, name=None, data=b"x", expected_version=1),
            "put with expected_version=1 on a missing key",
        )
        got = await store.get(missing)
        assert got is None, f"a conflicting put created {got!r}"

    @_contract_check
    async def test_delete_reports_whether_it_deleted(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """``delete`` returns True once, then False; the key is gone and others stay."""
        key, keep = _key("doomed"), _key("kept")
        await store.put(key, type=_TYPE, name=None, data=b"x")
        kept = await store.put(keep, type=_TYPE, name=None, data=b"y")
        assert await store.delete(key) is True, "delete of an existing key did not return True"
        got = await store.get(key)
        assert got is None, f"get after delete returned {got!r}"
        assert await store.delete(key) is False, "second delete did not return False"
        assert await store.delete(_key("never")) is False, "delete of a missing key not False"
        _same_record(await store.get(keep), kept, "another key after delete")

    @_contract_check
    async def test_delete_with_expected_version(self, store: SecretStore, clock: FakeClock) -> None:
        """CAS on delete: a wrong version conflicts and keeps the record; 0 on missing is False."""
        key = _key("cas-delete")
        old = await store.put(key, type=_TYPE, name=None, data=b"one")
        current = await store.put(key, type=_TYPE, name=None, data=b"two")
        for wrong in (0, *_wrong_versions(current.version, old.version)):
            conflict = await _expect(
                VersionConflict,
                store.delete(key, expected_version=wrong),
                f"delete with expected_version={wrong} when the version is {current.version}",
            )
            assert conflict.expected == wrong, f"VersionConflict.expected is {conflict.expected!r}"
            _same_record(await store.get(key), current, f"get after delete conflict on {wrong}")
        deleted = await _succeeds(
            store.delete(key, expected_version=current.version), "CAS delete"
        )
        assert deleted is True, "CAS delete with the current version did not delete"
        got = await store.get(key)
        assert got is None, f"get after CAS delete returned {got!r}"
        deleted = await _succeeds(
            store.delete(key, expected_version=0), "delete with expected_version=0 on a missing key"
        )
        assert deleted is False, "delete with expected_version=0 on a missing key must return False"
        await _expect(
            VersionConflict,
            store.delete(key, expected_version=current.version),
            "delete with the deleted record's version on a missing key",
        )

    @_contract_check
    async def test_versions_are_never_reused_after_delete(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """A key deleted and written again never gets a version it had before (ABA).

        So a compare-and-swap holding a version read before the delete conflicts
        with the new record instead of overwriting or deleting it, and
        ``expected_version=0`` creates the key again.
        """
        key = _key("reborn")
        seen: list[int] = []
        for cycle in range(4):
            for index in range(2):
                record = await _succeeds(
                    store.put(
                        key,
                        type=_TYPE,
                        name=None,
                        data=b"%d.%d" % (cycle, index),
                        expected_version=0 if index == 0 else None,
                    ),
                    f"write {index} of life {cycle} (the first with expected_version=0)",
                )
                _check_version(record.version, f"write {index} of life {cycle}")
                assert record.version not in seen, (
                    f"life {cycle} reused version {record.version} (earlier versions: {seen})"
                )
                seen.append(record.version)
            for stale in seen[:-1]:
                await _expect(
                    VersionConflict,
                    store.put(key, type=_TYPE, name=None, data=b"stale", expected_version=stale),
                    f"put expecting version {stale} from an earlier write or life",
                )
                await _expect(
                    VersionConflict,
                    store.delete(key, expected_version=stale),
                    f"delete expecting version {stale} from an earlier write or life",
                )
            _same_record(
                await store.get(key),
                SecretRecord(key=key, type=_TYPE, name=None, data=b"%d.1" % cycle,
                             version=seen[-1]),
                f"get in life {cycle} after stale compare-and-swaps",
            )
            assert await store.delete(key) is True, f"delete ending life {cycle}"

    @_contract_check
    async def test_list_returns_owners_records_in_room_in_order(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """``list(room, owner)`` returns exactly that owner's records there, sorted.

        Sorted by ``(secret_id, delegated_to)`` with ``delegated_to=None`` first.
        """
        assert await store.list(_ROOM, "alice") == [], "list of an empty store is not empty"
        written = []
        for secret_id, delegated_to in [
            ("b", "zed"),
            ("b", None),
            ("a", "bot"),
            ("c", None),
            ("b", "amy"),
        ]:
            written.append(
                await store.put(
                    _key(secret_id, delegated_to=delegated_to), type=_TYPE, name=None, data=b"x"
                )
            )
        await store.put(_key("a", owner="bob"), type=_TYPE, name=None, data=b"bob's")
        await store.put(_key("a", room="room-2"), type=_TYPE, name=None, data=b"elsewhere")
        listed = await store.list(_ROOM, "alice")
        order = [(r.key.secret_id, r.key.delegated_to) for r in listed]
        want = [("a", "bot"), ("b", None), ("b", "amy"), ("b", "zed"), ("c", None)]
        assert order == want, f"list order is {order}, expected {want}"
        by_key = {record.key: record for record in written}
        for record in listed:
            _same_record(record, by_key.get(record.key), "listed record")
        bobs = await store.list(_ROOM, "bob")
        assert [r.key for r in bobs] == [_key("a", owner="bob")], f"bob's list is {bobs!r}"
        assert await store.list(_ROOM, "carol") == [], "list of an owner with nothing not empty"

    @_contract_check
    async def test_list_delegated_returns_every_owners_records_for_that_delegate(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """``list_delegated(room, delegate)`` returns exactly the records in ``room``
        delegated to ``delegate``, whoever owns them, sorted by (owner, secret_id).

        Delegates whose names are prefixes, case variants or dotted forms of each
        other stay apart, and so do long ids (a store may hash long names).
        """
        assert await store.list_delegated(_ROOM, "bot") == [], "empty store lists something"
        long_id = "k" * 300
        for owner, secret_id, delegated_to in [
            ("carol", "z", "bot"),
            ("alice", "b", "bot"),
            ("alice", "a", "bot"),
            ("bob", long_id, "bot"),
            ("alice", "a", None),
            ("alice", "a", "Bot"),
            ("alice", "a", "bo"),
            ("alice", "a", "bot.x"),
            ("alice", "a", "x.bot"),
            ("bot", "own", None),
            ("dave", "bot", None),  # an id that is the delegate's name
        ]:
            await store.put(
                _key(secret_id, owner=owner, delegated_to=delegated_to),
                type=_TYPE, name="n", data=b"%s:%s" % (owner.encode(), secret_id.encode()),
            )
        await store.put(
            _key("a", owner="alice", room="room-2", delegated_to="bot"),
            type=_TYPE, name=None, data=b"elsewhere",
        )
        listed = await store.list_delegated(_ROOM, "bot")
        got = [(r.key.owner, r.key.secret_id) for r in listed]
        want = [("alice", "a"), ("alice", "b"), ("bob", long_id), ("carol", "z")]
        assert got == want, f"list_delegated is {got}, expected {want}"
        for record in listed:
            assert record.key.room == _ROOM and record.key.delegated_to == "bot", (
                f"list_delegated returned {record.key!r}"
            )
            assert record.data == b"%s:%s" % (
                record.key.owner.encode(), record.key.secret_id.encode()
            ), f"list_delegated returned the wrong data for {record.key!r}"
            _same_record(record, await store.get(record.key), "a record list_delegated returned")
        upper = await store.list_delegated(_ROOM, "Bot")
        assert [r.key for r in upper] == [_key("a", delegated_to="Bot")], f"'Bot': {upper!r}"
        assert await store.list_delegated(_ROOM, "nobody") == [], "a stranger sees records"
        await store.delete(_key("a", delegated_to="bot"))
        after = [(r.key.owner, r.key.secret_id) for r in await store.list_delegated(_ROOM, "bot")]
        assert after == want[1:], f"after a delete, list_delegated is {after}"

    @_contract_check
    async def test_delegated_to_distinguishes_keys(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """The same secret_id delegated to different participants is different secrets."""
        plain, to_bot = _key("mail"), _key("mail", delegated_to="bot")
        await store.put(plain, type=_TYPE, name=None, data=b"plain")
        await store.put(to_bot, type=_TYPE, name=None, data=b"bot")
        plain_record = await store.get(plain)
        await store.put(to_bot, type=_TYPE, name=None, data=b"bot-2")
        _same_record(await store.get(plain), plain_record, "the undelegated secret")
        assert await store.get(_key("mail", delegated_to="other")) is None, (
            "a key delegated to someone else exists"
        )
        await store.delete(plain)
        got = await store.get(to_bot)
        assert got is not None and got.data == b"bot-2", "delete hit the delegated secret"

    @_contract_check
    async def test_keys_are_opaque_strings(self, store: SecretStore, clock: FakeClock) -> None:
        """Keys differing by case, separators, dots or non-ASCII never collide."""
        keys = [
            _key("a"),
            _key("A"),
            _key("a/b"),
            _key("a_b"),
            _key("a%2Fb"),
            _key("a b"),
            _key("."),
            _key(".."),
            _key("ü-🔑"),
            _key("x" * 64),
            _key("a", delegated_to="b"),
            _key("a:b"),
            _key("a", owner="alice/a"),
            _key("a", room=f"{_ROOM}/alice"),
            _key("a", owner="x", room=f"{_ROOM}/alice"),
            _key("a", owner="alice/x", room=_ROOM),
        ]
        written = [
            await store.put(key, type=_TYPE, name=None, data=b"%d" % index)
            for index, key in enumerate(keys)
        ]
        for index, key in enumerate(keys):
            got = await store.get(key)
            _same_record(got, written[index], f"key {key!r} (collided with another key?)")

    @_contract_check
    async def test_all_byte_values_round_trip(self, store: SecretStore, clock: FakeClock) -> None:
        """Data with every byte value 0-255 comes back unchanged."""
        data = bytes(range(256)) + bytes(reversed(range(256)))
        key = _key("binary")
        await store.put(key, type=_TYPE, name=None, data=data)
        got = await store.get(key)
        assert got is not None and got.data == data, "binary data did not round-trip"
        assert type(got.data) is bytes, f"data came back as {type(got.data).__name__}"

    @_contract_check
    async def test_largest_allowed_secret_round_trips(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """The largest secret a caller may set comes back unchanged from ``get`` and
        ``list``: ``MAX_SECRET_BYTES`` (64 KiB) of data with the longest type and name
        (256 characters of four UTF-8 bytes each)."""
        data = bytes(index * 7 % 251 for index in range(MAX_SECRET_BYTES))
        key = _key("large")
        put = await store.put(key, type=_LONGEST_TYPE, name=_LONGEST_NAME, data=data)
        want = SecretRecord(
            key=key, type=_LONGEST_TYPE, name=_LONGEST_NAME, data=data, version=put.version
        )
        _same_record(put, want, "put of the largest allowed secret")
        _same_record(await store.get(key), want, "get of the largest allowed secret")
        listed = await store.list(_ROOM, "alice")
        assert len(listed) == 1, f"list returned {len(listed)} records, expected 1"
        _same_record(listed[0], want, "list of the largest allowed secret")

    @_contract_check
    async def test_reprs_do_not_show_data(self, store: SecretStore, clock: FakeClock) -> None:
        """Neither the store's repr nor its records' reprs show secret bytes."""
        marker = b"VERY-SECRET-TOKEN-4b1d"
        key = _key("hidden")
        put = await store.put(key, type="oauth_token", name=None, data=marker)
        got = await store.get(key)
        listed = await store.list(_ROOM, "alice")
        for what, value in [("store", store), ("put", put), ("get", got), ("list", listed)]:
            shown = repr(value)
            assert marker.decode() not in shown and repr(marker) not in shown, (
                f"repr of the {what} result shows the secret data"
            )

    @_contract_check
    async def test_concurrent_cas_writers_lose_no_updates(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """N tasks doing read-modify-write with CAS retries end with exactly N increments."""
        key = _key("counter")
        await store.put(key, type=_TYPE, name=None, data=b"0", expected_version=0)
        tasks = self.concurrent_tasks
        attempts_left = 100 * tasks * tasks

        async def increment() -> None:
            nonlocal attempts_left
            while attempts_left > 0:
                attempts_left -= 1
                record = await store.get(key)
                assert record is not None, "the counter disappeared"
                # Let the other writers read the same version before anyone writes.
                await asyncio.sleep(0)
                try:
                    await store.put(
                        key,
                        type=_TYPE,
                        name=None,
                        data=b"%d" % (int(record.data) + 1),
                        expected_version=record.version,
                    )
                except VersionConflict:
                    continue
                return
            raise AssertionError("CAS writers made no progress")

        await asyncio.gather(*(increment() for _ in range(tasks)))
        final = await store.get(key)
        assert final is not None, "the counter disappeared"
        assert final.data == b"%d" % tasks, f"{tasks} increments left the counter at {final.data!r}"

    # --- leases --------------------------------------------------------------

    @_contract_check
    async def test_lease_is_exclusive(self, store: SecretStore, clock: FakeClock) -> None:
        """While a lease is held, nobody else gets it; other names are independent."""
        lease = await store.acquire_lease("refresh", holder="h1", ttl=30)
        assert lease == Lease(name="refresh", holder="h1", expires_at=clock.now + 30), (
            f"acquire returned {lease!r}"
        )
        taken = await store.acquire_lease("refresh", holder="h2", ttl=30)
        assert taken is None, f"a held lease was given to another holder: {taken!r}"
        other = await store.acquire_lease("other", holder="h2", ttl=30)
        assert other is not None and other.holder == "h2", f"an unrelated lease: {other!r}"

    @_contract_check
    async def test_concurrent_acquirers_get_one_lease(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """N tasks racing for one lease: exactly one wins."""
        results = await asyncio.gather(
            *(
                store.acquire_lease("race", holder=f"h{index}", ttl=30)
                for index in range(self.concurrent_tasks)
            )
        )
        winners = [lease for lease in results if lease is not None]
        assert len(winners) == 1, f"{len(winners)} holders got the same lease: {winners!r}"

    @_contract_check
    async def test_same_holder_reacquiring_extends(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """Acquiring again as the same holder extends the lease to ``now + ttl``."""
        await store.acquire_lease("refresh", holder="h1", ttl=10)
        clock.advance(8)
        again = await store.acquire_lease("refresh", holder="h1", ttl=10)
        assert again == Lease(name="refresh", holder="h1", expires_at=clock.now + 10), (
            f"re-acquire returned {again!r}"
        )
        clock.advance(5)  # past the first expiry, before the second
        taken = await store.acquire_lease("refresh", holder="h2", ttl=10)
        assert taken is None, f"the extended lease was given away: {taken!r}"

    @_contract_check
    async def test_lease_expires_after_ttl(self, store: SecretStore, clock: FakeClock) -> None:
        """A lease is held until ``expires_at``; at ``expires_at`` another holder may take it."""
        await store.acquire_lease("refresh", holder="h1", ttl=10)
        clock.advance(9.5)
        early = await store.acquire_lease("refresh", holder="h2", ttl=10)
        assert early is None, f"the lease was taken before it expired: {early!r}"
        clock.advance(0.5)  # now == expires_at: free
        late = await store.acquire_lease("refresh", holder="h2", ttl=10)
        assert late == Lease(name="refresh", holder="h2", expires_at=clock.now + 10), (
            f"an expired lease could not be taken: {late!r}"
        )

    @_contract_check
    async def test_renew_extends_a_held_lease(self, store: SecretStore, clock: FakeClock) -> None:
        """``renew_lease`` moves ``expires_at`` to ``now + ttl`` and keeps others out."""
        lease = await store.acquire_lease("refresh", holder="h1", ttl=10)
        assert lease is not None, "could not acquire a free lease"
        clock.advance(9)
        renewed = await _succeeds(store.renew_lease(lease, ttl=10), "renew of a held lease")
        assert renewed == Lease(name="refresh", holder="h1", expires_at=clock.now + 10), (
            f"renew returned {renewed!r}"
        )
        clock.advance(5)
        taken = await store.acquire_lease("refresh", holder="h2", ttl=10)
        assert taken is None, f"a renewed lease was given away: {taken!r}"

    @_contract_check
    async def test_renew_of_a_lost_lease_raises_lease_lost(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """Renewing after expiry, after a takeover, or after release raises LeaseLost."""
        lease = await store.acquire_lease("refresh", holder="h1", ttl=10)
        assert lease is not None, "could not acquire a free lease"
        clock.advance(10)
        await _expect(LeaseLost, store.renew_lease(lease, ttl=10), "renew of an expired lease")
        thief = await store.acquire_lease("refresh", holder="h2", ttl=10)
        assert thief is not None, "could not take an expired lease"
        await _expect(LeaseLost, store.renew_lease(lease, ttl=10), "renew of a taken-over lease")
        again = await store.acquire_lease("refresh", holder="h1", ttl=10)
        assert again is None, f"a failed renew gave the lease back: {again!r}"
        await store.release_lease(thief)
        await _expect(LeaseLost, store.renew_lease(thief, ttl=10), "renew of a released lease")

    @_contract_check
    async def test_release_lets_another_holder_take_it(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """After ``release_lease`` another holder acquires at once."""
        lease = await store.acquire_lease("refresh", holder="h1", ttl=30)
        assert lease is not None, "could not acquire a free lease"
        await store.release_lease(lease)
        taken = await store.acquire_lease("refresh", holder="h2", ttl=30)
        assert taken is not None and taken.holder == "h2", f"released lease not free: {taken!r}"
        await store.release_lease(lease)  # releasing twice is harmless

    @_contract_check
    async def test_release_after_takeover_is_a_no_op(
        self, store: SecretStore, clock: FakeClock
    ) -> None:
        """Releasing a lease that expired and was taken over keeps the new holder's lease."""
        old = await store.acquire_lease("refresh", holder="h1", ttl=10)
        assert old is not None, "could not acquire a free lease"
        clock.advance(10)
        new = await store.acquire_lease("refresh", holder="h2", ttl=10)
        assert new is not None, "could not take an expired lease"
        await store.release_lease(old)
        taken = await store.acquire_lease("refresh", holder="h3", ttl=10)
        assert taken is None, f"a stale release freed the new holder's lease: {taken!r}"
        renewed = await _succeeds(store.renew_lease(new, ttl=10), "renew by the new holder")
        assert renewed.holder == "h2", f"the new holder lost its lease: {renewed!r}"

    # --- the model -----------------------------------------------------------

    def test_agrees_with_model(self) -> None:
        """A Hypothesis state machine finds no step where the store and a dict disagree."""
        from hypothesis.stateful import run_state_machine_as_test

        machine = store_state_machine(self.make_store, self.close_store)
        # Typed here: some Hypothesis releases leave this function unannotated.
        run: Callable[..., None] = run_state_machine_as_test
        run(machine, settings=self.state_machine_settings())


# --- the state machine ----------------------------------------------------------

#: Small universes so that keys, owners and leases collide often.
_ROOMS = ("r", "r/o")
_OWNERS = ("o/x", "x", "X")
_SECRET_IDS = ("a", "b", "a/b", "ü")
_DELEGATES = (None, "bot", "bot/2")
_TYPES = ("oauth_token", "application/octet-stream", "text/plain; charset=utf-8")
_NAMES = (None, "Mail", "Drive für Alice")
_LEASE_NAMES = ("refresh:a", "refresh:b")
_HOLDERS = ("h1", "h2", "h3")
# Binary fractions, so that now + ttl is exact and expiry boundaries are hit exactly.
_TTLS = (0.5, 1.0, 2.0, 10.0)
_STEPS = (0.25, 0.5, 1.0, 2.0, 10.0)
#: How a step picks ``expected_version``: none, 0, the current version, one the key
#: had before (an earlier write or an earlier life, the ABA case), or one never seen.
_EXPECTATIONS = ("none", "zero", "current", "stale", "ahead")


def _list_order(record: SecretRecord) -> tuple[str, bool, str]:
    # None sorts before any delegate.
    delegated_to = record.key.delegated_to
    return (record.key.secret_id, delegated_to is not None, delegated_to or "")


def _expected_version(how: str, current: int, seen: list[int], offset: int) -> Optional[int]:
    if how == "none":
        return None
    if how == "zero":
        return 0
    if how == "current":
        return current
    earlier = [version for version in seen if version != current]
    if how == "stale" and earlier:
        return earlier[-min(offset, len(earlier))]
    return max((current, *seen)) + offset


def store_state_machine(
    make_store: StoreFactory, close_store: Optional[StoreCloser] = None
) -> type[RuleBasedStateMachine]:
    """Return a Hypothesis state machine checking stores from ``make_store`` against a dict.

    Each example builds one store with a fresh :class:`FakeClock` inside its own
    event loop, runs every step in that loop (so stores may hold loop-bound
    resources such as sessions or locks), and at the end awaits
    ``close_store(store)`` and closes the loop. Steps are puts and deletes with
    right, wrong, ``None`` and ``0`` expected versions, gets, lists, lease
    acquire/renew/release and clock advances. After every step that touches a
    record (put, delete, get) and at the end of every example, every ``(room,
    owner)`` and ``(room, delegate)`` list must equal the model: a lease or clock
    step that broke a list is caught at the next record step or at the end, and
    a store whose lists cost round trips runs faster (the AWS one about 4x).

    Run it with ``run_state_machine_as_test(machine)`` or as
    ``TestMyStore = store_state_machine(make).TestCase``.
    """
    from hypothesis import strategies as st
    from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

    key_strategy = st.builds(
        SecretKey,
        room=st.sampled_from(_ROOMS),
        owner=st.sampled_from(_OWNERS),
        secret_id=st.sampled_from(_SECRET_IDS),
        delegated_to=st.sampled_from(_DELEGATES),
    )

    class StoreAgreesWithModel(RuleBasedStateMachine):
        keys: Bundle[SecretKey] = Bundle("keys")
        leases: Bundle[Lease] = Bundle("leases")

        def __init__(self) -> None:
            super().__init__()
            self.clock = FakeClock()
            self.records: dict[SecretKey, SecretRecord] = {}
            #: Every version each key was ever given, across deletes.
            self.versions: dict[SecretKey, list[int]] = {}
            self.lease_model: dict[str, Lease] = {}
            #: A record step ran since the lists were last compared.
            self.unchecked = False
            self.loop = asyncio.new_event_loop()
            try:
                self.store = self.loop.run_until_complete(make_store(self.clock))
            except BaseException:
                _close_loop(self.loop)
                raise

        def run(self, awaitable: Awaitable[_T]) -> _T:
            return self.loop.run_until_complete(awaitable)

        def teardown(self) -> None:
            try:
                # The lists once more, whatever the last steps were.
                self.unchecked = True
                self.lists_agree_with_model()
            finally:
                try:
                    if close_store is not None:
                        self.run(close_store(self.store))
                finally:
                    _close_loop(self.loop)

        # --- records ---------------------------------------------------------

        @rule(target=keys, key=key_strategy)
        def new_key(self, key: SecretKey) -> SecretKey:
            return key

        @rule(
            key=keys,
            type=st.sampled_from(_TYPES),
            name=st.sampled_from(_NAMES),
            data=st.binary(max_size=32),
            how=st.sampled_from(_EXPECTATIONS),
            offset=st.integers(min_value=1, max_value=3),
        )
        def put(
            self,
            key: SecretKey,
            type: str,
            name: Optional[str],
            data: bytes,
            how: str,
            offset: int,
        ) -> None:
            self.unchecked = True
            current = self.records.get(key)
            version = 0 if current is None else current.version
            seen = self.versions.setdefault(key, [])
            expected = _expected_version(how, version, seen, offset)
            write = self.store.put(key, type=type, name=name, data=data, expected_version=expected)
            if expected is not None and expected != version:
                conflict = self.run(_expect(VersionConflict, write, f"put expecting {expected}"))
                assert conflict.expected == expected, f"VersionConflict.expected {conflict!r}"
                return
            got = self.run(_succeeds(write, f"put expecting {expected}"))
            _check_version(got.version, "put")
            assert got.version not in seen, (
                f"put gave version {got.version}, which this key had before ({seen})"
            )
            want = SecretRecord(key=key, type=type, name=name, data=data, version=got.version)
            _same_record(got, want, "put")
            seen.append(got.version)
            self.records[key] = want

        @rule(
            key=keys,
            how=st.sampled_from(_EXPECTATIONS),
            offset=st.integers(min_value=1, max_value=3),
        )
        def delete(self, key: SecretKey, how: str, offset: int) -> None:
            self.unchecked = True
            current = self.records.get(key)
            version = 0 if current is None else current.version
            expected = _expected_version(how, version, self.versions.get(key, []), offset)
            removal = self.store.delete(key, expected_version=expected)
            if expected is not None and expected != version:
                conflict = self.run(
                    _expect(VersionConflict, removal, f"delete expecting {expected}")
                )
                assert conflict.expected == expected, f"VersionConflict.expected {conflict!r}"
                return
            deleted = self.run(_succeeds(removal, f"delete expecting {expected}"))
            assert deleted is (current is not None), f"delete returned {deleted!r}"
            self.records.pop(key, None)

        @rule(key=keys)
        def get(self, key: SecretKey) -> None:
            self.unchecked = True  # a read may fill a cache that a list then uses
            _same_record(self.run(self.store.get(key)), self.records.get(key), "get")

        async def list_everything(self) -> dict[tuple[str, str], list[SecretRecord]]:
            # One trip through the loop per check instead of one per list.
            return {
                (room, owner): await self.store.list(room, owner)
                for room in _ROOMS
                for owner in _OWNERS
            }

        @invariant()
        def lists_agree_with_model(self) -> None:
            # One invariant for both kinds of list: Hypothesis does not promise
            # an order between two, and the flag is cleared once both are done.
            if not self.unchecked:
                return
            self.owner_lists_agree_with_model()
            self.delegated_lists_agree_with_model()
            self.unchecked = False

        def owner_lists_agree_with_model(self) -> None:
            listed = self.run(self.list_everything())
            for (room, owner), got in listed.items():
                want = sorted(
                    (
                        record
                        for record in self.records.values()
                        if (record.key.room, record.key.owner) == (room, owner)
                    ),
                    key=_list_order,
                )
                assert [r.key for r in got] == [r.key for r in want], (
                    f"list({room!r}, {owner!r}) keys {[r.key for r in got]!r}, "
                    f"expected {[r.key for r in want]!r}"
                )
                for got_record, want_record in zip(got, want):
                    _same_record(got_record, want_record, f"list({room!r}, {owner!r})")

        async def list_every_delegate(self) -> dict[tuple[str, str], list[SecretRecord]]:
            return {
                (room, delegate): await self.store.list_delegated(room, delegate)
                for room in _ROOMS
                for delegate in _DELEGATES
                if delegate is not None
            }

        def delegated_lists_agree_with_model(self) -> None:
            listed = self.run(self.list_every_delegate())
            for (room, delegate), got in listed.items():
                want = sorted(
                    (
                        record
                        for record in self.records.values()
                        if (record.key.room, record.key.delegated_to) == (room, delegate)
                    ),
                    key=lambda record: (record.key.owner, record.key.secret_id),
                )
                assert [r.key for r in got] == [r.key for r in want], (
                    f"list_delegated({room!r}, {delegate!r}) keys {[r.key for r in got]!r}, "
                    f"expected {[r.key for r in want]!r}"
                )
                for got_record, want_record in zip(got, want):
                    _same_record(got_record, want_record, f"list_delegated({room!r}, {delegate!r})")

        # --- leases ----------------------------------------------------------

        def held(self, name: str, holder: str) -> bool:
            current = self.lease_model.get(name)
            return (
                current is not None
                and current.holder == holder
                and current.expires_at > self.clock.now
            )

        def free_for(self, name: str, holder: str) -> bool:
            current = self.lease_model.get(name)
            return (
                current is None or current.expires_at <= self.clock.now or current.holder == holder
            )

        @rule(
            target=leases,
            name=st.sampled_from(_LEASE_NAMES),
            holder=st.sampled_from(_HOLDERS),
            ttl=st.sampled_from(_TTLS),
        )
        def acquire(
            self, name: str, holder: str, ttl: float
        ) -> Union[Lease, MultipleResults[Lease]]:
            free = self.free_for(name, holder)
            got = self.run(self.store.acquire_lease(name, holder=holder, ttl=ttl))
            if not free:
                assert got is None, f"acquire of a held lease returned {got!r}"
                return multiple()
            want = Lease(name=name, holder=holder, expires_at=self.clock.now + ttl)
            assert got == want, f"acquire returned {got!r}, expected {want!r}"
            self.lease_model[name] = want
            return got

        @rule(
            target=leases,
            name=st.sampled_from(_LEASE_NAMES),
            holder=st.sampled_from(_HOLDERS),
        )
        def forge_lease(self, name: str, holder: str) -> Lease:
            # A lease value the store never granted: stores go by (name, holder).
            return Lease(name=name, holder=holder, expires_at=self.clock.now)

        @rule(lease=leases, ttl=st.sampled_from(_TTLS))
        def renew(self, lease: Lease, ttl: float) -> None:
            renewal = self.store.renew_lease(lease, ttl=ttl)
            if not self.held(lease.name, lease.holder):
                self.run(_expect(LeaseLost, renewal, f"renew of {lease!r}"))
                return
            want = Lease(name=lease.name, holder=lease.holder, expires_at=self.clock.now + ttl)
            got = self.run(_succeeds(renewal, f"renew of {lease!r}"))
            assert got == want, f"renew returned {got!r}, expected {want!r}"
            self.lease_model[lease.name] = want

        @rule(lease=leases)
        def release(self, lease: Lease) -> None:
            self.run(self.store.release_lease(lease))
            current = self.lease_model.get(lease.name)
            if current is not None and current.holder == lease.holder:
                del self.lease_model[lease.name]

        @rule(seconds=st.sampled_from(_STEPS))
        def advance_clock(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @rule(name=st.sampled_from(_LEASE_NAMES))
        def advance_clock_to_expiry(self, name: str) -> None:
            # Land exactly on expires_at, where the lease has just become free.
            current = self.lease_model.get(name)
            if current is not None and current.expires_at > self.clock.now:
                self.clock.advance(current.expires_at - self.clock.now)

    return StoreAgreesWithModel
