"""The MCP authorization broker's I/O: who protects a resource, and our client there.

An agent names only a protected resource (an MCP server's URL). The room server
then, as the MCP authorization spec chains them:

1. reads the resource's metadata (RFC 9728; :mod:`.oauth.resource_metadata`):
   at the URL its own 401 names (§5.1; one request without a token), else at
   the well-known URLs; checks that it names exactly that resource (§3.3), and
   takes its first authorization server;
2. reads that server's metadata (RFC 8414; the service's discovery cache);
3. registers itself there as a client (RFC 7591; :mod:`.oauth.registration`)
   unless the store already holds a registration for that server, which every
   agent, person and node then shares.

:class:`ResourceBroker` does steps 1 and 3 (step 2 is the service's
``provider_metadata``). Both results are cached: resource metadata like
issuer metadata (:class:`~.oauth.discovery.MetadataCache`), registrations in
the store, owned by the server (:data:`SERVER_OWNER`), never by a participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import Sequence
from typing import Callable, Optional

from .errors import (
    InvalidInput,
    RegistrationNotSupported,
    ResourceMetadataNotFound,
    RoomSecretsError,
    StoreError,
    VersionConflict,
)
from .inputs import RESERVED_PREFIX
from .oauth.discovery import MetadataCache, ProviderMetadata
from .oauth.http import HttpRequest, header_value
from .oauth.registration import (
    MAX_REGISTRATION_BYTES,
    REGISTRATION_TYPE,
    ClientRegistration,
    build_registration_request,
    parse_registration_response,
)
from .oauth.resource_metadata import (
    MAX_RESOURCE_METADATA_BYTES,
    ResourceMetadata,
    build_resource_metadata_request,
    parse_resource_metadata_response,
    resource_metadata_hint,
    resource_metadata_urls,
)
from .ports import Clock, HttpTransport, SecretKey, SecretStore

__all__ = ["SERVER_OWNER", "ResourceBroker", "registration_key"]

#: Who owns the server's registrations in the store, and the room they are kept
#: under: a name no participant or room can have (:data:`~.inputs.RESERVED_PREFIX`),
#: shared by every room of the store.
SERVER_OWNER = RESERVED_PREFIX + "server"


def registration_key(issuer: str) -> SecretKey:
    """Where the server's registration at ``issuer`` is kept."""
    digest = hashlib.sha256(issuer.encode()).hexdigest()
    return SecretKey(room=SERVER_OWNER, owner=SERVER_OWNER, secret_id=f"registration-{digest[:32]}")


