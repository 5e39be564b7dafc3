//! A small JSON scanner for venue frames: every number and string is kept as its exact wire
//! text (byte ranges into the payload), so prices and quantities never go through a float and
//! trailing zeros survive (a venue checksum can depend on them). Shared by the venue parsers
//! (kraken.rs today); it knows no venue.
//!
//! `parse_json` validates the whole document (UTF-8, grammar, nesting at most 32 deep) and
//! returns the tree of `V`; `plain`, `get` and `has` read it.

/// A JSON value as byte ranges into the payload (numbers and strings keep their wire text).
pub enum V {
    Null,
    Bool,
    /// number text [start, end)
    Num(usize, usize),
    /// string content [start, end) between the quotes, and whether it holds escapes
    Str(usize, usize, bool),
    Arr(Vec<V>),
    /// (key content start, key end, key escaped, value)
    Obj(Vec<(usize, usize, bool, V)>),
}

const MAX_NESTING: u32 = 32;

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
    nesting: u32,
}

/// A parse result: the error is a one-line reason.
pub type R<T> = Result<T, String>;

impl<'a> Scanner<'a> {
    fn err<T>(&self, what: &str) -> R<T> {
        Err(format!("invalid JSON at byte {}: {what}", self.i))
    }

    #[inline]
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self) -> R<V> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return self.err("unexpected end");
        };
        match c {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => {
                let (a, b, e) = self.string()?;
                Ok(V::Str(a, b, e))
            }
            b't' => self.literal(b"true", V::Bool),
            b'f' => self.literal(b"false", V::Bool),
            b'n' => self.literal(b"null", V::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => self.err("unexpected character"),
        }
    }

    fn literal(&mut self, word: &[u8], v: V) -> R<V> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("bad literal")
        }
    }

    fn enter(&mut self) -> R<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return self.err("nested too deeply");
        }
        self.i += 1;
        Ok(())
    }

    fn array(&mut self) -> R<V> {
        self.enter()?;
        let mut out = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            self.nesting -= 1;
            return Ok(V::Arr(out));
        }
        loop {
            out.push(self.value()?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.nesting -= 1;
                    return Ok(V::Arr(out));
                }
                _ => return self.err("expected ',' or ']'"),
            }
        }
    }

    fn object(&mut self) -> R<V> {
        self.enter()?;
        let mut out = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.nesting -= 1;
            return Ok(V::Obj(out));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return self.err("expected a key");
            }
            let (a, b, e) = self.string()?;
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return self.err("expected ':'");
            }
            self.i += 1;
            let v = self.value()?;
            out.push((a, b, e, v));
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.nesting -= 1;
                    return Ok(V::Obj(out));
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }

    /// At the opening quote; returns the content range and whether it has escapes.
    fn string(&mut self) -> R<(usize, usize, bool)> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok((start, self.i - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.s.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let hex = self.s.get(self.i + 2..self.i + 6);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return self.err("bad \\u escape");
                            }
                            self.i += 6;
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                0..=0x1f => return self.err("control character in string"),
                _ => self.i += 1,
            }
        }
        self.err("unterminated string")
    }

    fn number(&mut self) -> R<V> {
        let s = self.s;
        let start = self.i;
        let mut i = self.i;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        match s.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while s.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => {
                self.i = i;
                return self.err("bad number");
            }
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            let f = i;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == f {
                self.i = i;
                return self.err("bad number");
            }
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let e = i;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == e {
                self.i = i;
                return self.err("bad number");
            }
        }
        self.i = i;
        Ok(V::Num(start, i))
    }
}

pub fn parse_json(s: &[u8]) -> R<V> {
    if std::str::from_utf8(s).is_err() {
        return Err("invalid JSON: not UTF-8".into());
    }
    let mut sc = Scanner { s, i: 0, nesting: 0 };
    let v = sc.value()?;
    sc.ws();
    if sc.i != s.len() {
        return sc.err("trailing data");
    }
    Ok(v)
}

/// Plain (escape-free) text of a string or number value.
pub fn plain<'a>(s: &'a [u8], v: &V) -> Option<&'a [u8]> {
    match *v {
        V::Str(a, b, false) | V::Num(a, b) => Some(&s[a..b]),
        _ => None,
    }
}

pub fn get<'v>(s: &[u8], obj: &'v [(usize, usize, bool, V)], key: &[u8]) -> Option<&'v V> {
    // keys with escapes never match the plain ASCII keys Kraken uses; a repeated key: the last
    // one wins, as in Python's json and orjson (the reference paths)
    obj.iter().rev().find(|(a, b, e, _)| !e && &s[*a..*b] == key).map(|(_, _, _, v)| v)
}

pub fn has(s: &[u8], obj: &[(usize, usize, bool, V)], key: &[u8]) -> bool {
    get(s, obj, key).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        let doc = b"[1,{\"a\":[\"1.0\"],\"a\":2},\"x\",-0.50e+3]";
        let V::Arr(items) = parse_json(doc).unwrap() else { panic!() };
        assert_eq!(items.len(), 4);
        let V::Obj(o) = &items[1] else { panic!() };
        // a repeated key: the last one wins
        assert!(matches!(get(doc, o, b"a"), Some(V::Num(..))));
        assert!(has(doc, o, b"a") && !has(doc, o, b"b"));
        assert_eq!(plain(doc, &items[3]), Some(&b"-0.50e+3"[..]));
        assert_eq!(plain(doc, &items[2]), Some(&b"x"[..]));
        for bad in [&b"[1,"[..], b"{\"a\" 1}", b"[01]", b"[1.]", b"\"\\x\"", b"[1] x", b"\xff", b"", b"[\"\x01\"]", b"tru"] {
            assert!(parse_json(bad).is_err(), "{:?}", bad);
        }
        let deep = vec![b'['; 100];
        assert!(parse_json(&deep).is_err());
        let ok_deep = [vec![b'['; 32], vec![b']'; 32]].concat();
        assert!(parse_json(&ok_deep).is_ok());
    }
}
