//! Test support shared by the unit tests: an app over an in-memory store with registered
//! users, and the component around it connected to a [`TestServer`].

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xmpp_component::testing::TestServer;
use xmpp_component::{Component, Config, Secret};

use crate::app::{App, Settings};
use crate::store::{Consent, MemoryStore, Options, Store, UserRecord};
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
        domain: DOMAIN.into(),
        public_url: PUBLIC_URL.into(),
        probe_rate: 1000,
        probe_timeout,
    };
    (App::new(store, settings).expect("app"), tokens)
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
