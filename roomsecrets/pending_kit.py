"""The pending-request kit: check any pending-request registry against its transition table.

The store kit (:class:`~roomsecrets.testing.StoreContract`) checks anyone's store; this
kit checks anyone's pending-request registry: the shipped
:class:`~roomsecrets.core.PendingRegistry`, a subclass of it, one from a copy of
``roomsecrets/core`` vendored under another name, or a component of your own that
keeps the same rules. ``roomsecrets.testing`` re-exports its public names.

* :class:`PendingModel` is the model alone: pending requests as plain data, moved only
  by a ``TRANSITIONS`` table (the shipped one by default). It copies nothing of the
  rules: every move is a lookup in the table it was given, and a pair missing from the
  table is illegal and changes nothing. Drive it from your own events (a UI's event
  stream, say) and compare it with your component.
* :func:`pending_state_machine` returns a Hypothesis ``RuleBasedStateMachine`` that
  drives a registry (create, provide, reject, exchange succeeded and failed, cancel, a
  participant leaving, expiry, clock jumps forward and back) next to a
  :class:`PendingModel`, and checks after every step that the registry's states equal
  the model's, that every request ends exactly once (one outcome to its waiter), that no
  answer lands twice, that every illegal input raises and changes nothing, and that the
  bounds hold.
* :func:`pending_inputs` and :func:`pending_input` are Hypothesis strategies for input
  sequences and single inputs, for your own ``@given`` tests.

How it works, and why:

* The kit compares states by identity with the members of the table's own enums. A copy
  of the core under another name has its own ``PendingState``, whose members are never
  ``is`` the shipped ones, and its own error classes. So the kit takes everything from
  one core package, ``core`` (default ``roomsecrets.core``): its table
  (``<core>.pending.machine.TRANSITIONS``), the errors it expects, the error it passes
  to ``exchange_failed``, and the default registry. Pass your copy as ``core=``.
* Outcomes are recognised by their ``state`` and their fields, not by their class, so
  any copy's outcome classes pass.
* Importing this module needs only the standard library; Hypothesis is imported when a
  machine or a strategy is built, as in the store kit.

Example: the kit against the shipped registry, in a pytest module::

    from hypothesis import settings
    from roomsecrets.testing import pending_state_machine

    TestPendingRegistry = pending_state_machine().TestCase
    TestPendingRegistry.settings = settings(max_examples=200, deadline=None)

The model alone, from your own events (the names of the table's inputs are the
shipped ones):

>>> model = PendingModel()
>>> request = model.create("r1", requester="agent", target="alice", deadline=1060.0)
>>> model.fire("r1", model.inputs.PROVIDE).name
'EXCHANGING'
>>> model.next_state("r1", model.inputs.REJECT) is None  # answered already: illegal
True
>>> model.expire(2000.0)  # the code is spent: only the exchange ends it
[]
>>> model.fire("r1", model.inputs.EXCHANGE_SUCCEEDED).name
'COMPLETED'
>>> model.is_open("r1"), [event.name for event in request.history]
(False, ['PROVIDE', 'DEADLINE_PASSED', 'EXCHANGE_SUCCEEDED'])
"""

from __future__ import annotations

import importlib
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, TypeVar, Union, overload

from .testing import FakeClock

if TYPE_CHECKING:
    from hypothesis.stateful import MultipleResults, RuleBasedStateMachine
    from hypothesis.strategies import DrawFn, SearchStrategy

    from .core.pending.machine import PendingInput, PendingState

__all__ = [
    "ModelRequest",
    "PendingModel",
    "RegistryFactory",
    "pending_input",
    "pending_inputs",
    "pending_state_machine",
]

StateT = TypeVar("StateT", bound=Enum)
InputT = TypeVar("InputT", bound=Enum)

#: Builds the registry under test; it must read the time only from the given clock.
RegistryFactory = Callable[[FakeClock], Any]

#: The inputs the kit and the model fire by name: the registry's methods stand for them.
_KIT_INPUTS = (
    "PROVIDE",
    "REJECT",
    "EXCHANGE_SUCCEEDED",
    "EXCHANGE_FAILED",
    "DEADLINE_PASSED",
    "REQUESTER_LEFT",
    "TARGET_LEFT",
)
#: The errors the kit expects, looked up in the core package under test.
_KIT_ERRORS = (
    "IllegalTransition",
    "NotAddressedToYou",
    "ProviderError",
    "RoomSecretsError",
    "StateMismatch",
    "TooManyPendingRequests",
    "UnknownRequest",
)


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


@dataclass
class ModelRequest(Generic[StateT, InputT]):
    """One request as the model sees it; only :class:`PendingModel` changes it."""

    request_id: str
    requester: str
    target: str
    deadline: float
    state: StateT
    #: The inputs the request accepted, in order (an illegal input is not recorded).
    history: list[InputT] = field(default_factory=list)
    #: True once its deadline was handled: the registry fires ``DEADLINE_PASSED`` once.
    deadline_passed: bool = False


