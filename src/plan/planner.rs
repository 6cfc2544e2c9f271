//! The planner: a pure diff of desired state (manifest + lock) against the scanned store.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::lock::{LockedModel, LockedSource, fingerprint};
use crate::manifest::{Manifest, ModelEntry, Source};
use crate::sources::Resolution;
use crate::sources::hf::cache::CacheView;
use crate::sources::ollama::DaemonView;
use crate::store::{ActivePointer, PresentModel, StoreState};
use crate::system::{GpuFacts, SystemFacts};
use crate::units::human_bytes;

use super::sharing::{MachineCacheView, Neighbours, content_id};

mod ollama;

/// Everything the planner looks at. It looks at nothing else.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub manifest: &'a Manifest,
    /// The lock as it is on disk.
    pub lock: &'a Lockfile,
    /// Fresh resolutions of the entries the lock did not pin (new or changed ones).
    pub resolutions: &'a BTreeMap<ModelId, Resolution>,
    pub state: &'a StoreState,
    pub facts: &'a SystemFacts,
    /// What the Hugging Face cache holds for the declared `hf` models.
    pub hf_cache: &'a CacheView,
    /// What the Ollama daemon has.
    pub daemon: &'a DaemonView,
    /// `--locked`/`--frozen`, which turn a drifted Ollama pin into an error.
    pub locked: Option<&'static str>,
    /// What the other projects sharing the store declare.
    pub neighbours: &'a Neighbours,
    /// What the machine cache holds of the wanted blobs.
    pub machine_cache: &'a MachineCacheView,
    /// Wanted blobs a local Ollama store holds (a GGUF pulled with `ollama pull`), by digest:
    /// `blobs/sha256-<hex>` of the right size, hashed by `apply` before it is taken.
    pub ollama_blobs: &'a BTreeMap<Sha256, std::path::PathBuf>,
}

/// Where a wanted blob already is, for a `reuse` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Store,
    MachineCache,
    HfCache,
    Ollama,
}

/// Computes the plan.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut p = Planner::default();
    let pinned = p.pin_models(&input);
    p.check_neighbours(&input, &pinned);

    let mut actions = repairs(input.state);
    for (id, entry) in &input.manifest.models {
        let present = input.state.models.get(&(entry.kind.clone(), id.clone()));
        let own = match (pinned.get(id), p.pull_to_pin.get(id)) {
            (Some(locked), _) => p.model_actions(id, entry, locked, present, &input),
            (None, Some(name)) => vec![Action::PullAndPin {
                model: id.clone(),
                name: name.clone(),
            }],
            (None, None) => Vec::new(),
        };
        p.finish_model(id, entry, pinned.get(id), !own.is_empty());
        actions.extend(own);
    }

    let desired_blobs: BTreeSet<Sha256> = p
        .next_lock
        .models
        .values()
        .flat_map(|m| m.files.iter().filter_map(|f| f.sha256))
        .collect();
    actions.extend(p.activations(&input));
    actions.extend(p.deletions(&input, &desired_blobs));
    p.models.sort_by(|a, b| a.id.cmp(&b.id));

    p.check_requirements(&input);
    let totals = totals(&actions, &p.models);
    let disk = disk_check(&totals, input.facts.free_disk, &input.facts.disk_path);
    p.errors.extend(disk_error(&disk));
    Plan {
        format: PLAN_FORMAT,
        models: p.models,
        actions,
        lock_changes: p.lock_changes,
        totals,
        disk,
        warnings: p.warnings,
        errors: p.errors,
        next_lock: p.next_lock,
    }
}

#[derive(Default)]
struct Planner {
    models: Vec<ModelPlan>,
    lock_changes: Vec<LockChange>,
    warnings: Vec<Notice>,
    errors: Vec<Notice>,
    next_lock: Lockfile,
    diffs: BTreeMap<ModelId, String>,
    unresolved: BTreeMap<ModelId, String>,
    /// Pins their source can no longer give back, with why.
    drifted: BTreeMap<ModelId, String>,
    /// Ollama models pinned once the daemon has pulled them, by the name to pull.
    pull_to_pin: BTreeMap<ModelId, String>,
}

