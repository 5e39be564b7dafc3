//! One side of the L2 book: a sorted array with slack at BOTH ends (a double-ended gap buffer),
//! best level at the high end.
//!
//! Why this shape (profiled on the pinned workload of `lab bench book`, depth 1000):
//! - changes cluster near the touch (distance geometric, median 3 levels), so the best level is
//!   kept at the high end: inserting or deleting there moves a handful of elements;
//! - truncating to the subscribed depth drops the WORST levels, and snapshots arrive best-first
//!   (every row is worse than the previous one): with a plain Vec both move the whole side
//!   (about 20 % of rebuild time went to memmove). Here both only move the low end `lo`;
//! - the position of a price near the touch is found without data-dependent branches: a count
//!   of how many of the 16 levels nearest the touch are better (the scan with an early exit
//!   mispredicted on most rows; AVX2 when the CPU has it); only prices further away are
//!   bisected. Near the touch, insert / update / delete are one branch-free 16-slot shift.
//!
//! Prices are compared through `key = price ^ mask` (mask 0 for bids, all ones for asks, an
//! order-reversing bijection on i64), so both sides are "ascending by key, best at the end"
//! with no branch on the side.

/// How many levels from the touch the branch-free count covers before bisecting.
pub const SCAN: usize = 16;
/// Free slots kept past `hi` so that the fixed-size window moves near the touch never run off
/// the storage.
const TAIL: usize = SCAN + 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideKind {
    Bid,
    Ask,
}

#[derive(Clone, Debug)]
pub struct Ladder {
    /// 0 for bids, -1 (all ones) for asks: `key(p) = p ^ mask` ascends from worst to best.
    mask: i64,
    /// Storage; the levels are `buf[lo..hi]`, sorted worst -> best by key. `buf.len()` is the
    /// capacity (slots outside `lo..hi` hold stale values).
    buf: Vec<(i64, i64)>,
    lo: usize,
    hi: usize,
}

/// How many levels of `w` have a key (`price ^ mask`) greater than `k`, without a branch:
/// AVX2 when the CPU has it (checked at run time, cached), else scalar.
#[inline(always)]
fn count_better(w: &[(i64, i64); SCAN], mask: i64, k: i64) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected just above.
            return unsafe { count_better_avx2(w, mask, k) };
        }
    }
    let mut c = 0usize;
    for l in w {
        c += ((l.0 ^ mask) > k) as usize;
    }
    c
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn count_better_avx2(w: &[(i64, i64); SCAN], mask: i64, k: i64) -> usize {
    use std::arch::x86_64::*;
    let p = w.as_ptr() as *const __m256i; // 2 levels (price, amount) per vector
    let mv = _mm256_set1_epi64x(mask);
    let kv = _mm256_set1_epi64x(k);
    // each compare gives -1 per better level: add them up lane-wise, then across lanes
    let mut acc = _mm256_setzero_si256();
    for j in 0..SCAN / 4 {
        // SAFETY (caller): vectors 2 j and 2 j + 1 (32 bytes each) lie inside `w`
        let a = _mm256_loadu_si256(p.add(2 * j));
        let b = _mm256_loadu_si256(p.add(2 * j + 1));
        let prices = _mm256_unpacklo_epi64(a, b); // 4 prices (order irrelevant to a count)
        let gt = _mm256_cmpgt_epi64(_mm256_xor_si256(prices, mv), kv);
        acc = _mm256_add_epi64(acc, gt);
    }
    let s = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256::<1>(acc));
    let s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    (-_mm_cvtsi128_si64(s)) as usize
}

/// Copy SCAN slots from `buf[src..]` to `buf[dst..]` (overlapping allowed), every load before
/// any store, in registers: LLVM turns a plain 256-byte copy into a memmove call, which cost
/// more than the move itself. `src == dst` is a no-op copy.
#[inline(always)]
fn shift_window(buf: &mut [(i64, i64)], src: usize, dst: usize) {
    assert!(src.max(dst) + SCAN <= buf.len());
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_storeu_si128};
        // SAFETY: SSE2 is part of x86_64; src + k and dst + k < buf.len() (asserted above).
        unsafe {
            let p = buf.as_mut_ptr() as *mut __m128i;
            let mut r = [std::mem::zeroed::<__m128i>(); SCAN];
            for (k, x) in r.iter_mut().enumerate() {
                *x = _mm_loadu_si128(p.add(src + k));
            }
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
            for (k, x) in r.iter().enumerate() {
                _mm_storeu_si128(p.add(dst + k), *x);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        buf.copy_within(src..src + SCAN, dst);
    }
}

