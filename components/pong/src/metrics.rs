//! Process-wide counters and the tick-lateness histogram, served as JSON on `/metrics`.
//!
//! Every game task records, on each tick, how late it woke up compared with its fixed
//! schedule. Lock-free atomics keep recording cheap (tens of thousands of ticks a second);
//! the histogram has 100 µs buckets up to 50 ms, so percentiles are exact to 0.1 ms.
//! The buckets are exposed too, so a benchmark can subtract two snapshots and get the
//! percentiles of just its measurement window.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Width of one lateness bucket, in microseconds.
pub const BUCKET_US: u64 = 100;
/// Number of buckets; the last one also holds everything later than the range.
pub const BUCKETS: usize = 500;

/// Counters shared by the lobby, the games and the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    /// Games with two players, ticking.
    pub games_running: AtomicU64,
    /// Games with one player, waiting for an opponent.
    pub games_waiting: AtomicU64,
    /// Games that reached the playing state, since start.
    pub games_started: AtomicU64,
    /// Games that ended (any reason), since start.
    pub games_finished: AtomicU64,
    /// Ticks run.
    pub ticks: AtomicU64,
    /// Ticks skipped because a game task woke up more than a period late.
    pub ticks_skipped: AtomicU64,
    /// Stanzas handed to the framework's queue.
    pub stanzas_sent: AtomicU64,
    /// Game messages dropped because the outbound queue was full (games never wait for
    /// room while they play).
    pub stanzas_dropped: AtomicU64,
    /// Paddle moves dropped because a game's inbox was full (a client flooding).
    pub inputs_dropped: AtomicU64,
    lateness_max_us: AtomicU64,
    lateness: Box<[AtomicU64]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            games_running: AtomicU64::new(0),
            games_waiting: AtomicU64::new(0),
            games_started: AtomicU64::new(0),
            games_finished: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            ticks_skipped: AtomicU64::new(0),
            stanzas_sent: AtomicU64::new(0),
            stanzas_dropped: AtomicU64::new(0),
            inputs_dropped: AtomicU64::new(0),
            lateness_max_us: AtomicU64::new(0),
            lateness: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// A point-in-time copy of [`Metrics`], as served on `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Games ticking now.
    pub games_running: u64,
    /// Games waiting for an opponent now.
    pub games_waiting: u64,
    /// Games started since the process started.
    pub games_started: u64,
    /// Games finished since the process started.
    pub games_finished: u64,
    /// Ticks run.
    pub ticks: u64,
    /// Ticks skipped (`MissedTickBehavior::Skip`).
    pub ticks_skipped: u64,
    /// Stanzas queued for sending.
    pub stanzas_sent: u64,
    /// Game messages dropped on a full queue.
    pub stanzas_dropped: u64,
    /// Client inputs dropped on a full game inbox.
    pub inputs_dropped: u64,
    /// Median tick lateness, milliseconds.
    pub tick_lateness_p50_ms: f64,
    /// 99th percentile tick lateness, milliseconds.
    pub tick_lateness_p99_ms: f64,
    /// 99.9th percentile tick lateness, milliseconds.
    pub tick_lateness_p999_ms: f64,
    /// Worst tick lateness, milliseconds.
    pub tick_lateness_max_ms: f64,
    /// The histogram's non-empty buckets as `[upper bound µs, count]`.
    pub tick_lateness_buckets_us: Vec<(u64, u64)>,
}

impl Metrics {
    /// Records one tick that woke up `late` after its scheduled instant.
    pub fn record_tick(&self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        let bucket = usize::try_from(us / BUCKET_US)
            .unwrap_or(BUCKETS - 1)
            .min(BUCKETS - 1);
        self.lateness[bucket].fetch_add(1, Relaxed);
        self.lateness_max_us.fetch_max(us, Relaxed);
        self.ticks.fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> Snapshot {
        let buckets: Vec<u64> = self.lateness.iter().map(|b| b.load(Relaxed)).collect();
        let pct = |p| percentile_ms(&buckets, p);
        Snapshot {
            games_running: self.games_running.load(Relaxed),
            games_waiting: self.games_waiting.load(Relaxed),
            games_started: self.games_started.load(Relaxed),
            games_finished: self.games_finished.load(Relaxed),
            ticks: self.ticks.load(Relaxed),
            ticks_skipped: self.ticks_skipped.load(Relaxed),
            stanzas_sent: self.stanzas_sent.load(Relaxed),
            stanzas_dropped: self.stanzas_dropped.load(Relaxed),
            inputs_dropped: self.inputs_dropped.load(Relaxed),
            tick_lateness_p50_ms: pct(0.50),
            tick_lateness_p99_ms: pct(0.99),
            tick_lateness_p999_ms: pct(0.999),
            tick_lateness_max_ms: self.lateness_max_us.load(Relaxed) as f64 / 1000.0,
            tick_lateness_buckets_us: buckets
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| ((i as u64 + 1) * BUCKET_US, *n))
                .collect(),
        }
    }
}

/// The upper bound (ms) of the bucket holding the `p` quantile; 0 when empty.
pub fn percentile_ms(buckets: &[u64], p: f64) -> f64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((total as f64) * p).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0;
        }
    }
    (buckets.len() as u64 * BUCKET_US) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_buckets() {
        let m = Metrics::default();
        for _ in 0..98 {
            m.record_tick(Duration::from_micros(50));
        }
        m.record_tick(Duration::from_micros(2_050));
        m.record_tick(Duration::from_secs(3));
        let s = m.snapshot();
        assert_eq!(s.ticks, 100);
        assert_eq!(s.tick_lateness_p50_ms, 0.1);
        assert_eq!(s.tick_lateness_p99_ms, 2.1);
        assert_eq!(s.tick_lateness_max_ms, 3000.0);
        assert_eq!(s.tick_lateness_buckets_us.last(), Some(&(50_000, 1)));
    }
}
