"""Pinned: the service's own rules, seen through its clients; no provider is contacted
(nobody answers with a code), so every flow here ends in a rejection, a timeout or a
departure."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import pytest

from roomsecrets.core import service as service_module
from roomsecrets.core.credentials import StoredCredential, credential_secret_id
from roomsecrets.core.errors import (
    GrantDenied,
    InsecureEndpointError,
    InvalidInput,
    ParticipantNotConnected,
    RequestCancelled,
    RequestRejected,
    RequestTimedOut,
    StateMismatch,
    StoreError,
    TooManyPendingRequests,
)
from roomsecrets.core.grants import OAuthRule, SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.oauth.http import HttpResponse
from roomsecrets.core.oauth.tokens import TokenSet
from roomsecrets.core.participants import ParticipantInfo
from roomsecrets.core.ports import SecretKey
from roomsecrets.core.service import SecretsService
from tests.core.service_kit import REDIRECT_URI, make_service, next_prompt, room

ENDPOINTS = {
    "client_id": "mailbot-app",
    "authorization_endpoint": "https://login.example.com/auth",
    "token_endpoint": "https://login.example.com/token",
}


def ask(agent: Any, **kw: Any) -> asyncio.Task[str]:
    args: dict[str, Any] = {**ENDPOINTS, "from_participant_id": "alice",
                            "redirect_uri": REDIRECT_URI, "scopes": ["mail.read"]}
    args.update(kw)
    return asyncio.ensure_future(agent.request_oauth_token(**args))


def run(scenario: Any) -> None:
    asyncio.run(scenario())


@pytest.mark.parametrize("room_name", ["", 7, None])
def test_a_service_needs_a_room_name(room_name: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        SecretsService(store=MemoryStore(), room=room_name)  # type: ignore[arg-type]
    assert str(caught.value) == "room must be a non-empty string"


def test_connecting_an_id_twice_is_refused_and_the_first_stays() -> None:
    service = make_service()
    first = service.connect("agent-1", name="mailbot")
    with pytest.raises(InvalidInput) as caught:
        service.connect("agent-1")
    assert str(caught.value) == "participant 'agent-1' is already connected"
    assert service.participant("agent-1") is first._participant
    assert service.connected_participants() == [ParticipantInfo(id="agent-1", name="mailbot")]


@pytest.mark.parametrize("how", ["connect", "session"])
def test_a_grant_must_be_a_secrets_grant(how: str) -> None:
    service = make_service()
    with pytest.raises(InvalidInput) as caught:
        getattr(service, how)("agent-1", grant={"oauth": []})
    assert str(caught.value) == "grant must be a SecretsGrant"
    assert not service.is_connected("agent-1")


@pytest.mark.parametrize("how", ["connect", "session"])
def test_the_default_grant_manages_own_secrets_but_asks_nobody(how: str) -> None:
    async def scenario() -> None:
        service = make_service()
        service.connect("alice")
        agent = getattr(service, how)("agent-1", name="mailbot")
        await agent.set_secret(secret_id="s", data=b"d")
        assert await agent.get_secret(secret_id="s") == b"d"
        with pytest.raises(GrantDenied):
            await ask(agent)

    run(scenario)


def test_connected_participants_are_listed_in_the_order_they_connected() -> None:
    service = make_service()
    service.connect("zed", name="Zed")
    service.connect("amy")
    service.session("sam")
    assert service.connected_participants() == [
        ParticipantInfo(id="zed", name="Zed"), ParticipantInfo(id="amy", name=None)]
    assert service.is_connected("amy") and not service.is_connected("sam")
    with pytest.raises(ParticipantNotConnected) as caught:
        service.participant("sam")
    assert str(caught.value) == "participant 'sam' is not connected"
    service.disconnect("nobody")  # a no-op


def test_an_oauth_decision_is_audited_with_what_was_asked() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        request = ask(agent, scopes=["mail.read", "mail.send"])
        await next_prompt(alice)
        request.cancel()
        (event,) = [e for e in service.audit.events if e.action == "oauth.request_token"]
        assert (event.actor, event.outcome, event.room, event.at) == (
            "agent-1", "allowed", "myroom", service.clock())
        assert event.details == (
            ("target", "alice"),
            ("client_id", "mailbot-app"),
            ("token_endpoint", "https://login.example.com/token"),
            ("scopes", "mail.read mail.send"),
            ("rule_index", "0"),
        )

    run(scenario)


def test_a_remembered_decision_is_still_audited_on_every_call() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service, grant=SecretsGrant(oauth=[OAuthRule(client_id="other")]))
        for _ in range(3):
            with pytest.raises(GrantDenied):
                await agent.get_offline_oauth_token(**ENDPOINTS, delegated_by="alice",
                                                    scopes=None)
        events = [e for e in service.audit.events if e.action == "oauth.get_offline_token"]
        assert [(e.outcome, e.detail("scopes")) for e in events] == [("denied", "")] * 3

    run(scenario)


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"from_participant_id": ""}, InvalidInput, "from participant must be 1-256 characters long"),
        ({"client_id": "c\x01"}, InvalidInput,
         "client_id must be printable ASCII (RFC 6749 Appendix A)"),
        ({"authorization_endpoint": "a b"}, InvalidInput,
         "authorization_endpoint must be ASCII without spaces (RFC 3986 §2); "
         "percent-encode other characters"),
        ({"token_endpoint": "t" * 2049}, InvalidInput,
         "token_endpoint must be a URL of 1-2048 characters"),
        ({"authorization_endpoint": "http://login.example.com/auth"}, InsecureEndpointError,
         None),
        ({"token_endpoint": "http://login.example.com/token"}, InsecureEndpointError, None),
    ],
)
def test_an_oauth_call_with_a_bad_argument_is_refused_before_any_decision(
    change: dict[str, str], error: type, message: Any
) -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _ = room(service)
        with pytest.raises(error) as caught:
            await ask(agent, **change)
        if message is not None:
            assert str(caught.value) == message
        else:
            what = "token_endpoint" if "token_endpoint" in change else "authorization_endpoint"
            assert str(caught.value) == (
                f"{what} must use https (RFC 6749 §3.1, §3.2); http is allowed only for "
                "loopback hosts, got host 'login.example.com'")
        assert service.audit.events == []

    run(scenario)


def test_plain_http_endpoints_are_allowed_when_the_service_says_so() -> None:
    async def scenario() -> None:
        service = make_service(allow_insecure_http=True)
        agent, alice = room(service)
        request = ask(agent, authorization_endpoint="http://login.example.com/auth",
                      token_endpoint="http://login.example.com/token")
        prompt = await next_prompt(alice)
        assert prompt.authorization_url.startswith("http://login.example.com/auth?")
        request.cancel()

    run(scenario)


def test_a_prompt_describes_the_request() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        request = ask(agent, scopes=["mail.read", "mail.send"], timeout=120)
        prompt = await next_prompt(alice)
        assert (prompt.from_participant_id, prompt.client_id, prompt.scopes,
                prompt.redirect_uri, prompt.expires_at) == (
            "agent-1", "mailbot-app", ("mail.read", "mail.send"), REDIRECT_URI,
            service.clock() + 120)
        assert prompt.code_challenge is not None and len(prompt.code_challenge) == 43
        url = prompt.authorization_url
        assert url.startswith("https://login.example.com/auth?")
        for part in ("client_id=mailbot-app", f"state={prompt.state}",
                     "code_challenge_method=S256", f"code_challenge={prompt.code_challenge}",
                     "scope=mail.read%20mail.send"):
            assert part in url
        request.cancel()

    run(scenario)


def test_without_pkce_a_prompt_has_no_challenge() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        request = ask(agent, no_pkce=True)
        prompt = await next_prompt(alice)
        assert prompt.code_challenge is None
        assert "code_challenge" not in prompt.authorization_url
        request.cancel()

    run(scenario)


def test_a_rejection_reaches_the_requester_with_its_reason_and_is_audited() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        request = ask(agent)
        prompt = await next_prompt(alice)
        await alice.reject_oauth_authorization(request_id=prompt.request_id, error="not_now")
        with pytest.raises(RequestRejected) as caught:
            await request
        assert caught.value.error == "not_now"
        (event,) = [e for e in service.audit.events if e.action == "oauth.reject"]
        assert (event.actor, event.outcome, event.details) == (
            "alice", "allowed", (("request_id", prompt.request_id),))

    run(scenario)


@pytest.mark.parametrize("answer", ["reject", "provide"])
def test_a_participant_whose_grant_forbids_answering_cannot_answer(answer: str) -> None:
    async def scenario() -> None:
        service = make_service()
        agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
        alice = service.connect("alice", grant=SecretsGrant(answer_prompts=False))
        request = ask(agent)
        prompt = await next_prompt(alice)
        with pytest.raises(GrantDenied):
            if answer == "reject":
                await alice.reject_oauth_authorization(request_id=prompt.request_id,
                                                       error="no")
            else:
                await alice.provide_oauth_authorization(request_id=prompt.request_id,
                                                        code="c", state=prompt.state)
        (event,) = [e for e in service.audit.events if e.action == f"oauth.{answer}"]
        assert (event.actor, event.outcome, event.details) == (
            "alice", "denied", (("request_id", prompt.request_id),))
        assert not request.done()
        request.cancel()

    run(scenario)


def test_an_unanswered_request_times_out() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        request = ask(agent, timeout=0.05)
        await next_prompt(alice)
        with pytest.raises(RequestTimedOut) as caught:
            await request
        assert str(caught.value) == "nobody answered the authorization request in time"

    run(scenario)


@pytest.mark.parametrize("leaving", ["alice", "agent-1"])
def test_a_request_ends_when_either_side_leaves(leaving: str) -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        request = ask(agent)
        await next_prompt(alice)
        await (alice if leaving == "alice" else agent).close()
        with pytest.raises(RequestCancelled):
            await request
        assert service.registry.pending_for_target("alice") == []

    run(scenario)


def test_a_request_to_someone_not_here_is_refused_at_once() -> None:
    async def scenario() -> None:
        service = make_service()
        agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
        with pytest.raises(ParticipantNotConnected) as caught:
            await ask(agent)
        assert str(caught.value) == "participant 'alice' is not connected"

    run(scenario)


def test_a_session_receives_no_prompts_and_its_close_ends_its_requests() -> None:
    async def scenario() -> None:
        service = make_service()
        alice = service.connect("alice")
        agent = service.session("agent-1", grant=SecretsGrant.allow_all())
        with pytest.raises(ParticipantNotConnected) as caught:
            agent.oauth_prompts()
        assert str(caught.value) == (
            "a session receives no prompts; connect the participant to receive them")
        request = ask(agent)
        prompt = await next_prompt(alice)
        assert prompt.from_participant_id == "agent-1"
        await agent.close()
        with pytest.raises(RequestCancelled):
            await request
        with pytest.raises(ParticipantNotConnected) as caught:
            await agent.list_user_secrets()
        assert str(caught.value) == "this session has ended"
        await agent.close()  # again: a no-op

    run(scenario)


def test_a_session_answering_removes_the_prompt_from_the_connected_participant() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        alice_session = service.session("alice")
        request = ask(agent)
        prompt = await next_prompt(alice)
        await alice_session.reject_oauth_authorization(request_id=prompt.request_id,
                                                       error="no")
        with pytest.raises(RequestRejected):
            await request
        with pytest.raises(asyncio.TimeoutError):
            await next_prompt(alice, timeout=0.05)

    run(scenario)


class NoNetwork:
    """A transport that must not be reached (a test that reaches it fails loudly)."""

    async def send(self, request: object, *, timeout: float, max_body: int) -> object:
        raise AssertionError("the provider was contacted")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"participant_id": ""}, "participant_id must be 1-256 characters long"),
        ({"participant_id": "agent-1", "name": "n" * 257}, "name must be 0-256 characters long"),
    ],
)
def test_a_session_with_a_bad_id_or_name_is_refused_naming_it(
    kwargs: dict[str, str], message: str
) -> None:
    service = make_service()
    with pytest.raises(InvalidInput) as caught:
        service.session(**kwargs)
    assert str(caught.value) == message


def test_a_sessions_requests_are_decided_on_the_scopes_asked_for() -> None:
    async def scenario() -> None:
        service = make_service()
        alice = service.connect("alice")
        grant = SecretsGrant(oauth=[OAuthRule(scopes=["mail.read"])])
        agent = service.session("agent-1", grant=grant)
        with pytest.raises(GrantDenied):
            await agent.get_offline_oauth_token(**ENDPOINTS, delegated_by="alice",
                                                scopes=["mail.send"])
        request = ask(agent, scopes=["mail.read"])
        await next_prompt(alice)
        request.cancel()
        assert [(e.outcome, e.detail("scopes")) for e in service.audit.events] == [
            ("denied", "mail.send"), ("allowed", "mail.read")]

    run(scenario)


def test_a_session_can_ask_without_pkce() -> None:
    async def scenario() -> None:
        service = make_service()
        alice = service.connect("alice")
        agent = service.session("agent-1", grant=SecretsGrant.allow_all())
        request = ask(agent, no_pkce=True)
        prompt = await next_prompt(alice)
        assert prompt.code_challenge is None
        request.cancel()

    run(scenario)


def test_a_session_answer_with_the_wrong_state_is_refused_before_any_exchange() -> None:
    async def scenario() -> None:
        service = make_service(transport=NoNetwork())
        agent, alice = room(service)
        alice_session = service.session("alice")
        request = ask(agent)
        prompt = await next_prompt(alice)
        with pytest.raises(StateMismatch):
            await alice_session.provide_oauth_authorization(
                request_id=prompt.request_id, code="code", state=prompt.state + "x")
        assert not request.done()
        request.cancel()

    run(scenario)


def test_closing_a_session_whose_request_just_ended_is_quiet() -> None:
    async def scenario() -> None:
        service = make_service()
        alice = service.connect("alice")
        agent = service.session("agent-1", grant=SecretsGrant.allow_all())
        request = ask(agent)
        prompt = await next_prompt(alice)
        # Rejected, but the requester has not run since: its id is still the session's.
        await alice.reject_oauth_authorization(request_id=prompt.request_id, error="no")
        await agent.close()
        with pytest.raises(RequestRejected):
            await request

    run(scenario)


def test_a_sessions_stored_credential_carrying_forbidden_scopes_is_withheld() -> None:
    async def scenario() -> None:
        service = make_service()
        service.connect("alice")
        now = service.clock()
        credential = StoredCredential(
            tokens=TokenSet(access_token="at-stored", issued_at=now, refresh_token="rt",
                            expires_at=now + 3600, scopes=("mail.read", "mail.send")),
            **ENDPOINTS,
        )
        key = service.credential_key(owner="alice", requester="agent-1",
                                     client_id=ENDPOINTS["client_id"],
                                     token_endpoint=ENDPOINTS["token_endpoint"])
        await service.refresher.save_new(key, credential)
        agent = service.session("agent-1", grant=SecretsGrant(oauth=[OAuthRule(scopes=["mail.read"])]))
        with pytest.raises(GrantDenied):
            await agent.get_offline_oauth_token(**ENDPOINTS, delegated_by="alice",
                                                scopes=["mail.read"])
        stored = service.audit.events[-1]
        assert (stored.action, stored.outcome, stored.actor, stored.details[:4]) == (
            "oauth.get_offline_token", "denied", "agent-1",
            (("target", "alice"), ("client_id", "mailbot-app"),
             ("token_endpoint", "https://login.example.com/token"),
             ("stored_scopes", "mail.read mail.send")))
        relaxed = service.session("agent-1", grant=SecretsGrant.allow_all())
        token = await relaxed.get_offline_oauth_token(**ENDPOINTS, delegated_by="alice",
                                                      scopes=["mail.read"])
        assert token == "at-stored"

    run(scenario)


class Provider:
    """A transport answering every token POST with ``body`` (200, JSON), or raising
    ``error``, or waiting for ``release`` first. It publishes no metadata: a GET (the
    revocation endpoint looked up at the token endpoint's origin) is a 404."""

    def __init__(self, body: bytes = b'{"access_token": "at-1", "token_type": "Bearer", '
                                      b'"expires_in": 3600}') -> None:
        self.body = body
        self.error: Optional[BaseException] = None
        self.release: Optional[asyncio.Event] = None
        self.posts = 0

    async def send(self, request: Any, *, timeout: float, max_body: int) -> HttpResponse:
        if request.method == "GET":
            return HttpResponse(status=404, headers=(), body=b"")
        self.posts += 1
        if self.release is not None:
            await self.release.wait()
        if self.error is not None:
            raise self.error
        return HttpResponse(status=200, headers=(("Content-Type", "application/json"),),
                            body=self.body)


async def _answered(service: SecretsService, agent: Any, alice: Any) -> tuple[Any, Any]:
    request = ask(agent)
    prompt = await next_prompt(alice)
    await alice.provide_oauth_authorization(request_id=prompt.request_id, code="code",
                                            state=prompt.state)
    return request, prompt


def test_a_redeemed_code_is_stored_with_the_scopes_asked_for_and_audited() -> None:
    reported: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx))
        provider = Provider()  # its answer names no scope: the scopes asked for apply
        service = make_service(transport=provider)
        agent, alice = room(service)
        request, _ = await _answered(service, agent, alice)
        assert await request == "at-1"
        (event,) = [e for e in service.audit.events if e.action == "credential.stored"]
        key = service.credential_key(owner="alice", requester="agent-1",
                                     client_id=ENDPOINTS["client_id"],
                                     token_endpoint=ENDPOINTS["token_endpoint"])
        assert (event.actor, event.outcome, event.reason, event.room, event.details) == (
            "alice", "ok", "authorization code redeemed", "myroom",
            (("requester", "agent-1"), ("secret_id", key.secret_id)))
        record = await service.store.get(key)
        assert record is not None
        assert StoredCredential.from_json(record.data).tokens.scopes == ("mail.read",)
        assert await agent.get_offline_oauth_token(**ENDPOINTS, delegated_by="alice",
                                                   scopes=["mail.read"]) == "at-1"
        assert provider.posts == 1

    run(scenario)
    assert reported == []


