//! [`Handle`]: how handlers (and anything else in a component) send stanzas and await IQ replies.
//!
//! Everything sent goes through one bounded queue that outlives connections: what is sent
//! while the link is down is written, in order, after the next handshake. The handle also
//! polices `from` so that a handler can never make the server kill the stream with
//! `invalid-from`. Each queued stanza carries the time it was queued, so that the writer
//! can drop what waited longer than the queue's time-to-live during an outage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;

use crate::error::{RequestError, SendError};
use crate::metrics::{Counters, Metrics};
use crate::stanza::Stanza;

/// A stanza in the outbound queue, stamped with when it was queued.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) stanza: Stanza,
    pub(crate) at: Instant,
}

/// Replies we are waiting for, keyed by (peer, id), each with the ticket of its request.
type PendingMap = HashMap<(String, String), (u64, oneshot::Sender<Iq>)>;

/// Removes a request's entry when its future ends in any way, dropped included (a caller
/// that gives up must not leave its entry behind). The ticket makes sure a later request
/// that reused the same (peer, id) keeps its own entry.
struct PendingEntry<'a> {
    handle: &'a Handle,
    key: (String, String),
    ticket: u64,
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        let mut pending = self.handle.pending();
        if pending
            .get(&self.key)
            .is_some_and(|(t, _)| *t == self.ticket)
        {
            pending.remove(&self.key);
        }
    }
}

/// A cheap, cloneable sender for one component.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

struct Inner {
    domain: String,
    domain_jid: Jid,
    queue: mpsc::Sender<Queued>,
    pending: Mutex<PendingMap>,
    next_id: AtomicU64,
    request_timeout: Duration,
    counters: Counters,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("domain", &self.inner.domain)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// The handle and queue for a component configured by `config`.
    pub(crate) fn for_config(config: &crate::Config) -> (Handle, mpsc::Receiver<Queued>) {
        Handle::new(
            config.domain.clone(),
            config.queue_size,
            config.request_timeout,
        )
    }

    /// Creates the handle and the receiving end of its queue (taken by the connection writer).
    pub(crate) fn new(
        domain: Jid,
        capacity: usize,
        request_timeout: Duration,
    ) -> (Handle, mpsc::Receiver<Queued>) {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let inner = Inner {
            domain: domain.to_string(),
            domain_jid: domain,
            queue,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            request_timeout,
            counters: Counters::default(),
        };
        (
            Handle {
                inner: Arc::new(inner),
            },
            receiver,
        )
    }

    /// The component's domain, e.g. `echo.localhost`.
    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    /// The component's domain as a JID.
    pub fn jid(&self) -> &Jid {
        &self.inner.domain_jid
    }

    /// Queues a stanza, waiting while the queue is full (back-pressure).
    ///
    /// A missing `from` becomes the component's domain; a `from` outside it is refused.
    pub async fn send(&self, stanza: impl Into<Stanza>) -> Result<(), SendError> {
        let stanza = self.prepare(stanza.into())?;
        self.inner
            .queue
            .send(Queued {
                stanza,
                at: Instant::now(),
            })
            .await
            .map_err(|_| SendError::Closed)
    }

