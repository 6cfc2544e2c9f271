//! The fake Ollama daemon and registry against a plain HTTP client: they speak docs/protocols.md
//! sections 2 and 3 as the tests of the Ollama source will rely on (the pull stream and its
//! errors, tags, delete, show, ps, load and unload, names, the registry's manifests, blobs,
//! redirect to another hostname, ranges, auth, hostile manifests, faults, the request logs).

use reqwest::Method;
use serde_json::{Value, json};

use crate::fake_blob::BlobFaults;
use crate::fake_ollama::{
    BlobResponse, FakeOllama, FakeRegistry, GenerateCall, Image, MEDIA_CONFIG, MEDIA_LICENSE,
    MEDIA_MANIFEST, MEDIA_MODEL, MEDIA_PARAMS, MEDIA_SYSTEM, MEDIA_TEMPLATE, ModelName, PullFault,
    sample_config, sha256_hex,
};
use crate::raw_client::{Client, Reply};

const TEMPLATE: &[u8] = b"{{ .Prompt }}";
const LICENSE: &[u8] = b"FAKE LICENSE\n";
const PARAMS: &[u8] = br#"{"stop":["<|eot_id|>"],"num_keep":24}"#;

/// Weights, template, license and params, as the layers of an Ollama image.
fn layers(weights: &[u8]) -> Vec<(&'static str, &[u8])> {
    vec![
        (MEDIA_MODEL, weights),
        (MEDIA_TEMPLATE, TEMPLATE),
        (MEDIA_LICENSE, LICENSE),
        (MEDIA_PARAMS, PARAMS),
    ]
}

fn publish(daemon: &FakeOllama, name: &str, weights: &[u8]) -> Image {
    let layers = layers(weights);
    daemon.publish(name, &layers, &sample_config(&layers))
}

fn pull(client: &Client, daemon: &FakeOllama, model: &str) -> Reply {
    client.post(
        &format!("{}/api/pull", daemon.url()),
        &json!({ "model": model }),
    )
}

fn statuses(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["status"].as_str().unwrap_or("<no status>").to_owned())
        .collect()
}

#[test]
fn names_are_normalised_as_ollama_does() {
    let short = ModelName::parse("llama3").expect("valid");
    assert_eq!(short.full(), "registry.ollama.ai/library/llama3:latest");
    assert_eq!(short.display_shortest(), "llama3:latest");
    let same = ModelName::parse("registry.ollama.ai/library/llama3:latest").expect("valid");
    assert_eq!(same, short);
    assert_eq!(
        ModelName::parse("user/m")
            .expect("valid")
            .display_shortest(),
        "user/m:latest"
    );
    let hosted = ModelName::parse("localhost:5000/ns/m:v1").expect("valid");
    assert_eq!(
        (
            hosted.host.as_str(),
            hosted.namespace.as_str(),
            hosted.tag.as_str()
        ),
        ("localhost:5000", "ns", "v1")
    );
    assert_eq!(hosted.display_shortest(), "localhost:5000/ns/m:v1");
    assert_eq!(
        ModelName::parse("https://example.com/ns/m:t")
            .expect("valid")
            .host,
        "example.com"
    );
    for bad in [
        "",
        "a/b/c/d",
        "-x",
        "ns.dot/m",
        "m:",
        "m:-t",
        "bad name",
        &"x".repeat(81),
    ] {
        assert!(ModelName::parse(bad).is_none(), "{bad:?} should be invalid");
    }
}

