//! Per-resource presence state and the deterministic aggregation rule; no I/O.
//!
//! RFC 6121 leaves "which resource represents the user" to the implementation, and both
//! server modules get it wrong in different ways (see `shared/reference/web-presence.md`).
//! Ours: resources with priority ≥ 0 win over negative ones (which count only when nothing
//! else is online), then the highest priority, then show order
//! chat > available > away > xa > dnd, then the most recent change.

/// Largest status text kept, in bytes (cut on a character boundary).
pub const MAX_STATUS_BYTES: usize = 1024;

/// Largest number of resources tracked per user; the least recently changed one goes.
pub const MAX_RESOURCES: usize = 32;

/// The availability of one online resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Free for chat.
    Chat,
    /// Online, no `<show/>`.
    Available,
    /// Away.
    Away,
    /// Extended away.
    Xa,
    /// Do not disturb.
    Dnd,
}

impl Show {
    /// Preference when priorities tie: lower is better.
    fn rank(self) -> u8 {
        match self {
            Show::Chat => 0,
            Show::Available => 1,
            Show::Away => 2,
            Show::Xa => 3,
            Show::Dnd => 4,
        }
    }

    /// From the parsed `<show/>` (none means available).
    pub fn from_xmpp(show: Option<&xmpp_component::xmpp_parsers::presence::Show>) -> Show {
        use xmpp_component::xmpp_parsers::presence::Show as S;
        match show {
            None => Show::Available,
            Some(S::Chat) => Show::Chat,
            Some(S::Away) => Show::Away,
            Some(S::Xa) => Show::Xa,
            Some(S::Dnd) => Show::Dnd,
        }
    }
}

/// What one resource last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceState {
    /// The resource part of the sender's full JID ("" for a bare-JID presence).
    pub resource: Box<str>,
    /// Its availability.
    pub show: Show,
    /// Its status text, already capped.
    pub status: Option<Box<str>>,
    /// Its priority.
    pub priority: i8,
    /// When it changed (Unix seconds), from `<delay/>` when the server gave one.
    pub since: u64,
    /// Order of changes: larger is more recent (tie-break).
    pub seq: u64,
}

/// Whether we know a user's presence, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserPresence {
    resources: Vec<ResourceState>,
    /// False after a (re)connect until a probe is answered or times out.
    known: bool,
    /// When the user was last seen going offline (Unix seconds).
    offline_since: Option<u64>,
    /// A probe was sent and no presence from the user has arrived since.
    probe_pending: bool,
}

/// The aggregate, as displayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary<'a> {
    /// Not yet re-learned since the last (re)connect.
    Unknown,
    /// No resource online.
    Offline {
        /// Since when, if known.
        since: Option<u64>,
    },
    /// The resource that represents the user.
    Online(&'a ResourceState),
}

impl UserPresence {
    /// A user we know nothing about yet.
    pub fn unknown() -> Self {
        UserPresence::default()
    }

    /// A user known to be offline.
    pub fn offline(since: Option<u64>) -> Self {
        UserPresence {
            resources: Vec::new(),
            known: true,
            offline_since: since,
            probe_pending: false,
        }
    }

