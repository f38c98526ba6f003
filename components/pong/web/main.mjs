// The page: log in, choose a game, play it, see how it ended. Wires the XMPP session
// (xmpp.mjs), the protocol (protocol.mjs), the game state (game.mjs), the canvas
// (view.mjs) and the paddle input (input.mjs) to the page's controls. Everything shown
// comes from the network as text (textContent), never as HTML.
import { apply, ending, newGame, paddleMax, scoreText, stepOwnPaddle } from "./game.mjs";
import { PaddleInput } from "./input.mjs";
import * as protocol from "./protocol.mjs";
import { View } from "./view.mjs";
import { Session, validWebSocketUrl } from "./xmpp.mjs";

const $ = (id) => document.getElementById(id);
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";

const config = { websocket: meta("xmppong-websocket"), domain: meta("xmppong-domain") };
const params = new URLSearchParams(location.search);
const JOIN_TIMEOUT_MS = 10000;
// The server moves paddles once per tick (30 Hz by default) towards the latest request, so
// sending more often is wasted (docs/pong-protocol.md 5.2); on a 60-144 Hz display this
// halves to quarters the traffic (and stays far below the server's flood limit).
const PADDLE_INTERVAL_MS = 1000 / 30;

let session = null;
let me = null; // bare JID
let game = null;
let lastSent = null;
let lastSentAt = 0;
let sentPaddles = 0;
let frames = 0;
let joinTimer = null;
let lastRequest = { name: "", spectator: false };
let joinId = null;
let lastFrame = performance.now();

const view = new View($("pong"));
const input = new PaddleInput($("pong"), (clientY) => {
  if (!game?.field) return null;
  const rect = $("pong").getBoundingClientRect();
  return (clientY - rect.top) * view.unitsPerPixel(game.field);
});

function say(text) {
  $("alert").textContent = text ?? "";
  relayout();
}

/** Fits the canvas again after something above it appeared or went. */
function relayout() {
  if (game && !$("game-screen").hidden) view.fit(game.field);
}

function screen(name) {
  for (const id of ["login-screen", "lobby-screen", "game-screen"]) $(id).hidden = id !== `${name}-screen`;
}

function setup() {
  const ws = params.get("ws");
  if (ws !== null) {
    if (validWebSocketUrl(ws)) {
      config.websocket = ws;
      const warning = $("server-warning");
      warning.textContent = `This link asks you to log in at ${ws}, not at this game server's usual ${meta("xmppong-websocket")}. Only continue if you trust it.`;
      warning.hidden = false;
    } else {
      say(`Ignoring ?ws=${ws}: it must be a ws:// or wss:// address.`);
    }
  }
  $("server").textContent = config.websocket;
  const name = params.get("game");
  if (name && protocol.validGameName(name)) $("game-name").value = name;
  try {
    $("address").value = localStorage.getItem("xmppong.address") ?? "";
    $("nick").value = localStorage.getItem("xmppong.nick") ?? "";
    $("showjid").checked = localStorage.getItem("xmppong.showjid") === "true";
  } catch {
    // Storage may be disabled; nothing is lost.
  }
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    login();
  });
  $("play").addEventListener("click", () => join("", false));
  $("friend-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("game-name").value.trim() || `game-${Math.random().toString(36).slice(2, 7)}`;
    join(name, false);
  });
  $("watch").addEventListener("click", () => join($("game-name").value.trim(), true));
  $("again").addEventListener("click", () => join(lastRequest.name, false));
  $("back").addEventListener("click", () => toLobby());
  $("leave").addEventListener("click", () => {
    leaveGame();
    toLobby();
  });
  $("logout").addEventListener("click", () => {
    session?.close();
    session = null;
    screen("login");
  });
  window.addEventListener("pagehide", () => {
    leaveGame();
    session?.close();
  });
  window.addEventListener("resize", relayout);
  screen("login");
  requestAnimationFrame(frame);
}