#[test]
fn version_root_and_blobs() {
    let daemon = FakeOllama::start();
    let client = Client::new();
    let root = client.get(&daemon.url());
    assert_eq!(
        (root.status, root.text().as_str()),
        (200, "Ollama is running")
    );
    let head = client.send(Method::HEAD, &daemon.url(), &[], None);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        client.get(&format!("{}/api/version", daemon.url())).json(),
        json!({"version": crate::fake_ollama::DEFAULT_VERSION})
    );
    daemon.set_version("9.9.9");
    assert_eq!(
        client.get(&format!("{}/api/version", daemon.url())).json()["version"],
        "9.9.9"
    );
    let image = daemon.install("m:1", &layers(b"weights"), b"{}");
    let blob = |digest: &str| {
        client
            .send(
                Method::HEAD,
                &format!("{}/api/blobs/{digest}", daemon.url()),
                &[],
                None,
            )
            .status
    };
    assert_eq!(blob(&image.layers[0].digest), 200);
    assert_eq!(blob(&image.layers[0].digest.replace(':', "-")), 200);
    assert_eq!(blob(&format!("sha256:{}", "0".repeat(64))), 404);
    assert_eq!(
        client.get(&format!("{}/api/nothing", daemon.url())).status,
        404
    );
}

#[test]
fn pull_streams_the_exact_sequence() {
    let daemon = FakeOllama::start();
    let weights = crate::faults::pseudo_random(30_000, 1);
    let image = publish(&daemon, "llama3:8b", &weights);
    let client = Client::new();

    let reply = pull(&client, &daemon, "llama3:8b");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    assert!(reply.complete);
    let lines = reply.lines();
    assert_eq!(lines[0], json!({"status": "pulling manifest"}));
    let mut rest = &lines[1..];
    // Every blob, layers then config: a first line without `completed`, progress, the end.
    for blob in image.blobs() {
        let status = format!("pulling {}", &blob.hex()[..12]);
        let count = rest.iter().take_while(|l| l["status"] == status).count();
        assert!(count >= 3, "several lines for {status}: {lines:?}");
        let mine = &rest[..count];
        assert_eq!(
            mine[0],
            json!({"status": status, "digest": blob.digest, "total": blob.size()})
        );
        let completed: Vec<u64> = mine[1..]
            .iter()
            .map(|l| l["completed"].as_u64().expect("completed"))
            .collect();
        assert!(completed.windows(2).all(|w| w[0] < w[1]), "{completed:?}");
        assert_eq!(completed.last(), Some(&blob.size()));
        assert!(mine.iter().all(|l| l["total"] == blob.size()));
        rest = &rest[count..];
    }
    assert_eq!(
        statuses(rest),
        ["verifying sha256 digest", "writing manifest", "success"]
    );

    // Installed: tags shows it with the manifest's digest and the size of all blobs.
    assert_eq!(daemon.installed(), ["llama3:8b"]);
    assert_eq!(daemon.installed_image("llama3:8b").as_ref(), Some(&image));
    let tags = client.get(&format!("{}/api/tags", daemon.url())).json();
    let entry = &tags["models"][0];
    assert_eq!(entry["name"], "llama3:8b");
    assert_eq!(entry["model"], "llama3:8b");
    assert_eq!(entry["digest"], sha256_hex(&image.manifest));
    assert_eq!(entry["digest"], image.digest.as_str());
    assert_eq!(
        entry["size"],
        weights.len()
            + TEMPLATE.len()
            + LICENSE.len()
            + PARAMS.len()
            + image.config.size() as usize
    );
    assert!(entry["modified_at"].as_str().expect("time").ends_with('Z'));
    assert_eq!(
        entry["details"],
        json!({"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
               "parameter_size": "8.0B", "quantization_level": "Q4_0"})
    );

    // The manifest is section 3.2's, in its key order.
    let manifest: Value = serde_json::from_slice(&image.manifest).expect("manifest json");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MEDIA_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], MEDIA_CONFIG);
    assert_eq!(
        manifest["layers"][0]["digest"],
        format!("sha256:{}", sha256_hex(&weights))
    );
    assert_eq!(manifest["layers"][0]["size"], weights.len());
    assert!(
        image
            .manifest
            .starts_with(b"{\"schemaVersion\":2,\"mediaType\"")
    );

    // Pulled again: every blob is present, one line each with total == completed.
    let again = pull(&client, &daemon, "llama3:8b").lines();
    assert_eq!(again.len(), 1 + image.blobs().count() + 3);
    for (line, blob) in again[1..].iter().zip(image.blobs()) {
        assert_eq!(line["total"], blob.size());
        assert_eq!(line["completed"], blob.size());
    }
}

