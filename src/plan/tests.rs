//! Table-driven tests of the planner and snapshot tests of its rendering.
//!
//! Every case is data: a manifest (YAML), a lock, a store state and machine facts go in; the
//! plan's actions, statuses and totals come out. No filesystem, network or clock is involved,
//! which is the point of keeping the planner pure.

use std::collections::BTreeMap;

use super::*;
use crate::lock::{LockedFile, LockedLayer, LockedModel, LockedSource, fingerprint};
use crate::manifest::{Manifest, parse_str};
use crate::sources::Resolution;
use crate::store::{ActivePointer, OllamaDescriptor, PresentFile, PresentModel, StoreState};
use crate::system::{GpuFacts, SystemFacts};

const GIB: u64 = 1 << 30;

fn manifest(yaml: &str) -> Manifest {
    match parse_str(yaml, "models.yaml") {
        Ok(m) => m,
        Err(p) => panic!("{}", p.render(false)),
    }
}

fn id(s: &str) -> ModelId {
    ModelId::parse(s).expect("id")
}

fn ty(s: &str) -> TypeName {
    TypeName::parse(s).expect("type")
}

fn path(s: &str) -> RelPath {
    RelPath::parse(s).expect("path")
}

fn digest(s: &str) -> Sha256 {
    Sha256::of(s.as_bytes())
}

fn facts(free: u64) -> SystemFacts {
    SystemFacts {
        free_disk: Some(free),
        disk_path: "/store".into(),
        gpus: GpuFacts::None {
            reason: "no NVIDIA GPU found".into(),
        },
        ram_total: Some(16 * GIB),
    }
}

/// Locks every model of `m` as a one-file url model whose file is `<id>.bin` with content
/// named after the id, or as an Ollama model.
fn lock_all(m: &Manifest) -> Lockfile {
    let mut lock = Lockfile::default();
    for (model_id, entry) in &m.models {
        let source = match &entry.source {
            crate::manifest::Source::Ollama(o) => LockedSource::Ollama {
                ollama: o.ollama.clone(),
                digest: digest(&format!("manifest-{model_id}")),
                layers: vec![LockedLayer {
                    media_type: "application/vnd.ollama.image.model".into(),
                    digest: digest(&format!("layer-{model_id}")),
                    size: 4 * GIB,
                }],
                pinned_from: crate::lock::PinnedFrom::Registry,
            },
            crate::manifest::Source::Url(u) => LockedSource::Url {
                url: u.url.clone(),
                final_url: None,
                etag: Some("\"e\"".into()),
                last_modified: None,
            },
            crate::manifest::Source::Oci(o) => LockedSource::Oci {
                oci: o.oci.clone(),
                digest: digest(&format!("manifest-{model_id}")),
                archives: Vec::new(),
            },
            crate::manifest::Source::Hf(h) => LockedSource::Hf {
                hf: h.hf.clone(),
                repo_type: h.repo_type,
                revision: h.revision.clone(),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
            },
        };
        let files = match &entry.source {
            crate::manifest::Source::Ollama(_) => vec![],
            _ => vec![LockedFile {
                path: path(&format!("{model_id}.bin")),
                size: 1000,
                sha256: Some(digest(model_id.as_str())),
                md5: None,
                git_oid: None,
            }],
        };
        lock.models.insert(
            model_id.clone(),
            LockedModel {
                fingerprint: fingerprint(entry),
                source,
                files,
            },
        );
    }
    lock
}

/// A store holding `models` complete (as `lock_all` pins them), their blobs, and `active`.
fn store_with(m: &Manifest, models: &[&str], active: &[(&str, &str)]) -> StoreState {
    let mut state = StoreState::default();
    for name in models {
        let entry = &m.models[&id(name)];
        let mut present = PresentModel::default();
        if let crate::manifest::Source::Ollama(o) = &entry.source {
            present.ollama = Some(OllamaDescriptor {
                ollama: o.ollama.clone(),
                digest: digest(&format!("manifest-{name}")),
            });
        } else {
            present.files.insert(
                path(&format!("{name}.bin")),
                PresentFile {
                    size: 1000,
                    sha256: digest(name),
                    git_oid: None,
                },
            );
            state.blobs.insert(digest(name), 1000);
        }
        state.models.insert((entry.kind.clone(), id(name)), present);
    }
    for (kind, model) in active {
        state
            .active
            .insert(ty(kind), ActivePointer::Model(id(model)));
    }
    state
}

