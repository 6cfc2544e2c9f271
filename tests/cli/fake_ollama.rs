//! A fake Ollama daemon and a fake Ollama registry, in process, speaking the protocol of
//! docs/protocols.md sections 2 and 3.
//!
//! [`FakeOllama::start`] is the daemon ([`FakeOllama::url`] is what `OLLAMA_HOST` points at). It
//! holds a catalogue of pullable tags ([`FakeOllama::publish`]; publishing a tag again with other
//! layers is an upstream update) and the models installed in it ([`FakeOllama::install`], or a
//! pull). It answers `HEAD`/`GET /` (`Ollama is running`), `/api/version`, `/api/tags` (one entry
//! per installed model: `name` and `model` in Ollama's shortest display form, `digest` = sha256
//! hex of the manifest bytes, `size` = layers + config, `details` read from the config blob),
//! `POST /api/pull` (NDJSON in the exact order of section 2.1: `pulling manifest`, several
//! `pulling <12 hex>` lines per blob with `digest`/`total`/`completed`, config last, a single
//! line for blobs already present, `verifying sha256 digest`, `writing manifest`, `removing
//! unused layers` when an update orphaned blobs, `success`; `{"stream": false}` gets only the
//! last object, or the error with `500`), `DELETE /api/delete`, `POST /api/show`, `GET /api/ps`,
//! `POST /api/generate` with an empty prompt (load, or unload with `keep_alive: 0`) and `HEAD
//! /api/blobs/sha256:…`. Names are normalised as Ollama does (section 2.5, [`ModelName`]):
//! `llama3`, `llama3:latest` and `registry.ollama.ai/library/llama3:latest` are one model,
//! matched case-insensitively (a pull installs under the spelling the tag was published with,
//! or the one already installed). Pulls can be made to fail ([`FakeOllama::fail_pull`]) and the
//! daemon can be stopped ([`FakeOllama::stop`]): it then refuses connections.
//!
//! [`FakeRegistry::start`] is the registry and its CDN. The registry is announced as
//! `http://localhost:PORT` and the CDN as `http://127.0.0.1:PORT2`, so a blob's `307` goes to
//! another *hostname*, as the tip of section 3.1 asks. It serves `GET`/`HEAD
//! /v2/{ns}/{model}/manifests/{tag}` (the raw manifest bytes, `Docker-Content-Digest`),
//! `HEAD /v2/{ns}/{model}/blobs/sha256:{hex}` (`Content-Length`) and `GET` of the same (a `307`
//! to the CDN, or another shape: [`BlobResponse`]); errors are OCI-style
//! `{"errors":[{"code":…,"message":…}]}`. [`FakeRegistry::require_auth`] turns on the bearer
//! challenge and its `/token` endpoint; [`FakeRegistry::set_realm`] announces a realm elsewhere.
//! [`FakeRegistry::publish_raw`] serves any bytes as a manifest (hostile digests and sizes,
//! docs/reliability.md S2). The CDN serves blobs with strict ranges (`206`, `416`) as the Hub
//! fake's does, with the same faults ([`FakeRegistry::corrupt_byte`], [`FakeRegistry::cut_after`],
//! [`FakeRegistry::ignore_range`]). The daemon and the registry are independent: the daemon does
//! not download from the registry. Both build manifests with [`Image::build`], so the same
//! layers give the same manifest bytes, hence the same digest, in both.
//!
//! Every request is recorded ([`FakeOllama::requests`], [`FakeRegistry::requests`],
//! [`FakeRegistry::cdn_requests`]) with its headers (and, for the daemon, its body).
//!
//! ```ignore
//! let daemon = FakeOllama::start();
//! let layers = [(MEDIA_MODEL, &weights[..]), (MEDIA_TEMPLATE, b"{{ .Prompt }}")];
//! let v1 = daemon.publish("llama3:8b", &layers, &sample_config(&layers));
//! project.run_env(&["apply"], &[("OLLAMA_HOST", &daemon.url())]);
//! assert_eq!(daemon.installed_image("llama3:8b").expect("pulled").digest, v1.digest);
//! ```

use crate::fake_blob::{BlobFaults, Fault};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::Digest as _;

/// The media type of a manifest (`Accept` of the manifest request, its `Content-Type`).
pub const MEDIA_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The media type of the config blob.
pub const MEDIA_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The weights layer.
pub const MEDIA_MODEL: &str = "application/vnd.ollama.image.model";
/// The license layer (text).
pub const MEDIA_LICENSE: &str = "application/vnd.ollama.image.license";
/// The prompt template layer (text).
pub const MEDIA_TEMPLATE: &str = "application/vnd.ollama.image.template";
/// The parameters layer (a JSON object).
pub const MEDIA_PARAMS: &str = "application/vnd.ollama.image.params";
/// The system prompt layer (text).
pub const MEDIA_SYSTEM: &str = "application/vnd.ollama.image.system";

/// The daemon's answer to `GET /api/version` unless [`FakeOllama::set_version`] says otherwise.
pub const DEFAULT_VERSION: &str = "0.33.0";

// ---------------------------------------------------------------------------------------------
// Names, blobs, images
// ---------------------------------------------------------------------------------------------

/// A model name as Ollama normalises it (`types/model/name.go`): defaults filled in
/// (`registry.ollama.ai`, `library`, `latest`), parts validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    /// `registry.ollama.ai` unless given (may carry a port).
    pub host: String,
    /// `library` unless given.
    pub namespace: String,
    /// The model.
    pub model: String,
    /// `latest` unless given.
    pub tag: String,
}

