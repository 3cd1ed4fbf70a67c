"""SecretRule: which secrets a participant may ask others for (``request_secret``)."""

from __future__ import annotations

import json

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.grants import (
    OAuthRule,
    SecretRule,
    SecretsGrant,
    check_secret_request,
)

API = "https://api.example.com/v1"


def ask(grant: SecretsGrant, *, target: str = "alice", url: str = API, type: str = "text/plain"):
    return check_secret_request(grant, target=target, url=url, type=type)


def test_the_default_grant_and_an_oauth_only_grant_ask_nobody_for_a_secret():
    for grant in (SecretsGrant(), SecretsGrant(oauth=[OAuthRule()])):
        decision = ask(grant)
        assert not decision.allowed
        assert decision.reason == "no secret rule matches: the grant has no secret_requests rules"


def test_allow_all_allows_any_secret_request():
    decision = ask(SecretsGrant.allow_all(), url="http://anything", type="x/y", target="bob")
    assert decision.allowed and decision.rule_index == 0


def test_every_field_must_match_and_the_reason_names_the_field_that_failed():
    grant = SecretsGrant(secret_requests=[
        SecretRule(url="https://api.example.com/*", type="text/*", participants=["alice"]),
        SecretRule(url="https://other.example/*"),
    ])
    assert ask(grant).reason == "allowed by secret rule 0"
    wrong_url = ask(grant, url="https://evil.example/v1")
    assert not wrong_url.allowed
    assert wrong_url.reason == (
        "no secret rule matches: rule 0 url 'https://evil.example/v1' does not match "
        "'https://api.example.com/*'; rule 1 url 'https://evil.example/v1' does not match "
        "'https://other.example/*'"
    )
    wrong_type = ask(grant, type="application/json")
    assert "rule 0 type 'application/json' does not match 'text/*'" in wrong_type.reason
    wrong_person = ask(grant, target="bob")
    assert "rule 0 participant 'bob' matches none of ['alice']" in wrong_person.reason
    # The second rule allows any type and anyone, for its own URLs only.
    assert ask(grant, target="bob", url="https://other.example/k", type="x/y").rule_index == 1


def test_secret_rules_round_trip_and_a_grant_without_them_reads_as_before():
    grant = SecretsGrant(secret_requests=[SecretRule(url="https://a/*", participants=["p-?"])])
    data = json.loads(json.dumps(grant.to_dict()))
    assert data["secret_requests"] == [
        {"url": "https://a/*", "type": "*", "participants": ["p-?"]}
    ]
    assert SecretsGrant.from_dict(data) == grant
    assert "secret_requests" not in SecretsGrant().to_dict()
    assert SecretsGrant.from_dict(SecretsGrant.allow_all().to_dict()) == SecretsGrant.allow_all()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"secret_requests": {}}, "SecretsGrant.secret_requests must be a list, got dict"),
        ({"secret_requests": [{"url": ""}]}, r"secret_requests\[0\].url must not be empty"),
        ({"secret_requests": [{"host": "x"}]}, r"secret_requests\[0\]: unknown key 'host'"),
        ({"secret_requests": [{"participants": "alice"}]},
         r"secret_requests\[0\].participants must be a list of glob patterns or None"),
        ({"secret_requests": [{"type": 3}]},
         r"secret_requests\[0\].type must be a glob pattern string, got int"),
    ],
)
def test_a_bad_secret_rule_in_a_grant_is_refused_naming_where(data, message):
    with pytest.raises(InvalidInput, match=message):
        SecretsGrant.from_dict(data)


def test_a_grant_refuses_something_else_in_secret_requests():
    with pytest.raises(InvalidInput, match=r"secret_requests\[0\] must be a SecretRule"):
        SecretsGrant(secret_requests=[OAuthRule()])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="must be a list of SecretRule"):
        SecretsGrant(secret_requests="*")  # type: ignore[arg-type]


def test_a_secret_rule_reads_back_what_it_wrote_and_names_a_bad_field():
    rule = SecretRule(url="https://a/*", type="text/*", participants=["alice"])
    assert SecretRule.from_dict(rule.to_dict()) == rule
    assert SecretRule.from_dict({}) == SecretRule()
    with pytest.raises(InvalidInput, match=r"^SecretRule: unknown key 'host'"):
        SecretRule.from_dict({"host": "x"})
    with pytest.raises(InvalidInput, match=r"^SecretRule.url must not be empty"):
        SecretRule.from_dict({"url": ""})


@pytest.mark.parametrize("field", ["target", "url", "type"])
def test_check_secret_request_names_an_argument_of_the_wrong_type(field):
    args = dict(target="alice", url="https://a/", type="text/plain")
    args[field] = 3
    with pytest.raises(InvalidInput, match=f"^{field} must be a string, got int$"):
        check_secret_request(SecretsGrant.allow_all(), **args)


@pytest.mark.parametrize("field", ["url", "type"])
def test_a_secret_rule_built_with_an_empty_pattern_names_the_field(field):
    with pytest.raises(InvalidInput, match=rf"^SecretRule\.{field} must not be empty"):
        SecretRule(**{field: ""})
