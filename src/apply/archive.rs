//! Files of `oci:` models that come out of a tar layer. When no mirror served such a file (a
//! mirror `push` filled has it as a blob of its own), its layer is downloaded through the one
//! engine (ranged, resumable, verified against the layer's digest in the lock), once per apply
//! however many of its files are wanted, and [`tar::extract`] copies every file it holds into
//! staging, checking each entry before its bytes are read and each file against its size and
//! sha256 in the lock. The caller publishes the copy as a blob like any verified download.
//! The copies are files of the store's temporary directory (`extract-<layer>-<n>`), so a
//! killed apply leaves nothing `gc` does not see; the layer itself is deleted once read, and
//! copies no file took are removed when the apply ends.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use super::LockIndex;
use super::fetch::{Engine, ExpectedBy, FetchError, FileJob};
use super::progress::{FileLabel, Reporter};
use crate::digest::Sha256;
use crate::lock::LockedSource;
use crate::names::{ModelId, RelPath};
use crate::sources::oci::tar::{self, Expected};
use crate::sources::oci::{OciBlob, Pulls};

/// The tar layers an apply may read, by digest.
#[derive(Default)]
pub struct Archives {
    layers: HashMap<Sha256, Layer>,
}

/// One tar layer: how to download it, what it must hold, and (once read) its staged files.
struct Layer {
    digest: Sha256,
    job: FileJob,
    blob: OciBlob,
    expected: BTreeMap<RelPath, Expected>,
    label: FileLabel,
    /// The store's temporary directory, where the copies are made.
    staging: PathBuf,
    staged: tokio::sync::OnceCell<Result<Staged, Failure>>,
}

/// The staged copies of a layer's files not yet taken, by sha256.
type Staged = Mutex<HashMap<Sha256, PathBuf>>;

/// Why a layer gave no files (kept for every file of it that asks).
#[derive(Clone)]
enum Failure {
    Cancelled,
    Failed(String),
}

impl Archives {
    /// Adds the layer `blob` names (at `url`), which a file of `model` comes out of, once: what it
    /// holds is read from the model's lock entry. A layer the lock does not record is left
    /// out, and its files fail when they ask for it.
    pub fn add(
        &mut self,
        lock: &LockIndex<'_>,
        model: &ModelId,
        blob: &OciBlob,
        url: &url::Url,
        tmp: &std::path::Path,
    ) {
        let Some(archive) = blob.archive else {
            return;
        };
        if self.layers.contains_key(&archive.digest) {
            return;
        }
        let Some(LockedSource::Oci { archives, .. }) = lock.model(model).map(|m| &m.source) else {
            return;
        };
        let Some(locked) = archives.iter().find(|a| a.digest == archive.digest) else {
            return;
        };
        let expected = locked
            .files
            .iter()
            .filter_map(|path| {
                let file = lock.file(model, path)?;
                let sha256 = file.sha256?;
                Some((
                    path.clone(),
                    Expected {
                        size: file.size,
                        sha256,
                    },
                ))
            })
            .collect();
        let job = FileJob {
            url: url.clone(),
            size: archive.size,
            sha256: Some(archive.digest),
            md5: None,
            git_oid: None,
            expected_by: ExpectedBy::Lock,
            etag: None,
            token: None,
            authorization: None,
            explain: None,
        };
        let label = FileLabel {
            model: model.to_string(),
            path: format!("sha256:{} (tar layer)", archive.digest.short()),
            size: archive.size,
        };
        self.layers.insert(
            archive.digest,
            Layer {
                digest: archive.digest,
                job,
                blob: blob.clone(),
                expected,
                label,
                staging: tmp.to_path_buf(),
                staged: tokio::sync::OnceCell::new(),
            },
        );
    }

