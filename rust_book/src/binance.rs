//! Binance spot's hot frame parsers (PROTOCOLS.md section 4), on the `FrameParser` contract
//! (frame.rs): diff-depth events (`<sym>@depth@100ms`), trade events (`<sym>@trade`), both raw
//! and wrapped in a combined-stream envelope `{"stream":..., "data":{...}}`, and the REST
//! `/api/v3/depth` snapshot body.
//!
//! - `DepthParser` (`parse_binance_depth`): `{"e":"depthUpdate","E":..,"s":..,"U":..,"u":..,
//!   "b":[[price, qty], ...],"a":[...]}` -> one `BinanceBook` (bids then asks, wire order).
//! - `TradeParser` (`parse_binance_trade`): `{"e":"trade","E":..,"s":..,"t":..,"p":..,"q":..,
//!   "T":..,"m":..}` -> one `BinanceTrade` (`m` true: the buyer is the maker, the taker sold).
//! - `SnapshotParser` (`parse_binance_snapshot`): `{"lastUpdateId":..,"bids":[..],"asks":[..]}`
//!   -> one snapshot `BinanceBook` (its `symbol` is empty: the body names none; the caller
//!   knows it from the request).
//!
//! Only the form Binance sends is taken, so that every accepted frame is one the Python
//! reference path (lab/venues/binance/protocol.py, orjson) reads to exactly the same values:
//! ids and times are JSON integers (plain digits, below 2^63, and their ns form fits int64),
//! prices and quantities plain strings, levels exactly `[price, qty]`, no escapes anywhere.
//! Everything else is a refusal (`Err`), and the caller's reference path reports it as before.
//! Prices and quantities stay wire text until `check` / `apply` parse them at the instrument's
//! precisions (fixed.rs): Binance pads to 8 decimals, so trailing zeros beyond the tick are
//! exact and a non-zero digit beyond it is an error, never rounded. Nothing goes through a float.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::fixed;
use crate::frame::{parse_to_py, FrameParser, Message};
use crate::json::{get, has, parse_json, plain, R, V};
use crate::orderbook::OrderBook;
use crate::rows::BookRows;
use crate::trades::TradeRows;
use crate::wire_levels::{apply_levels, check_precisions, levels_of, WireLevels};

/// Binance times are milliseconds; lab's are nanoseconds.
const MS: i64 = 1_000_000;

type Obj = [(usize, usize, bool, V)];

/// A JSON integer field as the reference path takes it (`type(v) is int and 0 <= v < 2**63`),
/// from plain digits only (a fraction, an exponent or a sign is refused).
fn uint_of(s: &[u8], v: Option<&V>, what: &str) -> R<i64> {
    let Some(&V::Num(a, b)) = v else {
        return Err(format!("{what} is not an integer"));
    };
    let t = &s[a..b];
    if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
        return Err(format!("{what} is not an unsigned integer"));
    }
    let x = t.iter().fold(0u64, |acc, &c| acc * 10 + u64::from(c - b'0'));
    i64::try_from(x).map_err(|_| format!("{what} does not fit in int64"))
}

/// A millisecond time whose ns form fits int64.
fn time_of(s: &[u8], v: Option<&V>, what: &str) -> R<(i64, i64)> {
    let ms = uint_of(s, v, what)?;
    let ns = ms.checked_mul(MS).ok_or_else(|| format!("{what} in ns does not fit in int64"))?;
    Ok((ms, ns))
}

/// A plain string field's text range.
fn str_of(v: Option<&V>, what: &str) -> R<(usize, usize)> {
    match v {
        Some(&V::Str(a, b, false)) => Ok((a, b)),
        _ => Err(format!("{what} is not a plain string")),
    }
}

/// `true` / `false` of a boolean field (the scanner keeps no text for literals: read the value
/// after the key; the last of repeated keys, as `get`).
fn bool_of(s: &[u8], obj: &Obj, key: &[u8]) -> Option<bool> {
    let (_, end, _, v) = obj.iter().rev().find(|(a, b, e, _)| !e && &s[*a..*b] == key)?;
    if !matches!(v, V::Bool) {
        return None;
    }
    // `end` is the closing quote of the key: skip it, whitespace, ':', whitespace
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let mut i = end + 1;
    while s.get(i).is_some_and(ws) {
        i += 1;
    }
    if s.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while s.get(i).is_some_and(ws) {
        i += 1;
    }
    match s.get(i) {
        Some(b't') => Some(true),
        Some(b'f') => Some(false),
        _ => None,
    }
}

