//! Reading what the store holds, without trusting anything but the bytes.
//!
//! The scan walks `models/`, `blobs/`, `active/` and `.modelctl/tmp/` with `lstat` (symlinks
//! are reported, never followed), validates every name it meets with the same validator the
//! manifest uses, and learns the sha256 of every regular file: from the stat cache when the
//! file is unchanged, otherwise by hashing it, in parallel, once per inode (a model file and
//! its blob are hardlinks, so they cost one hash). Small files get their git blob id in the
//! same read, so the planner can tell a Hub regular file that changed at the same size from
//! one that did not. A blob whose bytes do not match its name is reported as corrupt and not
//! offered for reuse.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::hash::{GIT_OID_MAX_SIZE, HashJob, hash_parallel, scan_extra};
use super::stat_cache::{Known, Stamp, StatCache};
use super::{OLLAMA_DESCRIPTOR, Store};
use crate::digest::{GitOid, Sha256};
use crate::names::{ModelId, RelPath, TypeName};

/// What the store holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreState {
    /// Model directories found under `models/<type>/<id>/`.
    pub models: BTreeMap<(TypeName, ModelId), PresentModel>,
    /// Intact blobs, by digest, with their size.
    pub blobs: BTreeMap<Sha256, u64>,
    /// The git blob ids of the intact small blobs (see [`GIT_OID_MAX_SIZE`]).
    pub blob_git_oids: BTreeMap<GitOid, Sha256>,
    /// Blobs whose bytes do not hash to their name.
    pub corrupt_blobs: Vec<Sha256>,
    /// `active/<type>` pointers.
    pub active: BTreeMap<TypeName, ActivePointer>,
    /// Partial downloads in `.modelctl/tmp/`, with their size.
    pub partials: Vec<(String, u64)>,
    /// Entries the scan did not recognise (a stray file in `models/`, an unsafe name).
    pub unknown: Vec<String>,
}

/// One model directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresentModel {
    pub files: BTreeMap<RelPath, PresentFile>,
    /// Entries that are not regular files (symlinks, devices): drift to be replaced.
    pub foreign: Vec<String>,
    /// For Ollama models: which model the directory stands for.
    pub ollama: Option<OllamaDescriptor>,
}

impl PresentModel {
    /// Bytes of the model's regular files.
    pub fn size(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

/// A regular file inside a model directory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresentFile {
    pub size: u64,
    pub sha256: Sha256,
    /// Its git blob id, for small files (see [`GIT_OID_MAX_SIZE`]).
    pub git_oid: Option<GitOid>,
}

/// What `models/<type>/<id>/ollama.json` records.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct OllamaDescriptor {
    pub ollama: String,
    pub digest: Sha256,
}

/// Where `active/<type>` points.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivePointer {
    /// At `../models/<type>/<id>`, which exists.
    Model(ModelId),
    /// At something that does not exist or is not a model directory of this type.
    Broken(String),
}

/// The store could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot read the store at `{}`: {source}", path.display())]
#[diagnostic(
    code(store::read),
    help("check the permissions of the store, or point `--store` elsewhere")
)]
pub struct ScanError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ScanError + '_ {
    move |source| ScanError {
        path: path.to_owned(),
        source,
    }
}

/// Entries of a directory; a missing directory has none.
pub(crate) fn entries(dir: &Path) -> Result<Vec<(String, fs::Metadata, PathBuf)>, ScanError> {
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), meta, path));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `dir` itself, after checking that no directory between the store root and it is a symlink:
/// the scan reads the store, never what a planted link points at.
fn unlinked(store: &Store, dir: &Path) -> Result<PathBuf, ScanError> {
    let mut current = store.root().to_path_buf();
    for part in dir.strip_prefix(store.root()).unwrap_or(dir).components() {
        current.push(part);
        if fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(ScanError {
                path: current,
                source: std::io::Error::other(
                    "it is a symlink, and the store never follows symlinks",
                ),
            });
        }
    }
    Ok(dir.to_path_buf())
}

/// A regular file whose hash the scan needs.
struct Pending {
    key: String,
    path: PathBuf,
    stamp: Stamp,
}

/// What a scan cost: how many files it looked at and how many it had to hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub files: usize,
    pub hashed_files: usize,
    pub hashed_bytes: u64,
}

