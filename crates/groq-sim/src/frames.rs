//! Synthesized chat completion streams, byte-compatible with Groq's frames.
//!
//! Frames are built lazily, one per poll, so that a `x-sim-stamp` timestamp is taken just before
//! the frame is handed to hyper and a long stream needs no up-front allocation.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

/// Content deltas, cycled: short words as Groq emits them (leading space, no trailing one).
pub(crate) const WORDS: &[&str] = &[
    "Fast", " models", " answer", " in", " milli", "seconds", " and", " keep", " users", " engaged", ".",
];

pub(crate) const FINGERPRINT: &str = "fp_ef00694abe";

/// What the request asked for, as far as the shape of the answer goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Intent {
    /// Answer with a call of this function instead of text.
    pub(crate) tool: Option<String>,
    /// `response_format` json_object / json_schema: the content must parse as JSON.
    pub(crate) json_mode: bool,
    /// `stream_options.include_usage`: one more `choices:[]` chunk carrying `usage`.
    pub(crate) include_usage: bool,
    /// `x-sim-stamp: 1`: content is the sender's wall clock in ns since the UNIX epoch.
    pub(crate) stamp: bool,
}

/// The ids of one synthesized answer; Groq's `x-request-id` equals `request_id`.
pub(crate) struct Ids {
    pub(crate) completion_id: String,
    pub(crate) request_id: String,
    pub(crate) call_id: String,
    pub(crate) seed: u64,
    pub(crate) created: u64,
}

impl Ids {
    /// Unique per `seq`, in Groq's formats (a UUID, a 26-character ULID-like id).
    pub(crate) fn new(seq: u64) -> Ids {
        Ids {
            completion_id: format!("chatcmpl-5e000000-0000-4000-8000-{seq:012x}"),
            request_id: format!("req_01sim{seq:021}"),
            call_id: format!("call_sim{seq:08}"),
            seed: seq.wrapping_mul(2_654_435_761) % 2_000_000_000,
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }
}

/// A Groq-format stream: role frame, content frames (or one tool-call frame), finish frame with
/// `x_groq.usage` and a top-level `usage`, the optional `choices:[]` usage chunk, `[DONE]`.
pub(crate) struct SynthStream {
    /// `data: {"id":…,"object":…,"created":…,"model":…,"system_fingerprint":…,`
    prefix: String,
    ids: Ids,
    intent: Intent,
    content_frames: usize,
    prompt_tokens: usize,
    next: usize,
}

impl SynthStream {
    /// `content_frames` is ignored for a tool call, which arrives whole in one delta as Groq's do.
    pub(crate) fn new(
        model: &str,
        content_frames: usize,
        prompt_tokens: usize,
        intent: Intent,
        seq: u64,
    ) -> SynthStream {
        let ids = Ids::new(seq);
        let mut prefix = String::with_capacity(200);
        let _ = write!(
            prefix,
            "data: {{\"id\":\"{}\",\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":",
            ids.completion_id, ids.created
        );
        go_json_string(model, &mut prefix);
        let _ = write!(prefix, ",\"system_fingerprint\":\"{FINGERPRINT}\",");
        let content_frames = completion_tokens(content_frames, &intent);
        SynthStream {
            prefix,
            ids,
            intent,
            content_frames,
            prompt_tokens,
            next: 0,
        }
    }

    pub(crate) fn request_id(&self) -> &str {
        &self.ids.request_id
    }

    fn frame_count(&self) -> usize {
        self.content_frames + 3 + usize::from(self.intent.include_usage)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.next >= self.frame_count()
    }

    /// The rest of the stream in one buffer (timestamps are taken now).
    pub(crate) fn collect_all(mut self) -> Bytes {
        let mut out = BytesMut::new();
        while let Some(frame) = self.next_frame() {
            out.extend_from_slice(&frame);
        }
        out.freeze()
    }

