//! `BookRows`: the `book` table's rows of one segment, accumulated in Rust.
//!
//! Filled by `OrderBook.apply_wire_message` (the mock venue's hot path) or `push_levels` (any
//! venue), and turned into Arrow-ready little-endian buffers by `buffers()`;
//! `lab.datasets.store.BookColumns` subclasses it and builds the pyarrow table.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// Row flag: this row is the last one of its message.
pub const FLAG_LAST: u8 = 1;
/// Row flag: clear the book before applying this row (snapshot start).
pub const FLAG_CLEAR: u8 = 2;

/// Book rows in columns (timestamp, local_timestamp, is_snapshot, side 0 bid / 1 ask,
/// price ticks, amount lots, first_seq, last_seq, checksum (None except on LAST rows), flags,
/// rec_id).
#[pyclass(module = "lab.rust_book", subclass)]
#[derive(Default)]
pub struct BookRows {
    pub timestamp: Vec<i64>,
    pub local_timestamp: Vec<i64>,
    pub is_snapshot: Vec<bool>,
    pub side: Vec<u8>,
    pub price: Vec<i64>,
    pub amount: Vec<i64>,
    pub first_seq: Vec<i64>,
    pub last_seq: Vec<i64>,
    pub checksum: Vec<Option<u32>>,
    pub flags: Vec<u8>,
    pub rec_id: Vec<i64>,
}

impl BookRows {
    /// Rows of one applied message, as `Normalizer.emit_levels` writes them: a snapshot starts
    /// with CLEAR, every message ends with LAST (carrying the checksum), an empty snapshot is
    /// one CLEAR|LAST bid row at price 0 amount 0, an empty delta is no rows.
    /// Returns whether any row was written.
    #[allow(clippy::too_many_arguments)]
    pub fn push_message(
        &mut self,
        levels: &[(u8, i64, i64)],
        ts: i64,
        local_ts: i64,
        rec_id: i64,
        first_seq: i64,
        last_seq: i64,
        checksum: Option<u32>,
        snapshot: bool,
    ) -> bool {
        const EMPTY: [(u8, i64, i64); 1] = [(0, 0, 0)];
        let levels = if levels.is_empty() {
            if !snapshot {
                return false;
            }
            &EMPTY[..]
        } else {
            levels
        };
        let n = levels.len();
        let fill = |v: &mut Vec<i64>, x: i64| v.extend(std::iter::repeat_n(x, n));
        fill(&mut self.timestamp, ts);
        fill(&mut self.local_timestamp, local_ts);
        fill(&mut self.first_seq, first_seq);
        fill(&mut self.last_seq, last_seq);
        fill(&mut self.rec_id, rec_id);
        self.is_snapshot.extend(std::iter::repeat_n(snapshot, n));
        for &(s, p, a) in levels {
            self.side.push(s);
            self.price.push(p);
            self.amount.push(a);
        }
        self.checksum.extend(std::iter::repeat_n(None, n - 1));
        self.checksum.push(checksum);
        let first = self.flags.len();
        self.flags.extend(std::iter::repeat_n(0u8, n));
        if snapshot {
            self.flags[first] |= FLAG_CLEAR;
        }
        self.flags[first + n - 1] |= FLAG_LAST;
        true
    }
}

