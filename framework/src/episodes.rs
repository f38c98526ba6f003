//! "Log it once": which senders were already reported in an ongoing episode of trouble.
//!
//! A sender that keeps sending over-deep stanzas, or keeps a presence storm going, should
//! leave one log line per episode, not one per stanza. An episode lasts while its reports
//! keep coming less than [`EPISODE_GAP`] apart. At most [`MAX_TRACKED`] senders are
//! remembered; past that the oldest knowledge is dropped (a sender may be logged again).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Quiet time after which the next report starts a new episode.
pub(crate) const EPISODE_GAP: Duration = Duration::from_secs(60);
/// Senders remembered at most.
const MAX_TRACKED: usize = 4096;

/// Senders (by hash) with an episode in progress, and when they were last reported.
#[derive(Debug, Default)]
pub(crate) struct Episodes {
    last: HashMap<u64, Instant>,
}

impl Episodes {
    /// Records trouble from `sender`; true when it starts a new episode (log it).
    pub(crate) fn first(&mut self, sender: u64, now: Instant) -> bool {
        if self.last.len() >= MAX_TRACKED && !self.last.contains_key(&sender) {
            self.last
                .retain(|_, at| now.saturating_duration_since(*at) < EPISODE_GAP);
            if self.last.len() >= MAX_TRACKED {
                self.last.clear();
            }
        }
        match self.last.insert(sender, now) {
            Some(at) => now.saturating_duration_since(at) >= EPISODE_GAP,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_episode_per_sender_and_bounded() {
        let mut episodes = Episodes::default();
        let t0 = Instant::now();
        assert!(episodes.first(1, t0));
        assert!(!episodes.first(1, t0 + Duration::from_secs(30)));
        assert!(
            !episodes.first(1, t0 + Duration::from_secs(80)),
            "still going"
        );
        assert!(episodes.first(2, t0), "another sender");
        assert!(
            episodes.first(1, t0 + Duration::from_secs(200)),
            "a new episode"
        );
        for n in 0..(MAX_TRACKED as u64 * 3) {
            episodes.first(n + 10, t0);
        }
        assert!(episodes.last.len() <= MAX_TRACKED);
    }
}
