//! A running `modelctl serve` for the API tests, and a small blocking client for it that sends
//! the API token on every request unless told not to.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

use crate::support::{Project, file_url};

/// A running `modelctl serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    /// The address, for raw TCP clients.
    pub addr: std::net::SocketAddr,
    /// The token the server wants: from `MODELCTL_API_TOKEN`, else its token file.
    pub token: String,
    log: Arc<Mutex<String>>,
}

/// Whether a request carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`, unless the request's headers set `Authorization`.
    Token,
    /// No `Authorization` but what the headers set.
    Without,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(project: &Project) -> Self {
        Self::start_with(project, "127.0.0.1:0", &[])
    }

    /// `modelctl serve --listen LISTEN` with extra environment variables.
    pub fn start_with(project: &Project, listen: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn(project, &["serve", "--listen", listen], env)
    }

    /// `modelctl watch --listen 127.0.0.1:0` with more arguments: the API alongside the loop.
    pub fn watch(project: &Project, args: &[&str]) -> Self {
        let mut all = vec!["watch", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::spawn(project, &all, &[])
    }

    /// Runs modelctl with `args`, which start the API, and waits for its address.
    fn spawn(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = project
            .command(args, env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        reader.read_line(&mut line).expect("first line");
        let mut second = String::new();
        reader.read_line(&mut second).expect("second line");
        let log = Arc::new(Mutex::new(format!("{line}{second}")));
        // Keep reading the log, so the server never writes into a closed pipe.
        let kept = log.clone();
        std::thread::spawn(move || {
            let mut next = String::new();
            while reader.read_line(&mut next).is_ok_and(|n| n > 0) {
                kept.lock().expect("log").push_str(&next);
                next.clear();
            }
        });
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .and_then(|u| u.strip_suffix("/api/models"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .replace("http://0.0.0.0:", "http://127.0.0.1:");
        let addr = base
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {base:?}"));
        let token = match env.iter().find(|(k, _)| *k == "MODELCTL_API_TOKEN") {
            Some((_, token)) => (*token).to_owned(),
            // "changes need Authorization: Bearer <the token in PATH>"
            None => {
                let path = second
                    .trim_end()
                    .rsplit_once("the token in ")
                    .and_then(|(_, rest)| rest.strip_suffix('>'))
                    .unwrap_or_else(|| panic!("no token file in {second:?}"));
                std::fs::read_to_string(path)
                    .expect("the token file")
                    .trim()
                    .to_owned()
            }
        };
        Self {
            child,
            base,
            addr,
            token,
            log,
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits up to `within` for the server to exit.
    pub fn interrupt(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// What the server has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// GET `path` with extra headers: (status, JSON body).
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::GET, path, None, headers)
    }

    /// PUT `path` with a JSON body.
    pub fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::PUT, path, Some(body), &[])
    }

    /// POST `path` with a JSON body (or none).
    pub fn post(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, body, headers)
    }

    /// A request with a JSON body (or none), carrying the token.
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        self.request(method, path, body, headers, Auth::Token)
    }

    /// Any request: a body with its content type (or none), extra headers, the token or not.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
        auth: Auth,
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
            if let Some((content_type, body)) = body {
                request = request.header("content-type", content_type).body(body);
            }
            let custom = headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
            if auth == Auth::Token && !custom {
                request = request.bearer_auth(&self.token);
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

/// `GET /api/events` read on a thread of its own: each server-sent event as (name, JSON data).
pub struct Events {
    rx: std::sync::mpsc::Receiver<(String, serde_json::Value)>,
}

impl Server {
    /// Subscribes to `/api/events`; returns once the stream is open, so nothing after it is
    /// missed.
    pub fn events(&self) -> Events {
        let url = format!("{}/api/events", self.base);
        let (tx, rx) = std::sync::mpsc::channel();
        let (open_tx, open_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .expect("client");
                let mut response = client.get(&url).send().await.expect("events");
                let _ = open_tx.send(response.status().as_u16());
                let mut buffer = String::new();
                while let Ok(Some(chunk)) = response.chunk().await {
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buffer.find("\n\n") {
                        let message: String = buffer.drain(..end + 2).collect();
                        let mut name = String::new();
                        let mut data = String::new();
                        for line in message.lines() {
                            if let Some(v) = line.strip_prefix("event:") {
                                name = v.trim().to_owned();
                            } else if let Some(v) = line.strip_prefix("data:") {
                                data.push_str(v.trim_start());
                            }
                        }
                        if data.is_empty() {
                            continue;
                        }
                        let value = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                        if tx.send((name, value)).is_err() {
                            return;
                        }
                    }
                }
            });
        });
        let status = open_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the event stream opens");
        assert_eq!(status, 200, "GET /api/events");
        Events { rx }
    }
}

impl Events {
    /// Events until one satisfies `stop` (included), or panics after 30 s with what came.
    pub fn until(
        &self,
        mut stop: impl FnMut(&str, &serde_json::Value) -> bool,
    ) -> Vec<(String, serde_json::Value)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((name, value)) => {
                    let done = stop(&name, &value);
                    seen.push((name, value));
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("the awaited event never came; got {seen:#?}"),
            }
        }
    }
}

/// Two tts models from local files; `a` is wanted active. Nothing is applied yet.
pub fn voices() -> Project {
    let project = Project::new();
    project.write("src/a.bin", "voice a\n");
    project.write("src/b.bin", "voice b, longer\n");
    let (a, b) = (
        file_url(&project.path("src/a.bin")),
        file_url(&project.path("src/b.bin")),
    );
    project.write(
        "models.yaml",
        &format!(
            "# our voices\nversion: 1\nstore: ./store\nmodels:\n  a:\n    type: tts   # the default\n    source: {{ url: \"{a}\" }}\n    hooks: {{ reload: \"echo reloading $MODELCTL_NEW_ID > $MODELCTL_PATH/../reloaded\" }}\n  b:\n    type: tts\n    source: {{ url: \"{b}\" }}\nactive:\n  tts: a\n"
        ),
    );
    project
}
