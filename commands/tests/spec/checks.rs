//! SPEC 4: step 0, checks a–f, transient re-evaluation, the sell and buy paths.

use tape_events::*;

use crate::harness::*;

fn ready() -> Given {
    given().security("AAA", Some("Tech"), None).at(t("14:35")).quote("AAA", "100.00").at(t("14:36"))
}

#[test]
fn a_valid_buy_passes_six_checks_and_eight_steps_and_places_an_order() {
    let then = ready().when_rec("r", "AAA", "buy", "0.75");
    assert_eq!(then.checks().iter().filter(|c| c.1).count(), 6);
    assert_eq!(then.steps().len(), 8);
    then.acts(30, "3000.00");
    let order = then.orders()[0];
    assert_eq!((order.side, order.qty, order.reason), (Side::Buy, Qty(30), OrderReason::Entry));
    assert_eq!(order.recommendation_id.as_deref(), Some("r"));
    assert!(!order.order_id.is_nil());
    assert_eq!(then.types().last(), Some(&"OrderPlaced"));
}

#[test]
fn step_0_rejects_each_bad_field_in_order_with_no_check_events() {
    for (ticker, action, confidence, mode, generated_at, reason) in [
        ("aapl", "hold", "2", "x", "y", "invalid:ticker"),
        ("AAA", "BUY", "0.8", "paper_eligible", "2024-03-04T14:35:00Z", "invalid:action"),
        ("AAA", "buy", "1.01", "paper_eligible", "2024-03-04T14:35:00Z", "invalid:confidence"),
        ("AAA", "buy", "8e-1", "paper_eligible", "2024-03-04T14:35:00Z", "invalid:confidence"),
        ("AAA", "buy", "0.8", "research_only", "2024-03-04T14:35:00Z", "invalid:mode"),
        ("AAA", "buy", "0.8", "paper_eligible", "yesterday", "invalid:generated_at"),
    ] {
        let mut r = rec("r", ticker, action, confidence, generated_at);
        r.mode = Some(mode.into());
        let then = ready().when(r);
        assert_eq!(then.types(), vec!["TradingDecisionRecorded"], "{reason}");
        then.skips(reason, true);
        assert_eq!(then.decision().ticker.as_deref(), Some(ticker));
        assert_eq!(then.decision().side.as_deref(), Some(action));
    }
}

#[test]
fn a_live_account_takes_only_live_eligible() {
    let g =
        || given_account(AccountMode::Live, "100000.00", |_| {}).at(t("14:35")).quote("AAA", "100.00").at(t("14:36"));
    g().when_rec("p", "AAA", "buy", "0.8").skips("invalid:mode", true);
    let mut live = rec("l", "AAA", "buy", "0.75", "2024-03-04T14:35:00Z");
    live.mode = Some("live_eligible".into());
    g().when(live).acts(30, "3000.00");
}

#[test]
fn staleness_is_inclusive_at_exactly_max_age() {
    ready().when(rec("old", "AAA", "buy", "0.8", "2024-03-04T12:36:00Z")).skips("stale", true);
    ready().when(rec("ok", "AAA", "buy", "0.75", "2024-03-04T12:36:01Z")).acts(30, "3000.00");
}

#[test]
fn recommendations_before_the_account_opens_are_dropped() {
    let g = unopened();
    let then = g.when(rec("r", "AAA", "buy", "0.8", "2024-03-04T14:35:00Z"));
    assert!(!then.recorded());
    assert!(then.events.is_empty());
}

#[test]
fn a_breaker_blocks_buys_transiently_but_not_sells_and_single_position_only_its_ticker() {
    let g = ready().holding("BBB", 10, "50.00").event(CircuitBreakerTripped {
        kind: BreakerKind::SinglePosition,
        ticker: Some("AAA".into()),
        until: Some(t("16:00")),
    });
    let then = g.when_rec("x", "AAA", "buy", "0.8");
    then.skips("circuit_breaker", false);
    assert_eq!(then.checks(), vec![(CheckName::CircuitBreaker, false)]);

    let g = ready().holding("BBB", 10, "50.00").event(CircuitBreakerTripped {
        kind: BreakerKind::SinglePosition,
        ticker: Some("BBB".into()),
        until: Some(t("16:00")),
    });
    g.when_rec("y", "AAA", "buy", "0.75").acts(30, "3000.00");

    let g = ready().holding("BBB", 10, "50.00").event(CircuitBreakerTripped {
        kind: BreakerKind::Volatility,
        ticker: None,
        until: Some(t("16:00")),
    });
    let then = g.when_rec("s", "BBB", "sell", "0.8");
    assert_eq!(then.check_detail(CheckName::CircuitBreaker), serde_json::json!({"not_applicable_to_sell": true}));
    then.acts(10, "500.00");
}

