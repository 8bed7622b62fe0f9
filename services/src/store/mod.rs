//! The PostgreSQL event store (SPEC 11).
//!
//! # Schema
//! `events` holds one row per event: a global `position` (identity), the writing
//! transaction's id `tx_id` (`xid8`, `pg_current_xact_id()`), the stream and its
//! version (unique together), the event id (unique), type, schema version, payload and
//! metadata (`jsonb`), `at`, `recorded_at`, and the chain hashes. `streams` holds each
//! stream's head: its version and the hash of its newest event.
//!
//! # Appends: one statement, no global serialization
//! [`EventStore::append`] computes the stream's hash chain client-side from the head it
//! knows, then sends one statement that moves the head *conditionally* and inserts the
//! events:
//!
//! ```sql
//! WITH head AS (UPDATE streams SET version = $new, head_hash = $h
//!               WHERE stream_id = $s AND version = $expected AND head_hash = $prev
//!               RETURNING 1)
//! INSERT INTO events (…) SELECT … FROM head, unnest($versions, $ids, …) … RETURNING position, stream_version
//! ```
//!
//! (`INSERT INTO streams … ON CONFLICT DO NOTHING` for a new stream). Two writers racing
//! for the same version both try to move the same `streams` row; the loser's UPDATE
//! re-checks its `WHERE` after the winner commits, matches nothing, and so inserts
//! nothing: it gets [`AppendError::Conflict`] with the version it lost to. The chain can
//! therefore never fork, and a conflict never writes part of a batch. Writers on
//! *different* streams share no row and do not wait for each other, unlike a design
//! that serializes every append through one ledger-head row (measured here at 18% of raw
//! INSERT throughput with 8 writers).
//!
//! The store caches each stream's head (version, hash) in memory, so the common append is
//! one round trip. On a miss (first append, another process wrote, the caller's
//! expected version differs from the cache) it reads the head with a plain `SELECT` and
//! computes the hashes again. A conflict is never retried for the caller: deciding again
//! on the new state is the caller's job (SPEC 2.1).
//!
//! # Idempotency
//! When the head did not move (a conflict, or a unique violation on `event_id`), the store
//! looks the batch's event ids up. If every one is already in this stream at exactly the
//! versions this append asked for, the append is a retry whose first attempt committed:
//! the original positions are returned ([`AppendOutcome::already_stored`]) and nothing is
//! written. An event id stored anywhere else is [`AppendError::DuplicateEventId`].
//!
//! # Global order and the watermark
//! Identity values are taken when a row is inserted, not when its transaction commits, so
//! positions do not become visible in order: writer A takes position 10, writer B takes
//! 11 and commits first. A reader that saw 11 and remembered "after 11" would skip 10
//! forever. SPEC 11 allows two cures; this store uses the transaction-id watermark:
//! [`EventStore::read_all`] returns only rows whose writing transaction is older than
//! every transaction still running (`tx_id < pg_snapshot_xmin(pg_current_snapshot())`,
//! evaluated in the reading statement's own snapshot), ordered by `(tx_id, position)`.
//! Every transaction below the watermark has ended, and transaction ids only grow, so no
//! row can later appear before a cursor ([`GlobalCursor`]) that a reader has passed. The
//! price: a long-running *writing* transaction anywhere in the cluster holds back global
//! readers (not writers) until it ends. Read-only transactions have no `xid` and hold
//! back nothing.
//!
//! # Notifications
//! After each append commits, the stream id is sent on channel `tape_events`
//! (`NOTIFY tape_events, '<stream_id>'`) so projections and the daemon can `LISTEN`
//! instead of polling. A notification is a wake-up hint: listeners read from their cursor
//! and also poll now and then. By default ([`NotifyMode::AfterCommit`]) a background
//! task sends them, coalesced, right after the commit: PostgreSQL serializes the commits
//! of transactions that `NOTIFY` (a cluster-wide lock held from pre-commit until after
//! the WAL flush), which measured here cut 8-writer throughput to ~38%; see
//! `docs/BENCHMARKS.md`. [`NotifyMode::InTransaction`] puts `pg_notify` in the append
//! statement itself (exactly once per commit, never lost, at that cost).
//!
//! # Verification
//! [`EventStore::verify_all`] and [`EventStore::verify_stream`] recompute every chain with
//! [`tape_events::chain::ChainVerifier`], name the first bad global position, and return
//! each stream's head hash so it can be kept outside the database: deleting the newest
//! events of a stream is only detectable against such a kept head.

