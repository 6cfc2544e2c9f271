//! Durable, atomic file writes: the one way modelctl replaces a file.
//!
//! Every file modelctl owns (models.lock, active.json, the stat cache, symlinks under
//! `active/`) is replaced by writing a uniquely named sibling, fsyncing it, renaming it over
//! the target and fsyncing the directory. A crash at any instant leaves either the complete old
//! file or the complete new one, never an empty or truncated one (docs/reliability.md C2).
//! A file that must never be replaced once made (the API token) is created the same way but
//! published with a hard link instead of a rename, so a writer that loses a race is told.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::failpoint;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A sibling name no other writer uses: `.name.tmp-<pid>-<n>`.
fn temp_sibling(path: &Path) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Whether `name` is a temporary sibling made by [`write_atomic`] or [`replace_symlink`]; one
/// that outlived its writer is what a crash between writing and renaming leaves.
pub fn is_temp_sibling(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Makes a directory's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_sibling(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        failpoint::hit_file(path, "before-fsync");
        file.sync_all()?;
        drop(file);
        failpoint::hit_file(path, "before-rename");
        fs::rename(&temp, path)?;
        sync_dir(parent_of(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Creates `path` holding `bytes` with permission bits `mode`, atomically and durably, unless it
/// exists: then it fails with [`io::ErrorKind::AlreadyExists`] and leaves the file as it was.
/// The name only ever shows the whole content (a private sibling is written, fsynced and
/// hard-linked into place, then the directory is fsynced), so a concurrent reader or a crash
/// never sees half of it.
#[cfg(unix)]
pub fn create_new_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temp = temp_sibling(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::hard_link(&temp, path)
    })();
    let _ = fs::remove_file(&temp);
    result?;
    sync_dir(parent_of(path))
}

/// How [`install`] brought a file in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// Renamed (`Move`) or hard-linked (`Link`): the same inode, no bytes copied.
    InPlace,
    /// Copied and fsynced: the source is on another filesystem (or cannot be linked).
    Copied,
}

/// Whether [`install`] keeps the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The source is gone afterwards (a verified download moving in).
    Move,
    /// The source stays (a store blob lent to another tool's directory).
    Link,
}

/// Puts the complete file `source` at `target`, replacing what was there atomically, and
/// syncs the directory: renamed or hard-linked where the filesystem allows it, else copied
/// to a sibling, fsynced and renamed over. A crash leaves `target` old or new, never partial.
pub fn install(source: &Path, target: &Path, keep: Keep) -> io::Result<Installed> {
    let dir = parent_of(target);
    if keep == Keep::Move && fs::rename(source, target).is_ok() {
        sync_dir(dir)?;
        return Ok(Installed::InPlace);
    }
    let temp = temp_sibling(target);
    let result = (|| {
        let how = match keep {
            Keep::Link if fs::hard_link(source, &temp).is_ok() => Installed::InPlace,
            _ => {
                fs::copy(source, &temp)?;
                File::open(&temp)?.sync_all()?;
                Installed::Copied
            }
        };
        fs::rename(&temp, target)?;
        sync_dir(dir)?;
        Ok(how)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    } else if keep == Keep::Move {
        let _ = fs::remove_file(source);
    }
    result
}

/// Writes `bytes` unless the file already holds exactly them; returns whether it wrote.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    match fs::read(path) {
        Ok(existing) if existing == bytes => Ok(false),
        _ => write_atomic(path, bytes).map(|()| true),
    }
}

/// Points the symlink `link` at `target`, replacing any previous link atomically.
#[cfg(unix)]
pub fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    replace_symlink_with(target, link, || {})
}

/// [`replace_symlink`], calling `before_rename` once the new link exists beside the old one
/// (where the activation swap has its failpoint).
#[cfg(unix)]
pub fn replace_symlink_with(
    target: &Path,
    link: &Path,
    before_rename: impl FnOnce(),
) -> io::Result<()> {
    let temp = temp_sibling(link);
    std::os::unix::fs::symlink(target, &temp)?;
    before_rename();
    if let Err(e) = fs::rename(&temp, link) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(parent_of(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_if_changed_skips_identical_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("models.lock");
        assert!(write_if_changed(&path, b"a\n").expect("first write"));
        let before = fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!write_if_changed(&path, b"a\n").expect("second write"));
        let after = fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime");
        assert_eq!(before, after);
        assert!(write_if_changed(&path, b"b\n").expect("third write"));
        assert_eq!(fs::read(&path).expect("read"), b"b\n");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temp files are left behind");
    }

    #[test]
    fn create_new_atomic_makes_a_private_file_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api-token");
        create_new_atomic(&path, b"first\n", 0o600).expect("created");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = create_new_atomic(&path, b"second\n", 0o600).expect_err("exists");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            fs::read(&path).expect("read"),
            b"first\n",
            "the first is kept"
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temp files are left behind");
    }
}
