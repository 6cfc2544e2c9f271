//! Uncompressed tar layers of `oci:` sources. Against the in-process fake registry: a tar
//! layer is listed while locking (each file with its own sha256, the layer recorded with the
//! files it holds) and extracted by `apply` byte for byte, downloaded once however many files
//! it holds, with nothing left in staging (a killed apply's copies included); hostile entries (traversal, absolute names, links,
//! devices, duplicates, case collisions, a file also a folder, sizes past the layer) are
//! refused at lock naming the entry, before anything is written; a layer served with other
//! bytes at apply, or a file that no longer matches models.lock, publishes nothing. Against
//! the real `docker-registry`: a model with a tar layer, pushed to a mirror, applies with
//! `--mirror-only` without its layer being asked of the origin. Against `oras` (the Python
//! SDK): a tar layer `oras push` uploaded applies through `oci:`.

use std::collections::BTreeMap;

use serde_json::json;

use crate::fake_oci::{
    FakeRegistry, RAW, TAR, assert_model_holds, layer, manifest_of, oci_project,
};
use crate::oci_registry::Registry;
use crate::support::{Project, sha256_hex};

fn weights(seed: u32, len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i.wrapping_mul(17) ^ seed) % 253) as u8)
        .collect()
}

/// A well-formed tar of `files` (with a `./` folder entry for each folder), as `tar` writes it.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut folders = std::collections::BTreeSet::new();
    for (path, bytes) in files {
        if let Some((dir, _)) = path.rsplit_once('/')
            && folders.insert(dir.to_owned())
        {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            builder
                .append_data(&mut h, format!("./{dir}/"), std::io::empty())
                .expect("dir");
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        builder.append_data(&mut h, path, *bytes).expect("file");
    }
    builder.into_inner().expect("tar")
}

