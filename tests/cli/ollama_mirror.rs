//! Ollama models and mirrors: with no daemon and `OLLAMA_MODELS` set, `apply` asks the mirrors
//! (a second fake Ollama registry here, serving `<ns>/<id>`) for the pinned manifest and each
//! layer before the model's registry; a layer the mirror lacks, or a mirror manifest with other
//! bytes, comes from the registry with a one-line notice; `--mirror-only` refuses instead and
//! writes no manifest; the plan shows the mirror for a direct pull, and with a daemon warns
//! that it is not mirrored (and mirror-only refuses). Against the real `docker-registry`: an
//! Ollama model pulled into `OLLAMA_MODELS` is pushed as its own manifest, applied from that
//! mirror alone into a fresh `OLLAMA_MODELS` byte for byte, and a second push uploads nothing.

use serde_json::Value;

use crate::fake_ollama::{
    BlobResponse, FakeOllama, FakeRegistry, Image, MEDIA_MODEL, MEDIA_TEMPLATE, sample_config,
    sha256_hex,
};
use crate::oci_registry::Registry;
use crate::support::{Project, Run};

/// The origin registry with `small:1b`, a mirror (empty, serving blobs itself), and a project
/// that locked the model at the origin.
struct Setup {
    origin: FakeRegistry,
    mirror: FakeRegistry,
    image: Image,
    project: Project,
}

impl Setup {
    fn new() -> Self {
        let origin = FakeRegistry::start();
        let weights: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let template = b"{{ .Prompt }}".to_vec();
        let parts = [(MEDIA_MODEL, &weights[..]), (MEDIA_TEMPLATE, &template[..])];
        let image = origin.publish("small:1b", &parts, &sample_config(&parts));
        let project = Project::with_manifest(&format!(
            "version: 1\nmodels:\n  small:\n    type: llm\n    source: {{ ollama: \"{}/library/small:1b\" }}\n",
            origin.url()
        ));
        let mirror = FakeRegistry::start();
        mirror.set_blob_response(BlobResponse::Direct);
        let setup = Self {
            origin,
            mirror,
            image,
            project,
        };
        let locked = setup.run(&["lock"], &[]);
        assert_eq!(locked.code, 0, "{}", locked.stderr);
        setup.origin.clear_requests();
        setup
    }

    /// `http://localhost:PORT/fleet`: the mirror, as `MODELCTL_MIRROR` names it.
    fn mirror_url(&self) -> String {
        format!("{}/fleet", self.mirror.url())
    }

    /// Puts the pinned manifest (or `bytes` under its digest) and every blob on the mirror.
    fn fill_mirror(&self, manifest: Option<&[u8]>) {
        let tag = format!("sha256:{}", self.image.digest);
        let bytes = manifest.unwrap_or(&self.image.manifest);
        self.mirror.publish_raw("fleet", "small", &tag, bytes);
        for blob in self.image.blobs() {
            self.mirror.add_blob(&blob.bytes);
        }
    }

    /// Runs with no daemon, `OLLAMA_MODELS` at `ollama/` and the mirror set.
    fn run(&self, args: &[&str], more: &[(&str, &str)]) -> Run {
        let dir = self.project.path("ollama").display().to_string();
        let mirror = self.mirror_url();
        let mut env = vec![
            ("OLLAMA_HOST", "127.0.0.1:9"),
            ("OLLAMA_MODELS", dir.as_str()),
            ("MODELCTL_MIRROR", mirror.as_str()),
            ("MODELCTL_HTTP_RETRIES", "2"),
            ("MODELCTL_HTTP_RETRY_BASE_MS", "10"),
        ];
        env.extend_from_slice(more);
        self.project.run_env(args, &env)
    }

    fn manifest_path(&self) -> std::path::PathBuf {
        self.project.path(&format!(
            "ollama/manifests/{}/library/small/1b",
            self.origin.host()
        ))
    }

    /// The origin's blob requests, on the registry and on its CDN.
    fn origin_blob_requests(&self) -> Vec<String> {
        let registry = self.origin.requests().into_iter();
        registry
            .chain(self.origin.cdn_requests())
            .map(|r| r.path().to_owned())
            .filter(|p| p.contains("/blobs/"))
            .collect()
    }

    /// Every blob and the manifest are in `OLLAMA_MODELS`, byte for byte.
    fn assert_pulled(&self) {
        let manifest = std::fs::read(self.manifest_path()).expect("the manifest is written");
        assert!(
            manifest == self.image.manifest,
            "the manifest is the pinned one"
        );
        for blob in self.image.blobs() {
            let path = self
                .project
                .path(&format!("ollama/blobs/sha256-{}", blob.hex()));
            let got = std::fs::read(path).expect("blob");
            assert!(got == blob.bytes, "blob {} differs", blob.hex());
        }
    }
}

