//! Unit-test helpers shared by the router and the XEP helpers' tests: a [`Handle`] whose
//! outbound queue the test reads, and stanzas parsed the way the stream parser does.

use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::sync::mpsc;
use xmpp_parsers::jid::Jid;

use crate::handle::{Handle, Queued};
use crate::router::{Inbound, Router};

/// A handle for `c.localhost` and the receiving end of its outbound queue.
pub(crate) fn setup() -> (Handle, mpsc::Receiver<Queued>) {
    setup_for("c.localhost")
}

/// A handle for `domain` and the receiving end of its outbound queue.
pub(crate) fn setup_for(domain: &str) -> (Handle, mpsc::Receiver<Queued>) {
    Handle::new(Jid::new(domain).expect("jid"), 16, Duration::from_secs(1))
}

/// The next stanza the component queued, as an element.
pub(crate) fn sent(rx: &mut mpsc::Receiver<Queued>) -> Option<Element> {
    let stanza = rx.try_recv().ok()?.stanza;
    let mut bytes = Vec::new();
    crate::serialize::serialize(&stanza, &mut bytes);
    String::from_utf8(bytes).ok()?.parse().ok()
}

/// One stanza, parsed inside a component stream as the reader does (typed, or the
/// reader's invalid-stanza report).
pub(crate) fn inbound(xml: &str) -> Inbound {
    let mut parser = crate::xmlstream::StreamParser::new(1 << 20);
    let mut out = None;
    let doc = format!(
        "<stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' id='x'>{xml}"
    );
    parser
        .feed(doc.as_bytes(), |event| match event {
            crate::xmlstream::StreamEvent::Stanza(s) => out = Some(Inbound::Stanza(s)),
            crate::xmlstream::StreamEvent::Invalid(i) => out = Some(Inbound::Invalid(i)),
            _ => {}
        })
        .expect("well-formed test XML");
    out.expect("one stanza")
}

/// An IQ of `type_` from `a@localhost/r` to the component, carrying `payload`.
pub(crate) fn iq(type_: &str, payload: &str) -> Inbound {
    inbound(&format!(
        "<iq xmlns='jabber:component:accept' type='{type_}' id='q' \
         from='a@localhost/r' to='c.localhost'>{payload}</iq>"
    ))
}

/// Dispatches an IQ to `router` and returns the reply the component sent.
pub(crate) async fn ask(
    router: &Arc<Router>,
    (handle, rx): &mut (Handle, mpsc::Receiver<Queued>),
    type_: &str,
    payload: &str,
) -> Element {
    router.dispatch(handle, iq(type_, payload)).await;
    sent(rx).expect("a reply")
}

/// The defined condition of an error reply, as its element name.
pub(crate) fn condition(reply: &Element) -> Option<String> {
    let error = reply.get_child("error", "jabber:component:accept")?;
    error
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
        .map(|c| c.name().to_owned())
}
