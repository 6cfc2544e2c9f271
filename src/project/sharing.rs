//! What this project shares its bytes with, gathered for the planner: the other live projects
//! recorded in its store, read from their own models.yaml and models.lock
//! ([`crate::plan::Neighbours`]), and the blobs the machine cache has of those this plan
//! wants ([`crate::plan::MachineCacheView`]).

use std::collections::{BTreeMap, BTreeSet};

use super::Project;
use crate::digest::Sha256;
use crate::lock::{Lockfile, fingerprint};
use crate::manifest::Manifest;
use crate::plan::{Claim, MachineCacheView, Neighbours, content_id};
use crate::sources::Resolution;
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
                    .and_then(content_id);
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

    /// Which of the blobs this plan may want (the pinned files of the lock and of this run's
    /// resolutions) the machine cache has, and how it would link them into this store.
    pub(super) fn machine_cache_view(
        &self,
        resolutions: &BTreeMap<crate::names::ModelId, Resolution>,
    ) -> MachineCacheView {
        let Some(cache) = self.store.machine_cache() else {
            return MachineCacheView::default();
        };
        let resolved = resolutions.values().filter_map(|r| match r {
            Resolution::Resolved { model, .. } => Some(model),
            _ => None,
        });
        let wanted: BTreeSet<Sha256> = self
            .lock
            .models
            .values()
            .chain(resolved)
            .flat_map(|m| m.files.iter().filter_map(|f| f.sha256))
            .collect();
        MachineCacheView {
            mode: cache.mode_for(self.store.root()),
            blobs: wanted
                .into_iter()
                .filter_map(|d| Some((d, cache.holds(&d)?)))
                .collect(),
        }
    }
}
