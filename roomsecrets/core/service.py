"""``SecretsService``: the room's secrets, pending requests and refreshes, in one process.

The service owns the shared state (store, pending registry, connected
participants, refresher); each participant talks to it through the
:class:`~.client.SecretsClient` that :meth:`SecretsService.connect` returns.
The pure pieces (grants, the pending-request table, token requests and
responses) decide; this layer does the awaiting, through injected ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from heapq import heapify, heappop, heappush
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import urlsplit

from .api import DeletedSecret, OAuthPrompt, Prompt, SecretInfo, SecretPrompt
from .audit import AuditEvent, AuditSink, null_audit_sink
from .broker import ResourceBroker
from .client import SecretsClient
from .credentials import (
    OAUTH_TOKEN_TYPE,
    StoredCredential,
    brokered_credential_id,
    credential_secret_id,
)
from .errors import (
    InvalidClient,
    InvalidInput,
    OAuthError,
    ParticipantNotConnected,
    ProviderError,
    ProviderMetadataNotFound,
    ProviderTimeout,
    QuotaExceeded,
    RequestCancelled,
    RequestRejected,
    RequestTimedOut,
    ResponseTooLarge,
    RoomSecretsError,
    SecretNotFound,
    UnknownRequest,
    VersionConflict,
    WrongSecretType,
)
from .grants import (
    GrantDecision,
    SecretsGrant,
    authorize,
    check_answer_prompt,
    check_oauth_request,
)
from .inputs import (
    MAX_CLIENT_ID,
    check_id,
    check_name,
    check_not_reserved,
    check_url,
    check_vschar,
)
from .oauth.authorization import build_authorization_url
from .oauth.discovery import (
    MAX_METADATA_BYTES,
    MetadataCache,
    ProviderMetadata,
    build_metadata_request,
    check_issuer,
    metadata_urls,
    parse_metadata_response,
)
from .oauth.endpoints import check_endpoint
from .oauth.pkce import generate_pkce_pair, s256_challenge
from .oauth.retry import RetryPolicy
from .oauth.revocation import (
    MAX_REVOCATION_RESPONSE_BYTES,
    check_revocation_response,
    revocation_request_for,
)
from .oauth.scopes import join_scopes
from .oauth.token_endpoint import TokenEndpointClient
from .oauth.token_request import ClientAuthMethod, ClientCredentials
from .oauth.tokens import TokenSet
from .participants import Participant, ParticipantInfo
from .pending.registry import (
    Cancelled,
    Completed,
    Expired,
    Failed,
    Outcome,
    PendingRegistry,
    PendingRequest,
    Rejected,
)
from .ports import Clock, HttpTransport, SecretKey, SecretStore
from .refresh import CredentialRefresher
from .values import exact_strings, frozen_value

__all__ = ["OAuthPrompt", "SecretInfo", "SecretsService"]

_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")

_MAX_REMEMBERED_DECISIONS = 1024
#: Compare-and-swap tries of a delete racing a refresh before it deletes unconditionally.
_DELETE_ATTEMPTS = 3
#: Beyond the transport's own timeout, how long a revocation may take before the
#: delete stops waiting for it (a transport that ignores its timeout).
_REVOCATION_GRACE = 1.0

_log = logging.getLogger("roomsecrets.service")

#: What a client authenticates with when nobody says otherwise (RFC 6749 §2.3.1:
#: servers MUST support Basic); a credential records only other methods.
_DEFAULT_METHODS = frozenset({ClientAuthMethod.NONE, ClientAuthMethod.CLIENT_SECRET_BASIC})


class _OpenRequest:
    """What the service keeps for one open pending request beyond the registry's entry:
    the requester's wait, and what the exchange stores beyond the token endpoint's answer.

    It is also the item of the service's deadline heap (ordered by ``due``), which
    may hold it after the request ended (lazy deletion, see
    ``SecretsService._watch``): :meth:`end` then lets go of the outcome (it holds
    the tokens) and of the participant.
    """

    # Slots: one per open request (benchmarks/bench_pending.py counts its bytes).
    __slots__ = (
        "allow",
        "asked",
        "brokered",
        "client_auth_method",
        "deadline",
        "delegate_to",
        "due",
        "issuer",
        "outcome",
        "resource",
        "revocation_endpoint",
        "target",
    )

    def __init__(
        self,
        *,
        due: float,
        deadline: float,
        outcome: asyncio.Future[Outcome[TokenSet]],
        target: Participant,
        issuer: Optional[str],
        revocation_endpoint: Optional[str],
        client_auth_method: Optional[ClientAuthMethod],
        allow: Optional[Callable[[tuple[str, ...]], None]],
        asked: Optional[set[str]],
        delegate_to: Optional[str] = None,
        resource: Optional[str] = None,
        brokered: bool = False,
    ) -> None:
        #: When the wait gives up, on the event loop's monotonic clock.
        self.due = due
        #: The request's deadline on the service's clock.
        self.deadline = deadline
        #: Resolved with the request's one outcome; None once the request ended.
        self.outcome: Optional[asyncio.Future[Outcome[TokenSet]]] = outcome
        #: Whose prompt list holds the request's prompt; None once the request ended.
        self.target: Optional[Participant] = target
        self.issuer = issuer
        self.revocation_endpoint = revocation_endpoint
        #: None: the default for the client (``client_secret_basic`` with a secret).
        self.client_auth_method = client_auth_method
        #: Raises unless the requester's grant allows the scopes the provider granted.
        self.allow = allow
        #: The open request ids of the session that asked (closing it cancels them).
        self.asked = asked
        #: Whom the credential is delegated to; None: the requester.
        self.delegate_to = delegate_to
        #: The RFC 8707 resource the token is for (None: the request named none).
        self.resource = resource
        #: True when the client is the server's own registration (the MCP broker).
        self.brokered = brokered

    def end(self) -> None:
        self.outcome = self.target = self.asked = None

    def __lt__(self, other: _OpenRequest) -> bool:
        # Heap order. The object itself is the heap item: no (due, id) tuple.
        return self.due < other.due


#: The client id a secret request's registry entry carries (see ``request_secret``).
SECRET_REQUEST_CLIENT = "roomsecrets:request_secret"


@frozen_value
class _SecretAsk:
    """What an open secret request stores when the person answers."""

    key: SecretKey
    type: str
    name: str


def _authorization_url(
    request: PendingRequest, *, resource: Optional[str], allow_insecure_http: bool
) -> str:
    """The authorization URL of ``request`` (RFC 6749 §4.1.1), built from its fields.

    The challenge is derived again from the verifier (RFC 7636 §4.2), so nothing
    but the request is needed: the registry keeps this builder, not the URL.
    """
    verifier = request.code_verifier
    return build_authorization_url(
        authorization_endpoint=request.authorization_endpoint,
        client_id=request.client_id,
        redirect_uri=request.redirect_uri,
        state=request.oauth_state,
        scopes=request.scopes,
        code_challenge=None if verifier is None else s256_challenge(verifier),
        allow_insecure_http=allow_insecure_http,
        # RFC 8707 §2.1: the resource the token is for.
        extra_params=None if resource is None else {"resource": resource},
    )


def _remember(memo: dict[_K, _V], key: _K, value: _V) -> None:
    """Put ``key`` in a bounded memo; a full memo starts afresh (no eviction order)."""
    if len(memo) >= _MAX_REMEMBERED_DECISIONS:
        memo.clear()
    memo[key] = value


_default_url_builder = functools.partial(
    _authorization_url, resource=None, allow_insecure_http=False
)


def _secret_request_url(request: PendingRequest) -> str:
    """A secret request's "authorization URL": the page that asks for the secret."""
    return request.authorization_endpoint


