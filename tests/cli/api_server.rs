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
