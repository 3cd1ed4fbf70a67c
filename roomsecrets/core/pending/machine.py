"""The state machine of a pending OAuth authorization request, as one table.

A requester (usually an agent) asks a target participant (a person) to approve
an OAuth authorization. Until the request ends it is *open*; it then ends in
exactly one terminal state. How it works:

* :class:`PendingState` lists the states, :class:`PendingInput` the things that
  can happen to a request, and :data:`TRANSITIONS` maps ``(state, input)`` to the
  next state. That dict is the whole machine: nothing else decides a move.
* Any pair missing from the table is illegal: :func:`next_state` and
  :meth:`PendingMachine.fire` raise :class:`~.errors.IllegalTransition` and the
  state stays as it was. Terminal states have no entries, so they absorb nothing.
* Only :class:`PendingMachine` (in this module) ever assigns a state. The
  registry (:mod:`.pending_registry`) fires inputs and reads the result.

The rules the table encodes, and why:

* A request is answered at most once: ``PROVIDE`` and ``REJECT`` are legal only
  in ``PENDING``.
* ``PROVIDE`` leads to ``EXCHANGING``, not straight to a result: the server still
  has to redeem the code at the token endpoint.
* In ``EXCHANGING`` only the exchange decides the outcome. The authorization
  code is single-use (RFC 6749 §4.1.2) and has already been sent to the
  provider, which may have issued a credential the person approved. Expiring or
  cancelling at that point would either throw that credential away or race with
  storing it, and the exchange cannot hang: the transport's timeout bounds it.
  So ``DEADLINE_PASSED``, ``REQUESTER_LEFT`` and ``TARGET_LEFT`` are legal in
  ``EXCHANGING`` and leave it unchanged (the self-loops in the table); the
  requester's wait may therefore outlast its deadline by at most the exchange.
* ``EXCHANGE_SUCCEEDED`` and ``EXCHANGE_FAILED`` are legal only in
  ``EXCHANGING``: there is no result without a code.

:func:`render_markdown` (run ``python -m roomsecrets.core.pending``) writes the
table as the state diagram in ``docs/pending-states.md``.
"""

from __future__ import annotations

from enum import Enum

from ..errors import IllegalTransition

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "PendingInput",
    "PendingMachine",
    "PendingState",
    "next_state",
    "render_dot",
    "render_markdown",
    "render_text",
]


class PendingState(Enum):
    """Where a pending authorization request is in its life."""

    #: Waiting for the target participant to provide a code or reject.
    PENDING = "pending"
    #: The target provided a code; the server is redeeming it at the token endpoint.
    EXCHANGING = "exchanging"
    #: Terminal: the exchange returned a credential.
    COMPLETED = "completed"
    #: Terminal: the exchange failed (provider error, invalid grant, network).
    FAILED = "failed"
    #: Terminal: the target rejected the request.
    REJECTED = "rejected"
    #: Terminal: the deadline passed before the target answered.
    EXPIRED = "expired"
    #: Terminal: the requester cancelled, or one of the two participants left.
    CANCELLED = "cancelled"


class PendingInput(Enum):
    """Something that happens to a pending request."""

    #: The target provided an authorization code.
    PROVIDE = "provide"
    #: The token endpoint returned a credential for the code.
    EXCHANGE_SUCCEEDED = "exchange_succeeded"
    #: Redeeming the code failed.
    EXCHANGE_FAILED = "exchange_failed"
    #: The target rejected the request.
    REJECT = "reject"
    #: The request's deadline passed.
    DEADLINE_PASSED = "deadline_passed"
    #: The requester cancelled the request or left the room.
    REQUESTER_LEFT = "requester_left"
    #: The target left the room.
    TARGET_LEFT = "target_left"


_S = PendingState
_I = PendingInput

#: The whole machine: ``(state, input) -> next state``. Pairs not here are illegal.
TRANSITIONS: dict[tuple[PendingState, PendingInput], PendingState] = {
    (_S.PENDING, _I.PROVIDE): _S.EXCHANGING,
    (_S.PENDING, _I.REJECT): _S.REJECTED,
    (_S.PENDING, _I.DEADLINE_PASSED): _S.EXPIRED,
    (_S.PENDING, _I.REQUESTER_LEFT): _S.CANCELLED,
    (_S.PENDING, _I.TARGET_LEFT): _S.CANCELLED,
    (_S.EXCHANGING, _I.EXCHANGE_SUCCEEDED): _S.COMPLETED,
    (_S.EXCHANGING, _I.EXCHANGE_FAILED): _S.FAILED,
    # The code is spent: only the exchange ends the request (see the module docstring).
    (_S.EXCHANGING, _I.DEADLINE_PASSED): _S.EXCHANGING,
    (_S.EXCHANGING, _I.REQUESTER_LEFT): _S.EXCHANGING,
    (_S.EXCHANGING, _I.TARGET_LEFT): _S.EXCHANGING,
}

#: States with no way out, read from the table.
TERMINAL_STATES: frozenset[PendingState] = frozenset(
    state for state in PendingState if not any(key[0] is state for key in TRANSITIONS)
)


