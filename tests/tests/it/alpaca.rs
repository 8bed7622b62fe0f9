//! The Alpaca adapters against a local fake server that follows Alpaca's published API
//! (`tape_tests::fake_alpaca`): Alpaca cannot be reached from here. Broker-level tests
//! need no database; the restart test runs the daemon on its own PostgreSQL database
//! and Redis prefix. Every wait is bounded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tape_events::{AccountMode, Config, Event, Money, OrderReason, Qty, Side, Timestamp};
use tape_services::broker::alpaca::{AlpacaBroker, AlpacaSettings, Credentials};
use tape_services::broker::{Broker, BrokerError, BrokerUpdate, OrderJob};
use tape_services::clock::{Clock, ManualClock};
use tape_services::config::RedisConfig;
use tape_services::daemon::{self, DaemonTable, QuoteFeed, Settings};
use tape_services::quotes::alpaca::AlpacaQuotes;
use tape_services::quotes::QuoteSource;
use tape_tests::fake_alpaca::{FakeAlpaca, OnSubmit, KEY_ID, SECRET_KEY};
use tape_tests::TestDb;
use tokio::sync::mpsc;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

fn settings(fake: &FakeAlpaca) -> AlpacaSettings {
    AlpacaSettings {
        trading_url: fake.url(),
        data_url: fake.url(),
        max_attempts: 4,
        retry_base_millis: 20,
        retry_max_millis: 200,
        retry_after_max_secs: 2,
        poll_interval_secs: 1,
        connect_timeout_millis: 2000,
        request_timeout_millis: 5000,
        quote_poll_millis: 50,
        requests_per_minute: 6000,
        data_requests_per_minute: 6000,
        ..AlpacaSettings::default()
    }
}

fn credentials() -> Credentials {
    Credentials::new(KEY_ID, SECRET_KEY)
}

fn job(n: u128, ticker: &str, qty: u64) -> OrderJob {
    OrderJob {
        order_id: Uuid::from_u128(0xA1_0000 + n),
        account_id: "a1".into(),
        recommendation_id: Some(format!("r-{n}")),
        ticker: ticker.into(),
        action: Side::Buy,
        side: Side::Buy,
        quantity: Qty(qty),
        order_type: "market".into(),
        reason: OrderReason::Entry,
    }
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A started broker, its updates, and a connected stream.
async fn broker(fake: &FakeAlpaca) -> (AlpacaBroker, mpsc::Receiver<BrokerUpdate>) {
    let broker = AlpacaBroker::start(settings(fake), credentials()).unwrap();
    let updates = broker.take_updates().unwrap();
    until("the stream to listen", || broker.stream_connected()).await;
    (broker, updates)
}

/// The next `n` updates other than acknowledgements (bounded wait): the stream's `new`
/// event and the submit's answer race, and either may report the acknowledgement.
async fn next(updates: &mut mpsc::Receiver<BrokerUpdate>, n: usize) -> Vec<BrokerUpdate> {
    let mut out = Vec::new();
    while out.len() < n {
        let update = tokio::time::timeout(WAIT, updates.recv()).await.expect("an update in time").expect("open");
        if !matches!(update, BrokerUpdate::Accepted { .. }) {
            out.push(update);
        }
    }
    out
}

/// No further update (acknowledgements aside) for a moment.
async fn quiet(updates: &mut mpsc::Receiver<BrokerUpdate>) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(700);
    while let Ok(Some(update)) = tokio::time::timeout_at(deadline, updates.recv()).await {
        assert!(matches!(update, BrokerUpdate::Accepted { .. }), "unexpected update {update:?}");
    }
}

