//! The account write path on a real store: whole steps per transaction, the fold after a
//! reload equals the live state, and two writers on one account never record a
//! recommendation twice.

use tape_commands::Input;
use tape_events::*;
use tape_services::ledger::AccountLedger;
use tape_tests::TestDb;
use uuid::Uuid;

fn at(text: &str) -> Timestamp {
    Timestamp::parse(&format!("2024-03-04T{text}:00Z")).unwrap()
}

fn input(n: u128, at: Timestamp, event: impl Into<Event>) -> Input {
    Input { id: Uuid::from_u128(n), stamped: Stamped::new(at, event) }
}

fn opening() -> Vec<Input> {
    let config = Config::default();
    vec![
        input(
            1,
            at("14:00"),
            AccountOpened {
                account_id: "l".into(),
                initial_cash: "100000.00".parse().unwrap(),
                mode: AccountMode::Paper,
            },
        ),
        input(2, at("14:00"), ConfigActivated { hash: config.hash(), config: Box::new(config) }),
        input(3, at("14:35"), QuoteObserved { ticker: "AAA".into(), price: "100.00".parse().unwrap() }),
    ]
}

fn recommendation(n: u128, id: &str) -> Input {
    input(
        n,
        at("14:36"),
        RecommendationReceived {
            recommendation_id: id.into(),
            ticker: Some("AAA".into()),
            action: Some("buy".into()),
            confidence: Some("0.75".into()),
            mode: Some("paper_eligible".into()),
            generated_at: Some("2024-03-04T14:36:00Z".into()),
            source: None,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_appended_whole_with_derived_ids_and_reloads_to_the_same_state() {
    let db = TestDb::new().await;
    let mut ledger = AccountLedger::load(db.store(), "l", "test").await.unwrap();
    assert_eq!(ledger.version(), 0);
    let opened = ledger.submit(&opening()).await.unwrap();
    assert_eq!(opened.events.len(), 3);
    let acted = ledger.submit(&[recommendation(10, "r-1")]).await.unwrap();
    let types: Vec<&str> = acted.events.iter().map(|(_, s, _)| s.event.event_type()).collect();
    assert_eq!(types.first(), Some(&"RecommendationReceived"));
    assert_eq!(types.last(), Some(&"OrderPlaced"));
    assert_eq!(acted.events[1].0, ids::decision_event_id(Uuid::from_u128(10), 0));
    let appended = acted.appended.unwrap();
    assert_eq!(appended.version, ledger.version());
    assert!(appended.events.iter().all(|e| e.position > 0));

    let stored = db.store().read_stream("account-l", 4, 100).await.unwrap();
    assert_eq!(stored[0].metadata.causation_id, None, "an input has no cause");
    assert_eq!(stored[1].metadata.causation_id, Some(Uuid::from_u128(10)));
    assert_eq!(stored[1].metadata.config_hash.as_deref(), Some(Config::default().hash().as_str()));

    let reloaded = AccountLedger::load(db.store(), "l", "test").await.unwrap();
    assert_eq!(reloaded.version(), ledger.version());
    assert_eq!(reloaded.state(), ledger.state());
    let report = db.store().verify_all(&Default::default()).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.first_problem());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_losing_writer_reloads_and_decides_again_so_nothing_is_recorded_twice() {
    let db = TestDb::new().await;
    let mut first = AccountLedger::load(db.store(), "l", "a").await.unwrap();
    first.submit(&opening()).await.unwrap();
    let mut second = AccountLedger::load(db.store(), "l", "b").await.unwrap();
    // The first writer consumes r-1; the second, folded before that, then sees the same
    // recommendation redelivered: its append conflicts, it reloads, and decides dedupe.
    first.submit(&[recommendation(10, "r-1")]).await.unwrap();
    let again = second.submit(&[recommendation(11, "r-1")]).await.unwrap();
    let decision = again
        .events
        .iter()
        .find_map(|(_, s, _)| match &s.event {
            Event::TradingDecisionRecorded(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(decision.skip_reason.map(|r| r.to_string()).as_deref(), Some("dedupe"));
    let orders = db.store().read_stream("account-l", 1, 1000).await.unwrap();
    assert_eq!(orders.iter().filter(|e| e.event_type == "OrderPlaced").count(), 1);
    assert_eq!(second.version(), orders.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_unchanged_inputs_are_reported_not_recorded() {
    let db = TestDb::new().await;
    let mut ledger = AccountLedger::load(db.store(), "l", "test").await.unwrap();
    ledger.submit(&opening()).await.unwrap();
    let version = ledger.version();
    let bad_fill = input(
        20,
        at("14:40"),
        OrderFilled {
            order_id: Uuid::from_u128(99),
            fill_id: "x".into(),
            ticker: "AAA".into(),
            side: Side::Buy,
            qty: Qty(1),
            price: "1.00".parse().unwrap(),
        },
    );
    let same_security =
        input(21, at("14:40"), SecurityUpdated { ticker: "AAA".into(), sector: None, next_earnings_date: None });
    let submitted = ledger.submit(&[bad_fill, same_security.clone()]).await.unwrap();
    assert_eq!(submitted.refused.len(), 1);
    assert_eq!(submitted.events.len(), 1, "the first SecurityUpdated is new; the bad fill left nothing");
    let again = ledger
        .submit(&[input(
            22,
            at("14:41"),
            SecurityUpdated { ticker: "AAA".into(), sector: None, next_earnings_date: None },
        )])
        .await
        .unwrap();
    assert_eq!(again.unchanged, vec![Uuid::from_u128(22)]);
    assert!(again.appended.is_none());
    assert_eq!(ledger.version(), version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_v1_row_is_upcast_on_read_and_folds() {
    let db = TestDb::new().await;
    let mut ledger = AccountLedger::load(db.store(), "l", "test").await.unwrap();
    ledger.submit(&opening()).await.unwrap();
    // A row written by the seed system's schema: SecurityUpdated v1 with `earnings_date`.
    let v1 = tape_events::NewEvent {
        event_id: Uuid::from_u128(500),
        event_type: "SecurityUpdated",
        schema_version: 1,
        payload: serde_json::json!({"ticker": "AAA", "sector": "Energy", "earnings_date": "2024-03-05"}),
        metadata: Metadata::default(),
        at: at("14:30"),
    };
    db.store().append("account-l", ledger.version(), &[v1]).await.unwrap();
    let stored = db.store().read_stream("account-l", 4, 10).await.unwrap();
    assert_eq!(stored[0].schema_version, 1, "the row stays as written");
    let reloaded = AccountLedger::load(db.store(), "l", "test").await.unwrap();
    let security = &reloaded.state().securities["AAA"];
    assert_eq!(security.sector.as_deref(), Some("Energy"));
    assert_eq!(security.next_earnings_date.map(|d| d.to_string()).as_deref(), Some("2024-03-05"));
    // And the core decides with it: earnings tomorrow rejects a buy.
    let mut ledger = reloaded;
    let decided = ledger.submit(&[recommendation(30, "r-e")]).await.unwrap();
    let reason = decided.events.iter().find_map(|(_, s, _)| match &s.event {
        Event::TradingDecisionRecorded(d) => d.skip_reason.map(|r| r.to_string()),
        _ => None,
    });
    assert_eq!(reason.as_deref(), Some("earnings"));
}
