"""What the MCP broker sends and how it reads the answers, pinned where the broker's
own tests agreed with it by construction (mutation testing of
``roomsecrets.core.broker`` and ``roomsecrets.core.oauth.registration``,
docs/testing.md): every request carries the service's HTTP timeout and a body cap,
the probe of the resource asks as an MCP client asks, the metadata answer's
headers, the clock and the plain-http setting reach the parser, the registration
request is JSON, and a stored registration keeps its secret's expiry."""

from __future__ import annotations

import asyncio
import gc
import json

import pytest

from roomsecrets import MemoryStore
from roomsecrets.core import errors
from roomsecrets.core.broker import ResourceBroker, registration_key
from roomsecrets.core.oauth.discovery import ProviderMetadata
from roomsecrets.core.oauth.http import HttpResponse, header_value
from roomsecrets.core.oauth.registration import (
    MAX_REGISTRATION_BYTES,
    REGISTRATION_TYPE,
    ClientRegistration,
    build_registration_request,
    parse_registration_response,
)
from roomsecrets.core.oauth.resource_metadata import (
    MAX_RESOURCE_METADATA_BYTES,
    resource_metadata_urls,
)

RESOURCE = "https://mcp.example.com/mcp"
AS = "https://auth.example.com"
TIMEOUT = 7.5


def document(**fields: object) -> bytes:
    base: dict[str, object] = {"resource": RESOURCE, "authorization_servers": [AS]}
    base.update(fields)
    return json.dumps(base).encode()


class Recording:
    """Answers by URL (404 otherwise); records each request with its limits."""

    def __init__(self, answers: dict[str, HttpResponse]) -> None:
        self.answers = answers
        self.sent: list[tuple[object, object, object]] = []

    async def send(self, request, *, timeout, max_body):
        self.sent.append((request, timeout, max_body))
        return self.answers.get(request.url, HttpResponse(status=404))


class StrictMcpResource(Recording):
    """An MCP Streamable HTTP endpoint that checks Accept before anything else, as the
    official Python SDK's transport does (406, "Client must accept both
    application/json and text/event-stream"): only a probe that asks as an MCP
    client does gets the 401 and its hint."""

    def __init__(self, hint: str) -> None:
        super().__init__({hint: HttpResponse(status=200, body=document(resource_name="hinted"))})
        self.hint = hint

    async def send(self, request, *, timeout, max_body):
        if request.url != RESOURCE:
            return await super().send(request, timeout=timeout, max_body=max_body)
        self.sent.append((request, timeout, max_body))
        accept = (header_value(request.headers, "Accept") or "").lower()
        kinds = {part.strip() for part in accept.split(",")}
        if not {"application/json", "text/event-stream"} <= kinds:
            return HttpResponse(status=406)
        return HttpResponse(status=401, headers=(
            ("WWW-Authenticate", f'Bearer resource_metadata="{self.hint}"'),))


def broker(transport, *, clock=lambda: 0.0, allow_insecure_http=False, store=None):
    return ResourceBroker(store=store or MemoryStore(), transport=transport, clock=clock,
                          http_timeout=TIMEOUT, allow_insecure_http=allow_insecure_http,
                          ttl=60.0, failure_ttl=0.0)


def test_every_metadata_request_carries_the_http_timeout_and_the_body_cap():
    transport = Recording({})
    with pytest.raises(errors.ResourceMetadataNotFound):
        asyncio.run(broker(transport).resource_metadata(RESOURCE))
    assert len(transport.sent) == 1 + len(resource_metadata_urls(RESOURCE))
    assert {(timeout, cap) for _, timeout, cap in transport.sent} == {
        (TIMEOUT, MAX_RESOURCE_METADATA_BYTES)
    }


def test_the_probe_asks_as_an_mcp_client_so_a_strict_server_names_its_metadata():
    hint = "https://mcp.example.com/custom/prm"
    transport = StrictMcpResource(hint)
    found = asyncio.run(broker(transport).resource_metadata(RESOURCE))
    assert found.resource_name == "hinted"
    assert [request.url for request, _, _ in transport.sent] == [RESOURCE, hint]


