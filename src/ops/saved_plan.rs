//! What a saved plan is checked against: the bytes of models.yaml and models.lock as they were
//! when `plan --out` wrote it, which `apply PLANFILE` compares with the files as they are now.

use crate::digest::Sha256;

/// The sha256 of a file's bytes; a missing file hashes as empty.
pub(crate) fn digest_of_file(path: &std::path::Path) -> Sha256 {
    Sha256::of(&std::fs::read(path).unwrap_or_default())
}
