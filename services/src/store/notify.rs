//! Announcing appends on the `tape_events` channel after they commit.
//!
//! A bounded queue feeds one background task. When an id arrives the task waits
//! [`COALESCE`] for more, then sends every stream id waiting, deduplicated, in one
//! `pg_notify` statement (one short transaction without an xid, so no WAL flush while
//! PostgreSQL's notify lock is held). A busy writer thus costs one notification
//! statement per 10 ms, not one per append (per append, it cost a single writer about a
//! third of its throughput here). When the queue is full the id is dropped:
//! notifications are wake-up hints, and listeners also poll.

use std::time::Duration;

use std::collections::BTreeSet;

use tokio::sync::mpsc;

use super::{EventStore, NotifyMode};

/// The channel appends are announced on; the payload is the stream id.
pub const EVENTS_CHANNEL: &str = "tape_events";

/// Stream ids waiting to be announced, at most.
const QUEUE_CAPACITY: usize = 4096;

/// How long the notifier gathers ids before sending them: the latency it adds.
pub const COALESCE: Duration = Duration::from_millis(10);

/// Stream ids announced by one statement, at most.
const BATCH_MAX: usize = 512;

const NOTIFY_SQL: &str = "SELECT pg_notify('tape_events', s) FROM unnest($1::text[]) AS s";

impl EventStore {
    /// Queues `stream_id` for an after-commit notification (in that mode).
    pub(super) fn notify_after_commit(&self, stream_id: &str) {
        if self.inner.options.notify != NotifyMode::AfterCommit {
            return;
        }
        let sender = self.inner.notifier.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
            tokio::spawn(run_notifier(self.inner.pool.clone(), receiver));
            sender
        });
        if sender.try_send(stream_id.to_owned()).is_err() {
            tracing::debug!(stream_id, "notification queue full; listeners will catch up by polling");
        }
    }
}

async fn run_notifier(pool: deadpool_postgres::Pool, mut receiver: mpsc::Receiver<String>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    // Ends when every EventStore clone (every sender) is gone and the queue is drained.
    while receiver.recv_many(&mut batch, BATCH_MAX).await > 0 {
        tokio::time::sleep(COALESCE).await;
        while batch.len() < BATCH_MAX {
            match receiver.try_recv() {
                Ok(stream_id) => batch.push(stream_id),
                Err(_) => break,
            }
        }
        let streams: Vec<String> = batch.drain(..).collect::<BTreeSet<_>>().into_iter().collect();
        let result = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            client.execute(NOTIFY_SQL, &[&streams]).await.map_err(|e| e.to_string())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, streams = streams.len(), "cannot send append notifications");
        }
    }
}