fn fills(updates: &[BrokerUpdate]) -> Vec<(String, u64)> {
    updates
        .iter()
        .filter_map(|u| match u {
            BrokerUpdate::Filled { fill_id, qty, .. } => Some((fill_id.clone(), qty.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_then_fill_reports_the_acknowledgement_and_the_fill_by_execution_id() {
    let fake = FakeAlpaca::start().await;
    let (broker, mut updates) = broker(&fake).await;
    let job = job(1, "AAPL", 10);
    let order = broker.submit(&job).await.unwrap();
    assert_eq!(order.client_order_id, job.order_id);
    let sent = fake.order(job.order_id).unwrap();
    assert_eq!(
        (sent["type"].as_str(), sent["time_in_force"].as_str(), sent["qty"].as_str()),
        (Some("market"), Some("day"), Some("10"))
    );
    assert_eq!(sent["id"].as_str(), Some(order.broker_order_id.as_str()));
    let execution = fake.execute(job.order_id, 10, "187.25");
    let got = next(&mut updates, 1).await;
    assert_eq!(fills(&got), vec![(execution, 10)]);
    assert!(
        matches!(&got[0], BrokerUpdate::Filled { price, ticker, .. } if price.to_string() == "187.25" && ticker == "AAPL")
    );
    quiet(&mut updates).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_fills_are_booked_one_by_one_and_the_rest_is_canceled() {
    let fake = FakeAlpaca::start().await;
    let (broker, mut updates) = broker(&fake).await;
    let job = job(2, "MSFT", 10);
    broker.submit(&job).await.unwrap();
    let e1 = fake.execute(job.order_id, 3, "400.10");
    let e2 = fake.execute(job.order_id, 4, "400.20");
    assert_eq!(fills(&next(&mut updates, 2).await), vec![(e1, 3), (e2, 4)]);
    fake.end(job.order_id, "expired");
    let got = next(&mut updates, 1).await;
    assert!(matches!(&got[0], BrokerUpdate::Canceled { reason, .. } if reason == "expired at alpaca"), "{got:?}");
    quiet(&mut updates).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_order_is_refused_and_an_asynchronous_reject_is_reported() {
    let fake = FakeAlpaca::start().await;
    let (broker, mut updates) = broker(&fake).await;
    fake.on_submit(OnSubmit::Refuse);
    let error = broker.submit(&job(3, "TSLA", 5)).await.unwrap_err();
    assert!(
        matches!(&error, BrokerError::Refused { reason, .. } if reason.contains("insufficient buying power")),
        "{error}"
    );
    fake.on_submit(OnSubmit::Accept);
    let job = job(4, "TSLA", 5);
    broker.submit(&job).await.unwrap();
    fake.end(job.order_id, "rejected");
    let got = next(&mut updates, 1).await;
    assert!(matches!(&got[0], BrokerUpdate::Rejected { order_id, .. } if *order_id == job.order_id), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmitted_order_id_is_recognised_never_duplicated() {
    let fake = FakeAlpaca::start().await;
    let (broker, _updates) = broker(&fake).await;
    let job = job(5, "AAPL", 2);
    let first = broker.submit(&job).await.unwrap();
    let second = broker.submit(&job).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(fake.requests("POST /v2/orders"), 2);
    assert_eq!(fake.orders().len(), 1, "one order at the broker");
    assert_eq!(broker.lookup(job.order_id).await.unwrap(), Some(first));
    assert_eq!(broker.lookup(Uuid::from_u128(99)).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_429_and_5xx_are_retried_honouring_retry_after_and_the_attempts_are_bounded() {
    let fake = FakeAlpaca::start().await;
    let (broker, _updates) = broker(&fake).await;
    fake.fail_next("/v2/orders", 2, 429, Some(1));
    fake.fail_next("/v2/orders", 1, 503, None);
    let started = tokio::time::Instant::now();
    broker.submit(&job(6, "AAPL", 1)).await.unwrap();
    assert_eq!(fake.requests("POST /v2/orders"), 4, "two 429s, one 503, then the order");
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 1 was honoured twice");
    assert_eq!(fake.orders().len(), 1);
    // A longer outage than the attempts allow: unavailable (the daemon retries later).
    fake.fail_next("/v2/orders", 10, 500, None);
    let error = broker.submit(&job(7, "AAPL", 1)).await.unwrap_err();
    assert!(matches!(error, BrokerError::Unavailable { .. }), "{error}");
    assert_eq!(fake.requests("POST /v2/orders"), 8, "4 attempts, no more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_during_a_dropped_stream_are_recovered_once_on_reconnect() {
    let fake = FakeAlpaca::start().await;
    let settings = AlpacaSettings { poll_interval_secs: 3600, ..settings(&fake) };
    let broker = AlpacaBroker::start(settings, credentials()).unwrap();
    let mut updates = broker.take_updates().unwrap();
    until("the stream to listen", || broker.stream_connected()).await;
    let job = job(8, "NVDA", 10);
    broker.submit(&job).await.unwrap();
    let live = fake.execute(job.order_id, 2, "900.00");
    assert_eq!(fills(&next(&mut updates, 1).await), vec![(live, 2)]);
    // The stream drops, and fills happen while it is down: their events are lost.
    fake.drop_streams(true);
    until("the stream to notice", || !broker.stream_connected()).await;
    fake.execute(job.order_id, 3, "901.00");
    fake.execute(job.order_id, 5, "902.00");
    quiet(&mut updates).await;
    fake.accept_streams();
    let got = next(&mut updates, 2).await;
    let got = fills(&got);
    assert_eq!(got.iter().map(|(_, q)| *q).collect::<Vec<_>>(), vec![3, 5], "{got:?}");
    assert!(got.iter().all(|(id, _)| id.contains("::")), "fill ids are the FILL activity ids: {got:?}");
    until("the stream to listen again", || broker.stream_connected()).await;
    broker.reconcile_now().await;
    quiet(&mut updates).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_stream_is_down_open_orders_are_polled() {
    let fake = FakeAlpaca::start().await;
    let (broker, mut updates) = broker(&fake).await;
    let job = job(9, "AMD", 4);
    broker.submit(&job).await.unwrap();
    fake.drop_streams(true);
    until("the stream to notice", || !broker.stream_connected()).await;
    fake.execute(job.order_id, 4, "150.00");
    let got = next(&mut updates, 1).await;
    assert_eq!(fills(&got).iter().map(|(_, q)| *q).collect::<Vec<_>>(), vec![4]);
    assert!(!broker.stream_connected(), "booked by polling, not by the stream");
    fake.accept_streams();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_log_does_not_know_and_a_mismatched_order_are_discrepancies() {
    let fake = FakeAlpaca::start().await;
    let (broker, mut updates) = broker(&fake).await;
    fake.add_foreign_order("GME", 7);
    // The log has an order for 5 shares that Alpaca holds for 10 (someone else used the id).
    let job = job(10, "AAPL", 10);
    broker.submit(&job).await.unwrap();
    let open = [tape_commands::state::OpenOrder {
        order_id: job.order_id,
        recommendation_id: None,
        ticker: "AAPL".into(),
        side: Side::Buy,
        qty: Qty(5),
        filled: Qty(0),
        reason: OrderReason::Entry,
        placed_at: Timestamp::parse("2024-03-04T14:36:00Z").unwrap(),
        broker_order_id: None,
    }];
    broker.reconcile("a1", &open).unwrap().await;
    let got = next(&mut updates, 2).await;
    let descriptions: Vec<&str> = got
        .iter()
        .filter_map(|u| match u {
            BrokerUpdate::Discrepancy { description, .. } => Some(description.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(descriptions.len(), 2, "{got:?}");
    assert!(descriptions[0].contains("is for 10 shares, the log has 5"), "{descriptions:?}");
    assert!(
        descriptions[1].contains("the broker has an open order the log does not know: buy 7 GME"),
        "{descriptions:?}"
    );
    // A second pass does not record them again.
    broker.reconcile("a1", &open).unwrap().await;
    quiet(&mut updates).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_trades_are_read_in_batches_and_only_changes_are_quotes() {
    let fake = FakeAlpaca::start().await;
    let symbols: BTreeSet<String> = (0..150).map(|i| format!("T{i:03}")).collect();
    for s in &symbols {
        fake.set_latest_trade(s, 10.25, "2024-03-04T14:35:59.123456789Z");
    }
    fake.fail_next("/v2/stocks/trades/latest", 1, 429, Some(1));
    let provider = symbols.clone();
    let mut source = AlpacaQuotes::new(&settings(&fake), &credentials(), Arc::new(move || provider.clone())).unwrap();
    let clock: tape_services::clock::SharedClock =
        Arc::new(ManualClock::new(Timestamp::parse("2024-03-04T14:36:00Z").unwrap()));
    let quotes = tokio::time::timeout(WAIT, source.next_batch(&clock)).await.unwrap().unwrap();
    assert_eq!(quotes.len(), 150);
    assert_eq!(quotes[0].price.to_string(), "10.25");
    assert_eq!(quotes[0].observed_at, Timestamp::parse("2024-03-04T14:35:59.123456Z").unwrap());
    assert_eq!(fake.requests("GET /v2/stocks/trades/latest"), 3, "a 429, then 100 + 50 symbols");
    // Unchanged trades are not quotes again; a new price is.
    fake.set_latest_trade("T007", 10.5, "2024-03-04T14:35:59.9Z");
    let quotes = tokio::time::timeout(WAIT, source.next_batch(&clock)).await.unwrap().unwrap();
    assert_eq!(quotes.iter().map(|q| q.ticker.as_str()).collect::<Vec<_>>(), vec!["T007"]);
}

// ---- the daemon, restarted with orders in flight -------------------------------------

const ACCOUNT: &str = "alp1";

fn redis_url() -> String {
    std::env::var("TAPE_REDIS_URL").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

struct Daemon {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), String>>,
}

fn start_daemon(db: &TestDb, prefix: &str, clock: &ManualClock, broker: Arc<dyn Broker>, adapter: bool) -> Daemon {
    let settings = Settings {
        accounts: vec![ACCOUNT.to_owned()],
        database: db.config(Some("tape_app")),
        redis: RedisConfig { url: redis_url(), prefix: prefix.to_owned() },
        decision: Config::default(),
        daemon: DaemonTable { listen: String::new(), reference_interval_secs: 1, ..DaemonTable::default() },
        clock: Arc::new(clock.clone()),
        broker,
        quotes: QuoteFeed::Table { interval: Duration::from_millis(50) },
        actor: "alpaca-test".to_owned(),
        broker_adapter: adapter,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(daemon::run(settings, async {
        let _ = stopped.await;
    }));
    Daemon { stop, handle }
}

async fn events(db: &TestDb) -> Vec<Event> {
    let store = db.store();
    let stream = tape_events::ids::account_stream(ACCOUNT);
    store.read_stream(&stream, 1, 100_000).await.unwrap().into_iter().map(|e| e.decode().unwrap().event).collect()
}

async fn wait_events(db: &TestDb, what: &str, check: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = events(db).await;
        if check(&events) {
            return events;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn redis_cleanup(prefix: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    }
}

fn placed(events: &[Event]) -> Vec<tape_events::OrderPlaced> {
    events.iter().filter_map(|e| if let Event::OrderPlaced(o) = e { Some(o.clone()) } else { None }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_books_missed_fills_once_and_submits_unsubmitted_orders_once() {
    let db = TestDb::new().await;
    let prefix = format!("tape-test-{}", db.name);
    let fake = FakeAlpaca::start().await;
    // Monday 2024-03-04 09:36 ET: inside the trading window.
    let clock = ManualClock::new(Timestamp::parse("2024-03-04T14:36:00Z").unwrap());
    let cash = Money::new(rust_decimal::Decimal::new(10_000_000, 2));
    let opened = clock.now().minus(chrono::Duration::minutes(6));
    tape_services::accounts::open(db.store(), ACCOUNT, cash, AccountMode::Paper, &Config::default(), opened, "t")
        .await
        .unwrap();
    let admin = db.admin().await;
    let at = clock.now().datetime();
    admin.batch_execute("INSERT INTO securities VALUES ('AAA', 'Tech', NULL), ('BBB', 'Energy', NULL)").await.unwrap();
    for (ticker, price) in [("AAA", "100.00"), ("BBB", "50.00")] {
        admin
            .execute("INSERT INTO market_quotes VALUES ($1, $2::text::numeric, $3)", &[&ticker, &price, &at])
            .await
            .unwrap();
    }
    let recommend = |id: &'static str, ticker: &'static str| {
        let generated = clock.now().to_string();
        let admin = &admin;
        async move {
            admin
                .execute(
                    "INSERT INTO recommendations VALUES ($1, $2, 'buy', 0.80, 'paper_eligible', $3::text::timestamptz, 'test', NULL)",
                    &[&id, &ticker, &generated],
                )
                .await
                .unwrap();
        }
    };

    // First run: the order for AAA is submitted and partly filled, then the daemon dies.
    let broker = Arc::new(AlpacaBroker::start(settings(&fake), credentials()).unwrap());
    until("the stream to listen", || broker.stream_connected()).await;
    let first = start_daemon(&db, &prefix, &clock, broker.clone(), true);
    wait_events(&db, "the first quote", |e| e.iter().any(|e| matches!(e, Event::QuoteObserved(_)))).await;
    recommend("r-a", "AAA").await;
    let events =
        wait_events(&db, "the acknowledgement", |e| e.iter().any(|e| matches!(e, Event::OrderSubmitted(_)))).await;
    let order_a = placed(&events)[0].clone();
    assert!(order_a.qty.0 >= 3, "enough shares to fill in three executions: {}", order_a.qty);
    let fill_a1 = fake.execute(order_a.order_id, 1, "100.05");
    wait_events(&db, "the first fill", |e| e.iter().any(|e| matches!(e, Event::OrderFilled(_)))).await;
    first.handle.abort();
    let _ = first.handle.await;
    drop(first.stop);
    drop(broker);
    // While nobody listens: the rest of AAA fills (two executions)...
    let remaining = order_a.qty.0 - 1;
    let split = remaining / 2;
    fake.execute(order_a.order_id, split, "100.10");
    fake.execute(order_a.order_id, remaining - split, "100.20");
    // ... and an order for BBB is placed by a daemon whose adapter never submits it.
    let idle = Arc::new(AlpacaBroker::start(settings(&fake), credentials()).unwrap());
    let mut second_settings_daemon = start_daemon(&db, &prefix, &clock, idle.clone(), false);
    recommend("r-b", "BBB").await;
    let events = wait_events(&db, "the BBB order", |e| placed(e).len() == 2).await;
    second_settings_daemon.handle.abort();
    let _ = (&mut second_settings_daemon.handle).await;
    drop(idle);
    let order_b = placed(&events)[1].clone();
    assert!(fake.order(order_b.order_id).is_none());
    // Its job is gone from Redis (popped, then the process died).
    redis_cleanup(&prefix).await;

    // Restart with a new adapter: reconciliation books the missed fills once and submits BBB once.
    let broker = Arc::new(AlpacaBroker::start(settings(&fake), credentials()).unwrap());
    let second = start_daemon(&db, &prefix, &clock, broker.clone(), true);
    let events = wait_events(&db, "AAA filled and BBB submitted", |e| {
        let filled: u64 = e.iter().filter_map(|e| if let Event::OrderFilled(f) = e { Some(f.qty.0) } else { None }).sum();
        filled == order_a.qty.0
            && e.iter().any(|e| matches!(e, Event::OrderSubmitted(s) if s.order_id == order_b.order_id && !s.broker_order_id.starts_with("paper-")))
    })
    .await;
    let a_fills: Vec<&tape_events::OrderFilled> =
        events.iter().filter_map(|e| if let Event::OrderFilled(f) = e { Some(f) } else { None }).collect();
    assert_eq!(a_fills[0].fill_id, fill_a1, "the live fill by its execution id");
    assert_eq!(a_fills.len(), 3, "each missed fill booked once: {a_fills:?}");
    assert!(a_fills[1..].iter().all(|f| f.fill_id.contains("::")), "missed fills by their FILL activity ids");
    assert_eq!(
        fake.orders().iter().filter(|o| o["client_order_id"] == order_b.order_id.to_string().as_str()).count(),
        1
    );
    // The BBB fill arrives live on the stream.
    until("the stream to listen", || broker.stream_connected()).await;
    fake.execute(order_b.order_id, order_b.qty.0, "50.01");
    wait_events(&db, "the BBB fill", |e| {
        e.iter().any(|e| matches!(e, Event::OrderFilled(f) if f.order_id == order_b.order_id))
    })
    .await;
    // A further reconciliation pass changes nothing.
    broker.reconcile_now().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = self::events(&db).await;
    assert_eq!(after.iter().filter(|e| matches!(e, Event::OrderFilled(_))).count(), a_fills.len() + 1);
    assert!(!after.iter().any(|e| matches!(e, Event::BrokerDiscrepancyObserved(_))), "nothing unexplained");
    let _ = second.stop.send(());
    tokio::time::timeout(Duration::from_secs(15), second.handle).await.expect("daemon stops").unwrap().unwrap();
    redis_cleanup(&prefix).await;
}
