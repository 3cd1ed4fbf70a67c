"""The service remembers OAuth argument checks and credential keys per tuple of
exact strings. What it remembers must never let a bad argument through."""

from __future__ import annotations

import pytest

from roomsecrets import MemoryStore, SecretsService
from roomsecrets.core import service as service_module
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
