//! Sources turn a manifest entry into a locked entry (resolve) and, later, bytes (fetch).
//!
//! A resolver answers "what exactly does this entry mean right now": the commit a Hub
//! revision points at, the size and validators of a URL, the digest of an Ollama tag. It never
//! writes into the store. Resolution failures are data ([`Resolution::Failed`]) so that `plan`
//! can show every model, resolvable or not, and never plans a deletion from a failure.

pub mod hf;
pub mod ollama;
pub mod url;

use std::sync::Arc;

use crate::lock::{LockedFile, LockedModel, LockedSource, fingerprint};
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
    /// Sends every request under the retry policy.
    pub client: crate::net::Client,
    /// `--offline`/`--frozen`: no network at all.
    pub offline: bool,
    /// The directory of models.yaml, which relative `url:` paths start from.
    pub manifest_dir: std::path::PathBuf,
    /// The Hub's endpoint, token and cache.
    pub hf: Arc<hf::HubConfig>,
}

/// Resolves one manifest entry.
pub async fn resolve(ctx: &ResolveContext, entry: &ModelEntry) -> Resolution {
    let result = match &entry.source {
        Source::Url(source) => url::resolve(ctx, source, &entry.files)
            .await
            .map_err(|e| e.to_string()),
        Source::Hf(source) => hf::resolve(ctx, source, &entry.files).await,
        Source::Ollama(source) => ollama::resolve(ctx, source)
            .await
            .map(|l| (l, Vec::new()))
            .map_err(|e| e.to_string()),
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

/// Where to fetch one locked file from, and how.
#[derive(Debug, Clone)]
pub struct Located {
    pub url: ::url::Url,
    /// A validator for `If-Range`, when the lock has one.
    pub etag: Option<String>,
    /// The token to send (only to the URL's own origin; redirects elsewhere drop it).
    pub token: Option<crate::net::Token>,
    /// Turns failed statuses into source-specific advice.
    pub explain: Option<Arc<dyn crate::net::ExplainStatus>>,
}

/// The request for one locked file of a model, from its manifest entry and locked entry.
pub fn locate(
    entry: &ModelEntry,
    locked: &LockedModel,
    file: &LockedFile,
    manifest_dir: &std::path::Path,
    hub: &hf::HubConfig,
) -> Result<Located, String> {
    match (&entry.source, &locked.source) {
        (Source::Url(u), LockedSource::Url { etag, .. }) => Ok(Located {
            url: u.location(manifest_dir)?,
            etag: etag.clone(),
            token: None,
            explain: None,
        }),
        (Source::Hf(h), LockedSource::Hf { commit, .. }) => {
            let repo = hf::Repo::of(h);
            let url = repo
                .file_url(hub, commit, &file.path)
                .map_err(|e| e.to_string())?;
            let token = hub
                .token_for(url.as_str())
                .map_err(|e| e.to_string())?
                .cloned();
            Ok(Located {
                url,
                // A regular file's ETag is its git blob id: a strong validator for `If-Range`.
                etag: file.git_oid.map(|oid| format!("\"{oid}\"")),
                token,
                explain: Some(Arc::new(hf::FileContext {
                    config: hub.clone(),
                    repo,
                    commit: commit.clone(),
                    path: file.path.to_string(),
                })),
            })
        }
        (Source::Ollama(_), _) => {
            Err("Ollama models are pulled through Ollama, not downloaded as files".to_owned())
        }
        (source, other) => Err(format!(
            "models.lock pins this model to a `{}` source, models.yaml to `{}`; re-lock it with `modelctl lock`",
            other.kind(),
            source.kind()
        )),
    }
}
