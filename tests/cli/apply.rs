//! `modelctl apply` end to end: downloads into the store, links, pointers, hooks, deletions,
//! saved plans, two applies at once, resuming a killed apply, and secrets in URLs.
//!
//! The network faults are in `apply_faults.rs`; the helpers here are shared with it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::faults::{CHUNK, FaultServer, pseudo_random};
use crate::support::{Project, file_url, sha256_hex};

/// A file large enough to be fetched in ranged chunks (the engine's threshold is 16 MiB):
/// five full 4 MiB chunks and a short last one.
pub const BIG: usize = 20 * 1024 * 1024 + 4321;

/// Retries after 10 ms instead of 500. The read timeout stays generous: these tests count
/// requests and bytes, and on a loaded machine a short timeout would turn slowness into
/// retries that change the counts. Stall tests use [`STALL_ENV`].
pub const FAST: &[(&str, &str)] = &[
    ("MODELCTL_HTTP_TIMEOUT", "10"),
    ("MODELCTL_HTTP_RETRY_BASE_MS", "10"),
];

/// A 0.3 s read timeout, for the tests where a stall is what is tested.
pub const STALL_ENV: &[(&str, &str)] = &[
    ("MODELCTL_HTTP_TIMEOUT", "0.3"),
    ("MODELCTL_HTTP_RETRY_BASE_MS", "10"),
];

/// One model entry of models.yaml with a `url` source.
pub fn url_model(id: &str, kind: &str, url: &str, sha256: Option<&str>) -> String {
    let mut entry = format!("  {id}:\n    type: {kind}\n    source:\n      url: \"{url}\"\n");
    if let Some(sum) = sha256 {
        entry.push_str(&format!("      sha256: {sum}\n"));
    }
    entry
}

/// models.yaml with a store in `./store`, these entries and these active models.
pub fn manifest(entries: &[String], active: &[(&str, &str)]) -> String {
    let mut text = String::from("version: 1\nstore: ./store\nmodels:\n");
    for e in entries {
        text.push_str(e);
    }
    if !active.is_empty() {
        text.push_str("active:\n");
        for (kind, id) in active {
            text.push_str(&format!("  {kind}: {id}\n"));
        }
    }
    text
}

/// The path a blob with these bytes has in the project's store.
pub fn blob_path(project: &Project, bytes: &[u8]) -> PathBuf {
    let hex = sha256_hex(bytes);
    project.path(&format!("store/blobs/sha256/{}/{hex}", &hex[..2]))
}

/// Every file under `dir`, recursively (symlinks not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path)),
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
    out.sort();
    out
}

/// The published blobs.
pub fn blobs(project: &Project) -> Vec<PathBuf> {
    files_under(&project.path("store/blobs"))
}

/// Names of the files in the store's staging directory.
pub fn staged(project: &Project) -> Vec<String> {
    files_under(&project.path("store/.modelctl/tmp"))
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}

/// Where `active/<kind>` points, if anywhere.
pub fn active_target(project: &Project, kind: &str) -> Option<String> {
    std::fs::read_link(project.path(&format!("store/active/{kind}")))
        .ok()
        .map(|t| t.display().to_string())
}

/// `active.json`, parsed.
pub fn active_json(project: &Project) -> serde_json::Value {
    serde_json::from_str(&project.read("store/active.json")).expect("active.json is JSON")
}

/// Asserts that `bytes` are published and `models/<kind>/<id>/<file>` is a hardlink to them.
pub fn assert_installed(project: &Project, kind: &str, id: &str, file: &str, bytes: &[u8]) {
    let blob = blob_path(project, bytes);
    let stored = std::fs::read(&blob).unwrap_or_else(|e| panic!("{}: {e}", blob.display()));
    assert!(stored == bytes, "the blob holds other bytes than served");
    let model_file = project.path(&format!("store/models/{kind}/{id}/{file}"));
    let (a, b) = (
        std::fs::metadata(&blob).expect("blob"),
        std::fs::metadata(&model_file).expect("model file"),
    );
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "the model file is a hardlink to the blob"
    );
}