impl ModelName {
    /// Parses `[scheme://][[host/]namespace/]model[:tag]` (the tag only when the last `:` comes
    /// after the last `/`), or `None` when a part breaks Ollama's rules: 1-80 characters (host
    /// 350), a letter, digit or `_` first, then those or `-`, `.` (not in the namespace), `:`
    /// (host only).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.split_once("://").map_or(name, |(_, rest)| rest);
        let (rest, tag) = match (name.rfind(':'), name.rfind('/')) {
            (Some(colon), slash) if slash.is_none_or(|s| colon > s) => {
                (&name[..colon], &name[colon + 1..])
            }
            _ => (name, "latest"),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [model] => ("registry.ollama.ai", "library", *model),
            [namespace, model] => ("registry.ollama.ai", *namespace, *model),
            [host, namespace, model] => (*host, *namespace, *model),
            _ => return None,
        };
        let valid = valid_part(host, 350, ":.")
            && valid_part(namespace, 80, "")
            && valid_part(model, 80, ".")
            && valid_part(tag, 80, ".");
        valid.then(|| Self {
            host: host.to_owned(),
            namespace: namespace.to_owned(),
            model: model.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// Ollama's `DisplayShortest`: `llama3:8b`, `user/m:tag`, `host/ns/m:tag`.
    pub fn display_shortest(&self) -> String {
        if !self.host.eq_ignore_ascii_case("registry.ollama.ai") {
            format!(
                "{}/{}/{}:{}",
                self.host, self.namespace, self.model, self.tag
            )
        } else if !self.namespace.eq_ignore_ascii_case("library") {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }

    /// `host/namespace/model:tag`.
    pub fn full(&self) -> String {
        format!(
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
    }

    /// The case-insensitive identity of the name.
    fn key(&self) -> String {
        self.full().to_ascii_lowercase()
    }
}

/// A part is 1..=`max` characters: alphanumeric or `_` first, then those, `-`, `_` and `extra`.
fn valid_part(part: &str, max: usize, extra: &str) -> bool {
    let ok_first = |c: char| c.is_ascii_alphanumeric() || c == '_';
    !part.is_empty()
        && part.len() <= max
        && part.starts_with(ok_first)
        && part
            .chars()
            .all(|c| ok_first(c) || c == '-' || extra.contains(c))
}

fn parse_name(name: &str) -> ModelName {
    ModelName::parse(name).unwrap_or_else(|| panic!("not a valid Ollama model name: {name}"))
}

/// A blob of an image: a layer or the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `application/vnd.ollama.image.model`…
    pub media_type: String,
    /// `sha256:<64 hex>` of the bytes.
    pub digest: String,
    /// The content.
    pub bytes: Bytes,
}

impl Blob {
    /// A blob of `bytes`, its digest computed.
    pub fn new(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{}", sha256_hex(bytes)),
            bytes: Bytes::copy_from_slice(bytes),
        }
    }

    /// The 64 hex digits of the digest.
    pub fn hex(&self) -> &str {
        &self.digest["sha256:".len()..]
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A model image: a manifest (section 3.2) and the blobs it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The manifest bytes, as served and as stored.
    pub manifest: Bytes,
    /// sha256 hex of [`Image::manifest`], no `sha256:` prefix: the `/api/tags` digest.
    pub digest: String,
    /// The layers, in manifest order.
    pub layers: Vec<Blob>,
    /// The config blob.
    pub config: Blob,
}

impl Image {
    /// The image of these layers (media type, bytes) and this config, with a compact manifest
    /// in Ollama's key order (`schemaVersion`, `mediaType`, `config`, `layers`). Deterministic:
    /// the same inputs give the same bytes.
    pub fn build(layers: &[(&str, &[u8])], config: &[u8]) -> Self {
        let layers: Vec<Blob> = layers.iter().map(|(m, b)| Blob::new(m, b)).collect();
        let config = Blob::new(MEDIA_CONFIG, config);
        let descriptor = |b: &Blob| {
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
                b.media_type,
                b.digest,
                b.size()
            )
        };
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_MANIFEST}","config":{},"layers":[{}]}}"#,
            descriptor(&config),
            layers.iter().map(descriptor).collect::<Vec<_>>().join(",")
        );
        Self {
            digest: sha256_hex(manifest.as_bytes()),
            manifest: Bytes::from(manifest),
            layers,
            config,
        }
    }

    /// Layers plus config, in bytes: the `/api/tags` size.
    pub fn size(&self) -> u64 {
        self.blobs().map(Blob::size).sum()
    }

    /// The layers then the config: the order in which a pull reports them.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.layers.iter().chain(std::iter::once(&self.config))
    }

    /// The first layer of this media type.
    pub fn layer(&self, media_type: &str) -> Option<&Blob> {
        self.layers.iter().find(|l| l.media_type == media_type)
    }

    /// The details `/api/tags`, `/api/show` and `/api/ps` give, read from the config blob
    /// (empty strings where it says nothing, as Ollama's).
    fn details(&self) -> Value {
        let config: Value = serde_json::from_slice(&self.config.bytes).unwrap_or(Value::Null);
        let text = |key: &str| config.get(key).and_then(Value::as_str).unwrap_or("");
        json!({
            "parent_model": "",
            "format": text("model_format"),
            "family": text("model_family"),
            "families": config.get("model_families").cloned().unwrap_or(Value::Null),
            "parameter_size": text("model_type"),
            "quantization_level": text("file_type"),
        })
    }
}

/// A config blob as Ollama's registry serves them (section 3.2): gguf, family `llama`, `8.0B`,
/// `Q4_0`, with the layers' digests as `rootfs.diff_ids`.
pub fn sample_config(layers: &[(&str, &[u8])]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|(_, b)| format!("sha256:{}", sha256_hex(b)))
        .collect();
    json!({
        "model_format": "gguf",
        "model_family": "llama",
        "model_families": ["llama"],
        "model_type": "8.0B",
        "file_type": "Q4_0",
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes()
}

/// sha256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// One request as a listener received it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// `GET`, `POST`, `DELETE`…
    pub method: String,
    /// The raw path and query, as sent.
    pub path_and_query: String,
    /// Header names are lowercase; a repeated header appears once per value.
    pub headers: Vec<(String, String)>,
    /// The request body (empty for the registry and the CDN, which read none).
    pub body: Bytes,
}

impl LoggedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

fn record(
    log: &Mutex<Vec<LoggedRequest>>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) {
    let request = LoggedRequest {
        method: method.to_string(),
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    if let Ok(mut log) = log.lock() {
        log.push(request);
    }
}

/// A multi-threaded runtime for a fake's listeners.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the fake")
}

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

/// How a pull goes wrong ([`FakeOllama::fail_pull`]). `ErrorMidway` and `CutMidway` strike in
/// the first blob the pull downloads, so they need one that is not installed already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullFault {
    /// All blobs stream, then `verifying sha256 digest`, then
    /// `{"error":"digest mismatch, file must be downloaded again: want sha256:<first blob>, got
    /// sha256:<other>"}`; nothing is installed (Ollama removes the bad blob).
    DigestMismatch,
    /// After the first partial progress line of the first blob, `{"error": <message>}`.
    ErrorMidway(String),
    /// After the first partial progress line of the first blob, the connection is torn down
    /// (no error line, no `success`).
    CutMidway,
}

/// One `POST /api/generate` as received.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateCall {
    /// `model` as sent.
    pub model: String,
    /// `keep_alive` as sent (a number of seconds or a Go duration string), `None` if absent.
    pub keep_alive: Option<Value>,
}

