//! The pure half of the Alpaca adapter: Alpaca statuses and stream events mapped to
//! [`BrokerUpdate`]s, and the reconciliation of one order planned from what the log says
//! and what the broker says. No I/O, no clock: every function here is unit-tested
//! without a server.
//!
//! Fills are booked **in cumulative order**: a fill is emitted only when it starts where
//! the booked quantity ends (`cum_qty − qty = booked`). The stream's fill ids are its
//! `execution_id`s and the account activities' are their activity `id`s; Alpaca does not
//! publish that the two agree, so a fill is recognised across the two sources by its
//! place in the order (its `cum_qty`), and within one source by its id (downstream, the
//! core ignores a fill id it already booked). Because the booked fills are always a
//! prefix in cumulative order, the log's filled quantity alone says which broker fills
//! are booked after a restart.

use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use tape_events::{Price, Qty, Side};
use uuid::Uuid;

use super::types::{FillActivity, Order, TradeUpdate};
use crate::broker::{BrokerOrder, BrokerStatus, BrokerUpdate, OrderJob};

/// What the adapter knows of one of our orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub job: OrderJob,
    /// Shares booked in the log (or emitted since): fills up to this cumulative quantity.
    pub booked: Qty,
    /// Alpaca's order id once known and reported (`OrderSubmitted`).
    pub broker_order_id: Option<String>,
    /// A final update (filled, canceled, rejected) was emitted: nothing more to follow.
    pub done: bool,
}

impl Tracked {
    #[must_use]
    pub fn new(job: OrderJob) -> Self {
        Self { job, booked: Qty(0), broker_order_id: None, done: false }
    }
}

/// One execution, from either source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub fill_id: String,
    pub ticker: String,
    pub side: Side,
    pub qty: Qty,
    /// Shares filled on the order after this fill.
    pub cum: Qty,
    pub price: Price,
}

/// The status of an Alpaca order, as tape sees it; `None` for a status it does not know.
#[must_use]
pub fn status(alpaca: &str) -> Option<BrokerStatus> {
    Some(match alpaca {
        "new"
        | "accepted"
        | "pending_new"
        | "accepted_for_bidding"
        | "calculated"
        | "stopped"
        | "held"
        | "suspended"
        | "pending_cancel"
        | "pending_replace" => BrokerStatus::Accepted,
        "partially_filled" => BrokerStatus::PartiallyFilled,
        "filled" => BrokerStatus::Filled,
        "canceled" | "expired" | "done_for_day" | "replaced" => BrokerStatus::Canceled,
        "rejected" => BrokerStatus::Rejected,
        _ => return None,
    })
}

/// A whole number of shares from Alpaca's decimal text (`"10"`, `"10.0"`).
///
/// # Errors
/// A message naming the field and the value when it is not a whole, non-negative number.
pub fn whole_qty(field: &str, text: &str) -> Result<Qty, String> {
    let value = Decimal::from_str(text.trim()).map_err(|_| format!("invalid {field} {text:?}: not a number"))?;
    if value.is_sign_negative() || !value.fract().is_zero() {
        return Err(format!("invalid {field} {text:?}: not a whole, non-negative number of shares"));
    }
    value.to_u64().map(Qty).ok_or_else(|| format!("invalid {field} {text:?}: out of range"))
}

/// A positive price from Alpaca's decimal text.
///
/// # Errors
/// A message naming the field and the value.
pub fn price(field: &str, text: &str) -> Result<Price, String> {
    let value =
        tape_events::money::parse_plain_decimal(text.trim()).map_err(|e| format!("invalid {field} {text:?}: {e}"))?;
    if value <= Decimal::ZERO {
        return Err(format!("invalid {field} {text:?}: must be positive"));
    }
    Ok(Price::new(value))
}

/// The order as the [`crate::broker::Broker`] trait reports it.
///
/// # Errors
/// A message when the client order id is not one of ours (not a UUID) or the status is unknown.
pub fn broker_order(order: &Order) -> Result<BrokerOrder, String> {
    let client_order_id = Uuid::parse_str(&order.client_order_id).map_err(|_| {
        format!("invalid client_order_id {:?} of order {}: not a uuid", order.client_order_id, order.id)
    })?;
    let status =
        status(&order.status).ok_or_else(|| format!("unknown status {:?} of order {}", order.status, order.id))?;
    Ok(BrokerOrder { client_order_id, broker_order_id: order.id.clone(), status })
}

