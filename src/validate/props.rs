//! Property tests: valid requests pass byte-identical; nothing a client sends makes validation panic.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::validate_chat;
use crate::{catalog::Catalog, config::ValidationConfig};

fn catalog() -> Catalog {
    match Catalog::parse(include_bytes!("../../tests/fixtures/groq/models.json")) {
        Ok(c) => c,
        Err(e) => panic!("fixture: {e}"),
    }
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode except NUL (refused by policy), including quotes, backslashes and emoji.
    "[^\\x00]{0,40}"
}

fn message() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(|t| json!({"role": "user", "content": t})),
        text().prop_map(|t| json!({"role": "system", "content": t})),
        text().prop_map(|t| json!({"role": "assistant", "content": t})),
        (text(), text()).prop_map(
            |(a, b)| json!({"role": "user", "content": [{"type": "text", "text": a}, {"type": "text", "text": b}]})
        ),
    ]
}

prop_compose! {
    fn valid_request()(
        model in prop_oneof![Just("openai/gpt-oss-20b"), Just("openai/gpt-oss-120b"), Just("qwen/qwen3.8-27b")],
        messages in proptest::collection::vec(message(), 1..6),
        temperature in proptest::option::of(0.0f64..=2.0),
        top_p in proptest::option::of(0.0f64..=1.0),
        penalty in proptest::option::of(-2.0f64..=2.0),
        max_tokens in proptest::option::of(1u64..=16384),
        stop in proptest::option::of(proptest::collection::vec(text(), 0..=4)),
        stream in proptest::option::of(any::<bool>()),
        seed in proptest::option::of(any::<i64>()),
        pretty in any::<bool>(),
    ) -> Vec<u8> {
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(model));
        body.insert("messages".into(), Value::Array(messages));
        if let Some(t) = temperature { body.insert("temperature".into(), json!(t)); }
        if let Some(p) = top_p { body.insert("top_p".into(), json!(p)); }
        if let Some(p) = penalty { body.insert("presence_penalty".into(), json!(p)); }
        if let Some(m) = max_tokens { body.insert("max_completion_tokens".into(), json!(m)); }
        if let Some(s) = stop { body.insert("stop".into(), json!(s)); }
        if let Some(s) = stream { body.insert("stream".into(), json!(s)); }
        if let Some(s) = seed { body.insert("seed".into(), json!(s)); }
        let value = Value::Object(body);
        let out = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) };
        out.unwrap_or_default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_requests_pass_byte_identical(body in valid_request()) {
        let catalog = catalog();
        let result = validate_chat(Bytes::from(body.clone()), &ValidationConfig::default(), &BTreeMap::new(), Some(&catalog));
        match result {
            Ok(chat) => prop_assert_eq!(chat.body.as_ref(), body.as_slice()),
            Err(rejection) => prop_assert!(false, "refused a valid request: {:?}\n{}", rejection, String::from_utf8_lossy(&body)),
        }
    }

    /// A fallback's body is the checked request with only the model (and the tier) changed,
    /// serialised as a tree is: compared here with the tree of the body sent.
    #[test]
    fn fallback_bodies_are_the_checked_tree_with_another_model(
        body in valid_request(),
        store in any::<bool>(),
        tier in proptest::option::of(prop_oneof![Just("on_demand"), Just("flex")]),
        alias in any::<bool>(),
    ) {
        let mut tree: serde_json::Map<String, Value> = serde_json::from_slice(&body).unwrap_or_default();
        if store {
            tree.insert("store".into(), json!(true));
        }
        if alias {
            tree.insert("model".into(), json!("gpt-4o-mini"));
        }
        let body = if store || alias { serde_json::to_vec_pretty(&tree).unwrap_or_default() } else { body };
        let aliases: std::collections::BTreeMap<String, String> =
            [("gpt-4o-mini".to_owned(), "openai/gpt-oss-20b".to_owned())].into();
        let chat = validate_chat(Bytes::from(body), &ValidationConfig::default(), &aliases, None);
        let Ok(chat) = chat else { return Err(TestCaseError::fail("valid")) };
        let call = super::Call { cacheable: Some(chat.request), ..super::Call::default() };
        let mut expected: serde_json::Map<String, Value> = serde_json::from_slice(&chat.body).unwrap_or_default();
        expected.insert("model".into(), json!("other/model"));
        if let Some(tier) = tier {
            expected.insert("service_tier".into(), json!(tier));
        }
        let got = super::with_model(&call, "other/model", tier);
        let expected = serde_json::to_vec(&expected).ok();
        prop_assert_eq!(got.as_deref(), expected.as_deref());
    }

    #[test]
    fn mutated_requests_never_panic(body in valid_request(), edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..8)) {
        let mut bytes = body;
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let at = at % bytes.len();
            match op {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 => { bytes.remove(at); }
                _ => bytes.truncate(at),
            }
        }
        let catalog = catalog();
        let _ = validate_chat(Bytes::from(bytes), &ValidationConfig::default(), &BTreeMap::new(), Some(&catalog));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = validate_chat(Bytes::from(bytes), &ValidationConfig::default(), &BTreeMap::new(), None);
    }
}

/// Inputs that once crashed or hung the fuzz target (`fuzz/`), kept as regressions.
#[test]
fn fuzz_regressions_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/validation/regressions");
    let catalog = catalog();
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for entry in entries.flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        let _ = validate_chat(
            Bytes::from(bytes),
            &ValidationConfig::default(),
            &BTreeMap::new(),
            Some(&catalog),
        );
    }
}
