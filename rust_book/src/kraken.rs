//! Kraken's hot frame parser: WebSocket v1 and v2 `book` frames in, levels applied to an
//! `OrderBook` and `book` rows appended to `BookRows`, no per-level Python object.
//!
//! `parse_kraken_book(payload)` reads one frame with a small JSON scanner that keeps every
//! number and string as its exact wire text (v2 prices and quantities are JSON numbers whose
//! trailing zeros matter for the checksum, so nothing goes through a float). It returns None
//! when the frame is not a book message, a list of `KrakenBook` (one per pair: v1 always one,
//! v2 one per `data` entry), or raises ValueError for anything it does not accept (invalid JSON,
//! an unexpected shape); the caller then falls back to its reference path, which reports the
//! frame exactly as before. `KrakenBook.apply(...)` parses the levels at the book's precisions,
//! applies them in wire order, truncates to depth, compares the checksum and appends the rows.

use std::collections::HashMap;
use std::sync::Arc;

use blake2::digest::consts::U8;
use blake2::digest::{Digest, Update, VariableOutput};
use blake2::{Blake2b, Blake2bVar};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::book::Book;
use crate::checksum::Algorithm;
use crate::fixed::{self, push_u64};
use crate::frame::{parse_to_py, FrameParser, Message};
use crate::json::{get, has, parse_json, plain, R, V};
use crate::orderbook::{OrderBook, DECIMAL};
use crate::rfc3339::rfc3339_ns;
use crate::rows::BookRows;
use crate::trades::{TradeMemory, TradeRows};

// ------------------------------------------------------------------------------ checksum

/// What `OrderBook(..., checksum="kraken")` selects: the v1 and v2 book checksum at the pair's
/// precisions (`checksum`).
pub static CHECKSUM: Algorithm = Algorithm { name: "kraken", compute: |book, _, _| checksum(book) };

/// Kraken checksum form of a non-negative mantissa: the fixed-precision text with "." removed
/// and leading zeros stripped, which is just the decimal digits of the mantissa (and the empty
/// string for zero, as `"0.000".replace(".", "").lstrip("0")` is empty).
#[inline]
fn push_digits(out: &mut Vec<u8>, value: i64) {
    if value == 0 {
        return;
    }
    if value < 0 {
        // never happens for real books; keep the text unambiguous
        out.push(b'-');
    }
    push_u64(out, value.unsigned_abs());
}

/// Kraken book checksum: CRC-32 of the top 10 asks ascending then the top 10 bids descending,
/// each price and qty as fixed-precision text with "." removed and leading zeros stripped
/// (= the mantissa digits). Equals the wire-string checksum when the wire strings carry the
/// pair's fixed decimals (v2 always; v1 see `padded_checksum`).
pub fn checksum(book: &Book) -> u32 {
    let mut buf: Vec<u8> = Vec::with_capacity(20 * 40);
    for (p, a) in book.asks().iter_best_first().take(10).chain(book.bids().iter_best_first().take(10)) {
        push_digits(&mut buf, p);
        push_digits(&mut buf, a);
    }
    crc32fast::hash(&buf)
}

#[pymethods]
impl OrderBook {
    /// Kraken book checksum (v1 and v2 rule) over the top 10 levels per side. Equals the
    /// wire-string checksum when the wire strings carry the pair's fixed decimals.
    fn kraken_checksum(&self) -> u32 {
        checksum(&self.book)
    }
}

// ------------------------------------------------------------------------------ time stamps

/// Kraken v1 seconds text ("1534614248.123678" or an integer) -> ns, exactly.
fn v1_ts_ns(t: &[u8]) -> Option<i64> {
    let (sec, frac) = match t.iter().position(|&c| c == b'.') {
        Some(k) => (&t[..k], &t[k + 1..]),
        None => (t, &t[t.len()..]),
    };
    if sec.is_empty() || sec.len() > 12 || !sec.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut ns: i64 = 0;
    for &c in sec {
        ns = ns * 10 + i64::from(c - b'0');
    }
    let mut f: i64 = 0;
    for k in 0..9 {
        f = f * 10 + frac.get(k).map_or(0, |&c| i64::from(c - b'0'));
    }
    // beyond int64 ns (year 2262) is not a time the reference path takes either
    ns.checked_mul(1_000_000_000)?.checked_add(f)
}

// ------------------------------------------------------------------------------ messages

const SNAPSHOT_KEYS: [&[u8]; 2] = [b"as", b"bs"];

struct Level {
    side: u8,
    price: (usize, usize),
    amount: (usize, usize),
}

/// One pair's book message parsed from a frame: levels as exact wire text, in wire order.
#[pyclass(module = "lab.rust_book", frozen)]
pub struct KrakenBook {
    payload: Vec<u8>,
    levels: Vec<Level>,
    /// 1 or 2
    #[pyo3(get)]
    api: u8,
    /// The pair as on the wire (v1 `XBT/USD`, v2 `BTC/USD`).
    #[pyo3(get)]
    symbol: String,
    #[pyo3(get)]
    snapshot: bool,
    /// The venue's checksum, None when the message carries none (v1 snapshots).
    #[pyo3(get)]
    checksum: Option<u64>,
    /// v1: the newest level time; v2: the message `timestamp`; 0 when there is none (ns).
    #[pyo3(get)]
    timestamp: i64,
}

fn text_of(v: &V, what: &str) -> R<(usize, usize)> {
    match *v {
        V::Str(a, b, false) => Ok((a, b)),
        _ => Err(format!("{what} is not a plain string")),
    }
}

fn checksum_of(s: &[u8], v: &V) -> R<u64> {
    let t = plain(s, v).ok_or("checksum is not a number or a string of digits")?;
    if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
        return Err(format!("checksum {:?} is not an unsigned integer", String::from_utf8_lossy(t)));
    }
    Ok(t.iter().fold(0u64, |acc, &c| acc * 10 + u64::from(c - b'0')))
}

