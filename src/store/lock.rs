//! One writer per store: an advisory lock on `.modelctl/lock`.
//!
//! `apply`, `gc` and (later) `watch` take it exclusively; a second process waits, saying who
//! holds it, and gives up after a timeout. The holder writes its pid into the file so the
//! message can name it. The lock is an optimisation, not a correctness mechanism: on
//! filesystems where advisory locks silently do nothing (some NFS setups) every store write is
//! still atomic (docs/reliability.md I6). The OS releases the lock when the process dies, so a
//! `kill -9` never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::Store;

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
}

/// The lock could not be taken.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StoreLockError {
    #[error("cannot open the store lock `{}`: {source}", path.display())]
    #[diagnostic(
        code(store::lock),
        help("check that the store directory exists and is writable")
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store `{}` is not writable: {source}", store.display())]
    #[diagnostic(
        code(store::not_writable),
        help(
            "modelctl writes the store when it changes it; point it at a writable directory \
             with `--store DIR` (or MODELCTL_STORE, or `store:` in models.yaml), or make this \
             one writable. `plan` and `status` only read it"
        )
    )]
    NotWritable {
        store: PathBuf,
        source: std::io::Error,
    },
    #[error("gave up waiting for the store lock `{}` after {} s{holder}", path.display(), waited.as_secs())]
    #[diagnostic(
        code(store::lock_timeout),
        help(
            "another modelctl is applying to this store; wait for it, or raise the limit with `MODELCTL_LOCK_TIMEOUT` (seconds)"
        )
    )]
    Timeout {
        path: PathBuf,
        waited: Duration,
        holder: String,
    },
}

impl StoreLock {
    /// Takes the lock, calling `waiting(holder)` once if another process has it, and waiting
    /// at most `timeout`.
    pub fn acquire(
        store: &Store,
        timeout: Duration,
        waiting: &dyn Fn(&str),
    ) -> Result<Self, StoreLockError> {
        let path = store.lock_file_path();
        let open = || -> std::io::Result<File> {
            std::fs::create_dir_all(store.root())?;
            super::ensure_dir(store.root(), &store.state_dir()).map_err(|e| e.source)?;
            // Never follow a symlink planted where the lock file belongs: it would be truncated.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
                return Err(std::io::Error::other(
                    "the lock file is not a regular file (a symlink?)",
                ));
            }
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
        };
        let mut file = open().map_err(|source| match source.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                StoreLockError::NotWritable {
                    store: store.root().to_path_buf(),
                    source,
                }
            }
            _ => StoreLockError::Open {
                path: path.clone(),
                source,
            },
        })?;
        let started = Instant::now();
        let mut announced = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let holder = holder_of(&mut file);
                    if !announced {
                        waiting(&holder);
                        announced = true;
                    }
                    if started.elapsed() >= timeout {
                        return Err(StoreLockError::Timeout {
                            path,
                            waited: started.elapsed(),
                            holder: if holder.is_empty() {
                                String::new()
                            } else {
                                format!(" (held by {holder})")
                            },
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::Error(source)) => {
                    return Err(StoreLockError::Open { path, source });
                }
            }
        }
        // Best effort: the pid only improves the message another process prints.
        let _ = file.set_len(0).and_then(|()| {
            file.seek(SeekFrom::Start(0))?;
            write!(file, "pid {}", std::process::id())?;
            file.flush()
        });
        Ok(Self { file })
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn holder_of(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.take(64).read_to_string(&mut text));
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_planted_as_the_lock_file_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("write");
        let store = Store::new(dir.path().join("store"));
        std::fs::create_dir_all(store.state_dir()).expect("mkdir");
        std::os::unix::fs::symlink(&victim, store.lock_file_path()).expect("symlink");
        assert!(StoreLock::acquire(&store, Duration::ZERO, &|_| {}).is_err());
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
    }

    #[test]
    fn a_second_holder_waits_names_the_first_and_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path());
        let first = StoreLock::acquire(&store, Duration::ZERO, &|_| {}).expect("first");
        let seen = std::sync::Mutex::new(String::new());
        let err = StoreLock::acquire(&store, Duration::from_millis(200), &|h| {
            if let Ok(mut s) = seen.lock() {
                *s = h.to_owned();
            }
        })
        .expect_err("second times out");
        let pid = format!("pid {}", std::process::id());
        assert_eq!(seen.lock().map(|s| s.clone()).unwrap_or_default(), pid);
        assert!(err.to_string().contains(&pid), "{err}");
        drop(first);
        StoreLock::acquire(&store, Duration::ZERO, &|_| {}).expect("free again");
    }
}
