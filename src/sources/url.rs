//! `url` sources: one file at an `http(s)://` or `file://` URL.
//!
//! Resolving asks the server what the URL is now (HEAD, following redirects): the final URL,
//! the size, the `ETag` and `Last-Modified` validators. A server that refuses HEAD is asked for
//! the first byte instead (`Range: bytes=0-0`, size from `Content-Range`), and so is one that
//! answers HEAD with a `Content-Encoding` although the client asks for `identity`: its
//! `Content-Length` is that of the compressed body, never pinned. If the ranged answer is
//! encoded too, the URL is refused: the lock pins raw bytes. The lock records only digests of
//! bytes modelctl hashed: a checksum in models.yaml is an expectation, checked when the file
//! is downloaded (and its sha256 learned then), never copied into the lock unseen. A
//! `file://` URL is read directly and hashed at once, so a wrong checksum in models.yaml is
//! refused while resolving, naming the line to fix.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, ETAG, LAST_MODIFIED, RANGE,
};

use super::ResolveContext;
use crate::lock::{LockedFile, LockedSource};
use crate::manifest::{FileExpect, UrlSource};
use crate::names::RelPath;
use crate::net::retry::Fault;
use crate::net::{SafeUrl, SendError, error_chain, redact};

/// Why an url source could not be resolved or checked. Each message is what the user sees
/// (stored as text in a failed resolution), so it names the URL and, where it can, the fix.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum UrlError {
    /// The `url:` in models.yaml is neither a URL nor a usable path.
    #[error("{0}")]
    #[diagnostic(code(modelctl::url::location))]
    Location(crate::manifest::LocationError),
    #[error("`{shown}` is not a local file path")]
    #[diagnostic(code(modelctl::url::not_a_path))]
    NotFilePath { shown: String },
    /// What the drift check says of a `file://` URL without a local path.
    #[error("not a local path")]
    #[diagnostic(code(modelctl::url::not_a_path))]
    NotLocalPath,
    #[error("cannot read `{}`: {error}", path.display())]
    #[diagnostic(code(modelctl::url::read))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("`{}` is not a regular file", path.display())]
    #[diagnostic(code(modelctl::url::not_a_file))]
    NotRegularFile { path: PathBuf },
    #[error("hashing `{shown}` failed: {reason}")]
    #[diagnostic(code(modelctl::url::hash))]
    Hashing { shown: String, reason: String },
    #[error(
        "models.yaml expects another file: `{shown}` does not match its {key} \
         ({mismatch}); fix the {key} in models.yaml if this is the file you want"
    )]
    #[diagnostic(code(modelctl::url::checksum))]
    Checksum {
        shown: String,
        key: &'static str,
        mismatch: String,
    },
    #[error("`--offline` was passed, so the URL's size and validators cannot be fetched")]
    #[diagnostic(
        code(modelctl::url::offline),
        help("run without `--offline` to pin the URL")
    )]
    Offline,
    #[error("models.yaml expects {want} bytes, but `{shown}` has {size}")]
    #[diagnostic(code(modelctl::url::size))]
    SizeMismatch { want: u64, shown: String, size: u64 },
    #[error("cannot reach `{shown}`: connect timeout to {host}")]
    #[diagnostic(code(modelctl::url::connect_timeout))]
    ConnectTimeout { shown: String, host: String },
    #[error("cannot reach `{shown}`: {chain}")]
    #[diagnostic(code(modelctl::url::unreachable))]
    Unreachable { shown: String, chain: String },
    /// A failed status; the text says what it means ([`status_message`]).
    #[error("{}", status_message(*status, shown))]
    #[diagnostic(code(modelctl::url::status))]
    Status { status: StatusCode, shown: String },
    #[error(
        "`{shown}` sends the file compressed (`Content-Encoding: {encoding}`) even when asked \
         for `identity`, so its size is not the file's; modelctl pins and checks the raw bytes: \
         use a URL that serves the file uncompressed"
    )]
    #[diagnostic(code(modelctl::url::compressed))]
    Compressed { shown: String, encoding: String },
    #[error("`{shown}` did not say how large the file is (no Content-Length)")]
    #[diagnostic(code(modelctl::url::no_size))]
    NoSize { shown: String },
}