class PendingModel(Generic[StateT, InputT]):
    """Pending requests as plain data, moved only by a ``TRANSITIONS`` table.

    ``transitions`` maps ``(state, input)`` to the next state (default: the shipped
    ``roomsecrets.core.pending.machine.TRANSITIONS``); its keys give the state and input
    enums (:attr:`states`, :attr:`inputs`). A state with no entry is terminal; a pair
    with no entry is illegal. Requests start in ``initial`` (default: the state named
    ``PENDING``). Raises :class:`ValueError` for an empty table or one whose states or
    inputs come from more than one enum (two copies of the core mixed).
    """

    @overload
    def __init__(
        self: PendingModel[PendingState, PendingInput],
        transitions: None = None,
        *,
        initial: None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        transitions: Mapping[tuple[StateT, InputT], StateT],
        *,
        initial: Optional[StateT] = None,
    ) -> None: ...

    def __init__(
        self,
        transitions: Optional[Mapping[tuple[Any, Any], Any]] = None,
        *,
        initial: Optional[Any] = None,
    ) -> None:
        if transitions is None:
            from .core.pending.machine import TRANSITIONS

            transitions = TRANSITIONS
        table = dict(transitions)
        if not table:
            raise ValueError("the transition table is empty")
        first_state, first_input = next(iter(table))
        states, inputs = type(first_state), type(first_input)
        for (state, event), target in table.items():
            for kind, expected, value in (
                ("state", states, state),
                ("state", states, target),
                ("input", inputs, event),
            ):
                if type(value) is not expected:
                    raise ValueError(
                        f"the table mixes {kind} enums: {_qualified(type(value))} and "
                        f"{_qualified(expected)}"
                    )
        if initial is None and "PENDING" not in states.__members__:
            raise ValueError(f"{_qualified(states)} has no PENDING: pass initial=")
        if initial is not None and type(initial) is not states:
            raise ValueError(f"initial must be a member of {_qualified(states)}")
        #: The state enum and the input enum the table is written in.
        self.states: type[StateT] = states
        self.inputs: type[InputT] = inputs
        self._table: dict[tuple[StateT, InputT], StateT] = table
        #: The state every request starts in.
        self.initial: StateT = states["PENDING"] if initial is None else initial
        #: States with no way out, read from the table.
        self.terminal_states: frozenset[StateT] = frozenset(
            state for state in states if not any(key[0] is state for key in table)
        )
        self._requests: dict[str, ModelRequest[StateT, InputT]] = {}

    @property
    def transitions(self) -> Mapping[tuple[StateT, InputT], StateT]:
        """The table the model follows (read-only)."""
        return MappingProxyType(self._table)

    @property
    def requests(self) -> Mapping[str, ModelRequest[StateT, InputT]]:
        """Every request ever created, ended ones included, in creation order."""
        return MappingProxyType(self._requests)

    def create(
        self, request_id: str, *, requester: str, target: str, deadline: float
    ) -> ModelRequest[StateT, InputT]:
        """Add a request in the initial state; raises :class:`ValueError` for a used id."""
        if request_id in self._requests:
            raise ValueError("the model already has a request with this id")
        request: ModelRequest[StateT, InputT] = ModelRequest(
            request_id=request_id,
            requester=requester,
            target=target,
            deadline=deadline,
            state=self.initial,
        )
        self._requests[request_id] = request
        return request

    def state(self, request_id: str) -> StateT:
        """The state of request ``request_id``; raises :class:`KeyError` for an unknown id."""
        return self._requests[request_id].state

    def is_open(self, request_id: str) -> bool:
        """True while the request is in a state that is not terminal."""
        return self.state(request_id) not in self.terminal_states

    def next_state(self, request_id: str, event: InputT) -> Optional[StateT]:
        """The state ``event`` would lead to, or None when the table has no entry."""
        return self._table.get((self.state(request_id), event))

    def fire(self, request_id: str, event: InputT) -> StateT:
        """Apply ``event`` and return the new state.

        Raises :class:`ValueError` and changes nothing when the table has no entry.
        """
        request = self._requests[request_id]
        target = self._table.get((request.state, event))
        if target is None:
            raise ValueError(f"{event.name} is not allowed in state {request.state.name}")
        request.state = target
        request.history.append(event)
        return target

    def expire(self, now: float) -> list[str]:
        """What a registry does as of ``now``: ``DEADLINE_PASSED`` to each open request due.

        Each request gets it once, the first time its deadline is at or before ``now``
        (where the table allows it). Returns the ids of the requests that ended.
        """
        passed = self.inputs["DEADLINE_PASSED"]
        ended = []
        for request in self._requests.values():
            if request.deadline_passed or request.deadline > now:
                continue
            if request.state in self.terminal_states:
                continue
            request.deadline_passed = True
            if (request.state, passed) in self._table:
                self.fire(request.request_id, passed)
                if request.state in self.terminal_states:
                    ended.append(request.request_id)
        return ended

    def participant_left(self, participant_id: str) -> list[str]:
        """``participant_id`` left: ``REQUESTER_LEFT`` or ``TARGET_LEFT`` to its open requests.

        A request it asked for gets ``REQUESTER_LEFT`` (also when it asked itself), one
        it was asked gets ``TARGET_LEFT``. Returns the ids of the requests that ended.
        """
        ended = []
        for request in self._requests.values():
            if request.state in self.terminal_states:
                continue
            if participant_id == request.requester:
                event = self.inputs["REQUESTER_LEFT"]
            elif participant_id == request.target:
                event = self.inputs["TARGET_LEFT"]
            else:
                continue
            if (request.state, event) in self._table:
                self.fire(request.request_id, event)
                if request.state in self.terminal_states:
                    ended.append(request.request_id)
        return ended

    def open_count(self, participant_id: str) -> tuple[int, int]:
        """``(open requests asked by, open requests addressed to)`` ``participant_id``."""
        asked = addressed = 0
        for request in self._requests.values():
            if request.state not in self.terminal_states:
                asked += request.requester == participant_id
                addressed += request.target == participant_id
        return asked, addressed

    def pending_for_target(self, participant_id: str) -> list[str]:
        """Ids of the requests addressed to ``participant_id`` still in the initial state."""
        return [
            request.request_id
            for request in self._requests.values()
            if request.target == participant_id and request.state is self.initial
        ]