/// The event object of a frame: a combined-stream envelope's `data` (when the object has both
/// `stream` and `data`, as the reference `unwrap`), else the object itself. None: not an object.
fn event_of<'v>(s: &[u8], v: &'v V) -> R<Option<&'v Obj>> {
    let V::Obj(o) = v else {
        return Ok(None);
    };
    if has(s, o, b"stream") && has(s, o, b"data") {
        return match get(s, o, b"data") {
            Some(V::Obj(d)) => Ok(Some(d)),
            _ => Err("combined-stream data is not an object".into()),
        };
    }
    Ok(Some(o))
}

/// The frame's event object when its `e` is `kind`; Ok(None) for any other kind of frame.
fn parse_event<'v>(s: &[u8], v: &'v V, kind: &[u8]) -> R<Option<&'v Obj>> {
    let Some(ev) = event_of(s, v)? else {
        return Ok(None);
    };
    match get(s, ev, b"e") {
        Some(e @ V::Str(..)) if plain(s, e) == Some(kind) => Ok(Some(ev)),
        _ => Ok(None),
    }
}

fn no_escapes(payload: &[u8]) -> R<()> {
    // Binance writes none; refusing them keeps every accepted frame one that orjson decodes to
    // exactly these texts (and an escaped key can never hide a `stream` / `data` / `e`)
    if payload.contains(&b'\\') {
        return Err("a frame with escapes".into());
    }
    Ok(())
}

// ------------------------------------------------------------------------------ books

/// One book message: a `depthUpdate` (first_id `U`, last_id `u`) or a REST snapshot (both
/// `lastUpdateId`), levels as exact wire text, bids first then asks, each in wire order.
#[pyclass(module = "lab.rust_book")]
pub struct BinanceBook {
    wire: WireLevels,
    /// The symbol as on the wire (`s`); empty for a REST snapshot (the body names none).
    #[pyo3(get)]
    symbol: String,
    /// True for a REST snapshot.
    #[pyo3(get)]
    snapshot: bool,
    /// `U` (a snapshot: `lastUpdateId`).
    #[pyo3(get)]
    first_id: i64,
    /// `u` (a snapshot: `lastUpdateId`).
    #[pyo3(get)]
    last_id: i64,
    /// `E`, ms (a snapshot: 0).
    #[pyo3(get)]
    event_time: i64,
    /// `E` in ns (a snapshot: 0).
    #[pyo3(get)]
    timestamp: i64,
    #[pyo3(get)]
    bid_count: usize,
    #[pyo3(get)]
    ask_count: usize,
}

impl Message for BinanceBook {
    fn symbol(&self) -> &str {
        &self.symbol
    }
}

fn parse_depth_frame(payload: &[u8]) -> R<Option<Vec<BinanceBook>>> {
    no_escapes(payload)?;
    let v = parse_json(payload)?;
    let Some(ev) = parse_event(payload, &v, b"depthUpdate")? else {
        return Ok(None);
    };
    let (a, b) = str_of(get(payload, ev, b"s"), "depthUpdate s")?;
    let symbol = std::str::from_utf8(&payload[a..b]).map_err(|_| "symbol is not UTF-8")?.to_owned();
    let first = uint_of(payload, get(payload, ev, b"U"), "depthUpdate U")?;
    let last = uint_of(payload, get(payload, ev, b"u"), "depthUpdate u")?;
    if first > last {
        return Err("depthUpdate U > u".into());
    }
    let (event_time, timestamp) = time_of(payload, get(payload, ev, b"E"), "depthUpdate E")?;
    let mut levels = Vec::new();
    let bid_count = levels_of(get(payload, ev, b"b"), 0, &mut levels, "depthUpdate b", "qty")?;
    let ask_count = levels_of(get(payload, ev, b"a"), 1, &mut levels, "depthUpdate a", "qty")?;
    Ok(Some(vec![BinanceBook {
        wire: WireLevels::new(payload, levels),
        symbol,
        snapshot: false,
        first_id: first,
        last_id: last,
        event_time,
        timestamp,
        bid_count,
        ask_count,
    }]))
}