impl Planner {
    /// Decides the locked entry of every declared model: the lock's when its fingerprint still
    /// matches, else this run's resolution; records lock changes and unresolved models.
    fn pin_models(&mut self, input: &PlanInput<'_>) -> BTreeMap<ModelId, LockedModel> {
        let mut pinned = BTreeMap::new();
        for (id, entry) in &input.manifest.models {
            let old = input.lock.models.get(id);
            if let Some(old) = old.filter(|o| o.fingerprint == fingerprint(entry)) {
                pinned.insert(id.clone(), old.clone());
                self.next_lock.models.insert(id.clone(), old.clone());
                continue;
            }
            match input.resolutions.get(id) {
                Some(Resolution::Resolved { model: new, note }) => {
                    if let Some(note) = note {
                        self.warnings.push(Notice {
                            model: Some(id.clone()),
                            message: note.clone(),
                        });
                    }
                    let change = match old {
                        Some(old) => {
                            self.diffs
                                .insert(id.clone(), crate::lock::diff_entries(old, new));
                            LockChangeKind::Updated
                        }
                        None => LockChangeKind::Added,
                    };
                    self.lock_changes.push(LockChange {
                        model: id.clone(),
                        change,
                    });
                    pinned.insert(id.clone(), new.clone());
                    self.next_lock.models.insert(id.clone(), new.clone());
                }
                Some(Resolution::PullToPin { name, reason }) => {
                    self.pull_later(id, name, reason, old.is_some());
                }
                other => {
                    let reason = match other {
                        Some(Resolution::Failed { reason }) => reason.clone(),
                        _ => "not resolved in this run".to_owned(),
                    };
                    if let Some(old) = old {
                        self.diffs.insert(
                            id.clone(),
                            crate::lock::diff_text(
                                &render_requested_locked(&old.source),
                                &render_requested(&entry.source),
                            ),
                        );
                        self.next_lock.models.insert(id.clone(), old.clone());
                    }
                    self.unresolved.insert(id.clone(), reason);
                }
            }
        }
        for id in input.lock.models.keys() {
            if !input.manifest.models.contains_key(id) {
                self.lock_changes.push(LockChange {
                    model: id.clone(),
                    change: LockChangeKind::Removed,
                });
            }
        }
        pinned
    }

    /// The actions that make one declared, pinned model complete on disk.
    fn model_actions(
        &mut self,
        id: &ModelId,
        entry: &ModelEntry,
        locked: &LockedModel,
        present: Option<&PresentModel>,
        input: &PlanInput<'_>,
    ) -> Vec<Action> {
        self.check_expectations(id, entry, locked);
        let empty = PresentModel::default();
        let present = present.unwrap_or(&empty);
        let mut actions = Vec::new();
        if let LockedSource::Ollama { .. } = &locked.source {
            return self.ollama_actions(id, locked, present, input);
        }
        for file in &locked.files {
            let have = present.files.get(&file.path);
            let (expect, _) = entry.expected_for(id.as_str(), &file.path);
            match judge_present(file, have, &expect) {
                Judged::Good { learned } => {
                    if let Some(sha256) = learned {
                        self.learn(id, &file.path, sha256);
                    }
                }
                Judged::Inconsistent { actual } => self.errors.push(Notice {
                    model: Some(id.clone()),
                    message: format!(
                        "models.lock pairs `{}` with git blob id {}, but the bytes with its sha256 \
                         have git blob id {actual}: the lock was written from stale bytes; run \
                         `modelctl update {id}` to pin it again",
                        file.path,
                        file.git_oid.map(|g| g.to_string()).unwrap_or_default(),
                    ),
                }),
                Judged::Unknown { reason } => actions.push(Action::Verify {
                    model: id.clone(),
                    path: file.path.clone(),
                    size: file.size,
                    reason,
                }),
                Judged::Wanted { replace } => {
                    let action = self.acquire(id, locked, file, &expect, replace, input);
                    actions.push(action);
                }
            }
        }
        let listed: BTreeSet<&str> = locked.files.iter().map(|f| f.path.as_str()).collect();
        for (path, file) in &present.files {
            if !listed.contains(path.as_str()) {
                actions.push(Action::DeleteFile {
                    model: id.clone(),
                    path: path.to_string(),
                    size: file.size,
                });
            }
        }
        for path in &present.foreign {
            actions.push(Action::DeleteFile {
                model: id.clone(),
                path: path.clone(),
                size: 0,
            });
        }
        if let LockedSource::Hf { commit, .. } = &locked.source
            && let crate::manifest::Source::Hf(source) = &entry.source
            && input.hf_cache.unshared.contains(id)
        {
            let repo = crate::sources::hf::Repo::of(source);
            actions.push(Action::ShareHfCache {
                model: id.clone(),
                repo: crate::sources::hf::cache::folder_name(&repo),
                commit: commit.clone(),
            });
        }
        actions
    }

