//! [`Component`]: the supervisor that keeps one component connected until shutdown.
//!
//! It dials, handshakes, runs the read loop (dispatching stanzas, matching IQ replies,
//! pinging a silent server) beside the writer task, and on any drop reconnects with
//! exponential backoff and jitter. Configuration mistakes (wrong secret, unknown domain)
//! end the run with a typed error instead of retrying forever. Shutdown stops reading,
//! lets running handlers finish (bounded), flushes the queue and closes the stream.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{Mutex, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::iq::Iq;

use crate::config::Config;
use crate::connection::{self, Close, Outbox, StreamReader};
use crate::dispatch::{Dispatcher, Limits};
use crate::error::Error;
use crate::handle::Handle;
use crate::metrics::Counters;
use crate::notify::Notifier;
use crate::observe::{self, FrameworkCollector, Link};
use crate::router::{Inbound, Router};
use crate::stanza::Stanza;
use crate::xmlstream::StreamEvent;

/// A component ready to run: its configuration, its router and its outbound queue.
pub struct Component {
    config: Config,
    router: Arc<Router>,
    handle: Handle,
    outbox: Arc<Mutex<Outbox>>,
    link: Arc<Link>,
    registry: Registry,
}

impl Component {
    /// Builds the component; nothing is dialled until [`Component::run`].
    pub fn new(config: Config, router: impl Into<Router>) -> Self {
        Self::with_registry(config, router.into(), Registry::default())
    }

    /// [`Component::new`] with metrics already registered by the component.
    pub(crate) fn with_registry(config: Config, router: Router, registry: Registry) -> Self {
        let (handle, queue) = Handle::for_config(&config);
        Self::assemble(config, router, registry, handle, queue)
    }

    /// A component around a handle made beforehand (see [`Handle::for_config`]), so a
    /// service can give its state the handle before the router exists.
    pub(crate) fn assemble(
        config: Config,
        router: Router,
        mut registry: Registry,
        handle: Handle,
        queue: tokio::sync::mpsc::Receiver<crate::handle::Queued>,
    ) -> Self {
        let outbox = Outbox {
            queue,
            unsent: Vec::new(),
            ttl: config.queue_ttl,
        };
        let link = Arc::new(Link::new(&config.server));
        registry.register_collector(Box::new(FrameworkCollector {
            handle: handle.clone(),
            link: Arc::clone(&link),
            queue_capacity: config.queue_size,
        }));
        Component {
            config,
            router: Arc::new(router),
            handle,
            outbox: Arc::new(Mutex::new(outbox)),
            link,
            registry,
        }
    }