/// Waits for `cond`, failing the test after `limit` with what `state` says then.
pub fn wait_for(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
    state: impl Fn() -> String,
) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {what}: {}",
            state()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn apply_downloads_verifies_links_and_activates_and_a_second_apply_does_nothing() {
    let server = FaultServer::start();
    let big = pseudo_random(BIG, 1);
    let small = pseudo_random(1000, 2);
    server.serve("/big.bin", big.clone());
    server.serve("/small.bin", small.clone());
    let project = Project::with_manifest(&manifest(
        &[
            url_model(
                "big",
                "llm",
                &server.url("/big.bin"),
                Some(&sha256_hex(&big)),
            ),
            url_model("small", "tts", &server.url("/small.bin"), None),
        ],
        &[("llm", "big"), ("tts", "small")],
    ));

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_installed(&project, "llm", "big", "big.bin", &big);
    assert_installed(&project, "tts", "small", "small.bin", &small);
    assert_eq!(blobs(&project).len(), 2);
    assert!(
        staged(&project).iter().all(|n| !n.contains(".part")),
        "no partial left: {:?}",
        staged(&project)
    );

    // The large file went in 4 MiB ranges, each asked for once; the small one in one request.
    let mut ranges: Vec<String> = server
        .gets("/big.bin")
        .iter()
        .map(|r| r.range.clone().expect("ranged"))
        .collect();
    ranges.sort();
    let size = BIG as u64;
    let mut want: Vec<String> = (0..size.div_ceil(CHUNK))
        .map(|i| format!("bytes={}-{}", i * CHUNK, ((i + 1) * CHUNK).min(size) - 1))
        .collect();
    want.sort();
    assert_eq!(ranges, want);
    assert_eq!(server.gets("/small.bin").len(), 1);
    assert_eq!(
        server.body_bytes(),
        (BIG + small.len()) as u64,
        "no byte fetched twice"
    );

    assert_eq!(
        active_target(&project, "llm").as_deref(),
        Some("../models/llm/big")
    );
    assert_eq!(
        active_target(&project, "tts").as_deref(),
        Some("../models/tts/small")
    );
    let active = active_json(&project);
    assert_eq!(active["llm"]["id"], "big");
    assert_eq!(active["tts"]["id"], "small");
    assert_eq!(active["llm"]["source"], "url");
    assert!(
        active["llm"]["path"]
            .as_str()
            .expect("path")
            .ends_with("store/models/llm/big"),
        "{active}"
    );
    let lock = project.read("models.lock");
    assert!(
        lock.contains(&format!("sha256: \"{}\"", sha256_hex(&small))),
        "the sha256 learned while downloading is pinned: {lock}"
    );

    let requests = server.requests().len();
    let again = project.run_env(&["apply"], FAST);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("Nothing to do"), "{}", again.stderr);
    assert_eq!(server.body_bytes(), (BIG + small.len()) as u64);
    assert_eq!(
        server.requests().len(),
        requests,
        "a complete, locked store needs no request"
    );
}

/// Three file:// models of one type (`a`, `b`, `c`), `active` the active one, with hooks.
fn local_models(project: &Project, active: &str, hooks_for: &[(&str, &str)]) {
    let mut entries = Vec::new();
    for id in ["a", "b", "c"] {
        let rel = format!("src/{id}.bin");
        if !project.path(&rel).exists() {
            project.write(&rel, &format!("weights of {id}\n"));
        }
        let mut entry = url_model(id, "tts", &file_url(&project.path(&rel)), None);
        if let Some((_, hooks)) = hooks_for.iter().find(|(m, _)| *m == id) {
            entry.push_str(hooks);
        }
        entries.push(entry);
    }
    project.write("models.yaml", &manifest(&entries, &[("tts", active)]));
}

