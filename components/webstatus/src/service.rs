//! The XMPP side: the [`router`] and its handlers. Each handler is a thin adapter between
//! stanzas and [`App`] operations: registration (XEP-0077), the subscription handshake in
//! both directions (RFC 6121), presence ingestion and chat commands (also offered as
//! XEP-0050 commands by [`crate::menu`]).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use xmpp_component::forms::SubmittedForm;
use xmpp_component::ibr::{self, Registrar, RegistrationForm};
use xmpp_component::xmpp_parsers::delay::Delay;
use xmpp_component::xmpp_parsers::jid::Jid;
use xmpp_component::xmpp_parsers::message::{Message, MessageType};
use xmpp_component::xmpp_parsers::ns;
use xmpp_component::xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_component::xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};
use xmpp_component::{Answer, Handle, Router, SendError, Stanza, State, StateRouter, stanza_error};

use crate::app::{App, AppError};
use crate::commands::{self, Command};
use crate::limits::Refusal;
use crate::presence::Show;
use crate::register::{self, Choices};
use crate::registry::{Update, now};
use crate::store::{Consent, Options};

/// The component's router: identity, registration, presence, messages, probing on connect.
pub fn router(app: App, reprobe_every: Option<Duration>) -> StateRouter<App> {
    let generation = Arc::new(AtomicU64::new(0));
    let router = Router::with_state(app)
        .identity("component", "presence", "Web presence")
        .software("xmpp-webstatus", env!("CARGO_PKG_VERSION"))
        .registration()
        .presence(on_presence)
        .message(on_message)
        .on_connected(move |app: State<App>, handle| {
            crate::prober::run(
                (*app).clone(),
                handle,
                Arc::clone(&generation),
                reprobe_every,
            )
        });
    crate::menu::commands(router)
}

/// The bare part of a JID's normalised text, without allocating.
pub(crate) fn bare_str(jid: &Jid) -> &str {
    let text = jid.as_str();
    text.split_once('/').map_or(text, |(bare, _)| bare)
}

fn presence(kind: PresenceType, from: &Jid, to: &Jid) -> Presence {
    Presence::new(kind)
        .with_from(from.clone())
        .with_to(to.to_bare())
}

fn chat(from: &Jid, to: &Jid, kind: MessageType, text: String) -> Message {
    let mut message =
        Message::new_with_type(kind, Some(to.clone())).with_body(Default::default(), text);
    message.from = Some(from.clone());
    message
}

/// The stanza error for a refused new registration: `not-allowed` (cancel) for a domain
/// that may not register, `resource-constraint` (wait) for the limits; with its text.
fn refused(refusal: &Refusal) -> StanzaError {
    tracing::debug!(%refusal, "registration refused");
    let condition = if refusal.is_permanent() {
        DefinedCondition::NotAllowed
    } else {
        DefinedCondition::ResourceConstraint
    };
    stanza_error(condition, Some(&refusal.to_string()))
}

fn app_error(error: AppError) -> StanzaError {
    match error {
        AppError::Refused(refusal) => refused(&refusal),
        error => {
            tracing::error!(%error, "registration storage failed");
            stanza_error(DefinedCondition::InternalServerError, None)
        }
    }
}

/// XEP-0077 through the framework's helper: the form, register or update, `<remove/>`.
/// Follow-ups (XEP-0100: subscribe after registering, unsubscribe/unsubscribed/unavailable
/// after removal) are sent strictly after the `result`.
impl Registrar for App {
    async fn form(&self, _: &Handle, user: &Jid) -> Result<RegistrationForm, StanzaError> {
        let (token, record) = self.form_token(bare_str(user)).map_err(|r| refused(&r))?;
        let options = record.as_ref().map_or(Options::default(), |r| r.options);
        let settings = self.settings();
        Ok(register::form(
            options,
            record.is_some(),
            &settings.url(&token),
            &settings.domain,
        ))
    }

