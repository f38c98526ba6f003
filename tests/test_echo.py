"""Integration tests of the `xmpp-echo` component against real Prosody and ejabberd.

Each test runs against both servers (the `server` fixture), except the Prosody
restart test. The binary comes from $XMPP_ECHO_BIN or <repo>/target/debug/xmpp-echo
(see conftest.py). CLI contract: --server HOST:PORT --domain D
(--secret S | --secret-file F | env XMPP_COMPONENT_SECRET) --log FILTER.
"""
from __future__ import annotations

import asyncio

import pytest

from xmpptest.clients import bare, client, disco_features, disco_identities, error_condition

ECHO = "echo.localhost"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
EXIT_TIMEOUT = 10.0


# The configuration-mistake tests run the component with `--log warn`, so that the checked
# text is its final error message, not an info line that happens to echo --domain.
QUIET = "warn"


def stderr_tail(proc, lines: int = 15) -> str:
    return "\n".join(proc.stderr().splitlines()[-lines:])


# -- messages ------------------------------------------------------------------------------------
async def test_chat_message_is_echoed(server, echo):
    async with client(server, "alice") as alice:
        alice.send_raw(f"<message type='chat' to='{ECHO}' id='X'><body>hello</body></message>")
        reply = await alice.wait_message(from_=ECHO)
        assert reply["type"] == "chat", reply
        assert reply["body"] == "hello", reply
        assert reply["id"] == "X", reply
        assert reply["from"].bare == ECHO
        assert bare(reply["to"]) == "alice@localhost"


async def test_normal_message_keeps_subject_and_thread(server, echo):
    async with client(server, "alice") as alice:
        alice.send_raw(f"<message type='normal' to='{ECHO}' id='N1'><subject>Re: tests</subject>"
                       "<body>normal body</body><thread>thread-42</thread></message>")
        reply = await alice.wait_message(from_=ECHO)
        # ejabberd drops type='normal' (it is the default); slixmpp reports a missing type as 'normal'.
        assert reply["type"] == "normal", reply
        assert (reply["body"], reply["subject"], reply["thread"]) == ("normal body", "Re: tests", "thread-42"), reply
        assert reply["id"] == "N1", reply


async def test_payloads_keep_their_namespaces(server, echo):
    """A forwarded jabber:client message inside the payload stays jabber:client on the way
    back (only the stanza's own children are moved into the component namespace)."""
    async with client(server, "alice") as alice:
        alice.send_raw(
            f"<message type='chat' to='{ECHO}' id='F1'><body>with payloads</body>"
            "<forwarded xmlns='urn:xmpp:forward:0'>"
            "<message xmlns='jabber:client' from='carol@localhost/x' to='alice@localhost'"
            " type='chat'><body>inner body</body></message></forwarded>"
            "<x xmlns='urn:example:payload' a='1'><y>z &amp; more</y></x></message>")
        reply = await alice.wait_message(from_=ECHO)
        assert (reply["id"], reply["body"]) == ("F1", "with payloads"), reply
        inner = reply.xml.find("{urn:xmpp:forward:0}forwarded/{jabber:client}message")
        assert inner is not None, f"forwarded message lost or re-namespaced: {reply}"
        assert inner.get("from") == "carol@localhost/x", reply
        assert inner.findtext("{jabber:client}body") == "inner body", reply
        payload = reply.xml.find("{urn:example:payload}x")
        assert payload is not None and payload.get("a") == "1", reply
        assert payload.findtext("{urn:example:payload}y") == "z & more", reply


async def test_bodies_in_several_languages_all_come_back(server, echo):
    async with client(server, "alice") as alice:
        alice.send_raw(f"<message type='chat' to='{ECHO}' id='L1'><body>hello</body>"
                       "<body xml:lang='de'>hallo</body><body xml:lang='fr'>salut</body></message>")
        reply = await alice.wait_message(from_=ECHO)
        assert reply["id"] == "L1", reply
        texts = sorted(b.text for b in reply.xml.findall("{jabber:client}body"))
        assert texts == ["hallo", "hello", "salut"], reply
        lang = "{http://www.w3.org/XML/1998/namespace}lang"
        by_lang = {b.get(lang): b.text for b in reply.xml.findall("{jabber:client}body")}
        assert (by_lang.get("de"), by_lang.get("fr")) == ("hallo", "salut"), reply


