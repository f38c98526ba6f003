//! The XMPP face of the game server: the [`Router`] with its handlers. Each handler turns
//! a stanza into a lobby call and a refusal into a stanza error; none of them waits on a
//! game, so the framework runs them inline on its reader.
//!
//! - message with `<pong xmlns='xmpp:game:pong'/>`: check in (with the player's nickname,
//!   XEP-0172), spectate, leave, move a paddle;
//! - chat message with a `<body>` and no game payload (a person typing to the game server):
//!   a short help text with the web client's address;
//! - message `type='error'` from a member (our messages bounce): that member left;
//! - presence `unavailable` (or a presence error) from a member: that member left;
//! - IQ get `<leaderboard xmlns='xmpp:game:pong'/>`: the leaderboard;
//! - disco#items: games waiting for an opponent.

use std::sync::Arc;

use xmpp_component::minidom::Element;
use xmpp_component::minidom::rxml::{Namespace, NcName};
use xmpp_component::xmpp_parsers::disco::Item;
use xmpp_component::xmpp_parsers::jid::Jid;
use xmpp_component::xmpp_parsers::message::{Message, MessageType};
use xmpp_component::xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_component::xmpp_parsers::stanza_error::DefinedCondition;
use xmpp_component::{Handle, IqRequest, IqResult, Router, SendError, stanza_error};

use crate::leaderboard::Entry;
use crate::lobby::Lobby;
use crate::profiles::Profiles;
use crate::protocol::{self, NS, Request};

/// Default and largest number of rows a leaderboard query returns.
const LEADERBOARD_DEFAULT: usize = 20;
const LEADERBOARD_MAX: usize = 100;

/// What the message handler needs besides the lobby.
#[derive(Debug)]
pub struct Frontdoor {
    /// Nicknames and address opt-ins from check-ins, for the public leaderboard.
    pub profiles: Arc<Profiles>,
    /// The web client's address (`http://…/`), told to people who chat with the server.
    pub web_url: Option<String>,
}

/// The component's router: identity `component/generic` "XMPPong" (the disco registry
/// has no game category; `client/game` is for clients), feature `xmpp:game:pong`.
pub fn router(lobby: Arc<Lobby>, frontdoor: Arc<Frontdoor>) -> Router {
    let (on_message, on_presence, on_iq, on_items) = (
        Arc::clone(&lobby),
        Arc::clone(&lobby),
        Arc::clone(&lobby),
        lobby,
    );
    Router::new()
        .identity("component", "generic", "XMPPong")
        .software("xmpp-pong", env!("CARGO_PKG_VERSION"))
        .feature(NS)
        .message(move |handle, message| {
            message_handler(
                Arc::clone(&on_message),
                Arc::clone(&frontdoor),
                handle,
                message,
            )
        })
        .presence(move |_, presence| presence_handler(Arc::clone(&on_presence), presence))
        .iq_get("leaderboard", NS, move |_, request| {
            leaderboard_handler(Arc::clone(&on_iq), request)
        })
        .disco_items(move |handle, _| disco_items(Arc::clone(&on_items), handle))
}

async fn message_handler(
    lobby: Arc<Lobby>,
    frontdoor: Arc<Frontdoor>,
    handle: Handle,
    message: Message,
) -> Result<(), SendError> {
    let Some(from) = message.from.as_ref().map(Jid::to_string) else {
        return Ok(());
    };
    if message.type_ == MessageType::Error {
        // One of our messages bounced: the recipient is gone.
        if lobby.leave(&from) {
            tracing::info!(player = %from, "message bounced; treating as leaving");
        }
        return Ok(());
    }
    let Some(payload) = protocol::find_payload(&message.payloads) else {
        return help(&handle, &frontdoor, &message).await;
    };
    let target = message
        .to
        .as_ref()
        .and_then(|to| to.node())
        .map(|node| node.as_str().to_owned());
    let outcome = match protocol::parse_request(payload, lobby.settings().field.height) {
        Err(error) => Err((DefinedCondition::BadRequest, error.to_string())),
        Ok(request) => {
            let result = match request {
                Request::CheckIn => lobby.check_in(&from, target.as_deref()).map(|_| {
                    let update = protocol::profile_update(&message.payloads, payload);
                    let bare = from.split_once('/').map_or(from.as_str(), |(bare, _)| bare);
                    if let Err(error) = frontdoor.profiles.update(bare, &update) {
                        tracing::warn!(%error, player = %bare, "could not store the profile");
                    }
                }),
                Request::Spectate => lobby.spectate(&from, target.as_deref()).map(drop),
                Request::Leave => {
                    lobby.leave(&from);
                    Ok(())
                }
                Request::Paddle { y } => lobby.paddle(&from, y),
            };
            result.map_err(|refusal| (refusal.condition(), refusal.to_string()))
        }
    };
    let Err((condition, text)) = outcome else {
        return Ok(());
    };
    tracing::debug!(sender = %from, %text, "refused");
    let mut error = protocol::error_message(
        &from,
        message.id.as_ref().map(|id| id.0.as_str()),
        Some(payload),
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

async fn presence_handler(lobby: Arc<Lobby>, presence: Presence) {
    if !matches!(
        presence.type_,
        PresenceType::Unavailable | PresenceType::Error
    ) {
        return;
    }
    if let Some(from) = presence.from.as_ref().map(Jid::to_string)
        && lobby.leave(&from)
    {
        tracing::info!(player = %from, "went offline");
    }
}

async fn leaderboard_handler(lobby: Arc<Lobby>, request: IqRequest) -> IqResult {
    let store = lobby.store();
    let rows: Vec<Entry> = match request.payload.attr("jid") {
        Some(jid) => store
            .get(jid)
            .map(|stats| Entry {
                jid: jid.to_owned(),
                stats,
            })
            .into_iter()
            .collect(),
        None => {
            let limit = match request.payload.attr("max") {
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
    Ok(Some(leaderboard_element(&rows)))
}

/// `<leaderboard xmlns='xmpp:game:pong'><player jid=.. rank=.. wins=.. .../></leaderboard>`.
pub fn leaderboard_element(rows: &[Entry]) -> Element {
    let mut board = Element::bare("leaderboard", NS);
    for (rank, row) in rows.iter().enumerate() {
        let mut player = Element::bare("player", NS);
        for (name, value) in [
            ("jid", row.jid.clone()),
            ("rank", (rank + 1).to_string()),
            ("wins", row.stats.wins.to_string()),
            ("losses", row.stats.losses.to_string()),
            ("points", row.stats.points.to_string()),
            ("pointsagainst", row.stats.points_against.to_string()),
        ] {
            if let Ok(name) = NcName::try_from(name) {
                player.attrs_mut().insert(Namespace::NONE, name, value);
            }
        }
        board.append_child(player);
    }
    board
}

async fn disco_items(lobby: Arc<Lobby>, handle: Handle) -> Vec<Item> {
    lobby
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
