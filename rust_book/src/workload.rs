//! The pinned, seeded benchmark workload of `lab bench book` (issue 3), generated here so that
//! every engine gets the very same rows and the generator is fast enough for millions of rows.
//!
//! Model (all choices fixed by the seed, SplitMix64):
//! - prices in ticks (price precision 2, start mid 30000.00), amounts in lots (precision 8),
//!   uniform in 0.00000001 .. 10.00000000;
//! - the first message is a snapshot of `depth` levels per side, 1 or 2 ticks apart; a snapshot
//!   (CLEAR on its first row, the whole book, bids then asks) repeats every `snapshot_every`
//!   messages;
//! - every other message has 1 to 50 rows (uniform), each on a random side; a row's distance
//!   from the touch, in levels, is geometric with median 3 (P(next) = 0.82); 25 % of rows delete
//!   that existing level, the rest update its amount or insert a new level at the first free
//!   tick that many ticks or more from the mid on its side (= from the touch when the spread is
//!   one tick; a wider spread fills in from the inside). The insert share adapts (30 % below `depth` levels, 20 % at or above) so each side stays near
//!   `depth`; the book is truncated to `depth` after every message, never crossed;
//! - exchange time advances 0 to 2 ms per message, local time is exchange time plus 1 to 3 ms.
//!
//! The generator's own book gives the expected final best bid and ask.

use std::collections::BTreeMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bulk::RustBuffer;
use crate::rng::Rng;

pub struct Workload {
    pub sides: Vec<u8>,
    pub prices: Vec<i64>,
    pub amounts: Vec<i64>,
    pub flags: Vec<u8>,
    pub timestamps: Vec<i64>,
    pub local_timestamps: Vec<i64>,
    pub messages: usize,
    pub best_bid: Option<(i64, i64)>,
    pub best_ask: Option<(i64, i64)>,
}

struct Gen {
    rng: Rng,
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
    depth: usize,
    w: Workload,
    ts: i64,
    lts: i64,
}

const AMOUNT_MAX: u64 = 1_000_000_000;

impl Gen {
    fn push(&mut self, side: u8, price: i64, amount: i64, flags: u8) {
        self.w.sides.push(side);
        self.w.prices.push(price);
        self.w.amounts.push(amount);
        self.w.flags.push(flags);
        self.w.timestamps.push(self.ts);
        self.w.local_timestamps.push(self.lts);
    }

    fn tick_time(&mut self) {
        self.ts += self.rng.range(0, 2_000_000) as i64;
        self.lts = self.ts + self.rng.range(1_000_000, 3_000_000) as i64;
        if let Some(&prev) = self.w.local_timestamps.last() {
            self.lts = self.lts.max(prev); // local time never goes backwards
        }
    }

    fn snapshot(&mut self) {
        self.tick_time();
        let start = self.w.flags.len();
        let bids: Vec<(i64, i64)> = self.bids.iter().rev().map(|(&p, &a)| (p, a)).collect();
        let asks: Vec<(i64, i64)> = self.asks.iter().map(|(&p, &a)| (p, a)).collect();
        for (p, a) in bids {
            self.push(0, p, a, 0);
        }
        for (p, a) in asks {
            self.push(1, p, a, 0);
        }
        if self.w.flags.len() == start {
            self.push(0, 0, 0, 0); // empty snapshot: delete the absent bid at price 0
        }
        self.w.flags[start] |= 2;
        let last = self.w.flags.len() - 1;
        self.w.flags[last] |= 1;
        self.w.messages += 1;
    }

    fn row(&mut self) {
        let ask = self.rng.next() & 1 == 1;
        let d = self.rng.distance();
        let r = self.rng.unit();
        let amount = self.rng.range(1, AMOUNT_MAX) as i64;
        let (count, touch, other) = if ask {
            (
                self.asks.len(),
                self.asks.keys().next().copied(),
                self.bids.keys().next_back().copied(),
            )
        } else {
            (
                self.bids.len(),
                self.bids.keys().next_back().copied(),
                self.asks.keys().next().copied(),
            )
        };
        let insert_share = if count < self.depth { 0.30 } else { 0.20 };
        let side = ask as u8;
        if count > 0 && r < 0.25 + (1.0 - 0.25 - insert_share) {
            // delete or update the d-th existing level
            let k = d.min(count - 1);
            let price = if ask {
                *self.asks.keys().nth(k).unwrap_or(&0)
            } else {
                *self.bids.keys().nth_back(k).unwrap_or(&0)
            };
            let a = if r < 0.25 { 0 } else { amount };
            let book = if ask { &mut self.asks } else { &mut self.bids };
            if a == 0 {
                book.remove(&price);
            } else {
                book.insert(price, a);
            }
            self.push(side, price, a, 0);
            return;
        }
        // insert d ticks from the mid on this side: with a one-tick spread that is d ticks from
        // the touch; a wide spread fills in from the inside, as market makers do
        let d = d as i64;
        let _ = touch;
        let price = match (ask, self.bids.keys().next_back(), self.asks.keys().next()) {
            (false, Some(&b), Some(&a)) => (b + a + 1).div_euclid(2) - 1 - d,
            (true, Some(&b), Some(&a)) => (b + a).div_euclid(2) + 1 + d,
            (false, Some(&b), None) => b - d,
            (true, None, Some(&a)) => a + d,
            (false, None, Some(&a)) => a - 1 - d,
            (true, Some(&b), None) => b + 1 + d,
            (false, None, None) => 3_000_000 - 1 - d,
            (true, None, None) => 3_000_000 + 1 + d,
        };
        let _ = other;
        // a new level: the first free tick at or beyond `price`, away from the touch
        let book = if ask { &mut self.asks } else { &mut self.bids };
        let step = if ask { 1 } else { -1 };
        let mut price = price;
        while book.contains_key(&price) {
            price += step;
        }
        book.insert(price, amount);
        self.push(side, price, amount, 0);
    }

