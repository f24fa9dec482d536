//! Reading token usage from Groq's answers as they pass: the finish chunk of a stream, or the JSON body.

use bytes::Bytes;
use http::HeaderMap;
use serde::Deserialize;

use crate::wire::sse::{LineSplitter, data_payload};

/// Token counts as Groq reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

#[derive(Deserialize)]
struct Carrier {
    usage: Option<Usage>,
    x_groq: Option<XGroq>,
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct XGroq {
    usage: Option<Usage>,
}

/// Longest SSE line or JSON body examined; usage lives in small frames, so longer ones are skipped.
const MAX_INSPECTED: usize = 1 << 20;

/// Finds the usage (and any error event) in the answer as it passes, whatever its slicing.
#[derive(Default)]
pub struct UsageReader {
    sse: bool,
    lines: Option<LineSplitter>,
    json: Vec<u8>,
    json_overflow: bool,
    usage: Option<Usage>,
    error_event: bool,
}

/// Records the usage or error a JSON document carries. Only documents that can carry one are
/// parsed, so content deltas cost a substring search and nothing else.
fn inspect(json: &[u8], usage: &mut Option<Usage>, error_event: &mut bool) {
    let interesting = memchr::memmem::find(json, b"\"usage\"").is_some() || json.starts_with(b"{\"error\"");
    if !interesting {
        return;
    }
    if let Ok(carrier) = serde_json::from_slice::<Carrier>(json) {
        if let Some(found) = carrier.usage.or(carrier.x_groq.and_then(|x| x.usage)) {
            *usage = Some(found);
        }
        if carrier.error.is_some() {
            *error_event = true;
        }
    }
}

impl UsageReader {
    pub fn start(&mut self, headers: &HeaderMap) {
        self.sse = crate::wire::headers::is_event_stream(headers);
    }

    pub fn chunk(&mut self, chunk: &Bytes) {
        if self.sse {
            let Self {
                lines,
                usage,
                error_event,
                ..
            } = self;
            lines
                .get_or_insert_with(|| LineSplitter::new(MAX_INSPECTED))
                .feed(chunk, |line| {
                    if let Some(payload) = data_payload(line) {
                        inspect(payload, usage, error_event);
                    }
                });
        } else if !self.json_overflow {
            if self.json.len() + chunk.len() > MAX_INSPECTED {
                self.json_overflow = true;
                self.json = Vec::new();
            } else {
                self.json.extend_from_slice(chunk);
            }
        }
    }

    /// The usage and whether an error event was seen. A JSON body is read only when it
    /// arrived whole (`complete`).
    pub fn finish(&mut self, complete: bool) -> (Option<Usage>, bool) {
        if !self.sse && complete && !self.json_overflow {
            let json = std::mem::take(&mut self.json);
            inspect(&json, &mut self.usage, &mut self.error_event);
        }
        (self.usage, self.error_event)
    }
}
