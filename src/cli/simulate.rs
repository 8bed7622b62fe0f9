//! `tape simulate`: glue between the command line and `tape_replay::simulate`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tape_events::Timestamp;
use tape_replay::scenario::LineError;
use tape_replay::simulate::{self, Observer, Options, SimulateError};

/// Run the pure core over a scenario file with the paper broker, no database (SPEC 9).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario: JSON Lines, one input per line, in time order (SPEC 12). `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Where to write every event as JSON Lines. `-` writes to stdout.
    #[arg(long, value_name = "FILE", required_unless_present = "store")]
    out: Option<PathBuf>,
    /// Record the run in the event store (through the account ledger, one transaction
    /// per step) instead of a file.
    #[arg(long, conflicts_with = "out")]
    store: bool,
    /// With `--store`: the database URL (default: TAPE_DATABASE_URL, ./tape.toml, or the
    /// built-in default).
    #[arg(long, value_name = "URL", requires = "store")]
    database_url: Option<String>,
    /// With `--store`: steps per transaction (1: one per step, as the daemon).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "store")]
    steps_per_append: usize,
    /// Decision configuration overrides (SPEC 3 keys; service tables are ignored).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one config key, e.g. `--set tiers.conservative.min_confidence=0.70`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Stop reading inputs after this instant; run the ticks due up to it.
    #[arg(long, value_name = "RFC3339", value_parser = parse_timestamp)]
    until: Option<Timestamp>,
    /// Report bad lines on stderr and go on, instead of stopping at the first.
    #[arg(long)]
    skip_bad_lines: bool,
    /// No progress bar and no summary.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text).map_err(|e| e.to_string())
}

/// Reads the decision config from `--config`, `TAPE_*` and `--set`.
pub fn load_config(path: Option<&PathBuf>, sets: &[String]) -> anyhow::Result<tape_events::Config> {
    let text = path
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display())))
        .transpose()?;
    let name = path.map(|p| p.display().to_string());
    let layers = tape_commands::config::Layers {
        file: name.as_deref().zip(text.as_deref()),
        env: std::env::vars().collect(),
        sets,
    };
    Ok(tape_commands::config::load(&layers)?)
}

struct Progress {
    bar: Option<ProgressBar>,
}

fn bar(quiet: bool, size: Option<u64>) -> Option<ProgressBar> {
    (!quiet && io::stderr().is_terminal()).then(|| {
        let bar = size.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} simulate [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    })
}

/// The scenario: a file (with its size, for the progress bar), or stdin for `-`.
fn open_input(path: &PathBuf) -> anyhow::Result<(Box<dyn io::BufRead + Send>, Option<u64>)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(BufReader::with_capacity(1 << 20, io::stdin())), None));
    }
    let file = File::open(path).with_context(|| format!("opening scenario {}", path.display()))?;
    let size = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(BufReader::with_capacity(1 << 20, file)), size))
}

/// Prints the summary (with `extra` lines and the rate) and turns the result into the
/// exit status: a bad scenario line is exit 1.
fn report(
    args: &Args,
    result: Result<(tape_replay::summary::Summary, String), SimulateError>,
    started: std::time::Instant,
    to_stderr: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok((summary, extra)) => {
            if !args.quiet {
                let elapsed = started.elapsed().as_secs_f64();
                let rate = summary.events as f64 / elapsed.max(1e-9);
                let text = format!("{summary}\n{extra}elapsed        {elapsed:.2}s ({rate:.0} events/s)");
                if to_stderr {
                    eprintln!("{text}");
                } else {
                    println!("{text}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(SimulateError::BadLine(e)) => {
            eprintln!("error: {}: {e}", args.input.display());
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

/// `--store`: the scenario into the event store.
fn run_store(args: &Args, options: Options) -> anyhow::Result<ExitCode> {
    let settings = super::migrate::database_url(None, args.database_url.as_deref())?;
    let (input, size) = open_input(&args.input)?;
    let progress = Progress { bar: bar(args.quiet, size) };
    let finish = progress.bar.clone();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    #[allow(clippy::disallowed_methods)] // wall-clock time for the human summary only
    let started = std::time::Instant::now();
    let result = runtime.block_on(async {
        let store = tape_services::store::EventStore::new(tape_services::db::pool(&settings.database)?);
        anyhow::Ok(tape_services::simulate::run(store, input, options, args.steps_per_append, progress).await)
    })?;
    if let Some(bar) = finish {
        bar.finish_and_clear();
    }
    let result = result.map(|run| {
        let stored =
            format!("stored         {} at version {} in {} transactions\n", run.stream_id, run.version, run.appends);
        (run.summary, stored)
    });
    report(args, result, started, false)
}

impl Observer for Progress {
    fn progress(&mut self, bytes_read: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes_read);
        }
    }
    fn bad_line(&mut self, error: &LineError) {
        let message = format!("skipped bad {error}");
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
}

/// Runs `tape simulate`.
///
/// # Errors
/// Unreadable files and a bad config; a bad scenario line is reported and gives exit 1.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_ref(), &args.sets)?;
    let options = Options { config, until: args.until, skip_bad_lines: args.skip_bad_lines };
    let Some(out_path) = args.out.clone().filter(|_| !args.store) else { return run_store(&args, options) };
    let to_stdout = out_path.as_os_str() == "-";
    let (input, size) = open_input(&args.input)?;
    let out: Box<dyn Write> = if to_stdout {
        Box::new(BufWriter::with_capacity(1 << 20, io::stdout().lock()))
    } else {
        let file = File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
        Box::new(BufWriter::with_capacity(1 << 20, file))
    };
    let mut progress = Progress { bar: bar(args.quiet, size) };
    #[allow(clippy::disallowed_methods)] // wall-clock time for the human summary only
    let started = std::time::Instant::now();
    let result = simulate::run(input, out, &options, &mut progress);
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
    report(&args, result.map(|(summary, _)| (summary, String::new())), started, to_stdout)
}