# --- strategies ---------------------------------------------------------------------


@overload
def pending_input(transitions: None = None) -> SearchStrategy[PendingInput]: ...


@overload
def pending_input(
    transitions: Mapping[tuple[StateT, InputT], StateT],
) -> SearchStrategy[InputT]: ...


def pending_input(
    transitions: Optional[Mapping[tuple[Any, Any], Any]] = None,
) -> SearchStrategy[Any]:
    """A Hypothesis strategy for one input of the table's input enum (legal or not)."""
    from hypothesis import strategies as st

    model: PendingModel[Any, Any] = PendingModel(transitions)
    inputs: type[Enum] = model.inputs
    return st.sampled_from(list(inputs))


@overload
def pending_inputs(
    transitions: None = None, *, legal_only: bool = False, max_size: int = 20
) -> SearchStrategy[list[PendingInput]]: ...


@overload
def pending_inputs(
    transitions: Mapping[tuple[StateT, InputT], StateT],
    *,
    legal_only: bool = False,
    max_size: int = 20,
) -> SearchStrategy[list[InputT]]: ...


def pending_inputs(
    transitions: Optional[Mapping[tuple[Any, Any], Any]] = None,
    *,
    legal_only: bool = False,
    max_size: int = 20,
) -> SearchStrategy[list[Any]]:
    """A Hypothesis strategy for sequences of at most ``max_size`` inputs.

    By default any input may follow any other, so sequences mix legal and illegal
    inputs. With ``legal_only=True`` each input is one the table allows in the state
    the previous ones led to, starting from the initial state; such a sequence stops
    early at a terminal state.

    >>> from hypothesis import given
    >>> @given(pending_inputs(legal_only=True))
    ... def test_a_legal_sequence_stops_at_a_terminal_state(inputs):
    ...     model = PendingModel()
    ...     model.create("r", requester="agent", target="alice", deadline=60.0)
    ...     for event in inputs:
    ...         assert model.is_open("r")
    ...         model.fire("r", event)
    >>> test_a_legal_sequence_stops_at_a_terminal_state()
    """
    from hypothesis import strategies as st

    if type(max_size) is not int or max_size < 0:
        raise ValueError("max_size must be an int >= 0")
    model: PendingModel[Any, Any] = PendingModel(transitions)
    inputs: type[Enum] = model.inputs
    if not legal_only:
        return st.lists(st.sampled_from(list(inputs)), max_size=max_size)
    table = model.transitions

    @st.composite
    def legal_walk(draw: DrawFn) -> list[Any]:
        state = model.initial
        walked: list[Any] = []
        for _ in range(draw(st.integers(min_value=0, max_value=max_size))):
            legal = [event for event in inputs if (state, event) in table]
            if not legal:
                break
            event = draw(st.sampled_from(legal))
            walked.append(event)
            state = table[state, event]
        return walked

    return legal_walk()


# --- the state machine --------------------------------------------------------------

#: Few participants, so that requests share requesters and targets and bounds are hit.
_PARTICIPANTS = ("alice", "bob", "carol")
_START = 1000.0
#: Whole seconds, so that deadlines are exact; one clock step may pass a deadline or not.
_MAX_TIMEOUT = 30
_MAX_ADVANCE = 20
_MAX_JUMP_BACK = 30
_VERIFIER = "V" * 43 + "-pending-kit"
_CLIENT_SECRET = "pending-kit-client-secret"
_SCOPES = ("s",)
_AUTHORIZATION_URL = "https://as.example/auth?state="
_REJECT_REASONS = ("user_cancelled", "invalid_state")


class _Core:
    """What the kit takes from one core package: the table, the errors, the registry."""

    def __init__(self, core: Optional[ModuleType]) -> None:
        if core is None:
            from . import core as shipped

            core = shipped
        self.name = core.__name__
        machine = importlib.import_module(f"{core.__name__}.pending.machine")
        self.transitions: Mapping[tuple[Any, Any], Any] = machine.TRANSITIONS
        self.errors: dict[str, type[BaseException]] = {}
        for name in _KIT_ERRORS:
            error = getattr(core, name, None)
            if not (isinstance(error, type) and issubclass(error, BaseException)):
                raise TypeError(f"{core.__name__} has no exception class {name}")
            self.errors[name] = error
        self.package = core

    def registry(self, clock: FakeClock, per_requester: int, per_target: int) -> Any:
        return self.package.PendingRegistry(
            clock=clock, max_open_per_requester=per_requester, max_open_per_target=per_target
        )


