//! Helpers for the integration tests (`tests/tests/it`): a throw-away database per test.
//!
//! [`TestDb::new`] creates a uniquely named database on the server of
//! `TAPE_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`, a
//! superuser), migrates it with `tape migrate`'s code, and drops it when the value is
//! dropped, also when the test panics. Test code may panic: these are test helpers.

// Tests mint fresh ids and database names (an I/O-side crate, like services).
#![allow(clippy::missing_panics_doc, clippy::disallowed_methods)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub mod fake_alpaca;

use tape_events::chain::{self, Hash};
use tape_events::payload::{Event, OrderFilled};
use tape_events::{Metadata, NewEvent, Price, Qty, Side, Timestamp};
use tape_services::config::DatabaseConfig;
use tape_services::db;
use tape_services::migrate::{self, MigrationReport};
use tape_services::store::{EventStore, GlobalCursor, GlobalEvent, StoreOptions};
use uuid::Uuid;

/// The administrative connection URL (a superuser on the test server).
#[must_use]
pub fn admin_url() -> String {
    std::env::var("TAPE_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A migrated database of its own, dropped on drop.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    /// URL of this database, as the admin user.
    pub url: String,
    admin_url: String,
    /// The report of the first migration.
    pub migration: MigrationReport,
}

impl TestDb {
    /// Creates and migrates a fresh database.
    pub async fn new() -> Self {
        let admin_url = admin_url();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tape_test_{}_{n}_{}", std::process::id(), &Uuid::now_v7().simple().to_string()[20..]);
        let url = db::url_with_database(&admin_url, &name).expect("TAPE_DATABASE_URL is a valid URL");
        // Build the value first so a failed migration still drops the database.
        let mut test_db = Self { name, url, admin_url, migration: empty_report() };
        test_db.migration = migrate::migrate(&test_db.url).await.expect("migrate a fresh test database");
        test_db
    }

    /// Settings for this database: the app role by default.
    #[must_use]
    pub fn config(&self, role: Option<&str>) -> DatabaseConfig {
        DatabaseConfig { url: self.url.clone(), pool_size: 16, role: role.unwrap_or("").to_owned() }
    }

    /// A pool whose connections `SET ROLE tape_app`, as the service's are.
    #[must_use]
    pub fn app_pool(&self) -> db::Pool {
        db::pool(&self.config(Some("tape_app"))).expect("pool for the test database")
    }

    /// A store over [`TestDb::app_pool`].
    #[must_use]
    pub fn store(&self) -> EventStore {
        EventStore::new(self.app_pool())
    }

    /// A store whose connections `SET ROLE tape_reader`, as `tape audit`'s are.
    #[must_use]
    pub fn reader_store(&self) -> EventStore {
        EventStore::new(db::pool(&self.config(Some("tape_reader"))).expect("pool for the test database"))
    }

    /// A store over [`TestDb::app_pool`] with options.
    #[must_use]
    pub fn store_with(&self, options: StoreOptions) -> EventStore {
        EventStore::with_options(self.app_pool(), options)
    }

    /// A plain superuser connection to this database (no SET ROLE).
    pub async fn admin(&self) -> tokio_postgres::Client {
        db::connect(&self.url).await.expect("admin connection to the test database")
    }
}

fn empty_report() -> MigrationReport {
    MigrationReport { database: String::new(), created_database: false, applied: Vec::new(), current_version: None }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop may run inside a tokio runtime (and during a panic): do the async work on
        // a thread of its own with its own small runtime.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(runtime) => runtime.block_on(db::drop_database(&admin_url, &name)).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        });
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                eprintln!("warning: cannot drop test database {}: {error}", self.name)
            }
            Err(_) => eprintln!("warning: cannot drop test database {}: the dropping thread panicked", self.name),
        }
    }
}

/// A sample event: a fill with distinct content per `n`.
#[must_use]
pub fn sample_event(n: u64) -> NewEvent {
    let event = Event::OrderFilled(OrderFilled {
        order_id: Uuid::from_u128(u128::from(n) + 1),
        fill_id: format!("fill-{n}"),
        ticker: "AAPL".to_owned(),
        side: Side::Buy,
        qty: Qty(n % 100 + 1),
        price: Price::new(rust_decimal::Decimal::new(17_615 + i64::try_from(n % 1000).unwrap_or(0), 2)),
    });
    let at = Timestamp::from_unix_micros(1_709_560_800_000_000 + i64::try_from(n).unwrap_or(0));
    let metadata = Metadata { actor: Some("test".to_owned()), ..Metadata::default() };
    event.into_new(Uuid::now_v7(), at, metadata)
}

/// `count` sample events.
#[must_use]
pub fn sample_events(count: u64) -> Vec<NewEvent> {
    (0..count).map(sample_event).collect()
}

/// Inserts one event the way the store does, inside a caller's transaction (to hold it
/// open): moves the head and inserts the row. Returns (position, hash).
pub async fn insert_in_transaction(
    tx: &tokio_postgres::Transaction<'_>,
    stream_id: &str,
    version: i64,
    prev: &Hash,
    event: &NewEvent,
) -> (i64, Hash) {
    let hash = chain::link(prev, &event.chained(stream_id, version));
    let metadata = serde_json::to_value(&event.metadata).expect("metadata serializes");
    tx.execute(
        "INSERT INTO streams (stream_id, version, head_hash) VALUES ($1, $2, $3) \
         ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, head_hash = EXCLUDED.head_hash",
        &[&stream_id, &version, &hash.as_slice()],
    )
    .await
    .expect("move the head");
    let row = tx
        .query_one(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload, \
             metadata, at, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING position",
            &[
                &stream_id,
                &version,
                &event.event_id,
                &event.event_type,
                &event.schema_version,
                &event.payload,
                &metadata,
                &event.at.datetime(),
                &prev.as_slice(),
                &hash.as_slice(),
            ],
        )
        .await
        .expect("insert the event");
    (row.get(0), hash)
}

/// Reads the global log from `after` until `want` events came or `timeout` passed (other
/// tests' transactions in the same cluster may hold the watermark back for a moment).
pub async fn read_all_until(
    store: &EventStore,
    after: GlobalCursor,
    want: usize,
    timeout: Duration,
) -> Vec<GlobalEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut cursor = after;
    let mut out = Vec::new();
    loop {
        let batch = store.read_all(cursor, 1000).await.expect("read_all");
        if let Some(last) = batch.last() {
            cursor = last.cursor;
        }
        out.extend(batch);
        if out.len() >= want || tokio::time::Instant::now() >= deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
