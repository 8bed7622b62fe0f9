//! SPEC 5 and 6: stop-losses, each breaker, emergency liquidation, fills and trade
//! closes, the paper fill model, and inputs that must not be recorded.

use tape_commands::{paper, InputError};
use tape_events::*;

use crate::harness::*;

fn held() -> Given {
    given().at(t("14:40")).holding("AAA", 30, "100.00").at(t("14:50"))
}

fn quote(ticker: &str, p: &str) -> QuoteObserved {
    QuoteObserved { ticker: ticker.into(), price: price(p) }
}

#[test]
fn single_position_trips_and_sells_once_and_not_at_the_rounded_boundary() {
    let then = held().when(quote("AAA", "84.00"));
    assert_eq!(then.types(), vec!["CircuitBreakerTripped", "OrderPlaced"]);
    let trip = then
        .find(|e| match e {
            Event::CircuitBreakerTripped(b) => Some(b),
            _ => None,
        })
        .unwrap();
    assert_eq!((trip.kind, trip.ticker.as_deref()), (BreakerKind::SinglePosition, Some("AAA")));
    assert_eq!(trip.until, Some(ts("2024-03-06T14:50:00Z")));
    assert_eq!(then.orders()[0].reason, OrderReason::Breaker);
    assert_eq!(then.orders()[0].recommendation_id, None);
    // Not again while active.
    let g = then.and().at(t("14:51"));
    assert!(g.when(quote("AAA", "80.00")).decisions().is_empty());
    // −0.1500 does not trip at 0.15: the stop-loss fires instead.
    let then = held().when(quote("AAA", "85.00"));
    assert_eq!(then.types(), vec!["StopLossTriggered", "OrderPlaced"]);
}

#[test]
fn single_position_trips_with_a_sell_open_but_places_no_second_sell() {
    let g = held().order("AAA", Side::Sell, 30, OrderReason::Exit).at(t("14:51"));
    let then = g.when(quote("AAA", "84.00"));
    assert_eq!(then.types(), vec!["CircuitBreakerTripped"]);
}

