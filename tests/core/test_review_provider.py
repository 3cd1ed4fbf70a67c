"""A hostile or broken provider against the core's provider-facing code (review).

Each test here failed before the fix it names:

* a malformed answer (a ``Content-Length`` of ``²``, a negative chunk size) made
  ``UrllibTransport`` blame our request (InvalidInput) instead of the answer;
* a token response nested hundreds of levels deep was kept in ``TokenSet.extra``,
  stored, and could not be read back from a deeper call stack (RecursionError);
* the discovery cache trusted an entry while the clock stood before the time it
  was stored, so a clock stepped back kept a 5-second failure for as long as the step.

Stdlib and pytest only (tests/core runs on CPython 3.9 with nothing else).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from typing import Callable, TypeVar

import pytest

from roomsecrets.core import errors
from roomsecrets.core.oauth.discovery import MetadataCache, ProviderMetadata
from roomsecrets.core.oauth.http import HttpRequest, HttpResponse
from roomsecrets.core.oauth.retry import RetryPolicy
from roomsecrets.core.oauth.token_response import parse_token_response
from roomsecrets.core.oauth.tokens import TokenSet
from roomsecrets.core.oauth.urllib_transport import UrllibTransport
from tests.core.service_kit import approve_next, ask, make_service, room, running_provider
from tests.support.fake_provider import CannedResponse
from tests.support.raw_server import RawServer

_T = TypeVar("_T")

# --- 1. a malformed answer is the answer's fault, not the request's -----------------------

@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


_MALFORMED = "malformed HTTP response"


@pytest.mark.parametrize(
    ("raw_server", "kinds"),
    [
        # RFC 9112 §6.3: an invalid Content-Length is an unrecoverable framing error.
        # "²" passes str.isdigit() but not int(), and http.client keeps the header.
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\nConnection: close\r\n\r\n{}",
         {_MALFORMED}),
        # A negative chunk size: http.client 3.11 reads with a negative length;
        # 3.9 names it an IncompleteRead itself.
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nab\r\n0\r\n\r\n",
         {_MALFORMED, "connection failed (IncompleteRead)"}),
    ],
    ids=["superscript-content-length", "negative-chunk-size"],
    indirect=["raw_server"],
)
def test_a_malformed_answer_is_a_transport_error_not_a_bad_request(raw_server, kinds):
    async def send() -> object:
        request = HttpRequest(
            method="POST", url=f"http://127.0.0.1:{raw_server.port}/token", body=b"code=c-1"
        )
        return await UrllibTransport().send(request, timeout=10.0, max_body=1024)

    with pytest.raises(errors.TransportError) as info:
        asyncio.run(send())
    assert not isinstance(info.value, errors.InvalidInput)
    prefix = f"POST 127.0.0.1:{raw_server.port}: "
    assert str(info.value).startswith(prefix)
    assert str(info.value)[len(prefix):] in kinds


_FINAL = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n" + (
    b'{"access_token":"x"}'
)


@pytest.mark.parametrize(
    "raw_server",
    [
        # RFC 8297: a CDN may send Early Hints before the answer.
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + _FINAL,
        # RFC 2518 §10.1: a slow server says it is still working, maybe several times.
        b"HTTP/1.1 102 Processing\r\n\r\n" * 3 + _FINAL,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" + _FINAL,
        # RFC 9110 §15.2: every 1xx is interim, the unassigned ones too.
        b"HTTP/1.1 199 Unassigned\r\nX-Later: 1\r\n\r\n" + _FINAL,
    ],
    ids=["103", "102-thrice", "100-then-103", "199"],
    indirect=True,
)
def test_interim_answers_are_skipped_and_the_final_one_is_returned(raw_server):
    # RFC 9110 §15.2: "A client MUST be able to parse one or more 1xx responses
    # received prior to a final response". Returning the 1xx would drop the tokens
    # of a code the provider has already redeemed.
    async def send() -> HttpResponse:
        request = HttpRequest(
            method="POST", url=f"http://127.0.0.1:{raw_server.port}/token", body=b"code=c-1"
        )
        return await UrllibTransport().send(request, timeout=10.0, max_body=1024)

    response = asyncio.run(send())
    assert response.status == 200
    assert response.body == b'{"access_token":"x"}'
    assert response.header("Content-Type") == "application/json"
    assert response.header("Link") is None


@pytest.mark.parametrize(
    "raw_server", [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"], indirect=True
)
def test_a_switching_protocols_answer_we_never_asked_for_is_final(raw_server):
    async def send() -> HttpResponse:
        request = HttpRequest(method="GET", url=f"http://127.0.0.1:{raw_server.port}/m")
        return await UrllibTransport().send(request, timeout=10.0, max_body=1024)

    assert asyncio.run(send()).status == 101


# --- 2. nothing is stored that cannot be read back ----------------------------------------


def _token_body(nesting: int) -> bytes:
    """A good token response whose extra field ``x`` is ``nesting`` lists deep."""
    return (
        b'{"access_token":"at-1","token_type":"Bearer","x":'
        + b"[" * nesting + b"]" * nesting + b"}"
    )


def _parse(body: bytes) -> TokenSet:
    return parse_token_response(
        status=200, headers=(("Content-Type", "application/json"),), body=body, now=1000.0
    )


def _from_deeper_stack(frames: int, call: Callable[[], _T]) -> _T:
    # A store read in a web handler runs many frames deeper than the parse did.
    return call() if frames == 0 else _from_deeper_stack(frames - 1, call)


def test_a_token_response_nested_too_deep_to_store_is_refused():
    with pytest.raises(errors.ProviderResponseError, match="not JSON or form data"):
        _parse(_token_body(100))


def test_a_token_response_32_levels_deep_is_kept_and_33_is_not():
    # The response object is level 1; x adds 31 lists, the deepest allowed.
    tokens = _parse(_token_body(31))
    value = tokens.extra["x"]
    for _ in range(30):
        (value,) = value
    assert value == []
    with pytest.raises(errors.ProviderResponseError):
        _parse(_token_body(32))


def test_no_token_set_is_kept_that_a_deeper_caller_cannot_read_back():
    for nesting in range(900, 1001, 4):
        try:
            tokens = _parse(_token_body(nesting))
        except errors.ProviderResponseError:
            continue  # refused: nothing to store
        raw = tokens.to_json()
        again = _from_deeper_stack(100, functools.partial(TokenSet.from_json, raw))
        assert again.access_token == "at-1"


def test_a_deeply_nested_token_response_fails_the_exchange_and_stores_nothing():
    async def scenario() -> None:
        with running_provider() as provider:
            service = make_service(retry=RetryPolicy(attempts=1))
            agent, alice = room(service)
            request = ask(agent, provider)
            provider.queue_token_responses(
                CannedResponse(
                    status=200,
                    headers=(("Content-Type", "application/json"),),
                    body=_token_body(40),
                )
            )
            with pytest.raises(errors.ProviderResponseError):
                await approve_next(alice)
            with pytest.raises(errors.ProviderResponseError):
                await request
            assert await service.store.list("myroom", "alice") == []
            assert len(service.registry) == 0

    asyncio.run(scenario())


# --- 3. the discovery cache and a clock that steps back -----------------------------------

ISSUER = "https://as.example"


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_failure_does_not_outlive_its_time_when_the_clock_steps_back():
    async def scenario() -> None:
        calls: list[str] = []

        async def fetch(issuer: str) -> ProviderMetadata:
            calls.append(issuer)
            if len(calls) == 1:
                raise errors.ProviderUnavailable("down", status=503)
            return ProviderMetadata(issuer=issuer)

        clock = _Clock()
        cache = MetadataCache(fetch=fetch, clock=clock, failure_ttl=5)
        with pytest.raises(errors.ProviderUnavailable):
            await cache.get(ISSUER)
        clock.now -= 86400  # NTP steps a clock that booted a day ahead back
        assert (await cache.get(ISSUER)).issuer == ISSUER
        assert calls == [ISSUER, ISSUER]

    asyncio.run(scenario())


def test_cached_metadata_is_fetched_again_when_the_clock_steps_back():
    async def scenario() -> None:
        calls: list[str] = []

        async def fetch(issuer: str) -> ProviderMetadata:
            calls.append(issuer)
            return ProviderMetadata(issuer=issuer, token_endpoint=f"{issuer}/t{len(calls)}")

        clock = _Clock()
        cache = MetadataCache(fetch=fetch, clock=clock, ttl=10)
        assert (await cache.get(ISSUER)).token_endpoint == f"{ISSUER}/t1"
        assert (await cache.get(ISSUER)).token_endpoint == f"{ISSUER}/t1"  # same instant
        clock.now -= 1  # even a small step back: the entry's age is unknown
        assert (await cache.get(ISSUER)).token_endpoint == f"{ISSUER}/t2"
        # At the time it was stored, and until its ttl, the entry is fresh.
        clock.now += 9.5
        assert (await cache.get(ISSUER)).token_endpoint == f"{ISSUER}/t2"
        assert len(calls) == 2

    asyncio.run(scenario())


# --- 4. a secret echoed with invisible characters inside ----------------------------------


def test_a_refresh_token_echoed_with_nul_bytes_inside_is_still_redacted():
    refresh_token = "rt-" + "Kq3vX9wLmP2sT7yB" * 3
    # Every 8 characters a NUL: no 12-character piece of the token survives for the
    # scrub to find, and safe_text then joins the pieces back together.
    echoed = "\x00".join(refresh_token[i : i + 8] for i in range(0, len(refresh_token), 8))
    body = (
        b'{"error":"invalid_grant","error_description":"refresh token '
        + echoed.replace("\x00", "\\u0000").encode()
        + b' is revoked"}'
    )
    with pytest.raises(errors.InvalidGrant) as info:
        parse_token_response(
            status=400,
            headers=(("Content-Type", "application/json"),),
            body=body,
            now=1000.0,
            redact=(refresh_token,),
        )
    assert refresh_token not in str(info.value)
    assert refresh_token[:12] not in str(info.value)


@pytest.mark.parametrize("joiner", ["\u00ad", "\u200b", "\x7f", "\t"])
def test_a_client_secret_echoed_with_invisible_characters_inside_is_redacted(joiner):
    secret = "cs_" + "Zr8pQ2nW" * 5
    echoed = joiner.join(secret[i : i + 6] for i in range(0, len(secret), 6))
    error = errors.oauth_error_from_response(
        "invalid_client", f"bad secret {echoed}", status=401, redact=(secret,)
    )
    assert secret not in str(error)
    assert secret[:12] not in str(error)
    assert "[redacted]" in (error.description or "")


def test_a_secret_holding_characters_outside_rfc_6749_5_2_is_redacted_when_echoed():
    # '"' and '\\' are outside the §5.2 set: the text loses them, so the secret is
    # looked for without them too. No 12 token characters in a row: only the secret's
    # cleaned form can find it.
    secret = 'Hq7rLx2m"Vn9kTb4w\\Rz5yPc8d"Jf3s'
    error = errors.oauth_error_from_response(
        "invalid_client", f"secret {secret} refused", status=401, redact=(secret,)
    )
    assert "Hq7rLx2mVn9kTb4w" not in str(error)
    assert "[redacted]" in (error.description or "")