/// A model present in the daemon.
struct Installed {
    name: ModelName,
    image: Image,
    modified_at: SystemTime,
}

/// What the daemon knows.
struct Daemon {
    version: String,
    /// Pullable tags, by [`ModelName::key`].
    catalogue: BTreeMap<String, (ModelName, Image)>,
    /// Installed models, by [`ModelName::key`].
    installed: BTreeMap<String, Installed>,
    /// Loaded models and when they expire, by [`ModelName::key`].
    loaded: BTreeMap<String, SystemTime>,
    /// Pull faults and how many pulls they still hit, by [`ModelName::key`].
    pull_faults: BTreeMap<String, (PullFault, usize)>,
    pull_delay: Duration,
    generate_calls: Vec<GenerateCall>,
}

impl Daemon {
    /// The digests of every blob some installed model uses.
    fn blobs(&self) -> BTreeSet<String> {
        self.installed
            .values()
            .flat_map(|i| i.image.blobs().map(|b| b.digest.clone()))
            .collect()
    }

    /// Installs (or replaces) `name`; whether blobs of the replaced image became unused.
    fn install(&mut self, name: ModelName, image: Image) -> bool {
        let before = self.blobs();
        self.installed.insert(
            name.key(),
            Installed {
                name,
                image,
                modified_at: SystemTime::now(),
            },
        );
        before.difference(&self.blobs()).next().is_some()
    }

    /// Loaded models whose keep-alive has not run out.
    fn live(&mut self) -> &BTreeMap<String, SystemTime> {
        let now = SystemTime::now();
        let installed = &self.installed;
        self.loaded
            .retain(|key, expires| *expires > now && installed.contains_key(key));
        &self.loaded
    }
}

struct DaemonShared {
    state: Mutex<Daemon>,
    log: Mutex<Vec<LoggedRequest>>,
}

impl DaemonShared {
    fn state(&self) -> MutexGuard<'_, Daemon> {
        self.state.lock().expect("daemon state")
    }
}

/// The fake Ollama daemon; it stops when dropped or on [`FakeOllama::stop`].
pub struct FakeOllama {
    shared: Arc<DaemonShared>,
    base: String,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl FakeOllama {
    /// Starts the daemon on a port of `127.0.0.1`, with nothing published, installed or loaded.
    pub fn start() -> Self {
        let runtime = runtime();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the daemon");
        let base = format!("http://{}", listener.local_addr().expect("daemon address"));
        let shared = Arc::new(DaemonShared {
            state: Mutex::new(Daemon {
                version: DEFAULT_VERSION.to_owned(),
                catalogue: BTreeMap::new(),
                installed: BTreeMap::new(),
                loaded: BTreeMap::new(),
                pull_faults: BTreeMap::new(),
                pull_delay: Duration::ZERO,
                generate_calls: Vec::new(),
            }),
            log: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(daemon).with_state(shared.clone());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            shared,
            base,
            runtime: Mutex::new(Some(runtime)),
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash: the value for `OLLAMA_HOST`.
    pub fn url(&self) -> String {
        self.base.clone()
    }

    /// Makes `name` pullable as the image of these layers and config (replacing what was
    /// published under it: an upstream update), and returns that image.
    pub fn publish(&self, name: &str, layers: &[(&str, &[u8])], config: &[u8]) -> Image {
        let name = parse_name(name);
        let image = Image::build(layers, config);
        self.shared
            .state()
            .catalogue
            .insert(name.key(), (name, image.clone()));
        image
    }

    /// Makes `name` installed already, as the image of these layers and config (not pullable
    /// unless also published), and returns that image.
    pub fn install(&self, name: &str, layers: &[(&str, &[u8])], config: &[u8]) -> Image {
        let image = Image::build(layers, config);
        self.shared.state().install(parse_name(name), image.clone());
        image
    }

    /// Removes `name` from the catalogue: pulls of it then fail as an unknown tag.
    pub fn unpublish(&self, name: &str) {
        self.shared
            .state()
            .catalogue
            .remove(&parse_name(name).key());
    }

    /// The installed models, in display form (`llama3:8b`), sorted.
    pub fn installed(&self) -> Vec<String> {
        let state = self.shared.state();
        let mut names: Vec<String> = state
            .installed
            .values()
            .map(|i| i.name.display_shortest())
            .collect();
        names.sort();
        names
    }

    /// The image installed under `name`, if any.
    pub fn installed_image(&self, name: &str) -> Option<Image> {
        let key = parse_name(name).key();
        self.shared
            .state()
            .installed
            .get(&key)
            .map(|i| i.image.clone())
    }

    /// The loaded models (keep-alive not run out), in display form, sorted.
    pub fn loaded(&self) -> Vec<String> {
        let mut state = self.shared.state();
        let keys: Vec<String> = state.live().keys().cloned().collect();
        let mut names: Vec<String> = keys
            .iter()
            .map(|k| state.installed[k].name.display_shortest())
            .collect();
        names.sort();
        names
    }

    /// Loads the installed model `name` for `keep_alive` (as if a client had asked).
    pub fn load(&self, name: &str, keep_alive: Duration) {
        let key = parse_name(name).key();
        let mut state = self.shared.state();
        assert!(
            state.installed.contains_key(&key),
            "{name} is not installed"
        );
        state.loaded.insert(key, SystemTime::now() + keep_alive);
    }

    /// The next `times` pulls of `name` go wrong this way; later ones succeed.
    pub fn fail_pull(&self, name: &str, fault: PullFault, times: usize) {
        self.shared
            .state()
            .pull_faults
            .insert(parse_name(name).key(), (fault, times));
    }

    /// Waits this long before each line of a pull stream (zero by default), so that a test can
    /// act while a pull is in progress.
    pub fn set_pull_delay(&self, per_line: Duration) {
        self.shared.state().pull_delay = per_line;
    }

    /// What `GET /api/version` answers.
    pub fn set_version(&self, version: &str) {
        self.shared.state().version = version.to_owned();
    }

    /// Every `POST /api/generate` received, in order, with its `keep_alive` as sent.
    pub fn generate_calls(&self) -> Vec<GenerateCall> {
        self.shared.state().generate_calls.clone()
    }

    /// Every request received, in order, bodies included.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().expect("daemon log").clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        self.shared.log.lock().expect("daemon log").clear();
    }

    /// Stops the daemon: the port refuses connections from now on, open connections are
    /// dropped (a pull in flight ends without `success`). State stays readable.
    pub fn stop(&self) {
        if let Some(runtime) = self.runtime.lock().expect("daemon runtime").take() {
            runtime.shutdown_background();
        }
    }
}

/// `{"error": message}` with `status`, as Ollama's non-streaming errors.
fn ollama_error(status: StatusCode, message: &str) -> Response {
    (status, json_body(&json!({ "error": message }))).into_response()
}

fn json_body(value: &Value) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        value.to_string(),
    )
}

/// The JSON request body, or the message of the `400` Ollama answers for it.
fn request_json(body: &Bytes) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("missing request body".to_owned());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// `cmp.Or(req.Model, req.Name)`.
fn requested_model(request: &Value) -> String {
    ["model", "name"]
        .iter()
        .filter_map(|k| request.get(*k).and_then(Value::as_str))
        .find(|s| !s.is_empty())
        .unwrap_or("")
        .to_owned()
}

fn not_found(model: &str) -> Response {
    ollama_error(StatusCode::NOT_FOUND, &format!("model '{model}' not found"))
}

/// The daemon listener: routes on method and path.
async fn daemon(
    State(shared): State<Arc<DaemonShared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&shared.log, &method, &uri, &headers, body.clone());
    let head = method == Method::HEAD;
    let mut response = match (method.as_str(), uri.path()) {
        ("GET" | "HEAD", "/") => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Ollama is running",
        )
            .into_response(),
        ("GET" | "HEAD", "/api/version") => {
            json_body(&json!({ "version": shared.state().version })).into_response()
        }
        ("GET" | "HEAD", "/api/tags") => tags(&shared),
        ("GET", "/api/ps") => ps(&shared),
        ("POST", "/api/pull") => pull(&shared, &body),
        ("DELETE", "/api/delete") => delete(&shared, &body),
        ("POST", "/api/show") => show(&shared, &body),
        ("POST", "/api/generate") => generate(&shared, &body),
        ("HEAD", path) if path.starts_with("/api/blobs/") => {
            let digest = path["/api/blobs/".len()..].replacen('-', ":", 1);
            if shared.state().blobs().contains(&digest) {
                StatusCode::OK.into_response()
            } else {
                ollama_error(StatusCode::NOT_FOUND, &format!("blob {digest:?} not found"))
            }
        }
        _ => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    };
    if head {
        *response.body_mut() = Body::empty();
    }
    response
}

