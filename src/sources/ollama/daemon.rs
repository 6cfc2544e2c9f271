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

/// `OLLAMA_HOST` as a base URL: `host`, `host:port`, `:port` or a full `http(s)://` URL.
pub fn base_url(value: Option<&str>) -> Result<url::Url, String> {
    let raw = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_HOST);
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let mut url = url::Url::parse(&with_scheme)
        .map_err(|e| format!("OLLAMA_HOST `{raw}` is not a host or URL: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        url.set_host(Some("127.0.0.1"))
            .map_err(|e| format!("OLLAMA_HOST `{raw}`: {e}"))?;
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
    /// A client for the daemon at `base`. Loading a large model can take minutes, so reads
    /// wait up to ten; connecting still fails fast.
    pub fn new(base: url::Url, connect_timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .user_agent(crate::net::USER_AGENT)
            .connect_timeout(connect_timeout)
            .read_timeout(Duration::from_secs(600))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up the Ollama client: {e}"))?;
        Ok(Self { client, base })
    }

    /// The daemon's address, for messages.
    pub fn address(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address())
    }

    fn unreachable(&self, e: reqwest::Error) -> String {
        format!(
            "cannot reach the Ollama daemon at {} ({}); start it with `ollama serve`, or set OLLAMA_HOST",
            self.address(),
            error_chain(&e.without_url())
        )
    }

    /// The models the daemon has, with the digests it reports.
    pub async fn installed(&self) -> Result<Vec<Installed>, String> {
        let response = self
            .client
            .get(self.url("/api/tags"))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let body = self.json_body(response, "list models").await?;
        let tags: Tags = serde_json::from_value(body)
            .map_err(|e| format!("the Ollama daemon's model list is not as expected: {e}"))?;
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
    pub async fn show(&self, name: &OllamaRef) -> Result<Value, String> {
        let response = self
            .client
            .post(self.url("/api/show"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json!({"model": name.pull_name()}).to_string())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.json_body(response, "show the model").await
    }

    /// The models loaded in memory now (`/api/ps`).
    pub async fn loaded(&self) -> Result<Vec<OllamaRef>, String> {
        let response = self
            .client
            .get(self.url("/api/ps"))
            .send()
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
    ) -> Result<(), String> {
        let mut response = self
            .client
            .post(self.url("/api/pull"))
            .header(reqwest::header::ACCEPT, "application/x-ndjson")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(
                json!({"model": name.pull_name(), "insecure": name.insecure, "stream": true})
                    .to_string(),
            )
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = self.json_body(response, "pull").await.err();
            return Err(body.unwrap_or_else(|| format!("the Ollama daemon answered {status}")));
        }
        let mut layers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut succeeded = false;
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                format!(
                    "the pull stream from the Ollama daemon broke: {}",
                    error_chain(&e.without_url())
                )
            })?;
            let Some(chunk) = chunk else { break };
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                succeeded |= self.progress_line(&line, &mut layers, on_progress)?;
            }
            if pending.len() > MAX_LINE {
                return Err("the Ollama daemon sent a progress line over 8 MiB".to_owned());
            }
        }
        if !pending.is_empty() {
            succeeded |= self.progress_line(&pending, &mut layers, on_progress)?;
        }
        if succeeded {
            Ok(())
        } else {
            Err(format!(
                "the Ollama daemon's pull of `{name}` ended without `success`"
            ))
        }
    }

    /// Reads one NDJSON line; `Ok(true)` for the final `success`.
    fn progress_line(
        &self,
        line: &[u8],
        layers: &mut BTreeMap<String, (u64, u64)>,
        on_progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<bool, String> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
        let progress: Progress = serde_json::from_slice(line)
            .map_err(|e| format!("the Ollama daemon sent an unreadable progress line: {e}"))?;
        if let Some(error) = progress.error {
            return Err(format!("the Ollama daemon says: {error}"));
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
    pub async fn delete(&self, name: &OllamaRef) -> Result<(), String> {
        let response = self
            .client
            .delete(self.url("/api/delete"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json!({"model": name.pull_name()}).to_string())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        self.json_body(response, "delete").await.map(|_| ())
    }

    /// Loads `name` into memory for `keep_alive` (the daemon's default when `None`).
    pub async fn load(&self, name: &OllamaRef, keep_alive: Option<&str>) -> Result<(), String> {
        let mut body = json!({"model": name.pull_name()});
        if let Some(k) = keep_alive {
            body["keep_alive"] = keep_alive_value(k);
        }
        self.generate(body, "load").await
    }

    /// Unloads `name` from memory now (`keep_alive: 0`).
    pub async fn unload(&self, name: &OllamaRef) -> Result<(), String> {
        self.generate(
            json!({"model": name.pull_name(), "keep_alive": 0}),
            "unload",
        )
        .await
    }

    async fn generate(&self, body: Value, what: &str) -> Result<(), String> {
        let mut body = body;
        body["stream"] = Value::Bool(false);
        let response = self
            .client
            .post(self.url("/api/generate"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.json_body(response, what).await.map(|_| ())
    }

    /// A JSON answer, or the daemon's `{"error": …}` as the message.
    async fn json_body(&self, response: reqwest::Response, what: &str) -> Result<Value, String> {
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            format!(
                "reading the Ollama daemon's answer to {what} failed: {}",
                error_chain(&e.without_url())
            )
        })?;
        let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            return Err(format!("the Ollama daemon refused to {what}: {error}"));
        }
        if !status.is_success() {
            return Err(format!("the Ollama daemon answered {status} to {what}"));
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
