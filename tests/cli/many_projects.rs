//! One machine, many projects: bytes once per machine through the machine cache, a store two
//! projects share without either deleting or deactivating the other's models, and `cache
//! prune` removing exactly what no live project needs (docs/store.md, "Many projects").

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::faults::{FaultServer, pseudo_random};
use crate::support::{Project, sha256_hex};

/// A project declaring `models` (id, type, path on `server`), each pinned by sha256, with
/// `active` as given, in store `store` (relative to the project, or absolute).
fn project(
    server: &FaultServer,
    models: &[(&str, &str, &str, &[u8])],
    active: &str,
    store: &str,
) -> Project {
    let project = Project::new();
    let mut yaml = format!("version: 1\nstore: {store}\nmodels:\n");
    for (id, kind, path, bytes) in models {
        server.serve(path, bytes.to_vec());
        yaml.push_str(&format!(
            "  {id}:\n    type: {kind}\n    source: {{ url: \"{}\", sha256: {} }}\n",
            server.url(path),
            sha256_hex(bytes)
        ));
    }
    yaml.push_str(active);
    project.write("models.yaml", &yaml);
    project
}

fn ok(run: &crate::support::Run) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

fn json(run: &crate::support::Run) -> serde_json::Value {
    ok(run);
    serde_json::from_str(&run.stdout).expect("json")
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").ino()
}

/// The repro: two copies of one project with the same `store:`; the second removes
/// the voice model and applies. The first project's active voice model used to be deleted
/// and deactivated with no warning.
#[test]
fn a_project_sharing_a_store_keeps_the_models_another_project_declares() {
    let server = FaultServer::start();
    let shared = tempfile::tempdir().expect("store");
    let store = shared.path().display().to_string();
    let image = pseudo_random(4096, 1);
    let voice = pseudo_random(2048, 2);
    let models: &[(&str, &str, &str, &[u8])] = &[
        ("demo-image", "image_gen", "/image.bin", &image),
        ("demo-voice", "tts", "/voice.bin", &voice),
    ];
    let active = "active:\n  image_gen: demo-image\n  tts: demo-voice\n";
    let first = project(&server, models, active, &store);
    let second = project(&server, models, active, &store);
    ok(&first.run(&["apply", "-q"]));
    ok(&second.run(&["apply", "-q"]));

    ok(&second.run(&["remove", "demo-voice"]));
    let plan = second.run(&["plan"]);
    ok(&plan);
    assert!(!plan.stdout.contains("delete"), "{}", plan.stdout);
    assert!(
        !plan.stdout.contains("tts: demo-voice →"),
        "{}",
        plan.stdout
    );
    ok(&second.run(&["apply", "--yes"]));

    let voice_file = shared.path().join("models/tts/demo-voice/voice.bin");
    assert_eq!(std::fs::read(&voice_file).expect("still there"), voice);
    assert_eq!(
        std::fs::read_link(shared.path().join("active/tts")).expect("still active"),
        Path::new("../models/tts/demo-voice")
    );
    let status = json(&first.run(&["status", "--json"]));
    let text = status.to_string();
    assert!(!text.contains("not_installed"), "{text}");
    ok(&first.run(&["verify"]));
    // A gc in the second project leaves the first one's blobs alone.
    ok(&second.run(&["gc", "--grace", "0"]));
    ok(&first.run(&["verify"]));
}

