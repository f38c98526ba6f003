//! The leaderboard: wins, losses and points per bare JID.
//!
//! Three parts, so that neither disk work nor sorting ever happens on a reader's path or
//! on the async runtime:
//! - [`ResultStore`]: the durable rows ([`SledStore`]; [`MemoryStore`] without `--data`
//!   and in tests). Its calls block, so only the writer calls them, on a blocking thread.
//! - the writer task behind [`Leaderboard::record`]: the one place the leaderboard
//!   changes. It takes the queued results (several at once when they pile up: one batch,
//!   one fsync), computes the new rows from the in-memory table, writes them through
//!   `spawn_blocking`, and publishes them only once they are durable. `record` returns
//!   after that, which is what lets a game send `gameOver` after its result is safe.
//! - the published snapshot: the best [`TOP_ROWS`] rows, already ranked, behind an `Arc`
//!   that readers clone under a lock held for a pointer copy, and the per-player table.
//!   HTTP and the XMPP leaderboard IQ read only these. The ranking is kept incrementally
//!   in an ordered set, so a write costs `O(log n + TOP_ROWS)`, never a full sort.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// How many ranked rows the snapshot keeps: the most any query may ask for.
pub const TOP_ROWS: usize = 1000;
/// Results waiting for the writer; a game ending while it is full waits for room.
const QUEUE: usize = 1024;
/// Most results written in one batch (one fsync).
const MAX_BATCH: usize = 256;

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
    /// Syncing the database file failed.
    #[error("leaderboard database: {0}")]
    Io(#[from] std::io::Error),
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

/// Why [`Leaderboard::record`] did not keep a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    /// The store refused or failed the write; nothing of the batch was published.
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// The writer is gone (the runtime is stopping) or its blocking task failed.
    #[error("the leaderboard writer stopped: {0}")]
    Stopped(String),
}

/// Durable rows. Blocking: only the leaderboard's writer calls these, from
/// `spawn_blocking`.
pub trait ResultStore: Send + Sync + 'static {
    /// Every stored record.
    fn load(&self) -> Result<Vec<(String, Stats)>, StoreError>;
    /// Replaces the records of `rows`, all or none, and returns once they are on disk.
    fn put(&self, rows: &[(String, Stats)]) -> Result<(), StoreError>;
}

/// Rows in memory only (tests, `--data` not given).
#[derive(Debug, Default)]
pub struct MemoryStore {
    rows: Mutex<HashMap<String, Stats>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change below is a whole-value insert: a panic cannot leave a value half-made.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ResultStore for MemoryStore {
    fn load(&self) -> Result<Vec<(String, Stats)>, StoreError> {
        Ok(lock(&self.rows)
            .iter()
            .map(|(jid, stats)| (jid.clone(), *stats))
            .collect())
    }

    fn put(&self, rows: &[(String, Stats)]) -> Result<(), StoreError> {
        lock(&self.rows).extend(rows.iter().cloned());
        Ok(())
    }
}

/// The durable rows: one sled tree keyed by bare JID, JSON values.
pub struct SledStore {
    db: sled::Db,
    players: sled::Tree,
    /// sled's data file. sled's `flush` ends with `sync_file_range` on Linux, which does
    /// not persist the file's metadata (a grown size); an `fsync` of this handle does.
    file: Option<File>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("players", &self.players.len())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::open(dir)?;
        let players = db.open_tree("players")?;
        // sled 0.34 keeps its log in `<dir>/db`; without it we still have sled's flush.
        let file = File::open(dir.join("db")).ok();
        Ok(SledStore { db, players, file })
    }

    /// Another tree of the same database (e.g. the players' profiles), so everything the
    /// game server keeps lives in one `--data` directory.
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }
}

impl ResultStore for SledStore {
    fn load(&self) -> Result<Vec<(String, Stats)>, StoreError> {
        let mut rows = Vec::with_capacity(self.players.len());
        for item in self.players.iter() {
            let (key, value) = item?;
            let jid = String::from_utf8_lossy(&key).into_owned();
            let stats: Stats =
                serde_json::from_slice(&value).map_err(|source| StoreError::Corrupt {
                    jid: jid.clone(),
                    source,
                })?;
            rows.push((jid, stats));
        }
        Ok(rows)
    }

