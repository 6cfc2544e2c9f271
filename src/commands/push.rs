//! `modelctl push`: locked models from the store to an OCI registry (see [`crate::ops::push`]).
//! Progress goes to stderr; stdout gets one line per model (`repository:tag@digest`), or the
//! JSON report with `--json`. A reader that closed stdout early does not fail the push,
//! which is made by then.

use std::process::ExitCode;

use miette::Result;

use crate::cli::PushArgs;
use crate::ops::push::{PushReport, PushRequest};
use crate::project::Project;
use crate::settings::Settings;

pub fn run(settings: Settings, args: &PushArgs) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    let printer = project.settings.printer;
    let request = PushRequest {
        ids: &args.ids,
        to: &args.to,
        tag: args.tag.as_deref(),
        jobs: args.jobs,
    };
    let say = |line: String| printer.say(line);
    let report = crate::ops::push::push(&project, &request, &say)?;
    for skipped in &report.skipped {
        printer.say(format_args!(
            "{}: not pushed, {}",
            skipped.id, skipped.reason
        ));
    }
    let shown = if args.json {
        printer.json(&report)
    } else {
        printer.out(render(&report))
    };
    // The push is made: a reader that went away does not make it fail.
    shown.or_else(|e| e.ignore_closed())?;
    Ok(ExitCode::SUCCESS)
}

/// `host/ns/id:tag@sha256:…`, one line per model and tag.
fn render(report: &PushReport) -> String {
    let mut out = String::new();
    for model in &report.models {
        for tag in &model.tags {
            out.push_str(&format!(
                "{}/{}:{tag}@{}\n",
                report.registry, model.repository, model.manifest_digest
            ));
        }
    }
    out
}
