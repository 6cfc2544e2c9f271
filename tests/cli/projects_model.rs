//! A model-based test of the promises of the machine cache and of shared stores
//! (docs/store.md, "Many projects"), over the real binary: three projects on one machine use
//! one machine cache, and in two sequences of three, two of them also use one store.
//!
//! The projects declare subsets of a pool of four `url` models, each with fixed bytes and its
//! sha256 pinned in models.yaml (two of them hold the same bytes, so one blob serves two model
//! directories), and random steps follow: a project declares or drops a model or changes its
//! active one and applies; `gc --grace 0` runs in a project; `cache prune --grace 0` runs; a
//! project directory is deleted and later a new project takes its place; a project's store is
//! deleted by hand, and a prune and an apply follow; a plan saved with `plan --out` that links
//! a blob from the cache is applied after a prune removed that blob; an apply is killed
//! at a failpoint or at a random moment (or a gc or a prune at a random moment); two or three
//! of applies, gcs, a prune and a project's deletion happen at once, an apply among them
//! sometimes killed. Projects that share a store agree on content and on active models: this
//! test is about what they keep for each other, not about the refusals.
//! After every step (and after a kill, before the killed project's clean apply), from scratch,
//! hashing in the test rather than asking modelctl:
//!
//! - every model directory of every store holds exactly its model's file, read-only, with the
//!   bytes the pinned sha256 names, and every live project's models.lock pins each model it
//!   lists to exactly that file, size and sha256;
//! - `active/<type>` of every store resolves to a complete model directory of that type;
//! - every blob of every store and of the machine cache hashes to its name, and the cache's
//!   are read-only;
//! - what a live project declares and had installed is still installed (and active, when it
//!   still declares it active), whatever the other projects did and whatever was pruned;
//! - after a `cache prune` that ran alone, the cache holds every blob it held that a live
//!   project's lock pins, and nothing else that no store links; after a `gc` that ran alone,
//!   the store keeps every blob it held that a live lock of the store pins, and nothing else
//!   that no model directory links;
//! - an apply downloads no file whose blob the machine cache held, and after a clean apply the
//!   store's blobs are the cache's (one inode), unless an apply was killed in that store or
//!   ran beside another store's (see `check_shared_bytes` for why);
//! - after a clean apply, the project's models are installed and active as it declares,
//!   nothing is left that no live project of the store declares, `plan --detailed-exitcode`
//!   says nothing is left to do and `verify` agrees; after a prune, a gc or a deletion, a
//!   live project applies cleanly.
//!
//! The seed of a failing sequence is printed with its steps; `MODELCTL_PROJECTS_SEED=<n>`
//! replays it alone, and `MODELCTL_PROJECTS_BASE=<n>` runs other seeds than the usual ones.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use modelctl::digest::Sha256;

use crate::faults::{FaultServer, pseudo_random};
use crate::support::{Project, Rng, Run};

/// Sequences per test; four tests run them in parallel.
const SEQUENCES: u64 = 50;
const STEPS: usize = 5;
const SLOTS: usize = 3;
const KINDS: [&str; 2] = ["llm", "tts"];

/// One model of the pool: the same bytes for every project of the sequence.
struct Model {
    id: &'static str,
    kind: &'static str,
    file: &'static str,
    bytes: Vec<u8>,
    sha: String,
}

fn pool(rng: &mut Rng, seed: u64) -> Vec<Model> {
    let mut size = || 1024 + rng.below(4096) as usize;
    let alpha = pseudo_random(size(), seed * 4 + 1);
    let beta = pseudo_random(size(), seed * 4 + 2);
    let gamma = pseudo_random(size(), seed * 4 + 3);
    // delta holds alpha's bytes: one blob, two model directories of two types.
    let delta = alpha.clone();
    [
        ("alpha", "llm", "alpha.bin", alpha),
        ("beta", "llm", "beta.bin", beta),
        ("gamma", "tts", "gamma.bin", gamma),
        ("delta", "tts", "delta.bin", delta),
    ]
    .into_iter()
    .map(|(id, kind, file, bytes)| Model {
        id,
        kind,
        file,
        sha: Sha256::of(&bytes).hex(),
        bytes,
    })
    .collect()
}

/// What a project's last clean apply installed, less what its models.yaml has stopped saying
/// since (an active model its partner changed for it).
#[derive(Clone)]
struct Installed {
    declared: BTreeSet<usize>,
    active: BTreeMap<&'static str, usize>,
}

/// One place for a project: empty after its project is deleted, until a new one comes.
struct Slot {
    project: Option<Project>,
    /// Its store is the world's shared one (else `./models` in the project).
    shared: bool,
    declared: BTreeSet<usize>,
    active: BTreeMap<&'static str, usize>,
    installed: Option<Installed>,
    /// How many projects the slot has had: `P1.2` is the second project of slot 1.
    born: usize,
}

/// One of the commands a concurrent step runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Apply(usize),
    Gc(usize),
    Prune,
    /// The test deletes the project's directory.
    Delete(usize),
}

struct World {
    seed: u64,
    server: FaultServer,
    cache: tempfile::TempDir,
    shared_store: tempfile::TempDir,
    pool: Vec<Model>,
    slots: Vec<Slot>,
    log: Vec<String>,
    /// Stores that may keep blobs of their own, beside the cache's: an apply was killed there
    /// (see [`World::check_shared_bytes`]), or ran at the same time as another store's.
    tainted: BTreeSet<PathBuf>,
}

