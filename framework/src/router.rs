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
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};
use xmpp_parsers::version::VersionResult;

use crate::adhoc::{CommandRequest, CommandStep, Commands, NS_COMMANDS};
pub use crate::error::stanza_error;
use crate::handle::Handle;
use crate::stanza::Stanza;
use crate::xmlstream::InvalidStanza;

/// What the reader hands to the router: a stanza, or one that failed validation.
// Stanzas are the common, large case; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A parsed stanza.
    Stanza(Stanza),
    /// A message/presence/IQ that is not valid.
    Invalid(InvalidStanza),
}

impl Inbound {
    /// The sender as written (empty when absent), for per-sender state and logs.
    pub(crate) fn sender(&self) -> &str {
        match self {
            Inbound::Stanza(Stanza::Element(e)) => e.attr("from").unwrap_or_default(),
            Inbound::Stanza(stanza) => stanza.from_jid().map(Jid::as_str).unwrap_or_default(),
            Inbound::Invalid(invalid) => invalid.from.as_ref().map(Jid::as_str).unwrap_or_default(),
        }
    }
}

/// A boxed, sendable future, as stored in the router.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a raw IQ handler may return: the result payload (or none), or the error to send back.
pub type IqResult = Result<Option<Element>, StanzaError>;

/// An IQ get or set addressed to the component, with its payload as `P` (parsed by a
/// typed route) or as the raw [`Element`] ([`IqRequest`]).
#[derive(Debug, Clone)]
pub struct Request<P = Element> {
    /// The requester (always present: the server stamps it).
    pub from: Jid,
    /// The JID at our domain it was sent to.
    pub to: Jid,
    /// The request id; the reply reuses it.
    pub id: String,
    /// The single payload.
    pub payload: P,
}

/// An IQ request with its payload as a raw element.
pub type IqRequest = Request<Element>;

/// An IQ payload type a route can be keyed by: its element name and namespace, and how
/// to parse it (`TryFrom<Element>`, as every `xmpp-parsers` and `xso`-derived type has).
/// A payload that fails to parse is answered `bad-request` with the error's text.
pub trait IqPayload: TryFrom<Element, Error: std::fmt::Display> + Send + 'static {
    /// The payload's element name, e.g. `query`.
    const NAME: &'static str;
    /// The payload's namespace, e.g. `jabber:iq:register`; announced in disco#info.
    const NS: &'static str;
}

/// What an IQ handler may answer with: a typed payload, a raw element, or nothing
/// (`()`: an empty `result`).
pub trait IqReply: Send + 'static {
    /// The payload of the `result`.
    fn into_payload(self) -> Option<Element>;
}

impl IqReply for () {
    fn into_payload(self) -> Option<Element> {
        None
    }
}

impl IqReply for Element {
    fn into_payload(self) -> Option<Element> {
        Some(self)
    }
}

impl<T: IqReply> IqReply for Option<T> {
    fn into_payload(self) -> Option<Element> {
        self.and_then(IqReply::into_payload)
    }
}

impl<T: IqPayload + Into<Element>> IqReply for T {
    fn into_payload(self) -> Option<Element> {
        Some(self.into())
    }
}

/// An IQ reply plus stanzas the router sends strictly after it, in order: XEP-0077
/// registration answers `result` and only then subscribes to the user.
#[derive(Debug)]
pub struct Answer<R> {
    /// The reply: a payload or the error to send back.
    pub reply: Result<R, StanzaError>,
    /// Stanzas queued right after the reply.
    pub then: Vec<Stanza>,
}

impl<R> Answer<R> {
    /// An answer with no follow-up stanzas yet.
    pub fn new(reply: Result<R, StanzaError>) -> Self {
        Answer {
            reply,
            then: Vec::new(),
        }
    }

    /// Adds a stanza to send after the reply.
    pub fn then(mut self, stanza: impl Into<Stanza>) -> Self {
        self.then.push(stanza.into());
        self
    }
}

/// What an IQ handler returns: `Result<R, StanzaError>` or an [`Answer`] with follow-ups.
pub trait IntoAnswer: Send + 'static {
    /// The reply payload (or error) and the follow-up stanzas.
    fn into_answer(self) -> (IqResult, Vec<Stanza>);
}

