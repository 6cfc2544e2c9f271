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
//!
//! This file holds the core: the files phase (downloads, reuses, verifications) and the
//! executor's bookkeeping. Rebuilding model directories is in `rebuild.rs`, the pointer phase
//! in `pointers.rs`, deletions in `deletions.rs`; Ollama pulls and removals (`ollama.rs`) and
//! the Hugging Face cache (`hf_cache.rs`) and the machine cache (`machine_cache.rs`) have their
//! own files, and so does asking the mirrors for a file before its origin (`mirror.rs`).

pub mod activate;
mod archive;
mod deletions;
pub mod fetch;
mod hasher;
mod hf_cache;
mod hf_layout;
mod machine_cache;
pub mod mirror;
pub mod ollama;
mod partial;
mod pointers;
pub mod progress;
mod rebuild;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fetch::{Engine, FileJob};
use progress::{FileLabel, Reporter};

use crate::digest::{GitOid, Sha256};
use crate::lock::{LockedFile, LockedModel, Lockfile};
use crate::manifest::Manifest;
use crate::names::{ModelId, RelPath, TypeName};
use crate::plan::{Action, ModelStatus, Plan};
use crate::sources::LocateError;
use crate::sources::ollama::daemon::Daemon;
use crate::sources::ollama::layout::OllamaDir;
use crate::store::{StatCache, Store};

/// Everything the executor works with.
pub struct Executor<'a> {
    pub manifest: &'a Manifest,
    /// The lock the plan pins (its `next_lock`), indexed by model and path.
    pub lock: LockIndex<'a>,
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
    pub ollama: Result<Daemon, ollama::NoDaemon>,
    /// `OLLAMA_MODELS`, filled directly from the registry when no daemon answers.
    pub ollama_dir: Option<OllamaDir>,
    /// Where the local daemon's store may be, to read the layers of a model pinned from it.
    pub ollama_stores: Vec<OllamaDir>,
    /// The registries asked for each file with a sha256 before its origin.
    pub mirrors: Arc<mirror::Mirrors>,
    /// The registries of `oci:` models, and the tokens their repositories earned.
    pub oci: Arc<crate::sources::oci::Pulls>,
}

/// What happened.
#[derive(Debug, Default)]
pub struct Outcome {
    /// sha256 of files the lock did not have one for, learned by downloading or verifying.
    pub learned: Vec<(ModelId, RelPath, Sha256)>,
    /// Ollama models pinned by this run, from what the daemon reported after pulling them.
    pub pinned: Vec<(ModelId, LockedModel)>,
    /// Models with at least one failed action.
    pub failed: BTreeSet<ModelId>,
    pub errors: Vec<String>,
    pub downloaded_files: usize,
    pub downloaded_bytes: u64,
    /// Of the files downloaded, those a mirror served.
    pub from_mirrors: usize,
    pub linked: usize,
    pub verified: usize,
    pub swaps: usize,
    pub deleted: usize,
    pub hooks: usize,
    /// Damaged blobs published again from an intact model file, or removed.
    pub repaired_blobs: usize,
    pub interrupted: bool,
    /// What the run holds back until a model's new directory is in place.
    pending: Pending,
}

/// What a run learns before a model's directory is rebuilt, and reports or records after.
#[derive(Debug, Default)]
struct Pending {
    /// Per model, its "linked …" step lines and how many files they stand for: printed and
    /// counted once its new directory is in place, never before a swap that may fail.
    links: BTreeMap<ModelId, (Vec<String>, usize)>,
    /// The git blob ids this run computed from bytes (downloads, verifications), for the
    /// stat cache.
    git_oids: HashMap<(ModelId, RelPath), GitOid>,
}

/// The lock being applied, indexed once by (model id, path).
pub struct LockIndex<'a> {
    lock: &'a Lockfile,
    files: HashMap<(&'a ModelId, &'a RelPath), &'a LockedFile>,
}

