//! `modelctl gc`: what is collected, what is always kept, dry runs, the grace period, the
//! store lock and the refusal to work through a symlinked store root.

use std::fs;
use std::time::Duration;

use crate::support::{Project, sha256_hex};
use crate::verify::{age, installed, put_blob};

const TWO_HOURS: Duration = Duration::from_secs(7200);

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).expect("valid JSON")
}

/// `voice` installed (its blob linked), `spare` locked but not installed (its blob present,
/// linked by nothing), an undeclared model holding a copy of one blob, an old orphan blob and
/// a young one.
fn cluttered() -> Project {
    let project = installed(&[
        ("voice", "voice.pth", b"voice weights\n"),
        ("spare", "spare.bin", b"spare weights\n"),
    ]);
    fs::remove_file(project.path("models/models/tts/spare/spare.bin")).expect("unlink");
    fs::remove_dir(project.path("models/models/tts/spare")).expect("rmdir");
    let copied = put_blob(&project, b"copied weights\n");
    project.write("models/models/tts/old/copy.bin", "copied weights\n");
    age(&copied, TWO_HOURS);
    age(&put_blob(&project, b"orphan weights\n"), TWO_HOURS);
    put_blob(&project, b"young orphan\n");
    age(&project.path(&blob_rel(b"young orphan\n")), Duration::ZERO);
    age(&project.path(&blob_rel(b"voice weights\n")), TWO_HOURS);
    age(&project.path(&blob_rel(b"spare weights\n")), TWO_HOURS);
    project
}

fn blob_rel(bytes: &[u8]) -> String {
    let hex = sha256_hex(bytes);
    format!("models/blobs/sha256/{}/{hex}", &hex[..2])
}

