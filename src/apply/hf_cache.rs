//! The executor's side of the Hugging Face cache: taking a verified blob from it instead of
//! downloading (linked where the filesystem allows, so the bytes are on disk once), and laying
//! models out in it (`hf_cache: true`), once their files are in.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Executor, Outcome};
use crate::digest::Sha256;
use crate::names::{ModelId, TypeName};
use crate::plan::{Action, Plan};
use crate::store::LinkMode;
use crate::store::machine_cache::link_or_copy;

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
    /// (the cache's writers never verify): by reflink or hardlink where the filesystem allows,
    /// so the bytes are on disk once (a hardlinked file becomes read-only, as every blob is),
    /// else by copy. Says which.
    pub(super) async fn import_cached(
        &self,
        cached: &std::path::Path,
        sha256: &Sha256,
    ) -> Result<LinkMode, ImportError> {
        let temp =
            self.store
                .tmp_dir()
                .join(format!("{}.hf-cache-{}", sha256.hex(), std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let (from, to, want) = (cached.to_owned(), temp.clone(), *sha256);
        let checked = tokio::task::spawn_blocking(move || link_checked(&from, &to, want))
            .await
            .map_err(ImportError::Task)
            .and_then(|r| r);
        let mode = match checked {
            Ok(mode) => mode,
            Err(why) => {
                let _ = std::fs::remove_file(&temp);
                return Err(why);
            }
        };
        self.store.publish_blob(&temp, sha256)?;
        Ok(mode)
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

/// Puts the cache's file at `to` (a reflink, a hardlink, or a synced copy) and checks that
/// its bytes hash to `want`. A hardlink to a file this user cannot make read-only (another
/// user's cache) is replaced by a copy of its own.
fn link_checked(
    from: &std::path::Path,
    to: &std::path::Path,
    want: Sha256,
) -> Result<LinkMode, ImportError> {
    let mut mode = link_or_copy(from, to).map_err(ImportError::Copy)?;
    if mode == LinkMode::Hardlink && !can_protect(to) {
        std::fs::remove_file(to).map_err(ImportError::Copy)?;
        std::fs::copy(from, to).map_err(ImportError::Copy)?;
        std::fs::File::open(to)
            .and_then(|f| f.sync_all())
            .map_err(ImportError::Sync)?;
        mode = LinkMode::Copy;
    }
    let got = crate::store::hash_file(to)?;
    if got != want {
        return Err(ImportError::Mismatch { got, want });
    }
    Ok(mode)
}

/// Whether this user can make `path` read-only, as publishing a blob does: it owns the file
/// as it owns the staging directory the file was just linked into.
fn can_protect(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let owner = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.uid()).ok();
    match (owner(path), path.parent().and_then(owner)) {
        (Some(file), Some(dir)) => file == dir,
        _ => false,
    }
}
