//! A fake HuggingFace Hub, in process, speaking the protocol of docs/protocols.md section 1.
//!
//! [`FakeHub::start`] opens two listeners on `127.0.0.1:0`: the hub ([`FakeHub::url`], what
//! `HF_ENDPOINT` points at) and a CDN on another port, so another origin, as `cdn-lfs.hf.co`
//! is. Tests build repositories (models, datasets, spaces) out of commits of files, regular or
//! LFS, with branches and tags, and the hub answers the requests clients make:
//! `GET /api/{models,datasets,spaces}/{org}/{name}[/revision/{rev}][?blobs=true]` (repo info
//! with `sha` and `siblings`), `GET /api/{type}s/{org}/{name}/tree/{rev}[/{path}]` (entries with
//! `lfs.oid`, directories included, paginated with an absolute `Link: <…>; rel="next"`), and
//! `HEAD`/`GET /[datasets/|spaces/]{org}/{name}/resolve/{rev}/{path}` in the three shapes of
//! section 1.4: a regular file served directly (A: `ETag: "<git blob sha1>"`,
//! `X-Repo-Commit`, ranges), or through a relative `307` to `/api/resolve-cache/…` (B, when
//! [`FakeHub::set_relative_redirects`] is on), and an LFS file as a `302` to the CDN carrying
//! `X-Repo-Commit`, `X-Linked-Etag: "<sha256>"` and `X-Linked-Size` (C; never `X-Xet-Hash`).
//! Revisions in URLs are percent-decoded per segment, so `refs%2Fpr%2F1` names a branch.
//! Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound` with
//! `X-Repo-Commit`, `GatedRepo`), `X-Error-Message` and a JSON `{"error": …}` body.
//!
//! Access follows the real hub. A token the hub does not know (or an `Authorization` that is
//! not `Bearer …`) gets `401` with `X-Error-Message: Invalid credentials in Authorization
//! header` on any request. A missing repository, or a private one (see [`Repo::private`] and
//! [`FakeHub::require_token`]) asked for without a token that has access, is `RepoNotFound`:
//! `401` without a token, `404` with one. A gated repository ([`Repo::gated`]) shows its info
//! and tree to anyone (`"gated": "manual"` in the info) but its files only to tokens given
//! access ([`Repo::grant`]): `401` `GatedRepo` without a token, `403` with one.
//!
//! The CDN serves blobs by sha256 with strict ranges (`a-b`, `a-`, `-n`; the end clamped to the
//! size; `416` with `bytes */size` from the size on; `If-Range`), its own `ETag` (an md5, as S3)
//! and the `Content-Disposition` the signed URL asks for. Every request to either listener is
//! recorded ([`FakeHub::requests`], [`FakeHub::cdn_requests`]) and every body byte counted,
//! and faults can be set per file ([`FakeHub::corrupt_byte`], [`FakeHub::cut_after`],
//! [`FakeHub::ignore_range`]) wherever its bytes are served (CDN, or hub for regular files).
//! Repositories are whatever tests commit: no `.gitattributes` is added, ids are `org/name`.
//!
//! ```ignore
//! let hub = FakeHub::start();
//! let repo = hub.repo(RepoKind::Model, "org/model");
//! let v1 = repo.commit(&[("config.json", b"{}", Lfs::No), ("w/model.bin", &weights, Lfs::Yes)]);
//! hub.cut_after("w/model.bin", 1 << 20, 1);
//! project.run_env(&["apply"], &[("HF_ENDPOINT", &hub.url())]);
//! assert!(hub.cdn_requests().iter().all(|r| r.header("authorization").is_none()));
//! ```

use crate::fake_blob::{BlobFaults, Fault, send};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha1::Digest as _;

/// The kind of a repository, which picks its URL prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepoKind {
    /// `/api/models/…`, resolve URLs without a prefix.
    Model,
    /// `/api/datasets/…`, resolve URLs under `datasets/`.
    Dataset,
    /// `/api/spaces/…`, resolve URLs under `spaces/`.
    Space,
}

