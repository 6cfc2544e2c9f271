//! A model-based test of the store's promises, over the real binary and the fake Hub.
//!
//! Each sequence starts from two `hf` models (one active, `hf_cache: true` in half of the
//! sequences) and takes random steps: a regular file changes keeping its size, a weights file
//! changes size, a file is renamed upstream, a store file or a blob or an HF-cache blob is
//! corrupted, a store file is deleted, a download is refused once, apply is killed at a
//! failpoint or at a random moment, the active model flips. `apply` runs after each step, and
//! then, from scratch (hashing in the test, not asking modelctl):
//!
//! - every file under `models/` hashes to what models.lock says for it (sha256 and git blob
//!   id), and a model directory that exists holds all of its locked files;
//! - `active/<type>` resolves to a complete model;
//! - every entry of a managed HF-cache snapshot serves the locked bytes;
//! - after a clean apply, `plan --detailed-exitcode` says nothing is left and `verify` agrees.
//!
//! The seed of a failing sequence is printed; `MODELCTL_MODEL_SEED=<n>` replays it alone.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use modelctl::digest::{GitOid, Sha256};

use crate::fake_blob::BlobFaults;
use crate::fake_hub::{FakeHub, Lfs, RepoKind};
use crate::support::{Project, Rng, Run};

/// Sequences per test; four tests run them in parallel.
const SEQUENCES: u64 = 50;
const STEPS: usize = 5;

/// One upstream model: its repository and the commit models.yaml pins.
struct Upstream {
    repo: crate::fake_hub::Repo,
    revision: String,
    weights_name: String,
    generation: u32,
}

struct World {
    hub: FakeHub,
    project: Project,
    models: Vec<(&'static str, Upstream)>,
    active: usize,
    hf_cache: bool,
    log: Vec<String>,
}

fn weights(generation: u32, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(generation * 7) as u8)
        .collect()
}

/// A regular file whose size never changes: `{"g": 0001}`.
fn config(generation: u32) -> Vec<u8> {
    format!("{{\"g\": {:04}}}", generation % 10_000).into_bytes()
}

impl World {
    fn new(rng: &mut Rng) -> Self {
        let hub = FakeHub::start();
        let mut models = Vec::new();
        for id in ["a", "b"] {
            let repo = hub.repo(RepoKind::Model, &format!("org/{id}"));
            let revision = repo.commit(&[
                ("config.json", &config(0), Lfs::No),
                ("model.safetensors", &weights(0, 40_000), Lfs::Yes),
            ]);
            models.push((
                id,
                Upstream {
                    repo,
                    revision,
                    weights_name: "model.safetensors".to_owned(),
                    generation: 0,
                },
            ));
        }
        let world = Self {
            hub,
            project: Project::new(),
            models,
            active: rng.below(2) as usize,
            hf_cache: rng.below(2) == 0,
            log: Vec::new(),
        };
        world.declare();
        world
    }

