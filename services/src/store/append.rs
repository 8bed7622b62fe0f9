//! Appending: the chain computed client-side, the head moved and the rows inserted in one
//! statement (see the module docs of [`crate::store`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use tape_events::chain::{self, Hash, GENESIS};
use tape_events::{Metadata, NewEvent};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use super::{AppendError, EventStore, Head, NotifyMode};

/// The most events one append may carry.
pub const MAX_BATCH: usize = 10_000;

/// The longest stream id, in bytes.
const MAX_STREAM_ID_BYTES: usize = 256;

/// Attempts on a stale cached head before giving up with a conflict.
const MAX_ATTEMPTS: usize = 3;

/// Where one appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub event_id: Uuid,
    /// Global position.
    pub position: i64,
    pub stream_version: i64,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    pub stream_id: String,
    /// One per appended event, in the order given.
    pub events: Vec<Appended>,
    /// The stream version after the last of these events.
    pub version: i64,
    /// The hash of the last of these events (the stream's head right after them).
    pub head_hash: Hash,
    /// `true` when every event was already stored at exactly these places by an earlier
    /// attempt of the same append: nothing was written now.
    pub already_stored: bool,
}

impl AppendOutcome {
    /// The global position of the last event.
    #[must_use]
    pub fn last_position(&self) -> i64 {
        self.events.last().map_or(0, |e| e.position)
    }
}

/// The chain of a batch: versions and hashes, computed from the head it extends.
struct Chained {
    versions: Vec<i64>,
    prev: Vec<Hash>,
    hashes: Vec<Hash>,
}

fn chain_batch(stream_id: &str, expected_version: i64, head: &Hash, events: &[NewEvent]) -> Chained {
    let mut versions = Vec::with_capacity(events.len());
    let mut prev = Vec::with_capacity(events.len());
    let mut hashes = Vec::with_capacity(events.len());
    let mut last = *head;
    for (version, event) in (expected_version + 1..).zip(events) {
        let hash = chain::link(&last, &event.chained(stream_id, version));
        versions.push(version);
        prev.push(last);
        hashes.push(hash);
        last = hash;
    }
    Chained { versions, prev, hashes }
}

/// The append statement, in its four forms: new or existing stream, with or without
/// `pg_notify` inside.
///
/// Parameters: `$1` stream, `$2` new version, `$3` new head hash, `$4..$12` the event
/// columns as arrays; for an existing stream also `$13` expected version, `$14` the head
/// hash the chain was computed from.
fn append_sql(new_stream: bool, notify: bool) -> &'static str {
    static FORMS: OnceLock<[String; 4]> = OnceLock::new();
    let forms = FORMS.get_or_init(|| {
        let build = |new_stream: bool, notify: bool| {
            let head = if new_stream {
                "INSERT INTO streams (stream_id, version, head_hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (stream_id) DO NOTHING RETURNING 1"
            } else {
                "UPDATE streams SET version = $2, head_hash = $3 \
                 WHERE stream_id = $1 AND version = $13 AND head_hash = $14 RETURNING 1"
            };
            let (notify_cte, notify_from) = if notify {
                (", notified AS (SELECT pg_notify('tape_events', $1) FROM head)", ", notified")
            } else {
                ("", "")
            };
            format!(
                "WITH head AS ({head}){notify_cte} \
                 INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, \
                                     payload, metadata, at, prev_hash, hash) \
                 SELECT $1, e.v, e.id, e.t, e.sv, e.p, e.m, e.at, e.ph, e.h \
                 FROM head{notify_from}, \
                      unnest($4::bigint[], $5::uuid[], $6::text[], $7::int4[], $8::jsonb[], $9::jsonb[], \
                             $10::timestamptz[], $11::bytea[], $12::bytea[]) AS e(v, id, t, sv, p, m, at, ph, h) \
                 ORDER BY e.v \
                 RETURNING position, stream_version"
            )
        };
        [build(true, false), build(true, true), build(false, false), build(false, true)]
    });
    &forms[usize::from(!new_stream) * 2 + usize::from(notify)]
}

