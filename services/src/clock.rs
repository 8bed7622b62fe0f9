//! The daemon's clock, injected: the wall clock in production, an accelerated clock for
//! `tape demo` and benchmarks, a manual clock in tests. The pure core never sees it; the
//! daemon stamps inputs with it and the schedulers sleep on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tape_events::Timestamp;
use tokio::sync::watch;

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current instant (microsecond precision).
    fn now(&self) -> Timestamp;
    /// Completes once `now() >= at`.
    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()>;
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place the wall clock is read
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(chrono::Utc::now())
    }

    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()> {
        let wait = micros_until(self.now(), at);
        Box::pin(tokio::time::sleep(wait))
    }
}

fn micros_until(now: Timestamp, at: Timestamp) -> Duration {
    let micros = at.unix_micros().saturating_sub(now.unix_micros());
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// Simulated time that runs `factor` times faster than the wall clock from `start`.
#[derive(Debug, Clone)]
pub struct AcceleratedClock {
    start: Timestamp,
    wall_start: Instant,
    factor: f64,
}

impl AcceleratedClock {
    /// A clock reading `start` now and advancing `factor` simulated seconds per second.
    #[must_use]
    #[allow(clippy::disallowed_methods)] // the accelerated clock runs on the wall clock
    pub fn new(start: Timestamp, factor: f64) -> Self {
        Self { start, wall_start: Instant::now(), factor: factor.max(1e-6) }
    }
}

impl Clock for AcceleratedClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.wall_start.elapsed().as_secs_f64() * self.factor * 1e6;
        // Simulated micros since start; a run of centuries would saturate, not wrap.
        #[allow(clippy::cast_possible_truncation)]
        let micros = elapsed.min(9.0e15) as i64;
        Timestamp::from_unix_micros(self.start.unix_micros().saturating_add(micros))
    }

    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()> {
        let simulated = micros_until(self.now(), at);
        let wall = simulated.div_f64(self.factor);
        // Round up by a millisecond so the wake-up is at or after `at`.
        Box::pin(tokio::time::sleep(wall + Duration::from_millis(1)))
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        Self { now: Arc::new(watch::Sender::new(start)) }
    }

    /// Moves the clock to `at` (never backwards).
    pub fn set(&self, at: Timestamp) {
        self.now.send_if_modified(|now| {
            let later = at > *now;
            if later {
                *now = at;
            }
            later
        });
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        let at = self.now().plus(by);
        self.set(at);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()> {
        let mut receiver = self.now.subscribe();
        Box::pin(async move {
            // A dropped sender (never, while the clock lives) ends the wait.
            let _ = receiver.wait_for(|now| *now >= at).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_it_reaches_their_time() {
        let start = Timestamp::parse("2024-03-04T14:30:00Z").unwrap();
        let clock = ManualClock::new(start);
        let at = start.plus(chrono::Duration::minutes(1));
        let sleeper = tokio::spawn(clock.sleep_until(at));
        clock.advance(chrono::Duration::seconds(30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(chrono::Duration::seconds(30));
        tokio::time::timeout(Duration::from_secs(1), sleeper).await.unwrap().unwrap();
    }

    #[test]
    fn an_accelerated_clock_runs_faster() {
        let start = Timestamp::parse("2024-03-04T14:30:00Z").unwrap();
        let clock = AcceleratedClock::new(start, 1000.0);
        std::thread::sleep(Duration::from_millis(20));
        let simulated = clock.now().unix_micros() - start.unix_micros();
        assert!(simulated >= 19_000_000, "{simulated}");
    }
}
