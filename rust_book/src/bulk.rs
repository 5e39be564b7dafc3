//! Bulk rebuild: the book columns of one stream in, derived tables (`quotes`, `book_snapshot_N`)
//! out, the GIL released for the whole run, no per-delta Python call.
//!
//! Input columns are any buffer-protocol objects (pyarrow buffers, numpy arrays, bytes), read in
//! place (zero copy): sides int8 (0 bid / 1 ask), prices and amounts little-endian int64 (width 8)
//! or decimal128 (width 16, must fit in int64), flags uint8 (LAST = 1, CLEAR = 2), timestamps and
//! local timestamps int64 ns. Output columns are owned Rust buffers exported through the buffer
//! protocol (`RustBuffer`), so `pyarrow.py_buffer(buf)` wraps them without a copy: decimal128
//! mantissas (16 bytes, little endian) and Arrow validity bitmaps for the quotes, int64 mantissas
//! for the snapshot levels.
//!
//! Semantics (the dataset's, docs/DATASET.md): rows up to a LAST row form one message and are
//! applied together; a CLEAR row resets the book before it is applied; after the message the
//! book is truncated to `depth`. Quotes: a row (top of book after the message) only when the top
//! changed, as tardis emits one: bid price or amount, ask price or amount, or a side's presence
//! differs from the last quote row, or the message is the first, the first after a reset (it has
//! a CLEAR row) or the first after a gap (an entry of `gaps` at or before its first row's local
//! timestamp); each quote names the row of its message's LAST row (`q_rows`). Snapshots:
//! with `interval_ns > 0`, on a grid of `local_timestamp` aligned to multiples of the interval,
//! the first message past a grid boundary emits, before it is applied, the book as of that
//! boundary (`local_timestamp` = the boundary, `timestamp` = exchange time of the last message
//! applied); several empty intervals give one snapshot (the book did not change). With
//! `interval_ns == 0` a snapshot follows every message. Snapshots are not emitted while the book
//! is unsynced: before the first CLEAR, and from a gap (an entry of `gaps`, local timestamps of
//! gap/resync events) to the next CLEAR.

use std::ffi::{c_int, c_void};

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::book::Book;

const LAST: u8 = 1;
const CLEAR: u8 = 2;

/// An owned byte buffer exported read-only through the buffer protocol (zero copy into
/// `pyarrow.py_buffer`, `numpy.frombuffer`, `memoryview`).
#[pyclass(module = "lab.rust_book", frozen)]
pub struct RustBuffer {
    data: Vec<u8>,
}

impl RustBuffer {
    pub fn new(data: Vec<u8>) -> Self {
        RustBuffer { data }
    }
}

#[pymethods]
impl RustBuffer {
    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// # Safety
    /// Called by CPython with a valid `view`; the data lives as long as the exporter (frozen,
    /// never mutated), which the view holds a reference to.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("view is null"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("RustBuffer is read-only"));
        }
        let data = &slf.get().data;
        let rc = ffi::PyBuffer_FillInfo(
            view,
            slf.as_ptr(),
            data.as_ptr() as *mut c_void,
            data.len() as ffi::Py_ssize_t,
            1,
            flags,
        );
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __repr__(&self) -> String {
        format!("RustBuffer({} bytes)", self.data.len())
    }
}

/// A read-only, C-contiguous view of any object exporting the buffer protocol (bytes,
/// memoryview, array.array, pyarrow.Buffer, numpy arrays...), released on drop (GIL held).
pub(crate) struct InBuf {
    view: Box<ffi::Py_buffer>,
}

impl InBuf {
    pub(crate) fn get(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Self> {
        // SAFETY: zeroed Py_buffer is the documented empty value filled by PyObject_GetBuffer.
        let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_SIMPLE) };
        if rc != 0 {
            let cause = PyErr::fetch(obj.py());
            let err = PyTypeError::new_err(format!(
                "{name} must support the buffer protocol (contiguous bytes), got {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "?".into())
            ));
            err.set_cause(obj.py(), Some(cause));
            return Err(err);
        }
        Ok(InBuf { view })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        if self.view.buf.is_null() || self.view.len <= 0 {
            return &[];
        }
        // SAFETY: the exporter guarantees `len` readable bytes while the view is held.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, self.view.len as usize) }
    }
}