    /// Records in the next lock a sha256 just learned from bytes that matched every digest
    /// known for them (a present file, a store blob or an HF-cache file, hashed by the scan).
    fn learn(&mut self, id: &ModelId, path: &RelPath, sha256: Sha256) {
        if let Some(file) = self
            .next_lock
            .models
            .get_mut(id)
            .and_then(|m| m.files.iter_mut().find(|f| &f.path == path))
        {
            file.sha256 = Some(sha256);
            file.md5 = None;
        }
    }

    /// How a wanted file gets into place: linked from an intact store blob; taken from the
    /// machine cache, the HF cache or a local Ollama store (verified again when it is taken,
    /// unless the machine cache's record vouches for it); or downloaded. A Hub regular file without a
    /// known sha256 is found by its git blob id, which the scan computed from the bytes.
    fn acquire(
        &mut self,
        id: &ModelId,
        locked: &LockedModel,
        file: &crate::lock::LockedFile,
        expect: &crate::manifest::FileExpect,
        replace: bool,
        input: &PlanInput<'_>,
    ) -> Action {
        let by_git_oid = |oids: &BTreeMap<crate::digest::GitOid, Sha256>| {
            file.git_oid.and_then(|g| oids.get(&g).copied())
        };
        let known = file.sha256.or(expect.sha256);
        let in_store = known
            .filter(|d| input.state.blobs.contains_key(d))
            .or_else(|| by_git_oid(&input.state.blob_git_oids));
        let in_machine_cache = known.filter(|d| input.machine_cache.blobs.contains_key(d));
        let in_cache = known
            .filter(|d| input.hf_cache.blobs.contains_key(d))
            .or_else(|| by_git_oid(&input.hf_cache.git_oids));
        let in_ollama = known.filter(|d| input.ollama_blobs.contains_key(d));
        // The first place that has the blob, cheapest first.
        let found = (in_store.map(|d| (d, Place::Store)))
            .or(in_machine_cache.map(|d| (d, Place::MachineCache)))
            .or(in_cache.map(|d| (d, Place::HfCache)))
            .or(in_ollama.map(|d| (d, Place::Ollama)));
        match found {
            Some((sha256, place)) => {
                if file.sha256.is_none() {
                    self.learn(id, &file.path, sha256);
                }
                let path_in = |blobs: &BTreeMap<Sha256, std::path::PathBuf>| {
                    blobs.get(&sha256).map(|p| p.display().to_string())
                };
                Action::Reuse {
                    model: id.clone(),
                    path: file.path.clone(),
                    size: file.size,
                    sha256,
                    replace,
                    machine_cache: (place == Place::MachineCache)
                        .then_some(input.machine_cache.mode),
                    hf_cache: (place == Place::HfCache)
                        .then(|| path_in(&input.hf_cache.blobs))
                        .flatten(),
                    ollama_store: (place == Place::Ollama)
                        .then(|| path_in(input.ollama_blobs))
                        .flatten(),
                }
            }
            None => Action::Download {
                model: id.clone(),
                path: file.path.clone(),
                size: file.size,
                sha256: known,
                md5: file.md5.or(expect.md5).filter(|_| known.is_none()),
                git_oid: file.git_oid.filter(|_| known.is_none()),
                from: file_origin(&locked.source, &file.path),
                replace,
                mirrors: Vec::new(),
            },
        }
    }

