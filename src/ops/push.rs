//! `push`: locked models to an OCI registry, store files as ModelPack artifacts and Ollama
//! models as their own manifest (`ops/push_ollama.rs`), both through `push_artifact`.
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
//!
//! An Ollama model is pushed as its own manifest, not ModelPack, from a local Ollama store
//! (`push_ollama`): its digest stays the pin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde::Serialize;

use super::push_ollama::OllamaCopy;
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
    /// Models not pushed because none was named and they cannot be (not locked, an Ollama
    /// model whose files are not on this machine).
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
    pub media_type: String,
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
    for (id, locked, ollama) in &chosen {
        let checked = match ollama {
            Some(copy) => super::push_ollama::verify(copy).map(|()| Prepared::Ollama(copy.clone())),
            None => verified_files(project, &cache, id, locked).map(Prepared::Files),
        };
        let checked = checked.map_err(|(cause, help)| fail(id.as_str(), cause, help))?;
        prepared.push((id, *locked, checked));
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
    for (id, locked, checked) in prepared {
        let pushing = Pushing {
            session: &session,
            id,
            locked,
            request,
            mounts: &mounts,
            say,
        };
        let pushed = match &checked {
            Prepared::Files(files) => runtime.block_on(push_model(&pushing, project, files)),
            Prepared::Ollama(copy) => runtime.block_on(push_ollama_model(&pushing, copy)),
        }
        .map_err(|e| fail(id.as_str(), e.to_string(), e.help()))?;
        for file in &pushed.files {
            if let Some(digest) = file.digest.strip_prefix("sha256:")
                && let Ok(digest) = Sha256::parse(digest)
            {
                mounts
                    .entry(digest)
                    .or_insert_with(|| pushed.repository.clone());
            }
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

type Chosen<'p> = Vec<(ModelId, &'p LockedModel, Option<OllamaCopy>)>;

/// What is pushed of a model, checked: its store files, or an Ollama model's local copy.
enum Prepared {
    Files(Vec<LayerFile>),
    Ollama(OllamaCopy),
}

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
        let mut ollama = None;
        let why = match project.lock.models.get(&id) {
            None => Some(
                "it is not in models.lock (run `modelctl lock` and `modelctl apply`)".to_owned(),
            ),
            Some(l) if l.fingerprint != fingerprint(entry) => Some(
                "models.yaml changed since it was locked (run `modelctl lock` and `modelctl apply`)"
                    .to_owned(),
            ),
            Some(l) if matches!(l.source, LockedSource::Ollama { .. }) => {
                match super::push_ollama::find(&project.settings.ollama_stores, l) {
                    Ok(copy) => {
                        ollama = Some(copy);
                        None
                    }
                    Err(why) => Some(format!(
                        "it is an Ollama model whose files are not on this machine: {why}"
                    )),
                }
            }
            Some(l) if l.files.is_empty() => Some("its lock lists no files".to_owned()),
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
                    chosen.push((id, locked, ollama));
                }
            }
            (Some(reason), true) => skipped.push(Skipped { id, reason }),
            (Some(why), false) => {
                return Err(fail(
                    id.as_str(),
                    why,
                    "push only models that `modelctl apply` has put in the store, or Ollama \
                     models whose manifest and blobs are in a local Ollama store"
                        .to_owned(),
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

/// One model's push: where to, what, and how.
struct Pushing<'a> {
    session: &'a Session,
    id: &'a ModelId,
    locked: &'a LockedModel,
    request: &'a PushRequest<'a>,
    /// Blobs this push already put in another repository of the registry.
    mounts: &'a BTreeMap<Sha256, String>,
    say: &'a (dyn Fn(String) + Sync),
}

/// A blob to push: what to call it, its media type, and where its bytes are.
struct BlobToPush {
    label: String,
    media_type: String,
    sha256: Sha256,
    size: u64,
    path: std::path::PathBuf,
}

/// What one model's push sends: its blobs, the config blob when the manifest needs one
/// uploaded beside them, then the manifest (verbatim, of `media_type`) under each tag.
struct Artifact {
    /// How the first line describes it (`2 files, 1.0 GiB`).
    summary: String,
    blobs: Vec<BlobToPush>,
    config: Option<Vec<u8>>,
    manifest: Vec<u8>,
    media_type: String,
}

impl Pushing<'_> {
    fn repository(&self) -> String {
        self.session.target().repository(self.id.as_str())
    }

    /// The pin's tag, then `--tag`.
    fn tags(&self) -> Vec<String> {
        let mut tags = vec![pin_tag(self.locked)];
        tags.extend(
            self.request
                .tag
                .map(str::to_owned)
                .filter(|t| *t != tags[0]),
        );
        tags
    }
}

/// Pushes a model's store files as a ModelPack artifact.
async fn push_model(
    p: &Pushing<'_>,
    project: &Project,
    files: &[LayerFile],
) -> Result<PushedModel, SessionError> {
    let documents = modelpack::documents(&descriptor(p.id, p.locked), files).map_err(|e| {
        SessionError::Read {
            path: "the ModelPack documents".to_owned(),
            why: e.to_string(),
        }
    })?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let artifact = Artifact {
        summary: format!(
            "{} file{}, {}",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            human_bytes(total)
        ),
        blobs: files
            .iter()
            .map(|f| BlobToPush {
                label: f.path.clone(),
                media_type: FileKind::of(&f.path).media_type().to_owned(),
                sha256: f.sha256,
                size: f.size,
                path: project.store.blob_path(&f.sha256),
            })
            .collect(),
        config: Some(documents.config),
        manifest: documents.manifest,
        media_type: modelpack::MANIFEST_MEDIA_TYPE.to_owned(),
    };
    push_artifact(p, &artifact).await
}

/// Pushes an Ollama model's blobs from its local store, then its manifest, verbatim and with
/// its own media type: the registry names it by the pinned digest.
async fn push_ollama_model(
    p: &Pushing<'_>,
    copy: &OllamaCopy,
) -> Result<PushedModel, SessionError> {
    let total: u64 = copy.blobs.iter().map(|b| b.size).sum();
    let artifact = Artifact {
        summary: format!(
            "its Ollama manifest and {} blobs, {}",
            copy.blobs.len(),
            human_bytes(total)
        ),
        blobs: copy
            .blobs
            .iter()
            .map(|b| BlobToPush {
                label: b.label.clone(),
                media_type: b.media_type.clone(),
                sha256: b.sha256,
                size: b.size,
                path: b.path.clone(),
            })
            .collect(),
        config: None,
        manifest: copy.manifest.clone(),
        media_type: copy.media_type.clone(),
    };
    push_artifact(p, &artifact).await
}

/// Pushes `artifact` to the model's repository, saying when it starts and ends.
async fn push_artifact(p: &Pushing<'_>, artifact: &Artifact) -> Result<PushedModel, SessionError> {
    let (session, id) = (p.session, p.id);
    let target: &Target = session.target();
    let repo = p.repository();
    let tags = p.tags();
    (p.say)(format!(
        "Pushing {id} to {}/{repo}:{} ({})",
        target.host, tags[0], artifact.summary
    ));
    let started = Instant::now();
    let outcomes = upload_blobs(p, &repo, &artifact.blobs).await?;
    if let Some(config) = &artifact.config {
        session.push_bytes(&repo, config).await?;
    }
    for tag in &tags {
        session
            .put_manifest_as(&repo, tag, &artifact.manifest, &artifact.media_type)
            .await?;
    }
    let manifest_digest = Sha256::of(&artifact.manifest);
    let uploaded_bytes = uploaded(&artifact.blobs, &outcomes);
    (p.say)(format!(
        "Pushed {id}: {}/{repo}@sha256:{} ({} uploaded in {:.1?})",
        target.host,
        manifest_digest.hex(),
        human_bytes(uploaded_bytes),
        started.elapsed()
    ));
    let files = artifact
        .blobs
        .iter()
        .map(|b| {
            pushed_file(
                b.label.clone(),
                b.sha256,
                b.size,
                b.media_type.clone(),
                outcomes.get(&b.sha256),
            )
        })
        .collect();
    Ok(PushedModel {
        id: id.clone(),
        repository: repo,
        tags,
        manifest_digest: format!("sha256:{}", manifest_digest.hex()),
        files,
        uploaded_bytes,
    })
}

/// The bytes of `blobs` (each once) that were uploaded rather than found or mounted.
fn uploaded(blobs: &[BlobToPush], outcomes: &BTreeMap<Sha256, BlobOutcome>) -> u64 {
    let mut seen = std::collections::BTreeSet::new();
    blobs
        .iter()
        .filter(|b| seen.insert(b.sha256))
        .filter(|b| outcomes.get(&b.sha256) == Some(&BlobOutcome::Uploaded))
        .map(|b| b.size)
        .sum()
}

fn pushed_file(
    path: String,
    sha256: Sha256,
    size: u64,
    media_type: String,
    outcome: Option<&BlobOutcome>,
) -> PushedFile {
    PushedFile {
        path,
        digest: format!("sha256:{}", sha256.hex()),
        size,
        media_type,
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
}

/// Pushes each blob once, `jobs` at a time: skipped when `repo` has it, mounted when this
/// push put it elsewhere in the registry, else uploaded; a line every two seconds says how
/// much is sent.
async fn upload_blobs(
    p: &Pushing<'_>,
    repo: &str,
    blobs: &[BlobToPush],
) -> Result<BTreeMap<Sha256, BlobOutcome>, SessionError> {
    let mut unique: BTreeMap<Sha256, &BlobToPush> = BTreeMap::new();
    for blob in blobs {
        unique.entry(blob.sha256).or_insert(blob);
    }
    let total: u64 = unique.values().map(|b| b.size).sum();
    let counters: Vec<Arc<AtomicU64>> =
        unique.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let uploads = futures_util::stream::iter(unique.values().zip(&counters).map(|(blob, sent)| {
        let from = p
            .mounts
            .get(&blob.sha256)
            .filter(|r| *r != repo)
            .map(String::as_str);
        async move {
            let outcome = p
                .session
                .push_blob(
                    repo,
                    &blob.sha256,
                    blob.size,
                    &blob.path,
                    from,
                    sent.clone(),
                )
                .await?;
            let how = match &outcome {
                BlobOutcome::Present => "already there".to_owned(),
                BlobOutcome::Mounted { from } => format!("mounted from {from}"),
                BlobOutcome::Uploaded => "uploaded".to_owned(),
            };
            (p.say)(format!(
                "  {} ({}): {how}",
                blob.label,
                human_bytes(blob.size)
            ));
            Ok::<_, SessionError>((blob.sha256, outcome))
        }
    }))
    .buffer_unordered(p.request.jobs.max(1))
    .collect::<Vec<_>>();
    let ticker = async {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let sent: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
            if sent != last {
                (p.say)(format!(
                    "  {}: {} of {} sent",
                    p.id,
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
    Ok(outcomes)
}
