//! Who modelctl is at a registry, as container users have it: anonymous first; on a `401`,
//! the challenge decides. `Basic` gets the user's credentials; `Bearer realm=…` gets a token
//! from the realm (with the credentials, when there are any), and only from a realm on the
//! registry's own host — a realm elsewhere would learn what this machine pushes, or phish a
//! credential (the rule the Ollama source keeps too).
//!
//! Credentials come from `MODELCTL_REGISTRY_AUTH` (`user:password`, for the registry of `--to`)
//! or else from `~/.docker/config.json` (`$DOCKER_CONFIG/config.json`) as `docker login`
//! leaves it: the credential helper it names for the host (`credHelpers`, else `credsStore`:
//! [`super::cred_helper`]), then the `auths` entry, whose `auth` is base64 of
//! `user:password`. Credentials are never sent over plain http except to a loopback address,
//! and no `Debug`, log line or error shows them.

use std::path::Path;

use base64::Engine as _;
use reqwest::StatusCode;
use serde::Deserialize;

use super::Target;
use crate::net::{SendError, Token, error_chain};

/// The environment variable with `user:password` for the registry of `--to`.
pub const AUTH_ENV: &str = "MODELCTL_REGISTRY_AUTH";

/// A user and password, and where they were found. `Debug` shows only the origin.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
    pub origin: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials(from {}, hidden)", self.origin)
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    fn from_pair(pair: &str, origin: String) -> Option<Self> {
        let (user, password) = pair.split_once(':')?;
        (!user.is_empty()).then(|| Self {
            user: user.to_owned(),
            password: password.to_owned(),
            origin,
        })
    }
}

/// Why the registry's authentication failed or was refused.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AuthError {
    #[error("{AUTH_ENV} is not `user:password`")]
    #[diagnostic(
        code(modelctl::push::auth),
        help("set it as `user:password`, or unset it to use ~/.docker/config.json")
    )]
    BadEnv,
    #[error("cannot read `{path}`: {why}")]
    #[diagnostic(
        code(modelctl::push::auth),
        help("fix or remove the file, or set {AUTH_ENV}=user:password")
    )]
    DockerConfig { path: String, why: String },
    #[error("the docker credential helper for {host} gave no login: {why}")]
    #[diagnostic(
        code(modelctl::push::auth),
        help(
            "check the helper (`docker-credential-<name> get`), log in again with `docker login {host}`, or set {AUTH_ENV}=user:password"
        )
    )]
    Helper { host: String, why: String },
    #[error("the registry {host} sent an auth challenge modelctl cannot answer: `{scheme}`")]
    #[diagnostic(
        code(modelctl::push::auth),
        help("modelctl answers `Basic` and `Bearer` challenges")
    )]
    Challenge { host: String, scheme: String },
    #[error("the registry {host} asks for credentials, and none are set for it")]
    #[diagnostic(
        code(modelctl::push::auth),
        help("run `docker login {host}`, or set {AUTH_ENV}=user:password")
    )]
    NoCredentials { host: String },
    #[error(
        "the registry {host} is plain http and not on this machine: credentials are never sent there"
    )]
    #[diagnostic(
        code(modelctl::push::auth),
        help(
            "push over https (`--to https://{host}/…`), or push to a registry on a loopback address"
        )
    )]
    Insecure { host: String },
    #[error("the registry {host} asks to authenticate at another host ({realm}); refusing")]
    #[diagnostic(
        code(modelctl::push::auth),
        help(
            "a token realm must be on the registry's own host; check the registry's auth configuration"
        )
    )]
    ForeignRealm { host: String, realm: String },
    #[error("the registry {host}'s token realm `{realm}` is not a URL")]
    #[diagnostic(
        code(modelctl::push::auth),
        help("check the registry's auth configuration")
    )]
    RealmNotUrl { host: String, realm: String },
    #[error("cannot get a token from the registry {host}: {chain}")]
    #[diagnostic(
        code(modelctl::push::auth),
        help("check that the registry is up, then run the push again")
    )]
    TokenUnreachable { host: String, chain: String },
    #[error("the registry {host} refused a token ({status}){with}")]
    #[diagnostic(
        code(modelctl::push::auth),
        help(
            "check the credentials (`docker login {host}` or {AUTH_ENV}) and that they may push to this namespace"
        )
    )]
    TokenRefused {
        host: String,
        status: StatusCode,
        with: String,
    },
    #[error("the registry {host}'s token answer is not JSON with a token: {why}")]
    #[diagnostic(
        code(modelctl::push::auth),
        help("check the registry's auth configuration")
    )]
    TokenJson { host: String, why: String },
}

