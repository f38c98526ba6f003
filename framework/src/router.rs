//! [`Router`]: the table of what a component serves, and the rules every stanza follows.
//!
//! Handlers are registered for messages, presences and IQ get/set by payload (element name
//! plus namespace). The router guarantees the RFC 6120 rules a component must keep: every
//! IQ get/set gets exactly one reply (`service-unavailable` when nobody handles it, the
//! handler's [`StanzaError`] or `internal-server-error` when it fails or panics), replies
//! swap `to`/`from` and keep the `id`, and IQ results/errors are never answered.
//! disco#info, disco#items, XEP-0199 ping and XEP-0092 version are built in.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use minidom::Element;
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;
use xmpp_parsers::presence::Presence;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use xmpp_parsers::version::VersionResult;

use crate::handle::Handle;

/// A boxed, sendable future, as stored in the router.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What an IQ handler returns: the result payload (or none), or the error to send back.
pub type IqResult = Result<Option<Element>, StanzaError>;

/// An IQ get or set addressed to the component.
#[derive(Debug, Clone)]
pub struct IqRequest {
    /// The requester (always present: the server stamps it).
    pub from: Jid,
    /// The JID at our domain it was sent to.
    pub to: Jid,
    /// The request id; the reply reuses it.
    pub id: String,
    /// The single payload element.
    pub payload: Element,
}

/// What a message or presence handler may return: nothing, or a result whose error is logged.
pub trait HandlerOutcome: Send + 'static {
    /// Logs the outcome if it is an error.
    fn report(self, what: &'static str);
}

impl HandlerOutcome for () {
    fn report(self, _: &'static str) {}
}

impl<E: std::fmt::Display + Send + 'static> HandlerOutcome for Result<(), E> {
    fn report(self, what: &'static str) {
        if let Err(error) = self {
            tracing::warn!(%error, "{what} handler failed");
        }
    }
}

type StanzaHandler<T> = Arc<dyn Fn(Handle, T) -> BoxFuture<()> + Send + Sync>;
type IqHandler = Arc<dyn Fn(Handle, IqRequest) -> BoxFuture<IqResult> + Send + Sync>;
type ItemsHandler = Arc<dyn Fn(Handle, IqRequest) -> BoxFuture<Vec<Item>> + Send + Sync>;
type ConnectedHandler = Arc<dyn Fn(Handle) -> BoxFuture<()> + Send + Sync>;

/// Whether an IQ route answers `get` or `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IqKind {
    Get,
    Set,
}

struct IqRoute {
    kind: IqKind,
    name: String,
    namespace: String,
    handler: IqHandler,
}

