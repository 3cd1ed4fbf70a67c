"""Pinned: the edges of ``expires_in``, ``token_type`` and ``Retry-After`` parsing."""

from __future__ import annotations

import email.utils
import json

import pytest

from roomsecrets.core.errors import ProviderResponseError, ProviderUnavailable, ResponseTooLarge
from roomsecrets.core.oauth.token_response import parse_retry_after, parse_token_response

NOW = 1_700_000_000.0


def parse(**fields: object):
    return parse_token_response(
        status=200,
        headers=(("Content-Type", "application/json"),),
        body=json.dumps({"access_token": "at", **fields}).encode(),
        now=NOW,
        default_lifetime=None,
    )


@pytest.mark.parametrize("raw", [1_000_000_000, 1e9, "1000000000"])
def test_an_expires_in_of_exactly_the_cap_is_a_real_lifetime(raw: object) -> None:
    assert parse(expires_in=raw).expires_at == NOW + 1e9


@pytest.mark.parametrize("raw", [1_000_000_001, 1.0e9 + 1.0])
def test_an_expires_in_over_the_cap_is_treated_as_missing(raw: object) -> None:
    assert parse(expires_in=raw).expires_at is None


@pytest.mark.parametrize("raw", [0.0, 0.5, "0.5"])
def test_an_expires_in_below_one_second_is_kept(raw: object) -> None:
    assert parse(expires_in=raw).expires_at == NOW + float(raw)  # type: ignore[arg-type]


def test_an_unknown_token_type_is_kept_as_sent() -> None:
    assert parse(token_type=" MAC ").token_type == "MAC"


@pytest.mark.parametrize("fields", [{}, {"token_type": "  "}, {"token_type": 7}])
def test_a_missing_or_blank_token_type_means_bearer(fields: dict[str, object]) -> None:
    assert parse(**fields).token_type == "Bearer"


def test_a_retry_after_date_in_the_past_means_no_wait() -> None:
    past = email.utils.formatdate(NOW - 100, usegmt=True)
    assert parse_retry_after(past, NOW) == 0.0


def test_a_retry_after_date_half_a_second_ahead_waits_half_a_second() -> None:
    ahead = email.utils.formatdate(NOW + 10, usegmt=True)
    assert parse_retry_after(ahead, NOW + 9.5) == 0.5


def answer(body: bytes, content_type: str | None = "application/json", status: int = 200,
           requested: tuple[str, ...] = ()):
    headers = () if content_type is None else (("Content-Type", content_type),)
    return parse_token_response(
        status=status, headers=headers, body=body, now=NOW, requested_scopes=requested
    )


def test_an_error_message_names_the_content_type_lowercased_without_parameters() -> None:
    with pytest.raises(ProviderUnavailable, match=r"\(HTTP 502, text/html, 6 bytes\)"):
        answer(b"oops!!", "Text/HTML; charset=UTF-8", status=502)


def test_an_html_page_with_an_equals_sign_is_not_taken_for_form_data() -> None:
    with pytest.raises(ProviderResponseError, match="not JSON or form data"):
        answer(b"<html><a href=x>hi</a></html>", "text/html")


def test_a_json_body_labelled_text_plain_is_parsed_as_json() -> None:
    assert answer(b'{"access_token": "at"}', "text/plain").access_token == "at"


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/problem+json", "Application/JSON"]
)
def test_a_form_body_labelled_json_is_refused(content_type: str) -> None:
    with pytest.raises(ProviderResponseError, match="not JSON or form data"):
        answer(b"access_token=at", content_type)


def test_a_form_body_starting_with_a_capital_x_is_parsed_as_a_form() -> None:
    tokens = answer(b"X_custom=1&access_token=at", "application/x-www-form-urlencoded")
    assert tokens.access_token == "at"
    assert tokens.extra == {"X_custom": "1"}


def test_an_empty_scope_in_a_form_body_means_no_scopes_granted() -> None:
    tokens = answer(b"access_token=at&scope=", "application/x-www-form-urlencoded",
                    requested=("mail.read",))
    assert tokens.scopes == ()


