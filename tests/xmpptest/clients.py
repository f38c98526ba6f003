"""slixmpp client helper that hides the asyncio plumbing from the tests.

    async with client(server, "alice") as alice:
        reply = await alice.send_message_and_wait("echo.localhost", "hi")

Every wait is bounded (default 5 s) and raises `TimeoutError` with what was
received instead, so a failing test says what actually arrived. Settings are
the ones from shared/reference/real-servers.md: plaintext c2s on loopback,
PLAIN/SCRAM allowed without TLS.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import xml.etree.ElementTree as ET
from typing import Callable

from slixmpp import ClientXMPP, JID
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Iq, Message, Presence
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from .servers import XmppServer

DEFAULT_TIMEOUT = 5.0
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
PING_NS = "urn:xmpp:ping"
VERSION_NS = "jabber:iq:version"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

_resources = itertools.count(1)


class Inbox:
    """Stanzas in arrival order; `get` takes the first one matching a predicate."""

    def __init__(self, what: str):
        self.what = what
        self.pending: list = []
        self.all: list = []
        self._changed = asyncio.Event()

    def put(self, stanza):
        self.pending.append(stanza)
        self.all.append(stanza)
        self._changed.set()

    async def get(self, pred: Callable | None = None, timeout: float = DEFAULT_TIMEOUT, desc: str = ""):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, st in enumerate(self.pending):
                if pred is None or pred(st):
                    return self.pending.pop(i)
            left = deadline - loop.time()
            if left <= 0:
                seen = "\n  ".join(str(s) for s in self.pending[-10:]) or "(nothing)"
                raise TimeoutError(f"no {self.what} {desc} within {timeout} s; unconsumed {self.what}s:\n  {seen}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def drain(self) -> list:
        out, self.pending = self.pending, []
        return out


def bare(jid) -> str:
    return JID(str(jid)).bare


class TestClient:
    """One logged-in slixmpp session with inboxes for messages and presences."""

    __test__ = False   # not a pytest test class

    def __init__(self, server: XmppServer, user: str, password: str | None = None,
                 resource: str | None = None, send_presence: bool = True):
        self.server = server
        self.user = user
        self.password = password if password is not None else server.users[user]
        self.resource = resource or f"test{next(_resources)}"
        self.send_initial_presence = send_presence
        self.jid = JID(f"{user}@{server.domain}/{self.resource}")
        x = ClientXMPP(str(self.jid), self.password,
                       plugin_config={"feature_mechanisms": {"unencrypted_plain": True, "unencrypted_scram": True}})
        x.enable_starttls = False
        x.enable_direct_tls = False
        x.enable_plaintext = True
        x.auto_authorize = True     # approve subscription requests from contacts (e.g. a component)
        x.auto_subscribe = False    # but never subscribe back on our own: tests do that explicitly
        self.xmpp = x
        self.messages = Inbox("message")
        self.presences = Inbox("presence")
        x.register_handler(Callback("test messages", StanzaPath("message"), self.messages.put))
        x.register_handler(Callback("test presences", StanzaPath("presence"), self.presences.put))
        self._failed_auth = False
        x.add_event_handler("failed_auth", self._on_failed_auth)

    def _on_failed_auth(self, _event):
        self._failed_auth = True

    @property
    def full_jid(self) -> str:
        return str(self.xmpp.boundjid)

    # -- session -----------------------------------------------------------
    async def connect(self, timeout: float = 10.0):
        """Connect, authenticate, bind, fetch the roster and (by default) send initial presence."""
        self.xmpp.connect("127.0.0.1", self.server.c2s_port)
        try:
            await self.xmpp.wait_until("session_start", timeout)
        except asyncio.TimeoutError:
            self.xmpp.cancel_connection_attempt()
            self.xmpp.abort()
            why = "authentication failed" if self._failed_auth else "no session"
            raise TimeoutError(f"{self.jid}: {why} within {timeout} s ({self.server.describe()})") from None
        await self.xmpp.get_roster(timeout=timeout)
        if self.send_initial_presence:
            self.xmpp.send_presence()
        return self

    async def close(self, timeout: float = 3.0):
        """Close the stream (bounded), abort the socket if the server does not answer."""
        self.xmpp.cancel_connection_attempt()
        if self.xmpp.transport is None:
            return
        try:
            await asyncio.wait_for(self.xmpp.disconnect(wait=timeout), timeout + 1)
        except (asyncio.TimeoutError, Exception):   # noqa: BLE001 - teardown must not mask the test's error
            self.xmpp.abort()

    # -- messages ------------------------------------------------------------
    def send_message(self, to: str, body: str | None = None, mtype: str | None = "chat", id: str | None = None,
                     subject: str | None = None, thread: str | None = None) -> str:
        """Send a message; returns its id. `mtype=None` omits the type attribute."""
        m = self.xmpp.Message()
        m["to"] = to
        if mtype is not None:
            m["type"] = mtype
        m["id"] = id or self.xmpp.new_id()
        if body is not None:
            m["body"] = body
        if subject is not None:
            m["subject"] = subject
        if thread is not None:
            m["thread"] = thread
        m.send()
        return m["id"]

    def send_raw(self, xml: str):
        """Send raw XML (unqualified elements land in the stream's jabber:client namespace)."""
        self.xmpp.send_raw(xml)

    async def wait_message(self, from_: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                           pred: Callable[[Message], bool] | None = None) -> Message:
        """The first not yet consumed message (from bare/full JID `from_`, matching `pred`)."""
        def match(m):
            if from_ is not None and str(m["from"]) != from_ and bare(m["from"]) != from_:
                return False
            return pred is None or pred(m)
        return await self.messages.get(match, timeout, f"from {from_ or 'anyone'}")

    async def send_message_and_wait(self, to: str, body: str, mtype: str | None = "chat",
                                    timeout: float = DEFAULT_TIMEOUT, **kw) -> Message:
        """Send a message to `to` and return the first message that comes back from `to`."""
        self.send_message(to, body, mtype=mtype, **kw)
        return await self.wait_message(from_=to, timeout=timeout)

    async def assert_no_message(self, from_: str | None = None, within: float = 1.0):
        """Fail if a message from `from_` arrives within `within` seconds."""
        try:
            m = await self.wait_message(from_=from_, timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {m}")

    # -- presence ------------------------------------------------------------
    def send_presence(self, to: str, ptype: str | None = None):
        p = self.xmpp.Presence()
        p["to"] = to
        if ptype:
            p["type"] = ptype
        p.send()

    async def wait_presence(self, from_: str | None = None, ptype: str | None = "available",
                            timeout: float = DEFAULT_TIMEOUT) -> Presence:
        """First presence from `from_` with wire type `ptype` ('available' = no type attribute)."""
        def match(p):
            if from_ is not None and str(p["from"]) != from_ and bare(p["from"]) != from_:
                return False
            wire = p.xml.get("type") or "available"
            return ptype is None or wire == ptype
        return await self.presences.get(match, timeout, f"of type {ptype} from {from_ or 'anyone'}")

    def roster_subscription(self, jid: str) -> str:
        roster = self.xmpp.client_roster
        return roster[jid]["subscription"] if jid in roster else "none"

    async def wait_roster_subscription(self, jid: str, accepted: tuple[str, ...],
                                       timeout: float = DEFAULT_TIMEOUT) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            sub = self.roster_subscription(jid)
            if sub in accepted or loop.time() >= deadline:
                return sub
            await asyncio.sleep(0.05)

    # -- iq ------------------------------------------------------------------------
    async def iq(self, to: str, payload: str, iq_type: str = "get", timeout: float = DEFAULT_TIMEOUT) -> Iq:
        """Send an IQ with a raw XML payload; return the reply, whether result or error."""
        iq = self.xmpp.Iq()
        iq["type"] = iq_type
        iq["to"] = to
        iq.xml.append(ET.fromstring(payload))
        try:
            return await iq.send(timeout=timeout)
        except IqError as e:
            return e.iq
        except IqTimeout:
            raise TimeoutError(f"no reply to iq {iq_type} {payload} to {to} within {timeout} s") from None

    async def disco_info(self, to: str, timeout: float = DEFAULT_TIMEOUT) -> Iq:
        return await self.iq(to, f"<query xmlns='{DISCO_INFO_NS}'/>", timeout=timeout)

    async def ping(self, to: str, timeout: float = DEFAULT_TIMEOUT) -> Iq:
        return await self.iq(to, f"<ping xmlns='{PING_NS}'/>", timeout=timeout)

    async def version(self, to: str, timeout: float = DEFAULT_TIMEOUT) -> Iq:
        return await self.iq(to, f"<query xmlns='{VERSION_NS}'/>", timeout=timeout)


def error_condition(stanza) -> str | None:
    """The defined condition of a stanza's <error/> (e.g. 'service-unavailable'), or None."""
    err = stanza.xml.find("{*}error")
    if err is None:
        return None
    for child in err:
        if child.tag.startswith("{" + STANZAS_NS + "}") and child.tag != "{%s}text" % STANZAS_NS:
            return child.tag.split("}", 1)[1]
    return None


def disco_identities(iq) -> list[dict]:
    """[{'category', 'type', 'name'}...] of a disco#info reply."""
    q = iq.xml.find(f"{{{DISCO_INFO_NS}}}query")
    if q is None:
        return []
    return [dict(category=i.get("category"), type=i.get("type"), name=i.get("name"))
            for i in q.findall(f"{{{DISCO_INFO_NS}}}identity")]


def disco_features(iq) -> set[str]:
    """The feature vars of a disco#info reply."""
    q = iq.xml.find(f"{{{DISCO_INFO_NS}}}query")
    return set() if q is None else {f.get("var") for f in q.findall(f"{{{DISCO_INFO_NS}}}feature")}


@contextlib.asynccontextmanager
async def client(server: XmppServer, user: str, password: str | None = None, *,
                 resource: str | None = None, send_presence: bool = True, timeout: float = 10.0):
    """`async with client(server, "alice") as alice:` a logged-in TestClient, closed afterwards."""
    c = TestClient(server, user, password, resource=resource, send_presence=send_presence)
    try:
        await c.connect(timeout=timeout)
        yield c
    finally:
        await c.close()
