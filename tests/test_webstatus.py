"""Integration tests of `xmpp-webstatus` against real Prosody and ejabberd (issue 3).

Every test runs against both servers (the `server` fixture) with a fresh component, a
fresh data directory and fresh user accounts (rosters live on the module-wide server).
The binary comes from $XMPP_WEBSTATUS_BIN or <repo>/target/debug/xmpp-webstatus.
The browser test also needs Debian's `chromium` and `npm ci --prefix tests/browser/webstatus`.
"""
from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import re
import shutil
import threading
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from xmpptest.ci import in_ci, missing
from xmpptest.clients import client, disco_features, disco_identities, error_condition
from xmpptest.servers import free_port
from xmpptest.webstatus import (BROWSER_DIR, DATA_NS, DOMAIN, REGISTER_NS, Webstatus, chromium_path,
                                form_fields, form_of, fresh_user, playwright_installed, query_of,
                                register_form, submit_form, token_in, wait_until,
                                webstatus_binary_path)

XSS = "<script>alert(1)</script>"
SVG_NS = "http://www.w3.org/2000/svg"
LIVE = 1.0          # the bound: a presence change shows in every format within 1 s
SHOW_TEXT = {"available": "Available", "away": "Away", "dnd": "Do not disturb", "xa": "Extended away",
             "chat": "Free for chat", "offline": "Offline", "unknown": "Unknown"}


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def webstatus_bin():
    path = webstatus_binary_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        missing(f"xmpp-webstatus binary not found or not executable at {path}; build it with "
                "`cargo build -p xmpp-webstatus` or point XMPP_WEBSTATUS_BIN at it")
    return path


@pytest.fixture
def webstatus(server, webstatus_bin, components, tmp_path) -> Webstatus:
    """xmpp-webstatus connected to `server` as webstatus.localhost, HTTP on a free port."""
    return Webstatus(components, webstatus_bin, server, tmp_path).start()


# -- helpers -----------------------------------------------------------------------------------------
def from_domain(stanza) -> bool:
    return stanza["from"].bare == DOMAIN


@contextlib.asynccontextmanager
async def registered(server, ws: Webstatus, show_status_msg: str = "0", show_full_jid: str = "0",
                     resource: str | None = None, prefix: str = "ws"):
    """A fresh user, logged in, registered through the form, who approved the subscription.

    Yields (client, token) once their JSON shows them available."""
    user = fresh_user(server, prefix)
    async with client(server, user, resource=resource) as c:
        form = await register_form(c)
        token = token_in(ET.tostring(form.xml, encoding="unicode"))
        assert token, f"no URL token in the form: {form}"
        reply = await submit_form(c, show_status_msg, show_full_jid)
        assert reply["type"] == "result", reply
        await c.wait_presence(from_=DOMAIN, ptype="subscribe")   # slixmpp approves it on its own
        welcome = await c.wait_message(from_=DOMAIN)
        assert ws.url(token) in welcome["body"], welcome
        await wait_until(lambda: ws.json(token), lambda j: j["show"] == "available", 5.0,
                         f"{user} available after approving")
        yield c, token


async def all_formats(ws: Webstatus, token: str) -> dict:
    html, js, svg, txt = await asyncio.gather(ws.get(ws.url(token)), ws.get(ws.url(token, ".json")),
                                              ws.get(ws.url(token, ".svg")), ws.get(ws.url(token, ".txt")))
    return {"html": html, "json": js, "svg": svg, "txt": txt}


def html_part(body: str, element_id: str) -> str | None:
    """Text of the span `element_id` in the snippet, None when hidden."""
    m = re.search(rf'<span id="{element_id}" class="\w+"( hidden)?>(.*?)</span>', body)
    assert m, f"no #{element_id} in {body[:400]}"
    return None if m.group(1) else m.group(2)


def svg_texts(body: str) -> list[str]:
    root = ET.fromstring(body)     # must be well-formed XML
    return [t.text or "" for t in root.iter(f"{{{SVG_NS}}}text")]


def shows(key: str, status: str | None = None, jid: str | None = None):
    """A check over all_formats(): every format says `key` (+ status/jid when given, else hidden)."""
    text = SHOW_TEXT[key]

    def check(f: dict) -> bool:
        if any(r.status != 200 for r in f.values()):
            return False
        j = f["json"].json()
        if (j["show"], j["status"], j["jid"]) != (key, status, jid):
            return False
        html = f["html"].body
        if (html_part(html, "ws-show"), html_part(html, "ws-status"), html_part(html, "ws-jid")) != \
                (text, status, jid):
            return False
        badge = svg_texts(f["svg"].body)
        value = text + (f": {status}" if status else "")
        if badge != [jid or "xmpp", value]:
            return False
        line = (f"{jid}: " if jid else "") + value + "\n"
        return f["txt"].body == line
    return check