/// Where a price sits in `buf`: `Ok(i)` present at physical index i, `Err(i)` to be inserted
/// before physical index i.
type Pos = Result<usize, usize>;

impl Ladder {
    pub fn new(kind: SideKind) -> Self {
        Ladder {
            mask: match kind {
                SideKind::Bid => 0,
                SideKind::Ask => -1,
            },
            buf: Vec::new(),
            lo: 0,
            hi: 0,
        }
    }

    #[inline(always)]
    fn key(&self, price: i64) -> i64 {
        price ^ self.mask
    }

    #[inline(always)]
    fn levels(&self) -> &[(i64, i64)] {
        &self.buf[self.lo..self.hi]
    }

    /// Position of the key `k` (physical index).
    #[inline(always)]
    fn search(&self, k: i64) -> Pos {
        let (lo, hi) = (self.lo, self.hi);
        let len = hi - lo;
        let cnt = if len >= SCAN {
            // number of the SCAN levels nearest the touch that are better than k, branch-free
            let w: &[(i64, i64); SCAN] = self.buf[hi - SCAN..hi].try_into().unwrap();
            let c = count_better(w, self.mask, k);
            if c == SCAN {
                return self.bisect(k);
            }
            c
        } else {
            let mut c = 0usize;
            for l in &self.buf[lo..hi] {
                c += ((l.0 ^ self.mask) > k) as usize;
            }
            c
        };
        let i = hi - cnt;
        if i > lo && (self.buf[i - 1].0 ^ self.mask) == k {
            Ok(i - 1)
        } else {
            Err(i)
        }
    }

    /// Search among the levels further than SCAN from the touch.
    #[cold]
    #[inline(never)]
    fn bisect(&self, k: i64) -> Pos {
        let lo = self.lo;
        // worse than the worst level: the snapshot (best-first) and far-from-touch case
        if k < (self.buf[lo].0 ^ self.mask) {
            return Err(lo);
        }
        let far = &self.buf[lo..self.hi - SCAN];
        let mask = self.mask;
        match far.binary_search_by(|l| (l.0 ^ mask).cmp(&k)) {
            Ok(i) => Ok(lo + i),
            Err(i) => Err(lo + i),
        }
    }

    /// Move the levels so that the slack is split evenly, growing the storage when the slack
    /// would be small. Amortized O(1) per insert (slack >= len + 32 > TAIL on each side after
    /// a call).
    #[cold]
    #[inline(never)]
    fn recentre(&mut self) {
        let len = self.hi - self.lo;
        let want = 4 * len + 64;
        if self.buf.len() < want {
            let mut buf = vec![(0i64, 0i64); want];
            let lo = (want - len) / 2;
            buf[lo..lo + len].copy_from_slice(&self.buf[self.lo..self.hi]);
            self.buf = buf;
            self.lo = lo;
        } else {
            let lo = (self.buf.len() - len) / 2;
            self.buf.copy_within(self.lo..self.hi, lo);
            self.lo = lo;
        }
        self.hi = self.lo + len;
    }

    /// Insert `v` before physical index `i` (lo <= i <= hi), moving the cheaper end.
    #[inline(always)]
    fn insert_at(&mut self, mut i: usize, v: (i64, i64)) {
        loop {
            let left = i - self.lo;
            let right = self.hi - i;
            let room_right = self.hi + 1 + TAIL <= self.buf.len();
            if room_right && right <= SCAN {
                // near the touch: move a fixed SCAN-level window (branch-free, no memmove
                // call); the slots past `hi` it overwrites are slack (TAIL)
                shift_window(&mut self.buf, i, i + 1);
                self.buf[i] = v;
                self.hi += 1;
                return;
            }
            let room_left = self.lo > 0;
            if room_right && (right <= left || !room_left && right <= 64) {
                self.buf.copy_within(i..self.hi, i + 1);
                self.buf[i] = v;
                self.hi += 1;
                return;
            }
            if room_left && (left < right || left <= 64) {
                self.buf.copy_within(self.lo..i, self.lo - 1);
                self.buf[i - 1] = v;
                self.lo -= 1;
                return;
            }
            let off = i - self.lo;
            self.recentre();
            i = self.lo + off;
        }
    }