def test_an_exchange_failing_unexpectedly_cancels_the_request_and_reaches_the_answerer() -> None:
    async def scenario() -> None:
        provider = Provider()
        provider.error = RuntimeError("a bug in a transport")
        service = make_service(transport=provider)
        agent, alice = room(service)
        request = ask(agent)
        prompt = await next_prompt(alice)
        with pytest.raises(RuntimeError):
            await alice.provide_oauth_authorization(request_id=prompt.request_id, code="code",
                                                    state=prompt.state)
        with pytest.raises(RequestCancelled) as caught:
            await request
        assert caught.value.reason == "the exchange failed unexpectedly"

    run(scenario)


def test_an_exchange_cancelled_after_its_answerer_left_reports_nothing_to_the_loop() -> None:
    reported: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx))
        provider = Provider()
        provider.release = asyncio.Event()
        service = make_service(transport=provider)
        agent, alice = room(service)
        request = ask(agent)
        prompt = await next_prompt(alice)
        answer = asyncio.ensure_future(alice.provide_oauth_authorization(
            request_id=prompt.request_id, code="code", state=prompt.state))
        while provider.posts == 0:
            await asyncio.sleep(0)
        answer.cancel()
        request.cancel()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        for _ in range(3):
            await asyncio.sleep(0)

    run(scenario)
    assert reported == []


