//! Reading JSON in place: a value is the byte range it spans in the body, never a copied tree.
//!
//! Why: a tree costs 15-20 times the bytes of a body made of tiny objects (an 8 MB body of
//! `{"type":"text","text":""}` parts took over 150 MB), so a few such bodies at once could take
//! the process down; and the relay reads one small field (`usage`) out of every answer, where a
//! full parse of a kilobyte of content to reach it cost more than the rest of reading it. Here
//! reading a field walks the bytes again instead; what a step keeps is a handful of byte ranges.
//!
//! Validation reads bodies that passed `validate::strict` (valid UTF-8 JSON, no duplicate keys,
//! nesting within 128). On bytes that did not (Groq's answers), nothing panics: a walk stops
//! early and answers `None` or an empty iteration, and a value read from them is only bytes to
//! hand to a parser, never proof that the document is valid.

use std::borrow::Cow;

use serde_json::Number;

/// JSON's kinds of value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

/// One JSON value: exactly its bytes in the body, without surrounding whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a>(&'a [u8]);

/// An object's key: the bytes between its quotes, escapes not yet decoded.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a>(&'a [u8]);

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).copied().is_some_and(is_space) {
        at += 1;
    }
    at
}

/// The index just past the string whose opening quote is at `at`.
fn string_end(bytes: &[u8], at: usize) -> usize {
    let mut i = at + 1;
    // Most strings of a request are short (keys, roles, part types): a plain loop over the first
    // bytes costs less than setting up `memchr`.
    let short = bytes.len().min(i + 16);
    while i < short {
        match bytes[i] {
            b'"' => return i + 1,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    loop {
        match bytes.get(i..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
            None => return bytes.len(),
            Some(n) if bytes.get(i + n) == Some(&b'"') => return i + n + 1,
            // A backslash escapes the next byte, whatever it is.
            Some(n) => i += n + 2,
        }
    }
}

/// The index just past the value that starts at `at` (which is not whitespace).
fn value_end(bytes: &[u8], at: usize) -> usize {
    match bytes.get(at) {
        None => at,
        Some(b'"') => string_end(bytes, at),
        Some(b'{' | b'[') => {
            // Iterative, so no input can deepen the stack here.
            let mut depth = 0usize;
            let mut i = at;
            while let Some(&b) = bytes.get(i) {
                match b {
                    b'"' => {
                        i = string_end(bytes, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            bytes.len()
        }
        // A number or a literal: up to the next delimiter.
        Some(_) => {
            let mut i = at;
            while bytes
                .get(i)
                .is_some_and(|&b| !is_space(b) && !matches!(b, b',' | b']' | b'}' | b':'))
            {
                i += 1;
            }
            i
        }
    }
}

/// The decoded text of a JSON string literal (quotes included in `quoted`).
fn decode(quoted: &[u8]) -> Option<Cow<'_, str>> {
    let inner = quoted.get(1..quoted.len().checked_sub(1)?)?;
    if memchr::memchr(b'\\', inner).is_none() {
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    } else {
        serde_json::from_slice::<String>(quoted).ok().map(Cow::Owned)
    }
}

impl<'a> Raw<'a> {
    /// The document `body` holds; `None` for a body of only whitespace.
    pub fn root(body: &'a [u8]) -> Option<Raw<'a>> {
        let start = skip_space(body, 0);
        let end = value_end(body, start);
        (end > start).then(|| Raw(&body[start..end]))
    }

    /// For bytes nobody checked (Groq's answers): calls `each` with every member of the object
    /// `body` holds, in one walk. `false` when `body` is not one whole object (not an object,
    /// cut short, or followed by anything but whitespace): its members are then not to be
    /// trusted, and the caller leaves the document to a parser.
    pub fn members_of_whole(body: &'a [u8], mut each: impl FnMut(Key<'a>, Raw<'a>)) -> bool {
        let start = skip_space(body, 0);
        let mut end = body.len();
        while end > start && is_space(body[end - 1]) {
            end -= 1;
        }
        let Some(object) = body.get(start..end).filter(|o| o.first() == Some(&b'{')) else {
            return false;
        };
        let mut entries = Entries { bytes: object, at: 1 };
        for (key, value) in entries.by_ref() {
            each(key, value);
        }
        // The walk stops on the object's closing brace only when every member was whole.
        entries.at + 1 == object.len() && object.last() == Some(&b'}')
    }

    /// Where this value is in `body`, if it was read from there.
    pub fn span_in(self, body: &[u8]) -> Option<(usize, usize)> {
        let start = (self.0.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
        let end = start.checked_add(self.0.len())?;
        (end <= body.len()).then_some((start, end))
    }

    /// The value `span_in` found in `body`.
    pub fn at(body: &'a [u8], (start, end): (usize, usize)) -> Option<Raw<'a>> {
        body.get(start..end).map(Raw)
    }

    /// The value's exact bytes.
    pub fn bytes(self) -> &'a [u8] {
        self.0
    }

    pub fn kind(self) -> Kind {
        match self.0.first() {
            Some(b'n') | None => Kind::Null,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'"') => Kind::String,
            Some(b'[') => Kind::Array,
            Some(b'{') => Kind::Object,
            Some(_) => Kind::Number,
        }
    }

    pub fn is_null(self) -> bool {
        self.kind() == Kind::Null
    }

    pub fn is_string(self) -> bool {
        self.kind() == Kind::String
    }

    pub fn is_array(self) -> bool {
        self.kind() == Kind::Array
    }

    pub fn is_object(self) -> bool {
        self.kind() == Kind::Object
    }

    pub fn as_bool(self) -> Option<bool> {
        match self.0 {
            b"true" => Some(true),
            b"false" => Some(false),
            _ => None,
        }
    }

    /// The decoded string, borrowed from the body unless it holds escapes.
    pub fn as_str(self) -> Option<Cow<'a, str>> {
        if self.kind() == Kind::String {
            decode(self.0)
        } else {
            None
        }
    }

    /// Whether this is the string `text` (escapes decoded).
    pub fn is_str(self, text: &str) -> bool {
        self.as_str().is_some_and(|s| s == text)
    }

    /// The number as serde_json reads it (so exactly what a tree would have held).
    pub fn as_number(self) -> Option<Number> {
        if self.kind() == Kind::Number {
            serde_json::from_slice(self.0).ok()
        } else {
            None
        }
    }

    pub fn as_f64(self) -> Option<f64> {
        self.as_number().and_then(|n| n.as_f64())
    }

    pub fn as_u64(self) -> Option<u64> {
        self.as_number().and_then(|n| n.as_u64())
    }

    /// An array's items in order; nothing for any other kind.
    pub fn items(self) -> Items<'a> {
        Items {
            bytes: self.0,
            at: if self.is_array() { 1 } else { self.0.len() },
        }
    }

    /// An object's entries in order; nothing for any other kind.
    pub fn entries(self) -> Entries<'a> {
        Entries {
            bytes: self.0,
            at: if self.is_object() { 1 } else { self.0.len() },
        }
    }

    /// Where each entry of an object starts, as offsets for [`Raw::entry_at`]: four bytes an
    /// entry, for the few readers that must reorder them.
    pub fn entry_offsets(self) -> impl Iterator<Item = u32> + 'a {
        let mut entries = self.entries();
        std::iter::from_fn(move || {
            let at = entries.at as u32;
            entries.next().map(|_| at)
        })
    }

    /// The entry starting at `offset` (from [`Raw::entry_offsets`]).
    pub fn entry_at(self, offset: u32) -> Option<(Key<'a>, Raw<'a>)> {
        if !self.is_object() {
            return None;
        }
        Entries {
            bytes: self.0,
            at: offset as usize,
        }
        .next()
    }

    /// The value of `key` in an object (keys are unique: `strict` refused duplicates).
    pub fn get(self, key: &str) -> Option<Raw<'a>> {
        self.entries().find(|(k, _)| k.is(key)).map(|(_, v)| v)
    }

    /// An array's items, each with the values of several keys when it is an object (see
    /// [`Raw::pick`]): one walk over the items, where `items` then `pick` would take two.
    pub fn items_picking<const N: usize>(
        self,
        names: &'a [&'a str; N],
    ) -> impl Iterator<Item = (Raw<'a>, [Option<Raw<'a>>; N])> + 'a {
        let bytes = self.0;
        let mut at = if self.is_array() { 1 } else { bytes.len() };
        std::iter::from_fn(move || {
            let start = skip_space(bytes, at);
            if matches!(bytes.get(start), None | Some(b']')) {
                at = bytes.len();
                return None;
            }
            let mut found = [None; N];
            let end = if bytes.get(start) == Some(&b'{') {
                let mut entries = Entries { bytes, at: start + 1 };
                for (key, value) in entries.by_ref() {
                    if let Some(i) = key.position_in(names) {
                        found[i] = Some(value);
                    }
                }
                if bytes.get(entries.at) == Some(&b'}') {
                    entries.at + 1
                } else {
                    value_end(bytes, start)
                }
            } else {
                value_end(bytes, start)
            };
            if end <= start {
                at = bytes.len();
                return None;
            }
            let next = skip_space(bytes, end);
            at = if bytes.get(next) == Some(&b',') { next + 1 } else { next };
            bytes.get(start..end).map(|item| (Raw(item), found))
        })
    }

    /// The values of several keys, in one walk of the object: `names[i]`'s value at `[i]`.
    pub fn pick<const N: usize>(self, names: &[&str; N]) -> [Option<Raw<'a>>; N] {
        let mut found = [None; N];
        for (key, value) in self.entries() {
            if let Some(i) = key.position_in(names) {
                found[i] = Some(value);
            }
        }
        found
    }
}

