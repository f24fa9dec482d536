//! The body Groq receives when compatibility changed the request: the request as the steps read it (edits applied), written out compactly the way `serde_json` writes a tree.
//!
//! Written straight from the client's bytes (see `json`), so re-encoding holds no tree either.
//! Keys keep their order; strings, numbers and literals are written exactly as `serde_json`
//! serialises the value it parses them to, so this is the serialisation of the checked request.

use std::io::Write;

use super::request::Edits;
use crate::wire::json::{Key, Kind, Raw};

/// Leaves out no field.
const KEEP: fn(&str) -> bool = |_| false;

/// `top` (the request object) with `edits` applied, as compact JSON.
pub fn encode(top: Raw<'_>, edits: &Edits) -> Result<Vec<u8>, serde_json::Error> {
    // Usually a little smaller than the body; starting there avoids growing it by copies.
    let mut out = Vec::with_capacity(top.bytes().len());
    out.push(b'{');
    let mut first = true;
    let mut replaced = [false; 3];
    for (key, value) in top.entries() {
        let text = key.text();
        if edits.drops_top(&text) {
            continue;
        }
        if let Some(at) = edits.replacements().iter().position(|(name, _)| *name == text) {
            replaced[at] = true;
        }
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_key(&mut out, key)?;
        match (edits.replacement(&text), &*text) {
            (Some(replacement), _) => serde_json::to_writer(&mut out, replacement)?,
            (None, "stream_options") => write(&mut out, value, &|k| edits.drops_in_stream_options(k))?,
            (None, "messages") if value.is_array() => {
                out.push(b'[');
                for (i, message) in value.items().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let stripped = edits.strips_message(message);
                    write(&mut out, message, &|k| stripped && edits.drops_in_message(k))?;
                }
                out.push(b']');
            }
            (None, _) => write(&mut out, value, &KEEP)?,
        }
    }
    // As inserting into a tree would: a replaced field the request lacked goes at the end.
    for ((name, value), present) in edits.replacements().into_iter().zip(replaced) {
        if let (Some(value), false) = (value, present) {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, name)?;
            out.push(b':');
            serde_json::to_writer(&mut out, value)?;
        }
    }
    out.push(b'}');
    Ok(out)
}

/// A key and its colon.
fn write_key(out: &mut Vec<u8>, key: Key<'_>) -> Result<(), serde_json::Error> {
    if key.has_escapes() {
        serde_json::to_writer(&mut *out, &*key.text())?;
    } else {
        out.push(b'"');
        out.extend_from_slice(key.raw());
        out.push(b'"');
    }
    out.push(b':');
    Ok(())
}

/// `value` and everything under it; `drops(key)` leaves out fields of `value` itself.
fn write(out: &mut Vec<u8>, value: Raw<'_>, drops: &dyn Fn(&str) -> bool) -> Result<(), serde_json::Error> {
    match value.kind() {
        Kind::Null | Kind::Bool => out.extend_from_slice(value.bytes()),
        Kind::Number => match value.as_number() {
            Some(number) => serde_json::to_writer(&mut *out, &number)?,
            None => out.extend_from_slice(value.bytes()),
        },
        Kind::String => write_string(out, value)?,
        Kind::Array => {
            out.push(b'[');
            for (i, item) in value.items().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item, &KEEP)?;
            }
            out.push(b']');
        }
        Kind::Object => {
            out.push(b'{');
            let mut first = true;
            for (key, item) in value.entries() {
                if drops(&key.text()) {
                    continue;
                }
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                write_key(out, key)?;
                write(out, item, &KEEP)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Without escapes a string's bytes are already what `serde_json` writes for its text (it
/// escapes only quotes, backslashes and control characters, none of which a JSON string holds
/// unescaped); with escapes it is decoded and written again.
pub fn write_string(out: &mut Vec<u8>, value: Raw<'_>) -> Result<(), serde_json::Error> {
    let bytes = value.bytes();
    if memchr::memchr(b'\\', bytes).is_none() {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    match value.as_str() {
        Some(text) => serde_json::to_writer(&mut *out, &*text),
        None => out.write_all(bytes).map_err(serde_json::Error::io),
    }
}
