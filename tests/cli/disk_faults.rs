//! A store the disk or the permissions refuse: docs/reliability.md D1 (disk full mid-download) and
//! D2 (a store the user cannot write).
//!
//! Both need root: D1 mounts a small tmpfs as the store's filesystem, D2 runs the binary as
//! uid/gid 65534 (`nobody`) against a store root owns. Without root they are skipped with a
//! note, as is D1 where mounting is not allowed (an unprivileged container).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::apply::{FAST, assert_installed, files_under, manifest, url_model, wait_for};
use crate::faults::{FaultServer, pseudo_random};
use crate::support::{Project, sha256_hex};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A tmpfs mounted on a directory until dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.dir).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Writes to `path` until the filesystem is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0x5a; 64 << 10];
    loop {
        match file.write_all(&block).and_then(|()| file.sync_all()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => return,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

#[test]
fn d1_a_disk_that_fills_mid_download_fails_without_retry_and_changes_nothing() {
    if !is_root() {
        eprintln!("skipping: D1 needs root to mount a small tmpfs");
        return;
    }
    let server = FaultServer::start();
    let old = pseudo_random(4000, 80);
    let big = pseudo_random(6 << 20, 81);
    server.serve("/old.bin", old.clone());
    server.serve("/w.bin", big.clone());
    let project = Project::new();
    let tmpfs = match Tmpfs::mount(&project.path("fs"), "8m") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipping: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let old_entry = url_model(
        "old",
        "tts",
        &server.url("/old.bin"),
        Some(&sha256_hex(&old)),
    );
    let store_manifest = |entries: &[String], active| {
        manifest(entries, &[("tts", active)]).replace("store: ./store", "store: ./fs/store")
    };
    project.write(
        "models.yaml",
        &store_manifest(std::slice::from_ref(&old_entry), "old"),
    );
    assert_eq!(project.run_env(&["apply"], FAST).code, 0);
    let new_entry = url_model("m", "tts", &server.url("/w.bin"), Some(&sha256_hex(&big)));
    project.write("models.yaml", &store_manifest(&[old_entry, new_entry], "m"));
    assert_eq!(project.run_env(&["lock"], FAST).code, 0);
    let lock = project.read("models.lock");
    let active_json = project.read("fs/store/active.json");

    // The body holds after 1 MiB; meanwhile the disk fills up; then the rest arrives.
    server.hold_after(1 << 20);
    let log = project.path("apply.log");
    let mut child = project
        .command(&["apply"], FAST)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn apply");
    let sent = || server.body_bytes() >= (1 << 20) + old.len() as u64;
    wait_for("the first MiB", Duration::from_secs(60), sent, || {
        std::fs::read_to_string(&log).unwrap_or_default()
    });
    fill(&tmpfs.dir.join("filler"));
    server.release();
    let status = child.wait().expect("wait");
    let stderr = std::fs::read_to_string(&log).expect("log");

    assert_eq!(status.code(), Some(1), "{stderr}");
    let partial = project.path("fs/store/.modelctl/tmp");
    let error = stderr
        .lines()
        .find(|l| l.contains("cannot download `m/w.bin`"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        error.contains(&format!("cannot write `{}/", partial.display())),
        "{error}"
    );
    assert!(error.contains("No space left on device"), "{error}");
    assert!(!stderr.contains("retrying"), "{stderr}");
    assert_eq!(server.gets("/w.bin").len(), 1, "not retried");
    // Outside staging, the store is what the first apply left.
    let store = project.path("fs/store");
    let outside: Vec<PathBuf> = files_under(&store)
        .into_iter()
        .filter(|p| !p.starts_with(store.join(".modelctl")))
        .collect();
    let hex = sha256_hex(&old);
    let mut expected = vec![
        store.join(format!("blobs/sha256/{}/{hex}", &hex[..2])),
        store.join("active.json"),
        store.join("active/tts"),
        store.join("models/tts/old/old.bin"),
    ];
    expected.sort();
    assert_eq!(outside, expected);
    assert_eq!(project.read("models.lock"), lock);
    assert_eq!(project.read("fs/store/active.json"), active_json);
    assert_eq!(
        std::fs::read_link(store.join("active/tts")).expect("pointer"),
        Path::new("../models/tts/old")
    );

    // With room again the next apply completes, resuming what was kept in staging.
    std::fs::remove_file(tmpfs.dir.join("filler")).expect("rm filler");
    let run = project.run_env(&["apply"], FAST);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let installed = std::fs::read(store.join("models/tts/m/w.bin")).expect("installed");
    assert!(installed == big);
    drop(tmpfs);
}

/// `modelctl ARGS` run as `nobody`.
fn run_as_nobody(project: &Project, args: &[&str]) -> (i32, String) {
    let out = project
        .command(args, FAST)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run as nobody");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn d2_a_store_the_user_cannot_write_is_read_and_apply_stops_before_any_download() {
    if !is_root() {
        eprintln!("skipping: D2 needs root to run modelctl as another user");
        return;
    }
    let server = FaultServer::start();
    let old = pseudo_random(4000, 82);
    let new = pseudo_random(4000, 83);
    server.serve("/old.bin", old.clone());
    server.serve("/new.bin", new.clone());
    let project = Project::new();
    // The project directory is 0700 like every tempdir; nobody must be able to enter it.
    std::fs::set_permissions(project.root(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let old_entry = url_model(
        "old",
        "tts",
        &server.url("/old.bin"),
        Some(&sha256_hex(&old)),
    );
    project.write(
        "models.yaml",
        &manifest(std::slice::from_ref(&old_entry), &[("tts", "old")]),
    );
    assert_eq!(project.run_env(&["apply"], FAST).code, 0);
    if let Err(why) = project.command(&["--version"], &[]).uid(NOBODY).output() {
        eprintln!("skipping: nobody cannot run the test binary here ({why})");
        return;
    }
    let (code, status) = run_as_nobody(&project, &["status"]);
    assert_eq!(code, 0, "status: {status}");
    assert!(status.contains("old"), "{status}");
    let (code, verify) = run_as_nobody(&project, &["verify"]);
    assert_eq!(code, 0, "verify: {verify}");

    let new_entry = url_model(
        "new",
        "music",
        &server.url("/new.bin"),
        Some(&sha256_hex(&new)),
    );
    project.write(
        "models.yaml",
        &manifest(&[old_entry, new_entry], &[("tts", "old")]),
    );
    let lock_path = project.path("models.lock");
    let lock = project.read("models.lock");
    let mtime = std::fs::metadata(&lock_path)
        .expect("lock")
        .modified()
        .expect("mtime");
    let requests = server.requests().len();

    let (code, apply) = run_as_nobody(&project, &["apply"]);
    assert_eq!(code, 1, "{apply}");
    let store = project.path("store");
    assert!(
        apply.contains(&format!(
            "cannot write to `{}`: store is not writable",
            store.display()
        )),
        "{apply}"
    );
    assert_eq!(
        server.requests().len(),
        requests,
        "no request: {:?}",
        server.requests()
    );
    assert_eq!(project.read("models.lock"), lock);
    assert_eq!(
        std::fs::metadata(&lock_path)
            .expect("lock")
            .modified()
            .expect("mtime"),
        mtime,
        "models.lock was not rewritten"
    );
    assert!(!store.join("models/music").exists());
    assert_installed(&project, "tts", "old", "old.bin", &old);
}