/// `GET /api/tags`: the installed models, most recently modified first.
fn tags(shared: &DaemonShared) -> Response {
    let state = shared.state();
    let mut installed: Vec<&Installed> = state.installed.values().collect();
    installed.sort_by_key(|i| std::cmp::Reverse(i.modified_at));
    let models: Vec<Value> = installed
        .iter()
        .map(|i| {
            let name = i.name.display_shortest();
            json!({
                "name": name,
                "model": name,
                "modified_at": rfc3339(i.modified_at),
                "size": i.image.size(),
                "digest": i.image.digest,
                "details": i.image.details(),
            })
        })
        .collect();
    json_body(&json!({ "models": models })).into_response()
}

/// `GET /api/ps`: the loaded models, the latest to expire first.
fn ps(shared: &DaemonShared) -> Response {
    let mut state = shared.state();
    let mut loaded: Vec<(String, SystemTime)> =
        state.live().iter().map(|(k, e)| (k.clone(), *e)).collect();
    loaded.sort_by_key(|(_, e)| std::cmp::Reverse(*e));
    let models: Vec<Value> = loaded
        .iter()
        .map(|(key, expires)| {
            let i = &state.installed[key];
            let name = i.name.display_shortest();
            json!({
                "name": name,
                "model": name,
                "size": i.image.size(),
                "digest": i.image.digest,
                "details": i.image.details(),
                "expires_at": rfc3339(*expires),
                "size_vram": i.image.size(),
                "context_length": 4096,
            })
        })
        .collect();
    json_body(&json!({ "models": models })).into_response()
}

/// `DELETE /api/delete`: removes the model (its unused blobs go with it, and it leaves
/// `/api/ps`).
fn delete(shared: &DaemonShared, body: &Bytes) -> Response {
    let request = match request_json(body) {
        Ok(r) => r,
        Err(message) => return ollama_error(StatusCode::BAD_REQUEST, &message),
    };
    let model = requested_model(&request);
    let Some(name) = ModelName::parse(&model) else {
        return ollama_error(
            StatusCode::BAD_REQUEST,
            &format!("name {model:?} is invalid"),
        );
    };
    if shared.state().installed.remove(&name.key()).is_none() {
        return not_found(&model);
    }
    StatusCode::OK.into_response()
}

/// `POST /api/show`: what Ollama says of an installed model.
fn show(shared: &DaemonShared, body: &Bytes) -> Response {
    let request = match request_json(body) {
        Ok(r) => r,
        Err(message) => return ollama_error(StatusCode::BAD_REQUEST, &message),
    };
    let model = requested_model(&request);
    if model.is_empty() {
        return ollama_error(StatusCode::BAD_REQUEST, "model is required");
    }
    let state = shared.state();
    let Some(i) = ModelName::parse(&model).and_then(|n| state.installed.get(&n.key())) else {
        return not_found(&model);
    };
    let image = &i.image;
    let text = |media: &str| {
        image
            .layer(media)
            .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
    };
    let params: Value = image
        .layer(MEDIA_PARAMS)
        .and_then(|l| serde_json::from_slice(&l.bytes).ok())
        .unwrap_or_else(|| json!({}));
    let mut parameters = String::new();
    for (key, value) in params.as_object().into_iter().flatten() {
        for v in value
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![value.clone()])
        {
            parameters.push_str(&format!("{key:<30} {v}\n"));
        }
    }
    let display = i.name.display_shortest();
    let mut modelfile = format!(
        "# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, \
         replace FROM with:\n# FROM {display}\n\n"
    );
    if let Some(weights) = image.layer(MEDIA_MODEL) {
        modelfile.push_str(&format!(
            "FROM /root/.ollama/models/blobs/sha256-{}\n",
            weights.hex()
        ));
    }
    if let Some(template) = text(MEDIA_TEMPLATE) {
        modelfile.push_str(&format!("TEMPLATE \"\"\"{template}\"\"\"\n"));
    }
    for line in parameters.lines() {
        modelfile.push_str(&format!("PARAMETER {line}\n"));
    }
    if let Some(license) = text(MEDIA_LICENSE) {
        modelfile.push_str(&format!("LICENSE \"\"\"{license}\"\"\"\n"));
    }
    let details = image.details();
    let family = details["family"].as_str().unwrap_or("").to_owned();
    let mut answer = json!({
        "modelfile": modelfile,
        "parameters": parameters,
        "template": text(MEDIA_TEMPLATE).unwrap_or_default(),
        "details": details,
        "model_info": {
            "general.architecture": family,
            "general.file_type": 2,
            "general.parameter_count": image.layer(MEDIA_MODEL).map_or(0, Blob::size),
            format!("{family}.context_length"): 8192,
        },
        "capabilities": ["completion"],
        "modified_at": rfc3339(i.modified_at),
    });
    if let Some(license) = text(MEDIA_LICENSE) {
        answer["license"] = json!(license);
    }
    if let Some(system) = text(MEDIA_SYSTEM) {
        answer["system"] = json!(system);
    }
    json_body(&answer).into_response()
}

