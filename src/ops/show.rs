//! The show report: one model in full, the data behind `show` and the API's model details:
//! what models.yaml declares, what models.lock pins, which files are on disk, whether it is
//! active, what it needs and whether this machine has it (GPU memory through NVML, RAM), and,
//! for an Ollama model whose daemon answers, what the daemon says about it (`/api/show`,
//! `/api/ps`). No network besides the local daemon.

use miette::Result;
use serde::Serialize;
use serde_json::Value;

use crate::lock::{LockedModel, LockedSource, fingerprint};
use crate::manifest::{ModelEntry, Source};
use crate::names::ModelId;
use crate::project::Project;
use crate::store::{ActivePointer, PresentModel};
use crate::system::{GpuFacts, SystemFacts};
use crate::units::human_bytes;

#[derive(Debug, Serialize)]
pub(crate) struct Shown {
    pub(crate) id: ModelId,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    pub(crate) source: String,
    /// The pinned commit, URL validator or manifest digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pinned: Option<String>,
    pub(crate) locked: bool,
    /// What `status` says of it: installed | not_installed | partial | drifted | unknown.
    pub(crate) state: &'static str,
    pub(crate) active: bool,
    pub(crate) wants_active: bool,
    pub(crate) files: Vec<ShownFile>,
    pub(crate) requires: Requirements,
    pub(crate) compatibility: Compatibility,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub(crate) config: serde_json::Map<String, Value>,
    /// What the Ollama daemon says, when it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ollama: Option<Value>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ShownFile {
    pub(crate) path: String,
    pub(crate) size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sha256: Option<String>,
    pub(crate) present: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Requirements {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gpu_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ram: Option<u64>,
}

/// Whether this machine meets the requirements: `true`, `false`, or unknown (`null`), each
/// with the reason.
#[derive(Debug, Serialize)]
pub(crate) struct Compatibility {
    pub(crate) fits: Option<bool>,
    pub(crate) reasons: Vec<String>,
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
        state: super::status::presence(locked, present).0,
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
        LockedSource::Ollama {
            digest,
            pinned_from: crate::lock::PinnedFrom::Daemon,
            ..
        } => format!("manifest sha256:{digest} (pinned from the Ollama daemon)"),
        LockedSource::Ollama { digest, .. } | LockedSource::Oci { digest, .. } => {
            format!("manifest sha256:{digest}")
        }
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
                    human_bytes(need)
                ));
            }
            GpuFacts::Found { gpus } => match gpus.iter().find(|g| g.memory_total >= need) {
                Some(g) => reasons.push(format!(
                    "needs {} of GPU memory; GPU {} ({}) has {}",
                    human_bytes(need),
                    g.index,
                    g.name,
                    human_bytes(g.memory_total)
                )),
                None => {
                    fits = Some(false);
                    reasons.push(format!(
                        "needs {} of GPU memory; the largest GPU has {}",
                        human_bytes(need),
                        human_bytes(facts.gpus.largest_memory().unwrap_or(0))
                    ));
                }
            },
        }
    }
    if let Some(need) = entry.requires.ram {
        match facts.ram_total {
            Some(total) if total >= need => reasons.push(format!(
                "needs {} of memory; this machine has {}",
                human_bytes(need),
                human_bytes(total)
            )),
            Some(total) => {
                fits = Some(false);
                reasons.push(format!(
                    "needs {} of memory; this machine has {}",
                    human_bytes(need),
                    human_bytes(total)
                ));
            }
            None => {
                fits = fits.and(None);
                reasons.push(format!(
                    "needs {} of memory; total memory unknown",
                    human_bytes(need)
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
