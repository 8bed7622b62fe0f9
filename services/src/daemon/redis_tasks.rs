//! Everything Redis does for the daemon: the outbox relay, the broker adapter and the
//! caches. PostgreSQL stays the truth: nothing here is read back for a decision, and a
//! Redis outage only delays orders reaching the broker (the relay resumes from its
//! checkpoint in PostgreSQL) and leaves the caches stale until they are rebuilt.
//!
//! - **Outbox relay** (per account): after a commit that placed an order (and every
//!   second), reads the account's stream after its checkpoint (`outbox_checkpoints`),
//!   RPUSHes each `OrderPlaced` as an [`OrderJob`] to `{prefix}:queue:broker_orders`,
//!   then moves the checkpoint: at least once (a crash between the two pushes again).
//! - **Broker adapter** (one per daemon): BLPOPs jobs, submits them with the order id as
//!   `client_order_id` (a repeat is harmless), and feeds the acknowledgement back to the
//!   account's processor as `OrderSubmitted`. A job for an account this daemon does not
//!   run goes back to the tail of the queue.
//! - **Caches** (per account): the dedupe set `{prefix}:dedupe:trading:{account}` (SADD of
//!   each consumed recommendation id) and the breaker state
//!   `{prefix}:trading:circuit_breaker:{account}` (JSON), written after commits; when
//!   the breaker key is found missing (a flush, a new Redis) both are rebuilt from
//!   PostgreSQL and the processor's state.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tape_commands::State;
use tape_events::{Event, Timestamp};
use tokio::sync::{mpsc, watch, Notify};

use crate::broker::{Broker, OrderJob};
use crate::config::RedisConfig;
use crate::describe;
use crate::store::EventStore;

use super::metrics as m;
use super::processor::{input_now, Msg};
use super::Shared;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The Redis key names of SPEC 8.
#[derive(Debug, Clone)]
pub struct Keys {
    pub prefix: String,
}

impl Keys {
    #[must_use]
    pub fn orders(&self) -> String {
        format!("{}:queue:broker_orders", self.prefix)
    }
    #[must_use]
    pub fn dedupe(&self, account: &str) -> String {
        format!("{}:dedupe:trading:{account}", self.prefix)
    }
    #[must_use]
    pub fn breaker(&self, account: &str) -> String {
        format!("{}:trading:circuit_breaker:{account}", self.prefix)
    }
}

/// A lazily made, self-reconnecting Redis connection (a `ConnectionManager` once the
/// server has answered the first time).
pub struct RedisLink {
    client: Option<redis::Client>,
    url: String,
    manager: Option<ConnectionManager>,
}

impl RedisLink {
    #[must_use]
    pub fn new(config: &RedisConfig) -> Self {
        Self { client: redis::Client::open(config.url.as_str()).ok(), url: config.url.clone(), manager: None }
    }

    /// The connection, made now if needed.
    ///
    /// # Errors
    /// A message when Redis cannot be reached.
    pub async fn get(&mut self) -> Result<&mut ConnectionManager, String> {
        if self.manager.is_none() {
            let client = self.client.as_ref().ok_or_else(|| format!("invalid redis.url {:?}", self.url))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Duration::from_secs(2))
                .set_response_timeout(Duration::from_secs(5))
                .set_number_of_retries(1)
                .set_max_delay(1000);
            let manager = client
                .get_connection_manager_with_config(config)
                .await
                .map_err(|e| format!("cannot connect to redis {}: {e}", self.url))?;
            self.manager = Some(manager);
        }
        self.manager.as_mut().ok_or_else(|| "no redis connection".to_owned())
    }
}

/// What the processor tells the cache task after a commit that consumed recommendations
/// (the breakers travel through their `watch` channel, which keeps only the newest).
#[derive(Debug, Clone, Default)]
pub struct CacheDelta {
    pub consumed: Vec<String>,
}

/// The breaker cache's value: the active breakers as JSON.
#[must_use]
pub fn breaker_json(state: &State, now: Timestamp) -> String {
    let active: Vec<serde_json::Value> = state
        .breakers
        .iter()
        .filter(|b| b.is_active(now))
        .map(|b| serde_json::json!({"kind": b.kind, "ticker": b.ticker, "until": b.until}))
        .collect();
    serde_json::json!({"tripped": !active.is_empty(), "breakers": active}).to_string()
}