    /// Remove the level at physical index `i`, moving the cheaper end.
    #[inline(always)]
    fn remove_at(&mut self, i: usize) {
        let right = self.hi - 1 - i;
        if right <= SCAN {
            // fixed window, as in insert_at (TAIL slots past `hi` exist)
            shift_window(&mut self.buf, i + 1, i);
            self.hi -= 1;
        } else if right <= i - self.lo {
            self.buf.copy_within(i + 1..self.hi, i);
            self.hi -= 1;
        } else {
            self.buf.copy_within(self.lo..i, self.lo + 1);
            self.lo += 1;
        }
    }

    /// Upsert (amount > 0) or delete (amount == 0; absent level is a no-op).
    #[inline(always)]
    pub fn set(&mut self, price: i64, amount: i64) {
        let k = self.key(price);
        let (lo, hi) = (self.lo, self.hi);
        if hi - lo >= SCAN && hi + TAIL < self.buf.len() {
            // Near the touch, no branch on the kind of change: insert, update, delete and
            // delete-of-absent are one path (a 16-slot shift whose source offset is -1, 0 or
            // +1, then one store of a selected value). The kind is random per row, so
            // branching on it mispredicted often.
            let w: &[(i64, i64); SCAN] = self.buf[hi - SCAN..hi].try_into().unwrap();
            let c = count_better(w, self.mask, k);
            if c < SCAN {
                let i = hi - c;
                let found = (self.buf[i - 1].0 ^ self.mask) == k;
                let del = amount == 0;
                let ins = !found & !del;
                let rm = found & del;
                let pos = i - found as usize;
                let src = pos + rm as usize - ins as usize;
                let old = self.buf[src];
                let m = -(del as i64);
                let val = ((old.0 & m) | (price & !m), (old.1 & m) | (amount & !m));
                shift_window(&mut self.buf, src, pos);
                self.buf[pos] = val;
                self.hi = hi + ins as usize - rm as usize;
                return;
            }
        }
        if self.hi > self.lo {
            // fast path: at or beyond the touch
            let best = self.buf[self.hi - 1];
            let bk = self.key(best.0);
            if k > bk {
                if amount != 0 {
                    if self.hi + 1 + TAIL > self.buf.len() {
                        self.recentre();
                    }
                    self.buf[self.hi] = (price, amount);
                    self.hi += 1;
                }
                return;
            }
        } else {
            if amount != 0 {
                if self.buf.is_empty() {
                    self.recentre();
                }
                let mid = self.buf.len() / 2;
                self.lo = mid;
                self.hi = mid + 1;
                self.buf[mid] = (price, amount);
            }
            return;
        }
        match self.search(k) {
            Ok(i) => {
                if amount == 0 {
                    self.remove_at(i);
                } else {
                    self.buf[i].1 = amount;
                }
            }
            Err(i) => {
                if amount != 0 {
                    self.insert_at(i, (price, amount));
                }
            }
        }
    }

    #[inline]
    pub fn best(&self) -> Option<(i64, i64)> {
        if self.hi > self.lo {
            Some(self.buf[self.hi - 1])
        } else {
            None
        }
    }

    /// Remove the best level.
    #[inline]
    pub fn pop_best(&mut self) -> Option<(i64, i64)> {
        if self.hi > self.lo {
            self.hi -= 1;
            Some(self.buf[self.hi])
        } else {
            None
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.hi - self.lo
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.hi == self.lo
    }

    pub fn clear(&mut self) {
        // the next levels (a snapshot, best first) grow downwards from the middle
        let mid = self.buf.len() / 2;
        self.lo = mid;
        self.hi = mid;
    }

    /// Keep only the best `depth` levels (0 = unbounded): O(1).
    #[inline]
    pub fn truncate(&mut self, depth: usize) {
        if depth > 0 && self.hi - self.lo > depth {
            self.lo = self.hi - depth;
        }
    }

    /// Levels best first.
    #[inline]
    pub fn iter_best_first(&self) -> impl Iterator<Item = &(i64, i64)> + '_ {
        self.levels().iter().rev()
    }

