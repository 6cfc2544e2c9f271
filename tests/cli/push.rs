//! `modelctl push` against the real `docker-registry` (started as tests/cli/oci_registry.rs
//! does): models applied from file URLs are pushed as ModelPack artifacts, a second push
//! uploads nothing, a blob another model of the push already sent is mounted, what the
//! registry holds satisfies the ModelPack config schema and pulls back byte for byte, and a
//! corrupt blob is refused before anything is sent.

use serde::Deserialize;
use serde_json::Value;

use crate::oci_registry::{Registry, client, send};
use crate::support::{Project, file_url, sha256_hex};

/// The ModelPack config schema (`schema/config-schema.json` of modelpack/model-spec), as
/// strict types: required `descriptor`, `config` and `modelfs`, no unknown properties.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelPackConfig {
    descriptor: SchemaDescriptor,
    config: SchemaModelConfig,
    modelfs: SchemaModelFs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct SchemaDescriptor {
    created_at: Option<String>,
    authors: Option<Vec<String>>,
    family: Option<String>,
    name: Option<String>,
    #[serde(rename = "docURL")]
    doc_url: Option<String>,
    #[serde(rename = "sourceURL")]
    source_url: Option<String>,
    #[serde(rename = "datasetsURL")]
    datasets_url: Option<Vec<String>>,
    version: Option<String>,
    revision: Option<String>,
    vendor: Option<String>,
    licenses: Option<Vec<String>>,
    title: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct SchemaModelConfig {
    architecture: Option<String>,
    format: Option<String>,
    param_size: Option<String>,
    precision: Option<String>,
    quantization: Option<String>,
    transformer_config: Option<Value>,
    capabilities: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SchemaModelFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

fn get(registry: &Registry, path: &str, accept: &str) -> (u16, reqwest::header::HeaderMap, String) {
    send(client().get(registry.url(path)).header("accept", accept)).expect("get")
}

fn get_bytes(registry: &Registry, path: &str) -> Vec<u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let response = client().get(registry.url(path)).send().await.expect("get");
            assert_eq!(response.status(), 200, "{path}");
            response.bytes().await.expect("body").to_vec()
        })
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn project_with_three_models() -> (Project, Vec<u8>) {
    let project = Project::new();
    let weights: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(project.path("src/copy")).expect("dir");
    std::fs::write(project.path("src/voice.safetensors"), &weights).expect("write");
    std::fs::write(project.path("src/copy/voice.safetensors"), &weights).expect("write");
    project.write("src/README.md", "# A model card\n");
    let url = |p: &str| file_url(&project.path(p));
    project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  voice:\n    type: tts\n    source: {{ url: \"{}\" }}\n  voice-copy:\n    type: tts\n    source: {{ url: \"{}\" }}\n  card:\n    type: llm\n    source: {{ url: \"{}\" }}\n",
            url("src/voice.safetensors"),
            url("src/copy/voice.safetensors"),
            url("src/README.md"),
        ),
    );
    let applied = project.run(&["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    (project, weights)
}

fn push_json(project: &Project, args: &[&str]) -> Value {
    let mut all = vec!["push"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = project.run(&all);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).expect("json report")
}

fn model<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["id"] == id)
        .expect("model in the report")
}

