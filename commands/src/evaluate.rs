//! Evaluating a recommendation (SPEC 4): step 0, checks a–f, the sell and buy paths and
//! the eight sizing steps. Pure: reads the state, returns the decisions of one
//! evaluation; the caller decides whether to record them (a poll records an evaluation
//! only when its outcome differs from the previous one).

use chrono::Timelike;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tape_events::{
    BreakerKind, CheckName, Money, Outcome, Price, Qty, Side, SizingStepApplied, SkipReason, Timestamp,
    TradingDecisionRecorded,
};
use tape_events::{Event, OrderPlaced, OrderReason, PreTradeCheckEvaluated};
use uuid::Uuid;

use crate::calendar::{exchange_date, exchange_time, in_trading_window, is_trading_day};
use crate::recommendation::{Recommendation, ValidFields, Validity};
use crate::sizing;
use crate::state::State;
use crate::valuation::{last_price, loss_fraction, mark};

/// The outcome that decides whether a re-evaluation is recorded (SPEC 13).
pub type OutcomeKey = (Outcome, bool, Option<SkipReason>);

/// One evaluation: its decisions in order, and its outcome.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub events: Vec<Event>,
    pub outcome: OutcomeKey,
}

struct Builder<'a> {
    state: &'a State,
    recommendation: &'a Recommendation,
    events: Vec<Event>,
}

impl Builder<'_> {
    fn check(&mut self, check: CheckName, passed: bool, detail: Value) -> bool {
        self.events.push(Event::PreTradeCheckEvaluated(PreTradeCheckEvaluated {
            recommendation_id: self.recommendation.id.clone(),
            check,
            passed,
            detail,
        }));
        passed
    }

    fn decide(
        mut self,
        decision: Outcome,
        is_final: bool,
        skip: Option<SkipReason>,
        act: Option<(Qty, Money, Price)>,
    ) -> Evaluation {
        self.events.push(Event::TradingDecisionRecorded(TradingDecisionRecorded {
            recommendation_id: self.recommendation.id.clone(),
            ticker: self.recommendation.raw_ticker.clone(),
            side: self.recommendation.raw_action.clone(),
            decision,
            is_final,
            skip_reason: skip,
            shares: act.map(|a| a.0),
            dollar_amount: act.map(|a| a.1),
            price: act.map(|a| a.2),
            risk_tier: self.state.tier,
        }));
        Evaluation { events: self.events, outcome: (decision, is_final, skip) }
    }

    fn skip(self, reason: SkipReason) -> Evaluation {
        let is_final = !reason.is_transient();
        self.decide(Outcome::Skip, is_final, Some(reason), None)
    }

    fn act(self, fields: &ValidFields, shares: Qty, dollars: Money, price: Price, reason: OrderReason) -> Evaluation {
        let order = Event::OrderPlaced(OrderPlaced {
            order_id: Uuid::nil(), // assigned when recorded: derived from the input id and index
            recommendation_id: Some(self.recommendation.id.clone()),
            ticker: fields.ticker.clone(),
            side: fields.side,
            qty: shares,
            reason,
        });
        let mut evaluation = self.decide(Outcome::Act, true, None, Some((shares, dollars, price)));
        evaluation.events.push(order);
        evaluation
    }
}

/// Whether a valid recommendation is stale at `now` (SPEC 4: `generated_at <= now − max_age`).
fn is_stale(state: &State, fields: &ValidFields, now: Timestamp) -> bool {
    fields.generated_at <= now.minus(state.config.recommendation_max_age.chrono())
}

/// Whether a breaker blocks a buy of `ticker` at `now` (check a).
fn blocking_breakers<'a>(
    state: &'a State,
    ticker: &'a str,
    now: Timestamp,
) -> impl Iterator<Item = &'a crate::state::Breaker> {
    state
        .breakers
        .iter()
        .filter(move |br| br.is_active(now))
        .filter(move |br| br.kind != BreakerKind::SinglePosition || br.ticker.as_deref() == Some(ticker))
}

/// The outcome of an evaluation when it ends at step 0, staleness or a transient check
/// (a–c); `None` when it would reach check d, after which every outcome is final. Uses
/// the same predicates as [`evaluate`] without building any event, so that a poll can
/// skip an evaluation whose outcome has not changed (SPEC 13: it records nothing then).
#[must_use]
pub fn early_outcome(state: &State, recommendation: &Recommendation, now: Timestamp) -> Option<OutcomeKey> {
    let fields = match &recommendation.validity {
        Validity::Invalid(field) => return Some((Outcome::Skip, true, Some(SkipReason::Invalid(*field)))),
        Validity::Valid(fields) => fields,
    };
    let transient = |check| Some((Outcome::Skip, false, Some(SkipReason::Check(check))));
    if is_stale(state, fields, now) {
        return Some((Outcome::Skip, true, Some(SkipReason::Stale)));
    }
    if fields.side == Side::Buy && blocking_breakers(state, &fields.ticker, now).next().is_some() {
        return transient(CheckName::CircuitBreaker);
    }
    if !in_trading_window(now, &state.config) {
        return transient(CheckName::TradingWindow);
    }
    if fields.confidence < state.config.tier(state.tier).min_confidence {
        return transient(CheckName::Confidence);
    }
    None
}

fn not_applicable() -> Value {
    json!({ "not_applicable_to_sell": true })
}

