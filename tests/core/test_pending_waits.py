"""How a requester waits for its pending request: one future per request and one
loop timer for all their due times (``SecretsService._watch``), not a wait_for per
request. The wait gives up after ``timeout`` seconds of loop time whatever the
service's clock does; the service's clock still decides the request's deadline."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from roomsecrets.core import errors
from tests.core.service_kit import REDIRECT_URI, make_service, next_prompt, room

ENDPOINTS = dict(
    client_id="mailbot-app",
    authorization_endpoint="https://as.example/authorize",
    token_endpoint="https://as.example/token",
    scopes=["mail.read"],
)


def ask(agent: Any, timeout: float) -> asyncio.Task[str]:
    """Start ``agent`` asking alice; no provider is contacted before she answers."""
    return asyncio.create_task(agent.request_oauth_token(
        **ENDPOINTS, from_participant_id="alice", redirect_uri=REDIRECT_URI, timeout=timeout))


async def until_open(service: Any, count: int) -> None:
    """Run the loop until ``count`` requests are open, scheduling no timer itself."""
    for _ in range(10_000):
        if len(service.registry) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError("the requests did not open")


async def cancelled(*tasks: asyncio.Task[str]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_open_requests_share_one_loop_timer() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _alice = room(service)
        loop = asyncio.get_running_loop()
        scheduled: list[float] = []
        call_at = loop.call_at

        def counting_call_at(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            scheduled.append(when)
            return call_at(when, *args, **kwargs)

        loop.call_at = counting_call_at  # type: ignore[method-assign]  # call_later uses it too
        tasks = [ask(agent, timeout=60) for _ in range(12)]
        await until_open(service, 12)
        assert len(scheduled) == 1  # a wait_for per request would schedule 12
        await cancelled(*tasks)
        assert len(service.registry) == 0

    asyncio.run(scenario())


def test_a_later_request_with_a_shorter_timeout_times_out_first_while_the_clock_stands_still(
) -> None:
    async def scenario() -> None:
        service = make_service()  # its clock never moves by itself
        agent, _alice = room(service)
        slow = ask(agent, timeout=30)
        await until_open(service, 1)
        quick = ask(agent, timeout=0.05)  # due before the timer armed for the first
        with pytest.raises(errors.RequestTimedOut):
            await asyncio.wait_for(quick, 5)
        assert not slow.done() and len(service.registry) == 1
        await cancelled(slow)

    asyncio.run(scenario())


def test_a_wait_times_out_on_time_after_the_service_clock_steps_back() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, alice = room(service)
        request = ask(agent, timeout=0.1)
        await next_prompt(alice)
        service.clock.advance(-3600)  # an NTP step back: the deadline is an hour away
        with pytest.raises(errors.RequestTimedOut):
            await asyncio.wait_for(request, 5)
        assert len(service.registry) == 0

    asyncio.run(scenario())


def test_requests_that_ended_early_do_not_pile_up_behind_one_still_open() -> None:
    async def scenario() -> None:
        service = make_service()
        agent, _alice = room(service)
        waiting = ask(agent, timeout=60)
        await until_open(service, 1)
        for _ in range(200):  # each ends long before its due time
            task = ask(agent, timeout=60)
            await until_open(service, 2)
            await cancelled(task)
        assert len(service.registry) == 1
        # What the timer still holds stays proportional to what is open.
        assert len(service._dues) <= 2 * len(service.registry) + 33
        await cancelled(waiting)

    asyncio.run(scenario())


def test_an_idle_service_is_not_kept_alive_by_its_event_loop() -> None:
    async def scenario() -> weakref.ref[Any]:
        service = make_service()
        agent, _alice = room(service)
        request = ask(agent, timeout=60)
        await until_open(service, 1)
        await cancelled(request)
        assert service.idle or len(service.registry) == 0
        del request
        return weakref.ref(service)

    async def outer() -> None:
        gone = await scenario()
        for _ in range(3):  # the cancelled task's last callbacks run
            await asyncio.sleep(0)
        gc.collect()
        # The loop still runs: nothing it has scheduled may hold the service.
        assert gone() is None

    asyncio.run(outer())


def test_a_service_reused_in_a_new_loop_still_times_requests_out() -> None:
    service = make_service()
    agent, _alice = room(service)
    first = asyncio.new_event_loop()
    # Opened in a loop that is then closed with the request still waiting in it.
    left = first.create_task(agent.request_oauth_token(
        **ENDPOINTS, from_participant_id="alice", redirect_uri=REDIRECT_URI, timeout=0.2))
    first.run_until_complete(until_open(service, 1))
    first.close()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        problems: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: problems.append(context))
        with pytest.raises(errors.RequestTimedOut):
            await asyncio.wait_for(ask(agent, timeout=0.5), 5)
        assert len(service.registry) == 0  # the old request expired too
        assert problems == []

    asyncio.run(scenario())
    left._log_destroy_pending = False  # type: ignore[attr-defined]  # its loop is gone on purpose