fn parse_snapshot_body(payload: &[u8]) -> R<BinanceBook> {
    no_escapes(payload)?;
    let v = parse_json(payload)?;
    let V::Obj(doc) = &v else {
        return Err("depth snapshot is not an object".into());
    };
    let id = uint_of(payload, get(payload, doc, b"lastUpdateId"), "depth lastUpdateId")?;
    let mut levels = Vec::new();
    let bid_count = levels_of(get(payload, doc, b"bids"), 0, &mut levels, "depth bids", "qty")?;
    let ask_count = levels_of(get(payload, doc, b"asks"), 1, &mut levels, "depth asks", "qty")?;
    Ok(BinanceBook {
        wire: WireLevels::new(payload, levels),
        symbol: String::new(),
        snapshot: true,
        first_id: id,
        last_id: id,
        event_time: 0,
        timestamp: 0,
        bid_count,
        ask_count,
    })
}

#[pymethods]
impl BinanceBook {
    fn __len__(&self) -> usize {
        self.wire.len()
    }

    /// The levels as (side 0 bid / 1 ask, price text, qty text): bids then asks (tests).
    fn levels(&self) -> Vec<(u8, String, String)> {
        self.wire.texts()
    }

    /// Validate every level at the instrument's precisions as the reference path does (exact
    /// there, not negative) and keep the parsed levels for `apply`. None when the message can
    /// be applied, else the reason (the caller then hands the frame to its reference path).
    fn check(&mut self, price_precision: u32, amount_precision: u32) -> PyResult<Option<String>> {
        self.wire.check(price_precision, amount_precision, true)
    }

    /// Apply to `book` and append the rows to `rows`, as `OrderBook.apply_wire_message` does
    /// with the message's bids and asks: levels at the book's precisions (those `check` kept,
    /// else parsed now: ValueError with apply_wire_message's reason, the book unchanged); a
    /// snapshot clears the book; levels in order (bids, then asks); truncate to depth; rows with
    /// first_seq = `first_id`, last_seq = `last_id`, no checksum; when rows were written (an
    /// empty delta writes none) the book's timestamp / local_timestamp / seq are set. Returns
    /// whether rows were written.
    #[pyo3(signature = (book, rows, ts, local_ts, rec_id))]
    fn apply(
        &self,
        book: &Bound<'_, OrderBook>,
        rows: &Bound<'_, BookRows>,
        ts: i64,
        local_ts: i64,
        rec_id: i64,
    ) -> PyResult<bool> {
        let mut ob = book.try_borrow_mut()?;
        let levels = self.wire.at(ob.price_precision, ob.amount_precision)?;
        let mut rows = rows.try_borrow_mut()?;
        apply_levels(&mut ob.book, &levels, self.snapshot);
        let added = rows.push_message(&levels, ts, local_ts, rec_id, self.first_id, self.last_id, None, self.snapshot);
        if added {
            ob.timestamp = ts;
            ob.local_timestamp = local_ts;
            ob.seq = self.last_id;
        }
        Ok(added)
    }

    fn __repr__(&self) -> String {
        if self.snapshot {
            format!("BinanceBook(snapshot, id={}, bids={}, asks={})", self.last_id, self.bid_count, self.ask_count)
        } else {
            format!(
                "BinanceBook(symbol={:?}, U={}, u={}, bids={}, asks={})",
                self.symbol, self.first_id, self.last_id, self.bid_count, self.ask_count
            )
        }
    }
}

/// `depthUpdate` frames (raw or combined-stream) -> the one `BinanceBook` they carry.
pub struct DepthParser;

impl FrameParser for DepthParser {
    type Message = BinanceBook;

    fn parse(&self, frame: &[u8]) -> R<Option<Vec<BinanceBook>>> {
        parse_depth_frame(frame)
    }
}

