//! Service settings: where PostgreSQL and Redis are, and how to connect.
//!
//! They live in the `[database]` and `[redis]` tables of `tape.toml` (the `[broker]` and
//! `[daemon]` tables belong to the broker adapter and the daemon, which parse them), and
//! never affect decisions. Every other top-level key of `tape.toml` is a decision key,
//! owned by `commands::config`; this parser ignores them, so one file serves both.
//!
//! ```toml
//! [database]
//! url = "postgres://postgres@127.0.0.1:5432/tape"
//! pool_size = 8
//! role = "tape_app"     # SET ROLE on each pooled connection; "" to stay the login role
//!
//! [redis]
//! url = "redis://127.0.0.1:6379"
//! prefix = "tape"
//! ```
//!
//! The environment overrides the file: `TAPE_DATABASE_URL`, `TAPE_REDIS_URL`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// The default `database.url`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tape";
/// The default `redis.url`.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The default `database.role`.
pub const DEFAULT_ROLE: &str = "tape_app";
/// The default `database.pool_size`.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// The default `redis.prefix`.
pub const DEFAULT_REDIS_PREFIX: &str = "tape";
/// The environment variable overriding `database.url`.
pub const ENV_DATABASE_URL: &str = "TAPE_DATABASE_URL";
/// The environment variable overriding `redis.url`.
pub const ENV_REDIS_URL: &str = "TAPE_REDIS_URL";

/// Why the service settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {key} {value:?}: {reason}")]
    Value { key: &'static str, value: String, reason: String },
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// A `postgres://` URL or a libpq key=value string.
    pub url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// The role each pooled connection switches to (`SET ROLE`); empty: none.
    pub role: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: DEFAULT_DATABASE_URL.to_owned(), pool_size: DEFAULT_POOL_SIZE, role: DEFAULT_ROLE.to_owned() }
    }
}

impl DatabaseConfig {
    /// The settings for `url` with every other key at its default.
    #[must_use]
    pub fn with_url(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }

    /// The role to `SET ROLE` to, if any.
    #[must_use]
    pub fn role(&self) -> Option<&str> {
        (!self.role.is_empty()).then_some(self.role.as_str())
    }

    /// The parsed connection settings.
    ///
    /// # Errors
    /// [`ConfigError::Value`] naming `database.url` (its password hidden).
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        tokio_postgres::Config::from_str(&self.url).map_err(|e| ConfigError::Value {
            key: "database.url",
            value: redact_url(&self.url),
            reason: e.to_string(),
        })
    }

    /// Checks every key once, at start-up.
    ///
    /// # Errors
    /// [`ConfigError::Value`] naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let config = self.pg_config()?;
        if config.get_dbname().is_none_or(str::is_empty) {
            return Err(ConfigError::Value {
                key: "database.url",
                value: redact_url(&self.url),
                reason: "names no database".to_owned(),
            });
        }
        if !(1..=1024).contains(&self.pool_size) {
            return Err(ConfigError::Value {
                key: "database.pool_size",
                value: self.pool_size.to_string(),
                reason: "must be within [1, 1024]".to_owned(),
            });
        }
        if let Some(role) = self.role() {
            if !is_plain_identifier(role) {
                return Err(ConfigError::Value {
                    key: "database.role",
                    value: role.to_owned(),
                    reason: "must match ^[a-z_][a-z0-9_]{0,62}$ (or be empty for none)".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// `[redis]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix of every key and list (`{prefix}:queue:broker_orders`).
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: DEFAULT_REDIS_URL.to_owned(), prefix: DEFAULT_REDIS_PREFIX.to_owned() }
    }
}

/// The service tables of `tape.toml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceConfig {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    /// `[broker]`, as written: the broker adapter parses it.
    pub broker: Option<toml::Table>,
    /// `[daemon]`, as written: the daemon parses it.
    pub daemon: Option<toml::Table>,
}

/// What this module reads of `tape.toml`: its four tables, nothing else.
#[derive(Debug, Default, Deserialize)]
struct FileShape {
    #[serde(default)]
    database: DatabaseConfig,
    #[serde(default)]
    redis: RedisConfig,
    broker: Option<toml::Table>,
    daemon: Option<toml::Table>,
    // Every other top-level key is a decision key: ignored here, checked by commands.
}

