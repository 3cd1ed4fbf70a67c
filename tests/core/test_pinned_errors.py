"""Pinned: error messages and fields, the length caps on provider text, and scrubbing."""

from __future__ import annotations

from roomsecrets.core.errors import (
    OAuthError,
    ProviderUnavailable,
    RequestCancelled,
    RequestRejected,
    VersionConflict,
    safe_text,
    scrub,
)


def test_version_conflict_keeps_its_message() -> None:
    exc = VersionConflict("expected version 2, found version 3", expected=2, actual=3)
    assert str(exc) == "expected version 2, found version 3"
    assert (exc.expected, exc.actual) == (2, 3)


def test_provider_unavailable_keeps_its_message() -> None:
    exc = ProviderUnavailable("token endpoint unavailable", status=503, retry_after=2.0)
    assert str(exc) == "token endpoint unavailable"
    assert (exc.status, exc.retry_after) == (503, 2.0)


def test_request_cancelled_message_names_the_reason() -> None:
    assert str(RequestCancelled("left the room")) == (
        "the authorization request was cancelled: left the room"
    )


def test_a_rejection_reason_is_cut_to_64_characters() -> None:
    exc = RequestRejected("x" * 100)
    assert exc.error == "x" * 61 + "..."
    assert str(exc) == "the authorization request was rejected: " + "x" * 61 + "..."


def test_a_rejection_without_a_usable_reason_says_rejected() -> None:
    exc = RequestRejected("\x00\x01")
    assert exc.error == "rejected"
    assert str(exc) == "the authorization request was rejected: rejected"


def test_an_oauth_error_code_is_cut_to_64_characters() -> None:
    assert OAuthError("e" * 100).error == "e" * 61 + "..."


def test_an_oauth_error_uri_is_cut_to_300_characters() -> None:
    uri = "https://example.com/" + "u" * 400
    assert OAuthError("invalid_request", uri=uri).uri == uri[:297] + "..."


def test_scrub_removes_the_fully_percent_encoded_form_of_a_secret() -> None:
    # quote(safe="") encodes "/" as %2F and " " as %20; quote_plus gives "+" for
    # the space and the default quote keeps "/": only the first matches here.
    assert scrub("echo: a%2Fb%20c.", ["a/b c"]) == "echo: [redacted]."


def test_scrub_leaves_token_runs_that_share_nothing_with_a_secret() -> None:
    text = "request id 0123456789abcdefXYZ failed"
    assert scrub(text, ["completely-different-secret-value"]) == text


def test_scrub_redacts_a_run_whose_last_12_characters_are_a_piece_of_a_secret() -> None:
    assert scrub("got qqqqqqABCDEFGHIJKL here", ["zzABCDEFGHIJKLzz"]) == (
        "got [redacted] here"
    )


def test_scrub_does_not_redact_a_run_sharing_only_11_characters_at_its_end() -> None:
    # "qABCDEFGHIJK" shares "ABCDEFGHIJK" (11 characters) with the secret: not a piece.
    assert scrub("got qABCDEFGHIJK here", ["ABCDEFGHIJK0123"]) == "got qABCDEFGHIJK here"


def test_safe_text_keeps_text_of_exactly_the_limit() -> None:
    assert safe_text("a" * 10, 10) == "a" * 10
    assert safe_text("a" * 11, 10) == "a" * 7 + "..."
