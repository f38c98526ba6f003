//! Runs handlers: in order for each sender, concurrently across senders, up to a bound.
//!
//! This is ejabberd's `one_queue`/`parallel` choice made per sender: a user who sends
//! "register" then "status on" sees them handled in that order, while a slow handler for
//! one user never holds up another. Memory stays bounded on every path: when the bound of
//! concurrent senders is reached the reader stops reading (back-pressure on the server);
//! what a busy sender sends meanwhile waits in its queue, which is capped per sender and
//! in total, and past either cap a stanza takes the flood path (an IQ request gets
//! `resource-constraint`, the rest is dropped and counted).
//!
//! Before any of that, the guards run: flood protection (per sender, user and domain),
//! presence storms, and the once-per-episode log of stanzas skipped for their size or
//! depth.
//!
//! Most handlers finish without ever waiting (an echo, a state update), so each stanza is
//! first polled inline on the reader task; only a handler that actually waits gets a task
//! of its own, and later stanzas from the same sender queue behind it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures_util::FutureExt;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::episodes::Episodes;
use crate::flood::refuse_flood;
use crate::flood::{FloodGuard, FloodLimits, SenderKeys, Verdict};
use crate::handle::Handle;
use crate::metrics::Counters;
use crate::presence_storm::{StormGuard, StormVerdict};
use crate::router::{BoxFuture, Inbound, Router};
use crate::stanza::Stanza;

/// Stanzas one busy sender may have waiting behind its running handler.
pub(crate) const SENDER_BACKLOG: usize = 256;
/// Stanzas all busy senders together may have waiting.
pub(crate) const TOTAL_BACKLOG: usize = 16_384;

/// What the dispatcher enforces before handlers run.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Flood protection tiers.
    pub(crate) flood: FloodLimits,
    /// Identical presences that make a storm (0 = off).
    pub(crate) storm_count: u32,
    /// Storm window and cool-down.
    pub(crate) storm_interval: std::time::Duration,
    /// Cap on one busy sender's queue.
    pub(crate) sender_backlog: usize,
    /// Cap on all queues together.
    pub(crate) total_backlog: usize,
}

impl Limits {
    /// The limits `config` asks for.
    pub(crate) fn from_config(config: &Config) -> Self {
        Limits {
            flood: config.flood.clone(),
            storm_count: config.presence_storm_count,
            storm_interval: config.presence_storm_interval,
            sender_backlog: SENDER_BACKLOG,
            total_backlog: TOTAL_BACKLOG,
        }
    }

    /// No flood or storm protection; the backlog caps stay.
    #[cfg(test)]
    pub(crate) fn off() -> Self {
        Limits {
            flood: FloodLimits::off(),
            storm_count: 0,
            storm_interval: std::time::Duration::from_secs(60),
            sender_backlog: SENDER_BACKLOG,
            total_backlog: TOTAL_BACKLOG,
        }
    }
}

/// Busy senders (by hash of their JID) and what they sent meanwhile. Two senders whose
/// hashes collide are merely ordered together.
#[derive(Default)]
struct Backlog {
    queues: HashMap<u64, VecDeque<Inbound>>,
    /// Stanzas in all queues.
    waiting: usize,
}

/// What the guards decided for one stanza.
enum Admission {
    /// Hand it to the router.
    Deliver,
    /// The flood path: IQ requests get `resource-constraint`, the rest is dropped.
    Refuse,
    /// Drop it silently (already counted).
    Ignore,
}

/// The per-sender state of the guards, under one lock.
struct Guards {
    flood: FloodGuard,
    storms: StormGuard,
    /// Senders already logged for over-cap stanzas or a full backlog.
    episodes: Episodes,
}

/// Feeds inbound stanzas to the router with per-sender ordering.
pub(crate) struct Dispatcher {
    router: Arc<Router>,
    handle: Handle,
    busy: Arc<Mutex<Backlog>>,
    permits: Arc<Semaphore>,
    max_in_flight: u32,
    limits: Limits,
    guards: Mutex<Guards>,
}

