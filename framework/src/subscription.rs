//! A component as a contact: answering presence subscriptions and probes (RFC 6121 §3–4),
//! and remembering who granted what, since servers keep no roster for components.
//!
//! [`Contacts`] approves every `subscribe` (answers `subscribed` and its own presence),
//! honours `unsubscribe`, answers probes with its presence (a server probes only for users
//! subscribed to us, so a probe also re-learns a subscriber a restart forgot), and records
//! `subscribed`/`unsubscribed` (whether we may see *their* presence).
//! Records are kept per bare JID, at most [`Contacts::with_limit`] of them (default
//! [`DEFAULT_MAX_CONTACTS`]): past the limit a newcomer's `subscribe` is refused with
//! `unsubscribed`, and nobody already known is touched.
//!
//! Mount it with [`crate::Router::contact`], or call [`Contacts::answer`] first from a
//! presence handler of your own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use crate::error::SendError;
use crate::handle::Handle;

/// How many contacts [`Contacts::new`] remembers.
pub const DEFAULT_MAX_CONTACTS: usize = 100_000;

/// What one user granted, and was granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants {
    /// They subscribed to our presence and we approved.
    pub they_see_us: bool,
    /// They approved our subscription to theirs (`subscribed`).
    pub we_see_them: bool,
}

/// The component's contact list and its answers to subscription stanzas.
#[derive(Debug)]
pub struct Contacts {
    grants: Mutex<HashMap<BareJid, Grants>>,
    limit: usize,
    status: Option<String>,
}

impl Default for Contacts {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether [`Contacts::answer`] took care of a presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// It was about subscriptions or a probe, and is answered.
    Yes,
    /// Availability or an error: the component's own business.
    No,
}

impl Contacts {
    /// An empty contact list that approves every subscription.
    pub fn new() -> Self {
        Contacts {
            grants: Mutex::new(HashMap::new()),
            limit: DEFAULT_MAX_CONTACTS,
            status: None,
        }
    }

    /// Remembers at most `limit` contacts.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The status text sent with our presence.
    pub fn with_status(mut self, status: &str) -> Self {
        self.status = Some(status.to_owned());
        self
    }

    /// What `user` granted, and was granted.
    pub fn grants(&self, user: &BareJid) -> Grants {
        self.lock().get(user).copied().unwrap_or_default()
    }

    /// The users who see our presence.
    pub fn subscribers(&self) -> Vec<BareJid> {
        let grants = self.lock();
        grants
            .iter()
            .filter(|(_, g)| g.they_see_us)
            .map(|(jid, _)| jid.clone())
            .collect()
    }

    /// Answers a subscription stanza or probe; anything else is left to the caller.
    pub async fn answer(&self, handle: &Handle, presence: &Presence) -> Result<Handled, SendError> {
        let Some(from) = presence.from.as_ref() else {
            return Ok(Handled::No);
        };
        let user = from.to_bare();
        let us = presence.to.clone().unwrap_or_else(|| handle.jid().clone());
        let reply = |type_| self.presence(type_, &us, &user);
        match presence.type_ {
            PresenceType::Subscribe => {
                if self.update(&user, |g| g.they_see_us = true) {
                    handle.send(reply(PresenceType::Subscribed)).await?;
                    handle.send(reply(PresenceType::None)).await?;
                } else {
                    tracing::warn!(user = %user, "contact list full: subscription refused");
                    handle.send(reply(PresenceType::Unsubscribed)).await?;
                }
            }
            PresenceType::Unsubscribe => {
                self.update(&user, |g| g.they_see_us = false);
                handle.send(reply(PresenceType::Unsubscribed)).await?;
                handle.send(reply(PresenceType::Unavailable)).await?;
            }
            PresenceType::Probe => {
                // Servers probe only on behalf of users subscribed to us (RFC 6121 §4.3),
                // so a probe re-learns a subscriber this list lost (a restart).
                self.update(&user, |g| g.they_see_us = true);
                handle.send(reply(PresenceType::None)).await?;
            }
            PresenceType::Subscribed => {
                self.update(&user, |g| g.we_see_them = true);
            }
            PresenceType::Unsubscribed => {
                self.update(&user, |g| g.we_see_them = false);
            }
            PresenceType::None | PresenceType::Unavailable | PresenceType::Error => {
                return Ok(Handled::No);
            }
        }
        Ok(Handled::Yes)
    }

    /// Applies `change` to `user`'s grants; forgets users who grant nothing. `false` when
    /// `user` is new and the list is full.
    fn update(&self, user: &BareJid, change: impl FnOnce(&mut Grants)) -> bool {
        let mut grants = self.lock();
        let known = grants.contains_key(user);
        if !known && grants.len() >= self.limit {
            return false;
        }
        let entry = grants.entry(user.clone()).or_default();
        change(entry);
        if *entry == Grants::default() {
            grants.remove(user);
        }
        true
    }