/// A tar written header by header, names raw (hostile ones included): `(name, kind, claimed
/// size, bytes)`.
fn raw_tar(entries: &[(&str, tar::EntryType, u64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, size, bytes) in entries {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(*size);
        h.set_mode(0o644);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.set_link_name("/etc/passwd").expect("link");
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(bytes);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn blob_path(bytes: &[u8]) -> String {
    format!("/v2/ns/m/blobs/sha256:{}", sha256_hex(bytes))
}

/// A registry serving `ns/m:v1`: a raw `config.json` and the tar layer `tar`.
fn registry_with(tar: &[u8], config: &[u8]) -> FakeRegistry {
    let manifest = manifest_of(vec![
        layer(
            RAW,
            config,
            json!({"org.cncf.model.filepath": "config.json"}),
        ),
        layer(TAR, tar, json!({"org.cncf.model.filepath": "weights"})),
    ]);
    let mut routes = BTreeMap::new();
    routes.insert("/v2/ns/m/manifests/v1".to_owned(), manifest);
    routes.insert(blob_path(config), config.to_vec());
    routes.insert(blob_path(tar), tar.to_vec());
    FakeRegistry::start(routes, false)
}

fn gets_of(registry: &FakeRegistry, path: &str) -> usize {
    let line = format!("GET {path}");
    registry.log().iter().filter(|l| **l == line).count()
}

fn staging_is_empty(project: &Project) {
    let tmp = project.path("models/.modelctl/tmp");
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("extract-") || n.starts_with("tar-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn a_tar_layer_is_listed_at_lock_and_extracted_by_apply_byte_for_byte() {
    let big = weights(1, 1_500_000);
    let vocab = b"{\"a\": 1}\n".to_vec();
    let same = big.clone();
    let tar = tar_of(&[
        ("weights/model.safetensors", &big),
        ("weights/copy.safetensors", &same),
        ("tokenizer/vocab.json", &vocab),
    ]);
    let config = b"{\"arch\": \"tiny\"}\n".to_vec();
    let registry = registry_with(&tar, &config);
    let project = oci_project(&[("m", format!("{}/ns/m:v1", registry.base))]);

    let run = project.run(&["lock"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let lock = project.read("models.lock");
    for (path, bytes) in [
        ("weights/model.safetensors", &big),
        ("tokenizer/vocab.json", &vocab),
        ("config.json", &config),
    ] {
        let entry = format!(
            "- path: \"{path}\"\n        size: {}\n        sha256: \"{}\"",
            bytes.len(),
            sha256_hex(bytes)
        );
        assert!(lock.contains(&entry), "{path} with its own sha256:\n{lock}");
    }
    assert!(
        lock.contains(&format!(
            "      archives:\n        - media_type: \"{TAR}\"\n          digest: \"sha256:{}\"\n          size: {}\n          files:\n            - \"tokenizer/vocab.json\"\n            - \"weights/copy.safetensors\"\n            - \"weights/model.safetensors\"\n",
            sha256_hex(&tar),
            tar.len()
        )),
        "{lock}"
    );
    assert_eq!(gets_of(&registry, &blob_path(&tar)), 1, "listed once");

    let plan = project.run(&["plan", "--json"]);
    assert!(
        plan.stdout.contains(&format!(
            "/ns/m:v1/weights/model.safetensors (in tar layer sha256:{})",
            &sha256_hex(&tar)[..12]
        )),
        "the plan names the layer: {}",
        plan.stdout
    );
    // A copy a killed apply left where this one stages the layer's files.
    project.write(
        &format!("models/.modelctl/tmp/extract-{}-0", sha256_hex(&tar)),
        "left by a killed apply",
    );
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_model_holds(
        &project,
        "m",
        &[
            ("weights/model.safetensors", &big),
            ("weights/copy.safetensors", &big),
            ("tokenizer/vocab.json", &vocab),
            ("config.json", &config),
        ],
    );
    assert_eq!(
        gets_of(&registry, &blob_path(&tar)),
        2,
        "the layer is downloaded once by apply, for its three files"
    );
    staging_is_empty(&project);

    let again = project.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let verify = project.run(&["verify"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
}

#[test]
fn hostile_tar_entries_are_refused_at_lock_naming_the_entry() {
    use tar::EntryType::{Char, Directory, Link, Regular, Symlink};
    let w: &[u8] = b"weights";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traversal",
            raw_tar(&[("../../evil.sh", Regular, 7, w)]),
            "not a safe relative path",
        ),
        (
            "absolute",
            raw_tar(&[("/etc/cron.d/x", Regular, 7, w)]),
            "absolute",
        ),
        (
            "symlink",
            raw_tar(&[("w.bin", Symlink, 0, b"")]),
            "a symbolic link",
        ),
        (
            "hardlink",
            raw_tar(&[("w.bin", Link, 0, b"")]),
            "a hard link",
        ),
        (
            "device",
            raw_tar(&[("w.bin", Char, 0, b"")]),
            "a character device",
        ),
        (
            "duplicate",
            raw_tar(&[("w.bin", Regular, 7, w), ("w.bin", Regular, 7, w)]),
            "already this file",
        ),
        (
            "cased",
            raw_tar(&[("w.bin", Regular, 7, w), ("W.bin", Regular, 7, w)]),
            "differ only in case",
        ),
        (
            "folder",
            raw_tar(&[("w.bin", Regular, 7, w), ("w.bin/x", Regular, 7, w)]),
            "already a file",
        ),
        (
            "raw-twin",
            raw_tar(&[("config.json", Regular, 7, w)]),
            "config.json",
        ),
        (
            "oversize",
            raw_tar(&[("w.bin", Regular, 1 << 40, w)]),
            "more than the layer's",
        ),
        (
            "dir-then-file",
            raw_tar(&[("d", Directory, 0, b""), ("d", Regular, 7, w)]),
            "makes it a directory",
        ),
    ];
    let config = b"{}".to_vec();
    let mut routes = BTreeMap::new();
    routes.insert(
        format!("/v2/ns/m/blobs/sha256:{}", sha256_hex(&config)),
        config.clone(),
    );
    for (tag, tar, _) in &cases {
        let manifest = manifest_of(vec![
            layer(
                RAW,
                &config,
                json!({"org.cncf.model.filepath": "config.json"}),
            ),
            layer(TAR, tar, json!({})),
        ]);
        routes.insert(format!("/v2/ns/m/manifests/{tag}"), manifest);
        routes.insert(blob_path(tar), tar.clone());
    }
    let registry = FakeRegistry::start(routes, false);
    let models: Vec<(&str, String)> = cases
        .iter()
        .map(|(tag, _, _)| (*tag, format!("{}/ns/m:{tag}", registry.base)))
        .collect();
    let project = oci_project(&models);
    let run = project.run(&["lock"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let said = format!("{}\n{}", run.stdout, run.stderr);
    for (tag, _, why) in &cases {
        let line = said
            .lines()
            .find(|l| l.contains(&format!("/ns/m:{tag}`")) && l.contains("refused"))
            .unwrap_or_else(|| panic!("no refusal for {tag}:\n{said}"));
        assert!(line.contains(why), "{tag}: {line}");
    }
    assert!(
        !project.read("models.lock").contains("archives"),
        "no refused layer is recorded"
    );
    let run = project.run(&["apply", "--yes"]);
    assert_ne!(run.code, 0);
    for escaped in ["evil.sh", "../evil.sh", "../../evil.sh"] {
        assert!(!project.path(&format!("models/{escaped}")).exists());
    }
    assert!(
        !project.path("models/models/tts").exists(),
        "nothing is written"
    );
}

#[test]
fn a_layer_served_with_other_bytes_or_a_file_that_misses_the_lock_publishes_nothing() {
    let big = weights(2, 600_000);
    let tar = tar_of(&[("weights/model.safetensors", &big)]);
    let config = b"{}".to_vec();
    let registry = registry_with(&tar, &config);
    let project = oci_project(&[("m", format!("{}/ns/m:v1", registry.base))]);
    assert_eq!(project.run(&["lock"]).code, 0);

    // The same size, another byte: the layer's digest catches it before it is read.
    let mut other = tar.clone();
    other[600] ^= 1;
    registry.set(&blob_path(&tar), other);
    let run = project.run(&["apply", "--yes"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("checksum mismatch"), "{}", run.stderr);
    assert!(
        run.stderr.contains("weights/model.safetensors"),
        "{}",
        run.stderr
    );
    assert!(!project.path("models/models/tts/m").exists());
    staging_is_empty(&project);

    // The right layer, but models.lock now says the file is other bytes: refused by the file's
    // own check, and nothing of the layer is published.
    registry.set(&blob_path(&tar), tar.clone());
    let lock = project.read("models.lock");
    let wrong = sha256_hex(b"something else");
    project.write("models.lock", &lock.replace(&sha256_hex(&big), &wrong));
    let run = project.run(&["apply", "--yes"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains(&format!("not the sha256:{wrong} models.lock has")),
        "{}",
        run.stderr
    );
    assert!(!project.path("models/models/tts/m/weights").exists());
    let blobs = project.path("models/blobs");
    let published: Vec<_> = walk_files(&blobs);
    assert!(
        !published
            .iter()
            .any(|p| p.contains(&sha256_hex(&big)[..12])),
        "{published:?}"
    );
    staging_is_empty(&project);
}

fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[test]
fn files_of_a_tar_layer_come_from_a_mirror_without_the_layer() {
    let Some(mirror_registry) = Registry::start() else {
        return;
    };
    let big = weights(3, 800_000);
    let tar = tar_of(&[("weights/model.safetensors", &big)]);
    let config = b"{}".to_vec();
    let origin = registry_with(&tar, &config);
    let source = oci_project(&[("m", format!("{}/ns/m:v1", origin.base))]);
    let run = source.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let mirror = format!("http://127.0.0.1:{}/fleet", mirror_registry.port);
    let run = source.run(&["push", "m", "--to", &mirror]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    let node = oci_project(&[("m", format!("{}/ns/m:v1", origin.base))]);
    node.write("models.lock", &source.read("models.lock"));
    let before = gets_of(&origin, &blob_path(&tar));
    let run = node.run_env(
        &["apply", "--frozen", "--yes"],
        &[
            ("MODELCTL_MIRROR", mirror.as_str()),
            ("MODELCTL_MIRROR_ONLY", "1"),
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_model_holds(&node, "m", &[("weights/model.safetensors", &big)]);
    assert_eq!(
        gets_of(&origin, &blob_path(&tar)),
        before,
        "the tar layer is not asked of the origin"
    );
}

#[test]
fn a_tar_layer_oras_pushed_applies_through_oci() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let Some(python) = crate::oci_source::oras_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let big = weights(4, 700_000);
    std::fs::create_dir_all(dir.path().join("pack/weights")).expect("dir");
    std::fs::write(dir.path().join("pack/weights/model.safetensors"), &big).expect("write");
    std::fs::write(dir.path().join("pack/vocab.json"), "{}\n").expect("write");
    std::fs::write(dir.path().join("config.json"), "{\"n\": 2}\n").expect("write");
    let target = format!("127.0.0.1:{}/oras/tarred:v1", registry.port);
    let script = format!(
        "import sys, tarfile\n\
         with tarfile.open('layer.tar', 'w', format=tarfile.PAX_FORMAT) as t:\n    t.add('pack', arcname='.')\n\
         from oras.provider import Registry\n\
         r = Registry(insecure=True)\n\
         r.push(target=sys.argv[1], files=['layer.tar:{TAR}', 'config.json:application/json'])\n"
    );
    crate::oci_source::run_python(&python, dir.path(), &script, &[&target]);

    let project = oci_project(&[("tarred", format!("http://{target}"))]);
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_model_holds(
        &project,
        "tarred",
        &[
            ("weights/model.safetensors", &big),
            ("vocab.json", b"{}\n"),
            ("config.json", b"{\"n\": 2}\n"),
        ],
    );
    assert!(!project.path("models/models/tts/tarred/layer.tar").exists());
}
