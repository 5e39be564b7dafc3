//! The mock venue's book checksum (docs/PROTOCOLS.md, mock venue): CRC-32 of
//! `<price>:<amount>;` for every ask ascending then every bid descending, both as text at the
//! instrument's fixed precisions. Unsigned 32-bit.
//!
//! `CHECKSUM` is what `OrderBook(..., checksum="mock")` selects; `OrderBook.mock_checksum()`
//! computes it whatever the book's own kind (tests and the verifier compare books with it).
//!
//! The mock's hot frame parsers, on the `FrameParser` contract (frame.rs): `BookParser`
//! (`parse_mock_book`: a WebSocket `{"type":"book","symbol","seq","timestamp","bids","asks",
//! "checksum"}` delta) and `DepthParser` (`parse_mock_depth`: the REST `/api/depth` body, the
//! same fields without `type`), both giving a `MockBook` (levels as exact wire text, bids then
//! asks). Only the form the mock sends is taken (integers plain JSON integers in range, levels
//! exactly `[price, amount]` plain strings, no escapes); anything else is refused and the
//! caller's reference path (lab/venues/mock/feed.py) reports it.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::book::Book;
use crate::checksum::{Algorithm, Checksum};
use crate::fixed::push_fixed;
use crate::frame::{parse_to_py, FrameParser, Message};
use crate::json::{get, parse_json, plain, R, V};
use crate::orderbook::OrderBook;
use crate::rows::BookRows;
use crate::wire_levels::{apply_levels, levels_of, WireLevels};

pub static CHECKSUM: Algorithm = Algorithm { name: "mock", compute: checksum };

/// The mock checksum of `book` at the given precisions.
pub fn checksum(book: &Book, price_precision: u32, amount_precision: u32) -> u32 {
    // hashed in chunks: a deep book's text is never held whole
    const FLUSH: usize = 8192;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf: Vec<u8> = Vec::with_capacity(FLUSH + 128);
    for (p, a) in book.asks().iter_best_first().chain(book.bids().iter_best_first()) {
        push_fixed(&mut buf, p, price_precision);
        buf.push(b':');
        push_fixed(&mut buf, a, amount_precision);
        buf.push(b';');
        if buf.len() >= FLUSH {
            hasher.update(&buf);
            buf.clear();
        }
    }
    hasher.update(&buf);
    hasher.finalize()
}

#[pymethods]
impl OrderBook {
    /// Mock venue checksum (CRC-32 of "<price>:<amount>;" for all asks ascending then all bids
    /// descending, fixed precision). Unsigned 32-bit.
    fn mock_checksum(&self) -> u32 {
        checksum(&self.book, self.price_precision, self.amount_precision)
    }
}

// ------------------------------------------------------------------------------ frames

/// A plain JSON integer in `lo..=hi` (a fraction or an exponent is refused).
fn int_of(s: &[u8], v: Option<&V>, what: &str, lo: i128, hi: i128) -> R<i64> {
    let Some(&V::Num(a, b)) = v else {
        return Err(format!("{what} is not an integer"));
    };
    let t = &s[a..b];
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!("{what} is not an integer"));
    }
    let mag = digits.iter().fold(0i128, |acc, &c| acc * 10 + i128::from(c - b'0'));
    let x = if digits.len() < t.len() { -mag } else { mag };
    if x < lo || x > hi {
        return Err(format!("{what} is out of range"));
    }
    Ok(x as i64)
}

/// One mock book message: a WebSocket delta or a REST depth snapshot (`snapshot`), levels as
/// exact wire text, bids first then asks, each in wire order.
#[pyclass(module = "lab.rust_book")]
pub struct MockBook {
    wire: WireLevels,
    #[pyo3(get)]
    symbol: String,
    #[pyo3(get)]
    snapshot: bool,
    #[pyo3(get)]
    seq: i64,
    #[pyo3(get)]
    timestamp: i64,
    /// The venue's checksum of the book after the message.
    #[pyo3(get)]
    checksum: u32,
}

impl Message for MockBook {
    fn symbol(&self) -> &str {
        &self.symbol
    }
}

const I64: (i128, i128) = (i64::MIN as i128, i64::MAX as i128);

