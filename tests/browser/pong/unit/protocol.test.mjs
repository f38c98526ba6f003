// node --test: the web client's XML and xmpp:game:pong encode/decode, escaping included.
import assert from "node:assert/strict";
import test from "node:test";

import * as protocol from "../../../../components/pong/web/protocol.mjs";
import { Markup, escape, xml } from "../../../../components/pong/web/xml.mjs";
import { parseXml } from "./minixml.mjs";

const NS = "xmpp:game:pong";
const HOSTILE = `<&'">]]>`;

const pongChild = (stanza, name) =>
  stanza.children.find((c) => c.localName === "pong").children.find((c) => c.localName === name)?.textContent;

test("escape() makes any text safe in content and in either kind of attribute quote", () => {
  assert.equal(escape(HOSTILE), "&lt;&amp;&apos;&quot;&gt;]]&gt;");
  for (const quote of ["'", '"']) {
    const doc = parseXml(`<a v=${quote}${escape(HOSTILE)}${quote}>${escape(HOSTILE)}</a>`);
    assert.equal(doc.getAttribute("v"), HOSTILE);
    assert.equal(doc.textContent, HOSTILE);
  }
  // Characters XML cannot carry at all are dropped instead of breaking the stream.
  assert.equal(escape("a\u0000b\u0007c\uFFFEd\uD800e\t\n"), "abcde\t\n");
  assert.equal(escape("emoji 🏓 ok"), "emoji 🏓 ok");
});

test("xml() escapes strings and inserts only Markup as markup", () => {
  const el = xml("message", { to: `x'@y`, id: undefined, type: null }, "<b>", xml("pong", { xmlns: NS }));
  assert.ok(el instanceof Markup);
  assert.equal(String(el), `<message to='x&apos;@y'>&lt;b&gt;<pong xmlns='xmpp:game:pong'/></message>`);
  assert.throws(() => xml("a b"), /not an XML name/);
  assert.throws(() => xml("a", { "x y": 1 }), /not an XML name/);
});

test("a check-in with a hostile game name and nickname is still one well-formed stanza", () => {
  const to = protocol.gameAddress("pong.localhost", HOSTILE);
  const stanza = parseXml(String(protocol.checkIn(to, { id: `i'd"<`, nick: HOSTILE, showJid: true })));
  assert.equal(stanza.localName, "message");
  assert.equal(stanza.namespaceURI, "jabber:client");
  assert.equal(stanza.getAttribute("to"), `${HOSTILE}@pong.localhost`);
  assert.equal(stanza.getAttribute("id"), `i'd"<`);
  assert.equal(pongChild(stanza, "action"), "playercheckingin");
  assert.equal(pongChild(stanza, "showjid"), "true");
  const nick = stanza.children.find((c) => c.localName === "nick");
  assert.equal(nick.namespaceURI, "http://jabber.org/protocol/nick");
  assert.equal(nick.textContent, HOSTILE);
  const hints = stanza.children.filter((c) => c.namespaceURI === "urn:xmpp:hints").map((c) => c.localName);
  assert.deepEqual(hints, ["no-store", "no-permanent-store", "no-copy"]);
});

test("paddle, spectate, leave and directed presence", () => {
  const paddle = parseXml(String(protocol.paddle("pong.localhost", 212.46)));
  assert.equal(pongChild(paddle, "action"), "paddleposition");
  assert.equal(pongChild(paddle, "y"), "212.5");
  assert.equal(paddle.getAttribute("id"), null, "high-rate messages need no id");
  assert.equal(paddle.children.length, 1, "and no hints: just the payload");
  const bytes = String(protocol.paddle("pong.localhost", 212.46)).length;
  assert.ok(bytes < 160, `${bytes} bytes`);
  const watch = parseXml(String(protocol.spectate("friday@pong.localhost", "w1")));
  assert.equal(pongChild(watch, "action"), "spectate");
  assert.equal(pongChild(parseXml(String(protocol.leave("pong.localhost"))), "action"), "leave");
  const presence = parseXml(String(protocol.presenceTo("friday@pong.localhost")));
  assert.equal(presence.localName, "presence");
  assert.equal(presence.getAttribute("to"), "friday@pong.localhost");
  assert.equal(presence.getAttribute("type"), null);
});

test("game names are checked before they become addresses", () => {
  for (const good of ["friday", "Friday-2", "ünïcode", "a".repeat(64)]) assert.ok(protocol.validGameName(good), good);
  for (const bad of ["", "two words", "a@b", "a/b", "<x>", "it's", 'q"', "a:b", "a&b", "a".repeat(65), "tab\t"]) {
    assert.ok(!protocol.validGameName(bad), bad);
  }
  assert.equal(protocol.gameAddress("pong.localhost", ""), "pong.localhost");
});

