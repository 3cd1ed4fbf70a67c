"""Pinned: how the credential refresher saves, keeps and audits a rotated credential.

These drive ``CredentialRefresher`` directly, with a memory store, a token endpoint
that answers at once, an injected clock and an injected (recording) sleep.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

import pytest

from roomsecrets.core import refresh as refresh_module
from roomsecrets.core.audit import AuditEvent, RecordingAuditSink
from roomsecrets.core.credentials import OAUTH_TOKEN_TYPE, StoredCredential
from roomsecrets.core.errors import InvalidGrant, LeaseLost, RefreshBusy, StoreError
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.oauth.token_request import ClientCredentials
from roomsecrets.core.oauth.tokens import TokenSet
from roomsecrets.core.ports import Lease, SecretKey, SecretRecord
from roomsecrets.core.refresh import CredentialRefresher

NOW = 1_700_000_000.0
CLIENT = ClientCredentials(client_id="mail-app")
TOKEN_ENDPOINT = "https://login.example.com/token"


def credential(access: str = "at-old", *, expires_at: float = NOW - 1) -> StoredCredential:
    return StoredCredential(
        tokens=TokenSet(
            access_token=access,
            issued_at=NOW - 3600,
            refresh_token="rt-" + access,
            expires_at=expires_at,
            scopes=("mail.read",),
        ),
        client_id="mail-app",
        authorization_endpoint="https://login.example.com/auth",
        token_endpoint=TOKEN_ENDPOINT,
    )


SECRET_ID = credential().secret_id
KEY = SecretKey(room="room", owner="alice", secret_id=SECRET_ID, delegated_to="agent-1")


class Endpoint:
    """A token endpoint that issues ``at-1``, ``at-2``, ... (an hour long), after
    running ``before`` (a race the test stages) if one is set."""

    def __init__(self) -> None:
        self.posts = 0
        self.before: Optional[Any] = None
        self.block: Optional[asyncio.Event] = None
        self.error: Optional[Exception] = None
        self.every: Optional[Any] = None
        self.scopes: Optional[tuple[str, ...]] = None
        self.refresh_tokens: list[Optional[str]] = []

    async def refresh(self, *, token_endpoint: str, client: object, tokens: TokenSet) -> TokenSet:
        self.posts += 1
        self.refresh_tokens.append(tokens.refresh_token)
        if self.error is not None:
            raise self.error
        if self.block is not None:
            await self.block.wait()
        if self.before is not None:
            before, self.before = self.before, None
            await before()
        if self.every is not None:
            await self.every()
        return TokenSet(
            access_token=f"at-{self.posts}",
            issued_at=NOW,
            refresh_token=f"rt-{self.posts}",
            expires_at=NOW + 3600,
            scopes=tokens.scopes if self.scopes is None else self.scopes,
        )


class Store(MemoryStore):
    """A memory store whose ``put`` fails while ``failing`` is set, or runs ``before``
    (a racing write) first; it records the lease names asked for."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.failing = False
        self.failing_deletes = False
        self.before: Optional[Any] = None
        self.leases: list[str] = []

    async def put(self, key: SecretKey, **kw: Any) -> SecretRecord:
        if self.failing:
            raise StoreError("the store is down")
        if self.before is not None:
            before, self.before = self.before, None
            await before()
        return await super().put(key, **kw)

    async def delete(self, key: SecretKey, **kw: Any) -> bool:
        if self.failing_deletes:
            raise StoreError("the store is down")
        return await super().delete(key, **kw)

    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Optional[Lease]:
        self.leases.append(name)
        return await super().acquire_lease(name, holder=holder, ttl=ttl)


class Kit:
    def __init__(self) -> None:
        self.store = Store()
        self.endpoint = Endpoint()
        self.audit = RecordingAuditSink()
        self.sleeps: list[float] = []
        self.now = NOW
        self.refresher = CredentialRefresher(
            store=self.store,
            token_endpoint=self.endpoint,  # type: ignore[arg-type]
            clock=lambda: self.now,
            holder="process-1",
            audit=self.audit,
            sleep=self._sleep,
        )

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def token(
        self, key: SecretKey = KEY, scopes: Optional[list[str]] = None
    ) -> Optional[str]:
        return await self.refresher.access_token(
            key, client=CLIENT, token_endpoint=TOKEN_ENDPOINT, scopes=scopes, allow=lambda s: None
        )

    async def stored(self, key: SecretKey = KEY) -> SecretRecord:
        record = await self.store.get(key)
        assert record is not None
        return record

    def events(self, action: str) -> list[AuditEvent]:
        return [e for e in self.audit.events if e.action == action]


