//! `xmpp-webstatus`: parses flags, opens the registration store, and runs the XMPP
//! component and the HTTP server side by side until SIGINT/SIGTERM (or a fatal error).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use clap::Parser;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use xmpp_component::{
    Component, ComponentArgs, EXIT_CONFIG, exit_code, init_logging, observe, shutdown_signal,
};
use xmpp_webstatus::limits::{DEFAULT_MAX_USERS, DEFAULT_REGISTRATIONS_PER_DOMAIN};
use xmpp_webstatus::{App, HttpState, Limits, Settings, SledStore, http, service};

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
    /// Address the HTTP server listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "XMPP_WEBSTATUS_HTTP", value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Base URL of the status pages as users reach them, e.g. https://status.example.org
    /// [default: http://<--http>].
    #[arg(long, env = "XMPP_WEBSTATUS_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Directory of the registration database [default: ./webstatus-data].
    #[arg(long, env = "XMPP_WEBSTATUS_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Presence probes per second after each (re)connect [default: 50].
    #[arg(long, value_name = "N")]
    probe_rate: Option<u32>,
    /// Seconds without an answer to a probe that mean "offline" [default: 10].
    #[arg(long, value_name = "SECS")]
    probe_timeout: Option<f64>,
    /// Seconds between periodic re-probes of everyone; 0 disables [default: 3600].
    #[arg(long, value_name = "SECS")]
    reprobe_interval: Option<f64>,
    /// Largest number of live (Server-Sent Events) pages at once [default: 10000].
    #[arg(long, value_name = "N")]
    max_live_pages: Option<usize>,
    /// Page cache of the database, in MiB [default: 16].
    #[arg(long, value_name = "MIB")]
    db_cache_mb: Option<u64>,
    /// Most registered users; newcomers beyond it are refused, registered users never
    /// (0: no new registrations) [default: 100000].
    #[arg(long, value_name = "N")]
    max_users: Option<usize>,
    /// New registrations per sender domain per hour (a bucket of N that refills over the
    /// hour); 0 turns the limit off [default: 100].
    #[arg(long, value_name = "N")]
    registrations_per_domain: Option<u32>,
    /// Only users of these domains may register, comma-separated, e.g.
    /// example.org,example.net [default: every domain].
    #[arg(long, value_name = "DOMAINS", value_delimiter = ',')]
    allow_domains: Option<Vec<String>>,
}

/// `allow-domains` in the TOML file: a list, or one comma-separated string like the flag.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DomainList {
    List(Vec<String>),
    Text(String),
}

impl DomainList {
    fn into_vec(self) -> Vec<String> {
        match self {
            DomainList::List(list) => list,
            DomainList::Text(text) => text.split(',').map(str::to_owned).collect(),
        }
    }
}

/// The same options in the `--config` TOML file (unknown keys belong to the framework).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileOptions {
    http: Option<SocketAddr>,
    public_url: Option<String>,
    data: Option<PathBuf>,
    probe_rate: Option<u32>,
    probe_timeout: Option<f64>,
    reprobe_interval: Option<f64>,
    max_live_pages: Option<usize>,
    db_cache_mb: Option<u64>,
    max_users: Option<usize>,
    registrations_per_domain: Option<u32>,
    allow_domains: Option<DomainList>,
}

/// Validated gateway options.
struct Options {
    http: SocketAddr,
    public_url: String,
    data: PathBuf,
    probe_rate: u32,
    probe_timeout: Duration,
    reprobe_interval: Option<Duration>,
    max_live_pages: usize,
    db_cache_bytes: u64,
    limits: Limits,
}

impl Cli {
    /// Flag/environment > `--config` file > default, as for the framework's own options.
    fn options(&self) -> Result<Options, String> {
        let file = match &self.component.config {
            Some(path) => read_file(path)?,
            None => FileOptions::default(),
        };
        let http = self
            .http
            .or(file.http)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let public_url = self
            .public_url
            .clone()
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{http}"));
        let public_url = public_url.trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://"))
            || public_url.contains(['"', '<', '>', ' ', '\'', '?', '#'])
        {
            return Err(format!(
                "--public-url {public_url:?} must be an http:// or https:// base URL"
            ));
        }
        let probe_rate = self.probe_rate.or(file.probe_rate).unwrap_or(50);
        if probe_rate == 0 {
            return Err("--probe-rate must be greater than 0".into());
        }
        let probe_timeout = seconds(
            self.probe_timeout.or(file.probe_timeout).unwrap_or(10.0),
            "probe-timeout",
        )?;
        let reprobe = self
            .reprobe_interval
            .or(file.reprobe_interval)
            .unwrap_or(3600.0);
        let reprobe_interval = if reprobe == 0.0 {
            None
        } else {
            Some(seconds(reprobe, "reprobe-interval")?)
        };
        let max_live_pages = self
            .max_live_pages
            .or(file.max_live_pages)
            .unwrap_or(10_000);
        let allow_domains = match self
            .allow_domains
            .clone()
            .or(file.allow_domains.map(DomainList::into_vec))
        {
            Some(list) => Some(domain_set(list)?),
            None => None,
        };
        let limits = Limits {
            max_users: self
                .max_users
                .or(file.max_users)
                .unwrap_or(DEFAULT_MAX_USERS),
            registrations_per_domain: self
                .registrations_per_domain
                .or(file.registrations_per_domain)
                .unwrap_or(DEFAULT_REGISTRATIONS_PER_DOMAIN),
            allow_domains,
        };
        Ok(Options {
            http,
            public_url,
            data: self
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from("webstatus-data")),
            probe_rate,
            probe_timeout,
            reprobe_interval,
            max_live_pages,
            db_cache_bytes: self.db_cache_mb.or(file.db_cache_mb).unwrap_or(16) << 20,
            limits,
        })
    }
}

