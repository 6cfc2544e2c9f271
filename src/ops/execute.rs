//! Executing and finishing a plan: the download engine set up with the settings' network
//! limits, Ctrl-C handling, the lock written with what the downloads learned, and the summary
//! with its exit code. `apply`, `verify --repair` and every reconcile round (`watch`, the API)
//! carry a plan out through here; the caller holds the store lock and has printed the plan.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use miette::{IntoDiagnostic, Result, WrapErr};
use serde_json::json;

use crate::apply::fetch::{Engine, EngineConfig};
use crate::apply::mirror::{Logins, Mirrors};
use crate::apply::progress::{Bars, Json, JsonReporter, Lines, Quiet, Reporter};
use crate::apply::{Executor, Outcome};
use crate::lock::Lockfile;
use crate::plan::Plan;
use crate::project::Project;
use crate::store::StatCache;
use crate::units::human_bytes;

/// Exit code after Ctrl-C, as shells report a SIGINT death.
const EXIT_INTERRUPTED: u8 = 130;

/// How the executor talks and how hard it pushes the network.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExecOptions {
    pub jobs: u16,
    pub connections: u16,
}

/// The command line's defaults (`--jobs 4 --connections 16`), for the API's rounds.
impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            jobs: 4,
            connections: 16,
        }
    }
}

/// Runs `plan` with progress reporting and Ctrl-C handling; the caller holds the store lock.
pub(crate) fn execute(
    project: &Project,
    plan: &Plan,
    next_lock: &Lockfile,
    reporter: Arc<dyn Reporter>,
    options: ExecOptions,
    cache: StatCache,
) -> Result<(Outcome, std::time::Duration, StatCache)> {
    let ExecOptions { jobs, connections } = options;
    let store = &project.store;
    let cancel = Arc::new(AtomicBool::new(false));
    let client = crate::net::Client::new(&project.settings.net)
        .into_diagnostic()
        .wrap_err("cannot set up the HTTP client")?;
    let engine = Engine::new(
        client.clone(),
        EngineConfig {
            connections: usize::from(connections),
            retry: client.policy(),
            stall: project.settings.net.read_timeout,
            connect: project.settings.net.connect_timeout,
            ..EngineConfig::default()
        },
        store.tmp_dir(),
        cancel.clone(),
    );
    let cache = Mutex::new(cache);
    let mirrors = mirrors_for(project, &client)?;
    let executor = Executor {
        manifest: &project.manifest,
        lock: next_lock.into(),
        store,
        engine,
        jobs: usize::from(jobs),
        reporter: reporter.clone(),
        cancel: cancel.clone(),
        cache: &cache,
        manifest_dir: project.settings.manifest_dir(),
        hf: project.settings.hf.clone(),
        ollama: project
            .daemon()
            .map_err(crate::apply::ollama::NoDaemon::from),
        ollama_dir: project
            .settings
            .ollama_models
            .as_ref()
            .map(crate::sources::ollama::layout::OllamaDir::new),
        ollama_stores: project
            .settings
            .ollama_stores
            .iter()
            .map(crate::sources::ollama::layout::OllamaDir::new)
            .collect(),
        mirrors: Arc::new(mirrors),
        oci: Arc::new(crate::sources::oci::Pulls::new(
            client.clone(),
            project.settings.docker_config.clone(),
        )),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let started = std::time::Instant::now();
    let outcome = runtime.block_on(async {
        let signal_reporter = reporter.clone();
        let flag = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.store(true, Ordering::Relaxed);
                signal_reporter.step("interrupted: finishing the current step; partial downloads are kept and resume on the next apply (Ctrl-C again to quit now)");
                if tokio::signal::ctrl_c().await.is_ok() {
                    signal_reporter.abandon();
                    std::process::exit(i32::from(EXIT_INTERRUPTED));
                }
            }
        });
        executor.run(plan).await
    });
    drop(runtime);
    let cache = cache.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok((outcome, started.elapsed(), cache))
}

/// The mirrors of this run, with their logins: `MODELCTL_REGISTRY_AUTH` for those of
/// `MODELCTL_MIRROR`, `docker login`'s for any.
fn mirrors_for(project: &Project, client: &crate::net::Client) -> Result<Mirrors> {
    let settings = &project.settings;
    let env_hosts = crate::registry::mirror::mirrors(settings.mirror_env.as_deref(), &[])?
        .into_iter()
        .map(|t| t.host)
        .collect();
    let logins = Logins {
        env_auth: settings.registry_auth.as_ref().map(|t| t.expose()),
        env_hosts,
        docker_config: settings.docker_config.as_deref(),
    };
    Ok(Mirrors::new(
        client,
        project.mirrors()?,
        settings.mirror_only,
        &logins,
    ))
}

pub(crate) fn reporter_for(
    json: &Option<Arc<Json>>,
    total_bytes: u64,
    printer: crate::printer::Printer,
) -> Arc<dyn Reporter> {
    match (json, std::io::stderr().is_terminal()) {
        (Some(j), _) => Arc::new(JsonReporter(j.clone())),
        (None, _) if printer.level() == crate::printer::Level::Quiet => Arc::new(Quiet),
        (None, true) => Arc::new(Bars::new(total_bytes)),
        (None, false) => Arc::new(Lines),
    }
}

