//! The `xmpp:game:pong` wire format (see `docs/pong-protocol.md`): parsing what clients
//! send, building what the component sends.
//!
//! Input is read by derived `xso` types ([`Payload`], [`LeaderboardQuery`]) and then
//! checked here, leniently where the book's clients differ (action names in any letter
//! case, surrounding whitespace, an optional `<body>` next to the payload); output uses
//! the book's exact spelling (`ballposition`, `opponentPaddleUpdate`, `gameOver`, ...).
//! Every game message is a `headline` with XEP-0334 `<no-store/>` and
//! `<no-permanent-store/>` hints, so servers neither keep it for offline users nor
//! archive it; only the low-rate ones carry a `<body>` fallback.

use std::sync::LazyLock;

use xmpp_component::minidom::rxml::{Namespace, NcName};
use xmpp_component::minidom::{Element, Node};
use xmpp_component::xmpp_parsers::nick::Nick;
use xmpp_component::xmpp_parsers::stanza_error::DefinedCondition;
use xmpp_component::{IqPayload, SharedPayload};
use xso::{AsXml, FromXml};

use crate::physics::{Field, Side};
use crate::profiles::{ProfileUpdate, clean_nick};

/// The XMPPong namespace (payload `<pong/>`, leaderboard IQ, disco feature).
pub const NS: &str = "xmpp:game:pong";
/// XEP-0334 message processing hints.
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// Stanzas on a component stream.
pub const NS_STANZA: &str = "jabber:component:accept";
/// RFC 6120 stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// What a client asked for in a `<pong/>` payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `playercheckingin`: join (the domain = matchmaking, `name@domain` = a named game).
    CheckIn,
    /// `spectate`: watch a named game.
    Spectate,
    /// `leave`: leave the game (a player forfeits).
    Leave,
    /// `paddleposition` with `<y>`: move my paddle's top edge to `y`.
    Paddle {
        /// Requested top edge, already checked to lie within `[0, field height]`.
        y: f64,
    },
}

/// Why a `<pong/>` payload was refused (answered with `bad-request`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// Not a `<pong/>` payload we can read (e.g. two `<action/>` children).
    #[error("malformed <pong/>: {0}")]
    Malformed(String),
    /// No `<action/>` child.
    #[error("missing <action/>")]
    MissingAction,
    /// An action this component does not know.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    /// `paddleposition` without `<y/>`.
    #[error("paddleposition needs <y/>")]
    MissingY,
    /// `<y/>` is not a finite number.
    #[error("<y/> is not a number: {0:?}")]
    NotANumber(String),
    /// `<y/>` is a number outside the field.
    #[error("<y/> = {value} is outside the field (0 to {max})")]
    OutOfRange {
        /// What was sent.
        value: f64,
        /// The field height.
        max: f64,
    },
}

/// The `<pong xmlns='xmpp:game:pong'/>` payload of a message, if any.
pub fn find_payload(payloads: &[Element]) -> Option<&Element> {
    payloads.iter().find(|p| p.is("pong", NS))
}

/// A `<pong xmlns='xmpp:game:pong'/>` payload as a client sends it. The children stay
/// text here: reading them leniently and refusing them with our own error texts is
/// [`Payload::request`]'s job. Unknown children, attributes and stray text are ignored.
#[derive(FromXml, AsXml, Debug, Clone, Default, PartialEq)]
#[xml(
    namespace = NS,
    name = "pong",
    discard(text),
    on_unknown_attribute = Discard,
    on_unknown_child = Discard
)]
pub struct Payload {
    /// `<action/>`: what the client asks for.
    #[xml(extract(default, fields(text(type_ = String))))]
    pub action: Option<String>,
    /// `<y/>`: the requested top edge of the sender's paddle (`paddleposition`).
    #[xml(extract(default, fields(text(type_ = String))))]
    pub y: Option<String>,
    /// `<showjid/>`: a check-in's opt-in (`true`/`1`) or opt-out (`false`/`0`) of being
    /// listed on the leaderboard by address.
    #[xml(extract(default, name = "showjid", fields(text(type_ = String))))]
    pub show_jid: Option<String>,
}

impl Payload {
    /// Reads a `<pong/>` element.
    pub fn read(pong: &Element) -> Result<Self, ProtocolError> {
        Payload::try_from(pong.clone())
            .map_err(|error| ProtocolError::Malformed(truncate(&error.to_string(), 100)))
    }