def test_a_form_body_with_a_pair_missing_its_equals_sign_is_refused() -> None:
    with pytest.raises(ProviderResponseError, match="not JSON or form data"):
        answer(b"access_token=at&garbage", "application/x-www-form-urlencoded")


def test_an_error_without_a_content_type_says_so() -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        answer(b"oops!!", None, status=503)
    assert str(caught.value) == "token endpoint unavailable (HTTP 503, no content type, 6 bytes)"
    assert caught.value.status == 503


def test_a_long_content_type_is_cut_to_64_characters_in_messages() -> None:
    content_type = "application/" + "x" * 100
    with pytest.raises(ProviderUnavailable) as caught:
        answer(b"oops!!", content_type, status=502)
    shown = content_type[:61] + "..."
    assert str(caught.value) == f"token endpoint unavailable (HTTP 502, {shown}, 6 bytes)"


def test_a_body_of_exactly_the_cap_is_parsed() -> None:
    body = b'{"access_token": "at"}'
    tokens = parse_token_response(
        status=200, headers=(), body=body, now=NOW, max_body=len(body)
    )
    assert tokens.access_token == "at"


def test_a_body_one_byte_over_the_cap_is_refused_with_sizes_and_status() -> None:
    body = b'{"access_token": "at"}'
    with pytest.raises(ResponseTooLarge) as caught:
        parse_token_response(
            status=200, headers=(), body=body, now=NOW, max_body=len(body) - 1
        )
    assert str(caught.value) == (
        f"token response of {len(body)} bytes exceeds the {len(body) - 1}-byte cap"
    )
    assert caught.value.status == 200


def test_http_500_without_an_oauth_error_is_provider_unavailable() -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        answer(b"", "text/plain", status=500)
    assert caught.value.status == 500


@pytest.mark.parametrize("status", [300, 404])
def test_a_non_2xx_answer_without_an_oauth_error_is_a_response_error(status: int) -> None:
    with pytest.raises(ProviderResponseError) as caught:
        answer(b"moved", "text/plain", status=status)
    assert not isinstance(caught.value, ProviderUnavailable)
    assert str(caught.value) == (
        f"token endpoint answered without an OAuth error body (HTTP {status}, text/plain, 5 bytes)"
    )
    assert caught.value.status == status


def test_a_body_that_is_neither_json_nor_form_is_refused_with_what_came() -> None:
    with pytest.raises(ProviderResponseError) as caught:
        answer(b"<html></html>", "text/html", status=201)
    assert str(caught.value) == (
        "token response is not JSON or form data (HTTP 201, text/html, 13 bytes)"
    )
    assert caught.value.status == 201


def test_an_answer_without_an_access_token_is_refused_with_what_came() -> None:
    with pytest.raises(ProviderResponseError) as caught:
        answer(b'{"token_type": "bearer"}', "application/json", status=200)
    assert str(caught.value) == (
        "token response has no usable access_token (HTTP 200, application/json, 24 bytes)"
    )
    assert caught.value.status == 200


def test_an_empty_refresh_token_keeps_the_previous_one() -> None:
    tokens = parse_token_response(
        status=200, headers=(), body=b'{"access_token": "at", "refresh_token": ""}', now=NOW,
        previous_refresh_token="old-refresh",
    )
    assert tokens.refresh_token == "old-refresh"


def test_a_malformed_refresh_token_is_refused_with_what_came() -> None:
    body = b'{"access_token": "at", "refresh_token": "bad\\u0001"}'
    with pytest.raises(ProviderResponseError) as caught:
        answer(body, "application/json")
    assert str(caught.value) == (
        f"token response has a malformed refresh_token (HTTP 200, application/json, {len(body)} bytes)"
    )
    assert caught.value.status == 200


@pytest.mark.parametrize("raw", [123, "", None, ["x"]])
def test_an_id_token_that_is_not_a_non_empty_string_is_dropped(raw: object) -> None:
    assert parse(id_token=raw).id_token is None


def test_an_id_token_string_is_kept() -> None:
    assert parse(id_token="header.payload.sig").id_token == "header.payload.sig"