#[test]
fn an_upstream_update_downloads_the_new_blob_and_prunes_the_old() {
    let daemon = FakeOllama::start();
    let old = publish(&daemon, "llama3:8b", b"old weights");
    let client = Client::new();
    assert_eq!(
        statuses(&pull(&client, &daemon, "llama3:8b").lines())
            .last()
            .map(String::as_str),
        Some("success")
    );
    let new = publish(&daemon, "llama3:8b", b"new weights!");
    assert_ne!(old.digest, new.digest);
    let lines = pull(&client, &daemon, "llama3:8b").lines();
    let weights = format!("pulling {}", &new.layers[0].hex()[..12]);
    assert!(statuses(&lines).iter().filter(|s| **s == weights).count() >= 3);
    // The template is unchanged: present, a single line.
    let template = format!("pulling {}", &new.layers[1].hex()[..12]);
    assert_eq!(
        statuses(&lines).iter().filter(|s| **s == template).count(),
        1
    );
    assert_eq!(
        statuses(&lines)[lines.len() - 4..],
        [
            "verifying sha256 digest",
            "writing manifest",
            "removing unused layers",
            "success"
        ]
    );
    assert_eq!(daemon.installed_image("llama3:8b"), Some(new));
}

#[test]
fn pull_errors_and_stream_false() {
    let daemon = FakeOllama::start();
    publish(&daemon, "llama3:8b", b"weights");
    let client = Client::new();
    let url = format!("{}/api/pull", daemon.url());

    // stream: false → the last object only.
    let quiet = client.post(&url, &json!({"model": "llama3:8b", "stream": false}));
    assert_eq!(
        (quiet.status, quiet.json()),
        (200, json!({"status": "success"}))
    );
    assert_eq!(
        quiet.header("content-type"),
        Some("application/json; charset=utf-8")
    );

    // An unknown tag: an error line after `pulling manifest`, status 200.
    let unknown = pull(&client, &daemon, "llama3:70b");
    assert_eq!(unknown.status, 200);
    assert_eq!(
        unknown.lines(),
        [
            json!({"status": "pulling manifest"}),
            json!({"error": "pull model manifest: file does not exist"})
        ]
    );
    let quiet = client.post(&url, &json!({"model": "nope", "stream": false}));
    assert_eq!(
        (quiet.status, quiet.json()),
        (
            500,
            json!({"error": "pull model manifest: file does not exist"})
        )
    );

    // The deprecated `name` is accepted; a bad name and no body are 400.
    let by_name = client.post(&url, &json!({"name": "llama3:8b", "stream": false}));
    assert_eq!(by_name.status, 200);
    let bad = client.post(&url, &json!({"model": "bad name!"}));
    assert_eq!(
        (bad.status, bad.json()),
        (400, json!({"error": "invalid model name"}))
    );
    let empty = client.send(Method::POST, &url, &[], None);
    assert_eq!(
        (empty.status, empty.json()),
        (400, json!({"error": "missing request body"}))
    );

    // The request log keeps the bodies.
    let pulls: Vec<Value> = daemon
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path() == "/api/pull")
        .map(|r| r.json())
        .collect();
    assert_eq!(pulls[0], json!({"model": "llama3:8b", "stream": false}));
    daemon.clear_requests();
    assert!(daemon.requests().is_empty());
}

