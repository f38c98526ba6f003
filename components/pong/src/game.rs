//! One game: a task that owns the game's whole state and runs its fixed-step loop.
//!
//! The lobby decides who is in which game and tells the task through a small bounded
//! inbox of [`Command`]s (joins, spectators). Two kinds of input never go through it:
//! - paddle moves, the one high-rate input, land in [`Shared`] atomics that the tick
//!   reads, so a flooding client can neither fill the inbox nor delay ticks;
//! - leaving and shutdown are flags in [`Shared`] plus a [`Notify`] (one stored permit,
//!   however many signals): setting a flag cannot fail, so a `leave` is never lost to a
//!   full inbox, and the running loop looks at the flags before anything else, so a
//!   busy schedule cannot starve them.
//!
//! A game waits for its second player at most `wait_timeout` and does not tick while it
//! waits. Once both are in, the loop ticks with `tokio::time::interval` at `tick_hz` with
//! [`MissedTickBehavior::Skip`]: a game that wakes up late drops the ticks it missed
//! instead of bursting to catch up. Each tick moves the paddles towards their requested
//! positions (at most `max_paddle_step`), advances the ball by exactly one step of
//! `1 / tick_hz` seconds, handles points and the end of the game, and sends `ballposition`
//! to everyone watching. Nothing in the loop waits for the outbound queue: every message
//! is queued with `try_send`, and what does not fit is dropped and counted
//! (`stanzas_dropped`); the game state stays authoritative and the next tick brings
//! fresh positions. Only after the loop, `gameOver` may wait (bounded) for room.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, mpsc};
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

/// How long `gameOver` may wait for room in a full outbound queue.
const GAME_OVER_WAIT: Duration = Duration::from_secs(5);

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
    /// A game waiting for its second player this long ends (`expired`).
    pub wait_timeout: Duration,
    /// Largest paddle movement per tick, field units.
    pub max_paddle_step: f64,
    /// Pause between a point and the next serve.
    pub serve_delay: Duration,
    /// Most spectators per game.
    pub max_spectators: usize,
    /// Most games one bare JID plays in at once (from any of its resources).
    pub max_games_per_user: usize,
    /// Most games at once on the whole server.
    pub max_games: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            field: Field::default(),
            tick_hz: 30,
            points_to_win: 10,
            idle_timeout: Duration::from_secs(60),
            wait_timeout: Duration::from_secs(600),
            max_paddle_step: 30.0,
            serve_delay: Duration::from_secs(1),
            max_spectators: 64,
            max_games_per_user: 3,
            max_games: 10_000,
        }
    }
}

impl Settings {
    /// The tick period.
    pub fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.tick_hz.max(1)))
    }
}

/// What the lobby tells a game through its inbox (all rare, all droppable: a refused
/// `try_send` becomes a "busy" refusal or is harmless).
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
}

/// Signal bits in [`Shared::signals`].
const LEFT_GONE: u8 = 1 << 0;
const RIGHT_GONE: u8 = 1 << 1;
const SHUTDOWN: u8 = 1 << 2;

/// The per-game state other tasks may touch without waiting for the game: requested
/// paddle positions, the time of each player's last input, and the leave/shutdown
/// signals.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Requested top edge per side, as `f64` bits.
    targets: [AtomicU64; 2],
    /// Milliseconds since the lobby's epoch of each side's last input.
    last_input_ms: [AtomicU64; 2],
    /// `LEFT_GONE | RIGHT_GONE | SHUTDOWN`, only ever set.
    signals: AtomicU8,
    /// Wakes the game when a signal is set.
    signalled: Notify,
}

