"""The open pending authorization requests of a room, and how each one ends (sans-I/O).

:class:`PendingRegistry` keeps every open :class:`PendingRequest` with its
:class:`~.pending.PendingMachine`, indexed by request id, by OAuth ``state``, by
requester and by target, plus a heap of deadlines. It does no I/O and never
sleeps: the clock and the randomness are injected, and the caller does the token
exchange and calls :meth:`PendingRegistry.expire_due` when a deadline has passed
(:meth:`PendingRegistry.next_deadline` says when, on the registry's clock; the
service keeps one event-loop timer for all its requests' waits and expires as of
a request's deadline when its wait gives up, so a clock that stands still or
steps back cannot keep a request open).

Rules:

* Every state change goes through the table in :mod:`.pending`; an input the
  table refuses raises :class:`~.errors.IllegalTransition` and changes nothing.
* Each request ends exactly once, and then its waiter is called exactly once with
  one outcome (:class:`Completed`, :class:`Failed`, :class:`Rejected`,
  :class:`Expired` or :class:`Cancelled`). An ended request leaves the registry
  at once: looking it up raises :class:`~.errors.UnknownRequest`, like an id that
  never existed (one error for "not open", so the answer does not tell a caller
  whether an id was ever real).
* Every method that changes something first expires, as of ``clock()``, every
  request whose deadline has passed, so a request past its deadline is never
  answerable even if :meth:`~PendingRegistry.expire_due` has not run yet. The
  read-only methods show the registry as of its last change.
* The registry's bookkeeping is complete before any waiter is called, so a waiter
  may call back into the registry. Waiters should not raise; if one does, the
  other waiters of the same call are still called and the first exception is
  re-raised afterwards, with the registry consistent.
"""

from __future__ import annotations

import hmac
import math
import secrets
import time
from collections.abc import Sequence
from heapq import heapify, heappop, heappush
from typing import Callable, ClassVar, Generic, Optional, TypeVar, Union

from ..errors import (
    ConfigurationError,
    InvalidInput,
    IssuerMismatch,
    NotAddressedToYou,
    RoomSecretsError,
    StateMismatch,
    TooManyPendingRequests,
    UnknownRequest,
    safe_text,
)
from ..ports import Clock
from ..values import frozen_value
from .machine import PendingInput, PendingMachine, PendingState

__all__ = [
    "Cancelled",
    "Completed",
    "Expired",
    "Failed",
    "Outcome",
    "PendingRegistry",
    "PendingRequest",
    "Rejected",
]

ResultT = TypeVar("ResultT")

#: Random bytes behind a request id and behind an OAuth ``state`` (each >= 128 bits).
_ID_BYTES = 16
_STATE_BYTES = 16
#: ``secrets.token_urlsafe(16)`` gives 22 characters; anything shorter carries < 128 bits.
_MIN_RANDOM_CHARS = 22


_TEXT_FIELDS = (
    "request_id",
    "oauth_state",
    "requester",
    "target",
    "client_id",
    "authorization_endpoint",
    "token_endpoint",
    "redirect_uri",
)


