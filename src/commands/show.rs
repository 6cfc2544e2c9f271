//! `modelctl show ID [--json]`: one model in full: what models.yaml declares, what models.lock
//! pins, which files are on disk, whether it is active, what it needs and whether this machine
//! has it (GPU memory through NVML, RAM), and, for an Ollama model whose daemon answers, what
//! the daemon says about it (`/api/show`, `/api/ps`). No network besides the local daemon.

use std::process::ExitCode;

use miette::Result;
use serde::Serialize;
use serde_json::Value;

use crate::cli::ShowArgs;
use crate::lock::{LockedModel, LockedSource, fingerprint};
use crate::manifest::{ModelEntry, Source};
use crate::names::ModelId;
use crate::project::Project;
use crate::settings::Settings;
use crate::store::{ActivePointer, PresentModel};
use crate::system::{GpuFacts, SystemFacts};
use crate::units::{human_bytes, human_memory};

#[derive(Debug, Serialize)]
pub(crate) struct Shown {
    id: ModelId,
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    source: String,
    /// The pinned commit, URL validator or manifest digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned: Option<String>,
    locked: bool,
    /// What `status` says of it: installed | not_installed | partial | drifted | unknown.
    pub(crate) state: &'static str,
    pub(crate) active: bool,
    wants_active: bool,
    files: Vec<ShownFile>,
    pub(crate) requires: Requirements,
    pub(crate) compatibility: Compatibility,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    config: serde_json::Map<String, Value>,
    /// What the Ollama daemon says, when it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    ollama: Option<Value>,
}

