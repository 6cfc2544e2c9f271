//! The store's promises at every edge: no byte reaches `models/` or a managed HF-cache
//! snapshot, and no digest reaches models.lock, unless those exact bytes were hashed; an
//! active model's directory is never emptied or half-updated. One regression test per defect
//! found, named after it; `properties.rs` checks the same promises over random sequences.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fake_blob::BlobFaults;
use crate::fake_hub::{FakeHub, Lfs, RepoKind, git_blob_id};
use crate::support::{FileServer, Project, Run, sha256_hex};

/// Weights bigger than one network buffer.
fn weights() -> Vec<u8> {
    (0..2_000_000u32).map(|i| (i * 13 % 251) as u8).collect()
}

struct Hub {
    hub: FakeHub,
    repo: crate::fake_hub::Repo,
    project: Project,
}

impl Hub {
    /// `org/m` with a regular `config.json` and LFS weights, declared at `revision` as the
    /// active `llm`; `extra` goes at the top of models.yaml (`hf_cache: true`).
    fn start(config: &[u8], extra: &str) -> (Self, String) {
        let hub = FakeHub::start();
        let repo = hub.repo(RepoKind::Model, "org/m");
        let commit = repo.commit(&[
            ("config.json", config, Lfs::No),
            ("model.safetensors", &weights(), Lfs::Yes),
        ]);
        let project = Project::new();
        let s = Self { hub, repo, project };
        s.declare(&commit, extra);
        (s, commit)
    }

    fn declare(&self, revision: &str, extra: &str) {
        self.project.write(
            "models.yaml",
            &format!(
                "version: 1\n{extra}models:\n  m:\n    type: llm\n    source:\n      hf: org/m\n      revision: {revision}\nactive:\n  llm: m\n"
            ),
        );
    }

    fn run(&self, args: &[&str]) -> Run {
        self.project.run_env(
            args,
            &[
                ("HF_ENDPOINT", &self.hub.url()),
                ("MODELCTL_HTTP_RETRY_BASE_MS", "10"),
                ("MODELCTL_HTTP_RETRIES", "2"),
            ],
        )
    }

    fn file(&self, path: &str) -> PathBuf {
        self.project.path(&format!("models/models/llm/m/{path}"))
    }

    fn snapshot(&self, commit: &str, path: &str) -> PathBuf {
        self.project.path(&format!(
            ".cache/huggingface/hub/models--org--m/snapshots/{commit}/{path}"
        ))
    }

    fn cache_blob(&self, name: &str) -> PathBuf {
        self.project.path(&format!(
            ".cache/huggingface/hub/models--org--m/blobs/{name}"
        ))
    }
}

fn ok(run: &Run) {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

/// Overwrites one byte of a (read-only) store file in place, keeping its size and inode.
fn flip_byte(path: &Path, at: usize) {
    let mut perms = std::fs::metadata(path).expect("meta").permissions();
    perms.set_mode(0o644);
    std::fs::set_permissions(path, perms).expect("chmod");
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).expect("write");
}

/// Whether `path` holds exactly `want` (without printing megabytes when it does not).
fn holds(path: &Path, want: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|got| got == want)
}

/// `plan --detailed-exitcode` says there is nothing to do.
fn up_to_date(s: &Hub) {
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
}

#[test]
fn a_regular_file_that_changes_but_keeps_its_size_is_downloaded_not_kept_stale() {
    let (s, a) = Hub::start(b"{\"v\": 1}", "hf_cache: true\n");
    ok(&s.run(&["apply", "--yes"]));
    let b = s.repo.commit(&[("config.json", b"{\"v\": 2}", Lfs::No)]);
    s.declare(&b, "hf_cache: true\n");

    let plan = s.run(&["plan"]);
    assert!(
        plan.stdout.contains("replace config.json"),
        "a changed git blob id is a changed file, never `verify`:\n{}",
        plan.stdout
    );
    ok(&s.run(&["apply", "--yes"]));
    assert_eq!(
        std::fs::read(s.file("config.json")).expect("read"),
        b"{\"v\": 2}"
    );
    let lock = s.project.read("models.lock");
    assert!(lock.contains(&sha256_hex(b"{\"v\": 2}")), "{lock}");
    assert!(lock.contains(&git_blob_id(b"{\"v\": 2}")), "{lock}");
    assert!(
        !lock.contains(&sha256_hex(b"{\"v\": 1}")),
        "A's sha256 is not paired with B's git blob id:\n{lock}"
    );
    // The HF cache's blob named by B's git blob id holds B's bytes.
    assert_eq!(
        std::fs::read(s.snapshot(&b, "config.json")).expect("snapshot"),
        b"{\"v\": 2}"
    );
    assert_eq!(
        std::fs::read(s.cache_blob(&git_blob_id(b"{\"v\": 2}"))).expect("blob"),
        b"{\"v\": 2}"
    );
    ok(&s.run(&["verify"]));
    up_to_date(&s);
    let _ = a;
}