def run(scenario: Any) -> None:
    asyncio.run(scenario())


def test_a_refresh_keeps_the_records_name_and_audits_which_secret() -> None:
    async def scenario() -> None:
        kit = Kit()
        await kit.store.put(KEY, type=OAUTH_TOKEN_TYPE, name="Alice's mail",
                            data=credential().to_json())
        assert await kit.token() == "at-1"
        record = await kit.stored()
        assert record.name == "Alice's mail"
        assert StoredCredential.from_json(record.data).tokens.access_token == "at-1"
        (event,) = kit.events("credential.refreshed")
        assert (event.outcome, event.reason) == ("ok", "refreshed")
        assert event.details == (("owner", "alice"), ("secret_id", SECRET_ID))
        assert (event.actor, event.room, event.at) == ("agent-1", "room", NOW)

    run(scenario)


@pytest.mark.parametrize(
    "delegated_to, lease",
    [("agent-1", f"refresh/room/alice/{SECRET_ID}/agent-1"),
     (None, f"refresh/room/alice/{SECRET_ID}/")],
)
def test_the_refresh_lease_is_named_after_the_credential(
    delegated_to: Optional[str], lease: str
) -> None:
    # Other processes (other versions too) must agree on the name to share the lease.
    async def scenario() -> None:
        kit = Kit()
        key = SecretKey(room="room", owner="alice", secret_id=SECRET_ID,
                        delegated_to=delegated_to)
        await kit.refresher.save_new(key, credential())
        assert await kit.token(key) == "at-1"
        assert kit.store.leases == [lease]

    run(scenario)


def test_a_rotated_credential_the_store_refuses_is_handed_out_kept_and_saved_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        kit.store.failing = True
        with caplog.at_level(logging.WARNING, logger="roomsecrets.refresh"):
            assert await kit.token() == "at-1"
        assert [r.getMessage() for r in caplog.records] == [
            "could not save a refreshed credential (store_error); kept in memory"
        ]
        (failed,) = kit.events("credential.save_failed")
        assert (failed.outcome, failed.reason) == ("error", "store_error")
        # The provider did refresh it: that is audited too, after the failed save.
        assert [(e.action, e.reason) for e in kit.audit.events] == [
            ("credential.save_failed", "store_error"),
            ("credential.refreshed", "refreshed"),
        ]
        assert kit.sleeps == [0.1, 0.2, 0.4]  # three more tries, pauses doubling
        # Still down: the kept credential is used, not refreshed again.
        assert await kit.token() == "at-1"
        assert kit.endpoint.posts == 1
        kit.store.failing = False
        assert await kit.token() == "at-1"
        record = await kit.stored()
        assert record.name == "mail-app @ login.example.com"
        assert StoredCredential.from_json(record.data).tokens.access_token == "at-1"
        (saved,) = [e for e in kit.events("credential.refreshed") if e.reason != "refreshed"]
        assert (saved.outcome, saved.reason) == ("ok", "saved after a store failure")
        assert saved.detail("secret_id") == SECRET_ID

    run(scenario)


def test_a_kept_credential_gives_way_to_one_another_process_stored() -> None:
    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        kit.store.failing = True
        assert await kit.token() == "at-1"
        kit.store.failing = False
        # Another process (same store) stores a new approval meanwhile.
        other = credential("at-other", expires_at=NOW + 3600)
        await MemoryStore.put(kit.store, KEY, type=OAUTH_TOKEN_TYPE, name="n",
                              data=other.to_json())
        assert await kit.token() == "at-other"
        assert await kit.token() == "at-other"
        assert kit.endpoint.posts == 1

    run(scenario)


def test_a_new_approval_made_while_a_kept_credential_is_saved_wins() -> None:
    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        kit.store.failing = True
        assert await kit.token() == "at-1"
        kit.store.failing = False
        approval = credential("at-approved", expires_at=NOW + 3600)

        async def approve_meanwhile() -> None:
            await kit.refresher.save_new(KEY, approval)

        kit.store.before = approve_meanwhile  # lands between the read and the save
        assert await kit.token() in ("at-1", "at-approved")
        record = await kit.stored()
        assert StoredCredential.from_json(record.data).tokens.access_token == "at-approved"
        assert await kit.token() == "at-approved"
        assert not [e for e in kit.events("credential.refreshed") if e.reason != "refreshed"]

    run(scenario)


