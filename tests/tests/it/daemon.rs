//! The live daemon in-process on a real PostgreSQL and Redis, with a manual clock: the
//! end-to-end path, restarts, a Redis flush, PostgreSQL going away, two daemons on one
//! account, and garbage rows. Each test has its own database and Redis key prefix.

use std::sync::Arc;
use std::time::Duration;

use tape_events::{AccountMode, Config, Event, Money, Timestamp};
use tape_services::broker::PaperBroker;
use tape_services::clock::{Clock, ManualClock};
use tape_services::config::RedisConfig;
use tape_services::daemon::{self, DaemonTable, QuoteFeed, Settings};
use tape_services::store::EventStore;
use tape_tests::TestDb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ACCOUNT: &str = "d1";

fn t0() -> Timestamp {
    // Monday 2024-03-04 09:36 ET: inside the trading window.
    Timestamp::parse("2024-03-04T14:36:00Z").unwrap()
}

struct Harness {
    db: TestDb,
    prefix: String,
    clock: ManualClock,
    store: EventStore,
    redis: redis::aio::MultiplexedConnection,
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), String>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.handle).await.expect("daemon stops").unwrap().unwrap();
    }

    /// A crash: the task is aborted mid-flight (no graceful shutdown).
    async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

fn redis_url() -> String {
    std::env::var("TAPE_REDIS_URL").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

impl Harness {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let prefix = format!("tape-test-{}", db.name);
        let clock = ManualClock::new(t0());
        let store = db.store();
        let client = redis::Client::open(redis_url()).unwrap();
        let redis = client.get_multiplexed_async_connection().await.expect("redis at TAPE_REDIS_URL");
        let h = Self { db, prefix, clock, store, redis };
        let cash = Money::new(rust_decimal::Decimal::new(10_000_000, 2));
        let opened = t0().minus(chrono::Duration::minutes(6));
        tape_services::accounts::open(
            h.store.clone(),
            ACCOUNT,
            cash,
            AccountMode::Paper,
            &Config::default(),
            opened,
            "t",
        )
        .await
        .unwrap();
        h.sql("INSERT INTO securities VALUES ('AAA', 'Tech', NULL), ('BBB', 'Energy', NULL)").await;
        h.quote("AAA", "100.00").await;
        h
    }

    async fn sql(&self, sql: &str) {
        self.db.admin().await.batch_execute(sql).await.unwrap();
    }

    async fn quote(&self, ticker: &str, price: &str) {
        let at = self.clock.now().datetime();
        self.db
            .admin()
            .await
            .execute(
                "INSERT INTO market_quotes VALUES ($1, $2::text::numeric, $3) ON CONFLICT (ticker) DO UPDATE \
                 SET price = EXCLUDED.price, observed_at = EXCLUDED.observed_at",
                &[&ticker, &price, &at],
            )
            .await
            .unwrap();
    }

    async fn recommend(&self, id: &str, ticker: &str, confidence: &str) {
        let generated = self.clock.now().to_string();
        self.db
            .admin()
            .await
            .execute(
                "INSERT INTO recommendations VALUES ($1, $2, 'buy', $3::text::numeric, 'paper_eligible', \
                 $4::text::timestamptz, 'test', NULL)",
                &[&id, &ticker, &confidence, &generated],
            )
            .await
            .unwrap();
    }

    fn settings(&self, actor: &str) -> Settings {
        Settings {
            accounts: vec![ACCOUNT.to_owned()],
            database: self.db.config(Some("tape_app")),
            redis: RedisConfig { url: redis_url(), prefix: self.prefix.clone() },
            decision: Config::default(),
            daemon: DaemonTable { listen: String::new(), reference_interval_secs: 1, ..DaemonTable::default() },
            clock: Arc::new(self.clock.clone()),
            broker: Arc::new(PaperBroker::new()),
            quotes: QuoteFeed::Table { interval: Duration::from_millis(50) },
            actor: actor.to_owned(),
            broker_adapter: true,
        }
    }

    fn start(&self, actor: &str) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(daemon::run(self.settings(actor), async {
            let _ = stopped.await;
        }));
        Running { stop: Some(stop), handle }
    }

    async fn events(&self) -> Vec<(tape_events::Stamped, Option<String>)> {
        self.store
            .read_stream("account-d1", 1, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.decode().unwrap(), e.metadata.actor.clone()))
            .collect()
    }

    async fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events().await.iter().filter(|(s, _)| pred(&s.event)).count()
    }

    /// Waits (bounded) until `pred` holds for some count of events.
    async fn wait_until(&self, what: &str, pred: impl Fn(&[(tape_events::Stamped, Option<String>)]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if pred(&self.events().await) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn cleanup_redis(&mut self) {
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", self.prefix)).query_async(&mut self.redis).await.unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut self.redis).await.unwrap();
        }
    }
}

fn is_placed_for(id: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::OrderPlaced(o) if o.recommendation_id.as_deref() == Some(id))
}

fn has(events: &[(tape_events::Stamped, Option<String>)], pred: impl Fn(&Event) -> bool) -> bool {
    events.iter().any(|(s, _)| pred(&s.event))
}

