"""Wire-level replay (`lab serve-replay`): a capture's raw frames served over the venue's own
WebSocket protocol, and its REST bodies over HTTP, on one port, to an unmodified client (lab's
own recorder, or anything that speaks the venue's protocol).

The server is the simulator framework (`lab.venues.simulator`: one aiohttp app, WebSocket and
REST on one port, `/control/*`), run with `ReplayPlugin` instead of a venue's market. Everything
venue-specific comes from the adapter (`Venue.replay_*`, implemented in `lab/venues/<venue>/`):
which subscription keys a captured frame belongs to, which keys a client's subscribe names, the
answers the server gives itself (pong, the venue's error for what the capture does not hold), a
heartbeat once a connection's frames have run out, and the body of a REST request the capture
has no body for.

The model (docs/ARCHITECTURE.md, "Wire-level replay"):

* one recorder session of one venue is served (the first one, or `session=`);
* the n-th WebSocket connection a client opens plays the n-th captured connection (in the order
  they opened) from its `open` row; when the captured connections subscribed different keys
  (several at once, a venue's connection plan), the first unplayed one that subscribed what this
  client subscribes (the keys its URL names, `Venue.replay_url_keys`, else its first subscribe,
  waited for at most `BARRIER_WAIT` s; else one sharing a key; else the next). It plays its
  received frames in capture order, each one only while the client is subscribed to one of its
  keys (connection-level frames always); the captured pongs are not replayed. At each subscribe
  the original client sent, the replay waits (at most `BARRIER_WAIT` s) until this client has
  sent as many subscribe requests, so the captured acks and snapshots that followed it are not
  played to a connection that has not subscribed yet;
* a captured make-before-break rotation (a connection that opened while one with the same
  subscriptions was open, and outlived it): where the successor opened, the old stream sends the
  venue's rotation notice (`Venue.replay_rotate_notice`; none: the close plays as a disconnect)
  and holds until the client has opened its successor; at the old one's close it waits for the
  successor's stream to reach that point, and the successor's holds there until the old served
  connection has closed, so the client hands its books over as it did live;
* pacing: `speed=1` the captured local-time gaps, `speed=N` N times faster, `speed=None` as fast
  as the socket takes them (writes of up to `CHUNK` frames, flow-controlled at `HIGH_WATER`
  bytes buffered);
* a captured `close` row closes the served connection (code 1001, the captured reason), unless
  the original recorder itself was stopping: then (and after the last captured connection) the
  connection stays open, quiet but for the venue's heartbeat once a second;
* REST: every request path and query (order-insensitive) is answered with the captured bodies of
  that request, in capture order, skipping those of a captured connection already played (or,
  for a body of no connection, fetched before the newest captured connection handed out
  opened); past the captured bodies, the latest one fetched before the replay position. Error
  answers (`rest_error` rows) are not replayed. The captured snapshot/sequence relationship is
  kept both ways: a body is held back until the stream has played up to the point where the
  original client received it, and the stream holds at that point (at most `BARRIER_WAIT` s)
  until this client has fetched it too, when it is subscribed to that symbol (keys are tuples
  ending with the venue symbol). With several connections open, a REST row belongs to the newest
  open captured connection subscribed to its symbol: that connection's position gates the body,
  its stream holds for it. So at any speed a buffered-diff client gets its snapshot with
  the same diffs before and after it as live, never after the connection's captured close.
"""
from __future__ import annotations

import asyncio
import bisect
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

import pyarrow as pa
from aiohttp import web

from lab.datasets import reader
from lab.datasets.files import CaptureError
from lab.venues import registry
from lab.venues.contract import Venue
from lab.venues.simulator import VenuePlugin, json_response, run_simulator, ws_frame

__all__ = ["Capture", "CapturedConnection", "ReplayPlugin", "load_capture", "rest_key", "serve_replay_main"]

FRAME, SUBSCRIBE, CLOSE, REST, ROTATE, HANDOVER = 0, 1, 2, 3, 4, 5
# the reason the recorder stamps on a close it asked for itself (lab/recorder/feed.py)
STOP_PREFIX = "recorder stopping"
BARRIER_WAIT = 2.0  # seconds a captured subscribe waits for this client's own
REST_WAIT = 10.0  # seconds a REST body waits for the replay to reach where it was fetched
ROTATE_AGAIN = 0.2  # seconds before a rotation notice the client did not act on is sent again
CHUNK = 512  # frames per socket write at full speed
HIGH_WATER = 4 << 20  # bytes buffered for a client before the replay waits for it