/// Reads the store. `cache` is consulted and updated; saving it is the caller's choice.
/// `before_hashing(files, bytes)` is called once, before any file is hashed, so a caller can
/// tell the user why a cold scan takes a while.
pub fn scan(
    store: &Store,
    cache: &mut StatCache,
    before_hashing: &dyn Fn(usize, u64),
) -> Result<(StoreState, ScanStats), ScanError> {
    let mut state = StoreState::default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut model_files: Vec<((TypeName, ModelId), RelPath, String)> = Vec::new();
    let mut blob_files: Vec<(Sha256, String)> = Vec::new();

    for (type_name, meta, type_dir) in entries(&unlinked(store, &store.models_dir())?)? {
        let Ok(kind) = TypeName::parse(&type_name)
            .map_err(|_| ())
            .and_then(|k| meta.is_dir().then_some(k).ok_or(()))
        else {
            state.unknown.push(format!("models/{type_name}"));
            continue;
        };
        for (id_name, meta, model_dir) in entries(&type_dir)? {
            let Ok(id) = ModelId::parse(&id_name)
                .map_err(|_| ())
                .and_then(|k| meta.is_dir().then_some(k).ok_or(()))
            else {
                state.unknown.push(format!("models/{type_name}/{id_name}"));
                continue;
            };
            let mut present = PresentModel::default();
            let prefix = format!("models/{kind}/{id}");
            walk_model(
                &model_dir,
                "",
                &prefix,
                &mut present,
                &mut |rel, key, path, meta| {
                    pending.push(Pending {
                        key: key.clone(),
                        path,
                        stamp: Stamp::of(&meta),
                    });
                    model_files.push(((kind.clone(), id.clone()), rel, key));
                },
            )?;
            present.ollama = read_descriptor(&model_dir);
            state.models.insert((kind.clone(), id), present);
        }
    }

    for (shard, meta, shard_dir) in entries(&unlinked(store, &store.blobs_dir())?)? {
        if !meta.is_dir() || shard.len() != 2 {
            state.unknown.push(format!("blobs/sha256/{shard}"));
            continue;
        }
        for (name, meta, path) in entries(&shard_dir)? {
            match Sha256::parse(&name) {
                Ok(d) if meta.is_file() && d.hex() == name && name.starts_with(&shard) => {
                    let key = format!("blobs/sha256/{shard}/{name}");
                    pending.push(Pending {
                        key: key.clone(),
                        path,
                        stamp: Stamp::of(&meta),
                    });
                    blob_files.push((d, key));
                }
                _ => state.unknown.push(format!("blobs/sha256/{shard}/{name}")),
            }
        }
    }

    let mut stats = ScanStats {
        files: pending.len(),
        ..ScanStats::default()
    };
    let hashes = hash_all(pending, cache, &mut stats, before_hashing)?;

    for (owner, rel, key) in model_files {
        if let (Some(model), Some((size, known))) = (state.models.get_mut(&owner), hashes.get(&key))
        {
            model.files.insert(
                rel,
                PresentFile {
                    size: *size,
                    sha256: known.sha256,
                    git_oid: known.git_oid,
                },
            );
        }
    }
    for (digest, key) in blob_files {
        match hashes.get(&key) {
            Some((size, actual)) if actual.sha256 == digest => {
                state.blobs.insert(digest, *size);
                if let Some(oid) = actual.git_oid {
                    state.blob_git_oids.insert(oid, digest);
                }
            }
            _ => state.corrupt_blobs.push(digest),
        }
    }

    let (active, unknown) = read_active(store)?;
    state.active = active;
    state.unknown.extend(unknown);

    for (name, meta, _) in entries(&unlinked(store, &store.tmp_dir())?)? {
        state.partials.push((name, meta.len()));
    }

    let known: std::collections::HashSet<&String> = hashes.keys().collect();
    cache.retain(|k| known.contains(&k.to_owned()));
    Ok((state, stats))
}

/// Parses `../models/<type>/<id>` and checks that the model directory was found.
fn read_pointer(store: &Store, kind: &TypeName, target: &Path) -> ActivePointer {
    let text = target.to_string_lossy().into_owned();
    let parts: Vec<&str> = text.split('/').collect();
    if let ["..", "models", t, id] = parts.as_slice()
        && *t == kind.as_str()
        && let Ok(id) = ModelId::parse(id)
        && fs::symlink_metadata(store.model_dir(kind, &id)).is_ok_and(|m| m.is_dir())
    {
        return ActivePointer::Model(id);
    }
    ActivePointer::Broken(text)
}

