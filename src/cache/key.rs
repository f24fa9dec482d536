//! The cache key: SHA-256 of the tenant and the canonical request (sorted keys, no whitespace, fields that do not change the answer left out).
//!
//! The canonical form is written straight into the hash from the checked bytes (no tree, no
//! copy of the request), so a key costs four bytes per key of the objects being sorted.

use std::{borrow::Cow, cmp::Ordering};

use sha2::{Digest, Sha256};

use crate::{
    routes::table::Endpoint,
    validate::{Checked, Kind, Raw},
};

/// Top-level fields that do not change the answer: an end-user id for Groq's abuse tracking
/// and the processing tier. Everything else, `stream` and `stream_options` included (they change
/// the bytes of the answer), is part of the key.
pub const EXCLUDED: &[&str] = &["user", "service_tier"];

pub type CacheKey = [u8; 32];

/// `tenant` is the caller's key hash, or `None` when entries are shared between tenants.
///
/// The endpoint is part of the key, so a chat body and a Responses body never share an entry
/// (their answers differ in shape even where the bodies could be the same). Chat's keys are
/// the keys from before other endpoints were cached: entries a replica still running that
/// version wrote to Redis stay valid.
pub fn cache_key(tenant: Option<&[u8; 32]>, endpoint: Endpoint, request: &Checked) -> CacheKey {
    let mut hasher = Sha256::new();
    // A domain tag and the tenant first, with fixed widths, so no request can collide with
    // another tenant's by construction.
    hasher.update(b"groxy-cache-v1\0");
    if endpoint != Endpoint::ChatCompletions {
        // After the tag chat goes on with a 0 or 1 byte, so no other endpoint's label (a
        // letter first) can make a chat key.
        hasher.update(endpoint.label().as_bytes());
        hasher.update(b"\0");
    }
    match tenant {
        Some(t) => {
            hasher.update([1u8]);
            hasher.update(t);
        }
        None => hasher.update([0u8]),
    }
    let mut canonical = Canonical {
        hasher,
        buffer: Vec::with_capacity(BUFFER),
    };
    match request.root() {
        Some(root) => canonical.object(root, true),
        None => canonical.put(b"{}"),
    }
    canonical.finish()
}

/// Bytes gathered before they are hashed.
const BUFFER: usize = 16 * 1024;

struct Canonical {
    hasher: Sha256,
    buffer: Vec<u8>,
}