def test_prompts_waited_for_before_they_exist_arrive_one_after_another() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        stream = alice.oauth_prompts()
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        requests = [ask(agent)]
        assert (await asyncio.wait_for(first, 5)).from_participant_id == "agent-1"
        second = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        requests.append(ask(agent, scopes=["mail.send"]))
        assert (await asyncio.wait_for(second, 5)).scopes == ("mail.send",)
        await stream.aclose()
        for request in requests:
            request.cancel()

    run(scenario)


class LeaseRecordingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.ttls: list[float] = []

    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Any:
        self.ttls.append(ttl)
        return await super().acquire_lease(name, holder=holder, ttl=ttl)


class TimeoutRecordingProvider(Provider):
    def __init__(self, body: bytes) -> None:
        super().__init__(body)
        self.timeouts: list[float] = []

    async def send(self, request: Any, *, timeout: float, max_body: int) -> HttpResponse:
        if request.method == "POST":  # the token request (GETs look for metadata)
            self.timeouts.append(timeout)
        return await super().send(request, timeout=timeout, max_body=max_body)


async def _store(service: SecretsService, *, expires_in: float) -> None:
    now = service.clock()
    credential = StoredCredential(
        tokens=TokenSet(access_token="at-stored", issued_at=now - 3600, refresh_token="rt",
                        expires_at=now + expires_in, scopes=("mail.read",)),
        **ENDPOINTS,
    )
    key = service.credential_key(owner="alice", requester="agent-1",
                                 client_id=ENDPOINTS["client_id"],
                                 token_endpoint=ENDPOINTS["token_endpoint"])
    await service.refresher.save_new(key, credential)