/// The table of handlers for one component. Build it with the chained methods, then hand it
/// to [`crate::Component`].
pub struct Router {
    message: Option<StanzaHandler<Message>>,
    presence: Option<StanzaHandler<Presence>>,
    iqs: Vec<IqRoute>,
    items: Option<ItemsHandler>,
    connected: Vec<ConnectedHandler>,
    identities: Vec<Identity>,
    features: Vec<String>,
    software: (String, String),
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// An empty router: only the built-in disco#info, disco#items, ping and version answer.
    pub fn new() -> Self {
        Router {
            message: None,
            presence: None,
            iqs: Vec::new(),
            items: None,
            connected: Vec::new(),
            identities: Vec::new(),
            features: Vec::new(),
            software: (
                env!("CARGO_PKG_NAME").to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
        }
    }

    /// Adds a disco#info identity (XEP-0030), e.g. `("component", "generic", "Echo")`.
    /// Without one, the component announces `component/generic`.
    pub fn identity(mut self, category: &str, type_: &str, name: &str) -> Self {
        self.identities.push(Identity {
            category: category.to_owned(),
            type_: type_.to_owned(),
            lang: None,
            name: Some(name.to_owned()),
        });
        self
    }

    /// Announces a disco#info feature that is not an IQ namespace registered here
    /// (IQ namespaces are announced automatically).
    pub fn feature(mut self, var: &str) -> Self {
        self.features.push(var.to_owned());
        self
    }

    /// Sets the name and version answered to XEP-0092 queries.
    pub fn software(mut self, name: &str, version: &str) -> Self {
        self.software = (name.to_owned(), version.to_owned());
        self
    }

    /// Handles every inbound message (including `error` ones: check `type_`).
    pub fn message<F, Fut, O>(mut self, handler: F) -> Self
    where
        F: Fn(Handle, Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutcome,
    {
        self.message = Some(Arc::new(move |h, m| {
            let fut = handler(h, m);
            Box::pin(async move { fut.await.report("message") })
        }));
        self
    }

    /// Handles every inbound presence.
    pub fn presence<F, Fut, O>(mut self, handler: F) -> Self
    where
        F: Fn(Handle, Presence) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutcome,
    {
        self.presence = Some(Arc::new(move |h, p| {
            let fut = handler(h, p);
            Box::pin(async move { fut.await.report("presence") })
        }));
        self
    }

    /// Handles IQ `get` requests whose payload is `<name xmlns='namespace'/>`.
    pub fn iq_get<F, Fut>(self, name: &str, namespace: &str, handler: F) -> Self
    where
        F: Fn(Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IqResult> + Send + 'static,
    {
        self.iq(IqKind::Get, name, namespace, handler)
    }

    /// Handles IQ `set` requests whose payload is `<name xmlns='namespace'/>`.
    pub fn iq_set<F, Fut>(self, name: &str, namespace: &str, handler: F) -> Self
    where
        F: Fn(Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IqResult> + Send + 'static,
    {
        self.iq(IqKind::Set, name, namespace, handler)
    }

    /// Supplies the disco#items list (XEP-0030); by default it is empty.
    pub fn disco_items<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Item>> + Send + 'static,
    {
        self.items = Some(Arc::new(move |h, r| Box::pin(handler(h, r))));
        self
    }

    /// Runs `handler` after every successful handshake (first connect and each reconnect),
    /// e.g. to probe contacts whose presence was lost while the link was down.
    pub fn on_connected<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Handle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.connected.push(Arc::new(move |h| Box::pin(handler(h))));
        self
    }

    fn iq<F, Fut>(mut self, kind: IqKind, name: &str, namespace: &str, handler: F) -> Self
    where
        F: Fn(Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IqResult> + Send + 'static,
    {
        self.iqs
            .retain(|r| !(r.kind == kind && r.name == name && r.namespace == namespace));
        self.iqs.push(IqRoute {
            kind,
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            handler: Arc::new(move |h, r| Box::pin(handler(h, r))),
        });
        self
    }

    /// The disco#info answer: identities plus built-in and registered features.
    pub fn disco_info(&self) -> DiscoInfoResult {
        let mut identities = self.identities.clone();
        if identities.is_empty() {
            identities.push(Identity::new_anonymous::<_, _, String, String>(
                "component",
                "generic",
            ));
        }
        let mut features: std::collections::BTreeSet<String> =
            [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING, ns::VERSION]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        features.extend(self.iqs.iter().map(|r| r.namespace.clone()));
        features.extend(self.features.iter().cloned());
        DiscoInfoResult {
            node: None,
            identities,
            features,
            extensions: Vec::new(),
        }
    }

    /// Runs the on-connected hooks, each in its own task.
    pub(crate) fn spawn_connected(&self, handle: &Handle) {
        for hook in &self.connected {
            tokio::spawn(hook(handle.clone()));
        }
    }

    /// Handles one inbound top-level element to completion (including any IQ reply).
    pub async fn dispatch(&self, handle: &Handle, element: Element) {
        match element.name() {
            "message" => self.dispatch_message(handle, element).await,
            "presence" => match Presence::try_from(element) {
                Ok(presence) => {
                    if let Some(handler) = &self.presence {
                        run_guarded("presence", handler(handle.clone(), presence)).await;
                    }
                }
                Err(error) => tracing::debug!(%error, "dropping unparsable presence"),
            },
            "iq" => self.dispatch_iq(handle, element).await,
            other => tracing::debug!(element = other, "ignoring unknown top-level element"),
        }
    }

    async fn dispatch_message(&self, handle: &Handle, element: Element) {
        let message = match Message::try_from(element) {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%error, "dropping unparsable message");
                return;
            }
        };
        match &self.message {
            Some(handler) => run_guarded("message", handler(handle.clone(), message)).await,
            None if matches!(message.type_, MessageType::Chat | MessageType::Normal) => {
                // RFC 6121 §8.5.2: nobody here takes messages.
                if let Some(sender) = message.from.clone() {
                    let mut reply = Message::error(sender);
                    reply.id = message.id.clone();
                    reply.from = message.to.clone();
                    reply
                        .payloads
                        .push(stanza_error(DefinedCondition::ServiceUnavailable, None).into());
                    send_reply(handle, reply).await;
                }
            }
            None => {}
        }
    }

    async fn dispatch_iq(&self, handle: &Handle, element: Element) {
        let raw_header = (
            element.attr("type").map(str::to_owned),
            element.attr("id").map(str::to_owned),
            element.attr("from").and_then(|f| Jid::new(f).ok()),
            element.attr("to").and_then(|t| Jid::new(t).ok()),
        );
        let iq = match Iq::try_from(element) {
            Ok(iq) => iq,
            Err(error) => {
                // A malformed get/set still deserves its one reply.
                if let (Some(kind), Some(id), Some(from), to) = raw_header
                    && (kind == "get" || kind == "set")
                {
                    tracing::debug!(%error, "answering malformed IQ with bad-request");
                    let to = to.unwrap_or_else(|| handle.jid().clone());
                    let text = format!("malformed IQ: {error}");
                    let reply = reply_to(
                        from,
                        to,
                        id,
                        Err(stanza_error(DefinedCondition::BadRequest, Some(&text))),
                    );
                    send_reply(handle, reply).await;
                } else {
                    tracing::debug!(%error, "dropping unparsable IQ");
                }
                return;
            }
        };
        let (kind, from, to, id, payload) = match iq {
            Iq::Get {
                from,
                to,
                id,
                payload,
            } => (IqKind::Get, from, to, id, payload),
            Iq::Set {
                from,
                to,
                id,
                payload,
            } => (IqKind::Set, from, to, id, payload),
            // Never answer results or errors; unmatched ones were not awaited by anyone.
            Iq::Result { .. } | Iq::Error { .. } => return,
        };
        let Some(from) = from else {
            tracing::debug!("dropping IQ without a sender");
            return;
        };
        let to = to.unwrap_or_else(|| handle.jid().clone());
        let request = IqRequest {
            from: from.clone(),
            to: to.clone(),
            id: id.clone(),
            payload,
        };
        let outcome = self.answer_iq(handle, kind, request).await;
        send_reply(handle, reply_to(from, to, id, outcome)).await;
    }

    async fn answer_iq(&self, handle: &Handle, kind: IqKind, request: IqRequest) -> IqResult {
        let (name, namespace) = (request.payload.name().to_owned(), request.payload.ns());
        let name = name.as_str();
        let route = self
            .iqs
            .iter()
            .find(|r| r.kind == kind && r.name == name && r.namespace == namespace);
        if let Some(route) = route {
            let future = (route.handler)(handle.clone(), request);
            return match AssertUnwindSafe(future).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::error!(payload = name, "IQ handler panicked");
                    Err(stanza_error(DefinedCondition::InternalServerError, None))
                }
            };
        }
        match (kind, name, namespace.as_str()) {
            (IqKind::Get, "query", ns::DISCO_INFO) => {
                if request.payload.attr("node").is_some() {
                    return Err(stanza_error(DefinedCondition::ItemNotFound, None));
                }
                Ok(Some(self.disco_info().into()))
            }
            (IqKind::Get, "query", ns::DISCO_ITEMS) => {
                let node = request.payload.attr("node").map(str::to_owned);
                let items = match &self.items {
                    Some(provider) => {
                        let future = provider(handle.clone(), request);
                        match AssertUnwindSafe(future).catch_unwind().await {
                            Ok(items) => items,
                            Err(_) => {
                                return Err(stanza_error(
                                    DefinedCondition::InternalServerError,
                                    None,
                                ));
                            }
                        }
                    }
                    None => Vec::new(),
                };
                Ok(Some(
                    DiscoItemsResult {
                        node,
                        items,
                        rsm: None,
                    }
                    .into(),
                ))
            }
            (IqKind::Get, "ping", ns::PING) => Ok(None),
            (IqKind::Get, "query", ns::VERSION) => Ok(Some(
                VersionResult {
                    name: self.software.0.clone(),
                    version: self.software.1.clone(),
                    os: None,
                }
                .into(),
            )),
            _ => Err(stanza_error(DefinedCondition::ServiceUnavailable, None)),
        }
    }
}

