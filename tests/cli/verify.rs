//! `modelctl verify`: every kind of damage listed with expected and actual, exit codes, JSON,
//! a read-only store, and the models verify cannot check.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::support::{Project, file_url, sha256_hex};

/// Dates a file (and every hardlink to it) `by` back, so it counts as old for gc and the stat
/// cache trusts it.
pub fn age(path: &Path, by: Duration) {
    fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(SystemTime::now() - by)
        .expect("mtime");
}

/// Writes `bytes` as a blob of the project's store (`models/`), dated an hour back.
pub fn put_blob(project: &Project, bytes: &[u8]) -> PathBuf {
    let hex = sha256_hex(bytes);
    let blob = project.path(&format!("models/blobs/sha256/{}/{hex}", &hex[..2]));
    fs::create_dir_all(blob.parent().expect("parent")).expect("mkdir");
    fs::write(&blob, bytes).expect("blob");
    age(&blob, Duration::from_secs(3600));
    blob
}

/// A project declaring one `file://` model of type `tts` per `(id, file, bytes)`, locked with
/// `modelctl lock`, and installed as apply does: a blob hardlinked into `models/tts/<id>/`.
pub fn installed(models: &[(&str, &str, &[u8])]) -> Project {
    let project = Project::new();
    let mut manifest = String::from("version: 1\nmodels:\n");
    for (id, file, bytes) in models {
        fs::create_dir_all(project.path(&format!("src/{id}"))).expect("mkdir");
        fs::write(project.path(&format!("src/{id}/{file}")), bytes).expect("source");
        let url = file_url(&project.path(&format!("src/{id}/{file}")));
        manifest.push_str(&format!(
            "  {id}:\n    type: tts\n    source: {{ url: \"{url}\" }}\n"
        ));
    }
    project.write("models.yaml", &manifest);
    let lock = project.run(&["lock"]);
    assert_eq!(lock.code, 0, "{}", lock.stderr);
    for (id, file, bytes) in models {
        let blob = put_blob(&project, bytes);
        let dir = project.path(&format!("models/models/tts/{id}"));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::hard_link(&blob, dir.join(file)).expect("link");
    }
    project
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).expect("valid JSON")
}