#[test]
fn push_writes_modelpack_artifacts_from_the_store_and_a_second_push_uploads_nothing() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let (project, weights) = project_with_three_models();
    let to = format!("http://127.0.0.1:{}/team", registry.port);

    let first = push_json(&project, &["--to", &to]);
    let voice = model(&first, "voice");
    let copy = model(&first, "voice-copy");
    assert_eq!(voice["repository"], "team/voice");
    assert_eq!(voice["files"][0]["outcome"], "uploaded");
    assert_eq!(voice["uploaded_bytes"], weights.len() as u64);
    assert_eq!(copy["files"][0]["outcome"], "mounted", "{copy}");
    assert_eq!(copy["files"][0]["mounted_from"], "team/voice");
    assert_eq!(copy["uploaded_bytes"], 0);
    let card = model(&first, "card");
    assert_eq!(
        card["files"][0]["media_type"],
        "application/vnd.cncf.model.doc.v1.raw"
    );

    // The manifest, as the registry serves it.
    let tag = voice["tags"][0].as_str().expect("tag").to_owned();
    assert!(tag.starts_with("pin-"), "{tag}");
    let (status, headers, body) = get(
        &registry,
        &format!("/v2/team/voice/manifests/{tag}"),
        OCI_MANIFEST,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        voice["manifest_digest"].as_str()
    );
    let manifest: Value = serde_json::from_str(&body).expect("manifest json");
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.cncf.model.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.model.config.v1+json"
    );
    let layer = &manifest["layers"][0];
    let digest = format!("sha256:{}", sha256_hex(&weights));
    assert_eq!(
        layer["digest"],
        digest.as_str(),
        "a layer's digest is the file's sha256"
    );
    assert_eq!(
        layer["mediaType"],
        "application/vnd.cncf.model.weight.v1.raw"
    );
    assert_eq!(
        layer["annotations"]["org.cncf.model.filepath"],
        "voice.safetensors"
    );

    // The config satisfies the ModelPack schema, and its diff ids are the layers.
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let config_bytes = get_bytes(&registry, &format!("/v2/team/voice/blobs/{config_digest}"));
    let config: ModelPackConfig = serde_json::from_slice(&config_bytes).unwrap_or_else(|e| {
        panic!(
            "not a ModelPack config ({e}): {}",
            String::from_utf8_lossy(&config_bytes)
        )
    });
    assert_eq!(config.modelfs.kind, "layers");
    assert_eq!(config.modelfs.diff_ids, vec![digest.clone()]);
    assert_eq!(config.descriptor.name.as_deref(), Some("voice"));
    assert_eq!(config.config.format.as_deref(), Some("safetensors"));

    // A pulled-back blob is byte-exact, from the repository it was mounted into too.
    assert_eq!(
        get_bytes(&registry, &format!("/v2/team/voice/blobs/{digest}")),
        weights
    );
    assert_eq!(
        get_bytes(&registry, &format!("/v2/team/voice-copy/blobs/{digest}")),
        weights
    );

    // Again, with a moving tag: nothing is uploaded, and the manifest is the same.
    let second = push_json(&project, &["--to", &to, "--tag", "latest"]);
    for id in ["voice", "voice-copy", "card"] {
        let m = model(&second, id);
        assert_eq!(m["uploaded_bytes"], 0, "{m}");
        assert!(
            m["files"]
                .as_array()
                .expect("files")
                .iter()
                .all(|f| f["outcome"] == "present"),
            "{m}"
        );
        assert_eq!(
            m["manifest_digest"],
            model(&first, id)["manifest_digest"],
            "same pin, same manifest"
        );
        assert_eq!(
            m["tags"][0],
            model(&first, id)["tags"][0],
            "same pin, same tag"
        );
    }
    let (status, headers, _) = get(&registry, "/v2/team/voice/manifests/latest", OCI_MANIFEST);
    assert_eq!(status, 200);
    assert_eq!(
        headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        voice["manifest_digest"].as_str()
    );
}

#[test]
fn a_corrupt_or_missing_blob_is_refused_before_anything_is_sent() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let (project, weights) = project_with_three_models();
    let to = format!("http://127.0.0.1:{}/team", registry.port);
    let hex = sha256_hex(&weights);
    let blob = project.path(&format!("models/blobs/sha256/{}/{hex}", &hex[..2]));
    let mut perms = std::fs::metadata(&blob).expect("blob").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).expect("writable");
    let mut damaged = weights.clone();
    damaged[10] ^= 1;
    // A new inode, so the model directory's hardlink keeps the good bytes.
    std::fs::remove_file(&blob).expect("unlink");
    std::fs::write(&blob, &damaged).expect("damage");

    let run = project.run(&["push", "voice", "--to", &to]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("cannot push `voice`"), "{}", run.stderr);
    assert!(run.stderr.contains("corrupt"), "{}", run.stderr);
    assert!(
        run.stderr.contains("modelctl apply"),
        "a help: {}",
        run.stderr
    );
    let (status, _, _) = get(
        &registry,
        &format!("/v2/team/voice/blobs/sha256:{hex}"),
        "*/*",
    );
    assert_eq!(status, 404, "nothing was uploaded");

    std::fs::remove_file(&blob).expect("unlink");
    let run = project.run(&["push", "voice", "--to", &to]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("is not in the store"), "{}", run.stderr);
}

