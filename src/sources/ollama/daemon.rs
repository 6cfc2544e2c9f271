//! The Ollama daemon's REST API (docs/protocols.md §2): what it has, pull, delete, load, unload.
//!
//! The daemon owns its store (`~/.ollama/models`); modelctl asks it to pull and delete, follows
//! the pull's NDJSON progress stream (an error can arrive as a line after a `200`), and checks
//! afterwards that the digest the daemon reports is the one models.lock pins. Loading is a
//! `/api/generate` with no prompt and the model's `keep_alive`; unloading is `keep_alive: 0`,
//! which frees the GPU memory without restarting anything.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::OllamaRef;
use crate::digest::Sha256;
use crate::net::error_chain;

/// Where the daemon listens when `OLLAMA_HOST` is unset.
pub const DEFAULT_HOST: &str = "127.0.0.1:11434";
/// Longest NDJSON line read (the Go client's limit).
const MAX_LINE: usize = 8 << 20;

/// Why the daemon could not be asked, or what it refused.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DaemonError {
    #[error("OLLAMA_HOST `{raw}` is not a host or URL: {error}")]
    #[diagnostic(
        code(modelctl::ollama::host),
        help("set OLLAMA_HOST to `host`, `host:port`, `:port` or an http(s) URL")
    )]
    Host { raw: String, error: url::ParseError },
    #[error("cannot set up the Ollama client: {0}")]
    #[diagnostic(code(modelctl::ollama::client))]
    Client(reqwest::Error),
    #[error(
        "cannot reach the Ollama daemon at {address} ({chain}); start it with `ollama serve`, or set OLLAMA_HOST"
    )]
    #[diagnostic(code(modelctl::ollama::daemon_unreachable))]
    Unreachable { address: String, chain: String },
    #[error("the Ollama daemon's model list is not as expected: {0}")]
    #[diagnostic(code(modelctl::ollama::daemon_answer))]
    ModelList(serde_json::Error),
    #[error("reading the Ollama daemon's answer to {what} failed: {chain}")]
    #[diagnostic(code(modelctl::ollama::daemon_answer))]
    Read { what: &'static str, chain: String },
    /// The daemon's `{"error": …}`.
    #[error("the Ollama daemon refused to {what}: {error}")]
    #[diagnostic(code(modelctl::ollama::daemon_refused))]
    Refused { what: &'static str, error: String },
    #[error("the Ollama daemon answered {status} to {what}")]
    #[diagnostic(code(modelctl::ollama::daemon_status))]
    Status {
        what: &'static str,
        status: reqwest::StatusCode,
    },
    #[error("the pull stream from the Ollama daemon broke: {chain}")]
    #[diagnostic(
        code(modelctl::ollama::pull_stream),
        help("run `modelctl apply` again; Ollama resumes the layers it has")
    )]
    PullStream { chain: String },
    #[error("the Ollama daemon sent a progress line over 8 MiB")]
    #[diagnostic(code(modelctl::ollama::pull_stream))]
    LineTooLong,
    #[error("the Ollama daemon sent an unreadable progress line: {0}")]
    #[diagnostic(code(modelctl::ollama::pull_stream))]
    BadLine(serde_json::Error),
    /// An `error` line in the pull's progress stream.
    #[error("the Ollama daemon says: {0}")]
    #[diagnostic(code(modelctl::ollama::pull_failed))]
    PullFailed(String),
    #[error("the Ollama daemon's pull of `{0}` ended without `success`")]
    #[diagnostic(
        code(modelctl::ollama::pull_unfinished),
        help("run `modelctl apply` again; Ollama resumes the layers it has")
    )]
    PullUnfinished(String),
}

/// `OLLAMA_HOST` as a base URL: `host`, `host:port`, `:port` or a full `http(s)://` URL.
pub fn base_url(value: Option<&str>) -> Result<url::Url, DaemonError> {
    let raw = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_HOST);
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let host_error = |error| DaemonError::Host {
        raw: raw.to_owned(),
        error,
    };
    let mut url = url::Url::parse(&with_scheme).map_err(host_error)?;
    if url.host_str().is_none_or(str::is_empty) {
        url.set_host(Some("127.0.0.1")).map_err(host_error)?;
    }
    if url.port().is_none() && url.scheme() == "http" && !raw.contains("://") {
        let _ = url.set_port(Some(11434));
    }
    Ok(url)
}

