"""The pending-request machine: one transition table and the registry that drives it.

``machine`` holds the states, the inputs and ``TRANSITIONS``, the whole machine
(``python -m roomsecrets.core.pending`` prints it as ``docs/pending-states.md``);
``registry`` keeps the open requests, their deadlines and their bounds.

Never imports the service layer (service, client, refresh, participants) or
anything outside the standard library (``tests/test_architecture.py`` checks).
"""