fn le_i64(v: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Arrow validity / boolean bitmap (LSB first), padded to whole bytes.
fn bitmap(n: usize, bit: impl Fn(usize) -> bool) -> Vec<u8> {
    let mut out = vec![0u8; n.div_ceil(8)];
    for i in 0..n {
        if bit(i) {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

#[pymethods]
impl BookRows {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, pyo3::types::PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        BookRows::default()
    }

    fn __len__(&self) -> usize {
        self.rec_id.len()
    }

    /// Append the rows of one message. `levels`: (side 0 bid / 1 ask, price ticks, amount lots)
    /// in message order. Same rules as `Normalizer.emit_levels`; returns whether rows were added.
    #[pyo3(signature = (levels, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot))]
    #[allow(clippy::too_many_arguments)]
    fn push_levels(
        &mut self,
        levels: Vec<(i64, i64, i64)>,
        ts: i64,
        local_ts: i64,
        rec_id: i64,
        first_seq: i64,
        last_seq: i64,
        checksum: Option<u32>,
        snapshot: bool,
    ) -> bool {
        let levels: Vec<(u8, i64, i64)> = levels
            .into_iter()
            .map(|(s, p, a)| (u8::from(s != 0), p, a))
            .collect();
        self.push_message(&levels, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot)
    }

    /// Remove every row.
    fn clear(&mut self) {
        *self = BookRows::default();
    }

    /// Little-endian column buffers for `pyarrow.Array.from_buffers`, as a dict of bytes:
    /// int64 columns (timestamp, local_timestamp, price, amount, first_seq, last_seq, rec_id),
    /// is_snapshot as a boolean bitmap, side as the concatenated 3-byte strings "bid"/"ask",
    /// flags as uint8, checksum as uint32 values (0 where null) plus `checksum_validity`
    /// (a bitmap, or None when no row is null) and `checksum_nulls`; `n` is the row count.
    fn buffers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let n = self.rec_id.len();
        let d = PyDict::new(py);
        d.set_item("n", n)?;
        for (name, col) in [
            ("timestamp", &self.timestamp),
            ("local_timestamp", &self.local_timestamp),
            ("price", &self.price),
            ("amount", &self.amount),
            ("first_seq", &self.first_seq),
            ("last_seq", &self.last_seq),
            ("rec_id", &self.rec_id),
        ] {
            d.set_item(name, PyBytes::new(py, &le_i64(col)))?;
        }
        d.set_item(
            "is_snapshot",
            PyBytes::new(py, &bitmap(n, |i| self.is_snapshot[i])),
        )?;
        let mut side = Vec::with_capacity(3 * n);
        for &s in &self.side {
            side.extend_from_slice(if s == 0 { b"bid" } else { b"ask" });
        }
        d.set_item("side", PyBytes::new(py, &side))?;
        d.set_item("flags", PyBytes::new(py, &self.flags))?;
        let mut values = Vec::with_capacity(4 * n);
        let mut nulls = 0usize;
        for c in &self.checksum {
            values.extend_from_slice(&c.unwrap_or(0).to_le_bytes());
            nulls += usize::from(c.is_none());
        }
        d.set_item("checksum", PyBytes::new(py, &values))?;
        if nulls > 0 {
            d.set_item(
                "checksum_validity",
                PyBytes::new(py, &bitmap(n, |i| self.checksum[i].is_some())),
            )?;
        } else {
            d.set_item("checksum_validity", py.None())?;
        }
        d.set_item("checksum_nulls", nulls)?;
        Ok(d)
    }

    /// local_timestamp column as little-endian int64 bytes.
    fn local_timestamp_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &le_i64(&self.local_timestamp))
    }

    /// Rows as a list of tuples (tests and debugging): (timestamp, local_timestamp, is_snapshot,
    /// side "bid"/"ask", price, amount, first_seq, last_seq, checksum, flags, rec_id).
    #[allow(clippy::type_complexity)]
    fn rows(
        &self,
    ) -> Vec<(i64, i64, bool, &'static str, i64, i64, i64, i64, Option<u32>, u8, i64)> {
        (0..self.rec_id.len())
            .map(|i| {
                (
                    self.timestamp[i],
                    self.local_timestamp[i],
                    self.is_snapshot[i],
                    if self.side[i] == 0 { "bid" } else { "ask" },
                    self.price[i],
                    self.amount[i],
                    self.first_seq[i],
                    self.last_seq[i],
                    self.checksum[i],
                    self.flags[i],
                    self.rec_id[i],
                )
            })
            .collect()
    }
}
