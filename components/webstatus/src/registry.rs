//! The live table both sides share: registered users by bare JID and by URL token, each
//! with their in-memory presence, and change notification for live pages.
//!
//! The durable copy of the registrations is the [`crate::store::Store`]; this table is
//! loaded from it at start-up and updated after each successful write. Presence stanzas
//! and HTTP reads never touch the disk. Locks are std locks held for a few field updates
//! and never across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::presence::{ResourceState, Show, UserPresence, cap_status};
use crate::store::{Consent, Options, UserRecord};
use crate::token::Token;
use crate::view::View;

/// One presence stanza from a registered user, reduced to what we keep.
#[derive(Debug, Clone, PartialEq)]
pub enum Update<'a> {
    /// An available presence from `resource`.
    Available {
        /// The resource ("" for a bare JID).
        resource: &'a str,
        /// Its availability.
        show: Show,
        /// Its status text (uncapped; the registry caps it).
        status: Option<&'a str>,
        /// Its priority.
        priority: i8,
        /// When it changed (Unix seconds), e.g. from `<delay/>`.
        since: u64,
    },
    /// `unavailable` from one resource, or from the bare JID (`None`).
    Unavailable {
        /// The resource, if the sender was a full JID.
        resource: Option<&'a str>,
    },
}

/// The live table.
#[derive(Default)]
pub struct Registry {
    index: RwLock<Index>,
    seq: AtomicU64,
    updates: AtomicU64,
}

#[derive(Default)]
struct Index {
    by_jid: HashMap<Arc<str>, Arc<Entry>>,
    by_token: HashMap<Token, Arc<Entry>>,
}

struct Entry {
    jid: Arc<str>,
    state: Mutex<EntryState>,
}

struct EntryState {
    token: Token,
    options: Options,
    consent: Consent,
    registered_at: u64,
    presence: UserPresence,
    /// Bumped on every visible change; live pages wait on it.
    version: u64,
    /// Created when the first live page subscribes.
    watchers: Option<watch::Sender<u64>>,
}

impl EntryState {
    fn record(&self, jid: &str) -> UserRecord {
        UserRecord {
            jid: jid.to_owned(),
            token: self.token,
            options: self.options,
            consent: self.consent,
            registered_at: self.registered_at,
        }
    }

    fn changed(&mut self) {
        self.version += 1;
        if let Some(watchers) = &self.watchers {
            if watchers.receiver_count() == 0 {
                self.watchers = None;
            } else {
                watchers.send_replace(self.version);
            }
        }
    }
}