def next_state(state: PendingState, event: PendingInput) -> PendingState:
    """Return the state ``event`` leads to from ``state``; raise if the table has no entry.

    Raises :class:`~roomsecrets.core.errors.IllegalTransition`.

    >>> next_state(PendingState.PENDING, PendingInput.PROVIDE)
    <PendingState.EXCHANGING: 'exchanging'>
    >>> next_state(PendingState.COMPLETED, PendingInput.REJECT)
    Traceback (most recent call last):
    ...
    roomsecrets.core.errors.IllegalTransition: REJECT is not allowed in state COMPLETED
    """
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise IllegalTransition(state, event) from None


class PendingMachine:
    """The state of one request. Starts in ``PENDING``; only :meth:`fire` moves it."""

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = PendingState.PENDING

    @property
    def state(self) -> PendingState:
        """The current state."""
        return self._state

    @property
    def ended(self) -> bool:
        """True once the state is terminal."""
        return self._state in TERMINAL_STATES

    def check(self, event: PendingInput) -> PendingState:
        """The state ``event`` would lead to, without moving; raises like :meth:`fire`."""
        return next_state(self._state, event)

    def fire(self, event: PendingInput) -> PendingState:
        """Apply ``event`` and return the new state.

        Raises :class:`~roomsecrets.core.errors.IllegalTransition` and changes
        nothing when the table has no entry for the current state and ``event``.
        """
        self._state = next_state(self._state, event)
        return self._state


# --- The table as a diagram --------------------------------------------------


def _edges() -> list[tuple[PendingState, PendingState, list[PendingInput]]]:
    """The table grouped by (from, to), in declaration order of states and inputs."""
    grouped: dict[tuple[PendingState, PendingState], list[PendingInput]] = {}
    for state in PendingState:
        for event in PendingInput:
            target = TRANSITIONS.get((state, event))
            if target is not None:
                grouped.setdefault((state, target), []).append(event)
    return [(src, dst, events) for (src, dst), events in grouped.items()]


def render_dot() -> str:
    """The table as a Graphviz DOT digraph; terminal states are double circles."""
    lines = [
        "digraph pending_request {",
        "    rankdir=LR;",
        '    node [shape=circle, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    for state in PendingState:
        shape = "doublecircle" if state in TERMINAL_STATES else "circle"
        lines.append(f"    {state.name} [shape={shape}];")
    for src, dst, events in _edges():
        label = "\\n".join(event.name for event in events)
        lines.append(f'    {src.name} -> {dst.name} [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_text() -> str:
    """The table as a plain listing: one legal transition a line, then the terminal states."""
    width_state = max(len(state.name) for state in PendingState)
    width_event = max(len(event.name) for event in PendingInput)
    lines = []
    for state in PendingState:
        for event in PendingInput:
            target = TRANSITIONS.get((state, event))
            if target is not None:
                note = "  (no change)" if target is state else ""
                lines.append(
                    f"{state.name:<{width_state}}  --{event.name:-<{width_event}}-->  "
                    f"{target.name}{note}"
                )
    terminal = ", ".join(state.name for state in PendingState if state in TERMINAL_STATES)
    lines.append(f"terminal: {terminal}")
    lines.append("every other (state, input) pair is illegal and changes nothing")
    return "\n".join(lines) + "\n"


def _render_matrix() -> str:
    header = "| state \\ input | " + " | ".join(f"`{e.name}`" for e in PendingInput) + " |"
    lines = [header, "|" + " --- |" * (len(PendingInput) + 1)]
    for state in PendingState:
        cells = []
        for event in PendingInput:
            target = TRANSITIONS.get((state, event))
            cells.append("-" if target is None else f"`{target.name}`")
        lines.append(f"| `{state.name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    """The content of ``docs/pending-states.md``, generated from :data:`TRANSITIONS`."""
    return (
        "# Pending authorization request: states and transitions\n"
        "\n"
        "<!-- Generated from roomsecrets/core/pending/machine.py; do not edit. Regenerate with:\n"
        "     python -m roomsecrets.core.pending > docs/pending-states.md -->\n"
        "\n"
        "The table `TRANSITIONS` in `roomsecrets/core/pending/machine.py` is the whole machine.\n"
        "A `-` cell is an illegal input: it raises `IllegalTransition` and changes\n"
        "nothing. Terminal states accept no input. In `EXCHANGING` the authorization\n"
        "code is already spent, so only the exchange result ends the request; a\n"
        "deadline or a participant leaving meanwhile changes nothing.\n"
        "\n"
        "## Table\n"
        "\n" + _render_matrix() + "\n"
        "## Listing\n"
        "\n"
        "```text\n" + render_text() + "```\n"
        "\n"
        "## Diagram (Graphviz)\n"
        "\n"
        "```dot\n" + render_dot() + "```\n"
    )


if __name__ == "__main__":  # pragma: no cover - the doc test checks the output
    print(render_markdown(), end="")
