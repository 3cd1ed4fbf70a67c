"""``request_secret``: an agent asks a person to type in a secret (an API key for a
URL); the answer is stored as the person's secret, delegated as asked, and comes back
later with no prompt. It lives on the same pending machine and prompt stream as OAuth."""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from roomsecrets.core.api import OAuthPrompt, SecretPrompt
from roomsecrets.core.grants import SecretRule, SecretsGrant
from roomsecrets.core.secret_requests import requested_secret_id
from tests.core.service_kit import make_service, room
from tests.support.leak_watch import remember_secret

API = "https://api.example.com/v1"
KEY = b"sk-live-0123456789abcdef"
# The leak scan looks for it in every log record, error, audit event and repr.
remember_secret(KEY.decode())


async def next_secret_prompt(person, timeout: float = 5) -> SecretPrompt:
    prompts = person.prompts()
    try:
        while True:
            prompt = await asyncio.wait_for(prompts.__anext__(), timeout)
            if isinstance(prompt, SecretPrompt):
                return prompt
    finally:
        await prompts.aclose()


def asking(agent, **kw):
    args = dict(url=API, type="text/plain", from_participant_id="alice", timeout=30)
    args.update(kw)
    return asyncio.create_task(agent.request_secret(**args))


def test_the_person_types_it_in_it_is_stored_as_theirs_and_comes_back_without_a_prompt():
    async def scenario():
        service = make_service()
        agent, alice = room(service)
        request = asking(agent)
        prompt = await next_secret_prompt(alice)
        assert (prompt.from_participant_id, prompt.url, prompt.type, prompt.delegate_to) == (
            "agent-1", API, "text/plain", "agent-1")
        assert prompt.expires_at == service.clock() + 30
        await alice.provide_secret(request_id=prompt.request_id, data=KEY)
        assert await request == KEY
        # Stored as alice's secret, delegated to the agent, named by the URL.
        (info,) = await alice.list_user_secrets()
        assert (info.id, info.type, info.name, info.delegated_to) == (
            requested_secret_id(API, "text/plain"), "text/plain", API, "agent-1")
        assert await agent.get_secret(secret_id=info.id, delegated_by="alice") == KEY
        # Asked again: no prompt, the stored secret.
        assert await asyncio.wait_for(agent.request_secret(
            url=API, type="text/plain", from_participant_id="alice", timeout=30), 2) == KEY
        assert alice._participant.prompts == {}
        # Another type is another secret: a new prompt.
        other = asking(agent, type="application/json")
        again = await next_secret_prompt(alice)
        assert again.type == "application/json"
        await alice.reject_secret(request_id=again.request_id, error="user_cancelled")
        with pytest.raises(errors.RequestRejected):
            await other

    asyncio.run(scenario())


def test_a_secret_given_to_someone_else_is_never_handed_back_unasked():
    async def scenario():
        service = make_service()
        agent, alice = room(service)
        service.connect("bob")
        # alice gave bob a key for the API (through bob's own request, say).
        await alice.set_secret(secret_id=requested_secret_id(API, "text/plain"), data=KEY,
                               type="text/plain", delegated_to="bob")
        # The agent naming bob as the delegate does not get bob's key: alice is asked.
        request = asking(agent, delegate_to="bob")
        prompt = await next_secret_prompt(alice)
        assert prompt.delegate_to == "bob"
        await alice.reject_secret(request_id=prompt.request_id, error="user_cancelled")
        with pytest.raises(errors.RequestRejected):
            await request

    asyncio.run(scenario())


def test_delegate_to_stores_it_for_someone_else():
    async def scenario():
        service = make_service()
        agent, alice = room(service)
        service.connect("bob")
        request = asking(agent, delegate_to="bob")
        prompt = await next_secret_prompt(alice)
        assert prompt.delegate_to == "bob"
        await alice.provide_secret(request_id=prompt.request_id, data=KEY)
        assert await request == KEY
        (info,) = await alice.list_user_secrets()
        assert info.delegated_to == "bob"

    asyncio.run(scenario())


