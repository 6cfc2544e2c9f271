//! How much a download asks the server for when things go wrong: a server that ignores
//! `Range`, an apply killed on a slow link, killed with a file complete in staging or just
//! published, and a download that fails while other chunks are in flight. Each test counts
//! the requests and body bytes the fake servers sent, against the bytes that were needed.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::apply::{
    BIG, FAST, assert_installed, blobs, files_under, manifest, spawn, url_model, wait_for,
};
use crate::crash::run_until_abort;
use crate::fake_blob::BlobFaults;
use crate::fake_hub::{FakeHub, Lfs, RepoKind};
use crate::faults::{CHUNK, Fault, FaultServer, pseudo_random};
use crate::support::{Project, sha256_hex};

/// A per-connection cap (bytes per second) that keeps chunks in flight for seconds.
const SLOW: u64 = 1 << 20;

/// A project with model `m` (llm, active) at `/big.bin` on `server`, locked while the server
/// behaves; models.yaml gives the sha256 when `pinned`.
fn locked(server: &FaultServer, bytes: &[u8], pinned: bool) -> Project {
    let sum = sha256_hex(bytes);
    let project = Project::with_manifest(&manifest(
        &[url_model(
            "m",
            "llm",
            &server.url("/big.bin"),
            pinned.then_some(sum.as_str()),
        )],
        &[("llm", "m")],
    ));
    let run = project.run_env(&["lock"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    project
}

/// What the resume state in staging records: complete chunks, and bytes written at the start
/// of unfinished ones.
#[derive(Debug, Default)]
struct Recorded {
    done: Vec<u64>,
    progress: BTreeMap<u64, u64>,
}

impl Recorded {
    fn read(project: &Project) -> Self {
        let state = files_under(&project.path("store/.modelctl/tmp"))
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with(".part.json"))
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let Some(state) = state else {
            return Self::default();
        };
        let done = state["done"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i.as_u64()).collect())
            .unwrap_or_default();
        let progress = state["progress"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Self { done, progress }
    }

    /// Bytes of a file of `size` the state says are written.
    fn bytes(&self, size: u64) -> u64 {
        let done: u64 = self
            .done
            .iter()
            .map(|i| ((i + 1) * CHUNK).min(size) - i * CHUNK)
            .sum();
        done + self.progress.values().sum::<u64>()
    }
}

/// The `GET`s of `/big.bin` from the `from`-th on (apply's plan also sends a `HEAD`).
fn gets_since(server: &FaultServer, from: usize) -> Vec<crate::faults::Request> {
    server.gets("/big.bin").split_off(from)
}

/// Body bytes the server sent for the `GET`s of `/big.bin` from the `from`-th on.
fn sent_since(server: &FaultServer, from: usize) -> u64 {
    gets_since(server, from).iter().map(|r| r.body_bytes).sum()
}

/// How many `GET`s of `/big.bin` the server has received.
fn gets(server: &FaultServer) -> usize {
    server.gets("/big.bin").len()
}

#[test]
fn a_server_that_ignores_range_is_asked_once_per_file() {
    // Defect 9 of issue 11: a mirror answering 200 to every ranged request was asked once per
    // connection (17 times for one file) before modelctl fell back to one stream.
    let hub = FakeHub::start();
    let weights = pseudo_random(BIG, 90);
    hub.repo(RepoKind::Model, "org/big").commit(&[
        ("config.json", b"{\"layers\": 2}\n", Lfs::No),
        ("model.safetensors", &weights, Lfs::Yes),
    ]);
    let project = Project::with_manifest(
        "version: 1\nmodels:\n  big:\n    type: llm\n    source: { hf: org/big }\n",
    );
    let endpoint = hub.url();
    let env = [FAST, &[("HF_ENDPOINT", endpoint.as_str())]].concat();
    let lock = project.run_env(&["lock"], &env);
    assert_eq!(lock.code, 0, "{}", lock.stderr);
    hub.ignore_range("model.safetensors");
    hub.ignore_range("config.json");
    hub.clear_requests();
    let before = hub.cdn_bytes_sent();

    let run = project.run_env(&["apply", "--yes"], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let cdn: Vec<_> = hub
        .cdn_requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(cdn.len(), 1, "one request for the large file: {cdn:#?}");
    assert!(cdn[0].header("range").is_some(), "it asked for a range");
    assert_eq!(hub.cdn_bytes_sent() - before, BIG as u64, "the file, once");
    let resolves = hub
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path().contains("/resolve/"))
        .count();
    assert_eq!(resolves, 2, "one request per file at the hub");
    assert!(
        std::fs::read(project.path("models/models/llm/big/model.safetensors")).expect("read")
            == weights
    );
}

#[test]
fn a_resumed_download_from_a_server_that_now_ignores_range_restarts_in_one_stream() {
    let server = FaultServer::start();
    let bytes = pseudo_random(BIG, 91);
    server.serve("/big.bin", bytes.clone());
    let project = locked(&server, &bytes, true);
    run_until_abort(&project, "download.after-first-chunk");
    let recorded = Recorded::read(&project);
    assert!(!recorded.done.is_empty(), "a chunk is done: {recorded:?}");
    let first = gets(&server);

    server.set_fault("/big.bin", Fault::IgnoreRange);
    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Appending the whole body to the chunks kept, or writing it at the resumed offset,
    // would not hash right.
    assert_installed(&project, "llm", "m", "big.bin", &bytes);
    // A request of the killed run that was cut mid-flight can be logged after `first` was
    // counted; it sent no body. The rerun's own requests are those that did.
    let rerun: Vec<_> = gets_since(&server, first)
        .into_iter()
        .filter(|r| r.body_bytes > 0)
        .collect();
    assert_eq!(rerun.len(), 1, "one request, the first answer: {rerun:#?}");
    let (start, _) = rerun[0].range_bounds().expect("a resume asks for a range");
    // Chunks finish in any order: the resume asks for the first one not done (where its
    // recorded progress ends), and the server's whole body replaces everything.
    let first_open = (0..)
        .find(|i| !recorded.done.contains(i))
        .expect("a chunk is open");
    let written = recorded.progress.get(&first_open).copied().unwrap_or(0);
    assert!(
        start >= first_open * CHUNK && start <= first_open * CHUNK + written,
        "it resumed where the recorded state ends ({recorded:?}): {:?}",
        rerun[0]
    );
    assert_eq!(rerun[0].body_bytes, BIG as u64, "the whole file, once");
}

#[test]
fn a_file_complete_in_staging_when_killed_is_published_without_a_request() {
    // Killed between verifying a file and renaming it into `blobs/` (its data file already
    // read-only), with and without a sha256 in the lock (the partial is then keyed by URL).
    for pinned in [true, false] {
        let server = FaultServer::start();
        let bytes = pseudo_random(BIG, 92);
        server.serve("/big.bin", bytes.clone());
        let project = locked(&server, &bytes, pinned);
        run_until_abort(&project, "download.before-rename");
        assert!(blobs(&project).is_empty(), "nothing published yet");
        let (requests, sent) = (gets(&server), server.body_bytes());

        let run = project.run_env(&["apply"], FAST);
        assert_eq!(run.code, 0, "pinned {pinned}: {}", run.stderr);
        assert_installed(&project, "llm", "m", "big.bin", &bytes);
        assert_eq!(
            gets(&server),
            requests,
            "pinned {pinned}: no request for a file complete in staging"
        );
        assert_eq!(server.body_bytes(), sent);
        if !pinned {
            assert!(project.read("models.lock").contains(&sha256_hex(&bytes)));
        }
    }
}

#[test]
fn a_file_published_before_the_lock_learned_its_sha256_is_not_fetched_again() {
    // Without a sha256 in the lock the plan cannot know the blob a killed apply published:
    // the resume state remembers the digest it verified until the file is linked.
    let server = FaultServer::start();
    let bytes = pseudo_random(BIG, 93);
    server.serve("/big.bin", bytes.clone());
    let project = locked(&server, &bytes, false);
    run_until_abort(&project, "download.after-publish");
    assert_eq!(blobs(&project).len(), 1, "published");
    assert!(!project.read("models.lock").contains(&sha256_hex(&bytes)));
    let requests = gets(&server);

    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "llm", "m", "big.bin", &bytes);
    assert_eq!(gets(&server), requests, "no request: {}", run.stderr);
    assert!(project.read("models.lock").contains(&sha256_hex(&bytes)));
    let staged = files_under(&project.path("store/.modelctl/tmp"));
    assert!(
        staged
            .iter()
            .all(|p| !p.to_string_lossy().contains(".part")),
        "{staged:?}"
    );
}