#[test]
fn names_match_as_in_ollama() {
    let daemon = FakeOllama::start();
    publish(&daemon, "llama3", b"weights");
    let client = Client::new();
    let done = client.post(
        &format!("{}/api/pull", daemon.url()),
        &json!({"model": "Registry.Ollama.AI/library/LLAMA3:latest", "stream": false}),
    );
    assert_eq!(done.json(), json!({"status": "success"}));
    assert_eq!(daemon.installed(), ["llama3:latest"]);
    let show = client.post(
        &format!("{}/api/show", daemon.url()),
        &json!({"model": "llama3"}),
    );
    assert_eq!(show.status, 200);
    let delete = client.send(
        Method::DELETE,
        &format!("{}/api/delete", daemon.url()),
        &[],
        Some(json!({"model": "llama3:LATEST"}).to_string()),
    );
    assert_eq!(delete.status, 200);
    assert!(daemon.installed().is_empty());
    daemon.unpublish("llama3:latest");
    assert_eq!(
        pull(&client, &daemon, "llama3").lines()[1]["error"],
        "pull model manifest: file does not exist"
    );
}

#[test]
fn delete_answers_as_ollama() {
    let daemon = FakeOllama::start();
    daemon.install("user/m:1", &layers(b"w"), b"{}");
    let client = Client::new();
    let url = format!("{}/api/delete", daemon.url());
    let delete =
        |body: Option<Value>| client.send(Method::DELETE, &url, &[], body.map(|b| b.to_string()));
    let gone = delete(Some(json!({"model": "user/m:1"})));
    assert_eq!((gone.status, gone.body.len()), (200, 0));
    let again = delete(Some(json!({"model": "user/m:1"})));
    assert_eq!(
        (again.status, again.json()),
        (404, json!({"error": "model 'user/m:1' not found"}))
    );
    let none = delete(None);
    assert_eq!(
        (none.status, none.json()),
        (400, json!({"error": "missing request body"}))
    );
}

#[test]
fn show_describes_an_installed_model() {
    let daemon = FakeOllama::start();
    let mut with_system = layers(b"weights");
    with_system.push((MEDIA_SYSTEM, b"be brief"));
    let image = daemon.install("llama3:8b", &with_system, &sample_config(&with_system));
    let client = Client::new();
    let url = format!("{}/api/show", daemon.url());
    let show = client.post(&url, &json!({"model": "llama3:8b"}));
    assert_eq!(show.status, 200);
    let show = show.json();
    assert_eq!(show["template"], "{{ .Prompt }}");
    assert_eq!(show["license"], "FAKE LICENSE\n");
    assert_eq!(show["system"], "be brief");
    assert_eq!(show["details"]["family"], "llama");
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    assert_eq!(show["capabilities"], json!(["completion"]));
    let parameters = show["parameters"].as_str().expect("parameters");
    assert!(parameters.contains("stop") && parameters.contains("\"<|eot_id|>\""));
    let modelfile = show["modelfile"].as_str().expect("modelfile");
    assert!(modelfile.contains(&format!(
        "FROM /root/.ollama/models/blobs/sha256-{}",
        image.layers[0].hex()
    )));
    assert!(modelfile.contains("# FROM llama3:8b"));
    assert!(show["modified_at"].is_string());
    let missing = client.post(&url, &json!({"model": "other"}));
    assert_eq!(
        (missing.status, missing.json()),
        (404, json!({"error": "model 'other' not found"}))
    );
    let blank = client.post(&url, &json!({}));
    assert_eq!(blank.status, 400);
}