    /// Records an available presence from `state.resource`, replacing its previous one.
    pub fn available(&mut self, state: ResourceState) {
        self.known = true;
        self.probe_pending = false;
        if let Some(slot) = self
            .resources
            .iter_mut()
            .find(|r| r.resource == state.resource)
        {
            *slot = state;
            return;
        }
        if self.resources.len() >= MAX_RESOURCES
            && let Some(oldest) = self
                .resources
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| r.seq)
                .map(|(i, _)| i)
        {
            self.resources.swap_remove(oldest);
        }
        self.resources.push(state);
    }

    /// Records `unavailable` from one resource, or from the bare JID (`None`: all of them).
    pub fn unavailable(&mut self, resource: Option<&str>, now: u64) {
        self.known = true;
        self.probe_pending = false;
        match resource {
            Some(resource) => self.resources.retain(|r| &*r.resource != resource),
            None => self.resources.clear(),
        }
        if self.resources.is_empty() {
            self.offline_since = Some(now);
        }
    }

    /// Forgets everything: after a (re)connect, what we knew may be stale.
    pub fn reset_unknown(&mut self) {
        self.resources.clear();
        self.known = false;
    }

    /// A probe is about to be sent: what we show is unconfirmed until the user's server
    /// answers with some presence.
    pub fn probe_sent(&mut self) {
        self.probe_pending = true;
    }

    /// No presence arrived within the timeout of the last probe. Servers answer a probe
    /// for an online user with its current presence (and Prosody one for an offline user
    /// with `unavailable`); ejabberd stays silent for an offline user, so silence means
    /// offline: an unknown user becomes known, and resources we still show are dropped
    /// (an `unavailable` lost on the way no longer sticks). True if the display changed.
    pub fn probe_unanswered(&mut self, now: u64) -> bool {
        if !std::mem::take(&mut self.probe_pending) {
            return false;
        }
        let changed = !self.known || !self.resources.is_empty();
        if !self.resources.is_empty() {
            self.resources.clear();
            self.offline_since = Some(now);
        }
        self.known = true;
        changed
    }

    /// Whether the presence is known.
    pub fn is_known(&self) -> bool {
        self.known
    }

    /// The resources currently online.
    pub fn resources(&self) -> &[ResourceState] {
        &self.resources
    }

    /// The resource that represents the user, by the rule in the module docs.
    pub fn top(&self) -> Option<&ResourceState> {
        let any_non_negative = self.resources.iter().any(|r| r.priority >= 0);
        self.resources
            .iter()
            .filter(|r| !any_non_negative || r.priority >= 0)
            .max_by_key(|r| (r.priority, std::cmp::Reverse(r.show.rank()), r.seq))
    }

    /// The aggregate state.
    pub fn summary(&self) -> Summary<'_> {
        match self.top() {
            Some(top) => Summary::Online(top),
            None if self.known => Summary::Offline {
                since: self.offline_since,
            },
            None => Summary::Unknown,
        }
    }
}

