//! Incremental parsing of an XMPP stream into a header and whole top-level stanzas.
//!
//! Bytes go in as they arrive from the socket; [`StreamEvent`]s come out. rxml (a real
//! XML 1.0 parser, with namespaces resolved by `namespaces` in constant time per element)
//! produces events, and each top-level element is built
//! straight from those events by its `xso` builder: messages, presences and IQs become
//! `xmpp-parsers` types without an intermediate DOM, anything else a `minidom::Element`.
//! This module tracks depth, enforces the size and depth caps and normalises the stanza
//! namespace so that `jabber:client` and unqualified stanzas look exactly like
//! `jabber:component:accept` ones (`xmpp-parsers` is built with its `component` feature).
//!
//! A stanza over a cap is the sender's problem, not the stream's: its builder is dropped
//! and the rest of it is only counted (no element is built, nothing grows with its depth)
//! until its end tag, and then it is reported as [`StreamEvent::Invalid`] with an
//! [`InvalidCause`] saying which cap it broke. The builders never see more than
//! [`DEFAULT_MAX_DEPTH`] levels, so no recursion on the path to a handler grows with what
//! a sender chose.

use minidom::Element;
use rxml::error::EndOrError;
use rxml::xml_lang::XmlLangStack;
use rxml::{AttrMap, Event, Namespace};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Id, Message, MessageType};
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xso::{FromEventsBuilder, FromXml, FromXmlText};

use crate::namespaces::NsParser;
use crate::stanza::Stanza;

/// Namespace of the stream element itself.
pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
/// Namespace of stanzas on a component stream.
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// Namespace of stanzas on a client stream; treated like [`NS_COMPONENT`].
pub const NS_CLIENT: &str = "jabber:client";

const COMPONENT: Namespace<'static> = Namespace::from_str(NS_COMPONENT);
const CLIENT: Namespace<'static> = Namespace::from_str(NS_CLIENT);

/// The attributes of the peer's `<stream:stream>` header that matter to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// The stream id (the handshake's salt). Absent is legal XML but useless for XEP-0114.
    pub id: Option<String>,
    /// The `from` attribute.
    pub from: Option<String>,
    /// The `to` attribute.
    pub to: Option<String>,
    /// The `version` attribute; XEP-0114 servers often omit it.
    pub version: Option<String>,
}

/// Levels of nesting allowed below a stanza by default (`<message><a><b/></a></message>`
/// has 2). Real payloads (forwarded carbons in MAM results, data forms) stay under 16.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Nesting at which even a stanza being skipped becomes a stream problem: rxml keeps one
/// small entry per open element to check end tags, and this bounds that memory.
const SKIP_DEPTH_LIMIT: usize = 1 << 17;

/// Why a stanza was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidCause {
    /// Well-formed XML, but not a valid stanza (e.g. an IQ get with two payloads).
    Malformed,
    /// Nested deeper than the depth cap allows (levels below the stanza).
    TooDeep(usize),
    /// Larger than the size cap (bytes).
    TooLarge(usize),
}

impl InvalidCause {
    /// Whether the stanza broke a size or depth cap (rather than being malformed).
    pub fn is_over_limit(self) -> bool {
        !matches!(self, InvalidCause::Malformed)
    }
}

/// What is known about a stanza that failed validation, enough to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidStanza {
    /// `message`, `presence` or `iq`.
    pub name: String,
    /// Its `type` attribute.
    pub type_: Option<String>,
    /// Its `id` attribute.
    pub id: Option<String>,
    /// Its `from` attribute, if it is a valid JID.
    pub from: Option<Jid>,
    /// Its `to` attribute, if it is a valid JID.
    pub to: Option<Jid>,
    /// Why it was rejected, in words.
    pub reason: String,
    /// Why it was rejected, for deciding the answer.
    pub cause: InvalidCause,
}

/// One thing the stream produced.
// Stanzas are the common, large case; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum StreamEvent {
    /// The peer's stream header.
    Header(StreamHeader),
    /// A complete top-level element.
    Stanza(Stanza),
    /// A message, presence or IQ that is well-formed XML but not a valid stanza
    /// (e.g. an IQ get with two payloads, or a malformed JID).
    Invalid(InvalidStanza),
    /// The peer closed its stream with `</stream:stream>`.
    End,
}

/// Whether stanzas are built as `xmpp-parsers` types or kept as elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseMode {
    /// Messages, presences and IQs become typed stanzas (what components want).
    Typed,
    /// Everything becomes a `minidom::Element` (what a test server wants).
    Elements,
}

/// Why the byte stream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed (or not namespace-well-formed) XML.
    #[error("{0}")]
    Malformed(String),
    /// The root element is not `<stream:stream>`.
    #[error("the stream root is <{0}>, not <stream:stream>")]
    NotAStream(String),
    /// A stanza being skipped nested so deep that even counting its levels is too much.
    #[error("a top-level element nests more than {0} levels deep")]
    TooDeep(usize),
}

