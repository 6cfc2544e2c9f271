//! The distribution API calls a push makes, for one registry, through the shared client (so
//! every request is logged by `-v` and retried by the policy): `HEAD` a blob, mount it from
//! another repository, upload it, put a manifest, and get one by its digest (a mirror's, for
//! `apply`).
//!
//! A blob of one chunk or less (the chunk size is `MODELCTL_PUSH_CHUNK_MIB`, default 32 MiB)
//! is uploaded whole: `POST`, then `PUT ?digest=` with the file streamed. A larger one is
//! uploaded in chunks: `POST`, one `PATCH` per chunk (`Content-Range: <start>-<end>`), then an
//! empty `PUT ?digest=`. A chunk that fails is not sent again as it was: the registry is asked
//! (`GET` of the upload) which bytes it holds, and the upload goes on from there, or starts
//! over when the registry lost it. A registry that refuses the first `PATCH` (416, 405, …)
//! gets the blob whole in a new upload, as before.
//!
//! Each request goes out anonymously first, or with the authorization a repository already
//! earned; a `401` is answered once through [`super::auth`] and the answer is kept per
//! repository for the later requests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LOCATION, RANGE,
    WWW_AUTHENTICATE,
};

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
    #[error("{what}: the registry took the chunk but holds no more bytes than before")]
    NoProgress { what: String },
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
            SessionError::NoProgress { .. } => format!(
                "run the push again; if it stops at the same place, push without chunks (`{CHUNK_ENV}=0`)"
            ),
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

/// The environment variable with the chunk size of uploads, in MiB (`0`: every blob whole).
pub const CHUNK_ENV: &str = "MODELCTL_PUSH_CHUNK_MIB";

/// The chunk size of uploads when [`CHUNK_ENV`] is not set.
pub const DEFAULT_CHUNK: u64 = 32 << 20;

/// The calls of one push to one registry.
pub struct Session {
    client: crate::net::Client,
    target: Target,
    credentials: Option<Credentials>,
    /// The `Authorization` value each repository earned.
    earned: std::sync::Mutex<HashMap<String, Token>>,
    /// Blobs larger than this go up in chunks of this size; `0`: every blob whole.
    chunk: u64,
}