/// The fill of a `fill`/`partial_fill` stream event.
///
/// # Errors
/// A message naming the missing or bad field.
pub fn stream_fill(update: &TradeUpdate) -> Result<Fill, String> {
    let order = &update.order;
    let fill_id = update
        .execution_id
        .clone()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| format!("{} event of order {} has no execution_id", update.event, order.id))?;
    let qty = whole_qty("qty", update.qty.as_deref().unwrap_or(""))?;
    let price = price("price", update.price.as_deref().unwrap_or(""))?;
    let cum = whole_qty("order.filled_qty", &order.filled_qty)?;
    let side =
        Side::parse(&order.side).ok_or_else(|| format!("invalid side {:?} of order {}", order.side, order.id))?;
    Ok(Fill { fill_id, ticker: order.symbol.clone(), side, qty, cum, price })
}

/// The fill of a `FILL` activity.
///
/// # Errors
/// A message naming the bad field.
pub fn activity_fill(activity: &FillActivity) -> Result<Fill, String> {
    let side = Side::parse(&activity.side)
        .ok_or_else(|| format!("invalid side {:?} of activity {}", activity.side, activity.id))?;
    Ok(Fill {
        fill_id: activity.id.clone(),
        ticker: activity.symbol.clone(),
        side,
        qty: whole_qty("qty", &activity.qty)?,
        cum: whole_qty("cum_qty", &activity.cum_qty)?,
        price: price("price", &activity.price)?,
    })
}

/// What fills to emit for an order, given the fills the broker reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FillPlan {
    /// In cumulative order, each starting where the previous ends.
    pub emit: Vec<Fill>,
    /// A fill is missing before the next one reported (fetch the activities).
    pub gap: bool,
    /// A difference that cannot be explained (never booked).
    pub discrepancy: Option<String>,
}

/// Plans the fills of `tracked` from `fills` (any order, duplicates allowed).
#[must_use]
pub fn plan_fills(tracked: &Tracked, fills: &[Fill]) -> FillPlan {
    let mut sorted: Vec<&Fill> = fills.iter().filter(|f| f.cum > tracked.booked).collect();
    sorted.sort_by_key(|f| f.cum);
    sorted.dedup_by_key(|f| f.cum);
    let mut plan = FillPlan::default();
    let mut booked = tracked.booked;
    let job = &tracked.job;
    for fill in sorted {
        if fill.ticker != job.ticker || fill.side != job.side {
            plan.discrepancy = Some(format!(
                "fill {} of order {} is {} {}, the order is {} {}",
                fill.fill_id, job.order_id, fill.side, fill.ticker, job.side, job.ticker
            ));
            break;
        }
        if fill.cum > job.quantity {
            plan.discrepancy = Some(format!(
                "broker filled {} shares of order {}, more than the {} ordered",
                fill.cum, job.order_id, job.quantity
            ));
            break;
        }
        if fill.qty.is_zero() || fill.cum.0.checked_sub(fill.qty.0) != Some(booked.0) {
            plan.gap = true;
            break;
        }
        booked = fill.cum;
        plan.emit.push(fill.clone());
    }
    plan
}

/// How the adapter reacts to one `trade_updates` event of a tracked order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Nothing to report (a pending state, or already reported).
    Ignore,
    /// Report these updates (and remember the new booked quantity / broker id / done).
    Report(Vec<BrokerUpdate>),
    /// The event cannot be placed (a missed fill, an order ending with fills not yet
    /// seen): reconcile the order from the REST API.
    Reconcile,
}

fn account(tracked: &Tracked) -> String {
    tracked.job.account_id.clone()
}

/// The update of one fill.
#[must_use]
pub fn fill_update(tracked: &Tracked, fill: &Fill) -> BrokerUpdate {
    BrokerUpdate::Filled {
        account_id: account(tracked),
        order_id: tracked.job.order_id,
        fill_id: fill.fill_id.clone(),
        ticker: fill.ticker.clone(),
        side: fill.side,
        qty: fill.qty,
        price: fill.price,
    }
}

