//! `tape bench replay`: projections rebuild and `replay --verify` of a stored history,
//! against raw PostgreSQL read-out of the same events, in one run (`docs/BENCHMARKS.md`).
//!
//! A scratch database (`tape_bench_<uuid>`) is created next to the given one, migrated,
//! filled by `simulate --store` from a scenario file (many steps per append: setup, not
//! measured against anything), measured, and dropped (also on failure). Peak memory is
//! the process's `VmHWM`, reset before each phase through `/proc/self/clear_refs`.

#![allow(clippy::disallowed_methods)] // benchmarks read the wall clock and mint ids

use std::path::Path;
use std::time::{Duration, Instant};

use tape_projections::TableSet;
use tape_replay::simulate::{Options, Quiet};
use uuid::Uuid;

use crate::config::DatabaseConfig;
use crate::measure::{peak_kib, raw_read_out, reset_peak, Phase};
use crate::projections::{self, NoProgress};
use crate::replay::{self, Window};
use crate::store::EventStore;
use crate::{db, describe};

/// The run's figures.
#[derive(Debug, Clone)]
pub struct ReplayBench {
    pub events: u64,
    pub account: String,
    pub setup: Phase,
    pub raw: Phase,
    pub rebuild: Phase,
    pub verify: Phase,
    pub verify_clean: bool,
}

/// Runs the benchmark over the scenario at `scenario`.
///
/// # Errors
/// A message naming what failed.
pub async fn run(admin_url: &str, scenario: &Path, progress: impl Fn(&str)) -> Result<ReplayBench, String> {
    let database = format!("tape_bench_{}", Uuid::now_v7().simple());
    let url = db::url_with_database(admin_url, &database).map_err(|e| e.to_string())?;
    crate::migrate::migrate(&url).await.map_err(|e| describe(&e))?;
    let result = run_in(&url, scenario, &progress).await;
    progress("dropping the scratch database");
    let dropped = db::drop_database(admin_url, &database).await;
    let report = result?;
    dropped.map_err(|e| e.to_string())?;
    Ok(report)
}

async fn run_in(url: &str, scenario: &Path, progress: &impl Fn(&str)) -> Result<ReplayBench, String> {
    let pool = db::pool(&DatabaseConfig { url: url.to_owned(), pool_size: 4, role: "tape_app".to_owned() })
        .map_err(|e| e.to_string())?;
    let store = EventStore::new(pool);
    progress("storing the scenario (simulate --store, 500 steps per append)");
    let file = std::fs::File::open(scenario).map_err(|e| format!("opening {}: {e}", scenario.display()))?;
    let input = std::io::BufReader::with_capacity(1 << 20, file);
    reset_peak();
    let started = Instant::now();
    let stored =
        crate::simulate::run(store.clone(), input, Options::default(), 500, Quiet).await.map_err(|e| e.to_string())?;
    let setup = Phase {
        name: "setup: simulate --store",
        events: u64::try_from(stored.version).unwrap_or(0),
        elapsed: started.elapsed(),
        peak_kib: peak_kib(),
    };
    let account = stored.stream_id.trim_start_matches("account-").to_owned();
    let mut client = db::connect(url).await.map_err(|e| e.to_string())?;
    client.batch_execute("VACUUM ANALYZE events").await.map_err(|e| describe(&e))?;

    progress("raw read-out: COPY (SELECT … FROM events ORDER BY tx_id, position) TO STDOUT");
    let raw = raw_read_out(&client, "raw COPY … TO STDOUT", "tx_id, position").await?;
    let lines = raw.events;

    progress("rebuild of every projection");
    reset_peak();
    let started = Instant::now();
    projections::rebuild(&store, &mut client, TableSet::ALL, &mut NoProgress).await.map_err(|e| e.to_string())?;
    // The rebuild stops at the cluster's watermark; what a transaction elsewhere held back
    // is caught up here, so the tables hold every event stored.
    projections::catch_up_to_newest(&store, &mut client, TableSet::ALL, Duration::from_secs(120))
        .await
        .map_err(|e| e.to_string())?;
    let rebuild =
        Phase { name: "projections rebuild (all 8)", events: lines, elapsed: started.elapsed(), peak_kib: peak_kib() };

    progress("replay --verify of the whole history");
    let (first, last) = replay::stream_days(&store, &account)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the scenario stored no account".to_owned())?;
    reset_peak();
    let started = Instant::now();
    let report = replay::verify(&store, &mut client, &account, Window { from: first, to: last }, &mut replay::Quiet)
        .await
        .map_err(|e| e.to_string())?;
    let verify = Phase {
        name: "replay --verify (whole history)",
        events: report.events_read,
        elapsed: started.elapsed(),
        peak_kib: peak_kib(),
    };
    Ok(ReplayBench { events: lines, account, setup, raw, rebuild, verify, verify_clean: report.is_clean() })
}
