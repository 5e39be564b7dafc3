//! `OrderBook`, the Python class of the L2 book: integer ticks / lots, exact Decimal views,
//! the per-message (`apply_rows`, `apply_book_rows`) and wire (`apply_wire_message`) paths, and
//! the fixed-point helpers `parse_fixed` / `format_fixed`.
//!
//! It knows no venue: a book's checksum algorithm is a `Checksum` chosen by name when the book
//! is built (checksum.rs); venue modules add their own methods (`mock_checksum`,
//! `kraken_checksum`) in `#[pymethods]` blocks of their own.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple, PyType};

use crate::book::Book;
use crate::bulk::{self, InBuf};
use crate::checksum::Checksum;
use crate::fixed::{self, push_fixed, MAX_PRECISION, POW10};
use crate::rows::{BookRows, FLAG_CLEAR, FLAG_LAST};

pub(crate) static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();

pub(crate) fn check_precision(p: i64, what: &str) -> PyResult<u32> {
    if !(0..=MAX_PRECISION as i64).contains(&p) {
        return Err(PyValueError::new_err(format!(
            "{what} must be between 0 and {MAX_PRECISION}, got {p}"
        )));
    }
    Ok(p as u32)
}

pub(crate) fn fixed_string(value: i64, precision: u32) -> String {
    let mut buf = Vec::with_capacity(24);
    push_fixed(&mut buf, value, precision);
    // only ASCII digits, '-' and '.'
    String::from_utf8(buf).unwrap_or_default()
}

fn check_width(w: usize, name: &str) -> PyResult<()> {
    if w != 8 && w != 16 {
        return Err(PyValueError::new_err(format!(
            "{name} must be 8 (int64) or 16 (int128 / decimal128), got {w}"
        )));
    }
    Ok(())
}

fn parse_side(side: i64) -> PyResult<bool> {
    match side {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(PyValueError::new_err(format!(
            "side must be 0 (bid) or 1 (ask), got {side}"
        ))),
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// `parse_fixed` of a str or bytes value at a validated precision (same errors).
#[inline]
fn parse_fixed_obj(s: &Bound<'_, PyAny>, p: u32) -> PyResult<i64> {
    let parsed = if let Ok(st) = s.cast::<PyString>() {
        let text = st.to_str()?;
        fixed::parse_fixed(text.as_bytes(), p).map_err(|e| e.message(text, p))
    } else if let Ok(b) = s.cast::<PyBytes>() {
        let bytes = b.as_bytes();
        fixed::parse_fixed(bytes, p).map_err(|e| e.message(&String::from_utf8_lossy(bytes), p))
    } else {
        return Err(PyTypeError::new_err("parse_fixed expects str or bytes"));
    };
    parsed.map_err(PyValueError::new_err)
}

fn unpack_error(n: usize) -> PyErr {
    if n > 2 {
        PyValueError::new_err("too many values to unpack (expected 2)")
    } else {
        PyValueError::new_err(format!("not enough values to unpack (expected 2, got {n})"))
    }
}

/// `p, a = item` with Python's errors.
#[inline]
fn unpack_pair<'py>(item: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if let Ok(l) = item.cast::<PyList>() {
        if l.len() == 2 {
            return Ok((l.get_item(0)?, l.get_item(1)?));
        }
        return Err(unpack_error(l.len()));
    }
    if let Ok(t) = item.cast::<PyTuple>() {
        if t.len() == 2 {
            return Ok((t.get_item(0)?, t.get_item(1)?));
        }
        return Err(unpack_error(t.len()));
    }
    let iter = item.try_iter().map_err(|_| {
        PyTypeError::new_err(format!("cannot unpack non-iterable {} object", type_name(item)))
    })?;
    let v = iter.collect::<PyResult<Vec<_>>>()?;
    if v.len() != 2 {
        return Err(unpack_error(v.len()));
    }
    let mut it = v.into_iter();
    Ok((it.next().unwrap(), it.next().unwrap()))
}

/// Parse wire levels `[[price_str, amount_str], ...]` of one side into `out`.
fn parse_wire_side(
    levels: &Bound<'_, PyAny>,
    side: u8,
    pp: u32,
    ap: u32,
    out: &mut Vec<(u8, i64, i64)>,
) -> PyResult<()> {
    let mut one = |item: &Bound<'_, PyAny>| -> PyResult<()> {
        let (p, a) = unpack_pair(item)?;
        let p = parse_fixed_obj(&p, pp)?;
        let a = parse_fixed_obj(&a, ap)?;
        if a < 0 {
            return Err(PyValueError::new_err(format!(
                "amount_lots must be >= 0, got {a}"
            )));
        }
        out.push((side, p, a));
        Ok(())
    };
    if let Ok(list) = levels.cast::<PyList>() {
        for item in list.iter() {
            one(&item)?;
        }
    } else {
        for item in levels.try_iter()? {
            one(&item?)?;
        }
    }
    Ok(())
}