    /// The staged copy of the file `sha256` of tar layer `layer`, verified against the lock:
    /// the first file to ask downloads and extracts the layer, the others wait for it. The
    /// caller publishes the copy (renames it away).
    pub async fn take(
        &self,
        engine: &Engine,
        pulls: &Pulls,
        reporter: &dyn Reporter,
        layer: &Sha256,
        sha256: &Sha256,
    ) -> Result<PathBuf, FetchError> {
        let Some(found) = self.layers.get(layer) else {
            return Err(FetchError::Http(format!(
                "models.lock does not record tar layer sha256:{}; run `modelctl lock` to pin the model again",
                layer.short()
            )));
        };
        let staged = found
            .staged
            .get_or_init(|| found.read(engine, pulls, reporter))
            .await;
        let staged = match staged {
            Ok(staged) => staged,
            Err(Failure::Cancelled) => return Err(FetchError::Cancelled),
            Err(Failure::Failed(why)) => return Err(FetchError::Http(why.clone())),
        };
        let taken = staged.lock().ok().and_then(|mut s| s.remove(sha256));
        taken.ok_or_else(|| {
            FetchError::Http(format!(
                "tar layer sha256:{} holds no file sha256:{} for it",
                layer.short(),
                sha256.short()
            ))
        })
    }
}

impl Layer {
    /// Downloads the layer and extracts its files into staging.
    async fn read(
        &self,
        engine: &Engine,
        pulls: &Pulls,
        reporter: &dyn Reporter,
    ) -> Result<Staged, Failure> {
        let digest = self.digest;
        let authorization = pulls
            .authorization(&self.blob, &digest)
            .await
            .map_err(Failure::Failed)?;
        let job = FileJob {
            authorization,
            ..self.job.clone()
        };
        let started = Instant::now();
        let progress = reporter.start(&self.label);
        let downloaded = match engine.fetch(&job, progress).await {
            Ok(downloaded) => downloaded,
            Err(FetchError::Cancelled) => return Err(Failure::Cancelled),
            Err(e) => return Err(Failure::Failed(format!("its tar layer: {e}"))),
        };
        reporter.done(&self.label, &digest.hex(), started.elapsed());
        let data = downloaded.data.clone();
        let (staging, expected, size) = (self.staging.clone(), self.expected.clone(), job.size);
        let prefix = self.prefix();
        let extracted = tokio::task::spawn_blocking(move || {
            remove_copies(&staging, &prefix);
            let file = std::fs::File::open(&data)
                .map_err(|e| format!("cannot open {}: {e}", data.display()))?;
            let reader = std::io::BufReader::with_capacity(1 << 20, file);
            tar::extract(reader, &digest, size, &expected, &staging, &prefix).map_err(|e| {
                let help = miette::Diagnostic::help(&e).map(|h| format!("; {h}"));
                format!("{e}{}", help.unwrap_or_default())
            })
        })
        .await
        .map_err(|e| Failure::Failed(format!("its extraction stopped: {e}")))?;
        let _ = std::fs::remove_file(&downloaded.data);
        downloaded.published();
        let mut staged = HashMap::new();
        for (path, copy) in extracted.map_err(Failure::Failed)? {
            let Some(want) = self.expected.get(&path) else {
                continue;
            };
            if let Some(twin) = staged.insert(want.sha256, copy) {
                // Two files with the same bytes are one blob.
                let _ = std::fs::remove_file(twin);
            }
        }
        Ok(Mutex::new(staged))
    }

    /// The names of this layer's copies start with it.
    fn prefix(&self) -> String {
        format!("extract-{}-", self.digest.hex())
    }
}

/// Removes the copies a killed apply left of a layer (the names `prefix` starts).
fn remove_copies(dir: &std::path::Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for Archives {
    /// Removes the copies no file took.
    fn drop(&mut self) {
        for layer in self.layers.values() {
            if let Some(Ok(staged)) = layer.staged.get() {
                let left = staged
                    .lock()
                    .map(|s| s.values().cloned().collect::<Vec<_>>());
                for copy in left.unwrap_or_default() {
                    let _ = std::fs::remove_file(copy);
                }
            }
        }
    }
}
