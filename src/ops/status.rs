//! Status rows: each model as declared, locked, present and active, the data behind `status`,
//! `list` and the API's model list. No network; the local Ollama daemon, when one answers, says
//! which Ollama models are loaded in memory.

use miette::Result;
use serde::Serialize;

use crate::lock::{LockedModel, LockedSource, fingerprint};
use crate::names::{ModelId, TypeName};
use crate::project::Project;
use crate::store::{ActivePointer, PresentModel};

/// One row of `status`.
#[derive(Debug, Serialize)]
pub(crate) struct ModelStatus {
    pub(crate) id: ModelId,
    #[serde(rename = "type")]
    pub(crate) kind: TypeName,
    pub(crate) source: String,
    pub(crate) declared: bool,
    /// Pinned in models.lock by an entry resolved from the current manifest entry.
    pub(crate) locked: bool,
    /// installed | not_installed | partial | drifted | unknown | undeclared
    pub(crate) state: &'static str,
    pub(crate) files_present: usize,
    pub(crate) files_total: usize,
    pub(crate) size: u64,
    /// `active/<type>` points at this model now.
    pub(crate) active: bool,
    /// models.yaml wants this model active.
    pub(crate) wants_active: bool,
    /// For Ollama models, when the daemon answered: loaded in memory now (`/api/ps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) loaded: Option<bool>,
}

/// Every declared model and every undeclared one in the store, as `status` shows them.
pub(crate) fn rows(project: &Project) -> Result<Vec<ModelStatus>> {
    let state = project.scan()?;
    let (loaded, daemon) = ollama_daemon(project).unzip();
    let mut rows = Vec::new();
    for (id, entry) in &project.manifest.models {
        let present = state.models.get(&(entry.kind.clone(), id.clone()));
        let locked = project
            .lock
            .models
            .get(id)
            .filter(|l| l.fingerprint == fingerprint(entry));
        let (mut state_word, files_present, files_total) = presence(locked, present);
        if let (Some(view), Some(locked)) = (&daemon, locked) {
            state_word = as_the_daemon_has_it(state_word, locked, view);
        }
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

/// What the Ollama daemon has loaded and what it has, when an Ollama model is declared and a
/// daemon answers.
fn ollama_daemon(
    project: &Project,
) -> Option<(
    Vec<crate::sources::ollama::OllamaRef>,
    crate::sources::ollama::DaemonView,
)> {
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
    runtime.block_on(async {
        let loaded = daemon.loaded().await.ok()?;
        let installed = daemon.installed().await.ok()?;
        Some((
            loaded,
            crate::sources::ollama::DaemonView::from_installed(&installed),
        ))
    })
}

/// An Ollama model recorded as installed is so only while the daemon has the pinned digest:
/// re-created or pulled again under its name it has drifted, and removed it is not installed.
fn as_the_daemon_has_it(
    word: &'static str,
    locked: &LockedModel,
    daemon: &crate::sources::ollama::DaemonView,
) -> &'static str {
    let LockedSource::Ollama { ollama, digest, .. } = &locked.source else {
        return word;
    };
    match daemon.digest_of(ollama) {
        Some(Some(now)) if word == "installed" && now != *digest => "drifted",
        Some(None) if word == "installed" => "not_installed",
        _ => word,
    }
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
