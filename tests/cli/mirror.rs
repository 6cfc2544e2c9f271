//! Mirrors: a set applied once from its origin and pushed to the real `docker-registry` (as
//! tests/cli/push.rs starts it) is applied into four fresh stores at once with
//! `MODELCTL_MIRROR`, and the origin sends none of its bytes; a blob the mirror lacks, a
//! mirror that is down and a mirror that serves other bytes (a fake registry here) fall back
//! to the origin with a one-line notice; `--mirror-only` refuses instead; the plan says where
//! each download comes from; bad mirror settings are refused with their reason; a mirror
//! behind a bearer challenge (push.rs's fake) is read with the `docker login`, or with
//! `MODELCTL_REGISTRY_AUTH` for a mirror of `MODELCTL_MIRROR` only.

use serde_json::Value;

use crate::faults::{FaultServer, pseudo_random};
use crate::oci_registry::Registry;
use crate::push::{SECRET, TOKEN, TokenRegistry};
use crate::support::{Project, Run, sha256_hex};

const VOICE: &str = "/voice.safetensors";
const CARD: &str = "/README.md";

/// An origin serving two files, and a project that applied them from it (so models.lock has
/// their sha256s, learned from the bytes).
fn applied_from_origin() -> (Project, FaultServer, Vec<u8>) {
    let origin = FaultServer::start();
    let weights = pseudo_random(3_000_000, 7);
    origin.serve(VOICE, weights.clone());
    origin.serve(CARD, "# A model card\n");
    let project = Project::with_manifest(&format!(
        "version: 1\nmodels:\n  voice:\n    type: tts\n    source: {{ url: \"{}\" }}\n  card:\n    type: llm\n    source: {{ url: \"{}\" }}\n",
        origin.url(VOICE),
        origin.url(CARD),
    ));
    let applied = project.run(&["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    assert!(project.read("models.lock").contains(&sha256_hex(&weights)));
    (project, origin, weights)
}

fn push(project: &Project, ids: &[&str], to: &str) {
    let mut args = vec!["push"];
    args.extend_from_slice(ids);
    args.extend_from_slice(&["--to", to]);
    let run = project.run(&args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

/// Applies into the fresh store `node` with `MODELCTL_MIRROR=mirror` and `extra` settings.
fn apply_node(project: &Project, node: &str, mirror: &str, extra: &[&str]) -> Run {
    let store = project.path(node).display().to_string();
    let mut args = vec!["apply", "--yes"];
    args.extend_from_slice(extra);
    project.run_env(
        &args,
        &[
            ("MODELCTL_STORE", store.as_str()),
            // Another node: a store and a machine of its own.
            ("MODELCTL_NO_CACHE", "1"),
            ("MODELCTL_MIRROR", mirror),
            ("MODELCTL_HTTP_RETRIES", "2"),
            ("MODELCTL_HTTP_RETRY_BASE_MS", "10"),
        ],
    )
}

fn file_gets(origin: &FaultServer) -> usize {
    origin.gets(VOICE).len() + origin.gets(CARD).len()
}

#[test]
fn four_nodes_apply_from_the_mirror_at_once_and_the_origin_sends_no_file_byte() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let (project, origin, weights) = applied_from_origin();
    let mirror = format!("http://127.0.0.1:{}/fleet", registry.port);
    push(&project, &[], &mirror);
    let (bytes_before, gets_before) = (origin.body_bytes(), file_gets(&origin));

    // The plan says where each download comes from, in text and in JSON.
    let store = project.path("node0").display().to_string();
    let env = [
        ("MODELCTL_STORE", store.as_str()),
        // Another node: a store and a machine of its own.
        ("MODELCTL_NO_CACHE", "1"),
        ("MODELCTL_MIRROR", mirror.as_str()),
    ];
    let plan = project.run_env(&["plan"], &env);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains(&format!("via mirror {mirror}")),
        "{}",
        plan.stdout
    );
    let json = project.run_env(&["plan", "--json"], &env);
    let doc: Value = serde_json::from_str(&json.stdout).expect("plan json");
    let downloads: Vec<&Value> = doc["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter(|a| a["action"] == "download")
        .collect();
    assert_eq!(downloads.len(), 2, "{doc}");
    for d in downloads {
        assert_eq!(d["mirrors"], serde_json::json!([mirror]), "{d}");
    }

    let children: Vec<_> = (1..=4)
        .map(|n| {
            let store = project.path(&format!("node{n}")).display().to_string();
            project
                .command(
                    &["apply", "--yes"],
                    &[
                        ("MODELCTL_STORE", store.as_str()),
                        // Another node: a store and a machine of its own.
                        ("MODELCTL_NO_CACHE", "1"),
                        ("MODELCTL_MIRROR", mirror.as_str()),
                    ],
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn apply")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("apply");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("from the origin"), "{stderr}");
    }
    for n in 1..=4 {
        let got =
            std::fs::read(project.path(&format!("node{n}/models/tts/voice/voice.safetensors")))
                .expect("the mirrored file is in place");
        assert!(got == weights, "node{n} has other bytes");
        assert_eq!(
            project.read(&format!("node{n}/models/llm/card/README.md")),
            "# A model card\n"
        );
    }
    assert_eq!(
        origin.body_bytes(),
        bytes_before,
        "the origin sent file bytes"
    );
    assert_eq!(
        file_gets(&origin),
        gets_before,
        "the origin was asked for a file"
    );
}

#[test]
fn a_blob_the_mirror_lacks_comes_from_the_origin_with_one_line_and_mirror_only_refuses_it() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let (project, origin, _) = applied_from_origin();
    let mirror = format!("http://127.0.0.1:{}/fleet", registry.port);
    push(&project, &["voice"], &mirror);
    let card_digest = sha256_hex(b"# A model card\n");

    // Mirror-only: the file the mirror lacks is an error naming it, and the origin is not asked.
    let gets_before = file_gets(&origin);
    let run = apply_node(&project, "strict", &mirror, &["--mirror-only"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    for part in [
        "cannot download `card/README.md`",
        card_digest.as_str(),
        mirror.as_str(),
        "does not have it",
        "help: push it",
    ] {
        assert!(run.stderr.contains(part), "{part}: {}", run.stderr);
    }
    assert_eq!(
        file_gets(&origin),
        gets_before,
        "mirror-only asked the origin"
    );
    assert!(
        project
            .path("strict/models/tts/voice/voice.safetensors")
            .is_file(),
        "the mirrored model is applied all the same"
    );

    // Without it: the card comes from the origin, said in one line; the voice does not.
    let run = apply_node(&project, "node", &mirror, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let notices: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("is not from a mirror"))
        .collect();
    assert_eq!(notices.len(), 1, "{}", run.stderr);
    assert!(
        notices[0].contains(&format!(
            "card/README.md is not from a mirror: {mirror} does not have it; downloading it from the origin"
        )),
        "{}",
        notices[0]
    );
    assert_eq!(origin.gets(CARD).len(), 2, "the card came from the origin");
    assert_eq!(
        origin.gets(VOICE).len(),
        1,
        "the voice came from the mirror"
    );
    assert_eq!(
        project.read("node/models/llm/card/README.md"),
        "# A model card\n"
    );
}

#[test]
fn a_mirror_that_is_down_falls_back_to_the_origin() {
    let (project, origin, weights) = applied_from_origin();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mirror = format!("http://127.0.0.1:{closed}/fleet");
    let run = apply_node(&project, "node", &mirror, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let notices = run
        .stderr
        .lines()
        .filter(|l| l.contains("is not from a mirror") && l.contains("from the origin"))
        .count();
    assert_eq!(notices, 2, "one line per file: {}", run.stderr);
    assert!(run.stderr.contains(&mirror), "{}", run.stderr);
    assert_eq!(origin.gets(VOICE).len(), 2);
    let got = std::fs::read(project.path("node/models/tts/voice/voice.safetensors")).expect("file");
    assert!(got == weights);
}

#[test]
fn a_mirror_serving_other_bytes_is_caught_by_the_digest_and_the_origin_serves_them() {
    let (project, origin, weights) = applied_from_origin();
    // A registry that has every blob asked for, with every bit flipped.
    let liar = FaultServer::start();
    let flipped: Vec<u8> = weights.iter().map(|b| !b).collect();
    let blob = format!("/v2/fleet/voice/blobs/sha256:{}", sha256_hex(&weights));
    liar.serve(&blob, flipped);
    let card = format!(
        "/v2/fleet/card/blobs/sha256:{}",
        sha256_hex(b"# A model card\n")
    );
    liar.serve(&card, "# A model card\n");
    let mirror = format!("{}/fleet", liar.base);

    let bytes_before = origin.body_bytes();
    let run = apply_node(&project, "node", &mirror, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let notice = run
        .stderr
        .lines()
        .find(|l| l.contains("voice/voice.safetensors is not from a mirror"))
        .unwrap_or_else(|| panic!("no notice: {}", run.stderr));
    assert!(notice.contains("served other bytes"), "{notice}");
    assert!(
        notice.contains("downloading it from the origin"),
        "{notice}"
    );
    assert!(
        !run.stderr.contains("card/README.md is not from a mirror"),
        "{}",
        run.stderr
    );
    assert_eq!(liar.gets(&blob).len(), 1);
    assert_eq!(liar.gets(&card).len(), 1);
    // The origin sent the whole file again: nothing was resumed from the bad bytes.
    assert_eq!(origin.body_bytes() - bytes_before, weights.len() as u64);
    let got = std::fs::read(project.path("node/models/tts/voice/voice.safetensors")).expect("file");
    assert!(got == weights, "the bytes in place are the locked ones");
    assert_eq!(
        std::fs::read_dir(project.path("node/.modelctl/tmp"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "no partial is left"
    );
}

#[test]
fn bad_mirror_settings_are_refused_with_their_reason() {
    let (project, _origin, _) = applied_from_origin();
    let run = project.run_env(&["plan"], &[("MODELCTL_MIRROR", "http://127.0.0.1:5000")]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("MODELCTL_MIRROR"), "{}", run.stderr);
    assert!(run.stderr.contains("names no"), "{}", run.stderr);

    let manifest = project.read("models.yaml");
    project.write(
        "models.yaml",
        &manifest.replace(
            "version: 1\n",
            "version: 1\nmirrors:\n  - ftp://registry.example.com/fleet\n",
        ),
    );
    let run = project.run(&["plan"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("mirror `ftp://registry.example.com/fleet` is not REGISTRY/NAMESPACE"),
        "{}",
        run.stderr
    );

    // Mirror-only with no mirror at all stops at the plan.
    project.write("models.yaml", &manifest);
    let fresh = project.path("fresh").display().to_string();
    let run = project.run_env(
        &["plan"],
        &[
            ("MODELCTL_STORE", fresh.as_str()),
            // Another node: a store and a machine of its own.
            ("MODELCTL_NO_CACHE", "1"),
            ("MODELCTL_MIRROR_ONLY", "1"),
        ],
    );
    assert!(run.stdout.contains("no mirror is"), "{}", run.stdout);
}

#[test]
fn mirror_only_refuses_a_file_with_no_sha256_at_plan_time() {
    let origin = FaultServer::start();
    origin.serve(CARD, "# A model card\n");
    let project = Project::with_manifest(&format!(
        "version: 1\nmirrors: [\"http://127.0.0.1:9/fleet\"]\nmodels:\n  card:\n    type: llm\n    source: {{ url: \"{}\" }}\n",
        origin.url(CARD),
    ));
    let locked = project.run(&["lock"]);
    assert_eq!(locked.code, 0, "{}", locked.stderr);
    let run = project.run(&["apply", "--yes", "--mirror-only"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stdout.contains("has no sha256 in models.lock") || run.stderr.contains("has no sha256"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(origin.gets(CARD).is_empty(), "the origin was asked");
}

#[test]
fn a_mirror_behind_a_bearer_challenge_is_read_with_the_docker_login_and_no_secret_is_printed() {
    use base64::Engine as _;
    let registry = TokenRegistry::start();
    let (project, origin, weights) = applied_from_origin();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ci-bot:{SECRET}"));
    let host = registry.base.trim_start_matches("http://").to_owned();
    let login = format!(r#"{{"auths": {{"{host}": {{"auth": "{encoded}"}}}}}}"#);
    project.write(".docker/config.json", &login);
    let mirror = format!("{}/team", registry.base);
    push(&project, &["voice"], &mirror);
    let voice_gets = origin.gets(VOICE).len();

    let run = apply_node(&project, "node", &mirror, &["-vv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for text in [&run.stdout, &run.stderr] {
        assert!(
            !text.contains(SECRET) && !text.contains(&encoded) && !text.contains(TOKEN),
            "a secret printed: {text}"
        );
    }
    let blob = format!(
        "GET /v2/team/voice/blobs/sha256:{} Bearer",
        sha256_hex(&weights)
    );
    assert!(registry.log().contains(&blob), "{:?}", registry.log());
    assert_eq!(origin.gets(VOICE).len(), voice_gets, "the origin was asked");
    let got = std::fs::read(project.path("node/models/tts/voice/voice.safetensors")).expect("file");
    assert!(got == weights);

    // MODELCTL_REGISTRY_AUTH logs in to a mirror of MODELCTL_MIRROR...
    std::fs::remove_file(project.path(".docker/config.json")).expect("logout");
    let pair = format!("ci-bot:{SECRET}");
    let store = project.path("node2").display().to_string();
    let run = project.run_env(
        &["apply", "--yes"],
        &[
            ("MODELCTL_STORE", store.as_str()),
            // Another node: a store and a machine of its own.
            ("MODELCTL_NO_CACHE", "1"),
            ("MODELCTL_MIRROR", mirror.as_str()),
            ("MODELCTL_REGISTRY_AUTH", pair.as_str()),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr
            .contains("voice/voice.safetensors is not from a mirror"),
        "{}",
        run.stderr
    );
    assert_eq!(origin.gets(VOICE).len(), voice_gets, "the origin was asked");

    // ...and never to one of models.yaml, which it was not set for.
    let manifest = project.read("models.yaml");
    project.write(
        "models.yaml",
        &manifest.replace(
            "version: 1\n",
            &format!("version: 1\nmirrors: [\"{mirror}\"]\n"),
        ),
    );
    let store = project.path("node3").display().to_string();
    let run = project.run_env(
        &["apply", "--yes"],
        &[
            ("MODELCTL_STORE", store.as_str()),
            // Another node: a store and a machine of its own.
            ("MODELCTL_NO_CACHE", "1"),
            ("MODELCTL_REGISTRY_AUTH", pair.as_str()),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let notice = run
        .stderr
        .lines()
        .find(|l| l.contains("voice/voice.safetensors is not from a mirror"))
        .unwrap_or_else(|| panic!("no notice: {}", run.stderr));
    assert!(notice.contains("refused a token"), "{notice}");
    assert_eq!(origin.gets(VOICE).len(), voice_gets + 1);
}
