//! Reading `models.lock`: refuse a newer format first, then parse strictly. A hand-edited
//! lock is held to the rules a resolved one follows: no file listed twice, and no two paths of
//! one model that differ only in case or Unicode normalization.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::model::{LOCK_VERSION, LockedModel, Lockfile};
use crate::names::{ModelId, collision};

/// Largest lock read, in bytes.
const MAX_LOCK_BYTES: u64 = 64 * 1024 * 1024;

/// Why the lock could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    #[error("cannot read `{}`: {source}", path.display())]
    #[diagnostic(code(lock::read))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "`{}` was written by a newer modelctl (lock format {found}; this build reads format {LOCK_VERSION})",
        path.display()
    )]
    #[diagnostic(
        code(lock::newer_version),
        help(
            "upgrade modelctl, or regenerate the lock with this version by deleting it and running `modelctl lock`"
        )
    )]
    NewerVersion { path: PathBuf, found: u32 },
    #[error("`{}` is not a valid lock file: {message}", path.display())]
    #[diagnostic(
        code(lock::invalid),
        help(
            "the lock is generated; restore it from version control, or delete it and run `modelctl lock`"
        )
    )]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
struct VersionProbe {
    version: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockText {
    version: u32,
    #[serde(default)]
    models: BTreeMap<ModelId, LockedModel>,
}

/// Reads the lock at `path`; a missing file is an empty lock.
pub fn load(path: &Path) -> Result<Lockfile, LockError> {
    let text = match std::fs::read(path) {
        Ok(bytes) if bytes.len() as u64 > MAX_LOCK_BYTES => {
            return Err(LockError::Invalid {
                path: path.to_owned(),
                message: format!("it is larger than {MAX_LOCK_BYTES} bytes"),
            });
        }
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| LockError::Invalid {
            path: path.to_owned(),
            message: "it is not UTF-8 text".to_owned(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lockfile::default()),
        Err(source) => {
            return Err(LockError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse_str(&text, path)
}

/// Parses lock text; `path` is used in messages only.
pub fn parse_str(text: &str, path: &Path) -> Result<Lockfile, LockError> {
    let invalid = |e: serde_saphyr::Error| {
        let at = e
            .location()
            .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
            .unwrap_or_default();
        LockError::Invalid {
            path: path.to_owned(),
            message: format!("{}{at}", e.to_string().lines().next().unwrap_or("")),
        }
    };
    let probe: VersionProbe = serde_saphyr::from_str(text).map_err(invalid)?;
    match probe.version {
        Some(v) if v > LOCK_VERSION => {
            return Err(LockError::NewerVersion {
                path: path.to_owned(),
                found: v,
            });
        }
        Some(v) if v == LOCK_VERSION => {}
        other => {
            return Err(LockError::Invalid {
                path: path.to_owned(),
                message: match other {
                    Some(v) => format!("lock format {v} is not known"),
                    None => "it has no `version`".to_owned(),
                },
            });
        }
    }
    let lock: LockText = serde_saphyr::from_str(text).map_err(invalid)?;
    for (id, model) in &lock.models {
        let mut paths: Vec<&str> = model.files.iter().map(|f| f.path.as_str()).collect();
        paths.sort_unstable();
        if let Some(w) = paths.windows(2).find(|w| w[0] == w[1]) {
            return Err(LockError::Invalid {
                path: path.to_owned(),
                message: format!("model `{id}` lists file `{}` twice", w[0]),
            });
        }
        if let Some(collision) = collision(model.files.iter().map(|f| &f.path)) {
            return Err(LockError::Invalid {
                path: path.to_owned(),
                message: format!(
                    "model `{id}` lists two paths that macOS and Windows take for one: {collision}"
                ),
            });
        }
    }
    debug_assert_eq!(lock.version, LOCK_VERSION);
    Ok(Lockfile {
        models: lock.models,
    })
}