/// v1 levels `[[price, volume, time(, "r")], ...]` of one side; returns the newest time.
fn v1_levels(s: &[u8], v: &V, side: u8, out: &mut Vec<Level>) -> R<i64> {
    let V::Arr(items) = v else {
        return Err("levels are not a list".into());
    };
    let mut newest = 0;
    for item in items {
        let V::Arr(f) = item else {
            return Err("a level is not a list".into());
        };
        if f.len() < 3 {
            return Err("a level has fewer than 3 fields".into());
        }
        let price = text_of(&f[0], "price")?;
        let amount = text_of(&f[1], "volume")?;
        let t = plain(s, &f[2]).and_then(v1_ts_ns).ok_or("bad level time")?;
        newest = newest.max(t);
        out.push(Level { side, price, amount });
    }
    Ok(newest)
}

fn parse_v1(payload: &[u8], items: &[V]) -> R<Option<KrakenBook>> {
    let n = items.len();
    if n < 4 {
        return Ok(None);
    }
    let (Some(name), Some(pair)) = (plain(payload, &items[n - 2]), plain(payload, &items[n - 1])) else {
        return Ok(None);
    };
    if !matches!(items[n - 2], V::Str(..)) || !matches!(items[n - 1], V::Str(..)) || !name.starts_with(b"book") {
        return Ok(None);
    }
    let symbol = std::str::from_utf8(pair).map_err(|_| "pair is not UTF-8")?.to_owned();
    let mut dicts = Vec::with_capacity(2);
    for part in &items[1..n - 2] {
        match part {
            V::Obj(o) => dicts.push(o),
            _ => return Err("book message without level dicts".into()),
        }
    }
    if dicts.is_empty() {
        return Err("book message without level dicts".into());
    }
    let mut levels = Vec::new();
    let mut newest = 0;
    let mut checksum = None;
    let snapshot = SNAPSHOT_KEYS.iter().any(|k| has(payload, dicts[0], k));
    if snapshot {
        let d = dicts[0];
        if let Some(v) = get(payload, d, b"as") {
            newest = newest.max(v1_levels(payload, v, 1, &mut levels)?);
        }
        if let Some(v) = get(payload, d, b"bs") {
            newest = newest.max(v1_levels(payload, v, 0, &mut levels)?);
        }
    } else {
        for d in &dicts {
            if let Some(v) = get(payload, d, b"a") {
                newest = newest.max(v1_levels(payload, v, 1, &mut levels)?);
            }
            if let Some(v) = get(payload, d, b"b") {
                newest = newest.max(v1_levels(payload, v, 0, &mut levels)?);
            }
            if let Some(v) = get(payload, d, b"c") {
                checksum = Some(checksum_of(payload, v)?);
            }
        }
        if checksum.is_none() {
            return Err("book update without a checksum".into());
        }
    }
    Ok(Some(KrakenBook {
        payload: Vec::new(),
        levels,
        api: 1,
        symbol,
        snapshot,
        checksum,
        timestamp: newest,
    }))
}

/// v2 levels `[{"price": N, "qty": N}, ...]` of one side.
fn v2_levels(s: &[u8], v: &V, side: u8, out: &mut Vec<Level>) -> R<()> {
    let V::Arr(items) = v else {
        return Err("levels are not a list".into());
    };
    for item in items {
        let V::Obj(o) = item else {
            return Err("a level is not an object".into());
        };
        let field = |k: &[u8]| -> R<(usize, usize)> {
            match get(s, o, k) {
                Some(V::Num(a, b)) => Ok((*a, *b)),
                _ => Err(format!("level {} is not a number", String::from_utf8_lossy(k))),
            }
        };
        out.push(Level { side, price: field(b"price")?, amount: field(b"qty")? });
    }
    Ok(())
}

fn parse_v2(payload: &[u8], obj: &[(usize, usize, bool, V)]) -> R<Option<Vec<KrakenBook>>> {
    match get(payload, obj, b"channel") {
        Some(v @ V::Str(..)) if plain(payload, v) == Some(b"book") => {}
        _ => return Ok(None),
    }
    let snapshot = match get(payload, obj, b"type").and_then(|v| plain(payload, v)) {
        Some(b"snapshot") => true,
        Some(b"update") => false,
        _ => return Err("book message type is neither snapshot nor update".into()),
    };
    let Some(V::Arr(data)) = get(payload, obj, b"data") else {
        return Err("book message without a data list".into());
    };
    let mut out = Vec::with_capacity(data.len());
    for entry in data {
        let V::Obj(d) = entry else {
            return Err("a data entry is not an object".into());
        };
        let symbol = match get(payload, d, b"symbol") {
            Some(v @ V::Str(..)) => plain(payload, v).ok_or("symbol has escapes")?,
            _ => return Err("a data entry without a symbol".into()),
        };
        let symbol = std::str::from_utf8(symbol).map_err(|_| "symbol is not UTF-8")?.to_owned();
        let checksum = match get(payload, d, b"checksum") {
            Some(v @ V::Num(..)) => checksum_of(payload, v)?,
            _ => return Err("a data entry without a numeric checksum".into()),
        };
        let timestamp = match get(payload, d, b"timestamp") {
            None => 0,
            Some(v) => plain(payload, v).and_then(rfc3339_ns).ok_or("bad timestamp")?,
        };
        let mut levels = Vec::new();
        if let Some(v) = get(payload, d, b"asks") {
            v2_levels(payload, v, 1, &mut levels)?;
        }
        if let Some(v) = get(payload, d, b"bids") {
            v2_levels(payload, v, 0, &mut levels)?;
        }
        out.push(KrakenBook {
            payload: Vec::new(),
            levels,
            api: 2,
            symbol,
            snapshot,
            checksum: Some(checksum),
            timestamp,
        });
    }
    Ok(Some(out))
}

/// WebSocket v1 and v2 `book` frames -> one `KrakenBook` per pair.
pub struct BookParser;

impl Message for KrakenBook {
    fn symbol(&self) -> &str {
        &self.symbol
    }
}

impl FrameParser for BookParser {
    type Message = KrakenBook;

    fn parse(&self, frame: &[u8]) -> R<Option<Vec<KrakenBook>>> {
        parse_frame(frame)
    }
}

