//! XEP-0077 in-band registration for a component: the component implements [`Registrar`]
//! (its store hooks) and [`Router::registration`] answers the protocol around it.
//!
//! - `get` → the [`RegistrationForm`] the registrar builds: `<instructions/>`, then
//!   `<registered/>` when the user already is, then the XEP-0004 form, in the order the
//!   exmpp web-status bot sends them;
//! - `set` with `<remove/>` → [`Registrar::remove`];
//! - `set` with a form (or a bare legacy `<query/>`) → [`Registrar::register`], after
//!   checking the form is a `submit` of `FORM_TYPE` `jabber:iq:register`
//!   (`bad-request` with the reason otherwise).
//!
//! Hooks answer with an [`Answer`], so stanzas that must follow the `result` (XEP-0100:
//! subscribe to the user after they register) are sent strictly after it.

use std::future::Future;
use std::sync::Arc;

use minidom::Element;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

use crate::error::stanza_error;
use crate::forms::{FormError, SubmittedForm};
use crate::handle::Handle;
use crate::router::{Answer, IqRequest, Router};
use crate::state::StateRouter;

/// `jabber:iq:register`: the payload's namespace and the form's `FORM_TYPE`.
pub const NS_REGISTER: &str = ns::REGISTER;

/// The answer to a registration `get`.
#[derive(Debug, Clone)]
pub struct RegistrationForm {
    /// The `<instructions/>` for clients that do not show forms.
    pub instructions: String,
    /// Whether the user is registered already (`<registered/>`).
    pub registered: bool,
    /// The form, pre-filled with the user's current values when registered.
    pub form: DataForm,
}

impl From<RegistrationForm> for Element {
    fn from(answer: RegistrationForm) -> Element {
        let mut query = Element::builder("query", NS_REGISTER)
            .append(
                Element::builder("instructions", NS_REGISTER)
                    .append(answer.instructions)
                    .build(),
            )
            .build();
        if answer.registered {
            query.append_child(Element::bare("registered", NS_REGISTER));
        }
        query.append_child(answer.form.into());
        query
    }
}

/// What a registration `set` asks for.
#[derive(Debug, Clone)]
pub enum Submission {
    /// `<remove/>`: cancel the registration.
    Remove,
    /// Register or update, with the submitted form; `None` for a bare `<query/>` (a legacy
    /// client registering with the defaults).
    Register(Option<SubmittedForm>),
}

impl Submission {
    /// Reads a `<query xmlns='jabber:iq:register'/>` sent with `set`.
    pub fn parse(query: &Element) -> Result<Self, FormError> {
        if !query.is("query", NS_REGISTER) {
            let text = "not a jabber:iq:register query";
            return Err(FormError::Malformed(text.to_owned()));
        }
        if query.has_child("remove", NS_REGISTER) {
            return Ok(Submission::Remove);
        }
        let form = SubmittedForm::in_payload(query)?
            .map(|form| form.of_type(NS_REGISTER))
            .transpose()?;
        Ok(Submission::Register(form))
    }
}

/// The error for removing a registration that does not exist (XEP-0077 §3.2).
pub fn not_registered() -> StanzaError {
    stanza_error(DefinedCondition::RegistrationRequired, None)
}

/// A component's registration store, as three async hooks. `user` is the requester's full
/// JID as the server stamped it; key records by its bare part.
pub trait Registrar: Send + Sync + 'static {
    /// The form to offer `user`.
    fn form(
        &self,
        handle: &Handle,
        user: &Jid,
    ) -> impl Future<Output = Result<RegistrationForm, StanzaError>> + Send;

    /// Registers `user` or updates their registration from `form` (`None`: keep the current
    /// values or the defaults). Store it durably before answering `Ok`.
    fn register(
        &self,
        handle: &Handle,
        user: &Jid,
        form: Option<SubmittedForm>,
    ) -> impl Future<Output = Answer<()>> + Send;

    /// Forgets `user`; answer [`not_registered`] when there is nothing to forget.
    fn remove(&self, handle: &Handle, user: &Jid) -> impl Future<Output = Answer<()>> + Send;
}

impl Router {
    /// Answers XEP-0077 registration with `registrar`'s hooks (and announces
    /// `jabber:iq:register` in disco#info).
    pub fn registration<R: Registrar>(self, registrar: Arc<R>) -> Self {
        let for_set = Arc::clone(&registrar);
        self.iq_get("query", NS_REGISTER, move |handle, request: IqRequest| {
            let registrar = Arc::clone(&registrar);
            async move {
                registrar
                    .form(&handle, &request.from)
                    .await
                    .map(Element::from)
            }
        })
        .iq_set("query", NS_REGISTER, move |handle, request: IqRequest| {
            let registrar = Arc::clone(&for_set);
            async move {
                match Submission::parse(&request.payload) {
                    Err(error) => Answer::new(Err(error.into())),
                    Ok(Submission::Remove) => registrar.remove(&handle, &request.from).await,
                    Ok(Submission::Register(form)) => {
                        registrar.register(&handle, &request.from, form).await
                    }
                }
            }
        })
    }
}

