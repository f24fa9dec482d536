//! Checking that the request body is one JSON document with nothing a lenient parser would silently pick a side on, without building it.
//!
//! Why duplicates matter: `serde_json::Value` keeps the last of two duplicate keys, while another
//! parser (Groq's) may keep the first, so the gateway would validate one request and forward
//! another. Here a duplicate key anywhere is an error. Everything else (lone surrogates, invalid
//! UTF-8, numbers that overflow f64, nesting past serde_json's recursion limit of 128, trailing
//! garbage) is already an error in serde_json; this module only words them for the client.
//!
//! Why no tree: a tree costs 15-20 times the bytes of a body of tiny objects. The pass keeps
//! only the keys of the objects it is inside, as 4-byte references into the body, so it costs
//! at most a few bytes per key of the open objects whatever the body holds. An object's keys are
//! compared one by one while it has up to [`SMALL`] of them (every real request); past that
//! they are sorted once when it ends. The error must still name the duplicate a reader meets
//! first, at its position, so when a late check finds one, the pass runs again and stops there.

use std::{borrow::Cow, fmt};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::quick;
pub use super::quick::Plain;

/// Objects with up to this many keys are checked key by key as they are read.
const SMALL: usize = 16;

/// Key references point into the body, or (this bit set) into the arena of escaped keys.
const ARENA: u32 = 1 << 31;

/// Checks that `bytes` is a single JSON document with no duplicate keys. The cheap walk
/// (`quick`) answers for plainly valid bodies; anything else takes the exact pass, whose
/// messages are serde_json's.
pub fn check(bytes: &[u8]) -> Result<Plain, String> {
    if bytes.len() >= ARENA as usize {
        return Err("request body is too large to validate".to_owned());
    }
    if let Some(plain) = quick::plain(bytes) {
        return Ok(plain);
    }
    exact(bytes)?;
    Ok(Plain {
        // Over-approximated (an escaped backslash before `u0000` counts too): the NUL check
        // itself is exact, this only spares it bodies that cannot hold a NUL.
        nul: memchr::memmem::find(bytes, b"\\u0000").is_some(),
    })
}

/// The pass that words every error the way serde_json does.
fn exact(bytes: &[u8]) -> Result<(), String> {
    let mut pass = Pass::new(bytes, None);
    let Err(error) = pass.run() else {
        return Ok(());
    };
    let Some(target) = pass.first_duplicate() else {
        return Err(describe(error));
    };
    // A duplicate found late: read again up to it, so the message and its position are the
    // ones a reader meeting it first would give.
    let mut again = Pass::new(bytes, Some(target));
    match again.run() {
        Err(error) => Err(describe(error)),
        Ok(()) => Err("request body is not valid JSON: duplicate key".to_owned()),
    }
}

fn describe(error: serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = error.to_string();
    match error.classify() {
        Category::Eof if error.line() == 1 && error.column() == 0 => "request body is empty".to_owned(),
        Category::Eof => format!(
            "request body is not valid JSON: unexpected end of input at line {} column {}",
            error.line(),
            error.column()
        ),
        Category::Syntax if text.contains("hex escape") => {
            format!(
                "request body is not valid JSON: {text} (a \\u escape must be 4 hex digits, and UTF-16 surrogates must come in pairs)"
            )
        }
        Category::Syntax | Category::Data | Category::Io => format!("request body is not valid JSON: {text}"),
    }
}

/// An object being read.
struct Open {
    /// Its place among all objects, in document order.
    ordinal: u32,
    /// Where its keys start in `Pass::keys`.
    keys_from: usize,
}

struct Pass<'de> {
    body: &'de [u8],
    /// The keys of every open object, outermost object first, as references.
    keys: Vec<u32>,
    /// Escaped keys, decoded: a 4-byte length, then the bytes.
    arena: Vec<u8>,
    open: Vec<Open>,
    objects: u32,
    /// On the second pass: the (object, key index) of the duplicate to stop at.
    target: Option<(u32, u32)>,
}

impl<'de> Pass<'de> {
    fn new(body: &'de [u8], target: Option<(u32, u32)>) -> Self {
        Pass {
            body,
            keys: Vec::new(),
            arena: Vec::new(),
            open: Vec::new(),
            objects: 0,
            target,
        }
    }

