//! Presence-storm protection, after ejabberd's `mod_sunshine`: the same presence from one
//! full JID `count` times within `interval` is a client stuck in a loop. Its repeats are
//! ignored for a cool-down of one `interval` (a different presence, such as
//! `unavailable`, still goes through and ends the storm). Pure logic with explicit time.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use xmpp_parsers::presence::Presence;

/// Full JIDs tracked at most; past that, finished rows are forgotten, then all.
const MAX_TRACKED: usize = 65_536;

/// One full JID's last presence and how often it came.
#[derive(Debug, Clone, Copy)]
struct Row {
    packet: u64,
    start: Instant,
    count: u32,
    quiet_until: Option<Instant>,
}

/// What to do with one presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StormVerdict {
    /// Deliver it.
    Pass,
    /// Ignore it; `first` for the one that started the storm (log it).
    Ignore {
        /// This presence is the one that reached the count.
        first: bool,
    },
}

/// Rows per full JID (by hash).
#[derive(Debug)]
pub(crate) struct StormGuard {
    count: u32,
    interval: Duration,
    rows: HashMap<u64, Row>,
}

impl StormGuard {
    /// `count` identical presences within `interval` make a storm; a count of 0 turns the
    /// guard off.
    pub(crate) fn new(count: u32, interval: Duration) -> Self {
        StormGuard {
            count,
            interval,
            rows: HashMap::new(),
        }
    }

    /// Judges `presence` from the full JID hashed as `sender`.
    pub(crate) fn check(&mut self, sender: u64, presence: &Presence, now: Instant) -> StormVerdict {
        if self.count == 0 {
            return StormVerdict::Pass;
        }
        if self.rows.len() >= MAX_TRACKED && !self.rows.contains_key(&sender) {
            let interval = self.interval;
            self.rows.retain(|_, row| !row.finished(now, interval));
            if self.rows.len() >= MAX_TRACKED {
                self.rows.clear();
            }
        }
        let packet = fingerprint(presence);
        let fresh = Row {
            packet,
            start: now,
            count: 1,
            quiet_until: None,
        };
        let row = self.rows.entry(sender).or_insert(Row { count: 0, ..fresh });
        if row.packet != packet || row.finished(now, self.interval) {
            *row = fresh;
            return StormVerdict::Pass;
        }
        if row.quiet_until.is_some() {
            return StormVerdict::Ignore { first: false };
        }
        row.count += 1;
        if row.count >= self.count {
            row.quiet_until = Some(now + self.interval);
            return StormVerdict::Ignore { first: true };
        }
        StormVerdict::Pass
    }
}

impl Row {
    /// The counting window (or the cool-down) is over.
    fn finished(&self, now: Instant, interval: Duration) -> bool {
        match self.quiet_until {
            Some(until) => now >= until,
            None => now.saturating_duration_since(self.start) > interval,
        }
    }
}

/// A hash of what a presence says (type, show, statuses, priority, payloads).
fn fingerprint(presence: &Presence) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::mem::discriminant(&presence.type_).hash(&mut hasher);
    presence
        .show
        .as_ref()
        .map(std::mem::discriminant)
        .hash(&mut hasher);
    for (lang, status) in &presence.statuses {
        (lang, status).hash(&mut hasher);
    }
    presence.priority.0.hash(&mut hasher);
    for payload in &presence.payloads {
        (payload.name(), payload.ns()).hash(&mut hasher);
        for (name, value) in payload.attrs() {
            (name, value).hash(&mut hasher);
        }
        payload.text().hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::presence::{Show, Type};

    fn presence(show: Option<Show>) -> Presence {
        let mut p = Presence::new(Type::None);
        p.show = show;
        p
    }

    #[test]
    fn tenth_identical_presence_in_a_minute_starts_a_cool_down() {
        let mut guard = StormGuard::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        let away = presence(Some(Show::Away));
        for n in 0..9 {
            let at = t0 + Duration::from_secs(n);
            assert_eq!(guard.check(1, &away, at), StormVerdict::Pass, "copy {n}");
        }
        let t = t0 + Duration::from_secs(10);
        assert_eq!(
            guard.check(1, &away, t),
            StormVerdict::Ignore { first: true }
        );
        assert_eq!(
            guard.check(1, &away, t),
            StormVerdict::Ignore { first: false }
        );
        // Another sender is not affected; a different presence goes through.
        assert_eq!(guard.check(2, &away, t), StormVerdict::Pass);
        let gone = Presence::new(Type::Unavailable);
        assert_eq!(guard.check(1, &gone, t), StormVerdict::Pass);
        // After the cool-down the same presence is welcome again.
        let mut guard = StormGuard::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            assert_eq!(guard.check(1, &away, t0), StormVerdict::Pass);
        }
        assert_eq!(
            guard.check(1, &away, t0),
            StormVerdict::Ignore { first: true }
        );
        let later = t0 + Duration::from_secs(61);
        assert_eq!(guard.check(1, &away, later), StormVerdict::Pass);
    }

    #[test]
    fn slow_repeats_are_no_storm_and_zero_turns_it_off() {
        let mut guard = StormGuard::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let p = presence(None);
        for n in 0..20 {
            let at = t0 + Duration::from_secs(n * 31);
            assert_eq!(guard.check(1, &p, at), StormVerdict::Pass, "repeat {n}");
        }
        let mut off = StormGuard::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            assert_eq!(off.check(1, &p, t0), StormVerdict::Pass);
        }
    }

    #[test]
    fn tracked_senders_are_bounded() {
        let mut guard = StormGuard::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        for n in 0..(MAX_TRACKED as u64 + 100) {
            guard.check(n, &presence(None), t0);
        }
        assert!(guard.rows.len() <= MAX_TRACKED);
    }
}
