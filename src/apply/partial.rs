//! What is known about a partial download, so an interrupted apply can resume it.
//!
//! Each download in `.modelctl/tmp/` has a data file (`<key>.part`, pre-sized to the locked
//! size) and a small state file (`<key>.part.json`) listing which chunks are complete and how
//! far the unfinished ones got, for which URL, size, chunk size and validator (`ETag`). It is
//! saved when a chunk completes and, while bytes arrive, a few times a second, so a kill loses
//! little more than the last fraction of a second of each connection. A resume trusts the state
//! only when the URL, size and validator still match (bytes recorded under another chunk size
//! are mapped onto the current one); otherwise the download starts over. The state records
//! only bytes already written to the data file; it is a hint all the same: the final sha256
//! decides whether the bytes are right, so the state is replaced by rename without an fsync (a
//! power loss can at worst cost a re-download, never a wrong blob). Once the data file is
//! verified, a download the lock has no sha256 for records the digest it learned, so a rerun
//! after a kill between publishing and writing models.lock finds the blob instead of fetching
//! the file again.

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
    /// The sha256 of the complete, verified data file, recorded before it is published when
    /// the lock has none (the key is then the URL's, and the plan cannot know the blob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Sha256>,
}

impl PartialState {
    fn same_download(&self, other: &PartialState) -> bool {
        self.url == other.url && self.size == other.size && self.etag == other.etag
    }

    /// The same written bytes described in chunks of `chunk_size`: a chunk is done when the
    /// bytes recorded cover it, and otherwise keeps the written run at its start.
    fn rechunk(&self, chunk_size: u64) -> PartialState {
        if chunk_size == self.chunk_size || chunk_size == 0 || self.chunk_size == 0 {
            return self.clone();
        }
        let old = self.chunk_size;
        let mut runs: Vec<(u64, u64)> = self
            .done
            .iter()
            .map(|i| (i * old, ((i + 1) * old).min(self.size)))
            .chain(self.progress.iter().map(|(i, n)| (i * old, i * old + n)))
            .filter(|(start, end)| start < end)
            .collect();
        runs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (start, end) in runs {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let mut state = PartialState {
            chunk_size,
            done: BTreeSet::new(),
            progress: BTreeMap::new(),
            ..self.clone()
        };
        for index in 0..self.size.div_ceil(chunk_size) {
            let (start, end) = (
                index * chunk_size,
                ((index + 1) * chunk_size).min(self.size),
            );
            let covered = merged
                .iter()
                .find(|(s, e)| *s <= start && start < *e)
                .map_or(0, |(_, e)| e.min(&end) - start);
            if covered == end - start {
                state.done.insert(index);
            } else if covered > 0 {
                state.progress.insert(index, covered);
            }
        }
        state
    }
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

    /// The saved state, if it is readable and describes the same download, in the chunks of
    /// `expected`.
    pub fn load(&self, expected: &PartialState) -> Option<PartialState> {
        let state = self.read(expected)?;
        let data_ok = std::fs::metadata(&self.data).is_ok_and(|m| m.len() == expected.size);
        data_ok.then(|| state.rechunk(expected.chunk_size))
    }

    /// The sha256 an earlier run verified the complete file to have, when the state still
    /// describes the same download (its data file may be published already).
    pub fn verified(&self, expected: &PartialState) -> Option<Sha256> {
        self.read(expected)?.verified
    }

    fn read(&self, expected: &PartialState) -> Option<PartialState> {
        let bytes = std::fs::read(&self.state).ok()?;
        let state: PartialState = serde_json::from_slice(&bytes).ok()?;
        state.same_download(expected).then_some(state)
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
            verified: None,
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

    #[test]
    fn bytes_recorded_under_another_chunk_size_are_kept() {
        let whole = PartialState {
            url: Sha256::of(b"u"),
            size: 10,
            chunk_size: 10,
            etag: None,
            done: BTreeSet::new(),
            progress: BTreeMap::from([(0, 7)]),
            verified: None,
        };
        let chunked = whole.rechunk(3);
        assert_eq!(chunked.done, BTreeSet::from([0, 1]));
        assert_eq!(chunked.progress, BTreeMap::from([(2, 1)]));
        // Back again: chunks 0 and 1 (6 bytes) and 1 byte of chunk 2 are the first 7 bytes.
        assert_eq!(chunked.rechunk(10).progress, BTreeMap::from([(0, 7)]));
        let mut gaps = chunked.clone();
        gaps.done = BTreeSet::from([1, 3]);
        gaps.progress = BTreeMap::from([(2, 2)]);
        let coarse = gaps.rechunk(5);
        // Bytes 3..8 and 9..10 are written; chunk 0 (0..5) starts with none, chunk 1 (5..10)
        // with 3 (5..8).
        assert_eq!(coarse.done, BTreeSet::new());
        assert_eq!(coarse.progress, BTreeMap::from([(1, 3)]));
    }
}