#[test]
fn a_second_project_declaring_another_active_model_is_refused_before_anything_changes() {
    let server = FaultServer::start();
    let shared = tempfile::tempdir().expect("store");
    let store = shared.path().display().to_string();
    let a = pseudo_random(1024, 3);
    let b = pseudo_random(1024, 4);
    let models: &[(&str, &str, &str, &[u8])] = &[
        ("small", "llm", "/small.bin", &a),
        ("large", "llm", "/large.bin", &b),
    ];
    let first = project(&server, models, "active:\n  llm: small\n", &store);
    let second = project(&server, models, "active:\n  llm: large\n", &store);
    ok(&first.run(&["apply", "-q"]));
    let run = second.run(&["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let first_manifest = first.path("models.yaml").display().to_string();
    assert!(run.stderr.contains(&first_manifest), "{}", run.stderr);
    assert!(run.stderr.contains("declares `small`"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_link(shared.path().join("active/llm")).expect("active"),
        Path::new("../models/llm/small"),
        "the pointer is the first project's"
    );
    assert!(
        !second.path("models.lock").exists(),
        "nothing was written before the refusal"
    );
}

#[test]
fn the_same_id_pinned_to_other_content_in_a_shared_store_is_refused() {
    let server = FaultServer::start();
    let shared = tempfile::tempdir().expect("store");
    let store = shared.path().display().to_string();
    let old = pseudo_random(1024, 5);
    let new = pseudo_random(1024, 6);
    let first = project(&server, &[("voice", "tts", "/v1.bin", &old)], "", &store);
    let second = project(&server, &[("voice", "tts", "/v2.bin", &new)], "", &store);
    ok(&first.run(&["apply", "-q"]));
    let run = second.run(&["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&first.path("models.yaml").display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("pinned to other"), "{}", run.stderr);
    assert_eq!(
        std::fs::read(shared.path().join("models/tts/voice/v1.bin")).expect("kept"),
        old
    );
}

/// Three projects with stores of their own and one machine cache: the bytes are on disk
/// once (one inode), and the second and third applies download nothing.
#[test]
fn three_projects_keep_one_copy_of_each_blob_and_download_it_once() {
    let server = FaultServer::start();
    let a = pseudo_random(64 * 1024, 7);
    let b = pseudo_random(32 * 1024, 8);
    let models: &[(&str, &str, &str, &[u8])] = &[
        ("base", "image_gen", "/base.bin", &a),
        ("voice", "tts", "/voice.bin", &b),
    ];
    let projects: Vec<Project> = (0..3)
        .map(|_| project(&server, models, "active:\n  tts: voice\n", "./models"))
        .collect();
    let cache = projects[0].cache_dir().display().to_string();
    let env = [("MODELCTL_CACHE", cache.as_str())];
    ok(&projects[0].run_env(&["apply", "-q"], &env));
    // Past git's racy window, so the first project's stat cache remembers every file.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(&projects[0].run_env(&["plan"], &env));
    let fetched = server.body_bytes();
    assert!(fetched >= (a.len() + b.len()) as u64);

    for p in &projects[1..] {
        let plan = p.run_env(&["plan"], &env);
        ok(&plan);
        assert!(
            plan.stdout.contains("from the machine cache by hardlink"),
            "{}",
            plan.stdout
        );
        ok(&p.run_env(&["apply", "-q"], &env));
    }
    assert_eq!(server.body_bytes(), fetched, "nothing downloaded twice");
    // The other projects' links changed the shared inodes' ctime: the first project's stat
    // cache still knows them (a read-only file whose link count changed is relinked, not
    // rewritten), so its plan hashes nothing.
    let plan = projects[0].run_env(&["plan", "-v"], &env);
    ok(&plan);
    assert!(
        plan.stderr.contains(" 0 hashed (0 bytes)"),
        "{}",
        plan.stderr
    );
    let inodes: Vec<u64> = projects
        .iter()
        .map(|p| inode(&p.path("models/models/image_gen/base/base.bin")))
        .collect();
    assert!(inodes.iter().all(|i| *i == inodes[0]), "{inodes:?}");
    for p in &projects {
        ok(&p.run_env(&["verify"], &env));
        let meta = std::fs::metadata(p.path("models/models/tts/voice/voice.bin")).expect("meta");
        assert!(meta.permissions().readonly(), "store files stay read-only");
    }

    let status = json(&projects[0].run_env(&["cache", "status", "--json"], &env));
    assert_eq!(status["roots"].as_array().expect("roots").len(), 3);
    assert_eq!(status["bytes"], (a.len() + b.len()) as u64);
    assert_eq!(status["shared_bytes"], (a.len() + b.len()) as u64);
    assert_eq!(status["reclaimable_bytes"], 0);
}

/// The acceptance: after one project's directory is deleted, `cache prune` reclaims
/// exactly its unshared bytes, lists it as a dead root, and leaves the others whole.
#[test]
fn cache_prune_after_a_project_is_deleted_reclaims_exactly_its_unshared_bytes() {
    let server = FaultServer::start();
    let only_mine = pseudo_random(16 * 1024, 9);
    let shared_bytes = pseudo_random(8 * 1024, 10);
    let keeper = project(
        &server,
        &[("common", "tts", "/common.bin", &shared_bytes)],
        "",
        "./models",
    );
    let cache = keeper.cache_dir().display().to_string();
    let env = [("MODELCTL_CACHE", cache.as_str())];
    let doomed = project(
        &server,
        &[
            ("common", "tts", "/common.bin", &shared_bytes),
            ("mine", "llm", "/mine.bin", &only_mine),
        ],
        "",
        "./models",
    );
    ok(&keeper.run_env(&["apply", "-q"], &env));
    ok(&doomed.run_env(&["apply", "-q"], &env));
    let doomed_manifest = doomed.path("models.yaml").display().to_string();

    let nothing = json(&keeper.run_env(&["cache", "prune", "--grace", "0", "--json"], &env));
    assert_eq!(
        nothing["freed_bytes"], 0,
        "every blob is linked from a store"
    );

    drop(doomed);
    let dry = json(&keeper.run_env(
        &["cache", "prune", "--grace", "0", "--dry-run", "--json"],
        &env,
    ));
    assert_eq!(dry["freed_bytes"], only_mine.len() as u64);
    let pruned = json(&keeper.run_env(&["cache", "prune", "--grace", "0", "--json"], &env));
    assert_eq!(pruned["freed_bytes"], only_mine.len() as u64);
    let blobs = pruned["blobs"].as_array().expect("blobs");
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0]["sha256"], sha256_hex(&only_mine));
    assert_eq!(pruned["dead_roots"][0], doomed_manifest.as_str());

    let status = json(&keeper.run_env(&["cache", "status", "--json"], &env));
    assert_eq!(
        status["roots"].as_array().expect("roots").len(),
        1,
        "{status}"
    );
    assert_eq!(status["bytes"], shared_bytes.len() as u64);
    ok(&keeper.run_env(&["verify"], &env));
}

/// A blob pinned by a live project but linked from no store (its store was deleted) stays:
/// the project will need it at its next apply.
#[test]
fn cache_prune_keeps_what_a_live_project_pins_though_no_store_links_it() {
    let server = FaultServer::start();
    let bytes = pseudo_random(4096, 11);
    let p = project(&server, &[("m", "tts", "/m.bin", &bytes)], "", "./models");
    ok(&p.run(&["apply", "-q"]));
    std::fs::remove_dir_all(p.path("models")).expect("rm store");
    let pruned = json(&p.run(&["cache", "prune", "--grace", "0", "--json"]));
    assert_eq!(pruned["freed_bytes"], 0, "{pruned}");
    let gets = server.gets("/m.bin").len();
    ok(&p.run(&["apply", "-q"]));
    assert_eq!(
        server.gets("/m.bin").len(),
        gets,
        "taken back from the cache"
    );
    ok(&p.run(&["verify"]));
}

/// A cache blob rewritten behind modelctl's back (made writable, changed, made read-only
/// again) is hashed before use, found wrong, discarded, and the file downloaded instead.
#[test]
fn a_damaged_cache_blob_is_never_linked_into_a_store() {
    let server = FaultServer::start();
    let bytes = pseudo_random(4096, 12);
    let first = project(&server, &[("m", "tts", "/m.bin", &bytes)], "", "./models");
    let cache = first.cache_dir().display().to_string();
    let env = [("MODELCTL_CACHE", cache.as_str())];
    ok(&first.run_env(&["apply", "-q"], &env));
    // Break the link with the first store, then damage the cache's copy in place.
    let blob = first
        .cache_dir()
        .join(format!("blobs/sha256/{0:.2}/{0}", sha256_hex(&bytes)));
    let copy = std::fs::read(&blob).expect("read");
    std::fs::remove_file(&blob).expect("rm");
    let mut damaged = copy.clone();
    damaged[100] ^= 0xff;
    std::fs::write(&blob, &damaged).expect("write");
    let mut perms = std::fs::metadata(&blob).expect("meta").permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&blob, perms).expect("chmod");

    let second = project(&server, &[("m", "tts", "/m.bin", &bytes)], "", "./models");
    let before = server.gets("/m.bin").len();
    let run = second.run_env(&["apply"], &env);
    ok(&run);
    assert!(
        run.stderr
            .contains("cannot take m/m.bin from the machine cache"),
        "{}",
        run.stderr
    );
    assert_eq!(
        server.gets("/m.bin").len(),
        before + 1,
        "downloaded instead"
    );
    assert_eq!(
        std::fs::read(second.path("models/models/tts/m/m.bin")).expect("read"),
        bytes
    );
    ok(&second.run_env(&["verify"], &env));
}

#[test]
fn no_cache_keeps_the_store_self_contained() {
    let server = FaultServer::start();
    let bytes = pseudo_random(4096, 13);
    let p = project(&server, &[("m", "tts", "/m.bin", &bytes)], "", "./models");
    ok(&p.run_env(&["apply", "-q"], &[("MODELCTL_NO_CACHE", "1")]));
    assert!(
        !p.cache_dir().join("blobs").exists(),
        "nothing went into the cache"
    );
    let run = p.run_env(&["cache", "dir"], &[("MODELCTL_NO_CACHE", "1")]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("MODELCTL_NO_CACHE"), "{}", run.stderr);
    let dir = p.run(&["cache", "dir"]);
    ok(&dir);
    assert_eq!(dir.stdout.trim(), p.cache_dir().display().to_string());
}

/// `gc` after removing a model says that its bytes stay in the machine cache, and counts
/// them out of what it freed.
#[test]
fn gc_does_not_claim_bytes_the_machine_cache_still_holds() {
    let server = FaultServer::start();
    let bytes = pseudo_random(4096, 14);
    let p = project(&server, &[("m", "tts", "/m.bin", &bytes)], "", "./models");
    ok(&p.run(&["apply", "-q"]));
    ok(&p.run(&["remove", "m"]));
    ok(&p.run(&["apply", "-q", "--yes"]));
    let gc = json(&p.run(&["gc", "--grace", "0", "--json"]));
    assert_eq!(gc["blobs"].as_array().expect("blobs").len(), 1, "{gc}");
    assert_eq!(gc["freed_bytes"], 0, "{gc}");
    assert_eq!(gc["machine_cache_bytes"], bytes.len() as u64);
    let pruned = json(&p.run(&["cache", "prune", "--grace", "0", "--json"]));
    assert_eq!(pruned["freed_bytes"], bytes.len() as u64, "{pruned}");
}

/// A store whose blobs never went into the cache (made with the cache off, as a store made
/// before the cache existed; or an apply killed between publishing a blob and the cache
/// taking it) gives them to the cache at its next apply, so a second project links them.
#[test]
fn a_store_older_than_its_cache_gives_the_cache_its_blobs_at_the_next_apply() {
    let server = FaultServer::start();
    let bytes = pseudo_random(16 * 1024, 15);
    let first = project(&server, &[("m", "tts", "/m.bin", &bytes)], "", "./models");
    ok(&first.run_env(&["apply", "-q"], &[("MODELCTL_NO_CACHE", "1")]));
    let blob = first
        .cache_dir()
        .join(format!("blobs/sha256/{0:.2}/{0}", sha256_hex(&bytes)));
    assert!(!blob.exists());
    let plan = first.run(&["apply", "-q"]);
    ok(&plan);
    assert_eq!(
        inode(&blob),
        inode(&first.path("models/models/tts/m/m.bin")),
        "the cache took the store's blob"
    );

    // Killed after the store published the blob and before the cache took it.
    let killed = project(
        &server,
        &[("k", "llm", "/k.bin", &pseudo_random(8192, 16))],
        "",
        "./models",
    );
    let cache = killed.cache_dir().display().to_string();
    let run = killed.run_env(
        &["apply", "-q"],
        &[("MODELCTL_FAILPOINT", "download.before-dir-fsync")],
    );
    assert_ne!(run.code, 0, "the failpoint stops the apply");
    ok(&killed.run(&["apply", "-q"]));
    let second = project(
        &server,
        &[("k", "llm", "/k.bin", &pseudo_random(8192, 16))],
        "",
        "./models",
    );
    let gets = server.gets("/k.bin").len();
    ok(&second.run_env(&["apply", "-q"], &[("MODELCTL_CACHE", cache.as_str())]));
    assert_eq!(
        server.gets("/k.bin").len(),
        gets,
        "linked from the cache, not downloaded"
    );
}