/// `active.json` carries each active model's `config`, which can change with nothing to apply.
pub(crate) fn refresh_active_json(project: &Project) -> Result<()> {
    crate::apply::activate::refresh_active_json(&project.store, &project.manifest)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write `{}`", project.store.active_json().display()))
}

/// Saves the stat cache, reports the summary and picks the exit code.
pub(crate) fn finish(
    project: &Project,
    mut cache: StatCache,
    outcome: &Outcome,
    elapsed: std::time::Duration,
    lock_note: Option<String>,
    reporter: &dyn Reporter,
    verb: &str,
) -> Result<ExitCode> {
    let _ = cache.save(&project.store.stat_cache_path());
    let line = summary(outcome, elapsed, lock_note, verb);
    let figures = json!({
        "downloaded_files": outcome.downloaded_files,
        "downloaded_from_mirrors": outcome.from_mirrors,
        "downloaded_bytes": outcome.downloaded_bytes,
        "linked": outcome.linked,
        "verified": outcome.verified,
        "swaps": outcome.swaps,
        "deleted": outcome.deleted,
        "hooks": outcome.hooks,
        "repaired_blobs": outcome.repaired_blobs,
        "errors": outcome.errors.len(),
        "interrupted": outcome.interrupted,
    });
    reporter.summary(&line, figures);
    Ok(if outcome.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if outcome.errors.is_empty() && outcome.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes the lock the plan pinned, with the sha256 learned while downloading and the Ollama
/// pins taken after a pull. A model that failed keeps the entry it had (or stays out of the
/// lock): its new pin is taken once its bytes are in, so models.lock never holds what no
/// verified download backed.
pub(crate) fn write_lock(
    project: &Project,
    next: &Lockfile,
    outcome: &Outcome,
) -> Result<Option<String>> {
    let mut next = next.clone();
    for model in &outcome.failed {
        match project.lock.models.get(model) {
            Some(old) => next.models.insert(model.clone(), old.clone()),
            None => next.models.remove(model),
        };
    }
    for (model, pinned) in &outcome.pinned {
        if !outcome.failed.contains(model) {
            next.models.insert(model.clone(), pinned.clone());
        }
    }
    let learned = outcome
        .learned
        .iter()
        .filter(|(model, _, _)| !outcome.failed.contains(model));
    for (model, path, digest) in learned {
        if let Some(file) = next
            .models
            .get_mut(model)
            .and_then(|m| m.files.iter_mut().find(|f| &f.path == path))
        {
            file.sha256 = Some(*digest);
            file.md5 = None;
        }
    }
    if let Some(flag) = project.settings.network.locked {
        return Ok((next != project.lock).then(|| format!("models.lock not updated ({flag})")));
    }
    if next == project.lock {
        return Ok(None);
    }
    let wrote = crate::lock::write(&project.settings.lock_path, &next)?;
    Ok(wrote.then(|| "models.lock updated".to_owned()))
}

fn summary(
    o: &Outcome,
    elapsed: std::time::Duration,
    lock_note: Option<String>,
    verb: &str,
) -> String {
    let mut parts = Vec::new();
    if o.downloaded_files > 0 {
        let mirrored = match o.from_mirrors {
            0 => String::new(),
            n => format!(", {n} from mirrors"),
        };
        parts.push(format!(
            "{} downloaded ({}{mirrored})",
            o.downloaded_files,
            human_bytes(o.downloaded_bytes)
        ));
    }
    if o.linked > 0 {
        parts.push(format!("{} linked", o.linked));
    }
    if o.verified > 0 {
        parts.push(format!("{} verified", o.verified));
    }
    if o.swaps > 0 {
        parts.push(format!("{} activated", o.swaps));
    }
    if o.deleted > 0 {
        parts.push(format!("{} deleted", o.deleted));
    }
    if o.repaired_blobs > 0 {
        parts.push(format!(
            "{} damaged blob{} repaired",
            o.repaired_blobs,
            if o.repaired_blobs == 1 { "" } else { "s" }
        ));
    }
    if o.hooks > 0 {
        parts.push(format!(
            "{} hook{} run",
            o.hooks,
            if o.hooks == 1 { "" } else { "s" }
        ));
    }
    parts.extend(lock_note);
    let done = if parts.is_empty() {
        "nothing changed".to_owned()
    } else {
        parts.join(", ")
    };
    let took = crate::apply::progress::seconds(elapsed);
    if o.interrupted {
        format!("Interrupted after {took}: {done}. Run `modelctl apply` again to resume.")
    } else if o.errors.is_empty() && o.failed.is_empty() {
        format!("{verb} in {took}: {done}.")
    } else {
        let n = o.errors.len().max(1);
        format!(
            "{verb} with {n} error{} in {took}: {done}. The errors are listed above; the store is consistent and `modelctl apply` retries what failed.",
            if n == 1 { "" } else { "s" }
        )
    }
}
