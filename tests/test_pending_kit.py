"""The pending-request kit (roomsecrets/pending_kit.py, re-exported by roomsecrets.testing).

The model follows the table it is given and nothing else; the machine reaches every
case on the shipped registry (tests/core/test_pending_registry.py runs it in full),
passes a copy of the core vendored under another name, and fails on registries broken
on purpose. Only the standard library, pytest and Hypothesis.
"""

from __future__ import annotations

import doctest
import importlib
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.stateful import run_state_machine_as_test

import roomsecrets.core
import roomsecrets.testing as testing
from roomsecrets import pending_kit
from roomsecrets.core.errors import IllegalTransition, NotAddressedToYou
from roomsecrets.core.pending import machine as machine_module
from roomsecrets.core.pending import registry as registry_module
from roomsecrets.core.pending.machine import (
    TERMINAL_STATES,
    TRANSITIONS,
    PendingInput,
    PendingMachine,
    PendingState,
)
from roomsecrets.core.pending.registry import PendingRegistry, PendingRequest
from roomsecrets.pending_kit import PendingModel, pending_input, pending_inputs
from roomsecrets.testing import FakeClock, pending_state_machine

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "roomsecrets" / "core"

#: For a machine that must fail: no shrinking (the minimal sequences are in
#: docs/property-testing.md), a fixed seed, and many more examples than any of the
#: broken registries below needed to fail in 15 random runs each (at most 129).
MUST_FAIL = settings(
    max_examples=500,
    stateful_step_count=50,
    phases=[Phase.generate],
    derandomize=True,
    database=None,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
)
#: For a machine that must pass, when the full run is elsewhere.
QUICK = settings(
    max_examples=40,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


# --- importing --------------------------------------------------------------------------


def test_importing_roomsecrets_testing_loads_neither_the_kit_nor_hypothesis() -> None:
    code = (
        "import sys, roomsecrets.testing as t\n"
        "def loaded(): return [m in sys.modules for m in ('roomsecrets.pending_kit', 'hypothesis')]\n"
        "print(loaded())\n"
        "t.PendingModel, t.pending_inputs, t.pending_input, t.pending_state_machine\n"
        "model = t.PendingModel()\n"
        "model.create('r', requester='a', target='b', deadline=1.0)\n"
        "model.fire('r', model.inputs.PROVIDE)\n"
        "print(loaded())\n"
        "t.pending_state_machine()\n"
        "print(loaded())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == [
        "[False, False]",  # import roomsecrets.testing
        "[True, False]",  # the names and the model: the kit, still no Hypothesis
        "[True, True]",  # a machine built
    ]


def test_the_model_runs_without_any_third_party_package() -> None:
    # -I -S: no site-packages at all, so Hypothesis cannot be imported.
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from roomsecrets.testing import PendingModel, pending_state_machine\n"
        "model = PendingModel()\n"
        "model.create('r', requester='a', target='b', deadline=1.0)\n"
        "assert model.expire(1.0) == ['r']\n"
        "bad = [n for n, m in sys.modules.items() if 'site-packages' in (getattr(m, '__file__', '') or '')]\n"
        "assert not bad, bad\n"
        "try:\n"
        "    pending_state_machine()\n"
        "except ModuleNotFoundError as exc:\n"
        "    print('needs', exc.name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "needs hypothesis"


def test_the_public_names_are_the_kits_and_the_core_exports_the_registry() -> None:
    for name in ("PendingModel", "pending_input", "pending_inputs", "pending_state_machine"):
        assert getattr(testing, name) is getattr(pending_kit, name)
        assert name in testing.__all__
    assert roomsecrets.core.PendingRegistry is registry_module.PendingRegistry
    assert "PendingRegistry" in roomsecrets.core.__all__


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(pending_kit, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8
    assert result.failed == 0


# --- the model ----------------------------------------------------------------------------


def _paths_from(model: PendingModel[Any, Any]) -> dict[Any, list[Any]]:
    """For each state the table reaches from the initial one, the inputs that lead there."""
    paths: dict[Any, list[Any]] = {model.initial: []}
    frontier = [model.initial]
    while frontier:
        state = frontier.pop()
        for (source, event), target in model.transitions.items():
            if source is state and target not in paths:
                paths[target] = [*paths[state], event]
                frontier.append(target)
    return paths


def test_the_model_follows_the_shipped_table_pair_by_pair() -> None:
    model = PendingModel()
    assert model.terminal_states == TERMINAL_STATES
    assert model.initial is PendingState.PENDING
    paths = _paths_from(model)
    assert set(paths) == set(PendingState)
    for number, (state, path) in enumerate(paths.items()):
        for event in PendingInput:
            request_id = f"{number}-{event.name}"
            model.create(request_id, requester="agent", target="alice", deadline=60.0)
            for step in path:
                model.fire(request_id, step)
            assert model.state(request_id) is state
            allowed = TRANSITIONS.get((state, event))
            assert model.next_state(request_id, event) is allowed
            if allowed is None:
                with pytest.raises(ValueError, match=f"{event.name} is not allowed"):
                    model.fire(request_id, event)
                assert model.state(request_id) is state
                assert model.requests[request_id].history == path
            else:
                assert model.fire(request_id, event) is allowed
                assert model.is_open(request_id) is (allowed not in TERMINAL_STATES)


def test_the_model_follows_a_changed_table_and_knows_no_rule_of_its_own() -> None:
    changed = dict(TRANSITIONS)
    changed[PendingState.PENDING, PendingInput.REJECT] = PendingState.CANCELLED
    del changed[PendingState.EXCHANGING, PendingInput.DEADLINE_PASSED]
    changed[PendingState.COMPLETED, PendingInput.PROVIDE] = PendingState.EXCHANGING
    model = PendingModel(changed)
    assert PendingState.COMPLETED not in model.terminal_states
    model.create("r", requester="agent", target="alice", deadline=10.0)
    assert model.fire("r", PendingInput.REJECT) is PendingState.CANCELLED
    model.create("x", requester="agent", target="alice", deadline=10.0)
    model.fire("x", PendingInput.PROVIDE)
    assert model.expire(10.0) == []  # no DEADLINE_PASSED in EXCHANGING: nothing fires
    assert model.requests["x"].history == [PendingInput.PROVIDE]
    model.fire("x", PendingInput.EXCHANGE_SUCCEEDED)
    assert model.is_open("x")  # COMPLETED has a way out in this table
    assert model.fire("x", PendingInput.PROVIDE) is PendingState.EXCHANGING


def test_the_model_refuses_a_table_that_mixes_two_copies_of_the_core() -> None:
    from enum import Enum

    other = Enum("PendingState", [(s.name, s.value) for s in PendingState])  # type: ignore[misc]
    mixed: dict[Any, Any] = dict(TRANSITIONS)
    mixed[other.PENDING, PendingInput.PROVIDE] = other.EXCHANGING
    with pytest.raises(ValueError, match="mixes state enums"):
        PendingModel(mixed)
    with pytest.raises(ValueError, match="empty"):
        PendingModel({})


def test_expiry_and_leaving_fire_once_where_the_registry_does() -> None:
    model = PendingModel()
    model.create("mine", requester="alice", target="alice", deadline=5.0)
    model.create("busy", requester="agent", target="alice", deadline=5.0)
    model.create("later", requester="agent", target="bob", deadline=50.0)
    model.fire("busy", PendingInput.PROVIDE)
    assert model.participant_left("alice") == ["mine"]  # asked itself: one input, once
    assert model.requests["mine"].history == [PendingInput.REQUESTER_LEFT]
    assert model.expire(5.0) == []  # "busy" exchanges on; "mine" had ended
    assert model.expire(6.0) == []
    # The exchanging request took TARGET_LEFT and DEADLINE_PASSED once each, and stays.
    assert model.requests["busy"].history == [
        PendingInput.PROVIDE, PendingInput.TARGET_LEFT, PendingInput.DEADLINE_PASSED,
    ]
    assert model.state("busy") is PendingState.EXCHANGING
    assert model.open_count("agent") == (2, 0)
    assert model.pending_for_target("bob") == ["later"]
    assert model.expire(50.0) == ["later"]
    assert model.state("later") is PendingState.EXPIRED


@given(pending_inputs())
def test_the_model_and_the_shipped_machine_agree_on_any_input_sequence(
    inputs: list[PendingInput],
) -> None:
    model = PendingModel()
    model.create("r", requester="agent", target="alice", deadline=60.0)
    machine = PendingMachine()
    for event in inputs:
        expected = model.next_state("r", event)
        if expected is None:
            with pytest.raises(IllegalTransition):
                machine.fire(event)
        else:
            assert machine.fire(event) is model.fire("r", event)
        assert machine.state is model.state("r")


def test_the_strategies_draw_every_input_and_reach_every_terminal_state() -> None:
    drawn: Counter[PendingInput] = Counter()
    ends: Counter[PendingState] = Counter()

    @settings(max_examples=300, derandomize=True, database=None)
    @given(pending_input(), pending_inputs(legal_only=True))
    def draw(single: PendingInput, legal: list[PendingInput]) -> None:
        drawn[single] += 1
        model = PendingModel()
        model.create("r", requester="agent", target="alice", deadline=60.0)
        for event in legal:
            model.fire("r", event)  # raises if the strategy drew an illegal input
        ends[model.state("r")] += 1

    draw()
    assert set(drawn) == set(PendingInput)
    assert set(TERMINAL_STATES) <= set(ends)
    assert all(ends[state] >= 10 for state in TERMINAL_STATES), ends


def test_the_strategies_follow_a_table_of_another_copy() -> None:
    changed = dict(TRANSITIONS)
    del changed[PendingState.PENDING, PendingInput.REJECT]
    seen: set[PendingInput] = set()

    @settings(max_examples=100, derandomize=True, database=None)
    @given(pending_inputs(changed, legal_only=True, max_size=3))
    def draw(legal: list[PendingInput]) -> None:
        assert len(legal) <= 3
        if legal:
            seen.add(legal[0])

    draw()
    assert PendingInput.REJECT not in seen and PendingInput.PROVIDE in seen


# --- the machine on the shipped registry ----------------------------------------------------


#: The cases the machine's steps must reach, as ``note`` labels and outcome states.
CASES = [
    *(f"outcome {state.name}" for state in TERMINAL_STATES),
    "create refused: TooManyPendingRequests",
    "provide refused: UnknownRequest",
    "provide refused: NotAddressedToYou",
    "provide refused: IllegalTransition",  # a second answer
    "provide refused: StateMismatch",
    "reject refused: UnknownRequest",
    "reject refused: NotAddressedToYou",
    "reject refused: IllegalTransition",
    "exchange_succeeded refused: IllegalTransition",
    "exchange_failed refused: UnknownRequest",
    "cancel refused: UnknownRequest",
    "cancel ended the request: True",
    "cancel ended the request: False",  # the exchange decides
    "deadline passed while open (exchanging)",
    "clock jumped back",
]


class EveryCaseSeen(Exception):
    """Ends a run as soon as every case was reached."""


def test_the_machine_reaches_every_case_on_the_shipped_registry() -> None:
    """Without this, a machine whose steps never reached a case would pass vacuously."""
    seen: Counter[str] = Counter()

    class Counting(pending_state_machine()):  # type: ignore[misc,valid-type]
        def note(self, label: str) -> None:
            seen[label] += 1

        def teardown(self) -> None:
            for outcomes in self.outcomes.values():
                seen.update(f"outcome {outcome.state.name}" for outcome in outcomes)
            if all(seen[case] for case in CASES):
                raise EveryCaseSeen

    # Hypothesis turns rules off for whole examples (swarm testing), so how soon the
    # rarest case comes varies a lot between seeds and releases: 30 to 400 examples
    # in 23 random runs. The cap is far above that; the run stops once all came.
    try:
        run_state_machine_as_test(
            Counting,
            settings=settings(
                max_examples=2000,
                stateful_step_count=50,
                phases=[Phase.generate],
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except EveryCaseSeen:
        return
    never = [case for case in CASES if not seen[case]]
    raise AssertionError(f"cases never reached in 2000 examples: {never}")


# --- the machine on registries broken on purpose ----------------------------------------------

BOUNDS = {"max_open_per_requester": 3, "max_open_per_target": 4}


class AnswersTwice(PendingRegistry[Any]):
    """Broken on purpose: the target may provide a second code while the first is exchanged."""

    def provide(
        self, request_id: str, *, by: str, state: Optional[str] = None, iss: Optional[str] = None
    ) -> PendingRequest:
        if request_id in self and self.state_of(request_id) is PendingState.EXCHANGING:
            request = self.get(request_id)
            if by == request.target:
                return request
        return super().provide(request_id, by=by, state=state, iss=iss)


class ReadsTheClockOnlyOnCreate(PendingRegistry[Any]):
    """Broken on purpose: reads the clock only when a request is created.

    Every other call expires as of the last creation, so after the clock jumps, a
    request past its deadline stays answerable until someone creates another.
    """

    def __init__(self, *, clock: FakeClock, **bounds: int) -> None:
        self.real_clock = clock
        self.last_read = clock()
        super().__init__(clock=lambda: self.last_read, **bounds)

    def create(self, **arguments: Any) -> PendingRequest:
        self.last_read = self.real_clock()
        return super().create(**arguments)


class WrongRejectCancels(PendingRegistry[Any]):
    """Broken on purpose: a rejection by the wrong participant is refused, but cancels."""

    def reject(self, request_id: str, *, by: str, error: str) -> None:
        if request_id in self and by != self.get(request_id).target:
            self.cancel(request_id)
            raise NotAddressedToYou("this request is addressed to another participant")
        super().reject(request_id, by=by, error=error)


def _changed_table_machine(monkeypatch: pytest.MonkeyPatch) -> Any:
    # The registry fires through machine.TRANSITIONS; give it a copy with one
    # transition changed (an exchange that expires, against the module docstring's
    # rule), and the kit the shipped table.
    changed = dict(TRANSITIONS)
    changed[PendingState.EXCHANGING, PendingInput.DEADLINE_PASSED] = PendingState.EXPIRED
    monkeypatch.setattr(machine_module, "TRANSITIONS", changed)
    return pending_state_machine(transitions=TRANSITIONS, **BOUNDS)


def _registry_machine(make: Callable[..., Any], **kit_bounds: int) -> Callable[..., Any]:
    def build(monkeypatch: pytest.MonkeyPatch) -> Any:
        return pending_state_machine(lambda clock: make(clock=clock), **(kit_bounds or BOUNDS))

    return build


BROKEN = [
    pytest.param(
        _changed_table_machine,
        # The model keeps the exchanging request the registry expired.
        r"in EXCHANGING|expire_due\(|participant_left\(",
        id="one transition changed in a copy of the table",
    ),
    pytest.param(
        _registry_machine(lambda clock: AnswersTwice(clock=clock, **BOUNDS)),
        r"in EXCHANGING: expected IllegalTransition, but the call returned|accepted 2 answers",
        id="a double answer allowed",
    ),
    pytest.param(
        _registry_machine(lambda clock: ReadsTheClockOnlyOnCreate(clock=clock, **BOUNDS)),
        # The model expired a request the registry still holds or answers.
        r"in EXPIRED|expire_due\(|participant_left\(|after its deadline",
        id="expiry ignored after a clock jump",
    ),
    pytest.param(
        _registry_machine(
            lambda clock: PendingRegistry(
                clock=clock, max_open_per_requester=2, max_open_per_target=2
            ),
            max_open_per_requester=1,
            max_open_per_target=1,
        ),
        r"create past a bound: expected TooManyPendingRequests, but the call returned",
        id="a bound not enforced",
    ),
    pytest.param(
        _registry_machine(lambda clock: WrongRejectCancels(clock=clock, **BOUNDS)),
        r"was refused \(NotAddressedToYou\): nothing may change",
        id="a refused answer that changes something",
    ),
]


@pytest.mark.parametrize(("build", "reason"), BROKEN)
def test_the_machine_fails_on_a_broken_registry(
    monkeypatch: pytest.MonkeyPatch, build: Callable[..., Any], reason: str
) -> None:
    machine = build(monkeypatch)
    with pytest.raises(AssertionError) as caught:
        run_state_machine_as_test(machine, settings=MUST_FAIL)
    message = str(caught.value)
    assert re.search(reason, message), message


# --- a copy of the core under another name ------------------------------------------------------


@pytest.fixture
def vendored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """roomsecrets/core copied as ``acme_kit_vendored``, imported in this process."""
    name = "acme_kit_vendored"
    shutil.copytree(CORE, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield importlib.import_module(name)
    finally:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


def test_the_machine_checks_a_vendored_copy_given_as_core(vendored: Any) -> None:
    machine: Any = pending_state_machine(core=vendored)
    instance = machine()
    assert type(instance.registry) is vendored.PendingRegistry
    assert instance.registry.__class__ is not PendingRegistry
    vendored_machine = importlib.import_module(f"{vendored.__name__}.pending.machine")
    assert instance.model.states is vendored_machine.PendingState
    assert instance.model.states is not PendingState
    run_state_machine_as_test(machine, settings=QUICK)


def test_without_core_the_machine_says_the_registry_is_from_another_copy(vendored: Any) -> None:
    # Same names, same values, other enum members: the kit needs core= to compare them.
    machine = pending_state_machine(lambda clock: vendored.PendingRegistry(clock=clock))
    with pytest.raises(AssertionError, match="another copy of the core"):
        run_state_machine_as_test(machine, settings=MUST_FAIL)


def test_a_vendored_copy_can_be_checked_against_a_table_given_in_its_enums(
    vendored: Any,
) -> None:
    copy = importlib.import_module(f"{vendored.__name__}.pending.machine")
    changed = dict(copy.TRANSITIONS)
    changed[copy.PendingState.PENDING, copy.PendingInput.TARGET_LEFT] = copy.PendingState.REJECTED
    machine = pending_state_machine(core=vendored, transitions=changed)
    with pytest.raises(AssertionError, match=r"REJECTED|CANCELLED"):
        run_state_machine_as_test(machine, settings=MUST_FAIL)


# --- a subclass's own steps ------------------------------------------------------------------


def test_a_subclass_adds_a_step_and_the_invariants_check_it() -> None:
    from hypothesis.stateful import precondition, rule

    base: Any = pending_state_machine()

    class WithTargetLeaving(base):  # type: ignore[misc,valid-type]
        # A step of the user's own: the target of the oldest waiting request leaves,
        # fired on the model by hand (not through the kit's participant_left step).
        @precondition(lambda self: bool(self.in_state(PendingState.PENDING)))
        @rule()
        def the_oldest_waiting_target_leaves(self) -> None:
            self.sweep()
            request_id = self.in_state(PendingState.PENDING)[0]
            target = self.model.requests[request_id].target
            ended = self.model.participant_left(target)
            got = self.registry.participant_left(target)
            assert sorted(r.request_id for r in got) == sorted(ended)

    run_state_machine_as_test(WithTargetLeaving, settings=QUICK)
    machine = WithTargetLeaving()
    request_id = machine.create("bob", "alice", 30)
    machine.the_oldest_waiting_target_leaves()
    assert machine.model.state(request_id) is PendingState.CANCELLED
    machine.the_registry_keeps_the_rules()
    # The invariant looks at what the user's step did: an outcome too many fails it.
    machine.outcomes[0].append(machine.outcomes[0][0])
    with pytest.raises(AssertionError, match="delivered 2 outcomes"):
        machine.the_registry_keeps_the_rules()