impl RepoKind {
    /// The API segment: `models`, `datasets`, `spaces`.
    pub fn api_segment(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
            RepoKind::Space => "spaces",
        }
    }

    /// The resolve URL prefix: ``, `datasets/`, `spaces/`.
    pub fn url_prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "",
            RepoKind::Dataset => "datasets/",
            RepoKind::Space => "spaces/",
        }
    }

    fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "models" => Some(RepoKind::Model),
            "datasets" => Some(RepoKind::Dataset),
            "spaces" => Some(RepoKind::Space),
            _ => None,
        }
    }
}

/// Whether a committed file is stored in git LFS (served by the CDN) or in git (by the hub).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lfs {
    /// In LFS: listed with `lfs`, resolved by a `302` to the CDN (shape C).
    Yes,
    /// In git: resolved by the hub itself (shape A, or B with relative redirects).
    No,
}

/// One request as a listener received it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// `GET`, `HEAD`…
    pub method: String,
    /// The raw path and query, as sent (percent-encoding kept).
    pub path_and_query: String,
    /// Header names are lowercase; a repeated header appears once per value.
    pub headers: Vec<(String, String)>,
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
}

/// The git blob id of `content`: sha1 of `blob {len}\0` followed by the content.
pub fn git_blob_id(content: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex::encode(h.finalize())
}

/// The git LFS pointer file that stands in git for `content`.
pub fn lfs_pointer(content: &[u8]) -> String {
    format!(
        "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
        crate::support::sha256_hex(content),
        content.len()
    )
}

/// A file as committed.
struct File {
    bytes: Bytes,
    sha256: String,
    /// The git blob id: of the content, or of the pointer for an LFS file.
    blob_id: String,
    /// The size of the LFS pointer, for LFS files.
    pointer_size: Option<usize>,
}

impl File {
    fn new(bytes: &[u8], lfs: Lfs) -> Self {
        let (blob_id, pointer_size) = match lfs {
            Lfs::No => (git_blob_id(bytes), None),
            Lfs::Yes => {
                let pointer = lfs_pointer(bytes);
                (git_blob_id(pointer.as_bytes()), Some(pointer.len()))
            }
        };
        Self {
            bytes: Bytes::copy_from_slice(bytes),
            sha256: crate::support::sha256_hex(bytes),
            blob_id,
            pointer_size,
        }
    }
}

type Tree = BTreeMap<String, Arc<File>>;

#[derive(Default)]
struct RepoState {
    /// Commit sha → the files at that commit.
    commits: BTreeMap<String, Tree>,
    branches: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    private: bool,
    gated: bool,
    /// Tokens with access to this repository's files.
    granted: BTreeSet<String>,
    /// Listing entries with no file behind them (hostile paths).
    injected: Vec<String>,
}

impl RepoState {
    /// The commit `rev` names: a branch, a tag or a full commit sha.
    fn resolve(&self, rev: &str) -> Option<String> {
        self.branches
            .get(rev)
            .or_else(|| self.tags.get(rev))
            .cloned()
            .or_else(|| self.commits.contains_key(rev).then(|| rev.to_owned()))
    }

    fn head(&self) -> Option<&String> {
        self.branches.get("main")
    }
}

struct Hub {
    repos: BTreeMap<(RepoKind, String), RepoState>,
    /// Tokens the hub knows (any other token is invalid credentials).
    tokens: BTreeSet<String>,
    /// When set, every repository is private and this token may read them all.
    required: Option<String>,
    page_size: usize,
    relative_redirects: bool,
    /// Every committed content, by sha256: what the CDN serves.
    blobs: BTreeMap<String, Bytes>,
}

struct Shared {
    hub: Mutex<Hub>,
    hub_base: String,
    cdn_base: String,
    /// By sha256 of the content.
    faults: Mutex<BTreeMap<String, Fault>>,
    hub_log: Mutex<Vec<LoggedRequest>>,
    cdn_log: Mutex<Vec<LoggedRequest>>,
    hub_bytes: Arc<AtomicU64>,
    cdn_bytes: Arc<AtomicU64>,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().expect("hub state")
    }
}