const READ_HEAD_SQL: &str = "SELECT version, head_hash FROM streams WHERE stream_id = $1";
const FIND_IDS_SQL: &str =
    "SELECT event_id, stream_id, stream_version, position, hash FROM events WHERE event_id = ANY($1)";

fn validate(stream_id: &str, expected_version: i64, events: &[NewEvent]) -> Result<(), AppendError> {
    let invalid = |reason: String| AppendError::Invalid { stream: stream_id.to_owned(), reason };
    if stream_id.is_empty() || stream_id.len() > MAX_STREAM_ID_BYTES || stream_id.contains('\0') {
        return Err(invalid(format!("a stream id must be 1 to {MAX_STREAM_ID_BYTES} bytes without NUL")));
    }
    if expected_version < 0 {
        return Err(invalid(format!("expected version {expected_version} is negative (0 means a new stream)")));
    }
    if events.is_empty() {
        return Err(invalid("no events to append".to_owned()));
    }
    if events.len() > MAX_BATCH {
        return Err(invalid(format!("{} events in one append, at most {MAX_BATCH}", events.len())));
    }
    let mut seen = HashSet::with_capacity(events.len());
    for event in events {
        if !seen.insert(event.event_id) {
            return Err(invalid(format!("event id {} appears twice in one append", event.event_id)));
        }
        if event.event_type.is_empty() {
            return Err(invalid(format!("event {} has an empty event type", event.event_id)));
        }
    }
    Ok(())
}

/// What one attempt of the append statement did.
enum Attempt {
    /// The head moved and the events are in: (position, stream_version) per event.
    Written(Vec<(i64, i64)>),
    /// The head was not where we thought: nothing written.
    HeadMoved,
}

