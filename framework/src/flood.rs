//! Flood protection: token buckets per sender, per user and per sender domain.
//!
//! Servers shape their own clients, but a component also receives traffic from federated
//! servers and from other components. One sender over its rate has its excess stanzas
//! refused before any handler runs (IQ requests get `resource-constraint`, the rest are
//! dropped), so a presence storm or a script gone wrong cannot starve everyone else.
//!
//! Three tiers, checked widest first: the sender's domain (so one federated server cannot
//! mint unlimited senders; the server the component belongs to is exempt, its users are
//! shaped by it already), the bare JID (so one user cannot multiply resources), and the
//! full JID. A tier tracks at most [`MAX_TRACKED`] keys; past that it first forgets
//! buckets that have refilled (they are the same as absent) and, if that is not enough,
//! starts afresh. Pure logic with explicit time, so it is tested without sleeping.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Instant;

use xmpp_parsers::iq::Iq;
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::handle::Handle;
use crate::router::{Inbound, reply_to, send_reply, stanza_error};
use crate::stanza::Stanza;

/// Keys one tier tracks at most (a few MiB at worst).
pub(crate) const MAX_TRACKED: usize = 65_536;
/// How many checks between sweeps of refilled buckets.
const SWEEP_EVERY: u32 = 4096;

/// A sustained rate and the burst allowed above it; a rate of 0 turns a tier off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Stanzas per second.
    pub per_second: f64,
    /// Stanzas that may arrive at once.
    pub burst: f64,
}

impl RateLimit {
    /// No limit.
    pub const OFF: RateLimit = RateLimit {
        per_second: 0.0,
        burst: 1.0,
    };
}

/// The three limits, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct FloodLimits {
    /// Per full JID (`--rate-limit`, `--rate-burst`).
    pub sender: RateLimit,
    /// Per bare JID (`--rate-limit-user`).
    pub user: RateLimit,
    /// Per sender domain (`--rate-limit-domain`).
    pub domain: RateLimit,
    /// Domains the domain tier does not apply to (the component's own server).
    pub exempt_domains: Vec<String>,
}

impl FloodLimits {
    /// No flood protection at all.
    pub fn off() -> Self {
        FloodLimits {
            sender: RateLimit::OFF,
            user: RateLimit::OFF,
            domain: RateLimit::OFF,
            exempt_domains: Vec::new(),
        }
    }
}

/// Which tier refused a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// The sender's domain.
    Domain,
    /// The sender's bare JID.
    User,
    /// The full JID.
    Sender,
}

/// What the limiter decided for one stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within every rate.
    Allow,
    /// Over a rate; `first` is true for the first refusal of a burst (log it once).
    Refuse {
        /// The tier that refused.
        tier: Tier,
        /// First refusal since that key was last within its rate.
        first: bool,
    },
}

/// The hashed keys of one sender, computed once per stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SenderKeys {
    /// The full JID (also the ordering key of the dispatcher).
    pub(crate) full: u64,
    user: u64,
    /// `None` for an exempt domain.
    domain: Option<u64>,
}

impl SenderKeys {
    /// Keys of the sender `from` (the `from` attribute as written; empty when absent).
    pub(crate) fn of(from: &str, limits: &FloodLimits) -> Self {
        let bare = from.split_once('/').map_or(from, |(bare, _)| bare);
        let domain = bare.rsplit_once('@').map_or(bare, |(_, domain)| domain);
        let exempt = limits
            .exempt_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain));
        SenderKeys {
            full: hash(from),
            user: hash(bare),
            domain: (!exempt).then(|| hash(domain)),
        }
    }
}

fn hash(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Whether this key's current excess has already been logged.
    reported: bool,
}

/// Token buckets of one tier, keyed by hash.
#[derive(Debug)]
struct Buckets {
    limit: RateLimit,
    map: HashMap<u64, Bucket>,
}

impl Buckets {
    fn new(limit: RateLimit) -> Self {
        Buckets {
            limit: RateLimit {
                burst: limit.burst.max(1.0),
                ..limit
            },
            map: HashMap::new(),
        }
    }

    fn enabled(&self) -> bool {
        self.limit.per_second > 0.0
    }

    /// Charges one stanza to `key`; `Some(first)` when refused.
    fn charge(&mut self, key: u64, now: Instant) -> Option<bool> {
        if !self.map.contains_key(&key) && self.map.len() >= MAX_TRACKED {
            self.sweep(now);
            if self.map.len() >= MAX_TRACKED {
                self.map.clear();
            }
        }
        let RateLimit { per_second, burst } = self.limit;
        let bucket = self.map.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
            reported: false,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.reported = false;
            None
        } else {
            let first = !bucket.reported;
            bucket.reported = true;
            Some(first)
        }
    }

    /// Forgets buckets that have refilled: they behave exactly like absent ones.
    fn sweep(&mut self, now: Instant) {
        let RateLimit { per_second, burst } = self.limit;
        self.map.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * per_second < burst
        });
    }
}

/// The three tiers of token buckets.
#[derive(Debug)]
pub(crate) struct FloodGuard {
    domain: Buckets,
    user: Buckets,
    sender: Buckets,
    checks: u32,
}

impl FloodGuard {
    /// A guard enforcing `limits`.
    pub(crate) fn new(limits: &FloodLimits) -> Self {
        FloodGuard {
            domain: Buckets::new(limits.domain),
            user: Buckets::new(limits.user),
            sender: Buckets::new(limits.sender),
            checks: 0,
        }
    }

