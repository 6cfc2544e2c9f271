//! Where each download of a plan comes from: a file with a sha256 is asked of the mirrors
//! first, in order, then of its origin; under mirror-only (`--mirror-only`,
//! `MODELCTL_MIRROR_ONLY`) anything no mirror can serve is an error of the plan, so it stops
//! before a byte moves: a file with no sha256 (a mirror is asked for a digest), an Ollama
//! pull (pulled from its registry or through the daemon, never mirrored), or any download
//! when no mirror is set. Without mirror-only, a file with no sha256 is a warning that it
//! comes from its origin. Pure, like the planner: it is handed the mirrors.

use super::{Action, Notice, Plan};

const MIRROR_ONLY: &str = "mirror-only (--mirror-only or MODELCTL_MIRROR_ONLY)";

/// Records `mirrors` (as `Target::url_text` shows them) on each download that has a sha256,
/// and, under `mirror_only`, an error for each download or pull that would need an origin.
pub fn route_downloads(plan: &mut Plan, mirrors: &[String], mirror_only: bool) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
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
                } else if !mirrors.is_empty() && !mirror_only {
                    warnings.push(Notice {
                        model: Some(model.clone()),
                        message: format!(
                            "`{model}/{path}` comes from its origin, not a mirror: models.lock \
                             has no sha256 for it yet (this download teaches it)"
                        ),
                    });
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
            Action::Pull {
                model,
                name,
                present: false,
                ..
            }
            | Action::PullAndPin { model, name } if mirror_only => errors.push(Notice {
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
    let wants_origin = plan.actions.iter().any(|a| {
        matches!(
            a,
            Action::Download { .. }
                | Action::Pull { present: false, .. }
                | Action::PullAndPin { .. }
        )
    });
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
    plan.warnings.extend(warnings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256;
    use crate::names::{ModelId, RelPath};
    use crate::plan::{DiskCheck, PLAN_FORMAT, Totals};

    fn download(model: &str, path: &str, sha256: Option<Sha256>) -> Action {
        Action::Download {
            model: ModelId::parse(model).expect("id"),
            path: RelPath::parse(path).expect("path"),
            size: 10,
            sha256,
            md5: None,
            git_oid: None,
            from: "https://origin.example/f".to_owned(),
            replace: false,
            mirrors: Vec::new(),
        }
    }

    fn plan_of(actions: Vec<Action>) -> Plan {
        Plan {
            format: PLAN_FORMAT,
            models: Vec::new(),
            actions,
            lock_changes: Vec::new(),
            totals: Totals::default(),
            disk: DiskCheck {
                peak_bytes: 0,
                free_bytes: None,
                path: String::new(),
                fits: true,
            },
            warnings: Vec::new(),
            errors: Vec::new(),
            next_lock: Default::default(),
        }
    }

    fn mirrors_of(action: &Action) -> Vec<String> {
        match action {
            Action::Download { mirrors, .. } => mirrors.clone(),
            _ => Vec::new(),
        }
    }

    const MIRROR: &str = "http://127.0.0.1:5000/fleet";

    #[test]
    fn files_with_a_sha256_go_via_the_mirrors_and_the_others_are_told() {
        let mut plan = plan_of(vec![
            download("voice", "a.bin", Some(Sha256::of(b"a"))),
            download("card", "README.md", None),
        ]);
        route_downloads(&mut plan, &[MIRROR.to_owned()], false);
        assert_eq!(mirrors_of(&plan.actions[0]), [MIRROR]);
        assert!(mirrors_of(&plan.actions[1]).is_empty());
        assert!(plan.errors.is_empty());
        assert_eq!(plan.warnings.len(), 1);
        assert!(
            plan.warnings[0]
                .message
                .contains("`card/README.md` comes from its origin")
        );
    }

    #[test]
    fn without_mirrors_nothing_changes() {
        let mut plan = plan_of(vec![download("card", "README.md", None)]);
        let before = plan.clone();
        route_downloads(&mut plan, &[], false);
        assert_eq!(plan, before);
    }

    #[test]
    fn mirror_only_refuses_what_needs_an_origin() {
        let mut plan = plan_of(vec![
            download("voice", "a.bin", Some(Sha256::of(b"a"))),
            download("card", "README.md", None),
            Action::Pull {
                model: ModelId::parse("chat").expect("id"),
                name: "llama3:8b".to_owned(),
                digest: Sha256::of(b"m"),
                size: 1,
                present: false,
            },
        ]);
        route_downloads(&mut plan, &[MIRROR.to_owned()], true);
        assert!(plan.warnings.is_empty());
        let errors: Vec<&str> = plan.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("`card/README.md` has no sha256"),
            "{errors:?}"
        );
        assert!(errors[1].contains("`llama3:8b`"), "{errors:?}");

        let mut plan = plan_of(vec![download("voice", "a.bin", Some(Sha256::of(b"a")))]);
        route_downloads(&mut plan, &[], true);
        assert_eq!(plan.errors.len(), 1);
        assert!(plan.errors[0].message.contains("no mirror is"));
        let mut nothing = plan_of(Vec::new());
        route_downloads(&mut nothing, &[], true);
        assert!(
            nothing.errors.is_empty(),
            "nothing to download needs no mirror"
        );
    }
}
