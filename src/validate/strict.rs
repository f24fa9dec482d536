//! Parsing the request body into one JSON tree, refusing what a lenient parser would silently pick a side on.
//!
//! Why not `serde_json::Value` directly: it keeps the last of two duplicate keys, while another
//! parser (Groq's) may keep the first, so the gateway would validate one request and forward
//! another. Here a duplicate key anywhere is an error. Everything else (lone surrogates, invalid
//! UTF-8, numbers that overflow f64, nesting past serde_json's recursion limit of 128, trailing
//! garbage) is already an error in serde_json; this module only words them for the client.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as a single JSON document with no duplicate keys.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictSeed.deserialize(&mut deserializer).map_err(describe)?;
    deserializer.end().map_err(describe)?;
    Ok(value)
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

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
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
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(StrictSeed)? {
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
            let value = map.next_value_seed(StrictSeed)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &str) -> String {
        parse(input.as_bytes()).expect_err(input)
    }

    #[test]
    fn accepts_ordinary_json_and_keeps_key_order() {
        let v = parse(br#"{"b":1,"a":[true,null,"x",1.5,-2]}"#).expect("valid");
        assert_eq!(
            serde_json::to_string(&v).expect("json"),
            r#"{"b":1,"a":[true,null,"x",1.5,-2]}"#
        );
    }

    #[test]
    fn refuses_what_parsers_disagree_on() {
        assert!(err(r#"{"model":"a","model":"b"}"#).contains("duplicate key \"model\""));
        assert!(err(r#"{"m":[{"role":"user","role":"system"}]}"#).contains("duplicate key \"role\""));
        assert!(err("").contains("empty"));
        assert!(err("{} x").contains("trailing"));
        assert!(err(r#"{"a":"\ud800"}"#).contains("surrogate"));
        assert!(err(r#"{"a":1e309}"#).contains("out of range"));
        assert!(parse(b"{\"a\":\"\xff\"}").is_err());
        assert!(err(&"[".repeat(200)).contains("recursion"));
    }
}