#[test]
fn stop_loss_at_the_stop_price_and_only_without_an_open_sell() {
    assert!(held().when(quote("AAA", "95.01")).decisions().is_empty());
    let then = held().when(quote("AAA", "95.00"));
    let stop = then
        .find(|e| match e {
            Event::StopLossTriggered(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (stop.price.to_string(), stop.stop_price.to_string(), stop.qty),
        ("95.00".into(), "95.00".into(), Qty(30))
    );
    assert_eq!(then.orders()[0].reason, OrderReason::StopLoss);
    let g = held().order("AAA", Side::Sell, 30, OrderReason::Exit);
    assert!(g.when(quote("AAA", "94.00")).decisions().is_empty());
}

#[test]
fn stops_follow_the_current_tier() {
    // Moderate stop_loss_pct 0.07 → stop 93.00: 95.00 no longer triggers.
    let g = held().event(RiskTierChanged {
        from: RiskTier::Conservative,
        to: RiskTier::Moderate,
        reason: TierChangeReason::Promote,
    });
    assert!(g.when(quote("AAA", "95.00")).decisions().is_empty());
}

#[test]
fn the_third_stop_loss_in_the_window_trips_volatility_inclusively() {
    let g =
        given().at(t("14:40")).holding("AAA", 30, "100.00").holding("BBB", 30, "100.00").holding("CCC", 30, "100.00");
    let g = g.at(t("14:50")).input(quote("AAA", "95.00")).at(t("14:55")).input(quote("BBB", "95.00"));
    let then = g.at(t("15:20")).when(quote("CCC", "95.00"));
    assert_eq!(then.types(), vec!["StopLossTriggered", "OrderPlaced", "CircuitBreakerTripped"]);
    let trip = then
        .find(|e| match e {
            Event::CircuitBreakerTripped(b) => Some(b),
            _ => None,
        })
        .unwrap();
    assert_eq!((trip.kind, trip.until), (BreakerKind::Volatility, Some(t("17:20"))));

    let g =
        given().at(t("14:40")).holding("AAA", 30, "100.00").holding("BBB", 30, "100.00").holding("CCC", 30, "100.00");
    let g = g.at(t("14:50")).input(quote("AAA", "95.00")).at(t("14:55")).input(quote("BBB", "95.00"));
    let then = g.at(ts("2024-03-04T15:20:01Z")).when(quote("CCC", "95.00"));
    assert_eq!(then.types(), vec!["StopLossTriggered", "OrderPlaced"]);
}

#[test]
fn daily_loss_trips_once_per_exchange_day_against_the_last_close() {
    let g = given_with(|c| c.daily_loss_pct = dec("0.001")).at(t("14:40")).holding("AAA", 30, "100.00").at(t("14:50"));
    let then = g.when(quote("AAA", "96.00"));
    assert_eq!(then.types(), vec!["CircuitBreakerTripped"]);
    let trip = then
        .find(|e| match e {
            Event::CircuitBreakerTripped(b) => Some(b),
            _ => None,
        })
        .unwrap();
    assert_eq!((trip.kind, trip.until), (BreakerKind::DailyLoss, Some(t("16:50"))));
    let g = then.and().at(t("14:55"));
    assert!(g.when(quote("AAA", "95.50")).decisions().is_empty());
}

#[test]
fn emergency_liquidates_by_ticker_skipping_open_sells_then_moves_half_the_pool_to_reserve() {
    let g = given_with(|c| c.emergency_drawdown_pct = dec("0.001"))
        .at(t("14:40"))
        .holding("BBB", 30, "100.00")
        .holding("AAA", 30, "100.00")
        .holding("CCC", 10, "100.00")
        .order("CCC", Side::Sell, 10, OrderReason::Exit)
        .at(t("14:50"));
    let then = g.when(quote("AAA", "96.00"));
    assert_eq!(then.types(), vec!["CircuitBreakerTripped", "OrderPlaced", "OrderPlaced", "ReserveTransferred"]);
    let tickers: Vec<&str> = then.orders().iter().map(|o| o.ticker.as_str()).collect();
    assert_eq!(tickers, vec!["AAA", "BBB"]);
    assert!(then.orders().iter().all(|o| o.reason == OrderReason::Liquidation));
    let transfer = then
        .find(|e| match e {
            Event::ReserveTransferred(r) => Some(r),
            _ => None,
        })
        .unwrap();
    // Equity 93000 + 2880 + 3000 + 1000 = 99880 → 0.50 × 99880.
    assert_eq!((transfer.kind, transfer.amount.to_string()), (ReserveKind::EmergencyLiquidation, "49940.00".into()));
    let trip = then
        .find(|e| match e {
            Event::CircuitBreakerTripped(b) => Some(b),
            _ => None,
        })
        .unwrap();
    assert_eq!((trip.kind, trip.until), (BreakerKind::Emergency, None));
}

#[test]
fn a_reset_clears_matching_breakers_and_rebases_the_high_water_mark_for_emergency() {
    let g = held()
        .event(CircuitBreakerTripped { kind: BreakerKind::Emergency, ticker: None, until: None })
        .event(CircuitBreakerTripped {
            kind: BreakerKind::SinglePosition,
            ticker: Some("AAA".into()),
            until: Some(t("23:00")),
        })
        .quote("AAA", "90.00");
    let then = g.when(BreakerResetRequested {
        kind: BreakerKind::Emergency,
        ticker: None,
        actor: "ops".into(),
        reason: "reviewed".into(),
    });
    let cleared = then
        .find(|e| match e {
            Event::CircuitBreakerCleared(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(cleared.high_water_mark.map(|m| m.to_string()).as_deref(), Some("99700.00"));
    assert_eq!(then.engine.state().high_water_mark.to_string(), "99700.00");
    assert_eq!(then.engine.state().breakers.len(), 1);
    // A reset that matches nothing is still recorded.
    let then = given().when(BreakerResetRequested {
        kind: BreakerKind::Volatility,
        ticker: None,
        actor: "ops".into(),
        reason: "none".into(),
    });
    assert!(then.recorded() && then.decisions().is_empty());
}

#[test]
fn fills_book_cash_average_cost_and_close_trades_with_the_exit_average() {
    let g = given().at(t("14:40")).holding("AAA", 10, "100.00").holding("AAA", 20, "103.00");
    let position = &g.state().positions["AAA"];
    assert_eq!((position.qty, position.avg_cost.to_string()), (Qty(30), "102.0000".into()));
    let g = g.order("AAA", Side::Sell, 30, OrderReason::Exit).at(t("14:50"));
    let order = g.state().open_orders[0].clone();
    let fill = |id: &str, qty: u64, p: &str| OrderFilled {
        order_id: order.order_id,
        fill_id: id.into(),
        ticker: "AAA".into(),
        side: Side::Sell,
        qty: Qty(qty),
        price: price(p),
    };
    let g = g.input(fill("f1", 10, "110.00"));
    assert_eq!(g.state().positions["AAA"].qty, Qty(20));
    // The same fill id again changes nothing and is not recorded.
    let then = g.clone().at(t("14:51")).when(fill("f1", 10, "110.00"));
    assert!(!then.recorded());
    let then = g.at(t("14:51")).when(fill("f2", 20, "104.00"));
    assert_eq!(then.types(), vec!["TradeClosed", "ReserveTransferred"]);
    let closed = then
        .find(|e| match e {
            Event::TradeClosed(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(closed.qty, Qty(30));
    assert_eq!(closed.entry_price.to_string(), "102.0000");
    assert_eq!(closed.exit_price.to_string(), "106.0000");
    assert_eq!(closed.realized_pnl.to_string(), "120.00");
    assert_eq!(then.engine.state().cash.to_string(), "100120.00");
    assert_eq!(then.engine.state().reserve.to_string(), "24.00");
}

#[test]
fn bad_broker_input_is_refused_not_recorded() {
    let g = held().order("AAA", Side::Sell, 30, OrderReason::Exit);
    let order = g.state().open_orders[0].clone();
    let base = OrderFilled {
        order_id: order.order_id,
        fill_id: "f".into(),
        ticker: "AAA".into(),
        side: Side::Sell,
        qty: Qty(30),
        price: price("99.00"),
    };
    let unknown = OrderFilled { order_id: uuid::Uuid::from_u128(7), ..base.clone() };
    assert!(matches!(held().when(unknown).outcome, Err(InputError::FillForUnknownOrder { .. })));
    let g2 = || held().order("AAA", Side::Sell, 30, OrderReason::Exit);
    let too_many = OrderFilled { qty: Qty(31), ..base.clone() };
    assert!(matches!(g2().when(too_many).outcome, Err(InputError::FillMismatch { .. })));
    let wrong_side = OrderFilled { side: Side::Buy, ..base.clone() };
    assert!(matches!(g2().when(wrong_side).outcome, Err(InputError::FillMismatch { .. })));
    let zero_price = OrderFilled { price: price("0"), ..base };
    assert!(matches!(g2().when(zero_price).outcome, Err(InputError::Price { .. })));
    let then = given().when(QuoteObserved { ticker: "aapl".into(), price: price("1") });
    assert_eq!(then.outcome.unwrap_err().to_string(), "invalid ticker \"aapl\": must match ^[A-Z][A-Z0-9.-]{0,9}$");
    assert!(then.events.is_empty());
}

#[test]
fn rejected_and_canceled_orders_free_the_ticker() {
    let g = held().order("AAA", Side::Sell, 30, OrderReason::Exit);
    let id = g.state().open_orders[0].order_id;
    let then = g.when(OrderRejected { order_id: id, reason: "insufficient buying power".into() });
    assert!(then.recorded() && then.engine.state().open_orders.is_empty());
    let then = held().when(OrderCanceled { order_id: id, reason: "expired".into() });
    assert!(!then.recorded(), "a cancel for an order that is not open changes nothing");
}

#[test]
fn the_paper_broker_fills_at_the_next_quote_with_half_even_slippage() {
    let g = given_with(|c| c.slippage_bps = dec("10")).at(t("14:35")).quote("AAA", "100.00").order(
        "AAA",
        Side::Buy,
        30,
        OrderReason::Entry,
    );
    let state = g.state();
    assert!(paper::next_fill(state, "AAA", price("100.00"), t("14:35")).is_none(), "not at the placing instant");
    let fill = paper::next_fill(state, "AAA", price("100.00"), t("14:40")).unwrap();
    assert_eq!((fill.qty, fill.price.to_string()), (Qty(30), "100.10".into()));
    assert_eq!(paper::fill_price(price("95.00"), Side::Sell, &state.config).to_string(), "94.90");
    assert!(paper::next_fill(state, "BBB", price("1.00"), t("14:40")).is_none());
}
