"""The pending-request state machine: every (state, input) pair against the table."""

import itertools
import pathlib
import subprocess
import sys

import pytest

from roomsecrets.core.errors import IllegalTransition, RoomSecretsError
from roomsecrets.core.pending.machine import (
    TERMINAL_STATES,
    TRANSITIONS,
    PendingInput,
    PendingMachine,
    PendingState,
    next_state,
    render_dot,
    render_markdown,
    render_text,
)

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "pending-states.md"
ALL_PAIRS = list(itertools.product(PendingState, PendingInput))


def machine_in(state: PendingState) -> PendingMachine:
    """A machine brought to ``state`` through legal inputs only (shortest path)."""
    paths = {PendingState.PENDING: []}
    frontier = [PendingState.PENDING]
    while frontier:
        current = frontier.pop(0)
        for event in PendingInput:
            after = TRANSITIONS.get((current, event))
            if after is not None and after not in paths:
                paths[after] = [*paths[current], event]
                frontier.append(after)
    machine = PendingMachine()
    for event in paths[state]:
        machine.fire(event)
    assert machine.state is state
    return machine


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda v: v.name)
def test_every_pair_moves_as_the_table_says_or_raises_and_changes_nothing(state, event):
    machine = machine_in(state)
    expected = TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(IllegalTransition) as info:
            machine.fire(event)
        assert machine.state is state
        assert info.value.state is state
        assert info.value.event is event
        assert str(info.value) == f"{event.name} is not allowed in state {state.name}"
        with pytest.raises(IllegalTransition):
            machine.check(event)
    else:
        assert machine.check(event) is expected
        assert machine.state is state  # check() never moves
        assert machine.fire(event) is expected
        assert machine.state is expected


def test_the_table_covers_all_seven_states_and_inputs_named_in_the_design():
    assert {s.name for s in PendingState} >= {
        "PENDING", "EXCHANGING", "COMPLETED", "FAILED", "REJECTED", "EXPIRED", "CANCELLED",
    }
    assert {i.name for i in PendingInput} == {
        "PROVIDE", "EXCHANGE_SUCCEEDED", "EXCHANGE_FAILED", "REJECT",
        "DEADLINE_PASSED", "REQUESTER_LEFT", "TARGET_LEFT",
    }


def test_terminal_states_are_exactly_the_five_outcomes_and_absorb_nothing():
    assert {s.name for s in TERMINAL_STATES} == {
        "COMPLETED", "FAILED", "REJECTED", "EXPIRED", "CANCELLED",
    }
    for state in TERMINAL_STATES:
        assert not any((state, event) in TRANSITIONS for event in PendingInput)
        assert machine_in(state).ended


def test_every_state_is_reachable_from_pending():
    for state in PendingState:
        machine_in(state)  # asserts it got there


def test_an_answer_is_accepted_at_most_once():
    machine = PendingMachine()
    machine.fire(PendingInput.PROVIDE)
    for answer in (PendingInput.PROVIDE, PendingInput.REJECT):
        with pytest.raises(IllegalTransition):
            machine.fire(answer)
    assert machine.state is PendingState.EXCHANGING


@pytest.mark.parametrize(
    "event",
    [PendingInput.DEADLINE_PASSED, PendingInput.REQUESTER_LEFT, PendingInput.TARGET_LEFT],
)
def test_only_the_exchange_ends_an_exchanging_request(event):
    machine = machine_in(PendingState.EXCHANGING)
    assert machine.fire(event) is PendingState.EXCHANGING
    assert not machine.ended


def test_no_exchange_result_without_a_code():
    for event in (PendingInput.EXCHANGE_SUCCEEDED, PendingInput.EXCHANGE_FAILED):
        with pytest.raises(IllegalTransition):
            next_state(PendingState.PENDING, event)


def test_illegal_transition_is_a_typed_roomsecrets_error_with_a_code():
    with pytest.raises(RoomSecretsError) as info:
        next_state(PendingState.EXPIRED, PendingInput.PROVIDE)
    assert isinstance(info.value, IllegalTransition)
    assert info.value.code == "illegal_transition"


def test_dot_diagram_has_every_transition_and_marks_terminal_states():
    dot = render_dot()
    assert dot.startswith("digraph pending_request {")
    assert dot.rstrip().endswith("}")
    for (state, event), after in TRANSITIONS.items():
        edge_lines = [
            line for line in dot.splitlines() if f"{state.name} -> {after.name} " in line
        ]
        assert len(edge_lines) == 1
        assert event.name in edge_lines[0]
    for state in PendingState:
        shape = "doublecircle" if state in TERMINAL_STATES else "circle"
        assert f"{state.name} [shape={shape}];" in dot


def test_text_listing_has_one_line_per_transition():
    lines = render_text().splitlines()
    transitions = [line for line in lines if "-->" in line]
    assert len(transitions) == len(TRANSITIONS)
    for (state, event), after in TRANSITIONS.items():
        assert any(
            line.startswith(state.name + " ") and f"--{event.name}-" in line
            and line.split("-->")[1].split()[0] == after.name
            for line in transitions
        )


def test_docs_pending_states_md_is_generated_from_the_current_table():
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/pending-states.md is stale; regenerate with "
        "`python -m roomsecrets.core.pending > docs/pending-states.md`"
    )


def test_the_module_prints_the_doc_when_run():
    result = subprocess.run(
        [sys.executable, "-m", "roomsecrets.core.pending"],
        capture_output=True, text=True, timeout=60, cwd=DOC.parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_markdown()
