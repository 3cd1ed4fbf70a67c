"""Pinned: provider metadata (RFC 8414, OpenID Connect Discovery 1.0) and its cache
(issue #12, mutation pass on ``core/discovery.py``): the exact status and size edges
of a metadata answer, what its errors say, which values a document may hold, and the
cache's bounds."""

from __future__ import annotations

import asyncio
import gc
import json

import pytest

from roomsecrets.core import errors
from roomsecrets.core.oauth.discovery import (
    MAX_METADATA_BYTES,
    MetadataCache,
    ProviderMetadata,
    check_issuer,
    parse_metadata_response,
    resolve_endpoints,
)

ISSUER = "https://as.example"


def document(issuer: str = ISSUER, **fields: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/authorize",
        "token_endpoint": issuer + "/token",
    }
    doc.update(fields)
    return doc


def parse(body: object = None, *, status: int = 200, raw: bytes | None = None, headers=(),
          **kw) -> ProviderMetadata:
    data = raw if raw is not None else json.dumps(body).encode()
    return parse_metadata_response(
        issuer=ISSUER, status=status, headers=headers, body=data, now=1000.0, **kw
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the issuer (RFC 8414 §2) ----------------------------------------------------------


def test_an_issuer_with_an_empty_query_is_refused_too():
    # urlsplit reports no query for a bare "?", but the issuer still has one.
    for issuer in ("https://as.example/?", "https://as.example?"):
        with pytest.raises(errors.InvalidInput) as info:
            check_issuer(issuer)
        assert str(info.value) == "issuer must not contain a query (RFC 8414 §2)"


def test_a_good_issuer_is_returned_as_given():
    assert check_issuer("https://as.example/tenant/") == "https://as.example/tenant/"


# --- the status and size of the answer --------------------------------------------------


def test_a_document_of_exactly_the_cap_is_read():
    raw = json.dumps(document()).encode()
    padded = raw[:-1] + b" " * (MAX_METADATA_BYTES - len(raw)) + b"}"
    assert len(padded) == MAX_METADATA_BYTES
    assert parse(raw=padded).token_endpoint == ISSUER + "/token"


def test_a_document_over_a_given_cap_is_refused_with_its_size_and_status():
    raw = json.dumps(document()).encode()
    assert parse(raw=raw, max_body=len(raw)).issuer == ISSUER
    with pytest.raises(errors.ResponseTooLarge) as info:
        parse(raw=raw, max_body=len(raw) - 1)
    assert info.value.status == 200
    assert str(info.value) == (
        f"metadata of {len(raw)} bytes exceeds the {len(raw) - 1}-byte cap"
    )


@pytest.mark.parametrize("status", [429, 500, 599])
def test_429_and_every_5xx_are_retryable_and_name_their_status(status):
    with pytest.raises(errors.ProviderUnavailable) as info:
        parse(raw=b"busy", status=status)
    assert info.value.status == status and info.value.retryable
    assert str(info.value) == f"the issuer's metadata is unavailable (HTTP {status})"
    assert info.value.retry_after is None


def test_a_retry_after_date_counts_from_the_receipt_time():
    # RFC 9110 §10.2.3: 00:17:10 GMT on 1 Jan 1970 is 1030 s after the epoch; now is 1000.
    with pytest.raises(errors.ProviderUnavailable) as info:
        parse(raw=b"", status=503, headers=(("Retry-After", "Thu, 01 Jan 1970 00:17:10 GMT"),))
    assert info.value.retry_after == 30.0


@pytest.mark.parametrize("status", [400, 428, 430, 499])
def test_every_other_4xx_means_not_published_here_and_says_so(status):
    with pytest.raises(errors.ProviderMetadataNotFound) as info:
        parse(raw=b"", status=status)
    assert info.value.status == status
    assert str(info.value) == f"no metadata at this well-known URL (HTTP {status})"


@pytest.mark.parametrize("status", [300, 301, 302, 307, 308, 399])
def test_a_redirect_means_not_published_here_and_is_not_followed(status):
    with pytest.raises(errors.ProviderMetadataNotFound) as info:
        parse(document(), status=status, headers=(("Location", "https://elsewhere.example/m"),))
    assert info.value.status == status
    assert str(info.value) == (
        f"no metadata at this well-known URL (HTTP {status}; redirects are not followed)"
    )


@pytest.mark.parametrize("status", [199, 201, 204, 299])
def test_a_status_other_than_200_below_300_is_an_unusable_answer(status):
    with pytest.raises(errors.InvalidProviderMetadata) as info:
        parse(document(), status=status)
    assert type(info.value) is errors.InvalidProviderMetadata
    assert info.value.status == status
    assert str(info.value) == f"the metadata answer is HTTP {status}, not 200 (RFC 8414 §3.2)"


# --- what the document holds -------------------------------------------------------------


def test_a_body_that_is_not_a_json_object_says_its_size():
    with pytest.raises(errors.InvalidProviderMetadata) as info:
        parse(raw=b"[1, 2]")
    assert info.value.status == 200
    assert str(info.value) == "the metadata is not a JSON object (RFC 8414 §3.2; 6 bytes)"


def test_a_wrong_issuer_is_named_in_the_error_shortened_and_a_non_string_by_its_type():
    doc = document()
    doc["issuer"] = "https://evil.example/" + "a" * 300
    with pytest.raises(errors.InvalidProviderMetadata) as info:
        parse(doc)
    assert info.value.status == 200
    # At most 120 characters of the stranger's text: 117 and "...".
    shown = ("https://evil.example/" + "a" * 300)[:117] + "..."
    assert str(info.value) == (
        f"the metadata names issuer {shown!r}, not {ISSUER!r}; "
        "its data must not be used (RFC 8414 §3.3)"
    )
    doc["issuer"] = 7
    with pytest.raises(errors.InvalidProviderMetadata) as info:
        parse(doc)
    assert str(info.value).startswith("the metadata names issuer 'int', not ")


def test_an_unusable_endpoint_is_refused_with_the_answers_status():
    with pytest.raises(errors.InvalidProviderMetadata) as info:
        parse(document(token_endpoint="https://as.example/t#x"))
    assert info.value.status == 200
    assert "the metadata's token_endpoint" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_an_endpoint_the_document_leaves_out_or_sets_to_null_is_none():
    doc = document(revocation_endpoint=None)
    del doc["authorization_endpoint"]
    metadata = parse(doc)
    assert metadata.authorization_endpoint is None
    assert metadata.revocation_endpoint is None
    assert metadata.token_endpoint == ISSUER + "/token"


@pytest.mark.parametrize(
    "value", [["client_secret_post", 5], "client_secret_post", {"a": 1}, None, [None]]
)
def test_a_supported_list_that_is_not_a_list_of_strings_is_left_out(value):
    metadata = parse(document(
        token_endpoint_auth_methods_supported=value,
        revocation_endpoint_auth_methods_supported=value,
        code_challenge_methods_supported=value,
    ))
    assert metadata.token_endpoint_auth_methods_supported is None
    assert metadata.revocation_endpoint_auth_methods_supported is None
    assert metadata.code_challenge_methods_supported is None


def test_every_supported_list_is_kept_in_order():
    metadata = parse(document(
        token_endpoint_auth_methods_supported=["client_secret_post", "private_key_jwt"],
        revocation_endpoint_auth_methods_supported=["client_secret_basic"],
        code_challenge_methods_supported=[],
    ))
    assert metadata.token_endpoint_auth_methods_supported == (
        "client_secret_post", "private_key_jwt"
    )
    assert metadata.revocation_endpoint_auth_methods_supported == ("client_secret_basic",)
    assert metadata.code_challenge_methods_supported == ()


# --- ProviderMetadata's own checks -----------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"issuer": ""}, "ProviderMetadata.issuer must be a non-empty string"),
        ({"issuer": 5}, "ProviderMetadata.issuer must be a non-empty string"),
        ({"token_endpoint": ""},
         "ProviderMetadata.token_endpoint must be None or a non-empty string"),
        ({"authorization_endpoint": 5},
         "ProviderMetadata.authorization_endpoint must be None or a non-empty string"),
        ({"revocation_endpoint": b"https://as.example/r"},
         "ProviderMetadata.revocation_endpoint must be None or a non-empty string"),
        ({"iss_parameter_supported": 1},
         "ProviderMetadata.iss_parameter_supported must be True or False"),
        ({"iss_parameter_supported": None},
         "ProviderMetadata.iss_parameter_supported must be True or False"),
    ],
)
def test_provider_metadata_refuses_values_no_document_can_give(kw, message):
    args: dict[str, object] = {"issuer": ISSUER}
    args.update(kw)
    with pytest.raises(errors.InvalidInput) as info:
        ProviderMetadata(**args)
    assert str(info.value) == message


