//! The `oci:` source. Against the real `docker-registry` (started as tests/cli/oci_registry.rs
//! does): a model `push` wrote is applied by a second project through `oci:`, byte for byte,
//! pinned by tag and by `@sha256:`; a tag moved upstream is drift that `update` pins. Against
//! `oras` (the Python SDK `.ci/run` installs into its venv; skipped, with the reason printed,
//! where it cannot be imported): files `oras push` wrote are applied through `oci:`, and what
//! `modelctl push` wrote is pulled back by `oras pull` byte for byte. Against an in-process
//! fake registry: hostile manifests are refused naming the layer and why, a `@sha256:` pin
//! must be the bytes' digest, and a bearer challenge is answered with the `docker login` of
//! the registry's host, never with `MODELCTL_REGISTRY_AUTH`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::fake_oci::{
    FakeRegistry, RAW, TOKEN, assert_model_holds, layer, manifest_of, oci_project,
};
use crate::oci_registry::Registry;
use crate::support::{Project, sha256_hex};

fn weights(seed: u32) -> Vec<u8> {
    (0..2_500_000u32)
        .map(|i| ((i.wrapping_mul(31) ^ seed) % 251) as u8)
        .collect()
}

/// A project with one url model `voice` (weights and nothing else), applied.
fn applied_source(bytes: &[u8]) -> Project {
    crate::support::applied_file_model("voice", "tts", "voice.safetensors", bytes)
}

/// `modelctl push --json` with `args`; the manifest digest of `voice`.
fn push(project: &Project, args: &[&str]) -> String {
    let mut all = vec!["push", "--json"];
    all.extend_from_slice(args);
    let run = project.run(&all);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("push report");
    report["models"][0]["manifest_digest"]
        .as_str()
        .expect("manifest digest")
        .to_owned()
}

#[test]
fn a_pushed_model_applies_through_oci_by_tag_and_by_digest_byte_for_byte() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let bytes = weights(1);
    let source = applied_source(&bytes);
    let to = format!("http://127.0.0.1:{}/team", registry.port);
    let digest = push(&source, &["--to", &to, "--tag", "v1"]);

    let by_tag = format!("{to}/voice:v1");
    let by_digest = format!("{to}/voice@{digest}");
    let project = oci_project(&[("voice", by_tag), ("pinned", by_digest)]);
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for id in ["voice", "pinned"] {
        let file = project.path(&format!("models/models/tts/{id}/voice.safetensors"));
        assert_eq!(std::fs::read(&file).expect("applied file"), bytes, "{id}");
    }
    let lock = project.read("models.lock");
    assert!(lock.contains(&format!("digest: \"{digest}\"")), "{lock}");
    assert!(
        lock.contains(&format!("sha256: \"{}\"", sha256_hex(&bytes))),
        "{lock}"
    );
    let again = project.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
}

