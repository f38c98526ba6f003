// node --test: the page's game state, ball interpolation and the texts it shows.
import assert from "node:assert/strict";
import test from "node:test";

import { BallTrack, PADDLE_SPEED, apply, ending, newGame, scoreText, stepOwnPaddle } from "../../../../components/pong/web/game.mjs";

const dims = (extra = {}) => ({
  type: "dimensions", width: 800, height: 600, paddleWidth: 20, paddleHeight: 100, paddleMargin: 10,
  paddleY: 250, ballRadius: 3, side: 0, spectator: false, game: "friday", ...extra,
});

test("the ball is interpolated between server positions and never drawn ahead of them", () => {
  const track = new BallTrack(60);
  assert.equal(track.at(0), null);
  track.push(1000, 100, 100);
  track.push(1033, 110, 104);
  assert.deepEqual(track.at(1033 + 60), { x: 110, y: 104 }, "at the newest position");
  const mid = track.at(1016.5 + 60);
  assert.ok(Math.abs(mid.x - 105) < 1e-9 && Math.abs(mid.y - 102) < 1e-9, JSON.stringify(mid));
  assert.deepEqual(track.at(5000), { x: 110, y: 104 }, "no extrapolation past the newest position");
  assert.deepEqual(track.at(0), { x: 100, y: 100 });
  // After a point the ball jumps to the centre: drawn as a jump, not a streak across the field.
  track.push(1066, 400, 300);
  assert.deepEqual(track.at(1050 + 60), { x: 110, y: 104 });
  assert.deepEqual(track.at(1066 + 60), { x: 400, y: 300 });
});

test("server events build the state; players hear only of the other paddle", () => {
  const game = newGame("friday");
  apply(game, dims({ side: 1 }), 0);
  assert.equal(game.phase, "waiting");
  assert.equal(game.side, 1);
  assert.deepEqual(game.paddles, [250, 250]);
  apply(game, { type: "score", score: [0, 0] }, 0);
  assert.equal(game.phase, "playing");
  apply(game, { type: "paddle", y: 20, side: 0 }, 0);
  assert.deepEqual(game.paddles, [20, 250]);
  apply(game, { type: "ball", x: 1, y: 2 }, 5);
  assert.equal(game.received.ball, 1);
  apply(game, { type: "score", score: [3, 1] }, 0);
  assert.equal(scoreText(game), "1:3", "own score first");
  apply(game, { type: "over", winner: "alice@x", winnerSide: 0, score: [10, 1], reason: "points", players: ["alice@x", "bob@x"] }, 0);
  assert.equal(game.phase, "over");
  apply(game, { type: "score", score: [0, 0] }, 0);
  assert.deepEqual(game.score, [10, 1], "nothing changes after the end");
  assert.deepEqual(ending(game, "bob@x"), { headline: "You lost 1:10", detail: "against alice@x", alert: null });
});

test("a spectator sees the left player first and both paddles move", () => {
  const game = newGame("friday", { spectator: true });
  apply(game, dims({ side: null, spectator: true }), 0);
  apply(game, { type: "paddle", y: 7, side: 1 }, 0);
  assert.deepEqual(game.paddles, [250, 7]);
  apply(game, { type: "score", score: [2, 5] }, 0);
  assert.equal(scoreText(game), "2:5");
  apply(game, { type: "over", winner: "alice@x", winnerSide: 0, score: [2, 5], reason: "forfeit", players: ["alice@x", "bob@x"] }, 0);
  assert.equal(ending(game, "carol@x").alert, "bob@x left the game.");
});

test("the winner of a forfeit is told the opponent left", () => {
  const game = newGame("friday");
  apply(game, dims({ side: 0 }), 0);
  apply(game, { type: "over", winner: "alice@x", winnerSide: 0, score: [3, 1], reason: "forfeit", players: ["alice@x", "bob@x"] }, 0);
  assert.deepEqual(ending(game, "alice@x"), {
    headline: "You won 3:1", detail: "against bob@x", alert: "Your opponent left the game (bob@x).",
  });
});

test("the own paddle follows the request no faster than the server allows", () => {
  const game = newGame("friday");
  apply(game, dims(), 0);
  game.target = 0;
  stepOwnPaddle(game, 0.1);
  assert.equal(game.paddles[0], 250 - PADDLE_SPEED * 0.1);
  stepOwnPaddle(game, 1);
  assert.equal(game.paddles[0], 0);
});
