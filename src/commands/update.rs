//! `modelctl update [ID…]`: re-resolve models whatever the lock says, and show what changed.

use std::process::ExitCode;

use miette::{Result, miette};

use crate::cli::UpdateArgs;
use crate::ops::select::select_ids;
use crate::project::Project;
use crate::settings::Settings;
use crate::sources::Resolution;

pub fn run(settings: Settings, args: &UpdateArgs) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    if let Some(flag) = project.settings.network.locked {
        return Err(miette!(
            help = format!("run `modelctl update` without {flag}"),
            "`update` rewrites models.lock, which {flag} forbids"
        ));
    }
    let printer = project.settings.printer;
    let ids = select_ids(&project, &args.ids)?;
    // The store proves which learned sha256s belong to their git blob ids (a lock written from
    // stale bytes loses the others, and learns them again from verified bytes).
    let state = project.scan()?;
    let resolutions = project.resolve(ids.clone(), crate::project::Learned::Proven(&state))?;
    let mut next = project.lock.clone();
    next.models
        .retain(|id, _| project.manifest.models.contains_key(id));
    let mut failed = 0;
    for id in &ids {
        match resolutions.get(id) {
            Some(Resolution::Resolved { model: new, note }) => {
                if let Some(note) = note {
                    printer.warn(format_args!("  {id}: {note}"));
                }
                match project.lock.models.get(id) {
                    Some(old) if old == new => printer.say(format_args!("  {id}: up to date")),
                    Some(old) => {
                        printer.say(format_args!("  {id}: updated"));
                        for line in crate::lock::diff_entries(old, new)
                            .lines()
                            .filter(|l| !l.starts_with(' '))
                        {
                            printer.say(format_args!("      {line}"));
                        }
                        next.models.insert(id.clone(), new.clone());
                    }
                    None => {
                        printer.say(format_args!("  {id}: pinned"));
                        next.models.insert(id.clone(), new.clone());
                    }
                }
            }
            Some(unpinned @ (Resolution::Failed { .. } | Resolution::PullToPin { .. })) => {
                let reason = unpinned.failure().unwrap_or_default();
                failed += 1;
                printer.warn(format_args!("  {id}: not updated: {reason}"));
            }
            None => {}
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
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
