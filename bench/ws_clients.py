"""WebSocket clients on the recorder workload: lab's hand-written client, picows, websockets, aiohttp.

    python bench/ws_clients.py [--rates 20000,60000] [--seconds 5] [--peer-python /work/ws-venv/bin/python] [--json]

A benchmark, not a test (issue 10 item 5). For every rate and client: a fresh `lab simulate --venue
mock` (same seed, frames pre-rendered so the simulator is not what gets measured, pinned to core 0)
and one receiver process (pinned to core 1) that connects, subscribes, and for `--seconds` does
only what the recorder's read loop does per frame: take the payload bytes, stamp
`time.time_ns()`, count, keep `(ts, len, payload)` in a list. It reports frames, bytes, process
CPU seconds (`time.process_time`) over the timed window and CPU microseconds per frame. Only
after the window are the kept payloads parsed (orjson) to check that every symbol's book `seq` is
gap-free ("lost") and how far the receiver is behind what the simulator had written ("behind",
book messages, from `/control/stats`): a client that keeps up is a few ms behind, one that
does not leaves the backlog in the socket.

lab's client runs in lab's venv (this interpreter); the third-party ones in a separate venv
(`--peer-python`, default /work/ws-venv/bin/python: `pip install picows websockets aiohttp orjson`),
never in lab's dependencies. Every client is set up for exact payload bytes: no
permessage-deflate (websockets' `compression=None`; the others do not offer it by default),
no text decoding (`recv(decode=False)`, `decode_text=False`, picows `get_payload_as_bytes`).

`--receiver NAME --url URL --seconds S --stats URL` is the receiver side (internal).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLIENTS = ("lab", "picows", "websockets", "aiohttp")
SYMBOLS = ["BTC-USD", "ETH-USD"]  # the mock's default instruments
# exactly what lab.venues.mock.feed.subscribe_frames(SYMBOLS) renders (orjson, compact)
SUBSCRIBE = json.dumps({"op": "subscribe", "symbols": SYMBOLS, "channels": ["book", "trades"]},
                       separators=(",", ":")).encode()

# What each client offers for the three properties the issue requires of the one that stays
# (read from each one's docs / source at the versions measured, see docs/ARCHITECTURE.md).
PROPERTIES = {
    "lab": {
        "caps_fragmented_message": "yes: connect(max_message=) caps one message, all fragments "
                                   "together, checked on each frame header before buffering (MessageTooLarge)",
        "answers_pings": "yes: always, in data_received (ping -> pong, close -> close)",
        "times_out_silent_peer": "not in the client: the recorder's watchdog (stall_timeout) and "
                                 "app-level pinger (ping_idle/ping_timeout) in lab/recorder/feed.py",
    },
    "picows": {
        "caps_fragmented_message": "no: max_frame_size caps ONE frame; picows hands over frames "
                                   "(fin bit), reassembling and capping a fragmented message is the caller's job",
        "answers_pings": "yes: enable_auto_pong=True (default)",
        "times_out_silent_peer": "yes: enable_auto_ping=True with auto_ping_idle_timeout / "
                                 "auto_ping_reply_timeout (off by default)",
    },
    "websockets": {
        "caps_fragmented_message": "yes: max_size (default 2**20) is the whole message; "
                                   "max_size=(message, fragment) also caps each frame",
        "answers_pings": "yes: always, by the protocol layer",
        "times_out_silent_peer": "yes: ping_interval / ping_timeout keepalive (20 s / 20 s by default)",
    },
    "aiohttp": {
        "caps_fragmented_message": "yes: ws_connect(max_msg_size=) (default 4 MiB) counts the frames "
                                   "already buffered (reader: frame_len + len(_partial))",
        "answers_pings": "yes: autoping=True (default), but only while the app is inside receive()",
        "times_out_silent_peer": "yes: heartbeat= (ping, close when no pong in heartbeat/2) and/or "
                                 "receive_timeout= (off by default)",
    },
}


# --------------------------------------------------------------------------- receiver side


async def _recv_lab(url: str, seconds: float, rows: list) -> dict:
    sys.path.insert(0, ROOT)
    from lab.net import websocket

    ws = await websocket.connect(url, max_message=16 << 20)
    time_ns = time.time_ns
    append = rows.append

    def on_message(payload: bytes, is_text: bool) -> None:
        append((time_ns(), len(payload), payload))

    ws.start(on_message)
    ws.send_text(SUBSCRIBE)
    t0, c0 = time.monotonic(), time.process_time()
    try:
        await asyncio.wait_for(asyncio.shield(ws.closed), seconds)
        reason = ws.closed.result()
    except asyncio.TimeoutError:
        reason = None
    c1, t1 = time.process_time(), time.monotonic()
    ws.abort()
    return {"cpu_s": c1 - c0, "wall_s": t1 - t0, "closed": reason}


async def _recv_picows(url: str, seconds: float, rows: list) -> dict:
    import picows
    from picows import WSListener, WSMsgType

    time_ns = time.time_ns
    append = rows.append
    TEXT, BINARY, CLOSE = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE
    closed = asyncio.get_running_loop().create_future()

    class Listener(WSListener):
        def on_ws_frame(self, transport, frame):
            t = frame.msg_type
            if t is TEXT or t is BINARY:  # the mock never fragments; a venue that does needs reassembly here
                payload = frame.get_payload_as_bytes()
                append((time_ns(), len(payload), payload))
            elif t is CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

        def on_ws_disconnected(self, transport):
            if not closed.done():
                closed.set_result("disconnected")

    transport, _ = await picows.ws_connect(Listener, url, enable_auto_pong=True, max_frame_size=16 << 20)
    transport.send(WSMsgType.TEXT, SUBSCRIBE)
    t0, c0 = time.monotonic(), time.process_time()
    try:
        reason = await asyncio.wait_for(asyncio.shield(closed), seconds)
    except asyncio.TimeoutError:
        reason = None
    c1, t1 = time.process_time(), time.monotonic()
    transport.disconnect(graceful=False)
    return {"cpu_s": c1 - c0, "wall_s": t1 - t0, "closed": reason, "version": picows.__version__}


async def _recv_websockets(url: str, seconds: float, rows: list) -> dict:
    import websockets
    from websockets.asyncio.client import connect

    time_ns = time.time_ns
    append = rows.append
    ws = await connect(url, compression=None, max_size=16 << 20, max_queue=None,
                       ping_interval=None, open_timeout=10)
    await ws.send(SUBSCRIBE, text=True)
    recv = ws.recv
    reason = None
    t0, c0 = time.monotonic(), time.process_time()
    try:
        async with asyncio.timeout(seconds):
            while True:
                payload = await recv(decode=False)
                append((time_ns(), len(payload), payload))
    except TimeoutError:
        pass
    except websockets.ConnectionClosed as exc:
        reason = f"closed: {exc}"
    c1, t1 = time.process_time(), time.monotonic()
    ws.transport.abort()
    return {"cpu_s": c1 - c0, "wall_s": t1 - t0, "closed": reason, "version": websockets.__version__}


async def _recv_aiohttp(url: str, seconds: float, rows: list) -> dict:
    import aiohttp
    from aiohttp import WSMsgType

    time_ns = time.time_ns
    append = rows.append
    TEXT, BINARY = WSMsgType.TEXT, WSMsgType.BINARY
    reason = None
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, autoping=True, max_msg_size=16 << 20, decode_text=False)
        await ws.send_str(SUBSCRIBE.decode())
        receive = ws.receive
        t0, c0 = time.monotonic(), time.process_time()
        try:
            async with asyncio.timeout(seconds):
                while True:
                    msg = await receive()
                    t = msg.type
                    if t is TEXT or t is BINARY:
                        payload = msg.data
                        append((time_ns(), len(payload), payload))
                    else:
                        reason = f"{t.name}: {msg.data!r} {msg.extra!r}"
                        break
        except TimeoutError:
            pass
        c1, t1 = time.process_time(), time.monotonic()
        await ws.close()
    return {"cpu_s": c1 - c0, "wall_s": t1 - t0, "closed": reason, "version": aiohttp.__version__}


def _check(rows: list, stats_url: str) -> dict:
    """After the timed window: seq continuity per symbol from the kept payloads."""
    try:
        import orjson
        loads = orjson.loads
    except ImportError:
        loads = json.loads
    last: dict[str, int] = {}
    first: dict[str, int] = {}
    gaps = missing = book = trades = other = 0
    for _, _, payload in rows:
        doc = loads(payload)
        kind = doc.get("type") if isinstance(doc, dict) else None
        if kind == "book":
            book += 1
            sym, seq = doc["symbol"], doc["seq"]
            prev = last.get(sym)
            if prev is None:
                first[sym] = seq
            elif seq != prev + 1:
                gaps += 1
                missing += max(0, seq - prev - 1)
            last[sym] = seq
        elif kind == "trade":
            trades += 1
        else:
            other += 1
    behind = None
    try:
        with urllib.request.urlopen(stats_url, timeout=10) as resp:
            conns = json.loads(resp.read())["connections"]
        sim_last = conns[-1]["last_seq"]
        behind = sum(v - last.get(s, first.get(s, v)) for s, v in sim_last.items() if s in last)
    except Exception as exc:  # noqa: BLE001 - a report, not a failure
        behind = f"stats unavailable: {exc}"
    return {"book": book, "trades": trades, "other": other, "seq_gaps": gaps, "seq_missing": missing,
            "behind_book_msgs": behind}


def receiver(name: str, url: str, seconds: float, stats_url: str) -> int:
    rows: list = []
    run = {"lab": _recv_lab, "picows": _recv_picows, "websockets": _recv_websockets, "aiohttp": _recv_aiohttp}[name]
    res = asyncio.run(run(url, seconds, rows))
    frames = len(rows)
    nbytes = sum(r[1] for r in rows)
    # the stats are read right after the window (the simulator keeps going): "behind" is what
    # was written to this connection but not yet received when the window closed
    check = _check(rows, stats_url)
    out = {"client": name, "frames": frames, "bytes": nbytes, "cpu_s": round(res["cpu_s"], 4),
           "cpu_us_per_frame": round(res["cpu_s"] * 1e6 / frames, 3) if frames else None,
           "wall_s": round(res["wall_s"], 3), "rate_per_s": round(frames / res["wall_s"]) if res["wall_s"] else 0,
           "closed_early": res["closed"], "version": res.get("version", "lab"), **check}
    print(json.dumps(out), flush=True)
    return 0


# --------------------------------------------------------------------------- driver side


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_one(client: str, rate: float, seconds: float, seed: int, peer_python: str) -> dict:
    port = free_port()
    prerender = int(rate * (seconds + 5) * 1.2)
    have_taskset = shutil.which("taskset") is not None
    sim_pin = ["taskset", "-c", "0"] if have_taskset else []
    rcv_pin = ["taskset", "-c", "1"] if have_taskset else []
    sim = subprocess.Popen([*sim_pin, sys.executable, "-m", "lab", "simulate", "--venue", "mock", "--port", str(port),
                            "--rate", str(rate), "--seed", str(seed), "--option", f"prerender={prerender}"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        # wait until the port accepts (the simulator prints "listening ..." once serving)
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if sim.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("simulator did not start")
                time.sleep(0.1)
        py = sys.executable if client == "lab" else peer_python
        proc = subprocess.run([*rcv_pin, py, os.path.abspath(__file__), "--receiver", client,
                               "--url", f"ws://127.0.0.1:{port}/ws", "--seconds", str(seconds),
                               "--stats", f"http://127.0.0.1:{port}/control/stats"],
                              cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120)
        if proc.returncode:
            return {"client": client, "error": proc.stderr.strip().splitlines()[-1:] or proc.returncode}
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
    out["offered_rate"] = rate
    out["lost"] = bool(out["seq_gaps"]) or bool(out["closed_early"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="20000,60000", help="simulator msg/s, comma separated")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--peer-python", default="/work/ws-venv/bin/python")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--receiver", choices=CLIENTS)
    ap.add_argument("--url")
    ap.add_argument("--stats")
    args = ap.parse_args()
    if args.receiver:
        return receiver(args.receiver, args.url, args.seconds, args.stats)

    results = []
    for rate in [float(r) for r in args.rates.split(",")]:
        for rep in range(args.repeat):
            for client in args.clients.split(","):
                r = run_one(client, rate, args.seconds, args.seed, args.peer_python)
                r["repeat"] = rep
                results.append(r)
                if not args.json:
                    print(f"  done {client} @ {rate:g}/s: {r.get('cpu_us_per_frame', r.get('error'))} us/frame", file=sys.stderr)
    if args.json:
        print(json.dumps({"bench": "ws_clients", "seconds": args.seconds, "seed": args.seed,
                          "cpus": os.cpu_count(), "results": results, "properties": PROPERTIES}))
        return 0
    head = f"{'rate/s':>7} {'client':<11} {'version':<8} {'frames':>8} {'MB':>6} {'recv/s':>7} {'cpu s':>6} {'us/frame':>8} {'gaps':>4} {'behind':>7}  closed"
    print(head)
    for r in results:
        if "error" in r:
            print(f"{r.get('offered_rate', 0):>7.0f} {r['client']:<11} ERROR {r['error']}")
            continue
        print(f"{r['offered_rate']:>7.0f} {r['client']:<11} {r['version']:<8} {r['frames']:>8} {r['bytes'] / 1e6:>6.1f} "
              f"{r['rate_per_s']:>7} {r['cpu_s']:>6.2f} {r['cpu_us_per_frame']:>8.2f} {r['seq_gaps']:>4} "
              f"{str(r['behind_book_msgs']):>7}  {r['closed_early'] or '-'}")
    print()
    for name, props in PROPERTIES.items():
        print(f"{name}:")
        for k, v in props.items():
            print(f"    {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