    /// Two projects sharing a store cannot fill one model directory with different content:
    /// the second is refused, naming the first.
    fn check_neighbours(&mut self, input: &PlanInput<'_>, pinned: &BTreeMap<ModelId, LockedModel>) {
        for (id, entry) in &input.manifest.models {
            let Some(ours) = pinned.get(id).and_then(|l| content_id(id, entry, l)) else {
                continue;
            };
            for claim in input.neighbours.claimants(&entry.kind, id) {
                if claim.content.is_some_and(|theirs| theirs != ours) {
                    self.errors.push(Notice {
                        model: Some(id.clone()),
                        message: format!(
                            "`{id}` ({}) is declared by `{}` too, pinned to other content, and both projects use this store; \
                             give the model another id in one of them, pin both to the same content, or give one project \
                             a store of its own (`store:` in models.yaml)",
                            entry.kind, claim.manifest
                        ),
                    });
                }
            }
        }
    }

    /// Whether this project may change `active/<kind>`: not when another project sharing the
    /// store declares a different active model of that type (refused), nor to deactivate a
    /// type another project declares, or one that a project that cannot be read might.
    fn may_point(
        &mut self,
        input: &PlanInput<'_>,
        kind: &TypeName,
        want: Option<&ModelId>,
    ) -> bool {
        let others = input
            .neighbours
            .active
            .get(kind)
            .map_or(&[][..], Vec::as_slice);
        let Some(want) = want else {
            return others.is_empty() && input.neighbours.unreadable.is_empty();
        };
        for (theirs, manifest) in others {
            if theirs != want {
                self.errors.push(Notice {
                    model: Some(want.clone()),
                    message: format!(
                        "`{manifest}` declares `{theirs}` the active {kind} model, and this project declares `{want}`, \
                         in the one store both use (`active/{kind}`); make them agree, or give one project a store of \
                         its own (`store:` in models.yaml)"
                    ),
                });
            }
        }
        true
    }

    /// Checksums in the manifest must agree with what the lock pins; md5-only files are weak.
    fn check_expectations(&mut self, id: &ModelId, entry: &ModelEntry, locked: &LockedModel) {
        for (path, expect) in &entry.files {
            let Some(file) = locked.files.iter().find(|f| &f.path == path) else {
                self.errors.push(Notice {
                    model: Some(id.clone()),
                    message: format!(
                        "models.yaml lists file `{path}`, which the locked source does not have"
                    ),
                });
                continue;
            };
            let sha_conflict = matches!((expect.sha256, file.sha256), (Some(a), Some(b)) if a != b);
            let md5_conflict = matches!((expect.md5, file.md5), (Some(a), Some(b)) if a != b);
            let size_conflict = expect.size.is_some_and(|s| s != file.size);
            if sha_conflict || md5_conflict || size_conflict {
                self.errors.push(Notice {
                    model: Some(id.clone()),
                    message: format!(
                        "models.yaml expects different content for `{path}` than models.lock pins; \
                         fix the checksum in models.yaml or re-resolve with `modelctl update {id}`"
                    ),
                });
            }
        }
        for file in &locked.files {
            if file.sha256.is_none() && file.md5.is_some() {
                self.warnings.push(Notice {
                    model: Some(id.clone()),
                    message: format!(
                        "`{}` is checked by md5 only, which is not collision-resistant; add its sha256",
                        file.path
                    ),
                });
            }
        }
    }