impl Entry {
    fn lock(&self) -> MutexGuard<'_, EntryState> {
        // Updates are plain field assignments; a panic cannot leave an entry half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Current Unix time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Registry {
    /// An empty table.
    pub fn new() -> Self {
        Registry::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        // The index is only modified by whole-entry inserts and removals.
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(&self, jid: &str) -> Option<Arc<Entry>> {
        self.read().by_jid.get(jid).cloned()
    }

    /// Loads stored registrations; their presence starts unknown.
    pub fn load(&self, records: Vec<UserRecord>) {
        let mut index = self.write();
        index.by_jid.reserve(records.len());
        index.by_token.reserve(records.len());
        for record in records {
            insert(&mut index, &record);
        }
    }

    /// How many users are registered.
    pub fn len(&self) -> usize {
        self.read().by_jid.len()
    }

    /// How many registered users have at least one available resource (metrics: a walk
    /// over every entry, meant for a scrape every few seconds, not for a hot path).
    pub fn online(&self) -> usize {
        self.read()
            .by_jid
            .values()
            .filter(|entry| entry.lock().presence.top().is_some())
            .count()
    }

    /// Whether nobody is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many presence updates from registered users were applied (benchmarks, stats).
    pub fn updates_applied(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    /// The stored part of `jid`'s registration.
    pub fn record(&self, jid: &str) -> Option<UserRecord> {
        let entry = self.entry(jid)?;
        let state = entry.lock();
        Some(state.record(&entry.jid))
    }

    /// Inserts a new registration (replacing any entry for the same JID).
    pub fn insert(&self, record: &UserRecord) {
        insert(&mut self.write(), record);
    }

    /// Changes a user's display options.
    pub fn set_options(&self, jid: &str, options: Options) {
        if let Some(entry) = self.entry(jid) {
            let mut state = entry.lock();
            state.options = options;
            state.changed();
        }
    }

    /// Gives a user a new token: the old URL stops working at once and its live pages end.
    pub fn set_token(&self, jid: &str, token: Token) {
        let mut index = self.write();
        let Some(entry) = index.by_jid.get(jid).cloned() else {
            return;
        };
        let mut state = entry.lock();
        index.by_token.remove(&state.token);
        index.by_token.insert(token, Arc::clone(&entry));
        state.token = token;
        state.watchers = None;
        state.changed();
    }

    /// Removes a registration: its URL stops working and its live pages end.
    pub fn remove(&self, jid: &str) -> bool {
        let mut index = self.write();
        let Some(entry) = index.by_jid.remove(jid) else {
            return false;
        };
        let mut state = entry.lock();
        index.by_token.remove(&state.token);
        state.watchers = None;
        true
    }

    /// What the page for `token` shows, or `None` for an unknown token.
    pub fn view(&self, token: &Token) -> Option<View> {
        let index = self.read();
        let entry = index.by_token.get(token)?;
        let state = entry.lock();
        Some(View::of(
            &entry.jid,
            state.options,
            state.consent,
            &state.presence,
        ))
    }

    /// A receiver that sees a new value on every change of `token`'s page; it closes when
    /// the user unregisters or rotates the token.
    pub fn watch(&self, token: &Token) -> Option<watch::Receiver<u64>> {
        let index = self.read();
        let entry = index.by_token.get(token)?;
        let mut state = entry.lock();
        let version = state.version;
        Some(
            state
                .watchers
                .get_or_insert_with(|| watch::channel(version).0)
                .subscribe(),
        )
    }

    /// Applies a presence from a registered user who granted consent, and returns the
    /// user's consent. Presence from a user who has not granted it (pending or revoked) is
    /// not kept, and the consent is never changed here: only [`crate::app::App`] changes
    /// it, on disk first. Presence from unregistered JIDs is ignored (`None`).
    pub fn apply(&self, jid: &str, update: Update<'_>) -> Option<Consent> {
        let index = self.read();
        let entry = index.by_jid.get(jid)?;
        let mut state = entry.lock();
        if state.consent != Consent::Granted {
            return Some(state.consent);
        }
        self.updates.fetch_add(1, Ordering::Relaxed);
        match update {
            Update::Available {
                resource,
                show,
                status,
                priority,
                since,
            } => {
                state.presence.available(ResourceState {
                    resource: resource.into(),
                    show,
                    status: status.and_then(cap_status),
                    priority,
                    since,
                    seq: self.seq.fetch_add(1, Ordering::Relaxed),
                });
            }
            Update::Unavailable { resource } => state.presence.unavailable(resource, now()),
        }
        state.changed();
        Some(Consent::Granted)
    }

    /// Records the user's consent (after it was stored); true if it changed. Revoking it
    /// forgets their presence.
    pub fn set_consent(&self, jid: &str, consent: Consent) -> bool {
        let Some(entry) = self.entry(jid) else {
            return false;
        };
        let mut state = entry.lock();
        if state.consent == consent {
            return false;
        }
        state.consent = consent;
        if consent == Consent::Revoked {
            state.presence = UserPresence::offline(Some(now()));
        }
        state.changed();
        true
    }

    /// After a (re)connect: everyone's presence becomes unknown until re-learned.
    pub fn reset_all_unknown(&self) {
        let entries: Vec<Arc<Entry>> = self.read().by_jid.values().cloned().collect();
        for entry in entries {
            let mut state = entry.lock();
            state.presence.reset_unknown();
            state.changed();
        }
    }

    /// A probe to `jid` is about to be sent (see [`UserPresence::probe_sent`]).
    pub fn probe_sent(&self, jid: &str) {
        if let Some(entry) = self.entry(jid) {
            entry.lock().presence.probe_sent();
        }
    }

    /// The last probe to `jid` went unanswered: the user is offline
    /// (see [`UserPresence::probe_unanswered`]).
    pub fn probe_unanswered(&self, jid: &str) {
        if let Some(entry) = self.entry(jid) {
            let mut state = entry.lock();
            if state.presence.probe_unanswered(now()) {
                state.changed();
            }
        }
    }

    /// How many resources of `jid` are tracked (bounded by [`crate::presence::MAX_RESOURCES`]).
    #[cfg(test)]
    pub(crate) fn resources(&self, jid: &str) -> usize {
        self.entry(jid)
            .map_or(0, |entry| entry.lock().presence.resources().len())
    }

    /// Every registered bare JID (for probing).
    pub fn jids(&self) -> Vec<Arc<str>> {
        self.read().by_jid.keys().cloned().collect()
    }
}

fn insert(index: &mut Index, record: &UserRecord) {
    let jid: Arc<str> = Arc::from(record.jid.as_str());
    let entry = Arc::new(Entry {
        jid: Arc::clone(&jid),
        state: Mutex::new(EntryState {
            token: record.token,
            options: record.options,
            consent: record.consent,
            registered_at: record.registered_at,
            presence: UserPresence::unknown(),
            version: 0,
            watchers: None,
        }),
    });
    if let Some(old) = index.by_jid.insert(jid, Arc::clone(&entry)) {
        let token = old.lock().token;
        index.by_token.remove(&token);
    }
    index.by_token.insert(record.token, entry);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::record;
    use crate::view::Display;

    fn online<'a>(resource: &'a str, show: Show, priority: i8) -> Update<'a> {
        Update::Available {
            resource,
            show,
            status: Some("hi"),
            priority,
            since: 5,
        }
    }