    async fn register(
        &self,
        handle: &Handle,
        user: &Jid,
        form: Option<SubmittedForm>,
    ) -> Answer<()> {
        let choices = match Choices::read(form.as_ref()) {
            Ok(choices) => choices,
            Err(error) => return Answer::new(Err(error.into())),
        };
        let registered = match self
            .register(bare_str(user), |current| choices.apply_to(current))
            .await
        {
            Ok(registered) => registered,
            Err(error) => return Answer::new(Err(app_error(error))),
        };
        let (us, user) = (handle.jid(), Jid::from(user.to_bare()));
        let answer = Answer::new(Ok(())).then(presence(PresenceType::Subscribe, us, &user));
        if !registered.created {
            return answer;
        }
        let url = self.settings().url(&registered.record.token);
        answer.then(chat(
            us,
            &user,
            MessageType::Chat,
            commands::your_url(&url, true),
        ))
    }

    async fn remove(&self, handle: &Handle, user: &Jid) -> Answer<()> {
        match self.unregister(bare_str(user)).await {
            Ok(true) => Answer {
                reply: Ok(()),
                then: goodbye(handle.jid(), &Jid::from(user.to_bare())),
            },
            Ok(false) => Answer::new(Err(ibr::not_registered())),
            Err(error) => Answer::new(Err(app_error(error))),
        }
    }
}

/// XEP-0100 §4.3: what we send after forgetting a user.
fn goodbye(us: &Jid, user: &Jid) -> Vec<Stanza> {
    [
        PresenceType::Unsubscribe,
        PresenceType::Unsubscribed,
        PresenceType::Unavailable,
    ]
    .into_iter()
    .map(|kind| presence(kind, us, user).into())
    .collect()
}

/// The status text in the default language, else any.
fn best_status(presence: &Presence) -> Option<&str> {
    presence
        .statuses
        .get("")
        .or_else(|| presence.statuses.get("en"))
        .or_else(|| presence.statuses.values().next())
        .map(String::as_str)
}

/// The XEP-0203 stamp of a delayed presence (a probe answer), as Unix seconds.
fn delay_stamp(presence: &Presence) -> Option<u64> {
    let element = presence
        .payloads
        .iter()
        .find(|p| p.is("delay", ns::DELAY))?;
    let delay = Delay::try_from(element.clone()).ok()?;
    let stamp = u64::try_from(delay.stamp.0.timestamp()).ok()?;
    Some(stamp.min(now()))
}

async fn on_presence(app: State<App>, handle: Handle, stanza: Presence) -> Result<(), SendError> {
    let Some(from) = stanza.from.as_ref() else {
        return Ok(());
    };
    let jid = bare_str(from);
    let us = stanza.to.clone().unwrap_or_else(|| handle.jid().clone());
    match stanza.type_ {
        PresenceType::None => {
            let update = Update::Available {
                resource: from.resource().map_or("", |r| r.as_str()),
                show: Show::from_xmpp(stanza.show.as_ref()),
                status: best_status(&stanza),
                priority: stanza.priority.0,
                since: delay_stamp(&stanza).unwrap_or_else(now),
            };
            if app.registry().apply(jid, update.clone()) == Some(Consent::Pending) {
                // We asked and have no answer, yet their presence reached us: they approved
                // while we were not looking (or sent it to us on purpose). On disk first.
                // A revocation, in contrast, stands until they grant again.
                match app.grant_if_pending(jid).await {
                    Ok(_) => {
                        app.registry().apply(jid, update);
                    }
                    Err(error) => tracing::warn!(%error, "could not persist consent"),
                }
            }
            Ok(())
        }
        PresenceType::Unavailable => {
            let resource = from.resource().map(|r| r.as_str());
            app.registry().apply(jid, Update::Unavailable { resource });
            Ok(())
        }
        PresenceType::Error => {
            // E.g. remote-server-not-found for a probe: we cannot see them.
            app.registry()
                .apply(jid, Update::Unavailable { resource: None });
            Ok(())
        }
        PresenceType::Subscribe => on_subscribe(app, handle, &stanza, from, &us).await,
        PresenceType::Subscribed => {
            if let Err(error) = app.set_consent(jid, Consent::Granted).await {
                tracing::warn!(%error, "could not persist consent");
            }
            Ok(())
        }
        PresenceType::Unsubscribed => {
            if let Err(error) = app.set_consent(jid, Consent::Revoked).await {
                tracing::warn!(%error, "could not persist revoked consent");
            }
            Ok(())
        }
        PresenceType::Unsubscribe => {
            handle
                .send(presence(PresenceType::Unsubscribed, &us, from))
                .await
        }
        PresenceType::Probe => handle.send(presence(PresenceType::None, &us, from)).await,
    }
}

