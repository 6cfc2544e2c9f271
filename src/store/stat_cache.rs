//! Remembered hashes: (path, size, mtime, ctime, inode) → sha256.
//!
//! Hashing a 100 GB store takes minutes; stat-ing it takes milliseconds. A file whose size,
//! modification and change times, device and inode all match what they were when it was
//! hashed is taken to hold the same bytes, as git's index and rsync do. `ctime` cannot be set
//! back by `touch`, so a rewrite is noticed even when the mtime is restored. One change of
//! ctime is not a rewrite: a new hardlink to the file (another project's store or the machine
//! cache linking the same blob). A read-only file whose link count changed, with its size,
//! mtime, device and inode as they were, is taken as relinked, not rewritten. A file modified
//! within the same second it was hashed is not remembered (git's "racy" case): its next scan
//! hashes it again. Small files also keep their git blob id (the digest the Hub publishes for
//! regular files), computed in the same read. The cache is an optimisation only: a missing or
//! damaged cache file is treated as empty, and `verify` always hashes for real.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::{GitOid, Sha256};

const CACHE_VERSION: u32 = 1;

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub dev: u64,
    pub ino: u64,
    /// The number of hardlinks (0 in caches written before it was recorded).
    #[serde(default)]
    pub nlink: u64,
    /// No write permission for anyone (a blob, or a model file linking one).
    #[serde(default)]
    pub read_only: bool,
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink(),
            read_only: meta.mode() & 0o222 == 0,
        }
    }

    /// Whether `now` is this version of the file under another link count: the same size,
    /// mtime, device and inode, read-only then and now, and a link count that changed (which
    /// is what moved the ctime). A rewrite needs write permission and leaves the link count
    /// alone, so it still misses.
    fn relinked(&self, now: &Stamp) -> bool {
        self.size == now.size
            && self.mtime_ns == now.mtime_ns
            && self.dev == now.dev
            && self.ino == now.ino
            && self.read_only
            && now.read_only
            && self.nlink != 0
            && self.nlink != now.nlink
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    sha256: Sha256,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    git_oid: Option<GitOid>,
}

/// What the cache remembers of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub sha256: Sha256,
    /// Present for files hashed with their git blob id (small files).
    pub git_oid: Option<GitOid>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: BTreeMap<String, Entry>,
}

/// The cache of one store, keyed by path relative to the store root.
#[derive(Debug, Default)]
pub struct StatCache {
    entries: BTreeMap<String, Entry>,
    dirty: bool,
}