def test_provider_metadata_holds_what_it_was_given():
    metadata = ProviderMetadata(
        issuer=ISSUER, authorization_endpoint="https://a.example/a",
        token_endpoint="https://a.example/t", revocation_endpoint="https://a.example/r",
        iss_parameter_supported=True,
    )
    assert (metadata.authorization_endpoint, metadata.token_endpoint,
            metadata.revocation_endpoint) == (
        "https://a.example/a", "https://a.example/t", "https://a.example/r"
    )
    assert metadata.iss_parameter_supported is True
    assert ProviderMetadata(issuer=ISSUER).iss_parameter_supported is False


# --- resolve_endpoints --------------------------------------------------------------------


def test_a_missing_endpoint_says_whether_the_issuer_published_metadata_at_all():
    with pytest.raises(errors.ProviderMetadataNotFound) as info:
        resolve_endpoints(issuer=ISSUER, metadata=None,
                          authorization_endpoint=None, token_endpoint=None)
    assert str(info.value) == (
        f"authorization_endpoint was not given and the issuer {ISSUER!r} publishes no metadata"
    )
    with pytest.raises(errors.ProviderMetadataNotFound) as info:
        resolve_endpoints(issuer=ISSUER, metadata=ProviderMetadata(issuer=ISSUER),
                          authorization_endpoint="https://a.example/a", token_endpoint=None)
    assert str(info.value) == (
        f"token_endpoint was not given and the issuer {ISSUER!r} names none in its metadata"
    )