impl<'a> From<&'a Lockfile> for LockIndex<'a> {
    fn from(lock: &'a Lockfile) -> Self {
        let files = lock
            .models
            .iter()
            .flat_map(|(id, m)| m.files.iter().map(move |f| ((id, &f.path), f)))
            .collect();
        Self { lock, files }
    }
}

impl<'a> LockIndex<'a> {
    /// A model's locked entry.
    pub fn model(&self, id: &ModelId) -> Option<&'a LockedModel> {
        self.lock.models.get(id)
    }

    /// A locked file of a model.
    pub fn file(&self, id: &ModelId, path: &RelPath) -> Option<&'a LockedFile> {
        self.files.get(&(id, path)).copied()
    }
}

/// Why a file of the plan cannot be downloaded (the caller names the model and file).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum JobError {
    #[error("the model is not in models.yaml")]
    #[diagnostic(
        code(modelctl::apply::not_declared),
        help("models.yaml changed since the plan was made; run `modelctl apply` again")
    )]
    NotDeclared,
    #[error("the model is not in models.lock")]
    #[diagnostic(
        code(modelctl::apply::not_locked),
        help("run `modelctl lock` to pin it, then apply")
    )]
    NotLocked,
    #[error("the file is not in models.lock")]
    #[diagnostic(
        code(modelctl::apply::file_not_locked),
        help("run `modelctl lock` to pin it, then apply")
    )]
    FileNotLocked,
    #[error(transparent)]
    #[diagnostic(transparent)]
    Locate(#[from] LocateError),
}