/// REST `/api/v3/depth` bodies -> the one snapshot `BinanceBook` (a body is always a depth
/// answer: never `Ok(None)`).
pub struct SnapshotParser;

impl FrameParser for SnapshotParser {
    type Message = BinanceBook;

    fn parse(&self, frame: &[u8]) -> R<Option<Vec<BinanceBook>>> {
        parse_snapshot_body(frame).map(|m| Some(vec![m]))
    }
}

/// Parse one Binance WebSocket frame for a diff-depth event. None: not a `depthUpdate`. A list
/// of one `BinanceBook`. ValueError: a frame in a form the fast path does not take (the
/// caller's reference path reports it); never a panic.
#[pyfunction]
fn parse_binance_depth<'py>(py: Python<'py>, payload: &[u8]) -> PyResult<Option<Bound<'py, PyList>>> {
    parse_to_py(py, &DepthParser, payload)
}

/// Parse a REST `/api/v3/depth` body into a snapshot `BinanceBook`. ValueError for anything
/// else (an error body, an odd shape); never a panic.
#[pyfunction]
fn parse_binance_snapshot(py: Python<'_>, payload: &[u8]) -> PyResult<Py<BinanceBook>> {
    let m = parse_snapshot_body(payload).map_err(PyValueError::new_err)?;
    Py::new(py, m)
}

// ------------------------------------------------------------------------------ trades

/// One `trade` event, price and quantity as exact wire text.
#[pyclass(module = "lab.rust_book")]
pub struct BinanceTrade {
    price: Vec<u8>,
    amount: Vec<u8>,
    /// (price precision, amount precision, price ticks, qty lots) kept by `check`
    parsed: Option<(u32, u32, i64, i64)>,
    #[pyo3(get)]
    symbol: String,
    /// `t`, the trade id (increasing by one per symbol).
    #[pyo3(get)]
    id: i64,
    /// `T`, the trade time, ms.
    #[pyo3(get)]
    trade_time: i64,
    /// `T` in ns.
    #[pyo3(get)]
    timestamp: i64,
    /// `E` in ms when it is an integer (the reference path does not read it).
    #[pyo3(get)]
    event_time: Option<i64>,
    /// `m`: the buyer is the maker.
    #[pyo3(get)]
    buyer_maker: bool,
}

impl Message for BinanceTrade {
    fn symbol(&self) -> &str {
        &self.symbol
    }
}

fn parse_trade_frame(payload: &[u8]) -> R<Option<Vec<BinanceTrade>>> {
    no_escapes(payload)?;
    let v = parse_json(payload)?;
    let Some(ev) = parse_event(payload, &v, b"trade")? else {
        return Ok(None);
    };
    let (a, b) = str_of(get(payload, ev, b"s"), "trade s")?;
    let symbol = std::str::from_utf8(&payload[a..b]).map_err(|_| "symbol is not UTF-8")?.to_owned();
    let id = uint_of(payload, get(payload, ev, b"t"), "trade t")?;
    let (trade_time, timestamp) = time_of(payload, get(payload, ev, b"T"), "trade T")?;
    let buyer_maker = bool_of(payload, ev, b"m").ok_or("trade m is not a boolean")?;
    let p = str_of(get(payload, ev, b"p"), "trade p")?;
    let q = str_of(get(payload, ev, b"q"), "trade q")?;
    let event_time = uint_of(payload, get(payload, ev, b"E"), "trade E").ok();
    Ok(Some(vec![BinanceTrade {
        price: payload[p.0..p.1].to_vec(),
        amount: payload[q.0..q.1].to_vec(),
        parsed: None,
        symbol,
        id,
        trade_time,
        timestamp,
        event_time,
        buyer_maker,
    }]))
}

impl BinanceTrade {
    fn parse_values(&self, pp: u32, ap: u32) -> R<(i64, i64)> {
        let p = fixed::parse_fixed(&self.price, pp).map_err(|e| e.message(&String::from_utf8_lossy(&self.price), pp))?;
        let q = fixed::parse_fixed(&self.amount, ap).map_err(|e| e.message(&String::from_utf8_lossy(&self.amount), ap))?;
        if p < 0 || q < 0 {
            return Err("negative trade price / qty".into());
        }
        Ok((p, q))
    }

