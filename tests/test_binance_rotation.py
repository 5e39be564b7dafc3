"""Binance connections end to end (real CLI, loopback simulator, real Parquet, no mocks): symbols
spread over several connections by the stream cap, and make-before-break rotation before the
(time-compressed) 24 h cut and on `serverShutdown`. Done means: `lab verify` zero gaps, one
snapshot per book over the whole recording (no resync at a rotation), no duplicated book update
or trade, every update id of the simulator's history from the first sync on present once, and the
replayed final books equal the simulator's."""
from __future__ import annotations

import json

from lab.venues.simulator import SimulatorThread
from labcli import lab

SYMBOLS = ("BTCUSDT", "ETHUSDT", "ETHBTC", "BNBEUR")


def get(url: str):
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def query(root, sql) -> list[dict]:
    return [json.loads(line) for line in lab("query", sql, "--root", root, "--json").stdout.splitlines()]


def written_chain(root, symbol: str) -> list[tuple[int, int]]:
    """(first_seq, last_seq) of each book message of a stream in the order the rows were written
    (file and row order, which is the order they apply in). Not by rec_id: diffs buffered before a
    snapshot's REST answer and applied after it keep their own, earlier rec_ids."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lab.datasets.reader import by_session, streams_in

    files = streams_in(str(root), "book", "binance", [symbol], [])[("binance", symbol)]
    out = []
    for session_files in by_session(files).values():
        t = pa.concat_tables([pq.read_table(f, columns=["first_seq", "last_seq", "flags"]) for f in session_files])
        last = np.asarray(t.column("flags")) & 1 == 1
        out += list(zip(np.asarray(t.column("first_seq"))[last].tolist(), np.asarray(t.column("last_seq"))[last].tolist()))
    return out


def canon(sym: str) -> str:
    return f"{sym[:-4]}-{sym[-4:]}" if sym.endswith(("USDT",)) else f"{sym[:-3]}-{sym[-3:]}"


def exact(s: str) -> str:
    s = s.rstrip("0").rstrip(".")
    return s or "0"


def record(root, sim, *opts, symbols=SYMBOLS, duration="12s", ws_path="/ws") -> dict:
    ws = f"ws://{sim.simulator.host}:{sim.simulator.port}{ws_path}"
    args = ["record", "--venue", "binance", "--ws-url", ws, "--rest-url", sim.url, "--duration", duration,
            "--out", root, "--json"]
    for s in symbols:
        args += ["--symbol", s]
    for o in opts:
        args += ["--opt", o]
    return json.loads(lab(*args, timeout=180).stdout)


def check_capture(root, sim, symbols=SYMBOLS, seamless: bool = True) -> dict:
    """verify: zero gaps, one snapshot per book; the book rows form one unbroken id chain with
    no update twice; trades without duplicates or holes; replay ends at the simulator's books."""
    stats = get(sim.url + "/control/stats")
    report = json.loads(lab("verify", root, "--json").stdout)
    assert report["ok"], report["problems"]
    replay = json.loads(lab("replay", root, "--json").stdout)
    for sym in symbols:
        c = canon(sym)
        s = report["streams"][f"binance/{c}"]
        assert s["gaps"] == 0 and s["unexplained_holes"] == 0, (sym, s)
        if seamless:
            assert s["resyncs"] == 0 and s["snapshots"] == 1, (sym, s)  # synced once: no rotation fell back
            assert report["trades"][f"binance/{c}"]["trade_id_holes"] == 0
        chain = written_chain(root, c)
        lasts = [l for _, l in chain]
        assert len(lasts) == len(set(lasts)), f"{sym}: a book update applied twice"
        assert len(chain) > 50 and chain[0][0] == chain[0][1], (sym, chain[:3])  # the snapshot first
        for (_, prev), (first, last) in zip(chain, chain[1:]):
            assert first == prev + 1 or (not seamless and first == last), (sym, prev, first)  # every update once
        # the last update the simulator wrote to any connection is where the replayed book ends
        last_seq = max(c_["last_seq"].get(sym, 0) for c_ in stats["connections"])
        want = get(f"{sim.url}/control/book?symbol={sym}&seq={last_seq}")
        stream = replay["streams"][f"binance/{c}"]
        assert stream["synced"] and stream["seq"] == want["lastUpdateId"], (sym, stream, want["lastUpdateId"])
        assert stream["best_bid"] == exact(want["bids"][0][0]) and stream["best_ask"] == exact(want["asks"][0][0])
    [row] = query(root, "select count(*) n, count(distinct symbol || ':' || id) d from trades")
    assert row["n"] == row["d"] > 0, row  # no trade twice
    return report


def events_of(root) -> dict:
    return {e["kind"]: e["n"] for e in query(root, "select kind, count(*) n from events group by kind")}


