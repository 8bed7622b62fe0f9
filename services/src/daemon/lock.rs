//! One daemon per account: a PostgreSQL session advisory lock per account, held on a
//! dedicated connection for as long as the daemon trades the account. A second daemon
//! waits for it instead of trading. If the connection dies (PostgreSQL restarted, the
//! backend terminated) the lock is gone, and the account's tasks stop until it is taken
//! again (the ledger's optimistic concurrency is the second line of defence).

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::config::DatabaseConfig;
use crate::describe;

/// The lock's key: `hashtextextended('tape-daemon:' || account, 0)`.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended('tape-daemon:' || $1, 0))";

/// A held account lock.
pub struct AccountLock {
    client: Client,
}

impl AccountLock {
    /// Waits for the lock (checking every second); `Ok(None)` on shutdown.
    ///
    /// # Errors
    /// A message when PostgreSQL cannot be reached (the caller retries with backoff).
    pub async fn acquire(
        database: &DatabaseConfig,
        account: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Self>, String> {
        let config = database.pg_config().map_err(|e| e.to_string())?;
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| describe(&e))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %describe(&error), "account lock connection ended");
            }
        });
        let mut waiting_logged = false;
        loop {
            let held: bool = client.query_one(TRY_LOCK, &[&account]).await.map_err(|e| describe(&e))?.get(0);
            if held {
                if waiting_logged {
                    tracing::info!(account, "took the account lock; trading");
                }
                return Ok(Some(Self { client }));
            }
            if !waiting_logged {
                tracing::warn!(account, "another daemon holds this account; waiting instead of trading");
                waiting_logged = true;
            }
            tokio::select! {
                _ = shutdown.changed() => return Ok(None),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Completes when the lock is lost (its connection failed a check or closed).
    pub async fn lost(&self) {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if self.client.is_closed() {
                return;
            }
            let alive = tokio::time::timeout(Duration::from_secs(3), self.client.simple_query("SELECT 1")).await;
            if !matches!(alive, Ok(Ok(_))) {
                return;
            }
        }
    }
}