#[test]
fn generate_loads_and_unloads_and_ps_shows_it() {
    let daemon = FakeOllama::start();
    let image = daemon.install("llama3:8b", &layers(b"weights"), b"{}");
    daemon.install("other:1", &layers(b"other"), b"{}");
    let client = Client::new();
    let url = format!("{}/api/generate", daemon.url());
    let ps = || client.get(&format!("{}/api/ps", daemon.url())).json()["models"].clone();
    assert_eq!(ps(), json!([]));

    let load = client.post(&url, &json!({"model": "llama3:8b"})).json();
    assert_eq!(load["model"], "llama3:8b");
    assert_eq!(load["done"], true);
    assert_eq!(load["done_reason"], "load");
    assert_eq!(load["response"], "");
    assert!(load["created_at"].is_string());
    let loaded = ps();
    assert_eq!(loaded[0]["name"], "llama3:8b");
    assert_eq!(loaded[0]["digest"], image.digest.as_str());
    assert_eq!(loaded[0]["size_vram"], image.size());
    assert!(
        loaded[0]["expires_at"]
            .as_str()
            .expect("expires_at")
            .ends_with('Z')
    );

    // Longer keep-alive sorts first; a negative one is forever.
    let forever = client.post(&url, &json!({"model": "other:1", "keep_alive": -1}));
    assert_eq!(forever.status, 200);
    assert_eq!(ps()[0]["name"], "other:1");
    assert_eq!(daemon.loaded(), ["llama3:8b", "other:1"]);

    let unload = client
        .post(&url, &json!({"model": "llama3:8b", "keep_alive": 0}))
        .json();
    assert_eq!(unload["done_reason"], "unload");
    let unload = client
        .post(&url, &json!({"model": "other:1", "keep_alive": "0s"}))
        .json();
    assert_eq!(unload["done_reason"], "unload");
    assert_eq!(ps(), json!([]));
    assert_eq!(
        daemon.generate_calls(),
        [
            GenerateCall {
                model: "llama3:8b".into(),
                keep_alive: None
            },
            GenerateCall {
                model: "other:1".into(),
                keep_alive: Some(json!(-1))
            },
            GenerateCall {
                model: "llama3:8b".into(),
                keep_alive: Some(json!(0))
            },
            GenerateCall {
                model: "other:1".into(),
                keep_alive: Some(json!("0s"))
            },
        ]
    );

    let unknown = client.post(&url, &json!({"model": "nope"}));
    assert_eq!(
        (unknown.status, unknown.json()),
        (404, json!({"error": "model 'nope' not found"}))
    );
    let bad = client.post(
        &url,
        &json!({"model": "llama3:8b", "keep_alive": "5 minutes"}),
    );
    assert_eq!(bad.status, 400);

    // A load set up by the test; an expired keep-alive leaves ps; deleting leaves ps.
    daemon.load("llama3:8b", std::time::Duration::from_secs(60));
    client.post(&url, &json!({"model": "other:1", "keep_alive": "1ms"}));
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(daemon.loaded(), ["llama3:8b"]);
    client.send(
        Method::DELETE,
        &format!("{}/api/delete", daemon.url()),
        &[],
        Some(json!({"model": "llama3:8b"}).to_string()),
    );
    assert_eq!(ps(), json!([]));
}

#[test]
fn pull_faults() {
    let daemon = FakeOllama::start();
    let image = publish(
        &daemon,
        "llama3:8b",
        &crate::faults::pseudo_random(9_000, 2),
    );
    let client = Client::new();

    daemon.fail_pull("llama3:8b", PullFault::DigestMismatch, 1);
    let lines = pull(&client, &daemon, "llama3:8b").lines();
    let n = lines.len();
    assert_eq!(lines[n - 2], json!({"status": "verifying sha256 digest"}));
    let error = lines[n - 1]["error"].as_str().expect("an error line");
    assert!(
        error.starts_with(&format!(
            "digest mismatch, file must be downloaded again: want {}, got sha256:",
            image.layers[0].digest
        )),
        "{error}"
    );
    assert!(daemon.installed().is_empty());

    daemon.fail_pull(
        "llama3:8b",
        PullFault::ErrorMidway("max retries exceeded".into()),
        1,
    );
    let lines = pull(&client, &daemon, "llama3:8b").lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[2]["completed"].as_u64().expect("partial") < image.layers[0].size());
    assert_eq!(lines[3], json!({"error": "max retries exceeded"}));

    daemon.fail_pull("llama3:8b", PullFault::CutMidway, 2);
    let cut = pull(&client, &daemon, "llama3:8b");
    assert!(!cut.complete);
    assert_eq!(cut.lines().len(), 3);
    let quiet = client.try_send(
        Method::POST,
        &format!("{}/api/pull", daemon.url()),
        &[],
        Some(json!({"model": "llama3:8b", "stream": false}).to_string()),
    );
    assert!(quiet.is_err() || !quiet.expect("reply").complete);
    assert!(daemon.installed().is_empty());

    // The faults are used up.
    assert_eq!(
        statuses(&pull(&client, &daemon, "llama3:8b").lines())
            .last()
            .map(String::as_str),
        Some("success")
    );
}