fn parse_frame(payload: &[u8]) -> R<Option<Vec<KrakenBook>>> {
    let v = parse_json(payload)?;
    let mut msgs = match &v {
        V::Arr(items) => parse_v1(payload, items)?.map(|m| vec![m]),
        V::Obj(obj) => parse_v2(payload, obj)?,
        _ => None,
    };
    if let Some(ms) = msgs.as_mut() {
        for m in ms.iter_mut() {
            m.payload = payload.to_vec();
        }
    }
    Ok(msgs)
}

/// Number of digits after the "." of a decimal text (0 without one; exponents count as 0).
fn decimals(t: &[u8]) -> i64 {
    match t.iter().position(|&c| c == b'.') {
        Some(k) => t[k + 1..].iter().take_while(|c| c.is_ascii_digit()).count() as i64,
        None => 0,
    }
}

/// Kraken checksum of the book with every price mantissa followed by `price_pad` zeros and
/// every amount mantissa by `amount_pad` zeros: the wire-string checksum of a venue that writes
/// prices with pair_decimals + price_pad decimals (zero stays empty, as "0.000" strips to "").
fn padded_checksum(ob: &OrderBook, price_pad: u32, amount_pad: u32) -> u32 {
    if price_pad == 0 && amount_pad == 0 {
        return checksum(&ob.book);
    }
    let mut buf: Vec<u8> = Vec::with_capacity(20 * 48);
    let mut push = |v: i64, pad: u32| {
        if v > 0 {
            push_u64(&mut buf, v as u64);
            buf.extend(std::iter::repeat_n(b'0', pad as usize));
        } else if v < 0 {
            buf.push(b'-');
            push_u64(&mut buf, v.unsigned_abs());
            buf.extend(std::iter::repeat_n(b'0', pad as usize));
        }
    };
    for (p, a) in ob
        .book
        .asks()
        .iter_best_first()
        .take(10)
        .chain(ob.book.bids().iter_best_first().take(10))
    {
        push(p, price_pad);
        push(a, amount_pad);
    }
    crc32fast::hash(&buf)
}

/// apply() outcomes
pub const APPLIED: u8 = 0;
pub const MISMATCH: u8 = 1;
pub const PRECISION: u8 = 2;

#[pymethods]
impl KrakenBook {
    /// Number of levels in the message.
    fn __len__(&self) -> usize {
        self.levels.len()
    }

    /// The levels as (side 0 bid / 1 ask, price text, amount text), in wire order (tests).
    fn levels(&self) -> Vec<(u8, String, String)> {
        let t = |r: (usize, usize)| String::from_utf8_lossy(&self.payload[r.0..r.1]).into_owned();
        self.levels.iter().map(|l| (l.side, t(l.price), t(l.amount))).collect()
    }

    /// Apply to `book` and append the rows to `rows`.
    ///
    /// Every level is parsed at the book's precisions first (a value finer than them: nothing
    /// is applied, `PRECISION` with the reason). A snapshot clears the book; levels are applied
    /// in wire order (v1: asks dict before bids dict; `r` levels are plain upserts), both sides
    /// are truncated to depth, then the checksum is compared: v1 against the wire strings,
    /// whose decimals beyond the pair's precisions (`price_pad` / `amount_pad`, raised to what
    /// this message shows) are trailing zeros; v2 at the pair's precisions (the v2 rule).
    /// On a mismatch nothing is appended (`MISMATCH`, the book stays as applied). Otherwise
    /// the rows are appended as `Normalizer.emit_levels` writes them, with first_seq = last_seq
    /// = `seq` and checksum = the venue's (None for a v1 snapshot), and, when any row was
    /// written, the book's timestamp / local_timestamp / seq are set.
    ///
    /// Returns (status, timestamp (the message's, else local_ts), stored checksum, price_pad,
    /// amount_pad, rows added, detail).
    #[pyo3(signature = (book, rows, local_ts, rec_id, seq, price_pad = 0, amount_pad = 0))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn apply(
        &self,
        book: &Bound<'_, OrderBook>,
        rows: &Bound<'_, BookRows>,
        local_ts: i64,
        rec_id: i64,
        seq: i64,
        price_pad: u32,
        amount_pad: u32,
    ) -> PyResult<(u8, i64, Option<u32>, u32, u32, bool, String)> {
        let mut ob = book.try_borrow_mut()?;
        let (pp, ap) = (ob.price_precision, ob.amount_precision);
        let mut parsed: Vec<(u8, i64, i64)> = Vec::with_capacity(self.levels.len());
        let (mut pad_p, mut pad_a) = (i64::from(price_pad), i64::from(amount_pad));
        for l in &self.levels {
            let pt = &self.payload[l.price.0..l.price.1];
            let at = &self.payload[l.amount.0..l.amount.1];
            let p = fixed::parse_fixed(pt, pp);
            let a = fixed::parse_fixed(at, ap);
            let (p, a) = match (p, a) {
                (Ok(p), Ok(a)) if a >= 0 => (p, a),
                (Err(e), _) => {
                    let msg = e.message(&String::from_utf8_lossy(pt), pp);
                    return Ok((PRECISION, 0, None, price_pad, amount_pad, false,
                               format!("{msg} (pair_decimals {pp}, lot_decimals {ap})")));
                }
                (_, Err(e)) => {
                    let msg = e.message(&String::from_utf8_lossy(at), ap);
                    return Ok((PRECISION, 0, None, price_pad, amount_pad, false,
                               format!("{msg} (pair_decimals {pp}, lot_decimals {ap})")));
                }
                (Ok(_), Ok(a)) => {
                    return Ok((PRECISION, 0, None, price_pad, amount_pad, false,
                               format!("negative volume {a}")));
                }
            };
            if self.api == 1 {
                pad_p = pad_p.max(decimals(pt) - i64::from(pp));
                pad_a = pad_a.max(decimals(at) - i64::from(ap));
            }
            parsed.push((l.side, p, a));
        }
        let (pad_p, pad_a) = (pad_p.clamp(0, 18) as u32, pad_a.clamp(0, 18) as u32);
        {
            let b = &mut ob.book;
            if self.snapshot {
                b.clear();
            }
            for &(s, p, a) in &parsed {
                b.side_mut(s == 1).set(p, a);
            }
            b.truncate();
        }
        let ts = if self.timestamp != 0 { self.timestamp } else { local_ts };
        let stored = match self.checksum {
            None => None,
            Some(want) => {
                let local = if self.api == 1 {
                    padded_checksum(&ob, pad_p, pad_a)
                } else {
                    checksum(&ob.book)
                };
                if u64::from(local) != want {
                    return Ok((MISMATCH, ts, None, pad_p, pad_a, false,
                               format!("venue {want}, local {local}")));
                }
                Some(local)
            }
        };
        let added = rows
            .borrow_mut()
            .push_message(&parsed, ts, local_ts, rec_id, seq, seq, stored, self.snapshot);
        if added {
            ob.timestamp = ts;
            ob.local_timestamp = local_ts;
            ob.seq = seq;
        }
        Ok((APPLIED, ts, stored, pad_p, pad_a, added, String::new()))
    }

    fn __repr__(&self) -> String {
        format!(
            "KrakenBook(api=v{}, symbol={:?}, snapshot={}, levels={}, checksum={:?})",
            self.api,
            self.symbol,
            self.snapshot,
            self.levels.len(),
            self.checksum
        )
    }
}

