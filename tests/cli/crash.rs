//! `kill -9` at every failpoint of an apply: docs/reliability.md C1–C4.
//!
//! Each case sets up a store (model `a` active for `tts`, model `k` active for `llm`, the two
//! sharing one blob), changes models.yaml so the next apply downloads a multi-chunk file for a
//! new `tts` model `b` and a small file for an inactive model `d`, swaps `tts` from `a` to `b`,
//! deletes `a` and rewrites active.json and models.lock, and runs that apply with
//! `MODELCTL_FAILPOINT=<name>` for each name in `modelctl::failpoint::ALL`. The process must
//! die of the abort at that point (so every failpoint is reachable), and what it leaves must
//! hold the invariants: blobs hash to their names, each pointer resolves to a complete model
//! (the old or the new one), models.lock and active.json are the complete old or new version,
//! and `status` works. Then a plain apply must finish the job (without downloading anything
//! twice), `verify` must pass, the shared blob must have survived, and nothing may be left
//! behind: no model `a`, no stray pointer, nothing in staging once `gc` has run.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::apply::{
    BIG, FAST, active_target, assert_installed, blob_path, blobs, files_under, manifest, url_model,
};
use crate::faults::{FaultServer, pseudo_random};
use crate::support::{Project, sha256_hex};

const SIGABRT: i32 = 6;

/// The files of the scenario, served by one server so every project's lock is the same.
struct Scenario {
    server: FaultServer,
    shared: Vec<u8>,
    big: Vec<u8>,
    small: Vec<u8>,
}

impl Scenario {
    fn start() -> Self {
        let server = FaultServer::start();
        let shared = pseudo_random(3000, 60);
        let big = pseudo_random(BIG, 61);
        let small = pseudo_random(5000, 62);
        // `a` and `k` are the same bytes under two URLs: one blob, two models.
        server.serve("/a.bin", shared.clone());
        server.serve("/k.bin", shared.clone());
        server.serve("/big.bin", big.clone());
        server.serve("/small.bin", small.clone());
        Self {
            server,
            shared,
            big,
            small,
        }
    }

    fn model(&self, id: &str, kind: &str, path: &str, bytes: &[u8]) -> String {
        url_model(id, kind, &self.server.url(path), Some(&sha256_hex(bytes)))
    }

    /// `a` (tts) and `k` (llm), both active.
    fn old_manifest(&self) -> String {
        manifest(
            &[
                self.model("a", "tts", "/a.bin", &self.shared),
                self.model("k", "llm", "/k.bin", &self.shared),
            ],
            &[("tts", "a"), ("llm", "k")],
        )
    }

    /// `b` replaces `a` as the active tts model, `d` is new and inactive, `k` stays.
    fn new_manifest(&self) -> String {
        manifest(
            &[
                self.model("b", "tts", "/big.bin", &self.big),
                self.model("d", "music", "/small.bin", &self.small),
                self.model("k", "llm", "/k.bin", &self.shared),
            ],
            &[("tts", "b"), ("llm", "k")],
        )
    }

    /// A project with the old manifest applied and the new one written.
    fn project(&self) -> Project {
        let project = Project::with_manifest(&self.old_manifest());
        let run = project.run_env(&["apply"], FAST);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            active_target(&project, "tts").as_deref(),
            Some("../models/tts/a")
        );
        project.write("models.yaml", &self.new_manifest());
        project
    }
}

/// What a crashed apply may leave: the complete old or new version of a file.
struct Versions {
    lock: String,
    active_json: String,
}

impl Versions {
    fn read(project: &Project) -> Self {
        Self {
            lock: project.read("models.lock"),
            active_json: project.read("store/active.json"),
        }
    }
}

#[test]
fn c1_to_c4_a_kill_at_any_failpoint_leaves_a_consistent_store_that_apply_completes() {
    let scenario = Scenario::start();
    let mut seen = BTreeSet::new();
    for &name in modelctl::failpoint::ALL {
        let project = scenario.project();
        let old = Versions::read(&project);

        let stderr = run_until_abort(&project, name);
        seen.insert(name);
        let crashed = Versions::read(&project);
        assert_blobs_match_their_names(&project, name);
        assert_pointers_resolve_to_complete_models(&project, &scenario, name);
        let status = project.run(&["status", "--json"]);
        assert_eq!(status.code, 0, "status after {name}: {}", status.stderr);

        let served = scenario.server.body_bytes();
        let run = project.run_env(&["apply", "--yes"], FAST);
        assert_eq!(run.code, 0, "apply after {name}:\n{stderr}\n{}", run.stderr);
        let refetched = scenario.server.body_bytes() - served;
        assert!(
            refetched <= (scenario.big.len() + scenario.small.len()) as u64,
            "after {name}, {refetched} bytes were downloaded again"
        );
        let new = Versions::read(&project);
        for (what, now, before, after) in [
            ("models.lock", &crashed.lock, &old.lock, &new.lock),
            (
                "active.json",
                &crashed.active_json,
                &old.active_json,
                &new.active_json,
            ),
        ] {
            assert!(
                now == before || now == after,
                "after {name}, {what} is neither the old nor the new version:\n{now}"
            );
        }
        assert_completed(&project, &scenario, name);
    }
    assert_eq!(seen.len(), modelctl::failpoint::ALL.len());
}

