//! Requests for a model Groq retired, before anything checks them against the catalogue: the live replacement sent instead (`models.retired = "remap"`), or Groq's own 400 `model_decommissioned` (`"reject"`), with zero upstream calls.
//!
//! Why here, on the client's bytes: every JSON endpoint names its model the same way (chat,
//! responses, speech), so one rewrite of the top-level `model` string serves them all, and every
//! later step (validation, the cache key, limits, the ledger, prices) sees only the model sent.
//! Only that string changes; the answer is relayed as Groq sends it. Uploads (transcriptions,
//! translations) stream to Groq unread: Groq answers a retired model there itself.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::{
    catalog::Catalog,
    config::{ModelsConfig, RetiredPolicy},
    error::{GatewayError, Rejection},
    validate::Raw,
};

/// The header that names what compatibility changed; a remap adds `model=<old>-><new>`.
pub const MAPPED_HEADER: &str = "x-groxy-mapped";

/// How often one retired model is warned about: a busy old client must not flood the log.
const WARN_EVERY: Duration = Duration::from_secs(3600);

/// A model sent in place of the one the client named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remapped {
    pub from: String,
    pub to: String,
}

/// When each retired model was last warned about, and the requests for it since. Bounded by
/// the deprecation table: only retired ids get here.
#[derive(Debug, Default)]
pub struct Warnings {
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Warnings {
    /// Whether to warn about `model` now, with the requests for it since the last warning.
    fn due(&self, model: &str) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match last.get_mut(model) {
            Some((at, since)) if now.duration_since(*at) < WARN_EVERY => {
                *since += 1;
                None
            }
            Some((at, since)) => {
                let requests = *since + 1;
                (*at, *since) = (now, 0);
                Some(requests)
            }
            None => {
                last.insert(model.to_owned(), (now, 0));
                Some(1)
            }
        }
    }
}

/// The JSON body with a retired model replaced (and what was replaced), or Groq's refusal.
/// A body without a top-level string `model`, or naming a model the key can still use, is
/// returned as it came.
pub fn apply(
    body: Bytes,
    models: &ModelsConfig,
    catalog: Option<&Catalog>,
    warnings: &Warnings,
) -> Result<(Bytes, Option<Remapped>), GatewayError> {
    let Some((named, span)) = model_of(&body) else {
        return Ok((body, None));
    };
    // An alias whose target Groq retired (for this key's tier) is followed like its target.
    let model = models.aliases.get(&named).map_or(named.as_str(), String::as_str);
    let table = models.deprecations();
    if table.lookup(model).is_none() {
        return Ok((body, None));
    }
    let is_live = |m: &str| catalog.is_some_and(|c| c.get(m).is_some());
    let Some(resolved) = table.resolve(model, catalog.map(|_| &is_live as &dyn Fn(&str) -> bool)) else {
        return Ok((body, None));
    };
    let live = match (models.retired, resolved.live) {
        (RetiredPolicy::Remap, Some(live)) => live,
        (_, _) => {
            return Err(GatewayError::Rejected(Rejection::Decommissioned {
                model: model.to_owned(),
                replacement: resolved.named,
            }));
        }
    };
    if let Some(requests) = warnings.due(model) {
        tracing::warn!(
            model,
            replacement = %live,
            chain = %resolved.chain.join(" -> "),
            requests,
            table_taken = crate::deprecations::taken().0,
            "a client asked for a model Groq retired; groxy sends its replacement (said once an hour per model; models.retired = \"reject\" refuses it instead)"
        );
    }
    let (start, end) = span;
    let mut out = Vec::with_capacity(body.len() + live.len());
    out.extend_from_slice(&body[..start]);
    // A model id is plain text; serde_json writes it as the JSON string it is.
    serde_json::to_writer(&mut out, &live).map_err(|_| GatewayError::Internal)?;
    out.extend_from_slice(&body[end..]);
    Ok((Bytes::from(out), Some(Remapped { from: named, to: live })))
}

/// The top-level `model` string and where its literal lies in the body. The bytes have not
/// been checked yet: reading them never panics, and validation refuses what is malformed.
/// The object is read from its start only as far as `model` (usually the first field), never
/// to its end: a large body costs no more than a small one here.
fn model_of(body: &[u8]) -> Option<(String, (usize, usize))> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let value = Raw::at(body, (start, body.len()))
        .filter(|object| object.is_object())?
        .get("model")?;
    let model = value.as_str()?.into_owned();
    Some((model, value.span_in(body)?))
}

