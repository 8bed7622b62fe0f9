//! Properties of the core over generated scenarios (STYLE: `prop_…` in `property_tests`).

#[cfg(test)]
mod property_tests {
    use proptest::prelude::*;
    use tape_commands::evaluate::{early_outcome, evaluate};
    use tape_commands::schedule::TickCursor;
    use tape_commands::valuation::{active_pool, available_cash, heat};
    use tape_commands::{fold, paper, Engine, Input, State};
    use tape_events::*;

    use crate::harness::{money, price, t};

    #[derive(Debug, Clone)]
    enum Step {
        Quote { ticker: usize, cents: u32 },
        Rec { ticker: usize, sell: bool, confidence: u8, redeliver: bool },
        Wait { minutes: u16 },
    }

    const TICKERS: [&str; 5] = ["AAA", "BBB", "CCC", "DDD", "EEE"];
    const SECTORS: [&str; 3] = ["Tech", "Health", "Energy"];

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0..TICKERS.len(), 5_000u32..15_000).prop_map(|(ticker, cents)| Step::Quote { ticker, cents }),
            3 => (0..TICKERS.len(), any::<bool>(), 40u8..=100, proptest::bool::weighted(0.1))
                .prop_map(|(ticker, sell, confidence, redeliver)| Step::Rec { ticker, sell, confidence, redeliver }),
            1 => (1u16..240).prop_map(|minutes| Step::Wait { minutes }),
        ]
    }

    /// Runs a generated scenario like `simulate` does and returns every recorded event.
    fn run(steps: &[Step]) -> (Vec<Stamped>, State) {
        let mut engine = Engine::default();
        let mut out = Vec::new();
        let mut sequence = 0u128;
        let mut next = |engine: &mut Engine, out: &mut Vec<Stamped>, stamped: Stamped| {
            // The poll's shortcut must agree with the full evaluation wherever it answers.
            for pending in &engine.state().pending {
                if let Some(early) = early_outcome(engine.state(), &pending.recommendation, stamped.at) {
                    assert_eq!(early, evaluate(engine.state(), &pending.recommendation, stamped.at).outcome);
                }
            }
            sequence += 1;
            engine.step(Input { id: uuid::Uuid::from_u128(sequence), stamped }, out).unwrap();
        };
        let mut at = t("13:00");
        next(
            &mut engine,
            &mut out,
            Stamped::new(
                at,
                AccountOpened { account_id: "p".into(), initial_cash: money("100000.00"), mode: AccountMode::Paper },
            ),
        );
        let config = Config::default();
        next(
            &mut engine,
            &mut out,
            Stamped::new(at, ConfigActivated { hash: config.hash(), config: Box::new(config.clone()) }),
        );
        for (i, ticker) in TICKERS.iter().enumerate() {
            next(
                &mut engine,
                &mut out,
                Stamped::new(
                    at,
                    SecurityUpdated {
                        ticker: (*ticker).into(),
                        sector: Some(SECTORS[i % 3].into()),
                        next_earnings_date: None,
                    },
                ),
            );
        }
        let mut cursor = TickCursor::after(at);
        let mut rec_ids = 0u32;
        for step in steps {
            at = at.plus(chrono::Duration::seconds(45));
            if let Step::Wait { minutes } = step {
                at = at.plus(chrono::Duration::minutes(i64::from(*minutes)));
            }
            while let Some(tick) = cursor.next_due(at, engine.state().has_pending(), &config) {
                next(&mut engine, &mut out, Stamped::new(tick.at, SchedulerTick { tick: tick.kind }));
            }
            match step {
                Step::Quote { ticker, cents } => {
                    let p = price(&format!("{}.{:02}", cents / 100, cents % 100));
                    while let Some(fill) = paper::next_fill(engine.state(), TICKERS[*ticker], p, at) {
                        next(&mut engine, &mut out, Stamped::new(at, fill));
                    }
                    next(
                        &mut engine,
                        &mut out,
                        Stamped::new(at, QuoteObserved { ticker: TICKERS[*ticker].into(), price: p }),
                    );
                }
                Step::Rec { ticker, sell, confidence, redeliver } => {
                    if !*redeliver || rec_ids == 0 {
                        rec_ids += 1;
                    }
                    let received = RecommendationReceived {
                        recommendation_id: format!("r{rec_ids}"),
                        ticker: Some(TICKERS[*ticker].into()),
                        action: Some(if *sell { "sell" } else { "buy" }.into()),
                        confidence: Some(format!("0.{confidence:02}").replace("0.100", "1.00")),
                        mode: Some("paper_eligible".into()),
                        generated_at: Some(at.minus(chrono::Duration::seconds(30)).to_string()),
                        source: None,
                    };
                    next(&mut engine, &mut out, Stamped::new(at, received));
                }
                Step::Wait { .. } => {}
            }
            cursor.advance_to(at);
        }
        // Long enough that every pending recommendation goes stale.
        let end = at.plus(chrono::Duration::hours(3));
        while let Some(tick) = cursor.next_due(end, engine.state().has_pending(), &config) {
            next(&mut engine, &mut out, Stamped::new(tick.at, SchedulerTick { tick: tick.kind }));
        }
        (out, engine.into_state())
    }

    fn bytes(events: &[Stamped]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            e.write_json_line(&mut out);
            out.push(b'\n');
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        #[test]
        fn prop_the_same_input_twice_gives_byte_identical_output(steps in proptest::collection::vec(step(), 1..120)) {
            let (a, _) = run(&steps);
            let (b, _) = run(&steps);
            prop_assert_eq!(bytes(&a), bytes(&b));
        }

        #[test]
        fn prop_folding_the_output_reproduces_the_state(steps in proptest::collection::vec(step(), 1..120)) {
            let (events, state) = run(&steps);
            prop_assert_eq!(fold(&events), state);
        }

        #[test]
        fn prop_every_captured_recommendation_ends_in_one_final_decision(steps in proptest::collection::vec(step(), 1..120)) {
            let (events, state) = run(&steps);
            prop_assert!(state.pending.is_empty());
            let mut captures = std::collections::BTreeMap::<String, i64>::new();
            for e in &events {
                match &e.event {
                    Event::RecommendationReceived(r) => *captures.entry(r.recommendation_id.clone()).or_default() += 1,
                    Event::TradingDecisionRecorded(d) if d.is_final => *captures.entry(d.recommendation_id.clone()).or_default() -= 1,
                    _ => {}
                }
            }
            // Redeliveries of a pending id replace it; of a consumed id, end in dedupe: every
            // capture that was not replaced has exactly one final decision.
            for (id, balance) in captures {
                prop_assert!(balance >= 0, "{} has more final decisions than captures", id);
            }
            let finals = events.iter().filter(|e| matches!(&e.event, Event::TradingDecisionRecorded(d) if d.is_final)).count();
            let replaced = count_replaced(&events);
            let received = events.iter().filter(|e| matches!(e.event, Event::RecommendationReceived(_))).count();
            prop_assert_eq!(finals + replaced, received);
        }

        #[test]
        fn prop_an_act_respects_the_caps_the_cash_and_the_heat_limit(steps in proptest::collection::vec(step(), 1..160)) {
            let (events, _) = run(&steps);
            let mut state = State::default();
            for e in &events {
                if let Event::TradingDecisionRecorded(d) = &e.event {
                    if d.decision == Outcome::Act && d.side.as_deref() == Some("buy") {
                        let amount = d.dollar_amount.unwrap();
                        let ticker = d.ticker.as_deref().unwrap();
                        let tier = state.config.tier(state.tier);
                        let pool = active_pool(&state);
                        let held = state.positions.get(ticker).map_or_else(Money::zero, |p| p.value);
                        prop_assert!(amount <= available_cash(&state), "spends reserved or committed cash");
                        prop_assert!(amount <= state.config.max_position_dollars);
                        prop_assert!(amount <= Money::new(tier.max_position_pct * pool.value()) - held);
                        let limit = Money::new(tier.max_portfolio_heat * pool.value());
                        let after = heat(&state) + Money::new(amount.value() * tier.stop_loss_pct);
                        prop_assert!(after <= limit + money("0.01"), "heat {} over limit {}", after, limit);
                    }
                }
                state.apply(e);
            }
        }
    }

    /// Captures replaced by a redelivery of a still-pending id (they never get a final).
    fn count_replaced(events: &[Stamped]) -> usize {
        let mut pending = std::collections::BTreeSet::new();
        let mut replaced = 0;
        for e in events {
            match &e.event {
                Event::RecommendationReceived(r) if !pending.insert(r.recommendation_id.clone()) => replaced += 1,
                Event::TradingDecisionRecorded(d) if d.is_final => {
                    pending.remove(&d.recommendation_id);
                }
                _ => {}
            }
        }
        replaced
    }
}
