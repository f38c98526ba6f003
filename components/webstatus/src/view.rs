//! What a web page may show about one user: the privacy-filtered snapshot every format renders.
//!
//! This is the only place that applies the user's options and consent: the status text
//! appears only with `show_status_msg`, the JID only with `show_full_jid`, and nothing but
//! "not shared" appears while consent is pending or revoked.

use crate::presence::{Show, Summary, UserPresence};
use crate::store::{Consent, Options};

/// The state a page displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Free for chat.
    Chat,
    /// Available.
    Available,
    /// Away.
    Away,
    /// Extended away.
    Xa,
    /// Do not disturb.
    Dnd,
    /// Offline.
    Offline,
    /// Being re-learned after a (re)connect.
    Unknown,
    /// The user has not (or no longer) granted us their presence.
    NotShared,
}

impl Display {
    /// The machine-readable name used in JSON (`not shared` reads as `offline`).
    pub fn key(self) -> &'static str {
        match self {
            Display::Chat => "chat",
            Display::Available => "available",
            Display::Away => "away",
            Display::Xa => "xa",
            Display::Dnd => "dnd",
            Display::Offline | Display::NotShared => "offline",
            Display::Unknown => "unknown",
        }
    }

    /// The human-readable text.
    pub fn text(self) -> &'static str {
        match self {
            Display::Chat => "Free for chat",
            Display::Available => "Available",
            Display::Away => "Away",
            Display::Xa => "Extended away",
            Display::Dnd => "Do not disturb",
            Display::Offline => "Offline",
            Display::Unknown => "Unknown",
            Display::NotShared => "Not shared",
        }
    }

    /// The badge and dot colour.
    pub fn color(self) -> &'static str {
        match self {
            Display::Chat | Display::Available => "#2da44e",
            Display::Away => "#bf8700",
            Display::Xa => "#bc4c00",
            Display::Dnd => "#cf222e",
            Display::Offline | Display::NotShared => "#8c959f",
            Display::Unknown => "#afb8c1",
        }
    }

    /// The CSS class suffix used by the HTML snippet.
    pub fn css(self) -> &'static str {
        match self {
            Display::NotShared => "hidden",
            other => other.key(),
        }
    }
}

impl From<Show> for Display {
    fn from(show: Show) -> Self {
        match show {
            Show::Chat => Display::Chat,
            Show::Available => Display::Available,
            Show::Away => Display::Away,
            Show::Xa => Display::Xa,
            Show::Dnd => Display::Dnd,
        }
    }
}

/// One user's displayable status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The state.
    pub display: Display,
    /// The status text, if the user shows it and has one.
    pub status: Option<String>,
    /// The bare JID, if the user shows it.
    pub jid: Option<String>,
    /// Since when (Unix seconds), if known.
    pub since: Option<u64>,
}

impl View {
    /// Applies options and consent to the raw presence.
    pub fn of(jid: &str, options: Options, consent: Consent, presence: &UserPresence) -> View {
        let jid = options.show_full_jid.then(|| jid.to_owned());
        if consent != Consent::Granted {
            return View {
                display: Display::NotShared,
                status: None,
                jid,
                since: None,
            };
        }
        match presence.summary() {
            Summary::Unknown => View {
                display: Display::Unknown,
                status: None,
                jid,
                since: None,
            },
            Summary::Offline { since } => View {
                display: Display::Offline,
                status: None,
                jid,
                since,
            },
            Summary::Online(top) => View {
                display: top.show.into(),
                status: if options.show_status_msg {
                    top.status.as_deref().map(str::to_owned)
                } else {
                    None
                },
                jid,
                since: Some(top.since),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::ResourceState;

    fn away_with_status() -> UserPresence {
        let mut p = UserPresence::unknown();
        p.available(ResourceState {
            resource: "laptop".into(),
            show: Show::Away,
            status: Some("at lunch".into()),
            priority: 0,
            since: 77,
            seq: 1,
        });
        p
    }

    #[test]
    fn status_and_jid_are_hidden_by_default() {
        let view = View::of(
            "alice@localhost",
            Options::default(),
            Consent::Granted,
            &away_with_status(),
        );
        assert_eq!(
            view,
            View {
                display: Display::Away,
                status: None,
                jid: None,
                since: Some(77)
            }
        );
    }

    #[test]
    fn options_reveal_status_and_jid() {
        let options = Options {
            show_status_msg: true,
            show_full_jid: true,
        };
        let view = View::of(
            "alice@localhost",
            options,
            Consent::Granted,
            &away_with_status(),
        );
        assert_eq!(view.status.as_deref(), Some("at lunch"));
        assert_eq!(view.jid.as_deref(), Some("alice@localhost"));
    }

    #[test]
    fn without_consent_nothing_but_not_shared() {
        let options = Options {
            show_status_msg: true,
            show_full_jid: false,
        };
        for consent in [Consent::Pending, Consent::Revoked] {
            let view = View::of("alice@localhost", options, consent, &away_with_status());
            assert_eq!(view.display, Display::NotShared);
            assert_eq!(view.status, None);
            assert_eq!(view.display.key(), "offline");
        }
    }

    #[test]
    fn unknown_and_offline() {
        let unknown = UserPresence::unknown();
        let view = View::of("a@b", Options::default(), Consent::Granted, &unknown);
        assert_eq!(view.display, Display::Unknown);
        let offline = UserPresence::offline(Some(9));
        let view = View::of("a@b", Options::default(), Consent::Granted, &offline);
        assert_eq!((view.display, view.since), (Display::Offline, Some(9)));
    }
}
