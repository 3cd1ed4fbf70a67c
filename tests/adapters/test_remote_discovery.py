"""Discovery, revocation on delete and the RFC 9207 check over HTTP: the server takes
``issuer`` and ``iss``, answers their errors with the right status, and the remote
client rebuilds them."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from tests.adapters.server_kit import CLIENT_ID, running_provider, serving
from tests.support.headless_person import authorization_redirect
from tests.support.metadata_server import MetadataServer


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def first_prompt(person):
    prompts = person.oauth_prompts()
    try:
        return await asyncio.wait_for(prompts.__anext__(), 10)
    finally:
        await prompts.aclose()


async def redirect_params(prompt) -> dict[str, str]:
    location = await asyncio.to_thread(authorization_redirect, prompt.authorization_url)
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def test_an_agent_names_only_the_issuer_and_the_person_answers_with_iss() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                agent = served.remote("agent-1", grant=SecretsGrant.allow_all())
                alice = served.remote("alice")
                await alice.connect()
                request = asyncio.ensure_future(agent.request_oauth_token(
                    client_id=CLIENT_ID, issuer=provider.issuer, scopes=["mail.read"],
                    from_participant_id="alice",
                ))
                prompt = await first_prompt(alice)
                assert prompt.authorization_url.startswith(provider.authorization_endpoint)
                params = await redirect_params(prompt)
                for wrong in ({}, {"iss": "https://attacker.example"}):
                    with pytest.raises(errors.IssuerMismatch) as info:
                        await alice.provide_oauth_authorization(
                            request_id=prompt.request_id, code=params["code"],
                            state=params["state"], **wrong,
                        )
                    assert info.value.code == "issuer_mismatch"
                await alice.provide_oauth_authorization(
                    request_id=prompt.request_id, code=params["code"], state=params["state"],
                    iss=params["iss"],
                )
                token = await request
                assert provider.is_active(token)
                assert await agent.get_offline_oauth_token(
                    client_id=CLIENT_ID, issuer=provider.issuer, scopes=["mail.read"],
                    delegated_by="alice",
                ) == token
                # Deleting revokes at the provider.
                [secret] = await alice.list_user_secrets()
                await alice.delete_user_secret(id=secret.id, delegated_to="agent-1")
                assert not provider.is_active(token)
                assert provider.revoked_grants == 1
                assert await alice.list_user_secrets() == []
                await agent.close()
                await alice.close()

    run(scenario())


def test_wrong_metadata_and_missing_endpoints_are_typed_errors_over_http() -> None:
    async def scenario() -> None:
        with running_provider() as provider, MetadataServer() as issuer:
            issuer.answer("/.well-known/oauth-authorization-server", body={
                "issuer": provider.issuer,
                "token_endpoint": provider.token_endpoint,
            })
            async with serving(provider=provider) as served:
                agent = served.remote("agent-1", grant=SecretsGrant.allow_all())
                with pytest.raises(errors.InvalidProviderMetadata) as info:
                    await agent.get_offline_oauth_token(
                        client_id=CLIENT_ID, issuer=issuer.base_url, delegated_by="alice"
                    )
                assert info.value.status == 200  # the metadata answer that was refused
                with pytest.raises(errors.ProviderMetadataNotFound):
                    await agent.get_offline_oauth_token(
                        client_id=CLIENT_ID, issuer=issuer.base_url + "/none",
                        delegated_by="alice",
                    )
                with pytest.raises(errors.InvalidInput, match="unless issuer"):
                    await agent.get_offline_oauth_token(client_id=CLIENT_ID, delegated_by="alice")
                await agent.close()

    run(scenario())


def test_the_server_answers_issuer_errors_with_their_statuses() -> None:
    async def scenario() -> None:
        with MetadataServer() as issuer:
            async with serving() as served:

                def post(operation: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
                    request = urllib.request.Request(
                        f"{served.url}/rooms/myroom/{operation}",
                        data=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json",
                                 **served.headers("agent-1", grant=SecretsGrant.allow_all())},
                    )
                    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                    try:
                        with opener.open(request, timeout=10) as response:
                            return response.status, json.loads(response.read())
                    except urllib.error.HTTPError as failure:
                        return failure.code, json.loads(failure.read())

                status, body = await asyncio.to_thread(post, "get_offline_oauth_token", {
                    "client_id": CLIENT_ID, "issuer": issuer.base_url, "delegated_by": "alice"})
                assert (status, body["error"]) == (502, "provider_metadata_not_found")
                status, body = await asyncio.to_thread(post, "get_offline_oauth_token", {
                    "client_id": CLIENT_ID, "issuer": "http://as.example", "delegated_by": "alice"})
                assert (status, body["error"]) == (400, "insecure_endpoint")
                status, body = await asyncio.to_thread(post, "provide_oauth_authorization", {
                    "request_id": "nope", "code": "c", "iss": issuer.base_url})
                assert (status, body["error"]) == (404, "unknown_request")

    run(scenario())


def test_openapi_lists_issuer_and_iss() -> None:
    async def scenario() -> None:
        async with serving() as served:
            def fetch() -> dict[str, object]:
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(served.url + "/openapi.json", timeout=10) as response:
                    return json.loads(response.read())

            document = await asyncio.to_thread(fetch)
            paths = document["paths"]

            def schema(operation: str) -> dict[str, object]:
                post = paths[f"/rooms/{{room}}/{operation}"]["post"]
                return post["requestBody"]["content"]["application/json"]["schema"]

            for operation in ("request_oauth_token", "get_offline_oauth_token"):
                body = schema(operation)
                assert "issuer" in body["properties"]
                assert "authorization_endpoint" not in body["required"]
                assert "token_endpoint" not in body["required"]
            assert "iss" in schema("provide_oauth_authorization")["properties"]

    run(scenario())