    fn truncate(&mut self) {
        while self.bids.len() > self.depth {
            self.bids.pop_first();
        }
        while self.asks.len() > self.depth {
            self.asks.pop_last();
        }
    }
}

pub fn generate(rows: usize, seed: u64, depth: usize, snapshot_every: usize) -> Workload {
    let mut g = Gen {
        rng: Rng(seed ^ 0x6C61_625F_626F_6F6B),
        bids: BTreeMap::new(),
        asks: BTreeMap::new(),
        depth: depth.max(1),
        w: Workload {
            sides: Vec::with_capacity(rows + 4096),
            prices: Vec::with_capacity(rows + 4096),
            amounts: Vec::with_capacity(rows + 4096),
            flags: Vec::with_capacity(rows + 4096),
            timestamps: Vec::with_capacity(rows + 4096),
            local_timestamps: Vec::with_capacity(rows + 4096),
            messages: 0,
            best_bid: None,
            best_ask: None,
        },
        ts: 1_700_000_000_000_000_000,
        lts: 0,
    };
    // initial book: levels 1 or 2 ticks apart around 30000.00
    let (mut b, mut a) = (2_999_999i64, 3_000_001i64);
    for _ in 0..g.depth {
        let amt = g.rng.range(1, AMOUNT_MAX) as i64;
        g.bids.insert(b, amt);
        let amt = g.rng.range(1, AMOUNT_MAX) as i64;
        g.asks.insert(a, amt);
        b -= g.rng.range(1, 2) as i64;
        a += g.rng.range(1, 2) as i64;
    }
    let every = snapshot_every.max(1);
    while g.w.flags.len() < rows {
        if g.w.messages % every == 0 {
            g.snapshot();
            continue;
        }
        g.tick_time();
        let k = g.rng.range(1, 50);
        for _ in 0..k {
            g.row();
        }
        let last = g.w.flags.len() - 1;
        g.w.flags[last] |= 1;
        g.truncate();
        g.w.messages += 1;
    }
    g.w.best_bid = g.bids.iter().next_back().map(|(&p, &a)| (p, a));
    g.w.best_ask = g.asks.iter().next().map(|(&p, &a)| (p, a));
    g.w
}

fn bytes_of(v: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// The pinned benchmark workload: at least `rows` book rows (whole messages), as buffers
/// `sides` (int8), `prices`, `amounts`, `timestamps`, `local_timestamps` (int64), `flags`
/// (uint8), with `messages`, `price_precision` (2), `amount_precision` (8), `depth`, and the
/// generator's final `best_bid` / `best_ask` ((ticks, lots)).
#[pyfunction]
#[pyo3(signature = (rows, seed = 1, depth = 1000, snapshot_every = 10_000))]
pub fn bench_workload<'py>(
    py: Python<'py>,
    rows: i64,
    seed: u64,
    depth: i64,
    snapshot_every: i64,
) -> PyResult<Bound<'py, PyDict>> {
    if !(1..=500_000_000).contains(&rows) || !(1..=1_000_000).contains(&depth) || snapshot_every < 1 {
        return Err(PyValueError::new_err(format!(
            "need 1 <= rows <= 5e8, 1 <= depth <= 1e6, snapshot_every >= 1 (got {rows}, {depth}, {snapshot_every})"
        )));
    }
    let w = py.detach(|| generate(rows as usize, seed, depth as usize, snapshot_every as usize));
    let d = PyDict::new(py);
    d.set_item("rows", w.flags.len())?;
    d.set_item("messages", w.messages)?;
    d.set_item("price_precision", 2)?;
    d.set_item("amount_precision", 8)?;
    d.set_item("depth", depth)?;
    d.set_item("best_bid", w.best_bid)?;
    d.set_item("best_ask", w.best_ask)?;
    d.set_item("sides", Py::new(py, RustBuffer::new(w.sides))?)?;
    d.set_item("flags", Py::new(py, RustBuffer::new(w.flags))?)?;
    d.set_item("prices", Py::new(py, RustBuffer::new(bytes_of(&w.prices)))?)?;
    d.set_item("amounts", Py::new(py, RustBuffer::new(bytes_of(&w.amounts)))?)?;
    d.set_item("timestamps", Py::new(py, RustBuffer::new(bytes_of(&w.timestamps)))?)?;
    d.set_item(
        "local_timestamps",
        Py::new(py, RustBuffer::new(bytes_of(&w.local_timestamps)))?,
    )?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(bench_workload, m)?)?;
    Ok(())
}
