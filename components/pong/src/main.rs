//! `xmpp-pong`: the XMPPong game server. Reading this file tells everything it serves:
//! the XMPP component (router in `service.rs`) and, with `--http`, the browser client, the
//! leaderboard and metrics over HTTP (`http.rs`, `web.rs`), both stopped by one shutdown
//! signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use xmpp_component::{
    Component, ComponentArgs, EXIT_CONFIG, exit_code, init_logging, shutdown_signal,
};
use xmpp_pong::physics::Field;
use xmpp_pong::web::{self, WebClient};
use xmpp_pong::{
    Frontdoor, Leaderboard, Lobby, MemoryStore, Metrics, Profiles, ResultStore, Settings,
    SledStore, http, router,
};

// Game tasks build stanzas on one worker thread and the framework's writer frees them on
// another; mimalloc keeps that cross-thread allocation traffic cheap (glibc's malloc/free
// were about a third of the CPU profile under load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// XMPPong: a server-authoritative Pong game server as an XMPP component.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    component: ComponentArgs,
    #[command(flatten)]
    game: GameArgs,
    #[command(flatten)]
    web: WebArgs,
}

/// Where the browser client connects, and where people find it.
#[derive(Debug, clap::Args)]
struct WebArgs {
    /// The XMPP server's WebSocket endpoint (RFC 7395) that the web client at `/` logs in
    /// through, e.g. wss://xmpp.example.org/xmpp-websocket (Prosody mod_websocket, ejabberd
    /// ejabberd_http_ws) [default: ws://127.0.0.1:5280/xmpp-websocket].
    #[arg(long, env = "XMPP_PONG_WEBSOCKET_URL", value_name = "URL")]
    websocket_url: Option<String>,
    /// The web client's address as people reach it, told to those who chat with the game
    /// server [default: http://<--http>/].
    #[arg(long, env = "XMPP_PONG_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
}

/// The same options in the `--config` TOML file (other keys belong to the framework).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct WebFileOptions {
    websocket_url: Option<String>,
    public_url: Option<String>,
}

/// Validated web options.
struct WebOptions {
    websocket_url: String,
    public_url: Option<String>,
}

impl WebArgs {
    /// Flag/environment > `--config` file > default.
    fn options(
        &self,
        config: Option<&Path>,
        http: Option<SocketAddr>,
    ) -> Result<WebOptions, String> {
        let file: WebFileOptions = match config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => WebFileOptions::default(),
        };
        let websocket_url = self
            .websocket_url
            .clone()
            .or(file.websocket_url)
            .unwrap_or_else(|| web::DEFAULT_WEBSOCKET_URL.to_owned());
        web::check_websocket_url(&websocket_url)
            .map_err(|why| format!("--websocket-url {websocket_url:?} {why}"))?;
        let public_url = match self.public_url.clone().or(file.public_url) {
            Some(url) => Some(url),
            None => http.map(|addr| format!("http://{addr}/")),
        };
        let public_url = public_url
            .map(|url| {
                let url = format!("{}/", url.trim_end_matches('/'));
                let plain = url.starts_with("http://") || url.starts_with("https://");
                if plain && !url.contains(|c: char| c.is_whitespace() || "\"'<>?#".contains(c)) {
                    Ok(url)
                } else {
                    Err(format!(
                        "--public-url {url:?} must be an http:// or https:// URL"
                    ))
                }
            })
            .transpose()?;
        Ok(WebOptions {
            websocket_url,
            public_url,
        })
    }
}