/// L2 order book in integer ticks (prices) and lots (amounts), plus feed metadata.
///
/// `OrderBook(venue, symbol, price_precision, amount_precision, depth=0, *, checksum=None)`;
/// depth 0 means unbounded, otherwise each side keeps its best `depth` levels after every
/// message. `checksum` names the venue's book checksum algorithm (None or "none": the venue
/// sends none); ValueError for an unknown name.
#[pyclass(module = "lab.rust_book", subclass)]
pub struct OrderBook {
    pub(crate) venue: String,
    pub(crate) symbol: String,
    /// `venue` and `symbol` as Python strings, made once: a callback reads them on every message.
    names: [PyOnceLock<Py<PyString>>; 2],
    /// Exchange time of the last applied message, ns since the epoch.
    #[pyo3(get, set)]
    pub(crate) timestamp: i64,
    /// Local receive time of the last applied message, ns since the epoch.
    #[pyo3(get, set)]
    pub(crate) local_timestamp: i64,
    #[pyo3(get, set)]
    pub(crate) seq: i64,
    #[pyo3(get, set)]
    pub(crate) synced: bool,
    #[pyo3(get)]
    pub(crate) price_precision: u32,
    #[pyo3(get)]
    pub(crate) amount_precision: u32,
    pub(crate) book: Book,
    /// How `apply_wire_message` verifies a venue checksum and what `checksum()` computes.
    pub(crate) checksum: Checksum,
    price_scale: f64,
    amount_scale: f64,
    /// The Decimal of each side's best price, kept until that price changes: `top()` in a
    /// callback is then two integer compares, not two Decimal constructions.
    top_cache: [Option<(i64, Py<PyAny>)>; 2],
}

impl Clone for OrderBook {
    /// A copy starts with an empty Decimal cache (cloning a `Py` needs the GIL held).
    fn clone(&self) -> Self {
        OrderBook {
            venue: self.venue.clone(),
            symbol: self.symbol.clone(),
            names: [PyOnceLock::new(), PyOnceLock::new()],
            timestamp: self.timestamp,
            local_timestamp: self.local_timestamp,
            seq: self.seq,
            synced: self.synced,
            price_precision: self.price_precision,
            amount_precision: self.amount_precision,
            book: self.book.clone(),
            checksum: self.checksum,
            price_scale: self.price_scale,
            amount_scale: self.amount_scale,
            top_cache: [None, None],
        }
    }
}

impl OrderBook {
    fn decimal<'py>(&self, py: Python<'py>, value: i64, precision: u32) -> PyResult<Bound<'py, PyAny>> {
        DECIMAL.import(py, "decimal", "Decimal")?.call1((fixed_string(value, precision),))
    }

    fn best_price_decimal(&mut self, py: Python<'_>, ask: bool) -> PyResult<Option<Py<PyAny>>> {
        let Some((p, _)) = self.book.side(ask).best() else {
            return Ok(None);
        };
        if let Some((cp, obj)) = &self.top_cache[ask as usize] {
            if *cp == p {
                return Ok(Some(obj.clone_ref(py)));
            }
        }
        let obj = self.decimal(py, p, self.price_precision)?.unbind();
        self.top_cache[ask as usize] = Some((p, obj.clone_ref(py)));
        Ok(Some(obj))
    }

    fn best_decimal<'py>(&self, py: Python<'py>, ask: bool) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        match self.book.side(ask).best() {
            None => Ok(None),
            Some((p, a)) => Ok(Some((
                self.decimal(py, p, self.price_precision)?,
                self.decimal(py, a, self.amount_precision)?,
            ))),
        }
    }

    #[inline]
    fn px(&self, ticks: i64) -> f64 {
        ticks as f64 / self.price_scale
    }

    #[inline]
    fn qty(&self, lots: i64) -> f64 {
        lots as f64 / self.amount_scale
    }

    fn float_levels(&self, ask: bool) -> Vec<(f64, f64)> {
        self.book
            .side(ask)
            .iter_best_first()
            .map(|(p, a)| (self.px(p), self.qty(a)))
            .collect()
    }

    fn decimal_levels<'py>(
        &self,
        py: Python<'py>,
        ask: bool,
        n: Option<usize>,
    ) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        let dec = DECIMAL.import(py, "decimal", "Decimal")?;
        let n = n.unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(n.min(self.book.side(ask).len()));
        for (p, a) in self.book.side(ask).iter_best_first().take(n) {
            out.push((
                dec.call1((fixed_string(p, self.price_precision),))?,
                dec.call1((fixed_string(a, self.amount_precision),))?,
            ));
        }
        Ok(out)
    }
}

