//! A running `modelctl serve` for the API tests, and a small blocking client for it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use crate::support::Project;

/// A running `modelctl serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(project: &Project) -> Self {
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

    pub fn send(
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
        stop: impl Fn(&str, &serde_json::Value) -> bool,
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
