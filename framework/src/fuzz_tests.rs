//! Randomly mutated streams through the whole inbound path: parser, guards, dispatcher,
//! router with its built-ins. Whatever arrives, every IQ request the parser let through
//! (valid, malformed or over a cap) gets exactly one reply, nothing panics, and no
//! per-sender state is left behind. Seeded, so a failure replays; `FUZZ_ROUNDS=20000
//! cargo test -p xmpp-component --release fuzz` for a longer run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;

use crate::dispatch::{Dispatcher, Limits};
use crate::handle::Handle;
use crate::router::{Inbound, Router};
use crate::stanza::Stanza;
use crate::xmlstream::robustness_tests::{STREAM, mutate};
use crate::xmlstream::{ParseMode, StreamEvent, StreamParser};

/// Adds stanzas that break the caps and requests with payloads nobody handles.
fn hostile_tail(rng: &mut rand::rngs::StdRng) -> String {
    let levels = rng.gen_range(0..200);
    let deep = format!("{}{}", "<a>".repeat(levels), "</a>".repeat(levels));
    let n: u32 = rng.r#gen();
    format!(
        "<iq type='get' id='deep{n}' from='m@x/y' to='e.l'><q xmlns='urn:q'>{deep}</q></iq>\
         <iq type='set' id='big{n}' from='m@x/y' to='e.l'><q xmlns='urn:q'>{}</q></iq>\
         <message from='m@x/y' id='m{n}'><body>{deep}</body></message>",
        "z".repeat(rng.gen_range(0..6000))
    )
}

/// Whether a reply from `to` may be sent: the component only speaks for its own domain
/// (a mutated `to` makes the reply one the server would refuse, so it is not sent).
fn ours(to: Option<&Jid>) -> bool {
    to.is_none_or(|to| to.domain().as_str() == "e.l")
}

/// The ids of IQ get/set requests the router must answer, from what the parser produced.
fn requests(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            StreamEvent::Stanza(Stanza::Iq(iq @ (Iq::Get { .. } | Iq::Set { .. })))
                if iq.from().is_some() && ours(iq.to()) =>
            {
                Some(iq.id().to_owned())
            }
            StreamEvent::Invalid(invalid)
                if invalid.name == "iq"
                    && matches!(invalid.type_.as_deref(), Some("get" | "set"))
                    && invalid.from.is_some()
                    && ours(invalid.to.as_ref()) =>
            {
                invalid.id.clone()
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn mutated_streams_through_parser_and_router() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xf022);
    let rounds = std::env::var("FUZZ_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400);
    let router = Arc::new(
        Router::new()
            .identity("component", "generic", "Fuzz")
            .message(|_, _| async {}),
    );
    let mut answered_total = 0;
    for _ in 0..rounds {
        let mut bytes = STREAM.replace("</stream:stream>", "").into_bytes();
        bytes.extend_from_slice(hostile_tail(&mut rng).as_bytes());
        mutate(&mut rng, &mut bytes);
        let mut parser = StreamParser::with_limits(4096, 16, ParseMode::Typed);
        let mut events = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rng.gen_range(1..=rest.len().min(512)));
            if parser.feed(chunk, |e| events.push(e)).is_err() {
                break;
            }
            rest = tail;
        }
        let expected = requests(&events);
        let (handle, mut queue) =
            Handle::new(Jid::new("e.l").expect("jid"), 4096, Duration::from_secs(1));
        let dispatcher = Dispatcher::with_limits(Arc::clone(&router), handle, 8, Limits::off());
        for event in events {
            match event {
                StreamEvent::Stanza(stanza) => dispatcher.submit(Inbound::Stanza(stanza)).await,
                StreamEvent::Invalid(invalid) => dispatcher.submit(Inbound::Invalid(invalid)).await,
                _ => {}
            }
        }
        dispatcher.wait_idle().await;
        let mut replies: HashMap<String, usize> = HashMap::new();
        while let Ok(queued) = queue.try_recv() {
            if let Stanza::Iq(iq @ (Iq::Result { .. } | Iq::Error { .. })) = queued.stanza {
                *replies.entry(iq.id().to_owned()).or_default() += 1;
            }
        }
        let mut wanted: HashMap<String, usize> = HashMap::new();
        for id in expected {
            *wanted.entry(id).or_default() += 1;
        }
        assert_eq!(
            replies,
            wanted,
            "stream: {}",
            String::from_utf8_lossy(&bytes)
        );
        answered_total += replies.values().sum::<usize>();
        assert!(dispatcher.is_idle(), "per-sender state left behind");
    }
    // The mutations leave plenty of requests intact, malformed or over a cap.
    assert!(
        answered_total > rounds,
        "{answered_total} replies in {rounds} rounds"
    );
}