def test_a_refresh_overtaken_by_a_new_approval_is_discarded_and_audited() -> None:
    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        approval = credential("at-approved", expires_at=NOW + 3600)

        async def approve_meanwhile() -> None:
            await kit.refresher.save_new(KEY, approval)

        kit.endpoint.before = approve_meanwhile  # while the POST is out
        assert await kit.token() == "at-approved"
        (event,) = kit.events("credential.refresh_discarded")
        assert (event.outcome, event.reason) == ("error", "version_conflict")
        assert not kit.events("credential.refreshed")

    run(scenario)


def test_a_refresh_cancelled_after_its_callers_left_reports_nothing_to_the_loop() -> None:
    # The refresh outlives its callers; cancelled (as at shutdown), its end is not an error.
    reported: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx))
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        kit.endpoint.block = asyncio.Event()
        caller = asyncio.ensure_future(kit.token())
        while kit.endpoint.posts == 0:
            await asyncio.sleep(0)
        caller.cancel()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        for _ in range(3):
            await asyncio.sleep(0)

    run(scenario)
    assert reported == []


def test_the_lease_is_given_back_after_a_refresh() -> None:
    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        assert await kit.token() == "at-1"
        (name,) = kit.store.leases
        assert await kit.store.acquire_lease(name, holder="process-2", ttl=30) is not None
        assert not kit.events("credential.lease_release_failed")

    run(scenario)


def test_a_lease_that_cannot_be_given_back_is_audited_and_the_token_still_returned() -> None:
    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())

        async def release_lease(lease: Lease) -> None:
            raise StoreError("the store is down")

        kit.store.release_lease = release_lease  # type: ignore[method-assign]
        assert await kit.token() == "at-1"
        (event,) = kit.events("credential.lease_release_failed")
        assert (event.outcome, event.reason, event.actor) == ("error", "store_error", "agent-1")
        assert event.detail("secret_id") == SECRET_ID

    run(scenario)


def test_a_refresh_gives_up_when_another_process_holds_the_lease_until_the_deadline() -> None:
    async def scenario() -> None:
        kit = Kit()
        now = [0.0]
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            now[0] += seconds

        kit.refresher = CredentialRefresher(
            store=kit.store,
            token_endpoint=kit.endpoint,  # type: ignore[arg-type]
            clock=lambda: NOW,
            holder="process-1",
            audit=kit.audit,
            lease_poll=30.0,
            lease_wait=60.0,
            sleep=sleep,
            monotonic=lambda: now[0],
        )
        await kit.refresher.save_new(KEY, credential())
        name = f"refresh/room/alice/{SECRET_ID}/agent-1"
        assert await kit.store.acquire_lease(name, holder="process-2", ttl=1000) is not None
        with pytest.raises(RefreshBusy) as caught:
            await kit.token()
        assert str(caught.value) == "another process has been refreshing this credential too long"
        # Polled at 0 and 30; at 60 (the deadline itself) it gives up without a third wait.
        assert sleeps == [30.0, 30.0]
        assert kit.endpoint.posts == 0

    run(scenario)


def test_the_lease_is_renewed_every_third_of_its_ttl_while_the_post_is_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds: float, *args: Any) -> Any:
        if seconds:
            waits.append(seconds)
        return await real_sleep(0, *args)

    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        renewals: list[Lease] = []
        renew = kit.store.renew_lease

        async def counting_renew(lease: Lease, *, ttl: float) -> Lease:
            renewals.append(lease)
            return await renew(lease, ttl=ttl)

        kit.store.renew_lease = counting_renew  # type: ignore[method-assign]

        async def two_renewals() -> None:
            while len(renewals) < 2:
                await real_sleep(0)

        kit.endpoint.before = two_renewals
        monkeypatch.setattr(asyncio, "sleep", recording_sleep)
        assert await kit.token() == "at-1"
        monkeypatch.undo()
        assert waits[:2] == [10.0, 10.0]  # the default lease_ttl is 30
        assert set(waits) == {10.0}

    run(scenario)