/// The outbox relay of one account. Never returns an error for Redis; returns one when
/// PostgreSQL cannot be read (the account restarts).
///
/// # Errors
/// A message naming what failed in PostgreSQL.
pub async fn outbox_relay(
    account: String,
    store: EventStore,
    keys: Keys,
    mut redis: RedisLink,
    wake: Arc<Notify>,
    shared: Arc<Shared>,
) -> Result<(), String> {
    let stream = tape_events::ids::account_stream(&account);
    let pg = |e: &dyn std::error::Error| format!("outbox of {account}: {e}");
    let client = store.pool().get().await.map_err(|e| pg(&e))?;
    let mut checkpoint: i64 = client
        .query_opt("SELECT stream_version FROM outbox_checkpoints WHERE account_id = $1", &[&account])
        .await
        .map_err(|e| pg(&e))?
        .map_or(0, |r| r.get(0));
    drop(client);
    let queue = keys.orders();
    loop {
        // Only the orders are read; the checkpoint moves to the head read with them.
        let (last, placed) =
            store.read_stream_type(&stream, checkpoint, "OrderPlaced", 500).await.map_err(|e| pg(&e))?;
        if last == checkpoint {
            let version = shared.status(&account).map_or(checkpoint, |s| s.version);
            m::outbox_lag(&account, (version - checkpoint).max(0));
            shared.update_status(&account, |s| s.relayed_version = checkpoint);
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let mut jobs = Vec::new();
        for stored in &placed {
            if let Ok(tape_events::Stamped { event: Event::OrderPlaced(placed), .. }) = stored.decode() {
                let job = OrderJob::from_placed(&account, &placed);
                jobs.push(serde_json::to_string(&job).unwrap_or_default());
            }
        }
        if !jobs.is_empty() {
            let mut backoff = Duration::from_millis(100);
            loop {
                let pushed = match redis.get().await {
                    Ok(conn) => redis::cmd("RPUSH")
                        .arg(&queue)
                        .arg(&jobs)
                        .query_async::<i64>(conn)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                match pushed {
                    Ok(_) => {
                        m::redis_up(true);
                        break;
                    }
                    Err(error) => {
                        m::redis_up(false);
                        let version = shared.status(&account).map_or(checkpoint, |s| s.version);
                        m::outbox_lag(&account, (version - checkpoint).max(0));
                        tracing::warn!(%account, %error, jobs = jobs.len(), "cannot push order jobs to redis; will retry (deciding goes on)");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        // Stored after a push (at least once); an advance over events that are not orders
        // is cheap to read again after a restart, so it is not written.
        if !jobs.is_empty() {
            let client = store.pool().get().await.map_err(|e| pg(&e))?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO outbox_checkpoints (account_id, stream_version) VALUES ($1, $2) \
                     ON CONFLICT (account_id) DO UPDATE SET stream_version = EXCLUDED.stream_version, updated_at = now()",
                )
                .await
                .map_err(|e| pg(&e))?;
            client.execute(&statement, &[&account, &last]).await.map_err(|e| pg(&e))?;
        }
        checkpoint = last;
    }
}

/// The cache writer of one account.
///
/// # Errors
/// A message naming what failed in PostgreSQL while rebuilding.
pub async fn caches(
    account: String,
    store: EventStore,
    keys: Keys,
    mut redis: RedisLink,
    mut deltas: mpsc::Receiver<CacheDelta>,
    mut breakers: watch::Receiver<String>,
) -> Result<(), String> {
    let (dedupe_key, breaker_key) = (keys.dedupe(&account), keys.breaker(&account));
    let mut rebuild = true;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        // A write for each change; the watch value is marked seen before anything else
        // (an unseen one would wake the loop again at once).
        let write = tokio::select! {
            delta = deltas.recv() => {
                let Some(delta) = delta else { return Ok(()) };
                let mut cmd = redis::cmd("SADD");
                cmd.arg(&dedupe_key).arg(&delta.consumed);
                cmd
            }
            changed = breakers.changed() => {
                if changed.is_err() { return Ok(()) };
                let mut cmd = redis::cmd("SET");
                cmd.arg(&breaker_key).arg(breakers.borrow_and_update().as_str());
                cmd
            }
            _ = check.tick() => {
                if !rebuild {
                    let exists = async {
                        let conn = redis.get().await?;
                        redis::cmd("EXISTS").arg(&breaker_key).query_async::<i64>(conn).await.map_err(|e| e.to_string())
                    }.await;
                    match exists {
                        Ok(1) => continue,
                        Ok(_) => tracing::info!(%account, "redis caches are empty; rebuilding them from PostgreSQL"),
                        Err(_) => { m::redis_up(false); rebuild = true; continue; }
                    }
                }
                let consumed = consumed_ids(&store, &account).await?;
                let breaker = breakers.borrow_and_update().clone();
                let result = async {
                    let conn = redis.get().await?;
                    let mut pipe = redis::pipe();
                    pipe.atomic().cmd("DEL").arg(&dedupe_key).ignore();
                    for chunk in consumed.chunks(1000) {
                        pipe.cmd("SADD").arg(&dedupe_key).arg(chunk).ignore();
                    }
                    pipe.cmd("SET").arg(&breaker_key).arg(&breaker).ignore();
                    pipe.query_async::<()>(conn).await.map_err(|e| e.to_string())
                }.await;
                match result {
                    Ok(()) => { m::redis_up(true); rebuild = false; }
                    Err(error) => tracing::debug!(%account, %error, "cannot rebuild the redis caches yet"),
                }
                continue;
            }
        };
        if rebuild {
            continue; // the rebuild writes everything
        }
        let result = async {
            let conn = redis.get().await?;
            write.query_async::<()>(conn).await.map_err(|e| e.to_string())
        }
        .await;
        if let Err(error) = result {
            tracing::debug!(%account, %error, "cache write failed; rebuilding when redis answers");
            m::redis_up(false);
            rebuild = true;
        }
    }
}

/// The recommendation ids the account consumed (passed check d), from PostgreSQL: the
/// server-side form of `PreTradeCheckEvaluated::consumed`.
async fn consumed_ids(store: &EventStore, account: &str) -> Result<Vec<String>, String> {
    let client = store.pool().get().await.map_err(|e| format!("cache rebuild of {account}: {e}"))?;
    let rows = client
        .query(
            "SELECT payload->>'recommendation_id' FROM events WHERE stream_id = $1 \
             AND event_type = 'PreTradeCheckEvaluated' AND payload->>'check' = 'dedupe' \
             AND payload->'passed' = 'true'::jsonb ORDER BY stream_version",
            &[&tape_events::ids::account_stream(account)],
        )
        .await
        .map_err(|e| format!("cache rebuild of {account}: {}", describe(&e)))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The broker adapter: pops order jobs and submits them. Runs until the daemon stops.
pub async fn broker_adapter(broker: Arc<dyn Broker>, keys: Keys, mut redis: RedisLink, shared: Arc<Shared>) {
    let queue = keys.orders();
    let mut backoff = Duration::from_millis(100);
    loop {
        let popped = match redis.get().await {
            Ok(conn) => redis::cmd("BLPOP")
                .arg(&queue)
                .arg(1)
                .query_async::<Option<(String, String)>>(conn)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let job_text = match popped {
            Ok(Some((_, job))) => {
                backoff = Duration::from_millis(100);
                job
            }
            Ok(None) => continue,
            Err(error) => {
                m::redis_up(false);
                tracing::debug!(%error, "broker adapter cannot reach redis; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let job: OrderJob = match serde_json::from_str(&job_text) {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(%error, job = %job_text, "dropping an order job that does not parse");
                continue;
            }
        };
        let Some(route) = shared.route(&job.account_id) else {
            // Not ours (or restarting): back to the tail for whoever runs that account.
            if let Ok(conn) = redis.get().await {
                let _ = redis::cmd("RPUSH").arg(&queue).arg(&job_text).query_async::<i64>(conn).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        submit(&*broker, &job, &route, &shared).await;
    }
}

async fn submit(broker: &dyn Broker, job: &OrderJob, route: &mpsc::Sender<Msg>, shared: &Shared) {
    let mut backoff = Duration::from_millis(100);
    for _ in 0..8 {
        match broker.submit(job).await {
            Ok(order) => {
                let at = shared.clock.now();
                let ack =
                    tape_events::OrderSubmitted { order_id: job.order_id, broker_order_id: order.broker_order_id };
                let _ = route.send(input_now(at, ack)).await;
                return;
            }
            Err(crate::broker::BrokerError::Refused { reason, .. }) => {
                let at = shared.clock.now();
                let _ = route.send(input_now(at, tape_events::OrderRejected { order_id: job.order_id, reason })).await;
                return;
            }
            Err(error) => {
                tracing::warn!(order = %job.order_id, %error, "broker submit failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    // Reconciliation at the next start submits it again (idempotent by client_order_id).
    tracing::error!(order = %job.order_id, "broker submit gave up; reconciliation will retry");
}

/// On start: every open order of the log without a broker order id is looked up at the
/// broker by `client_order_id` and, if unknown there, submitted (a job popped but never
/// submitted before a crash is not lost).
pub async fn reconcile(
    account: String,
    broker: Arc<dyn Broker>,
    state: State,
    route: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
) {
    // A broker with its own reconciliation (Alpaca) reports through its update stream.
    if let Some(reconciled) = broker.reconcile(&account, &state.open_orders) {
        reconciled.await;
        return;
    }
    for order in state.open_orders.iter().filter(|o| o.broker_order_id.is_none()) {
        let known = broker.lookup(order.order_id).await.ok().flatten();
        if let Some(known) = known {
            let at = shared.clock.now();
            let ack = tape_events::OrderSubmitted { order_id: order.order_id, broker_order_id: known.broker_order_id };
            let _ = route.send(input_now(at, ack)).await;
            continue;
        }
        submit(&*broker, &OrderJob::from_open(&account, order), &route, &shared).await;
    }
    if let Ok(open) = broker.open_orders().await {
        for order in open {
            if state.order(order.client_order_id).is_none() {
                tracing::warn!(%account, client_order_id = %order.client_order_id, broker_order_id = %order.broker_order_id,
                    "the broker has an open order the log does not know");
            }
        }
    }
}
