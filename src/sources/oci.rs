//! The `oci:` source: an artifact in an OCI registry (a ModelPack artifact `modelctl push`
//! wrote, or files pushed by `oras`), pinned to the sha256 of its manifest's bytes.
//!
//! Resolving `GET`s the manifest (`Accept`: the OCI image manifest and the docker v2 one),
//! answering a `401` as `push` does ([`crate::registry::auth`]: anonymous first, a bearer
//! token only from a realm on the registry's own host, Basic only over https or to a loopback
//! address), with the `docker login` of the registry's host (never `MODELCTL_REGISTRY_AUTH`,
//! which is for registries the environment names, as mirrors have it: a models.yaml from
//! elsewhere must not be able to send the node's credential to a host of its choosing). A tag
//! pins the digest of the bytes it named; a `@sha256:` reference must hash to itself.
//!
//! Everything in the manifest is checked before any of it is used: its size (at most 4 MiB),
//! its media type (an image manifest, not an index), at most [`MAX_LAYERS`] layers, each with
//! a `sha256:` digest, a size in `0..=`[`MAX_LAYER_BYTES`] and a well-formed media type. Each
//! layer is one file: a raw layer, named by its `org.cncf.model.filepath` annotation, else its
//! `org.opencontainers.image.title`, and that name passes the rules of every model path
//! ([`RelPath`]: no `..`, no absolute path) and of the model's set of paths ([`PathSet`]: no
//! duplicate, no two that differ only in case or normalization). A layer without a name, or
//! one that is an archive (`…tar`) or compressed (`+gzip`, `+zstd`), is refused with the
//! layer named: only raw layers are supported for now. A file's sha256 is its layer's digest,
//! so `apply` downloads `GET /v2/<repo>/blobs/sha256:<hex>` through the one download engine,
//! verified against the lock like any file, and mirrors find it by that digest.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use serde::Deserialize;

use super::ResolveContext;
use crate::digest::Sha256;
use crate::lock::{LockedFile, LockedSource};
use crate::manifest::OciSource;
use crate::names::{PathSet, RelPath};
use crate::net::{SendError, Token, error_chain};
use crate::registry::Target;
use crate::registry::auth::{self, AuthError, Challenge, Credentials};
use crate::registry::reference::{OciRef, Reference};
use crate::registry::session::Session;

/// Largest manifest read, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Most layers one artifact may have.
pub const MAX_LAYERS: usize = 4096;
/// Largest layer, in bytes (4 TiB).
pub const MAX_LAYER_BYTES: u64 = 1 << 42;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const FILEPATH: &str = crate::registry::modelpack::FILEPATH_ANNOTATION;
const TITLE: &str = "org.opencontainers.image.title";

/// Why an `oci:` source cannot be pinned.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum OciError {
    #[error("cannot resolve `{reference}` while offline")]
    #[diagnostic(
        code(modelctl::oci::offline),
        help("run without --offline/--frozen once to pin it in models.lock")
    )]
    Offline { reference: String },
    #[error("`{reference}` is not an OCI reference: {why}")]
    #[diagnostic(
        code(modelctl::oci::reference),
        help("write it as `registry.example.com/team/name:tag` or `…/name@sha256:<64 hex>`")
    )]
    Reference { reference: String, why: String },
    #[error("the login for `{reference}`: {source}")]
    #[diagnostic(code(modelctl::oci::auth))]
    Auth {
        reference: String,
        #[source]
        source: AuthError,
        #[help]
        help: Option<String>,
    },
    #[error("cannot reach {url}: {chain}")]
    #[diagnostic(
        code(modelctl::oci::unreachable),
        help("check the registry's address and that it is up, then run the command again")
    )]
    Unreachable { url: String, chain: String },
    #[error("{url} answered {status}{detail}")]
    #[diagnostic(code(modelctl::oci::status))]
    Status {
        url: String,
        status: StatusCode,
        detail: String,
        #[help]
        help: String,
    },
    #[error("the manifest of `{reference}` is refused: {why}")]
    #[diagnostic(
        code(modelctl::oci::manifest),
        help(
            "modelctl reads one OCI image manifest of raw layers (what `modelctl push` and `oras push` write); check what the reference names"
        )
    )]
    Manifest { reference: String, why: String },
    #[error("layer {index} ({digest}) of `{reference}` is refused: {why}")]
    #[diagnostic(code(modelctl::oci::layer))]
    Layer {
        reference: String,
        index: usize,
        digest: String,
        why: String,
        #[help]
        help: String,
    },
}

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

