//! `modelctl watch`: a running loop that applies saves of models.yaml, keeps the last good
//! state through an invalid save, holds deletions back without `--prune`, repairs drift, and
//! stops cleanly on Ctrl-C.

use std::path::Path;
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
