"""The broker's sans-I/O pieces and its discovery order: RFC 9728 resource metadata
(where it is looked for, what is refused), RFC 7591 registration answers (what is
kept, what is refused), and the stored registration (reused, replaced, forgotten)."""

from __future__ import annotations

import asyncio
import json

import pytest

from roomsecrets import MemoryStore
from roomsecrets.core import errors
from roomsecrets.core.broker import ResourceBroker, registration_key
from roomsecrets.core.oauth.discovery import ProviderMetadata
from roomsecrets.core.oauth.http import HttpResponse
from roomsecrets.core.oauth.registration import (
    ClientRegistration,
    build_registration_request,
    parse_registration_response,
)
from roomsecrets.core.oauth.resource_metadata import (
    check_resource,
    parse_resource_metadata_response,
    resource_metadata_hint,
    resource_metadata_urls,
)
from roomsecrets.core.oauth.token_request import ClientAuthMethod

RESOURCE = "https://mcp.example.com/mcp"
AS = "https://auth.example.com"


def document(**fields: object) -> bytes:
    base: dict[str, object] = {"resource": RESOURCE, "authorization_servers": [AS]}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def parse(body: bytes, status: int = 200):
    return parse_resource_metadata_response(
        resource=RESOURCE, status=status, headers=(), body=body, now=0.0
    )


# --- RFC 9728 ------------------------------------------------------------------------


def test_the_path_based_url_comes_before_the_root_and_a_same_origin_hint_before_both():
    assert resource_metadata_urls(RESOURCE) == (
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        "https://mcp.example.com/.well-known/oauth-protected-resource",
    )
    hint = "https://mcp.example.com/meta/prm.json"
    assert resource_metadata_urls(RESOURCE, hint)[0] == hint
    # A hint on another host is not fetched: the server goes nowhere a 401 points.
    assert "https://evil.example/x" not in resource_metadata_urls(RESOURCE, "https://evil.example/x")


def test_the_hint_is_read_from_a_www_authenticate_header():
    assert resource_metadata_hint(
        'Bearer error="invalid_token", resource_metadata="https://mcp.example.com/m"'
    ) == "https://mcp.example.com/m"
    assert resource_metadata_hint("Bearer resource_metadata=https://h/m, x=1") == "https://h/m"
    for nothing in (None, "", "Bearer", "Basic realm=x", "x" * 10000, 5):
        assert resource_metadata_hint(nothing) is None


def test_a_document_for_another_resource_is_refused_rfc9728_3_3():
    with pytest.raises(errors.InvalidResourceMetadata, match=r"RFC 9728 §3\.3"):
        parse(document(resource="https://mcp.example.com/other"))
    with pytest.raises(errors.InvalidResourceMetadata, match=r"RFC 9728 §3\.3"):
        parse(document(resource=RESOURCE + "/"))  # character for character


@pytest.mark.parametrize("servers", [None, [], ["not a url"], ["http://evil.example"],
                                     ["https://as.example/?q=1"], [1]])
def test_no_usable_authorization_server_is_refused(servers):
    with pytest.raises(errors.InvalidResourceMetadata):
        parse(document(authorization_servers=servers))


@pytest.mark.parametrize("body", [b"", b"[]", b"\xff", b"[" * 100000 + b"]" * 100000, b"null"])
def test_hostile_bodies_are_typed_errors(body):
    with pytest.raises(errors.ProviderError):
        parse(body)


def test_statuses_map_to_not_found_unavailable_and_refused():
    with pytest.raises(errors.ResourceMetadataNotFound):
        parse(b"", status=404)
    with pytest.raises(errors.ResourceMetadataNotFound):
        parse(b"", status=302)
    with pytest.raises(errors.ProviderUnavailable):
        parse(b"", status=503)
    with pytest.raises(errors.InvalidResourceMetadata):
        parse(document(), status=204)


def test_the_name_and_scopes_are_kept_and_the_name_is_cleaned():
    found = parse(document(resource_name="Mail\x1b[31m MCP" + "x" * 500,
                           scopes_supported=["mcp:tools"]))
    assert found.authorization_servers == (AS,)
    assert found.scopes_supported == ("mcp:tools",)
    assert found.resource_name is not None and "\x1b" not in found.resource_name
    assert len(found.resource_name) <= 120


