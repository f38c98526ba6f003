//! systemd notifications (the `sd_notify` protocol, through the pure-Rust `sd-notify`
//! crate: no libsystemd).
//!
//! Under a `Type=notify` unit, systemd passes `NOTIFY_SOCKET` (and `WATCHDOG_USEC` with
//! `WatchdogSec=`). The supervisor reports `READY=1` after the first successful handshake,
//! so `systemctl start` returns once the component is really connected, and `WATCHDOG=1`
//! while a connection is up, so a component that lost its server for longer than
//! `WatchdogSec=` (or whose runtime hangs) is restarted by systemd. Without
//! `NOTIFY_SOCKET` every call is a no-op. Send failures are logged at debug level and never
//! affect the component.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

/// What the supervisor tells systemd.
#[derive(Debug)]
pub(crate) struct Notifier {
    ready_sent: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads the watchdog period from the environment systemd set up.
    pub(crate) fn from_env() -> Self {
        Notifier {
            ready_sent: false,
            watchdog: sd_notify::watchdog_enabled().filter(|period| !period.is_zero()),
        }
    }

    /// A handshake succeeded: `READY=1` the first time, a status line every time.
    pub(crate) fn connected(&mut self, domain: &str) {
        let status = format!("connected as {domain}");
        if self.ready_sent {
            send(&[NotifyState::Status(&status)]);
        } else {
            send(&[NotifyState::Ready, NotifyState::Status(&status)]);
            self.ready_sent = true;
        }
    }

    /// The link is down; shown by `systemctl status`.
    pub(crate) fn disconnected(&self, why: &str) {
        send(&[NotifyState::Status(&format!("reconnecting: {why}"))]);
    }

    /// Shutdown has begun.
    pub(crate) fn stopping() {
        send(&[NotifyState::Stopping]);
    }

    /// Sends `WATCHDOG=1` every half watchdog period until the returned guard is dropped;
    /// `None` when systemd asked for no watchdog.
    pub(crate) fn keep_alive(&self) -> Option<WatchdogGuard> {
        let period = self.watchdog? / 2;
        Some(WatchdogGuard(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                send(&[NotifyState::Watchdog]);
            }
        })))
    }
}

/// Stops the watchdog pings when dropped (the connection ended).
#[derive(Debug)]
pub(crate) struct WatchdogGuard(JoinHandle<()>);

impl Drop for WatchdogGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!(%error, "sd_notify failed");
    }
}
