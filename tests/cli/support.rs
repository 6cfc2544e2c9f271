//! The test context: a temporary project, a clean environment, and a fake HTTP server.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::cargo::CommandCargoExt;

/// A temporary directory holding a project (models.yaml, models.lock, a store), and a
/// machine cache of its own beside it, so no test shares bytes with another (or with the
/// real home's cache) unless it says so with `MODELCTL_CACHE`.
pub struct Project {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

/// The outcome of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to the end and keeps what it printed.
    fn of(mut cmd: std::process::Command) -> Self {
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().expect("run modelctl");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            cache: tempfile::tempdir().expect("cache tempdir"),
        }
    }

    /// This project's machine cache (`MODELCTL_CACHE`).
    pub fn cache_dir(&self) -> &Path {
        self.cache.path()
    }

    /// A project whose models.yaml is `manifest`.
    pub fn with_manifest(manifest: &str) -> Self {
        let p = Self::new();
        p.write("models.yaml", manifest);
        p
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).expect("read")
    }

    /// Runs `modelctl ARGS` in the project with no colour and none of the user's settings.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// [`Project::run`] with extra environment variables (short HTTP timeouts, for instance).
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Run::of(self.command(args, env))
    }

    /// [`Project::run`] from `dir`, a directory of the project (made if missing).
    pub fn run_in(&self, dir: &str, args: &[&str]) -> Run {
        let cwd = self.path(dir);
        std::fs::create_dir_all(&cwd).expect("mkdir");
        let mut cmd = self.command(args, &[]);
        cmd.current_dir(cwd);
        Run::of(cmd)
    }

    /// The command [`Project::run_env`] runs, for tests that spawn, watch and kill it.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
        let mut cmd = std::process::Command::cargo_bin("modelctl").expect("binary");
        cmd.args(args)
            .current_dir(self.root())
            .env_remove("MODELCTL_LOG")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("HOME", self.root())
            .env("MODELCTL_CACHE", self.cache_dir())
            .env_remove("MODELCTL_NO_CACHE")
            .env_remove("MODELCTL_MANIFEST")
            .env_remove("MODELCTL_STORE")
            .env_remove("MODELCTL_HTTP_TIMEOUT")
            .env_remove("MODELCTL_HTTP_RETRIES")
            .env_remove("MODELCTL_HTTP_RETRY_BASE_MS")
            .env_remove("MODELCTL_LOCK_TIMEOUT")
            .env_remove("MODELCTL_TEST_PYTHON")
            .env_remove("MODELCTL_FAILPOINT")
            .env_remove("MODELCTL_API_TOKEN")
            .env_remove("MODELCTL_MIRROR")
            .env_remove("MODELCTL_MIRROR_ONLY")
            .env_remove("MODELCTL_REGISTRY_AUTH")
            .env_remove("DOCKER_CONFIG")
            .env_remove("MODELCTL_TEST_HEADER_TIMEOUT_MS")
            .env_remove("MODELCTL_TEST_MAX_CONNECTIONS")
            .env_remove("OLLAMA_HOST")
            .env_remove("OLLAMA_MODELS")
            .env_remove("HF_ENDPOINT")
            .env_remove("HF_TOKEN")
            .env_remove("HUGGING_FACE_HUB_TOKEN")
            .env_remove("HF_TOKEN_PATH")
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_CACHE")
            .env_remove("HUGGINGFACE_HUB_CACHE")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY");
        cmd.envs(env.iter().copied());
        cmd
    }

    /// Replaces the temporary path and machine-dependent figures for snapshots.
    pub fn filter(&self, text: &str) -> String {
        let root = self.root().display().to_string();
        let text = text.replace(&root, "[ROOT]");

        regex_free(&text)
    }
}

