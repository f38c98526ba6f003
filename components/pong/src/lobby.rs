//! The lobby: who plays or watches which game. Matchmaking at the domain, named games at
//! `name@domain`, spectators, leaving, and cleaning up games that ended.
//!
//! All membership lives here, under one std `Mutex` that is never held across an
//! `.await`: every method is a quick, synchronous table update plus non-blocking sends to
//! game inboxes (or signals, for leaving and shutdown). A message from a JID that is not
//! a member never reaches a game: that is the anti-cheat rule, checked here.
//!
//! What one client can hold is bounded: a full JID is in at most one game; a bare JID
//! plays in at most `max_games_per_user` games (from all its resources); the server holds
//! at most `max_games`; a game waits for its second player at most `wait_timeout`.
//!
//! Every game has an address: a named game its name, a matchmade one `match-N`. Names
//! starting with `match-` (any letter case) are reserved for matchmaking: a check-in may
//! join an existing `match-N` game by its address, but cannot create one. A game task is
//! spawned at the first check-in and removes itself from the lobby when it ends; a
//! waiting game whose only player leaves is dropped here, which closes its inbox and
//! ends its task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use xmpp_component::xmpp_parsers::stanza_error::DefinedCondition;

use crate::game::{self, Clock, Command, Context, Host, Settings, Shared};
use crate::leaderboard::Leaderboard;
use crate::metrics::Metrics;
use crate::outbound::Sink;
use crate::physics::Side;

/// Capacity of a game's command inbox (joins, spectators: all rare).
const INBOX: usize = 16;
/// Game names with this prefix (any letter case) belong to matchmaking.
pub const MATCH_PREFIX: &str = "match-";

/// Whether `name` is reserved for matchmade games (`match-…`, any letter case).
pub fn is_reserved(name: &str) -> bool {
    name.get(..MATCH_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(MATCH_PREFIX))
}

/// Why the lobby refused a request; becomes a stanza error for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A named game already has two players.
    #[error("Game is currently full")]
    Full,
    /// The sender already plays in a running game elsewhere.
    #[error("You are already playing in {0}; leave it first")]
    AlreadyPlaying(String),
    /// The sender is not a player here (a stranger or a spectator moving a paddle).
    #[error("You are not a player in any game")]
    NotAPlayer,
    /// Spectators cannot move paddles.
    #[error("Spectators cannot move paddles")]
    Spectator,
    /// `spectate` needs a game address.
    #[error("Spectate a game by its address, e.g. friday@{0}")]
    NoGameAddress(String),
    /// No such game (spectate).
    #[error("No game called {0}")]
    NoSuchGame(String),
    /// Players of a game cannot watch it too.
    #[error("You are playing in this game")]
    OwnGame,
    /// The game has as many spectators as allowed.
    #[error("Too many spectators in {0}")]
    TooManySpectators(String),
    /// The game is busy (its inbox is full); try again.
    #[error("The game is busy; try again")]
    Busy,
    /// The component is not attached to a connection yet, or is stopping.
    #[error("The game server is starting or stopping; try again")]
    NotReady,
    /// The sender's account already plays in as many games as allowed.
    #[error("Your account already plays in {0} games (the most allowed); leave one first")]
    TooManyGames(usize),
    /// The server holds as many games as allowed.
    #[error("The game server is full; try again later")]
    ServerFull,
    /// A check-in tried to create a game with a name reserved for matchmaking.
    #[error(
        "Game names starting with match- are reserved for matchmaking; check in at the domain or choose another name"
    )]
    ReservedName,
}