impl<R: IqReply> IntoAnswer for Result<R, StanzaError> {
    fn into_answer(self) -> (IqResult, Vec<Stanza>) {
        (self.map(IqReply::into_payload), Vec::new())
    }
}

impl<R: IqReply> IntoAnswer for Answer<R> {
    fn into_answer(self) -> (IqResult, Vec<Stanza>) {
        (self.reply.map(IqReply::into_payload), self.then)
    }
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

pub(crate) type StanzaHandler<T> = Arc<dyn Fn(Handle, T) -> BoxFuture<()> + Send + Sync>;
type IqHandler = Arc<dyn Fn(Handle, IqRequest) -> BoxFuture<(IqResult, Vec<Stanza>)> + Send + Sync>;
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
/// to [`crate::Component`]. For handlers that share state, start with
/// [`Router::with_state`].
///
/// Registering two handlers for the same route (two `message` handlers, two for one
/// message namespace, two for one IQ payload) is a configuration error reported when
/// the component starts, never a silent replacement.
pub struct Router {
    message: Option<StanzaHandler<Message>>,
    message_routes: Vec<(String, StanzaHandler<Message>)>,
    presence: Option<StanzaHandler<Presence>>,
    iqs: Vec<IqRoute>,
    items: Option<ItemsHandler>,
    connected: Vec<ConnectedHandler>,
    identities: Vec<Identity>,
    features: Vec<String>,
    software: (String, String),
    pub(crate) commands: Commands,
    conflicts: Vec<String>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

/// Wraps a message/presence handler into the stored form.
fn stanza_handler<T, F, Fut, O>(what: &'static str, handler: F) -> StanzaHandler<T>
where
    T: 'static,
    F: Fn(Handle, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = O> + Send + 'static,
    O: HandlerOutcome,
{
    Arc::new(move |h, t| {
        let fut = handler(h, t);
        Box::pin(async move { fut.await.report(what) })
    })
}

impl Router {
    /// An empty router: only the built-in disco#info, disco#items, ping and version answer.
    pub fn new() -> Self {
        Router {
            message: None,
            message_routes: Vec::new(),
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
            commands: Commands::default(),
            conflicts: Vec::new(),
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

    /// Handles inbound messages no [`Router::message_ns`] route took (including `error`
    /// ones: check `type_`). Without it, chat and normal messages get
    /// `service-unavailable`.
    pub fn message<F, Fut, O>(mut self, handler: F) -> Self
    where
        F: Fn(Handle, Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutcome,
    {
        if self.message.is_some() {
            self.conflicts.push("two message handlers".into());
        }
        self.message = Some(stanza_handler("message", handler));
        self
    }

    /// Handles messages carrying a payload in `namespace` (e.g. `xmpp:game:pong`); the
    /// first payload with a routed namespace picks the handler.
    pub fn message_ns<F, Fut, O>(mut self, namespace: &str, handler: F) -> Self
    where
        F: Fn(Handle, Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutcome,
    {
        if self.message_routes.iter().any(|(ns, _)| ns == namespace) {
            self.conflicts
                .push(format!("two message handlers for namespace {namespace}"));
        }
        self.message_routes
            .push((namespace.to_owned(), stanza_handler("message", handler)));
        self
    }

    /// Handles every inbound presence.
    pub fn presence<F, Fut, O>(mut self, handler: F) -> Self
    where
        F: Fn(Handle, Presence) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutcome,
    {
        if self.presence.is_some() {
            self.conflicts.push("two presence handlers".into());
        }
        self.presence = Some(stanza_handler("presence", handler));
        self
    }

    /// Handles IQ `get` requests whose payload parses as `P`; the handler gets it parsed
    /// and answers `Result<R, StanzaError>` (or an [`Answer`] with follow-ups).
    pub fn get<P, F, Fut>(self, handler: F) -> Self
    where
        P: IqPayload,
        F: Fn(Handle, Request<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoAnswer> + Send + 'static,
    {
        self.typed(IqKind::Get, handler)
    }

    /// Handles IQ `set` requests whose payload parses as `P` (see [`Router::get`]).
    pub fn set<P, F, Fut>(self, handler: F) -> Self
    where
        P: IqPayload,
        F: Fn(Handle, Request<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoAnswer> + Send + 'static,
    {
        self.typed(IqKind::Set, handler)
    }

    /// Handles IQ `get` requests whose payload is `<name xmlns='namespace'/>`, as a raw
    /// element (for payloads without a type).
    pub fn iq_get<F, Fut>(self, name: &str, namespace: &str, handler: F) -> Self
    where
        F: Fn(Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoAnswer> + Send + 'static,
    {
        self.iq(IqKind::Get, name, namespace, handler)
    }

    /// Handles IQ `set` requests whose payload is `<name xmlns='namespace'/>`, raw.
    pub fn iq_set<F, Fut>(self, name: &str, namespace: &str, handler: F) -> Self
    where
        F: Fn(Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoAnswer> + Send + 'static,
    {
        self.iq(IqKind::Set, name, namespace, handler)
    }

    /// Offers an XEP-0050 ad-hoc command at `node`, listed as `name` in the client's
    /// commands menu. `handler` answers each step; see [`crate::adhoc`].
    pub fn command<F, Fut>(mut self, node: &str, name: &str, handler: F) -> Self
    where
        F: Fn(Handle, CommandRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CommandStep, StanzaError>> + Send + 'static,
    {
        if !self.commands.add(node, name, handler) {
            self.conflicts
                .push(format!("two ad-hoc commands at node '{node}'"));
        }
        self
    }

    /// Supplies the disco#items list (XEP-0030); by default it is empty.
    pub fn disco_items<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Item>> + Send + 'static,
    {
        if self.items.is_some() {
            self.conflicts.push("two disco#items providers".into());
        }
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

    /// The routes registered twice, as a configuration error; checked at start-up.
    pub fn check(&self) -> Result<(), crate::Error> {
        if self.conflicts.is_empty() {
            return Ok(());
        }
        Err(crate::Error::Config(format!(
            "the router has conflicting routes: {}",
            self.conflicts.join("; ")
        )))
    }

    fn typed<P, F, Fut>(self, kind: IqKind, handler: F) -> Self
    where
        P: IqPayload,
        F: Fn(Handle, Request<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoAnswer> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.iq(kind, P::NAME, P::NS, move |h, request: IqRequest| {
            let handler = Arc::clone(&handler);
            async move {
                let payload = match P::try_from(request.payload) {
                    Ok(payload) => payload,
                    Err(error) => {
                        let text = format!("invalid <{}/>: {error}", P::NAME);
                        let error = stanza_error(DefinedCondition::BadRequest, Some(&text));
                        return Answer::new(Err(error));
                    }
                };
                let request = Request {
                    from: request.from,
                    to: request.to,
                    id: request.id,
                    payload,
                };
                let (reply, then) = handler(h, request).await.into_answer();
                Answer { reply, then }
            }
        })
    }

    fn iq<F, Fut>(mut self, kind: IqKind, name: &str, namespace: &str, handler: F) -> Self
    where
        F: Fn(Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoAnswer> + Send + 'static,
    {
        if self
            .iqs
            .iter()
            .any(|r| r.kind == kind && r.name == name && r.namespace == namespace)
        {
            self.conflicts.push(format!(
                "two IQ {} handlers for <{name} xmlns='{namespace}'/>",
                if kind == IqKind::Get { "get" } else { "set" }
            ));
        }
        self.iqs.push(IqRoute {
            kind,
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            handler: Arc::new(move |h, r| {
                let fut = handler(h, r);
                Box::pin(async move { fut.await.into_answer() })
            }),
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
        if !self.commands.is_empty() {
            features.insert(NS_COMMANDS.to_owned());
        }
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

    /// The work for one inbound stanza (including any IQ reply), as a future to poll.
    ///
    /// A message or presence with a handler returns the handler's own (boxed) future, so
    /// the common path allocates once and moves only a pointer; the dispatcher catches
    /// panics around it.
    pub(crate) fn dispatch(self: &Arc<Self>, handle: &Handle, inbound: Inbound) -> BoxFuture<()> {
        match inbound {
            Inbound::Stanza(Stanza::Message(message)) => match self.message_route(&message) {
                Some(handler) => handler(handle.clone(), message),
                None => {
                    let handle = handle.clone();
                    Box::pin(async move { reject_message(&handle, message).await })
                }
            },
            Inbound::Stanza(Stanza::Presence(presence)) => match &self.presence {
                Some(handler) => handler(handle.clone(), presence),
                None => Box::pin(std::future::ready(())),
            },
            Inbound::Stanza(Stanza::Iq(iq)) => {
                let (router, handle) = (Arc::clone(self), handle.clone());
                Box::pin(async move { router.dispatch_iq(&handle, iq).await })
            }
            Inbound::Stanza(Stanza::Element(element)) => {
                tracing::debug!(
                    element = element.name(),
                    "ignoring unknown top-level element"
                );
                Box::pin(std::future::ready(()))
            }
            // The parser never produces these; they exist only for sending.
            Inbound::Stanza(Stanza::Shared(_)) => Box::pin(std::future::ready(())),
            Inbound::Invalid(invalid) => {
                let handle = handle.clone();
                Box::pin(async move { dispatch_invalid(&handle, invalid).await })
            }
        }
    }

    /// The handler for `message`: a namespace route, else the fallback.
    fn message_route(&self, message: &Message) -> Option<&StanzaHandler<Message>> {
        if !self.message_routes.is_empty() {
            for payload in &message.payloads {
                let ns = payload.ns();
                if let Some((_, handler)) = self.message_routes.iter().find(|(n, _)| *n == ns) {
                    return Some(handler);
                }
            }
        }
        self.message.as_ref()
    }

    async fn dispatch_iq(&self, handle: &Handle, iq: Iq) {
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
        let (outcome, then) = self.answer_iq(handle, kind, request).await;
        send_reply(handle, reply_to(from, to, id, outcome)).await;
        for stanza in then {
            send_reply(handle, stanza).await;
        }
    }

    async fn answer_iq(
        &self,
        handle: &Handle,
        kind: IqKind,
        request: IqRequest,
    ) -> (IqResult, Vec<Stanza>) {
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
                    (
                        Err(stanza_error(DefinedCondition::InternalServerError, None)),
                        Vec::new(),
                    )
                }
            };
        }
        (self.answer_builtin(handle, kind, request).await, Vec::new())
    }

    /// disco#info, disco#items, ping and version, unless a handler took them over.
    async fn answer_builtin(&self, handle: &Handle, kind: IqKind, request: IqRequest) -> IqResult {
        let (name, namespace) = (request.payload.name().to_owned(), request.payload.ns());
        match (kind, name.as_str(), namespace.as_str()) {
            (IqKind::Get, "query", ns::DISCO_INFO) => match request.payload.attr("node") {
                None => Ok(Some(self.disco_info().into())),
                Some(node) => match self.commands.node_info(node) {
                    Some(info) => Ok(Some(info.into())),
                    None => Err(stanza_error(DefinedCondition::ItemNotFound, None)),
                },
            },
            (IqKind::Set, "command", NS_COMMANDS) => self
                .commands
                .execute(handle, request.from, &request.payload)
                .await
                .map(Some),
            (IqKind::Get, "query", ns::DISCO_ITEMS) => {
                let node = request.payload.attr("node").map(str::to_owned);
                let items = match &self.items {
                    _ if node.as_deref() == Some(NS_COMMANDS) => self.commands.items(handle.jid()),
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

pub(crate) fn reply_to(requester: Jid, us: Jid, id: String, outcome: IqResult) -> Iq {
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

pub(crate) async fn send_reply(handle: &Handle, reply: impl Into<Stanza>) {
    if let Err(error) = handle.send(reply).await {
        tracing::warn!(%error, "could not queue a reply");
    }
}

/// No message handler: RFC 6121 §8.5.2 says chat and normal messages get
/// `service-unavailable`; other types are dropped.
async fn reject_message(handle: &Handle, message: Message) {
    if !matches!(message.type_, MessageType::Chat | MessageType::Normal) {
        return;
    }
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

/// A malformed get/set still deserves its one reply (`bad-request`). A stanza over the
/// size or depth cap gets `policy-violation`: as the IQ reply, or as an error message
/// for a message (never for an error); presences and the rest are dropped.
async fn dispatch_invalid(handle: &Handle, invalid: InvalidStanza) {
    let is_request =
        invalid.name == "iq" && matches!(invalid.type_.as_deref(), Some("get") | Some("set"));
    let (condition, text) = if invalid.cause.is_over_limit() {
        let text = format!("stanza refused: {}", invalid.reason);
        (DefinedCondition::PolicyViolation, text)
    } else {
        let text = format!("malformed {}: {}", invalid.name, invalid.reason);
        (DefinedCondition::BadRequest, text)
    };
    let error = stanza_error(condition, Some(&text));
    let to = invalid.to.unwrap_or_else(|| handle.jid().clone());
    match (invalid.name.as_str(), is_request, invalid.id, invalid.from) {
        ("iq", true, Some(id), Some(from)) => {
            tracing::debug!(reason = %invalid.reason, "answering an invalid IQ with an error");
            send_reply(handle, reply_to(from, to, id, Err(error))).await;
        }
        ("message", _, id, Some(from))
            if invalid.cause.is_over_limit() && invalid.type_.as_deref() != Some("error") =>
        {
            let mut reply = Message::error(from);
            reply.id = id.map(xmpp_parsers::message::Id);
            reply.from = Some(to);
            reply.payloads.push(error.into());
            send_reply(handle, reply).await;
        }
        _ => {
            tracing::debug!(stanza = %invalid.name, reason = %invalid.reason, "dropping invalid stanza")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{inbound as parse, sent, setup_for};
    use tokio::sync::mpsc;

    fn setup() -> (Handle, mpsc::Receiver<crate::handle::Queued>) {
        setup_for("echo.localhost")
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
        let router = Arc::new(Router::new());
        let iq = parse(&format!(
            "<iq {NS} type='get' id='u1' from='alice@localhost/a' to='echo.localhost'>\
             <query xmlns='urn:example:nothing'/></iq>"
        ));
        router.dispatch(&handle, iq).await;
        let reply = sent(&mut rx).expect("one reply");
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("id"), Some("u1"));
        assert_eq!(reply.attr("to"), Some("alice@localhost/a"));
        assert_eq!(reply.attr("from"), Some("echo.localhost"));
        assert_eq!(
            error_condition(&reply).as_deref(),
            Some("service-unavailable")
        );
        assert!(sent(&mut rx).is_none(), "exactly one reply");
    }

    #[tokio::test]
    async fn handler_errors_and_panics_become_error_replies() {
        let (handle, mut rx) = setup();
        let router = Router::new()
            .iq_get("a", "urn:t", |_, _| async {
                IqResult::Err(stanza_error(DefinedCondition::NotAllowed, Some("no")))
            })
            .iq_get("b", "urn:t", |_, _| async {
                if true {
                    panic!("handler bug");
                }
                IqResult::Ok(None)
            });
        let router = Arc::new(router);
        for (id, name) in [("1", "a"), ("2", "b")] {
            let iq = parse(&format!(
                "<iq {NS} type='get' id='{id}' from='alice@localhost/a' to='echo.localhost'>\
                 <{name} xmlns='urn:t'/></iq>"
            ));
            router.dispatch(&handle, iq).await;
        }
        let first = sent(&mut rx).expect("reply to a");
        assert_eq!(error_condition(&first).as_deref(), Some("not-allowed"));
        let second = sent(&mut rx).expect("reply to b");
        assert_eq!(second.attr("id"), Some("2"));
        assert_eq!(
            error_condition(&second).as_deref(),
            Some("internal-server-error")
        );
    }

    #[tokio::test]
    async fn follow_up_stanzas_are_sent_after_the_reply_in_order() {
        let (handle, mut rx) = setup();
        let router = Arc::new(Router::new().iq_set(
            "query",
            "jabber:iq:register",
            |_, r: IqRequest| async move {
                let user = r.from.to_bare();
                let presence = |kind| Presence::new(kind).with_to(user.clone());
                Answer::new(Ok(()))
                    .then(presence(xmpp_parsers::presence::Type::Subscribe))
                    .then(presence(xmpp_parsers::presence::Type::Probe))
            },
        ));
        let iq = parse(&format!(
            "<iq {NS} type='set' id='r1' from='alice@localhost/a' to='echo.localhost'>\
             <query xmlns='jabber:iq:register'/></iq>"
        ));
        router.dispatch(&handle, iq).await;
        let reply = sent(&mut rx).expect("reply");
        assert_eq!((reply.name(), reply.attr("type")), ("iq", Some("result")));
        let first = sent(&mut rx).expect("first follow-up");
        assert_eq!(first.attr("type"), Some("subscribe"));
        assert_eq!(first.attr("to"), Some("alice@localhost"));
        let second = sent(&mut rx).expect("second follow-up");
        assert_eq!(second.attr("type"), Some("probe"));
        assert!(sent(&mut rx).is_none());
    }

    #[tokio::test]
    async fn results_and_errors_are_never_answered() {
        let (handle, mut rx) = setup();
        let router = Arc::new(Router::new());
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
        assert!(sent(&mut rx).is_none(), "nothing may be sent");
    }

    #[tokio::test]
    async fn malformed_get_gets_bad_request() {
        let (handle, mut rx) = setup();
        let iq = parse(&format!(
            "<iq {NS} type='get' id='m' from='alice@localhost/a' to='echo.localhost'/>"
        ));
        Arc::new(Router::new()).dispatch(&handle, iq).await;
        let reply = sent(&mut rx).expect("one reply");
        assert_eq!(error_condition(&reply).as_deref(), Some("bad-request"));
    }

    #[tokio::test]
    async fn builtins_answer_disco_ping_and_version() {
        let (handle, mut rx) = setup();
        let router = Arc::new(
            Router::new()
                .identity("component", "generic", "Echo")
                .software("xmpp-echo", "1.2.3")
                .iq_set("query", "jabber:iq:register", |_, _| async {
                    IqResult::Ok(None)
                }),
        );
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
            Iq::try_from(sent(&mut rx).expect("disco reply"))
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
        let ping = sent(&mut rx).expect("ping reply");
        assert_eq!(ping.attr("type"), Some("result"));
        let version = sent(&mut rx).expect("version reply");
        let query = version
            .get_child("query", ns::VERSION)
            .expect("version payload");
        assert_eq!(
            query.get_child("version", ns::VERSION).map(|v| v.text()),
            Some("1.2.3".to_owned())
        );
        let items = sent(&mut rx).expect("items reply");
        assert_eq!(items.attr("type"), Some("result"));
    }
}

#[cfg(test)]
mod typed_tests {
    //! Typed IQ routes, namespace message routes and route conflicts.
    use super::*;
    use crate::test_support::{inbound, iq, sent, setup};
    use xmpp_parsers::ping::Ping;

    impl IqPayload for Ping {
        const NAME: &'static str = "ping";
        const NS: &'static str = ns::PING;
    }

    /// A payload of our own: `<count xmlns='urn:t' n='…'/>`, `n` required.
    struct Count(u32);

    impl TryFrom<Element> for Count {
        type Error = String;
        fn try_from(e: Element) -> Result<Self, String> {
            let n = e.attr("n").ok_or("missing n")?;
            n.parse()
                .map(Count)
                .map_err(|_| format!("n={n:?} is not a number"))
        }
    }

    impl From<Count> for Element {
        fn from(c: Count) -> Element {
            Element::builder("count", "urn:t")
                .attr(
                    xso::exports::rxml::NcName::try_from("n").expect("valid name"),
                    c.0.to_string(),
                )
                .build()
        }
    }

    impl IqPayload for Count {
        const NAME: &'static str = "count";
        const NS: &'static str = "urn:t";
    }

    async fn double(_: Handle, request: Request<Count>) -> Result<Count, StanzaError> {
        Ok(Count(request.payload.0 * 2))
    }

    #[tokio::test]
    async fn typed_route_parses_the_payload_and_replies_typed() {
        let (handle, mut rx) = setup();
        let router = Arc::new(
            Router::new()
                .set(double)
                .get(|_, _: Request<Ping>| async { Ok::<_, StanzaError>(()) }),
        );
        router
            .dispatch(&handle, iq("set", "<count xmlns='urn:t' n='21'/>"))
            .await;
        let reply = sent(&mut rx).expect("reply");
        assert_eq!(reply.attr("type"), Some("result"));
        let count = reply.get_child("count", "urn:t").expect("typed payload");
        assert_eq!(count.attr("n"), Some("42"));
        router
            .dispatch(&handle, iq("get", "<ping xmlns='urn:xmpp:ping'/>"))
            .await;
        let pong = sent(&mut rx).expect("ping reply");
        assert_eq!(pong.attr("type"), Some("result"));
        assert!(pong.children().next().is_none(), "() is an empty result");
        assert!(router.disco_info().features.contains("urn:t"));
    }

    #[tokio::test]
    async fn typed_route_answers_bad_request_with_the_parse_error() {
        let (handle, mut rx) = setup();
        let router = Arc::new(Router::new().set(double));
        router
            .dispatch(&handle, iq("set", "<count xmlns='urn:t' n='x'/>"))
            .await;
        let reply = sent(&mut rx).expect("reply");
        assert_eq!(reply.attr("type"), Some("error"));
        let error = reply
            .get_child("error", crate::xmlstream::NS_COMPONENT)
            .expect("error");
        assert!(error.get_child("bad-request", ns::XMPP_STANZAS).is_some());
        let text = error
            .get_child("text", ns::XMPP_STANZAS)
            .expect("text")
            .text();
        assert!(text.contains("is not a number"), "{text}");
        // A get for a set-only route is not routed.
        router
            .dispatch(&handle, iq("get", "<count xmlns='urn:t' n='1'/>"))
            .await;
        let reply = sent(&mut rx).expect("reply");
        let error = reply
            .get_child("error", crate::xmlstream::NS_COMPONENT)
            .expect("error");
        assert!(
            error
                .get_child("service-unavailable", ns::XMPP_STANZAS)
                .is_some()
        );
    }

    #[tokio::test]
    async fn messages_route_by_payload_namespace_then_fallback() {
        let (handle, mut rx) = setup();
        let tagged = |tag: &'static str| {
            move |h: Handle, m: Message| async move {
                let to = m.from.clone().expect("sender");
                h.send(Message::new(Some(to)).with_body("en".into(), tag.into()))
                    .await
            }
        };
        let router = Arc::new(
            Router::new()
                .message_ns("urn:game", tagged("game"))
                .message(tagged("fallback")),
        );
        let message = |payload: &str| {
            inbound(&format!(
                "<message xmlns='jabber:component:accept' from='a@localhost/r' \
                 to='c.localhost'>{payload}</message>"
            ))
        };
        router
            .dispatch(&handle, message("<move xmlns='urn:game'/>"))
            .await;
        router.dispatch(&handle, message("<body>hi</body>")).await;
        router
            .dispatch(&handle, message("<x xmlns='urn:other'/>"))
            .await;
        let bodies: Vec<String> = std::iter::from_fn(|| sent(&mut rx))
            .map(|m| {
                m.get_child("body", crate::xmlstream::NS_COMPONENT)
                    .map(Element::text)
            })
            .map(Option::unwrap_or_default)
            .collect();
        assert_eq!(bodies, ["game", "fallback", "fallback"]);
    }

    #[test]
    fn a_route_registered_twice_is_a_start_up_error() {
        async fn nothing(_: Handle, _: Message) {}
        assert!(Router::new().message(nothing).check().is_ok());
        let twice = Router::new().message(nothing).message(nothing);
        let error = twice.check().expect_err("conflict").to_string();
        assert!(error.contains("two message handlers"), "{error}");
        let twice = Router::new().set(double).set(double);
        let error = twice.check().expect_err("conflict").to_string();
        assert!(error.contains("<count xmlns='urn:t'/>"), "{error}");
        let both = Router::new().set(double).get(double);
        assert!(both.check().is_ok(), "get and set are different routes");
    }
}