impl Drop for InBuf {
    fn drop(&mut self) {
        // SAFETY: filled by a successful PyObject_GetBuffer; dropped with the GIL held.
        unsafe { ffi::PyBuffer_Release(&mut *self.view) }
    }
}

/// Columns of one book stream, borrowed.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub sides: &'a [u8],
    pub prices: &'a [u8],
    pub amounts: &'a [u8],
    pub flags: &'a [u8],
    pub timestamps: &'a [u8],
    pub local_timestamps: &'a [u8],
    pub price_width: usize,
    pub amount_width: usize,
    /// Sorted local timestamps (int64 ns) of gap / resync events; may be empty.
    pub gaps: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Book depth per side after every message (0 = unbounded).
    pub depth: usize,
    /// Levels per side in a snapshot (0 = no snapshots).
    pub snapshot_depth: usize,
    /// Snapshot grid in ns (0 = after every message).
    pub interval_ns: i64,
}

/// Derived columns.
#[derive(Default, Debug)]
pub struct Output {
    pub quotes: usize,
    pub q_ts: Vec<u8>,
    pub q_lts: Vec<u8>,
    pub q_bid_px: Vec<u8>,
    pub q_bid_amt: Vec<u8>,
    pub q_ask_px: Vec<u8>,
    pub q_ask_amt: Vec<u8>,
    pub q_bid_valid: Vec<u8>,
    pub q_ask_valid: Vec<u8>,
    /// Per quote row, the int64 row index of the LAST row of the message it follows.
    pub q_rows: Vec<u8>,
    pub snapshots: usize,
    pub s_ts: Vec<u8>,
    pub s_lts: Vec<u8>,
    /// Per snapshot row, `4 * snapshot_depth` int64: for each level k, ask price, ask amount,
    /// bid price, bid amount (tardis column order); 0 where the side has fewer levels.
    pub s_levels: Vec<u8>,
    /// Per snapshot row, two uint32: number of ask levels and of bid levels present.
    pub s_counts: Vec<u8>,
    pub rows: usize,
    pub best_bid: Option<(i64, i64)>,
    pub best_ask: Option<(i64, i64)>,
    pub synced: bool,
}

#[inline(always)]
fn rd8(buf: &[u8], i: usize) -> i64 {
    let off = i * 8;
    assert!(off + 8 <= buf.len());
    // SAFETY: bounds checked just above.
    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off) as *const i64) }.to_le()
}

/// Row `i` of an int64 (W = 8) or int128 (W = 16) column, as int64 (the low word).
///
/// # Safety
/// `validate` checked that the column has a row `i` and that every value fits in an int64.
#[inline(always)]
unsafe fn rd_valid<const W: usize>(buf: &[u8], i: usize) -> i64 {
    debug_assert!((i + 1) * W <= buf.len());
    std::ptr::read_unaligned(buf.as_ptr().add(i * W) as *const i64).to_le()
}

/// Value of row `i` of an int64 (W = 8) or int128 (W = 16) column, None when it does not fit
/// in an int64.
#[inline(always)]
fn rd<const W: usize>(buf: &[u8], i: usize) -> Option<i64> {
    if W == 8 {
        Some(rd8(buf, i))
    } else {
        let lo = rd8(buf, 2 * i);
        let hi = rd8(buf, 2 * i + 1);
        if hi == (lo >> 63) {
            Some(lo)
        } else {
            None
        }
    }
}

/// First row of an int64 / int128 column that does not fit in an int64, or (with
/// `non_negative`) is negative. Blocks of rows are OR-reduced first (vectorized), rows are
/// only looked at one by one in a block that has a bad one.
fn first_bad<const W: usize>(buf: &[u8], non_negative: bool) -> Option<usize> {
    const BLOCK: usize = 256;
    let rows = buf.len() / W;
    let sign = if non_negative { i64::MIN } else { 0 };
    let bad = |i: usize| -> i64 {
        if W == 8 {
            rd8(buf, i) & sign
        } else {
            let lo = rd8(buf, 2 * i);
            (rd8(buf, 2 * i + 1) ^ (lo >> 63)) | (lo & sign)
        }
    };
    // whole blocks through chunks (no bounds check, so the OR-reduction vectorizes)
    let word = |c: &[u8]| i64::from_le_bytes(c.try_into().unwrap());
    let mut start = 0;
    for block in buf[..rows * W].chunks(BLOCK * W) {
        let acc = if W == 8 {
            block.chunks_exact(8).fold(0i64, |acc, c| acc | (word(c) & sign))
        } else {
            block.chunks_exact(16).fold(0i64, |acc, c| {
                let lo = word(&c[..8]);
                acc | (word(&c[8..]) ^ (lo >> 63)) | (lo & sign)
            })
        };
        let n = block.len() / W;
        if acc != 0 {
            return (start..start + n).find(|&i| bad(i) != 0);
        }
        start += n;
    }
    None
}

