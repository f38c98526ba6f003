//! Outbound stanzas to bytes: the one place the framework writes XML.
//!
//! Messages, the hot path of most components, are written directly from their fields
//! (about five times cheaper than going through `xso`'s event iterator); presences, IQs
//! and elements are encoded by `xso`/`rxml`. Every value is escaped, and a character
//! XML 1.0 cannot carry makes the stanza unwritable instead of corrupting the stream.

use xmpp_parsers::message::{Message, MessageType};

use crate::stanza::{SharedMessage, Stanza};

/// Appends one stanza's XML to `out`. A stanza that cannot be written is logged and
/// skipped; `out` is left as it was.
pub(crate) fn serialize(stanza: &Stanza, out: &mut Vec<u8>) {
    let start = out.len();
    let result = match stanza {
        Stanza::Message(m) => write_message(m, out),
        Stanza::Presence(p) => encode(p, out),
        Stanza::Iq(iq) => encode(iq, out),
        Stanza::Element(e) => e.write_to(out).map_err(|e| e.to_string()),
        Stanza::Shared(m) => write_shared(m, out),
    };
    if let Err(error) = result {
        out.truncate(start);
        tracing::error!(%error, "dropping a stanza that cannot be serialised");
    }
}

fn encode(value: &impl xso::AsXml, out: &mut Vec<u8>) -> Result<(), String> {
    let mut encoder = rxml::writer::Encoder::new();
    for item in value.as_xml_iter().map_err(|e| e.to_string())? {
        let item = item.map_err(|e| e.to_string())?;
        encoder
            .encode(item.as_rxml_item(), out)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn type_name(type_: &MessageType) -> Option<&'static str> {
    match type_ {
        MessageType::Chat => Some("chat"),
        MessageType::Error => Some("error"),
        MessageType::Groupchat => Some("groupchat"),
        MessageType::Headline => Some("headline"),
        MessageType::Normal => None,
    }
}

/// Writes a message field by field, in the order `xso` would.
fn write_message(message: &Message, out: &mut Vec<u8>) -> Result<(), String> {
    // Destructured so that a field added to `Message` fails to compile here.
    let Message {
        from,
        to,
        id,
        type_,
        bodies,
        subjects,
        thread,
        payloads,
    } = message;
    out.extend_from_slice(b"<message xmlns='jabber:component:accept'");
    if let Some(from) = from {
        attribute(out, "from", from.as_str())?;
    }
    if let Some(to) = to {
        attribute(out, "to", to.as_str())?;
    }
    if let Some(id) = id {
        attribute(out, "id", &id.0)?;
    }
    if let Some(type_) = type_name(type_) {
        attribute(out, "type", type_)?;
    }
    out.push(b'>');
    for (name, texts) in [("body", bodies), ("subject", subjects)] {
        for (lang, text) in texts {
            out.push(b'<');
            out.extend_from_slice(name.as_bytes());
            if !lang.is_empty() {
                attribute(out, "xml:lang", lang)?;
            }
            out.push(b'>');
            escape(text, out)?;
            out.extend_from_slice(b"</");
            out.extend_from_slice(name.as_bytes());
            out.push(b'>');
        }
    }
    if let Some(thread) = thread {
        out.extend_from_slice(b"<thread");
        if let Some(parent) = &thread.parent {
            attribute(out, "parent", parent)?;
        }
        out.push(b'>');
        escape(&thread.id, out)?;
        out.extend_from_slice(b"</thread>");
    }
    for payload in payloads {
        payload.write_to(out).map_err(|e| e.to_string())?;
    }
    out.extend_from_slice(b"</message>");
    Ok(())
}

/// Writes a [`SharedMessage`]: the addresses are escaped, the payload is already XML.
fn write_shared(message: &SharedMessage, out: &mut Vec<u8>) -> Result<(), String> {
    out.extend_from_slice(b"<message xmlns='jabber:component:accept'");
    if let Some(from) = &message.from {
        attribute(out, "from", from.as_str())?;
    }
    attribute(out, "to", message.to.as_str())?;
    if let Some(type_) = type_name(&message.type_) {
        attribute(out, "type", type_)?;
    }
    out.push(b'>');
    out.extend_from_slice(message.payload.as_bytes());
    out.extend_from_slice(b"</message>");
    Ok(())
}

fn attribute(out: &mut Vec<u8>, name: &str, value: &str) -> Result<(), String> {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape(value, out)?;
    out.push(b'\'');
    Ok(())
}

/// Appends `value` escaped for XML text or a quoted attribute value. Markup characters
/// become entities, and tab, newline and carriage return become character references so
/// that attribute-value normalisation cannot alter them. Fails, naming the character,
/// on one that XML 1.0 cannot carry at all (most C0 controls, U+FFFE, U+FFFF).
pub(crate) fn escape(value: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let bytes = value.as_bytes();
    let mut copied = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let replacement: &[u8] = match byte {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\'' => b"&apos;",
            b'"' => b"&quot;",
            b'\t' => b"&#x9;",
            b'\n' => b"&#xA;",
            b'\r' => b"&#xD;",
            0..=0x1f => return Err(format!("U+{byte:04X} cannot appear in XML")),
            // U+FFFE and U+FFFF are EF BF BE and EF BF BF in UTF-8.
            0xef if bytes.get(i + 1) == Some(&0xbf)
                && matches!(bytes.get(i + 2), Some(0xbe | 0xbf)) =>
            {
                return Err("U+FFFE or U+FFFF cannot appear in XML".to_owned());
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[copied..i]);
        out.extend_from_slice(replacement);
        copied = i + 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    Ok(())
}

/// Escapes text for XML or HTML content and attribute values (`& < > ' "`), leaving out
/// characters XML cannot carry. The one escaper of the workspace: the framework's stream
/// header and stream errors, and the components' HTML pages and SVG badges.
pub fn escaped(value: &str) -> String {
    let mut out = Vec::with_capacity(value.len());
    if escape(value, &mut out).is_err() {
        out.clear();
        // Keep exactly the characters `escape` accepts: one rule, stated once.
        let clean: String = value
            .chars()
            .filter(|c| escape(c.encode_utf8(&mut [0; 4]), &mut Vec::new()).is_ok())
            .collect();
        let _ = escape(&clean, &mut out);
    }
    // Only ASCII bytes were replaced by ASCII references, so the result is still UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use minidom::Element;
    use xmpp_parsers::jid::Jid;
    use xmpp_parsers::message::{Id, Lang, Thread};

    use super::*;
    use crate::stanza::SharedPayload;
    use crate::xmlstream::{StreamEvent, StreamParser};

    const HEADER: &str = "<stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc'>";

    /// Parses written bytes back the way the server-facing reader would.
    fn reparse(bytes: &[u8]) -> Vec<StreamEvent> {
        let mut parser = StreamParser::new(1 << 20);
        let mut events = Vec::new();
        parser
            .feed(HEADER.as_bytes(), |_| {})
            .expect("stream header");
        parser
            .feed(bytes, |e| events.push(e))
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)));
        events
    }

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("valid jid")
    }

    fn messages() -> Vec<Message> {
        let plain =
            Message::chat(jid("alice@localhost/phone")).with_body(Lang::new(), "hello".into());
        let mut nasty = Message::new_with_type(MessageType::Normal, None);
        nasty.from = Some(jid("echo.localhost"));
        nasty.id = Some(Id("a'b\"c<&>\t\n\r".into()));
        nasty.bodies = BTreeMap::from([
            (
                Lang::new(),
                "x < y && y > z\r\n\ttabbed 'quoted' \"too\" ünïcödé 🎉".into(),
            ),
            (Lang::from("de"), "hallo".into()),
        ]);
        nasty.subjects = BTreeMap::from([(Lang::from("en"), "subject]]>".into())]);
        nasty.thread = Some(Thread {
            parent: Some("p'1".into()),
            id: "t&1".into(),
        });
        nasty.payloads = vec![
            Element::builder("x", "urn:example")
                .append(
                    Element::builder("y", "urn:example")
                        .attr(rxml::xml_ncname!("a").into(), "1")
                        .append("z"),
                )
                .build(),
            Element::bare("no-store", "urn:xmpp:hints"),
        ];
        let mut headline = Message::headline(jid("room@muc.localhost"));
        headline.thread = Some(Thread {
            parent: None,
            id: "t2".into(),
        });
        let empty = Message::groupchat(None);
        let error = Message::error(jid("bob@localhost"));
        vec![plain, nasty, headline, empty, error]
    }

    #[test]
    fn written_messages_parse_back_to_the_same_message() {
        for message in messages() {
            let mut bytes = Vec::new();
            serialize(&Stanza::Message(message.clone()), &mut bytes);
            match &reparse(&bytes)[..] {
                [StreamEvent::Stanza(Stanza::Message(back))] => assert_eq!(back, &message),
                other => panic!("{other:?} from {}", String::from_utf8_lossy(&bytes)),
            }
        }
    }

    #[test]
    fn the_direct_writer_agrees_with_xso() {
        for message in messages() {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            write_message(&message, &mut ours).expect("writable");
            encode(&message, &mut theirs).expect("encodable");
            let ours: Element = String::from_utf8(ours)
                .expect("utf-8")
                .parse()
                .expect("xml");
            let theirs: Element = String::from_utf8(theirs)
                .expect("utf-8")
                .parse()
                .expect("xml");
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn a_character_xml_cannot_carry_drops_the_stanza_and_nothing_else() {
        for bad in [
            "nul \u{0} here",
            "bell \u{7}",
            "non-char \u{fffe}",
            "\u{ffff}",
        ] {
            let message = Message::chat(jid("a@b")).with_body(Lang::new(), bad.into());
            let mut bytes = b"<presence/>".to_vec();
            serialize(&Stanza::Message(message), &mut bytes);
            assert_eq!(bytes, b"<presence/>", "{bad:?}");
        }
    }

    #[test]
    fn shared_message_writes_escaped_addresses_and_its_payload() {
        let payload: Element = "<pong xmlns='xmpp:game:pong'><action>ballposition</action></pong>"
            .parse()
            .expect("payload");
        let hint = Element::bare("no-store", "urn:xmpp:hints");
        let to = jid("alice@localhost/it's <me>");
        let mut message = SharedMessage::new(
            to.clone(),
            MessageType::Headline,
            SharedPayload::new([&payload, &hint]),
        );
        message.from = Some(jid("pong.localhost"));
        let mut bytes = Vec::new();
        serialize(&Stanza::Shared(message), &mut bytes);
        let [StreamEvent::Stanza(Stanza::Message(written))] = &reparse(&bytes)[..] else {
            panic!(
                "expected one message from {}",
                String::from_utf8_lossy(&bytes)
            );
        };
        assert_eq!(written.to.as_ref(), Some(&to));
        assert_eq!(written.from, Some(jid("pong.localhost")));
        assert_eq!(written.type_, MessageType::Headline);
        assert_eq!(written.payloads, vec![payload, hint]);
    }

    #[test]
    fn escaped_leaves_out_what_xml_cannot_carry() {
        assert_eq!(escaped("a'b"), "a&apos;b");
        assert_eq!(escaped("bad\u{1}text"), "badtext");
    }
}
