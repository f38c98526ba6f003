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
use xmpp_component::{
    Component, ComponentArgs, EXIT_CONFIG, exit_code, init_logging, shutdown_signal,
};
use xmpp_pong::physics::Field;
use xmpp_pong::web::{self, WebClient};
use xmpp_pong::{
    Frontdoor, Lobby, MemoryStore, Metrics, Profiles, ResultStore, Settings, SledStore, http,
    router,
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

/// The game server's own flags.
#[derive(Debug, clap::Args)]
struct GameArgs {
    /// Serve the leaderboard (/leaderboard, /leaderboard.json) and /metrics on this address.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Directory of the leaderboard database (sled); without it the leaderboard lives in
    /// memory only.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Game ticks per second.
    #[arg(long, default_value_t = 30, value_name = "HZ")]
    tick_hz: u32,
    /// Points that win a game.
    #[arg(long, default_value_t = 10, value_name = "N")]
    points_to_win: u32,
    /// Seconds without input after which a player forfeits.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    idle_timeout: f64,
    /// Largest paddle movement per tick, in field units (faster requests are clamped).
    #[arg(long, default_value_t = 30.0, value_name = "UNITS")]
    max_paddle_speed: f64,
    /// Serve speed of the ball, field units per second.
    #[arg(long, default_value_t = 360.0, value_name = "UNITS")]
    ball_speed: f64,
    /// Seconds between a point and the next serve.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    serve_delay: f64,
    /// Most spectators per game.
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_spectators: usize,
    /// Runtime worker threads. With 2 (the default) game ticks run on both cores beside the
    /// connection: 2,000 games at 30 Hz keep p99 tick lateness under 5 ms on 2 cores
    /// (`cargo bench -p xmpp-pong`). 1 runs everything on one current-thread runtime,
    /// cheaper per stanza but saturated at about 1,500 games.
    #[arg(long, default_value_t = 2, value_name = "N")]
    worker_threads: usize,
}

/// A flag with an impossible value.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {why}")]
struct BadFlag {
    flag: &'static str,
    why: &'static str,
}

impl GameArgs {
    fn settings(&self) -> Result<Settings, BadFlag> {
        let bad = |flag, why| Err(BadFlag { flag, why });
        if !(1..=1000).contains(&self.tick_hz) {
            return bad("tick-hz", "must be from 1 to 1000");
        }
        if self.points_to_win == 0 {
            return bad("points-to-win", "must be at least 1");
        }
        let seconds = |v: f64| Duration::try_from_secs_f64(v).ok();
        let Some(idle_timeout) = seconds(self.idle_timeout).filter(|d| !d.is_zero()) else {
            return bad("idle-timeout", "must be a positive number of seconds");
        };
        let Some(serve_delay) = seconds(self.serve_delay) else {
            return bad(
                "serve-delay",
                "must be zero or a positive number of seconds",
            );
        };
        if !(self.max_paddle_speed.is_finite() && self.max_paddle_speed > 0.0) {
            return bad("max-paddle-speed", "must be a positive number");
        }
        let field = Field::default();
        if !(self.ball_speed.is_finite()
            && self.ball_speed > 0.0
            && self.ball_speed <= field.max_speed)
        {
            return bad("ball-speed", "must be positive and at most 1500");
        }
        Ok(Settings {
            field: Field {
                serve_speed: self.ball_speed,
                ..field
            },
            tick_hz: self.tick_hz,
            points_to_win: self.points_to_win,
            idle_timeout,
            max_paddle_step: self.max_paddle_speed,
            serve_delay,
            max_spectators: self.max_spectators,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match cli.game.settings() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let web = match cli
        .web
        .options(cli.component.config.as_deref(), cli.game.http)
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
    let (store, profiles): (Arc<dyn ResultStore>, Profiles) = match &cli.game.data {
        Some(dir) => match SledStore::open(dir) {
            Ok(store) => {
                tracing::info!(dir = %dir.display(), players = store.len(), "leaderboard opened");
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
    let Some(runtime) = xmpp_component::runtime(cli.game.worker_threads) else {
        return ExitCode::FAILURE;
    };
    let stores = Stores {
        results: store,
        profiles: Arc::new(profiles),
    };
    runtime.block_on(serve(config, settings, stores, cli.game.http, web))
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
    let Stores {
        results: store,
        profiles,
    } = stores;
    let metrics = Arc::new(Metrics::default());
    let domain = config.domain.to_string();
    let web_client = match WebClient::new(&web.websocket_url, &domain) {
        Ok(client) => Arc::new(client),
        Err(why) => {
            eprintln!("error: --websocket-url {why}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let lobby = Lobby::new(&domain, settings, Arc::clone(&store), Arc::clone(&metrics));
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
