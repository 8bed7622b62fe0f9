//! `tape audit`: golden explanations of crafted histories (an act through its stop-loss
//! exit, every skip reason, transient re-evaluation, a breaker), listings, and
//! verification of a tampered, truncated and reordered ledger.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tape_commands::{paper, Input};
use tape_events::*;
use tape_services::audit::{self, render};
use tape_services::ledger::AccountLedger;
use tape_services::store::EventStore;
use tape_tests::TestDb;
use uuid::Uuid;

fn at(hm: &str) -> Timestamp {
    let full = if hm.len() == 5 { format!("{hm}:00") } else { hm.to_owned() };
    Timestamp::parse(&format!("2024-03-04T{full}Z")).unwrap()
}

/// Drives one account like `simulate` does: paper fills before each quote, the
/// configuration right after opening. Ids are deterministic, so the outputs are golden.
struct Driver {
    ledger: AccountLedger,
    next: u128,
}

impl Driver {
    async fn open(store: EventStore, account: &str, cash: &str, change: impl FnOnce(&mut Config)) -> Self {
        let mut ledger = AccountLedger::load(store, account, "audit-test").await.unwrap();
        let mut config = Config::default();
        change(&mut config);
        let base = u128::from(account.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))) << 64;
        let opened =
            AccountOpened { account_id: account.into(), initial_cash: cash.parse().unwrap(), mode: AccountMode::Paper };
        let inputs = [
            Input { id: Uuid::from_u128(base + 1), stamped: Stamped::new(at("14:00"), opened) },
            Input {
                id: Uuid::from_u128(base + 2),
                stamped: Stamped::new(at("14:00"), ConfigActivated { hash: config.hash(), config: Box::new(config) }),
            },
        ];
        ledger.submit(&inputs).await.unwrap();
        Self { ledger, next: base + 3 }
    }

    async fn send(&mut self, when: &str, event: impl Into<Event>) {
        let stamped = Stamped::new(at(when), event);
        if let Event::QuoteObserved(q) = &stamped.event {
            while let Some(fill) = paper::next_fill(self.ledger.state(), &q.ticker, q.price, stamped.at) {
                self.submit(Stamped::new(stamped.at, fill)).await;
            }
        }
        self.submit(stamped).await;
    }

    async fn submit(&mut self, stamped: Stamped) {
        self.next += 1;
        let submitted = self.ledger.submit(&[Input { id: Uuid::from_u128(self.next), stamped }]).await.unwrap();
        assert!(submitted.refused.is_empty(), "{:?}", submitted.refused);
    }

    async fn quote(&mut self, when: &str, ticker: &str, price: &str) {
        self.send(when, QuoteObserved { ticker: ticker.into(), price: price.parse().unwrap() }).await;
    }

    async fn security(&mut self, ticker: &str, sector: &str, earnings: Option<&str>) {
        let next_earnings_date = earnings.map(|d| d.parse().unwrap());
        self.send("14:00", SecurityUpdated { ticker: ticker.into(), sector: Some(sector.into()), next_earnings_date })
            .await;
    }

    async fn rec(&mut self, when: &str, id: &str, ticker: &str, action: &str, confidence: &str) {
        let generated_at = at(when).minus(chrono::Duration::seconds(30)).to_string();
        self.rec_raw(when, id, ticker, action, confidence, "paper_eligible", &generated_at).await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn rec_raw(
        &mut self,
        when: &str,
        id: &str,
        ticker: &str,
        action: &str,
        confidence: &str,
        mode: &str,
        generated_at: &str,
    ) {
        let received = RecommendationReceived {
            recommendation_id: id.into(),
            ticker: Some(ticker.into()),
            action: Some(action.into()),
            confidence: Some(confidence.into()),
            mode: Some(mode.into()),
            generated_at: Some(generated_at.into()),
            source: Some("crafted".into()),
        };
        self.send(when, received).await;
    }

    async fn poll(&mut self, when: &str) {
        self.send(when, SchedulerTick { tick: TickKind::Poll }).await;
    }

    /// A filled buy of `ticker` at 100 (a recommendation, then the next quote fills it).
    async fn hold(&mut self, id: &str, ticker: &str) {
        self.quote("14:35", ticker, "100.00").await;
        self.rec("14:36", id, ticker, "buy", "0.75").await;
        self.quote("14:40", ticker, "100.00").await;
    }
}

