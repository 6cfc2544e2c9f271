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
//! Two directions. [`HfCache::find`] finds a file the cache already holds (an LFS file by its
//! sha256, a regular file by its git blob id), so `plan` can reuse it instead of downloading
//! (its bytes are hashed before they are trusted: Python never checks). With `hf_cache: true`
//! in models.yaml, [`HfCache::share`] lays each `hf` model out there with hardlinks to the
//! store's blobs, one copy on disk, so that `from_pretrained(repo, revision=…)` works with
//! `HF_HUB_OFFLINE=1`. A blob the cache already holds under the right name is kept only when
//! it is the store's own inode, or (on another filesystem) when its bytes hash right; anything
//! else is replaced atomically by the verified bytes. Every name written is a validated
//! [`RelPath`] or hex digest; writes are link-then-rename, like in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::Repo;
use crate::digest::{Expected, GitOid, Sha256};
use crate::lock::LockedFile;
use crate::manifest::RepoType;
use crate::names::{ModelId, RelPath};

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

/// `models--org--name` (or `datasets--…`, `spaces--…`), as `huggingface_hub` names it.
pub fn folder_name(repo: &Repo) -> String {
    let kind = match repo.kind {
        RepoType::Model => "models",
        RepoType::Dataset => "datasets",
        RepoType::Space => "spaces",
    };
    format!("{kind}--{}", repo.id.replace('/', "--"))
}

/// What [`HfCache::share`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shared {
    /// Blobs linked to the store's (no extra space).
    pub linked: usize,
    /// Blobs copied because the cache is on another filesystem.
    pub copied: usize,
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

    /// Lays the model out in the cache. `blob_of` gives the store's blob for each file.
    pub fn share(
        &self,
        repo: &Repo,
        revision: &str,
        commit: &str,
        files: &[LockedFile],
        blob_of: &dyn Fn(&LockedFile) -> Option<PathBuf>,
    ) -> io::Result<Shared> {
        crate::digest::GitOid::parse(commit).map_err(io::Error::other)?;
        let dir = self.repo_dir(repo);
        let blobs = dir.join("blobs");
        let snapshot = dir.join("snapshots").join(commit);
        fs::create_dir_all(&blobs)?;
        let mut shared = Shared::default();
        for file in files {
            let (Some(etag), Some(source)) = (Self::etag(file), blob_of(file)) else {
                return Err(io::Error::other(format!(
                    "`{}` is not in the store yet, or its sha256 is unknown",
                    file.path
                )));
            };
            let blob = blobs.join(&etag);
            let expected = Expected {
                sha256: file.sha256,
                md5: None,
                git_oid: file.git_oid,
            };
            match place_blob(&source, &blob, &expected, file.size)? {
                Placed::Linked => shared.linked += 1,
                Placed::Copied => shared.copied += 1,
                Placed::Present => {}
            }
            let entry = file.path.under(&snapshot);
            let parent = entry.parent().unwrap_or(&snapshot).to_path_buf();
            fs::create_dir_all(&parent)?;
            let depth = file.path.as_str().matches('/').count();
            let target = format!("{}../../blobs/{etag}", "../".repeat(depth));
            replace_symlink(Path::new(&target), &entry)?;
        }
        if revision != commit {
            let rel = RelPath::parse(revision).map_err(|e| {
                io::Error::other(format!("revision `{revision}` cannot name a ref file: {e}"))
            })?;
            let path = rel.under(&dir.join("refs"));
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            crate::durable::write_if_changed(&path, commit.as_bytes())?;
        }
        Ok(shared)
    }
}

