//! Measures how fast the stream parser skips over-cap stanzas (deep and large).
use std::time::Instant;
use xmpp_component::{ParseMode, StreamParser};

fn main() {
    let header = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>";
    let big = format!(
        "<message from='a@b/c' to='e.l' id='big'><body>{}</body></message>",
        "y".repeat(600 * 1024)
    );
    let deep = format!(
        "<message from='a@b/c' to='e.l' id='deep'><x xmlns='urn:x'>{}{}</x></message>",
        "<a>".repeat(30_000),
        "</a>".repeat(30_000)
    );
    let deep10 = format!(
        "<message from='a@b/c' to='e.l' id='deep'><x xmlns='urn:x'>{}{}</x></message>",
        "<a>".repeat(10_000),
        "</a>".repeat(10_000)
    );
    for (name, stanza) in [
        ("600 KiB", &big),
        ("30,000 deep", &deep),
        ("10,000 deep", &deep10),
    ] {
        let mut parser = StreamParser::with_limits(512 * 1024, 64, ParseMode::Typed);
        parser.feed(header.as_bytes(), |_| {}).expect("header");
        let started = Instant::now();
        let mut n = 0;
        for _ in 0..20 {
            for chunk in stanza.as_bytes().chunks(64 * 1024) {
                parser.feed(chunk, |_| n += 1).expect("no stream error");
            }
        }
        let per = started.elapsed() / 20;
        println!(
            "{name}: {per:?} per stanza, {:.0} MB/s ({n} events)",
            stanza.len() as f64 / per.as_secs_f64() / 1e6
        );
    }
}