@frozen_value
class PendingRequest:
    """Everything the token exchange needs for one pending authorization request.

    ``oauth_state`` is the OAuth ``state`` parameter (RFC 6749 §4.1.1), not the
    machine state (the registry holds that). ``code_verifier`` is None when PKCE
    is off (``no_pkce``). ``authorization_url`` is built from the request by
    ``url_builder`` each time it is read, not stored: the URL is the largest
    thing a request has (about 350 bytes), and it is read once, to prompt. The
    repr leaves out ``code_verifier``, ``oauth_state``, ``client_secret`` and
    ``authorization_url`` (which contains the state).
    """

    # Slots: a registry may hold many of these (the benchmark holds 100,000).
    __slots__ = (
        "authorization_endpoint",
        "client_id",
        "client_secret",
        "code_verifier",
        "created_at",
        "deadline",
        "oauth_state",
        "redirect_uri",
        "request_id",
        "requester",
        "scopes",
        "target",
        "token_endpoint",
        "url_builder",
    )

    request_id: str
    oauth_state: str
    code_verifier: Optional[str]
    client_secret: Optional[str]
    #: Participant id of who asked for the token.
    requester: str
    #: Participant id of who must approve.
    target: str
    client_id: str
    authorization_endpoint: str
    token_endpoint: str
    scopes: tuple[str, ...]
    redirect_uri: str
    #: Builds ``authorization_url`` from this request (the same string every time).
    url_builder: Callable[[PendingRequest], str]
    created_at: float
    deadline: float

    @property
    def authorization_url(self) -> str:
        """The URL to show the target (RFC 6749 §4.1.1), built now from the request."""
        return self.url_builder(self)

    def __post_init__(self) -> None:
        texts = (
            self.request_id,
            self.oauth_state,
            self.requester,
            self.target,
            self.client_id,
            self.authorization_endpoint,
            self.token_endpoint,
            self.redirect_uri,
        )
        for name, value in zip(_TEXT_FIELDS, texts):
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"{name} must be a non-empty string")
        if not callable(self.url_builder):
            raise InvalidInput("url_builder must be callable")
        for name, optional in (
            ("code_verifier", self.code_verifier),
            ("client_secret", self.client_secret),
        ):
            if optional is not None and (not isinstance(optional, str) or not optional):
                raise InvalidInput(f"{name} must be None or a non-empty string")
        if not isinstance(self.scopes, tuple):
            raise InvalidInput("scopes must be a tuple of non-empty strings")
        for scope in self.scopes:
            if not isinstance(scope, str) or not scope:
                raise InvalidInput("scopes must be a tuple of non-empty strings")
        if not (
            isinstance(self.created_at, (int, float))
            and isinstance(self.deadline, (int, float))
            and math.isfinite(self.created_at)
            and math.isfinite(self.deadline)
            and self.deadline >= self.created_at
        ):
            raise InvalidInput("created_at and deadline must be finite, deadline >= created_at")

    def __repr__(self) -> str:
        return (
            f"PendingRequest(request_id={self.request_id!r}, requester={self.requester!r}, "
            f"target={self.target!r}, client_id={self.client_id!r}, "
            f"authorization_endpoint={self.authorization_endpoint!r}, "
            f"token_endpoint={self.token_endpoint!r}, scopes={self.scopes!r}, "
            f"redirect_uri={self.redirect_uri!r}, pkce={self.code_verifier is not None}, "
            f"created_at={self.created_at!r}, deadline={self.deadline!r})"
        )


# --- Outcomes: one class per way a request ends ---------------------------------


@frozen_value
class Completed(Generic[ResultT]):
    """The exchange succeeded; ``result`` is what the caller passed to ``exchange_succeeded``."""

    state: ClassVar[PendingState] = PendingState.COMPLETED

    request_id: str
    result: ResultT

    def __repr__(self) -> str:
        # The result holds tokens: show its type only.
        return f"Completed(request_id={self.request_id!r}, result=<{type(self.result).__name__}>)"


@frozen_value
class Failed:
    """The exchange failed with ``error``."""

    state: ClassVar[PendingState] = PendingState.FAILED

    request_id: str
    error: RoomSecretsError

    def __post_init__(self) -> None:
        if not isinstance(self.error, RoomSecretsError):
            raise InvalidInput("Failed.error must be a RoomSecretsError")


@frozen_value
class Rejected:
    """The target rejected the request; ``error`` is its short reason (``"user_cancelled"``)."""

    state: ClassVar[PendingState] = PendingState.REJECTED

    request_id: str
    error: str

    def __post_init__(self) -> None:
        if not isinstance(self.error, str) or not self.error:
            raise InvalidInput("Rejected.error must be a non-empty string")


@frozen_value
class Expired:
    """The deadline passed before the target answered."""

    state: ClassVar[PendingState] = PendingState.EXPIRED

    request_id: str


@frozen_value
class Cancelled:
    """The request was cancelled: ``reason`` is ``"requester_cancelled"``,
    ``"requester_left"`` or ``"target_left"``."""

    state: ClassVar[PendingState] = PendingState.CANCELLED

    request_id: str
    reason: str


#: How a request ended; the waiter given to :meth:`PendingRegistry.create` gets one.
Outcome = Union[Completed[ResultT], Failed, Rejected, Expired, Cancelled]
_Waiter = Callable[[Outcome[ResultT]], None]


