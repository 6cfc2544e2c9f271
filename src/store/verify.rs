//! `verify`: re-hash the files of the checked models and every blob, and compare with the lock.
//!
//! Nothing here trusts the stat cache: every regular file is read in full, once per inode (a
//! model file and its blob are hardlinks, so they cost one read), on all cores. A file is
//! checked against every digest models.lock knows for it: sha256, the git blob id of a Hub
//! regular file, the md5 where that is all there is; a sha256 that the lock pairs with a git
//! blob id the same bytes do not have is a lock to repair, not a file to trust. The walk uses
//! `lstat` only. A symlink, directory or device where a file should be is reported as
//! `not_a_file` and never opened, and a file is hashed only if the inode opened is the one the
//! walk saw. Every problem is collected, none stops the walk; only an entry that cannot be
//! read at all is an error. Nothing in the store is written: the caller may save the stat
//! cache this refreshes, and must not fail when it cannot (a read-only store,
//! docs/reliability.md D2).
//! What to do about a problem is not decided here.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::hash::{HashJob, hash_parallel, scan_extra};
use super::scan::{ScanError, entries, now_ns};
use super::stat_cache::{Known, Stamp, StatCache};
use super::{EntryKind, Store, blob_name};
use crate::digest::{Digests, Expected, Extra, GitOid, Sha256};
use crate::lock::LockedFile;
use crate::names::{ModelId, TypeName};

/// One model to check: where it lives and what models.lock says it holds.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub id: &'a ModelId,
    pub kind: &'a TypeName,
    pub files: &'a [LockedFile],
}

/// Everything `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    /// One per target, in the targets' order.
    pub models: Vec<ModelReport>,
    /// Blobs whose bytes do not hash to their name, or that are not regular files.
    pub corrupt_blobs: Vec<CorruptBlob>,
    /// How many entries under `blobs/sha256/` were checked.
    pub blobs_checked: usize,
    /// Distinct inodes read, and their bytes.
    pub hashed_files: usize,
    pub hashed_bytes: u64,
}

impl VerifyReport {
    /// Problems in models plus corrupt blobs.
    pub fn problem_count(&self) -> usize {
        self.models
            .iter()
            .map(|m| m.problems.len() + m.hf_cache.len())
            .sum::<usize>()
            + self.corrupt_blobs.len()
    }

    pub fn is_ok(&self) -> bool {
        self.problem_count() == 0
    }
}

/// The outcome for one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelReport {
    pub id: ModelId,
    #[serde(rename = "type")]
    pub kind: TypeName,
    /// Locked files found as regular files and hashed.
    pub files_checked: usize,
    pub bytes_checked: u64,
    /// Sorted by path.
    pub problems: Vec<Problem>,
    /// Files models.lock gives no digest at all for: only their size could be compared.
    pub size_only: Vec<String>,
    /// For a model laid out in the Hugging Face cache (`hf_cache: true`): what its snapshot
    /// serves that is not the locked bytes; paths are the snapshot entries', absolute.
    pub hf_cache: Vec<Problem>,
}

/// What is wrong with one entry of a model directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// In models.lock, absent from the directory.
    Missing,
    /// In the directory, absent from models.lock.
    Extra,
    /// A regular file whose size or a digest differs from models.lock.
    Corrupted,
    /// The bytes match models.lock's sha256 but not the git blob id it pairs with it: the lock
    /// itself is wrong (an older modelctl learned the sha256 of stale bytes); `modelctl update`
    /// re-pins the model.
    LockInconsistent,
    /// Something other than a regular file where models.lock has a file (or, with path `.`,
    /// where the model directory should be).
    NotAFile,
}

/// One problem. Every field is always present in JSON (null when it does not apply).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// Relative to the model directory, `/`-separated; `.` is the directory itself.
    pub path: String,
    pub expected_sha256: Option<Sha256>,
    pub actual_sha256: Option<Sha256>,
    pub expected_size: Option<u64>,
    pub actual_size: Option<u64>,
    /// The git blob id models.lock gives (Hub regular files), and the one the bytes have.
    pub expected_git_oid: Option<crate::digest::GitOid>,
    pub actual_git_oid: Option<crate::digest::GitOid>,
    /// What the entry is (null when missing).
    pub found: Option<EntryKind>,
    /// Where a symlink points: read, never followed.
    pub link_target: Option<String>,
}

