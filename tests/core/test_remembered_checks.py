"""The service remembers OAuth argument checks and credential keys per tuple of
exact strings. What it remembers must never let a bad argument through."""

from __future__ import annotations

import pytest

from roomsecrets import MemoryStore, SecretsService
from roomsecrets.core import service as service_module
from roomsecrets.core.audit import AuditEvent
from roomsecrets.core.credentials import brokered_credential_id, credential_secret_id
from roomsecrets.core.errors import InvalidInput

GOOD = ("alice", "app", None, "https://as.example/auth", "https://as.example/token")


class Sly(str):
    """A str subclass that claims to equal (and hashes like) a checked value."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash(GOOD[3])


def service(**kw: object) -> SecretsService:
    return SecretsService(store=MemoryStore(), room="r", **kw)  # type: ignore[arg-type]


def test_a_bad_argument_is_refused_after_good_ones_were_remembered() -> None:
    checked = service()
    for _ in range(3):
        checked.check_oauth_arguments(*GOOD)
    for bad in ("http://as.example/auth", "https://as.example/a#f", "", "x" * 5000):
        with pytest.raises(InvalidInput):
            checked.check_oauth_arguments(*GOOD[:3], bad, GOOD[4])


def test_a_str_subclass_that_equals_a_remembered_value_is_still_checked() -> None:
    checked = service()
    checked.check_oauth_arguments(*GOOD)
    with pytest.raises(InvalidInput, match=r"^authorization_endpoint must be"):
        checked.check_oauth_arguments(*GOOD[:3], Sly("javascript:alert(1)"), GOOD[4])


def test_what_passed_with_plain_http_allowed_is_refused_where_it_is_not() -> None:
    plain = ("alice", "app", None, "http://as.example/auth", "http://as.example/token")
    lax = service(allow_insecure_http=True)
    lax.check_oauth_arguments(*plain)
    lax.allow_insecure_http = False  # the setting is part of what is remembered
    with pytest.raises(InvalidInput):
        lax.check_oauth_arguments(*plain)


def test_a_remembered_credential_key_is_the_one_computed_afresh() -> None:
    keys = service()
    first = keys.credential_key(owner="alice", requester="bot", client_id="app",
                                token_endpoint=GOOD[4])
    again = keys.credential_key(owner="alice", requester="bot", client_id="app",
                                token_endpoint=GOOD[4])
    other = keys.credential_key(owner="alice", requester="bot2", client_id="app",
                                token_endpoint=GOOD[4])
    fresh = service().credential_key(owner="alice", requester="bot", client_id="app",
                                     token_endpoint=GOOD[4])
    assert first == again == fresh and again is first
    assert other.delegated_to == "bot2" and other.secret_id == first.secret_id
    with_resource = keys.credential_key(owner="alice", requester="bot", client_id="app",
                                        token_endpoint=GOOD[4], resource="https://r.example")
    assert with_resource.secret_id != first.secret_id


def test_a_remembered_tuple_is_not_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    real = service_module.check_endpoint

    def counting(value: str, **kw: object) -> str:
        checked.append(value)
        return real(value, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module, "check_endpoint", counting)
    remembering = service()
    for _ in range(3):
        remembering.check_oauth_arguments(*GOOD)
    assert checked == [GOOD[3], GOOD[4]]  # the first call only
    remembering.check_oauth_arguments(*GOOD[:4], "https://as.example/other")
    assert checked[2:] == [GOOD[3], "https://as.example/other"]


def test_a_brokered_key_is_found_by_its_resource_alone_and_remembered_apart() -> None:
    keys = service()
    resource = "https://mcp.example/api"
    brokered = keys.credential_key(owner="alice", requester="bot", client_id="app",
                                   token_endpoint=GOOD[4], resource=resource, brokered=True)
    assert brokered.secret_id == brokered_credential_id(resource)
    explicit = keys.credential_key(owner="alice", requester="bot", client_id="app",
                                   token_endpoint=GOOD[4], resource=resource)
    assert explicit.secret_id == credential_secret_id("app", GOOD[4], resource)
    assert explicit.secret_id != brokered.secret_id
    other_client = keys.credential_key(owner="alice", requester="bot", client_id="other",
                                       token_endpoint=GOOD[4], resource=resource, brokered=True)
    assert other_client.secret_id == brokered.secret_id


@pytest.mark.parametrize("count", [1024, 1025, 3000])
def test_the_memories_are_bounded(count: int) -> None:
    many = service()
    for i in range(count):
        many.check_oauth_arguments("alice", f"app-{i}", None, GOOD[3], GOOD[4])
        many.credential_key(owner="alice", requester="bot", client_id=f"app-{i}",
                            token_endpoint=GOOD[4])
    assert len(many._valid_oauth_arguments) <= 1024
    assert len(many._credential_keys) <= 1024


# --- grant decisions (SecretsService.check_oauth) ---------------------------------------

OAUTH = dict(
    target="alice", client_id="app", authorization_endpoint=GOOD[3],
    token_endpoint=GOOD[4], scopes=("mail.read",),
)


def decided(**kw: object) -> tuple[SecretsService, list[object]]:
    from roomsecrets import SecretsGrant

    events: list[object] = []
    deciding = SecretsService(store=MemoryStore(), room="r", audit=events.append)
    deciding.connect("bot", grant=SecretsGrant.allow_all())
    return deciding, events


def test_a_remembered_decision_skips_the_argument_checks_and_is_audited_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[str] = []
    real = service_module.check_url

    def counting(value: str, what: str) -> str:
        checked.append(what)
        return real(value, what)

    monkeypatch.setattr(service_module, "check_url", counting)
    deciding, events = decided()
    for _ in range(3):
        deciding.check_oauth(requester="bot", action="oauth.get_offline_token", **OAUTH)  # type: ignore[arg-type]
    assert checked == ["authorization_endpoint", "token_endpoint"]  # the first call only
    assert len(events) == 3


class SlyScope(str):
    """A str subclass that claims to equal (and hashes like) a remembered scope."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("mail.read")


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("authorization_endpoint", Sly("javascript:alert(1)"), r"^authorization_endpoint must be"),
        ("scopes", (SlyScope("bad scope\x00"),), r"scope"),
    ],
)
def test_a_str_subclass_that_equals_a_remembered_argument_gets_its_own_decision(
    field: str, value: object, error: str
) -> None:
    deciding, _ = decided()
    deciding.check_oauth(requester="bot", action="oauth.get_offline_token", **OAUTH)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=error):
        deciding.check_oauth(  # type: ignore[arg-type]
            requester="bot", action="oauth.get_offline_token", **{**OAUTH, field: value}
        )


