//! [`StateRouter`]: a [`Router`] whose handlers share one state value, axum-style.
//!
//! `Router::with_state(app)` wraps the state in an `Arc` once; each handler takes a
//! [`State<S>`] (a cheap clone of that `Arc`, dereferencing to `S`) before the usual
//! arguments, so no component has to clone its state into every closure.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use xmpp_parsers::disco::Item;
use xmpp_parsers::message::Message;
use xmpp_parsers::presence::Presence;
use xmpp_parsers::stanza_error::StanzaError;

use crate::adhoc::{CommandRequest, CommandStep};
use crate::handle::Handle;
use crate::router::{HandlerOutcome, IntoAnswer, IqPayload, IqRequest, Request, Router};

/// The state shared by a [`StateRouter`]'s handlers; dereferences to `S`.
#[derive(Debug)]
pub struct State<S>(Arc<S>);

impl<S> Clone for State<S> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

impl<S> Deref for State<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.0
    }
}

impl<S> State<S> {
    /// The shared `Arc`, for handing the state to a task or an HTTP server.
    pub fn arc(&self) -> Arc<S> {
        Arc::clone(&self.0)
    }
}

/// A [`Router`] whose handlers take a [`State<S>`] first. Same methods, same rules;
/// it converts into a [`Router`] wherever one is expected.
pub struct StateRouter<S> {
    router: Router,
    state: State<S>,
}

impl Router {
    /// A router whose handlers share `state`: they take a [`State<S>`] first, as axum
    /// handlers do. See [`StateRouter`].
    pub fn with_state<S: Send + Sync + 'static>(state: S) -> StateRouter<S> {
        StateRouter::new(Router::new(), state)
    }
}

impl<S: Send + Sync + 'static> From<StateRouter<S>> for Router {
    fn from(routes: StateRouter<S>) -> Router {
        routes.router
    }
}

impl<S: Send + Sync + 'static> StateRouter<S> {
    pub(crate) fn new(router: Router, state: S) -> Self {
        StateRouter {
            router,
            state: State(Arc::new(state)),
        }
    }

    /// The shared state, e.g. to hand it to an HTTP server as well.
    pub fn state(&self) -> State<S> {
        self.state.clone()
    }

    /// See [`Router::identity`].
    pub fn identity(self, category: &str, type_: &str, name: &str) -> Self {
        self.map(|r| r.identity(category, type_, name))
    }

    /// See [`Router::feature`].
    pub fn feature(self, var: &str) -> Self {
        self.map(|r| r.feature(var))
    }

    /// See [`Router::software`].
    pub fn software(self, name: &str, version: &str) -> Self {
        self.map(|r| r.software(name, version))
    }

    /// See [`Router::message`].
    pub fn message<F, Fut, O>(self, handler: F) -> Self
    where
        F: Fn(State<S>, Handle, Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutcome,
    {
        let state = self.state.clone();
        self.map(|r| r.message(move |h, m| handler(state.clone(), h, m)))
    }

    /// See [`Router::message_ns`].
    pub fn message_ns<F, Fut, O>(self, namespace: &str, handler: F) -> Self
    where
        F: Fn(State<S>, Handle, Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutcome,
    {
        let state = self.state.clone();
        self.map(|r| r.message_ns(namespace, move |h, m| handler(state.clone(), h, m)))
    }

    /// See [`Router::presence`].
    pub fn presence<F, Fut, O>(self, handler: F) -> Self
    where
        F: Fn(State<S>, Handle, Presence) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: HandlerOutcome,
    {
        let state = self.state.clone();
        self.map(|r| r.presence(move |h, p| handler(state.clone(), h, p)))
    }

    /// See [`Router::get`].
    pub fn get<P, F, Fut>(self, handler: F) -> Self
    where
        P: IqPayload,
        F: Fn(State<S>, Handle, Request<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoAnswer> + Send + 'static,
    {
        let state = self.state.clone();
        self.map(|r| r.get(move |h, q| handler(state.clone(), h, q)))
    }

    /// See [`Router::set`].
    pub fn set<P, F, Fut>(self, handler: F) -> Self
    where
        P: IqPayload,
        F: Fn(State<S>, Handle, Request<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoAnswer> + Send + 'static,
    {
        let state = self.state.clone();
        self.map(|r| r.set(move |h, q| handler(state.clone(), h, q)))
    }

    /// See [`Router::iq_get`].
    pub fn iq_get<F, Fut>(self, name: &str, namespace: &str, handler: F) -> Self
    where
        F: Fn(State<S>, Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoAnswer> + Send + 'static,
    {
        let state = self.state.clone();
        self.map(|r| r.iq_get(name, namespace, move |h, q| handler(state.clone(), h, q)))
    }

    /// See [`Router::iq_set`].
    pub fn iq_set<F, Fut>(self, name: &str, namespace: &str, handler: F) -> Self
    where
        F: Fn(State<S>, Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output: IntoAnswer> + Send + 'static,
    {
        let state = self.state.clone();
        self.map(|r| r.iq_set(name, namespace, move |h, q| handler(state.clone(), h, q)))
    }

    /// See [`Router::command`].
    pub fn command<F, Fut>(self, node: &str, name: &str, handler: F) -> Self
    where
        F: Fn(State<S>, Handle, CommandRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CommandStep, StanzaError>> + Send + 'static,
    {
        let state = self.state.clone();
        self.map(|r| r.command(node, name, move |h, q| handler(state.clone(), h, q)))
    }

    /// See [`Router::disco_items`].
    pub fn disco_items<F, Fut>(self, handler: F) -> Self
    where
        F: Fn(State<S>, Handle, IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Item>> + Send + 'static,
    {
        let state = self.state.clone();
        self.map(|r| r.disco_items(move |h, q| handler(state.clone(), h, q)))
    }

    /// See [`Router::on_connected`].
    pub fn on_connected<F, Fut>(self, handler: F) -> Self
    where
        F: Fn(State<S>, Handle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let state = self.state.clone();
        self.map(|r| r.on_connected(move |h| handler(state.clone(), h)))
    }

    /// Applies a stateless [`Router`] method, e.g. to mount a helper's routes.
    pub fn map(mut self, f: impl FnOnce(Router) -> Router) -> Self {
        self.router = f(self.router);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use xmpp_parsers::jid::Jid;

    struct Counter {
        value: AtomicUsize,
    }

    async fn count(state: State<Counter>, _: Handle, _: Message) {
        state.value.fetch_add(1, Ordering::SeqCst);
    }

    #[tokio::test]
    async fn handlers_share_one_state() {
        let routes = Router::with_state(Counter {
            value: AtomicUsize::new(0),
        })
        .message(count)
        .presence(|state: State<Counter>, _, _| async move {
            state.value.fetch_add(10, Ordering::SeqCst);
        });
        let state = routes.state();
        let router = Arc::new(Router::from(routes));
        let (handle, _rx) = Handle::new(
            Jid::new("c.localhost").expect("jid"),
            4,
            Duration::from_secs(1),
        );
        let message = Message::new(None);
        let presence = Presence::available();
        use crate::router::Inbound;
        use crate::stanza::Stanza;
        router
            .dispatch(&handle, Inbound::Stanza(Stanza::Message(message)))
            .await;
        router
            .dispatch(&handle, Inbound::Stanza(Stanza::Presence(presence)))
            .await;
        assert_eq!(state.value.load(Ordering::SeqCst), 11);
    }
}
