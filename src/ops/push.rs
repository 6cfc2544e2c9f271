//! `push`: locked models, from the store, to an OCI registry as ModelPack artifacts.
//!
//! For each model (the ids named, or every locked one): check that every file of its lock is
//! in the store and is what the lock says, build its ModelPack documents
//! ([`crate::registry::modelpack`]), push its blobs — skipped when the repository has them,
//! mounted when another model of this push put them in the same registry, else uploaded
//! straight from `<store>/blobs/sha256/…`, several at a time — then the config, and last the
//! manifest under the pin's tag (and `--tag`). A push that stopped half-way is resumed by
//! running it again: what arrived is skipped.
//!
//! Files are checked against the lock before anything is sent: a blob whose size and stamp
//! the stat cache vouches for (it was hashed by `apply`, `verify` or a scan and has not been
//! touched since) is trusted; any other is hashed. The registry checks every digest again
//! when the upload ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde::Serialize;

use crate::digest::Sha256;
use crate::lock::{LockedModel, LockedSource, fingerprint};
use crate::names::ModelId;
use crate::project::Project;
use crate::registry::modelpack::{self, Descriptor, FileKind, LayerFile};
use crate::registry::session::{BlobOutcome, Session, SessionError};
use crate::registry::{Target, auth};
use crate::store::{Stamp, StatCache};
use crate::units::human_bytes;

/// The JSON document's version; fields are only ever added.
pub const PUSH_FORMAT: u32 = 1;

/// What to push, and where.
pub struct PushRequest<'a> {
    pub ids: &'a [String],
    pub to: &'a str,
    /// A moving tag besides the pin's own.
    pub tag: Option<&'a str>,
    /// Blobs uploaded at a time.
    pub jobs: usize,
}

