//! A book's checksum algorithm, chosen once when the book is built.
//!
//! The algorithms themselves belong to the venues that define them (mock.rs, kraken.rs): each
//! venue module exports an `Algorithm` (its name, as the venue's Python side passes it to
//! `OrderBook(..., checksum=NAME)`, and its function over the book). The crate root installs
//! the list once at import (`install`); this module only keeps the list and looks names up, so
//! it names no venue and imports none: the venue modules import the book, never the reverse.

use std::sync::OnceLock;

use crate::book::Book;

/// One venue's book checksum: `compute(book, price_precision, amount_precision)`.
pub struct Algorithm {
    pub name: &'static str,
    pub compute: fn(&Book, u32, u32) -> u32,
}

/// How a book verifies a venue's checksum.
#[derive(Clone, Copy, Default)]
pub enum Checksum {
    /// The venue sends none: a message carrying one cannot be verified (an error, not a pass).
    #[default]
    None,
    /// The venue's algorithm.
    Algorithm(&'static Algorithm),
}

static INSTALLED: OnceLock<&'static [&'static Algorithm]> = OnceLock::new();

/// Install the venues' algorithms (the crate root, once at import; later calls keep the first).
pub fn install(algorithms: &'static [&'static Algorithm]) {
    let _ = INSTALLED.set(algorithms);
}

impl Checksum {
    /// `"none"` / `""` or the name of an algorithm in `algorithms`.
    pub fn lookup(name: &str, algorithms: &[&'static Algorithm]) -> Result<Checksum, String> {
        if name.is_empty() || name == "none" {
            return Ok(Checksum::None);
        }
        match algorithms.iter().find(|a| a.name == name) {
            Some(a) => Ok(Checksum::Algorithm(a)),
            None => {
                let mut known: Vec<&str> = vec!["none"];
                known.extend(algorithms.iter().map(|a| a.name));
                Err(format!("unknown checksum {name:?} (known: {})", known.join(", ")))
            }
        }
    }

    /// `lookup` among the installed algorithms.
    pub fn from_name(name: &str) -> Result<Checksum, String> {
        Checksum::lookup(name, INSTALLED.get().copied().unwrap_or(&[]))
    }

    /// The name `from_name` takes back.
    pub fn name(&self) -> &'static str {
        match self {
            Checksum::None => "none",
            Checksum::Algorithm(a) => a.name,
        }
    }

    /// The book's checksum, None when the kind is `None`.
    #[inline]
    pub fn compute(&self, book: &Book, price_precision: u32, amount_precision: u32) -> Option<u32> {
        match self {
            Checksum::None => None,
            Checksum::Algorithm(a) => Some((a.compute)(book, price_precision, amount_precision)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static COUNT: Algorithm = Algorithm { name: "count", compute: |b, _, _| (b.bids().len() + b.asks().len()) as u32 };
    static ALGOS: [&Algorithm; 1] = [&COUNT];

    #[test]
    fn lookup_and_compute() {
        let mut b = Book::new(0);
        b.side_mut(false).set(100, 1);
        b.side_mut(true).set(101, 1);
        let c = Checksum::lookup("count", &ALGOS).unwrap();
        assert_eq!((c.name(), c.compute(&b, 2, 8)), ("count", Some(2)));
        for none in ["", "none"] {
            let c = Checksum::lookup(none, &ALGOS).unwrap();
            assert_eq!((c.name(), c.compute(&b, 2, 8)), ("none", None));
        }
        let e = Checksum::lookup("crc64", &ALGOS).err().unwrap();
        assert_eq!(e, "unknown checksum \"crc64\" (known: none, count)");
    }
}
