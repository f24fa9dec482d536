//! The chat request's vocabulary and the two things every step reads it through: its top-level fields picked once, and the edits compatibility decided.

use bytes::Bytes;

use crate::wire::json::Raw;

/// Fields Groq documents for chat completions; used to suggest a spelling when a field is
/// unknown, and to refuse unknown ones when `validation.unknown_fields = "reject"`.
pub const KNOWN_FIELDS: &[&str] = PICKED.split_at(KNOWN).0;

/// Top-level fields OpenAI accepts and Groq refuses. OpenAI SDKs and frameworks send several of
/// them by default (`store`, `metadata`, `prompt_cache_key`), which is why stripping is the default.
pub const OPENAI_ONLY_FIELDS: &[&str] = PICKED.split_at(KNOWN).1;

/// Message fields OpenAI returns on assistant messages, which clients echo back in the history.
pub const OPENAI_ONLY_MESSAGE_FIELDS: &[&str] = &["refusal", "annotations", "audio"];

pub const SERVICE_TIERS: &[&str] = &["auto", "on_demand", "flex", "performance"];
pub const REASONING_EFFORTS: &[&str] = &["none", "default", "low", "medium", "high"];

const KNOWN: usize = 34;

/// Groq's fields, then OpenAI's only: the top-level fields any step reads by name.
const PICKED: &[&str; 45] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "n",
    "stop",
    "max_completion_tokens",
    "max_tokens",
    "stream",
    "stream_options",
    "response_format",
    "tools",
    "tool_choice",
    "reasoning_format",
    "reasoning_effort",
    "include_reasoning",
    "service_tier",
    "seed",
    "user",
    "parallel_tool_calls",
    "search_settings",
    "documents",
    "citation_options",
    "disable_tool_validation",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "functions",
    "function_call",
    "compound_custom",
    "exclude_domains",
    "include_domains",
    // OpenAI's only, from here.
    "store",
    "metadata",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "verbosity",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "moderation",
];

/// Where `name` is in [`PICKED`]: a `match`, which the compiler turns into a few comparisons,
/// since every field read goes through here.
fn slot(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"model" => 0,
        b"messages" => 1,
        b"temperature" => 2,
        b"top_p" => 3,
        b"frequency_penalty" => 4,
        b"presence_penalty" => 5,
        b"n" => 6,
        b"stop" => 7,
        b"max_completion_tokens" => 8,
        b"max_tokens" => 9,
        b"stream" => 10,
        b"stream_options" => 11,
        b"response_format" => 12,
        b"tools" => 13,
        b"tool_choice" => 14,
        b"reasoning_format" => 15,
        b"reasoning_effort" => 16,
        b"include_reasoning" => 17,
        b"service_tier" => 18,
        b"seed" => 19,
        b"user" => 20,
        b"parallel_tool_calls" => 21,
        b"search_settings" => 22,
        b"documents" => 23,
        b"citation_options" => 24,
        b"disable_tool_validation" => 25,
        b"logprobs" => 26,
        b"top_logprobs" => 27,
        b"logit_bias" => 28,
        b"functions" => 29,
        b"function_call" => 30,
        b"compound_custom" => 31,
        b"exclude_domains" => 32,
        b"include_domains" => 33,
        b"store" => 34,
        b"metadata" => 35,
        b"prompt_cache_key" => 36,
        b"prompt_cache_retention" => 37,
        b"safety_identifier" => 38,
        b"verbosity" => 39,
        b"modalities" => 40,
        b"audio" => 41,
        b"prediction" => 42,
        b"web_search_options" => 43,
        b"moderation" => 44,
        _ => return None,
    })
}

/// The request object with the fields the steps read by name found in one walk: reading a
/// field is then a lookup, not a walk over the (possibly megabytes of) messages before it.
pub struct Top<'a> {
    raw: Raw<'a>,
    fields: [Option<Raw<'a>>; 45],
}

impl<'a> Top<'a> {
    /// `raw` must be an object.
    pub fn new(raw: Raw<'a>) -> Self {
        let mut fields = [None; 45];
        for (key, value) in raw.entries() {
            let at = if key.has_escapes() {
                slot(key.text().as_bytes())
            } else {
                slot(key.raw())
            };
            if let Some(at) = at {
                fields[at] = Some(value);
            }
        }
        Top { raw, fields }
    }

    pub fn raw(&self) -> Raw<'a> {
        self.raw
    }

    pub fn get(&self, name: &str) -> Option<Raw<'a>> {
        match slot(name.as_bytes()) {
            Some(i) => self.fields[i],
            None => self.raw.get(name),
        }
    }
}

