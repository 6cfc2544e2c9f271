//! Cutting a plan down to part of it: one model (what the API's download, activate, switch,
//! deactivate and delete act on), or everything but deletions (`watch` without `--prune`).
//!
//! The cut keeps the plan's order and recomputes its totals. The lock the plan would write is
//! left whole: resolving and pinning other models is what `modelctl lock` does too, and it
//! changes no file in the store.

use super::{Action, Plan, planner};
use crate::names::ModelId;

impl Plan {
    /// Keeps only what concerns `id`: its files, its Ollama pull, load or removal, its
    /// deletion, the pointer change that makes it active (with the unload and hooks of the
    /// model it replaces) or that deactivates it. Other models are left exactly as they are.
    pub fn narrow_to(&mut self, id: &ModelId) {
        let replaced: Vec<String> = self
            .activations()
            .filter_map(|a| match a {
                Action::Swap { to, from, .. } if to == id => Some(from.clone()),
                _ => None,
            })
            .collect();
        let keep = |a: &Action| match a {
            Action::Activate { to, .. } | Action::Swap { to, .. } => to == id,
            Action::Deactivate { from, .. } => from == id.as_str(),
            Action::Unload { model, .. } | Action::Hook { model, .. } => {
                model == id || replaced.iter().any(|r| r == model.as_str())
            }
            other => other.model() == Some(id),
        };
        self.actions.retain(keep);
        self.totals = planner::totals(&self.actions, &self.models);
    }

    /// Drops model deletions (the models stay in the store); returns how many.
    pub fn hold_deletions(&mut self) -> usize {
        let deletion = |a: &Action| matches!(a, Action::Delete { .. } | Action::Remove { .. });
        let before = self.actions.len();
        self.actions.retain(|a| !deletion(a));
        self.totals = planner::totals(&self.actions, &self.models);
        before - self.actions.len()
    }
}
