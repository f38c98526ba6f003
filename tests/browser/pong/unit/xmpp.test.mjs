// node --test: the page's XMPP session (xmpp.mjs) against a scripted in-memory server that
// speaks RFC 7395 framing: login, binding, failures, a dropped connection, IQs.
import assert from "node:assert/strict";
import test from "node:test";

import { Session, XmppError, parseAddress, plainAllowed, validWebSocketUrl } from "../../../../components/pong/web/xmpp.mjs";
import { parseXml } from "./minixml.mjs";

const SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='s1' version='1.0'/>";
const mechanisms = (...names) =>
  `<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='${SASL}'>` +
  names.map((n) => `<mechanism>${n}</mechanism>`).join("") + "</mechanisms></stream:features>";
const BIND_FEATURES =
  "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>" +
  "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" +
  "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session></stream:features>";

/**
 * A WebSocket whose server side is `script(frame, socket)`: called with every parsed frame
 * the client sends; it answers with socket.reply(text). Everything the client sent is kept.
 */
function fakeSocket(script, { refuse = false } = {}) {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocol) {
      this.url = url;
      this.protocol = protocol;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
      setTimeout(() => {
        if (refuse) {
          this.readyState = 3;
          this.onerror?.({});
          this.onclose?.({});
        } else {
          this.readyState = 1;
          this.onopen?.({});
        }
      }, 0);
    }
    send(text) {
      const frame = parseXml(text); // every frame must be well-formed XML on its own
      this.sent.push(frame);
      queueMicrotask(() => script(frame, this));
    }
    reply(text) {
      setTimeout(() => this.readyState === 1 && this.onmessage?.({ data: text }), 0);
    }
    drop() {
      this.readyState = 3;
      this.onclose?.({});
    }
    close() {
      this.readyState = 3;
    }
  }
  return { FakeWebSocket, sockets };
}

/** A server that accepts alice/alicepw with PLAIN and binds alice@localhost/r. */
function plainServer({ password = "alicepw", streamError = null } = {}) {
  let opens = 0;
  return (frame, ws) => {
    if (frame.localName === "open") {
      if (streamError) {
        ws.reply(OPEN);
        ws.reply(`<stream:error xmlns:stream='http://etherx.jabber.org/streams'><${streamError} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`);
        return;
      }
      opens++;
      ws.reply(OPEN);
      ws.reply(opens === 1 ? mechanisms("PLAIN") : BIND_FEATURES);
    } else if (frame.localName === "auth") {
      const ok = Buffer.from(frame.textContent, "base64").toString() === `\0alice\0${password}`;
      ws.reply(ok ? `<success xmlns='${SASL}'/>` : `<failure xmlns='${SASL}'><not-authorized/></failure>`);
    } else if (frame.localName === "iq" && frame.children[0]?.localName === "bind") {
      const resource = frame.children[0].children[0].textContent;
      ws.reply(`<iq xmlns='jabber:client' type='result' id='${frame.getAttribute("id")}'>` +
        `<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/${resource}</jid></bind></iq>`);
    }
  };
}

const session = (FakeWebSocket, url = "ws://127.0.0.1:5280/xmpp-websocket") =>
  new Session({ url, WebSocketImpl: FakeWebSocket, parse: parseXml, timeoutMs: 2000 });

test("logs in with PLAIN on loopback, binds, announces presence, then delivers stanzas", async () => {
  const { FakeWebSocket, sockets } = fakeSocket(plainServer());
  const s = session(FakeWebSocket);
  const jid = await s.login("alice@localhost", "alicepw");
  assert.match(jid, /^alice@localhost\/xmppong-/);
  const ws = sockets[0];
  assert.equal(ws.protocol, "xmpp");
  assert.equal(ws.sent[0].getAttribute("to"), "localhost");
  const presence = ws.sent.find((f) => f.localName === "presence");
  assert.equal(presence.namespaceURI, "jabber:client", "every stanza carries jabber:client");
  const got = new Promise((resolve) => s.addEventListener("stanza", (e) => resolve(e.detail), { once: true }));
  ws.reply("<message xmlns='jabber:client' from='pong.localhost'><body>hi</body></message>");
  assert.equal((await got).localName, "message");
  s.close();
  assert.equal(ws.sent.at(-1).localName, "close");
});

test("a wrong password, an unknown host, an unreachable server each say so", async () => {
  const wrong = fakeSocket(plainServer({ password: "other" }));
  await assert.rejects(session(wrong.FakeWebSocket).login("alice@localhost", "alicepw"),
    (e) => e instanceof XmppError && e.kind === "auth" && e.message === "Wrong address or password.");
  const host = fakeSocket(plainServer({ streamError: "host-unknown" }));
  await assert.rejects(session(host.FakeWebSocket).login("alice@example.org", "x"),
    (e) => e.kind === "host" && /does not serve example.org/.test(e.message));
  const down = fakeSocket(() => {}, { refuse: true });
  await assert.rejects(session(down.FakeWebSocket).login("alice@localhost", "x"),
    (e) => e.kind === "unreachable" && /Cannot reach the XMPP server at ws:\/\/127.0.0.1:5280/.test(e.message));
  await assert.rejects(session(down.FakeWebSocket).login("alice", "x"), /name@server/);
});

