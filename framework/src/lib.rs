//! A framework for XMPP external components (XEP-0114) on Tokio.
//!
//! A component is a [`Router`] (the table of what it serves) plus a [`Config`]; the
//! framework dials the server, does the handshake, parses the stream, dispatches stanzas
//! to handlers, answers what nobody handles, and keeps the link up until shutdown.
//!
//! ```no_run
//! use xmpp_component::{ComponentArgs, Router, Handle};
//! use xmpp_component::xmpp_parsers::message::{Message, MessageType};
//!
//! async fn echo(handle: Handle, message: Message) -> Result<(), xmpp_component::SendError> {
//!     if message.type_ != MessageType::Chat { return Ok(()); }
//!     let (Some(from), Some(to)) = (message.from.clone(), message.to.clone()) else { return Ok(()) };
//!     let mut reply = message;
//!     (reply.from, reply.to) = (Some(to), Some(from));
//!     handle.send(reply).await
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     use clap::Parser;
//!     #[derive(Parser)]
//!     struct Cli { #[command(flatten)] component: ComponentArgs }
//!     xmpp_component::run(Cli::parse().component, |_config| {
//!         Router::new().identity("component", "generic", "Echo").message(echo)
//!     })
//! }
//! ```
//!
//! Handlers receive `xmpp-parsers` types (built straight from parser events, no DOM in
//! between). The raw `minidom::Element` stays in reach: IQ handlers get their payload as
//! an `Element`, every payload `xmpp-parsers` does not model is kept as an `Element` in
//! `Message::payloads`/`Presence::payloads`, and `Element::from(message)` gives the whole
//! stanza as an element.
//!
//! Modules, one job each:
//! - [`config`]: the validated [`Config`], [`Secret`], [`LogFormat`].
//! - `args` (feature `cli`): flags, environment, TOML file → a [`Config`], plus a
//!   component's own options from the same file.
//! - `app` (feature `cli`): [`run`] and [`serve`], the standard `main`.
//! - `handshake`: the XEP-0114 stream header and token.
//! - `namespaces`: XML namespace resolution over rxml's raw parser, linear in depth.
//! - `xmlstream`: incremental parsing (rxml + minidom) into stanzas, size and depth caps
//!   (over-cap stanzas are skipped, not fatal), namespaces.
//! - `connection`: one connection: dial, handshake, reader, writer task.
//! - `transport`: the byte stream under it, plain TCP or TLS, as one reading and one
//!   writing half.
//! - `tls`: `--tls` settings (trust anchors, server name) and certificate errors.
//! - `stanza`: [`Stanza`], inbound or outbound, and the pre-serialised [`SharedMessage`].
//! - `serialize`: outbound stanzas to bytes (direct for messages, `xso` otherwise).
//! - `component`: the supervisor: reconnects with backoff, keepalive pings, shutdown.
//! - `dispatch`: per-sender ordering with bounded concurrency.
//! - `flood`: token buckets per sender, user and domain (flood protection).
//! - `presence_storm`: the same presence over and over is ignored for a while.
//! - `episodes`: log a misbehaving sender once per episode, not once per stanza.
//! - [`forms`]: XEP-0004 data forms, built and read.
//! - [`ibr`]: XEP-0077 in-band registration around a component's [`ibr::Registrar`].
//! - [`adhoc`]: XEP-0050 ad-hoc commands: steps, sessions, listing.
//! - [`router`]: handler registration (typed IQ routes, message routes by namespace),
//!   IQ reply rules, built-in disco/ping/version.
//! - [`subscription`]: the component as a contact: subscriptions, probes, who granted what.
//! - `state`: [`StateRouter`], handlers that share one state value.
//! - `handle`: sending, the outbound queue, awaiting IQ replies.
//! - `metrics`: counters readable with [`Handle::metrics`].
//! - [`observe`]: the `--metrics` listener: Prometheus text on `/metrics`, `/health`.
//! - `notify`: systemd readiness and watchdog notifications (`Type=notify` units).
//! - [`testing`]: [`testing::TestServer`], the server side of XEP-0114 for tests.

#![warn(missing_docs)]

pub mod adhoc;
#[cfg(feature = "cli")]
mod app;
#[cfg(feature = "cli")]
mod args;
mod component;
pub mod config;
mod connection;
mod dispatch;
mod episodes;
mod error;
mod flood;
pub mod forms;
#[cfg(test)]
mod fuzz_tests;
mod handle;
mod handshake;
pub mod ibr;
#[cfg(feature = "cli")]
mod logging;
mod metrics;
mod namespaces;
mod notify;
pub mod observe;
mod presence_storm;
pub mod router;
mod serialize;
mod stanza;
mod state;
pub mod subscription;
#[cfg(test)]
mod test_support;
pub mod testing;
mod tls;
mod transport;
mod xmlstream;

#[cfg(feature = "cli")]
pub use app::{
    EXIT_CONFIG, Service, Setup, bind_http, exit_code, run, run_with_metrics, runtime, serve,
    shutdown_signal,
};
#[cfg(feature = "cli")]
pub use args::{Cli, ComponentArgs, ComponentOptions, NoOptions};
pub use component::Component;
pub use config::{Config, LogFormat, Secret};
pub use error::{CertificateProblem, Error, RequestError, SendError, StreamErrorInfo};
pub use flood::{FloodLimits, RateLimit};
pub use handle::Handle;
pub use handshake::token as handshake_token;
#[cfg(feature = "cli")]
pub use logging::init as init_logging;
pub use metrics::Metrics;
pub use router::{
    Answer, IntoAnswer, IqPayload, IqReply, IqRequest, IqResult, Request, Router, stanza_error,
};
pub use serialize::escaped as escape_markup;
pub use stanza::{SharedMessage, SharedPayload, Stanza};
pub use state::{State, StateRouter};
pub use tls::TlsConfig;
pub use xmlstream::{
    DEFAULT_MAX_DEPTH, InvalidCause, InvalidStanza, ParseError, ParseMode, StreamEvent,
    StreamHeader, StreamParser,
};

/// Re-exported so components use exactly the versions the framework speaks.
#[cfg(feature = "cli")]
pub use clap;
pub use minidom;
pub use prometheus_client;
pub use rxml;
pub use xmpp_parsers;
pub use xso;
