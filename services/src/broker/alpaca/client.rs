//! The HTTP side of the Alpaca adapter: one [`Http`] per API (trading, market data) over
//! `reqwest` with rustls, with the keys as headers, bounded timeouts, a token-bucket rate
//! limit (`governor`), and bounded retries with capped, jittered exponential backoff on
//! 429, 5xx and connection errors, honouring `Retry-After` (seconds form).
//!
//! The keys come from the environment only ([`Credentials::from_env`]); they are sent as
//! the `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers (marked sensitive), never
//! logged, never written anywhere, and `Debug` prints them redacted.

#![allow(clippy::disallowed_methods)] // jitter is randomness, and it lives here in services

use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};

use super::AlpacaError;

/// The environment variable holding the key id.
pub const ENV_KEY_ID: &str = "APCA_API_KEY_ID";
/// The environment variable holding the secret key.
pub const ENV_SECRET_KEY: &str = "APCA_API_SECRET_KEY";

/// The API keys. `Debug` shows neither.
#[derive(Clone)]
pub struct Credentials {
    key_id: String,
    secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("key_id", &"<redacted>").field("secret_key", &"<redacted>").finish()
    }
}

impl Credentials {
    /// Keys given directly (tests).
    #[must_use]
    pub fn new(key_id: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Self { key_id: key_id.into(), secret_key: secret_key.into() }
    }

    /// `APCA_API_KEY_ID` and `APCA_API_SECRET_KEY` from the process environment.
    ///
    /// # Errors
    /// [`AlpacaError::MissingKey`] naming the variable that is unset or empty.
    pub fn from_env() -> Result<Self, AlpacaError> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// [`Credentials::from_env`] with an explicit environment.
    ///
    /// # Errors
    /// As [`Credentials::from_env`].
    pub fn from_env_with(env: impl Fn(&str) -> Option<String>) -> Result<Self, AlpacaError> {
        let get = |name: &'static str| env(name).filter(|v| !v.trim().is_empty()).ok_or(AlpacaError::MissingKey(name));
        Ok(Self { key_id: get(ENV_KEY_ID)?, secret_key: get(ENV_SECRET_KEY)? })
    }

    /// The key id (for the stream's auth message only).
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The secret key (for the stream's auth message only).
    pub(crate) fn secret_key(&self) -> &str {
        &self.secret_key
    }

    fn headers(&self) -> Result<HeaderMap, AlpacaError> {
        let value = |v: &str| {
            let mut value = HeaderValue::from_str(v).map_err(|_| AlpacaError::Config {
                key: "credentials",
                reason: "a key is not valid header text".into(),
            })?;
            value.set_sensitive(true);
            Ok::<_, AlpacaError>(value)
        };
        let mut headers = HeaderMap::new();
        headers.insert("APCA-API-KEY-ID", value(&self.key_id)?);
        headers.insert("APCA-API-SECRET-KEY", value(&self.secret_key)?);
        Ok(headers)
    }
}

/// Retries: bounded attempts, capped exponential backoff with jitter, `Retry-After` capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    pub base: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; longer waits are cut to this.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1): a uniformly
    /// jittered value in `[d/2, d]` with `d = min(max_backoff, base × 2^(attempt−1))`.
    #[must_use]
    pub fn backoff(&self, attempt: u32, random: u64) -> Duration {
        let exp = self.base.saturating_mul(1_u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_backoff);
        let half = capped / 2;
        let span = u64::try_from(capped.saturating_sub(half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(if span == 0 { 0 } else { random % (span + 1) })
    }

    /// The wait a `Retry-After` value asks for (seconds form only), capped.
    #[must_use]
    pub fn retry_after(&self, header: Option<&str>) -> Option<Duration> {
        let secs: u64 = header?.trim().parse().ok()?;
        Some(Duration::from_secs(secs).min(self.max_retry_after))
    }
}

/// A random `u64` from the OS-seeded hasher keys (jitter only; no crypto).
pub(crate) fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    hasher.finish()
}

/// An answer that is not a retryable failure.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One API (trading or market data) at one base URL.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
    headers: HeaderMap,
    retry: RetryPolicy,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// `trading` or `data`, for messages.
    pub name: &'static str,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("name", &self.name).field("base", &self.base).field("retry", &self.retry).finish()
    }
}

/// How to build an [`Http`].
#[derive(Debug, Clone)]
pub struct HttpParams {
    pub name: &'static str,
    pub base: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub requests_per_minute: u32,
}

