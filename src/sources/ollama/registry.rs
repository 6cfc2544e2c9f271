//! The Ollama registry (the OCI distribution API, docs/protocols.md §3): what a tag is now.
//!
//! A tag resolves to its manifest; the sha256 of the manifest's bytes is the model's digest
//! (what `ollama list` shows), and the manifest lists the layers and the config blob. Every
//! digest, size and media type in it is validated before anything else happens, for all layers
//! at once (docs/reliability.md S2: `sha256:../../x`, 63 hex digits, negative or huge sizes are
//! refused with the manifest, never half-used). Requests go through the shared client
//! ([`crate::net::Client`]), so a `503` or a dropped connection is retried. A `401` with a bearer challenge is answered
//! once, and only when the challenge's realm is on the registry's own host: a realm elsewhere
//! would learn which models this machine pulls, or phish a credential. The challenge is read
//! by the same parser as every registry's ([`crate::registry::auth::Challenge`]).

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use serde::Deserialize;

use super::OllamaRef;
use crate::digest::Sha256;
use crate::lock::LockedLayer;
use crate::net::{SendError, error_chain};

/// The manifest media type the daemon asks for.
pub const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Largest manifest read.
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Largest layer accepted (4 TiB): anything bigger is a lie, not a model.
const MAX_LAYER: u64 = 4 << 40;
/// Most layers accepted.
const MAX_LAYERS: usize = 1024;

/// A tag's manifest, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// sha256 of the manifest bytes.
    pub digest: Sha256,
    /// The layers, then the config blob.
    pub layers: Vec<LockedLayer>,
    /// The bytes, verbatim (what Ollama stores as the manifest file).
    pub bytes: Vec<u8>,
    /// The pull token the registry issued for this repository, if it asked for one; blob
    /// requests carry it too.
    pub token: Option<crate::net::Token>,
}

#[derive(Deserialize)]
struct Wire {
    config: WireLayer,
    #[serde(default)]
    layers: Vec<WireLayer>,
}

#[derive(Deserialize)]
struct WireLayer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: i128,
}

/// Why the registry gave no usable manifest (or blob URL) for a tag.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RegistryError {
    #[error("cannot reach the registry {host}: {chain}")]
    #[diagnostic(code(modelctl::ollama::unreachable))]
    Unreachable { host: String, chain: String },
    #[error(
        "`{shown}` does not exist in the registry (HTTP 404): check the model name and tag on https://ollama.com/library"
    )]
    #[diagnostic(code(modelctl::ollama::not_found))]
    NotFound { shown: String },
    #[error("the registry answered {status} for `{shown}`")]
    #[diagnostic(code(modelctl::ollama::status))]
    Status { status: StatusCode, shown: String },
    #[error("reading the manifest of `{shown}` failed: {error}")]
    #[diagnostic(code(modelctl::ollama::read))]
    Read {
        shown: String,
        error: Box<RegistryError>,
    },
    #[error("the registry's manifest of `{shown}` is refused: {error}")]
    #[diagnostic(code(modelctl::ollama::manifest))]
    Manifest {
        shown: String,
        error: Box<RegistryError>,
    },
    #[error("cannot build the blob URL of `{name}`: {error}")]
    #[diagnostic(code(modelctl::ollama::blob_url))]
    BlobUrl {
        name: String,
        error: url::ParseError,
    },
    #[error("it is not a manifest: {0}")]
    NotAManifest(String),
    #[error("it lists {0} layers")]
    TooManyLayers(usize),
    #[error("layer digest `{digest}` is not `sha256:<64 hex>`")]
    NotSha256 { digest: String },
    #[error("layer digest `{digest}`: {error}")]
    BadDigest { digest: String, error: String },
    #[error("layer {digest} has the impossible size {size}")]
    BadSize { digest: String, size: i128 },
    #[error("layer {digest} has the media type `{media_type}`")]
    BadMediaType { digest: String, media_type: String },
    #[error("the registry {host} sent an unreadable auth challenge")]
    #[diagnostic(code(modelctl::ollama::auth))]
    Challenge { host: String },
    #[error("the registry {host}'s auth challenge has no realm")]
    #[diagnostic(code(modelctl::ollama::auth))]
    NoRealm { host: String },
    #[error("the registry {host}'s auth realm is not a URL")]
    #[diagnostic(code(modelctl::ollama::auth))]
    RealmNotUrl { host: String },
    #[error("the registry {host} asks to authenticate at another host ({realm}); refusing")]
    #[diagnostic(code(modelctl::ollama::auth))]
    ForeignRealm { host: String, realm: String },
    #[error("cannot get a registry token: {chain}")]
    #[diagnostic(code(modelctl::ollama::auth))]
    TokenUnreachable { chain: String },
    #[error("the registry {host} refused a token ({status}): the model may be private")]
    #[diagnostic(code(modelctl::ollama::auth))]
    TokenRefused { host: String, status: StatusCode },
    #[error("the registry's token answer is not JSON with a token: {0}")]
    #[diagnostic(code(modelctl::ollama::auth))]
    TokenJson(String),
    /// Reading an answer's body failed (the error chain).
    #[error("{0}")]
    Body(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

impl RegistryError {
    /// Whether the daemon may know what the registry could not say: the registry was not
    /// reached, refused, failed, or lacks the name (a model made with `ollama create`). A
    /// malformed or hostile answer, or a suspicious auth challenge, is never papered over.
    pub fn daemon_may_answer(&self) -> bool {
        self.unreachable() || matches!(self, RegistryError::NotFound { .. })
    }

    /// Whether this process could not get an answer about the name: no connection, a failing
    /// or refusing registry (the daemon may have the proxy or key this process lacks).
    pub fn unreachable(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. }
            | RegistryError::Status { .. }
            | RegistryError::TokenUnreachable { .. }
            | RegistryError::TokenRefused { .. } => true,
            RegistryError::Read { error, .. } => matches!(**error, RegistryError::Body(_)),
            _ => false,
        }
    }
}