impl StatCache {
    /// Reads the cache; anything unreadable yields an empty cache.
    pub fn load(path: &Path) -> Self {
        let entries = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|f| f.version == CACHE_VERSION)
            .map(|f| f.entries)
            .unwrap_or_default();
        Self {
            entries,
            dirty: false,
        }
    }

    /// The remembered hash of `key`, if the file still has the same stamp.
    pub fn get(&self, key: &str, stamp: &Stamp) -> Option<Sha256> {
        self.known(key, stamp).map(|k| k.sha256)
    }

    /// Everything remembered of `key`, if the file still has the same stamp.
    pub fn known(&self, key: &str, stamp: &Stamp) -> Option<Known> {
        self.entries
            .get(key)
            .filter(|e| e.stamp == *stamp || e.stamp.relinked(stamp))
            .map(|e| Known {
                sha256: e.sha256,
                git_oid: e.git_oid,
            })
    }

    /// Moves what is remembered of `key` to the file's current stamp, after [`StatCache::known`]
    /// answered for it (a relinked file), so that the next link count change is judged from
    /// this one.
    pub fn renew(&mut self, key: &str, stamp: &Stamp) {
        if let Some(entry) = self.entries.get_mut(key)
            && entry.stamp != *stamp
        {
            entry.stamp = *stamp;
            self.dirty = true;
        }
    }

    /// The git blob id remembered under `key` for bytes with `sha256`, whatever the file's
    /// stamp now (linking a file changes its ctime): a git blob id is a function of the
    /// bytes, which their sha256 names.
    pub fn git_oid_for(&self, key: &str, sha256: &Sha256) -> Option<GitOid> {
        self.entries
            .get(key)
            .filter(|e| e.sha256 == *sha256)
            .and_then(|e| e.git_oid)
    }

    /// Remembers a hash computed at `hashed_at_ns` (ns since the epoch), unless the file was
    /// modified too recently for its stamp to be trusted.
    pub fn insert(&mut self, key: String, stamp: Stamp, known: Known, hashed_at_ns: i128) {
        const RACY_WINDOW_NS: i128 = 1_000_000_000;
        if stamp.mtime_ns >= hashed_at_ns - RACY_WINDOW_NS {
            return;
        }
        let entry = Entry {
            stamp,
            sha256: known.sha256,
            git_oid: known.git_oid,
        };
        if self.entries.get(&key) != Some(&entry) {
            self.entries.insert(key, entry);
            self.dirty = true;
        }
    }

    /// Remembers a hash of a file this process has just written and verified (a published
    /// blob and its links): no one else can have rewritten it within its timestamp's
    /// granularity, so the racy-file rule of [`StatCache::insert`] does not apply.
    pub fn insert_verified(&mut self, key: String, stamp: Stamp, known: Known) {
        let entry = Entry {
            stamp,
            sha256: known.sha256,
            git_oid: known.git_oid,
        };
        self.entries.insert(key, entry);
        self.dirty = true;
    }

    /// Forgets what is remembered of `key` (a file found damaged: nothing cached vouches for
    /// it again until it is hashed anew).
    pub fn forget(&mut self, key: &str) {
        self.dirty |= self.entries.remove(key).is_some();
    }

    /// Forgets entries for which `keep` says no (files that no longer exist).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.entries.len();
        self.entries.retain(|k, _| keep(k));
        self.dirty |= self.entries.len() != before;
    }

    /// Writes the cache back if it changed. Failure is not an error for the caller's
    /// operation (the store may be read-only); it is returned so the caller can mention it.
    pub fn save(&mut self, path: &Path) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = CacheFile {
            version: CACHE_VERSION,
            entries: std::mem::take(&mut self.entries),
        };
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        self.entries = file.entries;
        crate::durable::write_atomic(path, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_file_linked_elsewhere_is_still_known_and_a_rewrite_is_not() {
        let stamp = Stamp {
            size: 3,
            mtime_ns: 1_000_000_000_000,
            ctime_ns: 1_000_000_000_000,
            dev: 1,
            ino: 2,
            nlink: 2,
            read_only: true,
        };
        let known = Known {
            sha256: Sha256::of(b"abc"),
            git_oid: None,
        };
        let mut cache = StatCache::default();
        cache.insert("a".into(), stamp, known, 2_000_000_000_000);
        let linked = Stamp {
            ctime_ns: 5_000_000_000_000,
            nlink: 3,
            ..stamp
        };
        assert_eq!(cache.known("a", &linked), Some(known), "one more hardlink");
        let rewritten = Stamp {
            ctime_ns: 5_000_000_000_000,
            ..stamp
        };
        assert_eq!(
            cache.known("a", &rewritten),
            None,
            "ctime moved, links did not"
        );
        let writable = Stamp {
            read_only: false,
            ..linked
        };
        assert_eq!(cache.known("a", &writable), None, "made writable");
        let old_format = Stamp { nlink: 0, ..stamp };
        cache.insert("b".into(), old_format, known, 2_000_000_000_000);
        assert_eq!(cache.known("b", &linked), None, "no link count recorded");
        cache.renew("a", &linked);
        assert_eq!(
            cache.known("a", &linked),
            Some(known),
            "renewed to the new stamp"
        );
    }

    #[test]
    fn a_changed_stamp_misses_and_a_racy_file_is_not_remembered() {
        let stamp = Stamp {
            size: 3,
            mtime_ns: 1_000_000_000_000,
            ctime_ns: 1_000_000_000_000,
            dev: 1,
            ino: 2,
            nlink: 1,
            read_only: false,
        };
        let digest = Sha256::of(b"abc");
        let mut cache = StatCache::default();
        let known = Known {
            sha256: digest,
            git_oid: None,
        };
        cache.insert("a".into(), stamp, known, 2_000_000_000_000);
        assert_eq!(cache.get("a", &stamp), Some(digest));
        assert_eq!(cache.get("a", &Stamp { size: 4, ..stamp }), None);
        assert_eq!(
            cache.get(
                "a",
                &Stamp {
                    ctime_ns: 7,
                    ..stamp
                }
            ),
            None
        );
        cache.insert("b".into(), stamp, known, stamp.mtime_ns + 10);
        assert_eq!(
            cache.get("b", &stamp),
            None,
            "hashed in the same second it was written"
        );
    }
}
