//! `ollama` sources end to end against the fake daemon and the fake registry: pinning at the
//! registry, pulling through the daemon with the digest checked, hot-swapping the active LLM,
//! removal, a tag that moved upstream, a daemon that is down, pulling into `OLLAMA_MODELS`
//! without a daemon, and hostile manifests and auth realms (S2, T1).

use serde_json::json;

use crate::fake_ollama::{
    FakeOllama, FakeRegistry, MEDIA_MODEL, MEDIA_TEMPLATE, PullFault, sample_config, sha256_hex,
};
use crate::support::Project;

/// A small model: weights and a template.
fn layers(seed: u8) -> (Vec<u8>, Vec<u8>) {
    let weights: Vec<u8> = (0..200_000u32)
        .map(|i| (i as u8).wrapping_mul(seed))
        .collect();
    (weights, b"{{ .Prompt }}".to_vec())
}

struct Setup {
    daemon: FakeOllama,
    registry: FakeRegistry,
    project: Project,
}

impl Setup {
    /// `names` are model tags published identically to the registry and the daemon.
    fn new(names: &[(&str, u8)], yaml: &str) -> Self {
        let daemon = FakeOllama::start();
        let registry = FakeRegistry::start();
        let setup = Self {
            daemon,
            registry,
            project: Project::new(),
        };
        for (tag, seed) in names {
            setup.publish(tag, *seed);
        }
        setup.project.write("models.yaml", &setup.expand(yaml));
        setup
    }

    /// The full name of a tag in the fake registry.
    fn name(&self, tag: &str) -> String {
        format!("{}/library/{tag}", self.registry.host())
    }

    /// `{llama}` in YAML becomes the registry's `http://…/library/llama:…` reference.
    fn expand(&self, yaml: &str) -> String {
        yaml.replace("{reg}", &format!("http://{}/library", self.registry.host()))
    }

    fn publish(&self, tag: &str, seed: u8) -> String {
        let (weights, template) = layers(seed);
        let parts = [(MEDIA_MODEL, &weights[..]), (MEDIA_TEMPLATE, &template[..])];
        let config = sample_config(&parts);
        let image = self.registry.publish(&self.name(tag), &parts, &config);
        self.daemon.publish(&self.name(tag), &parts, &config);
        image.digest
    }

    fn run(&self, args: &[&str]) -> crate::support::Run {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], more: &[(&str, &str)]) -> crate::support::Run {
        let url = self.daemon.url();
        let mut env = vec![
            ("OLLAMA_HOST", url.as_str()),
            ("MODELCTL_HTTP_RETRY_BASE_MS", "10"),
        ];
        env.extend_from_slice(more);
        self.project.run_env(args, &env)
    }
}

