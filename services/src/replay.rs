//! `tape replay`, the shell: reads an account's stream in version order (streamed), folds
//! it to the start of the window, and hands the window's steps to the pure verifier or
//! what-if of `tape_replay`. `--verify` also rebuilds the account's projections into a
//! scratch schema and compares them with the live tables. See `docs/replay.md`.

use chrono::{NaiveDate, NaiveTime};
use futures_util::StreamExt;
use serde_json::Value;
use tape_commands::calendar::{exchange_date, exchange_instant};
use tape_events::{ids, StoredEvent, Timestamp};
use tape_projections::{Table, TableSet};
use tape_replay::recorded::{json_differences, Recorded};
use tape_replay::verify::{Divergence, Verifier, VerifyCounts};
use tape_replay::whatif::{Override, Report, WhatIf, WhatIfError};
use tokio_postgres::Client;

use crate::projections::schema::{drop_schema, Target};
use crate::projections::{self, ProjectionError};
use crate::store::{EventStore, StoreError};

/// The exchange days replayed: `[from, to]`, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Window {
    /// The first instant of `from` in exchange time (midnight, America/New_York).
    #[must_use]
    pub fn start(&self) -> Timestamp {
        exchange_instant(self.from, NaiveTime::MIN)
    }

    /// The first instant after `to`.
    #[must_use]
    pub fn end(&self) -> Timestamp {
        exchange_instant(self.to.succ_opt().unwrap_or(self.to), NaiveTime::MIN)
    }
}

/// Why a replay could not run (a divergence is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    WhatIf(#[from] WhatIfError),
    #[error("stream {stream} has no events (no account {account})")]
    NoStream { stream: String, account: String },
    #[error("stream {stream} has no events on {from}..={to}")]
    EmptyWindow { stream: String, from: NaiveDate, to: NaiveDate },
    #[error("recorded event at position {position} does not decode: {source}")]
    Decode {
        position: i64,
        #[source]
        source: tape_events::DecodeError,
    },
    #[error("{context}: {}", crate::describe(cause))]
    Database { context: String, cause: tokio_postgres::Error },
}

fn recorded(event: StoredEvent) -> Recorded {
    Recorded {
        position: event.position,
        stream_version: event.stream_version,
        event_id: event.event_id,
        event_type: event.event_type,
        schema_version: event.schema_version,
        payload: event.payload,
        at: event.at,
        config_hash: event.metadata.config_hash,
        causation_id: event.metadata.causation_id,
    }
}

/// One projection table, live against the scratch rebuild, for the account and window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableComparison {
    pub table: Table,
    pub live_rows: i64,
    pub rebuilt_rows: i64,
    /// Rows missing on either side or with any column different.
    pub differing_rows: i64,
    /// The first differences: (row key, column path, live, rebuilt).
    pub first: Vec<(String, String, String, String)>,
}

/// What `--verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub stream_id: String,
    pub window: Window,
    pub counts: VerifyCounts,
    pub divergences: Vec<Divergence>,
    pub tables: Vec<TableComparison>,
    /// Events of the stream read.
    pub events_read: u64,
}

impl VerifyReport {
    /// Whether the record and the replay agree, and the tables with their rebuild.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.counts.divergences == 0 && self.tables.iter().all(|t| t.differing_rows == 0)
    }
}

/// Progress of a long replay.
pub trait ReplayProgress {
    fn events(&mut self, _read: u64) {}
}

/// Reports nothing.
pub struct Quiet;
impl ReplayProgress for Quiet {}

/// Verifies `account` over `window`: replays the decisions and compares, then rebuilds
/// the account's projections into a scratch schema and compares them with the live
/// tables (rows of the window; the account's open positions).
///
/// # Errors
/// [`ReplayError`] when the stream or the tables cannot be read.
pub async fn verify(
    store: &EventStore,
    client: &mut Client,
    account: &str,
    window: Window,
    progress: &mut dyn ReplayProgress,
) -> Result<VerifyReport, ReplayError> {
    let stream_id = ids::account_stream(account);
    let (verifier, read) = decide_again(store, account, window, progress).await?;
    let tables = compare_tables(store, client, &stream_id, account, window).await?;
    Ok(VerifyReport {
        stream_id,
        window,
        counts: verifier.counts,
        divergences: verifier.divergences,
        tables,
        events_read: read,
    })
}

