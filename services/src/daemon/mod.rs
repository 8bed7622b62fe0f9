//! The live daemon (`tape daemon`, SPEC 8): per account, five producer tasks feeding one
//! ordered processor, plus the outbox relay, the Redis caches, and one broker adapter.
//! See `docs/daemon.md` for the whole picture.
//!
//! ```text
//! decision loop ─┐  (LISTEN tape_recommendations + 60 s poll; poll-tick wake-ups)
//! stop-loss mon. ─┤  (quotes: market_quotes or the simulated market)
//! performance    ─┤  (snapshot/close wake-ups)              ┌→ outbox relay → Redis queue → broker adapter ┐
//! risk tier      ─┼→ bounded mpsc → processor (ledger) ────┤                                              │
//! rebalance      ─┤                                          └→ caches (dedupe set, breaker state)          │
//! reference data ─┘  ←─────────────────────── OrderSubmitted / fills / cancels ──────────────────────────────┘
//! ```
//!
//! The entry is [`run`]`(settings, shutdown)`: tests run the daemon in-process and stop
//! it by completing `shutdown`. Everything time-dependent reads the injected clock.

pub mod broker_updates;
pub mod http;
pub mod lock;
pub mod metrics;
pub mod processor;
pub mod redis_tasks;
pub mod settings;
pub mod tasks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tape_commands::State;
use tape_events::{AccountMode, Config, ConfigActivated, TickKind, Timestamp};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::clock::SharedClock;
use crate::config::{DatabaseConfig, RedisConfig};
use crate::ledger::AccountLedger;
use crate::quotes::{QuoteSource, SimulatedMarket, TableQuotes};
use crate::store::EventStore;

use processor::{input_now, Msg, Plan, Processor};
use redis_tasks::{Keys, RedisLink};
pub use settings::{BrokerTable, DaemonTable, SettingError};

/// Where quotes come from.
#[derive(Debug, Clone)]
pub enum QuoteFeed {
    /// Poll `market_quotes`.
    Table { interval: Duration },
    /// The built-in simulated market.
    Simulated(SimulatedMarket),
    /// Alpaca's market data API (latest trades of the account's tickers).
    Alpaca { settings: Box<crate::broker::alpaca::AlpacaSettings>, credentials: crate::broker::alpaca::Credentials },
}

/// Everything the daemon runs with (validated before [`run`]).
#[derive(Clone)]
pub struct Settings {
    pub accounts: Vec<String>,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    /// The decision configuration: activated (`ConfigActivated`) on start when the
    /// account's active config differs.
    pub decision: Config,
    pub daemon: DaemonTable,
    pub clock: SharedClock,
    pub broker: Arc<dyn Broker>,
    pub quotes: QuoteFeed,
    /// Recorded as the events' actor.
    pub actor: String,
    /// Run the broker adapter (`tape bench daemon` turns it off to see the jobs itself).
    pub broker_adapter: bool,
}

/// What the daemon reports about one account (`/healthz`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountStatus {
    pub running: bool,
    pub healthy: bool,
    pub version: i64,
    pub relayed_version: i64,
    pub equity: String,
    pub cash: String,
    pub positions: usize,
    pub open_orders: usize,
    pub pending: usize,
    pub active_breakers: usize,
    pub last_error: Option<String>,
    /// Held, ordered and pending tickers (what a market data source quotes).
    #[serde(skip)]
    pub tickers: std::collections::BTreeSet<String>,
}

impl AccountStatus {
    fn observe(&mut self, state: &State, now: Timestamp) {
        self.equity = tape_commands::valuation::equity(state).to_string();
        self.cash = state.cash.to_string();
        self.positions = state.positions.len();
        self.open_orders = state.open_orders.len();
        self.pending = state.pending.len();
        self.active_breakers = state.breakers.iter().filter(|b| b.is_active(now)).count();
        self.tickers = state
            .positions
            .keys()
            .cloned()
            .chain(state.open_orders.iter().map(|o| o.ticker.clone()))
            .chain(state.pending.iter().filter_map(|p| match &p.recommendation.validity {
                tape_commands::recommendation::Validity::Valid(fields) => Some(fields.ticker.clone()),
                tape_commands::recommendation::Validity::Invalid(_) => None,
            }))
            .collect();
    }
}