# --- the client and endpoints an OAuth call uses (core/client.py) ------------------------


class SlyClient(str):
    """A str subclass that claims to equal (and hashes like) a remembered client id."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("app")


def test_a_public_client_is_built_once_and_a_client_with_a_secret_every_time() -> None:
    from roomsecrets.core.client import SecretsClient, _Provider

    provider = _Provider(authorization_endpoint=GOOD[3], token_endpoint=GOOD[4], issuer=None,
                         metadata=None)
    public = SecretsClient._new_client("app", None, None, provider)
    assert SecretsClient._new_client("app", None, None, provider) is public
    assert public.client_id == "app" and public.client_secret is None
    secret = SecretsClient._new_client("app", "s3cret-value", None, provider)
    again = SecretsClient._new_client("app", "s3cret-value", None, provider)
    assert secret is not again and secret == again and secret.client_secret == "s3cret-value"
    one, two = SlyClient("one"), SlyClient("two")
    assert SecretsClient._new_client(one, None, None, provider).client_id is one
    assert SecretsClient._new_client(two, None, None, provider).client_id is two


def test_explicit_endpoints_are_one_provider_value_per_pair() -> None:
    import asyncio

    from roomsecrets import SecretsGrant

    svc = SecretsService(store=MemoryStore(), room="r")
    bot = svc.connect("bot", grant=SecretsGrant.allow_all())

    def provider(authorization_endpoint: str, token_endpoint: str) -> object:
        return asyncio.run(bot._provider(
            "a", "alice", "app", None, authorization_endpoint, token_endpoint, ()
        ))

    first = provider(GOOD[3], GOOD[4])
    assert provider(GOOD[3], GOOD[4]) is first
    other = provider(GOOD[3], GOOD[4] + "2")
    assert other.token_endpoint == GOOD[4] + "2" and other is not first  # type: ignore[attr-defined]
    sly = provider(Sly(GOOD[3]), GOOD[4])
    assert sly is not first and type(sly.authorization_endpoint) is Sly  # type: ignore[attr-defined]
    assert sly.token_endpoint == GOOD[4]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("target", "", r"^from participant must be"),
        ("target", None, r"^from participant must be"),
        ("client_id", "", r"^client_id must be"),
        ("client_id", "a\x00b", r"^client_id must"),
        ("resource", "", r"^resource must be"),
    ],
)
def test_a_bad_argument_is_refused_by_name_after_a_decision_was_remembered(
    field: str, value: object, error: str
) -> None:
    deciding, events = decided()
    deciding.check_oauth(requester="bot", action="oauth.get_offline_token", **OAUTH)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=error):
        deciding.check_oauth(  # type: ignore[arg-type]
            requester="bot", action="oauth.get_offline_token", **{**OAUTH, field: value}
        )
    assert len(events) == 1  # refused before any decision: nothing audited


@pytest.mark.parametrize(
    "rule, call, allowed",
    [
        ({"issuer": "https://as.example"}, {"issuer": "https://as.example"}, True),
        ({"issuer": "https://as.example"}, {"issuer": "https://other.example"}, False),
        ({"resource": "https://mcp.example/*"},
         {"resource": "https://mcp.example/api", "brokered": True}, True),
        ({"resource": "https://mcp.example/*"},
         {"resource": "https://mcp.example/api", "brokered": False}, False),
        ({"resource": "https://mcp.example/*"}, {"brokered": True}, False),
    ],
)
def test_the_decision_weighs_the_issuer_the_resource_and_the_broker_each_time(
    rule: dict[str, object], call: dict[str, object], allowed: bool
) -> None:
    from roomsecrets import OAuthRule, SecretsGrant
    from roomsecrets.core.errors import GrantDenied

    events: list[AuditEvent] = []
    deciding = SecretsService(store=MemoryStore(), room="r", audit=events.append)
    deciding.connect("bot", grant=SecretsGrant(oauth=[OAuthRule(**rule)]))  # type: ignore[arg-type]
    for _ in range(2):  # decided, then remembered
        if allowed:
            deciding.check_oauth(  # type: ignore[arg-type]
                requester="bot", action="oauth.get_offline_token", **{**OAUTH, **call}
            )
        else:
            with pytest.raises(GrantDenied):
                deciding.check_oauth(  # type: ignore[arg-type]
                    requester="bot", action="oauth.get_offline_token", **{**OAUTH, **call}
                )
    # Every call is audited, with the resource when one was named.
    assert [event.outcome for event in events] == ["allowed" if allowed else "denied"] * 2
    named = [value for event in events for key, value in event.details if key == "resource"]
    assert named == ([call["resource"]] * 2 if "resource" in call else [])