fn parse_book_like(payload: &[u8], snapshot: bool) -> R<Option<MockBook>> {
    if payload.contains(&b'\\') {
        return Err("a frame with escapes".into());
    }
    let v = parse_json(payload)?;
    let V::Obj(o) = &v else {
        return if snapshot { Err("depth body is not an object".into()) } else { Ok(None) };
    };
    if !snapshot {
        match get(payload, o, b"type") {
            Some(t @ V::Str(..)) if plain(payload, t) == Some(b"book") => {}
            _ => return Ok(None),
        }
    }
    let symbol = match get(payload, o, b"symbol") {
        Some(&V::Str(a, b, false)) => std::str::from_utf8(&payload[a..b]).map_err(|_| "symbol is not UTF-8")?.to_owned(),
        _ => return Err("symbol is not a plain string".into()),
    };
    let seq = int_of(payload, get(payload, o, b"seq"), "seq", I64.0, I64.1)?;
    let timestamp = int_of(payload, get(payload, o, b"timestamp"), "timestamp", I64.0, I64.1)?;
    let checksum = int_of(payload, get(payload, o, b"checksum"), "checksum", 0, i128::from(u32::MAX))? as u32;
    let mut levels = Vec::new();
    levels_of(get(payload, o, b"bids"), 0, &mut levels, "bids", "amount")?;
    levels_of(get(payload, o, b"asks"), 1, &mut levels, "asks", "amount")?;
    Ok(Some(MockBook {
        wire: WireLevels::new(payload, levels),
        symbol,
        snapshot,
        seq,
        timestamp,
        checksum,
    }))
}

/// apply() outcomes
pub const MISMATCH: i8 = -1;

#[pymethods]
impl MockBook {
    fn __len__(&self) -> usize {
        self.wire.len()
    }

    /// The levels as (side 0 bid / 1 ask, price text, amount text): bids then asks (tests).
    fn levels(&self) -> Vec<(u8, String, String)> {
        self.wire.texts()
    }

    /// Validate the levels at the instrument's precisions as the reference path does (exact,
    /// amounts not negative) and keep them for `apply`. None when the message can be applied,
    /// else the reason (the caller then hands the frame to its reference path).
    fn check(&mut self, price_precision: u32, amount_precision: u32) -> PyResult<Option<String>> {
        self.wire.check(price_precision, amount_precision, false)
    }

    /// `OrderBook.apply_wire_message` of this message (first_seq = last_seq = `seq`, the
    /// message's checksum): a book built without a checksum is a ValueError; levels at the
    /// book's precisions (kept by `check`, else parsed now: ValueError, the book unchanged); a
    /// snapshot clears the book; levels in order; truncate; the book's checksum compared with
    /// the venue's: `MISMATCH` (-1), nothing appended, the book stays as applied. Else the rows
    /// are appended and, when any was written, the book's timestamp / local_timestamp / seq
    /// set: 1, or 0 for an empty delta (no rows).
    #[pyo3(signature = (book, rows, ts, local_ts, rec_id))]
    fn apply(&self, book: &Bound<'_, OrderBook>, rows: &Bound<'_, BookRows>, ts: i64, local_ts: i64, rec_id: i64) -> PyResult<i8> {
        let mut ob = book.try_borrow_mut()?;
        if matches!(ob.checksum, Checksum::None) {
            return Err(PyValueError::new_err(
                "a message with a checksum for a book built without one (OrderBook(..., checksum=NAME))",
            ));
        }
        let (pp, ap) = (ob.price_precision, ob.amount_precision);
        let levels = self.wire.at(pp, ap)?;
        let mut rows = rows.try_borrow_mut()?;
        let algorithm = ob.checksum;
        apply_levels(&mut ob.book, &levels, self.snapshot);
        if algorithm.compute(&ob.book, pp, ap).unwrap_or_default() != self.checksum {
            return Ok(MISMATCH);
        }
        let added = rows.push_message(&levels, ts, local_ts, rec_id, self.seq, self.seq, Some(self.checksum), self.snapshot);
        if added {
            ob.timestamp = ts;
            ob.local_timestamp = local_ts;
            ob.seq = self.seq;
        }
        Ok(i8::from(added))
    }