    fn put(&self, rows: &[(String, Stats)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (jid, stats) in rows {
            let value = serde_json::to_vec(stats).map_err(StoreError::Encode)?;
            batch.insert(jid.as_bytes(), value);
        }
        // All rows or none, then flush and fsync: the rows are on disk when we return.
        self.players.apply_batch(batch)?;
        self.db.flush()?;
        if let Some(file) = &self.file {
            file.sync_all()?;
        }
        Ok(())
    }
}

/// The order of the leaderboard: most wins, then fewest losses, then most points, then
/// the JID (so the order is total and stable).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RankKey {
    wins: Reverse<u64>,
    losses: u64,
    points: Reverse<u64>,
    jid: String,
}

impl RankKey {
    fn new(jid: &str, stats: &Stats) -> Self {
        RankKey {
            wins: Reverse(stats.wins),
            losses: stats.losses,
            points: Reverse(stats.points),
            jid: jid.to_owned(),
        }
    }
}

/// What readers see; changed only by the writer, after a durable write.
#[derive(Default)]
struct Published {
    /// The best [`TOP_ROWS`] rows, ranked.
    top: RwLock<Arc<[Entry]>>,
    /// Every player's record.
    players: RwLock<HashMap<String, Stats>>,
}

/// A result on its way to the writer, and where to say how it went.
struct Write {
    result: GameResult,
    done: oneshot::Sender<Result<(), RecordError>>,
}

/// The leaderboard: reads from the published snapshot, writes through the writer task.
/// Cheap to clone (all clones share one writer).
#[derive(Clone)]
pub struct Leaderboard {
    published: Arc<Published>,
    writes: mpsc::Sender<Write>,
    /// Calls of [`Leaderboard::record`] that have not returned yet.
    pending: Arc<AtomicUsize>,
}

/// Counts a [`Leaderboard::record`] call while it lives, however it ends.
struct Pending(Arc<AtomicUsize>);

impl Pending {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Relaxed);
        Pending(Arc::clone(count))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl std::fmt::Debug for Leaderboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaderboard")
            .field("players", &self.len())
            .finish_non_exhaustive()
    }
}

impl Leaderboard {
    /// Loads every record from `store` (on a blocking thread) and starts the writer task.
    /// Must be called inside a Tokio runtime.
    pub async fn open(store: Arc<dyn ResultStore>) -> Result<Self, StoreError> {
        let loader = Arc::clone(&store);
        let rows = tokio::task::spawn_blocking(move || loader.load())
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))??;
        let published = Arc::new(Published::default());
        let mut ranking = BTreeSet::new();
        {
            let mut players = write(&published.players);
            for (jid, stats) in rows {
                ranking.insert(RankKey::new(&jid, &stats));
                players.insert(jid, stats);
            }
        }
        *write(&published.top) = top_rows(&ranking, &read(&published.players));
        let (writes, queue) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(
            store,
            Arc::clone(&published),
            Arc::new(Mutex::new(ranking)),
            queue,
        ));
        Ok(Leaderboard {
            published,
            writes,
            pending: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Adds a result; returns once it is durable and visible to readers.
    pub async fn record(&self, result: GameResult) -> Result<(), RecordError> {
        let _pending = Pending::new(&self.pending);
        let (done, reply) = oneshot::channel();
        self.writes
            .send(Write { result, done })
            .await
            .map_err(|_| RecordError::Stopped("queue closed".into()))?;
        reply
            .await
            .map_err(|_| RecordError::Stopped("no reply".into()))?
    }

    /// Results being written right now (shutdown waits for them).
    pub fn pending(&self) -> usize {
        self.pending.load(Relaxed)
    }

    /// The best `limit` (at most [`TOP_ROWS`]) players: most wins, then fewest losses,
    /// then most points.
    pub fn top(&self, limit: usize) -> Vec<Entry> {
        let top = Arc::clone(&read(&self.published.top));
        top.iter().take(limit).cloned().collect()
    }

    /// One player's record.
    pub fn get(&self, jid: &str) -> Option<Stats> {
        read(&self.published.players).get(jid).copied()
    }

    /// How many players have a record.
    pub fn len(&self) -> usize {
        read(&self.published.players).len()
    }

    /// Whether nobody has a record yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn top_rows(ranking: &BTreeSet<RankKey>, players: &HashMap<String, Stats>) -> Arc<[Entry]> {
    ranking
        .iter()
        .take(TOP_ROWS)
        .filter_map(|key| {
            Some(Entry {
                jid: key.jid.clone(),
                stats: *players.get(&key.jid)?,
            })
        })
        .collect()
}

/// The writer: takes what is queued, commits it on a blocking thread, answers each
/// waiting game. Ends when every [`Leaderboard`] clone is gone.
async fn write_loop(
    store: Arc<dyn ResultStore>,
    published: Arc<Published>,
    ranking: Arc<Mutex<BTreeSet<RankKey>>>,
    mut queue: mpsc::Receiver<Write>,
) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results: Vec<GameResult> = batch.iter().map(|w| w.result.clone()).collect();
        let (store, published, ranking) = (
            Arc::clone(&store),
            Arc::clone(&published),
            Arc::clone(&ranking),
        );
        let committed =
            tokio::task::spawn_blocking(move || commit(&*store, &published, &ranking, &results))
                .await;
        let reply = match committed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(RecordError::Store(Arc::new(error))),
            Err(error) => Err(RecordError::Stopped(error.to_string())),
        };
        for write in batch.drain(..) {
            let _ = write.done.send(reply.clone());
        }
    }
}