    fn presence(&self, type_: PresenceType, us: &Jid, user: &BareJid) -> Presence {
        let available = type_ == PresenceType::None;
        let mut presence = Presence::new(type_)
            .with_from(us.clone())
            .with_to(Jid::from(user.clone()));
        if let (true, Some(status)) = (available, &self.status) {
            presence.set_status("en", status);
        }
        presence
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<BareJid, Grants>> {
        // Every update is a single map operation: a poisoned lock still holds a whole map.
        self.grants.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::router::Router {
    /// Makes the component a contact with `contacts` answering every subscription stanza
    /// and probe (its presence handler; see [`Contacts::answer`] to combine with your own).
    pub fn contact(self, contacts: Arc<Contacts>) -> Self {
        self.presence(move |handle: Handle, presence: Presence| {
            let contacts = Arc::clone(&contacts);
            async move { contacts.answer(&handle, &presence).await.map(|_| ()) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Router;
    use crate::test_support::{inbound, sent, setup};

    fn from(user: &str, type_: &str) -> String {
        format!(
            "<presence xmlns='jabber:component:accept' type='{type_}' from='{user}' \
             to='c.localhost'/>"
        )
    }

    fn replies(rx: &mut tokio::sync::mpsc::Receiver<crate::handle::Queued>) -> Vec<String> {
        std::iter::from_fn(|| sent(rx))
            .map(|p| {
                format!(
                    "{}>{}",
                    p.attr("type").unwrap_or("available"),
                    p.attr("to").unwrap_or("")
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn subscriptions_probes_and_revocations() {
        let contacts = Arc::new(Contacts::new().with_status("echoing"));
        let router = Arc::new(Router::new().contact(Arc::clone(&contacts)));
        let (handle, mut rx) = setup();
        let ann: BareJid = "ann@localhost".parse().expect("jid");

        let bob: BareJid = "bob@localhost".parse().expect("jid");
        router
            .dispatch(&handle, inbound(&from("bob@localhost/x", "probe")))
            .await;
        assert_eq!(
            replies(&mut rx),
            ["available>bob@localhost"],
            "a probe after a restart"
        );
        assert!(
            contacts.grants(&bob).they_see_us,
            "re-learned from the probe"
        );

        router
            .dispatch(&handle, inbound(&from("ann@localhost/pc", "subscribe")))
            .await;
        let first = sent(&mut rx).expect("subscribed");
        assert_eq!(first.attr("type"), Some("subscribed"));
        let online = sent(&mut rx).expect("our presence");
        assert_eq!(online.attr("type"), None);
        assert!(String::from(&online).contains("echoing"));
        assert!(contacts.grants(&ann).they_see_us);

        router
            .dispatch(&handle, inbound(&from("ann@localhost/pc", "probe")))
            .await;
        assert_eq!(replies(&mut rx), ["available>ann@localhost"]);
        router
            .dispatch(&handle, inbound(&from("ann@localhost/pc", "subscribed")))
            .await;
        assert!(contacts.grants(&ann).we_see_them);
        let mut subscribers = contacts.subscribers();
        subscribers.sort_by_key(|j| j.to_string());
        assert_eq!(subscribers, [ann.clone(), bob]);

        router
            .dispatch(&handle, inbound(&from("ann@localhost/pc", "unsubscribe")))
            .await;
        assert_eq!(
            replies(&mut rx),
            ["unsubscribed>ann@localhost", "unavailable>ann@localhost"]
        );
        router
            .dispatch(&handle, inbound(&from("ann@localhost/pc", "unsubscribed")))
            .await;
        assert_eq!(contacts.grants(&ann), Grants::default());
        assert!(
            !contacts.lock().contains_key(&ann),
            "users who grant nothing are forgotten"
        );

        // Availability is not the contact list's business.
        let available = "<presence xmlns='jabber:component:accept' from='ann@localhost/pc' \
                         to='c.localhost'/>";
        assert_eq!(
            contacts
                .answer(&handle, &presence_of(available))
                .await
                .expect("sent"),
            Handled::No
        );
    }

    fn presence_of(xml: &str) -> Presence {
        match inbound(xml) {
            crate::router::Inbound::Stanza(crate::stanza::Stanza::Presence(p)) => p,
            _ => panic!("not a presence"),
        }
    }

    #[tokio::test]
    async fn the_list_is_bounded_and_known_users_keep_their_grants() {
        let contacts = Arc::new(Contacts::new().with_limit(2));
        let router = Arc::new(Router::new().contact(Arc::clone(&contacts)));
        let (handle, mut rx) = setup();
        for user in ["a@x", "b@x"] {
            router
                .dispatch(&handle, inbound(&from(user, "subscribe")))
                .await;
        }
        replies(&mut rx);
        router
            .dispatch(&handle, inbound(&from("c@x", "subscribe")))
            .await;
        assert_eq!(replies(&mut rx), ["unsubscribed>c@x"], "refused when full");
        router
            .dispatch(&handle, inbound(&from("a@x", "subscribed")))
            .await;
        let a: BareJid = "a@x".parse().expect("jid");
        assert_eq!(
            contacts.grants(&a),
            Grants {
                they_see_us: true,
                we_see_them: true
            }
        );
        assert_eq!(contacts.lock().len(), 2);
    }
}
