//! Sources turn a manifest entry into a locked entry (resolve) and, later, bytes (fetch).
//!
//! A resolver answers "what exactly does this entry mean right now": the commit a Hub
//! revision points at, the size and validators of a URL, the digest of an Ollama tag. It never
//! writes into the store. Resolution failures are data ([`Resolution::Failed`]) so that `plan`
//! can show every model, resolvable or not, and never plans a deletion from a failure.

pub mod ollama;
pub mod url;

use crate::lock::{LockedModel, fingerprint};
use crate::manifest::{ModelEntry, Source};

/// The outcome of resolving one manifest entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Resolved(LockedModel),
    /// Not resolved; the reason says why (and, where it can, what to do).
    Failed {
        reason: String,
    },
}

/// How resolvers may reach the outside world.
#[derive(Debug, Clone)]
pub struct ResolveContext {
    pub client: reqwest::Client,
    /// `--offline`/`--frozen`: no network at all.
    pub offline: bool,
    /// The directory of models.yaml, which relative `url:` paths start from.
    pub manifest_dir: std::path::PathBuf,
}

/// Resolves one manifest entry.
pub async fn resolve(ctx: &ResolveContext, entry: &ModelEntry) -> Resolution {
    let result = match &entry.source {
        Source::Url(source) => url::resolve(ctx, source, &entry.files).await,
        Source::Hf(_) => Err(
            "this build of modelctl cannot resolve Hub repositories yet, \
             so the commit and file list are unknown"
                .to_owned(),
        ),
        Source::Ollama(_) => Err("this build of modelctl cannot resolve Ollama tags yet, \
             so the manifest digest and layers are unknown"
            .to_owned()),
    };
    match result {
        Ok((source, files)) => Resolution::Resolved(LockedModel {
            fingerprint: fingerprint(entry),
            source,
            files,
        }),
        Err(reason) => Resolution::Failed { reason },
    }
}

/// Where to fetch one locked file from.
#[derive(Debug, Clone)]
pub struct Located {
    pub url: ::url::Url,
    /// A validator for `If-Range`, when the lock has one.
    pub etag: Option<String>,
}

/// The request for `path` of a model, from its manifest entry and locked entry.
pub fn locate(
    entry: &ModelEntry,
    locked: &LockedModel,
    manifest_dir: &std::path::Path,
) -> Result<Located, String> {
    match (&entry.source, &locked.source) {
        (Source::Url(u), crate::lock::LockedSource::Url { etag, .. }) => Ok(Located {
            url: u.location(manifest_dir)?,
            etag: etag.clone(),
        }),
        (Source::Hf(_), _) => {
            Err("downloading from the Hub is not part of this build of modelctl yet".to_owned())
        }
        (Source::Ollama(_), _) => {
            Err("Ollama models are pulled through Ollama, not downloaded as files".to_owned())
        }
        (Source::Url(_), other) => Err(format!(
            "models.lock pins this model to a `{}` source; re-lock it with `modelctl lock`",
            other.kind()
        )),
    }
}
