//! XML namespace resolution in constant time per element, over rxml's `RawParser`.
//!
//! rxml's own resolver looks a prefix (or the default namespace) up by walking every open
//! element from the innermost outwards, so a stanza nested N deep costs O(N²): 30,000
//! levels of `<a>` took 10 s of CPU before a single builder ran. rxml's `RawParser` still
//! does all of XML 1.0 (well-formedness, names, end tags, references, the reserved
//! `xml`/`xmlns` rules); this module only replaces the resolution step, keeping the
//! innermost binding of each prefix on top of a per-prefix stack and the default
//! namespace of each open element in a stack of its own. It produces exactly the events
//! `rxml::Parser` produces, so the `xso` builders see no difference.

use std::collections::HashMap;

use rxml::error::EndOrError;
use rxml::parser::{EventMetrics, RawEvent, RawParser, RawQName};
use rxml::{AttrMap, Context, Event, Namespace, NcName, Parse, WithOptions};

/// A namespace-resolving XML parser: `RawParser` plus a constant-time resolver.
pub(crate) struct NsParser {
    raw: RawParser,
    context: Context,
    /// The default namespace in effect inside each open element, innermost last.
    defaults: Vec<Namespace<'static>>,
    /// For each prefix in scope, its bindings, innermost last.
    prefixes: HashMap<NcName, Vec<Namespace<'static>>>,
    /// Prefixes declared by the open elements, in order, with `declared_counts` saying
    /// how many belong to each open element.
    declared: Vec<NcName>,
    declared_counts: Vec<usize>,
    /// The element head being read.
    head: Option<Head>,
    /// The head's `xmlns:prefix` declarations and other attributes, reused across elements.
    declarations: Vec<(NcName, Namespace<'static>)>,
    attributes: Vec<(RawQName, String)>,
    /// Bytes of the event being assembled.
    length: usize,
    /// A resolution error is final, as in rxml.
    poisoned: Option<rxml::Error>,
}

/// An element's start tag as it arrives (its attributes go to the parser's buffers).
struct Head {
    name: RawQName,
    default: Option<Namespace<'static>>,
}

impl NsParser {
    /// A parser with `options` (the token length limit).
    pub(crate) fn with_options(options: rxml::parser::Options) -> Self {
        NsParser {
            raw: RawParser::with_options(options),
            context: Context::new(),
            defaults: Vec::new(),
            prefixes: HashMap::new(),
            declared: Vec::new(),
            declared_counts: Vec::new(),
            head: None,
            declarations: Vec::new(),
            attributes: Vec::new(),
            length: 0,
            poisoned: None,
        }
    }

    /// Like [`rxml::Parser`]'s `parse`: the next event, `Ok(None)` at the end of the
    /// document, or `EndOrError::NeedMoreData`.
    pub(crate) fn parse(
        &mut self,
        data: &mut &[u8],
        at_eof: bool,
    ) -> Result<Option<Event>, EndOrError> {
        if let Some(error) = self.poisoned {
            return Err(EndOrError::Error(error));
        }
        loop {
            let Some(raw) = self.raw.parse(data, at_eof)? else {
                return Ok(None);
            };
            self.length += raw.metrics().len();
            match self.resolve(raw) {
                Ok(Some(event)) => {
                    self.length = 0;
                    return Ok(Some(event));
                }
                Ok(None) => {}
                Err(error) => {
                    self.poisoned = Some(error);
                    return Err(EndOrError::Error(error));
                }
            }
        }
    }

    fn resolve(&mut self, raw: RawEvent) -> Result<Option<Event>, rxml::Error> {
        Ok(Some(match raw {
            RawEvent::XmlDeclaration(_, version) => {
                Event::XmlDeclaration(EventMetrics::new(self.length), version)
            }
            RawEvent::ElementHeadOpen(_, name) => {
                self.head = Some(Head {
                    name,
                    default: None,
                });
                self.declarations.clear();
                self.attributes.clear();
                return Ok(None);
            }
            RawEvent::Attribute(_, (prefix, local), value) => {
                let Some(head) = self.head.as_mut() else {
                    return Err(rxml::Error::RestrictedXml("attribute outside a start tag"));
                };
                match prefix {
                    Some(prefix) if prefix.as_str() == "xmlns" => {
                        let namespace = self.context.intern_namespace(value);
                        if self.declarations.iter().any(|(p, _)| *p == local) {
                            return Err(rxml::Error::DuplicateAttribute);
                        }
                        self.declarations.push((local, namespace));
                    }
                    None if local.as_str() == "xmlns" => {
                        if head.default.is_some() {
                            return Err(rxml::Error::DuplicateAttribute);
                        }
                        head.default = Some(self.context.intern_namespace(value));
                    }
                    prefix => self.attributes.push(((prefix, local), value)),
                }
                return Ok(None);
            }
            RawEvent::ElementHeadClose(_) => {
                let Some(head) = self.head.take() else {
                    return Err(rxml::Error::RestrictedXml("end of a start tag never begun"));
                };
                self.start_element(head)?
            }
            RawEvent::ElementFoot(_) => {
                self.defaults.pop();
                let count = self.declared_counts.pop().unwrap_or(0);
                for _ in 0..count {
                    let Some(prefix) = self.declared.pop() else {
                        break;
                    };
                    if let Some(bindings) = self.prefixes.get_mut(&prefix) {
                        bindings.pop();
                        if bindings.is_empty() {
                            self.prefixes.remove(&prefix);
                        }
                    }
                }
                Event::EndElement(EventMetrics::new(self.length))
            }
            RawEvent::Text(_, text) => Event::Text(EventMetrics::new(self.length), text),
        }))
    }