const TWO_IMAGE_MODELS: &str = "
version: 1
models:
  a:
    type: image_gen
    source: { url: 'https://example.com/a.bin' }
    hooks: { activate: 'systemctl reload imagegen', deactivate: 'echo bye' }
  b:
    type: image_gen
    source: { url: 'https://example.com/b.bin' }
active:
  image_gen: b
";

const WITH_OLLAMA: &str = "
version: 1
models:
  small:
    type: llm
    source: { ollama: 'llama3.2:1b' }
  big:
    type: llm
    source: { ollama: 'llama3:8b' }
active:
  llm: big
";

fn run(m: &Manifest, lock: &Lockfile, state: &StoreState) -> Plan {
    plan(PlanInput {
        manifest: m,
        lock,
        resolutions: &BTreeMap::new(),
        state,
        facts: &facts(100 * GIB),
        hf_cache: &Default::default(),
        neighbours: &Default::default(),
        machine_cache: &Default::default(),
        ollama_blobs: &Default::default(),
        daemon: &Default::default(),
        locked: None,
    })
}

fn kinds(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| {
            let v = serde_json::to_value(a).expect("json");
            let kind = v["action"].as_str().unwrap_or("?").to_owned();
            let who = v["model"].as_str().or(v["type"].as_str()).unwrap_or("?");
            format!("{kind} {who}")
        })
        .collect()
}

#[test]
fn planner_cases() {
    let m = manifest(TWO_IMAGE_MODELS);
    let lock = lock_all(&m);
    let o = manifest(WITH_OLLAMA);
    let olock = lock_all(&o);
    struct Case {
        name: &'static str,
        manifest: Manifest,
        lock: Lockfile,
        state: StoreState,
        expect: &'static [&'static str],
    }
    let mut blob_only = StoreState::default();
    blob_only.blobs.insert(digest("a"), 1000);
    let mut drifted = store_with(&m, &["a", "b"], &[("image_gen", "b")]);
    if let Some(p) = drifted.models.get_mut(&(ty("image_gen"), id("a"))) {
        p.files.insert(
            path("a.bin"),
            PresentFile {
                size: 1000,
                sha256: digest("tampered"),
                git_oid: None,
            },
        );
    }
    drifted.blobs.remove(&digest("a"));
    let mut stray = store_with(&m, &["a", "b"], &[("image_gen", "b")]);
    if let Some(p) = stray.models.get_mut(&(ty("image_gen"), id("a"))) {
        p.files.insert(
            path("notes.txt"),
            PresentFile {
                size: 5,
                sha256: digest("n"),
                git_oid: None,
            },
        );
    }
    let cases = vec![
        Case {
            name: "empty store: download both, activate b",
            manifest: m.clone(),
            lock: lock.clone(),
            state: StoreState::default(),
            expect: &["download a", "download b", "activate image_gen"],
        },
        Case {
            name: "a blob already present is linked, not downloaded",
            manifest: m.clone(),
            lock: lock.clone(),
            state: blob_only,
            expect: &["reuse a", "download b", "activate image_gen"],
        },
        Case {
            name: "a complete store needs nothing",
            manifest: m.clone(),
            lock: lock.clone(),
            state: store_with(&m, &["a", "b"], &[("image_gen", "b")]),
            expect: &[],
        },
        Case {
            name: "a tampered file is replaced",
            manifest: m.clone(),
            lock: lock.clone(),
            state: drifted,
            expect: &["download a"],
        },
        Case {
            name: "a stray file in a model directory is removed",
            manifest: m.clone(),
            lock: lock.clone(),
            state: stray,
            expect: &["delete_file a"],
        },
        Case {
            name: "switching the active model swaps and runs both hooks",
            manifest: m.clone(),
            lock: lock.clone(),
            state: store_with(&m, &["a", "b"], &[("image_gen", "a")]),
            expect: &["swap image_gen", "hook a"],
        },
        Case {
            name: "an undeclared model is deleted after the swaps",
            manifest: manifest(&TWO_IMAGE_MODELS.replace("  a:\n    type: image_gen\n    source: { url: 'https://example.com/a.bin' }\n    hooks: { activate: 'systemctl reload imagegen', deactivate: 'echo bye' }\n", "")),
            lock: lock.clone(),
            state: store_with(&m, &["a", "b"], &[("image_gen", "a")]),
            expect: &["swap image_gen", "delete a"],
        },
        Case {
            name: "an Ollama swap loads the new model and unloads the old one",
            manifest: o.clone(),
            lock: olock.clone(),
            state: store_with(&o, &["small", "big"], &[("llm", "small")]),
            expect: &["swap llm", "load big", "unload small"],
        },
        Case {
            name: "a missing Ollama model is pulled",
            manifest: o.clone(),
            lock: olock.clone(),
            state: store_with(&o, &["small"], &[]),
            expect: &["pull big", "activate llm", "load big"],
        },
    ];
    for case in cases {
        let plan = run(&case.manifest, &case.lock, &case.state);
        assert_eq!(kinds(&plan), case.expect, "case: {}", case.name);
        assert_eq!(
            plan,
            run(&case.manifest, &case.lock, &case.state),
            "deterministic: {}",
            case.name
        );
    }
}

