//! The XMPP face of the game server: the [`Router`] with its handlers, which share one
//! [`Frontdoor`]. Each handler turns a stanza into a lobby call and a refusal into a
//! stanza error; none of them waits on a game, so the framework runs them inline on its
//! reader.
//!
//! - message with a payload in `xmpp:game:pong` (a namespace route), read as a
//!   [`Payload`]: check in (with the player's nickname, XEP-0172), spectate, leave, move
//!   a paddle;
//! - chat message with a `<body>` and no game payload (a person typing to the game server):
//!   a short help text with the web client's address;
//! - message `type='error'` from a member (our messages bounce): that member left;
//! - presence `unavailable` (or a presence error) from a member: that member left;
//! - IQ get [`LeaderboardQuery`] (a typed route): the leaderboard as [`LeaderboardRows`];
//! - disco#items: games waiting for an opponent.

use std::sync::Arc;

use xmpp_component::minidom::Element;
use xmpp_component::minidom::rxml::{Namespace, NcName};
use xmpp_component::xmpp_parsers::disco::Item;
use xmpp_component::xmpp_parsers::jid::Jid;
use xmpp_component::xmpp_parsers::message::{Message, MessageType};
use xmpp_component::xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_component::xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};
use xmpp_component::{Handle, IqRequest, Request, Router, SendError, State, stanza_error};

use crate::leaderboard::Entry;
use crate::lobby::Lobby;
use crate::profiles::Profiles;
use crate::protocol::{
    self, LeaderboardQuery, LeaderboardRows, NS, Payload, PlayerRow, ProtocolError,
};

/// Default and largest number of rows a leaderboard query returns.
const LEADERBOARD_DEFAULT: usize = 20;
const LEADERBOARD_MAX: usize = 100;

/// What the handlers share.
#[derive(Debug)]
pub struct Frontdoor {
    /// Who plays or watches which game.
    pub lobby: Arc<Lobby>,
    /// Nicknames and address opt-ins from check-ins, for the public leaderboard.
    pub profiles: Arc<Profiles>,
    /// The web client's address (`http://…/`), told to people who chat with the server.
    pub web_url: Option<String>,
}

/// The component's router: identity `component/generic` "XMPPong" (the disco registry
/// has no game category; `client/game` is for clients), feature `xmpp:game:pong`.
pub fn router(frontdoor: Frontdoor) -> Router {
    Router::with_state(frontdoor)
        .identity("component", "generic", "XMPPong")
        .software("xmpp-pong", env!("CARGO_PKG_VERSION"))
        .feature(NS)
        .message_ns(NS, game_message)
        .message(other_message)
        .presence(presence_handler)
        .get(leaderboard)
        .disco_items(disco_items)
        .into()
}

/// A message with an `xmpp:game:pong` payload: a request to act on, or one of ours that
/// bounced.
async fn game_message(
    door: State<Frontdoor>,
    handle: Handle,
    message: Message,
) -> Result<(), SendError> {
    let Some(from) = message.from.as_ref().map(Jid::to_string) else {
        return Ok(());
    };
    if bounced(&door.lobby, &message, &from) {
        return Ok(());
    }
    let Some(element) = protocol::find_payload(&message.payloads) else {
        // Something else in our namespace: not a game request.
        return help(&handle, &door, &message).await;
    };
    let Err((condition, text)) = act(&door, &message, &from, element) else {
        return Ok(());
    };
    tracing::debug!(sender = %from, %text, "refused");
    let mut error = protocol::error_message(
        &from,
        message.id.as_ref().map(|id| id.0.as_str()),
        Some(element),
        condition,
        &text,
    );
    if let Some(to) = &message.to {
        // Answer from the address that was written to (e.g. friday@pong.example).
        if let Ok(name) = NcName::try_from("from") {
            error
                .attrs_mut()
                .insert(Namespace::NONE, name, to.to_string());
        }
    }
    handle.send(error).await
}

/// Carries out the `<pong/>` request `element` of `message` from `from`; the error
/// condition and text of a refusal.
fn act(
    door: &Frontdoor,
    message: &Message,
    from: &str,
    element: &Element,
) -> Result<(), (DefinedCondition, String)> {
    let lobby = &door.lobby;
    let bad = |error: ProtocolError| (DefinedCondition::BadRequest, error.to_string());
    let payload = Payload::read(element).map_err(bad)?;
    let request = payload
        .request(lobby.settings().field.height)
        .map_err(bad)?;
    let target = message
        .to
        .as_ref()
        .and_then(|to| to.node())
        .map(|node| node.as_str());
    let result = match request {
        protocol::Request::CheckIn => lobby.check_in(from, target).map(|_| {
            let update = protocol::profile_update(&message.payloads, &payload);
            let bare = from.split_once('/').map_or(from, |(bare, _)| bare);
            if let Err(error) = door.profiles.update(bare, &update) {
                tracing::warn!(%error, player = %bare, "could not store the profile");
            }
        }),
        protocol::Request::Spectate => lobby.spectate(from, target).map(drop),
        protocol::Request::Leave => {
            lobby.leave(from);
            Ok(())
        }
        protocol::Request::Paddle { y } => lobby.paddle(from, y),
    };
    result.map_err(|refusal| (refusal.condition(), refusal.to_string()))
}

