//! Every HTTP request modelctl sends, as `-v` shows it.
//!
//! [`send`] is the one place a request leaves the process: the [`super::Client`]'s retry
//! loop, the download engine's chunks and the Ollama daemon's calls all go through it. At
//! `info` (`-v`) it logs the request line (method, URL, `Range`) and the answer's status; at
//! `debug` (`-vv`) also the time to the answer's headers and where a redirect ended. URLs are
//! shown as [`SafeUrl`]s and no header but `Range` is logged, so neither a token nor a
//! presigned signature reaches a log at any level.

use std::time::Instant;

use reqwest::header::RANGE;

use super::SafeUrl;
use super::retry::Fault;

/// Sends `request` once, logging it and its answer.
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
    let (client, request) = request.build_split();
    let request = request?;
    let method = request.method().clone();
    let url = SafeUrl::from(request.url());
    let range = request
        .headers()
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    tracing::info!(target: "modelctl::net", "{method} {url}{range}");
    let started = Instant::now();
    let answer = client.execute(request).await;
    let took = started.elapsed();
    match &answer {
        Ok(response) => {
            let status = response.status();
            tracing::info!(target: "modelctl::net", "{status} for {method} {url}");
            if response.url().as_str() != url.expose().as_str() {
                tracing::debug!(
                    target: "modelctl::net",
                    "{method} {url} was redirected to {}",
                    SafeUrl::from(response.url())
                );
            }
            tracing::debug!(target: "modelctl::net", "{method} {url}: headers in {took:.1?}");
        }
        Err(error) => {
            tracing::info!(
                target: "modelctl::net",
                "{method} {url} failed after {took:.1?}: {:?}",
                Fault::of(error)
            );
        }
    }
    answer
}