/// One layer once checked: a file of the model.
#[derive(Debug, Clone, PartialEq)]
struct Layer {
    path: RelPath,
    digest: Sha256,
    size: u64,
}

/// Pins an `oci:` source: its manifest's digest and a file per raw layer.
pub async fn resolve(
    ctx: &ResolveContext,
    source: &OciSource,
) -> Result<(LockedSource, Vec<LockedFile>), OciError> {
    let given = source.oci.clone();
    let reference = OciRef::parse(&given).map_err(|why| OciError::Reference {
        reference: given.clone(),
        why,
    })?;
    if ctx.offline {
        return Err(OciError::Offline { reference: given });
    }
    let credentials = auth::find(None, ctx.docker_config.as_deref(), &reference.target.host)
        .map_err(|e| auth_error(&given, e))?;
    let bytes = get_manifest(ctx, &reference, credentials.as_ref()).await?;
    let digest = Sha256::of(&bytes);
    if let Reference::Digest(pinned) = &reference.reference
        && *pinned != digest
    {
        return Err(OciError::Manifest {
            reference: given,
            why: format!(
                "its bytes hash to sha256:{}, not the sha256:{} the reference names",
                digest.hex(),
                pinned.hex()
            ),
        });
    }
    let layers = layers_of(&bytes, &given)?;
    let files = layers
        .into_iter()
        .map(|l| LockedFile {
            path: l.path,
            size: l.size,
            sha256: Some(l.digest),
            md5: None,
            git_oid: None,
        })
        .collect();
    Ok((LockedSource::Oci { oci: given, digest }, files))
}

/// The digest `reference`'s tag names now (for drift), or the error that says why not.
pub async fn current_digest(ctx: &ResolveContext, source: &OciSource) -> Result<Sha256, OciError> {
    match resolve(ctx, source).await? {
        (LockedSource::Oci { digest, .. }, _) => Ok(digest),
        _ => Err(OciError::Reference {
            reference: source.oci.clone(),
            why: "it resolved to another kind of source".to_owned(),
        }),
    }
}

fn auth_error(reference: &str, source: AuthError) -> OciError {
    let help = miette::Diagnostic::help(&source).map(|h| h.to_string());
    OciError::Auth {
        reference: reference.to_owned(),
        source,
        help,
    }
}

