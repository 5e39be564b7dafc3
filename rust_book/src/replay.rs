//! `ReplayDriver`: the replay loop's hot path in Rust.
//!
//! `lab.replay.connector.ReplayConnector` merges a capture's streams into one order of entries
//! (book messages, trades, events); the driver walks that order and, for the book messages of
//! streams it was given, applies the message to the stream's `OrderBook`, sets its clocks and
//! calls the Python callback with the book, all without a Python frame per message. It hands
//! control back to Python at the first entry it does not own (a trade, an event, a stream
//! Python keeps, such as one recorded by several sessions) or after `limit` entries, so Python
//! keeps every rule that is not the hot path (gaps, session selection, pacing, progress, stop).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyString};

use crate::bulk::{self, InBuf};
use crate::orderbook::OrderBook;
use crate::rows::{FLAG_CLEAR, FLAG_LAST};

/// The merged order's kinds of a book message and a trade (`connector._BOOK`, `_TRADE`).
const BOOK: i64 = 0;
const TRADE: i64 = 1;

#[inline]
fn i64_at(bytes: &[u8], i: usize) -> i64 {
    i64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap())
}

struct Stream {
    book: Py<OrderBook>,
    venue: Py<PyString>,
    symbol: Py<PyString>,
    sides: InBuf,
    prices: InBuf,
    amounts: InBuf,
    flags: InBuf,
    price_width: usize,
    amount_width: usize,
    timestamps: InBuf,
    local_timestamps: InBuf,
    last_seqs: InBuf,
    /// One past the last row with the LAST flag: a message starting before it ends in the data.
    valid_end: usize,
    cursor: usize,
    callback: Option<Py<PyAny>>,
    synced_at_last: Option<bool>,
}

struct TradeStream {
    venue: Py<PyString>,
    symbol: Py<PyString>,
    /// `factory(row)` -> the trade object handed to `callback`.
    factory: Py<PyAny>,
    callback: Option<Py<PyAny>>,
}

/// Walks a merged replay order (int64 columns `kinds`, `streams`, `local_timestamps` and an
/// optional uint8 `window` mask, any buffer-protocol objects) over registered book streams.
#[pyclass(module = "lab.rust_book", unsendable)]
pub struct ReplayDriver {
    kinds: InBuf,
    streams: InBuf,
    local: InBuf,
    rows: InBuf,
    window: Option<InBuf>,
    entries: usize,
    slots: Vec<Option<Stream>>,
    trade_slots: Vec<Option<TradeStream>>,
    /// Book messages applied by `run`.
    #[pyo3(get)]
    messages: u64,
    /// Trades `run` passed (delivered when in the window and a callback is set).
    #[pyo3(get)]
    trades: u64,
    /// With a `before` hook: `before` is called for an entry stamped at or after this (ns).
    /// The hook and the callbacks return the next value as an int (i64::MAX: no call until a
    /// callback returns a smaller one); anything else (None, say), or Python handling an entry
    /// itself, resets it to the minimum: call every time.
    #[pyo3(get, set)]
    wake: i64,
    /// A one-byte bytearray: non-zero stops `run` after the callback that set it (a stop asked
    /// from a callback or another thread is seen at once, not at the end of the chunk).
    stop: Option<Py<PyByteArray>>,
}

/// A hook's or callback's answer as the next `wake`.
fn wake_of(ret: &Bound<'_, PyAny>) -> i64 {
    ret.extract::<i64>().unwrap_or(i64::MIN)
}

#[pymethods]
impl ReplayDriver {
    #[new]
    #[pyo3(signature = (kinds, streams, local_timestamps, rows, window = None, stop = None))]
    fn new(
        kinds: &Bound<'_, PyAny>,
        streams: &Bound<'_, PyAny>,
        local_timestamps: &Bound<'_, PyAny>,
        rows: &Bound<'_, PyAny>,
        window: Option<&Bound<'_, PyAny>>,
        stop: Option<Bound<'_, PyByteArray>>,
    ) -> PyResult<Self> {
        if stop.as_ref().is_some_and(|b| b.len() != 1) {
            return Err(PyValueError::new_err("stop must be a bytearray of one byte"));
        }
        let kinds = InBuf::get(kinds, "kinds")?;
        let streams = InBuf::get(streams, "streams")?;
        let local = InBuf::get(local_timestamps, "local_timestamps")?;
        let rows = InBuf::get(rows, "rows")?;
        let n = kinds.bytes().len() / 8;
        let lens = [kinds.bytes().len(), streams.bytes().len(), local.bytes().len(), rows.bytes().len()];
        if lens.iter().any(|&l| l != n * 8) {
            return Err(PyValueError::new_err(format!(
                "kinds, streams, local_timestamps and rows must be int64 columns of one length (bytes: {lens:?})"
            )));
        }
        let window = match window {
            Some(w) => {
                let w = InBuf::get(w, "window")?;
                if w.bytes().len() != n {
                    return Err(PyValueError::new_err(format!("window must hold {n} bytes, got {}", w.bytes().len())));
                }
                Some(w)
            }
            None => None,
        };
        Ok(ReplayDriver {
            kinds,
            streams,
            local,
            rows,
            window,
            entries: n,
            slots: Vec::new(),
            trade_slots: Vec::new(),
            messages: 0,
            trades: 0,
            wake: i64::MIN,
            stop: stop.map(Bound::unbind),
        })
    }

