//! A scriptable fake of Alpaca's published APIs on loopback (127.0.0.1, port 0), for the
//! adapter's integration tests: Alpaca itself cannot be reached from here.
//!
//! It follows the published shapes: `POST /v2/orders` (422 / 40010001 for a duplicate
//! `client_order_id`), `GET /v2/orders:by_client_order_id` (404 / 40410000 when unknown),
//! `GET /v2/orders?status=open`, `GET /v2/account/activities/FILL` (paged by
//! `page_token`, filtered by `after`), the `/stream` WebSocket (`auth` → `authorization`,
//! `listen` → `listening`, then `trade_updates` events in binary frames, as the paper
//! endpoint sends them), and market data `GET /v2/stocks/trades/latest?symbols=…`.
//!
//! Scripts: fill or partially fill an order, cancel/expire/reject it, answer the next
//! requests with 429 (with `Retry-After`) or 5xx, drop the streams and refuse new ones
//! (a gap), add an order the client never placed.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// The keys the fake accepts.
pub const KEY_ID: &str = "PKFAKEKEYID";
pub const SECRET_KEY: &str = "fake-secret-never-logged";

/// What the fake does with a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnSubmit {
    /// Accept it (`new` event) and wait for a script.
    Accept,
    /// Accept and fill it at once at this price.
    Fill(String),
    /// Refuse it (403 insufficient buying power).
    Refuse,
}

/// A scripted failure for the next matching request.
#[derive(Debug, Clone)]
struct Failure {
    path_prefix: String,
    status: u16,
    retry_after: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    orders: Vec<Value>,
    activities: Vec<Value>,
    failures: VecDeque<Failure>,
    /// (method path) → count.
    requests: BTreeMap<String, usize>,
    on_submit: Option<OnSubmit>,
    refuse_streams: bool,
    latest: BTreeMap<String, (f64, String)>,
    seq: u64,
}