/// Evaluates a captured recommendation at `now`: on receipt, or again at a poll.
#[must_use]
pub fn evaluate(state: &State, recommendation: &Recommendation, now: Timestamp) -> Evaluation {
    let mut b = Builder { state, recommendation, events: Vec::new() };
    let fields = match &recommendation.validity {
        Validity::Invalid(field) => return b.skip(SkipReason::Invalid(*field)),
        Validity::Valid(fields) => fields,
    };
    let config = &*state.config;
    if is_stale(state, fields, now) {
        return b.skip(SkipReason::Stale);
    }
    let is_sell = fields.side == Side::Sell;
    let ticker = fields.ticker.as_str();
    let tier = config.tier(state.tier);

    // a. circuit_breaker (transient); sells pass.
    if is_sell {
        b.check(CheckName::CircuitBreaker, true, not_applicable());
    } else {
        let active: Vec<Value> = blocking_breakers(state, ticker, now)
            .map(|br| json!({ "kind": br.kind, "ticker": br.ticker, "until": br.until }))
            .collect();
        let passed = active.is_empty();
        if !b.check(CheckName::CircuitBreaker, passed, json!({ "ticker": ticker, "active": active })) {
            return b.skip(SkipReason::Check(CheckName::CircuitBreaker));
        }
    }

    // b. trading_window (transient).
    let local = exchange_time(now);
    let passed = in_trading_window(now, config);
    let hm = |t: chrono::NaiveTime| format!("{:02}:{:02}", t.hour(), t.minute());
    let detail = json!({
        "now_et": format!("{} {}:{:02}", local.date_naive(), hm(local.time()), local.second()),
        "trading_day": is_trading_day(local.date_naive(), config),
        "start": hm(config.trading_window.start),
        "end": hm(config.trading_window.end),
    });
    if !b.check(CheckName::TradingWindow, passed, detail) {
        return b.skip(SkipReason::Check(CheckName::TradingWindow));
    }

    // c. confidence (transient).
    let passed = fields.confidence >= tier.min_confidence;
    let detail = json!({
        "confidence": fields.confidence.to_string(),
        "min_confidence": tier.min_confidence.to_string(),
        "tier": state.tier,
    });
    if !b.check(CheckName::Confidence, passed, detail) {
        return b.skip(SkipReason::Check(CheckName::Confidence));
    }

    // d. dedupe (final); passing consumes the id.
    let consumed = state.consumed.contains(&recommendation.id);
    if !b.check(CheckName::Dedupe, !consumed, json!({ "consumed_before": consumed })) {
        return b.skip(SkipReason::Check(CheckName::Dedupe));
    }

    // e. declining_positions (final); sells pass.
    if is_sell {
        b.check(CheckName::DecliningPositions, true, not_applicable());
    } else {
        let n = state.positions.len();
        let declining = state
            .positions
            .iter()
            .filter(|(t, p)| loss_fraction(mark(state, t, p), p.avg_cost) < -config.declining_loss_pct)
            .count();
        let fraction = (n > 0).then(|| tape_events::round4(Decimal::from(declining) / Decimal::from(n)));
        let passed = fraction.is_none_or(|f| f <= config.declining_fraction);
        let detail = json!({
            "open_positions": n,
            "declining": declining,
            "fraction": fraction.map(|f| f.to_string()),
            "declining_fraction": config.declining_fraction.to_string(),
            "declining_loss_pct": config.declining_loss_pct.to_string(),
        });
        if !b.check(CheckName::DecliningPositions, passed, detail) {
            return b.skip(SkipReason::Check(CheckName::DecliningPositions));
        }
    }

    // f. max_open_positions (final); sells pass.
    if is_sell {
        b.check(CheckName::MaxOpenPositions, true, not_applicable());
    } else {
        let held = state.positions.contains_key(ticker);
        let open_buy = state.has_open_order(ticker, Side::Buy);
        let open_positions = state.positions.len();
        let unheld_buys = state
            .open_orders
            .iter()
            .filter(|o| o.side == Side::Buy && !state.positions.contains_key(&o.ticker))
            .count();
        let max = config.max_open_positions as usize;
        let passed = held || open_buy || open_positions + unheld_buys < max;
        let detail = json!({
            "open_positions": open_positions,
            "open_buy_orders_unheld": unheld_buys,
            "max": max,
            "held": held,
            "open_buy": open_buy,
        });
        if !b.check(CheckName::MaxOpenPositions, passed, detail) {
            return b.skip(SkipReason::Check(CheckName::MaxOpenPositions));
        }
    }

    if is_sell {
        let Some(position) = state.positions.get(ticker) else {
            return b.skip(SkipReason::NoPosition);
        };
        if state.has_open_order(ticker, Side::Sell) {
            return b.skip(SkipReason::ExitPending);
        }
        // A sell is priced at the last quote of any age, average cost if none (SPEC 13).
        let price = last_price(state, ticker).unwrap_or_else(|| Price::new(position.avg_cost));
        let dollars = Money::of(position.qty, price);
        return b.act(fields, position.qty, dollars, price, OrderReason::Exit);
    }

    if state.has_open_order(ticker, Side::Buy) {
        return b.skip(SkipReason::EntryPending);
    }
    let price = match state.quotes.get(ticker) {
        Some(quote) if now.minus(config.quote_max_age.chrono()) <= quote.at => quote.price,
        _ => return b.skip(SkipReason::NoPrice),
    };

    let today = exchange_date(now);
    let sized = sizing::size(&sizing::Request { state, ticker, confidence: fields.confidence, price, today });
    for step in sized.steps {
        b.events.push(Event::SizingStepApplied(SizingStepApplied {
            recommendation_id: recommendation.id.clone(),
            step: step.step,
            dollars_before: step.before,
            dollars_after: step.after,
            detail: step.detail,
        }));
    }
    match sized.result {
        Err(reason) => b.skip(SkipReason::Rejected(reason)),
        Ok((shares, dollars)) => b.act(fields, shares, dollars, price, OrderReason::Entry),
    }
}
