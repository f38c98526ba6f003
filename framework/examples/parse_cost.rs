//! The stream parser and the serializer alone, without sockets: ns per message.
//!
//! `cargo run --release -p xmpp-component --example parse_cost [elements]`
//! (`elements` parses into `minidom::Element`s instead of typed stanzas).

use std::time::Instant;

use xmpp_component::testing::serialize_for_bench;
use xmpp_component::{ParseMode, StreamEvent, StreamParser};

fn main() -> Result<(), xmpp_component::ParseError> {
    let n = 200_000;
    let mut doc = String::from(
        "<stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' id='x'>",
    );
    for i in 0..n {
        doc.push_str(&format!(
            "<message from='user{}@localhost/bench' to='echo.localhost' type='chat' id='m{i}'>\
             <body>payload number {i}</body></message>",
            i % 16
        ));
    }
    let mode = if std::env::args().any(|a| a == "elements") {
        ParseMode::Elements
    } else {
        ParseMode::Typed
    };
    let mut parser = StreamParser::with_mode(1 << 20, mode);
    let mut stanzas = Vec::with_capacity(n);
    let start = Instant::now();
    for chunk in doc.as_bytes().chunks(65536) {
        parser.feed(chunk, |event| {
            if let StreamEvent::Stanza(stanza) = event {
                stanzas.push(stanza);
            }
        })?;
    }
    let parse = start.elapsed();
    let start = Instant::now();
    let mut out = Vec::with_capacity(doc.len() + 1000);
    for stanza in &stanzas {
        serialize_for_bench(stanza, &mut out);
    }
    let serialize = start.elapsed();
    println!(
        "{} stanzas ({mode:?}): parse {:.0} ns/msg, serialize {:.0} ns/msg",
        stanzas.len(),
        parse.as_nanos() as f64 / n as f64,
        serialize.as_nanos() as f64 / n as f64
    );
    Ok(())
}
