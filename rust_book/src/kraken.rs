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

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::fixed::{self, push_u64};
use crate::rows::BookRows;
use crate::OrderBook;

// ------------------------------------------------------------------------------ JSON scanner

/// A JSON value as byte ranges into the payload (numbers and strings keep their wire text).
enum V {
    Null,
    Bool,
    /// number text [start, end)
    Num(usize, usize),
    /// string content [start, end) between the quotes, and whether it holds escapes
    Str(usize, usize, bool),
    Arr(Vec<V>),
    /// (key content start, key end, key escaped, value)
    Obj(Vec<(usize, usize, bool, V)>),
}

const MAX_NESTING: u32 = 32;

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
    nesting: u32,
}

type R<T> = Result<T, String>;

impl<'a> Scanner<'a> {
    fn err<T>(&self, what: &str) -> R<T> {
        Err(format!("invalid JSON at byte {}: {what}", self.i))
    }

    #[inline]
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self) -> R<V> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return self.err("unexpected end");
        };
        match c {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => {
                let (a, b, e) = self.string()?;
                Ok(V::Str(a, b, e))
            }
            b't' => self.literal(b"true", V::Bool),
            b'f' => self.literal(b"false", V::Bool),
            b'n' => self.literal(b"null", V::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => self.err("unexpected character"),
        }
    }

    fn literal(&mut self, word: &[u8], v: V) -> R<V> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("bad literal")
        }
    }

    fn enter(&mut self) -> R<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return self.err("nested too deeply");
        }
        self.i += 1;
        Ok(())
    }

    fn array(&mut self) -> R<V> {
        self.enter()?;
        let mut out = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            self.nesting -= 1;
            return Ok(V::Arr(out));
        }
        loop {
            out.push(self.value()?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.nesting -= 1;
                    return Ok(V::Arr(out));
                }
                _ => return self.err("expected ',' or ']'"),
            }
        }
    }

    fn object(&mut self) -> R<V> {
        self.enter()?;
        let mut out = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.nesting -= 1;
            return Ok(V::Obj(out));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return self.err("expected a key");
            }
            let (a, b, e) = self.string()?;
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return self.err("expected ':'");
            }
            self.i += 1;
            let v = self.value()?;
            out.push((a, b, e, v));
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.nesting -= 1;
                    return Ok(V::Obj(out));
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }

    /// At the opening quote; returns the content range and whether it has escapes.
    fn string(&mut self) -> R<(usize, usize, bool)> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok((start, self.i - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.s.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let hex = self.s.get(self.i + 2..self.i + 6);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return self.err("bad \\u escape");
                            }
                            self.i += 6;
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                0..=0x1f => return self.err("control character in string"),
                _ => self.i += 1,
            }
        }
        self.err("unterminated string")
    }

    fn number(&mut self) -> R<V> {
        let s = self.s;
        let start = self.i;
        let mut i = self.i;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        match s.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while s.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => {
                self.i = i;
                return self.err("bad number");
            }
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            let f = i;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == f {
                self.i = i;
                return self.err("bad number");
            }
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let e = i;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == e {
                self.i = i;
                return self.err("bad number");
            }
        }
        self.i = i;
        Ok(V::Num(start, i))
    }
}

fn parse_json(s: &[u8]) -> R<V> {
    if std::str::from_utf8(s).is_err() {
        return Err("invalid JSON: not UTF-8".into());
    }
    let mut sc = Scanner { s, i: 0, nesting: 0 };
    let v = sc.value()?;
    sc.ws();
    if sc.i != s.len() {
        return sc.err("trailing data");
    }
    Ok(v)
}

/// Plain (escape-free) text of a string or number value.
fn plain<'a>(s: &'a [u8], v: &V) -> Option<&'a [u8]> {
    match *v {
        V::Str(a, b, false) | V::Num(a, b) => Some(&s[a..b]),
        _ => None,
    }
}

fn get<'v>(s: &[u8], obj: &'v [(usize, usize, bool, V)], key: &[u8]) -> Option<&'v V> {
    // keys with escapes never match the plain ASCII keys Kraken uses
    obj.iter().find(|(a, b, e, _)| !e && &s[*a..*b] == key).map(|(_, _, _, v)| v)
}

