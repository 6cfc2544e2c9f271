//! The executor's pointer phase: `active/<type>` swaps, Ollama loads and unloads, and hooks,
//! in plan order, then `active.json` rewritten from the pointers actually on disk.
//!
//! It runs after every model's files are in place. A model with a failed file is never
//! activated (its old pointer stays); a hook runs only after the pointer change it belongs to
//! succeeded, and a failed `activate` hook of a model with `rollback_on_failure` puts the old
//! pointer back. Pointers are only ever changed through [`Store::point_active`] and
//! [`Store::clear_active`] (atomic, durable).
//!
//! [`Store::point_active`]: crate::store::Store::point_active
//! [`Store::clear_active`]: crate::store::Store::clear_active

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::ollama::OllamaStepError;
use super::progress::ActiveChange;
use super::{Executor, Outcome, activate};
use crate::names::{ModelId, TypeName};
use crate::plan::{Action, Plan};
use crate::store::ActivePointer;

/// The pointer change a hook belongs to, for rollback.
#[derive(Debug, Clone)]
struct PointerChange {
    kind: TypeName,
    from: Option<ModelId>,
    to: Option<ModelId>,
    /// Whether the change happened (a hook of a change that failed does not run).
    done: bool,
}

impl Executor<'_> {
    /// Pointer swaps, Ollama loads and hooks, in plan order.
    pub(super) async fn pointers(&self, plan: &Plan, outcome: &Mutex<Outcome>) {
        let failed = outcome.lock().map(|o| o.failed.clone()).unwrap_or_default();
        let mut last: Option<PointerChange> = None;
        for action in plan.activations() {
            match action {
                Action::Activate { kind, to } | Action::Swap { kind, to, .. } => {
                    last = Some(self.activate(outcome, &failed, kind, to));
                }
                Action::Deactivate { kind, .. } => last = Some(self.deactivate(outcome, kind)),
                Action::Load { model, name } | Action::Unload { model, name } => {
                    let load = matches!(action, Action::Load { .. });
                    if !(load && failed.contains(model)) {
                        self.load_or_unload(outcome, model, name, load).await;
                    }
                }
                Action::Hook {
                    model,
                    event,
                    command,
                } => {
                    if let Some(change) = last.as_ref().filter(|c| c.done) {
                        self.hook(outcome, model, event, command, change);
                    }
                }
                _ => {}
            }
        }
        self.write_active_json(outcome);
    }

    /// Points `active/<kind>` at `to`, unless one of its files failed.
    fn activate(
        &self,
        outcome: &Mutex<Outcome>,
        failed: &BTreeSet<ModelId>,
        kind: &TypeName,
        to: &ModelId,
    ) -> PointerChange {
        let from = self.current(kind);
        let mut change = PointerChange {
            kind: kind.clone(),
            from: from.clone(),
            to: Some(to.clone()),
            done: false,
        };
        if failed.contains(to) {
            let message =
                format!("not activating `{to}` as {kind}: not all of its files are in place");
            self.error(outcome, Some(to), &message);
            return change;
        }
        if let Err(e) = self.store.point_active(kind, to) {
            self.error(outcome, Some(to), &format!("cannot activate `{to}`: {e}"));
            return change;
        }
        crate::failpoint::hit("swap.before-active-json");
        self.reporter.swapped(&ActiveChange {
            kind: kind.to_string(),
            from: from.as_ref().map(ToString::to_string),
            to: Some(to.to_string()),
            path: Some(self.store.model_dir(kind, to)),
            rollback: false,
        });
        if let Ok(mut o) = outcome.lock() {
            o.swaps += 1;
        }
        change.done = true;
        change
    }

    /// Removes `active/<kind>`.
    fn deactivate(&self, outcome: &Mutex<Outcome>, kind: &TypeName) -> PointerChange {
        let from = self.current(kind);
        let done = match self.store.clear_active(kind) {
            Ok(()) => {
                self.reporter.swapped(&ActiveChange {
                    kind: kind.to_string(),
                    from: from.as_ref().map(ToString::to_string),
                    to: None,
                    path: None,
                    rollback: false,
                });
                true
            }
            Err(e) => {
                self.error(outcome, None, &format!("cannot deactivate {kind}: {e}"));
                false
            }
        };
        PointerChange {
            kind: kind.clone(),
            from,
            to: None,
            done,
        }
    }

    /// Asks the Ollama daemon to load (with the model's `keep_alive`) or unload `name`.
    async fn load_or_unload(
        &self,
        outcome: &Mutex<Outcome>,
        model: &ModelId,
        name: &str,
        load: bool,
    ) {
        let keep_alive = self
            .manifest
            .models
            .get(model)
            .and_then(|e| match &e.source {
                crate::manifest::Source::Ollama(o) => o.keep_alive.clone(),
                _ => None,
            });
        let done = match self.ollama_call(name) {
            Ok((daemon, parsed)) if load => daemon
                .load(&parsed, keep_alive.as_deref())
                .await
                .map_err(OllamaStepError::from),
            Ok((daemon, parsed)) => daemon.unload(&parsed).await.map_err(OllamaStepError::from),
            Err(why) => Err(why),
        };
        let verb = if load { "load" } else { "unload" };
        match done {
            Ok(()) => self.reporter.step(&format!("{verb}ed {name} in Ollama")),
            Err(why) => self.error(
                outcome,
                Some(model),
                &format!("cannot {verb} `{name}`: {why}"),
            ),
        }
    }

    /// Runs one hook of the pointer change just made; a failed `activate` hook rolls the
    /// change back when the model asks for it.
    fn hook(
        &self,
        outcome: &Mutex<Outcome>,
        model: &ModelId,
        event: &str,
        command: &str,
        change: &PointerChange,
    ) {
        let dir = self.store.model_dir(&change.kind, model);
        let env = activate::HookEnv {
            kind: &change.kind,
            old: change.from.as_ref().map(ModelId::as_str),
            new: change.to.as_ref().map(ModelId::as_str),
            path: &dir,
        };
        if let Ok(mut o) = outcome.lock() {
            o.hooks += 1;
        }
        match activate::run_hook(command, &env) {
            Ok(printed) => {
                self.reporter
                    .step(&format!("ran the {event} hook of {model}"));
                for line in printed.lines().take(20) {
                    self.reporter.step(&format!("  | {line}"));
                }
            }
            Err(why) => {
                let message = format!("the {event} hook of `{model}` failed ({why})");
                self.error(outcome, Some(model), &message);
                let rollback = event == "activate"
                    && self
                        .manifest
                        .models
                        .get(model)
                        .is_some_and(|e| e.hooks.rollback_on_failure);
                if rollback {
                    self.roll_back(outcome, model, change);
                }
            }
        }
    }

    /// Puts back the pointer `change` replaced.
    fn roll_back(&self, outcome: &Mutex<Outcome>, model: &ModelId, change: &PointerChange) {
        let kind = &change.kind;
        let restored = match &change.from {
            Some(old) => self.store.point_active(kind, old),
            None => self.store.clear_active(kind),
        };
        match restored {
            Ok(()) => self.reporter.swapped(&ActiveChange {
                kind: kind.to_string(),
                from: change.to.as_ref().map(ToString::to_string),
                to: change.from.as_ref().map(ToString::to_string),
                path: change
                    .from
                    .as_ref()
                    .map(|old| self.store.model_dir(kind, old)),
                rollback: true,
            }),
            Err(e) => self.error(
                outcome,
                Some(model),
                &format!("cannot roll back {kind}: {e}"),
            ),
        }
    }

    /// Rewrites `active.json` from the pointers now on disk.
    fn write_active_json(&self, outcome: &Mutex<Outcome>) {
        let pointers = self.pointers_on_disk();
        if let Err(e) = activate::write_active_json(self.store, self.manifest, &pointers) {
            self.error(
                outcome,
                None,
                &format!("cannot write `{}`: {e}", self.store.active_json().display()),
            );
        }
    }

    /// The model `active/<kind>` points at now.
    pub(super) fn current(&self, kind: &TypeName) -> Option<ModelId> {
        match self.pointers_on_disk().get(kind) {
            Some(ActivePointer::Model(id)) => Some(id.clone()),
            _ => None,
        }
    }

    /// The `active/<type>` links as they are now.
    pub(super) fn pointers_on_disk(&self) -> BTreeMap<TypeName, ActivePointer> {
        crate::store::read_active(self.store)
            .map(|(pointers, _)| pointers)
            .unwrap_or_default()
    }
}
