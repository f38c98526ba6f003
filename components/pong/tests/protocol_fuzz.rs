//! Property test of pong's hostile-input surface: random and mutated `xmpp:game:pong`
//! payloads (check-ins, paddle positions with odd numbers, NaN/inf/huge values, unknown
//! actions, odd game names, leaves, spectating) from a small crowd of senders, sent
//! through the protocol parser and the lobby exactly as the service does, with game time
//! passing in between. It asserts that nothing panics, that every accepted paddle value
//! is a finite number inside the field, and that state stays within the limits: games
//! per server, player places per account, members per sender. At the end everybody
//! leaves and nothing is left behind.
//!
//! Bounded and reproducible: 64 cases of up to 160 operations on a paused clock (a few
//! seconds in a debug build), from a fixed seed. `PONG_FUZZ_CASES=N` runs more cases,
//! `PONG_FUZZ_RANDOM=1` draws a fresh seed (proptest prints the minimal failing input).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use xmpp_component::minidom::Element;
use xmpp_component::{SendError, SharedMessage};
use xmpp_pong::lobby::Refusal;
use xmpp_pong::outbound::{SendFuture, Sink};
use xmpp_pong::protocol::{self, NS, Request};
use xmpp_pong::{Leaderboard, Lobby, MemoryStore, Metrics, Settings};

const ACCOUNTS: usize = 4;
const RESOURCES: usize = 3;
const MAX_GAMES: usize = 4;
const MAX_PER_USER: usize = 2;
const HEIGHT: f64 = 600.0;

/// What the cases reached, over all of them: the generator must get past the parser and
/// into the interesting states, or the test proves little.
#[derive(Default)]
struct Reached {
    joined: AtomicU64,
    moved: AtomicU64,
    games_started: AtomicU64,
    too_many_games: AtomicU64,
    server_full: AtomicU64,
    reserved: AtomicU64,
    bad_request: AtomicU64,
}

static REACHED: std::sync::LazyLock<Reached> = std::sync::LazyLock::new(Reached::default);

fn sender(n: usize) -> String {
    format!(
        "user{}@localhost/r{}",
        n % ACCOUNTS,
        (n / ACCOUNTS) % RESOURCES
    )
}

/// A sink that serialises everything (a panic there would be ours) and refuses every
/// third stanza as if the queue were full.
#[derive(Default)]
struct FlakySink {
    n: AtomicU64,
}

impl FlakySink {
    fn take(&self) -> Result<(), SendError> {
        if self.n.fetch_add(1, Relaxed) % 3 == 2 {
            Err(SendError::QueueFull)
        } else {
            Ok(())
        }
    }
}

impl Sink for FlakySink {
    fn try_send(&self, stanza: Element) -> Result<(), SendError> {
        let _ = String::from(&stanza);
        self.take()
    }

    fn send(&self, stanza: Element) -> SendFuture<'_> {
        let _ = String::from(&stanza);
        Box::pin(async { Ok(()) })
    }

    fn try_send_shared(&self, message: SharedMessage) -> Result<(), SendError> {
        let _ = message.payload.as_bytes().len();
        self.take()
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A `<message>` with this payload text from sender `from` to `target`
    /// (`None` = the bare domain).
    Message {
        from: usize,
        target: Option<String>,
        payload: String,
    },
    /// `unavailable` presence (or a bounce) from `from`.
    Gone { from: usize },
    /// Game time passes.
    Wait { ms: u64 },
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn action() -> impl Strategy<Value = Option<String>> {
    let some =
        |names: Vec<&'static str>| prop::sample::select(names).prop_map(|a| Some(a.to_owned()));
    prop_oneof![
        4 => some(vec!["paddleposition", " paddleposition\n", "PaddlePosition"]),
        3 => some(vec!["playercheckingin", "PlayerCheckingIn", "PLAYERCHECKINGIN "]),
        1 => some(vec!["spectate", "Spectate"]),
        1 => some(vec!["leave", "LEAVE"]),
        1 => some(vec!["", " ", "cheat", "gameOver", "ballposition", "dimensions"]),
        1 => any::<String>().prop_map(Some),
        1 => Just(None),
    ]
}

fn y_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => (0.0..=HEIGHT).prop_map(|y| Some(y.to_string())),
        2 => any::<f64>().prop_map(|y| Some(y.to_string())),
        2 => prop::sample::select(vec![
            "NaN", "nan", "inf", "-inf", "infinity", "1e308", "1e309", "-1e309", "-0", "0",
            "600", "600.0000001", "-0.0000001", "1e-320", "  12.5  ", "0x10", "1_000", "+5",
            "٣", "1e", ".", "-", "",
        ])
        .prop_map(|y| Some(y.to_owned())),
        1 => Just(Some("9".repeat(400))),
        1 => any::<String>().prop_map(Some),
        1 => Just(None),
    ]
}