def test_when_no_url_has_metadata_the_error_names_them_all_as_alternatives():
    with pytest.raises(errors.ResourceMetadataNotFound) as missing:
        asyncio.run(broker(Recording({})).resource_metadata(RESOURCE))
    urls = resource_metadata_urls(RESOURCE)
    assert (
        f"{' or '.join(urls)} (RFC 9728 §3.1): the broker cannot learn which "
        "authorization server protects it"
    ) in str(missing.value)


def test_a_busy_metadata_url_says_when_to_come_back_from_its_retry_after_date():
    # An HTTP-date Retry-After (RFC 9110 §10.2.3) needs the answer's headers and
    # the broker's clock: 00:01:00 is 60 s after a clock at the epoch.
    busy = HttpResponse(status=503, headers=(("Retry-After", "Thu, 01 Jan 1970 00:01:00 GMT"),))
    transport = Recording({url: busy for url in resource_metadata_urls(RESOURCE)})
    with pytest.raises(errors.ProviderUnavailable) as unavailable:
        asyncio.run(broker(transport).resource_metadata(RESOURCE))
    assert unavailable.value.retry_after == 60


def test_a_plain_http_authorization_server_is_taken_only_when_the_service_allows_it():
    # Not loopback (plain http there is always allowed): only allow_insecure_http
    # lets it through (RFC 6749 §3.1).
    local = "http://as.internal:9000"
    answers = {resource_metadata_urls(RESOURCE)[0]:
               HttpResponse(status=200, body=document(authorization_servers=[local]))}
    found = asyncio.run(
        broker(Recording(answers), allow_insecure_http=True).resource_metadata(RESOURCE))
    assert found.authorization_servers == (local,)
    with pytest.raises(errors.InvalidResourceMetadata):
        asyncio.run(broker(Recording(answers)).resource_metadata(RESOURCE))


# --- RFC 7591: the registration request and the stored registration ------------------

METADATA = ProviderMetadata(issuer=AS, authorization_endpoint=AS + "/authorize",
                            token_endpoint=AS + "/token", registration_endpoint=AS + "/register")


def registered(client_id: str, expires_at: int) -> HttpResponse:
    return HttpResponse(status=201, body=json.dumps({
        "client_id": client_id, "client_secret": "secret-" + client_id,
        "token_endpoint_auth_method": "client_secret_post",
        "client_secret_expires_at": expires_at}).encode())


def test_the_registration_request_sends_json_and_asks_for_json_rfc7591_3_1():
    request = build_registration_request(
        registration_endpoint=AS + "/register", redirect_uri="https://r/cb", scopes=["a"]
    )
    assert header_value(request.headers, "Content-Type") == "application/json"
    assert header_value(request.headers, "Accept") == "application/json"


def test_a_plain_http_registration_endpoint_needs_allow_insecure_http():
    endpoint = "http://as.internal/register"
    with pytest.raises(errors.InvalidInput, match=r"^registration_endpoint must use https"):
        build_registration_request(registration_endpoint=endpoint, redirect_uri="https://r/cb")
    request = build_registration_request(
        registration_endpoint=endpoint, redirect_uri="https://r/cb", allow_insecure_http=True
    )
    assert request.url == endpoint


def test_a_stored_registration_is_replaced_once_its_secret_expires_on_any_node():
    async def scenario():
        store = MemoryStore()
        now = [0.0]
        first = Recording({AS + "/register": registered("c1", expires_at=100)})
        made = await broker(first, clock=lambda: now[0], store=store).registration(
            METADATA, redirect_uri="https://r/cb", scopes=())
        assert made.secret_expires_at == 100.0
        # Another node reads it from the store: the expiry came with it.
        other = Recording({AS + "/register": registered("c2", expires_at=0)})
        node = broker(other, clock=lambda: now[0], store=store)
        now[0] = 99.0
        kept = await node.registration(METADATA, redirect_uri="https://r/cb", scopes=())
        assert (kept.client_id, kept.secret_expires_at, other.sent) == ("c1", 100.0, [])
        now[0] = 100.0
        renewed = await node.registration(METADATA, redirect_uri="https://r/cb", scopes=())
        assert renewed.client_id == "c2"
        assert [request.url for request, _, _ in other.sent] == [AS + "/register"]

    asyncio.run(scenario())


