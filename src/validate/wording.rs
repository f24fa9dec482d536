//! Groq's validator's wording: `'<json.path>' : <rule>` messages, JSON Schema type names, and its "did you mean" hints.

use crate::error::Rejection;
use crate::wire::json::{Kind, Raw};

/// JSON Schema's names for a value's type, as Groq's validator prints them.
pub fn kind(value: Raw<'_>) -> &'static str {
    match value.kind() {
        Kind::Null => "null",
        Kind::Bool => "boolean",
        Kind::Number => "number",
        Kind::String => "string",
        Kind::Array => "array",
        Kind::Object => "object",
    }
}

pub fn invalid(path: impl Into<String>, rule: impl std::fmt::Display) -> Rejection {
    let path = path.into();
    Rejection::Invalid {
        message: format!("'{path}' : {rule}"),
        param: Some(path),
    }
}

/// The known field closest to `unknown`, for Groq's "did you mean" hint.
pub fn suggest(unknown: &str, known: &'static [&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}