impl EventStore {
    /// Appends `events` to `stream_id` in one transaction, if the stream is at
    /// `expected_version` (0: the stream must not exist yet).
    ///
    /// A retry of an append that already committed (same event ids, same stream, same
    /// versions) returns the original positions and writes nothing.
    ///
    /// # Errors
    /// - [`AppendError::Conflict`]: the stream is not at `expected_version`; nothing written.
    /// - [`AppendError::DuplicateEventId`]: an event id is already stored elsewhere.
    /// - [`AppendError::Invalid`]: an empty batch, a bad stream id or version, an id twice.
    /// - [`AppendError::Pool`], [`AppendError::Database`]: infrastructure; safe to retry.
    pub async fn append(
        &self,
        stream_id: &str,
        expected_version: i64,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, AppendError> {
        validate(stream_id, expected_version, events)?;
        let db_error = |cause| AppendError::Database { stream: stream_id.to_owned(), cause };
        let client =
            self.inner.pool.get().await.map_err(|cause| AppendError::Pool { stream: stream_id.to_owned(), cause })?;

        let mut known =
            if expected_version == 0 { Some(GENESIS) } else { self.cached_head(stream_id, expected_version) };
        for _ in 0..MAX_ATTEMPTS {
            let (prev, fresh) = match known.take() {
                Some(hash) => (hash, expected_version == 0),
                None => match read_head(&client, stream_id).await.map_err(db_error)? {
                    Some(head) if head.version == expected_version => {
                        self.remember_head(stream_id, head);
                        (head.hash, true)
                    }
                    _ => return self.resolve_conflict(&client, stream_id, expected_version, events).await,
                },
            };
            let chained = chain_batch(stream_id, expected_version, &prev, events);
            match self.try_append(&client, stream_id, expected_version, &prev, events, &chained).await {
                Ok(Attempt::Written(rows)) => {
                    let version = expected_version + i64::try_from(events.len()).unwrap_or(i64::MAX);
                    let head_hash = chained.hashes.last().copied().unwrap_or(prev);
                    self.remember_head(stream_id, Head { version, hash: head_hash });
                    self.notify_after_commit(stream_id);
                    let events = outcome_events(events, &chained.versions, &rows);
                    return Ok(AppendOutcome {
                        stream_id: stream_id.to_owned(),
                        events,
                        version,
                        head_hash,
                        already_stored: false,
                    });
                }
                Ok(Attempt::HeadMoved) => {
                    self.forget_head(stream_id);
                    if fresh {
                        return self.resolve_conflict(&client, stream_id, expected_version, events).await;
                    }
                    // A stale cached head: read the real one and compute the chain again.
                }
                Err(error) if is_unique_violation(&error) => {
                    self.forget_head(stream_id);
                    return self.resolve_conflict(&client, stream_id, expected_version, events).await;
                }
                Err(error) => return Err(db_error(error)),
            }
        }
        self.resolve_conflict(&client, stream_id, expected_version, events).await
    }

    async fn try_append(
        &self,
        client: &Client,
        stream_id: &str,
        expected_version: i64,
        prev: &Hash,
        events: &[NewEvent],
        chained: &Chained,
    ) -> Result<Attempt, tokio_postgres::Error> {
        let new_stream = expected_version == 0;
        let notify = self.inner.options.notify == NotifyMode::InTransaction;
        let statement = client.prepare_cached(append_sql(new_stream, notify)).await?;

        let new_version = expected_version + i64::try_from(events.len()).unwrap_or(i64::MAX);
        let new_head: &[u8] = chained.hashes.last().map_or(prev.as_slice(), |h| h.as_slice());
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type).collect();
        let schema_versions: Vec<i32> = events.iter().map(|e| e.schema_version).collect();
        let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
        let metadata: Vec<Json<&Metadata>> = events.iter().map(|e| Json(&e.metadata)).collect();
        let ats: Vec<DateTime<Utc>> = events.iter().map(|e| e.at.datetime()).collect();
        let prevs: Vec<&[u8]> = chained.prev.iter().map(|h| h.as_slice()).collect();
        let hashes: Vec<&[u8]> = chained.hashes.iter().map(|h| h.as_slice()).collect();
        let prev_slice: &[u8] = prev.as_slice();

        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &stream_id,
            &new_version,
            &new_head,
            &chained.versions,
            &ids,
            &types,
            &schema_versions,
            &payloads,
            &metadata,
            &ats,
            &prevs,
            &hashes,
        ];
        if !new_stream {
            params.push(&expected_version);
            params.push(&prev_slice);
        }
        let rows = client.query(&statement, &params).await?;
        if rows.is_empty() {
            return Ok(Attempt::HeadMoved);
        }
        let mut written = Vec::with_capacity(rows.len());
        for row in &rows {
            written.push((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?));
        }
        Ok(Attempt::Written(written))
    }

    /// The head did not move: a conflict, a retry whose first attempt committed, or an
    /// event id reused elsewhere. Writes nothing.
    async fn resolve_conflict(
        &self,
        client: &Client,
        stream_id: &str,
        expected_version: i64,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, AppendError> {
        let db_error = |cause| AppendError::Database { stream: stream_id.to_owned(), cause };
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        // Both queries go out together (tokio-postgres pipelines concurrent queries).
        let (head, found) =
            futures_util::future::try_join(read_head(client, stream_id), client.query(FIND_IDS_SQL, &[&ids]))
                .await
                .map_err(db_error)?;
        let actual = head.map_or(0, |h| h.version);
        if let Some(head) = head {
            self.remember_head(stream_id, head);
        }

        let mut stored: BTreeMap<Uuid, (String, i64, i64, Vec<u8>)> = BTreeMap::new();
        for row in &found {
            let id: Uuid = row.try_get(0).map_err(db_error)?;
            stored.insert(
                id,
                (
                    row.try_get(1).map_err(db_error)?,
                    row.try_get(2).map_err(db_error)?,
                    row.try_get(3).map_err(db_error)?,
                    row.try_get(4).map_err(db_error)?,
                ),
            );
        }

        let mut replayed = Vec::with_capacity(events.len());
        for (version, event) in (expected_version + 1..).zip(events) {
            match stored.get(&event.event_id) {
                Some((s, v, position, _)) if s == stream_id && *v == version => {
                    replayed.push(Appended { event_id: event.event_id, position: *position, stream_version: version });
                }
                Some((s, v, position, _)) => {
                    return Err(AppendError::DuplicateEventId {
                        event_id: event.event_id,
                        stream: stream_id.to_owned(),
                        stored_stream: s.clone(),
                        stored_version: *v,
                        position: *position,
                    });
                }
                None => {}
            }
        }
        if replayed.len() == events.len() {
            let head_hash = events
                .last()
                .and_then(|e| stored.get(&e.event_id))
                .and_then(|(_, _, _, hash)| Hash::try_from(hash.as_slice()).ok())
                .unwrap_or(GENESIS);
            let version = replayed.last().map_or(expected_version, |e| e.stream_version);
            return Ok(AppendOutcome {
                stream_id: stream_id.to_owned(),
                events: replayed,
                version,
                head_hash,
                already_stored: true,
            });
        }
        Err(AppendError::Conflict { stream: stream_id.to_owned(), expected: expected_version, actual })
    }

    /// The head of a stream as stored (`None`: no such stream).
    ///
    /// # Errors
    /// [`super::StoreError`] on a database failure or a corrupt head row.
    pub async fn stream_head(&self, stream_id: &str) -> Result<Option<(i64, Hash)>, super::StoreError> {
        let client = self.inner.pool.get().await?;
        Ok(read_head(&client, stream_id).await?.map(|h| (h.version, h.hash)))
    }
}

