"""A minimal RFC 6455 WebSocket client built for recording: one callback per received message,
called straight from `data_received`, with no per-message future, queue or task.

Why not aiohttp's client: its per-message `await receive()` costs more than everything else the
recorder does with a frame. Here a TCP chunk carrying hundreds of frames is split in one loop and
each payload handed to the sink, which stamps it (`rec_id`, local time) before any decoding.
Control frames are answered in place (ping -> pong, close -> close). No extensions are
negotiated, so payloads are the venue's exact bytes.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
import struct
from typing import Callable
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 16 << 20  # one message, all fragments together (venues override with MAX_MESSAGE)


class HandshakeError(ConnectionError):
    pass


class ProtocolError(ConnectionError):
    pass


class MessageTooLarge(ProtocolError):
    pass


def encode_frame(opcode: int, payload: bytes, mask: bool = True) -> bytes:
    n = len(payload)
    head = bytearray([0x80 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + _mask(payload, key)


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    # XOR with the repeated key through one big-integer operation (fast for any length).
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


class FrameParser:
    """Incremental parser of server frames. `feed(chunk)` returns completed (opcode, payload)."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._frag_op: int | None = None
        self._frags: list[bytes] = []
        self._frag_bytes = 0
        self.max_message = max_message

    def reset(self) -> None:
        """Drop everything buffered (after an error: the memory goes now, not with the socket)."""
        self._buf = bytearray()
        self._frag_op, self._frags, self._frag_bytes = None, [], 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += chunk
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            p = pos + 2
            if n == 126:
                if end - p < 2:
                    break
                n = (buf[p] << 8) | buf[p + 1]
                p += 2
            elif n == 127:
                if end - p < 8:
                    break
                (n,) = struct.unpack_from("!Q", buf, p)
                p += 8
            # checked on the header, before the payload is buffered: a message (all its
            # fragments together) larger than the cap never occupies more than the cap
            if (b0 & 0x0F) < 0x8 and n + (self._frag_bytes if (b0 & 0x0F) == OP_CONT else 0) > self.max_message:
                raise MessageTooLarge(
                    f"message of {n + self._frag_bytes if (b0 & 0x0F) == OP_CONT else n}+ bytes exceeds the {self.max_message}-byte limit"
                    + (f" after {len(self._frags)} fragments" if self._frags and (b0 & 0x0F) == OP_CONT else "")
                )
            key = None
            if b1 & 0x80:  # servers must not mask, but tolerate it
                if end - p < 4:
                    break
                key = bytes(buf[p : p + 4])
                p += 4
            if end - p < n:
                break
            payload = bytes(buf[p : p + n])
            if key is not None:
                payload = _mask(payload, key)
            pos = p + n
            if b0 & 0x70:
                raise ProtocolError("reserved bits set without a negotiated extension")
            op = b0 & 0x0F
            fin = b0 & 0x80
            if op >= 0x8:
                if not fin or n > 125:
                    raise ProtocolError("fragmented or oversized control frame")
                out.append((op, payload))
            elif op == OP_CONT:
                if self._frag_op is None:
                    raise ProtocolError("continuation frame without a message")
                self._frags.append(payload)
                self._frag_bytes += n
                if fin:
                    out.append((self._frag_op, b"".join(self._frags)))
                    self._frag_op, self._frags, self._frag_bytes = None, [], 0
            elif op in (OP_TEXT, OP_BINARY):
                if self._frag_op is not None:
                    raise ProtocolError("new message inside a fragmented one")
                if fin:
                    out.append((op, payload))
                else:
                    self._frag_op, self._frags, self._frag_bytes = op, [payload], n
            else:
                raise ProtocolError(f"unknown opcode {op:#x}")
        if pos:
            del buf[:pos]
        return out