#[test]
fn a_tag_moved_upstream_is_drift_and_update_pins_the_new_manifest() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let to = format!("http://127.0.0.1:{}/team", registry.port);
    let first = weights(2);
    let source = applied_source(&first);
    let old = push(&source, &["--to", &to, "--tag", "stable"]);
    let project = oci_project(&[("voice", format!("{to}/voice:stable"))]);
    let run = project.run(&["lock"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    // Upstream, `stable` now names other bytes.
    let second = weights(3);
    std::fs::write(source.path("src/voice.safetensors"), &second).expect("write");
    let run = source.run(&["update", "voice"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let run = source.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let new = push(&source, &["--to", &to, "--tag", "stable"]);
    assert_ne!(old, new);

    let plan = project.run(&["plan"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    let said = format!("{}{}", plan.stdout, plan.stderr);
    assert!(said.contains("moved upstream"), "{said}");
    assert!(said.contains("modelctl update voice"), "{said}");
    let locked = project.run(&["plan", "--locked"]);
    assert_ne!(locked.code, 0, "{}", locked.stdout);

    // The lock still pins the old blobs, which the registry keeps: apply gets the old bytes.
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let file = project.path("models/models/tts/voice/voice.safetensors");
    assert_eq!(std::fs::read(&file).expect("file"), first);

    let run = project.run(&["update", "voice"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(project.read("models.lock").contains(&new));
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(std::fs::read(&file).expect("file"), second);
}

/// The venv's Python when it has `oras`; `None`, with the reason printed, otherwise.
pub fn oras_python() -> Option<String> {
    let python = std::env::var("MODELCTL_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = std::process::Command::new(&python)
        .args(["-c", "import oras.provider"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped the oras check: `{python} -c 'import oras.provider'` failed \
             (install it with `pip install oras`, or set MODELCTL_TEST_PYTHON)"
        );
        return None;
    }
    Some(python)
}

pub fn run_python(python: &str, dir: &std::path::Path, script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn files_oras_pushed_apply_through_oci() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let Some(python) = oras_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = weights(4);
    std::fs::write(dir.path().join("model.gguf"), &bytes).expect("write");
    std::fs::write(dir.path().join("config.json"), "{\"n\": 1}\n").expect("write");
    let target = format!("127.0.0.1:{}/oras/tiny:v1", registry.port);
    let script = "import sys\n\
        from oras.provider import Registry\n\
        r = Registry(insecure=True)\n\
        r.push(target=sys.argv[1], files=['model.gguf:application/vnd.cncf.model.weight.v1.raw', 'config.json:application/json'])\n";
    run_python(&python, dir.path(), script, &[&target]);

    let project = oci_project(&[("tiny", format!("http://{target}"))]);
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_model_holds(
        &project,
        "tiny",
        &[("model.gguf", &bytes), ("config.json", b"{\"n\": 1}\n")],
    );
}

#[test]
fn what_push_wrote_is_pulled_back_by_oras_byte_for_byte() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let Some(python) = oras_python() else {
        return;
    };
    let bytes = weights(5);
    let source = applied_source(&bytes);
    let to = format!("http://127.0.0.1:{}/team", registry.port);
    push(&source, &["--to", &to, "--tag", "v1"]);
    let out = tempfile::tempdir().expect("tempdir");
    let target = format!("127.0.0.1:{}/team/voice:v1", registry.port);
    let script = "import sys\n\
        from oras.provider import Registry\n\
        r = Registry(insecure=True)\n\
        m = r.get_manifest(sys.argv[1])\n\
        print(m['artifactType'])\n\
        for f in r.pull(target=sys.argv[1], outdir=sys.argv[2]):\n    print(f)\n";
    let printed = run_python(
        &python,
        out.path(),
        script,
        &[&target, &out.path().display().to_string()],
    );
    let mut lines = printed.lines();
    assert_eq!(
        lines.next(),
        Some("application/vnd.cncf.model.manifest.v1+json")
    );
    let pulled: Vec<&str> = lines.collect();
    assert_eq!(pulled.len(), 1, "{printed}");
    assert!(
        pulled[0].ends_with("voice.safetensors"),
        "saved under its name (the title annotation), not its digest: {printed}"
    );
    assert_eq!(std::fs::read(pulled[0]).expect("pulled file"), bytes);
}

#[test]
fn hostile_manifests_are_refused_naming_the_layer_and_why() {
    let w = b"weights".to_vec();
    let named = |p: &str| json!({ "org.cncf.model.filepath": p });
    let good = layer(RAW, &w, named("w.bin"));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut l = good.clone();
        f(&mut l);
        l
    };
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        (
            "traversal",
            vec![layer(RAW, &w, named("../../etc/cron.d/x"))],
            "`..`",
        ),
        (
            "absolute",
            vec![layer(
                RAW,
                &w,
                json!({"org.opencontainers.image.title": "/etc/passwd"}),
            )],
            "absolute",
        ),
        (
            "duplicate",
            vec![good.clone(), good.clone()],
            "already the file `w.bin`",
        ),
        (
            "cased",
            vec![layer(RAW, &w, named("W.bin")), good.clone()],
            "differ only in case",
        ),
        (
            "negative",
            vec![with(&|l| l["size"] = json!(-5))],
            "non-negative",
        ),
        (
            "huge",
            vec![with(&|l| l["size"] = json!(1u64 << 60))],
            "larger than",
        ),
        (
            "baddigest",
            vec![with(&|l| l["digest"] = json!("sha256:1234"))],
            "64 lowercase hex",
        ),
        (
            "unnamed",
            vec![with(&|l| l["annotations"] = json!({}))],
            "names no file",
        ),
        (
            "gzip",
            vec![layer(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &w,
                named("w.bin"),
            )],
            "compressed",
        ),
        (
            "zstd",
            vec![layer(
                "application/vnd.cncf.model.weight.v1.tar+zstd",
                &w,
                named("w.bin"),
            )],
            "compressed",
        ),
    ];
    let mut routes = BTreeMap::new();
    for (tag, layers, _) in &cases {
        routes.insert(
            format!("/v2/ns/m/manifests/{tag}"),
            manifest_of(layers.clone()),
        );
    }
    let registry = FakeRegistry::start(routes, false);
    let models: Vec<(&str, String)> = cases
        .iter()
        .map(|(tag, _, _)| (*tag, format!("{}/ns/m:{tag}", registry.base)))
        .collect();
    let project = oci_project(&models);
    let plan = project.run(&["plan"]);
    let said = format!("{}\n{}", plan.stdout, plan.stderr);
    for (tag, _, why) in &cases {
        let line = said
            .lines()
            .find(|l| l.contains(&format!("/ns/m:{tag}`")) && l.contains("layer"))
            .unwrap_or_else(|| panic!("no refusal for {tag}:\n{said}"));
        assert!(line.contains(why), "{tag}: {line}");
    }
    assert!(
        said.contains("push the files as raw layers"),
        "the supported layers are named: {said}"
    );
    let run = project.run(&["apply", "--yes"]);
    assert_ne!(run.code, 0);
    assert!(
        !project.path("models/models/tts/traversal").exists(),
        "nothing of a refused model is written"
    );
    assert!(
        !registry.log().iter().any(|l| l.contains("/blobs/")),
        "no blob is asked for"
    );
}

#[test]
fn a_digest_pin_must_be_the_digest_of_the_manifest_bytes() {
    let w = b"weights".to_vec();
    let bytes = manifest_of(vec![layer(
        RAW,
        &w,
        json!({"org.cncf.model.filepath": "w.bin"}),
    )]);
    let other = "b".repeat(64);
    let mut routes = BTreeMap::new();
    routes.insert(format!("/v2/ns/m/manifests/sha256:{other}"), bytes.clone());
    let registry = FakeRegistry::start(routes, false);
    let project = oci_project(&[("m", format!("{}/ns/m@sha256:{other}", registry.base))]);
    let plan = project.run(&["lock"]);
    assert_ne!(plan.code, 0, "{}", plan.stdout);
    let said = format!("{}\n{}", plan.stdout, plan.stderr);
    assert!(
        said.contains(&format!("hash to sha256:{}", sha256_hex(&bytes))),
        "{said}"
    );
}

#[test]
fn a_bearer_registry_gets_the_docker_login_of_its_host_and_never_modelctl_registry_auth() {
    use base64::Engine as _;
    let w = weights(6);
    let bytes = manifest_of(vec![layer(
        RAW,
        &w,
        json!({"org.opencontainers.image.title": "w.bin"}),
    )]);
    let mut routes = BTreeMap::new();
    routes.insert("/v2/ns/m/manifests/v1".to_owned(), bytes);
    routes.insert(
        format!("/v2/ns/m/blobs/sha256:{}", sha256_hex(&w)),
        w.clone(),
    );
    let registry = FakeRegistry::start(routes, true);
    let project = oci_project(&[("m", format!("{}/ns/m:v1", registry.base))]);

    // The environment's credential is for the registries the environment names: not sent.
    let run = project.run_env(&["lock"], &[("MODELCTL_REGISTRY_AUTH", "user:pw")]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let said = format!("{}\n{}", run.stdout, run.stderr);
    assert!(said.contains("refused a token"), "{said}");
    assert!(
        registry.log().iter().all(|l| l != "GET /token Basic"),
        "{:?}",
        registry.log()
    );

    let host = registry.base.trim_start_matches("http://");
    let encoded = base64::engine::general_purpose::STANDARD.encode("user:pw");
    project.write(
        ".docker/config.json",
        &format!(r#"{{"auths": {{"{host}": {{"auth": "{encoded}"}}}}}}"#),
    );
    let run = project.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read(project.path("models/models/tts/m/w.bin")).expect("file"),
        w
    );
    let log = registry.log();
    assert!(log.iter().any(|l| l == "GET /token Basic"), "{log:?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /v2/ns/m/blobs/") && l.ends_with("Bearer")),
        "{log:?}"
    );
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(TOKEN) && !text.contains(&encoded), "{text}");
    }
}

#[test]
fn an_oci_model_is_served_by_a_mirror_like_any_file_with_a_sha256() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let bytes = weights(7);
    let source = applied_source(&bytes);
    let origin = format!("http://127.0.0.1:{}/team", registry.port);
    let mirror = format!("http://127.0.0.1:{}/fleet", registry.port);
    push(&source, &["--to", &origin, "--tag", "v1"]);
    push(&source, &["--to", &mirror]);
    let project = oci_project(&[("voice", format!("{origin}/voice:v1"))]);
    assert_eq!(project.run(&["lock"]).code, 0);
    // Mirror-only: the origin is asked for nothing, so the bytes came from the mirror.
    let run = project.run_env(
        &["apply", "--yes", "--json"],
        &[
            ("MODELCTL_MIRROR", mirror.as_str()),
            ("MODELCTL_MIRROR_ONLY", "1"),
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let file = project.path("models/models/tts/voice/voice.safetensors");
    assert_eq!(std::fs::read(&file).expect("file"), bytes);
}

#[test]
fn add_oci_declares_the_reference_and_a_bad_one_is_refused_where_it_is_written() {
    let project = Project::with_manifest("version: 1\n");
    let run = project.run(&[
        "add",
        "voice",
        "--type",
        "tts",
        "--oci",
        "registry.example.com/team/voice:v1",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        project
            .read("models.yaml")
            .contains("oci: registry.example.com/team/voice:v1"),
        "{}",
        project.read("models.yaml")
    );
    let run = project.run(&[
        "add",
        "bad",
        "--type",
        "tts",
        "--oci",
        "registry.example.com/team/voice",
    ]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("no tag or digest"), "{}", run.stderr);

    project.write(
        "models.yaml",
        "version: 1\nmodels:\n  voice:\n    type: tts\n    source: { oci: \"r.example/team/voice@sha256:abc\" }\n",
    );
    let run = project.run(&["plan"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("is not an OCI reference"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("models.yaml:5"), "{}", run.stderr);
}