def test_both_endpoints_come_from_the_metadata_when_none_is_given():
    metadata = ProviderMetadata(issuer=ISSUER, authorization_endpoint="https://a.example/a",
                                token_endpoint="https://a.example/t")
    assert resolve_endpoints(issuer=ISSUER, metadata=metadata, authorization_endpoint=None,
                             token_endpoint=None) == ("https://a.example/a", "https://a.example/t")
    assert resolve_endpoints(issuer=ISSUER, metadata=metadata,
                             authorization_endpoint="https://b.example/a",
                             token_endpoint="https://b.example/t") == (
        "https://b.example/a", "https://b.example/t"
    )


# --- the cache ----------------------------------------------------------------------------


def counting_fetch(calls: list[str]):
    async def fetch(issuer: str) -> ProviderMetadata:
        calls.append(issuer)
        return ProviderMetadata(issuer=issuer, token_endpoint=f"{issuer}/t{len(calls)}")

    return fetch


def test_forgetting_an_issuer_that_is_not_cached_is_harmless():
    calls: list[str] = []
    cache = MetadataCache(fetch=counting_fetch(calls), clock=Clock())
    cache.forget(ISSUER)
    assert calls == []


def test_a_full_cache_drops_expired_entries_first():
    async def scenario():
        calls: list[str] = []
        clock = Clock()
        cache = MetadataCache(fetch=counting_fetch(calls), clock=clock, ttl=10,
                              max_entries=2)
        await cache.get("https://a.example")
        clock.now += 5
        await cache.get("https://b.example")
        clock.now += 5  # a expires now; b has 5 s left
        await cache.get("https://c.example")
        await cache.get("https://b.example")
        await cache.get("https://c.example")
        assert calls == ["https://a.example", "https://b.example", "https://c.example"]

    asyncio.run(scenario())


