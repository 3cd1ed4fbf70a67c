"""The token-endpoint fault matrix: every fault x {code exchange, refresh} x {urllib, aiohttp}.

Each cell drives the public API (connect, request, prompt, provide; then
``get_offline_oauth_token`` after the clock passes expiry for the refresh) against
:class:`MisbehavingProvider` and checks four things:

1. the outcome is the typed error the fault calls for, or a correct token;
2. no hang: the call ends well inside a bound derived from the configured
   ``http_timeout`` (the bound only catches a hang, it measures nothing);
3. nothing is left pending: no open request or prompt, no task, no worker
   thread, no connection the provider still holds open;
4. the stored credential is intact unless the provider said ``invalid_grant``
   (SPEC: only that means "approve again"), and the provider saw at most one
   POST whenever it may have acted on it (a code is single-use, RFC 6749
   §4.1.2; a rotated refresh token replayed revokes the grant, RFC 6749 §10.4).

Run with ``FAULT_MATRIX_TABLE=path`` to also write the observed outcome of every
cell as a Markdown table.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Awaitable, Iterator
from typing import Callable, Optional

import pytest

from roomsecrets.core import errors
from roomsecrets.core.credentials import StoredCredential
from roomsecrets.core.oauth.retry import RetryPolicy
from roomsecrets.core.oauth.urllib_transport import UrllibTransport
from roomsecrets.core.ports import HttpTransport
from tests.core.service_kit import REDIRECT_URI, make_service, next_prompt, room, until
from tests.faults.misbehaving_provider import Fault, MisbehavingProvider
from tests.support import leak_watch

CLIENT_ID = "faulty-app"
CLIENT_SECRET = "cs-" + secrets.token_urlsafe(24)
leak_watch.remember_secret(CLIENT_SECRET)

#: The configured per-request deadline: short, so the timeout cells stay cheap, but
#: long enough that a normal answer on a loaded 2-core machine is never late (0.5 s was
#: exceeded once while the whole suite and a mutation run shared the cores).
HTTP_TIMEOUT = 2.0
RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
#: A call taking longer than this hung: every try, plus every pause, plus slack
#: for a loaded 2-core CI machine. Pauses are recorded, not slept (see Pauses).
HANG_BOUND = HTTP_TIMEOUT * RETRY.attempts + 10.0


class Expect:
    """What a cell must end in."""

    def __init__(
        self,
        error: Optional[type[errors.RoomSecretsError]] = None,
        *,
        posts: int = 1,
        status: Optional[int] = None,
        oauth_error: Optional[str] = None,
        pause: Optional[float] = None,
    ) -> None:
        #: None: a correct token.
        self.error = error
        #: POSTs the provider must have received for this call.
        self.posts = posts
        self.status = status
        self.oauth_error = oauth_error
        #: A pause of this many seconds (Retry-After) must have been taken.
        self.pause = pause


# Per retry.py: only failures the provider cannot have acted on are retried
# (connection refused; 503 and 429 say "not processed", RFC 9110 §15.6.4,
# RFC 6585 §4). A 500/502/504, a timeout, a reset or an unusable 200 may hide a
# redeemed code or a rotated refresh token: one POST, then a typed error.
EXPECTED: dict[Fault, Expect] = {
    Fault.STATUS_500: Expect(errors.ProviderUnavailable, status=500),
    Fault.STATUS_502: Expect(errors.ProviderUnavailable, status=502),
    Fault.STATUS_504: Expect(errors.ProviderUnavailable, status=504),
    Fault.STATUS_503_RETRY_AFTER: Expect(posts=2, pause=2.0),
    Fault.STATUS_429: Expect(posts=2),
    Fault.CONNECT_REFUSED: Expect(posts=1),  # the refused try never reached it
    Fault.READ_TIMEOUT: Expect(errors.ProviderTimeout),
    Fault.RESET_MID_BODY: Expect(errors.TransportError),
    Fault.ENDLESS_BODY: Expect(errors.ProviderTimeout),
    Fault.HTML_200: Expect(errors.ProviderResponseError, status=200),
    Fault.INVALID_JSON: Expect(errors.ProviderResponseError, status=200),
    Fault.HUGE_BODY: Expect(errors.ResponseTooLarge, status=200),
    Fault.NO_ACCESS_TOKEN: Expect(errors.ProviderResponseError, status=200),
    Fault.ERROR_IN_200: Expect(errors.OAuthError, status=200, oauth_error="bad_verification_code"),
    Fault.INVALID_GRANT: Expect(errors.InvalidGrant, status=400, oauth_error="invalid_grant"),
    Fault.INVALID_CLIENT: Expect(errors.InvalidClient, status=401, oauth_error="invalid_client"),
}


def _aiohttp_transport() -> HttpTransport:
    pytest.importorskip("aiohttp")
    from roomsecrets.adapters.aiohttp_transport import AiohttpTransport

    return AiohttpTransport()


TRANSPORTS: dict[str, Callable[[], HttpTransport]] = {
    "urllib": UrllibTransport,
    "aiohttp": _aiohttp_transport,
}

#: (fault, flow, transport) -> observed outcome, for FAULT_MATRIX_TABLE.
_observed: dict[tuple[str, str, str], str] = {}


class Pauses:
    """The service's ``sleep``: records each pause, sleeps a token amount, and
    reopens the provider's listener (the CONNECT_REFUSED fault ends at the pause)."""

    def __init__(self, provider: MisbehavingProvider, *, reopen: bool = True) -> None:
        self.provider = provider
        self.reopen = reopen
        self.taken: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.taken.append(seconds)
        if self.reopen:
            await self.provider.listen()
        await asyncio.sleep(min(seconds, 0.01))


