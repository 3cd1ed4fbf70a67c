"""Pinned: the edges of ``expires_in``, ``token_type`` and ``Retry-After`` parsing."""

from __future__ import annotations

import email.utils
import json

import pytest

from roomsecrets.core.token_response import parse_retry_after, parse_token_response

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
