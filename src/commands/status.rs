//! `modelctl status`: each model as declared, locked, present and active. No network; the
//! local Ollama daemon, when one answers, says which Ollama models are loaded in memory.

use std::process::ExitCode;

use miette::Result;
use serde::Serialize;

use crate::cli::{ListArgs, StatusArgs};
use crate::lock::{LockedModel, LockedSource, fingerprint};
use crate::names::{ModelId, TypeName};
use crate::project::Project;
use crate::settings::Settings;
use crate::store::{ActivePointer, PresentModel};
use crate::units::human_bytes;

/// One row of `status`.
#[derive(Debug, Serialize)]
pub(crate) struct ModelStatus {
    pub(crate) id: ModelId,
    #[serde(rename = "type")]
    pub(crate) kind: TypeName,
    source: String,
    declared: bool,
    /// Pinned in models.lock by an entry resolved from the current manifest entry.
    locked: bool,
    /// installed | not_installed | partial | drifted | unknown | undeclared
    pub(crate) state: &'static str,
    files_present: usize,
    files_total: usize,
    size: u64,
    /// `active/<type>` points at this model now.
    pub(crate) active: bool,
    /// models.yaml wants this model active.
    wants_active: bool,
    /// For Ollama models, when the daemon answered: loaded in memory now (`/api/ps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    loaded: Option<bool>,
}

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

/// Every declared model and every undeclared one in the store, as `status` shows them.
pub(crate) fn rows(project: &Project) -> Result<Vec<ModelStatus>> {
    let state = project.scan()?;
    let loaded = loaded_models(project);
    let mut rows = Vec::new();
    for (id, entry) in &project.manifest.models {
        let present = state.models.get(&(entry.kind.clone(), id.clone()));
        let locked = project
            .lock
            .models
            .get(id)
            .filter(|l| l.fingerprint == fingerprint(entry));
        let (state_word, files_present, files_total) = presence(locked, present);
        rows.push(ModelStatus {
            id: id.clone(),
            kind: entry.kind.clone(),
            source: entry.source.kind().to_owned(),
            declared: true,
            locked: locked.is_some(),
            state: state_word,
            files_present,
            files_total,
            size: locked.map_or(0, LockedModel::total_size),
            active: matches!(state.active.get(&entry.kind), Some(ActivePointer::Model(a)) if a == id),
            wants_active: project.manifest.active.get(&entry.kind) == Some(id),
            loaded: match (&entry.source, &loaded) {
                (crate::manifest::Source::Ollama(o), Some(names)) => Some(
                    crate::sources::ollama::OllamaRef::parse(&o.ollama)
                        .is_ok_and(|want| names.iter().any(|n| n.same_model(&want))),
                ),
                _ => None,
            },
        });
    }
    for ((kind, id), present) in &state.models {
        if project
            .manifest
            .models
            .get(id)
            .is_some_and(|e| &e.kind == kind)
        {
            continue;
        }
        rows.push(ModelStatus {
            id: id.clone(),
            kind: kind.clone(),
            source: String::new(),
            declared: false,
            locked: false,
            state: "undeclared",
            files_present: present.files.len(),
            files_total: present.files.len(),
            size: present.size(),
            active: matches!(state.active.get(kind), Some(ActivePointer::Model(a)) if a == id),
            wants_active: false,
            loaded: None,
        });
    }
    Ok(rows)
}

/// What the Ollama daemon has loaded, when an Ollama model is declared and a daemon answers.
fn loaded_models(project: &Project) -> Option<Vec<crate::sources::ollama::OllamaRef>> {
    let any = project
        .manifest
        .models
        .values()
        .any(|e| matches!(e.source, crate::manifest::Source::Ollama(_)));
    if !any {
        return None;
    }
    let daemon = project.daemon().ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(daemon.loaded()).ok()
}

/// How much of a locked model is on disk.
pub(crate) fn presence(
    locked: Option<&LockedModel>,
    present: Option<&PresentModel>,
) -> (&'static str, usize, usize) {
    let Some(locked) = locked else {
        return ("unknown", present.map_or(0, |p| p.files.len()), 0);
    };
    if let LockedSource::Ollama { digest, .. } = &locked.source {
        let ok = present
            .and_then(|p| p.ollama.as_ref())
            .is_some_and(|d| d.digest == *digest);
        return (
            if ok { "installed" } else { "not_installed" },
            usize::from(ok),
            1,
        );
    }
    let total = locked.files.len();
    let Some(present) = present else {
        return ("not_installed", 0, total);
    };
    let mut good = 0;
    let mut drifted = false;
    for file in &locked.files {
        match (present.files.get(&file.path), file.sha256) {
            (Some(have), Some(want)) if have.sha256 == want => good += 1,
            (Some(have), None) if have.size == file.size => good += 1,
            (Some(_), _) => drifted = true,
            (None, _) => {}
        }
    }
    let word = if drifted {
        "drifted"
    } else if good == total {
        "installed"
    } else if good == 0 {
        "not_installed"
    } else {
        "partial"
    };
    (word, good, total)
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
