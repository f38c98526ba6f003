//! How players appear on the public leaderboard: a nickname they chose (XEP-0172 `<nick/>`
//! in their check-in) and whether they opted in to showing their full address.
//!
//! The leaderboard is public, a JID is an address people can be contacted at, so by default
//! nobody's address is shown: a player is listed by nickname, else by a masked address
//! (`alice@…`). Only players who opted in (`<showjid>true</showjid>` in a check-in) are
//! listed with their full bare JID. Profiles live in memory and, with `--data`, in a sled
//! tree of the leaderboard's database (written without waiting for the disk: losing the last
//! nickname change in a crash is harmless).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// The longest nickname kept, in characters.
pub const MAX_NICK_CHARS: usize = 32;

/// What a player chose about their public listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name, already cleaned by [`clean_nick`].
    pub nick: Option<String>,
    /// Whether the full bare JID may be shown publicly.
    pub show_jid: bool,
}

/// A change to a profile, as read from a check-in: `None` fields stay as they were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// `Some(None)` clears the nickname (an empty `<nick/>`), `Some(Some(n))` sets it.
    pub nick: Option<Option<String>>,
    /// The opt-in, if the check-in said.
    pub show_jid: Option<bool>,
}

impl ProfileUpdate {
    /// Whether this update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.nick.is_none() && self.show_jid.is_none()
    }
}

/// Why a profile could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// sled failed.
    #[error("profile database: {0}")]
    Db(#[from] sled::Error),
    /// A stored profile is not valid JSON.
    #[error("stored profile for {jid:?} is unreadable: {source}")]
    Corrupt {
        /// The key.
        jid: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// A profile could not be encoded (cannot happen for this plain struct).
    #[error("cannot encode a profile: {0}")]
    Encode(serde_json::Error),
}

/// Every player's profile, by bare JID.
#[derive(Debug, Default)]
pub struct Profiles {
    cache: Mutex<HashMap<String, Profile>>,
    tree: Option<sled::Tree>,
}

fn lock(mutex: &Mutex<HashMap<String, Profile>>) -> MutexGuard<'_, HashMap<String, Profile>> {
    // Only whole-value inserts happen under the lock: a panic cannot leave it half-updated.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Profiles {
    /// Profiles in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Profiles kept in `tree` (e.g. [`crate::SledStore::open_tree`]); loads them all.
    pub fn open(tree: sled::Tree) -> Result<Self, ProfileError> {
        let mut cache = HashMap::new();
        for item in tree.iter() {
            let (key, value) = item?;
            let jid = String::from_utf8_lossy(&key).into_owned();
            let profile: Profile =
                serde_json::from_slice(&value).map_err(|source| ProfileError::Corrupt {
                    jid: jid.clone(),
                    source,
                })?;
            cache.insert(jid, profile);
        }
        Ok(Profiles {
            cache: Mutex::new(cache),
            tree: Some(tree),
        })
    }

    /// Applies `update` to the profile of the bare JID `jid`.
    pub fn update(&self, jid: &str, update: &ProfileUpdate) -> Result<(), ProfileError> {
        if update.is_empty() {
            return Ok(());
        }
        let mut cache = lock(&self.cache);
        let mut profile = cache.get(jid).cloned().unwrap_or_default();
        if let Some(nick) = &update.nick {
            profile.nick.clone_from(nick);
        }
        if let Some(show) = update.show_jid {
            profile.show_jid = show;
        }
        if cache.get(jid) == Some(&profile) {
            return Ok(());
        }
        if let Some(tree) = &self.tree {
            let value = serde_json::to_vec(&profile).map_err(ProfileError::Encode)?;
            tree.insert(jid.as_bytes(), value)?;
        }
        cache.insert(jid.to_owned(), profile);
        Ok(())
    }

    /// One player's profile (the default if they never set one).
    pub fn get(&self, jid: &str) -> Profile {
        lock(&self.cache).get(jid).cloned().unwrap_or_default()
    }

    /// How `jid` is listed publicly: see [`Listing`].
    pub fn listing(&self, jid: &str) -> Listing {
        let profile = self.get(jid);
        let address = profile.show_jid.then(|| jid.to_owned());
        let name = match (&profile.nick, &address) {
            (Some(nick), _) => nick.clone(),
            (None, Some(address)) => address.clone(),
            (None, None) => mask(jid),
        };
        Listing { name, address }
    }
}

