//! XEP-0050 ad-hoc commands: the command table a [`crate::Router`] carries, the sessions of
//! multi-step commands, and the wire format.
//!
//! A component adds commands with [`crate::Router::command`]; each is a node, a name and a
//! handler that answers one step at a time ([`CommandStep`]). The framework does the rest:
//! listing them (disco#items on the `http://jabber.org/protocol/commands` node, disco#info
//! per command), session ids, `cancel`, expiry, and limits: a requester holds at most
//! [`MAX_SESSIONS_PER_REQUESTER`] open sessions and all requesters [`MAX_SESSIONS`]; a
//! session untouched for [`SESSION_LIFETIME`] is gone (`session-expired`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minidom::Element;
use rand::Rng;
use tokio::time::Instant;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::disco::{DiscoInfoResult, Identity, Item};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

use crate::error::stanza_error;
use crate::forms::SubmittedForm;
use crate::handle::Handle;

/// `http://jabber.org/protocol/commands`.
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
/// Open sessions one requester (full JID) may hold.
pub const MAX_SESSIONS_PER_REQUESTER: usize = 4;
/// Open sessions in all.
pub const MAX_SESSIONS: usize = 1024;
/// How long a session waits for the requester's next step.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(600);

/// One step of a command, as its handler sees it.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    /// The requester's full JID.
    pub from: Jid,
    /// The command's node.
    pub node: String,
    /// 0 for the first request of a session, then 1, 2, … for each submitted step.
    pub step: u32,
    /// The form submitted with this step (`None` on the first step, usually).
    pub form: Option<SubmittedForm>,
}

/// What a command answers to one step.
#[derive(Debug, Clone)]
pub enum CommandStep {
    /// Shows `form`; the user's submission completes the command (status `executing`,
    /// action `complete`).
    Form(DataForm),
    /// Shows `form`; more steps follow the user's submission (action `next`).
    Stage(DataForm),
    /// The command is done (status `completed`), with an optional note and result form.
    Completed {
        /// A line for the user (`<note type='info'/>`).
        note: Option<String>,
        /// A `result` form to show.
        result: Option<DataForm>,
    },
}

impl CommandStep {
    /// Done, telling the user `note`.
    pub fn completed(note: impl Into<String>) -> Self {
        CommandStep::Completed {
            note: Some(note.into()),
            result: None,
        }
    }
}

type CommandFuture = Pin<Box<dyn Future<Output = Result<CommandStep, StanzaError>> + Send>>;
type CommandHandler = Arc<dyn Fn(Handle, CommandRequest) -> CommandFuture + Send + Sync>;

struct Command {
    node: String,
    name: String,
    handler: CommandHandler,
}

struct Session {
    node: String,
    requester: Jid,
    step: u32,
    expires: Instant,
}

