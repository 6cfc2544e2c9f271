//! `gc`: find what nothing references, and remove it without ever following a symlink.
//!
//! Garbage is (a) a blob that no model uses and (b) a stale partial download in
//! `.modelctl/tmp/`. A blob is in use when a regular file under `models/` is the same inode (a
//! hardlink) or holds the same bytes (a copy, where hardlinks were refused), when a symlink
//! under `models/` names it, or when models.lock lists its digest, whatever the store looks
//! like (docs/reliability.md K4). Nothing modified within the grace period is garbage: a
//! download in flight, or a blob published a moment before its model link was written.
//!
//! Deletion is deliberately narrow (docs/reliability.md I8): the store root and every directory
//! on the way must be real directories (not symlinks) that other users cannot write to, and only
//! entries that `lstat` says are regular files are removed, either at
//! `blobs/sha256/<2 hex>/<64 hex>` under their canonical name or directly in `.modelctl/tmp/`.
//! Each is checked again just before it is unlinked (same inode, still old), so a file that
//! changed since it was examined is left alone. Finding and removing are two functions, so a
//! dry run is the first one alone.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::hash::{HashJob, hash_parallel, scan_extra};
use super::scan::{ScanError, entries, now_ns};
use super::stat_cache::{Known, Stamp, StatCache};
use super::{EntryKind, Store, blob_name};
use crate::digest::Sha256;

/// What decides whether something is garbage.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// Entries modified within this long before `now` are kept.
    pub grace: Duration,
    /// The current time (injected, so tests can move it).
    pub now: SystemTime,
    /// Digests models.lock lists: never collected.
    pub locked: &'a HashSet<Sha256>,
    /// Whether a blob with other hardlinks is in use (the machine cache, whose blobs are
    /// linked from stores elsewhere: removing one would free nothing).
    pub linked_elsewhere: bool,
}

/// Something `gc` would remove.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Garbage {
    /// Relative to the store root.
    pub path: String,
    /// For blobs: the digest the blob is named by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
    pub size: u64,
    #[serde(skip)]
    full: PathBuf,
    #[serde(skip)]
    identity: (u64, u64),
}

/// The download a staging entry belongs to: `<key>` of `<key>.part`, `<key>.part.json` and
/// `<key>.part.json.<tmp>`.
fn download_key(name: &str) -> &str {
    name.split(".part").next().unwrap_or(name)
}

/// Why blobs and partials were kept, by count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// A file under `models/` is the same inode, or a symlink there names the blob.
    pub linked_blobs: usize,
    /// A file under `models/` holds the same bytes.
    pub copied_blobs: usize,
    /// models.lock lists the digest.
    pub locked_blobs: usize,
    /// Unreferenced, but modified within the grace period.
    pub young_blobs: usize,
    pub young_partials: usize,
    /// The bytes of the young blobs and partials: what a shorter grace period would free.
    pub young_bytes: u64,
}

/// An entry `gc` will not touch because it is not a regular file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub found: EntryKind,
}

/// The garbage of a store, and what was kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Collection {
    pub blobs: Vec<Garbage>,
    pub partials: Vec<Garbage>,
    pub kept: Kept,
    pub skipped: Vec<Skipped>,
}

/// What [`remove_garbage`] did.
#[derive(Debug, Default)]
pub struct Removal {
    pub blobs: Vec<Garbage>,
    pub partials: Vec<Garbage>,
    /// Entries that changed since they were examined (another inode, a newer mtime, no longer
    /// a regular file, or gone): left alone.
    pub changed: Vec<String>,
    pub errors: Vec<GcError>,
}

