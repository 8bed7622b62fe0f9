//! Evaluating one recommendation against a state with 10 positions and 60 closes each
//! (issue 3's benchmark): criterion's estimate, then p50/p99/p99.9 over individually
//! timed calls.
//!
//! `cargo bench -p tape-commands --bench evaluate`

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock by definition

use std::hint::black_box;
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use criterion::{criterion_group, Criterion};
use tape_commands::evaluate::evaluate;
use tape_commands::recommendation::Recommendation;
use tape_commands::{Engine, State};
use tape_events::*;
use uuid::Uuid;

/// The allocator the `tape` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECTORS: [&str; 4] = ["Information Technology", "Health Care", "Financials", "Energy"];

fn stamp(engine: &mut Engine, at: Timestamp, event: impl Into<Event>) {
    engine.apply(&Stamped::new(at, event));
}

/// 11 tickers with 60 closes each (a seeded-free, deterministic wiggle); 10 held.
fn state() -> (State, Recommendation, Timestamp) {
    let mut engine = Engine::default();
    let open = Timestamp::parse("2024-03-04T14:00:00Z").unwrap();
    let now = Timestamp::parse("2024-03-04T15:00:00Z").unwrap();
    stamp(
        &mut engine,
        open,
        AccountOpened { account_id: "b".into(), initial_cash: "1000000.00".parse().unwrap(), mode: AccountMode::Paper },
    );
    let mut config = Config { max_open_positions: 20, ..Config::default() };
    config.tiers.conservative.max_sector_pct = "1.0".parse().unwrap();
    config.tiers.conservative.max_portfolio_heat = "1.0".parse().unwrap();
    config.declining_fraction = "1.0".parse().unwrap();
    stamp(&mut engine, open, ConfigActivated { hash: config.hash(), config: Box::new(config) });
    let first = NaiveDate::from_ymd_opt(2023, 12, 1).unwrap();
    for t in 0..11u32 {
        let ticker = format!("T{t:02}");
        stamp(
            &mut engine,
            open,
            SecurityUpdated {
                ticker: ticker.clone(),
                sector: Some(SECTORS[t as usize % 4].into()),
                next_earnings_date: None,
            },
        );
        for d in 0..60u32 {
            let wiggle = (d * 7 + t * 13) % 11;
            let close: Price = format!("{}.{:02}", 100 + wiggle, (d * 37 + t) % 100).parse().unwrap();
            stamp(
                &mut engine,
                open,
                DailyBarObserved { ticker: ticker.clone(), date: first + Duration::days(i64::from(d)), close },
            );
        }
        stamp(&mut engine, now, QuoteObserved { ticker: ticker.clone(), price: "100.00".parse().unwrap() });
        if t < 10 {
            let order_id = Uuid::from_u128(u128::from(t) + 1);
            stamp(
                &mut engine,
                open,
                OrderPlaced {
                    order_id,
                    recommendation_id: None,
                    ticker: ticker.clone(),
                    side: Side::Buy,
                    qty: Qty(50),
                    reason: OrderReason::Entry,
                },
            );
            stamp(
                &mut engine,
                open,
                OrderFilled {
                    order_id,
                    fill_id: format!("f{t}"),
                    ticker: ticker.clone(),
                    side: Side::Buy,
                    qty: Qty(50),
                    price: "100.00".parse().unwrap(),
                },
            );
            stamp(&mut engine, now, QuoteObserved { ticker, price: "101.00".parse().unwrap() });
        }
    }
    let received = RecommendationReceived {
        recommendation_id: "bench".into(),
        ticker: Some("T10".into()),
        action: Some("buy".into()),
        confidence: Some("0.85".into()),
        mode: Some("paper_eligible".into()),
        generated_at: Some("2024-03-04T14:59:00Z".into()),
        source: None,
    };
    let state = engine.into_state();
    assert_eq!(state.positions.len(), 10);
    (state.clone(), Recommendation::capture(&received, AccountMode::Paper), now)
}

fn bench(c: &mut Criterion) {
    let (state, recommendation, now) = state();
    let evaluation = evaluate(&state, &recommendation, now);
    let steps = evaluation.events.iter().filter(|e| matches!(e, Event::SizingStepApplied(_))).count();
    assert_eq!(steps, 8, "the benchmark must run every sizing step");
    c.bench_function("evaluate: buy, 10 positions x 60 closes", |b| {
        b.iter(|| evaluate(black_box(&state), black_box(&recommendation), now));
    });
}

fn percentiles() {
    let (state, recommendation, now) = state();
    let mut samples: Vec<u128> = Vec::with_capacity(200_000);
    for _ in 0..10_000 {
        black_box(evaluate(&state, &recommendation, now));
    }
    for _ in 0..200_000 {
        let start = Instant::now();
        black_box(evaluate(black_box(&state), black_box(&recommendation), now));
        samples.push(start.elapsed().as_nanos());
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!(
        "evaluate percentiles over {} calls: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs",
        samples.len(),
        at(0.50),
        at(0.99),
        at(0.999),
        at(1.0)
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    percentiles();
}
