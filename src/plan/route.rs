//! Where each download of a plan comes from: a file with a sha256 is asked of the mirrors
//! first, in order, then of its origin; so is an Ollama pull that goes into `OLLAMA_MODELS`
//! without a daemon (its manifest by the pinned digest, and its layers). A pull through the
//! Ollama daemon is the daemon's, from its own registry: never mirrored, which a warning says
//! when mirrors are set. Under mirror-only (`--mirror-only`, `MODELCTL_MIRROR_ONLY`) anything
//! no mirror can serve is an error of the plan, so it stops before a byte moves: a file with
//! no sha256 (a mirror is asked for a digest), a pull through the daemon, or any download
//! when no mirror is set. Without mirror-only, a file with no sha256 is a warning that it
//! comes from its origin. Pure, like the planner: it is handed the mirrors, and whether
//! Ollama pulls go direct (the plan input's daemon view: none answered, `OLLAMA_MODELS` set).

use super::{Action, Notice, Plan};

const MIRROR_ONLY: &str = "mirror-only (--mirror-only or MODELCTL_MIRROR_ONLY)";

/// How the downloads of a plan may be routed.
#[derive(Debug, Clone, Copy)]
pub struct Routes<'a> {
    /// As `Target::url_text` shows them, in the order they are asked.
    pub mirrors: &'a [String],
    /// Mirror-only: nothing may come from an origin.
    pub mirror_only: bool,
    /// Ollama pulls go into `OLLAMA_MODELS` without a daemon (so they can use the mirrors).
    pub ollama_direct: bool,
}

/// Records the mirrors on each download that has a sha256 and on each direct Ollama pull,
/// and, under mirror-only, an error for each download or pull that would need an origin.
pub fn route_downloads(plan: &mut Plan, routes: Routes<'_>) {
    let Routes {
        mirrors,
        mirror_only,
        ollama_direct,
    } = routes;
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
                present: false,
                mirrors: via,
                ..
            } if ollama_direct => *via = mirrors.to_vec(),
            Action::Pull {
                model,
                name,
                present: false,
                ..
            }
            | Action::PullAndPin { model, name } => {
                if let Some(notice) = through_daemon(model, name, mirrors, mirror_only) {
                    match mirror_only {
                        true => errors.push(notice),
                        false => warnings.push(notice),
                    }
                }
            }
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

/// A pull through the Ollama daemon, which no mirror can serve: an error under mirror-only, a
/// warning when mirrors are set, nothing otherwise.
fn through_daemon(
    model: &crate::names::ModelId,
    name: &str,
    mirrors: &[String],
    mirror_only: bool,
) -> Option<Notice> {
    let message = if mirror_only {
        format!(
            "`{model}` is the Ollama model `{name}`, which the Ollama daemon pulls from its own \
             registry, not a mirror, and {MIRROR_ONLY} forbids that; stop the daemon and set \
             OLLAMA_MODELS to pull it from the mirrors, pull it where the registry is reachable, \
             or apply without mirror-only"
        )
    } else if !mirrors.is_empty() {
        format!(
            "the Ollama daemon pulls `{name}` from its own registry, not a mirror; mirrors \
             serve Ollama models only when no daemon runs and OLLAMA_MODELS is set"
        )
    } else {
        return None;
    };
    Some(Notice {
        model: Some(model.clone()),
        message,
    })
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

    fn pull(model: &str) -> Action {
        Action::Pull {
            model: ModelId::parse(model).expect("id"),
            name: "llama3:8b".to_owned(),
            digest: Sha256::of(b"m"),
            size: 1,
            present: false,
            mirrors: Vec::new(),
        }
    }

    fn route(plan: &mut Plan, mirrors: &[&str], mirror_only: bool, ollama_direct: bool) {
        let mirrors: Vec<String> = mirrors.iter().map(|m| (*m).to_owned()).collect();
        route_downloads(
            plan,
            Routes {
                mirrors: &mirrors,
                mirror_only,
                ollama_direct,
            },
        );
    }

    fn pull_mirrors(action: &Action) -> Vec<String> {
        match action {
            Action::Pull { mirrors, .. } => mirrors.clone(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn files_with_a_sha256_go_via_the_mirrors_and_the_others_are_told() {
        let mut plan = plan_of(vec![
            download("voice", "a.bin", Some(Sha256::of(b"a"))),
            download("card", "README.md", None),
        ]);
        route(&mut plan, &[MIRROR], false, false);
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
        route(&mut plan, &[], false, false);
        assert_eq!(plan, before);
    }

    #[test]
    fn mirror_only_refuses_what_needs_an_origin() {
        let mut plan = plan_of(vec![
            download("voice", "a.bin", Some(Sha256::of(b"a"))),
            download("card", "README.md", None),
            pull("chat"),
        ]);
        route(&mut plan, &[MIRROR], true, false);
        assert!(plan.warnings.is_empty());
        let errors: Vec<&str> = plan.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("`card/README.md` has no sha256"),
            "{errors:?}"
        );
        assert!(errors[1].contains("`llama3:8b`"), "{errors:?}");

        let mut plan = plan_of(vec![download("voice", "a.bin", Some(Sha256::of(b"a")))]);
        route(&mut plan, &[], true, false);
        assert_eq!(plan.errors.len(), 1);
        assert!(plan.errors[0].message.contains("no mirror is"));
        let mut nothing = plan_of(Vec::new());
        route(&mut nothing, &[], true, false);
        assert!(
            nothing.errors.is_empty(),
            "nothing to download needs no mirror"
        );
    }

    #[test]
    fn a_direct_ollama_pull_goes_via_the_mirrors_even_under_mirror_only() {
        for only in [false, true] {
            let mut plan = plan_of(vec![pull("chat")]);
            route(&mut plan, &[MIRROR], only, true);
            assert_eq!(pull_mirrors(&plan.actions[0]), [MIRROR], "only: {only}");
            assert!(plan.errors.is_empty(), "{:?}", plan.errors);
            assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        }
        let mut plan = plan_of(vec![pull("chat")]);
        route(&mut plan, &[], true, true);
        assert!(plan.errors[0].message.contains("no mirror is"));
    }

    #[test]
    fn a_pull_through_the_daemon_is_told_it_is_not_mirrored() {
        let pin = Action::PullAndPin {
            model: ModelId::parse("mine").expect("id"),
            name: "mine:latest".to_owned(),
        };
        let mut plan = plan_of(vec![pull("chat"), pin]);
        route(&mut plan, &[MIRROR], false, false);
        assert!(pull_mirrors(&plan.actions[0]).is_empty());
        assert!(plan.errors.is_empty());
        let warned: Vec<&str> = plan.warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert!(
            warned[0].contains(
                "the Ollama daemon pulls `llama3:8b` from its own registry, not a mirror"
            ),
            "{warned:?}"
        );
        let mut quiet = plan_of(vec![pull("chat")]);
        route(&mut quiet, &[], false, false);
        assert!(quiet.warnings.is_empty(), "no mirror, nothing to say");
    }
}
