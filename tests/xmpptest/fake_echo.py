#!/usr/bin/env python3
"""A stand-in for `xmpp-echo`, in Python (standard library only), to check the test suite itself.

It follows the same CLI contract (--server, --domain, --secret | --secret-file |
env XMPP_COMPONENT_SECRET, --log, --log-format) and the behaviour tests/test_echo.py
expects, so the suite can be shown to pass before the Rust binary exists:

    XMPP_ECHO_BIN=tests/xmpptest/fake_echo.py .venv/bin/pytest tests/test_echo.py -v

With FAKE_ECHO_BUG=<name> it misbehaves on purpose, to show the tests can fail:
echo-headline, no-subject, no-ping, exit0-wrong-secret, no-reconnect, sigterm-exit1.
It is not a product: never deploy it.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xmpptest.raw import RawComponent, attr, parse_element  # noqa: E402

NS = "jabber:component:accept"
BUG = os.environ.get("FAKE_ECHO_BUG", "")
stopping = False


def log(level: str, msg: str):
    print(f"{time.strftime('%H:%M:%S')} {level.upper():5} fake-echo: {msg}", file=sys.stderr, flush=True)


def die(msg: str, code: int = 2):
    log("error", msg)
    sys.exit(code)


def on_sigterm(*_):
    global stopping
    stopping = True


def echo_message(raw: str) -> str | None:
    mtype = attr(raw, "type")
    if mtype not in (None, "chat", "normal") and not (BUG == "echo-headline" and mtype == "headline"):
        return None
    el = parse_element(raw, NS)
    parts = []
    for tag in ("subject", "body", "thread"):
        if tag == "subject" and BUG == "no-subject":
            continue
        text = el.findtext(f"{{{NS}}}{tag}")
        if text is not None:
            parts.append(f"<{tag}>{escape(text)}</{tag}>")
    type_attr = f" type={quoteattr(mtype)}" if mtype else ""
    id_attr = f" id={quoteattr(attr(raw, 'id'))}" if attr(raw, "id") else ""
    return (f"<message from={quoteattr(attr(raw, 'to'))} to={quoteattr(attr(raw, 'from'))}{type_attr}{id_attr}>"
            + "".join(parts) + "</message>")


def answer_iq(raw: str, domain: str) -> str | None:
    if attr(raw, "type") not in ("get", "set"):
        return None
    head = f"from={quoteattr(attr(raw, 'to'))} to={quoteattr(attr(raw, 'from'))} id={quoteattr(attr(raw, 'id') or '')}"
    get = attr(raw, "type") == "get"
    if get and "http://jabber.org/protocol/disco#info" in raw:
        return (f"<iq type='result' {head}><query xmlns='http://jabber.org/protocol/disco#info'>"
                "<identity category='component' type='generic' name='Echo'/>"
                "<feature var='http://jabber.org/protocol/disco#info'/><feature var='urn:xmpp:ping'/>"
                "<feature var='jabber:iq:version'/></query></iq>")
    if get and "urn:xmpp:ping" in raw and BUG != "no-ping":
        return f"<iq type='result' {head}/>"
    if get and "jabber:iq:version" in raw:
        return (f"<iq type='result' {head}><query xmlns='jabber:iq:version'><name>fake-echo</name>"
                "<version>0.0.0</version></query></iq>")
    return (f"<iq type='error' {head}><error type='cancel'>"
            "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")


def answer_presence(raw: str) -> list[str]:
    ptype, frm, to = attr(raw, "type"), attr(raw, "from"), attr(raw, "to")
    if ptype == "subscribe":
        return [f"<presence type='subscribed' from={quoteattr(to)} to={quoteattr(frm.split('/')[0])}/>",
                f"<presence from={quoteattr(to)} to={quoteattr(frm.split('/')[0])}/>"]
    if ptype == "probe":
        return [f"<presence from={quoteattr(to)} to={quoteattr(frm)}/>"]
    return []


def serve(comp: RawComponent, domain: str) -> bool:
    """Handle stanzas until SIGTERM (returns True) or connection loss (returns False)."""
    while not stopping:
        raw = comp.recv(0.2)
        if raw is None:
            if comp.eof:
                return False
            continue
        log("debug", f"RECV {raw}")
        out: list[str] = []
        if raw.startswith("<message"):
            out = [m for m in [echo_message(raw)] if m]
        elif raw.startswith("<iq"):
            out = [m for m in [answer_iq(raw, domain)] if m]
        elif raw.startswith("<presence"):
            out = answer_presence(raw)
        elif raw.startswith("<stream:error"):
            log("warn", f"stream error from server: {raw}")
        for s in out:
            log("debug", f"SEND {s}")
            comp.sock.sendall(s.encode())
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--secret")
    ap.add_argument("--secret-file")
    ap.add_argument("--log", default="info")
    ap.add_argument("--log-format", default="text", choices=["text", "json"])
    a = ap.parse_args()
    secret = a.secret or os.environ.get("XMPP_COMPONENT_SECRET")
    if a.secret_file:
        secret = Path(a.secret_file).read_text().strip()
    if not secret:
        die("no secret: pass --secret, --secret-file or set XMPP_COMPONENT_SECRET")
    host, _, port = a.server.rpartition(":")
    signal.signal(signal.SIGTERM, on_sigterm)
    delay, ever_connected = 0.1, False
    while not stopping:
        comp = RawComponent(a.domain, secret, int(port), host=host)
        try:
            comp.open(timeout=5)
            first = comp.recv(0.3)   # Prosody reports an unknown domain right after the header
            if first and "host-unknown" in first:
                die(f"the server does not know the component domain {a.domain}: check the server's "
                    "component configuration and --domain", 3)
            reply = comp.handshake()
        except (OSError, RuntimeError) as e:
            log("warn", f"cannot connect to {a.server}: {e}; retrying in {delay:.1f} s")
            time.sleep(delay)
            delay = min(1.0, delay * 2)
            continue
        if reply is None or not reply.startswith("<handshake"):
            if BUG == "exit0-wrong-secret":
                sys.exit(0)
            die(f"the server rejected the handshake for {a.domain} ({reply}): wrong secret, or a domain "
                "the server does not know: check --secret/--secret-file and the server configuration", 3)
        log("info", f"handshake ok, connected as {a.domain}")
        ever_connected, delay = True, 0.1
        if serve(comp, a.domain):
            comp.close()
            sys.exit(1 if BUG == "sigterm-exit1" else 0)
        log("warn", "connection lost; reconnecting")
        if BUG == "no-reconnect" and ever_connected:
            while not stopping:
                time.sleep(0.1)
    sys.exit(0)


if __name__ == "__main__":
    try:
        main()
    except socket.error as e:
        die(f"network error: {e}", 4)