def test_where_a_registration_is_kept_does_not_change_between_releases():
    # Registrations written by an earlier release must be found by this one: the key
    # is fixed data, not an implementation detail (a new key would register again
    # at every authorization server, leaving the old clients behind).
    key = registration_key(AS)
    assert (key.room, key.owner, key.secret_id, key.delegated_to) == (
        "roomsecrets:server", "roomsecrets:server",
        "registration-1ce18487e0b9bfefc8259d779bfe9874", None,
    )


class Gated(Recording):
    """Holds every request until ``gate`` is set: callers really overlap."""

    def __init__(self, answers: dict[str, HttpResponse]) -> None:
        super().__init__(answers)
        self.gate = asyncio.Event()

    async def send(self, request, *, timeout, max_body):
        answer = await super().send(request, timeout=timeout, max_body=max_body)
        await self.gate.wait()
        return answer


def test_callers_that_overlap_share_one_registration_post():
    async def scenario():
        transport = Gated({AS + "/register": registered("c1", expires_at=0)})
        one = broker(transport)
        calls = [asyncio.ensure_future(one.registration(
            METADATA, redirect_uri="https://r/cb", scopes=("mail.read",))) for _ in range(5)]
        while not transport.sent:  # the first POST is out, and held
            await asyncio.sleep(0)
        for _ in range(10):  # every caller has had its turn to ask too
            await asyncio.sleep(0)
        transport.gate.set()
        found = await asyncio.gather(*calls)
        assert {r.client_id for r in found} == {"c1"}
        assert [request.url for request, _, _ in transport.sent] == [AS + "/register"]

    asyncio.run(scenario())


def test_the_registration_asks_for_the_scopes_it_is_given():
    async def scenario():
        transport = Recording({AS + "/register": registered("c1", expires_at=0)})
        await broker(transport).registration(
            METADATA, redirect_uri="https://r/cb", scopes=("mail.read", "mail.send"))
        (request, _, _), = transport.sent
        assert json.loads(request.body)["scope"] == "mail.read mail.send"

    asyncio.run(scenario())


def test_the_registration_post_names_our_redirect_uri_and_carries_the_limits():
    async def scenario():
        transport = Recording({AS + "/register": registered("c1", expires_at=0)})
        await broker(transport).registration(METADATA, redirect_uri="https://r/cb", scopes=())
        (request, timeout, cap), = transport.sent
        assert json.loads(request.body)["redirect_uris"] == ["https://r/cb"]
        assert (timeout, cap) == (TIMEOUT, MAX_REGISTRATION_BYTES)

    asyncio.run(scenario())


def test_a_plain_http_registration_endpoint_is_used_when_the_service_allows_it():
    async def scenario():
        local = "http://as.internal"
        metadata = ProviderMetadata(issuer=local, authorization_endpoint=local + "/a",
                                    token_endpoint=local + "/t",
                                    registration_endpoint=local + "/register")
        transport = Recording({local + "/register": registered("c1", expires_at=0)})
        made = await broker(transport, allow_insecure_http=True).registration(
            metadata, redirect_uri="https://r/cb", scopes=())
        assert made.client_id == "c1"

    asyncio.run(scenario())


def test_the_new_registration_is_told_to_the_on_registered_hook():
    async def scenario():
        told = []
        transport = Recording({AS + "/register": registered("c1", expires_at=0)})
        one = ResourceBroker(store=MemoryStore(), transport=transport, clock=lambda: 0.0,
                             http_timeout=TIMEOUT, allow_insecure_http=False, ttl=60.0,
                             failure_ttl=0.0, on_registered=told.append)
        await one.registration(METADATA, redirect_uri="https://r/cb", scopes=())
        assert [r.client_id for r in told] == ["c1"]

    asyncio.run(scenario())


