//! `tape bench …`: benchmarks that print a table.

use std::process::ExitCode;

use anyhow::Context;
use tape_services::bench::{self, BenchOptions};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// The event store against raw PostgreSQL: appends (1 and 16 events per transaction,
    /// 1 and 8 writers) and global read-out, in a scratch database dropped at the end.
    Store(StoreArgs),
    /// The whole daemon: recommendation row → order job latency, sustained
    /// recommendations per second with durable commits (beside raw PostgreSQL commits),
    /// and peak RSS; in a scratch database dropped at the end.
    Daemon(DaemonArgs),
    /// Projections rebuild and `replay --verify` of a stored history against raw
    /// `COPY … TO STDOUT` of the same events, in a scratch database dropped at the end.
    Replay(ReplayArgs),
    /// `tape audit explain` latency and `tape audit verify` throughput on a store of
    /// 10,000,000 events (real-data scenarios of several accounts), in a scratch database
    /// dropped at the end unless --keep.
    Audit(AuditArgs),
}

/// The PostgreSQL server a benchmark runs on.
#[derive(Debug, clap::Args)]
pub struct Server {
    /// Any database on the server (a superuser: the bench creates its own scratch database
    /// next to it and drops it at the end).
    #[arg(
        long,
        value_name = "URL",
        env = "TAPE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
}

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub server: Server,
    #[arg(long, value_name = "URL", env = "TAPE_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Single-row transactions for the raw PostgreSQL commit rate.
    #[arg(long, default_value_t = 2_000)]
    pub raw_commits: usize,
    /// Rows sent one at a time for the latency (at most 500).
    #[arg(long, default_value_t = 300)]
    pub latency_samples: usize,
    /// Rows sent as fast as possible for the throughput.
    #[arg(long, default_value_t = 20_000)]
    pub throughput_rows: usize,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub server: Server,
    /// The scenario to store (see docs/BENCHMARKS.md for the 1M-event one).
    #[arg(long, value_name = "FILE")]
    pub scenario: std::path::PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub server: Server,
    /// Daily bars the accounts' scenarios are made from.
    #[arg(long, value_name = "FILE", default_value = "data/bench/sp500_50_2013_2018.csv.gz")]
    pub bars: std::path::PathBuf,
    /// Sectors of the bars' tickers (every ticker in it is traded).
    #[arg(long, value_name = "FILE", default_value = "data/bench/sectors.csv")]
    pub sectors: std::path::PathBuf,
    /// Events to store, at least.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Account streams (filled concurrently; each holds at most ~5,000,000 events).
    #[arg(long, default_value_t = 3)]
    pub accounts: u32,
    /// Recommendations explained in process (a third acted, skipped, re-evaluated).
    #[arg(long, default_value_t = 300)]
    pub samples: usize,
    /// Recommendations explained by running `tape audit explain` as a process.
    #[arg(long, default_value_t = 30)]
    pub command_samples: usize,
    /// Recommendations explained with --from-log (and compared with the fast path).
    #[arg(long, default_value_t = 3)]
    pub from_log_samples: usize,
    /// Keep the scratch database, to measure it again with --existing.
    #[arg(long)]
    pub keep: bool,
    /// Measure a database kept by an earlier run instead of building one.
    #[arg(long, value_name = "DATABASE")]
    pub existing: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub server: Server,
    /// One-event transactions of the single writer.
    #[arg(long, default_value_t = 2_000)]
    pub single_txns: usize,
    /// 16-event transactions of the single writer.
    #[arg(long, default_value_t = 500)]
    pub batch_txns: usize,
    /// Concurrent writers (each on its own stream).
    #[arg(long, default_value_t = 8)]
    pub writers: usize,
    /// One-event transactions per concurrent writer.
    #[arg(long, default_value_t = 500)]
    pub txns_per_writer: usize,
    /// Events in the log for the read-out.
    #[arg(long, default_value_t = 100_000)]
    pub read_events: usize,
}

/// Runs the subcommand.
///
/// # Errors
/// Invalid settings, or a database that cannot be reached or refuses.
pub fn run(command: &BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Store(args) => store(args),
        BenchCommand::Daemon(args) => daemon(args),
        BenchCommand::Replay(args) => replay(args),
        BenchCommand::Audit(args) => audit(args),
    }
}

