//! `push` of an Ollama model whose layers are on this machine: not a ModelPack artifact but
//! the model's own manifest, byte for byte, so its digest in the registry is the digest
//! models.lock pins (and `apply` on another node can ask a mirror for exactly that, and check
//! it), with its layers and config as blobs.
//!
//! The copy is looked for in the local Ollama stores ([`crate::settings`]: `OLLAMA_MODELS`,
//! `~/.ollama/models`, `/usr/share/ollama/.ollama/models`): the first whose manifest for the
//! name hashes to the pin, and which holds every blob it lists at its size. Each blob is
//! hashed against its digest before anything is sent. A model whose copy is not here (a
//! remote daemon's pin, which has no layers in the lock; a store missing a blob) cannot be
//! pushed, and the reason says why.

use std::path::PathBuf;

use crate::digest::Sha256;
use crate::lock::{LockedModel, LockedSource};
use crate::sources::ollama::OllamaRef;
use crate::sources::ollama::layout::OllamaDir;
use crate::sources::ollama::registry;

/// An Ollama model's manifest and blobs, found in a local store.
#[derive(Debug, Clone)]
pub struct OllamaCopy {
    /// The manifest's bytes, verbatim: they hash to the pin.
    pub manifest: Vec<u8>,
    /// The manifest's own `mediaType` (docker's v2 manifest when it names none).
    pub media_type: String,
    /// The layers, then the config.
    pub blobs: Vec<OllamaBlob>,
}

/// One layer (or the config) of the copy.
#[derive(Debug, Clone)]
pub struct OllamaBlob {
    /// `model`, `template`, `config`: what the push prints and reports for it.
    pub label: String,
    pub media_type: String,
    pub sha256: Sha256,
    pub size: u64,
    pub path: PathBuf,
}

/// The local copy of the Ollama model `locked` pins, or why there is none to push.
pub fn find(stores: &[PathBuf], locked: &LockedModel) -> Result<OllamaCopy, String> {
    let LockedSource::Ollama {
        ollama,
        digest,
        layers,
        ..
    } = &locked.source
    else {
        return Err("it is not an Ollama model".to_owned());
    };
    if layers.is_empty() {
        return Err(format!(
            "models.lock lists no layers for `{ollama}` (it was pinned from an Ollama daemon \
             whose store is not on this machine), so its files are not here to push"
        ));
    }
    let name = OllamaRef::parse(ollama).map_err(|e| format!("`{ollama}`: {e}"))?;
    let mut why = Vec::new();
    for store in stores.iter().map(OllamaDir::new) {
        match copy_in(&store, &name, digest) {
            Ok(copy) => return Ok(copy),
            Err(Some(reason)) => why.push(reason),
            Err(None) => {}
        }
    }
    if why.is_empty() {
        let searched: Vec<String> = stores.iter().map(|s| s.display().to_string()).collect();
        why.push(format!(
            "no local Ollama store has its manifest at the pinned sha256:{} (searched {})",
            digest.short(),
            searched.join(", ")
        ));
    }
    Err(why.join("; "))
}

/// The copy in `store`: `Err(None)` when the store has no manifest with the pinned digest,
/// `Err(Some(why))` when it has one but not every blob.
fn copy_in(
    store: &OllamaDir,
    name: &OllamaRef,
    digest: &Sha256,
) -> Result<OllamaCopy, Option<String>> {
    let manifest = store
        .manifest_bytes(name)
        .filter(|b| Sha256::of(b) == *digest)
        .ok_or(None)?;
    let root = store.root().display();
    let parsed = registry::parse(&manifest)
        .map_err(|e| Some(format!("its manifest in `{root}` is refused: {e}")))?;
    let config = parsed.layers.len().saturating_sub(1);
    let mut blobs = Vec::new();
    for (at, layer) in parsed.layers.iter().enumerate() {
        if !store.has_blob(&layer.digest, layer.size) {
            return Err(Some(format!(
                "`{root}` has its manifest but not its blob sha256:{} ({} bytes)",
                layer.digest.short(),
                layer.size
            )));
        }
        blobs.push(OllamaBlob {
            label: if at == config {
                "config".to_owned()
            } else {
                label_of(&layer.media_type)
            },
            media_type: layer.media_type.clone(),
            sha256: layer.digest,
            size: layer.size,
            path: store.blob_path(&layer.digest),
        });
    }
    Ok(OllamaCopy {
        media_type: media_type_of(&manifest),
        manifest,
        blobs,
    })
}

/// `application/vnd.ollama.image.model` → `model`; any other type as it is.
fn label_of(media_type: &str) -> String {
    media_type
        .strip_prefix("application/vnd.ollama.image.")
        .unwrap_or(media_type)
        .to_owned()
}