    pub(crate) fn next_frame(&mut self) -> Option<Bytes> {
        let (i, n) = (self.next, self.content_frames);
        if i >= self.frame_count() {
            return None;
        }
        self.next += 1;
        if i + 1 == self.frame_count() {
            return Some(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        let mut f = String::with_capacity(self.prefix.len() + 400);
        f.push_str(&self.prefix);
        let usage_block = || usage(self.prompt_tokens, n);
        if i == n + 2 {
            let _ = write!(
                f,
                "\"choices\":[],\"usage\":{},\"service_tier\":\"on_demand\"}}\n\n",
                usage_block()
            );
            return Some(Bytes::from(f));
        }
        f.push_str("\"choices\":[{\"index\":0,\"delta\":");
        if i == 0 {
            let content = if self.intent.tool.is_some() { "null" } else { "\"\"" };
            let _ = write!(
                f,
                "{{\"role\":\"assistant\",\"content\":{content}}},\"logprobs\":null,\
                 \"finish_reason\":null}}],\"x_groq\":{{\"id\":\"{}\",\"seed\":{}}}}}\n\n",
                self.ids.request_id, self.ids.seed
            );
        } else if i <= n {
            match &self.intent.tool {
                Some(name) => {
                    let _ = write!(
                        f,
                        "{{\"tool_calls\":[{{\"id\":\"{}\",\"type\":\"function\",\
                         \"function\":{{\"name\":",
                        self.ids.call_id
                    );
                    go_json_string(name, &mut f);
                    f.push_str(",\"arguments\":\"{}\"},\"index\":0}]}");
                }
                None => {
                    f.push_str("{\"content\":");
                    go_json_string(&self.content(i), &mut f);
                    f.push('}');
                }
            }
            f.push_str(",\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        } else {
            let reason = if self.intent.tool.is_some() {
                "tool_calls"
            } else {
                "stop"
            };
            let usage = usage_block();
            let _ = write!(
                f,
                "{{}},\"logprobs\":null,\"finish_reason\":\"{reason}\"}}],\
                 \"x_groq\":{{\"id\":\"{}\",\"usage\":{usage}}},\"usage\":{usage}}}\n\n",
                self.ids.request_id
            );
        }
        Some(Bytes::from(f))
    }

    /// The text of content frame `i` (1-based).
    fn content(&self, i: usize) -> String {
        if self.intent.stamp {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            return format!("t{nanos} ");
        }
        let word = WORDS[(i - 1) % WORDS.len()];
        if !self.intent.json_mode {
            return word.to_owned();
        }
        // Pieces of `{"answer":"…"}`, so the concatenated content parses as JSON.
        let open = if i == 1 { "{\"answer\":\"" } else { "" };
        let close = if i == self.content_frames { "\"}" } else { "" };
        format!("{open}{word}{close}")
    }
}

/// The `completion_tokens` a synthesized stream of `content_frames` reports: one per content
/// frame, and a tool call is one frame.
pub(crate) fn completion_tokens(content_frames: usize, intent: &Intent) -> usize {
    if intent.tool.is_some() { 1 } else { content_frames }
}

/// Groq's usage block; times are plausible fixed values (about 1 ms per generated token).
pub(crate) fn usage(prompt: usize, completion: usize) -> String {
    let completion_us = 1_000 * completion as u64;
    format!(
        "{{\"queue_time\":{},\"prompt_tokens\":{prompt},\"prompt_time\":{},\
         \"completion_tokens\":{completion},\"completion_time\":{},\
         \"total_tokens\":{},\"total_time\":{}}}",
        seconds(16_000),
        seconds(3_500),
        seconds(completion_us),
        prompt + completion,
        seconds(3_500 + completion_us),
    )
}

/// Microseconds as the shortest decimal seconds, the way Go prints a float64 (`0.0035`, `0`).
fn seconds(micros: u64) -> String {
    let (whole, frac) = (micros / 1_000_000, micros % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A JSON string literal escaped as Go's encoder does (`<`, `>`, `&` become `\u003c` …), so
/// synthesized frames look like Groq's to a byte-exact comparison.
pub(crate) fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
#[path = "frames_tests.rs"]
mod tests;
