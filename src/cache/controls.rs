//! The request's `Cache-Control` and `x-groxy-cache-ttl`, as far as the cache honours them.

use std::time::Duration;

use http::{HeaderMap, header};

/// The request's `Cache-Control`, as far as the cache honours it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controls {
    /// Skip the lookup (and do not join a flight), still store.
    pub no_cache: bool,
    /// Do not store the response.
    pub no_store: bool,
    /// Accept only entries younger than this.
    pub max_age: Option<Duration>,
    /// `x-groxy-cache-ttl`: how long to keep the stored response.
    pub ttl: Option<Duration>,
}

impl Controls {
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut controls = Controls::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for directive in text.split(',').map(str::trim) {
                let (name, arg) = directive
                    .split_once('=')
                    .map_or((directive, None), |(n, a)| (n, Some(a)));
                match name.to_ascii_lowercase().as_str() {
                    "no-cache" => controls.no_cache = true,
                    "no-store" => controls.no_store = true,
                    "max-age" => {
                        controls.max_age = arg
                            .and_then(|a| a.trim_matches('"').parse().ok())
                            .map(Duration::from_secs);
                    }
                    _ => {}
                }
            }
        }
        controls.ttl = headers
            .get("x-groxy-cache-ttl")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        controls
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn cache_control_directives() {
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, max-age=30"));
        h.insert("x-groxy-cache-ttl", HeaderValue::from_static("120"));
        let c = Controls::parse(&h);
        assert_eq!(
            c,
            Controls {
                no_cache: false,
                no_store: true,
                max_age: Some(Duration::from_secs(30)),
                ttl: Some(Duration::from_secs(120))
            }
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("No-Cache"));
        assert!(Controls::parse(&h).no_cache);
    }
}
