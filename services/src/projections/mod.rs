//! The projections' shell (SPEC 1, 11): reads the event log in global order, runs the
//! pure [`tape_projections::Projector`], and writes the rows with each projection's
//! checkpoint in the same transaction. See `docs/projections.md`.
//!
//! - [`catch_up`]: from the checkpoints to the head, once (`tape projections run --once`).
//! - [`follow`]: catch up, then wait for a `tape_events` notification or the poll
//!   interval, and again, until shut down (`tape projections run`).
//! - [`rebuild`]: fill shadow tables from the start of the log and swap them in, in one
//!   transaction (`tape projections rebuild [--only NAME]`).
//! - [`status`]: each checkpoint and how many events it is behind the head.
//!
//! # Gap safety
//! A pass first reads the *head*: the greatest `(tx_id, position)` below the
//! transaction-id watermark (`pg_snapshot_xmin`). Every transaction below the watermark
//! has ended, so every event at or before the head is visible from then on, and none can
//! appear there later. The pass reads `(checkpoint, head]` and ends with every checkpoint
//! at the head, so a late commit is never skipped (it lands after the head and is read
//! by the next pass).
//!
//! # Exactly once
//! Rows and checkpoints are written in one transaction, which first locks the checkpoint
//! rows (`FOR UPDATE`) and checks they are where this runner left them. If another runner
//! or a rebuild moved them, nothing is written ([`ProjectionError::CheckpointMoved`]);
//! `follow` then starts over from the stored checkpoints. Batches end on transaction
//! boundaries of the log, so a step (an input and its decisions, always appended in one
//! transaction) is never split between two batches.
//!
//! The projections run as the login role (the owner of the tables), not `tape_app`: a
//! rebuild renames tables, which only their owner may do.

pub mod schema;
pub mod write;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use rust_decimal::Decimal;
use tape_events::{upcast, Timestamp};
use tape_projections::{Change, EventRef, OrderRow, OrderStatus, PositionRow, Projector, Table, TableSet};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::describe;
use crate::store::{decode_row, EventStore, GlobalCursor, StoreError, Xid8, EVENT_COLUMNS};
use schema::Target;
use write::Batch;

/// Changes gathered before a batch is written (at the next transaction boundary).
pub const BATCH_CHANGES: usize = 5_000;
/// Events read before a batch is written, whatever its number of changes.
pub const BATCH_EVENTS: u64 = 50_000;
/// How often `follow` looks for new events without a notification.
pub const POLL_INTERVAL: Duration = Duration::from_secs(3);