/// A player as the public sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Nickname, else the full address (opted in), else the masked address.
    pub name: String,
    /// The full bare JID, only for players who opted in.
    pub address: Option<String>,
}

/// `alice@example.org` → `alice@…`; a JID without a local part → `…`.
pub fn mask(jid: &str) -> String {
    match jid.split_once('@') {
        Some((local, _)) => format!("{local}@…"),
        None => "…".to_owned(),
    }
}

/// Cleans a nickname for display: control characters removed, runs of whitespace made one
/// space, trimmed, at most [`MAX_NICK_CHARS`] characters. `None` when nothing is left, or
/// when it contains `@`: a nickname must never look like somebody's (masked) address.
pub fn clean_nick(raw: &str) -> Option<String> {
    if raw.contains('@') {
        return None;
    }
    let words: Vec<&str> = raw
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let nick: String = words.join(" ").chars().take(MAX_NICK_CHARS).collect();
    let nick = nick.trim_end().to_owned();
    (!nick.is_empty()).then_some(nick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_unless_opted_in() {
        let profiles = Profiles::in_memory();
        assert_eq!(
            profiles.listing("alice@example.org"),
            Listing {
                name: "alice@…".into(),
                address: None
            }
        );
        let nick = ProfileUpdate {
            nick: Some(Some("Ally".into())),
            show_jid: None,
        };
        profiles.update("alice@example.org", &nick).expect("update");
        assert_eq!(profiles.listing("alice@example.org").name, "Ally");
        assert_eq!(profiles.listing("alice@example.org").address, None);
        let opt_in = ProfileUpdate {
            nick: None,
            show_jid: Some(true),
        };
        profiles
            .update("alice@example.org", &opt_in)
            .expect("update");
        assert_eq!(
            profiles.listing("alice@example.org").address.as_deref(),
            Some("alice@example.org")
        );
        let clear = ProfileUpdate {
            nick: Some(None),
            show_jid: None,
        };
        profiles
            .update("alice@example.org", &clear)
            .expect("update");
        assert_eq!(
            profiles.listing("alice@example.org").name,
            "alice@example.org"
        );
        assert_eq!(mask("example.org"), "…");
    }

    #[test]
    fn nicknames_are_cleaned() {
        assert_eq!(clean_nick("  Ally \n\t Cat "), Some("Ally Cat".into()));
        assert_eq!(clean_nick("a\u{0}b"), Some("a b".into()));
        assert_eq!(clean_nick("   "), None);
        assert_eq!(
            clean_nick("bob@example.org"),
            None,
            "never looks like an address"
        );
        assert_eq!(clean_nick(&"x".repeat(100)).map(|n| n.len()), Some(32));
        assert_eq!(
            clean_nick("<b>&'\""),
            Some("<b>&'\"".into()),
            "escaped on output"
        );
    }

    #[test]
    fn profiles_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("pong-profiles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let update = ProfileUpdate {
            nick: Some(Some("Bobby".into())),
            show_jid: Some(true),
        };
        {
            let db = sled::Config::new()
                .path(&dir)
                .temporary(false)
                .open()
                .expect("open");
            let profiles = Profiles::open(db.open_tree("profiles").expect("tree")).expect("load");
            profiles.update("bob@x", &update).expect("update");
            db.flush().expect("flush");
        }
        let mut reopened = sled::open(&dir);
        for _ in 0..100 {
            if reopened.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            reopened = sled::open(&dir);
        }
        let db = reopened.expect("reopen");
        let profiles = Profiles::open(db.open_tree("profiles").expect("tree")).expect("load");
        assert_eq!(profiles.get("bob@x").nick.as_deref(), Some("Bobby"));
        assert!(profiles.get("bob@x").show_jid);
        drop(profiles);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
