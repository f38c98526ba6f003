//! The counter service built step by step in docs/writing-a-component.md.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use xmpp_component::adhoc::{CommandRequest, CommandStep};
use xmpp_component::forms::FormBuilder;
use xmpp_component::xmpp_parsers::stanza_error::{DefinedCondition::NotAcceptable, StanzaError};
use xmpp_component::{Cli, Error, Handle, IqPayload, NoOptions, Request, Router, Service, Setup};
use xmpp_component::{State, StateRouter, bind_http, stanza_error};

type Reply<T> = Result<T, StanzaError>;

fn main() -> std::process::ExitCode {
    Cli::<NoOptions>::serve(start)
}

fn router() -> StateRouter<AtomicU64> {
    Router::with_state(AtomicU64::new(0))
        .identity("component", "generic", "Counter")
        .set(bump)
        .command("set", "Set the counter", set)
}

/// `<count xmlns='urn:example:counter' value='…'/>`; a request may leave `value` out.
#[derive(xso::FromXml, xso::AsXml)]
#[xml(namespace = "urn:example:counter", name = "count")]
struct Count(#[xml(attribute(name = "value", default))] u64);

impl IqPayload for Count {
    const NAME: &'static str = "count";
    const NS: &'static str = "urn:example:counter";
}

async fn bump(count: State<AtomicU64>, _: Handle, _: Request<Count>) -> Reply<Count> {
    Ok(Count(count.fetch_add(1, Relaxed).wrapping_add(1))) // wraps at 2^64, never panics
}

async fn set(count: State<AtomicU64>, _: Handle, step: CommandRequest) -> Reply<CommandStep> {
    let Some(form) = step.form else {
        let form = FormBuilder::new().text("value", "New count", &count.load(Relaxed).to_string());
        return Ok(CommandStep::Form(form.required().build()));
    };
    let Ok(value) = form.required_text("value")?.parse() else {
        return Err(stanza_error(NotAcceptable, Some("not a number")));
    };
    count.store(value, Relaxed);
    Ok(CommandStep::completed(format!("The count is now {value}.")))
}

async fn start(_: Setup<NoOptions>) -> Result<Service, Error> {
    let routes = router();
    let page = page(routes.state());
    Ok(Service::new(routes).http(bind_http(([127, 0, 0, 1], 8090).into()).await?, page))
}

fn page(count: State<AtomicU64>) -> axum::Router {
    let show = move || std::future::ready(format!("Count: {}\n", count.load(Relaxed)));
    axum::Router::new().route("/", axum::routing::get(show))
}

#[cfg(test)]
mod tests {
    //! The counter against the in-process `TestServer`: typed IQs, the ad-hoc command, and
    //! the HTTP page reading the same state.

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use xmpp_component::minidom::Element;
    use xmpp_component::testing::TestServer;
    use xmpp_component::{Component, Config, Secret};

    const DOMAIN: &str = "counter.localhost";
    const COMMANDS: &str = "http://jabber.org/protocol/commands";

    /// Runs `routes` against a fresh `TestServer` and accepts its handshake.
    async fn connect(routes: StateRouter<AtomicU64>) -> TestServer {
        let mut server = TestServer::bind(DOMAIN, "secret").await.expect("bind");
        let address = server.addr().to_string();
        let config = Config::new(address, DOMAIN, Secret::new("secret")).expect("config");
        // Runs until the test's runtime ends.
        tokio::spawn(Component::new(config, routes).run(std::future::pending()));
        server.accept().await.expect("handshake");
        server
    }

    /// Sends an IQ of `type_` from alice carrying `payload`; returns the reply.
    async fn ask(server: &mut TestServer, type_: &str, payload: &str) -> Element {
        let iq = format!(
            "<iq xmlns='jabber:component:accept' type='{type_}' id='q1' \
             from='alice@localhost/phone' to='{DOMAIN}'>{payload}</iq>"
        );
        server.send_xml(&iq).await.expect("send");
        let reply = server.recv().await.expect("a reply");
        assert_eq!(reply.attr("id"), Some("q1"));
        assert_eq!(reply.attr("to"), Some("alice@localhost/phone"));
        reply
    }

    /// The defined condition of an IQ error.
    fn condition(reply: &Element) -> Option<String> {
        assert_eq!(reply.attr("type"), Some("error"), "{}", String::from(reply));
        let error = reply.get_child("error", "jabber:component:accept")?;
        let stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas";
        let defined = error
            .children()
            .find(|c| c.ns() == stanzas && c.name() != "text");
        defined.map(|c| c.name().to_owned())
    }

    /// Sends `<count/>` in an IQ of `type_`; returns the `value` of the result.
    async fn count(server: &mut TestServer, type_: &str) -> String {
        let reply = ask(server, type_, "<count xmlns='urn:example:counter'/>").await;
        let xml = String::from(&reply);
        assert_eq!(reply.attr("type"), Some("result"), "{xml}");
        let count = reply
            .get_child("count", "urn:example:counter")
            .expect("<count/>");
        count.attr("value").expect("a value").to_owned()
    }

    #[tokio::test]
    async fn set_bumps_the_count() {
        let mut server = connect(router()).await;
        assert_eq!(count(&mut server, "set").await, "1");
        assert_eq!(count(&mut server, "set").await, "2");
        // No route for `get`: the framework answers service-unavailable.
        let get = ask(&mut server, "get", "<count xmlns='urn:example:counter'/>").await;
        assert_eq!(condition(&get).as_deref(), Some("service-unavailable"));
        // A payload that does not parse is the framework's bad-request, with the reason.
        let bad = "<count xmlns='urn:example:counter' value='many'/>";
        let reply = ask(&mut server, "set", bad).await;
        assert_eq!(condition(&reply).as_deref(), Some("bad-request"));
        assert_eq!(
            count(&mut server, "set").await,
            "3",
            "a bad request changes nothing"
        );
        // disco#info announces the payload's namespace and the commands.
        let info = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
        let info = String::from(&ask(&mut server, "get", info).await);
        for needed in ["urn:example:counter", COMMANDS, "name='Counter'"] {
            assert!(info.contains(needed), "{needed} missing from {info}");
        }
    }

    /// `<command/>` for the "set" node: start (no session) or submit `value`.
    fn command(session: Option<&str>, value: &str) -> String {
        match session {
            None => format!("<command xmlns='{COMMANDS}' node='set' action='execute'/>"),
            Some(id) => format!(
                "<command xmlns='{COMMANDS}' node='set' sessionid='{id}' action='complete'>\
                 <x xmlns='jabber:x:data' type='submit'>\
                 <field var='value'><value>{value}</value></field></x></command>"
            ),
        }
    }

    /// Starts the command; returns the session id and the form's preset value.
    async fn start_command(server: &mut TestServer) -> (String, String) {
        let reply = ask(server, "set", &command(None, "")).await;
        let answer = reply.get_child("command", COMMANDS).expect("a <command/>");
        assert_eq!(answer.attr("status"), Some("executing"));
        let form = answer.get_child("x", "jabber:x:data").expect("a form");
        let field = form.children().find(|f| f.attr("var") == Some("value"));
        let preset = field.and_then(|f| f.get_child("value", "jabber:x:data"));
        let session = answer.attr("sessionid").expect("a session id");
        (
            session.to_owned(),
            preset.map(Element::text).unwrap_or_default(),
        )
    }

    #[tokio::test]
    async fn the_command_shows_the_count_and_sets_it() {
        let mut server = connect(router()).await;
        count(&mut server, "set").await;
        let (session, preset) = start_command(&mut server).await;
        assert_eq!(preset, "1", "the form shows the current count");
        let reply = ask(&mut server, "set", &command(Some(&session), "41")).await;
        let done = reply.get_child("command", COMMANDS).expect("a <command/>");
        assert_eq!(done.attr("status"), Some("completed"));
        let note = done.get_child("note", COMMANDS).map(Element::text);
        assert_eq!(note.as_deref(), Some("The count is now 41."));
        assert_eq!(count(&mut server, "set").await, "42");

        // Not a number: refused, and the count stays.
        let (session, _) = start_command(&mut server).await;
        let reply = ask(&mut server, "set", &command(Some(&session), "lots")).await;
        assert_eq!(condition(&reply).as_deref(), Some("not-acceptable"));
        // A count at the top wraps instead of panicking.
        let (session, _) = start_command(&mut server).await;
        let top = u64::MAX.to_string();
        ask(&mut server, "set", &command(Some(&session), &top)).await;
        assert_eq!(count(&mut server, "set").await, "0");
    }

    #[tokio::test]
    async fn the_page_shows_the_count_the_iqs_changed() {
        let routes = router();
        let state = routes.state();
        let mut server = connect(routes).await;
        count(&mut server, "set").await;
        count(&mut server, "set").await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, page(state)).await });
        let mut http = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let request = "GET / HTTP/1.1\r\nHost: counter\r\nConnection: close\r\n\r\n";
        http.write_all(request.as_bytes()).await.expect("request");
        let mut response = String::new();
        http.read_to_string(&mut response).await.expect("response");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("\r\n\r\nCount: 2\n"), "{response}");
    }

    /// Every ```rust block of docs/writing-a-component.md is quoted from this file (indent
    /// aside), so the tutorial cannot drift from code that compiles and passes these tests.
    #[test]
    fn the_tutorial_quotes_this_file() {
        let source: Vec<&str> = include_str!("counter.rs").lines().map(str::trim).collect();
        let tutorial = include_str!("../../docs/writing-a-component.md");
        let mut quoted = 0;
        for block in tutorial.split("```rust\n").skip(1) {
            let code = block.split("```").next().unwrap_or_default();
            let lines: Vec<&str> = code.lines().map(str::trim).collect();
            let found = source.windows(lines.len()).any(|w| w == lines.as_slice());
            assert!(found, "not in examples/counter.rs:\n{code}");
            quoted += 1;
        }
        assert!(quoted >= 8, "only {quoted} blocks quoted");
    }
}

