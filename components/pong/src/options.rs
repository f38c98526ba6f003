//! The game server's own options, declared once: flags, environment and the same keys in
//! the framework's `--config` TOML file (unknown keys are refused there), validated into
//! [`Options`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::game::Settings;
use crate::physics::Field;
use crate::web;

/// The game server's flags, and the same keys in the `--config` file.
#[derive(Debug, Default, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PongArgs {
    /// Serve the leaderboard (/leaderboard, /leaderboard.json) and /metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Directory of the leaderboard database (sled); without it the leaderboard lives in
    /// memory only.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Game ticks per second [default: 30].
    #[arg(long, value_name = "HZ")]
    pub tick_hz: Option<u32>,
    /// Points that win a game [default: 10].
    #[arg(long, value_name = "N")]
    pub points_to_win: Option<u32>,
    /// Seconds without input after which a player forfeits [default: 60].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<f64>,
    /// Seconds a game waits for its second player before it ends (`expired`)
    /// [default: 600].
    #[arg(long, value_name = "SECS")]
    pub wait_timeout: Option<f64>,
    /// Largest paddle movement per tick, in field units (faster requests are clamped)
    /// [default: 30].
    #[arg(long, value_name = "UNITS")]
    pub max_paddle_speed: Option<f64>,
    /// Serve speed of the ball, field units per second [default: 360].
    #[arg(long, value_name = "UNITS")]
    pub ball_speed: Option<f64>,
    /// Seconds between a point and the next serve [default: 1].
    #[arg(long, value_name = "SECS")]
    pub serve_delay: Option<f64>,
    /// Most spectators per game [default: 64].
    #[arg(long, value_name = "N")]
    pub max_spectators: Option<usize>,
    /// Most games one account (bare JID) plays in at once, from all its resources
    /// [default: 3].
    #[arg(long, value_name = "N")]
    pub max_games_per_user: Option<usize>,
    /// Most games (waiting or running) on the server at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_games: Option<usize>,
    /// The XMPP server's WebSocket endpoint (RFC 7395) that the web client at `/` logs in
    /// through, e.g. wss://xmpp.example.org/xmpp-websocket (Prosody mod_websocket, ejabberd
    /// ejabberd_http_ws) [default: ws://127.0.0.1:5280/xmpp-websocket].
    #[arg(long, env = "XMPP_PONG_WEBSOCKET_URL", value_name = "URL")]
    pub websocket_url: Option<String>,
    /// The web client's address as people reach it, told to those who chat with the game
    /// server [default: http://<--http>/].
    #[arg(long, env = "XMPP_PONG_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
}

/// Validated options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The game rules and limits.
    pub settings: Settings,
    /// Where HTTP listens, if anywhere.
    pub http: Option<SocketAddr>,
    /// The leaderboard database directory; `None` keeps it in memory.
    pub data: Option<PathBuf>,
    /// The WebSocket endpoint the browser client logs in through.
    pub websocket_url: String,
    /// The web client's public address, told to people who chat with the server.
    pub public_url: Option<String>,
}

/// An option with a value it cannot take: `--{flag}: {why}`.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {why}")]
pub struct BadOption {
    /// The option's name.
    pub flag: &'static str,
    /// What is wrong.
    pub why: String,
}

impl From<BadOption> for xmpp_component::Error {
    fn from(bad: BadOption) -> Self {
        xmpp_component::Error::Config(bad.to_string())
    }
}

fn bad<T>(flag: &'static str, why: impl Into<String>) -> Result<T, BadOption> {
    Err(BadOption {
        flag,
        why: why.into(),
    })
}

