//! One game: a task that owns the game's whole state and runs its fixed-step loop.
//!
//! The lobby decides who is in which game and tells the task through a small bounded
//! inbox of [`Command`]s (joins, spectators, leaving). Paddle moves do not go through the
//! inbox: they are the one high-rate input, so they land in [`Shared`] atomics that the
//! tick reads, which keeps a flooding client from filling the inbox or delaying ticks.
//!
//! The loop ticks with `tokio::time::interval` at `tick_hz` with
//! [`MissedTickBehavior::Skip`]: a game that wakes up late drops the ticks it missed
//! instead of bursting to catch up, so an overloaded server slows the ball down a little
//! rather than flooding clients with stale positions. Each tick moves the paddles towards
//! their requested positions (at most `max_paddle_step`), advances the ball by exactly one
//! step of `1 / tick_hz` seconds, handles points and the end of the game, and sends
//! `ballposition` to everyone watching.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use xmpp_component::minidom::Element;
use xmpp_component::xmpp_parsers::jid::Jid;
use xmpp_component::xmpp_parsers::message::MessageType;
use xmpp_component::{SharedMessage, SharedPayload};

use crate::leaderboard::GameResult;
use crate::lobby::Lobby;
use crate::outbound::Sink;
use crate::physics::{Ball, Event, Field, Side, step_paddle};
use crate::protocol::{self, EndReason, GameOver, Viewer};

/// The rules every game is played by.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Geometry and ball dynamics.
    pub field: Field,
    /// Ticks per second.
    pub tick_hz: u32,
    /// Points that win a game.
    pub points_to_win: u32,
    /// A player without input for this long forfeits.
    pub idle_timeout: Duration,
    /// Largest paddle movement per tick, field units.
    pub max_paddle_step: f64,
    /// Pause between a point and the next serve.
    pub serve_delay: Duration,
    /// Most spectators per game.
    pub max_spectators: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            field: Field::default(),
            tick_hz: 30,
            points_to_win: 10,
            idle_timeout: Duration::from_secs(60),
            max_paddle_step: 30.0,
            serve_delay: Duration::from_secs(1),
            max_spectators: 64,
        }
    }
}

impl Settings {
    /// The tick period.
    pub fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.tick_hz.max(1)))
    }
}

/// What the lobby tells a game.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// A player took `side`.
    Join { side: Side, jid: String },
    /// Someone checked in again: send them `dimensions` (and the score) again.
    Resend { jid: String },
    /// A spectator arrived.
    Spectate { jid: String },
    /// A spectator left.
    Unspectate { jid: String },
    /// The player on `side` left: they forfeit.
    Leave { side: Side },
    /// The server is stopping: end without a result.
    Shutdown,
}

/// The per-game state other tasks may touch: requested paddle positions and the time of
/// each player's last input, as atomics so that a paddle move never waits for the game.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Requested top edge per side, as `f64` bits.
    targets: [AtomicU64; 2],
    /// Milliseconds since the lobby's epoch of each side's last input.
    last_input_ms: [AtomicU64; 2],
}

impl Shared {
    pub(crate) fn new(start: f64) -> Self {
        Shared {
            targets: [
                AtomicU64::new(start.to_bits()),
                AtomicU64::new(start.to_bits()),
            ],
            last_input_ms: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Records a paddle request from `side` at `now_ms`.
    pub(crate) fn request_paddle(&self, side: Side, y: f64, now_ms: u64) {
        self.targets[side.index()].store(y.to_bits(), Relaxed);
        self.touch(side, now_ms);
    }

    /// Records input (any) from `side`.
    pub(crate) fn touch(&self, side: Side, now_ms: u64) {
        self.last_input_ms[side.index()].fetch_max(now_ms, Relaxed);
    }

    fn target(&self, side: Side) -> f64 {
        f64::from_bits(self.targets[side.index()].load(Relaxed))
    }

    fn last_input_ms(&self, side: Side) -> u64 {
        self.last_input_ms[side.index()].load(Relaxed)
    }
}

/// Everything a game task needs from its surroundings.
pub(crate) struct Context {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) settings: Arc<Settings>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) lobby: Arc<Lobby>,
    pub(crate) sink: Arc<dyn Sink>,
}

struct Player {
    jid: String,
    bare: String,
}

/// How a game ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    reason: EndReason,
    winner: Option<Side>,
}

struct Game {
    cx: Context,
    players: [Option<Player>; 2],
    spectators: Vec<String>,
    paddles: [f64; 2],
    ball: Ball,
    score: [u32; 2],
    /// Ticks left before the next serve, and towards whom.
    serve: Option<(u32, Side)>,
    running: bool,
}

