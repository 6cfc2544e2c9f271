//! The Hub's JSON API, as far as modelctl needs it: which commit a revision is, and which
//! files that commit holds (docs/protocols.md §1.1–1.3, §1.6).
//!
//! Requests carry the token only when it may travel to the endpoint ([`super::token`]), are
//! sent through the shared client ([`crate::net::Client`]: connection errors, 5xx, 408, 429
//! with `Retry-After` are retried), and every failure becomes a [`HubError`] whose variant is
//! the Hub's verdict (gated, not found, denied, rate-limited) and whose message says what to
//! do: accept a gated model's license, set `HF_TOKEN`, check a revision. The tree listing
//! follows `Link: rel="next"` pages, but only on the endpoint's own origin (a next link
//! elsewhere could carry the token away) and only up to a bound.

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, LINK};
use serde::Deserialize;

use super::{HubConfig, Repo};
use crate::net::headers::next_link;
use crate::net::{SendError, error_chain};

/// Most pages of a tree listing followed (the Hub sends 1,000 entries a page).
const MAX_PAGES: usize = 10_000;
/// Most bytes of one JSON answer.
const MAX_JSON_BYTES: usize = 256 << 20;

/// Talks to one Hub endpoint.
pub struct HubApi<'a> {
    pub client: &'a crate::net::Client,
    pub config: &'a HubConfig,
}

/// One entry of a tree listing (`/api/models/{repo}/tree/{rev}`).
#[derive(Debug, Clone, Deserialize)]
pub struct TreeEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub size: u64,
    /// The git blob id.
    #[serde(default)]
    pub oid: Option<String>,
    /// Present for files stored with git-lfs (or Xet): their sha256 and real size.
    #[serde(default)]
    pub lfs: Option<LfsInfo>,
}

/// The LFS pointer of a file: in the tree shape the sha256 is called `oid`.
#[derive(Debug, Clone, Deserialize)]
pub struct LfsInfo {
    pub oid: String,
    pub size: u64,
}

#[derive(Deserialize)]
struct RevisionInfo {
    sha: String,
}

/// A failed Hub request or a Hub setting that cannot work, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum HubError {
    #[error("the Hub's answer about `{repo}` at `{revision}` is not the expected JSON: {error}")]
    #[diagnostic(code(modelctl::hf::revision_json))]
    RevisionJson {
        repo: String,
        revision: String,
        error: String,
    },
    #[error(
        "the Hub says `{repo}` at `{revision}` is commit `{sha}`, which is not a commit id: {error}"
    )]
    #[diagnostic(code(modelctl::hf::not_a_commit))]
    NotACommit {
        repo: String,
        revision: String,
        sha: String,
        error: String,
    },
    #[error(
        "the file listing of `{repo}` has more than {} pages; refusing to read on",
        MAX_PAGES
    )]
    #[diagnostic(code(modelctl::hf::too_many_pages))]
    TooManyPages { repo: String },
    #[error("the file listing of `{repo}` is not the expected JSON: {error}")]
    #[diagnostic(code(modelctl::hf::listing_json))]
    ListingJson { repo: String, error: String },
    #[error("the listing's next-page link is bad: {0}")]
    #[diagnostic(code(modelctl::hf::next_link))]
    NextLink(url::ParseError),
    #[error(
        "the file listing of `{repo}` points its next page at another host ({host}); refusing to follow it"
    )]
    #[diagnostic(code(modelctl::hf::foreign_next_page))]
    ForeignNextPage { repo: String, host: String },
    /// The Hub's `X-Error-Code: GatedRepo`; the message is [`super::explain`]'s.
    #[error("{message}")]
    #[diagnostic(
        code(modelctl::hf::gated),
        help("accept the license on the model's page while logged in, then set HF_TOKEN")
    )]
    Gated { status: StatusCode, message: String },
    /// A `401` for the token itself (invalid or expired).
    #[error("{message}")]
    #[diagnostic(
        code(modelctl::hf::invalid_token),
        help("create a new token on the Hub's settings page and set HF_TOKEN to it")
    )]
    InvalidToken { status: StatusCode, message: String },
    /// The repository, revision or file is not there (`404`, or a `401` without a token).
    #[error("{message}")]
    #[diagnostic(
        code(modelctl::hf::not_found),
        help(
            "check `hf:`, `revision:` and `repo_type:` in models.yaml; a private repository needs HF_TOKEN"
        )
    )]
    NotFound { status: StatusCode, message: String },
    #[error("{message}")]
    #[diagnostic(
        code(modelctl::hf::denied),
        help("check that HF_TOKEN belongs to an account that can read the repository")
    )]
    Denied { status: StatusCode, message: String },
    #[error("{message}")]
    #[diagnostic(
        code(modelctl::hf::rate_limited),
        help("wait a few minutes; requests with a token (HF_TOKEN) get higher limits")
    )]
    RateLimited { status: StatusCode, message: String },
    /// Any other final status (a 5xx that outlasted the retries, a 416).
    #[error("{message}")]
    #[diagnostic(
        code(modelctl::hf::status),
        help("check the Hub's status page, or try again later")
    )]
    Status { status: StatusCode, message: String },
    #[error("cannot reach the Hub at {endpoint}: {reason}")]
    #[diagnostic(
        code(modelctl::hf::unreachable),
        help("check the network, HF_ENDPOINT and any proxy settings")
    )]
    Unreachable { endpoint: String, reason: String },
    #[error("cannot reach the Hub at {endpoint}: {reason} ({why})")]
    #[diagnostic(
        code(modelctl::hf::unreachable),
        help("check the network, HF_ENDPOINT and any proxy settings, then try again")
    )]
    GaveUp {
        endpoint: String,
        reason: String,
        why: String,
    },
    #[error("reading the Hub's answer about `{repo}` failed: {chain}")]
    #[diagnostic(code(modelctl::hf::read))]
    Read { repo: String, chain: String },
    #[error(
        "the Hub's answer about `{repo}` is larger than {} MiB; refusing to read it",
        MAX_JSON_BYTES >> 20
    )]
    #[diagnostic(code(modelctl::hf::too_large))]
    TooLarge { repo: String },
    #[error("the Hugging Face token from {origin} contains characters a header cannot carry")]
    #[diagnostic(
        code(modelctl::hf::bad_token),
        help("check the token for stray whitespace or newlines")
    )]
    BadToken { origin: String },
    #[error(
        "HF_ENDPOINT is `{shown}`, which is not an http(s) URL; set it to the Hub's address, such as {}",
        super::DEFAULT_ENDPOINT
    )]
    #[diagnostic(code(modelctl::hf::endpoint))]
    Endpoint { shown: String },
    #[error(
        "refusing to send the Hugging Face token (from {origin}) over plain http to {host}; \
         set HF_ENDPOINT to an https URL, or unset the token to read public repositories from this mirror"
    )]
    #[diagnostic(code(modelctl::hf::plain_http_token))]
    PlainHttpToken { origin: String, host: String },
    #[error("cannot build the URL of `{path}`: {error}")]
    #[diagnostic(code(modelctl::hf::file_url))]
    FileUrl {
        path: String,
        error: url::ParseError,
    },
}

