//! The error bodies, statuses and stream frames clients see, checked against OpenAI's shape.

use super::*;

#[test]
fn body_is_openai_shaped_with_every_key() {
    let body = GatewayError::BodyTooLarge { limit: 10 }.body();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let e = &v["error"];
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], "request_too_large");
    assert!(e.as_object().is_some_and(|o| o.contains_key("param")));
    assert!(e["message"].as_str().is_some_and(|m| m.contains("10 bytes")));
    assert!(body.ends_with(b"}\n"));
}

#[test]
fn sse_frame_is_one_event() {
    let frame = GatewayError::UpstreamTruncated.sse_frame();
    let text = std::str::from_utf8(&frame).expect("utf8");
    assert!(text.starts_with("data: {\"error\":"));
    assert!(text.ends_with("}\n\n"));
    assert_eq!(text.matches('\n').count(), 2);
}