/// A blob that does not hold what its name says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorruptBlob {
    /// Relative to the store root: `blobs/sha256/ab/ab…`.
    pub path: String,
    /// The name: what the bytes should hash to.
    pub expected_sha256: Sha256,
    /// What they hash to (null when the entry is not a regular file).
    pub actual_sha256: Option<Sha256>,
    pub actual_size: Option<u64>,
    pub found: EntryKind,
}

/// The store could not be read well enough to verify it.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum VerifyError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(#[from] ScanError),
    #[error("`{}` is {}, not a directory; verify does not follow it", path.display(), found.describe())]
    #[diagnostic(
        code(store::not_a_directory),
        help(
            "the store never puts a symlink or a file here; move the entry away and restore the directory"
        )
    )]
    NotADirectory { path: PathBuf, found: EntryKind },
}

/// A regular file to hash, and what its digest will be compared with.
struct Job {
    /// The stat cache key: the path relative to the store root.
    key: String,
    path: PathBuf,
    stamp: Stamp,
    owner: Owner,
}

enum Owner {
    /// `targets[model].files[file]`.
    File {
        model: usize,
        file: usize,
    },
    Blob {
        digest: Sha256,
    },
}

/// Checks `targets` and every blob. `cache` receives the fresh hashes (saving it is the
/// caller's choice); `before_hashing(files, bytes)` is called once before reading starts.
pub fn verify(
    store: &Store,
    targets: &[Target<'_>],
    cache: &mut StatCache,
    before_hashing: &dyn Fn(usize, u64),
) -> Result<VerifyReport, VerifyError> {
    let mut jobs = Vec::new();
    let mut report = VerifyReport::default();
    for (index, target) in targets.iter().enumerate() {
        let model = walk_model(store, target, index, &mut jobs)?;
        report.models.push(model);
    }
    report.blobs_checked = walk_blobs(store, &mut jobs, &mut report.corrupt_blobs)?;

    // One read per inode: hardlinks hold the same bytes.
    let mut first_of_inode: HashMap<(u64, u64), usize> = HashMap::new();
    let mut unique: Vec<usize> = Vec::new();
    let slots: Vec<usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            *first_of_inode
                .entry((job.stamp.dev, job.stamp.ino))
                .or_insert_with(|| {
                    unique.push(i);
                    unique.len() - 1
                })
        })
        .collect();
    report.hashed_files = unique.len();
    report.hashed_bytes = unique.iter().map(|&i| jobs[i].stamp.size).sum();
    before_hashing(report.hashed_files, report.hashed_bytes);
    let started = now_ns();
    // What each inode is checked against: the union of what its links' lock entries know.
    let mut extra: Vec<Extra> = unique
        .iter()
        .map(|&i| scan_extra(jobs[i].stamp.size))
        .collect();
    for (job, &slot) in jobs.iter().zip(&slots) {
        if let Owner::File { model, file } = job.owner {
            let f = &targets[model].files[file];
            extra[slot].md5 |= f.md5.is_some();
            if f.git_oid.is_some() {
                extra[slot].git_blob = Some(job.stamp.size);
            }
        }
    }
    let hash_jobs: Vec<HashJob<'_>> = unique
        .iter()
        .zip(&extra)
        .map(|(&i, extra)| HashJob {
            path: &jobs[i].path,
            size: jobs[i].stamp.size,
            identity: Some((jobs[i].stamp.dev, jobs[i].stamp.ino)),
            extra: *extra,
        })
        .collect();
    let digests = hash_parallel(&hash_jobs)?;

    for (job, slot) in jobs.into_iter().zip(slots) {
        let actual = digests[slot];
        let known = Known {
            sha256: actual.sha256,
            git_oid: actual.git_oid,
        };
        cache.insert(job.key.clone(), job.stamp, known, started);
        match job.owner {
            Owner::File { model, file } => {
                let expected = &targets[model].files[file];
                compare(&mut report.models[model], expected, &job.stamp, &actual);
            }
            Owner::Blob { digest } if digest != actual.sha256 => {
                report.corrupt_blobs.push(CorruptBlob {
                    path: job.key,
                    expected_sha256: digest,
                    actual_sha256: Some(actual.sha256),
                    actual_size: Some(job.stamp.size),
                    found: EntryKind::File,
                });
            }
            Owner::Blob { .. } => {}
        }
    }
    for model in &mut report.models {
        model.problems.sort_by(|a, b| a.path.cmp(&b.path));
        model.size_only.sort();
    }
    report.corrupt_blobs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

