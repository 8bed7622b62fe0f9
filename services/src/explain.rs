//! A small explanation of one recommendation (capture → checks → sizing → decision →
//! order → fills), and a re-decision of a stream through the core (`tape demo`'s
//! verification when `tape replay` is not in the build). The richer `tape audit
//! explain` of SPEC 10 will build on the same reading of the stream.

use std::fmt::Write;

use futures_util::StreamExt;
use tape_commands::{Engine, Input, StepOutcome};
use tape_events::{Event, Stamped};
use uuid::Uuid;

use crate::store::{EventStore, StoreError};

/// A stream read whole: `(event id, event)` in version order.
///
/// # Errors
/// [`StoreError`] when it cannot be read or decoded.
pub async fn read_account(store: &EventStore, account: &str) -> Result<Vec<(Uuid, Stamped)>, StoreError> {
    let stream = tape_events::ids::account_stream(account);
    let mut rows = store.stream_stream(&stream, 1).await?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().await {
        let stored = row?.event;
        match stored.decode() {
            Ok(stamped) => out.push((stored.event_id, stamped)),
            Err(error) => {
                tracing::warn!(version = stored.stream_version, %error, "skipping an event that does not decode");
            }
        }
    }
    Ok(out)
}

/// The chain of one recommendation as text; `None` when the stream never captured it.
#[must_use]
pub fn explain(events: &[(Uuid, Stamped)], recommendation_id: &str) -> Option<String> {
    let mut out = String::new();
    let mut orders: Vec<Uuid> = Vec::new();
    let mut found = false;
    for (_, stamped) in events {
        let at = stamped.at;
        match &stamped.event {
            Event::RecommendationReceived(r) if r.recommendation_id == recommendation_id => {
                found = true;
                let _ = writeln!(
                    out,
                    "{at}  captured   {} {} confidence {} mode {} generated {}",
                    r.action.as_deref().unwrap_or("?"),
                    r.ticker.as_deref().unwrap_or("?"),
                    r.confidence.as_deref().unwrap_or("?"),
                    r.mode.as_deref().unwrap_or("?"),
                    r.generated_at.as_deref().unwrap_or("?"),
                );
            }
            Event::PreTradeCheckEvaluated(c) if c.recommendation_id == recommendation_id => {
                let _ = writeln!(
                    out,
                    "{at}  check      {:<20} {}  {}",
                    c.check.to_string(),
                    if c.passed { "pass" } else { "FAIL" },
                    c.detail
                );
            }
            Event::SizingStepApplied(s) if s.recommendation_id == recommendation_id => {
                let _ = writeln!(
                    out,
                    "{at}  sizing     {:<20} {} → {}  {}",
                    s.step.to_string(),
                    s.dollars_before,
                    s.dollars_after,
                    s.detail
                );
            }
            Event::TradingDecisionRecorded(d) if d.recommendation_id == recommendation_id => {
                let what = match (&d.skip_reason, d.shares) {
                    (Some(reason), _) => format!("skip ({reason})"),
                    (None, Some(shares)) => format!(
                        "act: {shares} shares at {} = {}",
                        d.price.map(|p| p.to_string()).unwrap_or_default(),
                        d.dollar_amount.map(|m| m.to_string()).unwrap_or_default()
                    ),
                    _ => d.decision.to_string(),
                };
                let kind = if d.is_final { "final" } else { "transient" };
                let _ = writeln!(out, "{at}  decision   {what}, {kind}, tier {}", d.risk_tier);
            }
            Event::OrderPlaced(o) if o.recommendation_id.as_deref() == Some(recommendation_id) => {
                orders.push(o.order_id);
                let _ = writeln!(
                    out,
                    "{at}  order      {} {} {} ({}) id {}",
                    o.side, o.qty, o.ticker, o.reason, o.order_id
                );
            }
            Event::OrderSubmitted(s) if orders.contains(&s.order_id) => {
                let _ = writeln!(out, "{at}  submitted  broker order {}", s.broker_order_id);
            }
            Event::OrderFilled(f) if orders.contains(&f.order_id) => {
                let _ = writeln!(
                    out,
                    "{at}  fill       {} {} {} at {} (fill {})",
                    f.side, f.qty, f.ticker, f.price, f.fill_id
                );
            }
            _ => {}
        }
    }
    found.then_some(out)
}

/// What a re-decision found.
#[derive(Debug, Clone, Default)]
pub struct Redecided {
    pub inputs: u64,
    pub decisions: u64,
    /// The first divergences (at most 10), each naming the stream position.
    pub divergences: Vec<String>,
}

/// Folds the stream from scratch and runs every recorded input through the core again,
/// comparing the decisions with those recorded, event for event (ids included).
#[must_use]
pub fn redecide(events: &[(Uuid, Stamped)]) -> Redecided {
    let mut engine = Engine::default();
    let mut report = Redecided::default();
    let mut out = Vec::new();
    let mut i = 0;
    let diverge = |report: &mut Redecided, text: String| {
        if report.divergences.len() < 10 {
            report.divergences.push(text);
        }
    };
    while i < events.len() {
        let (id, stamped) = &events[i];
        if !stamped.event.is_input() {
            diverge(
                &mut report,
                format!("version {}: decision {} without its input", i + 1, stamped.event.event_type()),
            );
            engine.apply(stamped);
            i += 1;
            continue;
        }
        report.inputs += 1;
        out.clear();
        match engine.step(Input { id: *id, stamped: stamped.clone() }, &mut out) {
            Ok(StepOutcome::Recorded { decisions }) => {
                for (k, decided) in out.iter().enumerate().skip(1) {
                    let recorded = events.get(i + k);
                    let expected_id = tape_events::ids::decision_event_id(*id, k - 1);
                    match recorded {
                        Some((rid, r)) if *rid == expected_id && r == decided => {}
                        _ => diverge(
                            &mut report,
                            format!(
                                "version {}: recomputed {} differs from the record",
                                i + k + 1,
                                decided.event.event_type()
                            ),
                        ),
                    }
                }
                report.decisions += decisions as u64;
                i += 1 + decisions;
            }
            Ok(StepOutcome::Unchanged) => {
                diverge(
                    &mut report,
                    format!("version {}: recorded {} changes nothing now", i + 1, stamped.event.event_type()),
                );
                engine.apply(stamped);
                i += 1;
            }
            Err(error) => {
                diverge(
                    &mut report,
                    format!("version {}: recorded {} is refused now: {error}", i + 1, stamped.event.event_type()),
                );
                engine.apply(stamped);
                i += 1;
            }
        }
    }
    report
}
