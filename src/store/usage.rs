//! Where the store's bytes go: per model and per type, shared blobs counted once, and what
//! could be reclaimed. A pure function of a scan, for `modelctl storage`.
//!
//! A model's files are hardlinks to blobs, so the bytes a model "uses" and the bytes deleting
//! it would free differ when blobs are shared: `size` is what its directory shows, `unique` is
//! what only it holds. Reclaimable bytes are what `gc` would remove now, as `gc` itself finds
//! it ([`super::gc::find_garbage`] with the default grace period, passed in, so the two never
//! disagree), and the unique bytes of models no longer declared (what `apply` then `gc`
//! frees). What the grace period keeps is reported beside them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::StoreState;
use super::gc::Collection;
use crate::digest::Sha256;
use crate::manifest::Manifest;
use crate::names::{ModelId, TypeName};

/// The report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Bytes of all intact blobs: what the store takes on disk (besides partials).
    pub blob_bytes: u64,
    pub models: Vec<ModelUsage>,
    pub types: Vec<TypeUsage>,
    /// Bytes of blobs linked by more than one model, counted once.
    pub shared_bytes: u64,
    pub reclaimable: Reclaimable,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelUsage {
    pub id: ModelId,
    #[serde(rename = "type")]
    pub kind: TypeName,
    /// Bytes of its files.
    pub size: u64,
    /// Bytes of blobs only this model links: what deleting it frees.
    pub unique: u64,
    pub declared: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeUsage {
    #[serde(rename = "type")]
    pub kind: TypeName,
    pub models: usize,
    /// Bytes of the distinct blobs its models link.
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reclaimable {
    /// Blobs `gc` would remove now: unreferenced, unlocked and older than the grace period.
    pub unlinked_blobs: u64,
    /// Stale partial downloads in `.modelctl/tmp/` `gc` would remove now.
    pub partials: u64,
    /// Unique bytes of models that models.yaml no longer declares (`apply`, then `gc`).
    pub undeclared_models: u64,
    /// What the three above add up to.
    pub total: u64,
    /// Unreferenced blobs and partials modified within the grace period: `gc` keeps them (a
    /// download may be in flight); `gc --grace 0` removes them.
    pub kept_by_grace: u64,
    /// The grace period the figures are for (`gc`'s default).
    pub grace_seconds: u64,
}

/// Computes the report from a scan and the manifest.
pub fn usage(
    state: &StoreState,
    manifest: &Manifest,
    garbage: &Collection,
    grace: std::time::Duration,
) -> Usage {
    let mut owners: BTreeMap<Sha256, BTreeSet<(TypeName, ModelId)>> = BTreeMap::new();
    for (key, model) in &state.models {
        for file in model.files.values() {
            owners.entry(file.sha256).or_default().insert(key.clone());
        }
    }
    let blob_size = |d: &Sha256| state.blobs.get(d).copied().unwrap_or(0);
    let models: Vec<ModelUsage> = state
        .models
        .iter()
        .map(|((kind, id), model)| {
            let mine: BTreeSet<Sha256> = model.files.values().map(|f| f.sha256).collect();
            ModelUsage {
                id: id.clone(),
                kind: kind.clone(),
                size: model.size(),
                unique: mine
                    .iter()
                    .filter(|d| owners.get(d).is_some_and(|o| o.len() == 1))
                    .map(blob_size)
                    .sum(),
                declared: manifest.models.get(id).is_some_and(|e| &e.kind == kind),
            }
        })
        .collect();
    let mut per_type: BTreeMap<TypeName, (usize, BTreeSet<Sha256>)> = BTreeMap::new();
    for ((kind, _), model) in &state.models {
        let entry = per_type.entry(kind.clone()).or_default();
        entry.0 += 1;
        entry.1.extend(model.files.values().map(|f| f.sha256));
    }
    let types = per_type
        .into_iter()
        .map(|(kind, (models, blobs))| TypeUsage {
            kind,
            models,
            bytes: blobs.iter().map(blob_size).sum(),
        })
        .collect();
    let unlinked_blobs = garbage.blob_bytes();
    let partials = garbage.partial_bytes();
    let undeclared_models = models
        .iter()
        .filter(|m| !m.declared)
        .map(|m| m.unique)
        .sum();
    Usage {
        blob_bytes: state.blobs.values().sum(),
        shared_bytes: owners
            .iter()
            .filter(|(_, o)| o.len() > 1)
            .map(|(d, _)| blob_size(d))
            .sum(),
        reclaimable: Reclaimable {
            unlinked_blobs,
            partials,
            undeclared_models,
            total: unlinked_blobs + partials + undeclared_models,
            kept_by_grace: garbage.kept.young_bytes,
            grace_seconds: grace.as_secs(),
        },
        models,
        types,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::RelPath;
    use crate::store::{PresentFile, PresentModel};

    fn model(files: &[(&str, &[u8])]) -> PresentModel {
        let mut m = PresentModel::default();
        for (path, bytes) in files {
            m.files.insert(
                RelPath::parse(path).expect("path"),
                PresentFile {
                    size: bytes.len() as u64,
                    sha256: Sha256::of(bytes),
                    git_oid: None,
                },
            );
        }
        m
    }

    #[test]
    fn shared_blobs_count_once_and_unique_bytes_are_what_deleting_frees() {
        let mut state = StoreState::default();
        let kind = TypeName::parse("image_gen").expect("type");
        let a = ModelId::parse("a").expect("id");
        let b = ModelId::parse("b").expect("id");
        state.models.insert(
            (kind.clone(), a.clone()),
            model(&[("w", b"shared!!"), ("x", b"only-a")]),
        );
        state
            .models
            .insert((kind.clone(), b.clone()), model(&[("w", b"shared!!")]));
        for bytes in [&b"shared!!"[..], b"only-a", b"orphan"] {
            state.blobs.insert(Sha256::of(bytes), bytes.len() as u64);
        }
        state.partials.push(("x.part".into(), 100));
        let manifest = crate::manifest::parse_str(
            "version: 1\nmodels:\n  a: { type: image_gen, source: { url: 'https://e.com/a' } }\n",
            "models.yaml",
        )
        .expect("manifest");
        // What `gc` found (its own tests cover how): one old orphan, one stale partial, and
        // something young it keeps.
        let garbage = Collection {
            kept: crate::store::gc::Kept {
                young_blobs: 1,
                young_bytes: 7,
                ..Default::default()
            },
            ..Default::default()
        };
        let u = usage(
            &state,
            &manifest,
            &garbage,
            std::time::Duration::from_secs(3600),
        );
        assert_eq!(u.blob_bytes, 8 + 6 + 6);
        assert_eq!(u.shared_bytes, 8);
        assert_eq!(
            u.types[0].bytes, 14,
            "the shared blob counts once for the type"
        );
        let of = |id: &ModelId| {
            u.models
                .iter()
                .find(|m| &m.id == id)
                .expect("model")
                .clone()
        };
        assert_eq!((of(&a).size, of(&a).unique), (14, 6));
        assert_eq!((of(&b).size, of(&b).unique), (8, 0));
        assert!(!of(&b).declared);
        assert_eq!(
            (u.reclaimable.unlinked_blobs, u.reclaimable.partials),
            (0, 0),
            "only what gc found counts"
        );
        assert_eq!(
            u.reclaimable.undeclared_models, 0,
            "b's only blob is shared with a"
        );
        assert_eq!(
            (u.reclaimable.kept_by_grace, u.reclaimable.grace_seconds),
            (7, 3600)
        );
        assert_eq!(u.reclaimable.total, 0);
    }
}
