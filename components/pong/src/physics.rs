//! Pong physics: a pure, deterministic model of the field, the paddles and the ball.
//!
//! Nothing here knows about XMPP, tasks or time sources: [`Ball::advance`] moves the ball
//! by one fixed step of `dt` seconds against two paddle positions and reports what
//! happened. Collisions are swept (continuous), not sampled: the ball's path during the
//! step is intersected with the walls, the paddle faces and the goal lines in time order,
//! so a ball that moves farther than a paddle's width in one step still bounces instead of
//! tunnelling through it.
//!
//! Coordinates are field units: `x` grows to the right, `y` grows downwards (as on a
//! canvas), a paddle's position is the `y` of its top edge.

use std::f64::consts::PI;

/// Which paddle: 0 = left (player 1), 1 = right (player 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Player 1, paddle at the left edge.
    Left,
    /// Player 2, paddle at the right edge.
    Right,
}

impl Side {
    /// 0 for left, 1 for right (the wire value of `<side>`).
    pub fn index(self) -> usize {
        match self {
            Side::Left => 0,
            Side::Right => 1,
        }
    }

    /// The other side.
    pub fn opponent(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }

    /// The side for a wire index (0 or 1).
    pub fn from_index(index: usize) -> Option<Side> {
        match index {
            0 => Some(Side::Left),
            1 => Some(Side::Right),
            _ => None,
        }
    }
}

/// The fixed geometry and ball dynamics of a game.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Field width.
    pub width: f64,
    /// Field height.
    pub height: f64,
    /// Paddle thickness (x extent).
    pub paddle_width: f64,
    /// Paddle length (y extent).
    pub paddle_height: f64,
    /// Gap between a field edge and the back of its paddle.
    pub paddle_margin: f64,
    /// Ball radius.
    pub ball_radius: f64,
    /// Serve speed, units per second.
    pub serve_speed: f64,
    /// Speed factor applied on every paddle hit (the rally speeds up gently).
    pub speedup: f64,
    /// Upper bound of the ball speed, units per second.
    pub max_speed: f64,
    /// Largest bounce angle off a paddle (radians from the horizontal), reached at its ends.
    pub max_bounce_angle: f64,
}

impl Default for Field {
    /// The book's field (800 × 600, paddles 20 × 100 at margin 10, ball radius 3) with a
    /// serve at 360 units/s, +5 % per hit, at most 1500 units/s, bounce angle up to 60°.
    fn default() -> Self {
        Field {
            width: 800.0,
            height: 600.0,
            paddle_width: 20.0,
            paddle_height: 100.0,
            paddle_margin: 10.0,
            ball_radius: 3.0,
            serve_speed: 360.0,
            speedup: 1.05,
            max_speed: 1500.0,
            max_bounce_angle: PI / 3.0,
        }
    }
}

impl Field {
    /// Largest paddle `y` (its top edge) that keeps the paddle inside the field.
    pub fn paddle_max_y(&self) -> f64 {
        (self.height - self.paddle_height).max(0.0)
    }

    /// A paddle position clamped into the field.
    pub fn clamp_paddle(&self, y: f64) -> f64 {
        y.clamp(0.0, self.paddle_max_y())
    }

    /// Where both paddles start: centred vertically.
    pub fn paddle_start(&self) -> f64 {
        self.paddle_max_y() / 2.0
    }

    /// The x of the face a ball hits: the right edge of the left paddle, the left edge
    /// of the right paddle.
    pub fn face_x(&self, side: Side) -> f64 {
        match side {
            Side::Left => self.paddle_margin + self.paddle_width,
            Side::Right => self.width - self.paddle_margin - self.paddle_width,
        }
    }
}

/// What happened during one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Nothing but flight (and perhaps wall bounces).
    None,
    /// The ball bounced off this side's paddle.
    Hit(Side),
    /// The ball passed this side's goal line: the *other* side scores.
    Missed(Side),
}

/// The ball: position and velocity (units per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ball {
    /// Centre x.
    pub x: f64,
    /// Centre y.
    pub y: f64,
    /// Horizontal velocity, units per second.
    pub vx: f64,
    /// Vertical velocity, units per second.
    pub vy: f64,
}

/// Upper bound on collisions resolved in one step; a legal field needs at most a handful
/// (two walls and a paddle), so this only guards against degenerate geometry.
const MAX_COLLISIONS_PER_STEP: usize = 8;

/// Tolerance for "already touching" comparisons, in field units.
const EPSILON: f64 = 1e-9;

/// How far a ball that missed a paddle is moved past its face, so the face (tested
/// with [`EPSILON`] tolerance) is not found again; far below anything visible.
const PAST_FACE: f64 = 1e-6;

