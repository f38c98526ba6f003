//! Runs handlers: in order for each sender, concurrently across senders, up to a bound.
//!
//! This is ejabberd's `one_queue`/`parallel` choice made per sender: a user who sends
//! "register" then "status on" sees them handled in that order, while a slow handler for
//! one user never holds up another. When the bound is reached the reader stops reading,
//! which pushes back on the server instead of growing memory.
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

use crate::flood::{FloodGuard, Verdict};
use crate::handle::Handle;
use crate::metrics::Counters;
use crate::router::{BoxFuture, Inbound, Router, refuse_flood};

/// Busy senders (by hash of their JID) and what they sent meanwhile. Two senders whose
/// hashes collide are merely ordered together.
type Queues = Arc<Mutex<HashMap<u64, VecDeque<Inbound>>>>;

/// Feeds inbound stanzas to the router with per-sender ordering.
pub(crate) struct Dispatcher {
    router: Arc<Router>,
    handle: Handle,
    busy: Queues,
    permits: Arc<Semaphore>,
    max_in_flight: u32,
    flood: Mutex<FloodGuard>,
}

impl Dispatcher {
    /// A dispatcher running at most `max_in_flight` senders' handlers at once, with no
    /// flood protection.
    #[cfg(test)]
    pub(crate) fn new(router: Arc<Router>, handle: Handle, max_in_flight: usize) -> Self {
        Self::with_flood_guard(router, handle, max_in_flight, FloodGuard::new(0.0, 1.0))
    }

    /// Like [`Dispatcher::new`], refusing what `flood` refuses.
    pub(crate) fn with_flood_guard(
        router: Arc<Router>,
        handle: Handle,
        max_in_flight: usize,
        flood: FloodGuard,
    ) -> Self {
        let max_in_flight = u32::try_from(max_in_flight.clamp(1, 1 << 20)).unwrap_or(1 << 20);
        Dispatcher {
            router,
            handle,
            busy: Arc::new(Mutex::new(HashMap::new())),
            permits: Arc::new(Semaphore::new(max_in_flight as usize)),
            max_in_flight,
            flood: Mutex::new(flood),
        }
    }

    /// Hands one stanza over; waits only when the concurrency bound is reached.
    pub(crate) async fn submit(&self, inbound: Inbound) {
        let sender = inbound.sender_hash();
        let verdict = lock(&self.flood).check(sender, std::time::Instant::now());
        if let Verdict::Refuse { first } = verdict {
            if first {
                tracing::warn!(
                    sender = %inbound.sender_text(),
                    "sender exceeds the rate limit; refusing its stanzas until it slows down"
                );
            }
            Counters::bump(&self.handle.counters().refused);
            refuse_flood(&self.handle, inbound).await;
            return;
        }
        if let Some(queue) = lock(&self.busy).get_mut(&sender) {
            queue.push_back(inbound);
            return;
        }
        // Only this (reader) task inserts keys, so `sender` cannot become busy meanwhile.
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let mut first = guarded(self.router.dispatch(&self.handle, inbound));
        let finished_inline = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(Pin::new(&mut first).poll(cx).is_ready())
        })
        .await;
        if finished_inline {
            return;
        }
        lock(&self.busy).insert(sender, VecDeque::new());
        let (router, handle, busy) = (
            Arc::clone(&self.router),
            self.handle.clone(),
            Arc::clone(&self.busy),
        );
        tokio::spawn(async move {
            first.await;
            loop {
                let next = {
                    let mut busy = lock(&busy);
                    match busy.get_mut(&sender).and_then(VecDeque::pop_front) {
                        Some(next) => next,
                        None => {
                            busy.remove(&sender);
                            break;
                        }
                    }
                };
                guarded(router.dispatch(&handle, next)).await;
            }
            drop(permit);
        });
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
    use crate::flood::FloodGuard;
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
        let dispatcher =
            Dispatcher::with_flood_guard(Arc::new(router), handle, 4, FloodGuard::new(1.0, 3.0));
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
            Ok(crate::xmlstream::Stanza::Iq(xmpp_parsers::iq::Iq::Error { error, id, .. })) => {
                assert_eq!(id, "q");
                assert_eq!(
                    error.defined_condition,
                    xmpp_parsers::stanza_error::DefinedCondition::ResourceConstraint
                );
            }
            other => panic!("expected resource-constraint, got {other:?}"),
        }
    }
}