    /// What the client asks for. `field_height` bounds `<y/>`: values in `[0, height]`
    /// are accepted (and later clamped so the paddle stays inside), anything else is
    /// refused.
    pub fn request(&self, field_height: f64) -> Result<Request, ProtocolError> {
        let action = self.action.as_deref().ok_or(ProtocolError::MissingAction)?;
        match action.trim().to_ascii_lowercase().as_str() {
            "playercheckingin" => Ok(Request::CheckIn),
            "spectate" => Ok(Request::Spectate),
            "leave" => Ok(Request::Leave),
            "paddleposition" => {
                let text = self.y.as_deref().ok_or(ProtocolError::MissingY)?.trim();
                let y: f64 = text
                    .parse()
                    .ok()
                    .filter(|y: &f64| y.is_finite())
                    .ok_or_else(|| ProtocolError::NotANumber(truncate(text, 32)))?;
                if !(0.0..=field_height).contains(&y) {
                    return Err(ProtocolError::OutOfRange {
                        value: y,
                        max: field_height,
                    });
                }
                Ok(Request::Paddle { y })
            }
            "" => Err(ProtocolError::MissingAction),
            other => Err(ProtocolError::UnknownAction(truncate(other, 32))),
        }
    }

    /// The `<showjid/>` opt-in, if the payload says (anything but `true`, `1`, `false`
    /// or `0` says nothing).
    pub fn show_jid(&self) -> Option<bool> {
        match self.show_jid.as_deref()?.trim() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        }
    }
}

/// Reads a `<pong/>` element and what it asks for, in one step (see [`Payload::request`]).
pub fn parse_request(pong: &Element, field_height: f64) -> Result<Request, ProtocolError> {
    Payload::read(pong)?.request(field_height)
}

/// The leaderboard profile a check-in carries: XEP-0172 `<nick/>` among the message's
/// payloads (empty = clear it; a nickname that would not survive [`clean_nick`] clears it
/// too) and `<showjid/>` in its `<pong/>` payload. Anything absent stays unchanged.
pub fn profile_update(payloads: &[Element], pong: &Payload) -> ProfileUpdate {
    let nick = payloads
        .iter()
        .find(|p| p.is("nick", xmpp_component::xmpp_parsers::ns::NICK))
        .and_then(|nick| Nick::try_from(nick.clone()).ok())
        .map(|Nick(nick)| clean_nick(&nick));
    ProfileUpdate {
        nick,
        show_jid: pong.show_jid(),
    }
}

/// `<leaderboard xmlns='xmpp:game:pong'/>`, an IQ get for the leaderboard: one player's
/// row (`jid`) or the best `max` rows. `max` stays text so that a bad one is refused
/// with our own words.
#[derive(FromXml, AsXml, Debug, Clone, Default, PartialEq)]
#[xml(
    namespace = NS,
    name = "leaderboard",
    discard(text),
    on_unknown_attribute = Discard,
    on_unknown_child = Discard
)]
pub struct LeaderboardQuery {
    /// Only this bare JID's row.
    #[xml(attribute(default))]
    pub jid: Option<String>,
    /// How many rows, 1 to 100.
    #[xml(attribute(default))]
    pub max: Option<String>,
}

impl IqPayload for LeaderboardQuery {
    const NAME: &'static str = "leaderboard";
    const NS: &'static str = NS;
}

/// The answer to a [`LeaderboardQuery`]: `<leaderboard xmlns='xmpp:game:pong'>` with one
/// `<player/>` per row, best first.
#[derive(FromXml, AsXml, Debug, Clone, Default, PartialEq)]
#[xml(namespace = NS, name = "leaderboard")]
pub struct LeaderboardRows {
    /// The rows.
    #[xml(child(n = ..))]
    pub players: Vec<PlayerRow>,
}

impl IqPayload for LeaderboardRows {
    const NAME: &'static str = "leaderboard";
    const NS: &'static str = NS;
}

