//! The intraday quote path model: a seeded Brownian-bridge-like path through a day's
//! open, high, low and close.
//!
//! For a day with `n + 1` quote times (index 0 is 09:30 ET, index `n` is 16:00 ET):
//!
//! 1. Prices are rounded to cents (half to even): `O`, `H`, `L`, `C`.
//! 2. Anchors: `(0, O)` and `(n, C)`; if `H > max(O, C)`, the high is touched at an index
//!    drawn uniformly from `1..n`; if `L < min(O, C)`, the low is touched at an index drawn
//!    uniformly from the interior indices other than the high's. (When the high or low
//!    equals the open or close, that anchor already touches it.)
//! 3. Between two consecutive anchors `(i0, p0)` and `(i1, p1)`, `m = i1 − i0`: a random
//!    walk `W_0 = 0`, `W_k = W_{k−1} + u_k`, with `u_k` drawn uniformly from
//!    `{−1.000, −0.999, …, 1.000}`; the bridge `B_k = W_k − (k/m)·W_m` is 0 at both ends;
//!    the price is `p0 + (p1 − p0)·k/m + s·B_k` with the scale `s = (H − L)/√n`, clamped
//!    into `[L, H]` and rounded to cents.
//!
//! The arithmetic is `rust_decimal` throughout (no floats), so a seed gives the same path
//! on every platform. Draw order is fixed: the high's index, the low's index, then the
//! `m` steps of each segment from the first to the last.

use rand::Rng;
use rust_decimal::{Decimal, MathematicalOps};
use tape_events::cents;

use super::bars::DailyBar;

/// The quote prices of one day at `points` evenly spaced times (see the module docs).
/// `points` below 2 is treated as 2 (open and close only).
#[must_use]
pub fn intraday_path<R: Rng>(bar: &DailyBar, points: usize, rng: &mut R) -> Vec<Decimal> {
    let (open, close) = (cents(bar.open), cents(bar.close));
    // The loader guarantees low <= min(open, close) <= max(open, close) <= high; enforce it
    // again so the path stays in range whatever the caller passes.
    let high = cents(bar.high).max(open).max(close);
    let low = cents(bar.low).min(open).min(close);
    let n = points.max(2) - 1;

    let mut anchors: Vec<(usize, Decimal)> = vec![(0, open), (n, close)];
    let mut high_at = None;
    if high > open.max(close) && n >= 2 {
        let at = rng.random_range(1..n);
        anchors.push((at, high));
        high_at = Some(at);
    }
    if low < open.min(close) && n >= 2 {
        let at = match high_at {
            None => Some(rng.random_range(1..n)),
            Some(taken) if n >= 3 => {
                let at = rng.random_range(1..n - 1);
                Some(if at >= taken { at + 1 } else { at })
            }
            Some(_) => None,
        };
        if let Some(at) = at {
            anchors.push((at, low));
        }
    }
    anchors.sort_by_key(|&(index, _)| index);

    let steps = Decimal::from(n).sqrt().unwrap_or(Decimal::ONE);
    let scale = (high - low) / steps;
    let mut path = vec![Decimal::ZERO; n + 1];
    let mut walk = Vec::with_capacity(n + 1);
    for pair in anchors.windows(2) {
        let ((i0, p0), (i1, p1)) = (pair[0], pair[1]);
        let m = i1 - i0;
        path[i0] = p0;
        path[i1] = p1;
        walk.clear();
        walk.push(Decimal::ZERO);
        for _ in 0..m {
            let step = Decimal::new(rng.random_range(-1000..=1000), 3);
            let last = walk.last().copied().unwrap_or_default();
            walk.push(last + step);
        }
        let end = walk[m];
        let span = Decimal::from(m);
        for k in 1..m {
            let fraction = Decimal::from(k) / span;
            let bridge = walk[k] - end * fraction;
            let price = p0 + (p1 - p0) * fraction + scale * bridge;
            path[i0 + k] = cents(price.clamp(low, high));
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn bar(open: &str, high: &str, low: &str, close: &str) -> DailyBar {
        DailyBar {
            date: NaiveDate::from_ymd_opt(2017, 1, 3).unwrap(),
            open: open.parse().unwrap(),
            high: high.parse().unwrap(),
            low: low.parse().unwrap(),
            close: close.parse().unwrap(),
        }
    }

    fn check(bar: &DailyBar, path: &[Decimal], points: usize) {
        let (o, h, l, c) = (cents(bar.open), cents(bar.high), cents(bar.low), cents(bar.close));
        assert_eq!(path.len(), points);
        assert_eq!(path[0], o, "starts at the open");
        assert_eq!(path[points - 1], c, "ends at the close");
        assert!(path.contains(&h), "touches the high {h}: {path:?}");
        assert!(path.contains(&l), "touches the low {l}: {path:?}");
        for price in path {
            assert!(*price >= l && *price <= h, "{price} outside [{l}, {h}]");
            assert_eq!(price.scale(), 2, "{price} is in cents");
        }
    }

    #[test]
    fn touches_open_high_low_close_and_stays_in_range() {
        let cases = [
            bar("116.03", "117.20", "115.43", "116.15"),
            bar("100", "100", "90", "95"),              // opens at the high
            bar("100", "110", "100", "105"),            // opens at the low
            bar("50", "50", "50", "50"),                // flat
            bar("33.9525", "34.1", "33.695", "33.895"), // sub-cent prices
        ];
        for (i, bar) in cases.iter().enumerate() {
            for points in [4, 5, 14, 79, 391] {
                let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
                check(bar, &intraday_path(bar, points, &mut rng), points);
            }
        }
    }

    #[test]
    fn same_seed_same_path() {
        let bar = bar("116.03", "117.20", "115.43", "116.15");
        let a = intraday_path(&bar, 79, &mut ChaCha8Rng::seed_from_u64(7));
        let b = intraday_path(&bar, 79, &mut ChaCha8Rng::seed_from_u64(7));
        let c = intraday_path(&bar, 79, &mut ChaCha8Rng::seed_from_u64(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    mod property_tests {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn prop_path_touches_ohlc_within_range(
                base in 100u32..100_000,
                up in 0u32..5_000,
                down in 0u32..5_000,
                open_frac in 0u32..=100,
                close_frac in 0u32..=100,
                points in 4usize..200,
                seed in any::<u64>(),
            ) {
                let low = Decimal::new(i64::from(base), 2);
                let high = low + Decimal::new(i64::from(up + down), 2);
                let at = |frac: u32| cents(low + (high - low) * Decimal::from(frac) / Decimal::from(100));
                let bar = DailyBar {
                    date: NaiveDate::from_ymd_opt(2017, 1, 3).unwrap(),
                    open: at(open_frac), high, low, close: at(close_frac),
                };
                let path = intraday_path(&bar, points, &mut ChaCha8Rng::seed_from_u64(seed));
                check(&bar, &path, points);
            }
        }
    }
}