/// A registry on 127.0.0.1 that wants a bearer token from its own `/token` realm, which it
/// gives only for the right Basic credentials; it keeps blobs in memory (serving them to a
/// `GET`, for tests/cli/mirror.rs) and logs each request with the `Authorization` scheme it
/// carried.
pub struct TokenRegistry {
    pub base: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

pub const SECRET: &str = "pa55-w0rd-sentinel";
pub const TOKEN: &str = "issued-token-sentinel";

impl TokenRegistry {
    pub fn start() -> Self {
        use axum::extract::State;
        use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
        use axum::response::{IntoResponse, Response};
        use base64::Engine as _;

        #[derive(Clone, Default)]
        struct Shared {
            log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
            blobs: std::sync::Arc<
                std::sync::Mutex<std::collections::BTreeMap<String, axum::body::Bytes>>,
            >,
            port: std::sync::Arc<std::sync::OnceLock<u16>>,
        }

        async fn handle(
            State(shared): State<Shared>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> Response {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let scheme = auth.split(' ').next().unwrap_or("").to_owned();
            if let Ok(mut log) = shared.log.lock() {
                log.push(format!("{method} {} {scheme}", uri.path()));
            }
            let port = shared.port.get().copied().unwrap_or(0);
            if uri.path() == "/token" {
                let want = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("ci-bot:{SECRET}"))
                );
                return if auth == want {
                    axum::Json(serde_json::json!({ "token": TOKEN })).into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                };
            }
            if auth != format!("Bearer {TOKEN}") {
                let challenge = format!(
                    "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:team/voice:pull,push\""
                );
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, challenge)],
                )
                    .into_response();
            }
            let path = uri.path().to_owned();
            if matches!(method, Method::HEAD | Method::GET) && path.contains("/blobs/") {
                let digest = path.rsplit('/').next().unwrap_or("").to_owned();
                let known = shared
                    .blobs
                    .lock()
                    .ok()
                    .and_then(|b| b.get(&digest).cloned());
                return match known {
                    Some(bytes) if method == Method::GET => bytes.into_response(),
                    Some(_) => StatusCode::OK.into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                };
            }
            if method == Method::POST && path.ends_with("/blobs/uploads/") {
                return (
                    StatusCode::ACCEPTED,
                    [(header::LOCATION, "/upload/1?state=x")],
                )
                    .into_response();
            }
            if method == Method::PUT && path.starts_with("/upload/") {
                let digest = uri
                    .query()
                    .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("digest=")))
                    .unwrap_or("")
                    .replace("%3A", ":");
                let ok = digest == format!("sha256:{}", sha256_hex(&body));
                if ok && let Ok(mut blobs) = shared.blobs.lock() {
                    blobs.insert(digest, body);
                }
                return if ok {
                    StatusCode::CREATED
                } else {
                    StatusCode::BAD_REQUEST
                }
                .into_response();
            }
            if method == Method::PUT && path.contains("/manifests/") {
                return StatusCode::CREATED.into_response();
            }
            StatusCode::NOT_FOUND.into_response()
        }

        let (runtime, listener, addr) = crate::support::listen();
        let shared = Shared::default();
        let _ = shared.port.set(addr.port());
        let log = shared.log.clone();
        let app = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(shared);
        crate::support::serve(&runtime, listener, app);
        Self {
            base: format!("http://{addr}"),
            log,
            _runtime: runtime,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

#[test]
fn a_bearer_challenge_is_answered_with_the_docker_login_and_no_secret_is_printed() {
    use base64::Engine as _;
    let registry = TokenRegistry::start();
    let project =
        crate::support::applied_file_model("voice", "tts", "voice.safetensors", b"weights\n");
    let to = format!("{}/team", registry.base);

    // No login: the token endpoint refuses, and the error says how to log in.
    let run = project.run(&["push", "--to", &to]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("refused a token"), "{}", run.stderr);
    assert!(run.stderr.contains("docker login"), "{}", run.stderr);

    // `docker login` as ~/.docker/config.json has it (HOME is the project's root).
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ci-bot:{SECRET}"));
    let host = registry.base.trim_start_matches("http://");
    project.write(
        ".docker/config.json",
        &format!(r#"{{"auths": {{"{host}": {{"auth": "{encoded}"}}}}}}"#),
    );
    let run = project.run(&["-vv", "push", "--to", &to]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains(SECRET) && !text.contains(&encoded),
            "a secret printed: {text}"
        );
        assert!(!text.contains(TOKEN), "a token printed: {text}");
    }
    let log = registry.log();
    assert!(log.iter().any(|l| l == "GET /token Basic"), "{log:?}");
    assert!(
        log.iter().any(|l| l.starts_with("PUT /upload/1 Bearer")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("PUT /v2/team/voice/manifests/pin-") && l.ends_with("Bearer")),
        "{log:?}"
    );

    // MODELCTL_REGISTRY_AUTH wins over the docker config.
    let run = project.run_env(
        &["push", "--to", &to],
        &[("MODELCTL_REGISTRY_AUTH", "ci-bot:wrong")],
    );
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("MODELCTL_REGISTRY_AUTH"),
        "{}",
        run.stderr
    );
}

