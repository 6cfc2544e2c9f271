//! The one place where flags and environment become settings.
//!
//! Every field of the parsed global flags is destructured here, so a new flag cannot be
//! forgotten; commands read `Settings`, never the environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{ColorChoice, GlobalArgs};
use crate::manifest::Manifest;
use crate::plan::Style;
use crate::printer::{Level, Printer};
use crate::sources::hf::HubConfig;

/// Resolved settings for one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub manifest_path: PathBuf,
    pub lock_path: PathBuf,
    store_override: Option<PathBuf>,
    /// The machine cache (`--cache`, `MODELCTL_CACHE`, else the user's cache directory), or
    /// `None` with `--no-cache`/`MODELCTL_NO_CACHE=1` or where no cache directory is known.
    pub cache: Option<PathBuf>,
    pub network: Network,
    pub color: ColorChoice,
    /// How the run writes: data on stdout, talk on stderr, at the level `-q`/`-v` will set.
    pub printer: Printer,
    /// HTTP timeouts and retries (`MODELCTL_HTTP_TIMEOUT`, `MODELCTL_HTTP_RETRIES`,
    /// `MODELCTL_HTTP_RETRY_BASE_MS`).
    pub net: crate::net::NetConfig,
    /// How long to wait for another modelctl's store lock (`MODELCTL_LOCK_TIMEOUT`, seconds).
    pub lock_timeout: std::time::Duration,
    /// The Hub: `HF_ENDPOINT`, the token (`HF_TOKEN`, `HF_TOKEN_PATH`, `$HF_HOME/token`) and
    /// `HF_HUB_CACHE`.
    pub hf: std::sync::Arc<HubConfig>,
    /// Things worth telling the user before the command runs (a token file others can read).
    pub warnings: Vec<String>,
    /// A testing hook, like git's `GIT_TEST_*` variables: `MODELCTL_FAILPOINT=<name>` makes the
    /// process abort at that failpoint (see [`crate::failpoint`]; the crash tests use it).
    pub failpoint: Option<String>,
    /// `OLLAMA_HOST`: where the Ollama daemon listens (default `127.0.0.1:11434`).
    pub ollama_host: Option<String>,
    /// `OLLAMA_MODELS`: Ollama's model directory, filled directly when no daemon runs.
    pub ollama_models: Option<PathBuf>,
    /// Where the local daemon's store may be, for reading the layers of a model pinned from
    /// the daemon: `OLLAMA_MODELS`, `~/.ollama/models`, the Linux service's directory.
    pub ollama_stores: Vec<PathBuf>,
    /// `MODELCTL_REGISTRY_AUTH` (`user:password` for the registry `push` writes to), hidden
    /// from `Debug` as a [`crate::net::Token`].
    pub registry_auth: Option<crate::net::Token>,
    /// The docker config `push` reads logins from: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// `MODELCTL_MIRROR`: this node's mirrors, comma-separated, tried before the manifest's
    /// `mirrors:` (checked when the project reads them, [`crate::registry::mirror::mirrors`]).
    pub mirror_env: Option<String>,
    /// `--mirror-only` or `MODELCTL_MIRROR_ONLY=1`: a locked file comes from a mirror or not
    /// at all, never from its origin.
    pub mirror_only: bool,
    /// `MODELCTL_PUSH_CHUNK_MIB`: `push` uploads blobs larger than this in chunks of this
    /// many bytes; `0` uploads every blob whole.
    pub push_chunk: u64,
}

/// Cargo's `--locked`, `--offline`, `--frozen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Network {
    /// Fail rather than change models.lock; holds the flag the user passed, for messages.
    pub locked: Option<&'static str>,
    pub offline: bool,
}

/// The default store, relative to the manifest.
pub const DEFAULT_STORE: &str = "models";

/// The manifest's file name.
pub const MANIFEST_NAME: &str = "models.yaml";

/// `--manifest PATH`: the file itself, or `models.yaml` in a directory.
fn manifest_at(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(MANIFEST_NAME)
    } else {
        path.to_path_buf()
    }
}

