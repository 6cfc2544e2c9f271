//! What the planner knows of everything beyond this project that shares its bytes: the other
//! projects whose roots are in the same store ([`Neighbours`]), and the machine cache
//! ([`MachineCacheView`]). Both are plain data, gathered by the project before planning.
//!
//! The rules they feed (docs/store.md, "Many projects"): a project deletes or deactivates
//! only what no other live project sharing its store declares; two projects that declare
//! the same model directory with different content, or different active models of one type,
//! are refused before anything changes; a project none of whose neighbours can be read
//! deletes nothing it does not declare itself (never delete from uncertainty).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::Sha256;
use crate::lock::{LockedModel, LockedSource};
use crate::manifest::ModelEntry;
use crate::names::{ModelId, TypeName};
use crate::store::LinkMode;

/// Another project's hold on one model directory of the shared store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    /// Its models.yaml.
    pub manifest: String,
    /// What it pins there ([`content_id`]); `None` while its lock has no complete pin.
    pub content: Option<Sha256>,
}

/// What the other live projects sharing this store declare.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Neighbours {
    /// Model directories, by type and id, and who declares each.
    pub models: BTreeMap<(TypeName, ModelId), Vec<Claim>>,
    /// Active models, by type: the id and the models.yaml that declares it active.
    pub active: BTreeMap<TypeName, Vec<(ModelId, String)>>,
    /// Projects recorded in the store whose models.yaml or models.lock cannot be read, with
    /// why: nothing they might declare can be told apart.
    pub unreadable: Vec<(String, String)>,
}

impl Neighbours {
    /// The other projects' manifests that declare `models/<kind>/<id>/`.
    pub fn claimants(&self, kind: &TypeName, id: &ModelId) -> &[Claim] {
        self.models
            .get(&(kind.clone(), id.clone()))
            .map_or(&[], Vec::as_slice)
    }
}

/// What the machine cache holds of the blobs this plan wants, and how it would link them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineCacheView {
    pub mode: LinkMode,
    /// Blobs the cache has, by digest, with their size.
    pub blobs: BTreeMap<Sha256, u64>,
}

impl Default for MachineCacheView {
    fn default() -> Self {
        Self {
            mode: LinkMode::Hardlink,
            blobs: BTreeMap::new(),
        }
    }
}

/// One digest for a locked model's content: its files' paths, sizes and sha256s (the lock's,
/// else the one models.yaml expects), and an Ollama model's manifest digest, so two projects
/// that would fill one model directory with the same bytes agree, whatever revision or URL
/// they reached them by. `None` when a file has no sha256 known yet.
pub fn content_id(id: &ModelId, entry: &ModelEntry, model: &LockedModel) -> Option<Sha256> {
    let mut text = String::new();
    if let LockedSource::Ollama { digest, .. } = &model.source {
        text.push_str(&format!("ollama {}\n", digest.hex()));
    }
    let mut files: Vec<_> = model.files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for file in files {
        let sha256 = file
            .sha256
            .or_else(|| entry.expected_for(id.as_str(), &file.path).0.sha256)?;
        text.push_str(&format!("{}\0{}\0{}\n", file.path, file.size, sha256.hex()));
    }
    Some(Sha256::of(text.as_bytes()))
}
