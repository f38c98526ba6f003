//! `xmpp-webstatus`: opens the registration store and serves the XMPP component and the
//! status pages side by side under one shutdown (the framework's `serve`).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use xmpp_component::{ComponentArgs, Error, Service, Setup, bind_http, observe};
use xmpp_webstatus::options::GatewayArgs;
use xmpp_webstatus::{App, HttpState, Settings, SledStore, http, service};

// Handlers allocate on the reader thread and HTTP workers free elsewhere; mimalloc keeps
// that cross-thread traffic cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Web presence gateway: XMPP users register, their live status is served over HTTP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    component: ComponentArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    xmpp_component::serve(cli.component, cli.gateway, start)
}

async fn start(setup: Setup<GatewayArgs>) -> Result<Service, Error> {
    let options = setup.options.validate().map_err(Error::Config)?;
    let store = SledStore::open(&options.data, options.db_cache_bytes).map_err(|e| {
        let dir = options.data.display();
        Error::Config(format!("cannot open the database in {dir}: {e} (--data DIR must be writable and used by one process only)"))
    })?;
    let settings = Settings {
        domain: setup.config.domain.to_string(),
        public_url: options.public_url.clone(),
        probe_rate: options.probe_rate,
        probe_timeout: options.probe_timeout,
        limits: options.limits.clone(),
    };
    let app = App::new(Arc::new(store), settings)
        .map_err(|e| Error::Startup(format!("cannot load registrations: {e}")))?;
    tracing::info!(users = app.registry().len(), limits = ?options.limits,
        data = %options.data.display(), public_url = %options.public_url, "registrations loaded");
    let listener = bind_http(options.http).await?;
    let pages = HttpState::new(&app, setup.shutdown, options.max_live_pages);
    let (users, online, live) = (
        app.registry().clone(),
        app.registry().clone(),
        pages.clone(),
    );
    let requests = pages.requests();
    Ok(Service::new(service::router(app, options.reprobe_interval))
        .http(listener, http::app(pages))
        // Read at scrape time on --metrics; nothing is counted on the hot path.
        .metrics(|registry| {
            registry.register_collector(observe::gauge(
                "webstatus_registered_users",
                "Registered users.",
                move || users.len() as u64,
            ));
            registry.register_collector(observe::gauge(
                "webstatus_online_users",
                "Registered users with at least one available resource.",
                move || online.online() as u64,
            ));
            let about = "HTTP requests by format and status.";
            registry.register("webstatus_http_requests", about, requests);
            registry.register_collector(observe::gauge(
                "webstatus_sse_clients",
                "Live (Server-Sent Events) pages open.",
                move || live.live_pages() as u64,
            ));
        }))
}