/// The fake hub and its CDN; both stop when it is dropped.
pub struct FakeHub {
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeHub {
    /// Starts the hub and the CDN on two ports of `127.0.0.1`, with no repositories, no
    /// tokens required, 1000 tree entries per page and regular files served directly (shape A).
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let bind = || {
            runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind")
        };
        let (hub_listener, cdn_listener) = (bind(), bind());
        let base =
            |l: &tokio::net::TcpListener| format!("http://{}", l.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            hub: Mutex::new(Hub {
                repos: BTreeMap::new(),
                tokens: BTreeSet::new(),
                required: None,
                page_size: 1000,
                relative_redirects: false,
                blobs: BTreeMap::new(),
            }),
            faults: Mutex::new(BTreeMap::new()),
            hub_base: base(&hub_listener),
            cdn_base: base(&cdn_listener),
            hub_log: Mutex::new(Vec::new()),
            cdn_log: Mutex::new(Vec::new()),
            hub_bytes: Arc::new(AtomicU64::new(0)),
            cdn_bytes: Arc::new(AtomicU64::new(0)),
        });
        let hub_app = Router::new().fallback(hub).with_state(shared.clone());
        let cdn_app = Router::new().fallback(cdn).with_state(shared.clone());
        runtime.spawn(async move {
            let _ = axum::serve(hub_listener, hub_app).await;
        });
        runtime.spawn(async move {
            let _ = axum::serve(cdn_listener, cdn_app).await;
        });
        Self {
            shared,
            _runtime: runtime,
        }
    }

    /// The hub's base URL (`http://127.0.0.1:PORT`, no trailing slash): `HF_ENDPOINT`.
    pub fn url(&self) -> String {
        self.shared.hub_base.clone()
    }

    /// The CDN's base URL (another port, so another origin).
    pub fn cdn_url(&self) -> String {
        self.shared.cdn_base.clone()
    }

    /// The repository `id` (`org/name`) of this kind, created empty (no commit, no branch)
    /// if it does not exist yet.
    pub fn repo(&self, kind: RepoKind, id: &str) -> Repo {
        assert!(
            id.split('/').count() == 2,
            "repository ids are org/name: {id}"
        );
        self.shared
            .hub()
            .repos
            .entry((kind, id.to_owned()))
            .or_default();
        Repo {
            shared: self.shared.clone(),
            kind,
            id: id.to_owned(),
        }
    }

    /// Makes every repository private, readable with `Authorization: Bearer <token>` only
    /// (tokens granted on a repository still read it too).
    pub fn require_token(&self, token: &str) {
        let mut hub = self.shared.hub();
        hub.tokens.insert(token.to_owned());
        hub.required = Some(token.to_owned());
    }

    /// Makes `token` a valid token with access to nothing in particular (so a gated repo
    /// answers it `403`, a private one `404`).
    pub fn add_token(&self, token: &str) {
        self.shared.hub().tokens.insert(token.to_owned());
    }

    /// Entries per page of tree listings (at least 1).
    pub fn set_tree_page_size(&self, entries: usize) {
        self.shared.hub().page_size = entries.max(1);
    }

    /// Serve regular files in shape B (a relative `307` to
    /// `/api/resolve-cache/{type}s/{id}/{commit}/{path}?etag=…`, which serves the file with its
    /// metadata and does not need the query) rather than directly (shape A). The `307` itself
    /// carries no metadata: clients must follow it.
    pub fn set_relative_redirects(&self, on: bool) {
        self.shared.hub().relative_redirects = on;
    }

    /// Every request the hub received, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.hub_log.lock().expect("log").clone()
    }

    /// Every request the CDN received, in order.
    pub fn cdn_requests(&self) -> Vec<LoggedRequest> {
        self.shared.cdn_log.lock().expect("log").clone()
    }

    /// Forgets the requests recorded so far, on both listeners (the byte counters stay).
    pub fn clear_requests(&self) {
        self.shared.hub_log.lock().expect("log").clear();
        self.shared.cdn_log.lock().expect("log").clear();
    }

    /// File body bytes the CDN has handed to connections so far.
    pub fn cdn_bytes_sent(&self) -> u64 {
        self.shared.cdn_bytes.load(Ordering::SeqCst)
    }

    /// File body bytes the hub has handed to connections so far (regular files).
    pub fn hub_bytes_sent(&self) -> u64 {
        self.shared.hub_bytes.load(Ordering::SeqCst)
    }
}