#[test]
fn a_breaker_is_inactive_from_its_until() {
    let g =
        ready().event(CircuitBreakerTripped { kind: BreakerKind::DailyLoss, ticker: None, until: Some(t("14:36")) });
    g.when_rec("r", "AAA", "buy", "0.75").acts(30, "3000.00");
}

#[test]
fn the_trading_window_is_half_open_and_applies_to_sells() {
    let g = given().at(t("20:30")).quote("AAA", "100.00");
    g.at(ts("2024-03-04T20:44:59Z")).when_rec("in", "AAA", "buy", "0.75").acts(30, "3000.00");
    let g = given().at(t("20:40")).holding("AAA", 10, "100.00");
    g.at(t("20:45")).when_rec("out", "AAA", "sell", "0.8").skips("trading_window", false);
    let g = given().at(t("14:00")).quote("AAA", "100.00");
    g.at(t("14:34")).when_rec("early", "AAA", "buy", "0.8").skips("trading_window", false);
}

#[test]
fn confidence_is_transient_and_inclusive_and_applies_to_sells() {
    ready().when_rec("lo", "AAA", "buy", "0.74").skips("confidence", false);
    ready().when_rec("eq", "AAA", "buy", "0.75").acts(30, "3000.00");
    ready().holding("AAA", 5, "100.00").when_rec("s", "AAA", "sell", "0.5").skips("confidence", false);
}

#[test]
fn dedupe_consumes_an_id_and_a_redelivery_fails_d() {
    let then = ready()
        .input(rec("r", "AAA", "buy", "0.8", "2024-03-04T14:35:00Z"))
        .at(t("14:37"))
        .when_rec("r", "AAA", "buy", "0.8");
    then.skips("dedupe", true);
    assert_eq!(
        then.checks(),
        vec![
            (CheckName::CircuitBreaker, true),
            (CheckName::TradingWindow, true),
            (CheckName::Confidence, true),
            (CheckName::Dedupe, false)
        ]
    );
}

#[test]
fn a_redelivered_pending_id_replaces_the_entry_and_moves_to_the_back() {
    let g = ready()
        .at(t("14:36"))
        .input(rec("a", "AAA", "buy", "0.70", "2024-03-04T14:35:00Z"))
        .input(rec("b", "AAA", "buy", "0.70", "2024-03-04T14:35:00Z"))
        .input(rec("a", "AAA", "buy", "0.60", "2024-03-04T14:35:30Z"));
    let order: Vec<&str> = g.state().pending.iter().map(|p| p.recommendation.id.as_str()).collect();
    assert_eq!(order, vec!["b", "a"]);
}

#[test]
fn declining_positions_compares_strictly_after_rounding() {
    let g = ready().holding("BBB", 30, "100.00").holding("CCC", 30, "100.00").at(t("14:45"));
    // -0.0300 is declining; -0.0200 is not (< -0.02 is strict): 1/2 = 0.5000, not > 0.50.
    let then = g.quote("BBB", "97.00").quote("CCC", "98.00").at(t("14:46")).when_rec("c", "AAA", "buy", "0.8");
    assert_eq!(then.checks()[4], (CheckName::DecliningPositions, true));
    let g = ready().holding("BBB", 30, "100.00").holding("CCC", 30, "100.00").at(t("14:45"));
    let then = g.quote("BBB", "97.00").quote("CCC", "97.99").at(t("14:46")).when_rec("d", "AAA", "buy", "0.8");
    then.skips("declining_positions", true);
    assert_eq!(then.check_detail(CheckName::DecliningPositions)["fraction"], "1.0000");
    // Sells pass e.
    let g = ready().holding("BBB", 30, "100.00").at(t("14:45")).quote("BBB", "90.00").at(t("14:46"));
    g.when_rec("s", "BBB", "sell", "0.8").acts(30, "2700.00");
}

