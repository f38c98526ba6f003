//! Seeded random testing on stable Rust ("fuzzing"): random and mutated XEP-0077 forms,
//! random chat bodies and random presences from many senders, through the real handlers
//! (the component connected to a [`TestServer`]), under small registration limits.
//!
//! In a third of the cases the store fails writes at random (a full disk).
//!
//! After each case: no handler panicked, every IQ got exactly one answer and none was
//! `internal-server-error` unless the store failed, the component is still connected, the limits held (users ≤
//! `max_users`, new users per domain ≤ the allowance, only allowed domains), per-sender
//! state is bounded (reserved tokens, tracked domains, resources per user), and memory and
//! disk agree record for record.
//!
//! Deterministic per seed; `WEBSTATUS_FUZZ_CASES` (default 24) sets how many seeds run,
//! `WEBSTATUS_FUZZ_SEED` replays one. A failure names its seed; a case worth keeping
//! becomes a test of its own at the bottom of this file.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Once};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use xmpp_component::minidom::Element;

use crate::app::{App, Settings};
use crate::limits::{Limits, MAX_TRACKED_DOMAINS, domain_of};
use crate::presence::MAX_RESOURCES;
use crate::store::Store;
use crate::testkit::{FlakyStore, connect, settings};

const NS: &str = "xmlns='jabber:component:accept'";
/// Stanzas per case.
const OPERATIONS: usize = 120;

thread_local! {
    /// Panics on this thread (handlers run on the test's current-thread runtime).
    static PANICS: Cell<usize> = const { Cell::new(0) };
}

/// Counts panics per thread, then lets the previous hook report them as usual.
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.set(p.get() + 1));
            previous(info);
        }));
    });
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

