//! The Hugging Face cache (`HF_HUB_CACHE`), the layout `huggingface_hub`, `transformers` and
//! `diffusers` read (docs/protocols.md §1.5):
//!
//! ```text
//! models--org--name/
//!   blobs/<etag>                      the bytes; etag = sha256 (LFS) or git blob id (regular)
//!   snapshots/<commit>/<path>         relative symlink to ../../blobs/<etag>
//!   refs/<revision>                   the commit, when the revision is a branch or tag
//! ```
//!
//! This file reads the cache; `apply/hf_cache.rs` writes it. [`HfCache::find`] finds a file
//! the cache already holds (an LFS file by its sha256, a regular file by its git blob id), so
//! `plan` can reuse it instead of downloading (its bytes are hashed before they are trusted:
//! Python never checks); [`HfCache::view`] gathers that, for every declared model, into the
//! [`CacheView`] the planner is given. [`HfCache::is_shared`] tells whether a model with `hf_cache: true` is
//! laid out there on the store's own inodes, and [`HfCache::verify_snapshot`] hashes what a
//! snapshot serves, for `verify`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use super::Repo;
use crate::digest::{GitOid, Sha256};
use crate::lock::{LockedFile, LockedModel, LockedSource};
use crate::manifest::RepoType;
use crate::names::{ModelId, RelPath, TypeName};
use crate::store::{Store, StoreState};

/// What the planner needs to know about the cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheView {
    /// Blobs present in the cache for declared models, by sha256 (an LFS file's name; a
    /// regular file's, once its bytes were hashed and matched its git blob id).
    pub blobs: BTreeMap<Sha256, PathBuf>,
    /// Regular files found in the cache by git blob id and verified, with their sha256.
    pub git_oids: BTreeMap<GitOid, Sha256>,
    /// `hf` models that should be shared (`hf_cache: true`) and are not complete there yet.
    pub unshared: BTreeSet<ModelId>,
}

/// One declared `hf` model, with the lock entry it is pinned to (by models.lock, or by this
/// run's resolution).
#[derive(Debug, Clone)]
pub struct Declared<'a> {
    pub id: &'a ModelId,
    pub kind: &'a TypeName,
    pub repo: Repo,
    pub locked: &'a LockedModel,
}

/// `models--org--name` (or `datasets--…`, `spaces--…`), as `huggingface_hub` names it.
pub fn folder_name(repo: &Repo) -> String {
    let kind = match repo.kind {
        RepoType::Model => "models",
        RepoType::Dataset => "datasets",
        RepoType::Space => "spaces",
    };
    format!("{kind}--{}", repo.id.replace('/', "--"))
}

/// One cache root.
#[derive(Debug, Clone)]
pub struct HfCache {
    root: PathBuf,
}