impl Refusal {
    /// The stanza error condition for this refusal.
    pub fn condition(&self) -> DefinedCondition {
        match self {
            Refusal::Full | Refusal::AlreadyPlaying(_) => DefinedCondition::Conflict,
            Refusal::NotAPlayer | Refusal::Spectator | Refusal::OwnGame => {
                DefinedCondition::NotAllowed
            }
            Refusal::NoGameAddress(_) => DefinedCondition::BadRequest,
            Refusal::NoSuchGame(_) => DefinedCondition::ItemNotFound,
            Refusal::ReservedName => DefinedCondition::NotAcceptable,
            Refusal::TooManySpectators(_)
            | Refusal::Busy
            | Refusal::NotReady
            | Refusal::TooManyGames(_)
            | Refusal::ServerFull => DefinedCondition::ResourceConstraint,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Player(Side),
    Spectator,
}

#[derive(Debug, Clone, Copy)]
struct Member {
    game: u64,
    role: Role,
}

struct Entry {
    name: String,
    inbox: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    players: [Option<String>; 2],
    spectators: usize,
}

impl Entry {
    fn is_full(&self) -> bool {
        self.players.iter().all(Option::is_some)
    }

    fn free_side(&self) -> Option<Side> {
        self.players
            .iter()
            .position(Option::is_none)
            .and_then(Side::from_index)
    }
}

#[derive(Default)]
struct State {
    games: HashMap<u64, Entry>,
    by_name: HashMap<String, u64>,
    members: HashMap<String, Member>,
    /// Player places held per bare JID (every game's `players`, until the game is gone).
    places: HashMap<String, usize>,
    /// The matchmade game waiting for its second player, if any.
    matchmaking: Option<u64>,
    next_id: u64,
}

impl State {
    fn places_of(&self, bare: &str) -> usize {
        self.places.get(bare).copied().unwrap_or(0)
    }

    fn add_place(&mut self, jid: &str) {
        *self
            .places
            .entry(game::bare_of(jid).to_owned())
            .or_insert(0) += 1;
    }

    fn remove_place(&mut self, jid: &str) {
        let bare = game::bare_of(jid);
        if let Some(n) = self.places.get_mut(bare) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.places.remove(bare);
            }
        }
    }
}

/// A game waiting for an opponent (for disco#items).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The game's name (the node of its address).
    pub name: String,
    /// The bare JID of the player waiting there.
    pub player: String,
}

/// Membership of every game, and the factory of game tasks.
pub struct Lobby {
    state: Mutex<State>,
    settings: Arc<Settings>,
    store: Leaderboard,
    metrics: Arc<Metrics>,
    sink: OnceLock<Arc<dyn Sink>>,
    domain: String,
    clock: Clock,
    /// Set once shutdown began: no new games.
    closing: AtomicBool,
}

impl std::fmt::Debug for Lobby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lobby")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