def test_a_grant_without_a_matching_secret_rule_never_prompts():
    async def scenario():
        service = make_service()
        grant = SecretsGrant(secret_requests=[SecretRule(url="https://other.example/*")])
        agent, alice = room(service, grant=grant)
        with pytest.raises(errors.GrantDenied, match=r"rule 0 url 'https://api\.example\.com/v1'"):
            await agent.request_secret(url=API, type="text/plain", from_participant_id="alice")
        assert alice._participant.prompts == {}
        (event,) = [e for e in service.audit.events if e.action == "secret.request"]
        assert event.outcome == "denied"

    asyncio.run(scenario())


def test_answers_of_the_wrong_kind_and_strangers_answers_change_nothing():
    async def scenario():
        service = make_service()
        agent, alice = room(service)
        mallory = service.connect("mallory")
        request = asking(agent)
        prompt = await next_secret_prompt(alice)
        # Only the person asked may answer.
        with pytest.raises(errors.NotAddressedToYou):
            await mallory.provide_secret(request_id=prompt.request_id, data=b"evil")
        # An OAuth answer to a secret request is no answer.
        with pytest.raises(errors.UnknownRequest):
            await alice.provide_oauth_authorization(request_id=prompt.request_id, code="c")
        with pytest.raises(errors.UnknownRequest):
            await alice.reject_oauth_authorization(request_id=prompt.request_id, error="x")
        assert prompt.request_id in alice._participant.prompts
        await alice.provide_secret(request_id=prompt.request_id, data=KEY)
        assert await request == KEY
        # Answered at most once.
        with pytest.raises(errors.UnknownRequest):
            await alice.provide_secret(request_id=prompt.request_id, data=b"again")
        assert await agent.get_secret(
            secret_id=requested_secret_id(API, "text/plain"), delegated_by="alice") == KEY

    asyncio.run(scenario())


def test_a_secret_answer_to_an_oauth_request_is_no_answer():
    async def scenario():
        from tests.core.service_kit import ask, next_prompt, running_provider

        service = make_service()
        agent, alice = room(service)
        with running_provider() as provider:
            request = ask(agent, provider, timeout=30)
            prompt = await next_prompt(alice)
            assert isinstance(prompt, OAuthPrompt)
            with pytest.raises(errors.UnknownRequest):
                await alice.provide_secret(request_id=prompt.request_id, data=KEY)
            with pytest.raises(errors.UnknownRequest):
                await alice.reject_secret(request_id=prompt.request_id, error="x")
            await alice.reject_oauth_authorization(request_id=prompt.request_id, error="no")
            with pytest.raises(errors.RequestRejected):
                await request

    asyncio.run(scenario())


def test_a_timeout_and_a_cancelled_requester_leave_nothing_pending_and_nothing_stored():
    async def scenario():
        service = make_service()
        agent, alice = room(service)
        with pytest.raises(errors.RequestTimedOut):
            await agent.request_secret(url=API, type="text/plain", from_participant_id="alice",
                                       timeout=0.05)
        request = asking(agent)
        prompt = await next_secret_prompt(alice)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert alice._participant.prompts == {}
        with pytest.raises(errors.UnknownRequest):
            await alice.provide_secret(request_id=prompt.request_id, data=KEY)
        assert await alice.list_user_secrets() == []

    asyncio.run(scenario())


def test_oauth_prompts_leave_out_secret_prompts():
    async def scenario():
        service = make_service()
        agent, alice = room(service)
        request = asking(agent)
        await next_secret_prompt(alice)
        oauth_only = alice.oauth_prompts()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(oauth_only.__anext__(), 0.1)
        request.cancel()

    asyncio.run(scenario())


def test_a_store_failure_when_saving_still_hands_the_secret_over_and_tells_the_person():
    async def scenario():
        from roomsecrets.core.memory_store import MemoryStore

        class FailingPuts(MemoryStore):
            fail = False

            async def put(self, key, **kw):
                if self.fail:
                    raise errors.StoreError("the store is down")
                return await super().put(key, **kw)

        store = FailingPuts()
        service = make_service(store=store)
        agent, alice = room(service)
        request = asking(agent)
        prompt = await next_secret_prompt(alice)
        store.fail = True
        with pytest.raises(errors.StoreError, match="the store is down"):
            await alice.provide_secret(request_id=prompt.request_id, data=KEY)
        # The requester still gets what the person typed; nothing was stored.
        assert await request == KEY
        store.fail = False
        assert await alice.list_user_secrets() == []

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"type": "plain"}, "type must be a MIME type"),
        ({"url": ""}, "url"),
        ({"url": "x" * 5000}, "url"),
        ({"url": "https://a/\ud800"}, "url"),
        ({"from_participant_id": ""}, "from participant"),
        ({"timeout": 0}, "timeout"),
        ({"delegate_to": ""}, "delegate_to"),
    ],
)
def test_bad_arguments_are_refused_before_anything_happens(kw, message):
    async def scenario():
        service = make_service()
        agent, alice = room(service)
        args = dict(url=API, type="text/plain", from_participant_id="alice", timeout=30)
        args.update(kw)
        with pytest.raises(errors.InvalidInput, match=message):
            await agent.request_secret(**args)
        assert alice._participant.prompts == {}
        assert not [e for e in service.audit.events if e.action == "secret.request"]

    asyncio.run(scenario())


