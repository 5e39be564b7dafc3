//! One side of the L2 book: a dense tick window around the touch, an ordered ladder behind it.
//!
//! Prices are compared through `key = price ^ mask` (mask 0 for bids, all ones for asks, an
//! order-reversing bijection on i64), so on both sides a larger key is a better level.
//!
//! - The **window** holds every level whose key lies in `base .. base + width`: the amount at
//!   `amt[key - base]` (0 = no level) and one occupancy bit per tick. An update there is a store,
//!   a bit flip and a max for the best: no search, no shifting, no data-dependent branch except
//!   when the best level itself is deleted (then the bitmap is scanned downwards, usually within
//!   one word because the next level is a tick or two away).
//! - The **far** ladder (`Ladder`, a sorted gap buffer) holds the levels worse than the window
//!   (`key < base`). Invariant: every far level is worse than every window level.
//! - Nothing is ever better than the window: a level above it moves the window up (levels that
//!   fall off its low end go to the far ladder, at its best end); when the touch sinks to the
//!   low eighth of the window (or the window empties while far levels remain), the window moves
//!   down and takes the far ladder's best levels back. After a move the touch sits at three
//!   quarters of the window, so moves are rare (the touch must travel more than half a window).
//!
//! Why: on the pinned workload of `lab bench book` (depth 1000, changes geometric around the
//! touch, 1 or 2 ticks between levels) the whole book fits the window, and the sorted-array
//! ladder alone spent most of its time locating and shifting levels. A venue whose levels are
//! far apart in ticks degrades gracefully: the levels near the touch are in the window, the
//! rest in the ladder.

use crate::ladder::Ladder;
pub use crate::ladder::SideKind;

/// Ticks covered by the window of a new side.
pub const WINDOW: usize = 4096;

#[derive(Clone, Debug)]
pub struct Side {
    /// 0 for bids, -1 (all ones) for asks.
    mask: i64,
    /// Key of window slot 0.
    base: i64,
    /// Window slots (a power of two, a multiple of 64); 0 until the first level arrives.
    width: usize,
    /// Amount per window slot, 0 where there is no level (`width` entries once allocated).
    amt: Vec<i64>,
    /// One occupancy bit per window slot.
    bits: Vec<u64>,
    /// Levels in the window.
    count: usize,
    /// Slot of the best window level, -1 when the window is empty.
    best: isize,
    far: Ladder,
    /// Window width to allocate (WINDOW, smaller in tests to exercise the moves).
    want_width: usize,
    scratch: Vec<(i64, i64)>,
}

/// Mask of the bits 0..=b of a word.
#[inline(always)]
fn up_to(b: usize) -> u64 {
    u64::MAX >> (63 - b)
}

impl Side {
    pub fn new(kind: SideKind) -> Self {
        Side::with_window(kind, WINDOW)
    }

    /// A side whose window covers `width` ticks (a power of two, at least 64).
    pub fn with_window(kind: SideKind, width: usize) -> Self {
        assert!(width >= 64 && width.is_power_of_two());
        Side {
            mask: match kind {
                SideKind::Bid => 0,
                SideKind::Ask => -1,
            },
            base: 0,
            width: 0,
            amt: Vec::new(),
            bits: Vec::new(),
            count: 0,
            best: -1,
            far: Ladder::new(kind),
            want_width: width,
            scratch: Vec::new(),
        }
    }

    #[inline(always)]
    fn price_at(&self, slot: usize) -> i64 {
        (self.base + slot as i64) ^ self.mask
    }

    /// Upsert (amount != 0) or delete (amount == 0; deleting an absent level is a no-op).
    #[inline(always)]
    pub fn set(&mut self, price: i64, amount: i64) {
        let k = price ^ self.mask;
        // One unsigned compare: a key below base wraps to at least width, because base is at
        // most i64::MAX - width + 1 (`base_for`), so base - k <= 2^64 - width.
        let off = (k as u64).wrapping_sub(self.base as u64);
        if off < self.width as u64 {
            self.set_slot(off as usize, amount);
        } else {
            self.set_outside(price, k, amount);
        }
    }

    #[inline(always)]
    fn set_slot(&mut self, slot: usize, amount: i64) {
        debug_assert!(slot < self.width);
        let word = slot >> 6;
        let bit = 1u64 << (slot & 63);
        let present = amount != 0;
        // SAFETY: slot < width == amt.len() and word < width / 64 == bits.len() (the caller
        // checked slot against width; both vectors are allocated with width together).
        unsafe {
            let old = std::mem::replace(self.amt.get_unchecked_mut(slot), amount);
            let w = self.bits.get_unchecked_mut(word);
            *w = (*w & !bit) | (bit * present as u64);
            self.count = self.count + present as usize - (old != 0) as usize;
        }
        // branch-free for upserts (the kind of change is random per row): a delete offers -1
        // as best, which max ignores
        let gone = (!present as usize).wrapping_neg(); // all ones for a delete
        let s = (slot | gone) as isize;
        let b = self.best;
        self.best = if s > b { s } else { b };
        // one branch, taken only when the best level itself was deleted
        if ((slot as isize) ^ self.best) | present as isize == 0 {
            self.best_deleted();
        }
    }

