//! The executor's side of the Hugging Face cache: taking a verified blob from it instead of
//! downloading, and laying models out in it (`hf_cache: true`), once their files are in.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Executor, Outcome};
use crate::digest::Sha256;
use crate::names::{ModelId, TypeName};
use crate::plan::{Action, Plan};

impl Executor<'_> {
    /// Takes a blob from the Hugging Face cache into the store, after checking its sha256
    /// (the cache's writers never verify). With `hf_cache: true` the store shares the cache's
    /// inode (one copy); otherwise it gets its own copy and the cache's file is left alone.
    pub(super) async fn import_cached(
        &self,
        cached: &std::path::Path,
        sha256: &Sha256,
    ) -> Result<(), String> {
        let temp =
            self.store
                .tmp_dir()
                .join(format!("{}.hf-cache-{}", sha256.hex(), std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let share = self.manifest.hf_cache;
        let (from, to, want) = (cached.to_owned(), temp.clone(), *sha256);
        let checked = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let linked = share && std::fs::hard_link(&from, &to).is_ok();
            if !linked {
                std::fs::copy(&from, &to).map_err(|e| format!("cannot copy it: {e}"))?;
                std::fs::File::open(&to)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| format!("cannot sync the copy: {e}"))?;
            }
            let got = crate::store::hash_file(&to).map_err(|e| e.to_string())?;
            if got != want {
                return Err(format!("its sha256 is {got}, not the locked {want}"));
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("the import task failed: {e}"))
        .and_then(|r| r);
        if let Err(why) = checked {
            let _ = std::fs::remove_file(&temp);
            return Err(why);
        }
        self.store
            .publish_blob(&temp, sha256)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Lays the models the plan shares out in the Hugging Face cache, once their files are in.
    pub(super) fn share_hf_cache(
        &self,
        plan: &Plan,
        kinds: &BTreeMap<ModelId, TypeName>,
        outcome: &Mutex<Outcome>,
    ) {
        let cache = crate::sources::hf::cache::HfCache::new(&self.hf.cache_dir);
        for action in &plan.actions {
            let Action::ShareHfCache { model, repo, .. } = action else {
                continue;
            };
            if outcome.lock().is_ok_and(|o| o.failed.contains(model)) {
                continue;
            }
            let (Some(kind), Some(entry), Some(locked)) = (
                kinds.get(model),
                self.manifest.models.get(model),
                self.lock.models.get(model),
            ) else {
                continue;
            };
            let (
                crate::manifest::Source::Hf(source),
                crate::lock::LockedSource::Hf {
                    revision, commit, ..
                },
            ) = (&entry.source, &locked.source)
            else {
                continue;
            };
            // The model's files are hardlinks of the blobs: the same inodes.
            let dir = self.store.model_dir(kind, model);
            let blob_of = |f: &crate::lock::LockedFile| Some(f.path.under(&dir));
            let hf_repo = crate::sources::hf::Repo::of(source);
            match super::hf_layout::share(&cache, &hf_repo, revision, commit, &locked.files, &blob_of) {
                Ok(done) if done.copied > 0 => self.reporter.step(&format!(
                    "shared {model} with the HF cache as {repo} ({} copied: the cache is on another filesystem)",
                    done.copied
                )),
                Ok(_) => self
                    .reporter
                    .step(&format!("shared {model} with the HF cache as {repo}")),
                Err(e) => self.fail(
                    outcome,
                    model,
                    &format!(
                        "cannot share `{model}` with the HF cache at `{}`: {e}",
                        self.hf.cache_dir.display()
                    ),
                ),
            }
        }
    }
}