/// The decision half of [`verify`]: folds the stream before `window`, decides every input
/// of the window again through the core and compares (no tables). Returns the verifier
/// and the events read.
///
/// # Errors
/// [`ReplayError`] when the stream cannot be read or does not exist.
pub async fn decide_again(
    store: &EventStore,
    account: &str,
    window: Window,
    progress: &mut dyn ReplayProgress,
) -> Result<(Verifier, u64), ReplayError> {
    let stream_id = ids::account_stream(account);
    let (start, end) = (window.start(), window.end());
    let mut verifier = Verifier::new();
    let mut rows = store.stream_stream(&stream_id, 1).await?;
    let mut step: Vec<Recorded> = Vec::new();
    let mut read: u64 = 0;
    while let Some(row) = rows.next().await {
        let event = recorded(row?.event);
        read += 1;
        if read.is_multiple_of(65_536) {
            progress.events(read);
        }
        if event.at >= end {
            break;
        }
        if event.at < start {
            verifier.fold(&event).map_err(|source| ReplayError::Decode { position: event.position, source })?;
            continue;
        }
        if event.is_input() && !step.is_empty() {
            verifier.step(&step);
            step.clear();
        }
        step.push(event);
    }
    drop(rows);
    if !step.is_empty() {
        verifier.step(&step);
    }
    progress.events(read);
    if read == 0 {
        return Err(ReplayError::NoStream { stream: stream_id, account: account.to_owned() });
    }
    Ok((verifier, read))
}

/// The column a table's window filter reads, and its row key.
const fn table_keys(table: Table) -> (Option<&'static str>, &'static str) {
    match table {
        Table::Orders => (Some("placed_at"), "order_id::text"),
        Table::Positions => (None, "ticker"),
        _ => (Some("at"), "event_id::text"),
    }
}

async fn compare_tables(
    store: &EventStore,
    client: &mut Client,
    stream_id: &str,
    account: &str,
    window: Window,
) -> Result<Vec<TableComparison>, ReplayError> {
    #[allow(clippy::disallowed_methods)] // a scratch schema's unique name, not a decision
    let schema = format!("tape_verify_{}", uuid::Uuid::now_v7().simple());
    let target = Target::scratch(&schema);
    let result: Result<Vec<TableComparison>, ReplayError> = async {
        let upto = projections::checkpoints(&*client, TableSet::ALL, false).await?;
        target
            .create(&*client, TableSet::ALL)
            .await
            .map_err(|cause| ReplayError::Database { context: format!("creating scratch schema {schema}"), cause })?;
        projections::project_stream(store, client, &target, stream_id, &upto).await?;
        let mut out = Vec::new();
        for table in Table::ALL {
            out.push(compare_table(client, table, &target, account, window).await?);
        }
        Ok(out)
    }
    .await;
    let dropped = drop_schema(client, &schema).await;
    let out = result?;
    dropped.map_err(|cause| ReplayError::Database { context: format!("dropping scratch schema {schema}"), cause })?;
    Ok(out)
}

async fn compare_table(
    client: &Client,
    table: Table,
    scratch: &Target,
    account: &str,
    window: Window,
) -> Result<TableComparison, ReplayError> {
    let (time_column, key) = table_keys(table);
    let filter = time_column.map_or_else(String::new, |c| format!(" AND {c} >= $2 AND {c} < $3"));
    let select = |target: &Target| {
        format!("SELECT {key} AS k, to_jsonb(t) AS j FROM {} t WHERE account_id = $1{filter}", target.table(table))
    };
    let (live, rebuilt) = (select(&Target::live()), select(scratch));
    let counts = format!(
        "SELECT (SELECT count(*) FROM ({live}) a), (SELECT count(*) FROM ({rebuilt}) b), \
         (SELECT count(*) FROM ({live}) l FULL JOIN ({rebuilt}) s ON l.k = s.k WHERE l.j IS DISTINCT FROM s.j)"
    );
    let first = format!(
        "SELECT coalesce(l.k, s.k), l.j, s.j FROM ({live}) l FULL JOIN ({rebuilt}) s ON l.k = s.k \
         WHERE l.j IS DISTINCT FROM s.j ORDER BY 1 LIMIT 5"
    );
    let (start, end) = (window.start().datetime(), window.end().datetime());
    let fail = |cause| ReplayError::Database { context: format!("comparing table {table}"), cause };
    let row = if time_column.is_some() {
        client.query_one(&counts, &[&account, &start, &end]).await
    } else {
        client.query_one(&counts, &[&account]).await
    }
    .map_err(fail)?;
    let mut comparison = TableComparison {
        table,
        live_rows: row.get(0),
        rebuilt_rows: row.get(1),
        differing_rows: row.get(2),
        first: Vec::new(),
    };
    if comparison.differing_rows > 0 {
        let rows = if time_column.is_some() {
            client.query(&first, &[&account, &start, &end]).await
        } else {
            client.query(&first, &[&account]).await
        }
        .map_err(|cause| ReplayError::Database { context: format!("comparing table {table}"), cause })?;
        for row in rows {
            let key: String = row.get(0);
            let live: Option<Value> = row.get(1);
            let rebuilt: Option<Value> = row.get(2);
            match (live, rebuilt) {
                (Some(l), Some(r)) => {
                    for (path, a, b) in json_differences(&l, &r) {
                        comparison.first.push((key.clone(), path, a, b));
                    }
                }
                (l, r) => {
                    let show = |v: Option<Value>| v.map_or_else(|| "(no row)".to_owned(), |_| "row".to_owned());
                    comparison.first.push((key, "(row)".to_owned(), show(l), show(r)));
                }
            }
        }
    }
    Ok(comparison)
}