fn received(id: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::RecommendationReceived(r) if r.recommendation_id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recommendation_row_becomes_checks_an_order_job_a_fill_and_a_position() {
    let mut h = Harness::new().await;
    let daemon = h.start("daemon");
    h.wait_until("the first quote", |e| has(e, |e| matches!(e, Event::QuoteObserved(_)))).await;
    h.recommend("r-1", "AAA", "0.80").await;
    h.wait_until("the order", |e| has(e, is_placed_for("r-1"))).await;
    // The job went through Redis to the paper broker, which acknowledged it.
    h.wait_until("the acknowledgement", |e| {
        has(e, |e| matches!(e, Event::OrderSubmitted(s) if s.broker_order_id.starts_with("paper-")))
    })
    .await;
    let checks =
        h.count(|e| matches!(e, Event::PreTradeCheckEvaluated(c) if c.recommendation_id == "r-1" && c.passed)).await;
    assert_eq!(checks, 6, "checks a–f passed");
    // The next quote fills the order (paper fill model: the fill comes before the quote).
    h.clock.advance(chrono::Duration::minutes(1));
    h.quote("AAA", "101.00").await;
    h.wait_until("the fill", |e| has(e, |e| matches!(e, Event::OrderFilled(_)))).await;
    let events = h.events().await;
    let fill = events.iter().position(|(s, _)| matches!(s.event, Event::OrderFilled(_))).unwrap();
    assert!(
        matches!(&events[fill + 1].0.event, Event::QuoteObserved(q) if q.price.to_string() == "101.00"),
        "the fill is recorded just before the quote that caused it"
    );
    daemon.stop().await;
    let ledger = tape_services::ledger::AccountLedger::load(h.store.clone(), ACCOUNT, "t").await.unwrap();
    let position = ledger.state().positions.get("AAA").expect("a position in AAA");
    assert!(position.qty.0 > 0);
    // The caches were written after the commits.
    let dedupe: Vec<String> =
        redis::cmd("SMEMBERS").arg(format!("{}:dedupe:trading:d1", h.prefix)).query_async(&mut h.redis).await.unwrap();
    assert_eq!(dedupe, vec!["r-1".to_owned()]);
    let breaker: Option<String> = redis::cmd("GET")
        .arg(format!("{}:trading:circuit_breaker:d1", h.prefix))
        .query_async(&mut h.redis)
        .await
        .unwrap();
    assert!(breaker.unwrap().contains("\"tripped\":false"));
    h.cleanup_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_row_is_recorded_as_a_rejection_and_the_daemon_lives_on() {
    let mut h = Harness::new().await;
    let daemon = h.start("daemon");
    h.wait_until("the first quote", |e| has(e, |e| matches!(e, Event::QuoteObserved(_)))).await;
    h.sql(
        "INSERT INTO recommendations VALUES ('g-1', 'not a ticker', 'buy', 0.9, 'paper_eligible', now(), 'x', NULL), \
           ('g-2', 'AAA', 'buy', 7, 'paper_eligible', now(), 'x', NULL), \
           ('g-3', 'AAA', 'buy', 0.9, 'PAPER', now(), 'x', NULL), \
           ('g-4', 'AAA', 'buy', 0.9, 'paper_eligible', NULL, 'x', NULL)",
    )
    .await;
    let reason = |id: &'static str, why: &'static str| move |e: &Event| matches!(e, Event::TradingDecisionRecorded(d) if d.recommendation_id == id && d.skip_reason.is_some_and(|r| r.to_string() == why));
    h.wait_until("four rejections", |e| {
        has(e, reason("g-1", "invalid:ticker"))
            && has(e, reason("g-2", "invalid:confidence"))
            && has(e, reason("g-3", "invalid:mode"))
            && has(e, reason("g-4", "invalid:generated_at"))
    })
    .await;
    h.recommend("r-ok", "AAA", "0.80").await;
    h.wait_until("a good row still trades", |e| has(e, is_placed_for("r-ok"))).await;
    daemon.stop().await;
    h.cleanup_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_mid_day_nothing_is_lost_or_doubled() {
    let mut h = Harness::new().await;
    let first = h.start("daemon");
    h.wait_until("the first quote", |e| has(e, |e| matches!(e, Event::QuoteObserved(_)))).await;
    h.recommend("r-1", "AAA", "0.80").await;
    h.wait_until("the order", |e| has(e, is_placed_for("r-1"))).await;
    first.kill().await;
    // While it is down a row arrives; the restarted daemon captures it, and not r-1 again.
    h.recommend("r-2", "BBB", "0.80").await;
    h.quote("BBB", "50.00").await;
    h.clock.advance(chrono::Duration::seconds(30));
    let second = h.start("daemon");
    h.wait_until("r-2 decided", |e| {
        has(e, |e| matches!(e, Event::TradingDecisionRecorded(d) if d.recommendation_id == "r-2"))
    })
    .await;
    h.wait_until("r-1's order acknowledged", |e| has(e, |e| matches!(e, Event::OrderSubmitted(_)))).await;
    second.stop().await;
    assert_eq!(h.count(received("r-1")).await, 1, "r-1 captured once");
    assert_eq!(h.count(received("r-2")).await, 1, "r-2 captured once");
    assert_eq!(h.count(is_placed_for("r-1")).await, 1, "no duplicate order");
    let reloaded = tape_services::ledger::AccountLedger::load(h.store.clone(), ACCOUNT, "t").await.unwrap();
    assert!(reloaded.state().consumed.contains("r-1") && reloaded.state().consumed.contains("r-2"));
    h.cleanup_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_flush_rebuilds_the_caches_and_orders_are_not_doubled() {
    let mut h = Harness::new().await;
    let daemon = h.start("daemon");
    h.wait_until("the first quote", |e| has(e, |e| matches!(e, Event::QuoteObserved(_)))).await;
    h.recommend("r-1", "AAA", "0.80").await;
    h.wait_until("the acknowledgement", |e| has(e, |e| matches!(e, Event::OrderSubmitted(_)))).await;
    h.cleanup_redis().await; // the flush
    let dedupe_key = format!("{}:dedupe:trading:d1", h.prefix);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let members: Vec<String> = redis::cmd("SMEMBERS").arg(&dedupe_key).query_async(&mut h.redis).await.unwrap();
        if members == vec!["r-1".to_owned()] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the dedupe set was not rebuilt");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A redelivery of the same row (an upsert notifies again) is not captured twice.
    h.sql("UPDATE recommendations SET source = 'again' WHERE id = 'r-1'").await;
    h.recommend("r-2", "BBB", "0.80").await;
    h.wait_until("r-2 decided", |e| {
        has(e, |e| matches!(e, Event::TradingDecisionRecorded(d) if d.recommendation_id == "r-2"))
    })
    .await;
    daemon.stop().await;
    assert_eq!(h.count(received("r-1")).await, 1);
    assert_eq!(h.count(|e| matches!(e, Event::OrderPlaced(_))).await, 1, "one order: r-2 has no quote (no_price)");
    h.cleanup_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_mid_run_is_survived_and_nothing_is_lost() {
    let mut h = Harness::new().await;
    let daemon = h.start("daemon");
    h.wait_until("the first quote", |e| has(e, |e| matches!(e, Event::QuoteObserved(_)))).await;
    h.recommend("r-1", "AAA", "0.80").await;
    h.wait_until("the order", |e| has(e, is_placed_for("r-1"))).await;
    // Terminate every backend of the daemon (pool, listener, account lock).
    let admin = h.db.admin().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&h.db.name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 2, "terminated {killed} backends");
    h.recommend("r-2", "AAA", "0.80").await;
    h.clock.advance(chrono::Duration::minutes(1));
    h.quote("AAA", "100.50").await;
    h.wait_until("r-2 decided after the reconnect", |e| {
        has(e, |e| matches!(e, Event::TradingDecisionRecorded(d) if d.recommendation_id == "r-2"))
    })
    .await;
    h.wait_until("r-1 filled", |e| has(e, |e| matches!(e, Event::OrderFilled(_)))).await;
    daemon.stop().await;
    assert_eq!(h.count(received("r-1")).await, 1);
    assert_eq!(h.count(received("r-2")).await, 1);
    assert_eq!(h.count(is_placed_for("r-1")).await, 1);
    let report = h.store.verify_all(&Default::default()).await.unwrap();
    assert!(report.is_intact());
    h.cleanup_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_account_exactly_one_trades() {
    let mut h = Harness::new().await;
    let a = h.start("daemon-a");
    h.wait_until("the first quote", |e| has(e, |e| matches!(e, Event::QuoteObserved(_)))).await;
    let b = h.start("daemon-b");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, ticker) in ["AAA", "BBB"].iter().enumerate() {
        h.recommend(&format!("r-{i}"), ticker, "0.80").await;
    }
    h.wait_until("both decided", |e| {
        has(e, |e| matches!(e, Event::TradingDecisionRecorded(d) if d.recommendation_id == "r-1"))
            && has(e, |e| matches!(e, Event::TradingDecisionRecorded(d) if d.recommendation_id == "r-0"))
    })
    .await;
    let actors: std::collections::BTreeSet<Option<String>> =
        h.events().await.into_iter().skip(2).map(|(_, actor)| actor).collect();
    assert_eq!(actors.len(), 1, "one daemon wrote everything: {actors:?}");
    assert_eq!(actors.into_iter().next().flatten().as_deref(), Some("daemon-a"));
    // When the first stops, the waiting one takes over.
    a.stop().await;
    h.clock.advance(chrono::Duration::minutes(1));
    h.recommend("r-9", "AAA", "0.80").await;
    h.wait_until("the second daemon trades", |e| {
        e.iter().any(|(s, actor)| {
            matches!(&s.event, Event::RecommendationReceived(r) if r.recommendation_id == "r-9")
                && actor.as_deref() == Some("daemon-b")
        })
    })
    .await;
    b.stop().await;
    h.cleanup_redis().await;
}