/// A string value equals its decoded text (as `serde_json::Value` does).
impl PartialEq<&str> for Raw<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.is_str(other)
    }
}

impl<'a> Key<'a> {
    /// The bytes between the quotes, as sent.
    pub fn raw(self) -> &'a [u8] {
        self.0
    }

    pub fn has_escapes(self) -> bool {
        memchr::memchr(b'\\', self.0).is_some()
    }

    /// The decoded key.
    pub fn text(self) -> Cow<'a, str> {
        if self.has_escapes() {
            let mut quoted = Vec::with_capacity(self.0.len() + 2);
            quoted.push(b'"');
            quoted.extend_from_slice(self.0);
            quoted.push(b'"');
            match serde_json::from_slice::<String>(&quoted) {
                Ok(text) => Cow::Owned(text),
                Err(_) => Cow::Borrowed(""),
            }
        } else {
            String::from_utf8_lossy(self.0)
        }
    }

    /// Whether the decoded key is `name`.
    pub fn is(self, name: &str) -> bool {
        if self.has_escapes() {
            self.text() == name
        } else {
            self.0 == name.as_bytes()
        }
    }

    /// Where the decoded key is in `names`.
    pub fn position_in(self, names: &[&str]) -> Option<usize> {
        if self.has_escapes() {
            let text = self.text();
            names.iter().position(|n| *n == text)
        } else {
            names.iter().position(|n| n.as_bytes() == self.0)
        }
    }
}