/// The builder of the top-level element in progress (one per connection, so size is moot).
#[allow(clippy::large_enum_variant)]
enum Building {
    Message(
        <Message as FromXml>::Builder,
        Option<Addressing<MessageType>>,
    ),
    Presence(
        <Presence as FromXml>::Builder,
        Option<Addressing<PresenceType>>,
    ),
    Iq(<Iq as FromXml>::Builder),
    Element(<Element as FromXml>::Builder),
    /// A stanza that failed validation: consume its events, then report it.
    Rejected(InvalidStanza),
    /// A stanza over a cap: its events are only counted, then it is reported.
    Skipping(InvalidStanza),
}

/// Push parser for one XMPP stream. Create a new one per connection.
pub struct StreamParser {
    lexer: NsParser,
    mode: ParseMode,
    building: Option<Building>,
    /// What we need to answer the stanza in progress if its builder rejects it.
    header: Option<InvalidStanza>,
    /// Open elements, counting the stream root as 1.
    depth: usize,
    /// The namespace the current stanza arrived in, when it is `jabber:client` or none
    /// (see [`StreamParser::normalise_nested`]).
    stanza_ns: Option<Namespace<'static>>,
    /// Depth of the deepest open element that inherited `stanza_ns` through an unbroken
    /// chain from the stanza (the stanza itself is depth 2).
    inherited: usize,
    /// `xml:lang` in effect inside the current top-level element (the stream root's own
    /// `xml:lang` is not inherited: stanzas read the same as when parsed on their own).
    langs: XmlLangStack,
    /// Bytes consumed since the current top-level element began (or the last one ended).
    element_bytes: usize,
    max_element_bytes: usize,
    /// Levels allowed below a stanza.
    max_depth: usize,
    finished: bool,
}

impl StreamParser {
    /// A parser building typed stanzas, rejecting top-level elements over `max_element_bytes`.
    pub fn new(max_element_bytes: usize) -> Self {
        Self::with_mode(max_element_bytes, ParseMode::Typed)
    }

    /// A parser with an explicit [`ParseMode`] and the default depth cap.
    pub fn with_mode(max_element_bytes: usize, mode: ParseMode) -> Self {
        Self::with_limits(max_element_bytes, DEFAULT_MAX_DEPTH, mode)
    }

    /// A parser skipping stanzas over `max_element_bytes` or nested more than `max_depth`
    /// levels below the stanza.
    pub fn with_limits(max_element_bytes: usize, max_depth: usize, mode: ParseMode) -> Self {
        // One token (an attribute value, a name) may be as long as a whole stanza is
        // allowed to be, so a long attribute is a stanza to skip, not a lexer error
        // that ends the stream; past four times the cap (at most 4 MiB: rxml reserves
        // that much address space per parser) it is a stream problem.
        let options = rxml::parser::Options {
            max_token_length: max_element_bytes.saturating_mul(4).clamp(8192, 4 << 20),
            ..Default::default()
        };
        StreamParser {
            lexer: NsParser::with_options(options),
            mode,
            building: None,
            header: None,
            depth: 0,
            stanza_ns: None,
            inherited: 0,
            langs: XmlLangStack::new(),
            element_bytes: 0,
            max_element_bytes,
            max_depth,
            finished: false,
        }
    }

