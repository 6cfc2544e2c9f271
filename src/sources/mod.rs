//! Sources turn a manifest entry into a locked entry (resolve) and, later, bytes (fetch).
//!
//! A resolver answers "what exactly does this entry mean right now": the commit a Hub
//! revision points at, the size and validators of a URL, the digest of an Ollama tag. It never
//! writes into the store. Resolution failures are data ([`Resolution::Failed`]) so that `plan`
//! can show every model, resolvable or not, and never plans a deletion from a failure.

pub mod hf;
pub mod oci;
pub mod ollama;
pub mod url;

use std::sync::Arc;

use crate::lock::{LockedFile, LockedModel, LockedSource, fingerprint};
use crate::manifest::{ModelEntry, Source};

/// The outcome of resolving one manifest entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Pinned; the note says something the plan should show about how (a pin from the Ollama
    /// daemon rather than the registry).
    Resolved {
        model: LockedModel,
        note: Option<String>,
    },
    /// Not resolved; the reason says why (and, where it can, what to do).
    Failed { reason: String },
    /// An Ollama model this process cannot pin (the registry is out of its reach) and the
    /// daemon does not have yet, though it may reach the registry itself: `apply` pulls it
    /// through the daemon, then pins the digest the daemon reports.
    PullToPin {
        /// The name as models.yaml gives it.
        name: String,
        /// Why the registry could not say.
        reason: String,
    },
}

impl Resolution {
    /// Why the entry is not pinned by this resolution, for commands that pin without
    /// applying (`lock`, `update`); `None` when it is.
    pub fn failure(&self) -> Option<String> {
        match self {
            Resolution::Resolved { .. } => None,
            Resolution::Failed { reason } => Some(reason.clone()),
            Resolution::PullToPin { name, reason } => Some(format!(
                "{reason}; the Ollama daemon does not have `{name}` yet: `modelctl apply` pulls \
                 it through the daemon and pins the digest it reports (or run `ollama pull {name}`)"
            )),
        }
    }
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
    /// The Ollama daemon, asked when the registry cannot say what a name is (`None`: never).
    pub ollama: Option<Arc<ollama::daemon_pin::DaemonAccess>>,
    /// Registry hosts that could not be reached in this run, with why: the next model on the
    /// same host is not made to wait through the retries again.
    pub unreachable: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
    /// The docker config `docker login` writes, for `oci:` registries' credentials.
    pub docker_config: Option<std::path::PathBuf>,
}

/// Resolves one manifest entry.
pub async fn resolve(ctx: &ResolveContext, entry: &ModelEntry) -> Resolution {
    let result = match &entry.source {
        Source::Url(source) => url::resolve(ctx, source, &entry.files)
            .await
            .map(|(source, files)| (source, files, None))
            .map_err(|e| e.to_string()),
        Source::Hf(source) => hf::resolve(ctx, source, &entry.files)
            .await
            .map(|(source, files)| (source, files, None))
            .map_err(|e| e.to_string()),
        Source::Ollama(source) => match ollama::resolve(ctx, source).await {
            Ok(p) => Ok((p.source, Vec::new(), p.note)),
            Err(ollama::OllamaError::NotInDaemon { registry, .. }) => {
                return Resolution::PullToPin {
                    name: source.ollama.clone(),
                    reason: registry.to_string(),
                };
            }
            Err(e) => Err(crate::diagnostic::with_help(&e)),
        },
        Source::Oci(source) => oci::resolve(ctx, source)
            .await
            .map(|(source, files)| (source, files, None))
            .map_err(|e| crate::diagnostic::with_help(&e)),
    };
    match result {
        Ok((source, files, note)) => Resolution::Resolved {
            model: LockedModel {
                fingerprint: fingerprint(entry),
                source,
                files,
            },
            note,
        },
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
    /// For a file of an `oci:` model: the registry and repository whose token its blob needs,
    /// and the tar layer it comes out of (the URL is then that layer's).
    pub oci: Option<oci::OciBlob>,
}

/// Why a locked file has no request to fetch it with.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LocateError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Location(#[from] crate::manifest::LocationError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Hub(#[from] hf::HubError),
    #[error("Ollama models are pulled through Ollama, not downloaded as files")]
    #[diagnostic(code(modelctl::sources::pulled))]
    Pulled,
    #[error(
        "models.lock pins this model to a `{locked}` source, models.yaml to `{declared}`; \
         re-lock it with `modelctl lock`"
    )]
    #[diagnostic(
        code(modelctl::sources::kind_changed),
        help("run `modelctl lock` to pin the source models.yaml declares")
    )]
    KindChanged {
        locked: &'static str,
        declared: &'static str,
    },
    #[error("models.lock has no sha256 for `{path}`, which names its blob in the registry")]
    #[diagnostic(
        code(modelctl::sources::oci_blob),
        help("run `modelctl lock` to pin the model again from its registry")
    )]
    OciBlob { path: String },
}

/// The request for one locked file of a model, from its manifest entry and locked entry.
pub fn locate(
    entry: &ModelEntry,
    locked: &LockedModel,
    file: &LockedFile,
    manifest_dir: &std::path::Path,
    hub: &hf::HubConfig,
) -> Result<Located, LocateError> {
    match (&entry.source, &locked.source) {
        (Source::Url(u), LockedSource::Url { etag, .. }) => Ok(Located {
            url: u.location(manifest_dir)?,
            etag: etag.clone(),
            token: None,
            explain: None,
            oci: None,
        }),
        (Source::Hf(h), LockedSource::Hf { commit, .. }) => locate_hf(h, commit, file, hub),
        (Source::Oci(o), LockedSource::Oci { .. }) => {
            let missing = || LocateError::OciBlob {
                path: file.path.to_string(),
            };
            let digest = file.sha256.ok_or_else(missing)?;
            let archive = locked.source.archive_of(&file.path);
            let (url, blob) = oci::blob_of(o, &digest, archive).map_err(|_| missing())?;
            Ok(Located {
                url,
                etag: None,
                token: None,
                explain: None,
                oci: Some(blob),
            })
        }
        (Source::Ollama(_), _) => Err(LocateError::Pulled),
        (source, other) => Err(LocateError::KindChanged {
            locked: other.kind(),
            declared: source.kind(),
        }),
    }
}

/// The Hub's download URL of a file at the locked commit, with the token for its origin.
fn locate_hf(
    source: &crate::manifest::HfSource,
    commit: &str,
    file: &LockedFile,
    hub: &hf::HubConfig,
) -> Result<Located, LocateError> {
    let repo = hf::Repo::of(source);
    let url = repo.file_url(hub, commit, &file.path)?;
    let token = hub.token_for(url.as_str())?.cloned();
    Ok(Located {
        url,
        // A regular file's ETag is its git blob id: a strong validator for `If-Range`.
        etag: file.git_oid.map(|oid| format!("\"{oid}\"")),
        token,
        explain: Some(Arc::new(hf::FileContext {
            config: hub.clone(),
            repo,
            commit: commit.to_owned(),
            path: file.path.to_string(),
        })),
        oci: None,
    })
}