/// How a locked URL differs from what the server says now (at least one field is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlChange {
    /// The size now and the size the lock pins, when they differ.
    pub size: Option<(u64, u64)>,
    /// The `ETag` now and the one the lock pins, when they differ.
    pub etag: Option<(String, String)>,
}

impl std::fmt::Display for UrlChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut changes = Vec::new();
        if let Some((now, then)) = self.size {
            changes.push(format!("its size is {now} bytes, the lock pins {then}"));
        }
        if let Some((now, then)) = &self.etag {
            changes.push(format!("its ETag is {now}, the lock pins {then}"));
        }
        f.write_str(&changes.join("; "))
    }
}

/// Resolves an url source into its locked form, or says why it could not.
pub async fn resolve(
    ctx: &ResolveContext,
    source: &UrlSource,
    files: &BTreeMap<RelPath, FileExpect>,
) -> Result<(LockedSource, Vec<LockedFile>), UrlError> {
    let expect = files.get(&source.file).cloned().unwrap_or_default();
    let sha256 = source.sha256.or(expect.sha256);
    let md5 = source.md5.or(expect.md5);
    let shown = redact(&source.url);
    let location = source
        .location(&ctx.manifest_dir)
        .map_err(UrlError::Location)?;

    let (size, final_url, etag, last_modified, hashed) = if location.scheme() == "file" {
        let path = location
            .to_file_path()
            .map_err(|()| UrlError::NotFilePath {
                shown: shown.clone(),
            })?;
        let meta = std::fs::metadata(&path).map_err(|error| UrlError::Read {
            path: path.clone(),
            error,
        })?;
        if !meta.is_file() {
            return Err(UrlError::NotRegularFile { path });
        }
        let hashed = {
            let path = path.clone();
            let extra = crate::digest::Extra::to_check(md5, None, meta.len());
            tokio::task::spawn_blocking(move || crate::store::hash_file_with(&path, extra))
                .await
                .map_err(|e| UrlError::Hashing {
                    shown: shown.clone(),
                    reason: e.to_string(),
                })?
                .map_err(|e| UrlError::Read {
                    path: e.path,
                    error: e.source,
                })?
        };
        let expected = crate::digest::Expected {
            sha256,
            md5,
            git_oid: None,
        };
        if let Err(mismatch) = expected.check(&hashed) {
            let key = if sha256.is_some() { "sha256" } else { "md5" };
            return Err(UrlError::Checksum {
                shown,
                key,
                mismatch: mismatch.to_string(),
            });
        }
        (meta.len(), None, None, None, Some(hashed.sha256))
    } else {
        if ctx.offline {
            return Err(UrlError::Offline);
        }
        let head = head(ctx, &location).await?;
        (
            head.size,
            head.final_url,
            head.etag,
            head.last_modified,
            None,
        )
    };

    if let Some(want) = expect.size.filter(|s| *s != size) {
        return Err(UrlError::SizeMismatch { want, shown, size });
    }
    // Only what modelctl hashed itself: the manifest's checksums are checked at download.
    let file = LockedFile {
        path: source.file.clone(),
        size,
        sha256: hashed,
        md5: None,
        git_oid: None,
    };
    // The lock is committed to git: credentials and presigned signatures never go into it.
    // Downloads start again from the manifest's URL; `final_url` only documents the redirect.
    let locked = LockedSource::Url {
        url: redact(&source.url),
        final_url: final_url
            .filter(|u| u != &location)
            .map(|u| SafeUrl::new(u).to_string()),
        etag,
        last_modified,
    };
    Ok((locked, vec![file]))
}

struct Head {
    size: u64,
    final_url: Option<url::Url>,
    etag: Option<String>,
    last_modified: Option<String>,
}