def test_a_resource_is_an_https_url_without_a_fragment():
    assert check_resource(RESOURCE) == RESOURCE
    assert check_resource("http://127.0.0.1:8000/mcp") == "http://127.0.0.1:8000/mcp"
    for bad in ("mcp.example.com/mcp", "http://mcp.example.com/mcp", RESOURCE + "#x",
                "\ud800", "https://u:p@mcp.example.com/", "", 3):
        with pytest.raises(errors.InvalidInput):
            check_resource(bad)


# --- RFC 7591 ------------------------------------------------------------------------


def answer(status: int = 201, **fields: object) -> ClientRegistration:
    return parse_registration_response(
        issuer=AS, registration_endpoint=AS + "/register", redirect_uri="https://r/cb",
        status=status, headers=(), body=json.dumps(fields).encode(), now=0.0,
    )


def test_the_request_names_our_redirect_uri_grants_and_scopes_but_no_auth_method():
    request = build_registration_request(
        registration_endpoint=AS + "/register", redirect_uri="https://r/cb", scopes=["a", "b"]
    )
    sent = json.loads(request.body)
    assert sent == {"redirect_uris": ["https://r/cb"], "response_types": ["code"],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "client_name": "roomsecrets", "scope": "a b"}


def test_the_method_the_server_answers_is_the_one_kept():
    post = answer(client_id="c1", client_secret="s" * 64,
                  token_endpoint_auth_method="client_secret_post", client_secret_expires_at=0)
    assert post.auth_method is ClientAuthMethod.CLIENT_SECRET_POST
    assert post.client.auth_method is ClientAuthMethod.CLIENT_SECRET_POST
    assert post.secret_expires_at is None  # 0: never (RFC 7591 §3.2.1)
    # None named: basic with a secret (RFC 7591 §2), a public client without one.
    assert answer(client_id="c", client_secret="s").auth_method is (
        ClientAuthMethod.CLIENT_SECRET_BASIC)
    assert answer(client_id="c").auth_method is ClientAuthMethod.NONE
    assert "s" * 64 not in repr(post)
    assert ClientRegistration.from_json(post.to_json()) == post
    # A date no clock reaches (or a number float() cannot hold) is no expiry at all.
    assert answer(client_id="c", client_secret_expires_at=10**400).secret_expires_at is None


@pytest.mark.parametrize("fields", [
    {}, {"client_id": ""}, {"client_id": 5},
    {"client_id": "c", "token_endpoint_auth_method": "private_key_jwt"},
    {"client_id": "c", "token_endpoint_auth_method": "client_secret_post"},  # no secret
    {"client_id": "c", "client_secret": 7},
    {"client_id": "c" * 257}, {"client_id": "c\u00e9"}, {"client_id": "c\n"},
    {"client_id": "c", "client_secret": "s" * 1025},
])
def test_an_unusable_answer_is_a_typed_error(fields):
    with pytest.raises(errors.ProviderResponseError):
        answer(**fields)


def test_a_refusal_is_registration_refused_with_the_servers_error_and_no_secret():
    with pytest.raises(errors.RegistrationRefused, match="invalid_redirect_uri") as refused:
        answer(400, error="invalid_redirect_uri", error_description="not https")
    assert refused.value.code == "registration_refused"
    with pytest.raises(errors.ProviderUnavailable):
        answer(503)


# --- the broker: discovery order, stored registrations --------------------------------


class Transport:
    """Answers by URL; records what was sent."""

    def __init__(self, answers: dict[str, HttpResponse]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, str]] = []

    async def send(self, request, *, timeout, max_body):
        self.sent.append((request.method, request.url))
        return self.answers.get(request.url, HttpResponse(status=404))


def broker(transport: Transport, store=None) -> ResourceBroker:
    return ResourceBroker(store=store or MemoryStore(), transport=transport, clock=lambda: 0.0,
                          http_timeout=5.0, allow_insecure_http=False, ttl=60.0,
                          failure_ttl=0.0)


def test_the_url_the_resources_401_names_is_asked_first():
    hint = "https://mcp.example.com/custom/prm"
    transport = Transport({
        RESOURCE: HttpResponse(status=401, headers=(
            ("WWW-Authenticate", f'Bearer resource_metadata="{hint}"'),)),
        hint: HttpResponse(status=200, body=document(resource_name="From the hint")),
    })
    found = asyncio.run(broker(transport).resource_metadata(RESOURCE))
    assert found.resource_name == "From the hint"
    assert transport.sent == [("GET", RESOURCE), ("GET", hint)]