/// Cuts `text` to at most [`MAX_STATUS_BYTES`] on a character boundary and drops control
/// characters other than tab and newline; an empty result is `None`.
pub fn cap_status(text: &str) -> Option<Box<str>> {
    let mut out = String::with_capacity(text.len().min(MAX_STATUS_BYTES));
    for c in text.trim().chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_STATUS_BYTES {
            break;
        }
        out.push(c);
    }
    (!out.is_empty()).then(|| out.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(resource: &str, show: Show, priority: i8, seq: u64) -> ResourceState {
        ResourceState {
            resource: resource.into(),
            show,
            status: None,
            priority,
            since: 1000 + seq,
            seq,
        }
    }

    fn top_of(resources: &[ResourceState]) -> Option<String> {
        let mut p = UserPresence::unknown();
        for r in resources {
            p.available(r.clone());
        }
        p.top().map(|r| r.resource.to_string())
    }

    #[test]
    fn highest_non_negative_priority_wins() {
        let r = [
            res("phone", Show::Available, 0, 1),
            res("laptop", Show::Away, 5, 2),
            res("bot", Show::Chat, -1, 3),
        ];
        assert_eq!(top_of(&r).as_deref(), Some("laptop"));
    }

    #[test]
    fn negative_priorities_count_only_when_alone() {
        let r = [res("a", Show::Dnd, -5, 1), res("b", Show::Available, -1, 2)];
        assert_eq!(top_of(&r).as_deref(), Some("b"));
        let mut p = UserPresence::unknown();
        p.available(res("a", Show::Dnd, -5, 1));
        assert!(matches!(p.summary(), Summary::Online(r) if r.show == Show::Dnd));
    }

    #[test]
    fn show_order_then_recency_break_ties() {
        let r = [
            res("away", Show::Away, 1, 5),
            res("chat", Show::Chat, 1, 1),
            res("dnd", Show::Dnd, 1, 9),
        ];
        assert_eq!(top_of(&r).as_deref(), Some("chat"));
        let r = [
            res("old", Show::Xa, 0, 1),
            res("new", Show::Xa, 0, 2),
            res("dnd", Show::Dnd, 0, 3),
        ];
        assert_eq!(top_of(&r).as_deref(), Some("new"));
        // Independent of arrival order.
        let r = [res("new", Show::Xa, 0, 2), res("old", Show::Xa, 0, 1)];
        assert_eq!(top_of(&r).as_deref(), Some("new"));
    }

    #[test]
    fn unavailable_removes_one_resource_or_all() {
        let mut p = UserPresence::unknown();
        assert_eq!(p.summary(), Summary::Unknown);
        p.available(res("a", Show::Available, 0, 1));
        p.available(res("b", Show::Away, 1, 2));
        assert_eq!(p.top().map(|r| &*r.resource), Some("b"));
        p.unavailable(Some("b"), 50);
        assert_eq!(p.top().map(|r| &*r.resource), Some("a"));
        p.available(res("b", Show::Away, 1, 3));
        p.unavailable(None, 60);
        assert_eq!(p.summary(), Summary::Offline { since: Some(60) });
    }

    #[test]
    fn an_update_replaces_the_resource() {
        let mut p = UserPresence::unknown();
        p.available(res("a", Show::Available, 0, 1));
        p.available(res("a", Show::Dnd, 0, 2));
        assert_eq!(p.resources().len(), 1);
        assert_eq!(p.top().map(|r| r.show), Some(Show::Dnd));
    }

    #[test]
    fn reset_and_expiry() {
        let mut p = UserPresence::offline(Some(5));
        p.available(res("a", Show::Available, 0, 1));
        p.reset_unknown();
        assert_eq!(p.summary(), Summary::Unknown);
        assert!(!p.probe_unanswered(9), "no probe was sent");
        p.probe_sent();
        assert!(p.probe_unanswered(9));
        assert!(!p.probe_unanswered(9));
        assert!(matches!(p.summary(), Summary::Offline { since: Some(5) }));
    }

    #[test]
    fn an_unanswered_re_probe_drops_stale_resources_an_answered_one_keeps_them() {
        let mut p = UserPresence::offline(None);
        p.available(res("a", Show::Available, 0, 1));
        p.probe_sent();
        p.available(res("a", Show::Dnd, 0, 2));
        assert!(!p.probe_unanswered(7), "the server answered");
        assert_eq!(p.top().map(|r| r.show), Some(Show::Dnd));
        p.probe_sent();
        assert!(p.probe_unanswered(7));
        assert_eq!(p.summary(), Summary::Offline { since: Some(7) });
    }

    #[test]
    fn resources_are_bounded() {
        let mut p = UserPresence::unknown();
        for i in 0..(MAX_RESOURCES as u64 + 10) {
            p.available(res(&format!("r{i}"), Show::Available, 0, i));
        }
        assert_eq!(p.resources().len(), MAX_RESOURCES);
        assert!(p.resources().iter().all(|r| r.seq >= 10));
    }

    #[test]
    fn status_text_is_capped_and_cleaned() {
        assert_eq!(cap_status("  "), None);
        assert_eq!(cap_status("a\u{0}b\u{7}c\n").as_deref(), Some("abc"));
        let long = "é".repeat(MAX_STATUS_BYTES);
        let capped = cap_status(&long).expect("text");
        assert!(capped.len() <= MAX_STATUS_BYTES);
        assert_eq!(capped.len(), MAX_STATUS_BYTES); // 2-byte chars fill it exactly
        let odd = format!("x{long}");
        assert_eq!(cap_status(&odd).expect("text").len(), MAX_STATUS_BYTES - 1);
    }
}
