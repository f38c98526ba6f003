//! Test support shared by the unit tests: an app over an in-memory store with registered
//! users, and the component around it connected to a [`TestServer`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xmpp_component::testing::TestServer;
use xmpp_component::{Component, Config, Secret};

use crate::app::{App, Settings};
use crate::store::{Consent, MemoryStore, Options, Store, StoreError, UserRecord};
use crate::token::Token;

/// The component's domain in tests.
pub(crate) const DOMAIN: &str = "webstatus.localhost";
/// Where the status pages live in tests.
pub(crate) const PUBLIC_URL: &str = "https://status.example";

/// A registration for `jid` with a fresh token, status text shown, full JID hidden.
pub(crate) fn record(jid: &str, consent: Consent) -> UserRecord {
    UserRecord {
        jid: jid.into(),
        token: Token::generate(),
        options: Options {
            show_status_msg: true,
            show_full_jid: false,
        },
        consent,
        registered_at: 1,
    }
}

/// An app whose store holds `users` (consent granted, `options` each) and that calls a
/// probe unanswered after `probe_timeout`. Returns the users' tokens in order.
pub(crate) fn app_with(
    users: &[&str],
    options: Options,
    probe_timeout: Duration,
) -> (App, Vec<Token>) {
    let store = Arc::new(MemoryStore::default());
    let tokens = users
        .iter()
        .map(|user| {
            let record = UserRecord {
                options,
                ..record(user, Consent::Granted)
            };
            store.put(&record).expect("put");
            record.token
        })
        .collect();
    let settings = Settings {
        probe_timeout,
        ..settings()
    };
    (App::new(store, settings).expect("app"), tokens)
}

/// An app over an empty in-memory store (returned too) with these registration limits.
pub(crate) fn app_limited(limits: crate::limits::Limits) -> (App, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    let settings = Settings {
        limits,
        ..settings()
    };
    let app = App::new(Arc::clone(&store) as Arc<dyn Store>, settings).expect("app");
    (app, store)
}

/// The test settings: [`DOMAIN`], [`PUBLIC_URL`], fast probing, a 5 s probe timeout.
pub(crate) fn settings() -> Settings {
    Settings {
        domain: DOMAIN.into(),
        public_url: PUBLIC_URL.into(),
        probe_rate: 1000,
        probe_timeout: Duration::from_secs(5),
        limits: Default::default(),
    }
}

/// A store whose writes fail while [`FlakyStore::fail`] is on (a full disk, a dead device).
#[derive(Default)]
pub(crate) struct FlakyStore {
    inner: MemoryStore,
    failing: AtomicBool,
}

impl FlakyStore {
    /// Makes every later write fail (`true`) or succeed again (`false`).
    pub(crate) fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Db(sled::Error::Io(std::io::Error::other(
                "disk full (test)",
            ))));
        }
        Ok(())
    }
}

impl Store for FlakyStore {
    fn load_all(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.inner.load_all()
    }

    fn put(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put(user)
    }

    fn remove(&self, jid: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.remove(jid)
    }
}

/// A running component and the test server it is connected to.
pub(crate) struct Connected {
    pub(crate) server: TestServer,
    pub(crate) stop: CancellationToken,
    pub(crate) running: JoinHandle<Result<(), xmpp_component::Error>>,
}

impl Connected {
    /// Shuts the component down and checks that it stopped cleanly.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.running.await.expect("task").expect("clean shutdown");
    }
}

/// Runs the component for `app` (re-probing every `reprobe`) against a fresh test server
/// and completes the handshake.
pub(crate) async fn connect(app: &App, reprobe: Option<Duration>) -> Connected {
    let mut server = TestServer::bind(DOMAIN, "s").await.expect("bind");
    let config = Config::new(server.addr().to_string(), DOMAIN, Secret::new("s")).expect("config");
    let component = Component::new(config, crate::service::router(app.clone(), reprobe));
    let stop = CancellationToken::new();
    let running = tokio::spawn(component.run(stop.clone().cancelled_owned()));
    server.accept().await.expect("handshake");
    Connected {
        server,
        stop,
        running,
    }
}
