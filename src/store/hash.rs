//! Hashing files for real, on every core.
//!
//! The scan (for files the stat cache cannot vouch for), `verify` (for everything) and `gc`
//! (for copies that might keep a blob alive) all hash through here. Work is spread over one
//! thread per core, largest file first so the threads finish together. A job may carry the
//! (device, inode) its caller saw with `lstat`: the opened file must be that same inode, so a
//! path swapped for a symlink after the walk is reported instead of followed.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use super::scan::ScanError;
use crate::digest::{Digests, Extra, Sha256};

/// Files up to this size also get their git blob id when the scan hashes them: the Hub keeps
/// every larger file in LFS, named by sha256, so only small files are ever checked by git id.
pub const GIT_OID_MAX_SIZE: u64 = 10 << 20;

/// What the scan computes for a file of `size` bytes.
pub(crate) fn scan_extra(size: u64) -> Extra {
    Extra {
        md5: false,
        git_blob: (size <= GIT_OID_MAX_SIZE).then_some(size),
    }
}

/// One file to hash.
pub(crate) struct HashJob<'a> {
    pub path: &'a Path,
    /// Its size, to schedule large files first.
    pub size: u64,
    /// The (device, inode) the caller saw, when the opened file must be that one.
    pub identity: Option<(u64, u64)>,
    /// The digests wanted besides SHA-256.
    pub extra: Extra,
}

/// Hashes every job on all cores; the digests come back in the jobs' order. The first job
/// that cannot be read (in that order) is the error.
pub(crate) fn hash_parallel(jobs: &[HashJob<'_>]) -> Result<Vec<Digests>, ScanError> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].size));
    let queue = Mutex::new(order.into_iter());
    let results: Mutex<Vec<Option<Result<Digests, ScanError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.next()).unwrap_or(None);
                    let Some(i) = next else { break };
                    let result = hash_job(&jobs[i]);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(result);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .zip(jobs)
        .map(|(r, job)| {
            r.unwrap_or_else(|| Err(read_error(job.path, std::io::Error::other("not hashed"))))
        })
        .collect()
}

/// The sha256 of a file's bytes.
pub fn hash_file(path: &Path) -> Result<Sha256, ScanError> {
    hash_file_with(path, Extra::default()).map(|d| d.sha256)
}

/// The sha256 of a file's bytes and the `extra` digests.
pub fn hash_file_with(path: &Path, extra: Extra) -> Result<Digests, ScanError> {
    hash_job(&HashJob {
        path,
        size: 0,
        identity: None,
        extra,
    })
}

fn hash_job(job: &HashJob<'_>) -> Result<Digests, ScanError> {
    let path = job.path;
    let mut file = fs::File::open(path).map_err(|e| read_error(path, e))?;
    if let Some(identity) = job.identity {
        let meta = file.metadata().map_err(|e| read_error(path, e))?;
        if (meta.dev(), meta.ino()) != identity || !meta.is_file() {
            return Err(read_error(
                path,
                std::io::Error::other("it was replaced while it was being checked"),
            ));
        }
    }
    crate::digest::ContentHasher::new(job.extra)
        .read_all(&mut file)
        .map_err(|e| read_error(path, e))
}

fn read_error(path: &Path, source: std::io::Error) -> ScanError {
    ScanError {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_hashes_come_back_in_job_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let contents: Vec<Vec<u8>> = (0..9u8).map(|i| vec![i; usize::from(i) * 1000]).collect();
        let paths: Vec<_> = contents
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let path = dir.path().join(format!("f{i}"));
                fs::write(&path, bytes).expect("write");
                path
            })
            .collect();
        let jobs: Vec<HashJob<'_>> = paths
            .iter()
            .zip(&contents)
            .map(|(path, bytes)| HashJob {
                path,
                size: bytes.len() as u64,
                identity: None,
                extra: scan_extra(bytes.len() as u64),
            })
            .collect();
        let digests = hash_parallel(&jobs).expect("hash");
        let expected: Vec<Sha256> = contents.iter().map(|b| Sha256::of(b)).collect();
        assert_eq!(
            digests.iter().map(|d| d.sha256).collect::<Vec<_>>(),
            expected
        );
        let oids: Vec<_> = contents
            .iter()
            .map(|b| Some(crate::digest::GitOid::of_blob(b)))
            .collect();
        assert_eq!(digests.iter().map(|d| d.git_oid).collect::<Vec<_>>(), oids);
    }

    #[test]
    fn a_file_swapped_after_the_walk_is_refused_not_hashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.bin");
        fs::write(&path, b"original").expect("write");
        let seen = fs::symlink_metadata(&path).expect("lstat");
        fs::write(dir.path().join("other"), b"other").expect("write");
        fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink(dir.path().join("other"), &path).expect("symlink");
        let err = hash_parallel(&[HashJob {
            path: &path,
            size: 8,
            identity: Some((seen.dev(), seen.ino())),
            extra: Extra::default(),
        }])
        .expect_err("swapped");
        assert!(err.to_string().contains("replaced"), "{err}");
        assert_eq!(hash_file(&path).expect("plain hash"), Sha256::of(b"other"));
    }
}
