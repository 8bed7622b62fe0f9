//! `explain`: the whole chain of one recommendation, built from its account's events.
//!
//! Pure: [`Explainer`] watches events of one account in stream order and collects what
//! concerns one recommendation: each capture, every evaluation (checks with the values
//! they compared, sizing steps before → after, the decision) with the input that
//! triggered it and the tier and config hash in force, the orders placed for it with
//! their acknowledgements and fills, the position they left, and the trade's result.
//!
//! It needs no fold of the whole stream: the tier is on each decision, the config hash
//! in its metadata, the trigger is its `causation_id`, and the position after a fill is
//! the ticker's fills folded with the core's average-cost rule. So a reader may feed it
//! the whole stream (`--from-log`) or only the events the projections point at; both give
//! the same explanation.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

use rust_decimal::Decimal;
use tape_events::{
    average_cost_after_buy, Event, Metadata, Money, OrderFilled, OrderPlaced, Qty, RecommendationReceived, RiskTier,
    Side, Stamped, StopLossTriggered, Timestamp, TradeClosed, TradingDecisionRecorded,
};
use uuid::Uuid;

/// One event of an account's stream, as the audit reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub stamped: Stamped,
    pub metadata: Metadata,
}

/// Where an event sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Place {
    pub position: i64,
    pub stream_version: i64,
    pub at: Timestamp,
}

impl Place {
    fn of(event: &AuditEvent) -> Self {
        Self { position: event.position, stream_version: event.stream_version, at: event.stamped.at }
    }
}

/// A capture of the recommendation (a redelivery is a second capture).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capture {
    pub place: Place,
    pub fields: RecommendationReceived,
}

/// One check of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckLine {
    pub check: String,
    pub passed: bool,
    pub detail: Value,
}

/// One sizing step of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepLine {
    pub step: String,
    pub dollars_before: Money,
    pub dollars_after: Money,
    pub detail: Value,
}

/// One evaluation: what triggered it, the checks and steps, the decision, and the tier and
/// configuration in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationLine {
    pub place: Place,
    /// `received` (the capture) or `poll` (a re-evaluation at a poll tick).
    pub trigger: String,
    pub risk_tier: RiskTier,
    pub config_hash: String,
    pub checks: Vec<CheckLine>,
    pub steps: Vec<StepLine>,
    pub decision: TradingDecisionRecorded,
}

/// A fill of an order, with the position it left.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FillLine {
    pub place: Place,
    pub fill: OrderFilled,
    pub position_qty_after: Qty,
    /// Average cost after the fill (4 places); `None` when the fill closed the position.
    pub position_avg_cost_after: Option<String>,
}

/// An order and everything the broker said about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderTrail {
    pub place: Place,
    pub order: OrderPlaced,
    pub submitted: Option<(Timestamp, String)>,
    pub fills: Vec<FillLine>,
    /// `rejected: …` or `canceled: …`.
    pub ended: Option<(Timestamp, String)>,
}

/// What happened to the position the recommendation's buy opened or added to (or the
/// sell closed): exit orders, stop-losses, and the closed trade.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aftermath {
    pub stop_losses: Vec<(Timestamp, StopLossTriggered)>,
    pub exits: Vec<OrderTrail>,
    pub trade: Option<(Timestamp, TradeClosed)>,
}

/// The whole chain of one recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub recommendation_id: String,
    pub stream_id: String,
    pub captures: Vec<Capture>,
    pub evaluations: Vec<EvaluationLine>,
    pub orders: Vec<OrderTrail>,
    pub aftermath: Option<Aftermath>,
}

impl Explanation {
    /// The final decision, if there is one.
    #[must_use]
    pub fn final_decision(&self) -> Option<&TradingDecisionRecorded> {
        self.evaluations.iter().rev().map(|e| &e.decision).find(|d| d.is_final)
    }
}

#[derive(Debug, Default)]
struct Open {
    place: Option<Place>,
    checks: Vec<CheckLine>,
    steps: Vec<StepLine>,
}

