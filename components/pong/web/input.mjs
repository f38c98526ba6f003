// The player's paddle request from the mouse or touch (the paddle's centre follows the
// pointer over the field) and the keyboard (ArrowUp/ArrowDown, W/S move it at KEY_SPEED).
// The request is read once per animation frame by the page, which sends it only when it
// changed.

/** Keyboard paddle speed, field units per second. */
export const KEY_SPEED = 600;

const UP = new Set(["ArrowUp", "w", "W"]);
const DOWN = new Set(["ArrowDown", "s", "S"]);

export class PaddleInput {
  /**
   * `canvas`: where the pointer counts; `toField(clientY)`: a pointer position in field
   * units (or null when there is no field yet).
   */
  constructor(canvas, toField) {
    this.canvas = canvas;
    this.toField = toField;
    this.up = false;
    this.down = false;
    this.pointerY = null;
    this.enabled = false;
    this.onKey = (event) => this.#key(event);
    this.onPointer = (event) => this.#pointer(event);
    window.addEventListener("keydown", this.onKey);
    window.addEventListener("keyup", this.onKey);
    window.addEventListener("blur", () => {
      this.up = false;
      this.down = false;
    });
    canvas.addEventListener("pointermove", this.onPointer);
    canvas.addEventListener("pointerdown", this.onPointer);
  }

  /** Only while playing: keys then belong to the paddle (and do not scroll the page). */
  setEnabled(enabled) {
    this.enabled = enabled;
    this.up = false;
    this.down = false;
    this.pointerY = null;
  }

  #key(event) {
    if (!this.enabled || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target instanceof HTMLInputElement) return;
    const pressed = event.type === "keydown";
    if (UP.has(event.key)) this.up = pressed;
    else if (DOWN.has(event.key)) this.down = pressed;
    else return;
    event.preventDefault();
  }

  #pointer(event) {
    if (!this.enabled) return;
    const y = this.toField(event.clientY);
    if (y !== null) this.pointerY = y;
  }

  /**
   * The new top edge for a paddle now at `current`, `height` tall, after `dt` seconds,
   * within [0, max]; `current` when there is no input.
   */
  next(current, height, max, dt) {
    let y = current;
    if (this.pointerY !== null) {
      y = this.pointerY - height / 2;
      this.pointerY = null;
    }
    const direction = (this.down ? 1 : 0) - (this.up ? 1 : 0);
    y += direction * KEY_SPEED * dt;
    return Math.max(0, Math.min(max, y));
  }
}