    fn values_at(&self, pp: u32, ap: u32) -> R<(i64, i64)> {
        match self.parsed {
            Some((x, y, p, q)) if (x, y) == (pp, ap) => Ok((p, q)),
            _ => self.parse_values(pp, ap),
        }
    }
}

#[pymethods]
impl BinanceTrade {
    /// The taker side: "sell" when the buyer is the maker, else "buy".
    #[getter]
    fn side(&self) -> &'static str {
        if self.buyer_maker {
            "sell"
        } else {
            "buy"
        }
    }

    /// (price text, qty text) as on the wire (tests).
    fn texts(&self) -> (String, String) {
        (String::from_utf8_lossy(&self.price).into_owned(), String::from_utf8_lossy(&self.amount).into_owned())
    }

    /// Validate price and qty at the instrument's precisions as the reference path does
    /// (exact there, not negative) and keep them. None when the trade can be applied, else the
    /// reason (the caller then hands the frame to its reference path).
    fn check(&mut self, price_precision: u32, amount_precision: u32) -> PyResult<Option<String>> {
        check_precisions(price_precision, amount_precision)?;
        match self.parse_values(price_precision, amount_precision) {
            Ok((p, q)) => {
                self.parsed = Some((price_precision, amount_precision, p, q));
                Ok(None)
            }
            Err(e) => Ok(Some(e)),
        }
    }

    /// (price ticks, qty lots) at the precisions `check` accepted, None before.
    #[getter]
    fn values(&self) -> Option<(i64, i64)> {
        self.parsed.map(|(_, _, p, q)| (p, q))
    }

    /// Append the trade to `rows` unless it is a duplicate, with Binance's dedupe by id: a
    /// trade whose `t` is at most `last_id` (the last id written for the symbol) is skipped.
    /// The row: timestamp `T` (ns), local_ts, id `str(t)`, taker side, price and qty at the
    /// precisions (ValueError when they are not exact there: nothing is appended), rec_id.
    /// Returns -1 for a duplicate, 1 when written after a hole in the ids (`t != last_id + 1`,
    /// a `trade_gap` for the caller), 0 when written in sequence (or with no `last_id`).
    #[pyo3(signature = (rows, price_precision, amount_precision, local_ts, rec_id, last_id = None))]
    fn apply(
        &self,
        rows: &Bound<'_, TradeRows>,
        price_precision: u32,
        amount_precision: u32,
        local_ts: i64,
        rec_id: i64,
        last_id: Option<i64>,
    ) -> PyResult<i8> {
        check_precisions(price_precision, amount_precision)?;
        if last_id.is_some_and(|last| self.id <= last) {
            return Ok(-1);
        }
        let (p, q) = self.values_at(price_precision, amount_precision).map_err(PyValueError::new_err)?;
        let mut id = Vec::with_capacity(20);
        fixed::push_u64(&mut id, self.id as u64);
        rows.try_borrow_mut()?
            .push_row(self.timestamp, local_ts, &id, self.side().as_bytes(), p, q, rec_id)
            .map_err(PyValueError::new_err)?;
        Ok(match last_id {
            Some(last) if last.checked_add(1) != Some(self.id) => 1,
            _ => 0,
        })
    }

    fn __repr__(&self) -> String {
        format!("BinanceTrade(symbol={:?}, t={}, side={})", self.symbol, self.id, self.side())
    }
}

/// `trade` frames (raw or combined-stream) -> the one `BinanceTrade` they carry.
pub struct TradeParser;

impl FrameParser for TradeParser {
    type Message = BinanceTrade;

    fn parse(&self, frame: &[u8]) -> R<Option<Vec<BinanceTrade>>> {
        parse_trade_frame(frame)
    }
}