impl BlobFaults for FakeHub {
    /// Applies `change` to the fault of `file`: a sha256, or a path that has one content in
    /// all the commits of all the repositories.
    fn fault(&self, file: &str, change: &dyn Fn(&mut Fault)) {
        let hub = self.shared.hub();
        let sha = if file.len() == 64 && file.bytes().all(|b| b.is_ascii_hexdigit()) {
            file.to_owned()
        } else {
            let shas: BTreeSet<&String> = hub
                .repos
                .values()
                .flat_map(|r| r.commits.values())
                .filter_map(|tree| tree.get(file).map(|f| &f.sha256))
                .collect();
            assert!(shas.len() == 1, "{file} names {} contents", shas.len());
            shas.into_iter().next().expect("one").clone()
        };
        change(
            self.shared
                .faults
                .lock()
                .expect("faults")
                .entry(sha)
                .or_default(),
        );
    }
}

/// A repository of a [`FakeHub`], to commit to and configure.
#[derive(Clone)]
pub struct Repo {
    shared: Arc<Shared>,
    kind: RepoKind,
    id: String,
}

impl Repo {
    fn with<T>(&self, f: impl FnOnce(&mut RepoState) -> T) -> T {
        let mut hub = self.shared.hub();
        f(hub
            .repos
            .get_mut(&(self.kind, self.id.clone()))
            .expect("repo"))
    }

    /// `org/name`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Commits `files` (path in the repository, which may hold folders; content; LFS or not)
    /// on top of `main`, adding or replacing them, and moves `main` to the new commit. The sha
    /// (returned) is derived from the repository, the parent and the files, so it is the same
    /// in every run.
    pub fn commit(&self, files: &[(&str, &[u8], Lfs)]) -> String {
        let added: Vec<(String, Arc<File>)> = files
            .iter()
            .map(|(path, bytes, lfs)| ((*path).to_owned(), Arc::new(File::new(bytes, *lfs))))
            .collect();
        {
            let mut hub = self.shared.hub();
            for (_, file) in &added {
                hub.blobs
                    .entry(file.sha256.clone())
                    .or_insert_with(|| file.bytes.clone());
            }
        }
        self.new_commit(|tree| tree.extend(added))
    }

    /// Commits the removal of `paths` on top of `main` and moves `main` to it.
    pub fn delete(&self, paths: &[&str]) -> String {
        self.new_commit(|tree| {
            for path in paths {
                tree.remove(*path);
            }
        })
    }

    /// A commit of `main`'s tree changed by `change`, which `main` then points at.
    fn new_commit(&self, change: impl FnOnce(&mut Tree)) -> String {
        let (kind, id) = (self.kind, self.id.clone());
        self.with(|repo| {
            let parent = repo.head().cloned();
            let mut tree = parent
                .as_ref()
                .map(|p| repo.commits[p].clone())
                .unwrap_or_default();
            change(&mut tree);
            let mut h = sha1::Sha1::new();
            h.update(format!("{kind:?} {id}\nparent {parent:?}\n"));
            for (path, file) in &tree {
                h.update(format!("{path} {}\n", file.blob_id));
            }
            let sha = hex::encode(h.finalize());
            repo.commits.insert(sha.clone(), tree);
            repo.branches.insert("main".to_owned(), sha.clone());
            sha
        })
    }

    /// The commit `main` points at.
    pub fn head(&self) -> String {
        self.with(|repo| repo.head().cloned().expect("a commit on main"))
    }

    /// Points branch `name` (`main`, `dev`, `refs/pr/1`…) at `commit`, a commit of this repo.
    pub fn set_branch(&self, name: &str, commit: &str) {
        self.with(|repo| {
            assert!(repo.commits.contains_key(commit), "no commit {commit}");
            repo.branches.insert(name.to_owned(), commit.to_owned());
        });
    }

    /// Tags the commit `main` points at.
    pub fn tag(&self, name: &str) -> &Self {
        let head = self.head();
        self.with(|repo| repo.tags.insert(name.to_owned(), head));
        self
    }

    /// Makes the repository private: only tokens with access ([`Repo::grant`]) see it.
    pub fn private(&self) -> &Self {
        self.with(|repo| repo.private = true);
        self
    }

