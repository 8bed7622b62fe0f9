//! Connections: the application's pool and single administrative connections.
//!
//! The pool ([`pool`]) is a `deadpool-postgres` pool whose connections each run
//! `SET ROLE <database.role>` (default `tape_app`) once, when they are created, so the
//! service works with INSERT and SELECT on `events` and nothing more, whatever the login
//! role may do. Connections are recycled with the `Fast` method, which keeps session
//! state (`DISCARD ALL` would reset the role). Administrative work (`tape migrate`,
//! creating and dropping databases) uses [`connect`], a plain connection as the login role.
//!
//! TLS is not configured: connections are plain TCP or Unix sockets (`sslmode=disable`
//! or `prefer` falls back to plain).

pub use deadpool_postgres::Pool;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, RecyclingMethod, Runtime};
use tokio_postgres::{Client, NoTls};

use crate::config::{redact_url, ConfigError, DatabaseConfig};
use crate::describe;

/// Why a connection or pool could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the connection pool for {url}: {message}")]
    Pool { url: String, message: String },
    #[error("cannot connect to {url}: {}", describe(cause))]
    Connect { url: String, cause: tokio_postgres::Error },
    #[error("cannot create database {name:?}: {}", describe(cause))]
    CreateDatabase { name: String, cause: tokio_postgres::Error },
    #[error("cannot drop database {name:?}: {}", describe(cause))]
    DropDatabase { name: String, cause: tokio_postgres::Error },
    #[error("database url {url} names no database")]
    NoDatabase { url: String },
}

/// The application's pool: `database.pool_size` connections, each `SET ROLE database.role`.
///
/// Connections are made lazily, on first use; a wrong URL or an unreachable server shows
/// up at the first query.
///
/// # Errors
/// [`DbError`] for invalid settings.
pub fn pool(config: &DatabaseConfig) -> Result<Pool, DbError> {
    config.validate()?;
    let pg_config = config.pg_config()?;
    let manager = Manager::from_config(pg_config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let mut builder = Pool::builder(manager).max_size(config.pool_size).runtime(Runtime::Tokio1);
    if let Some(role) = config.role() {
        // validate() checked the name is a plain identifier; quote it all the same.
        let statement = format!("SET ROLE {}", quote_ident(role));
        builder = builder.post_create(Hook::async_fn(move |client, _metrics| {
            let statement = statement.clone();
            Box::pin(async move { client.batch_execute(&statement).await.map_err(HookError::Backend) })
        }));
    }
    builder.build().map_err(|e| DbError::Pool { url: redact_url(&config.url), message: e.to_string() })
}

/// One plain connection as the login role (no `SET ROLE`), its driver task spawned.
///
/// # Errors
/// [`DbError`] for invalid settings or a failed connection.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let config = DatabaseConfig::with_url(url).pg_config()?;
    connect_with(&config, url).await
}

async fn connect_with(config: &tokio_postgres::Config, url: &str) -> Result<Client, DbError> {
    let (client, connection) =
        config.connect(NoTls).await.map_err(|cause| DbError::Connect { url: redact_url(url), cause })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "postgres connection ended");
        }
    });
    Ok(client)
}

/// The database a URL names.
///
/// # Errors
/// [`DbError`] when the URL is invalid or names no database.
pub fn database_name(url: &str) -> Result<String, DbError> {
    let config = DatabaseConfig::with_url(url).pg_config()?;
    config
        .get_dbname()
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| DbError::NoDatabase { url: redact_url(url) })
}

/// A connection to the server's `postgres` database, as the URL's user.
///
/// # Errors
/// [`DbError`] for an invalid URL or a failed connection.
pub async fn connect_maintenance(url: &str) -> Result<Client, DbError> {
    let mut config = DatabaseConfig::with_url(url).pg_config()?;
    config.dbname("postgres");
    connect_with(&config, url).await
}

/// Creates the database named in `url` unless it exists; `true` when it was created.
///
/// Connects to the `postgres` database of the same server to do so. Safe against a
/// concurrent creation (`duplicate_database` counts as "exists").
///
/// # Errors
/// [`DbError`] when the server cannot be reached or refuses.
pub async fn create_database_if_absent(url: &str) -> Result<bool, DbError> {
    let name = database_name(url)?;
    let admin = connect_maintenance(url).await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|cause| DbError::CreateDatabase { name: name.clone(), cause })?
        .is_some();
    if exists {
        return Ok(false);
    }
    match admin.batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name))).await {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => Ok(false),
        Err(cause) => Err(DbError::CreateDatabase { name, cause }),
    }
}

/// Drops a database (terminating its connections) if it exists.
///
/// # Errors
/// [`DbError`] when the server cannot be reached or refuses.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    let admin = connect_maintenance(admin_url).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)))
        .await
        .map_err(|cause| DbError::DropDatabase { name: name.to_owned(), cause })
}

/// `url` with its database replaced by `name`. Works for URLs and key=value strings.
///
/// # Errors
/// [`DbError`] for an invalid URL.
pub fn url_with_database(url: &str, name: &str) -> Result<String, DbError> {
    // Validate first so a bad URL is reported as such.
    DatabaseConfig::with_url(url).pg_config()?;
    if let Some((scheme, rest)) = url.split_once("://") {
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let authority = before_query.split_once('/').map_or(before_query, |(a, _)| a);
        let mut out = format!("{scheme}://{authority}/{name}");
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        Ok(out)
    } else {
        let mut pairs: Vec<String> =
            url.split_whitespace().filter(|p| !p.starts_with("dbname=")).map(str::to_owned).collect();
        pairs.push(format!("dbname={name}"));
        Ok(pairs.join(" "))
    }
}

/// `"name"`, with inner quotes doubled: a safe SQL identifier.
#[must_use]
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A connection LISTENing on one channel: each notification's payload arrives on
/// `receiver`. When the queue is full an empty payload is sent instead ("more than I
/// could keep: poll"); when the connection ends, `receiver` returns `None` (listen again).
#[derive(Debug)]
pub struct Listener {
    pub receiver: tokio::sync::mpsc::Receiver<String>,
    /// Dropping the client closes the connection (and ends the LISTEN).
    _client: Client,
}

/// Opens a [`Listener`] on `channel` (an identifier, not quoted).
///
/// # Errors
/// The connection or the `LISTEN` failed (described).
pub async fn listen(database: &DatabaseConfig, channel: &str) -> Result<Listener, String> {
    use futures_util::StreamExt;
    let config = database.pg_config().map_err(|e| e.to_string())?;
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| describe(&e))?;
    let (sender, receiver) = tokio::sync::mpsc::channel(16_384);
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let name = channel.to_owned();
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if sender.try_send(n.payload().to_owned()).is_err() {
                        let _ = sender.try_send(String::new());
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(channel = %name, error = %describe(&error), "listener ended");
                    break;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {channel}")).await.map_err(|e| describe(&e))?;
    Ok(Listener { receiver, _client: client })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_database_replaces_only_the_database() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            url_with_database("postgres://u:p@h:1/db?sslmode=disable", "t2").unwrap(),
            "postgres://u:p@h:1/t2?sslmode=disable"
        );
        assert_eq!(url_with_database("postgres://h", "t3").unwrap(), "postgres://h/t3");
        assert_eq!(url_with_database("host=h dbname=x user=u", "t4").unwrap(), "host=h user=u dbname=t4");
    }

    #[test]
    fn quote_ident_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
