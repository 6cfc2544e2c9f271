//! Reading an uncompressed tar layer of an `oci:` source: every entry is checked against the
//! rules of docs/reliability.md S6 before its bytes go anywhere, and each regular file is
//! handed, with its checked path (relative to the model's root) and size, to the caller's
//! reader. [`list`] hashes the files of a layer as `lock` streams it ([`super::listing`]);
//! [`extract`] copies the files of a downloaded, verified layer into staging for `apply`,
//! under names of its own. No entry's name reaches the filesystem: the `tar` crate parses
//! (PAX and GNU long names included) and this module never calls `unpack`.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::Sha256;
use crate::names::{PathSet, RelPath};

/// Most entries (files, directories and skipped headers) read from one layer.
pub const MAX_TAR_ENTRIES: usize = 100_000;

/// One regular file of a tar layer: where it goes in the model, its size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarFile {
    pub path: RelPath,
    pub size: u64,
    pub sha256: Sha256,
}

/// Why a tar layer is refused.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TarError {
    #[error("entry {index} (`{entry}`) of tar layer sha256:{layer} is refused: {why}")]
    #[diagnostic(
        code(modelctl::oci::tar_entry),
        help(
            "modelctl extracts only regular files and directories with safe, distinct relative names; repack the layer (or push each file as its own raw layer) and push the artifact again"
        )
    )]
    Entry {
        layer: String,
        index: usize,
        entry: String,
        why: String,
    },
    #[error("tar layer sha256:{layer} cannot be read: {why}")]
    #[diagnostic(
        code(modelctl::oci::tar_read),
        help(
            "the layer is not a well-formed uncompressed tar archive; push it again, or push each file as its own raw layer"
        )
    )]
    Read { layer: String, why: String },
}

/// The names a layer's files take, checked as they come: S6's rules within the layer, and
/// collisions with the files the model's other layers already hold (`paths`).
struct Names<'a> {
    paths: &'a mut PathSet,
    files: HashSet<String>,
    dirs: HashSet<String>,
}

impl Names<'_> {
    /// Adds a file's path, or says why it cannot be one.
    fn add_file(&mut self, path: &RelPath) -> Result<(), String> {
        let text = path.as_str();
        if self.files.contains(text) {
            return Err("another entry is already this file".to_owned());
        }
        if self.dirs.contains(text) {
            return Err("another entry makes it a directory".to_owned());
        }
        for (i, _) in text.match_indices('/') {
            if self.files.contains(&text[..i]) {
                return Err(format!(
                    "`{}` is already a file, not a directory",
                    &text[..i]
                ));
            }
        }
        self.paths
            .insert(path)
            .map_err(|c| format!("it collides with another file: {c}"))?;
        for (i, _) in text.match_indices('/') {
            self.dirs.insert(text[..i].to_owned());
        }
        self.files.insert(text.to_owned());
        Ok(())
    }

    /// Adds a directory's path (it must not already be a file).
    fn add_dir(&mut self, path: &RelPath) -> Result<(), String> {
        let text = path.as_str();
        let mut prefix = text
            .match_indices('/')
            .map(|(i, _)| &text[..i])
            .collect::<Vec<_>>();
        prefix.push(text);
        if let Some(file) = prefix.iter().find(|p| self.files.contains(**p)) {
            return Err(format!("`{file}` is already a file, not a directory"));
        }
        for p in prefix {
            self.dirs.insert(p.to_owned());
        }
        Ok(())
    }
}

