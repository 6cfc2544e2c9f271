//! The executor's side of the machine cache: a blob another project already verified is
//! taken from the cache into this store (reflink, hardlink or copy) instead of downloaded,
//! after its bytes are hashed again unless the cache's record vouches for them
//! ([`crate::store::MachineCache::take`]). A blob the cache holds damaged is discarded there,
//! and the file is downloaded.

use std::sync::Mutex;

use super::{Executor, Outcome};
use crate::digest::Sha256;
use crate::names::{ModelId, RelPath};
use crate::store::{LinkMode, MachineCache};

/// Why a blob of the machine cache was not taken (it is downloaded instead). The caller
/// names the model and file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TakeError {
    #[error("this store has no machine cache")]
    #[diagnostic(code(modelctl::apply::no_machine_cache))]
    NoCache,
    #[error(transparent)]
    #[diagnostic(transparent)]
    Place(#[from] crate::store::PlaceError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Hash(#[from] crate::store::ScanError),
    #[error("its sha256 is {got}, not {want}")]
    #[diagnostic(
        code(modelctl::apply::machine_cache_damaged),
        help("the cache's copy was damaged; it was removed from the cache")
    )]
    Mismatch { got: Sha256, want: Sha256 },
    #[error("the task failed: {0}")]
    #[diagnostic(code(modelctl::apply::task))]
    Task(#[source] tokio::task::JoinError),
}

impl Executor<'_> {
    /// Takes a file's blob from the machine cache; returns whether it was taken (if not, the
    /// file is downloaded, and the reason told).
    pub(super) async fn reuse_from_machine_cache(
        &self,
        outcome: &Mutex<Outcome>,
        model: &ModelId,
        path: &RelPath,
        sha256: &Sha256,
    ) -> bool {
        let store = self.store.clone();
        let want = *sha256;
        let taken = tokio::task::spawn_blocking(move || take(&store, want))
            .await
            .map_err(TakeError::Task)
            .and_then(|r| r);
        match taken {
            Ok(mode) => {
                self.reused(
                    outcome,
                    model,
                    path,
                    &format!("from the machine cache by {mode}"),
                );
                true
            }
            Err(why) => {
                self.reporter.step(&format!(
                    "cannot take {model}/{path} from the machine cache ({why}); downloading it"
                ));
                false
            }
        }
    }
}

/// Links the cache's blob into the store's staging, checks it, and publishes it.
fn take(store: &crate::store::Store, want: Sha256) -> Result<LinkMode, TakeError> {
    let cache: MachineCache = store.machine_cache().ok_or(TakeError::NoCache)?;
    crate::store::ensure_dir(store.root(), &store.tmp_dir())?;
    let temp = store
        .tmp_dir()
        .join(format!("{}.cache-{}", want.hex(), std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let checked = (|| {
        let taken = cache.take(&want, &temp)?;
        if !taken.vouched {
            let got = crate::store::hash_file(&temp)?;
            if got != want {
                cache.discard(&want);
                return Err(TakeError::Mismatch { got, want });
            }
            cache.vouch(&want);
        }
        store.publish_blob(&temp, &want)?;
        Ok(taken.mode)
    })();
    let _ = std::fs::remove_file(&temp);
    checked
}
