"""Integration tests of the `xmpp-pong` game server against real Prosody and ejabberd.

Every test runs against both servers (the `server` fixture) with real slixmpp clients.
The binary comes from $XMPP_PONG_BIN or <repo>/target/debug/xmpp-pong. Each test starts
its own component (fresh games) with `--http` on a free port and `--data` in its temp dir.
The wire protocol is docs/pong-protocol.md; players send directed presence to the game
they check in at, so that going offline reaches the component as `unavailable`.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from xmpptest.clients import client, disco_features, disco_identities
from xmpptest.pong import (HINTS_NS, NS, PONG, error_condition, error_text, free_port, http_get, http_json,
                           leaderboard_rows, player, pong_args, pong_binary_path)

FRIDAY = f"friday@{PONG}"
# Fast games for tests: short serve pause, a quicker ball, two points win.
FAST = dict(points_to_win=2, ball_speed=600, serve_delay=0.3)


def _missing(message: str):
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pong_bin():
    path = pong_binary_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        _missing(f"xmpp-pong binary not found at {path}; build it with `cargo build -p xmpp-pong` "
                 "or point XMPP_PONG_BIN at it")
    return path


@pytest.fixture(scope="module")
def users(server):
    for user in ("carol", "dave"):
        server.register_user(user, f"{user}pw")
    return server


class Pong:
    """Starts `xmpp-pong` processes for one test; all share one --data dir."""

    def __init__(self, server, binary, components, tmp_path):
        self.server, self.binary, self.components = server, binary, components
        self.data = tmp_path / "pong-data"
        self.http_port = free_port()
        self.proc = None

    def start(self, **flags):
        args = pong_args(self.http_port, self.data, **flags)
        self.proc = self.components.start(self.binary, self.server, domain=PONG, extra_args=args,
                                          name=f"xmpp-pong-{len(self.components.started) + 1}")
        self.proc.wait_connected(timeout=15)
        return self

    def stop(self):
        rc = self.proc.terminate(timeout=10)
        assert rc == 0, f"xmpp-pong exited with {rc} on SIGTERM:\n{self.proc.logs_for_humans()}"

    def crash(self):
        """SIGKILL: no shutdown code runs, nothing is flushed on the way out."""
        os.kill(self.proc.pid, signal.SIGKILL)
        rc = self.proc.wait_exit(timeout=10)
        assert rc == -signal.SIGKILL, f"xmpp-pong did not die of SIGKILL ({rc})"


@pytest.fixture
def pong(users, pong_bin, components, tmp_path):
    return Pong(users, pong_bin, components, tmp_path)


async def start_game(alice, bob, game: str = PONG):
    """alice checks in first (left), then bob (right); returns both `dimensions`."""
    alice.check_in(game)
    dims_a = await alice.wait_pong("dimensions")
    bob.check_in(game)
    dims_b = await bob.wait_pong("dimensions")
    await alice.wait_pong("scoreupdate")      # 0-0: the game has started
    await bob.wait_pong("scoreupdate")
    return dims_a, dims_b


async def waiting_games(p) -> list[str]:
    """The addresses disco#items lists as waiting for an opponent."""
    items = await p.iq(PONG, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
    return [i.get("jid") for i in items.xml.iter("{http://jabber.org/protocol/disco#items}item")]


def clamp(y: float) -> float:
    return max(0.0, min(500.0, y))


async def track(p, log: list | None = None, timeout: float = 60.0):
    """Play perfectly: keep the paddle centred on the ball. Returns the gameOver message."""
    deadline = time.monotonic() + timeout
    while True:
        m = await p.next_pong(timeout=max(0.1, deadline - time.monotonic()))
        if log is not None:
            log.append(m)
        if m.action == "ballposition":
            p.move(clamp(m.num("y") - 50))
        elif m.action == "gameOver":
            return m


async def dodge(p, timeout: float = 60.0):
    """Play to lose: keep the paddle in the half the ball is not in. Returns gameOver."""
    deadline = time.monotonic() + timeout
    target = 0.0
    while True:
        m = await p.next_pong(timeout=max(0.1, deadline - time.monotonic()))
        if m.action == "ballposition":
            if m.num("x") < 500:                # decide while the ball is far away
                target = 0.0 if m.num("y") > 300 else 500.0
            p.move(target)
        elif m.action == "gameOver":
            return m


def bounced_on_the_left(log) -> bool:
    """A ball x sequence that turns around near the left paddle without a point."""
    xs = []
    for m in log:
        if m.action == "scoreupdate":
            xs = []
        elif m.action == "ballposition":
            xs.append(m.num("x"))
            if len(xs) >= 3 and xs[-3] > xs[-2] < xs[-1] and 20 <= xs[-2] < 120:
                return True
    return False


# -- discovery -----------------------------------------------------------------------------------
async def test_disco_info_and_items(pong):
    pong.start()
    async with player(pong.server, "alice") as alice:
        reply = await alice.disco_info(PONG)
        assert reply["type"] == "result", reply
        assert {"category": "component", "type": "generic", "name": "XMPPong"} in disco_identities(reply), reply
        assert NS in disco_features(reply)
        alice.check_in(FRIDAY)
        await alice.wait_pong("dimensions")
        items = await alice.iq(PONG, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
        jids = [i.get("jid") for i in items.xml.iter("{http://jabber.org/protocol/disco#items}item")]
        assert FRIDAY in jids, items


# -- joining ------------------------------------------------------------------------------------
async def test_two_players_get_dimensions_with_their_side(pong):
    pong.start()
    async with player(pong.server, "alice") as alice, player(pong.server, "bob") as bob:
        dims_a, dims_b = await start_game(alice, bob)
        assert (dims_a.fields["side"], dims_b.fields["side"]) == ("0", "1")
        for dims in (dims_a, dims_b):
            for name in ("width", "height", "paddlewidth", "paddleheight", "paddlemargin", "paddley", "ballradius"):
                assert float(dims.fields[name]) >= 0, dims.fields
            assert dims.stanza["from"].bare == PONG
            assert dims.stanza["to"] == alice.full_jid if dims is dims_a else bob.full_jid


async def test_ball_updates_arrive_at_about_30_hz_and_are_not_stored(pong):
    pong.start()
    async with player(pong.server, "alice") as alice, player(pong.server, "bob") as bob:
        await start_game(alice, bob)
        alice.drop_pending()
        t0, count = time.monotonic(), 0
        first = None
        while time.monotonic() - t0 < 2.0:
            m = await alice.wait_pong("ballposition", timeout=1.0)
            first = first or m
            count += 1
        rate = count / (time.monotonic() - t0)
        assert 25 <= rate <= 35, f"{count} ball positions in 2 s ({rate:.1f}/s)"
        stanza = first.stanza
        assert stanza.xml.get("type") == "headline", stanza
        assert stanza.xml.find(f"{{{HINTS_NS}}}no-store") is not None, stanza
        assert stanza.xml.find(f"{{{HINTS_NS}}}no-permanent-store") is not None, stanza
        assert not stanza["body"], stanza


async def test_third_player_to_a_full_named_game_gets_conflict(pong):
    pong.start()
    async with player(pong.server, "alice") as alice, player(pong.server, "bob") as bob, \
            player(pong.server, "carol") as carol:
        await start_game(alice, bob, FRIDAY)
        carol.check_in(FRIDAY)
        err = await carol.wait_error()
        assert error_condition(err) == "conflict", err
        assert error_text(err) == "Game is currently full", err
        # ... but may watch: spectators get dimensions and the ball, and cannot move anything.
        carol.send_action(FRIDAY, "spectate")
        dims = await carol.wait_pong("dimensions")
        assert dims.fields.get("role") == "spectator", dims.fields
        await carol.wait_pong("ballposition")
        carol.move(0, to=FRIDAY)
        err = await carol.wait_error()
        assert error_condition(err) == "not-allowed", err


async def test_strangers_paddle_changes_nothing(pong):
    pong.start()
    async with player(pong.server, "alice") as alice, player(pong.server, "bob") as bob, \
            player(pong.server, "carol") as carol:
        await start_game(alice, bob, FRIDAY)
        alice.drop_pending()
        bob.drop_pending()
        carol.move(0, to=FRIDAY)
        carol.move(0, to=PONG)
        for _ in range(2):
            err = await carol.wait_error()
            assert error_condition(err) == "not-allowed", err
        # Nobody's paddle moved: no paddle update reaches either player.
        for p in (alice, bob):
            with pytest.raises(TimeoutError):
                await p.wait_pong("opponentPaddleUpdate", timeout=1.0)


async def test_malformed_numbers_get_bad_request_and_the_game_goes_on(pong):
    pong.start()
    async with player(pong.server, "alice") as alice, player(pong.server, "bob") as bob:
        await start_game(alice, bob)
        for y in ("abc", "NaN", "-5", "100000"):
            alice.send_action(PONG, "paddleposition", id=f"bad-{y}", y=y)
            err = await alice.wait_error()
            assert error_condition(err) == "bad-request", err
            assert err["id"] == f"bad-{y}", err
        alice.drop_pending()
        await alice.wait_pong("ballposition")
        with pytest.raises(TimeoutError):
            await bob.wait_pong("opponentPaddleUpdate", timeout=0.5)


# -- playing ------------------------------------------------------------------------------------
async def test_paddle_move_reaches_the_opponent_and_changes_the_ball(pong):
    pong.start(**FAST)
    async with player(pong.server, "alice") as alice, player(pong.server, "bob") as bob:
        await start_game(alice, bob, FRIDAY)
        alice.move(0, to=FRIDAY)
        updates = []
        while not updates or updates[-1] > 0:
            m = await bob.wait_pong("opponentPaddleUpdate")
            updates.append(m.num("y"))
        assert updates[0] < 250 and updates[-1] == 0, updates
        assert all(a - b <= 30.0 + 1e-6 for a, b in zip([250.0] + updates, updates)), \
            f"paddle moved faster than 30 units per tick: {updates}"
        # The first serve goes to alice (left). Tracking the ball, her paddle sends it back.
        log = []
        tracker = asyncio.create_task(track(alice, log, timeout=30))
        try:
            deadline = time.monotonic() + 20
            while not bounced_on_the_left(log):
                assert time.monotonic() < deadline, "the ball never bounced off alice's paddle"
                await asyncio.sleep(0.1)
        finally:
            tracker.cancel()
            with __import__("contextlib").suppress(asyncio.CancelledError, TimeoutError):
                await tracker


async def test_scripted_game_to_game_over_and_leaderboard(pong):
    pong.start(**FAST)
    async with player(pong.server, "alice") as alice, player(pong.server, "bob") as bob:
        await start_game(alice, bob)
        log = []
        over_a, over_b = await asyncio.gather(track(alice, log), dodge(bob))
        for over in (over_a, over_b):
            assert over.fields["winner"] == "alice@localhost", over.fields
            assert (over.fields["player1"], over.fields["player2"]) == ("2", "0"), over.fields
            assert over.fields["reason"] == "points", over.fields
            assert over.stanza["body"], "gameOver carries a human-readable body"
        scores = [m for m in log if m.action == "scoreupdate"]
        assert [(m.fields["player1"], m.fields["player2"]) for m in scores] == [("1", "0"), ("2", "0")], scores

        # Leaderboard over XMPP ...
        reply = await alice.iq(PONG, f"<leaderboard xmlns='{NS}'/>")
        assert reply["type"] == "result", reply
        rows = {r["jid"]: r for r in leaderboard_rows(reply)}
        assert rows["alice@localhost"]["wins"] == "1" and rows["alice@localhost"]["points"] == "2", rows
        assert rows["bob@localhost"]["losses"] == "1", rows
    # ... and over HTTP, where addresses are masked (nobody chose a nickname or opted in).
    board = await http_json(pong.http_port, "/leaderboard.json")
    assert board[0]["name"] == "alice@…" and board[0]["wins"] == 1 and "jid" not in board[0], board
    status, html = await asyncio.to_thread(http_get, pong.http_port, "/leaderboard")
    assert status == 200 and "alice@…" in html and "bob@…" in html and "alice@localhost" not in html


async def test_player_going_offline_forfeits(pong):
    pong.start()
    async with player(pong.server, "alice") as alice:
        async with player(pong.server, "bob") as bob:
            await start_game(alice, bob)
        # bob's session is closed: the server sends unavailable to the game.
        over = await alice.wait_pong("gameOver", timeout=10)
        assert over.fields["winner"] == "alice@localhost", over.fields
        assert over.fields["reason"] == "forfeit", over.fields
    board = await http_json(pong.http_port, "/leaderboard.json")
    assert {r["name"]: (r["wins"], r["losses"]) for r in board} == {
        "alice@…": (1, 0), "bob@…": (0, 1)}, board


async def test_idle_player_forfeits(pong):
    pong.start(idle_timeout=2)
    async with player(pong.server, "alice") as alice, player(pong.server, "bob") as bob:
        await start_game(alice, bob)

        async def keep_moving():
            y = 0
            while True:
                bob.move(y)
                y = 100 - y
                await asyncio.sleep(0.3)
        mover = asyncio.create_task(keep_moving())
        try:
            over = await alice.wait_pong("gameOver", timeout=10)
        finally:
            mover.cancel()
        assert over.fields["reason"] == "idle" and over.fields["winner"] == "bob@localhost", over.fields


async def test_restart_keeps_the_leaderboard(pong):
    pong.start()
    async with player(pong.server, "carol") as carol, player(pong.server, "dave") as dave:
        await start_game(carol, dave)
        dave.send_action(PONG, "leave")
        over = await carol.wait_pong("gameOver")
        assert over.fields["winner"] == "carol@localhost", over.fields
    before = await http_json(pong.http_port, "/leaderboard.json")
    pong.stop()
    pong.start()
    after = await http_json(pong.http_port, "/leaderboard.json")
    assert after == before and after[0]["name"] == "carol@…", (before, after)
    async with client(pong.server, "alice") as alice:
        reply = await alice.iq(PONG, f"<leaderboard xmlns='{NS}' jid='dave@localhost'/>")
        rows = leaderboard_rows(reply)
        assert rows and rows[0]["losses"] == "1", reply


async def test_result_survives_sigkill_right_after_game_over(pong):
    """The result is fsynced before gameOver is sent: a crash just after loses nothing."""
    pong.start(points_to_win=1, ball_speed=600, serve_delay=0.3)
    async with player(pong.server, "carol") as carol, player(pong.server, "dave") as dave:
        await start_game(carol, dave)
        over_c, over_d = await asyncio.gather(track(carol), dodge(dave))
        for over in (over_c, over_d):
            assert over.fields["winner"] == "carol@localhost", over.fields
            assert over.fields["reason"] == "points", over.fields
            assert over.fields.get("recorded") == "true", over.fields
        pong.crash()
    pong.start()
    board = await http_json(pong.http_port, "/leaderboard.json")
    assert {r["name"]: (r["wins"], r["losses"], r["points"]) for r in board} == {
        "carol@…": (1, 0, 1), "dave@…": (0, 1, 0)}, board
    async with client(pong.server, "alice") as alice:
        reply = await alice.iq(PONG, f"<leaderboard xmlns='{NS}' jid='carol@localhost'/>")
        rows = leaderboard_rows(reply)
        assert rows and rows[0]["wins"] == "1", reply


async def test_a_game_nobody_joins_expires(pong):
    pong.start(wait_timeout=1.5)
    async with player(pong.server, "alice") as alice:
        t0 = time.monotonic()
        alice.check_in(FRIDAY)
        await alice.wait_pong("dimensions")
        over = await alice.wait_pong("gameOver", timeout=10)
        waited = time.monotonic() - t0
        assert over.fields["reason"] == "expired", over.fields
        assert "winner" not in over.fields and "recorded" not in over.fields, over.fields
        assert 1.0 <= waited < 8, f"expired after {waited:.1f} s"
        assert FRIDAY not in await waiting_games(alice)
    metrics = await http_json(pong.http_port, "/metrics")
    assert metrics["ticks"] == 0 and metrics["games_waiting"] == 0, metrics


async def test_one_account_holds_a_bounded_number_of_games_and_match_names_are_reserved(pong):
    pong.start(max_games_per_user=2)
    async with player(pong.server, "alice", resource="r1") as a1, \
            player(pong.server, "alice", resource="r2") as a2, \
            player(pong.server, "alice", resource="r3") as a3, \
            player(pong.server, "bob") as bob:
        for p, game in ((a1, f"g1@{PONG}"), (a2, f"g2@{PONG}")):
            p.check_in(game)
            await p.wait_pong("dimensions")
        a3.check_in(f"g3@{PONG}")
        err = await a3.wait_error()
        assert error_condition(err) == "resource-constraint", err
        assert "2 games" in error_text(err), err
        # Names of matchmade games cannot be taken by a named game ...
        bob.check_in(f"match-5@{PONG}")
        err = await bob.wait_error()
        assert error_condition(err) == "not-acceptable", err
        assert "reserved" in error_text(err), err
        # ... but matchmaking still works, and its game is reachable by its address.
        bob.check_in(PONG)
        dims = await bob.wait_pong("dimensions")
        game = dims.fields["game"]
        assert game.startswith("match-"), dims.fields
        a1.send_action(PONG, "leave")           # frees a place for alice (g1 is dropped)
        deadline = time.monotonic() + 10
        while f"g1@{PONG}" in await waiting_games(a2):
            assert time.monotonic() < deadline, "g1 was not dropped after its player left"
            await asyncio.sleep(0.1)
        a3.check_in(f"{game}@{PONG}")
        dims = await a3.wait_pong("dimensions")
        assert (dims.fields["game"], dims.fields["side"]) == (game, "1"), dims.fields
        await bob.wait_pong("scoreupdate")