    fn run(&mut self) -> Result<(), serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(self.body);
        Seed(self).deserialize(&mut deserializer)?;
        deserializer.end()
    }

    /// A reference to `key`: its place in the body when serde_json borrowed it from there
    /// (no escapes; a decoded copy lives elsewhere), else a decoded copy in the arena.
    fn store(&mut self, key: &str) -> u32 {
        let offset = (key.as_ptr() as usize).wrapping_sub(self.body.as_ptr() as usize);
        if offset.checked_add(key.len()).is_some_and(|end| end <= self.body.len()) {
            return offset as u32;
        }
        let at = self.arena.len() as u32;
        self.arena.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.arena.extend_from_slice(key.as_bytes());
        ARENA | at
    }

    fn resolve(&self, reference: u32) -> &[u8] {
        if reference & ARENA == 0 {
            let rest = self.body.get(reference as usize..).unwrap_or_default();
            // A borrowed key has no escapes, so its closing quote is the first quote.
            let end = memchr::memchr(b'"', rest).unwrap_or(rest.len());
            &rest[..end]
        } else {
            let at = (reference & !ARENA) as usize;
            let len = self
                .arena
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, |b: [u8; 4]| u32::from_le_bytes(b) as usize);
            self.arena.get(at + 4..at + 4 + len).unwrap_or_default()
        }
    }

    /// The index of the first key in `keys[from..to]` that repeats an earlier one.
    fn repeat_in(&self, from: usize, to: usize) -> Option<u32> {
        let keys = self.keys.get(from..to)?;
        if keys.len() <= SMALL {
            return None; // checked as they were read
        }
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        let key = |i: u32| self.resolve(keys[i as usize]);
        order.sort_unstable_by(|&a, &b| key(a).cmp(key(b)).then(a.cmp(&b)));
        order
            .windows(2)
            .filter(|pair| key(pair[0]) == key(pair[1]))
            .map(|pair| pair[1])
            .min()
    }

    /// After a failed pass: the first duplicate in document order among the keys of the
    /// objects still open, outermost first (its keys were all read before the inner ones').
    fn first_duplicate(&self) -> Option<(u32, u32)> {
        self.open.iter().enumerate().find_map(|(i, open)| {
            let to = self.open.get(i + 1).map_or(self.keys.len(), |inner| inner.keys_from);
            self.repeat_in(open.keys_from, to).map(|index| (open.ordinal, index))
        })
    }
}

struct Seed<'p, 'de>(&'p mut Pass<'de>);

impl<'de> DeserializeSeed<'de> for Seed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("number out of range"))
        }
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Seed(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let pass = self.0;
        let ordinal = pass.objects;
        pass.objects = pass.objects.saturating_add(1);
        let keys_from = pass.keys.len();
        let arena_from = pass.arena.len();
        pass.open.push(Open { ordinal, keys_from });
        let mut index = 0u32;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let read = pass.keys.len() - keys_from;
            let repeated = pass.target == Some((ordinal, index))
                || (read < SMALL
                    && pass.keys[keys_from..]
                        .iter()
                        .any(|&k| pass.resolve(k) == key.as_bytes()));
            if repeated {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let reference = pass.store(&key);
            pass.keys.push(reference);
            map.next_value_seed(Seed(&mut *pass))?;
            index += 1;
        }
        // Left open on error, so `first_duplicate` sees it.
        if pass.repeat_in(keys_from, pass.keys.len()).is_some() {
            return Err(de::Error::custom("duplicate key"));
        }
        pass.open.pop();
        pass.keys.truncate(keys_from);
        pass.arena.truncate(arena_from);
        Ok(())
    }
}