async function login() {
  say("");
  const address = $("address").value.trim();
  const password = $("password").value;
  if (!address || !password) {
    say("Enter your address (like alice@localhost) and your password.");
    return;
  }
  const button = $("login-form").querySelector("button");
  button.disabled = true;
  button.textContent = "Logging in…";
  const attempt = new Session({ url: config.websocket });
  try {
    const jid = await attempt.login(address, password);
    session = attempt;
    me = jid.split("/")[0];
    $("password").value = "";
    try {
      localStorage.setItem("xmppong.address", address);
      localStorage.setItem("xmppong.nick", $("nick").value.trim());
      localStorage.setItem("xmppong.showjid", String($("showjid").checked));
    } catch {
      // Not remembering the address is fine.
    }
    session.addEventListener("stanza", (event) => onStanza(event.detail));
    session.addEventListener("closed", (event) => onClosed(attempt, event.detail));
    $("me").textContent = me;
    toLobby();
  } catch (error) {
    say(error.message);
  } finally {
    button.disabled = false;
    button.textContent = "Log in";
  }
}

function toLobby() {
  game = null;
  input.setEnabled(false);
  clearTimeout(joinTimer);
  screen(session ? "lobby" : "login");
}

function join(name, spectator) {
  say("");
  if (!session) return;
  if (name && !protocol.validGameName(name)) {
    say(`“${name}” cannot be a game name: use up to 64 letters or digits, without spaces or " & ' / : < > @.`);
    return;
  }
  if (spectator && !name) {
    say("Enter the name of the game you want to watch.");
    return;
  }
  leaveGame();
  lastRequest = { name, spectator };
  const to = protocol.gameAddress(config.domain, name);
  game = newGame(name, { spectator });
  lastSent = null;
  const id = `join-${Date.now().toString(36)}`;
  joinId = id;
  session.send(protocol.presenceTo(to));
  session.send(
    spectator
      ? protocol.spectate(to, id)
      : protocol.checkIn(to, { id, nick: $("nick").value.trim(), showJid: $("showjid").checked }),
  );
  $("game-title").textContent = name ? (spectator ? `Watching ${name}` : `Game ${name}`) : "Matchmaking";
  $("info").textContent = spectator ? "Joining as a spectator…" : "Checking in…";
  $("score").textContent = "Score 0:0";
  $("result").hidden = true;
  $("controls").hidden = spectator;
  const share = name && !spectator;
  $("share").hidden = !share;
  if (share) {
    const link = new URL("/", location.href);
    link.searchParams.set("game", name);
    if (params.get("ws") && validWebSocketUrl(params.get("ws"))) link.searchParams.set("ws", params.get("ws"));
    $("share-link").href = link.href;
    $("share-link").textContent = link.href;
  }
  screen("game");
  view.fit(null);
  clearTimeout(joinTimer);
  const joining = game;
  joinTimer = setTimeout(() => {
    if (game === joining && game.phase === "joining") {
      say(`No answer from the game server ${config.domain}. Is it running?`);
      toLobby();
    }
  }, JOIN_TIMEOUT_MS);
}

/** Tells the server this page is leaving the current game (a player forfeits). */
function leaveGame() {
  if (session && game && game.phase !== "over") session.send(protocol.leave(config.domain));
}

function fromGameServer(from) {
  return from === config.domain || (from ?? "").endsWith(`@${config.domain}`);
}