def _note(label: str) -> None:
    """``hypothesis.event`` when Hypothesis runs the machine; nothing when a test calls it."""
    from hypothesis import currently_in_test_context, event

    if currently_in_test_context():
        event(label)


# A returned request's repr is long (it hides its secrets): the start says enough.
_SHORT = reprlib.Repr()
_SHORT.maxother = 60


def _raises(error: type[BaseException], call: Callable[[], object], what: str) -> BaseException:
    """Call ``call`` and return the ``error`` it raised; any other ending breaks the rules."""
    try:
        result = call()
    except error as exc:
        return exc
    except Exception as exc:
        hint = _another_copy(type(exc)) if type(exc).__name__ == error.__name__ else ""
        raise AssertionError(
            f"{what}: expected {error.__name__}, got {type(exc).__name__}: {exc}{hint}"
        ) from exc
    shown = _SHORT.repr(result)
    raise AssertionError(f"{what}: expected {error.__name__}, but the call returned {shown}")


def _another_copy(kind: type) -> str:
    """Say why a value named like the expected one is not it: two copies of the core."""
    return (
        f" (the same name from another module, {kind.__module__}: is the registry from"
        " another copy of the core? pass that copy as core=)"
    )


def _same_state(got: object, want: Enum, what: str) -> None:
    if got is want:
        return
    hint = ""
    if isinstance(got, Enum) and got.name == want.name:
        hint = _another_copy(type(got))
    raise AssertionError(f"{what}: the registry says {got!r}, the model says {want!r}{hint}")


@dataclass
class _Expected:
    """The outcome a request that ended must have delivered, beyond its state."""

    #: Fields that must be the very object the kit passed (a result, an error).
    same: dict[str, object] = field(default_factory=dict)
    #: Fields that must equal a value (a reason).
    equal: dict[str, object] = field(default_factory=dict)


