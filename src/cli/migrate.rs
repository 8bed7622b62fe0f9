//! `tape migrate`: create the database if needed and apply the migrations of `migrations/`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tape_services::config::{redact_url, ServiceConfig};
use tape_services::migrate;

/// Create the database named in `[database] url` if it does not exist and apply every
/// missing migration (idempotent).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file (default: ./tape.toml if present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The database URL (overrides the config file and TAPE_DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// The database URL from the flags, the environment, the file and the defaults.
///
/// # Errors
/// An invalid config file or value.
pub fn database_url(config: Option<&std::path::Path>, url: Option<&str>) -> anyhow::Result<ServiceConfig> {
    let mut config = ServiceConfig::load(config)?;
    if let Some(url) = url {
        config.database.url = url.to_owned();
        config.database.validate()?;
    }
    Ok(config)
}

/// Runs the subcommand.
///
/// # Errors
/// Invalid settings, or a database that cannot be reached or refuses.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = database_url(args.config.as_deref(), args.database_url.as_deref())?;
    let url = config.database.url;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(migrate::migrate(&url))?;
    if report.created_database {
        println!("created database {}", report.database);
    }
    if report.applied.is_empty() {
        println!("database {} is up to date ({})", report.database, redact_url(&url));
    } else {
        for applied in &report.applied {
            println!("applied V{}__{}", applied.version, applied.name);
        }
        println!("database {} migrated ({} applied)", report.database, report.applied.len());
    }
    if let Some(version) = report.current_version {
        println!("schema version {version}");
    }
    Ok(ExitCode::SUCCESS)
}
