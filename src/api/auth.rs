//! Who may change things through the API (docs/reliability.md A1): a bearer token, a JSON
//! content type, and a cap on the body.
//!
//! The token is `MODELCTL_API_TOKEN` when set (it is then never written anywhere), else the
//! contents of `<store>/.modelctl/api-token`, made at the first `serve` (32 bytes from the
//! operating system's random source in hex, mode 0600, created by `durable::create_new_atomic`
//! so a reader never sees half of it and a crash never leaves an empty one). Every
//! POST/PUT/PATCH/DELETE must carry `Authorization: Bearer <token>`, compared in constant time;
//! on a non-loopback address every request must, reads included. A change that carries a body
//! or a `Content-Type` must say `application/json`: a web page can send `text/plain` across
//! sites without a preflight, never JSON. Bodies are capped at [`MAX_BODY`] and must arrive
//! within [`BODY_TIMEOUT`] (docs/reliability.md A3).
//! `GET /api/openapi.json` is public: a fixed document that says nothing about this machine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiState;
use super::models::error;

/// The environment variable that supplies the token (and allows a non-loopback address).
pub const TOKEN_ENV: &str = "MODELCTL_API_TOKEN";

/// The largest request body accepted: 1 MiB.
pub const MAX_BODY: usize = 1 << 20;

/// How long a change's body may take to arrive once its headers have: a client that trickles
/// a body cannot hold a connection (and a change) forever.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The path that is public even where reads need the token.
const PUBLIC: &str = "/api/openapi.json";

/// Where the token came from, for the log and the 401 message.
#[derive(Debug, Clone)]
pub enum Source {
    Env,
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env => write!(f, "${TOKEN_ENV}"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The token and whether reads need it too.
pub struct Auth {
    secret: String,
    pub source: Source,
    /// Listening beyond loopback: every request needs the token.
    pub reads_need_token: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("secret", &"<redacted>")
            .field("source", &self.source)
            .field("reads_need_token", &self.reads_need_token)
            .finish()
    }
}

impl Auth {
    /// The token for a server on `listen` whose store is `store`: from the environment, else
    /// from (or made in) the store. Returns warnings to print after the first log line.
    pub fn resolve(
        listen: std::net::SocketAddr,
        store: impl FnOnce() -> miette::Result<PathBuf>,
    ) -> miette::Result<(Self, Vec<String>)> {
        let loopback = listen.ip().is_loopback();
        let from_env = std::env::var(TOKEN_ENV).ok();
        let (secret, source, warnings) = match from_env {
            Some(secret) => {
                let secret = secret.trim().to_owned();
                if secret.is_empty() {
                    return Err(miette::miette!(
                        help = "set it to a long random secret (`openssl rand -hex 32`), or unset it to use the token file in the store",
                        "{TOKEN_ENV} is empty"
                    ));
                }
                (secret, Source::Env, Vec::new())
            }
            None if !loopback => {
                return Err(miette::miette!(
                    help = format!(
                        "set {TOKEN_ENV} to a long random secret (every request will then need `Authorization: Bearer <it>`), or listen on 127.0.0.1"
                    ),
                    "refusing to listen on {listen} without {TOKEN_ENV}: anything but loopback exposes the API to the network"
                ));
            }
            None => {
                let path = store()?.join(".modelctl").join("api-token");
                let (secret, warnings) = load_or_create(&path).map_err(|e| {
                    miette::miette!(
                        help =
                            format!("check the store directory's permissions, or set {TOKEN_ENV}"),
                        "cannot read or make the API token `{}`: {e}",
                        path.display()
                    )
                })?;
                (secret, Source::File(path), warnings)
            }
        };
        let auth = Self {
            secret,
            source,
            reads_need_token: !loopback,
        };
        Ok((auth, warnings))
    }

    /// The serve log's line that says where the token is (never the token).
    pub fn log_line(&self) -> String {
        let scope = if self.reads_need_token {
            "requests"
        } else {
            "changes"
        };
        format!(
            "{scope} need Authorization: Bearer <the token in {}>",
            self.source
        )
    }

    fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
        else {
            return false;
        };
        constant_time_eq(given.trim(), &self.secret)
    }
}

/// Equal strings, in time that depends on neither their contents nor their lengths: both are
/// hashed to 32 bytes (subtle's slice comparison returns early on a length mismatch), and the
/// digests compared with `subtle`, whose comparison the optimiser cannot turn into an early exit.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// A new token: 32 bytes from the operating system's random source (`getrandom`), in hex.
fn new_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("no random bytes from the system: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Reads the token file, or makes it through `durable::create_new_atomic`, so the name only
/// ever shows a whole token and a concurrent `serve` that lost the race reads the winner's.
fn load_or_create(path: &Path) -> std::io::Result<(String, Vec<String>)> {
    match read(path) {
        Ok(found) => return Ok(found),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let secret = new_secret()?;
    let written = crate::durable::create_new_atomic(path, format!("{secret}\n").as_bytes(), 0o600);
    match written {
        Ok(()) => Ok((secret, Vec::new())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(e),
    }
}

/// An existing token file, with a warning when others may read it.
fn read(path: &Path) -> std::io::Result<(String, Vec<String>)> {
    let text = std::fs::read_to_string(path)?;
    let secret = text.trim().to_owned();
    if secret.is_empty() {
        return Err(std::io::Error::other(
            "the file is empty; delete it and restart `modelctl serve` to make a new token",
        ));
    }
    let mode = std::fs::metadata(path)?.permissions().mode();
    let mut warnings = Vec::new();
    if mode & 0o077 != 0 {
        warnings.push(format!(
            "warning: the API token {} can be read by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok((secret, warnings))
}

fn is_change(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Whether a request carries a body, by its headers.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The middleware: token, content type, body cap; then the handler.
pub async fn check(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let auth = &state.auth;
    let change = is_change(request.method());
    let public = request.uri().path() == PUBLIC && !change;
    if (change || auth.reads_need_token) && !public && !auth.accepts(request.headers()) {
        let what = if change { "changes" } else { "requests" };
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            &format!(
                "{what} need `Authorization: Bearer <token>`; the token is in {}",
                auth.source
            ),
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    if !change {
        return next.run(request).await;
    }
    let headers = request.headers();
    if (has_body(headers) || headers.contains_key(header::CONTENT_TYPE)) && !is_json(headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a change's body must be JSON: send `Content-Type: application/json`",
        )
        .into_response();
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => too_large(),
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the request body took over {} s to arrive; send it at once",
                BODY_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "the request body is over {} bytes (1 MiB); send a smaller one",
            MAX_BODY
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
        assert!(!constant_time_eq("", "abc"));
    }

    #[test]
    fn the_token_file_is_private_whole_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".modelctl/api-token");
        let (made, warnings) = load_or_create(&path).expect("made");
        assert!(warnings.is_empty());
        assert_eq!(made.len(), 64);
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, _) = load_or_create(&path).expect("read");
        assert_eq!(again, made, "an existing token is kept");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (_, warnings) = load_or_create(&path).expect("read");
        assert!(warnings[0].contains("chmod 600"), "{warnings:?}");
    }

    #[test]
    fn only_json_counts_as_json() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().expect("v"));
        assert!(!is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("v"),
        );
        assert!(is_json(&headers));
    }
}