@pytest.mark.parametrize(
    "failure, code",
    [(LeaseLost("lease lost"), "lease_lost"), (ConnectionResetError("reset"), "ConnectionResetError")],
)
def test_a_failed_lease_renewal_is_logged_and_audited_and_the_refresh_goes_on(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    code: str,
) -> None:
    real_sleep = asyncio.sleep

    async def quick_sleep(seconds: float, *args: Any) -> Any:
        return await real_sleep(0, *args)

    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        tries: list[Lease] = []

        async def failing_renew(lease: Lease, *, ttl: float) -> Lease:
            tries.append(lease)
            raise failure

        kit.store.renew_lease = failing_renew  # type: ignore[method-assign]

        async def after_the_renewal_failed() -> None:
            while not kit.events("credential.lease_renewal_failed"):
                await real_sleep(0)

        kit.endpoint.before = after_the_renewal_failed
        monkeypatch.setattr(asyncio, "sleep", quick_sleep)
        with caplog.at_level(logging.WARNING, logger="roomsecrets.refresh"):
            assert await kit.token() == "at-1"
        monkeypatch.undo()
        assert len(tries) == 1  # the renewing task ended; the refresh did not
        (event,) = kit.events("credential.lease_renewal_failed")
        assert (event.outcome, event.reason) == ("error", code)
        assert [r.getMessage() for r in caplog.records] == [
            f"refresh lease renewal failed ({code}); the refresh goes on"
        ]

    run(scenario)


def test_after_invalid_grant_a_kept_credential_is_forgotten_even_if_the_delete_fails() -> None:
    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        kit.store.failing = True
        assert await kit.token() == "at-1"  # kept in memory, not saved
        kit.now = NOW + 7200  # at-1 has expired too
        kit.endpoint.error = InvalidGrant("invalid_grant")
        kit.store.failing_deletes = True
        assert await kit.token() is None
        # The kept copy's refresh token is refused; the next round starts again from what
        # the store holds (still there: the delete failed), not from the kept copy.
        assert kit.endpoint.refresh_tokens == ["rt-at-old", "rt-1", "rt-at-old"]
        events = kit.events("credential.drop_failed")
        assert [(e.outcome, e.reason) for e in events] == [("error", "store_error")] * 2
        events = kit.events("credential.dropped")
        assert [(e.outcome, e.reason) for e in events] == [("error", "invalid_grant")] * 2

    run(scenario)


def test_a_call_during_a_new_approvals_write_does_not_replay_a_rotated_refresh_token() -> None:
    # Module doc: once rotated, "the old refresh token is never replayed from here".
    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        kit.store.failing = True
        assert await kit.token() == "at-1"  # rotated: rt-at-old is spent, rt-1 kept in memory
        kit.store.failing = False
        during: list[Optional[str]] = []

        async def call_meanwhile() -> None:
            during.append(await kit.token())

        kit.store.before = call_meanwhile  # runs inside save_new's write
        await kit.refresher.save_new(KEY, credential("at-approved", expires_at=NOW + 3600))
        assert during != []
        assert kit.endpoint.refresh_tokens.count("rt-at-old") == 1

    run(scenario)


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    decoded: list[bytes] = []
    original = StoredCredential.from_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type, raw: bytes) -> StoredCredential:
        decoded.append(raw)
        return original(cls, raw)  # type: ignore[no-any-return]

    monkeypatch.setattr(StoredCredential, "from_json", classmethod(counting))
    return decoded


def test_a_credential_is_decoded_again_only_when_its_record_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        kit = Kit()
        decoded = _count_decodes(monkeypatch)
        data = credential("at-fresh", expires_at=NOW + 3600).to_json()
        await kit.store.put(KEY, type=OAUTH_TOKEN_TYPE, name="n", data=data)
        _, first = await kit.refresher.load(KEY)
        _, again = await kit.refresher.load(KEY)
        assert first is not None and again is first
        assert len(decoded) == 1
        # The same bytes written again are a new version: decoded again.
        await kit.store.put(KEY, type=OAUTH_TOKEN_TYPE, name="n", data=data)
        _, rewritten = await kit.refresher.load(KEY)
        assert rewritten == first and len(decoded) == 2
        other = credential("at-other", expires_at=NOW + 3600).to_json()
        await kit.store.put(KEY, type=OAUTH_TOKEN_TYPE, name="n", data=other)
        _, changed = await kit.refresher.load(KEY)
        assert changed is not None and changed.tokens.access_token == "at-other"
        assert len(decoded) == 3
        assert await kit.token() == "at-other"
        assert len(decoded) == 3

    run(scenario)


def test_the_decode_cache_starts_afresh_when_it_reaches_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        kit = Kit()
        monkeypatch.setattr(refresh_module, "_MAX_DECODED", 2)
        keys = [SecretKey(room="room", owner=owner, secret_id=SECRET_ID) for owner in "abc"]
        for key in keys:
            await kit.store.put(key, type=OAUTH_TOKEN_TYPE, name="n", data=credential().to_json())
        decoded = _count_decodes(monkeypatch)
        for key in keys:  # the third decode finds two cached: the cache is emptied first
            await kit.refresher.load(key)
        await kit.refresher.load(keys[2])
        assert len(decoded) == 3
        await kit.refresher.load(keys[0])
        assert len(decoded) == 4

    run(scenario)


