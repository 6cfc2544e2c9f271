//! Ollama's on-disk layout (`$OLLAMA_MODELS`, docs/protocols.md §3.3), for pulling without a
//! daemon, as CI and image builds need:
//!
//! ```text
//! manifests/<host>/<namespace>/<model>/<tag>    the manifest bytes, verbatim
//! blobs/sha256-<64 hex>                         every layer and the config, named by sha256
//! ```
//!
//! A later `ollama serve` sees the model exactly as if it had pulled it: the manifest file's
//! sha256 is the digest models.lock pins, and every blob was verified before it got its name.
//! Blobs arrive complete (rename of a verified file, or copy + fsync + rename across
//! filesystems); the manifest is written last, atomically, so a crash never leaves a manifest
//! naming a missing blob.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::OllamaRef;
use crate::digest::Sha256;

/// One `OLLAMA_MODELS` directory.
#[derive(Debug, Clone)]
pub struct OllamaDir {
    root: PathBuf,
}

impl OllamaDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/sha256-<hex>`.
    pub fn blob_path(&self, digest: &Sha256) -> PathBuf {
        self.root
            .join("blobs")
            .join(format!("sha256-{}", digest.hex()))
    }

    /// `manifests/<host>/<ns>/<model>/<tag>`; every part passed Ollama's name rules.
    pub fn manifest_path(&self, name: &OllamaRef) -> PathBuf {
        self.root
            .join("manifests")
            .join(&name.host)
            .join(&name.namespace)
            .join(&name.model)
            .join(&name.tag)
    }

    /// Whether the blob is there with the expected size.
    pub fn has_blob(&self, digest: &Sha256, size: u64) -> bool {
        fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Moves a verified file in as the blob `digest` (a copy when it is on another filesystem).
    pub fn place_blob(&self, verified: &Path, digest: &Sha256) -> io::Result<()> {
        let target = self.blob_path(digest);
        let dir = self.root.join("blobs");
        fs::create_dir_all(&dir)?;
        if fs::rename(verified, &target).is_ok() {
            return crate::durable::sync_dir(&dir);
        }
        let temp = dir.join(format!(
            "sha256-{}-modelctl-{}",
            digest.hex(),
            std::process::id()
        ));
        fs::copy(verified, &temp)?;
        fs::File::open(&temp)?.sync_all()?;
        fs::rename(&temp, &target)?;
        let _ = fs::remove_file(verified);
        crate::durable::sync_dir(&dir)
    }

    /// Writes the manifest, last and atomically.
    pub fn write_manifest(&self, name: &OllamaRef, bytes: &[u8]) -> io::Result<()> {
        let path = self.manifest_path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        crate::durable::write_atomic(&path, bytes)
    }

    /// The digest of the manifest `name` has here, if any.
    pub fn manifest_digest(&self, name: &OllamaRef) -> Option<Sha256> {
        let path = self.manifest_path(name);
        let meta = fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.len() > 4 << 20 {
            return None;
        }
        fs::read(path).ok().map(|b| Sha256::of(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_ollamas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = OllamaDir::new(dir.path());
        let name = OllamaRef::parse("llama3:8b").expect("name");
        assert_eq!(
            layout.manifest_path(&name),
            dir.path()
                .join("manifests/registry.ollama.ai/library/llama3/8b")
        );
        let blob = dir.path().join("verified");
        fs::write(&blob, b"layer").expect("write");
        let digest = Sha256::of(b"layer");
        layout.place_blob(&blob, &digest).expect("placed");
        assert!(layout.has_blob(&digest, 5));
        assert_eq!(
            fs::read(dir.path().join(format!("blobs/sha256-{}", digest.hex()))).expect("read"),
            b"layer"
        );
        layout.write_manifest(&name, b"{}").expect("manifest");
        assert_eq!(layout.manifest_digest(&name), Some(Sha256::of(b"{}")));
    }
}
