//! The common case of the strict check in one cheap walk: a body that is plainly one valid JSON document with no duplicate keys.
//!
//! Why: the exact pass (`strict`) drives serde_json over the whole body, about 4 instructions a
//! byte, to word every error the way serde_json does. Almost every request is valid, and for a
//! valid one no wording is needed, only the yes. This walk says yes only when serde_json would
//! certainly accept the document and no object repeats a key; on anything unusual (an error, but
//! also an escaped key, a number with an exponent, a surrogate pair's lone half, an object of
//! more than [`SMALL`] keys, deep nesting) it says "not sure" and the exact pass decides and
//! words the answer. So its only cost on an odd body is the walk itself, and it can never make
//! an error message differ.
//!
//! String bodies, where the bytes of a request are, are searched with `memchr` for their end
//! and checked for control and non-ASCII bytes in one vectorised pass.

/// Objects with more keys than this are left to the exact pass.
const SMALL: usize = 16;

/// Keys of all open objects it keeps at most (object keys are compared by their bytes).
const KEYS: usize = 64;

/// Deeper nesting is left to the exact pass (serde_json's limit is 128).
const DEPTH: u32 = 64;

/// What the walk saw of a document it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plain {
    /// Whether a string holds `\u0000` (the only way JSON spells U+0000).
    pub nul: bool,
}

/// `Some` when `bytes` is certainly a single JSON document serde_json accepts, with no
/// duplicate keys; `None` when not sure.
pub fn plain(bytes: &[u8]) -> Option<Plain> {
    let mut walk = Walk {
        b: bytes,
        at: 0,
        keys: [(0, 0); KEYS],
        open_keys: 0,
        nul: false,
    };
    walk.space();
    walk.value(0)?;
    walk.space();
    (walk.at == bytes.len()).then_some(Plain { nul: walk.nul })
}

struct Walk<'a> {
    b: &'a [u8],
    at: usize,
    /// The keys of the open objects, outermost first, as byte ranges of `b`.
    keys: [(usize, usize); KEYS],
    open_keys: usize,
    nul: bool,
}

fn hex4(digits: &[u8]) -> Option<u32> {
    let digits = digits.get(..4)?;
    let mut value = 0;
    for &d in digits {
        value = value * 16 + char::from(d).to_digit(16)?;
    }
    Some(value)
}

impl Walk<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.b.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// Integers and plain decimals only: an exponent could overflow f64, so it is left to the
    /// exact pass, as is any number of more than 100 characters.
    fn number(&mut self) -> Option<()> {
        let b = self.b;
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = self.at + usize::from(b.get(self.at) == Some(&b'-'));
        i = match b.get(i)? {
            b'0' => i + 1,
            b'1'..=b'9' => digits(i + 1),
            _ => return None,
        };
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) || i - self.at > 100 {
            return None;
        }
        self.at = i;
        Some(())
    }

    /// Reads the string whose opening quote is at `at`; `Some(true)` when it holds escapes.
    fn string(&mut self) -> Option<bool> {
        let b = self.b;
        let mut i = self.at + 1;
        let mut escaped = false;
        loop {
            let rest = b.get(i..)?;
            let n = memchr::memchr2(b'"', b'\\', rest)?;
            let run = rest.get(..n)?;
            // Control bytes and non-ASCII ones at once (as signed bytes, both are below 0x20).
            if run.iter().fold(false, |any, &c| any | ((c as i8) < 0x20)) {
                // Escapes and quotes are ASCII, so a character never spans two runs.
                if run.iter().any(|&c| c < 0x20) {
                    return None;
                }
                std::str::from_utf8(run).ok()?;
            }
            i += n;
            if b.get(i) == Some(&b'"') {
                self.at = i + 1;
                return Some(escaped);
            }
            escaped = true;
            i = self.escape(i)?;
        }
    }

    /// The index past the escape at `i`; a surrogate must be a high one followed by a low one.
    fn escape(&mut self, i: usize) -> Option<usize> {
        let b = self.b;
        match b.get(i + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 2),
            b'u' => match hex4(b.get(i + 2..)?)? {
                0 => {
                    self.nul = true;
                    Some(i + 6)
                }
                0xd800..=0xdbff => {
                    let low = (b.get(i + 6..i + 8)? == b"\\u").then(|| hex4(b.get(i + 8..)?))??;
                    (0xdc00..=0xdfff).contains(&low).then_some(i + 12)
                }
                0xdc00..=0xdfff => None,
                _ => Some(i + 6),
            },
            _ => None,
        }
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if depth > DEPTH {
            return None;
        }
        self.at += 1;
        self.space();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.value(depth)?;
            self.space();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.space();
                }
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: u32) -> Option<()> {
        if depth > DEPTH {
            return None;
        }
        self.at += 1;
        self.space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        let from = self.open_keys;
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let start = self.at + 1;
            if self.string()? {
                return None; // an escaped key: its decoded text is the exact pass's to compare
            }
            let end = self.at - 1;
            let key = self.b.get(start..end)?;
            if self.open_keys - from >= SMALL || self.open_keys >= KEYS {
                return None;
            }
            let earlier = self.keys.get(from..self.open_keys)?;
            if earlier.iter().any(|&(s, e)| self.b.get(s..e) == Some(key)) {
                return None;
            }
            self.keys[self.open_keys] = (start, end);
            self.open_keys += 1;
            self.space();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.space();
            self.value(depth)?;
            self.space();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.space();
                }
                b'}' => {
                    self.at += 1;
                    self.open_keys = from;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
#[path = "quick_tests.rs"]
mod tests;