impl HubApi<'_> {
    /// The commit `revision` (a branch, tag or commit) points at now.
    pub async fn commit(&self, repo: &Repo, revision: &str) -> Result<String, HubError> {
        let url = format!(
            "{}/revision/{}",
            repo.api_url(self.config)?,
            encode_segment(revision)
        );
        let body = self.get(&url, repo, Some(revision)).await?.bytes;
        let info: RevisionInfo =
            serde_json::from_slice(&body).map_err(|e| HubError::RevisionJson {
                repo: repo.id.clone(),
                revision: revision.to_owned(),
                error: e.to_string(),
            })?;
        crate::digest::GitOid::parse(&info.sha).map_err(|e| HubError::NotACommit {
            repo: repo.id.clone(),
            revision: revision.to_owned(),
            sha: info.sha.clone(),
            error: e.to_string(),
        })?;
        Ok(info.sha.to_ascii_lowercase())
    }

    /// Every file of the repository at `commit`, across all pages of the listing.
    pub async fn files(&self, repo: &Repo, commit: &str) -> Result<Vec<TreeEntry>, HubError> {
        let origin = self.config.endpoint()?.origin();
        let mut next = Some(format!(
            "{}/tree/{commit}?recursive=true&expand=false",
            repo.api_url(self.config)?
        ));
        let mut files = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(HubError::TooManyPages {
                    repo: repo.id.clone(),
                });
            }
            let page = self.get(&url, repo, Some(commit)).await?;
            let entries: Vec<TreeEntry> =
                serde_json::from_slice(&page.bytes).map_err(|e| HubError::ListingJson {
                    repo: repo.id.clone(),
                    error: e.to_string(),
                })?;
            files.extend(entries.into_iter().filter(|e| e.kind == "file"));
            if let Some(link) = page.next {
                let parsed = url::Url::parse(&url)
                    .and_then(|base| base.join(&link))
                    .map_err(HubError::NextLink)?;
                if parsed.origin() != origin {
                    return Err(HubError::ForeignNextPage {
                        repo: repo.id.clone(),
                        host: crate::net::SafeUrl::new(parsed).to_string(),
                    });
                }
                next = Some(parsed.to_string());
            }
        }
        Ok(files)
    }

    /// A GET through the shared client; a final failure becomes its [`HubError`].
    async fn get(&self, url: &str, repo: &Repo, revision: Option<&str>) -> Result<Page, HubError> {
        let token = match self.config.token_for(url)? {
            Some(token) => Some(bearer(token)?),
            None => None,
        };
        let sent = self
            .client
            .send(|client| {
                let request = client.get(url);
                match &token {
                    Some(token) => request.header(AUTHORIZATION, token.clone()),
                    None => request,
                }
            })
            .await;
        match sent {
            Ok(response) => Page::read(response, repo).await,
            Err(SendError::Status { response, why }) => {
                Err(self.refused(&response, repo, revision, &why))
            }
            Err(SendError::Transport { error, gave_up, .. }) => {
                let endpoint = self.config.shown_endpoint();
                let reason = error_chain(&error.without_url());
                Err(match gave_up {
                    Some(why) => HubError::GaveUp {
                        endpoint,
                        reason,
                        why,
                    },
                    None => HubError::Unreachable { endpoint, reason },
                })
            }
        }
    }

    /// A final status as the Hub's verdict, explained ([`super::explain`]).
    fn refused(
        &self,
        response: &reqwest::Response,
        repo: &Repo,
        revision: Option<&str>,
        why: &str,
    ) -> HubError {
        let status = response.status();
        let code = header(response, "x-error-code");
        let said = header(response, "x-error-message");
        let refusal = crate::net::Refusal {
            status,
            code: code.as_deref(),
            message: said.as_deref(),
            why,
        };
        let message = super::explain(self.config, repo, revision, None, &refusal);
        match RefusalKind::of(&refusal) {
            RefusalKind::Gated => HubError::Gated { status, message },
            RefusalKind::InvalidToken => HubError::InvalidToken { status, message },
            RefusalKind::NotFound => HubError::NotFound { status, message },
            RefusalKind::Denied => HubError::Denied { status, message },
            RefusalKind::RateLimited => HubError::RateLimited { status, message },
            RefusalKind::Other => HubError::Status { status, message },
        }
    }
}

