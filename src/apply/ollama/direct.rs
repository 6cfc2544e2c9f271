//! Pulling an Ollama model into `OLLAMA_MODELS` when no daemon runs, mirrors first: the
//! manifest is asked of each mirror by its locked digest (`<ns>/<id>`, kept only when its
//! bytes hash to the pin), else fetched from the model's registry and checked against the
//! pin; each missing layer is asked of the mirrors through the same step as files
//! ([`crate::apply::mirror::Mirrors::fetch`]), else downloaded from the registry, either way
//! through the download engine (ranged, resumable, verified) and renamed into `blobs/`. What
//! no mirror served comes from the registry with a one-line notice, or, under mirror-only, is
//! an error. The manifest is written last, so a failed pull leaves none naming a missing blob.

use std::sync::Arc;

use super::DirectPullError;
use crate::apply::Executor;
use crate::apply::fetch::{self, Downloaded, FileJob};
use crate::apply::mirror::{Attempt, ManifestAttempt};
use crate::digest::Sha256;
use crate::lock::LockedLayer;
use crate::names::ModelId;
use crate::net::Token;
use crate::sources::ollama::OllamaRef;
use crate::sources::ollama::layout::OllamaDir;
use crate::sources::ollama::registry;

/// One direct pull: the model, its Ollama name, the pinned digest and where it goes.
pub(super) struct DirectPull<'a> {
    pub model: &'a ModelId,
    pub name: &'a OllamaRef,
    pub digest: &'a Sha256,
    pub dir: &'a OllamaDir,
}

/// What a direct pull downloaded: layers fetched, their bytes, and how many a mirror served.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fetched {
    pub layers: usize,
    pub bytes: u64,
    pub from_mirrors: usize,
}

/// The registry's pull token, once its manifest has been fetched (and checked against the
/// pin): asked for only when something has to come from the registry.
type OriginToken = Option<Option<Token>>;

