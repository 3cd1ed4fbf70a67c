import pytest

from roomsecrets.core.credentials import StoredCredential, credential_secret_id
from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.oauth.tokens import TokenSet


def credential(**kw):
    args = dict(
        tokens=TokenSet(access_token="AT-secret", refresh_token="RT-secret", issued_at=1.0,
                        expires_at=61.0, scopes=("a",)),
        client_id="client/with strange:chars",
        authorization_endpoint="https://as.example/auth",
        token_endpoint="https://as.example/token",
    )
    args.update(kw)
    return StoredCredential(**args)


def test_json_round_trip():
    cred = credential()
    assert StoredCredential.from_json(cred.to_json()) == cred


def test_secret_id_is_fixed_length_safe_and_depends_on_client_and_endpoint():
    a = credential_secret_id("c", "https://as.example/token")
    assert a == credential().__class__(
        tokens=credential().tokens, client_id="c", authorization_endpoint="x",
        token_endpoint="https://as.example/token").secret_id
    assert a != credential_secret_id("c2", "https://as.example/token")
    assert a != credential_secret_id("c", "https://other.example/token")
    assert len(credential().secret_id) == len(a) == 38
    assert credential().secret_id.replace("-", "").isalnum()


def test_repr_shows_no_token():
    text = repr(credential())
    assert "secret" not in text.replace("client/with", "")


def test_display_name_names_client_and_host():
    assert credential().display_name == "client/with strange:chars @ as.example"


@pytest.mark.parametrize(
    "raw",
    [b"nope", b"[]", b'{"version": 2}', b'{"version": 1, "client_id": "c"}',
     b'{"version": 1, "client_id": "c", "authorization_endpoint": "a", "token_endpoint": "t", "tokens": {}}'],
)
def test_malformed_bytes_are_refused(raw):
    with pytest.raises(InvalidInput):
        StoredCredential.from_json(raw)


def test_with_tokens_replaces_only_tokens():
    cred = credential()
    new = TokenSet(access_token="AT2", issued_at=5.0)
    updated = cred.with_tokens(new)
    assert updated.tokens == new
    assert updated.client_id == cred.client_id
    assert updated.matches(client_id=cred.client_id, token_endpoint=cred.token_endpoint)