/// Parse one Binance WebSocket frame for a trade event. None: not a `trade`. A list of one
/// `BinanceTrade`. ValueError: a frame in a form the fast path does not take; never a panic.
#[pyfunction]
fn parse_binance_trade<'py>(py: Python<'py>, payload: &[u8]) -> PyResult<Option<Bound<'py, PyList>>> {
    parse_to_py(py, &TradeParser, payload)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BinanceBook>()?;
    m.add_class::<BinanceTrade>()?;
    m.add_function(wrap_pyfunction!(parse_binance_depth, m)?)?;
    m.add_function(wrap_pyfunction!(parse_binance_snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(parse_binance_trade, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &[u8] = br#"{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}"#;
    const TRADE: &[u8] = br#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}"#;
    const DEPTH: &[u8] = br#"{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}"#;

    #[test]
    fn golden_frames() {
        let m = parse_depth_frame(DIFF).unwrap().unwrap();
        assert_eq!((m[0].symbol.as_str(), m[0].first_id, m[0].last_id), ("BNBBTC", 157, 160));
        assert_eq!(m[0].timestamp, 1_672_515_782_136_000_000);
        assert_eq!((m[0].bid_count, m[0].ask_count), (1, 1));
        let wrapped = [&br#"{"stream":"bnbbtc@depth@100ms","data":"#[..], DIFF, b"}"].concat();
        let w = parse_depth_frame(&wrapped).unwrap().unwrap();
        assert_eq!(w[0].levels(), m[0].levels());
        let t = parse_trade_frame(TRADE).unwrap().unwrap();
        assert_eq!((t[0].id, t[0].buyer_maker, t[0].side()), (12345, true, "sell"));
        let f = parse_trade_frame(&TRADE.iter().copied().collect::<Vec<u8>>().replace_all(b"\"m\":true", b"\"m\" :  false")).unwrap().unwrap();
        assert!(!f[0].buyer_maker);
        let s = parse_snapshot_body(DEPTH).unwrap();
        assert_eq!((s.last_id, s.bid_count, s.ask_count, s.snapshot), (1027024, 1, 1, true));
        assert!(parse_depth_frame(TRADE).unwrap().is_none());
        assert!(parse_trade_frame(DIFF).unwrap().is_none());
        assert!(parse_depth_frame(br#"{"result":null,"id":1}"#).unwrap().is_none());
        assert!(parse_depth_frame(b"[1,2]").unwrap().is_none());
    }

    #[test]
    fn refusals() {
        for bad in [
            &br#"{"e":"depthUpdate","E":1,"s":"X","U":2,"u":1,"b":[],"a":[]}"#[..],
            br#"{"e":"depthUpdate","E":1,"s":"X","U":1.0,"u":1,"b":[],"a":[]}"#,
            br#"{"e":"depthUpdate","E":1,"s":"X","U":1,"u":9223372036854775808,"b":[],"a":[]}"#,
            br#"{"e":"depthUpdate","E":9223372036855,"s":"X","U":1,"u":1,"b":[],"a":[]}"#,
            br#"{"e":"depthUpdate","E":1,"s":"X","U":1,"u":1,"b":[["1"]],"a":[]}"#,
            br#"{"e":"depthUpdate","E":1,"s":"X","U":1,"u":1,"b":[["1",2]],"a":[]}"#,
            br#"{"e":"depthUpdate","E":1,"s":"X","U":1,"u":1,"b":[]}"#,
            br#"{"e":"depthUpdate","E":1,"s":"\u0058","U":1,"u":1,"b":[],"a":[]}"#,
            br#"{"stream":"x","data":[1]}"#,
            b"{",
        ] {
            assert!(parse_depth_frame(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse_trade_frame(br#"{"e":"trade","s":"X","t":1,"T":1,"m":1,"p":"1","q":"1"}"#).is_err());
        assert!(parse_trade_frame(br#"{"e":"trade","s":"X","t":-1,"T":1,"m":true,"p":"1","q":"1"}"#).is_err());
        assert!(parse_snapshot_body(br#"{"code":-1121,"msg":"Invalid symbol."}"#).is_err());
    }

    trait ReplaceAll {
        fn replace_all(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }

    impl ReplaceAll for Vec<u8> {
        fn replace_all(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut i = 0;
            while i < self.len() {
                if self[i..].starts_with(from) {
                    out.extend_from_slice(to);
                    i += from.len();
                } else {
                    out.push(self[i]);
                    i += 1;
                }
            }
            out
        }
    }
}