def rest_key(path: str, query: str = "") -> str:
    """A REST request as the capture knows it: path and sorted query."""
    items = sorted(parse_qsl(query, keep_blank_values=True))
    return path + ("?" + urlencode(items) if items else "")


@dataclass
class CapturedConnection:
    conn_id: int
    open_rec: int
    open_ns: int
    path: str  # the WebSocket path the original client connected to
    keys: set = field(default_factory=set)  # what the original client subscribed (URL and requests)
    # (kind, local_ns, rec_id, rendered frame or None, keys / close reason)
    events: list[tuple] = field(default_factory=list)
    frames: int = 0
    closed: str | None = None  # the captured close reason
    close_rec: int | None = None
    successor: int | None = None  # conn_id of the connection that replaced it make-before-break


@dataclass
class Capture:
    root: str
    venue: str
    session: str
    sessions: list[str]
    connections: list[CapturedConnection]
    # rest_key -> [(rec_id, body, conn_id of the captured connection whose stream it belongs to)]
    rest: dict[str, list[tuple[int, bytes, int | None]]]
    keys: frozenset  # every subscription key the captured frames hold
    rest_paths: list[str]

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.connections)

    extra_ws_paths: tuple[str, ...] = ()

    @property
    def ws_paths(self) -> tuple[str, ...]:
        paths = ["/ws", *self.extra_ws_paths] + [c.path for c in self.connections]
        return tuple(dict.fromkeys(p for p in paths if p not in self.rest_paths))

    @property
    def by_keys(self) -> bool:
        """Did the captured connections subscribe different things (several at once: a stream
        cap)? Then a client connection plays the captured one with its own subscriptions."""
        return len({frozenset(c.keys) for c in self.connections}) > 1


def _carries(keys, symbol: str | None) -> bool:
    return any(isinstance(k, tuple) and k and k[-1] == symbol for k in keys)