#[inline(always)]
fn push_dec128(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&(v as i128).to_le_bytes());
}

#[inline(always)]
fn set_bit(bitmap: &mut [u8], i: usize) {
    bitmap[i >> 3] |= 1 << (i & 7);
}

/// The first bad value among rows `rows` as an error naming its row: a side other than 0
/// (bid) / 1 (ask), a price that does not fit in int64, an amount that is negative or does not
/// fit. The columns must hold the rows (callers check lengths first). Blocks are OR-reduced
/// (vectorized); rows are looked at one by one only in a block with a bad one.
pub(crate) fn check_values(
    sides: &[u8],
    prices: &[u8],
    amounts: &[u8],
    price_width: usize,
    amount_width: usize,
    rows: std::ops::Range<usize>,
) -> Result<(), String> {
    let (a, b) = (rows.start, rows.end);
    let sides = &sides[a..b];
    let side_bits = sides.iter().fold(0u8, |acc, &s| acc | (s & !1));
    if let Some(k) = (side_bits != 0).then(|| sides.iter().position(|&s| s > 1)).flatten() {
        return Err(format!(
            "row {}: side must be 0 (bid) or 1 (ask), got {}",
            a + k,
            sides[k] as i8
        ));
    }
    let prices = &prices[a * price_width..b * price_width];
    if price_width == 16 {
        if let Some(k) = first_bad::<16>(prices, false) {
            return Err(format!("row {}: price does not fit in int64", a + k));
        }
    }
    let amounts = &amounts[a * amount_width..b * amount_width];
    let (bad, value) = if amount_width == 8 {
        let k = first_bad::<8>(amounts, true);
        (k, k.and_then(|k| rd::<8>(amounts, k)))
    } else {
        let k = first_bad::<16>(amounts, true);
        (k, k.and_then(|k| rd::<16>(amounts, k)))
    };
    match (bad, value) {
        (Some(k), Some(v)) => Err(format!("row {}: negative amount {v}", a + k)),
        (Some(k), None) => Err(format!("row {}: amount does not fit in int64", a + k)),
        _ => Ok(()),
    }
}

/// Apply the rows of the message that starts at row `i`, up to its LAST row (a CLEAR row
/// resets the book before it is applied); returns the LAST row and whether a CLEAR was seen.
/// The one row loop of both the bulk rebuild and `OrderBook.apply_rows`.
///
/// # Safety
/// Every column holds the message's rows, `check_values` passed on them, and a row at or after
/// `i` has the LAST flag.
#[inline(always)]
pub(crate) unsafe fn apply_message<const PW: usize, const AW: usize>(
    book: &mut Book,
    sides: &[u8],
    prices: &[u8],
    amounts: &[u8],
    flags: &[u8],
    mut i: usize,
) -> (usize, bool) {
    let mut cleared = false;
    loop {
        let f = *flags.get_unchecked(i);
        if f & CLEAR != 0 {
            book.clear();
            cleared = true;
        }
        let side = *sides.get_unchecked(i);
        let p = rd_valid::<PW>(prices, i);
        let a = rd_valid::<AW>(amounts, i);
        book.side_mut(side == 1).set(p, a);
        if f & LAST != 0 {
            return (i, cleared);
        }
        i += 1;
    }
}

