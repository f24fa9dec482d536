//! The cache key: SHA-256 of the tenant and the canonical request (sorted keys, no whitespace, fields that do not change the answer left out).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Top-level fields that do not change the answer: an end-user id for Groq's abuse tracking
/// and the processing tier. Everything else, `stream` and `stream_options` included (they change
/// the bytes of the answer), is part of the key.
pub const EXCLUDED: &[&str] = &["user", "service_tier"];

pub type CacheKey = [u8; 32];

/// `tenant` is the caller's key hash, or `None` when entries are shared between tenants.
pub fn cache_key(tenant: Option<&[u8; 32]>, request: &Map<String, Value>) -> CacheKey {
    let mut hasher = Sha256::new();
    // A domain tag and the tenant first, with fixed widths, so no request can collide with
    // another tenant's by construction.
    hasher.update(b"groxy-cache-v1\0");
    match tenant {
        Some(t) => {
            hasher.update([1u8]);
            hasher.update(t);
        }
        None => hasher.update([0u8]),
    }
    let mut canonical = Vec::with_capacity(1024);
    write_object(&mut canonical, request, true);
    hasher.update(&canonical);
    hasher.finalize().into()
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>, top: bool) {
    let mut keys: Vec<&String> = map
        .keys()
        .filter(|k| !(top && EXCLUDED.contains(&k.as_str())))
        .collect();
    keys.sort();
    out.push(b'{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        if let Some(value) = map.get(key) {
            write_value(out, value);
        }
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map, false),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(out, s),
        // Numbers are compared by value: 0.5 and 5e-1 are the same temperature.
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.extend_from_slice(i.to_string().as_bytes()),
            (_, Some(u), _) => out.extend_from_slice(u.to_string().as_bytes()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => {
                out.extend_from_slice((f as i64).to_string().as_bytes())
            }
            (_, _, Some(f)) => out.extend_from_slice(format!("{f:e}").as_bytes()),
            _ => out.extend_from_slice(n.to_string().as_bytes()),
        },
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Null => out.extend_from_slice(b"null"),
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping is canonical for a given string.
    if let Ok(encoded) = serde_json::to_vec(s) {
        out.extend_from_slice(&encoded);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn key(tenant: Option<&[u8; 32]>, v: Value) -> CacheKey {
        match v {
            Value::Object(map) => cache_key(tenant, &map),
            _ => panic!("object"),
        }
    }

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    #[test]
    fn order_whitespace_and_number_spelling_do_not_matter() {
        let a: Value =
            serde_json::from_str(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#)
                .expect("json");
        let b: Value = serde_json::from_str("{ \"temperature\" : 5e-1 ,\n \"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"m\", \"user\": \"u-42\"}").expect("json");
        assert_eq!(key(Some(&A), a), key(Some(&A), b));
        assert_eq!(key(None, json!({"seed": 1})), key(None, json!({"seed": 1.0})));
    }

    #[test]
    fn every_semantic_difference_changes_the_key() {
        let base = json!({"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0});
        let base_key = key(Some(&A), base.clone());
        let variants = [
            ("temperature", json!(0.1)),
            ("seed", json!(7)),
            ("tools", json!([{"type":"function","function":{"name":"f"}}])),
            ("response_format", json!({"type":"json_object"})),
            ("stop", json!(["x"])),
            ("model", json!("other")),
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("max_completion_tokens", json!(10)),
            ("messages", json!([{"role":"user","content":"hi!"}])),
        ];
        for (field, value) in variants {
            let mut changed = base.clone();
            changed[field] = value;
            assert_ne!(key(Some(&A), changed), base_key, "{field}");
        }
        assert_ne!(key(Some(&B), base.clone()), base_key, "another tenant");
        assert_ne!(key(None, base), base_key, "shared entries are another space");
    }

    proptest! {
        #[test]
        fn tenants_never_share_entries(prompt in ".{0,64}", a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            prop_assume!(a != b);
            let request = json!({"model": "m", "messages": [{"role": "user", "content": prompt}], "temperature": 0});
            prop_assert_ne!(key(Some(&a), request.clone()), key(Some(&b), request));
        }

        #[test]
        fn different_prompts_never_share_entries(p in ".{0,64}", q in ".{0,64}") {
            prop_assume!(p != q);
            let k = |s: &str| key(Some(&A), json!({"model": "m", "messages": [{"role": "user", "content": s}]}));
            prop_assert_ne!(k(&p), k(&q));
        }
    }
}
