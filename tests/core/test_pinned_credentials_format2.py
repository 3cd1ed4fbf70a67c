"""Pinned: stored credentials in format version 2 (issuer, revocation endpoint,
client secret, client auth method; issue #12, mutation pass on ``core/credentials.py``).

A record written today must decode next year, and a credential that needs none of
the new fields must still be written in format 1, byte for byte, so older readers
keep working. The record below is a literal, committed once, with made-up values.
"""

from __future__ import annotations

import json

import pytest

from roomsecrets.core.credentials import StoredCredential
from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.oauth.token_request import ClientAuthMethod
from roomsecrets.core.oauth.tokens import TokenSet

#: Written by StoredCredential.to_json in format version 2 (commit this, never regenerate).
RECORD_V2 = (
    b'{"authorization_endpoint":"https://as.example/authorize",'
    b'"client_auth_method":"client_secret_post","client_id":"app-2",'
    b'"client_secret":"example-client-secret","issuer":"https://as.example",'
    b'"revocation_endpoint":"https://as.example/revoke",'
    b'"token_endpoint":"https://as.example/token","tokens":{"access_token":'
    b'"example-access-token","expires_at":4600.0,"extra":{},"id_token":null,'
    b'"issued_at":1000.0,"refresh_token":"example-refresh-token","scopes":["mail.read"],'
    b'"token_type":"Bearer","version":1},"version":2}'
)

TOKENS = TokenSet(
    access_token="example-access-token",
    refresh_token="example-refresh-token",
    issued_at=1000.0,
    expires_at=4600.0,
    scopes=("mail.read",),
)
POST = ClientAuthMethod.CLIENT_SECRET_POST


def credential(**kw: object) -> StoredCredential:
    args: dict[str, object] = dict(
        tokens=TOKENS,
        client_id="app-2",
        authorization_endpoint="https://as.example/authorize",
        token_endpoint="https://as.example/token",
    )
    args.update(kw)
    return StoredCredential(**args)  # type: ignore[arg-type]


def full() -> StoredCredential:
    return credential(
        issuer="https://as.example",
        revocation_endpoint="https://as.example/revoke",
        client_secret="example-client-secret",
        client_auth_method=POST,
    )


def record(**changes: object) -> bytes:
    data = json.loads(RECORD_V2)
    for name, value in changes.items():
        if value is ...:
            del data[name]
        else:
            data[name] = value
    return json.dumps(data).encode()


def refusal(raw: bytes) -> str:
    with pytest.raises(InvalidInput) as info:
        StoredCredential.from_json(raw)
    return str(info.value)


# --- the committed record ----------------------------------------------------------------


def test_a_committed_format_2_record_decodes_to_every_field():
    decoded = StoredCredential.from_json(RECORD_V2)
    assert decoded.issuer == "https://as.example"
    assert decoded.revocation_endpoint == "https://as.example/revoke"
    assert decoded.client_secret == "example-client-secret"
    assert decoded.client_auth_method is POST
    assert decoded.client_id == "app-2"
    assert decoded.authorization_endpoint == "https://as.example/authorize"
    assert decoded.token_endpoint == "https://as.example/token"
    assert decoded.tokens == TOKENS
    assert decoded == full()


def test_the_writer_still_writes_format_2_byte_for_byte():
    assert full().to_json() == RECORD_V2


# --- which format the writer picks -------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"issuer": "https://as.example"},
        {"revocation_endpoint": "https://as.example/revoke"},
        {"revocation_endpoint": "https://as.example/revoke", "client_secret": "s"},
        {"client_auth_method": POST},
    ],
)
def test_any_one_new_field_makes_format_2_with_only_that_field(kw):
    stored = credential(**kw)
    data = json.loads(stored.to_json())
    assert data["version"] == 2
    written = {
        name: data[name]
        for name in ("issuer", "revocation_endpoint", "client_secret", "client_auth_method")
        if name in data
    }
    expected = {name: getattr(value, "value", value) for name, value in kw.items()}
    assert written == expected
    assert StoredCredential.from_json(stored.to_json()) == stored


def test_without_new_fields_the_record_is_format_1_with_none_of_their_names():
    data = json.loads(credential().to_json())
    assert data["version"] == 1
    assert set(data) == {
        "version", "client_id", "authorization_endpoint", "token_endpoint", "tokens"
    }


# --- what the reader accepts -------------------------------------------------------------