/// A group of downloads that share one blob.
struct Group {
    job: FileJob,
    /// For a blob of an `oci:` model: where its token is earned before the download.
    oci: Option<crate::sources::oci::OciBlob>,
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
        let (groups, changed) = self.files(plan, kinds, outcome).await;
        let archives = Arc::new(self.archives_of(groups.values()));
        let fetched = self
            .download_all(groups.into_values().collect(), outcome, &archives)
            .await;
        drop(archives);
        if self.cancel.load(Ordering::Relaxed) {
            return;
        }
        self.rebuild(plan, kinds, &changed, outcome);
        // A blob whose models now link it needs no resume state; one for a model that failed
        // keeps it, so the next apply finds the blob the lock still has no sha256 for.
        let failed = outcome.lock().map(|o| o.failed.clone()).unwrap_or_default();
        for (job, models) in fetched {
            if !models.iter().any(|m| failed.contains(m)) {
                self.engine.forget(&job);
            }
        }
    }

    /// Goes through the plan's file actions: repairs blobs, reuses, verifies and pulls at
    /// once, and groups the downloads by blob. Returns the groups and, per model, the files
    /// taken from blobs (downloaded or reused) rather than kept.
    async fn files(
        &self,
        plan: &Plan,
        kinds: &BTreeMap<ModelId, TypeName>,
        outcome: &Mutex<Outcome>,
    ) -> (
        BTreeMap<String, Group>,
        BTreeMap<ModelId, BTreeSet<RelPath>>,
    ) {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut changed: BTreeMap<ModelId, BTreeSet<RelPath>> = BTreeMap::new();
        for action in &plan.actions {
            if let Action::RepairBlob { sha256, from } = action {
                self.repair_blob(outcome, sha256, from.as_ref());
                continue;
            }
            let Some((model, kind)) = action.model().and_then(|m| Some((m, kinds.get(m)?))) else {
                continue;
            };
            let download = match action {
                Action::Download { path, size, .. } => Some((path, *size)),
                Action::Reuse {
                    path,
                    sha256,
                    size,
                    machine_cache: Some(_),
                    ..
                } => {
                    take(&mut changed, model, path);
                    let taken = self
                        .reuse_from_machine_cache(outcome, model, path, sha256)
                        .await;
                    (!taken).then_some((path, *size))
                }
                Action::Reuse {
                    path,
                    sha256,
                    size,
                    hf_cache,
                    ollama_store,
                    ..
                } if hf_cache.is_some() || ollama_store.is_some() => {
                    take(&mut changed, model, path);
                    let found = (hf_cache.as_deref().map(|c| (c, "the HF cache")))
                        .or_else(|| ollama_store.as_deref().map(|c| (c, "Ollama's store")));
                    let mut taken = false;
                    if let Some((cached, place)) = found {
                        let cached = std::path::Path::new(cached);
                        taken = self
                            .reuse_cached(outcome, model, path, cached, sha256, place)
                            .await;
                    }
                    (!taken).then_some((path, *size))
                }
                Action::Reuse { path, .. } => {
                    take(&mut changed, model, path);
                    self.reused(outcome, model, path, "blob already in the store");
                    None
                }
                Action::Verify { path, size, .. } => {
                    let stands = self.verify(outcome, kind, model, path).await;
                    (!stands).then_some((path, *size))
                }
                Action::Pull {
                    name, digest, size, ..
                } => {
                    self.pull(outcome, kind, model, name, digest, *size).await;
                    None
                }
                Action::PullAndPin { name, .. } => {
                    self.pull_and_pin(outcome, kind, model, name).await;
                    None
                }
                // A stray file is removed by rebuilding the model without it.
                Action::DeleteFile { .. } => {
                    changed.entry(model.clone()).or_default();
                    None
                }
                _ => None,
            };
            if let Some((path, size)) = download {
                take(&mut changed, model, path);
                self.enqueue(&mut groups, outcome, model, kind, path, size);
            }
        }
        (groups, changed)
    }

    /// Takes a file's blob from `place` (the Hugging Face cache, Ollama's store), where it
    /// is `cached`; returns whether it was taken (if not, the file is downloaded, and the
    /// reason told).
    async fn reuse_cached(
        &self,
        outcome: &Mutex<Outcome>,
        model: &ModelId,
        path: &RelPath,
        cached: &std::path::Path,
        sha256: &Sha256,
        place: &str,
    ) -> bool {
        match self.import_cached(cached, sha256).await {
            Ok(mode) if mode.shares_bytes() => {
                self.reused(outcome, model, path, &format!("from {place} by {mode}"));
                true
            }
            Ok(_) => {
                let why = format!("copied from {place}: it cannot be linked");
                self.reused(outcome, model, path, &why);
                true
            }
            Err(why) => {
                self.reporter.step(&format!(
                    "cannot reuse {model}/{path} from {place} ({why}); downloading it"
                ));
                false
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
        let (job, oci) = match self.job_for(model, path, size) {
            Ok(found) => found,
            Err(error) => {
                let message = crate::diagnostic::with_help(&error);
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
            oci,
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

    /// A file whose intact blob is (now) in the store: it goes into the rebuilt directory,
    /// and is reported as linked once that directory is in place.
    fn reused(&self, outcome: &Mutex<Outcome>, model: &ModelId, path: &RelPath, why: &str) {
        let line = format!("linked {model}/{path} ({why})");
        link_later(outcome, model, Some(line));
    }

    /// The tar layers the downloads of `groups` may need, each read from the lock once.
    fn archives_of<'g>(&self, groups: impl Iterator<Item = &'g Group>) -> archive::Archives {
        let mut archives = archive::Archives::default();
        let staging = self.store.tmp_dir();
        for group in groups {
            if let (Some(blob), Some((model, _, _))) = (&group.oci, group.targets.first()) {
                archives.add(&self.lock, model, blob, &group.job.url, &staging);
            }
        }
        archives
    }

    /// The download of one locked file: where from, and every digest it must match (and, for
    /// an `oci:` model, the registry whose token the download needs).
    fn job_for(
        &self,
        model: &ModelId,
        path: &RelPath,
        size: u64,
    ) -> Result<(FileJob, Option<crate::sources::oci::OciBlob>), JobError> {
        let entry = self
            .manifest
            .models
            .get(model)
            .ok_or(JobError::NotDeclared)?;
        let locked = self.lock.model(model).ok_or(JobError::NotLocked)?;
        let file = self.lock.file(model, path).ok_or(JobError::FileNotLocked)?;
        let located = crate::sources::locate(entry, locked, file, &self.manifest_dir, &self.hf)?;
        let (expect, place) = entry.expected_for(model.as_str(), path);
        let sha256 = file.sha256.or(expect.sha256);
        let expected_by = match place {
            Some(place) if file.sha256.is_none() => fetch::ExpectedBy::Manifest(place),
            _ => fetch::ExpectedBy::Lock,
        };
        let job = FileJob {
            url: located.url,
            size,
            sha256,
            md5: file.md5.or(expect.md5).filter(|_| sha256.is_none()),
            git_oid: file.git_oid,
            expected_by,
            etag: located.etag,
            token: located.token,
            authorization: None,
            explain: located.explain,
        };
        Ok((job, located.oci))
    }

    /// Runs the downloads, `jobs` at a time, and publishes each verified file as a blob.
    /// Returns the jobs whose blobs are now in place, for [`Engine::forget`] once their models
    /// are rebuilt (until then their resume state is what leads a rerun to a blob the lock
    /// has no sha256 for).
    async fn download_all(
        &self,
        groups: Vec<Group>,
        outcome: &Mutex<Outcome>,
        archives: &Arc<archive::Archives>,
    ) -> Vec<(FileJob, Vec<ModelId>)> {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.jobs.max(1)));
        let mut set = tokio::task::JoinSet::new();
        let mut done = Vec::new();
        for group in groups {
            if let Some(digest) = self.published_before(&group) {
                self.link_published(outcome, &group, digest);
                done.push((group.job.clone(), group.models()));
                continue;
            }
            let engine = self.engine.clone();
            let reporter = self.reporter.clone();
            let semaphore = semaphore.clone();
            let mirrors = self.mirrors.clone();
            let oci = self.oci.clone();
            let archives = archives.clone();
            set.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let started = Instant::now();
                let progress = reporter.start(&group.label);
                let origins = Origins {
                    mirrors: &mirrors,
                    oci: &oci,
                    archives: &archives,
                };
                let result =
                    fetch_group(&engine, origins, reporter.as_ref(), &group, progress).await;
                (group, result, started.elapsed())
            });
        }
        while let Some(joined) = set.join_next().await {
            let Ok((group, result, elapsed)) = joined else {
                continue;
            };
            match result {
                Ok((downloaded, mirror)) => {
                    if mirror.is_some()
                        && let Ok(mut o) = outcome.lock()
                    {
                        o.from_mirrors += 1;
                    }
                    if self.publish(outcome, &group, &downloaded, elapsed) {
                        // A blob named by a known sha256 is found by the next plan; only one
                        // the lock has no sha256 for needs its resume state until it is linked.
                        match group.job.sha256 {
                            Some(_) => self.engine.forget(&group.job),
                            None => done.push((group.job.clone(), group.models())),
                        }
                    }
                }
                Err(GroupFailure::Fetch(fetch::FetchError::Cancelled)) => {
                    for (model, _, _) in &group.targets {
                        record_failure(outcome, model, None);
                    }
                }
                Err(GroupFailure::MirrorOnly(said)) => self.refuse_origin(outcome, &group, &said),
                Err(GroupFailure::Fetch(e)) => {
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

    /// Under mirror-only, a file no mirror served: an error for each model that wants it,
    /// naming the file, its digest and what each mirror said.
    fn refuse_origin(&self, outcome: &Mutex<Outcome>, group: &Group, said: &[String]) {
        let digest = group
            .job
            .sha256
            .map_or_else(|| "no sha256".to_owned(), |d| format!("sha256:{}", d.hex()));
        let to = self.mirrors.first().unwrap_or("REGISTRY/NAMESPACE");
        for (model, _, path) in &group.targets {
            self.fail(
                outcome,
                model,
                &format!(
                    "cannot download `{model}/{path}` ({digest}) from a mirror, and mirror-only \
                     forbids its origin: {}\nhelp: push it from a machine that has it \
                     (`modelctl push {model} --to {to}`), or apply without `--mirror-only` \
                     and MODELCTL_MIRROR_ONLY",
                    said.join("; ")
                ),
            );
        }
    }

    /// A blob an interrupted apply already published: its files are linked, and its sha256
    /// learned, without downloading it again.
    fn link_published(&self, outcome: &Mutex<Outcome>, group: &Group, digest: Sha256) {
        let line = format!(
            "linked {}/{} (verified and published by an interrupted apply)",
            group.label.model, group.label.path
        );
        let mut line = Some(line);
        for (model, _, _) in &group.targets {
            link_later(outcome, model, line.take());
        }
        if let Ok(mut o) = outcome.lock() {
            for (model, _, path) in &group.targets {
                o.learned.push((model.clone(), path.clone(), digest));
            }
        }
    }

    /// Publishes a verified download as its blob and records what it taught (the sha256 the
    /// lock lacked, the git blob id); returns whether the blob is in place.
    fn publish(
        &self,
        outcome: &Mutex<Outcome>,
        group: &Group,
        downloaded: &Fetched,
        elapsed: std::time::Duration,
    ) -> bool {
        let digest = downloaded.sha256();
        if let Err(e) = self.store.publish_blob(downloaded.data(), &digest) {
            let label = format!("{}/{}", group.label.model, group.label.path);
            for (model, _, _) in &group.targets {
                self.fail(outcome, model, &format!("cannot publish `{label}`: {e}"));
            }
            return false;
        }
        crate::failpoint::hit("download.after-publish");
        self.reporter.done(&group.label, &digest.hex(), elapsed);
        if let Ok(mut o) = outcome.lock() {
            o.downloaded_files += 1;
            o.downloaded_bytes += group.label.size;
            for (model, _, path) in &group.targets {
                if self.lock.file(model, path).and_then(|f| f.sha256).is_none() {
                    o.learned.push((model.clone(), path.clone(), digest));
                }
                if let Some(oid) = downloaded.git_oid() {
                    let key = (model.clone(), path.clone());
                    o.pending.git_oids.insert(key, oid);
                }
            }
        }
        true
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
        let Some(locked) = self.lock.file(model, path) else {
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
            Ok(Ok(digests)) => self.judge_verified(outcome, model, path, &expected, &digests),
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

    /// Records a verified file (its sha256 learned, its git blob id kept for the stat cache),
    /// or tells why it is downloaded again; returns whether it stands.
    fn judge_verified(
        &self,
        outcome: &Mutex<Outcome>,
        model: &ModelId,
        path: &RelPath,
        expected: &crate::digest::Expected,
        digests: &crate::digest::Digests,
    ) -> bool {
        if let Err(mismatch) = expected.check(digests) {
            self.reporter.step(&format!(
                "{model}/{path} is not the locked file ({mismatch}); downloading it"
            ));
            return false;
        }
        if let Ok(mut o) = outcome.lock() {
            o.verified += 1;
            o.learned
                .push((model.clone(), path.clone(), digests.sha256));
            if let Some(oid) = digests.git_oid {
                let key = (model.clone(), path.clone());
                o.pending.git_oids.insert(key, oid);
            }
        }
        self.reporter.step(&format!("verified {model}/{path}"));
        true
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

/// Why a group's download failed.
enum GroupFailure {
    Fetch(fetch::FetchError),
    /// Mirror-only, and no mirror served it: what each mirror said.
    MirrorOnly(Vec<String>),
}

/// Where a download may come from besides its URL: the mirrors, the registries of `oci:`
/// models that hand out tokens, and the tar layers some of their files come out of.
#[derive(Clone, Copy)]
struct Origins<'a> {
    mirrors: &'a mirror::Mirrors,
    oci: &'a crate::sources::oci::Pulls,
    archives: &'a archive::Archives,
}

/// Downloads a group's blob: from the first mirror that has it, when it has a sha256 to ask
/// for, else (saying so in one line, unless mirror-only forbids it) from its origin, which for
/// a file of an `oci:` tar layer is that layer, extracted. Returns the blob and the mirror
/// that served it.
async fn fetch_group(
    engine: &Engine,
    origins: Origins<'_>,
    reporter: &dyn Reporter,
    group: &Group,
    progress: Arc<dyn fetch::FileProgress>,
) -> Result<(Fetched, Option<String>), GroupFailure> {
    let mirrors = origins.mirrors;
    if mirrors.asked() && (mirrors.only || group.job.sha256.is_some()) {
        let mut ids: Vec<String> = Vec::new();
        for id in group.models() {
            if !ids.contains(&id.to_string()) {
                ids.push(id.to_string());
            }
        }
        match mirrors
            .fetch(engine, &group.job, &ids, progress.clone())
            .await
        {
            mirror::Attempt::Served(downloaded, from) => {
                return Ok((Fetched::Downloaded(downloaded), Some(from)));
            }
            mirror::Attempt::Cancelled => {
                return Err(GroupFailure::Fetch(fetch::FetchError::Cancelled));
            }
            mirror::Attempt::Missed(said) if mirrors.only => {
                return Err(GroupFailure::MirrorOnly(said));
            }
            mirror::Attempt::Missed(said) => reporter.step(&format!(
                "{}/{} is not from a mirror: {}; downloading it from the origin",
                group.label.model,
                group.label.path,
                said.join("; ")
            )),
        }
    }
    if let (Some(layer), Some(sha256)) = (
        group.oci.as_ref().and_then(|blob| blob.archive),
        group.job.sha256,
    ) {
        let data = origins
            .archives
            .take(engine, origins.oci, reporter, &layer.digest, &sha256)
            .await
            .map_err(GroupFailure::Fetch)?;
        return Ok((Fetched::Extracted { data, sha256 }, None));
    }
    let job = match (&group.oci, group.job.sha256) {
        (Some(blob), Some(digest)) => FileJob {
            authorization: origins
                .oci
                .authorization(blob, &digest)
                .await
                .map_err(|why| GroupFailure::Fetch(fetch::FetchError::Http(why)))?,
            ..group.job.clone()
        },
        _ => group.job.clone(),
    };
    let downloaded = engine.fetch(&job, progress).await;
    downloaded
        .map(|d| (Fetched::Downloaded(d), None))
        .map_err(GroupFailure::Fetch)
}

/// A group's blob, verified and ready to publish: downloaded, or extracted from a tar layer.
enum Fetched {
    Downloaded(fetch::Downloaded),
    Extracted {
        data: std::path::PathBuf,
        sha256: Sha256,
    },
}

impl Fetched {
    fn data(&self) -> &std::path::Path {
        match self {
            Fetched::Downloaded(d) => &d.data,
            Fetched::Extracted { data, .. } => data,
        }
    }

    fn sha256(&self) -> Sha256 {
        match self {
            Fetched::Downloaded(d) => d.digests.sha256,
            Fetched::Extracted { sha256, .. } => *sha256,
        }
    }

    /// The git blob id the download computed (a tar layer's files have none to compare).
    fn git_oid(&self) -> Option<crate::digest::GitOid> {
        match self {
            Fetched::Downloaded(d) => d.digests.git_oid,
            Fetched::Extracted { .. } => None,
        }
    }
}

/// Marks a file of `model` as taken from a blob: the model's directory is rebuilt with it.
fn take(changed: &mut BTreeMap<ModelId, BTreeSet<RelPath>>, model: &ModelId, path: &RelPath) {
    changed
        .entry(model.clone())
        .or_default()
        .insert(path.clone());
}

/// Holds back one linked file of `model` (with its step line, if it has one of its own) until
/// the model's new directory is in place.
fn link_later(outcome: &Mutex<Outcome>, model: &ModelId, line: Option<String>) {
    if let Ok(mut o) = outcome.lock() {
        let (lines, count) = o.pending.links.entry(model.clone()).or_default();
        lines.extend(line);
        *count += 1;
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