/// The first `models.yaml` in `start` or a directory above it, as cargo finds Cargo.toml.
/// The search stops at a repository's root (a directory holding `.git`): a project inside a
/// git checkout never picks up a models.yaml from outside it, such as one in `$HOME`.
pub fn find_manifest(start: &Path) -> Option<PathBuf> {
    for dir in start.ancestors() {
        let candidate = dir.join(MANIFEST_NAME);
        if candidate.is_file() {
            return Some(candidate);
        }
        if dir.join(".git").exists() {
            return None;
        }
    }
    None
}

/// `-q` and `-v`s as the printer's level.
fn level(quiet: bool, verbose: u8) -> Level {
    match (quiet, verbose) {
        (true, _) => Level::Quiet,
        (false, 0) => Level::Normal,
        (false, 1) => Level::Verbose,
        (false, _) => Level::Debug,
    }
}

impl Settings {
    pub fn resolve(global: &GlobalArgs) -> Self {
        let GlobalArgs {
            manifest,
            // `-C` has already changed the current directory (see `commands::run`).
            directory: _,
            store,
            cache,
            no_cache,
            locked,
            offline,
            frozen,
            verbose,
            quiet,
            color,
        } = global;
        let manifest_path = match manifest {
            Some(path) => manifest_at(&absolute(path.clone())),
            None => {
                let cwd = absolute(PathBuf::from("."));
                find_manifest(&cwd).unwrap_or_else(|| cwd.join(MANIFEST_NAME))
            }
        };
        let lock_path = manifest_path.with_file_name("models.lock");
        let locked = if *frozen {
            Some("--frozen")
        } else if *locked {
            Some("--locked")
        } else {
            None
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (hf, warnings) = hub_from_env(&env);
        let ollama_models = env("OLLAMA_MODELS").map(|p| absolute(PathBuf::from(p)));
        Self {
            manifest_path,
            lock_path,
            store_override: store.clone().map(absolute),
            cache: machine_cache(cache.as_deref(), *no_cache, &env),
            network: Network {
                locked,
                offline: *offline || *frozen || env("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)),
            },
            color: *color,
            printer: Printer::new(level(*quiet, *verbose)),
            net: net_from_env(),
            lock_timeout: Duration::from_secs_f64(
                env_number("MODELCTL_LOCK_TIMEOUT").unwrap_or(300.0),
            ),
            hf: std::sync::Arc::new(hf),
            warnings,
            failpoint: std::env::var("MODELCTL_FAILPOINT").ok(),
            ollama_host: env("OLLAMA_HOST"),
            ollama_models: ollama_models.clone(),
            ollama_stores: ollama_models
                .into_iter()
                .chain(env("HOME").map(|h| PathBuf::from(h).join(".ollama/models")))
                .chain(std::iter::once(PathBuf::from(
                    "/usr/share/ollama/.ollama/models",
                )))
                .collect(),
            registry_auth: env(crate::registry::auth::AUTH_ENV)
                .map(|v| crate::net::Token::new(v, crate::registry::auth::AUTH_ENV)),
            docker_config: env("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".docker")))
                .map(|dir| dir.join("config.json")),
            mirror_env: env(crate::registry::mirror::MIRROR_ENV),
            mirror_only: env(crate::registry::mirror::MIRROR_ONLY_ENV)
                .is_some_and(|v| crate::registry::mirror::is_on(&v)),
            push_chunk: env_number(crate::registry::session::CHUNK_ENV)
                .map_or(crate::registry::session::DEFAULT_CHUNK, |mib| {
                    (mib * 1_048_576.0) as u64
                }),
        }
    }

    /// The store root: `--store`/`MODELCTL_STORE`, else the manifest's `store:` relative to
    /// the manifest's directory, else `models/` beside it.
    pub fn store_root(&self, manifest: &Manifest) -> PathBuf {
        if let Some(dir) = &self.store_override {
            return dir.clone();
        }
        let rel = manifest.store.as_deref().unwrap_or(DEFAULT_STORE);
        normalize(&self.manifest_dir().join(rel))
    }

    /// The directory of models.yaml: the base of the store and of relative `url:` paths.
    pub fn manifest_dir(&self) -> PathBuf {
        self.manifest_path
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf()
    }

    /// Colour for a stream, honouring `--color`, `NO_COLOR` and whether it is a terminal.
    pub fn style_for(&self, stream: &impl anstream::stream::RawStream) -> Style {
        let choice = match self.color {
            ColorChoice::Always => anstream::ColorChoice::Always,
            ColorChoice::Never => anstream::ColorChoice::Never,
            ColorChoice::Auto => anstream::AutoStream::choice(stream),
        };
        match choice {
            anstream::ColorChoice::Never => Style::Plain,
            _ => Style::Color,
        }
    }
}

/// Where the machine cache is: `--cache DIR`/`MODELCTL_CACHE`, else
/// `$XDG_CACHE_HOME/modelctl`, else `~/.cache/modelctl`; none when switched off or when
/// neither variable says where the user's cache directory is.
fn machine_cache(
    flag: Option<&Path>,
    off: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<PathBuf> {
    if off {
        return None;
    }
    if let Some(dir) = flag {
        return Some(normalize(&absolute(dir.to_path_buf())));
    }
    env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|dir| normalize(&dir.join("modelctl")))
}

/// A non-negative number from the environment; anything else counts as unset.
fn env_number(name: &str) -> Option<f64> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// `huggingface_hub`'s truthy values (`1`, `ON`, `YES`, `TRUE`).
fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// The Hub settings with `huggingface_hub`'s names and defaults: `HF_ENDPOINT`,
/// `HF_HOME` (default `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`), `HF_HUB_CACHE`
/// (default `$HF_HOME/hub`, legacy `HUGGINGFACE_HUB_CACHE`), and the token.
fn hub_from_env(env: &dyn Fn(&str) -> Option<String>) -> (HubConfig, Vec<String>) {
    let home = env("HOME").map(PathBuf::from).unwrap_or_default();
    let hf_home = env("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
        env("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache"))
            .join("huggingface")
    });
    let cache_dir = env("HF_HUB_CACHE")
        .or_else(|| env("HUGGINGFACE_HUB_CACHE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| hf_home.join("hub"));
    let endpoint = env("HF_ENDPOINT")
        .map(|e| e.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| crate::sources::hf::DEFAULT_ENDPOINT.to_owned());
    let found = crate::sources::hf::token::discover(env, &hf_home);
    (
        HubConfig {
            endpoint,
            token: found.token,
            cache_dir: absolute(cache_dir),
        },
        found.warning.into_iter().collect(),
    )
}

fn net_from_env() -> crate::net::NetConfig {
    let mut net = crate::net::NetConfig::default();
    if let Some(secs) = env_number("MODELCTL_HTTP_TIMEOUT").filter(|s| *s > 0.0) {
        net.read_timeout = Duration::from_secs_f64(secs);
        // Shorter than the read timeout, which also runs while connecting: otherwise a port
        // that never answers would be reported as a stall instead of a connect timeout.
        net.connect_timeout = net
            .connect_timeout
            .min((net.read_timeout / 2).max(Duration::from_millis(100)));
    }
    if let Some(n) = env_number("MODELCTL_HTTP_RETRIES") {
        net.retry.attempts = (n as u32).max(1);
    }
    if let Some(ms) = env_number("MODELCTL_HTTP_RETRY_BASE_MS") {
        net.retry.base = Duration::from_millis(ms as u64);
        net.retry.cap = net.retry.cap.max(net.retry.base);
    }
    net
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return normalize(&path);
    }
    std::env::current_dir()
        .map(|cwd| normalize(&cwd.join(&path)))
        .unwrap_or(path)
}

/// Removes `.` components and folds `dir/..` lexically, for readable paths in messages.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