    fn finish_model(
        &mut self,
        id: &ModelId,
        entry: &ModelEntry,
        locked: Option<&LockedModel>,
        has_actions: bool,
    ) {
        let status = if let Some(reason) = self.unresolved.get(id) {
            ModelStatus::Unresolved {
                reason: reason.clone(),
            }
        } else if let Some(reason) = self.drifted.get(id) {
            ModelStatus::Drifted {
                reason: reason.clone(),
            }
        } else if !has_actions && !self.lock_changes.iter().any(|c| &c.model == id) {
            ModelStatus::UpToDate
        } else {
            ModelStatus::Changes
        };
        self.models.push(ModelPlan {
            id: id.clone(),
            kind: entry.kind.clone(),
            source: source_label(&entry.source, locked),
            status,
            diff: self.diffs.remove(id),
        });
    }

    /// Pointer changes, type by type, with the Ollama loads and hooks they entail.
    fn activations(&mut self, input: &PlanInput<'_>) -> Vec<Action> {
        let manifest = input.manifest;
        let types: BTreeSet<&TypeName> = manifest
            .active
            .keys()
            .chain(input.state.active.keys())
            .collect();
        let mut out = Vec::new();
        for kind in types {
            let want = manifest.active.get(kind);
            if !self.may_point(input, kind, want) {
                continue;
            }
            let have = input.state.active.get(kind);
            let have_id = match have {
                Some(ActivePointer::Model(id)) => Some(id),
                _ => None,
            };
            if want.is_some() && want == have_id {
                continue;
            }
            let from_label = match have {
                Some(ActivePointer::Model(id)) => Some(id.to_string()),
                Some(ActivePointer::Broken(target)) => Some(format!("(broken link to {target})")),
                None => None,
            };
            match (want, from_label) {
                (Some(to), None) => out.push(Action::Activate {
                    kind: kind.clone(),
                    to: to.clone(),
                }),
                (Some(to), Some(from)) => out.push(Action::Swap {
                    kind: kind.clone(),
                    from,
                    to: to.clone(),
                }),
                (None, Some(from)) => out.push(Action::Deactivate {
                    kind: kind.clone(),
                    from,
                }),
                (None, None) => continue,
            }
            // The new model is loaded before the old one is unloaded: the service never has
            // neither.
            if let Some(new) = want
                && let Some(name) = ollama_name(input, kind, new)
            {
                out.push(Action::Load {
                    model: new.clone(),
                    name,
                });
            }
            if let Some(old) = have_id {
                if let Some(name) = ollama_name(input, kind, old) {
                    out.push(Action::Unload {
                        model: old.clone(),
                        name,
                    });
                }
                if let Some(cmd) = manifest
                    .models
                    .get(old)
                    .and_then(|e| e.hooks.deactivate.clone())
                {
                    out.push(Action::Hook {
                        model: old.clone(),
                        event: "deactivate".into(),
                        command: cmd,
                    });
                }
            }
            if let Some(new) = want
                && let Some(cmd) = manifest
                    .models
                    .get(new)
                    .and_then(|e| e.hooks.activate.clone())
            {
                out.push(Action::Hook {
                    model: new.clone(),
                    event: "activate".into(),
                    command: cmd,
                });
            }
        }
        out
    }