#[derive(Debug, Serialize)]
struct ShownFile {
    path: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    present: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Requirements {
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ram: Option<u64>,
}

/// Whether this machine meets the requirements: `true`, `false`, or unknown (`null`), each
/// with the reason.
#[derive(Debug, Serialize)]
pub(crate) struct Compatibility {
    fits: Option<bool>,
    reasons: Vec<String>,
}

pub fn run(settings: Settings, args: &ShowArgs) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    let id = super::update::select_ids(&project, std::slice::from_ref(&args.id))?
        .into_iter()
        .next()
        .ok_or_else(|| miette::miette!("no model `{}` in models.yaml", args.id))?;
    let shown = shown(&project, &id)?;
    let printer = project.settings.printer;
    if args.json {
        printer.json(&shown)?;
    } else {
        printer.out(render(&shown))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Everything `show` says about a declared model.
pub(crate) fn shown(project: &Project, id: &ModelId) -> Result<Shown> {
    let id = id.clone();
    let Some(entry) = project.manifest.models.get(&id) else {
        return Err(miette::miette!("no model `{id}` in models.yaml"));
    };
    let state = project.scan()?;
    let present = state.models.get(&(entry.kind.clone(), id.clone()));
    let locked = project
        .lock
        .models
        .get(&id)
        .filter(|l| l.fingerprint == fingerprint(entry));
    let facts = crate::system::gather(project.store.root());
    let shown = Shown {
        id: id.clone(),
        kind: entry.kind.to_string(),
        description: entry.description.clone(),
        source: entry.source.label(),
        pinned: locked.map(pin),
        locked: locked.is_some(),
        state: crate::commands::status::presence(locked, present).0,
        active: matches!(state.active.get(&entry.kind), Some(ActivePointer::Model(a)) if *a == id),
        wants_active: project.manifest.active.get(&entry.kind) == Some(&id),
        files: files(locked, present),
        requires: requirements(entry),
        compatibility: compatibility(entry, &facts),
        config: entry.config.clone().into_iter().collect(),
        ollama: ollama_details(project, entry),
    };
    Ok(shown)
}

fn pin(locked: &LockedModel) -> String {
    match &locked.source {
        LockedSource::Hf { commit, .. } => format!("commit {commit}"),
        LockedSource::Url { etag, url, .. } => match etag {
            Some(etag) => format!("ETag {etag}"),
            None => crate::net::redact(url),
        },
        LockedSource::Ollama { digest, .. } => format!("manifest sha256:{digest}"),
    }
}

fn files(locked: Option<&LockedModel>, present: Option<&PresentModel>) -> Vec<ShownFile> {
    let Some(locked) = locked else {
        return Vec::new();
    };
    if let LockedSource::Ollama { layers, digest, .. } = &locked.source {
        let pulled = present
            .and_then(|p| p.ollama.as_ref())
            .is_some_and(|d| d.digest == *digest);
        return layers
            .iter()
            .map(|l| ShownFile {
                path: l.media_type.clone(),
                size: l.size,
                sha256: Some(l.digest.hex()),
                present: pulled,
            })
            .collect();
    }
    locked
        .files
        .iter()
        .map(|f| {
            let have = present.and_then(|p| p.files.get(&f.path));
            ShownFile {
                path: f.path.to_string(),
                size: f.size,
                sha256: f.sha256.map(|s| s.hex()),
                present: match (have, f.sha256) {
                    (Some(h), Some(want)) => h.sha256 == want,
                    (Some(h), None) => h.size == f.size,
                    (None, _) => false,
                },
            }
        })
        .collect()
}

/// The model's needs against this machine.
/// What the model declares it needs.
pub(crate) fn requirements(entry: &ModelEntry) -> Requirements {
    Requirements {
        gpu_memory: entry.requires.gpu_memory,
        ram: entry.requires.ram,
    }
}

/// Whether a machine with `facts` meets the model's requirements.
pub(crate) fn compatibility(entry: &ModelEntry, facts: &SystemFacts) -> Compatibility {
    let mut fits = Some(true);
    let mut reasons = Vec::new();
    if let Some(need) = entry.requires.gpu_memory {
        match &facts.gpus {
            GpuFacts::None { reason } => {
                fits = None;
                reasons.push(format!(
                    "needs {} of GPU memory; {reason}",
                    human_memory(need)
                ));
            }
            GpuFacts::Found { gpus } => match gpus.iter().find(|g| g.memory_total >= need) {
                Some(g) => reasons.push(format!(
                    "needs {} of GPU memory; GPU {} ({}) has {}",
                    human_memory(need),
                    g.index,
                    g.name,
                    human_memory(g.memory_total)
                )),
                None => {
                    fits = Some(false);
                    reasons.push(format!(
                        "needs {} of GPU memory; the largest GPU has {}",
                        human_memory(need),
                        human_memory(facts.gpus.largest_memory().unwrap_or(0))
                    ));
                }
            },
        }
    }
    if let Some(need) = entry.requires.ram {
        match facts.ram_total {
            Some(total) if total >= need => reasons.push(format!(
                "needs {} of memory; this machine has {}",
                human_memory(need),
                human_memory(total)
            )),
            Some(total) => {
                fits = Some(false);
                reasons.push(format!(
                    "needs {} of memory; this machine has {}",
                    human_memory(need),
                    human_memory(total)
                ));
            }
            None => {
                fits = fits.and(None);
                reasons.push(format!(
                    "needs {} of memory; total memory unknown",
                    human_memory(need)
                ));
            }
        }
    }
    if reasons.is_empty() {
        reasons.push("declares no requirements".to_owned());
    }
    Compatibility { fits, reasons }
}

/// `/api/show` and whether `/api/ps` lists it, for an Ollama model whose daemon answers.
fn ollama_details(project: &Project, entry: &ModelEntry) -> Option<Value> {
    let Source::Ollama(source) = &entry.source else {
        return None;
    };
    let name = crate::sources::ollama::OllamaRef::parse(&source.ollama).ok()?;
    let daemon = project.daemon().ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let details = runtime.block_on(daemon.show(&name)).ok()?;
    let loaded = runtime
        .block_on(daemon.loaded())
        .is_ok_and(|names| names.iter().any(|n| n.same_model(&name)));
    let mut out = serde_json::Map::new();
    for key in ["details", "parameters", "capabilities", "modified_at"] {
        if let Some(v) = details.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    out.insert("loaded".to_owned(), Value::Bool(loaded));
    Some(Value::Object(out))
}

fn render(s: &Shown) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", s.id, s.kind);
    if let Some(d) = &s.description {
        let _ = writeln!(out, "  {d}");
    }
    let _ = writeln!(out, "  source:   {}", s.source);
    let _ = writeln!(
        out,
        "  pinned:   {}",
        s.pinned
            .as_deref()
            .unwrap_or("not locked (`modelctl lock` pins it)")
    );
    let active = match (s.active, s.wants_active) {
        (true, true) => "yes",
        (false, true) => "pending (`modelctl apply` activates it)",
        (true, false) => "yes, to be deactivated",
        (false, false) => "no",
    };
    let _ = writeln!(out, "  active:   {active}");
    if !s.files.is_empty() {
        let total: u64 = s.files.iter().map(|f| f.size).sum();
        let present = s.files.iter().filter(|f| f.present).count();
        let _ = writeln!(
            out,
            "  files:    {present}/{} present, {}",
            s.files.len(),
            human_bytes(total)
        );
        for f in &s.files {
            let mark = if f.present { "✓" } else { "·" };
            let _ = writeln!(out, "    {mark} {}  {}", f.path, human_bytes(f.size));
        }
    }
    for reason in &s.compatibility.reasons {
        let _ = writeln!(out, "  requires: {reason}");
    }
    let verdict = match s.compatibility.fits {
        Some(true) => "fits this machine",
        Some(false) => "does not fit this machine",
        None => "cannot tell whether it fits this machine",
    };
    let _ = writeln!(out, "  verdict:  {verdict}");
    if !s.config.is_empty() {
        let _ = writeln!(out, "  config:   {}", Value::Object(s.config.clone()));
    }
    if let Some(o) = &s.ollama {
        let loaded = o.get("loaded").and_then(Value::as_bool).unwrap_or(false);
        let _ = writeln!(
            out,
            "  ollama:   {}",
            if loaded { "loaded" } else { "not loaded" }
        );
        if let Some(details) = o.get("details") {
            let _ = writeln!(out, "            {details}");
        }
    }
    out
}