#[test]
fn gc_removes_an_old_unreferenced_blob_and_keeps_referenced_locked_and_young_ones() {
    let project = cluttered();
    let run = project.run(&["gc"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let orphan = blob_rel(b"orphan weights\n");
    assert!(
        run.stdout.contains(&format!(
            "removed blob `{}`  15 B",
            orphan.trim_start_matches("models/")
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("removed 1 blob (15 B) and 0 partial downloads (0 B)\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "kept 1 blob linked from `models/`, 1 blob copied in `models/`, 1 blob listed in models.lock, 1 blob younger than 1h"
        ),
        "{}",
        run.stdout
    );
    assert!(!project.path(&orphan).exists(), "the orphan is gone");
    for kept in [
        b"voice weights\n".as_slice(),
        b"spare weights\n",
        b"copied weights\n",
        b"young orphan\n",
    ] {
        assert!(
            project.path(&blob_rel(kept)).exists(),
            "{} was removed",
            String::from_utf8_lossy(kept)
        );
    }
    assert_eq!(
        project.run(&["verify", "voice"]).code,
        0,
        "the installed model still verifies"
    );

    let again = project.run(&["gc", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let doc = json(&again.stdout);
    assert_eq!(doc["blobs"], serde_json::json!([]));
    assert_eq!(doc["freed_bytes"], 0);
    assert_eq!(doc["kept"]["locked_blobs"], 1);
}

#[test]
fn gc_dry_run_removes_nothing() {
    let project = cluttered();
    project.write("models/.modelctl/tmp/stale.part", "partial bytes");
    age(&project.path("models/.modelctl/tmp/stale.part"), TWO_HOURS);
    let orphan = blob_rel(b"orphan weights\n");

    let run = project.run(&["gc", "--dry-run"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("would remove blob `"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("would remove partial download `.modelctl/tmp/stale.part`  13 B"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "would remove 1 blob (15 B) and 1 partial download (13 B); nothing was removed (--dry-run)"
        ),
        "{}",
        run.stdout
    );
    assert!(project.path(&orphan).exists());
    assert!(project.path("models/.modelctl/tmp/stale.part").exists());

    let doc = json(&project.run(&["gc", "--dry-run", "--json"]).stdout);
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["blobs"][0]["sha256"], sha256_hex(b"orphan weights\n"));
    assert_eq!(doc["freed_bytes"], 28);
    assert!(project.path(&orphan).exists());
}

#[test]
fn gc_removes_an_old_partial_download_and_keeps_a_young_one() {
    let project = installed(&[("voice", "voice.pth", b"voice weights\n")]);
    project.write("models/.modelctl/tmp/old.part", "abandoned");
    age(&project.path("models/.modelctl/tmp/old.part"), TWO_HOURS);
    project.write("models/.modelctl/tmp/new.part", "in flight");

    let run = project.run(&["gc"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("removed 0 blobs (0 B) and 1 partial download (9 B)\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("1 partial download younger than 1h"),
        "{}",
        run.stdout
    );
    assert!(!project.path("models/.modelctl/tmp/old.part").exists());
    assert!(project.path("models/.modelctl/tmp/new.part").exists());

    // `--grace 0` keeps nothing for its age.
    let run = project.run(&["gc", "--grace", "0"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!project.path("models/.modelctl/tmp/new.part").exists());
    assert!(
        project.path(&blob_rel(b"voice weights\n")).exists(),
        "still linked"
    );

    let run = project.run(&["gc", "--grace", "10"]);
    assert_eq!(run.code, 2, "clap refuses the value: {}", run.stderr);
    assert!(run.stderr.contains("without a unit"), "{}", run.stderr);
}

#[test]
fn gc_refuses_a_store_root_that_is_a_symlink() {
    let project = installed(&[("voice", "voice.pth", b"voice weights\n")]);
    let orphan = put_blob(&project, b"orphan weights\n");
    age(&orphan, TWO_HOURS);
    std::os::unix::fs::symlink(project.path("models"), project.path("link")).expect("symlink");
    let mut manifest = project.read("models.yaml");
    manifest = manifest.replacen("version: 1\n", "version: 1\nstore: ./link\n", 1);
    project.write("models.yaml", &manifest);

    let run = project.run(&["gc"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("it is a symlink"), "{}", run.stderr);
    assert!(
        run.stderr.contains("never follows symlinks"),
        "{}",
        run.stderr
    );
    assert!(orphan.exists(), "nothing was removed through the symlink");
    assert!(
        !project.path("models/.modelctl/lock").exists(),
        "not even the lock file was created"
    );
}

#[test]
fn gc_waits_for_the_store_lock_and_names_the_holder() {
    let project = installed(&[("voice", "voice.pth", b"voice weights\n")]);
    let orphan = put_blob(&project, b"orphan weights\n");
    age(&orphan, TWO_HOURS);
    let store = modelctl::store::Store::new(project.path("models"));
    let held = modelctl::store::StoreLock::acquire(&store, Duration::ZERO, &|_| {}).expect("lock");

    let run = project.run_env(&["gc"], &[("MODELCTL_LOCK_TIMEOUT", "1")]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "waiting for lock on `{}` (held by pid {})",
            project.path("models").display(),
            std::process::id()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("MODELCTL_LOCK_TIMEOUT"),
        "{}",
        run.stderr
    );
    assert!(orphan.exists(), "nothing was removed without the lock");

    drop(held);
    let run = project.run(&["gc"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!orphan.exists());
}

/// `storage` says what `gc` removes now (not the locked, copied or young blobs `gc` keeps)
/// and what the grace period keeps; `gc` then frees exactly that.
#[test]
fn storage_and_gc_agree_on_what_is_reclaimable() {
    let project = cluttered();
    let storage = json(&project.run(&["storage", "--json"]).stdout);
    let r = &storage["reclaimable"];
    let preview = json(&project.run(&["gc", "--dry-run", "--json"]).stdout);
    assert_eq!(
        r["unlinked_blobs"], preview["freed_bytes"],
        "{r}\n{preview}"
    );
    assert_eq!(r["unlinked_blobs"], b"orphan weights\n".len(), "{r}");
    assert_eq!(r["kept_by_grace"], b"young orphan\n".len(), "{r}");
    assert_eq!(r["grace_seconds"], 3600);
    let text = project.run(&["storage"]).stdout;
    assert!(text.contains("Reclaimable now: "), "{text}");
    assert!(
        text.contains("`modelctl gc --grace 0` removes it now"),
        "{text}"
    );

    let gc = json(&project.run(&["gc", "--json"]).stdout);
    assert_eq!(gc["freed_bytes"], r["unlinked_blobs"]);
    let after = json(&project.run(&["storage", "--json"]).stdout);
    assert_eq!(after["reclaimable"]["unlinked_blobs"], 0, "{after}");
    assert_eq!(project.run(&["gc", "--grace", "0"]).code, 0);
    let last = json(&project.run(&["storage", "--json"]).stdout);
    assert_eq!(last["reclaimable"]["kept_by_grace"], 0, "{last}");
}