def test_an_answer_over_the_quota_is_refused_and_the_request_stays_open():
    async def scenario():
        service = make_service(max_secret_bytes_per_participant=32)
        agent, alice = room(service)
        request = asking(agent)
        prompt = await next_secret_prompt(alice)
        with pytest.raises(errors.QuotaExceeded):
            await alice.provide_secret(request_id=prompt.request_id, data=b"k" * 33)
        # Nothing stored, nothing answered: a smaller answer still goes through.
        assert await alice.list_user_secrets() == []
        assert not request.done()
        await alice.provide_secret(request_id=prompt.request_id, data=KEY)
        assert await request == KEY

    asyncio.run(scenario())


def test_a_person_whose_secrets_are_full_is_not_asked():
    async def scenario():
        service = make_service(max_secrets_per_participant=1)
        agent, alice = room(service)
        await alice.set_secret(secret_id="only", data=b"x")
        with pytest.raises(errors.QuotaExceeded):
            await agent.request_secret(url=API, type="text/plain", from_participant_id="alice")
        assert alice._participant.prompts == {}

    asyncio.run(scenario())


def test_a_long_url_names_the_stored_secret_cut_to_the_longest_name_allowed():
    from roomsecrets.core.inputs import MAX_NAME
    from roomsecrets.core.secret_requests import requested_secret_name

    exact = "https://a/" + "x" * (MAX_NAME - 10)
    assert requested_secret_name(exact) == exact
    longer = exact + "yz"
    cut = requested_secret_name(longer)
    assert cut == exact[: MAX_NAME - 1] + "\u2026" and len(cut) == MAX_NAME

    async def scenario():
        service = make_service()
        agent, alice = room(service)
        request = asking(agent, url=longer)
        prompt = await next_secret_prompt(alice)
        assert prompt.url == longer  # the prompt shows the whole URL
        await alice.provide_secret(request_id=prompt.request_id, data=KEY)
        assert await request == KEY
        (info,) = await alice.list_user_secrets()
        assert info.name == cut

    asyncio.run(scenario())


def test_the_requested_secret_id_is_fixed_by_url_and_type_and_never_shared():
    assert requested_secret_id("https://api.example.com", "text/plain") == (
        "requested-e12b13875a3251f5ced4d066f82e0022")
    # Length-prefixed: moving characters between the URL and the type is another id.
    assert requested_secret_id("https://a/b", "c/d") != requested_secret_id("https://a/", "bc/d")
    assert requested_secret_id("https://ü/", "text/plain").startswith("requested-")


def test_a_person_who_gives_up_while_the_store_writes_does_not_undo_the_save():
    async def scenario():
        from roomsecrets.core.memory_store import MemoryStore

        class SlowPuts(MemoryStore):
            started = None

            async def put(self, key, **kw):
                if self.started is not None:
                    self.started.set()
                    await asyncio.sleep(0.2)
                return await super().put(key, **kw)

        store = SlowPuts()
        service = make_service(store=store)
        agent, alice = room(service)
        request = asking(agent)
        prompt = await next_secret_prompt(alice)
        store.started = asyncio.Event()
        answering = asyncio.create_task(
            alice.provide_secret(request_id=prompt.request_id, data=KEY))
        await store.started.wait()
        answering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await answering
        assert await request == KEY
        await asyncio.sleep(0.3)
        assert await agent.get_secret(
            secret_id=requested_secret_id(API, "text/plain"), delegated_by="alice") == KEY

    asyncio.run(scenario())