/// What a lock knows of one file, to judge bytes against: its size, its sha256 and its git
/// blob id, each when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    pub size: u64,
    pub sha256: Option<Sha256>,
    pub git_oid: Option<GitOid>,
}

impl Pinned {
    pub fn of(file: &LockedFile) -> Self {
        Self {
            size: file.size,
            sha256: file.sha256,
            git_oid: file.git_oid,
        }
    }
}

/// What a file's bytes are, judged against everything the lock knows of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every digest the lock knows matches, and at least one is known.
    Matches,
    /// Other bytes: the size or a known digest differs.
    Differs,
    /// The bytes have the locked sha256 but not the git blob id the lock pairs with it: the
    /// lock was written from stale bytes, and is what needs repairing.
    LockInconsistent { actual: GitOid },
    /// Nothing computed proves the bytes right or wrong: the lock has no sha256, and its git
    /// blob id (if any) was not computed for these bytes.
    Unproven,
}

/// The one rule the planner (on a scanned file) and `verify` (on freshly hashed bytes) judge
/// by: every digest the lock knows must match. `found` is what hashing gave: the sha256 and,
/// when it was computed, the git blob id. A git blob id is a digest like the others: a Hub
/// regular file changed at the same size is other bytes.
pub fn judge_digests(pinned: &Pinned, size: u64, found: &Known) -> Verdict {
    if size != pinned.size {
        return Verdict::Differs;
    }
    match (pinned.sha256, pinned.git_oid, found.git_oid) {
        (Some(want), _, _) if want != found.sha256 => Verdict::Differs,
        (Some(_), Some(want), Some(actual)) if want != actual => {
            Verdict::LockInconsistent { actual }
        }
        (Some(_), _, _) => Verdict::Matches,
        (None, Some(want), Some(actual)) if want == actual => Verdict::Matches,
        (None, Some(_), Some(_)) => Verdict::Differs,
        (None, _, None) | (None, None, Some(_)) => Verdict::Unproven,
    }
}

/// Checks one hashed file against its lock entry: the problem, if any (its kind). Past the
/// sha256 and git blob id ([`judge_digests`]), a locked md5 must match too.
pub fn judge(expected: &LockedFile, size: u64, actual: &Digests) -> Option<ProblemKind> {
    let found = Known {
        sha256: actual.sha256,
        git_oid: actual.git_oid,
    };
    match judge_digests(&Pinned::of(expected), size, &found) {
        Verdict::Differs => Some(ProblemKind::Corrupted),
        Verdict::LockInconsistent { .. } => Some(ProblemKind::LockInconsistent),
        // A locked git blob id is always computed here: one missing is not a match.
        Verdict::Unproven if expected.git_oid.is_some() => Some(ProblemKind::Corrupted),
        Verdict::Matches | Verdict::Unproven => match expected.md5 {
            Some(want) if actual.md5 != Some(want) => Some(ProblemKind::Corrupted),
            _ => None,
        },
    }
}

/// Records one hashed locked file in its model's report.
fn compare(model: &mut ModelReport, expected: &LockedFile, stamp: &Stamp, actual: &Digests) {
    model.files_checked += 1;
    model.bytes_checked += stamp.size;
    let path = expected.path.as_str().to_owned();
    let want = Expected {
        sha256: expected.sha256,
        md5: expected.md5,
        git_oid: expected.git_oid,
    };
    if want.is_empty() {
        model.size_only.push(path.clone());
    }
    if let Some(kind) = judge(expected, stamp.size, actual) {
        model.problems.push(Problem {
            kind,
            path,
            expected_sha256: expected.sha256,
            actual_sha256: Some(actual.sha256),
            expected_size: Some(expected.size),
            actual_size: Some(stamp.size),
            expected_git_oid: expected.git_oid,
            actual_git_oid: actual.git_oid,
            found: Some(EntryKind::File),
            link_target: None,
        });
    }
}