    /// Register the trades of merged-order stream index `index` (venue, symbol as the book's):
    /// a trade entry in the window calls `callback(factory(row))`.
    #[pyo3(signature = (index, venue, symbol, factory, callback = None))]
    fn add_trades(
        &mut self,
        index: usize,
        venue: Py<PyString>,
        symbol: Py<PyString>,
        factory: Py<PyAny>,
        callback: Option<Py<PyAny>>,
    ) {
        if self.trade_slots.len() <= index {
            self.trade_slots.resize_with(index + 1, || None);
        }
        self.trade_slots[index] = Some(TradeStream { venue, symbol, factory, callback });
    }

    /// Register the book stream of merged-order stream index `index`: its `book`, its rows'
    /// columns (as `OrderBook.apply_rows` takes them), its per-row int64 clocks and sequence,
    /// and the callback its messages go to (None: applied, no call). Every row's values are
    /// checked here, once.
    #[pyo3(signature = (index, book, sides, prices, amounts, flags, price_width, amount_width,
                        timestamps, local_timestamps, last_seqs, callback = None))]
    #[allow(clippy::too_many_arguments)]
    fn add_stream(
        &mut self,
        py: Python<'_>,
        index: usize,
        book: Py<OrderBook>,
        sides: &Bound<'_, PyAny>,
        prices: &Bound<'_, PyAny>,
        amounts: &Bound<'_, PyAny>,
        flags: &Bound<'_, PyAny>,
        price_width: usize,
        amount_width: usize,
        timestamps: &Bound<'_, PyAny>,
        local_timestamps: &Bound<'_, PyAny>,
        last_seqs: &Bound<'_, PyAny>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        if !matches!(price_width, 8 | 16) || !matches!(amount_width, 8 | 16) {
            return Err(PyValueError::new_err("price_width and amount_width must be 8 or 16"));
        }
        let (venue, symbol) = {
            let b = book.borrow(py);
            (PyString::new(py, &b.venue).unbind(), PyString::new(py, &b.symbol).unbind())
        };
        let s = Stream {
            venue,
            symbol,
            book,
            sides: InBuf::get(sides, "sides")?,
            prices: InBuf::get(prices, "prices")?,
            amounts: InBuf::get(amounts, "amounts")?,
            flags: InBuf::get(flags, "flags")?,
            price_width,
            amount_width,
            timestamps: InBuf::get(timestamps, "timestamps")?,
            local_timestamps: InBuf::get(local_timestamps, "local_timestamps")?,
            last_seqs: InBuf::get(last_seqs, "last_seqs")?,
            valid_end: 0,
            cursor: 0,
            callback,
            synced_at_last: None,
        };
        let rows = s.flags.bytes().len();
        let valid_end = s.flags.bytes().iter().rposition(|f| f & FLAG_LAST != 0).map_or(0, |k| k + 1);
        for (name, buf, width) in [
            ("sides", &s.sides, 1),
            ("prices", &s.prices, price_width),
            ("amounts", &s.amounts, amount_width),
            ("timestamps", &s.timestamps, 8),
            ("local_timestamps", &s.local_timestamps, 8),
            ("last_seqs", &s.last_seqs, 8),
        ] {
            if buf.bytes().len() < rows * width {
                return Err(PyValueError::new_err(format!(
                    "{name} holds {} bytes, need {} ({rows} rows x {width})",
                    buf.bytes().len(),
                    rows * width
                )));
            }
        }
        bulk::check_values(s.sides.bytes(), s.prices.bytes(), s.amounts.bytes(), price_width, amount_width, 0..valid_end)
            .map_err(PyValueError::new_err)?;
        let s = Stream { valid_end, ..s };
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(s);
        Ok(())
    }

    /// Walk the order from entry `j`: apply and deliver the book messages and trades of
    /// registered streams until an entry Python handles, the end, or `limit` entries; returns the next entry's
    /// index. `before(local_ts, venue, symbol)`, when given, is called before each message in
    /// the window is applied (the backtest's order arrivals and timers) that is stamped at or
    /// after `wake` (see there). A callback's exception
    /// propagates; the message it was called for stays applied.
    #[pyo3(signature = (j, limit, before = None))]
    fn run(&mut self, py: Python<'_>, j: usize, limit: usize, before: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let end = self.entries.min(j.saturating_add(limit));
        let mut j = j;
        while j < end {
            let kind = i64_at(self.kinds.bytes(), j);
            let si = i64_at(self.streams.bytes(), j);
            if kind == TRADE {
                let Some(Some(t)) = (si >= 0).then(|| self.trade_slots.get(si as usize)).flatten() else {
                    break;
                };
                self.trades += 1;
                j += 1;
                if self.window.as_ref().is_none_or(|w| w.bytes()[j - 1] != 0) {
                    if let Some(before) = before {
                        let local_ts = i64_at(self.local.bytes(), j - 1);
                        if local_ts >= self.wake {
                            self.wake = wake_of(&before.call1((local_ts, t.venue.bind(py), t.symbol.bind(py)))?);
                        }
                    }
                    if let Some(cb) = &t.callback {
                        let trade = t.factory.call1(py, (i64_at(self.rows.bytes(), j - 1),))?;
                        let ret = cb.bind(py).call1((trade,))?;
                        if before.is_some() {
                            self.wake = wake_of(&ret);
                        }
                        if self.stopped(py) {
                            return Ok(j);
                        }
                    }
                }
                continue;
            }
            if kind != BOOK {
                break;
            }
            let Some(Some(s)) = (si >= 0).then(|| self.slots.get_mut(si as usize)).flatten() else {
                break;
            };
            let in_window = self.window.as_ref().is_none_or(|w| w.bytes()[j] != 0);
            if in_window {
                if let Some(before) = before {
                    let local_ts = i64_at(self.local.bytes(), j);
                    if local_ts >= self.wake {
                        self.wake = wake_of(&before.call1((local_ts, s.venue.bind(py), s.symbol.bind(py)))?);
                    }
                }
            }
            let start = s.cursor;
            if start >= s.valid_end {
                return Err(PyValueError::new_err(format!(
                    "entry {j}: stream {si} has no complete message at row {start} ({} rows)",
                    s.flags.bytes().len()
                )));
            }
            {
                let mut b = s.book.bind(py).borrow_mut();
                let flags = s.flags.bytes();
                if flags[start] & FLAG_CLEAR != 0 {
                    b.synced = true;
                }
                let (sides, prices, amounts) = (s.sides.bytes(), s.prices.bytes(), s.amounts.bytes());
                let book = &mut b.book;
                // SAFETY: add_stream checked the buffers hold every row and their values, and a
                // row at or after `start` (< valid_end) has the LAST flag.
                let (last, _) = unsafe {
                    match (s.price_width, s.amount_width) {
                        (8, 8) => bulk::apply_message::<8, 8>(book, sides, prices, amounts, flags, start),
                        (8, _) => bulk::apply_message::<8, 16>(book, sides, prices, amounts, flags, start),
                        (_, 8) => bulk::apply_message::<16, 8>(book, sides, prices, amounts, flags, start),
                        _ => bulk::apply_message::<16, 16>(book, sides, prices, amounts, flags, start),
                    }
                };
                book.truncate();
                b.timestamp = i64_at(s.timestamps.bytes(), last);
                b.local_timestamp = i64_at(s.local_timestamps.bytes(), last);
                b.seq = i64_at(s.last_seqs.bytes(), last);
                s.synced_at_last = Some(b.synced);
                s.cursor = last + 1;
            }
            self.messages += 1;
            j += 1;
            if in_window {
                if let Some(cb) = &s.callback {
                    let ret = cb.bind(py).call1((s.book.bind(py),))?;
                    if before.is_some() {
                        self.wake = wake_of(&ret);
                    }
                    if self.stopped(py) {
                        return Ok(j);
                    }
                }
            }
        }
        Ok(j)
    }

    /// The row the next message of stream `index` starts at.
    fn cursor(&self, index: usize) -> PyResult<usize> {
        self.slot(index).map(|s| s.cursor)
    }

    /// Set where the next message of stream `index` starts (Python applied messages itself).
    fn set_cursor(&mut self, index: usize, row: usize) -> PyResult<()> {
        match self.slots.get_mut(index) {
            Some(Some(s)) => {
                s.cursor = row;
                Ok(())
            }
            _ => Err(PyValueError::new_err(format!("no stream {index}"))),
        }
    }

    /// Whether stream `index`'s book was in sync after the last message `run` applied (None
    /// before any).
    fn synced_at_last(&self, index: usize) -> PyResult<Option<bool>> {
        self.slot(index).map(|s| s.synced_at_last)
    }
}

impl ReplayDriver {
    fn stopped(&self, py: Python<'_>) -> bool {
        // SAFETY: a one-byte read; nothing holds a slice of the bytearray across Python code.
        self.stop.as_ref().is_some_and(|b| unsafe { b.bind(py).as_bytes() }.first().is_some_and(|&x| x != 0))
    }

    fn slot(&self, index: usize) -> PyResult<&Stream> {
        match self.slots.get(index) {
            Some(Some(s)) => Ok(s),
            _ => Err(PyValueError::new_err(format!("no stream {index}"))),
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ReplayDriver>()?;
    Ok(())
}
