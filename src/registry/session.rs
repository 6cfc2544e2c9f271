//! The distribution API calls a push makes, for one registry, through the shared client (so
//! every request is logged by `-v` and retried by the policy): `HEAD` a blob, mount it from
//! another repository, upload it (`POST` then `PUT ?digest=`, the body streamed from the
//! file), and put a manifest.
//!
//! Each request goes out anonymously first, or with the authorization a repository already
//! earned; a `401` is answered once through [`super::auth`] and the answer is kept per
//! repository for the later requests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};

use super::Target;
use super::auth::{AuthError, Challenge, Credentials};
use crate::digest::Sha256;
use crate::net::{SendError, Token, error_chain};

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot reach {url}: {chain}")]
    Unreachable { url: String, chain: String },
    #[error("{what} answered {status}{detail}")]
    Status {
        what: String,
        status: StatusCode,
        detail: String,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{what}: the registry gave no usable upload location")]
    NoLocation { what: String },
    #[error("cannot read `{path}`: {why}")]
    Read { path: String, why: String },
}

impl SessionError {
    /// The fix to suggest.
    pub fn help(&self) -> String {
        match self {
            SessionError::Unreachable { .. } => {
                "check the registry's address and that it is up, then run the push again (uploads already finished are skipped)".to_owned()
            }
            SessionError::Status { status, .. } if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN => {
                format!("check that the credentials (`docker login` or {}) may push to this namespace", super::auth::AUTH_ENV)
            }
            SessionError::Status { .. } => {
                "the registry refused the request; its answer is above. Run the push again once it is fixed: finished uploads are skipped".to_owned()
            }
            SessionError::Auth(e) => miette::Diagnostic::help(e).map_or_else(
                || "see the registry's auth configuration and the credentials".to_owned(),
                |h| h.to_string(),
            ),
            SessionError::NoLocation { .. } => "the registry does not speak the OCI distribution API as expected".to_owned(),
            SessionError::Read { .. } => "run `modelctl verify --repair` for this model".to_owned(),
        }
    }
}

/// What happened to one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The repository had it already (`HEAD` answered 200).
    Present,
    /// Mounted from another repository of the registry: no bytes sent.
    Mounted {
        from: String,
    },
    Uploaded,
}

/// The calls of one push to one registry.
pub struct Session {
    client: crate::net::Client,
    target: Target,
    credentials: Option<Credentials>,
    /// The `Authorization` value each repository earned.
    earned: std::sync::Mutex<HashMap<String, Token>>,
}

impl Session {
    pub fn new(
        client: crate::net::Client,
        target: Target,
        credentials: Option<Credentials>,
    ) -> Self {
        Self {
            client,
            target,
            credentials,
            earned: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.target.base.as_str().trim_end_matches('/'),
            path
        )
    }

    fn earned(&self, repo: &str) -> Option<Token> {
        self.earned.lock().ok().and_then(|m| m.get(repo).cloned())
    }

    /// The `Authorization` value `repo` earned by answering a challenge (a `HEAD` of a blob
    /// earns it), for a download of its blobs by the engine; `None` when anonymous sufficed.
    pub fn authorization(&self, repo: &str) -> Option<Token> {
        self.earned(repo)
    }

    /// `GET` here fetches a blob of `repo`: `/v2/<repo>/blobs/sha256:<hex>`.
    pub fn blob_url(&self, repo: &str, digest: &Sha256) -> Result<url::Url, url::ParseError> {
        url::Url::parse(&self.url(&format!("/v2/{repo}/blobs/sha256:{}", digest.hex())))
    }

    /// Sends what `build` makes for `repo`, answering one `401`. `what` names the call in
    /// errors; `extra_scopes` are asked for alongside the challenge's own.
    async fn send(
        &self,
        repo: &str,
        what: &str,
        extra_scopes: &[String],
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SessionError> {
        let with = |token: Option<Token>| {
            let build = &build;
            move |c: &reqwest::Client| match &token {
                Some(t) => build(c).header(AUTHORIZATION, t.expose()),
                None => build(c),
            }
        };
        let mut sent = self.client.send(with(self.earned(repo))).await;
        if let Err(SendError::Status { response, .. }) = &sent
            && response.status() == StatusCode::UNAUTHORIZED
            && let Some(challenge) = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse)
        {
            let token = super::auth::answer(
                &self.client,
                &self.target,
                &challenge,
                extra_scopes,
                self.credentials.as_ref(),
            )
            .await?;
            if let Ok(mut earned) = self.earned.lock() {
                earned.insert(repo.to_owned(), token.clone());
            }
            sent = self.client.send(with(Some(token))).await;
        }
        match sent {
            Ok(response) => Ok(response),
            Err(SendError::Status { response, why }) => {
                Err(status_error(what, *response, &why).await)
            }
            Err(SendError::Transport { error, gave_up, .. }) => Err(SessionError::Unreachable {
                url: self.target.host.clone(),
                chain: match gave_up {
                    Some(why) => format!("{} ({why})", error_chain(&error.without_url())),
                    None => error_chain(&error.without_url()),
                },
            }),
        }
    }