def pending_state_machine(
    make_registry: Optional[RegistryFactory] = None,
    *,
    core: Optional[ModuleType] = None,
    transitions: Optional[Mapping[tuple[Any, Any], Any]] = None,
    max_open_per_requester: int = 3,
    max_open_per_target: int = 4,
) -> type[RuleBasedStateMachine]:
    """Return a Hypothesis state machine checking registries from ``make_registry``.

    ``make_registry(clock)`` builds a fresh, empty registry that reads the time only
    from ``clock`` (a :class:`~roomsecrets.testing.FakeClock` starting at 1000.0 that
    the machine moves forward and back); it must accept the calls of
    :class:`~roomsecrets.core.PendingRegistry` that change or read requests. The default
    builds ``<core>.PendingRegistry(clock=clock, max_open_per_requester=3,
    max_open_per_target=4)`` with the two bounds given here: small, so that the steps
    reach them. With your own ``make_registry``, pass the bounds it sets.

    ``core`` is the core package the registry comes from (default ``roomsecrets.core``;
    for a copy vendored under another name, that package): the kit takes from it the
    table, the exceptions it expects (``IllegalTransition``, ``UnknownRequest``,
    ``NotAddressedToYou``, ``StateMismatch``, ``TooManyPendingRequests``) and the
    ``ProviderError`` it passes to ``exchange_failed``. ``transitions`` replaces the
    table (in that core's enums), to check a registry against a table you changed or
    extended.

    The steps: create (refused at a bound), provide (by the target or not, with the
    right state, a wrong one or none), reject, exchange succeeded, exchange failed,
    cancel, a participant leaving, ``expire_due`` (as of the clock or a given time),
    answers to unknown ids, ``next_deadline``, and the clock moving forward, landing on a
    deadline or jumping back; three more pick a request in the state they need (a
    waiting request is answered, the target answers a second time, an exchanging
    request ends or is cancelled), so that deep paths are as common as refusals.

    After every step the machine checks that each request's state and lookups match
    the model and that ended ones are gone; that each ended request delivered exactly
    one outcome, with the model's state and the result, error or reason of the call
    that ended it, and open ones none; that no request accepted two answers; that
    nothing past its deadline is still answerable; and that the bounds hold. A step
    the table makes illegal must raise the error the registry documents, and the
    registry must then still match the model; a step it allows must not raise.

    Run it with ``run_state_machine_as_test(machine)`` or as
    ``TestMine = pending_state_machine(make).TestCase``; subclass it to add rules
    (``self.registry``, ``self.model``, ``self.clock``) or to count the cases reached
    (override ``note(label)``). Raises :class:`ValueError` for a table without the
    inputs the steps stand for, or a bound below 1, and :class:`TypeError` for a
    ``core`` without the exceptions above.
    """
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        Bundle,
        RuleBasedStateMachine,
        invariant,
        multiple,
        precondition,
        rule,
    )

    parts = _Core(core)
    table = parts.transitions if transitions is None else transitions
    template: PendingModel[Any, Any] = PendingModel(table)
    missing = [name for name in _KIT_INPUTS if name not in template.inputs.__members__]
    if missing:
        raise ValueError(f"the table's inputs have no {', '.join(missing)}")
    inputs = template.inputs
    #: Where PROVIDE leads from the initial state: the state an exchange ends.
    exchanging = template.transitions.get((template.initial, inputs["PROVIDE"]))
    errors = parts.errors
    for name, bound in (
        ("max_open_per_requester", max_open_per_requester),
        ("max_open_per_target", max_open_per_target),
    ):
        if type(bound) is not int or bound < 1:
            raise ValueError(f"{name} must be an int >= 1")
    if make_registry is None:

        def make_default(clock: FakeClock) -> Any:
            return parts.registry(clock, max_open_per_requester, max_open_per_target)

        build: RegistryFactory = make_default
    else:
        build = make_registry

    class RegistryAgreesWithModel(RuleBasedStateMachine):
        requests: Bundle[str] = Bundle("requests")

        def __init__(self) -> None:
            super().__init__()
            self.clock = FakeClock(start=_START)
            self.registry = build(self.clock)
            self.model: PendingModel[Any, Any] = PendingModel(table)
            #: Creation number -> the request id it created (None: refused).
            self.created: list[Optional[str]] = []
            #: Creation number -> the outcomes its waiter was called with.
            self.outcomes: dict[int, list[Any]] = {}
            self.oauth_states: dict[str, str] = {}
            self.expected: dict[str, _Expected] = {}
            #: Request id -> answers (provide, reject) the registry accepted.
            self.answers: dict[str, int] = {}
            #: The time of the last expiry: every changing call expires first.
            self.swept_at = self.clock.now

        # --- the model's side ------------------------------------------------------

        def note(self, label: str) -> None:
            """Report a case reached (``hypothesis.event``); override to count them."""
            _note(label)

        def sweep(self, now: Optional[float] = None) -> list[str]:
            """What every changing call does first: expire what is due as of ``now``."""
            self.swept_at = self.clock.now if now is None else now
            ended = self.model.expire(self.swept_at)
            for request_id in ended:
                self.expected[request_id] = _Expected()
            for request in self.model.requests.values():
                if request.deadline <= self.swept_at and self.model.is_open(request.request_id):
                    self.note("deadline passed while open (exchanging)")
            return ended

        def fire(self, request_id: str, name: str, expected: _Expected) -> Any:
            state = self.model.fire(request_id, inputs[name])
            if not self.model.is_open(request_id):
                self.expected[request_id] = expected
            return state

        def waiter_for(self, creation: int) -> Callable[[Any], None]:
            got = self.outcomes.setdefault(creation, [])
            return got.append

        def refusal(self, request_id: str, by: Optional[str], name: str) -> Optional[str]:
            """The error a call for input ``name`` must raise, in the registry's order."""
            if not self.model.is_open(request_id):
                return "UnknownRequest"  # an ended request has left the registry
            if by is not None and by != self.model.requests[request_id].target:
                return "NotAddressedToYou"
            if self.model.next_state(request_id, inputs[name]) is None:
                return "IllegalTransition"
            return None

        def refused(self, error: str, call: Callable[[], object], what: str) -> None:
            self.note(f"{what.split()[0]} refused: {error}")
            _raises(errors[error], call, what)
            self.check_agreement(f"after {what} was refused ({error}): nothing may change")

        def succeeds(self, call: Callable[[], Any], what: str) -> Any:
            """Make a call the model allows; the core's errors from it break the rules."""
            try:
                return call()
            except errors["RoomSecretsError"] as exc:
                raise AssertionError(
                    f"{what}: the table allows it, but the registry raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

        def describe(self, request_id: str) -> str:
            return f"request {request_id!r} in {self.model.state(request_id).name}"

        # --- rules ----------------------------------------------------------------

        @rule(
            target=requests,
            requester=st.sampled_from(_PARTICIPANTS),
            target_participant=st.sampled_from(_PARTICIPANTS),
            timeout=st.integers(min_value=1, max_value=_MAX_TIMEOUT),
        )
        def create(
            self, requester: str, target_participant: str, timeout: int
        ) -> Union[str, MultipleResults[str]]:
            self.sweep()
            now = self.clock.now
            creation = len(self.created)

            def call() -> Any:
                return self.registry.create(
                    requester=requester,
                    target=target_participant,
                    client_id="app",
                    authorization_endpoint="https://as.example/auth",
                    token_endpoint="https://as.example/token",
                    redirect_uri="https://app.example/cb",
                    scopes=_SCOPES,
                    code_verifier=_VERIFIER,
                    client_secret=_CLIENT_SECRET,
                    timeout=timeout,
                    build_authorization_url=lambda r: _AUTHORIZATION_URL + r.oauth_state,
                    waiter=self.waiter_for(creation),
                )

            if (
                self.model.open_count(requester)[0] >= max_open_per_requester
                or self.model.open_count(target_participant)[1] >= max_open_per_target
            ):
                self.created.append(None)
                self.refused("TooManyPendingRequests", call, "create past a bound")
                return multiple()
            request = self.succeeds(call, "create")
            request_id = request.request_id
            assert isinstance(request_id, str) and request_id not in self.model.requests, (
                f"create returned the id {request_id!r}, which is not new"
            )
            assert request.oauth_state != request_id, "the OAuth state equals the request id"
            assert request.oauth_state not in self.oauth_states.values(), (
                "create returned an OAuth state another request had"
            )
            assert (request.requester, request.target) == (requester, target_participant), (
                f"create returned {request!r} for {requester!r} -> {target_participant!r}"
            )
            assert (request.created_at, request.deadline) == (now, now + timeout), (
                f"create at {now} with timeout {timeout} returned {request!r}"
            )
            assert request.code_verifier == _VERIFIER, "create lost the code verifier"
            assert request.client_secret == _CLIENT_SECRET, "create lost the client secret"
            assert request.scopes == _SCOPES, f"create returned scopes {request.scopes!r}"
            assert request.authorization_url == _AUTHORIZATION_URL + request.oauth_state, (
                "the authorization URL was not built from the request's OAuth state"
            )
            self.model.create(
                request_id, requester=requester, target=target_participant, deadline=now + timeout
            )
            self.created.append(request_id)
            self.oauth_states[request_id] = request.oauth_state
            self.answers[request_id] = 0
            return request_id

        @rule(
            request_id=requests,
            as_target=st.booleans(),
            other=st.sampled_from(_PARTICIPANTS),
            state_choice=st.sampled_from(["none", "right", "wrong"]),
        )
        def provide(self, request_id: str, as_target: bool, other: str, state_choice: str) -> None:
            self.sweep()
            by = self.model.requests[request_id].target if as_target else other
            state = {
                "none": None,
                "right": self.oauth_states[request_id],
                "wrong": "x" * 22,
            }[state_choice]
            error = self.refusal(request_id, by, "PROVIDE")
            if error is None and state_choice == "wrong":
                error = "StateMismatch"
            what = f"provide by {by!r} ({state_choice} state) for {self.describe(request_id)}"

            def call() -> Any:
                return self.registry.provide(request_id, by=by, state=state)

            if error is not None:
                self.refused(error, call, what)
                return
            request = self.succeeds(call, what)
            assert request.request_id == request_id, f"{what} returned {request!r}"
            assert request.code_verifier == _VERIFIER, f"{what} lost the code verifier"
            self.answers[request_id] += 1
            self.fire(request_id, "PROVIDE", _Expected())

        @rule(
            request_id=requests,
            as_target=st.booleans(),
            other=st.sampled_from(_PARTICIPANTS),
            reason=st.sampled_from(_REJECT_REASONS),
        )
        def reject(self, request_id: str, as_target: bool, other: str, reason: str) -> None:
            self.sweep()
            by = self.model.requests[request_id].target if as_target else other
            error = self.refusal(request_id, by, "REJECT")
            what = f"reject by {by!r} for {self.describe(request_id)}"

            def call() -> Any:
                return self.registry.reject(request_id, by=by, error=reason)

            if error is not None:
                self.refused(error, call, what)
                return
            self.succeeds(call, what)
            self.answers[request_id] += 1
            self.fire(request_id, "REJECT", _Expected(equal={"error": reason}))

        @rule(request_id=requests)
        def exchange_succeeded(self, request_id: str) -> None:
            self.sweep()
            result = object()
            error = self.refusal(request_id, None, "EXCHANGE_SUCCEEDED")
            what = f"exchange_succeeded for {self.describe(request_id)}"

            def call() -> Any:
                return self.registry.exchange_succeeded(request_id, result)

            if error is not None:
                self.refused(error, call, what)
                return
            self.succeeds(call, what)
            self.fire(request_id, "EXCHANGE_SUCCEEDED", _Expected(same={"result": result}))

        @rule(request_id=requests)
        def exchange_failed(self, request_id: str) -> None:
            self.sweep()
            failure = errors["ProviderError"]("the provider is down")
            error = self.refusal(request_id, None, "EXCHANGE_FAILED")
            what = f"exchange_failed for {self.describe(request_id)}"

            def call() -> Any:
                return self.registry.exchange_failed(request_id, failure)

            if error is not None:
                self.refused(error, call, what)
                return
            self.succeeds(call, what)
            self.fire(request_id, "EXCHANGE_FAILED", _Expected(same={"error": failure}))

        # Any request from the bundle is most often ended by the time a rule picks it,
        # which tests refusals well and deep paths rarely. These three pick a request
        # in the state they need, so that answers, second answers and exchanges
        # (and what happens during one) run often too.

        def in_state(self, state: Any) -> list[str]:
            return [rid for rid, r in self.model.requests.items() if r.state is state]

        @precondition(lambda self: bool(self.in_state(self.model.initial)))
        @rule(
            pick=st.integers(min_value=0, max_value=7),
            as_target=st.booleans(),
            other=st.sampled_from(_PARTICIPANTS),
            answer=st.sampled_from(["right", "none", "wrong", "reject"]),
        )
        def a_waiting_request_is_answered(
            self, pick: int, as_target: bool, other: str, answer: str
        ) -> None:
            waiting = self.in_state(self.model.initial)
            request_id = waiting[pick % len(waiting)]
            if answer == "reject":
                self.reject(request_id, as_target, other, _REJECT_REASONS[0])
            else:
                self.provide(request_id, as_target, other, answer)

        @precondition(lambda self: any(self.answers.values()))
        @rule(
            pick=st.integers(min_value=0, max_value=7),
            answer=st.sampled_from(["right", "reject"]),
        )
        def the_target_answers_again(self, pick: int, answer: str) -> None:
            # The rule a UI must never break: a request takes one answer.
            answered = [rid for rid, answers in self.answers.items() if answers]
            request_id = answered[pick % len(answered)]
            target = self.model.requests[request_id].target
            if answer == "reject":
                self.reject(request_id, True, target, _REJECT_REASONS[0])
            else:
                self.provide(request_id, True, target, answer)

        @precondition(lambda self: bool(self.in_state(exchanging)))
        @rule(
            pick=st.integers(min_value=0, max_value=7),
            call=st.sampled_from(["exchange_succeeded", "exchange_failed", "cancel"]),
        )
        def an_exchanging_request_gets(self, pick: int, call: str) -> None:
            busy = self.in_state(exchanging)
            request_id = busy[pick % len(busy)]
            getattr(self, call)(request_id)

        @rule(request_id=requests)
        def cancel(self, request_id: str) -> None:
            self.sweep()
            error = self.refusal(request_id, None, "REQUESTER_LEFT")
            what = f"cancel of {self.describe(request_id)}"

            def call() -> Any:
                return self.registry.cancel(request_id)

            if error is not None:
                self.refused(error, call, what)
                return
            ended = self.succeeds(call, what)
            self.fire(
                request_id, "REQUESTER_LEFT", _Expected(equal={"reason": "requester_cancelled"})
            )
            self.note(f"cancel ended the request: {ended}")
            assert ended is (not self.model.is_open(request_id)), (
                f"{what} returned {ended!r}; the request is now {self.model.state(request_id).name}"
            )

        @rule(participant=st.sampled_from(_PARTICIPANTS))
        def participant_left(self, participant: str) -> None:
            self.sweep()
            expected = self.model.participant_left(participant)
            for request_id in expected:
                reason = self.model.requests[request_id].history[-1].value
                self.expected[request_id] = _Expected(equal={"reason": reason})
            ended = self.succeeds(
                partial(self.registry.participant_left, participant),
                f"participant_left({participant!r})",
            )
            got = [request.request_id for request in ended]
            assert sorted(got) == sorted(expected), (
                f"participant_left({participant!r}) ended {sorted(got)}, "
                f"expected {sorted(expected)}"
            )

        @rule(at=st.sampled_from([None, -3.0, 0.0, 3.0]))
        def expire_due(self, at: Optional[float]) -> None:
            now = None if at is None else self.clock.now + at
            expected = self.sweep(now)
            expire = self.registry.expire_due
            ended = self.succeeds(
                expire if now is None else partial(expire, now), f"expire_due({now})"
            )
            got = [request.request_id for request in ended]
            assert sorted(got) == sorted(expected), (
                f"expire_due({now}) at {self.clock.now} ended {sorted(got)}, "
                f"expected {sorted(expected)}"
            )

        @rule(
            request_id=st.text(max_size=30),
            operation=st.sampled_from(
                ["provide", "reject", "exchange_succeeded", "exchange_failed", "cancel"]
            ),
        )
        def answer_an_unknown_id(self, request_id: str, operation: str) -> None:
            if request_id in self.model.requests:
                return
            self.sweep()
            registry = self.registry
            calls: dict[str, Callable[[], object]] = {
                "provide": lambda: registry.provide(request_id, by="alice"),
                "reject": lambda: registry.reject(request_id, by="alice", error="no"),
                "exchange_succeeded": lambda: registry.exchange_succeeded(request_id, object()),
                "exchange_failed": lambda: registry.exchange_failed(
                    request_id, errors["ProviderError"]("down")
                ),
                "cancel": lambda: registry.cancel(request_id),
            }
            self.refused("UnknownRequest", calls[operation], f"{operation} of an unknown id")

        @rule()
        def next_deadline(self) -> None:
            # Read-only: the registry expires nothing here, so neither does the model.
            reported = self.registry.next_deadline()
            open_ids = [rid for rid in self.model.requests if self.model.is_open(rid)]
            waiting = [
                self.model.requests[rid].deadline
                for rid in open_ids
                if self.model.state(rid) is self.model.initial
            ]
            if waiting:
                assert reported is not None and reported <= min(waiting), (
                    f"next_deadline() is {reported}, but a request waits until {min(waiting)}"
                )
            if not open_ids:
                assert reported is None, f"next_deadline() is {reported} with nothing open"

        @rule(seconds=st.integers(min_value=0, max_value=_MAX_ADVANCE))
        def advance_clock(self, seconds: int) -> None:
            self.clock.advance(seconds)

        @rule(request_id=requests)
        def advance_clock_to_deadline(self, request_id: str) -> None:
            # Land exactly on a deadline, where ``deadline <= now`` has just become true.
            deadline = self.model.requests[request_id].deadline
            if deadline > self.clock.now:
                self.clock.advance(deadline - self.clock.now)

        @rule(seconds=st.integers(min_value=1, max_value=_MAX_JUMP_BACK))
        def clock_jumps_back(self, seconds: int) -> None:
            # A wall clock may be set back; what expired stays expired.
            self.note("clock jumped back")
            self.clock.now -= seconds

        # --- invariants -----------------------------------------------------------

        def check_agreement(self, context: str) -> None:
            registry, model = self.registry, self.model
            for request_id in model.requests:
                what = f"{context}: {self.describe(request_id)}"
                oauth_state = self.oauth_states[request_id]
                if model.is_open(request_id):
                    assert request_id in registry, f"{what} is not in the registry"
                    _same_state(registry.state_of(request_id), model.state(request_id), what)
                    assert registry.get(request_id).request_id == request_id, what
                    found = registry.find_by_oauth_state(oauth_state)
                    assert found.request_id == request_id, f"{what}: its OAuth state finds another"
                    _raises(
                        errors["UnknownRequest"],
                        partial(registry.find_by_oauth_state, request_id),
                        f"{what}: its id used as an OAuth state",
                    )
                else:
                    assert request_id not in registry, f"{what} is still in the registry"
                    for lookup in (registry.state_of, registry.get):
                        _raises(errors["UnknownRequest"], partial(lookup, request_id), what)
                    _raises(
                        errors["UnknownRequest"],
                        partial(registry.find_by_oauth_state, oauth_state),
                        f"{what}: found by its OAuth state",
                    )
            # After the requests one by one, so that a failure names the request.
            open_ids = [rid for rid in model.requests if model.is_open(rid)]
            assert len(registry) == len(open_ids), (
                f"{context}: the registry holds {len(registry)} requests, the model {len(open_ids)}"
            )
            for participant in _PARTICIPANTS:
                listed = registry.pending_for_target(participant)
                waiting = [request.request_id for request in listed]
                assert waiting == model.pending_for_target(participant), (
                    f"{context}: pending_for_target({participant!r}) is {waiting}, "
                    f"expected {model.pending_for_target(participant)}"
                )
                counts = tuple(registry.open_count(participant))
                assert counts == model.open_count(participant), (
                    f"{context}: open_count({participant!r}) is {counts}, "
                    f"expected {model.open_count(participant)}"
                )

        # One invariant runs the five checks, so that a failing example Hypothesis
        # prints has one line per step; each check can also be called alone.
        @invariant()
        def the_registry_keeps_the_rules(self) -> None:
            self.registry_agrees_with_the_model()
            self.every_request_ends_exactly_once()
            self.no_answer_lands_twice()
            self.nothing_past_its_deadline_is_still_answerable()
            self.the_bounds_hold()

        def registry_agrees_with_the_model(self) -> None:
            self.check_agreement("after the last step")

        def every_request_ends_exactly_once(self) -> None:
            for creation, request_id in enumerate(self.created):
                got = self.outcomes.get(creation, [])
                if request_id is None:
                    assert got == [], f"the waiter of a refused create was called: {got!r}"
                    continue
                if self.model.is_open(request_id):
                    assert got == [], f"{self.describe(request_id)} already delivered {got!r}"
                    continue
                assert len(got) == 1, (
                    f"{self.describe(request_id)} delivered {len(got)} outcomes: {got!r}"
                )
                (outcome,) = got
                want = self.model.state(request_id)
                assert outcome.request_id == request_id, (
                    f"the waiter of {request_id!r} got the outcome of {outcome.request_id!r}"
                )
                _same_state(outcome.state, want, f"the outcome {outcome!r}")
                # A subclass's own step may end a request through self.model alone:
                # then its outcome is checked by state only.
                expected = self.expected.get(request_id, _Expected())
                for name, value in expected.same.items():
                    assert getattr(outcome, name) is value, (
                        f"{outcome!r}: {name} is not the one the registry was given"
                    )
                for name, value in expected.equal.items():
                    assert getattr(outcome, name) == value, (
                        f"{outcome!r}: {name} is {getattr(outcome, name)!r}, expected {value!r}"
                    )

        def no_answer_lands_twice(self) -> None:
            for request_id, answers in self.answers.items():
                assert answers <= 1, f"{self.describe(request_id)} accepted {answers} answers"

        def nothing_past_its_deadline_is_still_answerable(self) -> None:
            for request_id, request in self.model.requests.items():
                if request.deadline <= self.swept_at:
                    assert self.model.state(request_id) is not self.model.initial, (
                        f"the model left {request_id!r} waiting past its deadline"
                    )
            for participant in _PARTICIPANTS:
                for request in self.registry.pending_for_target(participant):
                    assert request.deadline > self.swept_at, (
                        f"{request!r} is still waiting after its deadline passed "
                        f"(last expiry at {self.swept_at})"
                    )

        def the_bounds_hold(self) -> None:
            for participant in _PARTICIPANTS:
                asked, addressed = self.registry.open_count(participant)
                assert asked <= max_open_per_requester, (
                    f"{participant!r} has {asked} open requests, the bound is "
                    f"{max_open_per_requester}"
                )
                assert addressed <= max_open_per_target, (
                    f"{participant!r} is asked {addressed} open requests, the bound is "
                    f"{max_open_per_target}"
                )

    RegistryAgreesWithModel.__doc__ = (
        f"A registry driven next to a PendingModel of {parts.name}'s table "
        f"(bounds {max_open_per_requester} per requester, {max_open_per_target} per target)."
    )
    return RegistryAgreesWithModel
