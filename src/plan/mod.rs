//! The plan: what `apply` would do to make the store match the manifest and the lock.
//!
//! [`plan`] is a pure function of its inputs (manifest, lock, fresh resolutions, scanned store,
//! system facts): it reads no file, clock, network or environment, so the same inputs always
//! give the same plan, and tests describe any situation as data. The result is one list of
//! actions in a fixed order (blob repairs, then each model's files, then pointer swaps, then
//! deletions, so an old model is never removed before its replacement is active), where each
//! model stands, the lock `apply` would write, and the totals and disk check that decide
//! whether it can run at all. A model's actions and the pointer changes are views of that one
//! list ([`Plan::model_actions`], [`Plan::activations`]), and [`Plan::retain`] is the one way
//! to cut a plan down. `render` prints it the way terraform does; its `Serialize` form
//! (`document.rs`) is the stable `--json` document.

mod document;
mod narrow;
mod planner;
mod render;
mod route;
mod saved;
mod sharing;

use serde::{Deserialize, Serialize};

pub use planner::{PlanInput, plan};
pub use render::{Style, render_text};
pub use route::{Routes, route_downloads};
pub use saved::SavedPlan;
pub use sharing::{Claim, MachineCacheView, Neighbours, content_id};

use crate::digest::{GitOid, Md5, Sha256};
use crate::lock::Lockfile;
use crate::names::{ModelId, RelPath, TypeName};

/// Version of the `--json` and `--out` document.
pub const PLAN_FORMAT: u32 = 1;

/// Everything `apply` would do, and what it would cost. It serializes as the `--json`
/// document (`document.rs`), which also spells out the derived views; it deserializes from
/// that document (a saved plan), whose views it ignores.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Plan {
    pub format: u32,
    /// Per declared or deleted model, sorted by id: where it stands. Its actions are in
    /// `actions` ([`Plan::model_actions`]).
    pub models: Vec<ModelPlan>,
    /// Every action, in execution order: blob repairs, the models' files, then the pointer
    /// changes (type by type, each followed by the Ollama loads and unloads and the hooks it
    /// entails), then deletions. This is the only list of actions; the rest are views of it.
    pub actions: Vec<Action>,
    /// How models.lock would change.
    pub lock_changes: Vec<LockChange>,
    pub totals: Totals,
    pub disk: DiskCheck,
    pub warnings: Vec<Notice>,
    /// Problems that stop `apply` (a manifest checksum that contradicts the lock, a plan that
    /// does not fit on disk).
    pub errors: Vec<Notice>,
    /// The lock `apply` would write.
    #[serde(skip)]
    pub next_lock: Lockfile,
}

impl Plan {
    /// Whether applying would change anything on disk or in the lock.
    pub fn has_changes(&self) -> bool {
        !self.actions.is_empty() || !self.lock_changes.is_empty()
    }

    /// One model's actions, in execution order: its files, its Ollama pull, its deletion. The
    /// loads, unloads and hooks that go with a pointer change are [`Plan::activations`].
    pub fn model_actions<'a>(&'a self, id: &'a ModelId) -> impl Iterator<Item = &'a Action> {
        self.actions
            .iter()
            .filter(move |a| !a.is_activation() && a.model() == Some(id))
    }

    /// The changes to `active/<type>` pointers, in type order, with the Ollama loads and
    /// unloads and the hooks they entail; they run after all files are in place.
    pub fn activations(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| a.is_activation())
    }

    /// Models whose entries could not be resolved, with the reason.
    pub fn unresolved(&self) -> impl Iterator<Item = (&ModelId, &str)> {
        self.models.iter().filter_map(|m| match &m.status {
            ModelStatus::Unresolved { reason } => Some((&m.id, reason.as_str())),
            _ => None,
        })
    }
}

