//! Writing the Hugging Face cache (`hf_cache: true`): each `hf` model laid out the way
//! `huggingface_hub` reads it (docs/protocols.md §1.5), with hardlinks to the store's verified
//! blobs, one copy on disk, so that `from_pretrained(repo, revision=…)` works with
//! `HF_HUB_OFFLINE=1`:
//!
//! ```text
//! models--org--name/
//!   blobs/<etag>                      the bytes; etag = sha256 (LFS) or git blob id (regular)
//!   snapshots/<commit>/<path>         relative symlink to ../../blobs/<etag>
//!   refs/<revision>                   the commit, when the revision is a branch or tag
//! ```
//!
//! A blob the cache already holds under the right name is kept only when it is the store's
//! own inode, or (on another filesystem) when its bytes hash right; anything else (a blob
//! `huggingface_hub` left damaged) is replaced atomically by the verified bytes. Every name
//! written is a validated [`RelPath`] or hex digest; every write is link-then-rename, made
//! durable like the store's ([`crate::durable`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Expected;
use crate::lock::LockedFile;
use crate::names::RelPath;
use crate::sources::hf::Repo;
use crate::sources::hf::cache::{HfCache, same_inode};

/// What [`share`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shared {
    /// Blobs linked to the store's (no extra space).
    pub linked: usize,
    /// Blobs copied because the cache is on another filesystem.
    pub copied: usize,
}

/// Lays the model out in the cache. `blob_of` gives the store's blob for each file.
pub fn share(
    cache: &HfCache,
    repo: &Repo,
    revision: &str,
    commit: &str,
    files: &[LockedFile],
    blob_of: &dyn Fn(&LockedFile) -> Option<PathBuf>,
) -> io::Result<Shared> {
    crate::digest::GitOid::parse(commit).map_err(io::Error::other)?;
    let dir = cache.repo_dir(repo);
    let blobs = dir.join("blobs");
    let snapshot = dir.join("snapshots").join(commit);
    fs::create_dir_all(&blobs)?;
    let mut shared = Shared::default();
    for file in files {
        let (Some(etag), Some(source)) = (HfCache::etag(file), blob_of(file)) else {
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
        if fs::read_link(&entry).ok().as_deref() != Some(Path::new(&target)) {
            crate::durable::replace_symlink(Path::new(&target), &entry)?;
        }
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

enum Placed {
    Linked,
    Copied,
    Present,
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
    Ok(
        match crate::durable::install(source, blob, crate::durable::Keep::Link)? {
            crate::durable::Installed::InPlace => Placed::Linked,
            crate::durable::Installed::Copied => Placed::Copied,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{GitOid, Sha256};
    use crate::manifest::RepoType;
    use crate::names::RelPath;
    use std::path::PathBuf;

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
        let done = share(&cache, &repo(), "main", COMMIT, &files, &blob_of).expect("shared");
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

        let again = share(&cache, &repo(), "main", COMMIT, &files, &blob_of).expect("again");
        assert_eq!(again, Shared::default(), "sharing twice changes nothing");
    }
}