#[pymethods]
impl OrderBook {
    #[new]
    #[pyo3(signature = (venue, symbol, price_precision, amount_precision, depth = 0, *, checksum = None))]
    fn new(
        venue: String,
        symbol: String,
        price_precision: i64,
        amount_precision: i64,
        depth: i64,
        checksum: Option<&str>,
    ) -> PyResult<Self> {
        let checksum = Checksum::from_name(checksum.unwrap_or("none")).map_err(PyValueError::new_err)?;
        let pp = check_precision(price_precision, "price_precision")?;
        let ap = check_precision(amount_precision, "amount_precision")?;
        if depth < 0 {
            return Err(PyValueError::new_err(format!(
                "depth must be >= 0 (0 = unbounded), got {depth}"
            )));
        }
        Ok(OrderBook {
            venue,
            symbol,
            names: [PyOnceLock::new(), PyOnceLock::new()],
            timestamp: 0,
            local_timestamp: 0,
            seq: 0,
            synced: false,
            price_precision: pp,
            amount_precision: ap,
            book: Book::new(depth as usize),
            checksum,
            price_scale: POW10[pp as usize] as f64,
            amount_scale: POW10[ap as usize] as f64,
            top_cache: [None, None],
        })
    }

    /// Maximum levels per side (0 = unbounded).
    #[getter]
    fn venue(&self, py: Python<'_>) -> Py<PyString> {
        self.names[0].get_or_init(py, || PyString::new(py, &self.venue).unbind()).clone_ref(py)
    }

    #[setter]
    fn set_venue(&mut self, venue: String) {
        self.venue = venue;
        self.names[0] = PyOnceLock::new();
    }

    #[getter]
    fn symbol(&self, py: Python<'_>) -> Py<PyString> {
        self.names[1].get_or_init(py, || PyString::new(py, &self.symbol).unbind()).clone_ref(py)
    }

    #[setter]
    fn set_symbol(&mut self, symbol: String) {
        self.symbol = symbol;
        self.names[1] = PyOnceLock::new();
    }

    #[getter]
    fn depth(&self) -> usize {
        self.book.depth
    }

    /// Remove every level (metadata is kept).
    fn clear(&mut self) {
        self.book.clear();
    }

    /// Set one level: side 0 = bid, 1 = ask; amount 0 deletes (absent level: no-op).
    /// Does not truncate to depth (call `truncate()` after the message, or use `apply_rows`).
    fn apply(&mut self, side: i64, price_ticks: i64, amount_lots: i64) -> PyResult<()> {
        let ask = parse_side(side)?;
        if amount_lots < 0 {
            return Err(PyValueError::new_err(format!(
                "amount_lots must be >= 0, got {amount_lots}"
            )));
        }
        self.book.side_mut(ask).set(price_ticks, amount_lots);
        Ok(())
    }

    /// Keep only the best `depth` levels per side (no-op when depth is 0).
    fn truncate(&mut self) {
        self.book.truncate();
    }

