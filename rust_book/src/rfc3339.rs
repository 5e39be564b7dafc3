//! RFC 3339 time text -> ns since the epoch, exactly (no float, no time zone database): shared
//! by the venue parsers (Kraken v2 today; Coinbase and others write the same form).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

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
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// RFC 3339 UTC time text -> ns since the epoch (ValueError when it is not one).
#[pyfunction]
fn rfc3339_to_ns(text: &str) -> PyResult<i64> {
    rfc3339_ns(text.as_bytes()).ok_or_else(|| PyValueError::new_err(format!("not an RFC 3339 time: {text:?}")))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(rfc3339_to_ns, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339_ns(b"1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(rfc3339_ns(b"2023-10-06T17:35:55.440295Z"), Some(1_696_613_755_440_295_000));
        assert_eq!(rfc3339_ns(b"2023-10-06T17:35:55Z"), Some(1_696_613_755_000_000_000));
        assert_eq!(rfc3339_ns(b"2023-10-06T19:35:55.440295+02:00"), Some(1_696_613_755_440_295_000));
        assert_eq!(rfc3339_ns(b"2023-10-06T17:35:55.1234567891Z"), Some(1_696_613_755_123_456_789));
        assert_eq!(rfc3339_ns(b"1969-12-31T23:59:59Z"), Some(-1_000_000_000));
        assert_eq!(rfc3339_ns(b"2023-10-06"), None);
        assert_eq!(rfc3339_ns(b"2023-13-06T17:35:55Z"), None);
        assert_eq!(rfc3339_ns(b"2023-10-06T17:35:55.Z"), None);
        assert_eq!(rfc3339_ns(b"9999-12-31T23:59:59Z"), None);
    }
}
