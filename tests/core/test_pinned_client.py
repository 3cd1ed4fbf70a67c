"""Pinned: what SecretsClient checks, refuses, audits and returns (no provider needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roomsecrets.core.api import SecretInfo
from roomsecrets.core.credentials import OAUTH_TOKEN_TYPE, StoredCredential
from roomsecrets.core.errors import GrantDenied, InvalidInput, ParticipantNotConnected
from roomsecrets.core.grants import OAuthRule, SecretsGrant
from roomsecrets.core.oauth.tokens import TokenSet
from roomsecrets.core.ports import SecretKey
from tests.core.service_kit import REDIRECT_URI, make_service, next_prompt, room

ENDPOINTS = {
    "client_id": "mailbot-app",
    "authorization_endpoint": "https://login.example.com/auth",
    "token_endpoint": "https://login.example.com/token",
}
REQUEST = {**ENDPOINTS, "from_participant_id": "alice", "redirect_uri": REDIRECT_URI}
OFFLINE = {**ENDPOINTS, "delegated_by": "alice"}


def run(scenario: Any) -> None:
    asyncio.run(scenario())


async def _refused(call: Any) -> str:
    with pytest.raises(InvalidInput) as caught:
        await call
    return str(caught.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"redirect_uri": 7}, "redirect_uri must be a URL of 1-2048 characters"),
        ({"no_pkce": "yes"}, "no_pkce must be True or False"),
        ({"timeout": 0}, "timeout must be more than 0 and at most 86400 seconds"),
        ({"client_secret": "s\x01"}, "client_secret must be printable ASCII (RFC 6749 Appendix A)"),
        ({"client_secret": "s" * 1025}, "client_secret must be a string of 1-1024 characters"),
        ({"scopes": "mail.read"}, "scopes must be a list of strings or None"),
    ],
)
def test_a_token_request_with_a_bad_argument_is_refused_naming_it_and_audits_nothing(
    change: dict[str, object], message: str
) -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service)
        assert await _refused(agent.request_oauth_token(**{**REQUEST, **change})) == message
        assert service.audit.events == []  # refused before the grant is even decided

    run(scenario)


def test_a_client_secret_of_exactly_1024_characters_is_accepted() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service)
        assert await agent.get_offline_oauth_token(**OFFLINE, client_secret="s" * 1024) is None

    run(scenario)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"participant_name": "bob"},
         "delegated_by and participant_name name different participants"),
        ({"delegated_by": None}, "delegated_by (or participant_name) is required"),
        ({"delegated_by": "", "participant_name": ""}, "delegated_by must be 1-256 characters long"),
        ({"timeout": -1}, "timeout must be more than 0 and at most 86400 seconds"),
        ({"scopes": ["x" * 257]}, "each scope must be a string of at most 256 chars"),
        ({"client_secret": "s\x01"}, "client_secret must be printable ASCII (RFC 6749 Appendix A)"),
    ],
)
def test_an_offline_fetch_with_a_bad_argument_is_refused_naming_it(
    change: dict[str, object], message: str
) -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service)
        assert await _refused(agent.get_offline_oauth_token(**{**OFFLINE, **change})) == message
        assert service.audit.events == []  # refused before the grant is even decided

    run(scenario)


@pytest.mark.parametrize(
    "who", [{"delegated_by": "alice"}, {"participant_name": "alice"},
            {"delegated_by": "alice", "participant_name": "alice"}]
)
def test_participant_name_is_an_alias_of_delegated_by(who: dict[str, str]) -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service)
        assert await agent.get_offline_oauth_token(**ENDPOINTS, **who) is None
        (event,) = service.audit.events
        assert (event.action, event.actor, event.outcome) == (
            "oauth.get_offline_token", "agent-1", "allowed")

    run(scenario)


def test_a_token_request_is_checked_against_the_grant_and_audited_under_its_action() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service, grant=SecretsGrant())
        with pytest.raises(GrantDenied):
            await agent.request_oauth_token(**REQUEST)
        with pytest.raises(GrantDenied):
            await agent.get_offline_oauth_token(**OFFLINE)
        assert [(e.action, e.actor, e.outcome) for e in service.audit.events] == [
            ("oauth.request_token", "agent-1", "denied"),
            ("oauth.get_offline_token", "agent-1", "denied"),
        ]

    run(scenario)


@pytest.mark.parametrize(
    "call, message",
    [
        ({"request_id": "r\x01", "code": "c"},
         "request_id must be printable ASCII (RFC 6749 Appendix A)"),
        ({"request_id": "r" * 129, "code": "c"},
         "request_id must be a string of 1-128 characters"),
        ({"request_id": "r", "code": "c" * 4097}, "code must be a string of 1-4096 characters"),
        ({"request_id": "r", "code": "c", "state": "s" * 1025},
         "state must be a string of 1-1024 characters"),
    ],
)
def test_an_answer_with_a_malformed_argument_is_refused_naming_it(
    call: dict[str, str], message: str
) -> None:
    async def scenario() -> None:
        service = make_service()
        _, alice = room(service)
        assert await _refused(alice.provide_oauth_authorization(**call)) == message

    run(scenario)


@pytest.mark.parametrize(
    "call, message",
    [
        ({"request_id": "r\x01", "error": "no"},
         "request_id must be printable ASCII (RFC 6749 Appendix A)"),
        ({"request_id": "r", "error": "e" * 257}, "error must be 1-256 characters long"),
        ({"request_id": "r", "error": "\u00e9\u00e9"},
         "error must hold printable ASCII (RFC 6749 §5.2)"),
    ],
)
def test_a_rejection_with_a_malformed_argument_is_refused_naming_it(
    call: dict[str, str], message: str
) -> None:
    async def scenario() -> None:
        service = make_service()
        _, alice = room(service)
        assert await _refused(alice.reject_oauth_authorization(**call)) == message

    run(scenario)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"type": "text"}, "type must be a MIME type such as 'text/plain'"),
        ({"type": "t/" + "x" * 255}, "type must be 1-256 characters long"),
        ({"data": "text"}, "data must be bytes"),
        ({"name": "n" * 257}, "name must be 0-256 characters long"),
        ({"secret_id": ""}, "secret id must be 1-256 characters long"),
        ({"delegated_to": ""}, "delegated_to must be 1-256 characters long"),
    ],
)
def test_a_secret_write_with_a_bad_argument_is_refused_naming_it(
    change: dict[str, object], message: str
) -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service)
        write = {"secret_id": "s", "data": b"d", **change}
        assert await _refused(agent.set_secret(**write)) == message
        assert await service.store.list("myroom", "agent-1") == []

    run(scenario)


def test_own_secrets_are_written_listed_read_and_deleted_per_delegate() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service)
        await agent.set_secret(secret_id="s", data=b"plain")
        await agent.set_secret(secret_id="s", data=b"shared", type="text/plain", name="Shared",
                               delegated_to="bob")
        assert await agent.list_user_secrets() == [
            SecretInfo(id="s", type="application/octet-stream", name=None, delegated_to=None),
            SecretInfo(id="s", type="text/plain", name="Shared", delegated_to="bob"),
        ]
        assert await agent.get_secret(secret_id="s") == b"plain"
        assert await agent.get_secret(secret_id="s", delegated_to="bob") == b"shared"
        await agent.delete_user_secret(id="s", delegated_to="bob")
        assert await agent.get_secret(secret_id="s", delegated_to="bob") is None
        assert await agent.get_secret(secret_id="s") == b"plain"
        await agent.delete_user_secret(id="s")
        assert await agent.list_user_secrets() == []
        assert await agent.get_secret(secret_id="s") is None

    run(scenario)


def test_an_oauth_credential_is_not_returned_as_a_plain_secret() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service)
        key = SecretKey(room="myroom", owner="agent-1", secret_id="cred")
        await service.store.put(key, type=OAUTH_TOKEN_TYPE, name=None, data=b"{}")
        assert await agent.get_secret(secret_id="cred") is None

    run(scenario)


def test_managing_own_secrets_is_audited_with_the_action_and_secret_id() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service)
        await agent.set_secret(secret_id="s1", data=b"d")
        await agent.get_secret(secret_id="s1")
        await agent.list_user_secrets()
        await agent.delete_user_secret(id="s1")
        assert [(e.action, e.room, e.actor, e.outcome, e.at, e.details)
                for e in service.audit.events] == [
            ("secret.manage", "myroom", "agent-1", "allowed", service.clock(),
             (("secret_id", "s1"),)),
            ("secret.manage", "myroom", "agent-1", "allowed", service.clock(),
             (("secret_id", "s1"),)),
            ("secret.list", "myroom", "agent-1", "allowed", service.clock(), ()),
            ("secret.manage", "myroom", "agent-1", "allowed", service.clock(),
             (("secret_id", "s1"),)),
        ]

    run(scenario)


def test_a_grant_without_own_secrets_refuses_every_secret_method_and_audits_it() -> None:
    async def scenario() -> None:
        service = make_service()
        agent = service.connect("agent-1", grant=SecretsGrant(manage_own_secrets=False))
        calls = [
            agent.set_secret(secret_id="s", data=b"d"),
            agent.get_secret(secret_id="s"),
            agent.delete_user_secret(id="s"),
            agent.list_user_secrets(),
        ]
        for call in calls:
            with pytest.raises(GrantDenied):
                await call
        assert [(e.action, e.outcome) for e in service.audit.events] == [
            ("secret.manage", "denied"), ("secret.manage", "denied"),
            ("secret.manage", "denied"), ("secret.list", "denied"),
        ]
        assert await service.store.list("myroom", "agent-1") == []

    run(scenario)


def test_every_method_of_a_closed_client_says_it_is_not_connected() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service)
        await agent.close()
        assert not service.is_connected("agent-1")
        calls = [
            agent.request_oauth_token(**REQUEST),
            agent.get_offline_oauth_token(**OFFLINE),
            agent.provide_oauth_authorization(request_id="r", code="c"),
            agent.reject_oauth_authorization(request_id="r", error="no"),
            agent.set_secret(secret_id="s", data=b"d"),
            agent.get_secret(secret_id="s"),
            agent.delete_user_secret(id="s"),
            agent.list_user_secrets(),
        ]
        for call in calls:
            with pytest.raises(ParticipantNotConnected, match="agent-1"):
                await call
        with pytest.raises(ParticipantNotConnected):
            agent.oauth_prompts()
        await agent.close()  # closing again is a no-op

    run(scenario)


def test_an_old_handle_neither_acts_for_nor_closes_a_newer_connection() -> None:
    async def scenario() -> None:
        service = make_service()
        old = service.connect("agent-1", grant=SecretsGrant.allow_all())
        await old.close()
        new = service.connect("agent-1", grant=SecretsGrant.allow_all())
        for call in (old.close(), old.list_user_secrets(), old.get_secret(secret_id="s")):
            with pytest.raises(ParticipantNotConnected) as caught:
                await call
            assert str(caught.value) == "this client has left the room"
        assert service.is_connected("agent-1")
        assert await new.list_user_secrets() == []

    run(scenario)


def test_a_client_used_as_a_context_manager_leaves_the_room_at_the_end() -> None:
    async def scenario() -> None:
        service = make_service()
        async with service.connect("agent-1") as agent:
            assert agent.participant_id == "agent-1"
            assert service.is_connected("agent-1")
        assert not service.is_connected("agent-1")

    run(scenario)


def test_the_repr_names_the_participant_and_the_room() -> None:
    service = make_service()
    agent, _ = room(service)
    assert repr(agent) == "SecretsClient(participant_id='agent-1', room='myroom')"


def _store_credential(service: Any, scopes: tuple[str, ...]) -> Any:
    now = service.clock()
    credential = StoredCredential(
        tokens=TokenSet(access_token="at-stored", issued_at=now, refresh_token="rt",
                        expires_at=now + 3600, scopes=scopes),
        client_id=ENDPOINTS["client_id"],
        authorization_endpoint=ENDPOINTS["authorization_endpoint"],
        token_endpoint=ENDPOINTS["token_endpoint"],
    )
    key = service.credential_key(owner="alice", requester="agent-1",
                                 client_id=ENDPOINTS["client_id"],
                                 token_endpoint=ENDPOINTS["token_endpoint"])
    return service.refresher.save_new(key, credential)


def test_a_stored_credential_is_returned_only_when_it_covers_the_scopes_asked_for() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        await _store_credential(service, ("mail.read",))
        assert await agent.request_oauth_token(**REQUEST, scopes=["mail.read"]) == "at-stored"
        wider = asyncio.ensure_future(
            agent.request_oauth_token(**REQUEST, scopes=["mail.read", "mail.send"]))
        prompt = await next_prompt(alice)  # not covered: alice is asked
        assert prompt.scopes == ("mail.read", "mail.send")
        assert not wider.done()
        wider.cancel()

    run(scenario)


def test_a_token_request_waits_five_minutes_by_default() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        request = asyncio.ensure_future(agent.request_oauth_token(**REQUEST))
        prompt = await next_prompt(alice)
        assert prompt.expires_at == service.clock() + 300
        request.cancel()

    run(scenario)


@pytest.mark.parametrize(
    "method, action", [("request", "oauth.request_token"), ("offline", "oauth.get_offline_token")]
)
def test_a_stored_credential_carrying_scopes_the_grant_forbids_is_withheld_and_audited(
    method: str, action: str
) -> None:
    async def scenario() -> None:
        service = make_service()
        grant = SecretsGrant(oauth=[OAuthRule(scopes=["mail.read"])])
        agent, _ = room(service, grant=grant)
        await _store_credential(service, ("mail.read", "mail.send"))
        with pytest.raises(GrantDenied):
            if method == "request":
                await agent.request_oauth_token(**REQUEST, scopes=["mail.read"])
            else:
                await agent.get_offline_oauth_token(**OFFLINE, scopes=["mail.read"])
        asked, stored = service.audit.events
        assert (asked.action, asked.outcome) == (action, "allowed")
        assert (stored.action, stored.outcome, stored.actor) == (action, "denied", "agent-1")
        assert stored.detail("stored_scopes") == "mail.read mail.send"

    run(scenario)


def test_a_stored_credential_carrying_only_asked_for_scopes_needs_no_second_decision() -> None:
    async def scenario() -> None:
        service = make_service()
        grant = SecretsGrant(oauth=[OAuthRule(scopes=["mail.read"])])
        agent, _ = room(service, grant=grant)
        await _store_credential(service, ("mail.read",))
        assert await agent.get_offline_oauth_token(**OFFLINE, scopes=["mail.read"]) == "at-stored"
        assert [e.action for e in service.audit.events] == ["oauth.get_offline_token"]

    run(scenario)
