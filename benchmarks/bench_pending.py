"""Pending requests: throughput, the whole memory of an open request, cost at scale.

* create + answer: one full registry cycle (create, provide, exchange_succeeded)
  per call, with 100 other requests open; informational.
* memory per open request, registry alone: tracemalloc over the 100,000
  requests (20,000 with --quick) of the big registry, each opened as the service
  opens one (fresh 64-character verifier, one shared URL builder): the registry
  entry, the request and its strings, the indexes and the deadline heap. This is
  the figure issue #23 measured (1021 B then). Target: < 900 bytes. The URL is
  built when read, not stored (about 350 bytes of each request before).
* memory per open request, whole (informational): 10,000 requests (2,000 with
  --quick) opened through the real service path: ``SecretsService`` on a
  ``MemoryStore``, agents with an allow-all grant calling ``request_oauth_token``
  as tasks, each with its own arguments from ``json.loads`` of a request document
  (fresh strings, as a server parsing JSON has; nothing shared or interned
  between requests), naming an issuer (so the service keeps a binding) whose
  metadata an in-process transport serves. Spread over agents and people within
  the default bounds (16 open per requester, 32 per target). Once all are
  pending, tracemalloc's traced memory minus its value before the tasks were
  created, divided by the count: the registry entry, the request, the prompt
  (which holds the URL the person opens), the binding, every future and timer of
  the wait, the coroutine frames, the task, the input strings. Participants, the
  discovery cache and the grant-decision memo exist before (a warm-up request to
  every person fills the caches). The next rows split the figure by the file that
  allocated it, then in two: what each call of ``SecretsService.request_token``
  left allocated when it returned (the request's own state: registry entry,
  prompt and URL, PKCE pair, the wait's future and coroutine) and what the
  agent's call around it holds (its task, the client's frame and the values it
  keeps, the input strings). Most of it is the asyncio task and coroutine frames
  of a caller that waits, which any async API pays.
* cost of answering at 100,000 open vs at 100 open (20,000 with --quick): the
  same registry cycle measured interleaved on the two registries. Target: ratio
  <= 1.3 (no scan anywhere).
"""

from __future__ import annotations

import asyncio
import gc
import json
import secrets
import sys
import time
import tracemalloc
from typing import Any, Callable, Optional, cast

from roomsecrets import MemoryStore, SecretsGrant, SecretsService
from roomsecrets.core.oauth.authorization import build_authorization_url
from roomsecrets.core.oauth.http import HttpRequest, HttpResponse
from roomsecrets.core.oauth.pkce import generate_pkce_pair
from roomsecrets.core.pending.registry import Outcome, PendingRegistry, PendingRequest

from .harness import Row, interleaved_best

BENCH = "pending"
ISSUER = "https://login.example.com/v2.0"
AUTHORIZATION_ENDPOINT = "https://login.example.com/oauth2/v2.0/authorize"
TOKEN_ENDPOINT = "https://login.example.com/oauth2/v2.0/token"
REVOCATION_ENDPOINT = "https://login.example.com/oauth2/v2.0/revoke"
CLIENT_ID = "0f3c7a52-9d1e-4b8a-a1f0-6c2d9e4b7a13"
REDIRECT_URI = "https://rooms.example.com/oauth/callback"
SCOPES = ("openid", "offline_access", "Mail.Read")
# SecretsService's default bounds: open requests per requester, per target.
PER_REQUESTER, PER_TARGET = 16, 32
MEMORY_TARGET = 900  # bytes per open request in the registry (issue #23)


def _ignore(outcome: Outcome[str]) -> None:
    pass


def _url_template() -> Callable[[str, str], str]:
    """A fast stand-in for ``build_authorization_url`` giving the very same string.

    The real builder costs tens of microseconds (urlencode); 100,000 calls would
    dominate the run. Splitting one real URL around its state and challenge gives
    strings of exactly the size the service stores.
    """
    state_mark, challenge_mark = "STATEMARK", "CHALLENGEMARK"
    real = build_authorization_url(
        authorization_endpoint=AUTHORIZATION_ENDPOINT,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        state=state_mark,
        scopes=SCOPES,
        code_challenge=challenge_mark,
    )
    head, rest = real.split(state_mark)
    middle, tail = rest.split(challenge_mark)

    def url(state: str, challenge: str) -> str:
        return f"{head}{state}{middle}{challenge}{tail}"

    sample = url("s" * 22, "c" * 43)
    assert sample == build_authorization_url(
        authorization_endpoint=AUTHORIZATION_ENDPOINT, client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI, state="s" * 22, scopes=SCOPES, code_challenge="c" * 43,
    )
    return url


# The participant ids of the registries the answer cycle is timed on.
REQUESTERS = [f"agent-{i}" for i in range(10_000)]
TARGETS = [f"person-{i}" for i in range(5_000)]


