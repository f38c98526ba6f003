//! The settings as XEP-0050 ad-hoc commands, for clients' commands menus (Gajim,
//! Conversations, Psi, Cheogram): the same operations as the chat commands, as forms.
//!
//! "Show status text" and "Show my address" show one check box preset to the current
//! value; "New URL" and "Unregister" ask for a confirmation first. Someone who is not
//! registered is told how to register, as the chat commands do.

use xmpp_component::adhoc::{CommandRequest, CommandStep};
use xmpp_component::forms::FormBuilder;
use xmpp_component::xmpp_parsers::stanza_error::StanzaError;
use xmpp_component::{Handle, State, StateRouter};

use crate::app::App;
use crate::commands::{self, Command};
use crate::service::{bare_str, perform};
use crate::store::Options;

/// The field of the yes/no forms.
const FIELD: &str = "yes";

/// Adds the four commands to `router`.
pub fn commands(router: StateRouter<App>) -> StateRouter<App> {
    router
        .command("status", "Show status text", |app, handle, request| {
            toggle(app, handle, request, Setting::Status)
        })
        .command("jid", "Show my address", |app, handle, request| {
            toggle(app, handle, request, Setting::Jid)
        })
        .command("new-url", "New URL", |app, handle, request| {
            let question = "Make a new web status URL? The current one stops working.";
            confirm(app, handle, request, Command::NewUrl, question)
        })
        .command("unregister", "Unregister", |app, handle, request| {
            let question = "Delete your registration? Your web page stops working.";
            confirm(app, handle, request, Command::Unregister, question)
        })
}

/// An on/off option.
#[derive(Debug, Clone, Copy)]
enum Setting {
    Status,
    Jid,
}

impl Setting {
    fn label(self) -> &'static str {
        match self {
            Setting::Status => "Show my status text on the web page",
            Setting::Jid => "Show my address on the web page",
        }
    }

    fn current(self, options: Options) -> bool {
        match self {
            Setting::Status => options.show_status_msg,
            Setting::Jid => options.show_full_jid,
        }
    }

    fn command(self, on: bool) -> Command {
        match self {
            Setting::Status => Command::Status(on),
            Setting::Jid => Command::Jid(on),
        }
    }
}

async fn toggle(
    app: State<App>,
    handle: Handle,
    request: CommandRequest,
    setting: Setting,
) -> Result<CommandStep, StanzaError> {
    let Some(record) = app.registry().record(bare_str(&request.from)) else {
        return Ok(CommandStep::completed(commands::not_registered(
            &app.settings().domain,
        )));
    };
    let Some(form) = request.form else {
        let current = setting.current(record.options);
        let form = FormBuilder::new().boolean(FIELD, setting.label(), current);
        return Ok(CommandStep::Form(form.build()));
    };
    let on = form.boolean(FIELD)?.unwrap_or(false);
    finish(&app, &handle, &request.from, setting.command(on)).await
}

async fn confirm(
    app: State<App>,
    handle: Handle,
    request: CommandRequest,
    command: Command,
    question: &str,
) -> Result<CommandStep, StanzaError> {
    if app.registry().record(bare_str(&request.from)).is_none() {
        return Ok(CommandStep::completed(commands::not_registered(
            &app.settings().domain,
        )));
    }
    let Some(form) = request.form else {
        let form = FormBuilder::new()
            .fixed(question)
            .boolean(FIELD, "Yes, do it", false);
        return Ok(CommandStep::Form(form.build()));
    };
    if form.boolean(FIELD)? != Some(true) {
        return Ok(CommandStep::completed("Nothing changed."));
    }
    finish(&app, &handle, &request.from, command).await
}