#[test]
fn deleting_a_model_frees_only_blobs_nothing_else_uses() {
    let m = manifest(TWO_IMAGE_MODELS);
    let lock = lock_all(&m);
    let mut state = store_with(&m, &["a", "b"], &[("image_gen", "b")]);
    let mut old = PresentModel::default();
    old.files.insert(
        path("shared.bin"),
        PresentFile {
            size: 1000,
            sha256: digest("b"),
            git_oid: None,
        },
    );
    old.files.insert(
        path("own.bin"),
        PresentFile {
            size: 700,
            sha256: digest("own"),
            git_oid: None,
        },
    );
    state.blobs.insert(digest("own"), 700);
    state.models.insert((ty("tts"), id("old")), old);
    let plan = run(&m, &lock, &state);
    assert_eq!(plan.totals.deletes, 1);
    assert_eq!(
        plan.totals.freed_bytes, 700,
        "the blob shared with `b` is kept"
    );
    let removed = plan
        .models
        .iter()
        .find(|p| p.id == id("old"))
        .expect("listed");
    assert_eq!(removed.status, ModelStatus::Removed);
}

#[test]
fn an_unpinned_model_is_reported_and_gets_no_file_actions() {
    let m = manifest(TWO_IMAGE_MODELS);
    let mut lock = lock_all(&m);
    lock.models.remove(&id("a"));
    let mut resolutions = BTreeMap::new();
    resolutions.insert(
        id("a"),
        Resolution::Failed {
            reason: "offline".into(),
        },
    );
    let plan = plan(PlanInput {
        manifest: &m,
        lock: &lock,
        resolutions: &resolutions,
        state: &StoreState::default(),
        facts: &facts(100 * GIB),
        hf_cache: &Default::default(),
        neighbours: &Default::default(),
        machine_cache: &Default::default(),
        ollama_blobs: &Default::default(),
        daemon: &Default::default(),
        locked: None,
    });
    let a = plan
        .models
        .iter()
        .find(|p| p.id == id("a"))
        .expect("listed");
    assert_eq!(
        a.status,
        ModelStatus::Unresolved {
            reason: "offline".into()
        }
    );
    assert_eq!(plan.model_actions(&id("a")).count(), 0);
    assert_eq!(plan.totals.unresolved, 1);
    assert!(!plan.next_lock.models.contains_key(&id("a")));
}

#[test]
fn a_changed_entry_is_re_resolved_and_shown_as_a_diff() {
    let m = manifest(TWO_IMAGE_MODELS);
    let lock = lock_all(&m);
    let changed = manifest(
        &TWO_IMAGE_MODELS.replace("https://example.com/a.bin", "https://example.com/v2/a.bin"),
    );
    let mut new = lock.models[&id("a")].clone();
    new.fingerprint = fingerprint(&changed.models[&id("a")]);
    new.source = LockedSource::Url {
        url: "https://example.com/v2/a.bin".into(),
        final_url: None,
        etag: Some("\"f\"".into()),
        last_modified: None,
    };
    new.files[0].sha256 = Some(digest("a2"));
    let mut resolutions = BTreeMap::new();
    resolutions.insert(
        id("a"),
        Resolution::Resolved {
            model: new.clone(),
            note: None,
        },
    );
    let plan = plan(PlanInput {
        manifest: &changed,
        lock: &lock,
        resolutions: &resolutions,
        state: &store_with(&m, &["a", "b"], &[("image_gen", "b")]),
        facts: &facts(100 * GIB),
        hf_cache: &Default::default(),
        neighbours: &Default::default(),
        machine_cache: &Default::default(),
        ollama_blobs: &Default::default(),
        daemon: &Default::default(),
        locked: None,
    });
    assert_eq!(
        plan.lock_changes,
        vec![LockChange {
            model: id("a"),
            change: LockChangeKind::Updated
        }]
    );
    assert_eq!(plan.next_lock.models[&id("a")], new);
    let diff = plan.models[0].diff.as_deref().expect("a diff");
    let line = |sign: char, text: &str| {
        diff.lines()
            .any(|l| l.starts_with(sign) && l.contains(text))
    };
    assert!(line('-', "url: \"https://example.com/a.bin\""), "{diff}");
    assert!(line('+', "url: \"https://example.com/v2/a.bin\""), "{diff}");
    assert_eq!(kinds(&plan), ["download a"]);
}