def test_a_full_cache_of_fresh_entries_starts_again_empty():
    async def scenario():
        calls: list[str] = []
        cache = MetadataCache(fetch=counting_fetch(calls), clock=Clock(), max_entries=2)
        for issuer in ("https://a.example", "https://b.example", "https://c.example",
                       "https://c.example", "https://a.example"):
            await cache.get(issuer)
        assert calls == ["https://a.example", "https://b.example", "https://c.example",
                         "https://a.example"]

    asyncio.run(scenario())


def test_refetching_a_cached_issuer_in_a_full_cache_keeps_the_others():
    async def scenario():
        calls: list[str] = []
        clock = Clock()
        cache = MetadataCache(fetch=counting_fetch(calls), clock=clock, ttl=10,
                              max_entries=2)
        await cache.get("https://a.example")
        await cache.get("https://b.example")
        cache_a = await cache.get("https://a.example")
        clock.now += 5
        cache.forget("https://a.example")
        fresh_a = await cache.get("https://a.example")
        await cache.get("https://b.example")
        assert fresh_a != cache_a
        assert calls == ["https://a.example", "https://b.example", "https://a.example"]

    asyncio.run(scenario())


def test_a_cached_failure_is_raised_again_without_the_old_traceback():
    async def scenario():
        calls: list[str] = []

        async def fetch(issuer: str) -> ProviderMetadata:
            calls.append(issuer)
            raise errors.ProviderUnavailable("down", status=503)

        cache = MetadataCache(fetch=fetch, clock=Clock(), failure_ttl=5)
        with pytest.raises(errors.ProviderUnavailable):
            await cache.get(ISSUER)
        with pytest.raises(errors.ProviderUnavailable) as info:
            await cache.get(ISSUER)
        assert calls == [ISSUER]
        assert info.value.status == 503

    asyncio.run(scenario())


@pytest.mark.parametrize("good", [0, 0.0, 1, 2.5])
def test_cache_times_may_be_zero_or_any_positive_number(good):
    calls: list[str] = []
    MetadataCache(fetch=counting_fetch(calls), clock=Clock(), ttl=good, failure_ttl=good)


@pytest.mark.parametrize("name", ["ttl", "failure_ttl"])
def test_a_bad_cache_time_is_named_in_the_error(name):
    calls: list[str] = []
    with pytest.raises(errors.InvalidInput) as info:
        MetadataCache(fetch=counting_fetch(calls), clock=Clock(), **{name: -1})
    assert str(info.value) == f"{name} must be a number of seconds >= 0"


def test_a_zero_ttl_fetches_every_time():
    async def scenario():
        calls: list[str] = []
        cache = MetadataCache(fetch=counting_fetch(calls), clock=Clock(), ttl=0)
        await cache.get(ISSUER)
        await cache.get(ISSUER)
        assert calls == [ISSUER, ISSUER]

    asyncio.run(scenario())


def test_a_failure_is_remembered_for_a_fraction_of_a_second_too():
    async def scenario():
        calls: list[str] = []

        async def fetch(issuer: str) -> ProviderMetadata:
            calls.append(issuer)
            raise errors.ConnectError("refused")

        clock = Clock()
        cache = MetadataCache(fetch=fetch, clock=clock, failure_ttl=0.5)
        for _ in range(2):
            with pytest.raises(errors.ConnectError):
                await cache.get(ISSUER)
        assert calls == [ISSUER]
        clock.now += 0.5
        with pytest.raises(errors.ConnectError):
            await cache.get(ISSUER)
        assert calls == [ISSUER, ISSUER]

    asyncio.run(scenario())