/// Why `gc` refused or failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum GcError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(#[from] ScanError),
    #[error("refusing to collect garbage in `{}`: it is a symlink", path.display())]
    #[diagnostic(code(gc::symlink))]
    Symlink {
        path: PathBuf,
        #[help]
        help: String,
    },
    #[error("refusing to collect garbage in `{}`: it is {}, not a directory", path.display(), found.describe())]
    #[diagnostic(
        code(gc::not_a_directory),
        help("the store layout expects a directory here; move the entry away")
    )]
    NotADirectory { path: PathBuf, found: EntryKind },
    #[error("refusing to collect garbage in `{}`: other users can write to it", path.display())]
    #[diagnostic(
        code(gc::world_writable),
        help(
            "another user could swap its entries for symlinks while gc deletes; run `chmod o-w` on it"
        )
    )]
    WorldWritable { path: PathBuf },
    #[error("refusing to use `{}`: it is {}, not a regular file", path.display(), found.describe())]
    #[diagnostic(
        code(gc::not_a_file),
        help("the store lock is a plain file; remove this entry and run gc again")
    )]
    NotAFile { path: PathBuf, found: EntryKind },
    #[error("cannot remove `{}`: {source}", path.display())]
    #[diagnostic(code(gc::remove), help("check the permissions of the store"))]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether `path` is a real directory that only its owner (and group) can write to; `false`
/// when it does not exist.
fn real_dir(path: &Path) -> Result<bool, GcError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(ScanError {
                path: path.to_owned(),
                source,
            }
            .into());
        }
    };
    let found = EntryKind::of(&meta);
    match found {
        EntryKind::Directory if meta.permissions().mode() & 0o002 != 0 => {
            Err(GcError::WorldWritable {
                path: path.to_owned(),
            })
        }
        EntryKind::Directory => Ok(true),
        EntryKind::Symlink => Err(GcError::Symlink {
            path: path.to_owned(),
            help: match fs::canonicalize(path) {
                Ok(real) => format!(
                    "gc never follows symlinks; point `--store` at the real directory `{}`",
                    real.display()
                ),
                Err(_) => {
                    "gc never follows symlinks; point `--store` at the real directory".to_owned()
                }
            },
        }),
        _ => Err(GcError::NotADirectory {
            path: path.to_owned(),
            found,
        }),
    }
}

/// Checks the store before anything is locked, examined or removed (docs/reliability.md I8): the
/// root and the directories gc walks or writes in must be real directories that other users cannot
/// write to, and the lock file must not be a symlink (taking the lock writes into it). Returns
/// `false` when there is no store at all.
pub fn check_store(store: &Store) -> Result<bool, GcError> {
    if !real_dir(store.root())? {
        return Ok(false);
    }
    real_chain(&[store.root().join("blobs"), store.blobs_dir()])?;
    real_chain(&[store.models_dir()])?;
    real_chain(&[store.state_dir(), store.tmp_dir()])?;
    let lock = store.lock_file_path();
    match fs::symlink_metadata(&lock) {
        Ok(meta) if !meta.is_file() => Err(GcError::NotAFile {
            path: lock,
            found: EntryKind::of(&meta),
        }),
        _ => Ok(true),
    }
}