/// `82.3 GiB free at` → `[FREE] free at` (the free space of the machine running the tests).
fn regex_free(text: &str) -> String {
    text.lines()
        .map(|line| match line.find(" free at ") {
            Some(end) => {
                let start = line[..end].rfind(", ").map_or(0, |i| i + 2);
                format!("{}[FREE]{}", &line[..start], &line[end..])
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

/// A sha256 in hex, for manifests written by tests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    modelctl::digest::Sha256::of(bytes).hex()
}

/// A file:// URL for a path.
pub fn file_url(path: &Path) -> String {
    url::Url::from_file_path(path)
        .expect("absolute path")
        .to_string()
}

/// A project with one `url` model `id` of type `kind`, whose file is `src/<file>` holding
/// `bytes` (a `file://` URL), applied: its blob is in the store, its sha256 in models.lock.
pub fn applied_file_model(id: &str, kind: &str, file: &str, bytes: &[u8]) -> Project {
    let project = Project::new();
    std::fs::create_dir_all(project.path("src")).expect("dir");
    let path = project.path(&format!("src/{file}"));
    std::fs::write(&path, bytes).expect("write");
    project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  {id}:\n    type: {kind}\n    source: {{ url: \"{}\" }}\n",
            file_url(&path)
        ),
    );
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    project
}

/// A fake file server on `127.0.0.1:0`, speaking plain HTTP as a CDN would: HEAD and GET with
/// `Content-Length`, `ETag`, `Last-Modified` and `Range`; a redirect; a 404; a server that
/// refuses HEAD; one that answers HEAD gzip-encoded, one that encodes every answer, and one
/// whose first HEAD is a `503`. It
/// counts requests so tests can assert what was asked.
pub struct FileServer {
    pub base: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _runtime: tokio::runtime::Runtime,
}

pub const SERVED: &[u8] = b"pretend these are model weights\n";
/// The `Content-Length` the gzip routes give: smaller than [`SERVED`], as compressed bodies are.
pub const GZIPPED_LEN: usize = 20;

impl FileServer {
    pub fn start() -> Self {
        use axum::Router;
        use axum::extract::State;
        use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
        use axum::response::{IntoResponse, Response};

        type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

        async fn handle(
            State(log): State<Log>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
        ) -> Response {
            let seen = match log.lock() {
                Ok(mut l) => {
                    let line = format!("{method} {}", uri.path());
                    l.push(line.clone());
                    l.iter().filter(|l| **l == line).count()
                }
                Err(_) => 0,
            };
            let file = |status: StatusCode, extra: &[(header::HeaderName, String)]| {
                let mut r = (
                    status,
                    if method == Method::HEAD {
                        Vec::new()
                    } else {
                        SERVED.to_vec()
                    },
                )
                    .into_response();
                let h = r.headers_mut();
                h.insert(header::CONTENT_LENGTH, SERVED.len().into());
                h.insert(header::ETAG, "\"v1-etag\"".parse().expect("etag"));
                h.insert(
                    header::LAST_MODIFIED,
                    "Wed, 21 Oct 2026 07:28:00 GMT".parse().expect("date"),
                );
                h.insert(header::ACCEPT_RANGES, "bytes".parse().expect("ranges"));
                for (k, v) in extra {
                    h.insert(k.clone(), v.parse().expect("value"));
                }
                r
            };
            match uri.path() {
                "/weights.bin" => file(StatusCode::OK, &[]),
                "/moved/weights.bin" => {
                    (StatusCode::FOUND, [(header::LOCATION, "/weights.bin")]).into_response()
                }
                "/nohead/weights.bin" if method == Method::HEAD => {
                    StatusCode::METHOD_NOT_ALLOWED.into_response()
                }
                "/nohead/weights.bin" if headers.get(header::RANGE).is_some() => {
                    let mut r = (StatusCode::PARTIAL_CONTENT, SERVED[..1].to_vec()).into_response();
                    let total = SERVED.len();
                    r.headers_mut().insert(
                        header::CONTENT_RANGE,
                        format!("bytes 0-0/{total}").parse().expect("range"),
                    );
                    r
                }
                // A HEAD answered compressed whatever `Accept-Encoding` says, with the
                // compressed body's length; a ranged GET answered as it should be.
                "/gzip-head/weights.bin" if method == Method::HEAD => file(
                    StatusCode::OK,
                    &[
                        (header::CONTENT_ENCODING, "gzip".to_owned()),
                        (header::CONTENT_LENGTH, GZIPPED_LEN.to_string()),
                    ],
                ),
                "/gzip-head/weights.bin" if headers.get(header::RANGE).is_some() => {
                    let mut r = (StatusCode::PARTIAL_CONTENT, SERVED[..1].to_vec()).into_response();
                    let total = SERVED.len();
                    r.headers_mut().insert(
                        header::CONTENT_RANGE,
                        format!("bytes 0-0/{total}").parse().expect("range"),
                    );
                    r
                }
                // Compressed whatever is asked, ranges ignored.
                "/gzip-always/weights.bin" => {
                    let mut r = (
                        StatusCode::OK,
                        if method == Method::HEAD {
                            Vec::new()
                        } else {
                            vec![0x1f; GZIPPED_LEN]
                        },
                    )
                        .into_response();
                    let h = r.headers_mut();
                    h.insert(header::CONTENT_ENCODING, "gzip".parse().expect("gzip"));
                    h.insert(header::CONTENT_LENGTH, GZIPPED_LEN.into());
                    r
                }
                "/private/weights.bin" => StatusCode::FORBIDDEN.into_response(),
                // Overloaded for its first HEAD (`503` with `Retry-After: 0`), fine after.
                "/flaky/weights.bin" if method == Method::HEAD && seen == 1 => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "0")],
                )
                    .into_response(),
                "/flaky/weights.bin" => file(StatusCode::OK, &[]),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }

        let requests: Log = Default::default();
        let (runtime, listener, addr) = listen();
        serve(
            &runtime,
            listener,
            Router::new().fallback(handle).with_state(requests.clone()),
        );
        Self {
            base: format!("http://{addr}"),
            requests,
            _runtime: runtime,
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// What the shell's completion script asks on Tab, as bash asks it.
pub fn complete(project: &Project, words: &[&str]) -> Vec<String> {
    let index = (words.len() - 1).to_string();
    let mut args = vec!["--", "modelctl"];
    args.extend_from_slice(&words[1..]);
    let run = project.run_env(
        &args,
        &[
            ("COMPLETE", "bash"),
            ("_CLAP_COMPLETE_INDEX", &index),
            ("_CLAP_COMPLETE_COMP_TYPE", "9"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
        .split(['\u{b}', '\n'])
        .map(|s| s.trim().to_owned())
        .collect()
}

/// A fake server's own runtime (one worker) and a listener on a free port of 127.0.0.1: bound
/// first, since the address may go into what it serves. Keep the runtime alive as long as the
/// server.
pub fn listen() -> (
    tokio::runtime::Runtime,
    tokio::net::TcpListener,
    std::net::SocketAddr,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    (runtime, listener, addr)
}

/// Serves `app` on `listener` in `runtime`, in the background.
pub fn serve(
    runtime: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    app: axum::Router,
) {
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

/// xorshift64*: a small deterministic generator for the model-based tests, so a seed replays
/// a sequence exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// One of `items`, which must not be empty.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}
