//! `ollama` sources: a model served by the Ollama daemon, pinned to its manifest digest.
//!
//! Resolving asks the registry for the tag's manifest ([`registry`]): the lock records the
//! sha256 of the manifest bytes and every layer. When the registry cannot say (unreachable,
//! refusing, or without the name, as for a model made with `ollama create`), the daemon is
//! asked instead ([`daemon_pin`]) and the lock records its digest, marked `pinned_from:
//! daemon`. Applying asks the daemon ([`daemon`]) to pull, or only records a model it already
//! has, then checks that the digest it reports is the locked one; a model directory in the store
//! (`models/llm/<id>/ollama.json`) records which Ollama model and digest the id stands for, so
//! `status`, `active.json` and the swap logic treat Ollama models like any other. What the
//! daemon has is gathered before planning ([`DaemonView`]); an unreachable daemon is reported
//! per model and never turns into a deletion. Without a daemon but with `OLLAMA_MODELS` set,
//! `apply` pulls from the registry itself into Ollama's on-disk layout ([`layout`]), through
//! the same download engine as every other file, so a later `ollama serve` finds the model.

pub mod daemon;
pub mod daemon_pin;
pub mod layout;
pub mod registry;

use std::collections::BTreeMap;

pub use crate::names::ollama::{DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, OllamaRef};

use super::ResolveContext;
use crate::digest::Sha256;
use crate::lock::{LockedSource, PinnedFrom};
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
    #[error("`{name}` is in neither the registry nor the Ollama daemon: {registry}")]
    #[diagnostic(code(modelctl::ollama::unknown), help("{help}"))]
    Unknown {
        name: String,
        registry: registry::RegistryError,
        help: String,
    },
    #[error("cannot pin `{name}`: {registry}; the Ollama daemon, asked instead, does not have it")]
    #[diagnostic(
        code(modelctl::ollama::not_in_daemon),
        help(
            "pull it with `ollama pull {name}` (the daemon may reach the registry through its own proxy), then run modelctl again"
        )
    )]
    NotInDaemon {
        name: String,
        registry: registry::RegistryError,
    },
    #[error(
        "cannot pin `{name}`: {registry}; and the Ollama daemon cannot be asked instead: {daemon}"
    )]
    #[diagnostic(
        code(modelctl::ollama::no_answer),
        help(
            "start the daemon (`ollama serve`) or set OLLAMA_HOST, or make the registry reachable"
        )
    )]
    NoAnswer {
        name: String,
        registry: registry::RegistryError,
        daemon: daemon::DaemonError,
    },
}

/// A resolved `ollama` source, and what the plan should say about where its pin came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Pinned {
    pub source: LockedSource,
    pub note: Option<String>,
}

/// Resolves an `ollama` source: the tag's manifest digest and layers, from the registry, or
/// the daemon's digest when the registry cannot say.
pub async fn resolve(ctx: &ResolveContext, source: &OllamaSource) -> Result<Pinned, OllamaError> {
    let name = OllamaRef::parse(&source.ollama).map_err(|error| OllamaError::Name {
        name: source.ollama.clone(),
        error,
    })?;
    if ctx.offline {
        return Err(OllamaError::Offline(name.display_shortest()));
    }
    let registry_error = match manifest_unless_unreachable(ctx, &name).await {
        Ok(manifest) => {
            return Ok(Pinned {
                source: LockedSource::Ollama {
                    ollama: source.ollama.clone(),
                    digest: manifest.digest,
                    layers: manifest.layers,
                    pinned_from: PinnedFrom::Registry,
                },
                note: None,
            });
        }
        Err(e) => e,
    };
    let Some(access) = ctx
        .ollama
        .as_deref()
        .filter(|_| registry_error.daemon_may_answer())
    else {
        return Err(registry_error.into());
    };
    let shown = name.display_shortest();
    match daemon_pin::pin(access, &name).await {
        Ok(Ok(pin)) => Ok(Pinned {
            note: Some(daemon_note(&registry_error, &pin)),
            source: LockedSource::Ollama {
                ollama: source.ollama.clone(),
                digest: pin.digest,
                layers: pin.layers,
                pinned_from: PinnedFrom::Daemon,
            },
        }),
        Ok(Err(_)) if registry_error.unreachable() => Err(OllamaError::NotInDaemon {
            name: shown,
            registry: registry_error,
        }),
        Ok(Err(installed)) => Err(OllamaError::Unknown {
            help: unknown_help(&name, &installed),
            name: shown,
            registry: registry_error,
        }),
        Err(daemon) => Err(OllamaError::NoAnswer {
            name: shown,
            registry: registry_error,
            daemon,
        }),
    }
}

