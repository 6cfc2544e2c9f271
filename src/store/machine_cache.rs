//! The machine cache: verified blobs kept once per machine, linked into every project's store.
//!
//! ```text
//! <cache>/                           $MODELCTL_CACHE, else $XDG_CACHE_HOME/modelctl, else ~/.cache/modelctl
//!   blobs/sha256/<2 hex>/<64 hex>    read-only blobs, each verified before it came in
//!   roots/<key>.json                 one per project that changed a store (its manifest, lock, store)
//!   .modelctl/verified/<64 hex>      the stamp a blob had when its bytes were last checked
//!   .modelctl/lock, .modelctl/tmp/   the cache's lock (held by `cache prune`) and staging
//! ```
//!
//! The cache is laid out as a store without models, so the store's own rules serve it: the
//! same blob paths, the same narrow `gc` ([`super::gc`], with blobs linked from elsewhere
//! kept) and the same staging. Bytes enter it only from a store blob that has just been
//! published, that is verified ([`MachineCache::adopt`]), and leave it into a store only
//! through [`MachineCache::take`], which hashes them again unless their stamp is the one they
//! had when they were checked. Between the two, a file is moved by the cheapest means the
//! filesystem has: a reflink (FICLONE, copy-on-write: shared extents, separate inodes), a
//! hardlink (one inode), or a copy where neither works ([`LinkMode`]). A store on another
//! filesystem than the cache does not use it: every byte would be on disk twice.
//!
//! Nothing here is needed for correctness: a store works without its cache, and an error
//! here only costs a download. It never deletes anything but its own stamp records;
//! removal is `cache prune`'s job ([`crate::ops::cache`]).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::place::err;
use super::{PlaceError, Store};
use crate::digest::Sha256;

/// How a file reaches a store from the cache, or the cache from a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// A copy-on-write clone (FICLONE): shared extents, a separate read-only inode.
    Reflink,
    /// The same inode under a second name.
    Hardlink,
    /// A full copy: the bytes are on disk twice (the cache is on another filesystem).
    Copy,
}

impl LinkMode {
    /// `reflink`, `hardlink`, `copy`: as the plan, `storage` and `cache status` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reflink => "reflink",
            Self::Hardlink => "hardlink",
            Self::Copy => "copy",
        }
    }

    /// Whether the bytes are on disk once for both names.
    pub fn shares_bytes(self) -> bool {
        self != Self::Copy
    }
}

impl std::fmt::Display for LinkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Makes `to` (which must not exist) hold the bytes of `from`: a reflink where the filesystem
/// clones, else a hardlink, else a copy that is fsynced. Says which it did.
pub fn link_or_copy(from: &Path, to: &Path) -> io::Result<LinkMode> {
    if reflink(from, to).is_ok() {
        return Ok(LinkMode::Reflink);
    }
    if fs::hard_link(from, to).is_ok() {
        return Ok(LinkMode::Hardlink);
    }
    fs::copy(from, to)?;
    fs::File::open(to)?.sync_all()?;
    Ok(LinkMode::Copy)
}

/// A copy-on-write clone of `from` at `to`, synced; `to` is removed again when the
/// filesystem cannot clone (ext4, tmpfs, or two filesystems).
fn reflink(from: &Path, to: &Path) -> io::Result<()> {
    let source = fs::File::open(from)?;
    let target = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    let cloned = rustix::fs::ioctl_ficlone(&target, &source)
        .map_err(io::Error::from)
        .and_then(|()| target.sync_all());
    if cloned.is_err() {
        drop(target);
        let _ = fs::remove_file(to);
    }
    cloned
}

/// What a blob looked like when its bytes were last checked. Linking it elsewhere changes its
/// ctime, so the ctime is not part of it; a rewrite needs the file made writable first, and
/// a blob that is not read-only any more is not vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Checked {
    size: u64,
    mtime_ns: i128,
    dev: u64,
    ino: u64,
}

impl Checked {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A blob taken from the cache into a store's staging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub mode: LinkMode,
    /// The cache's stamp record vouched for the bytes; otherwise the caller must hash them.
    pub vouched: bool,
}

/// The machine cache at one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineCache {
    root: PathBuf,
}