/// Runs `command` and completes with its answer; its follow-up stanzas are sent first.
async fn finish(
    app: &App,
    handle: &Handle,
    from: &xmpp_component::xmpp_parsers::jid::Jid,
    command: Command,
) -> Result<CommandStep, StanzaError> {
    let (text, after) = perform(app, handle.jid(), from, command).await;
    for stanza in after {
        if let Err(error) = handle.send(stanza).await {
            tracing::warn!(%error, "could not queue a command's follow-up");
        }
    }
    Ok(CommandStep::completed(text))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use xmpp_component::adhoc::NS_COMMANDS;
    use xmpp_component::minidom::Element;
    use xmpp_component::testing::TestServer;

    use crate::testkit::{app_with, connect};

    const ANN: &str = "ann@localhost/pc";

    /// Sends a command step from `from` and returns the `<command/>` answered (or the error).
    async fn step(server: &mut TestServer, from: &str, id: &str, command: &str) -> Element {
        let iq = format!(
            "<iq xmlns='jabber:component:accept' type='set' id='{id}' from='{from}' \
             to='webstatus.localhost'>{command}</iq>"
        );
        server.send_xml(&iq).await.expect("send");
        loop {
            let stanza = server.recv().await.expect("a stanza");
            if stanza.attr("id") == Some(id) {
                return stanza;
            }
        }
    }

    fn command(node: &str, session: &str, yes: Option<bool>) -> String {
        let session = if session.is_empty() {
            String::new()
        } else {
            format!(" sessionid='{session}' action='complete'")
        };
        let form = yes.map_or(String::new(), |yes| {
            format!(
                "<x xmlns='jabber:x:data' type='submit'><field var='yes'><value>{}</value>\
                 </field></x>",
                u8::from(yes)
            )
        });
        format!("<command xmlns='{NS_COMMANDS}' node='{node}'{session}>{form}</command>")
    }

    fn answer(reply: &Element) -> &Element {
        reply
            .get_child("command", NS_COMMANDS)
            .unwrap_or_else(|| panic!("no <command/> in {reply:?}"))
    }

    fn note(reply: &Element) -> String {
        let note = answer(reply)
            .get_child("note", NS_COMMANDS)
            .expect("a note");
        note.text()
    }

    #[tokio::test]
    async fn a_toggle_shows_the_current_value_and_saves_the_new_one() {
        let (app, _) = app_with(
            &["ann@localhost"],
            Default::default(),
            Duration::from_secs(5),
        );
        let mut link = connect(&app, None).await;
        let first = step(&mut link.server, ANN, "s1", &command("status", "", None)).await;
        let first = answer(&first);
        assert_eq!(first.attr("status"), Some("executing"));
        let xml = String::from(first);
        assert!(xml.contains("<value>0</value>"), "off by default: {xml}");
        let session = first.attr("sessionid").expect("a session").to_owned();

        let done = step(
            &mut link.server,
            ANN,
            "s2",
            &command("status", &session, Some(true)),
        )
        .await;
        assert_eq!(answer(&done).attr("status"), Some("completed"));
        assert!(note(&done).contains("now shown"), "{}", note(&done));
        let record = app.registry().record("ann@localhost").expect("registered");
        assert!(record.options.show_status_msg, "saved");
        link.stop().await;
    }

    #[tokio::test]
    async fn destructive_commands_ask_first_and_strangers_are_told_to_register() {
        let (app, tokens) = app_with(
            &["ann@localhost"],
            Default::default(),
            Duration::from_secs(5),
        );
        let mut link = connect(&app, None).await;
        let server = &mut link.server;
        let first = step(server, ANN, "n1", &command("new-url", "", None)).await;
        let session = answer(&first)
            .attr("sessionid")
            .expect("a session")
            .to_owned();
        let no = step(
            server,
            ANN,
            "n2",
            &command("new-url", &session, Some(false)),
        )
        .await;
        assert_eq!(note(&no), "Nothing changed.");
        assert_eq!(
            app.registry().record("ann@localhost").expect("kept").token,
            tokens[0]
        );

        let first = step(server, ANN, "n3", &command("new-url", "", None)).await;
        let session = answer(&first)
            .attr("sessionid")
            .expect("a session")
            .to_owned();
        let yes = step(server, ANN, "n4", &command("new-url", &session, Some(true))).await;
        assert!(note(&yes).contains("new web status URL"), "{}", note(&yes));
        assert_ne!(
            app.registry().record("ann@localhost").expect("kept").token,
            tokens[0]
        );

        let stranger = step(server, "bob@localhost/x", "b1", &command("jid", "", None)).await;
        assert_eq!(answer(&stranger).attr("status"), Some("completed"));
        assert!(
            note(&stranger).contains("not registered"),
            "{}",
            note(&stranger)
        );
        link.stop().await;
    }
}