def test_the_same_broker_registers_again_for_another_redirect_uri():
    async def scenario():
        transport = Recording({AS + "/register": registered("c1", expires_at=0)})
        one = broker(transport)
        first = await one.registration(METADATA, redirect_uri="https://r/cb", scopes=())
        transport.answers[AS + "/register"] = registered("c2", expires_at=0)
        moved = await one.registration(METADATA, redirect_uri="https://r/cb2", scopes=())
        assert (first.client_id, moved.client_id) == ("c1", "c2")
        assert moved.redirect_uri == "https://r/cb2"

    asyncio.run(scenario())


async def _race(other_redirect_uri: str):
    """Our registration POST is held while another node registers (for
    ``other_redirect_uri``) and keeps its registration; then ours lands."""
    store = MemoryStore()
    ours = Gated({AS + "/register": registered("c-ours", expires_at=0)})
    mine = asyncio.ensure_future(broker(ours, store=store).registration(
        METADATA, redirect_uri="https://r/cb", scopes=()))
    while not ours.sent:
        await asyncio.sleep(0)
    theirs = Recording({AS + "/register": registered("c-theirs", expires_at=0)})
    await broker(theirs, store=store).registration(
        METADATA, redirect_uri=other_redirect_uri, scopes=())
    ours.gate.set()
    return store, mine


def test_a_node_that_loses_the_race_to_keep_a_registration_uses_the_winners():
    async def scenario():
        store, mine = await _race("https://r/cb")
        assert (await mine).client_id == "c-theirs"
        kept = ClientRegistration.from_json((await store.get(registration_key(AS))).data)
        assert kept.client_id == "c-theirs"

    asyncio.run(scenario())


def test_a_lost_race_to_a_registration_for_another_redirect_uri_is_a_store_error():
    async def scenario():
        store, mine = await _race("https://r/elsewhere")
        with pytest.raises(errors.StoreError) as failed:
            await mine
        assert str(failed.value) == (
            f"could not keep the client registration at {AS!r}: the store changed under "
            "it; try again"
        )
        kept = ClientRegistration.from_json((await store.get(registration_key(AS))).data)
        assert kept.client_id == "c-theirs"  # theirs stays

    asyncio.run(scenario())


def test_a_failed_registration_nobody_waits_for_any_more_leaves_no_unretrieved_error():
    async def scenario():
        loop = asyncio.get_running_loop()
        reported = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
        refused = HttpResponse(status=400, body=b'{"error": "invalid_client_metadata"}')
        transport = Gated({AS + "/register": refused})
        caller = asyncio.ensure_future(broker(transport).registration(
            METADATA, redirect_uri="https://r/cb", scopes=()))
        while not transport.sent:
            await asyncio.sleep(0)
        caller.cancel()  # the only caller gives up; the registration goes on
        with pytest.raises(asyncio.CancelledError):
            await caller
        transport.gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        del caller
        gc.collect()
        assert reported == []

    asyncio.run(scenario())


def test_a_registration_answer_exactly_at_the_cap_is_read_and_one_byte_more_is_refused():
    fields = {"client_id": "c1", "token_endpoint_auth_method": "none"}
    raw = json.dumps(fields).encode()
    at_cap = raw[:-1] + b" " * (MAX_REGISTRATION_BYTES - len(raw)) + b"}"
    assert len(at_cap) == MAX_REGISTRATION_BYTES

    def parse(body: bytes) -> ClientRegistration:
        return parse_registration_response(
            issuer=AS, registration_endpoint=AS + "/register", redirect_uri="https://r/cb",
            status=201, headers=(), body=body, now=0.0)

    assert parse(at_cap).client_id == "c1"
    with pytest.raises(errors.ResponseTooLarge) as too_large:
        parse(at_cap + b" ")
    assert too_large.value.status == 201
    assert str(too_large.value) == (
        f"registration answer of {MAX_REGISTRATION_BYTES + 1} bytes exceeds the "
        f"{MAX_REGISTRATION_BYTES}-byte cap"
    )


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_busy_registration_endpoint_is_retryable_and_says_when_to_come_back(status):
    with pytest.raises(errors.ProviderUnavailable) as busy:
        parse_registration_response(
            issuer=AS, registration_endpoint=AS + "/register", redirect_uri="https://r/cb",
            status=status, headers=(("Retry-After", "30"),), body=b"", now=0.0)
    assert (busy.value.status, busy.value.retry_after) == (status, 30)


