"""Self-test of the harness, with no Rust code involved.

A raw Python XEP-0114 component (xmpptest.raw.RawComponent) stands in for a
component, so these tests prove that the server fixtures, the slixmpp client
helper and the component probe work on both servers, and they pin down the
server behaviour that tests/test_echo.py relies on.
"""
from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import pytest

from xmpptest.clients import client, disco_identities, error_condition
from xmpptest.component import ComponentError, ComponentProcess, server_stand_in
from xmpptest.raw import RawClient, RawComponent, attr, parse_element
from xmpptest.servers import COMPONENT_SECRETS

ECHO = "echo.localhost"


def raw_echo(server) -> RawComponent:
    comp = RawComponent(ECHO, COMPONENT_SECRETS[ECHO], server.port_for(ECHO))
    comp.connect()
    return comp


async def recv_match(comp: RawComponent, pattern: str, timeout: float = 5.0):
    return await asyncio.to_thread(comp.recv_match, pattern, timeout)


def test_ready_ports_and_users(server):
    assert server.is_running()
    assert len({server.c2s_port, server.component_port, server.http_port}) == 3
    assert {"alice", "bob"} <= set(server.users)
    with RawClient("alice", "alicepw", server.c2s_port) as c:
        assert c.login().startswith("alice@localhost/")
    with RawClient("bob", "wrong-password", server.c2s_port) as c:
        with pytest.raises(RuntimeError, match="SASL success"):
            c.login()


@pytest.mark.parametrize("domain", sorted(COMPONENT_SECRETS))
def test_configured_components_handshake(server, domain):
    with RawComponent(domain, COMPONENT_SECRETS[domain], server.port_for(domain)) as comp:
        assert comp.connect().startswith("<handshake")
    with RawComponent(domain, "wrong-secret", server.port_for(domain)) as comp:
        comp.open()
        reply = comp.handshake()
        assert reply is not None and "not-authorized" in reply


async def test_message_reaches_raw_component_and_back(server):
    comp = raw_echo(server)
    try:
        async with client(server, "alice") as alice:
            alice.send_message(ECHO, "hello component", mtype="chat", id="m1")
            got = await recv_match(comp, r"^<message")
            assert got is not None, "\n".join(comp.transcript)
            st = parse_element(got, "jabber:component:accept")
            assert attr(got, "from") == alice.full_jid
            assert attr(got, "to") == ECHO and attr(got, "id") == "m1"
            assert st.findtext("{jabber:component:accept}body") == "hello component"

            comp.send(f"<message from='{ECHO}' to='{alice.full_jid}' type='chat' id='m1'>"
                      "<body>hello component</body></message>")
            reply = await alice.wait_message(from_=ECHO)
            assert (reply["type"], reply["id"], reply["body"]) == ("chat", "m1", "hello component")
    finally:
        comp.close()


async def test_every_message_type_reaches_the_component(server):
    """error/groupchat/headline/normal messages are delivered to the component, so
    test_echo.py's "not echoed" checks really test the component, not the server."""
    comp = raw_echo(server)
    try:
        async with client(server, "alice") as alice:
            alice.send_raw(f"<message type='error' to='{ECHO}' id='t-error'><body>e</body>"
                           "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                           "</error></message>")
            for mtype in ("groupchat", "headline", "normal", "chat"):
                alice.send_message(ECHO, mtype, mtype=mtype, id=f"t-{mtype}")
            got = []
            for _ in range(5):
                m = await recv_match(comp, r"^<message")
                assert m is not None, "\n".join(comp.transcript)
                got.append((attr(m, "id"), attr(m, "type")))
            ids = [i for i, _ in got]
            assert ids == ["t-error", "t-groupchat", "t-headline", "t-normal", "t-chat"]
            assert dict(got)["t-groupchat"] == "groupchat" and dict(got)["t-headline"] == "headline"
            # ejabberd drops type='normal' (the default); Prosody keeps it.
            assert dict(got)["t-normal"] in ("normal", None)
            await alice.assert_no_message(from_=ECHO, within=0.5)
    finally:
        comp.close()


async def test_iq_is_forwarded_to_the_component(server):
    comp = raw_echo(server)
    try:
        async with client(server, "alice") as alice:
            task = asyncio.ensure_future(alice.disco_info(ECHO))
            iq = await recv_match(comp, r"^<iq")
            assert iq is not None and "disco#info" in iq
            comp.send(f"<iq type='result' from='{ECHO}' to='{attr(iq, 'from')}' id='{attr(iq, 'id')}'>"
                      "<query xmlns='http://jabber.org/protocol/disco#info'>"
                      "<identity category='component' type='generic' name='raw'/></query></iq>")
            reply = await task
            assert reply["type"] == "result"
            assert disco_identities(reply) == [{"category": "component", "type": "generic", "name": "raw"}]
    finally:
        comp.close()


async def test_component_not_connected_gives_an_error(server):
    async with client(server, "alice") as alice:
        reply = await alice.send_message_and_wait(ECHO, "anyone there?")
        assert reply["type"] == "error"
        expected = {"prosody": "remote-server-timeout", "ejabberd": "forbidden"}[server.kind]
        assert error_condition(reply) == expected
        iq = await alice.disco_info(ECHO)
        if server.kind == "prosody":   # `name = "Echo"` in deploy/prosody/echo.cfg.lua: Prosody stands in
            assert iq["type"] == "result"
            assert disco_identities(iq) == [{"category": "component", "type": "generic", "name": "Echo"}]
            assert server_stand_in(str(iq))
        else:
            assert iq["type"] == "error"


def test_wait_connected_probe_sees_a_raw_component(server, tmp_path):
    """The disco#info probe used for xmpp-echo fails while nothing answers, succeeds once a component does."""
    proc = ComponentProcess("/bin/sleep", server, tmp_path, name="sleeper")
    proc.proc = subprocess.Popen(["/bin/sleep", "30"])   # a live process that is no component
    try:
        t0 = time.monotonic()
        with pytest.raises(ComponentError, match="did not answer disco#info"):
            proc.wait_connected(timeout=1.0)
        assert time.monotonic() - t0 < 5

        comp = raw_echo(server)
        stop = False

        def answer():   # a minimal disco#info responder on the raw component
            while not stop:
                iq = comp.recv_match(r"^<iq", 0.2)
                if iq:
                    comp.send(f"<iq type='result' from='{ECHO}' to='{attr(iq, 'from')}' id='{attr(iq, 'id')}'/>")

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        try:
            assert proc.wait_connected(timeout=5.0) < 5.0
        finally:
            stop = True
            t.join(2)
            comp.close()
    finally:
        proc.stop()


def test_prosody_restart_keeps_ports_and_users(fresh_prosody):
    srv = fresh_prosody
    ports, pid = (srv.c2s_port, srv.component_port, srv.http_port), srv.pid
    srv.restart()
    assert srv.pid != pid and srv.is_running()
    assert (srv.c2s_port, srv.component_port, srv.http_port) == ports
    assert srv.exit_codes == [0]   # the first process stopped gracefully on SIGTERM
    with RawClient("alice", "alicepw", srv.c2s_port) as c:
        c.login()
    with raw_echo(srv) as comp:
        assert comp.stream_id
