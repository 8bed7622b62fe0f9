//! `tape demo`: the real daemon through one trading day on real bars (see
//! `services::demo`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Run the daemon in-process through one trading day on real bars, then explain and verify.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file (default: ./tape.toml if present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[arg(long, default_value = "data/sample/bars.csv")]
    pub bars: PathBuf,
    #[arg(long, default_value = "data/sample/sectors.csv")]
    pub sectors: PathBuf,
    /// The trading day (YYYY-MM-DD) within the bars.
    #[arg(long, default_value = "2017-03-08")]
    pub day: String,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Simulated seconds per second (the day is 24,720 s: 400 ≈ 62 s).
    #[arg(long, default_value_t = 400.0)]
    pub speed: f64,
    /// Where the daemon serves /healthz and /metrics during the run.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
}

/// Runs the subcommand.
///
/// # Errors
/// A bad configuration, unreachable services, or a failed verification.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let loaded = super::daemon::load(args.config.as_deref(), &[])?;
    super::daemon::init_logging(super::daemon::LogFormat::Text, "warn");
    let day = chrono::NaiveDate::parse_from_str(&args.day, "%Y-%m-%d")
        .map_err(|_| anyhow::anyhow!("invalid --day {:?}: expected YYYY-MM-DD", args.day))?;
    if !(1.0..=100_000.0).contains(&args.speed) {
        anyhow::bail!("invalid --speed {}: must be within [1, 100000]", args.speed);
    }
    let options = tape_services::demo::DemoOptions {
        database: loaded.service.database,
        redis: loaded.service.redis,
        bars: args.bars.clone(),
        sectors: args.sectors.clone(),
        day,
        seed: args.seed,
        speed: args.speed,
        listen: args.listen.clone(),
        decision: loaded.decision,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let say = |line: &str| println!("{line}");
    runtime.block_on(tape_services::demo::run(options, &say)).map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}
