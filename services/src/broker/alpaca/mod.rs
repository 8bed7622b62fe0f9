//! The Alpaca broker adapter (Trading API v2), behind the [`Broker`] trait.
//!
//! - **Submit**: a market order, `time_in_force = day`, `client_order_id` = our order id.
//!   A repeat is harmless: when Alpaca refuses a `client_order_id` it already has (422),
//!   the order is looked up by client order id and answered as "already there".
//! - **Follow**: the `trade_updates` WebSocket ([`stream`]) reports acknowledgements,
//!   fills (fill id = the `execution_id`), cancels, expiries and rejects; while the stream
//!   is down, the open orders are polled instead.
//! - **Reconcile** ([`Broker::reconcile`], on start and on every reconnect): each open
//!   order of the log is looked up by `client_order_id`; missed fills are read from the
//!   `FILL` account activities of that order and reported (fill id = the activity id);
//!   orders the broker never got are submitted; what cannot be explained becomes a
//!   [`BrokerUpdate::Discrepancy`] (`BrokerDiscrepancyObserved`), never a synthetic fill.
//!
//! The mapping and the reconciliation plan are pure ([`mapping`]); this module does the
//! I/O. See `docs/alpaca.md`.

pub mod client;
pub mod mapping;
pub mod settings;
pub mod stream;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::{Method, StatusCode};
use tape_events::Qty;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use uuid::Uuid;

pub use client::{Credentials, Http, RetryPolicy};
pub use settings::AlpacaSettings;

use self::mapping::{Step, Tracked};
use self::types::{FillActivity, NewOrder, Order};
use super::{Broker, BrokerError, BrokerOrder, BrokerStatus, BrokerUpdate, OrderJob};

const NAME: &str = "alpaca";
/// Updates waiting for the daemon, at most.
const UPDATES_CAPACITY: usize = 4096;
/// Activity pages read per order, at most (100 activities a page).
const MAX_ACTIVITY_PAGES: usize = 50;
/// Discrepancies remembered (so a repeated pass does not record one again), at most.
const MAX_NOTED: usize = 10_000;