def test_a_credential_still_due_after_two_refreshes_is_given_up_on() -> None:
    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential())
        replaced = 0

        async def replace_with_another_expired_one() -> None:
            # Another process stores a new (already expired) approval during every POST,
            # so no refresh of ours can be saved; five times at most.
            nonlocal replaced
            if replaced < 5:
                replaced += 1
                await MemoryStore.put(kit.store, KEY, type=OAUTH_TOKEN_TYPE, name="n",
                                      data=credential(f"at-other-{replaced}").to_json())

        kit.endpoint.every = replace_with_another_expired_one
        assert await kit.token() is None
        assert kit.endpoint.posts == 2
        assert len(kit.events("credential.refresh_discarded")) == 2

    run(scenario)


def test_a_refreshed_token_that_no_longer_covers_the_scopes_asked_for_is_not_returned() -> None:
    async def scenario() -> None:
        kit = Kit()
        cred = credential()
        wide = StoredCredential(
            tokens=TokenSet(access_token="at-old", issued_at=NOW - 3600, refresh_token="rt-old",
                            expires_at=NOW - 1, scopes=("mail.read", "mail.send")),
            client_id=cred.client_id,
            authorization_endpoint=cred.authorization_endpoint,
            token_endpoint=cred.token_endpoint,
        )
        await kit.refresher.save_new(KEY, wide)
        kit.endpoint.scopes = ("mail.read",)  # the provider narrowed the grant
        assert await kit.token(scopes=["mail.send"]) is None
        assert kit.endpoint.posts == 1
        assert await kit.token(scopes=["mail.read"]) == "at-1"

    run(scenario)


@pytest.mark.parametrize("expires_in, posts", [(60.5, 0), (59.5, 1)])
def test_by_default_a_token_is_refreshed_when_it_has_less_than_a_minute_left(
    expires_in: float, posts: int
) -> None:
    async def scenario() -> None:
        kit = Kit()
        await kit.refresher.save_new(KEY, credential(expires_at=NOW + expires_in))
        assert await kit.token() == ("at-old" if posts == 0 else "at-1")
        assert kit.endpoint.posts == posts

    run(scenario)


@pytest.mark.parametrize("expires_in, posts", [(10.5, 0), (9.5, 1)])
def test_the_refresh_leeway_can_be_set(expires_in: float, posts: int) -> None:
    async def scenario() -> None:
        kit = Kit()
        kit.refresher = CredentialRefresher(
            store=kit.store,
            token_endpoint=kit.endpoint,  # type: ignore[arg-type]
            clock=lambda: NOW,
            holder="process-1",
            audit=kit.audit,
            leeway=10.0,
        )
        await kit.refresher.save_new(KEY, credential(expires_at=NOW + expires_in))
        assert await kit.token() == ("at-old" if posts == 0 else "at-1")
        assert kit.endpoint.posts == posts

    run(scenario)


def test_an_expired_credential_without_a_refresh_token_is_not_usable() -> None:
    async def scenario() -> None:
        kit = Kit()
        cred = credential()
        cred = cred.with_tokens(TokenSet(access_token="at-old", issued_at=NOW - 3600,
                                         expires_at=NOW - 1, scopes=("mail.read",)))
        await kit.refresher.save_new(KEY, cred)
        assert await kit.token() is None
        assert kit.endpoint.posts == 0

    run(scenario)


def test_by_default_a_busy_lease_is_polled_every_50_ms_for_a_minute() -> None:
    async def scenario() -> None:
        kit = Kit()
        readings = iter([0.0, 59.999, 60.0, 60.5, 61.0, 1000.0])
        kit.refresher = CredentialRefresher(
            store=kit.store,
            token_endpoint=kit.endpoint,  # type: ignore[arg-type]
            clock=lambda: NOW,
            holder="process-1",
            audit=kit.audit,
            sleep=kit._sleep,
            monotonic=lambda: next(readings),
        )
        await kit.refresher.save_new(KEY, credential())
        name = f"refresh/room/alice/{SECRET_ID}/agent-1"
        assert await kit.store.acquire_lease(name, holder="process-2", ttl=1000) is not None
        with pytest.raises(RefreshBusy):
            await kit.token()
        assert kit.sleeps == [0.05]  # started at 0, polled at 59.999, gave up at 60

    run(scenario)
