//! Carrying out a plan: files first, then pointers, then deletions.
//!
//! The executor takes a [`Plan`] and does exactly what it lists. Downloads run several at a
//! time (`--jobs`), each over several connections ([`fetch`]); a blob wanted by two models is
//! downloaded once. Every file is verified against every digest known for it before it is
//! published (rename into `blobs/`). A model directory is never changed in place: once every
//! new file of a model is verified, its new version is built aside and exchanged with the live
//! one in one step ([`Store::replace_model`]), so a model that fails half-way keeps its whole
//! old version, and an active pointer never leads to a half-updated directory. A model is
//! activated only when all of its files are in place; an old model is deleted only after the
//! pointer that replaced it is durable, and a model that is still active (because its
//! replacement failed) is kept. Failures are collected per model instead of stopping
//! everything, so one bad URL does not block the rest.
//! Ollama pulls and removals (`ollama.rs`) and the Hugging Face cache (`hf_cache.rs`) have their
//! own files.

pub mod activate;
pub mod fetch;
mod hasher;
mod hf_cache;
mod hf_layout;
mod ollama;
mod partial;
pub mod progress;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fetch::{Engine, FileJob};
use progress::{ActiveChange, FileLabel, Reporter};

use crate::digest::Sha256;
use crate::lock::Lockfile;
use crate::manifest::Manifest;
use crate::names::{ModelId, RelPath, TypeName};
use crate::plan::{Action, ModelStatus, Plan};
use crate::sources::ollama::daemon::Daemon;
use crate::sources::ollama::layout::OllamaDir;
use crate::store::{ActivePointer, FileOrigin, StatCache, Store};

/// Everything the executor works with.
pub struct Executor<'a> {
    pub manifest: &'a Manifest,
    /// The lock the plan pins (its `next_lock`).
    pub lock: &'a Lockfile,
    pub store: &'a Store,
    pub engine: Engine,
    /// Files downloaded at once.
    pub jobs: usize,
    pub reporter: Arc<dyn Reporter>,
    pub cancel: Arc<AtomicBool>,
    pub cache: &'a Mutex<StatCache>,
    /// The directory of models.yaml, for relative `url:` paths.
    pub manifest_dir: std::path::PathBuf,
    /// The Hub's endpoint and token, for `hf` models.
    pub hf: Arc<crate::sources::hf::HubConfig>,
    /// The Ollama daemon, or why there is none to talk to.
    pub ollama: Result<Daemon, String>,
    /// `OLLAMA_MODELS`, filled directly from the registry when no daemon answers.
    pub ollama_dir: Option<OllamaDir>,
}

/// What happened.
#[derive(Debug, Default)]
pub struct Outcome {
    /// sha256 of files the lock did not have one for, learned by downloading or verifying.
    pub learned: Vec<(ModelId, RelPath, Sha256)>,
    /// Models with at least one failed action.
    pub failed: BTreeSet<ModelId>,
    pub errors: Vec<String>,
    pub downloaded_files: usize,
    pub downloaded_bytes: u64,
    pub linked: usize,
    pub verified: usize,
    pub swaps: usize,
    pub deleted: usize,
    pub hooks: usize,
    /// Damaged blobs published again from an intact model file, or removed.
    pub repaired_blobs: usize,
    pub interrupted: bool,
}

/// A group of downloads that share one blob.
struct Group {
    job: FileJob,
    targets: Vec<(ModelId, TypeName, RelPath)>,
    label: FileLabel,
}

impl Group {
    fn models(&self) -> Vec<ModelId> {
        self.targets.iter().map(|(m, _, _)| m.clone()).collect()
    }
}

