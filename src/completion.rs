//! Shell completion of what only the project knows: model ids and types.
//!
//! The scripts `modelctl completions SHELL` prints call back into modelctl on each Tab (clap's
//! dynamic completion engine, `COMPLETE=SHELL modelctl`), and these functions answer with the
//! ids and types of the models.yaml that commands would read from the shell's current
//! directory (`MODELCTL_MANIFEST` included). A missing or invalid manifest completes nothing.

use clap_complete::CompletionCandidate;

use crate::manifest::Manifest;

/// The manifest a command would read here, if there is one that parses.
fn manifest() -> Option<Manifest> {
    let path = match std::env::var_os("MODELCTL_MANIFEST") {
        Some(path) => std::path::PathBuf::from(path),
        None => crate::settings::find_manifest(&std::env::current_dir().ok()?)?,
    };
    crate::manifest::load(&path).ok()
}

/// The declared model ids, each with its type (and description) as the shell's hint.
pub fn model_ids() -> Vec<CompletionCandidate> {
    let Some(manifest) = manifest() else {
        return Vec::new();
    };
    manifest
        .models
        .iter()
        .map(|(id, entry)| {
            let help = match &entry.description {
                Some(d) => format!("{}: {d}", entry.kind),
                None => entry.kind.to_string(),
            };
            CompletionCandidate::new(id.as_str()).help(Some(help.into()))
        })
        .collect()
}

/// The model types this manifest knows (the built-in ones and those under `types:`).
pub fn types() -> Vec<CompletionCandidate> {
    let Some(manifest) = manifest() else {
        return Vec::new();
    };
    manifest
        .known_types()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// `deactivate`'s argument: a type, or the id of an active model.
pub fn types_and_active_ids() -> Vec<CompletionCandidate> {
    let Some(manifest) = manifest() else {
        return Vec::new();
    };
    let mut candidates: Vec<CompletionCandidate> = manifest
        .active
        .iter()
        .map(|(kind, id)| {
            CompletionCandidate::new(kind.as_str()).help(Some(format!("active: {id}").into()))
        })
        .collect();
    candidates.extend(manifest.active.iter().map(|(kind, id)| {
        CompletionCandidate::new(id.as_str()).help(Some(format!("the active {kind}").into()))
    }));
    candidates
}
