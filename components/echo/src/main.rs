//! `xmpp-echo`: echoes chat and normal messages back to their sender, and behaves as a
//! contact (answers subscriptions and probes) so users can add it to their roster.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use xmpp_component::subscription::Contacts;
use xmpp_component::xmpp_parsers::message::{Message, MessageType};
use xmpp_component::{ComponentArgs, Handle, Router, SendError};

/// An XMPP component that echoes every chat message back to its sender.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    component: ComponentArgs,
}

fn main() -> ExitCode {
    xmpp_component::run(Cli::parse().component, |_| {
        Router::new()
            .identity("component", "generic", "Echo")
            .software("xmpp-echo", env!("CARGO_PKG_VERSION"))
            .message(echo)
            .contact(Arc::new(Contacts::new()))
    })
}

/// Sends chat and normal messages that have a body back with to/from swapped; body,
/// subject, thread, id and payloads are kept. Errors, groupchat and headlines are ignored.
async fn echo(handle: Handle, message: Message) -> Result<(), SendError> {
    let echoable = matches!(message.type_, MessageType::Chat | MessageType::Normal);
    if !echoable || message.bodies.is_empty() {
        return Ok(());
    }
    let (Some(sender), Some(us)) = (message.from.clone(), message.to.clone()) else {
        return Ok(());
    };
    let mut reply = message;
    reply.from = Some(us);
    reply.to = Some(sender);
    handle.send(reply).await
}