impl Ball {
    /// A ball resting at the centre of the field.
    pub fn centre(field: &Field) -> Ball {
        Ball {
            x: field.width / 2.0,
            y: field.height / 2.0,
            vx: 0.0,
            vy: 0.0,
        }
    }

    /// A ball served from the centre towards `towards` at the serve speed, `angle`
    /// radians off the horizontal (positive = downwards); the angle is clamped to the
    /// paddle bounce range so a serve is always playable.
    pub fn serve(field: &Field, towards: Side, angle: f64) -> Ball {
        let angle = angle.clamp(-field.max_bounce_angle, field.max_bounce_angle);
        let direction = match towards {
            Side::Left => -1.0,
            Side::Right => 1.0,
        };
        Ball {
            vx: direction * field.serve_speed * angle.cos(),
            vy: field.serve_speed * angle.sin(),
            ..Ball::centre(field)
        }
    }

    /// Current speed, units per second.
    pub fn speed(&self) -> f64 {
        self.vx.hypot(self.vy)
    }

    /// Moves the ball by `dt` seconds against paddles at `paddles[side]` (top edges).
    ///
    /// Bounces off the top and bottom walls and the paddle faces are resolved in the order
    /// they happen within the step. Hitting a paddle sends the ball back at an angle that
    /// depends on where it hit (centre = straight, ends = `max_bounce_angle`) and a little
    /// faster. A ball whose edge reaches a goal line stops there and the step reports
    /// [`Event::Missed`]; the caller re-serves.
    pub fn advance(&mut self, field: &Field, paddles: [f64; 2], dt: f64) -> Event {
        let r = field.ball_radius;
        let mut remaining = dt.max(0.0);
        let mut event = Event::None;
        for _ in 0..MAX_COLLISIONS_PER_STEP {
            if remaining <= 0.0 {
                break;
            }
            let Some((t, what)) = self.next_collision(field, remaining) else {
                self.x += self.vx * remaining;
                self.y += self.vy * remaining;
                break;
            };
            self.x += self.vx * t;
            self.y += self.vy * t;
            remaining -= t;
            match what {
                Collision::Top => {
                    self.y = r;
                    self.vy = self.vy.abs();
                }
                Collision::Bottom => {
                    self.y = field.height - r;
                    self.vy = -self.vy.abs();
                }
                Collision::Face(side) => {
                    let top = paddles[side.index()];
                    let bottom = top + field.paddle_height;
                    if self.y + r >= top && self.y - r <= bottom {
                        self.bounce_off_paddle(field, side, top);
                        event = Event::Hit(side);
                    } else {
                        // Missed the paddle: fly on behind it; the goal line is next.
                        // Nudge past the face so the same face is not found again.
                        let nudge = match side {
                            Side::Left => -PAST_FACE,
                            Side::Right => PAST_FACE,
                        };
                        self.x += nudge;
                    }
                }
                Collision::Goal(side) => return Event::Missed(side),
            }
        }
        // Never leave the field vertically, whatever rounding did.
        self.y = self.y.clamp(
            r.min(field.height / 2.0),
            (field.height - r).max(field.height / 2.0),
        );
        event
    }

    fn bounce_off_paddle(&mut self, field: &Field, side: Side, top: f64) {
        let r = field.ball_radius;
        let half = field.paddle_height / 2.0 + r;
        let offset = if half > 0.0 {
            ((self.y - (top + field.paddle_height / 2.0)) / half).clamp(-1.0, 1.0)
        } else {
            0.0
        };
        let angle = offset * field.max_bounce_angle;
        let speed = (self.speed() * field.speedup).min(field.max_speed);
        let direction = match side {
            Side::Left => 1.0,
            Side::Right => -1.0,
        };
        self.vx = direction * speed * angle.cos();
        self.vy = speed * angle.sin();
        self.x = field.face_x(side) + direction * r;
    }

