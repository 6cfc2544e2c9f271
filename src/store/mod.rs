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
//! path it hands out is inside the root. `scan` reads what is present (trusting the stat
//! cache), `verify` re-hashes everything and compares it with the lock, `gc` removes what
//! nothing references; writing is otherwise the job of `apply`, through [`crate::durable`].

pub mod gc;
mod hash;
mod lock;
pub mod machine_cache;
mod place;
pub mod roots;
mod scan;
mod stat_cache;
pub mod usage;
pub mod verify;

use std::path::{Path, PathBuf};

pub use hash::{GIT_OID_MAX_SIZE, hash_file, hash_file_with};
pub use lock::{StoreLock, StoreLockError};
pub use machine_cache::{LinkMode, MachineCache};
pub use place::{FileOrigin, PlaceError, ensure_dir};
pub use roots::{Root, Roots};
pub use scan::{
    ActivePointer, OllamaDescriptor, PresentFile, PresentModel, ScanError, StoreState, read_active,
    scan,
};
pub use stat_cache::{Known, Stamp, StatCache};

use crate::digest::Sha256;
use crate::names::{ModelId, TypeName};

/// The file in a model directory that records which Ollama model it stands for.
pub const OLLAMA_DESCRIPTOR: &str = "ollama.json";

/// Paths of one store, and the machine cache its blobs are shared through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    root: PathBuf,
    cache: Option<PathBuf>,
}

impl Store {
    /// A store with no machine cache: it keeps its own bytes.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            cache: None,
        }
    }

    /// This store, sharing its blobs through the machine cache at `cache` (none: its own).
    pub fn sharing(self, cache: Option<PathBuf>) -> Self {
        Self { cache, ..self }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The machine cache every blob this store publishes also goes into.
    pub fn machine_cache(&self) -> Option<MachineCache> {
        self.cache.as_ref().map(MachineCache::new)
    }

    /// The projects that changed this store (`.modelctl/projects/`).
    pub fn projects(&self) -> Roots {
        Roots::new(self.state_dir().join("projects"))
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

/// The digest a `blobs/sha256/<shard>/<name>` entry stands for, when both names are in their
/// canonical form (two lowercase hex digits; the 64 lowercase hex digits starting with them).
/// Anything else under `blobs/` is not a blob, and neither `verify` nor `gc` touches it.
pub(crate) fn blob_name(shard: &str, name: &str) -> Option<Sha256> {
    let digest = Sha256::parse(name).ok()?;
    (shard.len() == 2 && digest.hex() == name && name.starts_with(shard)).then_some(digest)
}

/// What a directory entry is, as `lstat` sees it (symlinks are never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
    Other,
}

impl EntryKind {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_symlink() {
            Self::Symlink
        } else if t.is_file() {
            Self::File
        } else if t.is_dir() {
            Self::Directory
        } else if t.is_fifo() {
            Self::Fifo
        } else if t.is_socket() {
            Self::Socket
        } else if t.is_block_device() {
            Self::BlockDevice
        } else if t.is_char_device() {
            Self::CharDevice
        } else {
            Self::Other
        }
    }

    /// `a symlink`, `a directory`: for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::File => "a regular file",
            Self::Directory => "a directory",
            Self::Symlink => "a symlink",
            Self::Fifo => "a named pipe",
            Self::Socket => "a socket",
            Self::BlockDevice => "a block device",
            Self::CharDevice => "a character device",
            Self::Other => "an unknown kind of entry",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_blob_names_are_blobs() {
        let hex = Sha256::of(b"x").hex();
        assert_eq!(blob_name(&hex[..2], &hex), Sha256::parse(&hex).ok());
        let other = if hex.starts_with("ff") { "00" } else { "ff" };
        assert_eq!(blob_name(other, &hex), None, "in the wrong shard");
        assert_eq!(
            blob_name(&hex[..2].to_uppercase(), &hex.to_uppercase()),
            None
        );
        assert_eq!(blob_name(&hex[..2], &format!("sha256:{hex}")), None);
        assert_eq!(blob_name(&hex[..2], &hex[..63]), None);
        assert_eq!(blob_name(&hex[..1], &hex), None);
    }
}