/// Names the remap in the answer's `x-groxy-mapped`, after what compatibility mapped.
pub fn mark(headers: &mut HeaderMap, remapped: Option<&Remapped>) {
    let Some(Remapped { from, to }) = remapped else {
        return;
    };
    let item = format!("model={from}->{to}");
    let value = match headers.get(MAPPED_HEADER).and_then(|v| v.to_str().ok()) {
        Some(before) if !before.is_empty() => format!("{before},{item}"),
        _ => item,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(MAPPED_HEADER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODELS: &[u8] = br#"{"object":"list","data":[{"id":"openai/gpt-oss-20b"},{"id":"openai/gpt-oss-120b"}]}"#;

    fn run(
        body: &str,
        models: &ModelsConfig,
        catalog: Option<&Catalog>,
    ) -> Result<(String, Option<Remapped>), GatewayError> {
        let (bytes, remapped) = apply(Bytes::from(body.to_owned()), models, catalog, &Warnings::default())?;
        Ok((String::from_utf8_lossy(&bytes).into_owned(), remapped))
    }

    #[test]
    fn only_the_model_string_changes() {
        let models = ModelsConfig::default();
        let catalog = Catalog::parse(MODELS).expect("catalog");
        let body =
            "{ \"messages\":[{\"role\":\"user\",\"content\":\"model\"}],\n \"model\" : \"llama3-8b-8192\" ,\"x\":1}";
        let (sent, remapped) = run(body, &models, Some(&catalog)).expect("remapped");
        assert_eq!(
            sent,
            "{ \"messages\":[{\"role\":\"user\",\"content\":\"model\"}],\n \"model\" : \"openai/gpt-oss-20b\" ,\"x\":1}"
        );
        assert_eq!(
            remapped,
            Some(Remapped {
                from: "llama3-8b-8192".into(),
                to: "openai/gpt-oss-20b".into()
            })
        );
        // Escaped spellings are the same model.
        let (sent, _) = run(r#"{"model":"llama3\u002d8b-8192"}"#, &models, Some(&catalog)).expect("remapped");
        assert_eq!(sent, r#"{"model":"openai/gpt-oss-20b"}"#);
        for untouched in [
            r#"{"model":"openai/gpt-oss-20b"}"#,
            r#"{"model":7}"#,
            r#"["llama3-8b-8192"]"#,
            r#"{"input_file_id":"file_1"}"#,
            "",
        ] {
            let (sent, remapped) = run(untouched, &models, Some(&catalog)).expect("passes");
            assert_eq!((sent.as_str(), remapped), (untouched, None));
        }
    }

    #[test]
    fn reject_and_no_replacement_are_groqs_400() {
        let mut models = ModelsConfig::default();
        let refusal = |result: Result<(String, Option<Remapped>), GatewayError>| match result {
            Err(GatewayError::Rejected(rejection)) => rejection,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(
            refusal(run(r#"{"model":"groq/compound"}"#, &models, None)),
            Rejection::Decommissioned {
                model: "groq/compound".into(),
                replacement: None
            }
        );
        models.retired = RetiredPolicy::Reject;
        assert_eq!(
            refusal(run(r#"{"model":"llama3-8b-8192"}"#, &models, None)),
            Rejection::Decommissioned {
                model: "llama3-8b-8192".into(),
                replacement: Some("openai/gpt-oss-20b".into())
            }
        );
    }

    #[test]
    fn a_model_the_catalogue_lists_is_live_and_aliases_follow_their_target() {
        let mut models = ModelsConfig::default();
        let catalog = Catalog::parse(br#"{"data":[{"id":"llama-3.1-8b-instant"},{"id":"openai/gpt-oss-20b"}]}"#)
            .expect("catalog");
        let body = r#"{"model":"llama-3.1-8b-instant"}"#;
        assert_eq!(run(body, &models, Some(&catalog)).expect("live").1, None);
        let (_, remapped) = run(r#"{"model":"llama3-8b-8192"}"#, &models, Some(&catalog)).expect("remapped");
        assert_eq!(remapped.map(|r| r.to).as_deref(), Some("llama-3.1-8b-instant"));
        models.aliases.insert("fast".into(), "llama-3.1-8b-instant".into());
        let (sent, remapped) = run(r#"{"model":"fast"}"#, &models, None).expect("remapped");
        assert_eq!(sent, r#"{"model":"openai/gpt-oss-20b"}"#);
        assert_eq!(remapped.map(|r| r.from).as_deref(), Some("fast"));
    }

    #[tokio::test(start_paused = true)]
    async fn one_warning_per_model_and_hour() {
        let warnings = Warnings::default();
        assert_eq!(warnings.due("a"), Some(1));
        for _ in 0..99 {
            assert_eq!(warnings.due("a"), None);
        }
        assert_eq!(warnings.due("b"), Some(1));
        tokio::time::advance(WARN_EVERY).await;
        assert_eq!(warnings.due("a"), Some(100), "the requests since the last warning");
        assert_eq!(warnings.due("a"), None);
    }

    #[test]
    fn the_remap_joins_what_compatibility_mapped() {
        let remapped = Remapped {
            from: "llama3-8b-8192".into(),
            to: "openai/gpt-oss-20b".into(),
        };
        let mut headers = HeaderMap::new();
        mark(&mut headers, Some(&remapped));
        assert_eq!(headers[MAPPED_HEADER], "model=llama3-8b-8192->openai/gpt-oss-20b");
        headers.insert(MAPPED_HEADER, HeaderValue::from_static("service_tier"));
        mark(&mut headers, Some(&remapped));
        assert_eq!(
            headers[MAPPED_HEADER],
            "service_tier,model=llama3-8b-8192->openai/gpt-oss-20b"
        );
        mark(&mut headers, None);
        assert!(
            headers[MAPPED_HEADER]
                .to_str()
                .is_ok_and(|v| v.starts_with("service_tier,"))
        );
    }
}
