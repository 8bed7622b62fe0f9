//! `tape store check`: a smoke test of a migrated database, for newcomers and the demo.
//!
//! Appends three events to a scratch stream `smoke-<uuid>`, retries the same append (it
//! must be recognised, not duplicated), tries a stale version (it must conflict), reads
//! the events back by stream and from the global log, and verifies the stream's chain.
//! The scratch stream stays (events are immutable); its id starts with `smoke-`, so
//! projections, which fold `account-*` streams, never see it.

use std::time::Duration;

use tape_events::payload::{Event, SchedulerTick};
use tape_events::{Metadata, NewEvent, TickKind, Timestamp};
use uuid::Uuid;

use crate::store::{AppendError, EventStore, GlobalCursor, StoreError};

/// Why the smoke test failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store check failed on stream {stream}: {what}")]
    Failed { stream: String, what: String },
}

/// What the smoke test saw: one line per step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub stream_id: String,
    pub head_hash: String,
    pub lines: Vec<String>,
}

/// How long the global read may wait for the watermark to pass the scratch events.
const GLOBAL_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the smoke test against `store`.
///
/// # Errors
/// [`CheckError`] naming the first step that did not behave.
#[allow(clippy::disallowed_methods)] // a service: it mints ids and reads the clock
pub async fn run(store: &EventStore) -> Result<CheckReport, CheckError> {
    let stream_id = format!("smoke-{}", Uuid::now_v7());
    let failed = |what: String| CheckError::Failed { stream: stream_id.clone(), what };
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let metadata = Metadata { actor: Some("tape store check".to_owned()), ..Metadata::default() };
    let events: Vec<NewEvent> = [TickKind::Poll, TickKind::Snapshot, TickKind::Close]
        .into_iter()
        .map(|tick| Event::SchedulerTick(SchedulerTick { tick }).into_new(Uuid::now_v7(), now, metadata.clone()))
        .collect();
    let mut lines = Vec::new();

    let appended = store.append(&stream_id, 0, &events).await?;
    let positions: Vec<String> = appended.events.iter().map(|e| e.position.to_string()).collect();
    lines.push(format!(
        "appended {} events to {stream_id} at positions {}",
        appended.events.len(),
        positions.join(", ")
    ));

    let retried = store.append(&stream_id, 0, &events).await?;
    if !retried.already_stored || retried.events != appended.events {
        return Err(failed("a retried append was not recognised as already stored".to_owned()));
    }
    lines.push("a retried append returned the original positions and wrote nothing".to_owned());

    match store.append(&stream_id, 1, &[tick_event(now, &metadata)]).await {
        Err(AppendError::Conflict { actual: 3, .. }) => {
            lines.push("an append at a stale version was refused as a conflict".to_owned());
        }
        Ok(_) => return Err(failed("an append at stale version 1 was accepted".to_owned())),
        Err(other) => return Err(other.into()),
    }

    let stored = store.read_stream(&stream_id, 1, 10).await?;
    let same = stored.len() == events.len()
        && stored.iter().zip(&events).all(|(s, e)| s.event_id == e.event_id && s.payload == e.payload && s.at == e.at);
    if !same {
        return Err(failed(format!("read back {} events by stream, not the {} appended", stored.len(), events.len())));
    }
    lines.push(format!("read {} events back by stream, identical", stored.len()));

    let first = events.first().map(|e| e.event_id).unwrap_or_default();
    let cursor = store.cursor_of(first).await?.ok_or_else(|| failed(format!("event {first} not found")))?;
    let before = GlobalCursor { tx_id: cursor.tx_id, position: cursor.position - 1 };
    let deadline = tokio::time::Instant::now() + GLOBAL_READ_TIMEOUT;
    let global = loop {
        let read = store.read_all(before, events.len()).await?;
        if read.len() == events.len() || tokio::time::Instant::now() >= deadline {
            break read;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let global_ids: Vec<Uuid> = global.iter().map(|e| e.event.event_id).collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    if global_ids != ids {
        return Err(failed(format!(
            "the global log from {before} returned {} of the {} events (a transaction left open elsewhere holds the watermark back?)",
            global_ids.len(),
            ids.len()
        )));
    }
    lines.push(format!("read them from the global log after cursor {before}, in order"));

    let report = store.verify_stream(&stream_id, Some(&appended.head_hash)).await?;
    if let Some(problem) = report.first_problem() {
        return Err(failed(format!("chain verification failed at {problem}")));
    }
    let head_hash = hex::encode(appended.head_hash);
    lines.push(format!("verified the chain: {} events, head {head_hash}", report.events_checked));
    Ok(CheckReport { stream_id, head_hash, lines })
}

#[allow(clippy::disallowed_methods)] // a service: it mints ids
fn tick_event(at: Timestamp, metadata: &Metadata) -> NewEvent {
    Event::SchedulerTick(SchedulerTick { tick: TickKind::Poll }).into_new(Uuid::now_v7(), at, metadata.clone())
}