    /// The best window level was deleted: find the next one below it.
    #[inline(never)]
    fn best_deleted(&mut self) {
        let b = self.best as usize;
        let mut w = b >> 6;
        let mut word = self.bits[w] & up_to(b & 63);
        self.best = loop {
            if word != 0 {
                break (w * 64 + 63 - word.leading_zeros() as usize) as isize;
            }
            if w == 0 {
                break -1;
            }
            w -= 1;
            word = self.bits[w];
        };
        if (self.best < (self.width / 8) as isize) && !self.far.is_empty() {
            self.move_down();
        }
    }

    #[cold]
    #[inline(never)]
    fn set_outside(&mut self, price: i64, k: i64, amount: i64) {
        if self.count == 0 && self.far.is_empty() {
            if amount != 0 {
                self.start_at(k);
                let slot = (k as u64).wrapping_sub(self.base as u64) as usize;
                self.set_slot(slot, amount);
            }
            return;
        }
        if k < self.base {
            self.far.set(price, amount);
            if self.count == 0 && !self.far.is_empty() {
                self.move_down();
            }
            return;
        }
        // better than the whole window
        if amount != 0 {
            let new_base = self.base_for(k);
            self.rebase(new_base);
            let slot = (k as u64).wrapping_sub(self.base as u64) as usize;
            self.set_slot(slot, amount);
        }
    }

    /// Window base that puts key `k` at three quarters of the window, clamped so that the
    /// window's keys stay inside i64.
    fn base_for(&self, k: i64) -> i64 {
        let w = self.width as i64;
        k.saturating_sub(3 * w / 4).min(i64::MAX - w + 1)
    }

    /// Empty side: (allocate and) place the window around key `k`.
    fn start_at(&mut self, k: i64) {
        if self.width == 0 {
            self.width = self.want_width;
            self.amt = vec![0; self.width];
            self.bits = vec![0; self.width / 64];
        }
        self.base = self.base_for(k);
    }

    /// The touch sank low in the window (or the window emptied): move the window down so that
    /// the best level sits at three quarters of it, taking the far ladder's best levels in.
    fn move_down(&mut self) {
        let best_key = if self.best >= 0 {
            self.base + self.best as i64
        } else {
            match self.far.best() {
                Some((p, _)) => p ^ self.mask,
                None => return,
            }
        };
        let new_base = self.base_for(best_key);
        if new_base < self.base {
            self.rebase(new_base);
        }
    }

    /// Move the window to `new_base`: window levels below it go to the far ladder, far levels
    /// at or above it come in. No level may lie at or above `new_base + width`.
    #[cold]
    #[inline(never)]
    fn rebase(&mut self, new_base: i64) {
        let mut levels = std::mem::take(&mut self.scratch);
        levels.clear();
        // window levels, worst first (ascending key)
        for w in 0..self.bits.len() {
            let mut word = self.bits[w];
            while word != 0 {
                let slot = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                levels.push((self.base + slot as i64, self.amt[slot]));
                self.amt[slot] = 0;
            }
            self.bits[w] = 0;
        }
        self.base = new_base;
        self.count = 0;
        self.best = -1;
        for &(k, a) in &levels {
            if k < new_base {
                // better than every far level: appended at the far ladder's best end
                self.far.set(k ^ self.mask, a);
            } else {
                let slot = (k as u64).wrapping_sub(new_base as u64) as usize;
                self.set_slot(slot, a);
            }
        }
        while let Some((p, a)) = self.far.best() {
            let k = p ^ self.mask;
            if k < new_base {
                break;
            }
            self.far.pop_best();
            let slot = (k as u64).wrapping_sub(new_base as u64) as usize;
            self.set_slot(slot, a);
        }
        self.scratch = levels;
    }

    #[inline]
    pub fn best(&self) -> Option<(i64, i64)> {
        if self.best >= 0 {
            let s = self.best as usize;
            Some((self.price_at(s), self.amt[s]))
        } else {
            self.far.best()
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.count + self.far.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        if self.count > 0 {
            for w in 0..self.bits.len() {
                let mut word = self.bits[w];
                while word != 0 {
                    self.amt[w * 64 + word.trailing_zeros() as usize] = 0;
                    word &= word - 1;
                }
                self.bits[w] = 0;
            }
        }
        self.count = 0;
        self.best = -1;
        self.far.clear();
    }

    /// Keep only the best `depth` levels (0 = unbounded).
    #[inline]
    pub fn truncate(&mut self, depth: usize) {
        if depth == 0 || self.len() <= depth {
            return;
        }
        if self.count < depth {
            self.far.truncate(depth - self.count);
        } else {
            self.far.clear();
            self.drop_worst(self.count - depth);
        }
    }

    /// Remove the `n` worst window levels (n < count).
    #[inline(never)]
    fn drop_worst(&mut self, mut n: usize) {
        let mut w = 0;
        while n > 0 {
            let word = self.bits[w];
            if word == 0 {
                w += 1;
                continue;
            }
            let slot = w * 64 + word.trailing_zeros() as usize;
            self.bits[w] = word & (word - 1);
            self.amt[slot] = 0;
            self.count -= 1;
            n -= 1;
        }
    }

    /// Levels best first, as (price, amount).
    #[inline]
    pub fn iter_best_first(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let (w, word) = if self.best >= 0 {
            let b = self.best as usize;
            (b >> 6, self.bits[b >> 6] & up_to(b & 63))
        } else {
            (0, 0)
        };
        WindowIter {
            side: self,
            w,
            word,
        }
        .chain(self.far.iter_best_first().copied())
    }

    pub fn top_n(&self, n: Option<usize>) -> Vec<(i64, i64)> {
        let n = n.unwrap_or(usize::MAX).min(self.len());
        self.iter_best_first().take(n).collect()
    }
}

/// Window levels best first: a walk down the occupancy bitmap.
struct WindowIter<'a> {
    side: &'a Side,
    /// Current word and its bits not yet returned.
    w: usize,
    word: u64,
}

