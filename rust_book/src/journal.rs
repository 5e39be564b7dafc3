//! The journal record encoder (lab/datasets/journal.py): runs once per raw row on the
//! recorder's writer thread.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::bulk::InBuf;

/// One journal record (see lab/datasets/journal.py): `<u32 body_len><u32 crc32(body)><body>`,
/// body `<i64 rec_id><i64 local_ts><i32 conn_id><i64 conn_seq><u8 kind><u16 len><channel>
/// <u16 len | 0xFFFF for None><symbol><payload>`.
#[pyfunction]
#[pyo3(signature = (rec_id, local_ts, conn_id, conn_seq, kind, channel, symbol, payload))]
#[allow(clippy::too_many_arguments)]
fn journal_encode<'py>(
    py: Python<'py>,
    rec_id: i64,
    local_ts: i64,
    conn_id: i32,
    conn_seq: i64,
    kind: u8,
    channel: &str,
    symbol: Option<&str>,
    payload: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let held;
    let payload: &[u8] = if let Ok(b) = payload.cast::<PyBytes>() {
        b.as_bytes()
    } else {
        held = InBuf::get(payload, "payload")?;
        held.bytes()
    };
    let ch = channel.as_bytes();
    let sym = symbol.map(str::as_bytes);
    if ch.len() > 0xFFFF || sym.is_some_and(|s| s.len() > 0xFFFF) {
        return Err(PyValueError::new_err("channel and symbol must be at most 65535 bytes"));
    }
    let body_len = 31 + ch.len() + 2 + sym.map_or(0, |s| s.len()) + payload.len();
    if body_len > u32::MAX as usize {
        return Err(PyValueError::new_err("journal record too large"));
    }
    let mut body = Vec::with_capacity(8 + body_len);
    body.extend_from_slice(&[0u8; 8]);
    body.extend_from_slice(&rec_id.to_le_bytes());
    body.extend_from_slice(&local_ts.to_le_bytes());
    body.extend_from_slice(&conn_id.to_le_bytes());
    body.extend_from_slice(&conn_seq.to_le_bytes());
    body.push(kind);
    body.extend_from_slice(&(ch.len() as u16).to_le_bytes());
    body.extend_from_slice(ch);
    match sym {
        Some(s) => {
            body.extend_from_slice(&(s.len() as u16).to_le_bytes());
            body.extend_from_slice(s);
        }
        None => body.extend_from_slice(&0xFFFFu16.to_le_bytes()),
    }
    body.extend_from_slice(payload);
    let crc = crc32fast::hash(&body[8..]);
    body[0..4].copy_from_slice(&(body_len as u32).to_le_bytes());
    body[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(PyBytes::new(py, &body))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(journal_encode, m)?)?;
    Ok(())
}