    /// Queues a stanza without waiting; fails with [`SendError::QueueFull`] when full.
    pub fn try_send(&self, stanza: impl Into<Stanza>) -> Result<(), SendError> {
        let stanza = self.prepare(stanza.into())?;
        let queued = Queued {
            stanza,
            at: Instant::now(),
        };
        self.inner.queue.try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    /// Counters since start: stanzas in and out, refused, invalid, connections, queue depth.
    pub fn metrics(&self) -> Metrics {
        let queued = self.inner.queue.max_capacity() - self.inner.queue.capacity();
        self.inner.counters.snapshot(queued)
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// A fresh stanza id, unique within this process.
    pub fn next_id(&self) -> String {
        format!("xc{}", self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends an IQ get/set and waits for the matching result or error (same peer and id),
    /// for at most the configured request timeout.
    pub async fn request(&self, iq: Iq) -> Result<Iq, RequestError> {
        self.request_with_timeout(iq, self.inner.request_timeout)
            .await
    }

    /// Like [`Handle::request`] with an explicit timeout.
    pub async fn request_with_timeout(
        &self,
        iq: Iq,
        timeout: Duration,
    ) -> Result<Iq, RequestError> {
        let peer = iq
            .to()
            .map(|j| j.to_string())
            .ok_or(RequestError::MissingTo)?;
        let key = (peer, iq.id().to_owned());
        let (tx, rx) = oneshot::channel();
        let ticket = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.pending().insert(key.clone(), (ticket, tx));
        let _entry = PendingEntry {
            handle: self,
            key,
            ticket,
        };
        self.send(iq).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(RequestError::Disconnected),
            Err(_) => Err(RequestError::Timeout(timeout)),
        }
    }

    /// Hands an inbound IQ result/error to its waiting request; gives it back if none waits.
    pub(crate) fn resolve(&self, iq: Iq) -> Option<Iq> {
        let peer = iq.from().map(|j| j.to_string()).unwrap_or_default();
        let key = (peer, iq.id().to_owned());
        match self.pending().remove(&key) {
            Some((_, waiter)) => {
                // The requester may have timed out in between; then the reply is simply dropped.
                let _ = waiter.send(iq);
                None
            }
            None => Some(iq),
        }
    }

    /// Fails every waiting request with [`RequestError::Disconnected`].
    pub(crate) fn fail_pending(&self) {
        self.pending().clear();
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, PendingMap> {
        // A poisoned lock only means another thread panicked while inserting or removing a
        // key; the map itself is still consistent.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fills in or checks the `from` address, and checks that there is a `to`.
    fn prepare(&self, mut stanza: Stanza) -> Result<Stanza, SendError> {
        let (from, has_to) = match &mut stanza {
            Stanza::Message(m) => (&mut m.from, m.to.is_some()),
            Stanza::Presence(p) => (&mut p.from, p.to.is_some()),
            Stanza::Iq(iq) => {
                let has_to = iq.to().is_some();
                (iq.from_mut(), has_to)
            }
            Stanza::Shared(m) => (&mut m.from, true),
            Stanza::Element(element) => {
                self.prepare_element(element)?;
                return Ok(stanza);
            }
        };
        if !has_to {
            return Err(SendError::MissingTo);
        }
        match from {
            None => *from = Some(self.inner.domain_jid.clone()),
            Some(jid) => self.check_domain(jid)?,
        }
        Ok(stanza)
    }

    fn prepare_element(&self, element: &mut minidom::Element) -> Result<(), SendError> {
        let stanza = matches!(element.name(), "message" | "presence" | "iq");
        if stanza && element.attr("to").is_none() {
            return Err(SendError::MissingTo);
        }
        match element.attr("from") {
            None => {
                if let Ok(name) = rxml::NcName::try_from("from") {
                    element.attrs_mut().insert(
                        rxml::Namespace::NONE,
                        name,
                        self.inner.domain.clone(),
                    );
                }
                Ok(())
            }
            Some(from) => {
                let jid = Jid::new(from).map_err(|e| SendError::InvalidJid(e.to_string()))?;
                self.check_domain(&jid)
            }
        }
    }

    fn check_domain(&self, jid: &Jid) -> Result<(), SendError> {
        if jid.domain().as_str() == self.inner.domain {
            Ok(())
        } else {
            Err(SendError::ForeignFrom {
                from: jid.to_string(),
                domain: self.inner.domain.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::message::Message;

    fn handle(capacity: usize) -> (Handle, mpsc::Receiver<Queued>) {
        Handle::new(jid("echo.localhost"), capacity, Duration::from_secs(1))
    }

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("valid test JID")
    }

    #[tokio::test]
    async fn fills_missing_from_and_refuses_foreign_from() {
        let (handle, mut rx) = handle(4);
        handle
            .send(Message::chat(jid("alice@localhost")))
            .await
            .expect("queued");
        let sent = rx.recv().await.expect("a stanza").stanza;
        assert_eq!(
            sent.from_jid().map(|j| j.to_string()).as_deref(),
            Some("echo.localhost")
        );

        let mut ok = Message::chat(jid("alice@localhost"));
        ok.from = Some(jid("bot@echo.localhost/r1"));
        handle
            .send(ok)
            .await
            .expect("a from inside our domain is fine");

        let mut foreign = Message::chat(jid("alice@localhost"));
        foreign.from = Some(jid("mallory@localhost"));
        assert!(matches!(
            handle.send(foreign).await,
            Err(SendError::ForeignFrom { .. })
        ));
    }

    #[tokio::test]
    async fn refuses_stanzas_without_a_recipient() {
        let (handle, mut rx) = handle(4);
        let no_to = Message::new(None);
        assert_eq!(handle.send(no_to).await, Err(SendError::MissingTo));
        let presence = xmpp_parsers::presence::Presence::available();
        assert_eq!(handle.try_send(presence), Err(SendError::MissingTo));
        let element: minidom::Element = "<message xmlns='jabber:component:accept'/>"
            .parse()
            .expect("element");
        assert_eq!(handle.send(element).await, Err(SendError::MissingTo));
        assert!(rx.try_recv().is_err(), "nothing was queued");
    }

    #[tokio::test]
    async fn try_send_reports_a_full_queue() {
        let (handle, _rx) = handle(1);
        handle
            .try_send(Message::chat(jid("a@b")))
            .expect("first fits");
        assert_eq!(
            handle.try_send(Message::chat(jid("a@b"))),
            Err(SendError::QueueFull)
        );
    }

    #[tokio::test]
    async fn requests_match_on_peer_and_id() {
        let (handle, mut rx) = handle(4);
        let requester = handle.clone();
        let task = tokio::spawn(async move {
            let iq = Iq::from_get("q1", xmpp_parsers::ping::Ping).with_to(jid("localhost"));
            requester.request(iq).await
        });
        let sent = rx.recv().await.expect("request sent").stanza;
        assert!(matches!(sent, Stanza::Iq(iq) if iq.id() == "q1"));
        // Same id, wrong peer: not ours.
        let stranger = Iq::empty_result(jid("echo.localhost"), "q1").with_from(jid("evil.example"));
        assert!(handle.resolve(stranger).is_some());
        let reply = Iq::empty_result(jid("echo.localhost"), "q1").with_from(jid("localhost"));
        assert!(handle.resolve(reply).is_none());
        let got = task.await.expect("task").expect("reply");
        assert!(matches!(got, Iq::Result { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_time_out_and_fail_on_disconnect() {
        let (handle, _rx) = handle(4);
        let iq = Iq::from_get("q2", xmpp_parsers::ping::Ping).with_to(jid("localhost"));
        assert_eq!(
            handle.request(iq).await,
            Err(RequestError::Timeout(Duration::from_secs(1)))
        );

        let requester = handle.clone();
        let task = tokio::spawn(async move {
            let iq = Iq::from_get("q3", xmpp_parsers::ping::Ping).with_to(jid("localhost"));
            requester.request(iq).await
        });
        tokio::task::yield_now().await;
        handle.fail_pending();
        assert_eq!(task.await.expect("task"), Err(RequestError::Disconnected));
    }

    #[tokio::test]
    async fn a_dropped_request_leaves_no_pending_entry() {
        let (handle, mut rx) = handle(4);
        let requester = handle.clone();
        let task = tokio::spawn(async move {
            let iq = Iq::from_get("q4", xmpp_parsers::ping::Ping).with_to(jid("localhost"));
            requester.request(iq).await
        });
        // Once the request is on the queue, its entry exists...
        rx.recv().await.expect("request sent");
        assert_eq!(handle.pending().len(), 1);
        // ... and a caller that gives up (its future dropped) takes it away.
        task.abort();
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(handle.pending().len(), 0);
        let late = Iq::empty_result(jid("echo.localhost"), "q4").with_from(jid("localhost"));
        assert!(
            handle.resolve(late).is_some(),
            "nobody waits for it any more"
        );
    }
}
