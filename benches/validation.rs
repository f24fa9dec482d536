//! Cost of validating a chat request: a typical 2 KB one, a 200 KB conversation, and an 8 MiB body of tiny content parts (the shape that once cost 15-20 times its size).
//!
//! `cargo bench --bench validation`. Under `cargo test` each benchmark runs once as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test or benchmark: failing loudly and printing results is its job"
)]

use std::collections::BTreeMap;

use bytes::Bytes;
use groxy::{
    bench::{Catalog, validate_chat},
    config::ValidationConfig,
};

fn main() {
    divan::main();
}

fn catalog() -> Catalog {
    Catalog::parse(include_bytes!("../tests/fixtures/groq/models.json")).expect("fixture")
}

/// A system prompt, a few turns, one tool and the usual knobs: about 2 KB.
fn typical() -> Bytes {
    let prose = "Groq serves open models at high speed; the gateway must add almost nothing. ";
    let body = serde_json::json!({
        "model": "openai/gpt-oss-20b",
        "messages": [
            {"role": "system", "content": prose.repeat(6)},
            {"role": "user", "content": prose.repeat(5)},
            {"role": "assistant", "content": prose.repeat(3)},
            {"role": "user", "content": "And the weather in Paris?"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": "auto",
        "temperature": 0.7,
        "max_completion_tokens": 1024,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    Bytes::from(serde_json::to_vec(&body).expect("json"))
}

/// A long conversation: about 200 KB.
fn large() -> Bytes {
    let turn = "A paragraph of a long conversation, with numbers 12345 and punctuation; it goes on. ".repeat(12);
    let messages: Vec<_> = (0..200)
        .map(|i| serde_json::json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": turn}))
        .collect();
    let body = serde_json::json!({"model": "openai/gpt-oss-120b", "messages": messages, "temperature": 0.2});
    Bytes::from(serde_json::to_vec(&body).expect("json"))
}

/// Just under the default 8 MiB limit, of `{"type":"text","text":""}` parts.
fn parts() -> Bytes {
    let part = r#"{"type":"text","text":""},"#;
    let head = r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":["#;
    let tail = r#"{"type":"text","text":"hi"}]}]}"#;
    let count = (8 * 1024 * 1024 - 1024 - head.len() - tail.len()) / part.len();
    Bytes::from(format!("{head}{}{tail}", part.repeat(count)))
}

#[divan::bench(args = ["typical_2kb", "large_200kb", "parts_8mib"])]
fn validate(bencher: divan::Bencher, size: &str) {
    let body = match size {
        "typical_2kb" => typical(),
        "large_200kb" => large(),
        _ => parts(),
    };
    let config = ValidationConfig::default();
    let aliases = BTreeMap::new();
    let catalog = catalog();
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench(|| validate_chat(divan::black_box(body.clone()), &config, &aliases, Some(&catalog)).expect("valid"));
}
