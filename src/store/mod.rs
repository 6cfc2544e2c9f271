//! The store: where model files live, laid out so consumers and tools can both rely on it.
//!
//! ```text
//! <store>/
//!   blobs/sha256/<2 hex>/<64 hex>      content-addressed files; the name is the hash
//!   models/<type>/<id>/<path>          what consumers read: hardlinks to blobs
//!   active/<type> -> ../models/<type>/<id>
//!   active.json                        type -> {id, path, source, config}
//!   .modelctl/                         lock file, stat cache, tmp/ for partial downloads
//! ```
//!
//! `Store` only computes paths, from validated names ([`crate::names`]) and digests, so every
//! path it hands out is inside the root. `scan` reads what is present; writing is the job of
//! `apply`, through [`crate::durable`].

mod hash;
mod lock;
mod scan;
mod stat_cache;

use std::path::{Path, PathBuf};

pub use hash::hash_file;
pub use lock::{StoreLock, StoreLockError};
pub use scan::{
    ActivePointer, OllamaDescriptor, PresentFile, PresentModel, ScanError, StoreState, scan,
};
pub use stat_cache::StatCache;

use crate::digest::Sha256;
use crate::names::{ModelId, TypeName};

/// The file in a model directory that records which Ollama model it stands for.
pub const OLLAMA_DESCRIPTOR: &str = "ollama.json";

/// Paths of one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// `blobs/sha256/ab/ab…`: the hex comes from a validated digest, so it is a safe name.
    pub fn blob_path(&self, digest: &Sha256) -> PathBuf {
        let hex = digest.hex();
        self.blobs_dir().join(&hex[..2]).join(hex)
    }

    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    pub fn model_dir(&self, kind: &TypeName, id: &ModelId) -> PathBuf {
        self.models_dir().join(kind.as_str()).join(id.as_str())
    }

    pub fn active_dir(&self) -> PathBuf {
        self.root.join("active")
    }

    pub fn active_link(&self, kind: &TypeName) -> PathBuf {
        self.active_dir().join(kind.as_str())
    }

    pub fn active_json(&self) -> PathBuf {
        self.root.join("active.json")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".modelctl")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.state_dir().join("tmp")
    }

    pub fn stat_cache_path(&self) -> PathBuf {
        self.state_dir().join("stat-cache.json")
    }

    pub fn lock_file_path(&self) -> PathBuf {
        self.state_dir().join("lock")
    }
}