impl Iterator for WindowIter<'_> {
    type Item = (i64, i64);

    #[inline]
    fn next(&mut self) -> Option<(i64, i64)> {
        while self.word == 0 {
            if self.w == 0 || self.side.best < 0 {
                return None;
            }
            self.w -= 1;
            self.word = self.side.bits[self.w];
        }
        let b = 63 - self.word.leading_zeros() as usize;
        self.word &= !(1u64 << b);
        let slot = self.w * 64 + b;
        Some((self.side.price_at(slot), self.side.amt[slot]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::rng::Rng;

    fn check(s: &Side, m: &BTreeMap<i64, i64>, ask: bool) {
        let want: Vec<(i64, i64)> = if ask {
            m.iter().map(|(&p, &a)| (p, a)).collect()
        } else {
            m.iter().rev().map(|(&p, &a)| (p, a)).collect()
        };
        assert_eq!(s.top_n(None), want);
        assert_eq!(s.best(), want.first().copied());
        assert_eq!(s.len(), want.len());
    }

    /// Random upserts, deletes (also of absent levels), truncations, clears, best-first and
    /// worst-first snapshots and a drifting touch against a BTreeMap, on both sides, with a
    /// small window so that levels move between window and far ladder all the time, and
    /// extreme prices.
    #[test]
    fn matches_btreemap() {
        for (seed, ask, width) in [(1u64, false, 64usize), (2, true, 64), (3, false, 256), (4, true, 4096)] {
            let mut r = Rng(seed);
            let mut s = Side::with_window(if ask { SideKind::Ask } else { SideKind::Bid }, width);
            let mut m: BTreeMap<i64, i64> = BTreeMap::new();
            let mut centre: i64 = 10_000;
            let depth = 60usize;
            for step in 0..300_000u64 {
                if step % 500 == 0 {
                    // the touch drifts, sometimes far
                    let jump = if r.next() % 10 == 0 { 5000 } else { 40 };
                    centre += (r.next() % (2 * jump + 1)) as i64 - jump as i64;
                }
                let op = r.next() % 1000;
                if op == 0 {
                    s.clear();
                    m.clear();
                    let n = (r.next() % 80) as i64;
                    let gap = 1 + (r.next() % 5) as i64;
                    let worst_first = r.next() & 1 == 0;
                    for j in 0..n {
                        let j = if worst_first { n - 1 - j } else { j };
                        let p = if ask { centre + gap * j } else { centre - gap * j };
                        s.set(p, j + 1);
                        m.insert(p, j + 1);
                    }
                } else {
                    let span = if step % 7 == 0 { 2000 } else { 30 };
                    let mut p = centre + (r.next() % span) as i64 - (span / 2) as i64;
                    if r.next() % 5000 == 0 {
                        p = if r.next() & 1 == 0 { i64::MIN } else { i64::MAX };
                    }
                    let a = if r.next() % 4 == 0 { 0 } else { (r.next() % 100 + 1) as i64 };
                    s.set(p, a);
                    if a == 0 {
                        m.remove(&p);
                    } else {
                        m.insert(p, a);
                    }
                }
                if op % 3 == 0 {
                    let d = if op % 2 == 0 { depth } else { 1 + (r.next() % 100) as usize };
                    s.truncate(d);
                    while m.len() > d {
                        if ask {
                            m.pop_last();
                        } else {
                            m.pop_first();
                        }
                    }
                }
                if step % 89 == 0 {
                    check(&s, &m, ask);
                }
            }
            check(&s, &m, ask);
        }
    }

    /// Deleting down through the window hands the touch over to the far ladder and back.
    #[test]
    fn touch_walks_through_far_levels() {
        let mut s = Side::with_window(SideKind::Bid, 64);
        for p in (0..1000).rev() {
            s.set(p * 3, p + 1);
        }
        assert_eq!(s.len(), 1000);
        for p in (0..1000).rev() {
            assert_eq!(s.best(), Some((p * 3, p + 1)));
            s.set(p * 3, 0);
        }
        assert!(s.is_empty());
        assert_eq!(s.best(), None);
    }
}
