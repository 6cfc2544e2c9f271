//! `modelctl plan`: resolve what is unpinned, scan the store, print the plan.

use std::process::ExitCode;

use miette::{IntoDiagnostic, Result, WrapErr};

use super::EXIT_CHANGES;
use crate::cli::PlanArgs;
use crate::ops::saved_plan::digest_of_file;
use crate::plan::SavedPlan;
use crate::project::Project;
use crate::settings::Settings;

pub fn run(mut settings: Settings, args: &PlanArgs) -> Result<ExitCode> {
    settings.mirror_only |= args.mirror_only;
    let project = Project::load(settings)?;
    project.check_locked()?;
    let state = project.scan()?;
    let plan = project.plan(&state)?;

    let printer = project.settings.printer;
    let shown = if args.json {
        printer.json(&plan)
    } else {
        let style = project.settings.style_for(&std::io::stdout());
        printer.out(crate::plan::render_text(&plan, style))
    };
    // `--out` asked for the file too: a reader that went away does not cancel that.
    shown.or_else(|e| match args.out {
        Some(_) => e.ignore_closed(),
        None => Err(e),
    })?;
    if let Some(out) = &args.out {
        let saved = SavedPlan {
            format: crate::plan::PLAN_FORMAT,
            modelctl: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: project.settings.manifest_path.display().to_string(),
            manifest_sha256: digest_of_file(&project.settings.manifest_path),
            lock_sha256: digest_of_file(&project.settings.lock_path),
            store_state: state.fingerprint(),
            next_lock: crate::lock::render(&plan.next_lock),
            plan: plan.clone(),
        };
        let mut text = serde_json::to_string_pretty(&saved).into_diagnostic()?;
        text.push('\n');
        crate::durable::write_atomic(out, text.as_bytes())
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write the plan to `{}`", out.display()))?;
        printer.say(format_args!("Saved the plan to `{}`.", out.display()));
    }

    if !plan.errors.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    let changes = plan.has_changes() || plan.totals.unresolved > 0;
    Ok(if args.detailed_exitcode && changes {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    })
}
