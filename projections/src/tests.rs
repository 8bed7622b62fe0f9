//! The projector on hand-made events.

use tape_events::*;
use uuid::Uuid;

use super::*;

fn at(text: &str) -> Timestamp {
    Timestamp::parse(&format!("2024-03-04T{text}:00Z")).unwrap()
}

fn feed(projector: &mut Projector, events: &[Event]) -> Vec<Change> {
    let mut out = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let stamped = Stamped { at: at("14:36"), event: event.clone() };
        let n = i64::try_from(i).unwrap() + 1;
        let reference = EventRef {
            position: n,
            event_id: Uuid::from_u128(n.unsigned_abs().into()),
            stream_id: "account-a",
            config_hash: Some("h"),
            stamped: &stamped,
        };
        projector.project(&reference, TableSet::ALL, &mut out);
    }
    out
}

fn fill(order_id: Uuid, fill_id: &str, side: Side, qty: u64, price: &str) -> Event {
    Event::OrderFilled(OrderFilled {
        order_id,
        fill_id: fill_id.into(),
        ticker: "AAA".into(),
        side,
        qty: Qty(qty),
        price: price.parse().unwrap(),
    })
}

fn placed(order_id: Uuid, side: Side, qty: u64) -> Event {
    Event::OrderPlaced(OrderPlaced {
        order_id,
        recommendation_id: None,
        ticker: "AAA".into(),
        side,
        qty: Qty(qty),
        reason: OrderReason::Entry,
    })
}

#[test]
fn a_decision_row_carries_the_checks_and_steps_of_its_recommendation() {
    let check = |id: &str, name| {
        Event::PreTradeCheckEvaluated(PreTradeCheckEvaluated {
            recommendation_id: id.into(),
            check: name,
            passed: true,
            detail: serde_json::json!({}),
        })
    };
    let decision = |id: &str| {
        Event::TradingDecisionRecorded(TradingDecisionRecorded {
            recommendation_id: id.into(),
            ticker: Some("AAA".into()),
            side: Some("buy".into()),
            decision: Outcome::Skip,
            is_final: false,
            skip_reason: Some(SkipReason::Check(CheckName::Confidence)),
            shares: None,
            dollar_amount: None,
            price: None,
            risk_tier: RiskTier::Conservative,
        })
    };
    let tick = Event::SchedulerTick(SchedulerTick { tick: TickKind::Poll });
    let events = [
        tick,
        check("r-1", CheckName::CircuitBreaker),
        check("r-1", CheckName::TradingWindow),
        decision("r-1"),
        check("r-2", CheckName::CircuitBreaker),
        decision("r-2"),
    ];
    let mut projector = Projector::new();
    let out = feed(&mut projector, &events);
    let rows: Vec<&DecisionRow> = out
        .iter()
        .filter_map(|c| match c {
            Change::Decision(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].checks.as_array().unwrap().len(), 2);
    assert_eq!(rows[1].checks.as_array().unwrap().len(), 1);
    assert_eq!(rows[0].checks[1]["check"], "trading_window");
    assert_eq!(rows[0].skip_reason.as_deref(), Some("confidence"));
    assert!(projector.between_steps());
}

#[test]
fn fills_move_orders_and_positions_like_the_fold() {
    let buy = Uuid::from_u128(100);
    let sell = Uuid::from_u128(200);
    let events = [
        placed(buy, Side::Buy, 3),
        fill(buy, "f1", Side::Buy, 1, "10.00"),
        fill(buy, "f2", Side::Buy, 2, "10.01"),
        placed(sell, Side::Sell, 3),
        fill(sell, "f3", Side::Sell, 3, "11.00"),
    ];
    let mut projector = Projector::new();
    let out = feed(&mut projector, &events);
    let positions: Vec<&Change> = out.iter().filter(|c| c.table() == Table::Positions).collect();
    match positions[1] {
        Change::Position(p) => {
            assert_eq!(p.qty, 3);
            assert_eq!(p.avg_cost.to_string(), "10.0067");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(positions[2], Change::PositionClosed { .. }));
    let last_buy_order = out
        .iter()
        .filter_map(|c| match c {
            Change::Order(o) if o.order_id == buy => Some(o),
            _ => None,
        })
        .next_back()
        .unwrap();
    assert_eq!(last_buy_order.status, OrderStatus::Filled);
    assert_eq!(last_buy_order.filled_qty, 3);
    assert_eq!(out.iter().filter(|c| c.table() == Table::Fills).count(), 3);
    assert!(projector.open_orders.is_empty());
}

#[test]
fn masked_tables_get_no_changes_and_other_streams_none_at_all() {
    let mut projector = Projector::new();
    let stamped = Stamped { at: at("14:36"), event: placed(Uuid::from_u128(1), Side::Buy, 1) };
    let mut out = Vec::new();
    let reference = EventRef {
        position: 1,
        event_id: Uuid::from_u128(9),
        stream_id: "account-a",
        config_hash: None,
        stamped: &stamped,
    };
    projector.project(&reference, TableSet::only(Table::Fills), &mut out);
    assert!(out.is_empty());
    let other = EventRef { stream_id: "smoke-x", ..reference };
    projector.project(&other, TableSet::ALL, &mut out);
    assert!(out.is_empty());
    assert_eq!(TableSet::only(Table::Positions).event_types(), vec!["OrderFilled"]);
}
