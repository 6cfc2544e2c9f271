//! One reconcile round: load, scan, plan, apply — what `watch` does on every wake and what the
//! API does after each change it makes to models.yaml.
//!
//! A round takes the store lock like `apply` (so the CLI, `watch` and the API never apply at
//! once), and differs from `apply` in three ways: a models.yaml that cannot be used, or that
//! declares no models at all (what a half-written save can look like), is reported and
//! skipped, so the store keeps its last good state; deletions are held back
//! unless the round prunes; and a round can be narrowed to one model, which leaves every other
//! model out of its plan (another model that cannot be resolved does not fail it; the model
//! itself does). Its reports go to the log (stderr) and, when the API is listening, to its
//! event stream as well.

use std::process::ExitCode;
use std::sync::Arc;

use miette::Result;
use serde_json::json;

use super::execute::{ExecOptions, execute, finish, refresh_active_json, reporter_for, write_lock};
use crate::apply::progress::{EventSink, JsonReporter, Reporter, Tee};
use crate::manifest::ManifestError;
use crate::names::ModelId;
use crate::plan::{Action, Style};
use crate::project::Project;
use crate::settings::Settings;
use crate::store::StatCache;

/// What a round does.
pub(crate) struct Round<'a> {
    /// Only this model's part of the plan, or everything.
    pub only: Option<&'a ModelId>,
    /// Carry out deletions (within `only`); otherwise they are shown and held back.
    pub prune: bool,
    pub options: ExecOptions,
    /// Why the round runs, for the log (empty: the drift timer).
    pub reason: &'a str,
    /// Also told as JSON events (the API's event stream).
    pub events: Option<Arc<dyn EventSink>>,
}

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Nothing needed doing.
    UpToDate,
    Applied,
    /// models.yaml could not be used; the store was left as it was.
    Skipped,
}

/// Plans and applies one round; an error means the round failed (and is worth retrying).
pub(crate) fn reconcile(settings: &Settings, round: &Round) -> Result<Ended> {
    let tell = |event: serde_json::Value| {
        if let Some(sink) = &round.events {
            sink.emit(event);
        }
    };
    let project = match Project::load(settings.clone()) {
        Ok(p) => p,
        Err(e) => {
            report_unusable(settings, &e);
            tell(json!({"event": "error", "model": null, "message": format!(
                "models.yaml cannot be used as it is ({e}); the store is kept as it was")}));
            return Ok(Ended::Skipped);
        }
    };
    if declares_nothing(&project, round, &tell) {
        return Ok(Ended::Skipped);
    }
    let (project, _lock) = project.lock_for_changes()?;
    if declares_nothing(&project, round, &tell) {
        return Ok(Ended::Skipped);
    }
    let mut cache = StatCache::load(&project.store.stat_cache_path());
    let state = project.scan_with(&mut cache)?;
    project.share_with_machine_cache(&state);
    let mut plan = project.plan(&state)?;
    if let Some(id) = round.only {
        plan.narrow_to(id);
    }
    let held = if round.prune {
        0
    } else {
        plan.hold_deletions()
    };
    if !plan.errors.is_empty() {
        for e in &plan.errors {
            crate::log_line!("error: {}", e.message);
            tell(json!({"event": "error", "model": e.model, "message": e.message}));
        }
        return Err(miette::miette!(
            "the plan cannot be applied: {}",
            plan.errors[0].message
        ));
    }
    // A round for one model that cannot be resolved is not up to date: it goes on, and the
    // executor fails it with the reason. A whole round with nothing else to do stays quiet
    // about unresolved models, so that `watch` does not fail every wake for them.
    let unresolved_target = round.only.is_some() && plan.totals.unresolved > 0;
    if !plan
        .actions
        .iter()
        .any(|a| !matches!(a, Action::Hook { .. }))
        && plan.lock_changes.is_empty()
        && !unresolved_target
    {
        let _ = cache.save(&project.store.stat_cache_path());
        refresh_active_json(&project)?;
        if !round.reason.is_empty() {
            crate::log_line!("{}: up to date", round.reason);
        }
        return Ok(Ended::UpToDate);
    }
    let why = if round.reason.is_empty() {
        "drift found"
    } else {
        round.reason
    };
    crate::log_line!(
        "{why}: applying {} action{}{}",
        plan.actions.len(),
        if plan.actions.len() == 1 { "" } else { "s" },
        if held > 0 {
            format!(
                " ({held} deletion{} held back; --prune carries them out)",
                if held == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        }
    );
    tell(json!({"event": "plan", "reason": why, "plan": &plan}));
    let next_lock = plan.next_lock.clone();
    let log = reporter_for(&None, plan.totals.download_bytes, project.settings.printer);
    let reporter: Arc<dyn Reporter> = match &round.events {
        Some(sink) => Arc::new(Tee(log, Arc::new(JsonReporter(sink.clone())))),
        None => log,
    };
    let (outcome, elapsed, cache) = execute(
        &project,
        &plan,
        &next_lock,
        reporter.clone(),
        round.options,
        cache,
    )?;
    let note = write_lock(&project, &next_lock, &outcome)?;
    let code = finish(
        &project,
        cache,
        &outcome,
        elapsed,
        note,
        reporter.as_ref(),
        "Applied",
    )?;
    if code == ExitCode::SUCCESS {
        return Ok(Ended::Applied);
    }
    let why = match (outcome.interrupted, outcome.errors.first()) {
        (true, _) => "interrupted".to_owned(),
        (false, Some(first)) if outcome.errors.len() > 1 => {
            format!("{first} (and {} more)", outcome.errors.len() - 1)
        }
        (false, Some(first)) => first.clone(),
        (false, None) => "see the log".to_owned(),
    };
    Err(miette::miette!("the round did not complete: {why}"))
}

/// A whole round from a models.yaml that declares no models is refused: an editor's
/// half-written save can look like this, and reconciling it would deactivate (and with
/// `--prune` delete) every model. `apply`, which asks first, empties a store on purpose.
fn declares_nothing(project: &Project, round: &Round, tell: &dyn Fn(serde_json::Value)) -> bool {
    if round.only.is_some() || !project.manifest.models.is_empty() {
        return false;
    }
    let message = "models.yaml declares no models; keeping the store as it was (run `modelctl apply` to empty it on purpose)";
    crate::log_line!("{message}");
    tell(json!({"event": "error", "model": null, "message": message}));
    true
}

/// Says why models.yaml (or models.lock) cannot be used: an invalid file as `plan` shows
/// it, each problem at its `models.yaml:LINE:COL`.
fn report_unusable(settings: &Settings, e: &miette::Report) {
    match e.downcast_ref::<ManifestError>() {
        Some(ManifestError::Invalid(problems)) => {
            let color = settings.style_for(&std::io::stderr()) == Style::Color;
            crate::log_line!("{}", problems.render(color).trim_end_matches('\n'));
        }
        _ => crate::log_line!("{e:?}"),
    }
    crate::log_line!(
        "models.yaml cannot be used as it is; keeping the store as it was until it is fixed"
    );
}
