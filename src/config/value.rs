//! A serde deserializer over a parsed TOML value whose error type never holds a value from the file.
//!
//! toml's own deserializer formats type errors as `invalid type: string "gsk_…", expected a
//! sequence`, which prints a key that was put in the wrong shape. Here the error is structured
//! ([`Problem`]): a type error keeps only the *kind* of what was found (`a string`) and what was
//! expected, so no secret can reach a message through it, whichever field and type it is.

use std::fmt;

use serde::de::{
    self, Deserializer, IntoDeserializer, Unexpected, Visitor,
    value::{MapDeserializer, SeqDeserializer},
};

/// One thing wrong with one value, without the value.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// A value of the wrong kind: `found` is a kind (`a string`), never the value.
    Type {
        found: &'static str,
        expected: String,
    },
    /// A value of the right kind but out of range (a negative size, a number too large).
    Value {
        found: &'static str,
        expected: String,
    },
    Length {
        len: usize,
        expected: String,
    },
    /// A string that is not one of an enum's names. Enums are never secrets, so the name is kept.
    Variant {
        variant: String,
        expected: &'static [&'static str],
    },
    /// A required field is absent.
    Missing(&'static str),
    /// A message from a field's own parser (`invalid duration "10x": ...`). Only non-secret
    /// types (durations, sizes, addresses) produce these.
    Custom(String),
}

impl Problem {
    /// The text after `<path>: `. On a secret path only kinds and expectations are shown.
    pub fn describe(&self, secret: bool) -> String {
        match self {
            Problem::Type { found, expected } | Problem::Value { found, expected } => {
                format!("expected {expected}, found {found}")
            }
            Problem::Length { len, expected } => format!("expected {expected}, found {len} item(s)"),
            Problem::Variant { variant, expected } => {
                let names: Vec<String> = expected.iter().map(|name| format!("\"{name}\"")).collect();
                let found = if secret {
                    "another string".to_owned()
                } else {
                    format!("{variant:?}")
                };
                format!("expected one of {}, found {found}", names.join(", "))
            }
            Problem::Missing(_) => "required, but not set".to_owned(),
            Problem::Custom(_) if secret => "invalid value".to_owned(),
            Problem::Custom(message) => message.clone(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(true))
    }
}

impl std::error::Error for Problem {}

/// What serde's visitors say they expect, in the words of a TOML file.
fn expected(exp: &dyn de::Expected) -> String {
    let text = exp.to_string();
    match text.as_str() {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a map" => "a table".to_owned(),
        "socket address" => "an address such as \"127.0.0.1:8080\"".to_owned(),
        "variant identifier" => "a string".to_owned(),
        _ if text.starts_with("struct ") => "a table".to_owned(),
        _ if text.starts_with("enum ") => "a string".to_owned(),
        _ => text,
    }
}

/// The kind of an unexpected value, never the value itself.
fn kind(unexp: &Unexpected<'_>) -> &'static str {
    match unexp {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "an integer",
        Unexpected::Float(_) => "a float",
        Unexpected::Char(_) | Unexpected::Str(_) | Unexpected::Bytes(_) => "a string",
        Unexpected::Seq => "a list",
        Unexpected::Map => "a table",
        Unexpected::Other(DATETIME) => DATETIME,
        _ => "another kind of value",
    }
}

const DATETIME: &str = "a date-time";

impl de::Error for Problem {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Problem::Custom(message.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Problem::Type {
            found: kind(&unexp),
            expected: expected(exp),
        }
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            Unexpected::Signed(n) if n < 0 => "a negative number",
            Unexpected::Signed(_) | Unexpected::Unsigned(_) => "a number out of range",
            other => kind(&other),
        };
        Problem::Value {
            found,
            expected: expected(exp),
        }
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Problem::Length {
            len,
            expected: expected(exp),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Problem::Variant {
            variant: variant.to_owned(),
            expected,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Problem::Missing(field)
    }
}

/// Deserializes a `toml::Value` with [`Problem`] as its error.
pub struct ValueDe(pub toml::Value);

fn unexpected(value: &toml::Value) -> Unexpected<'_> {
    match value {
        toml::Value::String(s) => Unexpected::Str(s),
        toml::Value::Integer(i) => Unexpected::Signed(*i),
        toml::Value::Float(f) => Unexpected::Float(*f),
        toml::Value::Boolean(b) => Unexpected::Bool(*b),
        toml::Value::Datetime(_) => Unexpected::Other(DATETIME),
        toml::Value::Array(_) => Unexpected::Seq,
        toml::Value::Table(_) => Unexpected::Map,
    }
}

impl<'de> Deserializer<'de> for ValueDe {
    type Error = Problem;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0 {
            toml::Value::String(s) => visitor.visit_string(s),
            toml::Value::Integer(i) => visitor.visit_i64(i),
            toml::Value::Float(f) => visitor.visit_f64(f),
            toml::Value::Boolean(b) => visitor.visit_bool(b),
            // No setting is a date: refused rather than silently turned into a string.
            toml::Value::Datetime(_) => Err(de::Error::invalid_type(Unexpected::Other(DATETIME), &visitor)),
            toml::Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(ValueDe));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            toml::Value::Table(table) => {
                let mut map = MapDeserializer::new(table.into_iter().map(|(k, v)| (k, ValueDe(v))));
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Problem> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Problem> {
        match self.0 {
            toml::Value::String(name) => visitor.visit_enum(name.into_deserializer()),
            other => Err(de::Error::invalid_type(unexpected(&other), &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier
    }
}

impl<'de> IntoDeserializer<'de, Problem> for ValueDe {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn de<T: for<'de> Deserialize<'de>>(toml_value: &str) -> Result<T, Problem> {
        let table: toml::Table = toml::from_str(&format!("v = {toml_value}")).expect("toml");
        let value = table.get("v").cloned().expect("v");
        T::deserialize(ValueDe(value))
    }

    #[test]
    fn type_errors_name_kinds_not_values() {
        let e = de::<Vec<String>>("\"gsk_canary\"").expect_err("a string is not a list");
        assert_eq!(e.describe(false), "expected a list, found a string");
        let e = de::<u64>("\"gsk_canary\"").expect_err("not a number");
        assert_eq!(e.describe(false), "expected a whole number, found a string");
        let e = de::<String>("12345678").expect_err("not a string");
        assert_eq!(e.describe(false), "expected a string, found an integer");
        let e = de::<u64>("-3").expect_err("negative");
        assert_eq!(e.describe(false), "expected a whole number, found a negative number");
        let e = de::<String>("1979-05-27").expect_err("a date");
        assert_eq!(e.describe(false), "expected a string, found a date-time");
        assert_eq!(de::<Option<u64>>("7"), Ok(Some(7)));
        assert_eq!(de::<Vec<bool>>("[true, false]"), Ok(vec![true, false]));
    }
}
