"""deploy/: every file an admin copies is proven here.

* Server snippets (deploy/prosody, deploy/ejabberd): the `server` fixture already runs
  Prosody and ejabberd FROM those files (xmpptest/servers.py `deploy_snippet`); here the
  three real components connect through them, and service discovery shows their names.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from xmpptest.ci import missing
from xmpptest.clients import client, disco_identities
from xmpptest.component import REPO_ROOT
from xmpptest.servers import DEPLOY_DIR, DEPLOY_SNIPPETS, free_port

DISCO_ITEMS_NS = "http://jabber.org/protocol/disco#items"
BINARIES = {"echo": "xmpp-echo", "webstatus": "xmpp-webstatus", "pong": "xmpp-pong"}


def binary(name: str) -> Path:
    """`$XMPP_<NAME>_BIN`, else <repo>/target/debug/xmpp-<name>; missing = fail in CI, skip elsewhere."""
    env = os.environ.get(f"XMPP_{name.upper()}_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / BINARIES[name]
    if not (path.is_file() and os.access(path, os.X_OK)):
        missing(f"{path} not built (cargo build --bins, or set XMPP_{name.upper()}_BIN)")
    return path


def prosody_name(name: str) -> str:
    """The `name = "..."` of deploy/prosody/<name>.cfg.lua."""
    text = (DEPLOY_DIR / "prosody" / f"{name}.cfg.lua").read_text()
    found = re.findall(r'(?m)^\s*name\s*=\s*"([^"]*)"', text)
    assert len(found) == 1, f"deploy/prosody/{name}.cfg.lua: expected one name = \"...\", found {found}"
    return found[0]


def component_args(name: str, tmp_path: Path) -> list[str]:
    """The flags a component needs besides --server/--domain/--secret-file (its HTTP and data)."""
    if name == "echo":
        return []
    return ["--http", f"127.0.0.1:{free_port()}", "--data", str(tmp_path / f"{name}-data")]


# -- server snippets -------------------------------------------------------------------------------
def test_snippet_names_are_the_components_names():
    """Prosody's `name` in each snippet and the documented names agree."""
    assert {n: prosody_name(n) for n in DEPLOY_SNIPPETS.values()} == \
        {"echo": "Echo", "webstatus": "Web presence", "pong": "XMPPong"}


async def test_components_connect_through_the_snippets_and_disco_shows_their_names(server, components, tmp_path):
    """All three real binaries connect with the deploy snippets' settings; each answers
    disco#info with the same name as its Prosody snippet; disco#items of the server lists
    them (named on Prosody; ejabberd 23.01 has no per-component name, so there the items
    carry only the JID)."""
    procs = {}
    for domain, name in DEPLOY_SNIPPETS.items():
        procs[name] = components.start(binary(name), server, domain=domain, log_filter="info",
                                       extra_args=component_args(name, tmp_path), name=name)
    for proc in procs.values():
        proc.wait_connected(timeout=15)
    async with client(server, "alice") as alice:
        for domain, name in DEPLOY_SNIPPETS.items():
            reply = await alice.disco_info(domain)
            assert reply["type"] == "result", reply
            names = [i["name"] for i in disco_identities(reply)]
            assert prosody_name(name) in names, (domain, names)
        items_reply = await alice.iq("localhost", f"<query xmlns='{DISCO_ITEMS_NS}'/>")
        assert items_reply["type"] == "result", items_reply
        items = {el.get("jid"): el.get("name")
                 for el in items_reply.xml.iter(f"{{{DISCO_ITEMS_NS}}}item")}
    expected = {domain: prosody_name(name) for domain, name in DEPLOY_SNIPPETS.items()}
    if server.kind == "prosody":
        assert {d: items.get(d) for d in expected} == expected, items
    else:
        assert {d: items.get(d, "absent") for d in expected} == {d: None for d in expected}, items