/// One leaderboard row: `<player jid rank wins losses points pointsagainst/>`.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS, name = "player")]
pub struct PlayerRow {
    /// The player's bare JID.
    #[xml(attribute)]
    pub jid: String,
    /// 1 for the best.
    #[xml(attribute)]
    pub rank: usize,
    /// Games won.
    #[xml(attribute)]
    pub wins: u64,
    /// Games lost.
    #[xml(attribute)]
    pub losses: u64,
    /// Points scored.
    #[xml(attribute)]
    pub points: u64,
    /// Points conceded.
    #[xml(attribute = "pointsagainst")]
    pub points_against: u64,
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// How a game ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A player reached the points needed to win.
    Points,
    /// A player left (`leave`, unavailable presence, or their messages bounced).
    Forfeit,
    /// A player sent no input for the idle timeout.
    Idle,
    /// Both players were idle: no winner, nothing recorded.
    Abandoned,
    /// The server is shutting down: no winner, nothing recorded.
    Shutdown,
    /// Nobody joined a waiting game within the wait timeout: nothing recorded.
    Expired,
}

impl EndReason {
    /// The wire value of `<reason/>`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Points => "points",
            EndReason::Forfeit => "forfeit",
            EndReason::Idle => "idle",
            EndReason::Abandoned => "abandoned",
            EndReason::Shutdown => "shutdown",
            EndReason::Expired => "expired",
        }
    }
}

/// The end of a game as told in `gameOver`.
#[derive(Debug, Clone, PartialEq)]
pub struct GameOver {
    /// The winner's side and bare JID, if there is one.
    pub winner: Option<(Side, String)>,
    /// Final score, `[player1, player2]`.
    pub score: [u32; 2],
    /// Why it ended.
    pub reason: EndReason,
    /// The bare JIDs of player 1 and player 2 (so each side can name its opponent).
    pub players: [Option<String>; 2],
    /// For a game that counts for the leaderboard: whether its result was written
    /// (`Some(false)`: the write failed, the result is lost). `None`: nothing to record.
    pub recorded: Option<bool>,
}

/// Who receives a `dimensions` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// A player on this side.
    Player(Side),
    /// A spectator.
    Spectator,
}

/// Formats a coordinate: integers without a fraction, others with one decimal.
/// Integer arithmetic only: float formatting with a precision is slow, and this runs for
/// every ball position.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "0".to_owned();
    }
    let tenths = (value * 10.0).round().clamp(-1e15, 1e15) as i64;
    let (whole, fraction) = (tenths / 10, (tenths % 10).abs());
    match (fraction, tenths < 0 && whole == 0) {
        (0, _) => whole.to_string(),
        (f, true) => format!("-0.{f}"),
        (f, false) => format!("{whole}.{f}"),
    }
}

/// The attribute names we write, validated once instead of on every stanza.
struct AttrNames {
    to: NcName,
    type_: NcName,
    id: NcName,
}

static ATTR_NAMES: LazyLock<Option<AttrNames>> = LazyLock::new(|| {
    Some(AttrNames {
        to: NcName::try_from("to").ok()?,
        type_: NcName::try_from("type").ok()?,
        id: NcName::try_from("id").ok()?,
    })
});

#[derive(Clone, Copy)]
enum Attr {
    To,
    Type,
    Id,
}

fn set_attr(element: &mut Element, attr: Attr, value: String) {
    // The names are constant valid NCNames, so the table always exists.
    if let Some(names) = ATTR_NAMES.as_ref() {
        let name = match attr {
            Attr::To => &names.to,
            Attr::Type => &names.type_,
            Attr::Id => &names.id,
        };
        element
            .attrs_mut()
            .insert(Namespace::NONE, name.clone(), value);
    }
}

fn text_child(name: &str, text: String) -> Element {
    let mut child = Element::bare(name, NS);
    child.append_text_node(text);
    child
}

/// A `<message type='headline'>` to `to` with `payload`, the no-store hints and, for
/// low-rate messages, a `<body>`. `from` is left out: the framework fills in our domain
/// (a game's messages come from the domain even for named games, so clients need only
/// one JID to trust).
fn headline(to: &str, payload: Element, body: Option<String>) -> Element {
    let mut message = Element::bare("message", NS_STANZA);
    set_attr(&mut message, Attr::To, to.to_owned());
    set_attr(&mut message, Attr::Type, "headline".to_owned());
    if let Some(body) = body {
        message.append_child(text_child_ns("body", NS_STANZA, body));
    }
    message.append_child(payload);
    message.append_child(Element::bare("no-store", NS_HINTS));
    message.append_child(Element::bare("no-permanent-store", NS_HINTS));
    message
}