/// Why a projection pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {}", describe(cause))]
    Database { context: String, cause: tokio_postgres::Error },
    #[error("event at position {position} does not decode: {source}")]
    Decode {
        position: i64,
        #[source]
        source: tape_events::DecodeError,
    },
    #[error("projection {name}: checkpoint moved to {found} while this runner expected {expected} (another runner or a rebuild); starting over")]
    CheckpointMoved { name: &'static str, expected: GlobalCursor, found: GlobalCursor },
    #[error("projection {name}: no checkpoint row (did `tape migrate` run?)")]
    NoCheckpoint { name: &'static str },
    #[error("unreadable {what} in table {table}: {value:?}")]
    BadRow { table: &'static str, what: &'static str, value: String },
    #[error("another `tape projections rebuild` holds the rebuild lock")]
    RebuildBusy,
}

fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ProjectionError {
    let context = context.into();
    move |cause| ProjectionError::Database { context, cause }
}

/// Progress of a long pass (a terminal progress bar, or nothing).
pub trait Progress {
    /// The number of events the pass will read, when known.
    fn start(&mut self, _total: u64) {}
    /// Events read so far.
    fn advance(&mut self, _done: u64) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassReport {
    /// Events read (those of the types the projections use).
    pub events: u64,
    /// Row changes written.
    pub changes: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Where every projection of the pass now stands.
    pub head: GlobalCursor,
}

const HEAD_SQL: &str = "SELECT tx_id, position FROM events \
     WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY tx_id DESC, position DESC LIMIT 1";

/// The newest event below the watermark: every event at or before it is visible for
/// good, and no event can ever appear before it ([`GlobalCursor::START`] for none).
///
/// # Errors
/// A database failure.
pub async fn head(store: &EventStore) -> Result<GlobalCursor, ProjectionError> {
    let client = store.pool().get().await.map_err(StoreError::from)?;
    let row = client.query_opt(HEAD_SQL, &[]).await.map_err(StoreError::from)?;
    Ok(match row {
        Some(row) => GlobalCursor {
            tx_id: row.try_get::<_, Xid8>(0).map_err(StoreError::from)?.0,
            position: row.try_get(1).map_err(StoreError::from)?,
        },
        None => GlobalCursor::START,
    })
}

/// The stored checkpoints of `tables`.
///
/// # Errors
/// A database failure, or a projection without a checkpoint row.
pub async fn checkpoints(
    client: &impl tokio_postgres::GenericClient,
    tables: TableSet,
    lock: bool,
) -> Result<BTreeMap<Table, GlobalCursor>, ProjectionError> {
    let names: Vec<&str> = tables.iter().map(Table::name).collect();
    let sql = format!(
        "SELECT name, tx_id, position FROM projection_checkpoints WHERE name = ANY($1){}",
        if lock { " ORDER BY name FOR UPDATE" } else { "" }
    );
    let rows = client.query(&sql, &[&names]).await.map_err(db("reading projection_checkpoints"))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let name: String = row.get(0);
        if let Some(table) = Table::parse(&name) {
            let tx_id: Xid8 = row.try_get(1).map_err(db("reading projection_checkpoints"))?;
            out.insert(table, GlobalCursor { tx_id: tx_id.0, position: row.get(2) });
        }
    }
    for table in tables.iter() {
        if !out.contains_key(&table) {
            return Err(ProjectionError::NoCheckpoint { name: table.name() });
        }
    }
    Ok(out)
}

async fn set_checkpoints(
    tx: &tokio_postgres::Transaction<'_>,
    tables: &[Table],
    cursor: GlobalCursor,
    rebuilt: bool,
) -> Result<(), ProjectionError> {
    let names: Vec<&str> = tables.iter().map(|t| t.name()).collect();
    let sql = if rebuilt {
        "UPDATE projection_checkpoints SET tx_id = $2, position = $3, updated_at = now(), rebuilt_at = now() \
         WHERE name = ANY($1)"
    } else {
        "UPDATE projection_checkpoints SET tx_id = $2, position = $3, updated_at = now() WHERE name = ANY($1)"
    };
    tx.execute(sql, &[&names, &Xid8(cursor.tx_id), &cursor.position]).await.map_err(db("moving checkpoints"))?;
    Ok(())
}

/// Reads the projector's state back from the live tables: open orders and positions.
async fn seed(client: &Client, target: &Target, tables: TableSet) -> Result<Projector, ProjectionError> {
    let mut projector = Projector::new();
    let bad = |table: &'static str, what: &'static str, value: String| ProjectionError::BadRow { table, what, value };
    let decimal = |table, what, text: String| text.parse::<Decimal>().map_err(|_| bad(table, what, text));
    if tables.contains(Table::Orders) {
        let sql = format!(
            "SELECT order_id, account_id, recommendation_id, ticker, side, qty, reason, placed_at, placed_position, \
             broker_order_id, filled_qty, filled_notional::text, status, status_reason, updated_at FROM {} \
             WHERE status IN ('placed', 'submitted', 'partially_filled')",
            target.table(Table::Orders)
        );
        for row in client.query(&sql, &[]).await.map_err(db("reading open orders"))? {
            let side: String = row.get(4);
            let reason: String = row.get(6);
            let status: String = row.get(12);
            projector.seed_order(OrderRow {
                order_id: row.get(0),
                account_id: row.get(1),
                recommendation_id: row.get(2),
                ticker: row.get(3),
                side: tape_events::Side::parse(&side).ok_or_else(|| bad("orders", "side", side.clone()))?.as_str(),
                qty: u64::try_from(row.get::<_, i64>(5)).unwrap_or(0),
                reason: tape_events::OrderReason::parse(&reason)
                    .ok_or_else(|| bad("orders", "reason", reason.clone()))?
                    .as_str(),
                placed_at: Timestamp::from_datetime(row.get(7)),
                placed_position: row.get(8),
                broker_order_id: row.get(9),
                filled_qty: u64::try_from(row.get::<_, i64>(10)).unwrap_or(0),
                filled_notional: decimal("orders", "filled_notional", row.get(11))?,
                status: OrderStatus::parse(&status).ok_or_else(|| bad("orders", "status", status.clone()))?,
                status_reason: row.get(13),
                updated_at: Timestamp::from_datetime(row.get(14)),
            });
        }
    }
    if tables.contains(Table::Positions) {
        let sql = format!(
            "SELECT account_id, ticker, qty, avg_cost::text, realized_pnl::text, opened_at, updated_at FROM {}",
            target.table(Table::Positions)
        );
        for row in client.query(&sql, &[]).await.map_err(db("reading positions"))? {
            projector.seed_position(PositionRow {
                account_id: row.get(0),
                ticker: row.get(1),
                qty: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                avg_cost: decimal("positions", "avg_cost", row.get(3))?,
                realized_pnl: decimal("positions", "realized_pnl", row.get(4))?,
                opened_at: Timestamp::from_datetime(row.get(5)),
                updated_at: Timestamp::from_datetime(row.get(6)),
            });
        }
    }
    Ok(projector)
}

/// Where the events of a pass come from.
pub enum Source<'a> {
    /// The global log.
    All,
    /// One stream (a scratch rebuild of one account in `replay --verify`).
    Stream(&'a str),
}

/// The events of the projections' types in `(after, upto]`, in global order (for one
/// stream: in version order, which is the same order), streamed.
async fn read_range(
    store: &EventStore,
    source: &Source<'_>,
    after: GlobalCursor,
    upto: GlobalCursor,
    types: &[&str],
) -> Result<impl Stream<Item = Result<crate::store::GlobalEvent, StoreError>> + Send, ProjectionError> {
    let client = store.pool().get().await.map_err(StoreError::from)?;
    let range = "(tx_id, position) > ($1, $2) AND (tx_id, position) <= ($3, $4) AND event_type = ANY($5)";
    let (sql, stream_id) = match source {
        Source::All => (format!("SELECT {EVENT_COLUMNS} FROM events WHERE {range} ORDER BY tx_id, position"), None),
        Source::Stream(stream) => (
            format!("SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $6 AND {range} ORDER BY stream_version"),
            Some((*stream).to_owned()),
        ),
    };
    let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    let statement = client.prepare(&sql).await.map_err(StoreError::from)?;
    let (after_tx, upto_tx) = (Xid8(after.tx_id), Xid8(upto.tx_id));
    let rows = match &stream_id {
        None => {
            let params: [&(dyn ToSql + Sync); 5] = [&after_tx, &after.position, &upto_tx, &upto.position, &types];
            client.query_raw(&statement, params).await
        }
        Some(stream) => {
            let params: [&(dyn ToSql + Sync); 6] =
                [&after_tx, &after.position, &upto_tx, &upto.position, &types, stream];
            client.query_raw(&statement, params).await
        }
    }
    .map_err(StoreError::from)?;
    // The connection travels with the rows and is returned to the pool when they end.
    Ok(futures_util::stream::unfold((Box::pin(rows), client), |(mut rows, client)| async move {
        let item = rows.next().await?;
        Some((item.map_err(StoreError::from).and_then(|row| decode_row(&row)), (rows, client)))
    }))
}

/// How a pass writes.
struct Pass<'a> {
    client: &'a mut Client,
    target: &'a Target,
    /// Checkpoints to keep (`None`: a shadow or scratch build, which has none).
    checkpoints: Option<BTreeMap<Table, GlobalCursor>>,
    tables: TableSet,
}

