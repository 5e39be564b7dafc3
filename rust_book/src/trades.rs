//! `TradeRows`: the `trades` table's rows of one segment, accumulated in Rust (the trade twin of
//! `BookRows`), and `TradeMemory`: the ids of a pair's recent trades, for de-duplication.
//!
//! `TradeRows` is filled by `push` (any venue, one trade at a time from Python) or by the Kraken
//! frame parser (`KrakenTrades.apply`), and turned into Arrow-ready little-endian buffers by
//! `buffers()`; `lab.datasets.store.TradeColumns` subclasses it and builds the pyarrow table.

use std::collections::{HashSet, VecDeque};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// Trade rows in columns: timestamp, local_timestamp, id (text), side (text), price mantissa,
/// amount mantissa, rec_id. Text columns are Arrow string data + int32 offsets.
#[pyclass(module = "lab.rust_book", subclass)]
pub struct TradeRows {
    pub timestamp: Vec<i64>,
    pub local_timestamp: Vec<i64>,
    pub id_data: Vec<u8>,
    pub id_offsets: Vec<i32>,
    pub side_data: Vec<u8>,
    pub side_offsets: Vec<i32>,
    pub price: Vec<i64>,
    pub amount: Vec<i64>,
    pub rec_id: Vec<i64>,
}

impl Default for TradeRows {
    fn default() -> Self {
        TradeRows {
            timestamp: Vec::new(),
            local_timestamp: Vec::new(),
            id_data: Vec::new(),
            id_offsets: vec![0],
            side_data: Vec::new(),
            side_offsets: vec![0],
            price: Vec::new(),
            amount: Vec::new(),
            rec_id: Vec::new(),
        }
    }
}

fn push_text(data: &mut Vec<u8>, offsets: &mut Vec<i32>, text: &[u8]) -> Result<(), String> {
    let end = data.len() + text.len();
    let end = i32::try_from(end).map_err(|_| "trade rows: more than 2 GiB of text in one segment".to_string())?;
    data.extend_from_slice(text);
    offsets.push(end);
    Ok(())
}

fn text(data: &[u8], offsets: &[i32], i: usize) -> String {
    String::from_utf8_lossy(&data[offsets[i] as usize..offsets[i + 1] as usize]).into_owned()
}

impl TradeRows {
    /// Append one row (the text columns are checked to fit Arrow's int32 offsets first).
    #[allow(clippy::too_many_arguments)]
    pub fn push_row(
        &mut self,
        ts: i64,
        local_ts: i64,
        id: &[u8],
        side: &[u8],
        price: i64,
        amount: i64,
        rec_id: i64,
    ) -> Result<(), String> {
        if self.id_data.len() + id.len() > i32::MAX as usize || self.side_data.len() + side.len() > i32::MAX as usize {
            return Err("trade rows: more than 2 GiB of text in one segment".into());
        }
        push_text(&mut self.id_data, &mut self.id_offsets, id)?;
        push_text(&mut self.side_data, &mut self.side_offsets, side)?;
        self.timestamp.push(ts);
        self.local_timestamp.push(local_ts);
        self.price.push(price);
        self.amount.push(amount);
        self.rec_id.push(rec_id);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rec_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rec_id.is_empty()
    }

    #[allow(clippy::type_complexity)]
    fn row(&self, i: usize) -> (i64, i64, String, String, i64, i64, i64) {
        (
            self.timestamp[i],
            self.local_timestamp[i],
            text(&self.id_data, &self.id_offsets, i),
            text(&self.side_data, &self.side_offsets, i),
            self.price[i],
            self.amount[i],
            self.rec_id[i],
        )
    }
}