#[test]
fn max_open_positions_counts_positions_and_unheld_open_buys() {
    let g = given_with(|c| c.max_open_positions = 2)
        .security("AAA", Some("Tech"), None)
        .at(t("14:35"))
        .holding("AAA", 30, "100.00")
        .quote("BBB", "100.00")
        .quote("CCC", "100.00")
        .order("BBB", Side::Buy, 30, OrderReason::Entry)
        .at(t("14:36"));
    g.when_rec("c", "CCC", "buy", "0.8").skips("max_open_positions", true);
    let g = given_with(|c| c.max_open_positions = 2)
        .security("AAA", Some("Tech"), None)
        .at(t("14:35"))
        .holding("AAA", 30, "100.00")
        .quote("BBB", "100.00")
        .order("BBB", Side::Buy, 30, OrderReason::Entry)
        .at(t("14:36"));
    // Held ticker passes f (then sizes); an open buy passes f, then entry_pending.
    g.when_rec("a2", "AAA", "buy", "0.75").acts(20, "2000.00");
    let g = given_with(|c| c.max_open_positions = 2)
        .at(t("14:35"))
        .holding("AAA", 30, "100.00")
        .quote("BBB", "100.00")
        .order("BBB", Side::Buy, 30, OrderReason::Entry)
        .at(t("14:36"));
    g.when_rec("b2", "BBB", "buy", "0.75").skips("entry_pending", true);
}

#[test]
fn sells_need_a_position_and_no_open_sell_and_are_priced_at_the_last_quote() {
    ready().when_rec("s", "BBB", "sell", "0.8").skips("no_position", true);
    let g = ready().holding("BBB", 30, "100.00").order("BBB", Side::Sell, 30, OrderReason::StopLoss);
    g.when_rec("s", "BBB", "sell", "0.8").skips("exit_pending", true);
    let g = ready().holding("BBB", 30, "100.00").at(t("09:00")).quote("BBB", "101.00").at(t("14:36"));
    let then = g.when_rec("s", "BBB", "sell", "0.8");
    then.acts(30, "3030.00");
    assert_eq!(then.decision().price.unwrap().to_string(), "101.00");
    assert_eq!(then.orders()[0].reason, OrderReason::Exit);
}

#[test]
fn a_buy_needs_a_quote_no_older_than_quote_max_age() {
    let g = given().at(t("14:35")).quote("AAA", "100.00").quote("BBB", "100.00");
    g.at(t("14:50")).when_rec("a", "AAA", "buy", "0.75").acts(30, "3000.00");
    let g = given().at(t("14:35")).quote("AAA", "100.00");
    let then = g.at(ts("2024-03-04T14:50:01Z")).when_rec("b", "AAA", "buy", "0.8");
    then.skips("no_price", true);
    assert!(then.steps().is_empty());
    given().at(t("14:36")).when_rec("c", "CCC", "buy", "0.8").skips("no_price", true);
}

#[test]
fn a_poll_records_an_evaluation_only_when_its_outcome_changes() {
    let g = given().at(t("14:10")).quote("AAA", "100.00").input(rec("r", "AAA", "buy", "0.70", "2024-03-04T14:00:00Z"));
    // Same outcome (trading_window) at 14:11: nothing, and the poll is not recorded.
    let then = g.at(t("14:11")).when_tick(TickKind::Poll);
    assert!(!then.recorded() && then.events.is_empty());
    let g = then.and().at(t("14:35"));
    // 09:35 ET: the window passes, confidence fails: a new outcome is recorded.
    let then = g.when_tick(TickKind::Poll);
    assert!(then.recorded());
    then.skips("confidence", false);
    // Stale at a later poll: final, without check events.
    let g = then.and().at(t("16:00"));
    let then = g.when_tick(TickKind::Poll);
    assert_eq!(then.types(), vec!["TradingDecisionRecorded"]);
    then.skips("stale", true);
    assert!(then.engine.state().pending.is_empty());
}

#[test]
fn a_poll_evaluates_pending_recommendations_in_capture_order() {
    let g = given()
        .at(t("14:00"))
        .quote("AAA", "100.00")
        .quote("BBB", "100.00")
        .input(rec("first", "BBB", "buy", "0.8", "2024-03-04T14:00:00Z"))
        .input(rec("second", "AAA", "buy", "0.8", "2024-03-04T14:00:00Z"))
        .at(t("14:35"))
        .quote("AAA", "100.00")
        .quote("BBB", "100.00");
    let then = g.when_tick(TickKind::Poll);
    let ids: Vec<&str> = then.orders().iter().map(|o| o.recommendation_id.as_deref().unwrap()).collect();
    assert_eq!(ids, vec!["first", "second"]);
    assert_ne!(then.orders()[0].order_id, then.orders()[1].order_id);
}
