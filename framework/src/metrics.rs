//! Counters every component gets for free, readable through [`crate::Handle::metrics`]
//! and served in Prometheus text on `--metrics` (see `observe`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the handler-latency histogram's buckets.
pub(crate) const HANDLER_BOUNDS: [f64; 10] =
    [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// How long handlers took, from the stanza handed over to its handler's end: one bucket
/// per bound plus +Inf, a count and a sum, all relaxed atomics (three bumps per stanza).
#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    buckets: [AtomicU64; HANDLER_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    /// Records one handler run.
    pub(crate) fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = HANDLER_BOUNDS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(HANDLER_BOUNDS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts with their upper bounds; +Inf last).
    pub(crate) fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let buckets = HANDLER_BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter().map(get))
            .collect();
        let sum = get(&self.sum_nanos) as f64 / 1e9;
        (sum, get(&self.count), buckets)
    }
}

/// Live counters (relaxed atomics: cheap to bump, exact enough to read).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) received_message: AtomicU64,
    pub(crate) received_presence: AtomicU64,
    pub(crate) received_iq: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) invalid: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) storm_ignored: AtomicU64,
    pub(crate) sent_message: AtomicU64,
    pub(crate) sent_presence: AtomicU64,
    pub(crate) sent_iq: AtomicU64,
    /// Times a sender (or its user, or its domain) started being refused for its rate.
    pub(crate) rate_limited: AtomicU64,
    pub(crate) handler_latency: LatencyHistogram,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, queued: usize) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            stanzas_received: get(&self.received),
            messages_received: get(&self.received_message),
            presences_received: get(&self.received_presence),
            iqs_received: get(&self.received_iq),
            stanzas_sent: get(&self.sent),
            stanzas_invalid: get(&self.invalid),
            stanzas_refused: get(&self.refused),
            stanzas_expired: get(&self.expired),
            connections: get(&self.connects),
            stanzas_over_limit: get(&self.dropped),
            presences_storm_ignored: get(&self.storm_ignored),
            messages_sent: get(&self.sent_message),
            presences_sent: get(&self.sent_presence),
            iqs_sent: get(&self.sent_iq),
            rate_limited_senders: get(&self.rate_limited),
            queued,
        }
    }
}

/// A snapshot of a component's counters since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metrics {
    /// Stanzas read from the server (including IQ replies, invalid and over-cap ones).
    pub stanzas_received: u64,
    /// Well-formed messages among them.
    pub messages_received: u64,
    /// Well-formed presences among them.
    pub presences_received: u64,
    /// Well-formed IQs among them (requests and replies).
    pub iqs_received: u64,
    /// Stanzas written to the server.
    pub stanzas_sent: u64,
    /// Well-formed but invalid stanzas (answered with `bad-request` when they were requests).
    pub stanzas_invalid: u64,
    /// Stanzas refused by flood protection or a full per-sender backlog.
    pub stanzas_refused: u64,
    /// Outbound stanzas dropped because they waited past `--queue-ttl` (an outage).
    pub stanzas_expired: u64,
    /// Successful handshakes (1 + reconnects).
    pub connections: u64,
    /// Stanzas skipped for breaking the size or depth cap (each answered where possible).
    pub stanzas_over_limit: u64,
    /// Presences ignored as repeats in a presence storm.
    pub presences_storm_ignored: u64,
    /// Messages among the stanzas sent.
    pub messages_sent: u64,
    /// Presences among the stanzas sent.
    pub presences_sent: u64,
    /// IQs among the stanzas sent.
    pub iqs_sent: u64,
    /// Times a sender, user or domain went over its rate (one per episode of refusals).
    pub rate_limited_senders: u64,
    /// Stanzas waiting in the outbound queue right now.
    pub queued: usize,
}
