//! Schema migrations: the SQL files of `migrations/` at the repository root, embedded at
//! build time and applied by refinery (`tape migrate`).
//!
//! [`migrate`] creates the database named in the URL when it does not exist, takes a
//! session advisory lock (so two `tape migrate` runs on one database take turns), applies
//! what is missing, each file in its own transaction, and reports what it applied.
//! Running it again applies nothing.

use crate::db::{self, DbError};
use crate::describe;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Key of the advisory lock held while migrating (advisory locks are per database).
const MIGRATION_LOCK_KEY: i64 = 0x7461_7065_6d69_6772; // "tapemigr"

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot lock database {database} for migration: {}", describe(cause))]
    Lock { database: String, cause: tokio_postgres::Error },
    #[error("migration of database {database} failed: {}", describe(cause))]
    Migration { database: String, cause: refinery::Error },
}

/// One applied migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub name: String,
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub database: String,
    /// The database did not exist and was created.
    pub created_database: bool,
    /// Migrations applied by this run, in order (empty: already up to date).
    pub applied: Vec<Applied>,
    /// The newest migration version now in the database.
    pub current_version: Option<i64>,
}

/// Every embedded migration, as (version, name), by version (the embedding lists files
/// by name, so `V10` would come before `V2`).
#[must_use]
pub fn known_migrations() -> Vec<Applied> {
    let mut known: Vec<Applied> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| Applied { version: i64::from(m.version()), name: m.name().to_owned() })
        .collect();
    known.sort_by_key(|m| m.version);
    known
}

/// Creates the database if absent and applies every missing migration.
///
/// # Errors
/// [`MigrateError`] when the server cannot be reached or a migration fails (that
/// migration's transaction is rolled back; earlier ones stay applied).
pub async fn migrate(url: &str) -> Result<MigrationReport, MigrateError> {
    let database = db::database_name(url)?;
    let created_database = db::create_database_if_absent(url).await?;
    let mut client = db::connect(url).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(|cause| MigrateError::Lock { database: database.clone(), cause })?;
    let runner = embedded::migrations::runner();
    let result = runner.run_async(&mut client).await;
    // The lock is a session lock: it also ends with the connection, so an error here is
    // harmless; report the migration's own error first.
    let _unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]).await;
    let report = result.map_err(|cause| MigrateError::Migration { database: database.clone(), cause })?;
    let applied: Vec<Applied> = report
        .applied_migrations()
        .iter()
        .map(|m| Applied { version: i64::from(m.version()), name: m.name().to_owned() })
        .collect();
    let current_version = runner
        .get_last_applied_migration_async(&mut client)
        .await
        .map_err(|cause| MigrateError::Migration { database: database.clone(), cause })?
        .map(|m| i64::from(m.version()));
    Ok(MigrationReport { database, created_database, applied, current_version })
}