/// Parse one Kraken WebSocket frame (v1 or v2). None: not a book message. A list of
/// `KrakenBook`: the book message(s). ValueError: invalid JSON or a book message of an
/// unexpected shape (never a panic).
#[pyfunction]
fn parse_kraken_book<'py>(py: Python<'py>, payload: &[u8]) -> PyResult<Option<Bound<'py, PyList>>> {
    parse_to_py(py, &BookParser, payload)
}

/// Kraken checksum of `book` as a venue computes it from wire strings written with
/// `price_decimals` / `amount_decimals` decimals (>= the book's precisions; trailing zeros).
#[pyfunction]
fn kraken_wire_checksum(book: &Bound<'_, OrderBook>, price_decimals: u32, amount_decimals: u32) -> PyResult<u32> {
    let ob = book.try_borrow()?;
    if price_decimals < ob.price_precision || amount_decimals < ob.amount_precision
        || price_decimals > 18 || amount_decimals > 18
    {
        return Err(PyValueError::new_err(format!(
            "wire decimals {price_decimals}/{amount_decimals} must be between the book's precisions {}/{} and 18",
            ob.price_precision, ob.amount_precision
        )));
    }
    Ok(padded_checksum(&ob, price_decimals - ob.price_precision, amount_decimals - ob.amount_precision))
}


// ------------------------------------------------------------------------------ wire-string checksum

/// Text of a decimal-ish Python value: str as is, bytes as ASCII, decimal.Decimal via
/// format(x, "f") (keeps trailing zeros, never scientific notation).
fn decimal_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_str()?.to_owned());
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(String::from_utf8_lossy(b.as_bytes()).into_owned());
    }
    let dec = DECIMAL.import(obj.py(), "decimal", "Decimal")?;
    if obj.is_instance(dec.as_any())? {
        let s = obj
            .py()
            .import("builtins")?
            .getattr("format")?
            .call1((obj, "f"))?;
        return Ok(s.cast::<PyString>()?.to_str()?.to_owned());
    }
    Err(PyTypeError::new_err(format!(
        "expected a decimal string, got {}",
        obj.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into())
    )))
}

fn kraken_levels(levels: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in levels.try_iter()? {
        let item = item?;
        let p = decimal_text(&item.get_item(0)?)?;
        let q = decimal_text(&item.get_item(1)?)?;
        for s in [&p, &q] {
            if fixed::decimal_key(s.as_bytes()).is_none() {
                return Err(PyValueError::new_err(format!(
                    "{what}: not a plain decimal string: {s:?}"
                )));
            }
        }
        out.push((p, q));
    }
    Ok(out)
}

fn push_kraken_text(buf: &mut Vec<u8>, s: &str) {
    let mut leading = true;
    for &c in s.as_bytes() {
        if c == b'.' {
            continue;
        }
        if leading && c == b'0' {
            continue;
        }
        leading = false;
        buf.push(c);
    }
}

/// Kraken book checksum from wire strings: `asks` and `bids` are iterables of (price, qty, ...)
/// strings in any order; asks are sorted ascending and bids descending by numeric value, the
/// top 10 of each are used. Returns the unsigned CRC32.
#[pyfunction]
fn kraken_checksum(asks: &Bound<'_, PyAny>, bids: &Bound<'_, PyAny>) -> PyResult<u32> {
    let mut a = kraken_levels(asks, "asks")?;
    let mut b = kraken_levels(bids, "bids")?;
    fn key(s: &str) -> (&[u8], &[u8]) {
        // validated in kraken_levels
        fixed::decimal_key(s.as_bytes()).unwrap_or((&[], &[]))
    }
    a.sort_by(|x, y| fixed::cmp_decimal_key(&key(&x.0), &key(&y.0)));
    b.sort_by(|x, y| fixed::cmp_decimal_key(&key(&y.0), &key(&x.0)));
    let mut buf = Vec::with_capacity(20 * 40);
    for (p, q) in a.iter().take(10).chain(b.iter().take(10)) {
        push_kraken_text(&mut buf, p);
        push_kraken_text(&mut buf, q);
    }
    Ok(crc32fast::hash(&buf))
}

// ------------------------------------------------------------------------------ trades

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// lab's id of a v1 trade: blake2b-64 hex of `pair|time|price|volume|side|ordertype|ordinal`
/// (exact wire strings; `ordinal` counts earlier trades of the message with identical fields).
fn v1_trade_id(out: &mut Vec<u8>, key: &mut Vec<u8>, fields: [&[u8]; 6], ordinal: usize) {
    key.clear();
    for (k, f) in fields.iter().enumerate() {
        if k > 0 {
            key.push(b'|');
        }
        key.extend_from_slice(f);
    }
    key.push(b'|');
    push_u64(key, ordinal as u64);
    out.clear();
    // BLAKE2b with an 8-byte digest (the digest length is in the parameter block, so this is
    // not a truncated BLAKE2b-512): hashlib.blake2b(key, digest_size=8)
    push_hex(out, &Blake2b::<U8>::digest(&key[..]));
}