/// `POST /api/generate` with an empty prompt: load, or unload with `keep_alive` zero.
fn generate(shared: &DaemonShared, body: &Bytes) -> Response {
    let request = match request_json(body) {
        Ok(r) => r,
        Err(message) => return ollama_error(StatusCode::BAD_REQUEST, &message),
    };
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let keep_alive = request.get("keep_alive").cloned();
    let mut state = shared.state();
    state.generate_calls.push(GenerateCall {
        model: model.clone(),
        keep_alive: keep_alive.clone(),
    });
    if model.is_empty() {
        return ollama_error(StatusCode::BAD_REQUEST, "model is required");
    }
    let Some(key) = ModelName::parse(&model)
        .map(|n| n.key())
        .filter(|k| state.installed.contains_key(k))
    else {
        return not_found(&model);
    };
    if request
        .get("prompt")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty())
    {
        return ollama_error(
            StatusCode::BAD_REQUEST,
            "the fake daemon only loads and unloads models (send an empty prompt)",
        );
    }
    let seconds = match keep_alive.as_ref().map(keep_alive_seconds) {
        None => Some(300.0),
        Some(Ok(seconds)) => seconds,
        Some(Err(message)) => return ollama_error(StatusCode::BAD_REQUEST, &message),
    };
    let reason = if seconds == Some(0.0) {
        state.loaded.remove(&key);
        "unload"
    } else {
        let expires = match seconds {
            Some(s) => SystemTime::now() + Duration::from_secs_f64(s),
            // Negative: forever (Ollama's MaxInt64 duration, some centuries away).
            None => SystemTime::now() + Duration::from_secs(290 * 365 * 86_400),
        };
        state.loaded.insert(key, expires);
        "load"
    };
    json_body(&json!({
        "model": model,
        "created_at": rfc3339(SystemTime::now()),
        "response": "",
        "done": true,
        "done_reason": reason,
    }))
    .into_response()
}

/// `keep_alive` as Ollama reads it: a number of seconds or a Go duration; `None` (forever)
/// when negative.
fn keep_alive_seconds(value: &Value) -> Result<Option<f64>, String> {
    let seconds = match value {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => {
            go_duration(s).ok_or_else(|| format!("time: invalid duration {s:?}"))?
        }
        other => return Err(format!("invalid keep_alive {other}")),
    };
    Ok((seconds >= 0.0).then_some(seconds))
}

/// A Go duration (`"5m"`, `"1h30m"`, `"-1s"`, `"0"`) in seconds.
fn go_duration(text: &str) -> Option<f64> {
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(sign * total)
}

/// One step of a pull stream.
enum Step {
    Line(Value),
    /// Installs the model; gives the lines that follow (`removing unused layers`, `success`).
    Commit(Box<dyn FnOnce() -> Vec<Value> + Send>),
    /// Tears the connection down.
    Cut,
}

/// `POST /api/pull`.
fn pull(shared: &Arc<DaemonShared>, body: &Bytes) -> Response {
    let request = match request_json(body) {
        Ok(r) => r,
        Err(message) => return ollama_error(StatusCode::BAD_REQUEST, &message),
    };
    let Some(name) = ModelName::parse(&requested_model(&request)) else {
        return ollama_error(StatusCode::BAD_REQUEST, "invalid model name");
    };
    let stream = request.get("stream").and_then(Value::as_bool) != Some(false);
    let (steps, delay) = pull_steps(shared, name);
    if stream {
        let body = PullBody {
            steps: steps.into(),
            pending: VecDeque::new(),
            delay,
            sleep: None,
            waited: false,
        };
        return (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::new(body),
        )
            .into_response();
    }
    // waitForStream: the last progress, or the first error with 500.
    let mut last = json!({});
    for step in steps {
        let lines = match step {
            Step::Line(line) => vec![line],
            Step::Commit(commit) => commit(),
            Step::Cut => return Response::new(Body::new(PullBody::cut())),
        };
        for line in lines {
            if let Some(error) = line.get("error").and_then(Value::as_str) {
                return ollama_error(StatusCode::INTERNAL_SERVER_ERROR, error);
            }
            last = line;
        }
    }
    json_body(&last).into_response()
}

/// The steps of a pull of `name` (section 2.1), and the delay between lines.
fn pull_steps(shared: &Arc<DaemonShared>, name: ModelName) -> (Vec<Step>, Duration) {
    let mut state = shared.state();
    let delay = state.pull_delay;
    let mut steps = vec![Step::Line(json!({"status": "pulling manifest"}))];
    // Installed under the catalogue's spelling, or the one already installed (Ollama's
    // `getExistingName`).
    let Some((published, image)) = state.catalogue.get(&name.key()).cloned() else {
        steps.push(Step::Line(
            json!({"error": "pull model manifest: file does not exist"}),
        ));
        return (steps, delay);
    };
    let fault = match state.pull_faults.get_mut(&name.key()) {
        Some((fault, times)) if *times > 0 => {
            *times -= 1;
            Some(fault.clone())
        }
        _ => None,
    };
    let present = state.blobs();
    let name = state
        .installed
        .get(&name.key())
        .map_or(published, |i| i.name.clone());
    drop(state);
    let mut first_download = true;
    let mut fetched = Vec::new();
    for blob in image.blobs() {
        let status = format!("pulling {}", &blob.hex()[..12]);
        let progress = |completed: u64| {
            let mut line = json!({"status": status, "digest": blob.digest});
            if blob.size() > 0 {
                line["total"] = json!(blob.size());
            }
            if completed > 0 {
                line["completed"] = json!(completed);
            }
            Step::Line(line)
        };
        if present.contains(&blob.digest) {
            steps.push(progress(blob.size()));
            continue;
        }
        fetched.push(blob.digest.clone());
        steps.push(progress(0));
        let mut done = 0;
        for third in [blob.size() / 3, blob.size() * 2 / 3] {
            if third > done {
                steps.push(progress(third));
                done = third;
            }
            if first_download {
                first_download = false;
                match &fault {
                    Some(PullFault::ErrorMidway(message)) => {
                        steps.push(Step::Line(json!({ "error": message })));
                        return (steps, delay);
                    }
                    Some(PullFault::CutMidway) => {
                        steps.push(Step::Cut);
                        return (steps, delay);
                    }
                    _ => {}
                }
            }
        }
        steps.push(progress(blob.size()));
    }
    steps.push(Step::Line(json!({"status": "verifying sha256 digest"})));
    if fault == Some(PullFault::DigestMismatch) {
        let want = fetched
            .first()
            .cloned()
            .unwrap_or_else(|| image.config.digest.clone());
        let got = format!("sha256:{}", sha256_hex(want.as_bytes()));
        steps.push(Step::Line(json!({
            "error": format!("digest mismatch, file must be downloaded again: want {want}, got {got}")
        })));
        return (steps, delay);
    }
    steps.push(Step::Line(json!({"status": "writing manifest"})));
    let shared = shared.clone();
    steps.push(Step::Commit(Box::new(move || {
        let pruned = shared.state().install(name, image);
        let mut lines = Vec::new();
        if pruned {
            lines.push(json!({"status": "removing unused layers"}));
        }
        lines.push(json!({"status": "success"}));
        lines
    })));
    (steps, delay)
}

