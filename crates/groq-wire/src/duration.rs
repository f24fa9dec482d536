//! Go durations, the form Groq writes every wait in: [`format()`] as Go prints them, [`parse`] back.
//!
//! Groq is written in Go: its `x-ratelimit-reset-*` headers and its "Please try again in …"
//! messages carry `time.Duration.String()` output such as `285ms`, `7.66s`, `2m59.56s` or
//! `1h4m48s`.

use std::fmt::Write as _;
use std::time::Duration;

/// `d` as Go's `time.Duration.String()` prints it: `0s`, `100ns`, `1.5µs`, `285ms`, `18.06s`,
/// `2m59.56s`, `1h4m48s`, `1h0m0s` (hours and minutes appear once a larger unit does). Exact: no
/// rounding, every nanosecond is printed.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    if ns < 1_000_000_000 {
        let (scale, unit) = match ns {
            0..1_000 => (1, "ns"),
            1_000..1_000_000 => (1_000, "µs"),
            _ => (1_000_000, "ms"),
        };
        return format!("{}{unit}", decimal(ns, scale));
    }
    let secs = ns / 1_000_000_000;
    let (hours, minutes) = (secs / 3600, secs / 60 % 60);
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h{minutes}m");
    } else if minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    out.push_str(&decimal(ns % 60_000_000_000, 1_000_000_000));
    out.push('s');
    out
}

/// `v / scale` in decimal, without trailing zeros (nor a point for whole numbers).
fn decimal(v: u128, scale: u128) -> String {
    let (whole, frac) = (v / scale, v % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Nanoseconds per unit, as Go's `time.ParseDuration` names them (`µs` is U+00B5, what Go prints;
/// `μs`, U+03BC, is accepted too, as Go does).
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Fraction digits beyond this many are ignored: even for hours they are worth under a
/// millionth of a nanosecond, and they would overflow the arithmetic.
const MAX_FRACTION_DIGITS: usize = 18;

/// Parses a Go duration as Groq sends it (`7.66s`, `2m59.56s`, `285ms`, `1h4m48s`, `12µs`): one
/// or more decimal numbers, each with a unit among `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`, plus
/// Go's bare `0`. Surrounding whitespace is ignored. Exact to the nanosecond (fractions of a
/// nanosecond are dropped); `None` for anything else, including a sign, a number without a
/// unit and a duration too long for [`Duration`].
pub fn parse(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        // A number with nothing after it has no unit: refused, as Go does (except `0`).
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = UNITS.iter().find(|(name, _)| *name == unit)?.1;
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        let digits = |text: &str| -> Option<u128> {
            if text.is_empty() {
                Some(0)
            } else if text.bytes().all(|b| b.is_ascii_digit()) {
                text.parse().ok()
            } else {
                None
            }
        };
        let whole = digits(whole)?;
        // Validate every fraction digit, then keep the ones that can matter.
        digits(frac)?;
        let frac = &frac[..frac.len().min(MAX_FRACTION_DIGITS)];
        let frac_nanos = digits(frac)? * scale / 10u128.pow(frac.len() as u32);
        nanos = whole
            .checked_mul(scale)
            .and_then(|n| n.checked_add(frac_nanos))
            .and_then(|n| nanos.checked_add(n))?;
        rest = tail;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn formats_as_go_prints() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(100), "100ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (ms(285), "285ms"),
            (Duration::from_micros(1_250), "1.25ms"),
            (ms(999), "999ms"),
            (Duration::from_secs(1), "1s"),
            (ms(7_660), "7.66s"),
            (ms(18_060), "18.06s"),
            (ms(179_560), "2m59.56s"),
            (ms(1_641_600), "27m21.6s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(3_888), "1h4m48s"),
            (Duration::from_secs(3_600), "1h0m0s"),
            (Duration::from_secs(86_400), "24h0m0s"),
            (Duration::new(1, 1), "1.000000001s"),
            (Duration::new(3_601, 500_000_000), "1h0m1.5s"),
        ];
        for (d, want) in cases {
            assert_eq!(format(d), want, "{d:?}");
        }
    }

    #[test]
    fn parses_go_durations() {
        let ms = |t: &str| parse(t).map(|d| d.as_millis());
        assert_eq!(ms("7.66s"), Some(7_660));
        assert_eq!(ms("2m59.56s"), Some(179_560));
        assert_eq!(ms("285ms"), Some(285));
        assert_eq!(ms("1h4m48s"), Some(3_888_000));
        assert_eq!(ms("0s"), Some(0));
        assert_eq!(parse("12µs").map(|d| d.as_micros()), Some(12));
        assert_eq!(ms(""), None);
        assert_eq!(ms("5x"), None);
        assert_eq!(ms("s"), None);
    }

    #[test]
    fn parses_every_unit_exactly() {
        let cases = [
            ("24h", Duration::from_secs(86_400)),
            ("1m", Duration::from_secs(60)),
            ("90s", Duration::from_secs(90)),
            ("1h30m", Duration::from_secs(5_400)),
            ("1.5s", ms(1_500)),
            ("250ms", ms(250)),
            ("1.5h", Duration::from_secs(5_400)),
            ("12us", Duration::from_micros(12)),
            ("12μs", Duration::from_micros(12)),
            ("7ns", Duration::from_nanos(7)),
            ("1.000000001s", Duration::new(1, 1)),
            ("0.1s", ms(100)),
            (".5s", ms(500)),
            ("5.s", Duration::from_secs(5)),
            ("1.0000000000000000009s", Duration::from_secs(1)),
            ("1.9ns", Duration::from_nanos(1)),
            ("0", Duration::ZERO),
            (" 262ms\t", ms(262)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Some(want), "{text:?}");
        }
    }

    #[test]
    fn refuses_what_go_or_duration_cannot_mean() {
        for bad in [
            "",
            " ",
            "10",
            "1d",
            "s",
            ".s",
            ".",
            "1.2.3s",
            "-1s",
            "+1s",
            "1s2",
            "1 s",
            "1m 30s",
            "1e3s",
            "1.5.s",
            "1sms",
            "99999999999999999999999h",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn what_format_prints_parses_back() {
        let mut d = Duration::from_nanos(1);
        while d < Duration::from_secs(1_000_000) {
            assert_eq!(parse(&format(d)), Some(d), "{d:?}");
            d = d * 7 + Duration::from_nanos(3);
        }
    }
}
