//! `modelctl watch`: a running loop that applies saves of models.yaml, keeps the last good
//! state through an invalid save, holds deletions back without `--prune`, repairs drift, and
//! stops cleanly on Ctrl-C. Then event storms (docs/reliability.md K5): each editor's way of
//! saving, 50 saves in a second, a missing or empty file under `--prune`, and the loop's own
//! reads of models.yaml, which must not wake it.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Project, file_url};

/// Waits up to 30 s for `check`; the machine may be busy.
fn eventually(what: &str, child: &mut Child, log: &Path, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "watch exited ({status}) while waiting for {what}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!(
        "timed out waiting for {what}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn manifest(project: &Project, models: &[&str], active: &str) -> String {
    let mut text = "version: 1\nmodels:\n".to_owned();
    for id in models {
        let url = file_url(&project.path(&format!("src/{id}.bin")));
        text.push_str(&format!(
            "  {id}:\n    type: tts\n    source: {{ url: \"{url}\" }}\n"
        ));
    }
    text.push_str(&format!("active:\n  tts: {active}\n"));
    text
}

#[test]
fn watch_applies_saves_survives_a_bad_one_holds_deletions_and_repairs_drift() {
    let project = Project::new();
    project.write("src/a.bin", "model a\n");
    project.write("src/b.bin", "model b\n");
    project.write("models.yaml", &manifest(&project, &["a"], "a"));
    let log = project.path("watch.log");
    let mut child = project
        .command(&["watch", "--interval", "1"], &[])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn watch");
    let a = project.path("models/models/tts/a/a.bin");
    let b = project.path("models/models/tts/b/b.bin");
    eventually("the first round", &mut child, &log, || a.is_file());

    // A save adds a model and swaps the active one.
    project.write("models.yaml", &manifest(&project, &["a", "b"], "b"));
    eventually("b and the swap", &mut child, &log, || {
        b.is_file()
            && std::fs::read_link(project.path("models/active/tts")).is_ok_and(|t| t.ends_with("b"))
    });

    // An invalid save changes nothing and the loop carries on.
    project.write("models.yaml", "version: 1\nmodels: [not, a, map\n");
    eventually("the bad save reported", &mut child, &log, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("keeping the store as it was"))
    });
    assert!(a.is_file() && b.is_file(), "nothing was deleted");

    // Dropping `a` without --prune keeps it.
    project.write("models.yaml", &manifest(&project, &["b"], "b"));
    eventually("the held deletion", &mut child, &log, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("held back"))
    });
    assert!(a.is_file(), "no deletion without --prune");

    // Drift: a deleted file comes back at the next check.
    std::fs::remove_file(&b).expect("remove");
    eventually("the repair", &mut child, &log, || b.is_file());

    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "watch did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    assert!(
        std::fs::read_to_string(&log)
            .expect("log")
            .contains("watch stopped")
    );
}

// K5: event storms. Each test runs its own `modelctl watch` and reads its log.

/// A running `modelctl watch` (drift checks off, in effect), killed if a test fails.
struct Watching {
    child: Child,
    log: PathBuf,
}

impl Watching {
    fn start(project: &Project, args: &[&str]) -> Self {
        let log = project.path("watch.log");
        let mut all = vec!["watch", "--interval", "600"];
        all.extend_from_slice(args);
        let child = project
            .command(&all, &[])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn watch");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn eventually(&mut self, what: &str, check: impl Fn() -> bool) {
        eventually(what, &mut self.child, &self.log, check);
    }

    /// Waits until the log says `text` at least `times` times.
    fn logged(&mut self, text: &str, times: usize) {
        let log = self.log.clone();
        self.eventually(&format!("{times}× {text:?} in the log"), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.matches(text).count() >= times)
        });
    }

    /// Ctrl-C, then waits for the loop to end; returns the whole log.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "watch did not stop on Ctrl-C");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.log()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project with sources for models `a` to `e`, its models.yaml declaring `models`.
fn project_with(models: &[&str], active: &str) -> Project {
    let project = Project::new();
    for id in ["a", "b", "c", "d", "e"] {
        project.write(&format!("src/{id}.bin"), &format!("model {id}\n"));
    }
    project.write("models.yaml", &manifest(&project, models, active));
    project
}

