//! The executor's step between files and pointers: every model whose files changed gets its
//! new directory, built aside from verified blobs and the files that stay, and exchanged with
//! the live one in one step ([`Store::replace_model`]). A model with a failed file keeps its
//! old directory whole. Only once the exchange succeeded are its files reported as linked and
//! recorded in the stat cache (with their git blob id where one is known), so an error never
//! follows a "linked" line of the same model.
//!
//! [`Store::replace_model`]: crate::store::Store::replace_model

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use super::{Executor, Outcome};
use crate::digest::{GitOid, Sha256};
use crate::lock::LockedModel;
use crate::names::{ModelId, RelPath, TypeName};
use crate::plan::{Action, Plan};
use crate::store::FileOrigin;

impl Executor<'_> {
    /// Replaces the directory of every model whose files changed with its new version, built
    /// from the blobs just verified and the files that stay; a model with a failed file keeps
    /// its old directory whole.
    pub(super) fn rebuild(
        &self,
        plan: &Plan,
        kinds: &BTreeMap<ModelId, TypeName>,
        changed: &BTreeMap<ModelId, BTreeSet<RelPath>>,
        outcome: &Mutex<Outcome>,
    ) {
        let (failed, learned) = match outcome.lock() {
            Ok(o) => (o.failed.clone(), o.learned.clone()),
            Err(_) => return,
        };
        let learned = learned_by_file(&learned);
        for (model, taken) in changed {
            let (Some(kind), Some(locked)) = (kinds.get(model), self.lock.model(model)) else {
                continue;
            };
            if failed.contains(model) {
                continue;
            }
            let sha_of = |path: &RelPath, locked: Option<Sha256>| {
                locked.or_else(|| learned.get(&(model, path)).copied())
            };
            let Some(files) = self.new_version(outcome, model, locked, taken, &sha_of) else {
                continue;
            };
            if let Err(e) = self.store.replace_model(kind, model, &files) {
                self.fail(
                    outcome,
                    model,
                    &format!("cannot update the directory of `{model}`: {e}"),
                );
                continue;
            }
            self.report_linked(outcome, model);
            for f in &locked.files {
                if let Some(digest) = sha_of(&f.path, f.sha256) {
                    self.remember(outcome, kind, model, &f.path, &digest);
                }
            }
            for action in plan.model_actions(model) {
                if let Action::DeleteFile { path, .. } = action {
                    self.reporter
                        .step(&format!("removed stray file {model}/{path}"));
                }
            }
        }
    }

    /// Where each file of the model's new version comes from: the present file, or a verified
    /// blob for the files taken. `None` (the model failed) when a taken file has no blob.
    fn new_version(
        &self,
        outcome: &Mutex<Outcome>,
        model: &ModelId,
        locked: &LockedModel,
        taken: &BTreeSet<RelPath>,
        sha_of: &dyn Fn(&RelPath, Option<Sha256>) -> Option<Sha256>,
    ) -> Option<Vec<(RelPath, FileOrigin)>> {
        let mut files = Vec::with_capacity(locked.files.len());
        for f in &locked.files {
            let origin = match (taken.contains(&f.path), sha_of(&f.path, f.sha256)) {
                (false, _) => FileOrigin::Present,
                (true, Some(digest)) => FileOrigin::Blob(digest),
                (true, None) => {
                    self.fail(
                        outcome,
                        model,
                        &format!("`{model}/{}` has no verified blob to link", f.path),
                    );
                    return None;
                }
            };
            files.push((f.path.clone(), origin));
        }
        Some(files)
    }

    /// Prints and counts the files of `model` held back as linked, now that its directory is
    /// in place.
    fn report_linked(&self, outcome: &Mutex<Outcome>, model: &ModelId) {
        let Some((lines, count)) = outcome
            .lock()
            .ok()
            .and_then(|mut o| o.pending.links.remove(model))
        else {
            return;
        };
        for line in &lines {
            self.reporter.step(line);
        }
        if let Ok(mut o) = outcome.lock() {
            o.linked += count;
        }
    }

    /// Files this apply just verified go into the stat cache, so the next plan need not hash
    /// them: with the git blob id this run computed from their bytes, or else the one the
    /// cache already holds for the same bytes (a git blob id is a function of the bytes, which
    /// the sha256 names), so a small file is not hashed again only for it.
    fn remember(
        &self,
        outcome: &Mutex<Outcome>,
        kind: &TypeName,
        model: &ModelId,
        path: &RelPath,
        digest: &Sha256,
    ) {
        let hashed: Option<GitOid> = outcome.lock().ok().and_then(|o| {
            o.pending
                .git_oids
                .get(&(model.clone(), path.clone()))
                .copied()
        });
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let hex = digest.hex();
        let blob_key = format!("blobs/sha256/{}/{hex}", &hex[..2]);
        let file_key = format!("models/{kind}/{model}/{path}");
        let git_oid = hashed
            .or_else(|| cache.git_oid_for(&blob_key, digest))
            .or_else(|| cache.git_oid_for(&file_key, digest));
        let known = crate::store::Known {
            sha256: *digest,
            git_oid,
        };
        for (key, full) in [
            (blob_key, self.store.blob_path(digest)),
            (file_key, path.under(&self.store.model_dir(kind, model))),
        ] {
            if let Ok(meta) = std::fs::symlink_metadata(&full) {
                cache.insert_verified(key, crate::store::Stamp::of(&meta), known);
            }
        }
    }
}

/// The sha256s learned this run, by (model, path), looked up once per locked file.
fn learned_by_file(
    learned: &[(ModelId, RelPath, Sha256)],
) -> HashMap<(&ModelId, &RelPath), Sha256> {
    learned
        .iter()
        .map(|(model, path, digest)| ((model, path), *digest))
        .collect()
}
