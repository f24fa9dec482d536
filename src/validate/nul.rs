//! Policy: a NUL character anywhere in a string is refused. Backends written in C-family languages truncate at NUL, so what the model sees would differ from what was validated.

use super::{request::Edits, wording};
use crate::error::Rejection;
use crate::wire::json::{Kind, Raw};

/// The first string holding U+0000, in document order, of the request as compatibility left it.
pub fn check(top: Raw<'_>, edits: &Edits) -> Result<(), Rejection> {
    let mut path = Vec::new();
    for (key, value) in top.entries() {
        let key = key.text();
        if edits.drops_top(&key) {
            continue;
        }
        path.push(key.to_string());
        match (edits.replacement(&key), &*key) {
            (Some(text), _) if text.contains('\0') => return Err(refuse(&path)),
            (Some(_), _) => {}
            (None, "stream_options") => walk(value, &mut path, &|k| edits.drops_in_stream_options(k))?,
            (None, "messages") if value.is_array() => {
                for (i, message) in value.items().enumerate() {
                    path.push(i.to_string());
                    let stripped = edits.strips_message(message);
                    walk(message, &mut path, &|k| stripped && edits.drops_in_message(k))?;
                    path.pop();
                }
            }
            (None, _) => walk(value, &mut path, &KEEP)?,
        }
        path.pop();
    }
    Ok(())
}

fn refuse(path: &[String]) -> Rejection {
    wording::invalid(
        path.join("."),
        "string contains a NUL character (U+0000), which groxy does not forward",
    )
}

/// Leaves out no field.
const KEEP: fn(&str) -> bool = |_| false;

/// `value` and everything under it; `drops(key)` leaves out fields of `value` itself.
fn walk(value: Raw<'_>, path: &mut Vec<String>, drops: &dyn Fn(&str) -> bool) -> Result<(), Rejection> {
    match value.kind() {
        // Inside a string a NUL can only be written `\u0000` (a raw control byte is not JSON).
        Kind::String if memchr::memmem::find(value.bytes(), b"\\u0000").is_some() => {
            if value.as_str().is_some_and(|s| s.contains('\0')) {
                return Err(refuse(path));
            }
            Ok(())
        }
        Kind::Array => {
            for (i, item) in value.items().enumerate() {
                path.push(i.to_string());
                walk(item, path, &KEEP)?;
                path.pop();
            }
            Ok(())
        }
        Kind::Object => {
            for (key, item) in value.entries() {
                let key = key.text();
                if drops(&key) {
                    continue;
                }
                path.push(key.into_owned());
                walk(item, path, &KEEP)?;
                path.pop();
            }
            Ok(())
        }
        Kind::Null | Kind::Bool | Kind::Number | Kind::String => Ok(()),
    }
}
