"""Pinned: what TokenEndpointClient hands the request builder and the response parser."""

from __future__ import annotations

import asyncio
import json

import pytest

from roomsecrets.core.errors import InsecureEndpointError, InvalidGrant
from roomsecrets.core.oauth.http import HttpRequest, HttpResponse
from roomsecrets.core.oauth.retry import RetryPolicy
from roomsecrets.core.oauth.token_endpoint import TokenEndpointClient
from roomsecrets.core.oauth.token_request import ClientCredentials
from roomsecrets.core.oauth.tokens import TokenSet

NOW = 1_000_000.0
HTTP_ENDPOINT = "http://tokens.example.com/token"
HTTPS_ENDPOINT = "https://tokens.example.com/token"
VERIFIER = "v" * 43
CLIENT_SECRET = "client-secret-value-0001"


class Transport:
    """Answers each send with the next response; records the requests."""

    def __init__(self, *responses: HttpResponse) -> None:
        self.responses = list(responses)
        self.requests: list[HttpRequest] = []
        self.timeouts: list[float] = []

    async def send(self, request: HttpRequest, *, timeout: float, max_body: int) -> HttpResponse:
        self.requests.append(request)
        self.timeouts.append(timeout)
        return self.responses.pop(0)


def json_response(status: int = 200, **fields: object) -> HttpResponse:
    return HttpResponse(
        status=status,
        headers=(("Content-Type", "application/json"),),
        body=json.dumps(fields).encode(),
    )


def endpoint_client(transport: Transport, **kw: object) -> TokenEndpointClient:
    async def no_sleep(seconds: float) -> None:
        return None

    kw.setdefault("sleep", no_sleep)
    return TokenEndpointClient(
        transport=transport, clock=lambda: NOW, retry=RetryPolicy(), **kw  # type: ignore[arg-type]
    )


def redeem(client: TokenEndpointClient, *, endpoint: str = HTTPS_ENDPOINT,
           verifier: str | None = VERIFIER, secret: str | None = None,
           scopes: tuple[str, ...] = ("mail.read",)) -> TokenSet:
    return asyncio.run(
        client.redeem_code(
            token_endpoint=endpoint,
            client=ClientCredentials(client_id="app", client_secret=secret),
            code="the-authorization-code",
            redirect_uri="https://app.example.com/cb",
            code_verifier=verifier,
            requested_scopes=scopes,
        )
    )


def refresh(client: TokenEndpointClient, tokens: TokenSet, *, endpoint: str = HTTPS_ENDPOINT,
            secret: str | None = None) -> TokenSet:
    return asyncio.run(
        client.refresh(
            token_endpoint=endpoint, client=ClientCredentials(client_id="app", client_secret=secret), tokens=tokens
        )
    )


OLD = TokenSet(
    access_token="old-at", issued_at=0.0, refresh_token="old-refresh-token-0001",
    scopes=("mail.read", "mail.send"),
)


def test_redeeming_over_plain_http_works_when_insecure_http_is_allowed() -> None:
    transport = Transport(json_response(access_token="at"))
    tokens = redeem(endpoint_client(transport, allow_insecure_http=True), endpoint=HTTP_ENDPOINT)
    assert tokens.access_token == "at"
    assert transport.requests[0].url == HTTP_ENDPOINT


def test_redeeming_over_plain_http_is_refused_by_default() -> None:
    with pytest.raises(InsecureEndpointError):
        redeem(endpoint_client(Transport()), endpoint=HTTP_ENDPOINT)


def test_refreshing_over_plain_http_works_when_insecure_http_is_allowed() -> None:
    transport = Transport(json_response(access_token="at2"))
    tokens = refresh(endpoint_client(transport, allow_insecure_http=True), OLD,
                     endpoint=HTTP_ENDPOINT)
    assert tokens.access_token == "at2"


def test_a_redeemed_token_without_a_scope_field_carries_the_requested_scopes() -> None:
    tokens = redeem(endpoint_client(Transport(json_response(access_token="at"))),
                    scopes=("mail.read", "calendar"))
    assert tokens.scopes == ("mail.read", "calendar")


def test_a_refreshed_token_without_a_scope_field_keeps_the_old_scopes() -> None:
    tokens = refresh(endpoint_client(Transport(json_response(access_token="at2"))), OLD)
    assert tokens.scopes == ("mail.read", "mail.send")


def test_a_refresh_answer_without_a_refresh_token_keeps_the_old_one() -> None:
    tokens = refresh(endpoint_client(Transport(json_response(access_token="at2"))), OLD)
    assert tokens.refresh_token == "old-refresh-token-0001"


def test_a_token_without_expires_in_gets_the_configured_default_lifetime() -> None:
    client = endpoint_client(Transport(json_response(access_token="at")), default_lifetime=120.0)
    assert redeem(client).expires_at == NOW + 120.0


def test_the_verifier_echoed_by_a_provider_is_redacted_from_the_error() -> None:
    answer = json_response(400, error="invalid_grant", error_description=f"bad {VERIFIER}")
    with pytest.raises(InvalidGrant) as caught:
        redeem(endpoint_client(Transport(answer)))
    assert VERIFIER not in str(caught.value)
    assert caught.value.description == "bad [redacted]"


@pytest.mark.parametrize("call", ["redeem", "refresh"])
def test_the_client_secret_echoed_by_a_provider_is_redacted_from_the_error(call: str) -> None:
    answer = json_response(400, error="invalid_grant", error_description=f"bad {CLIENT_SECRET}")
    client = endpoint_client(Transport(answer))
    with pytest.raises(InvalidGrant) as caught:
        if call == "redeem":
            redeem(client, secret=CLIENT_SECRET)
        else:
            refresh(client, OLD, secret=CLIENT_SECRET)
    assert caught.value.description == "bad [redacted]"


@pytest.mark.parametrize("call", ["redeem", "refresh"])
def test_provider_text_is_kept_when_no_verifier_or_secret_was_sent(call: str) -> None:
    # Missing verifier and secret redact nothing: "XXXX" and "" are not secrets.
    answer = json_response(400, error="invalid_grant", error_description="XXXX is wrong")
    client = endpoint_client(Transport(answer))
    with pytest.raises(InvalidGrant) as caught:
        if call == "redeem":
            redeem(client, verifier=None)
        else:
            refresh(client, OLD)
    assert caught.value.description == "XXXX is wrong"


def test_the_retry_wait_comes_from_the_injected_uniform() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    transport = Transport(json_response(503), json_response(access_token="at"))
    client = endpoint_client(transport, sleep=sleep, uniform=lambda low, high: 0.125)
    assert redeem(client).access_token == "at"
    assert slept == [0.125]
    assert len(transport.requests) == 2


def test_by_default_a_call_waits_30_seconds_and_a_token_lives_an_hour() -> None:
    transport = Transport(json_response(access_token="at"))
    tokens = redeem(endpoint_client(transport))
    assert transport.timeouts == [30.0]
    assert tokens.expires_at == NOW + 3600.0


def test_the_configured_timeout_reaches_the_transport() -> None:
    transport = Transport(json_response(access_token="at"))
    redeem(endpoint_client(transport, timeout=4.5))
    assert transport.timeouts == [4.5]