pub fn validate(inp: &Input<'_>, opts: &Options) -> Result<usize, String> {
    let n = inp.flags.len();
    if inp.price_width != 8 && inp.price_width != 16 {
        return Err(format!(
            "price_width must be 8 (int64) or 16 (decimal128), got {}",
            inp.price_width
        ));
    }
    if inp.amount_width != 8 && inp.amount_width != 16 {
        return Err(format!(
            "amount_width must be 8 (int64) or 16 (decimal128), got {}",
            inp.amount_width
        ));
    }
    let need = |name: &str, got: usize, want: usize| -> Result<(), String> {
        if got != want {
            Err(format!(
                "{name} has {got} bytes, expected {want} for {n} rows (one row per flags byte)"
            ))
        } else {
            Ok(())
        }
    };
    need("sides", inp.sides.len(), n)?;
    need("prices", inp.prices.len(), n * inp.price_width)?;
    need("amounts", inp.amounts.len(), n * inp.amount_width)?;
    need("timestamps", inp.timestamps.len(), n * 8)?;
    need("local_timestamps", inp.local_timestamps.len(), n * 8)?;
    if inp.gaps.len() % 8 != 0 {
        return Err(format!(
            "gaps has {} bytes, not a whole number of int64",
            inp.gaps.len()
        ));
    }
    if n > 0 && inp.flags[n - 1] & LAST == 0 {
        return Err(format!(
            "the last row ({}) does not have the LAST flag: the stream ends inside a message",
            n - 1
        ));
    }
    // per-row values, checked up front so that the rebuild loop has no error branch
    check_values(inp.sides, inp.prices, inp.amounts, inp.price_width, inp.amount_width, 0..n)?;
    if opts.interval_ns < 0 {
        return Err(format!("interval_ns must be >= 0, got {}", opts.interval_ns));
    }
    if opts.snapshot_depth > 100_000 {
        return Err(format!(
            "snapshot_depth {} is too large (at most 100000)",
            opts.snapshot_depth
        ));
    }
    Ok(n)
}

struct Snap {
    depth: usize,
    interval: i64,
    scratch_levels: Vec<i64>,
}

impl Snap {
    fn emit(&mut self, out: &mut Output, book: &Book, ts: i64, lts: i64) {
        let d = self.depth;
        self.scratch_levels.clear();
        self.scratch_levels.resize(4 * d, 0);
        let mut na = 0u32;
        for (k, (p, a)) in book.asks().iter_best_first().take(d).enumerate() {
            self.scratch_levels[4 * k] = p;
            self.scratch_levels[4 * k + 1] = a;
            na += 1;
        }
        let mut nb = 0u32;
        for (k, (p, a)) in book.bids().iter_best_first().take(d).enumerate() {
            self.scratch_levels[4 * k + 2] = p;
            self.scratch_levels[4 * k + 3] = a;
            nb += 1;
        }
        for v in &self.scratch_levels {
            out.s_levels.extend_from_slice(&v.to_le_bytes());
        }
        out.s_counts.extend_from_slice(&na.to_le_bytes());
        out.s_counts.extend_from_slice(&nb.to_le_bytes());
        out.s_ts.extend_from_slice(&ts.to_le_bytes());
        out.s_lts.extend_from_slice(&lts.to_le_bytes());
        out.snapshots += 1;
    }
}

/// Rebuild the stream. Errors carry the row index; nothing is returned on error.
pub fn rebuild(inp: &Input<'_>, opts: &Options) -> Result<Output, String> {
    validate(inp, opts)?;
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected just above.
            return unsafe { run_avx2(inp, opts) };
        }
    }
    match (inp.price_width, inp.amount_width) {
        (8, 8) => run::<8, 8>(inp, opts),
        (8, 16) => run::<8, 16>(inp, opts),
        (16, 8) => run::<16, 8>(inp, opts),
        _ => run::<16, 16>(inp, opts),
    }
}

/// The same loop compiled for AVX2, so that the ladder's vector count of the levels
/// near the touch is inlined into it rather than called once per row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(inp: &Input<'_>, opts: &Options) -> Result<Output, String> {
    match (inp.price_width, inp.amount_width) {
        (8, 8) => run::<8, 8>(inp, opts),
        (8, 16) => run::<8, 16>(inp, opts),
        (16, 8) => run::<16, 8>(inp, opts),
        _ => run::<16, 16>(inp, opts),
    }
}