/// The game server's own flags. Each may also be given in the `--config` TOML file under
/// its long name (e.g. `wait-timeout = 300`); a flag wins over the file.
#[derive(Debug, clap::Args)]
struct GameArgs {
    /// Serve the leaderboard (/leaderboard, /leaderboard.json) and /metrics on this address.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Directory of the leaderboard database (sled); without it the leaderboard lives in
    /// memory only.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Game ticks per second [default: 30].
    #[arg(long, value_name = "HZ")]
    tick_hz: Option<u32>,
    /// Points that win a game [default: 10].
    #[arg(long, value_name = "N")]
    points_to_win: Option<u32>,
    /// Seconds without input after which a player forfeits [default: 60].
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<f64>,
    /// Seconds a game waits for its second player before it ends (`expired`)
    /// [default: 600].
    #[arg(long, value_name = "SECS")]
    wait_timeout: Option<f64>,
    /// Largest paddle movement per tick, in field units (faster requests are clamped)
    /// [default: 30].
    #[arg(long, value_name = "UNITS")]
    max_paddle_speed: Option<f64>,
    /// Serve speed of the ball, field units per second [default: 360].
    #[arg(long, value_name = "UNITS")]
    ball_speed: Option<f64>,
    /// Seconds between a point and the next serve [default: 1].
    #[arg(long, value_name = "SECS")]
    serve_delay: Option<f64>,
    /// Most spectators per game [default: 64].
    #[arg(long, value_name = "N")]
    max_spectators: Option<usize>,
    /// Most games one account (bare JID) plays in at once, from all its resources
    /// [default: 3].
    #[arg(long, value_name = "N")]
    max_games_per_user: Option<usize>,
    /// Most games (waiting or running) on the server at once [default: 10000].
    #[arg(long, value_name = "N")]
    max_games: Option<usize>,
    /// Runtime worker threads [default: 2]. With 2, game ticks run on both cores beside
    /// the connection: 2,000 games at 30 Hz keep p99 tick lateness under 5 ms on 2 cores
    /// (`cargo bench -p xmpp-pong`). 1 runs everything on one current-thread runtime,
    /// cheaper per stanza but saturated at about 1,500 games.
    #[arg(long, value_name = "N")]
    worker_threads: Option<usize>,
}

/// The same options in the `--config` TOML file (unknown keys belong to the framework).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileOptions {
    http: Option<SocketAddr>,
    data: Option<PathBuf>,
    tick_hz: Option<u32>,
    points_to_win: Option<u32>,
    idle_timeout: Option<f64>,
    wait_timeout: Option<f64>,
    max_paddle_speed: Option<f64>,
    ball_speed: Option<f64>,
    serve_delay: Option<f64>,
    max_spectators: Option<usize>,
    max_games_per_user: Option<usize>,
    max_games: Option<usize>,
    worker_threads: Option<usize>,
}

/// Validated game server options.
struct Options {
    settings: Settings,
    http: Option<SocketAddr>,
    data: Option<PathBuf>,
    worker_threads: usize,
}

/// A flag with an impossible value, or an unreadable `--config` file.
#[derive(Debug, thiserror::Error)]
enum BadOption {
    #[error("--{flag}: {why}")]
    Flag {
        flag: &'static str,
        why: &'static str,
    },
    #[error("{0}")]
    File(String),
}

fn read_file(path: &Path) -> Result<FileOptions, BadOption> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadOption::File(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| BadOption::File(format!("{}: {e}", path.display())))
}

