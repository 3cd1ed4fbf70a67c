"""The ``McpServer`` fixture (``tests/support/mcp_server.py``), proved with plain HTTP
(``urllib``) and the official MCP client, no roomsecrets code: a real MCP server from the
``mcp`` SDK with the SDK's own OAuth routes (RFC 9728, RFC 8414, RFC 7591, PKCE, RFC 8707
``resource``, refresh, RFC 7009 revocation), and a ``whoami`` tool that names the user of
the calling token. Skips when ``mcp`` is not installed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, Optional

import pytest

pytest.importorskip("mcp")
pytest.importorskip("uvicorn")

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.support.mcp_server import McpServer

REDIRECT_URI = "http://127.0.0.1:9/callback"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _http(
    method: str,
    url: str,
    *,
    form: Optional[dict[str, str]] = None,
    body: Any = None,
    headers: Optional[dict[str, str]] = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body or None); no redirect is followed."""
    data = None
    all_headers = dict(headers or {})
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with _opener.open(request, timeout=10) as response:
            status, answer_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, error.headers, error.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, {k.lower(): v for k, v in answer_headers.items()}, parsed


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _register(server: McpServer, **metadata: Any) -> dict[str, Any]:
    status, _, client = _http(
        "POST",
        f"{server.issuer}/register",
        body={"redirect_uris": [REDIRECT_URI], "client_name": "fixture test", **metadata},
    )
    assert status == 201, client
    assert isinstance(client, dict)
    return client


