//! The tick schedule (SPEC 7): one function that both the daemon and the simulator use.
//!
//! Ticks are ordered by `(at, rank)` with `poll` before the scheduled tick of the same
//! minute. `poll` runs every whole minute of every day; the others only on trading days,
//! in exchange time: `snapshot` at 09:30, 09:45, …, 15:45, `close` at 16:00, `risk_tier`
//! at 16:05 and `rebalance` at 16:10. A [`TickCursor`] remembers what has run, starting
//! strictly after the account opened.

use chrono::{Duration, NaiveDate, NaiveTime, Timelike};
use tape_events::{Config, TickKind, Timestamp};

use crate::calendar::{exchange_date, exchange_instant, is_trading_day};

/// One tick: when and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub at: Timestamp,
    pub kind: TickKind,
}

const fn rank(kind: TickKind) -> u8 {
    if matches!(kind, TickKind::Poll) {
        0
    } else {
        1
    }
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default()
}

/// The scheduled (non-poll) ticks of an exchange date, in time order; none on a
/// weekend or holiday.
#[must_use]
pub fn day_schedule(date: NaiveDate, config: &Config) -> Vec<Tick> {
    if !is_trading_day(date, config) {
        return Vec::new();
    }
    let mut ticks: Vec<Tick> = (0..26)
        .map(|i| Tick {
            at: exchange_instant(date, hm(9 + (30 + 15 * i) / 60, (30 + 15 * i) % 60)),
            kind: TickKind::Snapshot,
        })
        .collect();
    ticks.push(Tick { at: exchange_instant(date, hm(16, 0)), kind: TickKind::Close });
    ticks.push(Tick { at: exchange_instant(date, hm(16, 5)), kind: TickKind::RiskTier });
    ticks.push(Tick { at: exchange_instant(date, hm(16, 10)), kind: TickKind::Rebalance });
    ticks
}

/// The first whole minute strictly after `t`.
#[must_use]
pub fn next_minute_after(t: Timestamp) -> Timestamp {
    let at = t.datetime();
    let floor = at.with_second(0).and_then(|a| a.with_nanosecond(0)).unwrap_or(at);
    Timestamp::from_datetime(floor + Duration::minutes(1))
}

/// What has run of the schedule: every tick at or before `(at, rank)`.
#[derive(Debug, Clone)]
pub struct TickCursor {
    at: Timestamp,
    rank: u8,
    day: Option<(NaiveDate, Vec<Tick>)>,
    /// The first scheduled tick after the cursor, as last found (still valid while the
    /// cursor has not reached it).
    next: Option<Tick>,
}

impl TickCursor {
    /// A cursor for an account opened at `opened_at`: ticks run strictly after it.
    #[must_use]
    pub fn after(opened_at: Timestamp) -> Self {
        Self { at: opened_at, rank: 1, day: None, next: None }
    }

    /// Everything at or before this instant has run.
    #[must_use]
    pub const fn done_through(&self) -> Timestamp {
        self.at
    }

    /// Marks every tick at or before `t` as run (inputs at `t` come after its ticks).
    pub fn advance_to(&mut self, t: Timestamp) {
        if t > self.at {
            self.at = t;
            self.rank = 1;
        } else if t == self.at {
            self.rank = 1;
        }
    }

    fn next_scheduled(&mut self, config: &Config) -> Tick {
        let (at, r) = (self.at, self.rank);
        if let Some(next) = self.next.filter(|t| t.at > at || (t.at == at && r == 0)) {
            return next;
        }
        let tick = self.find_next_scheduled(config);
        self.next = Some(tick);
        tick
    }

    fn find_next_scheduled(&mut self, config: &Config) -> Tick {
        let mut date = exchange_date(self.at);
        // A trading day always exists within a couple of weeks; a year bounds the search.
        for _ in 0..370 {
            if self.day.as_ref().is_none_or(|(d, _)| *d != date) {
                self.day = Some((date, day_schedule(date, config)));
            }
            if let Some((_, ticks)) = &self.day {
                let (at, r) = (self.at, self.rank);
                if let Some(tick) = ticks.iter().find(|t| t.at > at || (t.at == at && r == 0)) {
                    return *tick;
                }
            }
            date = date.succ_opt().unwrap_or(date);
        }
        Tick { at: Timestamp::from_unix_micros(i64::MAX / 2), kind: TickKind::Snapshot }
    }

    /// The next tick due at or before `limit`, if any, and marks it as run. Polls are
    /// offered only when `want_polls` (a poll with nothing pending decides nothing).
    pub fn next_due(&mut self, limit: Timestamp, want_polls: bool, config: &Config) -> Option<Tick> {
        let scheduled = self.next_scheduled(config);
        let poll = want_polls.then(|| next_minute_after(self.at));
        let tick = match poll {
            Some(p) if p <= scheduled.at => Tick { at: p, kind: TickKind::Poll },
            _ => scheduled,
        };
        if tick.at > limit {
            return None;
        }
        self.at = tick.at;
        self.rank = rank(tick.kind);
        Some(tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn a_trading_day_has_29_scheduled_ticks_and_weekends_none() {
        let config = Config::default();
        let day = day_schedule(NaiveDate::from_ymd_opt(2024, 3, 4).unwrap(), &config);
        assert_eq!(day.len(), 29);
        assert_eq!(day[0].at, ts("2024-03-04T14:30:00Z"));
        assert_eq!(day[25].at, ts("2024-03-04T20:45:00Z"));
        assert_eq!(day[26], Tick { at: ts("2024-03-04T21:00:00Z"), kind: TickKind::Close });
        assert!(day_schedule(NaiveDate::from_ymd_opt(2024, 3, 9).unwrap(), &config).is_empty());
    }

    #[test]
    fn poll_comes_before_the_scheduled_tick_of_the_same_minute() {
        let config = Config::default();
        let mut cursor = TickCursor::after(ts("2024-03-04T14:28:30Z"));
        let limit = ts("2024-03-04T14:30:00Z");
        let got: Vec<Tick> = std::iter::from_fn(|| cursor.next_due(limit, true, &config)).collect();
        assert_eq!(
            got,
            vec![
                Tick { at: ts("2024-03-04T14:29:00Z"), kind: TickKind::Poll },
                Tick { at: ts("2024-03-04T14:30:00Z"), kind: TickKind::Poll },
                Tick { at: ts("2024-03-04T14:30:00Z"), kind: TickKind::Snapshot },
            ]
        );
    }

    #[test]
    fn ticks_start_strictly_after_opening() {
        let config = Config::default();
        let mut cursor = TickCursor::after(ts("2024-03-04T14:30:00Z"));
        let tick = cursor.next_due(ts("2024-03-04T15:00:00Z"), false, &config).unwrap();
        assert_eq!(tick, Tick { at: ts("2024-03-04T14:45:00Z"), kind: TickKind::Snapshot });
    }
}
