//! The metrics listener (`--metrics ADDR`): `/metrics` in Prometheus text and `/health`.
//!
//! It is a listener of its own, apart from any public HTTP a component serves, so it can
//! stay on loopback. The framework's counters are relaxed atomics bumped on the hot path;
//! they are only *read* here, at scrape time, by a [`Collector`], so serving metrics adds
//! no per-stanza work and no lock. `/health` answers 200 while the XMPP link is up and 503
//! with the reason otherwise, for a load balancer or a watchdog.
//!
//! A component adds its own metrics to the same [`Registry`] with
//! [`crate::Component::registry_mut`] (or [`crate::run_with_metrics`]); [`gauge`] and
//! [`counter`] turn a closure over existing state into a metric read at scrape time.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::handle::Handle;

/// Whether the XMPP link is up, and why not. Written by the supervisor on connection
/// events only (never per stanza), read by `/health` and the `link_up` gauge.
#[derive(Debug)]
pub(crate) struct Link {
    up: AtomicBool,
    reason: Mutex<String>,
}

impl Link {
    /// A link that has not connected yet.
    pub(crate) fn new(server: &str) -> Self {
        Link {
            up: AtomicBool::new(false),
            reason: Mutex::new(format!("connecting to {server}")),
        }
    }

    /// The handshake succeeded.
    pub(crate) fn set_up(&self, reason: String) {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner) = reason;
        self.up.store(true, Ordering::Relaxed);
    }

    /// The connection ended or could not be made; `reason` is shown on `/health`.
    pub(crate) fn set_down(&self, reason: &str) {
        self.up.store(false, Ordering::Relaxed);
        // One line, whatever the error's text holds.
        let line = reason.replace(['\r', '\n'], " ");
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner) = line;
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn status(&self) -> (bool, String) {
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (self.is_up(), reason)
    }
}

/// The framework's own metrics, read from its counters at scrape time.
pub(crate) struct FrameworkCollector {
    pub(crate) handle: Handle,
    pub(crate) link: Arc<Link>,
    pub(crate) queue_capacity: usize,
}

impl fmt::Debug for FrameworkCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameworkCollector")
            .field("domain", &self.handle.domain())
            .finish_non_exhaustive()
    }
}

impl Collector for FrameworkCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let m = self.handle.metrics();
        encode_by_kind(
            &mut encoder,
            "xmpp_component_stanzas_received",
            "Stanzas read from the server, by kind (other: invalid, over the size or depth \
             cap, or not a message/presence/iq).",
            [m.messages_received, m.presences_received, m.iqs_received],
            m.stanzas_received,
        )?;
        encode_by_kind(
            &mut encoder,
            "xmpp_component_stanzas_sent",
            "Stanzas written to the server, by kind (other: the handshake and raw elements).",
            [m.messages_sent, m.presences_sent, m.iqs_sent],
            m.stanzas_sent,
        )?;
        let (sum, count, buckets) = self.handle.counters().handler_latency.snapshot();
        let no_exemplars: Option<&HashMap<usize, Exemplar<NoLabelSet, f64>>> = None;
        encoder
            .encode_descriptor(
                "xmpp_component_handler_latency_seconds",
                "How long stanza handlers took, from start to end.",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram(sum, count, &buckets, no_exemplars)?;
        let counters = [
            (
                "xmpp_component_rate_limited_senders",
                "Times a sender, user or domain went over its rate limit (one per episode).",
                m.rate_limited_senders,
            ),
            (
                "xmpp_component_stanzas_invalid",
                "Well-formed but invalid stanzas from the server.",
                m.stanzas_invalid,
            ),
            (
                "xmpp_component_stanzas_refused",
                "Stanzas refused by flood protection (rate-limited senders) or a full \
                 per-sender backlog.",
                m.stanzas_refused,
            ),
            (
                "xmpp_component_stanzas_expired",
                "Outbound stanzas dropped after waiting past --queue-ttl.",
                m.stanzas_expired,
            ),
            (
                "xmpp_component_stanzas_over_limit",
                "Inbound stanzas skipped for breaking the size or depth cap.",
                m.stanzas_over_limit,
            ),
            (
                "xmpp_component_presences_storm_ignored",
                "Presences ignored as repeats in a presence storm.",
                m.presences_storm_ignored,
            ),
            (
                "xmpp_component_connections",
                "Successful handshakes with the server.",
                m.connections,
            ),
            (
                "xmpp_component_reconnects",
                "Successful handshakes after the first one.",
                m.connections.saturating_sub(1),
            ),
        ];
        for (name, help, value) in counters {
            encode_counter(&mut encoder, name, help, value)?;
        }
        let gauges = [
            (
                "xmpp_component_link_up",
                "1 while the XMPP link to the server is up, 0 otherwise.",
                i64::from(self.link.is_up()),
            ),
            (
                "xmpp_component_queue_depth",
                "Stanzas waiting in the outbound queue.",
                saturating_i64(m.queued as u64),
            ),
            (
                "xmpp_component_queue_capacity",
                "Capacity of the outbound queue (--queue-size).",
                saturating_i64(self.queue_capacity as u64),
            ),
        ];
        for (name, help, value) in gauges {
            encode_gauge(&mut encoder, name, help, value)?;
        }
        Ok(())
    }
}