class SecretsService:
    """The secrets of one room.

    >>> from roomsecrets import MemoryStore, SecretsGrant
    >>> service = SecretsService(store=MemoryStore(), room="myroom")
    >>> agent = service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())

    Args:
        store: where secrets live (``MemoryStore``, ``FileSecretStore``, ...).
        room: the room's name; secrets are scoped to it.
        transport: how token requests are sent (default: urllib in a worker thread).
        clock: seconds since the epoch (default ``time.time``).
        audit: receives an :class:`~.audit.AuditEvent` for every grant decision,
            credential refresh and drop.
        refresh_leeway: refresh this long before expiry (capped at half a
            token's lifetime).
        default_lifetime: assumed lifetime when a provider sends no ``expires_in``.
        allow_insecure_http: allow plain-http OAuth endpoints on non-loopback hosts.
        discovery_ttl: how long an issuer's metadata (RFC 8414) is kept.
        discovery_failure_ttl: how long a failed metadata lookup is remembered
            before the issuer is asked again.
        revocation_timeout: how long ``delete_user_secret`` waits for the
            provider's revocation endpoint (RFC 7009) before it gives up on it.
        max_secrets_per_participant: how many secrets (OAuth credentials
            included) one participant may own in this room.
        max_secret_bytes_per_participant: how many bytes of secret data one
            participant may own in this room.
    """

    def __init__(
        self,
        *,
        store: SecretStore,
        room: str,
        transport: Optional[HttpTransport] = None,
        clock: Clock = time.time,
        audit: AuditSink = null_audit_sink,
        token_urlsafe: Callable[[int], str] = secrets.token_urlsafe,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
        refresh_leeway: float = 60.0,
        default_lifetime: Optional[float] = 3600.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable value
        http_timeout: float = 30.0,
        lease_ttl: float = 30.0,
        allow_insecure_http: bool = False,
        max_open_per_requester: int = 16,
        max_open_per_target: int = 32,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        discovery_ttl: float = 3600.0,
        discovery_failure_ttl: float = 5.0,
        revocation_timeout: float = 10.0,
        max_secrets_per_participant: int = 256,
        max_secret_bytes_per_participant: int = 16 * 1024 * 1024,
    ) -> None:
        if not isinstance(room, str) or not room:
            raise InvalidInput("room must be a non-empty string")
        check_not_reserved(room, "room names")
        if (
            isinstance(revocation_timeout, bool)
            or not isinstance(revocation_timeout, (int, float))
            or not 0 < revocation_timeout < float("inf")
        ):
            raise InvalidInput("revocation_timeout must be a finite number of seconds > 0")
        for limit, name in (
            (max_secrets_per_participant, "max_secrets_per_participant"),
            (max_secret_bytes_per_participant, "max_secret_bytes_per_participant"),
        ):
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise InvalidInput(f"{name} must be a whole number >= 1")
        self.max_secrets_per_participant = max_secrets_per_participant
        self.max_secret_bytes_per_participant = max_secret_bytes_per_participant
        if transport is None:
            from .oauth.urllib_transport import UrllibTransport

            transport = UrllibTransport()
        self._transport = transport
        self._http_timeout = http_timeout
        self._revocation_timeout = float(revocation_timeout)
        #: Each issuer's metadata, fetched through the transport (RFC 8414).
        self.discovery: MetadataCache[ProviderMetadata] = MetadataCache(
            fetch=self._fetch_metadata,
            clock=clock,
            ttl=discovery_ttl,
            failure_ttl=discovery_failure_ttl,
        )
        #: The MCP broker's lookups: resource metadata (RFC 9728, cached like the
        #: issuers') and the server's client registrations (RFC 7591, in the store).
        self.broker = ResourceBroker(
            store=store,
            transport=transport,
            clock=clock,
            http_timeout=http_timeout,
            allow_insecure_http=allow_insecure_http,
            ttl=discovery_ttl,
            failure_ttl=discovery_failure_ttl,
        )
        # The open requests' waits and bindings, by request id; a heap of them by
        # when their waits give up, and the one loop timer for the earliest
        # (see _watch). The registry calls the same waiter for every request.
        self._open: dict[str, _OpenRequest] = {}
        self._dues: list[_OpenRequest] = []
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_loop: Optional[asyncio.AbstractEventLoop] = None
        self._request_ended_waiter = self._request_ended
        #: The open secret requests (request_secret): what to store when answered.
        self._secret_asks: dict[str, _SecretAsk] = {}
        self.room = room
        self.store = store
        self.clock = clock
        self.audit = audit
        self.allow_insecure_http = allow_insecure_http
        self._token_bytes = token_bytes
        self._participants: dict[str, Participant] = {}
        # Keyed by the grant's identity, not its value: hashing a grant hashes every
        # rule on every call. The grant is kept with its decision, so no other
        # object can have its id while the entry exists; an equal grant in another
        # object only misses the memo.
        self._oauth_decisions: dict[object, tuple[SecretsGrant, GrantDecision]] = {}
        # Pure functions of their arguments, remembered (bounded) per argument tuple.
        self._valid_oauth_arguments: dict[tuple[object, ...], bool] = {}
        self._credential_keys: dict[tuple[object, ...], SecretKey] = {}
        #: What a get_offline_oauth_token call decided before reading the store, per
        #: argument tuple (see SecretsClient); shared with every session.
        self.offline_calls: dict[tuple[object, ...], Any] = {}
        # Outcomes are TokenSets for OAuth requests and bytes for secret requests.
        self.registry: PendingRegistry[Any] = PendingRegistry(
            clock=clock,
            token_urlsafe=token_urlsafe,
            max_open_per_requester=max_open_per_requester,
            max_open_per_target=max_open_per_target,
        )
        self.token_endpoint = TokenEndpointClient(
            transport=transport,
            clock=clock,
            retry=retry,
            timeout=http_timeout,
            default_lifetime=default_lifetime,
            allow_insecure_http=allow_insecure_http,
            sleep=sleep,
        )
        self.refresher = CredentialRefresher(
            store=store,
            token_endpoint=self.token_endpoint,
            clock=clock,
            holder=token_urlsafe(16),
            audit=audit,
            leeway=refresh_leeway,
            lease_ttl=lease_ttl,
            sleep=sleep,
        )

    @property
    def idle(self) -> bool:
        """True when dropping this service loses nothing but caches: nobody is
        connected, no request is open, no refresh runs and no rotated credential
        waits to be saved. A host with many rooms may then let it go and make a
        new one on the room's next use (the store keeps every secret)."""
        return not self._participants and len(self.registry) == 0 and not self.refresher.busy

    # --- participants ------------------------------------------------------------

    def connect(
        self,
        participant_id: str,
        *,
        name: Optional[str] = None,
        grant: Optional[SecretsGrant] = None,
    ) -> SecretsClient:
        """Join the room as ``participant_id``; returns the participant's client.

        ``grant`` defaults to ``SecretsGrant()``: manage one's own secrets and
        answer one's own prompts, ask nobody for tokens. Raises
        :class:`~.errors.InvalidInput` if the id is already connected.
        """
        check_not_reserved(check_id(participant_id, "participant_id"), "participant ids")
        check_name(name, "name")
        if participant_id in self._participants:
            raise InvalidInput(f"participant {participant_id!r} is already connected")
        if grant is None:
            grant = SecretsGrant()
        if not isinstance(grant, SecretsGrant):
            raise InvalidInput("grant must be a SecretsGrant")
        participant = Participant(participant_id, name, grant)
        self._participants[participant_id] = participant
        return SecretsClient(self, participant)

    def session(
        self,
        participant_id: str,
        *,
        name: Optional[str] = None,
        grant: Optional[SecretsGrant] = None,
    ) -> SecretsClient:
        """Act as ``participant_id`` with ``grant`` without connecting it.

        For a server that runs one call for a participant it authenticated (an
        agent calling over HTTP needs no open connection). The session's client
        has every method of a connected one, checked against ``grant`` (default
        ``SecretsGrant()``), but the participant is not *connected*: no prompt
        can be addressed to it, ``is_connected`` does not count it, and its
        ``oauth_prompts()`` raises ParticipantNotConnected. Any number of
        sessions of one id may exist at once, with or without a connection of
        that id; answers given through a session remove the prompt from the
        connected participant's list.

        ``close()`` ends the session: requests it made and is still waiting for
        end with :class:`~.errors.RequestCancelled`. When the connected
        participant of the same id leaves, requests made through its sessions
        end too (the participant left the room). Raises InvalidInput for a bad
        id, name or grant.
        """
        check_not_reserved(check_id(participant_id, "participant_id"), "participant ids")
        check_name(name, "name")
        if grant is None:
            grant = SecretsGrant()
        if not isinstance(grant, SecretsGrant):
            raise InvalidInput("grant must be a SecretsGrant")
        participant = Participant(participant_id, name, grant)
        return SecretsClient(_Session(self, participant), participant)

    def connected_participants(self) -> list[ParticipantInfo]:
        """The connected participants (not sessions), in the order they connected."""
        return [
            ParticipantInfo(id=p.participant_id, name=p.name) for p in self._participants.values()
        ]

    def is_connected(self, participant_id: str) -> bool:
        """True while ``participant_id`` is connected."""
        return participant_id in self._participants

    def participant(self, participant_id: str) -> Participant:
        found = self._participants.get(participant_id)
        if found is None:
            raise ParticipantNotConnected(f"participant {participant_id!r} is not connected")
        return found

    def disconnect(self, participant_id: str) -> None:
        """``participant_id`` leaves: its pending requests, both ways, end at once."""
        found = self._participants.pop(participant_id, None)
        if found is None:
            return
        found.closed = True
        found.changed()
        self.registry.participant_left(participant_id)

    async def check_quota(self, key: SecretKey, *, size: int) -> None:
        """Raise :class:`~.errors.QuotaExceeded` (nothing changes) unless ``key``'s owner
        may hold a secret of ``size`` bytes at ``key``: at most
        ``max_secrets_per_participant`` secrets and ``max_secret_bytes_per_participant``
        bytes of data in this room. A secret already at ``key`` is replaced, so it
        does not count; replacing within the limits always works.

        Concurrent writes of one owner may each pass before either is stored, so
        the limits can be passed by the writes in flight: they bound what one
        participant can store, not to the byte.
        """
        others = [
            r for r in await self.store.list(key.room, key.owner) if r.key != key
        ]
        if len(others) + 1 > self.max_secrets_per_participant:
            raise QuotaExceeded(
                f"{key.owner!r} already has {len(others)} secrets in this room, the most "
                f"one participant may have ({self.max_secrets_per_participant}); delete one "
                "first"
            )
        held = sum(len(r.data) for r in others)
        if held + size > self.max_secret_bytes_per_participant:
            raise QuotaExceeded(
                f"{key.owner!r} would hold {held + size} bytes of secrets in this room, over "
                f"the {self.max_secret_bytes_per_participant}-byte limit per participant; "
                "delete some first"
            )

    # --- the OAuth flow ----------------------------------------------------------

    def credential_key(
        self,
        *,
        owner: str,
        requester: str,
        client_id: str,
        token_endpoint: str,
        resource: Optional[str] = None,
        brokered: bool = False,
    ) -> SecretKey:
        """Where ``owner``'s credential for ``client_id`` at ``token_endpoint`` (for
        ``resource``, RFC 8707), delegated to ``requester``, is stored. A brokered
        credential (the server's own client) is found by its resource alone.

        A pure function of its arguments (a hash and a key), remembered per
        argument tuple of exact strings: an agent asks for the same one each call.
        """
        memo_key = (owner, requester, client_id, token_endpoint, resource, brokered)
        exact = exact_strings(memo_key[:5])
        if exact:
            found = self._credential_keys.get(memo_key)
            if found is not None:
                return found
        if brokered:
            assert resource is not None
            secret_id = brokered_credential_id(resource)
        else:
            secret_id = credential_secret_id(client_id, token_endpoint, resource)
        key = SecretKey(room=self.room, owner=owner, secret_id=secret_id, delegated_to=requester)
        if exact:
            _remember(self._credential_keys, memo_key, key)
        return key

    def check_oauth_arguments(
        self,
        owner: object,
        client_id: object,
        issuer: object,
        authorization_endpoint: object,
        token_endpoint: object,
    ) -> None:
        """Check every argument an OAuth call knows before it looks anything up
        (docs/limits.md): a bad one is InvalidInput before any fetch or audit.

        The checks (text, URL, RFC 8414 issuer and endpoint rules) are pure
        functions of the strings and ``allow_insecure_http``, so a tuple of exact
        strings that passed is remembered and passes again without the work.
        """
        memo_key = (
            owner, client_id, issuer, authorization_endpoint, token_endpoint,
            self.allow_insecure_http,
        )
        exact = exact_strings(memo_key[:5])
        if exact and self._valid_oauth_arguments.get(memo_key):
            return
        check_id(owner, "from participant")
        check_vschar(client_id, "client_id", limit=MAX_CLIENT_ID)
        if issuer is not None:
            self.check_issuer(issuer)
        allow_http = self.allow_insecure_http
        for value, name in (
            (authorization_endpoint, "authorization_endpoint"),
            (token_endpoint, "token_endpoint"),
        ):
            if value is not None:
                check_url(value, name)
                check_endpoint(value, what=name, allow_insecure_http=allow_http)
        if exact:
            _remember(self._valid_oauth_arguments, memo_key, True)

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
    ) -> AuditEvent:
        """Validate an OAuth call's arguments, check the grant (audited), raise on
        denial; return the audit event of the decision (an allowed one).

        Validation and the grant decision are pure functions of the arguments
        and the (immutable) grant, so they are remembered per argument tuple;
        the audit event is still sent on every call.
        """
        return self._check_oauth(
            self.participant(requester).grant,
            requester=requester,
            action=action,
            target=target,
            client_id=client_id,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            scopes=scopes,
            issuer=issuer,
            resource=resource,
            brokered=brokered,
        )

    def _check_oauth(
        self,
        grant: SecretsGrant,
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
    ) -> AuditEvent:
        memo_key: object = None
        decision: Optional[GrantDecision] = None
        texts = (target, client_id, issuer, authorization_endpoint, token_endpoint, resource)
        if exact_strings(texts):
            try:
                scope_key = None if scopes is None else (type(scopes), tuple(scopes))
                if scope_key is None or exact_strings(scope_key[1]):
                    memo_key = (id(grant), *texts, scope_key, brokered)
                    found = self._oauth_decisions.get(memo_key)
                    if found is not None:
                        decision = found[1]
            except TypeError:  # unhashable or non-iterable argument: validation rejects it
                memo_key = None
        if decision is None:
            # Bounded and clean before anything is remembered: nothing odd or huge is
            # kept. A remembered tuple of exact strings passed these checks already.
            check_id(target, "from participant")
            check_vschar(client_id, "client_id", limit=MAX_CLIENT_ID)
            check_url(authorization_endpoint, "authorization_endpoint")
            check_url(token_endpoint, "token_endpoint")
            if resource is not None:
                check_url(resource, "resource")
            decision = self._decide_oauth(
                grant,
                target=target,
                client_id=client_id,
                authorization_endpoint=authorization_endpoint,
                token_endpoint=token_endpoint,
                scopes=scopes,
                issuer=issuer,
                resource=resource,
                brokered=brokered,
            )
            if memo_key is not None:
                if len(self._oauth_decisions) >= _MAX_REMEMBERED_DECISIONS:
                    self._oauth_decisions.clear()
                self._oauth_decisions[memo_key] = (grant, decision)
        return authorize(
            decision,
            sink=self.audit,
            action=action,
            room=self.room,
            actor=requester,
            at=self.clock(),
            details=(
                ("target", target),
                ("client_id", client_id),
                ("token_endpoint", token_endpoint),
                ("scopes", " ".join(scopes or ())),
                *((("resource", resource),) if resource is not None else ()),
            ),
        )

    def _decide_oauth(
        self,
        grant: SecretsGrant,
        *,
        target: str,
        client_id: str,
        authorization_endpoint: str,
        token_endpoint: str,
        scopes: Optional[Sequence[str]],
        issuer: Optional[str] = None,
        resource: Optional[str] = None,
        brokered: bool = False,
    ) -> GrantDecision:
        check_endpoint(
            authorization_endpoint,
            what="authorization_endpoint",
            allow_insecure_http=self.allow_insecure_http,
        )
        check_endpoint(
            token_endpoint, what="token_endpoint", allow_insecure_http=self.allow_insecure_http
        )
        join_scopes(scopes)  # validates each scope
        return check_oauth_request(
            grant,
            target=target,
            client_id=client_id,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            scopes=scopes,
            issuer=issuer,
            resource=resource,
            brokered=brokered,
        )

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
    ) -> None:
        """Check (audited; raise GrantDenied) that ``requester``'s grant allows the
        scopes a stored credential carries, before its token is handed out.

        The arguments were checked by :meth:`check_oauth` already; ``scopes`` come
        from the provider, so they are matched as they are, not validated.
        """
        self._check_stored_scopes(
            self.participant(requester).grant,
            requester=requester,
            action=action,
            target=target,
            client_id=client_id,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            scopes=scopes,
            issuer=issuer,
            resource=resource,
            brokered=brokered,
        )

    def _check_stored_scopes(
        self,
        grant: SecretsGrant,
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
    ) -> None:
        authorize(
            check_oauth_request(
                grant,
                target=target,
                client_id=client_id,
                authorization_endpoint=authorization_endpoint,
                token_endpoint=token_endpoint,
                scopes=scopes,
                issuer=issuer,
                resource=resource,
                brokered=brokered,
            ),
            sink=self.audit,
            action=action,
            room=self.room,
            actor=requester,
            at=self.clock(),
            details=(
                ("target", target),
                ("client_id", client_id),
                ("token_endpoint", token_endpoint),
                ("stored_scopes", " ".join(scopes)),
            ),
        )

    # --- the provider's metadata (RFC 8414) ----------------------------------------

    def check_issuer(self, issuer: object) -> str:
        """``issuer`` if it can be an issuer identifier (RFC 8414 §2); InvalidInput otherwise."""
        return check_issuer(issuer, allow_insecure_http=self.allow_insecure_http)

    async def provider_metadata(
        self, issuer: str, *, endpoints_given: bool
    ) -> Optional[ProviderMetadata]:
        """``issuer``'s metadata (cached; see :class:`~.discovery.MetadataCache`).

        With ``endpoints_given`` the caller named both endpoints and the metadata
        only adds the revocation endpoint and the RFC 9207 promise: an issuer
        that publishes none, or cannot be reached, gives None. Metadata that is
        wrong (another issuer, a bad endpoint) raises InvalidProviderMetadata
        either way; without ``endpoints_given`` every failure raises.
        """
        try:
            return await self.discovery.get(issuer)
        except ProviderError as exc:
            if endpoints_given and (isinstance(exc, ProviderMetadataNotFound) or exc.retryable):
                return None
            raise

    async def _fetch_metadata(self, issuer: str) -> ProviderMetadata:
        """GET each well-known URL of ``issuer`` in turn until one has its metadata."""
        urls = metadata_urls(issuer)
        for url in urls:
            response = await self._transport.send(
                build_metadata_request(url), timeout=self._http_timeout, max_body=MAX_METADATA_BYTES
            )
            try:
                return parse_metadata_response(
                    issuer=issuer,
                    status=response.status,
                    headers=response.headers,
                    body=response.body,
                    now=self.clock(),
                    allow_insecure_http=self.allow_insecure_http,
                )
            except ProviderMetadataNotFound:
                continue  # not published here: the next URL may have it
        raise ProviderMetadataNotFound(
            f"the issuer {issuer!r} publishes no metadata at {' or '.join(urls)} "
            "(RFC 8414 §3.1, OpenID Connect Discovery 1.0 §4)"
        )

    def request_token(
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
    ) -> Coroutine[Any, Any, str]:
        """Prompt ``target``; the returned coroutine waits for the answer and
        returns the access token.

        The client checked every argument (``SecretsClient.request_oauth_token``).
        ``issuer`` (when the caller named one) and its ``metadata`` (when it
        publishes some) decide the RFC 9207 check of the answer and where the
        credential is revoked when deleted. The credential is stored delegated to
        ``delegate_to`` (the requester when None).

        Not a coroutine function: the request opens (or its error is raised) at
        the call, and the coroutine returned holds only the wait, so an open
        request keeps one small frame alive rather than this call's locals
        (``benchmarks/bench_pending.py`` counts them).
        """
        # The requester may have left while we looked for a stored credential.
        self.participant(requester)
        request_id, outcome = self._open_request(
            requester=requester,
            target=target,
            client=client,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            scopes=scopes,
            redirect_uri=redirect_uri,
            timeout=timeout,
            no_pkce=no_pkce,
            issuer=issuer,
            metadata=metadata,
            allow=allow,
            delegate_to=delegate_to,
            resource=resource,
            resource_name=resource_name,
            brokered=brokered,
        )
        return self._outcome(request_id, outcome, _token_from)

    def _open_request(
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
        asked: Optional[set[str]] = None,
        delegate_to: Optional[str] = None,
        resource: Optional[str] = None,
        resource_name: Optional[str] = None,
        brokered: bool = False,
    ) -> tuple[str, asyncio.Future[Outcome[TokenSet]]]:
        """Open the request of :meth:`request_token` and prompt ``target``: the
        request id and the future its outcome resolves. Call with the requester
        known to be present, in the event loop the outcome is awaited in.

        ``asked``: a session's set of its open request ids; it holds this one
        until the request ends, so that closing the session can cancel it.
        """
        # Prompts go to connected participants only, never to a session.
        target_participant = self.participant(target)
        verifier: Optional[str] = None
        challenge: Optional[str] = None
        if not no_pkce:
            verifier, challenge = generate_pkce_pair(token_bytes=self._token_bytes)
        loop = asyncio.get_running_loop()
        pending = self.registry.create(
            requester=requester,
            target=target,
            client_id=client.client_id,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            redirect_uri=redirect_uri,
            scopes=tuple(scopes),
            code_verifier=verifier,
            client_secret=client.client_secret,
            timeout=timeout,
            # One shared builder for the common case: the request keeps a
            # reference to it, not its URL (the prompt below holds the URL).
            build_authorization_url=(
                _default_url_builder
                if resource is None and not self.allow_insecure_http
                else functools.partial(
                    _authorization_url,
                    resource=resource,
                    allow_insecure_http=self.allow_insecure_http,
                )
            ),
            waiter=self._request_ended_waiter,
            issuer=issuer,
            # RFC 9207 §2.4: an issuer that promised iss must send it on every answer.
            iss_required=metadata is not None
            and metadata.promises_iss_from(authorization_endpoint),
        )
        outcome: asyncio.Future[Outcome[TokenSet]] = loop.create_future()
        opened = _OpenRequest(
            # The wait gives up after ``timeout`` seconds of loop time, whatever the
            # service's clock does (it may stand still in tests or step back).
            due=loop.time() + timeout,
            deadline=pending.deadline,
            outcome=outcome,
            target=target_participant,
            issuer=issuer,
            revocation_endpoint=(
                None if metadata is None else metadata.revocation_endpoint_for(token_endpoint)
            ),
            # The pending request keeps the id and secret; a method other than the
            # default rides here, so the exchange authenticates as the caller said.
            client_auth_method=(
                None if client.auth_method in _DEFAULT_METHODS else client.auth_method
            ),
            allow=allow,
            asked=asked,
            # None when it is the requester: one reference less per open request.
            delegate_to=None if delegate_to == requester else delegate_to,
            resource=resource,
            brokered=brokered,
        )
        self._open[pending.request_id] = opened
        if asked is not None:
            asked.add(pending.request_id)
        self._watch(opened, loop)
        target_participant.prompts[pending.request_id] = OAuthPrompt(
            request_id=pending.request_id,
            authorization_url=pending.authorization_url,
            state=pending.oauth_state,
            code_challenge=challenge,
            from_participant_id=requester,
            client_id=client.client_id,
            scopes=pending.scopes,
            redirect_uri=redirect_uri,
            expires_at=pending.deadline,
            delegate_to=requester if delegate_to is None else delegate_to,
            resource=resource,
            resource_name=resource_name,
            brokered=brokered,
        )
        target_participant.changed()
        return pending.request_id, outcome

    async def _outcome(
        self,
        request_id: str,
        outcome: asyncio.Future[Outcome[Any]],
        finish: Callable[[Outcome[Any]], _T],
    ) -> _T:
        """Wait for open request ``request_id`` to end; ``finish`` turns its outcome
        into the answer (``_token_from``, ``_secret_from``) or its error."""
        try:
            # No wait_for, no shield: the service's one timer ends the request at
            # its due time (_on_due), which resolves this future; a request that
            # is exchanging then goes on until the exchange ends.
            result = await outcome
        except asyncio.CancelledError:
            # The request may have ended meanwhile (its deadline passed by the
            # wall clock before the monotonic wait fired): nothing to cancel then,
            # and the cancellation must go on regardless.
            with contextlib.suppress(UnknownRequest):
                self.registry.cancel(request_id)
            raise
        return finish(result)

    def _request_ended(self, result: Outcome[TokenSet]) -> None:
        """The registry's waiter, for every request: the request ended with ``result``."""
        self._secret_asks.pop(result.request_id, None)
        opened = self._open.pop(result.request_id, None)
        if opened is None:  # pragma: no cover - every request is in _open until it ends
            return
        outcome, target = opened.outcome, opened.target
        if opened.asked is not None:
            opened.asked.discard(result.request_id)
        opened.end()
        if not self._open:
            # Nothing left to wait for: no timer keeps an idle service alive.
            self._dues.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_loop = None
        if target is not None:
            target.prompts.pop(result.request_id, None)
            target.changed()
        # A future whose loop was closed (with its waiting task) wakes nobody, and
        # setting it would raise into whichever registry call ended the request.
        if outcome is not None and not outcome.done() and not outcome.get_loop().is_closed():
            outcome.set_result(result)

    def _watch(self, opened: _OpenRequest, loop: asyncio.AbstractEventLoop) -> None:
        """Have ``opened``'s wait end at its due time: one loop timer for all requests.

        A request that ends early stays in the heap until it reaches the top
        (lazy deletion); the heap is rebuilt once such items outnumber the open
        requests, so it stays O(open requests) and each rebuild is paid for by the
        requests that ended since the last one.
        """
        dues = self._dues
        if len(dues) > 2 * len(self._open) + 32:
            dues[:] = [item for item in dues if item.outcome is not None]
            heapify(dues)
        heappush(dues, opened)
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set the timer for the earliest due time still waited for (none: no timer)."""
        dues = self._dues
        while dues and dues[0].outcome is None:
            heappop(dues)
        timer = self._timer
        if timer is not None:
            if (
                dues
                and self._timer_loop is loop
                and not timer.cancelled()
                and timer.when() <= dues[0].due
            ):
                return  # it fires first; _on_due arms it again
            timer.cancel()
            self._timer = self._timer_loop = None
        if dues:
            due = dues[0].due
            self._timer = loop.call_at(due, self._on_due, due)
            self._timer_loop = loop

    def _on_due(self, when: float) -> None:
        """The timer set for ``when`` fired: end every wait that is due, each as of
        its request's deadline."""
        loop = asyncio.get_running_loop()
        self._timer = self._timer_loop = None
        # The loop may run a timer a clock tick early: the time it was set for is now.
        now = max(loop.time(), when)
        dues = self._dues
        try:
            while dues and dues[0].due <= now:
                opened = heappop(dues)
                if opened.outcome is not None:
                    # As of the deadline even if the service's clock says earlier: the
                    # wait is over. An exchanging request goes on (the table says so).
                    self.registry.expire_due(max(self.clock(), opened.deadline))
        finally:
            self._arm(loop)

    async def provide(
        self,
        *,
        by: str,
        request_id: str,
        code: str,
        state: Optional[str],
        iss: Optional[str] = None,
    ) -> None:
        """``by`` answers ``request_id`` with a code (and the response's RFC 9207
        ``iss``): redeem it, store the credential."""
        await self._provide(
            self.participant(by), request_id=request_id, code=code, state=state, iss=iss
        )

    async def _provide(
        self,
        answering: Participant,
        *,
        request_id: str,
        code: str,
        state: Optional[str],
        iss: Optional[str] = None,
    ) -> None:
        by = answering.participant_id
        self._check_answering(answering, "oauth.provide", request_id)
        self._check_kind(request_id, "oauth")
        pending = self.registry.provide(request_id, by=by, state=state, iss=iss)
        # Answered: the prompt leaves the person's list now, not when the exchange
        # ends. It sits with the connected participant, which may be answering
        # itself or through a session.
        holder = self._participants.get(by)
        if holder is not None:
            holder.prompts.pop(request_id, None)
            holder.changed()
        # The exchange runs as its own task: if the caller gives up (cancelled,
        # disconnected), the code is already on its way to the provider and
        # the requester must still get the outcome.
        exchange = asyncio.ensure_future(self._exchange(pending, code, by))
        exchange.add_done_callback(_retrieve_exception)
        await asyncio.shield(exchange)

    async def _exchange(self, pending: PendingRequest, code: str, by: str) -> None:
        request_id = pending.request_id
        binding = self._open.get(request_id)
        method = None if binding is None else binding.client_auth_method
        resource = None if binding is None else binding.resource
        brokered = binding is not None and binding.brokered
        # RFC 8707 §2.2 (passed only when there is one: endpoints written before it exist).
        extra = {} if resource is None else {"resource": resource}
        try:
            tokens = await self.token_endpoint.redeem_code(
                token_endpoint=pending.token_endpoint,
                client=ClientCredentials(
                    client_id=pending.client_id,
                    client_secret=pending.client_secret,
                    method=method,
                ),
                code=code,
                redirect_uri=pending.redirect_uri,
                code_verifier=pending.code_verifier,
                requested_scopes=pending.scopes,
                **extra,
            )
        except RoomSecretsError as exc:
            self.registry.exchange_failed(request_id, exc)
            if brokered and isinstance(exc, InvalidClient) and binding is not None:
                # Our registration is gone at the server: register again next time.
                with contextlib.suppress(RoomSecretsError):
                    await self.broker.forget_registration(
                        binding.issuer or "", pending.client_id
                    )
            raise
        except BaseException:
            # A bug: the requester must not wait for an exchange that will never end.
            self.registry.exchange_failed(
                request_id, RequestCancelled("the exchange failed unexpectedly")
            )
            raise
        revocation_endpoint = None if binding is None else binding.revocation_endpoint
        if revocation_endpoint is None:
            # No issuer named one (the seed's arguments name no issuer): look at the token
            # endpoint's origin now, so the credential keeps what its revocation needs
            # (the client secret).
            revocation_endpoint = await self.revocation_endpoint_at_origin(pending.token_endpoint)
        credential = StoredCredential(
            tokens=tokens,
            client_id=pending.client_id,
            authorization_endpoint=pending.authorization_endpoint,
            token_endpoint=pending.token_endpoint,
            issuer=None if binding is None else binding.issuer,
            revocation_endpoint=revocation_endpoint,
            # Kept only to authenticate the revocation (RFC 7009 §2.1), or as the
            # server's own registration's, to refresh (see StoredCredential).
            client_secret=(
                pending.client_secret if revocation_endpoint is not None or brokered else None
            ),
            # Refreshes and the revocation authenticate as this exchange did.
            client_auth_method=method,
            resource=resource,
            brokered=brokered,
        )
        delegate = None if binding is None else binding.delegate_to
        key = self.credential_key(
            owner=pending.target,
            requester=pending.requester if delegate is None else delegate,
            client_id=pending.client_id,
            token_endpoint=pending.token_endpoint,
            resource=resource,
            brokered=brokered,
        )
        allow = None if binding is None else binding.allow
        if allow is not None:
            try:
                # The first hand-out is checked like every later one: a provider may
                # grant more than was asked (Google's include_granted_scopes).
                allow(tokens.scopes)
            except RoomSecretsError as exc:
                await self._drop_fresh(credential, key=key, by=by, why=exc)
                self.registry.exchange_failed(request_id, exc)
                raise
        try:
            await self.refresher.save_new(key, credential)
        finally:
            # The token is valid whether or not it could be saved: the requester
            # gets it; a failed save reaches the person answering (and the next
            # request prompts again).
            self.registry.exchange_succeeded(request_id, tokens)
        self.audit(
            AuditEvent(
                action="credential.stored",
                room=self.room,
                actor=by,
                outcome="ok",
                reason="authorization code redeemed",
                at=self.clock(),
                details=(("requester", pending.requester), ("secret_id", key.secret_id)),
            )
        )

    async def _drop_fresh(
        self, credential: StoredCredential, *, key: SecretKey, by: str, why: RoomSecretsError
    ) -> None:
        """Keep nothing of a credential the requester may not use: it is never stored,
        it is revoked where the provider allows it (audited), and the drop is audited."""
        self.audit(
            AuditEvent(
                action="credential.dropped",
                room=self.room,
                actor=by,
                outcome="denied",
                reason=f"not stored: {why.code}",
                at=self.clock(),
                details=(
                    ("requester", key.delegated_to or ""),
                    ("secret_id", key.secret_id),
                    ("granted_scopes", " ".join(credential.tokens.scopes)),
                ),
            )
        )
        if credential.revocation_endpoint is not None:
            revocation = asyncio.ensure_future(self._revoke(credential, key=key, actor=by))
            revocation.add_done_callback(_retrieve_exception)
            await asyncio.shield(revocation)

    # --- deleting a secret, revoking a credential (RFC 7009) -------------------------

    async def delete_secret(
        self, key: SecretKey, *, actor: str, expected_type: Optional[str] = None
    ) -> DeletedSecret:
        """Delete the secret at ``key``; if it was an OAuth credential, then revoke it
        at the provider (RFC 7009) and say how that went.

        Raises :class:`~.errors.SecretNotFound` when there is nothing at ``key``
        (its message names the ``delegated_to`` values under which the owner does
        hold that id), and :class:`~.errors.WrongSecretType` when
        ``expected_type`` is given and the secret is of another type; either way
        nothing changes.

        The delete comes first: it is what the person asked for, and a provider
        that is down must not keep a credential alive here. The record deleted
        is the one read (compare-and-swap), so the token revoked is the one that
        was stored, even while a refresh rotates it. The revocation endpoint is
        the one the credential learnt from its issuer, else the one published at
        its token endpoint's origin (:meth:`revocation_endpoint_at_origin`). The
        revocation is audited (``credential.revoked`` or
        ``credential.revocation_failed``); it never fails the delete.
        """
        record, credential = await self.refresher.load(key)
        if record is None:
            raise await self._not_found(key, expected_type)
        if expected_type is not None and record.type != expected_type:
            raise WrongSecretType(
                f"{key.secret_id!r} is a {record.type} secret, not an OAuth credential; "
                "nothing was deleted (delete it as a secret instead)"
                if expected_type == OAUTH_TOKEN_TYPE
                else f"{key.secret_id!r} is of type {record.type!r}, not {expected_type!r}; "
                "nothing was deleted"
            )
        deleted_type = record.type
        for attempt in range(_DELETE_ATTEMPTS):
            try:
                if attempt + 1 < _DELETE_ATTEMPTS:
                    await self.store.delete(key, expected_version=record.version)
                else:
                    await self.store.delete(key)  # still racing: the person's delete wins
                break
            except VersionConflict:
                record, credential = await self.refresher.load(key)
                if record is None:  # another delete won: this one did nothing
                    raise await self._not_found(key, expected_type) from None
        done = DeletedSecret(
            id=key.secret_id, delegated_to=key.delegated_to, type=deleted_type,
            revocation="not_oauth",
        )
        if credential is None:
            return done
        # Its own task: a caller that gives up (the person closed the page) does
        # not abort a revocation the provider may already be acting on.
        revocation = asyncio.ensure_future(self._revoke(credential, key=key, actor=actor))
        revocation.add_done_callback(_retrieve_exception)
        outcome, host, error = await asyncio.shield(revocation)
        return dataclasses.replace(done, revocation=outcome, host=host, error=error)

    async def _not_found(self, key: SecretKey, expected_type: Optional[str]) -> SecretNotFound:
        """The error for a delete of nothing at ``key``, naming where the owner's
        secret of that id is (only the owner's own secrets are looked at)."""
        kind = "credential" if expected_type == OAUTH_TOKEN_TYPE else "secret"
        to = key.delegated_to or "nobody"
        message = f"no {kind} {key.secret_id!r} delegated to {to}"
        elsewhere = sorted(
            (r.key.delegated_to or "" for r in await self.store.list(key.room, key.owner)
             if r.key.secret_id == key.secret_id),
        )
        if elsewhere:
            hints = [
                f"delegated to {d} (--delegated-to {d})" if d else
                "delegated to nobody (without --delegated-to)"
                for d in elsewhere[:5]
            ]
            message += "; you have one " + ", one ".join(hints)
        return SecretNotFound(message)

    async def revocation_endpoint_at_origin(self, token_endpoint: str) -> Optional[str]:
        """The revocation endpoint published at ``token_endpoint``'s origin, or None.

        For credentials obtained without an issuer (the seed's arguments: a client
        id and both endpoints). The origin is taken as an issuer: its RFC 8414 /
        OpenID metadata is read from the same two well-known URLs and cached as
        discovery caches (the document must name the origin as its issuer, RFC
        8414 §3.3). Its ``revocation_endpoint`` is used only when the document's
        ``token_endpoint`` is exactly this one and the revocation endpoint has the
        same origin (scheme, host and port): a token is never sent to a server
        that did not issue it. Any failure to find one is None.
        """
        parts = urlsplit(token_endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        try:
            metadata = await self.discovery.get(origin)
        except RoomSecretsError:
            return None
        endpoint = metadata.revocation_endpoint_for(token_endpoint)
        if endpoint is None:
            return None
        found = urlsplit(endpoint)
        if (found.scheme, found.netloc) != (parts.scheme, parts.netloc):
            return None
        return endpoint

    async def _revoke(
        self, credential: StoredCredential, *, key: SecretKey, actor: str
    ) -> tuple[str, Optional[str], Optional[str]]:
        """Revoke a deleted credential: ``(outcome, host, error code)`` as in
        :class:`~.api.DeletedSecret`."""
        if credential.revocation_endpoint is None:
            found = await self.revocation_endpoint_at_origin(credential.token_endpoint)
            if found is None:
                return "not_published", urlsplit(credential.token_endpoint).netloc, None
            credential = dataclasses.replace(credential, revocation_endpoint=found)
        host = urlsplit(str(credential.revocation_endpoint)).netloc
        details: list[tuple[str, str]] = [
            ("owner", key.owner),
            ("secret_id", key.secret_id),
            ("delegated_to", key.delegated_to or ""),
            ("revocation_endpoint", str(credential.revocation_endpoint)),
        ]
        try:
            built = revocation_request_for(
                credential, allow_insecure_http=self.allow_insecure_http
            )
            assert built is not None  # the endpoint is known
            request, hint, sent = built
            details.append(("token_type_hint", hint))
            response = await asyncio.wait_for(
                self._transport.send(
                    request,
                    timeout=self._revocation_timeout,
                    max_body=MAX_REVOCATION_RESPONSE_BYTES,
                ),
                self._revocation_timeout + _REVOCATION_GRACE,
            )
            details.append(("status", str(response.status)))
            check_revocation_response(
                status=response.status,
                headers=response.headers,
                body=response.body,
                now=self.clock(),
                redact=sent,
            )
        except asyncio.TimeoutError:
            return self._revocation_failed(actor, ProviderTimeout.code, details, host)
        except ResponseTooLarge as exc:
            if exc.status is not None:
                details.append(("status", str(exc.status)))
            if exc.status == 200:
                # RFC 7009 §2.2: the client ignores the body; a 200 alone says revoked.
                return self._revoked(actor, details, host)
            return self._revocation_failed(actor, exc.code, details, host)
        except RoomSecretsError as exc:
            if isinstance(exc, OAuthError):
                details.append(("oauth_error", exc.error))
            return self._revocation_failed(actor, exc.code, details, host)
        except Exception as exc:  # a transport bug must not fail the person's delete
            return self._revocation_failed(actor, type(exc).__name__, details, host)
        return self._revoked(actor, details, host)

    def _revoked(
        self, actor: str, details: list[tuple[str, str]], host: str
    ) -> tuple[str, Optional[str], Optional[str]]:
        self.audit(
            AuditEvent(
                action="credential.revoked",
                room=self.room,
                actor=actor,
                outcome="ok",
                reason="revoked at the provider (RFC 7009)",
                at=self.clock(),
                details=tuple(details),
            )
        )
        return "revoked", host, None

    def _revocation_failed(
        self, actor: str, code: str, details: list[tuple[str, str]], host: str
    ) -> tuple[str, Optional[str], Optional[str]]:
        # The credential is deleted here; the provider may still honour the token.
        _log.warning("revoking a deleted credential failed (%s); it is deleted here", code)
        self.audit(
            AuditEvent(
                action="credential.revocation_failed",
                room=self.room,
                actor=actor,
                outcome="error",
                reason=code,
                at=self.clock(),
                details=tuple(details),
            )
        )
        return "failed", host, code

    def _check_answering(self, answering: Participant, action: str, request_id: str) -> None:
        """Raise unless ``answering``'s grant allows answering prompts (audited)."""
        authorize(
            check_answer_prompt(answering.grant),
            sink=self.audit,
            action=action,
            room=self.room,
            actor=answering.participant_id,
            at=self.clock(),
            details=(("request_id", request_id),),
        )

    def reject(
        self, *, by: str, request_id: str, error: str, kind: Optional[str] = None
    ) -> None:
        """``by`` refuses ``request_id``; the requester gets :class:`~.errors.RequestRejected`.
        ``kind`` ("oauth" or "secret"): the request must be of that kind."""
        self._reject(self.participant(by), request_id=request_id, error=error, kind=kind)

    def _reject(
        self, answering: Participant, *, request_id: str, error: str, kind: Optional[str] = None
    ) -> None:
        self._check_answering(
            answering, "secret.reject" if kind == "secret" else "oauth.reject", request_id
        )
        if kind is not None:
            self._check_kind(request_id, kind)
        self.registry.reject(request_id, by=answering.participant_id, error=error)

    def _check_kind(self, request_id: str, kind: str) -> None:
        """Raise UnknownRequest unless open request ``request_id`` is of ``kind``: an
        OAuth answer to a secret request (or the reverse) is no answer, and says no
        more than an unknown id would."""
        if (request_id in self._secret_asks) != (kind == "secret"):
            raise UnknownRequest(f"no open {kind} request with that id")

    # --- asking a person for a secret (request_secret) ----------------------------

    def request_secret(
        self,
        *,
        requester: str,
        target: str,
        key: SecretKey,
        url: str,
        type: str,
        name: str,
        timeout: float,
        asked: Optional[set[str]] = None,
    ) -> Coroutine[Any, Any, bytes]:
        """Prompt ``target`` for a secret; the returned coroutine waits for the answer
        and returns its bytes. The client checked every argument and the grant
        (``SecretsClient.request_secret``).

        The request lives in the same registry and state machine as OAuth
        requests (its limits, deadline, cancellation and answer-once rules): a
        provided secret is ``EXCHANGING`` while it is stored, then ``COMPLETED``.
        Its registry entry holds the URL where an OAuth request holds its
        endpoints, and the client id :data:`SECRET_REQUEST_CLIENT`.
        """
        self.participant(requester)
        return self._open_secret_request(
            requester=requester,
            target=target,
            key=key,
            url=url,
            type=type,
            name=name,
            timeout=timeout,
            asked=asked,
        )

    def _open_secret_request(
        self,
        *,
        requester: str,
        target: str,
        key: SecretKey,
        url: str,
        type: str,
        name: str,
        timeout: float,
        asked: Optional[set[str]] = None,
    ) -> Coroutine[Any, Any, bytes]:
        """:meth:`request_secret` once the requester is known to be present (a
        connected participant or a session)."""
        target_participant = self.participant(target)
        loop = asyncio.get_running_loop()
        pending = self.registry.create(
            requester=requester,
            target=target,
            client_id=SECRET_REQUEST_CLIENT,
            authorization_endpoint=url,
            token_endpoint=url,
            redirect_uri=url,
            code_verifier=None,
            timeout=timeout,
            build_authorization_url=_secret_request_url,
            waiter=self._request_ended_waiter,
        )
        request_id = pending.request_id
        outcome: asyncio.Future[Outcome[Any]] = loop.create_future()
        opened = _OpenRequest(
            due=loop.time() + timeout,
            deadline=pending.deadline,
            outcome=outcome,
            target=target_participant,
            issuer=None,
            revocation_endpoint=None,
            client_auth_method=None,
            allow=None,
            asked=asked,
        )
        self._open[request_id] = opened
        self._secret_asks[request_id] = _SecretAsk(key=key, type=type, name=name)
        if asked is not None:
            asked.add(request_id)
        self._watch(opened, loop)
        target_participant.prompts[request_id] = SecretPrompt(
            request_id=request_id,
            from_participant_id=requester,
            url=url,
            type=type,
            delegate_to=key.delegated_to or requester,
            expires_at=pending.deadline,
        )
        target_participant.changed()
        return self._outcome(request_id, outcome, _secret_from)

    async def provide_secret(self, *, by: str, request_id: str, data: bytes) -> None:
        """``by`` answers secret request ``request_id`` with ``data``: store it as
        their secret, hand it to the requester."""
        await self._provide_secret(self.participant(by), request_id=request_id, data=data)

    async def _provide_secret(
        self, answering: Participant, *, request_id: str, data: bytes
    ) -> None:
        by = answering.participant_id
        self._check_answering(answering, "secret.provide", request_id)
        self._check_kind(request_id, "secret")
        ask = self._secret_asks[request_id]
        # Checked before the request is answered: a secret over the quota leaves the
        # request open, so the person can still answer within the limits.
        await self.check_quota(ask.key, size=len(data))
        pending = self.registry.provide(request_id, by=by)
        holder = self._participants.get(by)
        if holder is not None:
            holder.prompts.pop(request_id, None)
            holder.changed()
        # Its own task, as a code's exchange: a person who gives up (cancelled,
        # disconnected) while the store writes does not undo the save.
        save = asyncio.ensure_future(self._save_provided(ask, data, request_id))
        save.add_done_callback(_retrieve_exception)
        await asyncio.shield(save)
        self.audit(
            AuditEvent(
                action="secret.stored",
                room=self.room,
                actor=by,
                outcome="ok",
                reason="a requested secret was provided",
                at=self.clock(),
                details=(("requester", pending.requester), ("secret_id", ask.key.secret_id)),
            )
        )

    async def _save_provided(self, ask: _SecretAsk, data: bytes, request_id: str) -> None:
        try:
            # As a redeemed code's credential: the requester gets what the person
            # typed whether or not it could be saved; a failed save reaches the
            # person (who may answer the next request again).
            await self.store.put(ask.key, type=ask.type, name=ask.name, data=data)
        finally:
            self.registry.exchange_succeeded(request_id, data)

    def prompts(self, participant_id: str) -> AsyncIterator[Prompt]:
        """Every open prompt addressed to ``participant_id``, each once, as they come.

        Raises ParticipantNotConnected at once (not on first iteration) if the
        participant is not connected; the iterator ends when it leaves.
        """
        return _prompt_stream(self.participant(participant_id))


class _Session:
    """The service as a session's client sees it (a
    :class:`~.participants.RoomService`): its own id resolves to the session's
    participant (its grant, its closed flag); everything else is the service's."""

    # One is made for every call a server runs: slots, not a dict per session.
    __slots__ = (
        "_asked", "_participant", "_service", "allow_insecure_http", "audit", "broker",
        "clock", "offline_calls", "refresher", "room", "store",
    )

    def __init__(self, service: SecretsService, participant: Participant) -> None:
        self._service = service
        self._participant = participant
        self._asked: set[str] = set()
        self.room = service.room
        self.store = service.store
        self.clock = service.clock
        self.audit = service.audit
        self.refresher = service.refresher
        self.allow_insecure_http = service.allow_insecure_http
        self.broker = service.broker
        self.offline_calls = service.offline_calls

    def participant(self, participant_id: str) -> Participant:
        if participant_id != self._participant.participant_id:
            return self._service.participant(participant_id)
        if self._participant.closed:
            raise ParticipantNotConnected("this session has ended")
        return self._participant

    def is_connected(self, participant_id: str) -> bool:
        if participant_id != self._participant.participant_id:
            return self._service.is_connected(participant_id)
        return not self._participant.closed

    def disconnect(self, participant_id: str) -> None:
        if participant_id != self._participant.participant_id or self._participant.closed:
            return
        self._participant.closed = True
        for request_id in list(self._asked):
            with contextlib.suppress(UnknownRequest):
                self._service.registry.cancel(request_id)

    def check_oauth_arguments(
        self,
        owner: object,
        client_id: object,
        issuer: object,
        authorization_endpoint: object,
        token_endpoint: object,
    ) -> None:
        self._service.check_oauth_arguments(
            owner, client_id, issuer, authorization_endpoint, token_endpoint
        )

    def credential_key(
        self,
        *,
        owner: str,
        requester: str,
        client_id: str,
        token_endpoint: str,
        resource: Optional[str] = None,
        brokered: bool = False,
    ) -> SecretKey:
        return self._service.credential_key(
            owner=owner,
            requester=requester,
            client_id=client_id,
            token_endpoint=token_endpoint,
            resource=resource,
            brokered=brokered,
        )

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
    ) -> AuditEvent:
        return self._service._check_oauth(
            self.participant(requester).grant,
            requester=requester,
            action=action,
            target=target,
            client_id=client_id,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            scopes=scopes,
            issuer=issuer,
            resource=resource,
            brokered=brokered,
        )

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
    ) -> None:
        self._service._check_stored_scopes(
            self.participant(requester).grant,
            requester=requester,
            action=action,
            target=target,
            client_id=client_id,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            scopes=scopes,
            issuer=issuer,
            resource=resource,
            brokered=brokered,
        )

    def check_issuer(self, issuer: object) -> str:
        return self._service.check_issuer(issuer)

    async def provider_metadata(
        self, issuer: str, *, endpoints_given: bool
    ) -> Optional[ProviderMetadata]:
        return await self._service.provider_metadata(issuer, endpoints_given=endpoints_given)

    async def delete_secret(
        self, key: SecretKey, *, actor: str, expected_type: Optional[str] = None
    ) -> DeletedSecret:
        return await self._service.delete_secret(key, actor=actor, expected_type=expected_type)

    async def check_quota(self, key: SecretKey, *, size: int) -> None:
        await self._service.check_quota(key, size=size)

    def request_token(
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
    ) -> Coroutine[Any, Any, str]:
        # The session may have ended while we looked for a stored credential.
        self.participant(requester)
        request_id, outcome = self._service._open_request(
            requester=requester,
            target=target,
            client=client,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            scopes=scopes,
            redirect_uri=redirect_uri,
            timeout=timeout,
            no_pkce=no_pkce,
            issuer=issuer,
            metadata=metadata,
            allow=allow,
            asked=self._asked,
            delegate_to=delegate_to,
            resource=resource,
            resource_name=resource_name,
            brokered=brokered,
        )
        return self._service._outcome(request_id, outcome, _token_from)

    async def provide(
        self,
        *,
        by: str,
        request_id: str,
        code: str,
        state: Optional[str],
        iss: Optional[str] = None,
    ) -> None:
        await self._service._provide(
            self.participant(by), request_id=request_id, code=code, state=state, iss=iss
        )

    def reject(
        self, *, by: str, request_id: str, error: str, kind: Optional[str] = None
    ) -> None:
        self._service._reject(
            self.participant(by), request_id=request_id, error=error, kind=kind
        )

    def request_secret(
        self,
        *,
        requester: str,
        target: str,
        key: SecretKey,
        url: str,
        type: str,
        name: str,
        timeout: float,
    ) -> Coroutine[Any, Any, bytes]:
        # The session may have ended while we looked for a stored secret.
        self.participant(requester)
        return self._service._open_secret_request(
            requester=requester,
            target=target,
            key=key,
            url=url,
            type=type,
            name=name,
            timeout=timeout,
            asked=self._asked,
        )

    async def provide_secret(self, *, by: str, request_id: str, data: bytes) -> None:
        await self._service._provide_secret(self.participant(by), request_id=request_id, data=data)

    def prompts(self, participant_id: str) -> AsyncIterator[Prompt]:
        raise ParticipantNotConnected(
            "a session receives no prompts; connect the participant to receive them"
        )