/// What [`ChunkRegistry`] holds and saw.
#[derive(Default)]
struct ChunkState {
    /// `METHOD path content-range body-bytes` of every request.
    log: Vec<String>,
    uploads: std::collections::BTreeMap<u32, Vec<u8>>,
    next_upload: u32,
    blobs: std::collections::BTreeMap<String, Vec<u8>>,
    /// Once an upload holds this many bytes, the connection of the `PATCH` that brought them
    /// is dropped in the middle of its body (once).
    drop_at: Option<usize>,
    /// Whether `PATCH` is accepted; without, it is answered 416.
    chunked: bool,
    /// Whether a cut `PATCH` loses its upload, as distribution does (the upload's state token
    /// no longer matches its bytes, so the next request about it gets a 404).
    forget_cut: bool,
    /// Body bytes read from `PATCH` requests.
    patch_bytes: usize,
}

/// A registry on 127.0.0.1 that speaks the distribution spec's chunked uploads (`POST`,
/// `PATCH` with `Content-Range`, `GET` of the upload for its `Range`, `PUT ?digest=`). It is
/// written on plain TCP, one request per connection, so that it can drop a connection in the
/// middle of a `PATCH` body and keep the bytes that arrived, as a registry behind a broken
/// link would; or refuse `PATCH` like a registry without chunked uploads.
pub struct ChunkRegistry {
    pub base: String,
    state: std::sync::Arc<std::sync::Mutex<ChunkState>>,
    _runtime: tokio::runtime::Runtime,
}

impl ChunkRegistry {
    pub fn start(chunked: bool, drop_at: Option<usize>, forget_cut: bool) -> Self {
        let (runtime, listener, addr) = crate::support::listen();
        let state = std::sync::Arc::new(std::sync::Mutex::new(ChunkState {
            chunked,
            drop_at,
            forget_cut,
            ..ChunkState::default()
        }));
        let shared = state.clone();
        runtime.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(chunk_connection(socket, shared.clone()));
            }
        });
        Self {
            base: format!("http://{addr}"),
            state,
            _runtime: runtime,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.state.lock().map(|s| s.log.clone()).unwrap_or_default()
    }

    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        self.state.lock().ok()?.blobs.get(digest).cloned()
    }

    pub fn patch_bytes(&self) -> usize {
        self.state.lock().map(|s| s.patch_bytes).unwrap_or(0)
    }
}