/// The credentials for `host`: `MODELCTL_REGISTRY_AUTH` when set, else the matching `auths`
/// entry of the docker config at `docker_config` (a missing file is no credentials).
pub fn find(
    env_value: Option<&str>,
    docker_config: Option<&Path>,
    host: &str,
) -> Result<Option<Credentials>, AuthError> {
    if let Some(pair) = env_value {
        return Credentials::from_pair(pair, AUTH_ENV.to_owned())
            .map(Some)
            .ok_or(AuthError::BadEnv);
    }
    let Some(path) = docker_config else {
        return Ok(None);
    };
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuthError::DockerConfig {
                path: shown,
                why: e.to_string(),
            });
        }
    };
    from_docker_config(&text, &shown, host)
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, DockerAuth>,
    /// The helper for every host without its own.
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    /// A helper per registry host.
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

/// Whether a config key (`https://host/v1/`, `host:port`) names `host`.
fn names_host(key: &str, host: &str) -> bool {
    let bare = key.split_once("://").map_or(key, |(_, rest)| rest);
    bare.split('/').next() == Some(host)
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The login for `host` in a docker config's text: its credential helper's answer (the
/// host's own in `credHelpers`, else `credsStore`), then its `auths` entry. Keys are matched
/// without their scheme and path (`https://host/v1/` is `host`).
pub fn from_docker_config(
    text: &str,
    path: &str,
    host: &str,
) -> Result<Option<Credentials>, AuthError> {
    let bad = |why: String| AuthError::DockerConfig {
        path: path.to_owned(),
        why,
    };
    let config: DockerConfig = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let helper = config
        .cred_helpers
        .iter()
        .find(|(key, _)| names_host(key, host))
        .map(|(_, name)| name)
        .or(config.creds_store.as_ref());
    // A helper that fails (not installed, as for a config copied from a desktop) leaves the
    // `auths` entry to answer; only when there is none is its failure the error.
    let from_helper = helper.map(|name| {
        super::cred_helper::get(name, host).map(|login| {
            login.and_then(|l| {
                Credentials::from_pair(
                    &format!("{}:{}", l.user, l.secret),
                    format!("docker-credential-{name} (named by {path})"),
                )
            })
        })
    });
    let helper_error = match from_helper {
        Some(Ok(Some(found))) => return Ok(Some(found)),
        Some(Err(why)) => Some(AuthError::Helper {
            host: host.to_owned(),
            why,
        }),
        _ => None,
    };
    match (inline_login(&config, path, host)?, helper_error) {
        (Some(found), _) => Ok(Some(found)),
        (None, Some(error)) => Err(error),
        (None, None) => Ok(None),
    }
}

/// The `auths` entry for `host`, with its `auth` (base64 of `user:password`) or its
/// `username` and `password`.
fn inline_login(
    config: &DockerConfig,
    path: &str,
    host: &str,
) -> Result<Option<Credentials>, AuthError> {
    let bad = |why: String| AuthError::DockerConfig {
        path: path.to_owned(),
        why,
    };
    let entry = config.auths.iter().find(|(key, _)| names_host(key, host));
    let Some((key, entry)) = entry else {
        return Ok(None);
    };
    let origin = format!("{path} (auths.{key})");
    if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Credentials::from_pair(
            &format!("{user}:{password}"),
            origin,
        ));
    }
    let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| bad(format!("auths.{key}.auth is not base64 of `user:password`")))?;
    Credentials::from_pair(&decoded, origin.clone())
        .map(Some)
        .ok_or_else(|| bad(format!("auths.{key}.auth is not base64 of `user:password`")))
}