fn text_child_ns(name: &str, ns: &str, text: String) -> Element {
    let mut child = Element::bare(name, ns);
    child.append_text_node(text);
    child
}

fn pong(action: &str, children: impl IntoIterator<Item = Element>) -> Element {
    let mut pong = Element::bare("pong", NS);
    pong.append_child(text_child("action", action.to_owned()));
    for child in children {
        pong.append_node(Node::Element(child));
    }
    pong
}

/// `dimensions`: the field geometry and the receiver's side (players) or role (spectators).
pub fn dimensions(to: &str, field: &Field, viewer: Viewer, game: &str) -> Element {
    let mut children = vec![
        text_child("width", number(field.width)),
        text_child("height", number(field.height)),
        text_child("paddlewidth", number(field.paddle_width)),
        text_child("paddleheight", number(field.paddle_height)),
        text_child("paddlemargin", number(field.paddle_margin)),
        text_child("paddley", number(field.paddle_start())),
        text_child("ballradius", number(field.ball_radius)),
    ];
    let body = match viewer {
        Viewer::Player(side) => {
            children.push(text_child("side", side.index().to_string()));
            children.push(text_child("game", game.to_owned()));
            let place = match side {
                Side::Left => "left",
                Side::Right => "right",
            };
            format!("XMPPong: you play {place} in {game}")
        }
        Viewer::Spectator => {
            children.push(text_child("role", "spectator".to_owned()));
            children.push(text_child("game", game.to_owned()));
            format!("XMPPong: you are watching {game}")
        }
    };
    headline(to, pong("dimensions", children), Some(body))
}

/// `ballposition` with the ball's centre (high rate: no body).
pub fn ball_position(to: &str, x: f64, y: f64) -> Element {
    headline(to, ball_position_pong(x, y), None)
}

fn ball_position_pong(x: f64, y: f64) -> Element {
    pong(
        "ballposition",
        [text_child("x", number(x)), text_child("y", number(y))],
    )
}

/// The payload of [`ball_position`], serialised once for every recipient of a tick.
pub fn ball_position_payload(x: f64, y: f64) -> SharedPayload {
    let (x, y) = (number(x), number(y));
    high_rate_payload(&format!(
        "<action>ballposition</action><x>{x}</x><y>{y}</y>"
    ))
}

/// The payload of [`opponent_paddle`], serialised once for every recipient.
pub fn opponent_paddle_payload(side: Side, y: f64) -> SharedPayload {
    let (y, side) = (number(y), side.index());
    high_rate_payload(&format!(
        "<action>opponentPaddleUpdate</action><y>{y}</y><side>{side}</side>"
    ))
}

/// A high-rate payload: `<pong/>` with `children` plus both no-store hints, no body.
/// Written as text: every value in it is a number, and encoding elements through minidom
/// was a third of the game server's CPU at 1,000 games.
fn high_rate_payload(children: &str) -> SharedPayload {
    SharedPayload::from_trusted_xml(format!(
        "<pong xmlns='{NS}'>{children}</pong><no-store xmlns='{NS_HINTS}'/>\
         <no-permanent-store xmlns='{NS_HINTS}'/>"
    ))
}

/// `opponentPaddleUpdate`: the paddle of `side` moved to `y` (high rate: no body).
/// `<side/>` is an addition to the book's message so spectators know which paddle it is.
pub fn opponent_paddle(to: &str, side: Side, y: f64) -> Element {
    headline(to, opponent_paddle_pong(side, y), None)
}

fn opponent_paddle_pong(side: Side, y: f64) -> Element {
    pong(
        "opponentPaddleUpdate",
        [
            text_child("y", number(y)),
            text_child("side", side.index().to_string()),
        ],
    )
}

/// `scoreupdate` with both scores.
pub fn score_update(to: &str, score: [u32; 2]) -> Element {
    headline(
        to,
        pong(
            "scoreupdate",
            [
                text_child("player1", score[0].to_string()),
                text_child("player2", score[1].to_string()),
            ],
        ),
        Some(format!("XMPPong score: {} – {}", score[0], score[1])),
    )
}

