"""``SecretsClient``: one participant's view of the room's secrets — the seed's API.

Method names and keywords follow the reference Secrets API
(``shared/seed/secrets-api.txt``); every method is async.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Callable, Optional

from .api import DeletedSecret, OAuthPrompt, Prompt, SecretInfo, SecretsAPI
from .audit import AuditDetails, AuditEvent
from .credentials import OAUTH_TOKEN_TYPE
from .errors import (
    GrantDenied,
    InvalidClient,
    InvalidInput,
    ParticipantNotConnected,
    StoreError,
    VersionConflict,
    safe_text,
)
from .grants import (
    GrantDecision,
    SecretsGrant,
    authorize,
    check_manage_own_secrets,
    check_oauth_request_before_discovery,
    check_secret_request,
)
from .inputs import (
    MAX_ACCESS_TOKEN,
    MAX_CLIENT_SECRET,
    MAX_CODE,
    MAX_ERROR,
    MAX_REQUEST_ID,
    MAX_STATE,
    MAX_TYPE,
    MAX_URL,
    check_bytes,
    check_client_auth_method,
    check_flag,
    check_id,
    check_name,
    check_scopes,
    check_text,
    check_timeout,
    check_url,
    check_vschar,
)
from .oauth.discovery import ProviderMetadata, resolve_endpoints
from .oauth.endpoints import check_redirect_uri
from .oauth.resource_metadata import check_resource
from .oauth.token_request import ClientAuthMethod, ClientCredentials
from .participants import Participant, RoomService
from .ports import SecretKey
from .secret_requests import requested_secret_id, requested_secret_name
from .values import exact_strings, frozen_value

__all__ = ["SecretsClient"]


@frozen_value
class _Provider:
    """The endpoints one OAuth call uses, and the issuer and metadata they came from."""

    authorization_endpoint: str
    token_endpoint: str
    issuer: Optional[str]
    metadata: Optional[ProviderMetadata]


# An agent names the same endpoints and client on every call; these two values are
# immutable and depend on nothing else, so one of each is kept per argument (exact
# strings only, as a str subclass's __eq__ could match another). No client secret
# is kept: a client with one is built for each call.
@functools.lru_cache(maxsize=256)
def _explicit_provider(authorization_endpoint: str, token_endpoint: str) -> _Provider:
    return _Provider(
        authorization_endpoint=authorization_endpoint,
        token_endpoint=token_endpoint,
        issuer=None,
        metadata=None,
    )


@functools.lru_cache(maxsize=256)
def _public_client(client_id: str) -> ClientCredentials:
    return ClientCredentials(client_id=client_id)


def _checked_auth_method(
    client_secret: Optional[str], client_auth_method: Optional[str]
) -> Optional[ClientAuthMethod]:
    """Check the client secret and the method the caller named (None: not named)."""
    if client_secret is not None:
        check_vschar(client_secret, "client_secret", limit=MAX_CLIENT_SECRET)
    method = check_client_auth_method(client_auth_method, client_secret=client_secret)
    return None if method is None else ClientAuthMethod(method)


# Remembered get_offline_oauth_token calls per service (a full memo starts afresh).
_MAX_OFFLINE_CALLS = 1024


@frozen_value
class _OfflineCall:
    """What a ``get_offline_oauth_token`` call with explicit endpoints and a public
    client decided before reading the store: its (allowed, audited) grant decision,
    where the credential lives and the client that refreshes it."""

    grant: SecretsGrant
    decided: AuditEvent
    key: SecretKey
    client: ClientCredentials
    owner: str
    client_id: str
    authorization_endpoint: str
    token_endpoint: str
    scopes: tuple[str, ...]
    resource: Optional[str]


def _offline_memo_key(
    grant: SecretsGrant,
    requester: str,
    owner: object,
    client_id: object,
    authorization_endpoint: object,
    token_endpoint: object,
    scopes: object,
    issuer: object,
    client_secret: object,
    client_auth_method: object,
    delegated_to: object,
    resource: object,
) -> Optional[tuple[object, ...]]:
    """The memo key of a ``get_offline_oauth_token`` call, or None when it cannot be
    remembered: discovery (``issuer``) can change its endpoints, a client secret is
    not kept, and only exact strings (see :func:`~.values.exact_strings`) compare
    as themselves. The grant is keyed by identity (hashing it would hash every
    rule): the entry holds the grant, so no other object can have its id while
    the entry exists."""
    if issuer is not None or client_secret is not None or client_auth_method is not None:
        return None
    if scopes is None:
        scope_key: Optional[tuple[object, ...]] = None
    elif type(scopes) is list or type(scopes) is tuple:
        scope_key = tuple(scopes)
    else:
        return None
    texts = (owner, client_id, authorization_endpoint, token_endpoint, delegated_to, resource)
    if not exact_strings(texts if scope_key is None else texts + scope_key):
        return None
    return (id(grant), requester, *texts, scope_key)


class SecretsClient:
    """A participant connected to a :class:`~.service.SecretsService`.

    Get one from ``service.connect(participant_id, ...)``; ``close()`` leaves the room.
    Every method checks all of its arguments first (limits in ``docs/limits.md``);
    an invalid one raises :class:`~.errors.InvalidInput` and changes nothing. Every
    method of a closed client raises :class:`~.errors.ParticipantNotConnected`.
    """

    def __init__(self, service: RoomService, participant: Participant) -> None:
        self._service = service
        self._participant = participant
        self.participant_id = participant.participant_id

    def _check_connected(self) -> None:
        """Raise unless this very client is still connected (a later ``connect`` of the
        same id, with another grant, does not revive an old handle)."""
        if self._service.participant(self.participant_id) is not self._participant:
            raise ParticipantNotConnected("this client has left the room")

    def __repr__(self) -> str:
        return f"SecretsClient(participant_id={self.participant_id!r}, room={self._service.room!r})"

    async def close(self) -> None:
        """Leave the room. Pending requests this participant made or was asked end at once
        (:class:`~.errors.RequestCancelled`); ``oauth_prompts()`` iterators stop."""
        if self._service.is_connected(self.participant_id):
            self._check_connected()
            self._service.disconnect(self.participant_id)

    async def __aenter__(self) -> SecretsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- OAuth ---------------------------------------------------------------------

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
    ) -> str:
        """An access token for ``from_participant_id``'s account, asking them if needed.

        ``resource`` names a protected resource (an MCP server's URL; RFC 8707).
        Without ``client_id``, the server brokers the whole flow: it reads the
        resource's metadata (RFC 9728) and its authorization server's (RFC
        8414), registers its own client there once (RFC 7591; kept in the store
        and shared), and asks the person, with ``resource`` on the authorization,
        token and refresh requests; no endpoint, issuer or client secret is given
        then. With ``client_id``, ``resource`` only adds RFC 8707 to the explicit
        flow. See ``docs/mcp.md``.

        ``rejected_access_token``: a token the resource server refused even after a
        refresh; a stored credential still holding it is not handed back, the
        person is asked (and their approval replaces it).

        ``authorization_endpoint`` and ``token_endpoint`` are required unless
        ``issuer`` is given: then those left out come from the issuer's metadata
        (RFC 8414, or OpenID Connect Discovery; fetched once and cached), and an
        endpoint given explicitly always wins. With an issuer, the credential
        also learns the provider's revocation endpoint (used by
        ``delete_user_secret``), and the answer's ``iss`` is checked (RFC 9207).

        ``client_auth_method`` says how the ``client_secret`` is sent (RFC 6749
        §2.3.1): ``"client_secret_basic"`` or ``"client_secret_post"``, as the
        client is registered at the provider; it needs a ``client_secret``. Left
        out, a stored credential is refreshed the way its code was exchanged,
        and a new code is exchanged with ``client_secret_basic``, unless the
        issuer's metadata lists ``client_secret_post`` and not basic in
        ``token_endpoint_auth_methods_supported``. The credential remembers the
        method, for its refreshes and its revocation.

        Checks this participant's grant first. If the person already has a
        credential for this client and token endpoint, delegated to us, whose
        scopes cover ``scopes`` and whose granted scopes our grant allows,
        returns its access token (refreshed first if expired) without a prompt.
        Otherwise prompts them and waits up to ``timeout`` seconds for
        ``provide_oauth_authorization``.

        ``delegate_to`` names another participant (an agent we act for) to whom the
        person's credential is delegated instead of us: the prompt says so, the
        credential is stored delegated to them (they get it later with
        ``get_offline_oauth_token``), and we get this one access token. A stored
        credential delegated to someone else is never handed to us unasked: the
        person is asked every time (as ``request_secret`` does).

        Raises: GrantDenied (also when the stored credential carries scopes our
        grant does not allow), ParticipantNotConnected (the person is not here),
        RequestRejected, RequestTimedOut, RequestCancelled, TooManyPendingRequests,
        an OAuthError from the provider, ProviderError (retryable),
        InvalidProviderMetadata (the issuer's metadata is unusable; its subclass
        ProviderMetadataNotFound when an endpoint is neither given nor
        published), InvalidInput.
        """
        self._check_connected()
        scopes = check_scopes(scopes)
        if rejected_access_token is not None:
            check_vschar(rejected_access_token, "rejected_access_token", limit=MAX_ACCESS_TOKEN)
        if resource is not None:
            resource = check_resource(
                resource, allow_insecure_http=self._service.allow_insecure_http
            )
        if client_id is None:
            return await self._brokered_request(
                owner=from_participant_id,
                resource=resource,
                redirect_uri=redirect_uri,
                scopes=scopes,
                timeout=timeout,
                no_pkce=no_pkce,
                delegate_to=delegate_to,
                rejected=rejected_access_token,
                explicit=(
                    issuer, authorization_endpoint, token_endpoint, client_secret,
                    client_auth_method,
                ),
            )
        self._service.check_oauth_arguments(
            from_participant_id, client_id, issuer, authorization_endpoint, token_endpoint
        )
        check_url(redirect_uri, "redirect_uri")
        check_redirect_uri(redirect_uri, allow_insecure_http=self._service.allow_insecure_http)
        timeout = check_timeout(timeout)
        check_flag(no_pkce, "no_pkce")
        if delegate_to is not None:
            check_id(delegate_to, "delegate_to")
        delegate = self.participant_id if delegate_to is None else delegate_to
        method = _checked_auth_method(client_secret, client_auth_method)
        provider = await self._provider(
            "oauth.request_token",
            from_participant_id,
            client_id,
            issuer,
            authorization_endpoint,
            token_endpoint,
            scopes,
            resource,
        )
        authorization_endpoint = provider.authorization_endpoint
        token_endpoint = provider.token_endpoint
        key, _ = self._checked_credential_key(
            "oauth.request_token",
            from_participant_id,
            client_id,
            authorization_endpoint,
            token_endpoint,
            scopes,
            provider.issuer,
            resource,
        )
        client = self._new_client(client_id, client_secret, method, provider)
        service = self._service
        # Every hand-out, the first one included, passes this check of the scopes the
        # credential carries.
        allow = self._stored_scopes_check(
            "oauth.request_token",
            from_participant_id,
            client_id,
            authorization_endpoint,
            token_endpoint,
            scopes,
            provider.issuer,
            resource,
        )
        if delegate == self.participant_id:
            # Handed back unasked only when it is delegated to us: a credential the
            # person gave someone else is theirs to give again, so naming that
            # delegate asks.
            token = await service.refresher.access_token(
                key,
                client=await self._refresh_client(key, client, method),
                token_endpoint=token_endpoint,
                scopes=scopes,
                allow=allow,
            )
            if token is not None and token != rejected_access_token:
                return token
        return await self._ask_person(
            owner=from_participant_id,
            delegate=delegate,
            client=client,
            provider=provider,
            scopes=scopes,
            redirect_uri=redirect_uri,
            timeout=timeout,
            no_pkce=no_pkce,
            allow=allow,
            resource=resource,
        )

    async def _ask_person(
        self,
        *,
        owner: str,
        delegate: str,
        client: ClientCredentials,
        provider: _Provider,
        scopes: tuple[str, ...],
        redirect_uri: str,
        timeout: float,
        no_pkce: bool,
        allow: Callable[[tuple[str, ...]], None],
        resource: Optional[str],
        resource_name: Optional[str] = None,
        brokered: bool = False,
    ) -> str:
        """Prompt ``owner`` and wait for the token (both flows end here), unless their
        secrets have no room for the credential."""
        service = self._service
        owner_key = service.credential_key(
            owner=owner,
            requester=delegate,
            client_id=client.client_id,
            token_endpoint=provider.token_endpoint,
            resource=resource,
            brokered=brokered,
        )
        await service.check_quota(owner_key, size=0)
        return await service.request_token(
            requester=self.participant_id,
            target=owner,
            client=client,
            authorization_endpoint=provider.authorization_endpoint,
            token_endpoint=provider.token_endpoint,
            scopes=scopes,
            redirect_uri=redirect_uri,
            timeout=timeout,
            no_pkce=no_pkce,
            issuer=provider.issuer,
            metadata=provider.metadata,
            allow=allow,
            delegate_to=delegate,
            resource=resource,
            resource_name=resource_name,
            brokered=brokered,
        )

    async def _provider(
        self,
        action: str,
        owner: str,
        client_id: str,
        issuer: Optional[str],
        authorization_endpoint: Optional[str],
        token_endpoint: Optional[str],
        scopes: tuple[str, ...],
        resource: Optional[str] = None,
    ) -> _Provider:
        """The endpoints to use: as given, or from ``issuer``'s metadata (explicit wins)."""
        self._check_connected()
        if issuer is None:
            if authorization_endpoint is None or token_endpoint is None:
                raise InvalidInput(
                    "authorization_endpoint and token_endpoint are required unless issuer is given"
                )
            if type(authorization_endpoint) is str and type(token_endpoint) is str:
                return _explicit_provider(authorization_endpoint, token_endpoint)
            return _Provider(
                authorization_endpoint=authorization_endpoint,
                token_endpoint=token_endpoint,
                issuer=None,
                metadata=None,
            )
        service = self._service
        service.check_issuer(issuer)
        if authorization_endpoint is not None:
            check_url(authorization_endpoint, "authorization_endpoint")
        if token_endpoint is not None:
            check_url(token_endpoint, "token_endpoint")
        given = authorization_endpoint is not None and token_endpoint is not None
        # Decide what can be decided before the issuer is asked for anything: a
        # denied caller must not make the server send requests (to probe ports).
        maybe = check_oauth_request_before_discovery(
            self._participant.grant,
            target=owner,
            client_id=client_id,
            issuer=issuer,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            scopes=scopes,
            resource=resource,
        )
        self._refuse_before_discovery(
            maybe,
            action,
            # The shape of every OAuth decision's details; the issuer stands in
            # for an endpoint not known yet.
            (
                ("target", owner),
                ("client_id", client_id),
                ("token_endpoint", token_endpoint or issuer),
                ("scopes", " ".join(scopes)),
                ("issuer", issuer),
            ),
        )
        metadata = await service.provider_metadata(issuer, endpoints_given=given)
        chosen = resolve_endpoints(
            issuer=issuer,
            metadata=metadata,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
        )
        return _Provider(
            authorization_endpoint=chosen[0],
            token_endpoint=chosen[1],
            issuer=issuer,
            metadata=metadata,
        )

    @staticmethod
    def _new_client(
        client_id: str,
        client_secret: Optional[str],
        method: Optional[ClientAuthMethod],
        provider: _Provider,
    ) -> ClientCredentials:
        """The client as a new code exchange authenticates it: the method named,
        else what the issuer's metadata implies for this token endpoint, else
        ``client_secret_basic`` (RFC 6749 §2.3.1: servers MUST support it)."""
        if client_secret is None and method is None and type(client_id) is str:
            return _public_client(client_id)
        if client_secret is not None and method is None and provider.metadata is not None:
            method = provider.metadata.secret_auth_method_for(provider.token_endpoint)
        return ClientCredentials(client_id=client_id, client_secret=client_secret, method=method)

    async def _refresh_client(
        self, key: SecretKey, client: ClientCredentials, method: Optional[ClientAuthMethod]
    ) -> ClientCredentials:
        """The client as a refresh of the credential at ``key`` authenticates it.

        The method the caller named wins (it is the caller's client). Otherwise
        the credential's own: a client registered for one method is refused with
        ``invalid_client`` when it uses another, so a refresh must authenticate
        as the exchange that obtained the credential did.
        """
        if method is not None or client.client_secret is None:
            return client
        _, stored = await self._service.refresher.load(key)
        if stored is None:
            return client  # nothing to refresh (or a new approval will decide)
        recorded = stored.client_auth_method or ClientAuthMethod.CLIENT_SECRET_BASIC
        if recorded is client.auth_method:
            return client
        return ClientCredentials(
            client_id=client.client_id, client_secret=client.client_secret, method=recorded
        )

    def _checked_credential_key(
        self,
        action: str,
        owner: str,
        client_id: str,
        authorization_endpoint: str,
        token_endpoint: str,
        scopes: tuple[str, ...],
        issuer: Optional[str] = None,
        resource: Optional[str] = None,
        delegate: Optional[str] = None,
    ) -> tuple[SecretKey, AuditEvent]:
        """Check the call against our grant (audited; raises on denial), then return
        where ``owner``'s credential for this client, delegated to us (or to
        ``delegate``), lives, and the audit event of the decision."""
        self._check_connected()
        service = self._service
        decided = service.check_oauth(
            requester=self.participant_id,
            action=action,
            target=owner,
            client_id=client_id,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            scopes=scopes,
            issuer=issuer,
            resource=resource,
        )
        key = service.credential_key(
            owner=owner,
            requester=self.participant_id if delegate is None else delegate,
            client_id=client_id,
            token_endpoint=token_endpoint,
            resource=resource,
        )
        return key, decided

    def _stored_scopes_check(
        self,
        action: str,
        owner: str,
        client_id: str,
        authorization_endpoint: str,
        token_endpoint: str,
        requested: tuple[str, ...],
        issuer: Optional[str] = None,
        resource: Optional[str] = None,
        brokered: bool = False,
    ) -> Callable[[tuple[str, ...]], None]:
        """The check a stored credential's own scopes must pass before we get its token.

        Scopes the request named were checked already; only a credential carrying
        more (granted earlier, before our grant was narrowed) needs a new decision.
        """
        asked = frozenset(requested)

        def allow(carried: tuple[str, ...]) -> None:
            if asked.issuperset(carried):
                return
            self._check_connected()
            self._service.check_stored_scopes(
                requester=self.participant_id,
                action=action,
                target=owner,
                client_id=client_id,
                authorization_endpoint=authorization_endpoint,
                token_endpoint=token_endpoint,
                scopes=carried,
                issuer=issuer,
                resource=resource,
                brokered=brokered,
            )

        return allow

    async def _read_offline(self, call: _OfflineCall, rejected: Optional[str]) -> Optional[str]:
        """The access token of the credential ``call`` decided on (its grant check audited)."""
        return await self._service.refresher.access_token(
            call.key,
            client=call.client,
            token_endpoint=call.token_endpoint,
            scopes=call.scopes,
            rejected=rejected,
            allow=self._stored_scopes_check(
                "oauth.get_offline_token",
                call.owner,
                call.client_id,
                call.authorization_endpoint,
                call.token_endpoint,
                call.scopes,
                None,
                call.resource,
            ),
        )

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
    ) -> Optional[str]:
        """A saved access token of ``delegated_by`` (refreshed if needed), never a prompt.

        The endpoints, ``issuer`` and ``client_auth_method`` work as in
        :meth:`request_oauth_token`.

        Returns None when there is no usable credential (none stored, scopes not
        covered, or the provider revoked it). ``participant_name`` is accepted as
        an alias of ``delegated_by`` (the reference API uses both). ``timeout``
        is accepted (and checked) for compatibility; the HTTP timeout of
        refreshes is the service's ``http_timeout``.

        ``delegated_to`` is us unless given. Only the credential's owner may name
        another participant: a person gets their own credential that they
        delegated to an agent; anyone else naming another delegate gets
        GrantDenied (a credential delegated to someone else is not ours to take).

        ``resource`` without ``client_id``: the credential the broker got for that
        resource (see :meth:`request_oauth_token`); nothing is fetched unless it
        must be refreshed.

        ``rejected_access_token``: the token the resource server just refused
        (HTTP 401). While the credential still holds it, it is refreshed now
        rather than at expiry (single-flight: many callers reporting one token
        cause one refresh); None when it cannot be refreshed.

        Raises: GrantDenied (also when the stored credential carries scopes our
        grant does not allow), an OAuthError or ProviderError from a refresh,
        InvalidProviderMetadata (see :meth:`request_oauth_token`), InvalidInput.
        """
        if delegated_by is not None and participant_name is not None:
            check_id(delegated_by, "delegated_by")
            if delegated_by != participant_name:
                raise InvalidInput("delegated_by and participant_name name different participants")
        owner = delegated_by if delegated_by is not None else participant_name
        if owner is None:
            raise InvalidInput("delegated_by (or participant_name) is required")
        self._check_connected()
        if delegated_to is not None:
            check_id(delegated_to, "delegated_to")
            if delegated_to != self.participant_id and owner != self.participant_id:
                raise GrantDenied(
                    f"only {check_id(owner, 'delegated_by')} may get a credential of theirs "
                    "delegated to another participant"
                )
        # A call made before with the same plain strings, explicit endpoints and no
        # client secret decided the same (every step below is a pure function of
        # them and our grant): only the audit event and the store read are per call.
        memo_key = _offline_memo_key(
            self._participant.grant, self.participant_id, owner, client_id,
            authorization_endpoint, token_endpoint, scopes, issuer, client_secret,
            client_auth_method, delegated_to, resource,
        )
        if memo_key is not None:
            known: Optional[_OfflineCall] = self._service.offline_calls.get(memo_key)
            if known is not None:
                check_timeout(timeout)
                if rejected_access_token is not None:
                    check_vschar(
                        rejected_access_token, "rejected_access_token", limit=MAX_ACCESS_TOKEN
                    )
                service = self._service
                service.audit(known.decided.at_time(service.clock()))
                return await self._read_offline(known, rejected_access_token)
        scopes = check_scopes(scopes)
        if rejected_access_token is not None:
            check_vschar(rejected_access_token, "rejected_access_token", limit=MAX_ACCESS_TOKEN)
        if resource is not None:
            resource = check_resource(
                resource, allow_insecure_http=self._service.allow_insecure_http
            )
        if client_id is None:
            check_timeout(timeout)
            return await self._brokered_offline(
                owner=owner,
                resource=resource,
                scopes=scopes,
                delegated_to=delegated_to,
                rejected=rejected_access_token,
                explicit=(
                    issuer, authorization_endpoint, token_endpoint, client_secret,
                    client_auth_method,
                ),
            )
        self._service.check_oauth_arguments(
            owner, client_id, issuer, authorization_endpoint, token_endpoint
        )
        check_timeout(timeout)
        method = _checked_auth_method(client_secret, client_auth_method)
        provider = await self._provider(
            "oauth.get_offline_token",
            owner,
            client_id,
            issuer,
            authorization_endpoint,
            token_endpoint,
            scopes,
            resource,
        )
        authorization_endpoint = provider.authorization_endpoint
        token_endpoint = provider.token_endpoint
        key, decided = self._checked_credential_key(
            "oauth.get_offline_token",
            owner,
            client_id,
            authorization_endpoint,
            token_endpoint,
            scopes,
            provider.issuer,
            resource,
            delegated_to,
        )
        client = self._new_client(client_id, client_secret, method, provider)
        service = self._service
        if memo_key is not None:
            call = _OfflineCall(
                grant=self._participant.grant,
                decided=decided,
                key=key,
                client=client,
                owner=owner,
                client_id=client_id,
                authorization_endpoint=authorization_endpoint,
                token_endpoint=token_endpoint,
                scopes=scopes,
                resource=resource,
            )
            calls = service.offline_calls
            if len(calls) >= _MAX_OFFLINE_CALLS:
                calls.clear()  # bounded; refilled by the next calls
            calls[memo_key] = call
            return await self._read_offline(call, rejected_access_token)
        return await self._service.refresher.access_token(
            key,
            client=await self._refresh_client(key, client, method),
            token_endpoint=token_endpoint,
            scopes=scopes,
            rejected=rejected_access_token,
            allow=self._stored_scopes_check(
                "oauth.get_offline_token",
                owner,
                client_id,
                authorization_endpoint,
                token_endpoint,
                scopes,
                provider.issuer,
                resource,
            ),
        )

    # --- the MCP authorization broker (docs/mcp.md) ---------------------------------

    def _broker_precheck(
        self,
        action: str,
        owner: str,
        resource: Optional[str],
        scopes: tuple[str, ...],
        explicit: tuple[Optional[str], ...],
        issuer: Optional[str] = None,
        endpoints: tuple[Optional[str], Optional[str]] = (None, None),
    ) -> str:
        """Check a brokered call's arguments, and that some rule of our grant could
        allow it once the rest is discovered (audited and raised when none can:
        a denied caller makes the server fetch nothing). Returns the resource."""
        if resource is None:
            raise InvalidInput("client_id is required unless resource is given")
        if any(value is not None for value in explicit):
            raise InvalidInput(
                "with resource and no client_id the server discovers the provider and "
                "registers its own client: leave out issuer, the endpoints, client_secret "
                "and client_auth_method (or give client_id for the explicit flow)"
            )
        check_id(owner, "from participant")
        maybe = check_oauth_request_before_discovery(
            self._participant.grant,
            target=owner,
            client_id=None,
            issuer=issuer,
            authorization_endpoint=endpoints[0],
            token_endpoint=endpoints[1],
            scopes=scopes,
            resource=resource,
            brokered=True,
        )
        self._refuse_before_discovery(
            maybe,
            action,
            (
                ("target", owner),
                ("client_id", ""),
                ("token_endpoint", endpoints[1] or issuer or resource),
                ("scopes", " ".join(scopes)),
                ("resource", resource),
            ),
        )
        return resource

    def _refuse_before_discovery(
        self, decision: GrantDecision, action: str, details: AuditDetails
    ) -> None:
        """Audit and raise ``decision`` (made before anything is discovered) if it is
        a denial: a denied caller must make the server fetch nothing. An allowing
        decision is not final, so it is not audited here; the full check after
        discovery is."""
        if decision.allowed:
            return
        service = self._service
        authorize(
            decision,
            sink=service.audit,
            action=action,
            room=service.room,
            actor=self.participant_id,
            at=service.clock(),
            details=details,
        )

    async def _brokered_request(
        self,
        *,
        owner: str,
        resource: Optional[str],
        redirect_uri: str,
        scopes: tuple[str, ...],
        timeout: float,
        no_pkce: bool,
        delegate_to: Optional[str],
        explicit: tuple[Optional[str], ...],
        rejected: Optional[str] = None,
    ) -> str:
        action = "oauth.request_token"
        resource = self._broker_precheck(action, owner, resource, scopes, explicit)
        service = self._service
        check_url(redirect_uri, "redirect_uri")
        check_redirect_uri(redirect_uri, allow_insecure_http=service.allow_insecure_http)
        timeout = check_timeout(timeout)
        if check_flag(no_pkce, "no_pkce"):
            # The server's own client always uses PKCE (the MCP authorization spec
            # requires it): an agent cannot turn it off to take the code elsewhere.
            raise InvalidInput("no_pkce is not allowed with resource and no client_id")
        if delegate_to is not None:
            check_id(delegate_to, "delegate_to")
        delegate = self.participant_id if delegate_to is None else delegate_to
        # RFC 9728: who protects the resource; RFC 8414: that server's endpoints.
        protected = await service.broker.resource_metadata(resource)
        issuer = protected.authorization_servers[0]
        metadata = await service.provider_metadata(issuer, endpoints_given=False)
        assert metadata is not None  # endpoints_given=False: a failure raises
        authorization_endpoint, token_endpoint = resolve_endpoints(
            issuer=issuer, metadata=metadata, authorization_endpoint=None, token_endpoint=None
        )
        # With the provider known, before registering anything there.
        self._broker_precheck(
            action, owner, resource, scopes, (), issuer, (authorization_endpoint, token_endpoint)
        )
        if not scopes and protected.scopes_supported:
            # The caller named none: the ones the resource says it understands.
            scopes = check_scopes(list(protected.scopes_supported))
        # Registered for every scope the resource names (when it names some), not the
        # first caller's: the one registration serves every agent and room.
        register_for = protected.scopes_supported or scopes
        registration = await service.broker.registration(
            metadata, redirect_uri=redirect_uri, scopes=register_for
        )
        checked = _Provider(
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            issuer=issuer,
            metadata=metadata,
        )
        client_id = registration.client_id
        allow = self._brokered_grant(action, owner, client_id, checked, scopes, resource)
        key = service.credential_key(
            owner=owner,
            requester=self.participant_id,
            client_id=client_id,
            token_endpoint=token_endpoint,
            resource=resource,
            brokered=True,
        )
        if delegate == self.participant_id:
            # Handed back unasked only when delegated to us (see request_oauth_token).
            token = await self._brokered_token(key, scopes, allow)
            if token is not None and token != rejected:
                return token
            # The server may have refused our client just now (invalid_client):
            # the prompt must use the registration that stands now.
            registration = await service.broker.registration(
                metadata, redirect_uri=redirect_uri, scopes=register_for
            )
            if registration.client_id != client_id:
                # A new client: checked like the first, before the person is asked.
                allow = self._brokered_grant(
                    action, owner, registration.client_id, checked, scopes, resource
                )
        return await self._ask_person(
            owner=owner,
            delegate=delegate,
            client=registration.client,
            provider=checked,
            scopes=scopes,
            redirect_uri=redirect_uri,
            timeout=timeout,
            no_pkce=no_pkce,
            allow=allow,
            resource=resource,
            resource_name=protected.resource_name,
            brokered=True,
        )

    def _brokered_grant(
        self,
        action: str,
        owner: str,
        client_id: str,
        provider: _Provider,
        scopes: tuple[str, ...],
        resource: str,
    ) -> Callable[[tuple[str, ...]], None]:
        """Check a brokered call against our grant with the client the server registered
        (audited; raises on denial); return the check the credential's scopes pass."""
        self._service.check_oauth(
            requester=self.participant_id,
            action=action,
            target=owner,
            client_id=client_id,
            authorization_endpoint=provider.authorization_endpoint,
            token_endpoint=provider.token_endpoint,
            scopes=scopes,
            issuer=provider.issuer,
            resource=resource,
            brokered=True,
        )
        return self._stored_scopes_check(
            action, owner, client_id, provider.authorization_endpoint,
            provider.token_endpoint, scopes, provider.issuer, resource, brokered=True,
        )

    async def _brokered_offline(
        self,
        *,
        owner: str,
        resource: Optional[str],
        scopes: tuple[str, ...],
        delegated_to: Optional[str],
        explicit: tuple[Optional[str], ...],
        rejected: Optional[str] = None,
    ) -> Optional[str]:
        action = "oauth.get_offline_token"
        resource = self._broker_precheck(action, owner, resource, scopes, explicit)
        service = self._service
        key = service.credential_key(
            owner=owner,
            requester=self.participant_id if delegated_to is None else delegated_to,
            client_id="",
            token_endpoint="",
            resource=resource,
            brokered=True,
        )
        _, stored = await service.refresher.load(key)
        if stored is None or not stored.brokered:
            return None  # nothing fetched: there is nothing to refresh
        # The grant is checked against the provider the credential came from.
        came_from = _Provider(
            authorization_endpoint=stored.authorization_endpoint,
            token_endpoint=stored.token_endpoint,
            issuer=stored.issuer,
            metadata=None,
        )
        allow = self._brokered_grant(action, owner, stored.client_id, came_from, scopes, resource)
        return await self._brokered_token(key, scopes, allow, rejected)

    async def _brokered_token(
        self,
        key: SecretKey,
        scopes: tuple[str, ...],
        allow: Callable[[tuple[str, ...]], None],
        rejected: Optional[str] = None,
    ) -> Optional[str]:
        """The token of the brokered credential at ``key`` (refreshed if needed), or None.

        It refreshes as the client it was issued to (kept with it), whatever the
        server registered since. A server that no longer knows that client
        (``invalid_client``) loses our registration: the next request registers
        again and asks the person."""
        service = self._service
        before, stored = await service.refresher.load(key)
        if before is None or stored is None or not stored.brokered:
            return None
        client = ClientCredentials(
            client_id=stored.client_id,
            client_secret=stored.client_secret,
            method=stored.client_auth_method,
        )
        try:
            return await service.refresher.access_token(
                key, client=client, token_endpoint=stored.token_endpoint, scopes=scopes,
                allow=allow, rejected=rejected,
            )
        except InvalidClient:
            # The server no longer knows the client the credential was issued to: its
            # refresh token is dead too. Drop both (each only if unchanged meanwhile),
            # so the next request registers again and asks the person.
            if stored.issuer is not None:
                await service.broker.forget_registration(stored.issuer, stored.client_id)
            # Only the credential refused, not a newer one stored meanwhile.
            with contextlib.suppress(VersionConflict):
                await service.store.delete(key, expected_version=before.version)
            return None

    async def provide_oauth_authorization(
        self,
        *,
        request_id: str,
        code: str,
        state: Optional[str] = None,
        iss: Optional[str] = None,
    ) -> None:
        """Answer a prompt addressed to us with the provider's authorization ``code``.

        The code is redeemed at once and the credential stored as our secret,
        delegated to the requester, whose ``request_oauth_token`` then returns.
        ``state``, when given, must match the prompt's (compared in constant time).
        ``iss`` is the redirect's ``iss`` parameter (RFC 9207): when the request
        was made with an issuer that promises to send it, it is required and
        must equal that issuer; when the issuer made no promise, a given ``iss``
        must still equal it; without an issuer it is ignored.

        Raises: UnknownRequest (no such open request), NotAddressedToYou,
        IllegalTransition (already answered), StateMismatch, IssuerMismatch,
        InvalidInput (a malformed code, state or iss: the request stays open for
        the right one), or the exchange's error (which the requester gets too).
        """
        self._check_connected()
        check_vschar(request_id, "request_id", limit=MAX_REQUEST_ID)
        check_vschar(code, "code", limit=MAX_CODE)
        if state is not None:
            check_vschar(state, "state", limit=MAX_STATE)
        if iss is not None:
            check_url(iss, "iss")
        await self._service.provide(
            by=self.participant_id, request_id=request_id, code=code, state=state, iss=iss
        )

    async def reject_oauth_authorization(self, *, request_id: str, error: str) -> None:
        """Refuse a prompt addressed to us; the requester gets RequestRejected(error).

        ``error`` is a short reason such as ``"user_cancelled"``; it is reduced to
        64 RFC 6749 §5.2 characters before the requester sees it.
        """
        self._reject(request_id, error, kind="oauth")

    def oauth_prompts(self) -> AsyncIterator[OAuthPrompt]:
        """OAuth prompts addressed to us: every open one since ``connect()``, then new
        ones as they arrive; prompts that ended are skipped. Ends when we close.

            async for prompt in alice.oauth_prompts():
                show(prompt.authorization_url)
        """
        self._check_connected()
        return _only_oauth(self._service.prompts(self.participant_id))

    def prompts(self) -> AsyncIterator[Prompt]:
        """Every prompt addressed to us, OAuth approvals (:class:`OAuthPrompt`) and
        secrets to type in (:class:`SecretPrompt`), as ``oauth_prompts`` yields them."""
        self._check_connected()
        return self._service.prompts(self.participant_id)

    # --- asking a person for a secret ---------------------------------------------

    async def request_secret(
        self,
        *,
        url: str,
        type: str,
        from_participant_id: str,
        timeout: float = 300,
        delegate_to: Optional[str] = None,
    ) -> bytes:
        """A secret of ``from_participant_id``'s for ``url`` (an API key, say), of MIME
        ``type``, asking them to type it in if needed.

        Checks our grant's secret rules first (:class:`~.grants.SecretRule`). The
        answer is stored as the person's secret, id
        :func:`~.secret_requests.requested_secret_id` ``(url, type)`` and named by
        the URL, delegated to ``delegate_to`` (us unless given). When that secret
        is already stored delegated to us, it comes back with no prompt (one
        delegated to someone else is never handed back unasked). Otherwise the person gets
        a :class:`SecretPrompt` and we wait up to ``timeout`` seconds for
        ``provide_secret``.

        Raises: GrantDenied, ParticipantNotConnected (the person is not here),
        RequestRejected, RequestTimedOut, RequestCancelled, TooManyPendingRequests,
        QuotaExceeded (the person's secrets have no room for it), InvalidInput.
        """
        self._check_connected()
        check_id(from_participant_id, "from participant")
        check_text(url, "url", limit=MAX_URL)
        if "/" not in check_text(type, "type", limit=MAX_TYPE):
            raise InvalidInput("type must be a MIME type such as 'text/plain'")
        if delegate_to is not None:
            check_id(delegate_to, "delegate_to")
        timeout = check_timeout(timeout)
        service = self._service
        key = SecretKey(
            room=service.room,
            owner=from_participant_id,
            secret_id=requested_secret_id(url, type),
            delegated_to=self.participant_id if delegate_to is None else delegate_to,
        )
        authorize(
            check_secret_request(
                self._participant.grant, target=from_participant_id, url=url, type=type
            ),
            sink=service.audit,
            action="secret.request",
            room=service.room,
            actor=self.participant_id,
            at=service.clock(),
            details=(("target", from_participant_id), ("secret_id", key.secret_id)),
        )
        # Handed back unasked only when it is delegated to us: a secret the person
        # gave someone else is theirs to give again, so naming that delegate asks.
        if key.delegated_to == self.participant_id:
            stored = await service.store.get(key)
            if stored is not None and stored.type == type:
                return stored.data
        # The person is not asked for a secret their store has no room for.
        await service.check_quota(key, size=0)
        return await service.request_secret(
            requester=self.participant_id,
            target=from_participant_id,
            key=key,
            url=url,
            type=type,
            name=requested_secret_name(url),
            timeout=timeout,
        )

    async def provide_secret(self, *, request_id: str, data: bytes) -> None:
        """Answer a :class:`SecretPrompt` addressed to us with the secret's bytes: they
        are stored as our secret (delegated as the prompt says) and handed to the
        requester. Raises UnknownRequest when no secret request with that id is open
        for us, QuotaExceeded when our secrets have no room for it (the request stays
        open), InvalidInput."""
        self._check_connected()
        check_vschar(request_id, "request_id", limit=MAX_REQUEST_ID)
        check_bytes(data, "data")
        await self._service.provide_secret(
            by=self.participant_id, request_id=request_id, data=bytes(data)
        )

    async def reject_secret(self, *, request_id: str, error: str) -> None:
        """Refuse a :class:`SecretPrompt` addressed to us; the requester gets
        RequestRejected(error). ``error`` is a short reason such as ``"user_cancelled"``."""
        self._reject(request_id, error, kind="secret")

    def _reject(self, request_id: object, error: object, *, kind: str) -> None:
        """Refuse open request ``request_id`` of ``kind`` addressed to us, once the
        arguments are checked (``error`` is reduced to 64 RFC 6749 §5.2 characters
        before the requester sees it)."""
        self._check_connected()
        check_vschar(request_id, "request_id", limit=MAX_REQUEST_ID)
        check_text(error, "error", limit=MAX_ERROR)
        if safe_text(str(error), 64) is None:
            raise InvalidInput("error must hold printable ASCII (RFC 6749 §5.2)")
        self._service.reject(
            by=self.participant_id, request_id=str(request_id), error=str(error), kind=kind
        )

    async def delete_requested_secret(
        self, *, url: str, type: str, delegated_to: Optional[str] = None
    ) -> DeletedSecret:
        """Delete our secret that ``request_secret(url=url, type=type)`` stored, delegated
        to ``delegated_to``; raises SecretNotFound (naming the delegates we do hold it
        for) when there is none."""
        check_text(url, "url", limit=MAX_URL)
        check_text(type, "type", limit=MAX_TYPE)
        return await self.delete_secret(
            id=requested_secret_id(url, type), delegated_to=delegated_to, type=type
        )

    # --- our own secrets -----------------------------------------------------------

    def _own_key(self, action: str, secret_id: object, delegated_to: object) -> SecretKey:
        """Where our secret lives, once our grant lets us manage our own secrets
        (checked and audited; raises if not)."""
        key = self._own_key_unchecked(secret_id, delegated_to)
        self._authorize_own(action, key)
        return key

    def _own_key_unchecked(self, secret_id: object, delegated_to: object) -> SecretKey:
        """Where our secret ``secret_id`` lives; the arguments checked, the grant not yet."""
        self._check_connected()
        check_id(secret_id, "secret id")
        if delegated_to is not None:
            check_id(delegated_to, "delegated_to")
        return SecretKey(
            room=self._service.room,
            owner=self.participant_id,
            secret_id=str(secret_id),
            delegated_to=None if delegated_to is None else str(delegated_to),
        )

    def _authorize_own(self, action: str, key: SecretKey) -> None:
        """Audit whether our grant lets us manage our own secrets; raise if not."""
        service = self._service
        authorize(
            check_manage_own_secrets(self._participant.grant),
            sink=service.audit,
            action=action,
            room=service.room,
            actor=self.participant_id,
            at=service.clock(),
            details=(("secret_id", key.secret_id),),
        )

    async def list_user_secrets(self) -> list[SecretInfo]:
        """Our own secrets in this room, OAuth credentials included."""
        self._check_connected()
        service = self._service
        authorize(
            check_manage_own_secrets(self._participant.grant),
            sink=service.audit,
            action="secret.list",
            room=service.room,
            actor=self.participant_id,
            at=service.clock(),
        )
        records = await service.store.list(service.room, self.participant_id)
        return [
            SecretInfo(
                id=r.key.secret_id, type=r.type, name=r.name, delegated_to=r.key.delegated_to
            )
            for r in records
        ]

    async def list_delegated_secrets(self) -> list[SecretInfo]:
        """The secrets others in this room delegated to us (``delegated_by`` names
        each owner), OAuth credentials included, ordered by (owner, id).

        Like reading one (``get_secret(delegated_by=...)``), this needs no grant of
        ours: each owner's delegation is the permission. It is audited
        (``secret.list_delegated``). Raises :class:`~.errors.StoreError` when the
        store has no ``list_delegated`` (a custom store written before it existed).
        """
        self._check_connected()
        service = self._service
        lister = getattr(service.store, "list_delegated", None)
        if lister is None:
            raise StoreError(
                f"{type(service.store).__name__} cannot list the secrets delegated to a "
                "participant: it has no list_delegated(room, delegated_to) method"
            )
        service.audit(
            AuditEvent(
                action="secret.list_delegated",
                room=service.room,
                actor=self.participant_id,
                outcome="ok",
                reason="a delegate lists what owners delegated to it",
                at=service.clock(),
            )
        )
        records = await lister(service.room, self.participant_id)
        return [
            SecretInfo(
                id=r.key.secret_id,
                type=r.type,
                name=r.name,
                delegated_to=r.key.delegated_to,
                delegated_by=r.key.owner,
            )
            for r in records
        ]

    async def delete_user_secret(self, *, id: str, delegated_to: Optional[str] = None) -> None:
        """Delete our secret ``id`` (delegated to ``delegated_to``).

        Raises :class:`~.errors.SecretNotFound` when we have no such secret (the
        message names the ``delegated_to`` under which we hold that id, if any);
        nothing changes. An OAuth credential is then revoked at its provider
        (RFC 7009), with a bounded wait; what happened there is in the audit
        event, and :meth:`delete_secret` returns it. A failed revocation does not
        undo or fail the delete.
        """
        await self.delete_secret(id=id, delegated_to=delegated_to)

    async def delete_secret(
        self, *, id: str, delegated_to: Optional[str] = None, type: Optional[str] = None
    ) -> DeletedSecret:
        """:meth:`delete_user_secret`, returning what happened (:class:`~.api.DeletedSecret`).

        With ``type``, only a secret of that type is deleted (``"oauth_token"``:
        OAuth credentials only); another raises :class:`~.errors.WrongSecretType`
        and deletes nothing.
        """
        if type is not None:
            check_text(type, "type", limit=MAX_TYPE)
        key = self._own_key("secret.manage", id, delegated_to)
        return await self._service.delete_secret(
            key, actor=self.participant_id, expected_type=type
        )

    async def set_secret(
        self,
        *,
        secret_id: str,
        data: bytes,
        type: str = "application/octet-stream",
        name: Optional[str] = None,
        delegated_to: Optional[str] = None,
    ) -> None:
        """Store ``data`` as our secret ``secret_id`` (replacing any previous value).

        ``data`` is at most 61 KiB (``MAX_SECRET_BYTES``); ``type`` a MIME type such
        as ``"text/plain"``. Raises QuotaExceeded past the room's limits on what one
        participant may store (nothing changes).
        """
        data = check_bytes(data, "data")
        if "/" not in check_text(type, "type", limit=MAX_TYPE):
            raise InvalidInput("type must be a MIME type such as 'text/plain'")
        check_name(name, "name")
        key = self._own_key_unchecked(secret_id, delegated_to)
        # Everything is checked before "allowed" is audited: a denial first (no store
        # read for a participant who may not manage secrets), then the quota.
        if not check_manage_own_secrets(self._participant.grant).allowed:
            self._authorize_own("secret.manage", key)  # audits the denial and raises
        await self._service.check_quota(key, size=len(data))
        self._authorize_own("secret.manage", key)
        await self._service.store.put(key, type=type, name=name, data=data)

    async def get_secret(
        self,
        *,
        secret_id: str,
        delegated_to: Optional[str] = None,
        delegated_by: Optional[str] = None,
    ) -> Optional[bytes]:
        """A secret's bytes, or None: our own ``secret_id`` (delegated to
        ``delegated_to``), or with ``delegated_by``, the one that participant stored
        and delegated to us (``set_secret(..., delegated_to=<us>)``).

        Reading a secret delegated to us needs no grant of ours: the owner's delegation
        is the permission. It is audited (``secret.read_delegated``). Only that exact
        secret is reachable: the owner's other secrets and those delegated to others
        are not. OAuth credentials are not returned here (use
        ``get_offline_oauth_token``). Raises InvalidInput when both ``delegated_to``
        and ``delegated_by`` are given.
        """
        if delegated_by is None:
            key = self._own_key("secret.manage", secret_id, delegated_to)
        else:
            self._check_connected()
            check_id(secret_id, "secret id")
            check_id(delegated_by, "delegated_by")
            if delegated_to is not None:
                raise InvalidInput(
                    "give delegated_to (our own secret, delegated to someone) or "
                    "delegated_by (a secret someone delegated to us), not both"
                )
            service = self._service
            key = SecretKey(
                room=service.room,
                owner=delegated_by,
                secret_id=secret_id,
                delegated_to=self.participant_id,
            )
            service.audit(
                AuditEvent(
                    action="secret.read_delegated",
                    room=service.room,
                    actor=self.participant_id,
                    outcome="ok",
                    reason="the owner delegated this secret to the reader",
                    at=service.clock(),
                    details=(("owner", delegated_by), ("secret_id", secret_id)),
                )
            )
        record = await self._service.store.get(key)
        if record is None or record.type == OAUTH_TOKEN_TYPE:
            return None
        return record.data


if TYPE_CHECKING:
    # mypy proves the in-process client offers the whole public API.
    def _conforms(client: SecretsClient) -> SecretsAPI:
        return client


async def _only_oauth(prompts: AsyncIterator[Prompt]) -> AsyncIterator[OAuthPrompt]:
    """``prompts`` without the secret prompts (what ``oauth_prompts`` promises)."""
    async for prompt in prompts:
        if isinstance(prompt, OAuthPrompt):
            yield prompt