#[test]
fn a_plan_that_does_not_fit_on_disk_is_refused() {
    let m = manifest(TWO_IMAGE_MODELS);
    let lock = lock_all(&m);
    let plan = plan(PlanInput {
        manifest: &m,
        lock: &lock,
        resolutions: &BTreeMap::new(),
        state: &StoreState::default(),
        facts: &facts(1500),
        hf_cache: &Default::default(),
        neighbours: &Default::default(),
        machine_cache: &Default::default(),
        ollama_blobs: &Default::default(),
        daemon: &Default::default(),
        locked: None,
    });
    assert_eq!(plan.disk.peak_bytes, 2000);
    assert!(!plan.disk.fits);
    assert_eq!(plan.errors.len(), 1, "{:?}", plan.errors);
    assert!(plan.errors[0].message.contains("not enough disk space"));
}

#[test]
fn a_manifest_checksum_that_contradicts_the_lock_is_an_error() {
    let wrong = Sha256::of(b"something else");
    let yaml = TWO_IMAGE_MODELS.replace(
        "    source: { url: 'https://example.com/b.bin' }\n",
        &format!("    source: {{ url: 'https://example.com/b.bin' }}\n    files: {{ b.bin: {{ sha256: {wrong} }} }}\n"),
    );
    let m = manifest(&yaml);
    let mut lock = lock_all(&m);
    if let Some(b) = lock.models.get_mut(&id("b")) {
        b.files[0].sha256 = Some(digest("b"));
    }
    let plan = run(&m, &lock, &StoreState::default());
    assert_eq!(plan.errors.len(), 1, "{:?}", plan.errors);
    assert!(plan.errors[0].message.contains("b.bin"));
}

#[test]
fn gpu_requirements_warn_but_never_fail() {
    let yaml = TWO_IMAGE_MODELS.replace(
        "  b:\n    type: image_gen\n",
        "  b:\n    type: image_gen\n    requires: { gpu_memory: 8GiB }\n",
    );
    let m = manifest(&yaml);
    let plan = run(&m, &lock_all(&m), &StoreState::default());
    assert!(plan.errors.is_empty());
    assert_eq!(plan.warnings.len(), 1);
    assert!(plan.warnings[0].message.contains("no NVIDIA GPU found"));
    assert!(plan.warnings[0].message.contains("b 8.0 GiB"));
}

#[test]
fn rendered_plan_snapshot() {
    let m = manifest(TWO_IMAGE_MODELS);
    let mut lock = lock_all(&m);
    lock.models.remove(&id("b"));
    let mut resolutions = BTreeMap::new();
    resolutions.insert(
        id("b"),
        Resolution::Failed {
            reason: "`--offline` was passed, so the URL's size and validators cannot be fetched"
                .into(),
        },
    );
    let mut state = StoreState::default();
    let mut old = PresentModel::default();
    old.files.insert(
        path("voice.pth"),
        PresentFile {
            size: 1_700_000_000,
            sha256: digest("voice"),
            git_oid: None,
        },
    );
    state.blobs.insert(digest("voice"), 1_700_000_000);
    state.models.insert((ty("tts"), id("old-voice")), old);
    state
        .active
        .insert(ty("tts"), ActivePointer::Model(id("old-voice")));
    let plan = plan(PlanInput {
        manifest: &m,
        lock: &lock,
        resolutions: &resolutions,
        state: &state,
        facts: &facts(100_000_000_000),
        hf_cache: &Default::default(),
        neighbours: &Default::default(),
        machine_cache: &Default::default(),
        ollama_blobs: &Default::default(),
        daemon: &Default::default(),
        locked: None,
    });
    insta::assert_snapshot!(render_text(&plan, Style::Plain));
    insta::assert_json_snapshot!(plan);
}