/// State shared by the daemon's tasks.
pub struct Shared {
    pub clock: SharedClock,
    routes: Mutex<BTreeMap<String, mpsc::Sender<Msg>>>,
    statuses: Mutex<BTreeMap<String, AccountStatus>>,
}

impl Shared {
    fn new(clock: SharedClock) -> Self {
        Self { clock, routes: Mutex::default(), statuses: Mutex::default() }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, mpsc::Sender<Msg>>> {
        self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn status_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AccountStatus>> {
        self.statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The processor queue of a running account.
    #[must_use]
    pub fn route(&self, account: &str) -> Option<mpsc::Sender<Msg>> {
        self.routes().get(account).cloned()
    }

    #[must_use]
    pub fn statuses(&self) -> BTreeMap<String, AccountStatus> {
        self.status_map().clone()
    }

    #[must_use]
    pub fn status(&self, account: &str) -> Option<AccountStatus> {
        self.status_map().get(account).cloned()
    }

    fn update_status(&self, account: &str, update: impl FnOnce(&mut AccountStatus)) {
        update(self.status_map().entry(account.to_owned()).or_default());
    }

    fn set_healthy(&self, account: &str, healthy: bool, error: Option<String>) {
        self.update_status(account, |s| {
            s.healthy = healthy;
            if error.is_some() || healthy {
                s.last_error = error;
            }
        });
    }
}

/// Optional hooks for callers that embed the daemon (tests, `tape demo`).
#[derive(Default)]
pub struct Hooks {
    /// Receives the address `/healthz` and `/metrics` are served on.
    pub bound: Option<oneshot::Sender<SocketAddr>>,
    /// Receives the shared state (statuses) once the daemon runs.
    pub shared: Option<oneshot::Sender<Arc<Shared>>>,
}

/// Runs the daemon until `shutdown` completes.
///
/// # Errors
/// A message when the HTTP address cannot be bound or no account is given.
pub async fn run(settings: Settings, shutdown: impl std::future::Future<Output = ()> + Send) -> Result<(), String> {
    run_with(settings, Hooks::default(), shutdown).await
}

/// [`run`] with hooks.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    settings: Settings,
    hooks: Hooks,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), String> {
    if settings.accounts.is_empty() {
        return Err("no account to run: give --account or [daemon] accounts".to_owned());
    }
    let _ = metrics::handle();
    let shared = Arc::new(Shared::new(settings.clock.clone()));
    if let Some(sender) = hooks.shared {
        let _ = sender.send(shared.clone());
    }
    let (stop, stopped) = watch::channel(false);
    let pool = crate::db::pool(&settings.database).map_err(|e| e.to_string())?;
    let store = EventStore::new(pool);
    let keys = Keys { prefix: settings.redis.prefix.clone() };
    let mut tasks = JoinSet::new();
    if !settings.daemon.listen.is_empty() {
        let mut http_stop = stopped.clone();
        let listen = &settings.daemon.listen;
        let shared = shared.clone();
        // Bound here, so a taken or invalid address stops the daemon with its name.
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on daemon.listen {listen}: {e}"))?;
        let bound = hooks.bound;
        tasks.spawn(async move {
            let stop = async move {
                let _ = http_stop.changed().await;
            };
            if let Err(error) = http::serve(listener, shared, bound, stop).await {
                tracing::error!(%error, "http server stopped");
            }
        });
    }
    if settings.broker_adapter {
        if let Some(updates) = settings.broker.take_updates() {
            tasks.spawn(broker_updates::forward(updates, shared.clone()));
        }
        tasks.spawn(redis_tasks::broker_adapter(
            settings.broker.clone(),
            keys.clone(),
            RedisLink::new(&settings.redis),
            shared.clone(),
        ));
    }
    let settings = Arc::new(settings);
    let mut accounts = JoinSet::new();
    for account in &settings.accounts {
        accounts.spawn(supervise(account.clone(), settings.clone(), store.clone(), shared.clone(), stopped.clone()));
    }
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    // Processors finish their batch; give everything a moment, then stop what is left.
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while accounts.join_next().await.is_some() {} }).await;
    accounts.shutdown().await;
    tasks.shutdown().await;
    Ok(())
}