/// Whether every directory of `chain` (outermost first) exists and is safe to walk.
fn real_chain(chain: &[PathBuf]) -> Result<bool, GcError> {
    for dir in chain {
        if !real_dir(dir)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn is_young(meta: &fs::Metadata, options: &Options<'_>) -> bool {
    match meta.modified() {
        // A time in the future (clock skew) counts as young.
        Ok(modified) => options
            .now
            .duration_since(modified)
            .map_or(true, |age| age < options.grace),
        Err(_) => true,
    }
}

/// What `models/` holds, as far as blob references go.
#[derive(Default)]
struct References {
    inodes: HashSet<(u64, u64)>,
    /// Digests named by symlinks (read, never followed).
    linked: HashSet<Sha256>,
    /// Regular files, for the copy check: stat-cache key, path, stamp.
    files: Vec<(String, PathBuf, Stamp)>,
}

fn references(store: &Store) -> Result<References, GcError> {
    let mut refs = References::default();
    let models = store.models_dir();
    if !real_dir(&models)? {
        return Ok(refs);
    }
    // An explicit stack: a hostile tree cannot exhaust the call stack.
    let mut stack = vec![(models, "models".to_owned())];
    while let Some((dir, key)) = stack.pop() {
        for (name, meta, path) in entries(&dir)? {
            let key = format!("{key}/{name}");
            match EntryKind::of(&meta) {
                EntryKind::Directory => stack.push((path, key)),
                EntryKind::File => {
                    refs.inodes.insert((meta.dev(), meta.ino()));
                    refs.files.push((key, path, Stamp::of(&meta)));
                }
                EntryKind::Symlink => {
                    let named = fs::read_link(&path).ok().and_then(|target| {
                        let name = target.file_name()?.to_str()?.to_owned();
                        Sha256::parse(&name).ok().filter(|d| d.hex() == name)
                    });
                    refs.linked.extend(named);
                }
                _ => {}
            }
        }
    }
    Ok(refs)
}

/// Finds the garbage of `store`. `cache` answers for the hashes of copies (and learns the ones
/// it had to compute). Takes no lock and changes nothing.
pub fn find_garbage(
    store: &Store,
    cache: &mut StatCache,
    options: &Options<'_>,
) -> Result<Collection, GcError> {
    let mut found = Collection::default();
    if !check_store(store)? {
        return Ok(found);
    }
    let refs = references(store)?;

    let blobs = store.blobs_dir();
    if real_chain(&[store.root().join("blobs"), blobs.clone()])? {
        for (shard, meta, shard_dir) in entries(&blobs)? {
            if !meta.is_dir() {
                found.skipped.push(Skipped {
                    path: format!("blobs/sha256/{shard}"),
                    found: EntryKind::of(&meta),
                });
                continue;
            }
            real_dir(&shard_dir)?;
            for (name, meta, path) in entries(&shard_dir)? {
                let Some(digest) = blob_name(&shard, &name) else {
                    continue;
                };
                let rel = format!("blobs/sha256/{shard}/{name}");
                let kept = &mut found.kept;
                if !meta.is_file() {
                    found.skipped.push(Skipped {
                        path: rel,
                        found: EntryKind::of(&meta),
                    });
                } else if refs.inodes.contains(&(meta.dev(), meta.ino()))
                    || refs.linked.contains(&digest)
                    || (options.linked_elsewhere && meta.nlink() > 1)
                {
                    kept.linked_blobs += 1;
                } else if options.locked.contains(&digest) {
                    kept.locked_blobs += 1;
                } else if is_young(&meta, options) {
                    kept.young_blobs += 1;
                    kept.young_bytes += meta.len();
                } else {
                    found.blobs.push(Garbage {
                        path: rel,
                        sha256: Some(digest),
                        size: meta.len(),
                        full: path,
                        identity: (meta.dev(), meta.ino()),
                    });
                }
            }
        }
    }

    let copies = copied_digests(&refs, &found.blobs, cache)?;
    let before = found.blobs.len();
    found
        .blobs
        .retain(|g| g.sha256.is_none_or(|d| !copies.contains(&d)));
    found.kept.copied_blobs = before - found.blobs.len();

    let tmp = store.tmp_dir();
    if real_chain(&[store.state_dir(), tmp.clone()])? {
        let listed = entries(&tmp)?;
        // A download's data file, state file and state temporaries age together: a state
        // saved a minute ago keeps the data file it describes, however old that is.
        let young: HashSet<&str> = listed
            .iter()
            .filter(|(_, meta, _)| is_young(meta, options))
            .map(|(name, _, _)| download_key(name))
            .collect();
        for (name, meta, path) in &listed {
            let (meta, path) = (meta.clone(), path.clone());
            let rel = format!(".modelctl/tmp/{name}");
            if !meta.is_file() {
                found.skipped.push(Skipped {
                    path: rel,
                    found: EntryKind::of(&meta),
                });
            } else if young.contains(download_key(name)) {
                found.kept.young_partials += 1;
                found.kept.young_bytes += meta.len();
            } else {
                found.partials.push(Garbage {
                    path: rel,
                    sha256: None,
                    size: meta.len(),
                    full: path,
                    identity: (meta.dev(), meta.ino()),
                });
            }
        }
    }
    Ok(found)
}

/// Digests of the files under `models/` that could be copies of a candidate blob: only files
/// of a candidate's size are looked at, from the stat cache when it knows them.
fn copied_digests(
    refs: &References,
    candidates: &[Garbage],
    cache: &mut StatCache,
) -> Result<HashSet<Sha256>, GcError> {
    let sizes: HashSet<u64> = candidates.iter().map(|g| g.size).collect();
    let mut digests = HashSet::new();
    let mut misses = Vec::new();
    for (key, path, stamp) in &refs.files {
        if !sizes.contains(&stamp.size) {
            continue;
        }
        match cache.get(key, stamp) {
            Some(d) => {
                digests.insert(d);
            }
            None => misses.push((key, path, stamp)),
        }
    }
    let started = now_ns();
    let jobs: Vec<HashJob<'_>> = misses
        .iter()
        .map(|(_, path, stamp)| HashJob {
            path,
            size: stamp.size,
            identity: Some((stamp.dev, stamp.ino)),
            extra: scan_extra(stamp.size),
        })
        .collect();
    for ((key, _, stamp), digest) in misses.iter().zip(hash_parallel(&jobs)?) {
        let known = Known {
            sha256: digest.sha256,
            git_oid: digest.git_oid,
        };
        cache.insert((*key).clone(), **stamp, known, started);
        digests.insert(digest.sha256);
    }
    Ok(digests)
}

/// Removes `found`, checking each entry again first; empty shard directories go too.
pub fn remove_garbage(store: &Store, found: &Collection, options: &Options<'_>) -> Removal {
    let mut removal = Removal::default();
    let mut shards = BTreeSet::new();
    for garbage in &found.blobs {
        if let Some(removed) = remove_one(store, garbage, options, &mut removal) {
            if let Some(shard) = garbage.full.parent() {
                shards.insert(shard.to_owned());
            }
            removal.blobs.push(removed);
        }
    }
    for garbage in &found.partials {
        if let Some(removed) = remove_one(store, garbage, options, &mut removal) {
            removal.partials.push(removed);
        }
    }
    for shard in shards {
        // Only a real, empty directory goes; anything else stays as it is.
        if matches!(real_dir(&shard), Ok(true)) {
            let _ = fs::remove_dir(&shard);
        }
    }
    removal
}

/// Unlinks one entry if it is still what was examined, inside the directory it must be in.
fn remove_one(
    store: &Store,
    garbage: &Garbage,
    options: &Options<'_>,
    removal: &mut Removal,
) -> Option<Garbage> {
    let parent = garbage.full.parent()?;
    let name = garbage.full.file_name()?.to_str()?;
    let in_place = match garbage.sha256 {
        Some(digest) => {
            let shard = parent.file_name()?.to_str()?;
            store.blob_path(&digest) == garbage.full && blob_name(shard, name) == Some(digest)
        }
        None => parent == store.tmp_dir(),
    };
    if !in_place {
        removal.changed.push(garbage.path.clone());
        return None;
    }
    match real_dir(parent) {
        Ok(true) => {}
        Ok(false) => {
            removal.changed.push(garbage.path.clone());
            return None;
        }
        Err(e) => {
            removal.errors.push(e);
            return None;
        }
    }
    let still_garbage = fs::symlink_metadata(&garbage.full).is_ok_and(|meta| {
        meta.is_file()
            && (meta.dev(), meta.ino()) == garbage.identity
            && !is_young(&meta, options)
            && !(options.linked_elsewhere && meta.nlink() > 1)
    });
    if !still_garbage {
        removal.changed.push(garbage.path.clone());
        return None;
    }
    match fs::remove_file(&garbage.full) {
        Ok(()) => Some(garbage.clone()),
        // Someone else removed it first: the outcome is the same (docs/reliability.md C4).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            removal.changed.push(garbage.path.clone());
            None
        }
        Err(source) => {
            removal.errors.push(GcError::Remove {
                path: garbage.full.clone(),
                source,
            });
            None
        }
    }
}

impl Collection {
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|g| g.size).sum()
    }

    pub fn partial_bytes(&self) -> u64 {
        self.partials.iter().map(|g| g.size).sum()
    }
}

