"""Pinned: grant decisions give their reasons, and grant parsing names what it refuses."""

from __future__ import annotations

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.grants import (
    SecretsGrant,
    check_answer_prompt,
    check_manage_own_secrets,
    glob_match,
)


@pytest.mark.parametrize(
    "allowed, reason",
    [
        (True, "the grant allows managing own secrets"),
        (False, "the grant does not allow managing own secrets"),
    ],
)
def test_managing_own_secrets_is_decided_with_its_reason(allowed: bool, reason: str) -> None:
    decision = check_manage_own_secrets(SecretsGrant(manage_own_secrets=allowed))
    assert (decision.allowed, decision.reason) == (allowed, reason)


@pytest.mark.parametrize(
    "allowed, reason",
    [
        (True, "the grant allows answering prompts"),
        (False, "the grant does not allow answering prompts"),
    ],
)
def test_answering_prompts_is_decided_with_its_reason(allowed: bool, reason: str) -> None:
    decision = check_answer_prompt(SecretsGrant(answer_prompts=allowed))
    assert (decision.allowed, decision.reason) == (allowed, reason)


def test_an_unknown_key_is_quoted_whole_when_its_repr_is_exactly_120_characters() -> None:
    key = "k" * 118  # repr adds the two quotes
    with pytest.raises(InvalidInput) as caught:
        SecretsGrant.from_dict({key: 1})
    assert f"unknown key {key!r} (allowed: " in str(caught.value)


def test_an_unknown_key_error_lists_the_allowed_keys_comma_separated() -> None:
    with pytest.raises(InvalidInput) as caught:
        SecretsGrant.from_dict({"bogus": 1})
    allowed = str(caught.value).split("(allowed: ", 1)[1]
    assert allowed.startswith("answer_prompts, ")
    assert "XX" not in allowed


def test_a_non_string_key_is_named_in_the_refusal() -> None:
    with pytest.raises(InvalidInput, match=r"^SecretsGrant: keys must be strings, got 7$"):
        SecretsGrant.from_dict({7: True})


@pytest.mark.parametrize(
    "value, pattern, matches",
    [
        ("b", "*b", True),
        ("xb", "*b", True),
        ("abc", "a*c", True),
        ("https://login.example.com/token", "https://*.example.com/*", True),
        ("https://example.com/token", "https://*.example.com/*", False),
        ("ac", "a*bc", False),
    ],
)
def test_a_star_matches_any_run_including_none_wherever_it_stands(
    value: str, pattern: str, matches: bool
) -> None:
    assert glob_match(value, pattern) is matches
