//! Pointers and hooks: `active/<type>`, `active.json`, and the commands run after a swap.
//!
//! Hooks run with `sh -c`, their output captured (so `--json` output stays clean), with
//! `MODELCTL_TYPE`, `MODELCTL_OLD_ID`, `MODELCTL_NEW_ID` and `MODELCTL_PATH` in their
//! environment. `active.json` is derived from the pointers actually on disk after the swaps,
//! and rewritten atomically.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::manifest::Manifest;
use crate::names::{ModelId, TypeName};
use crate::store::{ActivePointer, Store};

/// What a hook is told.
pub struct HookEnv<'a> {
    pub kind: &'a TypeName,
    pub old: Option<&'a str>,
    pub new: Option<&'a str>,
    pub path: &'a Path,
}

/// Why a hook did not succeed. The caller names the model and the event.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum HookError {
    #[error("cannot run `sh`: {0}")]
    #[diagnostic(
        code(modelctl::hook::spawn),
        help("hooks run with `sh -c`: check that `sh` is on PATH")
    )]
    Spawn(#[source] std::io::Error),
    /// The command ran and failed; `tail` is the last lines of its stderr (or stdout).
    #[error("{status}{}", shown_tail(tail))]
    #[diagnostic(
        code(modelctl::hook::failed),
        help(
            "run the hook's command by hand to see why it fails, then fix it under the model's `hooks:`"
        )
    )]
    Failed {
        status: std::process::ExitStatus,
        tail: Vec<String>,
    },
}

fn shown_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {}", tail.join(" / "))
    }
}

/// Runs a hook; `Ok` carries what it printed, `Err` its exit status and the tail of its output.
pub fn run_hook(command: &str, env: &HookEnv<'_>) -> Result<String, HookError> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("MODELCTL_TYPE", env.kind.as_str())
        .env("MODELCTL_OLD_ID", env.old.unwrap_or(""))
        .env("MODELCTL_NEW_ID", env.new.unwrap_or(""))
        .env("MODELCTL_PATH", env.path)
        .output()
        .map_err(HookError::Spawn)?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned());
    }
    let mut said = String::from_utf8_lossy(&output.stderr).into_owned();
    if said.trim().is_empty() {
        said = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    let mut tail: Vec<String> = said.lines().rev().take(3).map(str::to_owned).collect();
    tail.reverse();
    Err(HookError::Failed {
        status: output.status,
        tail,
    })
}

/// One entry of `active.json`.
#[derive(Debug, Serialize)]
struct ActiveEntry<'a> {
    id: &'a ModelId,
    path: String,
    source: &'static str,
    config: &'a BTreeMap<String, serde_json::Value>,
}

/// Brings `active.json` up to date with models.yaml when nothing else changes (a model's
/// `config` edited): rewritten only if its text differs, so watchers of it see real changes.
pub fn refresh_active_json(store: &Store, manifest: &Manifest) -> std::io::Result<()> {
    let Ok((pointers, _)) = crate::store::read_active(store) else {
        return Ok(());
    };
    if pointers.is_empty() && !store.active_json().exists() {
        return Ok(());
    }
    write_active_json(store, manifest, &pointers)
}

/// Rewrites `active.json` from the pointers on disk.
pub fn write_active_json(
    store: &Store,
    manifest: &Manifest,
    pointers: &BTreeMap<TypeName, ActivePointer>,
) -> std::io::Result<()> {
    let empty = BTreeMap::new();
    let mut doc: BTreeMap<&TypeName, ActiveEntry<'_>> = BTreeMap::new();
    for (kind, pointer) in pointers {
        let ActivePointer::Model(id) = pointer else {
            continue;
        };
        let entry = manifest.models.get(id);
        doc.insert(
            kind,
            ActiveEntry {
                id,
                path: store.model_dir(kind, id).display().to_string(),
                source: entry.map_or("", |e| e.source.kind()),
                config: entry.map_or(&empty, |e| &e.config),
            },
        );
    }
    let mut text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
    text.push('\n');
    crate::durable::write_if_changed(&store.active_json(), text.as_bytes()).map(|_| ())
}