/// Walks the entries of the tar `reader` (the bytes of layer `layer`, `layer_size` long,
/// already checked against its digest), checking each before anything is read from it, and
/// calls `each` with every regular file's path, size and a reader of exactly its bytes. `paths` holds the model's other files, so a name colliding with them
/// is refused too; on success it holds this layer's files as well.
pub fn walk<R: Read>(
    reader: R,
    layer: &Sha256,
    layer_size: u64,
    paths: &mut PathSet,
    mut each: impl FnMut(&RelPath, u64, &mut dyn Read) -> Result<(), String>,
) -> Result<(), TarError> {
    let read_error = |why: String| TarError::Read {
        layer: layer.hex(),
        why,
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| read_error(format!("its first header: {e}")))?;
    let mut names = Names {
        paths,
        files: HashSet::new(),
        dirs: HashSet::new(),
    };
    let mut total: u64 = 0;
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| read_error(format!("entry {index}: {e}")))?;
        let shown = String::from_utf8_lossy(&entry.path_bytes())
            .escape_debug()
            .to_string();
        let refuse = |why: String| TarError::Entry {
            layer: layer.hex(),
            index,
            entry: shown.clone(),
            why,
        };
        if index >= MAX_TAR_ENTRIES {
            return Err(refuse(format!(
                "the layer has more than {MAX_TAR_ENTRIES} entries"
            )));
        }
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let size = entry.size();
        total = total.saturating_add(size);
        if total > layer_size {
            return Err(refuse(format!(
                "the sizes of its entries add up to more than the layer's {layer_size} bytes"
            )));
        }
        let Some(path) = entry_path(&entry.path_bytes()).map_err(&refuse)? else {
            continue;
        };
        if kind.is_dir() {
            names.add_dir(&path).map_err(&refuse)?;
            continue;
        }
        if !kind.is_file() {
            return Err(refuse(format!(
                "it is {}; only regular files and directories are extracted",
                kind_name(kind)
            )));
        }
        names.add_file(&path).map_err(&refuse)?;
        let mut bounded = (&mut entry).take(size);
        each(&path, size, &mut bounded).map_err(&refuse)?;
        if bounded.limit() != 0 {
            return Err(refuse("its bytes were not all read".to_owned()));
        }
    }
    Ok(())
}

/// Lists the regular files of a tar layer (see [`walk`]), hashing each as it is read, sorted
/// by path.
pub fn list<R: Read>(
    reader: R,
    layer: &Sha256,
    layer_size: u64,
    paths: &mut PathSet,
) -> Result<Vec<TarFile>, TarError> {
    let mut files = Vec::new();
    walk(reader, layer, layer_size, paths, |path, size, bytes| {
        let seen = crate::digest::ContentHasher::new(crate::digest::Extra::default())
            .read_all(bytes)
            .map_err(|e| format!("reading it: {e}"))?;
        if seen.bytes != size {
            return Err(format!("it ends after {} of its {size} bytes", seen.bytes));
        }
        files.push(TarFile {
            path: path.clone(),
            size,
            sha256: seen.sha256,
        });
        Ok(())
    })?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// What the lock says one file of a tar layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    pub sha256: Sha256,
}

/// Copies the regular files of a tar layer (see [`walk`]) into the directory `staging`, each
/// under a name of its own (`<prefix><index>`, never the entry's path),
/// and checks each against `expected` (the lock): a file the lock does not list, or of
/// another size, is refused before a byte of it is written; one whose bytes do not hash to
/// the locked sha256 is removed and refused; a locked file the layer lacks is refused at the
/// end. Returns each file's path and its staged copy, sorted by path. On error, the staged
/// copies made so far are removed.
pub fn extract<R: Read>(
    reader: R,
    layer: &Sha256,
    layer_size: u64,
    expected: &BTreeMap<RelPath, Expected>,
    staging: &Path,
    prefix: &str,
) -> Result<Vec<(RelPath, PathBuf)>, TarError> {
    let mut staged: Vec<(RelPath, PathBuf)> = Vec::new();
    let mut index = 0usize;
    let result = walk(
        reader,
        layer,
        layer_size,
        &mut PathSet::default(),
        |path, size, bytes| {
            let want = expected
                .get(path)
                .ok_or_else(|| "models.lock does not list this file".to_owned())?;
            if want.size != size {
                return Err(format!(
                    "it is {size} bytes; models.lock says {}",
                    want.size
                ));
            }
            let target = staging.join(format!("{prefix}{index}"));
            index += 1;
            let seen = copy_hashed(bytes, &target).inspect_err(|_| {
                let _ = std::fs::remove_file(&target);
            })?;
            if seen != want.sha256 {
                let _ = std::fs::remove_file(&target);
                return Err(format!(
                    "its bytes hash to sha256:{}, not the sha256:{} models.lock has",
                    seen.hex(),
                    want.sha256.hex()
                ));
            }
            staged.push((path.clone(), target));
            Ok(())
        },
    );
    let missing = expected
        .keys()
        .find(|p| !staged.iter().any(|(s, _)| s == *p));
    let result = match (result, missing) {
        (Ok(()), Some(path)) => Err(TarError::Read {
            layer: layer.hex(),
            why: format!("it has no file `{path}`, which models.lock lists"),
        }),
        (other, _) => other,
    };
    if let Err(e) = result {
        for (_, copy) in &staged {
            let _ = std::fs::remove_file(copy);
        }
        return Err(e);
    }
    staged.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(staged)
}