/// What a push did.
#[derive(Debug, Serialize)]
pub struct PushReport {
    pub format: u32,
    pub registry: String,
    pub namespace: String,
    pub models: Vec<PushedModel>,
    /// Models not pushed because none was named and they cannot be (not locked, Ollama).
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub id: ModelId,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct PushedModel {
    pub id: ModelId,
    pub repository: String,
    pub tags: Vec<String>,
    /// `sha256:…` of the manifest: `repository@digest` names exactly this push.
    pub manifest_digest: String,
    pub files: Vec<PushedFile>,
    pub uploaded_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct PushedFile {
    pub path: String,
    pub digest: String,
    pub size: u64,
    pub media_type: &'static str,
    /// uploaded | present | mounted
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounted_from: Option<String>,
}

/// Why a model cannot be pushed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot push {id} to {registry}: {cause}")]
#[diagnostic(code(modelctl::push))]
pub struct PushError {
    /// `` `voice` ``, or `models` before any model is at stake.
    pub id: String,
    pub registry: String,
    pub cause: String,
    #[help]
    pub help: String,
}

/// The tag a pin always gets: `pin-` and 16 hex digits of the hash of its lock entry (source,
/// files and fingerprint), so the same pin is the same tag and a new pin a new one.
pub fn pin_tag(locked: &LockedModel) -> String {
    let mut input = b"modelctl-push-tag-v1\n".to_vec();
    input.extend_from_slice(&serde_json::to_vec(locked).unwrap_or_default());
    format!("pin-{}", &Sha256::of(&input).hex()[..16])
}

/// Pushes the requested models; `say` gets the progress lines.
pub fn push(
    project: &Project,
    request: &PushRequest<'_>,
    say: &(dyn Fn(String) + Sync),
) -> miette::Result<PushReport> {
    let target = crate::registry::Target::parse(request.to)?;
    let registry = target.shown();
    let fail = |id: &str, cause: String, help: String| PushError {
        id: if id == "*" {
            "models".to_owned()
        } else {
            format!("`{id}`")
        },
        registry: registry.clone(),
        cause,
        help,
    };
    if let Some(tag) = request.tag.filter(|t| !crate::registry::is_tag(t)) {
        return Err(fail(
            "*",
            format!("`--tag {tag}` is not a tag"),
            "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
                .to_owned(),
        )
        .into());
    }
    let (chosen, skipped) = choose(project, request.ids, &fail)?;
    let cache = StatCache::load(&project.store.stat_cache_path());
    let mut prepared = Vec::new();
    for (id, locked) in &chosen {
        let files = verified_files(project, &cache, id, locked)
            .map_err(|(cause, help)| fail(id.as_str(), cause, help))?;
        prepared.push((id, *locked, files));
    }
    let credentials = auth::find(
        project.settings.registry_auth.as_ref().map(|t| t.expose()),
        project.settings.docker_config.as_deref(),
        &target.host,
    )?;
    let client = crate::net::Client::new(&project.settings.net).map_err(|e| {
        fail(
            "*",
            format!("cannot set up the HTTP client: {e}"),
            "report this".to_owned(),
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            fail(
                "*",
                format!("cannot start the async runtime: {e}"),
                "report this".to_owned(),
            )
        })?;
    let session = Session::new(client, target.clone(), credentials)
        .with_chunk_size(project.settings.push_chunk);
    let mut mounts: BTreeMap<Sha256, String> = BTreeMap::new();
    let mut models = Vec::new();
    for (id, locked, files) in prepared {
        let pushed = runtime
            .block_on(push_model(
                &session, project, id, locked, &files, request, &mounts, say,
            ))
            .map_err(|e| fail(id.as_str(), e.to_string(), e.help()))?;
        for file in &files {
            mounts
                .entry(file.sha256)
                .or_insert_with(|| pushed.repository.clone());
        }
        models.push(pushed);
    }
    Ok(PushReport {
        format: PUSH_FORMAT,
        registry: target.host.clone(),
        namespace: target.namespace.clone(),
        models,
        skipped,
    })
}

type Chosen<'p> = Vec<(ModelId, &'p LockedModel)>;

/// The models to push: each named one must be locked, current and in the store; with none
/// named, every locked one that can be, the others listed as skipped.
fn choose<'p>(
    project: &'p Project,
    named: &[String],
    fail: &dyn Fn(&str, String, String) -> PushError,
) -> miette::Result<(Chosen<'p>, Vec<Skipped>)> {
    let ids = super::select::select_ids(project, named)?;
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    for id in ids {
        let Some(entry) = project.manifest.models.get(&id) else {
            continue;
        };
        let why = match project.lock.models.get(&id) {
            None => Some("it is not in models.lock (run `modelctl lock` and `modelctl apply`)"),
            Some(l) if l.fingerprint != fingerprint(entry) => Some(
                "models.yaml changed since it was locked (run `modelctl lock` and `modelctl apply`)",
            ),
            Some(l) if matches!(l.source, LockedSource::Ollama { .. }) => Some(
                "it is an Ollama model, kept by Ollama and not in the store (it is already in an OCI registry)",
            ),
            Some(l) if l.files.is_empty() => Some("its lock lists no files"),
            Some(_) => None,
        };
        match (why, named.is_empty()) {
            (None, _) => {
                if !crate::registry::is_repo_component(id.as_str()) {
                    return Err(fail(
                        id.as_str(),
                        "its id is not a repository name (lowercase letters and digits, separated by `.`, `_`, `__` or `-`)".to_owned(),
                        "rename the model in models.yaml to a lowercase id".to_owned(),
                    )
                    .into());
                }
                if let Some(locked) = project.lock.models.get(&id) {
                    chosen.push((id, locked));
                }
            }
            (Some(why), true) => skipped.push(Skipped {
                id,
                reason: why.to_owned(),
            }),
            (Some(why), false) => {
                return Err(fail(
                    id.as_str(),
                    why.to_owned(),
                    "push only models that `modelctl apply` has put in the store".to_owned(),
                )
                .into());
            }
        }
    }
    Ok((chosen, skipped))
}

/// Every file of the lock, checked in the store: present as a regular blob of the locked
/// size, and either vouched for by the stat cache or hashed now. `Err((cause, help))`.
fn verified_files(
    project: &Project,
    cache: &StatCache,
    id: &ModelId,
    locked: &LockedModel,
) -> Result<Vec<LayerFile>, (String, String)> {
    let apply = format!("run `modelctl apply` (or `modelctl verify --repair {id}`) first");
    let mut files = Vec::new();
    for file in &locked.files {
        let Some(sha256) = file.sha256 else {
            return Err((
                format!(
                    "models.lock has no sha256 for `{}`, so it has no blob in the store",
                    file.path
                ),
                apply,
            ));
        };
        let blob = project.store.blob_path(&sha256);
        let meta = match std::fs::symlink_metadata(&blob) {
            Ok(meta) if meta.is_file() => meta,
            _ => {
                return Err((
                    format!(
                        "`{}` is not in the store (no blob `{}`)",
                        file.path,
                        blob.display()
                    ),
                    apply,
                ));
            }
        };
        if meta.len() != file.size {
            return Err((
                format!(
                    "the blob of `{}` has {} bytes, models.lock says {}",
                    file.path,
                    meta.len(),
                    file.size
                ),
                apply,
            ));
        }
        let hex = sha256.hex();
        let key = format!("blobs/sha256/{}/{hex}", &hex[..2]);
        let vouched = cache.get(&key, &Stamp::of(&meta)) == Some(sha256);
        if !vouched {
            let actual =
                crate::store::hash_file(&blob).map_err(|e| (e.to_string(), apply.clone()))?;
            if actual != sha256 {
                return Err((
                    format!(
                        "the blob of `{}` is corrupt: its bytes hash to {actual}",
                        file.path
                    ),
                    apply,
                ));
            }
        }
        files.push(LayerFile {
            path: file.path.to_string(),
            sha256,
            size: file.size,
        });
    }
    Ok(files)
}

fn descriptor(id: &ModelId, locked: &LockedModel) -> Descriptor {
    let (source_url, revision) = match &locked.source {
        LockedSource::Hf { hf, commit, .. } => (
            Some(format!("https://huggingface.co/{hf}")),
            Some(commit.clone()),
        ),
        LockedSource::Url { url, .. } => (
            url::Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .map(|u| crate::net::SafeUrl::from(&u).to_string()),
            None,
        ),
        LockedSource::Ollama { .. } => (None, None),
        LockedSource::Oci { digest, .. } => (None, Some(format!("sha256:{digest}"))),
    };
    Descriptor {
        name: id.to_string(),
        source_url,
        revision,
    }
}

#[allow(clippy::too_many_arguments)]
async fn push_model(
    session: &Session,
    project: &Project,
    id: &ModelId,
    locked: &LockedModel,
    files: &[LayerFile],
    request: &PushRequest<'_>,
    mounts: &BTreeMap<Sha256, String>,
    say: &(dyn Fn(String) + Sync),
) -> Result<PushedModel, SessionError> {
    let target: &Target = session.target();
    let repo = target.repository(id.as_str());
    let mut tags = vec![pin_tag(locked)];
    tags.extend(request.tag.map(str::to_owned).filter(|t| *t != tags[0]));
    let documents =
        modelpack::documents(&descriptor(id, locked), files).map_err(|e| SessionError::Read {
            path: "the ModelPack documents".to_owned(),
            why: e.to_string(),
        })?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    say(format!(
        "Pushing {id} to {}/{repo}:{} ({} file{}, {})",
        target.host,
        tags[0],
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        human_bytes(total)
    ));
    let mut unique: BTreeMap<Sha256, &LayerFile> = BTreeMap::new();
    for file in files {
        unique.entry(file.sha256).or_insert(file);
    }
    let counters: Vec<Arc<AtomicU64>> =
        unique.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let started = Instant::now();
    let uploads = futures_util::stream::iter(unique.values().zip(&counters).map(|(file, sent)| {
        let path = project.store.blob_path(&file.sha256);
        let from = mounts
            .get(&file.sha256)
            .filter(|r| **r != repo)
            .map(String::as_str);
        let repo = &repo;
        async move {
            let outcome = session
                .push_blob(repo, &file.sha256, file.size, &path, from, sent.clone())
                .await?;
            let how = match &outcome {
                BlobOutcome::Present => "already there".to_owned(),
                BlobOutcome::Mounted { from } => format!("mounted from {from}"),
                BlobOutcome::Uploaded => "uploaded".to_owned(),
            };
            say(format!(
                "  {} ({}): {how}",
                file.path,
                human_bytes(file.size)
            ));
            Ok::<_, SessionError>((file.sha256, outcome))
        }
    }))
    .buffer_unordered(request.jobs.max(1))
    .collect::<Vec<_>>();
    let ticker = async {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let sent: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
            if sent != last {
                say(format!(
                    "  {id}: {} of {} sent",
                    human_bytes(sent),
                    human_bytes(total)
                ));
                last = sent;
            }
        }
    };
    let results = match futures_util::future::select(Box::pin(uploads), Box::pin(ticker)).await {
        futures_util::future::Either::Left((results, _)) => results,
        futures_util::future::Either::Right(((), _)) => Vec::new(),
    };
    let mut outcomes = BTreeMap::new();
    for result in results {
        let (digest, outcome) = result?;
        outcomes.insert(digest, outcome);
    }
    session.push_bytes(&repo, &documents.config).await?;
    for tag in &tags {
        session
            .put_manifest(&repo, tag, &documents.manifest)
            .await?;
    }
    let uploaded_bytes = unique
        .values()
        .filter(|f| outcomes.get(&f.sha256) == Some(&BlobOutcome::Uploaded))
        .map(|f| f.size)
        .sum();
    say(format!(
        "Pushed {id}: {}/{repo}@sha256:{} ({} uploaded in {:.1?})",
        target.host,
        documents.manifest_digest().hex(),
        human_bytes(uploaded_bytes),
        started.elapsed()
    ));
    let files = files
        .iter()
        .map(|f| {
            let outcome = outcomes.get(&f.sha256);
            PushedFile {
                path: f.path.clone(),
                digest: format!("sha256:{}", f.sha256.hex()),
                size: f.size,
                media_type: FileKind::of(&f.path).media_type(),
                outcome: match outcome {
                    Some(BlobOutcome::Uploaded) => "uploaded",
                    Some(BlobOutcome::Mounted { .. }) => "mounted",
                    _ => "present",
                },
                mounted_from: match outcome {
                    Some(BlobOutcome::Mounted { from }) => Some(from.clone()),
                    _ => None,
                },
            }
        })
        .collect();
    Ok(PushedModel {
        id: id.clone(),
        repository: repo,
        tags,
        manifest_digest: format!("sha256:{}", documents.manifest_digest().hex()),
        files,
        uploaded_bytes,
    })
}
