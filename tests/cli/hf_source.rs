//! `hf` sources end to end against the fake Hub (hub and CDN on two origins): resolve, lock,
//! download, verify; errors with their fixes; the token's travels (T1–T3); traversal names in
//! a listing (S1); `outdated` and `update`; and the Hugging Face cache in both directions.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::fake_blob::BlobFaults;
use crate::fake_hub::{FakeHub, Lfs, RepoKind};
use crate::support::{Project, sha256_hex};

/// A token nobody may ever see in any output.
const SENTINEL: &str = "hf_SENTINELxTOKENx0123456789";

/// Weights bigger than one network buffer, so that cuts and ranges mean something.
fn weights() -> Vec<u8> {
    (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

struct Setup {
    hub: FakeHub,
    project: Project,
    commit: String,
}

/// `org/sd` with regular and LFS files in nested folders, a file the globs leave out, and a
/// project that declares it active.
fn setup(extra_yaml: &str) -> Setup {
    let hub = FakeHub::start();
    hub.add_token(SENTINEL);
    let repo = hub.repo(RepoKind::Model, "org/sd");
    let commit = repo.commit(&[
        ("model_index.json", b"{\"unet\": 1}\n", Lfs::No),
        ("unet/config.json", b"{\"in\": 4}\n", Lfs::No),
        (
            "unet/diffusion_pytorch_model.safetensors",
            &weights(),
            Lfs::Yes,
        ),
        ("README.md", b"# not wanted\n", Lfs::No),
    ]);
    let project = Project::with_manifest(&format!(
        r#"version: 1
{extra_yaml}models:
  sd:
    type: image_gen
    source:
      hf: org/sd
      include: ["*.json", "unet/"]
active:
  image_gen: sd
"#
    ));
    Setup {
        hub,
        project,
        commit,
    }
}

impl Setup {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HF_ENDPOINT", self.hub.url()),
            ("HF_TOKEN", SENTINEL.to_owned()),
            ("MODELCTL_HTTP_RETRY_BASE_MS", "10".to_owned()),
        ]
    }

    fn run(&self, args: &[&str]) -> crate::support::Run {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], more: &[(&str, &str)]) -> crate::support::Run {
        let env = self.env();
        let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(more);
        let run = self.project.run_env(args, &all);
        assert!(
            !run.stdout.contains(SENTINEL) && !run.stderr.contains(SENTINEL),
            "the token leaked:\n{}\n{}",
            run.stdout,
            run.stderr
        );
        run
    }

    fn model_file(&self, path: &str) -> PathBuf {
        self.project
            .path(&format!("models/models/image_gen/sd/{path}"))
    }
}