def test_symbols_over_several_connections(tmp_path):
    """3 symbols, a cap of 2 streams (one symbol: depth + trade) per connection: three
    connections, each its own conn_id and SUBSCRIBE; every symbol recorded with zero gaps."""
    root = tmp_path / "cap"
    symbols = SYMBOLS[:3]
    with SimulatorThread("binance", seed=11, rate=400) as sim:
        summary = record(root, sim, "streams_per_connection=2", symbols=symbols, duration="10s")
        report = check_capture(root, sim, symbols)
        conns = get(sim.url + "/control/stats")["connections"]
    assert summary["planned_connections"] == 3 and summary["connections"] == 3 and summary["gaps"] == 0
    subs = [sorted(c["subscriptions"]) for c in conns]
    assert len(subs) == 3 and all(len(s) == 2 for s in subs)  # one symbol x (depth, trade) each
    assert len({x for s in subs for x in s}) == 6
    sends = query(root, "select conn_id, payload from raw where kind = 'send' order by rec_id")
    assert len({r["conn_id"] for r in sends}) == 3
    # every book row comes from the frames of the one connection that carries its symbol
    owners = query(root, "select b.symbol, count(distinct r.conn_id) n from book b join raw r using (rec_id) "
                         "where r.kind = 'recv' group by b.symbol")
    assert len(owners) == 3 and all(o["n"] == 1 for o in owners), owners
    assert report["ok"]


def test_compressed_24h_rotation_make_before_break(tmp_path):
    """The simulator cuts connections at 24 h simulated = 5 s wall; the recorder (told the venue's
    age is 3 s) replaces each connection at 2.7 s, make-before-break, at least twice per plan
    entry: no resync, no gap, no duplicate."""
    root = tmp_path / "cap"
    with SimulatorThread("binance", seed=12, rate=400, time_scale=86400 / 5) as sim:
        summary = record(root, sim, "streams_per_connection=4", "max_connection_age=3", duration="10s")
        report = check_capture(root, sim)
        conns = get(sim.url + "/control/stats")["connections"]
    assert summary["rotations"] >= 4, summary  # two entries, each rotated at least twice
    assert summary["handovers"] >= 2 * len(SYMBOLS), summary
    assert not any(c["close_reason"] == "maximum connection age reached" for c in conns)  # we always went first
    events = events_of(root)
    assert "gap" not in events and "handover_timeout" not in events and "handover_failed" not in events, events
    assert events["handover"] == summary["handovers"]
    assert report["ok"]


def test_server_shutdown_make_before_break(tmp_path):
    """`serverShutdown` 2 s into every connection, the close 1.5 s later: the recorder opens the
    successor on the event and hands every book over before the close."""
    root = tmp_path / "cap"
    with SimulatorThread("binance", seed=13, rate=400, shutdown_after=2.0, shutdown_grace=1.5) as sim:
        summary = record(root, sim, symbols=SYMBOLS[:3], duration="8s", ws_path="/stream")
        check_capture(root, sim, SYMBOLS[:3])
        conns = get(sim.url + "/control/stats")["connections"]
    events = events_of(root)
    assert events["server_shutdown"] >= 2 and summary["rotations"] >= 2, (events, summary)
    assert "gap" not in events and "handover_failed" not in events, events
    assert summary["handovers"] >= 2 * 3
    assert not any(c["close_reason"] == "serverShutdown" for c in conns)  # closed by us, before the venue


def test_no_time_to_hand_over_falls_back_to_a_resync(tmp_path):
    """`serverShutdown` and the close at once (no grace): the successor cannot overlap in time, so
    the books the closed connection fed resync with a fresh snapshot (break-before-make, a
    `disconnect` event naming each), while the other connection's books go on untouched."""
    root = tmp_path / "cap"
    with SimulatorThread("binance", seed=14, rate=400, shutdown_after=2.5) as sim:
        summary = record(root, sim, "streams_per_connection=4", symbols=SYMBOLS, duration="7s")
        report = check_capture(root, sim, SYMBOLS, seamless=False)
    events = events_of(root)
    assert events["server_shutdown"] >= 2 and "gap" not in events, events
    assert summary["gaps"] == 0 and summary["planned_connections"] == 2
    per_symbol = query(root, "select symbol, count(*) n from events where kind = 'disconnect' and symbol is not null "
                             "group by symbol")
    assert per_symbol or events.get("handover"), events  # each closed connection's books: resynced or handed over
    assert sum(s["snapshots"] for s in report["streams"].values()) >= len(SYMBOLS)


