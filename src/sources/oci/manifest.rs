//! Reading an `oci:` artifact's manifest before any of it is trusted.
//!
//! Everything in it is checked before it is used: its media type (an image manifest, not an
//! index), at most [`MAX_LAYERS`] layers, each with a `sha256:` digest, a size in
//! `0..=`[`MAX_LAYER_BYTES`] and a well-formed media type. A raw layer is one file, named by its
//! `org.cncf.model.filepath` annotation, else its `org.opencontainers.image.title`, and that
//! name passes the rules of every model path ([`RelPath`]: no `..`, no absolute path) and of the
//! model's set of paths ([`PathSet`]: no duplicate, no two that differ only in case or
//! normalization). An uncompressed tar layer (`…tar`) holds files its entries name (read by
//! [`super::tar`]); a compressed one (`+gzip`, `+zstd`) is refused with the layer named.

use std::collections::HashMap;

use serde::Deserialize;

use super::OciError;
use crate::digest::Sha256;
use crate::lock::LockedFile;
use crate::names::{PathSet, RelPath};

/// Largest manifest read, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Most layers one artifact may have.
pub const MAX_LAYERS: usize = 4096;
/// Largest layer, in bytes (4 TiB).
pub const MAX_LAYER_BYTES: u64 = 1 << 42;

pub(super) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const FILEPATH: &str = crate::registry::modelpack::FILEPATH_ANNOTATION;
const TITLE: &str = "org.opencontainers.image.title";

/// The manifest as the registry sent it, before any of it is trusted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<serde_json::Value>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

/// A layer once checked, before its kind is known.
struct Checked {
    digest: Sha256,
    size: u64,
    media_type: String,
    /// The file a raw layer is; `None` for a tar layer (its entries name its files).
    path: Option<RelPath>,
}

/// The files of a manifest, as its checked layers give them.
#[derive(Debug, Default)]
pub(super) struct Layers {
    /// One file per raw layer, its sha256 the layer's digest, sorted by path.
    pub files: Vec<LockedFile>,
    /// The tar layers, in the manifest's order; their files are known once they are read.
    pub archives: Vec<TarLayer>,
    /// The raw files' paths, which the tar layers' files must not collide with.
    pub paths: PathSet,
}

/// A tar layer of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TarLayer {
    /// Its place among the manifest's layers, for messages.
    pub index: usize,
    pub digest: Sha256,
    pub size: u64,
    pub media_type: String,
}

/// The layers of a manifest, each checked (see the module's rules).
pub(super) fn layers_of(bytes: &[u8], reference: &str) -> Result<Layers, OciError> {
    let refuse = |why: String| OciError::Manifest {
        reference: reference.to_owned(),
        why,
    };
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| refuse(format!("it is not a JSON manifest: {e}")))?;
    if raw.manifests.is_some() {
        return Err(refuse(
            "it is an index of manifests (one per platform), not one artifact; name one manifest by its `@sha256:` digest".to_owned(),
        ));
    }
    if raw.schema_version.as_ref().and_then(|v| v.as_u64()) != Some(2) {
        return Err(refuse("its `schemaVersion` is not 2".to_owned()));
    }
    match raw.media_type.as_deref() {
        None | Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => {}
        Some(other) => {
            return Err(refuse(format!(
                "its media type is `{}`, not an image manifest",
                other.escape_debug()
            )));
        }
    }
    let raw_layers = raw.layers.unwrap_or_default();
    if raw_layers.is_empty() {
        return Err(refuse("it has no layers, so no files".to_owned()));
    }
    if raw_layers.len() > MAX_LAYERS {
        return Err(refuse(format!(
            "it has {} layers; at most {MAX_LAYERS} are read",
            raw_layers.len()
        )));
    }
    let mut layers = Layers::default();
    let mut seen = std::collections::HashSet::new();
    for (index, descriptor) in raw_layers.iter().enumerate() {
        let layer = check_layer(descriptor, index, reference)?;
        let Some(path) = layer.path else {
            layers.archives.push(TarLayer {
                index,
                digest: layer.digest,
                size: layer.size,
                media_type: layer.media_type,
            });
            continue;
        };
        let refuse_path = |why: String, help: &str| OciError::Layer {
            reference: reference.to_owned(),
            index,
            digest: format!("sha256:{}", layer.digest.hex()),
            why,
            help: help.to_owned(),
        };
        if !seen.insert(path.clone()) {
            return Err(refuse_path(
                format!("another layer is already the file `{path}`"),
                "each file of a model is one layer; push the artifact again without the duplicate",
            ));
        }
        layers.paths.insert(&path).map_err(|c| {
            refuse_path(
                format!("its file collides with another: {c}"),
                "rename one of the files and push the artifact again: on macOS and Windows they would be one file",
            )
        })?;
        layers.files.push(LockedFile {
            path,
            size: layer.size,
            sha256: Some(layer.digest),
            md5: None,
            git_oid: None,
        });
    }
    layers.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(layers)
}