/// The running fake. Dropping it stops the server.
pub struct FakeAlpaca {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<String>,
    drop_streams: watch::Sender<u64>,
    connections: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAlpaca {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct AppState {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<String>,
    drop_streams: watch::Receiver<u64>,
    connections: Arc<Mutex<usize>>,
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn error(status: StatusCode, code: u64, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("APCA-API-KEY-ID").is_some_and(|v| v == KEY_ID)
        && headers.get("APCA-API-SECRET-KEY").is_some_and(|v| v == SECRET_KEY)
}

const OPEN: [&str; 8] = [
    "new",
    "accepted",
    "pending_new",
    "partially_filled",
    "accepted_for_bidding",
    "pending_cancel",
    "held",
    "calculated",
];

impl FakeAlpaca {
    /// Starts the fake on 127.0.0.1 (a free port).
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner { on_submit: Some(OnSubmit::Accept), ..Inner::default() }));
        let (events, _) = broadcast::channel(1024);
        let (drop_streams, drop_receiver) = watch::channel(0);
        let connections = Arc::new(Mutex::new(0));
        let state = AppState {
            inner: inner.clone(),
            events: events.clone(),
            drop_streams: drop_receiver,
            connections: connections.clone(),
        };
        let app = Router::new()
            .route("/v2/orders", post(create_order).get(list_orders))
            .route("/v2/orders:by_client_order_id", get(by_client_order_id))
            .route("/v2/account/activities/FILL", get(fill_activities))
            .route("/v2/stocks/trades/latest", get(latest_trades))
            .route("/stream", get(stream))
            .layer(middleware::from_fn_with_state(state.clone(), scripted_failures))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake alpaca on loopback");
        let addr = listener.local_addr().expect("the fake's address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inner, events, drop_streams, connections, task }
    }

    /// `http://127.0.0.1:port`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the fake does with the next new orders.
    pub fn on_submit(&self, behaviour: OnSubmit) {
        self.lock().on_submit = Some(behaviour);
    }

    /// The next `count` requests whose path starts with `path_prefix` answer `status`.
    pub fn fail_next(&self, path_prefix: &str, count: usize, status: u16, retry_after: Option<u64>) {
        let mut inner = self.lock();
        for _ in 0..count {
            inner.failures.push_back(Failure { path_prefix: path_prefix.to_owned(), status, retry_after });
        }
    }

    /// Requests seen for `"{METHOD} {path}"` (failures included).
    #[must_use]
    pub fn requests(&self, key: &str) -> usize {
        self.lock().requests.get(key).copied().unwrap_or(0)
    }

    /// Every order, as Alpaca would return it.
    #[must_use]
    pub fn orders(&self) -> Vec<Value> {
        self.lock().orders.clone()
    }

    /// The order with this client order id.
    #[must_use]
    pub fn order(&self, client_order_id: Uuid) -> Option<Value> {
        let id = client_order_id.to_string();
        self.lock().orders.iter().find(|o| o["client_order_id"] == id.as_str()).cloned()
    }

    /// Live stream connections (authorized and listening).
    #[must_use]
    pub fn stream_connections(&self) -> usize {
        *self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes every stream connection; with `refuse`, new ones are refused until
    /// [`FakeAlpaca::accept_streams`].
    pub fn drop_streams(&self, refuse: bool) {
        self.lock().refuse_streams = refuse;
        self.drop_streams.send_modify(|g| *g += 1);
    }

    pub fn accept_streams(&self) {
        self.lock().refuse_streams = false;
    }

    /// Sets the latest trade of a symbol (market data).
    pub fn set_latest_trade(&self, symbol: &str, price: f64, at: &str) {
        self.lock().latest.insert(symbol.to_owned(), (price, at.to_owned()));
    }

    /// Adds an order the client never placed (e.g. from Alpaca's dashboard).
    pub fn add_foreign_order(&self, symbol: &str, qty: u64) -> String {
        let mut inner = self.lock();
        let client_order_id = format!("dashboard-{}", inner.seq);
        let order = new_order(&mut inner, symbol, qty, "buy", &client_order_id);
        let id = order["id"].as_str().unwrap_or_default().to_owned();
        inner.orders.push(order);
        id
    }

    /// Executes `qty` shares of the order at `price` (a `partial_fill` or `fill` event and
    /// a `FILL` activity); returns the execution id.
    pub fn execute(&self, client_order_id: Uuid, qty: u64, price: &str) -> String {
        let (event, activity) = {
            let mut inner = self.lock();
            execute(&mut inner, &client_order_id.to_string(), qty, price)
        };
        let _ = self.events.send(event);
        activity
    }

    /// Ends the order with `canceled`, `expired`, `done_for_day` or `rejected`.
    pub fn end(&self, client_order_id: Uuid, status: &str) {
        let event = {
            let mut inner = self.lock();
            let id = client_order_id.to_string();
            let Some(order) = inner.orders.iter_mut().find(|o| o["client_order_id"] == id.as_str()) else { return };
            order["status"] = json!(status);
            order["updated_at"] = json!(now_text());
            trade_update(status, order, None)
        };
        let _ = self.events.send(event);
    }
}

fn new_order(inner: &mut Inner, symbol: &str, qty: u64, side: &str, client_order_id: &str) -> Value {
    inner.seq += 1;
    let now = now_text();
    json!({
        "id": Uuid::now_v7().to_string(),
        "client_order_id": client_order_id,
        "created_at": now, "updated_at": now, "submitted_at": now,
        "filled_at": null, "expired_at": null, "canceled_at": null, "failed_at": null,
        "asset_id": Uuid::from_u128(u128::from(symbol.len() as u64)).to_string(),
        "symbol": symbol, "asset_class": "us_equity",
        "notional": null, "qty": qty.to_string(), "filled_qty": "0", "filled_avg_price": null,
        "order_class": "", "order_type": "market", "type": "market", "side": side,
        "time_in_force": "day", "limit_price": null, "stop_price": null,
        "status": "accepted", "extended_hours": false, "legs": null,
    })
}

fn trade_update(event: &str, order: &Value, fill: Option<(&str, u64, &str, u64)>) -> String {
    let mut data = json!({"event": event, "order": order, "timestamp": now_text()});
    if let Some((execution_id, qty, price, position)) = fill {
        data["execution_id"] = json!(execution_id);
        data["qty"] = json!(qty.to_string());
        data["price"] = json!(price);
        data["position_qty"] = json!(position.to_string());
    }
    json!({"stream": "trade_updates", "data": data}).to_string()
}

fn execute(inner: &mut Inner, client_order_id: &str, qty: u64, price: &str) -> (String, String) {
    inner.seq += 1;
    let seq = inner.seq;
    let Some(order) = inner.orders.iter_mut().find(|o| o["client_order_id"] == client_order_id) else {
        return (String::new(), String::new());
    };
    let ordered: u64 = order["qty"].as_str().and_then(|q| q.parse().ok()).unwrap_or(0);
    let filled: u64 = order["filled_qty"].as_str().and_then(|q| q.parse().ok()).unwrap_or(0);
    let cum = filled + qty;
    let done = cum >= ordered;
    order["filled_qty"] = json!(cum.to_string());
    order["filled_avg_price"] = json!(price);
    order["status"] = json!(if done { "filled" } else { "partially_filled" });
    order["updated_at"] = json!(now_text());
    let execution_id = Uuid::now_v7().to_string();
    let activity_id = format!("{}{seq:03}::{execution_id}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let activity = json!({
        "id": activity_id,
        "activity_type": "FILL",
        "transaction_time": now_text(),
        "type": if done { "fill" } else { "partial_fill" },
        "price": price, "qty": qty.to_string(), "side": order["side"], "symbol": order["symbol"],
        "leaves_qty": ordered.saturating_sub(cum).to_string(),
        "order_id": order["id"], "cum_qty": cum.to_string(), "order_status": order["status"],
    });
    let event = trade_update(if done { "fill" } else { "partial_fill" }, order, Some((&execution_id, qty, price, cum)));
    inner.activities.push(activity);
    (event, execution_id)
}

async fn scripted_failures(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let key = format!("{} {path}", request.method());
    let failure = {
        let mut inner = state.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *inner.requests.entry(key).or_default() += 1;
        let found = inner.failures.iter().position(|f| path.starts_with(&f.path_prefix));
        found.and_then(|i| inner.failures.remove(i))
    };
    if let Some(failure) = failure {
        let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = error(status, u64::from(failure.status) * 100_000, "scripted failure");
        if let Some(secs) = failure.retry_after {
            response.headers_mut().insert("retry-after", secs.to_string().parse().expect("a header value"));
        }
        return response;
    }
    if path != "/stream" && !authorized(request.headers()) {
        return error(StatusCode::UNAUTHORIZED, 40_110_000, "request is not authorized");
    }
    next.run(request).await
}

async fn create_order(State(state): State<AppState>, Json(body): Json<Value>) -> Response {
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (symbol, side, client_order_id) = (text("symbol"), text("side"), text("client_order_id"));
    let Some(qty) = text("qty").parse::<u64>().ok().filter(|q| *q > 0) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, 40_010_001, "qty must be a positive whole number");
    };
    if text("type") != "market" || text("time_in_force") != "day" || !matches!(side.as_str(), "buy" | "sell") {
        return error(StatusCode::UNPROCESSABLE_ENTITY, 40_010_001, "invalid order");
    }
    let (order, events) = {
        let mut inner = state.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.orders.iter().any(|o| o["client_order_id"] == client_order_id.as_str()) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, 40_010_001, "client_order_id must be unique");
        }
        let behaviour = inner.on_submit.clone().unwrap_or(OnSubmit::Accept);
        if behaviour == OnSubmit::Refuse {
            return error(StatusCode::FORBIDDEN, 40_310_000, "insufficient buying power");
        }
        let order = new_order(&mut inner, &symbol, qty, &side, &client_order_id);
        inner.orders.push(order.clone());
        let mut events = vec![trade_update("new", &order, None)];
        if let OnSubmit::Fill(price) = behaviour {
            events.push(execute(&mut inner, &client_order_id, qty, &price).0);
        }
        (order, events)
    };
    for event in events {
        let _ = state.events.send(event);
    }
    (StatusCode::OK, Json(order)).into_response()
}

