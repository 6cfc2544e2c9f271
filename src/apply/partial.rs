//! What is known about a partial download, so an interrupted apply can resume it.
//!
//! Each download in `.modelctl/tmp/` has a data file (`<key>.part`, pre-sized to the locked
//! size) and a small state file (`<key>.part.json`) listing which chunks are complete, for
//! which URL, size, chunk size and validator (`ETag`). A resume trusts the state only when all
//! of those still match; otherwise the download starts over. The state is a hint: the final
//! sha256 decides whether the bytes are right, so the state is replaced by rename without an
//! fsync (a power loss can at worst cost a re-download, never a wrong blob).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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

    /// Records progress (rename only, see the module note).
    pub fn save(&self, state: &PartialState) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        let temp = self
            .state
            .with_extension(format!("json.{}", std::process::id()));
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
