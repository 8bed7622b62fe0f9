//! Prometheus metrics (`/metrics`), through the `metrics` facade and its Prometheus
//! exporter. One recorder per process (installed on first use); every series carries the
//! account as a label.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `tape_decisions_total` | counter | account, outcome (`act`/`skip`), final, reason |
//! | `tape_orders_total` | counter | account, reason |
//! | `tape_fills_total` | counter | account |
//! | `tape_append_seconds` | histogram | account |
//! | `tape_outbox_lag_events` | gauge | account |
//! | `tape_queue_depth` | gauge | account |
//! | `tape_breaker_active` | gauge | account, kind |
//! | `tape_equity_dollars`, `tape_cash_dollars`, `tape_reserve_dollars` | gauge | account |
//! | `tape_open_positions`, `tape_open_orders`, `tape_pending_recommendations` | gauge | account |
//! | `tape_inputs_refused_total` | counter | account, type |
//! | `tape_broker_discrepancies_total` | counter | account |
//! | `tape_postgres_up`, `tape_redis_up` | gauge | |

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rust_decimal::prelude::ToPrimitive;
use tape_commands::State;
use tape_events::{BreakerKind, OrderReason, Timestamp, TradingDecisionRecorded};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process) and returns its handle; `None` when another
/// recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tape_append_seconds".to_owned()),
                    &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
                )
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// The metrics in Prometheus text format.
#[must_use]
pub fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

pub fn decision(account: &str, d: &TradingDecisionRecorded) {
    let reason = d.skip_reason.map_or_else(String::new, |r| r.to_string());
    counter!("tape_decisions_total", "account" => account.to_owned(), "outcome" => d.decision.to_string(),
        "final" => d.is_final.to_string(), "reason" => reason)
    .increment(1);
}

pub fn order(account: &str, reason: OrderReason) {
    counter!("tape_orders_total", "account" => account.to_owned(), "reason" => reason.to_string()).increment(1);
}

pub fn fill(account: &str) {
    counter!("tape_fills_total", "account" => account.to_owned()).increment(1);
}

pub fn append_seconds(account: &str, seconds: f64) {
    histogram!("tape_append_seconds", "account" => account.to_owned()).record(seconds);
}

pub fn queue_depth(account: &str, depth: usize) {
    gauge!("tape_queue_depth", "account" => account.to_owned()).set(depth as f64);
}

pub fn outbox_lag(account: &str, events: i64) {
    gauge!("tape_outbox_lag_events", "account" => account.to_owned()).set(events as f64);
}

pub fn refused(account: &str, event_type: &'static str) {
    counter!("tape_inputs_refused_total", "account" => account.to_owned(), "type" => event_type).increment(1);
}

pub fn discrepancy(account: &str) {
    counter!("tape_broker_discrepancies_total", "account" => account.to_owned()).increment(1);
}

pub fn postgres_up(up: bool) {
    gauge!("tape_postgres_up").set(if up { 1.0 } else { 0.0 });
}

pub fn redis_up(up: bool) {
    gauge!("tape_redis_up").set(if up { 1.0 } else { 0.0 });
}

const KINDS: [BreakerKind; 4] =
    [BreakerKind::SinglePosition, BreakerKind::Volatility, BreakerKind::DailyLoss, BreakerKind::Emergency];

pub fn state(account: &str, state: &State, now: Timestamp) {
    let a = account.to_owned();
    let dollars = |m: tape_events::Money| m.value().to_f64().unwrap_or(0.0);
    gauge!("tape_equity_dollars", "account" => a.clone()).set(dollars(tape_commands::valuation::equity(state)));
    gauge!("tape_cash_dollars", "account" => a.clone()).set(dollars(state.cash));
    gauge!("tape_reserve_dollars", "account" => a.clone()).set(dollars(state.reserve));
    gauge!("tape_open_positions", "account" => a.clone()).set(state.positions.len() as f64);
    gauge!("tape_open_orders", "account" => a.clone()).set(state.open_orders.len() as f64);
    gauge!("tape_pending_recommendations", "account" => a.clone()).set(state.pending.len() as f64);
    for kind in KINDS {
        let active = state.breakers.iter().filter(|b| b.kind == kind && b.is_active(now)).count();
        gauge!("tape_breaker_active", "account" => a.clone(), "kind" => kind.to_string()).set(active as f64);
    }
}