    /// Charges one stanza from `keys` at time `now`, widest tier first; a tier that
    /// refuses leaves the narrower ones untouched (so refused senders add no keys).
    pub(crate) fn check(&mut self, keys: SenderKeys, now: Instant) -> Verdict {
        self.checks = self.checks.wrapping_add(1);
        if self.checks.is_multiple_of(SWEEP_EVERY) {
            for tier in [&mut self.domain, &mut self.user, &mut self.sender] {
                tier.sweep(now);
            }
        }
        let tiers = [
            (Tier::Domain, &mut self.domain, keys.domain),
            (Tier::User, &mut self.user, Some(keys.user)),
            (Tier::Sender, &mut self.sender, Some(keys.full)),
        ];
        for (tier, buckets, key) in tiers {
            let Some(key) = key.filter(|_| buckets.enabled()) else {
                continue;
            };
            if let Some(first) = buckets.charge(key, now) {
                return Verdict::Refuse { tier, first };
            }
        }
        Verdict::Allow
    }

    /// Keys currently tracked, over all tiers.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.domain.map.len() + self.user.map.len() + self.sender.map.len()
    }
}

/// A stanza refused by flood protection: IQ requests still get their one reply
/// (`resource-constraint`, so the sender may retry later); everything else is dropped.
pub(crate) async fn refuse_flood(handle: &Handle, inbound: Inbound) {
    if let Inbound::Stanza(Stanza::Iq(
        Iq::Get {
            from: Some(from),
            to,
            id,
            ..
        }
        | Iq::Set {
            from: Some(from),
            to,
            id,
            ..
        },
    )) = inbound
    {
        let to = to.unwrap_or_else(|| handle.jid().clone());
        let error = stanza_error(
            DefinedCondition::ResourceConstraint,
            Some("too many requests; slow down"),
        );
        send_reply(handle, reply_to(from, to, id, Err(error))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(sender: f64, user: f64, domain: f64) -> FloodLimits {
        let rate = |r: f64| RateLimit {
            per_second: r,
            burst: r / 2.0,
        };
        FloodLimits {
            sender: rate(sender),
            user: rate(user),
            domain: rate(domain),
            exempt_domains: vec!["localhost".into()],
        }
    }

    fn keys(from: &str, limits: &FloodLimits) -> SenderKeys {
        SenderKeys::of(from, limits)
    }

    #[test]
    fn allows_a_burst_then_the_sustained_rate() {
        let limits = limits(10.0, 0.0, 0.0);
        let mut guard = FloodGuard::new(&limits);
        let (a, b) = (keys("a@x/1", &limits), keys("b@x/1", &limits));
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(guard.check(a, t0), Verdict::Allow);
        }
        let refused = |first| Verdict::Refuse {
            tier: Tier::Sender,
            first,
        };
        assert_eq!(guard.check(a, t0), refused(true));
        assert_eq!(guard.check(a, t0), refused(false));
        // Another sender is unaffected.
        assert_eq!(guard.check(b, t0), Verdict::Allow);
        // 100 ms later one token (10/s) is back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(guard.check(a, t1), Verdict::Allow);
        assert_eq!(guard.check(a, t1), refused(true));
    }

    #[test]
    fn one_user_cannot_multiply_resources_nor_one_domain_users() {
        let limits = limits(100.0, 20.0, 60.0);
        let mut guard = FloodGuard::new(&limits);
        let t0 = Instant::now();
        // 15 resources of one user: the user's burst (10) is shared.
        let allowed = (0..15)
            .filter(|n| guard.check(keys(&format!("u@evil/{n}"), &limits), t0) == Verdict::Allow)
            .count();
        assert_eq!(allowed, 10);
        // 100 fresh users of the same domain: the domain's burst (30, 15 of it spent
        // above) caps them all...
        let allowed = (0..100)
            .filter(|n| guard.check(keys(&format!("{n}@evil/r"), &limits), t0) == Verdict::Allow)
            .count();
        assert_eq!(allowed, 30 - 15);
        // ... and the senders the domain refused added no keys of their own.
        assert!(guard.tracked() < 50, "{}", guard.tracked());
        // Another domain, and the exempt home domain, are unaffected.
        assert_eq!(guard.check(keys("a@good/r", &limits), t0), Verdict::Allow);
        for n in 0..100 {
            let home = keys(&format!("{n}@localhost/r"), &limits);
            assert_eq!(guard.check(home, t0), Verdict::Allow);
        }
    }

    #[test]
    fn zero_rate_disables_and_refilled_buckets_are_forgotten() {
        let mut off = FloodGuard::new(&FloodLimits::off());
        let t0 = Instant::now();
        let any = keys("a@b/c", &FloodLimits::off());
        for _ in 0..1000 {
            assert_eq!(off.check(any, t0), Verdict::Allow);
        }
        assert_eq!(off.tracked(), 0);
        let limits = limits(2.0, 0.0, 0.0);
        let mut guard = FloodGuard::new(&limits);
        for n in 0..100 {
            guard.check(keys(&format!("{n}@x/r"), &limits), t0);
        }
        assert_eq!(guard.tracked(), 100);
        let later = t0 + Duration::from_secs(1);
        let me = keys("me@x/r", &limits);
        for _ in 0..SWEEP_EVERY {
            guard.check(me, later);
        }
        assert_eq!(guard.tracked(), 1);
    }

    #[test]
    fn a_tier_never_tracks_more_than_its_cap() {
        let limits = limits(1.0, 0.0, 0.0);
        let mut guard = FloodGuard::new(&limits);
        let t0 = Instant::now();
        for n in 0..(MAX_TRACKED + 10) {
            guard.check(keys(&format!("{n}@x/r"), &limits), t0);
        }
        assert!(guard.tracked() <= MAX_TRACKED, "{}", guard.tracked());
    }
}
