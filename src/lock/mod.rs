//! `models.lock`: the exact content every model was resolved to.
//!
//! The lock is generated, canonical text: the same facts always render to the same bytes
//! (models sorted by id, files by path, keys in a fixed order, every string quoted, one
//! trailing newline), it is written atomically, and it is not rewritten when unchanged. Each
//! entry carries a fingerprint of the manifest entry it was resolved from, so a changed entry
//! is re-resolved while the others stay pinned. A lock from a newer format is refused before
//! anything else is read from it.

mod model;
mod read;
mod render;

use std::path::{Path, PathBuf};

pub use crate::text_diff::diff_text;
pub use model::*;
pub use read::{LockError, load, parse_str};
pub use render::{diff_entries, render};

/// Writes the lock if its canonical text differs from what is on disk; returns whether it wrote.
pub fn write(path: &Path, lock: &Lockfile) -> Result<bool, WriteError> {
    crate::durable::write_if_changed(path, render(lock).as_bytes()).map_err(|source| WriteError {
        path: path.to_owned(),
        source,
    })
}

/// The lock could not be written.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot write `{}`: {source}", path.display())]
#[diagnostic(
    code(lock::write),
    help("check that the directory of models.yaml is writable")
)]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}
