//! The standard `main` for a component binary: config, logging, signals, exit codes.

use std::process::ExitCode;

use prometheus_client::registry::Registry;

use crate::component::Component;
use crate::config::{ComponentArgs, Config};
use crate::router::Router;

/// Exit code for a configuration mistake (bad flags, wrong secret, unknown domain).
pub const EXIT_CONFIG: u8 = 2;

/// Validates `args`, sets up logging, builds the router with `make_router` and runs the
/// component on a Tokio runtime until SIGINT/SIGTERM. Returns 0 on a clean shutdown and
/// a non-zero code with a message that names the likely fix otherwise.
pub fn run(args: ComponentArgs, make_router: impl FnOnce(&Config) -> Router) -> ExitCode {
    run_with_metrics(args, |config, _| make_router(config))
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
    let Some(runtime) = runtime(1) else {
        return ExitCode::FAILURE;
    };
    let mut registry = Registry::default();
    let router = setup(&config, &mut registry);
    runtime.block_on(async move {
        let component = Component::with_registry(config, router, registry);
        exit_code(component.run(shutdown_signal()).await)
    })
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
