//! Re-learning presence after every (re)connect.
//!
//! Presence that changed while the link was down is lost (no server replays it), so each
//! handshake starts a new generation: everyone becomes "unknown", then every registered
//! user is probed at a bounded rate. Prosody answers a probe for an offline user with
//! `unavailable`; ejabberd stays silent, so silence for `probe_timeout` means offline.
//! Optionally everyone is re-probed periodically to recover stanzas lost over s2s; there
//! too, silence means offline, so a lost `unavailable` does not leave a user online.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use xmpp_component::Handle;
use xmpp_component::xmpp_parsers::jid::Jid;
use xmpp_component::xmpp_parsers::presence::Presence;

use crate::app::App;

/// Runs one generation of probing; returns when a newer connection supersedes it.
pub async fn run(
    app: App,
    handle: Handle,
    generation: Arc<AtomicU64>,
    reprobe_every: Option<Duration>,
) {
    let mine = generation.fetch_add(1, Ordering::SeqCst) + 1;
    let current = || generation.load(Ordering::SeqCst) == mine;
    app.registry().reset_all_unknown();
    let users = app.registry().jids();
    tracing::info!(users = users.len(), "probing registered users");
    if !probe_all(&app, &handle, users, &current).await {
        return;
    }
    tracing::info!("presence re-learned");
    let Some(every) = reprobe_every else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        if !current() {
            return;
        }
        let users = app.registry().jids();
        if !probe_all(&app, &handle, users, &current).await {
            return;
        }
    }
}

/// Probes `users` at the configured rate; a user from whom no presence arrived
/// `probe_timeout` after their probe is offline. False if superseded or closed.
async fn probe_all(
    app: &App,
    handle: &Handle,
    users: Vec<Arc<str>>,
    current: &impl Fn() -> bool,
) -> bool {
    let settings = app.settings();
    let rate = f64::from(settings.probe_rate.max(1));
    // At most 100 wake-ups a second; several probes per tick at high rates.
    let batch = (rate / 100.0).ceil().max(1.0);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(batch / rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut waiting: VecDeque<(Arc<str>, Instant)> = VecDeque::new();
    let mut users = users.into_iter().peekable();
    while users.peek().is_some() || !waiting.is_empty() {
        tick.tick().await;
        if !current() {
            return false;
        }
        for user in users.by_ref().take(batch as usize) {
            let Ok(to) = Jid::new(&user) else {
                continue;
            };
            let probe = Presence::probe()
                .with_from(handle.jid().clone())
                .with_to(to);
            // Before sending: an answer may be handled before `send` returns.
            app.registry().probe_sent(&user);
            if handle.send(probe).await.is_err() {
                return false;
            }
            waiting.push_back((user, Instant::now() + settings.probe_timeout));
        }
        let now = Instant::now();
        while let Some((user, _)) = waiting.front().filter(|(_, at)| *at <= now) {
            app.registry().probe_unanswered(user);
            waiting.pop_front();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::Show;
    use crate::registry::Update;
    use crate::store::Options;
    use crate::testkit::{Connected, app_with, connect};
    use crate::view::Display;

    /// Waits (up to 5 s) until `check` holds.
    async fn eventually(check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 5 s");
    }

    #[tokio::test]
    async fn probes_everyone_and_silence_means_offline() {
        let users = ["alice@localhost", "bob@localhost", "carol@localhost"];
        let (app, tokens) = app_with(&users, Options::default(), Duration::from_millis(1500));
        let Connected {
            mut server,
            stop,
            running,
        } = connect(&app, None).await;

        let mut probed = Vec::new();
        for _ in 0..3 {
            let probe = server.recv().await.expect("probe");
            assert_eq!(probe.attr("type"), Some("probe"));
            assert_eq!(probe.attr("from"), Some("webstatus.localhost"));
            probed.push(probe.attr("to").unwrap_or_default().to_owned());
        }
        probed.sort();
        assert_eq!(
            probed,
            ["alice@localhost", "bob@localhost", "carol@localhost"]
        );
        assert_eq!(
            app.registry().view(&tokens[0]).map(|v| v.display),
            Some(Display::Unknown)
        );
        // alice answers (ejabberd style, with a delay), bob's server says unavailable
        // (Prosody style), carol's says nothing.
        server
            .send_xml(
                "<presence from='alice@localhost/phone' to='webstatus.localhost'>\
                 <show>away</show><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/>\
                 </presence>\
                 <presence from='bob@localhost' to='webstatus.localhost' type='unavailable'/>",
            )
            .await
            .expect("send");
        let display = |i: usize| app.registry().view(&tokens[i]).map(|v| v.display);
        eventually(|| display(0) == Some(Display::Away)).await;
        let alice = app.registry().view(&tokens[0]).expect("alice");
        assert_eq!(
            (alice.display, alice.since),
            (Display::Away, Some(1_577_836_800))
        );
        eventually(|| display(1) == Some(Display::Offline)).await;
        assert_eq!(
            display(2),
            Some(Display::Unknown),
            "carol's probe has not timed out yet"
        );
        eventually(|| display(2) == Some(Display::Offline)).await;
        assert_eq!(
            app.registry().view(&tokens[0]).map(|v| v.display),
            Some(Display::Away),
            "an answered probe is not expired"
        );

        // A reconnect starts over: unknown, probed again.
        server.drop_connection();
        server.accept().await.expect("reconnect");
        let probe = server.recv().await.expect("probe after reconnect");
        assert_eq!(probe.attr("type"), Some("probe"));
        let _ = app.registry().apply(
            "alice@localhost",
            Update::Available {
                resource: "x",
                show: Show::Chat,
                status: None,
                priority: 0,
                since: 0,
            },
        );
        stop.cancel();
        running.await.expect("task").expect("clean shutdown");
    }

    #[tokio::test]
    async fn an_unanswered_re_probe_takes_a_stale_online_user_offline() {
        let (app, tokens) = app_with(
            &["alice@localhost"],
            Options::default(),
            Duration::from_millis(300),
        );
        let token = tokens[0];
        let mut connected = connect(&app, Some(Duration::from_millis(500))).await;
        let server = &mut connected.server;
        let display = || app.registry().view(&token).map(|v| v.display);

        let probe = server.recv().await.expect("first probe");
        assert_eq!(probe.attr("type"), Some("probe"));
        server
            .send_xml("<presence from='alice@localhost/phone' to='webstatus.localhost'/>")
            .await
            .expect("answer");
        eventually(|| display() == Some(Display::Available)).await;

        // Her unavailable is lost on the way; the hourly (here: 0.5 s) re-probe finds out.
        let again = server.recv().await.expect("re-probe");
        assert_eq!(again.attr("type"), Some("probe"));
        assert_eq!(
            display(),
            Some(Display::Available),
            "shown until the probe times out"
        );
        eventually(|| display() == Some(Display::Offline)).await;
        connected.stop().await;
    }
}
