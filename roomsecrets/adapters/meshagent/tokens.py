"""meshagent-api's participant tokens, read and mapped onto our grants.

The SDK makes them with ``ParticipantToken(name=N)``, ``add_room_grant(R)``,
``add_role_grant(...)``, ``add_api_grant(ApiScope(...))`` and
``.to_jwt(token=KEY)``: an HS256 JWT (PyJWT) whose claims are

.. code-block:: json

    {"name": "alice", "version": "0.44.13",
     "grants": [{"name": "room", "scope": "myroom"},
                {"name": "role", "scope": "user"},
                {"name": "api", "scope": {"secrets": {"request_oauth_token": [
                    {"endpoint": "https://accounts.example.com/*", "client_id": "app"}]}}}]}

plus ``exp`` when minted with ``expiration=``, ``sub``/``kid`` with a project or API key.
The ``api`` scope is dumped with ``exclude_none`` and ``exclude_defaults``, so
``ApiScope(secrets=SecretsGrant())`` rides as ``"secrets": {}``.

The grant (:func:`grant_from_api_scope`): the SDK's ``SecretsGrant.can_request_oauth_token``
allows a request when its list is absent, or when one entry's ``client_id`` equals the
request's and its ``endpoint`` equals the authorization endpoint or, ending in ``*``,
is a prefix of it. Each entry becomes one :class:`~roomsecrets.core.grants.OAuthRule`
(the endpoint, its trailing ``*`` our "any run"), and our own check then decides, as
for every other door. The SDK's grant says nothing of ``request_secret``: a token with
the ``secrets`` API grant may ask for any secret (one :class:`~roomsecrets.core.grants.SecretRule`
that matches anything). Our patterns have no escape: an entry whose client id, or
endpoint before its trailing ``*``, holds ``*`` or ``?`` would match more with us than
with the SDK, so it is left out (it allows nothing rather than more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import jwt

from ...core.errors import InvalidInput
from ...core.grants import OAuthRule, SecretRule, SecretsGrant
from ...core.inputs import check_id

__all__ = ["NO_API_GRANT", "MeshAgentParticipant", "grant_from_api_scope", "read_token"]

#: What a token without an ``api`` grant (or without its ``secrets`` part) may do:
#: nothing (the SDK warns that such a participant cannot call the room API).
NO_API_GRANT = SecretsGrant(oauth=(), manage_own_secrets=False, answer_prompts=False)
#: The SDK's grant has no rule for ``request_secret``, so any is allowed.
_ANY_SECRET = (SecretRule(),)
# How far apart our clock and the minter's may be for exp (seconds).
_LEEWAY = 30


class InvalidMeshAgentToken(InvalidInput):
    """The token is missing, forged, expired, for another room, or not the SDK's shape."""

    code = "invalid_token"


@dataclass(frozen=True)
class MeshAgentParticipant:
    """Who a verified token says connects: ``name`` (whose secrets), the room, the grant."""

    name: str
    room: str
    role: str
    grant: SecretsGrant
    #: The token's ``exp`` (epoch seconds), or None: the SDK mints without one by default.
    expires_at: Optional[float]


def read_token(token: str, *, key: Union[str, bytes], room: str) -> MeshAgentParticipant:
    """Verify ``token`` (HS256 only, signed with ``key``) for ``room``.

    Raises InvalidMeshAgentToken; its message never quotes the token.
    """
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            leeway=_LEEWAY,
            options={"require": ["name", "grants"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidMeshAgentToken("the participant token has expired") from None
    except jwt.InvalidTokenError:
        raise InvalidMeshAgentToken(
            "the participant token is not a valid HS256 token signed with this server's key"
        ) from None
    name = claims.get("name")
    grants = claims.get("grants")
    if not isinstance(name, str) or not name.strip() or not isinstance(grants, list):
        raise InvalidMeshAgentToken("the token needs a 'name' and a list of 'grants'")
    try:
        check_id(name, "the token's name")
    except InvalidInput as bad:
        raise InvalidMeshAgentToken(str(bad)) from None
    scopes: dict[str, Any] = {}
    for entry in grants:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidMeshAgentToken("each of the token's grants is {'name', 'scope'}")
        scopes.setdefault(entry["name"], entry.get("scope"))
    if scopes.get("room") != room:
        raise InvalidMeshAgentToken("the token has no room grant for this room")
    role = scopes.get("role")
    exp = claims.get("exp")
    return MeshAgentParticipant(
        name=name,
        room=room,
        role=role if isinstance(role, str) else "user",
        grant=grant_from_api_scope(scopes.get("api")),
        expires_at=float(exp) if isinstance(exp, (int, float)) else None,
    )


def grant_from_api_scope(api: object) -> SecretsGrant:
    """Our grant for the SDK's ``ApiScope`` JSON (see the module docstring).

    >>> grant_from_api_scope({"secrets": {}}).oauth[0].client_id
    '*'
    >>> grant_from_api_scope({"secrets": {"request_oauth_token": [
    ...     {"endpoint": "https://a.example/*", "client_id": "app"}]}}).oauth[0]
    ...     # doctest: +ELLIPSIS
    OAuthRule(client_id='app', ..., authorization_endpoint='https://a.example/*', ...)
    """
    if not isinstance(api, dict) or not isinstance(api.get("secrets"), dict):
        return NO_API_GRANT
    endpoints = api["secrets"].get("request_oauth_token")
    if endpoints is None:
        return SecretsGrant(oauth=(OAuthRule(),), secret_requests=_ANY_SECRET)
    if not isinstance(endpoints, list):
        raise InvalidMeshAgentToken("secrets.request_oauth_token must be a list")
    rules = []
    for entry in endpoints:
        if not isinstance(entry, dict):
            raise InvalidMeshAgentToken("each secrets.request_oauth_token entry is an object")
        endpoint, client_id = entry.get("endpoint"), entry.get("client_id")
        if not isinstance(endpoint, str) or not isinstance(client_id, str):
            raise InvalidMeshAgentToken(
                "each secrets.request_oauth_token entry has an 'endpoint' and a 'client_id'"
            )
        literal = endpoint[:-1] if endpoint.endswith("*") else endpoint
        if not endpoint or not client_id or any(c in s for c in "*?" for s in (literal, client_id)):
            continue  # the SDK's rule cannot be said exactly with our patterns
        rules.append(OAuthRule(client_id=client_id, authorization_endpoint=endpoint))
    return SecretsGrant(oauth=tuple(rules), secret_requests=_ANY_SECRET)