impl Canonical {
    fn put(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= BUFFER {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
    }

    fn finish(mut self) -> CacheKey {
        self.hasher.update(&self.buffer);
        self.hasher.finalize().into()
    }

    fn object(&mut self, object: Raw<'_>, top: bool) {
        let mut offsets: Vec<u32> = object
            .entry_offsets()
            .filter(|&at| {
                !(top
                    && object
                        .entry_at(at)
                        .is_some_and(|(key, _)| EXCLUDED.contains(&&*key.text())))
            })
            .collect();
        offsets.sort_by(|&a, &b| match (object.entry_at(a), object.entry_at(b)) {
            (Some((a, _)), Some((b, _))) if !a.has_escapes() && !b.has_escapes() => a.raw().cmp(b.raw()),
            (Some((a, _)), Some((b, _))) => a.text().cmp(&b.text()),
            _ => Ordering::Equal,
        });
        self.put(b"{");
        for (i, at) in offsets.into_iter().enumerate() {
            let Some((key, value)) = object.entry_at(at) else {
                continue;
            };
            if i > 0 {
                self.put(b",");
            }
            self.string(key.text());
            self.put(b":");
            self.value(value);
        }
        self.put(b"}");
    }

    fn value(&mut self, value: Raw<'_>) {
        match value.kind() {
            Kind::Object => self.object(value, false),
            Kind::Array => {
                self.put(b"[");
                for (i, item) in value.items().enumerate() {
                    if i > 0 {
                        self.put(b",");
                    }
                    self.value(item);
                }
                self.put(b"]");
            }
            // Without escapes a string's bytes are what serde_json writes for its text.
            Kind::String if memchr::memchr(b'\\', value.bytes()).is_none() => self.put(value.bytes()),
            Kind::String => self.string(value.as_str().unwrap_or_default()),
            // Numbers are compared by value: 0.5 and 5e-1 are the same temperature.
            Kind::Number => match value.as_number() {
                Some(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => self.put(i.to_string().as_bytes()),
                    (_, Some(u), _) => self.put(u.to_string().as_bytes()),
                    (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => {
                        self.put((f as i64).to_string().as_bytes())
                    }
                    (_, _, Some(f)) => self.put(format!("{f:e}").as_bytes()),
                    _ => self.put(n.to_string().as_bytes()),
                },
                None => self.put(value.bytes()),
            },
            Kind::Bool | Kind::Null => self.put(value.bytes()),
        }
    }

    fn string(&mut self, text: Cow<'_, str>) {
        // serde_json's escaping is canonical for a given string.
        if let Ok(encoded) = serde_json::to_vec(&*text) {
            self.put(&encoded);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn key(tenant: Option<&[u8; 32]>, v: Value) -> CacheKey {
        let body = serde_json::to_vec(&v).expect("json");
        cache_key(
            tenant,
            Endpoint::ChatCompletions,
            &Checked::from_body(body.into()).expect("object"),
        )
    }

    fn key_of_text(tenant: Option<&[u8; 32]>, text: &str) -> CacheKey {
        cache_key(
            tenant,
            Endpoint::ChatCompletions,
            &Checked::from_body(text.to_owned().into()).expect("object"),
        )
    }

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    /// The key as the tree-based version computed it: keys stored in Redis by a replica still
    /// running it must be the keys this one computes.
    fn reference(tenant: Option<&[u8; 32]>, request: &serde_json::Map<String, Value>) -> CacheKey {
        fn object(out: &mut Vec<u8>, map: &serde_json::Map<String, Value>, top: bool) {
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
                out.extend_from_slice(&serde_json::to_vec(key).expect("json"));
                out.push(b':');
                value(out, &map[key]);
            }
            out.push(b'}');
        }
        fn value(out: &mut Vec<u8>, value_: &Value) {
            match value_ {
                Value::Object(map) => object(out, map, false),
                Value::Array(items) => {
                    out.push(b'[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        value(out, item);
                    }
                    out.push(b']');
                }
                Value::String(s) => out.extend_from_slice(&serde_json::to_vec(s).expect("json")),
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
        let mut hasher = Sha256::new();
        hasher.update(b"groxy-cache-v1\0");
        match tenant {
            Some(t) => {
                hasher.update([1u8]);
                hasher.update(t);
            }
            None => hasher.update([0u8]),
        }
        let mut canonical = Vec::new();
        object(&mut canonical, request, true);
        hasher.update(&canonical);
        hasher.finalize().into()
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "(?s).{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 24, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c\\\"é\u{1}]{0,3}|user|service_tier", inner, 0..24)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn order_whitespace_and_number_spelling_do_not_matter() {
        let a = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#;
        let b = "{ \"temperature\" : 5e-1 ,\n \"messages\":[{\"content\":\"h\\u0069\",\"rol\\u0065\":\"user\"}],\"model\":\"m\", \"user\": \"u-42\"}";
        assert_eq!(key_of_text(Some(&A), a), key_of_text(Some(&A), b));
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
        assert_ne!(key(None, base.clone()), base_key, "shared entries are another space");
        let body = serde_json::to_vec(&base).expect("json");
        let checked = Checked::from_body(body.into()).expect("object");
        assert_ne!(
            cache_key(Some(&A), Endpoint::Responses, &checked),
            base_key,
            "the same body on another endpoint"
        );
    }

    proptest! {
        #[test]
        fn keys_are_the_tree_based_keys(
            entries in proptest::collection::vec(("[a-z\\\"é]{0,4}|user|service_tier|model|messages", json_value()), 0..24),
            pretty in any::<bool>(),
            tenant in proptest::option::of(any::<[u8; 32]>()),
        ) {
            let mut map = serde_json::Map::new();
            for (k, v) in entries {
                map.insert(k, v);
            }
            let value = Value::Object(map);
            let body = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) }.expect("json");
            // The tree version read the tree parsed from the same bytes.
            let tree: serde_json::Map<String, Value> = serde_json::from_slice(&body).expect("json");
            let checked = Checked::from_body(body.into()).expect("object");
            prop_assert_eq!(cache_key(tenant.as_ref(), Endpoint::ChatCompletions, &checked), reference(tenant.as_ref(), &tree));
            prop_assert_ne!(cache_key(tenant.as_ref(), Endpoint::Responses, &checked), reference(tenant.as_ref(), &tree));
        }

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
