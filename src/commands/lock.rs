//! `modelctl lock`: resolve every unpinned model and write models.lock; `--check` only checks.

use std::process::ExitCode;

use miette::Result;

use crate::cli::LockArgs;
use crate::lock::Lockfile;
use crate::project::Project;
use crate::settings::Settings;
use crate::sources::Resolution;

pub fn run(settings: Settings, args: &LockArgs) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    if args.check {
        let stale = project.unpinned();
        let orphaned: Vec<_> = project
            .lock
            .models
            .keys()
            .filter(|id| !project.manifest.models.contains_key(*id))
            .collect();
        if stale.is_empty() && orphaned.is_empty() {
            eprintln!("models.lock is up to date.");
            return Ok(ExitCode::SUCCESS);
        }
        for id in &stale {
            eprintln!("  {id}: needs resolving");
        }
        for id in &orphaned {
            eprintln!("  {id}: in models.lock but no longer in models.yaml");
        }
        eprintln!("models.lock is out of date; run `modelctl lock`.");
        return Ok(ExitCode::FAILURE);
    }
    project.check_locked()?;
    let resolutions = project.resolve_unpinned()?;

    let mut next = Lockfile::default();
    let mut failed = Vec::new();
    for id in project.manifest.models.keys() {
        match resolutions.get(id) {
            Some(Resolution::Resolved(model)) => {
                eprintln!("  resolved {id}");
                next.models.insert(id.clone(), model.clone());
            }
            Some(Resolution::Failed { reason }) => {
                failed.push(format!("{id}: {reason}"));
                if let Some(old) = project.lock.models.get(id) {
                    next.models.insert(id.clone(), old.clone());
                }
            }
            None => {
                if let Some(old) = project.lock.models.get(id) {
                    next.models.insert(id.clone(), old.clone());
                }
            }
        }
    }
    let path = &project.settings.lock_path;
    if crate::lock::write(path, &next)? {
        eprintln!("Wrote `{}`.", crate::manifest::display_name(path));
    } else {
        eprintln!("`{}` is unchanged.", crate::manifest::display_name(path));
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{} could not be resolved:",
        if failed.len() == 1 {
            "1 model"
        } else {
            "some models"
        }
    );
    for f in &failed {
        eprintln!("  {f}");
    }
    Ok(ExitCode::FAILURE)
}