impl Executor<'_> {
    /// Pulls `pull` into its directory, mirrors first (see the module's text).
    pub(super) async fn pull_direct(
        &self,
        pull: &DirectPull<'_>,
        progress: Arc<dyn fetch::FileProgress>,
    ) -> Result<Fetched, DirectPullError> {
        let mut origin: OriginToken = None;
        let manifest = match self.manifest_from_mirrors(pull).await? {
            Some(bytes) => registry::parse(&bytes)?,
            None => {
                let manifest = self.origin_manifest(pull).await?;
                origin = Some(manifest.token.clone());
                manifest
            }
        };
        let mut fetched = Fetched::default();
        let mut before = 0;
        for layer in &manifest.layers {
            if !has_verified_blob(pull.dir, &layer.digest, layer.size).await {
                let part = Arc::new(fetch::PartProgress {
                    before,
                    whole: progress.clone(),
                });
                let (downloaded, mirrored) =
                    self.fetch_layer(pull, layer, &mut origin, part).await?;
                place_blob(pull.dir, &downloaded.data, &layer.digest).map_err(|error| {
                    DirectPullError::PlaceLayer {
                        layer: layer.digest.short(),
                        error,
                    }
                })?;
                downloaded.published();
                fetched.layers += 1;
                fetched.bytes += layer.size;
                fetched.from_mirrors += usize::from(mirrored);
            }
            before += layer.size;
            progress.set(before);
        }
        write_manifest(pull.dir, pull.name, &manifest.bytes)
            .map_err(DirectPullError::WriteManifest)?;
        Ok(fetched)
    }

    /// The pinned manifest's bytes from the first mirror that has them; `None` (said in one
    /// line) when the registry is to be asked, an error under mirror-only.
    async fn manifest_from_mirrors(
        &self,
        pull: &DirectPull<'_>,
    ) -> Result<Option<Vec<u8>>, DirectPullError> {
        if !self.mirrors.asked() {
            return Ok(None);
        }
        match self
            .mirrors
            .manifest(pull.model.as_str(), pull.digest)
            .await
        {
            ManifestAttempt::Served(bytes, _) => Ok(Some(bytes)),
            ManifestAttempt::Missed(said) => {
                self.not_mirrored(pull, "manifest", pull.digest, &said)?;
                Ok(None)
            }
        }
    }

    /// One layer: from the first mirror that has it, else from the registry. Returns the
    /// verified download and whether a mirror served it.
    async fn fetch_layer(
        &self,
        pull: &DirectPull<'_>,
        layer: &LockedLayer,
        origin: &mut OriginToken,
        part: Arc<dyn fetch::FileProgress>,
    ) -> Result<(Downloaded, bool), DirectPullError> {
        let failed = |error| DirectPullError::Layer {
            layer: layer.digest.short(),
            error,
        };
        let job = FileJob {
            url: registry::blob_url(pull.name, &layer.digest)?,
            size: layer.size,
            sha256: Some(layer.digest),
            md5: None,
            git_oid: None,
            expected_by: fetch::ExpectedBy::Lock,
            etag: None,
            token: None,
            authorization: None,
            explain: None,
        };
        if self.mirrors.asked() {
            let ids = [pull.model.to_string()];
            match self
                .mirrors
                .fetch(&self.engine, &job, &ids, part.clone())
                .await
            {
                Attempt::Served(downloaded, _) => return Ok((downloaded, true)),
                Attempt::Cancelled => return Err(failed(fetch::FetchError::Cancelled)),
                Attempt::Missed(said) => {
                    self.not_mirrored(pull, "layer", &layer.digest, &said)?;
                }
            }
        }
        let token = match origin {
            Some(token) => token.clone(),
            None => {
                let token = self.origin_manifest(pull).await?.token;
                *origin = Some(token.clone());
                token
            }
        };
        let job = FileJob { token, ..job };
        let downloaded = self.engine.fetch(&job, part).await.map_err(failed)?;
        Ok((downloaded, false))
    }

    /// The manifest from the model's registry, which must hash to the pin.
    async fn origin_manifest(
        &self,
        pull: &DirectPull<'_>,
    ) -> Result<registry::Manifest, DirectPullError> {
        let manifest = registry::manifest(self.engine.client(), pull.name).await?;
        if manifest.digest != *pull.digest {
            return Err(DirectPullError::Moved {
                served: manifest.digest.short(),
                pinned: pull.digest.short(),
            });
        }
        Ok(manifest)
    }

    /// What no mirror served: under mirror-only an error naming it and what each mirror said,
    /// else one line saying it comes from the registry.
    fn not_mirrored(
        &self,
        pull: &DirectPull<'_>,
        what: &'static str,
        digest: &Sha256,
        said: &[String],
    ) -> Result<(), DirectPullError> {
        let said = match said {
            [] => "no mirror is set".to_owned(),
            _ => said.join("; "),
        };
        if self.mirrors.only {
            return Err(DirectPullError::MirrorOnly {
                what,
                digest: format!("sha256:{}", digest.hex()),
                said,
                model: pull.model.clone(),
                to: self
                    .mirrors
                    .first()
                    .unwrap_or("REGISTRY/NAMESPACE")
                    .to_owned(),
            });
        }
        self.reporter.step(&format!(
            "{} {what} sha256:{} is not from a mirror: {said}; downloading it from the origin",
            pull.model,
            digest.short()
        ));
        Ok(())
    }
}

/// Whether `OLLAMA_MODELS` holds the layer with bytes that hash to its name: a blob another
/// writer left damaged is downloaded again and replaced, never taken on its size.
async fn has_verified_blob(dir: &OllamaDir, digest: &Sha256, size: u64) -> bool {
    if !dir.has_blob(digest, size) {
        return false;
    }
    let path = dir.blob_path(digest);
    let want = *digest;
    tokio::task::spawn_blocking(move || crate::store::hash_file(&path).is_ok_and(|d| d == want))
        .await
        .unwrap_or(false)
}

/// Moves a verified file in as the blob `digest`, renamed over whatever was there (copied
/// and fsynced across filesystems), and syncs the directory.
fn place_blob(dir: &OllamaDir, verified: &std::path::Path, digest: &Sha256) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.root().join("blobs"))?;
    crate::durable::install(verified, &dir.blob_path(digest), crate::durable::Keep::Move)
        .map(|_| ())
}

/// Writes the manifest, last and atomically, so a crash never leaves one naming a missing blob.
fn write_manifest(dir: &OllamaDir, name: &OllamaRef, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.manifest_path(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::durable::write_atomic(&path, bytes)
}
