//! Hot top-of-book helpers for the sorted-Vec ladder of `book.rs` (best level at the end).
//!
//! Changes cluster near the touch (the pinned workload: distance from the touch geometric with
//! median 3 levels), so the position of a price is found by a short backward scan from the best
//! level; only prices further away fall back to binary search.

/// How many levels from the touch the backward scan covers before giving up.
pub const SCAN: usize = 16;

/// Position of `price` in `levels` (sorted worst -> best: ascending for bids, descending for
/// asks) when it lies within the `SCAN` levels nearest the touch: `Ok(i)` if present, `Err(i)`
/// for the insertion point. `None` when it is further away (the caller bisects).
#[inline(always)]
pub fn scan_from_best(levels: &[(i64, i64)], price: i64, ask: bool) -> Option<Result<usize, usize>> {
    let n = levels.len();
    let lo = n.saturating_sub(SCAN);
    let mut i = n;
    // `worse(x)`: level price x is worse than `price` on this side
    if ask {
        while i > lo {
            let p = levels[i - 1].0;
            if p == price {
                return Some(Ok(i - 1));
            }
            if p > price {
                return Some(Err(i));
            }
            i -= 1;
        }
    } else {
        while i > lo {
            let p = levels[i - 1].0;
            if p == price {
                return Some(Ok(i - 1));
            }
            if p < price {
                return Some(Err(i));
            }
            i -= 1;
        }
    }
    if lo == 0 {
        Some(Err(0))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_matches_binary_search() {
        let bids: Vec<(i64, i64)> = (0..40).map(|k| (2 * k, 1)).collect(); // ascending
        let asks: Vec<(i64, i64)> = (0..40).rev().map(|k| (2 * k, 1)).collect(); // descending
        for price in -3..85 {
            let want = bids.binary_search_by(|l| l.0.cmp(&price));
            if let Some(got) = scan_from_best(&bids, price, false) {
                assert_eq!(got, want, "bid {price}");
            } else {
                assert!(matches!(want, Ok(i) | Err(i) if i < 40 - SCAN + 1));
            }
            let want = asks.binary_search_by(|l| price.cmp(&l.0));
            if let Some(got) = scan_from_best(&asks, price, true) {
                assert_eq!(got, want, "ask {price}");
            }
        }
        assert_eq!(scan_from_best(&bids[..3], -10, false), Some(Err(0)));
        assert_eq!(scan_from_best(&[], 5, true), Some(Err(0)));
    }
}