/// `gameOver` with the winner (if any), the final score and the reason.
pub fn game_over(to: &str, over: &GameOver) -> Element {
    let mut children = Vec::with_capacity(5);
    if let Some((side, jid)) = &over.winner {
        children.push(text_child("winner", jid.clone()));
        children.push(text_child("winnerside", side.index().to_string()));
    }
    children.push(text_child("player1", over.score[0].to_string()));
    children.push(text_child("player2", over.score[1].to_string()));
    children.push(text_child("reason", over.reason.as_str().to_owned()));
    for (name, jid) in ["player1jid", "player2jid"].into_iter().zip(&over.players) {
        if let Some(jid) = jid {
            children.push(text_child(name, jid.clone()));
        }
    }
    if let Some(recorded) = over.recorded {
        children.push(text_child("recorded", recorded.to_string()));
    }
    let mut body = match &over.winner {
        Some((_, jid)) => format!(
            "XMPPong game over: {jid} wins {} – {} ({})",
            over.score[0],
            over.score[1],
            over.reason.as_str()
        ),
        None => format!("XMPPong game over: no winner ({})", over.reason.as_str()),
    };
    if over.recorded == Some(false) {
        body.push_str("; the result could not be saved to the leaderboard");
    }
    headline(to, pong("gameOver", children), Some(body))
}

/// A `type='error'` message answering `id` from `to`, carrying the offending payload.
pub fn error_message(
    to: &str,
    id: Option<&str>,
    payload: Option<&Element>,
    condition: DefinedCondition,
    text: &str,
) -> Element {
    let error_type = match condition {
        DefinedCondition::BadRequest | DefinedCondition::NotAcceptable => "modify",
        DefinedCondition::NotAllowed | DefinedCondition::Forbidden => "cancel",
        DefinedCondition::ResourceConstraint => "wait",
        _ => "cancel",
    };
    let mut message = Element::bare("message", NS_STANZA);
    set_attr(&mut message, Attr::To, to.to_owned());
    set_attr(&mut message, Attr::Type, "error".to_owned());
    if let Some(id) = id {
        set_attr(&mut message, Attr::Id, id.to_owned());
    }
    if let Some(payload) = payload {
        message.append_child(payload.clone());
    }
    let mut error = Element::bare("error", NS_STANZA);
    set_attr(&mut error, Attr::Type, error_type.to_owned());
    error.append_child(Element::bare(condition_name(condition), NS_STANZAS));
    let mut text_el = Element::bare("text", NS_STANZAS);
    text_el.append_text_node(text.to_owned());
    error.append_child(text_el);
    message.append_child(error);
    message
}