#[inline(always)]
fn run<const PW: usize, const AW: usize>(inp: &Input<'_>, opts: &Options) -> Result<Output, String> {
    let n = inp.flags.len();
    let flags = inp.flags;
    let sides = inp.sides;
    let messages: usize = flags.iter().map(|&f| (f & LAST) as usize).sum();
    let mut out = Output {
        q_ts: Vec::with_capacity(messages * 8),
        q_lts: Vec::with_capacity(messages * 8),
        q_bid_px: Vec::with_capacity(messages * 16),
        q_bid_amt: Vec::with_capacity(messages * 16),
        q_ask_px: Vec::with_capacity(messages * 16),
        q_ask_amt: Vec::with_capacity(messages * 16),
        q_bid_valid: vec![0u8; messages.div_ceil(8)],
        q_ask_valid: vec![0u8; messages.div_ceil(8)],
        q_rows: Vec::with_capacity(messages * 8),
        rows: n,
        ..Default::default()
    };
    let mut snap = if opts.snapshot_depth > 0 {
        Some(Snap {
            depth: opts.snapshot_depth,
            interval: opts.interval_ns,
            scratch_levels: Vec::new(),
        })
    } else {
        None
    };
    let ngaps = inp.gaps.len() / 8;
    let mut gi = 0usize;
    // on the heap: a row picks its side by address (base + side * size); on the stack LLVM
    // splits the two sides into separate slots and selects every field per row
    let mut book = Box::new(Book::new(opts.depth));
    let mut synced = false;
    let mut have_prev = false;
    let mut prev_bucket = 0i64;
    let mut prev_ts = 0i64;
    let mut q = 0usize;
    // the top of the last quote row written; `fresh`: the next message writes one regardless
    // (first message, after a gap, a CLEAR in the message)
    let mut last_top: (Option<(i64, i64)>, Option<(i64, i64)>) = (None, None);
    let mut fresh = true;
    let mut i = 0usize;
    while i < n {
        let lts0 = rd8(inp.local_timestamps, i);
        if let Some(s) = snap.as_mut() {
            if s.interval > 0 {
                let bucket = lts0.div_euclid(s.interval);
                if have_prev && bucket > prev_bucket {
                    let boundary = (prev_bucket + 1).saturating_mul(s.interval);
                    while gi < ngaps && rd8(inp.gaps, gi) <= boundary {
                        synced = false;
                        fresh = true;
                        gi += 1;
                    }
                    if synced {
                        s.emit(&mut out, &book, prev_ts, boundary);
                    }
                }
                prev_bucket = bucket;
            }
        }
        while gi < ngaps && rd8(inp.gaps, gi) <= lts0 {
            synced = false;
            fresh = true;
            gi += 1;
        }
        // one message: rows i..=end
        // SAFETY: `validate` checked every column's length and value, and that the stream ends
        // with a LAST row.
        let (end, cleared) =
            unsafe { apply_message::<PW, AW>(&mut book, sides, inp.prices, inp.amounts, flags, i) };
        i = end;
        synced |= cleared;
        book.truncate();
        let ts = rd8(inp.timestamps, i);
        let lts = rd8(inp.local_timestamps, i);
        let top = (book.bids().best(), book.asks().best());
        if fresh || cleared || top != last_top {
            fresh = false;
            last_top = top;
            out.q_ts.extend_from_slice(&ts.to_le_bytes());
            out.q_lts.extend_from_slice(&lts.to_le_bytes());
            out.q_rows.extend_from_slice(&(i as i64).to_le_bytes());
            match top.0 {
                Some((p, a)) => {
                    push_dec128(&mut out.q_bid_px, p);
                    push_dec128(&mut out.q_bid_amt, a);
                    set_bit(&mut out.q_bid_valid, q);
                }
                None => {
                    push_dec128(&mut out.q_bid_px, 0);
                    push_dec128(&mut out.q_bid_amt, 0);
                }
            }
            match top.1 {
                Some((p, a)) => {
                    push_dec128(&mut out.q_ask_px, p);
                    push_dec128(&mut out.q_ask_amt, a);
                    set_bit(&mut out.q_ask_valid, q);
                }
                None => {
                    push_dec128(&mut out.q_ask_px, 0);
                    push_dec128(&mut out.q_ask_amt, 0);
                }
            }
            q += 1;
        }
        if let Some(s) = snap.as_mut() {
            if s.interval == 0 && synced {
                s.emit(&mut out, &book, ts, lts);
            }
        }
        have_prev = true;
        prev_ts = ts;
        i += 1;
    }
    out.quotes = q;
    out.q_bid_valid.truncate(q.div_ceil(8));
    out.q_ask_valid.truncate(q.div_ceil(8));
    out.best_bid = book.bids().best();
    out.best_ask = book.asks().best();
    out.synced = synced;
    Ok(out)
}