    #[test]
    fn tokens_find_users_and_presence_updates_their_view() {
        let registry = Registry::new();
        let alice = record("alice@localhost", Consent::Granted);
        registry.load(vec![alice.clone()]);
        assert_eq!(
            registry.view(&alice.token).map(|v| v.display),
            Some(Display::Unknown)
        );
        assert_eq!(
            registry.apply("alice@localhost", online("a", Show::Dnd, 0)),
            Some(Consent::Granted)
        );
        let view = registry.view(&alice.token).expect("view");
        assert_eq!(
            (view.display, view.status.as_deref()),
            (Display::Dnd, Some("hi"))
        );
        registry.apply(
            "alice@localhost",
            Update::Unavailable {
                resource: Some("a"),
            },
        );
        assert_eq!(
            registry.view(&alice.token).map(|v| v.display),
            Some(Display::Offline)
        );
        assert_eq!(registry.updates_applied(), 2);
    }

    #[test]
    fn online_counts_users_with_an_available_resource() {
        let registry = Registry::new();
        let alice = record("alice@localhost", Consent::Granted);
        let bob = record("bob@localhost", Consent::Granted);
        registry.load(vec![alice, bob]);
        assert_eq!(registry.online(), 0);
        registry.apply("alice@localhost", online("a", Show::Away, 0));
        registry.apply("bob@localhost", online("b", Show::Chat, 0));
        assert_eq!(registry.online(), 2);
        registry.apply(
            "bob@localhost",
            Update::Unavailable {
                resource: Some("b"),
            },
        );
        assert_eq!(registry.online(), 1);
    }

    #[test]
    fn strangers_are_ignored() {
        let registry = Registry::new();
        assert_eq!(
            registry.apply("mallory@evil", online("x", Show::Chat, 0)),
            None
        );
        assert!(registry.is_empty());
        assert_eq!(registry.updates_applied(), 0);
    }

