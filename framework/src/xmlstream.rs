//! Incremental parsing of an XMPP stream into a header and whole top-level elements.
//!
//! Bytes go in as they arrive from the socket; [`StreamEvent`]s come out. The lexing is
//! rxml's (a real, restricted XML 1.0 parser) and the tree building minidom's; this module
//! only tracks depth, cuts the stream into stanzas, enforces the size cap and normalises
//! the stanza namespace so that `jabber:client` and unqualified stanzas look exactly like
//! `jabber:component:accept` ones to `xmpp-parsers` (built with its `component` feature).

use minidom::Element;
use minidom::tree_builder::TreeBuilder;
use rxml::error::EndOrError;
use rxml::parser::RawQName;
use rxml::{Parse, RawEvent, RawParser};

/// Namespace of the stream element itself.
pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
/// Namespace of stanzas on a component stream.
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// Namespace of stanzas on a client stream; treated like [`NS_COMPONENT`].
pub const NS_CLIENT: &str = "jabber:client";

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

/// One thing the stream produced.
#[derive(Debug)]
pub enum StreamEvent {
    /// The peer's stream header.
    Header(StreamHeader),
    /// A complete top-level element (stanza, handshake, stream error...).
    Element(Element),
    /// The peer closed its stream with `</stream:stream>`.
    End,
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
    /// A top-level element grew beyond the limit.
    #[error("a top-level element exceeds {0} bytes")]
    TooLarge(usize),
}

/// Push parser for one XMPP stream. Create a new one per connection.
pub struct StreamParser {
    lexer: RawParser,
    tree: TreeBuilder,
    /// Open elements, counting the stream root as 1.
    depth: usize,
    /// Bytes consumed since the current top-level element began (or since the last one ended).
    element_bytes: usize,
    max_element_bytes: usize,
    finished: bool,
    /// Attribute names of the element head being parsed (the raw lexer does not reject
    /// duplicates, and minidom would silently keep the last one).
    head_attributes: Vec<RawQName>,
}

impl StreamParser {
    /// A parser that rejects top-level elements larger than `max_element_bytes`.
    pub fn new(max_element_bytes: usize) -> Self {
        StreamParser {
            lexer: RawParser::new(),
            tree: TreeBuilder::new(),
            depth: 0,
            element_bytes: 0,
            max_element_bytes,
            finished: false,
            head_attributes: Vec::new(),
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
            if self.depth >= 2 && self.element_bytes > self.max_element_bytes {
                return Err(ParseError::TooLarge(self.max_element_bytes));
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
        event: RawEvent,
        emit: &mut impl FnMut(StreamEvent),
    ) -> Result<(), ParseError> {
        let event = match event {
            RawEvent::XmlDeclaration(..) => return Ok(()),
            // Whitespace keepalives (and any stray text) between stanzas: never kept.
            RawEvent::Text(..) if self.depth <= 1 => return Ok(()),
            RawEvent::ElementHeadOpen(..) if self.depth == 1 => {
                self.element_bytes = 0;
                event
            }
            RawEvent::Attribute(metrics, (None, name), value)
                if name.as_str() == "xmlns" && self.depth >= 1 =>
            {
                let value = normalise_stanza_namespace(value.as_str(), self.depth);
                RawEvent::Attribute(metrics, (None, name), value)
            }
            other => other,
        };
        match &event {
            RawEvent::ElementHeadOpen(..) => self.head_attributes.clear(),
            RawEvent::Attribute(_, name, _) => {
                if self.head_attributes.contains(name) {
                    return Err(ParseError::Malformed(format!(
                        "duplicate attribute {:?}",
                        name.1.as_str()
                    )));
                }
                self.head_attributes.push(name.clone());
            }
            _ => {}
        }
        let closes_root_head = matches!(event, RawEvent::ElementHeadClose(_)) && self.depth == 0;
        let is_foot = matches!(event, RawEvent::ElementFoot(_));
        let opens = matches!(event, RawEvent::ElementHeadClose(_));
        self.tree
            .process_event(event)
            .map_err(|e| ParseError::Malformed(e.to_string()))?;
        if opens {
            self.depth += 1;
        }
        if closes_root_head {
            emit(StreamEvent::Header(self.root_header()?));
        }
        if is_foot {
            self.depth = self.depth.saturating_sub(1);
            match self.depth {
                0 => {
                    self.finished = true;
                    emit(StreamEvent::End);
                }
                1 => {
                    self.element_bytes = 0;
                    if let Some(element) = self.tree.unshift_child() {
                        emit(StreamEvent::Element(element));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn root_header(&mut self) -> Result<StreamHeader, ParseError> {
        let Some(root) = self.tree.top() else {
            return Err(ParseError::Malformed("no root element".into()));
        };
        if root.name() != "stream" || root.ns() != NS_STREAM {
            return Err(ParseError::NotAStream(root.name().to_owned()));
        }
        let attr = |name: &str| root.attr(name).map(str::to_owned);
        Ok(StreamHeader {
            id: attr("id").filter(|id| !id.is_empty()),
            from: attr("from"),
            to: attr("to"),
            version: attr("version"),
        })
    }
}

/// Maps `jabber:client` anywhere, and an empty default namespace on a stanza itself,
/// to `jabber:component:accept`.
fn normalise_stanza_namespace(value: &str, depth: usize) -> String {
    if value == NS_CLIENT || (depth == 1 && value.is_empty()) {
        NS_COMPONENT.to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='echo.localhost'>";

    fn parse_all(chunks: &[&str], limit: usize) -> (Vec<StreamEvent>, Result<(), ParseError>) {
        let mut parser = StreamParser::new(limit);
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
        let StreamEvent::Element(message) = &events[1] else {
            panic!("expected a message, got {:?}", events[1]);
        };
        assert_eq!(message.name(), "message");
        assert_eq!(message.ns(), NS_COMPONENT);
        let body = message.get_child("body", NS_COMPONENT).map(|b| b.text());
        assert_eq!(body.as_deref(), Some("hé"));
        assert!(matches!(&events[2], StreamEvent::Element(p) if p.name() == "presence"));
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
                StreamEvent::Element(el) => Some(el),
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
    fn oversized_stanza_is_rejected() {
        let big = format!("<message><body>{}</body></message>", "a".repeat(5000));
        let (_, result) = parse_all(&[HEADER, &big], 1024);
        assert_eq!(result, Err(ParseError::TooLarge(1024)));
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
        let mut parser = StreamParser::new(1024);
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