fn as_bytes(v: &[i64]) -> &[u8] {
    // SAFETY: i64 has no padding; the byte view lives as long as `v`.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 8) }
}

/// A decimal128 column divided exactly by 10^k into `out`, or an error naming the row.
fn descale_column(buf: &[u8], k: usize, big_endian: bool, name: &str, out: &mut Vec<i64>) -> Result<(), String> {
    if buf.len() % 16 != 0 {
        return Err(format!("{name}s has {} bytes, not a whole number of decimal128", buf.len()));
    }
    crate::fixed::descale128(buf, k, big_endian, out).map_err(|row| {
        let b: [u8; 16] = buf[row * 16..row * 16 + 16].try_into().unwrap();
        let x = if big_endian { i128::from_be_bytes(b) } else { i128::from_le_bytes(b) };
        format!("row {row}: {name} mantissa {x} is not a whole number of ticks (a multiple of 10^{k}) in int64")
    })
}

/// decimal128 values (little endian) multiplied by 10^k in place (quote outputs: ticks to
/// DECIMAL(38, 18) mantissas; exact, ticks are int64).
fn scale_in_place(col: &mut [u8], k: usize) {
    if k == 0 {
        return;
    }
    let p = crate::fixed::POW10[k] as i128;
    for c in col.chunks_exact_mut(16) {
        let v = i128::from_le_bytes((&*c).try_into().unwrap());
        c.copy_from_slice(&(v * p).to_le_bytes());
    }
}

/// `decimal128_to_ticks(buf, k, big_endian=False)`: decimal128 values (little endian, Arrow's,
/// or big endian, Parquet FLBA's) divided exactly by 10^k, as an int64 buffer (ValueError naming
/// the first row that is not a whole number of ticks in int64).
#[pyfunction]
#[pyo3(signature = (values, k, big_endian = false))]
fn decimal128_to_ticks(py: Python<'_>, values: &Bound<'_, PyAny>, k: i64, big_endian: bool) -> PyResult<Py<RustBuffer>> {
    if !(0..=18).contains(&k) {
        return Err(PyValueError::new_err(format!("k must be in 0..=18, got {k}")));
    }
    let b = InBuf::get(values, "values")?;
    let bytes = b.bytes();
    let mut out = Vec::new();
    let r = py.detach(|| descale_column(bytes, k as usize, big_endian, "value", &mut out));
    drop(b);
    r.map_err(PyValueError::new_err)?;
    buf(py, as_bytes(&out).to_vec())
}

/// `ticks_to_decimal128(buf, k)`: int64 values times 10^k as little-endian decimal128 (exact).
#[pyfunction]
fn ticks_to_decimal128(py: Python<'_>, values: &Bound<'_, PyAny>, k: i64) -> PyResult<Py<RustBuffer>> {
    if !(0..=18).contains(&k) {
        return Err(PyValueError::new_err(format!("k must be in 0..=18, got {k}")));
    }
    let b = InBuf::get(values, "values")?;
    let bytes = b.bytes();
    if bytes.len() % 8 != 0 {
        return Err(PyValueError::new_err("values must be whole int64"));
    }
    let out = py.detach(|| crate::fixed::scale128(bytes, k as usize));
    drop(b);
    buf(py, out)
}

fn buf(py: Python<'_>, data: Vec<u8>) -> PyResult<Py<RustBuffer>> {
    Py::new(py, RustBuffer { data })
}

/// Rebuild one book stream from its columns (see the module doc) with the GIL released.
///
/// Returns a dict: `rows`, `quotes` (row count; a row only where the top changed, see the module
/// doc), `quote_rows` (int64: per quote, the row index of its message's LAST row),
/// `timestamp`, `local_timestamp` (int64 buffers),
/// `bid_price`, `bid_amount`, `ask_price`, `ask_amount` (decimal128 mantissa buffers),
/// `bid_valid`, `ask_valid` (Arrow validity bitmaps), `snapshots` (row count),
/// `snapshot_timestamp`, `snapshot_local_timestamp`, `snapshot_levels` (int64, 4 x
/// snapshot_depth per row: ask price, ask amount, bid price, bid amount per level),
/// `snapshot_counts` (uint32 ask and bid level counts per row), and the final `best_bid`,
/// `best_ask` ((price, amount) ticks or None) and `synced`.
#[pyfunction]
#[pyo3(signature = (sides, prices, amounts, flags, timestamps, local_timestamps, *,
    price_width = 8, amount_width = 8, depth = 0, snapshot_depth = 0, interval_ns = 0, gaps = None,
    price_scale = 0, amount_scale = 0, out_price_scale = 0, out_amount_scale = 0,
    price_big_endian = false, amount_big_endian = false))]
