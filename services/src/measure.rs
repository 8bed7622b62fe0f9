//! What the `tape bench …` commands share: measured phases, peak memory, percentiles,
//! the raw read-out.

#![allow(clippy::disallowed_methods)] // benchmarks read the wall clock

use std::time::{Duration, Instant};

use futures_util::{pin_mut, TryStreamExt};

/// One measured phase of a benchmark.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub events: u64,
    pub elapsed: Duration,
    /// Peak resident memory during the phase, in KiB (`None` off Linux).
    pub peak_kib: Option<u64>,
}

impl Phase {
    /// Events per second of wall time.
    #[must_use]
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The peak in MiB for a table cell (`?` when unknown).
    #[must_use]
    pub fn peak_mib(&self) -> String {
        self.peak_kib.map_or_else(|| "?".to_owned(), |k| format!("{:.0}", k as f64 / 1024.0))
    }
}

/// The process's peak resident memory (`VmHWM`) in KiB, on Linux.
#[must_use]
pub fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak to the current resident size (Linux `clear_refs`; a no-op elsewhere).
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The `p` quantile (0..=1) of sorted samples, nearest rank; 0 for none.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let index = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs `COPY … TO STDOUT` and counts its rows (newlines) without decoding anything: the
/// raw read-out every read path is measured against.
///
/// # Errors
/// The database's error.
pub async fn copy_rows(client: &tokio_postgres::Client, copy_sql: &str) -> Result<u64, tokio_postgres::Error> {
    let copy = client.copy_out(copy_sql).await?;
    pin_mut!(copy);
    let mut rows: u64 = 0;
    while let Some(chunk) = copy.try_next().await? {
        rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    Ok(rows)
}

/// The raw read-out of every column of `events` in `order_by` order, as a phase.
///
/// # Errors
/// The database's error, described.
pub async fn raw_read_out(
    client: &tokio_postgres::Client,
    name: &'static str,
    order_by: &str,
) -> Result<Phase, String> {
    let sql = format!("COPY (SELECT {} FROM events ORDER BY {order_by}) TO STDOUT", crate::store::EVENT_COLUMNS);
    reset_peak();
    let started = Instant::now();
    let events = copy_rows(client, &sql).await.map_err(|e| crate::describe(&e))?;
    Ok(Phase { name, events, elapsed: started.elapsed(), peak_kib: peak_kib() })
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&samples, 0.5) - 51.0).abs() < f64::EPSILON);
        assert!((percentile(&samples, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((percentile(&samples, 1.0) - 100.0).abs() < f64::EPSILON);
        assert!(percentile(&[], 0.5).abs() < f64::EPSILON);
    }
}