/// Keeps one account running: takes its lock, runs its tasks, and on any failure (lost
/// lock, PostgreSQL gone) stops them and starts again after a capped backoff.
async fn supervise(
    account: String,
    settings: Arc<Settings>,
    store: EventStore,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stopped.borrow() {
            return;
        }
        let lock = match lock::AccountLock::acquire(&settings.database, &account, &mut stopped).await {
            Ok(Some(lock)) => lock,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%account, %error, retry_in_ms = backoff.as_millis() as u64, "cannot take the account lock; PostgreSQL unreachable?");
                shared.set_healthy(&account, false, Some(error));
                metrics::postgres_up(false);
                if wait(&mut stopped, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let outcome = tokio::select! {
            outcome = run_account(&account, &settings, &store, &shared, stopped.clone()) => outcome,
            () = lock.lost() => Err("the account lock was lost (its PostgreSQL connection ended)".to_owned()),
        };
        shared.routes().remove(&account);
        shared.update_status(&account, |s| s.running = false);
        drop(lock);
        match outcome {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%account, %error, retry_in_ms = backoff.as_millis() as u64, "account stopped; restarting");
                shared.set_healthy(&account, false, Some(error));
                if wait(&mut stopped, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Sleeps; `true` when the daemon is stopping.
async fn wait(stopped: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    tokio::select! {
        _ = stopped.changed() => true,
        () = tokio::time::sleep(duration) => *stopped.borrow(),
    }
}

const PERFORMANCE: &[TickKind] = &[TickKind::Snapshot, TickKind::Close];
const RISK_TIER: &[TickKind] = &[TickKind::RiskTier];
const REBALANCE: &[TickKind] = &[TickKind::Rebalance];

/// Runs one account's tasks until shutdown (`Ok`) or a failure (`Err`).
async fn run_account(
    account: &str,
    settings: &Settings,
    store: &EventStore,
    shared: &Arc<Shared>,
    stopped: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut ledger =
        AccountLedger::load(store.clone(), account, &settings.actor).await.map_err(|e| crate::describe(&e))?;
    let Some(opened) = ledger.state().account.clone() else {
        return Err(format!("account {account} is not open (run `tape account open --account {account}`)"));
    };
    let clock = settings.clock.clone();
    if ledger.state().config_hash != settings.decision.hash() {
        let activated = ConfigActivated { config: Box::new(settings.decision.clone()), hash: settings.decision.hash() };
        let Msg::Input(input) = input_now(clock.now(), activated) else { unreachable!("input_now makes an input") };
        ledger.submit(&[input]).await.map_err(|e| crate::describe(&e))?;
        tracing::info!(account, hash = %settings.decision.hash(), "activated the configuration");
    }
    let last_at = processor::last_event_at(&ledger).await.unwrap_or(opened.opened_at);
    let config = ledger.state().config.clone();
    let (sender, receiver) = mpsc::channel(settings.daemon.queue_capacity);
    let (cache_sender, cache_receiver) = mpsc::channel(1024);
    let (breaker_sender, breaker_receiver) = watch::channel(redis_tasks::breaker_json(ledger.state(), clock.now()));
    let outbox = Arc::new(Notify::new());
    let keys = Keys { prefix: settings.redis.prefix.clone() };
    let paper = settings.broker.fills_on_quotes();
    let state = ledger.state().clone();
    shared.update_status(account, |s| {
        s.running = true;
        s.healthy = true;
        s.last_error = None;
        s.version = ledger.version();
        s.observe(&state, last_at);
    });
    let processor = Processor {
        account: account.to_owned(),
        plan: Plan::new(Some(last_at), ledger.state(), paper),
        ledger,
        receiver,
        shared: shared.clone(),
        outbox: outbox.clone(),
        cache: cache_sender,
        breakers: breaker_sender,
        max_batch: settings.daemon.max_batch_inputs,
        last_at,
        shutdown: stopped.clone(),
    };
    let mut tasks: JoinSet<Result<(), String>> = JoinSet::new();
    tasks.spawn(async move { processor.run().await.map_err(|e| crate::describe(&e)) });
    let live = opened.mode == AccountMode::Live;
    tasks.spawn(
        tasks::DecisionLoop {
            account: account.to_owned(),
            live,
            store: store.clone(),
            database: settings.database.clone(),
            config: config.clone(),
            poll_interval: Duration::from_secs(settings.daemon.poll_interval_secs),
            sender: sender.clone(),
            shared: shared.clone(),
        }
        .run(),
    );
    let source: Box<dyn QuoteSource> = match &settings.quotes {
        QuoteFeed::Table { interval } => Box::new(TableQuotes::new(store.pool().clone(), *interval)),
        QuoteFeed::Simulated(market) => Box::new(market.clone().starting_at(clock.now())),
        QuoteFeed::Alpaca { settings, credentials } => {
            let (shared, name) = (shared.clone(), account.to_owned());
            let tickers: crate::quotes::alpaca::Tickers =
                Arc::new(move || shared.status(&name).map(|s| s.tickers).unwrap_or_default());
            Box::new(
                crate::quotes::alpaca::AlpacaQuotes::new(settings, credentials, tickers).map_err(|e| e.to_string())?,
            )
        }
    };
    tasks.spawn(tasks::quote_monitor(source, sender.clone(), shared.clone(), config.clone(), account.to_owned()));
    for kinds in [PERFORMANCE, RISK_TIER, REBALANCE] {
        let task = tasks::scheduler(kinds, sender.clone(), shared.clone(), config.clone());
        tasks.spawn(async move {
            task.await;
            Ok(())
        });
    }
    tasks.spawn(tasks::reference_data(
        store.clone(),
        sender.clone(),
        shared.clone(),
        config.clone(),
        Duration::from_secs(settings.daemon.reference_interval_secs),
    ));
    tasks.spawn(redis_tasks::outbox_relay(
        account.to_owned(),
        store.clone(),
        keys.clone(),
        RedisLink::new(&settings.redis),
        outbox,
        shared.clone(),
    ));
    tasks.spawn(redis_tasks::caches(
        account.to_owned(),
        store.clone(),
        keys,
        RedisLink::new(&settings.redis),
        cache_receiver,
        breaker_receiver,
    ));
    {
        let (account, broker, route, shared) =
            (account.to_owned(), settings.broker.clone(), sender.clone(), shared.clone());
        tasks.spawn(async move {
            redis_tasks::reconcile(account, broker, state, route, shared).await;
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    shared.routes().insert(account.to_owned(), sender);
    tracing::info!(account, "trading");
    let mut stopped = stopped;
    let result = tokio::select! {
        _ = stopped.changed() => {
            // Let the processor finish its batch (it watches the same signal).
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(done) = tasks.join_next().await {
                    if let Ok(Err(error)) = done { tracing::debug!(account, %error, "task ended while stopping"); }
                }
            }).await;
            Ok(())
        }
        done = tasks.join_next() => match done {
            Some(Ok(Ok(()))) if *stopped.borrow() => Ok(()),
            Some(Ok(Ok(()))) => Err("an account task ended".to_owned()),
            Some(Ok(Err(error))) => Err(error),
            Some(Err(error)) => Err(format!("an account task panicked: {error}")),
            None => Ok(()),
        },
    };
    tasks.shutdown().await;
    result
}