/// Any other message: one of ours that bounced, or a person writing to the server.
async fn other_message(
    door: State<Frontdoor>,
    handle: Handle,
    message: Message,
) -> Result<(), SendError> {
    if let Some(from) = message.from.as_ref().map(Jid::to_string)
        && bounced(&door.lobby, &message, &from)
    {
        return Ok(());
    }
    help(&handle, &door, &message).await
}

/// Whether `message` is an error (one of our messages bounced: the recipient is gone,
/// and leaves whatever they were in).
fn bounced(lobby: &Lobby, message: &Message, from: &str) -> bool {
    if message.type_ != MessageType::Error {
        return false;
    }
    if lobby.leave(from) {
        tracing::info!(player = %from, "message bounced; treating as leaving");
    }
    true
}

/// Answers a person who writes to the game server (a chat message with a body) with how to
/// play. Never answers a bare domain (another service, e.g. an echo bot, would answer back
/// forever), nor headlines, groupchat or errors.
async fn help(handle: &Handle, frontdoor: &Frontdoor, message: &Message) -> Result<(), SendError> {
    let from = match &message.from {
        Some(from) if from.node().is_some() => from.clone(),
        _ => return Ok(()),
    };
    if message.bodies.is_empty()
        || !matches!(message.type_, MessageType::Chat | MessageType::Normal)
    {
        return Ok(());
    }
    let domain = handle.domain().to_string();
    let mut text = String::from("This is XMPPong, Pong played over XMPP.\n");
    if let Some(url) = &frontdoor.web_url {
        text.push_str(&format!(
            "Play in your browser: {url} (log in with this account; to invite a friend, \
             share {url}?game=NAME).\nLeaderboard: {url}leaderboard\n"
        ));
    }
    text.push_str(&format!(
        "From any client: send directed presence to {domain}, then a message with \
         <pong xmlns='xmpp:game:pong'><action>playercheckingin</action></pong> to {domain} \
         (play the next waiting player) or to NAME@{domain} (a game for you and a friend). \
         The protocol: docs/pong-protocol.md."
    ));
    let mut reply = Message::new_with_type(message.type_.clone(), Some(from))
        .with_body(Default::default(), text);
    reply.from = message.to.clone();
    reply.id = message.id.clone();
    handle.send(reply).await
}

async fn presence_handler(door: State<Frontdoor>, _: Handle, presence: Presence) {
    if !matches!(
        presence.type_,
        PresenceType::Unavailable | PresenceType::Error
    ) {
        return;
    }
    if let Some(from) = presence.from.as_ref().map(Jid::to_string)
        && door.lobby.leave(&from)
    {
        tracing::info!(player = %from, "went offline");
    }
}

async fn leaderboard(
    door: State<Frontdoor>,
    _: Handle,
    request: Request<LeaderboardQuery>,
) -> Result<LeaderboardRows, StanzaError> {
    let store = door.lobby.store();
    let query = request.payload;
    let rows: Vec<Entry> = match query.jid {
        Some(jid) => store
            .get(&jid)
            .map(|stats| Entry { jid, stats })
            .into_iter()
            .collect(),
        None => {
            let limit = match query.max {
                None => LEADERBOARD_DEFAULT,
                Some(max) => max
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=LEADERBOARD_MAX).contains(n))
                    .ok_or_else(|| {
                        stanza_error(
                            DefinedCondition::BadRequest,
                            Some("max must be a number from 1 to 100"),
                        )
                    })?,
            };
            store.top(limit)
        }
    };
    Ok(leaderboard_rows(rows))
}

/// Ranks `rows` (best first) for the wire.
fn leaderboard_rows(rows: Vec<Entry>) -> LeaderboardRows {
    let players = rows
        .into_iter()
        .enumerate()
        .map(|(rank, Entry { jid, stats })| PlayerRow {
            jid,
            rank: rank + 1,
            wins: stats.wins,
            losses: stats.losses,
            points: stats.points,
            points_against: stats.points_against,
        })
        .collect();
    LeaderboardRows { players }
}

async fn disco_items(door: State<Frontdoor>, handle: Handle, _: IqRequest) -> Vec<Item> {
    door.lobby
        .waiting()
        .into_iter()
        .filter_map(|waiting| {
            let jid = Jid::new(&format!("{}@{}", waiting.name, handle.domain())).ok()?;
            Some(Item {
                jid,
                node: None,
                name: Some(format!(
                    "{}: {} is waiting for an opponent",
                    waiting.name, waiting.player
                )),
            })
        })
        .collect()
}