def summary(f: dict) -> dict:
    """What the formats said, for assertion messages."""
    out = {name: r.status for name, r in f.items()}
    if f["json"].status == 200:
        out["json"] = f["json"].json()
        out["txt"] = f["txt"].body
    return out


async def expect_all(ws: Webstatus, token: str, key: str, status=None, jid=None, timeout: float = LIVE):
    async def probe():
        return await all_formats(ws, token)
    try:
        _, took = await wait_until(probe, shows(key, status, jid), timeout, f"{key} in every format")
    except AssertionError:
        f = await all_formats(ws, token)
        raise AssertionError(f"expected {key} status={status!r} jid={jid!r} in every format within "
                             f"{timeout} s; now: {summary(f)}") from None
    return took


async def command(c, text: str) -> str:
    """Sends a chat command to the component; returns its answer's body."""
    c.send_message(DOMAIN, text)
    return (await c.wait_message(from_=DOMAIN))["body"]


async def expect_not_shared(ws: Webstatus, token: str):
    """Every format says "Not shared" (JSON: offline), with no status and no address."""
    f = await all_formats(ws, token)
    assert all(r.status == 200 for r in f.values()), summary(f)
    html = f["html"].body
    assert (html_part(html, "ws-show"), html_part(html, "ws-status"), html_part(html, "ws-jid")) == \
        ("Not shared", None, None), html
    assert (f["json"].json()["show"], f["json"].json()["status"], f["json"].json()["jid"]) == \
        ("offline", None, None), summary(f)
    assert f["txt"].body == "Not shared\n", summary(f)
    assert svg_texts(f["svg"].body) == ["xmpp", "Not shared"], f["svg"].body


def comparable(reply) -> tuple:
    """Status, body and headers of a reply, without the Date header."""
    return reply.status, reply.body, sorted((k, v) for k, v in reply.headers.items() if k != "date")


# -- service discovery and registration ------------------------------------------------------------
async def test_disco_announces_web_presence_and_registration(server, webstatus):
    async with client(server, fresh_user(server)) as c:
        reply = await c.disco_info(DOMAIN)
        assert reply["type"] == "result", reply
        assert {"category": "component", "type": "presence", "name": "Web presence"} in disco_identities(reply)
        assert REGISTER_NS in disco_features(reply)


async def test_registration_round_trip(server, webstatus):
    user = fresh_user(server)
    async with client(server, user) as c:
        # 1. The empty form, as in the reference bot's wire log.
        form_iq = await register_form(c)
        assert form_iq["type"] == "result", form_iq
        assert form_iq["from"].bare == DOMAIN
        query = query_of(form_iq)
        assert query is not None, form_iq
        assert query.find(f"{{{REGISTER_NS}}}registered") is None
        assert (query.findtext(f"{{{REGISTER_NS}}}instructions") or "").strip()
        form = form_of(form_iq)
        assert form is not None and form.get("type") == "form", form_iq
        fields = form_fields(form)
        assert fields["FORM_TYPE"] == {"type": "hidden", "label": None, "values": [REGISTER_NS]}
        assert fields["show_status_msg"] == {"type": "boolean", "label": "Show status msg", "values": ["0"]}
        assert fields["show_full_jid"] == {"type": "boolean", "label": "Show full JID", "values": ["0"]}
        instructions = form.findtext(f"{{{DATA_NS}}}instructions") or ""
        token = token_in(instructions)
        assert token and instructions.count(webstatus.url(token)) == 1, instructions
        assert user not in instructions and "Not shared" in instructions
        assert (await webstatus.get(webstatus.url(token))).status == 404, "not registered yet"

        # 2. Submit: result first, then the component asks for the user's presence.
        arrivals = []

        def record(stanza):
            arrivals.append((stanza.name, stanza.xml.get("type"), stanza.xml.get("id")))
            return stanza
        c.xmpp.add_filter("in", record)
        reply = await submit_form(c, show_status_msg="1", show_full_jid="0",
                                  extra="<field var='unknown_field'><value>ignored</value></field>")
        assert reply["type"] == "result", reply
        sub = await c.wait_presence(from_=DOMAIN, ptype="subscribe")
        order = [a for a in arrivals if a == ("iq", "result", reply["id"]) or a[:2] == ("presence", "subscribe")]
        assert order[0] == ("iq", "result", reply["id"]), f"subscribe before the result: {arrivals}"
        assert str(sub["to"]).split("/")[0] == f"{user}@{server.domain}"
        welcome = await c.wait_message(from_=DOMAIN)
        assert webstatus.url(token) in welcome["body"], welcome

        # 3. Second get: <registered/> and the stored values.
        again = await register_form(c)
        assert query_of(again).find(f"{{{REGISTER_NS}}}registered") is not None, again
        fields = form_fields(form_of(again))
        assert fields["show_status_msg"]["values"] == ["1"]
        assert fields["show_full_jid"]["values"] == ["0"]
        assert token_in(form_of(again).findtext(f"{{{DATA_NS}}}instructions")) == token

        # 4. The URL works, and the approved subscription shows the user online.
        await wait_until(lambda: webstatus.json(token), lambda j: j["show"] == "available", 5.0, "available")