/// Blobs under `<root>/blobs/sha256/`: hex name → (path, hardlinks, inode).
type Blobs = BTreeMap<String, (PathBuf, u64, u64)>;

impl World {
    fn new(seed: u64, rng: &mut Rng) -> Self {
        let server = FaultServer::start();
        let pool = pool(rng, seed);
        for m in &pool {
            server.serve(&format!("/{}", m.file), m.bytes.clone());
        }
        let sharing = rng.below(3) != 0;
        let slots = (0..SLOTS)
            .map(|i| Slot {
                project: None,
                shared: sharing && i < 2,
                declared: BTreeSet::new(),
                active: BTreeMap::new(),
                installed: None,
                born: 0,
            })
            .collect();
        let mut world = Self {
            seed,
            server,
            cache: tempfile::tempdir().expect("cache"),
            shared_store: tempfile::tempdir().expect("shared store"),
            pool,
            slots,
            log: Vec::new(),
            tainted: BTreeSet::new(),
        };
        if sharing {
            world.log.push("P0 and P1 share a store".to_owned());
        }
        for i in 0..SLOTS {
            world.create(i, rng);
        }
        world
    }

    /// The seed, the steps so far, and how to replay them: for every failure message.
    fn context(&self) -> String {
        format!(
            "seed {} (MODELCTL_PROJECTS_SEED={} replays it), steps: {}",
            self.seed,
            self.seed,
            self.log.join("; ")
        )
    }

    fn name(&self, i: usize) -> String {
        format!("P{i}.{}", self.slots[i].born)
    }

    fn live(&self) -> Vec<usize> {
        (0..SLOTS)
            .filter(|i| self.slots[*i].project.is_some())
            .collect()
    }

    fn project(&self, i: usize) -> &Project {
        self.slots[i].project.as_ref().expect("a live slot")
    }

    fn store_of(&self, i: usize) -> PathBuf {
        if self.slots[i].shared {
            self.shared_store.path().to_path_buf()
        } else {
            self.project(i).path("models")
        }
    }

    /// Every store in use, and the shared one when a project of it was deleted (what it left
    /// there is still checked).
    fn stores(&self) -> Vec<PathBuf> {
        let mut stores: Vec<PathBuf> = self.live().into_iter().map(|i| self.store_of(i)).collect();
        if self.slots.iter().any(|s| s.shared) {
            stores.push(self.shared_store.path().to_path_buf());
        }
        stores.sort();
        stores.dedup();
        stores
    }

    /// The live projects whose store is `store`.
    fn users_of(&self, store: &Path) -> Vec<usize> {
        self.live()
            .into_iter()
            .filter(|i| self.store_of(*i) == store)
            .collect()
    }

    /// The other live project sharing slot `i`'s store.
    fn partner(&self, i: usize) -> Option<usize> {
        if !self.slots[i].shared {
            return None;
        }
        (0..SLOTS).find(|j| *j != i && self.slots[*j].shared && self.slots[*j].project.is_some())
    }

    fn manifest(&self, i: usize) -> String {
        let slot = &self.slots[i];
        let store = match slot.shared {
            true => self.shared_store.path().display().to_string(),
            false => "./models".to_owned(),
        };
        let mut text = format!("version: 1\nstore: {store}\n");
        if slot.declared.is_empty() {
            text.push_str("models: {}\n");
        } else {
            text.push_str("models:\n");
            for m in &slot.declared {
                let m = &self.pool[*m];
                text.push_str(&format!(
                    "  {}:\n    type: {}\n    source: {{ url: \"{}\", sha256: {} }}\n",
                    m.id,
                    m.kind,
                    self.server.url(&format!("/{}", m.file)),
                    m.sha
                ));
            }
        }
        if !slot.active.is_empty() {
            text.push_str("active:\n");
            for (kind, m) in &slot.active {
                text.push_str(&format!("  {kind}: {}\n", self.pool[*m].id));
            }
        }
        text
    }

