//! `tape store …`: event store tools.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tape_services::store::EventStore;
use tape_services::{check, db};

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Smoke test: append to a scratch stream `smoke-<uuid>`, read back by stream and
    /// globally, verify the chain. Exit 1 on any problem.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The config file (default: ./tape.toml if present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The database URL (overrides the config file and TAPE_DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// Runs the subcommand.
///
/// # Errors
/// Invalid settings, or a database that cannot be reached or refuses.
pub fn run(command: &StoreCommand) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Check(args) => check(args),
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let config = super::migrate::database_url(args.config.as_deref(), args.database_url.as_deref())?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = EventStore::new(db::pool(&config.database)?);
        match check::run(&store).await {
            Ok(report) => {
                for line in &report.lines {
                    println!("ok   {line}");
                }
                println!("store check passed (stream {})", report.stream_id);
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("FAIL {error}");
                eprintln!("store check failed (did `tape migrate` run against this database?)");
                Ok(ExitCode::from(1))
            }
        }
    })
}