@pytest.mark.parametrize("expires_in, token", [(60.5, "at-stored"), (59.5, "at-1")])
def test_by_default_the_service_refreshes_a_minute_before_expiry_with_its_defaults(
    expires_in: float, token: str
) -> None:
    async def scenario() -> None:
        store = LeaseRecordingStore()
        provider = TimeoutRecordingProvider(b'{"access_token": "at-1", "token_type": "Bearer"}')
        service = make_service(store=store, transport=provider)
        agent, _ = room(service)
        await _store(service, expires_in=expires_in)
        assert await agent.get_offline_oauth_token(**ENDPOINTS, delegated_by="alice",
                                                   scopes=["mail.read"]) == token
        if token == "at-1":
            assert provider.timeouts == [30.0]  # http_timeout
            assert store.ttls == [30.0]  # lease_ttl
            key = service.credential_key(owner="alice", requester="agent-1",
                                         client_id=ENDPOINTS["client_id"],
                                         token_endpoint=ENDPOINTS["token_endpoint"])
            record = await store.get(key)
            assert record is not None
            tokens = StoredCredential.from_json(record.data).tokens
            # No expires_in in the answer: the default lifetime, an hour.
            assert tokens.expires_at == service.clock() + 3600
        else:
            assert provider.posts == 0

    run(scenario)