/// The request as checked, for the steps after validation (the cache key, fallbacks): the
/// bytes Groq receives, with the places of its top-level fields found once.
#[derive(Clone)]
pub struct Checked {
    body: Bytes,
    spans: [Option<(usize, usize)>; 45],
    /// When compatibility rewrote the request: the client's bytes and the edits `body` encodes.
    rewritten: Option<(Bytes, Edits)>,
}

impl Checked {
    /// `top` must have been read from `body`'s bytes.
    pub fn new(body: Bytes, top: &Top<'_>, rewritten: Option<(Bytes, Edits)>) -> Self {
        let spans = top.fields.map(|field| field.and_then(|raw| raw.span_in(&body)));
        Checked { body, spans, rewritten }
    }

    /// The client's bytes and the edits that make them the checked request.
    pub fn source(&self) -> (&Bytes, Edits) {
        match &self.rewritten {
            Some((original, edits)) => (original, edits.clone()),
            None => (&self.body, Edits::default()),
        }
    }

    /// `body` must have passed `strict::check` (or come from a serialiser); `None` unless it
    /// is an object.
    pub fn from_body(body: Bytes) -> Option<Self> {
        let root = Raw::root(&body).filter(|root| root.is_object())?;
        let top = Top::new(root);
        let spans = top.fields.map(|field| field.and_then(|raw| raw.span_in(&body)));
        Some(Checked {
            body,
            spans,
            rewritten: None,
        })
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The request object.
    pub fn root(&self) -> Option<Raw<'_>> {
        Raw::root(&self.body)
    }

    /// A top-level field.
    pub fn get(&self, name: &str) -> Option<Raw<'_>> {
        match slot(name.as_bytes()) {
            Some(i) => self.spans[i].and_then(|span| Raw::at(&self.body, span)),
            None => self.root().and_then(|root| root.get(name)),
        }
    }
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the prompt itself: this may reach a log line.
        write!(f, "Checked({} bytes)", self.body.len())
    }
}

/// What compatibility changes in the request, decided once and applied wherever it is read:
/// by the rules, the NUL check, the re-encoding of the body. A predicate per place rather than a
/// list of removed paths, so the plan stays a few bytes whatever the body holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Edits {
    /// New values of top-level strings (the model's alias target, Groq's spelling of an
    /// OpenAI value); one absent from the request is added at its end.
    pub model: Option<String>,
    pub service_tier: Option<String>,
    pub reasoning_effort: Option<&'static str>,
    /// OpenAI-only fields are removed: top-level ones, `stream_options.include_obfuscation`,
    /// and those of assistant messages.
    pub strip_openai: bool,
    /// Top-level fields that are not Groq's are removed.
    pub strip_unknown: bool,
}

impl Edits {
    /// The new value of a top-level string field, if it is replaced.
    pub fn replacement(&self, key: &str) -> Option<&str> {
        match key {
            "model" => self.model.as_deref(),
            "service_tier" => self.service_tier.as_deref(),
            "reasoning_effort" => self.reasoning_effort,
            _ => None,
        }
    }

    /// The replaced fields, for adding those the request lacks.
    pub fn replacements(&self) -> [(&'static str, Option<&str>); 3] {
        [
            ("model", self.model.as_deref()),
            ("service_tier", self.service_tier.as_deref()),
            ("reasoning_effort", self.reasoning_effort),
        ]
    }

    pub fn drops_top(&self, key: &str) -> bool {
        (self.strip_openai && OPENAI_ONLY_FIELDS.contains(&key)) || (self.strip_unknown && !KNOWN_FIELDS.contains(&key))
    }

    pub fn drops_in_stream_options(&self, key: &str) -> bool {
        self.strip_openai && key == "include_obfuscation"
    }

    /// Whether fields of `message` (an item of `messages`) are removed: see [`Self::drops_in_message`].
    pub fn strips_message(&self, message: Raw<'_>) -> bool {
        self.strip_openai && message.get("role").is_some_and(|role| role.is_str("assistant"))
    }

    /// For a field of a message `strips_message` said yes to.
    pub fn drops_in_message(&self, key: &str) -> bool {
        OPENAI_ONLY_MESSAGE_FIELDS.contains(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_split_where_openais_fields_start() {
        assert_eq!(KNOWN_FIELDS.first(), Some(&"model"));
        assert_eq!(KNOWN_FIELDS.last(), Some(&"include_domains"));
        assert_eq!(OPENAI_ONLY_FIELDS.first(), Some(&"store"));
        assert_eq!(OPENAI_ONLY_FIELDS.len(), 11);
    }

    #[test]
    fn every_picked_field_has_its_slot() {
        for (i, name) in PICKED.iter().enumerate() {
            assert_eq!(slot(name.as_bytes()), Some(i), "{name}");
        }
        assert_eq!(slot(b"other"), None);
    }
}
