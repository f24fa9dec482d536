//! Synthesized chat completion streams, byte-compatible with Groq's frames.
//!
//! Frames are built lazily, one per poll, so that a `x-sim-stamp` timestamp is taken just before
//! the frame is handed to hyper and a long stream needs no up-front allocation.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

/// Content deltas, cycled: short words as Groq emits them (leading space, no trailing one).
const WORDS: &[&str] = &[
    "Fast", " models", " answer", " in", " milli", "seconds", " and", " keep", " users", " engaged", ".",
];

const FINGERPRINT: &str = "fp_ef00694abe";

/// A Groq-format stream: role frame, `n` content frames, finish frame with `x_groq.usage` and a
/// top-level `usage`, then `data: [DONE]`.
pub(crate) struct SynthStream {
    /// `data: {"id":…,"object":…,"created":…,"model":…,"system_fingerprint":…,"choices":[{"index":0,`
    head: String,
    request_id: String,
    seed: u64,
    content_frames: usize,
    prompt_tokens: usize,
    /// With `x-sim-stamp: 1`: content is the sender's wall clock in ns since the UNIX epoch.
    stamp: bool,
    /// 0 = role frame, 1..=n content, n+1 finish, n+2 `[DONE]`, beyond: exhausted.
    next: usize,
}

impl SynthStream {
    /// `seq` makes ids unique per request; `prompt_tokens` only feeds the usage block.
    pub(crate) fn new(model: &str, content_frames: usize, prompt_tokens: usize, stamp: bool, seq: u64) -> SynthStream {
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut head = String::with_capacity(256);
        let _ = write!(
            head,
            "data: {{\"id\":\"chatcmpl-5e000000-0000-4000-8000-{seq:012x}\",\
             \"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":"
        );
        go_json_string(model, &mut head);
        let _ = write!(
            head,
            ",\"system_fingerprint\":\"{FINGERPRINT}\",\"choices\":[{{\"index\":0,"
        );
        SynthStream {
            head,
            request_id: format!("req_01sim{seq:021}"),
            seed: seq.wrapping_mul(2_654_435_761) % 2_000_000_000,
            content_frames,
            prompt_tokens,
            stamp,
            next: 0,
        }
    }

    /// The `x_groq.id` of this stream, which Groq also sends as `x-request-id`.
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.next > self.content_frames + 2
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
        let n = self.content_frames;
        let i = self.next;
        self.next += 1;
        if i == n + 2 {
            return Some(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        if i > n + 2 {
            self.next = n + 3;
            return None;
        }
        let mut f = String::with_capacity(self.head.len() + 400);
        f.push_str(&self.head);
        if i == 0 {
            let _ = write!(
                f,
                "\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\
                 \"finish_reason\":null}}],\"x_groq\":{{\"id\":\"{}\",\"seed\":{}}}}}\n\n",
                self.request_id, self.seed
            );
        } else if i <= n {
            f.push_str("\"delta\":{\"content\":\"");
            if self.stamp {
                let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                let _ = write!(f, "t{nanos} ");
            } else {
                f.push_str(WORDS[(i - 1) % WORDS.len()]);
            }
            f.push_str("\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        } else {
            let usage = self.usage();
            let _ = write!(
                f,
                "\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\
                 \"x_groq\":{{\"id\":\"{}\",\"usage\":{usage}}},\"usage\":{usage}}}\n\n",
                self.request_id
            );
        }
        Some(Bytes::from(f))
    }

    /// Groq's usage block; times are plausible fixed values (about 1 ms per token).
    fn usage(&self) -> String {
        let (prompt, completion) = (self.prompt_tokens, self.content_frames);
        let queue_us = 16_000;
        let prompt_us = 3_500;
        let completion_us = 1_000 * completion as u64;
        format!(
            "{{\"queue_time\":{},\"prompt_tokens\":{prompt},\"prompt_time\":{},\
             \"completion_tokens\":{completion},\"completion_time\":{},\
             \"total_tokens\":{},\"total_time\":{}}}",
            seconds(queue_us),
            seconds(prompt_us),
            seconds(completion_us),
            prompt + completion,
            seconds(prompt_us + completion_us),
        )
    }
}

/// Microseconds as the shortest decimal seconds, the way Go prints a float64 (`0.0035`, `0`).
fn seconds(micros: u64) -> String {
    let whole = micros / 1_000_000;
    let frac = micros % 1_000_000;
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
mod tests {
    use super::*;
    use serde_json::Value;

    fn events(mut s: SynthStream) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(f) = s.next_frame() {
            out.push(String::from_utf8(f.to_vec()).unwrap_or_default());
        }
        out
    }

    fn payload(event: &str) -> Value {
        let json = event
            .strip_prefix("data: ")
            .and_then(|e| e.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not an SSE data event: {event:?}"));
        assert!(!json.contains('\n'));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    #[test]
    fn synthesized_stream_has_groq_framing() {
        let all = events(SynthStream::new("openai/gpt-oss-20b", 5, 40, false, 9));
        assert_eq!(all.len(), 8);
        assert_eq!(all.last().map(String::as_str), Some("data: [DONE]\n\n"));
        let frames: Vec<Value> = all[..7].iter().map(|e| payload(e)).collect();
        for f in &frames {
            assert_eq!(f["model"], "openai/gpt-oss-20b");
            assert_eq!(f["object"], "chat.completion.chunk");
            assert_eq!(f["id"], frames[0]["id"]);
        }
        assert_eq!(frames[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(frames[0]["x_groq"]["id"], "req_01sim000000000000000000009");
        let text: String = frames[1..6]
            .iter()
            .map(|f| f["choices"][0]["delta"]["content"].as_str().unwrap_or("?"))
            .collect();
        assert_eq!(text, "Fast models answer in milli");
        let finish = &frames[6];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        assert_eq!(finish["usage"], finish["x_groq"]["usage"]);
        assert_eq!(finish["usage"]["completion_tokens"], 5);
        assert_eq!(finish["usage"]["total_tokens"], 45);
    }

    #[test]
    fn stamps_and_escaping() {
        let all = events(SynthStream::new("a<b>&\"c\"", 2, 1, true, 1));
        assert!(all[0].contains(r#""model":"a\u003cb\u003e\u0026\"c\"""#));
        let content = payload(&all[1])["choices"][0]["delta"]["content"].clone();
        let stamp = content.as_str().unwrap_or("");
        assert!(stamp.starts_with('t') && stamp.ends_with(' '), "{stamp}");
        let nanos: u128 = stamp[1..stamp.len() - 1].parse().unwrap_or(0);
        assert!(nanos > 1_600_000_000_000_000_000);
        assert_eq!(payload(&all[0])["model"], "a<b>&\"c\"");
    }

    #[test]
    fn zero_content_frames_and_collect() {
        let s = SynthStream::new("m", 0, 1, false, 2);
        let all = s.collect_all();
        let text = String::from_utf8(all.to_vec()).unwrap_or_default();
        assert_eq!(text.matches("\n\n").count(), 3);
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(seconds(3_500), "0.0035");
        assert_eq!(seconds(2_000_000), "2");
        assert_eq!(seconds(1_250_000), "1.25");
    }
}