fn lock(mutex: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update below completes or leaves the maps untouched before it could panic,
    // so a poisoned lock still guards consistent tables.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Lobby {
    /// A lobby for the component `domain`; games send through the sink given to
    /// [`Lobby::attach`].
    pub fn new(
        domain: &str,
        settings: Settings,
        store: Leaderboard,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Lobby {
            state: Mutex::new(State::default()),
            settings: Arc::new(settings),
            store,
            metrics,
            sink: OnceLock::new(),
            domain: domain.to_owned(),
            clock: Clock::start(),
            closing: AtomicBool::new(false),
        })
    }

    /// Connects the lobby to where games send (the component's handle). Once only.
    pub fn attach(&self, sink: Arc<dyn Sink>) {
        if self.sink.set(sink).is_err() {
            tracing::warn!("lobby already attached; ignoring a second sink");
        }
    }

    /// The component's domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The game rules.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The shared counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The leaderboard.
    pub fn store(&self) -> &Leaderboard {
        &self.store
    }

    /// Games and members currently known (for tests and leak checks).
    pub fn counts(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.games.len(), state.members.len())
    }

    /// Player places the bare JID `bare` holds (for tests and limits checks).
    pub fn places_of(&self, bare: &str) -> usize {
        lock(&self.state).places_of(bare)
    }

    /// Check-in from the full JID `from` at game `target` (`None` = matchmaking).
    /// Returns the game's name.
    pub fn check_in(self: &Arc<Self>, from: &str, target: Option<&str>) -> Result<String, Refusal> {
        if self.closing.load(Relaxed) {
            return Err(Refusal::NotReady);
        }
        let sink = self.sink.get().ok_or(Refusal::NotReady)?;
        let mut state = lock(&self.state);
        if let Some(name) = target
            && is_reserved(name)
            && !state.by_name.contains_key(name)
        {
            return Err(Refusal::ReservedName);
        }
        if let Some(member) = state.members.get(from).copied() {
            let same_target = state.games.get(&member.game).is_some_and(|g| match target {
                Some(name) => g.name == name,
                None => state.matchmaking == Some(member.game) || g.name.starts_with("match-"),
            });
            match member.role {
                Role::Player(_) if same_target => {
                    // Checking in again (a reconnecting book client): resend dimensions.
                    if let Some(game) = state.games.get(&member.game) {
                        let _ = game.inbox.try_send(Command::Resend {
                            jid: from.to_owned(),
                        });
                        return Ok(game.name.clone());
                    }
                }
                Role::Player(side) => {
                    let game = state.games.get(&member.game);
                    if game.is_some_and(Entry::is_full) {
                        let name = game.map(|g| g.name.clone()).unwrap_or_default();
                        return Err(Refusal::AlreadyPlaying(name));
                    }
                    // Waiting alone elsewhere: move.
                    Self::drop_player(&mut state, from, member.game, side);
                }
                Role::Spectator => Self::drop_spectator(&mut state, from, member.game),
            }
        }
        let held = state.places_of(game::bare_of(from));
        if held >= self.settings.max_games_per_user {
            return Err(Refusal::TooManyGames(held));
        }
        let existing = match target {
            None => state.matchmaking.filter(|id| state.games.contains_key(id)),
            Some(name) => state.by_name.get(name).copied(),
        };
        let id = match existing {
            Some(id) => id,
            None if state.games.len() >= self.settings.max_games => {
                return Err(Refusal::ServerFull);
            }
            None => {
                let name = match target {
                    Some(name) => name.to_owned(),
                    None => format!("{MATCH_PREFIX}{}", state.next_id),
                };
                let id = self.create(&mut state, sink, name);
                if target.is_none() {
                    state.matchmaking = Some(id);
                }
                id
            }
        };
        let Some(game) = state.games.get_mut(&id) else {
            return Err(Refusal::Busy);
        };
        let Some(side) = game.free_side() else {
            return Err(Refusal::Full);
        };
        let joined = game.inbox.try_send(Command::Join {
            side,
            jid: from.to_owned(),
        });
        if joined.is_err() {
            if game.players.iter().all(Option::is_none) {
                Self::forget(&mut state, id);
            }
            return Err(Refusal::Busy);
        }
        game.players[side.index()] = Some(from.to_owned());
        let name = game.name.clone();
        let full = game.is_full();
        state.add_place(from);
        if full && state.matchmaking == Some(id) {
            state.matchmaking = None;
        }
        state.members.insert(
            from.to_owned(),
            Member {
                game: id,
                role: Role::Player(side),
            },
        );
        tracing::debug!(player = from, game = %name, side = side.index(), "checked in");
        Ok(name)
    }

    /// Spectate request from `from` for the game `target`.
    pub fn spectate(&self, from: &str, target: Option<&str>) -> Result<String, Refusal> {
        let name = target.ok_or_else(|| Refusal::NoGameAddress(self.domain.clone()))?;
        let mut state = lock(&self.state);
        let id = state
            .by_name
            .get(name)
            .copied()
            .ok_or_else(|| Refusal::NoSuchGame(name.to_owned()))?;
        match state.members.get(from).copied() {
            Some(Member {
                game,
                role: Role::Spectator,
            }) if game == id => {
                if let Some(entry) = state.games.get(&id) {
                    let _ = entry.inbox.try_send(Command::Resend {
                        jid: from.to_owned(),
                    });
                }
                return Ok(name.to_owned());
            }
            Some(Member {
                game,
                role: Role::Player(_),
            }) if game == id => {
                return Err(Refusal::OwnGame);
            }
            Some(Member {
                game,
                role: Role::Player(_),
            }) => {
                let playing = state.games.get(&game);
                return Err(Refusal::AlreadyPlaying(
                    playing.map(|g| g.name.clone()).unwrap_or_default(),
                ));
            }
            Some(Member {
                game,
                role: Role::Spectator,
            }) => {
                Self::drop_spectator(&mut state, from, game);
            }
            None => {}
        }
        let max = self.settings.max_spectators;
        let Some(entry) = state.games.get_mut(&id) else {
            return Err(Refusal::NoSuchGame(name.to_owned()));
        };
        if entry.spectators >= max {
            return Err(Refusal::TooManySpectators(name.to_owned()));
        }
        entry
            .inbox
            .try_send(Command::Spectate {
                jid: from.to_owned(),
            })
            .map_err(|_| Refusal::Busy)?;
        entry.spectators += 1;
        state.members.insert(
            from.to_owned(),
            Member {
                game: id,
                role: Role::Spectator,
            },
        );
        Ok(name.to_owned())
    }

    /// A paddle request from `from`. Only a player moves, and only their own paddle.
    pub fn paddle(&self, from: &str, y: f64) -> Result<(), Refusal> {
        let now = self.clock.now_ms();
        let state = lock(&self.state);
        let member = state.members.get(from).ok_or(Refusal::NotAPlayer)?;
        let Role::Player(side) = member.role else {
            return Err(Refusal::Spectator);
        };
        let game = state.games.get(&member.game).ok_or(Refusal::NotAPlayer)?;
        game.shared.request_paddle(side, y, now);
        Ok(())
    }

    /// `from` left (a `leave` action, unavailable presence, or a bounce). A player of a
    /// running game forfeits; a waiting game is dropped. Returns whether `from` was in.
    pub fn leave(&self, from: &str) -> bool {
        let mut state = lock(&self.state);
        let Some(member) = state.members.get(from).copied() else {
            return false;
        };
        match member.role {
            Role::Player(side) => Self::drop_player(&mut state, from, member.game, side),
            Role::Spectator => Self::drop_spectator(&mut state, from, member.game),
        }
        tracing::debug!(who = from, "left");
        true
    }

    /// Games that wait for an opponent.
    pub fn waiting(&self) -> Vec<Waiting> {
        let state = lock(&self.state);
        let mut waiting: Vec<Waiting> = state
            .games
            .values()
            .filter(|g| !g.is_full())
            .filter_map(|g| {
                let player = g.players.iter().flatten().next()?;
                Some(Waiting {
                    name: g.name.clone(),
                    player: game::bare_of(player).to_owned(),
                })
            })
            .collect();
        waiting.sort_by(|a, b| a.name.cmp(&b.name));
        waiting
    }

    /// Ends every game (reason `shutdown`, nothing recorded) and waits up to `grace` for
    /// their last messages to be queued and for results already being written.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.store(true, Relaxed);
        {
            let state = lock(&self.state);
            for game in state.games.values() {
                game.shared.shut_down();
            }
        }
        let deadline = Instant::now() + grace;
        while (self.counts().0 > 0 || self.store.pending() > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn forget(state: &mut State, id: u64) {
        if let Some(entry) = state.games.remove(&id) {
            if state.by_name.get(&entry.name) == Some(&id) {
                state.by_name.remove(&entry.name);
            }
            state.members.retain(|_, m| m.game != id);
            for player in entry.players.iter().flatten() {
                state.remove_place(player);
            }
        }
        if state.matchmaking == Some(id) {
            state.matchmaking = None;
        }
    }

    fn drop_player(state: &mut State, from: &str, id: u64, side: Side) {
        state.members.remove(from);
        let Some(game) = state.games.get_mut(&id) else {
            return;
        };
        if game.is_full() {
            // Running: the game ends by forfeit and removes itself. A signal, not an
            // inbox command, so a full inbox cannot lose it.
            game.shared.leave(side);
        } else {
            // Waiting alone: nobody is left, drop it (its task ends with the inbox).
            Self::forget(state, id);
        }
    }

    fn drop_spectator(state: &mut State, from: &str, id: u64) {
        state.members.remove(from);
        if let Some(game) = state.games.get_mut(&id) {
            game.spectators = game.spectators.saturating_sub(1);
            let _ = game.inbox.try_send(Command::Unspectate {
                jid: from.to_owned(),
            });
        }
    }

    fn create(self: &Arc<Self>, state: &mut State, sink: &Arc<dyn Sink>, name: String) -> u64 {
        let id = state.next_id;
        state.next_id += 1;
        let (inbox, receiver) = mpsc::channel(INBOX);
        let shared = Arc::new(Shared::new(self.settings.field.paddle_start()));
        let cx = Context {
            id,
            name: name.clone(),
            settings: Arc::clone(&self.settings),
            shared: Arc::clone(&shared),
            sink: Arc::clone(sink),
            clock: self.clock,
            metrics: Arc::clone(&self.metrics),
            store: self.store.clone(),
            host: Arc::clone(self) as Arc<dyn Host>,
        };
        tokio::spawn(game::run(cx, receiver));
        state.by_name.insert(name.clone(), id);
        state.games.insert(
            id,
            Entry {
                name,
                inbox,
                shared,
                players: [None, None],
                spectators: 0,
            },
        );
        id
    }
}