impl GameArgs {
    /// Flag > `--config` file > default, then validation.
    fn options(self, config: Option<&Path>) -> Result<Options, BadOption> {
        let file = match config {
            Some(path) => read_file(path)?,
            None => FileOptions::default(),
        };
        let bad = |flag, why| Err(BadOption::Flag { flag, why });
        let defaults = Settings::default();
        let tick_hz = self.tick_hz.or(file.tick_hz).unwrap_or(defaults.tick_hz);
        if !(1..=1000).contains(&tick_hz) {
            return bad("tick-hz", "must be from 1 to 1000");
        }
        let points_to_win = self
            .points_to_win
            .or(file.points_to_win)
            .unwrap_or(defaults.points_to_win);
        if points_to_win == 0 {
            return bad("points-to-win", "must be at least 1");
        }
        let seconds = |v: f64| Duration::try_from_secs_f64(v).ok();
        let positive = |flag: Option<f64>, file: Option<f64>, default: Duration| {
            flag.or(file)
                .map_or(Some(default), seconds)
                .filter(|d| !d.is_zero())
        };
        let Some(idle_timeout) =
            positive(self.idle_timeout, file.idle_timeout, defaults.idle_timeout)
        else {
            return bad("idle-timeout", "must be a positive number of seconds");
        };
        let Some(wait_timeout) =
            positive(self.wait_timeout, file.wait_timeout, defaults.wait_timeout)
        else {
            return bad("wait-timeout", "must be a positive number of seconds");
        };
        let Some(serve_delay) = self
            .serve_delay
            .or(file.serve_delay)
            .map_or(Some(defaults.serve_delay), seconds)
        else {
            return bad(
                "serve-delay",
                "must be zero or a positive number of seconds",
            );
        };
        let max_paddle_step = self
            .max_paddle_speed
            .or(file.max_paddle_speed)
            .unwrap_or(defaults.max_paddle_step);
        if !(max_paddle_step.is_finite() && max_paddle_step > 0.0) {
            return bad("max-paddle-speed", "must be a positive number");
        }
        let field = Field::default();
        let ball_speed = self
            .ball_speed
            .or(file.ball_speed)
            .unwrap_or(field.serve_speed);
        if !(ball_speed.is_finite() && ball_speed > 0.0 && ball_speed <= field.max_speed) {
            return bad("ball-speed", "must be positive and at most 1500");
        }
        let max_games_per_user = self
            .max_games_per_user
            .or(file.max_games_per_user)
            .unwrap_or(defaults.max_games_per_user);
        if max_games_per_user == 0 {
            return bad("max-games-per-user", "must be at least 1");
        }
        let max_games = self
            .max_games
            .or(file.max_games)
            .unwrap_or(defaults.max_games);
        if max_games == 0 {
            return bad("max-games", "must be at least 1");
        }
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
                max_spectators: self
                    .max_spectators
                    .or(file.max_spectators)
                    .unwrap_or(defaults.max_spectators),
                max_games_per_user,
                max_games,
            },
            http: self.http.or(file.http),
            data: self.data.or(file.data),
            worker_threads: self.worker_threads.or(file.worker_threads).unwrap_or(2),
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = match cli.game.options(cli.component.config.as_deref()) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let web = match cli
        .web
        .options(cli.component.config.as_deref(), options.http)
    {
        Ok(web) => web,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = match cli.component.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&config.log, config.log_format);
    let (store, profiles): (Arc<dyn ResultStore>, Profiles) = match &options.data {
        Some(dir) => match SledStore::open(dir) {
            Ok(store) => {
                let profiles = store
                    .open_tree("profiles")
                    .map_err(|e| e.to_string())
                    .and_then(|tree| Profiles::open(tree).map_err(|e| e.to_string()));
                match profiles {
                    Ok(profiles) => (Arc::new(store), profiles),
                    Err(error) => {
                        eprintln!(
                            "error: cannot open the profiles in {}: {error}",
                            dir.display()
                        );
                        return ExitCode::from(EXIT_CONFIG);
                    }
                }
            }
            Err(error) => {
                eprintln!(
                    "error: cannot open the leaderboard in {}: {error}",
                    dir.display()
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => {
            tracing::warn!("no --data DIR: the leaderboard is kept in memory only");
            (Arc::new(MemoryStore::new()), Profiles::in_memory())
        }
    };
    let Some(runtime) = xmpp_component::runtime(options.worker_threads) else {
        return ExitCode::FAILURE;
    };
    let stores = Stores {
        results: store,
        profiles: Arc::new(profiles),
    };
    runtime.block_on(serve(config, options.settings, stores, options.http, web))
}

/// What the game server keeps: results and the players' profiles.
struct Stores {
    results: Arc<dyn ResultStore>,
    profiles: Arc<Profiles>,
}

async fn serve(
    config: xmpp_component::Config,
    settings: Settings,
    stores: Stores,
    http_addr: Option<SocketAddr>,
    web: WebOptions,
) -> ExitCode {
    let Stores { results, profiles } = stores;
    let store = match Leaderboard::open(results).await {
        Ok(board) => {
            tracing::info!(players = board.len(), "leaderboard loaded");
            board
        }
        Err(error) => {
            eprintln!("error: cannot load the leaderboard: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let metrics = Arc::new(Metrics::default());
    let domain = config.domain.to_string();
    let web_client = match WebClient::new(&web.websocket_url, &domain) {
        Ok(client) => Arc::new(client),
        Err(why) => {
            eprintln!("error: --websocket-url {why}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let lobby = Lobby::new(&domain, settings, store.clone(), Arc::clone(&metrics));
    let frontdoor = Arc::new(Frontdoor {
        profiles: Arc::clone(&profiles),
        web_url: http_addr.and(web.public_url),
    });
    let mut component = Component::new(config, router(Arc::clone(&lobby), frontdoor));
    metrics.register(component.registry_mut());
    lobby.attach(Arc::new(component.handle()));

    // One signal for both servers: on SIGINT/SIGTERM the games end first (their last
    // messages are queued), then the component flushes and closes, and HTTP stops.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal_lobby = Arc::clone(&lobby);
    tokio::spawn(async move {
        shutdown_signal().await;
        signal_lobby.shutdown(Duration::from_secs(2)).await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let http = match http_addr {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!(
                    addr = %listener.local_addr().unwrap_or(addr),
                    websocket = web_client.websocket_url(),
                    "HTTP web client and leaderboard listening"
                );
                let app = http::app(http::AppState {
                    store,
                    metrics,
                    profiles,
                    web: web_client,
                });
                let shutdown = stopped(stop_rx.clone());
                Some(tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                }))
            }
            Err(error) => {
                eprintln!("error: cannot listen on --http {addr}: {error}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let result = component.run(stopped(stop_rx)).await;
    if let Some(http) = http {
        if result.is_err() {
            http.abort();
        }
        match http.await {
            Ok(Err(error)) => tracing::warn!(%error, "HTTP server failed"),
            Err(error) if !error.is_cancelled() => {
                tracing::warn!(%error, "HTTP server task failed")
            }
            _ => {}
        }
    }
    exit_code(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn game_options_come_from_flags_then_the_config_file_then_defaults() {
        let dir = std::env::temp_dir().join(format!("pong-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("pong.toml");
        std::fs::write(
            &file,
            "server = '127.0.0.1:5347'\nwait-timeout = 42\nmax-games-per-user = 5\ntick-hz = 20\n",
        )
        .expect("write config");
        let path = file.to_string_lossy().into_owned();
        let cli = Cli::try_parse_from(["xmpp-pong", "--config", &path, "--tick-hz", "40"])
            .expect("flags");
        let options = cli
            .game
            .options(cli.component.config.as_deref())
            .expect("valid options");
        assert_eq!(options.settings.wait_timeout, Duration::from_secs(42));
        assert_eq!(options.settings.max_games_per_user, 5);
        assert_eq!(options.settings.tick_hz, 40, "a flag wins over the file");
        assert_eq!(options.settings.max_games, Settings::default().max_games);
        let _ = std::fs::remove_dir_all(&dir);

        for (flag, value) in [
            ("wait-timeout", "0"),
            ("max-games-per-user", "0"),
            ("max-games", "0"),
        ] {
            let cli =
                Cli::try_parse_from(["xmpp-pong", &format!("--{flag}"), value]).expect("flags");
            match cli.game.options(None) {
                Err(BadOption::Flag { flag: bad, .. }) => assert_eq!(bad, flag),
                other => panic!("--{flag} {value} accepted: {:?}", other.is_ok()),
            }
        }
    }
}
