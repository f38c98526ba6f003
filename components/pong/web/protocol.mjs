// The xmpp:game:pong protocol (docs/pong-protocol.md) as the browser speaks it:
// encode() builds the stanzas a player sends, decode() turns a received stanza into one
// plain event object ({type: "dimensions" | "ball" | "paddle" | "score" | "over" | "error"}).
import { attr, child, childText, children, xml } from "./xml.mjs";

export const NS = "xmpp:game:pong";
export const NS_CLIENT = "jabber:client";
const NS_HINTS = "urn:xmpp:hints";
const NS_NICK = "http://jabber.org/protocol/nick";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

/** The game's address: `name@domain`, or the bare domain for matchmaking. */
export function gameAddress(domain, name) {
  return name ? `${name}@${domain}` : domain;
}

/**
 * Whether `name` can be a game's name, i.e. the local part of its address: 1 to 64
 * characters, none of them space, control, or one of " & ' / : < > @ (RFC 7622).
 */
export function validGameName(name) {
  return typeof name === "string" && /^[^\s"&'/:<>@\p{Cc}]{1,64}$/u.test(name);
}

// Game messages are never stored or copied to the player's other clients.
const hints = () => [
  xml("no-store", { xmlns: NS_HINTS }),
  xml("no-permanent-store", { xmlns: NS_HINTS }),
  xml("no-copy", { xmlns: NS_HINTS }),
];

function message(to, id, pongChildren, extra = [], withHints = true) {
  return xml("message", { xmlns: NS_CLIENT, to, id }, xml("pong", { xmlns: NS }, pongChildren), extra, withHints && hints());
}

/** Directed presence to the game: going offline then reaches the game as `unavailable`. */
export function presenceTo(to) {
  return xml("presence", { xmlns: NS_CLIENT, to });
}

/**
 * `playercheckingin` at `to`, with the leaderboard nickname (XEP-0172; "" clears it) and
 * whether the full address may be shown on the leaderboard.
 */
export function checkIn(to, { id, nick = "", showJid = false } = {}) {
  return message(
    to,
    id,
    [xml("action", {}, "playercheckingin"), xml("showjid", {}, showJid ? "true" : "false")],
    [xml("nick", { xmlns: NS_NICK }, nick)],
  );
}

/** `spectate` the game at `to`. */
export function spectate(to, id) {
  return message(to, id, [xml("action", {}, "spectate")]);
}

/** `leave` the current game. */
export function leave(to, id) {
  return message(to, id, [xml("action", {}, "leave")]);
}

/**
 * `paddleposition`: where the player wants their paddle's top edge, one decimal. The one
 * high-rate message a player sends, so it is kept small: no id, no hints (a message without
 * a body is neither archived nor copied to other clients anyway).
 */
export function paddle(to, y) {
  return message(to, undefined, [xml("action", {}, "paddleposition"), xml("y", {}, y.toFixed(1))], [], false);
}

function number(fields, name) {
  const text = fields[name];
  if (text === undefined || !/^\s*-?\d+(\.\d+)?\s*$/.test(text)) return NaN;
  return Number.parseFloat(text);
}

function finite(...values) {
  return values.every(Number.isFinite);
}

/** The first RFC 6120 condition and text of an error stanza. */
export function stanzaError(el) {
  const error = child(el, "error");
  const condition = children(error, null, NS_STANZAS).find((c) => c.localName !== "text");
  return {
    condition: condition?.localName ?? "undefined-condition",
    text: childText(error, "text", NS_STANZAS)?.trim() ?? "",
  };
}

/**
 * What a received stanza means for the game, or null when it is not a game message (or a
 * malformed one: numbers that are not numbers are never trusted).
 */
export function decode(el) {
  if (el?.localName !== "message") return null;
  const type = attr(el, "type") ?? "normal";
  const pong = child(el, "pong", NS);
  if (type === "error") {
    const action = childText(pong, "action", NS)?.trim().toLowerCase() ?? null;
    return { type: "error", from: attr(el, "from"), id: attr(el, "id"), action, ...stanzaError(el) };
  }
  if (!pong) return null;
  const fields = {};
  for (const c of children(pong, null, NS)) fields[c.localName] = c.textContent.trim();
  switch ((fields.action ?? "").toLowerCase()) {
    case "dimensions": {
      const d = {
        type: "dimensions",
        width: number(fields, "width"),
        height: number(fields, "height"),
        paddleWidth: number(fields, "paddlewidth"),
        paddleHeight: number(fields, "paddleheight"),
        paddleMargin: number(fields, "paddlemargin"),
        paddleY: number(fields, "paddley"),
        ballRadius: number(fields, "ballradius"),
        side: fields.side === "0" ? 0 : fields.side === "1" ? 1 : null,
        spectator: fields.role === "spectator",
        game: fields.game ?? null,
      };
      const ok = finite(d.width, d.height, d.paddleWidth, d.paddleHeight, d.paddleMargin, d.paddleY, d.ballRadius);
      return ok && d.width > 0 && d.height > 0 && (d.side !== null || d.spectator) ? d : null;
    }
    case "ballposition": {
      const x = number(fields, "x");
      const y = number(fields, "y");
      return finite(x, y) ? { type: "ball", x, y } : null;
    }
    case "opponentpaddleupdate": {
      const y = number(fields, "y");
      const side = fields.side === "0" ? 0 : fields.side === "1" ? 1 : null;
      return finite(y) ? { type: "paddle", y, side } : null;
    }
    case "scoreupdate": {
      const score = [number(fields, "player1"), number(fields, "player2")];
      return finite(...score) ? { type: "score", score } : null;
    }
    case "gameover": {
      const score = [number(fields, "player1"), number(fields, "player2")];
      if (!finite(...score)) return null;
      const winnerSide = fields.winnerside === "0" ? 0 : fields.winnerside === "1" ? 1 : null;
      return {
        type: "over",
        winner: fields.winner ?? null,
        winnerSide,
        score,
        reason: fields.reason ?? "",
        players: [fields.player1jid ?? null, fields.player2jid ?? null],
      };
    }
    default:
      return null;
  }
}
