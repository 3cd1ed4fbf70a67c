"""``python -m roomsecrets.core.pending`` prints the machine as docs/pending-states.md."""

from .machine import render_markdown

print(render_markdown(), end="")