    /// Model directories no longer declared (or declared under another type), unless another
    /// project sharing the store declares them, or one cannot be read.
    fn deletions(
        &mut self,
        input: &PlanInput<'_>,
        desired_blobs: &BTreeSet<Sha256>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let mut counted: BTreeSet<Sha256> = BTreeSet::new();
        for ((kind, id), present) in &input.state.models {
            let declared = input
                .manifest
                .models
                .get(id)
                .is_some_and(|e| &e.kind == kind);
            if declared || !input.neighbours.claimants(kind, id).is_empty() {
                continue;
            }
            if let Some((manifest, why)) = input.neighbours.unreadable.first() {
                self.warnings.push(Notice {
                    model: Some(id.clone()),
                    message: format!(
                        "`{id}` ({kind}) is no longer declared here, but is kept: the store is shared with `{manifest}`, which cannot be read ({why})"
                    ),
                });
                continue;
            }
            let (mut freed, mut in_machine_cache) = (0, 0);
            for file in present.files.values() {
                if !desired_blobs.contains(&file.sha256) && counted.insert(file.sha256) {
                    let bytes = input.state.blobs.get(&file.sha256).copied().unwrap_or(0);
                    match input.machine_cache.blobs.contains_key(&file.sha256) {
                        true => in_machine_cache += bytes,
                        false => freed += bytes,
                    }
                }
            }
            if let (Some(d), DaemonView::Unreachable(why)) = (&present.ollama, input.daemon) {
                // Never delete from uncertainty: the model stays until the daemon can be asked.
                self.warnings.push(Notice {
                    model: Some(id.clone()),
                    message: format!(
                        "`{id}` ({}) is no longer declared, but is kept until the Ollama daemon can remove it: {why}",
                        d.ollama
                    ),
                });
                continue;
            }
            if let Some(d) = &present.ollama {
                out.push(Action::Remove {
                    model: id.clone(),
                    name: d.ollama.clone(),
                });
            }
            let action = Action::Delete {
                model: id.clone(),
                kind: kind.clone(),
                size: present.size(),
                freed,
                in_machine_cache,
            };
            out.push(action);
            let renamed = input.manifest.models.contains_key(id);
            if renamed {
                if let Some(m) = self.models.iter_mut().find(|m| &m.id == id)
                    && m.status == ModelStatus::UpToDate
                {
                    m.status = ModelStatus::Changes;
                }
                continue;
            }
            self.models.push(ModelPlan {
                id: id.clone(),
                kind: kind.clone(),
                source: present
                    .ollama
                    .as_ref()
                    .map_or_else(String::new, |d| format!("ollama:{}", d.ollama)),
                status: ModelStatus::Removed,
                diff: None,
            });
        }
        out
    }

    /// GPU and memory needs of the active models against the machine. Advice only: a plan
    /// is never refused for want of a GPU, since the files can be prepared on any machine.
    fn check_requirements(&mut self, input: &PlanInput<'_>) {
        let mut gpu_needs: Vec<(ModelId, u64)> = Vec::new();
        for id in input.manifest.active.values() {
            let Some(entry) = input.manifest.models.get(id) else {
                continue;
            };
            if let Some(need) = entry.requires.gpu_memory {
                gpu_needs.push((id.clone(), need));
            }
            if let (Some(need), Some(total)) = (entry.requires.ram, input.facts.ram_total)
                && need > total
            {
                self.warnings.push(Notice {
                    model: Some(id.clone()),
                    message: format!(
                        "needs {} of memory; this machine has {}",
                        human_bytes(need),
                        human_bytes(total)
                    ),
                });
            }
        }
        if gpu_needs.is_empty() {
            return;
        }
        match &input.facts.gpus {
            GpuFacts::None { reason } => {
                let list: Vec<String> = gpu_needs
                    .iter()
                    .map(|(id, n)| format!("{id} {}", human_bytes(*n)))
                    .collect();
                self.warnings.push(Notice {
                    model: None,
                    message: format!(
                        "{reason}; the active models need GPU memory ({})",
                        list.join(", ")
                    ),
                });
            }
            GpuFacts::Found { gpus } => {
                let largest = input.facts.gpus.largest_memory().unwrap_or(0);
                for (id, need) in &gpu_needs {
                    if largest < *need {
                        self.warnings.push(Notice {
                            model: Some(id.clone()),
                            message: format!(
                                "needs {} of GPU memory; the largest GPU has {}",
                                human_bytes(*need),
                                human_bytes(largest)
                            ),
                        });
                    }
                }
                let total: u64 = gpus.iter().map(|g| g.memory_total).sum();
                let sum: u64 = gpu_needs.iter().map(|(_, n)| n).sum();
                if sum > total {
                    self.warnings.push(Notice {
                        model: None,
                        message: format!(
                            "the active models need {} of GPU memory together; the GPUs have {} in all",
                            human_bytes(sum),
                            human_bytes(total)
                        ),
                    });
                }
            }
        }
    }
}