impl Pass<'_> {
    async fn commit(&mut self, batch: &mut Batch, upto: GlobalCursor) -> Result<(), ProjectionError> {
        let tx = self.client.transaction().await.map_err(db("starting a projection transaction"))?;
        let mut moved = Vec::new();
        if let Some(expected) = &self.checkpoints {
            let stored = checkpoints(&tx, self.tables, true).await?;
            for (table, cursor) in expected {
                let found = stored[table];
                if found != *cursor {
                    return Err(ProjectionError::CheckpointMoved { name: table.name(), expected: *cursor, found });
                }
                if *cursor < upto {
                    moved.push(*table);
                }
            }
        }
        batch
            .write(&tx, self.target)
            .await
            .map_err(db(format!("writing projection rows into {}", self.target.schema)))?;
        if !moved.is_empty() {
            set_checkpoints(&tx, &moved, upto, false).await?;
        }
        tx.commit().await.map_err(db("committing projection rows"))?;
        if let Some(expected) = &mut self.checkpoints {
            for table in moved {
                expected.insert(table, upto);
            }
        }
        Ok(())
    }
}

/// Projects `(from[table], upto]` of `source` into `target`, one transaction per batch.
#[allow(clippy::too_many_arguments)]
async fn run_pass(
    store: &EventStore,
    pass: &mut Pass<'_>,
    source: &Source<'_>,
    from: &BTreeMap<Table, GlobalCursor>,
    upto: GlobalCursor,
    projector: &mut Projector,
    progress: &mut dyn Progress,
) -> Result<PassReport, ProjectionError> {
    let mut report = PassReport { head: upto, ..PassReport::default() };
    let Some(start) = from.values().min().copied() else { return Ok(report) };
    if start >= upto {
        return Ok(report);
    }
    let types = pass.tables.event_types();
    let mut rows = Box::pin(read_range(store, source, start, upto, &types).await?);
    let mut batch = Batch::default();
    let mut changes = Vec::with_capacity(64);
    let mut last: Option<GlobalCursor> = None;
    let mut unwritten_events: u64 = 0;
    while let Some(row) = rows.next().await {
        let row = row?;
        let cursor = row.cursor;
        if let Some(previous) = last {
            // A transaction boundary: a good place to write a big batch.
            if previous.tx_id != cursor.tx_id && (batch.len >= BATCH_CHANGES || unwritten_events >= BATCH_EVENTS) {
                report.changes += batch.len as u64;
                pass.commit(&mut batch, previous).await?;
                report.batches += 1;
                unwritten_events = 0;
                progress.advance(report.events);
            }
        }
        let mask = from.iter().filter(|(_, c)| **c < cursor).fold(TableSet::NONE, |set, (t, _)| set.with(*t));
        project_stored(projector, row.event, mask, &mut changes)?;
        batch.extend(changes.drain(..));
        report.events += 1;
        unwritten_events += 1;
        last = Some(cursor);
    }
    report.changes += batch.len as u64;
    pass.commit(&mut batch, upto).await?;
    report.batches += 1;
    progress.advance(report.events);
    Ok(report)
}

