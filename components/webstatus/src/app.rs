//! The operations behind every entry point (registration form, subscription, chat
//! command): each writes the store first, flushed, and only then updates the live table.
//!
//! Durable writes are serialised by one async lock (registrations are rare; this keeps
//! "read current record, change it, write it" free of lost updates) and run on the
//! blocking pool so a slow disk never stalls stanza handling. New registrations pass the
//! [`Admission`] limits under the same lock, so the user count cannot overshoot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::limits::{Admission, Limits, Refusal, domain_of};
use crate::registry::{Registry, now};
use crate::store::{Consent, Options, Store, StoreError, UserRecord};
use crate::token::Token;

/// Unregistered users who fetched the form keep the URL it showed for this long.
const PENDING_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// At most this many such reserved tokens are kept (oldest evicted first).
const PENDING_TOKEN_CAP: usize = 1024;

/// Runtime settings the handlers need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The component's domain, e.g. `webstatus.example.org`.
    pub domain: String,
    /// Base of the URLs we hand out, without a trailing slash.
    pub public_url: String,
    /// Probes per second after a (re)connect.
    pub probe_rate: u32,
    /// Silence after a probe that means "offline".
    pub probe_timeout: Duration,
    /// Limits on new registrations.
    pub limits: Limits,
}

impl Settings {
    /// The web status URL for `token`.
    pub fn url(&self, token: &Token) -> String {
        format!("{}/status/{token}", self.public_url)
    }
}

/// What went wrong while changing a registration.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store refused the write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking write task died.
    #[error("storage task failed: {0}")]
    Task(String),
    /// A new registration is refused by the limits (nothing was written).
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// The outcome of a registration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The record as stored now.
    pub record: UserRecord,
    /// True if the user was not registered before.
    pub created: bool,
}

/// How much per-sender state the gateway holds (all of it bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Registered users (at most `max_users`, plus any loaded beyond it).
    pub users: usize,
    /// Tokens reserved for users who fetched the form without registering.
    pub pending_tokens: usize,
    /// Domains whose registration allowance is being tracked.
    pub tracked_domains: usize,
}

/// Shared state of one running gateway: store, live table and settings.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    settings: Settings,
    writes: tokio::sync::Mutex<()>,
    pending_tokens: Mutex<HashMap<String, (Token, Instant)>>,
    /// Only touched while `writes` is held (and by form fetches, which only read it).
    admission: Mutex<Admission>,
}

impl App {
    /// Loads every stored registration into a fresh live table.
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Result<App, StoreError> {
        let registry = Arc::new(Registry::new());
        registry.load(store.load_all()?);
        let admission = Mutex::new(Admission::new(settings.limits.clone()));
        Ok(App {
            inner: Arc::new(Inner {
                store,
                registry,
                settings,
                writes: tokio::sync::Mutex::new(()),
                pending_tokens: Mutex::new(HashMap::new()),
                admission,
            }),
        })
    }