/// What the planner makes of the file a model directory holds for one locked file.
enum Judged {
    /// Its bytes are the wanted ones; `learned` is their sha256 when the lock lacks it.
    Good { learned: Option<Sha256> },
    /// Its bytes match the lock's sha256 but not the git blob id the lock pairs with it.
    Inconsistent { actual: crate::digest::GitOid },
    /// Of the right size, with nothing yet computed that proves it right or wrong (an md5, a
    /// large file's git blob id, no checksum at all): hashed by `apply`, and downloaded again
    /// if it fails.
    Unknown { reason: String },
    /// Missing, or other bytes: `replace` when something is there now.
    Wanted { replace: bool },
}

/// Compares a present file with every digest known for the locked one (and a sha256 that
/// models.yaml expects, when the lock has none), by the rule `verify` uses too
/// ([`judge_digests`](crate::store::verify::judge_digests)).
fn judge_present(
    file: &crate::lock::LockedFile,
    have: Option<&crate::store::PresentFile>,
    expect: &crate::manifest::FileExpect,
) -> Judged {
    use crate::store::verify::{Pinned, Verdict, judge_digests};
    let Some(h) = have else {
        return Judged::Wanted { replace: false };
    };
    let pinned = Pinned {
        sha256: file.sha256.or(expect.sha256),
        ..Pinned::of(file)
    };
    let found = crate::store::Known {
        sha256: h.sha256,
        git_oid: h.git_oid,
    };
    match judge_digests(&pinned, h.size, &found) {
        Verdict::Matches => Judged::Good {
            learned: file.sha256.is_none().then_some(h.sha256),
        },
        Verdict::Differs => Judged::Wanted { replace: true },
        Verdict::LockInconsistent { actual } => Judged::Inconsistent { actual },
        Verdict::Unproven => Judged::Unknown {
            reason: match (pinned.git_oid, file.md5.or(expect.md5)) {
                (Some(_), _) => "checking its git blob id",
                (None, Some(_)) => "the lock has only an md5 for it",
                (None, None) => "the lock has no sha256 for it yet",
            }
            .to_owned(),
        },
    }
}

/// Blobs whose bytes do not hash to their name (a copy replaced or damaged behind modelctl's
/// back): each is published again from a model file that holds its bytes, or removed.
fn repairs(state: &StoreState) -> Vec<Action> {
    state
        .corrupt_blobs
        .iter()
        .map(|sha256| Action::RepairBlob {
            sha256: *sha256,
            from: state.models.iter().find_map(|((kind, model), present)| {
                present
                    .files
                    .iter()
                    .find(|(_, f)| f.sha256 == *sha256)
                    .map(|(path, _)| IntactCopy {
                        kind: kind.clone(),
                        model: model.clone(),
                        path: path.clone(),
                    })
            }),
        })
        .collect()
}

/// The Ollama name of a model, from the manifest or (for an undeclared one) its descriptor.
fn ollama_name(input: &PlanInput<'_>, kind: &TypeName, id: &ModelId) -> Option<String> {
    match input.manifest.models.get(id).map(|e| &e.source) {
        Some(Source::Ollama(o)) => Some(o.ollama.clone()),
        Some(_) => None,
        None => input
            .state
            .models
            .get(&(kind.clone(), id.clone()))
            .and_then(|m| m.ollama.as_ref())
            .map(|d| d.ollama.clone()),
    }
}

pub(super) fn totals(actions: &[Action], models: &[ModelPlan]) -> Totals {
    let mut t = Totals::default();
    for a in actions {
        match a {
            Action::Download { size, .. } => {
                t.downloads += 1;
                t.download_bytes += size;
            }
            Action::Reuse { .. } => t.reuses += 1,
            Action::Verify { .. } => t.verifies += 1,
            Action::Delete { freed, .. } => {
                t.deletes += 1;
                t.freed_bytes += freed;
            }
            Action::Pull { present: true, .. } => t.records += 1,
            Action::Pull { size, .. } => {
                t.pulls += 1;
                t.pull_bytes += size;
            }
            Action::PullAndPin { .. } => {
                t.pulls += 1;
                t.unsized_pulls += 1;
            }
            Action::Activate { .. } => t.activations += 1,
            Action::Swap { .. } => t.swaps += 1,
            Action::Deactivate { .. } => t.deactivations += 1,
            Action::RepairBlob { .. } => t.blob_repairs += 1,
            Action::DeleteFile { .. }
            | Action::Remove { .. }
            | Action::Load { .. }
            | Action::Unload { .. }
            | Action::ShareHfCache { .. }
            | Action::Hook { .. } => {}
        }
    }
    t.unresolved = models
        .iter()
        .filter(|m| matches!(m.status, ModelStatus::Unresolved { .. }))
        .count();
    t
}