/// Keeps the waiting/running gauges right however the task ends (even if aborted).
struct Gauge {
    lobby: Arc<Lobby>,
    running: bool,
}

impl Gauge {
    fn new(lobby: Arc<Lobby>) -> Self {
        lobby.metrics().games_waiting.fetch_add(1, Relaxed);
        Gauge {
            lobby,
            running: false,
        }
    }

    fn start(&mut self) {
        let m = self.lobby.metrics();
        m.games_waiting.fetch_sub(1, Relaxed);
        m.games_running.fetch_add(1, Relaxed);
        m.games_started.fetch_add(1, Relaxed);
        self.running = true;
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        let m = self.lobby.metrics();
        if self.running {
            m.games_running.fetch_sub(1, Relaxed);
            m.games_finished.fetch_add(1, Relaxed);
        } else {
            m.games_waiting.fetch_sub(1, Relaxed);
        }
    }
}

/// Runs one game until it ends or its inbox closes (the lobby dropped it: nobody is in).
pub(crate) async fn run(cx: Context, mut inbox: mpsc::Receiver<Command>) {
    let mut gauge = Gauge::new(Arc::clone(&cx.lobby));
    let start = cx.settings.field.paddle_start();
    let mut game = Game {
        ball: Ball::centre(&cx.settings.field),
        cx,
        players: [None, None],
        spectators: Vec::new(),
        paddles: [start, start],
        score: [0, 0],
        serve: None,
        running: false,
    };

    // Waiting for two players.
    while game.players.iter().any(Option::is_none) {
        let Some(command) = inbox.recv().await else {
            return;
        };
        if game.apply(command).await.is_some() {
            game.cx.lobby.remove_game(game.cx.id);
            return;
        }
    }

    gauge.start();
    game.start().await;
    let period = game.cx.settings.period();
    // Spread the games' tick phases over the period: games that start together (a burst
    // of check-ins, a restart) would otherwise all tick in the same millisecond, and the
    // last of them would run late by the whole burst's work.
    let phase = period.mul_f64(phase_fraction(game.cx.id));
    let mut ticker = tokio::time::interval_at(Instant::now() + period + phase, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut previous: Option<Instant> = None;
    let outcome = loop {
        tokio::select! {
            // Ticks first: a busy inbox must not make the schedule late.
            biased;
            scheduled = ticker.tick() => {
                let now = Instant::now();
                let metrics = game.cx.lobby.metrics();
                metrics.record_tick(now.saturating_duration_since(scheduled));
                if let Some(previous) = previous {
                    let gap = scheduled.saturating_duration_since(previous).as_nanos();
                    let missed = (gap / period.as_nanos().max(1)).saturating_sub(1);
                    if missed > 0 {
                        metrics.ticks_skipped.fetch_add(u64::try_from(missed).unwrap_or(u64::MAX), Relaxed);
                    }
                }
                previous = Some(scheduled);
                if let Some(outcome) = game.tick(now).await {
                    break outcome;
                }
            }
            command = inbox.recv() => match command {
                Some(command) => {
                    if let Some(outcome) = game.apply(command).await {
                        break outcome;
                    }
                }
                None => break Outcome { reason: EndReason::Shutdown, winner: None },
            },
        }
    };
    game.finish(outcome).await;
}

impl Game {
    fn field(&self) -> &Field {
        &self.cx.settings.field
    }

    /// Handles a lobby command; `Some` ends the game.
    async fn apply(&mut self, command: Command) -> Option<Outcome> {
        match command {
            Command::Join { side, jid } => {
                let bare = bare_of(&jid).to_owned();
                self.send(protocol::dimensions(
                    &jid,
                    self.field(),
                    Viewer::Player(side),
                    &self.cx.name,
                ))
                .await;
                self.players[side.index()] = Some(Player { jid, bare });
                None
            }
            Command::Resend { jid } => {
                let viewer = self.side_of(&jid).map_or(Viewer::Spectator, Viewer::Player);
                self.send(protocol::dimensions(
                    &jid,
                    self.field(),
                    viewer,
                    &self.cx.name,
                ))
                .await;
                if self.running {
                    self.send(protocol::score_update(&jid, self.score)).await;
                }
                None
            }
            Command::Spectate { jid } => {
                self.send(protocol::dimensions(
                    &jid,
                    self.field(),
                    Viewer::Spectator,
                    &self.cx.name,
                ))
                .await;
                if self.running {
                    self.send(protocol::score_update(&jid, self.score)).await;
                }
                self.spectators.push(jid);
                None
            }
            Command::Unspectate { jid } => {
                self.spectators.retain(|s| *s != jid);
                None
            }
            Command::Leave { side } => Some(Outcome {
                reason: EndReason::Forfeit,
                winner: self.running.then_some(side.opponent()),
            }),
            Command::Shutdown => Some(Outcome {
                reason: EndReason::Shutdown,
                winner: None,
            }),
        }
    }

    fn side_of(&self, jid: &str) -> Option<Side> {
        self.players
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.jid == jid))
            .and_then(Side::from_index)
    }

    /// Both players are in: first serve goes to player 1 (left), who waited longer.
    async fn start(&mut self) {
        self.running = true;
        let now_ms = self.cx.lobby.now_ms();
        self.cx.shared.touch(Side::Left, now_ms);
        self.cx.shared.touch(Side::Right, now_ms);
        self.serve = Some((self.serve_delay_ticks(), Side::Left));
        for jid in self.recipients() {
            self.send(protocol::score_update(&jid, self.score)).await;
        }
    }

    fn serve_delay_ticks(&self) -> u32 {
        let ticks =
            self.cx.settings.serve_delay.as_secs_f64() * f64::from(self.cx.settings.tick_hz);
        ticks.ceil().clamp(0.0, f64::from(u32::MAX)) as u32
    }

    fn recipients(&self) -> Vec<String> {
        self.players
            .iter()
            .flatten()
            .map(|p| p.jid.clone())
            .chain(self.spectators.iter().cloned())
            .collect()
    }

    /// One fixed step. `Some` ends the game.
    async fn tick(&mut self, now: Instant) -> Option<Outcome> {
        if let Some(outcome) = self.check_idle(now) {
            return Some(outcome);
        }
        self.move_paddles();
        let settings = Arc::clone(&self.cx.settings);
        let field = &settings.field;
        match self.serve {
            Some((0, towards)) => {
                let angle = rand::thread_rng()
                    .gen_range(-field.max_bounce_angle / 2.0..=field.max_bounce_angle / 2.0);
                self.ball = Ball::serve(field, towards, angle);
                self.serve = None;
            }
            Some((left, towards)) => self.serve = Some((left - 1, towards)),
            None => {}
        }
        if self.serve.is_none() {
            let dt = 1.0 / f64::from(settings.tick_hz.max(1));
            if let Event::Missed(side) = self.ball.advance(field, self.paddles, dt) {
                let scorer = side.opponent();
                self.score[scorer.index()] += 1;
                for jid in self.recipients() {
                    self.send(protocol::score_update(&jid, self.score)).await;
                }
                if self.score[scorer.index()] >= settings.points_to_win {
                    return Some(Outcome {
                        reason: EndReason::Points,
                        winner: Some(scorer),
                    });
                }
                // Re-serve from the centre towards the player who conceded.
                self.ball = Ball::centre(field);
                self.serve = Some((self.serve_delay_ticks(), side));
            }
        }
        let (x, y) = (self.ball.x, self.ball.y);
        self.fan_out(&protocol::ball_position_payload(x, y), None);
        None
    }

    /// Moves both paddles towards their requests, tells the others about a change.
    fn move_paddles(&mut self) {
        for side in [Side::Left, Side::Right] {
            let current = self.paddles[side.index()];
            let next = step_paddle(
                self.field(),
                current,
                self.cx.shared.target(side),
                self.cx.settings.max_paddle_step,
            );
            if next != current {
                self.paddles[side.index()] = next;
                self.fan_out(&protocol::opponent_paddle_payload(side, next), Some(side));
            }
        }
    }

    fn check_idle(&self, now: Instant) -> Option<Outcome> {
        let limit = u64::try_from(self.cx.settings.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let now_ms = self.cx.lobby.ms_since_epoch(now);
        let idle = |side| now_ms.saturating_sub(self.cx.shared.last_input_ms(side)) > limit;
        match (idle(Side::Left), idle(Side::Right)) {
            (true, true) => Some(Outcome {
                reason: EndReason::Abandoned,
                winner: None,
            }),
            (true, false) => Some(Outcome {
                reason: EndReason::Idle,
                winner: Some(Side::Right),
            }),
            (false, true) => Some(Outcome {
                reason: EndReason::Idle,
                winner: Some(Side::Left),
            }),
            (false, false) => None,
        }
    }

    /// Sends a high-rate payload, serialised once, to every player (except the one on
    /// `skip`) and spectator.
    fn fan_out(&self, payload: &SharedPayload, skip: Option<Side>) {
        for (index, player) in self.players.iter().enumerate() {
            if let Some(player) = player
                && skip.map(Side::index) != Some(index)
            {
                self.send_shared(&player.jid, payload);
            }
        }
        for spectator in &self.spectators {
            self.send_shared(spectator, payload);
        }
    }

    /// Queues a headline with `payload` to `to` without waiting; counts drops.
    fn send_shared(&self, to: &str, payload: &SharedPayload) {
        let metrics = self.cx.lobby.metrics();
        let sent = Jid::new(to).ok().map(|to| {
            let message = SharedMessage::new(to, MessageType::Headline, payload.clone());
            self.cx.sink.try_send_shared(message)
        });
        match sent {
            Some(Ok(())) => metrics.stanzas_sent.fetch_add(1, Relaxed),
            _ => metrics.stanzas_dropped.fetch_add(1, Relaxed),
        };
    }

    /// Queues without waiting; a full queue drops the stanza (and counts it).
    fn send_now(&self, stanza: Element) {
        let metrics = self.cx.lobby.metrics();
        match self.cx.sink.try_send(stanza) {
            Ok(()) => {
                metrics.stanzas_sent.fetch_add(1, Relaxed);
            }
            Err(_) => {
                metrics.stanzas_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Queues, waiting for room (bounded, so a stalled link cannot hang the game forever).
    async fn send(&self, stanza: Element) {
        let metrics = self.cx.lobby.metrics();
        match tokio::time::timeout(Duration::from_secs(5), self.cx.sink.send(stanza)).await {
            Ok(Ok(())) => {
                metrics.stanzas_sent.fetch_add(1, Relaxed);
            }
            Ok(Err(error)) => {
                metrics.stanzas_dropped.fetch_add(1, Relaxed);
                tracing::warn!(%error, game = %self.cx.name, "could not queue a game message");
            }
            Err(_) => {
                metrics.stanzas_dropped.fetch_add(1, Relaxed);
                tracing::warn!(game = %self.cx.name, "outbound queue full for 5 s; message dropped");
            }
        }
    }

    /// Ends the game: leave the lobby, make the result durable, then tell everyone.
    async fn finish(self, outcome: Outcome) {
        self.cx.lobby.remove_game(self.cx.id);
        let winner = outcome.winner.and_then(|side| {
            self.players[side.index()]
                .as_ref()
                .map(|p| (side, p.bare.clone()))
        });
        tracing::info!(
            game = %self.cx.name,
            reason = outcome.reason.as_str(),
            winner = winner.as_ref().map(|(_, jid)| jid.as_str()).unwrap_or("-"),
            score = ?self.score,
            "game over"
        );
        if let Some(result) = self.result(outcome) {
            let store = self.cx.lobby.store();
            match tokio::task::spawn_blocking(move || store.record(&result)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(%error, game = %self.cx.name, "could not record the result")
                }
                Err(error) => {
                    tracing::error!(%error, game = %self.cx.name, "recording the result failed")
                }
            }
        }
        let over = GameOver {
            winner,
            score: self.score,
            reason: outcome.reason,
            players: self
                .players
                .each_ref()
                .map(|p| p.as_ref().map(|p| p.bare.clone())),
        };
        for jid in self.recipients() {
            let stanza = protocol::game_over(&jid, &over);
            if outcome.reason == EndReason::Shutdown {
                // The link is closing: never wait for room.
                self.send_now(stanza);
            } else {
                self.send(stanza).await;
            }
        }
    }

    /// The leaderboard entry for this outcome: only games with a winner between two
    /// different accounts count (playing yourself from two resources earns nothing).
    fn result(&self, outcome: Outcome) -> Option<GameResult> {
        let side = outcome.winner?;
        let winner = self.players[side.index()].as_ref()?;
        let loser = self.players[side.opponent().index()].as_ref()?;
        if winner.bare == loser.bare {
            return None;
        }
        Some(GameResult {
            winner: winner.bare.clone(),
            loser: loser.bare.clone(),
            winner_points: self.score[side.index()],
            loser_points: self.score[side.opponent().index()],
        })
    }
}

/// A well-spread fraction in `[0, 1)` for game `id` (the golden-ratio sequence: any run of
/// consecutive ids covers the interval evenly).
fn phase_fraction(id: u64) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_895;
    ((id % (1 << 40)) as f64 * GOLDEN).fract()
}

/// `user@domain/resource` → `user@domain`.
pub(crate) fn bare_of(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}
