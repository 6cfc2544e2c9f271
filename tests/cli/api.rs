//! `modelctl serve`: the read side of the HTTP API against a real project, and the checks that
//! keep web pages out (A1: a foreign `Host` after DNS rebinding, a cross-site `Origin`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use crate::support::{Project, file_url};

/// A running `modelctl serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(project: &Project) -> Self {
        let mut child = project
            .command(&["serve", "--listen", "127.0.0.1:0"], &[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        reader.read_line(&mut line).expect("first line");
        // Keep reading the log, so the server never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .and_then(|u| u.strip_suffix("/api/models"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Self { child, base }
    }

    /// GET `path` with extra headers: (status, JSON body).
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::GET, path, None, headers)
    }

    /// PUT `path` with a JSON body.
    fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::PUT, path, Some(body), &[])
    }

    /// POST `path` with a JSON body (or none).
    fn post(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, body, headers)
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.base);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client");
            let mut request = client.request(method, &url);
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.to_string());
            }
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let body = response.text().await.expect("body");
            (
                status,
                serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
            )
        })
    }
}

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
    let project = Project::new();
    project.write("src/a.bin", "voice a\n");
    project.write("src/b.bin", "voice b\n");
    let (a, b) = (
        file_url(&project.path("src/a.bin")),
        file_url(&project.path("src/b.bin")),
    );
    project.write(
        "models.yaml",
        &format!("# our voices\nversion: 1\nmodels:\n  a:\n    type: tts   # the default\n    source: {{ url: \"{a}\" }}\n  b:\n    type: tts\n    source: {{ url: \"{b}\" }}\nactive:\n  tts: a\n"),
    );
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
        std::fs::read_link(project.path("models/active/tts"))
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
    assert!(!project.path("models/active/tts").exists());
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
