"""The XMPPong web client, end to end: people log in on the page `xmpp-pong` serves at `/`
and play each other in a real headless Chromium (Debian's, driven by playwright-core) through
a real XMPP server's WebSocket endpoint: Prosody `mod_websocket`, then ejabberd
`ejabberd_http_ws` (the `server` fixture).

The browser side is `tests/browser/pong/pong_e2e.mjs` (one scenario per run, JSON lines
out); this file starts the servers and the component, runs it, and checks what it saw and
what the leaderboard says. Screenshots go to `$PONG_SCREENSHOT_DIR`, else
`tests/browser/pong/screenshots/<server>/` (not committed).
Needs Debian's `chromium`, node, and `npm ci --prefix tests/browser/pong`.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from xmpptest.ci import missing
from xmpptest.component import REPO_ROOT
from xmpptest.pong import NS, PONG, free_port, http_get, http_json, player, pong_args, pong_binary_path
from xmpptest.webstatus import chromium_path

PONG_BROWSER_DIR = REPO_ROOT / "tests" / "browser" / "pong"
USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw", "dave": "davepw"}
# Quick games: two points win, a short pause before each serve.
FAST = dict(points_to_win=2, ball_speed=600, serve_delay=0.3)


@pytest.fixture(scope="session")
def browser_tools():
    chromium = chromium_path()
    if chromium is None:
        missing("Chromium not found; install it with `apt-get install -y chromium` (or set CHROMIUM_BIN)")
    if shutil.which("node") is None:
        missing("node not found; install Node.js (Debian: `apt-get install -y nodejs npm`)")
    if not (PONG_BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        missing(f"playwright-core is not installed in {PONG_BROWSER_DIR}; run `npm ci --prefix {PONG_BROWSER_DIR}`")
    return chromium


@pytest.fixture(scope="session")
def pong_bin():
    path = pong_binary_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        missing(f"xmpp-pong binary not found at {path}; build it with `cargo build -p xmpp-pong`")
    return path


@pytest.fixture(scope="module")
def players(server):
    for user in ("carol", "dave"):
        server.register_user(user, USERS[user])
    return server


class WebPong:
    """`xmpp-pong` with --http and --websocket-url pointing at the server's WebSocket."""

    def __init__(self, server, binary, components, tmp_path):
        self.server, self.binary, self.components, self.tmp_path = server, binary, components, tmp_path
        self.http_port = free_port()
        self.websocket = f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"

    def start(self, **flags):
        args = pong_args(self.http_port, self.tmp_path / "pong-data", websocket_url=self.websocket, **flags)
        proc = self.components.start(self.binary, self.server, domain=PONG, extra_args=args, name="xmpp-pong")
        proc.wait_connected(timeout=15)
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/"


@pytest.fixture
def web(players, pong_bin, components, tmp_path):
    return WebPong(players, pong_bin, components, tmp_path)


def screenshot_dir(server) -> Path:
    root = Path(os.environ.get("PONG_SCREENSHOT_DIR", PONG_BROWSER_DIR / "screenshots"))
    path = root / server.kind
    path.mkdir(parents=True, exist_ok=True)
    return path


async def run_browser(scenario: str, web: WebPong, chromium: str, game: str, timeout: float = 90) -> tuple[dict, list]:
    """Runs one scenario of pong_e2e.mjs; returns its final observations and every event."""
    config = dict(scenario=scenario, base=web.base, game=game, users=USERS, chromium=chromium,
                  shots=str(screenshot_dir(web.server)), closedPort=free_port(), websocket=web.websocket)
    proc = await asyncio.create_subprocess_exec(
        "node", str(PONG_BROWSER_DIR / "pong_e2e.mjs"), json.dumps(config), cwd=str(PONG_BROWSER_DIR),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"browser scenario {scenario} took over {timeout} s:\n{out.decode()[-4000:]}") from None
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    final = events[-1] if events else {}
    steps = [e for e in events if e["event"] in ("step", "pageerror")]
    assert final.get("event") == "done", (
        f"browser scenario {scenario} failed: {final.get('message', final)}\nsteps: {steps}\n"
        f"stderr: {err.decode()[-3000:]}")
    assert not [e for e in events if e["event"] == "pageerror"], steps
    return final, events