/// Where one model stands in the plan (its actions are [`Plan::model_actions`]). It is written
/// out only as part of the plan's document, which adds them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelPlan {
    pub id: ModelId,
    #[serde(rename = "type")]
    pub kind: TypeName,
    /// Where it comes from, for display (`hf:org/name@1a2b3c4`, a redacted URL, `ollama:llama3:8b`).
    pub source: String,
    pub status: ModelStatus,
    /// Text diff of the locked entry against the new one, when a locked entry changed.
    #[serde(default)]
    pub diff: Option<String>,
}

/// Where a model stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ModelStatus {
    /// Present and verified; nothing to do.
    UpToDate,
    /// Declared and pinned, with work to do.
    Changes,
    /// Not pinned yet, and could not be resolved in this run.
    Unresolved { reason: String },
    /// Pinned, but its source now holds something else under the same name and cannot give
    /// the pinned content back (an Ollama model pinned from the daemon, then re-created):
    /// nothing is done until `modelctl update` pins it again.
    Drifted { reason: String },
    /// Present in the store but no longer declared.
    Removed,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Fetch a file into a blob and link it into the model directory.
    Download {
        model: ModelId,
        path: RelPath,
        size: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        sha256: Option<Sha256>,
        #[serde(skip_serializing_if = "Option::is_none")]
        md5: Option<Md5>,
        /// A Hub regular file's git blob id, where no sha256 is known yet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        git_oid: Option<GitOid>,
        from: String,
        /// A different file is there now (drifted or stale).
        replace: bool,
        /// The mirrors asked for the blob first, in order (`http://127.0.0.1:5000/fleet`);
        /// `from` is the fallback unless mirror-only. Empty without mirrors, and for a file
        /// with no sha256 to ask a mirror for.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mirrors: Vec<String>,
    },
    /// The blob is already in the store (or in the machine cache, or in the HF cache): link
    /// it only. `sha256` may be
    /// one the plan learned (a regular file found by its git blob id).
    Reuse {
        model: ModelId,
        path: RelPath,
        size: u64,
        sha256: Sha256,
        replace: bool,
        /// The copy in the Hugging Face cache to take it from (verified before it is used);
        /// absent when the blob is in the store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hf_cache: Option<String>,
        /// Taken from the machine cache, and how (`reflink`, `hardlink`, `copy`); absent when
        /// the blob is in the store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        machine_cache: Option<crate::store::LinkMode>,
        /// The blob in a local Ollama store to take it from (`blobs/sha256-<hex>`, verified
        /// before it is used); absent when another place has it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ollama_store: Option<String>,
    },
    /// The file is present but its content cannot be confirmed from the lock's sha256 alone.
    Verify {
        model: ModelId,
        path: RelPath,
        size: u64,
        reason: String,
    },
    /// Remove a file from a model directory that the lock does not list.
    DeleteFile {
        model: ModelId,
        path: String,
        size: u64,
    },
    /// Remove a model directory; blobs no longer referenced are freed by `gc`.
    Delete {
        model: ModelId,
        #[serde(rename = "type")]
        kind: TypeName,
        size: u64,
        /// What `gc` then gives back to the disk: the bytes of blobs no other model uses,
        /// less those the machine cache holds too.
        freed: u64,
        /// Bytes of such blobs that the machine cache holds: they stay on disk until `cache
        /// prune` finds no project needs them.
        #[serde(default, skip_serializing_if = "is_zero")]
        in_machine_cache: u64,
    },
    /// Pull a model into Ollama (or, when `present`, only record the one it has).
    Pull {
        model: ModelId,
        name: String,
        digest: Sha256,
        /// What the pull downloads at most (0 when `present`).
        size: u64,
        /// The daemon already has the pinned digest: nothing is downloaded.
        #[serde(default)]
        present: bool,
        /// The mirrors asked first for the manifest and each layer, in order, when the pull
        /// goes into `OLLAMA_MODELS` without a daemon; empty through a daemon (it pulls from
        /// its own registry) and without mirrors.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mirrors: Vec<String>,
    },
    /// Pull a model the lock cannot pin yet through the Ollama daemon (the registry is out of
    /// this machine's reach, not necessarily the daemon's), then pin the digest it reports.
    PullAndPin { model: ModelId, name: String },
    /// Remove a model from Ollama.
    Remove { model: ModelId, name: String },
    /// Load a model into memory through the Ollama daemon.
    Load { model: ModelId, name: String },
    /// Unload a model from memory (`keep_alive: 0`).
    Unload { model: ModelId, name: String },
    /// Point `active/<type>` at a model, where nothing was active.
    Activate {
        #[serde(rename = "type")]
        kind: TypeName,
        to: ModelId,
    },
    /// Point `active/<type>` at another model.
    Swap {
        #[serde(rename = "type")]
        kind: TypeName,
        from: String,
        to: ModelId,
    },
    /// Remove `active/<type>`.
    Deactivate {
        #[serde(rename = "type")]
        kind: TypeName,
        from: String,
    },
    /// Lay the model out in the Hugging Face cache (`hf_cache: true`), sharing its blobs.
    ShareHfCache {
        model: ModelId,
        /// The cache folder, `models--org--name`.
        repo: String,
        commit: String,
    },
    /// Put right a blob whose bytes do not hash to its name: publish it again from a model
    /// file that holds those bytes intact, or remove it when none does (a model that needs it
    /// downloads it).
    RepairBlob {
        sha256: Sha256,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<IntactCopy>,
    },
    /// Run a hook from the manifest.
    Hook {
        model: ModelId,
        event: String,
        command: String,
    },
}