#[test]
fn apply_pins_the_commit_and_stores_every_selected_file_verified() {
    let s = setup("");
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    assert_eq!(
        std::fs::read(s.model_file("unet/diffusion_pytorch_model.safetensors")).expect("weights"),
        weights()
    );
    assert_eq!(
        std::fs::read(s.model_file("unet/config.json")).expect("config"),
        b"{\"in\": 4}\n"
    );
    assert!(s.model_file("model_index.json").is_file());
    assert!(
        !s.model_file("README.md").exists(),
        "the globs leave it out"
    );

    let lock = s.project.read("models.lock");
    assert!(
        lock.contains(&format!("commit: \"{}\"", s.commit)),
        "{lock}"
    );
    assert!(lock.contains(&sha256_hex(&weights())), "{lock}");
    assert!(
        lock.contains(&sha256_hex(b"{\"in\": 4}\n")),
        "the regular file's sha256 is learned on download and locked:\n{lock}"
    );
    assert!(
        lock.contains(&crate::fake_hub::git_blob_id(b"{\"in\": 4}\n")),
        "{lock}"
    );
    assert!(!lock.contains(SENTINEL));

    // T1: the hub saw the token, the CDN (another origin) never did.
    assert!(
        s.hub
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {SENTINEL}"))),
        "the hub gets the token"
    );
    let cdn = s.hub.cdn_requests();
    assert!(!cdn.is_empty(), "the LFS file came from the CDN");
    assert!(
        cdn.iter().all(|r| r.header("authorization").is_none()),
        "the CDN never sees the token: {:?}",
        cdn.iter().map(|r| &r.headers).collect::<Vec<_>>()
    );
    assert!(cdn.iter().all(|r| r.header("referer").is_none()));

    // A second apply transfers nothing and asks for nothing.
    s.hub.clear_requests();
    let cdn_bytes = s.hub.cdn_bytes_sent();
    let hub_bytes = s.hub.hub_bytes_sent();
    let again = s.run(&["apply", "--yes"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(s.hub.cdn_bytes_sent(), cdn_bytes);
    assert_eq!(s.hub.hub_bytes_sent(), hub_bytes);
    assert!(
        s.hub
            .requests()
            .iter()
            .all(|r| !r.path().contains("/resolve/")),
        "{:?}",
        s.hub
            .requests()
            .iter()
            .map(|r| r.path())
            .collect::<Vec<_>>()
    );

    // `--offline` works from the lock alone, and `verify` re-hashes every file.
    assert_eq!(s.run(&["apply", "--offline", "--yes"]).code, 0);
    assert_eq!(s.run(&["verify"]).code, 0);
    assert!(s.hub.requests().is_empty() && s.hub.cdn_requests().is_empty());
}

/// After an apply, the stat cache knows the git blob id of every small file it linked, so the
/// next scan need not hash them again only to compute it.
#[test]
fn apply_records_the_git_blob_ids_of_the_files_it_linked_in_the_stat_cache() {
    let s = setup("");
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let text = s.project.read("models/.modelctl/stat-cache.json");
    let cache: serde_json::Value = serde_json::from_str(&text).expect("stat cache JSON");
    let entries = &cache["entries"];
    for (path, bytes) in [
        ("unet/config.json", &b"{\"in\": 4}\n"[..]),
        ("model_index.json", &b"{\"unet\": 1}\n"[..]),
    ] {
        let entry = &entries[format!("models/image_gen/sd/{path}")];
        assert_eq!(
            entry["sha256"].as_str(),
            Some(sha256_hex(bytes).as_str()),
            "{path}: {text}"
        );
        assert_eq!(
            entry["git_oid"].as_str(),
            Some(crate::fake_hub::git_blob_id(bytes).as_str()),
            "{path}: {text}"
        );
    }
}

#[test]
fn a_fresh_checkout_plans_offline_from_the_lock_and_a_second_store_downloads_the_same_bytes() {
    let s = setup("");
    assert_eq!(s.run(&["lock"]).code, 0);
    s.hub.clear_requests();
    let plan = s.run(&["plan", "--offline"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("download unet/diffusion_pytorch_model.safetensors"),
        "{}",
        plan.stdout
    );
    assert!(s.hub.requests().is_empty(), "--offline makes no request");
}

#[test]
fn a_corrupted_byte_from_the_cdn_is_caught_and_nothing_is_published() {
    let s = setup("");
    s.hub
        .corrupt_byte("unet/diffusion_pytorch_model.safetensors");
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let want = sha256_hex(&weights());
    assert!(
        run.stderr
            .contains("sd/unet/diffusion_pytorch_model.safetensors"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("expected sha256:{want}")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("got sha256:"), "{}", run.stderr);
    assert!(
        !s.model_file("unet/diffusion_pytorch_model.safetensors")
            .exists()
    );
    let blob = s
        .project
        .path(&format!("models/blobs/sha256/{}/{want}", &want[..2]));
    assert!(!blob.exists(), "a corrupt download is never published");
    assert!(
        !s.project.path("models/active/image_gen").exists(),
        "an incomplete model is never activated"
    );
}

#[test]
fn a_cut_download_resumes_with_the_right_range() {
    let s = setup("");
    s.hub
        .cut_after("unet/diffusion_pytorch_model.safetensors", 1_000_000, 1);
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        std::fs::read(s.model_file("unet/diffusion_pytorch_model.safetensors")).expect("read"),
        weights()
    );
    let ranges: Vec<String> = s
        .hub
        .cdn_requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_owned))
        .collect();
    let resumed = ranges.iter().any(|r| {
        r.strip_prefix("bytes=")
            .and_then(|r| r.split('-').next())
            .and_then(|start| start.parse::<u64>().ok())
            .is_some_and(|start| start >= 900_000)
    });
    assert!(
        resumed,
        "the retry continues where the bytes stopped: {ranges:?}"
    );
    assert!(
        s.hub.cdn_bytes_sent() < weights().len() as u64 + 200_000,
        "no restart from zero: {} bytes sent",
        s.hub.cdn_bytes_sent()
    );
}

#[test]
fn a_gated_repository_says_to_accept_the_license() {
    let s = setup("");
    s.hub.repo(RepoKind::Model, "org/sd").gated();
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("gated") && run.stderr.contains("accept its license"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("{}/org/sd", s.hub.url())),
        "{}",
        run.stderr
    );
    let mut asked: Vec<String> = s
        .hub
        .requests()
        .into_iter()
        .filter(|r| r.path().contains("/resolve/"))
        .map(|r| r.path().to_owned())
        .collect();
    let all = asked.len();
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), all, "a refusal is not retried: {asked:?}");
}