/// Writes `bytes` to a new file `target` (fsynced), returning their sha256.
fn copy_hashed(bytes: &mut dyn Read, target: &Path) -> Result<Sha256, String> {
    let shown = target.display();
    let mut file =
        std::fs::File::create_new(target).map_err(|e| format!("cannot create {shown}: {e}"))?;
    let mut hasher = crate::digest::ContentHasher::new(crate::digest::Extra::default());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = bytes
            .read(&mut buf)
            .map_err(|e| format!("reading it: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("cannot write {shown}: {e}"))?;
    }
    file.sync_all()
        .map_err(|e| format!("cannot sync {shown}: {e}"))?;
    Ok(hasher.finish().sha256)
}

/// The model path of an entry: `./` prefixes and a directory's trailing `/` dropped, then
/// every rule of [`RelPath`] (no `..`, not absolute); `None` for the archive's root (`./`).
fn entry_path(bytes: &[u8]) -> Result<Option<RelPath>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "its name is not UTF-8".to_owned())?;
    if text.starts_with('/') {
        return Err("its name is an absolute path".to_owned());
    }
    let mut rest = text;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest == "." {
        return Ok(None);
    }
    RelPath::parse(rest)
        .map(Some)
        .map_err(|e| format!("its name is not a safe relative path: {e}"))
}

