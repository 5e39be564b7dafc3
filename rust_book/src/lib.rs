//! `lab.rust_book`: the L2 order book engine, exact fixed-point helpers and the venues' hot
//! frame parsers.
//!
//! Modules, lowest first (each imports only modules above it in this list; none imports this
//! root, which only declares them and registers their Python items):
//! - `rng`, `fixed`, `ladder`, `side`, `book`: a seeded generator, exact decimals, the pure-Rust
//!   book;
//! - `json`, `rfc3339`: the venue-neutral JSON scanner and time parser of the frame parsers;
//! - `checksum`: a book's checksum algorithm, chosen by name when the book is built;
//! - `bulk`, `workload`, `rows`, `trades`: buffers, the bulk rebuild, row and trade columns;
//! - `orderbook`: the `OrderBook` Python class (knows no venue);
//! - `replay`: `ReplayDriver`, the replay loop's hot path over `OrderBook`s;
//! - `frame`: `FrameParser`, the one entry every venue's frame parser implements;
//! - `journal`: the raw-journal record encoder;
//! - venue modules (`mock`, `kraken`, `binance`): their checksum algorithms, parsers and extra methods.

use pyo3::prelude::*;

pub mod binance;
pub mod book;
pub mod bulk;
pub mod checksum;
pub mod fixed;
pub mod frame;
pub mod journal;
pub mod json;
pub mod kraken;
pub mod ladder;
pub mod mock;
pub mod orderbook;
pub mod replay;
pub mod rfc3339;
pub mod rng;
pub mod rows;
pub mod side;
pub mod trades;
pub mod wire_levels;
pub mod workload;

pub use orderbook::OrderBook;
pub use rows::{FLAG_CLEAR, FLAG_LAST};

/// Every venue's book checksum algorithm, by the name `OrderBook(..., checksum=NAME)` takes.
static CHECKSUMS: [&checksum::Algorithm; 2] = [&mock::CHECKSUM, &kraken::CHECKSUM];

#[pymodule]
fn rust_book(m: &Bound<'_, PyModule>) -> PyResult<()> {
    checksum::install(&CHECKSUMS);
    orderbook::register(m)?;
    m.add_class::<rows::BookRows>()?;
    journal::register(m)?;
    bulk::register(m)?;
    workload::register(m)?;
    rfc3339::register(m)?;
    kraken::register(m)?;
    binance::register(m)?;
    mock::register(m)?;
    trades::register(m)?;
    replay::register(m)?;
    m.add("BID", 0)?;
    m.add("ASK", 1)?;
    m.add("FLAG_LAST", FLAG_LAST)?;
    m.add("FLAG_CLEAR", FLAG_CLEAR)?;
    m.add("MAX_PRECISION", fixed::MAX_PRECISION)?;
    Ok(())
}
