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
    let printer = project.settings.printer;
    if args.check {
        let stale = project.unpinned();
        let orphaned: Vec<_> = project
            .lock
            .models
            .keys()
            .filter(|id| !project.manifest.models.contains_key(*id))
            .collect();
        if stale.is_empty() && orphaned.is_empty() {
            printer.say("models.lock is up to date.");
            return Ok(ExitCode::SUCCESS);
        }
        for id in &stale {
            printer.warn(format_args!("  {id}: needs resolving"));
        }
        for id in &orphaned {
            printer.warn(format_args!(
                "  {id}: in models.lock but no longer in models.yaml"
            ));
        }
        printer.warn("models.lock is out of date; run `modelctl lock`.");
        return Ok(ExitCode::FAILURE);
    }
    project.check_locked()?;
    let resolutions = project.resolve_unpinned()?;

    let mut next = Lockfile::default();
    let mut failed = Vec::new();
    for id in project.manifest.models.keys() {
        match resolutions.get(id) {
            Some(Resolution::Resolved { model, note }) => {
                printer.say(format_args!("  resolved {id}"));
                if let Some(note) = note {
                    printer.warn(format_args!("  {id}: {note}"));
                }
                next.models.insert(id.clone(), model.clone());
            }
            Some(unpinned @ (Resolution::Failed { .. } | Resolution::PullToPin { .. })) => {
                let reason = unpinned.failure().unwrap_or_default();
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
        printer.say(format_args!(
            "Wrote `{}`.",
            crate::manifest::display_name(path)
        ));
    } else {
        printer.say(format_args!(
            "`{}` is unchanged.",
            crate::manifest::display_name(path)
        ));
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    printer.warn(format_args!(
        "{} could not be resolved:",
        if failed.len() == 1 {
            "1 model"
        } else {
            "some models"
        }
    ));
    for f in &failed {
        printer.warn(format_args!("  {f}"));
    }
    Ok(ExitCode::FAILURE)
}
