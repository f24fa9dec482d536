//! The `x-sim-reply` request header: faults chosen by the caller, for curl and the benchmark.
//!
//! Tests script replies with `Simulator::push`; a process that only speaks HTTP uses this header.
//! The value is a comma-separated list of directives, e.g. `slice:1-64,drop-after:3`.

use super::coding::Coding;
use super::fixtures;
use super::reply::{Reply, SliceMode, StreamEnd};

/// The grammar, shown by `groq-sim --help` and in the 400 for a bad value.
pub const HELP: &str = "\
x-sim-reply: comma-separated directives (chat completions only)
  error:NAME       answer with the error fixture error-NAME.json (status, headers, body)
  stall            read the request, then never answer
  drop             read the request, then close the connection without a response
  drop-after:N     send the first N SSE events (N bytes for JSON), then abort the connection
  stall-after:N    send the first N SSE events (N bytes for JSON), then send nothing more
  slice:MIN-MAX    cut the body into random slices of MIN..=MAX bytes (optional :SEED)
  slice:whole      send the body in one slice
  gzip             send the answer gzip-coded with content-encoding: gzip, though not asked
                   to (a stream: one deflate block per slice, so each decodes on arrival)
  encoding:NAME    send the answer as it is, labelled content-encoding: NAME
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
            "error" => {
                let reply = fixtures::error(arg).ok_or_else(|| {
                    let known: Vec<_> = fixtures::error_names().collect();
                    format!("unknown error fixture {arg:?}; known: {}", known.join(", "))
                })?;
                fault.reply = Some(reply);
            }
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
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
