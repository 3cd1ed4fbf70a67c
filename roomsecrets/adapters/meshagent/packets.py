"""The framing of meshagent-api's room protocol, sans-I/O (``meshagent/api/protocol.py``).

Every WebSocket frame is one binary *packet*; integers are big-endian:

- a **header packet**: ``message_id u64 | 0 u32 | packet_count u32 | type (UTF-8)``;
- then ``packet_count`` **data packets**: ``message_id u64 | i u32 | bytes``, with
  ``i`` counting from 1 and at most :data:`MAX_PACKET_DATA` bytes each (the sender
  cuts the message's data into ``ceil(len / 1024)`` pieces; no data, no data packet).

A message's data is a **payload** (``messaging.py``):
``json_len u64 | JSON object (UTF-8) | binary trailer``. The SDK adds a
``"__meshagent__"`` key (its version and tracing context) to every JSON header;
:func:`unpack_payload` removes it.

The receiving side is a two-state machine, the table :data:`TRANSITIONS`: READY
waits for a header packet, COLLECTING for the next data packet of the message it
announced. Anything not in the table is a :class:`PacketError` and leaves the
assembler unchanged; the server then closes the socket (the SDK's own receiver
logs and resynchronises, but a server owes a sender of broken framing nothing).
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from ...core.errors import InvalidInput

__all__ = [
    "MAX_PACKET_DATA",
    "MAX_TYPE_BYTES",
    "Message",
    "MessageAssembler",
    "PacketError",
    "encode_message",
    "pack_payload",
    "unpack_payload",
]

#: The most data bytes one data packet carries (``protocol.compute_packets``).
MAX_PACKET_DATA = 1024
#: The longest message type accepted, in UTF-8 bytes (the SDK's are under 64).
MAX_TYPE_BYTES = 256
_U64 = 8
_U32 = 4
_PREFIX = _U64 + _U32  # message_id | packet index
_HEADER_PREFIX = _PREFIX + _U32  # ... | packet_count
# The SDK's own key in every JSON header (version, OpenTelemetry context).
_SDK_KEY = "__meshagent__"


class PacketError(InvalidInput):
    """A packet or payload that breaks the framing (truncated, oversized, out of order)."""

    code = "invalid_packet"


@dataclass(frozen=True)
class Message:
    """One whole message: its id, its type and its data (a payload, or empty)."""

    message_id: int
    type: str
    data: bytes = field(repr=False)


def _u64(value: int) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise PacketError("a message id is a whole number from 0 to 2**64 - 1")
    return value.to_bytes(_U64, "big")


def encode_message(message_id: int, type: str, data: bytes) -> list[bytes]:
    """The packets that carry one message, header first, in sending order.

    >>> [len(p) for p in encode_message(7, "__response__", bytes(1500))]
    [28, 1036, 488]
    """
    encoded_type = type.encode("utf-8")
    if not 0 < len(encoded_type) <= MAX_TYPE_BYTES:
        raise PacketError(f"a message type is 1-{MAX_TYPE_BYTES} bytes of UTF-8")
    count = math.ceil(len(data) / MAX_PACKET_DATA)
    prefix = _u64(message_id)
    packets = [prefix + (0).to_bytes(_U32, "big") + count.to_bytes(_U32, "big") + encoded_type]
    for index in range(count):
        piece = data[index * MAX_PACKET_DATA : (index + 1) * MAX_PACKET_DATA]
        packets.append(prefix + (index + 1).to_bytes(_U32, "big") + piece)
    return packets


def pack_payload(header: dict[str, Any], data: bytes = b"") -> bytes:
    """``json_len u64 | JSON | data``: a message's data as the SDK's ``pack_message`` makes it."""
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return len(encoded).to_bytes(_U64, "big") + encoded + data


def unpack_payload(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON object and the binary trailer of a payload, without the SDK's own key.

    Raises PacketError when the length prefix is missing or longer than the payload,
    or the JSON is not an object.
    """
    if len(payload) < _U64:
        raise PacketError("the payload is shorter than its 8-byte length prefix")
    length = int.from_bytes(payload[:_U64], "big")
    if length > len(payload) - _U64:
        raise PacketError("the payload's JSON length runs past its end")
    try:
        header = json.loads(payload[_U64 : _U64 + length].decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack.
        raise PacketError("the payload's JSON header is not valid UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise PacketError("the payload's JSON header must be an object")
    header.pop(_SDK_KEY, None)
    return header, payload[_U64 + length :]


class State(enum.Enum):
    #: Waiting for a header packet.
    READY = "ready"
    #: Collecting the data packets of the message the last header announced.
    COLLECTING = "collecting"


class Input(enum.Enum):
    #: A header packet announcing no data: the message is whole at once.
    HEADER_ALONE = "header_alone"
    #: A header packet announcing one or more data packets.
    HEADER = "header"
    #: A data packet that is not the message's last.
    DATA = "data"
    #: The message's last data packet.
    LAST_DATA = "last_data"


#: (state, input) -> next state; every other pair is a PacketError.
TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.READY, Input.HEADER_ALONE): State.READY,
    (State.READY, Input.HEADER): State.COLLECTING,
    (State.COLLECTING, Input.DATA): State.COLLECTING,
    (State.COLLECTING, Input.LAST_DATA): State.READY,
}