async fn read_head(client: &Client, stream_id: &str) -> Result<Option<Head>, tokio_postgres::Error> {
    let statement = client.prepare_cached(READ_HEAD_SQL).await?;
    let Some(row) = client.query_opt(&statement, &[&stream_id]).await? else {
        return Ok(None);
    };
    let version: i64 = row.try_get(0)?;
    let hash: Vec<u8> = row.try_get(1)?;
    // The column is CHECKed to 32 bytes; another length can only come from tampering. The
    // placeholder then matches no stored head, so appends to the stream conflict until it
    // is repaired, and verify reports the stream.
    let hash = Hash::try_from(hash.as_slice()).unwrap_or(GENESIS);
    Ok(Some(Head { version, hash }))
}

fn outcome_events(events: &[NewEvent], versions: &[i64], rows: &[(i64, i64)]) -> Vec<Appended> {
    let by_version: BTreeMap<i64, i64> = rows.iter().map(|&(position, version)| (version, position)).collect();
    events
        .iter()
        .zip(versions)
        .map(|(event, &version)| Appended {
            event_id: event.event_id,
            position: by_version.get(&version).copied().unwrap_or(0),
            stream_version: version,
        })
        .collect()
}

fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_statement_forms_differ_only_where_they_should() {
        assert!(append_sql(true, false).contains("ON CONFLICT (stream_id) DO NOTHING"));
        assert!(!append_sql(true, false).contains("pg_notify"));
        assert!(append_sql(true, true).contains("pg_notify('tape_events', $1)"));
        assert!(append_sql(false, false).contains("version = $13 AND head_hash = $14"));
        assert!(append_sql(false, true).contains("pg_notify"));
    }

    #[test]
    fn validation_names_the_stream_and_the_problem() {
        let error = validate("s", -1, &[]).unwrap_err().to_string();
        assert_eq!(error, "invalid append to stream \"s\": expected version -1 is negative (0 means a new stream)");
        assert!(validate("s", 0, &[]).unwrap_err().to_string().ends_with("no events to append"));
        assert!(validate("", 0, &[]).is_err());
    }
}