fn daemon(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let options = tape_services::daemon_bench::DaemonBenchOptions {
        admin_url: args.server.database_url.clone(),
        redis_url: args.redis_url.clone(),
        raw_commits: args.raw_commits.max(1),
        latency_samples: args.latency_samples.clamp(1, 500),
        throughput_rows: args.throughput_rows.max(1),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let r = runtime
        .block_on(tape_services::daemon_bench::run(&options, |step| eprintln!("… {step}")))
        .map_err(anyhow::Error::msg)?;
    println!("{} CPUs", r.cpus);
    println!();
    println!("| measure | result | goal |");
    println!("|---|---|---|");
    println!(
        "| raw PostgreSQL, 1-row transactions, 1 connection | {:.0} commits/s | (reference) |",
        r.raw_commits_per_sec
    );
    println!(
        "| row insert → order job in Redis ({} samples) | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | p99 < 50 ms |",
        r.latency_samples, r.latency_p50_ms, r.latency_p99_ms, r.latency_max_ms
    );
    println!(
        "| sustained recommendations through the daemon ({} rows; {} acted, {} events) | {:.0}/s | ≥ 3,000/s |",
        r.throughput_rows, r.throughput_acts, r.throughput_events, r.throughput_per_sec
    );
    println!("| peak RSS of the process (daemon + bench) | {:.0} MB | < 100 MB |", r.peak_rss_mb);
    Ok(ExitCode::SUCCESS)
}

fn store(args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        admin_url: args.server.database_url.clone(),
        single_txns: args.single_txns.max(1),
        batch_txns: args.batch_txns.max(1),
        writers: args.writers.clamp(1, 64),
        txns_per_writer: args.txns_per_writer.max(1),
        read_events: args.read_events.max(1),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(bench::run(&options, |step| eprintln!("… {step}")))?;
    let env = &report.environment;
    println!(
        "PostgreSQL {}, synchronous_commit = {}, fsync = {}; {} CPUs, {} RAM",
        env.server_version, env.synchronous_commit, env.fsync, env.cpus, env.memory
    );
    println!();
    print!("{}", report.markdown_table());
    let missed: Vec<&str> = report.rows.iter().filter(|r| !r.meets_goal()).map(|r| r.name.as_str()).collect();
    if missed.is_empty() {
        println!("\nevery goal met");
    } else {
        println!("\ngoal missed: {}", missed.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime
        .block_on(tape_services::bench_replay::run(&args.server.database_url, &args.scenario, |step| {
            eprintln!("… {step}")
        }))
        .map_err(anyhow::Error::msg)?;
    println!("{} events in the log (account {})", report.events, report.account);
    println!();
    println!("| measurement | events | seconds | events/s | vs raw read-out | peak RSS (MiB) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let raw = report.raw.rate();
    for phase in [&report.setup, &report.raw, &report.rebuild, &report.verify] {
        let mib = phase.peak_mib();
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0}% | {mib} |",
            phase.name,
            phase.events,
            phase.elapsed.as_secs_f64(),
            phase.rate(),
            100.0 * phase.rate() / raw
        );
    }
    println!();
    println!("verify {}", if report.verify_clean { "passed (no divergence)" } else { "FOUND DIVERGENCES" });
    Ok(ExitCode::SUCCESS)
}

fn audit(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.events > 0, "invalid --events 0: expected at least one event");
    anyhow::ensure!(args.accounts > 0, "invalid --accounts 0: expected at least one account");
    anyhow::ensure!(args.samples > 0, "invalid --samples 0: expected at least one recommendation");
    let options = tape_services::bench_audit::AuditBenchOptions {
        admin_url: args.server.database_url.clone(),
        bars: args.bars.clone(),
        sectors: args.sectors.clone(),
        events: args.events,
        accounts: args.accounts,
        samples: args.samples,
        command_samples: args.command_samples,
        from_log_samples: args.from_log_samples,
        tape_exe: std::env::current_exe().ok(),
        keep: args.keep,
        existing: args.existing.clone(),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let r = runtime
        .block_on(tape_services::bench_audit::run(&options, |step| eprintln!("… {step}")))
        .map_err(anyhow::Error::msg)?;
    println!(
        "{} events in {} streams, {} trading decisions; database {} ({:.1} GiB){}",
        r.events,
        r.streams,
        r.decisions,
        r.database,
        r.database_bytes as f64 / f64::from(1u32 << 30),
        if r.kept { ", kept" } else { ", dropped" }
    );
    let strata: Vec<String> = r.strata.iter().map(|(name, n)| format!("{n} {name}")).collect();
    println!(
        "explained: {} ({} explanations: a recommendation captured by several accounts has one each)",
        strata.join(", "),
        r.explanations
    );
    println!();
    println!("| measurement | samples | p50 | p90 | p99 | max | goal |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    let row = |name: &str, l: &tape_services::bench_audit::Latency, goal: &str| {
        println!(
            "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {goal} |",
            l.samples, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
        );
    };
    let mark = if r.explain.p99_ms < 50.0 { "✔" } else { "✘" };
    row("explain, in process (fast path + text), first pass", &r.explain, &format!("< 50 ms {mark}"));
    row("explain, in process, second pass (same ids, pages cached)", &r.explain_warm, "—");
    if let Some(command) = &r.command {
        row("`tape audit explain ID`, the whole process", command, "—");
    }
    row(&format!("explain --from-log ({} agreed with the fast path)", r.from_log_agreed), &r.from_log, "—");
    println!();
    println!("| measurement | events | seconds | events/s | vs raw read-out | peak RSS (MiB) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let raw = r.raw.rate();
    for phase in [r.setup.as_ref(), r.projections.as_ref(), Some(&r.raw), Some(&r.verify)].into_iter().flatten() {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0}% | {} |",
            phase.name,
            phase.events,
            phase.elapsed.as_secs_f64(),
            phase.rate(),
            100.0 * phase.rate() / raw,
            phase.peak_mib()
        );
    }
    println!();
    println!(
        "verify: chains {}, {} of 3 statements refused",
        if r.verify_intact { "intact" } else { "BROKEN" },
        r.immutability_refused
    );
    Ok(ExitCode::SUCCESS)
}