    #[test]
    fn presence_without_consent_is_not_kept_and_changes_no_consent() {
        let registry = Registry::new();
        let bob = record("bob@localhost", Consent::Pending);
        let carol = record("carol@localhost", Consent::Revoked);
        registry.load(vec![bob.clone(), carol.clone()]);
        for (user, consent) in [(&bob, Consent::Pending), (&carol, Consent::Revoked)] {
            assert_eq!(
                registry.apply(&user.jid, online("r", Show::Available, 0)),
                Some(consent)
            );
            assert_eq!(registry.record(&user.jid).map(|r| r.consent), Some(consent));
            assert_eq!(
                registry.view(&user.token).map(|v| v.display),
                Some(Display::NotShared)
            );
        }
        assert_eq!(registry.updates_applied(), 0);
        // Once granted (by the app, after storing it), presence shows.
        assert!(registry.set_consent("bob@localhost", Consent::Granted));
        assert_eq!(
            registry.apply("bob@localhost", online("r", Show::Away, 0)),
            Some(Consent::Granted)
        );
        assert_eq!(
            registry.view(&bob.token).map(|v| v.display),
            Some(Display::Away)
        );
    }

    #[test]
    fn revocation_hides_and_clears() {
        let registry = Registry::new();
        let alice = record("alice@localhost", Consent::Granted);
        registry.load(vec![alice.clone()]);
        registry.apply("alice@localhost", online("a", Show::Chat, 0));
        assert!(registry.set_consent("alice@localhost", Consent::Revoked));
        assert!(!registry.set_consent("alice@localhost", Consent::Revoked));
        assert_eq!(
            registry.record("alice@localhost").map(|r| r.consent),
            Some(Consent::Revoked)
        );
        assert_eq!(
            registry.view(&alice.token).map(|v| v.display),
            Some(Display::NotShared)
        );
        // A later presence (e.g. directed at the component) does not bring it back.
        registry.apply("alice@localhost", online("a", Show::Chat, 0));
        assert_eq!(
            registry.view(&alice.token).map(|v| v.display),
            Some(Display::NotShared)
        );
    }

    #[test]
    fn rotation_and_removal_retire_the_url_and_close_watchers() {
        let registry = Registry::new();
        let alice = record("alice@localhost", Consent::Granted);
        registry.load(vec![alice.clone()]);
        let mut watcher = registry.watch(&alice.token).expect("watch");
        registry.apply("alice@localhost", online("a", Show::Chat, 0));
        assert!(watcher.has_changed().expect("open"));
        watcher.borrow_and_update();

        let rotated = UserRecord {
            token: Token::generate(),
            ..alice.clone()
        };
        registry.set_token("alice@localhost", rotated.token);
        assert!(registry.view(&alice.token).is_none());
        assert!(registry.view(&rotated.token).is_some());
        assert!(watcher.has_changed().is_err(), "old live page must end");

        let watcher = registry.watch(&rotated.token).expect("watch");
        assert!(registry.remove("alice@localhost"));
        assert!(!registry.remove("alice@localhost"));
        assert!(registry.view(&rotated.token).is_none());
        assert!(watcher.has_changed().is_err());
        assert!(registry.record("alice@localhost").is_none());
    }

    #[test]
    fn reset_and_expiry_after_reconnect() {
        let registry = Registry::new();
        let alice = record("alice@localhost", Consent::Granted);
        registry.load(vec![alice.clone()]);
        registry.apply("alice@localhost", online("a", Show::Chat, 0));
        registry.reset_all_unknown();
        assert_eq!(
            registry.view(&alice.token).map(|v| v.display),
            Some(Display::Unknown)
        );
        registry.probe_sent("alice@localhost");
        registry.probe_unanswered("alice@localhost");
        assert_eq!(
            registry.view(&alice.token).map(|v| v.display),
            Some(Display::Offline)
        );
        assert_eq!(registry.jids(), vec![Arc::<str>::from("alice@localhost")]);
    }
}
