//! `xmpp-webstatus`: a web presence gateway built as an XMPP external component.
//!
//! XMPP users register with the component (XEP-0077 form, adding it as a contact, or chat
//! commands) and change settings by chat or from their client's commands menu (XEP-0050); it subscribes to their presence and serves their live status over HTTP under
//! an opaque, rotatable token: an HTML snippet for iframes (live via Server-Sent Events),
//! an SVG badge, JSON with CORS, and plain text.
//!
//! Modules, one job each:
//! - [`token`]: random 128-bit URL tokens.
//! - [`presence`]: per-resource state and the deterministic aggregation rule (pure).
//! - [`view`]: what a page may show: options and consent applied (pure).
//! - [`store`]: durable registrations behind the [`Store`] trait (sled).
//! - [`registry`]: the live in-memory table by JID and token, with change notification.
//! - [`limits`]: admission of new registrations (allowed domains, user cap, per-domain rate).
//! - [`options`]: the gateway's flags and config-file keys, validated.
//! - [`app`]: the registration operations, store first, then the live table.
//! - [`register`]: the XEP-0077 form and what a submitted one sets (pure).
//! - [`commands`]: chat command parsing and texts (pure).
//! - [`service`]: the XMPP router and handlers (registration via the framework's `ibr`).
//! - [`menu`]: the settings as XEP-0050 ad-hoc commands.
//! - [`prober`]: probing everyone after each (re)connect.
//! - [`render`]: HTML, SVG, JSON, text, events, escaping, CSP.
//! - [`http`]: the axum app with uniform 404s and caching headers.
//!
//! After a registration the `subscribe` must follow the IQ `result` (XEP-0077, XEP-0100):
//! the registration handler answers an `Answer` with follow-ups, so the router queues the result and
//! then the follow-ups, in order.

pub mod app;
pub mod commands;
pub mod http;
pub mod limits;
pub mod menu;
pub mod options;
pub mod presence;
pub mod prober;
pub mod register;
pub mod registry;
pub mod render;
pub mod service;
pub mod store;
pub mod token;
pub mod view;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod testkit;

pub use app::{App, AppError, Footprint, Settings};
pub use http::HttpState;
pub use limits::{Limits, Refusal};
pub use registry::Registry;
pub use store::{MemoryStore, SledStore, Store, StoreError, UserRecord};
pub use token::Token;
