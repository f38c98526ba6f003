// Draws the game on the canvas in the book's look (white field, blue paddles, red ball,
// score at the top), scaled to the canvas's size on screen and sharp on any pixel ratio.
import { scoreText } from "./game.mjs";

const OWN = "#1f5fd6";
const PADDLE = "#306EFF";

export class View {
  constructor(canvas) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
  }

  /** Sizes the canvas's pixels to its box (the box itself is sized by CSS). */
  fit(field) {
    const ratio = field ? field.width / field.height : 4 / 3;
    const box = this.canvas.parentElement.getBoundingClientRect();
    // Leave room below for one line of controls.
    const top = this.canvas.getBoundingClientRect().top + window.scrollY;
    const maxHeight = Math.max(160, window.innerHeight - top - 56);
    const width = Math.max(200, Math.min(box.width, maxHeight * ratio));
    this.canvas.style.width = `${Math.floor(width)}px`;
    this.canvas.style.height = `${Math.floor(width / ratio)}px`;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.floor(width * dpr);
    this.canvas.height = Math.floor((width / ratio) * dpr);
  }

  /** Field units per CSS pixel (for turning pointer positions into field positions). */
  unitsPerPixel(field) {
    const rect = this.canvas.getBoundingClientRect();
    return field && rect.height > 0 ? field.height / rect.height : 1;
  }

  draw(state, now) {
    const { context: c, canvas } = this;
    const f = state.field;
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.clearRect(0, 0, canvas.width, canvas.height);
    if (!f) return;
    const scale = canvas.width / f.width;
    c.setTransform(scale, 0, 0, scale, 0, 0);
    c.fillStyle = "#ffffff";
    c.fillRect(0, 0, f.width, f.height);
    c.strokeStyle = "#000000";
    c.lineWidth = 2 / scale;
    c.strokeRect(0, 0, f.width, f.height);
    c.setLineDash([10, 10]);
    c.strokeStyle = "#c8c8c8";
    c.beginPath();
    c.moveTo(f.width / 2, 0);
    c.lineTo(f.width / 2, f.height);
    c.stroke();
    c.setLineDash([]);

    for (const side of [0, 1]) {
      const x = side === 0 ? f.paddleMargin : f.width - f.paddleMargin - f.paddleWidth;
      const own = side === state.side;
      c.fillStyle = own ? OWN : PADDLE;
      c.fillRect(x, state.paddles[side], f.paddleWidth, f.paddleHeight);
      if (own) {
        c.strokeStyle = "#0b2f7a";
        c.lineWidth = 3;
        c.strokeRect(x, state.paddles[side], f.paddleWidth, f.paddleHeight);
      }
    }

    c.fillStyle = "#000000";
    c.font = "36px system-ui, Arial, sans-serif";
    const [s1, s2] = state.score.map(String);
    c.textAlign = "right";
    c.fillText(s1, f.width / 2 - 40, 48);
    c.textAlign = "left";
    c.fillText(s2, f.width / 2 + 40, 48);
    c.font = "18px system-ui, Arial, sans-serif";
    if (state.side !== null) {
      c.textAlign = state.side === 0 ? "left" : "right";
      c.fillStyle = OWN;
      c.fillText("you", state.side === 0 ? 40 : f.width - 40, 30);
    }

    const ball = state.phase === "playing" ? state.ball.at(now) : null;
    if (ball) {
      const r = Math.max(f.ballRadius, 6);
      c.beginPath();
      c.arc(ball.x, ball.y, r, 0, Math.PI * 2);
      c.fillStyle = "#C11B17";
      c.fill();
      c.strokeStyle = "#9F000F";
      c.lineWidth = 2;
      c.stroke();
    }

    if (state.phase === "waiting" || state.phase === "over") {
      const text = state.phase === "waiting" ? "Waiting for an opponent…" : `Game over ${scoreText(state)}`;
      c.font = "28px system-ui, Arial, sans-serif";
      const width = c.measureText(text).width + 48;
      c.fillStyle = "rgba(31,35,40,0.85)";
      c.fillRect((f.width - width) / 2, f.height / 2 - 30, width, 56);
      c.fillStyle = "#ffffff";
      c.textAlign = "center";
      c.fillText(text, f.width / 2, f.height / 2 + 8);
    }
  }
}
