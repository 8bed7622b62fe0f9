//! Reading: one stream in version order, or the global log in `(tx_id, position)` order up
//! to the transaction-id watermark (see the module docs of [`crate::store`]).

use std::error::Error;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use tape_events::chain::Hash;
use tape_events::{Metadata, StoredEvent, Timestamp};
use tokio_postgres::types::{FromSql, IsNull, Json, ToSql, Type};
use tokio_postgres::{Row, RowStream};
use uuid::Uuid;

use super::{EventStore, StoreError};

/// A place in the global log: after the event at `(tx_id, position)`.
///
/// Global order is `(tx_id, position)`, not `position` alone: see the module docs.
/// Persist both numbers as a projection's checkpoint. [`GlobalCursor::START`] is before
/// every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GlobalCursor {
    /// The writing transaction's id (`xid8`, never wraps).
    pub tx_id: u64,
    pub position: i64,
}

impl GlobalCursor {
    /// Before every event.
    pub const START: Self = Self { tx_id: 0, position: 0 };
}

impl fmt::Display for GlobalCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tx_id, self.position)
    }
}

/// An event read from the global log, with the cursor just past it.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalEvent {
    pub cursor: GlobalCursor,
    pub event: StoredEvent,
}

/// PostgreSQL's `xid8` (a 64-bit transaction id), for parameters and columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Xid8(pub(crate) u64);

impl ToSql for Xid8 {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u64(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::XID8
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Xid8 {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(Self(u64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::XID8
    }
}

/// The columns every read selects, in the order [`decode_row`] expects (a macro, so that
/// the queries below can `concat!` it).
macro_rules! event_columns {
    () => {
        "position, tx_id, stream_id, stream_version, event_id, event_type, schema_version, payload, metadata, at, \
         recorded_at, prev_hash, hash"
    };
}

/// The columns every read selects, in the order [`decode_row`] expects.
pub(crate) const EVENT_COLUMNS: &str = event_columns!();

const READ_ALL_SQL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE (tx_id, position) > ($1, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY tx_id, position LIMIT $3"
);

const STREAM_ALL_SQL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE (tx_id, position) > ($1, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY tx_id, position"
);

const READ_STREAM_SQL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3"
);

const STREAM_STREAM_SQL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version"
);

const STREAM_HEAD_SQL: &str = "SELECT version FROM streams WHERE stream_id = $1";

const READ_STREAM_TYPE_SQL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE stream_id = $1 AND stream_version > $2 AND stream_version <= $3 AND event_type = $4 \
     ORDER BY stream_version LIMIT $5"
);

const WATERMARK_SQL: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())";