/// One request on `socket`: read, answered (or the connection dropped), closed.
async fn chunk_connection(
    mut socket: tokio::net::TcpStream,
    state: std::sync::Arc<std::sync::Mutex<ChunkState>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut piece = [0u8; 8192];
        match socket.read(&mut piece).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&piece[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let target = request_line.next().unwrap_or("").to_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let range = header("content-range").unwrap_or_else(|| "-".to_owned());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let upload_id: Option<u32> = path.strip_prefix("/upload/").and_then(|n| n.parse().ok());

    let mut body = buf[head_end..].to_vec();
    // A PATCH's bytes go into its upload as they arrive, so a dropped connection keeps them.
    let patching = method == "PATCH" && state.lock().is_ok_and(|s| s.chunked);
    let start: Option<usize> = range.split('-').next().and_then(|s| s.parse().ok());
    let mut dropped = false;
    loop {
        if patching && let Some(id) = upload_id {
            let mut s = state.lock().expect("state");
            let held = s.uploads.get(&id).map_or(0, Vec::len);
            if start == Some(held)
                && let Some(at) = s.drop_at
                && held + body.len() >= at
            {
                body.truncate(at - held);
                s.drop_at = None;
                dropped = true;
                break;
            }
        }
        if body.len() >= length {
            break;
        }
        let mut piece = vec![0u8; 65536];
        match socket.read(&mut piece).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&piece[..n]),
        }
    }

    let (status, headers, reply): (&str, Vec<(String, String)>, Vec<u8>) = {
        let mut s = state.lock().expect("state");
        s.log
            .push(format!("{method} {path} {range} {}", body.len()));
        let range_of = |held: usize| format!("0-{}", held.saturating_sub(1));
        let location = |id: u32| ("Location".to_owned(), format!("/upload/{id}"));
        match (method.as_str(), upload_id) {
            ("HEAD" | "GET", None) if path.contains("/blobs/") => {
                let digest = path.rsplit('/').next().unwrap_or("").to_owned();
                match s.blobs.get(&digest) {
                    Some(bytes) if method == "GET" => ("200 OK", vec![], bytes.clone()),
                    Some(_) => ("200 OK", vec![], vec![]),
                    None => ("404 Not Found", vec![], vec![]),
                }
            }
            ("POST", None) if path.ends_with("/blobs/uploads/") => {
                s.next_upload += 1;
                let id = s.next_upload;
                s.uploads.insert(id, Vec::new());
                (
                    "202 Accepted",
                    vec![location(id), ("Range".to_owned(), "0-0".to_owned())],
                    vec![],
                )
            }
            ("PATCH", Some(id)) if s.chunked && s.uploads.contains_key(&id) => {
                s.patch_bytes += body.len();
                let held = s.uploads.get(&id).map_or(0, Vec::len);
                if start != Some(held) {
                    (
                        "416 Range Not Satisfiable",
                        vec![location(id), ("Range".to_owned(), range_of(held))],
                        vec![],
                    )
                } else {
                    let upload = s.uploads.entry(id).or_default();
                    upload.extend_from_slice(&body);
                    let held = upload.len();
                    if dropped {
                        if s.forget_cut {
                            s.uploads.remove(&id);
                        }
                        return; // the connection closes without an answer
                    }
                    (
                        "202 Accepted",
                        vec![location(id), ("Range".to_owned(), range_of(held))],
                        vec![],
                    )
                }
            }
            ("PATCH", Some(_)) => ("416 Range Not Satisfiable", vec![], vec![]),
            ("GET", Some(id)) if s.uploads.contains_key(&id) => {
                let held = s.uploads.get(&id).map_or(0, Vec::len);
                (
                    "204 No Content",
                    vec![location(id), ("Range".to_owned(), range_of(held))],
                    vec![],
                )
            }
            ("PUT", Some(id)) if s.uploads.contains_key(&id) => {
                let mut bytes = s.uploads.remove(&id).unwrap_or_default();
                bytes.extend_from_slice(&body);
                let digest = query
                    .split('&')
                    .find_map(|p| p.strip_prefix("digest="))
                    .unwrap_or("")
                    .replace("%3A", ":");
                if digest == format!("sha256:{}", sha256_hex(&bytes)) {
                    s.blobs.insert(digest, bytes);
                    ("201 Created", vec![], vec![])
                } else {
                    ("400 Bad Request", vec![], vec![])
                }
            }
            ("PUT", None) if path.contains("/manifests/") => ("201 Created", vec![], vec![]),
            _ => ("404 Not Found", vec![], vec![]),
        }
    };
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.len()
    );
    for (k, v) in headers {
        answer.push_str(&format!("{k}: {v}\r\n"));
    }
    answer.push_str("\r\n");
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.write_all(&reply).await;
    let _ = socket.shutdown().await;
}

/// A project holding one applied model of `size` pseudo-random bytes.
fn project_with_one_model(size: usize) -> (Project, Vec<u8>) {
    let weights = crate::faults::pseudo_random(size, 11);
    let project = crate::support::applied_file_model("big", "llm", "big.safetensors", &weights);
    (project, weights)
}

const ONE_MIB_CHUNKS: [(&str, &str); 3] = [
    ("MODELCTL_PUSH_CHUNK_MIB", "1"),
    ("MODELCTL_HTTP_RETRIES", "4"),
    ("MODELCTL_HTTP_RETRY_BASE_MS", "10"),
];