def _answer(status: int, body: bytes) -> ClientRegistration:
    return parse_registration_response(
        issuer=AS, registration_endpoint=AS + "/register", redirect_uri="https://r/cb",
        status=status, headers=(), body=body, now=0.0)


def test_a_refusal_carries_the_servers_error_description_and_status_rfc7591_3_2_2():
    body = json.dumps({"error": "invalid_redirect_uri", "error_description": "not https"})
    with pytest.raises(errors.RegistrationRefused) as refused:
        _answer(400, body.encode())
    assert (refused.value.error, refused.value.description, refused.value.status) == (
        "invalid_redirect_uri", "not https", 400)
    with pytest.raises(errors.RegistrationRefused) as unnamed:
        _answer(403, b"<html>no</html>")
    assert (unnamed.value.error, unnamed.value.description, unnamed.value.status) == (
        "registration_refused", None, 403)


def test_any_2xx_is_a_registration_and_a_3xx_is_not():
    fields = json.dumps({"client_id": "c1", "token_endpoint_auth_method": "none"}).encode()
    assert _answer(200, fields).client_id == "c1"
    assert _answer(299, fields).client_id == "c1"
    with pytest.raises(errors.ProviderResponseError) as moved:
        _answer(300, fields)
    assert type(moved.value) is errors.ProviderResponseError
    assert moved.value.status == 300
    assert str(moved.value) == "the registration answer is HTTP 300, not 201 (RFC 7591 §3.2.1)"


@pytest.mark.parametrize("field, value", [("client_id", "c\x01"), ("client_secret", "s\x01")])
def test_an_unusable_client_id_or_secret_is_named_in_the_error(field, value):
    fields = {"client_id": "c1", "client_secret": "s1",
              "token_endpoint_auth_method": "client_secret_post", field: value}
    with pytest.raises(errors.ProviderResponseError) as unusable:
        _answer(201, json.dumps(fields).encode())
    assert f"the registered {field} " in str(unusable.value)
    assert "\x01" not in str(unusable.value)


# --- what an unusable registration answer says ---------------------------------------


def _fields(**changes: object) -> bytes:
    fields: dict[str, object] = {"client_id": "c1", "client_secret": "s1",
                                 "token_endpoint_auth_method": "client_secret_post"}
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


def test_a_busy_registration_endpoint_says_so_and_reads_a_retry_after_date():
    with pytest.raises(errors.ProviderUnavailable) as busy:
        parse_registration_response(
            issuer=AS, registration_endpoint=AS + "/register", redirect_uri="https://r/cb",
            status=503, headers=(("Retry-After", "Thu, 01 Jan 1970 00:01:40 GMT"),), body=b"",
            now=40.0)
    assert str(busy.value) == "the registration endpoint is unavailable (HTTP 503)"
    assert busy.value.retry_after == 60


def test_a_refusal_with_an_error_or_description_that_is_not_text_keeps_neither():
    with pytest.raises(errors.RegistrationRefused) as refused:
        _answer(400, json.dumps({"error": 5, "error_description": ["x"]}).encode())
    assert (refused.value.error, refused.value.description) == ("registration_refused", None)


def test_an_unusable_client_id_is_a_provider_error_with_the_status():
    with pytest.raises(errors.ProviderResponseError) as unusable:
        _answer(201, _fields(client_id="c\x01"))
    assert unusable.value.status == 201


@pytest.mark.parametrize("named, shown", [
    ("private_key_jwt", "'private_key_jwt'"),
    ("m" * 100, repr("m" * 57 + "...")),
    (["none"], "'list'"),
    (5, "'int'"),
])
def test_an_auth_method_we_do_not_speak_is_named_in_the_error(named, shown):
    with pytest.raises(errors.ProviderResponseError) as unknown:
        _answer(201, _fields(token_endpoint_auth_method=named))
    assert type(unknown.value) is errors.ProviderResponseError
    assert unknown.value.status == 201
    assert str(unknown.value) == (
        f"the server registered us for token_endpoint_auth_method {shown}, which this server "
        "does not speak (none, client_secret_basic, client_secret_post)"
    )