/// The `active/<type>` pointers as they are on disk, and the entries of `active/` that are not
/// pointers at all. Used by the scan and, after swaps, by `apply` for `active.json`.
pub fn read_active(
    store: &Store,
) -> Result<(BTreeMap<TypeName, ActivePointer>, Vec<String>), ScanError> {
    let mut active = BTreeMap::new();
    let mut unknown = Vec::new();
    for (type_name, meta, link) in entries(&unlinked(store, &store.active_dir())?)? {
        let Ok(kind) = TypeName::parse(&type_name) else {
            unknown.push(format!("active/{type_name}"));
            continue;
        };
        let pointer = if meta.file_type().is_symlink() {
            let target = fs::read_link(&link).map_err(io_err(&link))?;
            read_pointer(store, &kind, &target)
        } else {
            ActivePointer::Broken("not a symlink".to_owned())
        };
        active.insert(kind, pointer);
    }
    Ok((active, unknown))
}

/// Walks one model directory, reporting regular files and collecting foreign entries.
fn walk_model(
    dir: &Path,
    rel_prefix: &str,
    key_prefix: &str,
    present: &mut PresentModel,
    on_file: &mut dyn FnMut(RelPath, String, PathBuf, fs::Metadata),
) -> Result<(), ScanError> {
    for (name, meta, path) in entries(dir)? {
        let rel = if rel_prefix.is_empty() {
            name.clone()
        } else {
            format!("{rel_prefix}/{name}")
        };
        let key = format!("{key_prefix}/{name}");
        if meta.is_dir() {
            walk_model(&path, &rel, &key, present, on_file)?;
        } else if meta.is_file() {
            match RelPath::parse(&rel) {
                Ok(p) => on_file(p, key, path, meta),
                Err(_) => present.foreign.push(rel),
            }
        } else {
            present.foreign.push(rel);
        }
    }
    Ok(())
}

fn read_descriptor(model_dir: &Path) -> Option<OllamaDescriptor> {
    let path = model_dir.join(OLLAMA_DESCRIPTOR);
    let meta = fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return None;
    }
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

pub(crate) fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Learns (size, digests) of every pending file: from the cache, else by hashing each inode
/// once, spread over all cores. A cached small file without its git blob id (remembered by an
/// older modelctl) counts as a miss.
fn hash_all(
    pending: Vec<Pending>,
    cache: &mut StatCache,
    stats: &mut ScanStats,
    before_hashing: &dyn Fn(usize, u64),
) -> Result<HashMap<String, (u64, Known)>, ScanError> {
    let mut known: HashMap<String, (u64, Known)> = HashMap::new();
    let mut by_inode: HashMap<(u64, u64), Known> = HashMap::new();
    let mut misses: Vec<Pending> = Vec::new();
    for p in pending {
        let complete = |k: &Known| k.git_oid.is_some() || p.stamp.size > GIT_OID_MAX_SIZE;
        match cache.known(&p.key, &p.stamp).filter(complete) {
            Some(d) => {
                cache.renew(&p.key, &p.stamp);
                by_inode.insert((p.stamp.dev, p.stamp.ino), d);
                known.insert(p.key, (p.stamp.size, d));
            }
            None => misses.push(p),
        }
    }
    let mut to_hash: Vec<&Pending> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in &misses {
        let inode = (p.stamp.dev, p.stamp.ino);
        if !by_inode.contains_key(&inode) && seen.insert(inode) {
            to_hash.push(p);
        }
    }
    stats.hashed_files = to_hash.len();
    stats.hashed_bytes = to_hash.iter().map(|p| p.stamp.size).sum();
    if !to_hash.is_empty() {
        before_hashing(stats.hashed_files, stats.hashed_bytes);
    }
    let started = now_ns();
    let jobs: Vec<HashJob<'_>> = to_hash
        .iter()
        .map(|p| HashJob {
            path: &p.path,
            size: p.stamp.size,
            identity: None,
            extra: scan_extra(p.stamp.size),
        })
        .collect();
    let computed = hash_parallel(&jobs)?;
    for (p, d) in to_hash.iter().zip(computed) {
        let known = Known {
            sha256: d.sha256,
            git_oid: d.git_oid,
        };
        by_inode.insert((p.stamp.dev, p.stamp.ino), known);
    }
    for p in misses {
        if let Some(d) = by_inode.get(&(p.stamp.dev, p.stamp.ino)).copied() {
            cache.insert(p.key.clone(), p.stamp, d, started);
            known.insert(p.key, (p.stamp.size, d));
        }
    }
    Ok(known)
}

