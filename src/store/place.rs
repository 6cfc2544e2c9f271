//! Changing the store: publishing blobs, linking model files, pointers and removal.
//!
//! Every change is a rename of something complete: a verified temporary file becomes a blob,
//! a hardlink (or copy) made under a temporary name becomes a model file, a new symlink
//! replaces `active/<type>`. Directories are fsynced after renames. Nothing here follows a
//! symlink inside the store: each directory on the way to a target is checked with `lstat`,
//! and removal deletes directory entries, never what a link points at (docs/reliability.md I3, I8).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::Store;
use crate::digest::Sha256;
use crate::durable;
use crate::failpoint;
use crate::names::{ModelId, RelPath, TypeName};

/// The name prefix of a model directory renamed into `tmp/` to be deleted.
const TRASH: &str = "deleted-";

/// The name prefix of a model directory being built in `tmp/` to replace the live one.
const STAGED: &str = "staged-";

/// Where a file of a rebuilt model directory takes its bytes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOrigin {
    /// The blob of this digest (published, or found intact by the scan).
    Blob(Sha256),
    /// The file the live directory has at the same path (unchanged and verified).
    Present,
}

/// A change to the store failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {source}", path.display())]
pub struct PlaceError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl miette::Diagnostic for PlaceError {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new("store::write"))
    }

    /// What to do depends on why the write failed: a store that cannot be written, or a disk
    /// that is full. Other causes speak for themselves.
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        let help = match self.source.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                "the store is not writable here: point modelctl at a writable directory with \
                 `--store DIR` (or MODELCTL_STORE, or `store:` in models.yaml), or make this one \
                 writable"
            }
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                "the disk is full: free space (`modelctl gc` removes what no model uses), or \
                 move the store with `--store DIR`; `modelctl apply` resumes where it stopped"
            }
            _ => return None,
        };
        Some(Box::new(help))
    }
}

