//! The `oci:` source: an artifact in an OCI registry (a ModelPack artifact `modelctl push`
//! wrote, or files pushed by `oras`), pinned to the sha256 of its manifest's bytes.
//!
//! Resolving `GET`s the manifest (`Accept`: the OCI image manifest and the docker v2 one)
//! through a registry [`Session`], which answers a `401` as it does for `push` and mirrors
//! ([`crate::registry::auth`]: anonymous first, a bearer token only from a realm on the
//! registry's own host, Basic only over https or to a loopback address), with the `docker
//! login` of the registry's host (never `MODELCTL_REGISTRY_AUTH`,
//! which is for registries the environment names, as mirrors have it: a models.yaml from
//! elsewhere must not be able to send the node's credential to a host of its choosing). A tag
//! pins the digest of the bytes it named; a `@sha256:` reference must hash to itself.
//!
//! The manifest is checked before any of it is used ([`manifest`]). A raw layer is one file,
//! its sha256 the layer's digest. An uncompressed tar layer is downloaded while locking (through
//! the same session), its bytes hashed against its digest while [`tar::list`] checks every
//! entry (docs/reliability.md S6) and hashes each file; the lock records each file with its own
//! sha256 and the layer with the files it holds ([`crate::lock::LockedArchive`]). `apply`
//! downloads blobs through the one download engine ([`pulls`]), verified against the lock like
//! any file, and mirrors find each file by its own sha256.

pub mod listing;
pub mod manifest;
pub mod pulls;
pub mod tar;

pub use manifest::{MAX_LAYER_BYTES, MAX_LAYERS, MAX_MANIFEST_BYTES};
pub use pulls::{OciBlob, Pulls, blob_of};

use reqwest::StatusCode;

use super::ResolveContext;
use crate::digest::Sha256;
use crate::lock::{LockedFile, LockedSource};
use crate::manifest::OciSource;
use crate::net::error_chain;
use crate::registry::auth::{self, AuthError};
use crate::registry::reference::{OciRef, Reference};
use crate::registry::session::{MANIFEST_TYPES, Session, SessionError};
use manifest::layers_of;

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
            "modelctl reads one OCI image manifest whose layers are raw files (what `modelctl push` and `oras push` write) or uncompressed tar archives of files; check what the reference names"
        )
    )]
    Manifest { reference: String, why: String },
    #[error("layer {index} of `{reference}`: {source}")]
    #[diagnostic(code(modelctl::oci::tar))]
    Tar {
        reference: String,
        index: usize,
        #[source]
        source: Box<tar::TarError>,
        #[help]
        help: Option<String>,
    },
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

