"""Hostile input through REAL servers: one user's stanzas never take a component down.

For each server and each of the three components: a client (bob) sends 100 stanzas
nested far deeper than the component's cap (Prosody passes 30,000 levels to components;
ejabberd 23.01 itself crashes near 10,000, so it gets 2,000), half of them IQ requests;
through ejabberd another component connection also sends 100 stanzas over the component's
size cap (600 KiB; Prosody resets such a sender itself). Meanwhile another client (alice)
keeps pinging the component. The component must answer every IQ with policy-violation,
never reconnect, never exit, keep alice's round trips fast, and keep its RSS flat.

Before the depth cap, one 30,000-deep message aborted xmpp-echo with a stack overflow, and
each oversized stanza made the component drop its connection and reconnect.
"""
from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest

from xmpptest.ci import missing
from xmpptest.pong import pong_args, pong_binary_path
from xmpptest.raw import RawClient, RawComponent
from xmpptest.servers import DEFAULT_USERS, PROBE_COMPONENT, free_port
from xmpptest.webstatus import webstatus_binary_path

HOSTILE = 100
DEPTH = {"prosody": 30_000, "ejabberd": 2_000}
OVERSIZE = 600 * 1024


def _binary(path: Path, name: str) -> Path:
    if not (path.is_file() and os.access(path, os.X_OK)):
        missing(f"{name} binary not found at {path}; run `cargo build --workspace --bins`")
    return path


def _start(kind: str, server, components, echo_bin, tmp_path):
    if kind == "echo":
        proc = components.start(echo_bin, server, domain="echo.localhost", log_filter="info")
    elif kind == "pong":
        args = pong_args(free_port(), tmp_path / "pong-data")
        proc = components.start(_binary(pong_binary_path(), "xmpp-pong"), server,
                                domain="pong.localhost", extra_args=args, log_filter="info")
    else:
        port = free_port()
        args = ["--http", f"127.0.0.1:{port}", "--public-url", f"http://127.0.0.1:{port}",
                "--data", str(tmp_path / "webstatus-data")]
        proc = components.start(_binary(webstatus_binary_path(), "xmpp-webstatus"), server,
                                domain="webstatus.localhost", extra_args=args,
                                log_filter="info,sled=warn")
    proc.wait_connected(timeout=15)
    return proc


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))


def _round_trip(alice: RawClient, domain: str) -> float:
    started = time.monotonic()
    reply = alice.iq(domain, "<ping xmlns='urn:xmpp:ping'/>", timeout=10)
    assert reply is not None and "type='result'" in reply.replace('"', "'"), reply
    return time.monotonic() - started


def _deep_payload(levels: int) -> str:
    return f"<x xmlns='urn:hostile'>{'<a>' * levels}{'</a>' * levels}</x>"


def _attack_with_deep_stanzas(bob: RawClient, domain: str, levels: int) -> None:
    payload = _deep_payload(levels)
    for n in range(HOSTILE):
        if n % 2:
            bob.send(f"<iq type='get' to='{domain}' id='deep{n}'>{payload}</iq>")
        else:
            bob.send(f"<message type='chat' to='{domain}' id='deep{n}'><body>x</body>{payload}</message>")


def _attack_with_big_stanzas(sender: RawComponent, domain: str) -> None:
    filler = "y" * OVERSIZE
    for n in range(HOSTILE):
        sender.send(f"<message from='mallory@{sender.domain}/r' to='{domain}' type='chat' "
                    f"id='big{n}'><body>{filler}</body></message>")


@pytest.mark.parametrize("kind", ["echo", "pong", "webstatus"])
def test_hostile_stanzas_never_take_the_component_down(kind, server, echo_bin, components, tmp_path):
    proc = _start(kind, server, components, echo_bin, tmp_path)
    domain = proc.domain
    alice = RawClient("alice", DEFAULT_USERS["alice"], server.c2s_port, resource="calm")
    bob = RawClient("bob", DEFAULT_USERS["bob"], server.c2s_port, resource="hostile")
    alice.login()
    bob.login()
    try:
        baseline = sorted(_round_trip(alice, domain) for _ in range(10))
        rss_before = _rss_kib(proc.pid)

        attacks = [threading.Thread(target=_attack_with_deep_stanzas,
                                    args=(bob, domain, DEPTH[server.kind]))]
        oversize = None
        if server.kind == "ejabberd":
            oversize = RawComponent(*PROBE_COMPONENT, server.component_port, name="oversize")
            oversize.connect()
            attacks.append(threading.Thread(target=_attack_with_big_stanzas, args=(oversize, domain)))
        for attack in attacks:
            attack.start()
        during = []
        while any(a.is_alive() for a in attacks):
            during.append(_round_trip(alice, domain))
        for attack in attacks:
            attack.join(timeout=120)

        # Every over-deep IQ is answered with policy-violation (bob waits for all 50).
        answered = 0
        deadline = time.monotonic() + 60
        while answered < HOSTILE // 2 and time.monotonic() < deadline:
            reply = bob.recv_match(r"^<iq\b[^>]*\bid=['\"]deep\d+['\"]", timeout=deadline - time.monotonic())
            if reply is None:
                break
            assert "policy-violation" in reply, reply
            answered += 1
        assert answered == HOSTILE // 2, f"{answered} of {HOSTILE // 2} over-deep IQs answered"
        if oversize is not None:
            # The oversized messages were skipped and answered too: the sentinel is the last.
            last = oversize.recv_match(rf"^<message\b[^>]*\bid=['\"]big{HOSTILE - 1}['\"]", timeout=60)
            assert last is not None and "policy-violation" in last, last
            oversize.close()

        # The link is still the first one and the component is alive and quick.
        after = sorted(_round_trip(alice, domain) for _ in range(10))
        assert proc.poll() is None, f"{kind} exited:\n{proc.logs_for_humans()}"
        connects = proc.output().count("handshake ok")
        assert connects == 1, f"{kind} reconnected ({connects} connects):\n{proc.logs_for_humans()}"
        assert "connection ended" not in proc.output(), proc.logs_for_humans()
        worst = max(during + after)
        # Pings queue behind the hostile bytes on the one component link; skipping them must
        # keep that wait short (release builds: 2 ms per 600 KiB stanza, debug: 5 ms).
        assert worst < 3.0, f"a round trip took {worst:.3f} s during the attack"
        assert after[len(after) // 2] < max(0.25, 10 * baseline[len(baseline) // 2]), (baseline, after)
        rss_after = _rss_kib(proc.pid)
        assert rss_after - rss_before < 32 * 1024, f"RSS grew from {rss_before} to {rss_after} KiB"
        print(f"{server.kind}/{kind}: round trip p50 before {baseline[5] * 1000:.1f} ms, "
              f"worst during {max(during or [0]) * 1000:.1f} ms ({len(during)} pings), "
              f"after {after[5] * 1000:.1f} ms; RSS {rss_before} -> {rss_after} KiB")
    finally:
        alice.close()
        bob.close()
