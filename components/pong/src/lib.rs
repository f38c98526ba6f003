//! XMPPong: a server-authoritative Pong game server as an XMPP external component
//! (XEP-0114), on the `xmpp-component` framework. The wire protocol is written down in
//! `docs/pong-protocol.md`.
//!
//! Modules, one job each:
//! - [`physics`]: the pure game model (field, paddles, swept ball collisions), no XMPP;
//! - [`protocol`]: parsing and building the `xmpp:game:pong` payloads;
//! - [`game`]: one task per game, owning its state, ticking at a fixed rate;
//! - [`lobby`]: matchmaking, named games, spectators, leaving, cleanup;
//! - [`leaderboard`]: wins/losses/points per bare JID, durable in sled, written by one
//!   writer task off the runtime and read from an in-memory snapshot;
//! - [`service`]: the XMPP router and its handlers;
//! - [`options`]: the server's flags and config-file keys, validated;
//! - [`stores`]: opening the durable state (sled under `--data`, or memory);
//! - [`http`]: the web client, the leaderboard and metrics over HTTP (axum);
//! - [`web`]: the browser client's embedded files, its page and Content-Security-Policy;
//! - [`profiles`]: nicknames and address opt-ins, how players appear on the leaderboard;
//! - [`metrics`]: counters and the tick-lateness histogram;
//! - [`outbound`]: the [`outbound::Sink`] games send through.

pub mod game;
pub mod http;
pub mod leaderboard;
pub mod lobby;
pub mod metrics;
pub mod options;
pub mod outbound;
pub mod physics;
pub mod profiles;
pub mod protocol;
pub mod service;
pub mod stores;
pub mod web;

pub use game::Settings;
pub use leaderboard::{Leaderboard, MemoryStore, ResultStore, SledStore};
pub use lobby::Lobby;
pub use metrics::Metrics;
pub use profiles::Profiles;
pub use service::{Frontdoor, router};
pub use web::WebClient;