def load_capture(root: str, venue: str, session: str | None = None, adapter: Venue | None = None) -> Capture:
    """The raw rows of one session of `venue` under `root`, ready to serve. CaptureError (one
    line) when there is nothing to serve; UnknownVenue for a venue lab does not know."""
    adapter = adapter or registry.adapter(venue)
    if not os.path.isdir(root):
        raise CaptureError(f"capture root {root!r} " + ("is a file, not a capture folder" if os.path.exists(root) else "does not exist"))
    every = reader.find_files(root, "raw")
    if not every:
        raise CaptureError(f"no raw frames under {root} (not a lab capture, or nothing recorded there yet)")
    files = [f for f in every if f"venue={venue}" in f.replace(os.sep, "/").split("/")]
    if not files:
        there = sorted({p.split("=", 1)[1] for f in every for p in f.replace(os.sep, "/").split("/") if p.startswith("venue=")})
        raise CaptureError(f"no {venue} frames in {root} (venues there: {', '.join(there) or 'none'})")
    sessions = reader.by_session(files)
    names = sorted(sessions)
    if session is None:
        session = names[0]
    elif session not in sessions:
        raise CaptureError(f"no session {session!r} of {venue} in {root} (sessions: {', '.join(names)})")
    table = pa.concat_tables(reader.read_readable(sessions[session]), promote_options="default").sort_by("rec_id")
    ts = table.column("local_timestamp").cast(pa.int64()).to_pylist()
    cols = [table.column(c).to_pylist() for c in ("rec_id", "conn_id", "kind", "channel", "symbol", "payload")]
    conns: dict[int, CapturedConnection] = {}
    rest: dict[str, list[tuple[int, bytes, int | None]]] = {}
    keys: set = set()
    current: CapturedConnection | None = None  # the newest open connection: REST rows fall in its stream
    for local_ns, rec, conn_id, kind, channel, symbol, payload in zip(ts, *cols):
        payload = payload or b""
        if kind == "rest":
            parts = urlsplit(channel or "")
            key = rest_key(parts.path, parts.query)
            bodies = rest.setdefault(key, [])
            # the stream it belongs to: the newest open connection carrying that symbol, if any
            owner = max((o for o in conns.values() if o.closed is None and _carries(o.keys, symbol)),
                        key=lambda o: o.open_rec, default=current) if symbol else current
            if owner is not None:  # the client had this body by this point of the stream
                owner.events.append((REST, local_ns, rec, None, (key, len(bodies), symbol)))
            bodies.append((rec, payload, owner.conn_id if owner is not None else None))
            continue
        if kind == "open":
            url = urlsplit(payload.decode("utf-8", "replace"))
            current = conns[conn_id] = CapturedConnection(conn_id, rec, local_ns, url.path or "/")
            current.keys |= adapter.replay_url_keys(url.path or "/", dict(parse_qsl(url.query)))
            continue
        c = conns.get(conn_id)
        if c is None or c.closed is not None:
            continue  # notes, REST errors, rows of a connection whose open is not in these files
        if kind == "recv":
            k = adapter.replay_frame_keys(payload)
            if k is None:
                continue
            keys |= k
            c.events.append((FRAME, local_ns, rec, ws_frame(payload), k))
            c.frames += 1
        elif kind == "send":
            req = adapter.replay_request(payload)
            if req is not None and req[0] == "subscribe":
                c.events.append((SUBSCRIBE, local_ns, rec, None, req[1]))
                c.keys |= req[1]
        elif kind == "close":
            c.closed = payload.decode("utf-8", "replace")
            c.close_rec = rec
            c.events.append((CLOSE, local_ns, rec, None, c.closed))
            if current is c:
                current = max((o for o in conns.values() if o.closed is None), key=lambda o: o.open_rec, default=None)
    connections = sorted(conns.values(), key=lambda c: c.open_rec)
    _mark_rotations(connections)
    if not connections:
        raise CaptureError(f"session {session} of {venue} in {root} holds no WebSocket connection")
    paths = {urlsplit(k).path for k in rest}
    inst_key = rest_key(*_split(adapter.instruments_path))
    if rest.get(inst_key):
        try:
            for inst in adapter.parse_instruments(rest[inst_key][0][1]):
                paths.add(urlsplit(adapter.depth_path(inst.venue_symbol)).path)
        except (ValueError, NotImplementedError):
            pass
    return Capture(root, venue, session, names, connections, rest, frozenset(keys), sorted(paths),
                   tuple(adapter.replay_ws_paths))


def _mark_rotations(connections: list[CapturedConnection]) -> None:
    """A connection that opened while another one with the same subscriptions was open, and
    outlived it, replaced it make-before-break: a ROTATE event in the old one's stream where the
    successor opened (the replay asks the client to open its successor there, when the venue has
    a way to say so, `Venue.replay_rotate_notice`), and a HANDOVER event in the successor's stream
    where the old one closed (it holds there until the old one's served connection has closed)."""
    for b in connections:
        for a in connections:
            if (a is not b and a.successor is None and a.close_rec is not None and a.keys and a.keys == b.keys
                    and a.open_rec < b.open_rec < a.close_rec and not (a.closed or "").startswith(STOP_PREFIX)):
                a.successor = b.conn_id
                at = bisect.bisect_left([e[2] for e in a.events], b.open_rec)
                local_ns = a.events[at - 1][1] if at else a.open_ns
                a.events.insert(at, (ROTATE, local_ns, b.open_rec, None, b.conn_id))
                at = bisect.bisect_left([e[2] for e in b.events], a.close_rec)
                local_ns = b.events[at - 1][1] if at else b.open_ns
                b.events.insert(at, (HANDOVER, local_ns, a.close_rec, None, a.conn_id))
                break


def _split(path: str) -> tuple[str, str]:
    parts = urlsplit(path)
    return parts.path, parts.query


