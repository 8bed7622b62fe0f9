//! `tape bench audit`: `tape audit explain` latency and `tape audit verify` throughput on
//! a large store (SPEC 10; the goal is explain < 50 ms on 10,000,000 events).
//!
//! 1. **setup** (not a goal): a scratch database `tape_bench_<uuid>`, migrated, filled with
//!    `accounts` account streams at once. Each account is a real-data scenario made in
//!    process by `tape scenario from-bars` (seed = the account's number, every ticker of the
//!    bars file, May 2013 – Feb 2018), cut after `ceil(events / accounts)` lines (each
//!    line makes at least one event) and stored by `simulate --store`, 500 steps per
//!    append. Then every projection is built and `VACUUM ANALYZE` runs.
//! 2. **explain, in process**: recommendations sampled deterministically (`md5` order) in
//!    three strata — acted, skipped for good, re-evaluated after a transient skip — each
//!    explained through the projections (the path `tape audit explain` takes) and rendered
//!    to its one screen of text, as the read-only role `tape_reader`; twice: the first
//!    pass finds the pages where the store left them (on disk or in the OS cache), the
//!    second finds them cached.
//! 3. **explain, the command**: a smaller sample run as `tape audit explain ID` processes:
//!    start-up, connection, role switch, queries, output.
//! 4. **explain `--from-log`**: a few samples through the event log alone, each compared
//!    with the fast path's answer (they must be equal).
//! 5. **verify**: the raw read-out of the same rows in the same order (`COPY (SELECT … ORDER
//!    BY stream_id, stream_version) TO STDOUT`) as the baseline, then `tape audit verify`'s
//!    work: every hash chain recomputed and the immutability probe.
//!
//! The scratch database is dropped at the end unless `keep`; `existing` measures a
//! database kept by an earlier run instead of building one.

#![allow(clippy::disallowed_methods, clippy::cast_precision_loss)] // a benchmark: wall clock and ids

use std::collections::BTreeSet;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use tape_projections::TableSet;
use tape_replay::from_bars::{self, BarSet, FromBarsError, Params, SectorSet, Sources};
use tape_replay::simulate::{Options, Quiet};

use crate::audit::{self, render::explanation_text};
use crate::config::DatabaseConfig;
use crate::measure::{peak_kib, percentile, raw_read_out, reset_peak, Phase};
use crate::projections::{self, NoProgress};
use crate::store::EventStore;
use crate::{db, describe};

/// What to run.
#[derive(Debug, Clone)]
pub struct AuditBenchOptions {
    /// A superuser URL on the server; the scratch database is made next to its database.
    pub admin_url: String,
    /// Daily bars (`data/bench/sp500_50_2013_2018.csv.gz`) and sectors.
    pub bars: PathBuf,
    pub sectors: PathBuf,
    /// Events to store, at least.
    pub events: u64,
    /// Account streams, filled concurrently.
    pub accounts: u32,
    /// Recommendations explained in process.
    pub samples: usize,
    /// Recommendations explained by running `tape audit explain` (needs `tape_exe`).
    pub command_samples: usize,
    /// Recommendations explained from the log alone and compared with the fast path.
    pub from_log_samples: usize,
    /// The `tape` binary for the command samples.
    pub tape_exe: Option<PathBuf>,
    /// Keep the scratch database (its name is in the report).
    pub keep: bool,
    /// Measure this existing database (kept by an earlier run) instead of building one.
    pub existing: Option<String>,
}

/// Latencies of one way of explaining, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(mut millis: Vec<f64>) -> Self {
        millis.sort_by(f64::total_cmp);
        Self {
            samples: millis.len(),
            p50_ms: percentile(&millis, 0.50),
            p90_ms: percentile(&millis, 0.90),
            p99_ms: percentile(&millis, 0.99),
            max_ms: millis.last().copied().unwrap_or(0.0),
        }
    }
}

