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
//!
//! A game knows nothing of the lobby: its [`Context`] gives it the clock, the metrics,
//! the result store and a [`Host`], the one it tells that its wait ran out or that it
//! ended.

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

use crate::leaderboard::{GameResult, Leaderboard};
use crate::metrics::Metrics;
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
    /// Each side's last input, in [`Clock`] milliseconds.
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

/// The clock of idle detection: milliseconds since a fixed start, so that the last input
/// of each player fits in an atomic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock counting from now.
    pub(crate) fn start() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the start, now.
    pub(crate) fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// Milliseconds since the start at `at`.
    pub(crate) fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

/// Whoever keeps the table of games (the lobby): what a game tells it, and the one
/// question it asks.
pub(crate) trait Host: Send + Sync + 'static {
    /// Game `id` waited `wait_timeout` for its second player. True: the host forgot it,
    /// and it ends `expired`; false: a second player has just been let in (their join is
    /// already in the inbox), so it keeps going.
    fn expire(&self, id: u64) -> bool;

    /// Game `id` has ended: forget it and everyone in it. Called once, as soon as the
    /// outcome is known, before the result is written and `gameOver` is sent.
    fn ended(&self, id: u64);
}

/// Everything a game task needs from its surroundings.
pub(crate) struct Context {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) settings: Arc<Settings>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) clock: Clock,
    pub(crate) metrics: Arc<Metrics>,
    /// Where a result goes before `gameOver` says it counts.
    pub(crate) store: Leaderboard,
    pub(crate) host: Arc<dyn Host>,
}

struct Player {
    jid: String,
    bare: String,
    /// `jid` parsed once, for the per-tick messages.
    address: Option<Jid>,
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
    /// Parsed once when they start watching.
    spectators: Vec<Jid>,
    paddles: [f64; 2],
    ball: Ball,
    score: [u32; 2],
    /// Ticks left before the next serve, and towards whom.
    serve: Option<(u32, Side)>,
    running: bool,
}

/// Keeps the waiting/running gauges right however the task ends (even if aborted).
struct Gauge {
    metrics: Arc<Metrics>,
    running: bool,
}