/// Applies `results` to copies of the rows they touch, makes those durable, then
/// publishes them. On a store error nothing changes.
fn commit(
    store: &dyn ResultStore,
    published: &Published,
    ranking: &Mutex<BTreeSet<RankKey>>,
    results: &[GameResult],
) -> Result<(), StoreError> {
    // Only this function changes the published rows and it runs once at a time (one
    // writer task, awaiting each commit), so reading them here and writing them back
    // below cannot lose an update.
    let mut changed: HashMap<String, Stats> = HashMap::new();
    {
        let players = read(&published.players);
        let current = |jid: &str, changed: &HashMap<String, Stats>| {
            changed
                .get(jid)
                .or_else(|| players.get(jid))
                .copied()
                .unwrap_or_default()
        };
        for result in results {
            let mut winner = current(&result.winner, &changed);
            let mut loser = current(&result.loser, &changed);
            winner.wins += 1;
            winner.points += u64::from(result.winner_points);
            winner.points_against += u64::from(result.loser_points);
            loser.losses += 1;
            loser.points += u64::from(result.loser_points);
            loser.points_against += u64::from(result.winner_points);
            changed.insert(result.winner.clone(), winner);
            changed.insert(result.loser.clone(), loser);
        }
    }
    let rows: Vec<(String, Stats)> = changed.into_iter().collect();
    store.put(&rows)?;
    let mut ranking = lock(ranking);
    {
        let mut players = write(&published.players);
        for (jid, stats) in rows {
            if let Some(old) = players.get(&jid) {
                ranking.remove(&RankKey::new(&jid, old));
            }
            ranking.insert(RankKey::new(&jid, &stats));
            players.insert(jid, stats);
        }
    }
    let top = top_rows(&ranking, &read(&published.players));
    *write(&published.top) = top;
    Ok(())
}

/// A store that fails every write (a test double shared by the lobby's tests).
#[cfg(test)]
pub(crate) struct BrokenDisk;

#[cfg(test)]
impl ResultStore for BrokenDisk {
    fn load(&self) -> Result<Vec<(String, Stats)>, StoreError> {
        Ok(Vec::new())
    }

