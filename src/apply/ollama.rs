//! The executor's side of Ollama models: pull (through the daemon, or from the registry into
//! `OLLAMA_MODELS` when none runs) with the digest checked against the lock, record a model
//! the daemon already has, pull one the lock could not pin and pin what the daemon reports,
//! and removal. Pulling into `OLLAMA_MODELS`, mirrors first, is in `ollama/direct.rs`.
//! Loads and unloads happen with the pointer swaps, in `pointers`.

mod direct;

use std::sync::Mutex;
use std::time::Instant;

use super::fetch;
use super::progress::FileLabel;
use super::{Executor, Outcome};
use crate::digest::Sha256;
use crate::lock::{LockedModel, LockedSource, PinnedFrom};
use crate::names::{ModelId, TypeName};
use crate::sources::ollama::OllamaRef;
use crate::sources::ollama::daemon::{Daemon, DaemonError};
use crate::sources::ollama::daemon_pin::{self, DaemonAccess};

/// Why no Ollama daemon can be talked to (`OLLAMA_HOST` unusable, no client): the
/// [`DaemonError`](crate::sources::ollama::daemon::DaemonError)'s text, which every Ollama
/// action of the run reports.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{cause}")]
#[diagnostic(
    code(modelctl::ollama::no_daemon),
    help("set OLLAMA_HOST to the daemon's `host:port` (default 127.0.0.1:11434)")
)]
pub struct NoDaemon {
    pub cause: String,
}

/// The executor keeps why there is no daemon for every Ollama action of the run.
impl From<DaemonError> for NoDaemon {
    fn from(error: DaemonError) -> Self {
        Self {
            cause: error.to_string(),
        }
    }
}

/// Why an Ollama step of an apply failed. The caller names the model.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum OllamaStepError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    NoDaemon(#[from] NoDaemon),
    #[error("`{name}` is not an Ollama model name: {error}")]
    #[diagnostic(
        code(modelctl::ollama::name),
        help("write it as `name:tag` (`llama3:8b`), as `ollama pull` takes it")
    )]
    BadName {
        name: String,
        error: crate::names::NameError,
    },
    #[error("cannot remove `{}`: {error}", path.display())]
    #[diagnostic(
        code(modelctl::ollama::remove),
        help("check the permissions of OLLAMA_MODELS, or remove the model with `ollama rm`")
    )]
    RemoveManifest {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    /// What the daemon said when asked to do something.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Daemon(#[from] DaemonError),
    #[error("cannot pull `{name}` through Ollama: {error}")]
    #[diagnostic(code(modelctl::ollama::pull))]
    PullThroughDaemon { name: String, error: DaemonError },
    #[error("cannot pull `{name}` into `{}`: {error}", dir.display())]
    #[diagnostic(code(modelctl::ollama::pull_direct))]
    PullDirect {
        name: String,
        dir: std::path::PathBuf,
        error: Box<DirectPullError>,
        /// The help of `error`.
        #[help]
        help: Option<String>,
    },
    #[error("cannot check the pull of `{name}`: {error}")]
    #[diagnostic(code(modelctl::ollama::check))]
    CheckPull { name: String, error: DaemonError },
    #[error(
        "Ollama pulled `{name}` as {got}, but models.lock pins {pinned}: the tag moved upstream; \
         run `modelctl update {model}` to pin the new one"
    )]
    #[diagnostic(code(modelctl::ollama::moved))]
    PulledOther {
        name: String,
        got: String,
        pinned: String,
        model: ModelId,
    },
    #[error("after pulling, the Ollama daemon does not list `{name}`")]
    #[diagnostic(
        code(modelctl::ollama::not_listed),
        help("check `ollama list`; the daemon may have failed to store the model")
    )]
    NotListed { name: String },
}

/// Why pulling from the registry into `OLLAMA_MODELS` failed (the caller names the model and
/// the directory).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DirectPullError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Registry(#[from] crate::sources::ollama::registry::RegistryError),
    #[error(
        "the registry now serves {served} for it, but models.lock pins {pinned}: the tag moved \
         upstream; run `modelctl update` to pin the new one"
    )]
    #[diagnostic(code(modelctl::ollama::moved))]
    Moved { served: String, pinned: String },
    #[error("layer {layer}: {error}")]
    #[diagnostic(code(modelctl::ollama::layer))]
    Layer {
        layer: String,
        error: fetch::FetchError,
    },
    #[error("cannot place layer {layer}: {error}")]
    #[diagnostic(
        code(modelctl::ollama::place),
        help("check that OLLAMA_MODELS is writable and has room")
    )]
    PlaceLayer {
        layer: String,
        error: std::io::Error,
    },
    #[error(
        "the {what} {digest} of `{model}` is on no mirror, and mirror-only forbids the \
         registry: {said}"
    )]
    #[diagnostic(
        code(modelctl::ollama::mirror_only),
        help(
            "push it from a machine that has it (`modelctl push {model} --to {to}`), or apply \
             without `--mirror-only` and MODELCTL_MIRROR_ONLY"
        )
    )]
    MirrorOnly {
        /// `manifest` or `layer`.
        what: &'static str,
        digest: String,
        /// What each mirror said.
        said: String,
        model: ModelId,
        /// The first mirror, for the help's `push --to`.
        to: String,
    },
    #[error("cannot write the manifest: {0}")]
    #[diagnostic(
        code(modelctl::ollama::write_manifest),
        help("check that OLLAMA_MODELS is writable and has room")
    )]
    WriteManifest(#[source] std::io::Error),
}