impl MachineCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cache seen as a store without models (and without a cache of its own): its paths,
    /// its staging, and `cache prune`, which collects it with the store's `gc`.
    pub fn as_store(&self) -> Store {
        Store::new(&self.root)
    }

    pub fn blob_path(&self, digest: &Sha256) -> PathBuf {
        self.as_store().blob_path(digest)
    }

    /// Where the projects that use this cache are recorded ([`super::roots`]).
    pub fn roots_dir(&self) -> PathBuf {
        self.root().join("roots")
    }

    fn record_path(&self, digest: &Sha256) -> PathBuf {
        self.as_store()
            .state_dir()
            .join("verified")
            .join(digest.hex())
    }

    /// The size of the blob of `digest`, when the cache has one as a regular file.
    pub fn holds(&self, digest: &Sha256) -> Option<u64> {
        fs::symlink_metadata(self.blob_path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// How files would move between the cache and a store at `store_root`, found without
    /// writing anything: another filesystem copies (so the cache is not used); on the same
    /// one, a reflink is tried first, then a hardlink, so this says `hardlink`, the most a
    /// move costs there.
    pub fn mode_for(&self, store_root: &Path) -> LinkMode {
        match (device_of(self.root()), device_of(store_root)) {
            (Some(a), Some(b)) if a == b => LinkMode::Hardlink,
            _ => LinkMode::Copy,
        }
    }

    /// Takes a store blob that was just verified and published into the cache, unless the
    /// cache holds its digest already or is on another filesystem (where it would cost a
    /// second copy of every byte: such a store keeps its own). Returns how it came in, or
    /// `None` when it did not.
    pub fn adopt(&self, blob: &Path, digest: &Sha256) -> Result<Option<LinkMode>, PlaceError> {
        let target = self.blob_path(digest);
        if fs::symlink_metadata(&target).is_ok() || !self.mode_for(blob).shares_bytes() {
            return Ok(None);
        }
        let layout = self.as_store();
        fs::create_dir_all(self.root()).map_err(err("create", self.root()))?;
        super::ensure_dir(self.root(), &layout.tmp_dir())?;
        let temp = layout
            .tmp_dir()
            .join(format!("{}.adopt-{}", digest.hex(), std::process::id()));
        let _ = fs::remove_file(&temp);
        let mode = link_or_copy(blob, &temp).map_err(err("link", blob))?;
        let published = layout.publish_blob(&temp, digest);
        let _ = fs::remove_file(&temp);
        let published = published?;
        self.remember(digest, &published);
        Ok(Some(mode))
    }

    /// Puts the cache's blob of `digest` at `temp` (a store's staging file, which must not
    /// exist), by reflink, hardlink or copy, and says whether its stamp record vouches for its
    /// bytes. A blob that is not a read-only regular file is refused.
    pub fn take(&self, digest: &Sha256, temp: &Path) -> Result<Taken, PlaceError> {
        let blob = self.blob_path(digest);
        let meta = fs::symlink_metadata(&blob).map_err(err("read", &blob))?;
        if !meta.is_file() || meta.permissions().mode() & 0o222 != 0 {
            return Err(PlaceError {
                action: "use",
                path: blob,
                source: io::Error::other("it is not a read-only regular file"),
            });
        }
        let vouched = self.recorded(digest) == Some(Checked::of(&meta));
        let mode = link_or_copy(&blob, temp).map_err(err("link", &blob))?;
        Ok(Taken { mode, vouched })
    }

    /// Records that the blob of `digest`, found intact by hashing, has its current stamp.
    pub fn vouch(&self, digest: &Sha256) {
        self.remember(digest, &self.blob_path(digest));
    }

    /// Forgets a blob found damaged: its record goes, and so does the blob (it is the cache's
    /// own file; the store that found it keeps its checked copy).
    pub fn discard(&self, digest: &Sha256) {
        let _ = fs::remove_file(self.record_path(digest));
        let _ = fs::remove_file(self.blob_path(digest));
    }

    /// Every blob of the cache (canonical names, regular files), with its size and its
    /// number of hardlinks (more than one: a store links it, and removing it frees nothing).
    pub fn blobs(&self) -> Vec<(Sha256, u64, u64)> {
        let mut found = Vec::new();
        let Ok(shards) = fs::read_dir(self.as_store().blobs_dir()) else {
            return found;
        };
        for shard in shards.flatten() {
            let Some(shard_name) = shard.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(entries) = fs::read_dir(shard.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let digest = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| super::blob_name(&shard_name, name));
                let meta = fs::symlink_metadata(entry.path());
                if let (Some(digest), Ok(meta)) = (digest, meta)
                    && meta.is_file()
                {
                    found.push((digest, meta.len(), meta.nlink()));
                }
            }
        }
        found.sort();
        found
    }

    /// Removes the stamp records of blobs that are gone (after a prune).
    pub fn forget_missing(&self) {
        let dir = self.as_store().state_dir().join("verified");
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(digest) = name.to_str().and_then(|n| Sha256::parse(n).ok()) else {
                continue;
            };
            if self.holds(&digest).is_none() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn recorded(&self, digest: &Sha256) -> Option<Checked> {
        let bytes = fs::read(self.record_path(digest)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the stamp record of `blob`. A record that cannot be written only means the
    /// next project to take the blob hashes it.
    fn remember(&self, digest: &Sha256, blob: &Path) {
        let Ok(meta) = fs::symlink_metadata(blob) else {
            return;
        };
        let path = self.record_path(digest);
        let written = path
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| {
                let bytes = serde_json::to_vec(&Checked::of(&meta)).unwrap_or_default();
                crate::durable::write_atomic(&path, &bytes)
            });
        if let Err(e) = written {
            tracing::info!("cannot record `{}`: {e}", path.display());
        }
    }
}

/// The device of `path`, or of its nearest existing ancestor (a store not made yet).
fn device_of(path: &Path) -> Option<u64> {
    path.ancestors()
        .find_map(|p| fs::metadata(p).ok())
        .map(|m| m.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(store: &Store, bytes: &[u8]) -> (Sha256, PathBuf) {
        store.check_writable().expect("writable");
        let temp = store.tmp_dir().join("x.part");
        fs::write(&temp, bytes).expect("write");
        let digest = Sha256::of(bytes);
        (digest, store.publish_blob(&temp, &digest).expect("publish"))
    }

    #[test]
    fn an_adopted_blob_is_one_inode_and_is_taken_back_vouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = MachineCache::new(dir.path().join("cache"));
        let store = Store::new(dir.path().join("store"));
        let (digest, blob) = published(&store, b"weights");
        assert_eq!(
            cache.adopt(&blob, &digest).expect("adopt"),
            Some(LinkMode::Hardlink),
            "ext4 and tmpfs link; a filesystem that clones would say reflink"
        );
        assert_eq!(cache.adopt(&blob, &digest).expect("again"), None);
        let cached = fs::metadata(cache.blob_path(&digest)).expect("cached");
        assert_eq!(cached.ino(), fs::metadata(&blob).expect("blob").ino());
        assert!(cached.permissions().readonly());

        let temp = dir.path().join("taken");
        let taken = cache.take(&digest, &temp).expect("take");
        assert!(taken.vouched, "linking elsewhere does not void the record");
        assert_eq!(fs::read(&temp).expect("read"), b"weights");
    }

    #[test]
    fn a_blob_made_writable_or_rewritten_is_not_vouched_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = MachineCache::new(dir.path().join("cache"));
        let store = Store::new(dir.path().join("store"));
        let (digest, blob) = published(&store, b"weights");
        cache.adopt(&blob, &digest).expect("adopt");
        let path = cache.blob_path(&digest);
        let mut perms = fs::metadata(&path).expect("meta").permissions();
        perms.set_mode(0o644);
        fs::set_permissions(&path, perms.clone()).expect("chmod");
        assert!(
            cache.take(&digest, &dir.path().join("a")).is_err(),
            "a writable blob is refused"
        );
        fs::write(&path, b"WEIGHTS").expect("rewrite");
        perms.set_mode(0o444);
        fs::set_permissions(&path, perms).expect("chmod back");
        let taken = cache.take(&digest, &dir.path().join("b")).expect("take");
        assert!(!taken.vouched, "the rewrite changed its mtime");
        cache.discard(&digest);
        assert_eq!(cache.holds(&digest), None);
    }

    #[test]
    fn another_filesystem_is_a_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = MachineCache::new(dir.path().join("cache"));
        assert_eq!(cache.mode_for(&dir.path().join("a/b")), LinkMode::Hardlink);
        if fs::metadata("/proc").is_ok_and(|m| Some(m.dev()) != device_of(dir.path())) {
            assert_eq!(cache.mode_for(Path::new("/proc")), LinkMode::Copy);
        }
    }
}