/// A `<pong/>` payload: maybe an action, maybe a `<y>`, maybe junk; sometimes in the
/// wrong namespace, sometimes with the `<y>` in another namespace.
fn payload() -> impl Strategy<Value = String> {
    (
        action(),
        y_value(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::option::weighted(0.2, "[a-z]{1,8}"),
    )
        .prop_map(|(action, y, wrong_ns, foreign_y, junk)| {
            let ns = if wrong_ns { "urn:not:pong" } else { NS };
            let mut xml = format!("<pong xmlns='{ns}'>");
            if let Some(action) = action {
                xml.push_str(&format!("<action>{}</action>", escape(&action)));
            }
            if let Some(y) = y {
                let y_ns = if foreign_y { " xmlns='urn:x'" } else { "" };
                xml.push_str(&format!("<y{y_ns}>{}</y>", escape(&y)));
            }
            if let Some(junk) = junk {
                xml.push_str(&format!("<{junk}>junk</{junk}>"));
            }
            xml.push_str("</pong>");
            xml
        })
}

/// A payload with a few bytes flipped or cut (often no longer XML: skipped, as the
/// framework's parser would refuse it).
fn mutated_payload() -> impl Strategy<Value = String> {
    (
        payload(),
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    )
        .prop_map(|(xml, flips)| {
            let mut bytes = xml.into_bytes();
            for (at, byte) in flips {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

fn target() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        3 => prop::sample::select(vec!["friday", "g1", "g2", "g3", "match-0", "match-1"])
            .prop_map(|n| Some(n.to_owned())),
        1 => prop::sample::select(vec!["MATCH-9", "Match-x", "match-", "matchbox", "m\u{e9}tch-1"])
            .prop_map(|n| Some(n.to_owned())),
        1 => "[a-z0-9._-]{1,12}".prop_map(Some),
        1 => any::<String>().prop_map(Some),
        1 => Just(Some("x".repeat(1000))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let from = 0..ACCOUNTS * RESOURCES;
    prop_oneof![
        6 => (from.clone(), target(), payload())
            .prop_map(|(from, target, payload)| Op::Message { from, target, payload }),
        1 => (from.clone(), target(), mutated_payload())
            .prop_map(|(from, target, payload)| Op::Message { from, target, payload }),
        1 => from.prop_map(|from| Op::Gone { from }),
        2 => (0u64..3_000).prop_map(|ms| Op::Wait { ms }),
    ]
}

/// What the service does with one message (see `service.rs`), minus the reply.
fn handle(lobby: &Arc<Lobby>, from: &str, target: Option<&str>, xml: &str) {
    let Ok(element) = xml.parse::<Element>() else {
        return;
    };
    let Some(pong) = protocol::find_payload(std::slice::from_ref(&element)) else {
        return;
    };
    let outcome = match protocol::parse_request(pong, HEIGHT) {
        Err(error) => {
            REACHED.bad_request.fetch_add(1, Relaxed);
            Err(error.to_string())
        }
        Ok(request) => {
            if let Request::Paddle { y } = request {
                assert!(
                    y.is_finite() && (0.0..=HEIGHT).contains(&y),
                    "accepted y {y}"
                );
            }
            let result: Result<(), Refusal> = match request {
                Request::CheckIn => lobby.check_in(from, target).map(drop),
                Request::Spectate => lobby.spectate(from, target).map(drop),
                Request::Leave => {
                    lobby.leave(from);
                    Ok(())
                }
                Request::Paddle { y } => lobby.paddle(from, y),
            };
            match (&request, &result) {
                (Request::CheckIn, Ok(())) => REACHED.joined.fetch_add(1, Relaxed),
                (Request::Paddle { .. }, Ok(())) => REACHED.moved.fetch_add(1, Relaxed),
                (_, Err(Refusal::TooManyGames(_))) => REACHED.too_many_games.fetch_add(1, Relaxed),
                (_, Err(Refusal::ServerFull)) => REACHED.server_full.fetch_add(1, Relaxed),
                (_, Err(Refusal::ReservedName)) => REACHED.reserved.fetch_add(1, Relaxed),
                _ => 0,
            };
            result.map_err(|refusal| {
                let _ = refusal.condition();
                refusal.to_string()
            })
        }
    };
    if let Err(text) = outcome {
        let error = protocol::error_message(
            from,
            Some("id"),
            Some(pong),
            xmpp_component::xmpp_parsers::stanza_error::DefinedCondition::BadRequest,
            &text,
        );
        let _ = String::from(&error);
    }
}

fn check_bounds(lobby: &Lobby) {
    let (games, members) = lobby.counts();
    assert!(games <= MAX_GAMES, "{games} games");
    assert!(members <= ACCOUNTS * RESOURCES, "{members} members");
    for account in 0..ACCOUNTS {
        let places = lobby.places_of(&format!("user{account}@localhost"));
        assert!(
            places <= MAX_PER_USER,
            "user{account} holds {places} places"
        );
    }
}

async fn play(ops: Vec<Op>) {
    let store = Leaderboard::open(Arc::new(MemoryStore::new()))
        .await
        .expect("leaderboard");
    let settings = Settings {
        idle_timeout: Duration::from_secs(4),
        wait_timeout: Duration::from_secs(5),
        points_to_win: 2,
        max_spectators: 3,
        max_games: MAX_GAMES,
        max_games_per_user: MAX_PER_USER,
        ..Settings::default()
    };
    let lobby = Lobby::new(
        "pong.localhost",
        settings,
        store,
        Arc::new(Metrics::default()),
    );
    lobby.attach(Arc::new(FlakySink::default()));
    for op in ops {
        match op {
            Op::Message {
                from,
                target,
                payload,
            } => handle(&lobby, &sender(from), target.as_deref(), &payload),
            Op::Gone { from } => {
                lobby.leave(&sender(from));
            }
            Op::Wait { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
        check_bounds(&lobby);
    }
    for n in 0..ACCOUNTS * RESOURCES {
        lobby.leave(&sender(n));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Results are written on a blocking thread while the paused clock runs ahead: give
    // the last games real time to end.
    for _ in 0..2000 {
        let m = lobby.metrics().snapshot();
        if (m.games_running, m.games_waiting) == (0, 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        tokio::task::yield_now().await;
    }
    assert_eq!(lobby.counts(), (0, 0), "everybody left");
    for account in 0..ACCOUNTS {
        assert_eq!(lobby.places_of(&format!("user{account}@localhost")), 0);
    }
    let m = lobby.metrics().snapshot();
    assert_eq!((m.games_running, m.games_waiting), (0, 0), "{m:?}");
    REACHED.games_started.fetch_add(m.games_started, Relaxed);
}

#[test]
fn hostile_payloads_never_panic_and_state_stays_bounded() {
    let cases = std::env::var("PONG_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let random = std::env::var_os("PONG_FUZZ_RANDOM").is_some();
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = if random {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    let result = runner.run(&prop::collection::vec(op(), 1..160), |ops| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        runtime.block_on(play(ops));
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let r = &*REACHED;
    let reached = [
        ("check-ins accepted", r.joined.load(Relaxed)),
        ("paddle moves accepted", r.moved.load(Relaxed)),
        ("games started", r.games_started.load(Relaxed)),
        ("too-many-games refusals", r.too_many_games.load(Relaxed)),
        ("server-full refusals", r.server_full.load(Relaxed)),
        ("reserved-name refusals", r.reserved.load(Relaxed)),
        ("bad requests", r.bad_request.load(Relaxed)),
    ];
    println!("{reached:?}");
    if !random {
        for (what, n) in reached {
            assert!(n > 0, "no {what} in {cases} cases: {reached:?}");
        }
    }
}
