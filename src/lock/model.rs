//! The lock's data: per model, where it was resolved from and the exact files it consists of.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{GitOid, Md5, Sha256};
use crate::manifest::{ModelEntry, RepoType, Source};
use crate::names::{ModelId, RelPath};

/// The lock format this build reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// All locked models, by id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lockfile {
    pub models: BTreeMap<ModelId, LockedModel>,
}

/// One model pinned to exact content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedModel {
    /// Fingerprint of the manifest entry this was resolved from (see [`fingerprint`]).
    pub fingerprint: Sha256,
    pub source: LockedSource,
    /// Every file of the model, sorted by path. Empty for Ollama models (see their layers).
    #[serde(default)]
    pub files: Vec<LockedFile>,
}

/// What a source resolved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum LockedSource {
    Hf {
        hf: String,
        #[serde(default)]
        repo_type: RepoType,
        revision: String,
        /// The 40-hex commit the revision pointed at.
        commit: String,
    },
    Url {
        url: String,
        /// Where the URL led after redirects, when that differs.
        #[serde(default)]
        final_url: Option<String>,
        #[serde(default)]
        etag: Option<String>,
        #[serde(default)]
        last_modified: Option<String>,
    },
    Ollama {
        ollama: String,
        /// The sha256 of the manifest bytes (what `ollama list` shows as the id).
        digest: Sha256,
        /// The layers and the config blob; empty when the pin came from a daemon whose
        /// store could not be read.
        layers: Vec<LockedLayer>,
        /// Who said what the name is: the registry (reproducible anywhere it answers) or the
        /// daemon (reproducible where the daemon has the same model).
        #[serde(default, skip_serializing_if = "PinnedFrom::is_registry")]
        pinned_from: PinnedFrom,
    },
    Oci {
        /// The reference as models.yaml gives it (`registry/ns/name:tag` or `…@sha256:…`).
        oci: String,
        /// The sha256 of the manifest bytes the reference named. A file from a raw layer
        /// has that layer's digest as its sha256, so it needs nothing more.
        digest: Sha256,
        /// The tar layers, with the files each holds: their files' sha256s are of their own
        /// bytes, and `apply` fetches the layer to extract them. Empty for raw layers only.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        archives: Vec<LockedArchive>,
    },
}

/// A tar layer of an `oci:` model and the model files it holds (each also in the model's
/// `files`, with its size and sha256).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedArchive {
    pub media_type: String,
    pub digest: Sha256,
    pub size: u64,
    pub files: Vec<RelPath>,
}

/// Where an Ollama pin came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinnedFrom {
    /// The registry's manifest for the tag: any machine that reaches the registry (or a daemon
    /// that does) gets the same bytes.
    #[default]
    Registry,
    /// The digest a daemon reported (`ollama list`): a model made with `ollama create`, or
    /// pulled from a registry modelctl could not reach. Another machine gets it only from a
    /// daemon that has it, and the pin makes any change under the same name visible.
    Daemon,
}

impl PinnedFrom {
    pub fn is_registry(&self) -> bool {
        *self == PinnedFrom::Registry
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            PinnedFrom::Registry => "registry",
            PinnedFrom::Daemon => "daemon",
        }
    }
}

impl LockedSource {
    pub fn kind(&self) -> &'static str {
        match self {
            LockedSource::Hf { .. } => "hf",
            LockedSource::Url { .. } => "url",
            LockedSource::Ollama { .. } => "ollama",
            LockedSource::Oci { .. } => "oci",
        }
    }

    /// The tar layer of an `oci:` entry that holds the file `path`, if one does.
    pub fn archive_of(&self, path: &RelPath) -> Option<&LockedArchive> {
        match self {
            LockedSource::Oci { archives, .. } => archives.iter().find(|a| a.files.contains(path)),
            _ => None,
        }
    }
}

/// One layer of an Ollama model (or its config blob).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedLayer {
    pub media_type: String,
    pub digest: Sha256,
    pub size: u64,
}

/// One file of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedFile {
    pub path: RelPath,
    pub size: u64,
    /// Known once the file was hashed (always, for Hub LFS files and pinned URLs).
    #[serde(default)]
    pub sha256: Option<Sha256>,
    /// Only when the source gave nothing better.
    #[serde(default)]
    pub md5: Option<Md5>,
    /// For regular (non-LFS) files of a Hub repository: their git blob id, which names them in
    /// the HF cache. Content is still checked by sha256.
    #[serde(default)]
    pub git_oid: Option<GitOid>,
}

impl LockedModel {
    /// Total bytes of the model's files (or layers, for Ollama).
    pub fn total_size(&self) -> u64 {
        match &self.source {
            LockedSource::Ollama { layers, .. } => layers.iter().map(|l| l.size).sum(),
            _ => self.files.iter().map(|f| f.size).sum(),
        }
    }
}

impl LockedModel {
    /// Keeps sha256s learned by downloading (for files the source publishes no sha256 for)
    /// across a re-resolution, where the new entry proves the file is the same content: the
    /// same git blob id (Hub regular files), or the same URL, size and strong `ETag`. A sha256
    /// paired with a git blob id is kept only where `proven(sha256, git_oid)` holds, so a
    /// caller that can check the pairing against bytes (`update`, with the store) does.
    pub fn carry_learned(&mut self, old: &LockedModel, proven: &dyn Fn(Sha256, GitOid) -> bool) {
        let same_url = match (&self.source, &old.source) {
            (
                LockedSource::Url { url, etag, .. },
                LockedSource::Url {
                    url: old_url,
                    etag: old_etag,
                    ..
                },
            ) => {
                url == old_url
                    && etag.is_some()
                    && etag == old_etag
                    && !etag.as_deref().unwrap_or("").starts_with("W/")
            }
            _ => false,
        };
        for file in self.files.iter_mut().filter(|f| f.sha256.is_none()) {
            let Some(before) = old.files.iter().find(|f| f.path == file.path) else {
                continue;
            };
            let same_blob = match (file.git_oid, before.sha256) {
                (Some(oid), Some(sha)) => file.git_oid == before.git_oid && proven(sha, oid),
                _ => false,
            };
            if before.size == file.size && (same_blob || same_url) {
                file.sha256 = before.sha256;
            }
        }
    }
}

/// The fingerprint of the parts of a manifest entry that decide what gets resolved: the
/// source and the expected checksums. Renaming the description or changing `config` does not
/// invalidate the lock; changing the revision, URL, globs or a checksum does.
pub fn fingerprint(entry: &ModelEntry) -> Sha256 {
    #[derive(Serialize)]
    struct Resolved<'a> {
        source: &'a Source,
        files: &'a BTreeMap<RelPath, crate::manifest::FileExpect>,
    }
    let canonical = serde_json::to_vec(&Resolved {
        source: &entry.source,
        files: &entry.files,
    })
    .unwrap_or_default();
    let mut input = b"modelctl-fingerprint-v1\n".to_vec();
    input.extend_from_slice(&canonical);
    Sha256::of(&input)
}