/// Decodes a stored event (through the upcasters) and runs it through the projector.
fn project_stored(
    projector: &mut Projector,
    stored: tape_events::StoredEvent,
    mask: TableSet,
    changes: &mut Vec<Change>,
) -> Result<(), ProjectionError> {
    let event = upcast::decode(&stored.event_type, stored.schema_version, &stored.payload)
        .map_err(|source| ProjectionError::Decode { position: stored.position, source })?;
    let stamped = tape_events::Stamped { at: stored.at, event };
    let reference = EventRef {
        position: stored.position,
        event_id: stored.event_id,
        stream_id: &stored.stream_id,
        config_hash: stored.metadata.config_hash.as_deref(),
        stamped: &stamped,
    };
    projector.project(&reference, mask, changes);
    Ok(())
}

/// Catches the projections of `tables` up to the head, once.
///
/// # Errors
/// [`ProjectionError`]; nothing of a failed batch is written.
pub async fn catch_up(
    store: &EventStore,
    client: &mut Client,
    tables: TableSet,
    progress: &mut dyn Progress,
) -> Result<PassReport, ProjectionError> {
    let target = Target::live();
    let from = checkpoints(&*client, tables, false).await?;
    let upto = head(store).await?;
    if from.values().min().is_none_or(|start| *start >= upto) {
        // Nothing new: no seeding (it reads the open orders and positions).
        return Ok(PassReport { head: upto, ..PassReport::default() });
    }
    let mut projector = seed(client, &target, tables).await?;
    let mut pass = Pass { client, target: &target, checkpoints: Some(from.clone()), tables };
    run_pass(store, &mut pass, &Source::All, &from, upto, &mut projector, progress).await
}