#[test]
fn an_intact_store_verifies_and_refreshes_the_stat_cache() {
    let project = installed(&[
        ("voice", "voice.pth", b"voice weights\n"),
        ("music", "music.bin", b"music weights\n"),
    ]);
    let run = project.run(&["verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("voice (tts): 1 file intact (14 B)\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("blobs: 2 checked, all intact\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .ends_with("verified 2 files (28 B) in 2 models: no problems\n"),
        "{}",
        run.stdout
    );
    let cache = project.read("models/.modelctl/stat-cache.json");
    assert!(cache.contains("models/tts/voice/voice.pth"), "{cache}");
    assert!(cache.contains(&sha256_hex(b"voice weights\n")), "{cache}");

    let run = project.run(&["verify", "--json"]);
    assert_eq!(run.code, 0);
    let doc = json(&run.stdout);
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["models"][0]["id"], "music");
    assert_eq!(doc["models"][0]["status"], "checked");
    assert_eq!(doc["models"][0]["files_checked"], 1);
    assert_eq!(doc["totals"]["files_checked"], 2);
    assert_eq!(doc["corrupt_blobs"], serde_json::json!([]));
}

#[test]
fn flipped_truncated_symlinked_missing_and_extra_files_are_each_listed() {
    let files: [(&str, &str, &[u8]); 4] = [
        ("flip", "a.bin", b"0123456789abcd"),
        ("trunc", "t.bin", b"abcdefghijklmn"),
        ("link", "l.bin", b"linked weights"),
        ("gone", "g.bin", b"missing weight"),
    ];
    let project = installed(&files);
    let model = |id: &str, file: &str| project.path(&format!("models/models/tts/{id}/{file}"));

    // Bit rot in place: the model file and its blob are one inode, so both are damaged.
    let mut bytes = fs::read(model("flip", "a.bin")).expect("read");
    bytes[3] ^= 0x01;
    fs::write(model("flip", "a.bin"), &bytes).expect("flip");
    fs::File::options()
        .write(true)
        .open(model("trunc", "t.bin"))
        .expect("open")
        .set_len(7)
        .expect("truncate");
    fs::remove_file(model("link", "l.bin")).expect("unlink");
    project.write("elsewhere/l.bin", "linked weights");
    std::os::unix::fs::symlink(project.path("elsewhere/l.bin"), model("link", "l.bin"))
        .expect("symlink");
    fs::remove_file(model("gone", "g.bin")).expect("unlink");
    fs::write(model("gone", "notes.txt"), b"hello").expect("extra");

    let run = project.run(&["verify"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let want = sha256_hex(b"0123456789abcd");
    let lines = [
        "flip (tts): 1 problem".to_owned(),
        format!(
            "  corrupted `a.bin`: sha256 {}, expected {want}",
            sha256_hex(&bytes)
        ),
        "gone (tts): 2 problems".to_owned(),
        format!(
            "  missing `g.bin`: expected 14 bytes, sha256 {}",
            sha256_hex(b"missing weight")
        ),
        "  extra `notes.txt`: 5 bytes, not in models.lock".to_owned(),
        format!(
            "  not a file `l.bin`: a symlink to `{}` (not followed); expected 14 bytes, sha256 {}",
            project.path("elsewhere/l.bin").display(),
            sha256_hex(b"linked weights")
        ),
        format!(
            "  corrupted `t.bin`: 7 bytes, expected 14; sha256 {}, expected {}",
            sha256_hex(b"abcdefg"),
            sha256_hex(b"abcdefghijklmn")
        ),
        "blobs: 4 checked, 2 corrupt".to_owned(),
        "verified 2 files (21 B) in 4 models: 7 problems".to_owned(),
    ];
    for line in &lines {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "missing line {line:?} in\n{}",
            run.stdout
        );
    }

    let run = project.run(&["verify", "--json"]);
    assert_eq!(run.code, 1);
    let doc = json(&run.stdout);
    assert_eq!(doc["ok"], false);
    let problems: Vec<(String, String, String)> = doc["models"]
        .as_array()
        .expect("models")
        .iter()
        .flat_map(|m| {
            m["problems"].as_array().expect("problems").iter().map(|p| {
                (
                    m["id"].as_str().expect("id").to_owned(),
                    p["kind"].as_str().expect("kind").to_owned(),
                    p["path"].as_str().expect("path").to_owned(),
                )
            })
        })
        .collect();
    let expected = [
        ("flip", "corrupted", "a.bin"),
        ("gone", "missing", "g.bin"),
        ("gone", "extra", "notes.txt"),
        ("link", "not_a_file", "l.bin"),
        ("trunc", "corrupted", "t.bin"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(problems, expected);
    let trunc = &doc["models"][3]["problems"][0];
    assert_eq!(trunc["expected_sha256"], sha256_hex(b"abcdefghijklmn"));
    assert_eq!(trunc["actual_sha256"], sha256_hex(b"abcdefg"));
    assert_eq!(
        (
            trunc["expected_size"].as_u64(),
            trunc["actual_size"].as_u64()
        ),
        (Some(14), Some(7))
    );
    let link = &doc["models"][2]["problems"][0];
    assert_eq!(link["found"], "symlink");
    assert_eq!(link["actual_sha256"], serde_json::Value::Null);
    assert_eq!(doc["corrupt_blobs"].as_array().expect("blobs").len(), 2);
    assert_eq!(doc["totals"]["problems"], 7);
}

#[test]
fn a_corrupt_blob_no_model_links_is_reported() {
    let project = installed(&[("voice", "voice.pth", b"voice weights\n")]);
    let claimed = sha256_hex(b"what the name says");
    let path = project.path(&format!("models/blobs/sha256/{}/{claimed}", &claimed[..2]));
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, b"what the bytes are").expect("write");

    let run = project.run(&["verify"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("voice (tts): 1 file intact"),
        "{}",
        run.stdout
    );
    let line = format!(
        "  corrupt blob `blobs/sha256/{}/{claimed}`: its bytes hash to {}",
        &claimed[..2],
        sha256_hex(b"what the bytes are")
    );
    assert!(
        run.stdout.lines().any(|l| l == line),
        "{line}\n{}",
        run.stdout
    );
    assert!(run.stdout.ends_with(": 1 problem\n"), "{}", run.stdout);
    let doc = json(&project.run(&["verify", "--json"]).stdout);
    assert_eq!(doc["corrupt_blobs"][0]["expected_sha256"], claimed);
    assert_eq!(
        doc["corrupt_blobs"][0]["actual_sha256"],
        sha256_hex(b"what the bytes are")
    );
}

/// Makes every directory of a tree read-only, and restores it when dropped (even when the
/// test fails), so the temporary directory can be removed.
struct ReadOnly(Vec<PathBuf>);

impl ReadOnly {
    fn tree(root: &Path) -> Self {
        let mut dirs = vec![root.to_owned()];
        let mut i = 0;
        while i < dirs.len() {
            for entry in fs::read_dir(&dirs[i]).expect("ls") {
                let path = entry.expect("entry").path();
                if fs::symlink_metadata(&path).expect("lstat").is_dir() {
                    dirs.push(path);
                }
            }
            i += 1;
        }
        for dir in &dirs {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).expect("chmod");
        }
        Self(dirs)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn verify_works_on_a_read_only_store() {
    let project = installed(&[("voice", "voice.pth", b"voice weights\n")]);
    let store = project.path("models");
    let guard = ReadOnly::tree(&store);
    // Root ignores directory permissions; then only the outcome can be checked.
    let enforced = fs::write(store.join("probe"), b"").is_err();
    let _ = fs::remove_file(store.join("probe"));

    let run = project.run(&["verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .ends_with("verified 1 file (14 B) in 1 model: no problems\n"),
        "{}",
        run.stdout
    );
    if enforced {
        assert!(
            run.stderr.contains("stat cache") && run.stderr.contains("not updated"),
            "{}",
            run.stderr
        );
        assert!(!store.join(".modelctl").exists(), "nothing was written");
    }

    // A damaged file in the read-only store is still found.
    drop(guard);
    fs::remove_file(store.join("models/tts/voice/voice.pth")).expect("unlink");
    fs::write(store.join("models/tts/voice/voice.pth"), b"voice weights?").expect("write");
    let _guard = ReadOnly::tree(&store);
    let run = project.run(&["verify", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let doc = json(&run.stdout);
    assert_eq!(doc["models"][0]["problems"][0]["kind"], "corrupted");
}

#[test]
fn named_ids_limit_the_check_and_an_unknown_id_gets_a_suggestion() {
    let project = installed(&[
        ("voice", "voice.pth", b"voice weights\n"),
        ("music", "music.bin", b"music weights\n"),
    ]);
    fs::remove_file(project.path("models/models/tts/music/music.bin")).expect("unlink");
    assert_eq!(project.run(&["verify"]).code, 1);
    let run = project.run(&["verify", "voice"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("music"), "{}", run.stdout);

    let run = project.run(&["verify", "voise"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("unknown model `voise`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("did you mean `voice`?"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn unlocked_and_ollama_models_are_said_not_failed() {
    let project = installed(&[("voice", "voice.pth", b"voice weights\n")]);
    let mut manifest = project.read("models.yaml");
    manifest.push_str("  chat:\n    type: llm\n    source: { ollama: \"llama3:8b\" }\n");
    manifest.push_str(
        "  later:\n    type: music\n    source: { url: \"https://example.com/m.bin\" }\n",
    );
    project.write("models.yaml", &manifest);
    // Pin the Ollama model by hand: this build cannot resolve Ollama references yet.
    let parsed = modelctl::manifest::parse_str(&manifest, "models.yaml").expect("manifest");
    let mut lock =
        modelctl::lock::parse_str(&project.read("models.lock"), Path::new("models.lock"))
            .expect("lock");
    let chat = modelctl::names::ModelId::parse("chat").expect("id");
    lock.models.insert(
        chat.clone(),
        modelctl::lock::LockedModel {
            fingerprint: modelctl::lock::fingerprint(&parsed.models[&chat]),
            source: modelctl::lock::LockedSource::Ollama {
                ollama: "llama3:8b".to_owned(),
                digest: modelctl::digest::Sha256::of(b"manifest"),
                layers: vec![modelctl::lock::LockedLayer {
                    media_type: "application/vnd.ollama.image.model".to_owned(),
                    digest: modelctl::digest::Sha256::of(b"layer"),
                    size: 5,
                }],
                pinned_from: modelctl::lock::PinnedFrom::Registry,
            },
            files: vec![],
        },
    );
    project.write("models.lock", &modelctl::lock::render(&lock));

    let run = project.run(&["verify"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("chat (llm): verified by the Ollama daemon, nothing in the store to hash"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("later (music): not locked, cannot verify (run `modelctl lock`)"),
        "{}",
        run.stdout
    );
    let doc = json(&project.run(&["verify", "--json"]).stdout);
    let statuses: Vec<(&str, &str)> = doc["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().expect("id"),
                m["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("chat", "ollama"),
            ("later", "not_locked"),
            ("voice", "checked")
        ]
    );
    assert_eq!(doc["ok"], true);
}

#[test]
fn repair_refetches_only_the_damaged_files() {
    let project = installed(&[
        ("a", "a.bin", b"first model\n"),
        ("b", "b.bin", b"second model\n"),
    ]);
    let untouched = project.path("models/models/tts/b/b.bin");
    let inode_before =
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(&untouched).expect("meta"));
    let damaged = project.path("models/models/tts/a/a.bin");
    fs::remove_file(&damaged).expect("rm");
    fs::write(&damaged, b"first modeX\n").expect("tamper");
    fs::write(project.path("models/models/tts/a/stray.txt"), b"stray").expect("stray");

    let run = project.run(&["verify", "--repair"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("corrupted `a.bin`"),
        "the report comes first: {}",
        run.stdout
    );
    assert!(run.stderr.contains("Repairing 2 file(s)"), "{}", run.stderr);
    assert_eq!(fs::read(&damaged).expect("read"), b"first model\n");
    assert!(!project.path("models/models/tts/a/stray.txt").exists());
    let inode_after = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&untouched).expect("meta"));
    assert_eq!(inode_before, inode_after, "intact files are left alone");

    let again = project.run(&["verify"]);
    assert_eq!(again.code, 0, "{}", again.stdout);
}