/// The discrepancy update for `tracked`.
#[must_use]
pub fn discrepancy(tracked: &Tracked, broker_order_id: Option<String>, description: String) -> BrokerUpdate {
    BrokerUpdate::Discrepancy {
        account_id: account(tracked),
        order_id: Some(tracked.job.order_id),
        broker_order_id,
        description,
    }
}

fn ending(tracked: &Tracked, event: &str) -> BrokerUpdate {
    let (account_id, order_id) = (account(tracked), tracked.job.order_id);
    if event == "rejected" {
        BrokerUpdate::Rejected { account_id, order_id, reason: "rejected by alpaca".to_owned() }
    } else {
        BrokerUpdate::Canceled { account_id, order_id, reason: format!("{event} at alpaca") }
    }
}

/// Maps one stream event of a tracked order.
#[must_use]
pub fn on_trade_update(tracked: &Tracked, update: &TradeUpdate) -> Reaction {
    let order = &update.order;
    if tracked.done {
        return Reaction::Ignore;
    }
    if let Some(problem) = mismatch(tracked, order) {
        return Reaction::Report(vec![discrepancy(tracked, Some(order.id.clone()), problem)]);
    }
    let mut out = Vec::new();
    if tracked.broker_order_id.as_deref() != Some(order.id.as_str()) && update.event != "rejected" {
        out.push(BrokerUpdate::Accepted {
            account_id: account(tracked),
            order_id: tracked.job.order_id,
            broker_order_id: order.id.clone(),
        });
    }
    match update.event.as_str() {
        "fill" | "partial_fill" => {
            let fill = match stream_fill(update) {
                Ok(fill) => fill,
                Err(_) => return Reaction::Reconcile,
            };
            let plan = plan_fills(tracked, std::slice::from_ref(&fill));
            if let Some(problem) = plan.discrepancy {
                out.push(discrepancy(tracked, Some(order.id.clone()), problem));
            } else if plan.gap {
                return Reaction::Reconcile;
            }
            out.extend(plan.emit.iter().map(|f| fill_update(tracked, f)));
        }
        "canceled" | "expired" | "done_for_day" | "replaced" | "rejected" => {
            match whole_qty("order.filled_qty", &order.filled_qty) {
                Ok(filled) if filled == tracked.booked => out.push(ending(tracked, &update.event)),
                // Fills the adapter has not booked come first: ask the REST API.
                _ => return Reaction::Reconcile,
            }
        }
        _ => {}
    }
    if out.is_empty() {
        Reaction::Ignore
    } else {
        Reaction::Report(out)
    }
}

/// Why the broker's order cannot be ours as the log has it, if it cannot.
#[must_use]
pub fn mismatch(tracked: &Tracked, order: &Order) -> Option<String> {
    let job = &tracked.job;
    if order.symbol != job.ticker || Side::parse(&order.side) != Some(job.side) {
        return Some(format!(
            "broker order {} for client order {} is {} {}, the log has {} {}",
            order.id, job.order_id, order.side, order.symbol, job.side, job.ticker
        ));
    }
    match order.qty.as_deref().map(|q| whole_qty("qty", q)) {
        Some(Ok(qty)) if qty == job.quantity => None,
        Some(Ok(qty)) => Some(format!(
            "broker order {} for client order {} is for {qty} shares, the log has {}",
            order.id, job.order_id, job.quantity
        )),
        Some(Err(error)) => Some(format!("broker order {}: {error}", order.id)),
        None => Some(format!("broker order {} for client order {} has no qty", order.id, job.order_id)),
    }
}

/// What reconciliation does for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The broker never got it: submit it (once; idempotent by client order id).
    Submit,
    /// Report this update.
    Report(BrokerUpdate),
}