    fn declare(&self) {
        let mut text = String::from("version: 1\n");
        if self.hf_cache {
            text.push_str("hf_cache: true\n");
        }
        text.push_str("models:\n");
        for (id, up) in &self.models {
            text.push_str(&format!(
                "  {id}:\n    type: llm\n    source:\n      hf: org/{id}\n      revision: {}\n",
                up.revision
            ));
        }
        text.push_str(&format!("active:\n  llm: {}\n", self.models[self.active].0));
        self.project.write("models.yaml", &text);
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HF_ENDPOINT", self.hub.url()),
            ("MODELCTL_HTTP_RETRY_BASE_MS", "1".to_owned()),
            ("MODELCTL_HTTP_RETRIES", "1".to_owned()),
        ]
    }

    fn run(&self, args: &[&str], more: &[(&str, &str)]) -> Run {
        let env = self.env();
        let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(more);
        self.project.run_env(args, &all)
    }

    fn apply(&self) -> Run {
        self.run(&["apply", "--yes"], &[])
    }

    /// Every regular file under `dir`, recursively.
    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.is_file() {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    fn pick<'a>(&self, rng: &mut Rng, files: &'a [PathBuf]) -> Option<&'a PathBuf> {
        (!files.is_empty()).then(|| &files[rng.below(files.len() as u64) as usize])
    }

    /// One random step; returns environment overrides for the apply that follows, when the
    /// step is a kill (it runs its own apply then).
    fn step(&mut self, rng: &mut Rng) {
        let which = rng.below(11);
        let m = rng.below(2) as usize;
        match which {
            0 => {
                let up = &mut self.models[m].1;
                up.generation += 1;
                up.revision = up
                    .repo
                    .commit(&[("config.json", &config(up.generation), Lfs::No)]);
                self.log
                    .push(format!("config of {} changes, same size", self.models[m].0));
                self.declare();
            }
            1 => {
                let up = &mut self.models[m].1;
                up.generation += 1;
                let size = 30_000 + rng.below(20_000) as usize;
                let name = up.weights_name.clone();
                up.revision = up
                    .repo
                    .commit(&[(&name, &weights(up.generation, size), Lfs::Yes)]);
                self.log
                    .push(format!("weights of {} change size", self.models[m].0));
                self.declare();
            }
            2 => {
                let up = &mut self.models[m].1;
                up.generation += 1;
                let old = up.weights_name.clone();
                up.weights_name = format!("model-{:05}.safetensors", up.generation);
                up.repo.delete(&[&old]);
                up.revision = up.repo.commit(&[(
                    &up.weights_name,
                    &weights(up.generation, 40_000),
                    Lfs::Yes,
                )]);
                self.log
                    .push(format!("weights of {} renamed upstream", self.models[m].0));
                self.declare();
            }
            3..=6 => {
                let root = match which {
                    3 => self.project.path("models/models"),
                    4 => self.project.path("models/blobs"),
                    _ => self.project.path(".cache/huggingface/hub"),
                };
                let files = Self::files_under(&root);
                if let Some(path) = self.pick(rng, &files) {
                    let what = match which {
                        3 => "a store file is corrupted",
                        4 => "a blob is replaced by damaged bytes",
                        5 => "an HF-cache blob is replaced by damaged bytes",
                        _ => "a store file is deleted",
                    };
                    self.log.push(format!("{what}: {}", path.display()));
                    damage(path, which);
                }
            }
            7 => {
                let names = modelctl::failpoint::ALL;
                let name = names[rng.below(names.len() as u64) as usize];
                self.log.push(format!("apply killed at failpoint {name}"));
                let _ = self.run(&["apply", "--yes"], &[("MODELCTL_FAILPOINT", name)]);
            }
            8 => {
                let ms = rng.below(60);
                self.log.push(format!("apply killed after {ms} ms"));
                let env = self.env();
                let all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let mut child = self
                    .project
                    .command(&["apply", "--yes"], &all)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn");
                std::thread::sleep(std::time::Duration::from_millis(ms));
                let _ = child.kill();
                let _ = child.wait();
            }
            9 => {
                self.active = 1 - self.active;
                self.log
                    .push(format!("active flips to {}", self.models[self.active].0));
                self.declare();
            }
            _ => {
                // The next download of the model's current weights is refused (bad bytes).
                self.log.push(format!(
                    "a download of {} is refused once",
                    self.models[m].0
                ));
                self.faulty_apply(m);
            }
        }
    }

    /// Bumps the model's weights upstream with their download corrupted, applies once
    /// (it must fail for that model, and keep the store whole), then heals.
    fn faulty_apply(&mut self, m: usize) {
        let up = &mut self.models[m].1;
        up.generation += 1;
        let bytes = weights(up.generation, 40_000);
        let name = up.weights_name.clone();
        up.revision = up.repo.commit(&[(&name, &bytes, Lfs::Yes)]);
        let sha = Sha256::of(&bytes).hex();
        self.declare();
        self.hub.corrupt_byte(&sha);
        let _ = self.apply();
        self.check_invariants("after a refused download");
        self.hub.heal(&sha);
    }

    /// The promises that hold whatever the last apply did.
    fn check_invariants(&self, when: &str) {
        let lock = match modelctl::lock::load(&self.project.path("models.lock")) {
            Ok(lock) => lock,
            Err(e) => panic!("{when}: models.lock unreadable: {e:?}"),
        };
        let models_dir = self.project.path("models/models/llm");
        for (id, _) in &self.models {
            let dir = models_dir.join(id);
            if !dir.exists() {
                continue;
            }
            let locked = lock
                .models
                .iter()
                .find(|(k, _)| k.as_str() == *id)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("{when}: `{id}` is in the store but not in models.lock"));
            let present = Self::files_under(&dir);
            assert_eq!(
                present.len(),
                locked.files.len(),
                "{when}: `{id}` holds {present:?}, models.lock lists {:?}",
                locked
                    .files
                    .iter()
                    .map(|f| f.path.as_str())
                    .collect::<Vec<_>>()
            );
            for f in &locked.files {
                let path = f.path.under(&dir);
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("{when}: `{}` missing: {e}", path.display()));
                check_bytes(when, &path, &bytes, f);
            }
        }
        // The active pointer leads to a complete model.
        let active = self.project.path("models/active/llm");
        if std::fs::symlink_metadata(&active).is_ok() {
            let target = std::fs::canonicalize(&active)
                .unwrap_or_else(|e| panic!("{when}: active/llm is broken: {e}"));
            assert!(
                !Self::files_under(&target).is_empty(),
                "{when}: active/llm leads to an empty directory"
            );
        }
        if !self.hf_cache {
            return;
        }
        for (id, _) in &self.models {
            let Some(locked) = lock
                .models
                .iter()
                .find(|(k, _)| k.as_str() == *id)
                .map(|(_, v)| v)
            else {
                continue;
            };
            let modelctl::lock::LockedSource::Hf { commit, .. } = &locked.source else {
                continue;
            };
            let snapshot = self.project.path(&format!(
                ".cache/huggingface/hub/models--org--{id}/snapshots/{commit}"
            ));
            for f in &locked.files {
                let path = f.path.under(&snapshot);
                if let Ok(bytes) = std::fs::read(&path) {
                    check_bytes(&format!("{when} (HF cache)"), &path, &bytes, f);
                }
            }
        }
    }

    /// After a clean apply: nothing left to do, every model complete, and verify agrees.
    fn check_settled(&self, when: &str) {
        let plan = self.run(&["plan", "--detailed-exitcode"], &[]);
        assert_eq!(
            plan.code, 0,
            "{when}: plan after a clean apply:\n{}\n{}",
            plan.stdout, plan.stderr
        );
        for (id, _) in &self.models {
            assert!(
                self.project
                    .path(&format!("models/models/llm/{id}"))
                    .is_dir(),
                "{when}: `{id}` is not installed after a clean apply"
            );
        }
        let verify = self.run(&["verify"], &[]);
        assert_eq!(
            verify.code, 0,
            "{when}: verify disagrees:\n{}",
            verify.stdout
        );
    }
}