def test_without_a_hint_the_well_known_urls_are_tried_in_order_and_named_when_all_fail():
    transport = Transport({})
    with pytest.raises(errors.ResourceMetadataNotFound) as missing:
        asyncio.run(broker(transport).resource_metadata(RESOURCE))
    urls = [url for _, url in transport.sent]
    assert urls == [RESOURCE, *resource_metadata_urls(RESOURCE)]
    assert all(url in str(missing.value) for url in resource_metadata_urls(RESOURCE))


METADATA = ProviderMetadata(issuer=AS, authorization_endpoint=AS + "/authorize",
                            token_endpoint=AS + "/token", registration_endpoint=AS + "/register")


def registered(client_id: str) -> HttpResponse:
    return HttpResponse(status=201, body=json.dumps({
        "client_id": client_id, "client_secret": "secret-" + client_id,
        "token_endpoint_auth_method": "client_secret_post"}).encode())


def test_callers_share_one_registration_which_the_store_then_keeps():
    # These five callers do not overlap (nothing here yields to the loop): callers
    # that do are test_pinned_broker_requests.py's.
    async def scenario():
        store = MemoryStore()
        transport = Transport({AS + "/register": registered("c1")})
        one = broker(transport, store)
        found = await asyncio.gather(*[
            one.registration(METADATA, redirect_uri="https://r/cb", scopes=())
            for _ in range(5)])
        assert {r.client_id for r in found} == {"c1"}
        assert transport.sent.count(("POST", AS + "/register")) == 1
        # Another process on the same store: no new registration.
        other = Transport({AS + "/register": registered("c2")})
        again = await broker(other, store).registration(
            METADATA, redirect_uri="https://r/cb", scopes=())
        assert again.client_id == "c1" and other.sent == []
        # Another redirect URI replaces it; forgetting a client drops only that one.
        moved = await broker(other, store).registration(
            METADATA, redirect_uri="https://r/cb2", scopes=())
        assert moved.client_id == "c2"
        await one.forget_registration(AS, "c1")  # not the stored one any more
        assert await store.get(registration_key(AS)) is not None
        await one.forget_registration(AS, "c2")
        assert await store.get(registration_key(AS)) is None

    asyncio.run(scenario())


def test_no_registration_endpoint_is_a_typed_error_naming_it_and_nothing_is_sent():
    transport = Transport({})
    bare = ProviderMetadata(issuer=AS, authorization_endpoint=AS + "/a", token_endpoint=AS + "/t")
    with pytest.raises(errors.RegistrationNotSupported, match="registration_endpoint"):
        asyncio.run(broker(transport).registration(bare, redirect_uri="https://r/cb", scopes=()))
    assert transport.sent == []


def test_participant_ids_of_the_server_are_refused():
    from roomsecrets import SecretsService

    service = SecretsService(store=MemoryStore(), room="r")
    with pytest.raises(errors.InvalidInput, match="reserved"):
        service.connect("roomsecrets:server")
    with pytest.raises(errors.InvalidInput, match="reserved"):
        service.session("roomsecrets:anything")
    # Nor a room of that name, where the registrations are kept.
    with pytest.raises(errors.InvalidInput, match="room names starting"):
        SecretsService(store=MemoryStore(), room="roomsecrets:server")


class FailingPuts(MemoryStore):
    """A store whose writes fail (a store outage right after the server answered)."""

    async def put(self, key, **kw):
        raise errors.StoreError("the store is down")


def test_a_store_that_fails_after_the_server_registered_us_is_a_store_error_and_keeps_nothing():
    async def scenario():
        store = FailingPuts()
        transport = Transport({AS + "/register": registered("c1")})
        with pytest.raises(errors.StoreError):
            await broker(transport, store).registration(
                METADATA, redirect_uri="https://r/cb", scopes=())
        assert await store.get(registration_key(AS)) is None

    asyncio.run(scenario())


def test_a_caller_that_gives_up_does_not_cancel_the_registration_others_wait_for():
    async def scenario():
        store = MemoryStore()
        gate = asyncio.Event()

        class Slow(Transport):
            async def send(self, request, *, timeout, max_body):
                await gate.wait()
                return await super().send(request, timeout=timeout, max_body=max_body)

        one = broker(Slow({AS + "/register": registered("c1")}), store)
        first = asyncio.ensure_future(one.registration(METADATA, redirect_uri="https://r/cb",
                                                       scopes=()))
        second = asyncio.ensure_future(one.registration(METADATA, redirect_uri="https://r/cb",
                                                        scopes=()))
        await asyncio.sleep(0.01)
        first.cancel()
        gate.set()
        assert (await second).client_id == "c1"
        assert await store.get(registration_key(AS)) is not None

    asyncio.run(scenario())
