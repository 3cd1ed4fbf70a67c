"""The meshagent packet codec (sans-I/O): framing as the SDK's protocol.py does it,
and hostile input refused without changing the assembler."""

from __future__ import annotations

import json

import pytest

from roomsecrets.adapters.meshagent.packets import (
    MAX_PACKET_DATA,
    Message,
    MessageAssembler,
    PacketError,
    State,
    encode_message,
    pack_payload,
    unpack_payload,
)


def _header(message_id: int, count: int, type: bytes = b"room.invoke_tool") -> bytes:
    return message_id.to_bytes(8, "big") + (0).to_bytes(4, "big") + count.to_bytes(4, "big") + type


def _data(message_id: int, index: int, piece: bytes) -> bytes:
    return message_id.to_bytes(8, "big") + index.to_bytes(4, "big") + piece


def _feed_all(assembler: MessageAssembler, packets: list[bytes]) -> list[Message]:
    return [m for m in (assembler.feed(p) for p in packets) if m is not None]


def test_encoding_matches_the_sdk_layout() -> None:
    packets = encode_message(5, "__response__", b"x" * 2049)
    assert packets[0] == _header(5, 3, b"__response__")
    assert packets[1] == _data(5, 1, b"x" * 1024)
    assert packets[2] == _data(5, 2, b"x" * 1024)
    assert packets[3] == _data(5, 3, b"x")
    assert encode_message(9, "room_ready", b"") == [_header(9, 0, b"room_ready")]


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 5000])
def test_what_is_encoded_reassembles_whole(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    assembler = MessageAssembler(max_message_bytes=8192)
    [message] = _feed_all(assembler, encode_message(42, "t", data))
    assert message == Message(message_id=42, type="t", data=data)
    assert assembler.state is State.READY


def test_payload_round_trips_and_drops_the_sdk_key() -> None:
    header = {"toolkit": "secrets", "__meshagent__": {"v": 1, "otel": {}}}
    raw = json.dumps(header).encode()
    payload = len(raw).to_bytes(8, "big") + raw + b"\x00trailer"
    assert unpack_payload(payload) == ({"toolkit": "secrets"}, b"\x00trailer")
    assert unpack_payload(pack_payload({"a": 1}, b"zz")) == ({"a": 1}, b"zz")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00" * 7,
        (100).to_bytes(8, "big") + b"{}",  # length runs past the end
        (2).to_bytes(8, "big") + b"[]",  # not an object
        (2).to_bytes(8, "big") + b"\xff\xfe",  # not UTF-8
        (2**64 - 1).to_bytes(8, "big"),
        (4000).to_bytes(8, "big") + b"[" * 4000,  # nested past the parser's stack
    ],
)
def test_a_broken_payload_is_a_packet_error(payload: bytes) -> None:
    with pytest.raises(PacketError):
        unpack_payload(payload)


@pytest.mark.parametrize(
    ("packets", "why"),
    [
        ([b"\x00" * 11], "shorter than its 12-byte prefix"),
        ([_header(1, 1)[:15]], "16-byte prefix"),
        ([_header(1, 1, b"")], "message type"),
        ([_header(1, 1, b"x" * 257)], "message type"),
        ([_header(1, 1, b"\xff")], "UTF-8"),
        ([_header(1, 9)], "over this server's limit"),  # 9 KiB announced, 8 KiB allowed
        ([_data(1, 1, b"x")], "cannot come while ready"),
        ([_header(1, 2), _data(1, 2, b"x")], "came where 1 was due"),
        ([_header(1, 2), _data(2, 1, b"x")], "another message"),
        ([_header(1, 1), _data(1, 1, b"x" * (MAX_PACKET_DATA + 1))], "1-1024 bytes"),
        ([_header(1, 1), _data(1, 1, b"")], "1-1024 bytes"),
        ([_header(1, 2), _header(2, 1)], "cannot come while collecting"),
    ],
)
def test_hostile_packets_are_refused_and_change_nothing(packets: list[bytes], why: str) -> None:
    assembler = MessageAssembler(max_message_bytes=8192)
    *before, last = packets
    _feed_all(assembler, before)
    state = assembler.state
    with pytest.raises(PacketError, match=why):
        assembler.feed(last)
    assert assembler.state is state


def test_after_a_refused_packet_the_message_can_still_complete() -> None:
    assembler = MessageAssembler(max_message_bytes=8192)
    assembler.feed(_header(1, 2))
    assembler.feed(_data(1, 1, b"a" * 1024))
    with pytest.raises(PacketError):
        assembler.feed(_data(1, 3, b"c"))  # out of order
    message = assembler.feed(_data(1, 2, b"b"))
    assert message is not None and message.data == b"a" * 1024 + b"b"


def test_encoding_refuses_what_the_sdk_could_not_read() -> None:
    with pytest.raises(PacketError):
        encode_message(-1, "t", b"")
    with pytest.raises(PacketError):
        encode_message(1, "", b"")
    with pytest.raises(PacketError):
        encode_message(1, "x" * 257, b"")
