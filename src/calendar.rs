//! UTC calendar arithmetic on Unix seconds: the day, hour and month a budget or the ledger counts in, and the dates people read and write (`2026-11-04`, `2026-11-04T12:00:00Z`).
//!
//! Budgets are per calendar period (what an invoice names), so "today" starts at 00:00 UTC and
//! "this month" on its first day; the ledger's rows are hours. No time-zone database is needed
//! for UTC, only the civil-date conversion (Howard Hinnant's algorithm).

use std::time::{SystemTime, UNIX_EPOCH};

pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn hour_start(secs: i64) -> i64 {
    secs - secs.rem_euclid(HOUR)
}

pub fn day_start(secs: i64) -> i64 {
    secs - secs.rem_euclid(DAY)
}

pub fn month_start(secs: i64) -> i64 {
    let (year, month, _) = civil_from_days(secs.div_euclid(DAY));
    days_from_civil(year, month, 1) * DAY
}

pub fn next_month_start(secs: i64) -> i64 {
    let (year, month, _) = civil_from_days(secs.div_euclid(DAY));
    let (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    days_from_civil(year, month, 1) * DAY
}

/// `2026-11-04`.
pub fn date(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(DAY));
    format!("{year:04}-{month:02}-{day:02}")
}

/// `2026-11-04T12:30:00Z`.
pub fn timestamp(secs: i64) -> String {
    let rest = secs.rem_euclid(DAY);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date(secs),
        rest / HOUR,
        rest % HOUR / 60,
        rest % 60
    )
}

/// Unix seconds of `2026-11-04`, `2026-11-04T12:30:00Z` (or with `+hh:mm`), or a number of
/// seconds; `None` for anything else.
pub fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let number = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date_part, time_part) = match text.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut fields = date_part.splitn(3, '-');
    let year = number(fields.next()?)?;
    let month = number(fields.next()?)?;
    let day = number(fields.next()?)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || date_part.len() != 10 {
        return None;
    }
    let mut secs = days_from_civil(i64::from(year), month, day) * DAY;
    if let Some(time) = time_part {
        let (clock, offset) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
            (clock, 0)
        } else if let Some(at) = time.rfind(['+', '-']) {
            let (clock, zone) = time.split_at(at);
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':')?;
            (
                clock,
                sign * (i64::from(number(h)?) * HOUR + i64::from(number(m)?) * 60),
            )
        } else {
            return None;
        };
        let clock = clock.split('.').next()?;
        let mut parts = clock.split(':');
        let h = number(parts.next()?)?;
        let m = number(parts.next()?)?;
        let s = parts.next().map_or(Some(0), number)?;
        if h > 23 || m > 59 || s > 60 {
            return None;
        }
        secs += i64::from(h) * HOUR + i64::from(m) * 60 + i64::from(s) - offset;
    }
    Some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_periods_start_where_invoices_say() {
        let t = parse("2026-11-04T12:30:05Z").expect("parse");
        assert_eq!(timestamp(t), "2026-11-04T12:30:05Z");
        assert_eq!(date(day_start(t)), "2026-11-04");
        assert_eq!(timestamp(month_start(t)), "2026-11-01T00:00:00Z");
        assert_eq!(timestamp(next_month_start(t)), "2026-12-01T00:00:00Z");
        let december = parse("2026-12-31").expect("parse");
        assert_eq!(timestamp(next_month_start(december)), "2027-01-01T00:00:00Z");
        assert_eq!(parse("2026-11-04T14:30:05+02:00"), Some(t));
        assert_eq!(parse("1700000000"), Some(1_700_000_000));
        assert_eq!(parse("2024-02-29").map(date), Some("2024-02-29".to_owned()));
        for bad in ["", "2026-13-01", "tomorrow", "2026-1-1", "2026-11-04T25:00:00Z"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(hour_start(t), t - 30 * 60 - 5);
    }
}