    fn __repr__(&self) -> String {
        format!(
            "MockBook(symbol={:?}, seq={}, snapshot={}, levels={})",
            self.symbol,
            self.seq,
            self.snapshot,
            self.wire.len()
        )
    }
}

/// WebSocket `book` deltas -> the one `MockBook` a frame carries.
pub struct BookParser;

impl FrameParser for BookParser {
    type Message = MockBook;

    fn parse(&self, frame: &[u8]) -> R<Option<Vec<MockBook>>> {
        Ok(parse_book_like(frame, false)?.map(|m| vec![m]))
    }
}

/// REST `/api/depth` bodies -> the one snapshot `MockBook` (never `Ok(None)`).
pub struct DepthParser;

impl FrameParser for DepthParser {
    type Message = MockBook;

    fn parse(&self, frame: &[u8]) -> R<Option<Vec<MockBook>>> {
        Ok(Some(parse_book_like(frame, true)?.into_iter().collect()))
    }
}

/// Parse one mock WebSocket frame for a book delta. None: not a `book` message; a list of one
/// `MockBook`; ValueError: a form the fast path does not take. Never a panic.
#[pyfunction]
fn parse_mock_book<'py>(py: Python<'py>, payload: &[u8]) -> PyResult<Option<Bound<'py, PyList>>> {
    parse_to_py(py, &BookParser, payload)
}

/// Parse a REST `/api/depth` body into a snapshot `MockBook`; ValueError otherwise.
#[pyfunction]
fn parse_mock_depth(py: Python<'_>, payload: &[u8]) -> PyResult<Py<MockBook>> {
    match parse_book_like(payload, true) {
        Ok(Some(m)) => Py::new(py, m),
        Ok(None) => Err(PyValueError::new_err("not a depth body")),
        Err(e) => Err(PyValueError::new_err(e)),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<MockBook>()?;
    m.add_function(wrap_pyfunction!(parse_mock_book, m)?)?;
    m.add_function(wrap_pyfunction!(parse_mock_depth, m)?)?;
    m.add("MOCK_MISMATCH", MISMATCH)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let f = br#"{"type":"book","symbol":"BTC-USD","seq":7,"timestamp":-5,"bids":[["100.00","1.5"]],"asks":[],"checksum":4294967295}"#;
        let [m] = &BookParser.parse(f).unwrap().unwrap()[..] else { panic!() };
        assert_eq!((m.seq, m.timestamp, m.checksum, m.wire.len()), (7, -5, u32::MAX, 1));
        assert!(BookParser.parse(br#"{"type":"trade"}"#).unwrap().is_none());
        assert!(BookParser.parse(&f[..]).is_ok());
        let bad = br#"{"type":"book","symbol":"X","seq":1,"timestamp":1,"bids":[],"asks":[],"checksum":4294967296}"#;
        assert!(BookParser.parse(bad).is_err());
        assert!(DepthParser.parse(b"[1]").is_err());
        assert!(int_of(b"-9223372036854775808", Some(&V::Num(0, 20)), "x", I64.0, I64.1).is_ok());
        assert!(int_of(b"9223372036854775808", Some(&V::Num(0, 19)), "x", I64.0, I64.1).is_err());
    }

    #[test]
    fn text_rule() {
        let mut b = Book::new(0);
        b.side_mut(false).set(9990, 150_000_000);
        b.side_mut(false).set(10000, 5);
        b.side_mut(true).set(10010, 200_000_000);
        let text = b"100.10:2.00000000;100.00:0.00000005;99.90:1.50000000;";
        assert_eq!(checksum(&b, 2, 8), crc32fast::hash(text));
        assert_eq!(checksum(&Book::new(0), 2, 8), crc32fast::hash(b""));
        // longer than one flush: the same as hashing the text at once
        let mut big = Book::new(0);
        let mut text = Vec::new();
        for k in 0..2000i64 {
            big.side_mut(true).set(20000 + k, 1);
            text.extend_from_slice(format!("{}.{:02}:0.00000001;", (20000 + k) / 100, (20000 + k) % 100).as_bytes());
        }
        assert_eq!(checksum(&big, 2, 8), crc32fast::hash(&text));
    }
}