/// Decodes one row of [`EVENT_COLUMNS`].
pub(crate) fn decode_row(row: &Row) -> Result<GlobalEvent, StoreError> {
    let position: i64 = row.try_get(0)?;
    let corrupt = |what: &str, e: &dyn fmt::Display| StoreError::Corrupt { position, reason: format!("{what}: {e}") };
    let tx_id: Xid8 = row.try_get(1)?;
    let hash32 = |index: usize, what: &str| -> Result<Hash, StoreError> {
        let bytes: &[u8] = row.try_get(index)?;
        Hash::try_from(bytes)
            .map_err(|_| StoreError::Corrupt { position, reason: format!("{what} is {} bytes, not 32", bytes.len()) })
    };
    let metadata: Json<Metadata> = row.try_get(8).map_err(|e| corrupt("metadata", &e))?;
    let at: DateTime<Utc> = row.try_get(9)?;
    let recorded_at: DateTime<Utc> = row.try_get(10)?;
    let event = StoredEvent {
        position,
        stream_id: row.try_get(2)?,
        stream_version: row.try_get(3)?,
        event_id: row.try_get::<_, Uuid>(4)?,
        event_type: row.try_get(5)?,
        schema_version: row.try_get(6)?,
        payload: row.try_get(7).map_err(|e| corrupt("payload", &e))?,
        metadata: metadata.0,
        at: Timestamp::from_datetime(at),
        recorded_at: Timestamp::from_datetime(recorded_at),
        prev_hash: hash32(11, "prev_hash")?,
        hash: hash32(12, "hash")?,
    };
    Ok(GlobalEvent { cursor: GlobalCursor { tx_id: tx_id.0, position }, event })
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl EventStore {
    /// Up to `limit` events after `after` in global order, none at or past the watermark.
    ///
    /// Pass the last returned event's cursor to read on. An empty result means "nothing
    /// more yet", not "the end": a transaction still running may hold events.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure or an undecodable row.
    pub async fn read_all(&self, after: GlobalCursor, limit: usize) -> Result<Vec<GlobalEvent>, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client.prepare_cached(READ_ALL_SQL).await?;
        let rows = client.query(&statement, &[&Xid8(after.tx_id), &after.position, &limit_param(limit)]).await?;
        rows.iter().map(decode_row).collect()
    }

    /// Every event after `after` in global order, up to the watermark as of the start of
    /// the read, streamed: rows are decoded as they arrive, so memory stays bounded
    /// however many there are. Holds one pooled connection until dropped.
    ///
    /// # Errors
    /// [`StoreError`] when the query cannot start; each item may also be an error.
    pub async fn stream_all(&self, after: GlobalCursor) -> Result<EventStream, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client.prepare_cached(STREAM_ALL_SQL).await?;
        let params: [&(dyn ToSql + Sync); 2] = [&Xid8(after.tx_id), &after.position];
        let rows = client.query_raw(&statement, params).await?;
        Ok(EventStream { rows: Box::pin(rows), _client: client })
    }

    /// Up to `limit` events of a stream from version `from_version` on, in version order.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure or an undecodable row.
    pub async fn read_stream(
        &self,
        stream_id: &str,
        from_version: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client.prepare_cached(READ_STREAM_SQL).await?;
        let rows = client.query(&statement, &[&stream_id, &from_version, &limit_param(limit)]).await?;
        rows.iter().map(|row| decode_row(row).map(|e| e.event)).collect()
    }

    /// Up to `limit` events of one type in a stream after version `after`, and the version
    /// read up to: the stream's head as of the call, or the last event returned when
    /// `limit` of them came back. Pass that version as the next `after`.
    ///
    /// A stream's versions commit in order (each append moves its head row), so every
    /// version up to the head read first is visible to the query that follows it.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure or an undecodable row.
    pub async fn read_stream_type(
        &self,
        stream_id: &str,
        after: i64,
        event_type: &str,
        limit: usize,
    ) -> Result<(i64, Vec<StoredEvent>), StoreError> {
        let client = self.inner.pool.get().await?;
        let head = client.prepare_cached(STREAM_HEAD_SQL).await?;
        let head: i64 = client.query_opt(&head, &[&stream_id]).await?.map_or(Ok(0), |r| r.try_get(0))?;
        if head <= after {
            return Ok((after, Vec::new()));
        }
        let statement = client.prepare_cached(READ_STREAM_TYPE_SQL).await?;
        let rows = client.query(&statement, &[&stream_id, &after, &head, &event_type, &limit_param(limit)]).await?;
        let events: Vec<StoredEvent> =
            rows.iter().map(|row| decode_row(row).map(|e| e.event)).collect::<Result<_, _>>()?;
        let upto = if events.len() >= limit { events.last().map_or(head, |e| e.stream_version) } else { head };
        Ok((upto, events))
    }

    /// Every event of a stream from version `from_version` on, streamed (bounded memory).
    ///
    /// # Errors
    /// [`StoreError`] when the query cannot start; each item may also be an error.
    pub async fn stream_stream(&self, stream_id: &str, from_version: i64) -> Result<EventStream, StoreError> {
        let client = self.inner.pool.get().await?;
        let statement = client.prepare_cached(STREAM_STREAM_SQL).await?;
        let params: [&(dyn ToSql + Sync); 2] = [&stream_id, &from_version];
        let rows = client.query_raw(&statement, params).await?;
        Ok(EventStream { rows: Box::pin(rows), _client: client })
    }

    /// The global cursor of a stored event (`None`: no such event). Reading from just
    /// before it (`position - 1`, same `tx_id`) returns that event first, once its
    /// transaction is below the watermark.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure.
    pub async fn cursor_of(&self, event_id: Uuid) -> Result<Option<GlobalCursor>, StoreError> {
        let client = self.inner.pool.get().await?;
        let row = client.query_opt("SELECT tx_id, position FROM events WHERE event_id = $1", &[&event_id]).await?;
        match row {
            Some(row) => Ok(Some(GlobalCursor { tx_id: row.try_get::<_, Xid8>(0)?.0, position: row.try_get(1)? })),
            None => Ok(None),
        }
    }

    /// The current watermark: every transaction id below it has ended.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure.
    pub async fn watermark(&self) -> Result<u64, StoreError> {
        let client = self.inner.pool.get().await?;
        let row = client.query_one(WATERMARK_SQL, &[]).await?;
        Ok(row.try_get::<_, Xid8>(0)?.0)
    }
}

/// Events streamed from one query; see [`EventStore::stream_all`].
pub struct EventStream {
    // Dropped first: the rows, then the connection they come from.
    rows: Pin<Box<RowStream>>,
    _client: deadpool_postgres::Object,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl Stream for EventStream {
    type Item = Result<GlobalEvent, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rows.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(row))) => Poll::Ready(Some(decode_row(&row))),
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