fn le_i64(v: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn le_i32(v: &[i32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

#[pymethods]
impl TradeRows {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, pyo3::types::PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        TradeRows::default()
    }

    fn __len__(&self) -> usize {
        self.len()
    }

    /// Append one trade: exchange and local time (ns), id, taker side ("buy" / "sell"), price
    /// and amount mantissas at the pair's precisions, rec_id.
    #[pyo3(signature = (ts, local_ts, id, side, price, amount, rec_id))]
    #[allow(clippy::too_many_arguments)]
    fn push(&mut self, ts: i64, local_ts: i64, id: &str, side: &str, price: i64, amount: i64, rec_id: i64) -> PyResult<()> {
        self.push_row(ts, local_ts, id.as_bytes(), side.as_bytes(), price, amount, rec_id)
            .map_err(PyValueError::new_err)
    }

    /// Remove every row.
    fn clear(&mut self) {
        *self = TradeRows::default();
    }

    #[getter]
    fn timestamp(&self) -> Vec<i64> {
        self.timestamp.clone()
    }

    #[getter]
    fn local_timestamp(&self) -> Vec<i64> {
        self.local_timestamp.clone()
    }

    #[getter]
    fn id(&self) -> Vec<String> {
        (0..self.len()).map(|i| text(&self.id_data, &self.id_offsets, i)).collect()
    }

    #[getter]
    fn side(&self) -> Vec<String> {
        (0..self.len()).map(|i| text(&self.side_data, &self.side_offsets, i)).collect()
    }

    #[getter]
    fn price(&self) -> Vec<i64> {
        self.price.clone()
    }

    #[getter]
    fn amount(&self) -> Vec<i64> {
        self.amount.clone()
    }

    #[getter]
    fn rec_id(&self) -> Vec<i64> {
        self.rec_id.clone()
    }

    /// Little-endian column buffers for `pyarrow.Array.from_buffers`, as a dict of bytes: int64
    /// columns (timestamp, local_timestamp, price, amount, rec_id), id and side as string data
    /// (`id_data`, `side_data`) with int32 offsets (`id_offsets`, `side_offsets`, n + 1 each);
    /// `n` is the row count.
    fn buffers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("n", self.len())?;
        for (name, col) in [
            ("timestamp", &self.timestamp),
            ("local_timestamp", &self.local_timestamp),
            ("price", &self.price),
            ("amount", &self.amount),
            ("rec_id", &self.rec_id),
        ] {
            d.set_item(name, PyBytes::new(py, &le_i64(col)))?;
        }
        d.set_item("id_data", PyBytes::new(py, &self.id_data))?;
        d.set_item("id_offsets", PyBytes::new(py, &le_i32(&self.id_offsets)))?;
        d.set_item("side_data", PyBytes::new(py, &self.side_data))?;
        d.set_item("side_offsets", PyBytes::new(py, &le_i32(&self.side_offsets)))?;
        Ok(d)
    }

    /// local_timestamp column as little-endian int64 bytes.
    fn local_timestamp_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &le_i64(&self.local_timestamp))
    }

    /// Rows from `start` on as tuples (timestamp, local_timestamp, id, side, price, amount,
    /// rec_id): all rows by default (tests), the rows one call appended (`on_trade`).
    #[pyo3(signature = (start = 0))]
    #[allow(clippy::type_complexity)]
    fn rows(&self, start: usize) -> Vec<(i64, i64, String, String, i64, i64, i64)> {
        (start.min(self.len())..self.len()).map(|i| self.row(i)).collect()
    }
}

/// The ids of the last `capacity` trades written for one pair: a trade whose id is here was
/// written already (a reconnect, a duplicated frame, a trade snapshot) and is skipped.
#[pyclass(module = "lab.rust_book")]
pub struct TradeMemory {
    capacity: usize,
    order: VecDeque<Box<[u8]>>,
    ids: HashSet<Box<[u8]>>,
}

impl TradeMemory {
    pub fn contains_id(&self, id: &[u8]) -> bool {
        self.ids.contains(id)
    }

    /// Remember `id` (not already remembered), forgetting the oldest beyond the capacity.
    pub fn remember(&mut self, id: &[u8]) {
        let id: Box<[u8]> = id.into();
        self.ids.insert(id.clone());
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

#[pymethods]
impl TradeMemory {
    #[new]
    fn new(capacity: usize) -> Self {
        TradeMemory { capacity, order: VecDeque::new(), ids: HashSet::new() }
    }

    fn __contains__(&self, id: &str) -> bool {
        self.contains_id(id.as_bytes())
    }

    fn __len__(&self) -> usize {
        self.order.len()
    }

    /// Remember an id that is not remembered yet (as `KrakenTrades.apply` does).
    fn add(&mut self, id: &str) {
        if !self.contains_id(id.as_bytes()) {
            self.remember(id.as_bytes());
        }
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TradeRows>()?;
    m.add_class::<TradeMemory>()?;
    Ok(())
}
