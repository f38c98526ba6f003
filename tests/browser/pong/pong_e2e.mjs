// End-to-end XMPPong in Debian's headless Chromium (driven by playwright-core): people log
// in on the page `xmpp-pong` serves and play each other through a real XMPP server's
// WebSocket. Run by tests/test_pong_web.py:
//
//   node pong_e2e.mjs '{"scenario": "match" | "trouble", "base": "http://127.0.0.1:PORT/",
//                       "game": "friday", "users": {"alice": "alicepw", ...},
//                       "shots": DIR, "chromium": "/usr/bin/chromium",
//                       "closedPort": a local port nothing listens on,
//                       "websocket": "ws://127.0.0.1:PORT/xmpp-websocket" (the XMPP server's)}'
//
// stdout: one JSON object per line, {"event": "step", ...} as the scenario goes, then
// {"event": "done", ...observations} or {"event": "fail", "message": ...}. The page is read
// through its accessible names and its test hook window.xmppong.snapshot() (what it
// received from the server), never through fixed sleeps.
import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const step = (name, data = {}) => emit({ event: "step", step: name, ...data });
const WAIT = { timeout: 20000, polling: 50 };

const browser = await chromium.launch({
  executablePath: config.chromium ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

/** A person with their own browser profile (own storage, like a second browser). */
async function person(name, query = `?game=${encodeURIComponent(config.game)}`) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const page = await context.newPage();
  page.on("console", (m) => emit({ event: "console", who: name, text: m.text() }));
  page.on("pageerror", (e) => emit({ event: "pageerror", who: name, text: String(e) }));
  await page.goto(new URL(query, config.base).href, { waitUntil: "load", timeout: 15000 });
  return { name, page, context };
}

const snapshot = (who) => who.page.evaluate(() => window.xmppong.snapshot());
const alertText = (who) => who.page.getByRole("alert").textContent();
const statusText = (who) => who.page.getByRole("status").textContent();

async function login(who, password = config.users[who.name], nick = "") {
  const p = who.page;
  await p.getByLabel("Address", { exact: true }).fill(`${who.name}@localhost`);
  await p.getByLabel("Password", { exact: true }).fill(password);
  if (nick) await p.getByLabel("Nickname", { exact: true }).fill(nick);
  await p.getByRole("button", { name: "Log in", exact: true }).click();
}

async function loggedIn(who, nick) {
  await login(who, undefined, nick);
  await who.page.getByRole("button", { name: "Play with a friend", exact: true }).waitFor({ timeout: 15000 });
}

async function until(who, predicate, arg) {
  await who.page.waitForFunction(predicate, arg, WAIT);
  return snapshot(who);
}

const phase = (who, wanted) =>
  until(who, (p) => window.xmppong.snapshot().phase === p, wanted);

async function alertContaining(who, text) {
  await who.page.waitForFunction(
    (t) => (document.querySelector("[role=alert]")?.textContent ?? "").includes(t), text, WAIT);
  return alertText(who);
}

/** The colour drawn at a field position on the page's canvas. */
function pixelAt(who, fx, fy) {
  return who.page.evaluate(([x, y]) => {
    const canvas = document.querySelector("canvas");
    const f = window.xmppong.snapshot().field;
    const s = canvas.width / f.width;
    const d = canvas.getContext("2d").getImageData(Math.round(x * s), Math.round(y * s), 1, 1).data;
    return [d[0], d[1], d[2]];
  }, [fx, fy]);
}

/** Checks the player's own (darker) paddle is drawn on its side and the other one opposite. */
async function drawnSides(who) {
  const s = await snapshot(who);
  const f = s.field;
  const xs = [f.paddleMargin + f.paddleWidth / 2, f.width - f.paddleMargin - f.paddleWidth / 2];
  const colour = async (side) => pixelAt(who, xs[side], s.paddles[side] + f.paddleHeight / 2);
  return { own: await colour(s.side), other: await colour(1 - s.side) };
}

/** Keeps the player's paddle away from the ball with the mouse until `stop()` is true. */
async function dodge(who, stop) {
  const box = await who.page.getByRole("img", { name: "Pong" }).boundingBox();
  while (!(await stop())) {
    const s = await snapshot(who);
    if (s.phase === "over") return;
    const ballLow = s.ball && s.field && s.ball.y > s.field.height / 2;
    const y = ballLow ? box.y + 2 : box.y + box.height - 2;
    await who.page.mouse.move(box.x + box.width / 2, y);
    await who.page.waitForTimeout(40);
  }
}

/**
 * A TCP relay to the XMPP server's WebSocket port that the test can cut, like a network
 * failure: a page connected through it (`?ws=`) loses its connection mid-game.
 */
async function relay() {
  const target = new URL(config.websocket);
  const sockets = new Set();
  const server = net.createServer((down) => {
    const up = net.connect(Number(target.port), target.hostname);
    for (const s of [down, up]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        down.destroy();
        up.destroy();
      });
    }
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `ws://127.0.0.1:${server.address().port}${target.pathname}`,
    cut() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

async function shoot(who, label) {
  const file = path.join(config.shots, `${who.name}-${label}.png`);
  await who.page.screenshot({ path: file });
  return file;
}

async function match() {
  const alice = await person("alice");
  const bob = await person("bob");
  const prefilled = await alice.page.getByLabel("Game name", { exact: true }).inputValue();
  assert.equal(prefilled, config.game, "?game= pre-fills the game name");
  await Promise.all([loggedIn(alice, "Ally"), loggedIn(bob)]);
  step("logged in");

  // 1. Both join the named game; each sees itself on the side `dimensions` gave it.
  await alice.page.getByRole("button", { name: "Play with a friend", exact: true }).click();
  await phase(alice, "waiting");
  await bob.page.getByRole("button", { name: "Play with a friend", exact: true }).click();
  const [a, b] = await Promise.all([phase(alice, "playing"), phase(bob, "playing")]);
  assert.equal(a.side, 0, "alice checked in first: left");
  assert.equal(b.side, 1, "bob second: right");
  assert.equal(a.received.dimensions, 1);
  const sides = { alice: await drawnSides(alice), bob: await drawnSides(bob) };
  for (const [who, drawn] of Object.entries(sides)) {
    assert.deepEqual(drawn.own, [31, 95, 214], `${who}'s own paddle is drawn darker on its side`);
    assert.deepEqual(drawn.other, [48, 110, 255], `${who}'s opponent's paddle is drawn opposite`);
  }
  step("sides", { alice: a.side, bob: b.side, drawn: sides });

  // 2. ArrowUp on bob's page moves bob's paddle on alice's page.
  const start = a.paddles[1];
  const pressed = await snapshot(bob);
  await bob.page.keyboard.down("ArrowUp");
  const moved = await until(alice, (y0) => window.xmppong.snapshot().paddles[1] < y0 - 60, start);
  await bob.page.keyboard.up("ArrowUp");
  const released = await snapshot(bob);
  const sent = released.sentPaddles - pressed.sentPaddles;
  assert.ok(sent > 0, "bob's page sent paddle positions");
  assert.ok(sent <= released.frames - pressed.frames + 1, `at most one update per frame: ${sent} sent`);
  const perSecond = (sent - 1) / ((released.time - pressed.time) / 1000);
  assert.ok(perSecond <= 31, `at most one update per server tick: ${perSecond.toFixed(1)}/s`);
  // The last request goes out within a tick; then, standing still, nothing more is sent:
  // 15 more frames (the sentinel) pass without an update.
  const settled = await until(bob, (t) => window.xmppong.snapshot().time >= t + 100, released.time);
  const later = await until(bob, (f) => window.xmppong.snapshot().frames >= f + 15, settled.frames);
  assert.equal(later.sentPaddles, settled.sentPaddles, "no update while the paddle stands still");
  step("arrow up", {
    before: start, after: moved.paddles[1], sent, frames: released.frames - pressed.frames,
    ms: Math.round(released.time - pressed.time),
  });
  const during = [await shoot(alice, "playing"), await shoot(bob, "playing")];

  // 3. Both keep their paddles away: a point is scored; both statuses show it.
  let stop = false;
  const trafficFrom = await snapshot(alice);
  const dodging = Promise.all([dodge(alice, async () => stop), dodge(bob, async () => stop)]);
  await until(alice, () => window.xmppong.snapshot().score.some((n) => n > 0));
  await until(bob, () => window.xmppong.snapshot().score.some((n) => n > 0));
  const afterPoint = { alice: await statusText(alice), bob: await statusText(bob) };
  const [sa, sb] = [afterPoint.alice.match(/(\d+):(\d+)/), afterPoint.bob.match(/(\d+):(\d+)/)];
  assert.ok(sa && sb, `status holds N:M: ${JSON.stringify(afterPoint)}`);
  assert.equal(`${sa[2]}:${sa[1]}`, `${sb[1]}:${sb[2]}`, "each page shows its own score first");
  assert.equal(Number(sa[1]) + Number(sa[2]), 1, "one point so far");
  step("point", afterPoint);

  // 4. Played to the end (two points win): won/lost with the right score on both pages.
  await Promise.all([phase(alice, "over"), phase(bob, "over")]);
  stop = true;
  await dodging;
  // What one player's connection carried while playing (both paddles moving all the time).
  const trafficTo = await snapshot(alice);
  const seconds = (trafficTo.time - trafficFrom.time) / 1000;
  const rate = (key) => Math.round((trafficTo.traffic[key] - trafficFrom.traffic[key]) / seconds);
  step("traffic", { seconds: Number(seconds.toFixed(1)), framesInPerSec: rate("framesIn"),
    charsInPerSec: rate("charsIn"), framesOutPerSec: rate("framesOut"), charsOutPerSec: rate("charsOut") });
  const headline = async (who) =>
    (await who.page.locator("#result-headline").textContent()).trim();
  const detail = async (who) => (await who.page.locator("#result-detail").textContent()).trim();
  const end = {
    alice: { headline: await headline(alice), detail: await detail(alice), status: await statusText(alice) },
    bob: { headline: await headline(bob), detail: await detail(bob), status: await statusText(bob) },
  };
  const over = (await snapshot(alice)).over;
  const aliceWon = over.winnerSide === 0;
  const [p1, p2] = over.score;
  assert.equal(end.alice.headline, aliceWon ? `You won ${p1}:${p2}` : `You lost ${p1}:${p2}`);
  assert.equal(end.bob.headline, aliceWon ? `You lost ${p2}:${p1}` : `You won ${p2}:${p1}`);
  assert.equal(end.alice.detail, "against bob@localhost");
  assert.equal(end.bob.detail, "against alice@localhost");
  assert.equal(Math.max(p1, p2), 2, "played to two points");
  await alice.page.getByRole("button", { name: "Play again", exact: true }).waitFor();
  await alice.page.getByRole("link", { name: "Leaderboard" }).first().waitFor();
  const after = [await shoot(alice, "end"), await shoot(bob, "end")];
  step("game over", end);
  return { sides: { alice: a.side, bob: b.side }, end, over, screenshots: [...during, ...after] };
}

async function trouble() {
  // Server unreachable: a ?ws= that nothing listens on.
  const carol = await person("carol", `?game=${config.game}&ws=ws://127.0.0.1:${config.closedPort}/xmpp-websocket`);
  await login(carol);
  const unreachable = await alertContaining(carol, "Cannot reach");
  step("unreachable", { alert: unreachable });

  // 5a. Wrong password.
  await carol.page.goto(new URL(`?game=${config.game}`, config.base).href);
  await login(carol, "not-the-password");
  const wrong = await alertContaining(carol, "Wrong address or password");
  step("wrong password", { alert: wrong });
  await loggedIn(carol);

  const alice = await person("alice");
  const bob = await person("bob");
  await Promise.all([loggedIn(alice), loggedIn(bob)]);
  await alice.page.getByRole("button", { name: "Play with a friend", exact: true }).click();
  await phase(alice, "waiting");
  await bob.page.getByRole("button", { name: "Play with a friend", exact: true }).click();
  await Promise.all([phase(alice, "playing"), phase(bob, "playing")]);

  // Watching a game that does not exist says so.
  const gameName = carol.page.getByLabel("Game name", { exact: true });
  await gameName.fill("nosuchgame");
  await carol.page.getByRole("button", { name: "Watch", exact: true }).click();
  const noGame = await alertContaining(carol, "There is no game called nosuchgame");
  await gameName.fill(config.game);
  step("no such game", { alert: noGame });

  // 5b. A third player is told the game is full, and can watch it instead.
  await carol.page.getByRole("button", { name: "Play with a friend", exact: true }).click();
  const full = await alertContaining(carol, "is full");
  await carol.page.getByRole("button", { name: "Watch", exact: true }).click();
  const watching = await until(carol, () => {
    const s = window.xmppong.snapshot();
    return s.spectator === true && s.phase === "playing" && s.received.ball > 0;
  });
  const carolStatus = await statusText(carol);
  assert.match(carolStatus, /\d+:\d+/);
  step("full, then watching", { alert: full, status: carolStatus });

  // 6. Bob closes his page mid-game: alice is told her opponent left.
  await bob.context.close();
  const left = await alertContaining(alice, "opponent left");
  const aliceEnd = (await alice.page.locator("#result-headline").textContent()).trim();
  assert.match(aliceEnd, /^You won \d+:\d+$/);
  const carolSaw = await alertContaining(carol, "left the game");
  await shoot(alice, "opponent-left");
  await shoot(carol, "spectator-end");
  step("opponent left", { alert: left, headline: aliceEnd, spectator: carolSaw });

  // The connection of a player is lost mid-game (through a relay that is then cut): that
  // page says so, and the other is told the opponent left.
  const link = await relay();
  const dave = await person("dave", `?game=${config.game}&ws=${link.url}`);
  await loggedIn(dave);
  await alice.page.getByRole("button", { name: "Play again", exact: true }).click();
  await phase(alice, "waiting");
  await dave.page.getByRole("button", { name: "Play with a friend", exact: true }).click();
  await Promise.all([phase(alice, "playing"), phase(dave, "playing")]);
  link.cut();
  const lost = await alertContaining(dave, "Connection lost during the game");
  await dave.page.getByRole("button", { name: "Log in", exact: true }).waitFor();
  const aliceAgain = await alertContaining(alice, "opponent left the game (dave@localhost)");
  await shoot(dave, "connection-lost");
  step("connection lost", { alert: lost, other: aliceAgain });
  return { unreachable, wrong, full, watching: watching.spectator, left, aliceEnd, carolSaw, lost, aliceAgain };
}

let code = 0;
try {
  const result = config.scenario === "match" ? await match() : await trouble();
  emit({ event: "done", ...result });
} catch (error) {
  code = 1;
  emit({ event: "fail", message: String(error?.stack ?? error) });
} finally {
  await browser.close();
}
process.exit(code);
