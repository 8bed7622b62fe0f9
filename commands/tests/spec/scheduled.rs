//! SPEC 7: snapshots, the close, the reserve pool and the risk tier controller.

use tape_events::*;

use crate::harness::*;

fn snapshot(then: &Then) -> PortfolioSnapshotTaken {
    then.find(|e| match e {
        Event::PortfolioSnapshotTaken(s) => Some(s),
        _ => None,
    })
    .unwrap()
    .clone()
}

#[test]
fn a_snapshot_values_the_portfolio() {
    let g = given().at(t("14:40")).holding("AAA", 30, "100.00").quote("AAA", "101.00").at(t("14:45"));
    let then = g.when_tick(TickKind::Snapshot);
    let s = snapshot(&then);
    assert_eq!(s.kind, SnapshotKind::Intraday);
    assert_eq!((s.cash.to_string(), s.equity.to_string(), s.positions), ("97000.00".into(), "100030.00".into(), 1));
    // Heat 30 × (101 − 95.00) = 180.00.
    assert_eq!(s.heat.to_string(), "180.00");
}

#[test]
fn the_close_becomes_the_next_days_start_equity() {
    let g = given().at(t("14:40")).holding("AAA", 30, "100.00").quote("AAA", "99.50").at(t("21:00"));
    let then = g.when_tick(TickKind::Close);
    assert_eq!(snapshot(&then).kind, SnapshotKind::Close);
    assert_eq!(then.engine.state().day_start_equity.to_string(), "99985.00");
}

