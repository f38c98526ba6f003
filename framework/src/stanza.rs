//! [`Stanza`]: one top-level element, inbound or outbound, and the pre-serialised
//! [`SharedMessage`] a component sends to many recipients. The parser (`xmlstream`)
//! produces these; handlers and the writer consume them.

use minidom::Element;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::Message;
use xmpp_parsers::presence::Presence;

/// One complete top-level element, inbound or outbound.
#[derive(Debug, Clone)]
pub enum Stanza {
    /// A `<message/>`.
    Message(Message),
    /// A `<presence/>`.
    Presence(Presence),
    /// An `<iq/>`.
    Iq(Iq),
    /// Anything else (`<handshake/>`, `<stream:error/>`, unknown elements), or every
    /// element when the parser runs in [`ParseMode::Elements`].
    Element(Element),
    /// Outbound only: a message whose payload was serialised in advance.
    Shared(SharedMessage),
}

/// Payload elements serialised once, for sending the same content to many recipients
/// (a game's ball position to both players) without building and encoding it per stanza.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedPayload(std::sync::Arc<[u8]>);

impl SharedPayload {
    /// Serialises `elements` (each a complete element with its namespace declared).
    pub fn new<'a>(elements: impl IntoIterator<Item = &'a Element>) -> Self {
        let mut bytes = Vec::new();
        for element in elements {
            let start = bytes.len();
            if element.write_to(&mut bytes).is_err() {
                bytes.truncate(start);
                tracing::error!(
                    element = element.name(),
                    "payload element cannot be serialised"
                );
            }
        }
        SharedPayload(bytes.into())
    }

    /// A payload the caller wrote as text: complete elements, each declaring its
    /// namespace, with every value escaped ([`crate::escape_markup`]) or a number. For
    /// high-rate templates, where building and encoding elements would dominate the cost
    /// (a game's ball position, 30 times a second per game). Debug builds check that it is
    /// well-formed.
    pub fn from_trusted_xml(xml: String) -> Self {
        debug_assert!(
            format!("<r xmlns='urn:check'>{xml}</r>")
                .parse::<Element>()
                .is_ok(),
            "not well-formed: {xml}"
        );
        SharedPayload(xml.into_bytes().into())
    }

    /// The serialised elements.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A `<message/>` with a [`SharedPayload`]: cheap to clone and to write.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedMessage {
    /// The recipient.
    pub to: Jid,
    /// The sender; `None` becomes the component's domain.
    pub from: Option<Jid>,
    /// The message type.
    pub type_: xmpp_parsers::message::MessageType,
    /// The payload elements.
    pub payload: SharedPayload,
}

impl SharedMessage {
    /// A message of `type_` to `to` carrying `payload`.
    pub fn new(to: Jid, type_: xmpp_parsers::message::MessageType, payload: SharedPayload) -> Self {
        SharedMessage {
            to,
            from: None,
            type_,
            payload,
        }
    }
}

impl From<SharedMessage> for Stanza {
    fn from(m: SharedMessage) -> Self {
        Stanza::Shared(m)
    }
}

impl From<Message> for Stanza {
    fn from(m: Message) -> Self {
        Stanza::Message(m)
    }
}

impl From<Presence> for Stanza {
    fn from(p: Presence) -> Self {
        Stanza::Presence(p)
    }
}

impl From<Iq> for Stanza {
    fn from(iq: Iq) -> Self {
        Stanza::Iq(iq)
    }
}

impl From<Element> for Stanza {
    fn from(e: Element) -> Self {
        Stanza::Element(e)
    }
}

impl Stanza {
    /// The `from` attribute as written (`None` when absent or unparsable).
    pub fn from_jid(&self) -> Option<&Jid> {
        match self {
            Stanza::Message(m) => m.from.as_ref(),
            Stanza::Presence(p) => p.from.as_ref(),
            Stanza::Iq(iq) => iq.from(),
            Stanza::Shared(m) => m.from.as_ref(),
            Stanza::Element(_) => None,
        }
    }
}