/// The commands a router offers and their open sessions.
#[derive(Default)]
pub(crate) struct Commands {
    commands: Vec<Command>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Commands {
    /// Adds a command; `false` when `node` is taken.
    pub(crate) fn add<F, Fut>(&mut self, node: &str, name: &str, handler: F) -> bool
    where
        F: Fn(Handle, CommandRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CommandStep, StanzaError>> + Send + 'static,
    {
        if self.commands.iter().any(|c| c.node == node) {
            return false;
        }
        self.commands.push(Command {
            node: node.to_owned(),
            name: name.to_owned(),
            handler: Arc::new(move |h, r| Box::pin(handler(h, r))),
        });
        true
    }

    /// Whether there is any command (then disco#info announces the feature).
    pub(crate) fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The disco#items of the commands node: one item per command.
    pub(crate) fn items(&self, us: &Jid) -> Vec<Item> {
        self.commands
            .iter()
            .map(|c| Item {
                jid: us.clone(),
                node: Some(c.node.clone()),
                name: Some(c.name.clone()),
            })
            .collect()
    }

    /// The disco#info of one command's node, if it is one.
    pub(crate) fn node_info(&self, node: &str) -> Option<DiscoInfoResult> {
        let command = self.commands.iter().find(|c| c.node == node)?;
        Some(DiscoInfoResult {
            node: Some(node.to_owned()),
            identities: vec![Identity::new(
                "automation",
                "command-node",
                "en",
                command.name.clone(),
            )],
            features: [NS_COMMANDS, ns::DATA_FORMS]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            extensions: Vec::new(),
        })
    }

    /// Answers one `<command/>` set: a new session, a step of an open one, or a cancel.
    pub(crate) async fn execute(
        &self,
        handle: &Handle,
        from: Jid,
        payload: &Element,
    ) -> Result<Element, StanzaError> {
        let node = payload.attr("node").unwrap_or_default().to_owned();
        let Some(command) = self.commands.iter().find(|c| c.node == node) else {
            return Err(stanza_error(DefinedCondition::ItemNotFound, None));
        };
        // `execute`, `next` and `complete` all submit the current step: the framework offers
        // one of them at a time, and `prev` never.
        let cancel = match payload.attr("action").unwrap_or("execute") {
            "execute" | "next" | "complete" => false,
            "cancel" => true,
            _ => return Err(command_error("bad-action", "this command cannot do that")),
        };
        let (session_id, step) = match payload.attr("sessionid") {
            None if cancel => return Err(command_error("bad-sessionid", "no session to cancel")),
            None => (self.open(&node, &from)?, 0),
            Some(id) => (id.to_owned(), self.resume(id, &node, &from)?),
        };
        if cancel {
            self.close(&session_id);
            return Ok(reply(&node, &session_id, "canceled", Vec::new()));
        }
        // After the cancel: a client may cancel with a `cancel` form, which is no submission.
        let outcome = match SubmittedForm::in_payload(payload) {
            Ok(form) => {
                let request = CommandRequest {
                    from,
                    node: node.clone(),
                    step,
                    form,
                };
                (command.handler)(handle.clone(), request).await
            }
            Err(error) => Err(error.into()),
        };
        // A session ends when its command completes or fails.
        if !matches!(outcome, Ok(CommandStep::Form(_) | CommandStep::Stage(_))) {
            self.close(&session_id);
        }
        let children = match outcome? {
            CommandStep::Form(form) => vec![actions("complete", &["complete"]), form.into()],
            CommandStep::Stage(form) => vec![actions("next", &["next"]), form.into()],
            CommandStep::Completed { note, result } => {
                let note = note.map(|text| {
                    Element::builder("note", NS_COMMANDS)
                        .attr(name("type"), "info")
                        .append(text)
                        .build()
                });
                let children = note.into_iter().chain(result.map(Element::from)).collect();
                return Ok(reply(&node, &session_id, "completed", children));
            }
        };
        Ok(reply(&node, &session_id, "executing", children))
    }

    /// Opens a session for `requester`, within the limits.
    fn open(&self, node: &str, requester: &Jid) -> Result<String, SessionError> {
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        let held = sessions
            .values()
            .filter(|s| s.requester == *requester)
            .count();
        if held >= MAX_SESSIONS_PER_REQUESTER || sessions.len() >= MAX_SESSIONS {
            return Err(SessionError::TooMany);
        }
        let id = format!("{:016x}", rand::thread_rng().r#gen::<u64>());
        sessions.insert(
            id.clone(),
            Session {
                node: node.to_owned(),
                requester: requester.clone(),
                step: 0,
                expires: now + SESSION_LIFETIME,
            },
        );
        Ok(id)
    }

    /// The next step number of session `id`, which must be `requester`'s and `node`'s.
    fn resume(&self, id: &str, node: &str, requester: &Jid) -> Result<u32, SessionError> {
        let now = Instant::now();
        let mut sessions = self.lock();
        let Some(session) = sessions.get_mut(id) else {
            return Err(SessionError::Unknown);
        };
        if session.requester != *requester || session.node != node {
            return Err(SessionError::Unknown);
        }
        if session.expires <= now {
            sessions.remove(id);
            return Err(SessionError::Expired);
        }
        session.step += 1;
        session.expires = now + SESSION_LIFETIME;
        Ok(session.step)
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic elsewhere cannot leave the map half-updated: every update is one call.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn open_sessions(&self) -> usize {
        self.lock().len()
    }
}

/// Why a session cannot be opened or resumed.
#[derive(Debug, Clone, Copy)]
enum SessionError {
    TooMany,
    Unknown,
    Expired,
}

impl From<SessionError> for StanzaError {
    fn from(error: SessionError) -> StanzaError {
        match error {
            SessionError::TooMany => {
                let text = "too many open commands: finish or cancel one first";
                stanza_error(DefinedCondition::ResourceConstraint, Some(text))
            }
            SessionError::Unknown => command_error("bad-sessionid", "no such session"),
            SessionError::Expired => {
                let text = "the session expired";
                let mut error = stanza_error(DefinedCondition::NotAllowed, Some(text));
                error.other = Some(Element::bare("session-expired", NS_COMMANDS));
                error
            }
        }
    }
}

/// `bad-request` with an XEP-0050 condition (`bad-action`, `bad-sessionid`, …).
fn command_error(condition: &str, text: &str) -> StanzaError {
    let mut error = stanza_error(DefinedCondition::BadRequest, Some(text));
    error.other = Some(Element::bare(condition, NS_COMMANDS));
    error
}

fn name(name: &str) -> xso::exports::rxml::NcName {
    xso::exports::rxml::NcName::try_from(name).expect("a valid attribute name")
}

fn actions(execute: &str, allowed: &[&str]) -> Element {
    let mut element = Element::builder("actions", NS_COMMANDS)
        .attr(name("execute"), execute)
        .build();
    for action in allowed {
        element.append_child(Element::bare(*action, NS_COMMANDS));
    }
    element
}

/// `<command node sessionid status>` with the given children.
fn reply(node: &str, session: &str, status: &str, children: Vec<Element>) -> Element {
    Element::builder("command", NS_COMMANDS)
        .attr(name("node"), node)
        .attr(name("sessionid"), session)
        .attr(name("status"), status)
        .append_all(children)
        .build()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::forms::FormBuilder;
    use crate::router::Router;
    use crate::test_support::{ask, condition, inbound, sent, setup};

    /// A one-step settings command and a two-step wizard.
    fn router() -> Arc<Router> {
        let settings = |_: Handle, request: CommandRequest| async move {
            match request.form {
                None => Ok(CommandStep::Form(
                    FormBuilder::new().boolean("loud", "Loud", false).build(),
                )),
                Some(form) => {
                    let loud = form.boolean("loud")?.unwrap_or(false);
                    Ok(CommandStep::completed(format!(
                        "loud={loud} step={}",
                        request.step
                    )))
                }
            }
        };
        let wizard = |_: Handle, request: CommandRequest| async move {
            match request.step {
                0 | 1 => Ok(CommandStep::Stage(
                    FormBuilder::new().text("answer", "Answer", "").build(),
                )),
                _ => Err(stanza_error(
                    DefinedCondition::Conflict,
                    Some("no third step"),
                )),
            }
        };
        Arc::new(
            Router::new()
                .command("settings", "Settings", settings)
                .command("wizard", "Wizard", wizard),
        )
    }

    fn command(node: &str, action: &str, session: Option<&str>, inner: &str) -> String {
        let session = session
            .map(|s| format!(" sessionid='{s}'"))
            .unwrap_or_default();
        format!(
            "<command xmlns='{NS_COMMANDS}' node='{node}' action='{action}'{session}>{inner}</command>"
        )
    }

    /// Sends one `<command/>` step from `a@localhost/r`; returns the reply.
    async fn step(
        router: &Arc<Router>,
        link: &mut (Handle, tokio::sync::mpsc::Receiver<crate::handle::Queued>),
        node: &str,
        action: &str,
        session: Option<&str>,
        inner: &str,
    ) -> Element {
        ask(router, link, "set", &command(node, action, session, inner)).await
    }

    fn answer(reply: &Element) -> &Element {
        reply
            .get_child("command", NS_COMMANDS)
            .expect("a <command/>")
    }

    const LOUD: &str = "<x xmlns='jabber:x:data' type='submit'>\
                        <field var='loud'><value>1</value></field></x>";

    #[tokio::test]
    async fn commands_are_listed_and_described() {
        let router = router();
        let mut link = setup();
        assert!(router.disco_info().features.contains(NS_COMMANDS));
        let items = ask(
            &router,
            &mut link,
            "get",
            &format!("<query xmlns='{}' node='{NS_COMMANDS}'/>", ns::DISCO_ITEMS),
        )
        .await;
        let listed: Vec<(String, String)> = items
            .get_child("query", ns::DISCO_ITEMS)
            .expect("items")
            .children()
            .map(|i| {
                (
                    i.attr("node").unwrap_or("").into(),
                    i.attr("name").unwrap_or("").into(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("settings".into(), "Settings".into()),
                ("wizard".into(), "Wizard".into())
            ]
        );
        let info = format!("<query xmlns='{}' node='settings'/>", ns::DISCO_INFO);
        let info = ask(&router, &mut link, "get", &info).await;
        let xml = String::from(&info);
        assert!(
            xml.contains("command-node") && xml.contains(NS_COMMANDS),
            "{xml}"
        );
        let unknown = format!("<query xmlns='{}' node='nope'/>", ns::DISCO_INFO);
        let unknown = ask(&router, &mut link, "get", &unknown).await;
        assert_eq!(condition(&unknown).as_deref(), Some("item-not-found"));
    }

    #[tokio::test]
    async fn a_form_then_a_submission_completes_and_closes_the_session() {
        let router = router();
        let mut link = setup();
        let first = step(&router, &mut link, "settings", "execute", None, "").await;
        let first = answer(&first);
        assert_eq!(first.attr("status"), Some("executing"));
        let actions = first.get_child("actions", NS_COMMANDS).expect("actions");
        assert_eq!(actions.attr("execute"), Some("complete"));
        assert!(first.has_child("x", ns::DATA_FORMS));
        let session = first.attr("sessionid").expect("a session id").to_owned();

        let done = step(
            &router,
            &mut link,
            "settings",
            "complete",
            Some(&session),
            LOUD,
        )
        .await;
        let done = answer(&done);
        assert_eq!(done.attr("status"), Some("completed"));
        let note = done.get_child("note", NS_COMMANDS).expect("a note");
        assert_eq!(note.text(), "loud=true step=1");
        assert_eq!(router.commands.open_sessions(), 0);

        let reused = step(
            &router,
            &mut link,
            "settings",
            "complete",
            Some(&session),
            LOUD,
        )
        .await;
        assert_eq!(condition(&reused).as_deref(), Some("bad-request"));
        assert!(String::from(&reused).contains("bad-sessionid"));
    }

    #[tokio::test]
    async fn cancel_stages_and_handler_errors() {
        let router = router();
        let mut link = setup();
        let first = step(&router, &mut link, "wizard", "execute", None, "").await;
        let session = answer(&first).attr("sessionid").expect("id").to_owned();
        let actions = answer(&first)
            .get_child("actions", NS_COMMANDS)
            .expect("actions");
        assert_eq!(actions.attr("execute"), Some("next"));
        let next = step(&router, &mut link, "wizard", "next", Some(&session), "").await;
        assert_eq!(answer(&next).attr("status"), Some("executing"));
        // The handler refuses a third step: the error reaches the user, the session ends.
        let third = step(&router, &mut link, "wizard", "next", Some(&session), "").await;
        assert_eq!(condition(&third).as_deref(), Some("conflict"));
        assert_eq!(router.commands.open_sessions(), 0);

        let again = step(&router, &mut link, "wizard", "execute", None, "").await;
        let session = answer(&again).attr("sessionid").expect("id").to_owned();
        let cancel_form = "<x xmlns='jabber:x:data' type='cancel'/>";
        let cancel = step(
            &router,
            &mut link,
            "wizard",
            "cancel",
            Some(&session),
            cancel_form,
        )
        .await;
        assert_eq!(answer(&cancel).attr("status"), Some("canceled"));
        assert_eq!(router.commands.open_sessions(), 0);

        // A malformed submission is refused and ends its session.
        let open = step(&router, &mut link, "settings", "execute", None, "").await;
        let session = answer(&open).attr("sessionid").expect("id").to_owned();
        let form = "<x xmlns='jabber:x:data' type='form'/>";
        let wrong = step(
            &router,
            &mut link,
            "settings",
            "complete",
            Some(&session),
            form,
        )
        .await;
        assert_eq!(condition(&wrong).as_deref(), Some("bad-request"));
        assert_eq!(router.commands.open_sessions(), 0);

        let bad = step(&router, &mut link, "wizard", "jump", None, "").await;
        assert!(String::from(&bad).contains("bad-action"));
        let unknown = step(&router, &mut link, "nope", "execute", None, "").await;
        assert_eq!(condition(&unknown).as_deref(), Some("item-not-found"));
    }

    #[tokio::test]
    async fn a_session_belongs_to_its_requester() {
        let router = router();
        let mut link = setup();
        let first = step(&router, &mut link, "settings", "execute", None, "").await;
        let session = answer(&first).attr("sessionid").expect("id").to_owned();
        let stolen = format!(
            "<iq xmlns='jabber:component:accept' type='set' id='m' from='mallory@localhost/x' \
             to='c.localhost'>{}</iq>",
            command("settings", "complete", Some(&session), LOUD)
        );
        router.dispatch(&link.0, inbound(&stolen)).await;
        let reply = sent(&mut link.1).expect("a reply");
        assert!(String::from(&reply).contains("bad-sessionid"));
        assert_eq!(
            router.commands.open_sessions(),
            1,
            "the owner's session stays"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_are_bounded_and_expire() {
        let router = router();
        let mut link = setup();
        let mut sessions = Vec::new();
        for _ in 0..MAX_SESSIONS_PER_REQUESTER {
            let reply = step(&router, &mut link, "settings", "execute", None, "").await;
            sessions.push(answer(&reply).attr("sessionid").expect("id").to_owned());
        }
        let one_more = step(&router, &mut link, "settings", "execute", None, "").await;
        assert_eq!(condition(&one_more).as_deref(), Some("resource-constraint"));

        tokio::time::advance(SESSION_LIFETIME + Duration::from_secs(1)).await;
        let late = step(
            &router,
            &mut link,
            "settings",
            "complete",
            Some(&sessions[0]),
            LOUD,
        )
        .await;
        assert_eq!(condition(&late).as_deref(), Some("not-allowed"));
        assert!(String::from(&late).contains("session-expired"));
        // Expired sessions no longer count against the requester.
        let fresh = step(&router, &mut link, "settings", "execute", None, "").await;
        assert_eq!(answer(&fresh).attr("status"), Some("executing"));
        assert_eq!(router.commands.open_sessions(), 1);
    }
}
