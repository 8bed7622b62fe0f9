//! The exchange calendar as `from-bars` needs it: NYSE trading days (weekdays minus the
//! holiday list) and exchange wall-clock times (America/New_York) turned into UTC
//! instants, correct on both sides of every daylight-saving change.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::America::New_York;
use tape_events::Timestamp;

/// Whether `date` is an NYSE trading day: a weekday that is not a holiday.
#[must_use]
pub fn is_trading_day(date: NaiveDate, holidays: &BTreeSet<NaiveDate>) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !holidays.contains(&date)
}

/// Every trading day in `[from, to]`, ascending.
#[must_use]
pub fn trading_days(from: NaiveDate, to: NaiveDate, holidays: &BTreeSet<NaiveDate>) -> Vec<NaiveDate> {
    from.iter_days().take_while(|d| *d <= to).filter(|d| is_trading_day(*d, holidays)).collect()
}

/// The first trading day on or after `date`.
#[must_use]
pub fn next_trading_day(date: NaiveDate, holidays: &BTreeSet<NaiveDate>) -> NaiveDate {
    date.iter_days().find(|d| is_trading_day(*d, holidays)).unwrap_or(date)
}

/// The UTC instant of `hour:minute` exchange time on `date`.
///
/// Exchange hours (08:00–17:00) never fall into a DST gap or overlap (those are at
/// 02:00), so the mapping is unique; `None` only for a time inside a gap.
#[must_use]
pub fn exchange_time(date: NaiveDate, hour: u32, minute: u32) -> Option<Timestamp> {
    let local = date.and_time(NaiveTime::from_hms_opt(hour, minute, 0)?);
    New_York.from_local_datetime(&local).earliest().map(|at| Timestamp::from_datetime(at.with_timezone(&Utc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn session_open_is_utc_correct_across_dst() {
        // 2017: DST began Sunday 2017-03-12 and ended Sunday 2017-11-05.
        for (day, open_utc) in [
            ("2017-03-10", "2017-03-10T14:30:00.000000Z"),
            ("2017-03-13", "2017-03-13T13:30:00.000000Z"),
            ("2017-11-03", "2017-11-03T13:30:00.000000Z"),
            ("2017-11-06", "2017-11-06T14:30:00.000000Z"),
        ] {
            assert_eq!(exchange_time(date(day), 9, 30).unwrap().to_string(), open_utc, "{day}");
        }
        assert_eq!(exchange_time(date("2017-07-03"), 16, 30).unwrap().to_string(), "2017-07-03T20:30:00.000000Z");
        assert_eq!(exchange_time(date("2017-03-12"), 2, 30), None, "inside the gap");
    }

    #[test]
    fn trading_days_skip_weekends_and_holidays() {
        let holidays = tape_events::config::nyse_holidays();
        let days = trading_days(date("2016-12-30"), date("2017-01-04"), holidays);
        assert_eq!(days, vec![date("2016-12-30"), date("2017-01-03"), date("2017-01-04")]);
        assert_eq!(next_trading_day(date("2017-01-01"), holidays), date("2017-01-03"));
    }
}
