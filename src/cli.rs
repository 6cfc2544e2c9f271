//! The command line, as plain data: clap definitions, nothing else.
//!
//! The `///` comment on each argument is its `--help` text. Turning these flags and the
//! environment into settings happens in [`crate::settings`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::ArgValueCandidates;

/// A declarative reconciler for AI model files: plan, apply and pin models from the
/// HuggingFace Hub, URLs and Ollama.
#[derive(Debug, Parser)]
#[command(name = "modelctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The manifest, or a directory holding models.yaml [default: the first models.yaml in
    /// this directory or above it, up to the repository's root]
    #[arg(long, global = true, env = "MODELCTL_MANIFEST", value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Run as if modelctl was started in DIR (as `git -C` and `cargo -C`)
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// The model store, overriding the manifest's `store:`
    #[arg(long, global = true, env = "MODELCTL_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// The machine cache of verified blobs that every project's store links its files from
    /// [default: `$XDG_CACHE_HOME/modelctl`, else `~/.cache/modelctl`]
    #[arg(long, global = true, env = "MODELCTL_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Use no machine cache (whatever `--cache` says): the store keeps its own bytes and
    /// shares them with no other project, for containers and CI caches
    #[arg(long, global = true, env = "MODELCTL_NO_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cache: bool,
    /// Require models.lock to be up to date: fail instead of changing it
    #[arg(long, global = true)]
    pub locked: bool,
    /// Resolve nothing online: plan from models.lock alone (apply still downloads the files
    /// it pins)
    #[arg(long, global = true)]
    pub offline: bool,
    /// Both `--locked` and `--offline`: models.lock exactly as it is, nothing resolved
    #[arg(long, global = true)]
    pub frozen: bool,
    /// Say more: each resolution step and HTTP request (`-vv`: timings, retries, chunk plans)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print only errors, warnings and the data asked for (a successful `apply -q` prints
    /// nothing)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to use colour
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a project: a models.yaml to begin from, its schema, and the store in .gitignore
    Init(InitArgs),
    /// Show what `apply` would download, link, verify, swap and delete
    Plan(PlanArgs),
    /// Make the store match the plan: download, verify, link, swap and delete
    Apply(ApplyArgs),
    /// Show each declared model: declared, present, active, drifted
    Status(StatusArgs),
    /// Resolve every model not pinned in models.lock, and write the lock
    Lock(LockArgs),
    /// Re-resolve models (all when none is named) and show how their pins changed
    Update(UpdateArgs),
    /// Show which locked models have a newer version upstream, and what updating would fetch
    Outdated(OutdatedArgs),
    /// List the declared models (of one type with `--type`), as `status` shows them
    List(ListArgs),
    /// Show one model: its pin, files, activity, requirements and whether this machine meets them
    Show(ShowArgs),
    /// Keep the store matching models.yaml: apply on every save, repair drift, swap active models
    Watch(WatchArgs),
    /// Serve the HTTP API: models, the active ones, storage, the plan; activate, switch, deactivate
    Serve(ServeArgs),
    /// Show this machine's GPUs, memory and disk, and whether the active models fit
    Doctor(DoctorArgs),
    /// Show the store's bytes per type and model, shared bytes, and what could be reclaimed
    Storage(StorageArgs),
    /// Re-hash the store and report every file that differs from models.lock
    Verify(VerifyArgs),
    /// Remove blobs no model uses and stale partial downloads
    Gc(GcArgs),
    /// The machine cache every project's store links its verified blobs from: where it is,
    /// what each project uses, and pruning what none needs
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Push locked models to an OCI registry: store files as ModelPack artifacts, Ollama models
    /// (from a local Ollama store) as their own manifest
    Push(PushArgs),
    /// Print the JSON Schema of models.yaml
    Schema,
    /// Print a shell completion script, which completes model ids and types too (`source <(modelctl completions bash)`)
    Completions(CompletionsArgs),
    /// Print the man page, in roff (`modelctl man > ~/.local/share/man/man1/modelctl.1`)
    Man,
    /// Make a model the active one of its type in models.yaml
    Activate(ActivateArgs),
    /// Remove a type's active model from models.yaml
    Deactivate(DeactivateArgs),
    /// Set or unset keys of a model's `config` in models.yaml
    Config(ConfigArgs),
    /// Remove models (and their `active` entries) from models.yaml
    Remove(RemoveArgs),
    /// Declare a new model in models.yaml
    Add(Box<AddArgs>),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project's directory, created if needed [default: the current directory]
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// The model
    #[arg(value_name = "ID", add = ArgValueCandidates::new(crate::completion::model_ids))]
    pub id: String,
    /// The type to activate it as (default: its own type; any other is refused)
    #[arg(long = "type", value_name = "TYPE", add = ArgValueCandidates::new(crate::completion::types))]
    pub kind: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeactivateArgs {
    /// A type, or the id of an active model
    #[arg(value_name = "TYPE|ID", add = ArgValueCandidates::new(crate::completion::types_and_active_ids))]
    pub target: String,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The model
    #[arg(value_name = "ID", add = ArgValueCandidates::new(crate::completion::model_ids))]
    pub id: String,
    /// Keys to set; values are YAML scalars (numbers, `true`/`false`, otherwise strings)
    #[arg(value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Keys to remove
    #[arg(long, value_name = "KEY")]
    pub unset: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The models
    #[arg(value_name = "ID", required = true, num_args = 1.., add = ArgValueCandidates::new(crate::completion::model_ids))]
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["hf", "url", "ollama", "oci", "from_ollama", "from_hf_cache"])))]
pub struct AddArgs {
    /// The new model's id
    #[arg(value_name = "ID", required_unless_present_any = ["from_ollama", "from_hf_cache"])]
    pub id: Option<String>,
    /// Its type: a built-in type or one declared under `types:` (with `--from-ollama`: `llm`
    /// unless given; with `--from-hf-cache`: what the files show unless given)
    #[arg(long = "type", value_name = "TYPE", required_unless_present_any = ["from_ollama", "from_hf_cache"], add = ArgValueCandidates::new(crate::completion::types))]
    pub kind: Option<String>,
    /// Declare the model repositories the Hugging Face cache holds and models.yaml lacks
    /// (those named, `org/name`, or all), pinned at the cached commit, with the cached files
    #[arg(
        long,
        value_name = "REPO",
        num_args = 0..,
        conflicts_with_all = ["id", "hf", "url", "ollama", "oci", "from_ollama", "description", "activate"]
    )]
    pub from_hf_cache: Option<Vec<String>>,
    /// Declare the models the Ollama daemon has and models.yaml lacks: those named, or all
    #[arg(
        long,
        value_name = "NAME",
        num_args = 0..,
        conflicts_with_all = ["id", "hf", "url", "ollama", "oci", "description", "activate"]
    )]
    pub from_ollama: Option<Vec<String>>,
    /// A HuggingFace Hub repository, `org/name`
    #[arg(long, value_name = "ORG/NAME")]
    pub hf: Option<String>,
    /// The Hub branch, tag or commit (default `main`)
    #[arg(long, value_name = "REV", requires = "hf")]
    pub revision: Option<String>,
    /// Glob patterns of Hub files to fetch (default: every file)
    #[arg(long, value_name = "GLOB", requires = "hf", num_args = 1..)]
    pub include: Vec<String>,
    /// The URL of a single file, or the path of a local one (relative to the current
    /// directory; written relative to models.yaml)
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The expected SHA-256 of the URL's file
    #[arg(long, value_name = "HEX", requires = "url")]
    pub sha256: Option<String>,
    /// An Ollama model, `name:tag`
    #[arg(long, value_name = "NAME")]
    pub ollama: Option<String>,
    /// An artifact in an OCI registry, `REGISTRY/NAMESPACE/NAME:TAG` or `…@sha256:<hex>`
    #[arg(long, value_name = "REF")]
    pub oci: Option<String>,
    /// A human description
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Also make it its type's active model
    #[arg(long)]
    pub activate: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print the plan as JSON (a stable, documented document) instead of text
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Also save the plan to FILE, for `apply FILE`
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Download locked files from the mirrors only, never from their origin (also MODELCTL_MIRROR_ONLY=1)
    #[arg(long)]
    pub mirror_only: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `plan --out FILE`: applied exactly, or refused if anything changed since
    #[arg(value_name = "PLANFILE")]
    pub plan_file: Option<PathBuf>,
    /// Approve deletions without asking (required when there is no terminal to ask on)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print one JSON event per line (plan, start, progress, done, error, step, summary)
    #[arg(long)]
    pub json: bool,
    /// Files downloaded at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Connections in all; a large file is fetched over several at once
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: u16,
    /// Download locked files from the mirrors only, never from their origin (also MODELCTL_MIRROR_ONLY=1)
    #[arg(long)]
    pub mirror_only: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The models to re-resolve (default: all)
    #[arg(value_name = "ID", add = ArgValueCandidates::new(crate::completion::model_ids))]
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only models of this type
    #[arg(long = "type", value_name = "TYPE", add = ArgValueCandidates::new(crate::completion::types))]
    pub kind: Option<String>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Also carry out deletions (models no longer declared); without it they are only reported
    #[arg(long)]
    pub prune: bool,
    /// Seconds between drift checks of the store (a file deleted or altered is repaired)
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub interval: f64,
    /// Files downloaded at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Connections in all; a large file is fetched over several at once
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: u16,
    /// Also serve the HTTP API here (as `modelctl serve` does), with every round on /api/events
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on; anything but loopback exposes the API to the network and needs
    /// MODELCTL_API_TOKEN (then every request must carry it)
    #[arg(long, default_value = "127.0.0.1:7420", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StorageArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The model
    #[arg(value_name = "ID", add = ArgValueCandidates::new(crate::completion::model_ids))]
    pub id: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OutdatedArgs {
    /// The models to check (default: all)
    #[arg(value_name = "ID", add = ArgValueCandidates::new(crate::completion::model_ids))]
    pub ids: Vec<String>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Write nothing; exit 1 when models.lock is not up to date
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only these models (default: every model in models.yaml)
    #[arg(value_name = "ID", add = ArgValueCandidates::new(crate::completion::model_ids))]
    pub ids: Vec<String>,
    /// Print the report as JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Re-fetch just the damaged files (relink, or remove strays), then exit 0 if all were repaired
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Only these models (default: every locked model)
    #[arg(value_name = "ID", add = ArgValueCandidates::new(crate::completion::model_ids))]
    pub ids: Vec<String>,
    /// The registry and namespace: `host[:port]/ns` (https), or `http://host:port/ns` without TLS
    #[arg(long, value_name = "REGISTRY/NAMESPACE")]
    pub to: String,
    /// A tag to set besides the pin's own `pin-…` tag (such as `latest`)
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Blobs uploaded at a time
    #[arg(long, short = 'j', value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Print what was pushed as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print what would be removed, and remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Keep anything modified more recently than this: `1h`, `30m`, `45s`, `1h30m`, `0`
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub grace: Duration,
    /// Print the report as JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the machine cache's directory
    Dir,
    /// Show the projects that use the cache (its roots), the bytes each uses, the bytes they
    /// share and the bytes `cache prune` would free
    Status(CacheStatusArgs),
    /// Remove blobs that no live project's models.lock pins and no store links
    Prune(CachePruneArgs),
}