impl Http {
    /// # Errors
    /// [`AlpacaError::Config`] when the client cannot be built or a key is not header text.
    pub fn new(params: HttpParams, credentials: &Credentials) -> Result<Self, AlpacaError> {
        let client = reqwest::Client::builder()
            .connect_timeout(params.connect_timeout)
            .timeout(params.request_timeout)
            .user_agent(concat!("tape/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AlpacaError::Config {
                key: "broker.alpaca",
                reason: format!("cannot build the http client: {e}"),
            })?;
        let per_minute = NonZeroU32::new(params.requests_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            client,
            base: params.base.trim_end_matches('/').to_owned(),
            headers: credentials.headers()?,
            retry: params.retry,
            limiter: Arc::new(RateLimiter::direct(Quota::per_minute(per_minute))),
            name: params.name,
        })
    }

    /// Sends a request (`path` with its query, e.g. `/v2/orders?status=open`), retrying
    /// 429, 5xx and connection errors; any other answer is returned as it is.
    ///
    /// # Errors
    /// [`AlpacaError::Unavailable`] once the attempts are spent.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, AlpacaError> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method} {}{}", self.name, path.split('?').next().unwrap_or(path));
        let mut last = String::new();
        for attempt in 1..=self.retry.max_attempts.max(1) {
            self.limiter.until_ready().await;
            let mut request = self.client.request(method.clone(), &url).headers(self.headers.clone());
            if let Some(body) = body {
                request = request.json(body);
            }
            let wait = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after =
                        response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        last = format!("http {}", status.as_u16());
                        self.retry.retry_after(retry_after.as_deref())
                    } else {
                        match response.bytes().await {
                            Ok(body) => return Ok(Reply { status, body }),
                            Err(error) => {
                                last = format!("reading the body: {}", crate::describe(&error));
                                None
                            }
                        }
                    }
                }
                Err(error) => {
                    last = crate::describe(&error.without_url());
                    None
                }
            };
            if attempt == self.retry.max_attempts.max(1) {
                break;
            }
            let wait = wait.unwrap_or_else(|| self.retry.backoff(attempt, random()));
            tracing::debug!(request = %what, attempt, error = %last, wait_ms = wait.as_millis() as u64, "alpaca request failed; retrying");
            tokio::time::sleep(wait).await;
        }
        Err(AlpacaError::Unavailable {
            what,
            message: format!("{last} after {} attempts", self.retry.max_attempts.max(1)),
        })
    }

    /// [`Http::send`] and decode a 2xx JSON body; other statuses become [`AlpacaError::Status`].
    ///
    /// # Errors
    /// [`AlpacaError`] for a failed request, a refusal, or a body that does not decode.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, AlpacaError> {
        let reply = self.send(method.clone(), path, body).await?;
        let what = format!("{method} {}{}", self.name, path.split('?').next().unwrap_or(path));
        if !reply.status.is_success() {
            return Err(status_error(what, &reply));
        }
        decode(&what, &reply.body)
    }
}

/// The refusal in a non-2xx reply.
#[must_use]
pub fn status_error(what: String, reply: &Reply) -> AlpacaError {
    let body: Option<super::types::ApiError> = serde_json::from_slice(&reply.body).ok();
    let (code, message) = body.map_or_else(
        || (0, String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)]).into_owned()),
        |e| (e.code, e.message),
    );
    AlpacaError::Status { what, status: reply.status.as_u16(), code, message }
}

/// Decodes a JSON body.
///
/// # Errors
/// [`AlpacaError::Decode`] naming the request.
pub fn decode<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, AlpacaError> {
    serde_json::from_slice(body).map_err(|e| AlpacaError::Decode { what: what.to_owned(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_half_to_full() {
        let p = policy();
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (6, 2000), (30, 2000)] {
            let full = Duration::from_millis(full);
            assert_eq!(p.backoff(attempt, 0), full / 2, "attempt {attempt}");
            assert_eq!(
                p.backoff(attempt, u64::MAX),
                full / 2 + Duration::from_micros(u64::MAX % ((full / 2).as_micros() as u64 + 1))
            );
            for r in [1, 17, 99_999, u64::MAX / 3] {
                let d = p.backoff(attempt, r);
                assert!(d >= full / 2 && d <= full, "{d:?}");
            }
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_is_capped() {
        let p = policy();
        assert_eq!(p.retry_after(Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(p.retry_after(Some("3600")), Some(Duration::from_secs(30)));
        assert_eq!(p.retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(p.retry_after(None), None);
    }

    #[test]
    fn keys_come_from_the_environment_and_never_show_in_debug() {
        let env = |name: &str| match name {
            ENV_KEY_ID => Some("PKTESTKEY".to_owned()),
            ENV_SECRET_KEY => Some("s3cr3t".to_owned()),
            _ => None,
        };
        let credentials = Credentials::from_env_with(env).unwrap();
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("PKTESTKEY") && !shown.contains("s3cr3t"), "{shown}");
        let missing = Credentials::from_env_with(|name| (name == ENV_KEY_ID).then(|| "k".to_owned())).unwrap_err();
        assert_eq!(missing.to_string(), "missing alpaca key: set APCA_API_SECRET_KEY in the environment");
        let headers = credentials.headers().unwrap();
        assert!(headers.get("APCA-API-SECRET-KEY").unwrap().is_sensitive());
        assert!(!format!("{headers:?}").contains("s3cr3t"));
    }
}