def test_overlap_is_applied_once_and_handed_over_by_sequence():
    """The normalizer alone, on real frames (raw rows in the order a recorder stamps them): while
    an old and a successor connection both stream one book, every update and trade is applied
    once, whichever connection delivers it first; at the old one's close the book moves to the
    successor without a snapshot; a successor whose stream does not meet the book is a gap."""
    from lab.core.model import RawRow
    from lab.venues.binance import protocol as P
    from lab.venues.registry import adapter

    rec = iter(range(10**6))

    def row(conn, kind, payload, channel="ws", symbol=None):
        n = next(rec)
        return RawRow(n, 1_000 + n, conn, n, kind, channel, symbol, payload)

    def diff(U, u, price):
        return P.render_diff("BTCUSDT", 1, U, u, [(price, 100)], [], 2, 5)

    def trade(t):
        return P.render_trade("BTCUSDT", 1, t, 1000, 5, False, 2, 5)

    def run(successor_first: int, late: bool = False):
        norm = adapter("binance").normalizer()
        feed = norm.feed
        feed(row(0, "rest", P.render_exchange_info([("BTCUSDT", "BTC", "USDT", 2, 5)]), P.INSTRUMENTS_PATH))
        feed(row(1, "open", b"ws://x/ws"))
        feed(row(1, "send", P.subscribe_frame(["BTCUSDT"])))
        feed(row(1, "recv", b'{"result":null,"id":1}'))
        feed(row(1, "recv", diff(101, 103, 990)))
        feed(row(0, "rest", P.render_depth(100, [(990, 1)], [(1010, 1)], 2, 5), P.DEPTH_PATH + "?symbol=BTCUSDT", "BTCUSDT"))
        feed(row(1, "recv", diff(104, 105, 991)))
        feed(row(1, "recv", trade(7)))
        feed(row(2, "open", b"ws://x/ws"))  # the successor
        feed(row(2, "send", P.subscribe_frame(["BTCUSDT"])))
        feed(row(2, "recv", b'{"result":null,"id":1}'))
        old = [diff(106, 108, 992), trade(8), diff(109, 109, 993), diff(110, 112, 994)]
        new = [diff(106, 108, 992), trade(8), diff(109, 109, 993), diff(110, 112, 994), trade(9), diff(113, 113, 995)]
        if late:  # subscribed while the old connection lags: its first diff is ahead of the book
            new = new[2:]
        # the successor ahead by `successor_first` frames, then interleaved frame by frame
        frames = [(2, f) for f in new[:successor_first]]
        rest_new = new[successor_first:]
        for i in range(max(len(old), len(rest_new))):
            if i < len(old):
                frames.append((1, old[i]))
            if i < len(rest_new):
                frames.append((2, rest_new[i]))
        for conn, f in frames:
            feed(row(conn, "recv", f))
        feed(row(1, "close", b"closed by peer (code 1000)"))
        feed(row(2, "recv", diff(114, 115, 996)))
        feed(row(2, "recv", trade(10)))
        out = norm.take()
        book = out.book["BTC-USDT"].to_table(2, 5, "BTCUSDT")
        ends = [(f, l) for f, l, fl in zip(book.column("first_seq").to_pylist(), book.column("last_seq").to_pylist(),
                                            book.column("flags").to_pylist()) if fl & 1]
        trades = out.trades["BTC-USDT"].to_table(2, 5, "BTCUSDT").column("id").to_pylist()
        kinds = [e[2] for e in out.events]
        return norm, ends, trades, kinds

    for lead, late in ((0, False), (2, False), (5, False), (1, True), (3, True)):
        norm, ends, trades, kinds = run(lead, late)
        assert ends == [(100, 100), (101, 103), (104, 105), (106, 108), (109, 109), (110, 112), (113, 113), (114, 115)], (lead, ends)
        assert trades == ["7", "8", "9", "10"], (lead, trades)
        assert "gap" not in kinds and "resync" not in kinds and kinds.count("handover") == 1, (lead, kinds)
        assert norm.books["BTCUSDT"].synced and norm.books["BTCUSDT"].seq == 115
        assert ("disconnect" not in kinds) and norm.owner["BTCUSDT"] == 2

    # a successor subscribed too late: its first diff does not meet the book -> a gap, a resync
    norm = adapter("binance").normalizer()
    feed = norm.feed
    feed(row(0, "rest", P.render_exchange_info([("BTCUSDT", "BTC", "USDT", 2, 5)]), P.INSTRUMENTS_PATH))
    feed(row(1, "open", b"ws://x/ws"))
    feed(row(1, "send", P.subscribe_frame(["BTCUSDT"])))
    feed(row(1, "recv", diff(101, 103, 990)))
    feed(row(0, "rest", P.render_depth(100, [(990, 1)], [(1010, 1)], 2, 5), P.DEPTH_PATH + "?symbol=BTCUSDT", "BTCUSDT"))
    feed(row(2, "open", b"ws://x/ws"))
    feed(row(2, "send", P.subscribe_frame(["BTCUSDT"])))
    feed(row(2, "recv", b'{"result":null,"id":1}'))
    feed(row(1, "close", b"closed by peer (code 1000)"))
    feed(row(2, "recv", diff(107, 108, 992)))  # 104..106 went nowhere
    kinds = [e[2] for e in norm.take().events]
    assert "handover" in kinds and "gap" in kinds and "resync" in kinds
    assert not norm.books["BTCUSDT"].synced
