//! Models Groq has retired, answered as Groq answers them: `400`, `model_decommissioned`, in the words of error-400-decommissioned.json with the model named.
//!
//! The table is Groq's deprecations page (as of late 2026, free and developer tiers): the retired
//! id, its shutdown date and the replacement Groq recommends, which may itself be retired (they
//! chain: `llama3-8b-8192` → `llama-3.1-8b-instant` → `openai/gpt-oss-20b`).

use super::fixtures;
use super::reply::Reply;

/// `(retired id, shutdown date, replacement)`, newest first.
pub const RETIRED: &[(&str, &str, Option<&str>)] = &[
    ("groq/compound", "2026-09-21", None),
    ("groq/compound-mini", "2026-09-21", None),
    ("qwen/qwen3.6-27b", "2026-09-14", Some("qwen/qwen3.8-27b")),
    ("llama-3.1-8b-instant", "2026-08-16", Some("openai/gpt-oss-20b")),
    ("llama-3.3-70b-versatile", "2026-08-16", Some("openai/gpt-oss-120b")),
    ("qwen/qwen3-32b", "2026-07-17", Some("openai/gpt-oss-120b")),
    (
        "meta-llama/llama-4-scout-17b-16e-instruct",
        "2026-07-17",
        Some("openai/gpt-oss-120b"),
    ),
    (
        "moonshotai/kimi-k2-instruct-0905",
        "2026-04-15",
        Some("openai/gpt-oss-120b"),
    ),
    (
        "meta-llama/llama-4-maverick-17b-128e-instruct",
        "2026-03-09",
        Some("openai/gpt-oss-120b"),
    ),
    (
        "meta-llama/llama-guard-4-12b",
        "2026-03-05",
        Some("openai/gpt-oss-safeguard-20b"),
    ),
    ("playai-tts", "2025-12-31", Some("canopylabs/orpheus-v1-english")),
    (
        "playai-tts-arabic",
        "2025-12-31",
        Some("canopylabs/orpheus-arabic-saudi"),
    ),
    ("moonshotai/kimi-k2-instruct", "2025-10-10", Some("openai/gpt-oss-120b")),
    ("gemma2-9b-it", "2025-10-08", Some("llama-3.1-8b-instant")),
    (
        "deepseek-r1-distill-llama-70b",
        "2025-10-02",
        Some("llama-3.3-70b-versatile"),
    ),
    ("llama3-70b-8192", "2025-08-30", Some("llama-3.3-70b-versatile")),
    ("llama3-8b-8192", "2025-08-30", Some("llama-3.1-8b-instant")),
    (
        "distil-whisper-large-v3-en",
        "2025-08-23",
        Some("whisper-large-v3-turbo"),
    ),
    ("mistral-saba-24b", "2025-07-30", None),
    ("qwen-qwq-32b", "2025-07-14", Some("qwen/qwen3-32b")),
    ("llama-guard-3-8b", "2025-06-06", Some("meta-llama/llama-guard-4-12b")),
    ("mixtral-8x7b-32768", "2025-03-20", Some("llama-3.3-70b-versatile")),
    ("llama-3.1-70b-versatile", "2025-01-24", Some("llama-3.3-70b-versatile")),
    ("gemma-7b-it", "2024-12-18", Some("gemma2-9b-it")),
];

/// The model Groq recommends instead of `model`, followed through every retired replacement:
/// `Some(None)` for a retired model without one, `None` for a model that is not retired.
pub fn replacement(model: &str) -> Option<Option<&'static str>> {
    let mut next = lookup(model)?;
    // The table has no cycles; the bound only keeps a bad edit from looping.
    for _ in 0..RETIRED.len() {
        match next.and_then(lookup) {
            Some(further) => next = further,
            None => return Some(next),
        }
    }
    Some(next)
}

fn lookup(model: &str) -> Option<Option<&'static str>> {
    RETIRED.iter().find(|(id, _, _)| *id == model).map(|(_, _, to)| *to)
}

/// Groq's answer to a request for `model`, if it is retired: the fixture's status, headers and
/// words, with `model` named where the fixture names its own.
pub(crate) fn answer(model: &str) -> Option<Reply> {
    lookup(model)?;
    let Some(Reply::Full { status, headers, body }) = fixtures::error("400-decommissioned") else {
        return None;
    };
    let text = String::from_utf8_lossy(&body);
    let mut escaped = String::new();
    super::frames::go_json_string(model, &mut escaped);
    // The fixture names its model as "`<id>`"; the JSON-escaped id without its quotes fits there.
    let inner = escaped.trim_matches('"');
    let body = match (text.find("The model `"), text.find("` has been decommissioned")) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{inner}{}", &text[..start + "The model `".len()], &text[end..])
        }
        _ => text.into_owned(),
    };
    Some(Reply::Full {
        status,
        headers,
        body: body.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_chain_to_a_live_model() {
        assert_eq!(replacement("llama3-8b-8192"), Some(Some("openai/gpt-oss-20b")));
        assert_eq!(replacement("gemma-7b-it"), Some(Some("openai/gpt-oss-20b")));
        assert_eq!(replacement("qwen-qwq-32b"), Some(Some("openai/gpt-oss-120b")));
        assert_eq!(replacement("mistral-saba-24b"), Some(None));
        assert_eq!(replacement("openai/gpt-oss-20b"), None);
    }

    #[test]
    fn the_answer_is_groqs_with_the_model_named() {
        let Some(Reply::Full { status, body, .. }) = answer("llama3-8b-8192") else {
            panic!("retired");
        };
        assert_eq!(status, 400);
        let text = String::from_utf8_lossy(&body);
        assert_eq!(
            text,
            "{\"error\":{\"message\":\"The model `llama3-8b-8192` has been decommissioned and is no longer supported. Please refer to https://console.groq.com/docs/deprecations for a recommendation on which model to use instead.\",\"type\":\"invalid_request_error\",\"code\":\"model_decommissioned\"}}\n"
        );
        assert!(answer("openai/gpt-oss-20b").is_none());
    }
}