fn condition_name(condition: DefinedCondition) -> &'static str {
    match condition {
        DefinedCondition::BadRequest => "bad-request",
        DefinedCondition::Conflict => "conflict",
        DefinedCondition::NotAllowed => "not-allowed",
        DefinedCondition::ItemNotFound => "item-not-found",
        DefinedCondition::ResourceConstraint => "resource-constraint",
        DefinedCondition::NotAcceptable => "not-acceptable",
        DefinedCondition::Forbidden => "forbidden",
        _ => "undefined-condition",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_component::xmpp_parsers::ns::NICK;

    fn parse(xml: &str) -> Result<Request, ProtocolError> {
        let element: Element = xml.parse().expect("test XML");
        parse_request(&element, 600.0)
    }

    #[test]
    fn actions_are_case_insensitive_and_trimmed() {
        for action in [
            "playercheckingin",
            "PlayerCheckingIn",
            " PLAYERCHECKINGIN\n",
        ] {
            assert_eq!(
                parse(&format!(
                    "<pong xmlns='{NS}'><action>{action}</action></pong>"
                )),
                Ok(Request::CheckIn)
            );
        }
        assert_eq!(
            parse(&format!(
                "<pong xmlns='{NS}'><action>paddlePosition</action><y> 120.5 </y></pong>"
            )),
            Ok(Request::Paddle { y: 120.5 })
        );
        assert_eq!(
            parse(&format!(
                "<pong xmlns='{NS}'><action>Spectate</action></pong>"
            )),
            Ok(Request::Spectate)
        );
        assert_eq!(
            parse(&format!("<pong xmlns='{NS}'><action>leave</action></pong>")),
            Ok(Request::Leave)
        );
    }

    #[test]
    fn malformed_and_out_of_range_numbers_are_refused() {
        let paddle = |y: &str| {
            parse(&format!(
                "<pong xmlns='{NS}'><action>paddleposition</action><y>{y}</y></pong>"
            ))
        };
        assert!(matches!(paddle("abc"), Err(ProtocolError::NotANumber(_))));
        assert!(matches!(paddle("NaN"), Err(ProtocolError::NotANumber(_))));
        assert!(matches!(paddle("inf"), Err(ProtocolError::NotANumber(_))));
        assert!(matches!(paddle(""), Err(ProtocolError::NotANumber(_))));
        assert!(matches!(
            paddle("-1"),
            Err(ProtocolError::OutOfRange { .. })
        ));
        assert!(matches!(
            paddle("1e9"),
            Err(ProtocolError::OutOfRange { .. })
        ));
        assert_eq!(paddle("600"), Ok(Request::Paddle { y: 600.0 }));
        assert_eq!(paddle("0"), Ok(Request::Paddle { y: 0.0 }));
        assert_eq!(
            parse(&format!(
                "<pong xmlns='{NS}'><action>paddleposition</action></pong>"
            )),
            Err(ProtocolError::MissingY)
        );
        assert_eq!(
            parse(&format!("<pong xmlns='{NS}'/>")),
            Err(ProtocolError::MissingAction)
        );
        assert!(matches!(
            parse(&format!("<pong xmlns='{NS}'><action>cheat</action></pong>")),
            Err(ProtocolError::UnknownAction(a)) if a == "cheat"
        ));
        // A <y> in another namespace is not ours.
        assert_eq!(
            parse(&format!(
                "<pong xmlns='{NS}'><action>paddleposition</action><y xmlns='urn:x'>5</y></pong>"
            )),
            Err(ProtocolError::MissingY)
        );
    }

    #[test]
    fn payloads_ignore_what_they_do_not_know_and_refuse_ambiguity() {
        // Stray text, unknown attributes and children (in any namespace) are ignored.
        assert_eq!(
            parse(&format!(
                "<pong xmlns='{NS}' extra='1'>\n  <action>leave</action>\n  <junk>x</junk>\
                 <y xmlns='urn:x'>5</y> stray</pong>"
            )),
            Ok(Request::Leave)
        );
        // A bad <y/> does not matter to an action that has no use for it.
        assert_eq!(
            parse(&format!(
                "<pong xmlns='{NS}'><action>leave</action><y>abc</y></pong>"
            )),
            Ok(Request::Leave)
        );
        // Two actions: which one was meant is not ours to guess.
        assert!(matches!(
            parse(&format!(
                "<pong xmlns='{NS}'><action>leave</action><action>spectate</action></pong>"
            )),
            Err(ProtocolError::Malformed(_))
        ));
        // Unknown actions are reported truncated.
        let long = "x".repeat(100);
        assert_eq!(
            parse(&format!(
                "<pong xmlns='{NS}'><action>{long}</action></pong>"
            )),
            Err(ProtocolError::UnknownAction("x".repeat(32)))
        );
        assert_eq!(
            parse(&format!("<pong xmlns='{NS}'><action> </action></pong>")),
            Err(ProtocolError::MissingAction)
        );
    }

    #[test]
    fn leaderboard_queries_and_rows_are_typed() {
        let query: Element = format!("<leaderboard xmlns='{NS}' max=' 5' jid='a@b'/>")
            .parse()
            .expect("xml");
        assert_eq!(
            LeaderboardQuery::try_from(query).expect("query"),
            LeaderboardQuery {
                jid: Some("a@b".into()),
                max: Some(" 5".into()),
            }
        );
        let empty: Element = format!("<leaderboard xmlns='{NS}'/>").parse().expect("xml");
        assert_eq!(
            LeaderboardQuery::try_from(empty).expect("query"),
            LeaderboardQuery::default()
        );
        let rows = LeaderboardRows {
            players: vec![PlayerRow {
                jid: "alice@localhost".into(),
                rank: 1,
                wins: 3,
                losses: 1,
                points: 30,
                points_against: 12,
            }],
        };
        let element = Element::from(rows.clone());
        assert!(element.is("leaderboard", NS));
        let player = element.get_child("player", NS).expect("a row");
        for (name, value) in [
            ("jid", "alice@localhost"),
            ("rank", "1"),
            ("wins", "3"),
            ("losses", "1"),
            ("points", "30"),
            ("pointsagainst", "12"),
        ] {
            assert_eq!(player.attr(name), Some(value), "{name}");
        }
        assert_eq!(LeaderboardRows::try_from(element).expect("rows"), rows);
    }

    fn child_text(element: &Element, name: &str) -> Option<String> {
        element.get_child(name, NS).map(|c| c.text())
    }

    fn payload(message: &Element) -> &Element {
        message.get_child("pong", NS).expect("a pong payload")
    }

    #[test]
    fn outbound_messages_use_the_books_spelling_and_are_not_stored() {
        let field = Field::default();
        let ball = ball_position("alice@localhost/a", 412.25, 300.0);
        assert_eq!(ball.attr("type"), Some("headline"));
        assert_eq!(ball.attr("to"), Some("alice@localhost/a"));
        assert!(
            ball.get_child("body", NS_STANZA).is_none(),
            "high-rate: no body"
        );
        assert!(
            ball.has_child("no-store", NS_HINTS) && ball.has_child("no-permanent-store", NS_HINTS)
        );
        assert_eq!(
            child_text(payload(&ball), "action").as_deref(),
            Some("ballposition")
        );
        assert_eq!(child_text(payload(&ball), "x").as_deref(), Some("412.3"));
        assert_eq!(child_text(payload(&ball), "y").as_deref(), Some("300"));

        let paddle = opponent_paddle("bob@localhost/b", Side::Left, 42.0);
        assert_eq!(
            child_text(payload(&paddle), "action").as_deref(),
            Some("opponentPaddleUpdate")
        );
        assert!(paddle.get_child("body", NS_STANZA).is_none());

        let dims = dimensions(
            "bob@localhost/b",
            &field,
            Viewer::Player(Side::Right),
            "friday",
        );
        let p = payload(&dims);
        assert_eq!(child_text(p, "action").as_deref(), Some("dimensions"));
        for (name, value) in [
            ("width", "800"),
            ("height", "600"),
            ("paddlewidth", "20"),
            ("paddleheight", "100"),
            ("paddlemargin", "10"),
            ("paddley", "250"),
            ("ballradius", "3"),
            ("side", "1"),
        ] {
            assert_eq!(child_text(p, name).as_deref(), Some(value), "{name}");
        }
        assert!(
            dims.get_child("body", NS_STANZA).is_some(),
            "low-rate: body fallback"
        );

        let score = score_update("a@b/c", [3, 1]);
        assert_eq!(
            child_text(payload(&score), "action").as_deref(),
            Some("scoreupdate")
        );
        assert_eq!(child_text(payload(&score), "player1").as_deref(), Some("3"));

        let over = game_over(
            "a@b/c",
            &GameOver {
                winner: Some((Side::Left, "alice@localhost".into())),
                score: [10, 4],
                reason: EndReason::Points,
                players: [Some("alice@localhost".into()), Some("bob@localhost".into())],
                recorded: Some(true),
            },
        );
        let p = payload(&over);
        assert_eq!(child_text(p, "action").as_deref(), Some("gameOver"));
        assert_eq!(child_text(p, "winner").as_deref(), Some("alice@localhost"));
        assert_eq!(child_text(p, "winnerside").as_deref(), Some("0"));
        assert_eq!(child_text(p, "reason").as_deref(), Some("points"));
        assert_eq!(
            child_text(p, "player2jid").as_deref(),
            Some("bob@localhost")
        );
        assert_eq!(child_text(p, "recorded").as_deref(), Some("true"));
        let lost = game_over(
            "a@b/c",
            &GameOver {
                winner: Some((Side::Left, "alice@localhost".into())),
                score: [10, 4],
                reason: EndReason::Points,
                players: [None, None],
                recorded: Some(false),
            },
        );
        assert_eq!(
            child_text(payload(&lost), "recorded").as_deref(),
            Some("false")
        );
        let body = lost
            .get_child("body", NS_STANZA)
            .map(|b| b.text())
            .unwrap_or_default();
        assert!(body.contains("could not be saved"), "{body}");
        let expired = game_over(
            "a@b/c",
            &GameOver {
                winner: None,
                score: [0, 0],
                reason: EndReason::Expired,
                players: [None, None],
                recorded: None,
            },
        );
        assert_eq!(
            child_text(payload(&expired), "reason").as_deref(),
            Some("expired")
        );
        assert!(payload(&expired).get_child("recorded", NS).is_none());
    }

    #[test]
    fn errors_carry_condition_text_and_payload() {
        let offending: Element =
            format!("<pong xmlns='{NS}'><action>playercheckingin</action></pong>")
                .parse()
                .expect("xml");
        let error = error_message(
            "carol@localhost/c",
            Some("m1"),
            Some(&offending),
            DefinedCondition::Conflict,
            "Game is currently full",
        );
        assert_eq!(error.attr("type"), Some("error"));
        assert_eq!(error.attr("id"), Some("m1"));
        let e = error.get_child("error", NS_STANZA).expect("error child");
        assert_eq!(e.attr("type"), Some("cancel"));
        assert!(e.has_child("conflict", NS_STANZAS));
        assert_eq!(
            e.get_child("text", NS_STANZAS).map(|t| t.text()).as_deref(),
            Some("Game is currently full")
        );
        assert!(error.has_child("pong", NS));
    }

    #[test]
    fn check_ins_carry_a_nickname_and_the_address_opt_in() {
        let message: Element = format!(
            "<message xmlns='{NS_STANZA}'><pong xmlns='{NS}'><action>playercheckingin</action>\
             <showjid>true</showjid></pong><nick xmlns='{NICK}'> Ally\n</nick></message>"
        )
        .parse()
        .expect("xml");
        let payloads: Vec<Element> = message.children().cloned().collect();
        let pong = Payload::read(find_payload(&payloads).expect("pong")).expect("payload");
        assert_eq!(
            profile_update(&payloads, &pong),
            ProfileUpdate {
                nick: Some(Some("Ally".into())),
                show_jid: Some(true)
            }
        );
        let bare: Element = format!("<pong xmlns='{NS}'><action>playercheckingin</action></pong>")
            .parse()
            .expect("xml");
        let pong = Payload::read(&bare).expect("payload");
        assert!(profile_update(std::slice::from_ref(&bare), &pong).is_empty());
        for (flag, expected) in [
            ("true", Some(true)),
            (" 1 ", Some(true)),
            ("false", Some(false)),
            ("0", Some(false)),
            ("yes", None),
        ] {
            let pong: Element = format!("<pong xmlns='{NS}'><showjid>{flag}</showjid></pong>")
                .parse()
                .expect("xml");
            let pong = Payload::read(&pong).expect("payload");
            assert_eq!(profile_update(&[], &pong).show_jid, expected, "{flag}");
        }
        let empty_nick: Element = format!("<nick xmlns='{NICK}'/>").parse().expect("xml");
        assert_eq!(
            profile_update(&[empty_nick], &pong).nick,
            Some(None),
            "an empty <nick/> clears the nickname"
        );
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(number(250.0), "250");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(-0.04), "0");
        assert_eq!(number(799.96), "800");
        assert_eq!(number(-12.34), "-12.3");
        assert_eq!(number(-0.44), "-0.4");
        assert_eq!(number(f64::NAN), "0");
    }

    /// The text-written high-rate payloads are the same elements as the built ones.
    #[test]
    fn high_rate_payloads_match_the_built_elements() {
        let parse = |payload: &SharedPayload| -> Vec<Element> {
            let xml = std::str::from_utf8(payload.as_bytes()).expect("UTF-8");
            let root: Element = format!("<r xmlns='urn:r'>{xml}</r>").parse().expect("XML");
            root.children().cloned().collect()
        };
        let hints = [
            Element::bare("no-store", NS_HINTS),
            Element::bare("no-permanent-store", NS_HINTS),
        ];
        for (x, y) in [(0.0, 0.0), (12.34, -0.05), (-3.0, 480.0), (f64::NAN, 1e300)] {
            let built = [ball_position_pong(x, y), hints[0].clone(), hints[1].clone()];
            assert_eq!(parse(&ball_position_payload(x, y)), built, "{x} {y}");
            for side in [Side::Left, Side::Right] {
                let built = [
                    opponent_paddle_pong(side, y),
                    hints[0].clone(),
                    hints[1].clone(),
                ];
                assert_eq!(parse(&opponent_paddle_payload(side, y)), built, "{y}");
            }
        }
    }
}