impl Dispatcher {
    /// A dispatcher running at most `max_in_flight` senders' handlers at once, with no
    /// flood protection.
    #[cfg(test)]
    pub(crate) fn new(router: Arc<Router>, handle: Handle, max_in_flight: usize) -> Self {
        Self::with_limits(router, handle, max_in_flight, Limits::off())
    }

    /// Like [`Dispatcher::new`], enforcing `limits`.
    pub(crate) fn with_limits(
        router: Arc<Router>,
        handle: Handle,
        max_in_flight: usize,
        limits: Limits,
    ) -> Self {
        let max_in_flight = u32::try_from(max_in_flight.clamp(1, 1 << 20)).unwrap_or(1 << 20);
        let guards = Guards {
            flood: FloodGuard::new(&limits.flood),
            storms: StormGuard::new(limits.storm_count, limits.storm_interval),
            episodes: Episodes::default(),
        };
        Dispatcher {
            router,
            handle,
            busy: Arc::new(Mutex::new(Backlog::default())),
            permits: Arc::new(Semaphore::new(max_in_flight as usize)),
            max_in_flight,
            limits,
            guards: Mutex::new(guards),
        }
    }

    /// Hands one stanza over; waits only when the concurrency bound is reached.
    pub(crate) async fn submit(&self, inbound: Inbound) {
        let keys = SenderKeys::of(inbound.sender(), &self.limits.flood);
        let sender = keys.full;
        match self.admit(&inbound, keys) {
            Admission::Deliver => {}
            Admission::Ignore => return,
            Admission::Refuse => {
                Counters::bump(&self.handle.counters().refused);
                refuse_flood(&self.handle, inbound).await;
                return;
            }
        }
        let refused = {
            let mut backlog = lock(&self.busy);
            let Backlog { queues, waiting } = &mut *backlog;
            match queues.get_mut(&sender) {
                Some(queue)
                    if queue.len() >= self.limits.sender_backlog
                        || *waiting >= self.limits.total_backlog =>
                {
                    true
                }
                Some(queue) => {
                    queue.push_back(inbound);
                    *waiting += 1;
                    return;
                }
                None => false,
            }
        };
        if refused {
            if lock(&self.guards)
                .episodes
                .first(sender, std::time::Instant::now())
            {
                tracing::warn!(
                    sender = %inbound.sender(),
                    "sender's backlog is full behind a slow handler; refusing its stanzas"
                );
            }
            Counters::bump(&self.handle.counters().refused);
            refuse_flood(&self.handle, inbound).await;
            return;
        }
        // Only this (reader) task inserts keys, so `sender` cannot become busy meanwhile.
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let started = std::time::Instant::now();
        let mut first = guarded(self.router.dispatch(&self.handle, inbound));
        let finished_inline = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(Pin::new(&mut first).poll(cx).is_ready())
        })
        .await;
        if finished_inline {
            let latency = &self.handle.counters().handler_latency;
            latency.observe(started.elapsed());
            return;
        }
        lock(&self.busy).queues.insert(sender, VecDeque::new());
        let (router, handle, busy) = (
            Arc::clone(&self.router),
            self.handle.clone(),
            Arc::clone(&self.busy),
        );
        tokio::spawn(async move {
            first.await;
            let latency = &handle.counters().handler_latency;
            latency.observe(started.elapsed());
            loop {
                let next = {
                    let mut busy = lock(&busy);
                    match busy.queues.get_mut(&sender).and_then(VecDeque::pop_front) {
                        Some(next) => {
                            busy.waiting -= 1;
                            next
                        }
                        None => {
                            busy.queues.remove(&sender);
                            break;
                        }
                    }
                };
                let started = std::time::Instant::now();
                guarded(router.dispatch(&handle, next)).await;
                latency.observe(started.elapsed());
            }
            drop(permit);
        });
    }

    /// Runs the guards. A stanza skipped for its size or depth is counted and logged once
    /// per episode here, then delivered (the router answers it).
    fn admit(&self, inbound: &Inbound, keys: SenderKeys) -> Admission {
        let now = std::time::Instant::now();
        let counters = self.handle.counters();
        let mut guards = lock(&self.guards);
        if let Verdict::Refuse { tier, first } = guards.flood.check(keys, now) {
            if first {
                Counters::bump(&counters.rate_limited);
                tracing::warn!(
                    sender = %inbound.sender(),
                    ?tier,
                    "sender exceeds the rate limit; refusing its stanzas until it slows down"
                );
            }
            return Admission::Refuse;
        }
        match inbound {
            Inbound::Stanza(Stanza::Presence(presence)) => {
                if let StormVerdict::Ignore { first } =
                    guards.storms.check(keys.full, presence, now)
                {
                    if first {
                        tracing::warn!(
                            sender = %inbound.sender(),
                            "presence storm: the same presence over and over; ignoring its repeats for a while"
                        );
                    }
                    Counters::bump(&counters.storm_ignored);
                    return Admission::Ignore;
                }
            }
            Inbound::Invalid(invalid) if invalid.cause.is_over_limit() => {
                Counters::bump(&counters.dropped);
                if guards.episodes.first(keys.full, now) {
                    tracing::warn!(
                        sender = %inbound.sender(),
                        reason = %invalid.reason,
                        "skipping stanzas over the size or depth cap from this sender"
                    );
                }
            }
            _ => {}
        }
        Admission::Deliver
    }

    /// No sender is busy and nothing waits (all per-sender queues are gone).
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        let backlog = lock(&self.busy);
        backlog.queues.is_empty() && backlog.waiting == 0
    }

    /// Waits until every handler has finished.
    pub(crate) async fn wait_idle(&self) {
        if let Ok(all) = self.permits.acquire_many(self.max_in_flight).await {
            drop(all);
        }
    }
}