/// A model file the scan found holding a blob's bytes intact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntactCopy {
    #[serde(rename = "type")]
    pub kind: TypeName,
    pub model: ModelId,
    pub path: RelPath,
}

/// A change to models.lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockChange {
    pub model: ModelId,
    pub change: LockChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockChangeKind {
    Added,
    Updated,
    Removed,
}

/// Sums over the plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub downloads: usize,
    pub download_bytes: u64,
    pub reuses: usize,
    pub verifies: usize,
    pub deletes: usize,
    pub freed_bytes: u64,
    pub pulls: usize,
    pub pull_bytes: u64,
    pub activations: usize,
    pub swaps: usize,
    pub deactivations: usize,
    pub unresolved: usize,
    #[serde(default)]
    pub blob_repairs: usize,
    /// Ollama models the daemon already has, only recorded in the store.
    #[serde(default)]
    pub records: usize,
    /// Pulls whose size is known only after them (a model pinned by pulling it).
    #[serde(default)]
    pub unsized_pulls: usize,
}

/// Whether the plan fits on the store's filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskCheck {
    /// The most extra space the plan holds at once (downloads land before deletions free).
    pub peak_bytes: u64,
    pub free_bytes: Option<u64>,
    pub path: String,
    pub fits: bool,
}

/// A warning or an error, about a model or the whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelId>,
    pub message: String,
}

impl Action {
    /// The model an action belongs to; pointer actions belong to a type instead.
    pub fn model(&self) -> Option<&ModelId> {
        match self {
            Action::Download { model, .. }
            | Action::Reuse { model, .. }
            | Action::Verify { model, .. }
            | Action::DeleteFile { model, .. }
            | Action::Delete { model, .. }
            | Action::Pull { model, .. }
            | Action::PullAndPin { model, .. }
            | Action::Remove { model, .. }
            | Action::Load { model, .. }
            | Action::Unload { model, .. }
            | Action::ShareHfCache { model, .. }
            | Action::Hook { model, .. } => Some(model),
            Action::Activate { .. }
            | Action::Swap { .. }
            | Action::Deactivate { .. }
            | Action::RepairBlob { .. } => None,
        }
    }

    /// Whether the action is part of a pointer change: the change itself, or the Ollama load
    /// or unload or the hook that goes with it (the planner makes those for pointer changes
    /// only).
    pub fn is_activation(&self) -> bool {
        matches!(
            self,
            Action::Activate { .. }
                | Action::Swap { .. }
                | Action::Deactivate { .. }
                | Action::Load { .. }
                | Action::Unload { .. }
                | Action::Hook { .. }
        )
    }
}

#[cfg(test)]
mod tests;