#[test]
fn rendered_no_change_plan_snapshot() {
    let m = manifest(TWO_IMAGE_MODELS);
    let lock = lock_all(&m);
    let state = store_with(&m, &["a", "b"], &[("image_gen", "b")]);
    let plan = run(&m, &lock, &state);
    assert!(!plan.has_changes());
    insta::assert_snapshot!(render_text(&plan, Style::Plain));
}

/// TWO_IMAGE_MODELS with `b` unpinned and unresolvable, on an empty store.
fn plan_with_b_unresolved(free: u64) -> Plan {
    let m = manifest(TWO_IMAGE_MODELS);
    let mut lock = lock_all(&m);
    lock.models.remove(&id("b"));
    let mut resolutions = BTreeMap::new();
    resolutions.insert(
        id("b"),
        Resolution::Failed {
            reason: "the server refused the connection".into(),
        },
    );
    plan(PlanInput {
        manifest: &m,
        lock: &lock,
        resolutions: &resolutions,
        state: &StoreState::default(),
        facts: &facts(free),
        hf_cache: &Default::default(),
        neighbours: &Default::default(),
        machine_cache: &Default::default(),
        ollama_blobs: &Default::default(),
        daemon: &Default::default(),
        locked: None,
    })
}

fn listed(plan: &Plan) -> Vec<&str> {
    plan.models.iter().map(|m| m.id.as_str()).collect()
}

#[test]
fn narrowing_to_a_model_leaves_an_unresolved_other_out_of_the_plan() {
    let whole = plan_with_b_unresolved(100 * GIB);
    assert_eq!(whole.totals.unresolved, 1);

    let mut a = whole.clone();
    a.narrow_to(&id("a"));
    assert_eq!(listed(&a), ["a"]);
    assert_eq!(kinds(&a), ["download a"], "b's activation is not a's");
    assert_eq!(a.unresolved().count(), 0);
    assert_eq!(a.totals.unresolved, 0);
    assert_eq!(a.totals.downloads, 1);
    assert_eq!(a.totals.activations, 0);
    assert_eq!(a.model_actions(&id("a")).count(), 1);
    assert_eq!(a.next_lock, whole.next_lock, "the lock is left whole");

    let mut b = whole;
    b.narrow_to(&id("b"));
    assert_eq!(listed(&b), ["b"]);
    assert_eq!(
        b.unresolved().collect::<Vec<_>>(),
        [(&id("b"), "the server refused the connection")],
        "the model itself still fails with its own reason"
    );
    assert_eq!(b.totals.unresolved, 1);
    assert_eq!(kinds(&b), ["activate image_gen"]);
}

#[test]
fn narrowing_drops_the_notices_of_models_left_out_and_checks_the_disk_again() {
    let wrong = Sha256::of(b"something else");
    let yaml = TWO_IMAGE_MODELS.replace(
        "    source: { url: 'https://example.com/b.bin' }\n",
        &format!("    source: {{ url: 'https://example.com/b.bin' }}\n    files: {{ b.bin: {{ sha256: {wrong} }} }}\n"),
    );
    let m = manifest(&yaml);
    let lock = lock_all(&m);
    let whole = plan(PlanInput {
        manifest: &m,
        lock: &lock,
        resolutions: &BTreeMap::new(),
        state: &StoreState::default(),
        facts: &facts(1500),
        hf_cache: &Default::default(),
        neighbours: &Default::default(),
        machine_cache: &Default::default(),
        ollama_blobs: &Default::default(),
        daemon: &Default::default(),
        locked: None,
    });
    assert!(!whole.disk.fits);
    assert_eq!(whole.errors.len(), 2, "{:?}", whole.errors);

    let mut a = whole.clone();
    a.narrow_to(&id("a"));
    assert!(a.errors.is_empty(), "{:?}", a.errors);
    assert_eq!(a.disk.peak_bytes, 1000);
    assert!(a.disk.fits);

    let mut b = whole;
    b.narrow_to(&id("b"));
    assert_eq!(b.errors.len(), 1, "b's own error stays: {:?}", b.errors);
    assert_eq!(b.errors[0].model, Some(id("b")));
    assert!(b.disk.fits);
}

