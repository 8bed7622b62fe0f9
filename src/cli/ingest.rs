//! `tape ingest recommendations|quotes|securities|bars FILE`: load a CSV or JSON Lines
//! file into an upstream table (SPEC 8), reporting each bad row by line, field and value
//! and loading the valid ones.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tape_services::upstream::{self, Table};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Recommendations,
    Quotes,
    Securities,
    Bars,
}

/// Load a CSV or JSON Lines file into an upstream table.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which table.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The file (`.csv` with a header, or `.jsonl`).
    pub file: PathBuf,
    /// The config file (default: ./tape.toml if present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The database URL (overrides the config file and TAPE_DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// Runs the subcommand: exit 0 when every row loaded, 1 when some were bad.
///
/// # Errors
/// An unreadable file or an unreachable database.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::migrate::database_url(args.config.as_deref(), args.database_url.as_deref())?;
    let table = match args.kind {
        Kind::Recommendations => Table::Recommendations,
        Kind::Quotes => Table::Quotes,
        Kind::Securities => Table::Securities,
        Kind::Bars => Table::Bars,
    };
    let file = std::fs::File::open(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let client = tape_services::db::connect(&config.database.url).await?;
        let name = args.file.display().to_string();
        anyhow::Ok(upstream::ingest(&client, table, std::io::BufReader::new(file), &name).await?)
    })?;
    for error in &report.errors {
        eprintln!("{}: {error}", args.file.display());
    }
    println!(
        "{}: {} rows, {} loaded into {}, {} unchanged, {} bad",
        args.file.display(),
        report.rows,
        report.loaded,
        table.name(),
        report.unchanged,
        report.errors.len()
    );
    Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