#[test]
fn a_slow_pull_installs_only_at_the_end_and_a_stopped_daemon_refuses() {
    let daemon = FakeOllama::start();
    publish(&daemon, "llama3:8b", b"weights");
    daemon.set_pull_delay(std::time::Duration::from_millis(30));
    let client = Client::new();
    let http = client.http.clone();
    let url = format!("{}/api/pull", daemon.url());
    client.runtime.block_on(async {
        let mut response = http
            .post(&url)
            .body(json!({"model": "llama3:8b"}).to_string())
            .send()
            .await
            .expect("response");
        let first = response.chunk().await.expect("a chunk").expect("a line");
        assert_eq!(&first[..], b"{\"status\":\"pulling manifest\"}\n");
        assert!(daemon.installed().is_empty());
        while response.chunk().await.expect("a chunk").is_some() {}
    });
    assert_eq!(daemon.installed(), ["llama3:8b"]);

    daemon.stop();
    assert!(
        client
            .try_send(Method::GET, &daemon.url(), &[], None)
            .is_err()
    );
    assert_eq!(daemon.installed(), ["llama3:8b"]);
}

#[test]
fn daemon_and_registry_build_the_same_manifest_from_the_same_layers() {
    let daemon = FakeOllama::start();
    let registry = FakeRegistry::start();
    let a = publish(&daemon, "llama3:8b", b"w");
    let layers = layers(b"w");
    let b = registry.publish("llama3:8b", &layers, &sample_config(&layers));
    assert_eq!(a, b);
    assert_eq!(a.digest, sha256_hex(&a.manifest));
    assert_eq!(a.layer(MEDIA_LICENSE).map(|l| &l.bytes[..]), Some(LICENSE));
    assert_eq!(
        Image::build(&layers, b"{}").manifest,
        Image::build(&layers, b"{}").manifest
    );
}

/// A registry serving `llama3:8b` with 100 kB of weights.
fn registry_with_model() -> (FakeRegistry, Image) {
    let registry = FakeRegistry::start();
    let weights = crate::faults::pseudo_random(100_000, 3);
    let layers = layers(&weights);
    let image = registry.publish("llama3:8b", &layers, &sample_config(&layers));
    (registry, image)
}