    /// The live table.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// How much per-sender state is held.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            users: self.registry().len(),
            pending_tokens: self.pending().len(),
            tracked_domains: self.admission().tracked_domains(),
        }
    }

    fn admission(&self) -> MutexGuard<'_, Admission> {
        // Plain map updates; a panic cannot leave it inconsistent.
        self.inner
            .admission
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The token a registration form shows `jid`: theirs if registered, otherwise one
    /// reserved for them so the URL in the form is the one they will get. Users of a
    /// domain that may not register are told so at once (and nothing is reserved).
    pub fn form_token(&self, jid: &str) -> Result<(Token, Option<UserRecord>), Refusal> {
        if let Some(record) = self.registry().record(jid) {
            return Ok((record.token, Some(record)));
        }
        let domain = domain_of(jid);
        if !self.admission().domain_allowed(domain) {
            return Err(Refusal::DomainNotAllowed(domain.to_owned()));
        }
        let mut pending = self.pending();
        let now = Instant::now();
        if let Some((token, at)) = pending.get_mut(jid) {
            *at = now;
            return Ok((*token, None));
        }
        if pending.len() >= PENDING_TOKEN_CAP {
            pending.retain(|_, (_, at)| now.duration_since(*at) < PENDING_TOKEN_TTL);
            if pending.len() >= PENDING_TOKEN_CAP
                && let Some(oldest) = pending
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(jid, _)| jid.clone())
            {
                pending.remove(&oldest);
            }
        }
        let token = Token::generate();
        pending.insert(jid.to_owned(), (token, now));
        Ok((token, None))
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, (Token, Instant)>> {
        // Plain map operations; a panic cannot leave it inconsistent.
        self.inner
            .pending_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn take_pending(&self, jid: &str) -> Option<Token> {
        let (token, at) = self.pending().remove(jid)?;
        (at.elapsed() < PENDING_TOKEN_TTL).then_some(token)
    }

    async fn put(&self, record: UserRecord) -> Result<(), AppError> {
        let store = Arc::clone(&self.inner.store);
        tokio::task::spawn_blocking(move || store.put(&record))
            .await
            .map_err(|e| AppError::Task(e.to_string()))??;
        Ok(())
    }

    /// Registers `jid` (options from `options(current)`), or updates a registered user's
    /// options. Durable when it returns. A new user must pass the [`Limits`] (else
    /// [`AppError::Refused`], nothing written); a registered user never meets them, and
    /// one who had revoked consent asks for it again (consent becomes pending, so their
    /// next presence counts as approval).
    pub async fn register(
        &self,
        jid: &str,
        options: impl FnOnce(Options) -> Options,
    ) -> Result<Registered, AppError> {
        let _write = self.inner.writes.lock().await;
        if let Some(current) = self.registry().record(jid) {
            let mut record = current.clone();
            record.options = options(record.options);
            if record.consent == Consent::Revoked {
                record.consent = Consent::Pending;
            }
            if record != current {
                self.put(record.clone()).await?;
                self.registry().set_options(jid, record.options);
                self.registry().set_consent(jid, record.consent);
            }
            return Ok(Registered {
                record,
                created: false,
            });
        }
        let domain = domain_of(jid);
        let users = self.registry().len();
        self.admission().check(domain, users, Instant::now())?;
        let record = UserRecord {
            jid: jid.to_owned(),
            token: self.take_pending(jid).unwrap_or_else(Token::generate),
            options: options(Options::default()),
            consent: Consent::Pending,
            registered_at: now(),
        };
        self.put(record.clone()).await?;
        self.registry().insert(&record);
        self.admission().admitted(domain, Instant::now());
        tracing::info!(user = %jid, "registered");
        let max_users = self.settings().limits.max_users;
        if users + 1 == max_users {
            tracing::warn!(
                max_users,
                "the service is full: new registrations are refused until someone leaves \
                 (--max-users)"
            );
        }
        Ok(Registered {
            record,
            created: true,
        })
    }

    /// Changes a registered user's options; `None` if they are not registered.
    pub async fn set_options(
        &self,
        jid: &str,
        change: impl FnOnce(&mut Options),
    ) -> Result<Option<UserRecord>, AppError> {
        let _write = self.inner.writes.lock().await;
        let Some(mut record) = self.registry().record(jid) else {
            return Ok(None);
        };
        change(&mut record.options);
        self.put(record.clone()).await?;
        self.registry().set_options(jid, record.options);
        Ok(Some(record))
    }

    /// Gives a registered user a new token; the old URL stops working at once.
    pub async fn rotate_token(&self, jid: &str) -> Result<Option<UserRecord>, AppError> {
        let _write = self.inner.writes.lock().await;
        let Some(mut record) = self.registry().record(jid) else {
            return Ok(None);
        };
        record.token = Token::generate();
        self.put(record.clone()).await?;
        self.registry().set_token(jid, record.token);
        tracing::info!(user = %jid, "token rotated");
        Ok(Some(record))
    }

    /// Deletes a registration; false if there was none.
    pub async fn unregister(&self, jid: &str) -> Result<bool, AppError> {
        let _write = self.inner.writes.lock().await;
        let store = Arc::clone(&self.inner.store);
        let key = jid.to_owned();
        let stored = tokio::task::spawn_blocking(move || store.remove(&key))
            .await
            .map_err(|e| AppError::Task(e.to_string()))??;
        let live = self.registry().remove(jid);
        if stored || live {
            tracing::info!(user = %jid, "unregistered");
        }
        Ok(stored || live)
    }

    /// Records a consent change seen on the wire (`subscribed`, `unsubscribed`): on disk
    /// first, then in the live table, so a failed write changes nothing. True if it changed.
    pub async fn set_consent(&self, jid: &str, consent: Consent) -> Result<bool, AppError> {
        self.change_consent(jid, |_| Some(consent)).await
    }

    /// Presence from a user whose consent is pending proves they approved: grants it (on
    /// disk first). A revocation is left alone, even one that overtook the presence.
    pub async fn grant_if_pending(&self, jid: &str) -> Result<bool, AppError> {
        self.change_consent(jid, |current| {
            (current == Consent::Pending).then_some(Consent::Granted)
        })
        .await
    }

    async fn change_consent(
        &self,
        jid: &str,
        change: impl FnOnce(Consent) -> Option<Consent>,
    ) -> Result<bool, AppError> {
        let _write = self.inner.writes.lock().await;
        let Some(mut record) = self.registry().record(jid) else {
            return Ok(false);
        };
        let Some(consent) = change(record.consent).filter(|c| *c != record.consent) else {
            return Ok(false);
        };
        record.consent = consent;
        self.put(record).await?;
        self.registry().set_consent(jid, consent);
        tracing::info!(user = %jid, ?consent, "consent changed");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn app(store: Arc<MemoryStore>) -> App {
        App::new(store, crate::testkit::settings()).expect("app")
    }

    #[tokio::test]
    async fn registration_is_stored_before_it_is_visible() {
        let store = Arc::new(MemoryStore::default());
        let app = app(Arc::clone(&store));
        let (form_token, record) = app.form_token("alice@localhost").expect("allowed");
        assert!(record.is_none());
        assert_eq!(
            app.form_token("alice@localhost").expect("allowed").0,
            form_token
        );

        let registered = app
            .register("alice@localhost", |o| Options {
                show_status_msg: true,
                ..o
            })
            .await
            .expect("register");
        assert!(registered.created);
        assert_eq!(
            registered.record.token, form_token,
            "the URL shown in the form"
        );
        assert_eq!(
            store.load_all().expect("load"),
            vec![registered.record.clone()]
        );
        assert!(app.registry().view(&form_token).is_some());

        let again = app
            .register("alice@localhost", |o| o)
            .await
            .expect("update");
        assert!(!again.created);
        assert!(again.record.options.show_status_msg);
    }

    #[tokio::test]
    async fn options_rotation_and_removal_reach_the_store() {
        let store = Arc::new(MemoryStore::default());
        let app = app(Arc::clone(&store));
        let first = app
            .register("bob@localhost", |o| o)
            .await
            .expect("register")
            .record;
        app.set_options("bob@localhost", |o| o.show_full_jid = true)
            .await
            .expect("options");
        let rotated = app
            .rotate_token("bob@localhost")
            .await
            .expect("rotate")
            .expect("registered");
        assert_ne!(rotated.token, first.token);
        assert!(rotated.options.show_full_jid);
        assert_eq!(store.load_all().expect("load"), vec![rotated.clone()]);
        assert!(app.registry().view(&first.token).is_none());

        app.set_consent("bob@localhost", Consent::Granted)
            .await
            .expect("consent");
        assert_eq!(store.load_all().expect("load")[0].consent, Consent::Granted);

        assert!(app.unregister("bob@localhost").await.expect("remove"));
        assert!(!app.unregister("bob@localhost").await.expect("remove again"));
        assert!(store.load_all().expect("load").is_empty());
        assert!(app.registry().view(&rotated.token).is_none());
        assert!(
            app.rotate_token("bob@localhost")
                .await
                .expect("rotate")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_consent_change_that_cannot_be_stored_changes_nothing() {
        let store = Arc::new(crate::testkit::FlakyStore::default());
        let app = App::new(
            Arc::clone(&store) as Arc<dyn Store>,
            crate::testkit::settings(),
        )
        .expect("app");
        let token = app
            .register("dave@localhost", |o| o)
            .await
            .expect("register")
            .record
            .token;
        let consent = || app.registry().record("dave@localhost").map(|r| r.consent);
        store.fail(true);
        assert!(
            app.set_consent("dave@localhost", Consent::Granted)
                .await
                .is_err()
        );
        assert_eq!(consent(), Some(Consent::Pending), "granted in memory only");
        assert_eq!(
            app.registry().view(&token).map(|v| v.display),
            Some(crate::view::Display::NotShared)
        );

        store.fail(false);
        app.set_consent("dave@localhost", Consent::Granted)
            .await
            .expect("granted");
        store.fail(true);
        assert!(
            app.set_consent("dave@localhost", Consent::Revoked)
                .await
                .is_err()
        );
        assert_eq!(consent(), Some(Consent::Granted), "revoked in memory only");
        assert_eq!(store.load_all().expect("load")[0].consent, Consent::Granted);
    }

    #[tokio::test]
    async fn a_restart_reloads_everything() {
        let store = Arc::new(MemoryStore::default());
        let record = app(Arc::clone(&store))
            .register("carol@localhost", |o| o)
            .await
            .expect("register")
            .record;
        let restarted = app(store);
        assert_eq!(restarted.registry().record("carol@localhost"), Some(record));
    }
}