    /// Whether `repo` has the blob.
    pub async fn has_blob(&self, repo: &str, digest: &Sha256) -> Result<bool, SessionError> {
        let url = self.url(&format!("/v2/{repo}/blobs/sha256:{}", digest.hex()));
        let what = format!("HEAD {url}");
        match self.send(repo, &what, &[], |c| c.head(&url)).await {
            Ok(_) => Ok(true),
            Err(SessionError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Pushes one blob to `repo`: nothing when it is there, a mount from `mount_from` when
    /// given and the registry agrees, else an upload of the file at `path`, counting the
    /// bytes sent in `sent`.
    pub async fn push_blob(
        &self,
        repo: &str,
        digest: &Sha256,
        size: u64,
        path: &Path,
        mount_from: Option<&str>,
        sent: Arc<AtomicU64>,
    ) -> Result<BlobOutcome, SessionError> {
        if self.has_blob(repo, digest).await? {
            return Ok(BlobOutcome::Present);
        }
        let location =
            match mount_from {
                Some(from) => match self.start_upload(repo, Some((digest, from))).await? {
                    None => {
                        return Ok(BlobOutcome::Mounted {
                            from: from.to_owned(),
                        });
                    }
                    Some(location) => location,
                },
                None => self.start_upload(repo, None).await?.ok_or_else(|| {
                    SessionError::NoLocation {
                        what: format!("POST /v2/{repo}/blobs/uploads/"),
                    }
                })?,
            };
        let url = with_digest(location, digest);
        let what = format!("the upload of sha256:{} to {repo}", digest.hex());
        let path = path.to_path_buf();
        self.send(repo, &what, &[], |c| {
            c.put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(file_body(path.clone(), sent.clone()))
        })
        .await?;
        Ok(BlobOutcome::Uploaded)
    }

    /// Pushes a small blob from memory (the config), unless `repo` has it.
    pub async fn push_bytes(&self, repo: &str, bytes: &[u8]) -> Result<BlobOutcome, SessionError> {
        let digest = Sha256::of(bytes);
        if self.has_blob(repo, &digest).await? {
            return Ok(BlobOutcome::Present);
        }
        let location =
            self.start_upload(repo, None)
                .await?
                .ok_or_else(|| SessionError::NoLocation {
                    what: format!("POST /v2/{repo}/blobs/uploads/"),
                })?;
        let url = with_digest(location, &digest);
        let what = format!("the upload of the config to {repo}");
        self.send(repo, &what, &[], |c| {
            c.put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(bytes.to_vec())
        })
        .await?;
        Ok(BlobOutcome::Uploaded)
    }

    /// `POST /v2/<repo>/blobs/uploads/` (with `?mount=&from=` for a mount): `None` when the
    /// mount was done (201), else where to upload.
    async fn start_upload(
        &self,
        repo: &str,
        mount: Option<(&Sha256, &str)>,
    ) -> Result<Option<url::Url>, SessionError> {
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let mut scopes = Vec::new();
        if let Some((digest, from)) = mount {
            url.push_str(&format!("?mount=sha256:{}&from={from}", digest.hex()));
            scopes.push(format!("repository:{from}:pull"));
        }
        let what = format!("POST {url}");
        let response = self.send(repo, &what, &scopes, |c| c.post(&url)).await?;
        if response.status() == StatusCode::CREATED && mount.is_some() {
            return Ok(None);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| self.target.base.join(l).ok())
            .ok_or(SessionError::NoLocation { what })?;
        Ok(Some(location))
    }

    /// `PUT /v2/<repo>/manifests/<reference>`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
    ) -> Result<(), SessionError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let what = format!("PUT {url}");
        self.send(repo, &what, &[], |c| {
            c.put(&url)
                .header(CONTENT_TYPE, super::modelpack::MANIFEST_MEDIA_TYPE)
                .body(bytes.to_vec())
        })
        .await?;
        Ok(())
    }
}

fn with_digest(mut location: url::Url, digest: &Sha256) -> url::Url {
    location
        .query_pairs_mut()
        .append_pair("digest", &format!("sha256:{}", digest.hex()));
    location
}

/// A final refusal, with the registry's error message when it sent one.
async fn status_error(what: &str, response: reqwest::Response, why: &str) -> SessionError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let first = v.get("errors")?.get(0)?.clone();
            Some(format!(
                "{}: {}",
                first.get("code")?.as_str().unwrap_or("?"),
                first.get("message").and_then(|m| m.as_str()).unwrap_or("")
            ))
        });
    let detail = match message {
        Some(m) => format!(" ({m})"),
        None if why.contains("attempts") => format!(" ({why})"),
        None => String::new(),
    };
    SessionError::Status {
        what: what.to_owned(),
        status,
        detail,
    }
}

/// A request body streaming the file at `path` from its start, counting the bytes read into
/// `sent` (set to zero when the stream begins, so a retried upload counts from zero).
fn file_body(path: PathBuf, sent: Arc<AtomicU64>) -> reqwest::Body {
    use tokio::io::AsyncReadExt;
    enum State {
        Open(PathBuf, Arc<AtomicU64>),
        Reading(tokio::fs::File, Arc<AtomicU64>),
        Done,
    }
    let stream = futures_util::stream::unfold(State::Open(path, sent), |state| async move {
        let (mut file, sent) = match state {
            State::Open(path, sent) => match tokio::fs::File::open(&path).await {
                Ok(file) => {
                    sent.store(0, Ordering::Relaxed);
                    (file, sent)
                }
                Err(e) => return Some((Err(e), State::Done)),
            },
            State::Reading(file, sent) => (file, sent),
            State::Done => return None,
        };
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                sent.fetch_add(n as u64, Ordering::Relaxed);
                Some((Ok(buf), State::Reading(file, sent)))
            }
            Err(e) => Some((Err(e), State::Done)),
        }
    });
    reqwest::Body::wrap_stream(stream)
}