def test_by_default_a_requester_may_have_16_requests_open_and_a_target_32() -> None:
    async def scenario() -> None:
        service = make_service()
        service.connect("alice")
        agents = [service.connect(f"agent-{n}", grant=SecretsGrant.allow_all())
                  for n in range(3)]
        requests = [ask(agents[0]) for _ in range(16)]
        await asyncio.sleep(0)
        with pytest.raises(TooManyPendingRequests):
            await ask(agents[0], timeout=0.5)
        requests += [ask(agents[1]) for _ in range(16)]
        await asyncio.sleep(0)
        assert not any(request.done() for request in requests)
        with pytest.raises(TooManyPendingRequests):
            await ask(agents[2], timeout=0.5)
        for request in requests:
            request.cancel()

    run(scenario)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"participant_id": ""}, "participant_id must be 1-256 characters long"),
        ({"participant_id": "agent-1", "name": "n" * 257}, "name must be 0-256 characters long"),
        ({"participant_id": "agent-1", "name": 7}, "name must be a string"),
    ],
)
def test_connecting_with_a_bad_id_or_name_is_refused_naming_it(
    kwargs: dict[str, Any], message: str
) -> None:
    service = make_service()
    with pytest.raises(InvalidInput) as caught:
        service.connect(**kwargs)
    assert str(caught.value) == message
    assert service.connected_participants() == []