/// A key as serde_json reads it: borrowed from the body when it holds no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    fn err(input: &str) -> String {
        check(input.as_bytes()).expect_err(input)
    }

    /// The tree-building parser this pass replaced: its messages are the reference.
    fn reference(bytes: &[u8]) -> Result<(), String> {
        struct Tree;
        impl<'de> DeserializeSeed<'de> for Tree {
            type Value = Value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                d.deserialize_any(Tree)
            }
        }
        impl<'de> Visitor<'de> for Tree {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                serde_json::Number::from_f64(v)
                    .map(Value::Number)
                    .ok_or_else(|| E::custom("number out of range"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::String(v.to_owned()))
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element_seed(Tree)? {
                    items.push(item);
                }
                Ok(Value::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut object = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if object.contains_key(&key) {
                        return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
                    }
                    let value = map.next_value_seed(Tree)?;
                    object.insert(key, value);
                }
                Ok(Value::Object(object))
            }
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        Tree.deserialize(&mut deserializer).map_err(describe)?;
        deserializer.end().map_err(describe)
    }

    #[test]
    fn accepts_ordinary_json() {
        check(br#"{"b":1,"a":[true,null,"x",1.5,-2,{"c\u0064":{}}]}"#).expect("valid");
        let wide: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        check(format!("{{{}}}", wide.join(",")).as_bytes()).expect("100 distinct keys");
    }

    #[test]
    fn refuses_what_parsers_disagree_on() {
        assert!(err(r#"{"model":"a","model":"b"}"#).contains("duplicate key \"model\""));
        assert!(err(r#"{"m":[{"role":"user","role":"system"}]}"#).contains("duplicate key \"role\""));
        assert!(err(r#"{"a":1,"\u0061":2}"#).contains("duplicate key \"a\""));
        assert!(err("").contains("empty"));
        assert!(err("{} x").contains("trailing"));
        assert!(err(r#"{"a":"\ud800"}"#).contains("surrogate"));
        assert!(err(r#"{"a":1e309}"#).contains("out of range"));
        assert!(check(b"{\"a\":\"\xff\"}").is_err());
        assert!(err(&"[".repeat(200)).contains("recursion"));
    }

    /// Wide objects are checked late; the message must still be the one for the duplicate met
    /// first, at its place, whatever else is wrong later or deeper.
    #[test]
    fn late_checks_name_the_first_duplicate_at_its_place() {
        let keys = |n: usize, prefix: &str| (0..n).map(|i| format!("\"{prefix}{i}\":0")).collect::<Vec<_>>();
        let mut outer = keys(40, "o");
        outer[30] = "\"o3\":0".to_owned();
        let mut inner = keys(40, "i");
        inner[35] = "\"i\\u0031\":[1]".to_owned(); // an escaped repeat of "i1"
        let cases = [
            format!("{{{}}}", outer.join(",")),
            format!("{{{}}}", inner.join(",")),
            // The outer repeat comes before the inner object starts.
            format!("{{{},\"x\":{{{}}}}}", outer.join(","), inner.join(",")),
            // The inner repeat comes first; the outer one after it.
            format!("{{\"x\":{{{}}},{}}}", inner.join(","), outer.join(",")),
            // A syntax error after an unseen repeat.
            format!("{{{},\"z\":tru}}", outer.join(",")),
            // A small object's repeat after an unseen wide one.
            format!("{{{},\"z\":{{\"a\":1,\"a\":2}}}}", outer.join(",")),
            // A syntax error before the repeat.
            format!("{{\"z\":tru,{}}}", outer.join(",")),
        ];
        for case in cases {
            let got = check(case.as_bytes()).map(|_| ());
            assert_eq!(got, reference(case.as_bytes()), "{case}");
            assert!(got.is_err());
        }
    }

    fn json_with_repeats() -> impl Strategy<Value = String> {
        // Mostly distinct keys, so objects often pass `SMALL` keys before a repeat.
        let key = prop_oneof![
            1 => Just("a".to_owned()),
            1 => Just("\\u0061".to_owned()),
            30 => "[a-z]{2}",
        ];
        let leaf = prop_oneof![
            4 => Just("1".to_owned()),
            4 => Just("\"s\"".to_owned()),
            4 => Just("null".to_owned()),
            1 => Just("tru".to_owned()),
        ];
        leaf.prop_recursive(4, 200, 30, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::vec((key.clone(), inner), 0..40).prop_map(|entries| {
                    let entries: Vec<String> = entries.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", entries.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn words_every_error_like_the_tree_parser(doc in json_with_repeats()) {
            let expected = reference(doc.as_bytes());
            prop_assert_eq!(check(doc.as_bytes()).map(|_| ()), expected.clone());
            prop_assert_eq!(exact(doc.as_bytes()), expected);
        }

        /// The cheap walk's yes is never wrong, whatever the bytes.
        #[test]
        fn the_cheap_walk_accepts_only_what_the_exact_pass_accepts(
            doc in prop_oneof![
                json_with_repeats(),
                r#"[\[\]{}",:0-9a-e .\\u+-]{0,24}"#,
                json_with_repeats().prop_flat_map(|doc| {
                    let len = doc.len();
                    (Just(doc), 0..=len, r#"[\[\]{}",:0\\ue.-]"#)
                }).prop_map(|(mut doc, at, insert)| {
                    doc.insert_str(at.min(doc.len()), &insert);
                    doc
                }),
            ]
        ) {
            if quick::plain(doc.as_bytes()).is_some() {
                prop_assert_eq!(reference(doc.as_bytes()), Ok(()), "{}", doc);
            }
        }
    }
}