    /// Opens the element's scope and resolves its name and attributes.
    fn start_element(&mut self, head: Head) -> Result<Event, rxml::Error> {
        let default = match head.default {
            Some(declared) => declared,
            None => self
                .defaults
                .last()
                .cloned()
                .unwrap_or_else(|| Namespace::none().clone()),
        };
        self.defaults.push(default);
        self.declared_counts.push(self.declarations.len());
        for (prefix, namespace) in self.declarations.drain(..) {
            self.prefixes
                .entry(prefix.clone())
                .or_default()
                .push(namespace);
            self.declared.push(prefix);
        }
        let (prefix, local) = head.name;
        let namespace = match prefix {
            None => self
                .defaults
                .last()
                .cloned()
                .unwrap_or_else(|| Namespace::none().clone()),
            Some(prefix) => self.lookup(&prefix)?,
        };
        let mut attributes = AttrMap::new();
        let mut pending = std::mem::take(&mut self.attributes);
        for ((prefix, name), value) in pending.drain(..) {
            let namespace = match prefix {
                None => Namespace::none().clone(),
                Some(prefix) => self.lookup(&prefix)?,
            };
            if attributes.insert(namespace, name, value).is_some() {
                return Err(rxml::Error::DuplicateAttribute);
            }
        }
        self.attributes = pending;
        Ok(Event::StartElement(
            EventMetrics::new(self.length),
            (namespace, local),
            attributes,
        ))
    }

    /// The namespace bound to `prefix` in the current scope.
    fn lookup(&self, prefix: &NcName) -> Result<Namespace<'static>, rxml::Error> {
        if prefix.as_str() == "xml" {
            return Ok(Namespace::xml().clone());
        }
        self.prefixes
            .get(prefix)
            .and_then(|bindings| bindings.last())
            .cloned()
            .ok_or(rxml::Error::UndeclaredNamespacePrefix(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `xml` from both parsers, or their first error (as text).
    fn both(xml: &str) -> (Vec<String>, Vec<String>) {
        fn run(
            mut next: impl FnMut(&mut &[u8]) -> Result<Option<Event>, EndOrError>,
            xml: &str,
        ) -> Vec<String> {
            let mut data = xml.as_bytes();
            let mut out = Vec::new();
            loop {
                match next(&mut data) {
                    Ok(Some(event)) => out.push(format!("{event:?}")),
                    Ok(None) => return out,
                    Err(EndOrError::NeedMoreData) => return out,
                    Err(EndOrError::Error(e)) => {
                        out.push(format!("error: {e}"));
                        return out;
                    }
                }
            }
        }
        let mut ours = NsParser::with_options(rxml::parser::Options::default());
        let mut theirs = rxml::Parser::new();
        (
            run(|d| ours.parse(d, true), xml),
            run(|d| theirs.parse(d, true), xml),
        )
    }

    #[test]
    fn same_events_as_rxml_parser() {
        for xml in [
            "<a xmlns='urn:a'><b/><c xmlns=''><d/></c><e/></a>",
            "<p:a xmlns:p='urn:p' p:x='1' y='2'><p:b xmlns:p='urn:q'/><p:c/></p:a>",
            "<a xml:lang='en' xmlns:q='urn:q'><q:b q:x='1' x='2'>t&amp;x</q:b></a>",
            "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>\
             <message to='a@b'><body>hi</body></message></stream:stream>",
            "<?xml version='1.0'?><a><![CDATA[<x>]]></a>",
            // Errors: an undeclared prefix, duplicate attributes after resolution,
            // duplicate declarations, a prefix used outside its scope.
            "<a><u:b/></a>",
            "<a xmlns:p='urn:x' xmlns:q='urn:x' p:v='1' q:v='2'/>",
            "<a xmlns:p='urn:x' xmlns:p='urn:y'/>",
            "<a><b xmlns:p='urn:p'/><p:c/></a>",
            "<a xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='de'/>",
            "<a xmlns:xmlns='urn:x'/>",
            "<a xmlns:p=''/>",
        ] {
            let (ours, theirs) = both(xml);
            let errors = |events: &[String]| events.iter().any(|e| e.starts_with("error"));
            assert_eq!(
                errors(&ours),
                errors(&theirs),
                "{xml}\nours {ours:?}\ntheirs {theirs:?}"
            );
            if !errors(&ours) {
                assert_eq!(ours, theirs, "{xml}");
            }
        }
        // rxml takes the last of two `xmlns` attributes; XML 1.0 (Unique Att Spec) says
        // the document is not well-formed, and so do we.
        let (ours, _) = both("<a xmlns='urn:1' xmlns='urn:2'/>");
        assert_eq!(ours, ["error: duplicate attribute"]);
    }

    #[test]
    fn work_is_linear_in_depth() {
        let cost = |levels: usize| {
            let xml = format!(
                "<r xmlns='urn:r'>{}{}</r>",
                "<a>".repeat(levels),
                "</a>".repeat(levels)
            );
            let mut parser = NsParser::with_options(rxml::parser::Options::default());
            let mut data = xml.as_bytes();
            let started = std::time::Instant::now();
            let mut events = 0;
            while let Ok(Some(_)) = parser.parse(&mut data, true) {
                events += 1;
            }
            assert_eq!(events, 2 * levels + 2);
            started.elapsed()
        };
        cost(1000);
        let small = cost(10_000);
        let large = cost(80_000);
        // Quadratic work would make 8× the depth cost 64×; allow noise up to 24×.
        assert!(large < small * 24, "10k: {small:?}, 80k: {large:?}");
    }
}