/// One layer's digest, size, media type and (for a raw layer) file name, each checked.
fn check_layer(d: &RawDescriptor, index: usize, reference: &str) -> Result<Checked, OciError> {
    let shown = d
        .digest
        .as_deref()
        .map_or_else(|| "no digest".to_owned(), |t| t.escape_debug().to_string());
    let refuse = |why: String, help: &str| OciError::Layer {
        reference: reference.to_owned(),
        index,
        digest: shown.clone(),
        why,
        help: help.to_owned(),
    };
    const REPUSH: &str =
        "the artifact is malformed; push it again with `modelctl push` or `oras push`";
    let digest = d
        .digest
        .as_deref()
        .and_then(|t| t.strip_prefix("sha256:"))
        .filter(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
        .and_then(|hex| Sha256::parse(hex).ok())
        .ok_or_else(|| {
            refuse(
                "its digest is not `sha256:` and 64 lowercase hex digits".to_owned(),
                REPUSH,
            )
        })?;
    let size = match &d.size {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| refuse("its size is not a non-negative integer".to_owned(), REPUSH))?;
    if size > MAX_LAYER_BYTES {
        return Err(refuse(
            format!("its size {size} is larger than {MAX_LAYER_BYTES} bytes"),
            REPUSH,
        ));
    }
    let media_type = d.media_type.as_deref().unwrap_or_default();
    let is_tar = check_media_type(media_type).map_err(|(why, help)| refuse(why, help))?;
    let annotations = d.annotations.as_ref();
    let name = annotations
        .and_then(|a| a.get(FILEPATH))
        .or_else(|| annotations.and_then(|a| a.get(TITLE)));
    let checked = |path| Checked {
        digest,
        size,
        media_type: media_type.to_owned(),
        path,
    };
    if is_tar {
        // Its entries name its files, relative to the model's root (as `modctl` writes them);
        // the annotation names what was packed and places nothing.
        return Ok(checked(None));
    }
    let name = name.ok_or_else(|| {
        refuse(
            format!("it has neither a `{FILEPATH}` nor an `{TITLE}` annotation, so it names no file"),
            "push each file as a layer annotated with its path (`modelctl push` and `oras push` do)",
        )
    })?;
    let path = RelPath::parse(name).map_err(|e| {
        refuse(
            format!("its file name `{}` is not usable: {e}", name.escape_debug()),
            "file names are relative paths inside the model, with no `..`; push the artifact again with safe names",
        )
    })?;
    Ok(checked(Some(path)))
}

/// Whether a layer's media type is one modelctl can store: well-formed and not compressed.
/// Returns whether it is an (uncompressed) tar archive; on refusal: why, and the help.
fn check_media_type(media_type: &str) -> Result<bool, (String, &'static str)> {
    let well_formed = media_type.len() <= 255
        && media_type.split_once('/').is_some_and(|(kind, sub)| {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
            };
            ok(kind) && ok(sub)
        });
    if !well_formed {
        return Err((
            format!(
                "its media type `{}` is not `type/subtype`",
                media_type.escape_debug()
            ),
            "the artifact is malformed; push it again with `modelctl push` or `oras push`",
        ));
    }
    let lower = media_type.to_ascii_lowercase();
    let subtype = lower.split_once('/').map_or("", |(_, sub)| sub);
    if ["gzip", "zstd", "bzip2", "xz", "lz4"].iter().any(|c| {
        lower.contains(&format!("+{c}"))
            || lower.ends_with(&format!(".{c}"))
            || subtype == *c
            || subtype == format!("x-{c}")
    }) || lower.ends_with("tar.gz")
        || lower.ends_with(".tgz")
    {
        return Err((
            format!(
                "its media type `{media_type}` is a compressed layer, which modelctl does not decompress"
            ),
            "push the files as raw layers (`application/vnd.cncf.model.weight.v1.raw`, as `modelctl push` writes them, or `oras push REF file:application/vnd.cncf.model.weight.v1.raw`) or as an uncompressed tar layer (`…weight.v1.tar`): weights barely compress, and a raw layer's digest is the file's own",
        ));
    }
    Ok(lower.ends_with(".tar")
        || lower.ends_with("+tar")
        || lower.ends_with("/x-tar")
        || lower.ends_with("/tar")
        || lower.contains(".tar."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(
        media_type: &str,
        digest: &str,
        size: serde_json::Value,
        name: Option<(&str, &str)>,
    ) -> serde_json::Value {
        let mut l = serde_json::json!({"mediaType": media_type, "digest": digest, "size": size});
        if let Some((key, value)) = name {
            l["annotations"] = serde_json::json!({ key: value });
        }
        l
    }

    fn manifest(layers: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
            "layers": layers,
        })
        .to_string()
        .into_bytes()
    }

    fn digest(n: u8) -> String {
        format!("sha256:{}", Sha256::of(&[n]).hex())
    }

    const RAW: &str = "application/vnd.cncf.model.weight.v1.raw";

    #[test]
    fn raw_layers_become_files_by_filepath_then_title() {
        let bytes = manifest(vec![
            layer(RAW, &digest(1), 10.into(), Some((FILEPATH, "unet/w.bin"))),
            layer(
                "application/octet-stream",
                &digest(2),
                0.into(),
                Some((TITLE, "README.md")),
            ),
        ]);
        let layers = layers_of(&bytes, "r/ns/m:t").expect("layers");
        let files = &layers.files;
        let paths: Vec<&str> = files.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(paths, ["README.md", "unet/w.bin"]);
        assert_eq!(files[1].size, 10);
        let sha = files[1].sha256.expect("sha256");
        assert_eq!(format!("sha256:{}", sha.hex()), digest(1));
        assert!(layers.archives.is_empty());
    }

    #[test]
    fn uncompressed_tar_layers_are_archives_named_or_not() {
        let bytes = manifest(vec![
            layer(RAW, &digest(1), 10.into(), Some((FILEPATH, "w.bin"))),
            layer(
                "application/vnd.cncf.model.weight.v1.tar",
                &digest(2),
                3072.into(),
                Some((FILEPATH, "tokenizer")),
            ),
            layer("application/x-tar", &digest(3), 1024.into(), None),
        ]);
        let layers = layers_of(&bytes, "r/ns/m:t").expect("layers");
        assert_eq!(layers.files.len(), 1);
        let archives: Vec<(usize, u64)> =
            layers.archives.iter().map(|a| (a.index, a.size)).collect();
        assert_eq!(archives, [(1, 3072), (2, 1024)]);
        assert_eq!(
            layers.archives[0].media_type,
            "application/vnd.cncf.model.weight.v1.tar"
        );
    }

    #[test]
    fn hostile_layers_are_refused_with_the_layer_named() {
        let name = Some((FILEPATH, "w.bin"));
        for (bad, why) in [
            (
                layer(RAW, &digest(1), 1.into(), Some((FILEPATH, "../escape"))),
                "not usable",
            ),
            (
                layer(RAW, &digest(1), 1.into(), Some((TITLE, "/etc/passwd"))),
                "absolute",
            ),
            (layer(RAW, &digest(1), (-1).into(), name), "non-negative"),
            (
                layer(RAW, &digest(1), serde_json::json!(1u64 << 50), name),
                "larger than",
            ),
            (
                layer(RAW, &digest(1), serde_json::json!(1.5), name),
                "non-negative integer",
            ),
            (layer(RAW, "sha256:abc", 1.into(), name), "64 lowercase"),
            (
                layer(RAW, &digest(1).to_uppercase(), 1.into(), name),
                "64 lowercase",
            ),
            (
                layer(RAW, &format!("sha512:{}", "a".repeat(128)), 1.into(), name),
                "sha256",
            ),
            (layer(RAW, &digest(1), 1.into(), None), "neither"),
            (
                layer(
                    "application/vnd.cncf.model.weight.v1.tar+gzip",
                    &digest(1),
                    1.into(),
                    name,
                ),
                "compressed",
            ),
            (
                layer(
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                    &digest(1),
                    1.into(),
                    name,
                ),
                "compressed",
            ),
            (
                layer("application/gzip", &digest(1), 1.into(), name),
                "compressed",
            ),
            (
                layer("not a type", &digest(1), 1.into(), name),
                "type/subtype",
            ),
        ] {
            let err =
                layers_of(&manifest(vec![bad.clone()]), "r/ns/m:t").expect_err(&bad.to_string());
            let text = err.to_string();
            assert!(text.contains("layer 0"), "{text}");
            assert!(text.contains(why), "{why}: {text}");
            assert!(miette::Diagnostic::help(&err).is_some(), "{text}");
        }
    }

    #[test]
    fn duplicate_and_colliding_names_are_refused() {
        let twice = manifest(vec![
            layer(RAW, &digest(1), 1.into(), Some((FILEPATH, "w.bin"))),
            layer(RAW, &digest(2), 1.into(), Some((TITLE, "w.bin"))),
        ]);
        let err = layers_of(&twice, "r").expect_err("duplicate").to_string();
        assert!(err.contains("layer 1") && err.contains("already"), "{err}");
        let cased = manifest(vec![
            layer(RAW, &digest(1), 1.into(), Some((FILEPATH, "Unet/w.bin"))),
            layer(RAW, &digest(2), 1.into(), Some((FILEPATH, "unet/x.bin"))),
        ]);
        let err = layers_of(&cased, "r").expect_err("case").to_string();
        assert!(err.contains("differ only in case"), "{err}");
    }

    #[test]
    fn manifests_that_are_not_one_artifact_are_refused() {
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []});
        let err = layers_of(index.to_string().as_bytes(), "r")
            .expect_err("index")
            .to_string();
        assert!(err.contains("index"), "{err}");
        let err = layers_of(b"<html>", "r").expect_err("json").to_string();
        assert!(err.contains("not a JSON manifest"), "{err}");
        let err = layers_of(&manifest(vec![]), "r")
            .expect_err("empty")
            .to_string();
        assert!(err.contains("no layers"), "{err}");
        let many = vec![layer(RAW, &digest(1), 1.into(), Some((FILEPATH, "w"))); MAX_LAYERS + 1];
        let err = layers_of(&manifest(many), "r")
            .expect_err("many")
            .to_string();
        assert!(err.contains("at most"), "{err}");
    }
}