def _open_realistic(registry: PendingRegistry[str], count: int) -> None:
    """Open ``count`` requests as the service would: fresh verifier, one shared builder."""
    requesters, targets = REQUESTERS, TARGETS
    url = _url_template()
    # Sizes as real as it gets, at a fraction of the cost: a
    # 64-character verifier like generate_pkce_pair()'s, and one real challenge
    # (only its length matters for the URL, which is still one fresh string each).
    verifier_length = len(generate_pkce_pair()[0])
    challenge = generate_pkce_pair()[1]

    def build(request: PendingRequest) -> str:
        return url(request.oauth_state, challenge)

    for i in range(count):
        verifier = secrets.token_urlsafe(48)
        assert len(verifier) == verifier_length
        registry.create(
            requester=requesters[i % len(requesters)],
            target=targets[i % len(targets)],
            client_id=CLIENT_ID,
            authorization_endpoint=AUTHORIZATION_ENDPOINT,
            token_endpoint=TOKEN_ENDPOINT,
            redirect_uri=REDIRECT_URI,
            scopes=SCOPES,
            code_verifier=verifier,
            timeout=300,
            build_authorization_url=build,
            waiter=_ignore,
        )


def _cycle(registry: PendingRegistry[str]) -> Callable[[], None]:
    """One request from creation to its outcome (the registry's own work only)."""
    url_prefix = AUTHORIZATION_ENDPOINT + "?state="
    verifier = "v" * 64  # a constant: the cycle measures the registry alone

    def cycle() -> None:
        request = registry.create(
            requester="bench-agent",
            target="bench-person",
            client_id=CLIENT_ID,
            authorization_endpoint=AUTHORIZATION_ENDPOINT,
            token_endpoint=TOKEN_ENDPOINT,
            redirect_uri=REDIRECT_URI,
            scopes=SCOPES,
            code_verifier=verifier,
            timeout=300,
            build_authorization_url=lambda request: url_prefix + request.oauth_state,
            waiter=_ignore,
        )
        registry.provide(request.request_id, by="bench-person", state=request.oauth_state)
        registry.exchange_succeeded(request.request_id, "tokens")

    return cycle


class _MetadataTransport:
    """Answers every request with the issuer's metadata (RFC 8414): the only
    request the service sends before a prompt when the caller names an issuer."""

    def __init__(self) -> None:
        self._body = json.dumps({
            "issuer": ISSUER,
            "authorization_endpoint": AUTHORIZATION_ENDPOINT,
            "token_endpoint": TOKEN_ENDPOINT,
            "revocation_endpoint": REVOCATION_ENDPOINT,
            "authorization_response_iss_parameter_supported": True,
        }).encode()

    async def send(self, request: HttpRequest, *, timeout: float, max_body: int) -> HttpResponse:
        return HttpResponse(
            status=200, headers=(("Content-Type", "application/json"),), body=self._body
        )


def _request_document(person: str) -> str:
    """What an agent's HTTP call to a server carries: parsed afresh for each request."""
    return json.dumps({
        "client_id": CLIENT_ID,
        "from_participant_id": person,
        "redirect_uri": REDIRECT_URI,
        "issuer": ISSUER,
        "authorization_endpoint": AUTHORIZATION_ENDPOINT,
        "token_endpoint": TOKEN_ENDPOINT,
        "scopes": list(SCOPES),
    })


async def _until_pending(service: SecretsService, tasks: list[asyncio.Task[str]]) -> None:
    """Run the loop until every task's request is open (a task that ended failed)."""
    while len(service.registry) < len(tasks):
        await asyncio.sleep(0)
        for task in tasks:
            if task.done():
                task.result()  # raises what the request raised
                raise AssertionError("a request ended before it was answered")


async def _cancel(service: SecretsService, tasks: list[asyncio.Task[str]]) -> None:
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert len(service.registry) == 0


def _where(filename: str) -> str:
    """The breakdown row an allocation belongs to, by the file that made it."""
    path = filename.replace("\\", "/")
    if "/roomsecrets/" in path:
        return "roomsecrets/"
    if "/asyncio/" in path or path.endswith("/_weakrefset.py"):
        return "asyncio"
    if path.endswith("/json/decoder.py"):
        return "json"
    return "rest"


class _OpeningMeter:
    """Wraps a service's ``request_token``: the traced bytes each call left
    allocated when it returned, summed (what opening the requests holds)."""

    def __init__(self, service: SecretsService) -> None:
        self.inner = service.request_token
        self.held = 0

    def __call__(self, **arguments: Any) -> Any:
        before = tracemalloc.get_traced_memory()[0]
        opened = self.inner(**arguments)
        self.held += tracemalloc.get_traced_memory()[0] - before
        return opened


