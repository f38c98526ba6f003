//! Counters every component gets for free, readable through [`crate::Handle::metrics`]
//! and served in Prometheus text on `--metrics` (see `observe`).

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Stanzas waiting in the outbound queue right now.
    pub queued: usize,
}