/// The manifest's `mediaType`, else docker's v2 manifest (what Ollama's registry serves).
fn media_type_of(manifest: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
        .filter(|t| !t.is_empty() && t.len() <= 128 && !t.contains(['\r', '\n']))
        .unwrap_or_else(|| registry::MANIFEST_TYPE.to_owned())
}

/// Hashes every blob of `copy`: each must be what its digest says. `Err((cause, help))`.
pub fn verify(copy: &OllamaCopy) -> Result<(), (String, String)> {
    for blob in &copy.blobs {
        let actual = crate::store::hash_file(&blob.path).map_err(|e| {
            (
                format!("cannot read `{}`: {e}", blob.path.display()),
                "check the permissions of the Ollama store".to_owned(),
            )
        })?;
        if actual != blob.sha256 {
            return Err((
                format!(
                    "the Ollama blob `{}` is corrupt: its bytes hash to {actual}",
                    blob.path.display()
                ),
                "pull the model again (`ollama pull`, or `modelctl apply` with OLLAMA_MODELS set)"
                    .to_owned(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{LockedLayer, PinnedFrom};

    fn manifest_of(blobs: &[(&str, &[u8])]) -> Vec<u8> {
        let entry = |(media, bytes): &(&str, &[u8])| serde_json::json!({"mediaType": media, "digest": format!("sha256:{}", Sha256::of(bytes).hex()), "size": bytes.len()});
        let (config, layers) = blobs.split_last().expect("a config");
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": registry::MANIFEST_TYPE,
            "config": entry(config),
            "layers": layers.iter().map(entry).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes()
    }

    fn locked(manifest: &[u8], layers: Vec<LockedLayer>) -> LockedModel {
        LockedModel {
            fingerprint: Sha256::of(b""),
            source: LockedSource::Ollama {
                ollama: "tiny:1b".to_owned(),
                digest: Sha256::of(manifest),
                layers,
                pinned_from: PinnedFrom::Registry,
            },
            files: Vec::new(),
        }
    }

    #[test]
    fn a_store_with_the_pinned_manifest_and_every_blob_is_the_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = OllamaDir::new(dir.path());
        let blobs: [(&str, &[u8]); 2] = [
            ("application/vnd.ollama.image.model", b"weights"),
            ("application/vnd.docker.container.image.v1+json", b"{}"),
        ];
        let manifest = manifest_of(&blobs);
        let name = OllamaRef::parse("tiny:1b").expect("name");
        let path = store.manifest_path(&name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &manifest).expect("manifest");
        let layers = registry::parse(&manifest).expect("parse").layers;
        let pin = locked(&manifest, layers);
        let stores = vec![dir.path().join("elsewhere"), dir.path().to_owned()];

        let missing = find(&stores, &pin).expect_err("no blobs yet");
        assert!(missing.contains("not its blob"), "{missing}");
        std::fs::create_dir_all(dir.path().join("blobs")).expect("blobs");
        for (_, bytes) in &blobs {
            std::fs::write(store.blob_path(&Sha256::of(bytes)), bytes).expect("blob");
        }
        let copy = find(&stores, &pin).expect("copy");
        assert_eq!(copy.manifest, manifest);
        assert_eq!(copy.media_type, registry::MANIFEST_TYPE);
        let labels: Vec<&str> = copy.blobs.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["model", "config"]);
        assert!(verify(&copy).is_ok());
        std::fs::write(store.blob_path(&Sha256::of(b"weights")), b"WEIGHTS").expect("damage");
        let (cause, _) = verify(&copy).expect_err("corrupt");
        assert!(cause.contains("corrupt"), "{cause}");

        let other = locked(b"another manifest", vec![pin_layer()]);
        let none = find(&stores, &other).expect_err("other digest");
        assert!(none.contains("no local Ollama store"), "{none}");
        let remote = locked(&manifest, Vec::new());
        assert!(
            find(&stores, &remote)
                .expect_err("no layers")
                .contains("lists no layers")
        );
    }

    #[test]
    fn the_manifest_keeps_its_own_media_type_and_layers_get_short_labels() {
        let oci = br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
        assert_eq!(
            media_type_of(oci),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(media_type_of(b"{}"), registry::MANIFEST_TYPE);
        assert_eq!(
            media_type_of(
                br#"{"mediaType":"a
b"}"#
            ),
            registry::MANIFEST_TYPE,
            "a header value is never built from a line break"
        );
        assert_eq!(label_of("application/vnd.ollama.image.params"), "params");
        assert_eq!(label_of("application/x-other"), "application/x-other");
    }

    fn pin_layer() -> LockedLayer {
        LockedLayer {
            media_type: "application/vnd.ollama.image.model".to_owned(),
            digest: Sha256::of(b"weights"),
            size: 7,
        }
    }
}