def _registry_memory(registry: PendingRegistry[str], count: int) -> float:
    """Open ``count`` requests in ``registry`` (see _open_realistic): bytes per request."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    _open_realistic(registry, count)
    gc.collect()
    per_request = (tracemalloc.get_traced_memory()[0] - before) / count
    tracemalloc.stop()
    return per_request


async def _whole_memory(count: int) -> tuple[float, dict[str, float]]:
    """Bytes per open request opened through the service; and by where allocated."""
    service = SecretsService(store=MemoryStore(), room="bench", transport=_MetadataTransport())
    grant = SecretsGrant.allow_all()  # one grant: the decision memo holds one entry per person
    agents = [service.connect(f"agent-{i}", grant=grant) for i in range(-(-count // PER_REQUESTER))]
    people = [f"person-{i}" for i in range(-(-count // PER_TARGET))]
    for person in people:
        service.connect(person)
    documents = [_request_document(person) for person in people]
    first, second = json.loads(documents[0]), json.loads(documents[0])
    assert first["client_id"] == second["client_id"] and first["client_id"] is not second["client_id"]

    def ask(index: int) -> asyncio.Task[str]:
        # Request i: agent i mod agents asks person i mod people; within the bounds.
        agent = agents[index % len(agents)]
        arguments = json.loads(documents[index % len(people)])
        return asyncio.create_task(agent.request_oauth_token(**arguments))

    # Warm-up: one request to every person fills the discovery cache and the
    # grant-decision memo (bounded caches, not per-request state); then cancelled.
    warm = [ask(index) for index in range(len(people))]
    await _until_pending(service, warm)
    await _cancel(service, warm)

    # The caller's list of its tasks is made before: it is not the service's memory.
    slots: list[Optional[asyncio.Task[str]]] = [None] * count
    meter = _OpeningMeter(service)
    service.request_token = meter  # type: ignore[method-assign]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(count):
        slots[index] = ask(index)
    tasks = cast("list[asyncio.Task[str]]", slots)
    await _until_pending(service, tasks)
    gc.collect()
    per_request = (tracemalloc.get_traced_memory()[0] - before) / count
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    by_part = dict.fromkeys(("roomsecrets/", "asyncio", "json", "rest"), 0.0)
    for stat in snapshot.statistics("filename"):
        by_part[_where(stat.traceback[0].filename)] += stat.size / count
    by_part["opened"] = meter.held / count
    await _cancel(service, tasks)
    return per_request, by_part


def run(quick: bool) -> list[Row]:
    # --quick is a smoke test: fewer open requests (tracemalloc is slow).
    memory_count = 2_000 if quick else 10_000
    big_count = 20_000 if quick else 100_000
    number, repeat = (1_000, 7) if quick else (3_000, 9)

    per_request, by_part = asyncio.run(_whole_memory(memory_count))
    python = "Python {}.{}".format(*sys.version_info[:2])

    big: PendingRegistry[str] = PendingRegistry(clock=time.time)
    registry_alone = _registry_memory(big, big_count)
    small: PendingRegistry[str] = PendingRegistry(clock=time.time)
    _open_realistic(small, 100)
    best = interleaved_best(
        {"small": _cycle(small), "big": _cycle(big)}, number=number, repeat=repeat
    )
    ratio = best["big"] / best["small"]
    return [
        Row(BENCH, "registry create+provide+exchange cycle, 100 open", 1 / best["small"],
            "cycles/s"),
        Row(BENCH, f"memory per open request, registry alone, {big_count:,} open, {python}",
            registry_alone, "bytes", f"< {MEMORY_TARGET}", registry_alone < MEMORY_TARGET),
        Row(BENCH, f"memory per open request, whole, {memory_count:,} open via service",
            per_request, "bytes"),
        Row(BENCH, "  of which allocated in roomsecrets/ (request, prompt, binding, frames)",
            by_part["roomsecrets/"], "bytes"),
        Row(BENCH, "  of which allocated in asyncio (task, futures, timer, callbacks)",
            by_part["asyncio"], "bytes"),
        Row(BENCH, "  of which the caller's fresh input strings (json.loads)", by_part["json"],
            "bytes"),
        Row(BENCH, "  of which the rest (URL, request id and state, the call's coroutine)",
            by_part["rest"], "bytes"),
        Row(BENCH, "  of which SecretsService.request_token holds (entry, prompt, URL, wait)",
            by_part["opened"], "bytes"),
        Row(BENCH, "  of which the agent's call around it (task, client frame, its values, input)",
            per_request - by_part["opened"], "bytes"),
        Row(BENCH, f"registry answer cycle at {big_count:,} open / at 100 open", ratio, "x",
            "<= 1.3", ratio <= 1.3),
    ]