NOT_ECHOED = {
    "error": (f"<message type='error' to='{ECHO}' id='no-error'><body>an error</body>"
              f"<error type='cancel'><service-unavailable xmlns='{STANZAS_NS}'/></error></message>"),
    "groupchat": f"<message type='groupchat' to='{ECHO}' id='no-groupchat'><body>to the room</body></message>",
    "headline": f"<message type='headline' to='{ECHO}' id='no-headline'><body>news</body></message>",
}


@pytest.mark.parametrize("mtype", sorted(NOT_ECHOED))
async def test_message_type_is_not_echoed(server, echo, mtype):
    async with client(server, "alice") as alice:
        alice.send_raw(NOT_ECHOED[mtype])
        alice.send_raw(f"<message type='chat' to='{ECHO}' id='after-{mtype}'><body>after {mtype}</body></message>")
        first = await alice.wait_message(from_=ECHO)
        assert (first["type"], first["id"], first["body"]) == ("chat", f"after-{mtype}", f"after {mtype}"), \
            f"the first message back from {ECHO} should be the chat echo, got: {first}"
        await alice.assert_no_message(from_=ECHO, within=0.5)


# -- iq --------------------------------------------------------------------------------------------
async def test_disco_info(server, echo):
    async with client(server, "alice") as alice:
        reply = await alice.disco_info(ECHO)
        assert reply["type"] == "result", reply
        assert {"category": "component", "type": "generic", "name": "Echo"} in disco_identities(reply), reply
        features = disco_features(reply)
        for var in ("http://jabber.org/protocol/disco#info", "urn:xmpp:ping", "jabber:iq:version"):
            assert var in features, f"{var} missing from {sorted(features)}"


@pytest.mark.parametrize("iq_type", ["get", "set"])
async def test_unknown_iq_gets_service_unavailable(server, echo, iq_type):
    async with client(server, "alice") as alice:
        reply = await alice.iq(ECHO, "<query xmlns='urn:example:nothing'/>", iq_type=iq_type)
        assert reply["type"] == "error", reply
        assert error_condition(reply) == "service-unavailable", reply
        assert reply["from"].bare == ECHO


async def test_ping(server, echo):
    async with client(server, "alice") as alice:
        reply = await alice.ping(ECHO)
        assert reply["type"] == "result", reply
        assert reply["from"].bare == ECHO


async def test_software_version(server, echo):
    async with client(server, "alice") as alice:
        reply = await alice.version(ECHO)
        assert reply["type"] == "result", reply
        q = reply.xml.find("{jabber:iq:version}query")
        assert q is not None, reply
        assert (q.findtext("{jabber:iq:version}name") or "").strip(), f"no <name/>: {reply}"
        assert (q.findtext("{jabber:iq:version}version") or "").strip(), f"no <version/>: {reply}"


# -- presence ------------------------------------------------------------------------------------
async def test_subscribe_is_approved(server, echo):
    server.register_user("carol", "carolpw")
    async with client(server, "carol") as carol:
        carol.send_presence(ECHO, "subscribe")
        await carol.wait_presence(from_=ECHO, ptype="subscribed")
        await carol.wait_presence(from_=ECHO, ptype="available")
        sub = await carol.wait_roster_subscription(ECHO, ("to", "both"))
        assert sub in ("to", "both"), f"roster subscription to {ECHO} is {sub!r}"


async def test_probe_on_login_is_answered(server, echo):
    """After subscribing, a new session makes the server probe echo.localhost: it must answer."""
    server.register_user("dave", "davepw")
    async with client(server, "dave") as dave:
        dave.send_presence(ECHO, "subscribe")
        await dave.wait_presence(from_=ECHO, ptype="subscribed")
        await dave.wait_roster_subscription(ECHO, ("to", "both"))
    async with client(server, "dave") as dave:
        p = await dave.wait_presence(from_=ECHO, ptype="available")
        assert p["from"].bare == ECHO