def test_a_credential_key_names_the_room_owner_client_endpoint_and_delegate() -> None:
    service = make_service()
    key = service.credential_key(owner="alice", requester="agent-1", client_id="c",
                                 token_endpoint="https://t.example/token")
    assert key == SecretKey(room="myroom", owner="alice",
                            secret_id=credential_secret_id("c", "https://t.example/token"),
                            delegated_to="agent-1")
    other = service.credential_key(owner="alice", requester="agent-1", client_id="d",
                                   token_endpoint="https://t.example/token")
    assert other.secret_id != key.secret_id


def _oauth(service: SecretsService, scopes: Any) -> None:
    service.check_oauth(requester="agent-1", action="oauth.request_token", target="alice",
                        scopes=scopes, **ENDPOINTS)


def test_grant_decisions_are_remembered_per_arguments_and_audited_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decided: list[object] = []
    real = service_module.check_oauth_request

    def counting(*args: Any, **kw: Any) -> Any:
        decided.append(kw.get("scopes"))
        return real(*args, **kw)

    monkeypatch.setattr(service_module, "check_oauth_request", counting)
    service = make_service()
    room(service)
    for _ in range(3):
        _oauth(service, ["mail.read"])
        _oauth(service, None)
    assert decided == [["mail.read"], None]
    _oauth(service, ("mail.read",))  # another type: decided again
    assert len(decided) == 3
    assert len(service.audit.events) == 7


