//! `xmpp-pong`: the XMPPong game server. Reading this file tells everything it serves:
//! the XMPP component (router in `service.rs`) and, with `--http`, the browser client, the
//! leaderboard and metrics over HTTP (`http.rs`, `web.rs`), under one shutdown.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use xmpp_component::{ComponentArgs, Error, Service, Setup, bind_http};
use xmpp_pong::options::PongArgs;
use xmpp_pong::web::WebClient;
use xmpp_pong::{Frontdoor, Leaderboard, Lobby, Metrics, http, router, stores};

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
    pong: PongArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    xmpp_component::serve(cli.component, cli.pong, start)
}

async fn start(setup: Setup<PongArgs>) -> Result<Service, Error> {
    let options = setup.options.validate()?;
    let (results, profiles) = stores::open(options.data.as_deref()).map_err(Error::Config)?;
    let store = Leaderboard::open(results)
        .await
        .map_err(|e| Error::Config(format!("cannot load the leaderboard: {e}")))?;
    tracing::info!(players = store.len(), "leaderboard loaded");
    let domain = setup.config.domain.to_string();
    let web = WebClient::new(&options.websocket_url, &domain)
        .map_err(|why| Error::Config(format!("--websocket-url {why}")))?;
    let metrics = Arc::new(Metrics::default());
    let lobby = Lobby::new(
        &domain,
        options.settings,
        store.clone(),
        Arc::clone(&metrics),
    );
    lobby.attach(Arc::new(setup.handle));
    let frontdoor = Frontdoor {
        lobby: Arc::clone(&lobby),
        profiles: Arc::clone(&profiles),
        web_url: options.http.and(options.public_url),
    };
    let mut service = Service::new(router(frontdoor))
        .metrics(|registry| metrics.register(registry))
        // On SIGINT/SIGTERM the games end first (their last messages are queued), then
        // the link flushes and closes, and HTTP stops.
        .before_stop(async move { lobby.shutdown(Duration::from_secs(2)).await });
    if let Some(addr) = options.http {
        let listener = bind_http(addr).await?;
        tracing::info!(
            websocket = web.websocket_url(),
            "web client and leaderboard on HTTP"
        );
        let state = http::AppState {
            store,
            metrics,
            profiles,
            web: Arc::new(web),
        };
        service = service.http(listener, http::app(state));
    }
    Ok(service)
}