/// Someone added us as a contact: register them (with the default options) if they are
/// new and the limits allow it, approve, say we are online, and ask for their presence in
/// return unless they granted it already. A refused newcomer gets a presence error saying
/// why and `unsubscribed` (their request is declined, so it does not stay pending).
async fn on_subscribe(
    app: State<App>,
    handle: Handle,
    stanza: &Presence,
    from: &Jid,
    us: &Jid,
) -> Result<(), SendError> {
    let user = Jid::from(from.to_bare());
    let jid = bare_str(from);
    let domain = handle.jid().clone();
    let registered = match app.register(jid, |options| options).await {
        Ok(registered) => registered,
        Err(error) => {
            let refusal = matches!(error, AppError::Refused(_));
            if !refusal {
                tracing::error!(%error, user = %jid, "could not register a new contact");
            }
            let mut reply = Presence::new(PresenceType::Error)
                .with_from(us.clone())
                .with_to(from.clone())
                .with_payloads(vec![app_error(error).into()]);
            reply.id = stanza.id.clone();
            handle.send(reply).await?;
            if refusal {
                handle
                    .send(presence(PresenceType::Unsubscribed, us, &user))
                    .await?;
            }
            return Ok(());
        }
    };
    handle
        .send(presence(PresenceType::Subscribed, us, &user))
        .await?;
    handle.send(presence(PresenceType::None, us, &user)).await?;
    if registered.record.consent != Consent::Granted {
        handle
            .send(presence(PresenceType::Subscribe, &domain, &user))
            .await?;
    }
    if registered.created {
        let url = app.settings().url(&registered.record.token);
        handle
            .send(chat(
                &domain,
                &user,
                MessageType::Chat,
                commands::your_url(&url, true),
            ))
            .await?;
    }
    Ok(())
}

async fn on_message(app: State<App>, handle: Handle, message: Message) -> Result<(), SendError> {
    if !matches!(message.type_, MessageType::Chat | MessageType::Normal) {
        return Ok(());
    }
    let (Some(from), Some((_, body))) = (message.from.as_ref(), message.get_best_body(vec![]))
    else {
        return Ok(());
    };
    let us = message.to.clone().unwrap_or_else(|| handle.jid().clone());
    let (text, after) = perform(&app, handle.jid(), from, Command::parse(body)).await;
    handle
        .send(chat(&us, from, message.type_.clone(), text))
        .await?;
    for stanza in after {
        handle.send(stanza).await?;
    }
    Ok(())
}