    /// Makes the repository gated: its files only for tokens with access ([`Repo::grant`]).
    pub fn gated(&self) -> &Self {
        self.with(|repo| repo.gated = true);
        self
    }

    /// Gives `token` (which becomes a valid token of the hub) access to this repository.
    pub fn grant(&self, token: &str) -> &Self {
        self.shared.hub().tokens.insert(token.to_owned());
        self.with(|repo| repo.granted.insert(token.to_owned()));
        self
    }

    /// Adds a listing entry with this raw `path` (`../../etc/passwd`, `/abs`, `a/../../b`) to
    /// the info siblings and root tree listings of every revision, as a 5-byte regular file
    /// with nothing behind it.
    pub fn inject_entry(&self, path: &str) -> &Self {
        self.with(|repo| repo.injected.push(path.to_owned()));
        self
    }

    /// The resolve URL of `path` at `rev` (both percent-encoded as clients do).
    pub fn resolve_url(&self, rev: &str, path: &str) -> String {
        format!(
            "{}/{}{}/resolve/{}/{}",
            self.shared.hub_base,
            self.kind.url_prefix(),
            self.id,
            encode_segment(rev),
            encode_path(path)
        )
    }

    /// The API base of the repository: `{hub}/api/{type}s/{org}/{name}`.
    pub fn api_url(&self) -> String {
        format!(
            "{}/api/{}/{}",
            self.shared.hub_base,
            self.kind.api_segment(),
            self.id
        )
    }
}

/// The content of injected listing entries.
const INJECTED: &[u8] = b"evil\n";

/// A repository path percent-encoded per segment, slashes kept.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// What a path segment keeps unencoded (RFC 3986 unreserved), as Python's `quote`.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

fn record(log: &Mutex<Vec<LoggedRequest>>, method: &Method, uri: &Uri, headers: &HeaderMap) {
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
    };
    if let Ok(mut log) = log.lock() {
        log.push(request);
    }
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("header value")
}

/// A hub error: status, `X-Error-Code` (if any), `X-Error-Message` and `{"error": …}`.
fn hub_error(status: StatusCode, code: Option<&str>, message: &str) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({ "error": message }).to_string(),
    )
        .into_response();
    if let Some(code) = code {
        r.headers_mut().insert("x-error-code", value(code));
    }
    r.headers_mut().insert("x-error-message", value(message));
    r
}

fn json_response(body: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// What a request may see of a repository.
enum Access {
    Files,
    /// Info and tree, not files (gated, no access).
    ListingOnly(Denied),
}

/// A refusal, answered with [`hub_error`].
struct Denied {
    status: StatusCode,
    code: Option<&'static str>,
    message: String,
}

impl Denied {
    fn new(status: StatusCode, code: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn response(&self) -> Response {
        hub_error(self.status, self.code, &self.message)
    }
}

impl Hub {
    /// The repository and what the request may see of it, or the error to answer.
    fn access(
        &self,
        kind: RepoKind,
        id: &str,
        headers: &HeaderMap,
    ) -> Result<(&RepoState, Access), Denied> {
        let token = match headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => match v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
                Some(t) if self.tokens.contains(t) => Some(t),
                _ => {
                    return Err(Denied::new(
                        StatusCode::UNAUTHORIZED,
                        None,
                        "Invalid credentials in Authorization header",
                    ));
                }
            },
        };
        let repo = self.repos.get(&(kind, id.to_owned()));
        let allowed = |repo: &RepoState| {
            token.is_some_and(|t| repo.granted.contains(t) || self.required.as_deref() == Some(t))
        };
        let visible = repo.filter(|r| !(r.private || self.required.is_some()) || allowed(r));
        let Some(repo) = visible else {
            return Err(match token {
                None => Denied::new(
                    StatusCode::UNAUTHORIZED,
                    Some("RepoNotFound"),
                    "Invalid username or password.",
                ),
                Some(_) => Denied::new(
                    StatusCode::NOT_FOUND,
                    Some("RepoNotFound"),
                    "Repository not found",
                ),
            });
        };
        if repo.gated && !allowed(repo) {
            let what = format!("{} {id}", kind_word(kind));
            let (status, message) = match token {
                None => (
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "Access to {what} is restricted. You must have access to it and be \
                         authenticated to access it. Please log in."
                    ),
                ),
                Some(_) => (
                    StatusCode::FORBIDDEN,
                    format!(
                        "Access to {what} is restricted and you are not in the authorized list."
                    ),
                ),
            };
            return Ok((
                repo,
                Access::ListingOnly(Denied::new(status, Some("GatedRepo"), message)),
            ));
        }
        Ok((repo, Access::Files))
    }
}