/// Pins an `oci:` source: its manifest's digest, a file per raw layer, and the files of each
/// tar layer with the layer that holds them.
pub async fn resolve(
    ctx: &ResolveContext,
    source: &OciSource,
) -> Result<(LockedSource, Vec<LockedFile>), OciError> {
    let (reference, given) = reference_of(ctx, source)?;
    let (manifest, digest, session) = pinned_manifest(ctx, &reference, &given).await?;
    let mut layers = layers_of(&manifest, &given)?;
    let mut files = std::mem::take(&mut layers.files);
    let mut archives = Vec::with_capacity(layers.archives.len());
    for layer in &layers.archives {
        let listed =
            listing::list_layer(&session, &reference, &given, layer, &mut layers.paths).await?;
        archives.push(crate::lock::LockedArchive {
            media_type: layer.media_type.clone(),
            digest: layer.digest,
            size: layer.size,
            files: listed.iter().map(|f| f.path.clone()).collect(),
        });
        files.extend(listed.into_iter().map(|f| LockedFile {
            path: f.path,
            size: f.size,
            sha256: Some(f.sha256),
            md5: None,
            git_oid: None,
        }));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    check_tree(&files).map_err(|why| OciError::Manifest {
        reference: given.clone(),
        why,
    })?;
    let source = LockedSource::Oci {
        oci: given,
        digest,
        archives,
    };
    Ok((source, files))
}

/// The manifest `reference` names, with its digest (a `@sha256:` reference must hash to
/// itself) and the registry session that fetched it, which holds the token its blobs need.
async fn pinned_manifest(
    ctx: &ResolveContext,
    reference: &OciRef,
    given: &str,
) -> Result<(Vec<u8>, Sha256, Session), OciError> {
    let credentials = auth::find(None, ctx.docker_config.as_deref(), &reference.target.host)
        .map_err(|e| auth_error(given, e))?;
    let session = Session::new(ctx.client.clone(), reference.target.clone(), credentials);
    let repo = reference.repository();
    let path = format!("/v2/{repo}/manifests/{}", reference.reference_text());
    let response = session
        .get(repo, &path, Some(MANIFEST_TYPES))
        .await
        .map_err(|e| registry_error(reference, given, e))?;
    let bytes = read_bounded(response, given, &reference.target.host).await?;
    let digest = Sha256::of(&bytes);
    if let Reference::Digest(pinned) = &reference.reference
        && *pinned != digest
    {
        return Err(OciError::Manifest {
            reference: given.to_owned(),
            why: format!(
                "its bytes hash to sha256:{}, not the sha256:{} the reference names",
                digest.hex(),
                pinned.hex()
            ),
        });
    }
    Ok((bytes, digest, session))
}

/// Whether the files, sorted by path, make one tree: no path twice (a raw layer and a tar
/// entry, or two tar layers) and none that is also another's folder.
fn check_tree(files: &[LockedFile]) -> Result<(), String> {
    let paths: std::collections::BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    if paths.len() != files.len() {
        let twice = files
            .windows(2)
            .find(|w| w[0].path == w[1].path)
            .map_or_else(String::new, |w| w[0].path.to_string());
        return Err(format!(
            "two of its layers hold the file `{twice}`; each file of a model comes from one layer"
        ));
    }
    for file in files {
        let text = file.path.as_str();
        if let Some((i, _)) = text
            .match_indices('/')
            .find(|(i, _)| paths.contains(&text[..*i]))
        {
            return Err(format!(
                "`{}` is a file of one layer and a folder of `{text}` in another",
                &text[..i]
            ));
        }
    }
    Ok(())
}

/// The digest `reference`'s tag names now (for drift), or the error that says why not. Only
/// the manifest is fetched.
pub async fn current_digest(ctx: &ResolveContext, source: &OciSource) -> Result<Sha256, OciError> {
    let (reference, given) = reference_of(ctx, source)?;
    let (_, digest, _) = pinned_manifest(ctx, &reference, &given).await?;
    Ok(digest)
}

/// The source's reference, parsed, with its text; refused offline, where no registry is asked.
fn reference_of(ctx: &ResolveContext, source: &OciSource) -> Result<(OciRef, String), OciError> {
    let given = source.oci.clone();
    let reference = OciRef::parse(&given).map_err(|why| OciError::Reference {
        reference: given.clone(),
        why,
    })?;
    if ctx.offline {
        return Err(OciError::Offline { reference: given });
    }
    Ok((reference, given))
}

fn auth_error(reference: &str, source: AuthError) -> OciError {
    let help = miette::Diagnostic::help(&source).map(|h| h.to_string());
    OciError::Auth {
        reference: reference.to_owned(),
        source,
        help,
    }
}

/// A registry call's failure, said for `given` (the reference as models.yaml writes it), with
/// the fix.
fn registry_error(reference: &OciRef, given: &str, error: SessionError) -> OciError {
    match error {
        SessionError::Auth(source) => auth_error(given, source),
        SessionError::Status {
            what,
            status,
            detail,
        } => OciError::Status {
            url: what,
            status,
            detail,
            help: match status.as_u16() {
                401 | 403 => format!(
                    "log in with `docker login {}` (the login stored in ~/.docker/config.json is used), and check it may pull this repository",
                    reference.target.host
                ),
                404 => {
                    format!("check that `{given}` exists (the repository, and its tag or digest)")
                }
                _ => "the registry refused the request; its answer is above".to_owned(),
            },
        },
        SessionError::Unreachable { url, chain } => OciError::Unreachable { url, chain },
        other => OciError::Unreachable {
            url: reference.target.host.clone(),
            chain: other.to_string(),
        },
    }
}

/// The body, refused once it passes [`MAX_MANIFEST_BYTES`]; `host` is named if it is cut.
async fn read_bounded(
    mut response: reqwest::Response,
    reference: &str,
    host: &str,
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
                    url: host.to_owned(),
                    chain: error_chain(&e.without_url()),
                });
            }
        }
    }
}