/// What a final Hub status means, from `X-Error-Code`, `X-Error-Message` and the status, in
/// the order [`super::explain`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefusalKind {
    Gated,
    InvalidToken,
    NotFound,
    Denied,
    RateLimited,
    Other,
}

impl RefusalKind {
    fn of(refusal: &crate::net::Refusal<'_>) -> Self {
        let status = refusal.status.as_u16();
        match refusal.code {
            Some("GatedRepo") => RefusalKind::Gated,
            _ if status == 401
                && refusal.message == Some("Invalid credentials in Authorization header") =>
            {
                RefusalKind::InvalidToken
            }
            Some("RepoNotFound" | "RevisionNotFound" | "EntryNotFound") => RefusalKind::NotFound,
            None if status == 401 => RefusalKind::NotFound,
            _ => match status {
                403 => RefusalKind::Denied,
                404 | 410 => RefusalKind::NotFound,
                429 => RefusalKind::RateLimited,
                _ => RefusalKind::Other,
            },
        }
    }
}

/// A successful answer: its body and the next page, if any.
struct Page {
    bytes: Vec<u8>,
    next: Option<String>,
}

impl Page {
    async fn read(mut response: reqwest::Response, repo: &Repo) -> Result<Self, HubError> {
        let next = header(&response, LINK).and_then(|l| next_link(&l));
        let mut bytes = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|e| HubError::Read {
                repo: repo.id.clone(),
                chain: error_chain(&e.without_url()),
            })?;
            let Some(chunk) = chunk else { break };
            if bytes.len() + chunk.len() > MAX_JSON_BYTES {
                return Err(HubError::TooLarge {
                    repo: repo.id.clone(),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Self { bytes, next })
    }
}

fn header(
    response: &reqwest::Response,
    name: impl reqwest::header::AsHeaderName,
) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Bearer <token>`, marked sensitive so reqwest never prints it.
pub fn bearer(token: &super::Token) -> Result<reqwest::header::HeaderValue, HubError> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| HubError::BadToken {
        origin: token.origin().to_string(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// What Python's `quote` leaves alone: letters, digits and `-._~`.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a whole path segment, `/` included (`refs/pr/2` → `refs%2Fpr%2F2`).
pub fn encode_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}

/// Percent-encodes a file path for a URL, keeping its `/` separators.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_are_read_as_the_hubs_verdicts() {
        let refusal = |status: u16, code, message| crate::net::Refusal {
            status: StatusCode::from_u16(status).expect("status"),
            code,
            message,
            why: "HTTP",
        };
        let cases = [
            (refusal(403, Some("GatedRepo"), None), RefusalKind::Gated),
            (
                refusal(
                    401,
                    None,
                    Some("Invalid credentials in Authorization header"),
                ),
                RefusalKind::InvalidToken,
            ),
            (refusal(401, None, None), RefusalKind::NotFound),
            (
                refusal(404, Some("RevisionNotFound"), None),
                RefusalKind::NotFound,
            ),
            (refusal(404, None, None), RefusalKind::NotFound),
            (refusal(403, None, None), RefusalKind::Denied),
            (refusal(429, None, None), RefusalKind::RateLimited),
            (refusal(503, None, None), RefusalKind::Other),
        ];
        for (refusal, want) in cases {
            assert_eq!(RefusalKind::of(&refusal), want, "{refusal:?}");
        }
    }

    #[test]
    fn revisions_and_paths_are_encoded_like_huggingface_hub() {
        assert_eq!(encode_segment("refs/pr/2"), "refs%2Fpr%2F2");
        assert_eq!(
            encode_path("unet/a b.safetensors"),
            "unet/a%20b.safetensors"
        );
    }
}
