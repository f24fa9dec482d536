//! Non-streaming chat, models and the streamed pass-through routes: bodies, statuses and headers as Groq sent them.

use groq_sim::fixtures;

use crate::support::*;

#[tokio::test]
async fn non_streaming_body_status_and_headers_pass_through() {
    let (sim, gw) = pair().await;
    let response = post_chat(&gw, chat_body(false)).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body");
    assert_eq!(body, fixtures::chat_completion(), "body relayed byte for byte");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-groq-request-id"], "req_01m48tqzdve5v8d97j7jgm40as");
    assert_eq!(headers["x-request-id"].len(), 36, "groxy's own request id");
    assert_eq!(headers["x-ratelimit-remaining-tokens"], "7965");
    assert_eq!(headers["x-ratelimit-reset-requests"], "1m26.4s");
    for dropped in ["set-cookie", "cf-ray", "cf-cache-status", "server", "via", "alt-svc"] {
        assert!(headers.get(dropped).is_none(), "{dropped} must not reach the client");
    }
    assert_eq!(call_count(&sim), 1);
}

#[tokio::test]
async fn the_request_reaches_groq_byte_for_byte_with_the_upstream_key() {
    let (sim, gw) = pair().await;
    // Odd whitespace, key order, escapes and non-ASCII: any re-serialisation would change them.
    let body = "{ \"stream\" :false,\n \"model\":\"openai/gpt-oss-20b\", \"messages\":[{\"content\":\"caf\\u00e9 \u{1F680} <&>\",\"role\":\"user\"}] , \"temperature\": 1.50 }";
    let response = client()
        .post(gw.url(CHAT))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-client-secret")
        .header("cookie", "session=1")
        .header("x-stainless-lang", "python")
        .header("user-agent", "OpenAI/Python 2.8.0")
        .header("openai-organization", "org-1")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let seen = last_request(&sim);
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(seen.path, "/openai/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert_eq!(seen.header("x-stainless-lang"), Some("python"));
    assert_eq!(seen.header("user-agent"), Some("OpenAI/Python 2.8.0"));
    assert_eq!(seen.header("openai-organization"), Some("org-1"));
    assert_eq!(seen.header("cookie"), None);
    assert_eq!(
        seen.header("accept-encoding"),
        Some("identity"),
        "Groq must answer uncompressed"
    );
}

#[tokio::test]
async fn the_groq_sdk_prefix_works_too() {
    let (sim, gw) = pair().await;
    let response = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .body(chat_body(false))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let response = client().get(gw.url("/openai/v1/models")).send().await.expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("body"), fixtures::models());
    assert_eq!(call_count(&sim), 2);
}

#[tokio::test]
async fn models_list_and_one_model_whose_id_has_a_slash() {
    let (sim, gw) = pair().await;
    let list = client().get(gw.url("/v1/models")).send().await.expect("send");
    assert_eq!(list.status(), 200);
    let list = json(&list.bytes().await.expect("body"));
    assert_eq!(list["object"], "list");
    let one = client()
        .get(gw.url("/v1/models/openai/gpt-oss-20b"))
        .send()
        .await
        .expect("send");
    assert_eq!(one.status(), 200);
    assert_eq!(json(&one.bytes().await.expect("body"))["id"], "openai/gpt-oss-20b");
    assert_eq!(last_request(&sim).path, "/openai/v1/models/openai/gpt-oss-20b");
    let missing = client().get(gw.url("/v1/models/nope/nope")).send().await.expect("send");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        assert_sdk_error(&missing.bytes().await.expect("body"))["code"],
        "model_not_found"
    );
}

#[tokio::test]
async fn uploads_and_downloads_stream_through() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    // The simulator's download size travels in a header groxy only forwards when told to.
    config.upstream.forward_headers = vec!["x-sim-bytes".to_owned()];
    let gw = gateway(config).await;
    // A 3 MiB multipart upload, sent in chunks without a length: it must arrive whole.
    let boundary = "groxyboundary";
    let mut upload = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\nwhisper-large-v3-turbo\r\n--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\ncontent-type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    upload.extend((0..3 * 1024 * 1024).map(|i| (i % 251) as u8));
    upload.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = upload.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let response = client()
        .post(gw.url("/v1/audio/transcriptions"))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let echo = json(&response.bytes().await.expect("body"));
    assert_eq!(echo["bytes"], upload.len());
    assert_eq!(echo["path"], "/openai/v1/audio/transcriptions");
    let seen = last_request(&sim);
    assert_eq!(seen.body_len, upload.len());
    assert_eq!(seen.body[..1024], upload[..1024]);

    // The same with a length announced: the length is forwarded as announced.
    let response = client()
        .post(gw.url("/openai/v1/files"))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(upload.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(json(&response.bytes().await.expect("body"))["bytes"], upload.len());
    assert_eq!(
        last_request(&sim).header("content-length"),
        Some(upload.len().to_string().as_str())
    );

    // A download comes back whole.
    let response = client()
        .get(gw.url("/v1/files/file_123/content"))
        .header("x-sim-bytes", "2000000")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("body").len(), 2_000_000);
}

#[tokio::test]
async fn unknown_paths_get_groqs_unknown_url_404() {
    let (sim, gw) = pair().await;
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/completions"),
        ("GET", "/v2/models"),
        ("POST", "/healthz"),
        ("GET", "/v1/../etc/passwd"),
    ] {
        let response = client()
            .request(method.parse().expect("method"), gw.url(path))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 404, "{method} {path}");
        let error = assert_openai_error(&response.bytes().await.expect("body"));
        assert_eq!(error["code"], "unknown_url");
        assert_eq!(error["type"], "invalid_request_error");
    }
    assert_eq!(call_count(&sim), 0);
    // Paths under the prefix that Groq does not serve get Groq's own answer.
    let response = client()
        .post(gw.url("/v1/completions"))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
    assert_eq!(
        assert_sdk_error(&response.bytes().await.expect("body"))["code"],
        "unknown_url"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let (_sim, gw) = pair().await;
    let health = client().get(gw.url("/healthz")).send().await.expect("send");
    assert_eq!(health.status(), 200);
    let ready = client().get(gw.url("/readyz")).send().await.expect("send");
    assert_eq!(ready.status(), 200);
    assert_eq!(json(&ready.bytes().await.expect("body"))["status"], "ready");
}