impl ServiceConfig {
    /// Parses the service tables of a `tape.toml` text, ignoring every other key.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] (naming the key, e.g. ``unknown field `pool`` under
    /// `[database]`) or [`ConfigError::Value`].
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let shape: FileShape = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: one_line(&e.to_string()) })?;
        let config = Self { database: shape.database, redis: shape.redis, broker: shape.broker, daemon: shape.daemon };
        Ok(config)
    }

    /// Reads `path` if given (it must exist), else `./tape.toml` if it exists, else the
    /// defaults; then applies the environment and validates.
    ///
    /// # Errors
    /// [`ConfigError`] for an unreadable or invalid file or value.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, |key| std::env::var(key).ok())
    }

    /// [`ServiceConfig::load`] with an explicit environment (for tests).
    ///
    /// # Errors
    /// As [`ServiceConfig::load`].
    pub fn load_with_env(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let default_path = Path::new("tape.toml");
        let (path, required) = match path {
            Some(path) => (path, true),
            None => (default_path, false),
        };
        let mut config = match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml_str(&text, path)?,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(cause) => return Err(ConfigError::Read { path: path.to_owned(), cause }),
        };
        config.apply_env(env);
        config.database.validate()?;
        Ok(config)
    }

    /// Applies `TAPE_DATABASE_URL` and `TAPE_REDIS_URL` (non-empty values only).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        if let Some(url) = env(ENV_DATABASE_URL).filter(|v| !v.is_empty()) {
            self.database.url = url;
        }
        if let Some(url) = env(ENV_REDIS_URL).filter(|v| !v.is_empty()) {
            self.redis.url = url;
        }
    }
}

/// `^[a-z_][a-z0-9_]{0,62}$`: a role name that needs no quoting.
#[must_use]
pub fn is_plain_identifier(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// The URL with any password replaced by `***`, for messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    // postgres://user:password@host/db
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            if let Some((user, _password)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
        return url.to_owned();
    }
    // key=value form
    url.split_whitespace()
        .map(|pair| if pair.starts_with("password=") { "password=***" } else { pair })
        .collect::<Vec<_>>()
        .join(" ")
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServiceConfig, ConfigError> {
        ServiceConfig::from_toml_str(text, Path::new("tape.toml"))
    }

    #[test]
    fn defaults_when_the_tables_are_absent() {
        let config = parse("").unwrap();
        assert_eq!(config.database.url, DEFAULT_DATABASE_URL);
        assert_eq!(config.database.role(), Some("tape_app"));
        assert_eq!(config.redis.url, DEFAULT_REDIS_URL);
        assert_eq!(config.redis.prefix, "tape");
    }

    #[test]
    fn decision_keys_outside_the_service_tables_are_ignored() {
        let text = r#"
max_open_positions = 8
recommendation_max_age = "90m"
[tiers.conservative]
min_confidence = "0.70"
[database]
url = "postgres://u@db:5433/x"
pool_size = 3
role = ""
[broker]
kind = "paper"
[daemon]
listen = "127.0.0.1:8080"
"#;
        let config = parse(text).unwrap();
        assert_eq!(config.database.url, "postgres://u@db:5433/x");
        assert_eq!(config.database.pool_size, 3);
        assert_eq!(config.database.role(), None);
        assert!(config.broker.is_some() && config.daemon.is_some());
    }

    #[test]
    fn an_unknown_key_in_a_service_table_is_an_error_naming_it() {
        let error = parse("[database]\npool = 3\n").unwrap_err().to_string();
        assert!(error.contains("unknown field `pool`"), "{error}");
        let error = parse("[redis]\nprefx = \"x\"\n").unwrap_err().to_string();
        assert!(error.contains("prefx"), "{error}");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("tape-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tape.toml");
        std::fs::write(&path, "[database]\nurl = \"postgres://a@h/one\"\n").unwrap();
        let env = |key: &str| match key {
            ENV_DATABASE_URL => Some("postgres://b@h/two".to_owned()),
            ENV_REDIS_URL => Some("redis://r:1".to_owned()),
            _ => None,
        };
        let config = ServiceConfig::load_with_env(Some(&path), env).unwrap();
        assert_eq!(config.database.url, "postgres://b@h/two");
        assert_eq!(config.redis.url, "redis://r:1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_name_the_key_and_the_value() {
        let mut db = DatabaseConfig { pool_size: 0, ..DatabaseConfig::default() };
        let error = db.validate().unwrap_err().to_string();
        assert_eq!(error, "invalid database.pool_size \"0\": must be within [1, 1024]");
        db.pool_size = 2;
        db.role = "Robert'); DROP".to_owned();
        assert!(db.validate().unwrap_err().to_string().starts_with("invalid database.role \"Robert'); DROP\""));
        db.role = DEFAULT_ROLE.to_owned();
        db.url = "postgres://u:secret@h:notaport/db".to_owned();
        let error = db.validate().unwrap_err().to_string();
        assert!(error.starts_with("invalid database.url \"postgres://u:***@h:notaport/db\""), "{error}");
        assert!(!error.contains("secret"));
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_naming_it() {
        let error =
            ServiceConfig::load_with_env(Some(Path::new("/nonexistent/tape.toml")), |_| None).unwrap_err().to_string();
        assert!(error.starts_with("cannot read config file /nonexistent/tape.toml"), "{error}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_file_gives_the_default_service_settings() {
        let text = include_str!("../../tape.toml.example");
        let config = ServiceConfig::from_toml_str(text, Path::new("tape.toml.example")).unwrap();
        assert_eq!(config.database, DatabaseConfig::default());
        assert_eq!(config.redis.url, RedisConfig::default().url);
        assert_eq!(config.redis.prefix, RedisConfig::default().prefix);
    }
}
