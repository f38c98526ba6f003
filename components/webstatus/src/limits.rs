//! Admission of new registrations: which servers' users may register, how many users the
//! service keeps in all, and how fast one server may add new ones. Pure (time is a
//! parameter); [`crate::app::App`] applies it under its write lock, so "check, write,
//! insert" is one step.
//!
//! Only *new* registrations are ever refused. A registered user changing options,
//! subscribing again or unregistering never meets these limits, and nothing already
//! stored is touched when the limits change.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Default of [`Limits::max_users`].
pub const DEFAULT_MAX_USERS: usize = 100_000;
/// Default of [`Limits::registrations_per_domain`].
pub const DEFAULT_REGISTRATIONS_PER_DOMAIN: u32 = 100;
/// The per-domain allowance refills completely in this time.
pub const REFILL_PERIOD: Duration = Duration::from_secs(3600);
/// Most domains whose allowance is remembered. Only domains that registered someone within
/// the last [`REFILL_PERIOD`] need remembering (a full allowance is the same as none), so
/// this is reached only when that many servers registered users within the hour; then
/// new domains wait (`resource-constraint`) until allowances refill.
pub const MAX_TRACKED_DOMAINS: usize = 10_000;

/// The operator's limits on new registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most registered users in all; a full service refuses new ones (0: no new ones).
    pub max_users: usize,
    /// New registrations per sender domain per hour: a token bucket holding this many,
    /// refilled over [`REFILL_PERIOD`]. 0 turns the per-domain limit off.
    pub registrations_per_domain: u32,
    /// Lower-case domains whose users may register; `None`: every domain (federation).
    pub allow_domains: Option<HashSet<String>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_users: DEFAULT_MAX_USERS,
            registrations_per_domain: DEFAULT_REGISTRATIONS_PER_DOMAIN,
            allow_domains: None,
        }
    }
}

/// Why a new registration is refused; the text is what the user reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The sender's domain is not in `--allow-domains`.
    #[error("This service does not accept registrations from users of {0}.")]
    DomainNotAllowed(String),
    /// `--max-users` are registered.
    #[error("This service has reached its maximum number of users; please try again later.")]
    Full,
    /// The sender's domain used up its `--registrations-per-domain` allowance.
    #[error("Too many new registrations from {0} recently; please try again later.")]
    DomainRate(String),
    /// Too many domains registered users within the hour to track another one.
    #[error("Too many new registrations right now; please try again later.")]
    Busy,
}

impl Refusal {
    /// True when retrying will not help (XMPP `cancel`: `not-allowed`); false when it may
    /// later (`wait`: `resource-constraint`).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Refusal::DomainNotAllowed(_))
    }
}

/// The domain part of a bare JID (`user@domain`, or a server's own `domain`).
pub fn domain_of(bare_jid: &str) -> &str {
    bare_jid
        .rsplit_once('@')
        .map_or(bare_jid, |(_, domain)| domain)
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The admission state: the limits and each recently active domain's allowance.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    buckets: HashMap<Box<str>, Bucket>,
}