class ResourceBroker:
    """Resource metadata (cached) and the server's client registrations (stored)."""

    def __init__(
        self,
        *,
        store: SecretStore,
        transport: HttpTransport,
        clock: Clock,
        http_timeout: float,
        allow_insecure_http: bool,
        ttl: float,
        failure_ttl: float,
        on_registered: Callable[[ClientRegistration], None] = lambda _: None,
    ) -> None:
        self._store = store
        self._transport = transport
        self._clock = clock
        self._http_timeout = http_timeout
        self._allow_insecure_http = allow_insecure_http
        self._on_registered = on_registered
        #: Each resource's metadata, by resource URL.
        self.resources: MetadataCache[ResourceMetadata] = MetadataCache(
            fetch=self._fetch_resource_metadata, clock=clock, ttl=ttl, failure_ttl=failure_ttl
        )
        #: A registration under way in this process, by issuer: callers share it.
        self._registering: dict[str, asyncio.Future[ClientRegistration]] = {}

    # --- RFC 9728 ----------------------------------------------------------------

    async def resource_metadata(self, resource: str) -> ResourceMetadata:
        """``resource``'s metadata (cached). Raises ResourceMetadataNotFound when no URL
        tried has it, InvalidResourceMetadata when it is unusable, ProviderError."""
        return await self.resources.get(resource)

    async def _fetch_resource_metadata(self, resource: str) -> ResourceMetadata:
        urls = resource_metadata_urls(resource, await self._challenge_hint(resource))
        for url in urls:
            response = await self._transport.send(
                build_resource_metadata_request(url),
                timeout=self._http_timeout,
                max_body=MAX_RESOURCE_METADATA_BYTES,
            )
            try:
                return parse_resource_metadata_response(
                    resource=resource,
                    status=response.status,
                    headers=response.headers,
                    body=response.body,
                    now=self._clock(),
                    allow_insecure_http=self._allow_insecure_http,
                )
            except ResourceMetadataNotFound:
                continue  # not published here: the next URL may have it
        raise ResourceMetadataNotFound(
            f"the resource {resource!r} publishes no protected resource metadata at "
            f"{' or '.join(urls)} (RFC 9728 §3.1): the broker cannot learn which "
            "authorization server protects it"
        )

    async def _challenge_hint(self, resource: str) -> Optional[str]:
        """The ``resource_metadata`` URL the resource's own 401 names (RFC 9728 §5.1),
        from one request without a token; None when it names none or cannot be asked
        (the well-known URLs are tried either way)."""
        probe = HttpRequest(
            method="GET",
            url=resource,
            headers=(("Accept", "application/json, text/event-stream"),),
        )
        try:
            response = await self._transport.send(
                probe, timeout=self._http_timeout, max_body=MAX_RESOURCE_METADATA_BYTES
            )
        except RoomSecretsError:
            return None
        if response.status != 401:
            return None
        return resource_metadata_hint(header_value(response.headers, "WWW-Authenticate"))

    # --- RFC 7591 ----------------------------------------------------------------

    async def registration(
        self, metadata: ProviderMetadata, *, redirect_uri: str, scopes: Sequence[str]
    ) -> ClientRegistration:
        """The server's client at ``metadata.issuer``: the stored one when it is for
        ``redirect_uri`` and its secret has not expired, else a new registration
        (kept in the store, replacing the old one).

        Concurrent callers in this process share one registration; another node
        registering at the same moment loses the compare-and-swap and uses ours.
        Raises RegistrationNotSupported (no registration endpoint),
        RegistrationRefused, ProviderError, StoreError.
        """
        stored = await self._stored(metadata.issuer)
        if stored is not None and self._usable(stored[1], redirect_uri):
            return stored[1]
        task = self._registering.get(metadata.issuer)
        if task is None:
            task = asyncio.ensure_future(self._register(metadata, redirect_uri, scopes))
            self._registering[metadata.issuer] = task
            task.add_done_callback(functools.partial(self._registered, metadata.issuer))
        # A caller that gives up does not cancel the registration others wait for.
        return await asyncio.shield(task)

    async def forget_registration(self, issuer: str, client_id: str) -> None:
        """The server answered ``invalid_client`` for ``client_id``: drop that
        registration (only that one: another node may have replaced it already),
        so the next request registers again."""
        stored = await self._stored(issuer)
        if stored is None or stored[1].client_id != client_id:
            return
        # Replaced meanwhile (a conflict): the new one stays.
        with contextlib.suppress(VersionConflict):
            await self._store.delete(registration_key(issuer), expected_version=stored[0])

    def _usable(self, registration: ClientRegistration, redirect_uri: str) -> bool:
        return registration.redirect_uri == redirect_uri and not registration.expired(
            self._clock()
        )

    async def _stored(self, issuer: str) -> Optional[tuple[int, ClientRegistration]]:
        record = await self._store.get(registration_key(issuer))
        if record is None or record.type != REGISTRATION_TYPE:
            return None
        try:
            registration = ClientRegistration.from_json(record.data)
        except InvalidInput:
            return None  # unreadable: registered again, replacing it
        if registration.issuer != issuer:
            return None
        return record.version, registration

    async def _register(
        self, metadata: ProviderMetadata, redirect_uri: str, scopes: Sequence[str]
    ) -> ClientRegistration:
        issuer = metadata.issuer
        # Another caller (or node) may have registered since we looked.
        stored = await self._stored(issuer)
        if stored is not None and self._usable(stored[1], redirect_uri):
            return stored[1]
        endpoint = metadata.registration_endpoint
        if endpoint is None:
            raise RegistrationNotSupported(
                f"the authorization server {issuer!r} names no registration_endpoint in its "
                "metadata (RFC 8414 §2, RFC 7591 §3): the broker cannot register a client "
                "there; give a client_id registered by hand instead"
            )
        response = await self._transport.send(
            build_registration_request(
                registration_endpoint=endpoint,
                redirect_uri=redirect_uri,
                scopes=scopes,
                allow_insecure_http=self._allow_insecure_http,
            ),
            timeout=self._http_timeout,
            max_body=MAX_REGISTRATION_BYTES,
        )
        registration = parse_registration_response(
            issuer=issuer,
            registration_endpoint=endpoint,
            redirect_uri=redirect_uri,
            status=response.status,
            headers=response.headers,
            body=response.body,
            now=self._clock(),
        )
        self._on_registered(registration)
        key = registration_key(issuer)
        try:
            await self._store.put(
                key,
                type=REGISTRATION_TYPE,
                name=f"client registration at {issuer}",
                data=registration.to_json(),
                expected_version=0 if stored is None else stored[0],
            )
        except VersionConflict:
            # Another node registered (or replaced ours) first: use theirs, so that
            # every node sends one client id.
            theirs = await self._stored(issuer)
            if theirs is not None and self._usable(theirs[1], redirect_uri):
                return theirs[1]
            raise StoreError(
                f"could not keep the client registration at {issuer!r}: the store "
                "changed under it; try again"
            ) from None
        return registration

    def _registered(self, issuer: str, task: asyncio.Future[ClientRegistration]) -> None:
        if self._registering.get(issuer) is task:
            del self._registering[issuer]
        if not task.cancelled():
            task.exception()  # retrieved here: every caller may have given up
