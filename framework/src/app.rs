//! The standard `main` for a component binary: config, logging, signals, exit codes;
//! [`run`] for a router alone, [`serve`] for a service with state, options of its own and
//! an HTTP side, under one shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::serve::ListenerExt;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::args::{Cli, ComponentArgs, ComponentOptions};
use crate::component::Component;
use crate::config::Config;
use crate::error::Error;
use crate::handle::Handle;
use crate::router::{BoxFuture, Router};

/// Exit code for a configuration mistake (bad flags, wrong secret, unknown domain).
pub const EXIT_CONFIG: u8 = 2;

/// Validates `args`, sets up logging, builds the router with `make_router` and runs the
/// component on a Tokio runtime until SIGINT/SIGTERM. Returns 0 on a clean shutdown and
/// a non-zero code with a message that names the likely fix otherwise.
pub fn run<R: Into<Router>>(
    args: ComponentArgs,
    make_router: impl FnOnce(&Config) -> R,
) -> ExitCode {
    run_with_metrics(args, |config, _| make_router(config).into())
}

/// [`run`] for a component with metrics of its own: `setup` also gets the registry
/// served on `--metrics`, to add them to (see [`crate::observe::gauge`]).
pub fn run_with_metrics(
    args: ComponentArgs,
    setup: impl FnOnce(&Config, &mut Registry) -> Router,
) -> ExitCode {
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::logging::init(&config.log, config.log_format);
    let Some(runtime) = runtime(config.worker_threads.unwrap_or(1)) else {
        return ExitCode::FAILURE;
    };
    let mut registry = Registry::default();
    let router = setup(&config, &mut registry);
    runtime.block_on(async move {
        let component = Component::with_registry(config, router, registry);
        exit_code(component.run(shutdown_signal()).await)
    })
}

impl<O: ComponentOptions> Cli<O> {
    /// Parses the process's command line and runs [`serve`] with it.
    pub fn serve<F, Fut>(make_service: F) -> ExitCode
    where
        F: FnOnce(Setup<O>) -> Fut,
        Fut: Future<Output = Result<Service, Error>>,
    {
        let cli = <Self as clap::Parser>::parse();
        serve(cli.component, cli.options, make_service)
    }
}

/// A whole service for [`serve`]: the XMPP router, and optionally an HTTP app served beside
/// it, metrics of its own, and work to finish before the link closes.
pub struct Service {
    router: Router,
    http: Option<(TcpListener, axum::Router)>,
    registry: Registry,
    before_stop: Option<BoxFuture<()>>,
}

impl Service {
    /// A service that is only its router.
    pub fn new(router: impl Into<Router>) -> Self {
        Service {
            router: router.into(),
            http: None,
            registry: Registry::default(),
            before_stop: None,
        }
    }

    /// Serves `app` on `listener` (see [`bind_http`]) beside the XMPP link: SIGINT/SIGTERM
    /// stops both (HTTP gracefully), and a fatal XMPP error stops HTTP too.
    pub fn http(mut self, listener: TcpListener, app: axum::Router) -> Self {
        self.http = Some((listener, app));
        self
    }

    /// Registers the service's own metrics, served on `--metrics` beside the framework's
    /// (see [`crate::observe::gauge`]).
    pub fn metrics(mut self, register: impl FnOnce(&mut Registry)) -> Self {
        register(&mut self.registry);
        self
    }

    /// Work to finish on SIGINT/SIGTERM while the link is still up, e.g. ending games so
    /// their last messages are sent; the link then flushes and closes.
    pub fn before_stop(mut self, work: impl Future<Output = ()> + Send + 'static) -> Self {
        self.before_stop = Some(Box::pin(work));
        self
    }
}

/// What a service's setup gets from [`serve`].
pub struct Setup<O> {
    /// The validated framework configuration.
    pub config: Config,
    /// The component's own options: flags over the same `--config` file.
    pub options: O,
    /// The component's handle, for state that sends on its own (queued until connected).
    pub handle: Handle,
    /// Cancelled when the service stops (a signal, after `before_stop`, or a fatal
    /// error): long-lived HTTP responses (Server-Sent Events) end on it.
    pub shutdown: CancellationToken,
}

/// Binds the HTTP listener for [`Service::http`]; a busy or forbidden address is a
/// configuration error naming it.
pub async fn bind_http(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| Error::Config(format!("cannot listen on {addr}: {error}")))
}

/// The `main` of a component with state, options of its own and maybe an HTTP side: reads
/// flags, environment and the `--config` file (the framework's keys and `O`'s, unknown
/// keys refused), sets up logging, runs `setup` on the runtime (`--worker-threads`,
/// default 2), then the XMPP link and the HTTP server until SIGINT/SIGTERM or a fatal
/// error. `setup` fails with [`Error::Config`] (exit 2) for what the admin must fix.
pub fn serve<O, F, Fut>(args: ComponentArgs, flags: O, make_service: F) -> ExitCode
where
    O: ComponentOptions,
    F: FnOnce(Setup<O>) -> Fut,
    Fut: Future<Output = Result<Service, Error>>,
{
    let (config, options) = match args.load(flags) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::logging::init(&config.log, config.log_format);
    let Some(runtime) = runtime(config.worker_threads.unwrap_or(2)) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let (handle, queue) = Handle::for_config(&config);
        let shutdown = CancellationToken::new();
        let setup = Setup {
            config: config.clone(),
            options,
            handle: handle.clone(),
            shutdown: shutdown.clone(),
        };
        let service = match make_service(setup).await {
            Ok(service) => service,
            Err(error) => return exit_code(Err(error)),
        };
        run_service(config, service, handle, queue, shutdown).await
    })
}

async fn run_service(
    config: Config,
    service: Service,
    handle: Handle,
    queue: tokio::sync::mpsc::Receiver<crate::handle::Queued>,
    shutdown: CancellationToken,
) -> ExitCode {
    let Service {
        router,
        http,
        registry,
        before_stop,
    } = service;
    let component = Component::assemble(config, router, registry, handle, queue);
    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        if let Some(work) = before_stop {
            work.await;
        }
        signal.cancel();
    });
    let http = http.map(|(listener, app)| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "HTTP listening");
        }
        // Small responses on keep-alive connections: never wait for Nagle.
        let listener = listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY failed");
            }
        });
        let server =
            axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
        tokio::spawn(async move { server.await })
    });
    let result = component.run(shutdown.clone().cancelled_owned()).await;
    // A fatal XMPP error ends the HTTP side too.
    shutdown.cancel();
    if let Some(http) = http {
        match tokio::time::timeout(Duration::from_secs(5), http).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "HTTP server failed"),
            Ok(Err(error)) => tracing::warn!(%error, "HTTP task failed"),
            Err(_) => tracing::warn!("HTTP server did not stop in time"),
        }
    }
    exit_code(result)
}

/// The Tokio runtime for a component binary: 1 thread is a current-thread runtime (the
/// cheapest per stanza: no cross-thread wake-ups or frees), more is a multi-thread one.
/// Prints why and returns `None` if the OS refuses.
pub fn runtime(worker_threads: usize) -> Option<tokio::runtime::Runtime> {
    let mut builder = if worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(worker_threads);
        builder
    };
    match builder.enable_all().build() {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            None
        }
    }
}

/// Maps the outcome of [`Component::run`] to an exit code, printing fatal errors.
pub fn exit_code(result: Result<(), crate::Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "giving up");
            eprintln!("error: {error}");
            if let Some(hint) = error.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(if error.is_fatal() { EXIT_CONFIG } else { 1 })
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
