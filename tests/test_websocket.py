"""The recorder's WebSocket frame parser: any split of any frame sequence parses the same."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.net.websocket import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, FrameParser, ProtocolError, encode_frame

messages = st.lists(st.tuples(st.sampled_from([OP_TEXT, OP_BINARY]), st.binary(max_size=70000), st.integers(1, 3)), max_size=8)


def fragments(op: int, payload: bytes, parts: int, mask: bool) -> bytes:
    if parts == 1 or len(payload) < parts:
        return encode_frame(op, payload, mask=mask)
    step = len(payload) // parts
    chunks = [payload[i * step : (i + 1) * step] for i in range(parts - 1)] + [payload[(parts - 1) * step :]]
    out = b""
    for i, chunk in enumerate(chunks):
        frame = bytearray(encode_frame(op if i == 0 else OP_CONT, chunk, mask=mask))
        if i < len(chunks) - 1:
            frame[0] &= 0x7F  # clear FIN
        out += bytes(frame)
        if i == 0:
            out += encode_frame(OP_PING, b"hi", mask=mask)  # control frames may interleave
    return out


@settings(max_examples=60, deadline=None)
@given(messages, st.lists(st.integers(1, 5000), max_size=20), st.booleans())
def test_any_split_parses_the_same(msgs, cuts, mask):
    wire = b"".join(fragments(op, payload, parts, mask) for op, payload, parts in msgs)
    parser = FrameParser()
    got = []
    pos = 0
    for cut in cuts:
        got += parser.feed(wire[pos : pos + cut])
        pos += cut
    got += parser.feed(wire[pos:])
    data = [(op, p) for op, p in got if op in (OP_TEXT, OP_BINARY)]
    assert data == [(op, payload) for op, payload, _ in msgs]


def test_protocol_errors_are_clean():
    with pytest.raises(ProtocolError):
        FrameParser().feed(encode_frame(OP_CONT, b"x", mask=False))
    with pytest.raises(ProtocolError):
        FrameParser().feed(bytes([0x80 | 0x3, 0]))  # unknown opcode
    with pytest.raises(ProtocolError):
        FrameParser().feed(bytes([0x80 | 0x40 | OP_TEXT, 0]))  # RSV1 without an extension
    close = FrameParser().feed(encode_frame(OP_CLOSE, b"\x03\xe8", mask=False))
    assert close == [(OP_CLOSE, b"\x03\xe8")]