/// Random text XML can carry, escaped: ASCII, markup characters, accents, CJK, emoji,
/// bidi controls, tabs and newlines; sometimes long.
fn text(rng: &mut StdRng, max: usize) -> String {
    const CHARS: &[char] = &[
        'a', 'b', 'z', 'A', 'Z', '0', '9', ' ', ' ', '<', '>', '&', '\'', '"', ';', '/', '@', '=',
        'é', 'ж', '中', '🙂', '\u{202e}', '\u{200b}', '\t', '\n', '\u{fffd}',
    ];
    let len = if rng.gen_bool(0.05) {
        rng.gen_range(0..4000)
    } else {
        rng.gen_range(0..=max)
    };
    let mut out = String::new();
    for _ in 0..len {
        match CHARS.choose(rng).copied().unwrap_or('x') {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A pool of senders for one case: a few fixed, some random, over allowed and other domains.
fn senders(rng: &mut StdRng) -> Vec<String> {
    let domains = [
        "localhost",
        "example.org",
        "evil.test",
        "Example.ORG",
        "x.y.z",
    ];
    let mut jids = vec![
        "alice@localhost".to_owned(),
        "bob@example.org".to_owned(),
        "mallory@evil.test".to_owned(),
        "evil.test".to_owned(),
    ];
    for _ in 0..8 {
        let local: String = match rng.gen_range(0..4) {
            0 => "žofie".into(),
            1 => "u".repeat(rng.gen_range(1..300)),
            _ => (0..rng.gen_range(1..8))
                .map(|_| char::from(rng.gen_range(b'a'..=b'z')))
                .collect(),
        };
        jids.push(format!("{local}@{}", pick(rng, &domains)));
    }
    jids
}

fn from_of(rng: &mut StdRng, senders: &[String]) -> String {
    let bare = senders.choose(rng).cloned().unwrap_or_default();
    match rng.gen_range(0..5) {
        0 | 1 => bare,
        2 => format!("{bare}/phone"),
        3 => format!("{bare}/pc"),
        _ => format!("{bare}/r{}", rng.gen_range(0..60)),
    }
}

/// The exmpp bot's submission (the wire log), the base of the mutated forms.
fn reference_fields() -> Vec<(String, Option<String>, Vec<String>)> {
    vec![
        (
            "FORM_TYPE".into(),
            Some("hidden".into()),
            vec!["jabber:iq:register".into()],
        ),
        (
            "show_status_msg".into(),
            Some("boolean".into()),
            vec!["1".into()],
        ),
        (
            "show_full_jid".into(),
            Some("boolean".into()),
            vec!["0".into()],
        ),
    ]
}

fn value(rng: &mut StdRng) -> String {
    match rng.gen_range(0..12) {
        0 => text(rng, 30),
        1 => " 1 ".into(),
        n => {
            pick(
                rng,
                &[
                    "0",
                    "1",
                    "true",
                    "false",
                    "yes",
                    "",
                    "jabber:iq:register",
                    "urn:other",
                    "TRUE",
                    "2",
                ],
            )
            .to_owned()
                + if n == 2 { "\n" } else { "" }
        }
    }
}

fn register_query(rng: &mut StdRng) -> String {
    let query = "xmlns='jabber:iq:register'";
    match rng.gen_range(0..12) {
        0 => return format!("<query {query}><remove/></query>"),
        1 => return format!("<query {query}/>"),
        2 => {
            return format!(
                "<query {query}><username>{}</username><password>x</password></query>",
                text(rng, 10)
            );
        }
        3 => return "<query xmlns='urn:other'/>".into(),
        _ => {}
    }
    let mut fields = if rng.gen_bool(0.5) {
        reference_fields()
    } else {
        Vec::new()
    };
    for _ in 0..rng.gen_range(0..4) {
        match rng.gen_range(0..5) {
            0 if !fields.is_empty() => {
                let i = rng.gen_range(0..fields.len());
                fields.remove(i);
            }
            1 if !fields.is_empty() => {
                let i = rng.gen_range(0..fields.len());
                fields.push(fields[i].clone());
            }
            2 if !fields.is_empty() => {
                let i = rng.gen_range(0..fields.len());
                fields[i].2 = (0..rng.gen_range(0..3)).map(|_| value(rng)).collect();
            }
            _ => {
                let var = match rng.gen_range(0..6) {
                    0 => text(rng, 12),
                    _ => pick(
                        rng,
                        &[
                            "FORM_TYPE",
                            "show_status_msg",
                            "show_full_jid",
                            "username",
                            "",
                        ],
                    )
                    .to_owned(),
                };
                let kind = pick(
                    rng,
                    &["boolean", "hidden", "text-single", "list-multi", "x"],
                );
                let values = (0..rng.gen_range(0..3)).map(|_| value(rng)).collect();
                fields.push((var, Some(kind.to_owned()), values));
            }
        }
    }
    let kind = pick(
        rng,
        &[
            "submit", "submit", "submit", "form", "cancel", "result", "", "x",
        ],
    );
    let mut form = format!("<x xmlns='jabber:x:data' type='{kind}'>");
    for (var, kind, values) in fields {
        let _ = write!(form, "<field var='{var}'");
        if let Some(kind) = kind.filter(|_| rng.gen_bool(0.8)) {
            let _ = write!(form, " type='{kind}'");
        }
        form.push('>');
        for value in values {
            let _ = write!(form, "<value>{value}</value>");
        }
        form.push_str("</field>");
    }
    form.push_str("</x>");
    if rng.gen_bool(0.05) {
        form.push_str("<remove/>");
    }
    format!("<query {query}>{form}</query>")
}

fn chat_body(rng: &mut StdRng) -> String {
    let words = [
        "help",
        "?",
        "register",
        "url",
        "status",
        "jid",
        "on",
        "off",
        "new",
        "url",
        "newurl",
        "unregister",
        "yes",
        "0",
    ];
    if rng.gen_bool(0.2) {
        return text(rng, 60);
    }
    let mut body = String::new();
    for i in 0..rng.gen_range(0..4) {
        if i > 0 || rng.gen_bool(0.2) {
            body.push_str(pick(rng, &[" ", "  ", "\t", "\n", " \u{a0}"]));
        }
        let word = pick(rng, &words);
        if rng.gen_bool(0.3) {
            body.push_str(&word.to_uppercase());
        } else {
            body.push_str(word);
        }
    }
    body
}

fn message(rng: &mut StdRng, from: &str, to: &str) -> String {
    let kind = pick(
        rng,
        &[
            "chat",
            "chat",
            "chat",
            "normal",
            "headline",
            "groupchat",
            "",
        ],
    );
    let kind = if kind.is_empty() {
        String::new()
    } else {
        format!(" type='{kind}'")
    };
    let bodies = match rng.gen_range(0..8) {
        0 => String::new(),
        1 => format!(
            "<body xml:lang='de'>{}</body><body>{}</body>",
            chat_body(rng),
            chat_body(rng)
        ),
        _ => format!("<body>{}</body>", chat_body(rng)),
    };
    format!("<message {NS}{kind} from='{from}' to='{to}'>{bodies}</message>")
}

fn presence(rng: &mut StdRng, from: &str, to: &str) -> String {
    let kind = pick(
        rng,
        &[
            "",
            "",
            "",
            "",
            "unavailable",
            "subscribe",
            "subscribed",
            "unsubscribe",
            "unsubscribed",
            "probe",
            "error",
        ],
    );
    let mut xml = format!("<presence {NS} from='{from}' to='{to}'");
    if !kind.is_empty() {
        let _ = write!(xml, " type='{kind}'");
    }
    xml.push('>');
    if rng.gen_bool(0.5) {
        let show = pick(rng, &["chat", "away", "xa", "dnd"]);
        let _ = write!(xml, "<show>{show}</show>");
    }
    for lang in ["", " xml:lang='fr'"] {
        if rng.gen_bool(0.5) {
            let _ = write!(xml, "<status{lang}>{}</status>", text(rng, 80));
        }
    }
    if rng.gen_bool(0.5) {
        let _ = write!(xml, "<priority>{}</priority>", rng.gen_range(-128..=127));
    }
    if rng.gen_bool(0.2) {
        let year = rng.gen_range(1960..2200);
        let _ = write!(
            xml,
            "<delay xmlns='urn:xmpp:delay' stamp='{year}-01-02T03:04:05Z'/>"
        );
    }
    if kind == "error" {
        xml.push_str(
            "<error type='cancel'><remote-server-not-found \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
        );
    }
    xml.push_str("</presence>");
    xml
}

/// The XEP-0086-style condition of an IQ error, if it is one.
fn error_condition(stanza: &Element) -> Option<String> {
    let error = stanza.children().find(|c| c.name() == "error")?;
    error
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_owned())
}

/// What the cases did, so a run that exercises nothing shows.
#[derive(Debug, Default)]
struct Tally {
    /// IQ answers by outcome ("result" or the error condition).
    answers: HashMap<String, usize>,
    /// Other stanzas the component sent, by name and type.
    sent: HashMap<String, usize>,
    /// Users registered at the end of each case, summed.
    users: usize,
}

/// Runs one case; returns a description of what went wrong.
async fn case(seed: u64, tally: &mut Tally) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let limits = Limits {
        max_users: rng.gen_range(0..8),
        registrations_per_domain: rng.gen_range(0..4),
        allow_domains: rng
            .gen_bool(0.5)
            .then(|| HashSet::from(["localhost".to_owned(), "example.org".to_owned()])),
    };
    let store = Arc::new(FlakyStore::default());
    let app = App::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Settings {
            limits: limits.clone(),
            ..settings()
        },
    )
    .map_err(|e| e.to_string())?;
    let flaky = rng.gen_bool(1.0 / 3.0);
    let mut connected = connect(&app, None).await;
    let senders = senders(&mut rng);
    let panics_before = PANICS.with(Cell::get);

    let mut iq_ids: HashMap<String, usize> = HashMap::new();
    let mut froms: BTreeSet<String> = BTreeSet::new();
    for n in 0..OPERATIONS {
        if flaky {
            store.fail(rng.gen_bool(0.3));
        }
        let from = from_of(&mut rng, &senders);
        let to = if rng.gen_bool(0.1) {
            "node@webstatus.localhost"
        } else {
            "webstatus.localhost"
        };
        let xml = match rng.gen_range(0..10) {
            0..=2 => {
                let id = format!("iq-{n}");
                iq_ids.insert(id.clone(), 0);
                let (kind, query) = if rng.gen_bool(0.25) {
                    ("get", "<query xmlns='jabber:iq:register'/>".to_owned())
                } else {
                    ("set", register_query(&mut rng))
                };
                format!("<iq {NS} type='{kind}' id='{id}' from='{from}' to='{to}'>{query}</iq>")
            }
            3..=5 => message(&mut rng, &from, to),
            _ => presence(&mut rng, &from, to),
        };
        froms.insert(from);
        if flaky && n % 10 == 0 {
            // Let some of it be handled while the store is in this state.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        connected
            .server
            .send_xml(&xml)
            .await
            .map_err(|e| format!("send {xml}: {e}"))?;
    }
    // One ping per sender: its answer comes after everything that sender sent was handled.
    let mut sentinels = HashSet::new();
    for (i, from) in froms.iter().enumerate() {
        let id = format!("sentinel-{i}");
        let xml = format!(
            "<iq {NS} type='get' id='{id}' from='{from}' to='webstatus.localhost'>\
             <ping xmlns='urn:xmpp:ping'/></iq>"
        );
        connected
            .server
            .send_xml(&xml)
            .await
            .map_err(|e| format!("send: {e}"))?;
        sentinels.insert(id);
    }
    while !sentinels.is_empty() {
        let stanza = connected
            .server
            .recv_within(Duration::from_secs(10))
            .await
            .map_err(|e| format!("{} sentinels unanswered: {e}", sentinels.len()))?;
        let id = stanza.attr("id").unwrap_or_default();
        if stanza.name() != "iq" {
            let kind = format!(
                "{} {}",
                stanza.name(),
                stanza.attr("type").unwrap_or("available")
            );
            *tally.sent.entry(kind).or_default() += 1;
            continue;
        }
        sentinels.remove(id);
        if let Some(count) = iq_ids.get_mut(id) {
            *count += 1;
            let outcome = error_condition(&stanza).unwrap_or_else(|| "result".into());
            *tally.answers.entry(outcome).or_default() += 1;
            if !flaky && error_condition(&stanza).as_deref() == Some("internal-server-error") {
                return Err(format!("internal-server-error: {stanza:?}"));
            }
        }
    }

    let panics = PANICS.with(Cell::get) - panics_before;
    if panics > 0 {
        return Err(format!("{panics} handler panic(s)"));
    }
    if let Some((id, count)) = iq_ids.iter().find(|(_, count)| **count != 1) {
        return Err(format!("IQ {id} answered {count} times"));
    }
    if connected.running.is_finished() {
        return Err("the component stopped".into());
    }
    // Limits and bounded state.
    let footprint = app.footprint();
    tally.users += footprint.users;
    if footprint.users > limits.max_users {
        return Err(format!(
            "{footprint:?} beyond max_users {}",
            limits.max_users
        ));
    }
    if footprint.pending_tokens > 1024 || footprint.tracked_domains > MAX_TRACKED_DOMAINS {
        return Err(format!("unbounded: {footprint:?}"));
    }
    let stored = store.load_all().map_err(|e| e.to_string())?;
    let mut live: Vec<_> = app
        .registry()
        .jids()
        .iter()
        .filter_map(|jid| app.registry().record(jid))
        .collect();
    live.sort_by(|a, b| a.jid.cmp(&b.jid));
    if stored != live {
        return Err(format!(
            "memory and disk disagree:\n disk   {stored:?}\n memory {live:?}"
        ));
    }
    let mut per_domain: HashMap<&str, u32> = HashMap::new();
    for record in &stored {
        let domain = domain_of(&record.jid);
        *per_domain.entry(domain).or_default() += 1;
        if let Some(allowed) = &limits.allow_domains
            && !allowed.contains(domain)
        {
            return Err(format!(
                "{} registered from a domain not allowed",
                record.jid
            ));
        }
        let resources = app.registry().resources(&record.jid);
        if resources > MAX_RESOURCES {
            return Err(format!("{} has {resources} resources", record.jid));
        }
    }
    // Unregistering frees a place but not a domain's allowance, so this holds.
    let allowance = limits.registrations_per_domain;
    if allowance > 0
        && let Some((domain, n)) = per_domain.iter().find(|(_, n)| **n > allowance)
    {
        return Err(format!("{n} users of {domain}, allowance {allowance}"));
    }
    connected.stop().await;
    Ok(())
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn random_stanzas_never_break_the_gateway_or_its_limits() {
    count_panics();
    let seeds: Vec<u64> = match env_number("WEBSTATUS_FUZZ_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_number("WEBSTATUS_FUZZ_CASES").unwrap_or(24)).collect(),
    };
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    for seed in &seeds {
        if let Err(failure) = case(*seed, &mut tally).await {
            panic!("seed {seed} (replay: WEBSTATUS_FUZZ_SEED={seed}): {failure}");
        }
    }
    eprintln!(
        "{} random cases of {OPERATIONS} stanzas in {:.1} s: {tally:?}",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    // Not vacuous: registrations succeeded and each kind of refusal happened.
    if seeds.len() >= 24 {
        for outcome in [
            "result",
            "bad-request",
            "not-allowed",
            "resource-constraint",
        ] {
            assert!(
                tally.answers.contains_key(outcome),
                "no {outcome}: {tally:?}"
            );
        }
        assert!(tally.users > 0, "{tally:?}");
    }
}
