// The game as this page knows it, built only from what the server said (protocol.mjs
// events) plus the player's own paddle request. Pure: no DOM, no clock of its own.

/** The server's default paddle speed limit (30 units per tick at 30 Hz), in units/s. */
export const PADDLE_SPEED = 900;

/**
 * Ball positions as they arrived, drawn `delayMs` in the past so there are always two
 * server positions to interpolate between: the ball moves smoothly between the 30 Hz
 * updates and is never drawn where the server has not put it. A jump longer than `snap`
 * (a serve from the centre after a point) is drawn as a jump.
 */
export class BallTrack {
  constructor(delayMs = 60, snap = 120) {
    this.delayMs = delayMs;
    this.snap = snap;
    this.samples = [];
  }

  push(t, x, y) {
    this.samples.push({ t, x, y });
    if (this.samples.length > 16) this.samples.shift();
  }

  clear() {
    this.samples = [];
  }

  /** Where to draw the ball at time `t`, or null before the first position. */
  at(t) {
    const s = this.samples;
    if (s.length === 0) return null;
    const when = t - this.delayMs;
    if (when <= s[0].t) return { x: s[0].x, y: s[0].y };
    for (let i = s.length - 1; i > 0; i--) {
      const a = s[i - 1];
      const b = s[i];
      if (when >= a.t && when < b.t) {
        if (Math.hypot(b.x - a.x, b.y - a.y) > this.snap) return { x: a.x, y: a.y };
        const f = (when - a.t) / (b.t - a.t);
        return { x: a.x + (b.x - a.x) * f, y: a.y + (b.y - a.y) * f };
      }
    }
    const last = s[s.length - 1];
    return { x: last.x, y: last.y };
  }
}

/** A fresh game state for `name` ("" = matchmaking), as a player or a spectator. */
export function newGame(name, { spectator = false } = {}) {
  return {
    name,
    spectator,
    phase: "joining", // joining → waiting → playing → over
    field: null,
    side: null,
    paddles: [0, 0],
    target: null, // where this player wants their paddle (players only)
    score: [0, 0],
    ball: new BallTrack(),
    over: null,
    received: { dimensions: 0, ball: 0, paddle: 0, score: 0, over: 0 },
  };
}

/** Applies one decoded server event at time `now` (ms). Returns the state. */
export function apply(state, event, now) {
  if (!event || state.phase === "over") return state;
  switch (event.type) {
    case "dimensions":
      state.received.dimensions++;
      state.field = event;
      state.name = event.game ?? state.name;
      state.spectator = event.spectator;
      state.side = event.spectator ? null : event.side;
      state.paddles = [event.paddleY, event.paddleY];
      state.target = state.side === null ? null : event.paddleY;
      if (state.phase === "joining") state.phase = "waiting";
      break;
    case "ball":
      state.received.ball++;
      state.ball.push(now, event.x, event.y);
      break;
    case "paddle": {
      state.received.paddle++;
      // Players are told only about the other paddle; spectators about both.
      const side = state.side !== null ? 1 - state.side : event.side;
      if (side === 0 || side === 1) state.paddles[side] = event.y;
      break;
    }
    case "score":
      state.received.score++;
      state.score = event.score;
      if (state.phase === "waiting" || state.phase === "joining") state.phase = "playing";
      break;
    case "over":
      state.received.over++;
      state.score = event.score;
      state.over = event;
      state.phase = "over";
      break;
    default:
      break;
  }
  return state;
}

/** Moves this player's drawn paddle towards their request, as fast as the server allows. */
export function stepOwnPaddle(state, dtSeconds) {
  if (state.side === null || state.target === null) return;
  const y = state.paddles[state.side];
  const step = PADDLE_SPEED * dtSeconds;
  state.paddles[state.side] = y + Math.max(-step, Math.min(step, state.target - y));
}

/** The highest top edge a paddle may have. */
export function paddleMax(state) {
  return state.field ? state.field.height - state.field.paddleHeight : 0;
}

/** The score as "N:M": the player's own first, for a spectator the left player's first. */
export function scoreText(state) {
  const [a, b] = state.score;
  return state.side === 1 ? `${b}:${a}` : `${a}:${b}`;
}

/**
 * The end of a game told to a person: {headline, detail, alert}. `alert` is set when
 * something went wrong (the opponent left, the server stopped).
 */
export function ending(state, myBareJid) {
  const over = state.over;
  if (!over) return null;
  const score = scoreText(state);
  const [p1, p2] = over.players;
  if (state.side === null) {
    const names = `${p1 ?? "player 1"} vs ${p2 ?? "player 2"}`;
    const headline = over.winner ? `${over.winner} won ${Math.max(...over.score)}:${Math.min(...over.score)}` : `No winner (${score})`;
    const left = over.reason === "forfeit" ? `${over.winnerSide === 0 ? p2 ?? "player 2" : p1 ?? "player 1"} left the game.` : null;
    return { headline, detail: names, alert: left };
  }
  const opponent = over.players[1 - state.side] ?? "your opponent";
  const won = over.winnerSide === state.side || (over.winnerSide === null && over.winner === myBareJid);
  const headline = over.winner === null ? `No winner ${score}` : won ? `You won ${score}` : `You lost ${score}`;
  const detail = `against ${opponent}`;
  let alert = null;
  if (over.reason === "forfeit" && won) alert = `Your opponent left the game (${opponent}).`;
  else if (over.reason === "forfeit") alert = "You left the game.";
  else if (over.reason === "idle") alert = won ? "Your opponent stopped playing." : "You did not move for too long.";
  else if (over.reason === "abandoned") alert = "Nobody moved for too long: the game was abandoned.";
  else if (over.reason === "shutdown") alert = "The game server is shutting down.";
  return { headline, detail, alert };
}