/// A client for one daemon.
#[derive(Debug, Clone)]
pub struct Daemon {
    client: reqwest::Client,
    base: url::Url,
}

/// One model the daemon has (`/api/tags`).
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    pub name: OllamaRef,
    /// sha256 of its manifest.
    pub digest: Sha256,
    pub size: u64,
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    models: Vec<TagEntry>,
}

#[derive(Deserialize)]
struct TagEntry {
    name: String,
    digest: String,
    #[serde(default)]
    size: u64,
}

#[derive(Deserialize)]
struct Progress {
    #[serde(default)]
    status: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    completed: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

impl Daemon {
    /// A client for the daemon at `base`, from the shared settings ([`crate::net::builder`]:
    /// its connect timeout and user agent) with the daemon's own differences: loading a large
    /// model can take minutes, so reads wait up to ten, and a local daemon never redirects.
    /// Requests are sent once: an absent daemon is reported at once, never after backoff.
    pub fn new(base: url::Url, net: &crate::net::NetConfig) -> Result<Self, DaemonError> {
        let client = crate::net::builder(net)
            .read_timeout(Duration::from_secs(600))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(DaemonError::Client)?;
        Ok(Self { client, base })
    }

    /// A client for the daemon `OLLAMA_HOST` names (`host` as set, the default when `None`).
    pub fn at(host: Option<&str>, net: &crate::net::NetConfig) -> Result<Self, DaemonError> {
        Self::new(base_url(host)?, net)
    }

    /// The daemon's address, for messages.
    pub fn address(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address())
    }

    fn unreachable(&self, e: reqwest::Error) -> DaemonError {
        DaemonError::Unreachable {
            address: self.address(),
            chain: error_chain(&e.without_url()),
        }
    }

    /// The models the daemon has, with the digests it reports.
    pub async fn installed(&self) -> Result<Vec<Installed>, DaemonError> {
        let response = crate::net::trace::send(self.client.get(self.url("/api/tags")))
            .await
            .map_err(|e| self.unreachable(e))?;
        let body = self.json_body(response, "list models").await?;
        let tags: Tags = serde_json::from_value(body).map_err(DaemonError::ModelList)?;
        // A name or digest that does not validate is skipped, never used.
        Ok(tags
            .models
            .into_iter()
            .filter_map(|t| {
                Some(Installed {
                    name: OllamaRef::parse(&t.name).ok()?,
                    digest: Sha256::parse(&t.digest).ok()?,
                    size: t.size,
                })
            })
            .collect())
    }

    /// What the daemon says about an installed model (`/api/show`).
    pub async fn show(&self, name: &OllamaRef) -> Result<Value, DaemonError> {
        let response = crate::net::trace::send(
            self.client
                .post(self.url("/api/show"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json!({"model": name.pull_name()}).to_string()),
        )
        .await
        .map_err(|e| self.unreachable(e))?;
        self.json_body(response, "show the model").await
    }

    /// The models loaded in memory now (`/api/ps`).
    pub async fn loaded(&self) -> Result<Vec<OllamaRef>, DaemonError> {
        let response = crate::net::trace::send(self.client.get(self.url("/api/ps")))
            .await
            .map_err(|e| self.unreachable(e))?;
        let body = self.json_body(response, "list loaded models").await?;
        Ok(body
            .get("models")
            .and_then(Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m.get("name").and_then(Value::as_str))
                    .filter_map(|n| OllamaRef::parse(n).ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Pulls `name`, reporting the bytes completed over all layers and their total.
    pub async fn pull(
        &self,
        name: &OllamaRef,
        on_progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), DaemonError> {
        let mut response = crate::net::trace::send(
            self.client
                .post(self.url("/api/pull"))
                .header(reqwest::header::ACCEPT, "application/x-ndjson")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(
                    json!({"model": name.pull_name(), "insecure": name.insecure, "stream": true})
                        .to_string(),
                ),
        )
        .await
        .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = self.json_body(response, "pull").await.err();
            return Err(body.unwrap_or(DaemonError::Status {
                what: "pull",
                status,
            }));
        }
        let mut layers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut succeeded = false;
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|e| DaemonError::PullStream {
                    chain: error_chain(&e.without_url()),
                })?;
            let Some(chunk) = chunk else { break };
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                succeeded |= self.progress_line(&line, &mut layers, on_progress)?;
            }
            if pending.len() > MAX_LINE {
                return Err(DaemonError::LineTooLong);
            }
        }
        if !pending.is_empty() {
            succeeded |= self.progress_line(&pending, &mut layers, on_progress)?;
        }
        if succeeded {
            Ok(())
        } else {
            Err(DaemonError::PullUnfinished(name.to_string()))
        }
    }