#[test]
fn progress_inside_chunks_survives_a_kill_on_a_slow_link() {
    // Defect 11 of issue 11: with every connection capped, no chunk completes for seconds, and
    // a kill then left no resume state at all: the rerun fetched the whole file again.
    let server = FaultServer::start();
    let bytes = pseudo_random(BIG, 94);
    server.serve("/big.bin", bytes.clone());
    let project = locked(&server, &bytes, true);
    server.set_fault("/big.bin", Fault::Throttle(SLOW));
    let connections = (BIG as u64).div_ceil(CHUNK);
    let mut child = spawn(&project, &["apply"], FAST, "killed");
    // A third of a second per connection recorded, well before any 4 MiB chunk can finish.
    wait_for(
        "in-chunk progress in the resume state",
        Duration::from_secs(60),
        || Recorded::read(&project).bytes(BIG as u64) >= connections * SLOW / 3,
        || {
            format!(
                "{:?}, {} bytes sent",
                Recorded::read(&project),
                server.body_bytes()
            )
        },
    );
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let recorded = Recorded::read(&project);
    assert!(
        recorded.done.iter().all(|i| (i + 1) * CHUNK > BIG as u64),
        "no full chunk finished (the 4321-byte last one may have): {recorded:?}"
    );
    let killed = sent_since(&server, 0);
    let kept = recorded.bytes(BIG as u64);
    assert!(
        killed - kept <= connections * SLOW,
        "the kill lost {} bytes of {killed} sent: more than a second per connection",
        killed - kept
    );

    server.set_fault("/big.bin", Fault::Ok);
    let second = gets(&server);
    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "llm", "m", "big.bin", &bytes);
    let rerun = gets_since(&server, second);
    for get in &rerun {
        let (start, _) = get.range_bounds().expect("ranged");
        let index = start / CHUNK;
        let have = recorded.progress.get(&index).copied().unwrap_or(0);
        assert_eq!(
            start,
            index * CHUNK + have,
            "resumed where it stopped: {get:?}"
        );
    }
    let again: u64 = rerun.iter().map(|r| r.body_bytes).sum();
    assert_eq!(again, BIG as u64 - kept, "only the bytes not recorded");
}

