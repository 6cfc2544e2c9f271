//! `modelctl apply [PLANFILE]`: plan (or load a saved plan), confirm deletions, execute.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::Arc;

use miette::{IntoDiagnostic, Result, WrapErr, miette};
use serde_json::json;

use crate::apply::progress::{EventSink, Json};
use crate::cli::ApplyArgs;
use crate::lock::Lockfile;
use crate::ops::execute::{
    ExecOptions, execute, finish, refresh_active_json, reporter_for, write_lock,
};
use crate::plan::{Action, Plan, SavedPlan};
use crate::printer::{OutputError, Printer};
use crate::project::Project;
use crate::settings::Settings;
use crate::store::StatCache;
use crate::units::human_bytes;

pub fn run(mut settings: Settings, args: &ApplyArgs) -> Result<ExitCode> {
    settings.mirror_only |= args.mirror_only;
    let (project, _lock) = Project::load(settings)?.lock_for_changes()?;
    let store = &project.store;

    let cache_path = store.stat_cache_path();
    let mut cache = StatCache::load(&cache_path);
    let state = project.scan_with(&mut cache)?;
    project.share_with_machine_cache(&state);
    let (plan, next_lock) = match &args.plan_file {
        Some(file) => saved_plan(&project, file, &state.fingerprint())?,
        None => {
            let plan = project.plan(&state)?;
            let next = plan.next_lock.clone();
            (plan, next)
        }
    };

    let printer = project.settings.printer;
    let json = args.json.then(|| Arc::new(Json::new(printer)));
    match &json {
        Some(j) => j.emit(json!({"event": "plan", "plan": &plan})),
        None if printer.level() == crate::printer::Level::Quiet => {}
        None => {
            let style = project.settings.style_for(&std::io::stdout());
            let text = crate::plan::render_text(&plan, style);
            // The plan is a preview: a reader that went away does not cancel the apply.
            printer.out(text).or_else(OutputError::ignore_closed)?;
        }
    }
    if !plan.errors.is_empty() {
        return Err(miette!(
            "the plan cannot be applied: {}",
            plan.errors[0].message
        ));
    }
    if !plan.has_changes() && plan.totals.unresolved == 0 {
        finish_quietly(&project, &next_lock, &mut cache)?;
        say(
            printer,
            &json,
            "Nothing to do: the store matches models.yaml and models.lock.",
            json!({}),
        );
        return Ok(ExitCode::SUCCESS);
    }
    confirm_deletions(printer, &plan, args.yes)?;

    let reporter = reporter_for(&json, plan.totals.download_bytes, printer);
    let (outcome, elapsed, cache) = execute(
        &project,
        &plan,
        &next_lock,
        reporter.clone(),
        ExecOptions {
            jobs: args.jobs,
            connections: args.connections,
        },
        cache,
    )?;
    let lock_note = write_lock(&project, &next_lock, &outcome)?;
    finish(
        &project,
        cache,
        &outcome,
        elapsed,
        lock_note,
        reporter.as_ref(),
        "Applied",
    )
}

/// Loads `plan --out` output and checks that it still describes this project and store.
fn saved_plan(
    project: &Project,
    file: &std::path::Path,
    state: &crate::digest::Sha256,
) -> Result<(Plan, Lockfile)> {
    let text = std::fs::read_to_string(file)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the saved plan `{}`", file.display()))?;
    let saved: SavedPlan = serde_json::from_str(&text)
        .into_diagnostic()
        .wrap_err_with(|| {
            format!(
                "`{}` is not a plan saved by `modelctl plan --out`",
                file.display()
            )
        })?;
    let manifest = crate::ops::saved_plan::digest_of_file(&project.settings.manifest_path);
    let lock = crate::ops::saved_plan::digest_of_file(&project.settings.lock_path);
    if let Some(why) = saved.staleness(&manifest, &lock, state) {
        return Err(miette!(
            help = format!(
                "run `modelctl plan --out {}` again, review it, and apply the new file",
                file.display()
            ),
            "refusing to apply `{}`: {why}",
            file.display()
        ));
    }
    let next = crate::lock::parse_str(&saved.next_lock, file)?;
    Ok((saved.plan, next))
}

/// Deletions need a yes: from the terminal, or `--yes` where there is none.
fn confirm_deletions(printer: Printer, plan: &Plan, yes: bool) -> Result<()> {
    let doomed: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { model, kind, .. } => Some(format!("{model} ({kind})")),
            Action::DeleteFile { model, path, .. } => Some(format!("{model}/{path}")),
            Action::Remove { name, .. } => Some(format!("{name} (Ollama)")),
            _ => None,
        })
        .collect();
    if doomed.is_empty() || yes {
        return Ok(());
    }
    let list = doomed.join(", ");
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(miette!(
            help = "pass `--yes` to approve the deletions (there is no terminal to ask on)",
            "this apply deletes {list}"
        ));
    }
    printer.err(&format!(
        "This apply deletes {list} (freeing {} at the next `gc`). Continue? [y/N] ",
        human_bytes(plan.totals.freed_bytes)
    ));
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .into_diagnostic()?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        Ok(())
    } else {
        Err(miette!("nothing was changed"))
    }
}

/// With nothing to apply, the lock and active.json are still brought up to date.
fn finish_quietly(project: &Project, next: &Lockfile, cache: &mut StatCache) -> Result<()> {
    if project.settings.network.locked.is_none() {
        crate::lock::write(&project.settings.lock_path, next)?;
    }
    refresh_active_json(project)?;
    let _ = cache.save(&project.store.stat_cache_path());
    Ok(())
}

fn say(printer: Printer, json: &Option<Arc<Json>>, line: &str, figures: serde_json::Value) {
    match json {
        Some(j) => j.emit(json!({"event": "summary", "message": line, "totals": figures})),
        None => printer.say(line),
    }
}