/// How a chain of directories, outermost first, looks under `lstat`.
enum Chain {
    Present,
    Missing,
}

fn dir_chain(dirs: &[PathBuf]) -> Result<Chain, VerifyError> {
    for dir in dirs {
        match fs::symlink_metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                return Err(VerifyError::NotADirectory {
                    path: dir.clone(),
                    found: EntryKind::of(&meta),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Chain::Missing),
            Err(source) => {
                return Err(ScanError {
                    path: dir.clone(),
                    source,
                }
                .into());
            }
        }
    }
    Ok(Chain::Present)
}

/// Walks `models/<type>/<id>/`, queueing locked regular files for hashing and recording every
/// entry that is missing, extra or not a regular file.
fn walk_model(
    store: &Store,
    target: &Target<'_>,
    index: usize,
    jobs: &mut Vec<Job>,
) -> Result<ModelReport, VerifyError> {
    let mut report = ModelReport {
        id: target.id.clone(),
        kind: target.kind.clone(),
        files_checked: 0,
        bytes_checked: 0,
        problems: Vec::new(),
        size_only: Vec::new(),
        hf_cache: Vec::new(),
    };
    let locked: HashMap<&str, usize> = target
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.path.as_str(), i))
        .collect();
    let mut seen: HashSet<usize> = HashSet::new();
    let models_dir = store.models_dir();
    let type_dir = models_dir.join(target.kind.as_str());
    let model_dir = store.model_dir(target.kind, target.id);

    let walk_from = match dir_chain(&[models_dir, type_dir])? {
        Chain::Missing => None,
        Chain::Present => match fs::symlink_metadata(&model_dir) {
            Ok(meta) if meta.is_dir() => Some(model_dir),
            Ok(meta) => {
                report
                    .problems
                    .push(foreign(".", &meta, &model_dir, None, ProblemKind::NotAFile));
                return Ok(report);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ScanError {
                    path: model_dir,
                    source,
                }
                .into());
            }
        },
    };

    // An explicit stack: a hostile tree cannot exhaust the call stack.
    let mut stack: Vec<(PathBuf, String)> =
        walk_from.into_iter().map(|d| (d, String::new())).collect();
    while let Some((dir, prefix)) = stack.pop() {
        for (name, meta, path) in entries(&dir)? {
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let file = locked.get(rel.as_str()).copied();
            if let Some(i) = file {
                seen.insert(i);
            }
            match file {
                Some(i) if meta.is_file() => jobs.push(Job {
                    key: format!("models/{}/{}/{rel}", target.kind, target.id),
                    path,
                    stamp: Stamp::of(&meta),
                    owner: Owner::File {
                        model: index,
                        file: i,
                    },
                }),
                Some(i) => report.problems.push(foreign(
                    &rel,
                    &meta,
                    &path,
                    target.files.get(i),
                    ProblemKind::NotAFile,
                )),
                None if meta.is_dir() => stack.push((path, rel)),
                None => report
                    .problems
                    .push(foreign(&rel, &meta, &path, None, ProblemKind::Extra)),
            }
        }
    }

    for (i, file) in target.files.iter().enumerate() {
        if !seen.contains(&i) {
            report.problems.push(Problem {
                kind: ProblemKind::Missing,
                path: file.path.as_str().to_owned(),
                expected_sha256: file.sha256,
                actual_sha256: None,
                expected_size: Some(file.size),
                actual_size: None,
                expected_git_oid: file.git_oid,
                actual_git_oid: None,
                found: None,
                link_target: None,
            });
        }
    }
    Ok(report)
}

/// A problem about an entry that is not hashed: an extra entry, or a non-file where a locked
/// file (or the model directory) should be.
fn foreign(
    rel: &str,
    meta: &fs::Metadata,
    path: &Path,
    expected: Option<&LockedFile>,
    kind: ProblemKind,
) -> Problem {
    let found = EntryKind::of(meta);
    Problem {
        kind,
        path: rel.to_owned(),
        expected_sha256: expected.and_then(|f| f.sha256),
        actual_sha256: None,
        expected_size: expected.map(|f| f.size),
        actual_size: (found == EntryKind::File).then_some(meta.len()),
        expected_git_oid: expected.and_then(|f| f.git_oid),
        actual_git_oid: None,
        found: Some(found),
        link_target: (found == EntryKind::Symlink)
            .then(|| fs::read_link(path).ok())
            .flatten()
            .map(|t| t.to_string_lossy().into_owned()),
    }
}