#[allow(clippy::too_many_arguments)]
pub fn rebuild_book<'py>(
    py: Python<'py>,
    sides: &Bound<'py, PyAny>,
    prices: &Bound<'py, PyAny>,
    amounts: &Bound<'py, PyAny>,
    flags: &Bound<'py, PyAny>,
    timestamps: &Bound<'py, PyAny>,
    local_timestamps: &Bound<'py, PyAny>,
    price_width: i64,
    amount_width: i64,
    depth: i64,
    snapshot_depth: i64,
    interval_ns: i64,
    gaps: Option<&Bound<'py, PyAny>>,
    price_scale: i64,
    amount_scale: i64,
    out_price_scale: i64,
    out_amount_scale: i64,
    price_big_endian: bool,
    amount_big_endian: bool,
) -> PyResult<Bound<'py, PyDict>> {
    for (name, k) in [
        ("price_scale", price_scale),
        ("amount_scale", amount_scale),
        ("out_price_scale", out_price_scale),
        ("out_amount_scale", out_amount_scale),
    ] {
        if !(0..=18).contains(&k) {
            return Err(PyValueError::new_err(format!("{name} must be in 0..=18, got {k}")));
        }
    }
    if ((price_scale > 0 || price_big_endian) && price_width != 16)
        || ((amount_scale > 0 || amount_big_endian) && amount_width != 16)
    {
        return Err(PyValueError::new_err(
            "price_scale / amount_scale / *_big_endian apply to decimal128 columns (width 16) only",
        ));
    }
    if depth < 0 || snapshot_depth < 0 {
        return Err(PyValueError::new_err(format!(
            "depth and snapshot_depth must be >= 0, got {depth} and {snapshot_depth}"
        )));
    }
    let b_sides = InBuf::get(sides, "sides")?;
    let b_prices = InBuf::get(prices, "prices")?;
    let b_amounts = InBuf::get(amounts, "amounts")?;
    let b_flags = InBuf::get(flags, "flags")?;
    let b_ts = InBuf::get(timestamps, "timestamps")?;
    let b_lts = InBuf::get(local_timestamps, "local_timestamps")?;
    let b_gaps = match gaps {
        Some(g) if !g.is_none() => Some(InBuf::get(g, "gaps")?),
        _ => None,
    };
    let opts = Options {
        depth: depth as usize,
        snapshot_depth: snapshot_depth as usize,
        interval_ns,
    };
    let (s_sides, s_prices, s_amounts) = (b_sides.bytes(), b_prices.bytes(), b_amounts.bytes());
    let (s_flags, s_ts, s_lts) = (b_flags.bytes(), b_ts.bytes(), b_lts.bytes());
    let s_gaps = b_gaps.as_ref().map(|b| b.bytes()).unwrap_or(&[]);
    let result = py.detach(|| {
        std::panic::catch_unwind(|| {
            // DECIMAL(38, 18) columns: exact ticks first (one vectorized pass, error on a value
            // that is not a whole tick), then the int64 loop
            let (mut tp, mut ta) = (Vec::new(), Vec::new());
            let (mut prices, mut pw) = (s_prices, price_width as usize);
            let (mut amounts, mut aw) = (s_amounts, amount_width as usize);
            if price_scale > 0 || price_big_endian {
                descale_column(prices, price_scale as usize, price_big_endian, "price", &mut tp)?;
                prices = as_bytes(&tp);
                pw = 8;
            }
            if amount_scale > 0 || amount_big_endian {
                descale_column(amounts, amount_scale as usize, amount_big_endian, "amount", &mut ta)?;
                amounts = as_bytes(&ta);
                aw = 8;
            }
            let inp = Input {
                sides: s_sides,
                prices,
                amounts,
                flags: s_flags,
                timestamps: s_ts,
                local_timestamps: s_lts,
                price_width: pw,
                amount_width: aw,
                gaps: s_gaps,
            };
            let mut out = rebuild(&inp, &opts)?;
            for (col, k) in [
                (&mut out.q_bid_px, out_price_scale),
                (&mut out.q_ask_px, out_price_scale),
                (&mut out.q_bid_amt, out_amount_scale),
                (&mut out.q_ask_amt, out_amount_scale),
            ] {
                scale_in_place(col, k as usize);
            }
            Ok(out)
        })
        .unwrap_or_else(|_| Err("internal error in rebuild_book (panic)".to_string()))
    });
    drop((b_sides, b_prices, b_amounts, b_flags, b_ts, b_lts, b_gaps));
    let out = result.map_err(PyValueError::new_err)?;
    let d = PyDict::new(py);
    d.set_item("rows", out.rows)?;
    d.set_item("quotes", out.quotes)?;
    d.set_item("quote_rows", buf(py, out.q_rows)?)?;
    d.set_item("timestamp", buf(py, out.q_ts)?)?;
    d.set_item("local_timestamp", buf(py, out.q_lts)?)?;
    d.set_item("bid_price", buf(py, out.q_bid_px)?)?;
    d.set_item("bid_amount", buf(py, out.q_bid_amt)?)?;
    d.set_item("ask_price", buf(py, out.q_ask_px)?)?;
    d.set_item("ask_amount", buf(py, out.q_ask_amt)?)?;
    d.set_item("bid_valid", buf(py, out.q_bid_valid)?)?;
    d.set_item("ask_valid", buf(py, out.q_ask_valid)?)?;
    d.set_item("snapshots", out.snapshots)?;
    d.set_item("snapshot_timestamp", buf(py, out.s_ts)?)?;
    d.set_item("snapshot_local_timestamp", buf(py, out.s_lts)?)?;
    d.set_item("snapshot_levels", buf(py, out.s_levels)?)?;
    d.set_item("snapshot_counts", buf(py, out.s_counts)?)?;
    d.set_item("best_bid", out.best_bid)?;
    d.set_item("best_ask", out.best_ask)?;
    d.set_item("synced", out.synced)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RustBuffer>()?;
    m.add_function(wrap_pyfunction!(rebuild_book, m)?)?;
    m.add_function(wrap_pyfunction!(decimal128_to_ticks, m)?)?;
    m.add_function(wrap_pyfunction!(ticks_to_decimal128, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col8(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn quotes_and_snapshots() {
        // msg0 (t=10): snapshot bid 100, ask 101; msg1 (t=1500): bid 100 deleted; msg2 (t=2500)
        let sides = [0u8, 1, 0, 1];
        let prices = col8(&[100, 101, 100, 102]);
        let amounts = col8(&[5, 6, 0, 7]);
        let flags = [CLEAR, LAST, LAST, LAST];
        let ts = col8(&[1, 1, 2, 3]);
        let lts = col8(&[10, 10, 1500, 2500]);
        let inp = Input {
            sides: &sides,
            prices: &prices,
            amounts: &amounts,
            flags: &flags,
            timestamps: &ts,
            local_timestamps: &lts,
            price_width: 8,
            amount_width: 8,
            gaps: &[],
        };
        let out = rebuild(
            &inp,
            &Options {
                depth: 0,
                snapshot_depth: 2,
                interval_ns: 1000,
            },
        )
        .unwrap();
        // msg2 adds ask 102 behind the top 101: the top did not change, no quote
        assert_eq!(out.quotes, 2);
        assert_eq!(out.q_rows, col8(&[1, 2]));
        assert_eq!(out.q_bid_valid, vec![0b01]);
        assert_eq!(out.q_ask_valid, vec![0b11]);
        assert_eq!(out.snapshots, 2);
        assert_eq!(out.s_lts, col8(&[1000, 2000]));
        assert_eq!(out.s_ts, col8(&[1, 2]));
        // first snapshot: ask 101/6, bid 100/5
        assert_eq!(&out.s_levels[..32], &col8(&[101, 6, 100, 5])[..]);
        assert_eq!(out.best_ask, Some((101, 6)));
        assert_eq!(out.best_bid, None);
    }
}