#[test]
fn a_blob_larger_than_a_chunk_goes_up_in_chunks_to_the_real_registry_and_pulls_back_exact() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let (project, weights) = project_with_three_models();
    let to = format!("http://127.0.0.1:{}/team", registry.port);
    let run = project.run_env(&["-v", "push", "--to", &to, "--json"], &ONE_MIB_CHUNKS);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(
        model(&report, "voice")["uploaded_bytes"],
        weights.len() as u64
    );
    // 3,000,000 bytes in 1 MiB chunks: three PATCHes, each logged by -v.
    let patches = run
        .stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("INFO PATCH http://127.0.0.1"))
        .count();
    assert_eq!(patches, 3, "{}", run.stderr);
    let digest = format!("sha256:{}", sha256_hex(&weights));
    assert_eq!(
        get_bytes(&registry, &format!("/v2/team/voice/blobs/{digest}")),
        weights,
        "the chunks joined are the file"
    );
    assert_eq!(
        get_bytes(&registry, &format!("/v2/team/voice-copy/blobs/{digest}")),
        weights
    );
}

#[test]
fn a_connection_dropped_mid_chunk_resumes_from_the_range_the_registry_holds() {
    let size = 3 * 1_048_576 + 500_000;
    let drop_at = 1_048_576 + 524_288; // half-way through the second chunk
    let registry = ChunkRegistry::start(true, Some(drop_at), false);
    let (project, weights) = project_with_one_model(size);
    let to = format!("{}/team", registry.base);
    let run = project.run_env(&["push", "--to", &to, "--json"], &ONE_MIB_CHUNKS);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let digest = format!("sha256:{}", sha256_hex(&weights));
    assert_eq!(
        registry.blob(&digest).as_deref(),
        Some(&weights[..]),
        "byte-exact"
    );
    let log = registry.log();
    let patches: Vec<&String> = log.iter().filter(|l| l.starts_with("PATCH")).collect();
    let ranges: Vec<&str> = patches.iter().filter_map(|l| l.split(' ').nth(2)).collect();
    assert_eq!(
        ranges,
        [
            "0-1048575",
            "1048576-2097151",
            "1572864-2621439",
            "2621440-3645727"
        ],
        "resumed at the Range, in chunks again: {log:?}"
    );
    let status = log
        .iter()
        .position(|l| l.starts_with("GET /upload/1 "))
        .expect("the registry was asked what it holds");
    let second = log
        .iter()
        .position(|l| l.starts_with("PATCH /upload/1 1048576-"))
        .expect("second chunk");
    assert!(second < status, "{log:?}");
    assert_eq!(
        registry.patch_bytes(),
        size,
        "no byte the registry held was sent again"
    );
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("POST /v2/team/big/blobs/uploads/"))
            .count(),
        2,
        "one upload for the weights, one for the config: {log:?}"
    );
    assert!(
        log.iter().any(|l| l.starts_with("PUT /upload/1 - 0")),
        "closed with an empty PUT: {log:?}"
    );
}

#[test]
fn a_registry_that_refuses_chunks_gets_the_blob_whole() {
    let registry = ChunkRegistry::start(false, None, false);
    let size = 2 * 1_048_576 + 10;
    let (project, weights) = project_with_one_model(size);
    let to = format!("{}/team", registry.base);
    let run = project.run_env(&["push", "--to", &to], &ONE_MIB_CHUNKS);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let digest = format!("sha256:{}", sha256_hex(&weights));
    assert_eq!(registry.blob(&digest).as_deref(), Some(&weights[..]));
    let log = registry.log();
    let methods: Vec<&str> = log
        .iter()
        .take(5)
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(
        methods,
        ["HEAD", "POST", "PATCH", "POST", "PUT"],
        "one refused PATCH, then a new upload sent whole: {log:?}"
    );
    assert!(
        log[4].ends_with(&format!(" {size}")),
        "the PUT carries the blob: {log:?}"
    );
}

#[test]
fn an_upload_the_registry_lost_with_a_cut_chunk_starts_over_and_completes() {
    let size = 2 * 1_048_576 + 300_000;
    let registry = ChunkRegistry::start(true, Some(1_048_576 + 100_000), true);
    let (project, weights) = project_with_one_model(size);
    let to = format!("{}/team", registry.base);
    let run = project.run_env(&["push", "--to", &to], &ONE_MIB_CHUNKS);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let digest = format!("sha256:{}", sha256_hex(&weights));
    assert_eq!(registry.blob(&digest).as_deref(), Some(&weights[..]));
    let log = registry.log();
    let lost = log
        .iter()
        .position(|l| l.starts_with("GET /upload/1 "))
        .expect("asked");
    assert!(
        log[lost + 1].starts_with("POST /v2/team/big/blobs/uploads/")
            && log[lost + 2].starts_with("PATCH /upload/2 0-1048575"),
        "a new upload from byte 0: {log:?}"
    );
}
