//! Opening the game server's durable state: the results store behind the leaderboard and
//! the profiles, in one sled database under `--data`, or in memory without it.

use std::path::Path;
use std::sync::Arc;

use crate::leaderboard::{MemoryStore, ResultStore, SledStore};
use crate::profiles::Profiles;

/// The results store and the profiles: on disk in `data`, or in memory (with a warning)
/// when there is no `--data`. The error names the directory and what failed.
pub fn open(data: Option<&Path>) -> Result<(Arc<dyn ResultStore>, Arc<Profiles>), String> {
    let Some(dir) = data else {
        tracing::warn!("no --data DIR: the leaderboard is kept in memory only");
        return Ok((
            Arc::new(MemoryStore::new()),
            Arc::new(Profiles::in_memory()),
        ));
    };
    let store = SledStore::open(dir)
        .map_err(|e| format!("cannot open the leaderboard in {}: {e}", dir.display()))?;
    let profiles = store
        .open_tree("profiles")
        .map_err(|e| e.to_string())
        .and_then(|tree| Profiles::open(tree).map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot open the profiles in {}: {e}", dir.display()))?;
    Ok((Arc::new(store), Arc::new(profiles)))
}