function onStanza(el) {
  const event = protocol.decode(el);
  if (!event || !game) return;
  if (event.type === "error") {
    if (fromGameServer(event.from) || event.action) onError(event);
    return;
  }
  // Only the game server's own messages count: anyone can send a message to this page.
  if ((el.getAttribute("from") ?? "") !== config.domain) return;
  const before = game.phase;
  apply(game, event, performance.now());
  if (event.type === "dimensions") {
    clearTimeout(joinTimer);
    const where = game.side === 0 ? "left" : "right";
    $("game-title").textContent = game.spectator ? `Watching ${game.name}` : `Game ${game.name}`;
    $("info").textContent = game.spectator
      ? "You are watching."
      : `You play on the ${where}, the darker paddle. ${game.phase === "waiting" ? "Waiting for an opponent…" : ""}`;
    view.fit(game.field);
    lastSent = game.target;
  }
  if (event.type === "score" || event.type === "over") $("score").textContent = `Score ${scoreText(game)}`;
  if (game.phase === "playing" && before !== "playing") {
    if (!game.spectator) $("info").textContent = `You play on the ${game.side === 0 ? "left" : "right"}, the darker paddle.`;
    input.setEnabled(!game.spectator);
  }
  if (event.type === "over") showEnding();
}

function onError(event) {
  const name = game.name || "matchmaking";
  const text = event.text ? ` (${event.text})` : "";
  if (event.action === "paddleposition") return; // the game goes on; the next frame corrects it
  // A refusal of an earlier check-in (the player has moved on since) is old news.
  if ((event.action === "playercheckingin" || event.action === "spectate") && event.id !== joinId) return;
  let message;
  switch (event.condition) {
    case "conflict":
      message = game.spectator
        ? `Cannot watch ${name}${text}.`
        : event.text.includes("full")
          ? `The game ${name} is full${text}. You can watch it instead.`
          : `You cannot join ${name}${text}.`;
      break;
    case "item-not-found":
      message = `There is no game called ${name} to watch.`;
      break;
    case "remote-server-not-found":
    case "remote-server-timeout":
    case "service-unavailable":
    case "forbidden":
      message = `The game server ${config.domain} is not reachable right now${text}.`;
      break;
    default:
      message = `The game server refused: ${event.condition}${text}.`;
  }
  say(message);
  if (game.phase === "joining") toLobby();
}

function showEnding() {
  input.setEnabled(false);
  const end = ending(game, me);
  $("result-headline").textContent = end.headline;
  $("result-detail").textContent = end.detail;
  $("result").hidden = false;
  $("controls").hidden = true;
  $("info").textContent = "";
  say(end.alert);
}

function onClosed(which, error) {
  if (which !== session) return;
  const playing = game && game.phase !== "over";
  session = null;
  game = null;
  input.setEnabled(false);
  clearTimeout(joinTimer);
  screen("login");
  if (error) say(playing ? `Connection lost during the game: ${error.message}` : error.message);
}

function frame(now) {
  frames++;
  const dt = Math.min(0.1, Math.max(0, (now - lastFrame) / 1000));
  lastFrame = now;
  if (game?.field) {
    if (game.side !== null && game.phase === "playing") {
      const f = game.field;
      game.target = input.next(game.target, f.paddleHeight, paddleMax(game), dt);
      // At most one paddle update per frame (and per server tick), only when the request changed.
      if (game.target !== lastSent && session && now - lastSentAt >= PADDLE_INTERVAL_MS - 2) {
        session.send(protocol.paddle(config.domain, game.target));
        lastSent = game.target;
        lastSentAt = now;
        sentPaddles++;
      }
      stepOwnPaddle(game, dt);
    }
    view.draw(game, now);
  }
  requestAnimationFrame(frame);
}

// Read-only view of the game for tests and curious people (no password, no session).
window.xmppong = Object.freeze({
  snapshot() {
    const now = performance.now();
    return {
      jid: session?.jid ?? null,
      phase: game?.phase ?? null,
      name: game?.name ?? null,
      side: game?.side ?? null,
      spectator: game?.spectator ?? null,
      field: game?.field ?? null,
      paddles: game ? [...game.paddles] : null,
      target: game?.target ?? null,
      score: game ? [...game.score] : null,
      ball: game?.ball.at(now) ?? null,
      received: game ? { ...game.received } : null,
      sentPaddles,
      frames,
      time: now,
      traffic: session ? { ...session.traffic } : null,
      over: game?.over ?? null,
    };
  },
});

setup();
