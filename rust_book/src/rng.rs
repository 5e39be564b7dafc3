//! SplitMix64: the seeded generator of the benchmark workload (workload.rs) and of the crate's
//! randomized tests; a leaf, so tests of the lowest modules can use it.

/// SplitMix64 (also the seeded generator of the crate's randomized tests).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    #[inline]
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    #[inline]
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in lo..=hi.
    #[inline]
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    /// Geometric on {0, 1, ...}: P(d >= k) = 0.82^k, median 3.
    #[inline]
    pub(crate) fn distance(&mut self) -> usize {
        let u = 1.0 - self.unit(); // (0, 1]
        (u.ln() / 0.82f64.ln()).floor().min(1e6) as usize
    }
}