#[test]
fn registry_serves_manifests_and_redirects_blobs_to_another_hostname() {
    let (registry, image) = registry_with_model();
    let client = Client::new();
    assert!(registry.url().starts_with("http://localhost:"));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    assert!(registry.cdn_url().starts_with("http://127.0.0.1:"));

    let url = registry.manifest_url("llama3:8b");
    assert_eq!(
        url,
        format!("{}/v2/library/llama3/manifests/8b", registry.url())
    );
    let manifest = client.get_with(&url, &[("accept", MEDIA_MANIFEST)]);
    assert_eq!(manifest.status, 200);
    assert_eq!(manifest.body, image.manifest);
    assert_eq!(manifest.header("content-type"), Some(MEDIA_MANIFEST));
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(format!("sha256:{}", image.digest).as_str())
    );
    let missing = client.get(&registry.manifest_url("llama3:70b"));
    assert_eq!(
        (missing.status, missing.json()),
        (
            404,
            json!({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
        )
    );

    let weights = &image.layers[0];
    let blob_url = registry.blob_url("llama3:8b", &weights.digest);
    let head = client.send(Method::HEAD, &blob_url, &[], None);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("100000"));
    let redirect = client.get(&blob_url);
    assert_eq!(redirect.status, 307);
    let location = redirect.header("location").expect("location").to_owned();
    assert!(location.starts_with(&registry.cdn_url()), "{location}");
    assert_eq!(registry.bytes_sent(), 0);

    // The CDN: whole, ranged (206), past the end (416).
    let whole = client.get(&location);
    assert_eq!((whole.status, &whole.body[..]), (200, &weights.bytes[..]));
    let part = client.get_with(&location, &[("range", "bytes=10-19")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/100000"));
    assert_eq!(&part.body[..], &weights.bytes[10..20]);
    let tail = client.get_with(&location, &[("range", "bytes=99990-")]);
    assert_eq!((tail.status, tail.body.len()), (206, 10));
    let past = client.get_with(&location, &[("range", "bytes=100000-")]);
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */100000"));
    assert_eq!(registry.cdn_bytes_sent(), 100_000 + 10 + 10);

    let logged = registry.requests();
    assert_eq!(logged[0].header("accept"), Some(MEDIA_MANIFEST));
    assert_eq!(logged[0].path(), "/v2/library/llama3/manifests/8b");
    assert_eq!(
        registry.cdn_requests()[1].header("range"),
        Some("bytes=10-19")
    );
    registry.clear_requests();
    assert!(registry.requests().is_empty() && registry.cdn_requests().is_empty());

    // Unknown and malformed digests.
    let unknown =
        client.get(&registry.blob_url("llama3:8b", &format!("sha256:{}", "a".repeat(64))));
    assert_eq!(unknown.json()["errors"][0]["code"], "BLOB_UNKNOWN");
    let short = client.get(&registry.blob_url("llama3:8b", &format!("sha256:{}", "a".repeat(63))));
    assert_eq!(
        (short.status, short.json()["errors"][0]["code"].clone()),
        (400, json!("DIGEST_INVALID"))
    );
    registry.remove_blob(&weights.digest);
    assert_eq!(client.get(&blob_url).status, 404);
}

#[test]
fn registry_blob_response_shapes() {
    let (registry, image) = registry_with_model();
    let client = Client::new();
    let blob_url = registry.blob_url("llama3:8b", &image.layers[1].digest);
    registry.set_blob_response(BlobResponse::Found302);
    assert_eq!(client.get(&blob_url).status, 302);
    registry.set_blob_response(BlobResponse::OkWithLocation);
    let ok = client.get(&blob_url);
    assert_eq!((ok.status, ok.body.len()), (200, 0));
    assert!(
        ok.header("location")
            .expect("location")
            .starts_with(&registry.cdn_url())
    );
    registry.set_blob_response(BlobResponse::Direct);
    let direct = client.get_with(&blob_url, &[("range", "bytes=0-3")]);
    assert_eq!((direct.status, &direct.body[..]), (206, &TEMPLATE[..4]));
    assert_eq!(registry.bytes_sent(), 4);
    registry.set_blob_response(BlobResponse::Redirect307);
    assert_eq!(client.get(&blob_url).status, 307);
}

#[test]
fn registry_auth_challenge_and_token() {
    let (registry, image) = registry_with_model();
    registry.require_auth();
    let client = Client::new();
    let url = registry.manifest_url("llama3:8b");
    let denied = client.get(&url);
    assert_eq!(denied.status, 401);
    let challenge = denied
        .header("www-authenticate")
        .expect("challenge")
        .to_owned();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"{}/token\",service=\"ollama.com\",scope=\"repository:library/llama3:pull\"",
            registry.url()
        )
    );
    let token = client
        .get(&format!(
            "{}/token?service=ollama.com&scope=repository%3Alibrary%2Fllama3%3Apull",
            registry.url()
        ))
        .json()["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(registry.tokens_issued(), std::slice::from_ref(&token));
    let bearer = format!("Bearer {token}");
    let manifest = client.get_with(&url, &[("authorization", &bearer)]);
    assert_eq!(
        (manifest.status, &manifest.body[..]),
        (200, &image.manifest[..])
    );
    let blob = client.get_with(
        &registry.blob_url("llama3:8b", &image.layers[0].digest),
        &[("authorization", &bearer)],
    );
    assert_eq!(blob.status, 307);
    // A token is good for its scope only; a wrong service gets none.
    let other = client.get_with(
        &registry.manifest_url("user/m:1"),
        &[("authorization", &bearer)],
    );
    assert_eq!(other.status, 401);
    let wrong = client.get(&format!(
        "{}/token?service=x&scope=repository:library/llama3:pull",
        registry.url()
    ));
    assert_eq!(wrong.status, 400);

    // A realm on another host is announced as set.
    registry.set_realm("http://evil.example:1/token");
    let moved = client.get(&url);
    assert!(
        moved
            .header("www-authenticate")
            .expect("challenge")
            .starts_with("Bearer realm=\"http://evil.example:1/token\",")
    );
}

#[test]
fn hostile_manifests_are_served_verbatim() {
    let registry = FakeRegistry::start();
    let client = Client::new();
    let blob = registry.add_blob(b"real bytes");
    assert_eq!(blob, format!("sha256:{}", sha256_hex(b"real bytes")));
    let hostile = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MEDIA_MANIFEST}","config":{{"mediaType":"{MEDIA_CONFIG}","digest":"{blob}","size":10}},"layers":[{{"mediaType":"{MEDIA_MODEL}","digest":"sha256:../../../etc/ld.so.preload","size":-1}},{{"mediaType":"{MEDIA_MODEL}","digest":"sha256:{}","size":9223372036854775808}}]}}"#,
        "a".repeat(63)
    );
    let digest = registry.publish_raw("library", "evil", "latest", hostile.as_bytes());
    let served = client.get(&registry.manifest_url("evil"));
    assert_eq!(served.status, 200);
    assert_eq!(served.body, hostile.as_bytes());
    assert_eq!(
        served.header("docker-content-digest"),
        Some(format!("sha256:{digest}").as_str())
    );
    let garbage = registry.publish_raw("library", "junk", "1", b"\x00not json");
    assert_eq!(garbage, sha256_hex(b"\x00not json"));
    assert_eq!(
        client.get(&registry.manifest_url("junk:1")).body,
        b"\x00not json"
    );
}