fn same_closes() -> Vec<(&'static str, &'static str)> {
    (1..=21)
        .map(|d| {
            let date: &'static str = Box::leak(format!("2024-02-{d:02}").into_boxed_str());
            let close: &'static str = Box::leak(format!("{}.00", 100 + (d * 7) % 11).into_boxed_str());
            (date, close)
        })
        .collect()
}

/// Builds every crafted history; returns (account, recommendation) pairs to explain.
async fn crafted(store: &EventStore) -> Vec<(&'static str, &'static str)> {
    let mut cases = Vec::new();

    // An act, filled, then stopped out: the whole chain including the trade's result.
    let mut d = Driver::open(store.clone(), "act", "100000.00", |_| {}).await;
    d.security("AAA", "Information Technology", None).await;
    d.hold("r-act", "AAA").await;
    d.quote("14:50", "AAA", "94.00").await;
    d.quote("14:55", "AAA", "93.50").await;
    cases.push(("act", "r-act"));

    // Step 0, one account per bad field.
    for (account, id, ticker, action, confidence, mode, generated_at) in [
        ("invalid-ticker", "r-ticker", "aapl", "buy", "0.80", "paper_eligible", "2024-03-04T14:35:00Z"),
        ("invalid-action", "r-action", "AAA", "hold", "0.80", "paper_eligible", "2024-03-04T14:35:00Z"),
        ("invalid-confidence", "r-conf", "AAA", "buy", "1.5", "paper_eligible", "2024-03-04T14:35:00Z"),
        ("invalid-mode", "r-mode", "AAA", "buy", "0.80", "research_only", "2024-03-04T14:35:00Z"),
        ("invalid-generated", "r-gen", "AAA", "buy", "0.80", "paper_eligible", "soon"),
        ("stale", "r-stale", "AAA", "buy", "0.80", "paper_eligible", "2024-03-04T12:00:00Z"),
    ] {
        let mut d = Driver::open(store.clone(), account, "100000.00", |_| {}).await;
        d.rec_raw("14:36", id, ticker, action, confidence, mode, generated_at).await;
        cases.push((account, id));
    }

    // Transient re-evaluation: window, then confidence at the 09:35 poll, then stale.
    let mut d = Driver::open(store.clone(), "transient", "100000.00", |_| {}).await;
    d.quote("14:10", "AAA", "100.00").await;
    d.send("14:20", {
        let mut r = rec_event("r-pending", "AAA", "buy", "0.70");
        r.generated_at = Some("2024-03-04T14:00:00Z".into());
        r
    })
    .await;
    d.poll("14:21").await;
    d.poll("14:35").await;
    d.poll("16:00").await;
    cases.push(("transient", "r-pending"));

    // A breaker: single_position trips on AAA; a buy of AAA is held back.
    let mut d =
        Driver::open(store.clone(), "breaker", "100000.00", |c| c.declining_fraction = "1.0".parse().unwrap()).await;
    d.hold("r-first", "AAA").await;
    d.quote("14:50", "AAA", "84.00").await;
    d.rec("14:51", "r-breaker", "AAA", "buy", "0.75").await;
    cases.push(("breaker", "r-breaker"));

    // dedupe, no_position, exit_pending, entry_pending, no_price.
    let mut d = Driver::open(store.clone(), "paths", "100000.00", |_| {}).await;
    d.hold("r-held", "AAA").await;
    d.rec("14:41", "r-held", "AAA", "buy", "0.75").await;
    d.rec("14:42", "r-no-position", "BBB", "sell", "0.80").await;
    d.rec("14:43", "r-exit", "AAA", "sell", "0.80").await;
    d.rec("14:43", "r-exit-pending", "AAA", "sell", "0.80").await;
    d.quote("14:44", "BBB", "50.00").await;
    d.rec("14:45", "r-entry", "BBB", "buy", "0.75").await;
    d.rec("14:45", "r-entry-pending", "BBB", "buy", "0.75").await;
    d.rec("14:46", "r-no-price", "CCC", "buy", "0.75").await;
    cases.extend([
        ("paths", "r-held"),
        ("paths", "r-no-position"),
        ("paths", "r-exit-pending"),
        ("paths", "r-entry-pending"),
        ("paths", "r-no-price"),
    ]);

    // declining_positions: two positions down 3%.
    let mut d = Driver::open(store.clone(), "declining", "100000.00", |_| {}).await;
    d.hold("r-a", "AAA").await;
    d.hold("r-b", "BBB").await;
    d.quote("14:45", "AAA", "97.00").await;
    d.quote("14:45", "BBB", "97.00").await;
    d.quote("14:45", "CCC", "10.00").await;
    d.rec("14:46", "r-declining", "CCC", "buy", "0.75").await;
    cases.push(("declining", "r-declining"));

    // max_open_positions.
    let mut d = Driver::open(store.clone(), "max-open", "100000.00", |c| c.max_open_positions = 1).await;
    d.hold("r-a", "AAA").await;
    d.quote("14:41", "BBB", "10.00").await;
    d.rec("14:42", "r-max", "BBB", "buy", "0.75").await;
    cases.push(("max-open", "r-max"));

    // correlation: identical closes.
    let mut d = Driver::open(store.clone(), "correlation", "100000.00", |_| {}).await;
    for (date, close) in same_closes() {
        for ticker in ["AAA", "BBB"] {
            d.send(
                "14:00",
                DailyBarObserved { ticker: ticker.into(), date: date.parse().unwrap(), close: close.parse().unwrap() },
            )
            .await;
        }
    }
    d.hold("r-a", "AAA").await;
    d.quote("14:41", "BBB", "100.00").await;
    d.rec("14:42", "r-correlation", "BBB", "buy", "0.75").await;
    cases.push(("correlation", "r-correlation"));

    // sector_cap, earnings, position_cap, portfolio_heat, below_one_share.
    let mut d = Driver::open(store.clone(), "sector", "100000.00", |c| {
        c.tiers.conservative.max_sector_pct = "0.02".parse().unwrap();
    })
    .await;
    d.security("AAA", "Energy", None).await;
    d.security("BBB", "Energy", None).await;
    d.hold("r-a", "AAA").await;
    d.quote("14:41", "BBB", "100.00").await;
    d.rec("14:42", "r-sector", "BBB", "buy", "0.75").await;
    cases.push(("sector", "r-sector"));

    let mut d = Driver::open(store.clone(), "earnings", "100000.00", |_| {}).await;
    d.security("AAA", "Energy", Some("2024-03-05")).await;
    d.quote("14:35", "AAA", "100.00").await;
    d.rec("14:36", "r-earnings", "AAA", "buy", "0.75").await;
    cases.push(("earnings", "r-earnings"));

    let mut d = Driver::open(store.clone(), "position-cap", "100000.00", |_| {}).await;
    d.quote("14:35", "AAA", "100.00").await;
    d.rec("14:36", "r-big", "AAA", "buy", "1.0").await;
    d.quote("14:40", "AAA", "100.00").await;
    d.quote("14:45", "AAA", "130.00").await;
    d.rec("14:46", "r-more", "AAA", "buy", "0.75").await;
    cases.push(("position-cap", "r-more"));

    let mut d = Driver::open(store.clone(), "heat", "100000.00", |c| {
        c.tiers.conservative.max_portfolio_heat = "0.0015".parse().unwrap();
    })
    .await;
    d.hold("r-a", "AAA").await;
    d.quote("14:41", "BBB", "100.00").await;
    d.rec("14:42", "r-heat", "BBB", "buy", "0.75").await;
    cases.push(("heat", "r-heat"));

    let mut d = Driver::open(store.clone(), "one-share", "100000.00", |_| {}).await;
    d.quote("14:35", "BIG", "5000.00").await;
    d.rec("14:36", "r-big-price", "BIG", "buy", "0.75").await;
    cases.push(("one-share", "r-big-price"));

    // insufficient_cash: two buys commit all the cash before either fills.
    let mut d = Driver::open(store.clone(), "cash", "20000.00", |c| {
        c.tiers.conservative.min_confidence = "0.50".parse().unwrap();
        c.tiers.conservative.max_position_pct = "1.00".parse().unwrap();
        c.tiers.conservative.max_sector_pct = "1.00".parse().unwrap();
        c.tiers.conservative.max_portfolio_heat = "1.00".parse().unwrap();
    })
    .await;
    d.security("AAA", "Energy", None).await;
    d.security("BBB", "Utilities", None).await;
    d.security("CCC", "Financials", None).await;
    d.quote("14:35", "AAA", "100.00").await;
    d.quote("14:35", "BBB", "50.00").await;
    d.quote("14:35", "CCC", "10.00").await;
    d.rec("14:36", "r-1", "AAA", "buy", "1.0").await;
    d.rec("14:36", "r-2", "BBB", "buy", "1.0").await;
    d.rec("14:36", "r-cash", "CCC", "buy", "1.0").await;
    cases.push(("cash", "r-cash"));

    cases
}

