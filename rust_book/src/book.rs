//! Pure-Rust L2 book in integer ticks / lots (no Python types here).
//!
//! Each side is a `Ladder` (ladder.rs): (price_ticks, amount_lots) sorted so that the BEST level
//! is at the high end, with slack at both ends, so that updates at the touch, truncation to
//! depth and best-first snapshots each move only a few elements; the best level is O(1) and
//! iterating best-first is a reverse slice walk.

use crate::fixed::{push_fixed, push_kraken};
pub use crate::ladder::{Ladder, SideKind};

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