    pub fn top_n(&self, n: Option<usize>) -> Vec<(i64, i64)> {
        let n = n.unwrap_or(usize::MAX).min(self.len());
        self.levels().iter().rev().take(n).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::rng::Rng;

    fn check(l: &Ladder, m: &BTreeMap<i64, i64>, ask: bool, depth: usize) {
        let want: Vec<(i64, i64)> = if ask {
            m.iter().map(|(&p, &a)| (p, a)).take(depth).collect()
        } else {
            m.iter().rev().map(|(&p, &a)| (p, a)).take(depth).collect()
        };
        assert_eq!(l.top_n(None), want);
        assert_eq!(l.best(), want.first().copied());
    }

    /// The AVX2 count equals the scalar one, on both sides, for keys around and equal to the
    /// levels and at the extremes.
    #[test]
    fn count_matches_scalar() {
        let mut r = Rng(7);
        for mask in [0i64, -1] {
            for _ in 0..20_000 {
                let mut keys: Vec<i64> = (0..SCAN).map(|_| (r.next() % 64) as i64 - 32).collect();
                if r.next() % 50 == 0 {
                    keys[0] = i64::MIN;
                    keys[SCAN - 1] = i64::MAX;
                }
                keys.sort();
                let mut w = [(0i64, 0i64); SCAN];
                for (l, &key) in w.iter_mut().zip(&keys) {
                    *l = (key ^ mask, r.next() as i64);
                }
                let k = match r.next() % 4 {
                    0 => keys[(r.next() as usize) % SCAN],
                    1 => i64::MIN,
                    2 => i64::MAX,
                    _ => (r.next() % 80) as i64 - 40,
                };
                let want = keys.iter().filter(|&&x| x > k).count();
                assert_eq!(count_better(&w, mask, k), want);
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") {
                    assert_eq!(unsafe { count_better_avx2(&w, mask, k) }, want);
                }
            }
        }
    }

    /// Random upserts, deletes (also of absent levels), truncations, clears and best-first
    /// snapshots against a BTreeMap, on both sides, including extreme prices.
    #[test]
    fn matches_btreemap() {
        for (seed, ask) in [(1u64, false), (2, true), (3, false), (4, true)] {
            let mut r = Rng(seed);
            let mut l = Ladder::new(if ask { SideKind::Ask } else { SideKind::Bid });
            let mut m: BTreeMap<i64, i64> = BTreeMap::new();
            let depth = 40usize;
            for step in 0..200_000u64 {
                let op = r.next() % 1000;
                if op == 0 {
                    l.clear();
                    m.clear();
                    // snapshot best first
                    let n = (r.next() % 60) as i64;
                    for j in 0..n {
                        let p = if ask { 1000 + 2 * j } else { 1000 - 2 * j };
                        l.set(p, j + 1);
                        m.insert(p, j + 1);
                    }
                } else {
                    let span = if step % 7 == 0 { 400 } else { 30 };
                    let mut p = 1000 + (r.next() % span) as i64 - (span / 2) as i64;
                    if r.next() % 5000 == 0 {
                        p = if r.next() & 1 == 0 { i64::MIN } else { i64::MAX };
                    }
                    let a = if r.next() % 4 == 0 { 0 } else { (r.next() % 100 + 1) as i64 };
                    l.set(p, a);
                    if a == 0 {
                        m.remove(&p);
                    } else {
                        m.insert(p, a);
                    }
                }
                if op % 3 == 0 {
                    l.truncate(depth);
                    while m.len() > depth {
                        if ask {
                            m.pop_last();
                        } else {
                            m.pop_first();
                        }
                    }
                }
                if step % 97 == 0 {
                    check(&l, &m, ask, usize::MAX);
                }
            }
            check(&l, &m, ask, usize::MAX);
        }
    }
}
