"""One object-lifetime rule for live and replay: the callback gets one `OrderBook` view per
stream, reused between calls and valid during the call; `copy()` keeps one. This test runs the
same probe on a live stream and on the capture of it, and fails if the two ever differ (for
example if one side starts handing out copies)."""
from __future__ import annotations

import time

from lab import ReplayConnector, get_connector
from lab.recorder.recorder import Recorder, RecordOptions
from lab.venues.simulator import SimulatorThread


class Probe:
    def __init__(self):
        self.refs = []  # what a careless strategy keeps: the object itself
        self.copies = []  # what a careful one keeps
        self.seen = []  # seq read during the call

    def on_book(self, book):
        self.refs.append(book)
        self.copies.append(book.copy())
        self.seen.append(book.seq)

    def rule(self) -> dict:
        assert len(self.refs) > 50
        last = self.refs[-1]
        return {
            "type": type(last).__name__,
            "one_object": len({id(r) for r in self.refs}) == 1,
            # a kept reference shows the newest state, not the one of its call ...
            "kept_ref_moves": all(r.seq == last.seq for r in self.refs) and self.seen[0] != last.seq,
            # ... while a copy keeps the state of its call
            "copy_keeps": [c.seq for c in self.copies] == self.seen and len({id(c) for c in self.copies}) == len(self.copies),
        }


def test_live_and_replay_hand_out_the_same_kind_of_object(tmp_path):
    root = str(tmp_path / "cap")
    live = Probe()
    with SimulatorThread("mock", seed=11, rate=800) as sim:
        c = get_connector("mock", rest_url=sim.url, ws_url=sim.ws_url)
        c.start_stream("BTC-USD", live.on_book)
        Recorder(RecordOptions(venue="mock", symbols=["BTC-USD"], root=root, rest_url=sim.url, ws_url=sim.ws_url,
                               duration=2, status=False)).run()
        time.sleep(0.2)
        c.stop_stream()
    replayed = Probe()
    r = ReplayConnector(root)
    r.start_stream("BTC-USD", replayed.on_book)
    r.run()
    want = {"type": "OrderBook", "one_object": True, "kept_ref_moves": True, "copy_keeps": True}
    assert live.rule() == want
    assert replayed.rule() == live.rule()
