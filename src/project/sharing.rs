//! What this project shares its bytes with, gathered for the planner: the other live projects
//! recorded in its store, read from their own models.yaml and models.lock
//! ([`crate::plan::Neighbours`]), and the blobs the machine cache has
//! ([`crate::plan::MachineCacheView`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Project;
use crate::digest::Sha256;
use crate::lock::{LockedSource, Lockfile, fingerprint};
use crate::manifest::Manifest;
use crate::plan::{Claim, MachineCacheView, Neighbours, content_id};
use crate::sources::Resolution;
use crate::sources::ollama::layout::OllamaDir;
use crate::store::Root;

/// Another live project of the same store, as it is on disk now.
pub struct Neighbour {
    pub root: Root,
    pub manifest: Manifest,
    pub lock: Lockfile,
}

impl Project {
    /// The other live projects recorded in this store, read; those that cannot be read are
    /// returned apart, with why.
    pub fn neighbours(&self) -> (Vec<Neighbour>, Vec<(Root, String)>) {
        let mut read = Vec::new();
        let mut unreadable = Vec::new();
        for root in self.store.projects().list() {
            if root.manifest == self.settings.manifest_path || !root.is_live() {
                continue;
            }
            let loaded = crate::manifest::load(&root.manifest)
                .map_err(|e| e.to_string())
                .and_then(|manifest| {
                    let lock = crate::lock::load(&root.lock).map_err(|e| e.to_string())?;
                    Ok((manifest, lock))
                });
            match loaded {
                Ok((manifest, lock)) => read.push(Neighbour {
                    root,
                    manifest,
                    lock,
                }),
                Err(why) => unreadable.push((root, why)),
            }
        }
        (read, unreadable)
    }

    /// The planner's view of the other projects: what each declares in this store, unless
    /// it uses another store now (its `store:` changed).
    pub(super) fn neighbours_view(&self) -> Neighbours {
        let (read, unreadable) = self.neighbours();
        let mut view = Neighbours {
            unreadable: unreadable
                .into_iter()
                .map(|(root, why)| (root.manifest.display().to_string(), why))
                .collect(),
            ..Neighbours::default()
        };
        for n in read {
            let their_store = n.root.store.clone();
            if their_store != self.store.root() {
                continue;
            }
            let manifest = n.root.manifest.display().to_string();
            for (id, entry) in &n.manifest.models {
                let content = n
                    .lock
                    .models
                    .get(id)
                    .filter(|l| l.fingerprint == fingerprint(entry))
                    .and_then(|l| content_id(id, entry, l));
                view.models
                    .entry((entry.kind.clone(), id.clone()))
                    .or_default()
                    .push(Claim {
                        manifest: manifest.clone(),
                        content,
                    });
            }
            for (kind, id) in &n.manifest.active {
                view.active
                    .entry(kind.clone())
                    .or_default()
                    .push((id.clone(), manifest.clone()));
            }
        }
        view
    }

    /// The blobs the machine cache has (one directory listing per shard, no hashing), and
    /// how it would link them into this store.
    pub(super) fn machine_cache_view(&self) -> MachineCacheView {
        let Some(cache) = self.store.machine_cache() else {
            return MachineCacheView::default();
        };
        let mode = cache.mode_for(self.store.root());
        if !mode.shares_bytes() {
            tracing::info!(
                "the machine cache `{}` is on another filesystem than the store: the store keeps its own bytes",
                cache.root().display()
            );
            return MachineCacheView::default();
        }
        MachineCacheView {
            mode,
            blobs: cache
                .blobs()
                .into_iter()
                .map(|(d, size, _)| (d, size))
                .collect(),
        }
    }

    /// The files of declared models (not Ollama's own) whose blob a local Ollama store holds
    /// with the right size: a GGUF pulled with `ollama pull` is linked, not downloaded again.
    pub(super) fn ollama_blobs_view(
        &self,
        resolutions: &BTreeMap<crate::names::ModelId, Resolution>,
    ) -> BTreeMap<Sha256, PathBuf> {
        let stores: Vec<OllamaDir> = self
            .settings
            .ollama_stores
            .iter()
            .map(OllamaDir::new)
            .filter(|d| d.root().join("blobs").is_dir())
            .collect();
        let mut found = BTreeMap::new();
        if stores.is_empty() {
            return found;
        }
        for (id, entry) in &self.manifest.models {
            let pinned = self
                .lock
                .models
                .get(id)
                .filter(|l| l.fingerprint == fingerprint(entry))
                .or(match resolutions.get(id) {
                    Some(Resolution::Resolved { model, .. }) => Some(model),
                    _ => None,
                });
            let Some(locked) = pinned.filter(|l| !matches!(l.source, LockedSource::Ollama { .. }))
            else {
                continue;
            };
            for file in &locked.files {
                let known = file
                    .sha256
                    .or_else(|| entry.expected_for(id.as_str(), &file.path).0.sha256);
                let Some(digest) = known else { continue };
                if let Some(dir) = stores.iter().find(|d| d.has_blob(&digest, file.size)) {
                    found.insert(digest, dir.blob_path(&digest));
                }
            }
        }
        found
    }

    /// Puts into the machine cache every intact blob of `state` that the cache lacks: blobs
    /// of a store older than its cache, or published by an apply killed before the cache
    /// took them. The scan just found their bytes intact. Call it holding the store lock.
    /// A blob the cache cannot take costs only sharing.
    pub fn share_with_machine_cache(&self, state: &crate::store::StoreState) {
        let Some(cache) = self.store.machine_cache() else {
            return;
        };
        for digest in state.blobs.keys() {
            if cache.holds(digest).is_none()
                && let Err(e) = cache.adopt(&self.store.blob_path(digest), digest)
            {
                tracing::info!(
                    "the machine cache did not take sha256:{}: {e}",
                    digest.short()
                );
            }
        }
    }
}