    fn put(&self, _: &[(String, Stats)]) -> Result<(), StoreError> {
        Err(StoreError::Io(std::io::Error::other("disk full")))
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

    async fn exercise(board: &Leaderboard) {
        board
            .record(result("alice@x", "bob@x", 10, 3))
            .await
            .expect("record");
        board
            .record(result("bob@x", "carol@x", 10, 9))
            .await
            .expect("record");
        board
            .record(result("alice@x", "carol@x", 10, 0))
            .await
            .expect("record");
        assert_eq!(
            board.get("alice@x"),
            Some(Stats {
                wins: 2,
                losses: 0,
                points: 20,
                points_against: 3
            })
        );
        assert_eq!(
            board.get("bob@x"),
            Some(Stats {
                wins: 1,
                losses: 1,
                points: 13,
                points_against: 19
            })
        );
        let top: Vec<String> = board.top(10).into_iter().map(|e| e.jid).collect();
        assert_eq!(top, ["alice@x", "bob@x", "carol@x"]);
        assert_eq!(board.top(1).len(), 1);
        assert_eq!(board.len(), 3);
    }

    #[tokio::test]
    async fn memory_leaderboard_ranks_and_sums() {
        let board = Leaderboard::open(Arc::new(MemoryStore::new()))
            .await
            .expect("open");
        exercise(&board).await;
    }

    /// Many results at once are batched, and every one of them counts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_results_all_count_and_the_ranking_stays_sorted() {
        let store = Arc::new(MemoryStore::new());
        let board = Leaderboard::open(Arc::clone(&store) as Arc<dyn ResultStore>)
            .await
            .expect("open");
        let mut tasks = Vec::new();
        for i in 0..400u32 {
            let board = board.clone();
            tasks.push(tokio::spawn(async move {
                let (w, l) = (format!("p{}@x", i % 7), format!("q{}@x", i % 5));
                board.record(result(&w, &l, 3, i % 3)).await
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("record");
        }
        let wins: u64 = (0..7)
            .filter_map(|i| board.get(&format!("p{i}@x")))
            .map(|s| s.wins)
            .sum();
        let losses: u64 = (0..5)
            .filter_map(|i| board.get(&format!("q{i}@x")))
            .map(|s| s.losses)
            .sum();
        assert_eq!((wins, losses), (400, 400));
        let top = board.top(TOP_ROWS);
        assert_eq!(top.len(), 12);
        assert!(top.windows(2).all(|w| w[0].stats.wins >= w[1].stats.wins));
        // What readers see is what is stored.
        let mut stored = store.load().expect("load");
        stored.sort_by(|a, b| a.0.cmp(&b.0));
        let mut seen: Vec<(String, Stats)> = top.into_iter().map(|e| (e.jid, e.stats)).collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, stored);
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_not_published() {
        let board = Leaderboard::open(Arc::new(BrokenDisk)).await.expect("open");
        let error = board
            .record(result("alice@x", "bob@x", 1, 0))
            .await
            .expect_err("the disk is broken");
        assert!(error.to_string().contains("disk full"), "{error}");
        assert!(board.is_empty() && board.top(10).is_empty());
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pong-lb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn sled_leaderboard_survives_a_reopen() {
        let dir = temp_dir("reopen");
        {
            let store = SledStore::open(&dir).expect("open");
            let board = Leaderboard::open(Arc::new(store)).await.expect("board");
            exercise(&board).await;
        }
        // sled releases its file lock from a background thread shortly after the drop.
        let mut reopened = SledStore::open(&dir);
        for _ in 0..100 {
            if reopened.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            reopened = SledStore::open(&dir);
        }
        let board = Leaderboard::open(Arc::new(reopened.expect("reopen")))
            .await
            .expect("board");
        assert_eq!(board.len(), 3);
        assert_eq!(board.get("carol@x").map(|s| s.losses), Some(2));
        assert_eq!(board.top(1)[0].jid, "alice@x");
        drop(board);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store whose writes wait until the test lets them through.
    struct GatedStore(Mutex<std::sync::mpsc::Receiver<()>>);

    impl ResultStore for GatedStore {
        fn load(&self) -> Result<Vec<(String, Stats)>, StoreError> {
            Ok(Vec::new())
        }

        fn put(&self, _: &[(String, Stats)]) -> Result<(), StoreError> {
            lock(&self.0)
                .recv()
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))
        }
    }

    #[tokio::test]
    async fn pending_counts_the_writes_not_done_yet() {
        let (open, gate) = std::sync::mpsc::channel();
        let board = Leaderboard::open(Arc::new(GatedStore(Mutex::new(gate))))
            .await
            .expect("board");
        assert_eq!(board.pending(), 0);
        let writer = board.clone();
        let write =
            tokio::spawn(async move { writer.record(result("alice@x", "bob@x", 1, 0)).await });
        for _ in 0..10_000 {
            if board.pending() > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(board.pending(), 1);
        assert!(!write.is_finished(), "held at the gate");
        open.send(()).expect("gate");
        write.await.expect("task").expect("written");
        assert_eq!(board.pending(), 0);
        assert_eq!(board.get("alice@x").map(|s| s.wins), Some(1));
    }
}
