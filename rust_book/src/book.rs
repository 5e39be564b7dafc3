//! Pure-Rust L2 book in integer ticks / lots (no Python types here).
//!
//! Each side is a Vec of (price_ticks, amount_lots) sorted so that the BEST level is at the END:
//! bids ascending by price, asks descending. Updates cluster at the touch, so inserting or
//! deleting near the end of the Vec moves only a few elements, the best level is `last()` (O(1)
//! top of book), and iterating best-first is a reverse slice walk. Truncating to depth drops
//! the worst levels from the front.

use crate::fixed::{push_fixed, push_kraken};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideKind {
    Bid,
    Ask,
}

#[derive(Clone, Debug)]
pub struct Ladder {
    kind: SideKind,
    /// Sorted worst -> best; best is `levels.last()`.
    levels: Vec<(i64, i64)>,
}

impl Ladder {
    pub fn new(kind: SideKind) -> Self {
        Ladder {
            kind,
            levels: Vec::new(),
        }
    }

    /// True when price `a` is strictly better than price `b` on this side.
    #[inline]
    fn better(&self, a: i64, b: i64) -> bool {
        match self.kind {
            SideKind::Bid => a > b,
            SideKind::Ask => a < b,
        }
    }

    /// Position of `price` in the worst -> best order.
    #[inline]
    fn search(&self, price: i64) -> Result<usize, usize> {
        // changes cluster near the touch (the end): scan the last few levels before bisecting
        if let Some(r) = crate::ladder::scan_from_best(&self.levels, price, self.kind == SideKind::Ask) {
            return r;
        }
        match self.kind {
            SideKind::Bid => self.levels.binary_search_by(|l| l.0.cmp(&price)),
            SideKind::Ask => self.levels.binary_search_by(|l| price.cmp(&l.0)),
        }
    }

    /// Upsert (amount > 0) or delete (amount == 0; absent level is a no-op).
    #[inline]
    pub fn set(&mut self, price: i64, amount: i64) {
        // fast path: at or beyond the touch
        if let Some(best) = self.levels.last_mut() {
            if best.0 == price {
                if amount == 0 {
                    self.levels.pop();
                } else {
                    best.1 = amount;
                }
                return;
            }
            let best_price = best.0;
            if self.better(price, best_price) {
                if amount != 0 {
                    self.levels.push((price, amount));
                }
                return;
            }
        } else {
            if amount != 0 {
                self.levels.push((price, amount));
            }
            return;
        }
        match self.search(price) {
            Ok(i) => {
                if amount == 0 {
                    self.levels.remove(i);
                } else {
                    self.levels[i].1 = amount;
                }
            }
            Err(i) => {
                if amount != 0 {
                    self.levels.insert(i, (price, amount));
                }
            }
        }
    }

    #[inline]
    pub fn best(&self) -> Option<(i64, i64)> {
        self.levels.last().copied()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    pub fn clear(&mut self) {
        self.levels.clear();
    }

    /// Keep only the best `depth` levels (0 = unbounded).
    #[inline]
    pub fn truncate(&mut self, depth: usize) {
        if depth > 0 && self.levels.len() > depth {
            let extra = self.levels.len() - depth;
            self.levels.drain(..extra);
        }
    }

    /// Levels best first.
    #[inline]
    pub fn iter_best_first(&self) -> impl Iterator<Item = &(i64, i64)> + '_ {
        self.levels.iter().rev()
    }

    pub fn top_n(&self, n: Option<usize>) -> Vec<(i64, i64)> {
        let n = n.unwrap_or(usize::MAX).min(self.levels.len());
        self.levels.iter().rev().take(n).copied().collect()
    }
}

#[derive(Clone, Debug)]
pub struct Book {
    pub bids: Ladder,
    pub asks: Ladder,
    pub depth: usize,
}

impl Book {
    pub fn new(depth: usize) -> Self {
        Book {
            bids: Ladder::new(SideKind::Bid),
            asks: Ladder::new(SideKind::Ask),
            depth,
        }
    }

    #[inline]
    pub fn side_mut(&mut self, ask: bool) -> &mut Ladder {
        if ask {
            &mut self.asks
        } else {
            &mut self.bids
        }
    }

    #[inline]
    pub fn side(&self, ask: bool) -> &Ladder {
        if ask {
            &self.asks
        } else {
            &self.bids
        }
    }

    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    #[inline]
    pub fn truncate(&mut self) {
        self.bids.truncate(self.depth);
        self.asks.truncate(self.depth);
    }

    pub fn crossed(&self) -> bool {
        match (self.bids.best(), self.asks.best()) {
            (Some(b), Some(a)) => b.0 >= a.0,
            _ => false,
        }
    }

    /// Mock venue checksum: CRC-32 of `<price>:<amount>;` for every ask ascending then every
    /// bid descending, both at fixed precision.
    pub fn mock_checksum(&self, price_precision: u32, amount_precision: u32) -> u32 {
        const FLUSH: usize = 8192;
        let mut hasher = crc32fast::Hasher::new();
        let mut buf: Vec<u8> = Vec::with_capacity(FLUSH + 128);
        for &(p, a) in self.asks.iter_best_first().chain(self.bids.iter_best_first()) {
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

    /// Kraken checksum: top 10 asks ascending then top 10 bids descending, each price and qty
    /// as fixed-precision text with "." removed and leading zeros stripped (= mantissa digits).
    pub fn kraken_checksum(&self) -> u32 {
        let mut buf: Vec<u8> = Vec::with_capacity(20 * 40);
        for &(p, a) in self
            .asks
            .iter_best_first()
            .take(10)
            .chain(self.bids.iter_best_first().take(10))
        {
            push_kraken(&mut buf, p);
            push_kraken(&mut buf, a);
        }
        crc32fast::hash(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_order() {
        let mut b = Book::new(2);
        b.bids.set(100, 1);
        b.bids.set(102, 1);
        b.bids.set(101, 1);
        b.asks.set(105, 1);
        b.asks.set(103, 1);
        b.asks.set(104, 1);
        assert_eq!(b.bids.top_n(None), vec![(102, 1), (101, 1), (100, 1)]);
        assert_eq!(b.asks.top_n(None), vec![(103, 1), (104, 1), (105, 1)]);
        b.truncate();
        assert_eq!(b.bids.top_n(None), vec![(102, 1), (101, 1)]);
        assert_eq!(b.asks.top_n(None), vec![(103, 1), (104, 1)]);
        b.bids.set(101, 0);
        b.bids.set(99, 0);
        assert_eq!(b.bids.top_n(None), vec![(102, 1)]);
        assert!(!b.crossed());
        b.bids.set(103, 5);
        assert!(b.crossed());
    }
}