    /// The registry served on `--metrics`: register the component's own metrics here
    /// before [`Component::run`] (see [`crate::observe::gauge`]). Without `--metrics`
    /// nothing reads it.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// A handle for sending from outside handlers (an HTTP server, a game loop...).
    /// Usable before and between connections: stanzas wait in the queue.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs until `shutdown` completes (returns `Ok`) or a fatal error occurs. With
    /// `--metrics` the metrics listener runs alongside and stops once the link is closed.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        self.router.check()?;
        let observer = match self.config.metrics {
            Some(addr) => {
                let registry = std::mem::take(&mut self.registry);
                Some(observe::Server::start(addr, registry, Arc::clone(&self.link)).await?)
            }
            None => None,
        };
        let token = CancellationToken::new();
        let supervise = self.supervise(token.clone());
        tokio::pin!(supervise);
        let result = tokio::select! {
            result = &mut supervise => result,
            () = shutdown => {
                tracing::info!("shutting down");
                Notifier::stopping();
                token.cancel();
                supervise.await
            }
        };
        if let Some(observer) = observer {
            observer.stop().await;
        }
        result
    }

    async fn supervise(&self, shutdown: CancellationToken) -> Result<(), Error> {
        let config = &self.config;
        let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
        let dispatcher = Dispatcher::with_limits(
            Arc::clone(&self.router),
            self.handle.clone(),
            config.concurrency,
            Limits::from_config(config),
        );
        let mut notifier = Notifier::from_env();
        loop {
            tracing::info!(server = %config.server, domain = %config.domain, "connecting");
            let attempt = tokio::select! {
                attempt = connection::connect(config) => attempt,
                () = shutdown.cancelled() => return Ok(()),
            };
            let end = match attempt {
                Ok((reader, writer)) => {
                    tracing::info!(domain = %config.domain, "handshake ok");
                    self.link
                        .set_up(format!("linked to {} as {}", config.server, config.domain));
                    Counters::bump(&self.handle.counters().connects);
                    notifier.connected(config.domain.domain().as_str());
                    let watchdog = notifier.keep_alive();
                    let connected_at = Instant::now();
                    let end = self.serve(reader, writer, &dispatcher, &shutdown).await;
                    self.link.set_down(&match &end {
                        Ok(()) => "shutting down".to_owned(),
                        Err(error) => error.to_string(),
                    });
                    drop(watchdog);
                    if connected_at.elapsed() >= config.backoff_reset_after {
                        backoff.reset();
                    }
                    match end {
                        Ok(()) => return Ok(()),
                        Err(error) => error,
                    }
                }
                Err(error) => error,
            };
            self.link.set_down(&end.to_string());
            if end.is_fatal() {
                return Err(end);
            }
            notifier.disconnected(&end.to_string());
            let delay = backoff.next_delay();
            tracing::warn!(
                error = %end,
                attempt = backoff.attempt,
                delay_ms = delay.as_millis() as u64,
                "connection lost; reconnect attempt {} in {:.1} s",
                backoff.attempt,
                delay.as_secs_f64()
            );
            if let Some(hint) = end.hint() {
                tracing::warn!("{hint}");
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => {
                    let queued = self.outbox.lock().await.queue.len();
                    if queued > 0 {
                        tracing::warn!(queued, "shutting down while disconnected: queued stanzas are dropped");
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Serves one established connection. `Ok` means a clean shutdown.
    async fn serve(
        &self,
        mut reader: StreamReader,
        writer: crate::transport::WriteHalf,
        dispatcher: &Dispatcher,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        let config = &self.config;
        let (close_tx, close_rx) = oneshot::channel();
        let mut write_task = tokio::spawn(connection::write_loop(
            writer,
            Arc::clone(&self.outbox),
            close_rx,
            config.keepalive_interval,
            self.handle.clone(),
        ));
        self.router.spawn_connected(&self.handle);

        let outcome = tokio::select! {
            read = self.read_loop(&mut reader, dispatcher, shutdown) => read,
            written = &mut write_task => match written {
                Ok(Err(error)) => Err(error),
                _ => Err(Error::Closed),
            },
        };
        self.handle.fail_pending();

        let close = match &outcome {
            Ok(()) => {
                if tokio::time::timeout(config.shutdown_grace, dispatcher.wait_idle())
                    .await
                    .is_err()
                {
                    tracing::warn!("handlers still running after the shutdown grace period");
                }
                Close {
                    flush: true,
                    stream_error: None,
                }
            }
            Err(Error::Xml(text)) => Close {
                flush: false,
                stream_error: Some(("not-well-formed", text.clone())),
            },
            Err(Error::StanzaTooDeep { limit }) => Close {
                flush: false,
                stream_error: Some((
                    "policy-violation",
                    format!("stanza nested deeper than {limit} levels"),
                )),
            },
            Err(_) => Close {
                flush: false,
                stream_error: None,
            },
        };
        if let Err(error) = &outcome {
            tracing::warn!(%error, "connection ended");
        }
        if !write_task.is_finished() {
            let _ = close_tx.send(close);
            if tokio::time::timeout(Duration::from_secs(5), &mut write_task)
                .await
                .is_err()
            {
                tracing::warn!("writer did not finish in time; abandoning the connection");
                write_task.abort();
            }
        }
        outcome
    }

    /// Reads until shutdown (`Ok`) or until the connection fails.
    async fn read_loop(
        &self,
        reader: &mut StreamReader,
        dispatcher: &Dispatcher,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        let config = &self.config;
        let mut last_heard = Instant::now();
        let mut ping_deadline: Option<Instant> = None;
        loop {
            // Dispatch everything one read produced before touching timers again: a read
            // of 64 KiB can hold hundreds of stanzas.
            let mut heard = false;
            while let Some(event) = reader.next_parsed_stanza() {
                heard = true;
                Counters::bump(&self.handle.counters().received);
                match event? {
                    StreamEvent::Stanza(stanza) => {
                        let counters = self.handle.counters();
                        match &stanza {
                            Stanza::Message(_) => Counters::bump(&counters.received_message),
                            Stanza::Presence(_) => Counters::bump(&counters.received_presence),
                            Stanza::Iq(_) => Counters::bump(&counters.received_iq),
                            Stanza::Element(_) | Stanza::Shared(_) => {}
                        }
                        self.route(stanza, dispatcher).await
                    }
                    StreamEvent::Invalid(invalid) => {
                        if !invalid.cause.is_over_limit() {
                            Counters::bump(&self.handle.counters().invalid);
                        }
                        dispatcher.submit(Inbound::Invalid(invalid)).await;
                    }
                    StreamEvent::Header(_) | StreamEvent::End => {}
                }
                if shutdown.is_cancelled() {
                    return Ok(());
                }
            }
            if heard {
                last_heard = Instant::now();
                ping_deadline = None;
            }
            let wake_at = ping_deadline.unwrap_or(last_heard + config.ping_after);
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(wake_at) => {
                    if ping_deadline.is_some() {
                        return Err(Error::DeadLink(config.ping_timeout));
                    }
                    self.send_ping();
                    ping_deadline = Some(Instant::now() + config.ping_timeout);
                }
                filled = reader.fill() => filled?,
            }
        }
    }

    async fn route(&self, stanza: Stanza, dispatcher: &Dispatcher) {
        match stanza {
            Stanza::Iq(iq @ (Iq::Result { .. } | Iq::Error { .. })) => {
                if let Some(unclaimed) = self.handle.resolve(iq) {
                    tracing::trace!(id = unclaimed.id(), "IQ reply nobody waits for");
                }
            }
            other => dispatcher.submit(Inbound::Stanza(other)).await,
        }
    }

    fn send_ping(&self) {
        let iq = Iq::from_get(
            format!("ping-{}", self.handle.next_id()),
            xmpp_parsers::ping::Ping,
        )
        .with_to(self.config.ping_to.clone());
        tracing::debug!(to = %self.config.ping_to, "server silent; pinging");
        if let Err(error) = self.handle.try_send(iq) {
            tracing::warn!(%error, "could not queue keepalive ping");
        }
    }
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    /// Attempts since the last reset, for logs.
    pub(crate) attempt: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            current: min,
            attempt: 0,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        use rand::Rng;
        self.attempt += 1;
        let nominal = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = nominal / 2;
        half + half.mul_f64(rand::thread_rng().r#gen::<f64>())
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.min;
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        let nominal = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0];
        for (delay, nominal) in delays.iter().zip(nominal) {
            let secs = delay.as_secs_f64();
            assert!(
                secs >= nominal / 2.0 && secs <= nominal,
                "{secs} outside [{}, {nominal}]",
                nominal / 2.0
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(500));
        assert_eq!(backoff.attempt, 1);
    }
}