impl StoreState {
    /// A digest of everything the planner looks at, so a saved plan can tell whether the
    /// store changed since it was made.
    pub fn fingerprint(&self) -> Sha256 {
        use std::fmt::Write;
        let mut text = String::from("modelctl-store-state-v1\n");
        for ((kind, id), model) in &self.models {
            let _ = writeln!(text, "model {kind} {id}");
            for (path, file) in &model.files {
                let _ = writeln!(text, "  file {path} {} {}", file.size, file.sha256);
            }
            for path in &model.foreign {
                let _ = writeln!(text, "  foreign {path}");
            }
            if let Some(d) = &model.ollama {
                let _ = writeln!(text, "  ollama {} {}", d.ollama, d.digest);
            }
        }
        for (digest, size) in &self.blobs {
            let _ = writeln!(text, "blob {digest} {size}");
        }
        for (kind, pointer) in &self.active {
            let _ = writeln!(text, "active {kind} {pointer:?}");
        }
        Sha256::of(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    /// Puts `bytes` in the store as a blob hardlinked into `models/llm/m/<name>`, dated an
    /// hour ago so the stat cache trusts it.
    fn place(store: &Store, name: &str, bytes: &[u8]) -> Sha256 {
        let digest = Sha256::of(bytes);
        let blob = store.blob_path(&digest);
        fs::create_dir_all(blob.parent().expect("parent")).expect("mkdir");
        fs::write(&blob, bytes).expect("write");
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&blob)
            .expect("open")
            .set_modified(hour_ago)
            .expect("mtime");
        let dir = store.models_dir().join("llm").join("m");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::hard_link(&blob, dir.join(name)).expect("link");
        digest
    }

    #[test]
    fn a_warm_scan_hashes_nothing_and_a_rewrite_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path());
        let a = place(&store, "a.bin", b"first file");
        place(&store, "b.bin", b"second file");
        let mut cache = StatCache::default();
        let silent = |_: usize, _: u64| {};

        let (state, cold) = scan(&store, &mut cache, &silent).expect("scan");
        assert_eq!(cold.files, 4, "two model files and two blobs");
        assert_eq!(cold.hashed_files, 2, "hardlinks are hashed once per inode");
        let key = (
            TypeName::parse("llm").expect("t"),
            ModelId::parse("m").expect("id"),
        );
        assert_eq!(
            state.models[&key].files[&RelPath::parse("a.bin").expect("p")].sha256,
            a
        );
        assert_eq!(state.blobs.len(), 2);

        let (again, warm) = scan(&store, &mut cache, &silent).expect("scan");
        assert_eq!(
            warm.hashed_files, 0,
            "the stat cache answers for unchanged files"
        );
        assert_eq!(again, state);

        // Same size, mtime put back: only the ctime and the bytes differ.
        let path = store.models_dir().join("llm/m/a.bin");
        let mtime = fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        fs::write(&path, b"FIRST file").expect("rewrite");
        fs::File::options()
            .write(true)
            .open(&path)
            .expect("open")
            .set_modified(mtime)
            .expect("mtime");
        let (tampered, stats) = scan(&store, &mut cache, &silent).expect("scan");
        assert_eq!(stats.hashed_files, 1);
        assert_ne!(
            tampered.models[&key].files[&RelPath::parse("a.bin").expect("p")].sha256,
            a
        );
        assert_eq!(
            tampered.corrupt_blobs,
            vec![a],
            "the blob shares the rewritten inode"
        );
    }

    #[test]
    fn a_symlinked_top_level_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("elsewhere");
        let store = Store::new(dir.path().join("store"));
        fs::create_dir_all(store.root()).expect("mkdir");
        std::os::unix::fs::symlink(elsewhere.path(), store.models_dir()).expect("symlink");
        let err = scan(&store, &mut StatCache::default(), &|_, _| {}).expect_err("refused");
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[test]
    fn symlinks_and_unsafe_entries_are_reported_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("store"));
        place(&store, "a.bin", b"x");
        let model = store.models_dir().join("llm/m");
        std::os::unix::fs::symlink("/etc/passwd", model.join("evil")).expect("symlink");
        fs::create_dir_all(store.models_dir().join("Bad Type")).expect("mkdir");
        fs::create_dir_all(store.active_dir()).expect("mkdir");
        std::os::unix::fs::symlink(
            "../models/llm/m",
            store.active_link(&TypeName::parse("llm").expect("t")),
        )
        .expect("symlink");
        std::os::unix::fs::symlink("/tmp", store.active_dir().join("tts")).expect("symlink");
        let (state, _) = scan(&store, &mut StatCache::default(), &|_, _| {}).expect("scan");
        let key = (
            TypeName::parse("llm").expect("t"),
            ModelId::parse("m").expect("id"),
        );
        assert_eq!(state.models[&key].foreign, vec!["evil".to_owned()]);
        assert_eq!(state.unknown, vec!["models/Bad Type".to_owned()]);
        assert_eq!(state.active[&key.0], ActivePointer::Model(key.1.clone()));
        assert!(matches!(
            state.active[&TypeName::parse("tts").expect("t")],
            ActivePointer::Broken(_)
        ));
    }
}