/// One trade of a frame: byte ranges of its wire text.
struct Trade {
    price: (usize, usize),
    amount: (usize, usize),
    /// v1: the time text; v2: the `trade_id` text
    key: (usize, usize),
    /// v1 order type text (v2: unused)
    ordertype: (usize, usize),
    /// 0 buy, 1 sell (the taker side)
    side: u8,
    ts: i64,
}

/// One pair's trades parsed from a frame (v1: the message; v2: a run of `data` entries with
/// the same symbol), every field kept as its exact wire text.
#[pyclass(module = "lab.rust_book", frozen)]
pub struct KrakenTrades {
    payload: Arc<[u8]>,
    trades: Vec<Trade>,
    /// 1 or 2
    #[pyo3(get)]
    api: u8,
    /// The pair as on the wire (v1 `XBT/USD`, v2 `BTC/USD`).
    #[pyo3(get)]
    symbol: String,
}

fn plain_str(v: &V) -> Option<(usize, usize)> {
    match *v {
        V::Str(a, b, false) => Some((a, b)),
        _ => None,
    }
}

/// A v2 number or string field as `str(json.loads(..., parse_float=str)[k])` gives it: the
/// token text (except the integer `-0`, which Python prints as `0`: refused).
fn v2_text(s: &[u8], v: &V, what: &str) -> R<(usize, usize)> {
    match *v {
        V::Str(a, b, false) => Ok((a, b)),
        V::Num(a, b) if &s[a..b] != b"-0" => Ok((a, b)),
        _ => Err(format!("trade {what} is not a number or a plain string")),
    }
}

const SIDES: [&[u8]; 2] = [b"buy", b"sell"];
const V1_SIDES: [&[u8]; 2] = [b"b", b"s"];

/// v1 `[channelID, [[price, volume, time, side, orderType, misc], ...], "trade", pair]`.
///
/// Accepted only in the form Kraken sends (every trade field a plain string, channelID a small
/// integer, exactly 4 elements), so that orjson + the reference path would read exactly the
/// same values; anything else is refused and goes through the reference path.
fn parse_v1_trades(payload: &[u8], items: &[V]) -> R<Option<KrakenTrades>> {
    let n = items.len();
    if n < 4 || !matches!(items[n - 2], V::Str(..)) || !matches!(items[n - 1], V::Str(..)) {
        return Ok(None);
    }
    if plain(payload, &items[n - 2]) != Some(b"trade") {
        return Ok(None);
    }
    if n != 4 {
        return Err("a trade message without exactly 4 elements".into());
    }
    match items[0] {
        V::Num(a, b) if b - a <= 18 && payload[a..b].iter().all(u8::is_ascii_digit) => {}
        _ => return Err("channelID is not a small unsigned integer".into()),
    }
    let pair = plain_str(&items[3]).ok_or("pair has escapes")?;
    let symbol = std::str::from_utf8(&payload[pair.0..pair.1]).map_err(|_| "pair is not UTF-8")?.to_owned();
    let V::Arr(list) = &items[1] else {
        return Err("trades are not a list".into());
    };
    let mut trades = Vec::with_capacity(list.len());
    for t in list {
        let V::Arr(f) = t else {
            return Err("a trade is not a list".into());
        };
        if f.len() < 5 {
            return Err("a trade has fewer than 5 fields".into());
        }
        let mut r = [(0usize, 0usize); 5];
        for (k, v) in f.iter().enumerate() {
            let x = plain_str(v).ok_or("a trade field is not a plain string")?;
            if k < 5 {
                r[k] = x;
            }
        }
        let side = match &payload[r[3].0..r[3].1] {
            b"b" => 0,
            b"s" => 1,
            _ => return Err("trade side is neither b nor s".into()),
        };
        let ts = v1_ts_ns(&payload[r[2].0..r[2].1]).ok_or("bad trade time")?;
        trades.push(Trade { price: r[0], amount: r[1], key: r[2], ordertype: r[4], side, ts });
    }
    Ok(Some(KrakenTrades { payload: Arc::from(&[][..]), trades, api: 1, symbol }))
}

/// v2 `{"channel":"trade","type":...,"data":[{symbol, side, price, qty, ord_type, trade_id,
/// timestamp}, ...]}`: one `KrakenTrades` per run of entries with the same symbol.
fn parse_v2_trades(payload: &[u8], obj: &[(usize, usize, bool, V)]) -> R<Option<Vec<KrakenTrades>>> {
    match get(payload, obj, b"channel") {
        Some(v @ V::Str(..)) if plain(payload, v) == Some(b"trade") => {}
        _ => return Ok(None),
    }
    if payload.first() != Some(&b'{') {
        // the reference path reads only frames starting with '{' as v2
        return Err("a v2 frame that does not start with '{'".into());
    }
    let data = match get(payload, obj, b"data") {
        None | Some(V::Null) => return Ok(Some(Vec::new())),
        Some(V::Arr(d)) => d,
        Some(_) => return Err("trade data is not a list".into()),
    };
    let mut out: Vec<KrakenTrades> = Vec::new();
    for entry in data {
        let V::Obj(d) = entry else {
            return Err("a trade is not an object".into());
        };
        let field = |k: &str| get(payload, d, k.as_bytes()).ok_or_else(|| format!("a trade without {k}"));
        let symbol = plain_str(field("symbol")?).ok_or("trade symbol is not a plain string")?;
        let key = v2_text(payload, field("trade_id")?, "trade_id")?;
        let price = v2_text(payload, field("price")?, "price")?;
        let amount = v2_text(payload, field("qty")?, "qty")?;
        let side = match plain_str(field("side")?).map(|(a, b)| &payload[a..b]) {
            Some(b"buy") => 0,
            Some(b"sell") => 1,
            _ => return Err("trade side is neither buy nor sell".into()),
        };
        let ts = plain_str(field("timestamp")?)
            .and_then(|(a, b)| rfc3339_ns(&payload[a..b]))
            .ok_or("bad trade timestamp")?;
        let t = Trade { price, amount, key, ordertype: (0, 0), side, ts };
        let sym = &payload[symbol.0..symbol.1];
        match out.last_mut() {
            Some(m) if m.symbol.as_bytes() == sym => m.trades.push(t),
            _ => out.push(KrakenTrades {
                payload: Arc::from(&[][..]),
                trades: vec![t],
                api: 2,
                symbol: std::str::from_utf8(sym).map_err(|_| "symbol is not UTF-8")?.to_owned(),
            }),
        }
    }
    Ok(Some(out))
}

