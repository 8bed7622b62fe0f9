//! The recommendation feed's signal and the synthetic earnings calendar.
//!
//! **Momentum** (no look-ahead: it reads only closes of earlier days and a quote already
//! observed). With `c_1 … c_21` the ticker's last 21 closes before the day (ascending),
//! `r_i = c_i / c_{i−1} − 1` their 20 daily returns, `σ` the sample standard deviation of
//! those returns (n − 1) and `p` the last quote at or before the recommendation's
//! `generated_at`:
//!
//! - `z = (p / c_2 − 1) / (σ·√20)`: the 20-trading-day return up to now, in units of
//!   its own 20-day volatility (`c_2` is the close 20 trading days before today);
//! - the day's reference `z_prev = (c_21 / c_1 − 1) / (σ·√20)`: the same measure at the
//!   last close.
//!
//! `σ = 0` or fewer than 21 closes: no signal. Arithmetic is `f64` with only `+ − × ÷`
//! and `sqrt` (all correctly rounded in IEEE 754), from the decimal strings, so a seed
//! gives the same feed on every platform.
//!
//! **Confidence** (rounded to hundredths, half away from zero):
//! - buy when `z ≥ 1`: `min(0.95, 0.50 + 0.15·z)` (so `z ≥ 1.67` reaches the
//!   conservative tier's 0.75);
//! - sell when momentum turns: the previous reading `z_ref > 0` and now `z ≤ 0`:
//!   `min(0.95, 0.80 + 0.15·(z_ref − z))`.

use std::collections::BTreeSet;

use chrono::{Datelike, Days, NaiveDate};
use rust_decimal::Decimal;

use super::calendar::next_trading_day;

/// Closes the momentum signal reads: 21 (20 returns).
pub const MOMENTUM_CLOSES: usize = 21;
/// The smallest `z` that gives a buy.
pub const BUY_Z: f64 = 1.0;

/// The 20-day momentum of one ticker on one day, from closes before that day.
#[derive(Debug, Clone, PartialEq)]
pub struct Momentum {
    closes: [f64; MOMENTUM_CLOSES],
    /// `σ·√20`.
    scale: f64,
}

fn to_f64(value: Decimal) -> f64 {
    value.to_string().parse().unwrap_or(f64::NAN)
}

impl Momentum {
    /// From the ticker's closes before the day, ascending (only the last 21 are read).
    /// `None` with fewer than 21 closes or zero volatility.
    #[must_use]
    pub fn from_closes(closes: &[Decimal]) -> Option<Self> {
        let tail = closes.get(closes.len().checked_sub(MOMENTUM_CLOSES)?..)?;
        let mut values = [0.0; MOMENTUM_CLOSES];
        for (slot, close) in values.iter_mut().zip(tail) {
            *slot = to_f64(*close);
        }
        let returns: Vec<f64> = values.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
        let count = returns.len() as f64;
        let mean = returns.iter().sum::<f64>() / count;
        let variance = returns.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (count - 1.0);
        let scale = variance.sqrt() * count.sqrt();
        (scale > 0.0 && scale.is_finite()).then_some(Self { closes: values, scale })
    }

    /// `z` at a price observed today.
    #[must_use]
    pub fn z_at(&self, price: Decimal) -> f64 {
        (to_f64(price) / self.closes[1] - 1.0) / self.scale
    }

    /// `z` at the last close (the reference for the day's first reading).
    #[must_use]
    pub fn z_prev_close(&self) -> f64 {
        (self.closes[MOMENTUM_CLOSES - 1] / self.closes[0] - 1.0) / self.scale
    }
}

fn hundredths(value: f64) -> Decimal {
    // The value is within [0.5, 0.95]: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let units = (value * 100.0).round() as i64;
    Decimal::new(units, 2)
}

/// The confidence of a buy at `z`, or `None` below [`BUY_Z`].
#[must_use]
pub fn buy_confidence(z: f64) -> Option<Decimal> {
    (z >= BUY_Z).then(|| hundredths((0.50 + 0.15 * z).min(0.95)))
}