class _Entry(PendingMachine, Generic[ResultT]):
    """One open request: its machine state (inherited), its data, its waiter."""

    __slots__ = ("iss_required", "issuer", "request", "waiter")

    def __init__(
        self,
        request: PendingRequest,
        waiter: _Waiter[ResultT],
        issuer: Optional[str],
        iss_required: bool,
    ) -> None:
        # No defaults: create() is the one caller and always decides both.
        super().__init__()
        self.request = request
        self.waiter = waiter
        #: The issuer the authorization request went to (None: not known).
        self.issuer = issuer
        #: True when that issuer promised to send ``iss`` (RFC 9207 §3).
        self.iss_required = iss_required

    def __lt__(self, other: _Entry[ResultT]) -> bool:
        # Heap order. The entry itself is the heap item: no (deadline, id) tuple.
        return self.request.deadline < other.request.deadline


def _deliver(deliveries: list[tuple[_Waiter[ResultT], Outcome[ResultT]]]) -> None:
    """Call every waiter once; re-raise the first exception after all were called."""
    first: Optional[BaseException] = None
    for waiter, outcome in deliveries:
        try:
            waiter(outcome)
        except BaseException as exc:  # re-raised below, after the other waiters ran
            if first is None:
                first = exc
    if first is not None:
        raise first