async fn list_orders(State(state): State<AppState>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let inner = state.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let open_only = query.get("status").is_none_or(|s| s == "open");
    let orders: Vec<&Value> = inner
        .orders
        .iter()
        .filter(|o| !open_only || OPEN.contains(&o["status"].as_str().unwrap_or_default()))
        .collect();
    Json(json!(orders)).into_response()
}

async fn by_client_order_id(State(state): State<AppState>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let id = query.get("client_order_id").cloned().unwrap_or_default();
    let inner = state.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match inner.orders.iter().find(|o| o["client_order_id"] == id.as_str()) {
        Some(order) => Json(order.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, 40_410_000, &format!("order not found for {id}")),
    }
}

async fn fill_activities(State(state): State<AppState>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let inner = state.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let page_size: usize = query.get("page_size").and_then(|p| p.parse().ok()).unwrap_or(100).clamp(1, 100);
    let after = query.get("after").cloned().unwrap_or_default();
    let mut list: Vec<&Value> = inner
        .activities
        .iter()
        .filter(|a| a["transaction_time"].as_str().unwrap_or_default() > after.as_str())
        .collect();
    if query.get("direction").is_none_or(|d| d == "desc") {
        list.reverse();
    }
    if let Some(token) = query.get("page_token") {
        if let Some(i) = list.iter().position(|a| a["id"] == token.as_str()) {
            list.drain(..=i);
        }
    }
    list.truncate(page_size);
    Json(json!(list)).into_response()
}