/// Queues every blob for hashing; a blob name on something that is not a regular file is
/// corrupt at once. Returns how many blob entries there are.
fn walk_blobs(
    store: &Store,
    jobs: &mut Vec<Job>,
    corrupt: &mut Vec<CorruptBlob>,
) -> Result<usize, VerifyError> {
    let blobs = store.blobs_dir();
    let chain = [store.root().join("blobs"), blobs.clone()];
    if let Chain::Missing = dir_chain(&chain)? {
        return Ok(0);
    }
    let mut count = 0;
    for (shard, meta, shard_dir) in entries(&blobs)? {
        if !meta.is_dir() {
            continue;
        }
        for (name, meta, path) in entries(&shard_dir)? {
            let Some(digest) = blob_name(&shard, &name) else {
                continue;
            };
            count += 1;
            let key = format!("blobs/sha256/{shard}/{name}");
            if meta.is_file() {
                jobs.push(Job {
                    key,
                    path,
                    stamp: Stamp::of(&meta),
                    owner: Owner::Blob { digest },
                });
            } else {
                corrupt.push(CorruptBlob {
                    path: key,
                    expected_sha256: digest,
                    actual_sha256: None,
                    actual_size: None,
                    found: EntryKind::of(&meta),
                });
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::names::RelPath;

    fn inode(path: &Path) -> u64 {
        fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
    }

    #[test]
    fn every_digest_the_lock_knows_must_match() {
        let (a, b) = (Sha256::of(b"a"), Sha256::of(b"b"));
        let (ga, gb) = (GitOid::of_blob(b"a"), GitOid::of_blob(b"b"));
        let pinned = |sha256, git_oid| Pinned {
            size: 1,
            sha256,
            git_oid,
        };
        let found = |sha256, git_oid| Known { sha256, git_oid };
        let cases = [
            (pinned(Some(a), None), 1, found(a, None), Verdict::Matches),
            (pinned(Some(a), None), 2, found(a, None), Verdict::Differs),
            (pinned(Some(a), None), 1, found(b, None), Verdict::Differs),
            (
                pinned(Some(a), Some(ga)),
                1,
                found(a, Some(ga)),
                Verdict::Matches,
            ),
            (
                pinned(Some(a), Some(ga)),
                1,
                found(a, None),
                Verdict::Matches,
            ),
            (
                pinned(Some(a), Some(ga)),
                1,
                found(a, Some(gb)),
                Verdict::LockInconsistent { actual: gb },
            ),
            (
                pinned(None, Some(ga)),
                1,
                found(a, Some(ga)),
                Verdict::Matches,
            ),
            (
                pinned(None, Some(ga)),
                1,
                found(b, Some(gb)),
                Verdict::Differs,
            ),
            (pinned(None, Some(ga)), 1, found(a, None), Verdict::Unproven),
            (pinned(None, None), 1, found(a, Some(ga)), Verdict::Unproven),
        ];
        for (pinned, size, found, verdict) in cases {
            assert_eq!(
                judge_digests(&pinned, size, &found),
                verdict,
                "{pinned:?} {size} {found:?}"
            );
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        kind: TypeName,
        id: ModelId,
        files: Vec<LockedFile>,
    }

    /// A model `llm/m` with the given files, each a blob hardlinked into the model directory
    /// and dated an hour back, and the lock entries that describe them.
    fn fixture(files: &[(&str, &[u8])]) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("store"));
        let kind = TypeName::parse("llm").expect("type");
        let id = ModelId::parse("m").expect("id");
        let model_dir = store.model_dir(&kind, &id);
        let mut locked = Vec::new();
        for (name, bytes) in files {
            let digest = Sha256::of(bytes);
            let blob = store.blob_path(&digest);
            fs::create_dir_all(blob.parent().expect("parent")).expect("mkdir");
            fs::write(&blob, bytes).expect("write");
            fs::File::options()
                .write(true)
                .open(&blob)
                .expect("open")
                .set_modified(SystemTime::now() - Duration::from_secs(3600))
                .expect("mtime");
            let path = RelPath::parse(name).expect("path");
            let target = path.under(&model_dir);
            fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            fs::hard_link(&blob, &target).expect("link");
            locked.push(LockedFile {
                path,
                size: bytes.len() as u64,
                sha256: Some(digest),
                md5: None,
                git_oid: None,
            });
        }
        Fixture {
            _dir: dir,
            store,
            kind,
            id,
            files: locked,
        }
    }

    impl Fixture {
        fn model_path(&self, rel: &str) -> PathBuf {
            self.store.model_dir(&self.kind, &self.id).join(rel)
        }

        fn verify(&self) -> (VerifyReport, StatCache) {
            let mut cache = StatCache::default();
            let targets = [Target {
                id: &self.id,
                kind: &self.kind,
                files: &self.files,
            }];
            let report =
                verify(&self.store, &targets, &mut cache, &|_, _| {}).expect("verify runs");
            (report, cache)
        }
    }

    fn kinds(report: &VerifyReport) -> Vec<(ProblemKind, String)> {
        report.models[0]
            .problems
            .iter()
            .map(|p| (p.kind, p.path.clone()))
            .collect()
    }

    #[test]
    fn an_intact_model_has_no_problems_and_hardlinks_are_read_once() {
        let f = fixture(&[("a.bin", b"first"), ("sub/b.bin", b"second")]);
        let (report, cache) = f.verify();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.models[0].files_checked, 2);
        assert_eq!(report.models[0].bytes_checked, 11);
        assert_eq!(report.blobs_checked, 2);
        assert_eq!(report.hashed_files, 2, "model files and blobs share inodes");
        assert_eq!(
            inode(&f.model_path("a.bin")),
            inode(&f.store.blob_path(&Sha256::of(b"first")))
        );
        let meta = fs::symlink_metadata(f.model_path("a.bin")).expect("lstat");
        assert_eq!(
            cache.get("models/llm/m/a.bin", &Stamp::of(&meta)),
            Some(Sha256::of(b"first")),
            "the stat cache learns the fresh hashes"
        );
    }

    #[test]
    fn every_kind_of_damage_is_reported_with_expected_and_actual() {
        let f = fixture(&[
            ("flipped.bin", b"0123456789"),
            ("truncated.bin", b"abcdefghij"),
            ("linked.bin", b"link me"),
            ("gone.bin", b"missing"),
            ("dir.bin", b"a directory now"),
        ]);
        // Break the hardlinks first so the blobs stay intact.
        let rewrite = |rel: &str, bytes: &[u8]| {
            let path = f.model_path(rel);
            fs::remove_file(&path).expect("unlink");
            fs::write(&path, bytes).expect("write");
        };
        rewrite("flipped.bin", b"0123456788");
        rewrite("truncated.bin", b"abcde");
        let linked = f.model_path("linked.bin");
        fs::remove_file(&linked).expect("unlink");
        // A symlink to the right bytes is still not a file, and is not followed.
        std::os::unix::fs::symlink(f.store.blob_path(&Sha256::of(b"link me")), &linked)
            .expect("symlink");
        fs::remove_file(f.model_path("gone.bin")).expect("unlink");
        fs::remove_file(f.model_path("dir.bin")).expect("unlink");
        fs::create_dir(f.model_path("dir.bin")).expect("mkdir");
        fs::write(f.model_path("notes.txt"), b"extra").expect("write");

        let (report, _) = f.verify();
        assert_eq!(
            kinds(&report),
            vec![
                (ProblemKind::NotAFile, "dir.bin".to_owned()),
                (ProblemKind::Corrupted, "flipped.bin".to_owned()),
                (ProblemKind::Missing, "gone.bin".to_owned()),
                (ProblemKind::NotAFile, "linked.bin".to_owned()),
                (ProblemKind::Extra, "notes.txt".to_owned()),
                (ProblemKind::Corrupted, "truncated.bin".to_owned()),
            ]
        );
        let problems = &report.models[0].problems;
        let flipped = &problems[1];
        assert_eq!(flipped.expected_sha256, Some(Sha256::of(b"0123456789")));
        assert_eq!(flipped.actual_sha256, Some(Sha256::of(b"0123456788")));
        assert_eq!(
            (flipped.expected_size, flipped.actual_size),
            (Some(10), Some(10))
        );
        let truncated = &problems[5];
        assert_eq!(
            (truncated.expected_size, truncated.actual_size),
            (Some(10), Some(5))
        );
        assert_eq!(truncated.actual_sha256, Some(Sha256::of(b"abcde")));
        let link = &problems[3];
        assert_eq!(link.found, Some(EntryKind::Symlink));
        assert_eq!(link.actual_sha256, None, "a symlink is never read");
        assert!(
            link.link_target
                .as_deref()
                .is_some_and(|t| t.contains("blobs")),
            "{link:?}"
        );
        assert_eq!(problems[0].found, Some(EntryKind::Directory));
        assert_eq!(problems[4].actual_size, Some(5));
        assert_eq!(report.models[0].files_checked, 2);
        assert!(
            report.corrupt_blobs.is_empty(),
            "{:?}",
            report.corrupt_blobs
        );
    }

    #[test]
    fn a_corrupt_or_non_file_blob_is_reported_even_when_no_model_links_it() {
        let f = fixture(&[("a.bin", b"fine")]);
        let stray = Sha256::of(b"stray");
        let path = f.store.blob_path(&stray);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, b"not stray").expect("write");
        let odd = Sha256::of(b"odd");
        let odd_path = f.store.blob_path(&odd);
        fs::create_dir_all(odd_path.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink("/etc/hostname", &odd_path).expect("symlink");
        let (report, _) = f.verify();
        assert!(report.models[0].problems.is_empty());
        let mut expected = vec![
            (stray, Some(Sha256::of(b"not stray")), EntryKind::File),
            (odd, None, EntryKind::Symlink),
        ];
        expected.sort_by_key(|(d, _, _)| d.hex());
        let found: Vec<_> = report
            .corrupt_blobs
            .iter()
            .map(|b| (b.expected_sha256, b.actual_sha256, b.found))
            .collect();
        assert_eq!(found, expected);
        assert_eq!(report.problem_count(), 2);
    }

    #[test]
    fn a_missing_model_directory_lists_every_file_and_a_symlinked_one_is_not_followed() {
        let f = fixture(&[("a.bin", b"a"), ("b.bin", b"b")]);
        let dir = f.store.model_dir(&f.kind, &f.id);
        fs::rename(&dir, f.store.root().join("elsewhere")).expect("move");
        let (report, _) = f.verify();
        assert_eq!(
            kinds(&report),
            vec![
                (ProblemKind::Missing, "a.bin".to_owned()),
                (ProblemKind::Missing, "b.bin".to_owned()),
            ]
        );
        std::os::unix::fs::symlink(f.store.root().join("elsewhere"), &dir).expect("symlink");
        let (report, _) = f.verify();
        assert_eq!(
            kinds(&report),
            vec![(ProblemKind::NotAFile, ".".to_owned())]
        );
        assert_eq!(report.models[0].files_checked, 0);
    }

    #[test]
    fn a_file_without_a_locked_sha256_is_checked_by_size_only() {
        let mut f = fixture(&[("a.bin", b"abc")]);
        f.files[0].sha256 = None;
        let (report, _) = f.verify();
        assert!(report.is_ok());
        assert_eq!(report.models[0].size_only, vec!["a.bin".to_owned()]);
        f.files[0].size = 4;
        let (report, _) = f.verify();
        assert_eq!(
            kinds(&report),
            vec![(ProblemKind::Corrupted, "a.bin".to_owned())]
        );
    }

    #[test]
    fn a_symlinked_blobs_directory_is_refused_not_followed() {
        let f = fixture(&[("a.bin", b"a")]);
        let blobs = f.store.root().join("blobs");
        fs::rename(&blobs, f.store.root().join("real-blobs")).expect("move");
        std::os::unix::fs::symlink(f.store.root().join("real-blobs"), &blobs).expect("symlink");
        let mut cache = StatCache::default();
        let targets = [Target {
            id: &f.id,
            kind: &f.kind,
            files: &f.files,
        }];
        let err = verify(&f.store, &targets, &mut cache, &|_, _| {}).expect_err("refused");
        assert!(matches!(
            err,
            VerifyError::NotADirectory {
                found: EntryKind::Symlink,
                ..
            }
        ));
    }
}
