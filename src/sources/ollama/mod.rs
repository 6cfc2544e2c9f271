//! `ollama` sources: a model served by the Ollama daemon, pinned to its manifest digest.
//!
//! Resolving asks the registry for the tag's manifest ([`registry`]): the lock records the
//! sha256 of the manifest bytes and every layer. Applying asks the daemon ([`daemon`]) to pull,
//! then checks that the digest it reports is the locked one; a model directory in the store
//! (`models/llm/<id>/ollama.json`) records which Ollama model and digest the id stands for, so
//! `status`, `active.json` and the swap logic treat Ollama models like any other. What the
//! daemon has is gathered before planning ([`DaemonView`]); an unreachable daemon is reported
//! per model and never turns into a deletion. Without a daemon but with `OLLAMA_MODELS` set,
//! `apply` pulls from the registry itself into Ollama's on-disk layout ([`layout`]), through
//! the same download engine as every other file, so a later `ollama serve` finds the model.

pub mod daemon;
pub mod layout;
pub mod registry;

use std::collections::BTreeMap;

pub use crate::names::ollama::{DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, OllamaRef};

use super::ResolveContext;
use crate::digest::Sha256;
use crate::lock::LockedSource;
use crate::manifest::OllamaSource;

/// Why an `ollama` source could not be resolved.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum OllamaError {
    #[error("`{name}` is not an Ollama model name: {error}")]
    #[diagnostic(
        code(modelctl::ollama::name),
        help(
            "write the name as `ollama pull` takes it: `model`, `model:tag` or `namespace/model:tag`"
        )
    )]
    Name {
        name: String,
        error: crate::names::NameError,
    },
    #[error(
        "the network is off (`--offline` or `--frozen`), so the registry cannot say what `{0}` is; run `modelctl lock` online once and commit models.lock"
    )]
    #[diagnostic(code(modelctl::ollama::offline))]
    Offline(String),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Registry(#[from] registry::RegistryError),
}

/// Resolves an `ollama` source: the tag's manifest digest and layers, from the registry.
pub async fn resolve(
    ctx: &ResolveContext,
    source: &OllamaSource,
) -> Result<LockedSource, OllamaError> {
    let name = OllamaRef::parse(&source.ollama).map_err(|error| OllamaError::Name {
        name: source.ollama.clone(),
        error,
    })?;
    if ctx.offline {
        return Err(OllamaError::Offline(name.display_shortest()));
    }
    let manifest = registry::manifest(&ctx.client, &name).await?;
    Ok(LockedSource::Ollama {
        ollama: source.ollama.clone(),
        digest: manifest.digest,
        layers: manifest.layers,
    })
}

/// What the daemon has, as the planner sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum DaemonView {
    /// Not asked: no Ollama model is declared or present, or the network is off.
    #[default]
    NotAsked,
    /// It could not be reached; the text says why and what to do.
    Unreachable(String),
    /// Its models, by full name (`registry.ollama.ai/library/llama3:8b`), with their digests.
    Reachable(BTreeMap<String, Sha256>),
    /// No daemon, but `OLLAMA_MODELS` is set: the models whose manifests are in that
    /// directory, which `apply` fills by pulling from the registry itself.
    Directory(BTreeMap<String, Sha256>),
}

impl DaemonView {
    /// Whether the daemon has `name` at `digest` (`None` when that is not known).
    pub fn has(&self, name: &str, digest: &Sha256) -> Option<bool> {
        let (DaemonView::Reachable(models) | DaemonView::Directory(models)) = self else {
            return None;
        };
        let full = OllamaRef::parse(name)
            .ok()?
            .to_string()
            .to_ascii_lowercase();
        Some(models.get(&full) == Some(digest))
    }

    /// The view from the daemon's `/api/tags`.
    pub fn from_installed(installed: &[daemon::Installed]) -> Self {
        DaemonView::Reachable(
            installed
                .iter()
                .map(|i| (i.name.to_string().to_ascii_lowercase(), i.digest))
                .collect(),
        )
    }
}
