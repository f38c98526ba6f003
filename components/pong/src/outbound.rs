//! [`Sink`]: where games send their stanzas. In the binary it is the framework's
//! [`Handle`]; unit tests plug in a channel and read what would have gone out.
//!
//! A game's loop only ever uses the non-blocking [`Sink::try_send`] and
//! [`Sink::try_send_shared`]: a message that does not fit in the queue is dropped and
//! counted (a ball position is stale by the next tick anyway; a lost `dimensions` comes
//! again on the next check-in), so a slow link never delays a tick, a leave or shutdown.
//! [`Sink::send`] (waiting for room) is only for `gameOver`, after the loop has ended.

use std::future::Future;
use std::pin::Pin;

use xmpp_component::minidom::Element;
use xmpp_component::{Handle, SendError, SharedMessage};

/// A boxed future returned by [`Sink::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// Something that takes outbound stanzas.
pub trait Sink: Send + Sync + 'static {
    /// Queues without waiting; [`SendError::QueueFull`] when there is no room.
    fn try_send(&self, stanza: Element) -> Result<(), SendError>;
    /// Queues, waiting for room.
    fn send(&self, stanza: Element) -> SendFuture<'_>;
    /// Queues a message with a pre-serialised payload without waiting.
    fn try_send_shared(&self, message: SharedMessage) -> Result<(), SendError>;
}

impl Sink for Handle {
    fn try_send(&self, stanza: Element) -> Result<(), SendError> {
        Handle::try_send(self, stanza)
    }

    fn send(&self, stanza: Element) -> SendFuture<'_> {
        Box::pin(Handle::send(self, stanza))
    }

    fn try_send_shared(&self, message: SharedMessage) -> Result<(), SendError> {
        Handle::try_send(self, message)
    }
}

/// A sink for tests whose queue is always full: `try_send` refuses, `send` never returns.
#[cfg(test)]
pub(crate) struct StalledSink;

#[cfg(test)]
impl Sink for StalledSink {
    fn try_send(&self, _: Element) -> Result<(), SendError> {
        Err(SendError::QueueFull)
    }

    fn send(&self, _: Element) -> SendFuture<'_> {
        Box::pin(std::future::pending())
    }

    fn try_send_shared(&self, _: SharedMessage) -> Result<(), SendError> {
        Err(SendError::QueueFull)
    }
}

/// A sink for tests: everything goes into an unbounded channel.
#[cfg(test)]
pub(crate) struct ChannelSink(pub(crate) tokio::sync::mpsc::UnboundedSender<Element>);

#[cfg(test)]
impl Sink for ChannelSink {
    fn try_send(&self, stanza: Element) -> Result<(), SendError> {
        self.0.send(stanza).map_err(|_| SendError::Closed)
    }

    fn send(&self, stanza: Element) -> SendFuture<'_> {
        let result = self.0.send(stanza).map_err(|_| SendError::Closed);
        Box::pin(async move { result })
    }

    /// Rebuilds the element the server would see, so tests inspect one shape.
    fn try_send_shared(&self, message: SharedMessage) -> Result<(), SendError> {
        let mut xml = format!(
            "<message xmlns='jabber:component:accept' to='{}' type='headline'>",
            message.to
        );
        xml.push_str(&String::from_utf8_lossy(message.payload.as_bytes()));
        xml.push_str("</message>");
        let element: Element = xml.parse().map_err(|_| SendError::Closed)?;
        self.try_send(element)
    }
}

/// The `<name/>` child of a sent stanza's `<pong/>` payload, as text (tests).
#[cfg(test)]
pub(crate) fn pong_field(element: &Element, name: &str) -> Option<String> {
    let ns = crate::protocol::NS;
    element
        .get_child("pong", ns)?
        .get_child(name, ns)
        .map(|c| c.text())
}

/// The `<action/>` of a sent stanza's `<pong/>` payload; empty when it has none (tests).
#[cfg(test)]
pub(crate) fn pong_action(element: &Element) -> String {
    pong_field(element, "action").unwrap_or_default()
}

/// The next stanza a [`ChannelSink`] got for `to` with action `wanted`, skipping others;
/// panics after ten minutes of (simulated) time.
#[cfg(test)]
pub(crate) async fn next_sent(
    out: &mut tokio::sync::mpsc::UnboundedReceiver<Element>,
    to: &str,
    wanted: &str,
) -> Element {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let next = tokio::time::timeout_at(deadline, out.recv()).await;
        let element = next
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no {wanted} for {to}"));
        if element.attr("to") == Some(to) && pong_action(&element) == wanted {
            return element;
        }
    }
}

/// Everything a [`ChannelSink`] holds now (tests).
#[cfg(test)]
pub(crate) fn drain_sent(out: &mut tokio::sync::mpsc::UnboundedReceiver<Element>) -> Vec<Element> {
    std::iter::from_fn(|| out.try_recv().ok()).collect()
}