impl HfCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The repository's folder in the cache.
    pub fn repo_dir(&self, repo: &Repo) -> PathBuf {
        self.root.join(folder_name(repo))
    }

    /// The bytes the cache holds of a repository (its blobs), when it holds any.
    pub fn held(&self, repo: &Repo) -> Option<u64> {
        let blobs = fs::read_dir(self.repo_dir(repo).join("blobs")).ok()?;
        let bytes = blobs
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        Some(bytes)
    }

    /// The name of a file's blob: its sha256 for LFS files, its git blob id otherwise.
    pub fn etag(file: &LockedFile) -> Option<String> {
        match (file.git_oid, file.sha256) {
            (Some(oid), _) => Some(oid.hex()),
            (None, Some(sha)) => Some(sha.hex()),
            (None, None) => None,
        }
    }

    /// The cached blob of a file (named by its git blob id or sha256), if the cache has one
    /// of the right size. Nothing here says its bytes are right: callers hash before trusting.
    pub fn find(&self, repo: &Repo, file: &LockedFile) -> Option<PathBuf> {
        let path = self.repo_dir(repo).join("blobs").join(Self::etag(file)?);
        let meta = fs::symlink_metadata(&path).ok()?;
        (meta.is_file() && meta.len() == file.size).then_some(path)
    }

    /// What the cache holds for the declared models: blobs it could lend, and (with
    /// `hf_cache: true`, `share`) the models not yet shared there.
    pub fn view<'a>(
        &self,
        declared: impl IntoIterator<Item = Declared<'a>>,
        state: &StoreState,
        store: &Store,
        share: bool,
    ) -> CacheView {
        let mut view = CacheView::default();
        for model in declared {
            let LockedSource::Hf {
                revision, commit, ..
            } = &model.locked.source
            else {
                continue;
            };
            self.lend(&model, state, store, &mut view);
            let store_file = |f: &LockedFile| {
                let present = state.models.get(&(model.kind.clone(), model.id.clone()))?;
                present
                    .files
                    .get(&f.path)
                    .filter(|p| Some(p.sha256) == f.sha256)
                    .map(|_| f.path.under(&store.model_dir(model.kind, model.id)))
            };
            if share
                && !self.is_shared(
                    &model.repo,
                    revision,
                    commit,
                    &model.locked.files,
                    &store_file,
                )
            {
                view.unshared.insert(model.id.clone());
            }
        }
        view
    }

    /// Adds the blobs the cache could lend for a model's files the store lacks. An LFS blob
    /// is offered by name (apply hashes it before taking it), unless it is the very inode of
    /// the store's blob, which the scan found damaged; a regular file is offered only once its
    /// bytes are hashed here and match its git blob id (they are small).
    fn lend(&self, model: &Declared<'_>, state: &StoreState, store: &Store, view: &mut CacheView) {
        for file in &model.locked.files {
            let wanted = match (file.sha256, file.git_oid) {
                (Some(sha), _) => !state.blobs.contains_key(&sha),
                (None, Some(oid)) => !state.blob_git_oids.contains_key(&oid),
                (None, None) => false,
            };
            let Some(path) = wanted.then(|| self.find(&model.repo, file)).flatten() else {
                continue;
            };
            match (file.git_oid, file.sha256) {
                (Some(oid), _) => {
                    if let Some(sha) = verified_regular(&path, oid, file) {
                        view.blobs.insert(sha, path);
                        view.git_oids.insert(oid, sha);
                    }
                }
                (None, Some(sha)) if !is_same_file(&path, &store.blob_path(&sha)) => {
                    view.blobs.insert(sha, path);
                }
                _ => {}
            }
        }
    }

    /// Whether the model is complete in the cache: the revision's ref names the commit and
    /// every file's snapshot entry leads to the store's own bytes. `store_file` gives the
    /// store's file for a locked file when it holds the locked bytes (a model not complete in
    /// the store is not shared yet); a snapshot entry must be that very inode, or (on another
    /// filesystem, where the cache holds a copy) a file of its size.
    pub fn is_shared(
        &self,
        repo: &Repo,
        revision: &str,
        commit: &str,
        files: &[LockedFile],
        store_file: &dyn Fn(&LockedFile) -> Option<PathBuf>,
    ) -> bool {
        let dir = self.repo_dir(repo);
        if revision != commit {
            let Ok(rel) = RelPath::parse(revision) else {
                return false;
            };
            match fs::read_to_string(rel.under(&dir.join("refs"))) {
                Ok(text) if text.trim() == commit => {}
                _ => return false,
            }
        }
        let snapshot = dir.join("snapshots").join(commit);
        use std::os::unix::fs::MetadataExt;
        files.iter().all(|f| {
            let Ok(cached) = fs::metadata(f.path.under(&snapshot)) else {
                return false;
            };
            let Some(store) = store_file(f).and_then(|p| fs::metadata(p).ok()) else {
                return false;
            };
            cached.is_file()
                && cached.len() == f.size
                && (same_inode(&store, &cached) || store.dev() != cached.dev())
        })
    }

    /// Hashes what the snapshot of `commit` serves for every locked file (following its links,
    /// as `huggingface_hub` does) and compares it with the lock. Returns the problems, each
    /// with the snapshot entry's path.
    pub fn verify_snapshot(
        &self,
        repo: &Repo,
        commit: &str,
        files: &[LockedFile],
    ) -> Vec<crate::store::verify::Problem> {
        use crate::store::verify::{Problem, ProblemKind, judge};
        let snapshot = self.repo_dir(repo).join("snapshots").join(commit);
        let mut problems = Vec::new();
        for file in files {
            let entry = file.path.under(&snapshot);
            let problem = |kind, found, actual: Option<crate::digest::Digests>, size| Problem {
                kind,
                path: entry.display().to_string(),
                expected_sha256: file.sha256,
                actual_sha256: actual.map(|d| d.sha256),
                expected_size: Some(file.size),
                actual_size: size,
                expected_git_oid: file.git_oid,
                actual_git_oid: actual.and_then(|d| d.git_oid),
                found,
                link_target: None,
            };
            let meta = match fs::metadata(&entry) {
                Ok(meta) => meta,
                Err(_) => {
                    problems.push(problem(ProblemKind::Missing, None, None, None));
                    continue;
                }
            };
            if !meta.is_file() {
                let found = Some(crate::store::EntryKind::of(&meta));
                problems.push(problem(ProblemKind::NotAFile, found, None, None));
                continue;
            }
            let extra = crate::digest::Extra::to_check(file.md5, file.git_oid, meta.len());
            let found = Some(crate::store::EntryKind::File);
            match crate::store::hash_file_with(&entry, extra) {
                Ok(actual) => {
                    if let Some(kind) = judge(file, meta.len(), &actual) {
                        problems.push(problem(kind, found, Some(actual), Some(meta.len())));
                    }
                }
                Err(_) => problems.push(problem(ProblemKind::Corrupted, found, None, None)),
            }
        }
        problems
    }
}

/// The sha256 of a regular file in the cache, when its bytes have the locked git blob id.
fn verified_regular(path: &std::path::Path, oid: GitOid, file: &LockedFile) -> Option<Sha256> {
    let extra = crate::digest::Extra::to_check(None, Some(oid), file.size);
    let got = crate::store::hash_file_with(path, extra).ok()?;
    let expected = crate::digest::Expected {
        sha256: file.sha256,
        md5: None,
        git_oid: Some(oid),
    };
    expected.check(&got).ok().map(|()| got.sha256)
}

/// Whether two paths lead to the same inode (with `hf_cache: true` a cache blob is the
/// store's; when the scan found the store's damaged, so is the cache's).
fn is_same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => same_inode(&a, &b),
        _ => false,
    }
}

/// Whether two entries are the same file on disk.
pub fn same_inode(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}