/// A pull's NDJSON body: one line per frame, each after the delay; installs when it reaches
/// the commit (so a client that hangs up earlier installs nothing).
struct PullBody {
    steps: VecDeque<Step>,
    pending: VecDeque<Value>,
    delay: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The delay before the next line is over.
    waited: bool,
}

impl PullBody {
    /// A body that is torn down at once.
    fn cut() -> Self {
        Self {
            steps: VecDeque::from([Step::Cut]),
            pending: VecDeque::new(),
            delay: Duration::ZERO,
            sleep: None,
            waited: false,
        }
    }

    /// Polls a sleep of `duration`, kept across polls.
    fn pause(&mut self, duration: Duration, cx: &mut Context<'_>) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(duration)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        Poll::Ready(())
    }
}

impl HttpBody for PullBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let delay = this.delay;
                if !this.waited && !delay.is_zero() {
                    if this.pause(delay, cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.waited = true;
                }
                let line = this.pending.pop_front().expect("a pending line");
                let mut bytes = line.to_string().into_bytes();
                bytes.push(b'\n');
                this.waited = false;
                return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(bytes)))));
            }
            match this.steps.pop_front() {
                None => return Poll::Ready(None),
                Some(Step::Line(line)) => this.pending.push_back(line),
                Some(Step::Commit(commit)) => this.pending.extend(commit()),
                Some(Step::Cut) => {
                    // Let the lines sent reach the socket before tearing it down.
                    if this.pause(Duration::from_millis(50), cx).is_pending() {
                        this.steps.push_front(Step::Cut);
                        return Poll::Pending;
                    }
                    let cut =
                        std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected cut");
                    return Poll::Ready(Some(Err(cut)));
                }
            }
        }
    }
}

/// `time` as RFC 3339 in UTC with nanoseconds, as Go prints `time.Time`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_nanos()
    )
}

// ---------------------------------------------------------------------------------------------
// The registry and its CDN
// ---------------------------------------------------------------------------------------------

/// How the registry answers `GET /v2/{ns}/{model}/blobs/{digest}` ([`FakeRegistry::set_blob_response`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobResponse {
    /// `307` with `Location` on the CDN (the default, as registry.ollama.ai does).
    Redirect307,
    /// `302` to the CDN (which Ollama itself does not accept).
    Found302,
    /// `200`, an empty body and `Location` on the CDN (what Ollama's own test fake does).
    OkWithLocation,
    /// The blob itself, from the registry, with ranges.
    Direct,
}

/// Bearer auth of the registry.
struct Auth {
    /// The realm announced, when not the registry's own `/token`.
    realm: Option<String>,
    /// Tokens issued, and the scope each is good for.
    tokens: BTreeMap<String, String>,
}

/// The service the challenge names and `/token` expects.
const SERVICE: &str = "ollama.com";

struct Registry {
    /// Manifest bytes by lowercase `ns/model:tag`.
    manifests: BTreeMap<String, Bytes>,
    /// Blobs by sha256 hex.
    blobs: BTreeMap<String, Bytes>,
    auth: Option<Auth>,
    blob_response: BlobResponse,
    /// Statuses the next manifest requests get, one each, before they are served.
    manifest_faults: std::collections::VecDeque<StatusCode>,
}

struct RegistryShared {
    state: Mutex<Registry>,
    /// `http://localhost:PORT`.
    base: String,
    /// `http://127.0.0.1:PORT2`.
    cdn_base: String,
    /// By sha256 hex.
    faults: Mutex<BTreeMap<String, Fault>>,
    log: Mutex<Vec<LoggedRequest>>,
    cdn_log: Mutex<Vec<LoggedRequest>>,
    bytes: Arc<AtomicU64>,
    cdn_bytes: Arc<AtomicU64>,
}

impl RegistryShared {
    fn state(&self) -> MutexGuard<'_, Registry> {
        self.state.lock().expect("registry state")
    }
}