    fn write_manifest(&self, i: usize) {
        self.project(i).write("models.yaml", &self.manifest(i));
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("MODELCTL_CACHE", self.cache.path().display().to_string())]
    }

    fn command(&self, i: usize, args: &[&str], more: &[(&str, &str)]) -> std::process::Command {
        let env = self.env();
        let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(more);
        self.project(i).command(args, &all)
    }

    fn run(&self, i: usize, args: &[&str], more: &[(&str, &str)]) -> Run {
        let env = self.env();
        let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(more);
        self.project(i).run_env(args, &all)
    }

    /// A new project in the empty slot `i`, declaring a random part of the pool (agreeing
    /// with the project it shares a store with), applied.
    fn create(&mut self, i: usize, rng: &mut Rng) {
        let slot = &mut self.slots[i];
        slot.project = Some(Project::new());
        slot.born += 1;
        slot.declared = (0..self.pool.len()).filter(|_| rng.below(2) == 0).collect();
        slot.active.clear();
        slot.installed = None;
        for kind in KINDS {
            let of_kind: Vec<usize> = slot
                .declared
                .iter()
                .copied()
                .filter(|m| self.pool[*m].kind == kind)
                .collect();
            if !of_kind.is_empty() && rng.below(2) == 0 {
                slot.active.insert(kind, rng.pick(&of_kind));
            }
        }
        if let Some(j) = self.partner(i) {
            for (kind, m) in self.slots[j].active.clone() {
                let slot = &mut self.slots[i];
                if slot.active.contains_key(kind) {
                    slot.active.insert(kind, m);
                    slot.declared.insert(m);
                }
            }
        }
        let declared: Vec<&str> = self.slots[i]
            .declared
            .iter()
            .map(|m| self.pool[*m].id)
            .collect();
        self.log.push(format!(
            "new project {} declares {declared:?}, active {:?}",
            self.name(i),
            self.active_names(i)
        ));
        self.write_manifest(i);
        self.clean_apply(i, "its first apply");
    }

    fn active_names(&self, i: usize) -> Vec<String> {
        self.slots[i]
            .active
            .iter()
            .map(|(k, m)| format!("{k}: {}", self.pool[*m].id))
            .collect()
    }

    /// Deletes the project of slot `i` (its directory, and the store in it when it has its own).
    fn delete(&mut self, i: usize) {
        self.log.push(format!("{} is deleted", self.name(i)));
        let slot = &mut self.slots[i];
        let project = slot.project.take().expect("a live slot");
        slot.installed = None;
        slot.declared.clear();
        slot.active.clear();
        let root = project.root().to_path_buf();
        drop(project);
        assert!(
            !root.exists(),
            "{}: the test could not delete `{}`",
            self.context(),
            root.display()
        );
    }

    /// One or two random changes to what project `i` declares, written to its models.yaml
    /// (and to its partner's when it must follow an active model).
    fn edit(&mut self, i: usize, rng: &mut Rng) {
        for _ in 0..1 + rng.below(2) {
            let m = rng.below(self.pool.len() as u64) as usize;
            let kind = self.pool[m].kind;
            let (id, name) = (self.pool[m].id, self.name(i));
            match rng.below(3) {
                0 if self.slots[i].declared.contains(&m) => {
                    let slot = &mut self.slots[i];
                    slot.declared.remove(&m);
                    if slot.active.get(kind) == Some(&m) {
                        slot.active.remove(kind);
                    }
                    self.log.push(format!("{name} drops {id}"));
                }
                0 => {
                    self.slots[i].declared.insert(m);
                    self.log.push(format!("{name} declares {id}"));
                }
                1 => {
                    let slot = &mut self.slots[i];
                    slot.declared.insert(m);
                    slot.active.insert(kind, m);
                    let mut line = format!("{name} activates {id} for {kind}");
                    if let Some(j) = self.partner(i)
                        && self.slots[j].active.get(kind).is_some_and(|a| *a != m)
                    {
                        let partner = &mut self.slots[j];
                        partner.active.insert(kind, m);
                        partner.declared.insert(m);
                        // Its last apply no longer says which model the type must point at:
                        // this project may switch it for both.
                        if let Some(installed) = &mut partner.installed {
                            installed.active.remove(kind);
                        }
                        self.write_manifest(j);
                        line.push_str(&format!(" ({}'s models.yaml follows)", self.name(j)));
                    }
                    self.log.push(line);
                }
                _ => {
                    if self.slots[i].active.remove(kind).is_some() {
                        self.log
                            .push(format!("{name} declares no active {kind} any more"));
                    }
                }
            }
        }
        self.write_manifest(i);
    }

    fn applied(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.installed = Some(Installed {
            declared: slot.declared.clone(),
            active: slot.active.clone(),
        });
    }

    /// Applies project `i`, which must succeed, download only what the machine cache did not
    /// hold, and settle.
    fn clean_apply(&mut self, i: usize, what: &str) {
        let ctx = || format!("{}: before {what} of {}", self.context(), self.name(i));
        let cached = blobs(self.cache.path(), &ctx);
        let gets = |m: &Model| self.server.gets(&format!("/{}", m.file)).len();
        let before: Vec<usize> = self.pool.iter().map(gets).collect();
        let run = self.run(i, &["apply", "-q", "--yes"], &[]);
        for (m, before) in self.pool.iter().zip(before) {
            assert!(
                gets(m) == before || !cached.contains_key(&m.sha),
                "{}: {what} of {} downloaded `{}`, though the machine cache held its blob",
                self.context(),
                self.name(i),
                m.file
            );
        }
        assert_eq!(
            run.code,
            0,
            "{}: {what}: apply in {} failed:\n{}\n{}",
            self.context(),
            self.name(i),
            run.stdout,
            run.stderr
        );
        self.applied(i);
        self.check(&format!("after {what} of {}", self.name(i)));
        self.check_settled(i, what);
    }

    /// A clean apply of a random live project, after a step that changed no manifest: what it
    /// needs is still there, or can be had again.
    fn apply_some(&mut self, rng: &mut Rng, what: &str) {
        let i = rng.pick(&self.live());
        self.clean_apply(i, &format!("the apply after {what}"));
    }

    fn step(&mut self, rng: &mut Rng) {
        let live = self.live();
        let empty: Vec<usize> = (0..SLOTS)
            .filter(|i| self.slots[*i].project.is_none())
            .collect();
        let roll = rng.below(17);
        match roll {
            0..=3 if !empty.is_empty() => {
                let i = rng.pick(&empty);
                self.create(i, rng);
            }
            4 => {
                let i = rng.pick(&live);
                self.log.push(format!("gc in {}", self.name(i)));
                self.gc_alone(i);
                self.check("after a gc");
                self.apply_some(rng, "a gc");
            }
            5 | 6 => {
                let i = rng.pick(&live);
                self.log.push(format!("cache prune from {}", self.name(i)));
                self.prune_alone(i);
                self.check("after a prune");
                self.apply_some(rng, "a prune");
            }
            7 if live.len() >= 2 => {
                let i = rng.pick(&live);
                self.delete(i);
                self.check("after a deletion");
                self.apply_some(rng, "a deletion");
            }
            8 | 9 => {
                let i = rng.pick(&live);
                self.edit(i, rng);
                let name = rng.pick(modelctl::failpoint::ALL);
                self.log.push(format!(
                    "apply in {} killed at failpoint {name}",
                    self.name(i)
                ));
                let run = self.run(
                    i,
                    &["apply", "-q", "--yes"],
                    &[("MODELCTL_FAILPOINT", name)],
                );
                // -1: killed by a signal (the failpoint aborts); 0: it was not reached.
                assert!(
                    run.code == 0 || run.code == -1,
                    "{}: the apply with a failpoint failed on its own:\n{}\n{}",
                    self.context(),
                    run.stdout,
                    run.stderr
                );
                if run.code == 0 {
                    self.applied(i);
                } else {
                    self.tainted.insert(self.store_of(i));
                }
                self.check(&format!("after the apply killed at {name}"));
                self.clean_apply(i, "the apply after a kill");
            }
            10 => self.kill_at_random(rng),
            11..=13 => self.concurrently(rng),
            14 if live.iter().any(|i| !self.slots[*i].shared) => {
                let own: Vec<usize> = live
                    .iter()
                    .copied()
                    .filter(|i| !self.slots[*i].shared)
                    .collect();
                let i = rng.pick(&own);
                self.log
                    .push(format!("the store of {} is deleted by hand", self.name(i)));
                let store = self.store_of(i);
                std::fs::remove_dir_all(&store).expect("rm store");
                self.tainted.remove(&store);
                self.slots[i].installed = None;
                self.check("after a store is deleted by hand");
                let from = rng.pick(&live);
                self.log
                    .push(format!("cache prune from {}", self.name(from)));
                self.prune_alone(from);
                self.check("after a prune");
                self.clean_apply(i, "the apply after its store was deleted");
            }
            15 => self.saved_plan_meets_a_prune(rng),
            _ => {
                let i = rng.pick(&live);
                self.edit(i, rng);
                self.log.push(format!("{} applies", self.name(i)));
                self.clean_apply(i, "an apply");
            }
        }
    }

    /// A project saves a plan that links a blob from the machine cache (one only the cache
    /// holds: no store links it and no live lock pins it), a prune removes that blob, and the
    /// saved plan is applied: it must download what it meant to link (docs/store.md: a prune
    /// racing an apply that is linking a blob loses nothing).
    fn saved_plan_meets_a_prune(&mut self, rng: &mut Rng) {
        let i = rng.pick(&self.live());
        match self.orphan(rng) {
            Some(m) => {
                let slot = &mut self.slots[i];
                slot.declared.insert(m);
                self.write_manifest(i);
                self.log.push(format!(
                    "{} declares {}, whose blob only the machine cache holds",
                    self.name(i),
                    self.pool[m].id
                ));
            }
            None => self.edit(i, rng),
        }
        let saved = self.project(i).path("saved-plan.json");
        let saved = saved.display().to_string();
        let plan = self.run(i, &["plan", "--out", &saved], &[]);
        assert_eq!(
            plan.code,
            0,
            "{}: plan --out in {}:\n{}\n{}",
            self.context(),
            self.name(i),
            plan.stdout,
            plan.stderr
        );
        let from = rng.pick(&self.live());
        self.log.push(format!(
            "{} saves its plan, cache prune from {}, {} applies the saved plan",
            self.name(i),
            self.name(from),
            self.name(i)
        ));
        self.prune_alone(from);
        self.check("after a prune");
        let run = self.run(i, &["apply", "-q", "--yes", &saved], &[]);
        assert_eq!(
            run.code,
            0,
            "{}: the saved plan of {}, applied after the prune:\n{}\n{}",
            self.context(),
            self.name(i),
            run.stdout,
            run.stderr
        );
        self.applied(i);
        self.check("after the saved plan was applied");
        self.check_settled(i, "the saved plan's apply");
    }

    /// A model whose blob only the machine cache holds: every live project that declares a
    /// model with its bytes drops it and applies, and each store holding the blob is
    /// collected. `None` when a store no live project uses still links it.
    fn orphan(&mut self, rng: &mut Rng) -> Option<usize> {
        let cached = blobs(self.cache.path(), &|| self.context());
        let candidates: Vec<usize> = (0..self.pool.len())
            .filter(|m| cached.contains_key(&self.pool[*m].sha))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let m = rng.pick(&candidates);
        let sha = self.pool[m].sha.clone();
        let same: Vec<usize> = (0..self.pool.len())
            .filter(|n| self.pool[*n].sha == sha)
            .collect();
        for j in self.live() {
            if !same.iter().any(|n| self.slots[j].declared.contains(n)) {
                continue;
            }
            let slot = &mut self.slots[j];
            for n in &same {
                slot.declared.remove(n);
                let kind = self.pool[*n].kind;
                if slot.active.get(kind) == Some(n) {
                    slot.active.remove(kind);
                }
            }
            self.log.push(format!(
                "{} drops every model with {}'s bytes",
                self.name(j),
                self.pool[m].id
            ));
            self.write_manifest(j);
            self.clean_apply(j, "an apply");
        }
        for store in self.stores() {
            let holds = blobs(&store, &|| self.context()).contains_key(&sha);
            if let Some(u) = self.users_of(&store).first().copied()
                && holds
            {
                self.log.push(format!("gc in {}", self.name(u)));
                self.gc_alone(u);
            }
        }
        let ctx = || self.context();
        let orphan = blobs(self.cache.path(), &ctx)
            .get(&sha)
            .is_some_and(|(_, nlink, _)| *nlink == 1)
            && !self.pins(&self.live()).contains(&sha);
        orphan.then_some(m)
    }

    /// An apply (after an edit), a gc or a prune killed a few milliseconds in.
    fn kill_at_random(&mut self, rng: &mut Rng) {
        let i = rng.pick(&self.live());
        let ms = rng.below(50);
        let (args, what): (&[&str], &str) = match rng.below(5) {
            0 => (&["gc", "--grace", "0"], "gc"),
            1 => (&["cache", "prune", "--grace", "0"], "cache prune"),
            _ => {
                self.edit(i, rng);
                (&["apply", "-q", "--yes"], "apply")
            }
        };
        self.log
            .push(format!("{what} in {} killed after {ms} ms", self.name(i)));
        let mut child = self
            .command(i, args, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let status = child.wait().expect("wait");
        assert!(
            status.success() || status.signal().is_some(),
            "{}: the {what} to be killed failed on its own: {status}",
            self.context()
        );
        if status.success() && what == "apply" {
            self.applied(i);
        } else if what == "apply" {
            self.tainted.insert(self.store_of(i));
        }
        self.check(&format!("after the {what} killed after {ms} ms"));
        if what == "apply" {
            self.clean_apply(i, "the apply after a kill");
        } else {
            self.apply_some(rng, &format!("a killed {what}"));
        }
    }

    /// Two or three of: applies (each after an edit), gcs, a prune, a project's deletion,
    /// started a few milliseconds apart; sometimes one of the applies is killed on the way.
    fn concurrently(&mut self, rng: &mut Rng) {
        let live = self.live();
        let mut candidates = vec![Op::Prune];
        for i in &live {
            candidates.extend([Op::Apply(*i), Op::Gc(*i)]);
            if live.len() >= 2 {
                candidates.push(Op::Delete(*i));
            }
        }
        let mut ops = Vec::new();
        for _ in 0..2 + rng.below(2) {
            if candidates.is_empty() {
                break;
            }
            let op = candidates.remove(rng.below(candidates.len() as u64) as usize);
            // A project being deleted runs nothing, and one deletion is enough.
            if let Op::Delete(d) = op {
                candidates.retain(|c| !matches!(c, Op::Apply(i) | Op::Gc(i) if *i == d));
                candidates.retain(|c| !matches!(c, Op::Delete(_)));
                ops.retain(|o| !matches!(o, Op::Apply(i) | Op::Gc(i) if *i == d));
            }
            ops.push(op);
        }
        let deleted = ops.iter().find_map(|op| match op {
            Op::Delete(d) => Some(*d),
            _ => None,
        });
        let runners: Vec<usize> = live
            .iter()
            .copied()
            .filter(|i| Some(*i) != deleted)
            .collect();
        let prune_from = rng.pick(&runners);
        for op in &ops {
            if let Op::Apply(i) = op {
                self.edit(*i, rng);
            }
        }
        let applies: Vec<usize> = ops
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, Op::Apply(_)))
            .map(|(n, _)| n)
            .collect();
        let killed = (!applies.is_empty() && rng.below(4) == 0).then(|| rng.pick(&applies));
        let kill_after = rng.below(40);
        let described: Vec<String> = ops
            .iter()
            .enumerate()
            .map(|(n, op)| {
                let what = match op {
                    Op::Apply(i) => format!("apply in {}", self.name(*i)),
                    Op::Gc(i) => format!("gc in {}", self.name(*i)),
                    Op::Prune => format!("cache prune from {}", self.name(prune_from)),
                    Op::Delete(i) => format!("deletion of {}", self.name(*i)),
                };
                match killed == Some(n) {
                    true => format!("{what} (killed after {kill_after} ms)"),
                    false => what,
                }
            })
            .collect();
        self.log.push(format!("at once: {}", described.join(", ")));
        // Started a few milliseconds apart, so that each can meet the others at any stage.
        let mut children = Vec::new();
        for op in &ops {
            std::thread::sleep(Duration::from_millis(rng.below(20)));
            let (i, args): (usize, &[&str]) = match op {
                Op::Apply(i) => (*i, &["apply", "-q", "--yes"]),
                Op::Gc(i) => (*i, &["gc", "--grace", "0"]),
                Op::Prune => (prune_from, &["cache", "prune", "--grace", "0"]),
                Op::Delete(i) => {
                    self.delete(*i);
                    children.push(None);
                    continue;
                }
            };
            let child = self
                .command(i, args, &[])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            children.push(Some(child));
        }
        if let Some(n) = killed {
            std::thread::sleep(Duration::from_millis(kill_after));
            if let Some(child) = &mut children[n] {
                let _ = child.kill();
            }
        }
        for (n, (child, what)) in children.into_iter().zip(&described).enumerate() {
            let Some(child) = child else { continue };
            let out = child.wait_with_output().expect("wait");
            let signalled = killed == Some(n) && out.status.signal().is_some();
            assert!(
                out.status.success() || signalled,
                "{}: {what}, run with others, failed:\n{}\n{}",
                self.context(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if let (Op::Apply(i), false) = (ops[n], signalled) {
                self.applied(i);
            }
        }
        let applying: Vec<usize> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Apply(i) => Some(*i),
                _ => None,
            })
            .collect();
        if applying.len() > 1 || killed.is_some() {
            for i in applying {
                self.tainted.insert(self.store_of(i));
            }
        }
        self.check("after the commands run at once");
        // The killed apply is finished first: the others' settling assumes every active model
        // their neighbours declare was applied once.
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_key(|n| killed != Some(*n));
        for n in order {
            let Op::Apply(i) = &ops[n] else { continue };
            // An apply that ran while a neighbour was deleted may have kept what the neighbour
            // declared; a killed one is finished by a clean apply.
            if deleted.is_some() || killed == Some(n) {
                self.clean_apply(*i, "the apply after the commands run at once");
            } else {
                self.check_settled(*i, "an apply run with others");
            }
        }
        if deleted.is_some() && !ops.iter().any(|op| matches!(op, Op::Apply(_))) {
            self.apply_some(rng, "a deletion");
        }
    }

    /// `gc --grace 0` in project `i`, alone: it keeps what a live lock of its store pins, and
    /// removes every other blob no model directory links.
    fn gc_alone(&mut self, i: usize) {
        let store = self.store_of(i);
        let ctx = || format!("{}: gc in {}", self.context(), self.name(i));
        let before = blobs(&store, &ctx);
        let run = self.run(i, &["gc", "--grace", "0"], &[]);
        assert_eq!(
            run.code,
            0,
            "{}: gc failed:\n{}\n{}",
            self.context(),
            run.stdout,
            run.stderr
        );
        let pinned = self.pins(&self.users_of(&store));
        let after = blobs(&store, &ctx);
        for hex in before.keys().filter(|h| pinned.contains(*h)) {
            assert!(
                after.contains_key(hex),
                "{}: gc removed {hex}, which a live project's models.lock pins",
                self.context()
            );
        }
        let linked: HashSet<u64> = files_under(&store.join("models"))
            .iter()
            .filter_map(|p| std::fs::symlink_metadata(p).ok())
            .map(|m| m.ino())
            .collect();
        for (hex, (_, _, ino)) in &after {
            assert!(
                linked.contains(ino) || pinned.contains(hex),
                "{}: gc kept {hex}, which no model directory links and no live lock pins",
                self.context()
            );
        }
    }

    /// `cache prune --grace 0` from project `i`, alone: it keeps what a live project's lock
    /// pins, and removes every other blob no store links.
    fn prune_alone(&mut self, i: usize) {
        let ctx = || format!("{}: cache prune", self.context());
        let before = blobs(self.cache.path(), &ctx);
        let run = self.run(i, &["cache", "prune", "--grace", "0"], &[]);
        assert_eq!(
            run.code,
            0,
            "{}: cache prune failed:\n{}\n{}",
            self.context(),
            run.stdout,
            run.stderr
        );
        let pinned = self.pins(&self.live());
        let after = blobs(self.cache.path(), &ctx);
        for hex in before.keys().filter(|h| pinned.contains(*h)) {
            assert!(
                after.contains_key(hex),
                "{}: cache prune removed {hex}, which a live project's models.lock pins",
                self.context()
            );
        }
        for (hex, (_, nlink, _)) in &after {
            assert!(
                *nlink > 1 || pinned.contains(hex),
                "{}: cache prune kept {hex}, which no store links and no live lock pins",
                self.context()
            );
        }
    }

    /// The sha256s the models.lock of each of `slots` pins.
    fn pins(&self, slots: &[usize]) -> HashSet<String> {
        slots
            .iter()
            .flat_map(|i| {
                let lock = self.lock(*i);
                lock.models
                    .values()
                    .flat_map(|m| m.files.iter().filter_map(|f| f.sha256))
                    .map(|s| s.hex())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn lock(&self, i: usize) -> modelctl::lock::Lockfile {
        modelctl::lock::load(&self.project(i).path("models.lock")).unwrap_or_else(|e| {
            panic!(
                "{}: models.lock of {} unreadable: {e:?}",
                self.context(),
                self.name(i)
            )
        })
    }

    /// The promises that hold after anything, even a kill.
    fn check(&self, when: &str) {
        let ctx = || format!("{}: {when}", self.context());
        for store in self.stores() {
            self.check_store(&store, &ctx);
        }
        for (path, _, _) in blobs(self.cache.path(), &ctx).values() {
            let meta = std::fs::symlink_metadata(path).expect("stat");
            assert!(
                meta.permissions().mode() & 0o222 == 0,
                "{}: the cache blob `{}` is writable",
                ctx(),
                path.display()
            );
        }
        for i in self.live() {
            let store = self.store_of(i);
            for (id, locked) in &self.lock(i).models {
                let m = self
                    .pool
                    .iter()
                    .find(|m| m.id == id.as_str())
                    .unwrap_or_else(|| panic!("{}: {} locks unknown `{id}`", ctx(), self.name(i)));
                let files: Vec<(&str, u64, Option<String>)> = locked
                    .files
                    .iter()
                    .map(|f| (f.path.as_str(), f.size, f.sha256.map(|s| s.hex())))
                    .collect();
                assert_eq!(
                    files,
                    vec![(m.file, m.bytes.len() as u64, Some(m.sha.clone()))],
                    "{}: models.lock of {} for `{id}`",
                    ctx(),
                    self.name(i)
                );
            }
            // What it declares and had installed is still there, whoever did what since.
            let slot = &self.slots[i];
            let Some(installed) = &slot.installed else {
                continue;
            };
            for m in installed.declared.intersection(&slot.declared) {
                let m = &self.pool[*m];
                let file = store.join(format!("models/{}/{}/{}", m.kind, m.id, m.file));
                assert!(
                    file.is_file(),
                    "{}: `{}`, which {} declares and had installed, is gone",
                    ctx(),
                    file.display(),
                    self.name(i)
                );
            }
            for (kind, m) in &installed.active {
                if slot.active.get(kind) != Some(m) {
                    continue;
                }
                let link = store.join(format!("active/{kind}"));
                let want = PathBuf::from(format!("../models/{kind}/{}", self.pool[*m].id));
                assert_eq!(
                    std::fs::read_link(&link).ok(),
                    Some(want),
                    "{}: `{}`, which {} declares and had activated",
                    ctx(),
                    link.display(),
                    self.name(i)
                );
            }
        }
    }

    /// One store: complete model directories of pool models, blobs named by their hash,
    /// active pointers to complete model directories of their type.
    fn check_store(&self, root: &Path, ctx: &dyn Fn() -> String) {
        let models = root.join("models");
        for kind_dir in entries(&models) {
            let kind = file_name(&kind_dir);
            assert!(
                KINDS.contains(&kind.as_str()) && is_real_dir(&kind_dir),
                "{}: unexpected `{}`",
                ctx(),
                kind_dir.display()
            );
            for dir in entries(&kind_dir) {
                let id = file_name(&dir);
                let m = self
                    .pool
                    .iter()
                    .find(|m| m.id == id && m.kind == kind)
                    .unwrap_or_else(|| panic!("{}: unexpected `{}`", ctx(), dir.display()));
                assert!(
                    is_real_dir(&dir),
                    "{}: `{}` is not a directory",
                    ctx(),
                    dir.display()
                );
                let file = dir.join(m.file);
                assert_eq!(
                    files_under(&dir),
                    vec![file.clone()],
                    "{}: `{}` does not hold exactly its model's file",
                    ctx(),
                    dir.display()
                );
                let meta = std::fs::symlink_metadata(&file).expect("stat");
                assert!(
                    meta.is_file() && meta.permissions().mode() & 0o222 == 0,
                    "{}: `{}` is not a read-only regular file",
                    ctx(),
                    file.display()
                );
                let bytes = std::fs::read(&file).expect("read");
                assert!(
                    Sha256::of(&bytes).hex() == m.sha,
                    "{}: `{}` does not hash to its pinned sha256",
                    ctx(),
                    file.display()
                );
            }
        }
        blobs(root, ctx);
        for kind in KINDS {
            let link = root.join("active").join(kind);
            let Ok(meta) = std::fs::symlink_metadata(&link) else {
                continue;
            };
            assert!(
                meta.file_type().is_symlink(),
                "{}: `{}` is not a symlink",
                ctx(),
                link.display()
            );
            let target = std::fs::read_link(&link).expect("readlink");
            let id = target
                .strip_prefix(format!("../models/{kind}"))
                .ok()
                .and_then(|t| t.to_str())
                .unwrap_or_default()
                .to_owned();
            assert!(
                self.pool.iter().any(|m| m.id == id && m.kind == kind),
                "{}: `{}` points at `{}`",
                ctx(),
                link.display(),
                target.display()
            );
            assert!(
                root.join(format!("models/{kind}/{id}")).is_dir(),
                "{}: `{}` leads to a missing model directory",
                ctx(),
                link.display()
            );
        }
    }

    /// Bytes once per machine: every blob of the store is the machine cache's (the same
    /// inode). Not checked in a store where an apply was killed or ran beside another
    /// store's apply, two known gaps in "every blob a store publishes goes into the cache"
    /// (docs/store.md). A kill between a blob's rename into the store and its adoption by
    /// the cache (failpoint `download.before-dir-fsync`) leaves a blob the cache never gets:
    /// the next apply finds it already in the store and publishes nothing, so another project
    /// downloads the file again and the bytes are on disk twice. Two stores downloading one
    /// file at once each keep their own copy (the second adoption finds the cache holding
    /// it). Neither loses anything a project needs (src/store/machine_cache.rs: nothing there
    /// is needed for correctness); each costs a download and the space of a copy.
    fn check_shared_bytes(&self, store: &Path, ctx: &dyn Fn() -> String) {
        if self.tainted.contains(store) {
            return;
        }
        let cache = blobs(self.cache.path(), ctx);
        for (hex, (path, _, ino)) in blobs(store, ctx) {
            assert!(
                cache.get(&hex).is_some_and(|(_, _, c)| *c == ino),
                "{}: `{}` is not the machine cache's blob (bytes twice on the machine)",
                ctx(),
                path.display()
            );
        }
    }

    /// After a clean apply of project `i`: installed and active as it declares, nothing left
    /// that no live project of its store declares, and plan and verify agree.
    fn check_settled(&self, i: usize, what: &str) {
        let ctx = || format!("{}: after {what} of {}", self.context(), self.name(i));
        let plan = self.run(i, &["plan", "--detailed-exitcode"], &[]);
        assert_eq!(
            plan.code,
            0,
            "{}: plan says something is left:\n{}\n{}",
            ctx(),
            plan.stdout,
            plan.stderr
        );
        let verify = self.run(i, &["verify"], &[]);
        assert_eq!(
            verify.code,
            0,
            "{}: verify disagrees:\n{}\n{}",
            ctx(),
            verify.stdout,
            verify.stderr
        );
        let store = self.store_of(i);
        self.check_shared_bytes(&store, &ctx);
        let users = self.users_of(&store);
        let slot = &self.slots[i];
        for m in &slot.declared {
            let m = &self.pool[*m];
            assert!(
                store
                    .join(format!("models/{}/{}/{}", m.kind, m.id, m.file))
                    .is_file(),
                "{}: `{}` is not installed",
                ctx(),
                m.id
            );
        }
        let left = self.pool.iter().enumerate().find(|(n, m)| {
            store.join(format!("models/{}/{}", m.kind, m.id)).exists()
                && !users.iter().any(|u| self.slots[*u].declared.contains(n))
        });
        assert!(
            left.is_none(),
            "{}: `{}` is left, though no live project of the store declares it",
            ctx(),
            left.map_or("", |(_, m)| m.id)
        );
        for kind in KINDS {
            let link = std::fs::read_link(store.join(format!("active/{kind}"))).ok();
            let mine = slot.active.get(kind);
            let declared = users
                .iter()
                .any(|u| self.slots[*u].active.contains_key(kind));
            match mine {
                Some(m) => assert_eq!(
                    link,
                    Some(PathBuf::from(format!(
                        "../models/{kind}/{}",
                        self.pool[*m].id
                    ))),
                    "{}: active/{kind}",
                    ctx()
                ),
                // Kept as it was while another project declares the type active (which
                // model is that project's own apply to say), else gone.
                None => assert_eq!(
                    link.is_some(),
                    declared,
                    "{}: active/{kind} is {link:?}, which {} does not declare",
                    ctx(),
                    self.name(i)
                ),
            }
        }
    }
}

/// The entries of `dir` (none when it is missing), sorted.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Everything under `dir` that is not a directory, recursively (symlinks not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in entries(&d) {
            if is_real_dir(&p) {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The blobs of a store or of the machine cache, each checked to hash to its name.
fn blobs(root: &Path, ctx: &dyn Fn() -> String) -> Blobs {
    let mut found = Blobs::new();
    for shard in entries(&root.join("blobs/sha256")) {
        for path in entries(&shard) {
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            let name = file_name(&path);
            assert!(
                meta.is_file() && name.len() == 64 && name.starts_with(&file_name(&shard)),
                "{}: `{}` is not a blob",
                ctx(),
                path.display()
            );
            let bytes = std::fs::read(&path).expect("read blob");
            assert_eq!(
                Sha256::of(&bytes).hex(),
                name,
                "{}: `{}` does not hash to its name",
                ctx(),
                path.display()
            );
            found.insert(name, (path, meta.nlink(), meta.ino()));
        }
    }
    found
}

fn run_sequence(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut world = World::new(seed, &mut rng);
    for _ in 0..STEPS {
        world.step(&mut rng);
    }
}

fn run_block(block: u64) {
    if let Ok(seed) = std::env::var("MODELCTL_PROJECTS_SEED") {
        if block == 0 {
            run_sequence(seed.parse().expect("a number"));
        }
        return;
    }
    let base: u64 = std::env::var("MODELCTL_PROJECTS_BASE")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    for i in 0..SEQUENCES {
        run_sequence(base + block * SEQUENCES + i);
    }
}

#[test]
fn projects_sharing_a_machine_cache_keep_their_promises_block_0() {
    run_block(0);
}

#[test]
fn projects_sharing_a_machine_cache_keep_their_promises_block_1() {
    run_block(1);
}

#[test]
fn projects_sharing_a_machine_cache_keep_their_promises_block_2() {
    run_block(2);
}

#[test]
fn projects_sharing_a_machine_cache_keep_their_promises_block_3() {
    run_block(3);
}