impl Removal {
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|g| g.size).sum()
    }

    pub fn partial_bytes(&self) -> u64 {
        self.partials.iter().map(|g| g.size).sum()
    }

    /// The stat cache keys of everything removed, so the cache can forget them.
    pub fn keys(&self) -> HashSet<&str> {
        self.blobs
            .iter()
            .chain(&self.partials)
            .map(|g| g.path.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn options(locked: &HashSet<Sha256>) -> Options<'_> {
        Options {
            grace: HOUR,
            now: SystemTime::now(),
            locked,
            linked_elsewhere: false,
        }
    }

    fn age(path: &Path, by: Duration) {
        fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(SystemTime::now() - by)
            .expect("mtime");
    }

    /// A blob holding `bytes`, dated `old` back.
    fn blob(store: &Store, bytes: &[u8], old: Duration) -> (Sha256, PathBuf) {
        let digest = Sha256::of(bytes);
        let path = store.blob_path(&digest);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, bytes).expect("write");
        age(&path, old);
        (digest, path)
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("store"));
        fs::create_dir_all(store.models_dir().join("llm/m")).expect("mkdir");
        (dir, store)
    }

    #[test]
    fn a_download_s_data_and_state_files_age_together() {
        let (_dir, store) = store();
        fs::create_dir_all(store.tmp_dir()).expect("mkdir");
        let tmp = store.tmp_dir();
        for name in ["k.part", "k.part.json", "gone.part", "gone.part.json"] {
            fs::write(tmp.join(name), b"x").expect("write");
        }
        // `k`'s data is old but its state was just saved: a download in flight.
        age(&tmp.join("k.part"), 2 * HOUR);
        age(&tmp.join("gone.part"), 2 * HOUR);
        age(&tmp.join("gone.part.json"), 2 * HOUR);
        let lock = HashSet::new();
        let found = find_garbage(&store, &mut StatCache::default(), &options(&lock)).expect("find");
        let mut stale: Vec<&str> = found.partials.iter().map(|g| g.path.as_str()).collect();
        stale.sort_unstable();
        assert_eq!(
            stale,
            [".modelctl/tmp/gone.part", ".modelctl/tmp/gone.part.json"]
        );
        assert_eq!(found.kept.young_partials, 2);
    }

    #[test]
    fn only_old_unreferenced_blobs_and_partials_are_garbage() {
        let (_dir, store) = store();
        let model = store.models_dir().join("llm/m");
        let (_, linked) = blob(&store, b"linked", 2 * HOUR);
        fs::hard_link(&linked, model.join("linked.bin")).expect("link");
        let (_, copied) = blob(&store, b"copied", 2 * HOUR);
        fs::copy(&copied, model.join("copied.bin")).expect("copy");
        let (named, _) = blob(&store, b"symlinked", 2 * HOUR);
        std::os::unix::fs::symlink(store.blob_path(&named), model.join("named.bin"))
            .expect("symlink");
        let (locked, _) = blob(&store, b"locked", 2 * HOUR);
        blob(&store, b"young", Duration::ZERO);
        let (orphan, orphan_path) = blob(&store, b"orphan", 2 * HOUR);
        fs::create_dir_all(store.tmp_dir()).expect("mkdir");
        fs::write(store.tmp_dir().join("old.part"), b"stale").expect("write");
        age(&store.tmp_dir().join("old.part"), 2 * HOUR);
        fs::write(store.tmp_dir().join("new.part"), b"in flight").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", store.tmp_dir().join("evil")).expect("symlink");

        let lock = HashSet::from([locked]);
        let mut cache = StatCache::default();
        let found = find_garbage(&store, &mut cache, &options(&lock)).expect("find");
        assert_eq!(
            found.blobs.iter().map(|g| g.sha256).collect::<Vec<_>>(),
            vec![Some(orphan)]
        );
        assert_eq!(
            found
                .partials
                .iter()
                .map(|g| g.path.as_str())
                .collect::<Vec<_>>(),
            vec![".modelctl/tmp/old.part"]
        );
        assert_eq!(
            found.kept,
            Kept {
                linked_blobs: 2,
                copied_blobs: 1,
                locked_blobs: 1,
                young_blobs: 1,
                young_partials: 1,
                young_bytes: (b"young".len() + b"in flight".len()) as u64,
            }
        );
        assert_eq!(
            found.skipped,
            vec![Skipped {
                path: ".modelctl/tmp/evil".to_owned(),
                found: EntryKind::Symlink
            }]
        );

        let removal = remove_garbage(&store, &found, &options(&lock));
        assert!(removal.errors.is_empty(), "{:?}", removal.errors);
        assert_eq!((removal.blobs.len(), removal.partials.len()), (1, 1));
        assert!(!orphan_path.exists());
        let shard = orphan_path.parent().expect("shard");
        assert!(
            !shard.exists() || fs::read_dir(shard).expect("ls").next().is_some(),
            "an emptied shard directory is removed"
        );
        assert!(store.tmp_dir().join("new.part").exists());
        assert!(fs::symlink_metadata(store.tmp_dir().join("evil")).is_ok());
        assert!(Path::new("/etc/passwd").exists());

        let again = find_garbage(&store, &mut cache, &options(&lock)).expect("find");
        assert!(
            again.blobs.is_empty() && again.partials.is_empty(),
            "idempotent"
        );
    }

    #[test]
    fn an_entry_changed_after_it_was_examined_is_left_alone() {
        let (_dir, store) = store();
        let (_, path) = blob(&store, b"orphan", 2 * HOUR);
        let none = HashSet::new();
        let found = find_garbage(&store, &mut StatCache::default(), &options(&none)).expect("find");
        assert_eq!(found.blobs.len(), 1);
        // Re-published meanwhile: a new inode under the same name.
        fs::remove_file(&path).expect("rm");
        fs::write(&path, b"orphan").expect("write");
        let removal = remove_garbage(&store, &found, &options(&none));
        assert!(removal.blobs.is_empty());
        assert_eq!(removal.changed, vec![found.blobs[0].path.clone()]);
        assert!(path.exists());
    }

    #[test]
    fn a_symlinked_or_world_writable_store_is_refused() {
        let (dir, store) = store();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(store.root(), &link).expect("symlink");
        let none = HashSet::new();
        let err = find_garbage(
            &Store::new(&link),
            &mut StatCache::default(),
            &options(&none),
        )
        .expect_err("symlink refused");
        assert!(matches!(err, GcError::Symlink { .. }), "{err:?}");

        fs::set_permissions(store.root(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = find_garbage(&store, &mut StatCache::default(), &options(&none))
            .expect_err("world-writable refused");
        assert!(matches!(err, GcError::WorldWritable { .. }), "{err:?}");

        fs::set_permissions(store.root(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let blobs = store.root().join("blobs");
        fs::create_dir_all(dir.path().join("elsewhere/sha256")).expect("mkdir");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &blobs).expect("symlink");
        let err = find_garbage(&store, &mut StatCache::default(), &options(&none))
            .expect_err("symlinked blobs refused");
        assert!(matches!(err, GcError::Symlink { .. }), "{err:?}");

        fs::remove_file(&blobs).expect("rm");
        fs::create_dir_all(store.state_dir()).expect("mkdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").expect("write");
        std::os::unix::fs::symlink(&victim, store.lock_file_path()).expect("symlink");
        let err = check_store(&store).expect_err("symlinked lock file refused");
        assert!(matches!(err, GcError::NotAFile { .. }), "{err:?}");
        assert_eq!(fs::read(&victim).expect("read"), b"precious");
    }

    #[test]
    fn a_missing_store_has_no_garbage_and_is_not_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("absent"));
        let none = HashSet::new();
        let found = find_garbage(&store, &mut StatCache::default(), &options(&none)).expect("find");
        assert_eq!(found, Collection::default());
        assert!(!store.root().exists());
    }
}
