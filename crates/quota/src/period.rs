//! Quota windows: the UTC month of token quotas and the UTC day of session quotas.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// The token-quota period `at` falls in, as `YYYY-MM` (the Redis key suffix).
pub fn month_key(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

/// The first instant of `at`'s month and of the next month.
pub fn month_bounds(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = first_of_month(at.year(), at.month());
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    (start, first_of_month(year, month))
}

fn first_of_month(year: i32, month: u32) -> DateTime<Utc> {
    // Day 1 at midnight exists in every month of every representable year.
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The bounds of a `YYYY-MM` period, or `None` if it is not one.
pub fn parse_month(period: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (year, month) = period.split_once('-')?;
    let (year, month): (i32, u32) = (year.parse().ok()?, month.parse().ok()?);
    if !(1..=12).contains(&month) || period.len() != 7 {
        return None;
    }
    Some(month_bounds(first_of_month(year, month)))
}

/// The UTC day of `at`, and the instant the next day starts.
pub fn day_bounds(at: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
    let day = at.date_naive();
    let next = day
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(DateTime::<Utc>::MAX_UTC, |d| d.and_utc());
    (day, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn months_roll_over_at_utc_midnight_including_december() {
        assert_eq!(month_key(at("2026-11-30T23:59:59Z")), "2026-11");
        assert_eq!(month_key(at("2026-12-01T00:00:00Z")), "2026-12");
        let (start, end) = month_bounds(at("2026-12-15T10:00:00Z"));
        assert_eq!(start, at("2026-12-01T00:00:00Z"));
        assert_eq!(end, at("2027-01-01T00:00:00Z"));
        assert_eq!(parse_month("2026-12"), Some((start, end)));
        assert_eq!(parse_month("2026-13"), None);
        assert_eq!(parse_month("26-1"), None);
    }

    #[test]
    fn days_roll_over_at_utc_midnight() {
        let (day, next) = day_bounds(at("2026-11-25T23:59:59Z"));
        assert_eq!(day.to_string(), "2026-11-25");
        assert_eq!(next, at("2026-11-26T00:00:00Z"));
    }
}