async def test_two_browsers_play_a_game_to_the_end(web, browser_tools):
    """Points 1-4: sides, ArrowUp seen by the other page, a point on both pages, the end."""
    web.start(**FAST)
    status, page = await asyncio.to_thread(http_get, web.http_port, "/")
    assert status == 200 and web.websocket in page
    result, events = await run_browser("match", web, browser_tools, game="friday")
    assert result["sides"] == {"alice": 0, "bob": 1}, result
    arrow = next(e for e in events if e.get("step") == "arrow up")
    assert arrow["after"] < arrow["before"] - 60, arrow
    point = next(e for e in events if e.get("step") == "point")
    assert sorted([point["alice"], point["bob"]]) == ["Score 0:1", "Score 1:0"], point
    over = result["over"]
    assert over["reason"] == "points" and max(over["score"]) == 2, over
    for shot in result["screenshots"]:
        assert Path(shot).stat().st_size > 5000, shot

    # The result is on the leaderboard: alice chose a nickname, bob's address is masked.
    board = await http_json(web.http_port, "/leaderboard.json")
    rows = {row["name"]: row for row in board}
    alice_won = over["winnerSide"] == 0
    assert rows["Ally"]["wins"] == (1 if alice_won else 0), board
    assert rows["bob@…"]["wins"] == (0 if alice_won else 1), board
    assert all("jid" not in row for row in board), "nobody opted in to showing their address"
    _, html = await asyncio.to_thread(http_get, web.http_port, "/leaderboard")
    assert "Ally" in html and "bob@…" in html and "bob@localhost" not in html


async def test_wrong_password_full_game_watching_and_a_player_leaving(web, browser_tools):
    """Point 5 (and an unreachable server), point 6, and a connection lost mid-game."""
    web.start()
    result, _ = await run_browser("trouble", web, browser_tools, game="saturday")
    assert "Cannot reach the XMPP server" in result["unreachable"], result
    assert result["wrong"] == "Wrong address or password.", result
    assert "is full" in result["full"] and "watch" in result["full"], result
    assert result["watching"] is True, result
    assert "opponent left" in result["left"] and "bob@localhost" in result["left"], result
    assert result["aliceEnd"].startswith("You won"), result
    assert "Connection lost during the game" in result["lost"], result
    assert "opponent left" in result["aliceAgain"] and "dave@localhost" in result["aliceAgain"], result
    board = await http_json(web.http_port, "/leaderboard.json")
    assert {row["name"]: (row["wins"], row["losses"]) for row in board} == {
        "alice@…": (2, 0), "bob@…": (0, 1), "dave@…": (0, 1)}, board


# -- the XMPP side of the web client's features (no browser) -------------------------------------------
async def test_a_chat_message_to_the_game_server_gets_the_web_clients_address(web):
    web.start()
    async with player(web.server, "alice") as alice:
        reply = await alice.send_message_and_wait(PONG, "hello? how do I play?")
        assert reply["type"] == "chat", reply
        body = reply["body"]
        assert web.base in body and f"{web.base}?game=" in body and f"{web.base}leaderboard" in body, body
        assert "playercheckingin" in body and f"NAME@{PONG}" in body, body
        # A named game's address answers too, from that address.
        reply = await alice.send_message_and_wait(f"friday@{PONG}", "hi")
        assert web.base in reply["body"]
    # The leaderboard page links to the client.
    _, html = await asyncio.to_thread(http_get, web.http_port, "/leaderboard")
    assert 'href="/"' in html


async def test_a_check_in_sets_the_nickname_and_the_address_opt_in(web):
    web.start()
    async with player(web.server, "alice") as alice, player(web.server, "bob") as bob:
        game = f"sunday@{PONG}"
        alice.send_presence(game)
        alice.send_raw(f"<message to='{game}'><pong xmlns='{NS}'><action>playercheckingin</action>"
                       f"<showjid>true</showjid></pong>"
                       f"<nick xmlns='http://jabber.org/protocol/nick'> Ally &lt;3 </nick></message>")
        await alice.wait_pong("dimensions")
        bob.send_presence(game)
        bob.send_raw(f"<message to='{game}'><pong xmlns='{NS}'><action>playercheckingin</action></pong>"
                     f"<nick xmlns='http://jabber.org/protocol/nick'>bob@evil.example</nick></message>")
        await bob.wait_pong("dimensions")
        await alice.wait_pong("scoreupdate")
        bob.send_action(PONG, "leave")
        over = await alice.wait_pong("gameOver")
        assert over.fields["player1jid"] == "alice@localhost" and over.fields["player2jid"] == "bob@localhost"
    board = await http_json(web.http_port, "/leaderboard.json")
    assert {row["name"]: row.get("jid") for row in board} == {
        "Ally <3": "alice@localhost",      # a nickname, and she opted in to her address
        "bob@…": None,                     # a nickname that looks like an address is refused
    }, board
    _, html = await asyncio.to_thread(http_get, web.http_port, "/leaderboard")
    assert "Ally &lt;3 (alice@localhost)" in html and "bob@evil" not in html