test("PLAIN is refused over an unencrypted connection to another machine", async () => {
  const { FakeWebSocket, sockets } = fakeSocket(plainServer());
  await assert.rejects(session(FakeWebSocket, "ws://xmpp.example.org/ws").login("alice@localhost", "alicepw"),
    (e) => e.kind === "insecure" && /wss:\/\//.test(e.message));
  assert.ok(!sockets[0].sent.some((f) => f.localName === "auth"), "the password was never sent");
  assert.ok(plainAllowed("wss://xmpp.example.org/ws") && plainAllowed("ws://localhost:5280/x"));
  // Prosody with c2s_require_encryption over ws:// offers no mechanism at all.
  const none = fakeSocket((frame, ws) => {
    if (frame.localName === "open") {
      ws.reply(OPEN);
      ws.reply(mechanisms());
    }
  });
  await assert.rejects(session(none.FakeWebSocket).login("alice@localhost", "alicepw"),
    (e) => e.kind === "insecure" && /no way to log in over this connection/.test(e.message));
  assert.ok(!plainAllowed("ws://10.0.0.1/ws"));
});

test("a server that cannot prove it knows the password is refused (SCRAM)", async () => {
  const { FakeWebSocket } = fakeSocket((frame, ws) => {
    if (frame.localName === "open") {
      ws.reply(OPEN);
      ws.reply(mechanisms("SCRAM-SHA-1"));
    } else if (frame.localName === "auth") {
      assert.equal(frame.getAttribute("mechanism"), "SCRAM-SHA-1");
      const first = Buffer.from(frame.textContent, "base64").toString();
      const nonce = /r=([^,]+)/.exec(first)[1];
      const challenge = `r=${nonce}server,s=QSXCR+Q6sek8bf92,i=4096`;
      ws.reply(`<challenge xmlns='${SASL}'>${Buffer.from(challenge).toString("base64")}</challenge>`);
    } else if (frame.localName === "response") {
      assert.match(Buffer.from(frame.textContent, "base64").toString(), /^c=biws,r=.+server,p=/);
      ws.reply(`<success xmlns='${SASL}'>${Buffer.from("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=").toString("base64")}</success>`);
    }
  });
  await assert.rejects(session(FakeWebSocket).login("alice@localhost", "alicepw"),
    (e) => e.kind === "auth" && /could not prove/.test(e.message));
});

test("a connection lost after login is reported; server IQs get exactly one answer", async () => {
  const { FakeWebSocket, sockets } = fakeSocket(plainServer());
  const s = session(FakeWebSocket);
  await s.login("alice@localhost", "alicepw");
  const ws = sockets[0];
  const answered = () => ws.sent.filter((f) => f.localName === "iq" && f.getAttribute("id")?.startsWith("srv"));
  ws.reply("<iq xmlns='jabber:client' type='get' id='srv1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
  ws.reply("<iq xmlns='jabber:client' type='set' id='srv2' from='x@localhost'><query xmlns='urn:x'/></iq>");
  ws.reply("<iq xmlns='jabber:client' type='result' id='srv3' from='x@localhost'/>");
  // The sentinel: a message after the IQs arrives, so the IQs were handled.
  await new Promise((resolve) => {
    s.addEventListener("stanza", resolve, { once: true });
    ws.reply("<message xmlns='jabber:client' from='pong.localhost'/>");
  });
  assert.deepEqual(answered().map((f) => [f.getAttribute("id"), f.getAttribute("type")]),
    [["srv1", "result"], ["srv2", "error"]]);
  const closed = new Promise((resolve) => s.addEventListener("closed", (e) => resolve(e.detail), { once: true }));
  ws.drop();
  const error = await closed;
  assert.equal(error.kind, "lost");
  assert.match(error.message, /connection to the XMPP server was lost/);
});

test("addresses and WebSocket URLs are checked", () => {
  assert.deepEqual(parseAddress(" alice@LocalHost "), { local: "alice", domain: "localhost", resource: null });
  assert.deepEqual(parseAddress("a@b/c d"), { local: "a", domain: "b", resource: "c d" });
  for (const bad of ["alice", "@localhost", "alice@", "a b@c", "a@b@c", "<x>@y"]) assert.equal(parseAddress(bad), null, bad);
  assert.ok(validWebSocketUrl("wss://chat.example.org/xmpp-websocket"));
  assert.ok(validWebSocketUrl("ws://127.0.0.1:5280/xmpp-websocket"));
  for (const bad of ["http://x/", "ws://x/ws; script-src *", "ws://x/?a=1", "ws:///x", "ws://x/'", "ws://u@x/"]) {
    assert.ok(!validWebSocketUrl(bad), bad);
  }
});
