//! Go durations as Groq writes them (`7.66s`, `2m59.56s`, `285ms`): the one implementation is groq-wire's; this adds Groq's rounding.

use std::time::Duration;

pub use groq_wire::duration::parse;

/// A duration as Groq prints it in its headers and messages: Go's format, rounded the way Groq
/// rounds (whole milliseconds below a second, hundredths of a second above): `285ms`, `7.66s`,
/// `2m59.56s`, `1h4m48s`.
pub fn format(d: Duration) -> String {
    let rounded = if d < Duration::from_secs(1) {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    } else {
        let centis = (d.as_nanos() + 5_000_000) / 10_000_000;
        Duration::from_millis(u64::try_from(centis * 10).unwrap_or(u64::MAX))
    };
    groq_wire::duration::format(rounded)
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
}