def test_the_remembered_decisions_start_afresh_at_their_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decided: list[object] = []
    real = service_module.check_oauth_request

    def counting(*args: Any, **kw: Any) -> Any:
        decided.append(kw.get("scopes"))
        return real(*args, **kw)

    monkeypatch.setattr(service_module, "check_oauth_request", counting)
    monkeypatch.setattr(service_module, "_MAX_REMEMBERED_DECISIONS", 2)
    service = make_service()
    room(service)
    for scopes in (["a"], ["b"], ["c"], ["c"], ["a"]):
        _oauth(service, scopes)
    # The third decision found two remembered: they were forgotten first.
    assert decided == [["a"], ["b"], ["c"], ["a"]]


def test_one_string_of_scopes_is_refused_even_after_its_letters_were_allowed() -> None:
    service = make_service()
    room(service)
    _oauth(service, ["a", "b"])
    with pytest.raises(InvalidInput) as caught:
        _oauth(service, "ab")
    assert str(caught.value) == "scopes must be a list of strings, not one string"


def test_scopes_that_cannot_be_remembered_are_refused_as_invalid() -> None:
    service = make_service()
    room(service)
    with pytest.raises(InvalidInput):
        _oauth(service, [["a"]])  # unhashable: decided without the memo


def test_each_scope_is_validated_before_the_decision() -> None:
    service = make_service()
    room(service)
    with pytest.raises(InvalidInput) as caught:
        _oauth(service, ['mail"read'])
    assert str(caught.value) == (
        "each scope must be a non-empty string of printable ASCII without spaces, quotes or "
        "backslashes (RFC 6749 §3.3)")
    assert service.audit.events == []