async def _prompt_stream(participant: Participant) -> AsyncIterator[Prompt]:
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    while not participant.closed:
        fresh = [p for rid, p in participant.prompts.items() if rid not in seen]
        if not fresh:
            watcher: asyncio.Future[None] = loop.create_future()
            participant.watchers.append(watcher)
            try:
                await watcher
            finally:
                # A caller that stops waiting (timeout, cancel) leaves no future behind.
                if watcher in participant.watchers:
                    participant.watchers.remove(watcher)
            continue
        for prompt in fresh:
            seen.add(prompt.request_id)
            # It may have ended while we yielded the previous one.
            if prompt.request_id in participant.prompts:
                yield prompt
        # Forget ids that ended, so ``seen`` stays as small as the open set.
        seen &= participant.prompts.keys()


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    # Marks the exception seen when the awaiting caller gave up; the requester
    # got the outcome through the registry either way.
    if not task.cancelled():
        task.exception()


def _token_from(result: Outcome[Any]) -> str:
    """An OAuth request's answer: the access token of the credential it stored."""
    tokens: TokenSet = _result_of(result, "authorization request")
    return tokens.access_token


def _secret_from(result: Outcome[Any]) -> bytes:
    """A secret request's answer: the bytes the person provided."""
    data: bytes = _result_of(result, "secret request")
    return data


def _result_of(result: Outcome[Any], what: str) -> Any:
    """A completed request's result; every other ending as its typed error."""
    if isinstance(result, Completed):
        return result.result
    if isinstance(result, Failed):
        raise result.error
    if isinstance(result, Rejected):
        raise RequestRejected(result.error, what=what)
    if isinstance(result, Expired):
        raise RequestTimedOut(f"nobody answered the {what} in time")
    if isinstance(result, Cancelled):
        raise RequestCancelled(result.reason)
    raise AssertionError(f"unknown outcome {result!r}")  # pragma: no cover