/// Why an Alpaca call or setting failed.
#[derive(Debug, thiserror::Error)]
pub enum AlpacaError {
    #[error("missing alpaca key: set {0} in the environment")]
    MissingKey(&'static str),
    #[error("invalid {key} {value:?}: {reason}")]
    Setting { key: &'static str, value: String, reason: String },
    #[error("alpaca {key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// Worth trying again later (network, rate limit, Alpaca down).
    #[error("alpaca {what} unavailable: {message}")]
    Unavailable { what: String, message: String },
    /// Alpaca answered with a refusal.
    #[error("alpaca {what} refused with http {status} (code {code}): {message}")]
    Status { what: String, status: u16, code: u64, message: String },
    #[error("alpaca {what} answered a body that does not decode: {message}")]
    Decode { what: String, message: String },
}

impl AlpacaError {
    fn unavailable(self) -> BrokerError {
        BrokerError::Unavailable { broker: NAME, message: self.to_string() }
    }
}

/// The adapter's shared state (the stream and poll tasks hold it too).
pub(crate) struct Inner {
    http: Http,
    settings: AlpacaSettings,
    credentials: Credentials,
    tracked: Mutex<BTreeMap<Uuid, Tracked>>,
    sender: mpsc::Sender<BrokerUpdate>,
    connected: AtomicBool,
    /// One pass at a time: a stream event, a reconciliation pass, a submit's bookkeeping.
    pass: tokio::sync::Mutex<()>,
    noted: Mutex<BTreeSet<String>>,
}

/// The Alpaca broker. Dropping it stops its stream and poll tasks.
pub struct AlpacaBroker {
    inner: Arc<Inner>,
    updates: Mutex<Option<mpsc::Receiver<BrokerUpdate>>>,
    tasks: Vec<AbortHandle>,
}

impl std::fmt::Debug for AlpacaBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaBroker")
            .field("trading_url", &self.inner.settings.trading_url())
            .field("live", &self.inner.settings.live)
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

impl Drop for AlpacaBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AlpacaBroker {
    /// Validates the settings, builds the client and starts the `trade_updates` stream
    /// and the polling fallback (call inside a tokio runtime).
    ///
    /// # Errors
    /// [`AlpacaError::Setting`] for a bad setting, [`AlpacaError::Config`] when the HTTP
    /// client cannot be built.
    pub fn start(settings: AlpacaSettings, credentials: Credentials) -> Result<Self, AlpacaError> {
        settings.validate()?;
        let http = Http::new(settings.trading_params(), &credentials)?;
        let (sender, receiver) = mpsc::channel(UPDATES_CAPACITY);
        let inner = Arc::new(Inner {
            http,
            settings,
            credentials,
            tracked: Mutex::default(),
            sender,
            connected: AtomicBool::new(false),
            pass: tokio::sync::Mutex::new(()),
            noted: Mutex::default(),
        });
        let stream = tokio::spawn(stream::run(inner.clone())).abort_handle();
        let poll = tokio::spawn(poll(inner.clone())).abort_handle();
        tracing::info!(trading_url = %inner.settings.trading_url(), live = inner.settings.live, "alpaca broker started");
        Ok(Self { inner, updates: Mutex::new(Some(receiver)), tasks: vec![stream, poll] })
    }

    /// Whether the `trade_updates` stream is connected and listening.
    #[must_use]
    pub fn stream_connected(&self) -> bool {
        self.inner.connected.load(Ordering::SeqCst)
    }

    /// Runs one reconciliation pass over every tracked open order now (what a reconnect does).
    pub async fn reconcile_now(&self) {
        self.inner.pass(None).await;
    }
}

/// The polling fallback: while the stream is down, reconcile the open orders every
/// `poll_interval_secs`.
async fn poll(inner: Arc<Inner>) {
    let every = Duration::from_secs(inner.settings.poll_interval_secs);
    loop {
        tokio::time::sleep(every).await;
        if !inner.connected.load(Ordering::SeqCst) {
            inner.pass(None).await;
        }
    }
}

fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Inner {
    /// `POST /v2/orders`; a duplicate `client_order_id` answers the order Alpaca has.
    async fn post_order(&self, job: &OrderJob) -> Result<Order, BrokerError> {
        let body = NewOrder {
            symbol: job.ticker.clone(),
            qty: job.quantity.to_string(),
            side: job.side.as_str().to_owned(), // Alpaca spells sides as tape does
            order_type: "market".to_owned(),
            time_in_force: "day".to_owned(),
            client_order_id: job.order_id.to_string(),
        };
        let body = serde_json::to_value(&body)
            .map_err(|e| BrokerError::Unavailable { broker: NAME, message: e.to_string() })?;
        let reply = self.http.send(Method::POST, "/v2/orders", Some(&body)).await.map_err(AlpacaError::unavailable)?;
        if reply.status.is_success() {
            return client::decode("POST trading/v2/orders", &reply.body).map_err(AlpacaError::unavailable);
        }
        let error = client::status_error("POST trading/v2/orders".to_owned(), &reply);
        if reply.status == StatusCode::UNPROCESSABLE_ENTITY {
            // A duplicate client_order_id (40010001) or an invalid order: an order
            // Alpaca already has under this id means the first submit went through.
            if let Some(order) = self.get_by_client_id(job.order_id).await.map_err(AlpacaError::unavailable)? {
                tracing::info!(order = %job.order_id, broker_order = %order.id, "alpaca already has this client_order_id; not submitted again");
                return Ok(order);
            }
        }
        match reply.status.as_u16() {
            // Bad keys or Alpaca's own trouble: the order is not at fault; try again later.
            401 | 408 | 409 => Err(error.unavailable()),
            400..=499 => {
                let AlpacaError::Status { message, code, status, .. } = error else { unreachable!("status_error") };
                Err(BrokerError::Refused {
                    broker: NAME,
                    order_id: job.order_id,
                    reason: format!("alpaca refused the order with http {status} (code {code}): {message}"),
                })
            }
            _ => Err(error.unavailable()),
        }
    }

    /// `GET /v2/orders:by_client_order_id`; `None` when Alpaca does not know it (404).
    async fn get_by_client_id(&self, client_order_id: Uuid) -> Result<Option<Order>, AlpacaError> {
        let path = format!("/v2/orders:by_client_order_id?client_order_id={client_order_id}");
        let reply = self.http.send(Method::GET, &path, None).await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => client::decode("GET trading/v2/orders:by_client_order_id", &reply.body).map(Some),
            _ => Err(client::status_error("GET trading/v2/orders:by_client_order_id".to_owned(), &reply)),
        }
    }

    /// The `FILL` activities of one Alpaca order, oldest first (bounded pages).
    async fn fills_of(&self, order: &Order) -> Result<Vec<FillActivity>, AlpacaError> {
        let after = order
            .submitted_at
            .as_deref()
            .or(order.created_at.as_deref())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| (t - chrono::Duration::minutes(1)).to_utc().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_ACTIVITY_PAGES {
            let mut path = "/v2/account/activities/FILL?direction=asc&page_size=100".to_owned();
            if let Some(after) = &after {
                path.push_str(&format!("&after={}", query_escape(after)));
            }
            if let Some(token) = &token {
                path.push_str(&format!("&page_token={}", query_escape(token)));
            }
            let page: Vec<FillActivity> = self.http.json(Method::GET, &path, None).await?;
            let full = page.len() >= 100;
            token = page.last().map(|a| a.id.clone());
            out.extend(page.into_iter().filter(|a| a.order_id == order.id));
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Sends an update to the daemon and books it in the tracking table.
    async fn emit(&self, update: BrokerUpdate) {
        if let BrokerUpdate::Discrepancy { order_id, description, .. } = &update {
            let key = format!("{order_id:?}:{description}");
            let mut noted = lock(&self.noted);
            if noted.contains(&key) {
                return;
            }
            if noted.len() >= MAX_NOTED {
                noted.clear();
            }
            noted.insert(key);
            tracing::error!(account = %update.account_id(), order = ?order_id, %description, "alpaca discrepancy");
        }
        {
            let mut tracked = lock(&self.tracked);
            match &update {
                BrokerUpdate::Accepted { order_id, broker_order_id, .. } => {
                    if let Some(t) = tracked.get_mut(order_id) {
                        t.broker_order_id = Some(broker_order_id.clone());
                    }
                }
                BrokerUpdate::Filled { order_id, qty, .. } => {
                    if let Some(t) = tracked.get_mut(order_id) {
                        t.booked = Qty(t.booked.0 + qty.0);
                        t.done = t.booked >= t.job.quantity;
                    }
                }
                BrokerUpdate::Canceled { order_id, .. } | BrokerUpdate::Rejected { order_id, .. } => {
                    if let Some(t) = tracked.get_mut(order_id) {
                        t.done = true;
                    }
                }
                BrokerUpdate::Discrepancy { .. } => {}
            }
        }
        if self.sender.send(update).await.is_err() {
            tracing::debug!("alpaca update dropped: nobody takes updates");
        }
    }

    /// Reconciles one tracked order with Alpaca (call with `pass` held).
    async fn reconcile_one(&self, order_id: Uuid) {
        let Some(tracked) = lock(&self.tracked).get(&order_id).cloned() else { return };
        if tracked.done {
            return;
        }
        let order = match self.get_by_client_id(order_id).await {
            Ok(order) => order,
            Err(error) => {
                tracing::warn!(order = %order_id, %error, "cannot look the order up at alpaca; next pass retries");
                return;
            }
        };
        let mut fills = Vec::new();
        if let Some(order) = &order {
            let filled = mapping::whole_qty("filled_qty", &order.filled_qty).unwrap_or(Qty(0));
            if filled > tracked.booked {
                match self.fills_of(order).await {
                    Ok(activities) => {
                        for activity in &activities {
                            match mapping::activity_fill(activity) {
                                Ok(fill) => fills.push(fill),
                                Err(error) => tracing::warn!(order = %order_id, %error, "skipping a fill activity"),
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(order = %order_id, %error, "cannot read fill activities; next pass retries");
                        return;
                    }
                }
            }
        }
        for step in mapping::reconcile_order(&tracked, order.as_ref(), &fills) {
            match step {
                Step::Report(update) => self.emit(update).await,
                Step::Submit => match self.post_order(&tracked.job).await {
                    Ok(order) => {
                        tracing::info!(order = %order_id, broker_order = %order.id, "submitted an order the broker never got");
                        let steps = mapping::reconcile_order(&tracked, Some(&order), &[]);
                        for step in steps {
                            if let Step::Report(update) = step {
                                self.emit(update).await;
                            }
                        }
                    }
                    Err(BrokerError::Refused { reason, .. }) => {
                        let account_id = tracked.job.account_id.clone();
                        self.emit(BrokerUpdate::Rejected { account_id, order_id, reason }).await;
                    }
                    Err(error) => tracing::warn!(order = %order_id, %error, "cannot submit; next pass retries"),
                },
            }
        }
    }

    /// A reconciliation pass over the tracked open orders (of one account, or all), then
    /// the broker's open orders the log does not know (only for an account's start).
    async fn pass(&self, account: Option<&str>) {
        let _pass = self.pass.lock().await;
        let ids: Vec<Uuid> = lock(&self.tracked)
            .values()
            .filter(|t| !t.done && account.is_none_or(|a| t.job.account_id == a))
            .map(|t| t.job.order_id)
            .collect();
        for id in ids {
            self.reconcile_one(id).await;
        }
        let Some(account) = account else { return };
        let open: Vec<Order> =
            match self.http.json(Method::GET, "/v2/orders?status=open&limit=500&direction=asc", None).await {
                Ok(open) => open,
                Err(error) => {
                    tracing::warn!(%error, "cannot list open orders at alpaca");
                    return;
                }
            };
        for order in open {
            let known = Uuid::parse_str(&order.client_order_id).ok().filter(|id| lock(&self.tracked).contains_key(id));
            if known.is_none() {
                let description = format!(
                    "the broker has an open order the log does not know: {} {} {} (broker order {}, client order {:?})",
                    order.side,
                    order.qty.as_deref().unwrap_or("?"),
                    order.symbol,
                    order.id,
                    order.client_order_id
                );
                let update = BrokerUpdate::Discrepancy {
                    account_id: account.to_owned(),
                    order_id: Uuid::parse_str(&order.client_order_id).ok(),
                    broker_order_id: Some(order.id.clone()),
                    description,
                };
                self.emit(update).await;
            }
        }
    }

    /// One `trade_updates` event.
    async fn on_update(&self, update: types::TradeUpdate) {
        let Ok(order_id) = Uuid::parse_str(&update.order.client_order_id) else {
            tracing::debug!(client_order_id = %update.order.client_order_id, "trade update for an order tape did not place");
            return;
        };
        let _pass = self.pass.lock().await;
        let Some(tracked) = lock(&self.tracked).get(&order_id).cloned() else {
            tracing::debug!(order = %order_id, event = %update.event, "trade update for an order not tracked here");
            return;
        };
        match mapping::on_trade_update(&tracked, &update) {
            mapping::Reaction::Ignore => {}
            mapping::Reaction::Report(updates) => {
                for update in updates {
                    self.emit(update).await;
                }
            }
            mapping::Reaction::Reconcile => self.reconcile_one(order_id).await,
        }
    }
}

impl Broker for AlpacaBroker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fills_on_quotes(&self) -> bool {
        false
    }

    fn submit<'a>(&'a self, job: &'a OrderJob) -> BoxFuture<'a, Result<BrokerOrder, BrokerError>> {
        Box::pin(async move {
            lock(&self.inner.tracked).entry(job.order_id).or_insert_with(|| Tracked::new(job.clone()));
            let order = self.inner.post_order(job).await?;
            let broker_order =
                mapping::broker_order(&order).map_err(|message| BrokerError::Unavailable { broker: NAME, message })?;
            if broker_order.status == BrokerStatus::Rejected {
                return Err(BrokerError::Refused {
                    broker: NAME,
                    order_id: job.order_id,
                    reason: "rejected by alpaca".to_owned(),
                });
            }
            let tracked = lock(&self.inner.tracked).get(&job.order_id).cloned();
            if let Some(problem) = tracked.as_ref().and_then(|t| mapping::mismatch(t, &order)) {
                if let Some(t) = &tracked {
                    self.inner.emit(mapping::discrepancy(t, Some(order.id.clone()), problem.clone())).await;
                }
                return Err(BrokerError::Unavailable { broker: NAME, message: problem });
            }
            let filled = mapping::whole_qty("filled_qty", &order.filled_qty).unwrap_or(Qty(0));
            let catch_up = {
                let mut tracked = lock(&self.inner.tracked);
                let t = tracked.entry(job.order_id).or_insert_with(|| Tracked::new(job.clone()));
                // The daemon reports the acknowledgement from this answer.
                t.broker_order_id = Some(order.id.clone());
                filled > t.booked || mapping::status(&order.status) == Some(BrokerStatus::Canceled)
            };
            if catch_up {
                // An earlier submit went through and the order moved on since: book it now.
                let (inner, order_id) = (self.inner.clone(), job.order_id);
                tokio::spawn(async move {
                    let _pass = inner.pass.lock().await;
                    inner.reconcile_one(order_id).await;
                });
            }
            Ok(broker_order)
        })
    }

    fn lookup(&self, client_order_id: Uuid) -> BoxFuture<'_, Result<Option<BrokerOrder>, BrokerError>> {
        Box::pin(async move {
            let order = self.inner.get_by_client_id(client_order_id).await.map_err(AlpacaError::unavailable)?;
            order
                .map(|o| mapping::broker_order(&o))
                .transpose()
                .map_err(|message| BrokerError::Unavailable { broker: NAME, message })
        })
    }

    fn open_orders(&self) -> BoxFuture<'_, Result<Vec<BrokerOrder>, BrokerError>> {
        Box::pin(async move {
            let open: Vec<Order> = self
                .inner
                .http
                .json(Method::GET, "/v2/orders?status=open&limit=500&direction=asc", None)
                .await
                .map_err(AlpacaError::unavailable)?;
            Ok(open.iter().filter_map(|o| mapping::broker_order(o).ok()).collect())
        })
    }

    fn take_updates(&self) -> Option<mpsc::Receiver<BrokerUpdate>> {
        lock(&self.updates).take()
    }

    fn reconcile<'a>(
        &'a self,
        account_id: &'a str,
        open: &'a [tape_commands::state::OpenOrder],
    ) -> Option<BoxFuture<'a, ()>> {
        Some(Box::pin(async move {
            {
                let _pass = self.inner.pass.lock().await;
                let mut tracked = lock(&self.inner.tracked);
                // The log is the truth at start: what it has open, as it has it.
                tracked.retain(|_, t| t.job.account_id != account_id);
                for order in open {
                    let entry = Tracked {
                        job: OrderJob::from_open(account_id, order),
                        booked: order.filled,
                        broker_order_id: order.broker_order_id.clone(),
                        done: false,
                    };
                    tracked.insert(order.order_id, entry);
                }
            }
            tracing::info!(account = account_id, open = open.len(), "reconciling open orders with alpaca");
            self.inner.pass(Some(account_id)).await;
        }))
    }
}
