//! Durable registrations behind a small [`Store`] trait, with a sled implementation.
//!
//! Only what must survive a restart lives here: who registered, their options, their URL
//! token and whether they granted or revoked consent. Presence is memory-only. Every write
//! is flushed to disk before it returns, so a `result` we send is never a lie.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::token::Token;

/// What a user chose in the registration form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Options {
    /// Show the status message on the web page.
    pub show_status_msg: bool,
    /// Show the user's bare JID on the web page.
    pub show_full_jid: bool,
}

/// The state of our subscription to the user's presence (their consent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consent {
    /// We asked (`subscribe`) and have no answer yet.
    #[default]
    Pending,
    /// They approved (`subscribed`, or their presence reached us).
    Granted,
    /// They refused or revoked it (`unsubscribed`): their status is hidden.
    Revoked,
}

/// One registered user, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Bare JID, the primary key.
    pub jid: String,
    /// The token of their URL.
    pub token: Token,
    /// Their display options.
    #[serde(default)]
    pub options: Options,
    /// Whether they let us see their presence.
    #[serde(default)]
    pub consent: Consent,
    /// When they registered (Unix seconds).
    #[serde(default)]
    pub registered_at: u64,
}

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, corruption).
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    /// A stored record does not decode.
    #[error("record {key:?} does not decode: {source}")]
    Corrupt {
        /// The key of the bad record.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A record does not encode (cannot happen for our types, but is not unwrapped).
    #[error("record does not encode: {0}")]
    Encode(serde_json::Error),
}

/// Durable storage of registrations. Writes are durable when they return.
pub trait Store: Send + Sync + 'static {
    /// Every registration (at start-up).
    fn load_all(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Inserts or replaces the record for `user.jid`, flushed.
    fn put(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Deletes the record for `jid`, flushed; false if there was none.
    fn remove(&self, jid: &str) -> Result<bool, StoreError>;
}

/// sled-backed store: one tree, bare JID → JSON record.
pub struct SledStore {
    db: sled::Db,
    users: sled::Tree,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::LowSpace)
            .open()?;
        let users = db.open_tree("users")?;
        Ok(SledStore { db, users })
    }

    /// Writes many records with one flush (imports, benchmarks).
    pub fn put_many(&self, users: &[UserRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for user in users {
            batch.insert(user.jid.as_bytes(), encode(user)?);
        }
        self.users.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }
}

fn encode(user: &UserRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(user).map_err(StoreError::Encode)
}

impl Store for SledStore {
    fn load_all(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut out = Vec::with_capacity(self.users.len());
        for item in self.users.iter() {
            let (key, value) = item?;
            let record: UserRecord =
                serde_json::from_slice(&value).map_err(|source| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    source,
                })?;
            out.push(record);
        }
        Ok(out)
    }

    fn put(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.users.insert(user.jid.as_bytes(), encode(user)?)?;
        self.db.flush()?;
        Ok(())
    }

    fn remove(&self, jid: &str) -> Result<bool, StoreError> {
        let existed = self.users.remove(jid.as_bytes())?.is_some();
        self.db.flush()?;
        Ok(existed)
    }
}

/// In-memory store for tests: nothing survives the process.
#[derive(Default)]
pub struct MemoryStore {
    users: Mutex<BTreeMap<String, UserRecord>>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, UserRecord>> {
        // A panic while holding this lock cannot leave a half-written map entry.
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn load_all(&self) -> Result<Vec<UserRecord>, StoreError> {
        Ok(self.map().values().cloned().collect())
    }

    fn put(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.map().insert(user.jid.clone(), user.clone());
        Ok(())
    }

    fn remove(&self, jid: &str) -> Result<bool, StoreError> {
        Ok(self.map().remove(jid).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "webstatus-store-{name}-{}-{}",
            std::process::id(),
            Token::generate()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn record(jid: &str) -> UserRecord {
        crate::testkit::record(jid, Consent::Granted)
    }

    #[test]
    fn sled_records_survive_reopening() {
        let dir = temp_dir("reopen");
        let (alice, bob) = (record("alice@localhost"), record("bob@localhost"));
        {
            let store = SledStore::open(&dir, 1 << 20).expect("open");
            store.put(&alice).expect("put");
            store.put(&bob).expect("put");
            assert!(store.remove("bob@localhost").expect("remove"));
            assert!(!store.remove("bob@localhost").expect("remove twice"));
        }
        let store = SledStore::open(&dir, 1 << 20).expect("reopen");
        assert_eq!(store.load_all().expect("load"), vec![alice]);
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn old_records_without_new_fields_still_load() {
        let dir = temp_dir("compat");
        let store = SledStore::open(&dir, 1 << 20).expect("open");
        let token = Token::generate();
        store
            .users
            .insert(
                "carol@localhost",
                format!(r#"{{"jid":"carol@localhost","token":"{token}"}}"#).as_bytes(),
            )
            .expect("raw insert");
        let loaded = store.load_all().expect("load");
        assert_eq!(loaded[0].options, Options::default());
        assert_eq!(loaded[0].consent, Consent::Pending);
        store.users.insert("bad", &b"{not json"[..]).expect("raw");
        assert!(matches!(
            store.load_all(),
            Err(StoreError::Corrupt { key, .. }) if key == "bad"
        ));
        drop(store);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn memory_store_behaves_the_same() {
        let store = MemoryStore::default();
        let alice = record("alice@localhost");
        store.put(&alice).expect("put");
        assert_eq!(store.load_all().expect("load"), vec![alice]);
        assert!(store.remove("alice@localhost").expect("remove"));
        assert!(store.load_all().expect("load").is_empty());
    }
}