/// A counter family by `kind`: message, presence, iq, and other (the rest of `total`).
fn encode_by_kind(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    [messages, presences, iqs]: [u64; 3],
    total: u64,
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    let other = total.saturating_sub(messages + presences + iqs);
    for (kind, n) in [
        ("message", messages),
        ("presence", presences),
        ("iq", iqs),
        ("other", other),
    ] {
        ConstCounter::new(n).encode(family.encode_family(&[("kind", kind)])?)?;
    }
    Ok(())
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn encode_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// A metric whose value a closure reads at scrape time.
struct FnMetric<F> {
    name: String,
    help: String,
    kind: MetricType,
    read: F,
}

impl<F> fmt::Debug for FnMetric<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnMetric")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<F: Fn() -> u64 + Send + Sync + 'static> Collector for FnMetric<F> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let value = (self.read)();
        if self.kind == MetricType::Counter {
            encode_counter(&mut encoder, &self.name, &self.help, value)
        } else {
            encode_gauge(&mut encoder, &self.name, &self.help, saturating_i64(value))
        }
    }
}

/// A gauge read from `read` at each scrape, for state a component already keeps (users
/// registered, games running): nothing to update on the hot path. Register it with
/// `registry.register_collector(gauge(...))`.
pub fn gauge(
    name: impl Into<String>,
    help: impl Into<String>,
    read: impl Fn() -> u64 + Send + Sync + 'static,
) -> Box<dyn Collector> {
    Box::new(FnMetric {
        name: name.into(),
        help: help.into(),
        kind: MetricType::Gauge,
        read,
    })
}

/// Like [`gauge`], for a value that only grows (exposed with the `_total` suffix).
pub fn counter(
    name: impl Into<String>,
    help: impl Into<String>,
    read: impl Fn() -> u64 + Send + Sync + 'static,
) -> Box<dyn Collector> {
    Box::new(FnMetric {
        name: name.into(),
        help: help.into(),
        kind: MetricType::Counter,
        read,
    })
}

struct Shared {
    registry: Registry,
    link: Arc<Link>,
}

/// The metrics listener's routes.
fn app(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut text = String::with_capacity(4096);
    match prometheus_client::encoding::prometheus_text::encode(&mut text, &shared.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(fmt::Error) => {
            tracing::warn!("a metric failed to encode");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response()
        }
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    match shared.link.status() {
        (true, reason) => (StatusCode::OK, format!("up: {reason}\n")),
        (false, reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("down: {reason}\n")),
    }
}

/// The running metrics listener.
pub(crate) struct Server {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` (a failure is a configuration error: the operator named the address)
    /// and serves until [`Server::stop`].
    pub(crate) async fn start(
        addr: SocketAddr,
        registry: Registry,
        link: Arc<Link>,
    ) -> Result<Self, Error> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Config(format!("cannot listen on --metrics {addr}: {e}")))?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving /metrics and /health");
        let stop = CancellationToken::new();
        let service = axum::serve(listener, app(Arc::new(Shared { registry, link })))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            if let Err(error) = service.await {
                tracing::warn!(%error, "metrics listener failed");
            }
        });
        Ok(Server { stop, task })
    }

    /// Stops serving; a scraper holding a connection open gets a second to finish.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if tokio::time::timeout(Duration::from_secs(1), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}