fn stored(project: &Project, id: &str) -> PathBuf {
    project.path(&format!("models/models/tts/{id}/{id}.bin"))
}

/// Whether `id` is in the store and is the active tts model.
fn applied(project: &Project, id: &str) -> bool {
    std::fs::read_to_string(stored(project, id)).is_ok_and(|t| t == format!("model {id}\n"))
        && std::fs::read_link(project.path("models/active/tts"))
            .is_ok_and(|t| t.ends_with(format!("tts/{id}")))
}

/// VS Code, JetBrains, `sed -i`: a temporary file renamed over models.yaml.
fn save_by_rename(project: &Project, text: &str) {
    let tmp = project.path(".models.yaml.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, project.path("models.yaml")).expect("rename");
}

/// nano, `>` redirection: truncate models.yaml, then write it in place (two writes, so the
/// file is empty, then half-written, for a moment).
fn save_in_place(project: &Project, text: &str) {
    use std::io::Write;
    let mut file = std::fs::File::create(project.path("models.yaml")).expect("truncate");
    file.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(20));
    let (head, tail) = text.split_at(text.len() / 2);
    file.write_all(head.as_bytes()).expect("write");
    file.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(20));
    file.write_all(tail.as_bytes()).expect("write");
}

/// vim's `backupcopy=no`: models.yaml becomes `models.yaml~`, a new file is written, the
/// backup is deleted. models.yaml is missing for a moment and comes back as a new inode.
fn save_like_vim(project: &Project, text: &str) {
    let backup = project.path("models.yaml~");
    std::fs::rename(project.path("models.yaml"), &backup).expect("backup");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(project.path("models.yaml"), text).expect("write");
    std::fs::remove_file(&backup).expect("remove backup");
}

/// Three saves in one editor's style, each adding a model and activating it: each converges.
fn converges_after_saves(save: fn(&Project, &str)) {
    let project = project_with(&["a"], "a");
    let mut watch = Watching::start(&project, &[]);
    watch.eventually("the first round", || applied(&project, "a"));
    for (models, active) in [
        (&["a", "b"][..], "b"),
        (&["a", "b", "c"], "c"),
        (&["a", "c"], "a"),
    ] {
        save(&project, &manifest(&project, models, active));
        watch.eventually(&format!("{active} applied"), || applied(&project, active));
    }
    assert!(
        stored(&project, "b").is_file(),
        "no deletion without --prune"
    );
    let log = watch.stop();
    assert!(!log.contains("error"), "{log}");
}

#[test]
fn watch_converges_after_saves_by_temp_file_and_rename() {
    converges_after_saves(save_by_rename);
}

#[test]
fn watch_converges_after_saves_by_truncate_then_write() {
    converges_after_saves(save_in_place);
}

#[test]
fn watch_converges_after_saves_in_vims_backup_dance() {
    converges_after_saves(save_like_vim);
}

/// The rounds a log shows that a change of models.yaml or models.lock started (the rounds'
/// own write of models.lock makes one more, which finds nothing to do).
fn rounds_for_saves(log: &str) -> usize {
    log.lines()
        .filter(|l| l.starts_with('`') && l.contains("` changed: "))
        .count()
}

#[test]
fn fifty_saves_in_a_second_converge_to_the_last_in_few_rounds() {
    let project = project_with(&["a", "b"], "a");
    let mut watch = Watching::start(&project, &[]);
    watch.eventually("the first round", || applied(&project, "a"));
    let before = rounds_for_saves(&watch.log());
    let one = manifest(&project, &["a", "b"], "b");
    let other = manifest(&project, &["a", "b"], "a");
    let last = manifest(&project, &["a", "b", "c"], "c");
    for i in 0..50 {
        let text = match i {
            49 => &last,
            i if i % 2 == 0 => &one,
            _ => &other,
        };
        save_by_rename(&project, text);
        std::thread::sleep(Duration::from_millis(20));
    }
    watch.eventually("the last save applied", || applied(&project, "c"));
    let log = watch.stop();
    let rounds = rounds_for_saves(&log) - before;
    assert!(
        (1..=5).contains(&rounds),
        "50 saves made {rounds} rounds:\n{log}"
    );
    let lock = modelctl::lock::parse_str(&project.read("models.lock"), Path::new("models.lock"))
        .expect("a valid lock");
    let pinned: Vec<&str> = lock.models.keys().map(|id| id.as_str()).collect();
    assert_eq!(
        pinned,
        ["a", "b", "c"],
        "the lock pins the last save's models"
    );
}

