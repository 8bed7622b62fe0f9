//! `tape projections …`: run (catch up and follow), rebuild (shadow tables, swapped in
//! atomically), status (checkpoints and lag). See `docs/projections.md`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tape_projections::{Table, TableSet};
use tape_services::projections::{self, PassReport, Progress};
use tape_services::store::EventStore;
use tape_services::{db, ServiceConfig};

#[derive(Debug, clap::Subcommand)]
pub enum ProjectionsCommand {
    /// Catch the projections up with the log, then follow it (LISTEN tape_events, poll
    /// every few seconds) until Ctrl-C. `--once` stops after catching up.
    Run(RunArgs),
    /// Rebuild projections from the start of the log into shadow tables, then swap them
    /// in, in one transaction.
    Rebuild(RebuildArgs),
    /// Each projection's checkpoint and how many events it is behind the head.
    Status(Connection),
}

#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The config file (default: ./tape.toml if present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The database URL (overrides the config file and TAPE_DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Catch up once and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Rebuild only this projection (e.g. `orders`).
    #[arg(long, value_name = "NAME", value_parser = parse_table)]
    pub only: Option<Table>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_table(text: &str) -> Result<Table, String> {
    Table::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        format!("unknown projection {text:?}: expected one of {}", names.join(", "))
    })
}

fn settings(connection: &Connection) -> anyhow::Result<ServiceConfig> {
    super::migrate::database_url(connection.config.as_deref(), connection.database_url.as_deref())
}

struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
        }
    }
    fn advance(&mut self, done: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(done);
        }
    }
}

/// Runs the subcommand.
///
/// # Errors
/// Invalid settings, or a database that cannot be reached or refuses.
pub fn run(command: &ProjectionsCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match command {
            ProjectionsCommand::Run(args) => run_projections(args).await,
            ProjectionsCommand::Rebuild(args) => rebuild(args).await,
            ProjectionsCommand::Status(args) => status(args).await,
        }
    })
}

fn print_pass(report: &PassReport) {
    if report.events > 0 {
        println!(
            "projected {} events ({} row changes, {} transactions); checkpoints at {}",
            report.events, report.changes, report.batches, report.head
        );
    }
}

async fn run_projections(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = settings(&args.connection)?;
    let store = EventStore::new(db::pool(&config.database)?);
    if args.once {
        let mut client = db::connect(&config.database.url).await?;
        let report = projections::catch_up(&store, &mut client, TableSet::ALL, &mut projections::NoProgress).await?;
        print_pass(&report);
        println!("caught up at {}", report.head);
        return Ok(ExitCode::SUCCESS);
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    println!("following the log (Ctrl-C to stop)");
    projections::follow(&store, &config.database.url, TableSet::ALL, shutdown, print_pass).await?;
    Ok(ExitCode::SUCCESS)
}

async fn rebuild(args: &RebuildArgs) -> anyhow::Result<ExitCode> {
    let config = settings(&args.connection)?;
    let store = EventStore::new(db::pool(&config.database)?);
    let mut client = db::connect(&config.database.url).await?;
    let tables = args.only.map_or(TableSet::ALL, TableSet::only);
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} rebuild [{elapsed_precise}] {wide_bar} {pos} events ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut progress = Bar(bar);
    #[allow(clippy::disallowed_methods)] // wall-clock time for the human summary only
    let started = std::time::Instant::now();
    let report = projections::rebuild(&store, &mut client, tables, &mut progress).await;
    if let Some(bar) = &progress.0 {
        bar.finish_and_clear();
    }
    let report = report?;
    let elapsed = started.elapsed().as_secs_f64();
    let names: Vec<&str> = tables.iter().map(Table::name).collect();
    println!(
        "rebuilt {} from {} events ({} row changes) in {elapsed:.2}s; swapped in at {}",
        names.join(", "),
        report.events,
        report.changes,
        report.head
    );
    Ok(ExitCode::SUCCESS)
}

async fn status(args: &Connection) -> anyhow::Result<ExitCode> {
    let config = settings(args)?;
    let store = EventStore::new(db::pool(&config.database)?);
    let client = db::connect(&config.database.url).await?;
    let (head, rows) = projections::status(&store, &client).await?;
    println!("head {head}");
    println!("{:<22} {:>24} {:>10}  last rebuilt", "projection", "checkpoint", "behind");
    for row in rows {
        let rebuilt = row.rebuilt_at.map_or_else(|| "never".to_owned(), |t| t.to_string());
        println!("{:<22} {:>24} {:>10}  {rebuilt}", row.table.name(), row.checkpoint.to_string(), row.behind);
    }
    Ok(ExitCode::SUCCESS)
}