#[test]
fn a_profitable_close_siphons_and_the_rebalance_moves_part_of_the_new_high() {
    let g = given().at(t("14:40")).holding("AAA", 30, "100.00").quote("AAA", "110.00").at(t("21:10"));
    let then = g.when_tick(TickKind::Rebalance);
    let transfer = then
        .find(|e| match e {
            Event::ReserveTransferred(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!((transfer.kind, transfer.amount.to_string()), (ReserveKind::HighWaterRebalance, "90.00".into()));
    assert_eq!(then.engine.state().high_water_mark.to_string(), "100300.00");
    // Not above the hwm: the tick is recorded with no transfer.
    let then = given().at(t("21:10")).when_tick(TickKind::Rebalance);
    assert!(then.recorded() && then.decisions().is_empty());
}

#[test]
fn a_manual_release_is_capped_at_the_balance_and_always_recorded() {
    let g = given().event(ReserveTransferred {
        kind: ReserveKind::ProfitSiphon,
        amount: money("100.00"),
        balance_after: money("100.00"),
    });
    let then =
        g.when(ReserveReleaseRequested { amount: money("250.00"), actor: "ops".into(), reason: "withdraw".into() });
    let transfer = then
        .find(|e| match e {
            Event::ReserveTransferred(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!((transfer.amount.to_string(), transfer.balance_after.to_string()), ("100.00".into(), "0.00".into()));
    let then =
        given().when(ReserveReleaseRequested { amount: money("5.00"), actor: "ops".into(), reason: "empty".into() });
    assert!(then.recorded() && then.decisions().is_empty());
    let then =
        given().when(ReserveReleaseRequested { amount: money("-5.00"), actor: "ops".into(), reason: "bad".into() });
    assert!(then.outcome.is_err());
}

/// Ten close snapshots from a list of equities, one per weekday from 2024-06-03.
fn with_closes(mut g: Given, equities: &[&str]) -> Given {
    let mut date = chrono::NaiveDate::from_ymd_opt(2024, 6, 3).unwrap();
    for equity in equities {
        while matches!(chrono::Datelike::weekday(&date), chrono::Weekday::Sat | chrono::Weekday::Sun) {
            date = date.succ_opt().unwrap();
        }
        let at = ts(&format!("{date}T20:00:00Z"));
        let e = money(equity);
        g = g.at(at).event(PortfolioSnapshotTaken {
            kind: SnapshotKind::Close,
            cash: e,
            equity: e,
            reserve: Money::zero(),
            active_pool: e,
            positions: 0,
            heat: Money::zero(),
            high_water_mark: e,
        });
        date = date.succ_opt().unwrap();
    }
    g
}

fn trades(mut g: Given, pnls: &[&str]) -> Given {
    for pnl in pnls {
        g = g.holding("WIN", 1, "100.00").order("WIN", Side::Sell, 1, OrderReason::Exit);
        let order = g.state().open_orders.last().unwrap().clone();
        let exit = (dec("100") + dec(pnl)).to_string();
        let fill_id = format!("f-{pnl}-{}", g.state().closed_trades.len());
        g = g.input(OrderFilled {
            order_id: order.order_id,
            fill_id,
            ticker: "WIN".into(),
            side: Side::Sell,
            qty: Qty(1),
            price: price(&exit),
        });
    }
    g
}

fn opened_june() -> Given {
    given().at(ts("2024-06-03T13:00:00Z"))
}

#[test]
fn with_fewer_than_ten_closes_the_evaluation_is_insufficient_history() {
    let g = with_closes(opened_june(), &["100000"; 9]).at(ts("2024-06-13T20:05:00Z"));
    let then = g.when_tick(TickKind::RiskTier);
    let p = then
        .find(|e| match e {
            Event::PerformanceEvaluated(p) => Some(p),
            _ => None,
        })
        .unwrap();
    assert_eq!((p.sharpe, p.max_drawdown, p.win_rate), (None, None, None));
    assert_eq!(p.reason.as_deref(), Some("insufficient_history"));
}

#[test]
fn strong_results_promote_after_five_days_and_losses_demote() {
    let rising = ["100000", "100100", "100200", "100300", "100400", "100500", "100500", "100500", "100500", "100500"];
    let g = trades(with_closes(opened_june(), &rising), &["10", "10", "10", "10", "10"]).at(ts("2024-06-14T20:05:00Z"));
    let then = g.when_tick(TickKind::RiskTier);
    let p = then
        .find(|e| match e {
            Event::PerformanceEvaluated(p) => Some(p),
            _ => None,
        })
        .unwrap();
    assert_eq!(p.sharpe.unwrap().to_string(), "16.7332");
    assert_eq!(p.win_rate.unwrap().to_string(), "1.0000");
    let change = then
        .find(|e| match e {
            Event::RiskTierChanged(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (change.from, change.to, change.reason),
        (RiskTier::Conservative, RiskTier::Moderate, TierChangeReason::Promote)
    );

    // The next day the same numbers cannot promote again (fewer than 5 days since).
    let g = then.and().at(ts("2024-06-17T20:05:00Z"));
    let then = g.when_tick(TickKind::RiskTier);
    assert!(then
        .find(|e| match e {
            Event::RiskTierChanged(c) => Some(c),
            _ => None,
        })
        .is_none());

    // A drawdown above 0.10 demotes.
    let falling = ["100000", "100000", "100000", "100000", "100000", "100000", "100000", "100000", "100000", "89000"];
    let g = with_closes(opened_june(), &falling)
        .event(RiskTierChanged {
            from: RiskTier::Conservative,
            to: RiskTier::Moderate,
            reason: TierChangeReason::Promote,
        })
        .at(ts("2024-06-14T20:05:00Z"));
    let then = g.when_tick(TickKind::RiskTier);
    let change = then
        .find(|e| match e {
            Event::RiskTierChanged(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!((change.to, change.reason), (RiskTier::Conservative, TierChangeReason::Demote));
    // Conservative cannot go lower: evaluated, no change.
    let g = with_closes(opened_june(), &falling).at(ts("2024-06-14T20:05:00Z"));
    assert_eq!(g.when_tick(TickKind::RiskTier).types(), vec!["PerformanceEvaluated"]);
}
