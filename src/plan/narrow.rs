//! Cutting a plan down to part of it: one model (what the API's download, activate, switch,
//! deactivate and delete act on), everything but deletions (`watch` without `--prune`), or
//! the damaged files `verify --repair` puts right.
//!
//! Every cut goes through [`Plan::retain`], which keeps the plan's order and makes the rest of
//! it agree with what is left: the models listed, their statuses, the notices about them, the
//! totals and the disk check. A model the cut leaves out is out of the plan altogether, so an
//! unrelated model that cannot be resolved fails only a plan that still lists it. The lock the
//! plan would write is left whole: resolving and pinning other models is what `modelctl lock`
//! does too, and it changes no file in the store.

use std::collections::BTreeSet;

use super::{Action, ModelPlan, ModelStatus, Notice, Plan, planner};
use crate::names::ModelId;

impl Plan {
    /// Keeps the models `keep_model` accepts and the actions `keep_action` accepts, in their
    /// order (`keep_action` sees each action once, in order). A kept model that had changes
    /// and has no action or lock change left is up to date; warnings and errors about a model
    /// left out go with it; totals and the disk check (with its error) are computed again from
    /// what is left.
    pub fn retain(
        &mut self,
        keep_model: impl Fn(&ModelPlan) -> bool,
        keep_action: impl FnMut(&Action) -> bool,
    ) {
        self.actions.retain(keep_action);
        let listed: BTreeSet<ModelId> = self.models.iter().map(|m| m.id.clone()).collect();
        self.models.retain(keep_model);
        let kept: BTreeSet<&ModelId> = self.models.iter().map(|m| &m.id).collect();
        let left_out = |n: &Notice| {
            n.model
                .as_ref()
                .is_some_and(|m| listed.contains(m) && !kept.contains(m))
        };
        self.warnings.retain(|n| !left_out(n));
        self.errors.retain(|n| !left_out(n));
        for i in 0..self.models.len() {
            let id = &self.models[i].id;
            let idle = self.model_actions(id).next().is_none()
                && !self.lock_changes.iter().any(|c| &c.model == id);
            if idle && self.models[i].status == ModelStatus::Changes {
                self.models[i].status = ModelStatus::UpToDate;
            }
        }
        self.totals = planner::totals(&self.actions, &self.models);
        let old_disk_error = planner::disk_error(&self.disk);
        self.errors.retain(|e| Some(e) != old_disk_error.as_ref());
        self.disk = planner::disk_check(&self.totals, self.disk.free_bytes, &self.disk.path);
        self.errors.extend(planner::disk_error(&self.disk));
    }

    /// Keeps only what concerns `id`: its files, its Ollama pull or removal, its deletion, and
    /// the pointer change that makes it active or that deactivates it, with the loads, unloads
    /// and hooks that change entails (the unload and hook of the model it replaces among them).
    /// Another model's pointer change is left out whole, even the unload of `id` it entails.
    /// Other models are left out of the plan.
    pub fn narrow_to(&mut self, id: &ModelId) {
        // The planner puts each pointer change right before what it entails, and `retain`
        // visits the actions in order.
        let mut kept_change = false;
        let keep = |a: &Action| match a {
            Action::Activate { to, .. } | Action::Swap { to, .. } => {
                kept_change = to == id;
                kept_change
            }
            Action::Deactivate { from, .. } => {
                kept_change = from == id.as_str();
                kept_change
            }
            Action::Load { .. } | Action::Unload { .. } | Action::Hook { .. } => kept_change,
            other => other.model() == Some(id),
        };
        self.retain(|m| &m.id == id, keep);
    }

    /// Drops model deletions (the models stay in the store, and out of the plan); returns how
    /// many actions were dropped.
    pub fn hold_deletions(&mut self) -> usize {
        let before = self.actions.len();
        self.retain(
            |m| m.status != ModelStatus::Removed,
            |a| !matches!(a, Action::Delete { .. } | Action::Remove { .. }),
        );
        before - self.actions.len()
    }
}