/// Plans the reconciliation of one order of the log with what the broker says about it
/// (`None`: the broker does not know the client order id) and its fill activities.
#[must_use]
pub fn reconcile_order(tracked: &Tracked, broker: Option<&Order>, activities: &[Fill]) -> Vec<Step> {
    let Some(order) = broker else {
        return if tracked.done { Vec::new() } else { vec![Step::Submit] };
    };
    let report = |update: BrokerUpdate| Step::Report(update);
    let broker_id = Some(order.id.clone());
    if let Some(problem) = mismatch(tracked, order) {
        return vec![report(discrepancy(tracked, broker_id, problem))];
    }
    let filled = match whole_qty("filled_qty", &order.filled_qty) {
        Ok(filled) => filled,
        Err(error) => {
            return vec![report(discrepancy(tracked, broker_id, format!("broker order {}: {error}", order.id)))]
        }
    };
    let mut steps = Vec::new();
    let alpaca_status = status(&order.status);
    if tracked.broker_order_id.as_deref() != Some(order.id.as_str()) && alpaca_status != Some(BrokerStatus::Rejected) {
        steps.push(report(BrokerUpdate::Accepted {
            account_id: account(tracked),
            order_id: tracked.job.order_id,
            broker_order_id: order.id.clone(),
        }));
    }
    if filled < tracked.booked {
        steps.push(report(discrepancy(
            tracked,
            broker_id,
            format!(
                "the log has {} shares of order {} filled, the broker only {filled}",
                tracked.booked, tracked.job.order_id
            ),
        )));
        return steps;
    }
    if filled > tracked.job.quantity {
        steps.push(report(discrepancy(
            tracked,
            broker_id,
            format!(
                "broker filled {filled} shares of order {}, more than the {} ordered",
                tracked.job.order_id, tracked.job.quantity
            ),
        )));
        return steps;
    }
    let mut booked = tracked.booked;
    if filled > booked {
        let plan = plan_fills(tracked, activities);
        for fill in &plan.emit {
            steps.push(report(fill_update(tracked, fill)));
            booked = fill.cum;
        }
        if let Some(problem) = plan.discrepancy {
            steps.push(report(discrepancy(tracked, broker_id, problem)));
            return steps;
        }
        if booked != filled {
            // Activities can lag the order by a moment; the next pass books the rest.
            return steps;
        }
    }
    match alpaca_status {
        Some(BrokerStatus::Canceled) => steps.push(report(ending(tracked, &order.status))),
        Some(BrokerStatus::Rejected) => steps.push(report(ending(tracked, "rejected"))),
        Some(_) => {}
        None => steps.push(report(discrepancy(
            tracked,
            broker_id,
            format!("broker order {} has unknown status {:?}", order.id, order.status),
        ))),
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use tape_events::OrderReason;

    fn job(qty: u64) -> OrderJob {
        OrderJob {
            order_id: Uuid::from_u128(1),
            account_id: "a1".into(),
            recommendation_id: Some("r-1".into()),
            ticker: "AAPL".into(),
            action: Side::Buy,
            side: Side::Buy,
            quantity: Qty(qty),
            order_type: "market".into(),
            reason: OrderReason::Entry,
        }
    }

    fn order(status: &str, qty: &str, filled: &str) -> Order {
        Order {
            id: "b-1".into(),
            client_order_id: Uuid::from_u128(1).to_string(),
            symbol: "AAPL".into(),
            side: "buy".into(),
            qty: Some(qty.into()),
            filled_qty: filled.into(),
            filled_avg_price: None,
            status: status.into(),
            order_type: Some("market".into()),
            time_in_force: Some("day".into()),
            created_at: None,
            submitted_at: None,
        }
    }

    fn fill(id: &str, qty: u64, cum: u64) -> Fill {
        Fill {
            fill_id: id.into(),
            ticker: "AAPL".into(),
            side: Side::Buy,
            qty: Qty(qty),
            cum: Qty(cum),
            price: Price::new(Decimal::new(10_050, 2)),
        }
    }

    fn event(name: &str, exec: Option<&str>, qty: Option<&str>, filled: &str) -> TradeUpdate {
        TradeUpdate {
            event: name.into(),
            execution_id: exec.map(Into::into),
            order: order(if name == "partial_fill" { "partially_filled" } else { name }, "10", filled),
            timestamp: Some("2024-03-04T14:36:00Z".into()),
            price: qty.map(|_| "100.50".into()),
            qty: qty.map(Into::into),
            position_qty: None,
        }
    }

    fn submitted(qty: u64) -> Tracked {
        Tracked { broker_order_id: Some("b-1".into()), ..Tracked::new(job(qty)) }
    }

    #[test]
    fn statuses_map_to_the_five_broker_states() {
        for s in ["new", "accepted", "pending_new", "accepted_for_bidding", "calculated", "stopped", "pending_cancel"] {
            assert_eq!(status(s), Some(BrokerStatus::Accepted), "{s}");
        }
        assert_eq!(status("partially_filled"), Some(BrokerStatus::PartiallyFilled));
        assert_eq!(status("filled"), Some(BrokerStatus::Filled));
        for s in ["canceled", "expired", "done_for_day", "replaced"] {
            assert_eq!(status(s), Some(BrokerStatus::Canceled), "{s}");
        }
        assert_eq!(status("rejected"), Some(BrokerStatus::Rejected));
        assert_eq!(status("teleported"), None);
    }

    #[test]
    fn quantities_are_whole_shares_and_errors_name_the_field_and_value() {
        assert_eq!(whole_qty("qty", "10"), Ok(Qty(10)));
        assert_eq!(whole_qty("qty", "10.000"), Ok(Qty(10)));
        assert_eq!(whole_qty("qty", "0"), Ok(Qty(0)));
        assert_eq!(
            whole_qty("qty", "0.5").unwrap_err(),
            "invalid qty \"0.5\": not a whole, non-negative number of shares"
        );
        assert!(whole_qty("cum_qty", "-1").unwrap_err().starts_with("invalid cum_qty \"-1\""));
        assert!(whole_qty("qty", "ten").is_err());
        assert!(price("price", "0").is_err());
        assert!(price("price", "1e3").is_err());
        assert_eq!(price("price", "179.0812").unwrap().value(), Decimal::new(1_790_812, 4));
    }

    #[test]
    fn new_then_fill_reports_submitted_then_the_fill_by_execution_id() {
        let tracked = Tracked::new(job(10));
        let Reaction::Report(updates) = on_trade_update(&tracked, &event("new", None, None, "0")) else { panic!() };
        assert_eq!(
            updates,
            vec![BrokerUpdate::Accepted {
                account_id: "a1".into(),
                order_id: Uuid::from_u128(1),
                broker_order_id: "b-1".into()
            }]
        );
        let Reaction::Report(updates) = on_trade_update(&submitted(10), &event("fill", Some("e-1"), Some("10"), "10"))
        else {
            panic!()
        };
        assert_eq!(updates, vec![fill_update(&submitted(10), &fill("e-1", 10, 10))]);
        // A pending state says nothing new.
        assert_eq!(on_trade_update(&submitted(10), &event("pending_new", None, None, "0")), Reaction::Ignore);
    }

    #[test]
    fn partial_fills_book_in_order_and_a_gap_asks_for_reconciliation() {
        let mut tracked = submitted(10);
        let first = on_trade_update(&tracked, &event("partial_fill", Some("e-1"), Some("4"), "4"));
        assert_eq!(first, Reaction::Report(vec![fill_update(&tracked, &fill("e-1", 4, 4))]));
        tracked.booked = Qty(4);
        // The same execution again (a replayed message): already booked.
        assert_eq!(on_trade_update(&tracked, &event("partial_fill", Some("e-1"), Some("4"), "4")), Reaction::Ignore);
        // 4 → 10 reported as a 3-share fill: a fill of 3 is missing in between.
        assert_eq!(on_trade_update(&tracked, &event("fill", Some("e-3"), Some("3"), "10")), Reaction::Reconcile);
    }

    #[test]
    fn an_ending_with_unbooked_fills_reconciles_first() {
        let tracked = submitted(10);
        assert_eq!(on_trade_update(&tracked, &event("canceled", None, None, "4")), Reaction::Reconcile);
        let Reaction::Report(updates) = on_trade_update(&tracked, &event("expired", None, None, "0")) else { panic!() };
        assert!(matches!(&updates[..], [BrokerUpdate::Canceled { reason, .. }] if reason == "expired at alpaca"));
        let Reaction::Report(updates) = on_trade_update(&tracked, &event("rejected", None, None, "0")) else {
            panic!()
        };
        assert!(matches!(&updates[..], [BrokerUpdate::Rejected { .. }]));
        let done = Tracked { done: true, ..tracked };
        assert_eq!(on_trade_update(&done, &event("canceled", None, None, "0")), Reaction::Ignore);
    }

    #[test]
    fn a_fill_beyond_the_order_or_for_another_ticker_is_a_discrepancy_never_a_fill() {
        let tracked = submitted(5);
        let mut update = event("fill", Some("e-1"), Some("10"), "10");
        update.order.qty = Some("5".into());
        let Reaction::Report(updates) = on_trade_update(&tracked, &update) else { panic!() };
        assert!(
            matches!(&updates[..], [BrokerUpdate::Discrepancy { description, .. }] if description.contains("more than the 5 ordered"))
        );
        let mut update = event("fill", Some("e-1"), Some("5"), "5");
        update.order.symbol = "MSFT".into();
        update.order.qty = Some("5".into());
        let Reaction::Report(updates) = on_trade_update(&tracked, &update) else { panic!() };
        assert!(matches!(&updates[..], [BrokerUpdate::Discrepancy { .. }]));
    }

    #[test]
    fn reconciliation_submits_what_the_broker_never_got() {
        assert_eq!(reconcile_order(&Tracked::new(job(10)), None, &[]), vec![Step::Submit]);
    }

    #[test]
    fn reconciliation_books_missed_fills_once_from_activities_then_the_ending() {
        // The log booked the first 4 shares; the broker filled 7 and then canceled.
        let tracked = Tracked { booked: Qty(4), ..submitted(10) };
        let activities = [fill("a-2", 3, 7), fill("a-1", 4, 4)];
        let steps = reconcile_order(&tracked, Some(&order("canceled", "10", "7")), &activities);
        assert_eq!(
            steps,
            vec![
                Step::Report(fill_update(&tracked, &fill("a-2", 3, 7))),
                Step::Report(BrokerUpdate::Canceled {
                    account_id: "a1".into(),
                    order_id: Uuid::from_u128(1),
                    reason: "canceled at alpaca".into()
                }),
            ]
        );
        // Nothing missed: nothing to say.
        let tracked = Tracked { booked: Qty(7), ..tracked };
        assert!(reconcile_order(&tracked, Some(&order("partially_filled", "10", "7")), &activities).is_empty());
    }

    #[test]
    fn reconciliation_reports_an_unreported_acceptance() {
        let steps = reconcile_order(&Tracked::new(job(10)), Some(&order("accepted", "10", "0")), &[]);
        assert_eq!(
            steps,
            vec![Step::Report(BrokerUpdate::Accepted {
                account_id: "a1".into(),
                order_id: Uuid::from_u128(1),
                broker_order_id: "b-1".into()
            })]
        );
    }

    #[test]
    fn reconciliation_records_what_it_cannot_explain() {
        let tracked = submitted(10);
        let cases = [
            (order("filled", "12", "12"), "is for 12 shares"),
            (Order { side: "sell".into(), ..order("new", "10", "0") }, "the log has buy AAPL"),
            (order("partially_filled", "10", "2"), "the broker only 2"),
        ];
        for (broker, expected) in cases {
            let tracked = Tracked { booked: Qty(3), ..tracked.clone() };
            let steps = reconcile_order(&tracked, Some(&broker), &[]);
            assert!(
                steps.iter().any(|s| matches!(s, Step::Report(BrokerUpdate::Discrepancy { description, .. }) if description.contains(expected))),
                "{expected}: {steps:?}"
            );
            assert!(!steps.iter().any(|s| matches!(s, Step::Report(BrokerUpdate::Filled { .. }))));
        }
        // Activities that do not start where the log ends: wait for them, book nothing.
        let steps = reconcile_order(&tracked, Some(&order("filled", "10", "10")), &[fill("a-9", 4, 10)]);
        assert!(steps.is_empty(), "{steps:?}");
    }
}
