"""The RFC 9207 mix-up defence: an answer's ``iss`` must name the issuer the request
went to. A missing or wrong ``iss`` is refused and the request stays open for the
right answer, as a wrong ``state`` is."""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from roomsecrets.core.pending.machine import PendingState
from roomsecrets.core.pending.registry import PendingRegistry
from tests.core.discovery_kit import ask_by_issuer, redirect_of
from tests.core.service_kit import (
    ask,
    make_service,
    next_prompt,
    room,
    running_provider,
)
from tests.support.metadata_server import MetadataServer


def run(coro):
    return asyncio.run(coro)


async def refused_then_right(alice, prompt, params, service, wrong: dict[str, object]):
    with pytest.raises(errors.IssuerMismatch) as info:
        await alice.provide_oauth_authorization(
            request_id=prompt.request_id, code=params["code"], state=params["state"], **wrong
        )
    assert isinstance(info.value, errors.InvalidInput)
    assert service.registry.state_of(prompt.request_id) is PendingState.PENDING
    assert params["code"] not in str(info.value)
    # Still open: the person's list still shows it, and the right answer completes it.
    assert (await next_prompt(alice)).request_id == prompt.request_id
    await alice.provide_oauth_authorization(
        request_id=prompt.request_id, code=params["code"], state=params["state"],
        iss=params["iss"],
    )


@pytest.mark.parametrize(
    "wrong",
    [
        lambda issuer: {},  # no iss, though the issuer promised one
        lambda issuer: {"iss": "http://127.0.0.1:1"},
        lambda issuer: {"iss": issuer + "/"},  # exact comparison (RFC 9207 §2.4)
        lambda issuer: {"iss": issuer.upper()},
    ],
    ids=["missing", "another", "trailing-slash", "upper-case"],
)
def test_a_missing_or_wrong_iss_is_refused_and_the_right_one_completes(wrong):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            prompt = await next_prompt(alice)
            params = await redirect_of(prompt)
            assert params["iss"] == provider.issuer
            await refused_then_right(alice, prompt, params, service, wrong(provider.issuer))
            assert provider.is_active(await request)
            assert provider.token_requests == [("authorization_code", "ok")]  # one exchange

    run(scenario())


def test_a_provider_that_does_not_promise_iss_may_leave_it_out_but_not_send_a_wrong_one():
    async def scenario():
        with running_provider() as provider:
            provider.send_iss = False
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            prompt = await next_prompt(alice)
            params = await redirect_of(prompt)
            assert "iss" not in params
            with pytest.raises(errors.IssuerMismatch):
                await alice.provide_oauth_authorization(
                    request_id=prompt.request_id, code=params["code"], state=params["state"],
                    iss="https://attacker.example",
                )
            await alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=params["code"], state=params["state"],
            )
            assert provider.is_active(await request)

    run(scenario())


def test_the_right_iss_is_accepted_from_a_provider_that_did_not_promise_it():
    async def scenario():
        with running_provider() as provider:
            provider.send_iss = False
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            prompt = await next_prompt(alice)
            params = await redirect_of(prompt)
            await alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=params["code"], state=params["state"],
                iss=provider.issuer,
            )
            assert provider.is_active(await request)

    run(scenario())


def test_without_a_known_issuer_iss_is_ignored():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider)  # explicit endpoints, no issuer
            prompt = await next_prompt(alice)
            params = await redirect_of(prompt)
            await alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=params["code"], state=params["state"],
                iss="https://someone-else.example",
            )
            assert provider.is_active(await request)

    run(scenario())


def test_an_issuer_without_metadata_is_still_checked_against_a_given_iss():
    async def scenario():
        with running_provider() as provider, MetadataServer() as issuer:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(
                agent, issuer.base_url, authorization_endpoint=provider.authorization_endpoint,
                token_endpoint=provider.token_endpoint,
            )
            prompt = await next_prompt(alice)
            params = await redirect_of(prompt)
            # The redirect names the provider's issuer, not the one the agent named.
            with pytest.raises(errors.IssuerMismatch):
                await alice.provide_oauth_authorization(
                    request_id=prompt.request_id, code=params["code"], state=params["state"],
                    iss=params["iss"],
                )
            await alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=params["code"], state=params["state"],
                iss=issuer.base_url,
            )
            assert provider.is_active(await request)

    run(scenario())


@pytest.mark.parametrize("iss", ["", "with space", "x" * 3000, 7])
def test_a_malformed_iss_is_invalid_input_and_the_request_stays_open(iss):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            prompt = await next_prompt(alice)
            with pytest.raises(errors.InvalidInput):
                await alice.provide_oauth_authorization(
                    request_id=prompt.request_id, code="c", state=prompt.state, iss=iss
                )
            assert service.registry.state_of(prompt.request_id) is PendingState.PENDING
            request.cancel()

    run(scenario())


def test_only_the_addressee_learns_whether_the_iss_was_wrong():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            prompt = await next_prompt(alice)
            with pytest.raises(errors.NotAddressedToYou):
                await agent.provide_oauth_authorization(
                    request_id=prompt.request_id, code="c", iss="https://wrong.example"
                )
            request.cancel()

    run(scenario())


# --- the registry ---------------------------------------------------------------------


def registry() -> PendingRegistry[str]:
    return PendingRegistry(clock=lambda: 0.0)


def create(reg: PendingRegistry[str], **kw):
    args = dict(
        requester="agent", target="alice", client_id="c",
        authorization_endpoint="https://as.example/a", token_endpoint="https://as.example/t",
        redirect_uri="https://app.example/cb", code_verifier=None, timeout=60,
        build_authorization_url=lambda r: "https://as.example/a?state=" + r.oauth_state,
        waiter=lambda outcome: None,
    )
    args.update(kw)
    return reg.create(**args)


def test_the_registry_checks_iss_after_who_answers_and_the_state():
    reg = registry()
    request = create(reg, issuer="https://as.example", iss_required=True)
    with pytest.raises(errors.NotAddressedToYou):
        reg.provide(request.request_id, by="mallory")
    with pytest.raises(errors.StateMismatch):
        reg.provide(request.request_id, by="alice", state="wrong", iss="https://as.example")
    with pytest.raises(errors.IssuerMismatch):
        reg.provide(request.request_id, by="alice", state=request.oauth_state)
    with pytest.raises(errors.InvalidInput):
        reg.provide(request.request_id, by="alice", iss=b"https://as.example")  # type: ignore[arg-type]
    assert reg.state_of(request.request_id) is PendingState.PENDING
    reg.provide(request.request_id, by="alice", state=request.oauth_state, iss="https://as.example")
    assert reg.state_of(request.request_id) is PendingState.EXCHANGING


@pytest.mark.parametrize(
    "kw",
    [{"issuer": ""}, {"issuer": 5}, {"iss_required": True}, {"issuer": "https://a", "iss_required": 1}],
)
def test_the_registry_refuses_an_inconsistent_issuer(kw):
    reg = registry()
    with pytest.raises(errors.InvalidInput):
        create(reg, **kw)
    assert len(reg) == 0