/// How often a request is sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempts {
    /// As the retry policy says.
    Policy,
    /// Once: a chunk of an upload, which is never repeated blindly.
    Once,
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
            chunk: DEFAULT_CHUNK,
        }
    }

    /// Uploads blobs larger than `bytes` in chunks of `bytes`; `0` uploads every blob whole.
    pub fn with_chunk_size(mut self, bytes: u64) -> Self {
        self.chunk = bytes;
        self
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

    /// Sends what `build` makes for `repo` as the retry policy says, answering one `401`.
    /// `what` names the call in errors; `extra_scopes` are asked for alongside the
    /// challenge's own.
    async fn send(
        &self,
        repo: &str,
        what: &str,
        extra_scopes: &[String],
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SessionError> {
        self.send_as(Attempts::Policy, repo, what, extra_scopes, build)
            .await
    }

    async fn dispatch(
        &self,
        attempts: Attempts,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SendError> {
        match attempts {
            Attempts::Policy => self.client.send(build).await,
            Attempts::Once => self.client.send_once(build(self.client.http())).await,
        }
    }

    /// [`Session::send`], with the attempts given.
    async fn send_as(
        &self,
        attempts: Attempts,
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
        let mut sent = self.dispatch(attempts, with(self.earned(repo))).await;
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
            sent = self.dispatch(attempts, with(Some(token))).await;
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
        let mut location = match mount_from {
            Some(from) => match self.start_upload(repo, Some((digest, from))).await? {
                None => {
                    return Ok(BlobOutcome::Mounted {
                        from: from.to_owned(),
                    });
                }
                Some(location) => location,
            },
            None => self.new_upload(repo).await?,
        };
        if self.chunk > 0 && size > self.chunk {
            let blob = Blob {
                digest,
                size,
                path,
                sent: &sent,
            };
            if self.upload_in_chunks(repo, location, &blob).await? {
                return Ok(BlobOutcome::Uploaded);
            }
            tracing::info!(
                target: "modelctl::push",
                "{} refused a chunked upload; sending sha256:{} whole",
                self.target.host,
                digest.hex()
            );
            location = self.new_upload(repo).await?;
        }
        let url = with_digest(location, digest);
        let what = format!("the upload of sha256:{} to {repo}", digest.hex());
        let path = path.to_path_buf();
        self.send(repo, &what, &[], |c| {
            c.put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(file_body(path.clone(), 0, size, sent.clone()))
        })
        .await?;
        Ok(BlobOutcome::Uploaded)
    }

    /// `POST /v2/<repo>/blobs/uploads/`: where a new upload goes.
    async fn new_upload(&self, repo: &str) -> Result<url::Url, SessionError> {
        self.start_upload(repo, None)
            .await?
            .ok_or_else(|| SessionError::NoLocation {
                what: format!("POST /v2/{repo}/blobs/uploads/"),
            })
    }

    /// Uploads `blob` to `location` in chunks, then closes the upload with its digest.
    /// `Ok(false)`: the registry refused the first chunk, so it takes no chunked uploads
    /// (nothing of the blob is stored then). A failed chunk is resumed from the bytes the
    /// registry says it holds, as often as the retry policy allows in a row.
    async fn upload_in_chunks(
        &self,
        repo: &str,
        mut location: url::Url,
        blob: &Blob<'_>,
    ) -> Result<bool, SessionError> {
        let policy = self.client.policy();
        let mut held = 0u64;
        let mut accepted = false;
        let mut failures = 0u32;
        while held < blob.size {
            let len = (blob.size - held).min(self.chunk);
            let failure = match self.patch_chunk(repo, &location, blob, held, len).await {
                Ok((next, now)) if now > held => {
                    location = next;
                    held = now;
                    accepted = true;
                    failures = 0;
                    continue;
                }
                Ok((next, _)) => {
                    location = next;
                    SessionError::NoProgress {
                        what: chunk_what(repo, blob, held, len),
                    }
                }
                Err(SessionError::Status { status, .. }) if !accepted && refuses_chunks(status) => {
                    return Ok(false);
                }
                Err(e) => e,
            };
            failures += 1;
            match policy.on_transport_error(failures) {
                crate::net::retry::Verdict::RetryAfter(wait) => tokio::time::sleep(wait).await,
                crate::net::retry::Verdict::GiveUp(_) => return Err(failure),
            }
            tracing::info!(
                target: "modelctl::push",
                "{failure}; asking {} which bytes of sha256:{} it holds",
                self.target.host,
                blob.digest.hex()
            );
            match self.upload_status(repo, &location).await {
                Ok((next, now)) if now <= blob.size => {
                    location = next;
                    held = now;
                }
                _ => {
                    location = self.new_upload(repo).await?;
                    held = 0;
                }
            }
        }
        let url = with_digest(location, blob.digest);
        let what = format!(
            "closing the upload of sha256:{} to {repo}",
            blob.digest.hex()
        );
        self.send(repo, &what, &[], |c| {
            c.put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, 0)
        })
        .await?;
        Ok(true)
    }

    /// `PATCH` of `len` bytes from `start`, sent once: where the upload goes on, and how many
    /// bytes the registry holds now (its `Range`, else `start + len`).
    async fn patch_chunk(
        &self,
        repo: &str,
        location: &url::Url,
        blob: &Blob<'_>,
        start: u64,
        len: u64,
    ) -> Result<(url::Url, u64), SessionError> {
        let what = chunk_what(repo, blob, start, len);
        let path = blob.path.to_path_buf();
        let response = self
            .send_as(Attempts::Once, repo, &what, &[], |c| {
                c.patch(location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{start}-{}", start + len - 1))
                    .header(CONTENT_LENGTH, len)
                    .body(file_body(path.clone(), start, len, blob.sent.clone()))
            })
            .await?;
        let next = self
            .location_of(&response)
            .unwrap_or_else(|| location.clone());
        let held = held_bytes(response.headers()).unwrap_or(start + len);
        Ok((next, held))
    }

    /// `GET` of an upload: where it goes on, and how many bytes the registry holds.
    async fn upload_status(
        &self,
        repo: &str,
        location: &url::Url,
    ) -> Result<(url::Url, u64), SessionError> {
        let what = format!("GET {}", crate::net::SafeUrl::from(location));
        let response = self
            .send(repo, &what, &[], |c| c.get(location.clone()))
            .await?;
        let next = self
            .location_of(&response)
            .unwrap_or_else(|| location.clone());
        Ok((next, held_bytes(response.headers()).unwrap_or(0)))
    }

    /// The `Location` of an answer, against the registry's base.
    fn location_of(&self, response: &reqwest::Response) -> Option<url::Url> {
        response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| self.target.base.join(l).ok())
    }

    /// Pushes a small blob from memory (the config), unless `repo` has it.
    pub async fn push_bytes(&self, repo: &str, bytes: &[u8]) -> Result<BlobOutcome, SessionError> {
        let digest = Sha256::of(bytes);
        if self.has_blob(repo, &digest).await? {
            return Ok(BlobOutcome::Present);
        }
        let url = with_digest(self.new_upload(repo).await?, &digest);
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
        let location = self
            .location_of(&response)
            .ok_or(SessionError::NoLocation { what })?;
        Ok(Some(location))
    }

    /// `PUT /v2/<repo>/manifests/<reference>` of manifest bytes of `media_type`, verbatim (so
    /// the registry names them by their own sha256).
    pub async fn put_manifest_as(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), SessionError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let what = format!("PUT {url}");
        self.send(repo, &what, &[], |c| {
            c.put(&url)
                .header(CONTENT_TYPE, media_type)
                .body(bytes.to_vec())
        })
        .await?;
        Ok(())
    }

    /// `GET` of `path` (`/v2/<repo>/…`), answering the registry's `401` as every call does,
    /// with `accept` as the `Accept` header when given: the answer, its body not yet read.
    pub async fn get(
        &self,
        repo: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, SessionError> {
        let url = self.url(path);
        let what = format!("GET {url}");
        self.send(repo, &what, &[], |c| match accept {
            Some(types) => c.get(&url).header(reqwest::header::ACCEPT, types),
            None => c.get(&url),
        })
        .await
    }

    /// `GET /v2/<repo>/manifests/sha256:<hex>`: the manifest's bytes, verbatim, accepting the
    /// docker and OCI manifest types; `Ok(None)` when the repository does not have it. An
    /// answer larger than `limit` bytes is refused.
    pub async fn manifest_by_digest(
        &self,
        repo: &str,
        digest: &Sha256,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, SessionError> {
        let path = format!("/v2/{repo}/manifests/sha256:{}", digest.hex());
        let response = match self.get(repo, &path, Some(MANIFEST_TYPES)).await {
            Ok(response) => response,
            Err(SessionError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        read_limited(response, limit, &format!("GET {}", self.url(&path)))
            .await
            .map(Some)
    }
}

/// The `Accept` of a manifest `GET`: the docker v2 manifest and the OCI image manifest.
pub const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

/// The body of an answer, refused past `limit` bytes.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, SessionError> {
    let mut bytes = Vec::new();
    loop {
        let chunk = response.chunk().await.map_err(|e| SessionError::Read {
            path: what.to_owned(),
            why: error_chain(&e.without_url()),
        })?;
        let Some(chunk) = chunk else {
            return Ok(bytes);
        };
        if bytes.len() + chunk.len() > limit {
            return Err(SessionError::Read {
                path: what.to_owned(),
                why: format!("the answer is larger than {limit} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
}

/// A blob being uploaded, and the counter of its bytes sent.
struct Blob<'a> {
    digest: &'a Sha256,
    size: u64,
    path: &'a Path,
    sent: &'a Arc<AtomicU64>,
}

fn chunk_what(repo: &str, blob: &Blob<'_>, start: u64, len: u64) -> String {
    format!(
        "the upload of bytes {start}-{} of sha256:{} to {repo}",
        start + len - 1,
        blob.digest.hex()
    )
}

/// Whether a refusal of the first chunk means the registry takes no chunked uploads (rather
/// than a failure worth a retry, or a login that another upload would not fix either).
fn refuses_chunks(status: StatusCode) -> bool {
    status == StatusCode::NOT_IMPLEMENTED
        || status.is_client_error()
            && !matches!(
                status,
                StatusCode::REQUEST_TIMEOUT
                    | StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
            )
}

/// The bytes a registry holds of an upload, from its `Range: 0-<last byte>` (`bytes=` allowed
/// before it). `0-0` is read as none: distribution answers so for an empty upload.
fn held_bytes(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(RANGE)?.to_str().ok()?.trim();
    let value = value.strip_prefix("bytes=").unwrap_or(value);
    let (start, end) = value.split_once('-')?;
    let (start, end) = (
        start.trim().parse::<u64>().ok()?,
        end.trim().parse::<u64>().ok()?,
    );
    match (start, end) {
        (0, 0) => Some(0),
        (0, end) => Some(end + 1),
        _ => None,
    }
}

fn with_digest(mut location: url::Url, digest: &Sha256) -> url::Url {
    location
        .query_pairs_mut()
        .append_pair("digest", &format!("sha256:{}", digest.hex()));
    location
}

/// A registry's final refusal: its status, and what it said ([`refusal_detail`]).
pub async fn refusal(response: reqwest::Response, why: &str) -> (StatusCode, String) {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    (status, refusal_detail(status, &body, why))
}

/// ` (CODE: message)` from the distribution API's `{"errors": [...]}` `body`, else
/// ` (the retry policy's summary)` when it says more than the bare status (the attempts ran
/// out, or the server asked to wait too long), else nothing.
fn refusal_detail(status: StatusCode, body: &str, why: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let first = v.get("errors")?.get(0)?.clone();
            Some(format!(
                "{}: {}",
                first.get("code")?.as_str().unwrap_or("?"),
                first.get("message").and_then(|m| m.as_str()).unwrap_or("")
            ))
        });
    match message {
        Some(m) => format!(" ({m})"),
        None if !why.is_empty() && why != format!("HTTP {}", status.as_u16()) => {
            format!(" ({why})")
        }
        None => String::new(),
    }
}

/// A final refusal, with the registry's error message when it sent one.
async fn status_error(what: &str, response: reqwest::Response, why: &str) -> SessionError {
    let (status, detail) = refusal(response, why).await;
    SessionError::Status {
        what: what.to_owned(),
        status,
        detail,
    }
}

/// A request body streaming `len` bytes of the file at `path` from byte `start`, counting the
/// bytes read into `sent` (set to `start` when the stream begins, so a retried chunk or
/// upload counts from where it starts again).
fn file_body(path: PathBuf, start: u64, len: u64, sent: Arc<AtomicU64>) -> reqwest::Body {
    reqwest::Body::wrap_stream(file_pieces(path, start, len, sent))
}

/// The pieces of [`file_body`], at most 1 MiB each.
fn file_pieces(
    path: PathBuf,
    start: u64,
    len: u64,
    sent: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    enum State {
        Open(PathBuf, Arc<AtomicU64>),
        Reading(tokio::fs::File, u64, Arc<AtomicU64>),
        Done,
    }
    futures_util::stream::unfold(State::Open(path, sent), move |state| async move {
        let (mut file, left, sent) = match state {
            State::Open(path, sent) => {
                let opened = async {
                    let mut file = tokio::fs::File::open(&path).await?;
                    file.seek(std::io::SeekFrom::Start(start)).await?;
                    Ok::<_, std::io::Error>(file)
                };
                match opened.await {
                    Ok(file) => {
                        sent.store(start, Ordering::Relaxed);
                        (file, len, sent)
                    }
                    Err(e) => return Some((Err(e), State::Done)),
                }
            }
            State::Reading(file, left, sent) => (file, left, sent),
            State::Done => return None,
        };
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; (1usize << 20).min(usize::try_from(left).unwrap_or(usize::MAX))];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                sent.fetch_add(n as u64, Ordering::Relaxed);
                Some((Ok(buf), State::Reading(file, left - n as u64, sent)))
            }
            Err(e) => Some((Err(e), State::Done)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str) -> Option<u64> {
        let mut headers = HeaderMap::new();
        headers.insert(RANGE, value.parse().expect("header value"));
        held_bytes(&headers)
    }

    #[test]
    fn the_range_of_an_upload_says_how_many_bytes_are_held() {
        assert_eq!(range("0-1048575"), Some(1 << 20));
        assert_eq!(range("bytes=0-99"), Some(100));
        assert_eq!(range("0-0"), Some(0), "distribution's empty upload");
        assert_eq!(range("5-9"), None, "an upload always starts at 0");
        assert_eq!(range("junk"), None);
        assert_eq!(held_bytes(&HeaderMap::new()), None);
    }

    #[test]
    fn a_chunk_body_is_its_range_of_the_file_and_the_counter_restarts_at_its_start() {
        use futures_util::StreamExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        let sent = Arc::new(AtomicU64::new(999_999_999));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let start = 1_048_576 + 7;
        let len = 1_500_000;
        let pieces: Vec<Vec<u8>> = runtime.block_on(
            file_pieces(path.clone(), start, len, sent.clone())
                .map(|p| p.expect("piece"))
                .collect(),
        );
        assert!(pieces.iter().all(|p| p.len() <= 1 << 20));
        let start = usize::try_from(start).expect("usize");
        let len = usize::try_from(len).expect("usize");
        assert_eq!(pieces.concat(), bytes[start..start + len]);
        assert_eq!(sent.load(Ordering::Relaxed), (start + len) as u64);
    }

    #[test]
    fn a_refusal_says_the_registrys_error_else_what_the_retries_learned() {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let body = r#"{"errors": [{"code": "UNAVAILABLE", "message": "read-only mode"}]}"#;
        assert_eq!(
            refusal_detail(status, body, "HTTP 503, failed after 6 attempts"),
            " (UNAVAILABLE: read-only mode)"
        );
        assert_eq!(
            refusal_detail(status, "<html>", "HTTP 503, failed after 6 attempts"),
            " (HTTP 503, failed after 6 attempts)"
        );
        let waited =
            "HTTP 503: the server asks to retry in 3600 s, longer than the 60 s this tool waits";
        assert_eq!(refusal_detail(status, "", waited), format!(" ({waited})"));
        assert_eq!(refusal_detail(StatusCode::NOT_FOUND, "", "HTTP 404"), "");
    }

    #[test]
    fn only_a_plain_refusal_means_no_chunked_uploads() {
        for status in [416, 400, 404, 405, 501] {
            let status = StatusCode::from_u16(status).expect("status");
            assert!(refuses_chunks(status), "{status}");
        }
        for status in [401, 403, 408, 429, 500, 502, 503] {
            let status = StatusCode::from_u16(status).expect("status");
            assert!(!refuses_chunks(status), "{status}");
        }
    }
}
