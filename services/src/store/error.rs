//! The store's errors: what the caller does next is in the variant.

use uuid::Uuid;

use crate::describe;

/// Why an append wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer extended the stream first (or the stream does not exist yet / exists
    /// already). Reload the stream, decide again, append at `actual`.
    #[error("version conflict on stream {stream}: expected version {expected}, the stream is at version {actual}")]
    Conflict { stream: String, expected: i64, actual: i64 },
    /// The event id is already stored elsewhere (another stream, or another version of
    /// this one): not a retry of the same append. A bug in id derivation or a reused id.
    #[error(
        "event id {event_id} appended to stream {stream} is already stored in stream {stored_stream} at version {stored_version} (position {position})"
    )]
    DuplicateEventId { event_id: Uuid, stream: String, stored_stream: String, stored_version: i64, position: i64 },
    /// The append itself is malformed (no events, a negative version, an id twice in one
    /// batch…). Nothing was sent to the database.
    #[error("invalid append to stream {stream:?}: {reason}")]
    Invalid { stream: String, reason: String },
    /// No connection could be had from the pool.
    #[error("cannot get a database connection to append to stream {stream}: {}", describe(cause))]
    Pool { stream: String, cause: deadpool_postgres::PoolError },
    /// The database failed. The append may or may not have committed (a lost reply):
    /// retrying the same events is safe, it is idempotent.
    #[error("database error appending to stream {stream}: {}", describe(cause))]
    Database { stream: String, cause: tokio_postgres::Error },
}

impl AppendError {
    /// Whether this is a version conflict (reload and decide again).
    #[must_use]
    pub const fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// Why a read or a verification failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot get a database connection: {}", describe(.0))]
    Pool(deadpool_postgres::PoolError),
    #[error("database error: {}", describe(.0))]
    Database(tokio_postgres::Error),
    /// A stored row does not decode (a hash that is not 32 bytes, metadata of the wrong
    /// shape): the database was changed outside the store.
    #[error("unreadable event at position {position}: {reason}")]
    Corrupt { position: i64, reason: String },
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid { what: &'static str, value: String, reason: String },
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Pool(error)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Database(error)
    }
}
