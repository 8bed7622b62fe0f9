//! The daemon's settings: the `[daemon]` and `[broker]` tables of `tape.toml`, checked
//! once at start with errors naming the key.

use serde::Deserialize;

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonTable {
    /// Accounts to run (`--account` adds to them).
    pub accounts: Vec<String>,
    /// Where `/healthz` and `/metrics` are served; `""` serves nothing.
    pub listen: String,
    /// The decision loop's fallback poll of `recommendations` (seconds of the daemon's clock).
    pub poll_interval_secs: u64,
    /// `table` (`market_quotes`), `simulated` (the built-in market; `tape demo`) or
    /// `alpaca` (market data v2; settings in `[broker.alpaca]`, keys from the environment).
    pub quote_source: String,
    /// How often `market_quotes` is read (milliseconds, wall time).
    pub quote_poll_millis: u64,
    /// How often `securities` and `daily_bars` are read (seconds, wall time).
    pub reference_interval_secs: u64,
    /// Messages waiting for an account's processor, at most.
    pub queue_capacity: usize,
    /// Inputs stepped into one transaction when the queue is deep, at most.
    pub max_batch_inputs: usize,
}

impl Default for DaemonTable {
    fn default() -> Self {
        Self {
            accounts: Vec::new(),
            listen: "127.0.0.1:8080".to_owned(),
            poll_interval_secs: 60,
            quote_source: "table".to_owned(),
            quote_poll_millis: 1000,
            reference_interval_secs: 60,
            queue_capacity: 4096,
            max_batch_inputs: 512,
        }
    }
}

/// `[broker]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerTable {
    /// `paper` (the built-in paper broker) or `alpaca` (Alpaca's Trading API v2).
    pub kind: String,
    /// `[broker.alpaca]`: the Alpaca adapter's settings (also read by the Alpaca quote source).
    pub alpaca: crate::broker::alpaca::AlpacaSettings,
}

impl Default for BrokerTable {
    fn default() -> Self {
        Self { kind: "paper".to_owned(), alpaca: crate::broker::alpaca::AlpacaSettings::default() }
    }
}

/// A bad `[daemon]` or `[broker]` setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {key} {value:?}: {reason}")]
pub struct SettingError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

fn from_table<T: for<'de> Deserialize<'de> + Default>(
    table: Option<&toml::Table>,
    name: &str,
) -> Result<T, SettingError> {
    let Some(table) = table else { return Ok(T::default()) };
    toml::Value::Table(table.clone()).try_into().map_err(|e: toml::de::Error| SettingError {
        key: format!("[{name}]"),
        value: String::new(),
        reason: e.message().to_owned(),
    })
}

impl DaemonTable {
    /// Parses and checks `[daemon]`.
    ///
    /// # Errors
    /// [`SettingError`] naming the key.
    pub fn parse(table: Option<&toml::Table>) -> Result<Self, SettingError> {
        let parsed: Self = from_table(table, "daemon")?;
        parsed.validate()?;
        Ok(parsed)
    }

    /// # Errors
    /// [`SettingError`] naming the first bad key.
    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = |key: &str, value: String, reason: &str| {
            Err(SettingError { key: format!("daemon.{key}"), value, reason: reason.to_owned() })
        };
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("listen", self.listen.clone(), "must be host:port, e.g. 127.0.0.1:8080 (or \"\" for none)");
        }
        if !matches!(self.quote_source.as_str(), "table" | "simulated" | "alpaca") {
            return bad("quote_source", self.quote_source.clone(), "must be \"table\", \"simulated\" or \"alpaca\"");
        }
        if !(1..=3600).contains(&self.poll_interval_secs) {
            return bad("poll_interval_secs", self.poll_interval_secs.to_string(), "must be within [1, 3600]");
        }
        if !(10..=60_000).contains(&self.quote_poll_millis) {
            return bad("quote_poll_millis", self.quote_poll_millis.to_string(), "must be within [10, 60000]");
        }
        if !(1..=86_400).contains(&self.reference_interval_secs) {
            return bad(
                "reference_interval_secs",
                self.reference_interval_secs.to_string(),
                "must be within [1, 86400]",
            );
        }
        if !(16..=1_000_000).contains(&self.queue_capacity) {
            return bad("queue_capacity", self.queue_capacity.to_string(), "must be within [16, 1000000]");
        }
        if !(1..=10_000).contains(&self.max_batch_inputs) {
            return bad("max_batch_inputs", self.max_batch_inputs.to_string(), "must be within [1, 10000]");
        }
        if let Some(bad_id) = self.accounts.iter().find(|a| !tape_events::ids::is_valid_account_id(a)) {
            return bad("accounts", bad_id.clone(), "an account id must match ^[a-z0-9][a-z0-9_-]{0,62}$");
        }
        Ok(())
    }
}

impl BrokerTable {
    /// Parses and checks `[broker]`.
    ///
    /// # Errors
    /// [`SettingError`] naming the key.
    pub fn parse(table: Option<&toml::Table>) -> Result<Self, SettingError> {
        let parsed: Self = from_table(table, "broker")?;
        if !matches!(parsed.kind.as_str(), "paper" | "alpaca") {
            return Err(SettingError {
                key: "broker.kind".into(),
                value: parsed.kind,
                reason: "must be \"paper\" or \"alpaca\"".into(),
            });
        }
        parsed.alpaca.validate().map_err(|e| match e {
            crate::broker::alpaca::AlpacaError::Setting { key, value, reason } => {
                SettingError { key: key.to_owned(), value, reason }
            }
            other => SettingError { key: "broker.alpaca".into(), value: String::new(), reason: other.to_string() },
        })?;
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let table: toml::Table = toml::from_str("listen = \"nope\"").unwrap();
        let error = DaemonTable::parse(Some(&table)).unwrap_err().to_string();
        assert!(error.starts_with("invalid daemon.listen \"nope\""), "{error}");
        let table: toml::Table = toml::from_str("lisen = \"x\"").unwrap();
        let error = DaemonTable::parse(Some(&table)).unwrap_err().to_string();
        assert!(error.contains("lisen"), "{error}");
        let table: toml::Table = toml::from_str("kind = \"ib\"").unwrap();
        assert!(BrokerTable::parse(Some(&table)).unwrap_err().to_string().starts_with("invalid broker.kind"));
        let table: toml::Table = toml::from_str("kind = \"alpaca\"\n[alpaca]\nlive = true").unwrap();
        let error = BrokerTable::parse(Some(&table)).unwrap_err().to_string();
        assert!(error.starts_with("invalid broker.alpaca.live"), "{error}");
        let table: toml::Table = toml::from_str("kind = \"alpaca\"\n[alpaca]\nrequests_per_minute = 100").unwrap();
        assert_eq!(BrokerTable::parse(Some(&table)).unwrap().alpaca.requests_per_minute, 100);
        assert_eq!(DaemonTable::parse(None).unwrap(), DaemonTable::default());
    }
}