#[test]
fn a_lock_that_pairs_a_sha256_with_another_git_oid_is_reported_and_repaired_by_update() {
    let (s, a) = Hub::start(b"{\"v\": 1}", "");
    s.declare("main", "");
    ok(&s.run(&["apply", "--yes"]));
    // What an older modelctl wrote after `main` moved: A's sha256 with B's git blob id.
    let b = s.repo.commit(&[("config.json", b"{\"v\": 2}", Lfs::No)]);
    let broken = s
        .project
        .read("models.lock")
        .replace(&git_blob_id(b"{\"v\": 1}"), &git_blob_id(b"{\"v\": 2}"))
        .replace(&a, &b);
    assert!(broken.contains(&sha256_hex(b"{\"v\": 1}")), "{broken}");
    s.project.write("models.lock", &broken);

    let verify = s.run(&["verify"]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(
        verify.stdout.contains("models.lock is inconsistent"),
        "{}",
        verify.stdout
    );
    let plan = s.run(&["plan"]);
    assert!(
        plan.stderr.contains("modelctl update m") || plan.stdout.contains("modelctl update m"),
        "{}\n{}",
        plan.stdout,
        plan.stderr
    );

    ok(&s.run(&["update", "m"]));
    let lock = s.project.read("models.lock");
    assert!(
        !lock.contains(&sha256_hex(b"{\"v\": 1}")),
        "update drops the sha256 no byte with that git blob id backs:\n{lock}"
    );
    ok(&s.run(&["apply", "--yes"]));
    assert_eq!(
        std::fs::read(s.file("config.json")).expect("read"),
        b"{\"v\": 2}"
    );
    assert!(
        s.project
            .read("models.lock")
            .contains(&sha256_hex(b"{\"v\": 2}"))
    );
    ok(&s.run(&["verify"]));
}

#[test]
fn a_corrupted_store_file_is_downloaded_again_not_relinked_from_the_hf_cache() {
    let (s, commit) = Hub::start(b"{\"v\": 1}", "hf_cache: true\n");
    ok(&s.run(&["apply", "--yes"]));
    flip_byte(&s.file("model.safetensors"), 1000);

    let plan = s.run(&["plan"]);
    assert!(
        !plan.stdout.contains("reuse from the HF cache"),
        "the cache's blob is the damaged inode itself:\n{}",
        plan.stdout
    );
    s.hub.clear_requests();
    ok(&s.run(&["apply", "--yes"]));
    assert!(!s.hub.cdn_requests().is_empty(), "downloaded again");
    assert!(holds(&s.file("model.safetensors"), &weights()));
    assert!(
        holds(&s.snapshot(&commit, "model.safetensors"), &weights()),
        "the HF cache serves the good bytes too"
    );
    up_to_date(&s);
    ok(&s.run(&["verify"]));
}

#[test]
fn a_corrupt_blob_left_in_the_hf_cache_by_huggingface_hub_is_replaced() {
    let (s, commit) = Hub::start(b"{\"v\": 1}", "hf_cache: true\n");
    // `hf download` left a damaged blob and a snapshot link to it.
    let mut bad = weights();
    bad[77] ^= 0xff;
    let blob = s.cache_blob(&sha256_hex(&weights()));
    std::fs::create_dir_all(blob.parent().expect("dir")).expect("mkdir");
    std::fs::write(&blob, &bad).expect("write");
    let entry = s.snapshot(&commit, "model.safetensors");
    std::fs::create_dir_all(entry.parent().expect("dir")).expect("mkdir");
    std::os::unix::fs::symlink(format!("../../blobs/{}", sha256_hex(&weights())), &entry)
        .expect("symlink");

    let run = s.run(&["apply", "--yes"]);
    ok(&run);
    assert!(run.stderr.contains("cannot reuse"), "{}", run.stderr);
    assert!(
        holds(&entry, &weights()),
        "the snapshot serves the verified bytes"
    );
    assert_eq!(
        std::fs::metadata(&entry).expect("entry").ino(),
        std::fs::metadata(s.file("model.safetensors"))
            .expect("store")
            .ino(),
        "the cache now shares the store's verified inode"
    );
    up_to_date(&s);

    // A blob replaced behind modelctl's back is seen by plan and verify, and put right.
    std::fs::remove_file(&blob).expect("rm");
    std::fs::write(&blob, &bad).expect("write");
    let verify = s.run(&["verify"]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(verify.stdout.contains("HF cache"), "{}", verify.stdout);
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.stdout);
    ok(&s.run(&["apply", "--yes"]));
    assert!(
        holds(&entry, &weights()),
        "the snapshot serves the verified bytes"
    );
    ok(&s.run(&["verify"]));
}

#[test]
fn regular_files_in_the_hf_cache_are_reused_once_their_git_oid_matches() {
    let config = b"{\"v\": 1}";
    let (s, _) = Hub::start(config, "");
    let good = s.cache_blob(&git_blob_id(config));
    std::fs::create_dir_all(good.parent().expect("dir")).expect("mkdir");
    std::fs::write(&good, config).expect("write");
    let run = s.run(&["apply", "--yes"]);
    ok(&run);
    assert!(
        !s.hub
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path().ends_with("/config.json")),
        "config.json came from the HF cache: {:?}",
        s.hub.requests()
    );
    assert!(s.project.read("models.lock").contains(&sha256_hex(config)));

    // Same size, other bytes: not reused.
    let (s, _) = Hub::start(config, "");
    let bad = s.cache_blob(&git_blob_id(config));
    std::fs::create_dir_all(bad.parent().expect("dir")).expect("mkdir");
    std::fs::write(&bad, b"{\"v\": 9}").expect("write");
    ok(&s.run(&["apply", "--yes"]));
    assert_eq!(std::fs::read(s.file("config.json")).expect("read"), config);
}