/// See [`Raw::items`].
pub struct Items<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Raw<'a>;

    fn next(&mut self) -> Option<Raw<'a>> {
        let start = skip_space(self.bytes, self.at);
        if matches!(self.bytes.get(start), None | Some(b']')) {
            self.at = self.bytes.len();
            return None;
        }
        let end = value_end(self.bytes, start);
        if end == start {
            self.at = self.bytes.len();
            return None;
        }
        let next = skip_space(self.bytes, end);
        self.at = if self.bytes.get(next) == Some(&b',') {
            next + 1
        } else {
            next
        };
        self.bytes.get(start..end).map(Raw)
    }
}

/// See [`Raw::entries`].
pub struct Entries<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (Key<'a>, Raw<'a>);

    fn next(&mut self) -> Option<(Key<'a>, Raw<'a>)> {
        let key_start = skip_space(self.bytes, self.at);
        if self.bytes.get(key_start) != Some(&b'"') {
            // Left on the closing brace, for `items_picking`.
            self.at = key_start;
            return None;
        }
        let key_end = string_end(self.bytes, key_start);
        let colon = skip_space(self.bytes, key_end);
        let start = skip_space(self.bytes, colon + 1);
        let end = value_end(self.bytes, start);
        if end == start {
            self.at = self.bytes.len();
            return None;
        }
        let next = skip_space(self.bytes, end);
        self.at = if self.bytes.get(next) == Some(&b',') {
            next + 1
        } else {
            next
        };
        let key = self.bytes.get(key_start + 1..key_end.saturating_sub(1))?;
        let value = self.bytes.get(start..end)?;
        Some((Key(key), Raw(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Raw<'_> {
        Raw::root(text.as_bytes()).expect("a value")
    }

    #[test]
    fn walks_values_in_place() {
        let doc =
            root(" {\"a\" : [1, -2.5e3 ,\"x\\\"]\" , {\"b\":[]}, true,null] ,\"c\\u0064\":{}, \"e\":\"\\u00e9\"}\n");
        assert_eq!(doc.kind(), Kind::Object);
        let items: Vec<&[u8]> = doc.get("a").expect("a").items().map(Raw::bytes).collect();
        assert_eq!(
            items,
            [&b"1"[..], b"-2.5e3", b"\"x\\\"]\"", b"{\"b\":[]}", b"true", b"null"]
        );
        assert_eq!(
            doc.get("cd").map(Raw::bytes),
            Some(&b"{}"[..]),
            "escaped keys are decoded"
        );
        assert_eq!(doc.get("e").and_then(Raw::as_str).as_deref(), Some("é"));
        assert_eq!(
            doc.get("a").and_then(|a| a.items().nth(1)).and_then(Raw::as_f64),
            Some(-2500.0)
        );
        let [a, missing, cd] = doc.pick(&["a", "zz", "cd"]);
        assert!(a.is_some_and(Raw::is_array) && missing.is_none() && cd.is_some_and(Raw::is_object));
        let picked: Vec<_> = root(r#"[{"b":1,"a":[2]} , 3, {}]"#)
            .items_picking(&["a", "b"])
            .collect();
        assert_eq!(picked.len(), 3);
        assert_eq!(picked[0].0.bytes(), br#"{"b":1,"a":[2]}"#);
        assert_eq!(picked[0].1.map(|v| v.map(Raw::bytes)), [Some(&b"[2]"[..]), Some(b"1")]);
        assert_eq!((picked[1].0.bytes(), picked[1].1), (&b"3"[..], [None, None]));
        assert_eq!(picked[2].0.bytes(), b"{}");
        assert_eq!(root("[]").items().count(), 0);
        assert_eq!(root("{ }").entries().count(), 0);
        assert_eq!(root("\"s\"").items().count(), 0, "a string has no items");
    }

    #[test]
    fn never_panics_on_broken_bytes() {
        for text in [
            "{\"a",
            "[1,",
            "{\"a\":",
            "\"abc",
            "[{]",
            "}",
            "{\"a\"}",
            "[\"\\",
            "[:",
            "{\"a\"::1}",
        ] {
            if let Some(doc) = Raw::root(text.as_bytes()) {
                let _ = doc.items().count();
                let _ = doc.items_picking(&["a"]).count();
                let _ = doc.entries().count();
                let _ = doc.get("a");
                let _ = doc.as_str();
            }
        }
    }

    #[test]
    fn an_unchecked_object_is_read_only_when_whole() {
        let members = |body: &[u8]| {
            let mut seen = Vec::new();
            let whole = Raw::members_of_whole(body, |k, v| seen.push((k.text().into_owned(), v.bytes().to_vec())));
            whole.then_some(seen)
        };
        let whole = br#" {"usage":{"a":[1,"}"]},"x":"\"}"} "#;
        assert_eq!(
            members(whole),
            Some(vec![
                ("usage".to_owned(), br#"{"a":[1,"}"]}"#.to_vec()),
                ("x".to_owned(), br#""\"}""#.to_vec())
            ])
        );
        assert_eq!(members(b"{}"), Some(vec![]));
        for cut in [
            &br#"{"usage":{"a":1}"#[..],
            br#"{"usage":{"a":"}}"#,
            br#"{"usage":1,"x":"ab"#,
            br#"{"usage":1} trailing"#,
            br#"{"usage":1}}"#,
            br#"[{"usage":1}]"#,
            b"",
        ] {
            assert_eq!(members(cut), None, "{}", String::from_utf8_lossy(cut));
        }
    }
}
