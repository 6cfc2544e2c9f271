//! The one HTTP client every source uses, and the rules for showing URLs.
//!
//! The client ([`Client`]) has connect and read timeouts (reqwest has none by default),
//! follows at most 10 redirects and never from https to http, sends no `Referer`, asks for
//! `identity` encoding (weights are never transparently decompressed), identifies itself, and
//! sends every request under the retry policy ([`retry`]). Credentials in URLs and presigned
//! query parameters are masked by [`SafeUrl`] (and [`redact`] for text that may not be a URL)
//! before a URL reaches any output.

use std::time::Duration;

pub mod client;
pub mod headers;
pub mod retry;
mod safe_url;
pub mod trace;

pub use client::{Client, SendError};
pub use safe_url::{SafeUrl, redact};

pub const USER_AGENT: &str = concat!("modelctl/", env!("CARGO_PKG_VERSION"));

/// A secret sent as `Authorization: Bearer` (a Hub token, a registry's pull token), and where
/// it came from. The value is private and `Debug` hides it, so no log line, error chain or
/// panic message can print it; reqwest drops the header on redirects to another origin.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    value: String,
    origin: String,
}

impl Token {
    pub fn new(value: impl Into<String>, origin: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            origin: origin.into(),
        }
    }

    /// The secret itself; only for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where it was found, for messages (`HF_TOKEN`, a file path, a registry).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(from {}, value hidden)", self.origin)
    }
}

/// A final, non-retried HTTP failure, as a source explains it to the user.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    pub status: reqwest::StatusCode,
    /// `X-Error-Code` (the Hub classifies its errors with it).
    pub code: Option<&'a str>,
    /// `X-Error-Message`.
    pub message: Option<&'a str>,
    /// The retry policy's summary (`HTTP 404`, `HTTP 503, failed after 6 attempts`).
    pub why: &'a str,
}

/// Settings of the client; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub connect_timeout: Duration,
    /// No bytes for this long counts as a stall.
    pub read_timeout: Duration,
    pub max_redirects: usize,
    pub retry: retry::RetryPolicy,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_redirects: 10,
            retry: retry::RetryPolicy::default(),
        }
    }
}

/// A reqwest builder with the shared settings; [`Client::new`] builds from it, and the Ollama
/// daemon's client starts from it and changes only its own timeouts and redirects.
pub fn builder(config: &NetConfig) -> reqwest::ClientBuilder {
    let max = config.max_redirects;
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        let downgrade = attempt
            .previous()
            .last()
            .is_some_and(|prev| prev.scheme() == "https")
            && attempt.url().scheme() != "https";
        if attempt.previous().len() > max {
            attempt.error(format!("more than {max} redirects"))
        } else if downgrade {
            attempt.error("redirect from https to a non-https URL refused")
        } else if !matches!(attempt.url().scheme(), "http" | "https") {
            attempt.error("redirect to a disallowed destination")
        } else {
            attempt.follow()
        }
    });
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT_ENCODING,
        reqwest::header::HeaderValue::from_static("identity"),
    );
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .default_headers(headers)
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .redirect(policy)
        .referer(false)
}

/// An error with its causes, `: `-separated: reqwest keeps the useful part (a DNS failure,
/// a refused connection, a certificate problem) in the chain, under generic wrappers.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    const GENERIC: &[&str] = &["error sending request", "client error (Connect)"];
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !GENERIC.contains(&text.as_str()) && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

/// Turns a final HTTP failure into a message with the fix, for one source.
pub trait ExplainStatus: std::fmt::Debug + Send + Sync {
    fn explain(&self, refusal: &Refusal<'_>) -> String;
}