#[test]
fn updating_the_active_model_to_a_new_file_name_never_empties_it() {
    let (s, _) = Hub::start(b"{\"v\": 1}", "");
    ok(&s.run(&["apply", "--yes"]));
    // Upstream renames the weights; their download fails.
    s.repo.delete(&["model.safetensors"]);
    let mut renamed = weights();
    renamed[0] ^= 1;
    let b = s
        .repo
        .commit(&[("model-00001.safetensors", &renamed, Lfs::Yes)]);
    s.hub.corrupt_byte(&sha256_hex(&renamed));
    s.declare(&b, "");
    let lock_before = s.project.read("models.lock");

    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        holds(&s.file("model.safetensors"), &weights()),
        "the old version stays whole"
    );
    assert!(!s.file("model-00001.safetensors").exists());
    assert_eq!(
        s.project.read("models.lock"),
        lock_before,
        "a failed download does not rewrite models.lock"
    );
    let status = s.run(&["status", "--json"]);
    assert!(
        !status.stdout.contains("not_installed"),
        "{}",
        status.stdout
    );

    // Killed right before the swap: still the whole old version.
    s.hub.heal(&sha256_hex(&renamed));
    let killed = s.project.run_env(
        &["apply", "--yes"],
        &[
            ("HF_ENDPOINT", &s.hub.url()),
            ("MODELCTL_FAILPOINT", "restage.before-swap"),
        ],
    );
    assert_ne!(killed.code, 0);
    assert!(s.file("model.safetensors").is_file());
    assert!(s.file("config.json").is_file());

    ok(&s.run(&["apply", "--yes"]));
    assert!(holds(&s.file("model-00001.safetensors"), &renamed));
    assert!(
        !s.file("model.safetensors").exists(),
        "the old name is gone"
    );
    let leftovers: Vec<_> = std::fs::read_dir(s.project.path("models/.modelctl/tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    ok(&s.run(&["verify"]));
}

fn url_manifest(url: &str, sha256: &str) -> String {
    format!(
        "version: 1\nmodels:\n  w:\n    type: lip_sync\n    source:\n      url: {url}\n      sha256: {sha256}\n"
    )
}

#[test]
fn a_wrong_sha256_in_models_yaml_is_never_written_into_models_lock() {
    let wrong = "a".repeat(64);
    // A local file: refused while resolving, naming models.yaml.
    let project = Project::new();
    project.write("x.bin", "local weights\n");
    project.write("models.yaml", &url_manifest("./x.bin", &wrong));
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("models.yaml"), "{}", run.stderr);
    assert!(
        !std::fs::read_to_string(project.path("models.lock"))
            .unwrap_or_default()
            .contains(&wrong)
    );

    // Over HTTP: the download is refused, the advice is to fix models.yaml.
    let server = FileServer::start();
    let project = Project::new();
    project.write(
        "models.yaml",
        &url_manifest(&format!("{}/weights.bin", server.base), &wrong),
    );
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("models.w.source.sha256"),
        "the message names the models.yaml key to fix: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("models.lock updated"),
        "{}",
        run.stderr
    );
    let lock = std::fs::read_to_string(project.path("models.lock")).unwrap_or_default();
    assert!(!lock.contains(&wrong), "{lock}");
}

#[test]
fn an_md5_only_file_is_verified_by_its_md5_not_its_size() {
    let server = FileServer::start();
    let project = Project::new();
    project.write(
        "models.yaml",
        &format!(
            "version: 1\nmodels:\n  w:\n    type: lip_sync\n    source:\n      url: {}/weights.bin\n",
            server.base
        ),
    );
    ok(&project.run(&["apply", "--yes"]));
    // A lock that has only an md5 for the file (as a source that publishes nothing better).
    let md5 = {
        use md5::Digest;
        hex::encode(md5::Md5::digest(crate::support::SERVED))
    };
    let lock = project.read("models.lock");
    let sha = sha256_hex(crate::support::SERVED);
    project.write(
        "models.lock",
        &lock.replace(&format!("sha256: \"{sha}\""), &format!("md5: \"{md5}\"")),
    );
    let file = project.path("models/models/lip_sync/w/weights.bin");
    flip_byte(&file, 3);

    let verify = project.run(&["verify"]);
    assert_eq!(verify.code, 1, "the md5 is checked: {}", verify.stdout);
    let run = project.run(&["apply", "--yes"]);
    ok(&run);
    assert!(run.stderr.contains("downloading it"), "{}", run.stderr);
    assert_eq!(std::fs::read(&file).expect("read"), crate::support::SERVED);
}
