//! `modelctl serve`: the read side of the HTTP API against a real project, and the checks that
//! keep web pages out (A1: a foreign `Host` after DNS rebinding, a cross-site `Origin`).

use crate::api_server::{Server, voices};
use crate::support::{Project, file_url};

#[test]
fn the_api_answers_what_status_show_storage_and_plan_say_and_refuses_foreign_pages() {
    let project = Project::new();
    project.write("src/voice.bin", "a voice\n");
    let url = file_url(&project.path("src/voice.bin"));
    project.write(
        "models.yaml",
        &format!("version: 1\nmodels:\n  voice:\n    type: tts\n    source: {{ url: \"{url}\" }}\n    requires: {{ gpu_memory: 2GiB }}\nactive:\n  tts: voice\n"),
    );
    assert_eq!(project.run(&["apply", "--yes"]).code, 0);
    let server = Server::start(&project);

    let (status, models) = server.get("/api/models", &[]);
    assert_eq!(status, 200, "{models}");
    assert_eq!(models[0]["id"], "voice");
    assert_eq!(models[0]["state"], "installed");
    let (_, none) = server.get("/api/models?type=llm", &[]);
    assert_eq!(none, serde_json::json!([]));

    let (status, one) = server.get("/api/models/voice", &[]);
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["active"], true);
    let (status, missing) = server.get("/api/models/voise", &[]);
    assert_eq!(status, 404);
    assert!(
        missing["error"]
            .as_str()
            .expect("error")
            .contains("did you mean `voice`"),
        "{missing}"
    );

    let (status, active) = server.get("/api/models/active/tts", &[]);
    assert_eq!(status, 200, "{active}");
    assert_eq!(active["id"], "voice");
    assert!(
        active["path"]
            .as_str()
            .expect("path")
            .ends_with("models/tts/voice")
    );
    assert_eq!(server.get("/api/models/active/llm", &[]).0, 404);

    let (_, needs) = server.get("/api/models/voice/requirements", &[]);
    assert_eq!(needs["gpu_memory"], 2u64 << 30);
    let (_, fits) = server.get("/api/models/voice/compatibility", &[]);
    assert!(fits["reasons"].to_string().contains("GPU memory"), "{fits}");
    let (_, storage) = server.get("/api/models/storage/info", &[]);
    assert_eq!(storage["blob_bytes"], 8);
    let (status, plan) = server.get("/api/plan", &[]);
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["format"], 1);
    assert_eq!(plan["actions"], serde_json::json!([]));

    let (status, rebound) = server.get("/api/models", &[("host", "evil.example")]);
    assert_eq!(status, 403, "{rebound}");
    assert!(
        rebound["error"]
            .as_str()
            .expect("error")
            .contains("DNS rebinding")
    );
    let (status, _) = server.get("/api/models", &[("origin", "http://evil.example")]);
    assert_eq!(status, 403);
}

#[test]
fn switching_through_the_api_edits_models_yaml_and_swaps_the_store() {
    let project = voices();
    assert_eq!(project.run(&["apply", "--yes"]).code, 0);
    let server = Server::start(&project);

    let (status, _) = server.post(
        "/api/models/b/switch",
        None,
        &[("origin", "http://evil.example")],
    );
    assert_eq!(status, 403, "a web page cannot switch models");
    assert!(project.read("models.yaml").contains("tts: a"));

    let (status, body) = server.post("/api/models/b/switch", None, &[]);
    assert_eq!(status, 200, "{body}");
    let manifest = project.read("models.yaml");
    assert!(manifest.contains("tts: b"), "{manifest}");
    assert!(
        manifest.contains("# our voices") && manifest.contains("# the default"),
        "{manifest}"
    );
    assert!(
        std::fs::read_link(project.path("store/active/tts"))
            .expect("link")
            .ends_with("b"),
        "the store swapped"
    );
    let (_, active) = server.get("/api/models/active/tts", &[]);
    assert_eq!(active["id"], "b");

    let (status, body) = server.post(
        "/api/models/activate",
        Some(serde_json::json!({"id": "a"})),
        &[],
    );
    assert_eq!(status, 200, "{body}");
    assert!(project.read("models.yaml").contains("tts: a"));

    let (status, _) = server.post("/api/models/deactivate/a", None, &[]);
    assert_eq!(status, 200);
    assert!(!project.path("store/active/tts").exists());
    let (status, missing) = server.post("/api/models/zz/switch", None, &[]);
    assert_eq!(status, 404, "{missing}");

    let (status, body) = server.put(
        "/api/models/b/config",
        serde_json::json!({"speed": 1.5, "voice": "alto"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["config"]["speed"], 1.5);
    let (_, shown) = server.get("/api/models/b", &[]);
    assert_eq!(shown["config"]["voice"], "alto", "{shown}");
    assert!(project.read("models.yaml").contains("# our voices"));
    let (status, _) = server.put(
        "/api/models/b/config",
        serde_json::json!({"nested": {"x": 1}}),
    );
    assert_eq!(status, 422);
}

#[test]
fn errors_axum_answers_itself_are_json_too() {
    let project = Project::new();
    project.write("models.yaml", "version: 1\nmodels: {}\n");
    let server = Server::start(&project);
    let (status, body) = server.get("/api/nothing-here", &[]);
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("GET /api/nothing-here") && e.contains("openapi")),
        "{body}"
    );
    let (status, body) = server.send(reqwest::Method::PATCH, "/api/models", None, &[]);
    assert_eq!(status, 405, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = server.post(
        "/api/models/activate",
        Some(serde_json::json!({"name": "missing the id"})),
        &[],
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("id")),
        "the extractor's reason is kept: {body}"
    );
}