/// The file's bytes must match every digest the lock gives for it.
fn check_bytes(when: &str, path: &Path, bytes: &[u8], f: &modelctl::lock::LockedFile) {
    assert_eq!(
        bytes.len() as u64,
        f.size,
        "{when}: size of `{}`",
        path.display()
    );
    if let Some(sha) = f.sha256 {
        assert!(
            Sha256::of(bytes) == sha,
            "{when}: `{}` does not hash to models.lock's sha256",
            path.display()
        );
    }
    if let Some(oid) = f.git_oid {
        assert!(
            GitOid::of_blob(bytes) == oid,
            "{when}: `{}` does not have models.lock's git blob id",
            path.display()
        );
    }
    assert!(
        f.sha256.is_some() || f.git_oid.is_some(),
        "{when}: models.lock gives nothing to check `{}` by",
        path.display()
    );
}

/// Damages a file: flips a byte in place (same inode), replaces it by damaged bytes (a new
/// inode), or deletes it.
fn damage(path: &Path, how: u64) {
    let Ok(mut bytes) = std::fs::read(path) else {
        return;
    };
    if bytes.is_empty() {
        return;
    }
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    match how {
        3 => {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
            let _ = std::fs::write(path, &bytes);
        }
        6 => {
            let _ = std::fs::remove_file(path);
        }
        _ => {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::write(path, &bytes);
        }
    }
}

fn run_sequence(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut world = World::new(&mut rng);
    let first = world.apply();
    assert_eq!(
        first.code, 0,
        "seed {seed}: the first apply:\n{}",
        first.stderr
    );
    world.check_invariants("after the first apply");
    for step in 0..STEPS {
        world.step(&mut rng);
        let run = world.apply();
        let when = format!(
            "seed {seed}, step {step} ({}), MODELCTL_MODEL_SEED={seed} replays it",
            world.log.join("; ")
        );
        world.check_invariants(&when);
        assert_eq!(
            run.code, 0,
            "{when}: apply failed:\n{}\n{}",
            run.stdout, run.stderr
        );
        world.check_settled(&when);
    }
}

fn run_block(block: u64) {
    if let Ok(seed) = std::env::var("MODELCTL_MODEL_SEED") {
        if block == 0 {
            run_sequence(seed.parse().expect("a number"));
        }
        return;
    }
    for i in 0..SEQUENCES {
        run_sequence(block * SEQUENCES + i);
    }
}

#[test]
fn store_promises_hold_over_random_sequences_block_0() {
    run_block(0);
}

#[test]
fn store_promises_hold_over_random_sequences_block_1() {
    run_block(1);
}

#[test]
fn store_promises_hold_over_random_sequences_block_2() {
    run_block(2);
}

#[test]
fn store_promises_hold_over_random_sequences_block_3() {
    run_block(3);
}
