"""Runs in the meshagent SDK's own venv (Python 3.13, meshagent-api 0.44.13, unmodified).

``python sdk_client.py SCENARIO`` plays an agent and a person against the roomsecrets
server at ``MESHAGENT_API_URL`` and prints one JSON line of what it saw. Tokens are
the SDK's own ``ParticipantToken(...).to_jwt(token=KEY)``. The environment names the
room (``ROOM``), the key (``KEY``) and the development provider (``AUTHORIZATION_ENDPOINT``,
``TOKEN_ENDPOINT``, ``CLIENT_ID``, ``REDIRECT_URI``). The person's UI builds the
authorization URL itself from the prompt, as the SDK's handler gets it: the endpoints,
the scopes and the PKCE challenge (the client id and redirect URI it knows already).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from meshagent.api.oauth import OAuthClientConfig
from meshagent.api.participant_token import (
    ApiScope,
    OAuthEndpoint,
    ParticipantToken,
    SecretsGrant,
)
from meshagent.api.room_server_client import (
    OAuthTokenRequest,
    RoomClient,
    RoomException,
    SecretRequest,
)
from meshagent.api.urls import websocket_room_url
from meshagent.api.websocket_protocol import WebSocketClientProtocol

ROOM = os.environ["ROOM"]
KEY = os.environ["KEY"]
CLIENT_ID = os.environ["CLIENT_ID"]
REDIRECT_URI = os.environ["REDIRECT_URI"]
OAUTH = OAuthClientConfig(
    client_id=CLIENT_ID,
    authorization_endpoint=os.environ["AUTHORIZATION_ENDPOINT"],
    token_endpoint=os.environ["TOKEN_ENDPOINT"],
    scopes=["mail.read"],
)


def token(name: str, role: str, secrets: SecretsGrant | None = None) -> str:
    minted = ParticipantToken(name=name)
    minted.add_room_grant(ROOM)
    minted.add_role_grant(role)
    minted.add_api_grant(ApiScope(secrets=secrets if secrets is not None else SecretsGrant()))
    return minted.to_jwt(token=KEY)


def room(jwt: str, handler=None) -> RoomClient:
    protocol = WebSocketClientProtocol(url=websocket_room_url(room_name=ROOM), token=jwt)
    return RoomClient(
        protocol_factory=protocol.create_factory(),
        reconnect_timeout=0,
        oauth_token_request_handler=handler,
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def authorize(request: OAuthTokenRequest) -> str:
    """The person approves at the provider; the code from its redirect."""
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": " ".join(request.scopes or []),
        "code_challenge": request.challenge,
        "code_challenge_method": "S256",
    }
    url = request.authorization_endpoint + "?" + urllib.parse.urlencode(query)
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))
    try:
        opener.open(url, timeout=10)
    except urllib.error.HTTPError as redirect:
        location = redirect.headers["Location"]
    else:
        raise AssertionError("the provider did not redirect")
    return urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]


class Person:
    """A person whose UI approves (or rejects) every prompt, and remembers them."""

    def __init__(self, answer: str = "approve") -> None:
        self.answer = answer
        self.prompts: list[dict] = []
        self.client: RoomClient | None = None

    async def __call__(self, request: OAuthTokenRequest) -> None:
        self.prompts.append({
            "authorization_endpoint": request.authorization_endpoint,
            "token_endpoint": request.token_endpoint,
            "scopes": request.scopes,
            "has_challenge": bool(request.challenge),
        })
        assert self.client is not None
        if self.answer == "reject":
            await self.client.secrets.reject_oauth_authorization(
                request_id=request.request_id, error="user_cancelled"
            )
            return
        code = await asyncio.to_thread(authorize, request)
        await self.client.secrets.provide_oauth_authorization(
            request_id=request.request_id, code=code
        )


def failure(ex: RoomException) -> dict:
    return {"text": str(ex), "code": ex.code}


async def attempt(call):
    try:
        return await call
    except RoomException as ex:
        return {"error": failure(ex)}


async def handshake() -> dict:
    async with room(token("mailbot", "agent")) as agent:
        return {
            "participant_id": agent.local_participant.id,
            "room_name": agent.room_name,
            "room_url": agent.room_url,
            "session_id": agent.session_id,
        }


async def oauth(answer: str = "approve", agent_grant: SecretsGrant | None = None) -> dict:
    person = Person(answer)
    async with room(token("alice", "user"), person) as alice:
        person.client = alice
        async with room(token("mailbot", "agent", agent_grant)) as agent:
            result: dict = {"alice": alice.local_participant.id}
            try:
                result["token"] = await agent.secrets.request_oauth_token(
                    oauth=OAUTH,
                    from_participant_id=alice.local_participant.id,
                    redirect_uri=REDIRECT_URI,
                    timeout=30,
                )
            except RoomException as ex:
                result["error"] = failure(ex)
            result["offline"] = await attempt(agent.secrets.get_offline_oauth_token(
                oauth=OAUTH, delegated_by=alice.local_participant.id
            ))
            result["offline_by_name"] = await attempt(agent.secrets.get_offline_oauth_token(
                oauth=OAUTH, delegated_by="alice"
            ))
            result["secrets"] = [s.model_dump() for s in await alice.secrets.list_secrets()]
            result["prompts"] = person.prompts
            return result


async def refused() -> dict:
    elsewhere = SecretsGrant(request_oauth_token=[
        OAuthEndpoint(endpoint="https://accounts.other.example/*", client_id=CLIENT_ID)
    ])
    return await oauth(agent_grant=elsewhere)


async def concurrent() -> dict:
    first = await oauth()
    await asyncio.sleep(float(os.environ["WAIT"]))
    async with room(token("mailbot", "agent")) as agent:
        tokens = await asyncio.gather(*[
            agent.secrets.get_offline_oauth_token(oauth=OAUTH, delegated_by="alice")
            for _ in range(10)
        ])
    return {"first": first["token"], "tokens": tokens}


async def own_secrets() -> dict:
    out: dict = {}
    async with room(token("alice", "user")) as alice:
        s = alice.secrets
        await s.set_secret(secret_id="k1", type="text/plain", name="Key one", data=b"s3cr\x00t")
        out["exists"] = await s.exists(secret_id="k1")
        got = await s.get_secret(secret_id="k1")
        out["get"] = {"data": got.data.hex(), "name": got.name, "mime_type": got.mime_type}
        out["list"] = [i.model_dump() for i in await s.list_secrets()]
        await s.delete_secret(id="k1")
        out["exists_after"] = await s.exists(secret_id="k1")
        out["get_after"] = await s.get_secret(secret_id="k1")
        errors = {}
        calls = {
            "delete_missing": s.delete_secret(id="k1"),
            "provide_unknown": s.provide_secret(request_id="no-such-request", data=b"x"),
            "unknown_tool": alice.invoke(toolkit="secrets", tool="nope", input={}),
            "unknown_toolkit": alice.invoke(toolkit="storage", tool="list", input={}),
        }
        for label, call in calls.items():
            try:
                await call
                errors[label] = None
            except RoomException as ex:
                errors[label] = failure(ex)
        out["errors"] = errors
        # Still connected after every error above: one more call works.
        out["still_works"] = [i.model_dump() for i in await s.list_secrets()]
    return out


async def secret_request() -> dict:
    """An agent asks alice for an API key; alice's UI types one in, then rejects a
    second request. RoomClient 0.44.13 never passes a ``secret_request_handler`` to
    its SecretsClient, so the person's handler is set on the SDK's private attribute
    ``_secret_request_handler``: the one thing here that is not the public API."""
    seen: list[dict] = []
    answers = [b"sk-sdk-0123456789abcdef", None]

    async with room(token("alice", "user")) as alice:

        async def handler(request: SecretRequest) -> None:
            seen.append({"url": request.url, "type": request.type,
                         "delegate_to": request.delegate_to})
            answer = answers.pop(0) if answers else None
            if answer is None:
                await alice.secrets.reject_secret(request_id=request.request_id,
                                                  error="user_cancelled")
            else:
                await alice.secrets.provide_secret(request_id=request.request_id, data=answer)

        alice.secrets._secret_request_handler = handler
        async with room(token("mailbot", "agent")) as agent:
            out: dict = {}
            ask = dict(url="https://api.example.com/v1", type="text/plain",
                       from_participant_id=alice.local_participant.id, timeout=30)
            out["first"] = (await agent.secrets.request_secret(**ask)).decode()
            out["again"] = (await agent.secrets.request_secret(**ask)).decode()
            out["listed"] = [i.model_dump() for i in await alice.secrets.list_secrets()]
            await alice.secrets.delete_requested_secret(
                url="https://api.example.com/v1", type="text/plain", delegated_to="mailbot")
            out["after_delete"] = [i.model_dump() for i in await alice.secrets.list_secrets()]
            out["rejected"] = await attempt(agent.secrets.request_secret(**ask))
            out["prompts"] = seen
            return out


async def delegated() -> dict:
    """mailbot asks alice for a credential kept for worker (delegate_to)."""
    person = Person()
    async with room(token("alice", "user"), person) as alice:
        person.client = alice
        async with room(token("worker", "agent")) as worker, \
                room(token("mailbot", "agent")) as agent:
            alice_id, worker_id = alice.local_participant.id, worker.local_participant.id
            out: dict = {}
            out["token"] = await agent.secrets.request_oauth_token(
                oauth=OAUTH, from_participant_id=alice_id, redirect_uri=REDIRECT_URI,
                timeout=30, delegate_to=worker_id,
            )
            out["worker_offline"] = await worker.secrets.get_offline_oauth_token(
                oauth=OAUTH, delegated_by=alice_id)
            out["asker_offline"] = await agent.secrets.get_offline_oauth_token(
                oauth=OAUTH, delegated_by=alice_id)
            out["asker_takes"] = await attempt(agent.secrets.get_offline_oauth_token(
                oauth=OAUTH, delegated_by=alice_id, delegated_to=worker_id))
            out["owner_reads"] = await alice.secrets.get_offline_oauth_token(
                oauth=OAUTH, delegated_by=alice_id, delegated_to=worker_id)
            out["secrets"] = [s.model_dump() for s in await alice.secrets.list_secrets()]
            out["prompts"] = len(person.prompts)
            return out


SCENARIOS = {
    "delegated": delegated,
    "secret_request": secret_request,
    "handshake": handshake,
    "oauth": oauth,
    "reject": lambda: oauth("reject"),
    "refused": refused,
    "concurrent": concurrent,
    "own_secrets": own_secrets,
}

if __name__ == "__main__":
    print(json.dumps(asyncio.run(SCENARIOS[sys.argv[1]]())))