#[test]
fn deleting_a_model_needs_yes_and_happens_after_the_pointer_moved() {
    let project = Project::new();
    project.write("src/a.bin", "weights of a\n");
    project.write("src/b.bin", "weights of b\n");
    let a = url_model("a", "tts", &file_url(&project.path("src/a.bin")), None);
    let b = url_model("b", "tts", &file_url(&project.path("src/b.bin")), None);
    project.write(
        "models.yaml",
        &manifest(&[a.clone(), b.clone()], &[("tts", "a")]),
    );
    let run = project.run(&["apply"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        active_target(&project, "tts").as_deref(),
        Some("../models/tts/a")
    );

    project.write("models.yaml", &manifest(&[b], &[("tts", "b")]));
    let refused = project.run(&["apply"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("deletes a (tts)"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        active_target(&project, "tts").as_deref(),
        Some("../models/tts/a"),
        "nothing changed"
    );
    assert!(project.path("store/models/tts/a/a.bin").exists());

    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!project.path("store/models/tts/a").exists());
    assert_eq!(
        active_target(&project, "tts").as_deref(),
        Some("../models/tts/b")
    );
    assert_eq!(active_json(&project)["tts"]["id"], "b");
    let swapped = run
        .stderr
        .find("tts is now b")
        .expect("the swap is reported");
    let deleted = run
        .stderr
        .find("deleted a (tts)")
        .expect("the deletion too");
    assert!(
        swapped < deleted,
        "the pointer moves first:\n{}",
        run.stderr
    );
    assert!(
        blob_path(&project, b"weights of a\n").exists(),
        "blobs wait for gc"
    );
}

#[test]
fn a_saved_plan_applies_and_is_refused_once_models_yaml_changed() {
    let project = Project::new();
    project.write("src/a.bin", "weights of a\n");
    let a = url_model("a", "tts", &file_url(&project.path("src/a.bin")), None);
    project.write(
        "models.yaml",
        &manifest(std::slice::from_ref(&a), &[("tts", "a")]),
    );
    let run = project.run(&["plan", "--out", "plan.json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = project.run(&["apply", "plan.json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "tts", "a", "a.bin", b"weights of a\n");

    project.write("src/b.bin", "weights of b\n");
    let b = url_model("b", "music", &file_url(&project.path("src/b.bin")), None);
    project.write("models.yaml", &manifest(&[a, b], &[("tts", "a")]));
    let run = project.run(&["plan", "--out", "plan.json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let edited = project.read("models.yaml") + "# an edit after planning\n";
    project.write("models.yaml", &edited);
    let run = project.run(&["apply", "plan.json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("models.yaml changed since it was made"),
        "{}",
        run.stderr
    );
    assert!(
        !project.path("store/models/music/b").exists(),
        "nothing applied"
    );
    assert!(!blob_path(&project, b"weights of b\n").exists());
}

/// Spawns `modelctl ARGS` with stdout and stderr into `<project>/<name>.out` and `.err`.
/// Starts `modelctl ARGS` in the project, its output in `<name>.out` and `<name>.err`.
pub fn spawn(project: &Project, args: &[&str], env: &[(&str, &str)], name: &str) -> Child {
    let out = std::fs::File::create(project.path(&format!("{name}.out"))).expect("stdout file");
    let err = std::fs::File::create(project.path(&format!("{name}.err"))).expect("stderr file");
    project
        .command(args, env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn modelctl")
}

fn finish(mut child: Child, project: &Project, name: &str) -> (i32, String) {
    let status = child.wait().expect("wait");
    let stderr = project.read(&format!("{name}.err"));
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn two_applies_at_once_download_once_and_one_waits_for_the_lock() {
    let server = FaultServer::start();
    let bytes = pseudo_random(300_000, 3);
    server.serve("/w.bin", bytes.clone());
    let project = Project::with_manifest(&manifest(
        &[url_model(
            "m",
            "tts",
            &server.url("/w.bin"),
            Some(&sha256_hex(&bytes)),
        )],
        &[("tts", "m")],
    ));
    // The first apply takes the store lock and blocks in its download until released; the
    // timeout is long so the held body is not retried meanwhile.
    let env = &[("MODELCTL_HTTP_TIMEOUT", "60")];
    server.hold_after(0);
    let first = spawn(&project, &["apply"], env, "first");
    wait_for(
        "the first download",
        Duration::from_secs(30),
        || !server.gets("/w.bin").is_empty(),
        || project.read("first.err"),
    );
    let second = spawn(&project, &["apply"], env, "second");
    wait_for(
        "the second apply to wait",
        Duration::from_secs(30),
        || project.read("second.err").contains("waiting for lock"),
        || project.read("second.err"),
    );
    server.release();
    let (code1, err1) = finish(first, &project, "first");
    let (code2, err2) = finish(second, &project, "second");
    assert_eq!(code1, 0, "{err1}");
    assert_eq!(code2, 0, "{err2}");
    assert!(err2.contains("(held by pid"), "{err2}");
    assert!(
        err2.contains("Nothing to do"),
        "the second apply re-read the store after waiting: {err2}"
    );
    assert_eq!(server.gets("/w.bin").len(), 1, "downloaded once");
    assert_eq!(server.body_bytes(), bytes.len() as u64);
    assert_installed(&project, "tts", "m", "w.bin", &bytes);
}

#[test]
fn hooks_see_the_swap_and_a_failing_hook_rolls_back() {
    let project = Project::new();
    let out = project.path("hook.env");
    let record = format!(
        "    hooks:\n      activate: 'env | grep ^MODELCTL_ | grep -v ^MODELCTL_CACHE= | sort > \"{}\"'\n",
        out.display()
    );
    let failing = "    hooks:\n      activate: 'echo cannot start >&2; exit 3'\n      rollback_on_failure: true\n";
    let hooks = [
        ("a", record.as_str()),
        ("b", record.as_str()),
        ("c", failing),
    ];

    local_models(&project, "a", &hooks);
    let run = project.run(&["apply"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let root = project.path("store").display().to_string();
    assert_eq!(
        project.read("hook.env"),
        format!(
            "MODELCTL_NEW_ID=a\nMODELCTL_OLD_ID=\nMODELCTL_PATH={root}/models/tts/a\nMODELCTL_TYPE=tts\n"
        )
    );

    local_models(&project, "b", &hooks);
    let run = project.run(&["apply"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        project.read("hook.env"),
        format!(
            "MODELCTL_NEW_ID=b\nMODELCTL_OLD_ID=a\nMODELCTL_PATH={root}/models/tts/b\nMODELCTL_TYPE=tts\n"
        )
    );

    local_models(&project, "c", &hooks);
    let run = project.run(&["apply"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("the activate hook of `c` failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("cannot start"), "{}", run.stderr);
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert_eq!(
        active_target(&project, "tts").as_deref(),
        Some("../models/tts/b"),
        "the previous model is active again"
    );
    assert_eq!(active_json(&project)["tts"]["id"], "b");
}

/// The chunks a partial download's state file lists as complete.
fn done_chunks(project: &Project) -> Vec<u64> {
    files_under(&project.path("store/.modelctl/tmp"))
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".part.json"))
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .flat_map(|v| {
            v["done"]
                .as_array()
                .map(|a| a.iter().filter_map(|i| i.as_u64()).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn a_killed_apply_resumes_from_its_finished_chunks() {
    let server = FaultServer::start();
    let bytes = pseudo_random(BIG, 4);
    server.serve("/big.bin", bytes.clone());
    let project = Project::with_manifest(&manifest(
        &[url_model(
            "m",
            "llm",
            &server.url("/big.bin"),
            Some(&sha256_hex(&bytes)),
        )],
        &[("llm", "m")],
    ));
    // Two connections and 12 MiB before every body holds: with at most two chunks in flight,
    // at least two of the 4 MiB chunks are complete by then, and the held ones are not.
    // The long timeout keeps the held connections from being retried before the kill.
    server.hold_after(3 * CHUNK);
    let mut child = spawn(
        &project,
        &["apply", "--connections", "2"],
        &[("MODELCTL_HTTP_TIMEOUT", "60")],
        "killed",
    );
    wait_for(
        "two finished chunks and the hold",
        Duration::from_secs(60),
        || server.body_bytes() >= 3 * CHUNK && done_chunks(&project).len() >= 2,
        || {
            format!(
                "{} bytes sent, chunks {:?} done, staged {:?}, stderr:\n{}",
                server.body_bytes(),
                done_chunks(&project),
                staged(&project),
                project.read("killed.err")
            )
        },
    );
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let done = done_chunks(&project);
    assert!(
        (2..=3).contains(&done.len()) && done.iter().all(|i| (i + 1) * CHUNK <= BIG as u64),
        "full chunks only: {done:?}"
    );
    assert!(blobs(&project).is_empty(), "nothing published yet");
    let killed_requests = server.requests().len();

    // The killed run's held bodies may send a frame or two into their dead connections once
    // released; counting by request keeps those out of the rerun's figures.
    server.release();
    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "llm", "m", "big.bin", &bytes);
    let requests = server.requests();
    let rerun: u64 = requests[killed_requests..]
        .iter()
        .map(|r| r.body_bytes)
        .sum();
    assert!(
        rerun <= BIG as u64 - done.len() as u64 * CHUNK,
        "the rerun fetched at most the chunks the state file does not list as finished"
    );
    // The state file records finished chunks, and how far the others had got when it was
    // last saved; what a chunk in flight wrote after that save is fetched again: the waste is
    // under one chunk per connection (2 here). No response carries more than its chunk, so
    // this holds for every byte the server sent.
    let total: u64 = requests.iter().map(|r| r.body_bytes).sum();
    assert!(
        total <= BIG as u64 + 2 * CHUNK,
        "{total} bytes for a {BIG}-byte file"
    );
    // (A `.part.json.<pid>` may remain: the killed process's state update, cut short.)
    assert!(
        staged(&project)
            .iter()
            .all(|n| !n.ends_with(".part") && !n.ends_with(".part.json")),
        "{:?}",
        staged(&project)
    );
}

#[test]
fn credentials_in_a_url_never_reach_output_or_the_store() {
    let server = FaultServer::start();
    let bytes = pseudo_random(5000, 5);
    server.serve("/w.bin", bytes.clone());
    server.serve("/flaky.bin", pseudo_random(5000, 6));
    let secret = |path: &str| {
        server
            .url(path)
            .replace("http://", "http://user:hf_SENTINEL_token@")
    };
    let project = Project::with_manifest(&manifest(
        &[url_model("m", "tts", &secret("/w.bin"), None)],
        &[("tts", "m")],
    ));
    let mut outputs = Vec::new();
    for args in [&["lock"][..], &["plan", "--out", "plan.json"], &["apply"]] {
        let run = project.run_env(args, FAST);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        outputs.push((format!("{args:?}"), run.stdout + &run.stderr));
    }
    assert_installed(&project, "tts", "m", "w.bin", &bytes);
    assert!(
        server
            .gets("/w.bin")
            .iter()
            .all(|r| r.authorization.is_some()),
        "the credentials are used, for the URL's own origin"
    );

    // Failures show the URL too: a download that keeps failing, a URL that is not there.
    project.write(
        "models.yaml",
        &manifest(
            &[
                url_model("m", "tts", &secret("/w.bin"), None),
                url_model("n", "music", &secret("/flaky.bin"), None),
                url_model("gone", "llm", &secret("/gone.bin"), None),
            ],
            &[("tts", "m")],
        ),
    );
    server.set_fault("/flaky.bin", crate::faults::Fault::Always(503));
    let env = [FAST, &[("MODELCTL_HTTP_RETRIES", "2")]].concat();
    for args in [
        &["apply"][..],
        &["apply", "--json"],
        &["status"],
        &["plan"],
        &["-v", "apply"],
        &["-vv", "apply"],
        &["-q", "apply"],
    ] {
        let run = project.run_env(args, &env);
        outputs.push((format!("{args:?}"), run.stdout + &run.stderr));
    }
    let retried = &outputs[outputs.len() - 2].1;
    assert!(
        retried.contains("GET http://127.0.0.1:")
            && retried.contains("503 Service Unavailable for GET"),
        "-vv shows the requests and the retries: {retried}"
    );
    assert!(
        outputs.iter().any(|(_, o)| o.contains("user:****@")),
        "URLs are shown, redacted: {outputs:#?}"
    );
    for (what, text) in &outputs {
        assert!(!text.contains("hf_SENTINEL"), "leaked by {what}:\n{text}");
    }
    let mut files = files_under(&project.path("store"));
    files.push(project.path("models.lock"));
    files.push(project.path("plan.json"));
    for file in files {
        let meta = std::fs::symlink_metadata(&file).expect("lstat");
        let content = if meta.file_type().is_symlink() {
            std::fs::read_link(&file)
                .expect("readlink")
                .display()
                .to_string()
                .into_bytes()
        } else {
            std::fs::read(&file).expect("read")
        };
        let text = String::from_utf8_lossy(&content);
        assert!(
            !text.contains("hf_SENTINEL"),
            "leaked into {}",
            file.display()
        );
    }
}

#[test]
fn a_file_is_reported_linked_only_once_its_model_directory_is_in_place() {
    let project = Project::new();
    project.write("src/a.bin", "weights of a\n");
    let a = url_model("a", "tts", &file_url(&project.path("src/a.bin")), None);
    project.write("models.yaml", &manifest(&[a], &[]));
    let first = project.run(&["apply"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    // The blob stays; the model's type directory becomes a file, so its rebuild fails.
    std::fs::remove_dir_all(project.path("store/models/tts")).expect("remove");
    project.write("store/models/tts", "in the way\n");

    let blocked = project.run(&["apply"]);
    assert!(
        blocked
            .stderr
            .contains("error: cannot update the directory of `a`"),
        "{}",
        blocked.stderr
    );
    assert!(
        !blocked.stderr.contains("linked a/a.bin"),
        "no linked line before a swap that failed:\n{}",
        blocked.stderr
    );
    assert!(
        !blocked.stderr.contains("1 linked"),
        "the summary does not count it either:\n{}",
        blocked.stderr
    );

    std::fs::remove_file(project.path("store/models/tts")).expect("remove");
    let fixed = project.run(&["apply"]);
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
    let linked = fixed
        .stderr
        .find("linked a/a.bin (blob already in the store)")
        .expect("reported once the directory is in place");
    assert!(
        fixed.stderr[linked..].contains("1 linked"),
        "{}",
        fixed.stderr
    );
    assert_eq!(project.read("store/models/tts/a/a.bin"), "weights of a\n");
}