const fromServer = (payload, attrs = "type='headline'") =>
  parseXml(
    `<message xmlns='jabber:client' from='pong.localhost' to='alice@localhost/x' ${attrs}>` +
      `<body>fallback</body><pong xmlns='${NS}'>${payload}</pong>` +
      `<no-store xmlns='urn:xmpp:hints'/></message>`,
  );

test("decode() reads every message of the component", () => {
  const dims = protocol.decode(
    fromServer(
      "<action>dimensions</action><width>800</width><height>600</height><paddlewidth>20</paddlewidth>" +
        "<paddleheight>100</paddleheight><paddlemargin>10</paddlemargin><paddley>250</paddley>" +
        "<ballradius>3</ballradius><side>1</side><game>fri&amp;day</game>",
    ),
  );
  assert.deepEqual(dims, {
    type: "dimensions", width: 800, height: 600, paddleWidth: 20, paddleHeight: 100, paddleMargin: 10,
    paddleY: 250, ballRadius: 3, side: 1, spectator: false, game: "fri&day",
  });
  const watching = protocol.decode(
    fromServer(
      "<action>dimensions</action><width>800</width><height>600</height><paddlewidth>20</paddlewidth>" +
        "<paddleheight>100</paddleheight><paddlemargin>10</paddlemargin><paddley>250</paddley>" +
        "<ballradius>3</ballradius><role>spectator</role><game>friday</game>",
    ),
  );
  assert.equal(watching.spectator, true);
  assert.equal(watching.side, null);
  assert.deepEqual(protocol.decode(fromServer("<action>ballposition</action><x>412.3</x><y>187</y>")), {
    type: "ball", x: 412.3, y: 187,
  });
  assert.deepEqual(protocol.decode(fromServer("<action>opponentPaddleUpdate</action><y>220</y><side>0</side>")), {
    type: "paddle", y: 220, side: 0,
  });
  assert.deepEqual(protocol.decode(fromServer("<action>scoreupdate</action><player1>3</player1><player2>1</player2>")), {
    type: "score", score: [3, 1],
  });
  assert.deepEqual(
    protocol.decode(
      fromServer(
        "<action>gameOver</action><winner>bob@localhost</winner><winnerside>1</winnerside>" +
          "<player1>7</player1><player2>10</player2><reason>points</reason>" +
          "<player1jid>alice@localhost</player1jid><player2jid>bob@localhost</player2jid>",
      ),
    ),
    { type: "over", winner: "bob@localhost", winnerSide: 1, score: [7, 10], reason: "points",
      players: ["alice@localhost", "bob@localhost"] },
  );
  const noWinner = protocol.decode(fromServer("<action>gameOver</action><player1>0</player1><player2>0</player2><reason>shutdown</reason>"));
  assert.equal(noWinner.winner, null);
  assert.equal(noWinner.winnerSide, null);
});

test("decode() never trusts what is not a number, and ignores what is not a game message", () => {
  for (const bad of ["NaN", "Infinity", "1e400", "", "12px", "0x10", " - 1"]) {
    assert.equal(protocol.decode(fromServer(`<action>ballposition</action><x>${bad}</x><y>1</y>`)), null, bad);
  }
  assert.equal(protocol.decode(fromServer("<action>ballposition</action><y>1</y>")), null, "missing x");
  assert.equal(protocol.decode(fromServer("<action>cheat</action>")), null);
  assert.equal(protocol.decode(parseXml("<message xmlns='jabber:client'><body>hi</body></message>")), null);
  assert.equal(protocol.decode(parseXml("<presence xmlns='jabber:client'/>")), null);
  // Elements of another namespace with the same names are not the game's.
  assert.equal(
    protocol.decode(parseXml("<message xmlns='jabber:client'><pong xmlns='urn:other'><action>scoreupdate</action></pong></message>")),
    null,
  );
  // Dimensions without a side or a spectator role, or with a zero field, are refused.
  assert.equal(protocol.decode(fromServer("<action>dimensions</action><width>0</width><height>600</height>")), null);
});

test("decode() reads errors: the condition, the text and the refused action", () => {
  const error = parseXml(
    "<message xmlns='jabber:client' type='error' from='friday@pong.localhost' id='c1'>" +
      `<pong xmlns='${NS}'><action>playercheckingin</action></pong>` +
      "<error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" +
      "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Game is currently &lt;full&gt;</text></error></message>",
  );
  assert.deepEqual(protocol.decode(error), {
    type: "error", from: "friday@pong.localhost", id: "c1", action: "playercheckingin",
    condition: "conflict", text: "Game is currently <full>",
  });
  const bounce = parseXml(
    "<message xmlns='jabber:client' type='error' from='pong.localhost'>" +
      "<error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
  );
  assert.equal(protocol.decode(bounce).condition, "remote-server-not-found");
  assert.equal(protocol.decode(bounce).action, null);
});