const TWO: &str = "version: 1
models:
  small:
    type: llm
    source: { ollama: \"{reg}/small:1b\", keep_alive: 10m }
  big:
    type: llm
    source: { ollama: \"{reg}/big:8b\" }
active:
  llm: small
";

#[test]
fn apply_pins_at_the_registry_pulls_through_the_daemon_and_loads_the_active_model() {
    let s = Setup::new(&[("small:1b", 3), ("big:8b", 5)], TWO);
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    let lock = s.project.read("models.lock");
    let small = sha256_hex(
        &s.daemon
            .installed_image(&s.name("small:1b"))
            .expect("pulled")
            .manifest,
    );
    assert!(lock.contains(&format!("sha256:{small}")), "{lock}");
    assert!(
        lock.contains("application/vnd.ollama.image.model"),
        "{lock}"
    );
    assert_eq!(s.daemon.installed().len(), 2);
    let pulls: Vec<_> = s
        .daemon
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/api/pull")
        .collect();
    assert_eq!(pulls.len(), 2, "one pull per model");
    assert_eq!(
        pulls[0].json()["insecure"],
        json!(true),
        "an http:// registry"
    );

    let load = s.daemon.generate_calls();
    assert_eq!(load.len(), 1, "{load:?}");
    assert!(load[0].model.contains("small:1b"));
    assert_eq!(load[0].keep_alive, Some(json!("10m")));

    let status = s.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    let small_row = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["id"] == "small")
        .expect("small");
    assert_eq!(small_row["state"], "installed", "{rows}");
    assert_eq!(small_row["loaded"], json!(true), "{rows}");

    // Nothing to do the second time: no pull.
    s.daemon.clear_requests();
    let again = s.run(&["apply", "--yes"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(s.daemon.requests().iter().all(|r| r.path() != "/api/pull"));
}

#[test]
fn changing_the_active_llm_loads_the_new_one_and_unloads_the_old() {
    let s = Setup::new(&[("small:1b", 3), ("big:8b", 5)], TWO);
    assert_eq!(s.run(&["apply", "--yes"]).code, 0);
    s.project.write(
        "models.yaml",
        &s.expand(&TWO.replace("llm: small", "llm: big")),
    );
    let before = s.daemon.generate_calls().len();
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let calls = &s.daemon.generate_calls()[before..];
    assert_eq!(calls.len(), 2, "{calls:?}");
    let load = calls
        .iter()
        .position(|c| c.model.contains("big:8b") && c.keep_alive.is_none());
    let unload = calls
        .iter()
        .position(|c| c.model.contains("small:1b") && c.keep_alive == Some(json!(0)));
    assert!(
        matches!((load, unload), (Some(l), Some(u)) if l < u),
        "the new model is loaded before the old one is unloaded: {calls:?}"
    );
    let loaded = s.daemon.loaded();
    assert!(loaded.iter().any(|n| n.contains("big:8b")), "{loaded:?}");
    assert!(!loaded.iter().any(|n| n.contains("small:1b")), "{loaded:?}");
}

#[test]
fn a_model_removed_from_models_yaml_is_deleted_through_the_daemon() {
    let s = Setup::new(&[("small:1b", 3), ("big:8b", 5)], TWO);
    assert_eq!(s.run(&["apply", "--yes"]).code, 0);
    let only_small = "version: 1
models:
  small:
    type: llm
    source: { ollama: \"{reg}/small:1b\" }
active:
  llm: small
";
    s.project.write("models.yaml", &s.expand(only_small));
    let plan = s.run(&["plan"]);
    assert!(plan.stdout.contains("remove"), "{}", plan.stdout);
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(s.daemon.installed().len(), 1, "{:?}", s.daemon.installed());
    assert!(!s.project.path("models/models/llm/big").exists());
}

#[test]
fn a_tag_that_moved_upstream_is_refused_before_anything_is_pulled() {
    let s = Setup::new(&[("small:1b", 3), ("big:8b", 5)], TWO);
    assert_eq!(s.run(&["lock"]).code, 0);
    s.publish("big:8b", 9);
    s.daemon.clear_requests();
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("moved upstream") && all.contains("modelctl update big"),
        "{all}"
    );
    assert!(
        s.daemon.requests().iter().all(|r| r.path() != "/api/pull"),
        "nothing was pulled"
    );
}

#[test]
fn a_daemon_that_is_down_is_reported_and_never_causes_a_deletion() {
    let s = Setup::new(&[("small:1b", 3), ("big:8b", 5)], TWO);
    assert_eq!(s.run(&["apply", "--yes"]).code, 0);
    s.daemon.stop();
    let only_small = "version: 1\nmodels:\n  small:\n    type: llm\n    source: { ollama: \"{reg}/small:1b\", keep_alive: 10m }\nactive:\n  llm: small\n";
    s.project.write("models.yaml", &s.expand(only_small));
    let plan = s.run(&["plan"]);
    assert!(
        plan.stdout.contains("cannot reach the Ollama daemon")
            || plan.stderr.contains("cannot reach the Ollama daemon"),
        "{}\n{}",
        plan.stdout,
        plan.stderr
    );
    assert!(
        plan.stdout.contains("kept until the Ollama daemon"),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("delete models/llm/big"),
        "{}",
        plan.stdout
    );
    let run = s.run(&["apply", "--yes"]);
    assert!(
        s.project.path("models/models/llm/big").exists(),
        "{}",
        run.stderr
    );
}

#[test]
fn without_a_daemon_ollama_models_is_filled_from_the_registry() {
    let s = Setup::new(
        &[("small:1b", 3)],
        "version: 1\nmodels:\n  small:\n    type: llm\n    source: { ollama: \"{reg}/small:1b\" }\n",
    );
    let dir = s.project.path("ollama-models");
    let dir_text = dir.display().to_string();
    let down = "127.0.0.1:9"; // nothing listens on the discard port
    let env = [("OLLAMA_HOST", down), ("OLLAMA_MODELS", dir_text.as_str())];
    let run = s.run_with(&["apply", "--yes"], &env);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    let host = s.registry.host();
    let manifest = std::fs::read(dir.join(format!("manifests/{host}/library/small/1b")))
        .expect("the manifest is in Ollama's layout");
    let pinned = s.project.read("models.lock");
    assert!(
        pinned.contains(&sha256_hex(&manifest)),
        "the manifest file hashes to the pinned digest"
    );
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    let mut digests: Vec<String> = parsed["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_owned())
        .collect();
    digests.push(
        parsed["config"]["digest"]
            .as_str()
            .expect("config")
            .to_owned(),
    );
    for digest in digests {
        let hex = digest.trim_start_matches("sha256:");
        let blob = std::fs::read(dir.join(format!("blobs/sha256-{hex}"))).expect("blob");
        assert_eq!(sha256_hex(&blob), hex, "every blob is named by its sha256");
    }
    assert!(
        s.registry
            .cdn_requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "blobs came from the CDN on another host"
    );
    let again = s.run_with(&["plan", "--detailed-exitcode"], &env);
    assert_eq!(again.code, 0, "{}", again.stdout);
}

#[test]
fn a_hostile_manifest_is_refused_before_any_blob_is_fetched() {
    let s = Setup::new(
        &[],
        "version: 1\nmodels:\n  evil:\n    type: llm\n    source: { ollama: \"{reg}/evil:1\" }\n",
    );
    let manifest = json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": format!("sha256:{}", "a".repeat(64)), "size": 10},
        "layers": [{"mediaType": "application/vnd.ollama.image.model",
                    "digest": "sha256:../../../../etc/passwd", "size": 10}]
    });
    s.registry
        .publish_raw("library", "evil", "1", manifest.to_string().as_bytes());
    let run = s.run(&["lock"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("refused"), "{}", run.stderr);
    assert!(s.registry.cdn_requests().is_empty());
    assert!(
        s.registry
            .requests()
            .iter()
            .all(|r| !r.path().contains("/blobs/")),
        "no blob was asked for"
    );
}

#[test]
fn an_auth_realm_on_another_host_is_refused() {
    let s = Setup::new(
        &[("small:1b", 3)],
        "version: 1\nmodels:\n  small:\n    type: llm\n    source: { ollama: \"{reg}/small:1b\" }\n",
    );
    s.registry.require_auth();
    s.registry.set_realm("http://127.0.0.1:9/token");
    let run = s.run(&["lock"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("another host"), "{}", run.stderr);

    // Its own realm is fine.
    let s = Setup::new(
        &[("small:1b", 3)],
        "version: 1\nmodels:\n  small:\n    type: llm\n    source: { ollama: \"{reg}/small:1b\" }\n",
    );
    s.registry.require_auth();
    let run = s.run(&["lock"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(s.registry.tokens_issued().len(), 1);
}

#[test]
fn an_error_line_in_the_pull_stream_fails_the_model_and_records_nothing() {
    let s = Setup::new(&[("small:1b", 3), ("big:8b", 5)], TWO);
    s.daemon
        .fail_pull(&s.name("big:8b"), PullFault::DigestMismatch, 1);
    let run = s.run(&["apply", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("big") && run.stderr.contains("digest mismatch"),
        "{}",
        run.stderr
    );
    assert!(!s.project.path("models/models/llm/big/ollama.json").exists());
    assert!(
        s.project
            .path("models/models/llm/small/ollama.json")
            .exists(),
        "the other model is not held back"
    );
    let retry = s.run(&["apply", "--yes"]);
    assert_eq!(retry.code, 0, "{}", retry.stderr);
}

#[test]
fn show_tells_the_pin_the_daemon_s_view_and_whether_the_machine_fits() {
    let yaml = TWO.replace(
        "source: { ollama: \"{reg}/small:1b\", keep_alive: 10m }",
        "source: { ollama: \"{reg}/small:1b\", keep_alive: 10m }\n    requires: { gpu_memory: 8GiB }",
    );
    let s = Setup::new(&[("small:1b", 3), ("big:8b", 5)], &yaml);
    assert_eq!(s.run(&["apply", "--yes"]).code, 0);
    let run = s.run(&["show", "small", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shown: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(shown["active"], json!(true), "{shown}");
    assert!(
        shown["pinned"]
            .as_str()
            .expect("pin")
            .starts_with("manifest sha256:")
    );
    assert_eq!(shown["ollama"]["loaded"], json!(true), "{shown}");
    assert!(shown["ollama"]["details"].is_object(), "{shown}");
    assert!(
        shown["files"]
            .as_array()
            .expect("files")
            .iter()
            .all(|f| f["present"] == json!(true)),
        "{shown}"
    );
    let reasons = shown["compatibility"]["reasons"].to_string();
    assert!(reasons.contains("needs 8.0 GiB of GPU memory"), "{reasons}");
    let text = s.run(&["show", "small"]);
    assert!(text.stdout.contains("ollama:   loaded"), "{}", text.stdout);
    let missing = s.run(&["show", "smal"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("did you mean `small`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn a_registry_that_wants_a_token_gets_it_for_blobs_too_but_its_cdn_does_not() {
    let s = Setup::new(
        &[("small:1b", 3)],
        "version: 1\nmodels:\n  small:\n    type: llm\n    source: { ollama: \"{reg}/small:1b\" }\n",
    );
    s.registry.require_auth();
    let dir = s.project.path("ollama-models");
    let dir_text = dir.display().to_string();
    let env = [
        ("OLLAMA_HOST", "127.0.0.1:9"),
        ("OLLAMA_MODELS", dir_text.as_str()),
    ];
    let run = s.run_with(&["apply", "--yes"], &env);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let blob_requests: Vec<_> = s
        .registry
        .requests()
        .into_iter()
        .filter(|r| r.path().contains("/blobs/"))
        .collect();
    assert!(!blob_requests.is_empty());
    assert!(
        blob_requests
            .iter()
            .all(|r| r.header("authorization").is_some())
    );
    assert!(
        s.registry
            .cdn_requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "the token stays with the registry"
    );
    let token = s.registry.tokens_issued().pop().expect("a token");
    assert!(!run.stderr.contains(&token) && !run.stdout.contains(&token));
}

#[test]
fn a_manifest_answered_503_is_retried_through_the_shared_client() {
    let setup = Setup::new(&[("small:1b", 3), ("big:8b", 4)], TWO);
    setup.registry.fail_manifests(503, 2);
    let run = setup.run(&["lock"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lock = setup.project.read("models.lock");
    assert!(
        lock.contains("small:1b") && lock.contains("big:8b"),
        "{lock}"
    );
    let manifests = setup
        .registry
        .requests()
        .iter()
        .filter(|r| r.path().contains("/manifests/"))
        .count();
    assert_eq!(manifests, 4, "two 503s retried, then one answer per model");
}