#[test]
fn registry_faults() {
    let (registry, image) = registry_with_model();
    let client = Client::new();
    let weights = &image.layers[0];
    let location = client
        .get(&registry.blob_url("llama3:8b", &weights.digest))
        .header("location")
        .expect("location")
        .to_owned();

    registry.corrupt_byte(&weights.digest);
    let corrupt = client.get(&location);
    assert_eq!(corrupt.body.len(), weights.bytes.len());
    assert_ne!(sha256_hex(&corrupt.body), weights.hex());
    let before = client.get_with(&location, &[("range", "bytes=0-99")]);
    assert_eq!(&before.body[..], &weights.bytes[..100]);
    registry.heal(weights.hex());

    registry.cut_after(&weights.digest, 70_000, 1);
    let cut = client.get(&location);
    assert!(!cut.complete);
    assert!(cut.body.len() < weights.bytes.len());
    let whole = client.get(&location);
    assert!(whole.complete);
    assert_eq!(sha256_hex(&whole.body), weights.hex());

    registry.ignore_range(&weights.digest);
    let ignored = client.get_with(&location, &[("range", "bytes=10-19")]);
    assert_eq!(
        (ignored.status, ignored.body.len()),
        (200, weights.bytes.len())
    );
    registry.heal(&weights.digest);
    assert_eq!(
        client
            .get_with(&location, &[("range", "bytes=10-19")])
            .status,
        206
    );
    assert!(
        registry
            .cdn_requests()
            .iter()
            .all(|r| r.header("authorization").is_none() && r.body.is_empty())
    );
}