class Tokens:
    """An injected ``token_urlsafe``: distinct 22-character values, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def __call__(self, nbytes: int) -> str:
        value = f"tok{len(self.calls):019d}"
        self.calls.append((nbytes, value))
        return value


class LeaseHolderStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.holders: list[str] = []
        self.failing_puts = False

    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Any:
        self.holders.append(holder)
        return await super().acquire_lease(name, holder=holder, ttl=ttl)

    async def put(self, key: Any, **kw: Any) -> Any:
        if self.failing_puts:
            raise StoreError("the store is down")
        return await super().put(key, **kw)


def test_the_injected_token_source_names_the_process_and_the_requests() -> None:
    async def scenario() -> None:
        tokens = Tokens()
        store = LeaseHolderStore()
        provider = Provider()
        service = make_service(store=store, transport=provider, token_urlsafe=tokens)
        assert tokens.calls[0][0] == 16  # the refresh lease holder of this process
        agent, alice = room(service)
        await _store(service, expires_in=0)
        await agent.get_offline_oauth_token(**ENDPOINTS, delegated_by="alice",
                                            scopes=["mail.read"])
        assert store.holders == [tokens.calls[0][1]]
        request = ask(agent, scopes=["mail.send"])  # not stored: alice is asked
        prompt = await next_prompt(alice)
        made = {value for _, value in tokens.calls[1:]}
        assert prompt.request_id in made and prompt.state in made
        request.cancel()

    run(scenario)


def test_the_open_request_limits_can_be_set() -> None:
    async def scenario() -> None:
        service = make_service(max_open_per_requester=1, max_open_per_target=2)
        service.connect("alice")
        agents = [service.connect(f"agent-{n}", grant=SecretsGrant.allow_all())
                  for n in range(3)]
        requests = [ask(agents[0])]
        await asyncio.sleep(0)
        with pytest.raises(TooManyPendingRequests):
            await ask(agents[0], timeout=0.5)
        requests.append(ask(agents[1]))
        await asyncio.sleep(0)
        with pytest.raises(TooManyPendingRequests):
            await ask(agents[2], timeout=0.5)
        for request in requests:
            request.cancel()

    run(scenario)


def test_the_token_settings_reach_the_exchange() -> None:
    async def scenario() -> None:
        provider = TimeoutRecordingProvider(b'{"access_token": "at-1", "token_type": "Bearer"}')
        service = make_service(transport=provider, default_lifetime=100.0, http_timeout=5.0,
                               allow_insecure_http=True)
        agent, alice = room(service)
        request = ask(agent, authorization_endpoint="http://login.example.com/auth",
                      token_endpoint="http://login.example.com/token")
        prompt = await next_prompt(alice)
        await alice.provide_oauth_authorization(request_id=prompt.request_id, code="code",
                                                state=prompt.state)
        assert await request == "at-1"
        assert provider.timeouts == [5.0]
        (record,) = await service.store.list("myroom", "alice")
        tokens = StoredCredential.from_json(record.data).tokens
        assert tokens.expires_at == service.clock() + 100.0

    run(scenario)


@pytest.mark.parametrize("expires_in, token", [(10.5, "at-stored"), (9.5, "at-1")])
def test_the_refresh_leeway_can_be_set(expires_in: float, token: str) -> None:
    async def scenario() -> None:
        service = make_service(transport=Provider(), refresh_leeway=10.0)
        agent, _ = room(service)
        await _store(service, expires_in=expires_in)
        assert await agent.get_offline_oauth_token(**ENDPOINTS, delegated_by="alice",
                                                   scopes=["mail.read"]) == token

    run(scenario)


def test_the_injected_sleep_paces_the_retries_of_a_failing_store() -> None:
    async def scenario() -> None:
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        store = LeaseHolderStore()
        service = make_service(store=store, transport=Provider(), sleep=sleep)
        agent, alice = room(service)
        request = ask(agent)
        prompt = await next_prompt(alice)
        store.failing_puts = True
        with pytest.raises(StoreError):
            await alice.provide_oauth_authorization(request_id=prompt.request_id, code="code",
                                                    state=prompt.state)
        assert slept == [0.1, 0.2, 0.4]
        assert await request == "at-1"  # the token is valid even though it was not saved

    run(scenario)