async def _outcome(call: Awaitable[Optional[str]]) -> object:
    """The call's result, or the exception it raised (bounded: a hang fails the cell)."""
    try:
        return await asyncio.wait_for(call, HANG_BOUND)
    except asyncio.TimeoutError:
        raise AssertionError(f"hung: no outcome within {HANG_BOUND} s") from None
    except errors.RoomSecretsError as exc:
        return exc


def _check_outcome(outcome: object, expect: Expect, provider: MisbehavingProvider) -> str:
    """Assert property 1; return the observed outcome as table text."""
    if expect.error is None:
        assert outcome == provider.issued[-1], f"expected the issued token, got {outcome!r}"
        return "token"
    assert type(outcome) is expect.error, f"expected {expect.error.__name__}, got {outcome!r}"
    assert isinstance(outcome, errors.RoomSecretsError)
    if expect.status is not None:
        assert getattr(outcome, "status", None) == expect.status
    if expect.oauth_error is not None:
        assert isinstance(outcome, errors.OAuthError)
        assert outcome.error == expect.oauth_error
    # Only invalid_grant means "approve again"; the provider family is retryable.
    assert outcome.retryable == isinstance(outcome, errors.ProviderError)
    status = getattr(outcome, "status", None)
    return f"{type(outcome).__name__}" + (f" (HTTP {status})" if status else "")


async def _nothing_pending(service, provider: MisbehavingProvider) -> None:
    """Property 3: no open request or prompt, no task, thread or connection left."""
    assert len(service.registry) == 0
    assert service.participant("alice").prompts == {}
    me = asyncio.current_task()
    await until(lambda: all(t is me or t.done() for t in asyncio.all_tasks()))
    await until(lambda: provider.open_connections == 0)
    await until(lambda: not [t for t in threading.enumerate()
                             if t.name.startswith("roomsecrets-http")])


def _post_count_ok(expect: Expect, seen: int, pauses: Pauses) -> None:
    """Property 4, second half; and the Retry-After pause when one was sent."""
    assert seen == expect.posts, f"{seen} POSTs, expected {expect.posts}"
    if expect.pause is not None:
        assert expect.pause in pauses.taken
    if expect.error is not None and expect.posts == 1:
        assert pauses.taken == [], "a call the provider may have acted on was retried"


