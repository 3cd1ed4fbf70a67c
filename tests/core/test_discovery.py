"""Learning a provider's endpoints from its issuer (RFC 8414, OpenID Connect Discovery):
where to look, what a document must say, that explicit endpoints win, and the cache."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.oauth.discovery import (
    MetadataCache,
    ProviderMetadata,
    build_metadata_request,
    check_issuer,
    metadata_urls,
    parse_metadata_response,
    resolve_endpoints,
)
from tests.core.discovery_kit import approve_with_iss, ask_by_issuer, offline_by_issuer
from tests.core.service_kit import (
    CLIENT_ID,
    REDIRECT_URI,
    approve_next,
    make_service,
    next_prompt,
    room,
    running_provider,
)
from tests.support.metadata_server import MetadataServer

ISSUER = "https://as.example"


def run(coro):
    return asyncio.run(coro)


def document(issuer: str = ISSUER, **fields: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/authorize",
        "token_endpoint": issuer + "/token",
    }
    doc.update(fields)
    return doc


def parse(body: object, *, status: int = 200, issuer: str = ISSUER, raw: bytes | None = None,
          headers=(), **kw) -> ProviderMetadata:
    data = raw if raw is not None else json.dumps(body).encode()
    return parse_metadata_response(
        issuer=issuer, status=status, headers=headers, body=data, now=1000.0, **kw
    )


# --- where the metadata lives ---------------------------------------------------------


def test_rfc8414_inserts_the_well_known_path_between_host_and_issuer_path():
    assert metadata_urls("https://as.example/tenant/v2") == (
        "https://as.example/.well-known/oauth-authorization-server/tenant/v2",
        "https://as.example/tenant/v2/.well-known/openid-configuration",
    )


def test_a_terminating_slash_of_the_issuer_is_removed_first():
    assert metadata_urls("https://as.example/tenant/") == (
        "https://as.example/.well-known/oauth-authorization-server/tenant",
        "https://as.example/tenant/.well-known/openid-configuration",
    )
    assert metadata_urls("https://as.example/") == (
        "https://as.example/.well-known/oauth-authorization-server",
        "https://as.example/.well-known/openid-configuration",
    )


def test_a_port_is_kept_in_both_urls():
    assert metadata_urls("http://127.0.0.1:9000") == (
        "http://127.0.0.1:9000/.well-known/oauth-authorization-server",
        "http://127.0.0.1:9000/.well-known/openid-configuration",
    )


_SEGMENT = st.text(alphabet="abcxyz0189-._~", min_size=1, max_size=8)


@given(segments=st.lists(_SEGMENT, max_size=4), slash=st.booleans(), port=st.sampled_from(["", ":8443"]))
def test_both_urls_keep_the_issuer_path_after_the_well_known_part(segments, slash, port):
    path = "".join("/" + segment for segment in segments)
    issuer = f"https://as.example{port}{path}" + ("/" if slash else "")
    oauth, openid = metadata_urls(issuer)
    assert oauth == f"https://as.example{port}/.well-known/oauth-authorization-server{path}"
    assert openid == f"https://as.example{port}{path}/.well-known/openid-configuration"
    check_issuer(issuer)


def test_the_metadata_request_is_a_get_asking_for_json():
    request = build_metadata_request("https://as.example/.well-known/openid-configuration")
    assert request.method == "GET"
    assert request.header("Accept") == "application/json"
    assert request.body == b""


@pytest.mark.parametrize(
    ("issuer", "error"),
    [
        ("https://as.example?tenant=1", errors.InvalidInput),
        ("https://as.example#frag", errors.InvalidInput),
        ("ftp://as.example", errors.InvalidInput),
        ("https://user:pw@as.example", errors.InvalidInput),
        ("http://as.example", errors.InsecureEndpointError),
        ("https://as example", errors.InvalidInput),
        (42, errors.InvalidInput),
    ],
)
def test_an_issuer_is_an_https_url_without_query_or_fragment(issuer, error):
    with pytest.raises(error):
        check_issuer(issuer)


def test_plain_http_issuers_are_allowed_on_loopback_or_when_insecure_http_is_allowed():
    assert check_issuer("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert check_issuer("http://as.example", allow_insecure_http=True) == "http://as.example"


# --- what a document must say -----------------------------------------------------------


def test_a_document_gives_its_endpoints_and_the_rfc9207_promise():
    metadata = parse(document(
        revocation_endpoint=ISSUER + "/revoke",
        authorization_response_iss_parameter_supported=True,
        token_endpoint_auth_methods_supported=["client_secret_basic", "none"],
        code_challenge_methods_supported=["S256"],
        jwks_uri=ISSUER + "/jwks",  # fields we do not use are fine
    ))
    assert metadata == ProviderMetadata(
        issuer=ISSUER,
        authorization_endpoint=ISSUER + "/authorize",
        token_endpoint=ISSUER + "/token",
        revocation_endpoint=ISSUER + "/revoke",
        iss_parameter_supported=True,
        token_endpoint_auth_methods_supported=("client_secret_basic", "none"),
        code_challenge_methods_supported=("S256",),
    )


@pytest.mark.parametrize("value", [False, "true", 1, None])
def test_only_a_json_true_promises_iss(value):
    assert not parse(document(authorization_response_iss_parameter_supported=value)).iss_parameter_supported


@pytest.mark.parametrize(
    "named",
    [ISSUER + "/", "https://AS.example", "https://evil.example", "", None, 7, ["https://as.example"]],
)
def test_a_document_naming_another_issuer_is_refused_rfc8414_3_3(named):
    doc = document()
    doc["issuer"] = named
    with pytest.raises(errors.InvalidProviderMetadata) as info:
        parse(doc)
    assert not info.value.retryable
    assert "RFC 8414 §3.3" in str(info.value)


def test_a_document_without_an_issuer_is_refused():
    doc = document()
    del doc["issuer"]
    with pytest.raises(errors.InvalidProviderMetadata):
        parse(doc)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token_endpoint", "http://as.example/token"),  # plain http, not loopback
        ("authorization_endpoint", "/authorize"),  # relative
        ("token_endpoint", "https://as.example/token#x"),  # fragment (RFC 6749 §3.1)
        ("revocation_endpoint", "javascript:alert(1)"),
        ("revocation_endpoint", 5),
        ("token_endpoint", "https://as.example/to ken"),
    ],
)
def test_a_document_with_an_unusable_endpoint_is_refused(field, value):
    with pytest.raises(errors.InvalidProviderMetadata) as info:
        parse(document(**{field: value}))
    assert field in str(info.value)


def test_insecure_endpoints_pass_only_when_the_service_allows_insecure_http():
    doc = document(issuer="http://as.example", token_endpoint="http://as.example/token",
                   authorization_endpoint="http://as.example/authorize")
    with pytest.raises(errors.InvalidProviderMetadata):
        parse(doc, issuer="http://as.example")
    assert parse(doc, issuer="http://as.example", allow_insecure_http=True).token_endpoint == (
        "http://as.example/token"
    )


@pytest.mark.parametrize(
    "raw",
    [b"<html>oops</html>", b"[1, 2]", b"\xff\xfe", b"", b'"issuer"', b"[" * 200_000 + b"]" * 200_000],
)
def test_a_body_that_is_not_a_json_object_is_refused(raw):
    with pytest.raises(errors.InvalidProviderMetadata):
        parse(None, raw=raw, max_body=10**6)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_a_4xx_answer_means_not_published_here(status):
    with pytest.raises(errors.ProviderMetadataNotFound) as info:
        parse({"error": "not_found"}, status=status)
    assert info.value.status == status


def test_a_5xx_answer_is_retryable_with_its_retry_after():
    with pytest.raises(errors.ProviderUnavailable) as info:
        parse(None, status=503, raw=b"down", headers=(("Retry-After", "7"),))
    assert info.value.retry_after == 7.0
    assert info.value.retryable


@pytest.mark.parametrize("status", [201, 204, 299])
def test_only_200_is_a_metadata_answer_rfc8414_3_2(status):
    with pytest.raises(errors.InvalidProviderMetadata):
        parse(document(), status=status)


def test_a_huge_document_is_refused_unparsed():
    with pytest.raises(errors.ResponseTooLarge):
        parse(None, raw=b" " * 300_000)


def test_the_revocation_endpoint_and_the_iss_promise_hold_only_for_the_issuers_own_endpoints():
    metadata = parse(document(revocation_endpoint=ISSUER + "/revoke",
                              authorization_response_iss_parameter_supported=True))
    assert metadata.revocation_endpoint_for(ISSUER + "/token") == ISSUER + "/revoke"
    assert metadata.revocation_endpoint_for("https://other.example/token") is None
    assert metadata.promises_iss_from(ISSUER + "/authorize")
    assert not metadata.promises_iss_from("https://other.example/authorize")
    assert not parse(document()).promises_iss_from(ISSUER + "/authorize")


def test_explicit_endpoints_win_and_missing_ones_come_from_the_metadata():
    metadata = parse(document())
    assert resolve_endpoints(
        issuer=ISSUER, metadata=metadata,
        authorization_endpoint=None, token_endpoint="https://other.example/token",
    ) == (ISSUER + "/authorize", "https://other.example/token")
    assert resolve_endpoints(
        issuer=ISSUER, metadata=None,
        authorization_endpoint="https://a.example/a", token_endpoint="https://a.example/t",
    ) == ("https://a.example/a", "https://a.example/t")


def test_an_endpoint_neither_given_nor_published_is_a_typed_error():
    no_token = document()
    del no_token["token_endpoint"]
    with pytest.raises(errors.ProviderMetadataNotFound, match="token_endpoint"):
        resolve_endpoints(issuer=ISSUER, metadata=parse(no_token),
                          authorization_endpoint=None, token_endpoint=None)
    with pytest.raises(errors.ProviderMetadataNotFound, match="authorization_endpoint"):
        resolve_endpoints(issuer=ISSUER, metadata=None,
                          authorization_endpoint=None, token_endpoint="https://a.example/t")


# --- the cache --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_lookups_of_one_issuer_share_one_fetch():
    async def scenario():
        calls = []
        release = asyncio.Event()

        async def fetch(issuer):
            calls.append(issuer)
            await release.wait()
            return ProviderMetadata(issuer=issuer)

        cache = MetadataCache(fetch=fetch, clock=Clock())
        lookups = [asyncio.ensure_future(cache.get(ISSUER)) for _ in range(20)]
        await asyncio.sleep(0)
        release.set()
        found = await asyncio.gather(*lookups)
        assert calls == [ISSUER]
        assert {m.issuer for m in found} == {ISSUER}

    run(scenario())


def test_metadata_is_kept_for_its_ttl_by_the_injected_clock():
    async def scenario():
        calls = []

        async def fetch(issuer):
            calls.append(issuer)
            return ProviderMetadata(issuer=issuer, token_endpoint=f"{issuer}/t{len(calls)}")

        clock = Clock()
        cache = MetadataCache(fetch=fetch, clock=clock, ttl=3600)
        assert (await cache.get(ISSUER)).token_endpoint == ISSUER + "/t1"
        clock.now += 3599
        assert (await cache.get(ISSUER)).token_endpoint == ISSUER + "/t1"
        clock.now += 1
        assert (await cache.get(ISSUER)).token_endpoint == ISSUER + "/t2"
        assert len(calls) == 2
        cache.forget(ISSUER)
        await cache.get(ISSUER)
        assert len(calls) == 3

    run(scenario())


def test_a_failure_is_remembered_only_briefly():
    async def scenario():
        calls = []

        async def fetch(issuer):
            calls.append(issuer)
            if len(calls) == 1:
                raise errors.ProviderUnavailable("down", status=503)
            return ProviderMetadata(issuer=issuer)

        clock = Clock()
        cache = MetadataCache(fetch=fetch, clock=clock, failure_ttl=5)
        for _ in range(3):
            with pytest.raises(errors.ProviderUnavailable):
                await cache.get(ISSUER)
        assert len(calls) == 1
        clock.now += 5
        assert (await cache.get(ISSUER)).issuer == ISSUER
        assert len(calls) == 2

    run(scenario())


def test_without_a_failure_ttl_every_lookup_after_a_failure_fetches_again():
    async def scenario():
        calls = []

        async def fetch(issuer):
            calls.append(issuer)
            raise errors.ConnectError("refused")

        cache = MetadataCache(fetch=fetch, clock=Clock(), failure_ttl=0)
        for _ in range(3):
            with pytest.raises(errors.ConnectError):
                await cache.get(ISSUER)
        assert len(calls) == 3

    run(scenario())


def test_a_caller_that_gives_up_does_not_cancel_the_shared_fetch():
    async def scenario():
        release = asyncio.Event()

        async def fetch(issuer):
            await release.wait()
            return ProviderMetadata(issuer=issuer)

        cache = MetadataCache(fetch=fetch, clock=Clock())
        impatient = asyncio.ensure_future(cache.get(ISSUER))
        patient = asyncio.ensure_future(cache.get(ISSUER))
        await asyncio.sleep(0)
        impatient.cancel()
        release.set()
        assert (await patient).issuer == ISSUER
        assert impatient.cancelled()

    run(scenario())


@pytest.mark.parametrize("bad", [-1, float("nan"), True, "60"])
def test_cache_times_must_be_numbers_of_seconds(bad):
    async def fetch(issuer):
        raise AssertionError

    with pytest.raises(errors.InvalidInput):
        MetadataCache(fetch=fetch, clock=Clock(), ttl=bad)
    with pytest.raises(errors.InvalidInput):
        MetadataCache(fetch=fetch, clock=Clock(), failure_ttl=bad)


# --- through the service ---------------------------------------------------------------


def test_a_request_naming_only_the_issuer_learns_the_endpoints_and_gets_a_token():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            prompt, params = await approve_with_iss(alice)
            token = await request
            assert prompt.authorization_url.startswith(provider.authorization_endpoint + "?")
            assert params["iss"] == provider.issuer
            assert provider.is_active(token)
            # The same credential is found by issuer, and by explicit endpoints.
            assert await offline_by_issuer(agent, provider.issuer) == token
            assert await agent.get_offline_oauth_token(
                client_id=CLIENT_ID, authorization_endpoint=provider.authorization_endpoint,
                token_endpoint=provider.token_endpoint, scopes=["mail.read"], delegated_by="alice",
            ) == token
            assert provider.metadata_requests == 1  # cached

    run(scenario())


def test_many_concurrent_calls_for_one_issuer_fetch_its_metadata_once_until_it_expires():
    async def scenario():
        with running_provider() as provider:
            service = make_service(discovery_ttl=600)
            agent, _alice = room(service)
            found = await asyncio.gather(
                *[offline_by_issuer(agent, provider.issuer) for _ in range(25)]
            )
            assert found == [None] * 25
            assert provider.metadata_requests == 1
            service.clock.advance(599)
            await offline_by_issuer(agent, provider.issuer)
            assert provider.metadata_requests == 1
            service.clock.advance(1)
            await offline_by_issuer(agent, provider.issuer)
            assert provider.metadata_requests == 2

    run(scenario())


def test_an_explicit_endpoint_wins_over_the_metadata():
    async def scenario():
        with running_provider() as provider, MetadataServer() as issuer:
            # The issuer's metadata names a token endpoint nobody listens on.
            issuer.answer("/.well-known/oauth-authorization-server", body=document(
                issuer=issuer.base_url,
                authorization_endpoint=provider.authorization_endpoint,
                token_endpoint="http://127.0.0.1:9/token",
            ))
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, issuer.base_url, token_endpoint=provider.token_endpoint)
            prompt = await approve_next(alice)
            token = await request
            assert provider.is_active(token)
            assert prompt.authorization_url.startswith(provider.authorization_endpoint)
            assert provider.token_requests == [("authorization_code", "ok")]

    run(scenario())


def test_metadata_naming_another_issuer_is_refused_and_nobody_is_prompted():
    async def scenario():
        with running_provider() as provider, MetadataServer() as issuer:
            issuer.answer("/.well-known/oauth-authorization-server", body=document(
                issuer=provider.issuer,  # a mix-up: someone else's metadata
                authorization_endpoint=provider.authorization_endpoint,
                token_endpoint=provider.token_endpoint,
            ))
            service = make_service()
            agent, _alice = room(service)
            with pytest.raises(errors.InvalidProviderMetadata):
                await ask_by_issuer(agent, issuer.base_url)
            # Explicit endpoints do not make wrong metadata acceptable.
            with pytest.raises(errors.InvalidProviderMetadata):
                await ask_by_issuer(agent, issuer.base_url,
                                    authorization_endpoint=provider.authorization_endpoint,
                                    token_endpoint=provider.token_endpoint)
            assert len(service.registry) == 0
            assert provider.authorization_requests == []

    run(scenario())


def test_an_issuer_with_a_path_is_found_at_the_rfc8414_url_first():
    async def scenario():
        with running_provider() as provider, MetadataServer() as issuer:
            name = issuer.base_url + "/tenant1"
            issuer.answer("/.well-known/oauth-authorization-server/tenant1", body=document(
                issuer=name, authorization_endpoint=provider.authorization_endpoint,
                token_endpoint=provider.token_endpoint,
            ))
            issuer.answer("/tenant1/.well-known/openid-configuration", body=document(
                issuer=name, token_endpoint="http://127.0.0.1:9/not-this-one",
            ))
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, name)
            await approve_next(alice)
            assert provider.is_active(await request)
            assert issuer.hits == ["/.well-known/oauth-authorization-server/tenant1"]

    run(scenario())


@pytest.mark.parametrize("rfc8414_answer", ["404", "302 elsewhere"])
def test_without_rfc8414_metadata_the_openid_configuration_is_used(rfc8414_answer):
    # A redirect is not followed (it could point anywhere): the document is not there.
    async def scenario():
        with running_provider() as provider, MetadataServer() as issuer:
            name = issuer.base_url + "/tenant1"
            if rfc8414_answer == "302 elsewhere":
                issuer.answer("/elsewhere", body=document(issuer=name))
                issuer.answer(
                    "/.well-known/oauth-authorization-server/tenant1", status=302, raw=b"",
                    headers=(("Location", issuer.base_url + "/elsewhere"),),
                )
            issuer.answer("/tenant1/.well-known/openid-configuration", body=document(
                issuer=name, authorization_endpoint=provider.authorization_endpoint,
                token_endpoint=provider.token_endpoint,
            ))
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, name)
            await approve_next(alice)
            assert provider.is_active(await request)
            assert issuer.hits == [
                "/.well-known/oauth-authorization-server/tenant1",
                "/tenant1/.well-known/openid-configuration",
            ]

    run(scenario())


@pytest.mark.parametrize("answer", ["404", "301 elsewhere"])
def test_an_issuer_without_metadata_needs_explicit_endpoints(answer):
    async def scenario():
        with running_provider() as provider, MetadataServer() as issuer:
            if answer == "301 elsewhere":  # not followed: no metadata either
                for path in ("/.well-known/oauth-authorization-server",
                             "/.well-known/openid-configuration"):
                    issuer.answer(path, status=301, raw=b"",
                                  headers=(("Location", "https://elsewhere.example/"),))
            service = make_service()
            agent, alice = room(service)
            with pytest.raises(errors.ProviderMetadataNotFound):
                await ask_by_issuer(agent, issuer.base_url)
            with pytest.raises(errors.ProviderMetadataNotFound):
                await ask_by_issuer(agent, issuer.base_url,
                                    authorization_endpoint=provider.authorization_endpoint)
            # Both given: the issuer only adds what it publishes, which is nothing.
            request = ask_by_issuer(agent, issuer.base_url,
                                    authorization_endpoint=provider.authorization_endpoint,
                                    token_endpoint=provider.token_endpoint)
            await approve_next(alice)
            assert provider.is_active(await request)

    run(scenario())


def test_an_unreachable_issuer_fails_only_calls_that_need_its_endpoints():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            dead = "http://127.0.0.1:9"
            with pytest.raises(errors.TransportError):
                await ask_by_issuer(agent, dead)
            request = ask_by_issuer(agent, dead,
                                    authorization_endpoint=provider.authorization_endpoint,
                                    token_endpoint=provider.token_endpoint)
            await approve_next(alice)
            assert provider.is_active(await request)

    run(scenario())


def test_without_issuer_both_endpoints_are_required():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service)
            with pytest.raises(errors.InvalidInput, match="unless issuer"):
                await agent.request_oauth_token(
                    client_id=CLIENT_ID, token_endpoint=provider.token_endpoint,
                    from_participant_id="alice", redirect_uri=REDIRECT_URI,
                )
            with pytest.raises(errors.InvalidInput, match="unless issuer"):
                await agent.get_offline_oauth_token(
                    client_id=CLIENT_ID, authorization_endpoint=provider.authorization_endpoint,
                    delegated_by="alice",
                )
            assert provider.metadata_requests == 0

    run(scenario())


def test_a_bad_issuer_is_invalid_input_before_anything_is_fetched():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service)
            for bad in ("http://as.example", provider.issuer + "?x=1", "not a url", 3):
                with pytest.raises(errors.InvalidInput):
                    await ask_by_issuer(agent, bad)
            assert provider.metadata_requests == 0

    run(scenario())


def test_a_grant_without_oauth_rules_is_denied_before_any_discovery():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service, grant=SecretsGrant())
            with pytest.raises(errors.GrantDenied):
                await ask_by_issuer(agent, provider.issuer)
            with pytest.raises(errors.GrantDenied):
                await offline_by_issuer(agent, provider.issuer)
            assert provider.metadata_requests == 0
            denied = [e for e in service.audit.events if e.outcome == "denied"]
            assert [e.action for e in denied] == ["oauth.request_token", "oauth.get_offline_token"]

    run(scenario())


def test_discovered_endpoints_are_checked_against_the_grant():
    async def scenario():
        from roomsecrets.core.grants import OAuthRule

        with running_provider() as provider:
            service = make_service()
            only_elsewhere = SecretsGrant(oauth=[OAuthRule(token_endpoint="https://elsewhere/*")])
            agent, _alice = room(service, grant=only_elsewhere)
            with pytest.raises(errors.GrantDenied):
                await ask_by_issuer(agent, provider.issuer)
            assert len(service.registry) == 0
            assert provider.metadata_requests == 1  # the decision needed the endpoints

    run(scenario())


def test_the_prompt_of_a_discovered_provider_is_like_any_other():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            prompt = await next_prompt(alice)
            assert prompt.client_id == CLIENT_ID
            assert prompt.redirect_uri == REDIRECT_URI
            await alice.reject_oauth_authorization(request_id=prompt.request_id, error="no")
            with pytest.raises(errors.RequestRejected):
                await request

    run(scenario())