impl HfCache {
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

enum Placed {
    Linked,
    Copied,
    Present,
}

/// Whether two entries are the same file on disk.
fn same_inode(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Puts the store's verified blob at `blob` in the cache: a hardlink (one copy), else a copy.
/// What is there already stays only if it is that same inode, or a file on another filesystem
/// whose bytes hash to what the lock says; a blob `huggingface_hub` left damaged is replaced.
fn place_blob(source: &Path, blob: &Path, expected: &Expected, size: u64) -> io::Result<Placed> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(have), Ok(want)) = (fs::symlink_metadata(blob), fs::metadata(source))
        && have.is_file()
        && have.len() == want.len()
    {
        if same_inode(&have, &want) {
            return Ok(Placed::Present);
        }
        if have.dev() != want.dev() {
            let got = crate::store::hash_file_with(blob, expected.extra(size))
                .map_err(|e| io::Error::other(e.to_string()))?;
            if expected.check(&got).is_ok() {
                return Ok(Placed::Present);
            }
        }
    }
    let temp = blob.with_extension(format!("modelctl-{}.incomplete", std::process::id()));
    let _ = fs::remove_file(&temp);
    let placed = match fs::hard_link(source, &temp) {
        Ok(()) => Placed::Linked,
        Err(_) => {
            fs::copy(source, &temp)?;
            fs::File::open(&temp)?.sync_all()?;
            Placed::Copied
        }
    };
    fs::rename(&temp, blob)?;
    crate::durable::sync_dir(blob.parent().unwrap_or(Path::new(".")))?;
    Ok(placed)
}

/// Points `link` at `target`, replacing whatever entry is there (never following it).
fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let temp = link.with_file_name(format!(
        ".{}.modelctl-{}",
        link.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp)?;
    fs::rename(&temp, link)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::GitOid;

    fn repo() -> Repo {
        Repo {
            kind: RepoType::Model,
            id: "org/name".into(),
        }
    }

    const COMMIT: &str = "894a9adde21d9a3e3843e6d5aeaaf01875c7fade";

    #[test]
    fn sharing_lays_out_refs_snapshots_and_hardlinked_blobs() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let store_blob = dir.path().join("blob-a");
        fs::write(&store_blob, b"weights").expect("write");
        let config_blob = dir.path().join("blob-c");
        fs::write(&config_blob, b"{}").expect("write");
        let files = vec![
            LockedFile {
                path: RelPath::parse("unet/model.safetensors").expect("path"),
                size: 7,
                sha256: Some(Sha256::of(b"weights")),
                md5: None,
                git_oid: None,
            },
            LockedFile {
                path: RelPath::parse("config.json").expect("path"),
                size: 2,
                sha256: Some(Sha256::of(b"{}")),
                md5: None,
                git_oid: Some(
                    GitOid::parse("2f9618c3a19b9a61add74f70bfb121335aeef666").expect("oid"),
                ),
            },
        ];
        let cache = HfCache::new(dir.path().join("hub"));
        let blob_of = |f: &LockedFile| {
            Some(if f.git_oid.is_some() {
                config_blob.clone()
            } else {
                store_blob.clone()
            })
        };
        assert!(!cache.is_shared(&repo(), "main", COMMIT, &files, &blob_of));
        let done = cache
            .share(&repo(), "main", COMMIT, &files, &blob_of)
            .expect("shared");
        assert_eq!(
            done,
            Shared {
                linked: 2,
                copied: 0
            }
        );
        assert!(cache.is_shared(&repo(), "main", COMMIT, &files, &blob_of));

        let base = dir.path().join("hub/models--org--name");
        assert_eq!(
            fs::read_to_string(base.join("refs/main")).expect("ref"),
            COMMIT
        );
        let nested = base
            .join("snapshots")
            .join(COMMIT)
            .join("unet/model.safetensors");
        assert_eq!(
            fs::read_link(&nested).expect("symlink"),
            PathBuf::from(format!("../../../blobs/{}", Sha256::of(b"weights").hex()))
        );
        assert_eq!(fs::read(&nested).expect("read through"), b"weights");
        assert_eq!(
            fs::metadata(&nested).expect("meta").ino(),
            fs::metadata(&store_blob).expect("meta").ino(),
            "one copy: the cache's blob is the store's inode"
        );
        let top = base.join("snapshots").join(COMMIT).join("config.json");
        assert_eq!(
            fs::read_link(&top).expect("symlink"),
            PathBuf::from("../../blobs/2f9618c3a19b9a61add74f70bfb121335aeef666")
        );
        assert_eq!(
            cache.find(&repo(), &files[0]),
            Some(base.join("blobs").join(Sha256::of(b"weights").hex()))
        );
        assert_eq!(
            cache.find(&repo(), &files[1]),
            Some(base.join("blobs/2f9618c3a19b9a61add74f70bfb121335aeef666")),
            "regular files are found by git blob id"
        );

        let again = cache
            .share(&repo(), "main", COMMIT, &files, &blob_of)
            .expect("again");
        assert_eq!(again, Shared::default(), "sharing twice changes nothing");
    }
}