/// The fake registry and its CDN; both stop when it is dropped.
pub struct FakeRegistry {
    shared: Arc<RegistryShared>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeRegistry {
    /// Starts the registry (on `127.0.0.1`, and on `::1` at the same port when it can, named
    /// `localhost`) and the CDN (on `127.0.0.1`, named so), empty, without auth, answering
    /// blobs with `307`.
    pub fn start() -> Self {
        let runtime = runtime();
        let bind = |addr: &str| runtime.block_on(tokio::net::TcpListener::bind(addr));
        let registry = bind("127.0.0.1:0").expect("bind the registry");
        let port = registry.local_addr().expect("registry address").port();
        // `localhost` may resolve to ::1 first; a client falls back to 127.0.0.1 if this fails.
        let registry6 = bind(&format!("[::1]:{port}")).ok();
        let cdn = bind("127.0.0.1:0").expect("bind the CDN");
        let shared = Arc::new(RegistryShared {
            state: Mutex::new(Registry {
                manifests: BTreeMap::new(),
                blobs: BTreeMap::new(),
                auth: None,
                blob_response: BlobResponse::Redirect307,
                manifest_faults: std::collections::VecDeque::new(),
            }),
            base: format!("http://localhost:{port}"),
            cdn_base: format!("http://{}", cdn.local_addr().expect("CDN address")),
            faults: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            cdn_log: Mutex::new(Vec::new()),
            bytes: Arc::new(AtomicU64::new(0)),
            cdn_bytes: Arc::new(AtomicU64::new(0)),
        });
        let registry_app = Router::new()
            .fallback(registry_handler)
            .with_state(shared.clone());
        let cdn_app = Router::new()
            .fallback(cdn_handler)
            .with_state(shared.clone());
        for listener in std::iter::once(registry).chain(registry6) {
            let app = registry_app.clone();
            runtime.spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
        }
        runtime.spawn(async move {
            let _ = axum::serve(cdn, cdn_app).await;
        });
        Self {
            shared,
            _runtime: runtime,
        }
    }

    /// `http://localhost:PORT`, no trailing slash: the registry's base URL.
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    /// `localhost:PORT`: the host part of model names served from this registry
    /// (`localhost:PORT/library/llama3:8b`).
    pub fn host(&self) -> String {
        self.shared.base["http://".len()..].to_owned()
    }

    /// `http://127.0.0.1:PORT2`: the CDN, on another hostname.
    pub fn cdn_url(&self) -> String {
        self.shared.cdn_base.clone()
    }

    /// Serves the image of these layers and config under `name` (`llama3:8b`, `user/m:tag`;
    /// a host in it is ignored), its blobs included, replacing what was there; returns it.
    pub fn publish(&self, name: &str, layers: &[(&str, &[u8])], config: &[u8]) -> Image {
        let name = parse_name(name);
        let image = Image::build(layers, config);
        let mut state = self.shared.state();
        for blob in image.blobs() {
            state
                .blobs
                .insert(blob.hex().to_owned(), blob.bytes.clone());
        }
        state.manifests.insert(
            manifest_key(&name.namespace, &name.model, &name.tag),
            image.manifest.clone(),
        );
        image
    }

    /// Serves `manifest`, any bytes at all, verbatim as `ns/model:tag`; returns the sha256 hex
    /// of the bytes (the `Docker-Content-Digest`). No blob is added.
    pub fn publish_raw(&self, ns: &str, model: &str, tag: &str, manifest: &[u8]) -> String {
        self.shared.state().manifests.insert(
            manifest_key(ns, model, tag),
            Bytes::copy_from_slice(manifest),
        );
        sha256_hex(manifest)
    }

    /// Serves `bytes` as a blob (in any repository); returns `sha256:<hex>`.
    pub fn add_blob(&self, bytes: &[u8]) -> String {
        let hex = sha256_hex(bytes);
        self.shared
            .state()
            .blobs
            .insert(hex.clone(), Bytes::copy_from_slice(bytes));
        format!("sha256:{hex}")
    }

    /// Stops serving the blob of this digest (`sha256:<hex>` or hex): `404 BLOB_UNKNOWN`.
    pub fn remove_blob(&self, digest: &str) {
        self.shared.state().blobs.remove(hex_of(digest));
    }

    /// The manifest URL of `name` (`llama3:8b` → `{url}/v2/library/llama3/manifests/8b`).
    pub fn manifest_url(&self, name: &str) -> String {
        let name = parse_name(name);
        format!(
            "{}/v2/{}/{}/manifests/{}",
            self.shared.base, name.namespace, name.model, name.tag
        )
    }

    /// The blob URL of `digest` (`sha256:<hex>`) in the repository of `name`.
    pub fn blob_url(&self, name: &str, digest: &str) -> String {
        let name = parse_name(name);
        format!(
            "{}/v2/{}/{}/blobs/{digest}",
            self.shared.base, name.namespace, name.model
        )
    }

    /// Requires a bearer token on every `/v2/` request: without a valid one, `401` with
    /// `WWW-Authenticate: Bearer realm="{url}/token",service="ollama.com",
    /// scope="repository:{ns}/{model}:pull"`. `GET /token?service=…&scope=…` answers
    /// `{"token": …}`, a token good for that scope only.
    pub fn require_auth(&self) {
        let mut state = self.shared.state();
        if state.auth.is_none() {
            state.auth = Some(Auth {
                realm: None,
                tokens: BTreeMap::new(),
            });
        }
    }

    /// Announces `realm` (say, on another host) in the challenge instead of `{url}/token`;
    /// turns auth on.
    pub fn set_realm(&self, realm: &str) {
        self.require_auth();
        if let Some(auth) = self.shared.state().auth.as_mut() {
            auth.realm = Some(realm.to_owned());
        }
    }

    /// The tokens `/token` has issued so far.
    pub fn tokens_issued(&self) -> Vec<String> {
        self.shared
            .state()
            .auth
            .as_ref()
            .map(|a| a.tokens.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The next `times` manifest requests are answered `status` (empty body) instead.
    pub fn fail_manifests(&self, status: u16, times: usize) {
        let status = StatusCode::from_u16(status).expect("status");
        self.shared
            .state()
            .manifest_faults
            .extend(std::iter::repeat_n(status, times));
    }

    /// How blob `GET`s are answered from now on.
    pub fn set_blob_response(&self, response: BlobResponse) {
        self.shared.state().blob_response = response;
    }

    /// Every request the registry received (`/token` included), in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().expect("registry log").clone()
    }

    /// Every request the CDN received, in order.
    pub fn cdn_requests(&self) -> Vec<LoggedRequest> {
        self.shared.cdn_log.lock().expect("CDN log").clone()
    }

    /// Forgets the requests recorded so far on both listeners (the byte counters stay).
    pub fn clear_requests(&self) {
        self.shared.log.lock().expect("registry log").clear();
        self.shared.cdn_log.lock().expect("CDN log").clear();
    }

    /// Blob body bytes the registry itself has handed out ([`BlobResponse::Direct`]).
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    /// Blob body bytes the CDN has handed out.
    pub fn cdn_bytes_sent(&self) -> u64 {
        self.shared.cdn_bytes.load(Ordering::SeqCst)
    }
}

impl BlobFaults for FakeRegistry {
    /// `digest` is `sha256:<hex>` or the hex alone.
    fn fault(&self, digest: &str, change: &dyn Fn(&mut Fault)) {
        let mut faults = self.shared.faults.lock().expect("faults");
        change(faults.entry(hex_of(digest).to_owned()).or_default());
    }
}

fn manifest_key(ns: &str, model: &str, tag: &str) -> String {
    format!("{ns}/{model}:{tag}").to_ascii_lowercase()
}

/// `sha256:<hex>` or `<hex>` → `<hex>`.
fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An OCI-style error.
fn registry_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        json_body(&json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response()
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("header value")
}

/// The registry listener.
async fn registry_handler(
    State(shared): State<Arc<RegistryShared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&shared.log, &method, &uri, &headers, Bytes::new());
    if method != Method::GET && method != Method::HEAD {
        return registry_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "unsupported");
    }
    let path = uri.path().to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut response = match segments.as_slice() {
        ["token"] => token(&shared, &uri),
        ["v2", ns, model, "manifests", tag] => {
            let fault = shared.state().manifest_faults.pop_front();
            match fault {
                Some(status) => status.into_response(),
                None => challenge(&shared, &headers, ns, model)
                    .unwrap_or_else(|| manifest(&shared, ns, model, tag)),
            }
        }
        ["v2", ns, model, "blobs", digest] => challenge(&shared, &headers, ns, model)
            .unwrap_or_else(|| blob(&shared, &method, &headers, digest)),
        ["v2", ..] => registry_error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        ),
        _ => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    };
    if method == Method::HEAD {
        *response.body_mut() = Body::empty();
    }
    response
}