@pytest.fixture(params=sorted(TRANSPORTS))
def transport_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", autouse=True)
def _matrix_table() -> Iterator[None]:
    yield
    path = os.environ.get("FAULT_MATRIX_TABLE")
    if not path or not _observed:
        return
    rows = ["| fault | exchange (urllib) | exchange (aiohttp) | refresh (urllib) | "
            "refresh (aiohttp) |", "| --- | --- | --- | --- | --- |"]
    for fault in Fault:
        cells = [_observed.get((fault.value, flow, name), "not run")
                 for flow in ("exchange", "refresh") for name in ("urllib", "aiohttp")]
        rows.append(f"| {fault.value} | " + " | ".join(cells) + " |")
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(rows) + "\n")


def _service(transport: HttpTransport, pauses: Pauses):
    return make_service(transport=transport, http_timeout=HTTP_TIMEOUT, retry=RETRY,
                        sleep=pauses)


def _oauth_args(provider: MisbehavingProvider) -> dict[str, object]:
    return dict(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                authorization_endpoint=provider.authorization_endpoint,
                token_endpoint=provider.token_endpoint, scopes=["mail.read"])


async def _exchange(agent, alice, provider: MisbehavingProvider, fault: Optional[Fault]):
    """Agent asks, alice answers with a made-up code; ``fault`` meets the exchange POST.

    Returns (what provide raised or None, what request_oauth_token gave).
    """
    request = asyncio.ensure_future(agent.request_oauth_token(
        **_oauth_args(provider), from_participant_id="alice", redirect_uri=REDIRECT_URI,
        timeout=60))
    prompt = await next_prompt(alice)
    leak_watch.remember_secret(prompt.state)
    code = "code-" + secrets.token_urlsafe(24)
    leak_watch.remember_secret(code)
    if fault is Fault.CONNECT_REFUSED:
        await provider.refuse_until_next_pause()
    elif fault is not None:
        provider.faults.append(fault)
    provided = await _outcome(alice.provide_oauth_authorization(
        request_id=prompt.request_id, code=code, state=prompt.state))
    return provided, await _outcome(request)


@pytest.mark.parametrize("fault", list(Fault), ids=[f.name.lower() for f in Fault])
def test_code_exchange_meets_fault(fault: Fault, transport_name: str) -> None:
    expect = EXPECTED[fault]

    async def scenario() -> None:
        async with MisbehavingProvider() as provider:
            transport = TRANSPORTS[transport_name]()
            pauses = Pauses(provider)
            service = _service(transport, pauses)
            agent, alice = room(service)
            try:
                provided, outcome = await _exchange(agent, alice, provider, fault)
                observed = _check_outcome(outcome, expect, provider)
                # The person answering hears the same outcome as the requester.
                if expect.error is None:
                    assert provided is None
                else:
                    assert type(provided) is expect.error
                _post_count_ok(expect, len(provider.posts), pauses)
                assert all(post.get("grant_type") == "authorization_code"
                           for post in provider.posts)
                await _nothing_pending(service, provider)
                key = service.credential_key(owner="alice", requester="agent-1",
                                             client_id=CLIENT_ID,
                                             token_endpoint=provider.token_endpoint)
                stored = await service.store.get(key)
                if expect.error is None:
                    assert stored is not None
                    assert StoredCredential.from_json(stored.data).tokens.access_token == outcome
                else:
                    assert stored is None  # nothing half-stored from a failed exchange
            finally:
                await _close(transport)
            _observed[(fault.value, "exchange", transport_name)] = (
                f"{observed}, {len(provider.posts)} POST" + ("s" if len(provider.posts) > 1 else "")
            )

    asyncio.run(scenario())


