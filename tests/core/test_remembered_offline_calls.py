"""``get_offline_oauth_token`` remembers what a call decided before it reads the
store (argument checks, the grant decision, where the credential lives), per
tuple of exact strings and grant. What it remembers must never skip the audit,
the store read, or a check whose answer could differ."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Optional

import pytest

from roomsecrets import MemoryStore, SecretsService
from roomsecrets.core import client as client_module
from roomsecrets.core import grants as grants_module
from roomsecrets.core import service as service_module
from roomsecrets.core.audit import AuditEvent
from roomsecrets.core.credentials import OAUTH_TOKEN_TYPE, StoredCredential
from roomsecrets.core.errors import GrantDenied, InvalidInput, ParticipantNotConnected
from roomsecrets.core.grants import OAuthRule, SecretsGrant
from roomsecrets.core.oauth.tokens import TokenSet

AUTH = "https://as.example/auth"
TOKEN = "https://as.example/token"
ARGS: dict[str, Any] = dict(
    client_id="app", authorization_endpoint=AUTH, token_endpoint=TOKEN,
    scopes=["mail.read"], delegated_by="alice",
)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, key: Any) -> Any:
        self.gets += 1
        return await super().get(key)


class Room:
    def __init__(self) -> None:
        self.clock = Clock()
        self.events: list[AuditEvent] = []
        self.store = CountingStore()
        self.service = SecretsService(
            store=self.store, room="r", clock=self.clock, audit=self.events.append
        )

    async def store_token(
        self, access_token: str = "AT-1", requester: str = "agent-1", owner: str = "alice"
    ) -> None:
        key = self.service.credential_key(
            owner=owner, requester=requester, client_id="app", token_endpoint=TOKEN
        )
        now = self.clock.now
        cred = StoredCredential(
            tokens=TokenSet(access_token=access_token, refresh_token="RT", issued_at=now,
                            expires_at=now + 3600, scopes=("mail.read",)),
            client_id="app", authorization_endpoint=AUTH, token_endpoint=TOKEN,
        )
        await self.store.put(key, type=OAUTH_TOKEN_TYPE, name="n", data=cred.to_json())

    async def offline(self, grant: Optional[SecretsGrant], **kw: Any) -> Optional[str]:
        agent = self.service.session("agent-1", grant=grant)
        try:
            return await agent.get_offline_oauth_token(**{**ARGS, **kw})
        finally:
            await agent.close()


ALL = SecretsGrant.allow_all()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_remembered_call_is_audited_every_time_with_the_time_of_the_call() -> None:
    async def scenario() -> None:
        room = Room()
        await room.store_token()
        for _ in range(3):
            room.clock.now += 10
            assert await room.offline(ALL) == "AT-1"
            assert room.events[-1].at == room.clock.now
        assert len(room.service.offline_calls) == 1
        first, *later = room.events
        assert [e.action for e in room.events] == ["oauth.get_offline_token"] * 3
        for event in later:
            assert (event.action, event.room, event.actor, event.outcome, event.reason,
                    event.details) == (first.action, first.room, first.actor, first.outcome,
                                       first.reason, first.details)
            assert event is not first
        assert first.detail("scopes") == "mail.read" and first.detail("target") == "alice"

    run(scenario())


def test_a_remembered_call_decides_once_and_reads_the_store_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decided: list[object] = []
    real = service_module.check_oauth_request

    def counting(*args: Any, **kw: Any) -> Any:
        decided.append(kw.get("scopes"))
        return real(*args, **kw)

    monkeypatch.setattr(service_module, "check_oauth_request", counting)

    async def scenario() -> None:
        room = Room()
        await room.store_token("AT-1")
        assert await room.offline(ALL) == "AT-1"
        gets = room.store.gets
        await room.store_token("AT-2")  # the store changed: the next call sees it
        assert await room.offline(ALL) == "AT-2"
        assert room.store.gets == gets + 1
        await room.service.session("alice").delete_user_secret(
            id=room.service.credential_key(
                owner="alice", requester="agent-1", client_id="app", token_endpoint=TOKEN
            ).secret_id,
            delegated_to="agent-1",
        )
        assert await room.offline(ALL) is None
        assert len(decided) == 1

    run(scenario())


def test_another_grant_is_decided_afresh_even_when_equal_calls_were_allowed() -> None:
    async def scenario() -> None:
        room = Room()
        await room.store_token()
        assert await room.offline(ALL) == "AT-1"
        narrow = SecretsGrant(oauth=(OAuthRule(client_id="other-app"),))
        with pytest.raises(GrantDenied):
            await room.offline(narrow)
        assert room.events[-1].outcome == "denied"
        assert await room.offline(ALL) == "AT-1"

    run(scenario())


def test_a_closed_session_is_refused_before_a_remembered_call() -> None:
    async def scenario() -> None:
        room = Room()
        await room.store_token()
        assert await room.offline(ALL) == "AT-1"
        agent = room.service.session("agent-1", grant=ALL)
        await agent.close()
        events, gets = len(room.events), room.store.gets
        with pytest.raises(ParticipantNotConnected):
            await agent.get_offline_oauth_token(**ARGS)
        assert (len(room.events), room.store.gets) == (events, gets)

    run(scenario())


def test_an_audit_sink_that_fails_stops_a_remembered_call_before_the_store_read() -> None:
    class Broken(Exception):
        pass

    async def scenario() -> None:
        room = Room()
        await room.store_token()
        assert await room.offline(ALL) == "AT-1"
        failing = True

        def sink(event: AuditEvent) -> None:
            if failing:
                raise Broken()

        room.service.audit = sink
        gets = room.store.gets
        with pytest.raises(Broken):
            await room.offline(ALL)
        assert room.store.gets == gets

    run(scenario())


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dict(timeout=-1), "timeout"),
        (dict(timeout="soon"), "timeout"),
        (dict(rejected_access_token="bad token\n"), "rejected_access_token"),
    ],
)
def test_the_per_call_arguments_are_checked_on_a_remembered_call(
    bad: dict[str, Any], message: str
) -> None:
    async def scenario() -> None:
        room = Room()
        await room.store_token()
        assert await room.offline(ALL) == "AT-1"
        events = len(room.events)
        with pytest.raises(InvalidInput, match=message):
            await room.offline(ALL, **bad)
        assert len(room.events) == events

    run(scenario())


class Sly(str):
    """A str subclass that equals anything and hashes like ``pretends``."""

    pretends = AUTH

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash(self.pretends)


class Plain(str):
    """A str subclass that behaves exactly like its value."""


@pytest.mark.parametrize(
    "changed",
    [
        dict(client_secret="s3cret"),
        dict(client_auth_method="none"),
        dict(token_endpoint=Plain(TOKEN)),
        dict(delegated_by=Plain("alice")),
        dict(scopes=[Plain("mail.read")]),
        dict(scopes=("mail.read", None)),
        dict(scopes="mail.read"),
    ],
    ids=["client_secret", "auth_method", "str_subclass", "owner_subclass", "scope_subclass",
         "none_scope", "one_string"],
)
def test_calls_that_cannot_be_remembered_take_the_whole_way(changed: dict[str, Any]) -> None:
    async def scenario() -> None:
        room = Room()
        await room.store_token()
        with contextlib.suppress(InvalidInput):
            await room.offline(ALL, **changed)
        assert room.service.offline_calls == {}

    run(scenario())


def test_a_subclass_that_equals_a_remembered_endpoint_is_still_checked() -> None:
    async def scenario() -> None:
        room = Room()
        await room.store_token()
        assert await room.offline(ALL) == "AT-1"
        with pytest.raises(InvalidInput, match="authorization_endpoint"):
            await room.offline(ALL, authorization_endpoint=Sly("javascript:alert(1)"))

    run(scenario())


def test_a_scope_of_a_str_subclass_is_refused_after_its_value_was_remembered() -> None:
    async def scenario() -> None:
        room = Room()
        await room.store_token()
        assert await room.offline(ALL) == "AT-1"
        with pytest.raises(InvalidInput, match="each scope must be a string"):
            await room.offline(ALL, scopes=[Plain("mail.read")])

    run(scenario())


def test_one_string_of_scopes_is_refused_after_its_letters_were_remembered() -> None:
    async def scenario() -> None:
        room = Room()
        assert await room.offline(ALL, scopes=["a", "b"]) is None
        assert len(room.service.offline_calls) == 1
        with pytest.raises(InvalidInput, match="scopes must be a list"):
            await room.offline(ALL, scopes="ab")

    run(scenario())


def test_a_delegate_named_by_the_owner_is_remembered_apart() -> None:
    async def scenario() -> None:
        room = Room()
        await room.store_token("AT-agent", requester="agent-1")
        await room.store_token("AT-other", requester="agent-2")
        assert await room.offline(ALL) == "AT-agent"
        alice = room.service.session("alice", grant=ALL)
        assert await alice.get_offline_oauth_token(**ARGS, delegated_to="agent-2") == "AT-other"
        assert await alice.get_offline_oauth_token(**ARGS, delegated_to="agent-2") == "AT-other"
        with pytest.raises(GrantDenied):  # not the owner: may not name another delegate
            await room.offline(ALL, delegated_to="agent-2")

    run(scenario())


def test_the_remembered_calls_start_afresh_at_their_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "_MAX_OFFLINE_CALLS", 3)

    async def scenario() -> None:
        room = Room()
        for index in range(7):
            await room.offline(ALL, client_id=f"app-{index}")
            assert len(room.service.offline_calls) <= 3

    run(scenario())


def test_a_remembered_event_at_another_time_keeps_every_other_field() -> None:
    event = grants_module.decision_event(
        grants_module.GrantDecision(allowed=True, reason="ok", rule_index=2),
        action="a", room="r", actor="x", at=1.0, details=(("k", "v"),),
    )
    later = event.at_time(5.0)
    assert later == AuditEvent(action="a", room="r", actor="x", outcome="allowed",
                               reason="ok", at=5.0, details=(("k", "v"), ("rule_index", "2")))
    assert event.at == 1.0
    for bad in (True, "5", None):
        with pytest.raises(InvalidInput, match=r"^AuditEvent\.at must be a number of seconds$"):
            event.at_time(bad)  # type: ignore[arg-type]


def test_scopes_given_as_a_tuple_are_remembered_like_a_list() -> None:
    async def scenario() -> None:
        room = Room()
        await room.store_token()
        assert await room.offline(ALL, scopes=("mail.read",)) == "AT-1"
        assert await room.offline(ALL, scopes=("mail.read",)) == "AT-1"
        assert len(room.service.offline_calls) == 1

    run(scenario())


def test_a_remembered_call_refreshes_a_token_the_resource_server_rejected() -> None:
    from tests.core.service_kit import approved, make_service, offline, room, running_provider

    async def scenario() -> None:
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            first = await approved(agent, alice, provider)
            assert await offline(agent, provider) == first
            assert len(service.offline_calls) == 1  # remembered: the next call is a hit
            fresh = await offline(agent, provider, rejected_access_token=first)
            assert fresh != first and provider.is_active(fresh)
            assert await offline(agent, provider) == fresh

    run(scenario())


def test_a_remembered_call_checks_carried_scopes_against_the_rule_for_its_resource() -> None:
    resource = "https://api.example/mcp"
    # The stored credential carries more scopes than asked: a second decision, which
    # only the rule for this resource allows (a rule naming a resource matches no
    # request without one).
    grant = SecretsGrant(oauth=(
        OAuthRule(client_id="app", resource=resource, scopes=["mail.read", "mail.send"]),
    ))

    async def scenario() -> None:
        room = Room()
        key = room.service.credential_key(
            owner="alice", requester="agent-1", client_id="app", token_endpoint=TOKEN,
            resource=resource,
        )
        now = room.clock.now
        cred = StoredCredential(
            tokens=TokenSet(access_token="AT-r", refresh_token="RT", issued_at=now,
                            expires_at=now + 3600, scopes=("mail.read", "mail.send")),
            client_id="app", authorization_endpoint=AUTH, token_endpoint=TOKEN,
            resource=resource,
        )
        await room.store.put(key, type=OAUTH_TOKEN_TYPE, name="n", data=cred.to_json())
        for _ in range(2):
            assert await room.offline(grant, resource=resource) == "AT-r"
        assert len(room.service.offline_calls) == 1
        stored = [e for e in room.events if e.detail("stored_scopes") is not None]
        assert [e.outcome for e in stored] == ["allowed", "allowed"]

    run(scenario())