/// A parsed `WWW-Authenticate` header: its scheme and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// `Bearer realm="…",service="…",scope="a,b"`; quoted values may hold commas.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let mut params = Vec::new();
        let mut rest = rest.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let after = after.trim_start();
            let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            params.push((key.trim().to_ascii_lowercase(), value.to_owned()));
            rest = next.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The `Authorization` value that answers `challenge`: the credentials for `Basic`, a token
/// for `Bearer` (asked for `challenge`'s scope and `extra_scopes`, such as the pull scope of a
/// repository a blob is mounted from).
pub async fn answer(
    client: &crate::net::Client,
    target: &Target,
    challenge: &Challenge,
    extra_scopes: &[String],
    credentials: Option<&Credentials>,
) -> Result<Token, AuthError> {
    let host = target.host.clone();
    match challenge.scheme.as_str() {
        "basic" => {
            let credentials = credentials.ok_or(AuthError::NoCredentials { host: host.clone() })?;
            if target.is_insecure_remote() {
                return Err(AuthError::Insecure { host });
            }
            Ok(Token::new(
                credentials.basic_header(),
                credentials.origin.clone(),
            ))
        }
        "bearer" => bearer(client, target, challenge, extra_scopes, credentials).await,
        other => Err(AuthError::Challenge {
            host,
            scheme: other.to_owned(),
        }),
    }
}

