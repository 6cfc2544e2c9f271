//! The API's changes beyond activation: background downloads with operation ids and their
//! events, deleting a model, declaring one, running its reload hook — each checked in
//! models.yaml, in the store and on `/api/events`.

use crate::api_server::{Server, voices};
use crate::support::{Project, file_url, sha256_hex};

/// `POST /api/models/download` for `id`: (status, answer).
fn download(server: &Server, id: &str) -> (u16, serde_json::Value) {
    server.post(
        "/api/models/download",
        Some(serde_json::json!({ "id": id })),
        &[],
    )
}

fn status_of(server: &Server, id: &str) -> String {
    let (code, model) = server.get(&format!("/api/models/{id}"), &[]);
    assert_eq!(code, 200, "{model}");
    model["status"].as_str().expect("status").to_owned()
}

#[test]
fn a_download_runs_in_the_background_reports_on_the_event_stream_and_touches_only_its_model() {
    let project = voices();
    let server = Server::start(&project);
    assert_eq!(status_of(&server, "a"), "not_installed");
    let events = server.events();

    let (code, queued) = download(&server, "a");
    assert_eq!(code, 202, "{queued}");
    let op = queued["operation"]
        .as_str()
        .expect("operation id")
        .to_owned();
    assert_eq!(queued["href"], format!("/api/operations/{op}"));

    let seen = events.until(|name, e| {
        name == "operation" && e["operation"] == op.as_str() && e["state"] == "succeeded"
    });
    let named = |n: &'static str| seen.iter().filter(move |(name, _)| name == n);
    let done: Vec<_> = named("done").collect();
    assert_eq!(done.len(), 1, "one file downloaded: {seen:#?}");
    assert_eq!(done[0].1["model"], "a");
    assert_eq!(
        done[0].1["operation"],
        op.as_str(),
        "tagged with its operation"
    );
    let swap = named("swap").next().expect("a swap event");
    assert_eq!(swap.1["type"], "tts");
    assert_eq!(swap.1["to"], "a");
    assert!(
        swap.1["path"]
            .as_str()
            .expect("path")
            .ends_with("models/tts/a")
    );
    assert!(named("plan").next().is_some(), "the plan is announced");

    let (code, finished) = server.get(&format!("/api/operations/{op}"), &[]);
    assert_eq!(code, 200);
    assert_eq!(finished["state"], "succeeded", "{finished}");
    assert_eq!(status_of(&server, "a"), "active");
    assert_eq!(
        status_of(&server, "b"),
        "not_installed",
        "b was not part of the download"
    );
    assert!(project.path("store/models/tts/a/a.bin").exists());
    assert!(!project.path("store/models/tts/b").exists());
    let (_, listed) = server.get("/api/models?status=active", &[]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    let (code, unknown) = download(&server, "c");
    assert_eq!(code, 404, "{unknown}");
    assert_eq!(server.get("/api/operations/op-999", &[]).0, 404);
}

#[test]
fn deleting_removes_the_entry_and_only_that_models_files_and_refuses_the_active_one() {
    let project = voices();
    let mut yaml = project.read("models.yaml");
    yaml = yaml.replace("active:\n  tts: a\n", "active:\n  tts: a  # the default\n");
    project.write("models.yaml", &yaml);
    assert_eq!(project.run(&["apply", "--yes"]).code, 0);
    let server = Server::start(&project);

    let (code, refused) = server.send(reqwest::Method::DELETE, "/api/models/a", None, &[]);
    assert_eq!(code, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .expect("error")
            .contains("deactivate")
    );
    assert_eq!(project.read("models.yaml"), yaml, "nothing edited");

    let (code, deleted) = server.send(reqwest::Method::DELETE, "/api/models/b", None, &[]);
    assert_eq!(code, 200, "{deleted}");
    let after = project.read("models.yaml");
    assert!(!after.contains("  b:"), "{after}");
    assert!(
        after.contains("# our voices") && after.contains("# the default"),
        "comments kept: {after}"
    );
    assert!(!project.path("store/models/tts/b").exists());
    assert!(project.path("store/models/tts/a/a.bin").exists());
    assert_eq!(
        server
            .send(reqwest::Method::DELETE, "/api/models/b", None, &[])
            .0,
        404
    );
}

#[test]
fn adding_declares_a_model_through_the_manifests_validators_and_refuses_local_and_insecure_sources()
{
    let project = voices();
    let before = project.read("models.yaml");
    let server = Server::start(&project);

    let post = |body: serde_json::Value| server.post("/api/models/add", Some(body), &[]);
    let (code, bad) =
        post(serde_json::json!({"id": "c", "type": "tts", "url": "file:///etc/passwd"}));
    assert_eq!(code, 422, "{bad}");
    let (code, bad) =
        post(serde_json::json!({"id": "c", "type": "llm", "ollama": "http://10.0.0.1/x:1"}));
    assert_eq!(code, 422, "{bad}");
    let (code, bad) =
        post(serde_json::json!({"id": "c", "type": "tts", "oci": "http://10.0.0.1:5000/ns/c:v1"}));
    assert_eq!(code, 422, "plain-http registries are refused: {bad}");
    let (code, bad) =
        post(serde_json::json!({"id": "c", "type": "tts", "oci": "registry.example.com/ns/c"}));
    assert_eq!(
        code, 422,
        "a reference without a tag goes through the validator: {bad}"
    );
    let (code, bad) = post(
        serde_json::json!({"id": "c", "type": "tts", "url": "https://example.com/c.bin", "insecure": true}),
    );
    assert_eq!(code, 422, "unknown fields are refused: {bad}");
    let (code, bad) =
        post(serde_json::json!({"id": "../c", "type": "tts", "url": "https://example.com/c.bin"}));
    assert_eq!(code, 422, "ids go through the validator: {bad}");
    let (code, bad) =
        post(serde_json::json!({"id": "a", "type": "tts", "url": "https://example.com/c.bin"}));
    assert_eq!(code, 422, "{bad}");
    assert!(bad["error"].as_str().expect("error").contains("already"));
    assert_eq!(project.read("models.yaml"), before, "refusals edit nothing");

    let (code, added) = post(serde_json::json!({
        "id": "c", "type": "tts", "url": "https://example.com/c.bin",
        "sha256": "a".repeat(64), "activate": true
    }));
    assert_eq!(code, 201, "{added}");
    let after = project.read("models.yaml");
    assert!(after.starts_with("# our voices\n"), "{after}");
    assert!(after.contains("  c:\n    type: tts\n"), "{after}");
    assert!(after.contains("tts: c"), "activated: {after}");
    assert!(
        !project.path("store/models/tts/c").exists(),
        "nothing fetched"
    );
    let (code, added) = post(serde_json::json!({
        "id": "d", "type": "tts", "oci": "registry.example.com/team/d:v1"
    }));
    assert_eq!(code, 201, "{added}");
    assert!(
        project.read("models.yaml").contains(
            "  d:
    type: tts
    source:
      oci: registry.example.com/team/d:v1
"
        ),
        "{}",
        project.read("models.yaml")
    );
}

#[test]
fn reloading_runs_the_models_hook_and_tells_the_event_stream() {
    let project = voices();
    assert_eq!(project.run(&["apply", "--yes"]).code, 0);
    let server = Server::start(&project);
    let events = server.events();

    let (code, reloaded) = server.post("/api/models/a/reload", None, &[]);
    assert_eq!(code, 200, "{reloaded}");
    assert_eq!(
        std::fs::read_to_string(project.path("store/models/tts/reloaded")).expect("hook ran"),
        "reloading a\n"
    );
    let seen = events.until(|name, _| name == "reload");
    assert_eq!(seen.last().expect("reload").1["model"], "a");

    let (code, none) = server.post("/api/models/b/reload", None, &[]);
    assert_eq!(code, 409, "{none}");
    assert!(none["error"].as_str().expect("error").contains("hooks"));
}

#[test]
fn an_activation_through_the_api_arrives_on_the_event_stream() {
    let project = voices();
    project.write(
        "models.yaml",
        &project
            .read("models.yaml")
            .replace("active:\n  tts: a\n", ""),
    );
    assert_eq!(project.run(&["apply", "--yes"]).code, 0);
    let server = Server::start(&project);
    let events = server.events();
    let (code, body) = server.post(
        "/api/models/activate",
        Some(serde_json::json!({"id": "b"})),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let seen = events.until(|name, _| name == "swap");
    let swap = &seen.last().expect("swap").1;
    assert_eq!(swap["type"], "tts");
    assert_eq!(swap["to"], "b");
    assert_eq!(swap["from"], serde_json::Value::Null);
    assert!(project.read("models.yaml").contains("tts: b"));
}

#[test]
fn watch_with_listen_serves_the_api_and_streams_its_rounds() {
    let project = voices();
    let server = Server::watch(&project, &["--interval", "60"]);
    let events = server.events();
    // The first round installs `a` (and activates it); then an edit swaps to `b`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !project.path("store/active/tts").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first round never activated a"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    project.write(
        "models.yaml",
        &project.read("models.yaml").replace("tts: a", "tts: b"),
    );
    let seen = events.until(|name, e| name == "swap" && e["to"] == "b");
    assert!(
        seen.iter().any(|(name, e)| name == "plan"
            && e["reason"].as_str().is_some_and(|r| r.contains("changed"))),
        "the round says why it ran: {seen:#?}"
    );
    assert_eq!(status_of(&server, "b"), "active");
    let (code, body) = server.post("/api/models/deactivate/b", None, &[]);
    assert_eq!(code, 200, "{body}");
    events.until(|name, e| name == "swap" && e["to"].is_null());
}

#[test]
fn fifty_concurrent_download_requests_cost_one_download() {
    let project = voices();
    let server = std::sync::Arc::new(Server::start(&project));
    let events = server.events();
    let answers: Vec<(u16, serde_json::Value)> = (0..50)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || download(&server, "b"))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("request thread"))
        .collect();
    let mut operations = std::collections::BTreeSet::new();
    for (code, body) in &answers {
        match code {
            202 => operations.insert(body["operation"].as_str().expect("id").to_owned()),
            409 => operations.insert(
                body["operation"]["id"]
                    .as_str()
                    .expect("the operation under way")
                    .to_owned(),
            ),
            other => panic!("unexpected {other}: {body}"),
        };
    }
    // Every operation named ends; the file is downloaded once, whichever of them did it.
    let mut ended = std::collections::BTreeSet::new();
    let seen = events.until(|name, e| {
        if name == "operation" && (e["state"] == "succeeded" || e["state"] == "failed") {
            ended.insert(e["id"].as_str().unwrap_or_default().to_owned());
        }
        ended.len() == operations.len()
    });
    assert!(
        seen.iter()
            .filter(|(name, e)| name == "operation" && e["state"] == "failed")
            .count()
            == 0,
        "{seen:#?}"
    );
    let downloads = seen.iter().filter(|(name, _)| name == "done").count();
    assert_eq!(downloads, 1, "one download in all: {seen:#?}");
    assert_eq!(status_of(&server, "b"), "installed");
}