impl Executor<'_> {
    /// The daemon and the parsed name, for one Ollama action.
    pub(super) fn ollama_call(&self, name: &str) -> Result<(&Daemon, OllamaRef), OllamaStepError> {
        let daemon = self.ollama.as_ref().map_err(|e| e.clone())?;
        let parsed = OllamaRef::parse(name).map_err(|error| OllamaStepError::BadName {
            name: name.to_owned(),
            error,
        })?;
        Ok((daemon, parsed))
    }

    /// Removes an Ollama model: through the daemon, or from `OLLAMA_MODELS` when none runs
    /// (its manifest; Ollama prunes the blobs no manifest uses).
    pub(super) async fn remove_ollama(&self, name: &str) -> Result<(), OllamaStepError> {
        let (daemon, parsed) = self.ollama_call(name)?;
        match (daemon.installed().await, &self.ollama_dir) {
            (Err(_), Some(dir)) => match std::fs::remove_file(dir.manifest_path(&parsed)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(OllamaStepError::RemoveManifest {
                        path: dir.manifest_path(&parsed),
                        error,
                    })
                }
                _ => Ok(()),
            },
            _ => Ok(daemon.delete(&parsed).await?),
        }
    }

    /// Pulls through the daemon (or, with none running and `OLLAMA_MODELS` set, from the
    /// registry directly), checks the digest against the lock, and records the model in its
    /// store directory. A model the daemon already lists at the pinned digest is only
    /// recorded: pulling it again would ask a registry that may not be reachable, or may not
    /// have it at all (a model made with `ollama create`).
    pub(super) async fn pull(
        &self,
        outcome: &Mutex<Outcome>,
        kind: &TypeName,
        model: &ModelId,
        name: &str,
        digest: &Sha256,
        size: u64,
    ) {
        let (daemon, parsed) = match self.ollama_call(name) {
            Ok(call) => call,
            Err(why) => {
                let why = crate::diagnostic::with_help(&why);
                return self.fail(outcome, model, &format!("cannot pull `{name}`: {why}"));
            }
        };
        let listed = daemon.installed().await;
        let has_pinned = listed.as_ref().is_ok_and(|list| {
            list.iter()
                .any(|i| i.name.same_model(&parsed) && i.digest == *digest)
        });
        if has_pinned {
            return match self.record_ollama(kind, model, name, digest) {
                Ok(()) => self
                    .reporter
                    .step(&format!("recorded {model} ({name} is already in Ollama)")),
                Err(why) => self.fail(outcome, model, &why),
            };
        }
        let label = FileLabel {
            model: model.to_string(),
            path: name.to_owned(),
            size,
        };
        let started = Instant::now();
        let progress = self.reporter.start(&label);
        // A pull through the daemon counts as one file; a direct one, as the layers it fetched.
        let pulled = match (listed.is_ok(), &self.ollama_dir) {
            (false, Some(dir)) => {
                let pull = direct::DirectPull {
                    model,
                    name: &parsed,
                    digest,
                    dir,
                };
                self.pull_direct(&pull, progress).await.map_err(|error| {
                    OllamaStepError::PullDirect {
                        name: name.to_owned(),
                        dir: dir.root().to_owned(),
                        help: miette::Diagnostic::help(&error).map(|h| h.to_string()),
                        error: Box::new(error),
                    }
                })
            }
            _ => {
                let report = |done: u64, _total: u64| progress.set(done);
                match daemon.pull(&parsed, &report).await {
                    Ok(()) => self
                        .check_pulled(daemon, &parsed, model, digest)
                        .await
                        .map(|()| direct::Fetched {
                            layers: 1,
                            bytes: size,
                            from_mirrors: 0,
                        }),
                    Err(error) => Err(OllamaStepError::PullThroughDaemon {
                        name: name.to_owned(),
                        error,
                    }),
                }
            }
        };
        let fetched = match pulled {
            Ok(fetched) => fetched,
            Err(why) => return self.fail(outcome, model, &crate::diagnostic::with_help(&why)),
        };
        if let Err(why) = self.record_ollama(kind, model, name, digest) {
            return self.fail(outcome, model, &why);
        }
        self.reporter.done(&label, &digest.hex(), started.elapsed());
        if let Ok(mut o) = outcome.lock() {
            o.downloaded_files += fetched.layers;
            o.downloaded_bytes += fetched.bytes;
            o.from_mirrors += fetched.from_mirrors;
        }
    }

    /// Pulls a model the lock could not pin (the registry is out of this machine's reach)
    /// through the daemon, then pins the digest the daemon reports, with the layers its store
    /// shows when it is on this machine, and records the model.
    pub(super) async fn pull_and_pin(
        &self,
        outcome: &Mutex<Outcome>,
        kind: &TypeName,
        model: &ModelId,
        name: &str,
    ) {
        let (daemon, parsed) = match self.ollama_call(name) {
            Ok(call) => call,
            Err(why) => {
                let why = crate::diagnostic::with_help(&why);
                return self.fail(outcome, model, &format!("cannot pull `{name}`: {why}"));
            }
        };
        let label = FileLabel {
            model: model.to_string(),
            path: name.to_owned(),
            size: 0,
        };
        let started = Instant::now();
        let progress = self.reporter.start(&label);
        let report = |done: u64, _total: u64| progress.set(done);
        if let Err(error) = daemon.pull(&parsed, &report).await {
            let why = OllamaStepError::PullThroughDaemon {
                name: name.to_owned(),
                error,
            };
            return self.fail(outcome, model, &crate::diagnostic::with_help(&why));
        }
        let access = DaemonAccess {
            daemon: Ok(daemon.clone()),
            stores: self.ollama_stores.clone(),
        };
        let pin = match daemon_pin::pin(&access, &parsed).await {
            Ok(Ok(pin)) => pin,
            Ok(Err(_)) => {
                let why = OllamaStepError::NotListed {
                    name: parsed.display_shortest(),
                };
                return self.fail(outcome, model, &crate::diagnostic::with_help(&why));
            }
            Err(error) => {
                let why = OllamaStepError::CheckPull {
                    name: name.to_owned(),
                    error,
                };
                return self.fail(outcome, model, &crate::diagnostic::with_help(&why));
            }
        };
        let Some(entry) = self.manifest.models.get(model) else {
            return self.fail(outcome, model, &format!("`{model}` is not in models.yaml"));
        };
        if let Err(why) = self.record_ollama(kind, model, name, &pin.digest) {
            return self.fail(outcome, model, &why);
        }
        let size = pin.size;
        let label = FileLabel { size, ..label };
        self.reporter
            .done(&label, &pin.digest.hex(), started.elapsed());
        self.reporter.step(&format!(
            "pinned {model} to {} as the Ollama daemon reports it",
            pin.digest.short()
        ));
        if let Ok(mut o) = outcome.lock() {
            o.downloaded_files += 1;
            o.downloaded_bytes += size;
            o.pinned.push((
                model.clone(),
                LockedModel {
                    fingerprint: crate::lock::fingerprint(entry),
                    source: LockedSource::Ollama {
                        ollama: name.to_owned(),
                        digest: pin.digest,
                        layers: pin.layers,
                        pinned_from: PinnedFrom::Daemon,
                    },
                    files: Vec::new(),
                },
            ));
        }
    }

    /// Writes `models/<type>/<id>/ollama.json`: which Ollama model and digest the id is.
    fn record_ollama(
        &self,
        kind: &TypeName,
        model: &ModelId,
        name: &str,
        digest: &Sha256,
    ) -> Result<(), String> {
        let descriptor = crate::store::OllamaDescriptor {
            ollama: name.to_owned(),
            digest: *digest,
        };
        self.store
            .write_ollama_descriptor(kind, model, &descriptor)
            .map_err(|e| format!("cannot record `{model}`: {e}"))
    }

    /// The digest the daemon reports after a pull must be the locked one.
    async fn check_pulled(
        &self,
        daemon: &Daemon,
        name: &OllamaRef,
        model: &ModelId,
        digest: &Sha256,
    ) -> Result<(), OllamaStepError> {
        let listed = daemon
            .installed()
            .await
            .map_err(|error| OllamaStepError::CheckPull {
                name: name.to_string(),
                error,
            })?;
        match listed.into_iter().find(|i| i.name.same_model(name)) {
            Some(i) if i.digest == *digest => Ok(()),
            Some(i) => Err(OllamaStepError::PulledOther {
                name: name.display_shortest(),
                got: i.digest.short(),
                pinned: digest.short(),
                model: model.clone(),
            }),
            None => Err(OllamaStepError::NotListed {
                name: name.display_shortest(),
            }),
        }
    }
}