/// Builds an [`Explanation`] from an account's events, fed in stream order.
#[derive(Debug)]
pub struct Explainer {
    recommendation_id: String,
    stream_id: String,
    /// Ids of the captures (an evaluation caused by one was triggered on receipt).
    capture_ids: Vec<Uuid>,
    open: Open,
    captures: Vec<Capture>,
    evaluations: Vec<EvaluationLine>,
    orders: Vec<OrderTrail>,
    /// Shares and average cost per ticker, from the fills seen.
    positions: BTreeMap<String, (u64, Decimal)>,
    /// The ticker whose position the recommendation's orders touched, once one filled.
    followed: Option<String>,
    aftermath: Aftermath,
    closed: bool,
}

impl Explainer {
    #[must_use]
    pub fn new(recommendation_id: &str, stream_id: &str) -> Self {
        Self {
            recommendation_id: recommendation_id.to_owned(),
            stream_id: stream_id.to_owned(),
            capture_ids: Vec::new(),
            open: Open::default(),
            captures: Vec::new(),
            evaluations: Vec::new(),
            orders: Vec::new(),
            positions: BTreeMap::new(),
            followed: None,
            aftermath: Aftermath { stop_losses: Vec::new(), exits: Vec::new(), trade: None },
            closed: false,
        }
    }

    /// Whether the recommendation appeared in what was fed so far.
    #[must_use]
    pub fn found(&self) -> bool {
        !self.captures.is_empty()
    }

    fn is_ours(&self, id: Option<&str>) -> bool {
        id == Some(self.recommendation_id.as_str())
    }

    fn trail_mut(&mut self, order_id: Uuid) -> Option<&mut OrderTrail> {
        self.orders.iter_mut().chain(self.aftermath.exits.iter_mut()).find(|o| o.order.order_id == order_id)
    }

    fn follows(&self, ticker: &str) -> bool {
        !self.closed && self.followed.as_deref() == Some(ticker)
    }

    /// The event types [`Explainer::feed`] reacts to: it may be fed only these (in stream
    /// order) and gives the same explanation. Keep in step with `feed`'s arms.
    pub const FED_TYPES: [&'static str; 11] = [
        "RecommendationReceived",
        "PreTradeCheckEvaluated",
        "SizingStepApplied",
        "TradingDecisionRecorded",
        "OrderPlaced",
        "OrderSubmitted",
        "OrderFilled",
        "OrderRejected",
        "OrderCanceled",
        "StopLossTriggered",
        "TradeClosed",
    ];