#[test]
fn a_bad_token_a_missing_repo_and_a_missing_revision_each_get_their_fix() {
    let s = setup("");
    let bad = s.project.run_env(
        &["plan"],
        &[
            ("HF_ENDPOINT", &s.hub.url()),
            ("HF_TOKEN", "hf_not_a_real_token"),
        ],
    );
    assert!(
        bad.stdout.contains("rejected the token") && bad.stdout.contains("HF_TOKEN"),
        "{}\n{}",
        bad.stdout,
        bad.stderr
    );
    assert!(!bad.stdout.contains("hf_not_a_real_token"));

    s.project.write(
        "models.yaml",
        "version: 1\nmodels:\n  sd:\n    type: image_gen\n    source: { hf: org/nope }\n  v:\n    type: image_gen\n    source: { hf: org/sd, revision: v9 }\n",
    );
    let run = s.run(&["plan"]);
    assert!(
        run.stdout.contains("repository `org/nope` was not found"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("revision `v9` was not found"),
        "{}",
        run.stdout
    );
    let lock = s.run(&["lock"]);
    assert_eq!(lock.code, 1, "{}", lock.stderr);
}

#[test]
fn a_listing_with_traversal_names_refuses_the_model_before_any_download() {
    let s = setup("");
    s.hub
        .repo(RepoKind::Model, "org/sd")
        .inject_entry("../../.bashrc");
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("unsafe file name") || run.stderr.contains("unsafe file name"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(s.hub.cdn_requests().is_empty());
    assert!(
        s.hub
            .requests()
            .iter()
            .all(|r| !r.path().contains("/resolve/"))
    );
    assert!(
        !s.project.path("models.lock").exists()
            || !s.project.read("models.lock").contains("org/sd")
    );
    assert!(
        !s.project
            .root()
            .parent()
            .expect("parent")
            .join(".bashrc")
            .exists()
    );
}

#[test]
fn outdated_reports_a_newer_commit_and_update_pins_it() {
    let s = setup("");
    assert_eq!(s.run(&["apply", "--yes"]).code, 0);
    let fresh = s.run(&["outdated"]);
    assert_eq!(fresh.code, 0, "{}", fresh.stderr);
    assert!(fresh.stdout.contains("up to date"), "{}", fresh.stdout);

    let repo = s.hub.repo(RepoKind::Model, "org/sd");
    let mut new_weights = weights();
    new_weights[0] ^= 1;
    let next = repo.commit(&[(
        "unet/diffusion_pytorch_model.safetensors",
        &new_weights,
        Lfs::Yes,
    )]);
    s.hub.clear_requests();
    let outdated = s.run(&["outdated", "--json"]);
    assert_eq!(outdated.code, 0, "{}", outdated.stderr);
    let rows: serde_json::Value = serde_json::from_str(&outdated.stdout).expect("json");
    assert_eq!(rows[0]["state"], "outdated", "{rows}");
    assert_eq!(rows[0]["latest"], next[..12]);
    assert_eq!(rows[0]["fetch_bytes"], new_weights.len() as u64);
    assert_eq!(rows[0]["changed_files"], 1);
    assert!(
        s.hub.cdn_requests().is_empty(),
        "outdated downloads nothing"
    );

    let update = s.run(&["update", "sd"]);
    assert_eq!(update.code, 0, "{}", update.stderr);
    assert!(
        update.stderr.contains(&next),
        "the diff shows the new commit: {}",
        update.stderr
    );
    assert!(s.project.read("models.lock").contains(&next));
    assert!(
        s.project
            .read("models.lock")
            .contains(&sha256_hex(b"{\"in\": 4}\n")),
        "learned sha256s of unchanged regular files survive the update"
    );
    let plan = s.run(&["plan"]);
    assert!(
        plan.stdout
            .contains("replace unet/diffusion_pytorch_model.safetensors"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("config.json"), "{}", plan.stdout);
}

/// The `hf_cache` option lays the model out for `huggingface_hub`, one copy on disk.
#[test]
fn the_hf_cache_option_shares_one_copy_with_huggingface_hub() {
    let s = setup("hf_cache: true\n");
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("shared sd with the HF cache"),
        "{}",
        run.stderr
    );

    let cache = s.project.path(".cache/huggingface/hub/models--org--sd");
    assert_eq!(
        std::fs::read_to_string(cache.join("refs/main")).expect("ref"),
        s.commit
    );
    let snapshot = cache.join("snapshots").join(&s.commit);
    let shared = snapshot.join("unet/diffusion_pytorch_model.safetensors");
    assert!(
        std::fs::symlink_metadata(&shared)
            .expect("entry")
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::metadata(&shared).expect("target").ino(),
        std::fs::metadata(s.model_file("unet/diffusion_pytorch_model.safetensors"))
            .expect("store")
            .ino(),
        "one copy: the cache and the store share the inode"
    );
    assert_eq!(
        std::fs::read(snapshot.join("unet/config.json")).expect("config"),
        b"{\"in\": 4}\n"
    );
    let blob = cache
        .join("blobs")
        .join(crate::fake_hub::git_blob_id(b"{\"in\": 4}\n"));
    assert!(
        blob.is_file(),
        "regular files are named by their git blob id"
    );

    let again = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "sharing is idempotent:\n{}", again.stdout);

    // `du` counts a hardlinked file once: store and cache together hold one copy.
    let du = std::process::Command::new("du")
        .arg("-sk")
        .arg(s.project.root())
        .output()
        .expect("du");
    let kib: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du's figure");
    let one_copy = weights().len() as u64 / 1024;
    assert!(
        kib < one_copy * 3 / 2,
        "du shows {kib} KiB for {one_copy} KiB of weights"
    );

    python_loads_it_offline(&cache);
}

/// Python's own loader finds the files with the network off, when it is installed
/// (`.ci/run` installs it into a venv and sets `MODELCTL_TEST_PYTHON`).
fn python_loads_it_offline(cache: &Path) {
    let python = std::env::var("MODELCTL_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = std::process::Command::new(&python)
        .args(["-c", "import huggingface_hub"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped the huggingface_hub check: `{python} -c 'import huggingface_hub'` failed \
             (install it with pip, or set MODELCTL_TEST_PYTHON)"
        );
        return;
    }
    let script = "import sys\n\
        from huggingface_hub import hf_hub_download, snapshot_download\n\
        p = hf_hub_download('org/sd', 'unet/diffusion_pytorch_model.safetensors', revision='main', local_files_only=True)\n\
        d = snapshot_download('org/sd', revision='main', local_files_only=True)\n\
        print(p)\n\
        print(d)\n";
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", cache.parent().expect("hub dir"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let file = PathBuf::from(lines.next().expect("file path"));
    assert_eq!(std::fs::read(&file).expect("python's path"), weights());
    let snapshot = PathBuf::from(lines.next().expect("snapshot path"));
    assert!(snapshot.join("model_index.json").is_file());
    eprintln!("huggingface_hub loaded the shared files offline");
}

/// Puts `bytes` into the HF cache as the blob of the weights' sha256 (as a download by
/// `huggingface_hub` would have, which never checks the content).
fn put_in_hf_cache(s: &Setup, bytes: &[u8]) -> PathBuf {
    let blobs = s
        .project
        .path(".cache/huggingface/hub/models--org--sd/blobs");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let path = blobs.join(sha256_hex(&weights()));
    std::fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn a_blob_already_in_the_hf_cache_is_verified_and_reused_instead_of_downloaded() {
    let s = setup("");
    let cached = put_in_hf_cache(&s, &weights());

    let plan = s.run(&["plan"]);
    assert!(
        plan.stdout.contains("reuse from the HF cache"),
        "{}",
        plan.stdout
    );
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        s.hub.cdn_requests().is_empty(),
        "the LFS file was not downloaded"
    );
    assert_eq!(
        std::fs::read(s.model_file("unet/diffusion_pytorch_model.safetensors")).expect("read"),
        weights()
    );
    assert_eq!(
        std::fs::metadata(&cached).expect("cache").ino(),
        std::fs::metadata(s.model_file("unet/diffusion_pytorch_model.safetensors"))
            .expect("store")
            .ino(),
        "the cache's file is linked, not copied: its bytes are on disk once"
    );
    assert!(
        std::fs::metadata(&cached)
            .expect("cache")
            .permissions()
            .readonly(),
        "a linked file is read-only, as every blob is"
    );
    assert!(
        run.stderr.contains("from the HF cache by hardlink"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_corrupt_blob_in_the_hf_cache_is_not_trusted() {
    let s = setup("");
    let mut bad = weights();
    bad[10] ^= 0xff;
    put_in_hf_cache(&s, &bad);

    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("cannot reuse"), "{}", run.stderr);
    assert!(
        !s.hub.cdn_requests().is_empty(),
        "it was downloaded instead"
    );
    assert_eq!(
        std::fs::read(s.model_file("unet/diffusion_pytorch_model.safetensors")).expect("read"),
        weights()
    );
}

#[test]
fn datasets_and_relative_redirects_work_too() {
    let hub = FakeHub::start();
    hub.set_relative_redirects(true);
    hub.repo(RepoKind::Dataset, "org/data")
        .commit(&[("train/part-0.csv", b"a,b\n1,2\n", Lfs::No)]);
    let project = Project::with_manifest(
        "version: 1\nmodels:\n  data:\n    type: llm\n    source: { hf: org/data, repo_type: dataset }\n",
    );
    let run = project.run_env(&["apply", "--yes"], &[("HF_ENDPOINT", &hub.url())]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        project.read("models/models/llm/data/train/part-0.csv"),
        "a,b\n1,2\n"
    );
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.path().starts_with("/datasets/org/data/resolve/")),
        "{:?}",
        hub.requests().iter().map(|r| r.path()).collect::<Vec<_>>()
    );
}

/// T2: the token appears in no output of any command, failing ones included, nor in any file
/// modelctl writes.
#[test]
fn the_token_never_appears_in_any_output_or_file() {
    let s = setup("hf_cache: true\n");
    let commands: &[&[&str]] = &[
        &["plan", "--json"],
        &["apply", "--yes", "--json"],
        &["status", "--json"],
        &["lock", "--check"],
        &["update"],
        &["outdated", "--json"],
        &["verify", "--json"],
        &["gc", "--dry-run"],
        &["plan", "--out", "saved.plan"],
    ];
    // At every level of detail: `-v` logs every request, `-vv` redirects and retries too.
    for level in [None, Some("-v"), Some("-vv"), Some("-q")] {
        for args in commands {
            let mut args = args.to_vec();
            args.extend(level);
            s.run(&args); // `run` fails the test when the sentinel shows up
        }
    }
    let verbose = s.run(&["-v", "update"]);
    assert!(
        verbose.stderr.contains("GET http://127.0.0.1:"),
        "-v shows the Hub requests: {}",
        verbose.stderr
    );
    s.hub.repo(RepoKind::Model, "org/sd").gated();
    s.project.write(
        "models.yaml",
        "version: 1\nmodels:\n  sd:\n    type: image_gen\n    source: { hf: org/sd, include: [\"*.md\"] }\n",
    );
    let failing = s.run(&["apply", "--yes"]);
    assert_eq!(failing.code, 1, "{}", failing.stderr);
    for filter in ["trace", "modelctl=trace,reqwest=trace,hyper=trace"] {
        let verbose = s.run_with(
            &["apply", "--yes"],
            &[("RUST_BACKTRACE", "1"), ("RUST_LOG", filter)],
        );
        assert_eq!(verbose.code, 1);
    }

    let mut stack = vec![s.project.root().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).expect("read");
                assert!(
                    !bytes
                        .windows(SENTINEL.len())
                        .any(|w| w == SENTINEL.as_bytes()),
                    "the token is in {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn chunks_of_a_large_file_go_to_the_cdn_directly_after_the_first_redirect() {
    let hub = FakeHub::start();
    let big: Vec<u8> = (0..20_000_000u32).map(|i| (i % 241) as u8).collect();
    hub.repo(RepoKind::Model, "org/big")
        .commit(&[("model.safetensors", &big, Lfs::Yes)]);
    let project = Project::with_manifest(
        "version: 1\nmodels:\n  big:\n    type: llm\n    source: { hf: org/big }\n",
    );
    let run = project.run_env(
        &["apply", "--yes", "--connections", "2"],
        &[("HF_ENDPOINT", &hub.url())],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let through_hub = hub
        .requests()
        .iter()
        .filter(|r| r.path().contains("/resolve/"))
        .count();
    let chunks = hub.cdn_requests().len();
    assert!(chunks >= 5, "20 MB in 4 MiB chunks: {chunks} CDN requests");
    assert!(
        through_hub <= 2,
        "one redirect per connection, not one per chunk: {through_hub} hub requests for {chunks} chunks"
    );
    assert_eq!(
        std::fs::read(project.path("models/models/llm/big/model.safetensors")).expect("read"),
        big
    );
}