#[test]
fn a_missing_or_empty_manifest_never_deletes_even_with_prune() {
    let project = project_with(&["a", "b"], "a");
    let mut watch = Watching::start(&project, &["--prune"]);
    watch.eventually("the first round", || {
        applied(&project, "a") && stored(&project, "b").is_file()
    });
    let kept = "keeping the store as it was";

    std::fs::remove_file(project.path("models.yaml")).expect("remove");
    watch.logged(kept, 1);
    assert!(
        watch.log().contains("models.yaml"),
        "the log names the file"
    );
    assert!(applied(&project, "a") && stored(&project, "b").is_file());

    project.write("models.yaml", "");
    watch.logged("the manifest is empty", 1);
    watch.logged(kept, 2);
    assert!(applied(&project, "a") && stored(&project, "b").is_file());

    // Valid but declaring nothing (a half-written save can look like this): still no deletion.
    project.write("models.yaml", "version: 1\n");
    watch.logged("declares no models", 1);
    watch.logged(kept, 3);
    assert!(applied(&project, "a") && stored(&project, "b").is_file());

    // A good file again: the loop carries on, and --prune does prune what is dropped.
    save_by_rename(&project, &manifest(&project, &["b", "c"], "c"));
    watch.eventually("c applied and a pruned", || {
        applied(&project, "c") && !stored(&project, "a").exists()
    });
    assert!(stored(&project, "b").is_file());
    let log = watch.stop();
    assert_eq!(
        log.matches(kept).count(),
        3,
        "each bad state is reported once:\n{log}"
    );
}

#[test]
fn reading_the_manifest_does_not_wake_the_loop() {
    let project = project_with(&["a"], "a");
    let mut watch = Watching::start(&project, &[]);
    watch.eventually("the first round", || applied(&project, "a"));
    // Each round opens models.yaml; inotify reports opens. Were that a change, rounds would
    // follow each other forever. (A wait that only a busier machine could shorten.)
    std::thread::sleep(Duration::from_secs(3));
    let _ = std::fs::read_to_string(project.path("models.yaml")).expect("read");
    std::thread::sleep(Duration::from_secs(2));
    let log = watch.stop();
    assert!(
        rounds_for_saves(&log) <= 1,
        "only the first round's own write of models.lock may wake the loop:\n{log}"
    );
}

#[test]
fn an_invalid_save_keeps_the_last_good_state_and_names_the_line() {
    let project = project_with(&["a", "b"], "a");
    let mut watch = Watching::start(&project, &["--prune"]);
    watch.eventually("the first round", || applied(&project, "a"));

    let good = manifest(&project, &["a", "b"], "b");
    let bad = good.replacen("    type: tts\n", "    type: tts\n   source: [\n", 1);
    save_by_rename(&project, &bad);
    watch.logged("keeping the store as it was", 1);
    let log = watch.log();
    assert!(
        log.contains("models.yaml:5:"),
        "the log names line 5:\n{log}"
    );
    assert!(applied(&project, "a") && stored(&project, "b").is_file());

    save_by_rename(&project, &good);
    watch.eventually("the fixed save applied", || applied(&project, "b"));
    assert!(stored(&project, "a").is_file());
    watch.stop();
}

#[test]
fn watch_keeps_working_when_its_log_pipe_is_closed() {
    let project = project_with(&["a"], "a");
    let mut child = project
        .command(&["watch", "--interval", "60"], &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn watch");
    // Nobody reads the log: every line it writes now meets a closed pipe.
    drop(child.stderr.take());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !applied(&project, "a") {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "watch died writing to a closed pipe"
        );
        assert!(std::time::Instant::now() < deadline, "never applied");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().expect("wait").is_none(), "watch died");
    let _ = child.kill();
    let _ = child.wait();
}
