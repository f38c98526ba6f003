//! Process-wide counters and the tick-lateness histogram, served as JSON on `/metrics`
//! of the public HTTP listener and, with the framework's `--metrics ADDR`, in Prometheus
//! text on the metrics listener ([`Metrics::register`]).
//!
//! Every game task records, on each tick, how late it woke up compared with its fixed
//! schedule. Lock-free atomics keep recording cheap (tens of thousands of ticks a second);
//! the histogram has 100 µs buckets up to 50 ms, so percentiles are exact to 0.1 ms.
//! The buckets are exposed too, so a benchmark can subtract two snapshots and get the
//! percentiles of just its measurement window.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use xmpp_component::observe;
use xmpp_component::prometheus_client::collector::Collector;
use xmpp_component::prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use xmpp_component::prometheus_client::metrics::MetricType;
use xmpp_component::prometheus_client::metrics::exemplar::Exemplar;
use xmpp_component::prometheus_client::registry::Registry;

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
    lateness_sum_us: AtomicU64,
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
            lateness_sum_us: AtomicU64::new(0),
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
        self.lateness_sum_us.fetch_add(us, Relaxed);
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

/// Upper bounds (µs) of the Prometheus tick-lateness buckets; each is a multiple of
/// [`BUCKET_US`], so the fine buckets add up into them exactly.
const PROMETHEUS_BOUNDS_US: [u64; 9] = [
    100, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 33_300, 50_000,
];

/// Picks one counter out of [`Metrics`].
type Field = fn(&Metrics) -> &AtomicU64;

impl Metrics {
    /// Adds the game server's metrics to the framework's `--metrics` registry; they are
    /// read from these atomics at scrape time.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        let gauges: [(&str, &str, Field); 2] = [
            (
                "pong_games_running",
                "Games with two players, ticking.",
                |m| &m.games_running,
            ),
            (
                "pong_players_waiting",
                "Players waiting for an opponent (games with one player).",
                |m| &m.games_waiting,
            ),
        ];
        for (name, help, field) in gauges {
            let metrics = Arc::clone(self);
            registry.register_collector(observe::gauge(name, help, move || {
                field(&metrics).load(Relaxed)
            }));
        }
        let counters: [(&str, &str, Field); 5] = [
            (
                "pong_games_started",
                "Games that reached the playing state.",
                |m| &m.games_started,
            ),
            (
                "pong_games_finished",
                "Games that ended, for any reason.",
                |m| &m.games_finished,
            ),
            (
                "pong_ticks_skipped",
                "Ticks skipped because a game task woke up more than a period late.",
                |m| &m.ticks_skipped,
            ),
            (
                "pong_stanzas_dropped",
                "High-rate stanzas dropped on a full outbound queue.",
                |m| &m.stanzas_dropped,
            ),
            (
                "pong_inputs_dropped",
                "Paddle moves dropped on a full game inbox.",
                |m| &m.inputs_dropped,
            ),
        ];
        for (name, help, field) in counters {
            let metrics = Arc::clone(self);
            registry.register_collector(observe::counter(name, help, move || {
                field(&metrics).load(Relaxed)
            }));
        }
        registry.register_collector(Box::new(LatenessHistogram(Arc::clone(self))));
    }
}

/// `pong_tick_lateness_seconds`: the fine lateness buckets summed into Prometheus ones.
struct LatenessHistogram(Arc<Metrics>);

impl std::fmt::Debug for LatenessHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatenessHistogram")
    }
}

impl Collector for LatenessHistogram {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metrics = &self.0;
        let mut buckets: Vec<(f64, u64)> = PROMETHEUS_BOUNDS_US
            .iter()
            .map(|&us| (us as f64 / 1e6, 0))
            .collect();
        let mut count = 0;
        for (i, n) in metrics.lateness.iter().enumerate() {
            let n = n.load(Relaxed);
            count += n;
            let upper_us = (i as u64 + 1) * BUCKET_US;
            // The last fine bucket also holds everything later: it belongs to +Inf only.
            let slot = PROMETHEUS_BOUNDS_US.iter().position(|&b| upper_us <= b);
            match slot {
                Some(slot) if i + 1 < BUCKETS => buckets[slot].1 += n,
                _ => {}
            }
        }
        let sum = metrics.lateness_sum_us.load(Relaxed) as f64 / 1e6;
        let histogram = encoder.encode_descriptor(
            "pong_tick_lateness_seconds",
            "How late game ticks woke up compared with their fixed schedule.",
            None,
            MetricType::Histogram,
        );
        let no_exemplars: Option<&HashMap<usize, Exemplar<NoLabelSet, f64>>> = None;
        histogram?.encode_histogram(sum, count, &buckets, no_exemplars)
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

    #[test]
    fn prometheus_text_has_the_gauges_and_a_cumulative_lateness_histogram() {
        let m = Arc::new(Metrics::default());
        m.games_running.store(3, Relaxed);
        m.games_waiting.store(1, Relaxed);
        m.record_tick(Duration::from_micros(50));
        m.record_tick(Duration::from_micros(1_500));
        m.record_tick(Duration::from_secs(3));
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        xmpp_component::prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        for line in [
            "pong_games_running 3\n",
            "pong_players_waiting 1\n",
            "pong_games_started_total 0\n",
            "pong_tick_lateness_seconds_bucket{le=\"0.0001\"} 1\n",
            "pong_tick_lateness_seconds_bucket{le=\"0.001\"} 1\n",
            "pong_tick_lateness_seconds_bucket{le=\"0.002\"} 2\n",
            "pong_tick_lateness_seconds_bucket{le=\"0.05\"} 2\n",
            "pong_tick_lateness_seconds_bucket{le=\"+Inf\"} 3\n",
            "pong_tick_lateness_seconds_sum 3.00155\n",
            "pong_tick_lateness_seconds_count 3\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