    /// The earliest collision within `within` seconds: (time, what).
    fn next_collision(&self, field: &Field, within: f64) -> Option<(f64, Collision)> {
        let r = field.ball_radius;
        let mut best: Option<(f64, Collision)> = None;
        let mut consider = |t: f64, what: Collision| {
            if (0.0..=within).contains(&t) && best.is_none_or(|(b, _)| t < b) {
                best = Some((t, what));
            }
        };
        if self.vy < 0.0 {
            consider(((r - self.y) / self.vy).max(0.0), Collision::Top);
        } else if self.vy > 0.0 {
            consider(
                ((field.height - r - self.y) / self.vy).max(0.0),
                Collision::Bottom,
            );
        }
        if self.vx < 0.0 {
            let face = field.face_x(Side::Left) + r;
            if self.x >= face - EPSILON {
                consider(
                    ((face - self.x) / self.vx).max(0.0),
                    Collision::Face(Side::Left),
                );
            }
            consider(
                ((r - self.x) / self.vx).max(0.0),
                Collision::Goal(Side::Left),
            );
        } else if self.vx > 0.0 {
            let face = field.face_x(Side::Right) - r;
            if self.x <= face + EPSILON {
                consider(
                    ((face - self.x) / self.vx).max(0.0),
                    Collision::Face(Side::Right),
                );
            }
            consider(
                ((field.width - r - self.x) / self.vx).max(0.0),
                Collision::Goal(Side::Right),
            );
        }
        best
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collision {
    Top,
    Bottom,
    Face(Side),
    Goal(Side),
}

/// Moves a paddle from `current` towards `target` by at most `max_step`, inside the field.
pub fn step_paddle(field: &Field, current: f64, target: f64, max_step: f64) -> f64 {
    let target = field.clamp_paddle(target);
    let delta = (target - current).clamp(-max_step, max_step);
    field.clamp_paddle(current + delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DT: f64 = 1.0 / 30.0;

    fn field() -> Field {
        Field::default()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// Paddles far away from the ball's path (top and bottom).
    const AWAY: [f64; 2] = [0.0, 500.0];

    #[test]
    fn flies_straight_without_collisions() {
        let f = field();
        let mut ball = Ball {
            x: 400.0,
            y: 300.0,
            vx: 300.0,
            vy: -150.0,
        };
        assert_eq!(ball.advance(&f, AWAY, DT), Event::None);
        assert!(close(ball.x, 410.0) && close(ball.y, 295.0), "{ball:?}");
    }

    #[test]
    fn reflects_off_the_top_and_bottom_walls() {
        let f = field();
        // 10 units below the top, moving up 30 units this step: 7 to the wall contact
        // point (radius 3), then 23 back down.
        let mut ball = Ball {
            x: 400.0,
            y: 10.0,
            vx: 0.0,
            vy: -900.0,
        };
        ball.advance(&f, AWAY, DT);
        assert!(close(ball.y, 3.0 + 23.0), "{ball:?}");
        assert!(ball.vy > 0.0);
        let mut ball = Ball {
            x: 400.0,
            y: 590.0,
            vx: 0.0,
            vy: 900.0,
        };
        ball.advance(&f, AWAY, DT);
        assert!(close(ball.y, 597.0 - 23.0), "{ball:?}");
        assert!(ball.vy < 0.0);
        // Speed is kept by a wall bounce.
        assert!(close(ball.speed(), 900.0));
    }

    #[test]
    fn corner_bounces_off_wall_and_paddle_in_one_step() {
        let f = field();
        // Heading up-left into the top-left corner where the left paddle sits at the top.
        let mut ball = Ball {
            x: 40.0,
            y: 12.0,
            vx: -300.0,
            vy: -300.0,
        };
        let event = ball.advance(&f, [0.0, 250.0], DT);
        assert_eq!(event, Event::Hit(Side::Left), "{ball:?}");
        assert!(ball.vx > 0.0, "bounced back right: {ball:?}");
        assert!(ball.y >= f.ball_radius && ball.x >= f.face_x(Side::Left) + f.ball_radius - 1e-6);
    }

    #[test]
    fn grazing_the_paddle_corner_still_bounces_at_the_steepest_angle() {
        let f = field();
        // The ball's centre passes 2 units above the paddle's top edge: its radius (3)
        // still overlaps the corner.
        let top = 300.0;
        let mut ball = Ball {
            x: 40.0,
            y: top - 2.0,
            vx: -600.0,
            vy: 0.0,
        };
        assert_eq!(ball.advance(&f, [top, 0.0], DT), Event::Hit(Side::Left));
        assert!(
            ball.vx > 0.0 && ball.vy < 0.0,
            "deflected up and back: {ball:?}"
        );
        let angle = (-ball.vy).atan2(ball.vx);
        assert!((angle - f.max_bounce_angle).abs() < 0.05, "angle {angle}");
        // Just beyond the radius: a miss.
        let mut ball = Ball {
            x: 40.0,
            y: top - 3.5,
            vx: -600.0,
            vy: 0.0,
        };
        assert_eq!(ball.advance(&f, [top, 0.0], DT), Event::None);
        assert!(ball.vx < 0.0, "{ball:?}");
    }

    #[test]
    fn fast_ball_does_not_tunnel_through_a_paddle() {
        let f = field();
        // 1500 units/s = 50 units per step, more than twice the paddle's width (20):
        // sampled positions would jump from in front of the paddle to behind it.
        let top = 250.0;
        let mut ball = Ball {
            x: f.face_x(Side::Left) + 30.0,
            y: 300.0,
            vx: -1500.0,
            vy: 0.0,
        };
        let event = ball.advance(&f, [top, 0.0], DT);
        assert_eq!(event, Event::Hit(Side::Left));
        assert!(ball.vx > 0.0);
        assert!(
            ball.x >= f.face_x(Side::Left) + f.ball_radius - 1e-6,
            "{ball:?}"
        );
        // Same on the right, even faster than the speed cap allows in play.
        let mut ball = Ball {
            x: f.face_x(Side::Right) - 10.0,
            y: 300.0,
            vx: 6000.0,
            vy: 0.0,
        };
        assert_eq!(ball.advance(&f, [0.0, top], DT), Event::Hit(Side::Right));
        assert!(ball.vx < 0.0 && ball.x <= f.face_x(Side::Right) - f.ball_radius + 1e-6);
    }

    #[test]
    fn missing_the_paddle_reaches_the_goal_line() {
        let f = field();
        let mut ball = Ball {
            x: 50.0,
            y: 300.0,
            vx: -1500.0,
            vy: 0.0,
        };
        assert_eq!(ball.advance(&f, [0.0, 0.0], DT), Event::Missed(Side::Left));
        assert!(close(ball.x, f.ball_radius));
        let mut ball = Ball {
            x: 760.0,
            y: 300.0,
            vx: 1500.0,
            vy: 0.0,
        };
        assert_eq!(ball.advance(&f, [0.0, 0.0], DT), Event::Missed(Side::Right));
    }

    #[test]
    fn hit_angle_depends_on_where_the_paddle_is_hit() {
        let f = field();
        let top = 250.0;
        let angle_after = |y: f64| {
            let mut ball = Ball {
                x: 40.0,
                y,
                vx: -300.0,
                vy: 0.0,
            };
            assert_eq!(ball.advance(&f, [top, 0.0], DT), Event::Hit(Side::Left));
            ball.vy.atan2(ball.vx)
        };
        let centre = angle_after(top + 50.0);
        let lower = angle_after(top + 75.0);
        let upper = angle_after(top + 25.0);
        assert!(
            centre.abs() < 1e-9,
            "centre hit goes straight back: {centre}"
        );
        assert!(
            lower > 0.2 && upper < -0.2,
            "lower half goes down, upper half up"
        );
        assert!(close(lower, -upper), "symmetric");
        assert!(
            angle_after(top + 99.0) > lower,
            "the farther out, the steeper"
        );
    }

    #[test]
    fn rally_speeds_up_gently_up_to_the_cap() {
        let f = field();
        let mut ball = Ball {
            x: 40.0,
            y: 300.0,
            vx: -360.0,
            vy: 0.0,
        };
        ball.advance(&f, [250.0, 250.0], DT);
        assert!(close(ball.speed(), 360.0 * f.speedup), "{}", ball.speed());
        let mut fast = Ball {
            x: 60.0,
            y: 300.0,
            vx: -f.max_speed,
            vy: 0.0,
        };
        fast.advance(&f, [250.0, 250.0], DT);
        assert!(close(fast.speed(), f.max_speed));
    }

    #[test]
    fn a_long_rally_between_perfect_players_never_leaves_the_field() {
        let f = field();
        let mut ball = Ball::serve(&f, Side::Left, 0.4);
        let mut hits = 0;
        for _ in 0..30 * 120 {
            // Both paddles track the ball perfectly.
            let p = f.clamp_paddle(ball.y - f.paddle_height / 2.0);
            match ball.advance(&f, [p, p], DT) {
                Event::Missed(side) => panic!("perfect player {side:?} missed: {ball:?}"),
                Event::Hit(_) => hits += 1,
                Event::None => {}
            }
            assert!(ball.x >= 0.0 && ball.x <= f.width && ball.y >= 0.0 && ball.y <= f.height);
        }
        assert!(hits > 20, "only {hits} hits");
        assert!(ball.speed() <= f.max_speed + 1e-6);
    }

    #[test]
    fn serve_goes_towards_the_given_side_and_clamps_the_angle() {
        let f = field();
        let left = Ball::serve(&f, Side::Left, 0.0);
        assert!(left.vx < 0.0 && close(left.x, 400.0) && close(left.y, 300.0));
        let right = Ball::serve(&f, Side::Right, 10.0);
        assert!(right.vx > 0.0);
        assert!(close(right.vy.atan2(right.vx), f.max_bounce_angle));
    }

    #[test]
    fn paddles_are_clamped_and_speed_limited() {
        let f = field();
        assert_eq!(step_paddle(&f, 250.0, 0.0, 30.0), 220.0);
        assert_eq!(step_paddle(&f, 250.0, 260.0, 30.0), 260.0);
        assert_eq!(step_paddle(&f, 490.0, 600.0, 30.0), 500.0);
        assert_eq!(step_paddle(&f, 10.0, -100.0, 30.0), 0.0);
    }
}