#[test]
fn a_config_change_reaches_active_json_through_the_cli_and_the_api() {
    let project = voices();
    assert_eq!(project.run(&["apply", "--yes"]).code, 0);
    let active = || -> serde_json::Value {
        serde_json::from_str(&project.read("store/active.json")).expect("active.json")
    };
    assert_eq!(active()["tts"]["config"], serde_json::json!({}));

    assert_eq!(project.run(&["config", "a", "speed=1.5"]).code, 0);
    let again = project.run(&["apply", "--yes"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("Nothing to do"), "{}", again.stderr);
    assert_eq!(active()["tts"]["config"]["speed"], 1.5);

    let server = Server::start(&project);
    let (code, body) = server.put("/api/models/a/config", serde_json::json!({"voice": "alto"}));
    assert_eq!(code, 200, "{body}");
    assert_eq!(active()["tts"]["config"]["voice"], "alto");

    // JSON types are kept: a string that looks like a number or a boolean stays a string.
    let (code, body) = server.put(
        "/api/models/a/config",
        serde_json::json!({"seed": "123", "fast": "true", "steps": 30, "cfg": 7.5, "loud": false}),
    );
    assert_eq!(code, 200, "{body}");
    let config = &active()["tts"]["config"];
    assert_eq!(config["seed"], "123", "{config}");
    assert_eq!(config["fast"], "true", "{config}");
    assert_eq!(config["steps"], 30);
    assert_eq!(config["cfg"], 7.5);
    assert_eq!(config["loud"], false);
}

/// A project whose one model `big` (2 MiB) comes from a fault server holding every body
/// after 1 MiB until released.
fn held_download() -> (crate::faults::FaultServer, Project) {
    let server = crate::faults::FaultServer::start();
    let bytes = crate::faults::pseudo_random(2 << 20, 7);
    let sum = sha256_hex(&bytes);
    server.serve("/big.bin", bytes);
    server.hold_after(1 << 20);
    let project = Project::new();
    project.write(
        "models.yaml",
        &format!(
            "version: 1\nstore: ./store\nmodels:\n  big:\n    type: llm\n    source: {{ url: \"{}\", sha256: \"{sum}\" }}\n",
            server.url("/big.bin")
        ),
    );
    (server, project)
}

#[test]
fn a_model_is_downloading_while_its_bytes_arrive_whoever_fetches_them() {
    // Through an operation.
    let (server, project) = held_download();
    let api = Server::start(&project);
    let events = api.events();
    let (code, queued) = download(&api, "big");
    assert_eq!(code, 202, "{queued}");
    events.until(|name, _| name == "start");
    assert_eq!(status_of(&api, "big"), "downloading");
    let (_, listed) = api.get("/api/models?status=downloading", &[]);
    assert_eq!(listed[0]["id"], "big", "{listed}");
    server.release();
    events.until(|name, e| name == "operation" && e["state"] == "succeeded");
    assert_eq!(status_of(&api, "big"), "installed");

    // Through a `watch --listen` round, which is no operation (its first round may start
    // before a subscriber could, so the status is polled).
    let (server, project) = held_download();
    let api = Server::watch(&project, &["--interval", "60"]);
    let eventually = |word: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while status_of(&api, "big") != word {
            assert!(std::time::Instant::now() < deadline, "never {word}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    eventually("downloading");
    server.release();
    eventually("installed");
}

#[test]
fn activating_through_the_api_acts_on_that_model_alone() {
    let project = voices();
    project.write("src/c.bin", "a voice that will be gone\n");
    let c = file_url(&project.path("src/c.bin"));
    project.write(
        "models.yaml",
        &project.read("models.yaml").replace(
            "active:\n",
            &format!("  c:\n    type: tts\n    source: {{ url: \"{c}\" }}\nactive:\n"),
        ),
    );
    assert_eq!(project.run(&["lock"]).code, 0);
    std::fs::remove_file(project.path("src/c.bin")).expect("remove");
    let first = project.run(&["apply", "--yes"]);
    assert_ne!(first.code, 0, "c cannot be fetched any more");
    assert!(project.path("store/models/tts/b/b.bin").exists());

    let server = Server::start(&project);
    let (code, body) = server.post(
        "/api/models/activate",
        Some(serde_json::json!({"id": "b"})),
        &[],
    );
    assert_eq!(
        code, 200,
        "another model's failing download is not this change's: {body}"
    );
    assert_eq!(
        std::fs::read_link(project.path("store/active/tts"))
            .expect("pointer")
            .file_name()
            .and_then(|n| n.to_str()),
        Some("b")
    );
    let (code, body) = server.post("/api/models/deactivate/b", None, &[]);
    assert_eq!(code, 200, "{body}");
    assert!(!project.path("store/active/tts").exists());
    assert_eq!(status_of(&server, "c"), "not_installed");

    // c's own download fails, and says why.
    let events = server.events();
    let (code, queued) = download(&server, "c");
    assert_eq!(code, 202, "{queued}");
    let seen = events.until(|name, e| name == "operation" && e["state"] == "failed");
    let message = seen.last().expect("failed").1["message"].to_string();
    assert!(
        message.contains("c.bin"),
        "the failure names the file: {message}"
    );
    assert_eq!(status_of(&server, "c"), "error");
}

#[test]
fn a_download_succeeds_beside_a_model_that_cannot_be_resolved_which_fails_on_its_own() {
    let project = voices();
    // b is declared but not locked, and its file is gone: it cannot be resolved.
    std::fs::remove_file(project.path("src/b.bin")).expect("remove");
    let server = Server::start(&project);
    let events = server.events();

    let (code, queued) = download(&server, "a");
    assert_eq!(code, 202, "{queued}");
    let op = queued["operation"]
        .as_str()
        .expect("operation id")
        .to_owned();
    let seen = events.until(|name, e| {
        name == "operation"
            && e["operation"] == op.as_str()
            && (e["state"] == "succeeded" || e["state"] == "failed")
    });
    let (_, ended) = seen.last().expect("the operation ended");
    assert_eq!(
        ended["state"], "succeeded",
        "b is not a's business: {ended}"
    );
    let (_, finished) = server.get(&format!("/api/operations/{op}"), &[]);
    assert_eq!(finished["state"], "succeeded", "{finished}");
    assert!(project.path("store/models/tts/a/a.bin").exists());
    assert_eq!(status_of(&server, "a"), "active");
    let plan = seen
        .iter()
        .find(|(name, _)| name == "plan")
        .expect("the plan is announced");
    let listed: Vec<&str> = plan.1["plan"]["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        listed,
        ["a"],
        "the narrowed plan is about a alone: {}",
        plan.1
    );
    assert_eq!(plan.1["plan"]["totals"]["unresolved"], 0, "{}", plan.1);

    // b's own download fails, with b's reason.
    let (code, queued) = download(&server, "b");
    assert_eq!(code, 202, "{queued}");
    let op = queued["operation"]
        .as_str()
        .expect("operation id")
        .to_owned();
    let seen = events.until(|name, e| {
        name == "operation"
            && e["operation"] == op.as_str()
            && (e["state"] == "succeeded" || e["state"] == "failed")
    });
    let (_, ended) = seen.last().expect("the operation ended");
    assert_eq!(ended["state"], "failed", "{ended}");
    let message = ended["message"].as_str().expect("message");
    assert!(
        message.contains("`b`") && message.contains("b.bin"),
        "the failure is b's own: {message}"
    );
    assert!(project.path("store/models/tts/a/a.bin").exists());
    assert!(!project.path("store/models/tts/b").exists());
}
