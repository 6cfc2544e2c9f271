//! `modelctl status`: each model as declared, locked, present and active. No network; the
//! local Ollama daemon, when one answers, says which Ollama models are loaded in memory.

use std::process::ExitCode;

use miette::Result;

use crate::cli::{ListArgs, StatusArgs};
use crate::ops::status::{ModelStatus, rows};
use crate::project::Project;
use crate::settings::Settings;
use crate::units::human_bytes;

pub fn run(settings: Settings, args: &StatusArgs) -> Result<ExitCode> {
    report(settings, args.json, None)
}

/// `modelctl list [--type T]`: the same rows, optionally of one type only.
pub fn list(settings: Settings, args: &ListArgs) -> Result<ExitCode> {
    report(settings, args.json, args.kind.as_deref())
}

fn report(settings: Settings, json: bool, only: Option<&str>) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    if let Some(kind) = only
        && !project.manifest.known_types().iter().any(|t| t == kind)
    {
        let known = project.manifest.known_types();
        let help = match crate::diagnostic::closest(kind, known.iter().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("the types are {}", known.join(", ")),
        };
        return Err(miette::miette!(help = help, "no model type `{kind}`"));
    }
    let mut rows = rows(&project)?;
    if let Some(kind) = only {
        rows.retain(|r| r.kind.as_str() == kind);
    }
    let printer = project.settings.printer;
    if json {
        printer.json(&rows)?;
    } else {
        printer.out(render_table(&rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn render_table(rows: &[ModelStatus]) -> String {
    if rows.is_empty() {
        return "No models declared in models.yaml.\n".to_owned();
    }
    let header = [
        "MODEL", "TYPE", "SOURCE", "STATE", "FILES", "SIZE", "ACTIVE",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let active = match (r.active, r.wants_active) {
                (true, true) => "yes",
                (false, true) => "pending",
                (true, false) => "yes (to deactivate)",
                (false, false) => "",
            };
            let state = match (r.declared && !r.locked, r.loaded) {
                (true, _) => format!("{} (unlocked)", r.state),
                (false, Some(true)) => format!("{}, loaded", r.state),
                _ => r.state.to_owned(),
            };
            [
                r.id.to_string(),
                r.kind.to_string(),
                r.source.clone(),
                state,
                format!("{}/{}", r.files_present, r.files_total),
                if r.size > 0 {
                    human_bytes(r.size)
                } else {
                    "-".to_owned()
                },
                active.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == cols.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