impl PongArgs {
    /// Applies defaults and checks every value; the error names the option.
    pub fn validate(self) -> Result<Options, BadOption> {
        let defaults = Settings::default();
        let tick_hz = self.tick_hz.unwrap_or(defaults.tick_hz);
        if !(1..=1000).contains(&tick_hz) {
            return bad("tick-hz", "must be from 1 to 1000");
        }
        let points_to_win = self.points_to_win.unwrap_or(defaults.points_to_win);
        if points_to_win == 0 {
            return bad("points-to-win", "must be at least 1");
        }
        let positive = |flag, value: Option<f64>, default: Duration| match value
            .map_or(Some(default), |v| Duration::try_from_secs_f64(v).ok())
        {
            Some(d) if !d.is_zero() => Ok(d),
            _ => bad(flag, "must be a positive number of seconds"),
        };
        let idle_timeout = positive("idle-timeout", self.idle_timeout, defaults.idle_timeout)?;
        let wait_timeout = positive("wait-timeout", self.wait_timeout, defaults.wait_timeout)?;
        let Some(serve_delay) = self.serve_delay.map_or(Some(defaults.serve_delay), |v| {
            Duration::try_from_secs_f64(v).ok()
        }) else {
            return bad(
                "serve-delay",
                "must be zero or a positive number of seconds",
            );
        };
        let max_paddle_step = self.max_paddle_speed.unwrap_or(defaults.max_paddle_step);
        if !(max_paddle_step.is_finite() && max_paddle_step > 0.0) {
            return bad("max-paddle-speed", "must be a positive number");
        }
        let field = Field::default();
        let ball_speed = self.ball_speed.unwrap_or(field.serve_speed);
        if !(ball_speed.is_finite() && ball_speed > 0.0 && ball_speed <= field.max_speed) {
            return bad("ball-speed", "must be positive and at most 1500");
        }
        let max_games_per_user = self
            .max_games_per_user
            .unwrap_or(defaults.max_games_per_user);
        if max_games_per_user == 0 {
            return bad("max-games-per-user", "must be at least 1");
        }
        let max_games = self.max_games.unwrap_or(defaults.max_games);
        if max_games == 0 {
            return bad("max-games", "must be at least 1");
        }
        let websocket_url = self
            .websocket_url
            .unwrap_or_else(|| web::DEFAULT_WEBSOCKET_URL.to_owned());
        if let Err(why) = web::check_websocket_url(&websocket_url) {
            return bad("websocket-url", format!("{websocket_url:?} {why}"));
        }
        let public_url = match self.public_url {
            Some(url) => Some(url),
            None => self.http.map(|addr| format!("http://{addr}/")),
        };
        let public_url = match public_url {
            Some(url) => Some(checked_public_url(&url)?),
            None => None,
        };
        Ok(Options {
            settings: Settings {
                field: Field {
                    serve_speed: ball_speed,
                    ..field
                },
                tick_hz,
                points_to_win,
                idle_timeout,
                wait_timeout,
                max_paddle_step,
                serve_delay,
                max_spectators: self.max_spectators.unwrap_or(defaults.max_spectators),
                max_games_per_user,
                max_games,
            },
            http: self.http,
            data: self.data,
            websocket_url,
            public_url,
        })
    }
}

/// `--public-url`: an http(s) URL, with one trailing slash, nothing that breaks a page.
fn checked_public_url(url: &str) -> Result<String, BadOption> {
    let url = format!("{}/", url.trim_end_matches('/'));
    let plain = url.starts_with("http://") || url.starts_with("https://");
    if plain && !url.contains(|c: char| c.is_whitespace() || "\"'<>?#".contains(c)) {
        Ok(url)
    } else {
        bad(
            "public-url",
            format!("{url:?} must be an http:// or https:// URL"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_each_refusal_names_its_option() {
        let options = PongArgs::default().validate().expect("defaults");
        assert_eq!(options.settings.tick_hz, Settings::default().tick_hz);
        assert_eq!(options.public_url, None);
        let with_http = PongArgs {
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            ..PongArgs::default()
        };
        let url = with_http.validate().expect("valid").public_url;
        assert_eq!(url.as_deref(), Some("http://127.0.0.1:8081/"));
        let refusals: [(&str, PongArgs); 5] = [
            (
                "wait-timeout",
                PongArgs {
                    wait_timeout: Some(0.0),
                    ..PongArgs::default()
                },
            ),
            (
                "max-games-per-user",
                PongArgs {
                    max_games_per_user: Some(0),
                    ..PongArgs::default()
                },
            ),
            (
                "max-games",
                PongArgs {
                    max_games: Some(0),
                    ..PongArgs::default()
                },
            ),
            (
                "tick-hz",
                PongArgs {
                    tick_hz: Some(0),
                    ..PongArgs::default()
                },
            ),
            (
                "public-url",
                PongArgs {
                    public_url: Some("ftp://x".into()),
                    ..PongArgs::default()
                },
            ),
        ];
        for (flag, args) in refusals {
            let error = args.validate().expect_err(flag);
            assert_eq!(error.flag, flag);
        }
    }

    #[test]
    fn the_file_takes_the_flag_names_and_refuses_typos() {
        let args: PongArgs =
            toml::from_str("wait-timeout = 42\nmax-games-per-user = 5\n").expect("parses");
        let options = args.validate().expect("valid");
        assert_eq!(options.settings.wait_timeout, Duration::from_secs(42));
        assert_eq!(options.settings.max_games_per_user, 5);
        let typo = toml::from_str::<PongArgs>("tick-hzz = 30\n").expect_err("typo");
        assert!(typo.to_string().contains("tick-hzz"), "{typo}");
    }
}