class PendingRegistry(Generic[ResultT]):
    """Open pending authorization requests, from creation to their one outcome.

    ``ResultT`` is the type of a successful exchange's result (the service uses
    its token set). ``clock`` returns seconds since the epoch; ``token_urlsafe``
    is the randomness source for request ids and OAuth states. At most
    ``max_open_per_requester`` requests may be open from one requester and
    ``max_open_per_target`` addressed to one target.

    >>> outcomes = []
    >>> registry = PendingRegistry(clock=lambda: 1000.0)
    >>> request = registry.create(
    ...     requester="agent", target="alice", client_id="app",
    ...     authorization_endpoint="https://as.example/auth",
    ...     token_endpoint="https://as.example/token", redirect_uri="https://app.example/cb",
    ...     scopes=("mail.read",), code_verifier=None, timeout=300,
    ...     build_authorization_url=lambda r: "https://as.example/auth?state=" + r.oauth_state,
    ...     waiter=outcomes.append)
    >>> registry.pending_for_target("alice") == [request]
    True
    >>> registry.provide(request.request_id, by="alice", state=request.oauth_state) == request
    True
    >>> registry.exchange_succeeded(request.request_id, "tokens")
    >>> outcomes[0].result, len(registry)
    ('tokens', 0)
    """

    __slots__ = (
        "_by_id",
        "_by_requester",
        "_by_state",
        "_by_target",
        "_clock",
        "_deadlines",
        "_max_open_per_requester",
        "_max_open_per_target",
        "_token_urlsafe",
    )

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        token_urlsafe: Callable[[int], str] = secrets.token_urlsafe,
        max_open_per_requester: int = 16,
        max_open_per_target: int = 32,
    ) -> None:
        for name, bound in (
            ("max_open_per_requester", max_open_per_requester),
            ("max_open_per_target", max_open_per_target),
        ):
            if type(bound) is not int or bound < 1:
                raise ConfigurationError(f"{name} must be an int >= 1")
        self._clock = clock
        self._token_urlsafe = token_urlsafe
        self._max_open_per_requester = max_open_per_requester
        self._max_open_per_target = max_open_per_target
        self._by_id: dict[str, _Entry[ResultT]] = {}
        self._by_state: dict[str, _Entry[ResultT]] = {}
        # participant id -> its open entries, oldest first. Lists, not dicts: they
        # are short (at most max_open_*), so removal by identity is cheap, and a
        # list costs a third of a dict per item.
        self._by_requester: dict[str, list[_Entry[ResultT]]] = {}
        self._by_target: dict[str, list[_Entry[ResultT]]] = {}
        # Min-heap of entries by deadline. Ended entries stay until popped (lazy
        # deletion) or until the heap is rebuilt (see _remove).
        self._deadlines: list[_Entry[ResultT]] = []

    # --- reading -----------------------------------------------------------------

    def __len__(self) -> int:
        """The number of open requests (``PENDING`` or ``EXCHANGING``)."""
        return len(self._by_id)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._by_id

    def get(self, request_id: str) -> PendingRequest:
        """The open request ``request_id``; raises :class:`~.errors.UnknownRequest`."""
        return self._entry(request_id).request

    def find_by_oauth_state(self, oauth_state: str) -> PendingRequest:
        """The open request whose OAuth ``state`` is ``oauth_state`` (e.g. from a redirect).

        Raises :class:`~.errors.UnknownRequest`; the message never contains the state.
        """
        entry = self._by_state.get(oauth_state) if isinstance(oauth_state, str) else None
        if entry is None:
            raise UnknownRequest("no open pending request has this state")
        return entry.request

    def state_of(self, request_id: str) -> PendingState:
        """The machine state of open request ``request_id``: ``PENDING`` or ``EXCHANGING``."""
        return self._entry(request_id).state

    def pending_for_target(self, participant_id: str) -> list[PendingRequest]:
        """Requests addressed to ``participant_id`` still waiting for an answer, oldest first."""
        entries = self._by_target.get(participant_id, ())
        return [e.request for e in entries if e.state is PendingState.PENDING]

    def open_count(self, participant_id: str) -> tuple[int, int]:
        """``(open requests asked by, open requests addressed to)`` ``participant_id``."""
        return (
            len(self._by_requester.get(participant_id, ())),
            len(self._by_target.get(participant_id, ())),
        )

    def next_deadline(self) -> Optional[float]:
        """The earliest deadline still to process, or None; call :meth:`expire_due` then.

        It may be a deadline whose request is already exchanging (expire_due then
        changes nothing), never one later than the earliest real one.
        """
        heap = self._deadlines
        while heap and heap[0].ended:
            heappop(heap)
        return heap[0].request.deadline if heap else None

    # --- changing ------------------------------------------------------------------

    def create(
        self,
        *,
        requester: str,
        target: str,
        client_id: str,
        authorization_endpoint: str,
        token_endpoint: str,
        redirect_uri: str,
        scopes: Sequence[str] = (),
        code_verifier: Optional[str],
        client_secret: Optional[str] = None,
        timeout: float,
        build_authorization_url: Callable[[PendingRequest], str],
        waiter: Callable[[Outcome[ResultT]], None],
        issuer: Optional[str] = None,
        iss_required: bool = False,
    ) -> PendingRequest:
        """Open a request from ``requester`` to ``target``; return it (state ``PENDING``).

        The request id and the OAuth state are two independent draws from
        ``token_urlsafe`` (128 bits each). ``build_authorization_url`` gives the
        URL to show the target from the new request (its OAuth state, endpoint,
        client, scopes, verifier): it is called once here, so a builder that
        raises or returns no string opens nothing, and again each time the
        request's ``authorization_url`` is read, so it must build the same string
        from the same request. Pass one builder for many requests: the request
        keeps a reference to it instead of the URL.
        The request's deadline is ``clock() + timeout``. ``waiter`` is called
        exactly once, with the outcome, when the request ends. ``issuer``: the
        issuer the authorization request goes to, when known; ``iss_required``:
        it advertised ``authorization_response_iss_parameter_supported`` (RFC
        9207 §3), so every answer must carry its ``iss`` (see :meth:`provide`).

        Raises :class:`~.errors.TooManyPendingRequests` when either participant is
        at its bound, :class:`~.errors.InvalidInput` for bad arguments; in both
        cases nothing is created.
        """
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise InvalidInput("timeout must be a finite number of seconds > 0")
        if isinstance(scopes, str):
            raise InvalidInput("scopes must be a sequence of strings, not one string")
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise InvalidInput("issuer must be None or a non-empty string")
        if type(iss_required) is not bool or (iss_required and issuer is None):
            raise InvalidInput("iss_required must be True or False, and True only with an issuer")
        now = self._clock()
        self._expire(now)
        if len(self._by_requester.get(requester, ())) >= self._max_open_per_requester:
            raise TooManyPendingRequests(
                "the requester already has the most open pending requests allowed",
                limit=self._max_open_per_requester,
            )
        if len(self._by_target.get(target, ())) >= self._max_open_per_target:
            raise TooManyPendingRequests(
                "the target already has the most open pending requests allowed",
                limit=self._max_open_per_target,
            )
        request_id = self._draw(_ID_BYTES)
        oauth_state = self._draw(_STATE_BYTES)
        # Request ids may be shown and logged; a state equal to one would leak with it.
        if request_id == oauth_state or request_id in self._by_id or oauth_state in self._by_state:
            raise ConfigurationError("the randomness source repeated a value")
        request = PendingRequest(
            request_id=request_id,
            oauth_state=oauth_state,
            code_verifier=code_verifier,
            client_secret=client_secret,
            requester=requester,
            target=target,
            client_id=client_id,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            scopes=tuple(scopes),
            redirect_uri=redirect_uri,
            url_builder=build_authorization_url,
            created_at=now,
            deadline=now + timeout,
        )
        url = build_authorization_url(request)
        if not isinstance(url, str) or not url:
            raise InvalidInput("build_authorization_url must return a non-empty string")
        entry = _Entry(request, waiter, issuer, iss_required)
        self._by_id[request_id] = entry
        self._by_state[oauth_state] = entry
        self._by_requester.setdefault(requester, []).append(entry)
        self._by_target.setdefault(target, []).append(entry)
        heappush(self._deadlines, entry)
        return request

    def provide(
        self,
        request_id: str,
        *,
        by: str,
        state: Optional[str] = None,
        iss: Optional[str] = None,
    ) -> PendingRequest:
        """Record that ``by`` answered with a code; return the request to exchange it.

        Only the target may answer (:class:`~.errors.NotAddressedToYou`), once
        (:class:`~.errors.IllegalTransition` when already answered). When
        ``state`` is given it must equal the request's OAuth state, compared in
        constant time; a mismatch raises :class:`~.errors.StateMismatch` and the
        request stays ``PENDING`` (only the target can get this far, so a wrong
        state is a stale or forged redirect in the target's own browser, and the
        real answer may still come).

        ``iss`` is the authorization response's issuer (RFC 9207). When the
        request's issuer promised to send it, it must be given and equal that
        issuer; when the issuer is known but made no promise, a given ``iss``
        must still equal it; when no issuer is known, ``iss`` is ignored. The
        comparison is exact (RFC 9207 §2.4: simple string comparison, RFC 3986
        §6.2.1). A failure raises :class:`~.errors.IssuerMismatch` and, like a
        wrong state, leaves the request ``PENDING``.

        On success the request is ``EXCHANGING``: call :meth:`exchange_succeeded`
        or :meth:`exchange_failed` next.
        """
        self._expire(self._clock())
        entry = self._answerable(request_id, by, PendingInput.PROVIDE)
        if state is not None:
            if not isinstance(state, str):
                raise InvalidInput("state must be a string")
            expected = entry.request.oauth_state.encode("utf-8")
            if not hmac.compare_digest(state.encode("utf-8"), expected):
                raise StateMismatch("the state does not match the pending request's state")
        if iss is not None and not isinstance(iss, str):
            raise InvalidInput("iss must be a string")
        if entry.issuer is not None:
            if iss is None and entry.iss_required:
                raise IssuerMismatch(
                    "the authorization response has no iss, but the issuer sends one "
                    "(RFC 9207 §2.4)"
                )
            if iss is not None and iss != entry.issuer:
                raise IssuerMismatch(
                    "the authorization response's iss is not the issuer the request "
                    "was sent to (RFC 9207 §2.4)"
                )
        entry.fire(PendingInput.PROVIDE)
        return entry.request

    def reject(self, request_id: str, *, by: str, error: str) -> None:
        """The target ``by`` refuses; the requester gets :class:`Rejected` with ``error``.

        ``error`` is reduced to RFC 6749 §5.2 characters (64 at most). Same
        checks as :meth:`provide`: only the target, only once.
        """
        self._expire(self._clock())
        reason = safe_text(error, 64)
        if reason is None:
            raise InvalidInput("error must be a short printable ASCII string")
        entry = self._answerable(request_id, by, PendingInput.REJECT)
        self._end(entry, PendingInput.REJECT, Rejected(request_id=request_id, error=reason))

    def exchange_succeeded(self, request_id: str, result: ResultT) -> None:
        """The code was redeemed: end the request with :class:`Completed` (``result``)."""
        self._expire(self._clock())
        entry = self._entry(request_id)
        self._end(
            entry,
            PendingInput.EXCHANGE_SUCCEEDED,
            Completed(request_id=request_id, result=result),
        )

    def exchange_failed(self, request_id: str, error: RoomSecretsError) -> None:
        """Redeeming the code failed: end the request with :class:`Failed` (``error``)."""
        self._expire(self._clock())
        entry = self._entry(request_id)
        self._end(entry, PendingInput.EXCHANGE_FAILED, Failed(request_id=request_id, error=error))

    def cancel(self, request_id: str) -> bool:
        """The requester gave up on ``request_id`` (``REQUESTER_LEFT``).

        Returns True if the request ended (:class:`Cancelled`), False if it is
        exchanging and will end with the exchange's result.
        """
        self._expire(self._clock())
        entry = self._entry(request_id)
        outcome = Cancelled(request_id=request_id, reason="requester_cancelled")
        self._end(entry, PendingInput.REQUESTER_LEFT, outcome)
        return entry.ended

    def participant_left(self, participant_id: str) -> list[PendingRequest]:
        """``participant_id`` left: cancel everything it asked for or was asked.

        Returns the requests that ended (:class:`Cancelled` with reason
        ``"requester_left"`` or ``"target_left"``); exchanging ones go on.
        """
        self._expire(self._clock())
        # dict.fromkeys: a request from a participant to itself is listed twice.
        entries = dict.fromkeys(
            self._by_requester.get(participant_id, [])
            + self._by_target.get(participant_id, [])
        )
        ended: list[PendingRequest] = []
        deliveries: list[tuple[_Waiter[ResultT], Outcome[ResultT]]] = []
        for entry in entries:
            event = (
                PendingInput.REQUESTER_LEFT
                if entry.request.requester == participant_id
                else PendingInput.TARGET_LEFT
            )
            entry.fire(event)
            if not entry.ended:
                continue
            self._remove(entry)
            ended.append(entry.request)
            outcome = Cancelled(request_id=entry.request.request_id, reason=event.value)
            deliveries.append((entry.waiter, outcome))
        _deliver(deliveries)
        return ended

    def expire_due(self, now: Optional[float] = None) -> list[PendingRequest]:
        """Expire every request whose deadline is at or before ``now`` (default ``clock()``).

        Each expiry costs O(log n) (a heap pop). Returns the requests that ended
        (:class:`Expired`); exchanging ones go on until their exchange ends.
        """
        return self._expire(self._clock() if now is None else now)

    # --- internals -------------------------------------------------------------------

    def _draw(self, nbytes: int) -> str:
        value = self._token_urlsafe(nbytes)
        if not isinstance(value, str) or len(value) < _MIN_RANDOM_CHARS:
            raise ConfigurationError("the randomness source returned fewer than 128 bits")
        return value

    def _entry(self, request_id: str) -> _Entry[ResultT]:
        entry = self._by_id.get(request_id) if isinstance(request_id, str) else None
        if entry is None:
            raise UnknownRequest("no open pending request has this id")
        return entry

    def _answerable(self, request_id: str, by: str, event: PendingInput) -> _Entry[ResultT]:
        """The entry, if ``by`` may answer it with ``event``; else raise, changing nothing."""
        entry = self._entry(request_id)
        if by != entry.request.target:
            raise NotAddressedToYou("this request is addressed to another participant")
        entry.check(event)
        return entry

    def _end(self, entry: _Entry[ResultT], event: PendingInput, outcome: Outcome[ResultT]) -> None:
        """Fire ``event``; if that ends the request, remove it and deliver ``outcome``."""
        entry.fire(event)
        if not entry.ended:
            return
        self._remove(entry)
        _deliver([(entry.waiter, outcome)])

    def _expire(self, now: float) -> list[PendingRequest]:
        ended: list[PendingRequest] = []
        deliveries: list[tuple[_Waiter[ResultT], Outcome[ResultT]]] = []
        # self._deadlines, not a local: _remove may rebuild the heap mid-loop.
        while self._deadlines and self._deadlines[0].request.deadline <= now:
            entry = heappop(self._deadlines)
            if entry.ended:  # lazy deletion: it ended before its deadline
                continue
            entry.fire(PendingInput.DEADLINE_PASSED)
            if not entry.ended:
                continue
            self._remove(entry)
            ended.append(entry.request)
            deliveries.append((entry.waiter, Expired(request_id=entry.request.request_id)))
        _deliver(deliveries)
        return ended

    def _remove(self, entry: _Entry[ResultT]) -> None:
        request = entry.request
        del self._by_id[request.request_id]
        del self._by_state[request.oauth_state]
        for index, participant in (
            (self._by_requester, request.requester),
            (self._by_target, request.target),
        ):
            mine = index[participant]
            mine.remove(entry)  # identity: _Entry has no __eq__
            if not mine:
                del index[participant]
        # Lazy deletion leaves the heap item behind. Rebuild once stale items
        # outnumber live ones, so the heap stays O(open requests); each rebuild is
        # paid for by the removals since the last one (amortised O(1)).
        if len(self._deadlines) > 2 * len(self._by_id) + 32:
            self._deadlines = list(self._by_id.values())
            heapify(self._deadlines)
