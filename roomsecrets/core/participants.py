"""A connected participant, and the part of the service its client talks to.

:class:`~.client.SecretsClient` is typed against :class:`RoomService`, not the
service class, so the client module does not import the service module (the
service imports the client to hand one out from ``connect``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Callable, Optional, Protocol

from .api import DeletedSecret, Prompt
from .audit import AuditEvent, AuditSink
from .broker import ResourceBroker
from .grants import SecretsGrant
from .oauth.discovery import ProviderMetadata
from .oauth.token_request import ClientCredentials
from .ports import Clock, SecretKey, SecretStore
from .refresh import CredentialRefresher
from .values import frozen_value

__all__ = ["Participant", "ParticipantInfo", "RoomService"]


@frozen_value
class ParticipantInfo:
    """A connected participant as others see it: its id and display name."""

    id: str
    name: Optional[str]


class Participant:
    """A connected participant: its grant and the prompts addressed to it."""

    __slots__ = ("closed", "grant", "name", "participant_id", "prompts", "watchers")

    def __init__(self, participant_id: str, name: Optional[str], grant: SecretsGrant) -> None:
        self.participant_id = participant_id
        self.name = name
        self.grant = grant
        self.closed = False
        #: Open prompts addressed to this participant, in arrival order.
        self.prompts: dict[str, Prompt] = {}
        #: Futures of ``oauth_prompts()`` iterators waiting for a change.
        self.watchers: list[asyncio.Future[None]] = []

    def changed(self) -> None:
        watchers, self.watchers = self.watchers, []
        for watcher in watchers:
            if not watcher.done():
                watcher.set_result(None)


class RoomService(Protocol):
    """What a :class:`~.client.SecretsClient` needs from its
    :class:`~.service.SecretsService` (which documents each member), including
    what discovery (RFC 8414), revocation on delete (RFC 7009) and the RFC 9207
    ``iss`` check need."""

    room: str
    store: SecretStore
    clock: Clock
    audit: AuditSink
    refresher: CredentialRefresher
    allow_insecure_http: bool
    broker: ResourceBroker
    offline_calls: dict[tuple[object, ...], Any]

    def participant(self, participant_id: str) -> Participant: ...

    def is_connected(self, participant_id: str) -> bool: ...

    def disconnect(self, participant_id: str) -> None: ...

    def check_oauth_arguments(
        self,
        owner: object,
        client_id: object,
        issuer: object,
        authorization_endpoint: object,
        token_endpoint: object,
    ) -> None: ...

    def credential_key(
        self,
        *,
        owner: str,
        requester: str,
        client_id: str,
        token_endpoint: str,
        resource: Optional[str] = None,
        brokered: bool = False,
    ) -> SecretKey: ...

    def check_oauth(
        self,
        *,
        requester: str,
        action: str,
        target: str,
        client_id: str,
        authorization_endpoint: str,
        token_endpoint: str,
        scopes: Optional[Sequence[str]],
        issuer: Optional[str] = None,
        resource: Optional[str] = None,
        brokered: bool = False,
    ) -> AuditEvent: ...

    def check_stored_scopes(
        self,
        *,
        requester: str,
        action: str,
        target: str,
        client_id: str,
        authorization_endpoint: str,
        token_endpoint: str,
        scopes: tuple[str, ...],
        issuer: Optional[str] = None,
        resource: Optional[str] = None,
        brokered: bool = False,
    ) -> None: ...

    def check_issuer(self, issuer: object) -> str: ...

    async def provider_metadata(
        self, issuer: str, *, endpoints_given: bool
    ) -> Optional[ProviderMetadata]: ...

    async def delete_secret(
        self, key: SecretKey, *, actor: str, expected_type: Optional[str] = None
    ) -> DeletedSecret: ...

    async def check_quota(self, key: SecretKey, *, size: int) -> None: ...

    async def request_token(
        self,
        *,
        requester: str,
        target: str,
        client: ClientCredentials,
        authorization_endpoint: str,
        token_endpoint: str,
        scopes: Sequence[str],
        redirect_uri: str,
        timeout: float,
        no_pkce: bool,
        issuer: Optional[str] = None,
        metadata: Optional[ProviderMetadata] = None,
        allow: Optional[Callable[[tuple[str, ...]], None]] = None,
        delegate_to: Optional[str] = None,
        resource: Optional[str] = None,
        resource_name: Optional[str] = None,
        brokered: bool = False,
    ) -> str: ...

    async def provide(
        self,
        *,
        by: str,
        request_id: str,
        code: str,
        state: Optional[str],
        iss: Optional[str] = None,
    ) -> None: ...

    def reject(
        self, *, by: str, request_id: str, error: str, kind: Optional[str] = None
    ) -> None: ...

    def prompts(self, participant_id: str) -> AsyncIterator[Prompt]: ...

    async def request_secret(
        self,
        *,
        requester: str,
        target: str,
        key: SecretKey,
        url: str,
        type: str,
        name: str,
        timeout: float,
    ) -> bytes: ...

    async def provide_secret(self, *, by: str, request_id: str, data: bytes) -> None: ...