/// The figures.
#[derive(Debug, Clone)]
pub struct AuditBenchReport {
    pub database: String,
    pub kept: bool,
    /// Set when this run built the store.
    pub setup: Option<Phase>,
    pub projections: Option<Phase>,
    pub events: u64,
    pub streams: u64,
    pub decisions: u64,
    pub database_bytes: i64,
    /// Per stratum: (name, recommendations sampled).
    pub strata: Vec<(&'static str, usize)>,
    /// Explanations assembled by the in-process samples (a recommendation captured by
    /// several accounts has one per account).
    pub explanations: usize,
    /// The first pass over the samples (pages as the store left them) and the second
    /// (the same ids again: what the code path costs with the pages cached).
    pub explain: Latency,
    pub explain_warm: Latency,
    pub command: Option<Latency>,
    pub from_log: Latency,
    pub from_log_agreed: usize,
    pub raw: Phase,
    pub verify: Phase,
    pub verify_intact: bool,
    pub immutability_refused: usize,
}

/// Runs the benchmark.
///
/// # Errors
/// A message naming what failed.
pub async fn run(options: &AuditBenchOptions, progress: impl Fn(&str)) -> Result<AuditBenchReport, String> {
    if let Some(name) = &options.existing {
        let url = db::url_with_database(&options.admin_url, name).map_err(|e| e.to_string())?;
        return measure(options, &url, name, None, None, &progress).await;
    }
    let database = format!("tape_bench_{}", uuid::Uuid::now_v7().simple());
    let url = db::url_with_database(&options.admin_url, &database).map_err(|e| e.to_string())?;
    let result = async {
        crate::migrate::migrate(&url).await.map_err(|e| describe(&e))?;
        let (setup, built) = build(options, &url, &progress).await?;
        measure(options, &url, &database, Some(setup), Some(built), &progress).await
    }
    .await;
    if options.keep && result.is_ok() {
        return result;
    }
    progress(&format!("dropping {database}"));
    let dropped = db::drop_database(&options.admin_url, &database).await;
    let report = result?;
    dropped.map_err(|e| e.to_string())?;
    Ok(report)
}

/// The first of the bench data's days a 60-day warm-up allows, and its last.
fn span() -> (NaiveDate, NaiveDate) {
    (NaiveDate::from_ymd_opt(2013, 5, 6).unwrap_or_default(), NaiveDate::from_ymd_opt(2018, 2, 7).unwrap_or_default())
}

async fn build(options: &AuditBenchOptions, url: &str, progress: &impl Fn(&str)) -> Result<(Phase, Phase), String> {
    let bars_name = options.bars.display().to_string();
    let sectors_name = options.sectors.display().to_string();
    let open = |what: &str, path: &Path| {
        std::fs::File::open(path).map_err(|e| format!("cannot open the {what} file {}: {e}", path.display()))
    };
    let sectors =
        from_bars::read_sectors(open("sectors", &options.sectors)?, &sectors_name).map_err(|e| e.to_string())?;
    let tickers: BTreeSet<String> = sectors.sectors.keys().cloned().collect();
    let bars = from_bars::read_bars(open("bars", &options.bars)?, &bars_name, &tickers).map_err(|e| e.to_string())?;
    let tickers: BTreeSet<String> = bars.bars.keys().cloned().collect();
    let sources = Arc::new((bars, sectors));
    let accounts = options.accounts.max(1);
    let lines_each = options.events.div_ceil(u64::from(accounts));
    let (from, to) = span();
    let initial_cash = from_bars::parse_initial_cash("100000.00").map_err(|e| e.to_string())?;

    let pool = db::pool(&DatabaseConfig { url: url.to_owned(), pool_size: 4, role: "tape_app".to_owned() })
        .map_err(|e| e.to_string())?;
    let store = EventStore::new(pool);
    progress(&format!(
        "storing {accounts} accounts at once, {lines_each} scenario lines each ({} tickers, {from}..{to}, \
         simulate --store with 500 steps per append)",
        tickers.len()
    ));
    reset_peak();
    let started = Instant::now();
    let mut runs = Vec::new();
    for n in 1..=accounts {
        let params = Params {
            tickers: tickers.clone(),
            from,
            to,
            seed: u64::from(n),
            account_id: format!("bench-{n}"),
            initial_cash,
            interval_minutes: 5,
        };
        let (reader, writer) = io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
        let sources = Arc::clone(&sources);
        let generator = std::thread::spawn(move || generate(&params, &sources, writer, lines_each));
        let input = BufReader::with_capacity(1 << 20, reader);
        let stored = crate::simulate::run(store.clone(), input, Options::default(), 500, Quiet);
        runs.push(async move {
            let stored = stored.await.map_err(|e| e.to_string());
            let generated = generator.join().map_err(|_| "the scenario generator panicked".to_owned())?;
            let stored = stored?;
            generated?;
            Ok::<i64, String>(stored.version)
        });
    }
    let mut events: u64 = 0;
    for version in futures_util::future::join_all(runs).await {
        events += u64::try_from(version?).unwrap_or(0);
    }
    let setup =
        Phase {
            name: "setup: from-bars → simulate --store", events, elapsed: started.elapsed(), peak_kib: peak_kib()
        };
    if events < options.events {
        return Err(format!("the scenarios made only {events} events (wanted {}): raise --accounts", options.events));
    }

    progress(&format!("{events} events stored in {:.0} s; building every projection", setup.elapsed.as_secs_f64()));
    let mut client = db::connect(url).await.map_err(|e| e.to_string())?;
    reset_peak();
    let started = Instant::now();
    projections::rebuild(&store, &mut client, TableSet::ALL, &mut NoProgress).await.map_err(|e| e.to_string())?;
    // The rebuild stops at the cluster's watermark; what a transaction elsewhere held back
    // is caught up here, so the tables hold every event stored.
    projections::catch_up_to_newest(&store, &mut client, TableSet::ALL, Duration::from_secs(120))
        .await
        .map_err(|e| e.to_string())?;
    let built = Phase { name: "projections (all 8)", events, elapsed: started.elapsed(), peak_kib: peak_kib() };
    progress("VACUUM ANALYZE");
    client.batch_execute("VACUUM ANALYZE").await.map_err(|e| describe(&e))?;
    Ok((setup, built))
}

/// Writes one account's scenario into the pipe, cut after `lines` lines.
fn generate(params: &Params, sources: &(BarSet, SectorSet), pipe: io::PipeWriter, lines: u64) -> Result<(), String> {
    let holidays = tape_events::config::nyse_holidays();
    let sources = Sources { bars: &sources.0, sectors: &sources.1, holidays };
    let mut out = BufWriter::with_capacity(1 << 16, FirstLines { inner: pipe, left: lines });
    let result =
        from_bars::generate(params, &sources, &mut out).and_then(|_| out.flush().map_err(FromBarsError::Write));
    match result {
        Ok(()) => Ok(()),
        // Enough lines, or the simulation stopped reading (its error is the one to report).
        Err(FromBarsError::Write(e)) if is_enough(&e) || e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// The writer's limit was reached.
#[derive(Debug)]
struct Enough;

impl std::fmt::Display for Enough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("line limit reached")
    }
}

impl std::error::Error for Enough {}

fn is_enough(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Enough>())
}

