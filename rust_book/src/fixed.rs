//! Exact fixed-point decimal text <-> integer mantissa conversions.
//!
//! Everything here is allocation free on the hot path: numbers are written into a caller
//! supplied byte buffer, never through `format!`.

/// Powers of ten that fit in an i64 / u64.
pub const POW10: [u64; 20] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
    10_000_000_000_000_000_000,
];

/// Largest precision accepted by the book (10**18 is the largest power of ten in an i64).
pub const MAX_PRECISION: u32 = 18;

const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Write the digits of `v` right to left ending just before `tmp[pos]`, at least `min_digits`
/// of them (zero padded); returns the index of the first digit written.
#[inline(always)]
fn digits_rev(tmp: &mut [u8; 48], mut pos: usize, mut v: u64, min_digits: usize) -> usize {
    let end = pos;
    while v >= 100 {
        let r = (v % 100) as usize * 2;
        v /= 100;
        pos -= 2;
        tmp[pos] = DIGIT_PAIRS[r];
        tmp[pos + 1] = DIGIT_PAIRS[r + 1];
    }
    if v >= 10 {
        let r = v as usize * 2;
        pos -= 2;
        tmp[pos] = DIGIT_PAIRS[r];
        tmp[pos + 1] = DIGIT_PAIRS[r + 1];
    } else {
        pos -= 1;
        tmp[pos] = b'0' + v as u8;
    }
    while end - pos < min_digits {
        pos -= 1;
        tmp[pos] = b'0';
    }
    pos
}

/// Write the decimal digits of `v` (no sign, no padding) into `out`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut tmp = [0u8; 48];
    let pos = digits_rev(&mut tmp, 48, v, 1);
    out.extend_from_slice(&tmp[pos..]);
}

#[cfg(test)]
#[test]
fn digit_counts() {
    assert_eq!(digit_count(0), 1);
    for k in 1..20 {
        assert_eq!(digit_count(POW10[k]), k + 1, "{k}");
        assert_eq!(digit_count(POW10[k] - 1), k, "{k}");
    }
    assert_eq!(digit_count(u64::MAX), 20);
}

/// Number of decimal digits of `v` (1 for 0).
#[inline(always)]
fn digit_count(v: u64) -> usize {
    // floor(log10) estimate from the bit length, corrected by one comparison
    let bits = 64 - (v | 1).leading_zeros() as usize;
    let guess = (bits * 1233) >> 12; // ~ bits * log10(2)
    if guess < 20 && v >= POW10[guess] {
        guess + 1
    } else {
        guess.max(1)
    }
}