/// A [`PlaceError`] for `action` on `path`, from the I/O error that stopped it.
pub(super) fn err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> PlaceError + 'a {
    move |source| PlaceError {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` and its parents below `root`, refusing any existing component that is a
/// symlink or not a directory.
pub fn ensure_dir(root: &Path, dir: &Path) -> Result<(), PlaceError> {
    let rel = dir.strip_prefix(root).map_err(|_| PlaceError {
        action: "create",
        path: dir.to_owned(),
        source: io::Error::other("the directory is outside the store"),
    })?;
    let mut current = root.to_path_buf();
    for part in rel.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(PlaceError {
                    action: "create",
                    path: current,
                    source: io::Error::other(
                        "a file or symlink is in the way of a store directory",
                    ),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current)
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(err("create", &current))?;
            }
            Err(e) => return Err(err("inspect", &current)(e)),
        }
    }
    Ok(())
}

impl Store {
    /// Checks that the store can be written, before any download starts (docs/reliability.md D2).
    pub fn check_writable(&self) -> Result<(), PlaceError> {
        if fs::symlink_metadata(self.root()).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(PlaceError {
                action: "use",
                path: self.root().to_owned(),
                source: io::Error::other(
                    "the store root is a symlink; point `store:` at the real directory",
                ),
            });
        }
        let tmp = self.tmp_dir();
        fs::create_dir_all(self.root()).map_err(err("create", self.root()))?;
        ensure_dir(self.root(), &tmp)?;
        let probe = tmp.join(format!(".probe-{}", std::process::id()));
        fs::write(&probe, b"").map_err(|source| PlaceError {
            action: "write to",
            path: self.root().to_owned(),
            source: io::Error::new(source.kind(), format!("store is not writable ({source})")),
        })?;
        let _ = fs::remove_file(probe);
        Ok(())
    }

    /// Moves a verified temporary file to its blob path (atomic rename, then fsync of the
    /// shard directory). A blob that already exists is kept: same name, same bytes. Every
    /// blob a store publishes also goes into its machine cache, this being the one way
    /// checked bytes enter a store; a cache that cannot take it costs only sharing.
    pub fn publish_blob(&self, temp: &Path, digest: &Sha256) -> Result<PathBuf, PlaceError> {
        let blob = self.blob_path(digest);
        let shard = blob.parent().unwrap_or(self.root()).to_path_buf();
        ensure_dir(self.root(), &shard)?;
        set_read_only(temp).map_err(err("protect", temp))?;
        failpoint::hit("download.before-rename");
        fs::rename(temp, &blob).map_err(err("publish", &blob))?;
        failpoint::hit("download.before-dir-fsync");
        durable::sync_dir(&shard).map_err(err("sync", &shard))?;
        if let Some(cache) = self.machine_cache() {
            match cache.adopt(&blob, digest) {
                Ok(Some(mode)) => tracing::info!(
                    "sha256:{} into the machine cache `{}` by {mode}",
                    digest.short(),
                    cache.root().display()
                ),
                Ok(None) => {}
                Err(e) => tracing::info!(
                    "the machine cache did not take sha256:{}: {e}",
                    digest.short()
                ),
            }
        }
        Ok(blob)
    }

    /// Puts right a blob whose bytes were found damaged: `intact` (a model file the scan found
    /// holding its bytes) becomes the blob again, by a hardlink renamed over it; without one,
    /// the damaged blob is removed.
    pub fn repair_blob(&self, digest: &Sha256, intact: Option<&Path>) -> Result<(), PlaceError> {
        let blob = self.blob_path(digest);
        let Some(source) = intact else {
            return match fs::remove_file(&blob) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(err("remove", &blob)(e)),
                _ => Ok(()),
            };
        };
        ensure_dir(self.root(), &self.tmp_dir())?;
        let temp = self
            .tmp_dir()
            .join(format!("{}.repair-{}", digest.hex(), std::process::id()));
        let _ = fs::remove_file(&temp);
        if fs::hard_link(source, &temp).is_err() {
            fs::copy(source, &temp).map_err(err("copy", source))?;
            fs::File::open(&temp)
                .and_then(|f| f.sync_all())
                .map_err(err("sync", &temp))?;
        }
        self.publish_blob(&temp, digest).map(|_| ())
    }

    /// Makes `models/<type>/<id>/<path>` the blob's bytes: a hardlink, or a copy where the
    /// filesystem refuses links; placed under a temporary name and renamed over the target.
    pub fn link_file(
        &self,
        kind: &TypeName,
        id: &ModelId,
        path: &RelPath,
        digest: &Sha256,
    ) -> Result<(), PlaceError> {
        let model_dir = self.model_dir(kind, id);
        let target = path.under(&model_dir);
        let parent = target.parent().unwrap_or(&model_dir).to_path_buf();
        ensure_dir(self.root(), &parent)?;
        let blob = self.blob_path(digest);
        let temp = parent.join(format!(".{}.link-{}", digest.short(), std::process::id()));
        let _ = fs::remove_file(&temp);
        if fs::hard_link(&blob, &temp).is_err() {
            fs::copy(&blob, &temp).map_err(err("copy", &blob))?;
            fs::File::open(&temp)
                .and_then(|f| f.sync_all())
                .map_err(err("sync", &temp))?;
        }
        if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            let _ = fs::remove_file(&temp);
            return Err(PlaceError {
                action: "replace",
                path: target,
                source: io::Error::other("a directory is in the way"),
            });
        }
        fs::rename(&temp, &target).map_err(err("link", &target))?;
        // Renaming a link onto another link of the same inode succeeds without doing anything.
        let _ = fs::remove_file(&temp);
        durable::sync_dir(&parent).map_err(err("sync", &parent))
    }

    /// Makes `models/<type>/<id>/` exactly `files`, in one step: the new version is built
    /// aside in `tmp/` (hardlinks of verified blobs, or of the live directory's unchanged
    /// files), made durable, then exchanged with the live directory atomically
    /// (`RENAME_EXCHANGE`), so a reader, an active pointer or a crash only ever sees the whole
    /// old version or the whole new one. The old version, now aside, is then deleted.
    pub fn replace_model(
        &self,
        kind: &TypeName,
        id: &ModelId,
        files: &[(RelPath, FileOrigin)],
    ) -> Result<(), PlaceError> {
        let live = self.model_dir(kind, id);
        let staged = self
            .tmp_dir()
            .join(format!("{STAGED}{kind}-{id}-{}", std::process::id()));
        ensure_dir(self.root(), &self.tmp_dir())?;
        if fs::symlink_metadata(&staged).is_ok() {
            remove_aside(&staged).map_err(err("remove", &staged))?;
        }
        fs::create_dir(&staged).map_err(err("create", &staged))?;
        let mut dirs = std::collections::BTreeSet::from([staged.clone()]);
        for (path, origin) in files {
            let source = match origin {
                FileOrigin::Blob(digest) => self.blob_path(digest),
                FileOrigin::Present => path.under(&live),
            };
            let target = path.under(&staged);
            let parent = target.parent().unwrap_or(&staged).to_path_buf();
            ensure_dir(self.root(), &parent)?;
            dirs.insert(parent);
            if fs::hard_link(&source, &target).is_err() {
                fs::copy(&source, &target).map_err(err("copy", &source))?;
                fs::File::open(&target)
                    .and_then(|f| f.sync_all())
                    .map_err(err("sync", &target))?;
            }
        }
        for dir in dirs.iter().rev() {
            durable::sync_dir(dir).map_err(err("sync", dir))?;
        }
        let type_dir = live.parent().unwrap_or(self.root()).to_path_buf();
        ensure_dir(self.root(), &type_dir)?;
        failpoint::hit("restage.before-swap");
        let old = match fs::symlink_metadata(&live) {
            Ok(meta) if meta.is_dir() => {
                exchange(&staged, &live).map_err(err("replace", &live))?;
                Some(staged)
            }
            Ok(_) => {
                fs::remove_file(&live).map_err(err("remove", &live))?;
                fs::rename(&staged, &live).map_err(err("place", &live))?;
                None
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::rename(&staged, &live).map_err(err("place", &live))?;
                None
            }
            Err(e) => return Err(err("inspect", &live)(e)),
        };
        durable::sync_dir(&type_dir).map_err(err("sync", &type_dir))?;
        durable::sync_dir(&self.tmp_dir()).map_err(err("sync", &self.tmp_dir()))?;
        failpoint::hit("restage.after-swap");
        match old {
            Some(old) => remove_aside(&old).map_err(err("remove", &old)),
            None => Ok(()),
        }
    }

    /// Records which Ollama model a model directory stands for (`ollama.json`, replaced
    /// atomically).
    pub fn write_ollama_descriptor(
        &self,
        kind: &TypeName,
        id: &ModelId,
        descriptor: &super::OllamaDescriptor,
    ) -> Result<(), PlaceError> {
        let dir = self.model_dir(kind, id);
        ensure_dir(self.root(), &dir)?;
        let path = dir.join(super::OLLAMA_DESCRIPTOR);
        let mut bytes = serde_json::to_vec_pretty(descriptor)
            .map_err(|e| err("encode", &path)(io::Error::other(e)))?;
        bytes.push(b'\n');
        durable::write_atomic(&path, &bytes).map_err(err("write", &path))
    }

    /// Removes one entry of a model directory (a file or a symlink, never its target).
    pub fn remove_model_entry(
        &self,
        kind: &TypeName,
        id: &ModelId,
        rel: &str,
    ) -> Result<(), PlaceError> {
        let model_dir = self.model_dir(kind, id);
        let path = rel.split('/').fold(model_dir.clone(), |p, c| p.join(c));
        if rel.split('/').any(|c| c == ".." || c.is_empty()) || !path.starts_with(&model_dir) {
            return Err(PlaceError {
                action: "remove",
                path,
                source: io::Error::other("the path leaves the model directory"),
            });
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path).map_err(err("remove", &path)),
            Ok(_) => fs::remove_file(&path).map_err(err("remove", &path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err("inspect", &path)(e)),
        }
    }

    /// Removes a model directory. The directory is first renamed aside (one atomic step, so a
    /// crash never leaves half a model under its real name), then deleted; blobs stay for `gc`.
    pub fn remove_model(&self, kind: &TypeName, id: &ModelId) -> Result<(), PlaceError> {
        let dir = self.model_dir(kind, id);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => {
                return fs::remove_file(&dir).map_err(err("remove", &dir));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err("inspect", &dir)(e)),
        }
        let trash = self
            .tmp_dir()
            .join(format!("{TRASH}{kind}-{id}-{}", std::process::id()));
        ensure_dir(self.root(), &self.tmp_dir())?;
        fs::rename(&dir, &trash).map_err(err("remove", &dir))?;
        let parent = dir.parent().unwrap_or(self.root()).to_path_buf();
        durable::sync_dir(&parent).map_err(err("sync", &parent))?;
        remove_aside(&trash).map_err(err("remove", &trash))
    }

    /// Removes what a killed apply left half done: model directories it had renamed aside to
    /// delete, and temporary siblings of pointers and state files it had not renamed yet.
    /// Call it holding the store lock, so none of them belongs to a running apply (C3, C4).
    /// Returns how many entries went.
    pub fn clear_interrupted(&self) -> Result<usize, PlaceError> {
        let trash =
            |name: &str, dir: bool| dir && (name.starts_with(TRASH) || name.starts_with(STAGED));
        let temp = |name: &str, dir: bool| !dir && durable::is_temp_sibling(name);
        Ok(remove_leftovers(&self.tmp_dir(), trash)?
            + remove_leftovers(&self.active_dir(), temp)?
            + remove_leftovers(&self.state_dir(), temp)?
            + remove_leftovers(self.root(), temp)?)
    }

    /// Points `active/<type>` at a model directory (atomic symlink replacement + fsync).
    pub fn point_active(&self, kind: &TypeName, id: &ModelId) -> Result<(), PlaceError> {
        let dir = self.active_dir();
        ensure_dir(self.root(), &dir)?;
        let link = self.active_link(kind);
        let target = Path::new("..")
            .join("models")
            .join(kind.as_str())
            .join(id.as_str());
        // The crash tests' activation swap (C3): only `active/` pointers reach it.
        durable::replace_symlink_with(&target, &link, || failpoint::hit("swap.before-rename"))
            .map_err(err("activate", &link))
    }

    /// Removes `active/<type>`.
    pub fn clear_active(&self, kind: &TypeName) -> Result<(), PlaceError> {
        let link = self.active_link(kind);
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.is_dir() => {
                fs::remove_dir_all(&link).map_err(err("deactivate", &link))?
            }
            Ok(_) => fs::remove_file(&link).map_err(err("deactivate", &link))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err("inspect", &link)(e)),
        }
        durable::sync_dir(&self.active_dir()).map_err(err("sync", &self.active_dir()))
    }
}

/// Removes the entries of `dir` that `leftover(name, is_dir)` picks; a missing `dir` has none.
fn remove_leftovers(
    dir: &Path,
    leftover: impl Fn(&str, bool) -> bool,
) -> Result<usize, PlaceError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|n| leftover(n, is_dir))
        {
            continue;
        }
        let path = entry.path();
        let result = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.map_err(err("remove", &path))?;
        removed += 1;
    }
    Ok(removed)
}

/// Swaps two directories in one atomic step. Where the filesystem cannot (`RENAME_EXCHANGE`
/// is refused, as on some network filesystems), the live one is renamed aside first: the only
/// moment without it is between two renames, and a crash there leaves both in `tmp/`.
fn exchange(staged: &Path, live: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, staged, CWD, live, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            let name = staged.file_name().unwrap_or_default().to_string_lossy();
            let aside = staged.with_file_name(format!("{name}.old"));
            fs::rename(live, &aside)?;
            fs::rename(staged, live)?;
            fs::rename(&aside, staged)
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes a model directory renamed aside, entry by entry (a subdirectory with
/// `remove_dir_all`, which never follows symlinks), then the directory itself.
fn remove_aside(dir: &Path) -> io::Result<()> {
    for (n, entry) in fs::read_dir(dir)?.enumerate() {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
        if n == 0 {
            failpoint::hit("delete.midway");
        }
    }
    fs::remove_dir(dir)
}

/// Blobs are read-only: a consumer opening a model file for writing cannot corrupt the store.
fn set_read_only(path: &Path) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_in_the_way_is_refused_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("outside");
        let store = Store::new(dir.path());
        fs::create_dir_all(store.models_dir()).expect("mkdir");
        std::os::unix::fs::symlink(outside.path(), store.models_dir().join("llm"))
            .expect("symlink");
        let kind = TypeName::parse("llm").expect("t");
        let id = ModelId::parse("m").expect("id");
        let err = ensure_dir(store.root(), &store.model_dir(&kind, &id)).expect_err("refused");
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(
            fs::read_dir(outside.path()).expect("ls").count(),
            0,
            "nothing written outside"
        );
    }

    #[test]
    fn publish_link_activate_and_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().join("store"));
        store.check_writable().expect("writable");
        let temp = store.tmp_dir().join("x.part");
        fs::write(&temp, b"bytes").expect("write");
        let digest = Sha256::of(b"bytes");
        let blob = store.publish_blob(&temp, &digest).expect("publish");
        assert_eq!(fs::read(&blob).expect("read"), b"bytes");
        assert!(fs::metadata(&blob).expect("meta").permissions().readonly());
        let kind = TypeName::parse("tts").expect("t");
        let id = ModelId::parse("voice").expect("id");
        let path = RelPath::parse("sub/voice.pth").expect("p");
        store.link_file(&kind, &id, &path, &digest).expect("link");
        store
            .link_file(&kind, &id, &path, &digest)
            .expect("relink is idempotent");
        assert_eq!(
            fs::read(path.under(&store.model_dir(&kind, &id))).expect("read"),
            b"bytes"
        );
        store.point_active(&kind, &id).expect("activate");
        assert_eq!(
            fs::read_link(store.active_link(&kind)).expect("link"),
            Path::new("../models/tts/voice")
        );
        store.clear_active(&kind).expect("deactivate");
        store.remove_model(&kind, &id).expect("remove");
        assert!(!store.model_dir(&kind, &id).exists());
        assert!(blob.exists(), "blobs wait for gc");
    }
}
