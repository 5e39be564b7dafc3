//! Pure-Rust L2 book in integer ticks / lots (no Python types here).
//!
//! Each side is a `Side` (side.rs): a dense tick window around the touch (O(1) updates, O(1)
//! best level) with an ordered ladder (ladder.rs) for the levels behind it. Checksums are the
//! venues' (checksum.rs, mock.rs, kraken.rs).

pub use crate::side::{Side, SideKind, WINDOW};

#[derive(Clone, Debug)]
pub struct Book {
    /// Bids then asks, indexed by the dataset's side code (0 bid, 1 ask): picking the side of
    /// a row is then an address computation, not a branch or one select per field.
    pub sides: [Side; 2],
    pub depth: usize,
}

/// Window width (ticks) for a book truncated to `depth` levels (0 = unbounded): 8 ticks per
/// level covers the whole book while levels are up to 6 ticks apart, and keeps small books small
/// (`copy()` of a depth-10 book clones 2 KiB, not 2 x 32 KiB).
pub fn window_for(depth: usize) -> usize {
    if depth == 0 {
        WINDOW
    } else {
        (depth.saturating_mul(8)).next_power_of_two().clamp(256, WINDOW)
    }
}

impl Book {
    pub fn new(depth: usize) -> Self {
        Book {
            sides: [
                Side::with_window(SideKind::Bid, window_for(depth)),
                Side::with_window(SideKind::Ask, window_for(depth)),
            ],
            depth,
        }
    }

    #[inline]
    pub fn side_mut(&mut self, ask: bool) -> &mut Side {
        &mut self.sides[ask as usize]
    }

    #[inline]
    pub fn side(&self, ask: bool) -> &Side {
        &self.sides[ask as usize]
    }

    #[inline]
    pub fn bids(&self) -> &Side {
        &self.sides[0]
    }

    #[inline]
    pub fn asks(&self) -> &Side {
        &self.sides[1]
    }

    pub fn clear(&mut self) {
        self.sides[0].clear();
        self.sides[1].clear();
    }

    #[inline]
    pub fn truncate(&mut self) {
        self.sides[0].truncate(self.depth);
        self.sides[1].truncate(self.depth);
    }

    pub fn crossed(&self) -> bool {
        match (self.bids().best(), self.asks().best()) {
            (Some(b), Some(a)) => b.0 >= a.0,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_order() {
        let mut b = Book::new(2);
        b.side_mut(false).set(100, 1);
        b.side_mut(false).set(102, 1);
        b.side_mut(false).set(101, 1);
        b.side_mut(true).set(105, 1);
        b.side_mut(true).set(103, 1);
        b.side_mut(true).set(104, 1);
        assert_eq!(b.bids().top_n(None), vec![(102, 1), (101, 1), (100, 1)]);
        assert_eq!(b.asks().top_n(None), vec![(103, 1), (104, 1), (105, 1)]);
        b.truncate();
        assert_eq!(b.bids().top_n(None), vec![(102, 1), (101, 1)]);
        assert_eq!(b.asks().top_n(None), vec![(103, 1), (104, 1)]);
        b.side_mut(false).set(101, 0);
        b.side_mut(false).set(99, 0);
        assert_eq!(b.bids().top_n(None), vec![(102, 1)]);
        assert!(!b.crossed());
        b.side_mut(false).set(103, 5);
        assert!(b.crossed());
    }
}

