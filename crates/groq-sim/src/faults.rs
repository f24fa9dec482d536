//! The `x-sim-reply` request header: faults chosen by the caller, for curl and the benchmark.
//!
//! Tests script replies with `Simulator::push`; a process that only speaks HTTP uses this header.
//! The value is a comma-separated list of directives, e.g. `slice:1-64,drop-after:3`.

use super::coding::Coding;
use super::fixtures;
use super::reply::{Reply, SliceMode, StreamEnd};

/// The grammar, shown by `groq-sim --help` and in the 400 for a bad value.
pub const HELP: &str = "\
x-sim-reply: comma-separated directives (chat completions and responses; error, stall, drop,
             fail and first also on the upload, file and batch routes)
  error:NAME       answer with the error fixture error-NAME.json (status, headers, body)
  error:STATUS     answer with a composed Groq-shaped JSON error of that status (400-599;
                   498 is the error-498-flex.json fixture)
  stall            read the request, then never answer
  drop             read the request, then reset the connection without a response
  drop-after:N     send the first N SSE events (N bytes for JSON), then abort the connection
  stall-after:N    send the first N SSE events (N bytes for JSON), then send nothing more
  slice:MIN-MAX    cut the body into random slices of MIN..=MAX bytes (optional :SEED)
  slice:whole      send the body in one slice
  gzip             send the answer gzip-coded with content-encoding: gzip, though not asked
                   to (a stream: one deflate block per slice, so each decodes on arrival)
  encoding:NAME    send the answer as it is, labelled content-encoding: NAME
  first:N          the other directives apply to the first N requests carrying this exact
                   x-sim-reply value; later ones get the default answer (fails N times, then
                   succeeds)
  fail:WHAT:N      short for first:N with WHAT = drop, stall, a STATUS or an error NAME
                   (fail:503:2 = two 503s, then the default answer)
  per-key          count first:/fail: per Authorization header instead of for everyone
x-sim-stamp: 1     synthesized streams (--stream-chunks) put the send time in each content
                   frame: \"content\":\"t<ns since UNIX epoch> \"
x-sim-bytes: N     size of GET .../files/{id}/content downloads (default 1048576)";

/// A parsed `x-sim-reply`.
#[derive(Debug, Default)]
pub(crate) struct Fault {
    /// Replaces the whole answer (error, stall, drop).
    pub(crate) reply: Option<Reply>,
    /// Keep this many events (bytes for JSON), then end this way.
    pub(crate) cut: Option<(usize, StreamEnd)>,
    pub(crate) slicing: Option<SliceMode>,
    /// The answer's content coding (`gzip`, `encoding:NAME`).
    pub(crate) coding: Option<Coding>,
    /// `first:N`: applies only to the first N requests with the same header value.
    pub(crate) first: Option<usize>,
    /// `per-key`: those N are counted per upstream key.
    pub(crate) per_key: bool,
}

impl Fault {
    /// Whether the default body must be cut or re-sliced rather than sent as usual.
    pub(crate) fn reshapes_body(&self) -> bool {
        self.cut.is_some() || self.slicing.is_some()
    }
}

pub(crate) fn parse(value: &str) -> Result<Fault, String> {
    let mut fault = Fault::default();
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (verb, arg) = directive.split_once(':').unwrap_or((directive, ""));
        match verb {
            "error" => fault.reply = Some(error(arg)?),
            "first" => fault.first = Some(count(arg)?),
            "fail" => {
                let (what, n) = arg
                    .rsplit_once(':')
                    .ok_or_else(|| format!("expected fail:WHAT:N, got fail:{arg}"))?;
                fault.first = Some(count(n)?);
                fault.reply = Some(match what {
                    "drop" => Reply::Drop,
                    "stall" => Reply::Stall,
                    _ => error(what)?,
                });
            }
            "per-key" if arg.is_empty() => fault.per_key = true,
            "stall" if arg.is_empty() => fault.reply = Some(Reply::Stall),
            "drop" if arg.is_empty() => fault.reply = Some(Reply::Drop),
            "drop-after" => fault.cut = Some((count(arg)?, StreamEnd::DropConnection)),
            "stall-after" => fault.cut = Some((count(arg)?, StreamEnd::Stall)),
            "slice" => fault.slicing = Some(slice_mode(arg)?),
            "gzip" if arg.is_empty() => fault.coding = Some(Coding::Gzip),
            "encoding" if http::HeaderValue::from_str(arg).is_ok() && !arg.is_empty() => {
                fault.coding = Some(Coding::Label(arg.to_owned()));
            }
            "default" => {}
            _ => return Err(format!("unknown directive {directive:?}")),
        }
    }
    Ok(fault)
}