/// Runs one command for `from`, sent as a chat command or from a client's commands menu:
/// the text to answer and the stanzas to send after it (`domain` is our own JID).
pub(crate) async fn perform(
    app: &App,
    domain: &Jid,
    from: &Jid,
    command: Command,
) -> (String, Vec<Stanza>) {
    let jid = bare_str(from).to_owned();
    let user = Jid::from(from.to_bare());
    let settings = app.settings();
    let mut after: Vec<Stanza> = Vec::new();
    let outcome: Result<String, AppError> = match command {
        Command::Help => Ok(commands::help(&settings.domain)),
        Command::Unknown(text) => Ok(commands::unknown_command(&text, &settings.domain)),
        Command::Url => Ok(match app.registry().record(&jid) {
            Some(record) => commands::your_url(&settings.url(&record.token), false),
            None => commands::not_registered(&settings.domain),
        }),
        Command::Register => app.register(&jid, |o| o).await.map(|registered| {
            let url = settings.url(&registered.record.token);
            // As after the form: ask for their presence even if we think we have it. If we
            // do, their server answers `subscribed` by itself; if not (e.g. an unsolicited
            // `subscribed` that ejabberd passed on without a subscription), they are asked.
            after.push(presence(PresenceType::Subscribe, domain, &user).into());
            if registered.created {
                commands::your_url(&url, true)
            } else {
                format!(
                    "You are already registered. {}",
                    commands::your_url(&url, false)
                )
            }
        }),
        Command::Status(on) => {
            app.set_options(&jid, |o| o.show_status_msg = on)
                .await
                .map(|updated| match updated {
                    Some(_) if on => "Your status message is now shown on your web page.".into(),
                    Some(_) => "Your status message is now hidden.".into(),
                    None => commands::not_registered(&settings.domain),
                })
        }
        Command::Jid(on) => app
            .set_options(&jid, |o| o.show_full_jid = on)
            .await
            .map(|updated| match updated {
                Some(_) if on => "Your address is now shown on your web page.".into(),
                Some(_) => "Your address is now hidden.".into(),
                None => commands::not_registered(&settings.domain),
            }),
        Command::NewUrl => app.rotate_token(&jid).await.map(|rotated| match rotated {
            Some(record) => format!(
                "Your new web status URL is {} (the old one no longer works).",
                settings.url(&record.token)
            ),
            None => commands::not_registered(&settings.domain),
        }),
        Command::Unregister => app.unregister(&jid).await.map(|existed| {
            if existed {
                after = goodbye(domain, &user);
                "You are unregistered: your data is deleted and your URL no longer works."
                    .to_owned()
            } else {
                commands::not_registered(&settings.domain)
            }
        }),
    };
    let text = outcome.unwrap_or_else(|error| match error {
        AppError::Refused(refusal) => {
            tracing::debug!(%refusal, user = %jid, "registration refused");
            refusal.to_string()
        }
        error => {
            tracing::error!(%error, user = %jid, "command failed");
            "Sorry, that failed on our side; please try again later.".to_owned()
        }
    });
    (text, after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::testkit::{app_with, connect};
    use crate::token::Token;
    use xmpp_component::minidom::Element;
    use xmpp_component::testing::TestServer;

    const NS: &str = "xmlns='jabber:component:accept'";

    /// A component with an in-memory store and no users, connected to a test server.
    async fn running() -> (TestServer, App, tokio_util::sync::CancellationToken) {
        let (app, _) = app_with(&[], Default::default(), Duration::from_secs(5));
        let connected = connect(&app, None).await;
        (connected.server, app, connected.stop)
    }

    async fn recv(server: &mut TestServer) -> Element {
        server.recv().await.expect("a stanza")
    }

    /// The next stanza that is not a probe: the on-connect prober runs in a task of its own
    /// and, on a loaded machine, may probe a user registered a moment before.
    async fn recv_unless_probe(server: &mut TestServer) -> Element {
        loop {
            let stanza = recv(server).await;
            if stanza.attr("type") != Some("probe") {
                return stanza;
            }
        }
    }

    /// Sends `xml`, then a ping from `from` (whose stanzas are handled in order), and
    /// returns what the component sent before answering the ping: everything `xml` from
    /// `from` caused has happened by then. Probes are left out.
    async fn exchange(server: &mut TestServer, xml: &str, from: &str) -> Vec<Element> {
        static SENTINELS: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "sentinel-{}",
            SENTINELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        server
            .send_xml(&format!(
                "{xml}<iq {NS} type='get' id='{id}' from='{from}' to='webstatus.localhost'>\
                 <ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await
            .expect("send");
        let mut before = Vec::new();
        loop {
            let stanza = recv(server).await;
            if stanza.attr("id") == Some(id.as_str()) {
                assert_eq!(stanza.attr("type"), Some("result"), "sentinel ping");
                return before;
            }
            if stanza.attr("type") != Some("probe") {
                before.push(stanza);
            }
        }
    }

    /// (name, type) of each stanza, and its error condition and text if it is an error.
    fn kinds(stanzas: &[Element]) -> Vec<(String, Option<String>)> {
        stanzas
            .iter()
            .map(|s| (s.name().to_owned(), s.attr("type").map(str::to_owned)))
            .collect()
    }

    /// The defined condition, type and text of a stanza's `<error/>`.
    fn error_of(stanza: &Element) -> (String, String, String) {
        let error = stanza
            .children()
            .find(|c| c.name() == "error")
            .unwrap_or_else(|| panic!("no error in {stanza:?}"));
        let condition = error
            .children()
            .find(|c| c.name() != "text")
            .map(|c| c.name().to_owned())
            .unwrap_or_default();
        let text = error
            .children()
            .find(|c| c.name() == "text")
            .map(|t| t.text())
            .unwrap_or_default();
        (
            condition,
            error.attr("type").unwrap_or_default().to_owned(),
            text,
        )
    }

    fn body_of(stanza: &Element) -> String {
        stanza
            .children()
            .find(|c| c.name() == "body")
            .map(|b| b.text())
            .unwrap_or_default()
    }

    fn register_set(id: &str, from: &str) -> String {
        format!(
            "<iq {NS} type='set' id='{id}' from='{from}' to='webstatus.localhost'>\
             <query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='show_status_msg'><value>1</value></field></x></query></iq>"
        )
    }

    fn chat_from(from: &str, body: &str) -> String {
        format!(
            "<message {NS} type='chat' from='{from}' to='webstatus.localhost'>\
             <body>{body}</body></message>"
        )
    }

    fn subscribe_from(id: &str, from: &str) -> String {
        format!(
            "<presence {NS} type='subscribe' id='{id}' from='{from}' to='webstatus.localhost'/>"
        )
    }

    #[tokio::test]
    async fn newcomers_beyond_the_limits_are_refused_and_registered_users_never() {
        let (app, store) = crate::testkit::app_limited(crate::limits::Limits {
            max_users: 1,
            ..Default::default()
        });
        let mut connected = connect(&app, None).await;
        let server = &mut connected.server;
        let out = exchange(
            server,
            &register_set("a1", "alice@localhost/pc"),
            "alice@localhost/pc",
        )
        .await;
        assert_eq!(out[0].attr("type"), Some("result"), "{out:?}");
        let registered = app.registry().record("alice@localhost").expect("alice");

        // Bob, by each way in: refused with resource-constraint (wait), nothing stored.
        let out = exchange(
            server,
            &register_set("b1", "bob@localhost/pc"),
            "bob@localhost/pc",
        )
        .await;
        assert_eq!(
            kinds(&out),
            [("iq".into(), Some("error".into()))],
            "{out:?}"
        );
        let (condition, kind, text) = error_of(&out[0]);
        assert_eq!(
            (condition.as_str(), kind.as_str()),
            ("resource-constraint", "wait")
        );
        assert!(text.contains("maximum number of users"), "{text}");

        let out = exchange(
            server,
            &subscribe_from("s1", "bob@localhost"),
            "bob@localhost",
        )
        .await;
        assert_eq!(
            kinds(&out),
            [
                ("presence".into(), Some("error".into())),
                ("presence".into(), Some("unsubscribed".into()))
            ],
            "{out:?}"
        );
        assert_eq!(out[0].attr("id"), Some("s1"));
        assert_eq!(out[0].attr("to"), Some("bob@localhost"));
        assert_eq!(error_of(&out[0]).0, "resource-constraint");

        let out = exchange(
            server,
            &chat_from("bob@localhost/pc", "register"),
            "bob@localhost/pc",
        )
        .await;
        assert_eq!(kinds(&out), [("message".into(), Some("chat".into()))]);
        assert!(
            body_of(&out[0]).contains("maximum number of users"),
            "{out:?}"
        );
        assert!(app.registry().record("bob@localhost").is_none());
        assert_eq!(store.load_all().expect("load"), vec![registered.clone()]);

        // Alice: subscribing again, changing options, chat "register", then leaving.
        let out = exchange(
            server,
            &subscribe_from("s2", "alice@localhost"),
            "alice@localhost",
        )
        .await;
        assert_eq!(
            kinds(&out)[..2],
            [
                ("presence".into(), Some("subscribed".into())),
                ("presence".into(), None)
            ],
            "{out:?}"
        );
        let out = exchange(
            server,
            &register_set("a2", "alice@localhost/pc"),
            "alice@localhost/pc",
        )
        .await;
        assert_eq!(out[0].attr("type"), Some("result"), "{out:?}");
        let out = exchange(
            server,
            &chat_from("alice@localhost/pc", "register"),
            "alice@localhost/pc",
        )
        .await;
        assert!(body_of(&out[0]).contains("already registered"), "{out:?}");
        assert_eq!(app.registry().record("alice@localhost"), Some(registered));
        let out = exchange(
            server,
            &chat_from("alice@localhost/pc", "unregister"),
            "alice@localhost/pc",
        )
        .await;
        assert!(body_of(&out[0]).contains("unregistered"), "{out:?}");

        // A place is free again.
        let out = exchange(
            server,
            &register_set("b2", "bob@localhost/pc"),
            "bob@localhost/pc",
        )
        .await;
        assert_eq!(out[0].attr("type"), Some("result"), "{out:?}");
        connected.stop().await;
    }

    #[tokio::test]
    async fn domains_and_their_rate_are_enforced() {
        let (app, store) = crate::testkit::app_limited(crate::limits::Limits {
            registrations_per_domain: 2,
            allow_domains: Some(["localhost", "example.org"].map(String::from).into()),
            ..Default::default()
        });
        let mut connected = connect(&app, None).await;
        let server = &mut connected.server;

        // Not allowed: refused for good (cancel), already at the form.
        let get = "<iq xmlns='jabber:component:accept' type='get' id='g1' \
                   from='mallory@evil.test/x' to='webstatus.localhost'>\
                   <query xmlns='jabber:iq:register'/></iq>";
        let out = exchange(server, get, "mallory@evil.test/x").await;
        let (condition, kind, text) = error_of(&out[0]);
        assert_eq!(
            (condition.as_str(), kind.as_str()),
            ("not-allowed", "cancel")
        );
        assert!(text.contains("evil.test"), "{text}");
        let out = exchange(
            server,
            &register_set("m1", "mallory@evil.test/x"),
            "mallory@evil.test/x",
        )
        .await;
        assert_eq!(error_of(&out[0]).0, "not-allowed");
        let out = exchange(
            server,
            &subscribe_from("m2", "mallory@evil.test"),
            "mallory@evil.test",
        )
        .await;
        assert_eq!(error_of(&out[0]).0, "not-allowed");
        let out = exchange(
            server,
            &chat_from("mallory@evil.test/x", "register"),
            "mallory@evil.test/x",
        )
        .await;
        assert!(body_of(&out[0]).contains("does not accept"), "{out:?}");
        assert_eq!(
            app.footprint().pending_tokens,
            0,
            "no token reserved for them"
        );

        // Two new users per domain, then wait; another domain has its own allowance.
        for (n, user) in ["a@localhost", "b@localhost", "c@localhost"]
            .iter()
            .enumerate()
        {
            let out = exchange(
                server,
                &chat_from(&format!("{user}/r"), "register"),
                &format!("{user}/r"),
            )
            .await;
            let body = body_of(out.iter().find(|s| s.name() == "message").expect("reply"));
            if n < 2 {
                assert!(body.contains("You are registered"), "{body}");
            } else {
                assert!(
                    body.contains("Too many new registrations from localhost"),
                    "{body}"
                );
            }
        }
        let out = exchange(
            server,
            &register_set("c1", "c@localhost/r"),
            "c@localhost/r",
        )
        .await;
        let (condition, kind, _) = error_of(&out[0]);
        assert_eq!(
            (condition.as_str(), kind.as_str()),
            ("resource-constraint", "wait")
        );
        let out = exchange(
            server,
            &register_set("d1", "d@example.org/r"),
            "d@example.org/r",
        )
        .await;
        assert_eq!(out[0].attr("type"), Some("result"), "{out:?}");
        let stored: Vec<String> = store
            .load_all()
            .expect("load")
            .into_iter()
            .map(|r| r.jid)
            .collect();
        assert_eq!(stored, ["a@localhost", "b@localhost", "d@example.org"]);
        connected.stop().await;
    }

    #[tokio::test]
    async fn a_revocation_stands_until_the_user_grants_again() {
        let (app, tokens) = app_with(
            &["alice@localhost"],
            Options {
                show_status_msg: true,
                show_full_jid: false,
            },
            Duration::from_secs(5),
        );
        let mut connected = connect(&app, None).await;
        let server = &mut connected.server;
        let view = || {
            app.registry()
                .view(&tokens[0])
                .map(|v| (v.display, v.status))
        };
        let directed = |status: &str| {
            format!(
                "<presence {NS} from='alice@localhost/phone' to='webstatus.localhost'>\
                 <show>away</show><status>{status}</status></presence>"
            )
        };
        // The probe after connecting comes first (it resets presence to "unknown").
        assert_eq!(recv(server).await.attr("type"), Some("probe"));
        exchange(server, &directed("before"), "alice@localhost/phone").await;
        assert_eq!(
            view(),
            Some((crate::view::Display::Away, Some("before".into())))
        );

        let revoke = format!(
            "<presence {NS} type='unsubscribed' from='alice@localhost' to='webstatus.localhost'/>"
        );
        exchange(server, &revoke, "alice@localhost").await;
        assert_eq!(view(), Some((crate::view::Display::NotShared, None)));
        // A presence sent straight to the component afterwards is not an approval.
        exchange(server, &directed("sneaky"), "alice@localhost/phone").await;
        assert_eq!(view(), Some((crate::view::Display::NotShared, None)));
        assert_eq!(
            app.registry().record("alice@localhost").map(|r| r.consent),
            Some(Consent::Revoked)
        );

        // Granting again (`subscribed`) makes the next presence count.
        let grant = format!(
            "<presence {NS} type='subscribed' from='alice@localhost' to='webstatus.localhost'/>"
        );
        exchange(server, &grant, "alice@localhost").await;
        exchange(server, &directed("back"), "alice@localhost/phone").await;
        assert_eq!(
            view(),
            Some((crate::view::Display::Away, Some("back".into())))
        );

        // So does asking to register again (the revocation is then only pending).
        exchange(server, &revoke, "alice@localhost").await;
        let out = exchange(
            server,
            &chat_from("alice@localhost/phone", "register"),
            "alice@localhost/phone",
        )
        .await;
        assert!(
            out.iter().any(|s| s.attr("type") == Some("subscribe")),
            "asks for their presence again: {out:?}"
        );
        exchange(server, &directed("again"), "alice@localhost/phone").await;
        assert_eq!(
            view(),
            Some((crate::view::Display::Away, Some("again".into())))
        );
        connected.stop().await;
    }

    #[tokio::test]
    async fn behaves_as_a_contact() {
        let (mut server, app, stop) = running().await;
        for (kind, answer) in [("probe", None), ("unsubscribe", Some("unsubscribed"))] {
            server
                .send_xml(&format!(
                    "<presence {NS} type='{kind}' from='alice@localhost/phone' \
                     to='webstatus.localhost'/>"
                ))
                .await
                .expect("send");
            let reply = recv(&mut server).await;
            assert_eq!(reply.name(), "presence");
            assert_eq!(reply.attr("type"), answer, "answer to {kind}");
            assert_eq!(reply.attr("to"), Some("alice@localhost"));
            assert_eq!(reply.attr("from"), Some("webstatus.localhost"));
        }
        assert!(app.registry().is_empty(), "neither registers anyone");
        stop.cancel();
    }

    #[tokio::test]
    async fn subscribing_registers_and_subscribes_back() {
        let (mut server, app, stop) = running().await;
        server
            .send_xml(&format!(
                "<presence {NS} type='subscribe' from='bob@localhost' to='webstatus.localhost'/>"
            ))
            .await
            .expect("send");
        let kinds: Vec<Option<String>> = {
            let mut kinds = Vec::new();
            for _ in 0..3 {
                let p = recv(&mut server).await;
                assert_eq!(p.attr("to"), Some("bob@localhost"));
                kinds.push(p.attr("type").map(str::to_owned));
            }
            kinds
        };
        assert_eq!(
            kinds,
            [
                Some("subscribed".to_owned()),
                None,
                Some("subscribe".to_owned())
            ]
        );
        let welcome = recv(&mut server).await;
        assert_eq!(welcome.name(), "message");
        let record = app.registry().record("bob@localhost").expect("registered");
        let body = welcome
            .children()
            .find(|c| c.name() == "body")
            .map(|b| b.text())
            .unwrap_or_default();
        assert!(
            body.contains(&format!("https://status.example/status/{}", record.token)),
            "{body}"
        );
        assert_eq!(record.consent, Consent::Pending);
        // Approval, then presence: visible. Revocation: hidden.
        server
            .send_xml(&format!(
                "<presence {NS} type='subscribed' from='bob@localhost' to='webstatus.localhost'/>\
                 <presence {NS} from='bob@localhost/laptop' to='webstatus.localhost'>\
                 <show>dnd</show></presence>"
            ))
            .await
            .expect("send");
        let token: Token = record.token;
        for _ in 0..300 {
            if app.registry().view(&token).map(|v| v.display) == Some(crate::view::Display::Dnd) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            app.registry().view(&token).map(|v| v.display),
            Some(crate::view::Display::Dnd)
        );
        server
            .send_xml(&format!(
                "<presence {NS} type='unsubscribed' from='bob@localhost' to='webstatus.localhost'/>"
            ))
            .await
            .expect("send");
        for _ in 0..300 {
            if app.registry().record("bob@localhost").map(|r| r.consent) == Some(Consent::Revoked) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            app.registry().view(&token).map(|v| v.display),
            Some(crate::view::Display::NotShared)
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn registration_result_comes_before_subscribe_and_remove_says_goodbye() {
        let (mut server, app, stop) = running().await;
        server
            .send_xml(&format!(
                "<iq {NS} type='set' id='r1' from='carol@localhost/pc' to='webstatus.localhost'>\
                 <query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='show_full_jid'><value>1</value></field></x></query></iq>"
            ))
            .await
            .expect("send");
        let result = recv_unless_probe(&mut server).await;
        assert_eq!(
            (result.name(), result.attr("type"), result.attr("id")),
            ("iq", Some("result"), Some("r1"))
        );
        let subscribe = recv_unless_probe(&mut server).await;
        assert_eq!(subscribe.attr("type"), Some("subscribe"));
        assert_eq!(subscribe.attr("to"), Some("carol@localhost"));
        assert_eq!(recv_unless_probe(&mut server).await.name(), "message");
        assert!(
            app.registry()
                .record("carol@localhost")
                .is_some_and(|r| r.options.show_full_jid)
        );

        server
            .send_xml(&format!(
                "<iq {NS} type='set' id='r2' from='carol@localhost/pc' to='webstatus.localhost'>\
                 <query xmlns='jabber:iq:register'><remove/></query></iq>"
            ))
            .await
            .expect("send");
        let result = recv_unless_probe(&mut server).await;
        assert_eq!(result.attr("type"), Some("result"));
        let mut kinds = Vec::new();
        for _ in 0..3 {
            kinds.push(
                recv_unless_probe(&mut server)
                    .await
                    .attr("type")
                    .map(str::to_owned),
            );
        }
        assert_eq!(
            kinds,
            ["unsubscribe", "unsubscribed", "unavailable"].map(|k| Some(k.to_owned()))
        );
        assert!(app.registry().record("carol@localhost").is_none());
        stop.cancel();
    }

    #[test]
    fn bare_part_without_allocation() {
        let full = Jid::new("alice@localhost/laptop/with/slashes").expect("jid");
        assert_eq!(bare_str(&full), "alice@localhost");
        let bare = Jid::new("alice@localhost").expect("jid");
        assert_eq!(bare_str(&bare), "alice@localhost");
    }

    #[test]
    fn delayed_presence_keeps_its_stamp() {
        let presence: Presence = "<presence xmlns='jabber:component:accept' from='a@b/c'>\
             <delay xmlns='urn:xmpp:delay' from='b' stamp='2002-09-10T23:08:25Z'/></presence>"
            .parse::<Element>()
            .ok()
            .and_then(|e| Presence::try_from(e).ok())
            .expect("presence");
        assert_eq!(delay_stamp(&presence), Some(1_031_699_305));
    }
}
