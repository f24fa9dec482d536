//! Go's duration format (`7.66s`, `2m59.56s`, `285ms`), which Groq uses in its rate-limit headers.

use std::time::Duration;

/// Parses Go's duration format as Groq sends it (`7.66s`, `2m59.56s`, `285ms`, `1h4m48s`, `12µs`).
pub fn parse(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let (unit, seconds) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
        ]
        .into_iter()
        .filter(|(u, _)| rest.starts_with(u))
        .max_by_key(|(u, _)| u.len())?;
        total += value * seconds;
        rest = &rest[unit.len()..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A duration as Go prints it, which is what Groq sends: `285ms`, `7.66s`, `2m59.56s`, `1h4m48s`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let total_centis = (d.as_secs_f64() * 100.0).round() as u64;
    let hours = total_centis / 360_000;
    let minutes = (total_centis / 6_000) % 60;
    let centis = total_centis % 6_000;
    let seconds = trim_seconds(centis);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

fn trim_seconds(centis: u64) -> String {
    let whole = centis / 100;
    let frac = centis % 100;
    match frac {
        0 => whole.to_string(),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_like_groqs() {
        let check = |ms: u64, want: &str| assert_eq!(format(Duration::from_millis(ms)), want, "{ms}");
        check(0, "0s");
        check(285, "285ms");
        check(7_660, "7.66s");
        check(18_060, "18.06s");
        check(60_000, "1m0s");
        check(179_560, "2m59.56s");
        check(86_400, "1m26.4s");
        check(3_888_000, "1h4m48s");
        check(5_000, "5s");
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
}