impl Shared {
    pub(crate) fn new(start: f64) -> Self {
        Shared {
            targets: [
                AtomicU64::new(start.to_bits()),
                AtomicU64::new(start.to_bits()),
            ],
            last_input_ms: [AtomicU64::new(0), AtomicU64::new(0)],
            signals: AtomicU8::new(0),
            signalled: Notify::new(),
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

    /// The player on `side` left: they forfeit. Cannot fail or be lost.
    pub(crate) fn leave(&self, side: Side) {
        let bit = match side {
            Side::Left => LEFT_GONE,
            Side::Right => RIGHT_GONE,
        };
        self.raise(bit);
    }

    /// The server is stopping: end without a result.
    pub(crate) fn shut_down(&self) {
        self.raise(SHUTDOWN);
    }

    fn raise(&self, bit: u8) {
        self.signals.fetch_or(bit, Relaxed);
        // Stores a permit when the game is not waiting right now, so it is never missed.
        self.signalled.notify_one();
    }

    fn signals(&self) -> u8 {
        self.signals.load(Relaxed)
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

/// Runs one game until it ends, its wait expires, or its inbox closes (the lobby dropped
/// it: nobody is in).
pub(crate) async fn run(cx: Context, mut inbox: mpsc::Receiver<Command>) {
    let mut gauge = Gauge::new(Arc::clone(&cx.lobby));
    let start = cx.settings.field.paddle_start();
    let expires = Instant::now() + cx.settings.wait_timeout;
    let shared = Arc::clone(&cx.shared);
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

    // Waiting for two players: no ticks. A leave signal here means the lobby had filled
    // the game (a waiting game whose player leaves is simply dropped), so the joins it
    // queued before the signal are applied first; a full game then starts and its loop
    // sees the signal at once.
    while !game.is_full() {
        let outcome = tokio::select! {
            biased;
            () = shared.signalled.notified() => {
                while let Ok(command) = inbox.try_recv() {
                    game.apply(command);
                }
                if game.is_full() {
                    shared.signalled.notify_one();
                    None
                } else {
                    game.signalled()
                }
            }
            command = inbox.recv() => match command {
                Some(command) => {
                    game.apply(command);
                    None
                }
                None => return,
            },
            () = tokio::time::sleep_until(expires) => {
                // Not expired if the second player's join is already queued (the lobby
                // filled the game): the inbox branch takes it next.
                game.cx.lobby.expire(game.cx.id).then_some(Outcome {
                    reason: EndReason::Expired,
                    winner: None,
                })
            }
        };
        if let Some(outcome) = outcome {
            game.finish(outcome).await;
            return;
        }
    }

    gauge.start();
    game.start();
    let period = game.cx.settings.period();
    // Spread the games' tick phases over the period: games that start together (a burst
    // of check-ins, a restart) would otherwise all tick in the same millisecond, and the
    // last of them would run late by the whole burst's work.
    let phase = period.mul_f64(phase_fraction(game.cx.id));
    let mut ticker = tokio::time::interval_at(Instant::now() + period + phase, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut previous: Option<Instant> = None;
    // One waiter for the whole loop rather than one registered and dropped per tick.
    let mut signal = std::pin::pin!(shared.signalled.notified());
    let outcome = loop {
        // Nothing below awaits anything but this select, so every branch gets its turn:
        // signals first (leave, shutdown), then the schedule, then the inbox.
        tokio::select! {
            biased;
            () = &mut signal => {
                if let Some(outcome) = game.signalled() {
                    break outcome;
                }
                signal.set(shared.signalled.notified());
            }
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
                if let Some(outcome) = game.tick(now) {
                    break outcome;
                }
            }
            command = inbox.recv() => match command {
                Some(command) => game.apply(command),
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

    fn is_full(&self) -> bool {
        self.players.iter().all(Option::is_some)
    }

    /// What the leave/shutdown flags mean now; `Some` ends the game.
    fn signalled(&self) -> Option<Outcome> {
        let signals = self.cx.shared.signals();
        if signals & SHUTDOWN != 0 {
            return Some(Outcome {
                reason: EndReason::Shutdown,
                winner: None,
            });
        }
        let gone = |bit| signals & bit != 0;
        let winner = match (gone(LEFT_GONE), gone(RIGHT_GONE)) {
            (false, false) => return None,
            (true, false) => Some(Side::Right),
            (false, true) => Some(Side::Left),
            (true, true) => None,
        };
        Some(Outcome {
            reason: EndReason::Forfeit,
            winner: winner.filter(|_| self.running),
        })
    }

    /// Handles a lobby command.
    fn apply(&mut self, command: Command) {
        match command {
            Command::Join { side, jid } => {
                let bare = bare_of(&jid).to_owned();
                self.send_now(protocol::dimensions(
                    &jid,
                    self.field(),
                    Viewer::Player(side),
                    &self.cx.name,
                ));
                self.players[side.index()] = Some(Player { jid, bare });
            }
            Command::Resend { jid } => {
                let viewer = self.side_of(&jid).map_or(Viewer::Spectator, Viewer::Player);
                self.send_now(protocol::dimensions(
                    &jid,
                    self.field(),
                    viewer,
                    &self.cx.name,
                ));
                if self.running {
                    self.send_now(protocol::score_update(&jid, self.score));
                }
            }
            Command::Spectate { jid } => {
                // The lobby caps spectators, but an `Unspectate` can be dropped on a full
                // inbox: never hold one JID twice, nor more than the cap.
                let known = self.spectators.contains(&jid);
                if !known && self.spectators.len() >= self.cx.settings.max_spectators {
                    return;
                }
                self.send_now(protocol::dimensions(
                    &jid,
                    self.field(),
                    Viewer::Spectator,
                    &self.cx.name,
                ));
                if self.running {
                    self.send_now(protocol::score_update(&jid, self.score));
                }
                if !known {
                    self.spectators.push(jid);
                }
            }
            Command::Unspectate { jid } => {
                self.spectators.retain(|s| *s != jid);
            }
        }
    }

    fn side_of(&self, jid: &str) -> Option<Side> {
        self.players
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.jid == jid))
            .and_then(Side::from_index)
    }

    /// Both players are in: first serve goes to player 1 (left), who waited longer.
    fn start(&mut self) {
        self.running = true;
        let now_ms = self.cx.lobby.now_ms();
        self.cx.shared.touch(Side::Left, now_ms);
        self.cx.shared.touch(Side::Right, now_ms);
        self.serve = Some((self.serve_delay_ticks(), Side::Left));
        for jid in self.recipients() {
            self.send_now(protocol::score_update(&jid, self.score));
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

    /// One fixed step. `Some` ends the game. Never waits.
    fn tick(&mut self, now: Instant) -> Option<Outcome> {
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
                    self.send_now(protocol::score_update(&jid, self.score));
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
            Err(error) => {
                metrics.stanzas_dropped.fetch_add(1, Relaxed);
                tracing::debug!(%error, game = %self.cx.name, "game message dropped");
            }
        }
    }

    /// Queues `gameOver`, waiting a bounded time for room: the game has left the lobby
    /// and its loop, so waiting here delays nobody else.
    async fn send_game_over(&self, stanza: Element) {
        let metrics = self.cx.lobby.metrics();
        match tokio::time::timeout(GAME_OVER_WAIT, self.cx.sink.send(stanza)).await {
            Ok(Ok(())) => {
                metrics.stanzas_sent.fetch_add(1, Relaxed);
            }
            Ok(Err(error)) => {
                metrics.stanzas_dropped.fetch_add(1, Relaxed);
                tracing::warn!(%error, game = %self.cx.name, "could not queue gameOver");
            }
            Err(_) => {
                metrics.stanzas_dropped.fetch_add(1, Relaxed);
                tracing::warn!(game = %self.cx.name, "outbound queue full; gameOver dropped");
            }
        }
    }

    /// Ends the game: leave the lobby, make the result durable, then tell everyone
    /// (`recorded` says whether the result is on the leaderboard).
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
        let recorded = match self.result(outcome) {
            None => None,
            Some(result) => {
                let _recording = self.cx.lobby.recording();
                match self.cx.lobby.store().record(result).await {
                    Ok(()) => Some(true),
                    Err(error) => {
                        tracing::error!(%error, game = %self.cx.name, "could not record the result");
                        Some(false)
                    }
                }
            }
        };
        let over = GameOver {
            winner,
            score: self.score,
            reason: outcome.reason,
            players: self
                .players
                .each_ref()
                .map(|p| p.as_ref().map(|p| p.bare.clone())),
            recorded,
        };
        for jid in self.recipients() {
            let stanza = protocol::game_over(&jid, &over);
            if outcome.reason == EndReason::Shutdown {
                // The link is closing: never wait for room.
                self.send_now(stanza);
            } else {
                self.send_game_over(stanza).await;
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
