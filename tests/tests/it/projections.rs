//! Projections, `simulate --store` and `tape replay` on a real store: verify passes on
//! stored history; a payload or a config hash changed behind the store's back is a
//! divergence; a rebuild equals the incremental run; a what-if changes exactly the
//! decisions it should.

use std::io::Cursor;

use chrono::NaiveDate;
use tape_events::Config;
use tape_projections::{Table, TableSet};
use tape_replay::simulate::{Options, Quiet};
use tape_replay::whatif::Override;
use tape_services::projections::{self, NoProgress};
use tape_services::replay::{self, Window};
use tape_services::simulate;
use tape_services::store::EventStore;
use tape_tests::TestDb;

/// The shipped sample scenario up to (not including) `before` (an `at` prefix).
fn sample_until(before: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample/scenario.jsonl")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let at = line.split("\"at\":\"").nth(1).unwrap_or("");
        if at >= before {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

async fn store_scenario(store: &EventStore, scenario: Vec<u8>, config: Config) -> simulate::StoredRun {
    let options = Options { config, ..Options::default() };
    simulate::run(store.clone(), Cursor::new(scenario), options, 25, Quiet).await.unwrap()
}

/// Every projection table's rows, canonical and ordered, as one text.
async fn dump(client: &tokio_postgres::Client) -> String {
    let mut out = String::new();
    for table in Table::ALL {
        let rows = client
            .query(&format!("SELECT to_jsonb(t)::text FROM {} t ORDER BY to_jsonb(t)::text", table.name()), &[])
            .await
            .unwrap();
        out.push_str(&format!("{} {}\n", table.name(), rows.len()));
        for row in rows {
            out.push_str(row.get::<_, &str>(0));
            out.push('\n');
        }
    }
    out
}

/// Catches the projections up to the newest event of this database. Other tests'
/// transactions in the cluster may hold the watermark back for a moment, so this waits.
pub(crate) async fn catch_up_all(store: &EventStore, client: &mut tokio_postgres::Client) -> u64 {
    projections::catch_up_to_newest(store, client, TableSet::ALL, std::time::Duration::from_secs(20)).await.unwrap()
}

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

const WINDOW: Window =
    Window { from: NaiveDate::from_ymd_opt(2017, 1, 3).unwrap(), to: NaiveDate::from_ymd_opt(2017, 1, 4).unwrap() };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_stored_history_and_a_rebuild_equals_the_incremental_run() {
    let db = TestDb::new().await;
    let store = db.store();
    let run = store_scenario(&store, sample_until("2017-01-05"), Config::default()).await;
    assert!(run.version > 1000, "a couple of days stored: {}", run.version);
    let mut client = db.admin().await;
    assert!(catch_up_all(&store, &mut client).await > 0);
    let incremental = dump(&client).await;
    assert!(incremental.contains("\"decision\": \"act\""), "some decisions acted");

    let verified = replay::verify(&store, &mut client, "demo", WINDOW, &mut replay::Quiet).await.unwrap();
    assert!(verified.is_clean(), "{:?} {:?}", verified.divergences, verified.tables);
    assert!(verified.counts.inputs > 500 && verified.counts.decisions > 100, "{:?}", verified.counts);
    assert!(verified.tables.iter().any(|t| t.table == Table::TradingDecisions && t.live_rows > 0));

    // A rebuild stops at the head too; wait until it covers everything (see catch_up_all).
    for _ in 0..200 {
        projections::rebuild(&store, &mut client, TableSet::ALL, &mut NoProgress).await.unwrap();
        if dump(&client).await == incremental {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(dump(&client).await, incremental, "the rebuild equals the incremental run");
    projections::rebuild(&store, &mut client, TableSet::only(Table::Orders), &mut NoProgress).await.unwrap();
    assert_eq!(dump(&client).await, incremental, "a rebuild of one projection too");
    let (_, statuses) = projections::status(&store, &client).await.unwrap();
    assert!(statuses.iter().all(|s| s.behind == 0), "{statuses:?}");
    // Nothing new: a second pass writes nothing.
    let again = projections::catch_up(&store, &mut client, TableSet::ALL, &mut NoProgress).await.unwrap();
    assert_eq!(again.events, 0);
}

async fn tamper(db: &TestDb, sql: &str) {
    let admin = db.admin().await;
    admin
        .batch_execute(&format!("SET session_replication_role = replica; {sql}; RESET session_replication_role"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_changed_behind_the_stores_back_and_a_foreign_config_hash_are_divergences() {
    let db = TestDb::new().await;
    let store = db.store();
    store_scenario(&store, sample_until("2017-01-04"), Config::default()).await;
    let mut client = db.admin().await;
    catch_up_all(&store, &mut client).await;
    let window = Window { from: day("2017-01-03"), to: day("2017-01-03") };

    // An acting decision's shares, changed in place.
    let position: i64 = client
        .query_one(
            "SELECT position FROM events WHERE event_type = 'TradingDecisionRecorded' \
             AND payload->>'decision' = 'act' ORDER BY position LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tamper(
        &db,
        &format!("UPDATE events SET payload = jsonb_set(payload, '{{shares}}', '999') WHERE position = {position}"),
    )
    .await;
    let report = replay::verify(&store, &mut client, "demo", window, &mut replay::Quiet).await.unwrap();
    assert!(!report.is_clean());
    let first = &report.divergences[0];
    assert_eq!((first.position, first.field.as_str(), first.recorded.as_str()), (position, "shares", "999"));
    let decisions = report.tables.iter().find(|t| t.table == Table::TradingDecisions).unwrap();
    assert_eq!(decisions.differing_rows, 1, "the live row was projected before the change");

    // A decision recorded under another configuration (or code path).
    let other: i64 = client
        .query_one(
            "SELECT position FROM events WHERE event_type = 'PortfolioSnapshotTaken' ORDER BY position LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tamper(
        &db,
        &format!("UPDATE events SET metadata = jsonb_set(metadata, '{{config_hash}}', '\"feedface\"') WHERE position = {other}"),
    )
    .await;
    let report = replay::verify(&store, &mut client, "demo", window, &mut replay::Quiet).await.unwrap();
    let hash = report.divergences.iter().find(|d| d.field == "config_hash").expect("a config hash divergence");
    assert_eq!((hash.position, hash.recorded.as_str()), (other, "feedface"));
    assert_eq!(report.counts.divergent_steps, 2, "{:?}", report.divergences);
}

/// One crafted day: three buys at confidence 0.80, 0.72 and 0.60 under the default
/// conservative tier (min_confidence 0.75), every act capped at $2,000.
const CRAFTED: &str = r#"{"type":"AccountOpened","at":"2024-03-04T14:00:00Z","account_id":"w","initial_cash":"100000.00","mode":"paper"}
{"type":"SecurityUpdated","at":"2024-03-04T14:00:00Z","ticker":"AAA","sector":"Tech","next_earnings_date":null}
{"type":"SecurityUpdated","at":"2024-03-04T14:00:00Z","ticker":"BBB","sector":"Energy","next_earnings_date":null}
{"type":"SecurityUpdated","at":"2024-03-04T14:00:00Z","ticker":"CCC","sector":"Health","next_earnings_date":null}
{"type":"QuoteObserved","at":"2024-03-04T14:40:00Z","ticker":"AAA","price":"100.00"}
{"type":"QuoteObserved","at":"2024-03-04T14:40:00Z","ticker":"BBB","price":"50.00"}
{"type":"QuoteObserved","at":"2024-03-04T14:40:00Z","ticker":"CCC","price":"20.00"}
{"type":"RecommendationReceived","at":"2024-03-04T14:41:00Z","recommendation_id":"r-act","ticker":"AAA","action":"buy","confidence":"0.80","mode":"paper_eligible","generated_at":"2024-03-04T14:40:30Z"}
{"type":"RecommendationReceived","at":"2024-03-04T14:42:00Z","recommendation_id":"r-conf","ticker":"BBB","action":"buy","confidence":"0.72","mode":"paper_eligible","generated_at":"2024-03-04T14:41:30Z"}
{"type":"RecommendationReceived","at":"2024-03-04T14:43:00Z","recommendation_id":"r-low","ticker":"CCC","action":"buy","confidence":"0.60","mode":"paper_eligible","generated_at":"2024-03-04T14:42:30Z"}
{"type":"QuoteObserved","at":"2024-03-04T14:50:00Z","ticker":"AAA","price":"100.10"}
{"type":"QuoteObserved","at":"2024-03-04T14:50:00Z","ticker":"BBB","price":"50.05"}
{"type":"QuoteObserved","at":"2024-03-04T14:50:00Z","ticker":"CCC","price":"20.02"}
{"type":"QuoteObserved","at":"2024-03-04T15:00:00Z","ticker":"AAA","price":"100.20"}
{"type":"QuoteObserved","at":"2024-03-04T15:00:00Z","ticker":"BBB","price":"50.10"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_min_confidence_turns_exactly_the_confidence_skip_above_it_into_an_act() {
    let db = TestDb::new().await;
    let store = db.store();
    let config =
        tape_commands::config::apply_sets(&Config::default(), &["max_position_dollars=2000.00".to_owned()]).unwrap();
    store_scenario(&store, CRAFTED.as_bytes().to_vec(), config).await;
    let window = Window { from: day("2024-03-04"), to: day("2024-03-04") };
    let over = Override::Sets(vec!["tiers.conservative.min_confidence=0.70".to_owned()]);
    let report = replay::what_if(&store, "w", window, over, &mut replay::Quiet).await.unwrap();
    let changed: Vec<&str> = report.changed().map(|d| d.recommendation_id.as_str()).collect();
    assert_eq!(changed, vec!["r-conf"], "{:#?}", report.decisions);
    let diff = report.changed().next().unwrap();
    let live = diff.live.as_ref().unwrap();
    let what_if = diff.what_if.as_ref().unwrap();
    assert_eq!(live.skip_reason.map(|r| r.to_string()).as_deref(), Some("confidence"));
    assert_eq!((what_if.decision.as_str(), what_if.shares), ("act", Some(40)));
    assert_eq!(report.decisions.len(), 3);
    assert_eq!((report.live.orders, report.what_if.orders), (1, 2));
    assert_eq!((report.live.fills, report.what_if.fills), (1, 2));
    assert_eq!(report.paper_fills, 1, "the new order is paper-filled; the live one keeps its live fill");
    assert_ne!(report.live.end_equity, report.what_if.end_equity);

    // The same config as live changes nothing.
    let same = Override::Sets(Vec::new());
    let report = replay::what_if(&store, "w", window, same, &mut replay::Quiet).await.unwrap();
    assert_eq!(report.changed().count(), 0, "{:#?}", report.decisions);
    assert_eq!(report.live, report.what_if);
}

/// Two accounts simulated over the same instants (the same scenario, another account id)
/// share one store: their deterministic input ids differ (`ids::input_id_key`), each
/// stream replays clean, and a recommendation both captured has two explanations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_simulated_over_the_same_instants_share_one_store() {
    let db = TestDb::new().await;
    let store = db.store();
    let first = sample_until("2017-01-04");
    let second =
        String::from_utf8(first.clone()).unwrap().replacen("\"account_id\":\"demo\"", "\"account_id\":\"twin\"", 1);
    let a = store_scenario(&store, first, Config::default()).await;
    let b = store_scenario(&store, second.into_bytes(), Config::default()).await;
    assert_eq!((a.stream_id.as_str(), b.stream_id.as_str()), ("account-demo", "account-twin"));
    assert_eq!(a.version, b.version, "the same inputs make as many events");

    let mut client = db.admin().await;
    catch_up_all(&store, &mut client).await;
    let window = Window { from: day("2017-01-03"), to: day("2017-01-03") };
    for account in ["demo", "twin"] {
        let report = replay::verify(&store, &mut client, account, window, &mut replay::Quiet).await.unwrap();
        assert!(report.is_clean(), "{account}: {:?}", report.divergences);
    }
    let acted: String = client
        .query_one(
            "SELECT recommendation_id FROM trading_decisions WHERE decision = 'act' ORDER BY position LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let explained = tape_services::audit::explain_fast(&db.reader_store(), &acted).await.unwrap();
    let streams: Vec<&str> = explained.iter().map(|x| x.stream_id.as_str()).collect();
    assert_eq!(streams, ["account-demo", "account-twin"]);
    assert_eq!(explained[0].orders.len(), explained[1].orders.len());
    assert_ne!(
        explained[0].orders[0].order.order_id, explained[1].orders[0].order.order_id,
        "order ids differ by account"
    );
}

/// `tape projections run` (follow): when its LISTEN connection is killed it neither spins
/// (the old listener's channel closed and every turn returned at once) nor stops; it
/// listens again and keeps the tables caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_survives_its_listen_connection_being_killed() {
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    use std::sync::Arc;
    let db = TestDb::new().await;
    let store = db.store();
    let passes = Arc::new(AtomicU64::new(0));
    let head = Arc::new(AtomicI64::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = {
        let (passes, head) = (passes.clone(), head.clone());
        projections::follow(&store, &db.url, TableSet::ALL, async { stopped.await.unwrap_or(()) }, move |report| {
            passes.fetch_add(1, Ordering::Relaxed);
            head.store(report.head.position, Ordering::Relaxed);
        })
    };
    let body = async {
        let admin = db.admin().await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while listening(&admin, &db.name).await == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the follower never listened");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
                &[&db.name],
            )
            .await
            .unwrap();
        let before = passes.load(Ordering::Relaxed);
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let spun = passes.load(Ordering::Relaxed) - before;
        assert!(spun < 10, "{spun} passes in 1.5 s with nothing appended: the follower spins");

        let appended = store_scenario(&store, sample_until("2017-01-03T15"), Config::default()).await;
        assert!(appended.version > 0);
        let newest: i64 = admin.query_one("SELECT max(position) FROM events", &[]).await.unwrap().get(0);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        while head.load(Ordering::Relaxed) < newest || listening(&admin, &db.name).await == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the follower stopped following or never listened again");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        stop.send(()).unwrap();
    };
    let (followed, ()) = tokio::join!(follower, body);
    followed.unwrap();
}

/// Connections of `database` that LISTEN.
async fn listening(admin: &tokio_postgres::Client, database: &str) -> i64 {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'";
    admin.query_one(sql, &[&database]).await.unwrap().get(0)
}