async fn bearer(
    client: &crate::net::Client,
    target: &Target,
    challenge: &Challenge,
    extra_scopes: &[String],
    credentials: Option<&Credentials>,
) -> Result<Token, AuthError> {
    let host = target.host.clone();
    let realm = challenge.param("realm").unwrap_or_default().to_owned();
    let mut url = url::Url::parse(&realm).map_err(|_| AuthError::RealmNotUrl {
        host: host.clone(),
        realm: realm.clone(),
    })?;
    if url.host_str() != target.base.host_str() {
        return Err(AuthError::ForeignRealm {
            host,
            realm: url.host_str().unwrap_or("?").to_owned(),
        });
    }
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = challenge.param("service") {
            query.append_pair("service", service);
        }
        for scope in challenge
            .param("scope")
            .into_iter()
            .map(str::to_owned)
            .chain(extra_scopes.iter().cloned())
        {
            query.append_pair("scope", &scope);
        }
    }
    let basic = match credentials {
        Some(c) if url.scheme() == "https" || super::is_loopback(&url) => Some(c.basic_header()),
        Some(_) => return Err(AuthError::Insecure { host }),
        None => None,
    };
    let response = client
        .send(|c| {
            let request = c.get(url.clone());
            match &basic {
                Some(value) => request.header(reqwest::header::AUTHORIZATION, value),
                None => request,
            }
        })
        .await
        .map_err(|e| match e {
            SendError::Status { response, .. } => AuthError::TokenRefused {
                host: host.clone(),
                status: response.status(),
                with: match credentials {
                    Some(c) => format!(" to the credentials from {}", c.origin),
                    None => " to an anonymous request".to_owned(),
                },
            },
            SendError::Transport { error, .. } => AuthError::TokenUnreachable {
                host: host.clone(),
                chain: error_chain(&error.without_url()),
            },
        })?;
    #[derive(Deserialize)]
    struct Reply {
        #[serde(alias = "access_token")]
        token: String,
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| AuthError::TokenUnreachable {
            host: host.clone(),
            chain: error_chain(&e.without_url()),
        })?;
    let reply: Reply = serde_json::from_slice(&bytes).map_err(|e| AuthError::TokenJson {
        host: host.clone(),
        why: e.to_string(),
    })?;
    Ok(Token::new(
        format!("Bearer {}", reply.token),
        format!("the registry {host}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_keep_quoted_commas() {
        let c = Challenge::parse(
            r#"Bearer realm="https://r.example/token",service="r.example",scope="repository:ns/a:pull,push""#,
        )
        .expect("challenge");
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://r.example/token"));
        assert_eq!(c.param("scope"), Some("repository:ns/a:pull,push"));
        let basic = Challenge::parse(r#"Basic realm="Registry Realm""#).expect("basic");
        assert_eq!(basic.scheme, "basic");
    }

    #[test]
    fn docker_config_auths_match_the_host_with_or_without_scheme() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("ann:s3cret");
        let text = format!(
            r#"{{"auths": {{"https://r.example:5000/v1/": {{"auth": "{encoded}"}}, "other.example": {{"auth": "eDp5"}}}}, "credsStore": "desktop"}}"#
        );
        let found = from_docker_config(&text, "config.json", "r.example:5000")
            .expect("read")
            .expect("found");
        assert_eq!(found.basic_header(), format!("Basic {encoded}"));
        assert!(!format!("{found:?}").contains("s3cret"), "Debug hides it");
        // No entry of its own, and the helper named for every host is not installed.
        assert!(matches!(
            from_docker_config(&text, "config.json", "r.example"),
            Err(AuthError::Helper { .. })
        ));
        let without_helper = text.replace(r#", "credsStore": "desktop""#, "");
        assert_eq!(
            from_docker_config(&without_helper, "config.json", "r.example").expect("read"),
            None
        );
        let bad = r#"{"auths": {"r.example": {"auth": "not base64!"}}}"#;
        assert!(from_docker_config(bad, "config.json", "r.example").is_err());
    }

    #[test]
    fn the_environment_wins_and_must_be_a_pair() {
        let found = find(Some("bot:pw"), None, "r.example")
            .expect("ok")
            .expect("some");
        assert_eq!(found.origin, AUTH_ENV);
        assert!(matches!(
            find(Some("nopassword"), None, "r"),
            Err(AuthError::BadEnv)
        ));
        assert_eq!(
            find(None, Some(Path::new("/nonexistent/config.json")), "r").expect("ok"),
            None
        );
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn credentials_never_go_to_a_foreign_realm_or_over_remote_plain_http() {
        let client = crate::net::Client::new(&crate::net::NetConfig::default()).expect("client");
        let creds = Credentials::from_pair("ann:pw", "test".to_owned());
        let remote = Target::parse("http://r.example:5000/ns").expect("target");
        let basic = Challenge::parse(r#"Basic realm="x""#).expect("basic");
        let err = run(answer(&client, &remote, &basic, &[], creds.as_ref())).expect_err("insecure");
        assert!(matches!(err, AuthError::Insecure { .. }), "{err:?}");
        let secure = Target::parse("https://r.example/ns").expect("target");
        let foreign = Challenge::parse(r#"Bearer realm="https://evil.example/token""#).expect("c");
        let err =
            run(answer(&client, &secure, &foreign, &[], creds.as_ref())).expect_err("foreign");
        assert!(matches!(err, AuthError::ForeignRealm { .. }), "{err:?}");
        let plain_realm = Challenge::parse(r#"Bearer realm="http://r.example/token""#).expect("c");
        let err =
            run(answer(&client, &secure, &plain_realm, &[], creds.as_ref())).expect_err("http");
        assert!(matches!(err, AuthError::Insecure { .. }), "{err:?}");
        let err = run(answer(&client, &secure, &basic, &[], None)).expect_err("none");
        assert!(matches!(err, AuthError::NoCredentials { .. }), "{err:?}");
    }
}
