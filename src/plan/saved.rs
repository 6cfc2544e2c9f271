//! A plan saved by `plan --out FILE`, and the check that it still applies.
//!
//! The file records digests of the manifest, the lock and the scanned store the plan was
//! computed from; `apply FILE` recomputes them and refuses when any differs, so what is applied
//! is exactly what was reviewed. The lock the plan would write travels with it as text.

use serde::{Deserialize, Serialize};

use super::{PLAN_FORMAT, Plan};
use crate::digest::Sha256;

/// The document `plan --out FILE` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: u32,
    pub modelctl: String,
    pub manifest: String,
    pub manifest_sha256: Sha256,
    pub lock_sha256: Sha256,
    pub store_state: Sha256,
    /// The canonical text of the lock `apply` writes.
    pub next_lock: String,
    pub plan: Plan,
}

impl SavedPlan {
    /// Why the saved plan no longer applies, if it does not.
    pub fn staleness(
        &self,
        manifest_sha256: &Sha256,
        lock_sha256: &Sha256,
        store_state: &Sha256,
    ) -> Option<String> {
        if self.format != PLAN_FORMAT || self.modelctl != env!("CARGO_PKG_VERSION") {
            return Some(format!(
                "it was made by modelctl {} (plan format {}), this is {} (format {PLAN_FORMAT})",
                self.modelctl,
                self.format,
                env!("CARGO_PKG_VERSION")
            ));
        }
        if &self.manifest_sha256 != manifest_sha256 {
            return Some("models.yaml changed since it was made".to_owned());
        }
        if &self.lock_sha256 != lock_sha256 {
            return Some("models.lock changed since it was made".to_owned());
        }
        if &self.store_state != store_state {
            return Some("the store changed since it was made".to_owned());
        }
        None
    }
}
