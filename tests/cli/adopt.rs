//! Adopting what the machine already holds. `add --from-hf-cache` declares the Hugging Face
//! cache's repositories pinned at the cached commit, and `apply` takes their bytes from the
//! cache (hashed, then linked: one inode for the HF cache, the store and the machine cache),
//! downloading nothing; against a cache laid out by hand as `huggingface_hub` writes it, and
//! against the real `hf download` where Python's huggingface_hub is installed. A file whose
//! blob a local Ollama store holds (a GGUF pulled with `ollama pull`) is linked from there.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::fake_hub::{FakeHub, Lfs, RepoKind, git_blob_id};
use crate::support::{Project, Run, sha256_hex};

const CONFIG: &[u8] = b"{\"architectures\": [\"TinyForCausalLM\"]}\n";

fn weights() -> Vec<u8> {
    (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

struct Setup {
    hub: FakeHub,
    project: Project,
    commit: String,
}

impl Setup {
    fn new() -> Self {
        let hub = FakeHub::start();
        let repo = hub.repo(RepoKind::Model, "acme/tiny-lm");
        let commit = repo.commit(&[
            ("config.json", CONFIG, Lfs::No),
            ("model.safetensors", &weights(), Lfs::Yes),
            ("README.md", b"# not downloaded\n", Lfs::No),
        ]);
        let project = Project::with_manifest("version: 1\nmodels: {}\n");
        Self {
            hub,
            project,
            commit,
        }
    }

    fn hub_cache(&self) -> PathBuf {
        self.project.path(".cache/huggingface/hub")
    }

    fn run(&self, args: &[&str]) -> Run {
        let url = self.hub.url();
        self.project.run_env(
            args,
            &[
                ("HF_ENDPOINT", url.as_str()),
                ("MODELCTL_HTTP_RETRY_BASE_MS", "10"),
            ],
        )
    }

    /// The cache as `hf download acme/tiny-lm config.json model.safetensors` leaves it.
    fn lay_out_cache(&self) {
        let repo = self.hub_cache().join("models--acme--tiny-lm");
        let snapshot = repo.join("snapshots").join(&self.commit);
        std::fs::create_dir_all(&snapshot).expect("mkdir");
        std::fs::create_dir_all(repo.join("blobs")).expect("mkdir");
        std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
        std::fs::write(repo.join("refs/main"), &self.commit).expect("ref");
        for (name, bytes, etag) in [
            ("config.json", CONFIG.to_vec(), git_blob_id(CONFIG)),
            ("model.safetensors", weights(), sha256_hex(&weights())),
        ] {
            std::fs::write(repo.join("blobs").join(&etag), &bytes).expect("blob");
            std::os::unix::fs::symlink(format!("../../blobs/{etag}"), snapshot.join(name))
                .expect("symlink");
        }
    }

    fn cached_weights(&self) -> PathBuf {
        self.hub_cache()
            .join("models--acme--tiny-lm/blobs")
            .join(sha256_hex(&weights()))
    }
}

fn ok(run: &Run) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

/// Adopting, then applying: the pinned commit and files are the cached ones, and no file
/// byte comes from the Hub.
fn adopt_and_apply(s: &Setup) {
    let add = s.run(&["add", "--from-hf-cache"]);
    ok(&add);
    assert!(
        add.stderr
            .contains("acme/tiny-lm: declared as `tiny-lm` (llm, 2 files"),
        "{}",
        add.stderr
    );
    let manifest = s.project.read("models.yaml");
    assert!(
        manifest.contains(&format!("revision: {}", s.commit)),
        "{manifest}"
    );
    assert!(manifest.contains("model.safetensors"), "{manifest}");
    assert!(
        !manifest.contains("README.md"),
        "only what the cache holds: {manifest}"
    );

    let again = s.run(&["add", "--from-hf-cache", "acme/tiny-lm"]);
    ok(&again);
    assert!(
        again.stderr.contains("already declared as `tiny-lm`"),
        "{}",
        again.stderr
    );

    s.hub.clear_requests();
    let sent = s.hub.cdn_bytes_sent();
    let apply = s.run(&["apply"]);
    ok(&apply);
    assert!(
        apply.stderr.contains("from the HF cache by hardlink"),
        "{}",
        apply.stderr
    );
    assert_eq!(s.hub.cdn_bytes_sent(), sent, "no file byte downloaded");
    let resolves: Vec<String> = s
        .hub
        .requests()
        .iter()
        .map(|r| r.path().to_owned())
        .filter(|p| p.contains("/resolve/"))
        .collect();
    assert!(resolves.is_empty(), "{resolves:?}");
    let store_file = s
        .project
        .path("models/models/llm/tiny-lm/model.safetensors");
    let inode = |p: &Path| std::fs::metadata(p).expect("stat").ino();
    assert_eq!(
        inode(&store_file),
        inode(&s.cached_weights()),
        "one copy on disk"
    );
    ok(&s.run(&["verify"]));
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);

    // Removing it says what the HF cache keeps, and keeps it.
    let remove = s.run(&["remove", "tiny-lm"]);
    ok(&remove);
    assert!(
        remove.stderr.contains("the HF cache still holds")
            && remove.stderr.contains("`hf cache rm model/acme/tiny-lm`"),
        "{}",
        remove.stderr
    );
    assert!(s.cached_weights().is_file());
}

#[test]
fn repositories_in_the_hf_cache_are_declared_and_applied_without_a_download() {
    let s = Setup::new();
    s.lay_out_cache();
    adopt_and_apply(&s);
}

#[test]
fn adopting_a_repository_the_cache_lacks_names_what_it_holds() {
    let s = Setup::new();
    s.lay_out_cache();
    let run = s.run(&["add", "--from-hf-cache", "acme/tiny"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("holds no model repository `acme/tiny`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("acme/tiny-lm"), "{}", run.stderr);
    assert_eq!(s.project.read("models.yaml"), "version: 1\nmodels: {}\n");
}

#[test]
fn a_repository_whose_kind_the_files_do_not_show_needs_a_type() {
    let s = Setup::new();
    s.lay_out_cache();
    let config = s
        .hub_cache()
        .join("models--acme--tiny-lm/blobs")
        .join(git_blob_id(CONFIG));
    std::fs::write(&config, b"{}\n").expect("write");
    let run = s.run(&["add", "--from-hf-cache"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--type TYPE"), "{}", run.stderr);
    ok(&s.run(&["add", "--from-hf-cache", "--type", "tts"]));
    assert!(s.project.read("models.yaml").contains("type: tts"));
}

/// The acceptance, with the real client: `hf download`, then `add --from-hf-cache`,
/// then `apply` downloads 0 bytes, and `hf cache verify` still passes.
#[test]
fn hf_download_then_adopt_then_apply_downloads_nothing_and_hf_cache_verify_passes() {
    let Some(hf) = hf_cli() else {
        eprintln!(
            "skipped: no `hf` beside MODELCTL_TEST_PYTHON (`.ci/run` installs huggingface_hub)"
        );
        return;
    };
    let s = Setup::new();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(&hf)
            .args(args)
            .env("HF_ENDPOINT", s.hub.url())
            .env("HF_HUB_CACHE", s.hub_cache())
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env("HF_HUB_DISABLE_XET", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("HOME", s.project.root())
            .output()
            .expect("run hf");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "hf {args:?}: {text}");
        text
    };
    cli(&[
        "download",
        "acme/tiny-lm",
        "config.json",
        "model.safetensors",
        "--revision",
        &s.commit,
    ]);
    assert!(s.cached_weights().is_file(), "hf wrote its blob");
    adopt_and_apply(&s);
    cli(&["cache", "verify", "acme/tiny-lm", "--revision", &s.commit]);
}

/// `hf`, from the venv `.ci/run` makes (beside `MODELCTL_TEST_PYTHON`), when it runs.
fn hf_cli() -> Option<PathBuf> {
    let python = PathBuf::from(std::env::var("MODELCTL_TEST_PYTHON").ok()?);
    let hf = python.parent()?.join("hf");
    std::process::Command::new(&hf)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| hf)
}

/// A url model whose sha256 is a blob of `OLLAMA_MODELS` is linked from there, not fetched;
/// one whose Ollama blob is damaged is downloaded after all.
#[test]
fn a_gguf_ollama_already_holds_is_linked_not_downloaded() {
    let server = crate::faults::FaultServer::start();
    let gguf = crate::faults::pseudo_random(8192, 21);
    server.serve("/m.gguf", gguf.clone());
    let project = Project::with_manifest(&format!(
        "version: 1\nmodels:\n  m:\n    type: llm\n    source: {{ url: \"{}\", sha256: {} }}\n",
        server.url("/m.gguf"),
        sha256_hex(&gguf)
    ));
    let ollama = project.path("ollama");
    let blob = ollama.join(format!("blobs/sha256-{}", sha256_hex(&gguf)));
    std::fs::create_dir_all(blob.parent().expect("dir")).expect("mkdir");
    std::fs::write(&blob, &gguf).expect("blob");
    let dir = ollama.display().to_string();
    let env = [
        ("OLLAMA_MODELS", dir.as_str()),
        ("OLLAMA_HOST", "127.0.0.1:9"),
    ];

    let plan = project.run_env(&["plan"], &env);
    ok(&plan);
    assert!(
        plan.stdout.contains("reuse from Ollama's store"),
        "{}",
        plan.stdout
    );
    let apply = project.run_env(&["apply"], &env);
    ok(&apply);
    assert!(
        apply.stderr.contains("from Ollama's store by hardlink"),
        "{}",
        apply.stderr
    );
    assert!(server.gets("/m.gguf").is_empty(), "nothing downloaded");
    let inode = |p: &Path| std::fs::metadata(p).expect("stat").ino();
    assert_eq!(
        inode(&project.path("models/models/llm/m/m.gguf")),
        inode(&blob)
    );

    // Another project, the same size, other bytes in Ollama's blob: hashed, refused, fetched.
    let other = Project::with_manifest(&project.read("models.yaml"));
    let damaged = other
        .path("ollama")
        .join(format!("blobs/sha256-{}", sha256_hex(&gguf)));
    std::fs::create_dir_all(damaged.parent().expect("dir")).expect("mkdir");
    let mut bytes = gguf.clone();
    bytes[0] ^= 1;
    std::fs::write(&damaged, &bytes).expect("blob");
    let dir = other.path("ollama").display().to_string();
    let env = [
        ("OLLAMA_MODELS", dir.as_str()),
        ("OLLAMA_HOST", "127.0.0.1:9"),
    ];
    let apply = other.run_env(&["apply"], &env);
    ok(&apply);
    assert!(
        apply
            .stderr
            .contains("cannot reuse m/m.gguf from Ollama's store"),
        "{}",
        apply.stderr
    );
    assert_eq!(server.gets("/m.gguf").len(), 1);
    assert_eq!(
        std::fs::read(other.path("models/models/llm/m/m.gguf")).expect("read"),
        gguf
    );
}