mod append;
mod error;
mod notify;
mod read;
mod verify;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use deadpool_postgres::Pool;
use tape_events::chain::Hash;
use tokio::sync::mpsc;

pub use append::{AppendOutcome, Appended, MAX_BATCH};
pub use error::{AppendError, StoreError};
pub use notify::EVENTS_CHANNEL;
pub(crate) use read::{decode_row, Xid8, EVENT_COLUMNS};
pub use read::{EventStream, GlobalCursor, GlobalEvent};
pub use verify::{parse_hash_hex, ChainProblem, ProblemKind, StreamHead, VerifyReport};

/// How appends are announced on [`EVENTS_CHANNEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    /// Sent by a background task right after each commit, coalesced (the default).
    #[default]
    AfterCommit,
    /// `pg_notify` inside the append statement: sent exactly with the commit, but
    /// PostgreSQL then serializes all appending commits.
    InTransaction,
    /// No notifications.
    Off,
}

/// Settings of an [`EventStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    pub notify: NotifyMode,
    /// Streams whose heads are cached; past this the cache is emptied and refilled.
    pub head_cache_capacity: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { notify: NotifyMode::AfterCommit, head_cache_capacity: 100_000 }
    }
}

/// The version and hash of a stream's newest event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    version: i64,
    hash: Hash,
}

/// The event store over a connection pool. Cheap to clone: clones share the pool, the
/// head cache and the notifier.
#[derive(Debug, Clone)]
pub struct EventStore {
    inner: std::sync::Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    options: StoreOptions,
    heads: Mutex<HashMap<String, Head>>,
    /// Started on the first append (which runs inside a tokio runtime).
    notifier: OnceLock<mpsc::Sender<String>>,
}

impl EventStore {
    /// A store over `pool` with the default options.
    #[must_use]
    pub fn new(pool: Pool) -> Self {
        Self::with_options(pool, StoreOptions::default())
    }

    /// A store over `pool` with `options`.
    #[must_use]
    pub fn with_options(pool: Pool, options: StoreOptions) -> Self {
        Self {
            inner: std::sync::Arc::new(Inner {
                pool,
                options,
                heads: Mutex::new(HashMap::new()),
                notifier: OnceLock::new(),
            }),
        }
    }

    /// The pool the store uses.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    #[must_use]
    pub fn options(&self) -> StoreOptions {
        self.inner.options
    }

    /// The cached head of a stream, if the cache has it at `version`.
    fn cached_head(&self, stream_id: &str, version: i64) -> Option<Hash> {
        let heads = self.inner.heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        heads.get(stream_id).filter(|h| h.version == version).map(|h| h.hash)
    }

    fn remember_head(&self, stream_id: &str, head: Head) {
        let mut heads = self.inner.heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if heads.len() >= self.inner.options.head_cache_capacity && !heads.contains_key(stream_id) {
            heads.clear();
        }
        match heads.get_mut(stream_id) {
            // Never move a cached head backwards (a slower append of an older version).
            Some(known) if known.version >= head.version => {}
            Some(known) => *known = head,
            None => {
                heads.insert(stream_id.to_owned(), head);
            }
        }
    }

    fn forget_head(&self, stream_id: &str) {
        let mut heads = self.inner.heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        heads.remove(stream_id);
    }
}