#[derive(Debug, Args)]
pub struct CacheStatusArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CachePruneArgs {
    /// Print what would be removed, and remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Keep anything modified more recently than this: `1h`, `30m`, `45s`, `1h30m`, `0`
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub grace: Duration,
    /// Print the report as JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Parses a number of seconds, fractions allowed (`300`, `0.5`).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("`{text}` is not a number of seconds (such as `300` or `0.5`)"))
}

/// Parses `45s`, `30m`, `2h`, `1d`, sums such as `1h30m` or `1h 30m`, fractions (`1.5h`) and a
/// bare `0`, with humantime (which also knows `90min`, `2days`, `1week`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text != "0" && text.parse::<f64>().is_ok() {
        return Err(format!(
            "`{text}` ends without a unit; write `{text}s`, `{text}m` or `{text}h`"
        ));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write a number and a unit: `45s`, `30m`, `2h`, `1h30m`, `1d`")
    })
}

/// `modelctl -v --version` (in any order, `-V` too): the long version, as `rustc -vV` has it.
pub fn wants_long_version(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    let (mut version, mut verbose) = (false, false);
    for arg in args.into_iter().skip(1) {
        match arg.to_str() {
            Some("--version" | "-V") => version = true,
            Some("--verbose" | "-v") => verbose = true,
            Some("--") => break,
            Some(a) if !a.starts_with('-') => return false,
            _ => {}
        }
    }
    version && verbose
}

/// The version, the commit it was built from, the target and what is compiled in.
pub fn long_version() -> String {
    format!(
        "modelctl {}\ncommit: {}\ntarget: {}\nfeatures: TLS (rustls, the system's CA store), HTTP/2, NVIDIA GPUs through NVML (loaded at run time), inotify for `watch`",
        env!("CARGO_PKG_VERSION"),
        env!("BUILT_FROM_COMMIT"),
        env!("BUILT_FOR_TARGET"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_durations_parse_with_units_and_refuse_bare_numbers() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(secs("45s"), Ok(45));
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("2h"), Ok(7200));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("1d"), Ok(86_400));
        assert_eq!(secs("0"), Ok(0));
        assert_eq!(secs("0s"), Ok(0));
        assert_eq!(secs("1h 30m"), Ok(5400));
        assert_eq!(secs("1.5h"), Ok(5400));
        for bad in ["", "10", "h", "5x", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("300"), Ok(Duration::from_secs(300)));
        for bad in ["", "-1", "NaN", "inf", "5m"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
