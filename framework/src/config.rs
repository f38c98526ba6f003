//! Configuration shared by every component: the validated, typed [`Config`], its
//! [`Secret`] and [`LogFormat`]. Flags, environment and the TOML file are read into it by
//! `args` (feature `cli`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use xmpp_parsers::jid::Jid;

use crate::error::Error;
use crate::flood::{FloodLimits, RateLimit};
use crate::tls::TlsConfig;

/// The component secret. Never printed: its `Debug` is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the handshake.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to dial, `HOST:PORT`.
    pub server: String,
    /// The component's domain.
    pub domain: Jid,
    /// The shared secret.
    pub secret: Secret,
    /// TLS to the server (`--tls`); `None` is plain TCP.
    pub tls: Option<TlsConfig>,
    /// Log filter directive.
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Largest inbound stanza in bytes.
    pub max_stanza_size: usize,
    /// Levels of nesting allowed below a stanza.
    pub max_depth: usize,
    /// Outbound queue capacity.
    pub queue_size: usize,
    /// How long a stanza may wait in the outbound queue; `None` is forever.
    pub queue_ttl: Option<Duration>,
    /// Senders whose handlers may run at once.
    pub concurrency: usize,
    /// How long to await an IQ reply.
    pub request_timeout: Duration,
    /// Silence from the server before we ping.
    pub ping_after: Duration,
    /// How long the ping may go unanswered.
    pub ping_timeout: Duration,
    /// Whom to ping.
    pub ping_to: Jid,
    /// Write idleness after which we send a whitespace keepalive.
    pub keepalive_interval: Duration,
    /// Bound on connect + handshake.
    pub handshake_timeout: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// A connection up this long resets the backoff.
    pub backoff_reset_after: Duration,
    /// How long shutdown waits for running handlers.
    pub shutdown_grace: Duration,
    /// Flood protection per sender, user and domain.
    pub flood: FloodLimits,
    /// Identical presences from one full JID that make a storm (0 = off).
    pub presence_storm_count: u32,
    /// The presence-storm window, and the cool-down after a storm.
    pub presence_storm_interval: Duration,
    /// Where to serve `/metrics` and `/health`; `None` serves nothing.
    pub metrics: Option<SocketAddr>,
    /// Runtime worker threads; `None` leaves the choice to the runner.
    pub worker_threads: Option<usize>,
}

impl Config {
    /// A configuration with every default, for code and tests that build one directly.
    pub fn new(server: impl Into<String>, domain: &str, secret: Secret) -> Result<Self, Error> {
        let domain = parse_domain(domain)?;
        let home = parent_domain(&domain);
        Ok(Config {
            server: server.into(),
            tls: None,
            flood: FloodLimits {
                sender: RateLimit {
                    per_second: 100.0,
                    burst: 200.0,
                },
                user: RateLimit {
                    per_second: 200.0,
                    burst: 400.0,
                },
                domain: RateLimit {
                    per_second: 1000.0,
                    burst: 2000.0,
                },
                exempt_domains: vec![home.to_string()],
            },
            ping_to: home,
            domain,
            secret,
            log: "info".into(),
            log_format: LogFormat::Text,
            max_stanza_size: 512 * 1024,
            max_depth: crate::xmlstream::DEFAULT_MAX_DEPTH,
            queue_size: 10_000,
            queue_ttl: Some(Duration::from_secs(300)),
            concurrency: 256,
            request_timeout: Duration::from_secs(30),
            ping_after: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(20),
            keepalive_interval: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            backoff_reset_after: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            presence_storm_count: 10,
            presence_storm_interval: Duration::from_secs(60),
            metrics: None,
            worker_threads: None,
        })
    }
}

pub(crate) fn parse_domain(domain: &str) -> Result<Jid, Error> {
    let jid = Jid::new(domain)
        .map_err(|e| Error::Config(format!("--domain {domain:?} is not a valid domain: {e}")))?;
    if jid.node().is_some() || jid.resource().is_some() {
        return Err(Error::Config(format!(
            "--domain {domain:?} must be a bare domain like echo.example.org"
        )));
    }
    Ok(jid)
}

/// `echo.example.org` → `example.org`; a single-label domain pings itself.
pub(crate) fn parent_domain(domain: &Jid) -> Jid {
    let text = domain.domain().as_str();
    text.split_once('.')
        .and_then(|(_, parent)| Jid::new(parent).ok())
        .unwrap_or_else(|| domain.clone())
}
