//! Pinning an Ollama model from the daemon, for when the registry cannot say what a name is:
//! a model made with `ollama create`, or one the daemon pulled from a registry this process
//! cannot reach (offline, or a proxy only the Ollama service has).
//!
//! The pin is the digest the daemon's `/api/tags` reports (the sha256 of the manifest, the id
//! `ollama list` shows), after the same name and digest validation as registry data. Layers are
//! read from the daemon's store when it is on this machine (`OLLAMA_MODELS`, `~/.ollama/models`
//! or the Linux service's `/usr/share/ollama/.ollama/models`: [`crate::settings`]), and only from a manifest file
//! whose bytes hash to that digest, through the registry's manifest validator; `/api/show`
//! names no digests, so a remote daemon's pin has none.

use std::path::PathBuf;

use super::OllamaRef;
use super::daemon::{Daemon, DaemonError, Installed};
use super::layout::OllamaDir;
use crate::digest::Sha256;
use crate::lock::LockedLayer;

/// How resolution may ask the daemon.
#[derive(Debug, Clone)]
pub struct DaemonAccess {
    /// The daemon at `OLLAMA_HOST`, or why there is no client for it.
    pub daemon: Result<Daemon, String>,
    /// Where the daemon's store may be on this machine, in the order they are tried.
    pub stores: Vec<OllamaDir>,
}

impl DaemonAccess {
    /// The daemon at `host` (`OLLAMA_HOST`), with its store looked for in `stores`, in order.
    pub fn new(host: Option<&str>, stores: &[PathBuf], net: &crate::net::NetConfig) -> Self {
        let daemon = Daemon::at(host, net).map_err(|e| e.to_string());
        Self {
            daemon,
            stores: stores.iter().map(OllamaDir::new).collect(),
        }
    }

    /// The daemon, or why there is none.
    pub fn daemon(&self) -> Result<&Daemon, String> {
        self.daemon.as_ref().map_err(Clone::clone)
    }
}

/// What the daemon says a name is.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonPin {
    pub digest: Sha256,
    /// What the daemon reports as its size.
    pub size: u64,
    /// Empty when the daemon's store could not be read here.
    pub layers: Vec<LockedLayer>,
}

/// What the daemon holds for `name`: `Ok(None)` when it does not have it, with every model it
/// has for the caller's "did you mean".
pub async fn pin(
    access: &DaemonAccess,
    name: &OllamaRef,
) -> Result<Result<DaemonPin, Vec<Installed>>, DaemonError> {
    let daemon = access.daemon().map_err(|cause| DaemonError::Unreachable {
        address: "OLLAMA_HOST".to_owned(),
        chain: cause,
    })?;
    let installed = daemon.installed().await?;
    let Some(found) = installed.iter().find(|i| i.name.same_model(name)) else {
        return Ok(Err(installed));
    };
    Ok(Ok(DaemonPin {
        digest: found.digest,
        size: found.size,
        layers: layers_from_store(access, name, &found.digest),
    }))
}

/// The layers of the manifest whose bytes hash to `digest`, from the first store that has it.
fn layers_from_store(access: &DaemonAccess, name: &OllamaRef, digest: &Sha256) -> Vec<LockedLayer> {
    access
        .stores
        .iter()
        .find_map(|store| {
            let bytes = store.manifest_bytes(name)?;
            if Sha256::of(&bytes) != *digest {
                return None;
            }
            super::registry::parse(&bytes).ok().map(|m| m.layers)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_read_only_from_a_manifest_with_the_daemons_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = OllamaDir::new(dir.path());
        let name = OllamaRef::parse("my-finetune").expect("name");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": format!("sha256:{}", "c".repeat(64)), "size": 10},
            "layers": [{"mediaType": "application/vnd.ollama.image.model",
                        "digest": format!("sha256:{}", "a".repeat(64)), "size": 100}]
        })
        .to_string();
        let path = store.manifest_path(&name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &manifest).expect("write");
        let access = DaemonAccess {
            daemon: Err("none".into()),
            stores: vec![store],
        };
        let right = Sha256::of(manifest.as_bytes());
        assert_eq!(layers_from_store(&access, &name, &right).len(), 2);
        assert!(
            layers_from_store(&access, &name, &Sha256::of(b"other")).is_empty(),
            "a manifest that is not the daemon's is never read"
        );
    }
}