class WebSocket(asyncio.Protocol):
    """Client connection. After `start(on_message)`, `on_message(payload, is_text)` runs in the
    event loop for every data message (messages that arrive before are held, so the caller can
    record the connection's opening first); `closed` resolves with a reason string at the end."""

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.on_message: Callable[[bytes, bool], None] | None = None
        self._held: list[tuple[bytes, bool]] = []
        self.transport: asyncio.Transport | None = None
        self.parser = FrameParser(max_message)
        self.too_large: str | None = None  # why, when a message over the limit closed the connection
        self._handshake = bytearray()
        self._handshake_done: asyncio.Future | None = None
        self._key = base64.b64encode(os.urandom(16))
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self._close_sent = False

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._handshake_done is not None and not self._handshake_done.done():
            self._handshake += data
            head_end = self._handshake.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self._handshake) > 65536:
                    self._handshake_done.set_exception(HandshakeError("handshake response too large"))
                return
            head = bytes(self._handshake[:head_end]).decode("latin-1")
            rest = bytes(self._handshake[head_end + 4 :])
            try:
                self._check_handshake(head)
            except HandshakeError as exc:
                self._handshake_done.set_exception(exc)
                self.transport.close()
                return
            self._handshake_done.set_result(None)
            if not rest:
                return
            data = rest
        try:
            messages = self.parser.feed(data)
        except ProtocolError as exc:
            self.parser.reset()
            if isinstance(exc, MessageTooLarge):
                self.too_large = str(exc)
                self._finish(f"message too large: {exc}")
            else:
                self._finish(f"protocol error: {exc}")
            self.transport.abort()  # nothing more of this connection is read
            return
        on_message = self.on_message or self._hold
        for op, payload in messages:
            if op == OP_TEXT:
                on_message(payload, True)
            elif op == OP_BINARY:
                on_message(payload, False)
            elif op == OP_PING:
                self.transport.write(encode_frame(OP_PONG, payload))
            elif op == OP_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if not self._close_sent:
                    self._send_close(self.close_code if self.close_code not in (1005, 1006) else 1000)
                self._finish(f"closed by peer (code {self.close_code})")
                self.transport.close()
                return

    def connection_lost(self, exc) -> None:
        if self._handshake_done is not None and not self._handshake_done.done():
            self._handshake_done.set_exception(HandshakeError(f"connection lost during handshake: {exc}"))
        self._finish(f"connection lost: {exc}" if exc else "connection lost")

    # -- API ----------------------------------------------------------------------------------
    def _hold(self, payload: bytes, is_text: bool) -> None:
        self._held.append((payload, is_text))

    def start(self, on_message: Callable[[bytes, bool], None]) -> None:
        held, self._held = self._held, []
        for payload, is_text in held:
            on_message(payload, is_text)
        self.on_message = on_message

    def send_text(self, payload: bytes) -> None:
        self.transport.write(encode_frame(OP_TEXT, payload))

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake; keep receiving until the peer's CLOSE."""
        if not self._close_sent and self.transport is not None and not self.transport.is_closing():
            self._send_close(code)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _send_close(self, code: int) -> None:
        self._close_sent = True
        self.transport.write(encode_frame(OP_CLOSE, struct.pack("!H", code)))

    def _finish(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)

    def _check_handshake(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            raise HandshakeError(f"server refused the WebSocket upgrade: {lines[0]}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        want = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != want:
            raise HandshakeError("bad Sec-WebSocket-Accept from server")


async def connect(url: str, timeout: float = 10.0,
                  headers: dict[str, str] | None = None, max_message: int = MAX_MESSAGE) -> WebSocket:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise HandshakeError(f"not a WebSocket URL: {url}")
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    ws = WebSocket(max_message)
    ws._handshake_done = loop.create_future()
    ssl_ctx = ssl.create_default_context() if secure else None
    await asyncio.wait_for(loop.create_connection(lambda: ws, host, port, ssl=ssl_ctx), timeout)
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    ws.transport.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {ws._key.decode()}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    try:
        await asyncio.wait_for(asyncio.shield(ws._handshake_done), timeout)
    except BaseException:
        ws.abort()
        raise
    return ws
