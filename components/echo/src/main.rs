//! `xmpp-echo`: echoes chat and normal messages back to their sender, and behaves as a
//! contact (answers subscriptions and probes) so users can add it to their roster.

use std::process::ExitCode;

use clap::Parser;
use xmpp_component::xmpp_parsers::message::{Message, MessageType};
use xmpp_component::xmpp_parsers::presence::{Presence, Type as PresenceType};
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
            .presence(be_a_contact)
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

/// Accepts every subscription and reports itself online.
async fn be_a_contact(handle: Handle, presence: Presence) -> Result<(), SendError> {
    let (Some(peer), Some(us)) = (presence.from.clone(), presence.to.clone()) else {
        return Ok(());
    };
    let reply = |kind| {
        Presence::new(kind)
            .with_from(us.clone())
            .with_to(peer.to_bare())
    };
    match presence.type_ {
        PresenceType::Subscribe => {
            handle.send(reply(PresenceType::Subscribed)).await?;
            handle.send(reply(PresenceType::None)).await
        }
        PresenceType::Probe => handle.send(reply(PresenceType::None)).await,
        PresenceType::Unsubscribe => handle.send(reply(PresenceType::Unsubscribed)).await,
        _ => Ok(()),
    }
}