/// WebSocket v1 and v2 `trade` frames -> one `KrakenTrades` per pair (v2: per run of entries).
pub struct TradeParser;

impl Message for KrakenTrades {
    fn symbol(&self) -> &str {
        &self.symbol
    }
}

impl FrameParser for TradeParser {
    type Message = KrakenTrades;

    fn parse(&self, frame: &[u8]) -> R<Option<Vec<KrakenTrades>>> {
        parse_trade_frame(frame)
    }
}

fn parse_trade_frame(payload: &[u8]) -> R<Option<Vec<KrakenTrades>>> {
    let v = parse_json(payload)?;
    let mut msgs = match &v {
        V::Arr(items) => parse_v1_trades(payload, items)?.map(|m| vec![m]),
        V::Obj(obj) => parse_v2_trades(payload, obj)?,
        _ => None,
    };
    if let Some(ms) = msgs.as_mut() {
        // Kraken writes no escapes; refusing them keeps every accepted frame one that orjson
        // and json.loads decode to exactly these texts (no lone surrogates, no decoding).
        if payload.contains(&b'\\') {
            return Err("a trade frame with escapes".into());
        }
        let shared: Arc<[u8]> = Arc::from(payload);
        for m in ms.iter_mut() {
            m.payload = Arc::clone(&shared);
        }
    }
    Ok(msgs)
}

#[pymethods]
impl KrakenTrades {
    fn __len__(&self) -> usize {
        self.trades.len()
    }

    /// The trades as (price text, amount text, side "buy"/"sell", timestamp ns, v1 time text
    /// or v2 trade_id text), in wire order (tests).
    fn trades(&self) -> Vec<(String, String, &'static str, i64, String)> {
        let t = |r: (usize, usize)| String::from_utf8_lossy(&self.payload[r.0..r.1]).into_owned();
        self.trades
            .iter()
            .map(|x| (t(x.price), t(x.amount), if x.side == 0 { "buy" } else { "sell" }, x.ts, t(x.key)))
            .collect()
    }

    /// Append the trades not seen before to `rows`, as the reference path does.
    ///
    /// Per trade, in wire order: its id (v1: `kraken_trade_id`, v2: `trade_id`); an id in
    /// `memory` is a duplicate (skipped, counted); else price and amount are parsed at the
    /// precisions (a value finer than them, or not a decimal: its message is added to the
    /// returned errors and, v1, the rest of the message is dropped; v2 goes on with the next
    /// trade); else the id is remembered and the row appended (local_ts, rec_id of the raw
    /// row). Returns (rows added, duplicates, error messages).
    #[pyo3(signature = (rows, memory, price_precision, amount_precision, local_ts, rec_id))]
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        rows: &Bound<'_, TradeRows>,
        memory: &Bound<'_, TradeMemory>,
        price_precision: u32,
        amount_precision: u32,
        local_ts: i64,
        rec_id: i64,
    ) -> PyResult<(usize, usize, Vec<String>)> {
        let (pp, ap) = (price_precision, amount_precision);
        if pp > fixed::MAX_PRECISION || ap > fixed::MAX_PRECISION {
            return Err(PyValueError::new_err(format!(
                "precisions must be between 0 and {}, got {pp} / {ap}",
                fixed::MAX_PRECISION
            )));
        }
        let mut rows = rows.try_borrow_mut()?;
        let mut mem = memory.try_borrow_mut()?;
        let s = &self.payload[..];
        let text = |r: (usize, usize)| &s[r.0..r.1];
        let (mut added, mut dups, mut errors) = (0usize, 0usize, Vec::new());
        let (mut id, mut key) = (Vec::with_capacity(16), Vec::with_capacity(96));
        let v1 = self.api == 1;
        let same = |a: &Trade, b: &Trade| {
            a.side == b.side
                && text(a.price) == text(b.price)
                && text(a.amount) == text(b.amount)
                && text(a.key) == text(b.key)
                && text(a.ordertype) == text(b.ordertype)
        };
        let mut counts: HashMap<[&[u8]; 5], usize> = HashMap::new();
        let many = self.trades.len() > 16;
        for (k, t) in self.trades.iter().enumerate() {
            if v1 {
                let side = V1_SIDES[usize::from(t.side)];
                let fields5 = [text(t.price), text(t.amount), text(t.key), side, text(t.ordertype)];
                let ordinal = if many {
                    let c = counts.entry(fields5).or_insert(0);
                    *c += 1;
                    *c - 1
                } else {
                    self.trades[..k].iter().filter(|e| same(e, t)).count()
                };
                let fields = [self.symbol.as_bytes(), text(t.key), text(t.price), text(t.amount), side, text(t.ordertype)];
                v1_trade_id(&mut id, &mut key, fields, ordinal);
            } else {
                id.clear();
                id.extend_from_slice(text(t.key));
            }
            if mem.contains_id(&id) {
                dups += 1;
                continue;
            }
            let parsed = fixed::parse_fixed(text(t.price), pp)
                .map_err(|e| e.message(&String::from_utf8_lossy(text(t.price)), pp))
                .and_then(|p| {
                    fixed::parse_fixed(text(t.amount), ap)
                        .map(|a| (p, a))
                        .map_err(|e| e.message(&String::from_utf8_lossy(text(t.amount)), ap))
                });
            let (p, a) = match parsed {
                Ok(pa) => pa,
                Err(msg) => {
                    errors.push(msg);
                    if v1 {
                        break;
                    }
                    continue;
                }
            };
            mem.remember(&id);
            rows.push_row(t.ts, local_ts, &id, SIDES[usize::from(t.side)], p, a, rec_id)
                .map_err(PyValueError::new_err)?;
            added += 1;
        }
        Ok((added, dups, errors))
    }

    fn __repr__(&self) -> String {
        format!("KrakenTrades(api=v{}, symbol={:?}, trades={})", self.api, self.symbol, self.trades.len())
    }
}