    /// Apply one message from columnar buffers, starting at row `start` and ending at the first
    /// row (inclusive) whose flags has FLAG_LAST (1). A row with FLAG_CLEAR (2) clears the book
    /// before it is applied. Truncates to depth afterwards. Returns the index after the last
    /// applied row. The whole message is validated before anything is applied: on ValueError
    /// the book is unchanged.
    ///
    /// sides: int8 (0 bid / 1 ask); prices, amounts: little-endian signed ints of
    /// `price_width` / `amount_width` bytes (8 = int64, 16 = int128 / decimal128); flags: uint8.
    /// Any buffer-protocol object works (pyarrow.Buffer, bytes, memoryview, array.array).
    /// Note: pyarrow `.buffers()` ignore an array's offset; pass row indexes accordingly.
    #[pyo3(signature = (sides, prices, amounts, flags, start, price_width = 8, amount_width = 8))]
    #[allow(clippy::too_many_arguments)]
    fn apply_rows(
        &mut self,
        sides: &Bound<'_, PyAny>,
        prices: &Bound<'_, PyAny>,
        amounts: &Bound<'_, PyAny>,
        flags: &Bound<'_, PyAny>,
        start: i64,
        price_width: usize,
        amount_width: usize,
    ) -> PyResult<usize> {
        check_width(price_width, "price_width")?;
        check_width(amount_width, "amount_width")?;
        let sides_b = InBuf::get(sides, "sides")?;
        let prices_b = InBuf::get(prices, "prices")?;
        let amounts_b = InBuf::get(amounts, "amounts")?;
        let flags_b = InBuf::get(flags, "flags")?;
        let (sides, prices, amounts, flags) = (
            sides_b.bytes(),
            prices_b.bytes(),
            amounts_b.bytes(),
            flags_b.bytes(),
        );
        if start < 0 || start as usize >= flags.len() {
            return Err(PyValueError::new_err(format!(
                "start {start} out of range for {} flag rows",
                flags.len()
            )));
        }
        let start = start as usize;
        let end = match flags[start..].iter().position(|f| f & FLAG_LAST != 0) {
            Some(k) => start + k + 1,
            None => {
                return Err(PyValueError::new_err(format!(
                    "no row with the LAST flag at or after row {start} ({} flag rows)",
                    flags.len()
                )))
            }
        };
        if sides.len() < end {
            return Err(PyValueError::new_err(format!(
                "sides buffer too short: {} rows, need {end}",
                sides.len()
            )));
        }
        if prices.len() < end * price_width {
            return Err(PyValueError::new_err(format!(
                "prices buffer too short: {} bytes, need {} ({end} rows x {price_width})",
                prices.len(),
                end * price_width
            )));
        }
        if amounts.len() < end * amount_width {
            return Err(PyValueError::new_err(format!(
                "amounts buffer too short: {} bytes, need {} ({end} rows x {amount_width})",
                amounts.len(),
                end * amount_width
            )));
        }
        // checked first so a bad message leaves the book untouched
        bulk::check_values(sides, prices, amounts, price_width, amount_width, start..end)
            .map_err(PyValueError::new_err)?;
        let book = &mut self.book;
        // SAFETY: the buffers hold rows ..end (checked above), their values passed
        // check_values, and row end - 1 has the LAST flag.
        unsafe {
            match (price_width, amount_width) {
                (8, 8) => bulk::apply_message::<8, 8>(book, sides, prices, amounts, flags, start),
                (8, _) => bulk::apply_message::<8, 16>(book, sides, prices, amounts, flags, start),
                (_, 8) => bulk::apply_message::<16, 8>(book, sides, prices, amounts, flags, start),
                _ => bulk::apply_message::<16, 16>(book, sides, prices, amounts, flags, start),
            };
        }
        book.truncate();
        Ok(end)
    }

    /// Apply one wire message and append its `book` rows: the mock venue's hot path.
    ///
    /// `bids` / `asks`: `[[price_str, amount_str], ...]` as decoded from the wire, parsed
    /// exactly at the book's precisions (ValueError / TypeError on a bad value, raised before
    /// anything is applied). A snapshot clears the book first; levels are applied in order
    /// (bids then asks), then the book is truncated to depth and its checksum (the book's own
    /// algorithm, see `checksum()`) compared with `checksum`; a book built without one raises
    /// ValueError for a message that carries a checksum (before anything is applied). On a
    /// mismatch nothing is appended and False is returned (the book stays as applied).
    /// Otherwise the rows are appended to `rows`
    /// exactly as `Normalizer.emit_levels` writes them and, when any row was written,
    /// timestamp / local_timestamp / seq are set to ts / local_ts / last_seq; returns True.
    #[pyo3(signature = (bids, asks, rows, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot))]
    #[allow(clippy::too_many_arguments)]
    fn apply_wire_message(
        &mut self,
        bids: &Bound<'_, PyAny>,
        asks: &Bound<'_, PyAny>,
        rows: &Bound<'_, BookRows>,
        ts: i64,
        local_ts: i64,
        rec_id: i64,
        first_seq: i64,
        last_seq: i64,
        checksum: Option<&Bound<'_, PyAny>>,
        snapshot: bool,
    ) -> PyResult<bool> {
        if checksum.is_some() && matches!(self.checksum, Checksum::None) {
            return Err(PyValueError::new_err(
                "a message with a checksum for a book built without one (OrderBook(..., checksum=NAME))",
            ));
        }
        let (pp, ap) = (self.price_precision, self.amount_precision);
        let mut levels: Vec<(u8, i64, i64)> = Vec::new();
        parse_wire_side(bids, 0, pp, ap, &mut levels)?;
        parse_wire_side(asks, 1, pp, ap, &mut levels)?;
        // A venue checksum that is not a u32 can never equal the local one.
        let expected = match checksum {
            None => None,
            Some(obj) => match obj.extract::<u32>() {
                Ok(v) => Some(u64::from(v)),
                Err(_) => Some(u64::MAX),
            },
        };
        let book = &mut self.book;
        if snapshot {
            book.clear();
        }
        for &(s, p, a) in &levels {
            book.side_mut(s == 1).set(p, a);
        }
        book.truncate();
        if let Some(want) = expected {
            let local = self.checksum.compute(book, pp, ap).unwrap_or_default();
            if u64::from(local) != want {
                return Ok(false);
            }
        }
        let checksum = expected.map(|v| v as u32);
        let added = rows.borrow_mut().push_message(
            &levels, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot,
        );
        if added {
            self.timestamp = ts;
            self.local_timestamp = local_ts;
            self.seq = last_seq;
        }
        Ok(true)
    }

