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

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared::default();
        let _ = shared.port.set(addr.port());
        let log = shared.log.clone();
        let app = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(shared);
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
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
    let project = Project::new();
    project.write("src/voice.safetensors", "weights\n");
    let url = file_url(&project.path("src/voice.safetensors"));
    project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  voice:\n    type: tts\n    source: {{ url: \"{url}\" }}\n"
        ),
    );
    assert_eq!(project.run(&["apply", "--yes"]).code, 0);
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