# -- configuration and lifecycle ------------------------------------------------------------------
@pytest.mark.parametrize("secret_via", ["env", "arg"])
def test_secret_from_env_or_argument(server, echo_bin, components, secret_via):
    proc = components.start(echo_bin, server, domain=ECHO, secret_via=secret_via)
    proc.wait_connected(timeout=10)


@pytest.mark.parametrize("secret_via", ["file", "env"])
def test_wrong_secret_exits_nonzero(server, echo_bin, components, secret_via):
    proc = components.start(echo_bin, server, domain=ECHO, secret="definitely-not-the-secret",
                            secret_via=secret_via, name=f"echo-wrong-secret-{secret_via}", log_filter=QUIET)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc is not None, f"xmpp-echo still running {EXIT_TIMEOUT} s after a wrong secret"
    assert rc != 0, f"xmpp-echo exited 0 after a wrong secret:\n{proc.logs_for_humans()}"
    assert "secret" in stderr_tail(proc).lower(), f"stderr does not mention the secret:\n{proc.logs_for_humans()}"


def test_unknown_domain_exits_nonzero(server, echo_bin, components):
    proc = components.start(echo_bin, server, domain="nosuch.localhost", secret="some-secret",
                            name="echo-unknown-domain", log_filter=QUIET)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc is not None, f"xmpp-echo still running {EXIT_TIMEOUT} s after connecting as an unknown domain"
    assert rc != 0, f"xmpp-echo exited 0 for an unknown domain:\n{proc.logs_for_humans()}"
    text = stderr_tail(proc).lower()
    assert any(w in text for w in ("nosuch.localhost", "domain", "config")), \
        f"stderr mentions neither the domain nor the configuration:\n{proc.logs_for_humans()}"


def test_sigterm_exits_zero(server, echo):
    rc = echo.terminate(timeout=5)
    assert rc is not None, "xmpp-echo still running 5 s after SIGTERM"
    assert rc == 0, f"xmpp-echo exited with {rc} on SIGTERM:\n{echo.logs_for_humans()}"


async def test_secret_never_logged(server, echo):
    """Even at --log debug, the secret itself must not appear in the component's output."""
    async with client(server, "alice") as alice:
        reply = await alice.send_message_and_wait(ECHO, "log check")
        assert reply["body"] == "log check"
    echo.stop()
    assert echo.secret not in echo.output(), f"the secret appears in the output:\n{echo.logs_for_humans()}"


async def test_reconnects_after_prosody_restart(fresh_prosody, echo_bin, components):
    srv = fresh_prosody
    echo = components.start(echo_bin, srv, domain=ECHO)
    await asyncio.to_thread(echo.wait_connected, 10)
    async with client(srv, "alice") as alice:
        assert (await alice.send_message_and_wait(ECHO, "before restart"))["body"] == "before restart"

    await asyncio.to_thread(srv.restart)   # stop by PID, start on the same ports, wait ready
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    attempts = []
    while True:
        left = deadline - loop.time()
        if left <= 0:
            pytest.fail("no echo within 5 s after Prosody was ready again; attempts:\n  " + "\n  ".join(attempts)
                        + f"\n{echo.logs_for_humans()}")
        body = f"after restart {len(attempts) + 1}"
        try:
            async with client(srv, "alice", timeout=max(0.5, min(2.0, left))) as alice:
                reply = await alice.send_message_and_wait(ECHO, body, timeout=max(0.2, min(1.0, deadline - loop.time())))
            if reply["type"] == "chat" and reply["body"] == body:
                break
            attempts.append(f"{loop.time() - deadline + 5.0:.2f}s: {reply['type']} {error_condition(reply)}")
        except TimeoutError as e:
            attempts.append(f"{loop.time() - deadline + 5.0:.2f}s: {str(e).splitlines()[0]}")
        await asyncio.sleep(0.2)
    assert echo.poll() is None, "xmpp-echo exited instead of reconnecting"