    /// (best bid price, best ask price) as exact decimal.Decimal, None for an empty side. O(1):
    /// each side's Decimal is cached until its best price changes.
    fn top(&mut self, py: Python<'_>) -> PyResult<(Option<Py<PyAny>>, Option<Py<PyAny>>)> {
        Ok((self.best_price_decimal(py, false)?, self.best_price_decimal(py, true)?))
    }

    /// (best bid, best ask) price ticks, None for an empty side.
    fn top_ticks(&self) -> (Option<i64>, Option<i64>) {
        (self.book.bids().best().map(|l| l.0), self.book.asks().best().map(|l| l.0))
    }

    /// (best bid, best ask) prices as floats (inexact; for plotting and quick maths).
    fn top_float(&self) -> (Option<f64>, Option<f64>) {
        (
            self.book.bids().best().map(|l| self.px(l.0)),
            self.book.asks().best().map(|l| self.px(l.0)),
        )
    }

    /// (price, amount) of the best bid as exact decimal.Decimal, or None.
    fn best_bid<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        self.best_decimal(py, false)
    }

    /// (price, amount) of the best ask as exact decimal.Decimal, or None.
    fn best_ask<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        self.best_decimal(py, true)
    }

    /// (price_ticks, amount_lots) of the best bid, or None.
    fn best_bid_ticks(&self) -> Option<(i64, i64)> {
        self.book.bids().best()
    }

    /// (price_ticks, amount_lots) of the best ask, or None.
    fn best_ask_ticks(&self) -> Option<(i64, i64)> {
        self.book.asks().best()
    }

    /// Bids best first as exact (decimal.Decimal price, decimal.Decimal amount); built when read.
    #[getter]
    fn bids<'py>(&self, py: Python<'py>) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        self.decimal_levels(py, false, None)
    }

    /// Asks best first as exact (decimal.Decimal price, decimal.Decimal amount); built when read.
    #[getter]
    fn asks<'py>(&self, py: Python<'py>) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        self.decimal_levels(py, true, None)
    }

    /// Bids best first as (price, amount) floats (inexact).
    fn bids_float(&self) -> Vec<(f64, f64)> {
        self.float_levels(false)
    }

    /// Asks best first as (price, amount) floats (inexact).
    fn asks_float(&self) -> Vec<(f64, f64)> {
        self.float_levels(true)
    }

    #[pyo3(signature = (n = None))]
    fn bids_ticks(&self, n: Option<usize>) -> Vec<(i64, i64)> {
        self.book.bids().top_n(n)
    }

    #[pyo3(signature = (n = None))]
    fn asks_ticks(&self, n: Option<usize>) -> Vec<(i64, i64)> {
        self.book.asks().top_n(n)
    }

    /// Bids best first as exact (decimal.Decimal, decimal.Decimal).
    #[pyo3(signature = (n = None))]
    fn bids_decimal<'py>(
        &self,
        py: Python<'py>,
        n: Option<usize>,
    ) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        self.decimal_levels(py, false, n)
    }

    /// Asks best first as exact (decimal.Decimal, decimal.Decimal).
    #[pyo3(signature = (n = None))]
    fn asks_decimal<'py>(
        &self,
        py: Python<'py>,
        n: Option<usize>,
    ) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        self.decimal_levels(py, true, n)
    }

    /// Top `n` levels (all when None) of `side` (0 bid, 1 ask), best first, as exact Decimals.
    #[pyo3(signature = (side, n = None))]
    fn levels<'py>(
        &self,
        py: Python<'py>,
        side: i64,
        n: Option<usize>,
    ) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        self.decimal_levels(py, parse_side(side)?, n)
    }

    /// Top `n` levels (all when None) of `side` (0 bid, 1 ask), best first, in ticks/lots.
    #[pyo3(signature = (side, n = None))]
    fn levels_ticks(&self, side: i64, n: Option<usize>) -> PyResult<Vec<(i64, i64)>> {
        Ok(self.book.side(parse_side(side)?).top_n(n))
    }

    /// Apply one message of a `BookRows` (rows `start` up to the first LAST row, inclusive;
    /// CLEAR clears first), then truncate to depth: what replaying those rows from Parquet
    /// does. Returns the index after the message. The live dispatcher keeps its callback book
    /// in step with the normalizer's this way, from the rows the normalizer wrote.
    fn apply_book_rows(&mut self, rows: PyRef<'_, BookRows>, start: usize) -> PyResult<usize> {
        let n = rows.flags.len();
        if start >= n {
            return Err(PyValueError::new_err(format!("start {start} out of range for {n} rows")));
        }
        let end = match rows.flags[start..].iter().position(|f| f & FLAG_LAST != 0) {
            Some(k) => start + k + 1,
            None => {
                return Err(PyValueError::new_err(format!(
                    "no row with the LAST flag at or after row {start} ({n} rows)"
                )))
            }
        };
        for i in start..end {
            if rows.flags[i] & FLAG_CLEAR != 0 {
                self.book.clear();
            }
            self.book.side_mut(rows.side[i] == 1).set(rows.price[i], rows.amount[i]);
        }
        self.book.truncate();
        Ok(end)
    }

    #[getter]
    fn bid_count(&self) -> usize {
        self.book.bids().len()
    }

    #[getter]
    fn ask_count(&self) -> usize {
        self.book.asks().len()
    }

    /// Best bid >= best ask (False when a side is empty).
    fn crossed(&self) -> bool {
        self.book.crossed()
    }

    /// Independent copy with the same levels and metadata.
    fn copy(&self) -> Self {
        self.clone()
    }

    fn __copy__(&self) -> Self {
        self.clone()
    }

    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> Self {
        self.clone()
    }

    /// The book's own checksum (the algorithm it was built with), None when built without one.
    fn checksum(&self) -> Option<u32> {
        self.checksum.compute(&self.book, self.price_precision, self.amount_precision)
    }

    /// The name of the book's checksum algorithm ("none" when built without one).
    #[getter]
    fn checksum_kind(&self) -> &'static str {
        self.checksum.name()
    }

    fn __repr__(&self) -> String {
        let fmt = |l: Option<(i64, i64)>| match l {
            Some((p, _)) => fixed_string(p, self.price_precision),
            None => "None".to_string(),
        };
        format!(
            "OrderBook(venue={:?}, symbol={:?}, seq={}, bid={}, ask={}, levels={}/{})",
            self.venue,
            self.symbol,
            self.seq,
            fmt(self.book.bids().best()),
            fmt(self.book.asks().best()),
            self.book.bids().len(),
            self.book.asks().len()
        )
    }
}

/// Exact decimal string (str or bytes) -> integer mantissa at `precision` decimals.
/// Pads missing decimals, accepts trailing zeros beyond the precision; raises ValueError for a
/// non-zero digit beyond it, malformed text, or a result outside int64.
#[pyfunction]
pub(crate) fn parse_fixed(s: &Bound<'_, PyAny>, precision: i64) -> PyResult<i64> {
    let p = check_precision(precision, "precision")?;
    parse_fixed_obj(s, p)
}

/// Integer mantissa -> decimal text at exactly `precision` decimals ("100.25", "-0.05").
#[pyfunction]
pub(crate) fn format_fixed(value: i64, precision: i64) -> PyResult<String> {
    let p = check_precision(precision, "precision")?;
    Ok(fixed_string(value, p))
}


pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<OrderBook>()?;
    m.add_function(wrap_pyfunction!(parse_fixed, m)?)?;
    m.add_function(wrap_pyfunction!(format_fixed, m)?)?;
    Ok(())
}
