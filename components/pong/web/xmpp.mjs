// One XMPP client session over WebSocket (RFC 7395): open the stream, log in with SASL,
// bind a resource, then send and receive stanzas. Every frame is one complete element; it
// is parsed as XML (never as HTML) by the injected `parse` function.
import { attr, child, children, xml } from "./xml.mjs";
import { Scram, SaslError, chooseMechanism, fromBase64, plainMessage, toBase64 } from "./sasl.mjs";

const NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
const NS_STREAMS = "http://etherx.jabber.org/streams";
const NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";
const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session";
const NS_CLIENT = "jabber:client";
const NS_PING = "urn:xmpp:ping";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

/** Why a session failed; `kind` is what the page tells the player. */
export class XmppError extends Error {
  /** kind: unreachable | auth | host | insecure | timeout | lost | protocol */
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** `local@domain[/resource]` split, or null when it is not a usable account address. */
export function parseAddress(text) {
  const m = /^([^@/\s"&'<>:]{1,1023})@([^@/\s"&'<>]{1,1023})(?:\/(.{1,1023}))?$/u.exec(text.trim());
  return m ? { local: m[1], domain: m[2].toLowerCase(), resource: m[3] ?? null } : null;
}

/** Whether a WebSocket URL is usable: the same rule as the server's check_websocket_url. */
export function validWebSocketUrl(url) {
  return (
    typeof url === "string" &&
    url.length <= 512 &&
    /^wss?:\/\/[A-Za-z0-9\-._~%][A-Za-z0-9\-._~:/%]*$/.test(url)
  );
}

/** Whether a connection to `url` keeps a password safe enough for PLAIN. */
export function plainAllowed(url) {
  try {
    const u = new URL(url);
    return u.protocol === "wss:" || ["127.0.0.1", "localhost", "[::1]"].includes(u.hostname);
  } catch {
    return false;
  }
}

let xmlPolicy = null;

/** The browser's XML parser; frames go through the page's one Trusted Types policy. */
export function browserParse(text) {
  if (xmlPolicy === null) {
    xmlPolicy = globalThis.trustedTypes
      ? globalThis.trustedTypes.createPolicy("xmppong-xml", { createHTML: (s) => s })
      : { createHTML: (s) => s };
  }
  const doc = new DOMParser().parseFromString(xmlPolicy.createHTML(text), "text/xml");
  if (doc.getElementsByTagName("parsererror").length > 0) return null;
  return doc.documentElement;
}

let counter = 0;
const nextId = (prefix) => `${prefix}${++counter}${Math.random().toString(36).slice(2, 6)}`;

/**
 * An XMPP session. Events: "stanza" (detail: the element) after login, and "closed"
 * (detail: an XmppError, or null after close()).
 */
export class Session extends EventTarget {
  constructor({ url, parse = browserParse, WebSocketImpl = globalThis.WebSocket, timeoutMs = 10000 }) {
    super();
    this.url = url;
    this.parse = parse;
    this.WebSocketImpl = WebSocketImpl;
    this.timeoutMs = timeoutMs;
    this.jid = null;
    this.domain = null;
    this.ws = null;
    this.online = false;
    this.ended = false;
    this.queue = [];
    this.waiter = null;
    this.pending = new Map();
    this.pinger = null;
    this.traffic = { framesIn: 0, charsIn: 0, framesOut: 0, charsOut: 0 };
  }

  /** Connects and logs in; resolves with the full JID bound. Rejects with an XmppError. */
  async login(address, password) {
    const who = parseAddress(address);
    if (!who) throw new XmppError("auth", "Enter your address as name@server, e.g. alice@localhost.");
    this.domain = who.domain;
    await this.#open();
    try {
      let features = await this.#startStream();
      await this.#authenticate(features, who, password);
      features = await this.#startStream();
      this.jid = await this.#bind(features);
      this.online = true;
      this.send(xml("presence", { xmlns: NS_CLIENT }, xml("priority", {}, "-1")));
      for (const el of this.queue.splice(0)) this.#dispatch(el);
      this.pinger = setInterval(() => this.#ping(), 45000);
      return this.jid;
    } catch (error) {
      this.#end(null);
      throw error;
    }
  }

  /** Sends one stanza (Markup from xml()). */
  send(markup) {
    if (this.ws && this.ws.readyState === 1) {
      const text = String(markup);
      this.ws.send(text);
      this.traffic.framesOut++;
      this.traffic.charsOut += text.length;
    }
  }

  /** Sends an IQ and resolves with the reply element (result or error). */
  request(build, timeoutMs = this.timeoutMs) {
    const id = nextId("iq");
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new XmppError("timeout", "The server did not answer."));
      }, timeoutMs);
      this.pending.set(id, (el) => {
        clearTimeout(timer);
        resolve(el);
      });
      this.send(build(id));
    });
  }

  /** Ends the session politely. */
  close() {
    if (this.ended) return;
    if (this.online) this.send(xml("presence", { xmlns: NS_CLIENT, type: "unavailable" }));
    this.send(xml("close", { xmlns: NS_FRAMING }));
    this.#end(null);
  }

  #open() {
    return new Promise((resolve, reject) => {
      const unreachable = () =>
        new XmppError("unreachable", `Cannot reach the XMPP server at ${this.url}. Is it running, with WebSocket enabled?`);
      let ws;
      try {
        ws = new this.WebSocketImpl(this.url, "xmpp");
      } catch {
        reject(unreachable());
        return;
      }
      this.ws = ws;
      const timer = setTimeout(() => {
        ws.close();
        reject(unreachable());
      }, this.timeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onerror = () => {};
      ws.onclose = () => {
        clearTimeout(timer);
        reject(unreachable());
        this.#end(new XmppError("lost", "The connection to the XMPP server was lost."));
      };
      ws.onmessage = (event) => this.#frame(event.data);
    });
  }

  #frame(text) {
    if (typeof text !== "string") return;
    this.traffic.framesIn++;
    this.traffic.charsIn += text.length;
    const el = this.parse(text);
    if (!el) {
      this.#end(new XmppError("protocol", "The XMPP server sent something that is not XML."));
      return;
    }
    if (el.localName === "close" && el.namespaceURI === NS_FRAMING) {
      this.#end(new XmppError("lost", "The XMPP server closed the connection."));
      return;
    }
    if (el.localName === "error" && el.namespaceURI === NS_STREAMS) {
      this.#end(streamError(el, this.domain));
      return;
    }
    if (this.online) this.#dispatch(el);
    else if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = null;
      waiter.resolve(el);
    } else this.queue.push(el);
  }

  #dispatch(el) {
    if (el.localName === "iq" && el.namespaceURI === NS_CLIENT) {
      const type = attr(el, "type");
      if (type === "result" || type === "error") {
        const done = this.pending.get(attr(el, "id"));
        this.pending.delete(attr(el, "id"));
        done?.(el);
        return;
      }
      this.#answerIq(el, type);
      return;
    }
    this.dispatchEvent(new CustomEvent("stanza", { detail: el }));
  }

  // Every IQ get/set must be answered: ping gets a result, anything else an error.
  #answerIq(el, type) {
    if (type !== "get" && type !== "set") return;
    const reply = { xmlns: NS_CLIENT, to: attr(el, "from"), id: attr(el, "id") };
    if (type === "get" && child(el, "ping", NS_PING)) {
      this.send(xml("iq", { ...reply, type: "result" }));
    } else {
      this.send(
        xml("iq", { ...reply, type: "error" }, xml("error", { type: "cancel" }, xml("service-unavailable", { xmlns: NS_STANZAS }))),
      );
    }
  }

  async #ping() {
    if (!this.online) return;
    try {
      await this.request((id) => xml("iq", { xmlns: NS_CLIENT, type: "get", to: this.domain, id }, xml("ping", { xmlns: NS_PING })), 20000);
    } catch {
      this.#end(new XmppError("lost", "The connection to the XMPP server was lost (no answer to a ping)."));
    }
  }

  #next() {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    if (this.ended) return Promise.reject(this.endError ?? new XmppError("lost", "The connection was closed."));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new XmppError("timeout", `The XMPP server at ${this.url} stopped answering.`));
      }, this.timeoutMs);
      this.waiter = {
        resolve: (el) => {
          clearTimeout(timer);
          resolve(el);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  async #startStream() {
    this.send(xml("open", { xmlns: NS_FRAMING, to: this.domain, version: "1.0" }));
    for (;;) {
      const el = await this.#next();
      if (el.localName === "features" && el.namespaceURI === NS_STREAMS) return el;
      if (el.localName !== "open") throw new XmppError("protocol", `Unexpected <${el.localName}> from the XMPP server.`);
    }
  }

  async #authenticate(features, who, password) {
    const offered = children(child(features, "mechanisms", NS_SASL), "mechanism", NS_SASL).map((m) =>
      m.textContent.trim(),
    );
    const mechanism = chooseMechanism(offered, { plainOk: plainAllowed(this.url) });
    if (!mechanism) {
      throw new XmppError(
        "insecure",
        offered.includes("PLAIN")
          ? "This server would need your password sent in the clear over an unencrypted connection; use a wss:// address."
          : offered.length === 0
            ? "The XMPP server offers no way to log in over this connection; it may require an encrypted one (wss://)."
            : `No login method in common with the server (it offers ${offered.join(", ")}).`,
      );
    }
    const auth = (payload) => xml("auth", { xmlns: NS_SASL, mechanism }, payload);
    if (mechanism === "PLAIN") {
      this.send(auth(toBase64(plainMessage(who.local, password))));
      await this.#saslOutcome();
      return;
    }
    const scram = new Scram(mechanism, who.local, password);
    this.send(auth(toBase64(scram.clientFirst())));
    const challenge = await this.#saslStep();
    if (challenge.localName !== "challenge") throw new XmppError("protocol", "The server skipped the SCRAM challenge.");
    let final;
    try {
      final = await scram.clientFinal(fromBase64(challenge.textContent));
    } catch (error) {
      throw new XmppError("protocol", error instanceof SaslError ? error.message : "The SCRAM challenge is unreadable.");
    }
    this.send(xml("response", { xmlns: NS_SASL }, toBase64(final)));
    let outcome = await this.#saslStep();
    let data = outcome.textContent.trim();
    if (outcome.localName === "challenge") {
      // RFC 6120 6.4.6: the server-final may come as a challenge, answered with an empty response.
      this.send(xml("response", { xmlns: NS_SASL }));
      outcome = await this.#saslStep();
      if (outcome.localName !== "success") throw new XmppError("auth", "Wrong address or password.");
    }
    if (outcome.textContent.trim()) data = outcome.textContent.trim();
    if (!scram.verify(fromBase64(data))) {
      throw new XmppError("auth", "The server could not prove it knows your password; not logging in.");
    }
  }

  // The next SASL element; a <failure/> becomes an XmppError.
  async #saslStep() {
    const el = await this.#next();
    if (el.namespaceURI !== NS_SASL) throw new XmppError("protocol", `Unexpected <${el.localName}> during login.`);
    if (el.localName === "failure") {
      const condition = children(el).find((c) => c.localName !== "text")?.localName ?? "";
      const text = child(el, "text")?.textContent?.trim();
      if (condition === "not-authorized" || condition === "credentials-expired" || condition === "account-disabled") {
        throw new XmppError("auth", "Wrong address or password.");
      }
      throw new XmppError("auth", `Login refused (${condition || "failure"}${text ? `: ${text}` : ""}).`);
    }
    return el;
  }

  async #saslOutcome() {
    const el = await this.#saslStep();
    if (el.localName !== "success") throw new XmppError("protocol", `Unexpected <${el.localName}> during login.`);
  }

  async #bind(features) {
    if (!child(features, "bind", NS_BIND)) throw new XmppError("protocol", "The server offers no resource binding.");
    const resource = `xmppong-${Math.random().toString(36).slice(2, 8)}`;
    const id = nextId("bind");
    this.send(
      xml("iq", { xmlns: NS_CLIENT, type: "set", id }, xml("bind", { xmlns: NS_BIND }, xml("resource", {}, resource))),
    );
    const reply = await this.#next();
    const jid = child(child(reply, "bind", NS_BIND), "jid", NS_BIND)?.textContent?.trim();
    if (attr(reply, "type") !== "result" || !jid) throw new XmppError("protocol", "The server refused to bind a resource.");
    const session = child(features, "session", NS_SESSION);
    if (session && !child(session, "optional", NS_SESSION)) {
      const sid = nextId("sess");
      this.send(xml("iq", { xmlns: NS_CLIENT, type: "set", id: sid }, xml("session", { xmlns: NS_SESSION })));
      const ok = await this.#next();
      if (attr(ok, "type") !== "result") throw new XmppError("protocol", "The server refused the session.");
    }
    return jid;
  }

  #end(error) {
    if (this.ended) return;
    this.ended = true;
    this.endError = error;
    this.online = false;
    clearInterval(this.pinger);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.onmessage = null;
      if (this.ws.readyState <= 1) this.ws.close();
    }
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = null;
      waiter.reject(error ?? new XmppError("lost", "The connection was closed."));
    }
    this.dispatchEvent(new CustomEvent("closed", { detail: error }));
  }
}

function streamError(el, domain) {
  const condition = children(el, null, NS_STREAM_ERRORS).find((c) => c.localName !== "text")?.localName ?? "";
  const text = child(el, "text", NS_STREAM_ERRORS)?.textContent?.trim();
  if (condition === "host-unknown") return new XmppError("host", `This XMPP server does not serve ${domain}.`);
  if (condition === "conflict") return new XmppError("lost", "You logged in again somewhere else with the same resource.");
  return new XmppError("lost", `The XMPP server ended the connection (${condition || "stream error"}${text ? `: ${text}` : ""}).`);
}