/// The confidence of a sell when momentum turns (`z_ref > 0` and `z ≤ 0`), else `None`.
#[must_use]
pub fn sell_confidence(z_ref: f64, z: f64) -> Option<Decimal> {
    (z_ref > 0.0 && z <= 0.0).then(|| hundredths((0.80 + 0.15 * (z_ref - z)).min(0.95)))
}

/// A ticker's synthetic quarterly earnings dates covering `[from_year, to_year]`: day
/// `15 + offset` of each calendar quarter (`offset` in `0..=30`, drawn once per ticker
/// and seed), moved to the next trading day. The data has no earnings dates; this gives
/// the earnings sizing step (SPEC 4 step 5) something real-looking to act on.
#[must_use]
pub fn earnings_dates(
    offset_days: u64,
    from_year: i32,
    to_year: i32,
    holidays: &BTreeSet<NaiveDate>,
) -> Vec<NaiveDate> {
    let mut dates = Vec::new();
    for year in from_year..=to_year {
        for month in [1, 4, 7, 10] {
            let Some(start) = NaiveDate::from_ymd_opt(year, month, 1) else {
                continue;
            };
            let Some(date) = start.checked_add_days(Days::new(14 + offset_days)) else {
                continue;
            };
            dates.push(next_trading_day(date, holidays));
        }
    }
    dates.sort_unstable();
    dates.dedup();
    dates
}

/// The first of `dates` on or after `day`.
#[must_use]
pub fn next_on_or_after(dates: &[NaiveDate], day: NaiveDate) -> Option<NaiveDate> {
    dates.iter().copied().find(|d| *d >= day)
}

/// The year range `earnings_dates` needs for days in `[from, to]`.
#[must_use]
pub fn earnings_years(from: NaiveDate, to: NaiveDate) -> (i32, i32) {
    (from.year(), to.year() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closes(values: &[f64]) -> Vec<Decimal> {
        values.iter().map(|v| format!("{v:.2}").parse().unwrap()).collect()
    }

    #[test]
    fn momentum_needs_21_closes_and_some_volatility() {
        let rising: Vec<f64> = (0..21).map(|i| 100.0 + f64::from(i) + if i % 2 == 0 { 0.3 } else { 0.0 }).collect();
        assert!(Momentum::from_closes(&closes(&rising[1..])).is_none());
        assert!(Momentum::from_closes(&closes(&[100.0; 30])).is_none(), "zero volatility");
        let momentum = Momentum::from_closes(&closes(&rising)).unwrap();
        assert!(momentum.z_prev_close() > 1.0);
        assert!(momentum.z_at("100.50".parse().unwrap()) < 0.0, "below the close 20 days ago");
    }

    #[test]
    fn confidences_map_into_half_to_095() {
        assert_eq!(buy_confidence(0.99), None);
        assert_eq!(buy_confidence(1.0), Some("0.65".parse().unwrap()));
        assert_eq!(buy_confidence(5.0), Some("0.95".parse().unwrap()));
        assert_eq!(sell_confidence(0.5, 0.1), None, "still positive");
        assert_eq!(sell_confidence(-0.5, -0.6), None, "did not turn");
        assert_eq!(sell_confidence(0.2, -0.2), Some("0.86".parse().unwrap()));
        assert_eq!(sell_confidence(3.0, -1.0), Some("0.95".parse().unwrap()));
    }

    #[test]
    fn earnings_fall_on_trading_days_once_a_quarter() {
        let holidays = tape_events::config::nyse_holidays();
        let dates = earnings_dates(0, 2017, 2017, holidays);
        let text: Vec<String> = dates.iter().map(ToString::to_string).collect();
        // 2017-01-15 is a Sunday and 2017-01-16 a holiday; 2017-10-15 is a Sunday.
        assert_eq!(text, ["2017-01-17", "2017-04-17", "2017-07-17", "2017-10-16"]);
        let day = "2017-04-18".parse().unwrap();
        assert_eq!(next_on_or_after(&dates, day), Some("2017-07-17".parse().unwrap()));
    }
}
