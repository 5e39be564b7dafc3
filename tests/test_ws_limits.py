"""WebSocket limits: one message's size is capped across all its fragments (event + reconnect,
memory freed), and a subscribed connection that goes silent is a stall (event + reconnect)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import subprocess
import sys

import pytest

from lab.net import websocket as W
from lab.venues.simulator import SimulatorThread

LAB = [sys.executable, "-m", "lab.cli"]


def lab(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*LAB, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def server_frame(op: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    head = bytearray([(0x80 if fin else 0) | op])
    if n < 126:
        head.append(n)
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return bytes(head) + payload


# -- the parser --------------------------------------------------------------------------------

def test_fragments_are_counted_together_and_the_buffer_never_exceeds_the_cap():
    p = W.FrameParser(max_message=10_000)
    chunk = b"x" * 3000
    assert p.feed(server_frame(W.OP_TEXT, chunk, fin=False)) == []
    assert p.feed(server_frame(W.OP_CONT, chunk, fin=False)) == []
    assert p.feed(server_frame(W.OP_CONT, chunk, fin=False)) == []
    with pytest.raises(W.MessageTooLarge, match="10000-byte limit"):
        p.feed(server_frame(W.OP_CONT, chunk, fin=True))  # 12,000 > 10,000
    p.reset()
    assert p._frags == [] and len(p._buf) == 0


def test_a_single_frame_over_the_cap_is_refused_on_its_header():
    p = W.FrameParser(max_message=1000)
    header_only = server_frame(W.OP_BINARY, b"y" * 5000)[:4]  # the payload has not arrived yet
    with pytest.raises(W.MessageTooLarge):
        p.feed(header_only)


def test_messages_at_the_cap_pass_and_control_frames_are_not_counted():
    p = W.FrameParser(max_message=1000)
    out = p.feed(server_frame(W.OP_TEXT, b"a" * 600, fin=False) + server_frame(W.OP_PING, b"p")
                 + server_frame(W.OP_CONT, b"b" * 400, fin=True))
    assert [(op, len(x)) for op, x in out] == [(W.OP_PING, 1), (W.OP_TEXT, 1000)]


# -- a hostile server: endless fragments -------------------------------------------------------

async def _endless_fragments(reader, writer):
    head = await reader.readuntil(b"\r\n\r\n")
    key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")][0]
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    writer.write(server_frame(W.OP_TEXT, b'{"type":"hello"}'))
    writer.write(server_frame(W.OP_TEXT, b"[", fin=False))
    piece = server_frame(W.OP_CONT, b"0" * (1 << 20), fin=False)
    try:
        for _ in range(1024):  # up to 1 GiB of one unfinished message
            writer.write(piece)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def test_endless_fragments_close_the_connection_at_the_cap():
    async def main():
        server = await asyncio.start_server(_endless_fragments, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        got = []
        ws = await W.connect(f"ws://127.0.0.1:{port}/ws", max_message=4 << 20)
        ws.start(lambda payload, is_text: got.append(payload))
        reason = await asyncio.wait_for(ws.closed, 30)
        server.close()
        return ws, got, reason

    ws, got, reason = asyncio.run(main())
    assert got == [b'{"type":"hello"}']  # the message before is kept
    assert "message too large" in reason and ws.too_large
    assert len(ws.parser._buf) == 0 and ws.parser._frags == []  # the memory is released


def test_recorder_records_message_too_large_and_reconnects(tmp_path, monkeypatch):
    """In-process recorder against the mock simulator with a venue cap smaller than its snapshots."""
    from lab.recorder.recorder import Recorder, RecordOptions
    from lab.venues.mock.adapter import MockVenue

    monkeypatch.setattr(MockVenue, "max_message", 200)
    root = tmp_path / "c"
    with SimulatorThread("mock", seed=4, rate=200) as sim:
        rec = Recorder(RecordOptions(venue="mock", symbols=[], root=str(root), rest_url=sim.url, ws_url=sim.ws_url,
                                     duration=4.0, status=False, compact=False))
        summary = rec.run()
    assert rec.client.too_large >= 1 and summary["connections"] >= 2
    from lab.datasets.catalog import query

    kinds = query(str(root), "select kind, detail from events where kind = 'message_too_large'").to_pylist()
    assert kinds and "200-byte limit" in kinds[0]["detail"]


# -- stalls ------------------------------------------------------------------------------------

def test_stall_is_an_event_and_a_reconnect(tmp_path):
    root = tmp_path / "c"
    # the mock venue heartbeats every second; its stall timeout is 5 s; the stall lasts 30 s
    with SimulatorThread("mock", seed=6, rate=200, faults={"stall_after": 300, "stall_seconds": 30}) as sim:
        p = lab("record", "--venue", "mock", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url,
                "--duration", "10s", "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["reconnects"] >= 1 and summary["stalls"] >= 1
    q = lab("query", "select kind, detail from events where kind in ('stall', 'resync', 'connect') order by local_timestamp",
            "--root", root, "--json")
    events = [json.loads(line) for line in q.stdout.splitlines()]
    stalls = [e for e in events if e["kind"] == "stall"]
    assert stalls and "nothing received for 5" in stalls[0]["detail"]
    assert lab("verify", root).returncode == 0
