//! The `trade_updates` WebSocket (tokio-tungstenite over rustls): connect, authenticate
//! (`{"action": "auth", "key": …, "secret": …}`), listen (`{"action": "listen", "data":
//! {"streams": ["trade_updates"]}}`), then hand each event to the adapter. Frames may be
//! text or binary (Alpaca's paper stream sends binary); both carry JSON.
//!
//! Every (re)connection runs a reconciliation pass first, so whatever happened while the
//! stream was down (fills during the gap) is booked once. A failed or silent connection
//! is retried with capped, jittered backoff, for ever: the polling fallback covers the
//! time in between. Each step has a timeout, and a connection silent for
//! `stream_idle_secs` (no message, no pong to our pings) is dropped.

#![allow(clippy::disallowed_methods)] // jitter is randomness, and it lives here in services

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::client::{random, RetryPolicy};
use super::types::{Authorization, StreamMessage, TradeUpdate};
use super::Inner;

const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a stream session ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot connect to the trade_updates stream: {0}")]
    Connect(String),
    #[error("the trade_updates stream refused the keys (status {0:?})")]
    Unauthorized(String),
    #[error("the trade_updates stream did not {0} in time")]
    Timeout(&'static str),
    #[error("the trade_updates stream failed: {0}")]
    Io(String),
    #[error("the trade_updates stream ended")]
    Closed,
}

/// Runs the stream for ever (the broker aborts it when dropped).
pub(crate) async fn run(inner: Arc<Inner>) {
    let policy = RetryPolicy {
        max_attempts: u32::MAX,
        base: Duration::from_millis(inner.settings.retry_base_millis),
        max_backoff: Duration::from_millis(inner.settings.retry_max_millis),
        max_retry_after: Duration::ZERO,
    };
    let mut failures: u32 = 0;
    loop {
        let result = session(&inner).await;
        inner.connected.store(false, Ordering::SeqCst);
        match result {
            Ok(()) | Err(StreamError::Closed) => {
                tracing::warn!("trade_updates stream ended; reconnecting");
                failures = 1;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(%error, failures, "trade_updates stream down; polling until it reconnects");
            }
        }
        tokio::time::sleep(policy.backoff(failures, random())).await;
    }
}

fn payload(message: &Message) -> Option<&[u8]> {
    match message {
        Message::Text(text) => Some(text.as_bytes()),
        Message::Binary(bytes) => Some(bytes),
        _ => None,
    }
}

/// One connection: handshake, then events until it ends.
async fn session(inner: &Arc<Inner>) -> Result<(), StreamError> {
    let url = inner.settings.stream_url();
    let connect = tokio_tungstenite::connect_async(url.as_str());
    let (mut socket, _) = tokio::time::timeout(Duration::from_millis(inner.settings.connect_timeout_millis), connect)
        .await
        .map_err(|_| StreamError::Timeout("connect"))?
        .map_err(|e| StreamError::Connect(crate::describe(&e)))?;
    let auth = serde_json::json!({
        "action": "auth",
        "key": inner.credentials.key_id(),
        "secret": inner.credentials.secret_key(),
    });
    socket.send(Message::text(auth.to_string())).await.map_err(|e| StreamError::Io(e.to_string()))?;
    // Expect {"stream": "authorization", "data": {"status": "authorized", …}}.
    loop {
        let message = tokio::time::timeout(STEP_TIMEOUT, socket.next())
            .await
            .map_err(|_| StreamError::Timeout("authorize"))?
            .ok_or(StreamError::Closed)?
            .map_err(|e| StreamError::Io(e.to_string()))?;
        let Some(bytes) = payload(&message) else { continue };
        let Ok(parsed) = serde_json::from_slice::<StreamMessage>(bytes) else { continue };
        if parsed.stream == "authorization" {
            let status = serde_json::from_value::<Authorization>(parsed.data).map(|a| a.status).unwrap_or_default();
            if status != "authorized" {
                return Err(StreamError::Unauthorized(status));
            }
            break;
        }
    }
    let listen = serde_json::json!({"action": "listen", "data": {"streams": ["trade_updates"]}});
    socket.send(Message::text(listen.to_string())).await.map_err(|e| StreamError::Io(e.to_string()))?;
    loop {
        let message = tokio::time::timeout(STEP_TIMEOUT, socket.next())
            .await
            .map_err(|_| StreamError::Timeout("listen"))?
            .ok_or(StreamError::Closed)?
            .map_err(|e| StreamError::Io(e.to_string()))?;
        let Some(bytes) = payload(&message) else { continue };
        if serde_json::from_slice::<StreamMessage>(bytes).is_ok_and(|m| m.stream == "listening") {
            break;
        }
    }
    inner.connected.store(true, Ordering::SeqCst);
    tracing::info!(%url, "listening to trade_updates");
    // Whatever happened while we were away: book it once, before the live events.
    inner.pass(None).await;
    let idle = Duration::from_secs(inner.settings.stream_idle_secs);
    let mut ping = tokio::time::interval(idle / 3);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            message = socket.next() => {
                let message = match message {
                    None => return Err(StreamError::Closed),
                    Some(Err(error)) => return Err(StreamError::Io(error.to_string())),
                    Some(Ok(message)) => message,
                };
                last_heard = tokio::time::Instant::now();
                if let Message::Close(_) = message {
                    return Err(StreamError::Closed);
                }
                let Some(bytes) = payload(&message) else { continue };
                match serde_json::from_slice::<StreamMessage>(bytes) {
                    Ok(parsed) if parsed.stream == "trade_updates" => {
                        match serde_json::from_value::<TradeUpdate>(parsed.data) {
                            Ok(update) => inner.on_update(update).await,
                            Err(error) => tracing::warn!(%error, "a trade update that does not parse; reconciliation covers it"),
                        }
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "a stream message that does not parse"),
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > idle {
                    return Err(StreamError::Timeout("answer a ping"));
                }
                socket.send(Message::Ping(Vec::new().into())).await.map_err(|e| StreamError::Io(e.to_string()))?;
            }
        }
    }
}
