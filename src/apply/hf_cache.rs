//! The executor's side of the Hugging Face cache: taking a verified blob from it instead of
//! downloading, and laying models out in it (`hf_cache: true`), once their files are in.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Executor, Outcome};
use crate::digest::Sha256;
use crate::names::{ModelId, TypeName};
use crate::plan::{Action, Plan};

/// Why a blob of the Hugging Face cache was not taken into the store (it is downloaded
/// instead). The caller names the model and file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImportError {
    #[error("cannot copy it: {0}")]
    #[diagnostic(code(modelctl::apply::hf_cache_copy))]
    Copy(#[source] std::io::Error),
    #[error("cannot sync the copy: {0}")]
    #[diagnostic(code(modelctl::apply::hf_cache_sync))]
    Sync(#[source] std::io::Error),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Hash(#[from] crate::store::ScanError),
    #[error("its sha256 is {got}, not the locked {want}")]
    #[diagnostic(
        code(modelctl::apply::hf_cache_damaged),
        help(
            "the cache's copy is damaged; `hf cache delete` removes it, or leave it: modelctl downloads its own"
        )
    )]
    Mismatch { got: Sha256, want: Sha256 },
    #[error("the import task failed: {0}")]
    #[diagnostic(code(modelctl::apply::task))]
    Task(#[source] tokio::task::JoinError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Publish(#[from] crate::store::PlaceError),
}

impl Executor<'_> {
    /// Takes a blob from the Hugging Face cache into the store, after checking its sha256
    /// (the cache's writers never verify). With `hf_cache: true` the store shares the cache's
    /// inode (one copy); otherwise it gets its own copy and the cache's file is left alone.
    pub(super) async fn import_cached(
        &self,
        cached: &std::path::Path,
        sha256: &Sha256,
    ) -> Result<(), ImportError> {
        let temp =
            self.store
                .tmp_dir()
                .join(format!("{}.hf-cache-{}", sha256.hex(), std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let share = self.manifest.hf_cache;
        let (from, to, want) = (cached.to_owned(), temp.clone(), *sha256);
        let checked = tokio::task::spawn_blocking(move || copy_checked(&from, &to, want, share))
            .await
            .map_err(ImportError::Task)
            .and_then(|r| r);
        if let Err(why) = checked {
            let _ = std::fs::remove_file(&temp);
            return Err(why);
        }
        self.store.publish_blob(&temp, sha256)?;
        Ok(())
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
                self.lock.model(model),
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

/// Puts the cache's file at `to` (a hard link when `share`, if the filesystem allows, else a
/// synced copy) and checks that its bytes hash to `want`.
fn copy_checked(
    from: &std::path::Path,
    to: &std::path::Path,
    want: Sha256,
    share: bool,
) -> Result<(), ImportError> {
    let linked = share && std::fs::hard_link(from, to).is_ok();
    if !linked {
        std::fs::copy(from, to).map_err(ImportError::Copy)?;
        std::fs::File::open(to)
            .and_then(|f| f.sync_all())
            .map_err(ImportError::Sync)?;
    }
    let got = crate::store::hash_file(to)?;
    if got != want {
        return Err(ImportError::Mismatch { got, want });
    }
    Ok(())
}