fn has(s: &[u8], obj: &[(usize, usize, bool, V)], key: &[u8]) -> bool {
    get(s, obj, key).is_some()
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
    ns *= 1_000_000_000;
    let mut f: i64 = 0;
    for k in 0..9 {
        f = f * 10 + frac.get(k).map_or(0, |&c| i64::from(c - b'0'));
    }
    Some(ns + f)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// RFC 3339 UTC time ("2023-10-06T17:35:55.440295Z") -> ns since the epoch, exactly.
pub fn rfc3339_ns(t: &[u8]) -> Option<i64> {
    fn num(b: &[u8]) -> Option<i64> {
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(b.iter().fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0')))
    }
    if t.len() < 20 || t[4] != b'-' || t[7] != b'-' || !matches!(t[10], b'T' | b't' | b' ') || t[13] != b':' || t[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(&t[0..4])?, num(&t[5..7])?, num(&t[8..10])?);
    let (h, mi, s) = (num(&t[11..13])?, num(&t[14..16])?, num(&t[17..19])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    let mut frac: i64 = 0;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for k in 0..9 {
            frac = frac * 10 + rest.get(1 + k).filter(|_| k < n).map_or(0, |&c| i64::from(c - b'0'));
        }
        rest = &rest[1 + n..];
    }
    let offset = match rest {
        b"Z" | b"z" | b"+00:00" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let o = num(&[*h1, *h2])? * 3600 + num(&[*m1, *m2])? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset;
    Some(secs * 1_000_000_000 + frac)
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
        return ob.book.kraken_checksum();
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
    for &(p, a) in ob
        .book
        .asks
        .iter_best_first()
        .take(10)
        .chain(ob.book.bids.iter_best_first().take(10))
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
                    ob.book.kraken_checksum()
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
    match parse_frame(payload) {
        Ok(None) => Ok(None),
        Ok(Some(msgs)) => {
            let items = msgs
                .into_iter()
                .map(|m| Bound::new(py, m))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(Some(PyList::new(py, items)?))
        }
        Err(e) => Err(PyValueError::new_err(e)),
    }
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

/// RFC 3339 UTC time text -> ns since the epoch (ValueError when it is not one).
#[pyfunction]
fn rfc3339_to_ns(text: &str) -> PyResult<i64> {
    rfc3339_ns(text.as_bytes()).ok_or_else(|| PyValueError::new_err(format!("not an RFC 3339 time: {text:?}")))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<KrakenBook>()?;
    m.add_function(wrap_pyfunction!(parse_kraken_book, m)?)?;
    m.add_function(wrap_pyfunction!(kraken_wire_checksum, m)?)?;
    m.add_function(wrap_pyfunction!(rfc3339_to_ns, m)?)?;
    m.add("KRAKEN_APPLIED", APPLIED)?;
    m.add("KRAKEN_MISMATCH", MISMATCH)?;
    m.add("KRAKEN_PRECISION", PRECISION)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_times() {
        assert!(parse_json(b"[1,{\"a\":[\"1.0\"]},\"x\"]").is_ok());
        for bad in [&b"[1,"[..], b"{\"a\" 1}", b"[01]", b"[1.]", b"\"\\x\"", b"[1] x", b"\xff"] {
            assert!(parse_json(bad).is_err(), "{:?}", bad);
        }
        let deep = vec![b'['; 100];
        assert!(parse_json(&deep).is_err());
        assert_eq!(v1_ts_ns(b"1534614248.123678"), Some(1_534_614_248_123_678_000));
        assert_eq!(v1_ts_ns(b"12"), Some(12_000_000_000));
        assert_eq!(rfc3339_ns(b"1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(rfc3339_ns(b"2023-10-06T17:35:55.440295Z"), Some(1_696_613_755_440_295_000));
        assert_eq!(rfc3339_ns(b"2023-10-06T17:35:55Z"), Some(1_696_613_755_000_000_000));
        assert_eq!(rfc3339_ns(b"2023-10-06"), None);
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
}
