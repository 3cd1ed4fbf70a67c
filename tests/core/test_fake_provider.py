"""The FakeProvider is strict: it rejects what a careful real provider rejects.

Requests are built by hand with urllib so these tests depend on nothing in
roomsecrets: they prove the test double before other tests lean on it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import pytest

from tests.support.fake_provider import CannedResponse, FakeProvider, TokenQuirk
from tests.support.headless_person import ApprovalError, approve, authorization_redirect

REDIRECT = "http://127.0.0.1:8765/callback?tenant=t1"
PUBLIC = "public-app"
SCOPE = "mail.read files.write"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _opener() -> urllib.request.OpenerDirector:
    # No error processor, no redirects, no proxies: every status comes back as is.
    opener = urllib.request.OpenerDirector()
    opener.add_handler(urllib.request.ProxyHandler({}))
    opener.add_handler(urllib.request.HTTPHandler())
    return opener


def http(
    method: str,
    url: str,
    *,
    form: Optional[Mapping[str, str]] = None,
    headers: Optional[Mapping[str, str]] = None,
    body: Optional[bytes] = None,
) -> Response:
    all_headers = dict(headers or {})
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
    with _opener().open(request, timeout=10) as response:
        return Response(
            response.status,
            {name.lower(): value for name, value in response.headers.items()},
            response.read(),
        )


def make_pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)  # 64 unreserved characters
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(provider: FakeProvider, **params: Optional[str]) -> str:
    query = {
        "response_type": "code",
        "client_id": PUBLIC,
        "redirect_uri": REDIRECT,
        "scope": SCOPE,
        "state": "st-" + secrets.token_urlsafe(16),
        **params,
    }
    sent = {name: value for name, value in query.items() if value is not None}
    return provider.authorization_endpoint + "?" + urllib.parse.urlencode(sent)


def redirect_params(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def get_code(provider: FakeProvider, **params: Optional[str]) -> tuple[str, str]:
    """Authorize with a fresh S256 challenge; return (code, verifier)."""
    verifier, challenge = make_pkce()
    all_params: dict[str, Optional[str]] = {
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    all_params.update(params)
    code, _state = approve(authorize_url(provider, **all_params))
    return code, verifier


def exchange(
    provider: FakeProvider,
    code: str,
    verifier: Optional[str],
    *,
    client_id: str = PUBLIC,
    redirect_uri: Optional[str] = REDIRECT,
) -> Response:
    form = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
    if redirect_uri is not None:
        form["redirect_uri"] = redirect_uri
    if verifier is not None:
        form["code_verifier"] = verifier
    return http("POST", provider.token_endpoint, form=form)


def refresh(provider: FakeProvider, refresh_token: str, **extra: str) -> Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": PUBLIC}
    form.update(extra)
    return http("POST", provider.token_endpoint, form=form)


def check(provider: FakeProvider, access_token: str) -> int:
    return http(
        "GET", provider.check_endpoint, headers={"Authorization": f"Bearer {access_token}"}
    ).status


def tokens(provider: FakeProvider) -> dict[str, Any]:
    """Run the whole code flow for the public client; return the token response."""
    code, verifier = get_code(provider)
    response = exchange(provider, code, verifier)
    assert response.status == 200, response.body
    result: dict[str, Any] = response.json()
    return result


def assert_oauth_error(response: Response, error: str, status: int = 400) -> None:
    assert response.status == status, response.body
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        fake.register_client(PUBLIC, redirect_uris=[REDIRECT])
        yield fake


# --- the code flow ------------------------------------------------------------------


def test_full_code_flow_with_pkce_issues_a_working_token(provider: FakeProvider) -> None:
    verifier, challenge = make_pkce()
    url = authorize_url(
        provider, state="my-state", code_challenge=challenge, code_challenge_method="S256"
    )
    location = authorization_redirect(url)
    assert location.startswith("http://127.0.0.1:8765/callback?tenant=t1&")
    params = redirect_params(location)
    assert params["state"] == "my-state"
    assert params["tenant"] == "t1"

    response = exchange(provider, params["code"], verifier)
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == SCOPE
    assert body["refresh_token"] != body["access_token"]

    info = http(
        "GET",
        provider.userinfo_endpoint,
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert info.status == 200
    assert info.json() == {"sub": provider.user, "client_id": PUBLIC, "scope": SCOPE}
    assert provider.is_active(body["access_token"])


def test_approve_returns_code_and_state(provider: FakeProvider) -> None:
    _, challenge = make_pkce()
    code, state = approve(
        authorize_url(provider, state="xyz", code_challenge=challenge, code_challenge_method="S256")
    )
    assert code.startswith("ac_")
    assert state == "xyz"


def test_a_wrong_verifier_is_invalid_grant(provider: FakeProvider) -> None:
    code, _ = get_code(provider)
    other_verifier, _ = make_pkce()
    assert_oauth_error(exchange(provider, code, other_verifier), "invalid_grant")


def test_a_missing_verifier_is_invalid_grant(provider: FakeProvider) -> None:
    code, _ = get_code(provider)
    assert_oauth_error(exchange(provider, code, None), "invalid_grant")


def test_a_malformed_verifier_is_invalid_grant(provider: FakeProvider) -> None:
    code, _ = get_code(provider)
    assert_oauth_error(exchange(provider, code, "short"), "invalid_grant")


def test_a_failed_pkce_check_spends_the_code(provider: FakeProvider) -> None:
    code, verifier = get_code(provider)
    other_verifier, _ = make_pkce()
    assert_oauth_error(exchange(provider, code, other_verifier), "invalid_grant")
    assert_oauth_error(exchange(provider, code, verifier), "invalid_grant")


def test_missing_pkce_is_refused_at_authorization(provider: FakeProvider) -> None:
    location = authorization_redirect(authorize_url(provider, state="s1"))
    params = redirect_params(location)
    assert params["error"] == "invalid_request"
    assert params["error_description"] == "code challenge required"  # RFC 7636 §4.4.1
    assert params["state"] == "s1"
    assert "code" not in params


@pytest.mark.parametrize("method", ["plain", None])
def test_only_s256_is_accepted(provider: FakeProvider, method: Optional[str]) -> None:
    _, challenge = make_pkce()
    url = authorize_url(provider, code_challenge=challenge, code_challenge_method=method)
    with pytest.raises(ApprovalError) as caught:
        approve(url)
    assert caught.value.error == "invalid_request"
    assert caught.value.description == "transform algorithm not supported"


def test_a_malformed_challenge_is_refused(provider: FakeProvider) -> None:
    url = authorize_url(provider, code_challenge="not-a-hash", code_challenge_method="S256")
    with pytest.raises(ApprovalError) as caught:
        approve(url)
    assert caught.value.error == "invalid_request"


def test_a_client_without_required_pkce_may_skip_it(provider: FakeProvider) -> None:
    provider.register_client("legacy", redirect_uris=[REDIRECT], require_pkce=False)
    code, _ = approve(authorize_url(provider, client_id="legacy"))
    response = exchange(provider, code, None, client_id="legacy")
    assert response.status == 200


def test_a_verifier_without_a_challenge_is_refused(provider: FakeProvider) -> None:
    # RFC 9700 §2.1.1: a PKCE downgrade.
    provider.register_client("legacy", redirect_uris=[REDIRECT], require_pkce=False)
    code, _ = approve(authorize_url(provider, client_id="legacy"))
    verifier, _ = make_pkce()
    assert_oauth_error(exchange(provider, code, verifier, client_id="legacy"), "invalid_grant")


def test_an_unregistered_redirect_uri_is_never_redirected_to(provider: FakeProvider) -> None:
    _, challenge = make_pkce()
    for wrong in (
        "http://127.0.0.1:8765/callback",  # the query is part of the exact match
        "http://127.0.0.1:8765/callback?tenant=t1&x=1",
        "https://evil.example/callback?tenant=t1",
    ):
        url = authorize_url(
            provider, redirect_uri=wrong, code_challenge=challenge, code_challenge_method="S256"
        )
        response = http("GET", url)
        assert response.status == 400
        assert "location" not in response.headers
        with pytest.raises(ApprovalError) as caught:
            approve(url)
        assert caught.value.status == 400


def test_an_unknown_client_gets_a_page_not_a_redirect(provider: FakeProvider) -> None:
    response = http("GET", authorize_url(provider, client_id="nobody"))
    assert response.status == 400
    assert "location" not in response.headers


def test_the_only_registered_redirect_uri_is_the_default(provider: FakeProvider) -> None:
    code, verifier = get_code(provider, redirect_uri=None)
    # RFC 6749 §4.1.3: redirect_uri is required at the token endpoint only if it was sent.
    assert exchange(provider, code, verifier, redirect_uri=None).status == 200


def test_a_wrong_redirect_uri_at_the_token_endpoint_is_invalid_grant(
    provider: FakeProvider,
) -> None:
    code, verifier = get_code(provider)
    response = exchange(provider, code, verifier, redirect_uri="http://127.0.0.1:8765/other")
    assert_oauth_error(response, "invalid_grant")


def test_a_missing_redirect_uri_at_the_token_endpoint_is_invalid_grant(
    provider: FakeProvider,
) -> None:
    code, verifier = get_code(provider)
    assert_oauth_error(exchange(provider, code, verifier, redirect_uri=None), "invalid_grant")


def test_response_type_must_be_code(provider: FakeProvider) -> None:
    with pytest.raises(ApprovalError) as caught:
        approve(authorize_url(provider, response_type="token"))
    assert caught.value.error == "unsupported_response_type"


def test_repeated_parameters_are_refused(provider: FakeProvider) -> None:
    _, challenge = make_pkce()
    url = authorize_url(provider, code_challenge=challenge, code_challenge_method="S256")
    with pytest.raises(ApprovalError) as caught:
        approve(url + "&scope=admin")
    assert caught.value.error == "invalid_request"


def test_scopes_outside_the_clients_list_are_invalid_scope(provider: FakeProvider) -> None:
    provider.register_client("narrow", redirect_uris=[REDIRECT], scopes=["mail.read"])
    _, challenge = make_pkce()
    url = authorize_url(
        provider, client_id="narrow", code_challenge=challenge, code_challenge_method="S256"
    )
    with pytest.raises(ApprovalError) as caught:
        approve(url)
    assert caught.value.error == "invalid_scope"


def test_a_denied_authorization_redirects_with_access_denied_once(
    provider: FakeProvider,
) -> None:
    provider.deny_next_authorization = True
    with pytest.raises(ApprovalError) as caught:
        get_code(provider)
    assert caught.value.error == "access_denied"
    assert "access_denied" in str(caught.value)
    assert provider.deny_next_authorization is False
    get_code(provider)  # the next person approves


def test_an_expired_code_is_invalid_grant(provider: FakeProvider) -> None:
    provider.code_lifetime = 0
    code, verifier = get_code(provider)
    assert_oauth_error(exchange(provider, code, verifier), "invalid_grant")


# --- code reuse and refresh rotation ---------------------------------------------


def test_a_reused_code_is_refused_and_revokes_its_tokens(provider: FakeProvider) -> None:
    code, verifier = get_code(provider)
    first = exchange(provider, code, verifier).json()
    assert check(provider, first["access_token"]) == 200

    assert_oauth_error(exchange(provider, code, verifier), "invalid_grant")
    # RFC 6749 §4.1.2: what the code bought is gone too.
    assert check(provider, first["access_token"]) == 401
    assert_oauth_error(refresh(provider, first["refresh_token"]), "invalid_grant")
    assert provider.revoked_grants == 1


def test_refresh_rotates_the_refresh_token(provider: FakeProvider) -> None:
    first = tokens(provider)
    response = refresh(provider, first["refresh_token"])
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert check(provider, second["access_token"]) == 200
    third = refresh(provider, second["refresh_token"]).json()
    assert check(provider, third["access_token"]) == 200
    assert provider.refresh_posts == 2
    assert provider.revoked_grants == 0


def test_replaying_an_old_refresh_token_revokes_the_whole_grant(provider: FakeProvider) -> None:
    first = tokens(provider)
    second = refresh(provider, first["refresh_token"]).json()

    assert_oauth_error(refresh(provider, first["refresh_token"]), "invalid_grant")
    assert provider.revoked_grants == 1
    # Everything issued from this approval is dead now, the newest tokens too.
    assert_oauth_error(refresh(provider, second["refresh_token"]), "invalid_grant")
    assert check(provider, second["access_token"]) == 401
    assert check(provider, first["access_token"]) == 401
    assert not provider.is_active(second["access_token"])
    assert provider.revoked_grants == 1


def test_a_replay_leaves_other_grants_alone(provider: FakeProvider) -> None:
    victim = tokens(provider)
    bystander = tokens(provider)
    refresh(provider, victim["refresh_token"])
    refresh(provider, victim["refresh_token"])
    assert check(provider, bystander["access_token"]) == 200
    assert refresh(provider, bystander["refresh_token"]).status == 200


def test_concurrent_refreshes_with_one_token_revoke_the_grant(provider: FakeProvider) -> None:
    # What a client without single-flight refresh does to itself.
    first = tokens(provider)
    statuses: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        status = refresh(provider, first["refresh_token"]).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 400, 400, 400, 400, 400]
    assert provider.revoked_grants == 1
    assert provider.refresh_posts == 6


def test_refresh_may_narrow_the_scope_but_not_widen_it(provider: FakeProvider) -> None:
    first = tokens(provider)
    narrowed = refresh(provider, first["refresh_token"], scope="mail.read").json()
    assert narrowed["scope"] == "mail.read"
    info = http(
        "GET",
        provider.check_endpoint,
        headers={"Authorization": f"Bearer {narrowed['access_token']}"},
    ).json()
    assert info["scope"] == "mail.read"
    # The new refresh token still carries the original grant (RFC 6749 §6).
    full = refresh(provider, narrowed["refresh_token"]).json()
    assert full["scope"] == SCOPE
    wider = refresh(provider, full["refresh_token"], scope="mail.read admin")
    assert_oauth_error(wider, "invalid_scope")


def test_without_rotation_the_refresh_token_is_kept(provider: FakeProvider) -> None:
    provider.rotate_refresh_tokens = False
    first = tokens(provider)
    for _ in range(2):
        again = refresh(provider, first["refresh_token"]).json()
        assert "refresh_token" not in again
        assert check(provider, again["access_token"]) == 200
    assert provider.revoked_grants == 0


def test_access_tokens_expire_after_their_lifetime(provider: FakeProvider) -> None:
    # The provider's clock, moved by hand: a wall-clock second ran out under a
    # loaded CI before the first check could be made.
    now = [1_000_000.0]
    provider.clock = lambda: now[0]
    provider.access_token_lifetime = 1
    body = tokens(provider)
    assert body["expires_in"] == 1
    now[0] += 0.9
    assert check(provider, body["access_token"]) == 200
    now[0] += 0.2
    assert check(provider, body["access_token"]) == 401
    assert not provider.is_active(body["access_token"])
    renewed = refresh(provider, body["refresh_token"]).json()
    assert check(provider, renewed["access_token"]) == 200


def test_check_demands_a_bearer_token(provider: FakeProvider) -> None:
    response = http("GET", provider.check_endpoint)
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    bad = http("GET", provider.check_endpoint, headers={"Authorization": "Bearer at_nope"})
    assert bad.status == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]


# --- client authentication (RFC 6749 §2.3) --------------------------------------------

ODD_ID = "a b:c"
ODD_SECRET = "p@ss:w rd+/=&%"


def _basic(client_id: str, secret: str, *, encode: bool = True) -> str:
    if encode:  # RFC 6749 §2.3.1: form-urlencode each part before base64
        client_id, secret = urllib.parse.quote_plus(client_id), urllib.parse.quote_plus(secret)
    raw = f"{client_id}:{secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _confidential_code(provider: FakeProvider, client_id: str) -> tuple[str, str]:
    verifier, challenge = make_pkce()
    url = authorize_url(
        provider, client_id=client_id, code_challenge=challenge, code_challenge_method="S256"
    )
    code, _ = approve(url)
    return code, verifier


def _code_form(code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }


def test_client_secret_basic_decodes_form_encoded_credentials(provider: FakeProvider) -> None:
    provider.register_client(
        ODD_ID,
        client_secret=ODD_SECRET,
        auth_method="client_secret_basic",
        redirect_uris=[REDIRECT],
    )
    code, verifier = _confidential_code(provider, ODD_ID)
    response = http(
        "POST",
        provider.token_endpoint,
        form=_code_form(code, verifier),
        headers={"Authorization": _basic(ODD_ID, ODD_SECRET)},
    )
    assert response.status == 200, response.body
    assert check(provider, response.json()["access_token"]) == 200


def test_client_secret_basic_without_form_encoding_is_refused(provider: FakeProvider) -> None:
    provider.register_client(
        ODD_ID,
        client_secret=ODD_SECRET,
        auth_method="client_secret_basic",
        redirect_uris=[REDIRECT],
    )
    code, verifier = _confidential_code(provider, ODD_ID)
    response = http(
        "POST",
        provider.token_endpoint,
        form=_code_form(code, verifier),
        headers={"Authorization": _basic(ODD_ID, ODD_SECRET, encode=False)},
    )
    assert_oauth_error(response, "invalid_client", 401)
    assert response.headers["www-authenticate"].startswith("Basic")


def test_a_basic_client_may_not_post_its_secret(provider: FakeProvider) -> None:
    provider.register_client(
        "conf", client_secret="s", auth_method="client_secret_basic", redirect_uris=[REDIRECT]
    )
    code, verifier = _confidential_code(provider, "conf")
    form = {**_code_form(code, verifier), "client_id": "conf", "client_secret": "s"}
    assert_oauth_error(http("POST", provider.token_endpoint, form=form), "invalid_client", 401)


def test_client_secret_post(provider: FakeProvider) -> None:
    provider.register_client(
        "poster",
        client_secret=ODD_SECRET,
        auth_method="client_secret_post",
        redirect_uris=[REDIRECT],
    )
    code, verifier = _confidential_code(provider, "poster")
    form = {**_code_form(code, verifier), "client_id": "poster", "client_secret": ODD_SECRET}
    response = http("POST", provider.token_endpoint, form=form)
    assert response.status == 200, response.body
    body = response.json()
    again = http(
        "POST",
        provider.token_endpoint,
        form={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": "poster",
            "client_secret": ODD_SECRET,
        },
    )
    assert again.status == 200


def test_a_wrong_secret_is_invalid_client(provider: FakeProvider) -> None:
    provider.register_client(
        "poster", client_secret="right", auth_method="client_secret_post", redirect_uris=[REDIRECT]
    )
    code, verifier = _confidential_code(provider, "poster")
    form = {**_code_form(code, verifier), "client_id": "poster", "client_secret": "wrong"}
    assert_oauth_error(http("POST", provider.token_endpoint, form=form), "invalid_client", 401)


def test_two_authentication_methods_at_once_are_refused(provider: FakeProvider) -> None:
    provider.register_client(
        "conf", client_secret="s", auth_method="client_secret_basic", redirect_uris=[REDIRECT]
    )
    code, verifier = _confidential_code(provider, "conf")
    response = http(
        "POST",
        provider.token_endpoint,
        form={**_code_form(code, verifier), "client_secret": "s"},
        headers={"Authorization": _basic("conf", "s")},
    )
    assert_oauth_error(response, "invalid_request")


def test_a_public_client_must_name_itself(provider: FakeProvider) -> None:
    code, verifier = get_code(provider)
    assert_oauth_error(
        http("POST", provider.token_endpoint, form=_code_form(code, verifier)),
        "invalid_client",
        401,
    )


def test_a_code_is_bound_to_its_client(provider: FakeProvider) -> None:
    provider.register_client("other", redirect_uris=[REDIRECT])
    code, verifier = get_code(provider)
    assert_oauth_error(exchange(provider, code, verifier, client_id="other"), "invalid_grant")


def test_a_public_client_may_not_send_a_secret(provider: FakeProvider) -> None:
    code, verifier = get_code(provider)
    form = {**_code_form(code, verifier), "client_id": PUBLIC, "client_secret": "x"}
    assert_oauth_error(http("POST", provider.token_endpoint, form=form), "invalid_client", 401)


# --- malformed token requests ----------------------------------------------------------


def test_token_parameters_in_the_url_are_refused(provider: FakeProvider) -> None:
    code, verifier = get_code(provider)
    query = urllib.parse.urlencode({"code_verifier": verifier})
    response = http(
        "POST",
        provider.token_endpoint + "?" + query,
        form={"grant_type": "authorization_code", "code": code, "client_id": PUBLIC},
    )
    assert_oauth_error(response, "invalid_request")


def test_a_json_body_is_refused(provider: FakeProvider) -> None:
    response = http(
        "POST",
        provider.token_endpoint,
        body=b'{"grant_type": "refresh_token"}',
        headers={"Content-Type": "application/json"},
    )
    assert_oauth_error(response, "invalid_request")


def test_an_unknown_grant_type_is_unsupported(provider: FakeProvider) -> None:
    response = http(
        "POST", provider.token_endpoint, form={"grant_type": "password", "client_id": PUBLIC}
    )
    assert_oauth_error(response, "unsupported_grant_type")


def test_the_token_endpoint_only_takes_post(provider: FakeProvider) -> None:
    assert http("GET", provider.token_endpoint).status == 405


# --- revocation (RFC 7009) ------------------------------------------------------------


def test_revoking_a_refresh_token_ends_the_grant(provider: FakeProvider) -> None:
    body = tokens(provider)
    response = http(
        "POST",
        provider.revocation_endpoint,
        form={
            "token": body["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": PUBLIC,
        },
    )
    assert response.status == 200
    assert check(provider, body["access_token"]) == 401
    assert_oauth_error(refresh(provider, body["refresh_token"]), "invalid_grant")
    assert provider.revoked_grants == 1
    assert provider.revocation_requests == 1


def test_revoking_an_access_token_keeps_the_refresh_token(provider: FakeProvider) -> None:
    body = tokens(provider)
    response = http(
        "POST",
        provider.revocation_endpoint,
        form={
            "token": body["access_token"],
            "token_type_hint": "refresh_token",
            "client_id": PUBLIC,
        },
    )
    assert response.status == 200
    assert check(provider, body["access_token"]) == 401
    assert refresh(provider, body["refresh_token"]).status == 200
    assert provider.revoked_grants == 0


def test_revoking_an_unknown_token_is_still_200(provider: FakeProvider) -> None:
    response = http(
        "POST", provider.revocation_endpoint, form={"token": "whatever", "client_id": PUBLIC}
    )
    assert response.status == 200


def test_another_clients_token_cannot_be_revoked(provider: FakeProvider) -> None:
    provider.register_client("other", redirect_uris=[REDIRECT])
    body = tokens(provider)
    response = http(
        "POST",
        provider.revocation_endpoint,
        form={"token": body["refresh_token"], "client_id": "other"},
    )
    assert response.status == 400
    assert check(provider, body["access_token"]) == 200


# --- quirks -----------------------------------------------------------------------------


def test_queued_raw_responses_are_served_then_normal_behaviour_resumes(
    provider: FakeProvider,
) -> None:
    first = tokens(provider)
    provider.queue_token_responses(
        CannedResponse.text("<html><h1>502 Bad Gateway</h1></html>", status=502),
        CannedResponse.json(
            {"error": "temporarily_unavailable"}, status=503, headers=(("Retry-After", "7"),)
        ),
        CannedResponse.json({"error": "invalid_grant"}, status=200),
    )
    assert provider.pending_quirks == 3

    html = refresh(provider, first["refresh_token"])
    assert html.status == 502
    assert html.headers["content-type"].startswith("text/html")
    assert b"Bad Gateway" in html.body
    busy = refresh(provider, first["refresh_token"])
    assert busy.status == 503
    assert busy.headers["retry-after"] == "7"
    error_in_200 = refresh(provider, first["refresh_token"])
    assert error_in_200.status == 200
    assert error_in_200.json() == {"error": "invalid_grant"}

    # None of those reached the provider: the refresh token is still unused.
    normal = refresh(provider, first["refresh_token"])
    assert normal.status == 200
    assert check(provider, normal.json()["access_token"]) == 200
    assert provider.pending_quirks == 0
    assert provider.revoked_grants == 0
    assert provider.token_requests[-4:] == [
        ("refresh_token", "canned"),
        ("refresh_token", "canned"),
        ("refresh_token", "canned"),
        ("refresh_token", "ok"),
    ]


def test_a_form_encoded_token_response_like_github(provider: FakeProvider) -> None:
    provider.queue_token_responses(TokenQuirk(form_encoded=True))
    code, verifier = get_code(provider)
    response = exchange(provider, code, verifier)
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/x-www-form-urlencoded")
    fields = dict(urllib.parse.parse_qsl(response.body.decode()))
    assert fields["token_type"] == "Bearer"
    assert fields["expires_in"] == "3600"
    assert check(provider, fields["access_token"]) == 200


def test_errors_inside_a_200_form_body_like_github(provider: FakeProvider) -> None:
    provider.queue_token_responses(TokenQuirk(form_encoded=True, status=200))
    code, _ = get_code(provider)
    other_verifier, _ = make_pkce()
    response = exchange(provider, code, other_verifier)
    assert response.status == 200
    assert dict(urllib.parse.parse_qsl(response.body.decode()))["error"] == "invalid_grant"


def test_a_token_response_without_expires_in_like_salesforce(provider: FakeProvider) -> None:
    provider.queue_token_responses(TokenQuirk(drop=("expires_in",)))
    body = tokens(provider)
    assert "expires_in" not in body
    assert check(provider, body["access_token"]) == 200


def test_expires_in_as_a_string(provider: FakeProvider) -> None:
    provider.queue_token_responses(TokenQuirk(extra={"expires_in": "3600"}))
    assert tokens(provider)["expires_in"] == "3600"


def test_a_lost_response_after_the_provider_acted(provider: FakeProvider) -> None:
    first = tokens(provider)
    provider.queue_token_responses(CannedResponse.text("gateway timeout", status=504, process=True))
    assert refresh(provider, first["refresh_token"]).status == 504
    # The provider rotated the token before the answer was lost: retrying replays it.
    assert_oauth_error(refresh(provider, first["refresh_token"]), "invalid_grant")
    assert provider.revoked_grants == 1


def test_a_slow_token_response(provider: FakeProvider) -> None:
    provider.queue_token_responses(CannedResponse.json({"error": "slow"}, status=500, delay=0.5))
    started = time.monotonic()
    response = refresh(provider, "rt_whatever")
    assert response.status == 500
    assert time.monotonic() - started >= 0.45


def test_closing_cuts_a_delayed_response_short() -> None:
    with FakeProvider() as fake:
        fake.queue_token_responses(CannedResponse(status=200, delay=30))
        url = fake.token_endpoint
        errors: list[BaseException] = []

        def call() -> None:
            try:
                http("POST", url, form={"grant_type": "refresh_token"})
            except Exception as exc:
                errors.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.2)
    started = time.monotonic()
    caller.join(5)
    assert not caller.is_alive()
    assert time.monotonic() - started < 2
    assert errors  # the connection closed without an answer


def test_only_quirk_values_can_be_queued(provider: FakeProvider) -> None:
    with pytest.raises(TypeError):
        provider.queue_token_responses((502, (), b""))  # type: ignore[arg-type]


# --- counters and records --------------------------------------------------------------


def test_the_counters_count(provider: FakeProvider) -> None:
    first = tokens(provider)
    second = refresh(provider, first["refresh_token"]).json()
    refresh(provider, first["refresh_token"])  # replay
    http("POST", provider.token_endpoint, form={"grant_type": "password", "client_id": PUBLIC})
    check(provider, second["access_token"])

    assert provider.token_requests == [
        ("authorization_code", "ok"),
        ("refresh_token", "ok"),
        ("refresh_token", "invalid_grant"),
        ("password", "unsupported_grant_type"),
    ]
    assert provider.refresh_posts == 2
    assert provider.revoked_grants == 1
    assert provider.check_requests == 1
    [authorization] = provider.authorization_requests
    assert authorization["code_challenge_method"] == "S256"
    assert authorization["client_id"] == PUBLIC


def test_records_are_copies(provider: FakeProvider) -> None:
    tokens(provider)
    provider.token_requests.clear()
    provider.authorization_requests.clear()
    assert len(provider.token_requests) == 1
    assert len(provider.authorization_requests) == 1


# --- lifecycle and registration -----------------------------------------------------------


def test_it_listens_on_loopback_only() -> None:
    with FakeProvider() as fake:
        assert fake.base_url.startswith("http://127.0.0.1:")
        assert fake.authorization_endpoint == fake.base_url + "/authorize"
        assert fake.token_endpoint == fake.base_url + "/token"
        assert fake.revocation_endpoint == fake.base_url + "/revoke"
        metadata = http("GET", fake.base_url + "/.well-known/oauth-authorization-server").json()
        assert metadata["token_endpoint"] == fake.token_endpoint
        assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "stopped" in repr(fake)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"auth_method": "private_key_jwt", "redirect_uris": [REDIRECT]},
        {"auth_method": "client_secret_basic", "redirect_uris": [REDIRECT]},
        {"client_secret": "s", "redirect_uris": [REDIRECT]},
        {"redirect_uris": []},
        {"redirect_uris": ["/relative"]},
        {"redirect_uris": ["http://127.0.0.1/cb#fragment"]},
    ],
)
def test_bad_registrations_are_refused(provider: FakeProvider, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        provider.register_client("bad", **kwargs)
