//! Finding the members of a JSON object without parsing it: the relay reads a small field (`usage`) out of every answer, and a full parse of a kilobyte of content to reach it cost more than the rest of reading the answer.
//!
//! The scan only finds where each top-level member's value starts and ends: strings are skipped
//! with a search for the next quote or backslash, nested objects and arrays by counting
//! brackets outside strings. It checks the structure (a balanced object, keys, colons, commas)
//! but not the scalars, so a caller parses the values it wants with serde and must not take a
//! successful scan as proof that the document is valid JSON.

/// Calls `each(key, value)` for every top-level member of the JSON object `json`, in order: the
/// key's raw bytes between its quotes, and the value's bytes. `false` when `json` is not an
/// object the scan can follow (or a key holds an escape, which only a parser can compare): the
/// caller then parses the document instead.
pub fn members<'a>(json: &'a [u8], mut each: impl FnMut(&'a [u8], &'a [u8])) -> bool {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return false;
    }
    i = skip_ws(json, i + 1);
    if json.get(i) == Some(&b'}') {
        return skip_ws(json, i + 1) == json.len();
    }
    loop {
        if json.get(i) != Some(&b'"') {
            return false;
        }
        let Some(key_end) = string_end(json, i) else {
            return false;
        };
        let key = &json[i + 1..key_end];
        if key.contains(&b'\\') {
            return false;
        }
        i = skip_ws(json, key_end + 1);
        if json.get(i) != Some(&b':') {
            return false;
        }
        let start = skip_ws(json, i + 1);
        let Some(end) = value_end(json, start) else {
            return false;
        };
        each(key, &json[start..end]);
        i = skip_ws(json, end);
        match json.get(i) {
            Some(b',') => i = skip_ws(json, i + 1),
            Some(b'}') => return skip_ws(json, i + 1) == json.len(),
            _ => return false,
        }
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = json.get(i) {
        i += 1;
    }
    i
}

/// The index of the quote that closes the string opening at `open`.
fn string_end(json: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    // Most strings (keys, ids, roles) are short: looking at their bytes costs less than setting
    // up a search.
    let short = (i + 16).min(json.len());
    while i < short {
        match json[i] {
            b'"' => return Some(i),
            b'\\' => break,
            _ => i += 1,
        }
    }
    loop {
        let at = i + memchr::memchr2(b'"', b'\\', json.get(i..)?)?;
        if json[at] == b'"' {
            return Some(at);
        }
        // A backslash escapes the byte after it (`\"`, `\\`; `\u` needs no care).
        i = at + 2;
    }
}

/// The index just past the value starting at `start`.
fn value_end(json: &[u8], start: usize) -> Option<usize> {
    match *json.get(start)? {
        b'"' => Some(string_end(json, start)? + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match *json.get(i)? {
                    b'"' => i = string_end(json, i)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = json[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(json.len() - start);
            (len > 0).then_some(start + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(json: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let ok = members(json.as_bytes(), |k, v| {
            out.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        });
        ok.then_some(out)
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn finds_each_top_level_member_and_skips_nested_ones() {
        let json = r#" { "id" : "x\"y\\", "choices":[{"message":{"content":"say \"usage\": {}]"}}],
            "usage": {"prompt_tokens": 3, "x": [1, {"y": "}"}]}, "n": -1.5e3, "t":true,"z":null } "#;
        assert_eq!(
            all(json),
            pairs(&[
                ("id", r#""x\"y\\""#),
                ("choices", r#"[{"message":{"content":"say \"usage\": {}]"}}]"#),
                ("usage", r#"{"prompt_tokens": 3, "x": [1, {"y": "}"}]}"#),
                ("n", "-1.5e3"),
                ("t", "true"),
                ("z", "null"),
            ])
        );
        assert_eq!(all("{}"), pairs(&[]));
        assert_eq!(all(" {\n} "), pairs(&[]));
    }

    #[test]
    fn refuses_what_it_cannot_follow() {
        for bad in [
            "",
            "[]",
            "\"usage\"",
            "{",
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{"a":{"b":1}"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":1} trailing"#,
            r#"{"us\u0061ge":1}"#,
            r#"{"a":1 "b":2}"#,
        ] {
            assert_eq!(all(bad), None, "{bad:?}");
        }
    }
}