/// The `401` challenge, unless auth is off or the request carries a token for
/// `repository:{ns}/{model}:pull`.
fn challenge(
    shared: &RegistryShared,
    headers: &HeaderMap,
    ns: &str,
    model: &str,
) -> Option<Response> {
    let state = shared.state();
    let Some(auth) = &state.auth else {
        return None;
    };
    let scope = format!("repository:{ns}/{model}:pull");
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented
        .and_then(|t| auth.tokens.get(t))
        .is_some_and(|s| s.eq_ignore_ascii_case(&scope))
    {
        return None;
    }
    let realm = auth
        .realm
        .clone()
        .unwrap_or_else(|| format!("{}/token", shared.base));
    let mut r = registry_error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        value(&format!(
            "Bearer realm=\"{realm}\",service=\"{SERVICE}\",scope=\"{scope}\""
        )),
    );
    Some(r)
}

/// `GET /token?service=…&scope=…`: a token for that scope.
fn token(shared: &RegistryShared, uri: &Uri) -> Response {
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let mut state = shared.state();
    let Some(auth) = state.auth.as_mut() else {
        return registry_error(StatusCode::NOT_FOUND, "UNSUPPORTED", "auth is off");
    };
    let scope = query.get("scope").cloned().unwrap_or_default();
    let scope_ok = scope
        .strip_prefix("repository:")
        .and_then(|s| s.strip_suffix(":pull"))
        .is_some_and(|repo| repo.split('/').count() == 2);
    if query.get("service").map(String::as_str) != Some(SERVICE) || !scope_ok {
        return registry_error(StatusCode::BAD_REQUEST, "DENIED", "bad service or scope");
    }
    let token = format!("fake-registry-token-{}", auth.tokens.len() + 1);
    auth.tokens.insert(token.clone(), scope);
    json_body(&json!({ "token": token })).into_response()
}

/// `GET`/`HEAD /v2/{ns}/{model}/manifests/{tag}`: the bytes as published.
fn manifest(shared: &RegistryShared, ns: &str, model: &str, tag: &str) -> Response {
    let Some(bytes) = shared
        .state()
        .manifests
        .get(&manifest_key(ns, model, tag))
        .cloned()
    else {
        return registry_error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        );
    };
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    let mut r = Response::new(Body::from(bytes.clone()));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, value(MEDIA_MANIFEST));
    h.insert(header::CONTENT_LENGTH, bytes.len().into());
    h.insert("docker-content-digest", value(&digest));
    h.insert(header::ETAG, value(&format!("\"{digest}\"")));
    r
}

/// `HEAD`/`GET /v2/{ns}/{model}/blobs/{digest}`: the size, or the way to the bytes.
fn blob(
    shared: &Arc<RegistryShared>,
    method: &Method,
    headers: &HeaderMap,
    digest: &str,
) -> Response {
    let Some(hex) = digest.strip_prefix("sha256:").filter(|h| is_sha256(h)) else {
        return registry_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "invalid digest");
    };
    let (bytes, shape) = {
        let state = shared.state();
        (state.blobs.get(hex).cloned(), state.blob_response)
    };
    let Some(bytes) = bytes else {
        return registry_error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
        );
    };
    if *method == Method::HEAD || shape == BlobResponse::Direct {
        let mut r = send(shared, method, headers, bytes, hex, shared.bytes.clone());
        r.headers_mut()
            .insert("docker-content-digest", value(digest));
        return r;
    }
    let location = format!(
        "{}/ollama/docker/registry/v2/blobs/sha256/{}/{hex}/data?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=1200&X-Amz-Signature=fake",
        shared.cdn_base,
        &hex[..2]
    );
    let status = match shape {
        BlobResponse::Found302 => StatusCode::FOUND,
        BlobResponse::OkWithLocation => StatusCode::OK,
        _ => StatusCode::TEMPORARY_REDIRECT,
    };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r.headers_mut().insert(header::LOCATION, value(&location));
    r.headers_mut().insert(header::CONTENT_LENGTH, 0.into());
    r
}

/// The CDN listener: `HEAD`/`GET /…/sha256/{xx}/{hex}/data?…`, the blob of that digest.
async fn cdn_handler(
    State(shared): State<Arc<RegistryShared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&shared.cdn_log, &method, &uri, &headers, Bytes::new());
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let hex = uri
        .path()
        .strip_suffix("/data")
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("");
    let Some(bytes) = shared.state().blobs.get(hex).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/xml")],
            "<Error><Code>NoSuchKey</Code></Error>",
        )
            .into_response();
    };
    send(
        &shared,
        &method,
        &headers,
        bytes,
        hex,
        shared.cdn_bytes.clone(),
    )
}

/// Serves the blob `bytes` of sha256 `hex` with strict ranges and its faults, under an md5
/// `ETag` as S3 gives; body bytes handed to the connection are added to `counter`.
fn send(
    shared: &RegistryShared,
    method: &Method,
    headers: &HeaderMap,
    bytes: Bytes,
    hex: &str,
    counter: Arc<AtomicU64>,
) -> Response {
    let etag = format!("\"{}\"", hex::encode(md5::Md5::digest(&bytes)));
    let mut response =
        crate::fake_blob::send(&shared.faults, method, headers, bytes, hex, &etag, counter);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, value("application/octet-stream"));
    response
}
