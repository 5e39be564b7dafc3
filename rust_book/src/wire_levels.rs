//! A book message's levels as exact wire text, shared by the venues whose frames list levels as
//! `[[price, amount], ...]` string pairs (Binance, mock): where each level's text sits in the
//! frame, parsed at an instrument's precisions once (`check`, as the venue's reference path
//! validates them) and applied to a `Book`.

use std::borrow::Cow;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::book::Book;
use crate::fixed;
use crate::json::{R, V};

pub struct Level {
    pub side: u8,
    pub price: (usize, usize),
    pub amount: (usize, usize),
}

/// Append the `[[price, amount], ...]` levels of one side (exactly two plain strings each;
/// `amount` names the second in errors); the number of levels.
pub fn levels_of(v: Option<&V>, side: u8, out: &mut Vec<Level>, what: &str, amount: &str) -> R<usize> {
    let Some(V::Arr(items)) = v else {
        return Err(format!("{what} is not a list"));
    };
    for item in items {
        let V::Arr(f) = item else {
            return Err(format!("a {what} level is not a list"));
        };
        let [V::Str(a, b, false), V::Str(c, d, false)] = &f[..] else {
            return Err(format!("a {what} level is not [price, {amount}] strings"));
        };
        out.push(Level { side, price: (*a, *b), amount: (*c, *d) });
    }
    Ok(items.len())
}

/// The frame's bytes and its levels (bids first, then asks, each in wire order).
pub struct WireLevels {
    pub payload: Vec<u8>,
    pub levels: Vec<Level>,
    /// the levels parsed at `parsed_at` precisions by `check`
    parsed: Vec<(u8, i64, i64)>,
    parsed_at: Option<(u32, u32)>,
}

impl WireLevels {
    pub fn new(payload: &[u8], levels: Vec<Level>) -> Self {
        WireLevels { payload: payload.to_vec(), levels, parsed: Vec::new(), parsed_at: None }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// (side 0 bid / 1 ask, price text, amount text) of each level (tests).
    pub fn texts(&self) -> Vec<(u8, String, String)> {
        let t = |r: (usize, usize)| String::from_utf8_lossy(&self.payload[r.0..r.1]).into_owned();
        self.levels.iter().map(|l| (l.side, t(l.price), t(l.amount))).collect()
    }

    /// The levels at the precisions, with `OrderBook.apply_wire_message`'s errors (a price or
    /// amount that is not exact there, a negative amount); `strict` also refuses a negative price.
    fn parse(&self, pp: u32, ap: u32, strict: bool) -> R<Vec<(u8, i64, i64)>> {
        let mut out = Vec::with_capacity(self.levels.len());
        for l in &self.levels {
            let (pt, at) = (&self.payload[l.price.0..l.price.1], &self.payload[l.amount.0..l.amount.1]);
            let p = fixed::parse_fixed(pt, pp).map_err(|e| e.message(&String::from_utf8_lossy(pt), pp))?;
            let a = fixed::parse_fixed(at, ap).map_err(|e| e.message(&String::from_utf8_lossy(at), ap))?;
            if a < 0 {
                return Err(format!("amount_lots must be >= 0, got {a}"));
            }
            if strict && p < 0 {
                return Err(format!("price_ticks must be >= 0, got {p}"));
            }
            out.push((l.side, p, a));
        }
        Ok(out)
    }

    /// Validate every level at the precisions and keep them for `at`: None when the message can
    /// be applied, else the reason. ValueError for precisions out of range.
    pub fn check(&mut self, pp: u32, ap: u32, strict: bool) -> PyResult<Option<String>> {
        check_precisions(pp, ap)?;
        if self.parsed_at == Some((pp, ap)) {
            return Ok(None);
        }
        match self.parse(pp, ap, strict) {
            Ok(p) => {
                self.parsed = p;
                self.parsed_at = Some((pp, ap));
                Ok(None)
            }
            Err(e) => Ok(Some(e)),
        }
    }

    /// The levels at the precisions: those `check` kept, else parsed now (ValueError with the
    /// reason).
    pub fn at(&self, pp: u32, ap: u32) -> PyResult<Cow<'_, [(u8, i64, i64)]>> {
        if self.parsed_at == Some((pp, ap)) {
            return Ok(Cow::Borrowed(&self.parsed));
        }
        self.parse(pp, ap, false).map(Cow::Owned).map_err(PyValueError::new_err)
    }
}

/// ValueError for precisions beyond what `fixed` parses.
pub fn check_precisions(pp: u32, ap: u32) -> PyResult<()> {
    if pp > fixed::MAX_PRECISION || ap > fixed::MAX_PRECISION {
        return Err(PyValueError::new_err(format!(
            "precisions must be between 0 and {}, got {pp} / {ap}",
            fixed::MAX_PRECISION
        )));
    }
    Ok(())
}

/// A message's levels applied to `book`: a snapshot clears it first; levels in order; truncate.
pub fn apply_levels(book: &mut Book, levels: &[(u8, i64, i64)], snapshot: bool) {
    if snapshot {
        book.clear();
    }
    for &(s, p, a) in levels {
        book.side_mut(s == 1).set(p, a);
    }
    book.truncate();
}
