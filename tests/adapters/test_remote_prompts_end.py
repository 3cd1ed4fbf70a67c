"""RemoteSecretsClient: prompts that ended drop out (SPEC.md), as they do in process.

The server sends ``{"type": "oauth_prompt_ended", "request_id"}`` when a prompt ends;
after it, neither a later ``oauth_prompts()`` iterator nor one that had the prompt
queued yields it. Frames arrive in order, so once a later prompt has been received
the earlier end has been too: the tests need no waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets.core import errors
from roomsecrets.core.api import OAuthPrompt
from roomsecrets.core.grants import SecretsGrant
from tests.adapters.server_kit import approve_via_callback, oauth_args, running_provider, serving


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def take(prompts: AsyncIterator[OAuthPrompt]) -> OAuthPrompt:
    return await asyncio.wait_for(prompts.__anext__(), 10)


@pytest.mark.parametrize("ending", ["answered_via_callback", "rejected", "requester_left", "timed_out"])
def test_a_prompt_that_ended_is_not_yielded_by_a_later_or_a_waiting_iterator(ending: str) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                grant = SecretsGrant.allow_all()
                alice = served.remote("alice")
                agent = served.remote("agent-1", grant=grant)
                leaver = served.remote("agent-2", grant=grant)
                tasks: list[asyncio.Task[str]] = []

                def ask(requester, **kw: object) -> asyncio.Task[str]:
                    task = asyncio.ensure_future(
                        requester.request_oauth_token(**oauth_args(provider, **kw),
                                                      from_participant_id="alice")
                    )
                    tasks.append(task)
                    return task

                try:
                    await alice.connect()
                    await leaver.connect()
                    seen = alice.oauth_prompts()
                    ask(agent)
                    first = await take(seen)
                    ending_request = ask(leaver, timeout=1 if ending == "timed_out" else 60)
                    ended = await take(seen)
                    assert ended.from_participant_id == "agent-2"
                    # An iterator already under way: it yields `first` and holds `ended`.
                    waiting = alice.oauth_prompts()
                    assert (await take(waiting)).request_id == first.request_id

                    if ending == "answered_via_callback":
                        status, _, _ = await asyncio.to_thread(
                            approve_via_callback, ended.authorization_url
                        )
                        assert status == 200
                        assert provider.is_active(await ending_request)
                    elif ending == "rejected":
                        await alice.reject_oauth_authorization(
                            request_id=ended.request_id, error="user_cancelled"
                        )
                        with pytest.raises(errors.RequestRejected):
                            await ending_request
                    elif ending == "requester_left":
                        await leaver.close()
                        with pytest.raises(errors.RoomSecretsError):
                            await ending_request
                    else:
                        with pytest.raises(errors.RequestTimedOut):
                            await ending_request

                    # A new prompt comes after the end on the same socket.
                    ask(agent)
                    last = await take(seen)
                    assert last.request_id not in (first.request_id, ended.request_id)
                    assert (await take(waiting)).request_id == last.request_id
                    later = alice.oauth_prompts()
                    assert [(await take(later)).request_id, (await take(later)).request_id] == [
                        first.request_id, last.request_id
                    ]
                    # Answering the ended one is refused; the open ones still can be.
                    with pytest.raises(errors.UnknownRequest):
                        await alice.reject_oauth_authorization(
                            request_id=ended.request_id, error="user_cancelled"
                        )
                    for prompt in (first, last):
                        await alice.reject_oauth_authorization(
                            request_id=prompt.request_id, error="user_cancelled"
                        )
                    for task in tasks[::2]:
                        with pytest.raises(errors.RequestRejected):
                            await task
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    for client in (agent, leaver, alice):
                        await client.close()

    run(scenario())