#[test]
fn narrowing_to_the_new_active_model_keeps_its_swap_and_the_old_models_unload() {
    let o = manifest(WITH_OLLAMA);
    let state = store_with(&o, &["small", "big"], &[("llm", "small")]);
    let whole = run(&o, &lock_all(&o), &state);

    let mut big = whole.clone();
    big.narrow_to(&id("big"));
    assert_eq!(kinds(&big), ["swap llm", "load big", "unload small"]);
    assert_eq!(listed(&big), ["big"]);
    assert_eq!(big.activations().count(), 3);
    assert_eq!(big.model_actions(&id("big")).count(), 0);
    assert_eq!(big.totals.swaps, 1);

    let mut small = whole;
    small.narrow_to(&id("small"));
    assert!(
        small.actions.is_empty(),
        "the still active model is not unloaded by a round about it alone: {:?}",
        small.actions
    );
    assert_eq!(listed(&small), ["small"]);
    assert_eq!(small.totals, Totals::default());

    // A hook goes with the pointer change it belongs to, whichever model it is of.
    let m = manifest(TWO_IMAGE_MODELS);
    let whole = run(
        &m,
        &lock_all(&m),
        &store_with(&m, &["a", "b"], &[("image_gen", "a")]),
    );
    let mut b = whole.clone();
    b.narrow_to(&id("b"));
    assert_eq!(kinds(&b), ["swap image_gen", "hook a"]);
    let mut a = whole;
    a.narrow_to(&id("a"));
    assert!(a.actions.is_empty(), "{:?}", a.actions);
}

#[test]
fn holding_deletions_leaves_the_removed_models_out_and_keeps_the_rest() {
    let m = manifest(TWO_IMAGE_MODELS);
    let mut state = store_with(&m, &["b"], &[("image_gen", "b")]);
    let mut old = PresentModel::default();
    old.files.insert(
        path("own.bin"),
        PresentFile {
            size: 700,
            sha256: digest("own"),
            git_oid: None,
        },
    );
    state.blobs.insert(digest("own"), 700);
    state.models.insert((ty("tts"), id("old")), old);
    let mut plan = run(&m, &lock_all(&m), &state);
    assert_eq!(kinds(&plan), ["download a", "delete old"]);
    assert_eq!(listed(&plan), ["a", "b", "old"]);

    assert_eq!(plan.hold_deletions(), 1);
    assert_eq!(kinds(&plan), ["download a"]);
    assert_eq!(listed(&plan), ["a", "b"]);
    assert_eq!(plan.totals.deletes, 0);
    assert_eq!(plan.totals.freed_bytes, 0);
    assert_eq!(plan.totals.downloads, 1);
    assert_eq!(plan.hold_deletions(), 0, "nothing more to hold");
}

#[test]
fn a_kept_model_left_with_nothing_to_do_is_up_to_date() {
    let m = manifest(TWO_IMAGE_MODELS);
    let mut plan = run(&m, &lock_all(&m), &StoreState::default());
    assert_eq!(plan.models[0].status, ModelStatus::Changes);
    plan.retain(|_| true, |a| a.is_activation());
    assert_eq!(kinds(&plan), ["activate image_gen"]);
    assert_eq!(listed(&plan), ["a", "b"]);
    assert!(
        plan.models
            .iter()
            .all(|m| m.status == ModelStatus::UpToDate),
        "{:?}",
        plan.models
    );
    assert_eq!(plan.totals.downloads, 0);
    assert_eq!(plan.totals.activations, 1);
    assert_eq!(plan.disk.peak_bytes, 0);
}

#[test]
fn the_json_document_spells_out_the_views_and_reads_back_as_the_same_plan() {
    let mut plan = plan_with_b_unresolved(100 * GIB);
    let doc = serde_json::to_value(&plan).expect("json");
    assert_eq!(doc["models"][0]["id"], "a");
    assert_eq!(doc["models"][0]["actions"][0]["action"], "download");
    assert_eq!(doc["models"][1]["actions"], serde_json::json!([]));
    assert_eq!(doc["activations"][0]["action"], "activate");
    assert_eq!(doc["actions"].as_array().map(Vec::len), Some(2));

    plan.narrow_to(&id("a"));
    let doc = serde_json::to_value(&plan).expect("json");
    assert_eq!(doc["activations"], serde_json::json!([]));
    assert_eq!(doc["models"].as_array().map(Vec::len), Some(1));
    let mut back: Plan = serde_json::from_value(doc).expect("a saved plan loads");
    back.next_lock = plan.next_lock.clone();
    assert_eq!(back, plan);
}