async fn latest_trades(State(state): State<AppState>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let inner = state.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut trades = serde_json::Map::new();
    for symbol in query.get("symbols").map(|s| s.split(',').collect::<Vec<_>>()).unwrap_or_default() {
        if let Some((price, at)) = inner.latest.get(symbol) {
            trades.insert(
                symbol.to_owned(),
                json!({"t": at, "x": "V", "p": price, "s": 100, "c": ["@"], "i": 1, "z": "C"}),
            );
        }
    }
    Json(json!({"trades": trades})).into_response()
}

async fn stream(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    if state.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).refuse_streams {
        return error(StatusCode::SERVICE_UNAVAILABLE, 50_300_000, "stream unavailable");
    }
    upgrade.on_upgrade(move |socket| session(socket, state))
}

fn binary(value: &Value) -> Message {
    Message::Binary(value.to_string().into_bytes().into())
}

async fn session(mut socket: WebSocket, state: AppState) {
    // auth
    let Some(Ok(first)) = socket.recv().await else { return };
    let auth: Value = match &first {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap_or_default(),
        Message::Binary(b) => serde_json::from_slice(b).unwrap_or_default(),
        _ => Value::Null,
    };
    let ok = auth["action"] == "auth" && auth["key"] == KEY_ID && auth["secret"] == SECRET_KEY;
    let status = if ok { "authorized" } else { "unauthorized" };
    let _ = socket
        .send(binary(&json!({"stream": "authorization", "data": {"action": "authenticate", "status": status}})))
        .await;
    if !ok {
        return;
    }
    // listen
    let Some(Ok(Message::Text(listen))) = socket.recv().await else { return };
    let listen: Value = serde_json::from_str(listen.as_str()).unwrap_or_default();
    if listen["action"] != "listen" {
        return;
    }
    let mut events = state.events.subscribe();
    let _ = socket.send(binary(&json!({"stream": "listening", "data": {"streams": ["trade_updates"]}}))).await;
    let mut drop_streams = state.drop_streams.clone();
    drop_streams.borrow_and_update();
    *state.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(text) => if socket.send(Message::Binary(text.into_bytes().into())).await.is_err() { break },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            changed = drop_streams.changed() => { let _ = changed; break; }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    *state.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
}