/// Passes on whole lines until `left` of them are written, then refuses with [`Enough`].
struct FirstLines<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for FirstLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other(Enough));
        }
        let mut end = buf.len();
        let mut seen = 0;
        for (i, byte) in buf.iter().enumerate() {
            if *byte == b'\n' {
                seen += 1;
                if seen == self.left {
                    end = i + 1;
                    break;
                }
            }
        }
        self.inner.write_all(&buf[..end])?;
        self.left -= seen;
        Ok(end)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> Result<i64, String> {
    client.query_one(sql, &[]).await.map(|r| r.get(0)).map_err(|e| describe(&e))
}

/// Recommendation ids in a deterministic order (`md5` of the id).
async fn sample(client: &tokio_postgres::Client, filter: &str, n: usize) -> Result<Vec<String>, String> {
    let sql = format!(
        "SELECT recommendation_id FROM trading_decisions {filter} GROUP BY recommendation_id \
         ORDER BY md5(recommendation_id) LIMIT {n}"
    );
    let rows = client.query(&sql, &[]).await.map_err(|e| describe(&e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn measure(
    options: &AuditBenchOptions,
    url: &str,
    database: &str,
    setup: Option<Phase>,
    projections: Option<Phase>,
    progress: &impl Fn(&str),
) -> Result<AuditBenchReport, String> {
    let client = db::connect(url).await.map_err(|e| e.to_string())?;
    let events = u64::try_from(count(&client, "SELECT count(*) FROM events").await?).unwrap_or(0);
    let streams = u64::try_from(count(&client, "SELECT count(*) FROM streams").await?).unwrap_or(0);
    let decisions = u64::try_from(count(&client, "SELECT count(*) FROM trading_decisions").await?).unwrap_or(0);
    let database_bytes = count(&client, "SELECT pg_database_size(current_database())").await?;

    // Samples: a third acted, a third skipped for good, a third re-evaluated.
    let per = options.samples.div_ceil(3).max(1);
    let strata_sql: [(&'static str, &str); 3] = [
        ("acted", "WHERE decision = 'act'"),
        ("skipped", "WHERE decision = 'skip' AND is_final"),
        (
            "re-evaluated",
            "WHERE (account_id, recommendation_id) IN (SELECT account_id, recommendation_id \
             FROM trading_decisions GROUP BY 1, 2 HAVING count(*) > 1)",
        ),
    ];
    let mut ids: Vec<String> = Vec::new();
    let mut strata = Vec::new();
    for (name, filter) in strata_sql {
        let mut picked = sample(&client, filter, per).await?;
        picked.retain(|id| !ids.contains(id));
        strata.push((name, picked.len()));
        ids.extend(picked);
    }
    if ids.is_empty() {
        return Err("the store has no trading decisions to explain".to_owned());
    }

    let reader = EventStore::new(
        db::pool(&DatabaseConfig { url: url.to_owned(), pool_size: 2, role: "tape_reader".to_owned() })
            .map_err(|e| e.to_string())?,
    );
    progress(&format!("explaining {} recommendations in process (tape_reader, fast path), twice", ids.len()));
    let mut answers = Vec::with_capacity(ids.len());
    let mut passes = Vec::new();
    for _pass in 0..2 {
        let mut millis = Vec::with_capacity(ids.len());
        answers.clear();
        for id in &ids {
            let started = Instant::now();
            let found = audit::explain_fast(&reader, id).await.map_err(|e| format!("explaining {id}: {e}"))?;
            let screen: usize = found.iter().map(|x| explanation_text(x).len()).sum();
            millis.push(started.elapsed().as_secs_f64() * 1e3);
            if found.is_empty() || screen == 0 {
                return Err(format!("recommendation {id} has a decision but no explanation"));
            }
            answers.push(found);
        }
        passes.push(Latency::of(millis));
    }
    let explanations = answers.iter().map(Vec::len).sum();
    let explain_warm = passes.pop().unwrap_or_default();
    let explain = passes.pop().unwrap_or_default();

    let command = match &options.tape_exe {
        Some(exe) if options.command_samples > 0 => {
            progress(&format!("running `tape audit explain` {} times", options.command_samples.min(ids.len())));
            let mut millis = Vec::new();
            for id in ids.iter().step_by((ids.len() / options.command_samples).max(1)).take(options.command_samples) {
                millis.push(run_command(exe, url, id)?.as_secs_f64() * 1e3);
            }
            Some(Latency::of(millis))
        }
        _ => None,
    };

    let from_log_n = options.from_log_samples.min(ids.len());
    progress(&format!("explaining {from_log_n} recommendations from the log alone (--from-log)"));
    let mut millis = Vec::new();
    let mut from_log_agreed = 0;
    for (id, fast) in ids.iter().zip(&answers).step_by((ids.len() / from_log_n.max(1)).max(1)).take(from_log_n) {
        let started = Instant::now();
        let slow = audit::explain_from_log(&reader, id).await.map_err(|e| format!("explaining {id}: {e}"))?;
        millis.push(started.elapsed().as_secs_f64() * 1e3);
        if &slow != fast {
            return Err(format!("recommendation {id}: --from-log and the fast path disagree"));
        }
        from_log_agreed += 1;
    }
    let from_log = Latency::of(millis);

    progress("raw read-out in chain order: COPY (SELECT … ORDER BY stream_id, stream_version) TO STDOUT");
    let raw = raw_read_out(&client, "raw COPY … TO STDOUT (chain order)", "stream_id, stream_version").await?;

    progress("tape audit verify: every chain recomputed, then the immutability probe");
    let owner = EventStore::new(
        db::pool(&DatabaseConfig { url: url.to_owned(), pool_size: 2, role: String::new() })
            .map_err(|e| e.to_string())?,
    );
    reset_peak();
    let started = Instant::now();
    let (report, immutability) =
        audit::verify(&owner, &std::collections::BTreeMap::new()).await.map_err(|e| e.to_string())?;
    let verify = Phase {
        name: "audit verify (chains + immutability)",
        events: report.events_checked,
        elapsed: started.elapsed(),
        peak_kib: peak_kib(),
    };

    Ok(AuditBenchReport {
        database: database.to_owned(),
        kept: options.keep || options.existing.is_some(),
        setup,
        projections,
        events,
        streams,
        decisions,
        database_bytes,
        strata,
        explanations,
        explain,
        explain_warm,
        command,
        from_log,
        from_log_agreed,
        raw,
        verify,
        verify_intact: report.is_intact(),
        immutability_refused: immutability.iter().filter(|c| c.refused).count(),
    })
}

/// Runs `tape audit explain ID` and times it from spawn to exit.
fn run_command(exe: &Path, url: &str, id: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let output = std::process::Command::new(exe)
        .args(["audit", "explain", id, "--format", "table", "--database-url", url])
        .env_remove("TAPE_CONFIG")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let elapsed = started.elapsed();
    if !output.status.success() || output.stdout.is_empty() {
        return Err(format!(
            "`tape audit explain {id}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::{is_enough, FirstLines};

    #[test]
    fn first_lines_passes_whole_lines_then_refuses() {
        let mut out = FirstLines { inner: Vec::new(), left: 2 };
        assert_eq!(out.write(b"a\nbb\nccc\n").unwrap(), 5);
        let refused = out.write(b"ccc\n").unwrap_err();
        assert!(is_enough(&refused));
        assert_eq!(out.inner, b"a\nbb\n");

        let mut out = FirstLines { inner: Vec::new(), left: 2 };
        out.write_all(b"partial").unwrap();
        out.write_all(b" line\nsecond\n").unwrap();
        assert!(out.write_all(b"third\n").is_err());
        assert_eq!(out.inner, b"partial line\nsecond\n");
    }
}