    /// Reads one NDJSON line; `Ok(true)` for the final `success`.
    fn progress_line(
        &self,
        line: &[u8],
        layers: &mut BTreeMap<String, (u64, u64)>,
        on_progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<bool, DaemonError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
        let progress: Progress = serde_json::from_slice(line).map_err(DaemonError::BadLine)?;
        if let Some(error) = progress.error {
            return Err(DaemonError::PullFailed(error));
        }
        if let (Some(digest), Some(total)) = (progress.digest, progress.total) {
            layers.insert(digest, (progress.completed.unwrap_or(0).min(total), total));
            let (done, all) = layers
                .values()
                .fold((0, 0), |(d, a), (done, total)| (d + done, a + total));
            on_progress(done, all);
        }
        Ok(progress.status == "success")
    }

    /// Deletes `name`; one the daemon does not have counts as deleted.
    pub async fn delete(&self, name: &OllamaRef) -> Result<(), DaemonError> {
        let response = crate::net::trace::send(
            self.client
                .delete(self.url("/api/delete"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json!({"model": name.pull_name()}).to_string()),
        )
        .await
        .map_err(|e| self.unreachable(e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        self.json_body(response, "delete").await.map(|_| ())
    }

    /// Loads `name` into memory for `keep_alive` (the daemon's default when `None`).
    pub async fn load(
        &self,
        name: &OllamaRef,
        keep_alive: Option<&str>,
    ) -> Result<(), DaemonError> {
        let mut body = json!({"model": name.pull_name()});
        if let Some(k) = keep_alive {
            body["keep_alive"] = keep_alive_value(k);
        }
        self.generate(body, "load").await
    }

    /// Unloads `name` from memory now (`keep_alive: 0`).
    pub async fn unload(&self, name: &OllamaRef) -> Result<(), DaemonError> {
        self.generate(
            json!({"model": name.pull_name(), "keep_alive": 0}),
            "unload",
        )
        .await
    }

    async fn generate(&self, body: Value, what: &'static str) -> Result<(), DaemonError> {
        let mut body = body;
        body["stream"] = Value::Bool(false);
        let response = crate::net::trace::send(
            self.client
                .post(self.url("/api/generate"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
        )
        .await
        .map_err(|e| self.unreachable(e))?;
        self.json_body(response, what).await.map(|_| ())
    }

    /// A JSON answer, or the daemon's `{"error": …}` as the message.
    async fn json_body(
        &self,
        response: reqwest::Response,
        what: &'static str,
    ) -> Result<Value, DaemonError> {
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| DaemonError::Read {
            what,
            chain: error_chain(&e.without_url()),
        })?;
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            return Err(DaemonError::Refused {
                what,
                error: error.to_owned(),
            });
        }
        if !status.is_success() {
            return Err(DaemonError::Status { what, status });
        }
        Ok(value)
    }
}

/// `keep_alive` as Ollama reads it: a number of seconds, or a Go duration string (`5m`, `-1`).
fn keep_alive_value(text: &str) -> Value {
    match text.trim().parse::<i64>() {
        Ok(secs) => Value::from(secs),
        Err(_) => Value::from(text.trim()),
    }
}

impl OllamaRef {
    /// The name to give the daemon: the shortest form, with `http://` kept for insecure
    /// registries.
    pub fn pull_name(&self) -> String {
        self.display_shortest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_reads_like_ollama() {
        assert_eq!(
            base_url(None).expect("default").as_str(),
            "http://127.0.0.1:11434/"
        );
        assert_eq!(
            base_url(Some("10.0.0.5")).expect("host").as_str(),
            "http://10.0.0.5:11434/"
        );
        assert_eq!(
            base_url(Some("10.0.0.5:9")).expect("port").as_str(),
            "http://10.0.0.5:9/"
        );
        assert_eq!(
            base_url(Some("https://ollama.example.com"))
                .expect("url")
                .as_str(),
            "https://ollama.example.com/"
        );
    }

    #[test]
    fn keep_alive_is_a_number_or_a_duration() {
        assert_eq!(keep_alive_value("300"), json!(300));
        assert_eq!(keep_alive_value("-1"), json!(-1));
        assert_eq!(keep_alive_value("5m"), json!("5m"));
    }
}