    /// Feeds `data` (all of it is consumed) and calls `emit` for every completed event.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut emit: impl FnMut(StreamEvent),
    ) -> Result<(), ParseError> {
        // Keep asking until the parser needs more bytes: one read can hold several events,
        // and the last of them may come out after the final byte was consumed.
        while !self.finished {
            let before = data.len();
            let result = self.lexer.parse(&mut data, false);
            self.element_bytes += before - data.len();
            if self.depth >= 2
                && self.element_bytes > self.max_element_bytes
                && !matches!(self.building, Some(Building::Skipping(_)))
            {
                self.skip(InvalidCause::TooLarge(self.max_element_bytes));
            }
            match result {
                Ok(Some(event)) => self.process(event, &mut emit)?,
                Ok(None) => self.finished = true,
                Err(EndOrError::NeedMoreData) => break,
                Err(EndOrError::Error(e)) => return Err(ParseError::Malformed(e.to_string())),
            }
        }
        Ok(())
    }

    fn process(
        &mut self,
        event: Event,
        emit: &mut impl FnMut(StreamEvent),
    ) -> Result<(), ParseError> {
        match (self.depth, event) {
            (_, Event::XmlDeclaration(..)) => {}
            (0, Event::StartElement(_, (ns, name), attrs)) => {
                if name.as_str() != "stream" || ns.as_str() != NS_STREAM {
                    return Err(ParseError::NotAStream(name.to_string()));
                }
                self.depth = 1;
                emit(StreamEvent::Header(stream_header(&attrs)));
            }
            // Whitespace keepalives (and any stray text) between stanzas: never kept.
            (0 | 1, Event::Text(..)) => {}
            (1, Event::EndElement(_)) => {
                self.depth = 0;
                self.finished = true;
                emit(StreamEvent::End);
            }
            (1, Event::StartElement(_, (ns, name), attrs)) => {
                self.element_bytes = 0;
                self.depth = 2;
                self.inherited = 2;
                self.stanza_ns = (ns == CLIENT || ns.is_empty()).then(|| ns.clone());
                let ns = if self.stanza_ns.is_some() {
                    COMPONENT
                } else {
                    ns
                };
                self.start(ns, name, attrs);
            }
            (depth, event) => {
                if let Some(Building::Skipping(_)) = &self.building {
                    return self.count_skipped(event, emit);
                }
                let event = match event {
                    Event::StartElement(m, (ns, name), attrs) => {
                        self.depth += 1;
                        if self.depth - 2 > self.max_depth {
                            self.skip(InvalidCause::TooDeep(self.max_depth));
                            return Ok(());
                        }
                        let ns = self.normalise_nested(ns);
                        Event::StartElement(m, (ns, name), attrs)
                    }
                    Event::EndElement(m) => {
                        if self.inherited == depth {
                            self.inherited = depth - 1;
                        }
                        self.depth = depth.saturating_sub(1);
                        Event::EndElement(m)
                    }
                    other => other,
                };
                if let Some(complete) = self.feed_builder(event) {
                    self.element_bytes = 0;
                    emit(complete);
                }
            }
        }
        Ok(())
    }

    /// Drops the builder of the stanza in progress; the rest of it is only counted.
    fn skip(&mut self, cause: InvalidCause) {
        let reason = match cause {
            InvalidCause::TooDeep(levels) => format!("nested deeper than {levels} levels"),
            InvalidCause::TooLarge(bytes) => format!("larger than {bytes} bytes"),
            InvalidCause::Malformed => "malformed".to_owned(),
        };
        let mut invalid = match self.building.take() {
            Some(Building::Skipping(invalid) | Building::Rejected(invalid)) => invalid,
            Some(Building::Message(_, Some(a))) => addressed("message", a, message_type),
            Some(Building::Presence(_, Some(a))) => addressed("presence", a, presence_type),
            _ => self.rejected(String::new()),
        };
        invalid.reason = reason;
        invalid.cause = cause;
        self.header = None;
        self.building = Some(Building::Skipping(invalid));
    }

    /// Follows a skipped stanza's nesting until its end tag, then reports it.
    fn count_skipped(
        &mut self,
        event: Event,
        emit: &mut impl FnMut(StreamEvent),
    ) -> Result<(), ParseError> {
        match event {
            Event::StartElement(..) => {
                self.depth += 1;
                if self.depth > SKIP_DEPTH_LIMIT {
                    return Err(ParseError::TooDeep(SKIP_DEPTH_LIMIT));
                }
            }
            Event::EndElement(_) => {
                self.depth -= 1;
                if self.depth == 1 {
                    self.element_bytes = 0;
                    if let Some(Building::Skipping(invalid)) = self.building.take() {
                        emit(StreamEvent::Invalid(invalid));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Moves an element that inherited the stanza's `jabber:client` (or empty) namespace
    /// through an unbroken chain of such elements (`<body>`, `<error>`...) into
    /// `jabber:component:accept`. Anything below an element in another namespace keeps
    /// its own: a `<message xmlns='jabber:client'>` forwarded inside a carbon or a MAM
    /// result stays exactly as it was. Called with `depth` already at the new element.
    fn normalise_nested(&mut self, ns: Namespace<'static>) -> Namespace<'static> {
        match &self.stanza_ns {
            Some(stanza_ns) if self.inherited + 1 == self.depth && ns == *stanza_ns => {
                self.inherited = self.depth;
                COMPONENT
            }
            _ => ns,
        }
    }

    /// Chooses the builder for a new top-level element.
    fn start(&mut self, ns: Namespace<'static>, name: rxml::NcName, attrs: AttrMap) {
        self.langs = XmlLangStack::new();
        self.langs.push_from_attrs(&attrs);
        let ctx = xso::Context::empty().with_language(self.langs.current());
        let stanza = ns == COMPONENT && matches!(name.as_str(), "message" | "presence" | "iq");
        let kind = match (self.mode, name.as_str()) {
            (ParseMode::Typed, "message") if stanza => "message",
            (ParseMode::Typed, "presence") if stanza => "presence",
            (ParseMode::Typed, "iq") if stanza => "iq",
            _ => "",
        };
        // What answering an invalid or skipped stanza needs. Typed messages and presences
        // with only the four addressing attributes keep them in their `Addressing`.
        let addressed = matches!(kind, "message" | "presence") && Addressing::<()>::plain(&attrs);
        if stanza && !addressed {
            self.header = Some(InvalidStanza {
                name: name.to_string(),
                type_: attr(&attrs, "type"),
                id: attr(&attrs, "id"),
                from: attr(&attrs, "from").and_then(|f| Jid::new(&f).ok()),
                to: attr(&attrs, "to").and_then(|t| Jid::new(&t).ok()),
                reason: String::new(),
                cause: InvalidCause::Malformed,
            });
        } else if !kind.is_empty() {
            self.header = Some(InvalidStanza {
                name: kind.to_owned(),
                type_: None,
                id: None,
                from: None,
                to: None,
                reason: String::new(),
                cause: InvalidCause::Malformed,
            });
        }
        let qname = (ns, name);
        let started = match kind {
            "message" => Addressing::take(attrs).and_then(|(addressing, attrs)| {
                let builder = Message::from_events(qname, attrs, &ctx).map_err(invalid)?;
                Ok(Building::Message(builder, addressing))
            }),
            "presence" => Addressing::take(attrs).and_then(|(addressing, attrs)| {
                let builder = Presence::from_events(qname, attrs, &ctx).map_err(invalid)?;
                Ok(Building::Presence(builder, addressing))
            }),
            "iq" => Iq::from_events(qname, attrs, &ctx)
                .map(Building::Iq)
                .map_err(invalid),
            _ => Element::from_events(qname, attrs, &ctx)
                .map(Building::Element)
                .map_err(invalid),
        };
        self.building = Some(match started {
            Ok(building) => building,
            Err(reason) => Building::Rejected(self.rejected(reason)),
        });
    }

    /// Feeds one event inside a top-level element; returns the stanza once it is complete.
    fn feed_builder(&mut self, event: Event) -> Option<StreamEvent> {
        self.langs.handle_event(&event);
        let ctx = xso::Context::empty().with_language(self.langs.current());
        let complete = self.depth == 1;
        let result = match self.building.as_mut()? {
            Building::Message(b, addressing) => b.feed(event, &ctx).map(|o| {
                o.map(|mut m| {
                    if let Some(a) = addressing.take() {
                        (m.from, m.to, m.id, m.type_) = (a.from, a.to, a.id.map(Id), a.type_);
                    }
                    Stanza::Message(m)
                })
            }),
            Building::Presence(b, addressing) => b.feed(event, &ctx).map(|o| {
                o.map(|mut p| {
                    if let Some(a) = addressing.take() {
                        (p.from, p.to, p.id, p.type_) = (a.from, a.to, a.id, a.type_);
                    }
                    Stanza::Presence(p)
                })
            }),
            Building::Iq(b) => b.feed(event, &ctx).map(|o| o.map(Stanza::Iq)),
            Building::Element(b) => b.feed(event, &ctx).map(|o| o.map(Stanza::Element)),
            Building::Rejected(_) | Building::Skipping(_) => Ok(None),
        };
        match result {
            Ok(Some(stanza)) => {
                self.building = None;
                self.header = None;
                Some(StreamEvent::Stanza(stanza))
            }
            Ok(None) if complete => match self.building.take() {
                Some(Building::Rejected(invalid)) => Some(StreamEvent::Invalid(invalid)),
                _ => None,
            },
            Ok(None) => None,
            Err(error) => {
                let invalid = self.rejected(error.to_string());
                if complete {
                    self.building = None;
                    Some(StreamEvent::Invalid(invalid))
                } else {
                    self.building = Some(Building::Rejected(invalid));
                    None
                }
            }
        }
    }

    fn rejected(&mut self, reason: String) -> InvalidStanza {
        let mut invalid = self.header.take().unwrap_or_else(|| InvalidStanza {
            name: String::new(),
            type_: None,
            id: None,
            from: None,
            to: None,
            reason: String::new(),
            cause: InvalidCause::Malformed,
        });
        invalid.reason = reason;
        invalid
    }
}

/// What a skipped message or presence carried in its addressing attributes.
fn addressed<T>(
    name: &str,
    addressing: Addressing<T>,
    type_text: fn(&T) -> Option<&'static str>,
) -> InvalidStanza {
    InvalidStanza {
        name: name.to_owned(),
        type_: type_text(&addressing.type_).map(str::to_owned),
        id: addressing.id,
        from: addressing.from,
        to: addressing.to,
        reason: String::new(),
        cause: InvalidCause::Malformed,
    }
}

fn message_type(type_: &MessageType) -> Option<&'static str> {
    Some(match type_ {
        MessageType::Chat => "chat",
        MessageType::Error => "error",
        MessageType::Groupchat => "groupchat",
        MessageType::Headline => "headline",
        MessageType::Normal => "normal",
    })
}

fn presence_type(type_: &PresenceType) -> Option<&'static str> {
    Some(match type_ {
        PresenceType::None => return None,
        PresenceType::Error => "error",
        PresenceType::Probe => "probe",
        PresenceType::Subscribe => "subscribe",
        PresenceType::Subscribed => "subscribed",
        PresenceType::Unavailable => "unavailable",
        PresenceType::Unsubscribe => "unsubscribe",
        PresenceType::Unsubscribed => "unsubscribed",
    })
}

/// Why xso refused to start building an element, as text for [`InvalidStanza::reason`].
fn invalid(error: xso::error::FromEventsError) -> String {
    error.to_string()
}

/// `from`, `to`, `id` and `type` of a message or presence, read in one pass over the
/// attributes and parsed exactly as xso would parse them. xso takes attributes out of the
/// map one name at a time, which costs more than building the rest of a small message;
/// given the values already taken, its builder starts from an empty map, and the values
/// are put into the finished stanza.
struct Addressing<T> {
    from: Option<Jid>,
    to: Option<Jid>,
    id: Option<String>,
    type_: T,
}

impl Addressing<()> {
    /// Whether `attrs` holds nothing but `from`, `to`, `id` and `type`.
    fn plain(attrs: &AttrMap) -> bool {
        attrs.iter().all(|((ns, name), _)| {
            ns.is_empty() && matches!(name.as_str(), "from" | "to" | "id" | "type")
        })
    }
}

impl<T: FromXmlText + Default> Addressing<T> {
    /// Takes the four attributes out of `attrs`. When `attrs` holds anything else
    /// (`xml:lang`, an unknown attribute) it is returned whole, for xso to judge.
    fn take(attrs: AttrMap) -> Result<(Option<Self>, AttrMap), String> {
        if !Addressing::<()>::plain(&attrs) {
            return Ok((None, attrs));
        }
        let mut taken = Addressing {
            from: None,
            to: None,
            id: None,
            type_: T::default(),
        };
        let jid = |value| Jid::from_xml_text(value).map_err(|e| e.to_string());
        for ((_, name), value) in attrs {
            match name.as_str() {
                "from" => taken.from = Some(jid(value)?),
                "to" => taken.to = Some(jid(value)?),
                "id" => taken.id = Some(value),
                _ => taken.type_ = T::from_xml_text(value).map_err(|e| e.to_string())?,
            }
        }
        Ok((Some(taken), AttrMap::new()))
    }
}

fn attr(attrs: &AttrMap, name: &str) -> Option<String> {
    attrs.get(&Namespace::NONE, name).cloned()
}

fn stream_header(attrs: &AttrMap) -> StreamHeader {
    StreamHeader {
        id: attr(attrs, "id").filter(|id| !id.is_empty()),
        from: attr(attrs, "from"),
        to: attr(attrs, "to"),
        version: attr(attrs, "version"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='echo.localhost'>";

    fn parse_all(chunks: &[&str], limit: usize) -> (Vec<StreamEvent>, Result<(), ParseError>) {
        let mut parser = StreamParser::with_mode(limit, ParseMode::Elements);
        let mut events = Vec::new();
        for chunk in chunks {
            if let Err(e) = parser.feed(chunk.as_bytes(), |ev| events.push(ev)) {
                return (events, Err(e));
            }
        }
        (events, Ok(()))
    }

    #[test]
    fn header_with_id_and_without_version() {
        let (events, result) = parse_all(&[HEADER], 1024);
        assert_eq!(result, Ok(()));
        match &events[..] {
            [StreamEvent::Header(h)] => {
                assert_eq!(h.id.as_deref(), Some("abc"));
                assert_eq!(h.from.as_deref(), Some("echo.localhost"));
                assert_eq!(h.version, None);
            }
            other => panic!("unexpected events {other:?}"),
        }
    }

    #[test]
    fn header_with_version_and_without_id() {
        let (events, _) = parse_all(
            &["<stream:stream xmlns='jabber:component:accept' \
               xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id=''>"],
            1024,
        );
        match &events[..] {
            [StreamEvent::Header(h)] => {
                assert_eq!(h.id, None, "an empty id counts as missing");
                assert_eq!(h.version.as_deref(), Some("1.0"));
            }
            other => panic!("unexpected events {other:?}"),
        }
    }

    #[test]
    fn stanzas_split_across_chunks_and_keepalives_ignored() {
        let (events, result) = parse_all(
            &[
                HEADER,
                " \n<message to='a@b' id='1'><bo",
                "dy>hé</body></message>   <presence/>",
                "\t</stream:stream>",
            ],
            1024,
        );
        assert_eq!(result, Ok(()));
        assert_eq!(events.len(), 4);
        let StreamEvent::Stanza(Stanza::Element(message)) = &events[1] else {
            panic!("expected a message, got {:?}", events[1]);
        };
        assert_eq!(message.name(), "message");
        assert_eq!(message.ns(), NS_COMPONENT);
        let body = message.get_child("body", NS_COMPONENT).map(|b| b.text());
        assert_eq!(body.as_deref(), Some("hé"));
        assert!(
            matches!(&events[2], StreamEvent::Stanza(Stanza::Element(p)) if p.name() == "presence")
        );
        assert!(matches!(events[3], StreamEvent::End));
    }

    #[test]
    fn client_and_unqualified_namespaces_are_normalised_but_payloads_kept() {
        let (events, _) = parse_all(
            &[
                HEADER,
                "<message xmlns='jabber:client'><body>x</body></message>\
                 <iq xmlns='' type='get' id='q'><query xmlns='urn:x'/></iq>",
            ],
            1024,
        );
        let elements: Vec<&Element> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Stanza(Stanza::Element(el)) => Some(el),
                _ => None,
            })
            .collect();
        assert_eq!(elements.len(), 2);
        assert_eq!(elements[0].ns(), NS_COMPONENT);
        assert!(elements[0].get_child("body", NS_COMPONENT).is_some());
        assert_eq!(elements[1].ns(), NS_COMPONENT);
        assert!(elements[1].get_child("query", "urn:x").is_some());
    }

    #[test]
    fn forwarded_client_stanzas_keep_their_namespace() {
        let (events, _) = parse_all(
            &[
                HEADER,
                "<message xmlns='jabber:client' from='a@b'><body>outer</body>\
                 <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
                 <message xmlns='jabber:client' from='c@d'><body>inner</body></message>\
                 </forwarded></received></message>",
            ],
            4096,
        );
        let StreamEvent::Stanza(Stanza::Element(outer)) = &events[1] else {
            panic!("expected the message, got {events:?}");
        };
        assert_eq!(outer.ns(), NS_COMPONENT);
        assert!(
            outer.has_child("body", NS_COMPONENT),
            "stanza child normalised"
        );
        let inner = outer
            .get_child("received", "urn:xmpp:carbons:2")
            .and_then(|r| r.get_child("forwarded", "urn:xmpp:forward:0"))
            .and_then(|f| f.get_child("message", NS_CLIENT))
            .expect("the forwarded message keeps jabber:client");
        assert!(inner.has_child("body", NS_CLIENT), "{inner:?}");
    }

    /// The stanzas of `events` after the header, as (name, id) or ("invalid", cause).
    fn summary(events: &[StreamEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Stanza(Stanza::Element(el)) => {
                    Some(format!("{}:{}", el.name(), el.attr("id").unwrap_or("")))
                }
                StreamEvent::Stanza(Stanza::Message(m)) => {
                    Some(format!("message:{}", m.id.as_ref().map_or("", |id| &id.0)))
                }
                StreamEvent::Invalid(i) => Some(format!(
                    "{}:{}:{:?}:{:?}",
                    i.name,
                    i.id.as_deref().unwrap_or(""),
                    i.cause,
                    i.from.as_ref().map(|f| f.to_string())
                )),
                _ => None,
            })
            .collect()
    }

    fn nested(levels: usize) -> String {
        format!("{}{}", "<a>".repeat(levels), "</a>".repeat(levels))
    }

    #[test]
    fn oversized_stanza_is_skipped_and_the_stream_goes_on() {
        let big = format!(
            "<message from='a@b/c' id='big'><body>{}</body></message>",
            "a".repeat(5000)
        );
        let (events, result) = parse_all(&[HEADER, &big, "<message id='next'/>"], 1024);
        assert_eq!(result, Ok(()));
        assert_eq!(
            summary(&events),
            ["message:big:TooLarge(1024):Some(\"a@b/c\")", "message:next"]
        );
    }

    #[test]
    fn over_deep_stanzas_are_skipped_whatever_their_kind() {
        let deep = nested(65);
        let ok = nested(63);
        let stream = [
            HEADER.to_owned(),
            format!("<message id='m1' from='a@b/c'><x xmlns='urn:x'>{deep}</x></message>"),
            format!(
                "<iq type='get' id='q1' from='a@b/c' to='e.l'><q xmlns='urn:q'>{deep}</q></iq>"
            ),
            format!("<presence from='a@b/c' xml:lang='en'>{deep}</presence>"),
            format!("<message id='fine'><x xmlns='urn:x'>{ok}</x></message>"),
        ];
        let chunks: Vec<&str> = stream.iter().map(String::as_str).collect();
        for mode in [ParseMode::Typed, ParseMode::Elements] {
            let mut parser = StreamParser::with_limits(1 << 20, 64, mode);
            let mut events = Vec::new();
            for chunk in &chunks {
                parser
                    .feed(chunk.as_bytes(), |e| events.push(e))
                    .expect("no stream error");
            }
            let summary = summary(&events);
            assert_eq!(summary.len(), 4, "{summary:?}");
            assert!(
                summary[0].starts_with("message:m1:TooDeep(64)"),
                "{summary:?}"
            );
            assert!(summary[2].contains("TooDeep(64)"), "{summary:?}");
            assert_eq!(summary[3], "message:fine", "{mode:?}");
            if mode == ParseMode::Typed {
                assert_eq!(summary[1], "iq:q1:TooDeep(64):Some(\"a@b/c\")");
                assert_eq!(summary[2], "presence::TooDeep(64):Some(\"a@b/c\")");
            }
        }
    }

    /// The depth found to abort `xmpp-echo` with a stack overflow before the cap: it must
    /// now be skipped, in time linear in its size (the builders never see the depth).
    #[test]
    fn thirty_thousand_levels_are_skipped_quickly() {
        let deep = nested(30_000);
        let xml = format!(
            "<message from='a@b/c' id='d'><body>x</body>{deep}</message><message id='after'/>"
        );
        let started = std::time::Instant::now();
        let mut parser = StreamParser::new(1 << 20);
        let mut events = Vec::new();
        parser
            .feed(HEADER.as_bytes(), |e| events.push(e))
            .expect("header");
        for chunk in xml.as_bytes().chunks(4096) {
            parser
                .feed(chunk, |e| events.push(e))
                .expect("no stream error");
        }
        let elapsed = started.elapsed();
        let summary = summary(&events);
        assert_eq!(
            summary,
            ["message:d:TooDeep(64):Some(\"a@b/c\")", "message:after"]
        );
        // Unoptimised test builds take a few ms; the quadratic builders took 13 s at 20,000.
        assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
    }

    #[test]
    fn nesting_past_the_skip_limit_is_a_stream_problem() {
        let open = "<a>".repeat(SKIP_DEPTH_LIMIT + 1);
        let (_, result) = parse_all(&[HEADER, "<message>", &open], 1 << 30);
        assert_eq!(result, Err(ParseError::TooDeep(SKIP_DEPTH_LIMIT)));
    }

    #[test]
    fn long_attribute_values_are_stanza_problems_not_lexer_errors() {
        // rxml's default token limit (8 KiB) made this end the stream.
        let long = "v".repeat(20_000);
        let stanzas = format!(
            "<message id='long' from='a@b/c'><x xmlns='urn:x' a='{long}'/></message>\
             <message id='huge' from='a@b/c'><x xmlns='urn:x' a='{long}{long}'/></message>\
             <message id='next'/>"
        );
        let (events, result) = parse_all(&[HEADER, &stanzas], 32 * 1024);
        assert_eq!(result, Ok(()));
        assert_eq!(
            summary(&events),
            [
                "message:long",
                "message:huge:TooLarge(32768):Some(\"a@b/c\")",
                "message:next"
            ]
        );
    }

    #[test]
    fn many_small_stanzas_do_not_add_up_to_the_limit() {
        let mut chunks = vec![HEADER.to_owned()];
        for i in 0..100 {
            chunks.push(format!(
                "<message id='{i}'><body>0123456789</body></message> "
            ));
        }
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let (events, result) = parse_all(&refs, 200);
        assert_eq!(result, Ok(()));
        assert_eq!(events.len(), 101);
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        for bad in [
            "<message><body>x</bodyy></message>",
            "<message a='1' a='2'/>",
            "<unbound:prefix/>",
            "<message>&unknown;</message>",
            "\u{0}",
        ] {
            let (_, result) = parse_all(&[HEADER, bad], 1024);
            assert!(
                matches!(result, Err(ParseError::Malformed(_))),
                "{bad:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn wrong_root_is_rejected() {
        let (_, result) = parse_all(&["<html xmlns='x'>"], 1024);
        assert_eq!(result, Err(ParseError::NotAStream("html".into())));
    }
}

#[cfg(test)]
mod completeness_tests {
    use super::*;

    #[test]
    fn an_element_is_emitted_as_soon_as_its_last_byte_arrives() {
        let mut parser = StreamParser::with_mode(1024, ParseMode::Elements);
        let mut events = Vec::new();
        parser
            .feed(tests_header().as_bytes(), |e| events.push(e))
            .expect("header");
        parser
            .feed(b"<handshake/>", |e| events.push(e))
            .expect("handshake");
        assert_eq!(events.len(), 2, "{events:?}");
        parser
            .feed(b"<message><body>x</body></message>", |e| events.push(e))
            .expect("message");
        assert_eq!(events.len(), 3, "{events:?}");
    }

    fn tests_header() -> &'static str {
        "<stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' id='abc'>"
    }
}

#[cfg(test)]
mod equivalence_tests {
    //! The stream parser's typed stanzas must be exactly what xmpp-parsers builds from the
    //! same element on its own, valid or not, whatever shortcuts the parser takes.
    use super::*;

    const HEADER: &str = "<stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc'>";

    fn through_stream(xml: &str) -> StreamEvent {
        let mut parser = StreamParser::new(1 << 16);
        let mut events = Vec::new();
        parser
            .feed(format!("{HEADER}{xml}").as_bytes(), |e| events.push(e))
            .expect("well-formed");
        assert_eq!(events.len(), 2, "{xml}: {events:?}");
        events.pop().expect("the stanza")
    }

    fn standalone(xml: &str) -> Element {
        let (name, rest) = xml[1..].split_once(' ').expect("attributes");
        let xml = format!("<{name} xmlns='jabber:component:accept' {rest}");
        xml.parse().unwrap_or_else(|e| panic!("{xml}: {e}"))
    }

    const MESSAGES: &[&str] = &[
        "<message from='a@b/c' to='echo.localhost' id='1' type='chat'><body>hi</body></message>",
        "<message to='echo.localhost'><body xml:lang='en'>hi</body><body xml:lang='de'>hallo</body></message>",
        "<message xml:lang='fr' to='e.l'><body>salut</body><subject xml:lang='en'>s</subject></message>",
        "<message to='e.l' type='headline'><thread parent='p'>t</thread><x xmlns='urn:x'/></message>",
        "<message to='e.l' id=''><body/></message>",
        "<message from='not a jid@@' to='e.l'><body>x</body></message>",
        "<message to='@e.l'><body>x</body></message>",
        "<message to='e.l' type='bogus'><body>x</body></message>",
        "<message to='e.l' foo='bar'><body>x</body></message>",
        "<message to='e.l' xmlns:q='urn:q' q:attr='1'><body>x</body></message>",
        "<message to='e.l'><body>a</body><body>b</body></message>",
        "<message to='e.l'><body>a<b/></body></message>",
        "<message to='e.l'><thread>1</thread><thread>2</thread></message>",
    ];

    const PRESENCES: &[&str] = &[
        "<presence from='a@b/c' to='e.l'/>",
        "<presence from='a@b/c' to='e.l' type='subscribe' id='s1'/>",
        "<presence to='e.l' type='unavailable'><status>bye</status></presence>",
        "<presence to='e.l'><show>away</show><priority>5</priority><c xmlns='urn:caps'/></presence>",
        "<presence to='e.l' type='invalid-type'/>",
        "<presence to='e.l' from='x@@y'/>",
        "<presence to='e.l' xml:lang='en'><status>hi</status></presence>",
        "<presence to='e.l' extra='1'/>",
        "<presence to='e.l'><show>sleeping</show></presence>",
    ];

    /// Parses each of `corpus` both ways; both must accept it with equal results, or
    /// both refuse it.
    fn assert_same_as_xmpp_parsers<T>(corpus: &[&str], typed: fn(Stanza) -> Option<T>)
    where
        T: TryFrom<Element, Error = xso::error::FromElementError> + PartialEq + std::fmt::Debug,
    {
        for xml in corpus {
            let expected = T::try_from(standalone(xml));
            match (through_stream(xml), expected) {
                (StreamEvent::Stanza(stanza), Ok(want)) => {
                    assert_eq!(typed(stanza), Some(want), "{xml}")
                }
                (StreamEvent::Invalid(_), Err(_)) => {}
                (got, want) => panic!("{xml}: stream gave {got:?}, xmpp-parsers {want:?}"),
            }
        }
    }

    #[test]
    fn messages_match_xmpp_parsers() {
        assert_same_as_xmpp_parsers(MESSAGES, |s| match s {
            Stanza::Message(m) => Some(m),
            _ => None,
        });
    }

    #[test]
    fn presences_match_xmpp_parsers() {
        assert_same_as_xmpp_parsers(PRESENCES, |s| match s {
            Stanza::Presence(p) => Some(p),
            _ => None,
        });
    }
}

#[cfg(test)]
pub(crate) mod robustness_tests {
    //! Whatever bytes the server sends, the parser returns events or an error: never a
    //! panic. Random mutations of a realistic stream, fed in random chunk sizes
    //! (`FUZZ_ROUNDS=200000 cargo test --release -p xmpp-component robustness` for a
    //! longer run; 200,000 rounds found nothing).
    use super::*;
    use rand::{Rng, SeedableRng};

    pub(crate) const STREAM: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='e.l'>\
        <handshake/> \
        <message xmlns='jabber:client' from='a@b/c' to='e.l' id='1' type='chat' xml:lang='en'>\
        <body>hi &amp; bye</body><body xml:lang='de'>hallo</body><thread parent='p'>t</thread>\
        <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
        <message xmlns='jabber:client' from='x@y'><body>inner</body></message></forwarded>\
        </received></message>\
        <presence from='a@b/c' to='e.l'><show>away</show><status>s</status><priority>1</priority>\
        <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>\
        <iq type='get' id='q' from='a@b/c' to='e.l'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>\
        <iq type='set' id='r' from='a@b/c' to='e.l'><query xmlns='jabber:iq:register'>\
        <x xmlns='jabber:x:data' type='submit'><field var='a'><value>1</value></field></x></query></iq>\
        <stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>\
        </stream:stream>";

    pub(crate) fn mutate(rng: &mut rand::rngs::StdRng, bytes: &mut Vec<u8>) {
        const INTERESTING: &[&[u8]] = &[
            b"<",
            b">",
            b"/",
            b"'",
            b"\"",
            b"&",
            b"=",
            b":",
            b"xmlns",
            b"xml:lang='x'",
            b"</message>",
            b"<body>",
            b"\0",
            b"\xff",
            b"\xc3",
            b"]]>",
            b"<!--",
            b"<?",
            b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
        ];
        for _ in 0..rng.gen_range(1..6) {
            let at = rng.gen_range(0..=bytes.len());
            match rng.gen_range(0..4) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 if at < bytes.len() => bytes[at] = rng.r#gen(),
                2 => {
                    let piece = INTERESTING[rng.gen_range(0..INTERESTING.len())];
                    bytes.splice(at..at, piece.iter().copied());
                }
                _ => {
                    let end = (at + rng.gen_range(0..40)).min(bytes.len());
                    let copy = bytes[at..end].to_vec();
                    bytes.splice(at..at, copy);
                }
            }
        }
    }

    #[test]
    fn mutated_streams_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut outcomes = [0usize; 2];
        let rounds = std::env::var("FUZZ_ROUNDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(3000);
        for _ in 0..rounds {
            let mut bytes = STREAM.as_bytes().to_vec();
            mutate(&mut rng, &mut bytes);
            for mode in [ParseMode::Typed, ParseMode::Elements] {
                let mut parser = StreamParser::with_mode(4096, mode);
                let mut rest = &bytes[..];
                let mut result = Ok(());
                while !rest.is_empty() && result.is_ok() {
                    let (chunk, tail) = rest.split_at(rng.gen_range(1..=rest.len().min(64)));
                    result = parser.feed(chunk, |_| {});
                    rest = tail;
                }
                outcomes[usize::from(result.is_err())] += 1;
            }
        }
        // Both paths were exercised: some mutations still parse, many do not.
        eprintln!("parsed {} / refused {}", outcomes[0], outcomes[1]);
        assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
    }
}
