//! The leaderboard: wins, losses and points per bare JID, behind the small
//! [`ResultStore`] trait; [`SledStore`] keeps it durable, [`MemoryStore`] is for tests.
//!
//! [`ResultStore::record`] is synchronous and returns only once the result is on disk
//! (sled `flush`), which is what lets a game send `gameOver` after the result is safe:
//! the game calls it through `spawn_blocking`. Reads are served from an in-memory copy,
//! so a leaderboard query never touches the disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// One player's record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Games won.
    pub wins: u64,
    /// Games lost (forfeits included).
    pub losses: u64,
    /// Points scored over all games.
    pub points: u64,
    /// Points conceded over all games.
    pub points_against: u64,
}

/// A row of the leaderboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Bare JID.
    pub jid: String,
    /// The record.
    #[serde(flatten)]
    pub stats: Stats,
}

/// The result of one finished game between two different bare JIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameResult {
    /// The winner's bare JID.
    pub winner: String,
    /// The loser's bare JID.
    pub loser: String,
    /// Points the winner scored.
    pub winner_points: u32,
    /// Points the loser scored.
    pub loser_points: u32,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption).
    #[error("leaderboard database: {0}")]
    Db(#[from] sled::Error),
    /// A stored record is not valid JSON.
    #[error("leaderboard record for {jid:?} is unreadable: {source}")]
    Corrupt {
        /// The key.
        jid: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// A record could not be encoded (cannot happen for these plain structs).
    #[error("cannot encode a leaderboard record: {0}")]
    Encode(serde_json::Error),
}

/// Where results go. Implementations are shared between game tasks and the HTTP server.
pub trait ResultStore: Send + Sync + 'static {
    /// Adds a result; returns once it is durable. Blocking: call from `spawn_blocking`.
    fn record(&self, result: &GameResult) -> Result<(), StoreError>;
    /// The best `limit` players: most wins, then fewest losses, then most points.
    fn top(&self, limit: usize) -> Vec<Entry>;
    /// One player's record.
    fn get(&self, jid: &str) -> Option<Stats>;
    /// How many players have a record.
    fn len(&self) -> usize;
    /// Whether nobody has a record yet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map is only changed by whole-value inserts: a panic elsewhere cannot leave it
    // half-updated.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Applies a result to the records it touches; returns the two updated rows.
fn apply(cache: &HashMap<String, Stats>, result: &GameResult) -> [(String, Stats); 2] {
    let mut winner = cache.get(&result.winner).copied().unwrap_or_default();
    let mut loser = cache.get(&result.loser).copied().unwrap_or_default();
    winner.wins += 1;
    winner.points += u64::from(result.winner_points);
    winner.points_against += u64::from(result.loser_points);
    loser.losses += 1;
    loser.points += u64::from(result.loser_points);
    loser.points_against += u64::from(result.winner_points);
    [
        (result.winner.clone(), winner),
        (result.loser.clone(), loser),
    ]
}

fn ranked(cache: &HashMap<String, Stats>, limit: usize) -> Vec<Entry> {
    let mut rows: Vec<Entry> = cache
        .iter()
        .map(|(jid, stats)| Entry {
            jid: jid.clone(),
            stats: *stats,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.stats
            .wins
            .cmp(&a.stats.wins)
            .then(a.stats.losses.cmp(&b.stats.losses))
            .then(b.stats.points.cmp(&a.stats.points))
            .then(a.jid.cmp(&b.jid))
    });
    rows.truncate(limit);
    rows
}

/// A leaderboard in memory only (tests, `--data` not given).
#[derive(Debug, Default)]
pub struct MemoryStore {
    cache: Mutex<HashMap<String, Stats>>,
}

impl MemoryStore {
    /// An empty leaderboard.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ResultStore for MemoryStore {
    fn record(&self, result: &GameResult) -> Result<(), StoreError> {
        let mut cache = lock(&self.cache);
        for (jid, stats) in apply(&cache, result) {
            cache.insert(jid, stats);
        }
        Ok(())
    }

    fn top(&self, limit: usize) -> Vec<Entry> {
        ranked(&lock(&self.cache), limit)
    }

    fn get(&self, jid: &str) -> Option<Stats> {
        lock(&self.cache).get(jid).copied()
    }

    fn len(&self) -> usize {
        lock(&self.cache).len()
    }
}

/// The durable leaderboard: one sled tree keyed by bare JID, JSON values, plus an
/// in-memory copy for reads.
pub struct SledStore {
    db: sled::Db,
    players: sled::Tree,
    /// Also serialises writers, so two results for the same player cannot interleave
    /// their read-modify-write.
    cache: Mutex<HashMap<String, Stats>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("players", &self.len())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir` and loads every record.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::open(dir)?;
        let players = db.open_tree("players")?;
        let mut cache = HashMap::new();
        for item in players.iter() {
            let (key, value) = item?;
            let jid = String::from_utf8_lossy(&key).into_owned();
            let stats: Stats =
                serde_json::from_slice(&value).map_err(|source| StoreError::Corrupt {
                    jid: jid.clone(),
                    source,
                })?;
            cache.insert(jid, stats);
        }
        Ok(SledStore {
            db,
            players,
            cache: Mutex::new(cache),
        })
    }

    /// Another tree of the same database (e.g. the players' profiles), so everything the
    /// game server keeps lives in one `--data` directory.
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }
}

impl ResultStore for SledStore {
    fn record(&self, result: &GameResult) -> Result<(), StoreError> {
        let mut cache = lock(&self.cache);
        let rows = apply(&cache, result);
        let mut batch = sled::Batch::default();
        for (jid, stats) in &rows {
            let value = serde_json::to_vec(stats).map_err(StoreError::Encode)?;
            batch.insert(jid.as_bytes(), value);
        }
        // Both rows or neither, then fsync: the result is on disk when we return.
        self.players.apply_batch(batch)?;
        self.db.flush()?;
        for (jid, stats) in rows {
            cache.insert(jid, stats);
        }
        Ok(())
    }

    fn top(&self, limit: usize) -> Vec<Entry> {
        ranked(&lock(&self.cache), limit)
    }

    fn get(&self, jid: &str) -> Option<Stats> {
        lock(&self.cache).get(jid).copied()
    }

    fn len(&self) -> usize {
        lock(&self.cache).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(winner: &str, loser: &str, w: u32, l: u32) -> GameResult {
        GameResult {
            winner: winner.into(),
            loser: loser.into(),
            winner_points: w,
            loser_points: l,
        }
    }

    fn exercise(store: &dyn ResultStore) {
        store
            .record(&result("alice@x", "bob@x", 10, 3))
            .expect("record");
        store
            .record(&result("bob@x", "carol@x", 10, 9))
            .expect("record");
        store
            .record(&result("alice@x", "carol@x", 10, 0))
            .expect("record");
        assert_eq!(
            store.get("alice@x"),
            Some(Stats {
                wins: 2,
                losses: 0,
                points: 20,
                points_against: 3
            })
        );
        assert_eq!(
            store.get("bob@x"),
            Some(Stats {
                wins: 1,
                losses: 1,
                points: 13,
                points_against: 19
            })
        );
        let top: Vec<String> = store.top(10).into_iter().map(|e| e.jid).collect();
        assert_eq!(top, ["alice@x", "bob@x", "carol@x"]);
        assert_eq!(store.top(1).len(), 1);
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn memory_store_ranks_and_sums() {
        exercise(&MemoryStore::new());
    }

    #[test]
    fn sled_store_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!(
            "pong-lb-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = SledStore::open(&dir).expect("open");
            exercise(&store);
        }
        // sled releases its file lock from a background thread shortly after the drop.
        let mut reopened = SledStore::open(&dir);
        for _ in 0..100 {
            if reopened.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            reopened = SledStore::open(&dir);
        }
        let store = reopened.expect("reopen");
        assert_eq!(store.len(), 3);
        assert_eq!(store.get("carol@x").map(|s| s.losses), Some(2));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