/// Runs `apply --yes` with the failpoint armed and returns its stderr once it has aborted.
pub fn run_until_abort(project: &Project, name: &str) -> String {
    let log = project.path(&format!("crash-{name}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let template = project.command(
        &["apply", "--yes"],
        &[FAST, &[("MODELCTL_FAILPOINT", name)]].concat(),
    );
    let mut child = without_core_dumps(&template)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn apply");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("apply with {name} did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).expect("read log");
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "failpoint {name} was not reached ({status}):\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("failpoint {name}: aborting")),
        "{stderr}"
    );
    stderr
}

/// `template` run through `sh -c 'ulimit -c 0; exec …'`, so an abort writes no core file.
fn without_core_dumps(template: &Command) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -c 0; exec \"$0\" \"$@\"")
        .arg(template.get_program())
        .args(template.get_args());
    if let Some(dir) = template.get_current_dir() {
        cmd.current_dir(dir);
    }
    for (key, value) in template.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd
}

/// I1: every file under `blobs/` is `sha256/<2 hex>/<64 hex>` of its own bytes.
fn assert_blobs_match_their_names(project: &Project, name: &str) {
    for blob in blobs(project) {
        let bytes = std::fs::read(&blob).expect("read blob");
        let file = blob.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let shard = blob
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let hex = sha256_hex(&bytes);
        assert_eq!(
            file,
            hex,
            "after {name}: {} holds other bytes",
            blob.display()
        );
        assert_eq!(shard, &hex[..2], "after {name}: {}", blob.display());
    }
}

/// C3: `active/` holds one symlink per type (and nothing else once the apply is complete),
/// each resolving to a model whose file is all there.
fn assert_pointers_resolve_to_complete_models(project: &Project, s: &Scenario, name: &str) {
    match active_target(project, "tts").as_deref() {
        Some("../models/tts/a") => check_file(project, "tts/a/a.bin", &s.shared, name),
        Some("../models/tts/b") => check_file(project, "tts/b/big.bin", &s.big, name),
        other => panic!("after {name}, active/tts is {other:?}"),
    }
    assert_eq!(
        active_target(project, "llm").as_deref(),
        Some("../models/llm/k"),
        "after {name}"
    );
    check_file(project, "llm/k/k.bin", &s.shared, name);
}

fn check_file(project: &Project, rel: &str, bytes: &[u8], name: &str) {
    let path = project.path(&format!("store/models/{rel}"));
    let found = std::fs::read(&path).unwrap_or_else(|e| panic!("after {name}, {rel}: {e}"));
    assert!(found == bytes, "after {name}, {rel} holds other bytes");
}

/// The state a complete apply of the new manifest leaves, reached after the crash at `name`.
fn assert_completed(project: &Project, s: &Scenario, name: &str) {
    let verify = project.run(&["verify"]);
    assert_eq!(
        verify.code, 0,
        "verify after {name}: {}{}",
        verify.stdout, verify.stderr
    );
    assert_installed(project, "tts", "b", "big.bin", &s.big);
    assert_installed(project, "music", "d", "small.bin", &s.small);
    assert_installed(project, "llm", "k", "k.bin", &s.shared);
    assert!(
        blob_path(project, &s.shared).exists(),
        "after {name}: the shared blob"
    );
    assert!(
        !project.path("store/models/tts/a").exists(),
        "after {name}: a is deleted"
    );
    assert_eq!(
        active_target(project, "tts").as_deref(),
        Some("../models/tts/b")
    );
    let pointers: Vec<String> = std::fs::read_dir(project.path("store/active"))
        .expect("active/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(pointers, ["llm", "tts"], "after {name}: no stray pointer");

    let status = project.run(&["status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let ids: BTreeSet<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["b", "d", "k"]),
        "after {name}: no ghost in status"
    );

    // Leftovers of the killed run are partials (files) that gc collects, nothing else.
    let tmp = project.path("store/.modelctl/tmp");
    for entry in std::fs::read_dir(&tmp).expect("tmp").flatten() {
        let kind = entry.file_type().expect("type");
        assert!(
            kind.is_file(),
            "after {name}: {:?} left in staging",
            entry.path()
        );
    }
    let gc = project.run(&["gc", "--grace", "0"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert_eq!(
        files_under(&tmp),
        Vec::<std::path::PathBuf>::new(),
        "after {name}: {}",
        gc.stdout
    );
    assert!(
        blob_path(project, &s.shared).exists(),
        "after {name}: gc kept the shared blob"
    );
}