/// Runs the window's recorded inputs under another configuration, next to the record.
///
/// # Errors
/// [`ReplayError`].
pub async fn what_if(
    store: &EventStore,
    account: &str,
    window: Window,
    over: Override,
    progress: &mut dyn ReplayProgress,
) -> Result<Report, ReplayError> {
    let stream_id = ids::account_stream(account);
    let (start, end) = (window.start(), window.end());
    let mut state = tape_commands::State::default();
    let mut run: Option<WhatIf> = None;
    let mut over = Some(over);
    let mut rows = store.stream_stream(&stream_id, 1).await?;
    let mut day: Vec<Recorded> = Vec::new();
    let mut day_date: Option<NaiveDate> = None;
    let mut read: u64 = 0;
    while let Some(row) = rows.next().await {
        let event = recorded(row?.event);
        read += 1;
        if read.is_multiple_of(65_536) {
            progress.events(read);
        }
        if event.at >= end {
            break;
        }
        if event.at < start {
            let stamped = event.decode().map_err(|source| ReplayError::Decode { position: event.position, source })?;
            state.apply(&stamped);
            continue;
        }
        let date = exchange_date(event.at);
        // A new day starts at an input (a step never spans two buffers).
        if event.is_input() && day_date.is_some_and(|d| d != date) {
            let whatif = match run.as_mut() {
                Some(w) => w,
                None => run.insert(WhatIf::start(
                    std::mem::take(&mut state),
                    start,
                    over.take().unwrap_or(Override::Sets(Vec::new())),
                )?),
            };
            whatif.day(&day)?;
            day.clear();
        }
        if event.is_input() {
            day_date = Some(date);
        }
        day.push(event);
    }
    drop(rows);
    progress.events(read);
    if read == 0 {
        return Err(ReplayError::NoStream { stream: stream_id, account: account.to_owned() });
    }
    if day.is_empty() && run.is_none() {
        return Err(ReplayError::EmptyWindow { stream: stream_id, from: window.from, to: window.to });
    }
    let mut whatif = match run {
        Some(w) => w,
        None => WhatIf::start(state, start, over.take().unwrap_or(Override::Sets(Vec::new())))?,
    };
    whatif.day(&day)?;
    Ok(whatif.finish())
}

/// Account streams' events per exchange day, for choosing a window (first and last day).
///
/// # Errors
/// A database failure.
pub async fn stream_days(store: &EventStore, account: &str) -> Result<Option<(NaiveDate, NaiveDate)>, ReplayError> {
    let stream_id = ids::account_stream(account);
    let client = store.pool().get().await.map_err(StoreError::from)?;
    let row = client
        .query_one(
            "SELECT (SELECT at FROM events WHERE stream_id = $1 ORDER BY stream_version LIMIT 1), \
             (SELECT at FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1)",
            &[&stream_id],
        )
        .await
        .map_err(StoreError::from)?;
    let first: Option<chrono::DateTime<chrono::Utc>> = row.get(0);
    let last: Option<chrono::DateTime<chrono::Utc>> = row.get(1);
    Ok(first
        .zip(last)
        .map(|(a, b)| (exchange_date(Timestamp::from_datetime(a)), exchange_date(Timestamp::from_datetime(b)))))
}