def test_a_failure_not_remembered_takes_no_place_in_a_full_cache():
    async def scenario():
        calls: list[str] = []

        async def fetch(issuer: str) -> ProviderMetadata:
            calls.append(issuer)
            if issuer == "https://down.example":
                raise errors.ConnectError("refused")
            return ProviderMetadata(issuer=issuer)

        cache = MetadataCache(fetch=fetch, clock=Clock(), failure_ttl=0, max_entries=1)
        await cache.get(ISSUER)
        with pytest.raises(errors.ConnectError):
            await cache.get("https://down.example")
        await cache.get(ISSUER)
        assert calls == [ISSUER, "https://down.example"]

    asyncio.run(scenario())


def test_a_failed_fetch_nobody_waits_for_any_more_is_not_reported_as_unretrieved():
    # asyncio reports a task whose exception nobody read ("Task exception was never
    # retrieved") when it is collected; the cache reads it, as every caller may be gone.
    async def scenario():
        loop = asyncio.get_running_loop()
        reported: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        release = asyncio.Event()

        async def fetch(issuer: str) -> ProviderMetadata:
            await release.wait()
            raise errors.ConnectError("refused")

        cache = MetadataCache(fetch=fetch, clock=Clock(), failure_ttl=0)
        caller = asyncio.ensure_future(cache.get(ISSUER))
        await asyncio.sleep(0)
        caller.cancel()
        release.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert caller.cancelled()
        gc.collect()
        assert reported == []

    asyncio.run(scenario())


def test_a_fetch_cancelled_when_the_loop_ends_reports_nothing():
    reported: list[dict[str, object]] = []

    async def scenario():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(context))

        async def fetch(issuer: str) -> ProviderMetadata:
            await asyncio.Event().wait()
            raise AssertionError("never released")

        cache = MetadataCache(fetch=fetch, clock=Clock())
        caller = asyncio.ensure_future(cache.get(ISSUER))
        await asyncio.sleep(0)
        assert not caller.done()
        # asyncio.run cancels the caller and the shared fetch on the way out.

    asyncio.run(scenario())
    assert reported == []


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        ("https://as.example#top", "issuer must not contain a fragment (RFC 6749 §3.1)"),
        ("https://user@as.example", "issuer must not contain credentials"),
        ("http://as.example", "issuer must use https (RFC 6749 §3.1, §3.2); http is allowed "
                              "only for loopback hosts, got host 'as.example'"),
    ],
)
def test_an_unusable_issuer_is_named_as_the_issuer(issuer, message):
    with pytest.raises(errors.InvalidInput) as info:
        check_issuer(issuer)
    assert str(info.value) == message


def test_by_default_metadata_is_kept_an_hour_and_a_failure_five_seconds():
    async def scenario():
        calls: list[str] = []
        failing = True

        async def fetch(issuer: str) -> ProviderMetadata:
            calls.append(issuer)
            if failing:
                raise errors.ConnectError("refused")
            return ProviderMetadata(issuer=issuer)

        clock = Clock()
        cache = MetadataCache(fetch=fetch, clock=clock)
        with pytest.raises(errors.ConnectError):
            await cache.get(ISSUER)
        clock.now += 4.5  # halves: exact in binary floating point
        with pytest.raises(errors.ConnectError):
            await cache.get(ISSUER)
        assert len(calls) == 1
        clock.now += 0.5
        failing = False
        await cache.get(ISSUER)
        assert len(calls) == 2
        clock.now += 3599.5
        await cache.get(ISSUER)
        assert len(calls) == 2
        clock.now += 0.5
        await cache.get(ISSUER)
        assert len(calls) == 3

    asyncio.run(scenario())


def test_by_default_256_issuers_are_kept():
    async def scenario():
        calls: list[str] = []
        cache = MetadataCache(fetch=counting_fetch(calls), clock=Clock())
        issuers = [f"https://as{n}.example" for n in range(256)]
        for issuer in issuers:
            await cache.get(issuer)
        await cache.get(issuers[0])
        assert len(calls) == 256
        await cache.get("https://one-more.example")  # the 257th: the cache starts again
        await cache.get(issuers[0])
        assert len(calls) == 258

    asyncio.run(scenario())