/// Step 5's variant with options of its own (an address for the page): compiled and tested.
#[cfg(test)]
#[allow(dead_code)]
mod with_options {
    use super::*;
    use xmpp_component::clap::Parser;

    /// The counter's own options: flags, or the same keys in the `--config` TOML file.
    #[derive(clap::Args, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Options {
        /// Where to serve the count page [default: 127.0.0.1:8090].
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
    }

    fn main() -> std::process::ExitCode {
        Cli::<Options>::serve(start)
    }

    async fn start(setup: Setup<Options>) -> Result<Service, Error> {
        let routes = router();
        let page = page(routes.state());
        let addr = setup.options.http.unwrap_or(([127, 0, 0, 1], 8090).into());
        Ok(Service::new(routes).http(bind_http(addr).await?, page))
    }

    #[test]
    fn the_address_comes_from_the_file_unless_a_flag_says_otherwise() {
        let file = std::env::temp_dir().join(format!("counter-{}.toml", std::process::id()));
        let toml = "server = '127.0.0.1:5347'\ndomain = 'counter.localhost'\n\
                    secret = 's'\nhttp = '127.0.0.1:8091'\n";
        std::fs::write(&file, toml).expect("write the file");
        let config = file.to_str().expect("a UTF-8 path");
        let load = |args: &[&str]| {
            let cli = Cli::<Options>::try_parse_from(args).expect("flags");
            cli.component
                .load(cli.options)
                .map(|(_, options)| options.http)
        };
        let from_file = load(&["counter", "--config", config]).expect("valid");
        assert_eq!(from_file, Some(([127, 0, 0, 1], 8091).into()));
        let flag = load(&["counter", "--config", config, "--http", "127.0.0.1:9000"]);
        assert_eq!(flag.expect("valid"), Some(([127, 0, 0, 1], 9000).into()));
        std::fs::write(&file, format!("{toml}htp = '127.0.0.1:1'\n")).expect("write");
        let typo = load(&["counter", "--config", config]).expect_err("an error");
        assert!(typo.to_string().contains("htp"), "{typo}");
        std::fs::remove_file(&file).ok();
    }
}

/// Steps 1 and 2 of the tutorial as they stand before the later steps: still compiled.
#[cfg(test)]
#[allow(dead_code)]
mod earlier_steps {
    mod step1 {
        use clap::Parser;
        use xmpp_component::{ComponentArgs, Router};

        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            component: ComponentArgs,
        }

        fn main() -> std::process::ExitCode {
            xmpp_component::run(Cli::parse().component, |_config| {
                Router::new().identity("component", "generic", "Counter")
            })
        }
    }

    mod step2 {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        use xmpp_component::xmpp_parsers::message::Message;
        use xmpp_component::{Handle, Router, State, StateRouter};

        fn router() -> StateRouter<AtomicU64> {
            Router::with_state(AtomicU64::new(0))
                .identity("component", "generic", "Counter")
                .message(count_messages)
        }

        async fn count_messages(count: State<AtomicU64>, _: Handle, _: Message) {
            count.fetch_add(1, Relaxed);
        }
    }
}