    /// Watches the next event of the stream.
    pub fn feed(&mut self, event: &AuditEvent) {
        let place = Place::of(event);
        let at = event.stamped.at;
        match &event.stamped.event {
            Event::RecommendationReceived(r) if r.recommendation_id == self.recommendation_id => {
                self.capture_ids.push(event.event_id);
                self.captures.push(Capture { place, fields: r.clone() });
            }
            Event::PreTradeCheckEvaluated(c) if self.is_ours(Some(&c.recommendation_id)) => {
                self.open.place.get_or_insert(place);
                self.open.checks.push(CheckLine {
                    check: c.check.to_string(),
                    passed: c.passed,
                    detail: c.detail.clone(),
                });
            }
            Event::SizingStepApplied(s) if self.is_ours(Some(&s.recommendation_id)) => {
                self.open.place.get_or_insert(place);
                self.open.steps.push(StepLine {
                    step: s.step.to_string(),
                    dollars_before: s.dollars_before,
                    dollars_after: s.dollars_after,
                    detail: s.detail.clone(),
                });
            }
            Event::TradingDecisionRecorded(d) if self.is_ours(Some(&d.recommendation_id)) => {
                let open = std::mem::take(&mut self.open);
                let on_receipt = event.metadata.causation_id.is_some_and(|c| self.capture_ids.contains(&c));
                self.evaluations.push(EvaluationLine {
                    place: open.place.unwrap_or(place),
                    trigger: if on_receipt { "received" } else { "poll" }.to_owned(),
                    risk_tier: d.risk_tier,
                    config_hash: event.metadata.config_hash.clone().unwrap_or_default(),
                    checks: open.checks,
                    steps: open.steps,
                    decision: d.clone(),
                });
            }
            Event::OrderPlaced(o) if self.is_ours(o.recommendation_id.as_deref()) => {
                self.orders.push(OrderTrail {
                    place,
                    order: o.clone(),
                    submitted: None,
                    fills: Vec::new(),
                    ended: None,
                });
            }
            Event::OrderPlaced(o) if o.side == Side::Sell && self.follows(&o.ticker) => {
                self.aftermath.exits.push(OrderTrail {
                    place,
                    order: o.clone(),
                    submitted: None,
                    fills: Vec::new(),
                    ended: None,
                });
            }
            Event::StopLossTriggered(s) if self.follows(&s.ticker) => {
                self.aftermath.stop_losses.push((at, s.clone()));
            }
            Event::TradeClosed(t) if self.follows(&t.ticker) => {
                self.aftermath.trade = Some((at, t.clone()));
                self.closed = true;
            }
            Event::OrderSubmitted(s) => {
                if let Some(trail) = self.trail_mut(s.order_id) {
                    trail.submitted = Some((at, s.broker_order_id.clone()));
                }
            }
            Event::OrderRejected(r) => {
                if let Some(trail) = self.trail_mut(r.order_id) {
                    trail.ended = Some((at, format!("rejected: {}", r.reason)));
                }
            }
            Event::OrderCanceled(c) => {
                if let Some(trail) = self.trail_mut(c.order_id) {
                    trail.ended = Some((at, format!("canceled: {}", c.reason)));
                }
            }
            Event::OrderFilled(f) => self.fill(place, f),
            _ => {}
        }
    }

    /// Books a fill into the ticker's position (the core's rule: average cost to 4
    /// places, no intermediate rounding) and into its order's trail.
    fn fill(&mut self, place: Place, f: &OrderFilled) {
        let (qty, avg) = self.positions.get(&f.ticker).copied().unwrap_or((0, Decimal::ZERO));
        let (qty, avg) = match f.side {
            Side::Buy => (qty + f.qty.0, average_cost_after_buy(Qty(qty), avg, f.qty, f.price)),
            Side::Sell => (qty.saturating_sub(f.qty.0), avg),
        };
        if qty == 0 {
            self.positions.remove(&f.ticker);
        } else {
            self.positions.insert(f.ticker.clone(), (qty, avg));
        }
        let line = FillLine {
            place,
            fill: f.clone(),
            position_qty_after: Qty(qty),
            position_avg_cost_after: (qty > 0).then(|| avg.to_string()),
        };
        let ours = self.orders.iter().any(|o| o.order.order_id == f.order_id);
        if let Some(trail) = self.trail_mut(f.order_id) {
            trail.fills.push(line);
            if ours && !self.closed {
                self.followed = Some(f.ticker.clone());
            }
        }
    }

    /// The explanation, if the recommendation was found.
    #[must_use]
    pub fn finish(self) -> Option<Explanation> {
        if self.captures.is_empty() {
            return None;
        }
        let followed = self.followed.is_some();
        Some(Explanation {
            recommendation_id: self.recommendation_id,
            stream_id: self.stream_id,
            captures: self.captures,
            evaluations: self.evaluations,
            orders: self.orders,
            aftermath: followed.then_some(self.aftermath),
        })
    }
}

/// Explains a recommendation from an account's events in stream order.
#[must_use]
pub fn explain<'a>(
    recommendation_id: &str,
    stream_id: &str,
    events: impl IntoIterator<Item = &'a AuditEvent>,
) -> Option<Explanation> {
    let mut explainer = Explainer::new(recommendation_id, stream_id);
    for event in events {
        explainer.feed(event);
    }
    explainer.finish()
}