/// `GET` of the manifest, answering one `401`; the body is read up to the size limit.
async fn get_manifest(
    ctx: &ResolveContext,
    reference: &OciRef,
    credentials: Option<&Credentials>,
) -> Result<Vec<u8>, OciError> {
    let given = reference_text(reference);
    let url = reference.manifest_url().map_err(|e| OciError::Reference {
        reference: given.clone(),
        why: e.to_string(),
    })?;
    let shown = crate::net::SafeUrl::from(&url).to_string();
    let build = |token: Option<Token>| {
        let url = url.clone();
        move |c: &reqwest::Client| {
            let request = c
                .get(url.clone())
                .header(ACCEPT, format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"));
            match &token {
                Some(t) => request.header(AUTHORIZATION, t.expose()),
                None => request,
            }
        }
    };
    let mut sent = ctx.client.send(build(None)).await;
    if let Err(SendError::Status { response, .. }) = &sent
        && response.status() == StatusCode::UNAUTHORIZED
        && let Some(challenge) = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
    {
        let token = auth::answer(&ctx.client, &reference.target, &challenge, &[], credentials)
            .await
            .map_err(|e| auth_error(&given, e))?;
        sent = ctx.client.send(build(Some(token))).await;
    }
    let response = match sent {
        Ok(response) => response,
        Err(SendError::Status { response, why }) => {
            return Err(status_error(&shown, &given, *response, &why).await);
        }
        Err(SendError::Transport { error, .. }) => {
            return Err(OciError::Unreachable {
                url: shown,
                chain: error_chain(&error.without_url()),
            });
        }
    };
    read_bounded(response, &given, &shown).await
}

fn reference_text(reference: &OciRef) -> String {
    format!(
        "{}/{}{}",
        reference.target.host,
        reference.repository(),
        match &reference.reference {
            Reference::Tag(t) => format!(":{t}"),
            Reference::Digest(d) => format!("@sha256:{}", d.hex()),
        }
    )
}

/// A final refusal, with the registry's own error code and message when it sent one.
async fn status_error(
    url: &str,
    reference: &str,
    response: reqwest::Response,
    why: &str,
) -> OciError {
    let (status, detail) = crate::registry::session::refusal(response, why).await;
    let help = match status.as_u16() {
        401 | 403 => format!(
            "log in with `docker login {}` (the login stored in ~/.docker/config.json is used), and check it may pull this repository",
            reference.split('/').next().unwrap_or(reference)
        ),
        404 => format!("check that `{reference}` exists (the repository, and its tag or digest)"),
        _ => "the registry refused the request; its answer is above".to_owned(),
    };
    OciError::Status {
        url: url.to_owned(),
        status,
        detail,
        help,
    }
}

/// The body, refused once it passes [`MAX_MANIFEST_BYTES`].
async fn read_bounded(
    mut response: reqwest::Response,
    reference: &str,
    url: &str,
) -> Result<Vec<u8>, OciError> {
    let too_big = || OciError::Manifest {
        reference: reference.to_owned(),
        why: format!("it is larger than {MAX_MANIFEST_BYTES} bytes"),
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_MANIFEST_BYTES {
                    return Err(too_big());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(e) => {
                return Err(OciError::Unreachable {
                    url: url.to_owned(),
                    chain: error_chain(&e.without_url()),
                });
            }
        }
    }
}

/// The files of a manifest, each layer checked (see the module's rules), sorted by path.
fn layers_of(bytes: &[u8], reference: &str) -> Result<Vec<Layer>, OciError> {
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
    let mut paths = PathSet::default();
    let mut seen = std::collections::HashSet::new();
    let mut layers = Vec::with_capacity(raw_layers.len());
    for (index, descriptor) in raw_layers.iter().enumerate() {
        let layer = check_layer(descriptor, index, reference)?;
        let refuse_path = |why: String, help: &str| OciError::Layer {
            reference: reference.to_owned(),
            index,
            digest: format!("sha256:{}", layer.digest.hex()),
            why,
            help: help.to_owned(),
        };
        if !seen.insert(layer.path.clone()) {
            return Err(refuse_path(
                format!("another layer is already the file `{}`", layer.path),
                "each file of a model is one layer; push the artifact again without the duplicate",
            ));
        }
        paths.insert(&layer.path).map_err(|c| {
            refuse_path(
                format!("its file collides with another: {c}"),
                "rename one of the files and push the artifact again: on macOS and Windows they would be one file",
            )
        })?;
        layers.push(layer);
    }
    layers.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(layers)
}

/// One layer's digest, size, media type and file name, each checked.
fn check_layer(d: &RawDescriptor, index: usize, reference: &str) -> Result<Layer, OciError> {
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
    check_media_type(media_type).map_err(|(why, help)| refuse(why, help))?;
    let annotations = d.annotations.as_ref();
    let name = annotations
        .and_then(|a| a.get(FILEPATH))
        .or_else(|| annotations.and_then(|a| a.get(TITLE)))
        .ok_or_else(|| {
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
    Ok(Layer { path, digest, size })
}

/// Whether a layer's media type is a raw file modelctl can store: well-formed, neither an
/// archive nor compressed. On refusal: why, and the help.
fn check_media_type(media_type: &str) -> Result<(), (String, &'static str)> {
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
    const SUPPORTED: &str = "only raw (unarchived, uncompressed) layers are supported, such as `application/vnd.cncf.model.weight.v1.raw` as `modelctl push` writes them; push each file as its own raw layer (`oras push REF file:application/vnd.cncf.model.weight.v1.raw`)";
    if ["gzip", "zstd", "bzip2", "xz", "lz4"]
        .iter()
        .any(|c| lower.contains(&format!("+{c}")) || lower.ends_with(&format!(".{c}")))
        || lower.ends_with("tar.gz")
        || lower.ends_with(".tgz")
    {
        return Err((
            format!("its media type `{media_type}` is a compressed layer"),
            SUPPORTED,
        ));
    }
    if lower.ends_with(".tar") || lower.ends_with("+tar") || lower.contains(".tar.") {
        return Err((
            format!(
                "its media type `{media_type}` is a tar archive, which modelctl does not extract yet"
            ),
            SUPPORTED,
        ));
    }
    Ok(())
}

/// Where a locked file of an `oci:` model is fetched: its blob in the reference's repository.
pub fn blob_of(source: &OciSource, digest: &Sha256) -> Result<(url::Url, OciBlob), String> {
    let reference = OciRef::parse(&source.oci)?;
    let url = reference.blob_url(digest).map_err(|e| e.to_string())?;
    Ok((
        url,
        OciBlob {
            target: reference.target,
        },
    ))
}

/// The registry and repository a blob is fetched from (the target's namespace is the
/// repository), for the token its download needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciBlob {
    pub target: Target,
}

/// The registries of the `oci:` models of one apply: a session per registry and repository,
/// so the token one blob earned serves the others.
pub struct Pulls {
    client: crate::net::Client,
    docker_config: Option<PathBuf>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Pulls {
    pub fn new(client: crate::net::Client, docker_config: Option<PathBuf>) -> Self {
        Self {
            client,
            docker_config,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The `Authorization` a download of `digest` from `blob` needs (`None`: anonymous is
    /// enough), earned by a `HEAD` of the blob that also shows the registry still has it.
    pub async fn authorization(
        &self,
        blob: &OciBlob,
        digest: &Sha256,
    ) -> Result<Option<Token>, String> {
        let repo = blob.target.namespace.clone();
        let session = self.session(blob)?;
        match session.has_blob(&repo, digest).await {
            Ok(true) => Ok(session.authorization(&repo)),
            Ok(false) => Err(format!(
                "{} no longer has blob sha256:{} in `{repo}`",
                blob.target.host,
                digest.hex()
            )),
            Err(e) => Err(format!("{e}; {}", e.help())),
        }
    }

    fn session(&self, blob: &OciBlob) -> Result<Arc<Session>, String> {
        let key = blob.target.url_text();
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| "the registry sessions are unusable".to_owned())?;
        if let Some(session) = sessions.get(&key) {
            return Ok(session.clone());
        }
        let credentials = auth::find(None, self.docker_config.as_deref(), &blob.target.host)
            .map_err(|e| e.to_string())?;
        let session = Arc::new(Session::new(
            self.client.clone(),
            blob.target.clone(),
            credentials,
        ));
        sessions.insert(key, session.clone());
        Ok(session)
    }
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
        let paths: Vec<&str> = layers.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(paths, ["README.md", "unet/w.bin"]);
        assert_eq!(layers[1].size, 10);
        assert_eq!(format!("sha256:{}", layers[1].digest.hex()), digest(1));
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
                layer(
                    "application/vnd.cncf.model.weight.v1.tar",
                    &digest(1),
                    1.into(),
                    name,
                ),
                "tar archive",
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
