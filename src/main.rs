//! `tape`: one binary for the live daemon, replay and simulation, audit, and operations.
//!
//! `main` only parses arguments and maps the outcome to an exit code; every command's
//! work lives in the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// mimalloc: the core allocates many small objects (the JSON details that make every
/// decision explainable); measured in docs/BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// tape — an event-sourced trading ledger.
#[derive(Debug, Parser)]
#[command(name = "tape", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pure core over a scenario file with the paper broker, no database (SPEC 9).
    Simulate(cli::simulate::Args),
    /// Make scenario files for `tape simulate`.
    Scenario(cli::scenario::ScenarioArgs),
    /// Create the database if needed and apply the migrations (idempotent).
    Migrate(cli::migrate::Args),
    /// Event store tools (`tape store check`).
    #[command(subcommand)]
    Store(cli::store::StoreCommand),
    /// Explain any decision, list what happened, verify the ledger (SPEC 10).
    Audit(cli::audit::Args),
    /// Benchmarks (`tape bench store`).
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// The live daemon (SPEC 8).
    Daemon(cli::daemon::Args),
    /// Load a CSV or JSON Lines file into an upstream table.
    Ingest(cli::ingest::Args),
    /// Accounts: open, list, show.
    #[command(subcommand)]
    Account(cli::account::AccountCommand),
    /// Circuit breakers (`tape breaker reset`).
    #[command(subcommand)]
    Breaker(cli::breaker::BreakerCommand),
    /// The reserve pool (`tape reserve release`).
    #[command(subcommand)]
    Reserve(cli::reserve::ReserveCommand),
    /// The real daemon through one trading day on real bars, explained and verified.
    Demo(cli::demo::Args),
    /// The read tables: run (catch up and follow), rebuild, status.
    #[command(subcommand)]
    Projections(cli::projections::ProjectionsCommand),
    /// Verify recorded days against a replay, or replay them under another config (SPEC 9).
    Replay(cli::replay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Simulate(args) => cli::simulate::run(args),
        Command::Scenario(args) => cli::scenario::run(args),
        Command::Migrate(args) => cli::migrate::run(&args),
        Command::Store(command) => cli::store::run(&command),
        Command::Bench(command) => cli::bench::run(&command),
        Command::Audit(args) => cli::audit::run(args),
        Command::Daemon(args) => cli::daemon::run(args),
        Command::Ingest(args) => cli::ingest::run(&args),
        Command::Account(command) => cli::account::run(&command),
        Command::Breaker(command) => cli::breaker::run(&command),
        Command::Reserve(command) => cli::reserve::run(&command),
        Command::Demo(args) => cli::demo::run(&args),
        Command::Projections(command) => cli::projections::run(&command),
        Command::Replay(args) => cli::replay::run(&args),
    }
}