/// Catches the projections up to the newest event stored now, waiting while a
/// transaction elsewhere in the cluster holds the watermark below it (a pass stops at the
/// watermark, so one pass may not be enough). Returns the events projected.
///
/// # Errors
/// [`ProjectionError`], or a watermark still behind after `patience`.
pub async fn catch_up_to_newest(
    store: &EventStore,
    client: &mut Client,
    tables: TableSet,
    patience: Duration,
) -> Result<u64, ProjectionError> {
    let newest: i64 = client
        .query_one("SELECT coalesce(max(position), 0) FROM events", &[])
        .await
        .map_err(db("reading the newest position"))?
        .get(0);
    let deadline = tokio::time::Instant::now() + patience;
    let mut events = 0;
    loop {
        let report = catch_up(store, client, tables, &mut NoProgress).await?;
        events += report.events;
        if report.head.position >= newest {
            return Ok(events);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ProjectionError::Store(StoreError::Invalid {
                what: "watermark",
                value: report.head.position.to_string(),
                reason: format!(
                    "still below position {newest} after {patience:?}: a transaction elsewhere in the cluster is open"
                ),
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Catches up, then follows the log: woken by `LISTEN tape_events`, and every
/// [`POLL_INTERVAL`] without one, until `shutdown` completes. A pass that finds its
/// checkpoints moved (a rebuild swapped tables in) starts over from the stored ones.
///
/// # Errors
/// [`ProjectionError`] other than a moved checkpoint, or a failed connection.
pub async fn follow(
    store: &EventStore,
    url: &str,
    tables: TableSet,
    shutdown: impl Future<Output = ()>,
    mut on_pass: impl FnMut(&PassReport),
) -> Result<(), ProjectionError> {
    let mut client = crate::db::connect(url).await.map_err(|e| {
        ProjectionError::Store(StoreError::Invalid {
            what: "database",
            value: crate::config::redact_url(url),
            reason: e.to_string(),
        })
    })?;
    let database = crate::config::DatabaseConfig::with_url(url);
    let mut listener: Option<crate::db::Listener> = None;
    tokio::pin!(shutdown);
    loop {
        match catch_up(store, &mut client, tables, &mut NoProgress).await {
            Ok(report) => on_pass(&report),
            Err(ProjectionError::CheckpointMoved { .. }) => continue,
            Err(error) => return Err(error),
        }
        if listener.is_none() {
            match crate::db::listen(&database, crate::store::EVENTS_CHANNEL).await {
                Ok(l) => listener = Some(l),
                Err(error) => tracing::warn!(%error, "cannot LISTEN for appends; polling every {POLL_INTERVAL:?}"),
            }
        }
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            woken = async {
                match listener.as_mut() {
                    Some(l) => l.receiver.recv().await,
                    None => std::future::pending().await,
                }
            } => match (woken, listener.as_mut()) {
                // Drain what else came meanwhile: one pass serves them all.
                (Some(_), Some(l)) => while l.receiver.try_recv().is_ok() {},
                // The connection ended: the next turn listens again.
                _ => listener = None,
            },
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

/// Rebuilds the projections of `tables` from the start of the log into shadow tables,
/// then swaps them in and sets their checkpoints, in one transaction. Events appended
/// meanwhile are after the new checkpoints; the next `run` pass projects them.
///
/// # Errors
/// [`ProjectionError`]; on failure the live tables are untouched.
pub async fn rebuild(
    store: &EventStore,
    client: &mut Client,
    tables: TableSet,
    progress: &mut dyn Progress,
) -> Result<PassReport, ProjectionError> {
    const REBUILD_LOCK: i64 = 0x7461_7065_0004;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&REBUILD_LOCK])
        .await
        .map_err(db("taking the rebuild lock"))?
        .get(0);
    if !locked {
        return Err(ProjectionError::RebuildBusy);
    }
    let result = rebuild_locked(store, client, tables, progress).await;
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&REBUILD_LOCK]).await;
    result
}

async fn rebuild_locked(
    store: &EventStore,
    client: &mut Client,
    tables: TableSet,
    progress: &mut dyn Progress,
) -> Result<PassReport, ProjectionError> {
    let shadow = Target::shadow();
    shadow.create(&*client, tables).await.map_err(db("creating shadow tables"))?;
    let upto = head(store).await?;
    progress.start(u64::try_from(upto.position).unwrap_or(0));
    let from: BTreeMap<Table, GlobalCursor> = tables.iter().map(|t| (t, GlobalCursor::START)).collect();
    let mut projector = Projector::new();
    let mut pass = Pass { client: &mut *client, target: &shadow, checkpoints: None, tables };
    let report = run_pass(store, &mut pass, &Source::All, &from, upto, &mut projector, progress).await?;
    let tx = client.transaction().await.map_err(db("starting the swap"))?;
    // Wait for (and then hold off) any runner's batch: it locks the same rows first.
    checkpoints(&tx, tables, true).await?;
    schema::swap_in_shadows(&tx, tables).await.map_err(db("swapping shadow tables in"))?;
    let all: Vec<Table> = tables.iter().collect();
    set_checkpoints(&tx, &all, upto, true).await?;
    tx.commit().await.map_err(db("committing the swap"))?;
    Ok(report)
}

/// Projects one account's stream, up to each table's `upto` cursor, into a scratch
/// target (which must exist, see [`Target::create`]).
///
/// # Errors
/// [`ProjectionError`].
pub async fn project_stream(
    store: &EventStore,
    client: &mut Client,
    target: &Target,
    stream_id: &str,
    upto: &BTreeMap<Table, GlobalCursor>,
) -> Result<PassReport, ProjectionError> {
    let tables = upto.keys().fold(TableSet::NONE, |set, t| set.with(*t));
    let Some(max) = upto.values().max().copied() else { return Ok(PassReport::default()) };
    // A table is projected while the event is at or before its own cursor: expressed as
    // "after" cursors, a table whose cursor is behind stops receiving events past it.
    let from: BTreeMap<Table, GlobalCursor> = tables.iter().map(|t| (t, GlobalCursor::START)).collect();
    let mut projector = Projector::new();
    let mut pass = Pass { client, target, checkpoints: None, tables };
    run_stream_pass(store, &mut pass, stream_id, &from, upto, max, &mut projector).await
}

async fn run_stream_pass(
    store: &EventStore,
    pass: &mut Pass<'_>,
    stream_id: &str,
    from: &BTreeMap<Table, GlobalCursor>,
    upto: &BTreeMap<Table, GlobalCursor>,
    max: GlobalCursor,
    projector: &mut Projector,
) -> Result<PassReport, ProjectionError> {
    let mut report = PassReport { head: max, ..PassReport::default() };
    let types = pass.tables.event_types();
    let start = from.values().min().copied().unwrap_or(GlobalCursor::START);
    let mut rows = Box::pin(read_range(store, &Source::Stream(stream_id), start, max, &types).await?);
    let mut batch = Batch::default();
    let mut changes = Vec::new();
    while let Some(row) = rows.next().await {
        let row = row?;
        let cursor = row.cursor;
        let mask = upto.iter().filter(|(_, u)| cursor <= **u).fold(TableSet::NONE, |set, (t, _)| set.with(*t));
        project_stored(projector, row.event, mask, &mut changes)?;
        batch.extend(changes.drain(..));
        report.events += 1;
        if batch.len >= BATCH_CHANGES {
            // A scratch build keeps no checkpoint: any boundary will do.
            report.changes += batch.len as u64;
            pass.commit(&mut batch, max).await?;
            report.batches += 1;
        }
    }
    report.changes += batch.len as u64;
    pass.commit(&mut batch, max).await?;
    report.batches += 1;
    Ok(report)
}

/// One projection's checkpoint and lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub table: Table,
    pub checkpoint: GlobalCursor,
    /// Events in the log after the checkpoint (of any type).
    pub behind: i64,
    pub rebuilt_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// Every projection's checkpoint and how many events it is behind, with the head.
///
/// # Errors
/// A database failure.
pub async fn status(store: &EventStore, client: &Client) -> Result<(GlobalCursor, Vec<Status>), ProjectionError> {
    let top = head(store).await?;
    let rows = client
        .query(
            "SELECT c.name, c.tx_id, c.position, c.rebuilt_at, c.updated_at, \
             (SELECT count(*) FROM events e WHERE (e.tx_id, e.position) > (c.tx_id, c.position)) \
             FROM projection_checkpoints c ORDER BY c.name",
            &[],
        )
        .await
        .map_err(db("reading projection_checkpoints"))?;
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let Some(table) = Table::parse(&name) else { continue };
        let tx_id: Xid8 = row.get(1);
        let rebuilt: Option<chrono::DateTime<chrono::Utc>> = row.get(3);
        out.push(Status {
            table,
            checkpoint: GlobalCursor { tx_id: tx_id.0, position: row.get(2) },
            behind: row.get(5),
            rebuilt_at: rebuilt.map(Timestamp::from_datetime),
            updated_at: Timestamp::from_datetime(row.get(4)),
        });
    }
    out.sort_by_key(|s| Table::ALL.iter().position(|t| *t == s.table));
    Ok((top, out))
}