/// Builds a stanza error with the RFC 6120 §8.3.3 error type for `condition`.
pub fn stanza_error(condition: DefinedCondition, text: Option<&str>) -> StanzaError {
    use DefinedCondition as C;
    let type_ = match condition {
        C::BadRequest | C::JidMalformed | C::NotAcceptable | C::PolicyViolation => {
            ErrorType::Modify
        }
        C::Forbidden | C::NotAuthorized | C::RegistrationRequired => ErrorType::Auth,
        C::ResourceConstraint | C::RemoteServerTimeout | C::UnexpectedRequest => ErrorType::Wait,
        _ => ErrorType::Cancel,
    };
    let mut error = StanzaError::new(type_, condition, "en", text.unwrap_or_default());
    if text.is_none() {
        error.texts.clear();
    }
    error
}

fn reply_to(requester: Jid, us: Jid, id: String, outcome: IqResult) -> Iq {
    match outcome {
        Ok(payload) => Iq::Result {
            from: Some(us),
            to: Some(requester),
            id,
            payload,
        },
        Err(error) => Iq::Error {
            from: Some(us),
            to: Some(requester),
            id,
            error,
            payload: None,
        },
    }
}

async fn send_reply(handle: &Handle, reply: impl Into<Element>) {
    if let Err(error) = handle.send(reply).await {
        tracing::warn!(%error, "could not queue a reply");
    }
}

