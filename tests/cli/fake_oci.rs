//! An OCI registry in this process, for what the real one will not do: fixed manifests and
//! blobs by path (replaceable while it runs, to serve other bytes than a lock pinned),
//! optionally behind a bearer challenge, with a log of every request; and the manifests and
//! projects the `oci:` tests build on it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::{Project, sha256_hex};

pub const RAW: &str = "application/vnd.cncf.model.weight.v1.raw";
pub const TAR: &str = "application/vnd.cncf.model.weight.v1.tar";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A registry in this process: fixed manifests and blobs by path, optionally behind a bearer
/// challenge whose token needs `user:pw`; it logs each request with its `Authorization` scheme.
pub struct FakeRegistry {
    pub base: String,
    routes: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    log: Arc<Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

pub const TOKEN: &str = "fake-registry-token";

impl FakeRegistry {
    pub fn start(routes: BTreeMap<String, Vec<u8>>, bearer: bool) -> Self {
        use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
        use axum::response::{IntoResponse, Response};
        use base64::Engine as _;

        #[derive(Clone)]
        struct Shared {
            routes: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
            log: Arc<Mutex<Vec<String>>>,
            bearer: bool,
            port: Arc<std::sync::OnceLock<u16>>,
        }
        async fn handle(
            axum::extract::State(s): axum::extract::State<Shared>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
        ) -> Response {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let scheme = auth.split(' ').next().unwrap_or("").to_owned();
            if let Ok(mut log) = s.log.lock() {
                log.push(
                    format!("{method} {} {scheme}", uri.path())
                        .trim()
                        .to_owned(),
                );
            }
            if uri.path() == "/token" {
                let want = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("user:pw")
                );
                return if auth == want {
                    axum::Json(json!({ "token": TOKEN })).into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                };
            }
            if s.bearer && auth != format!("Bearer {TOKEN}") {
                let port = s.port.get().copied().unwrap_or(0);
                let challenge = format!(
                    "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:ns/m:pull\""
                );
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, challenge)],
                )
                    .into_response();
            }
            let found = s
                .routes
                .lock()
                .ok()
                .and_then(|r| r.get(uri.path()).cloned());
            match found {
                Some(bytes) if method == Method::HEAD => {
                    ([(header::CONTENT_LENGTH, bytes.len().to_string())], ()).into_response()
                }
                Some(bytes) => {
                    ([(header::CONTENT_TYPE, OCI_MANIFEST.to_owned())], bytes).into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        let (runtime, listener, addr) = crate::support::listen();
        let shared = Shared {
            routes: Arc::new(Mutex::new(routes)),
            log: Arc::new(Mutex::new(Vec::new())),
            bearer,
            port: Arc::new(std::sync::OnceLock::new()),
        };
        let _ = shared.port.set(addr.port());
        let log = shared.log.clone();
        let routes = shared.routes.clone();
        let app = axum::Router::new().fallback(handle).with_state(shared);
        crate::support::serve(&runtime, listener, app);
        Self {
            base: format!("http://{addr}"),
            routes,
            log,
            _runtime: runtime,
        }
    }

    /// Serves `bytes` at `path` from now on.
    pub fn set(&self, path: &str, bytes: Vec<u8>) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(path.to_owned(), bytes);
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

pub fn layer(media_type: &str, bytes: &[u8], annotations: Value) -> Value {
    json!({
        "mediaType": media_type,
        "digest": format!("sha256:{}", sha256_hex(bytes)),
        "size": bytes.len(),
        "annotations": annotations,
    })
}

pub fn manifest_of(layers: Vec<Value>) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.model.config.v1+json",
                   "digest": format!("sha256:{}", sha256_hex(b"{}")), "size": 2},
        "layers": layers,
    })
    .to_string()
    .into_bytes()
}

/// A project whose models (`id`, reference) are `oci:` sources of type `tts`.
pub fn oci_project(models: &[(&str, String)]) -> Project {
    let mut text = "version: 1\nmodels:\n".to_owned();
    for (id, reference) in models {
        text.push_str(&format!(
            "  {id}:\n    type: tts\n    source: {{ oci: \"{reference}\" }}\n"
        ));
    }
    Project::with_manifest(&text)
}

/// Asserts that model `id` (of type `tts`, in the store `oci_project` sets) holds each file
/// with exactly its bytes.
pub fn assert_model_holds(project: &Project, id: &str, files: &[(&str, &[u8])]) {
    let dir = project.path(&format!("models/models/tts/{id}"));
    for (path, bytes) in files {
        let held = std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{id}/{path}: {e}"));
        assert!(
            held == *bytes,
            "{id}/{path} holds other bytes than were pushed"
        );
    }
}
