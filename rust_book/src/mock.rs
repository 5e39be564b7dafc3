//! The mock venue's book checksum (docs/PROTOCOLS.md, mock venue): CRC-32 of
//! `<price>:<amount>;` for every ask ascending then every bid descending, both as text at the
//! instrument's fixed precisions. Unsigned 32-bit.
//!
//! `CHECKSUM` is what `OrderBook(..., checksum="mock")` selects; `OrderBook.mock_checksum()`
//! computes it whatever the book's own kind (tests and the verifier compare books with it).

use pyo3::prelude::*;

use crate::book::Book;
use crate::checksum::Algorithm;
use crate::fixed::push_fixed;
use crate::orderbook::OrderBook;

pub static CHECKSUM: Algorithm = Algorithm { name: "mock", compute: checksum };

/// The mock checksum of `book` at the given precisions.
pub fn checksum(book: &Book, price_precision: u32, amount_precision: u32) -> u32 {
    // hashed in chunks: a deep book's text is never held whole
    const FLUSH: usize = 8192;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf: Vec<u8> = Vec::with_capacity(FLUSH + 128);
    for (p, a) in book.asks().iter_best_first().chain(book.bids().iter_best_first()) {
        push_fixed(&mut buf, p, price_precision);
        buf.push(b':');
        push_fixed(&mut buf, a, amount_precision);
        buf.push(b';');
        if buf.len() >= FLUSH {
            hasher.update(&buf);
            buf.clear();
        }
    }
    hasher.update(&buf);
    hasher.finalize()
}

#[pymethods]
impl OrderBook {
    /// Mock venue checksum (CRC-32 of "<price>:<amount>;" for all asks ascending then all bids
    /// descending, fixed precision). Unsigned 32-bit.
    fn mock_checksum(&self) -> u32 {
        checksum(&self.book, self.price_precision, self.amount_precision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rule() {
        let mut b = Book::new(0);
        b.side_mut(false).set(9990, 150_000_000);
        b.side_mut(false).set(10000, 5);
        b.side_mut(true).set(10010, 200_000_000);
        let text = b"100.10:2.00000000;100.00:0.00000005;99.90:1.50000000;";
        assert_eq!(checksum(&b, 2, 8), crc32fast::hash(text));
        assert_eq!(checksum(&Book::new(0), 2, 8), crc32fast::hash(b""));
        // longer than one flush: the same as hashing the text at once
        let mut big = Book::new(0);
        let mut text = Vec::new();
        for k in 0..2000i64 {
            big.side_mut(true).set(20000 + k, 1);
            text.extend_from_slice(format!("{}.{:02}:0.00000001;", (20000 + k) / 100, (20000 + k) % 100).as_bytes());
        }
        assert_eq!(checksum(&big, 2, 8), crc32fast::hash(&text));
    }
}
