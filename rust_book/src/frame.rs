//! `FrameParser`: the one entry of every venue's hot frame parsing.
//!
//! A venue's hot path turns one WebSocket frame (or REST body) into messages with no Python
//! object per level or trade. Each of its parsers (Kraken: `BookParser`, `TradeParser`,
//! `DepthParser`) implements `FrameParser`, and the contract is the same for all:
//!
//! - `parse(frame)` reads the bytes as received (the `raw` row's payload) and returns
//!   `Ok(None)` when the frame is not this parser's kind of message (the caller tries its
//!   other parsers or paths), `Ok(Some(messages))` with one message per instrument the frame
//!   carries, in wire order, or `Err(reason)` for a frame of this kind in a form the parser
//!   does not take (invalid JSON, an unexpected shape, escapes it does not decode). A refusal is
//!   never a loss: the caller hands the frame to its Python reference path, which applies it or
//!   reports it as an `events` row. It never panics, on any input.
//! - Each message names its instrument as on the wire (`Message::symbol`); the caller picks
//!   the instrument context with it (precisions, the book, the trade memory) and applies the
//!   message to that context with the message's own `apply` (book messages: to an `OrderBook`
//!   and `BookRows`, returning the outcome: applied, checksum mismatch, too precise; trade
//!   messages: to `TradeRows` and `TradeMemory`, returning rows added, duplicates, errors).
//!   Parsing needs no instrument, so one frame with several pairs is parsed once.
//! - Exact text: prices and amounts stay wire text (`json.rs`) until `apply` parses them at
//!   the instrument's precisions (`fixed.rs`); times go through `rfc3339.rs` or the venue's own
//!   exact rule. Nothing goes through a float.
//!
//! A new venue (Binance, Coinbase) adds one module: its message `#[pyclass]`es, `impl
//! FrameParser` for each parser, a `#[pyfunction]` per parser calling `parse_to_py`, its
//! checksum `Algorithm` if it has one (checksum.rs), and one `register` line in lib.rs.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3::PyClass;

use crate::json::R;

/// One instrument's part of a frame.
pub trait Message {
    /// The instrument as the frame names it (e.g. Kraken v1 `XBT/USD`).
    fn symbol(&self) -> &str;
}

/// A venue's parser of one kind of frame (see the module doc for the contract).
pub trait FrameParser {
    type Message: Message;

    /// `Ok(None)`: not this kind of frame; `Ok(Some(..))`: its messages in wire order;
    /// `Err(reason)`: refused (the caller's reference path takes the frame). Never panics.
    fn parse(&self, frame: &[u8]) -> R<Option<Vec<Self::Message>>>;
}

/// `parser.parse(frame)` for Python: None, a list of the message objects, or ValueError with
/// the reason of a refusal.
pub fn parse_to_py<'py, P>(py: Python<'py>, parser: &P, frame: &[u8]) -> PyResult<Option<Bound<'py, PyList>>>
where
    P: FrameParser,
    P::Message: PyClass + Into<PyClassInitializer<P::Message>>,
{
    match parser.parse(frame) {
        Ok(None) => Ok(None),
        Ok(Some(msgs)) => {
            let items = msgs.into_iter().map(|m| Bound::new(py, m)).collect::<PyResult<Vec<_>>>()?;
            Ok(Some(PyList::new(py, items)?))
        }
        Err(e) => Err(PyValueError::new_err(e)),
    }
}