/// Fetches and validates the manifest of `name`'s tag, through the shared client (a `503`
/// or a refused connection is retried like any request).
pub async fn manifest(
    client: &crate::net::Client,
    name: &OllamaRef,
) -> Result<Manifest, RegistryError> {
    let url = format!(
        "{}/v2/{}/{}/manifests/{}",
        name.base_url(),
        name.namespace,
        name.model,
        name.tag
    );
    let shown = name.to_string();
    let url = url.as_str();
    let send = |token: Option<String>| {
        client.send(move |c| {
            let request = c.get(url).header(ACCEPT, MANIFEST_TYPE);
            match &token {
                Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
                None => request,
            }
        })
    };
    let mut issued = None;
    let mut sent = send(None).await;
    if let Err(SendError::Status { response, .. }) = &sent
        && response.status() == StatusCode::UNAUTHORIZED
        && let Some(challenge) = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
    {
        let token = bearer_token(client, name, challenge).await?;
        sent = send(Some(token.clone())).await;
        issued = Some(crate::net::Token::new(
            token,
            format!("the registry {}", name.host),
        ));
    }
    let response = sent.map_err(|e| match e {
        SendError::Status { response, .. } if response.status() == StatusCode::NOT_FOUND => {
            RegistryError::NotFound {
                shown: shown.clone(),
            }
        }
        SendError::Status { response, .. } => RegistryError::Status {
            status: response.status(),
            shown: shown.clone(),
        },
        SendError::Transport { error, gave_up, .. } => RegistryError::Unreachable {
            host: name.host.clone(),
            chain: with_summary(error, gave_up.as_deref()),
        },
    })?;
    let bytes = read_limited(response, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| RegistryError::Read {
            shown: shown.clone(),
            error: Box::new(e),
        })?;
    let mut manifest = parse(&bytes).map_err(|e| RegistryError::Manifest {
        shown,
        error: Box::new(e),
    })?;
    manifest.token = issued;
    Ok(manifest)
}

/// An error chain, with the retry policy's summary when it gave up.
fn with_summary(error: reqwest::Error, gave_up: Option<&str>) -> String {
    let chain = error_chain(&error.without_url());
    match gave_up {
        Some(why) => format!("{chain} ({why})"),
        None => chain,
    }
}

/// Where a blob of `name`'s repository is (the registry redirects to its CDN).
pub fn blob_url(name: &OllamaRef, digest: &Sha256) -> Result<url::Url, RegistryError> {
    let text = format!(
        "{}/v2/{}/{}/blobs/sha256:{}",
        name.base_url(),
        name.namespace,
        name.model,
        digest.hex()
    );
    url::Url::parse(&text).map_err(|error| RegistryError::BlobUrl {
        name: name.to_string(),
        error,
    })
}

/// Validates manifest bytes: every layer, before any is used.
pub fn parse(bytes: &[u8]) -> Result<Manifest, RegistryError> {
    let wire: Wire =
        serde_json::from_slice(bytes).map_err(|e| RegistryError::NotAManifest(e.to_string()))?;
    if wire.layers.len() > MAX_LAYERS {
        return Err(RegistryError::TooManyLayers(wire.layers.len()));
    }
    let layers = wire
        .layers
        .iter()
        .chain(std::iter::once(&wire.config))
        .map(layer)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Manifest {
        digest: Sha256::of(bytes),
        layers,
        bytes: bytes.to_vec(),
        token: None,
    })
}

