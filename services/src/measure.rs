//! What the `tape bench …` commands share: measured phases, peak memory, percentiles.

use std::time::Duration;

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
