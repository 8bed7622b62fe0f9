//! Exchange time: America/New_York dates and times, trading days, the trading window.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::America::New_York;
use chrono_tz::Tz;
use tape_events::{Config, Timestamp};

/// The instant in exchange time.
#[must_use]
pub fn exchange_time(at: Timestamp) -> DateTime<Tz> {
    at.datetime().with_timezone(&New_York)
}

/// The exchange calendar date of an instant (SPEC 2.2: "a day is an exchange calendar
/// date").
#[must_use]
pub fn exchange_date(at: Timestamp) -> NaiveDate {
    exchange_time(at).date_naive()
}

/// A weekday that is not in `holidays`.
#[must_use]
pub fn is_trading_day(date: NaiveDate, config: &Config) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !config.holidays.contains(&date)
}

/// The UTC instant of a wall-clock time on an exchange date. Times in a DST gap take
/// the later reading; ambiguous times the earlier (neither occurs between 09:30 and 16:10).
#[must_use]
pub fn exchange_instant(date: NaiveDate, time: NaiveTime) -> Timestamp {
    let local = date.and_time(time);
    let resolved = New_York
        .from_local_datetime(&local)
        .earliest()
        .or_else(|| New_York.from_local_datetime(&(local + chrono::Duration::hours(1))).earliest())
        .map_or_else(|| local.and_utc(), |at| at.with_timezone(&Utc));
    Timestamp::from_datetime(resolved)
}

/// Whether `at` is inside the trading window `[start, end)` on a trading day (check b).
#[must_use]
pub fn in_trading_window(at: Timestamp, config: &Config) -> bool {
    let local = exchange_time(at);
    let time = local.time();
    is_trading_day(local.date_naive(), config)
        && time >= config.trading_window.start
        && time < config.trading_window.end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn window_is_half_open_in_exchange_time_across_dst() {
        let config = Config::default();
        assert!(!in_trading_window(ts("2024-03-04T14:34:59Z"), &config));
        assert!(in_trading_window(ts("2024-03-04T14:35:00Z"), &config));
        assert!(in_trading_window(ts("2024-03-04T20:44:59Z"), &config));
        assert!(!in_trading_window(ts("2024-03-04T20:45:00Z"), &config));
        // After DST (EDT, UTC-4) 09:35 is 13:35Z.
        assert!(in_trading_window(ts("2024-03-11T13:35:00Z"), &config));
        // Saturday, and Good Friday.
        assert!(!in_trading_window(ts("2024-03-09T15:00:00Z"), &config));
        assert!(!in_trading_window(ts("2024-03-29T14:00:00Z"), &config));
    }

    #[test]
    fn exchange_instants_follow_dst() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert_eq!(exchange_instant(d("2024-03-08"), t(16, 0)), ts("2024-03-08T21:00:00Z"));
        assert_eq!(exchange_instant(d("2024-03-11"), t(16, 0)), ts("2024-03-11T20:00:00Z"));
        assert_eq!(exchange_date(ts("2024-03-05T03:00:00Z")), d("2024-03-04"));
    }
}