fn kind_name(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "a symbolic link".to_owned(),
        tar::EntryType::Link => "a hard link".to_owned(),
        tar::EntryType::Char => "a character device".to_owned(),
        tar::EntryType::Block => "a block device".to_owned(),
        tar::EntryType::Fifo => "a fifo".to_owned(),
        other => format!("an entry of type `{}`", other.as_byte().escape_ascii()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tar header block for `name`, of `kind` and claimed `size`, with a valid checksum.
    fn header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    /// A tar of `(name, kind, bytes)` entries, names written raw (hostile ones included).
    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, bytes) in entries {
            let h = header(name.as_bytes(), *kind, bytes.len() as u64);
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(bytes);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn listed(bytes: &[u8]) -> Result<Vec<TarFile>, TarError> {
        list(
            bytes,
            &Sha256::of(bytes),
            bytes.len() as u64,
            &mut PathSet::default(),
        )
    }

    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};

    fn expected_of(files: &[TarFile]) -> BTreeMap<RelPath, Expected> {
        files
            .iter()
            .map(|f| {
                let e = Expected {
                    size: f.size,
                    sha256: f.sha256,
                };
                (f.path.clone(), e)
            })
            .collect()
    }

    fn extracted(
        bytes: &[u8],
        expected: &BTreeMap<RelPath, Expected>,
        staging: &Path,
    ) -> Result<Vec<(RelPath, PathBuf)>, TarError> {
        let digest = Sha256::of(bytes);
        extract(
            bytes,
            &digest,
            bytes.len() as u64,
            expected,
            staging,
            "tar-",
        )
    }

    fn staged_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("staging")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn extraction_copies_each_locked_file_byte_exact() {
        let bytes = tar_of(&[
            ("unet/w.bin", Regular, b"weights"),
            ("config.json", Regular, b"{}"),
        ]);
        let expected = expected_of(&listed(&bytes).expect("listed"));
        let staging = tempfile::tempdir().expect("tempdir");
        let staged = extracted(&bytes, &expected, staging.path()).expect("extracted");
        assert_eq!(staged.len(), 2);
        assert_eq!(staged[0].0.as_str(), "config.json");
        assert_eq!(std::fs::read(&staged[0].1).expect("read"), b"{}");
        assert_eq!(std::fs::read(&staged[1].1).expect("read"), b"weights");
        assert_eq!(staged_names(staging.path()), ["tar-0", "tar-1"]);
    }

    #[test]
    fn extraction_refuses_what_the_lock_does_not_say_and_leaves_nothing() {
        let bytes = tar_of(&[("a.bin", Regular, b"aaaa"), ("b.bin", Regular, b"bbbb")]);
        let good = expected_of(&listed(&bytes).expect("listed"));
        let a = RelPath::parse("a.bin").expect("path");
        let b = RelPath::parse("b.bin").expect("path");
        let mut wrong_hash = good.clone();
        if let Some(e) = wrong_hash.get_mut(&b) {
            e.sha256 = Sha256::of(b"other");
        }
        let mut wrong_size = good.clone();
        if let Some(e) = wrong_size.get_mut(&b) {
            e.size = 5;
        }
        let mut unlisted = good.clone();
        unlisted.remove(&b);
        let mut missing = good.clone();
        missing.insert(
            RelPath::parse("c.bin").expect("path"),
            Expected {
                size: 1,
                sha256: Sha256::of(b"c"),
            },
        );
        for (expected, why) in [
            (wrong_hash, "hash to"),
            (wrong_size, "models.lock says 5"),
            (unlisted, "does not list"),
            (missing, "no file `c.bin`"),
        ] {
            let staging = tempfile::tempdir().expect("tempdir");
            let err = extracted(&bytes, &expected, staging.path())
                .expect_err(why)
                .to_string();
            assert!(err.contains(why), "{why}: {err}");
            assert!(staged_names(staging.path()).is_empty(), "{why}");
        }
        assert!(good.contains_key(&a));
    }

    #[test]
    fn regular_files_are_listed_with_their_sizes_and_sha256() {
        let bytes = tar_of(&[
            ("./", Directory, b""),
            ("./unet/", Directory, b""),
            ("./unet/w.bin", Regular, b"weights"),
            ("config.json", Regular, b"{}"),
        ]);
        let files = listed(&bytes).expect("listed");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["config.json", "unet/w.bin"]);
        assert_eq!(files[1].size, 7);
        assert_eq!(files[1].sha256, Sha256::of(b"weights"));
    }

    #[test]
    fn long_names_from_the_crate_s_builder_are_read() {
        let long = format!("{}/w.bin", "d".repeat(150));
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        builder
            .append_data(&mut h, &long, &b"abc"[..])
            .expect("append");
        let bytes = builder.into_inner().expect("tar");
        let files = listed(&bytes).expect("listed");
        assert_eq!(files[0].path.as_str(), long);
    }

    #[test]
    fn hostile_entries_are_refused_with_the_layer_and_entry_named() {
        for (entries, why) in [
            (vec![("../x", Regular, &b"x"[..])], "safe relative path"),
            (vec![("a/../../x", Regular, b"x")], "safe relative path"),
            (vec![("/etc/x", Regular, b"x")], "absolute"),
            (vec![("link", Symlink, b"")], "symbolic link"),
            (vec![("hard", Link, b"")], "hard link"),
            (vec![("tty", Char, b"")], "character device"),
            (vec![("disk", Block, b"")], "block device"),
            (vec![("pipe", Fifo, b"")], "fifo"),
            (
                vec![("w.bin", Regular, b"a"), ("./w.bin", Regular, b"b")],
                "already this file",
            ),
            (
                vec![("W.bin", Regular, b"a"), ("w.bin", Regular, b"b")],
                "differ only in case",
            ),
            (
                vec![("a", Regular, b"a"), ("a/b", Regular, b"b")],
                "already a file",
            ),
            (
                vec![("a/b", Regular, b"a"), ("a", Regular, b"b")],
                "a directory",
            ),
        ] {
            let bytes = tar_of(&entries);
            let err = listed(&bytes).expect_err(why);
            let text = err.to_string();
            assert!(text.contains(why), "{why}: {text}");
            assert!(text.contains(&Sha256::of(&bytes).hex()), "{text}");
            assert!(text.contains("entry "), "{text}");
        }
    }

    #[test]
    fn entries_claiming_more_than_the_layer_are_refused_before_reading() {
        let mut bytes = header(b"big.bin", Regular, 1 << 40).as_bytes().to_vec();
        bytes.resize(4096, 0);
        let err = listed(&bytes).expect_err("too big").to_string();
        assert!(err.contains("add up to more than"), "{err}");
    }

    #[test]
    fn names_colliding_with_other_layers_are_refused() {
        let bytes = tar_of(&[("Model.bin", Regular, b"a")]);
        let mut paths = PathSet::default();
        paths
            .insert(&RelPath::parse("model.bin").expect("path"))
            .expect("insert");
        let err = list(
            &bytes[..],
            &Sha256::of(&bytes),
            bytes.len() as u64,
            &mut paths,
        )
        .expect_err("collides")
        .to_string();
        assert!(err.contains("collides"), "{err}");
    }

    #[test]
    fn too_many_entries_are_refused() {
        let dirs: Vec<String> = (0..=MAX_TAR_ENTRIES).map(|i| format!("d{i}/")).collect();
        let entries: Vec<(&str, tar::EntryType, &[u8])> = dirs
            .iter()
            .map(|d| (d.as_str(), Directory, &b""[..]))
            .collect();
        let bytes = tar_of(&entries);
        let err = listed(&bytes).expect_err("many").to_string();
        assert!(err.contains("more than"), "{err}");
    }
}
