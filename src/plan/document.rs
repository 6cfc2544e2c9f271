//! The `--json` document: the plan as scripts read it (and as `plan --out` saves it).
//!
//! The plan keeps one list of actions; the document also writes out the views scripts have
//! always found in it, each model's `actions` and the `activations`, derived from that list as
//! it is written. Reading a document back (a saved plan) takes the list and ignores the
//! views, so the two can never disagree in memory.

use serde::{Serialize, Serializer};

use super::{Action, DiskCheck, LockChange, ModelStatus, Notice, Plan, Totals};
use crate::names::{ModelId, TypeName};

/// The document's shape, borrowed from a plan; its field order is the document's.
#[derive(Serialize)]
struct Document<'a> {
    format: u32,
    models: Vec<ModelDocument<'a>>,
    activations: Vec<&'a Action>,
    actions: &'a [Action],
    lock_changes: &'a [LockChange],
    totals: &'a Totals,
    disk: &'a DiskCheck,
    warnings: &'a [Notice],
    errors: &'a [Notice],
}

#[derive(Serialize)]
struct ModelDocument<'a> {
    id: &'a ModelId,
    #[serde(rename = "type")]
    kind: &'a TypeName,
    source: &'a str,
    status: &'a ModelStatus,
    actions: Vec<&'a Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<&'a str>,
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Document {
            format: self.format,
            models: self
                .models
                .iter()
                .map(|m| ModelDocument {
                    id: &m.id,
                    kind: &m.kind,
                    source: &m.source,
                    status: &m.status,
                    actions: self.model_actions(&m.id).collect(),
                    diff: m.diff.as_deref(),
                })
                .collect(),
            activations: self.activations().collect(),
            actions: &self.actions,
            lock_changes: &self.lock_changes,
            totals: &self.totals,
            disk: &self.disk,
            warnings: &self.warnings,
            errors: &self.errors,
        }
        .serialize(serializer)
    }
}