class ReplayPlugin(VenuePlugin):
    """The simulator plugin that plays a `Capture` (see the module doc)."""

    name = "replay"
    heartbeat_interval = 1.0

    def __init__(self, sim, capture: Capture, adapter: Venue, speed: float | None = None,
                 report: Callable[[str], Any] | None = None):
        self.sim = sim
        self.capture = capture
        self.adapter = adapter
        self.speed = speed
        self.report = report or (lambda line: None)
        self.ws_paths = capture.ws_paths
        self.next_conn = 0  # captured connections handed out to client connections
        self.unplayed = list(range(len(capture.connections)))  # indices not handed out yet
        self.active: set[int] = set()  # conn_ids of the captured connections being played
        self.done: set[int] = set()  # conn_ids of those played
        self.conn_pos: dict[int, int] = {}  # conn_id -> rec_id of its furthest row played
        self.serving: dict[int, Any] = {}  # conn_id -> the client connection playing it
        self.position = -1  # rec_id of the furthest captured row played
        self.floor = -1  # open rec_id of the newest captured connection handed out
        self.playing = 0
        self.frames_served = 0
        self.rest_served = 0
        self.rest_next = {k: 0 for k in capture.rest}  # the next captured body of each request
        self.rest_done = {k: 0 for k in capture.rest}  # 1 + the index of the last body answered
        self._tasks: set[asyncio.Task] = set()
        self._started: float | None = None

    @property
    def finished(self) -> bool:
        return not self.unplayed and self.playing == 0

    # -- REST
    def routes(self):
        out = [("GET", path, self._rest) for path in self.capture.rest_paths]
        out.append(("GET", "/control/replay", self._control))
        return out

    async def _rest(self, request: web.Request) -> web.Response:
        key = rest_key(request.path, request.query_string)
        bodies = self.capture.rest.get(key)
        if not bodies:
            status, body = self.adapter.replay_rest_missing(request.path, dict(request.query))
            return web.Response(body=body, status=status, content_type="application/json")
        i = self.rest_next[key]
        while i < len(bodies) and (bodies[i][2] in self.done if bodies[i][2] is not None else bodies[i][0] < self.floor):
            i += 1  # fetched for an earlier captured connection
        if i < len(bodies):
            rec, body, owner = bodies[i]
            self.rest_next[key] = i + 1
            loop = asyncio.get_running_loop()
            deadline = loop.time() + REST_WAIT
            while loop.time() < deadline:  # until the stream has reached where this was fetched
                if owner in self.active:
                    if self.conn_pos.get(owner, -1) >= rec:
                        break
                elif not self.playing or self.position >= rec:
                    break
                await asyncio.sleep(0.001)
        else:
            self.rest_next[key] = i
            j = bisect.bisect_right([b[0] for b in bodies], self.position) - 1
            i = max(j, 0)
            body = bodies[i][1]
        self.rest_done[key] = max(self.rest_done[key], i + 1)
        self.rest_served += 1
        return web.Response(body=body, content_type="application/json")

    async def _control(self, request: web.Request) -> web.Response:
        return json_response(self.status())

    def status(self) -> dict:
        c = self.capture
        return {"venue": c.venue, "session": c.session, "connections": len(c.connections),
                "connections_served": self.next_conn, "playing": self.playing, "finished": self.finished,
                "frames": c.frames, "frames_served": self.frames_served, "rest_served": self.rest_served,
                "position": self.position, "speed": self.speed}

    # -- WebSocket
    async def on_open(self, conn) -> None:
        conn.state["requests"] = 0
        conn.state["ended"] = True
        request = conn.request
        named = self.adapter.replay_url_keys(request.path, dict(request.query))
        if named:  # streams named in the URL: subscribed at connect time
            conn.subscribe(named & self.capture.keys)
        if not self.unplayed:
            return  # the capture has been played: a quiet connection
        if self.capture.by_keys and not named:
            # which captured connection this one plays is told by its first subscribe
            task = asyncio.ensure_future(self._assign_when_subscribed(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._assign(conn, named)

    async def _assign_when_subscribed(self, conn) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BARRIER_WAIT
        while conn.state["requests"] == 0 and loop.time() < deadline and not conn.closing:
            await asyncio.sleep(0.002)
        if not conn.closing and self.unplayed:
            self._assign(conn, frozenset(conn.state.get("asked", ())))

    def _assign(self, conn, keys: frozenset) -> None:
        """Hand `conn` the first captured connection not played yet that subscribed what this
        client did (by_keys captures), else one that shares a key with it, else the next one."""
        conns = self.capture.connections
        pick = self.unplayed[0]
        if self.capture.by_keys and keys:
            pick = next((i for i in self.unplayed if frozenset(conns[i].keys) == keys),
                        next((i for i in self.unplayed if not keys.isdisjoint(conns[i].keys)), pick))
        self.unplayed.remove(pick)
        cc = conns[pick]
        self.next_conn += 1
        self.active.add(cc.conn_id)
        self.serving[cc.conn_id] = conn
        self.conn_pos[cc.conn_id] = cc.open_rec
        self.floor = max(self.floor, cc.open_rec)
        self.position = max(self.position, cc.open_rec)
        conn.state["ended"] = False
        self.playing += 1
        if self._started is None:
            self._started = time.monotonic()
        task = asyncio.ensure_future(self._play(conn, cc, self.next_conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_text(self, conn, data: str) -> None:
        payload = data.encode()
        req = self.adapter.replay_request(payload)
        if req is not None:
            op, keys = req
            if op == "subscribe":
                conn.subscribe(keys & self.capture.keys)
                conn.state.setdefault("asked", set()).update(keys)
                conn.state["requests"] += 1
            else:
                conn.unsubscribe(keys)
        for frame in self.adapter.replay_reply(payload, self.capture.keys, frozenset(conn.subscriptions)):
            conn.send(frame)

    def heartbeat(self, conn) -> bytes | None:
        if conn.state.get("ended"):
            return self.adapter.replay_heartbeat(conn.request.path)
        return None

    async def _play(self, conn, cc: CapturedConnection, number: int) -> None:
        loop = asyncio.get_running_loop()
        transport = conn.transport
        speed = self.speed
        t0 = loop.time()
        out: list[bytes] = []
        sent = subscribes = 0
        how = "played out"

        def flush() -> None:
            nonlocal out, sent
            if out and not conn.closing and not transport.is_closing():
                transport.write(b"".join(out))
                n = len(out)
                conn.messages += n
                conn.data_written += n
                conn.last_write = loop.time()
                sent += n
                self.frames_served += n
            out = []

        try:
            for kind, local_ns, rec, frame, arg in cc.events:
                if conn.closing or transport.is_closing():
                    how = "client closed"
                    break
                if speed is not None:
                    delay = t0 + (local_ns - cc.open_ns) / 1e9 / speed - loop.time()
                    if delay > 0.0005:
                        flush()
                        await asyncio.sleep(delay)
                if kind == FRAME:
                    if not arg or not arg.isdisjoint(conn.subscriptions):
                        out.append(frame)
                        if len(out) >= CHUNK:
                            flush()
                            while transport.get_write_buffer_size() > HIGH_WATER and not transport.is_closing():
                                await asyncio.sleep(0.001)
                            await asyncio.sleep(0)  # REST requests and other connections
                elif kind == SUBSCRIBE:
                    flush()
                    subscribes += 1
                    deadline = loop.time() + BARRIER_WAIT
                    while conn.state["requests"] < subscribes and loop.time() < deadline and not conn.closing:
                        await asyncio.sleep(0.002)
                elif kind == REST:
                    # the original client had this REST body here: hold the stream until this
                    # client has fetched it too (when it is subscribed to that symbol at all)
                    key, index, symbol = arg
                    self._advance(cc, rec)
                    if self.rest_done[key] <= index and self._wants(conn, symbol):
                        flush()
                        deadline = loop.time() + BARRIER_WAIT
                        while self.rest_done[key] <= index and loop.time() < deadline and not conn.closing:
                            await asyncio.sleep(0.001)
                elif kind == ROTATE:
                    notice = self.adapter.replay_rotate_notice()
                    if notice is not None:  # the client opens its successor (make-before-break)
                        flush()
                        conn.send(notice)
                        # hold until it has: a client busy with a previous handover may have
                        # ignored it (it is sent again every ROTATE_AGAIN s)
                        deadline, again = loop.time() + REST_WAIT, loop.time() + ROTATE_AGAIN
                        while (loop.time() < deadline and not conn.closing and not transport.is_closing()
                               and arg not in self.active and arg not in self.done):
                            if loop.time() >= again:
                                conn.send(notice)
                                again = loop.time() + ROTATE_AGAIN
                            await asyncio.sleep(0.002)
                elif kind == HANDOVER:
                    # the predecessor closes here: hold until its served connection has closed,
                    # so the client hands its books over to this one before anything follows
                    if self.adapter.replay_rotate_notice() is not None:
                        flush()
                        self._advance(cc, rec)
                        deadline = loop.time() + REST_WAIT
                        while loop.time() < deadline and not conn.closing:
                            served = self.serving.get(arg)
                            if arg not in self.active and (served is None or not served.open):
                                break
                            await asyncio.sleep(0.002)
                elif kind == CLOSE:
                    flush()
                    if cc.successor is not None and self.adapter.replay_rotate_notice() is not None:
                        # the successor's stream must have reached this point before the old
                        # connection goes: the client hands its books over without a gap
                        deadline = loop.time() + REST_WAIT
                        while (loop.time() < deadline and not conn.closing and not transport.is_closing()
                               and cc.successor not in self.done
                               and self.conn_pos.get(cc.successor, -1) < rec):
                            await asyncio.sleep(0.002)
                        if conn.closing or transport.is_closing():
                            how = "closed by the client (rotated)"
                            break
                    if not arg.startswith(STOP_PREFIX):
                        how = "closed as captured"
                        conn.close(1001, f"captured disconnect: {arg}")
                    self._advance(cc, rec)
                    break
                self._advance(cc, rec)
            flush()
        finally:
            self.playing -= 1
            self.active.discard(cc.conn_id)
            self.done.add(cc.conn_id)
            conn.state["ended"] = True
            took = loop.time() - t0
            rate = f", {sent / took:,.0f} frames/s" if took > 0 else ""
            self.report(f"connection {number} (captured conn {cc.conn_id}) {how}: {sent:,} of {cc.frames:,} frames in {took:.2f}s{rate}")
            if self.finished and self._started is not None:
                took = time.monotonic() - self._started
                self.report(f"replay finished: {self.frames_served:,} frames on {self.next_conn} connection(s), "
                            f"{self.rest_served} REST answers in {took:.2f}s")

    def _advance(self, cc: CapturedConnection, rec: int) -> None:
        if rec > self.position:
            self.position = rec
        if rec > self.conn_pos.get(cc.conn_id, -1):
            self.conn_pos[cc.conn_id] = rec

    @staticmethod
    def _wants(conn, symbol: str | None) -> bool:
        """Is this connection subscribed to `symbol` (keys are tuples ending with the symbol)?"""
        if symbol is None:
            return True
        return any(isinstance(k, tuple) and k and k[-1] == symbol for k in conn.subscriptions)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)


def speed_label(speed: float | None) -> str:
    return "full speed" if speed is None else f"{speed:g}x"


def serve_replay_main(root: str, venue: str, *, host: str = "127.0.0.1", port: int = 8765,
                      speed: float | None = 1.0, session: str | None = None,
                      report: Callable[[str], Any] | None = None) -> None:
    """Serve one session of `venue` under `root` until SIGINT/SIGTERM (`lab serve-replay`).
    CaptureError / UnknownVenue before anything listens; OSError when the port is taken."""
    report = report or (lambda line: print(line, flush=True))
    adapter = registry.adapter(venue)
    capture = load_capture(root, venue, session, adapter)

    def ready(sim) -> None:
        others = f", 1 of {len(capture.sessions)} sessions (--session)" if len(capture.sessions) > 1 else ""
        report(f"serving {venue} session {capture.session}{others} of {root} ({capture.frames:,} frames on "
               f"{len(capture.connections)} connection(s), {sum(map(len, capture.rest.values()))} REST bodies) "
               f"at {speed_label(speed)} on {sim.url} (ws {sim.ws_url})")

    try:
        asyncio.run(run_simulator(venue, host, port, ready_callback=ready, plugin_class=ReplayPlugin,
                                  capture=capture, adapter=adapter, speed=speed, report=report))
    except KeyboardInterrupt:
        pass


def parse_speed(text: str) -> float | None:
    """`max` -> None (as fast as the client reads), else a positive factor; ValueError otherwise."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text.rstrip("xX"))
    except ValueError:
        raise ValueError(f"--speed {text!r}: expected max, 1 (captured pacing) or a factor such as 10") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"--speed {text!r}: must be a positive factor (or max)")
    return value

