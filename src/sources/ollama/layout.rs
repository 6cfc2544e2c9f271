//! Ollama's on-disk layout (`$OLLAMA_MODELS`, docs/protocols.md §3.3), for pulling without a
//! daemon, as CI and image builds need:
//!
//! ```text
//! manifests/<host>/<namespace>/<model>/<tag>    the manifest bytes, verbatim
//! blobs/sha256-<64 hex>                         every layer and the config, named by sha256
//! ```
//!
//! This file knows the paths and reads; writing them is `apply`'s (`apply/ollama.rs`): a later
//! `ollama serve` sees the model exactly as if it had pulled it, the manifest file's sha256 is
//! the digest models.lock pins, and every blob is verified before it gets its name.

use std::fs;
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

    /// Whether the blob is there with the expected size (its bytes are not checked here).
    pub fn has_blob(&self, digest: &Sha256, size: u64) -> bool {
        fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// The digest of the manifest `name` has here, if any.
    pub fn manifest_digest(&self, name: &OllamaRef) -> Option<Sha256> {
        self.manifest_bytes(name).map(|b| Sha256::of(&b))
    }

    /// The bytes of the manifest `name` has here: a regular file of at most 4 MiB, or `None`.
    pub fn manifest_bytes(&self, name: &OllamaRef) -> Option<Vec<u8>> {
        let path = self.manifest_path(name);
        let meta = fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.len() > 4 << 20 {
            return None;
        }
        fs::read(path).ok()
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
        let digest = Sha256::of(b"layer");
        assert_eq!(
            layout.blob_path(&digest),
            dir.path().join(format!("blobs/sha256-{}", digest.hex()))
        );
        assert!(!layout.has_blob(&digest, 5));
        let manifest = layout.manifest_path(&name);
        fs::create_dir_all(manifest.parent().expect("dir")).expect("mkdir");
        fs::write(&manifest, b"{}").expect("manifest");
        assert_eq!(layout.manifest_digest(&name), Some(Sha256::of(b"{}")));
    }
}
