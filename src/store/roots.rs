//! Roots: which projects use a store, and which use the machine cache.
//!
//! As Nix records gc roots, every project that changes a store records itself twice: in the
//! store (`.modelctl/projects/<key>.json`), so that another project sharing the store leaves
//! its models alone, and in the machine cache (`roots/<key>.json`), so that `cache prune`
//! keeps what its lock pins. A record holds paths only; what the project needs is read from
//! its models.yaml and models.lock when it matters, so a record is never stale about content.
//! A root whose models.yaml is gone is dead: its project directory was deleted or moved.
//!
//! The key is the first 16 hex digits of the sha256 of the manifest's path, so one project
//! has one record however often it applies, and writing it is idempotent.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Sha256;

/// One project that uses a store or the cache.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Root {
    pub manifest: PathBuf,
    pub lock: PathBuf,
    pub store: PathBuf,
}

impl Root {
    /// Whether the project is still there (its models.yaml exists).
    pub fn is_live(&self) -> bool {
        fs::symlink_metadata(&self.manifest).is_ok()
    }

    fn key(&self) -> String {
        let digest = Sha256::of(self.manifest.as_os_str().as_encoded_bytes());
        digest.hex()[..16].to_owned()
    }
}

/// A directory of root records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    dir: PathBuf,
}

impl Roots {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records `root` (replacing its earlier record atomically).
    pub fn record(&self, root: &Root) -> std::io::Result<()> {
        let path = self.path_of(root);
        if fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Root>(&b).ok())
            .is_some_and(|r| &r == root)
        {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        let mut bytes = serde_json::to_vec_pretty(root).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        crate::durable::write_atomic(&path, &bytes)
    }

    /// Every readable record, sorted by manifest path; unreadable files are skipped.
    pub fn list(&self) -> Vec<Root> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut roots: Vec<Root> = entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json")))
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        roots.sort();
        roots.dedup();
        roots
    }

    /// Removes the record of a dead root.
    pub fn forget(&self, root: &Root) -> std::io::Result<()> {
        match fs::remove_file(self.path_of(root)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn path_of(&self, root: &Root) -> PathBuf {
        self.dir.join(format!("{}.json", root.key()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_is_recorded_once_and_dies_with_its_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roots = Roots::new(dir.path().join("roots"));
        let manifest = dir.path().join("p/models.yaml");
        fs::create_dir_all(manifest.parent().expect("parent")).expect("mkdir");
        fs::write(&manifest, "version: 1\n").expect("write");
        let root = Root {
            manifest: manifest.clone(),
            lock: manifest.with_file_name("models.lock"),
            store: dir.path().join("p/models"),
        };
        roots.record(&root).expect("record");
        roots.record(&root).expect("again");
        assert_eq!(roots.list(), vec![root.clone()]);
        assert!(root.is_live());
        fs::remove_file(&manifest).expect("rm");
        assert!(!root.is_live());
        roots.forget(&root).expect("forget");
        assert!(roots.list().is_empty());
    }
}