fn header(resp: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The answer's `Content-Encoding`, unless it is absent or `identity`.
fn content_encoding(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(CONTENT_ENCODING)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .filter(|v| !v.eq_ignore_ascii_case("identity"))
}

/// Asks the server for the file's size and validators, through the shared client (so a
/// `503` or a refused connection is retried like any request).
async fn head(ctx: &ResolveContext, url: &url::Url) -> Result<Head, UrlError> {
    let safe = SafeUrl::from(url);
    let resp = match ctx.client.send(|c| c.head(url.clone())).await {
        Err(SendError::Status { response, .. })
            if matches!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
            ) =>
        {
            first_byte(ctx, &safe).await?
        }
        // Every request asks for `Accept-Encoding: identity` (crate::net::builder); a HEAD
        // answered encoded anyway says the size of the compressed body, so the first byte is
        // asked for.
        Ok(resp) if content_encoding(&resp).is_some() => first_byte(ctx, &safe).await?,
        sent => sent.map_err(|e| send_error(e, &safe))?,
    };
    let shown = safe.to_string();
    if let Some(encoding) = content_encoding(&resp) {
        return Err(UrlError::Compressed { shown, encoding });
    }
    let size = if resp.status() == StatusCode::PARTIAL_CONTENT {
        header(&resp, CONTENT_RANGE).and_then(|v| crate::net::headers::content_range_total(&v))
    } else {
        header(&resp, CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
    };
    let size = size.ok_or(UrlError::NoSize { shown })?;
    Ok(Head {
        size,
        final_url: Some(resp.url().clone()),
        etag: header(&resp, ETAG),
        last_modified: header(&resp, LAST_MODIFIED),
    })
}

/// The answer to `Range: bytes=0-0`, for a server that refuses or encodes `HEAD`.
async fn first_byte(ctx: &ResolveContext, url: &SafeUrl) -> Result<reqwest::Response, UrlError> {
    ctx.client
        .send(|c| c.get(url.expose().clone()).header(RANGE, "bytes=0-0"))
        .await
        .map_err(|e| send_error(e, url))
}

/// A request that got no successful answer, as the user sees it.
fn send_error(err: SendError, url: &SafeUrl) -> UrlError {
    let shown = url.to_string();
    match err {
        SendError::Status { response, .. } => UrlError::Status {
            status: response.status(),
            shown,
        },
        SendError::Transport {
            fault: Fault::Timeout,
            error,
            ..
        } if error.is_connect() => UrlError::ConnectTimeout {
            shown,
            host: url.host().to_owned(),
        },
        SendError::Transport { error, gave_up, .. } => UrlError::Unreachable {
            shown,
            chain: match gave_up {
                Some(why) => format!("{} ({why})", error_chain(&error.without_url())),
                None => error_chain(&error.without_url()),
            },
        },
    }
}

/// What an HTTP status means for the user, with what to do about it.
pub fn status_message(status: StatusCode, shown: &str) -> String {
    match status.as_u16() {
        401 | 403 => format!(
            "`{shown}` answered {status}: access denied; check that the URL is public or carries its access token"
        ),
        404 | 410 => format!("`{shown}` answered {status}: the file is not there; check the URL"),
        429 => format!("`{shown}` answered {status}: rate limited; try again later"),
        _ => format!("`{shown}` answered {status}"),
    }
}

/// What the server says about a locked URL now, against what the lock pinned: `Some` when the
/// size or the `ETag` differ (the upstream file changed).
pub async fn drift(
    ctx: &ResolveContext,
    source: &UrlSource,
    locked: &crate::lock::LockedModel,
) -> Result<Option<UrlChange>, UrlError> {
    let (
        LockedSource::Url {
            etag: locked_etag, ..
        },
        Some(file),
    ) = (&locked.source, locked.files.first())
    else {
        return Ok(None);
    };
    let location = source
        .location(&ctx.manifest_dir)
        .map_err(UrlError::Location)?;
    let (size, etag) = if location.scheme() == "file" {
        let path = location
            .to_file_path()
            .map_err(|()| UrlError::NotLocalPath)?;
        let meta = std::fs::metadata(&path).map_err(|error| UrlError::Read {
            path: path.clone(),
            error,
        })?;
        (meta.len(), None)
    } else {
        let head = head(ctx, &location).await?;
        (head.size, head.etag)
    };
    let change = UrlChange {
        size: (size != file.size).then_some((size, file.size)),
        etag: match (etag, locked_etag) {
            (Some(now), Some(then)) if &now != then => Some((now, then.clone())),
            _ => None,
        },
    };
    Ok((change.size.is_some() || change.etag.is_some()).then_some(change))
}
