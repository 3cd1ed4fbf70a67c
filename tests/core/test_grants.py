"""Grants: rules, the pure checks, serialisation, and authorize() with its audit event."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any, Optional

import pytest

from roomsecrets.core.audit import AuditEvent, RecordingAuditSink
from roomsecrets.core.errors import GrantDenied, InvalidInput, RoomSecretsError
from roomsecrets.core.grants import (
    GrantDecision,
    OAuthRule,
    SecretRule,
    SecretsGrant,
    authorize,
    check_answer_prompt,
    check_manage_own_secrets,
    check_oauth_request,
    decision_event,
    glob_match,
)

AUTH = "https://accounts.example.com/o/oauth2/auth"
TOKEN = "https://accounts.example.com/o/oauth2/token"


def check(
    grant: SecretsGrant,
    *,
    target: str = "alice",
    client_id: str = "mail-app",
    authorization_endpoint: str = AUTH,
    token_endpoint: str = TOKEN,
    scopes: Optional[list[str]] = None,
) -> GrantDecision:
    return check_oauth_request(
        grant,
        target=target,
        client_id=client_id,
        authorization_endpoint=authorization_endpoint,
        token_endpoint=token_endpoint,
        scopes=scopes,
    )


def one_rule(**fields: Any) -> SecretsGrant:
    return SecretsGrant(oauth=[OAuthRule(**fields)])


# --- defaults ----------------------------------------------------------------


def test_default_grant_denies_asking_for_a_token() -> None:
    decision = check(SecretsGrant())
    assert not decision.allowed
    assert decision.rule_index is None
    assert decision.reason == "no oauth rule matches: the grant has no oauth rules"


def test_default_grant_allows_managing_own_secrets_and_answering_prompts() -> None:
    assert check_manage_own_secrets(SecretsGrant()).allowed
    assert check_answer_prompt(SecretsGrant()).allowed


def test_flags_off_deny_with_a_reason_naming_the_permission() -> None:
    grant = SecretsGrant(manage_own_secrets=False, answer_prompts=False)
    managing = check_manage_own_secrets(grant)
    answering = check_answer_prompt(grant)
    assert not managing.allowed
    assert "managing own secrets" in managing.reason
    assert not answering.allowed
    assert "answering prompts" in answering.reason


def test_allow_all_allows_any_request_of_anyone() -> None:
    grant = SecretsGrant.allow_all()
    assert grant.manage_own_secrets and grant.answer_prompts
    decision = check(
        grant,
        target="anyone",
        client_id="whatever",
        authorization_endpoint="https://x.test/a",
        token_endpoint="https://y.test/t",
        scopes=["a", "b/c", "https://www.googleapis.com/auth/gmail.readonly"],
    )
    assert decision == GrantDecision(allowed=True, reason="allowed by oauth rule 0", rule_index=0)


def test_wildcard_and_none_fields_allow_anything() -> None:
    rule = OAuthRule()
    assert rule.client_id == rule.authorization_endpoint == rule.token_endpoint == "*"
    assert rule.scopes is None and rule.participants is None
    assert check(SecretsGrant(oauth=[rule]), scopes=["anything", "at.all"]).allowed


# --- each field can deny -------------------------------------------------------


def test_client_id_mismatch_denies_and_names_both_values() -> None:
    decision = check(one_rule(client_id="cal-app"), client_id="mail-app")
    assert not decision.allowed
    assert decision.reason == (
        "no oauth rule matches: rule 0 client_id 'mail-app' does not match 'cal-app'"
    )


def test_authorization_endpoint_mismatch_denies() -> None:
    decision = check(
        one_rule(authorization_endpoint="https://accounts.example.com/*"),
        authorization_endpoint="https://evil.test/auth",
    )
    assert not decision.allowed
    assert "rule 0 authorization_endpoint 'https://evil.test/auth' does not match" in (
        decision.reason
    )


def test_token_endpoint_mismatch_denies() -> None:
    decision = check(one_rule(token_endpoint=TOKEN), token_endpoint=TOKEN + "2")
    assert not decision.allowed
    assert "rule 0 token_endpoint" in decision.reason


def test_one_scope_outside_the_patterns_denies() -> None:
    grant = one_rule(scopes=["mail.read", "calendar.*"])
    assert check(grant, scopes=["mail.read", "calendar.events"]).allowed
    decision = check(grant, scopes=["mail.read", "admin.all"])
    assert not decision.allowed
    assert decision.reason == (
        "no oauth rule matches: rule 0 scope 'admin.all' matches none of "
        "['mail.read', 'calendar.*']"
    )


def test_space_joined_scopes_are_checked_token_by_token() -> None:
    # "mail.*" must not cover "mail.read admin.all" just because * matches the space.
    grant = one_rule(scopes=["mail.*"])
    assert check(grant, scopes=["mail.read mail.send"]).allowed
    decision = check(grant, scopes=["mail.read admin.all"])
    assert not decision.allowed
    assert "'admin.all'" in decision.reason


def test_no_scopes_requested_passes_a_scope_restricted_rule() -> None:
    grant = one_rule(scopes=["mail.read"])
    assert check(grant, scopes=None).allowed
    assert check(grant, scopes=[]).allowed


def test_empty_scope_pattern_list_allows_only_requests_without_scopes() -> None:
    grant = one_rule(scopes=[])
    assert check(grant, scopes=None).allowed
    assert not check(grant, scopes=["mail.read"]).allowed


def test_participant_outside_the_patterns_denies() -> None:
    grant = one_rule(participants=["alice", "team-*"])
    assert check(grant, target="alice").allowed
    assert check(grant, target="team-ops").allowed
    decision = check(grant, target="bob")
    assert not decision.allowed
    assert decision.reason == (
        "no oauth rule matches: rule 0 participant 'bob' matches none of ['alice', 'team-*']"
    )


def test_empty_participant_list_matches_nobody() -> None:
    assert not check(one_rule(participants=[]), target="alice").allowed


# --- glob semantics ----------------------------------------------------------------


def test_star_crosses_slashes_in_endpoints() -> None:
    grant = one_rule(
        authorization_endpoint="https://accounts.example.com/*",
        token_endpoint="https://accounts.example.com/*",
    )
    assert check(grant).allowed
    # The host is spelled out, so a look-alike host does not match.
    assert not check(grant, token_endpoint="https://accounts.example.com.evil.test/t").allowed


@pytest.mark.parametrize(
    ("pattern", "value", "allowed"),
    [
        ("mail-?pp", "mail-app", True),
        # Only * and ? are special: brackets are literal (IPv6 literals).
        ("mail-[ab]pp", "mail-app", False),
        ("mail-[ab]pp", "mail-[ab]pp", True),
        ("mail-[!a]pp", "mail-[!a]pp", True),
        ("Mail-App", "mail-app", False),  # case-sensitive
        ("mail", "mail-app", False),  # whole string, not a prefix
        ("*-app", "mail-app", True),
    ],
)
def test_client_id_glob_patterns(pattern: str, value: str, allowed: bool) -> None:
    assert check(one_rule(client_id=pattern), client_id=value).allowed is allowed


# --- several rules -----------------------------------------------------------------


def test_first_matching_rule_wins_and_is_named() -> None:
    grant = SecretsGrant(
        oauth=[
            OAuthRule(client_id="cal-app"),
            OAuthRule(client_id="mail-*"),
            OAuthRule(),
        ]
    )
    decision = check(grant, client_id="mail-app")
    assert decision.allowed
    assert decision.rule_index == 1
    assert decision.reason == "allowed by oauth rule 1"


def test_denial_explains_every_rule() -> None:
    grant = SecretsGrant(
        oauth=[
            OAuthRule(client_id="cal-app"),
            OAuthRule(client_id="mail-app", participants=["carol"]),
        ]
    )
    decision = check(grant, client_id="mail-app", target="bob")
    assert not decision.allowed
    assert decision.reason == (
        "no oauth rule matches: rule 0 client_id 'mail-app' does not match 'cal-app'; "
        "rule 1 participant 'bob' matches none of ['carol']"
    )


def test_long_values_are_cut_in_reasons() -> None:
    decision = check(one_rule(client_id="x"), client_id="a" * 10_000)
    assert not decision.allowed
    assert decision.reason == (
        "no oauth rule matches: rule 0 client_id '" + "a" * 116 + "... does not match 'x'"
    )


def test_control_characters_are_escaped_in_reasons() -> None:
    decision = check(one_rule(client_id="x"), client_id="evil\nline")
    assert "\n" not in decision.reason
    assert "'evil\\nline'" in decision.reason


# --- check input validation ------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["target", "client_id", "authorization_endpoint", "token_endpoint"]
)
def test_check_rejects_non_string_arguments(field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        check(SecretsGrant.allow_all(), **{field: None})  # type: ignore[arg-type]


@pytest.mark.parametrize("scopes", ["mail.read", [1], b"mail"])
def test_check_rejects_scopes_that_are_not_a_list_of_strings(scopes: Any) -> None:
    with pytest.raises(InvalidInput, match="scopes"):
        check(SecretsGrant.allow_all(), scopes=scopes)


# --- value construction ------------------------------------------------------------


def test_rule_lists_are_normalised_to_tuples() -> None:
    rule = OAuthRule(scopes=["a", "b"], participants=["alice"])
    assert rule.scopes == ("a", "b")
    assert rule.participants == ("alice",)
    assert rule == OAuthRule(scopes=("a", "b"), participants=("alice",))
    assert hash(rule) == hash(OAuthRule(scopes=("a", "b"), participants=("alice",)))


def test_grant_rule_list_is_normalised_to_a_tuple_and_hashable() -> None:
    grant = SecretsGrant(oauth=[OAuthRule()], secret_requests=[SecretRule()])
    assert grant.oauth == (OAuthRule(),)
    assert grant.secret_requests == (SecretRule(),)
    assert grant == SecretsGrant.allow_all()
    assert hash(grant) == hash(SecretsGrant.allow_all())


def test_values_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        OAuthRule().client_id = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SecretsGrant().answer_prompts = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"client_id": 3}, r"OAuthRule\.client_id must be a glob pattern string, got int"),
        ({"token_endpoint": ""}, r"OAuthRule\.token_endpoint must not be empty"),
        ({"authorization_endpoint": None}, r"OAuthRule\.authorization_endpoint"),
        ({"scopes": "mail.read"}, r"OAuthRule\.scopes must be a list of glob patterns"),
        ({"scopes": ["ok", 5]}, r"OAuthRule\.scopes\[1\] must be a glob pattern string"),
        ({"participants": ["alice", ""]}, r"OAuthRule\.participants\[1\] must not be empty"),
        ({"participants": {"alice"}}, r"OAuthRule\.participants must be a list"),
    ],
)
def test_rule_rejects_bad_fields_naming_them(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        OAuthRule(**fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"oauth": OAuthRule()}, r"SecretsGrant\.oauth must be a list of OAuthRule"),
        ({"oauth": "*"}, r"SecretsGrant\.oauth must be a list of OAuthRule"),
        ({"oauth": [{"client_id": "x"}]}, r"SecretsGrant\.oauth\[0\] must be an OAuthRule"),
        ({"manage_own_secrets": 1}, r"SecretsGrant\.manage_own_secrets must be true or false"),
        ({"answer_prompts": "yes"}, r"SecretsGrant\.answer_prompts must be true or false"),
    ],
)
def test_grant_rejects_bad_fields_naming_them(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        SecretsGrant(**fields)


def test_decision_rejects_a_rule_index_on_a_denial() -> None:
    with pytest.raises(InvalidInput, match="rule_index"):
        GrantDecision(allowed=False, reason="no", rule_index=0)


# --- to_dict / from_dict -------------------------------------------------------------


def test_to_dict_is_plain_json_with_a_version() -> None:
    grant = SecretsGrant(
        oauth=[OAuthRule(client_id="mail-app", scopes=["mail.*"], participants=["alice"])],
        answer_prompts=False,
    )
    data = grant.to_dict()
    assert data == {
        "version": 1,
        "oauth": [
            {
                "client_id": "mail-app",
                "authorization_endpoint": "*",
                "token_endpoint": "*",
                "scopes": ["mail.*"],
                "participants": ["alice"],
            }
        ],
        "manage_own_secrets": True,
        "answer_prompts": False,
    }
    assert SecretsGrant.from_dict(json.loads(json.dumps(data))) == grant


@pytest.mark.parametrize(
    "grant", [SecretsGrant(), SecretsGrant.allow_all(), SecretsGrant(manage_own_secrets=False)]
)
def test_known_grants_round_trip(grant: SecretsGrant) -> None:
    assert SecretsGrant.from_dict(json.loads(json.dumps(grant.to_dict()))) == grant


def test_rule_round_trips_on_its_own() -> None:
    rule = OAuthRule(token_endpoint=TOKEN, scopes=[])
    assert OAuthRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule


def test_from_dict_fills_missing_keys_with_defaults() -> None:
    assert SecretsGrant.from_dict({}) == SecretsGrant()
    assert SecretsGrant.from_dict({"oauth": [{}], "secret_requests": [{}]}) == (
        SecretsGrant.allow_all()
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], r"SecretsGrant must be an object, got list"),
        ({"oauth": [], "admin": True}, r"SecretsGrant: unknown key 'admin'"),
        ({"version": 2}, r"SecretsGrant\.version: unsupported grant format 2"),
        ({"version": "1"}, r"SecretsGrant\.version: unsupported grant format '1'"),
        ({"version": True}, r"SecretsGrant\.version"),
        ({"oauth": {}}, r"SecretsGrant\.oauth must be a list, got dict"),
        ({"oauth": ["*"]}, r"SecretsGrant\.oauth\[0\] must be an object, got str"),
        ({"oauth": [{}, {"scope": ["a"]}]}, r"SecretsGrant\.oauth\[1\]: unknown key 'scope'"),
        ({"oauth": [{"client_id": 7}]}, r"SecretsGrant\.oauth\[0\]\.client_id must be a glob"),
        ({"oauth": [{"scopes": "a b"}]}, r"SecretsGrant\.oauth\[0\]\.scopes must be a list"),
        (
            {"oauth": [{}, {"participants": ["alice", None]}]},
            r"SecretsGrant\.oauth\[1\]\.participants\[1\] must be a glob pattern string",
        ),
        ({"manage_own_secrets": "false"}, r"SecretsGrant\.manage_own_secrets must be true or"),
        ({"answer_prompts": 0}, r"SecretsGrant\.answer_prompts must be true or false, got int"),
        ({1: True}, r"SecretsGrant: keys must be strings"),
    ],
)
def test_from_dict_rejects_bad_input_naming_the_field(data: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        SecretsGrant.from_dict(data)


def test_rule_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(InvalidInput, match=r"OAuthRule: unknown key 'clientid'"):
        OAuthRule.from_dict({"clientid": "x"})


# --- audit events and authorize -------------------------------------------------------


def test_decision_event_records_outcome_reason_and_rule() -> None:
    decision = check(SecretsGrant.allow_all())
    event = decision_event(
        decision,
        action="grant.oauth_request",
        room="room-1",
        actor="agent-1",
        at=12.5,
        details=[("client_id", "mail-app")],
    )
    assert event == AuditEvent(
        action="grant.oauth_request",
        room="room-1",
        actor="agent-1",
        outcome="allowed",
        reason="allowed by oauth rule 0",
        at=12.5,
        details=(("client_id", "mail-app"), ("rule_index", "0")),
    )


def test_authorize_sends_an_allowed_decision_to_the_sink_and_returns() -> None:
    sink = RecordingAuditSink()
    authorize(
        check(SecretsGrant.allow_all()),
        sink=sink,
        action="grant.oauth_request",
        room="room-1",
        actor="agent-1",
        at=1.0,
    )
    assert [event.outcome for event in sink.events] == ["allowed"]


def test_authorize_sends_a_denial_to_the_sink_then_raises_grant_denied() -> None:
    sink = RecordingAuditSink()
    decision = check(SecretsGrant(), client_id="mail-app")
    with pytest.raises(GrantDenied) as raised:
        authorize(
            decision,
            sink=sink,
            action="grant.oauth_request",
            room="room-1",
            actor="agent-1",
            at=2.0,
            details=[("target", "alice")],
        )
    assert isinstance(raised.value, PermissionError)
    assert isinstance(raised.value, RoomSecretsError)
    assert raised.value.code == "grant_denied"
    assert str(raised.value) == decision.reason
    (event,) = sink.events
    assert event.outcome == "denied"
    assert event.reason == decision.reason
    assert event.details == (("target", "alice"),)
    assert event.at == 2.0


@pytest.mark.parametrize(
    ("decision", "outcome"),
    [
        (check_manage_own_secrets(SecretsGrant()), "allowed"),
        (check_manage_own_secrets(SecretsGrant(manage_own_secrets=False)), "denied"),
        (check_answer_prompt(SecretsGrant()), "allowed"),
        (check_answer_prompt(SecretsGrant(answer_prompts=False)), "denied"),
        (check(SecretsGrant()), "denied"),
        (check(SecretsGrant.allow_all()), "allowed"),
    ],
)
def test_every_decision_reaches_the_sink_with_its_outcome(
    decision: GrantDecision, outcome: str
) -> None:
    sink = RecordingAuditSink()
    try:
        authorize(decision, sink=sink, action="grant.test", room="r", actor="a", at=0.0)
    except GrantDenied:
        assert outcome == "denied"
    else:
        assert outcome == "allowed"
    assert [(event.outcome, event.reason) for event in sink.events] == [(outcome, decision.reason)]


def test_a_failing_sink_stops_an_allowed_operation() -> None:
    def broken_sink(event: AuditEvent) -> None:
        raise OSError("audit log unavailable")

    with pytest.raises(OSError, match="audit log unavailable"):
        authorize(
            check(SecretsGrant.allow_all()),
            sink=broken_sink,
            action="grant.oauth_request",
            room="r",
            actor="a",
            at=0.0,
        )


# --- property: any grant round-trips through JSON ---------------------------------------

try:
    from hypothesis import event, example, given, settings
    from hypothesis import strategies as st
except ImportError:  # tests/core must run with only the stdlib and pytest
    given = None  # type: ignore[assignment]

if given is not None:
    patterns = st.text(min_size=1, max_size=30)
    pattern_lists = st.none() | st.lists(patterns, max_size=4).map(tuple)
    rules = st.builds(
        OAuthRule,
        client_id=patterns,
        issuer=patterns,
        authorization_endpoint=patterns,
        token_endpoint=patterns,
        scopes=pattern_lists,
        participants=pattern_lists,
    )
    grants = st.builds(
        SecretsGrant,
        oauth=st.lists(rules, max_size=4).map(tuple),
        manage_own_secrets=st.booleans(),
        answer_prompts=st.booleans(),
    )

    @given(grants)
    def test_any_grant_round_trips_through_json(grant: SecretsGrant) -> None:
        text = json.dumps(grant.to_dict())
        restored = SecretsGrant.from_dict(json.loads(text))
        assert restored == grant
        assert restored.to_dict() == grant.to_dict()

    # Random patterns almost never match a random request (2,000 of 2,000 draws were
    # denied), so the decision test makes its rules from the request: every field
    # matches ("*", the value, a glob cut from it), except that about half the rules
    # get one field that cannot match. No whitespace or comma in a value, so each
    # requested scope is one scope.
    request_values = st.text(alphabet="abcxyz019-._:/[]!\\", min_size=1, max_size=12)
    _FIELDS = ("client_id", "issuer", "authorization_endpoint", "token_endpoint")

    def matching(value: str) -> st.SearchStrategy[str]:
        """Patterns that match all of ``value``."""
        return st.one_of(
            st.just("*"),
            st.just(value),
            st.integers(0, len(value)).map(lambda cut: value[:cut] + "*"),
            st.integers(0, len(value)).map(lambda cut: "*" + value[cut:]),
            st.integers(0, len(value) - 1).map(lambda at: value[:at] + "?" + value[at + 1 :]),
        )

    def differing(value: str) -> st.SearchStrategy[str]:
        """Patterns that do not match ``value``."""
        return st.one_of(st.just(value + "~"), st.just("?" + value), patterns).filter(
            lambda pattern: not glob_match(value, pattern)
        )

    @st.composite
    def rules_for(draw: st.DrawFn, request: dict[str, Any]) -> OAuthRule:
        scopes: list[str] = request["scopes"] or []
        broken = draw(
            st.none() | st.sampled_from((*_FIELDS, "participants") + (("scopes",) if scopes else ()))
        )
        fields: dict[str, Any] = {}
        for name in _FIELDS:
            value = request[name]
            if value is None:  # a request without an issuer matches only "*"
                fields[name] = draw(differing("")) if name == broken else "*"
            else:
                fields[name] = draw(differing(value) if name == broken else matching(value))
        extra = st.lists(patterns, max_size=2)
        if broken == "scopes":
            missing = draw(st.sampled_from(scopes))
            others = draw(st.lists(st.sampled_from(scopes).flatmap(matching), max_size=3))
            fields["scopes"] = [
                pattern for pattern in others + draw(extra) if not glob_match(missing, pattern)
            ] + [draw(differing(missing))]
        elif draw(st.booleans()):
            fields["scopes"] = [draw(matching(scope)) for scope in scopes] + draw(extra)
        if broken == "participants":
            fields["participants"] = draw(st.lists(differing(request["target"]), max_size=3))
        elif draw(st.booleans()):
            fields["participants"] = [draw(matching(request["target"])), *draw(extra)]
        return OAuthRule(**fields)

    @st.composite
    def requests_and_grants(draw: st.DrawFn) -> tuple[dict[str, Any], SecretsGrant]:
        request: dict[str, Any] = {
            "target": draw(request_values),
            "client_id": draw(request_values),
            "issuer": draw(st.none() | request_values),
            "authorization_endpoint": draw(request_values),
            "token_endpoint": draw(request_values),
            "scopes": draw(st.none() | st.lists(request_values, max_size=3)),
        }
        grant = SecretsGrant(
            oauth=draw(st.lists(rules_for(request), max_size=3)),
            manage_own_secrets=draw(st.booleans()),
            answer_prompts=draw(st.booleans()),
        )
        return request, grant

    def decide(grant: SecretsGrant, request: dict[str, Any]) -> GrantDecision:
        return check_oauth_request(grant, **request)

    _REQUEST = {
        "target": "alice",
        "client_id": "mail-app",
        "issuer": None,
        "authorization_endpoint": AUTH,
        "token_endpoint": TOKEN,
        "scopes": ["mail.read"],
    }

    @given(requests_and_grants())
    # One of each outcome, whatever the draws: allowed, and denied by participant only.
    @example((_REQUEST, one_rule(client_id="mail-*", scopes=["mail.*"], participants=["alice"])))
    @example((_REQUEST, one_rule(client_id="mail-*", scopes=["mail.*"], participants=["bob"])))
    def test_decisions_survive_the_round_trip(case: tuple[dict[str, Any], SecretsGrant]) -> None:
        request, grant = case
        restored = SecretsGrant.from_dict(json.loads(json.dumps(grant.to_dict())))
        decision = decide(grant, request)
        event("allowed" if decision.allowed else "denied")
        assert decide(restored, request) == decision

    def test_the_round_trip_cases_are_often_allowed_and_often_denied() -> None:
        # Without this, a strategy whose requests never match (as before) would pass
        # the round-trip test above while never reaching the allowed path.
        seen: Counter[bool] = Counter()

        @settings(max_examples=300, derandomize=True, database=None)
        @given(requests_and_grants())
        def draw(case: tuple[dict[str, Any], SecretsGrant]) -> None:
            seen[decide(case[1], case[0]).allowed] += 1

        draw()
        total = seen[True] + seen[False]
        assert total >= 200
        assert seen[True] >= total // 5, seen
        assert seen[False] >= total // 5, seen

else:  # pragma: no cover

    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_any_grant_round_trips_through_json() -> None:
        raise AssertionError("skipped")