/// The registry's manifest of `name`, unless its host could not be reached earlier in this run.
async fn manifest_unless_unreachable(
    ctx: &ResolveContext,
    name: &OllamaRef,
) -> Result<registry::Manifest, registry::RegistryError> {
    let known = ctx
        .unreachable
        .lock()
        .ok()
        .and_then(|hosts| hosts.get(&name.host).cloned());
    if let Some(chain) = known {
        return Err(registry::RegistryError::Unreachable {
            host: name.host.clone(),
            chain: format!("{chain}; not asked again in this run"),
        });
    }
    let answer = registry::manifest(&ctx.client, name).await;
    if let Err(registry::RegistryError::Unreachable { host, chain }) = &answer
        && let Ok(mut hosts) = ctx.unreachable.lock()
    {
        hosts.insert(host.clone(), chain.clone());
    }
    answer
}

/// What the plan says about a pin from the daemon.
fn daemon_note(registry: &registry::RegistryError, pin: &daemon_pin::DaemonPin) -> String {
    let why = match registry {
        registry::RegistryError::NotFound { .. } => {
            "the registry does not have it (a model made with `ollama create`?)".to_owned()
        }
        other => format!("the registry is not reachable ({other})"),
    };
    let layers = match pin.layers.is_empty() {
        true => "; its layers are not recorded (the daemon's store is not on this machine)",
        false => "",
    };
    format!(
        "pinned from the Ollama daemon as {}: {why}{layers}; other machines get this pin only from a daemon that has the same model",
        pin.digest.short()
    )
}

/// "Did you mean" for a name the daemon does not have, from what it has.
pub fn unknown_help(name: &OllamaRef, installed: &[daemon::Installed]) -> String {
    let names: Vec<String> = installed
        .iter()
        .map(|i| i.name.display_shortest())
        .collect();
    // Compared by `model:tag`, so a name typed without its registry host still finds it.
    let short = |n: &OllamaRef| format!("{}:{}", n.model, n.tag);
    let shorts: Vec<String> = installed.iter().map(|i| short(&i.name)).collect();
    let near = crate::diagnostic::closest(&short(name), shorts.iter().map(String::as_str))
        .and_then(|near| shorts.iter().position(|s| s == near))
        .map(|at| &names[at]);
    match near {
        Some(near) => format!("did you mean `{near}`? (`ollama list` shows what the daemon has)"),
        None if names.is_empty() => {
            "the daemon has no models; pull it with `ollama pull`, or make it with `ollama create`"
                .to_owned()
        }
        None => format!(
            "the daemon has {}; check the name, pull it with `ollama pull`, or make it with `ollama create`",
            names.join(", ")
        ),
    }
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
    /// The digest the daemon has `name` at: `None` when that is not known, `Some(None)` when
    /// it does not have the name.
    pub fn digest_of(&self, name: &str) -> Option<Option<Sha256>> {
        let (DaemonView::Reachable(models) | DaemonView::Directory(models)) = self else {
            return None;
        };
        let full = OllamaRef::parse(name)
            .ok()?
            .to_string()
            .to_ascii_lowercase();
        Some(models.get(&full).copied())
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