@pytest.mark.parametrize("case", ["form-type", "not-boolean", "other-form-type"])
async def test_malformed_form_is_bad_request(server, webstatus, case):
    bad = {
        "form-type": f"<query xmlns='{REGISTER_NS}'><x xmlns='{DATA_NS}' type='form'/></query>",
        "not-boolean": (f"<query xmlns='{REGISTER_NS}'><x xmlns='{DATA_NS}' type='submit'>"
                        "<field var='show_status_msg'><value>maybe</value></field></x></query>"),
        "other-form-type": (f"<query xmlns='{REGISTER_NS}'><x xmlns='{DATA_NS}' type='submit'>"
                            "<field var='FORM_TYPE' type='hidden'><value>urn:other</value></field></x></query>"),
    }[case]
    async with client(server, fresh_user(server)) as c:
        reply = await c.iq(DOMAIN, bad, "set")
        assert reply["type"] == "error", reply
        assert error_condition(reply) == "bad-request", reply
        again = await register_form(c)
        assert query_of(again).find(f"{{{REGISTER_NS}}}registered") is None, "nothing was stored"


# -- presence ----------------------------------------------------------------------------------------
async def test_presence_changes_show_in_every_format_within_a_second(server, webstatus):
    async with registered(server, webstatus, show_status_msg="1") as (c, token):
        await expect_all(webstatus, token, "available")
        timings = {}
        for show, status in [("away", "at lunch"), ("dnd", "busy busy"), ("xa", None), ("chat", "talk to me")]:
            c.xmpp.send_presence(pshow=show, pstatus=status)
            timings[show] = await expect_all(webstatus, token, show, status)
        c.xmpp.send_presence()
        await expect_all(webstatus, token, "available")
        user_jid = c.xmpp.boundjid.bare
    # The client has logged out.
    timings["offline"] = await expect_all(webstatus, token, "offline")
    since = (await webstatus.json(token))["since"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", since or ""), since
    print(f"{user_jid} on {server.kind}: seconds until visible in all four formats: {timings}")


async def test_two_resources_aggregate_by_priority(server, webstatus):
    user = fresh_user(server)
    async with client(server, user, resource="laptop") as laptop:
        await register_form(laptop)
        assert (await submit_form(laptop, show_status_msg="1"))["type"] == "result"
        await laptop.wait_presence(from_=DOMAIN, ptype="subscribe")
        token = token_in((await laptop.wait_message(from_=DOMAIN))["body"])
        laptop.xmpp.send_presence(pshow="away", pstatus="laptop", ppriority=5)
        await expect_all(webstatus, token, "away", "laptop", timeout=5.0)
        async with client(server, user, resource="phone", send_presence=False) as phone:
            # Lower priority loses even with a better show. The component handles one
            # sender's stanzas in order: once it answers the phone's "url", it has seen the
            # phone's presence.
            phone.xmpp.send_presence(pshow="chat", pstatus="phone", ppriority=1)
            assert webstatus.url(token) in await command(phone, "url")
            await expect_all(webstatus, token, "away", "laptop")
            # Equal priority: show order decides (chat > away).
            phone.xmpp.send_presence(pshow="chat", pstatus="phone", ppriority=5)
            await expect_all(webstatus, token, "chat", "phone")
            # Higher priority wins even when dnd.
            laptop.xmpp.send_presence(pshow="dnd", pstatus="laptop", ppriority=9)
            await expect_all(webstatus, token, "dnd", "laptop")
            # Negative priority never beats a non-negative one...
            laptop.xmpp.send_presence(pshow="chat", pstatus="laptop", ppriority=-1)
            await expect_all(webstatus, token, "chat", "phone")
            phone.xmpp.send_presence(pshow="xa", pstatus="phone", ppriority=0)
            await expect_all(webstatus, token, "xa", "phone")
        # ...but counts when nothing else is online.
        await expect_all(webstatus, token, "chat", "laptop")


async def test_options_hidden_by_default_and_chat_commands(server, webstatus):
    async with registered(server, webstatus) as (c, token):
        bare = c.xmpp.boundjid.bare
        c.xmpp.send_presence(pshow="away", pstatus="secret plans")
        await expect_all(webstatus, token, "away")          # status and JID hidden by default
        html = (await webstatus.get(webstatus.url(token))).body
        assert "secret plans" not in html and bare not in html

        assert "new url" in await command(c, "help")
        assert webstatus.url(token) in await command(c, "url")
        assert "shown" in await command(c, "status on")
        await expect_all(webstatus, token, "away", "secret plans")
        assert "shown" in await command(c, "JID  on")
        await expect_all(webstatus, token, "away", "secret plans", bare)
        assert "hidden" in await command(c, "status off")
        await expect_all(webstatus, token, "away", None, bare)
        assert "Unknown command" in await command(c, "make me a sandwich")
        fields = form_fields(form_of(await register_form(c)))
        assert (fields["show_status_msg"]["values"], fields["show_full_jid"]["values"]) == (["0"], ["1"])


async def test_new_url_rotates_the_token(server, webstatus):
    async with registered(server, webstatus) as (c, old):
        c.send_message(DOMAIN, "new url")
        reply = (await c.wait_message(from_=DOMAIN))["body"]
        new = token_in(reply)
        assert new and new != old, reply
        unknown = await webstatus.get(webstatus.url("A" * 21 + "Q"))
        for suffix in ("", ".json", ".svg", ".txt", "/events"):
            gone = await webstatus.get(webstatus.url(old, suffix))
            assert comparable(gone) == comparable(unknown), f"old URL{suffix} still answers: {gone}"
        assert (await webstatus.json(new))["show"] == "available"
        assert token_in(form_of(await register_form(c)).findtext(f"{{{DATA_NS}}}instructions")) == new


async def test_remove_unregisters_and_unsubscribes(server, webstatus):
    async with registered(server, webstatus) as (c, token):
        reply = await c.iq(DOMAIN, f"<query xmlns='{REGISTER_NS}'><remove/></query>", "set")
        assert reply["type"] == "result", reply
        # unsubscribe reaches the client; unsubscribed/unavailable are only delivered by the
        # server when the user was subscribed to the component (see the contact test).
        await c.wait_presence(from_=DOMAIN, ptype="unsubscribe")
        assert await c.wait_roster_subscription(DOMAIN, ("none", "to")) in ("none", "to")
        assert (await webstatus.get(webstatus.url(token, ".json"))).status == 404
        assert query_of(await register_form(c)).find(f"{{{REGISTER_NS}}}registered") is None
        again = await c.iq(DOMAIN, f"<query xmlns='{REGISTER_NS}'><remove/></query>", "set")
        assert error_condition(again) == "registration-required", again
    # Data gone from disk too: a restart does not bring it back.
    webstatus.proc.stop()
    webstatus.start()
    assert (await webstatus.get(webstatus.url(token))).status == 404


async def test_unregister_chat_command(server, webstatus):
    async with registered(server, webstatus) as (c, token):
        c.send_message(DOMAIN, "unregister")
        assert "unregistered" in (await c.wait_message(from_=DOMAIN))["body"]
        await c.wait_presence(from_=DOMAIN, ptype="unsubscribe")
        assert await c.wait_roster_subscription(DOMAIN, ("none", "to")) in ("none", "to")
        assert (await webstatus.get(webstatus.url(token))).status == 404
        c.send_message(DOMAIN, "url")
        assert "not registered" in (await c.wait_message(from_=DOMAIN))["body"]


# -- other ways in, consent ----------------------------------------------------------------------------
async def test_adding_the_component_as_a_contact_registers(server, webstatus):
    """For clients without in-band registration (e.g. Converse.js)."""
    async with client(server, fresh_user(server)) as c:
        c.send_presence(DOMAIN, "subscribe")
        await c.wait_presence(from_=DOMAIN, ptype="subscribed")
        await c.wait_presence(from_=DOMAIN, ptype="available")
        await c.wait_presence(from_=DOMAIN, ptype="subscribe")   # it subscribes back; slixmpp approves
        token = token_in((await c.wait_message(from_=DOMAIN))["body"])
        assert token
        await wait_until(lambda: webstatus.json(token), lambda j: j["show"] == "available", 5.0, "available")
        c.xmpp.send_presence(pshow="dnd")
        await expect_all(webstatus, token, "dnd")
        assert await c.wait_roster_subscription(DOMAIN, ("both",)) == "both"
        # Unsubscribing from the component leaves its subscription to the user (and the
        # page) alone. (Its `unsubscribed` answer is dropped by the user's server, whose
        # roster already changed; the Rust tests check the component sends it.)
        c.send_presence(DOMAIN, "unsubscribe")
        assert await c.wait_roster_subscription(DOMAIN, ("from",)) == "from"
        c.xmpp.send_presence(pshow="away")
        await expect_all(webstatus, token, "away")


async def test_the_component_answers_probes_at_login(server, webstatus):
    user = fresh_user(server)
    async with client(server, user) as c:
        c.send_presence(DOMAIN, "subscribe")
        await c.wait_presence(from_=DOMAIN, ptype="subscribed")
        await c.wait_roster_subscription(DOMAIN, ("to", "both"))
    async with client(server, user) as c:     # the server probes the component for us
        await c.wait_presence(from_=DOMAIN, ptype="available")


async def test_revoked_consent_hides_status_until_approved_again(server, webstatus):
    async with registered(server, webstatus, show_status_msg="1") as (c, token):
        c.xmpp.send_presence(pshow="away", pstatus="here")
        await expect_all(webstatus, token, "away", "here")
        c.send_presence(DOMAIN, "unsubscribed")      # revoke the component's subscription
        await wait_until(lambda: webstatus.get(webstatus.url(token)),
                         lambda r: html_part(r.body, "ws-show") == "Not shared", LIVE, "not shared")
        j = await webstatus.json(token)
        assert (j["show"], j["status"]) == ("offline", None), j
        c.xmpp.send_presence(pshow="away", pstatus="still here")   # no longer reaches it
        # Sentinel: the answer to a later stanza from the same client proves the presence
        # would have been handled by now.
        assert webstatus.url(token) in await command(c, "url")
        await expect_not_shared(webstatus, token)
        # Subscribing again: the component asks again, slixmpp approves, status is back.
        c.send_presence(DOMAIN, "subscribe")
        await c.wait_presence(from_=DOMAIN, ptype="subscribe")
        await expect_all(webstatus, token, "away", "still here", timeout=5.0)


async def test_directed_presence_after_a_revocation_stays_hidden(server, webstatus):
    """Issue 9: a revocation stands until the user grants again; a presence sent straight
    to the component is not an approval."""
    async with registered(server, webstatus, show_status_msg="1") as (c, token):
        c.xmpp.send_presence(pshow="away", pstatus="here")
        await expect_all(webstatus, token, "away", "here")
        c.send_presence(DOMAIN, "unsubscribed")
        await wait_until(lambda: webstatus.get(webstatus.url(token, ".txt")),
                         lambda r: r.body == "Not shared\n", LIVE, "not shared")
        c.xmpp.send_presence(pto=DOMAIN, pshow="chat", pstatus="look at me")
        assert webstatus.url(token) in await command(c, "url")      # sentinel: handled by now
        await expect_not_shared(webstatus, token)
        # Granting again: `subscribed` (where nothing is pending, the user's server keeps it
        # as a pre-approval), then asking to register again: the component asks for the
        # presence, the request is approved, and the status is back.
        c.send_presence(DOMAIN, "subscribed")
        assert "already registered" in await command(c, "register")
        # The server then sends the last presence: Prosody the broadcast one, ejabberd the
        # one last sent to the component, and sometimes both one after the other, so
        # either may be the one shown: every format must agree on one of them.
        either = [shows("away", "here"), shows("chat", "look at me")]
        await wait_until(lambda: all_formats(webstatus, token),
                         lambda f: any(check(f) for check in either), 5.0, "status shown again")


# -- settings from the commands menu (XEP-0050, issue 10) -------------------------------------------
COMMANDS_NS = "http://jabber.org/protocol/commands"


def command_of(reply) -> ET.Element:
    element = reply.xml.find(f"{{{COMMANDS_NS}}}command")
    assert element is not None, reply
    return element


async def run_command(c, node: str, yes: bool) -> ET.Element:
    """Executes `node` as a client's commands menu does: the form, then a submission."""
    first = command_of(await c.iq(DOMAIN, f"<command xmlns='{COMMANDS_NS}' node='{node}' action='execute'/>", "set"))
    assert first.get("status") == "executing", ET.tostring(first)
    assert first.find(f"{{{DATA_NS}}}x") is not None, "a form to fill"
    submit = (f"<command xmlns='{COMMANDS_NS}' node='{node}' sessionid='{first.get('sessionid')}' "
              f"action='complete'><x xmlns='{DATA_NS}' type='submit'><field var='yes'>"
              f"<value>{int(yes)}</value></field></x></command>")
    done = command_of(await c.iq(DOMAIN, submit, "set"))
    assert done.get("status") == "completed", ET.tostring(done)
    return done


async def test_settings_from_the_commands_menu(server, webstatus):
    """The settings are XEP-0050 commands a client lists and runs (Gajim, Conversations…)."""
    async with registered(server, webstatus) as (c, token):
        assert COMMANDS_NS in disco_features(await c.disco_info(DOMAIN))
        items = await c.iq(DOMAIN, f"<query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS_NS}'/>")
        nodes = {i.get("node") for i in items.xml.iter("{http://jabber.org/protocol/disco#items}item")}
        assert nodes == {"status", "jid", "new-url", "unregister"}, nodes
        c.xmpp.send_presence(pshow="away", pstatus="lunch")
        await expect_all(webstatus, token, "away")                  # the status text is hidden
        await run_command(c, "status", yes=True)
        await expect_all(webstatus, token, "away", "lunch")
        done = await run_command(c, "unregister", yes=True)
        assert "unregistered" in ET.tostring(done, encoding="unicode")
        await wait_until(lambda: webstatus.get(webstatus.url(token, ".txt")),
                         lambda r: r.status == 404, LIVE, "the page is gone")


# -- registration limits (issue 9) -----------------------------------------------------------------
def limited(server, webstatus_bin, components, tmp_path, *args: str) -> Webstatus:
    return Webstatus(components, webstatus_bin, server, tmp_path, extra_args=list(args)).start()


async def refused_by_every_way_in(server, ws: Webstatus, condition: str, error_type: str, words: str):
    """A fresh user tries the form, adding the component as a contact and chat "register":
    each is refused with `condition` / `error_type` and a text containing `words`; nothing
    is stored for them."""
    async with client(server, fresh_user(server, "refused")) as c:
        reply = await submit_form(c)
        assert reply["type"] == "error", reply
        assert error_condition(reply) == condition, reply
        err = reply.xml.find("{jabber:client}error")
        assert err.get("type") == error_type, reply
        assert words in (err.findtext("{urn:ietf:params:xml:ns:xmpp-stanzas}text") or ""), reply

        c.send_presence(DOMAIN, "subscribe")
        refusal = await c.wait_presence(from_=DOMAIN, ptype="error")
        assert error_condition(refusal) == condition, refusal
        await c.wait_presence(from_=DOMAIN, ptype="unsubscribed")
        # Declined, so the request does not stay pending on the user's roster.
        await wait_until(lambda: asyncio.sleep(0, c.xmpp.client_roster[DOMAIN]),
                         lambda item: item["subscription"] == "none" and not item["pending_out"],
                         5.0, "the subscription request declined")

        assert words in await command(c, "register")
        assert "not registered" in await command(c, "url")
        form = await register_form(c)
        if condition == "not-allowed":
            assert error_condition(form) == "not-allowed", form
        else:
            assert query_of(form).find(f"{{{REGISTER_NS}}}registered") is None, form


async def test_registrations_beyond_max_users_are_refused(server, webstatus_bin, components, tmp_path):
    ws = limited(server, webstatus_bin, components, tmp_path, "--max-users", "2")
    async with registered(server, ws, prefix="first") as (first, token):
        async with client(server, fresh_user(server, "second")) as second:
            assert "You are registered" in await command(second, "register")
        await refused_by_every_way_in(server, ws, "resource-constraint", "wait", "maximum number of users")
        # Registered users are never refused: options, chat register, subscribing again.
        assert (await submit_form(first, show_status_msg="1"))["type"] == "result"
        assert "already registered" in await command(first, "register")
        first.send_presence(DOMAIN, "subscribe")
        await first.wait_presence(from_=DOMAIN, ptype="subscribed")
        first.xmpp.send_presence(pshow="dnd", pstatus="still here")
        await expect_all(ws, token, "dnd", "still here")
        # Leaving frees a place.
        assert "unregistered" in await command(first, "unregister")
    async with client(server, fresh_user(server, "third")) as third:
        assert "You are registered" in await command(third, "register")


async def test_new_registrations_per_domain_are_rate_limited(server, webstatus_bin, components, tmp_path):
    ws = limited(server, webstatus_bin, components, tmp_path, "--registrations-per-domain", "1")
    async with registered(server, ws) as (first, _):
        await refused_by_every_way_in(server, ws, "resource-constraint", "wait",
                                      f"Too many new registrations from {server.domain}")
        assert (await submit_form(first, show_full_jid="1"))["type"] == "result"
        first.send_message(DOMAIN, "unregister")
        assert "unregistered" in (await first.wait_message(from_=DOMAIN))["body"]


async def test_domains_not_allowed_cannot_register(server, webstatus_bin, components, tmp_path):
    ws = limited(server, webstatus_bin, components, tmp_path, "--allow-domains", "example.net,example.org")
    await refused_by_every_way_in(server, ws, "not-allowed", "cancel", f"users of {server.domain}")


def test_bad_limits_are_configuration_errors(server, webstatus_bin, components, tmp_path):
    for n, args in enumerate((["--allow-domains", ","], ["--allow-domains", "a@b"], ["--max-users", "many"],
                              ["--registrations-per-domain=-1"])):
        proc = components.start(webstatus_bin, server, domain=DOMAIN, log_filter="warn", name=f"bad-limits-{n}",
                                extra_args=args + ["--data", str(tmp_path / "d"),
                                                   "--http", f"127.0.0.1:{free_port()}"])
        assert proc.wait_exit(10) == 2, (args, proc.logs_for_humans())
        flag = args[0].split("=")[0]
        assert flag in proc.stderr() and "unexpected argument" not in proc.stderr(), proc.stderr()


# -- restart ---------------------------------------------------------------------------------------------
async def test_sigkill_restart_keeps_registrations_and_relearns_presence(server, webstatus):
    async with registered(server, webstatus, show_status_msg="1", prefix="online") as (online, t_online):
        online.xmpp.send_presence(pshow="away", pstatus="before the crash")
        await expect_all(webstatus, t_online, "away", "before the crash")
        async with registered(server, webstatus, prefix="offline") as (_, t_offline):
            pass
        await expect_all(webstatus, t_offline, "offline")

        webstatus.kill()
        assert (await asyncio.to_thread(webstatus.proc.wait_exit, 5)) is not None
        webstatus.start()
        # Same URLs; the online user did nothing, the probe brought their presence back.
        took = await expect_all(webstatus, t_online, "away", "before the crash", timeout=5.0)
        # Prosody answers the offline user's probe with unavailable; ejabberd says nothing,
        # so the probe timeout (2 s here) decides.
        await expect_all(webstatus, t_offline, "offline", timeout=5.0)
        print(f"{server.kind}: presence re-learned {took:.2f} s after the restart")
        online.xmpp.send_presence(pshow="dnd", pstatus="after")
        await expect_all(webstatus, t_online, "dnd", "after")


async def test_sigterm_with_a_live_page_open_exits_cleanly(server, webstatus):
    async with registered(server, webstatus) as (_, token):
        def open_live_page():
            resp = urllib.request.urlopen(webstatus.url(token, "/events"), timeout=10)
            assert resp.headers["Content-Type"] == "text/event-stream", resp.headers
            return resp, resp.readline()
        resp, first = await asyncio.to_thread(open_live_page)
        try:
            assert first.startswith(b"data: {"), first
            rc = await asyncio.to_thread(webstatus.proc.terminate, 8.0)
            assert rc == 0, f"exit status {rc} after SIGTERM\n{webstatus.proc.logs_for_humans()}"
        finally:
            resp.close()


def test_bad_public_url_is_a_configuration_error(server, webstatus_bin, components, tmp_path):
    proc = components.start(webstatus_bin, server, domain=DOMAIN, log_filter="warn", name="bad-url",
                            extra_args=["--public-url", "ftp://x", "--data", str(tmp_path / "d"),
                                        "--http", f"127.0.0.1:{free_port()}"])
    assert proc.wait_exit(10) == 2, proc.logs_for_humans()
    assert "--public-url" in proc.stderr()


# -- safety ------------------------------------------------------------------------------------------------
async def test_xss_is_inert_in_every_format(server, webstatus):
    async with registered(server, webstatus, show_status_msg="1") as (c, token):
        c.xmpp.send_presence(pshow="away", pstatus=XSS)
        await wait_until(lambda: webstatus.json(token), lambda j: j["status"] == XSS, LIVE, "XSS status in JSON")
        f = await all_formats(webstatus, token)
        html = f["html"].body
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert html.count("<script") == 1, "only the snippet's own script"
        csp = f["html"].headers["content-security-policy"]
        assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        svg = f["svg"].body
        assert "<script" not in svg
        root = ET.fromstring(svg)
        assert not [e for e in root.iter() if e.tag.split("}")[-1] in ("script", "foreignObject")]
        assert svg_texts(svg)[1] == f"Away: {XSS}"
        assert f["json"].json()["status"] == XSS
        assert f["txt"].body == f"Away: {XSS}\n"
        for name in ("svg", "json", "txt"):
            assert f[name].headers["x-content-type-options"] == "nosniff"
            assert "default-src 'none'" in f[name].headers["content-security-policy"]
        assert f["txt"].headers["content-type"].startswith("text/plain")


async def test_404s_are_uniform(server, webstatus):
    async with registered(server, webstatus) as (c, token):
        c.send_message(DOMAIN, "unregister")
        await c.wait_message(from_=DOMAIN)
        await c.wait_presence(from_=DOMAIN, ptype="unsubscribe")
    reference = await webstatus.get("/definitely/not/here")
    assert reference.status == 404
    bare_b64 = "YWxpY2VAbG9jYWxob3N0"   # base64("alice@localhost"): the exmpp bot's URL scheme
    paths = [webstatus.url(token), webstatus.url(token, ".json"), webstatus.url(token, "/events"),
             webstatus.url("B" * 22), webstatus.url("B" * 22, ".svg"), webstatus.url(bare_b64),
             webstatus.url("alice@localhost"), webstatus.url(token, ".png"), webstatus.url(token, "/"),
             "/status/", "/status", "/status/%00", "/status/..%2F..%2Fetc%2Fpasswd", "/favicon.ico"]
    for path in paths:
        got = await webstatus.get(path)
        assert comparable(got) == comparable(reference), f"{path}: {got}"


async def test_caching_and_security_headers(server, webstatus):
    async with registered(server, webstatus) as (c, token):
        for suffix, ctype in [("", "text/html"), (".svg", "image/svg+xml"), (".json", "application/json"),
                              (".txt", "text/plain")]:
            r = await webstatus.get(webstatus.url(token, suffix))
            assert r.status == 200 and r.headers["content-type"].startswith(ctype), (suffix, r)
            assert r.headers["cache-control"] == "no-cache"
            assert r.headers["x-content-type-options"] == "nosniff"
            etag = r.headers["etag"]
            again = await webstatus.get(webstatus.url(token, suffix), {"If-None-Match": etag})
            assert again.status == 304 and again.body == "" and again.headers["etag"] == etag, (suffix, again)
            framing = r.headers.get("x-frame-options")
            csp = r.headers["content-security-policy"]
            if suffix == "":
                assert framing is None and "frame-ancestors *" in csp
            else:
                assert framing == "DENY" and "frame-ancestors 'none'" in csp
            assert (r.headers.get("access-control-allow-origin") == "*") == (suffix == ".json")
        etag = (await webstatus.get(webstatus.url(token, ".svg"))).headers["etag"]
        c.xmpp.send_presence(pshow="xa")
        await expect_all(webstatus, token, "xa")
        changed = await webstatus.get(webstatus.url(token, ".svg"), {"If-None-Match": etag})
        assert changed.status == 200 and changed.headers["etag"] != etag
        index = await webstatus.get("/")
        assert index.status == 200 and f"xmpp:{DOMAIN}?register" in index.body


# -- a real browser ------------------------------------------------------------------------------------------
class _EmbeddingPage(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self):   # noqa: N802 - http.server API
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def embedding_page(html: str):
    """Serves `html` at http://127.0.0.1:<port>/ (another origin than the gateway)."""
    handler = type("Page", (_EmbeddingPage,), {"page": html.encode()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def browser_tools():
    chromium = chromium_path()
    if chromium is None:
        missing("Chromium not found; install it with `apt-get install -y chromium` (or set CHROMIUM_BIN)")
    if shutil.which("node") is None:
        missing("node not found; install Node.js (Debian: `apt-get install -y nodejs npm`)")
    if not playwright_installed():
        missing(f"playwright-core is not installed in {BROWSER_DIR}; run `npm ci --prefix {BROWSER_DIR}`")
    return chromium


async def test_browser_shows_live_status_without_reload(server, webstatus, browser_tools, tmp_path):
    async with registered(server, webstatus, show_status_msg="1") as (c, token):
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>My page</title></head><body>"
                f"<h1>My page</h1><p>My XMPP status:</p>"
                f"<iframe id='status' src='{webstatus.url(token)}' width='320' height='36' "
                f"style='border:1px solid #ddd'></iframe>"
                f"<p><img id='badge' src='{webstatus.url(token, '.svg')}' alt='XMPP status'></p></body></html>")
        shots = tmp_path / "screenshots"
        shots.mkdir()
        with embedding_page(page) as page_url:
            proc = await asyncio.create_subprocess_exec(
                "node", str(BROWSER_DIR / "webstatus_browser.mjs"), page_url, str(tmp_path / "chromium-profile"),
                str(shots), browser_tools, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=str(BROWSER_DIR))
            events = []

            async def next_event(timeout: float = 30.0) -> dict:
                while True:
                    try:
                        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
                    except asyncio.TimeoutError:
                        raise AssertionError(f"browser script silent for {timeout} s; events {events}") from None
                    if not line:
                        err = (await proc.stderr.read()).decode(errors="replace")
                        raise AssertionError(f"browser script ended; events {events}; stderr:\n{err[-3000:]}")
                    event = json.loads(line)
                    events.append(event)
                    if event["event"] != "console":
                        return event

            async def expect(text: str) -> dict:
                proc.stdin.write((json.dumps({"expect": text, "timeout": 10000}) + "\n").encode())
                await proc.stdin.drain()
                event = await next_event()
                assert event["event"] == "seen", event
                return event

            try:
                assert (await next_event())["event"] == "ready", events
                first = await expect("Available")
                assert first["badge"]["complete"] and first["badge"]["width"] > 0, first
                assert first["dot"] == "rgb(45, 164, 78)", first     # green
                c.xmpp.send_presence(pshow="away", pstatus="gone fishing")
                away = await expect("Away")
                assert away["markerKept"], f"the iframe reloaded instead of updating live: {away}"
                assert away["status"] == "gone fishing", away
                assert away["dot"] == "rgb(191, 135, 0)", away       # amber
                assert away["ms"] < 2000, away
                proc.stdin.write(b'{"quit": true}\n')
                await proc.stdin.drain()
                proc.stdin.close()
                assert await asyncio.wait_for(proc.wait(), 20) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        assert (shots / "webstatus-2.png").is_file()
