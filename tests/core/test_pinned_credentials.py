"""Pinned: a stored credential written in format version 1 still decodes.

Credentials live for months in file and AWS stores; a reader that stops
understanding yesterday's bytes logs every person out. The record below is a
literal, committed once, with made-up values (no real secrets).
"""

from __future__ import annotations

import json

import pytest

from roomsecrets.core.credentials import StoredCredential, credential_secret_id
from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.oauth.tokens import TokenSet

#: Written by StoredCredential.to_json in format version 1 (commit this, never regenerate).
RECORD_V1 = (
    b'{"authorization_endpoint":"https://as.example/authorize","client_id":"app-1",'
    b'"token_endpoint":"https://as.example/token","tokens":{"access_token":'
    b'"example-access-token","expires_at":4600.0,"extra":{"tenant":"t1"},'
    b'"id_token":"example-id-token","issued_at":1000.0,"refresh_token":'
    b'"example-refresh-token","scopes":["mail.read","openid"],"token_type":"Bearer",'
    b'"version":1},"version":1}'
)

#: The secret id that record is stored under; a changed derivation orphans stored credentials.
RECORD_V1_SECRET_ID = "oauth-23e03c7a3ef277063a4fb155030ef2f2"


def expected_credential() -> StoredCredential:
    return StoredCredential(
        tokens=TokenSet(
            access_token="example-access-token",
            token_type="Bearer",
            refresh_token="example-refresh-token",
            issued_at=1000.0,
            expires_at=4600.0,
            scopes=("mail.read", "openid"),
            id_token="example-id-token",
            extra={"tenant": "t1"},
        ),
        client_id="app-1",
        authorization_endpoint="https://as.example/authorize",
        token_endpoint="https://as.example/token",
    )


def test_a_committed_format_1_record_decodes_to_its_values():
    credential = StoredCredential.from_json(RECORD_V1)
    assert credential.client_id == "app-1"
    assert credential.authorization_endpoint == "https://as.example/authorize"
    assert credential.token_endpoint == "https://as.example/token"
    tokens = credential.tokens
    assert tokens.access_token == "example-access-token"
    assert tokens.token_type == "Bearer"
    assert tokens.refresh_token == "example-refresh-token"
    assert tokens.issued_at == 1000.0
    assert tokens.expires_at == 4600.0
    assert tokens.scopes == ("mail.read", "openid")
    assert tokens.id_token == "example-id-token"
    assert dict(tokens.extra) == {"tenant": "t1"}
    assert credential == expected_credential()


def test_a_committed_format_1_record_keeps_its_secret_id():
    assert StoredCredential.from_json(RECORD_V1).secret_id == RECORD_V1_SECRET_ID
    assert credential_secret_id("app-1", "https://as.example/token") == RECORD_V1_SECRET_ID


def test_the_writer_still_writes_format_1_byte_for_byte():
    # A change here needs a new format version and a reader for version 1.
    assert expected_credential().to_json() == RECORD_V1


def test_a_format_1_record_with_only_the_required_token_fields_decodes():
    minimal = (
        b'{"authorization_endpoint":"https://as.example/authorize","client_id":"app-1",'
        b'"token_endpoint":"https://as.example/token","tokens":{"access_token":"at",'
        b'"issued_at":5,"token_type":"Bearer","version":1},"version":1}'
    )
    credential = StoredCredential.from_json(minimal)
    assert credential.tokens == TokenSet(access_token="at", issued_at=5)
    assert credential.tokens.refresh_token is None
    assert credential.tokens.expires_at is None
    assert credential.tokens.scopes == ()
    assert dict(credential.tokens.extra) == {}


@pytest.mark.parametrize(
    "record",
    [
        RECORD_V1.replace(b'"version":1}', b'"version":2}'),  # the credential's own version
        RECORD_V1.replace(b'"version":1},', b'"version":2},'),  # the token set's version
        RECORD_V1.replace(b'"version":1}', b'"version":"1"}'),
    ],
)
def test_a_record_of_another_format_version_is_refused(record):
    assert record != RECORD_V1
    with pytest.raises(InvalidInput):
        StoredCredential.from_json(record)


@pytest.mark.parametrize("field", ["client_id", "authorization_endpoint", "token_endpoint"])
def test_a_record_with_an_empty_or_missing_endpoint_or_client_is_refused(field):
    data = json.loads(RECORD_V1)
    data[field] = ""
    with pytest.raises(InvalidInput, match=field):
        StoredCredential.from_json(json.dumps(data).encode())
    del data[field]
    with pytest.raises(InvalidInput, match=field):
        StoredCredential.from_json(json.dumps(data).encode())
    data[field] = 7
    with pytest.raises(InvalidInput, match=field):
        StoredCredential.from_json(json.dumps(data).encode())


def test_a_record_without_tokens_is_refused():
    data = json.loads(RECORD_V1)
    del data["tokens"]
    with pytest.raises(InvalidInput):
        StoredCredential.from_json(json.dumps(data).encode())


def test_bytes_that_are_not_utf8_json_are_refused_without_echoing_them():
    with pytest.raises(InvalidInput) as info:
        StoredCredential.from_json(b"\xff\xfe example-access-token")
    assert "example-access-token" not in str(info.value)


def refusal(raw: bytes) -> str:
    with pytest.raises(InvalidInput) as info:
        StoredCredential.from_json(raw)
    return str(info.value)


def test_stored_credential_errors_say_what_is_wrong_without_values():
    assert refusal(b"{example-access-token") == "stored credential is not valid JSON"
    assert refusal(b'["example-access-token"]') == "stored credential has an unknown format"
    assert refusal(b'{"version":2}') == "stored credential has an unknown format"
    data = json.loads(RECORD_V1)
    data["token_endpoint"] = ""
    assert refusal(json.dumps(data).encode()) == "stored credential has no valid token_endpoint"


def test_a_credential_matches_only_its_own_client_at_its_own_token_endpoint():
    credential = expected_credential()
    assert credential.matches(client_id="app-1", token_endpoint="https://as.example/token")
    assert not credential.matches(client_id="app-2", token_endpoint="https://as.example/token")
    assert not credential.matches(client_id="app-1", token_endpoint="https://other.example/token")