def test_a_secret_method_without_a_secret_is_named_in_the_error():
    with pytest.raises(errors.ProviderResponseError) as unusable:
        _answer(201, _fields(client_secret=None))
    assert unusable.value.status == 201
    assert str(unusable.value) == (
        "the server registered us for client_secret_post without a client_secret"
    )


def test_a_public_client_keeps_no_secret_even_when_the_server_sent_one():
    public = _answer(201, _fields(token_endpoint_auth_method="none"))
    assert public.client_secret is None


@pytest.mark.parametrize("expires, kept", [
    (0, None), (1, 1.0), (253_402_300_799, 253_402_300_799.0), (253_402_300_800, None),
])
def test_a_secret_expiry_is_kept_from_one_second_to_the_end_of_year_9999(expires, kept):
    assert _answer(201, _fields(client_secret_expires_at=expires)).secret_expires_at == kept


def test_resource_metadata_is_kept_for_the_ttl_and_a_failure_for_the_failure_ttl():
    async def scenario():
        now = [0.0]
        found = {resource_metadata_urls(RESOURCE)[0]: HttpResponse(status=200, body=document())}
        transport = Recording(found)
        one = ResourceBroker(store=MemoryStore(), transport=transport, clock=lambda: now[0],
                             http_timeout=TIMEOUT, allow_insecure_http=False, ttl=100.0,
                             failure_ttl=20.0)
        await one.resource_metadata(RESOURCE)
        asked = len(transport.sent)
        now[0] = 99.0
        await one.resource_metadata(RESOURCE)
        assert len(transport.sent) == asked  # within the ttl: kept
        now[0] = 101.0
        await one.resource_metadata(RESOURCE)
        assert len(transport.sent) == 2 * asked  # past it: asked again
        transport.answers.clear()
        now[0] = 202.0
        with pytest.raises(errors.ResourceMetadataNotFound):
            await one.resource_metadata(RESOURCE)
        failed = len(transport.sent)
        now[0] = 221.0
        with pytest.raises(errors.ResourceMetadataNotFound):
            await one.resource_metadata(RESOURCE)
        assert len(transport.sent) == failed  # the failure is kept for failure_ttl
        now[0] = 223.0
        with pytest.raises(errors.ResourceMetadataNotFound):
            await one.resource_metadata(RESOURCE)
        assert len(transport.sent) > failed

    asyncio.run(scenario())


class ReplacedAfterRead(MemoryStore):
    """Another node replaces the registration right after the next read of it."""

    def __init__(self) -> None:
        super().__init__()
        self.replacement: bytes | None = None

    async def get(self, key):
        record = await super().get(key)
        if self.replacement is not None and record is not None:
            data, self.replacement = self.replacement, None
            await self.put(key, type=record.type, name=record.name, data=data,
                           expected_version=record.version)
        return record


def test_forgetting_a_registration_another_node_replaced_meanwhile_keeps_the_new_one():
    async def scenario():
        store = ReplacedAfterRead()
        first = Recording({AS + "/register": registered("c1", expires_at=0)})
        one = broker(first, store=store)
        made = await one.registration(METADATA, redirect_uri="https://r/cb", scopes=())
        theirs = ClientRegistration(
            issuer=AS, registration_endpoint=AS + "/register", redirect_uri="https://r/cb",
            client_id="c2")
        store.replacement = theirs.to_json()
        await one.forget_registration(AS, made.client_id)  # c1 was refused: forget it
        kept = ClientRegistration.from_json((await store.get(registration_key(AS))).data)
        assert kept.client_id == "c2"

    asyncio.run(scenario())


class RegisteredByAnotherNodeAfterFirstRead(MemoryStore):
    """The first read of the registration finds nothing; right after it, another
    node's registration lands (between the broker's first look and its second)."""

    def __init__(self, theirs: ClientRegistration) -> None:
        super().__init__()
        self.theirs: ClientRegistration | None = theirs

    async def get(self, key):
        record = await super().get(key)
        if self.theirs is not None and key == registration_key(AS):
            theirs, self.theirs = self.theirs, None
            await self.put(key, type=REGISTRATION_TYPE, name="theirs",
                           data=theirs.to_json(), expected_version=0)
        return record


