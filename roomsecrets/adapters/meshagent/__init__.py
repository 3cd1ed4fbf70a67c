"""MeshAgent's room protocol (meshagent-api 0.30-0.44.13) for the ``secrets`` toolkit.

An agent written against ``meshagent-api``'s ``RoomClient.secrets`` talks to a
roomsecrets server unmodified: ``MESHAGENT_API_URL`` names the server, and its
participant token is the SDK's own ``ParticipantToken(...).to_jwt(token=KEY)``
signed with the server's ``ROOMSECRETS_JWT_KEY``. See ``docs/meshagent.md``.

- ``packets`` -- the framing, sans-I/O: header and data packets, the payload
  (``u64 json_len | JSON | binary trailer``) and the packet assembler.
- ``content`` -- the content values a tool takes and answers (``json``,
  ``binary``, ``empty``, ``file``, ``error``).
- ``tokens`` -- reading the SDK's participant tokens and mapping their grant
  onto our :class:`~roomsecrets.core.grants.SecretsGrant`.
- ``tools`` -- the table of the ``secrets`` toolkit's tools and their handlers.
- ``room`` -- the aiohttp WebSocket at ``GET /rooms/{room}``: the handshake,
  one participant id per connection, calls and the prompts pushed to a person.

Never imports the SDK (``meshagent``: it is a client of ours, tested from its own
venv), ``roomsecrets.adapters.server.app`` (which mounts this part:
``create_app`` calls :func:`add_meshagent_routes`) or a store adapter. OAuth is
never done here: every tool calls a :class:`~roomsecrets.core.client.SecretsClient`.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .room import add_meshagent_routes

__all__ = ["add_meshagent_routes"]


def __getattr__(name: str) -> Any:
    if name != "add_meshagent_routes":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .room import add_meshagent_routes

    return add_meshagent_routes
