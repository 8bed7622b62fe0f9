//! Statistics in `f64`, exactly as SPEC 2.3 and 13 prescribe: values parsed from their
//! decimal strings, sums left to right in date order, and the result brought back to a
//! decimal through the shortest round-trip string, then rounded to 4 places.
//!
//! These are the only floats in the core; no amount of money is ever one.

use rust_decimal::Decimal;
use tape_events::{round4, Money};

use crate::state::CloseSeries;

/// A decimal's value as an `f64`, parsed from its decimal text (never a lossy cast).
#[must_use]
pub fn to_f64(value: Decimal) -> f64 {
    value.to_string().parse().unwrap_or(0.0)
}

/// An `f64` statistic as a 4-place decimal (shortest round-trip text, then half-even).
/// Non-finite values read as zero.
#[must_use]
pub fn ratio(value: f64) -> Decimal {
    if !value.is_finite() {
        return round4(Decimal::ZERO);
    }
    round4(tape_events::money::decimal_from_f64(value).unwrap_or(Decimal::ZERO))
}

/// Simple returns between consecutive dates both tickers have (SPEC 4 step 2: "take each
/// ticker's last correlation_window closes, intersect their dates, sort; returns are taken
/// between consecutive dates of that intersection"). Both maps already hold at most the
/// window. Written into `xs` and `ys` (cleared first) so callers can reuse the buffers.
pub fn aligned_returns_into(a: &CloseSeries, b: &CloseSeries, xs: &mut Vec<f64>, ys: &mut Vec<f64>) {
    xs.clear();
    ys.clear();
    if a.dates() == b.dates() {
        // Same dates: the aligned returns are each series' own consecutive returns,
        // computed once per bar with the same formula.
        xs.extend_from_slice(a.returns());
        ys.extend_from_slice(b.returns());
        return;
    }
    let (dates_a, dates_b, closes_a, closes_b) = (a.dates(), b.dates(), a.closes(), b.closes());
    let mut previous: Option<(f64, f64)> = None;
    let (mut i, mut j) = (0, 0);
    // A merge join over the two date-sorted series: one pass, no lookups.
    while i < dates_a.len() && j < dates_b.len() {
        match dates_a[i].cmp(&dates_b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                let (x, y) = (closes_a[i].value, closes_b[j].value);
                if let Some((px, py)) = previous {
                    xs.push(x / px - 1.0);
                    ys.push(y / py - 1.0);
                }
                previous = Some((x, y));
                i += 1;
                j += 1;
            }
        }
    }
}

/// [`aligned_returns_into`] into new vectors.
#[must_use]
pub fn aligned_returns(a: &CloseSeries, b: &CloseSeries) -> (Vec<f64>, Vec<f64>) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    aligned_returns_into(a, b, &mut xs, &mut ys);
    (xs, ys)
}

/// Pearson correlation `sxy / sqrt(sxx × syy)` after subtracting the means, sums left to
/// right; a zero variance gives 0.
#[must_use]
pub fn pearson(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len().min(ys.len());
    if n == 0 {
        return 0.0;
    }
    let count = n as f64;
    let mean_x = xs[..n].iter().fold(0.0, |s, v| s + v) / count;
    let mean_y = ys[..n].iter().fold(0.0, |s, v| s + v) / count;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs[..n].iter().zip(&ys[..n]) {
        let (dx, dy) = (x - mean_x, y - mean_y);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

/// Annualized Sharpe of daily equity returns `E_i/E_{i−1} − 1`: mean / sample stdev
/// (n − 1) × √252; a standard deviation of exactly 0.0 gives 0 (SPEC 7, 13).
#[must_use]
pub fn sharpe(equities: &[Money]) -> f64 {
    let values: Vec<f64> = equities.iter().map(|e| to_f64(e.value())).collect();
    let returns: Vec<f64> = values.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    if returns.len() < 2 {
        return 0.0;
    }
    let n = returns.len() as f64;
    let mean = returns.iter().fold(0.0, |s, r| s + r) / n;
    let variance = returns.iter().fold(0.0, |s, r| s + (r - mean) * (r - mean)) / (n - 1.0);
    let stdev = variance.sqrt();
    if stdev == 0.0 {
        return 0.0;
    }
    mean / stdev * 252f64.sqrt()
}

/// Maximum drawdown `max (peak − E)/peak` with the running peak inside the window, in
/// decimal, rounded to 4 places.
#[must_use]
pub fn max_drawdown(equities: &[Money]) -> Decimal {
    let mut peak: Option<Decimal> = None;
    let mut worst = Decimal::ZERO;
    for equity in equities {
        let e = equity.value();
        let p = peak.map_or(e, |p| p.max(e));
        peak = Some(p);
        if p > Decimal::ZERO {
            worst = worst.max((p - e) / p);
        }
    }
    round4(worst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn money(s: &str) -> Money {
        s.parse().unwrap()
    }

    #[test]
    fn cached_returns_equal_the_merge_join_and_gaps_fall_back_to_it() {
        use crate::state::Close;
        let day = |d: u32| NaiveDate::from_ymd_opt(2024, 2, d).unwrap();
        let close = |p: &str| Close::new(p.parse().unwrap());
        let (mut a, mut b, mut c) = (CloseSeries::default(), CloseSeries::default(), CloseSeries::default());
        for (d, pa, pb) in [(1, "10.00", "20.00"), (2, "10.50", "19.00"), (5, "10.20", "19.50"), (6, "11.00", "21.00")]
        {
            a.insert(day(d), close(pa), 60);
            b.insert(day(d), close(pb), 60);
            if d != 2 {
                c.insert(day(d), close(pb), 60);
            }
        }
        let (xs, ys) = aligned_returns(&a, &b);
        assert_eq!(xs, vec![10.5 / 10.0 - 1.0, 10.2 / 10.5 - 1.0, 11.0 / 10.2 - 1.0]);
        assert_eq!(ys, vec![19.0 / 20.0 - 1.0, 19.5 / 19.0 - 1.0, 21.0 / 19.5 - 1.0]);
        // c lacks 02-02: returns are taken over 02-01, 02-05, 02-06 for both.
        let (xs, ys) = aligned_returns(&a, &c);
        assert_eq!(xs, vec![10.2 / 10.0 - 1.0, 11.0 / 10.2 - 1.0]);
        assert_eq!(ys, vec![19.5 / 20.0 - 1.0, 21.0 / 19.5 - 1.0]);
    }

    #[test]
    fn pearson_of_identical_series_is_one_and_flat_is_zero() {
        let xs = [0.25, -0.2, 0.25, -0.2];
        assert_eq!(ratio(pearson(&xs, &xs)).to_string(), "1.0000");
        assert_eq!(pearson(&xs, &[0.0; 4]), 0.0);
    }

    #[test]
    fn sharpe_of_the_spec_promotion_example() {
        // Vector 43: closes 100000, 100100, …, 100500, then 100500 four times.
        let mut closes: Vec<Money> = (0..=5).map(|i| money(&format!("{}", 100_000 + 100 * i))).collect();
        closes.extend((0..4).map(|_| money("100500")));
        assert_eq!(ratio(sharpe(&closes)).to_string(), "16.7332");
        assert_eq!(max_drawdown(&closes).to_string(), "0.0000");
        let flat = vec![money("100000"); 12];
        assert_eq!(ratio(sharpe(&flat)).to_string(), "0.0000");
    }

    #[test]
    fn drawdown_uses_the_running_peak() {
        let series = [money("100"), money("120"), money("90"), money("130"), money("117")];
        assert_eq!(max_drawdown(&series).to_string(), "0.2500");
    }
}