@pytest.mark.parametrize("fault", list(Fault), ids=[f.name.lower() for f in Fault])
def test_refresh_meets_fault(fault: Fault, transport_name: str) -> None:
    expect = EXPECTED[fault]

    async def scenario() -> None:
        async with MisbehavingProvider() as provider:
            transport = TRANSPORTS[transport_name]()
            pauses = Pauses(provider)
            service = _service(transport, pauses)
            agent, alice = room(service)
            try:
                _, first = await _exchange(agent, alice, provider, None)
                assert first == provider.issued[-1]
                key = service.credential_key(owner="alice", requester="agent-1",
                                             client_id=CLIENT_ID,
                                             token_endpoint=provider.token_endpoint)
                before = await service.store.get(key)
                assert before is not None
                old = StoredCredential.from_json(before.data).tokens
                service.clock.advance(3600)  # the token has expired: the next call refreshes
                posts_before = len(provider.posts)
                if fault is Fault.CONNECT_REFUSED:
                    await provider.refuse_until_next_pause()
                else:
                    provider.faults.append(fault)
                outcome = await _outcome(agent.get_offline_oauth_token(
                    **_oauth_args(provider), delegated_by="alice"))
                refresh_posts = provider.posts[posts_before:]
                assert all(post.get("grant_type") == "refresh_token"
                           and post.get("refresh_token") == old.refresh_token
                           for post in refresh_posts)
                after = await service.store.get(key)
                if fault is Fault.INVALID_GRANT:
                    # The grant is gone: the credential is dropped, no error, no token.
                    assert outcome is None
                    assert after is None
                    observed = "None; credential deleted"
                    assert await agent.get_offline_oauth_token(
                        **_oauth_args(provider), delegated_by="alice") is None
                else:
                    observed = _check_outcome(outcome, expect, provider)
                    assert after is not None
                    if expect.error is None:
                        fresh = StoredCredential.from_json(after.data).tokens
                        assert fresh.access_token == outcome
                        assert fresh.refresh_token not in (None, old.refresh_token)
                    else:
                        assert (after.version, after.data) == (before.version, before.data)
                        observed += "; credential intact"
                _post_count_ok(expect, len(refresh_posts), pauses)
                await _nothing_pending(service, provider)
            finally:
                await _close(transport)
            _observed[(fault.value, "refresh", transport_name)] = (
                f"{observed}, {len(refresh_posts)} POST" + ("s" if len(refresh_posts) > 1 else "")
            )

    asyncio.run(scenario())


async def _close(transport: HttpTransport) -> None:
    aclose = getattr(transport, "aclose", None)
    if aclose is not None:
        await aclose()


@pytest.mark.parametrize("flow", ["exchange", "refresh"])
def test_an_endpoint_that_stays_refused_gives_connect_error_after_every_try(
    flow: str, transport_name: str
) -> None:
    # The CONNECT_REFUSED cell with no recovery: nothing reached the provider, so
    # every try is safe (retry.py), and after the last one the error is typed.
    async def scenario() -> None:
        async with MisbehavingProvider() as provider:
            transport = TRANSPORTS[transport_name]()
            pauses = Pauses(provider, reopen=False)
            service = _service(transport, pauses)
            agent, alice = room(service)
            try:
                if flow == "exchange":
                    await provider.stop_listening()
                    provided, outcome = await _exchange(agent, alice, provider, None)
                    assert type(provided) is errors.ConnectError
                else:
                    await _exchange(agent, alice, provider, None)
                    service.clock.advance(3600)
                    await provider.stop_listening()
                    outcome = await _outcome(agent.get_offline_oauth_token(
                        **_oauth_args(provider), delegated_by="alice"))
                assert type(outcome) is errors.ConnectError
                assert len(pauses.taken) == RETRY.attempts - 1
                assert len(provider.posts) == (0 if flow == "exchange" else 1)
                await _nothing_pending(service, provider)
            finally:
                await _close(transport)

    asyncio.run(scenario())