/// `--allow-domains`: lower-case domain names, none empty, at least one.
fn domain_set(list: Vec<String>) -> Result<std::collections::HashSet<String>, String> {
    let mut set = std::collections::HashSet::new();
    for entry in list {
        let domain = entry.trim().trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || domain.contains(['@', '/', ' ', '*']) {
            return Err(format!(
                "--allow-domains: {entry:?} is not a domain name (expected e.g. example.org,example.net)"
            ));
        }
        set.insert(domain);
    }
    if set.is_empty() {
        return Err("--allow-domains needs at least one domain".into());
    }
    Ok(set)
}

fn read_file(path: &Path) -> Result<FileOptions, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn seconds(secs: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--{what} must be a positive number of seconds"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = match cli.options() {
        Ok(options) => options,
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
    // Two workers: the HTTP side needs both cores (see the benchmark in the README).
    let Some(runtime) = xmpp_component::runtime(2) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(serve(config, options))
}

async fn serve(config: xmpp_component::Config, options: Options) -> ExitCode {
    let store = match SledStore::open(&options.data, options.db_cache_bytes) {
        Ok(store) => store,
        Err(error) => {
            eprintln!(
                "error: cannot open the database in {}: {error}",
                options.data.display()
            );
            eprintln!("hint: --data DIR must be writable and used by one process only");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let settings = Settings {
        domain: config.domain.to_string(),
        public_url: options.public_url.clone(),
        probe_rate: options.probe_rate,
        probe_timeout: options.probe_timeout,
        limits: options.limits.clone(),
    };
    let app = match App::new(Arc::new(store), settings) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("error: cannot load registrations: {error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        users = app.registry().len(),
        max_users = options.limits.max_users,
        registrations_per_domain = options.limits.registrations_per_domain,
        allow_domains = ?options.limits.allow_domains,
        data = %options.data.display(),
        "registrations loaded"
    );
    let listener = match tokio::net::TcpListener::bind(options.http).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {}: {error}", options.http);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    tracing::info!(addr = %options.http, public_url = %options.public_url, "HTTP listening");

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    let http_state = HttpState::new(&app, shutdown.clone(), options.max_live_pages);
    let live = http_state.clone();
    let requests = http_state.requests();
    // Small responses on keep-alive connections: never wait for Nagle.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY failed");
        }
    });
    let http_server = axum::serve(listener, http::app(http_state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let http_task = tokio::spawn(async move { http_server.await });

    let users = Arc::clone(app.registry());
    let online = Arc::clone(app.registry());
    let mut component = Component::new(config, service::router(app, options.reprobe_interval));
    // Read at scrape time on --metrics; nothing is counted on the hot path.
    let metrics = component.registry_mut();
    metrics.register_collector(observe::gauge(
        "webstatus_registered_users",
        "Registered users.",
        move || users.len() as u64,
    ));
    metrics.register_collector(observe::gauge(
        "webstatus_online_users",
        "Registered users with at least one available resource.",
        move || online.online() as u64,
    ));
    metrics.register(
        "webstatus_http_requests",
        "HTTP requests by format and status.",
        requests,
    );
    metrics.register_collector(observe::gauge(
        "webstatus_sse_clients",
        "Live (Server-Sent Events) pages open.",
        move || live.live_pages() as u64,
    ));
    let result = component.run(shutdown.clone().cancelled_owned()).await;
    // A fatal XMPP error ends the HTTP side too.
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(5), http_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(%error, "HTTP server failed"),
        Ok(Err(error)) => tracing::warn!(%error, "HTTP task failed"),
        Err(_) => tracing::warn!("HTTP server did not stop in time"),
    }
    exit_code(result)
}