fn kind_word(kind: RepoKind) -> &'static str {
    match kind {
        RepoKind::Model => "model",
        RepoKind::Dataset => "dataset",
        RepoKind::Space => "space",
    }
}

fn revision_not_found(rev: &str) -> Response {
    hub_error(
        StatusCode::NOT_FOUND,
        Some("RevisionNotFound"),
        &format!("Invalid rev id: {rev}"),
    )
}

fn entry_not_found(commit: &str) -> Response {
    let mut r = hub_error(
        StatusCode::NOT_FOUND,
        Some("EntryNotFound"),
        "Entry not found",
    );
    r.headers_mut().insert("x-repo-commit", value(commit));
    r
}

/// A request to the hub, with the state it is answered from.
struct Ctx<'a> {
    shared: &'a Shared,
    hub: &'a Hub,
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
}

/// The hub listener: routes on the raw path, split into percent-decoded segments.
async fn hub(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&shared.hub_log, &method, &uri, &headers);
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let segments: Vec<String> = uri
        .path()
        .split('/')
        .skip(1)
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let hub = shared.hub();
    let cx = Ctx {
        shared: &shared,
        hub: &hub,
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    match s.as_slice() {
        ["api", "resolve-cache", kind, org, name, commit, path @ ..] if !path.is_empty() => {
            match RepoKind::from_segment(kind) {
                Some(kind) => cx.resolve(
                    kind,
                    &format!("{org}/{name}"),
                    commit,
                    &path.join("/"),
                    true,
                ),
                None => not_found_page(),
            }
        }
        ["api", kind, org, name, rest @ ..] => {
            let Some(kind) = RepoKind::from_segment(kind) else {
                return not_found_page();
            };
            let id = format!("{org}/{name}");
            match rest {
                [] => cx.info(kind, &id, "main"),
                ["revision", rev @ ..] if !rev.is_empty() => cx.info(kind, &id, &rev.join("/")),
                ["tree", rev, path @ ..] => cx.tree(kind, &id, rev, &path.join("/")),
                _ => not_found_page(),
            }
        }
        [
            kind @ ("datasets" | "spaces"),
            org,
            name,
            "resolve",
            rev,
            path @ ..,
        ] if !path.is_empty() => {
            let kind = RepoKind::from_segment(kind).expect("datasets or spaces");
            cx.resolve(kind, &format!("{org}/{name}"), rev, &path.join("/"), false)
        }
        [org, name, "resolve", rev, path @ ..] if !path.is_empty() => cx.resolve(
            RepoKind::Model,
            &format!("{org}/{name}"),
            rev,
            &path.join("/"),
            false,
        ),
        _ => not_found_page(),
    }
}

fn not_found_page() -> Response {
    hub_error(
        StatusCode::NOT_FOUND,
        None,
        "Sorry, we can't find the page you are looking for.",
    )
}