def _authorize(
    server: McpServer,
    client: dict[str, Any],
    challenge: str,
    *,
    resource: Optional[str],
    scope: str = "mcp:tools",
) -> tuple[str, str]:
    """One approval: returns (code, state) from the Location of the 302."""
    state = secrets.token_urlsafe(16)
    query = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
        "scope": scope,
    }
    if resource is not None:
        query["resource"] = resource
    status, headers, _ = _http("GET", f"{server.issuer}/authorize?{urllib.parse.urlencode(query)}")
    assert status == 302
    location = urllib.parse.urlsplit(headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    answer = dict(urllib.parse.parse_qsl(location.query))
    assert answer["state"] == state
    return answer["code"], state


def _token(
    server: McpServer, client: dict[str, Any], form: dict[str, str]
) -> tuple[int, Any]:
    """POST /token authenticating as the client registered."""
    form = {"client_id": client["client_id"], **form}
    headers = {}
    method = client.get("token_endpoint_auth_method")
    if method == "client_secret_post":
        form["client_secret"] = client["client_secret"]
    elif method == "client_secret_basic":
        pair = f"{urllib.parse.quote(client['client_id'])}:{urllib.parse.quote(client['client_secret'])}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    status, _, answer = _http("POST", f"{server.issuer}/token", form=form, headers=headers)
    return status, answer


def _sign_in(server: McpServer, **metadata: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Register, approve and exchange the code, with PKCE and ``resource`` throughout."""
    client = _register(server, **metadata)
    verifier, challenge = _pkce()
    code, _ = _authorize(server, client, challenge, resource=server.url)
    status, tokens = _token(
        server,
        client,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "resource": server.url,
        },
    )
    assert status == 200, tokens
    return client, tokens


async def _whoami(url: str, access_token: str) -> str:
    """Call the ``whoami`` tool with the official MCP client and a bearer token."""
    headers = {"Authorization": f"Bearer {access_token}"}
    async with contextlib.AsyncExitStack() as stack:
        http_client = await stack.enter_async_context(
            httpx2.AsyncClient(headers=headers, timeout=10)
        )
        read, write = await stack.enter_async_context(
            streamable_http_client(url, http_client=http_client)
        )
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        result = await session.call_tool("whoami", {})
    assert not result.is_error, result
    (content,) = result.content
    return content.text  # type: ignore[union-attr]


def _mcp_status(server: McpServer, access_token: Optional[str]) -> tuple[int, dict[str, str]]:
    """The status of a bare ``initialize`` POST to /mcp (the auth check comes first)."""
    headers = {"Accept": "application/json, text/event-stream"}
    if access_token is not None:
        headers["Authorization"] = f"Bearer {access_token}"
    status, answer_headers, _ = _http(
        "POST",
        server.url,
        body={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers=headers,
    )
    return status, answer_headers


@pytest.fixture
def server() -> Iterator[McpServer]:
    with McpServer() as running:
        yield running


def test_discovery_documents(server: McpServer) -> None:
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/mcp")
    assert server.resource_metadata_url == f"{server.issuer}/.well-known/oauth-protected-resource/mcp"

    status, _, resource = _http("GET", server.resource_metadata_url)
    assert status == 200
    assert resource["resource"] == server.url
    assert resource["authorization_servers"] == [server.issuer]
    assert resource["resource_name"] == "Test MCP"
    assert resource["scopes_supported"] == ["mcp:tools"]
    assert resource["bearer_methods_supported"] == ["header"]
    # The SDK serves RFC 9728 only at the path-inserted URL, not at the host root.
    status, _, _ = _http("GET", f"{server.issuer}/.well-known/oauth-protected-resource")
    assert status == 404

    (issuer,) = resource["authorization_servers"]
    status, _, metadata = _http("GET", f"{issuer}/.well-known/oauth-authorization-server")
    assert status == 200
    assert metadata["issuer"] == server.issuer  # no trailing slash
    assert metadata["authorization_endpoint"] == f"{issuer}/authorize"
    assert metadata["token_endpoint"] == f"{issuer}/token"
    assert metadata["registration_endpoint"] == f"{issuer}/register"
    assert metadata["revocation_endpoint"] == f"{issuer}/revoke"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["scopes_supported"] == ["mcp:tools"]
    assert metadata["token_endpoint_auth_methods_supported"] == [
        "client_secret_post",
        "client_secret_basic",
    ]
    assert "authorization_response_iss_parameter_supported" not in metadata
    status, _, _ = _http("GET", f"{issuer}/.well-known/openid-configuration")
    assert status == 404


def test_without_a_token_the_mcp_endpoint_answers_401_naming_the_resource_metadata(
    server: McpServer,
) -> None:
    status, headers = _mcp_status(server, None)
    assert status == 401
    challenge = headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{server.resource_metadata_url}"' in challenge
    status, _ = _mcp_status(server, "not-a-token")
    assert status == 401


def test_the_whole_flow_and_the_recordings(server: McpServer) -> None:
    client = _register(server)  # no token_endpoint_auth_method named
    # mcp 2.3.0's RegistrationHandler: no method named -> client_secret_post, with a secret
    assert client["token_endpoint_auth_method"] == "client_secret_post"
    assert len(client["client_secret"]) == 64
    assert client["client_secret_expires_at"] == 0
    assert client["scope"] == "mcp:tools"  # default_scopes
    (registration,) = server.registrations
    assert registration["params"] == {"redirect_uris": [REDIRECT_URI], "client_name": "fixture test"}
    assert registration["status"] == 201
    assert registration["client_id"] == client["client_id"]
    assert registration["client_secret"] == client["client_secret"]
    assert registration["token_endpoint_auth_method"] == "client_secret_post"

    verifier, challenge = _pkce()
    code, state = _authorize(server, client, challenge, resource=server.url)
    (authorization,) = server.authorizations
    assert authorization["method"] == "GET"
    assert authorization["params"]["resource"] == server.url
    assert authorization["params"]["state"] == state
    assert authorization["params"]["code_challenge"] == challenge
    assert authorization["status"] == 302
    assert f"code={code}" in authorization["location"]

    status, tokens = _token(
        server,
        client,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "resource": server.url,
        },
    )
    assert status == 200, tokens
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "mcp:tools"
    (exchange,) = server.token_requests
    assert exchange["params"]["grant_type"] == "authorization_code"
    assert exchange["params"]["resource"] == server.url
    assert exchange["params"]["client_id"] == client["client_id"]
    assert exchange["client_auth"] == "client_secret_post"
    assert exchange["status"] == 200
    assert server.is_active(tokens["access_token"])
    info = server.token_info(tokens["access_token"])
    assert info is not None
    assert info["user"] == "alice"
    assert info["client_id"] == client["client_id"]
    assert info["resource"] == server.url
    assert [call["call"] for call in server.provider_calls] == [
        "register_client",
        "authorize",
        "exchange_authorization_code",
    ]

    assert asyncio.run(_whoami(server.url, tokens["access_token"])) == "alice"

    # the code is single-use
    status, answer = _token(
        server,
        client,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "resource": server.url,
        },
    )
    assert (status, answer["error"]) == (400, "invalid_grant")


def test_expire_all_then_refresh(server: McpServer) -> None:
    client, tokens = _sign_in(server)
    assert _mcp_status(server, tokens["access_token"])[0] != 401
    server.expire_all()
    assert not server.is_active(tokens["access_token"])
    assert _mcp_status(server, tokens["access_token"])[0] == 401

    status, fresh = _token(
        server,
        client,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "resource": server.url},
    )
    assert status == 200, fresh
    assert fresh["access_token"] != tokens["access_token"]
    assert fresh["refresh_token"] != tokens["refresh_token"]  # rotated
    assert server.token_requests[-1]["params"]["grant_type"] == "refresh_token"
    assert server.token_requests[-1]["params"]["resource"] == server.url
    assert server.is_active(fresh["access_token"])
    assert asyncio.run(_whoami(server.url, fresh["access_token"])) == "alice"

    # the rotated-out refresh token is dead
    status, answer = _token(
        server, client, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert (status, answer["error"]) == (400, "invalid_grant")


def test_revocation(server: McpServer) -> None:
    client, tokens = _sign_in(server, token_endpoint_auth_method="client_secret_basic")
    assert server.token_requests[-1]["client_auth"] == "client_secret_basic"
    assert server.token_requests[-1]["basic_client_id"] == client["client_id"]

    status, _, _ = _http(
        "POST",
        f"{server.issuer}/revoke",
        form={
            "token": tokens["access_token"],
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    # registered for Basic: the secret in the form does not count
    assert status == 401
    assert server.is_active(tokens["access_token"])

    pair = f"{client['client_id']}:{client['client_secret']}"
    basic = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    revoke = {"token": tokens["access_token"], "client_id": client["client_id"]}
    status, _, answer = _http("POST", f"{server.issuer}/revoke", form=revoke, headers=basic)
    # mcp 2.3.0: RevocationRequest.client_secret has no default, so a Basic client's
    # RFC 7009 request without a client_secret field is refused (see lenient_basic_revocation)
    assert (status, answer) == (
        400,
        {"error": "invalid_request", "error_description": "client_secret: Field required"},
    )
    assert server.is_active(tokens["access_token"])
    server.lenient_basic_revocation = True
    status, _, _ = _http("POST", f"{server.issuer}/revoke", form=revoke, headers=basic)
    assert status == 200
    assert "client_secret" not in server.revocations[-1]["params"]
    assert server.revocations[-1]["amended"] == "client_secret="
    assert server.revocations[-1]["params"]["token"] == tokens["access_token"]
    assert server.revocations[-1]["client_auth"] == "client_secret_basic"
    assert not server.is_active(tokens["access_token"])
    assert {tokens["access_token"], tokens["refresh_token"]} <= server.revoked
    assert _mcp_status(server, tokens["access_token"])[0] == 401
    status, answer = _token(
        server, client, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert (status, answer["error"]) == (400, "invalid_grant")


def test_resource_and_pkce_are_checked(server: McpServer) -> None:
    client = _register(server, token_endpoint_auth_method="none")
    assert "client_secret" not in client
    verifier, challenge = _pkce()
    code, _ = _authorize(server, client, challenge, resource=server.url)
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    status, answer = _token(server, client, exchange)  # no resource
    assert (status, answer["error"]) == (400, "invalid_target")
    status, answer = _token(server, client, {**exchange, "resource": "http://127.0.0.1:1/mcp"})
    assert (status, answer["error"]) == (400, "invalid_target")
    status, answer = _token(
        server, client, {**exchange, "resource": server.url, "code_verifier": _pkce()[0]}
    )
    assert (status, answer["error"]) == (400, "invalid_grant")
    assert [request["params"].get("resource") for request in server.token_requests] == [
        None,
        "http://127.0.0.1:1/mcp",
        server.url,
    ]
    assert all(request["client_auth"] == "none" for request in server.token_requests)
    # the failures did not use the code up
    status, tokens = _token(server, client, {**exchange, "resource": server.url})
    assert status == 200, tokens
    assert asyncio.run(_whoami(server.url, tokens["access_token"])) == "alice"

    # an authorization for some other resource is refused at /authorize
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": REDIRECT_URI,
            "code_challenge": challenge,
            "resource": "https://elsewhere.example/mcp",
        }
    )
    status, headers, _ = _http("GET", f"{server.issuer}/authorize?{query}")
    assert status == 302
    assert "error=invalid_target" in headers["location"]


def test_without_registration_or_resource_metadata() -> None:
    with McpServer(registration=False, resource_metadata=False, user="bob") as server:
        assert server.resource_metadata_url is None
        status, _, _ = _http("GET", f"{server.issuer}/.well-known/oauth-protected-resource/mcp")
        assert status == 404
        status, headers = _mcp_status(server, None)
        assert status == 401
        assert "resource_metadata" not in headers["www-authenticate"]
        status, _, metadata = _http("GET", f"{server.issuer}/.well-known/oauth-authorization-server")
        assert status == 200
        assert "registration_endpoint" not in metadata
        status, _, _ = _http("POST", f"{server.issuer}/register", body={"redirect_uris": [REDIRECT_URI]})
        assert status in (404, 405)

        client = server.add_client([REDIRECT_URI])
        verifier, challenge = _pkce()
        code, _ = _authorize(server, client, challenge, resource=None)
        status, tokens = _token(
            server,
            client,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
        )
        assert status == 200, tokens
        assert "resource" not in server.authorizations[-1]["params"]
        assert asyncio.run(_whoami(server.url, tokens["access_token"])) == "bob"


def test_denial_no_rotation_and_required_scopes() -> None:
    with McpServer(scopes=["mcp:tools", "other"], required_scopes=["mcp:tools"]) as server:
        client = _register(server, scope="other")
        server.approve = False
        _, challenge = _pkce()
        query = urllib.parse.urlencode(
            {"response_type": "code", "client_id": client["client_id"], "code_challenge": challenge}
        )
        status, headers, _ = _http("GET", f"{server.issuer}/authorize?{query}")
        assert status == 302
        assert "error=access_denied" in headers["location"]

        server.approve = True
        server.rotate_refresh_tokens = False
        verifier, challenge = _pkce()
        code, _ = _authorize(server, client, challenge, resource=server.url, scope="other")
        status, tokens = _token(
            server,
            client,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                "resource": server.url,
            },
        )
        assert status == 200, tokens
        assert tokens["scope"] == "other"
        status, headers = _mcp_status(server, tokens["access_token"])
        assert status == 403
        assert 'error="insufficient_scope"' in headers["www-authenticate"]

        status, fresh = _token(
            server, client, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        )
        assert status == 200, fresh
        assert "refresh_token" not in fresh  # not rotated: the client keeps its refresh token
        status, again = _token(
            server, client, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        )
        assert status == 200, again
