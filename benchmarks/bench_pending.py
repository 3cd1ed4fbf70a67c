"""The pending-request registry: throughput, memory per open request, cost at scale.

* create + answer: one full cycle (create, provide, exchange_succeeded) per call,
  with 100 other requests open; informational.
* memory per open request: tracemalloc over 100,000 open requests (20,000 with
  --quick), each with a fresh 64-character PKCE verifier and a fresh
  authorization URL of the real length (what the core's
  ``build_authorization_url`` returns), spread over 10,000 requesters and 5,000
  targets within the default bounds. Target: under 1 KiB. The next row shows how
  much of that is the URL and the verifier the caller hands in.
* cost of answering at 100,000 open vs at 100 open: the same cycle measured
  interleaved on the two registries. Target: ratio <= 1.3 (no scan anywhere).
"""

from __future__ import annotations

import functools
import gc
import secrets
import sys
import time
import tracemalloc
from typing import Callable

from roomsecrets.core.oauth.authorization import build_authorization_url
from roomsecrets.core.oauth.pkce import generate_pkce_pair
from roomsecrets.core.pending.registry import Outcome, PendingRegistry

from .harness import Row, interleaved_best

BENCH = "pending"
AUTHORIZATION_ENDPOINT = "https://login.example.com/oauth2/v2.0/authorize"
TOKEN_ENDPOINT = "https://login.example.com/oauth2/v2.0/token"
CLIENT_ID = "0f3c7a52-9d1e-4b8a-a1f0-6c2d9e4b7a13"
REDIRECT_URI = "https://rooms.example.com/oauth/callback"
SCOPES = ("openid", "offline_access", "Mail.Read")


def _ignore(outcome: Outcome[str]) -> None:
    pass


def _url_template() -> Callable[[str, str], str]:
    """A fast stand-in for ``build_authorization_url`` giving the very same string.

    The real builder costs tens of microseconds (urlencode); 100,000 calls under
    tracemalloc would dominate the run. Splitting one real URL around its state
    and challenge gives strings of exactly the size the service stores.
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


# Connected participants exist whether or not they have requests open: their
# ids are made once, outside the measured memory.
REQUESTERS = [f"agent-{i}" for i in range(10_000)]
TARGETS = [f"person-{i}" for i in range(5_000)]


def _open_realistic(registry: PendingRegistry[str], count: int) -> None:
    """Open ``count`` requests as the service would: fresh verifier, fresh full URL."""
    requesters, targets = REQUESTERS, TARGETS
    url = _url_template()
    # Sizes as real as it gets, at a fraction of the cost under tracemalloc: a
    # 64-character verifier like generate_pkce_pair()'s, and one real challenge
    # (only its length matters for the URL, which is still one fresh string each).
    verifier_length = len(generate_pkce_pair()[0])
    challenge = generate_pkce_pair()[1]
    build = functools.partial(url, challenge=challenge)
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
            build_authorization_url=url_prefix.__add__,
            waiter=_ignore,
        )
        registry.provide(request.request_id, by="bench-person", state=request.oauth_state)
        registry.exchange_succeeded(request.request_id, "tokens")

    return cycle


def run(quick: bool) -> list[Row]:
    # --quick is a smoke test: 20,000 open instead of 100,000 (tracemalloc is slow).
    big_count = 20_000 if quick else 100_000
    number, repeat = (1_000, 7) if quick else (3_000, 9)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    big: PendingRegistry[str] = PendingRegistry(clock=time.time)
    _open_realistic(big, big_count)
    gc.collect()
    per_request = (tracemalloc.get_traced_memory()[0] - before) / big_count
    tracemalloc.stop()
    assert len(big) == big_count
    # What the caller hands in and the registry only keeps: the URL and the verifier.
    handed_in = sum(
        sys.getsizeof(request.authorization_url) + sys.getsizeof(request.code_verifier)
        for target in TARGETS
        for request in big.pending_for_target(target)
    ) / big_count

    small: PendingRegistry[str] = PendingRegistry(clock=time.time)
    _open_realistic(small, 100)
    best = interleaved_best(
        {"small": _cycle(small), "big": _cycle(big)}, number=number, repeat=repeat
    )
    ratio = best["big"] / best["small"]
    return [
        Row(BENCH, "create+provide+exchange cycle, 100 open", 1 / best["small"], "cycles/s"),
        Row(BENCH, f"memory per open request, {big_count:,} open", per_request, "bytes",
            "< 1024", per_request < 1024),
        Row(BENCH, "  of which URL + PKCE verifier", handed_in, "bytes"),
        Row(BENCH, f"answer cycle at {big_count:,} open / at 100 open", ratio, "x",
            "<= 1.3", ratio <= 1.3),
    ]