impl Host for Lobby {
    /// Forgets a waiting game at its wait timeout, unless its second player has just been
    /// let in (then their join is in its inbox).
    fn expire(&self, id: u64) -> bool {
        let mut state = lock(&self.state);
        if state.games.get(&id).is_some_and(Entry::is_full) {
            return false;
        }
        Self::forget(&mut state, id);
        true
    }

    /// Forgets a game that ended, and everyone in it.
    fn ended(&self, id: u64) {
        Self::forget(&mut lock(&self.state), id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaderboard::{MemoryStore, ResultStore};
    use crate::outbound::{ChannelSink, StalledSink, drain_sent, next_sent, pong_field as field};
    use tokio::sync::mpsc::UnboundedReceiver;
    use xmpp_component::minidom::Element;

    const ALICE: &str = "alice@localhost/a";
    const BOB: &str = "bob@localhost/b";
    const CAROL: &str = "carol@localhost/c";

    struct Setup {
        lobby: Arc<Lobby>,
        out: UnboundedReceiver<Element>,
        store: Leaderboard,
    }

    async fn setup(settings: Settings) -> Setup {
        setup_with(settings, Arc::new(MemoryStore::new())).await
    }

    async fn setup_with(settings: Settings, store: Arc<dyn ResultStore>) -> Setup {
        let (tx, out) = tokio::sync::mpsc::unbounded_channel();
        let (lobby, store) = lobby_with(settings, store, Arc::new(ChannelSink(tx))).await;
        Setup { lobby, out, store }
    }

    async fn lobby_with(
        settings: Settings,
        store: Arc<dyn ResultStore>,
        sink: Arc<dyn Sink>,
    ) -> (Arc<Lobby>, Leaderboard) {
        let store = Leaderboard::open(store).await.expect("leaderboard");
        let lobby = Lobby::new(
            "pong.localhost",
            settings,
            store.clone(),
            Arc::new(Metrics::default()),
        );
        lobby.attach(sink);
        (lobby, store)
    }

    use crate::leaderboard::BrokenDisk;

    impl Setup {
        /// The next stanza to `to` with `wanted` action, skipping others.
        async fn expect(&mut self, to: &str, wanted: &str) -> Element {
            next_sent(&mut self.out, to, wanted).await
        }

        fn drain(&mut self) -> Vec<Element> {
            drain_sent(&mut self.out)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn matchmaking_pairs_two_players_and_the_ball_moves() {
        let mut s = setup(Settings::default()).await;
        assert_eq!(s.lobby.check_in(ALICE, None).as_deref(), Ok("match-0"));
        let dims = s.expect(ALICE, "dimensions").await;
        assert_eq!(field(&dims, "side").as_deref(), Some("0"));
        assert_eq!(s.lobby.waiting().len(), 1);
        assert_eq!(s.lobby.check_in(BOB, None).as_deref(), Ok("match-0"));
        let dims = s.expect(BOB, "dimensions").await;
        assert_eq!(field(&dims, "side").as_deref(), Some("1"));
        assert!(s.lobby.waiting().is_empty());
        s.expect(ALICE, "scoreupdate").await;
        let first = s.expect(BOB, "ballposition").await;
        // After the serve delay the ball leaves the centre.
        tokio::time::sleep(Duration::from_secs(2)).await;
        s.drain();
        let later = s.expect(BOB, "ballposition").await;
        assert_ne!(field(&first, "x"), field(&later, "x"));
        // A third player starts a new matchmade game.
        assert_eq!(s.lobby.check_in(CAROL, None).as_deref(), Ok("match-1"));
    }

    #[tokio::test(start_paused = true)]
    async fn named_games_refuse_a_third_player_and_strangers() {
        let mut s = setup(Settings::default()).await;
        s.lobby.check_in(ALICE, Some("friday")).expect("alice");
        s.lobby.check_in(BOB, Some("friday")).expect("bob");
        assert_eq!(s.lobby.check_in(CAROL, Some("friday")), Err(Refusal::Full));
        assert_eq!(Refusal::Full.to_string(), "Game is currently full");
        assert_eq!(s.lobby.paddle(CAROL, 10.0), Err(Refusal::NotAPlayer));
        s.lobby.spectate(CAROL, Some("friday")).expect("spectate");
        assert_eq!(s.lobby.paddle(CAROL, 10.0), Err(Refusal::Spectator));
        assert_eq!(
            s.lobby.spectate(ALICE, Some("friday")),
            Err(Refusal::OwnGame)
        );
        assert!(matches!(
            s.lobby.spectate(CAROL, None),
            Err(Refusal::NoGameAddress(_))
        ));
        assert!(matches!(
            s.lobby.spectate(CAROL, Some("nope")),
            Err(Refusal::NoSuchGame(_))
        ));
        assert!(matches!(
            s.lobby.check_in(ALICE, Some("other")),
            Err(Refusal::AlreadyPlaying(_))
        ));
        let dims = s.expect(CAROL, "dimensions").await;
        assert_eq!(field(&dims, "role").as_deref(), Some("spectator"));
        s.expect(CAROL, "ballposition").await;
    }

    #[tokio::test(start_paused = true)]
    async fn paddle_moves_reach_the_opponent_limited_per_tick() {
        let mut s = setup(Settings::default()).await;
        s.lobby.check_in(ALICE, Some("g")).expect("alice");
        s.lobby.check_in(BOB, Some("g")).expect("bob");
        s.expect(BOB, "scoreupdate").await;
        s.lobby.paddle(ALICE, 0.0).expect("alice moves");
        // From 250 to 0 at most 30 per tick: 220, 190, ...
        let first = s.expect(BOB, "opponentPaddleUpdate").await;
        assert_eq!(field(&first, "y").as_deref(), Some("220"));
        assert_eq!(field(&first, "side").as_deref(), Some("0"));
        let second = s.expect(BOB, "opponentPaddleUpdate").await;
        assert_eq!(field(&second, "y").as_deref(), Some("190"));
        // Requests past the bottom are clamped to keep the paddle inside.
        s.lobby.paddle(BOB, 600.0).expect("bob moves");
        let mut seen = Vec::new();
        while seen.last().map(String::as_str) != Some("500") && seen.len() < 20 {
            seen.push(
                field(&s.expect(ALICE, "opponentPaddleUpdate").await, "y").unwrap_or_default(),
            );
        }
        assert_eq!(seen.first().map(String::as_str), Some("280"));
        assert_eq!(seen.len(), 9, "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_forfeits_and_the_result_is_stored_before_game_over() {
        let mut s = setup(Settings::default()).await;
        s.lobby.check_in(ALICE, None).expect("alice");
        s.lobby.check_in(BOB, None).expect("bob");
        s.expect(ALICE, "scoreupdate").await;
        assert!(s.lobby.leave(BOB));
        let over = s.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "winner").as_deref(), Some("alice@localhost"));
        assert_eq!(field(&over, "reason").as_deref(), Some("forfeit"));
        assert_eq!(field(&over, "recorded").as_deref(), Some("true"));
        // gameOver is only sent once the result is in the store.
        assert_eq!(s.store.get("alice@localhost").map(|st| st.wins), Some(1));
        assert_eq!(s.store.get("bob@localhost").map(|st| st.losses), Some(1));
        assert_eq!(s.lobby.counts(), (0, 0));
        assert!(!s.lobby.leave(BOB), "already gone");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_alone_and_leaving_cleans_up() {
        let s = setup(Settings::default()).await;
        s.lobby.check_in(ALICE, Some("lonely")).expect("alice");
        assert_eq!(s.lobby.counts(), (1, 1));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(s.lobby.metrics().games_waiting.load(Relaxed), 1);
        s.lobby.leave(ALICE);
        assert_eq!(s.lobby.counts(), (0, 0));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(s.lobby.metrics().games_waiting.load(Relaxed), 0);
        assert!(s.store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_player_forfeits() {
        let mut s = setup(Settings {
            idle_timeout: Duration::from_secs(5),
            ..Settings::default()
        })
        .await;
        s.lobby.check_in(ALICE, None).expect("alice");
        s.lobby.check_in(BOB, None).expect("bob");
        s.expect(ALICE, "scoreupdate").await;
        // Bob keeps moving, Alice does nothing.
        for i in 0..8 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = s.lobby.paddle(BOB, f64::from(i) * 10.0);
        }
        let over = s.expect(BOB, "gameOver").await;
        assert_eq!(field(&over, "reason").as_deref(), Some("idle"));
        assert_eq!(field(&over, "winner").as_deref(), Some("bob@localhost"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_game_runs_to_the_points_limit() {
        let mut s = setup(Settings {
            points_to_win: 2,
            idle_timeout: Duration::from_secs(3600),
            ..Settings::default()
        })
        .await;
        s.lobby.check_in(ALICE, None).expect("alice");
        s.lobby.check_in(BOB, None).expect("bob");
        // Alice hides at the top, Bob at the bottom: points happen.
        s.lobby.paddle(ALICE, 0.0).expect("alice");
        s.lobby.paddle(BOB, 600.0).expect("bob");
        let over = s.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "reason").as_deref(), Some("points"));
        let (p1, p2) = (field(&over, "player1"), field(&over, "player2"));
        assert!(
            p1.as_deref() == Some("2") || p2.as_deref() == Some("2"),
            "{p1:?} {p2:?}"
        );
        assert_eq!(s.store.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_every_game_without_results() {
        let mut s = setup(Settings::default()).await;
        s.lobby.check_in(ALICE, None).expect("alice");
        s.lobby.check_in(BOB, None).expect("bob");
        s.lobby.check_in(CAROL, Some("waiting")).expect("carol");
        s.lobby.shutdown(Duration::from_secs(2)).await;
        assert_eq!(s.lobby.counts(), (0, 0));
        let over = s.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "reason").as_deref(), Some("shutdown"));
        assert!(s.store.is_empty());
        assert_eq!(s.lobby.check_in(ALICE, None), Err(Refusal::NotReady));
    }

    /// 100,000 games, each started and ended by a forfeit: afterwards no game, member or
    /// task is left, and the gauges are back to zero.
    #[tokio::test(start_paused = true)]
    async fn no_task_or_memory_leak_after_100k_games() {
        // Each account plays in about ten games of a batch at once.
        let mut s = setup(Settings {
            max_games_per_user: 64,
            ..Settings::default()
        })
        .await;
        let runtime = tokio::runtime::Handle::current();
        let baseline = runtime.metrics().num_alive_tasks();
        const GAMES: usize = 100_000;
        const BATCH: usize = 1_000;
        for batch in 0..GAMES / BATCH {
            for i in 0..BATCH {
                let n = batch * BATCH + i;
                let a = format!("p{}@localhost/r{n}", n % 97);
                let b = format!("q{}@localhost/r{n}", n % 89);
                s.lobby.check_in(&a, None).expect("a");
                s.lobby.check_in(&b, None).expect("b");
                s.lobby.leave(&b);
            }
            // Let the games end, then throw their output away.
            while s.lobby.counts().0 > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            s.drain();
        }
        // The last results may still be on a blocking thread: wait in real time.
        for _ in 0..1000 {
            if runtime.metrics().num_alive_tasks() <= baseline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            tokio::task::yield_now().await;
        }
        assert_eq!(s.lobby.counts(), (0, 0));
        assert_eq!(
            runtime.metrics().num_alive_tasks(),
            baseline,
            "game tasks left behind"
        );
        let m = s.lobby.metrics().snapshot();
        assert_eq!((m.games_running, m.games_waiting), (0, 0));
        assert_eq!(m.games_finished, GAMES as u64);
        let state = lock(&s.lobby.state);
        assert!(state.games.capacity() < 4 * BATCH, "tables stay bounded");
        assert!(state.places.is_empty(), "{:?}", state.places);
        assert_eq!(s.store.len(), 97 + 89);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_game_never_ticks_and_expires() {
        let mut s = setup(Settings {
            wait_timeout: Duration::from_secs(10),
            ..Settings::default()
        })
        .await;
        s.lobby.check_in(ALICE, Some("lonely")).expect("alice");
        s.expect(ALICE, "dimensions").await;
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(s.lobby.counts(), (1, 1), "still waiting");
        let over = s.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "reason").as_deref(), Some("expired"));
        assert_eq!(field(&over, "winner"), None);
        assert_eq!(field(&over, "recorded"), None, "nothing to record");
        assert_eq!(s.lobby.counts(), (0, 0));
        assert_eq!(s.lobby.places_of("alice@localhost"), 0);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let m = s.lobby.metrics().snapshot();
        assert_eq!(
            (m.ticks, m.games_waiting),
            (0, 0),
            "a waiting game never ticks"
        );
        assert!(s.store.is_empty());
        // The name is free again.
        s.lobby.check_in(BOB, Some("lonely")).expect("bob");
        assert_eq!(
            field(&s.expect(BOB, "dimensions").await, "side").as_deref(),
            Some("0")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_account_plays_in_a_bounded_number_of_games() {
        let mut s = setup(Settings {
            max_games_per_user: 3,
            ..Settings::default()
        })
        .await;
        for r in 1..=3 {
            s.lobby
                .check_in(&format!("alice@localhost/r{r}"), Some(&format!("g{r}")))
                .expect("within the limit");
        }
        let refused = s.lobby.check_in("alice@localhost/r4", Some("g4"));
        assert_eq!(refused, Err(Refusal::TooManyGames(3)));
        assert_eq!(
            Refusal::TooManyGames(3).condition(),
            DefinedCondition::ResourceConstraint
        );
        assert_eq!(
            s.lobby.check_in("alice@localhost/r4", None),
            Err(Refusal::TooManyGames(3)),
            "matchmaking counts too"
        );
        assert_eq!(s.lobby.places_of("alice@localhost"), 3);
        assert_eq!(s.lobby.counts(), (3, 3));
        // Others are not affected, and leaving one frees a place.
        s.lobby.check_in(BOB, Some("g4")).expect("bob");
        s.lobby.leave("alice@localhost/r1");
        s.lobby
            .check_in("alice@localhost/r4", Some("g4"))
            .expect("a place is free again");
        let dims = s.expect("alice@localhost/r4", "dimensions").await;
        assert_eq!(field(&dims, "side").as_deref(), Some("1"));
        assert_eq!(s.lobby.places_of("alice@localhost"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_holds_a_bounded_number_of_games() {
        let s = setup(Settings {
            max_games: 2,
            ..Settings::default()
        })
        .await;
        s.lobby.check_in(ALICE, Some("one")).expect("alice");
        s.lobby.check_in(BOB, None).expect("bob");
        assert_eq!(
            s.lobby.check_in(CAROL, Some("three")),
            Err(Refusal::ServerFull)
        );
        assert_eq!(s.lobby.check_in(CAROL, None).as_deref(), Ok("match-1"));
        assert_eq!(s.lobby.counts(), (2, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn match_names_are_reserved_for_matchmaking() {
        let mut s = setup(Settings::default()).await;
        for name in ["match-0", "match-7", "MATCH-1", "Match-x", "match-"] {
            assert_eq!(
                s.lobby.check_in(ALICE, Some(name)),
                Err(Refusal::ReservedName),
                "{name}"
            );
        }
        assert_eq!(
            Refusal::ReservedName.condition(),
            DefinedCondition::NotAcceptable
        );
        assert_eq!(s.lobby.counts(), (0, 0), "a refusal creates nothing");
        // Matchmaking creates match-N; its address may be used to join it.
        assert_eq!(s.lobby.check_in(ALICE, None).as_deref(), Ok("match-0"));
        assert_eq!(
            s.lobby.check_in(BOB, Some("match-0")).as_deref(),
            Ok("match-0")
        );
        s.expect(BOB, "scoreupdate").await;
        // A name that only looks alike is an ordinary named game.
        assert_eq!(
            s.lobby.check_in(CAROL, Some("matchbox")).as_deref(),
            Ok("matchbox")
        );
        assert_eq!(
            s.lobby.check_in("dave@localhost/d", None).as_deref(),
            Ok("match-2")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_leave_is_not_lost_when_the_inbox_is_full_and_ticks_stop() {
        let mut s = setup(Settings::default()).await;
        s.lobby.check_in(ALICE, Some("g")).expect("alice");
        s.lobby.check_in(BOB, Some("g")).expect("bob");
        s.expect(ALICE, "scoreupdate").await;
        // Checking in again and again fills the game's inbox with re-sends ...
        for _ in 0..4 * INBOX {
            s.lobby.check_in(ALICE, Some("g")).expect("re-check-in");
        }
        // ... and the leave still gets through, at once.
        assert!(s.lobby.leave(BOB));
        let over = tokio::time::timeout(Duration::from_secs(1), s.expect(ALICE, "gameOver"))
            .await
            .expect("the forfeit is not lost");
        assert_eq!(field(&over, "reason").as_deref(), Some("forfeit"));
        assert_eq!(field(&over, "winner").as_deref(), Some("alice@localhost"));
        assert_eq!(s.lobby.counts(), (0, 0));
        // Nobody is in: no more ticks.
        let ticks = s.lobby.metrics().ticks.load(Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(s.lobby.metrics().ticks.load(Relaxed), ticks);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_outbound_queue_delays_neither_ticks_nor_leave_nor_shutdown() {
        let (lobby, store) = lobby_with(
            Settings::default(),
            Arc::new(MemoryStore::new()),
            Arc::new(StalledSink),
        )
        .await;
        lobby.check_in(ALICE, Some("g")).expect("alice");
        lobby.check_in(BOB, Some("g")).expect("bob");
        lobby.check_in(CAROL, Some("h")).expect("carol");
        lobby.check_in("dave@localhost/d", Some("h")).expect("dave");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let m = lobby.metrics().snapshot();
        // Two games at 30 Hz for about a second: every tick ran, and what it could not
        // queue was dropped and counted.
        assert!(m.ticks >= 50, "{m:?}");
        assert!(m.stanzas_dropped >= m.ticks, "{m:?}");
        assert_eq!(m.stanzas_sent, 0);
        assert!(lobby.leave(BOB));
        let ended = tokio::time::timeout(Duration::from_secs(1), async {
            while store.get("alice@localhost").is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(ended.is_ok(), "the leave waited for the queue");
        assert_eq!(store.get("bob@localhost").map(|s| s.losses), Some(1));
        tokio::time::timeout(
            Duration::from_secs(1),
            lobby.shutdown(Duration::from_secs(10)),
        )
        .await
        .expect("shutdown waited for the queue");
        assert_eq!(lobby.counts(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn game_over_does_not_claim_a_result_the_store_lost() {
        let mut s = setup_with(Settings::default(), Arc::new(BrokenDisk)).await;
        s.lobby.check_in(ALICE, None).expect("alice");
        s.lobby.check_in(BOB, None).expect("bob");
        s.expect(ALICE, "scoreupdate").await;
        assert!(s.lobby.leave(BOB));
        let over = s.expect(ALICE, "gameOver").await;
        assert_eq!(field(&over, "winner").as_deref(), Some("alice@localhost"));
        assert_eq!(field(&over, "recorded").as_deref(), Some("false"));
        let body = over
            .get_child("body", crate::protocol::NS_STANZA)
            .map(|b| b.text())
            .unwrap_or_default();
        assert!(body.contains("could not be saved"), "{body}");
        assert!(s.store.is_empty());
    }
}