fn layer(wire: &WireLayer) -> Result<LockedLayer, RegistryError> {
    let hex = wire
        .digest
        .strip_prefix("sha256:")
        .ok_or_else(|| RegistryError::NotSha256 {
            digest: wire.digest.escape_debug().to_string(),
        })?;
    let digest = Sha256::parse(hex).map_err(|e| RegistryError::BadDigest {
        digest: wire.digest.escape_debug().to_string(),
        error: e.to_string(),
    })?;
    let size = u64::try_from(wire.size)
        .ok()
        .filter(|s| *s <= MAX_LAYER)
        .ok_or_else(|| RegistryError::BadSize {
            digest: digest.short().to_string(),
            size: wire.size,
        })?;
    let media_ok = !wire.media_type.is_empty()
        && wire.media_type.len() <= 128
        && wire
            .media_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "./+-_".contains(c));
    if !media_ok {
        return Err(RegistryError::BadMediaType {
            digest: digest.short().to_string(),
            media_type: wire.media_type.escape_debug().to_string(),
        });
    }
    Ok(LockedLayer {
        media_type: wire.media_type.clone(),
        digest,
        size,
    })
}

/// Answers a `Bearer realm=…,service=…,scope=…` challenge with an anonymous token, but only
/// from a realm on the registry's own host.
async fn bearer_token(
    client: &crate::net::Client,
    name: &OllamaRef,
    challenge: &str,
) -> Result<String, RegistryError> {
    let parsed = crate::registry::auth::Challenge::parse(challenge)
        .filter(|c| c.scheme == "bearer")
        .ok_or_else(|| RegistryError::Challenge {
            host: name.host.clone(),
        })?;
    let params = parsed.params;
    let realm = params
        .iter()
        .find(|(k, _)| k == "realm")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| RegistryError::NoRealm {
            host: name.host.clone(),
        })?;
    let realm_url = url::Url::parse(&realm).map_err(|_| RegistryError::RealmNotUrl {
        host: name.host.clone(),
    })?;
    let registry_host = name.host.split(':').next().unwrap_or(&name.host);
    if realm_url.host_str() != Some(registry_host) {
        return Err(RegistryError::ForeignRealm {
            host: name.host.clone(),
            realm: realm_url.host_str().unwrap_or("?").to_owned(),
        });
    }
    let mut realm_url = realm_url;
    realm_url
        .query_pairs_mut()
        .extend_pairs(params.iter().filter(|(k, _)| k != "realm"));
    let response = client
        .send(|c| c.get(realm_url.clone()))
        .await
        .map_err(|e| match e {
            SendError::Status { response, .. } => RegistryError::TokenRefused {
                host: name.host.clone(),
                status: response.status(),
            },
            SendError::Transport { error, gave_up, .. } => RegistryError::TokenUnreachable {
                chain: with_summary(error, gave_up.as_deref()),
            },
        })?;
    #[derive(Deserialize)]
    struct TokenReply {
        #[serde(alias = "access_token")]
        token: String,
    }
    let bytes = read_limited(response, 64 << 10).await?;
    serde_json::from_slice::<TokenReply>(&bytes)
        .map(|t| t.token)
        .map_err(|e| RegistryError::TokenJson(e.to_string()))
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, RegistryError> {
    let mut bytes = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| RegistryError::Body(error_chain(&e.without_url())))?;
        let Some(chunk) = chunk else { break };
        if bytes.len() + chunk.len() > limit {
            return Err(RegistryError::TooLarge(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_with(digest: &str, size: i128) -> Vec<u8> {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": format!("sha256:{}", "c".repeat(64)), "size": 485},
            "layers": [
                {"mediaType": "application/vnd.ollama.image.model",
                 "digest": format!("sha256:{}", "a".repeat(64)), "size": 100},
                {"mediaType": "application/vnd.ollama.image.license", "digest": digest, "size": size}
            ]
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_good_manifest_is_pinned_by_the_hash_of_its_bytes() {
        let bytes = manifest_with(&format!("sha256:{}", "b".repeat(64)), 12);
        let m = parse(&bytes).expect("valid");
        assert_eq!(m.digest, Sha256::of(&bytes));
        assert_eq!(m.layers.len(), 3, "two layers and the config");
        assert_eq!(m.layers[2].size, 485);
    }

    #[test]
    fn hostile_layers_refuse_the_whole_manifest() {
        for (digest, size) in [
            ("sha256:../../x".to_owned(), 1),
            (format!("sha256:{}", "b".repeat(63)), 1),
            (format!("sha512:{}", "b".repeat(64)), 1),
            (format!("sha256:{}", "b".repeat(64)), -1),
            (format!("sha256:{}", "b".repeat(64)), 1 << 62),
        ] {
            assert!(
                parse(&manifest_with(&digest, size)).is_err(),
                "{digest} {size}"
            );
        }
    }

    #[test]
    fn challenges_are_read_with_commas_inside_quotes() {
        let c = crate::registry::auth::Challenge::parse(
            r#"Bearer realm="https://r.example/token",service="r",scope="repository:library/m:pull,push""#,
        )
        .expect("challenge");
        assert_eq!(c.param("realm"), Some("https://r.example/token"));
        assert_eq!(c.param("scope"), Some("repository:library/m:pull,push"));
    }
}