fn notices(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .chain(run.stdout.lines())
        .filter(|l| l.contains("is not from a mirror"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_mirror_with_the_manifest_and_layers_serves_them_and_the_origin_sends_no_blob() {
    let s = Setup::new();
    s.fill_mirror(None);
    let run = s.run(&["apply", "--yes"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(notices(&run).is_empty(), "{}", run.stderr);
    s.assert_pulled();
    assert!(
        s.origin_blob_requests().is_empty(),
        "{:?}",
        s.origin_blob_requests()
    );
    let manifest_get = format!("/v2/fleet/small/manifests/sha256:{}", s.image.digest);
    assert!(
        s.mirror.requests().iter().any(|r| r.path() == manifest_get),
        "the manifest was asked of the mirror by its digest"
    );
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("3 from mirrors"), "{all}");
    let again = s.run(&["plan", "--detailed-exitcode"], &[]);
    assert_eq!(again.code, 0, "{}", again.stdout);
}

#[test]
fn a_layer_the_mirror_lacks_comes_from_the_origin_with_one_line() {
    let s = Setup::new();
    s.fill_mirror(None);
    let template = s.image.layer(MEDIA_TEMPLATE).expect("template").clone();
    s.mirror.remove_blob(&template.digest);
    let run = s.run(&["apply", "--yes"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let lines = notices(&run);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let expected = format!(
        "small layer sha256:{} is not from a mirror: {} does not have it; downloading it from the origin",
        &template.hex()[..12],
        s.mirror_url()
    );
    assert!(
        lines[0].contains(&expected),
        "{}\nwanted: {expected}",
        lines[0]
    );
    let from_origin = s.origin_blob_requests();
    assert!(!from_origin.is_empty());
    assert!(
        from_origin.iter().all(|p| p.contains(template.hex())),
        "only the missing layer came from the origin: {from_origin:?}"
    );
    s.assert_pulled();
}

#[test]
fn a_mirror_manifest_with_other_bytes_is_refused_and_the_origin_serves_it() {
    let s = Setup::new();
    let mut other = s.image.manifest.to_vec();
    other.push(b'\n');
    s.fill_mirror(Some(&other));
    let run = s.run(&["apply", "--yes"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let lines = notices(&run);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("small manifest sha256:{}", &s.image.digest[..12]))
            && lines[0].contains("served a manifest with other bytes")
            && lines[0].contains("downloading it from the origin"),
        "{}",
        lines[0]
    );
    assert!(
        s.origin
            .requests()
            .iter()
            .any(|r| r.path().ends_with("/library/small/manifests/1b")),
        "the origin served the manifest"
    );
    assert!(
        s.origin_blob_requests().is_empty(),
        "the layers were mirrored"
    );
    s.assert_pulled();
}

#[test]
fn mirror_only_with_a_layer_missing_fails_naming_it_and_writes_no_manifest() {
    let s = Setup::new();
    s.fill_mirror(None);
    let weights = s.image.layer(MEDIA_MODEL).expect("weights").clone();
    s.mirror.remove_blob(&weights.digest);
    let run = s.run(&["apply", "--yes", "--mirror-only"], &[]);
    assert_ne!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let named = format!("the layer {} of `small` is on no mirror", weights.digest);
    let said = format!("{} does not have it", s.mirror_url());
    for part in [
        named.as_str(),
        said.as_str(),
        "mirror-only forbids the registry",
        "help: push it from a machine that has it (`modelctl push small --to",
    ] {
        assert!(run.stderr.contains(part), "{part}: {}", run.stderr);
    }
    assert!(
        !s.manifest_path().exists(),
        "no manifest names a missing blob"
    );
    assert!(
        s.origin.requests().is_empty(),
        "mirror-only asked the origin: {:?}",
        s.origin.requests()
    );
}

#[test]
fn the_plan_shows_the_mirror_of_a_direct_pull_and_warns_a_daemon_pull_is_not_mirrored() {
    let s = Setup::new();
    let mirror = s.mirror_url();
    let plan = s.run(&["plan"], &[]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let line = plan
        .stdout
        .lines()
        .find(|l| l.contains("pull "))
        .unwrap_or_else(|| panic!("no pull: {}", plan.stdout));
    assert!(line.contains(&format!("via mirror {mirror}")), "{line}");
    let json = s.run(&["plan", "--json", "--mirror-only"], &[]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let doc: Value = serde_json::from_str(&json.stdout).expect("plan json");
    let pull = doc["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["action"] == "pull")
        .unwrap_or_else(|| panic!("no pull: {doc}"));
    assert_eq!(pull["mirrors"], serde_json::json!([mirror]), "{pull}");
    assert_eq!(doc["errors"], serde_json::json!([]), "{doc}");

    // With a daemon, the daemon pulls from its own registry.
    let daemon = FakeOllama::start();
    let host = daemon.url();
    let with_daemon = [("OLLAMA_HOST", host.as_str())];
    let plan = s.run(&["plan", "--json"], &with_daemon);
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan json");
    let warned = doc["warnings"].to_string();
    assert!(
        warned.contains("from its own registry, not a mirror; mirrors serve Ollama models only when no daemon runs"),
        "{doc}"
    );
    let pull = doc["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["action"] == "pull")
        .unwrap_or_else(|| panic!("no pull: {doc}"));
    assert!(pull.get("mirrors").is_none(), "{pull}");
    let strict = s.run(&["plan", "--mirror-only"], &with_daemon);
    assert_ne!(strict.code, 0, "{}", strict.stdout);
    let all = format!("{}{}", strict.stdout, strict.stderr);
    assert!(
        all.contains("which the Ollama daemon pulls from its own registry, not a mirror"),
        "{all}"
    );
}

#[test]
fn an_ollama_model_whose_files_are_not_here_is_refused_by_push_when_named_and_skipped_otherwise() {
    let s = Setup::new();
    let to = "http://127.0.0.1:9/fleet";
    let run = s.run(&["push", "small", "--to", to], &[]);
    assert_ne!(run.code, 0);
    // The report wraps lines at the terminal's width.
    let said = run
        .stderr
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for part in [
        "cannot push `small`",
        "whose files are not on this machine",
        "no local Ollama store has its manifest at the pinned",
    ] {
        assert!(said.contains(part), "{part}: {}", run.stderr);
    }
    let run = s.run(&["push", "--to", to, "--json"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).expect("push json");
    assert_eq!(doc["models"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["skipped"][0]["id"], "small", "{doc}");
}

#[test]
fn an_ollama_model_pushed_to_a_real_registry_is_applied_from_it_alone_byte_for_byte() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let s = Setup::new();
    let pulled = s.run(&["apply", "--yes"], &[("MODELCTL_MIRROR", "")]);
    assert_eq!(pulled.code, 0, "{}\n{}", pulled.stdout, pulled.stderr);
    s.assert_pulled();

    let mirror = format!("http://127.0.0.1:{}/fleet", registry.port);
    let push = |expect_uploaded: bool| {
        let run = s.run(&["push", "small", "--to", &mirror, "--json"], &[]);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let doc: Value = serde_json::from_str(&run.stdout).expect("push json");
        let model = &doc["models"][0];
        assert_eq!(
            model["manifest_digest"],
            format!("sha256:{}", s.image.digest),
            "the manifest keeps the pinned digest: {doc}"
        );
        let files = model["files"].as_array().expect("files");
        assert_eq!(files.len(), 3, "two layers and the config: {doc}");
        let outcomes: Vec<&str> = files.iter().filter_map(|f| f["outcome"].as_str()).collect();
        match expect_uploaded {
            true => assert!(outcomes.iter().all(|o| *o == "uploaded"), "{doc}"),
            false => {
                assert!(outcomes.iter().all(|o| *o == "present"), "{doc}");
                assert_eq!(model["uploaded_bytes"], 0, "{doc}");
            }
        }
        assert!(
            files.iter().any(|f| f["media_type"] == MEDIA_MODEL),
            "{doc}"
        );
    };
    push(true);
    push(false);

    // The registry serves the manifest by its digest, as Ollama's own media type.
    let url = registry.url(&format!(
        "/v2/fleet/small/manifests/sha256:{}",
        s.image.digest
    ));
    let (status, headers, body) =
        crate::oci_registry::send(crate::oci_registry::client().get(url).header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        ))
        .expect("get manifest");
    assert_eq!(status, 200, "{body}");
    assert_eq!(sha256_hex(body.as_bytes()), s.image.digest);
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );

    // A fresh OLLAMA_MODELS, from the mirror only: the origin is not asked anything.
    s.origin.clear_requests();
    let fresh = s.project.path("fresh").display().to_string();
    let run = s.run(
        &["apply", "--yes", "--mirror-only"],
        &[("MODELCTL_MIRROR", &mirror), ("OLLAMA_MODELS", &fresh)],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(s.origin.requests().is_empty(), "{:?}", s.origin.requests());
    let manifest = std::fs::read(s.project.path(&format!(
        "fresh/manifests/{}/library/small/1b",
        s.origin.host()
    )))
    .expect("manifest");
    assert!(
        manifest == s.image.manifest,
        "the manifest is byte-identical"
    );
    for blob in s.image.blobs() {
        let got = std::fs::read(
            s.project
                .path(&format!("fresh/blobs/sha256-{}", blob.hex())),
        )
        .expect("blob");
        assert!(got == blob.bytes, "blob {} differs", blob.hex());
    }
}
