//! Where each download of a plan comes from: a file with a sha256 is asked of the mirrors
//! first, in order, then of its origin; under mirror-only (`--mirror-only`,
//! `MODELCTL_MIRROR_ONLY`) anything no mirror can serve is an error of the plan, so it stops
//! before a byte moves: a file with no sha256 (a mirror is asked for a digest), an Ollama
//! pull (pulled from its registry or through the daemon, never mirrored), or any download
//! when no mirror is set. Pure, like the planner: it is handed the mirrors.

use super::{Action, Notice, Plan};

const MIRROR_ONLY: &str = "mirror-only (--mirror-only or MODELCTL_MIRROR_ONLY)";

/// Records `mirrors` (as `Target::url_text` shows them) on each download that has a sha256,
/// and, under `mirror_only`, an error for each download or pull that would need an origin.
pub fn route_downloads(plan: &mut Plan, mirrors: &[String], mirror_only: bool) {
    let mut errors = Vec::new();
    for action in &mut plan.actions {
        match action {
            Action::Download {
                model,
                path,
                sha256,
                mirrors: via,
                ..
            } => {
                if sha256.is_some() {
                    *via = mirrors.to_vec();
                } else if mirror_only && !mirrors.is_empty() {
                    errors.push(Notice {
                        model: Some(model.clone()),
                        message: format!(
                            "`{model}/{path}` has no sha256 in models.lock, so no mirror can serve \
                             it, and {MIRROR_ONLY} forbids its origin; apply it once where the \
                             origin is reachable (the lock learns its sha256), push it, and commit \
                             models.lock"
                        ),
                    });
                }
            }
            Action::Pull { model, name, .. } if mirror_only => errors.push(Notice {
                model: Some(model.clone()),
                message: format!(
                    "`{model}` is the Ollama model `{name}`, which is pulled from its registry and \
                     not mirrored, and {MIRROR_ONLY} forbids that; pull it where the registry is \
                     reachable, or apply without mirror-only"
                ),
            }),
            _ => {}
        }
    }
    let wants_origin = plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::Download { .. } | Action::Pull { .. }));
    if mirror_only && mirrors.is_empty() && wants_origin {
        errors = vec![Notice {
            model: None,
            message: format!(
                "{MIRROR_ONLY} is set but no mirror is: add `mirrors:` to models.yaml or set \
                 MODELCTL_MIRROR=REGISTRY/NAMESPACE"
            ),
        }];
    }
    plan.errors.extend(errors);
}