def test_a_registration_another_node_kept_since_we_first_looked_is_used_without_a_post():
    async def scenario():
        theirs = ClientRegistration(issuer=AS, registration_endpoint=AS + "/register",
                                    redirect_uri="https://r/cb", client_id="c-theirs")
        store = RegisteredByAnotherNodeAfterFirstRead(theirs)
        transport = Recording({AS + "/register": registered("c-ours", expires_at=0)})
        got = await broker(transport, store=store).registration(
            METADATA, redirect_uri="https://r/cb", scopes=())
        assert (got.client_id, transport.sent) == ("c-theirs", [])

    asyncio.run(scenario())


def test_the_kept_registration_is_named_for_its_issuer():
    async def scenario():
        store = MemoryStore()
        transport = Recording({AS + "/register": registered("c1", expires_at=0)})
        await broker(transport, store=store).registration(
            METADATA, redirect_uri="https://r/cb", scopes=())
        assert (await store.get(registration_key(AS))).name == f"client registration at {AS}"

    asyncio.run(scenario())


def test_a_busy_registration_endpoint_reached_by_the_broker_says_when_to_come_back():
    async def scenario():
        busy = HttpResponse(status=503,
                            headers=(("Retry-After", "Thu, 01 Jan 1970 00:01:40 GMT"),))
        transport = Recording({AS + "/register": busy})
        with pytest.raises(errors.ProviderUnavailable) as unavailable:
            await broker(transport, clock=lambda: 40.0).registration(
                METADATA, redirect_uri="https://r/cb", scopes=())
        assert unavailable.value.retry_after == 60

    asyncio.run(scenario())


def test_no_registration_endpoint_is_explained_in_full():
    bare = ProviderMetadata(issuer=AS, authorization_endpoint=AS + "/a", token_endpoint=AS + "/t")
    with pytest.raises(errors.RegistrationNotSupported) as refused:
        asyncio.run(broker(Recording({})).registration(
            bare, redirect_uri="https://r/cb", scopes=()))
    assert str(refused.value) == (
        f"the authorization server {AS!r} names no registration_endpoint in its metadata "
        "(RFC 8414 §2, RFC 7591 §3): the broker cannot register a client there; give a "
        "client_id registered by hand instead"
    )


def test_a_secret_method_registration_without_a_secret_cannot_be_made():
    from roomsecrets.core.oauth.token_request import ClientAuthMethod

    with pytest.raises(errors.InvalidInput) as invalid:
        ClientRegistration(issuer=AS, registration_endpoint=AS + "/register",
                           redirect_uri="https://r/cb", client_id="c1",
                           auth_method=ClientAuthMethod.CLIENT_SECRET_POST)
    assert str(invalid.value) == "a client_secret_post client needs a client_secret"


_STORED = {"version": 1, "issuer": AS, "registration_endpoint": AS + "/register",
           "redirect_uri": "https://r/cb", "client_id": "c1",
           "token_endpoint_auth_method": "client_secret_post", "client_secret": "s1"}


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "stored registration is not valid JSON"),
    (b"\xff", "stored registration is not valid JSON"),
    (b"[]", "stored registration has an unknown format"),
    (json.dumps({**_STORED, "version": 2}).encode(), "stored registration has an unknown format"),
    (json.dumps({**_STORED, "client_id": ""}).encode(), "stored registration lacks a field"),
    (json.dumps({**_STORED, "issuer": 5}).encode(), "stored registration lacks a field"),
    (json.dumps({**_STORED, "client_secret": 5}).encode(),
     "stored registration has an unknown format"),
    (json.dumps({**_STORED, "token_endpoint_auth_method": "private_key_jwt"}).encode(),
     "stored registration has an unknown format"),
])
def test_an_unreadable_stored_registration_is_invalid_input_saying_why(raw, message):
    with pytest.raises(errors.InvalidInput) as unreadable:
        ClientRegistration.from_json(raw)
    assert str(unreadable.value) == message