/// Write `value / 10**precision` at exactly `precision` decimals ("100.25", "0.50000000",
/// "-0.05"; precision 0 writes a plain integer). `precision` may be up to 19.
/// Digits go straight into `out` (right to left into reserved space), no temporary.
#[inline]
pub fn push_fixed(out: &mut Vec<u8>, value: i64, precision: u32) {
    let mag = value.unsigned_abs();
    let p = precision as usize;
    let digits = digit_count(mag).max(p + 1);
    let neg = (value < 0) as usize;
    let len = neg + digits + (p > 0) as usize;
    let start = out.len();
    out.resize(start + len, b'0');
    let buf = &mut out[start..];
    if neg == 1 {
        buf[0] = b'-';
    }
    let mut pos = len;
    let mut v = mag;
    // fraction digits (exactly p of them), then the point
    if p > 0 {
        let mut k = 0;
        while k + 2 <= p && v != 0 {
            let r = (v % 100) as usize * 2;
            v /= 100;
            pos -= 2;
            buf[pos] = DIGIT_PAIRS[r];
            buf[pos + 1] = DIGIT_PAIRS[r + 1];
            k += 2;
        }
        while k < p && v != 0 {
            pos -= 1;
            buf[pos] = b'0' + (v % 10) as u8;
            v /= 10;
            k += 1;
        }
        // remaining fraction digits are the '0' fill
        pos -= p - k;
        pos -= 1;
        buf[pos] = b'.';
    }
    // integer digits; the fill already holds a single '0' when v == 0
    while v >= 100 {
        let r = (v % 100) as usize * 2;
        v /= 100;
        pos -= 2;
        buf[pos] = DIGIT_PAIRS[r];
        buf[pos + 1] = DIGIT_PAIRS[r + 1];
    }
    if v >= 10 {
        let r = v as usize * 2;
        buf[pos - 2] = DIGIT_PAIRS[r];
        buf[pos - 1] = DIGIT_PAIRS[r + 1];
    } else if v > 0 {
        buf[pos - 1] = b'0' + v as u8;
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Syntax,
    TooPrecise,
    Overflow,
}

impl ParseError {
    pub fn message(&self, s: &str, precision: u32) -> String {
        match self {
            ParseError::Syntax => format!("invalid decimal string: {s:?}"),
            ParseError::TooPrecise => {
                format!("{s:?} has non-zero digits beyond precision {precision}")
            }
            ParseError::Overflow => {
                format!("{s:?} at precision {precision} does not fit in a signed 64-bit integer")
            }
        }
    }
}

/// Parse an exact decimal string (`[+-]digits[.digits][e[+-]digits]`, at least one digit) into
/// its integer mantissa at `precision` decimals. Fewer decimals are padded; trailing zeros
/// beyond the precision are accepted; a non-zero digit beyond it is an error (never rounded).
pub fn parse_fixed(s: &[u8], precision: u32) -> Result<i64, ParseError> {
    let mut i = 0;
    let n = s.len();
    let mut negative = false;
    if i < n && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let int_start = i;
    while i < n && s[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &s[int_start..i];
    let mut frac_digits: &[u8] = &[];
    if i < n && s[i] == b'.' {
        i += 1;
        let fs = i;
        while i < n && s[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &s[fs..i];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(ParseError::Syntax);
    }
    let mut exp: i64 = 0;
    if i < n && (s[i] == b'e' || s[i] == b'E') {
        i += 1;
        let mut eneg = false;
        if i < n && (s[i] == b'+' || s[i] == b'-') {
            eneg = s[i] == b'-';
            i += 1;
        }
        let es = i;
        while i < n && s[i].is_ascii_digit() {
            // saturate: absurd exponents only matter through their sign
            exp = (exp * 10 + (s[i] - b'0') as i64).min(1_000_000_000);
            i += 1;
        }
        if i == es {
            return Err(ParseError::Syntax);
        }
        if eneg {
            exp = -exp;
        }
    }
    if i != n {
        return Err(ParseError::Syntax);
    }
    // value = D * 10**(exp - frac_len), D = int_digits ++ frac_digits
    // mantissa = D * 10**shift with shift = precision + exp - frac_len
    let shift = precision as i64 + exp - frac_digits.len() as i64;
    let digits = int_digits.iter().chain(frac_digits.iter());
    let total = int_digits.len() + frac_digits.len();
    // digits kept (the rest must be zeros when shift < 0)
    let keep = if shift < 0 {
        total.saturating_sub(shift.unsigned_abs() as usize)
    } else {
        total
    };
    let limit: u128 = if negative { 1u128 << 63 } else { (1u128 << 63) - 1 };
    let mut acc: u128 = 0;
    for (k, &d) in digits.enumerate() {
        let d = (d - b'0') as u128;
        if k < keep {
            acc = acc * 10 + d;
            if acc > limit {
                return Err(ParseError::Overflow);
            }
        } else if d != 0 {
            return Err(ParseError::TooPrecise);
        }
    }
    if shift > 0 && acc != 0 {
        if shift > 19 {
            return Err(ParseError::Overflow);
        }
        acc *= POW10[shift as usize] as u128;
        if acc > limit {
            return Err(ParseError::Overflow);
        }
    }
    Ok(if negative {
        (acc as i128).wrapping_neg() as i64
    } else {
        acc as i64
    })
}

/// Numeric comparison key of a plain decimal string (digits with at most one "."), exact and
/// overflow free: (integer digits without leading zeros, fraction digits without trailing zeros).
pub fn decimal_key(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut dot = None;
    for (k, &c) in s.iter().enumerate() {
        if c == b'.' {
            if dot.is_some() {
                return None;
            }
            dot = Some(k);
        } else if !c.is_ascii_digit() {
            return None;
        }
    }
    let (int, frac) = match dot {
        Some(k) => (&s[..k], &s[k + 1..]),
        None => (s, &s[s.len()..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let lead = int.iter().take_while(|&&c| c == b'0').count();
    let trail = frac.iter().rev().take_while(|&&c| c == b'0').count();
    Some((&int[lead..], &frac[..frac.len() - trail]))
}

pub fn cmp_decimal_key(a: &(&[u8], &[u8]), b: &(&[u8], &[u8])) -> std::cmp::Ordering {
    a.0.len()
        .cmp(&b.0.len())
        .then_with(|| a.0.cmp(b.0))
        .then_with(|| a.1.cmp(b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(v: i64, p: u32) -> String {
        let mut b = Vec::new();
        push_fixed(&mut b, v, p);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn formats() {
        assert_eq!(fmt(10025, 2), "100.25");
        assert_eq!(fmt(50_000_000, 8), "0.50000000");
        assert_eq!(fmt(-5, 2), "-0.05");
        assert_eq!(fmt(7, 0), "7");
        assert_eq!(fmt(i64::MIN, 0), "-9223372036854775808");
    }

    #[test]
    fn parses() {
        assert_eq!(parse_fixed(b"100.25", 2), Ok(10025));
        assert_eq!(parse_fixed(b"0.5", 8), Ok(50_000_000));
        assert_eq!(parse_fixed(b"1.2300", 2), Ok(123));
        assert_eq!(parse_fixed(b"1.231", 2), Err(ParseError::TooPrecise));
        assert_eq!(parse_fixed(b"-9223372036854775808", 0), Ok(i64::MIN));
        assert_eq!(parse_fixed(b"9223372036854775808", 0), Err(ParseError::Overflow));
        assert_eq!(parse_fixed(b"1e-8", 8), Ok(1));
        assert_eq!(parse_fixed(b".", 8), Err(ParseError::Syntax));
        assert_eq!(parse_fixed(b"", 8), Err(ParseError::Syntax));
    }
}

/// Multiplicative inverse of 5^k modulo 2^64 (5^k is odd), by Newton's iteration.
pub const fn inv5(k: usize) -> u64 {
    let mut f: u64 = 1;
    let mut i = 0;
    while i < k {
        f = f.wrapping_mul(5);
        i += 1;
    }
    let mut x: u64 = f; // correct to 3 bits for any odd f
    let mut j = 0;
    while j < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(f.wrapping_mul(x)));
        j += 1;
    }
    x
}

const INV5: [u64; 19] = {
    let mut t = [1u64; 19];
    let mut k = 0;
    while k < 19 {
        t[k] = inv5(k);
        k += 1;
    }
    t
};

/// decimal128 (16-byte two's complement, little endian as in Arrow, or big endian as Parquet
/// stores a FIXED_LEN_BYTE_ARRAY(16) DECIMAL) values of a buffer divided exactly by 10^k
/// (0..=18), as int64: x / 10^k = (x >> k) * inv(5^k) mod 2^64 (x is then a multiple of 2^k *
/// 5^k), verified by q * 10^k == x in 128 bits, so no i128 division and no branch per value.
/// Err(row) names the first value that is not a multiple of 10^k or whose quotient does not fit
/// in an int64.
pub fn descale128(buf: &[u8], k: usize, big_endian: bool, out: &mut Vec<i64>) -> Result<(), usize> {
    assert!(k <= 18);
    let n = buf.len() / 16;
    out.clear();
    out.resize(n, 0);
    let bad = if big_endian {
        descale_into::<true>(&buf[..n * 16], k as u32, out)
    } else {
        descale_into::<false>(&buf[..n * 16], k as u32, out)
    };
    if !bad {
        return Ok(());
    }
    let p = POW10[k] as i128;
    for (i, c) in buf[..n * 16].chunks_exact(16).enumerate() {
        if (out[i] as i128) * p != read128(c, big_endian) {
            return Err(i);
        }
    }
    Ok(())
}

#[inline(always)]
fn read128(c: &[u8], big_endian: bool) -> i128 {
    let b: [u8; 16] = c.try_into().unwrap();
    if big_endian {
        i128::from_be_bytes(b)
    } else {
        i128::from_le_bytes(b)
    }
}

/// The loop of `descale128`: true when some value is bad (the caller finds which).
#[inline(always)]
fn descale_into<const BE: bool>(buf: &[u8], k: u32, out: &mut [i64]) -> bool {
    let inv = INV5[k as usize];
    let p = POW10[k as usize] as i64 as i128;
    let mut bad = false;
    for (c, o) in buf.chunks_exact(16).zip(out.iter_mut()) {
        let x = read128(c, BE);
        let q = ((x >> k) as u64).wrapping_mul(inv) as i64;
        bad |= (q as i128) * p != x;
        *o = q;
    }
    bad
}

/// int64 values times 10^k (0..=18) as little-endian decimal128 (always exact: |i64| * 10^18 <
/// 10^38, so any tick count fits DECIMAL(38, 18)).
pub fn scale128(values: &[u8], k: usize) -> Vec<u8> {
    assert!(k <= 18);
    let p = POW10[k] as i128;
    let mut out = Vec::with_capacity(values.len() * 2);
    for c in values.chunks_exact(8) {
        let v = i64::from_le_bytes(c.try_into().unwrap()) as i128;
        out.extend_from_slice(&(v * p).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod decimal_tests {
    use super::*;

    #[test]
    fn descale_exact_and_errors() {
        for k in 0..=18usize {
            let p = POW10[k] as i128;
            let vals: Vec<i64> = vec![0, 1, -1, 12345, -98765, i64::MAX, i64::MIN, 7 << 40];
            let buf: Vec<u8> = vals.iter().flat_map(|&v| ((v as i128) * p).to_le_bytes()).collect();
            let mut out = Vec::new();
            descale128(&buf, k, false, &mut out).unwrap();
            let be: Vec<u8> = buf.chunks_exact(16).flat_map(|c| { let mut b = c.to_vec(); b.reverse(); b }).collect();
            descale128(&be, k, true, &mut out).unwrap();
            assert_eq!(out, vals);
            assert_eq!(out, vals);
            assert_eq!(scale128(&vals.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(), k), buf);
            if k > 0 {
                let mut b = buf.clone();
                b.extend_from_slice(&((5 * p) + 1).to_le_bytes());
                assert_eq!(descale128(&b, k, false, &mut out), Err(vals.len()));
            }
            let mut b = buf.clone();
            b.extend_from_slice(&(((i64::MAX as i128) + 1) * p).to_le_bytes());
            assert_eq!(descale128(&b, k, false, &mut out), Err(vals.len()));
        }
    }
}