@pytest.mark.parametrize(
    "kept",
    ["issuer", "revocation_endpoint", "client_auth_method"],
)
def test_a_format_2_record_with_any_one_new_field_decodes(kept):
    dropped = {
        name: ... for name in ("issuer", "revocation_endpoint", "client_secret",
                               "client_auth_method")
        if name != kept
    }
    decoded = StoredCredential.from_json(record(**dropped))
    assert getattr(decoded, kept) is not None
    for name in dropped:
        assert getattr(decoded, name) is None


def test_a_format_2_record_whose_new_fields_are_all_null_is_refused():
    # The writer never makes one: format 2 is written only with one of them set.
    raw = record(issuer=None, revocation_endpoint=None, client_secret=None,
                 client_auth_method=None)
    assert refusal(raw) == "stored credential has an unknown format"
    assert refusal(record(issuer=..., revocation_endpoint=..., client_secret=...,
                          client_auth_method=...)) == "stored credential has an unknown format"


def test_a_null_method_in_format_2_means_the_default():
    decoded = StoredCredential.from_json(record(client_auth_method=None))
    assert decoded.client_auth_method is None
    assert decoded.client_secret == "example-client-secret"


def test_a_format_1_record_ignores_fields_it_did_not_have():
    raw = record(version=1)
    decoded = StoredCredential.from_json(raw)
    assert (decoded.issuer, decoded.revocation_endpoint, decoded.client_secret,
            decoded.client_auth_method) == (None, None, None, None)
    assert decoded.tokens == TOKENS


@pytest.mark.parametrize("version", [3, 0, "2", 2.0, True, None])
def test_a_record_of_an_unknown_version_is_refused(version):
    assert refusal(record(version=version)) == "stored credential has an unknown format"


@pytest.mark.parametrize("value", ["private_key_jwt", 7, ["client_secret_post"], {}])
def test_an_unknown_method_in_a_record_is_refused_by_name(value):
    assert refusal(record(client_auth_method=value)) == (
        "stored credential has no valid client_auth_method"
    )


def test_a_record_without_tokens_is_refused():
    with pytest.raises(InvalidInput):
        StoredCredential.from_json(record(tokens=...))
    with pytest.raises(InvalidInput):
        StoredCredential.from_json(record(tokens=None))


# --- the credential's own rules ------------------------------------------------------------


@pytest.mark.parametrize("name", ["issuer", "revocation_endpoint", "client_secret"])
@pytest.mark.parametrize("bad", ["", 5, b"x"])
def test_a_new_field_is_none_or_a_non_empty_string(name, bad):
    kw: dict[str, object] = {"revocation_endpoint": "https://as.example/revoke"}
    kw[name] = bad
    with pytest.raises(InvalidInput) as info:
        credential(**kw)
    assert str(info.value) == f"stored credential has no valid {name}"


def test_a_client_secret_without_a_revocation_endpoint_is_refused_and_says_why():
    with pytest.raises(InvalidInput) as info:
        credential(client_secret="example-client-secret")
    assert str(info.value) == "a stored credential keeps a client_secret only for revocation"


def test_a_post_credential_with_a_revocation_endpoint_must_keep_its_secret():
    with pytest.raises(InvalidInput) as info:
        credential(client_auth_method=POST, revocation_endpoint="https://as.example/revoke")
    assert str(info.value) == "a stored credential revoked with a client secret keeps it"
    # Without a revocation endpoint no secret is kept, with or without the method.
    assert credential(client_auth_method=POST).client_secret is None
    # A default-method credential may be revoked as a public client.
    assert credential(revocation_endpoint="https://as.example/revoke").client_secret is None


@pytest.mark.parametrize(
    "method", [ClientAuthMethod.CLIENT_SECRET_BASIC, ClientAuthMethod.NONE, "client_secret_post"]
)
def test_only_post_is_recorded_and_the_error_says_which_field(method):
    with pytest.raises(InvalidInput) as info:
        credential(client_auth_method=method, revocation_endpoint="https://as.example/revoke",
                   client_secret="s")
    assert str(info.value) == "stored credential has no valid client_auth_method"


def test_repr_shows_none_of_the_new_fields():
    shown = repr(full())
    for hidden in ("example-client-secret", "https://as.example/revoke", "issuer",
                   "client_secret_post", "example-refresh-token"):
        assert hidden not in shown
    assert shown.startswith("StoredCredential(client_id='app-2', "
                            "token_endpoint='https://as.example/token', tokens=")


def test_a_refresh_keeps_every_new_field():
    fresh = TokenSet(access_token="at-2", issued_at=2000.0)
    updated = full().with_tokens(fresh)
    assert updated.tokens == fresh
    assert updated == credential(
        tokens=fresh, issuer="https://as.example",
        revocation_endpoint="https://as.example/revoke",
        client_secret="example-client-secret", client_auth_method=POST,
    )