/// A handler's future that logs a panic instead of unwinding into the reader.
fn guarded(future: BoxFuture<()>) -> impl Future<Output = ()> + Unpin + Send {
    AssertUnwindSafe(future).catch_unwind().map(|outcome| {
        if outcome.is_err() {
            tracing::error!("a stanza handler panicked");
        }
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Handlers never run under this lock, so poisoning cannot leave the map half-updated.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flood::RateLimit;
    use std::time::Duration;
    use xmpp_parsers::jid::Jid;
    use xmpp_parsers::message::Message;

    fn message(from: &str, body: &str) -> Inbound {
        let message = Message::chat(Some(Jid::new("echo.localhost").expect("jid")))
            .with_body(Default::default(), body.to_owned());
        let message = Message {
            from: Some(Jid::new(from).expect("jid")),
            ..message
        };
        Inbound::Stanza(message.into())
    }

    /// A router whose handler sleeps a sender-specific time and records (sender, body).
    fn recording_router(log: Arc<Mutex<Vec<(String, String)>>>) -> Router {
        Router::new().message(move |_, msg| {
            let log = Arc::clone(&log);
            async move {
                let from = msg.from.map(|f| f.to_string()).unwrap_or_default();
                let body = msg.bodies.values().next().cloned().unwrap_or_default();
                // Slow sender "a": later stanzas must still wait for earlier ones.
                let delay = if from.starts_with('a') { 30 } else { 1 };
                let n: u64 = body.parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(delay * (5 - n.min(4)))).await;
                lock(&log).push((from, body));
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn same_sender_in_order_different_senders_concurrently() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (handle, _rx) = Handle::new(
            Jid::new("echo.localhost").expect("jid"),
            16,
            Duration::from_secs(1),
        );
        let dispatcher = Dispatcher::new(Arc::new(recording_router(log.clone())), handle, 8);
        for n in 0..4 {
            dispatcher.submit(message("a@x/1", &n.to_string())).await;
            dispatcher.submit(message("b@x/1", &n.to_string())).await;
        }
        dispatcher.wait_idle().await;
        let log = lock(&log).clone();
        let order = |who: &str| -> Vec<String> {
            log.iter()
                .filter(|(f, _)| f.starts_with(who))
                .map(|(_, b)| b.clone())
                .collect()
        };
        assert_eq!(order("a"), ["0", "1", "2", "3"]);
        assert_eq!(order("b"), ["0", "1", "2", "3"]);
        // b is fast and independent, so all of b finished before a's slow first message.
        let first_a = log.iter().position(|(f, _)| f.starts_with('a'));
        assert_eq!(first_a, Some(4), "log was {log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn bound_limits_concurrent_senders() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let router = Router::new().message(move |_, _| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = r.fetch_add(1, SeqCst) + 1;
                p.fetch_max(now, SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                r.fetch_sub(1, SeqCst);
            }
        });
        let (handle, _rx) = Handle::new(
            Jid::new("echo.localhost").expect("jid"),
            16,
            Duration::from_secs(1),
        );
        let dispatcher = Dispatcher::new(Arc::new(router), handle, 3);
        for n in 0..10 {
            dispatcher.submit(message(&format!("u{n}@x/r"), "0")).await;
        }
        dispatcher.wait_idle().await;
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_panicking_handler_does_not_stop_the_next_stanza() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&log);
        let router = Router::new().message(move |_, msg: Message| {
            let seen = Arc::clone(&seen);
            async move {
                let body = msg.bodies.values().next().cloned().unwrap_or_default();
                if body == "boom" {
                    panic!("handler bug");
                }
                lock(&seen).push(body);
            }
        });
        let (handle, _rx) = Handle::new(
            Jid::new("echo.localhost").expect("jid"),
            16,
            Duration::from_secs(1),
        );
        let dispatcher = Dispatcher::new(Arc::new(router), handle, 4);
        dispatcher.submit(message("a@x/1", "boom")).await;
        dispatcher.submit(message("a@x/1", "after")).await;
        dispatcher.wait_idle().await;
        assert_eq!(*lock(&log), vec!["after".to_owned()]);
    }

    #[tokio::test]
    async fn flooding_sender_is_refused_and_others_are_not() {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        let router = Router::new().message(move |_, _| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {}
        });
        let (handle, mut rx) = Handle::new(
            Jid::new("echo.localhost").expect("jid"),
            64,
            Duration::from_secs(1),
        );
        let limits = Limits {
            flood: FloodLimits {
                sender: RateLimit {
                    per_second: 1.0,
                    burst: 3.0,
                },
                ..FloodLimits::off()
            },
            ..Limits::off()
        };
        let dispatcher = Dispatcher::with_limits(Arc::new(router), handle, 4, limits);
        for n in 0..10 {
            dispatcher
                .submit(message("flood@x/1", &n.to_string()))
                .await;
        }
        dispatcher.submit(message("calm@x/1", "hi")).await;
        let iq = xmpp_parsers::iq::Iq::from_get("q", xmpp_parsers::ping::Ping)
            .with_from(Jid::new("flood@x/1").expect("jid"))
            .with_to(Jid::new("echo.localhost").expect("jid"));
        dispatcher.submit(Inbound::Stanza(iq.into())).await;
        dispatcher.wait_idle().await;
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3 + 1);
        match rx.try_recv().map(|queued| queued.stanza) {
            Ok(crate::stanza::Stanza::Iq(xmpp_parsers::iq::Iq::Error { error, id, .. })) => {
                assert_eq!(id, "q");
                assert_eq!(
                    error.defined_condition,
                    xmpp_parsers::stanza_error::DefinedCondition::ResourceConstraint
                );
            }
            other => panic!("expected resource-constraint, got {other:?}"),
        }
    }

    fn handle_with_queue(
        capacity: usize,
    ) -> (Handle, tokio::sync::mpsc::Receiver<crate::handle::Queued>) {
        Handle::new(
            Jid::new("echo.localhost").expect("jid"),
            capacity,
            Duration::from_secs(1),
        )
    }

    #[tokio::test]
    async fn a_busy_senders_backlog_is_capped_and_the_excess_refused() {
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (gate, count) = (Arc::clone(&release), Arc::clone(&handled));
        let router = Router::new().message(move |_, _| {
            let (gate, count) = (Arc::clone(&gate), Arc::clone(&count));
            async move {
                // Every handler waits until the test opens the gate.
                let _ = gate.acquire().await.map(|p| p.forget());
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let (handle, mut rx) = handle_with_queue(64);
        let limits = Limits {
            sender_backlog: 5,
            total_backlog: 8,
            ..Limits::off()
        };
        let dispatcher = Dispatcher::with_limits(Arc::new(router), handle.clone(), 16, limits);
        // One running + 5 waiting; the other 4 are refused.
        for n in 0..10 {
            dispatcher.submit(message("slow@x/1", &n.to_string())).await;
        }
        assert_eq!(handle.metrics().stanzas_refused, 4);
        // An IQ request past the cap still gets its one reply.
        let iq = xmpp_parsers::iq::Iq::from_get("q", xmpp_parsers::ping::Ping)
            .with_from(Jid::new("slow@x/1").expect("jid"))
            .with_to(Jid::new("echo.localhost").expect("jid"));
        dispatcher.submit(Inbound::Stanza(iq.into())).await;
        match rx.try_recv().map(|queued| queued.stanza) {
            Ok(Stanza::Iq(xmpp_parsers::iq::Iq::Error { error, .. })) => assert_eq!(
                error.defined_condition,
                xmpp_parsers::stanza_error::DefinedCondition::ResourceConstraint
            ),
            other => panic!("expected resource-constraint, got {other:?}"),
        }
        // The total cap (8) binds across senders: 1 running + 3 waiting for another one.
        for n in 0..6 {
            dispatcher
                .submit(message("other@y/1", &n.to_string()))
                .await;
        }
        assert_eq!(handle.metrics().stanzas_refused, 4 + 1 + 2);
        release.add_permits(1000);
        dispatcher.wait_idle().await;
        assert_eq!(handled.load(std::sync::atomic::Ordering::SeqCst), 6 + 4);
        assert_eq!(lock(&dispatcher.busy).waiting, 0);
        assert!(lock(&dispatcher.busy).queues.is_empty());
    }

    #[tokio::test]
    async fn presence_storms_are_ignored_and_over_cap_stanzas_counted() {
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&seen);
        let router = Router::new().presence(move |_, _| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {}
        });
        let (handle, mut rx) = handle_with_queue(64);
        let limits = Limits {
            storm_count: 10,
            ..Limits::off()
        };
        let dispatcher = Dispatcher::with_limits(Arc::new(router), handle.clone(), 4, limits);
        let presence = || {
            let mut p = xmpp_parsers::presence::Presence::available();
            p.from = Some(Jid::new("loop@x/1").expect("jid"));
            Inbound::Stanza(p.into())
        };
        for _ in 0..15 {
            dispatcher.submit(presence()).await;
        }
        dispatcher.wait_idle().await;
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 9);
        assert_eq!(handle.metrics().presences_storm_ignored, 6);
        let skipped = crate::xmlstream::InvalidStanza {
            name: "iq".into(),
            type_: Some("set".into()),
            id: Some("d".into()),
            from: Some(Jid::new("deep@x/1").expect("jid")),
            to: None,
            reason: "nested deeper than 64 levels".into(),
            cause: crate::xmlstream::InvalidCause::TooDeep(64),
        };
        dispatcher.submit(Inbound::Invalid(skipped)).await;
        dispatcher.wait_idle().await;
        assert_eq!(handle.metrics().stanzas_over_limit, 1);
        match rx.try_recv().map(|queued| queued.stanza) {
            Ok(Stanza::Iq(xmpp_parsers::iq::Iq::Error { error, id, .. })) => {
                assert_eq!(id, "d");
                assert_eq!(
                    error.defined_condition,
                    xmpp_parsers::stanza_error::DefinedCondition::PolicyViolation
                );
            }
            other => panic!("expected policy-violation, got {other:?}"),
        }
    }
}