impl<S: Registrar> StateRouter<S> {
    /// Answers XEP-0077 registration with the state's [`Registrar`] hooks.
    pub fn registration(self) -> Self {
        let registrar = self.state().arc();
        self.map(|router| router.registration(registrar))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::forms::FormBuilder;
    use crate::test_support::{ask, condition, setup};

    /// Registrations in memory: bare JID → the `color` field.
    #[derive(Default)]
    struct Colors(Mutex<Vec<(String, String)>>);

    impl Colors {
        fn get(&self, user: &Jid) -> Option<String> {
            let users = self.0.lock().expect("lock");
            let bare = user.to_bare().to_string();
            users
                .iter()
                .find(|(u, _)| *u == bare)
                .map(|(_, c)| c.clone())
        }
    }

    impl Registrar for Colors {
        async fn form(&self, _: &Handle, user: &Jid) -> Result<RegistrationForm, StanzaError> {
            let color = self.get(user);
            Ok(RegistrationForm {
                instructions: "Pick a color".into(),
                registered: color.is_some(),
                form: FormBuilder::new()
                    .form_type(NS_REGISTER)
                    .text("color", "Color", color.as_deref().unwrap_or("blue"))
                    .build(),
            })
        }

        async fn register(
            &self,
            _: &Handle,
            user: &Jid,
            form: Option<SubmittedForm>,
        ) -> Answer<()> {
            let color = match form.as_ref().map(|f| f.required_text("color")).transpose() {
                Ok(color) => color.unwrap_or("blue").to_owned(),
                Err(error) => return Answer::new(Err(error.into())),
            };
            let bare = user.to_bare().to_string();
            let mut users = self.0.lock().expect("lock");
            users.retain(|(u, _)| *u != bare);
            users.push((bare, color));
            Answer::new(Ok(()))
        }

        async fn remove(&self, _: &Handle, user: &Jid) -> Answer<()> {
            if self.get(user).is_none() {
                return Answer::new(Err(not_registered()));
            }
            let bare = user.to_bare().to_string();
            self.0.lock().expect("lock").retain(|(u, _)| *u != bare);
            Answer::new(Ok(()))
        }
    }

    const GET: &str = "<query xmlns='jabber:iq:register'/>";
    const REMOVE: &str = "<query xmlns='jabber:iq:register'><remove/></query>";

    fn names(reply: &Element) -> Vec<String> {
        let query = reply.get_child("query", NS_REGISTER).expect("a query");
        query.children().map(|c| c.name().to_owned()).collect()
    }

    fn ann() -> Jid {
        "a@localhost".parse().expect("jid")
    }

    #[tokio::test]
    async fn get_set_update_and_remove() {
        let colors = Arc::new(Colors::default());
        let router = Arc::new(Router::new().registration(Arc::clone(&colors)));
        let mut link = setup();
        let form = ask(&router, &mut link, "get", GET).await;
        assert_eq!(names(&form), ["instructions", "x"], "not registered yet");
        assert!(router.disco_info().features.contains(NS_REGISTER));

        let set = "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
                   <field var='FORM_TYPE'><value>jabber:iq:register</value></field>\
                   <field var='color'><value>green</value></field></x></query>";
        let reply = ask(&router, &mut link, "set", set).await;
        assert_eq!(reply.attr("type"), Some("result"));
        assert!(reply.children().next().is_none(), "an empty result");
        assert_eq!(colors.get(&ann()).as_deref(), Some("green"));

        let again = ask(&router, &mut link, "get", GET).await;
        assert_eq!(names(&again), ["instructions", "registered", "x"]);
        assert!(String::from(&again).contains("<value>green</value>"));

        let removed = ask(&router, &mut link, "set", REMOVE).await;
        assert_eq!(removed.attr("type"), Some("result"));
        assert_eq!(colors.get(&ann()), None);
        let twice = ask(&router, &mut link, "set", REMOVE).await;
        assert_eq!(condition(&twice).as_deref(), Some("registration-required"));
    }

    #[tokio::test]
    async fn bad_submissions_are_refused_and_store_nothing() {
        let colors = Arc::new(Colors::default());
        let router = Arc::new(Router::new().registration(Arc::clone(&colors)));
        let mut link = setup();
        let cases = [
            ("<x xmlns='jabber:x:data' type='form'/>", "bad-request"),
            (
                "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>\
                 <value>urn:other</value></field></x>",
                "bad-request",
            ),
            (
                "<x xmlns='jabber:x:data' type='submit'><field var='color'/></x>",
                "not-acceptable",
            ),
        ];
        for (form, expected) in cases {
            let set = format!("<query xmlns='jabber:iq:register'>{form}</query>");
            let reply = ask(&router, &mut link, "set", &set).await;
            assert_eq!(condition(&reply).as_deref(), Some(expected), "{form}");
        }
        assert!(colors.0.lock().expect("lock").is_empty());
        // A bare <query/> registers with the defaults (legacy clients).
        let legacy = ask(&router, &mut link, "set", GET).await;
        assert_eq!(legacy.attr("type"), Some("result"));
        assert_eq!(colors.get(&ann()).as_deref(), Some("blue"));
    }
}
