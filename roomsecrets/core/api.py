"""The public API's values and its shape, shared by every client.

:class:`SecretsAPI` is the seed's method set (``shared/seed/secrets-api.txt``):
the in-process :class:`~.client.SecretsClient` satisfies it, and so must any
other client (a remote one over HTTP), so agent code does not change when it
moves out of process. mypy checks each implementation against it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Optional, Protocol, Union

from .values import frozen_value

__all__ = ["DeletedSecret", "OAuthPrompt", "Prompt", "SecretInfo", "SecretPrompt", "SecretsAPI"]


@frozen_value
class SecretInfo:
    """One entry of ``list_user_secrets`` or ``list_delegated_secrets``: ``type`` is
    ``"oauth_token"`` or a MIME type. ``delegated_by`` is None for our own secrets,
    and names the owner of a secret someone delegated to us."""

    id: str
    type: str
    name: Optional[str]
    delegated_to: Optional[str]
    delegated_by: Optional[str] = None


@frozen_value
class DeletedSecret:
    """What a delete did. The secret is gone; for an OAuth credential,
    ``revocation`` says what happened at the provider (RFC 7009):

    - ``"revoked"``: the provider's revocation endpoint (at ``host``) accepted it;
    - ``"failed"``: it did not (``error`` is the code); the provider may still
      honour the token until it expires;
    - ``"not_published"``: no revocation endpoint is known for the provider at
      ``host`` (none in the issuer's metadata or at the token endpoint's origin);
    - ``"not_oauth"``: not an OAuth credential, nothing to revoke.
    """

    id: str
    delegated_to: Optional[str]
    type: str
    revocation: str
    #: host[:port] of the revocation endpoint, or of the token endpoint when none is known.
    host: Optional[str] = None
    #: The error code of a failed revocation.
    error: Optional[str] = None


@frozen_value
class OAuthPrompt:
    """A request for the person to approve: open ``authorization_url``, then answer
    with ``provide_oauth_authorization`` (the code from the redirect) or
    ``reject_oauth_authorization``. ``repr`` hides the URL and ``state``."""

    request_id: str
    authorization_url: str
    state: str
    code_challenge: Optional[str]
    from_participant_id: str
    client_id: str
    scopes: tuple[str, ...]
    redirect_uri: str
    expires_at: float
    #: Whom the credential is delegated to once approved: the requester unless it
    #: asked for another participant (None: the requester).
    delegate_to: Optional[str] = None
    #: The protected resource (an MCP server's URL, RFC 8707) the token is for, and
    #: its ``resource_name`` from its metadata (RFC 9728), when the request named one.
    resource: Optional[str] = None
    resource_name: Optional[str] = None
    #: True when the server brokers the flow (the agent named only the resource):
    #: the client is then the server's own registration, not one an agent named.
    brokered: bool = False

    def __repr__(self) -> str:
        return (
            f"OAuthPrompt(request_id={self.request_id!r}, "
            f"from_participant_id={self.from_participant_id!r}, client_id={self.client_id!r}, "
            f"scopes={self.scopes!r}, redirect_uri={self.redirect_uri!r}, "
            f"expires_at={self.expires_at!r}, delegate_to={self.delegate_to!r}, "
            f"resource={self.resource!r})"
        )


@frozen_value
class SecretPrompt:
    """A request for the person to type or paste a secret (an API key, say) for
    ``url``, of MIME ``type``: answer with ``provide_secret`` (the bytes) or
    ``reject_secret``. The answer is stored as the person's secret, delegated to
    ``delegate_to`` (the requester unless it named someone else)."""

    request_id: str
    from_participant_id: str
    url: str
    type: str
    delegate_to: str
    expires_at: float


#: What ``prompts()`` yields: an OAuth approval or a secret to type in.
Prompt = Union[OAuthPrompt, SecretPrompt]


class SecretsAPI(Protocol):
    """What a participant can do with a room's secrets: the seed's methods, all async
    (``oauth_prompts`` returns an async iterator). See
    :class:`~.client.SecretsClient` for each method's behaviour and errors."""

    participant_id: str

    async def list_user_secrets(self) -> list[SecretInfo]: ...

    async def list_delegated_secrets(self) -> list[SecretInfo]: ...

    async def delete_user_secret(self, *, id: str, delegated_to: Optional[str] = None) -> None: ...

    async def delete_secret(
        self, *, id: str, delegated_to: Optional[str] = None, type: Optional[str] = None
    ) -> DeletedSecret: ...

    async def request_oauth_token(
        self,
        *,
        client_id: Optional[str] = None,
        from_participant_id: str,
        redirect_uri: str,
        authorization_endpoint: Optional[str] = None,
        token_endpoint: Optional[str] = None,
        client_secret: Optional[str] = None,
        scopes: Optional[Sequence[str]] = None,
        timeout: float = 300,
        no_pkce: bool = False,
        issuer: Optional[str] = None,
        client_auth_method: Optional[str] = None,
        delegate_to: Optional[str] = None,
        resource: Optional[str] = None,
        rejected_access_token: Optional[str] = None,
    ) -> str: ...

    async def get_offline_oauth_token(
        self,
        *,
        client_id: Optional[str] = None,
        authorization_endpoint: Optional[str] = None,
        token_endpoint: Optional[str] = None,
        client_secret: Optional[str] = None,
        scopes: Optional[Sequence[str]] = None,
        timeout: float = 300,
        delegated_by: Optional[str] = None,
        participant_name: Optional[str] = None,
        issuer: Optional[str] = None,
        client_auth_method: Optional[str] = None,
        delegated_to: Optional[str] = None,
        resource: Optional[str] = None,
        rejected_access_token: Optional[str] = None,
    ) -> Optional[str]: ...

    async def provide_oauth_authorization(
        self,
        *,
        request_id: str,
        code: str,
        state: Optional[str] = None,
        iss: Optional[str] = None,
    ) -> None: ...

    async def reject_oauth_authorization(self, *, request_id: str, error: str) -> None: ...

    def oauth_prompts(self) -> AsyncIterator[OAuthPrompt]: ...

    def prompts(self) -> AsyncIterator[Prompt]: ...

    async def request_secret(
        self,
        *,
        url: str,
        type: str,
        from_participant_id: str,
        timeout: float = 300,
        delegate_to: Optional[str] = None,
    ) -> bytes: ...

    async def provide_secret(self, *, request_id: str, data: bytes) -> None: ...

    async def reject_secret(self, *, request_id: str, error: str) -> None: ...

    async def delete_requested_secret(
        self, *, url: str, type: str, delegated_to: Optional[str] = None
    ) -> DeletedSecret: ...

    async def set_secret(
        self,
        *,
        secret_id: str,
        data: bytes,
        type: str = "application/octet-stream",
        name: Optional[str] = None,
        delegated_to: Optional[str] = None,
    ) -> None: ...

    async def get_secret(
        self,
        *,
        secret_id: str,
        delegated_to: Optional[str] = None,
        delegated_by: Optional[str] = None,
    ) -> Optional[bytes]: ...

    async def close(self) -> None: ...