impl Admission {
    /// No domain has used any allowance yet.
    pub fn new(limits: Limits) -> Self {
        Admission {
            limits,
            buckets: HashMap::new(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether users of `domain` may register at all.
    pub fn domain_allowed(&self, domain: &str) -> bool {
        match &self.limits.allow_domains {
            None => true,
            Some(allowed) => allowed.contains(&domain.to_ascii_lowercase()),
        }
    }

    /// Whether a new user of `domain` (as the JID parser normalised it: lower case) may
    /// register at `now`, with `users` registered.
    pub fn check(&mut self, domain: &str, users: usize, now: Instant) -> Result<(), Refusal> {
        if !self.domain_allowed(domain) {
            return Err(Refusal::DomainNotAllowed(domain.to_owned()));
        }
        if users >= self.limits.max_users {
            return Err(Refusal::Full);
        }
        let capacity = self.limits.registrations_per_domain;
        if capacity == 0 {
            return Ok(());
        }
        if let Some(bucket) = self.buckets.get_mut(domain) {
            refill(bucket, capacity, now);
            if bucket.tokens < 1.0 {
                return Err(Refusal::DomainRate(domain.to_owned()));
            }
        } else if self.buckets.len() >= MAX_TRACKED_DOMAINS {
            self.forget_full(now);
            if self.buckets.len() >= MAX_TRACKED_DOMAINS {
                return Err(Refusal::Busy);
            }
        }
        Ok(())
    }

    /// A new user of `domain` registered at `now` (after [`Admission::check`] passed):
    /// one registration of its allowance is spent.
    pub fn admitted(&mut self, domain: &str, now: Instant) {
        let capacity = self.limits.registrations_per_domain;
        if capacity == 0 {
            return;
        }
        let bucket = self.buckets.entry(domain.into()).or_insert(Bucket {
            tokens: f64::from(capacity),
            at: now,
        });
        refill(bucket, capacity, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }

    /// How many domains' allowances are remembered (at most [`MAX_TRACKED_DOMAINS`]).
    pub fn tracked_domains(&self) -> usize {
        self.buckets.len()
    }

    /// Drops the allowances that have refilled: they are the same as no entry.
    fn forget_full(&mut self, now: Instant) {
        let capacity = self.limits.registrations_per_domain;
        self.buckets.retain(|_, bucket| {
            refill(bucket, capacity, now);
            bucket.tokens < f64::from(capacity)
        });
    }
}

fn refill(bucket: &mut Bucket, capacity: u32, now: Instant) {
    let capacity = f64::from(capacity);
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    bucket.tokens =
        (bucket.tokens + elapsed * capacity / REFILL_PERIOD.as_secs_f64()).min(capacity);
    bucket.at = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_users: usize, per_domain: u32, allow: Option<&[&str]>) -> Limits {
        Limits {
            max_users,
            registrations_per_domain: per_domain,
            allow_domains: allow.map(|d| d.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    /// Registers `n` users of `domain` at `now`, as the app does; how many got in.
    fn register(admission: &mut Admission, domain: &str, n: usize, now: Instant) -> usize {
        let mut admitted = 0;
        for _ in 0..n {
            if admission.check(domain, 0, now).is_ok() {
                admission.admitted(domain, now);
                admitted += 1;
            }
        }
        admitted
    }

    #[test]
    fn domains_outside_the_allow_list_are_refused_for_good() {
        let mut admission = Admission::new(limits(10, 0, Some(&["example.org"])));
        let now = Instant::now();
        assert_eq!(admission.check("example.org", 0, now), Ok(()));
        assert!(admission.domain_allowed("Example.ORG"));
        let refusal = admission.check("evil.test", 0, now).expect_err("refused");
        assert_eq!(refusal, Refusal::DomainNotAllowed("evil.test".into()));
        assert!(refusal.is_permanent());
        assert!(refusal.to_string().contains("evil.test"), "{refusal}");
        assert!(Admission::new(Limits::default()).domain_allowed("anything.example"));
    }

    #[test]
    fn a_full_service_refuses_until_someone_leaves() {
        let mut admission = Admission::new(limits(2, 0, None));
        let now = Instant::now();
        assert_eq!(admission.check("a.example", 1, now), Ok(()));
        assert_eq!(admission.check("a.example", 2, now), Err(Refusal::Full));
        assert!(!Refusal::Full.is_permanent());
        assert_eq!(
            Admission::new(limits(0, 0, None)).check("a.example", 0, now),
            Err(Refusal::Full),
            "0 closes registration"
        );
    }

    #[test]
    fn each_domain_has_its_own_allowance_that_refills_over_the_hour() {
        let mut admission = Admission::new(limits(1000, 3, None));
        let t0 = Instant::now();
        assert_eq!(register(&mut admission, "busy.example", 5, t0), 3);
        assert_eq!(
            admission.check("busy.example", 0, t0),
            Err(Refusal::DomainRate("busy.example".into()))
        );
        assert_eq!(register(&mut admission, "other.example", 1, t0), 1);
        // One registration's worth comes back after a third of the period.
        let later = t0 + REFILL_PERIOD / 3 + Duration::from_secs(1);
        assert_eq!(register(&mut admission, "busy.example", 5, later), 1);
        let much_later = later + REFILL_PERIOD * 10;
        assert_eq!(register(&mut admission, "busy.example", 5, much_later), 3);
        // 0: no per-domain limit, and nothing remembered.
        let mut open = Admission::new(limits(1000, 0, None));
        assert_eq!(register(&mut open, "busy.example", 50, t0), 50);
        assert_eq!(open.tracked_domains(), 0);
    }

    #[test]
    fn remembered_domains_are_bounded() {
        let mut admission = Admission::new(limits(usize::MAX, 2, None));
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_DOMAINS {
            assert_eq!(register(&mut admission, &format!("d{i}.example"), 1, t0), 1);
        }
        assert_eq!(admission.tracked_domains(), MAX_TRACKED_DOMAINS);
        // Every remembered domain still has part of its allowance spent: a new one waits,
        // a remembered one may still use what it has left.
        assert_eq!(admission.check("new.example", 0, t0), Err(Refusal::Busy));
        assert_eq!(admission.check("d7.example", 0, t0), Ok(()));
        // Once allowances have refilled they are forgotten and new domains get in.
        let later = t0 + REFILL_PERIOD;
        assert_eq!(register(&mut admission, "new.example", 1, later), 1);
        assert_eq!(admission.tracked_domains(), 1);
    }

    #[test]
    fn the_domain_of_a_bare_jid() {
        assert_eq!(domain_of("alice@example.org"), "example.org");
        assert_eq!(domain_of("example.org"), "example.org");
        assert_eq!(domain_of("a@b@c"), "c");
    }
}