/// Parse one Kraken WebSocket frame (v1 or v2) for trades. None: not a trade message. A list
/// of `KrakenTrades` (v1: one; v2: one per run of entries with the same symbol). ValueError:
/// invalid JSON or a trade message in a form the fast path does not take (the caller's
/// reference path reports it); never a panic.
#[pyfunction]
fn parse_kraken_trades<'py>(py: Python<'py>, payload: &[u8]) -> PyResult<Option<Bound<'py, PyList>>> {
    parse_to_py(py, &TradeParser, payload)
}

/// lab's id of a v1 trade (see `docs/KRAKEN.md`): blake2b-64 hex of
/// `pair|time|price|volume|side|ordertype|ordinal`.
#[pyfunction]
fn kraken_trade_id(pair: &str, time: &str, price: &str, volume: &str, side: &str, ordertype: &str, ordinal: usize) -> String {
    let (mut out, mut key) = (Vec::new(), Vec::new());
    let fields = [pair, time, price, volume, side, ordertype].map(str::as_bytes);
    v1_trade_id(&mut out, &mut key, fields, ordinal);
    String::from_utf8_lossy(&out).into_owned()
}

/// Unkeyed BLAKE2b hex digest of `data` with `digest_size` bytes (1..=64; tests).
#[pyfunction]
#[pyo3(signature = (data, digest_size = 64))]
fn blake2b_hex(data: &[u8], digest_size: usize) -> PyResult<String> {
    if !(1..=64).contains(&digest_size) {
        return Err(PyValueError::new_err(format!("digest_size must be between 1 and 64, got {digest_size}")));
    }
    let mut h = Blake2bVar::new(digest_size).map_err(|e| PyValueError::new_err(e.to_string()))?;
    h.update(data);
    let mut digest = [0u8; 64];
    let digest = &mut digest[..digest_size];
    h.finalize_variable(digest).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let mut out = Vec::with_capacity(2 * digest_size);
    push_hex(&mut out, digest);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

// ------------------------------------------------------------------------------ REST Depth

/// REST `Depth` `{"error":[],"result":{"XXBTZUSD":{"asks":[[price, volume, time], ...],
/// "bids":[...]}}}` as a snapshot `KrakenBook` (api 1: no checksum, wire decimals learned;
/// `symbol` is the result key). Only the form Kraken sends is taken (an empty error list, one
/// result, plain-string prices and volumes, integer or string times, no escapes or exponents);
/// anything else is a ValueError and the caller's reference path reports it.
fn parse_depth(payload: &[u8]) -> R<KrakenBook> {
    if payload.contains(&b'\\') {
        return Err("a Depth response with escapes".into());
    }
    let v = parse_json(payload)?;
    let V::Obj(doc) = &v else {
        return Err("Depth response is not an object".into());
    };
    match get(payload, doc, b"error") {
        None => {}
        Some(V::Arr(e)) if e.is_empty() => {}
        _ => return Err("Depth response with errors".into()),
    }
    let Some(V::Obj(result)) = get(payload, doc, b"result") else {
        return Err("Depth response without a result object".into());
    };
    let [(a, b, false, V::Obj(book))] = &result[..] else {
        return Err("Depth result without exactly one pair".into());
    };
    let symbol = std::str::from_utf8(&payload[*a..*b]).map_err(|_| "pair is not UTF-8")?.to_owned();
    let mut levels = Vec::new();
    let mut newest = 0;
    for (key, side) in [(&b"asks"[..], 1u8), (&b"bids"[..], 0u8)] {
        let Some(list @ V::Arr(items)) = get(payload, book, key) else {
            return Err("Depth book without asks and bids lists".into());
        };
        for item in items {
            if let V::Arr(f) = item {
                // orjson reads a fractional number as a float: only integer times are exact
                if let Some(V::Num(x, y)) = f.get(2) {
                    if payload[*x..*y].iter().any(|c| !c.is_ascii_digit()) {
                        return Err("Depth level time is not an integer".into());
                    }
                }
                for v in f.iter().take(2) {
                    if let V::Str(x, y, _) = v {
                        if payload[*x..*y].iter().any(|c| matches!(c, b'e' | b'E')) {
                            return Err("Depth level with an exponent".into());
                        }
                    }
                }
            }
        }
        newest = newest.max(v1_levels(payload, list, side, &mut levels)?);
    }
    Ok(KrakenBook {
        payload: payload.to_vec(),
        levels,
        api: 1,
        symbol,
        snapshot: true,
        checksum: None,
        timestamp: newest,
    })
}

/// Parse a REST `Depth` response body into a snapshot `KrakenBook` (`symbol`: the result key,
/// e.g. `XXBTZUSD`). ValueError for anything else (errors, an odd shape); never a panic.
#[pyfunction]
fn parse_kraken_depth(py: Python<'_>, payload: &[u8]) -> PyResult<Py<KrakenBook>> {
    let m = parse_depth(payload).map_err(PyValueError::new_err)?;
    Py::new(py, m)
}

/// REST `Depth` bodies -> the one snapshot `KrakenBook` (a body is always a Depth response:
/// never `Ok(None)`).
pub struct DepthParser;

impl FrameParser for DepthParser {
    type Message = KrakenBook;

    fn parse(&self, frame: &[u8]) -> R<Option<Vec<KrakenBook>>> {
        parse_depth(frame).map(|m| Some(vec![m]))
    }
}


pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<KrakenBook>()?;
    m.add_function(wrap_pyfunction!(parse_kraken_book, m)?)?;
    m.add_function(wrap_pyfunction!(kraken_wire_checksum, m)?)?;
    m.add_function(wrap_pyfunction!(kraken_checksum, m)?)?;
    m.add_class::<KrakenTrades>()?;
    m.add_function(wrap_pyfunction!(parse_kraken_trades, m)?)?;
    m.add_function(wrap_pyfunction!(kraken_trade_id, m)?)?;
    m.add_function(wrap_pyfunction!(blake2b_hex, m)?)?;
    m.add_function(wrap_pyfunction!(parse_kraken_depth, m)?)?;
    m.add("KRAKEN_APPLIED", APPLIED)?;
    m.add("KRAKEN_MISMATCH", MISMATCH)?;
    m.add("KRAKEN_PRECISION", PRECISION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_times() {
        assert_eq!(v1_ts_ns(b"1534614248.123678"), Some(1_534_614_248_123_678_000));
        assert_eq!(v1_ts_ns(b"12"), Some(12_000_000_000));
        assert_eq!(v1_ts_ns(b"1.1234567899"), Some(1_123_456_789));
        for bad in [&b""[..], b".5", b"1e3", b"-1", b"1.x", b"9999999999999"] {
            assert_eq!(v1_ts_ns(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn checksum_digits_and_pads() {
        let mut b = Book::new(10);
        b.side_mut(true).set(5_541_20, 15_850_568);
        b.side_mut(false).set(5_541_10, 0);
        b.side_mut(false).set(5_540_00, 100_000_000);
        // asks then bids, mantissa digits (amount 0 deleted the level)
        assert_eq!(checksum(&b), crc32fast::hash(b"55412015850568554000100000000"));
        assert_eq!((CHECKSUM.compute)(&b, 2, 8), checksum(&b));
    }
    #[test]
    fn frames() {
        let v1 = br#"[1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},{"b":[["0.042990","0.00000000","1618678145.920708"]],"c":"4105471083"},"book-1000","SC/EUR"]"#;
        let m = parse_frame(v1).unwrap().unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].symbol, "SC/EUR");
        assert_eq!(m[0].checksum, Some(4105471083));
        assert_eq!(m[0].levels.len(), 2);
        assert!(parse_frame(br#"[42,[["1","2","3","s","l",""]],"trade","XBT/USD"]"#).unwrap().is_none());
        let v2 = br#"{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5657,"qty":1098.3947558}],"asks":[],"checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}"#;
        let m = parse_frame(v2).unwrap().unwrap();
        assert_eq!(m[0].symbol, "MATIC/USD");
        let l = &m[0].levels[0];
        assert_eq!(&v2[l.amount.0..l.amount.1], b"1098.3947558");
        assert!(parse_frame(br#"{"channel":"heartbeat"}"#).unwrap().is_none());
        assert!(parse_frame(br#"{"channel":"book","type":"update","data":[{"symbol":"X","checksum":"1"}]}"#).is_err());
    }

    fn hex(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        push_hex(&mut out, bytes);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn blake2b_vectors() {
        // RFC 7693 appendix A: BLAKE2b-512("abc"); BLAKE2b-512("") from the BLAKE2 reference
        let mut h = Blake2bVar::new(64).unwrap();
        h.update(b"abc");
        let mut d = [0u8; 64];
        h.finalize_variable(&mut d).unwrap();
        assert_eq!(
            hex(&d),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
             7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
        );
        assert_eq!(
            hex(&Blake2b::<blake2::digest::consts::U64>::digest(b"")),
            "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419\
             d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce"
        );
        // BLAKE2b-64 (8-byte digest, its own parameter block): as hashlib.blake2b(digest_size=8)
        assert_eq!(hex(&Blake2b::<U8>::digest(b"abc")), "d8bb14d833d59559");
        assert_eq!(hex(&Blake2b::<U8>::digest(b"")), "e4a6a0577479b2b4");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(hex(&Blake2b::<U8>::digest(&all)), "2b2cedfed655ad3f");
        // the v1 trade id of docs/KRAKEN.md's example trade
        let (mut id, mut key) = (Vec::new(), Vec::new());
        let fields = ["XBT/USD", "1534614057.321597", "5541.20000", "0.15850568", "s", "l"].map(str::as_bytes);
        v1_trade_id(&mut id, &mut key, fields, 0);
        assert_eq!(key, b"XBT/USD|1534614057.321597|5541.20000|0.15850568|s|l|0");
        assert_eq!(id, b"7a181bdfd80bb215");
    }

    #[test]
    fn trade_frames() {
        let v1 = br#"[0,[["5541.20000","0.15850568","1534614057.321597","s","l",""],["6060.00000","0.02455000","1534614057.324998","b","l",""]],"trade","XBT/USD"]"#;
        let m = parse_trade_frame(v1).unwrap().unwrap();
        assert_eq!((m.len(), m[0].trades.len(), m[0].symbol.as_str()), (1, 2, "XBT/USD"));
        assert_eq!(m[0].trades[0].ts, 1_534_614_057_321_597_000);
        assert!(parse_trade_frame(br#"[0,[["1","2","3","x","l",""]],"trade","XBT/USD"]"#).is_err());
        assert!(parse_trade_frame(br#"[0,[[1,"2","3","b","l",""]],"trade","XBT/USD"]"#).is_err());
        assert!(parse_trade_frame(br#"[0,[["1","2","99999999999","b","l",""]],"trade","XBT/USD"]"#).is_err());
        assert!(parse_trade_frame(br#"[0,{"a":[]},"book-10","XBT/USD"]"#).unwrap().is_none());
        let v2 = br#"{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"},{"symbol":"ETH/USD","side":"sell","price":1,"qty":2,"ord_type":"limit","trade_id":7,"timestamp":"2023-09-25T07:48:36Z"}]}"#;
        let m = parse_trade_frame(v2).unwrap().unwrap();
        assert_eq!(m.len(), 2);
        assert!(parse_trade_frame(br#" {"channel":"trade","data":[]}"#).is_err());
        assert!(parse_trade_frame(br#"{"channel":"trade","data":[{"symbol":"A\u0042"}]}"#).is_err());
        assert_eq!(rfc3339_ns(b"9999-12-31T23:59:59Z"), None);
    }
}