/// An error fixture by name, or a composed Groq-shaped error for a bare status.
fn error(arg: &str) -> Result<Reply, String> {
    if let Some(reply) = fixtures::error(arg) {
        return Ok(reply);
    }
    match arg.parse::<u16>() {
        Ok(498) => fixtures::error("498-flex").ok_or_else(|| "no 498 fixture".to_owned()),
        Ok(status @ 400..=599) => Ok(composed_error(status)),
        _ => {
            let known: Vec<_> = fixtures::error_names().collect();
            Err(format!(
                "unknown error fixture {arg:?}; known: {}, or a status 400-599",
                known.join(", ")
            ))
        }
    }
}

/// A JSON error as Groq shapes them, for a status no fixture holds (composed, not captured).
fn composed_error(status: u16) -> Reply {
    let (message, kind) = match status {
        500 => ("Internal Server Error", "internal_server_error"),
        502 => ("Bad Gateway", "internal_server_error"),
        503 => ("Service Unavailable", "internal_server_error"),
        504 => ("Gateway Timeout", "internal_server_error"),
        s if s >= 500 => ("Server Error", "internal_server_error"),
        _ => ("Bad Request", "invalid_request_error"),
    };
    Reply::json(
        status,
        format!("{{\"error\":{{\"message\":\"{message}\",\"type\":\"{kind}\"}}}}\n"),
    )
}

fn count(arg: &str) -> Result<usize, String> {
    arg.parse().map_err(|_| format!("expected a count, got {arg:?}"))
}

fn slice_mode(arg: &str) -> Result<SliceMode, String> {
    match arg {
        "whole" => return Ok(SliceMode::Whole),
        "frame" => return Ok(SliceMode::PerFrame),
        _ => {}
    }
    let bad = || format!("expected slice:MIN-MAX[:SEED], got slice:{arg}");
    let (range, seed) = arg.split_once(':').unwrap_or((arg, "1"));
    let (min, max) = range.split_once('-').ok_or_else(bad)?;
    let min: usize = min.parse().map_err(|_| bad())?;
    let max: usize = max.parse().map_err(|_| bad())?;
    let seed: u64 = seed.parse().map_err(|_| bad())?;
    if min == 0 || max < min {
        return Err(bad());
    }
    Ok(SliceMode::Random { min, max, seed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_parse() {
        let f = parse("slice:1-64, drop-after:3").unwrap_or_default();
        assert_eq!(f.cut, Some((3, StreamEnd::DropConnection)));
        assert_eq!(
            f.slicing,
            Some(SliceMode::Random {
                min: 1,
                max: 64,
                seed: 1
            })
        );
        assert!(f.reply.is_none());
        assert!(matches!(
            parse("error:429-tpm").map(|f| f.reply),
            Ok(Some(Reply::Full { status: 429, .. }))
        ));
        assert!(matches!(parse("stall").map(|f| f.reply), Ok(Some(Reply::Stall))));
        assert!(matches!(parse("drop").map(|f| f.reply), Ok(Some(Reply::Drop))));
        assert_eq!(parse("stall-after:0").map(|f| f.cut), Ok(Some((0, StreamEnd::Stall))));
        assert_eq!(
            parse("slice:2-2:9").map(|f| f.slicing),
            Ok(Some(SliceMode::Random {
                min: 2,
                max: 2,
                seed: 9
            }))
        );
        assert!(parse("").is_ok_and(|f| f.reply.is_none() && !f.reshapes_body()));
        assert_eq!(parse("gzip").map(|f| f.coding), Ok(Some(Coding::Gzip)));
        assert_eq!(
            parse("encoding:br").map(|f| f.coding),
            Ok(Some(Coding::Label("br".into())))
        );
        let f = parse("fail:503:2").unwrap_or_default();
        assert_eq!(f.first, Some(2));
        assert!(matches!(f.reply, Some(Reply::Full { status: 503, .. })));
        assert!(matches!(
            parse("fail:498:1").map(|f| f.reply),
            Ok(Some(Reply::Full { status: 498, .. }))
        ));
        assert!(matches!(parse("fail:drop:1").map(|f| f.reply), Ok(Some(Reply::Drop))));
        assert!(matches!(
            parse("fail:429-tpm:3").map(|f| f.reply),
            Ok(Some(Reply::Full { status: 429, .. }))
        ));
        let f = parse("first:1,drop-after:0,per-key").unwrap_or_default();
        assert_eq!(
            (f.first, f.cut, f.per_key),
            (Some(1), Some((0, StreamEnd::DropConnection)), true)
        );
        assert!(matches!(
            parse("error:502").map(|f| f.reply),
            Ok(Some(Reply::Full { status: 502, .. }))
        ));
    }

    #[test]
    fn bad_values_are_explained() {
        for bad in [
            "error:999",
            "slice:0-3",
            "slice:5-3",
            "slice:x",
            "drop-after:",
            "explode",
            "stall:1",
            "gzip:9",
            "encoding:",
            "fail:503",
            "fail:503:x",
            "fail:nope:1",
            "first:",
            "error:200",
            "per-key:1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
