"""Helpers for the `xmpp-pong` integration tests: the binary, its flags, and a player.

    async with player(server, "alice") as alice:
        alice.check_in("friday@pong.localhost")
        dims = await alice.wait_pong("dimensions")

A `Player` is a `TestClient` that speaks the `xmpp:game:pong` payload (see
docs/pong-protocol.md): it sends directed presence plus `playercheckingin` when it
checks in, and reads the component's messages as `PongMsg` (action + child texts).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .clients import TestClient, error_condition
from .component import REPO_ROOT
from .servers import XmppServer, free_port

PONG = "pong.localhost"
NS = "xmpp:game:pong"
HINTS_NS = "urn:xmpp:hints"


def pong_binary_path() -> Path:
    """`$XMPP_PONG_BIN`, else <repo>/target/debug/xmpp-pong."""
    env = os.environ.get("XMPP_PONG_BIN")
    return Path(env) if env else REPO_ROOT / "target" / "debug" / "xmpp-pong"


def pong_args(http_port: int, data_dir: Path, **flags) -> list[str]:
    """Command-line flags: --http, --data and any `name=value` as `--name value`."""
    args = ["--http", f"127.0.0.1:{http_port}", "--data", str(data_dir)]
    for name, value in flags.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
        return resp.status, resp.read().decode()


async def http_json(port: int, path: str):
    _, text = await asyncio.to_thread(http_get, port, path)
    return json.loads(text)


@dataclass
class PongMsg:
    """One message from the component: its action, child texts, and the raw stanza."""
    action: str
    fields: dict = field(default_factory=dict)
    stanza: object = None

    def num(self, name: str) -> float:
        return float(self.fields[name])


def parse_pong(stanza) -> PongMsg | None:
    payload = stanza.xml.find(f"{{{NS}}}pong")
    if payload is None:
        return None
    fields = {child.tag.split("}", 1)[1]: (child.text or "").strip() for child in payload}
    return PongMsg(fields.get("action", ""), fields, stanza)


class Player(TestClient):
    """A slixmpp client that plays XMPPong."""

    __test__ = False

    def check_in(self, game: str = PONG, action: str = "playercheckingin"):
        """Directed presence to the game, then the check-in message."""
        self.send_presence(game)
        self.send_action(game, action)

    def send_action(self, to: str, action: str, id: str | None = None, **children):
        inner = "".join(f"<{k}>{v}</{k}>" for k, v in children.items())
        id_attr = f" id='{id}'" if id else ""
        self.send_raw(f"<message to='{to}'{id_attr}><pong xmlns='{NS}'><action>{action}</action>{inner}</pong></message>")

    def move(self, y: float, to: str = PONG):
        self.send_action(to, "paddleposition", y=f"{y:.1f}")

    async def wait_pong(self, action: str | None = None, timeout: float = 5.0, pred=None) -> PongMsg:
        """The next game message (with `action`, matching `pred(PongMsg)`); others are skipped."""
        def match(m):
            if m["type"] == "error":
                return False
            msg = parse_pong(m)
            if msg is None or (action is not None and msg.action != action):
                return False
            return pred is None or pred(msg)
        stanza = await self.messages.get(match, timeout, f"pong {action or 'any'}")
        return parse_pong(stanza)

    async def next_pong(self, timeout: float = 5.0) -> PongMsg:
        """The next game message, whatever its action (errors excluded), in arrival order."""
        return await self.wait_pong(None, timeout)

    async def wait_error(self, timeout: float = 5.0):
        return await self.messages.get(lambda m: m["type"] == "error", timeout, "error message")

    def drop_pending(self):
        self.messages.drain()


@contextlib.asynccontextmanager
async def player(server: XmppServer, user: str, *, resource: str | None = None, timeout: float = 10.0):
    p = Player(server, user, resource=resource)
    try:
        await p.connect(timeout=timeout)
        yield p
    finally:
        await p.close()


def error_text(stanza) -> str:
    err = stanza.xml.find("{*}error")
    if err is None:
        return ""
    text = err.find("{urn:ietf:params:xml:ns:xmpp-stanzas}text")
    return (text.text or "") if text is not None else ""


def leaderboard_rows(iq) -> list[dict]:
    board = iq.xml.find(f"{{{NS}}}leaderboard")
    if board is None:
        return []
    return [dict(p.attrib) for p in board.findall(f"{{{NS}}}player")]


__all__ = ["PONG", "NS", "HINTS_NS", "Player", "PongMsg", "player", "pong_binary_path", "pong_args",
           "http_get", "http_json", "parse_pong", "error_condition", "error_text", "leaderboard_rows",
           "free_port", "ET"]