#[test]
fn a_failed_download_records_only_the_chunks_it_completed() {
    // A fatal answer to one chunk stops the others mid-body; they used to be recorded as
    // done, so the next apply kept their holes and failed the checksum.
    let server = FaultServer::start();
    let bytes = pseudo_random(BIG, 95);
    server.serve("/big.bin", bytes.clone());
    let project = locked(&server, &bytes, true);
    server.script(
        "/big.bin",
        // The refusal comes late enough for the throttled chunks to have written (and
        // saved) bytes, whatever the machine's load: the test is about what gets recorded.
        vec![Fault::Throttle(4 * SLOW), Fault::LateStatus(404, 600)],
        Fault::Throttle(4 * SLOW),
    );
    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(blobs(&project).is_empty());
    let recorded = Recorded::read(&project);
    assert!(
        recorded.done.iter().all(|i| (i + 1) * CHUNK > BIG as u64),
        "no full chunk had finished (the 4321-byte last one may have): {recorded:?}"
    );
    assert!(!recorded.progress.is_empty(), "{recorded:?}");

    server.set_fault("/big.bin", Fault::Ok);
    let second = gets(&server);
    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_installed(&project, "llm", "m", "big.bin", &bytes);
    assert_eq!(
        sent_since(&server, second),
        BIG as u64 - recorded.bytes(BIG as u64)
    );
}
