//! Account operations: `tape account open|list|show`, `tape breaker reset` and
//! `tape reserve release`. Every change goes through the account's ledger as an input
//! (operator inputs carry the actor and the reason), so it is recorded like any other.

#![allow(clippy::disallowed_methods)] // operator inputs get fresh UUIDv7 ids

use tape_commands::Input;
use tape_events::{AccountMode, AccountOpened, Config, ConfigActivated, Event, Money, Stamped, Timestamp};
use uuid::Uuid;

use crate::ledger::{AccountLedger, LedgerError, Submitted};
use crate::store::EventStore;

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("account {0} is already open")]
    AlreadyOpen(String),
    #[error("account {0} is not open")]
    NotOpen(String),
    #[error("{what} for account {account} was refused: {reason}")]
    Refused { account: String, what: &'static str, reason: String },
    #[error("listing accounts: {0}")]
    Database(String),
}

fn input(at: Timestamp, event: impl Into<Event>) -> Input {
    Input { id: Uuid::now_v7(), stamped: Stamped::new(at, event) }
}

fn refused(account: &str, what: &'static str, submitted: &Submitted) -> Result<(), AccountError> {
    match submitted.refused.first() {
        Some(r) => Err(AccountError::Refused { account: account.to_owned(), what, reason: r.error.to_string() }),
        None => Ok(()),
    }
}

/// Opens an account: `AccountOpened` then `ConfigActivated`, in one transaction.
///
/// # Errors
/// [`AccountError`]: already open, an invalid id or cash, or the store failed.
pub async fn open(
    store: EventStore,
    account: &str,
    initial_cash: Money,
    mode: AccountMode,
    config: &Config,
    at: Timestamp,
    actor: &str,
) -> Result<AccountLedger, AccountError> {
    let mut ledger = AccountLedger::load(store, account, actor).await?;
    if ledger.state().is_open() {
        return Err(AccountError::AlreadyOpen(account.to_owned()));
    }
    let opened = AccountOpened { account_id: account.to_owned(), initial_cash, mode };
    let activated = ConfigActivated { config: Box::new(config.clone()), hash: config.hash() };
    let submitted = ledger.submit(&[input(at, opened), input(at, activated)]).await?;
    refused(account, "opening", &submitted)?;
    Ok(ledger)
}

/// Every account stream: `(account_id, version)`.
///
/// # Errors
/// [`AccountError::Database`].
pub async fn list(store: &EventStore) -> Result<Vec<(String, i64)>, AccountError> {
    let client = store.pool().get().await.map_err(|e| AccountError::Database(e.to_string()))?;
    let rows = client
        .query("SELECT substr(stream_id, 9), version FROM streams WHERE stream_id LIKE 'account-%' ORDER BY 1", &[])
        .await
        .map_err(|e| AccountError::Database(crate::describe(&e)))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Loads an open account.
///
/// # Errors
/// [`AccountError::NotOpen`] or a ledger error.
pub async fn load_open(store: EventStore, account: &str, actor: &str) -> Result<AccountLedger, AccountError> {
    let ledger = AccountLedger::load(store, account, actor).await?;
    if !ledger.state().is_open() {
        return Err(AccountError::NotOpen(account.to_owned()));
    }
    Ok(ledger)
}

/// Records an operator input (`tape breaker reset`: `BreakerResetRequested`, `tape reserve
/// release`: `ReserveReleaseRequested`) with whatever it decides. Operator inputs are
/// always recorded (SPEC 13), with who and why in the payload.
///
/// # Errors
/// [`AccountError`], also when the core refuses the input.
pub async fn submit_operator(
    ledger: &mut AccountLedger,
    request: impl Into<Event>,
    at: Timestamp,
) -> Result<Submitted, AccountError> {
    let request = request.into();
    let what = request.event_type();
    let submitted = ledger.submit(&[input(at, request)]).await?;
    let account = ledger.state().account.as_ref().map(|a| a.account_id.clone()).unwrap_or_default();
    refused(&account, what, &submitted)?;
    Ok(submitted)
}

/// A short account summary for `tape account show`.
#[must_use]
pub fn describe_state(state: &tape_commands::State, version: i64, now: Timestamp) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let Some(account) = &state.account else { return "not open\n".to_owned() };
    let equity = tape_commands::valuation::equity(state);
    let _ = writeln!(out, "account   {} ({}), opened {}", account.account_id, account.mode, account.opened_at);
    let _ = writeln!(out, "version   {version}   config {}", &state.config_hash.get(..12).unwrap_or(""));
    let _ = writeln!(
        out,
        "equity    {equity}   cash {}   reserve {}   hwm {}",
        state.cash, state.reserve, state.high_water_mark
    );
    let _ = writeln!(out, "tier      {}", state.tier);
    let _ = writeln!(out, "positions {}", state.positions.len());
    for (ticker, p) in &state.positions {
        let last = state.quotes.get(ticker).map_or_else(|| "-".to_owned(), |q| q.price.to_string());
        let _ = writeln!(out, "  {ticker:<6} {:>6} @ {} (last {last})", p.qty, p.avg_cost);
    }
    let _ = writeln!(out, "orders    {} open", state.open_orders.len());
    for o in &state.open_orders {
        let _ = writeln!(out, "  {} {} {} {} ({})", o.order_id, o.side, o.remaining(), o.ticker, o.reason);
    }
    let _ = writeln!(out, "pending   {} recommendations", state.pending.len());
    let active: Vec<String> = state
        .breakers
        .iter()
        .filter(|b| b.is_active(now))
        .map(|b| format!("{}{}", b.kind, b.ticker.as_ref().map(|t| format!(":{t}")).unwrap_or_default()))
        .collect();
    let _ = writeln!(out, "breakers  {}", if active.is_empty() { "none active".to_owned() } else { active.join(", ") });
    out
}
