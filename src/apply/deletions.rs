//! The executor's last phase: deleting the models the plan drops, and removing Ollama models.
//!
//! It runs after the pointer phase, so it sees the pointers as they ended up: a model that is
//! still active (because the swap away from it failed) is kept, and so is one whose Ollama
//! removal failed (its directory still records it, so the next plan tries again). Deleting a
//! model's directory never touches its blobs; `gc` removes those.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::{Executor, Outcome};
use crate::names::{ModelId, TypeName};
use crate::plan::{Action, Plan};
use crate::store::ActivePointer;

impl Executor<'_> {
    /// Model deletions, never of a model that is still active.
    pub(super) async fn deletions(&self, plan: &Plan, outcome: &Mutex<Outcome>) {
        // A model Ollama could not remove keeps its directory, so it is not forgotten.
        let mut kept: BTreeSet<ModelId> = BTreeSet::new();
        let pointers = self.pointers_on_disk();
        for action in &plan.actions {
            match action {
                Action::Delete { model, .. } if kept.contains(model) => {}
                Action::Delete { model, kind, .. } => {
                    let active = pointers.get(kind) == Some(&ActivePointer::Model(model.clone()));
                    self.delete_model(outcome, kind, model, active);
                }
                Action::Remove { model, name }
                    if !self.remove_from_ollama(outcome, model, name).await =>
                {
                    kept.insert(model.clone());
                }
                _ => {}
            }
        }
    }

    /// Deletes a model's directory, unless `active/<kind>` still points at it (`active`).
    fn delete_model(
        &self,
        outcome: &Mutex<Outcome>,
        kind: &TypeName,
        model: &ModelId,
        active: bool,
    ) {
        if active {
            self.error(
                outcome,
                Some(model),
                &format!(
                    "kept `{model}`: it is still the active {kind} model because the swap away \
                     from it did not happen"
                ),
            );
            return;
        }
        match self.store.remove_model(kind, model) {
            Ok(()) => {
                self.reporter.step(&format!("deleted {model} ({kind})"));
                if let Ok(mut o) = outcome.lock() {
                    o.deleted += 1;
                }
            }
            Err(e) => self.error(
                outcome,
                Some(model),
                &format!("cannot delete `{model}`: {e}"),
            ),
        }
    }

    /// Removes `name` from Ollama; returns whether it is gone.
    async fn remove_from_ollama(
        &self,
        outcome: &Mutex<Outcome>,
        model: &ModelId,
        name: &str,
    ) -> bool {
        match self.remove_ollama(name).await {
            Ok(()) => {
                self.reporter.step(&format!("removed {name} from Ollama"));
                true
            }
            Err(why) => {
                self.error(
                    outcome,
                    Some(model),
                    &format!("cannot remove `{name}` from Ollama: {why}"),
                );
                false
            }
        }
    }
}