/// Downloads land in the store before anything is deleted, so the peak is all of them.
pub(super) fn disk_check(totals: &Totals, free_disk: Option<u64>, path: &str) -> DiskCheck {
    let peak = totals.download_bytes;
    DiskCheck {
        peak_bytes: peak,
        free_bytes: free_disk,
        path: path.to_owned(),
        fits: free_disk.is_none_or(|free| peak <= free),
    }
}

/// The error that refuses a plan which does not fit on disk.
pub(super) fn disk_error(disk: &DiskCheck) -> Option<Notice> {
    (!disk.fits).then(|| Notice {
        model: None,
        message: format!(
            "not enough disk space: the plan needs {} at its peak, but only {} is free at `{}`",
            human_bytes(disk.peak_bytes),
            human_bytes(disk.free_bytes.unwrap_or(0)),
            disk.path
        ),
    })
}

/// How a model's source reads in the plan.
fn source_label(source: &Source, locked: Option<&LockedModel>) -> String {
    match (source, locked.map(|l| &l.source)) {
        (Source::Hf(h), Some(LockedSource::Hf { commit, .. })) => {
            format!("hf:{}@{}", h.hf, commit.get(..7).unwrap_or(commit))
        }
        (Source::Ollama(o), Some(LockedSource::Ollama { digest, .. })) => {
            format!("ollama:{}@{}", o.ollama, digest.short())
        }
        (Source::Oci(o), Some(LockedSource::Oci { digest, .. })) if !o.oci.contains('@') => {
            format!("oci:{}@{}", o.oci, digest.short())
        }
        (source, _) => source.label(),
    }
}

/// Where a file comes from, for display.
fn file_origin(source: &LockedSource, path: &RelPath) -> String {
    match source {
        LockedSource::Hf { hf, commit, .. } => {
            format!("hf:{hf}@{}/{path}", commit.get(..7).unwrap_or(commit))
        }
        LockedSource::Url { url, final_url, .. } => {
            crate::net::redact(final_url.as_deref().unwrap_or(url))
        }
        LockedSource::Ollama { ollama, .. } => format!("ollama:{ollama}"),
        LockedSource::Oci { oci, .. } => match source.archive_of(path) {
            Some(a) => format!(
                "oci:{oci}/{path} (in tar layer sha256:{})",
                a.digest.short()
            ),
            None => format!("oci:{oci}/{path}"),
        },
    }
}

/// The requested part of a locked source (what the manifest asked for), for diffs.
fn render_requested_locked(source: &LockedSource) -> String {
    match source {
        LockedSource::Hf { hf, revision, .. } => format!("hf: {hf}\nrevision: {revision}\n"),
        LockedSource::Url { url, .. } => format!("url: {}\n", crate::net::redact(url)),
        LockedSource::Ollama { ollama, .. } => format!("ollama: {ollama}\n"),
        LockedSource::Oci { oci, .. } => format!("oci: {oci}\n"),
    }
}

/// The requested source from the manifest, in the same shape.
fn render_requested(source: &Source) -> String {
    match source {
        Source::Hf(h) => format!("hf: {}\nrevision: {}\n", h.hf, h.revision),
        Source::Url(u) => format!("url: {}\n", crate::net::redact(&u.url)),
        Source::Ollama(o) => format!("ollama: {}\n", o.ollama),
        Source::Oci(o) => format!("oci: {}\n", o.oci),
    }
}
