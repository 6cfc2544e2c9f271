//! What is known about a partial download, so an interrupted apply can resume it.
//!
//! Each download in `.modelctl/tmp/` has a data file (`<key>.part`, pre-sized to the locked
//! size) and a small state file (`<key>.part.json`) listing which chunks are complete, for
//! which URL, size, chunk size and validator (`ETag`). A resume trusts the state only when all
//! of those still match; otherwise the download starts over. The state is a hint: the final
//! sha256 decides whether the bytes are right, so the state is replaced by rename without an
//! fsync (a power loss can at worst cost a re-download, never a wrong blob).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256;

/// The on-disk state of one partial download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialState {
    /// sha256 of the URL (the URL itself may carry secrets).
    pub url: Sha256,
    pub size: u64,
    pub chunk_size: u64,
    pub etag: Option<String>,
    /// Indices of complete chunks.
    pub done: BTreeSet<u64>,
    /// Bytes already written at the start of each unfinished chunk, so a resume continues
    /// inside a chunk instead of fetching it again from its first byte.
    #[serde(default)]
    pub progress: BTreeMap<u64, u64>,
}

/// Where a partial download lives.
#[derive(Debug, Clone)]
pub struct PartialFiles {
    pub data: PathBuf,
    pub state: PathBuf,
}

impl PartialFiles {
    /// The files of the download keyed by `key` (a sha256 hex, so a safe name) in `tmp`.
    pub fn new(tmp: &Path, key: &Sha256) -> Self {
        Self {
            data: tmp.join(format!("{}.part", key.hex())),
            state: tmp.join(format!("{}.part.json", key.hex())),
        }
    }

    /// The saved state, if it is readable and describes the same download.
    pub fn load(&self, expected: &PartialState) -> Option<PartialState> {
        let bytes = std::fs::read(&self.state).ok()?;
        let state: PartialState = serde_json::from_slice(&bytes).ok()?;
        let same = state.url == expected.url
            && state.size == expected.size
            && state.chunk_size == expected.chunk_size
            && state.etag == expected.etag;
        let data_ok = std::fs::metadata(&self.data).is_ok_and(|m| m.len() == expected.size);
        (same && data_ok).then_some(state)
    }

    /// Records progress (rename only, see the module note). Callers serialise their saves;
    /// each one still writes its own temporary file, so two can never rename the same one.
    pub fn save(&self, state: &PartialState) -> std::io::Result<()> {
        static SAVES: AtomicU64 = AtomicU64::new(0);
        let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        let n = SAVES.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .state
            .with_extension(format!("json.{}-{n}", std::process::id()));
        std::fs::write(&temp, bytes)?;
        std::fs::rename(&temp, &self.state)
    }

    /// Forgets the download (after publishing, or when it cannot be resumed).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.state);
        let _ = std::fs::remove_file(&self.data);
    }

    /// Forgets only the state (the data file was published by rename).
    pub fn remove_state(&self) {
        let _ = std::fs::remove_file(&self.state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_inside_chunks_survives_a_save_and_old_states_stay_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = PartialFiles::new(dir.path(), &Sha256::of(b"k"));
        std::fs::write(&files.data, vec![0u8; 10]).expect("data");
        let mut state = PartialState {
            url: Sha256::of(b"u"),
            size: 10,
            chunk_size: 4,
            etag: None,
            done: BTreeSet::from([0]),
            progress: BTreeMap::from([(1, 3)]),
        };
        files.save(&state).expect("save");
        assert_eq!(files.load(&state), Some(state.clone()));
        // A state written before `progress` existed still loads.
        std::fs::write(&files.state, br#"{"url":"0000000000000000000000000000000000000000000000000000000000000000","size":10,"chunk_size":4,"etag":null,"done":[0]}"#).expect("old");
        state.url = Sha256::from_bytes([0; 32]);
        let loaded = files.load(&state).expect("loads");
        assert!(loaded.progress.is_empty());
        let leftovers = std::fs::read_dir(dir.path()).expect("ls").count();
        assert_eq!(leftovers, 2, "no temporary state files are left");
    }
}