impl Executor<'_> {
    /// Runs every action of `plan`.
    pub async fn run(&self, plan: &Plan) -> Outcome {
        let outcome = Mutex::new(Outcome::default());
        let kinds: BTreeMap<ModelId, TypeName> = plan
            .models
            .iter()
            .map(|m| (m.id.clone(), m.kind.clone()))
            .collect();
        for m in &plan.models {
            if let ModelStatus::Unresolved { reason } = &m.status {
                self.fail(
                    &outcome,
                    &m.id,
                    &format!("`{}` was not applied: it needs resolving ({reason})", m.id),
                );
            }
        }
        self.acquire(plan, &kinds, &outcome).await;
        if !self.cancel.load(Ordering::Relaxed) {
            self.share_hf_cache(plan, &kinds, &outcome);
            self.pointers(plan, &outcome).await;
            self.deletions(plan, &outcome).await;
        }
        let mut out = outcome.into_inner().unwrap_or_else(|p| p.into_inner());
        out.interrupted = self.cancel.load(Ordering::Relaxed);
        out
    }

    /// Downloads, reuses, verifications and pulls; then every model whose files changed is
    /// rebuilt whole from verified bytes.
    async fn acquire(
        &self,
        plan: &Plan,
        kinds: &BTreeMap<ModelId, TypeName>,
        outcome: &Mutex<Outcome>,
    ) {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        // Per model, the files taken from blobs (downloaded or reused) rather than kept.
        let mut changed: BTreeMap<ModelId, BTreeSet<RelPath>> = BTreeMap::new();
        for action in &plan.actions {
            if let Action::RepairBlob { sha256, from } = action {
                self.repair_blob(outcome, sha256, from.as_ref());
                continue;
            }
            let Some(model) = action.model() else {
                continue;
            };
            let Some(kind) = kinds.get(model) else {
                continue;
            };
            let mut take = |path: &RelPath| {
                changed
                    .entry(model.clone())
                    .or_default()
                    .insert(path.clone());
            };
            match action {
                Action::Download { path, size, .. } => {
                    take(path);
                    self.enqueue(&mut groups, outcome, model, kind, path, *size);
                }
                Action::Reuse {
                    path,
                    sha256,
                    size,
                    hf_cache: Some(cached),
                    ..
                } => {
                    take(path);
                    match self
                        .import_cached(std::path::Path::new(cached), sha256)
                        .await
                    {
                        Ok(()) => self.reused(outcome, model, path, "from the HF cache"),
                        Err(why) => {
                            self.reporter.step(&format!(
                                "cannot reuse {model}/{path} from the HF cache ({why}); downloading it"
                            ));
                            self.enqueue(&mut groups, outcome, model, kind, path, *size);
                        }
                    }
                }
                Action::Reuse { path, .. } => {
                    take(path);
                    self.reused(outcome, model, path, "blob already in the store");
                }
                Action::Verify { path, size, .. }
                    if !self.verify(outcome, kind, model, path).await =>
                {
                    take(path);
                    self.enqueue(&mut groups, outcome, model, kind, path, *size);
                }
                Action::Pull {
                    name, digest, size, ..
                } => self.pull(outcome, kind, model, name, digest, *size).await,
                Action::DeleteFile { .. } => {
                    changed.entry(model.clone()).or_default();
                }
                _ => {}
            }
        }
        let fetched = self
            .download_all(groups.into_values().collect(), outcome)
            .await;
        if !self.cancel.load(Ordering::Relaxed) {
            self.rebuild(plan, kinds, &changed, outcome);
        }
        // A blob whose models now link it needs no resume state; one for a model that failed
        // keeps it, so the next apply finds the blob the lock still has no sha256 for.
        let failed = outcome.lock().map(|o| o.failed.clone()).unwrap_or_default();
        if !self.cancel.load(Ordering::Relaxed) {
            for (job, models) in fetched {
                if !models.iter().any(|m| failed.contains(m)) {
                    self.engine.forget(&job);
                }
            }
        }
    }

    /// Adds a download to the group of its blob (a blob wanted twice is fetched once).
    fn enqueue(
        &self,
        groups: &mut BTreeMap<String, Group>,
        outcome: &Mutex<Outcome>,
        model: &ModelId,
        kind: &TypeName,
        path: &RelPath,
        size: u64,
    ) {
        let job = match self.job_for(model, path, size) {
            Ok(job) => job,
            Err(message) => {
                self.fail(
                    outcome,
                    model,
                    &format!("cannot download `{model}/{path}`: {message}"),
                );
                return;
            }
        };
        let key = job
            .sha256
            .map_or_else(|| format!("url:{model}/{path}"), |d| d.hex());
        let group = groups.entry(key).or_insert_with(|| Group {
            job,
            targets: Vec::new(),
            label: FileLabel {
                model: model.to_string(),
                path: path.to_string(),
                size,
            },
        });
        group
            .targets
            .push((model.clone(), kind.clone(), path.clone()));
    }

    /// Publishes a damaged blob again from the model file that holds its bytes, or removes it.
    fn repair_blob(
        &self,
        outcome: &Mutex<Outcome>,
        sha256: &Sha256,
        from: Option<&crate::plan::IntactCopy>,
    ) {
        let intact = from.map(|c| c.path.under(&self.store.model_dir(&c.kind, &c.model)));
        let repaired = self.store.repair_blob(sha256, intact.as_deref());
        if repaired.is_ok()
            && let Ok(mut o) = outcome.lock()
        {
            o.repaired_blobs += 1;
        }
        match repaired {
            Ok(()) if intact.is_some() => self
                .reporter
                .step(&format!("repaired blob sha256:{}", sha256.short())),
            Ok(()) => self
                .reporter
                .step(&format!("removed damaged blob sha256:{}", sha256.short())),
            Err(e) => self.error(
                outcome,
                None,
                &format!("cannot repair blob sha256:{}: {e}", sha256.short()),
            ),
        }
    }

    /// A file whose intact blob is (now) in the store: it goes into the rebuilt directory.
    fn reused(&self, outcome: &Mutex<Outcome>, model: &ModelId, path: &RelPath, why: &str) {
        if let Ok(mut o) = outcome.lock() {
            o.linked += 1;
        }
        self.reporter
            .step(&format!("linked {model}/{path} ({why})"));
    }

    /// Replaces the directory of every model whose files changed with its new version, built
    /// from the blobs just verified and the files that stay; a model with a failed file keeps
    /// its old directory whole.
    fn rebuild(
        &self,
        plan: &Plan,
        kinds: &BTreeMap<ModelId, TypeName>,
        changed: &BTreeMap<ModelId, BTreeSet<RelPath>>,
        outcome: &Mutex<Outcome>,
    ) {
        let (failed, learned) = match outcome.lock() {
            Ok(o) => (o.failed.clone(), o.learned.clone()),
            Err(_) => return,
        };
        for (model, taken) in changed {
            let (Some(kind), Some(locked)) = (kinds.get(model), self.lock.models.get(model)) else {
                continue;
            };
            if failed.contains(model) {
                continue;
            }
            let sha_of = |f: &crate::lock::LockedFile| {
                f.sha256.or_else(|| {
                    learned
                        .iter()
                        .find(|(m, p, _)| m == model && p == &f.path)
                        .map(|(_, _, d)| *d)
                })
            };
            let mut files = Vec::new();
            for f in &locked.files {
                let origin = match (taken.contains(&f.path), sha_of(f)) {
                    (false, _) => FileOrigin::Present,
                    (true, Some(digest)) => FileOrigin::Blob(digest),
                    (true, None) => {
                        self.fail(
                            outcome,
                            model,
                            &format!("`{model}/{}` has no verified blob to link", f.path),
                        );
                        break;
                    }
                };
                files.push((f.path.clone(), origin));
            }
            if files.len() != locked.files.len() {
                continue;
            }
            if let Err(e) = self.store.replace_model(kind, model, &files) {
                self.fail(
                    outcome,
                    model,
                    &format!("cannot update the directory of `{model}`: {e}"),
                );
                continue;
            }
            for f in &locked.files {
                if let Some(digest) = sha_of(f) {
                    self.remember(kind, model, &f.path, &digest);
                }
            }
            for action in plan.model_actions(model) {
                if let Action::DeleteFile { path, .. } = action {
                    self.reporter
                        .step(&format!("removed stray file {model}/{path}"));
                }
            }
        }
    }

    fn job_for(&self, model: &ModelId, path: &RelPath, size: u64) -> Result<FileJob, String> {
        let entry = self
            .manifest
            .models
            .get(model)
            .ok_or("the model is not in models.yaml")?;
        let locked = self
            .lock
            .models
            .get(model)
            .ok_or("the model is not in models.lock")?;
        let file = locked
            .files
            .iter()
            .find(|f| &f.path == path)
            .ok_or("the file is not in models.lock")?;
        let located = crate::sources::locate(entry, locked, file, &self.manifest_dir, &self.hf)?;
        let (expect, place) = entry.expected_for(model.as_str(), path);
        let sha256 = file.sha256.or(expect.sha256);
        let expected_by = match place {
            Some(place) if file.sha256.is_none() => fetch::ExpectedBy::Manifest(place),
            _ => fetch::ExpectedBy::Lock,
        };
        Ok(FileJob {
            url: located.url,
            size,
            sha256,
            md5: file.md5.or(expect.md5).filter(|_| sha256.is_none()),
            git_oid: file.git_oid,
            expected_by,
            etag: located.etag,
            token: located.token,
            explain: located.explain,
        })
    }

    /// Runs the downloads, `jobs` at a time, and publishes each verified file as a blob.
    /// Returns the jobs whose blobs are now in place, for [`Engine::forget`] once their models
    /// are rebuilt (until then their resume state is what leads a rerun to a blob the lock
    /// has no sha256 for).
    async fn download_all(
        &self,
        groups: Vec<Group>,
        outcome: &Mutex<Outcome>,
    ) -> Vec<(FileJob, Vec<ModelId>)> {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.jobs.max(1)));
        let mut set = tokio::task::JoinSet::new();
        let mut done = Vec::new();
        for group in groups {
            if let Some(digest) = self.published_before(&group) {
                self.reporter.step(&format!(
                    "linked {}/{} (verified and published by an interrupted apply)",
                    group.label.model, group.label.path
                ));
                if let Ok(mut o) = outcome.lock() {
                    o.linked += group.targets.len();
                    for (model, _, path) in &group.targets {
                        o.learned.push((model.clone(), path.clone(), digest));
                    }
                }
                done.push((group.job.clone(), group.models()));
                continue;
            }
            let engine = self.engine.clone();
            let reporter = self.reporter.clone();
            let semaphore = semaphore.clone();
            set.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let started = Instant::now();
                let progress = reporter.start(&group.label);
                let result = engine.fetch(&group.job, progress).await;
                (group, result, started.elapsed())
            });
        }
        while let Some(joined) = set.join_next().await {
            let Ok((group, result, elapsed)) = joined else {
                continue;
            };
            let label = format!("{}/{}", group.label.model, group.label.path);
            match result {
                Ok(downloaded) => {
                    let digest = downloaded.digests.sha256;
                    match self.store.publish_blob(&downloaded.data, &digest) {
                        Ok(_) => crate::failpoint::hit("download.after-publish"),
                        Err(e) => {
                            for (model, _, _) in &group.targets {
                                self.fail(
                                    outcome,
                                    model,
                                    &format!("cannot publish `{label}`: {e}"),
                                );
                            }
                            continue;
                        }
                    }
                    self.reporter.done(&group.label, &digest.hex(), elapsed);
                    if let Ok(mut o) = outcome.lock() {
                        o.downloaded_files += 1;
                        o.downloaded_bytes += group.label.size;
                        for (model, _, path) in &group.targets {
                            if self.locked_sha256(model, path).is_none() {
                                o.learned.push((model.clone(), path.clone(), digest));
                            }
                        }
                    }
                    // A blob named by a known sha256 is found by the next plan; only one the
                    // lock has no sha256 for needs its resume state until it is linked.
                    match group.job.sha256 {
                        Some(_) => self.engine.forget(&group.job),
                        None => done.push((group.job.clone(), group.models())),
                    }
                }
                Err(fetch::FetchError::Cancelled) => {
                    for (model, _, _) in &group.targets {
                        record_failure(outcome, model, None);
                    }
                }
                Err(e) => {
                    let shown = crate::net::SafeUrl::from(&group.job.url).to_string();
                    for (model, _, path) in &group.targets {
                        self.fail(
                            outcome,
                            model,
                            &format!("cannot download `{model}/{path}` from {shown}: {e}"),
                        );
                    }
                }
            }
        }
        done
    }

    /// The sha256 the lock being applied has for a file.
    fn locked_sha256(&self, model: &ModelId, path: &RelPath) -> Option<Sha256> {
        self.lock
            .models
            .get(model)
            .and_then(|m| m.files.iter().find(|f| &f.path == path))
            .and_then(|f| f.sha256)
    }

    /// The blob an interrupted apply verified and published for a file the lock has no
    /// sha256 for (so the plan could not know it), when it is in the store at the locked size
    /// (a damaged blob was repaired or removed before the downloads start).
    fn published_before(&self, group: &Group) -> Option<Sha256> {
        let digest = self.engine.verified_before(&group.job)?;
        let blob = std::fs::symlink_metadata(self.store.blob_path(&digest)).ok()?;
        (blob.is_file() && blob.len() == group.job.size).then_some(digest)
    }

    /// Hashes a present file whose lock entry has no sha256 and checks it against every digest
    /// known for it (a git blob id, an md5, a models.yaml checksum). Returns whether the file
    /// stands; one that fails is downloaded again, and its sha256 is never learned.
    async fn verify(
        &self,
        outcome: &Mutex<Outcome>,
        kind: &TypeName,
        model: &ModelId,
        path: &RelPath,
    ) -> bool {
        let file = path.under(&self.store.model_dir(kind, model));
        let Some(locked) = self
            .lock
            .models
            .get(model)
            .and_then(|m| m.files.iter().find(|f| &f.path == path))
            .cloned()
        else {
            self.fail(
                outcome,
                model,
                &format!("cannot verify `{model}/{path}`: it is not in models.lock"),
            );
            return true;
        };
        let expect = self
            .manifest
            .models
            .get(model)
            .map(|e| e.expected_for(model.as_str(), path).0)
            .unwrap_or_default();
        let expected = crate::digest::Expected {
            sha256: locked.sha256.or(expect.sha256),
            md5: locked.md5.or(expect.md5),
            git_oid: locked.git_oid,
        };
        let extra = expected.extra(locked.size);
        let result =
            tokio::task::spawn_blocking(move || crate::store::hash_file_with(&file, extra)).await;
        match result {
            Ok(Ok(digests)) => match expected.check(&digests) {
                Ok(()) => {
                    if let Ok(mut o) = outcome.lock() {
                        o.verified += 1;
                        o.learned
                            .push((model.clone(), path.clone(), digests.sha256));
                    }
                    self.reporter.step(&format!("verified {model}/{path}"));
                    true
                }
                Err(mismatch) => {
                    self.reporter.step(&format!(
                        "{model}/{path} is not the locked file ({mismatch}); downloading it"
                    ));
                    false
                }
            },
            Ok(Err(e)) => {
                self.fail(
                    outcome,
                    model,
                    &format!("cannot verify `{model}/{path}`: {e}"),
                );
                true
            }
            Err(_) => {
                self.fail(outcome, model, &format!("cannot verify `{model}/{path}`"));
                true
            }
        }
    }

    /// Pointer swaps, Ollama loads and hooks, in plan order.
    async fn pointers(&self, plan: &Plan, outcome: &Mutex<Outcome>) {
        let failed = outcome.lock().map(|o| o.failed.clone()).unwrap_or_default();
        // The pointer change a hook belongs to, for rollback.
        let mut last: Option<(TypeName, Option<ModelId>, Option<ModelId>, bool)> = None;
        for action in plan.activations() {
            match action {
                Action::Activate { kind, to } | Action::Swap { kind, to, .. } => {
                    let from = self.current(kind);
                    if failed.contains(to) {
                        self.error(
                            outcome,
                            Some(to),
                            &format!(
                                "not activating `{to}` as {kind}: not all of its files are in place"
                            ),
                        );
                        last = Some((kind.clone(), from, Some(to.clone()), false));
                        continue;
                    }
                    match self.store.point_active(kind, to) {
                        Ok(()) => {
                            crate::failpoint::hit("swap.before-active-json");
                            self.reporter.swapped(&ActiveChange {
                                kind: kind.to_string(),
                                from: from.as_ref().map(ToString::to_string),
                                to: Some(to.to_string()),
                                path: Some(self.store.model_dir(kind, to)),
                                rollback: false,
                            });
                            if let Ok(mut o) = outcome.lock() {
                                o.swaps += 1;
                            }
                            last = Some((kind.clone(), from, Some(to.clone()), true));
                        }
                        Err(e) => {
                            self.error(outcome, Some(to), &format!("cannot activate `{to}`: {e}"));
                            last = Some((kind.clone(), from, Some(to.clone()), false));
                        }
                    }
                }
                Action::Deactivate { kind, .. } => {
                    let from = self.current(kind);
                    match self.store.clear_active(kind) {
                        Ok(()) => {
                            self.reporter.swapped(&ActiveChange {
                                kind: kind.to_string(),
                                from: from.as_ref().map(ToString::to_string),
                                to: None,
                                path: None,
                                rollback: false,
                            });
                            last = Some((kind.clone(), from, None, true));
                        }
                        Err(e) => {
                            self.error(outcome, None, &format!("cannot deactivate {kind}: {e}"));
                            last = Some((kind.clone(), from, None, false));
                        }
                    }
                }
                Action::Load { model, name } | Action::Unload { model, name } => {
                    let load = matches!(action, Action::Load { .. });
                    if load && failed.contains(model) {
                        continue;
                    }
                    let keep_alive =
                        self.manifest
                            .models
                            .get(model)
                            .and_then(|e| match &e.source {
                                crate::manifest::Source::Ollama(o) => o.keep_alive.clone(),
                                _ => None,
                            });
                    let done = match self.ollama_call(name) {
                        Ok((daemon, parsed)) if load => daemon
                            .load(&parsed, keep_alive.as_deref())
                            .await
                            .map_err(|e| e.to_string()),
                        Ok((daemon, parsed)) => {
                            daemon.unload(&parsed).await.map_err(|e| e.to_string())
                        }
                        Err(why) => Err(why),
                    };
                    let verb = if load { "load" } else { "unload" };
                    match done {
                        Ok(()) => self.reporter.step(&format!("{verb}ed {name} in Ollama")),
                        Err(why) => self.error(
                            outcome,
                            Some(model),
                            &format!("cannot {verb} `{name}`: {why}"),
                        ),
                    }
                }
                Action::Hook {
                    model,
                    event,
                    command,
                } => {
                    let Some((kind, from, to, true)) = last.clone() else {
                        continue;
                    };
                    self.hook(
                        outcome,
                        model,
                        event,
                        command,
                        &kind,
                        from.as_ref(),
                        to.as_ref(),
                    );
                }
                _ => {}
            }
        }
        let pointers = self.pointers_on_disk();
        if let Err(e) = activate::write_active_json(self.store, self.manifest, &pointers) {
            self.error(
                outcome,
                None,
                &format!("cannot write `{}`: {e}", self.store.active_json().display()),
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn hook(
        &self,
        outcome: &Mutex<Outcome>,
        model: &ModelId,
        event: &str,
        command: &str,
        kind: &TypeName,
        from: Option<&ModelId>,
        to: Option<&ModelId>,
    ) {
        let dir = self.store.model_dir(kind, model);
        let env = activate::HookEnv {
            kind,
            old: from.map(ModelId::as_str),
            new: to.map(ModelId::as_str),
            path: &dir,
        };
        if let Ok(mut o) = outcome.lock() {
            o.hooks += 1;
        }
        match activate::run_hook(command, &env) {
            Ok(printed) => {
                self.reporter
                    .step(&format!("ran the {event} hook of {model}"));
                for line in printed.lines().take(20) {
                    self.reporter.step(&format!("  | {line}"));
                }
            }
            Err(why) => {
                self.error(
                    outcome,
                    Some(model),
                    &format!("the {event} hook of `{model}` failed ({why})"),
                );
                let rollback = event == "activate"
                    && self
                        .manifest
                        .models
                        .get(model)
                        .is_some_and(|e| e.hooks.rollback_on_failure);
                if rollback {
                    let restored = match from {
                        Some(old) => self.store.point_active(kind, old),
                        None => self.store.clear_active(kind),
                    };
                    match restored {
                        Ok(()) => self.reporter.swapped(&ActiveChange {
                            kind: kind.to_string(),
                            from: to.map(ToString::to_string),
                            to: from.map(ToString::to_string),
                            path: from.map(|old| self.store.model_dir(kind, old)),
                            rollback: true,
                        }),
                        Err(e) => self.error(
                            outcome,
                            Some(model),
                            &format!("cannot roll back {kind}: {e}"),
                        ),
                    }
                }
            }
        }
    }

    /// Model deletions, never of a model that is still active.
    async fn deletions(&self, plan: &Plan, outcome: &Mutex<Outcome>) {
        let pointers = self.pointers_on_disk();
        // A model Ollama could not remove keeps its directory, so it is not forgotten.
        let mut kept: BTreeSet<ModelId> = BTreeSet::new();
        for action in &plan.actions {
            match action {
                Action::Delete { model, .. } if kept.contains(model) => {}
                Action::Delete { model, kind, .. } => {
                    if pointers.get(kind) == Some(&ActivePointer::Model(model.clone())) {
                        self.error(outcome, Some(model), &format!(
                            "kept `{model}`: it is still the active {kind} model because the swap away from it did not happen"
                        ));
                        continue;
                    }
                    match self.store.remove_model(kind, model) {
                        Ok(()) => {
                            self.reporter.step(&format!("deleted {model} ({kind})"));
                            if let Ok(mut o) = outcome.lock() {
                                o.deleted += 1;
                            }
                        }
                        Err(e) => self.error(
                            outcome,
                            Some(model),
                            &format!("cannot delete `{model}`: {e}"),
                        ),
                    }
                }
                Action::Remove { model, name } => {
                    let removed = self.remove_ollama(name).await;
                    match removed {
                        Ok(()) => self.reporter.step(&format!("removed {name} from Ollama")),
                        Err(why) => {
                            kept.insert(model.clone());
                            self.error(
                                outcome,
                                Some(model),
                                &format!("cannot remove `{name}` from Ollama: {why}"),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn current(&self, kind: &TypeName) -> Option<ModelId> {
        match self.pointers_on_disk().get(kind) {
            Some(ActivePointer::Model(id)) => Some(id.clone()),
            _ => None,
        }
    }

    /// The `active/<type>` links as they are now.
    fn pointers_on_disk(&self) -> BTreeMap<TypeName, ActivePointer> {
        crate::store::read_active(self.store)
            .map(|(pointers, _)| pointers)
            .unwrap_or_default()
    }

    /// Files this apply just verified go into the stat cache, so the next plan need not hash them.
    fn remember(&self, kind: &TypeName, model: &ModelId, path: &RelPath, digest: &Sha256) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let hex = digest.hex();
        let blob_key = format!("blobs/sha256/{}/{hex}", &hex[..2]);
        let file_key = format!("models/{kind}/{model}/{path}");
        for (key, full) in [
            (blob_key, self.store.blob_path(digest)),
            (file_key, path.under(&self.store.model_dir(kind, model))),
        ] {
            if let Ok(meta) = std::fs::symlink_metadata(&full) {
                let known = crate::store::Known {
                    sha256: *digest,
                    git_oid: None,
                };
                cache.insert_verified(key, crate::store::Stamp::of(&meta), known);
            }
        }
    }

    fn fail(&self, outcome: &Mutex<Outcome>, model: &ModelId, message: &str) {
        self.reporter.error(Some(model.as_str()), message);
        record_failure(outcome, model, Some(message));
    }

    fn error(&self, outcome: &Mutex<Outcome>, model: Option<&ModelId>, message: &str) {
        self.reporter.error(model.map(ModelId::as_str), message);
        if let Ok(mut o) = outcome.lock() {
            o.errors.push(message.to_owned());
        }
    }
}

fn record_failure(outcome: &Mutex<Outcome>, model: &ModelId, message: Option<&str>) {
    if let Ok(mut o) = outcome.lock() {
        o.failed.insert(model.clone());
        if let Some(m) = message {
            o.errors.push(m.to_owned());
        }
    }
}