fn rec_event(id: &str, ticker: &str, action: &str, confidence: &str) -> RecommendationReceived {
    RecommendationReceived {
        recommendation_id: id.into(),
        ticker: Some(ticker.into()),
        action: Some(action.into()),
        confidence: Some(confidence.into()),
        mode: Some("paper_eligible".into()),
        generated_at: None,
        source: None,
    }
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/audit").join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_EXPECT=1 creates it)", path.display()));
    assert!(
        expected == actual,
        "{} differs; if intended, regenerate with UPDATE_EXPECT=1 and review the diff.\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// The explanation of `id` fed every event of the account's stream, unfiltered.
async fn explain_whole_stream(store: &EventStore, account: &str, id: &str) -> audit::explain::Explanation {
    use futures_util::StreamExt;
    let stream = ids::account_stream(account);
    let mut explainer = audit::explain::Explainer::new(id, &stream);
    let mut rows = store.stream_stream(&stream, 1).await.unwrap();
    while let Some(row) = rows.next().await {
        let stored = row.unwrap().event;
        explainer.feed(&audit::explain::AuditEvent {
            position: stored.position,
            stream_id: stored.stream_id.clone(),
            stream_version: stored.stream_version,
            event_id: stored.event_id,
            stamped: stored.decode().unwrap(),
            metadata: stored.metadata.clone(),
        });
    }
    explainer.finish().expect("captured")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_golden_outputs_cover_act_each_skip_reason_transients_stop_loss_and_breaker() {
    let db = TestDb::new().await;
    let store = db.store();
    let cases = crafted(&store).await;
    let mut client = db.admin().await;
    crate::projections::catch_up_all(&store, &mut client).await;
    // Audit reads as the read-only role, as the CLI does.
    let store = db.reader_store();
    let mut text = String::new();
    let mut reasons = std::collections::BTreeSet::new();
    for (account, id) in &cases {
        let explanations = audit::explain_from_log(&store, id).await.unwrap();
        let x = explanations
            .iter()
            .find(|x| x.stream_id == ids::account_stream(account))
            .unwrap_or_else(|| panic!("{id} in {account}"));
        if let Some(reason) = x.evaluations.iter().filter_map(|e| e.decision.skip_reason).next_back() {
            reasons.insert(reason.to_string());
        }
        text.push_str(&render::explanation_text(x));
        text.push('\n');
        if ["r-act", "r-pending", "r-breaker"].contains(id) {
            golden(&format!("{id}.json"), &render::explanation_json(x));
        }
    }
    golden("explain.txt", &text);
    let expected_reasons = [
        "invalid:ticker",
        "invalid:action",
        "invalid:confidence",
        "invalid:mode",
        "invalid:generated_at",
        "stale",
        "circuit_breaker",
        "trading_window",
        "confidence",
        "dedupe",
        "declining_positions",
        "max_open_positions",
        "no_position",
        "exit_pending",
        "entry_pending",
        "no_price",
        "correlation",
        "sector_cap",
        "earnings",
        "insufficient_cash",
        "position_cap",
        "portfolio_heat",
        "below_one_share",
    ];
    for reason in expected_reasons {
        let covered = reasons.contains(reason) || text.contains(&format!("SKIP {reason} "));
        assert!(covered, "no crafted history ends in or passes through skip {reason}");
    }
    for (account, id) in &cases {
        let fast = audit::explain_fast(&store, id).await.unwrap();
        let log = audit::explain_from_log(&store, id).await.unwrap();
        let pick = |xs: &[audit::explain::Explanation]| {
            xs.iter().find(|x| x.stream_id == ids::account_stream(account)).cloned()
        };
        assert_eq!(pick(&fast), pick(&log), "{id}: the indexed path and the log disagree");
        // `--from-log` reads only `Explainer::FED_TYPES`: the whole stream fed gives the same.
        assert_eq!(pick(&log), Some(explain_whole_stream(&store, account, id).await), "{id}: FED_TYPES misses a type");
    }
    let act = &audit::explain_from_log(&store, "r-act").await.unwrap()[0];
    let trade = act.aftermath.as_ref().and_then(|a| a.trade.as_ref()).expect("the stop-loss closed the trade");
    assert_eq!(trade.1.realized_pnl.to_string(), "-195.00");
    assert_eq!(act.aftermath.as_ref().unwrap().stop_losses.len(), 1);
    let pending = &audit::explain_from_log(&store, "r-pending").await.unwrap()[0];
    let triggers: Vec<&str> = pending.evaluations.iter().map(|e| e.trigger.as_str()).collect();
    assert_eq!(triggers, ["received", "poll", "poll"], "each re-evaluation that changed the outcome, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_come_from_the_log_in_three_formats() {
    let db = TestDb::new().await;
    let store = db.store();
    let mut d = Driver::open(store.clone(), "list", "100000.00", |_| {}).await;
    d.hold("r-a", "AAA").await;
    d.rec("14:41", "r-low", "AAA", "buy", "0.70").await;
    d.quote("14:50", "AAA", "84.00").await;
    let filter = audit::Filter { stream: Some("account-list".into()), ..audit::Filter::default() };
    let skips = audit::decisions(&store, &filter, Some("skip"), Some("confidence")).await.unwrap();
    assert_eq!(skips.rows.len(), 1);
    assert!(skips.csv().starts_with("at,stream,recommendation,ticker,side,decision,final,reason"));
    let breakers = audit::timeline(&store, audit::BREAKER_TYPES, &filter, None).await.unwrap();
    assert_eq!(breakers.rows.len(), 1);
    assert!(breakers.rows[0][4].starts_with("single_position AAA tripped until"));
    let json: serde_json::Value = serde_json::from_str(&breakers.json()).unwrap();
    assert_eq!(json[0]["type"], "CircuitBreakerTripped");
    let orders = audit::events(&store, &["OrderPlaced".to_owned()], &filter).await.unwrap();
    assert_eq!(orders.rows.len(), 2, "the entry and the breaker's sell");
    let ticker = audit::timeline(&store, audit::TICKER_TYPES, &filter, Some("AAA")).await.unwrap();
    assert!(ticker.rows.len() >= 6);

    // An acknowledgement names only its order: the ticker listing finds it through the order.
    let mut d = Driver::open(store.clone(), "ack", "100000.00", |_| {}).await;
    d.quote("14:35", "AAA", "100.00").await;
    d.rec("14:36", "r-k", "AAA", "buy", "0.75").await;
    let order_id = d.ledger.state().open_orders.first().expect("the entry order").order_id;
    d.send("14:37", OrderSubmitted { order_id, broker_order_id: "paper-k".into() }).await;
    let filter = audit::Filter { stream: Some("account-ack".into()), ..audit::Filter::default() };
    let listed = |rows: render::Rows| rows.rows.iter().map(|r| r[3].clone()).collect::<Vec<_>>();
    let aaa = listed(audit::timeline(&store, audit::TICKER_TYPES, &filter, Some("AAA")).await.unwrap());
    assert!(aaa.contains(&"OrderSubmitted".to_owned()), "{aaa:?}");
    let other = listed(audit::timeline(&store, audit::TICKER_TYPES, &filter, Some("BBB")).await.unwrap());
    assert!(other.is_empty(), "another ticker's acknowledgement: {other:?}");
}

async fn tamper(db: &TestDb, sql: &str) {
    let admin = db.admin().await;
    admin
        .batch_execute(&format!(
            "SET session_replication_role = replica; {sql}; SET session_replication_role = origin;"
        ))
        .await
        .unwrap();
}

async fn history(db: &TestDb) -> EventStore {
    let store = db.store();
    let mut d = Driver::open(store.clone(), "v", "100000.00", |_| {}).await;
    d.hold("r-a", "AAA").await;
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_first_bad_position_of_a_tampered_payload() {
    let db = TestDb::new().await;
    let store = history(&db).await;
    let (report, immutability) = audit::verify(&store, &BTreeMap::new()).await.unwrap();
    assert!(report.is_intact());
    assert!(immutability.iter().all(|c| c.refused), "{immutability:?}");
    tamper(&db, "UPDATE events SET payload = jsonb_set(payload, '{price}', '\"1.00\"') WHERE position = 5").await;
    let (report, _) = audit::verify(&store, &BTreeMap::new()).await.unwrap();
    assert_eq!(report.first_problem().and_then(|p| p.position), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_a_deleted_newest_row_given_the_kept_head() {
    let db = TestDb::new().await;
    let store = history(&db).await;
    let (report, _) = audit::verify(&store, &BTreeMap::new()).await.unwrap();
    let head = report.streams.iter().find(|h| h.stream_id == "account-v").unwrap().clone();
    // The attacker removes the newest event and moves the stream's head row back too.
    tamper(
        &db,
        "DELETE FROM events WHERE position = (SELECT max(position) FROM events); \
         UPDATE streams SET version = version - 1, head_hash = (SELECT hash FROM events WHERE stream_id = 'account-v' ORDER BY stream_version DESC LIMIT 1) WHERE stream_id = 'account-v'",
    )
    .await;
    let (report, _) = audit::verify(&store, &BTreeMap::new()).await.unwrap();
    assert!(report.is_intact(), "without the kept head the truncation is invisible (SPEC 11)");
    let kept =
        BTreeMap::from([("account-v".to_owned(), tape_services::store::parse_hash_hex(&head.head_hash).unwrap())]);
    let (report, _) = audit::verify(&store, &kept).await.unwrap();
    let problem = report.first_problem().expect("the kept head is gone");
    assert_eq!(problem.stream_id, "account-v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_a_reordered_pair() {
    let db = TestDb::new().await;
    let store = history(&db).await;
    // Swap the contents of versions 3 and 4 (their hashes go with them).
    tamper(
        &db,
        "UPDATE events SET stream_version = stream_version + 1000 WHERE stream_id = 'account-v' AND stream_version IN (3, 4); \
         UPDATE events SET stream_version = 1007 - stream_version WHERE stream_id = 'account-v' AND stream_version IN (1003, 1004)",
    )
    .await;
    let (report, _) = audit::verify(&store, &BTreeMap::new()).await.unwrap();
    let problem = report.first_problem().expect("a reordered pair breaks the chain");
    assert_eq!(problem.stream_id, "account-v");
    assert!(problem.stream_version == 3 || problem.stream_version == 4, "{problem}");
}