impl Ctx<'_> {
    /// `GET /api/{type}s/{id}[/revision/{rev}][?blobs=true]`.
    fn info(&self, kind: RepoKind, id: &str, rev: &str) -> Response {
        let repo = match self.hub.access(kind, id, self.headers) {
            Ok((repo, _)) => repo,
            Err(denied) => return denied.response(),
        };
        let Some(commit) = repo.resolve(rev) else {
            return revision_not_found(rev);
        };
        let blobs = self
            .query()
            .iter()
            .any(|(k, v)| k == "blobs" && (v == "true" || v == "1"));
        let mut siblings: Vec<Value> = repo.commits[&commit]
            .iter()
            .map(|(path, file)| {
                let mut s = json!({ "rfilename": path });
                if blobs {
                    s["size"] = json!(file.bytes.len());
                    s["blobId"] = json!(file.blob_id);
                    if let Some(pointer_size) = file.pointer_size {
                        s["lfs"] = json!({
                            "sha256": file.sha256,
                            "size": file.bytes.len(),
                            "pointerSize": pointer_size,
                        });
                    }
                }
                s
            })
            .collect();
        for path in &repo.injected {
            let mut s = json!({ "rfilename": path });
            if blobs {
                s["size"] = json!(INJECTED.len());
                s["blobId"] = json!(git_blob_id(INJECTED));
            }
            siblings.push(s);
        }
        let (org, _) = id.split_once('/').unwrap_or((id, ""));
        let mut body = json!({
            "_id": &hex::encode(sha1::Sha1::digest(id))[..24],
            "id": id,
            "author": org,
            "sha": commit,
            "private": repo.private || self.hub.required.is_some(),
            "gated": if repo.gated { json!("manual") } else { json!(false) },
            "disabled": false,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "createdAt": "2026-01-02T03:04:05.000Z",
            "lastModified": "2026-01-02T03:04:05.000Z",
            "siblings": siblings,
        });
        if kind == RepoKind::Model {
            body["modelId"] = json!(id);
        }
        json_response(&body)
    }

    /// `GET /api/{type}s/{id}/tree/{rev}[/{dir}]?recursive=…&cursor=…`: the folders and
    /// files in `dir` (or under it, when recursive), a page at a time.
    fn tree(&self, kind: RepoKind, id: &str, rev: &str, dir: &str) -> Response {
        let repo = match self.hub.access(kind, id, self.headers) {
            Ok((repo, _)) => repo,
            Err(denied) => return denied.response(),
        };
        let Some(commit) = repo.resolve(rev) else {
            return revision_not_found(rev);
        };
        let query = self.query();
        let recursive = query
            .iter()
            .any(|(k, v)| k == "recursive" && (v == "true" || v == "1"));
        let cursor: usize = query
            .iter()
            .find(|(k, _)| k == "cursor")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut entries: BTreeMap<String, Value> = BTreeMap::new();
        for (path, file) in &repo.commits[&commit] {
            let Some(rel) = path.strip_prefix(&prefix) else {
                continue;
            };
            let parts: Vec<&str> = rel.split('/').collect();
            let shown = if recursive { parts.len() } else { 1 };
            // The folders on the way to the file, as far as the listing goes.
            for i in 1..parts.len().min(shown + 1) {
                let folder = format!("{prefix}{}", parts[..i].join("/"));
                let oid = hex::encode(sha1::Sha1::digest(format!("tree {commit} {folder}")));
                entries.entry(folder.clone()).or_insert_with(
                    || json!({"type": "directory", "oid": oid, "size": 0, "path": folder}),
                );
            }
            if parts.len() <= shown {
                let mut e = json!({
                    "type": "file",
                    "oid": file.blob_id,
                    "size": file.bytes.len(),
                    "path": path,
                });
                if let Some(pointer_size) = file.pointer_size {
                    e["lfs"] = json!({
                        "oid": file.sha256,
                        "size": file.bytes.len(),
                        "pointerSize": pointer_size,
                    });
                }
                entries.insert(path.clone(), e);
            }
        }
        if dir.is_empty() {
            for path in &repo.injected {
                let e = json!({
                    "type": "file",
                    "oid": git_blob_id(INJECTED),
                    "size": INJECTED.len(),
                    "path": path,
                });
                entries.insert(path.clone(), e);
            }
        } else if entries.is_empty() {
            return entry_not_found(&commit);
        }
        let all: Vec<Value> = entries.into_values().collect();
        let end = all.len().min(cursor.saturating_add(self.hub.page_size));
        let page = all.get(cursor..end).unwrap_or_default().to_vec();
        let mut response = json_response(&Value::Array(page));
        if end < all.len() {
            let base = format!("{}{}", self.shared.hub_base, self.uri.path());
            let mut next = url::Url::parse(&base).expect("next url");
            {
                let mut q = next.query_pairs_mut();
                for (k, v) in query.iter().filter(|(k, _)| k != "cursor") {
                    q.append_pair(k, v);
                }
                q.append_pair("cursor", &end.to_string());
            }
            response
                .headers_mut()
                .insert(header::LINK, value(&format!("<{next}>; rel=\"next\"")));
        }
        response
    }

    /// `HEAD`/`GET /{prefix}{id}/resolve/{rev}/{path}`, or `/api/resolve-cache/…` when
    /// `cache` (then `rev` is a commit): shape A, B or C.
    fn resolve(&self, kind: RepoKind, id: &str, rev: &str, path: &str, cache: bool) -> Response {
        let repo = match self.hub.access(kind, id, self.headers) {
            Ok((_, Access::ListingOnly(denied))) => return denied.response(),
            Ok((repo, Access::Files)) => repo,
            Err(denied) => return denied.response(),
        };
        let Some(commit) = repo.resolve(rev) else {
            return revision_not_found(rev);
        };
        let Some(file) = repo.commits[&commit].get(path) else {
            return entry_not_found(&commit);
        };
        let quoted_blob_id = format!("\"{}\"", file.blob_id);
        if file.pointer_size.is_some() {
            return self.lfs_redirect(file, path, &commit, &quoted_blob_id);
        }
        if self.hub.relative_redirects && !cache {
            let location = format!(
                "/api/resolve-cache/{}/{id}/{commit}/{}?etag={}",
                kind.api_segment(),
                encode_path(path),
                encode_segment(&quoted_blob_id)
            );
            return (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response();
        }
        let mut r = send(
            &self.shared.faults,
            self.method,
            self.headers,
            file.bytes.clone(),
            &file.sha256,
            &quoted_blob_id,
            self.shared.hub_bytes.clone(),
        );
        let h = r.headers_mut();
        h.insert("x-repo-commit", value(&commit));
        h.insert(header::CONTENT_TYPE, value("text/plain; charset=utf-8"));
        r
    }

    /// Shape C: `302` to the CDN, the file's metadata on the redirect itself.
    fn lfs_redirect(&self, file: &File, path: &str, commit: &str, etag: &str) -> Response {
        let name = path.rsplit('/').next().unwrap_or(path);
        let disposition = format!("attachment; filename*=UTF-8''{name}; filename=\"{name}\";");
        let location = format!(
            "{}/repos/{}/{}?response-content-disposition={}&Expires=4102444800&Signature=fake&Key-Pair-Id=FAKE",
            self.shared.cdn_base,
            &file.sha256[..2],
            file.sha256,
            url::form_urlencoded::byte_serialize(disposition.as_bytes()).collect::<String>()
        );
        let text = format!("Found. Redirecting to {location}");
        let mut r = Response::new(if *self.method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(text.clone())
        });
        *r.status_mut() = StatusCode::FOUND;
        let h = r.headers_mut();
        h.insert(header::LOCATION, value(&location));
        h.insert(header::CONTENT_LENGTH, text.len().into());
        h.insert(header::ETAG, value(etag));
        h.insert("x-repo-commit", value(commit));
        h.insert("x-linked-etag", value(&format!("\"{}\"", file.sha256)));
        h.insert("x-linked-size", file.bytes.len().into());
        r
    }

    fn query(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    }
}

/// The CDN listener: `HEAD`/`GET /repos/{xx}/{sha256}?…`, the blob of that sha256.
async fn cdn(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&shared.cdn_log, &method, &uri, &headers);
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let sha = uri.path().rsplit('/').next().unwrap_or("");
    let Some(bytes) = shared.hub().blobs.get(sha).cloned() else {
        return (StatusCode::NOT_FOUND, "NoSuchKey").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(md5::Md5::digest(&bytes)));
    let mut r = send(
        &shared.faults,
        &method,
        &headers,
        bytes,
        sha,
        &etag,
        shared.cdn_bytes.clone(),
    );
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, value("application/octet-stream"));
    h.insert(
        header::LAST_MODIFIED,
        value("Fri, 02 Jan 2026 03:04:05 GMT"),
    );
    let disposition = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "response-content-disposition")
        .map(|(_, v)| v.into_owned());
    if let Some(disposition) = disposition {
        h.insert(header::CONTENT_DISPOSITION, value(&disposition));
    }
    r
}