async fn run_guarded(what: &'static str, future: BoxFuture<()>) {
    if AssertUnwindSafe(future).catch_unwind().await.is_err() {
        tracing::error!("{what} handler panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::mpsc;

    fn setup() -> (Handle, mpsc::Receiver<Element>) {
        Handle::new(
            Jid::new("echo.localhost").expect("jid"),
            16,
            Duration::from_secs(1),
        )
    }

    fn parse(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    fn error_condition(reply: &Element) -> Option<String> {
        let error = reply.get_child("error", crate::xmlstream::NS_COMPONENT)?;
        error
            .children()
            .find(|c| c.ns() == ns::XMPP_STANZAS && c.name() != "text")
            .map(|c| c.name().to_owned())
    }

    const NS: &str = "xmlns='jabber:component:accept'";

    #[tokio::test]
    async fn unhandled_iq_gets_service_unavailable_with_swapped_addresses() {
        let (handle, mut rx) = setup();
        let router = Router::new();
        let iq = parse(&format!(
            "<iq {NS} type='get' id='u1' from='alice@localhost/a' to='echo.localhost'>\
             <query xmlns='urn:example:nothing'/></iq>"
        ));
        router.dispatch(&handle, iq).await;
        let reply = rx.try_recv().expect("one reply");
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("id"), Some("u1"));
        assert_eq!(reply.attr("to"), Some("alice@localhost/a"));
        assert_eq!(reply.attr("from"), Some("echo.localhost"));
        assert_eq!(
            error_condition(&reply).as_deref(),
            Some("service-unavailable")
        );
        assert!(rx.try_recv().is_err(), "exactly one reply");
    }

    #[tokio::test]
    async fn handler_errors_and_panics_become_error_replies() {
        let (handle, mut rx) = setup();
        let router = Router::new()
            .iq_get("a", "urn:t", |_, _| async {
                Err(stanza_error(DefinedCondition::NotAllowed, Some("no")))
            })
            .iq_get("b", "urn:t", |_, _| async { panic!("handler bug") });
        for (id, name) in [("1", "a"), ("2", "b")] {
            let iq = parse(&format!(
                "<iq {NS} type='get' id='{id}' from='alice@localhost/a' to='echo.localhost'>\
                 <{name} xmlns='urn:t'/></iq>"
            ));
            router.dispatch(&handle, iq).await;
        }
        let first = rx.try_recv().expect("reply to a");
        assert_eq!(error_condition(&first).as_deref(), Some("not-allowed"));
        let second = rx.try_recv().expect("reply to b");
        assert_eq!(second.attr("id"), Some("2"));
        assert_eq!(
            error_condition(&second).as_deref(),
            Some("internal-server-error")
        );
    }

    #[tokio::test]
    async fn results_and_errors_are_never_answered() {
        let (handle, mut rx) = setup();
        let router = Router::new();
        for kind in ["result", "error"] {
            let iq = parse(&format!(
                "<iq {NS} type='{kind}' id='r' from='alice@localhost/a' to='echo.localhost'/>"
            ));
            router.dispatch(&handle, iq).await;
        }
        let message_error = parse(&format!(
            "<message {NS} type='error' from='alice@localhost/a' to='echo.localhost'/>"
        ));
        router.dispatch(&handle, message_error).await;
        assert!(rx.try_recv().is_err(), "nothing may be sent");
    }

    #[tokio::test]
    async fn malformed_get_gets_bad_request() {
        let (handle, mut rx) = setup();
        let iq = parse(&format!(
            "<iq {NS} type='get' id='m' from='alice@localhost/a' to='echo.localhost'/>"
        ));
        Router::new().dispatch(&handle, iq).await;
        let reply = rx.try_recv().expect("one reply");
        assert_eq!(error_condition(&reply).as_deref(), Some("bad-request"));
    }

    #[tokio::test]
    async fn builtins_answer_disco_ping_and_version() {
        let (handle, mut rx) = setup();
        let router = Router::new()
            .identity("component", "generic", "Echo")
            .software("xmpp-echo", "1.2.3")
            .iq_set("query", "jabber:iq:register", |_, _| async { Ok(None) });
        for (id, payload) in [
            (
                "d",
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            ),
            ("p", "<ping xmlns='urn:xmpp:ping'/>"),
            ("v", "<query xmlns='jabber:iq:version'/>"),
            (
                "i",
                "<query xmlns='http://jabber.org/protocol/disco#items'/>",
            ),
        ] {
            let iq = parse(&format!(
                "<iq {NS} type='get' id='{id}' from='alice@localhost/a' to='echo.localhost'>{payload}</iq>"
            ));
            router.dispatch(&handle, iq).await;
        }
        let disco = DiscoInfoResult::try_from(
            Iq::try_from(rx.try_recv().expect("disco reply"))
                .ok()
                .and_then(|iq| match iq {
                    Iq::Result { payload, .. } => payload,
                    _ => None,
                })
                .expect("disco payload"),
        )
        .expect("disco parses");
        assert_eq!(disco.identities[0].name.as_deref(), Some("Echo"));
        for feature in [ns::DISCO_INFO, ns::PING, ns::VERSION, "jabber:iq:register"] {
            assert!(disco.features.contains(feature), "missing {feature}");
        }
        let ping = rx.try_recv().expect("ping reply");
        assert_eq!(ping.attr("type"), Some("result"));
        let version = rx.try_recv().expect("version reply");
        let query = version
            .get_child("query", ns::VERSION)
            .expect("version payload");
        assert_eq!(
            query.get_child("version", ns::VERSION).map(|v| v.text()),
            Some("1.2.3".to_owned())
        );
        let items = rx.try_recv().expect("items reply");
        assert_eq!(items.attr("type"), Some("result"));
    }
}