impl Gauge {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.games_waiting.fetch_add(1, Relaxed);
        Gauge {
            metrics,
            running: false,
        }
    }

    fn start(&mut self) {
        let m = &self.metrics;
        m.games_waiting.fetch_sub(1, Relaxed);
        m.games_running.fetch_add(1, Relaxed);
        m.games_started.fetch_add(1, Relaxed);
        self.running = true;
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        let m = &self.metrics;
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
    let mut gauge = Gauge::new(Arc::clone(&cx.metrics));
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
                game.cx.host.expire(game.cx.id).then_some(Outcome {
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
                let metrics = &game.cx.metrics;
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
                self.players[side.index()] = Some(Player {
                    address: Jid::new(&jid).ok(),
                    jid,
                    bare,
                });
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
                let Ok(address) = Jid::new(&jid) else {
                    return;
                };
                let known = self.spectators.contains(&address);
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
                    self.spectators.push(address);
                }
            }
            Command::Unspectate { jid } => {
                if let Ok(address) = Jid::new(&jid) {
                    self.spectators.retain(|s| *s != address);
                }
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
        let now_ms = self.cx.clock.now_ms();
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
            .chain(self.spectators.iter().map(|s| s.as_str().to_owned()))
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
        let now_ms = self.cx.clock.ms_at(now);
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
                self.send_shared(player.address.as_ref(), payload);
            }
        }
        for spectator in &self.spectators {
            self.send_shared(Some(spectator), payload);
        }
    }

    /// Queues a headline with `payload` to `to` without waiting; counts drops.
    fn send_shared(&self, to: Option<&Jid>, payload: &SharedPayload) {
        let metrics = &self.cx.metrics;
        let sent = to.map(|to| {
            let message = SharedMessage::new(to.clone(), MessageType::Headline, payload.clone());
            self.cx.sink.try_send_shared(message)
        });
        match sent {
            Some(Ok(())) => metrics.stanzas_sent.fetch_add(1, Relaxed),
            _ => metrics.stanzas_dropped.fetch_add(1, Relaxed),
        };
    }

    /// Queues without waiting; a full queue drops the stanza (and counts it).
    fn send_now(&self, stanza: Element) {
        let metrics = &self.cx.metrics;
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
        let metrics = &self.cx.metrics;
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

    /// Ends the game: tell the host, make the result durable, then tell everyone
    /// (`recorded` says whether the result is on the leaderboard).
    async fn finish(self, outcome: Outcome) {
        self.cx.host.ended(self.cx.id);
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
            Some(result) => match self.cx.store.record(result).await {
                Ok(()) => Some(true),
                Err(error) => {
                    tracing::error!(%error, game = %self.cx.name, "could not record the result");
                    Some(false)
                }
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use tokio::sync::mpsc::UnboundedReceiver;
    use tokio::task::JoinHandle;

    use crate::leaderboard::{BrokenDisk, MemoryStore, ResultStore};
    use crate::outbound::{
        ChannelSink, StalledSink, drain_sent, next_sent, pong_action as action, pong_field as field,
    };
    use crate::protocol::NS_STANZA;

    const ALICE: &str = "alice@localhost/a";
    const BOB: &str = "bob@localhost/b";
    const CAROL: &str = "carol@localhost/c";
    const ID: u64 = 7;

    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Expire(u64),
        Ended(u64),
    }

    /// A host that writes down what the game told it. `expire` answers `expire_answer`;
    /// when that is false it first queues `late_join`, as the lobby has done when it let
    /// the second player in just as the wait ran out.
    struct TestHost {
        calls: Mutex<Vec<Call>>,
        expire_answer: AtomicBool,
        late_join: Mutex<Option<(mpsc::Sender<Command>, Command)>>,
    }

    impl Host for TestHost {
        fn expire(&self, id: u64) -> bool {
            self.calls.lock().expect("calls").push(Call::Expire(id));
            let answer = self.expire_answer.load(Relaxed);
            if !answer && let Some((inbox, join)) = self.late_join.lock().expect("join").take() {
                inbox.try_send(join).expect("room for the join");
            }
            answer
        }

        fn ended(&self, id: u64) {
            self.calls.lock().expect("calls").push(Call::Ended(id));
        }
    }

    /// One game task and everything around it.
    struct Harness {
        inbox: mpsc::Sender<Command>,
        shared: Arc<Shared>,
        host: Arc<TestHost>,
        metrics: Arc<Metrics>,
        store: Leaderboard,
        clock: Clock,
        out: UnboundedReceiver<Element>,
        task: JoinHandle<()>,
    }

    async fn start(settings: Settings) -> Harness {
        start_with(settings, Arc::new(MemoryStore::new()), None).await
    }

    /// Starts a game; `sink` replaces the channel that `out` reads.
    async fn start_with(
        settings: Settings,
        store: Arc<dyn ResultStore>,
        sink: Option<Arc<dyn Sink>>,
    ) -> Harness {
        let (tx, out) = tokio::sync::mpsc::unbounded_channel();
        let sink = sink.unwrap_or_else(|| Arc::new(ChannelSink(tx)));
        let store = Leaderboard::open(store).await.expect("leaderboard");
        let settings = Arc::new(settings);
        let shared = Arc::new(Shared::new(settings.field.paddle_start()));
        let host = Arc::new(TestHost {
            calls: Mutex::new(Vec::new()),
            expire_answer: AtomicBool::new(true),
            late_join: Mutex::new(None),
        });
        let metrics = Arc::new(Metrics::default());
        let clock = Clock::start();
        let (inbox, receiver) = mpsc::channel(16);
        let cx = Context {
            id: ID,
            name: "g".to_owned(),
            settings,
            shared: Arc::clone(&shared),
            sink,
            clock,
            metrics: Arc::clone(&metrics),
            store: store.clone(),
            host: Arc::clone(&host) as Arc<dyn Host>,
        };
        let task = tokio::spawn(run(cx, receiver));
        Harness {
            inbox,
            shared,
            host,
            metrics,
            store,
            clock,
            out,
            task,
        }
    }

    fn join(side: Side, jid: &str) -> Command {
        Command::Join {
            side,
            jid: jid.to_owned(),
        }
    }

    fn number(element: &Element, name: &str) -> f64 {
        field(element, name)
            .and_then(|n| n.parse().ok())
            .unwrap_or(f64::NAN)
    }

    impl Harness {
        async fn send(&self, command: Command) {
            self.inbox.send(command).await.expect("the game is running");
        }

        /// Both players in: Alice left, Bob right; returns once the game runs.
        async fn play(&mut self) {
            self.send(join(Side::Left, ALICE)).await;
            self.send(join(Side::Right, BOB)).await;
            self.expect(ALICE, "scoreupdate").await;
        }

        /// The next stanza to `to` with `wanted` action, skipping others.
        async fn expect(&mut self, to: &str, wanted: &str) -> Element {
            next_sent(&mut self.out, to, wanted).await
        }

        fn drain(&mut self) -> Vec<Element> {
            drain_sent(&mut self.out)
        }

        fn calls(&self) -> Vec<Call> {
            self.host.calls.lock().expect("calls").clone()
        }

        /// Waits (in simulated time, at most `limit`) for the task to end.
        async fn finished(&mut self, limit: Duration) -> bool {
            tokio::time::timeout(limit, &mut self.task).await.is_ok()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_game_starts_once_both_players_are_in_and_ticks_move_the_ball() {
        let mut h = start(Settings::default()).await;
        h.send(join(Side::Left, ALICE)).await;
        let dims = h.expect(ALICE, "dimensions").await;
        assert_eq!(field(&dims, "side").as_deref(), Some("0"));
        assert_eq!(field(&dims, "game").as_deref(), Some("g"));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(h.metrics.ticks.load(Relaxed), 0, "one player: no ticks");
        assert_eq!(h.metrics.games_waiting.load(Relaxed), 1);

        h.send(join(Side::Right, BOB)).await;
        let dims = h.expect(BOB, "dimensions").await;
        assert_eq!(field(&dims, "side").as_deref(), Some("1"));
        let score = h.expect(BOB, "scoreupdate").await;
        assert_eq!(field(&score, "player1").as_deref(), Some("0"));
        let m = h.metrics.snapshot();
        assert_eq!(
            (m.games_waiting, m.games_running, m.games_started),
            (0, 1, 1)
        );

        // During the serve delay the ball waits at the centre.
        let first = h.expect(ALICE, "ballposition").await;
        assert_eq!((number(&first, "x"), number(&first, "y")), (400.0, 300.0));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        h.drain();
        // Then each tick moves it by one step of 1/30 s at the serve speed (360/s).
        let mut previous = h.expect(ALICE, "ballposition").await;
        assert_ne!(number(&previous, "x"), 400.0, "served");
        for _ in 0..10 {
            let next = h.expect(ALICE, "ballposition").await;
            let dx = number(&next, "x") - number(&previous, "x");
            let dy = number(&next, "y") - number(&previous, "y");
            let step = dx.hypot(dy);
            assert!((step - 12.0).abs() < 0.2, "moved {step} in a tick");
            previous = next;
        }
        assert!(h.metrics.ticks.load(Relaxed) >= 40);
        assert!(h.calls().is_empty(), "still playing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leave_forfeits_fires_ended_and_the_result_is_kept_before_game_over() {
        let mut h = start(Settings::default()).await;
        h.play().await;
        h.shared.leave(Side::Right);
        let over = h.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "reason").as_deref(), Some("forfeit"));
        assert_eq!(field(&over, "winner").as_deref(), Some("alice@localhost"));
        assert_eq!(field(&over, "winnerside").as_deref(), Some("0"));
        assert_eq!(field(&over, "player2jid").as_deref(), Some("bob@localhost"));
        assert_eq!(field(&over, "recorded").as_deref(), Some("true"));
        assert_eq!(h.calls(), [Call::Ended(ID)]);
        // gameOver comes only once the result is in the store.
        assert_eq!(h.store.get("alice@localhost").map(|s| s.wins), Some(1));
        assert_eq!(h.store.get("bob@localhost").map(|s| s.losses), Some(1));
        h.expect(BOB, "gameOver").await;
        assert!(h.finished(Duration::from_secs(1)).await);
        let m = h.metrics.snapshot();
        assert_eq!((m.games_running, m.games_finished), (0, 1));
        assert_eq!(h.store.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn game_over_does_not_claim_a_result_the_store_lost() {
        let mut h = start_with(Settings::default(), Arc::new(BrokenDisk), None).await;
        h.play().await;
        h.shared.leave(Side::Right);
        let over = h.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "winner").as_deref(), Some("alice@localhost"));
        assert_eq!(field(&over, "recorded").as_deref(), Some("false"));
        let body = over
            .get_child("body", NS_STANZA)
            .map(|b| b.text())
            .unwrap_or_default();
        assert!(body.contains("could not be saved"), "{body}");
        assert!(h.store.is_empty());
        assert_eq!(h.calls(), [Call::Ended(ID)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_outbound_queue_stalls_neither_ticks_nor_the_end() {
        let mut h = start_with(
            Settings::default(),
            Arc::new(MemoryStore::new()),
            Some(Arc::new(StalledSink)),
        )
        .await;
        h.send(join(Side::Left, ALICE)).await;
        h.send(join(Side::Right, BOB)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let m = h.metrics.snapshot();
        // About a second at 30 Hz: every tick ran; nothing fitted, all was counted.
        assert!(m.ticks >= 28, "{m:?}");
        assert!(m.stanzas_dropped >= m.ticks, "{m:?}");
        assert_eq!(m.stanzas_sent, 0);
        h.shared.leave(Side::Right);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.calls(), [Call::Ended(ID)], "ended at once");
        assert_eq!(h.store.get("alice@localhost").map(|s| s.wins), Some(1));
        // gameOver waits a bounded time per recipient, then is dropped.
        assert!(
            h.finished(2 * GAME_OVER_WAIT + Duration::from_secs(1))
                .await
        );
        let ticks = h.metrics.ticks.load(Relaxed);
        assert!(h.metrics.stanzas_dropped.load(Relaxed) > m.stanzas_dropped);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            h.metrics.ticks.load(Relaxed),
            ticks,
            "no ticks after the end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_game_never_ticks_and_expires_when_the_host_agrees() {
        let mut h = start(Settings {
            wait_timeout: Duration::from_secs(10),
            ..Settings::default()
        })
        .await;
        h.send(join(Side::Left, ALICE)).await;
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(h.calls().is_empty(), "still waiting");
        let over = h.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "reason").as_deref(), Some("expired"));
        assert_eq!(field(&over, "winner"), None);
        assert_eq!(field(&over, "recorded"), None, "nothing to record");
        assert_eq!(h.calls(), [Call::Expire(ID), Call::Ended(ID)]);
        assert!(h.finished(Duration::from_secs(1)).await);
        let m = h.metrics.snapshot();
        assert_eq!((m.ticks, m.games_waiting, m.games_started), (0, 0, 0));
        assert!(h.store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_runs_out_as_the_second_player_arrives_starts_the_game() {
        let mut h = start(Settings {
            wait_timeout: Duration::from_secs(10),
            ..Settings::default()
        })
        .await;
        h.host.expire_answer.store(false, Relaxed);
        *h.host.late_join.lock().expect("join") = Some((h.inbox.clone(), join(Side::Right, BOB)));
        h.send(join(Side::Left, ALICE)).await;
        h.expect(BOB, "dimensions").await;
        h.expect(ALICE, "scoreupdate").await;
        h.expect(BOB, "ballposition").await;
        assert_eq!(h.calls(), [Call::Expire(ID)]);
        assert_eq!(h.metrics.games_running.load(Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_game_whose_inbox_closes_ends_quietly() {
        let mut h = start(Settings::default()).await;
        h.send(join(Side::Left, ALICE)).await;
        h.expect(ALICE, "dimensions").await;
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut h.inbox, closed));
        assert!(h.finished(Duration::from_secs(1)).await);
        assert!(h.drain().is_empty(), "no gameOver");
        assert!(h.calls().is_empty(), "the host already forgot it");
        assert_eq!(h.metrics.games_waiting.load(Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_players_forfeit_and_two_idle_players_abandon() {
        let settings = Settings {
            idle_timeout: Duration::from_secs(5),
            ..Settings::default()
        };
        let mut h = start(settings.clone()).await;
        h.play().await;
        // Bob keeps moving, Alice does nothing.
        for i in 0..8 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            h.shared
                .request_paddle(Side::Right, f64::from(i) * 10.0, h.clock.now_ms());
        }
        let over = h.expect(BOB, "gameOver").await;
        assert_eq!(field(&over, "reason").as_deref(), Some("idle"));
        assert_eq!(field(&over, "winner").as_deref(), Some("bob@localhost"));
        assert_eq!(h.store.get("bob@localhost").map(|s| s.wins), Some(1));

        let mut h = start(settings).await;
        h.play().await;
        let over = h.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "reason").as_deref(), Some("abandoned"));
        assert_eq!(field(&over, "winner"), None);
        assert_eq!(field(&over, "recorded"), None);
        assert!(h.store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_points_limit_ends_the_game_with_a_winner() {
        let mut h = start(Settings {
            points_to_win: 1,
            idle_timeout: Duration::from_secs(3600),
            ..Settings::default()
        })
        .await;
        h.play().await;
        // Both paddles far from the centre line: the first serve scores.
        let now = h.clock.now_ms();
        h.shared.request_paddle(Side::Left, 0.0, now);
        h.shared.request_paddle(Side::Right, 600.0, now);
        let over = h.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "reason").as_deref(), Some("points"));
        let (p1, p2) = (field(&over, "player1"), field(&over, "player2"));
        assert_eq!(
            [p1.as_deref(), p2.as_deref()]
                .iter()
                .filter(|p| **p == Some("1"))
                .count(),
            1,
            "{p1:?} {p2:?}"
        );
        assert_eq!(h.store.len(), 2);
        assert_eq!(h.calls(), [Call::Ended(ID)]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_game_without_a_result() {
        let mut h = start(Settings::default()).await;
        h.play().await;
        h.shared.shut_down();
        let over = h.expect(BOB, "gameOver").await;
        assert_eq!(field(&over, "reason").as_deref(), Some("shutdown"));
        assert_eq!(field(&over, "winner"), None);
        assert!(h.finished(Duration::from_secs(1)).await);
        assert!(h.store.is_empty());
        assert_eq!(h.calls(), [Call::Ended(ID)]);
    }

    #[tokio::test(start_paused = true)]
    async fn playing_yourself_earns_nothing() {
        let mut h = start(Settings::default()).await;
        h.send(join(Side::Left, ALICE)).await;
        h.send(join(Side::Right, "alice@localhost/other")).await;
        h.expect(ALICE, "scoreupdate").await;
        h.shared.leave(Side::Right);
        let over = h.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "winner").as_deref(), Some("alice@localhost"));
        assert_eq!(field(&over, "recorded"), None, "nothing to record");
        assert!(h.store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn paddles_move_a_bounded_step_per_tick_and_only_others_hear_of_it() {
        let mut h = start(Settings {
            max_spectators: 1,
            ..Settings::default()
        })
        .await;
        h.play().await;
        for _ in 0..2 {
            // A spectator checking in twice is held once.
            h.send(Command::Spectate {
                jid: CAROL.to_owned(),
            })
            .await;
        }
        h.send(Command::Spectate {
            jid: "dave@localhost/d".to_owned(),
        })
        .await;
        h.expect(CAROL, "dimensions").await;
        h.drain();
        h.shared.request_paddle(Side::Left, 0.0, h.clock.now_ms());
        // From 250 towards 0 at most 30 per tick.
        for (to, y) in [(BOB, "220"), (BOB, "190")] {
            let update = h.expect(to, "opponentPaddleUpdate").await;
            assert_eq!(field(&update, "y").as_deref(), Some(y));
            assert_eq!(field(&update, "side").as_deref(), Some("0"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let seen = h.drain();
        let to = |who: &str, what: &str| {
            seen.iter()
                .filter(|e| e.attr("to") == Some(who) && action(e) == what)
                .count()
        };
        assert_eq!(
            to(ALICE, "opponentPaddleUpdate"),
            0,
            "not told of her own move"
        );
        assert_eq!(
            to(BOB, "ballposition"),
            to(CAROL, "ballposition"),
            "one copy each"
        );
        assert!(to(CAROL, "ballposition") >= 28);
        assert_eq!(to("dave@localhost/d", "ballposition"), 0, "over the cap");
        assert_eq!(to("dave@localhost/d", "dimensions"), 0, "over the cap");
    }
}