class MessageAssembler:
    """Reassembles messages from packets, one message at a time (the SDK never
    interleaves two). ``max_message_bytes`` bounds a message's data: a header
    announcing more packets than that allows is refused before any data arrives.

    >>> assembler = MessageAssembler(max_message_bytes=4096)
    >>> [assembler.feed(p) for p in encode_message(1, "ping", b"abc")][-1].data
    b'abc'
    """

    def __init__(self, *, max_message_bytes: int) -> None:
        self.state = State.READY
        self._max_packets = math.ceil(max_message_bytes / MAX_PACKET_DATA)
        self._message_id = 0
        self._type = ""
        self._expected = 0  # packets announced
        self._received = 0  # data packets received so far
        self._pieces: list[bytes] = []

    def _move(self, event: Input) -> None:
        next_state = TRANSITIONS.get((self.state, event))
        if next_state is None:
            raise PacketError(f"a {event.value} packet cannot come while {self.state.value}")
        self.state = next_state

    def feed(self, packet: bytes) -> Optional[Message]:
        """Take one packet; return the message it completes, or None.

        Raises PacketError (nothing changes) for a packet shorter than its prefix,
        an index other than 0 or the next one, another message's id, a data packet
        over :data:`MAX_PACKET_DATA` bytes or empty, a type that is empty, too long
        or not UTF-8, or more packets announced than ``max_message_bytes`` allows.
        """
        if len(packet) < _PREFIX:
            raise PacketError("a packet is shorter than its 12-byte prefix")
        message_id = int.from_bytes(packet[:_U64], "big")
        index = int.from_bytes(packet[_U64:_PREFIX], "big")
        if index == 0:
            return self._header(message_id, packet)
        return self._data(message_id, index, packet[_PREFIX:])

    def _header(self, message_id: int, packet: bytes) -> Optional[Message]:
        if len(packet) < _HEADER_PREFIX:
            raise PacketError("a header packet is shorter than its 16-byte prefix")
        count = int.from_bytes(packet[_PREFIX:_HEADER_PREFIX], "big")
        raw_type = packet[_HEADER_PREFIX:]
        if not 0 < len(raw_type) <= MAX_TYPE_BYTES:
            raise PacketError(f"a message type is 1-{MAX_TYPE_BYTES} bytes")
        try:
            type = raw_type.decode("utf-8")
        except UnicodeDecodeError:
            raise PacketError("a message type must be UTF-8") from None
        if count > self._max_packets:
            raise PacketError(
                f"the message announces {count} packets, over this server's limit "
                f"of {self._max_packets}"
            )
        if count == 0:
            self._move(Input.HEADER_ALONE)
            return Message(message_id=message_id, type=type, data=b"")
        self._move(Input.HEADER)
        self._message_id, self._type, self._expected = message_id, type, count
        self._received, self._pieces = 0, []
        return None

    def _data(self, message_id: int, index: int, piece: bytes) -> Optional[Message]:
        if self.state is not State.COLLECTING:
            self._move(Input.DATA)  # raises: no message is being collected
        if message_id != self._message_id:
            raise PacketError("a data packet of another message came mid-message")
        if index != self._received + 1:
            raise PacketError(f"data packet {index} came where {self._received + 1} was due")
        if not 0 < len(piece) <= MAX_PACKET_DATA:
            raise PacketError(f"a data packet carries 1-{MAX_PACKET_DATA} bytes")
        last = index == self._expected
        self._move(Input.LAST_DATA if last else Input.DATA)
        self._received = index
        self._pieces.append(piece)
        if not last:
            return None
        data = b"".join(self._pieces)
        self._pieces = []
        return Message(message_id=self._message_id, type=self._type, data=data)
