"""Pinned: grant decisions give their reasons, and grant parsing names what it refuses."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.grants import (
    GrantDecision,
    OAuthRule,
    SecretsGrant,
    check_answer_prompt,
    check_manage_own_secrets,
    check_oauth_request,
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


@pytest.mark.parametrize(
    "value, pattern, matches",
    [
        # a backtrack resumes right after the last '*', not one further on
        ("ab", "*c", False),
        ("xab", "*ab", True),
        # trailing stars match the empty rest; nothing else does
        ("mail.", "mail.*", True),
        ("a", "a**", True),
        ("a", "a ", False),
        ("a", "aX", False),
    ],
)
def test_a_pattern_must_be_used_up_save_for_trailing_stars(
    value: str, pattern: str, matches: bool
) -> None:
    assert glob_match(value, pattern) is matches


def _refusal(call: Callable[[], object]) -> str:
    with pytest.raises(InvalidInput) as caught:
        call()
    return str(caught.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"allowed": "yes", "reason": "r"},
            "GrantDecision.allowed must be true or false, got str",
        ),
        ({"allowed": True, "reason": None}, "GrantDecision.reason must be a string"),
        (
            {"allowed": True, "reason": "r", "rule_index": "1"},
            "GrantDecision.rule_index must be an int on an allowed decision",
        ),
        (
            {"allowed": True, "reason": "r", "rule_index": True},
            "GrantDecision.rule_index must be an int on an allowed decision",
        ),
        (
            {"allowed": False, "reason": "r", "rule_index": 0},
            "GrantDecision.rule_index must be an int on an allowed decision",
        ),
    ],
)
def test_a_malformed_decision_is_refused_naming_the_field(
    kwargs: dict[str, Any], message: str
) -> None:
    assert _refusal(lambda: GrantDecision(**kwargs)) == message


def test_an_allowed_decision_keeps_its_rule_index() -> None:
    assert GrantDecision(allowed=True, reason="r", rule_index=2).rule_index == 2


_REQUEST = {
    "target": "alice",
    "client_id": "mail-app",
    "authorization_endpoint": "https://a.example/auth",
    "token_endpoint": "https://a.example/token",
    "scopes": None,
}


@pytest.mark.parametrize(
    "name", ["target", "client_id", "authorization_endpoint", "token_endpoint"]
)
def test_a_non_string_request_field_is_refused_by_name_and_type(name: str) -> None:
    request = {**_REQUEST, name: 7}
    message = _refusal(lambda: check_oauth_request(SecretsGrant.allow_all(), **request))
    assert message == f"{name} must be a string, got int"


@pytest.mark.parametrize(
    "scopes, message",
    [
        ("mail.read", "scopes must be a list of strings or None"),
        (7, "scopes must be a list of strings or None"),
        (["mail.read", 7], "scopes must be strings, got int"),
    ],
)
def test_malformed_request_scopes_are_refused_with_the_reason(scopes: object, message: str) -> None:
    request = {**_REQUEST, "scopes": scopes}
    assert _refusal(lambda: check_oauth_request(SecretsGrant.allow_all(), **request)) == message


def test_a_bare_string_pattern_list_is_refused_naming_its_type() -> None:
    message = _refusal(lambda: OAuthRule(scopes="mail.*"))  # type: ignore[arg-type]
    assert message == "OAuthRule.scopes must be a list of glob patterns or None, got str"


@pytest.mark.parametrize(
    "oauth, message",
    [
        ("rule", "SecretsGrant.oauth must be a list of OAuthRule"),
        (7, "SecretsGrant.oauth must be a list of OAuthRule"),
        ([OAuthRule(), "rule"], "SecretsGrant.oauth[1] must be an OAuthRule, got str"),
    ],
)
def test_a_malformed_oauth_list_is_refused_naming_the_entry(oauth: object, message: str) -> None:
    assert _refusal(lambda: SecretsGrant(oauth=oauth)) == message  # type: ignore[arg-type]
